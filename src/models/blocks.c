#include "models/blocks.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

/* ---- weight binding ------------------------------------------------------ */

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t used = 0;
    int n = snprintf(buf, cap, "[");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < ndim && used < cap; i++) {
        n = snprintf(buf + used, cap - used, i ? ", %lld" : "%lld", (long long)shape[i]);
        used += n > 0 ? (size_t)n : 0;
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

static const sdc_weight *bind_v(sdc_binder *b, int optional, int ndim, const int64_t *shape,
                                const char *fmt, va_list ap) {
    if (b->st != SDC_OK) return NULL;
    char name[256];
    int n = vsnprintf(name, sizeof name, fmt, ap);
    if (n < 0 || (size_t)n >= sizeof name) {
        b->st = sdc_fail(SDC_ERR_INTERNAL, "weight name too long: %.64s...", name);
        return NULL;
    }
    const sdc_weight *w = sdc_model_files_get(b->mf, name);
    if (!w) {
        if (!optional)
            b->st = sdc_fail(SDC_ERR_FORMAT, "%s: tensor %s is missing",
                             sdc_model_files_name(b->mf), name);
        return NULL;
    }
    if (w->dtype != SDC_DT_F32 && w->dtype != SDC_DT_F16 && w->dtype != SDC_DT_BF16) {
        b->st = sdc_fail(SDC_ERR_FORMAT, "%s: tensor %s has dtype %s, expected F32, F16 or BF16",
                         sdc_model_files_name(b->mf), name, sdc_dtype_name(w->dtype));
        return NULL;
    }
    int nd = ndim > w->ndim ? ndim : w->ndim;
    for (int i = 0; i < nd; i++) {
        int64_t want = i < ndim ? shape[i] : 1, got = i < w->ndim ? w->shape[i] : 1;
        if (want != got) {
            char sw[96], sg[96];
            format_shape(sw, sizeof sw, ndim, shape);
            format_shape(sg, sizeof sg, w->ndim, w->shape);
            b->st = sdc_fail(SDC_ERR_FORMAT, "%s: tensor %s has shape %s, expected %s",
                             sdc_model_files_name(b->mf), name, sg, sw);
            return NULL;
        }
    }
    return w;
}

const sdc_weight *sdc_bind(sdc_binder *b, int optional, int ndim, const int64_t *shape,
                           const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const sdc_weight *w = bind_v(b, optional, ndim, shape, fmt, ap);
    va_end(ap);
    return w;
}

/* Formats "<prefix>" into buf; 0 (and b->st set) if it does not fit. */
static int prefix_v(sdc_binder *b, char *buf, size_t cap, const char *fmt, va_list ap) {
    int n = vsnprintf(buf, cap, fmt, ap);
    if (n < 0 || (size_t)n >= cap) {
        if (b->st == SDC_OK) b->st = sdc_fail(SDC_ERR_INTERNAL, "weight name too long");
        return 0;
    }
    return 1;
}

void sdc_bind_linear(sdc_binder *b, sdc_linear_w *l, int in, int out, int bias,
                     const char *fmt, ...) {
    char p[224];
    va_list ap;
    va_start(ap, fmt);
    int ok = prefix_v(b, p, sizeof p, fmt, ap);
    va_end(ap);
    l->in = in, l->out = out, l->w = l->b = NULL;
    if (!ok) return;
    int64_t ws[2] = {out, in}, bs[1] = {out};
    l->w = sdc_bind(b, 0, 2, ws, "%s.weight", p);
    if (bias) l->b = sdc_bind(b, 0, 1, bs, "%s.bias", p);
}

void sdc_bind_conv(sdc_binder *b, sdc_conv_w *c, int in, int out, int k, const char *fmt, ...) {
    char p[224];
    va_list ap;
    va_start(ap, fmt);
    int ok = prefix_v(b, p, sizeof p, fmt, ap);
    va_end(ap);
    c->in = in, c->out = out, c->k = k, c->w = c->b = NULL;
    if (!ok) return;
    int64_t ws[4] = {out, in, k, k}, bs[1] = {out};
    c->w = sdc_bind(b, 0, 4, ws, "%s.weight", p);
    c->b = sdc_bind(b, 0, 1, bs, "%s.bias", p);
}

void sdc_bind_norm(sdc_binder *b, sdc_norm_w *n, int C, const char *fmt, ...) {
    char p[224];
    va_list ap;
    va_start(ap, fmt);
    int ok = prefix_v(b, p, sizeof p, fmt, ap);
    va_end(ap);
    n->C = C, n->g = n->b = NULL;
    if (!ok) return;
    int64_t s[1] = {C};
    n->g = sdc_bind(b, 0, 1, s, "%s.weight", p);
    n->b = sdc_bind(b, 0, 1, s, "%s.bias", p);
}

void sdc_linear_fwd(sdc_backend *be, const sdc_linear_w *l, float *y, const float *x, int M,
                    const float *acc) {
    be->linear(be, y, x, l->w, l->b, acc, M, l->out, l->in);
}

void sdc_linear_map_fwd(sdc_backend *be, const sdc_linear_w *l, float *y, const float *x, int N,
                        int HW, const float *acc, int to_tokens) {
    be->linear_map(be, y, x, l->w, l->b, acc, N, HW, l->in, l->out, to_tokens);
}

void sdc_conv_fwd(sdc_backend *be, const sdc_conv_w *c, float *y, const float *x, int N, int H,
                  int W, int stride, const float *acc) {
    be->conv2d(be, y, x, N, c->in, H, W, c->w, c->b, c->out, c->k, c->k, stride, c->k / 2, acc);
}

/* ---- ResnetBlock2D --------------------------------------------------------- */

void sdc_bind_resnet(sdc_binder *b, sdc_resnet_w *r, int in, int out, int temb_dim, int groups,
                     float eps, const char *prefix) {
    r->in = in, r->out = out, r->groups = groups, r->eps = eps;
    sdc_bind_norm(b, &r->norm1, in, "%s.norm1", prefix);
    sdc_bind_conv(b, &r->conv1, in, out, 3, "%s.conv1", prefix);
    r->temb.w = r->temb.b = NULL;
    if (temb_dim > 0) sdc_bind_linear(b, &r->temb, temb_dim, out, 1, "%s.time_emb_proj", prefix);
    sdc_bind_norm(b, &r->norm2, out, "%s.norm2", prefix);
    sdc_bind_conv(b, &r->conv2, out, out, 3, "%s.conv2", prefix);
    r->shortcut.w = r->shortcut.b = NULL;
    if (in != out) sdc_bind_conv(b, &r->shortcut, in, out, 1, "%s.conv_shortcut", prefix);
}

/* The middle of a ResNet block, shared by both forms below: from the
 * normalised, activated input xn [N, in, H, W] to
 * h = silu(norm2(conv1(xn) + temb_proj(temb_act))) [N, out, H, W], in the
 * arena (caller resets). */
static float *resnet_inner(const sdc_resnet_w *r, sdc_backend *be, sdc_arena *a,
                           const float *xn, int N, int H, int W, const float *temb_act) {
    int64_t HW = (int64_t)H * W;
    float *h = sdc_arena_alloc(a, (size_t)N * r->out * HW); /* [N, out, H, W] */
    sdc_conv_fwd(be, &r->conv1, h, xn, N, H, W, 1, NULL);
    float *e = NULL; /* [N, out]: the timestep embedding's projection */
    if (r->temb.w) {
        /* allocated whenever the block has the weights: temb_act is NULL
         * while planning, and planning and running must allocate alike */
        e = sdc_arena_alloc(a, (size_t)N * r->out);
        if (temb_act) sdc_linear_fwd(be, &r->temb, e, temb_act, N, NULL);
        else e = NULL;
    }
    /* h + e[n, c], normalised: the add fused into GroupNorm's passes */
    be->group_norm(be, h, h, e, N, r->out, (int)HW, r->groups, r->norm2.g, r->norm2.b, r->eps, 1);
    return h;
}

void sdc_resnet_fwd(const sdc_resnet_w *r, sdc_backend *be, sdc_arena *a, float *y,
                    const float *x, int N, int H, int W, const float *temb_act) {
    assert(!y || y != x || r->in == r->out); /* y, x are NULL while planning */
    size_t mark = sdc_arena_mark(a);
    int64_t HW = (int64_t)H * W;
    float *t = sdc_arena_alloc(a, (size_t)N * r->in * HW);  /* [N, in, H, W] */
    be->group_norm(be, t, x, NULL, N, r->in, (int)HW, r->groups, r->norm1.g, r->norm1.b, r->eps, 1);
    float *h = resnet_inner(r, be, a, t, N, H, W, temb_act);
    const float *res = x;
    if (r->shortcut.w) {
        /* t is dead after conv1; reuse it when it is large enough */
        float *s = r->in >= r->out ? t : sdc_arena_alloc(a, (size_t)N * r->out * HW);
        sdc_conv_fwd(be, &r->shortcut, s, x, N, H, W, 1, NULL);
        res = s;
    }
    sdc_conv_fwd(be, &r->conv2, y, h, N, H, W, 1, res);
    sdc_arena_reset(a, mark);
}

void sdc_resnet_fwd_consume(const sdc_resnet_w *r, sdc_backend *be, sdc_arena *a, float *y,
                            float *x, int N, int H, int W, const float *temb_act) {
    assert(r->shortcut.w && r->in != r->out);
    size_t mark = sdc_arena_mark(a);
    int64_t HW = (int64_t)H * W;
    sdc_conv_fwd(be, &r->shortcut, y, x, N, H, W, 1, NULL);
    be->group_norm(be, x, x, NULL, N, r->in, (int)HW, r->groups, r->norm1.g, r->norm1.b, r->eps, 1);
    float *h = resnet_inner(r, be, a, x, N, H, W, temb_act);
    sdc_conv_fwd(be, &r->conv2, y, h, N, H, W, 1, y);
    sdc_arena_reset(a, mark);
}

/* ---- VAE mid-block attention ------------------------------------------------ */

void sdc_bind_vae_attn(sdc_binder *b, sdc_vae_attn_w *w, int C, int groups, float eps,
                       const char *prefix) {
    w->C = C, w->groups = groups, w->eps = eps;
    sdc_bind_norm(b, &w->norm, C, "%s.group_norm", prefix);
    sdc_bind_linear(b, &w->q, C, C, 1, "%s.to_q", prefix);
    sdc_bind_linear(b, &w->k, C, C, 1, "%s.to_k", prefix);
    sdc_bind_linear(b, &w->v, C, C, 1, "%s.to_v", prefix);
    sdc_bind_linear(b, &w->out, C, C, 1, "%s.to_out.0", prefix);
}

void sdc_vae_attn_fwd(const sdc_vae_attn_w *w, sdc_backend *be, sdc_arena *a, float *x, int N,
                      int HW) {
    size_t mark = sdc_arena_mark(a);
    int C = w->C;
    size_t n = (size_t)N * C * HW;
    float *t = sdc_arena_alloc(a, n); /* [N, C, HW], later [N, HW, C] */
    float *q = sdc_arena_alloc(a, n), *k = sdc_arena_alloc(a, n), *v = sdc_arena_alloc(a, n);
    be->group_norm(be, t, x, NULL, N, C, HW, w->groups, w->norm.g, w->norm.b, w->eps, 0);
    /* q, k, v as tokens [N, HW, C] straight from the map */
    sdc_linear_map_fwd(be, &w->q, q, t, N, HW, NULL, 1);
    sdc_linear_map_fwd(be, &w->k, k, t, N, HW, NULL, 1);
    sdc_linear_map_fwd(be, &w->v, v, t, N, HW, NULL, 1);
    float scale = 1.0f / sqrtf((float)C);
    for (int i = 0; i < N; i++) {
        size_t o = (size_t)i * HW * C;
        be->attention(be, sdc_at(t, o), sdc_at(q, o), C, sdc_at(k, o), sdc_at(v, o), C, HW, HW, 1,
                      C, scale, 0);
    }
    sdc_linear_map_fwd(be, &w->out, x, t, N, HW, x, 0); /* x += out(t), back in the map */
    sdc_arena_reset(a, mark);
}

/* ---- weight residency ------------------------------------------------------ */

static void page(const sdc_pager *pg, const sdc_weight *const *w, int n, sdc_residency r) {
    if (pg) pg->be->weights(pg->be, w, n, r);
}

void sdc_page_linear(const sdc_pager *pg, const sdc_linear_w *l, sdc_residency r) {
    const sdc_weight *w[] = {l->w, l->b};
    page(pg, w, 2, r);
}

void sdc_page_conv(const sdc_pager *pg, const sdc_conv_w *c, sdc_residency r) {
    const sdc_weight *w[] = {c->w, c->b};
    page(pg, w, 2, r);
}

void sdc_page_norm(const sdc_pager *pg, const sdc_norm_w *n, sdc_residency r) {
    const sdc_weight *w[] = {n->g, n->b};
    page(pg, w, 2, r);
}

void sdc_page_resnet(const sdc_pager *pg, const sdc_resnet_w *x, sdc_residency r) {
    const sdc_weight *w[] = {x->norm1.g, x->norm1.b, x->conv1.w,    x->conv1.b,
                             x->temb.w,  x->temb.b,  x->norm2.g,    x->norm2.b,
                             x->conv2.w, x->conv2.b, x->shortcut.w, x->shortcut.b};
    page(pg, w, (int)(sizeof w / sizeof *w), r);
}

void sdc_page_vae_attn(const sdc_pager *pg, const sdc_vae_attn_w *x, sdc_residency r) {
    const sdc_weight *w[] = {x->norm.g, x->norm.b, x->q.w, x->q.b,   x->k.w,
                             x->k.b,    x->v.w,    x->v.b, x->out.w, x->out.b};
    page(pg, w, (int)(sizeof w / sizeof *w), r);
}

/* ---- arena helpers ---------------------------------------------------------- */

float *sdc_settle(sdc_backend *be, sdc_arena *a, size_t mark, float *src, size_t *src_off,
                  size_t n) {
    sdc_arena_reset(a, mark);
    float *dst = sdc_arena_alloc(a, n);
    if (sdc_arena_mark(a) <= *src_off) {
        be->copy(be, dst, src, (int64_t)n);
        *src_off = mark;
        return dst;
    }
    sdc_arena_reset(a, *src_off);
    return sdc_arena_alloc(a, n);
}

float *sdc_upsample2x_in_place(sdc_backend *be, sdc_arena *a, float *x, size_t x_off, int N,
                               int C, int H, int W) {
    size_t P = (size_t)N * C, hw = (size_t)H * W; /* planes of hw floats, at p * hw */
    sdc_arena_reset(a, x_off);
    float *y = sdc_arena_alloc(a, P * 4 * hw); /* plane p at 4 * p * hw */
    assert(!y || y == x);
    float *tmp = sdc_arena_alloc(a, hw);
    /* planes [p0, p1) with p1 <= 4 * p0: their destination [4 p0 hw, 4 p1 hw)
     * lies above their own sources and those of the planes below p0 */
    size_t p1 = P;
    while (p1 > 1) {
        size_t p0 = (p1 + 3) / 4;
        be->upsample2x(be, sdc_at(y, 4 * p0 * hw), sdc_atc(x, p0 * hw), 1, (int)(p1 - p0), H, W);
        p1 = p0;
    }
    be->copy(be, tmp, x, (int64_t)hw);
    be->upsample2x(be, y, tmp, 1, 1, H, W);
    sdc_arena_reset(a, x_off);
    return sdc_arena_alloc(a, P * 4 * hw);
}
