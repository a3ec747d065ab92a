#include "text/chunks.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define CTX SDC_CLIP_CONTEXT
#define CHUNK SDC_CHUNK_TOKENS
#define COMMA_BACKTRACK 20

/* The chunk being filled, and the finished ones. */
typedef struct builder {
    sdc_chunks *c;
    int cap, fix_cap;
    int32_t cur[CHUNK];
    float cur_mult[CHUNK];
    int len, last_comma;
    int32_t bos, eos;
} builder;

static sdc_status grow(builder *b) {
    if (b->c->n < b->cap) return SDC_OK;
    int cap = b->cap ? 2 * b->cap : 4;
    int32_t *ids = realloc(b->c->ids, (size_t)cap * CTX * sizeof *ids);
    if (ids) b->c->ids = ids;
    float *mult = ids ? realloc(b->c->mult, (size_t)cap * CTX * sizeof *mult) : NULL;
    if (mult) b->c->mult = mult;
    if (!ids || !mult) return sdc_fail(SDC_ERR_NOMEM, "out of memory (prompt chunks)");
    b->cap = cap;
    return SDC_OK;
}

/* A1111's next_chunk: pads the current chunk with EOS, wraps it in BOS/EOS
 * and starts an empty one. */
static sdc_status next_chunk(builder *b, int is_last) {
    sdc_status st = grow(b);
    if (st != SDC_OK) return st;
    sdc_chunks *c = b->c;
    c->tokens += is_last ? b->len : CHUNK;
    int32_t *ids = c->ids + (size_t)c->n * CTX;
    float *mult = c->mult + (size_t)c->n * CTX;
    ids[0] = b->bos;
    mult[0] = 1.0f;
    for (int i = 0; i < CHUNK; i++) {
        ids[1 + i] = i < b->len ? b->cur[i] : b->eos;
        mult[1 + i] = i < b->len ? b->cur_mult[i] : 1.0f;
    }
    ids[CTX - 1] = b->eos;
    mult[CTX - 1] = 1.0f;
    c->n++;
    b->len = 0;
    b->last_comma = -1;
    return SDC_OK;
}

static sdc_status add_fix(builder *b, int emb, int n, const float *vec) {
    sdc_chunks *c = b->c;
    if (c->n_fix == b->fix_cap) {
        int cap = b->fix_cap ? 2 * b->fix_cap : 4;
        sdc_chunk_fix *f = realloc(c->fix, (size_t)cap * sizeof *f);
        if (!f) return sdc_fail(SDC_ERR_NOMEM, "out of memory (prompt chunks)");
        c->fix = f;
        b->fix_cap = cap;
    }
    /* the chunk being filled is number c->n; +1 for its BOS */
    c->fix[c->n_fix++] = (sdc_chunk_fix){c->n * CTX + 1 + b->len, emb, n, vec};
    return SDC_OK;
}

/* One run's tokens into the chunks (the loop body of tokenize_line). */
static sdc_status add_run(builder *b, const int32_t *tok, int n, float w, sdc_embeddings *emb,
                          int D, int32_t comma) {
    sdc_status st = SDC_OK;
    for (int pos = 0; pos < n && st == SDC_OK;) {
        int32_t token = tok[pos];
        if (token == comma) {
            b->last_comma = b->len;
        } else if (b->len == CHUNK && b->last_comma != -1 &&
                   b->len - b->last_comma <= COMMA_BACKTRACK) {
            int at = b->last_comma + 1, moved = b->len - at;
            int32_t rt[CHUNK];
            float rm[CHUNK];
            memcpy(rt, b->cur + at, (size_t)moved * sizeof *rt);
            memcpy(rm, b->cur_mult + at, (size_t)moved * sizeof *rm);
            b->len = at;
            if ((st = next_chunk(b, 0)) != SDC_OK) break;
            memcpy(b->cur, rt, (size_t)moved * sizeof *rt);
            memcpy(b->cur_mult, rm, (size_t)moved * sizeof *rm);
            b->len = moved;
        }
        if (b->len == CHUNK && (st = next_chunk(b, 0)) != SDC_OK) break;
        int name_len = 0, e = emb ? sdc_embeddings_match(emb, tok, n, pos, &name_len) : -1;
        if (e < 0) {
            b->cur[b->len] = token;
            b->cur_mult[b->len++] = w;
            pos++;
            continue;
        }
        const float *vec;
        int nv;
        if ((st = sdc_embeddings_vectors(emb, e, D, &vec, &nv)) != SDC_OK) break;
        if (b->len + nv > CHUNK && (st = next_chunk(b, 0)) != SDC_OK) break;
        if ((st = add_fix(b, e, nv, vec)) != SDC_OK) break;
        for (int i = 0; i < nv; i++) {
            b->cur[b->len] = 0;
            b->cur_mult[b->len++] = w;
        }
        pos += name_len;
    }
    return st;
}

void sdc_chunks_free(sdc_chunks *c) {
    if (!c) return;
    free(c->ids);
    free(c->mult);
    free(c->fix);
    memset(c, 0, sizeof *c);
}

sdc_status sdc_chunks_make(const sdc_tokenizer *t, const sdc_prompt *p, sdc_embeddings *emb,
                           int D, sdc_chunks *out) {
    memset(out, 0, sizeof *out);
    builder b = {.c = out, .last_comma = -1};
    b.bos = sdc_tokenizer_special(t, SDC_TOKEN_BOS);
    b.eos = sdc_tokenizer_special(t, SDC_TOKEN_EOS);
    const int32_t comma = sdc_tokenizer_find(t, ",</w>");
    const sdc_prompt_run *runs;
    int nr = sdc_prompt_runs(p, &runs);
    sdc_status st = SDC_OK;
    for (int r = 0; r < nr && st == SDC_OK; r++) {
        if (runs[r].is_break) {
            st = next_chunk(&b, 0);
            continue;
        }
        int32_t *tok;
        int n;
        st = sdc_tokenize_all(t, runs[r].text, runs[r].len, &tok, &n);
        if (st != SDC_OK) break;
        st = add_run(&b, tok, n, (float)runs[r].weight, emb, D, comma);
        free(tok);
    }
    if (st == SDC_OK && (b.len > 0 || out->n == 0)) st = next_chunk(&b, 1);
    if (st != SDC_OK) sdc_chunks_free(out);
    return st;
}

sdc_status sdc_chunks_plain(const sdc_tokenizer *t, const char *text, sdc_chunks *out) {
    memset(out, 0, sizeof *out);
    out->ids = malloc(CTX * sizeof *out->ids);
    out->mult = malloc(CTX * sizeof *out->mult);
    if (!out->ids || !out->mult) {
        sdc_chunks_free(out);
        return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    }
    int n = sdc_tokenize(t, text, out->ids);
    if (n < 0) {
        sdc_chunks_free(out);
        return SDC_ERR_INVALID_ARG;
    }
    for (int i = 0; i < CTX; i++) out->mult[i] = 1.0f;
    out->n = 1;
    out->tokens = n - 2;
    return SDC_OK;
}
