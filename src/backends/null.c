/* The planning backend: every op does nothing (backend.h).  The model runs
 * against it with a planning arena (NULL activation pointers) to size the
 * arena; nothing here may dereference a pointer. */
#include <stddef.h>

#include "backends/backend.h"
#include "core/error.h"

static void null_linear(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                        const sdc_weight *b, const float *acc, int M, int N, int K) {
    (void)be, (void)y, (void)x, (void)W, (void)b, (void)acc, (void)M, (void)N, (void)K;
}

static void null_linear_map(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                            const sdc_weight *b, const float *acc, int N, int HW, int C, int O,
                            int to_tokens) {
    (void)be, (void)y, (void)x, (void)W, (void)b, (void)acc, (void)N, (void)HW, (void)C;
    (void)O, (void)to_tokens;
}

static void null_conv2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                        const sdc_weight *w, const sdc_weight *b, int O, int kh, int kw,
                        int stride, int pad, const float *acc) {
    (void)be, (void)y, (void)x, (void)N, (void)C, (void)H, (void)W, (void)w, (void)b;
    (void)O, (void)kh, (void)kw, (void)stride, (void)pad, (void)acc;
}

static void null_group_norm(sdc_backend *be, float *y, const float *x, const float *add, int N,
                            int C, int HW, int G, const sdc_weight *gamma,
                            const sdc_weight *beta, float eps, int silu) {
    (void)be, (void)y, (void)x, (void)add, (void)N, (void)C, (void)HW, (void)G, (void)gamma;
    (void)beta, (void)eps, (void)silu;
}

static void null_layer_norm(sdc_backend *be, float *y, const float *x, int rows, int D,
                            const sdc_weight *gamma, const sdc_weight *beta, float eps) {
    (void)be, (void)y, (void)x, (void)rows, (void)D, (void)gamma, (void)beta, (void)eps;
}

static void null_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                           const float *k, const float *v, int kv_stride, int Sq, int Sk,
                           int heads, int dh, float scale, int causal) {
    (void)be, (void)out, (void)q, (void)q_stride, (void)k, (void)v, (void)kv_stride;
    (void)Sq, (void)Sk, (void)heads, (void)dh, (void)scale, (void)causal;
}

static void null_unary(sdc_backend *be, float *y, const float *x, int64_t n) {
    (void)be, (void)y, (void)x, (void)n;
}

static void null_add(sdc_backend *be, float *y, const float *a, const float *b, int64_t n) {
    (void)be, (void)y, (void)a, (void)b, (void)n;
}

static void null_lerp(sdc_backend *be, float *y, const float *a, const float *b, float s,
                      int64_t n) {
    (void)be, (void)y, (void)a, (void)b, (void)s, (void)n;
}

static void null_axpby(sdc_backend *be, float *y, float a, const float *x, float b,
                       const float *z, int64_t n) {
    (void)be, (void)y, (void)a, (void)x, (void)b, (void)z, (void)n;
}

static void null_geglu(sdc_backend *be, float *y, const float *x, int rows, int D) {
    (void)be, (void)y, (void)x, (void)rows, (void)D;
}

static void null_upsample2x(sdc_backend *be, float *y, const float *x, int N, int C, int H,
                            int W) {
    (void)be, (void)y, (void)x, (void)N, (void)C, (void)H, (void)W;
}

static void null_pad2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                       int top, int bottom, int left, int right) {
    (void)be, (void)y, (void)x, (void)N, (void)C, (void)H, (void)W;
    (void)top, (void)bottom, (void)left, (void)right;
}

static void null_transpose(sdc_backend *be, float *y, const float *x, int N, int H, int W) {
    (void)be, (void)y, (void)x, (void)N, (void)H, (void)W;
}

static void null_concat(sdc_backend *be, float *y, const float *a, int Ca, const float *b,
                        int Cb, int N, int HW) {
    (void)be, (void)y, (void)a, (void)Ca, (void)b, (void)Cb, (void)N, (void)HW;
}

static void null_copy(sdc_backend *be, float *y, const float *x, int64_t n) {
    (void)be, (void)y, (void)x, (void)n;
}

static void null_embed(sdc_backend *be, float *y, const int32_t *ids, int n,
                       const sdc_weight *table, const sdc_weight *pos, int D) {
    (void)be, (void)y, (void)ids, (void)n, (void)table, (void)pos, (void)D;
}

static void null_timestep_embed(sdc_backend *be, float *y, const float *t, int n, int dim) {
    (void)be, (void)y, (void)t, (void)n, (void)dim;
}

static sdc_status null_buffer_alloc(sdc_backend *be, size_t bytes, float **base) {
    (void)be, (void)bytes;
    *base = NULL;
    return sdc_fail(SDC_ERR_INTERNAL, "the planning backend has no memory");
}

static void null_buffer_free(sdc_backend *be, float *base) { (void)be, (void)base; }

static void null_weights(sdc_backend *be, const sdc_weight *const *w, int n, sdc_residency r) {
    (void)be, (void)w, (void)n, (void)r;
}

static sdc_status null_sync(sdc_backend *be) {
    (void)be;
    return SDC_OK;
}

static void null_free(sdc_backend *be) { (void)be; }

static sdc_backend g_null = {
    .name = "null",
    .impl = NULL,
    .linear = null_linear,
    .linear_map = null_linear_map,
    .conv2d = null_conv2d,
    .group_norm = null_group_norm,
    .layer_norm = null_layer_norm,
    .attention = null_attention,
    .silu = null_unary,
    .gelu = null_unary,
    .quick_gelu = null_unary,
    .relu = null_unary,
    .add = null_add,
    .lerp = null_lerp,
    .axpby = null_axpby,
    .geglu = null_geglu,
    .upsample2x = null_upsample2x,
    .pad2d = null_pad2d,
    .transpose = null_transpose,
    .concat = null_concat,
    .copy = null_copy,
    .copy_in = null_copy,
    .copy_out = null_copy,
    .embed = null_embed,
    .timestep_embed = null_timestep_embed,
    .buffer_alloc = null_buffer_alloc,
    .buffer_free = null_buffer_free,
    .weights = null_weights,
    .sync = null_sync,
    .free = null_free,
};

sdc_backend *sdc_backend_null(void) { return &g_null; }
