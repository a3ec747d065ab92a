/* CLIP text encoder: transformers' CLIPTextModel, last_hidden_state.
 *
 * x = token_embedding[ids] + position_embedding[0..n)
 * per layer (pre-LN):  x += out_proj(attn_causal(LN1(x)))
 *                      x += fc2(act(fc1(LN2(x))))        act: quick_gelu or gelu
 * out = final_layer_norm(x) */
#include <assert.h>
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "models/blocks.h"
#include "models/models.h"

typedef struct clip_layer {
    sdc_norm_w ln1, ln2;
    sdc_linear_w q, k, v, o; /* [D, D] each, with bias */
    sdc_linear_w fc1, fc2;   /* [I, D], [D, I] */
} clip_layer;

struct sdc_clip {
    sdc_clip_config cfg;
    const sdc_weight *tok; /* [V, D] */
    const sdc_weight *pos; /* [P, D] */
    clip_layer *layers;    /* [cfg.layers], owned */
    sdc_norm_w final_ln;
};

#define TE "text_encoder.text_model."

sdc_status sdc_clip_create(const sdc_model_files *mf, sdc_clip **out) {
    *out = NULL;
    const sdc_clip_config *c = sdc_model_files_clip(mf);
    if (!c) return sdc_fail(SDC_ERR_FORMAT, "%s: no text encoder", sdc_model_files_name(mf));
    if (c->hidden <= 0 || c->heads <= 0 || c->hidden % c->heads || c->layers <= 0 ||
        c->layers > 1024 || c->intermediate <= 0 || c->vocab_size <= 0 || c->max_positions <= 0)
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: bad text encoder config (hidden %d, heads %d, layers %d)",
                        sdc_model_files_name(mf), c->hidden, c->heads, c->layers);
    sdc_clip *m = calloc(1, sizeof *m);
    if (m) m->layers = calloc((size_t)c->layers, sizeof *m->layers);
    if (!m || !m->layers) {
        sdc_clip_free(m);
        return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    }
    m->cfg = *c;
    int D = c->hidden, I = c->intermediate;
    sdc_binder b = {mf, SDC_OK};
    int64_t ts[2] = {c->vocab_size, D}, ps[2] = {c->max_positions, D};
    m->tok = sdc_bind(&b, 0, 2, ts, TE "embeddings.token_embedding.weight");
    m->pos = sdc_bind(&b, 0, 2, ps, TE "embeddings.position_embedding.weight");
    for (int i = 0; i < c->layers; i++) {
        clip_layer *L = &m->layers[i];
        sdc_bind_norm(&b, &L->ln1, D, TE "encoder.layers.%d.layer_norm1", i);
        sdc_bind_linear(&b, &L->q, D, D, 1, TE "encoder.layers.%d.self_attn.q_proj", i);
        sdc_bind_linear(&b, &L->k, D, D, 1, TE "encoder.layers.%d.self_attn.k_proj", i);
        sdc_bind_linear(&b, &L->v, D, D, 1, TE "encoder.layers.%d.self_attn.v_proj", i);
        sdc_bind_linear(&b, &L->o, D, D, 1, TE "encoder.layers.%d.self_attn.out_proj", i);
        sdc_bind_norm(&b, &L->ln2, D, TE "encoder.layers.%d.layer_norm2", i);
        sdc_bind_linear(&b, &L->fc1, D, I, 1, TE "encoder.layers.%d.mlp.fc1", i);
        sdc_bind_linear(&b, &L->fc2, I, D, 1, TE "encoder.layers.%d.mlp.fc2", i);
    }
    sdc_bind_norm(&b, &m->final_ln, D, TE "final_layer_norm");
    if (b.st != SDC_OK) {
        sdc_clip_free(m);
        return b.st;
    }
    *out = m;
    return SDC_OK;
}

void sdc_clip_free(sdc_clip *m) {
    if (!m) return;
    free(m->layers);
    free(m);
}

const sdc_clip_config *sdc_clip_cfg(const sdc_clip *m) { return &m->cfg; }

void sdc_clip_forward(const sdc_clip *m, sdc_backend *be, sdc_arena *a, const int32_t *ids,
                      int n, float *out) {
    sdc_status st = sdc_clip_forward_ex(m, be, a, ids, n, 0, NULL, 0, out);
    assert(st == SDC_OK); /* only fixes allocate */
    (void)st;
}

/* x [pos, pos + f->n) = f->vec + the position embedding: rows made on the
 * host and copied over the token rows embed wrote. */
static sdc_status apply_fix(const sdc_clip *m, sdc_backend *be, float *x, const sdc_clip_fix *f) {
    const int D = m->cfg.hidden;
    float *rows = malloc((size_t)f->n * D * sizeof *rows);
    if (!rows) return sdc_fail(SDC_ERR_NOMEM, "out of memory (embedding vectors)");
    for (int i = 0; i < f->n; i++)
        for (int d = 0; d < D; d++)
            rows[(size_t)i * D + d] = f->vec[(size_t)i * D + d] +
                                      sdc_weight_get(m->pos, (int64_t)(f->pos + i) * D + d);
    be->copy_in(be, x + (size_t)f->pos * D, rows, (int64_t)f->n * D);
    free(rows); /* copy_in consumes its host source before it returns */
    return SDC_OK;
}

sdc_status sdc_clip_forward_ex(const sdc_clip *m, sdc_backend *be, sdc_arena *a,
                               const int32_t *ids, int n, int skip, const sdc_clip_fix *fix,
                               int n_fix, float *out) {
    const sdc_clip_config *c = &m->cfg;
    assert(n > 0 && n <= c->max_positions);
    assert(skip >= 0 && skip < c->layers);
    int D = c->hidden, I = c->intermediate, dh = D / c->heads;
    float eps = c->eps;
    size_t mark = sdc_arena_mark(a);
    size_t nd = (size_t)n * D;
    float *x = sdc_arena_alloc(a, nd); /* [n, D] residual stream */
    float *h = sdc_arena_alloc(a, nd); /* [n, D] normed input */
    float *q = sdc_arena_alloc(a, nd), *k = sdc_arena_alloc(a, nd), *v = sdc_arena_alloc(a, nd);
    float *f = sdc_arena_alloc(a, (size_t)n * I); /* [n, I] */
    be->embed(be, x, ids, n, m->tok, m->pos, D);
    for (int i = 0; i < n_fix; i++) {
        assert(fix[i].pos >= 0 && fix[i].n > 0 && fix[i].pos + fix[i].n <= n);
        sdc_status st = apply_fix(m, be, x, &fix[i]);
        if (st != SDC_OK) {
            sdc_arena_reset(a, mark);
            return st;
        }
    }
    for (int i = 0; i < c->layers - skip; i++) {
        const clip_layer *L = &m->layers[i];
        be->layer_norm(be, h, x, n, D, L->ln1.g, L->ln1.b, eps);
        sdc_linear_fwd(be, &L->q, q, h, n, NULL);
        sdc_linear_fwd(be, &L->k, k, h, n, NULL);
        sdc_linear_fwd(be, &L->v, v, h, n, NULL);
        be->attention(be, h, q, D, k, v, D, n, n, c->heads, dh, 1.0f / sqrtf((float)dh), 1);
        sdc_linear_fwd(be, &L->o, x, h, n, x);
        be->layer_norm(be, h, x, n, D, L->ln2.g, L->ln2.b, eps);
        sdc_linear_fwd(be, &L->fc1, f, h, n, NULL);
        if (c->quick_gelu)
            be->quick_gelu(be, f, f, (int64_t)n * I);
        else
            be->gelu(be, f, f, (int64_t)n * I);
        sdc_linear_fwd(be, &L->fc2, x, f, n, x);
    }
    be->layer_norm(be, out, x, n, D, m->final_ln.g, m->final_ln.b, eps);
    sdc_arena_reset(a, mark);
    return SDC_OK;
}
