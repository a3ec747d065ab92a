/* UNet: diffusers' UNet2DConditionModel as configured for SD 1.x.
 *
 * emb  = linear_2(silu(linear_1(timestep_embed(t, C0) [+ cond_proj(w)])))  [N, 4*C0]
 *        (w: an LCM-distilled UNet's guidance-scale embedding [N, dim])
 * h    = conv_in(x); skips = [h]
 * down level l: (resnet(h, emb) [-> transformer(h, ctx)]) x layers_per_block,
 *               each output pushed; then (l < L-1) a stride-2 conv, pushed
 * mid:  resnet, transformer, resnet
 * up level l = L-1 .. 0: (h = cat(h, pop); resnet [-> transformer]) x
 *               (layers_per_block + 1); then (l > 0) nearest 2x + conv
 * out  = conv_out(silu(conv_norm_out(h)))
 *
 * Transformer2DModel (in place on x [N, C, HW]):
 *   t = proj_in(transpose(group_norm(x)))           tokens [N*HW, C]
 *   per block: t += attn1(LN1(t)); t += attn2(LN2(t), ctx); t += ff(LN3(t))
 *              ff = ff.net.2(geglu(ff.net.0.proj(.)))
 *   x += transpose(proj_out(t))
 * proj_in/proj_out as a 1x1 conv on [N, C, HW] equal the Linear on the
 * transposed tokens, so one path serves use_linear_projection 0 and 1; the
 * backend's linear_map does each with its transpose (and proj_out's
 * residual add) inside the GEMM, no pass of their own.
 *
 * Classifier-free guidance runs the same latent and timestep under two
 * prompts, and the prompt enters only at the first cross-attention: with
 * a shared input (sdc_unet_forward's shared), conv_in, the first resnet
 * and the first transformer block's self-attention run once, on one
 * image, and their results are copied to the other rows there. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "models/blocks.h"
#include "models/models.h"

#define MAX_LPB 8    /* layers_per_block */
#define MAX_DEPTH 16 /* transformer_layers_per_block */
#define MAX_SKIPS (SDC_MAX_LEVELS * (MAX_LPB + 1) + 1)
#define GN_EPS_TRANSFORMER 1e-6f /* Transformer2DModel's GroupNorm */
#define LN_EPS 1e-5f             /* BasicTransformerBlock's LayerNorms */
#define FF_ROWS 1024             /* feed-forward rows per chunk (bounds its scratch) */

typedef struct tblock {
    sdc_norm_w n1, n2, n3;
    sdc_linear_w q1, k1, v1, o1; /* self-attention; q/k/v without bias */
    sdc_linear_w q2, k2, v2, o2; /* cross-attention; k2, v2: [C, cross_dim] */
    sdc_linear_w ff1, ff2;       /* [8C, C] (GEGLU), [C, 4C] */
    int C;
    size_t kv_prefix; /* sum of C over the blocks before this one (sdc_unet_context) */
} tblock;

typedef struct transformer {
    sdc_norm_w norm;
    sdc_linear_w proj_in, proj_out; /* [C, C] (or [C, C, 1, 1]) */
    tblock *blocks;                 /* [depth], points into sdc_unet.tblocks */
    int C;
} transformer;

typedef struct level {
    sdc_resnet_w *res;   /* down: [lpb]; up: [lpb + 1] */
    transformer *attn;   /* same count, or NULL when the level has none */
    sdc_conv_w sampler;  /* downsampler / upsampler conv; .w NULL if none */
} level;

struct sdc_unet {
    sdc_unet_config cfg;
    sdc_linear_w t1, t2; /* time_embedding.linear_1 [4C0, C0], linear_2 [4C0, 4C0] */
    sdc_linear_w cond;   /* time_embedding.cond_proj [C0, dim], no bias; .w NULL
                            unless time_cond_proj_dim (LCM-distilled UNets) */
    sdc_conv_w conv_in, conv_out;
    sdc_norm_w norm_out;
    level down[SDC_MAX_LEVELS], up[SDC_MAX_LEVELS]; /* up[i] is level L-1-i */
    sdc_resnet_w mid_res[2];
    transformer mid_attn;
    int low_memory;  /* sdc_unet_set_low_memory */
    /* storage, owned */
    sdc_resnet_w *resnets;
    transformer *transformers;
    tblock *tblocks;
    size_t n_tblocks, kv_channels; /* bound blocks; sum of their C */
};

static void bind_transformer(sdc_binder *b, transformer *T, tblock *blocks, int C, int depth,
                             int cross, const char *prefix) {
    T->C = C;
    T->blocks = blocks;
    sdc_bind_norm(b, &T->norm, C, "%s.norm", prefix);
    sdc_bind_linear(b, &T->proj_in, C, C, 1, "%s.proj_in", prefix);
    for (int d = 0; d < depth; d++) {
        tblock *B = &blocks[d];
        const char *p = prefix;
        B->C = C;
        sdc_bind_norm(b, &B->n1, C, "%s.transformer_blocks.%d.norm1", p, d);
        sdc_bind_linear(b, &B->q1, C, C, 0, "%s.transformer_blocks.%d.attn1.to_q", p, d);
        sdc_bind_linear(b, &B->k1, C, C, 0, "%s.transformer_blocks.%d.attn1.to_k", p, d);
        sdc_bind_linear(b, &B->v1, C, C, 0, "%s.transformer_blocks.%d.attn1.to_v", p, d);
        sdc_bind_linear(b, &B->o1, C, C, 1, "%s.transformer_blocks.%d.attn1.to_out.0", p, d);
        sdc_bind_norm(b, &B->n2, C, "%s.transformer_blocks.%d.norm2", p, d);
        sdc_bind_linear(b, &B->q2, C, C, 0, "%s.transformer_blocks.%d.attn2.to_q", p, d);
        sdc_bind_linear(b, &B->k2, cross, C, 0, "%s.transformer_blocks.%d.attn2.to_k", p, d);
        sdc_bind_linear(b, &B->v2, cross, C, 0, "%s.transformer_blocks.%d.attn2.to_v", p, d);
        sdc_bind_linear(b, &B->o2, C, C, 1, "%s.transformer_blocks.%d.attn2.to_out.0", p, d);
        sdc_bind_norm(b, &B->n3, C, "%s.transformer_blocks.%d.norm3", p, d);
        sdc_bind_linear(b, &B->ff1, C, 8 * C, 1, "%s.transformer_blocks.%d.ff.net.0.proj", p, d);
        sdc_bind_linear(b, &B->ff2, 4 * C, C, 1, "%s.transformer_blocks.%d.ff.net.2", p, d);
    }
    sdc_bind_linear(b, &T->proj_out, C, C, 1, "%s.proj_out", prefix);
}

static sdc_status check_config(const sdc_model_files *mf, const sdc_unet_config *c) {
    const char *name = sdc_model_files_name(mf);
    if (c->levels < 1 || c->levels > SDC_MAX_LEVELS)
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: UNet with %d levels", name, c->levels);
    if (c->layers_per_block < 1 || c->layers_per_block > MAX_LPB ||
        c->transformer_depth < 1 || c->transformer_depth > MAX_DEPTH)
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: UNet with layers_per_block %d, depth %d", name,
                        c->layers_per_block, c->transformer_depth);
    if (c->in_channels < 1 || c->out_channels < 1 || c->groups < 1 || c->heads < 1 ||
        c->cross_dim < 1)
        return sdc_fail(SDC_ERR_FORMAT, "%s: bad UNet config", name);
    if (c->time_cond_proj_dim < 0)
        return sdc_fail(SDC_ERR_FORMAT, "%s: bad time_cond_proj_dim %d", name,
                        c->time_cond_proj_dim);
    if (c->channels[0] % 2)
        return sdc_fail(SDC_ERR_FORMAT, "%s: odd UNet channel count %d", name, c->channels[0]);
    for (int l = 0; l < c->levels; l++) {
        int C = c->channels[l];
        if (C < 1 || C > (1 << 16) || C % c->groups || C % c->heads)
            return sdc_fail(SDC_ERR_FORMAT,
                            "%s: UNet level %d has %d channels (groups %d, heads %d)", name, l,
                            C, c->groups, c->heads);
    }
    return SDC_OK;
}

sdc_status sdc_unet_create(const sdc_model_files *mf, sdc_unet **out) {
    *out = NULL;
    const sdc_unet_config *c = sdc_model_files_unet(mf);
    if (!c) return sdc_fail(SDC_ERR_FORMAT, "%s: no UNet", sdc_model_files_name(mf));
    sdc_status st = check_config(mf, c);
    if (st != SDC_OK) return st;
    int L = c->levels, lpb = c->layers_per_block, depth = c->transformer_depth;
    size_t n_res = (size_t)L * lpb + 2 + (size_t)L * (lpb + 1);
    size_t n_tr = n_res; /* at most one per resnet */
    sdc_unet *m = calloc(1, sizeof *m);
    if (m) {
        m->resnets = calloc(n_res, sizeof *m->resnets);
        m->transformers = calloc(n_tr, sizeof *m->transformers);
        m->tblocks = calloc(n_tr * depth, sizeof *m->tblocks);
    }
    if (!m || !m->resnets || !m->transformers || !m->tblocks) {
        sdc_unet_free(m);
        return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    }
    m->cfg = *c;
    sdc_binder b = {mf, SDC_OK};
    int C0 = c->channels[0], E = 4 * C0, G = c->groups, X = c->cross_dim;
    float eps = c->eps;
    size_t ir = 0, it = 0;
    char p[160];
#define NEXT_TRANSFORMER(C_, ...)                                                              \
    do {                                                                                       \
        snprintf(p, sizeof p, __VA_ARGS__);                                                    \
        bind_transformer(&b, &m->transformers[it], &m->tblocks[it * depth], C_, depth, X, p); \
        it++;                                                                                  \
    } while (0)

    sdc_bind_linear(&b, &m->t1, C0, E, 1, "unet.time_embedding.linear_1");
    sdc_bind_linear(&b, &m->t2, E, E, 1, "unet.time_embedding.linear_2");
    m->cond.w = m->cond.b = NULL;
    if (c->time_cond_proj_dim > 0)
        sdc_bind_linear(&b, &m->cond, c->time_cond_proj_dim, C0, 0,
                        "unet.time_embedding.cond_proj");
    sdc_bind_conv(&b, &m->conv_in, c->in_channels, C0, 3, "unet.conv_in");

    int skip[MAX_SKIPS], ns = 0; /* channels of the skip connections, a stack */
    skip[ns++] = C0;
    int prev = C0;
    for (int l = 0; l < L; l++) {
        level *D = &m->down[l];
        int C = c->channels[l];
        D->res = &m->resnets[ir];
        D->attn = c->attn[l] ? &m->transformers[it] : NULL;
        for (int j = 0; j < lpb; j++) {
            snprintf(p, sizeof p, "unet.down_blocks.%d.resnets.%d", l, j);
            sdc_bind_resnet(&b, &m->resnets[ir++], j ? C : prev, C, E, G, eps, p);
            if (D->attn) NEXT_TRANSFORMER(C, "unet.down_blocks.%d.attentions.%d", l, j);
            skip[ns++] = C;
        }
        D->sampler.w = NULL;
        if (l < L - 1) {
            sdc_bind_conv(&b, &D->sampler, C, C, 3, "unet.down_blocks.%d.downsamplers.0.conv", l);
            skip[ns++] = C;
        }
        prev = C;
    }
    int CL = c->channels[L - 1];
    sdc_bind_resnet(&b, &m->mid_res[0], CL, CL, E, G, eps, "unet.mid_block.resnets.0");
    bind_transformer(&b, &m->mid_attn, &m->tblocks[it++ * depth], CL, depth, X,
                     "unet.mid_block.attentions.0");
    sdc_bind_resnet(&b, &m->mid_res[1], CL, CL, E, G, eps, "unet.mid_block.resnets.1");
    for (int i = 0; i < L; i++) {
        int l = L - 1 - i, C = c->channels[l];
        level *U = &m->up[i];
        U->res = &m->resnets[ir];
        U->attn = c->attn[l] ? &m->transformers[it] : NULL;
        for (int j = 0; j <= lpb; j++) {
            int in = (j ? C : prev) + skip[--ns];
            snprintf(p, sizeof p, "unet.up_blocks.%d.resnets.%d", i, j);
            sdc_bind_resnet(&b, &m->resnets[ir++], in, C, E, G, eps, p);
            if (U->attn) NEXT_TRANSFORMER(C, "unet.up_blocks.%d.attentions.%d", i, j);
        }
        U->sampler.w = NULL;
        if (l > 0) sdc_bind_conv(&b, &U->sampler, C, C, 3, "unet.up_blocks.%d.upsamplers.0.conv", i);
        prev = C;
    }
#undef NEXT_TRANSFORMER
    assert(ns == 0 && ir <= n_res && it <= n_tr);
    m->n_tblocks = it * (size_t)depth;
    for (size_t i = 0; i < m->n_tblocks; i++) {
        m->tblocks[i].kv_prefix = m->kv_channels;
        m->kv_channels += (size_t)m->tblocks[i].C;
    }
    sdc_bind_norm(&b, &m->norm_out, C0, "unet.conv_norm_out");
    sdc_bind_conv(&b, &m->conv_out, C0, c->out_channels, 3, "unet.conv_out");
    if (b.st != SDC_OK) {
        sdc_unet_free(m);
        return b.st;
    }
    *out = m;
    return SDC_OK;
}

void sdc_unet_free(sdc_unet *m) {
    if (!m) return;
    free(m->resnets);
    free(m->transformers);
    free(m->tblocks);
    free(m);
}

const sdc_unet_config *sdc_unet_cfg(const sdc_unet *m) { return &m->cfg; }

void sdc_unet_set_low_memory(sdc_unet *m, int on) { m->low_memory = on != 0; }

/* with_kv: the cross-attention's k2, v2 too (not needed when the
 * context's keys and values were made by sdc_unet_context) */
static void page_transformer(const sdc_pager *pg, const transformer *T, int depth,
                             sdc_residency advice, int with_kv) {
    if (!pg) return;
    sdc_page_norm(pg, &T->norm, advice);
    sdc_page_linear(pg, &T->proj_in, advice);
    for (int d = 0; d < depth; d++) {
        const tblock *B = &T->blocks[d];
        const sdc_norm_w *norms[] = {&B->n1, &B->n2, &B->n3};
        const sdc_linear_w *lins[] = {&B->q1, &B->k1, &B->v1, &B->o1, &B->q2,
                                      &B->o2, &B->ff1, &B->ff2, &B->k2, &B->v2};
        const size_t nl = sizeof lins / sizeof lins[0] - (with_kv ? 0 : 2);
        for (size_t i = 0; i < sizeof norms / sizeof norms[0]; i++)
            sdc_page_norm(pg, norms[i], advice);
        for (size_t i = 0; i < nl; i++)
            sdc_page_linear(pg, lins[i], advice);
    }
    sdc_page_linear(pg, &T->proj_out, advice);
}

/* Multi-head attention per batch item: q [N, Sq, C], k, v [N, Sk, C] -> o [N, Sq, C]. */
static void mha(sdc_backend *be, float *o, const float *q, const float *k, const float *v, int N,
                int Sq, int Sk, int C, int heads) {
    int dh = C / heads;
    float scale = 1.0f / sqrtf((float)dh);
    for (int i = 0; i < N; i++) {
        size_t oq = (size_t)i * Sq * C, ok = (size_t)i * Sk * C;
        be->attention(be, sdc_at(o, oq), sdc_atc(q, oq), C, sdc_atc(k, ok), sdc_atc(v, ok), C,
                      Sq, Sk, heads, dh, scale, 0);
    }
}

/* Images 1..N-1 of x [N, per] made copies of image 0. */
static void broadcast(sdc_backend *be, float *x, size_t per, int N) {
    for (int i = 1; i < N; i++) be->copy(be, sdc_at(x, i * per), x, (int64_t)per);
}

/* x [N*HW, C] tokens, updated in place; ctx [N, S, cross_dim]; kv: the
 * context's keys and values of every block (sdc_unet_context) or NULL.
 * shared: only x's first image is set, and the N images are equal up to
 * here; the self-attention runs on that one and its result is copied to
 * the others before the cross-attention makes them differ. */
static void tblock_fwd(const tblock *B, sdc_backend *be, sdc_arena *a, float *x, int N, int HW,
                       int C, int heads, const float *ctx, int S, const float *kv, int shared) {
    size_t mark = sdc_arena_mark(a);
    int T = N * HW, Ts = shared ? HW : T;
    size_t tc = (size_t)T * C;
    /* the normalised input n is dead once q, k, v exist: the attention
     * output goes there */
    float *n = sdc_arena_alloc(a, tc), *q = sdc_arena_alloc(a, tc);
    float *k = sdc_arena_alloc(a, tc), *v = sdc_arena_alloc(a, tc);
    /* self-attention */
    be->layer_norm(be, n, x, Ts, C, B->n1.g, B->n1.b, LN_EPS);
    sdc_linear_fwd(be, &B->q1, q, n, Ts, NULL);
    sdc_linear_fwd(be, &B->k1, k, n, Ts, NULL);
    sdc_linear_fwd(be, &B->v1, v, n, Ts, NULL);
    mha(be, n, q, k, v, shared ? 1 : N, HW, HW, C, heads);
    sdc_linear_fwd(be, &B->o1, x, n, Ts, x);
    if (shared) broadcast(be, x, (size_t)HW * C, N);
    /* cross-attention; k, v of the context [N*S, C] */
    sdc_arena_reset(a, mark);
    n = sdc_arena_alloc(a, tc), q = sdc_arena_alloc(a, tc);
    size_t sc = (size_t)N * S * C;
    const float *kc, *vc;
    if (kv) {
        kc = sdc_atc(kv, 2 * (size_t)N * S * B->kv_prefix);
        vc = sdc_atc(kc, sc);
    } else {
        k = sdc_arena_alloc(a, sc), v = sdc_arena_alloc(a, sc);
        sdc_linear_fwd(be, &B->k2, k, ctx, N * S, NULL);
        sdc_linear_fwd(be, &B->v2, v, ctx, N * S, NULL);
        kc = k, vc = v;
    }
    be->layer_norm(be, n, x, T, C, B->n2.g, B->n2.b, LN_EPS);
    sdc_linear_fwd(be, &B->q2, q, n, T, NULL);
    mha(be, n, q, kc, vc, N, HW, S, C, heads);
    sdc_linear_fwd(be, &B->o2, x, n, T, x);
    /* feed-forward, FF_ROWS rows at a time */
    sdc_arena_reset(a, mark);
    n = sdc_arena_alloc(a, tc);
    be->layer_norm(be, n, x, T, C, B->n3.g, B->n3.b, LN_EPS);
    int R = T < FF_ROWS ? T : FF_ROWS;
    float *g = sdc_arena_alloc(a, (size_t)R * 8 * C); /* [R, 8C] = [h | gate] */
    float *h = sdc_arena_alloc(a, (size_t)R * 4 * C); /* [R, 4C] */
    for (int r0 = 0; r0 < T; r0 += R) {
        int r = T - r0 < R ? T - r0 : R;
        float *xr = sdc_at(x, (size_t)r0 * C);
        sdc_linear_fwd(be, &B->ff1, g, sdc_at(n, (size_t)r0 * C), r, NULL);
        be->geglu(be, h, g, r, 4 * C);
        sdc_linear_fwd(be, &B->ff2, xr, h, r, xr);
    }
    sdc_arena_reset(a, mark);
}

/* x [N, C, HW], updated in place.  shared: only x's first image is set
 * and stands for all N (tblock_fwd); all N are set on return. */
static void transformer_fwd(const transformer *T, int depth, int heads, int groups,
                            sdc_backend *be, sdc_arena *a, float *x, int N, int HW,
                            const float *ctx, int S, const float *kv, int shared) {
    size_t mark = sdc_arena_mark(a);
    int C = T->C, Ns = shared ? 1 : N;
    size_t n = (size_t)N * C * HW;
    float *t = sdc_arena_alloc(a, n); /* tokens [N, HW, C] */
    size_t gn_mark = sdc_arena_mark(a);
    float *g = sdc_arena_alloc(a, n); /* [N, C, HW] */
    be->group_norm(be, g, x, NULL, Ns, C, HW, groups, T->norm.g, T->norm.b, GN_EPS_TRANSFORMER,
                   0);
    sdc_linear_map_fwd(be, &T->proj_in, t, g, Ns, HW, NULL, 1); /* the transpose in its packing */
    if (shared) broadcast(be, x, (size_t)C * HW, N); /* proj_out's residual, per image */
    /* g is dead while the blocks run: they use its space */
    sdc_arena_reset(a, gn_mark);
    for (int d = 0; d < depth; d++)
        tblock_fwd(&T->blocks[d], be, a, t, N, HW, C, heads, ctx, S, kv, shared && d == 0);
    sdc_linear_map_fwd(be, &T->proj_out, x, t, N, HW, x, 0); /* x += proj_out(t), in the map */
    sdc_arena_reset(a, mark);
}

/* A resnet (consume: x is dead afterwards and may serve as scratch) and a
 * transformer, with their weights paged in and out when pg is set. */
static void run_resnet(const sdc_pager *pg, const sdc_resnet_w *r, sdc_backend *be, sdc_arena *a,
                       float *y, float *x, int N, int H, int W, const float *emb, int consume) {
    sdc_page_resnet(pg, r, SDC_RES_PREFETCH);
    if (consume && r->shortcut.w)
        sdc_resnet_fwd_consume(r, be, a, y, x, N, H, W, emb);
    else
        sdc_resnet_fwd(r, be, a, y, x, N, H, W, emb);
    sdc_page_resnet(pg, r, SDC_RES_RELEASE);
}

static void run_transformer(const sdc_pager *pg, const transformer *T, int depth, int heads,
                            int groups, sdc_backend *be, sdc_arena *a, float *x, int N, int HW,
                            const float *ctx, int S, const float *kv, int shared) {
    page_transformer(pg, T, depth, SDC_RES_PREFETCH, !kv);
    transformer_fwd(T, depth, heads, groups, be, a, x, N, HW, ctx, S, kv, shared);
    page_transformer(pg, T, depth, SDC_RES_RELEASE, !kv);
}

/* After a transformer: every row is set from there on (nr = N); the skips
 * kept while the input was shared hold only their first image, copied to
 * the others here. */
static void diverge(sdc_backend *be, float *const *skip, const int *skip_c,
                    const size_t *skip_hw, int ns, int N, int *nr) {
    for (int i = 0; *nr < N && i < ns; i++)
        broadcast(be, skip[i], (size_t)skip_c[i] * skip_hw[i], N);
    *nr = N;
}

size_t sdc_unet_context_floats(const sdc_unet *m, int N, int S) {
    return 2 * (size_t)N * S * m->kv_channels;
}

void sdc_unet_context(const sdc_unet *m, sdc_backend *be, const float *ctx, int N, int S,
                      float *kv) {
    const sdc_pager pager = {be}, *pg = m->low_memory ? &pager : NULL;
    for (size_t i = 0; i < m->n_tblocks; i++) {
        const tblock *B = &m->tblocks[i];
        size_t sc = (size_t)N * S * B->C;
        float *k = sdc_at(kv, 2 * (size_t)N * S * B->kv_prefix), *v = sdc_at(k, sc);
        sdc_page_linear(pg, &B->k2, SDC_RES_PREFETCH);
        sdc_page_linear(pg, &B->v2, SDC_RES_PREFETCH);
        sdc_linear_fwd(be, &B->k2, k, ctx, N * S, NULL);
        sdc_linear_fwd(be, &B->v2, v, ctx, N * S, NULL);
        sdc_page_linear(pg, &B->k2, SDC_RES_RELEASE);
        sdc_page_linear(pg, &B->v2, SDC_RES_RELEASE);
    }
}

void sdc_unet_forward(const sdc_unet *m, sdc_backend *be, sdc_arena *a, const float *x, int N,
                      int shared, int h, int w, const float *t, const float *cond,
                      const float *ctx, int S, const float *kv, float *out) {
    const sdc_unet_config *c = &m->cfg;
    int L = c->levels, lpb = c->layers_per_block, depth = c->transformer_depth;
    int heads = c->heads, G = c->groups, C0 = c->channels[0], E = 4 * C0;
    assert(N > 0 && S > 0 && h > 0 && w > 0 && h % (1 << (L - 1)) == 0 &&
           w % (1 << (L - 1)) == 0);
    const sdc_pager pager = {be}, *pg = m->low_memory && !a->planning ? &pager : NULL;
    size_t mark0 = sdc_arena_mark(a);
    /* rows computed: 1 while a shared input has not met the prompt (all
     * buffers are sized for N all the same) */
    int nr = shared ? 1 : N;

    /* time embedding, kept as silu(emb): the only form the resnets use */
    float *tp = sdc_arena_alloc(a, (size_t)N * C0);
    float *e1 = sdc_arena_alloc(a, (size_t)N * E), *emb = sdc_arena_alloc(a, (size_t)N * E);
    be->timestep_embed(be, tp, t, nr, C0);
    if (m->cond.w && cond) sdc_linear_fwd(be, &m->cond, tp, cond, nr, tp); /* tp += cond_proj(w) */
    sdc_linear_fwd(be, &m->t1, e1, tp, nr, NULL);
    be->silu(be, e1, e1, (int64_t)nr * E);
    sdc_linear_fwd(be, &m->t2, emb, e1, nr, NULL);
    be->silu(be, emb, emb, (int64_t)nr * E);
    if (nr < N) broadcast(be, emb, (size_t)E, N);
    sdc_page_linear(pg, &m->t1, SDC_RES_RELEASE);
    sdc_page_linear(pg, &m->t2, SDC_RES_RELEASE);
    sdc_page_linear(pg, &m->cond, SDC_RES_RELEASE);

    /* skip connections live on the arena as a stack, in push order */
    float *skip[MAX_SKIPS];
    size_t skip_off[MAX_SKIPS], skip_hw[MAX_SKIPS];
    int skip_c[MAX_SKIPS], ns = 0;
    int H = h, W = w;
    size_t cur_off = sdc_arena_mark(a);
    float *cur = sdc_arena_alloc(a, (size_t)N * C0 * H * W);
    sdc_conv_fwd(be, &m->conv_in, cur, x, nr, H, W, 1, NULL);
    sdc_page_conv(pg, &m->conv_in, SDC_RES_RELEASE);
    skip[ns] = cur, skip_off[ns] = cur_off, skip_hw[ns] = (size_t)H * W, skip_c[ns++] = C0;

    int ci = C0;
    for (int l = 0; l < L; l++) {
        const level *D = &m->down[l];
        int C = c->channels[l];
        for (int j = 0; j < lpb; j++) {
            cur_off = sdc_arena_mark(a);
            float *nx = sdc_arena_alloc(a, (size_t)N * C * H * W);
            run_resnet(pg, &D->res[j], be, a, nx, cur, nr, H, W, emb, 0);
            if (D->attn) {
                run_transformer(pg, &D->attn[j], depth, heads, G, be, a, nx, N, H * W, ctx, S,
                                kv, nr < N);
                diverge(be, skip, skip_c, skip_hw, ns, N, &nr);
            }
            cur = nx, ci = C;
            skip[ns] = cur, skip_off[ns] = cur_off, skip_hw[ns] = (size_t)H * W, skip_c[ns++] = C;
        }
        if (D->sampler.w) {
            cur_off = sdc_arena_mark(a);
            float *nx = sdc_arena_alloc(a, (size_t)N * C * (H / 2) * (W / 2));
            sdc_page_conv(pg, &D->sampler, SDC_RES_PREFETCH);
            sdc_conv_fwd(be, &D->sampler, nx, cur, nr, H, W, 2, NULL);
            sdc_page_conv(pg, &D->sampler, SDC_RES_RELEASE);
            H /= 2, W /= 2;
            cur = nx;
            skip[ns] = cur, skip_off[ns] = cur_off, skip_hw[ns] = (size_t)H * W, skip_c[ns++] = C;
        }
    }

    /* mid: the first resnet must not overwrite the last skip */
    cur_off = sdc_arena_mark(a);
    float *mid = sdc_arena_alloc(a, (size_t)N * ci * H * W);
    run_resnet(pg, &m->mid_res[0], be, a, mid, cur, nr, H, W, emb, 0);
    run_transformer(pg, &m->mid_attn, depth, heads, G, be, a, mid, N, H * W, ctx, S, kv, nr < N);
    diverge(be, skip, skip_c, skip_hw, ns, N, &nr);
    run_resnet(pg, &m->mid_res[1], be, a, mid, mid, N, H, W, emb, 0);
    cur = mid;
    assert(nr == N); /* the mid block's transformer always takes the prompt */

    for (int i = 0; i < L; i++) {
        const level *U = &m->up[i];
        int C = c->channels[L - 1 - i];
        for (int j = 0; j <= lpb; j++) {
            ns--;
            int cs = skip_c[ns];
            size_t cat_n = (size_t)N * (ci + cs) * H * W, res_n = (size_t)N * C * H * W;
            size_t cat_off = sdc_arena_mark(a);
            float *cat = sdc_arena_alloc(a, cat_n);
            be->concat(be, cat, cur, ci, skip[ns], cs, N, H * W);
            /* the popped skip and cur are dead: move cat down over them */
            cat = sdc_settle(be, a, skip_off[ns], cat, &cat_off, cat_n);
            size_t res_off = sdc_arena_mark(a);
            float *res = sdc_arena_alloc(a, res_n);
            run_resnet(pg, &U->res[j], be, a, res, cat, N, H, W, emb, 1); /* cat is dead after */
            /* and so is cat: move res down before the transformer runs */
            cur = sdc_settle(be, a, skip_off[ns], res, &res_off, res_n);
            cur_off = res_off, ci = C;
            if (U->attn)
                run_transformer(pg, &U->attn[j], depth, heads, G, be, a, cur, N, H * W, ctx, S,
                                kv, 0);
        }
        if (U->sampler.w) {
            size_t up_n = (size_t)N * C * (2 * H) * (2 * W);
            float *upx = sdc_upsample2x_in_place(be, a, cur, cur_off, N, C, H, W);
            H *= 2, W *= 2;
            size_t res_off = sdc_arena_mark(a);
            float *res = sdc_arena_alloc(a, up_n);
            sdc_page_conv(pg, &U->sampler, SDC_RES_PREFETCH);
            sdc_conv_fwd(be, &U->sampler, res, upx, N, H, W, 1, NULL);
            sdc_page_conv(pg, &U->sampler, SDC_RES_RELEASE);
            cur = sdc_settle(be, a, cur_off, res, &res_off, up_n);
            cur_off = res_off;
        }
    }
    assert(ns == 0 && H == h && W == w);

    be->group_norm(be, cur, cur, NULL, N, C0, H * W, G, m->norm_out.g, m->norm_out.b, c->eps, 1);
    sdc_conv_fwd(be, &m->conv_out, out, cur, N, H, W, 1, NULL);
    sdc_page_norm(pg, &m->norm_out, SDC_RES_RELEASE);
    sdc_page_conv(pg, &m->conv_out, SDC_RES_RELEASE);
    sdc_arena_reset(a, mark0);
}
