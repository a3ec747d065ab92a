/* The ops of backends/backend.h on the OpenCL device: argument set-up and
 * launch geometry; the arithmetic is in the kernels/ folder. */
#if SDC_HAVE_OPENCL
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/opencl/cl_impl.h"

/* ---- GEMM: linear, linear_map, conv2d (kernels/gemm.cl) ------------------------ */

/* Work-group tile 64x64, 16-deep k slices, 16x16 items of 4x4 sums each. */
#define G_TM 64
#define G_TN 64
#define G_TK 16
#define G_R 4
#define G_L (G_TM / G_R)

typedef struct gemm_job {
    int a_mode, c_mode;   /* gemm.cl's A_MODE, C_MODE */
    float *c;             /* C of image 0 */
    cl_uint ldc, c_bs;    /* row stride, image stride (acc alike) */
    const float *a;
    cl_uint lda, a_bs;
    const float *acc;     /* NULL: none */
    const sdc_weight *w, *bias;
    int M, N, K, batch;
    int cH, cW, cWo, kh, kw, stride, pad; /* A_MODE 2 */
} gemm_job;

static void run_gemm(clb *b, const gemm_job *g) {
    int whalf = 0;
    cl_mem wm = clb_weight_get(b, g->w, &whalf);
    if (!wm) return;
    char opts[160];
    snprintf(opts, sizeof opts, "-DTM=%d -DTN=%d -DTK=%d -DRM=%d -DRN=%d -DA_MODE=%d -DC_MODE=%d -DB_HALF=%d",
             G_TM, G_TN, G_TK, G_R, G_R, g->a_mode, g->c_mode, whalf);
    clb_args a = clb_args_start(b, clb_kernel_get(b, "gemm", opts, "gemm"));
    clb_arg_act(&a, g->c);
    clb_arg_u32(&a, g->c_bs);
    clb_arg_u32(&a, g->ldc);
    clb_arg_act(&a, g->a);
    clb_arg_u32(&a, g->a_bs);
    clb_arg_u32(&a, g->lda);
    clb_arg_mem(&a, wm);
    clb_arg_w(&a, g->bias);
    clb_arg_act(&a, g->acc);
    clb_arg_i32(&a, g->acc != NULL);
    clb_arg_i32(&a, g->M);
    clb_arg_i32(&a, g->N);
    clb_arg_i32(&a, g->K);
    clb_arg_i32(&a, g->cH);
    clb_arg_i32(&a, g->cW);
    clb_arg_i32(&a, g->cWo);
    clb_arg_i32(&a, g->kh);
    clb_arg_i32(&a, g->kw);
    clb_arg_i32(&a, g->stride);
    clb_arg_i32(&a, g->pad);
    const size_t global[3] = {(size_t)(g->N + G_TN - 1) / G_TN * G_L,
                              (size_t)(g->M + G_TM - 1) / G_TM * G_L, (size_t)g->batch};
    const size_t local[3] = {G_L, G_L, 1};
    clb_launch(&a, 3, global, local);
}

static void cl_linear(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                      const sdc_weight *bias, const float *acc, int M, int N, int K) {
    clb *b = clb_of(be);
    if (clb_begin(b, "linear [%d,%d]x[%d,%d]^T", M, K, N, K)) return;
    gemm_job g = {.a_mode = 0, .c_mode = 0, .c = y, .ldc = (cl_uint)N, .a = x, .lda = (cl_uint)K,
                  .acc = acc, .w = W, .bias = bias, .M = M, .N = N, .K = K, .batch = 1};
    run_gemm(b, &g);
}

static void cl_linear_map(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                          const sdc_weight *bias, const float *acc, int N, int HW, int C, int O,
                          int to_tokens) {
    clb *b = clb_of(be);
    if (clb_begin(b, "linear_map [%d,%d,%d]->%d %s", N, HW, C, O,
                  to_tokens ? "to tokens" : "to map"))
        return;
    /* M = pixels, K = channels, N = outputs, one image per z */
    gemm_job g = {.c = y, .a = x, .w = W, .bias = bias, .M = HW, .N = O, .K = C, .batch = N,
                  .a_bs = (cl_uint)C * (cl_uint)HW, .c_bs = (cl_uint)O * (cl_uint)HW};
    if (to_tokens) { /* x [C, HW] -> y [HW, O] */
        g.a_mode = 1, g.lda = (cl_uint)HW, g.c_mode = 0, g.ldc = (cl_uint)O;
    } else { /* x [HW, C] -> y [O, HW] (+ acc) */
        g.a_mode = 0, g.lda = (cl_uint)C, g.c_mode = 1, g.ldc = (cl_uint)HW, g.acc = acc;
    }
    run_gemm(b, &g);
}

static void cl_conv2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                      const sdc_weight *w, const sdc_weight *bias, int O, int kh, int kw,
                      int stride, int pad, const float *acc) {
    clb *b = clb_of(be);
    if (clb_begin(b, "conv2d [%d,%d,%d,%d]->%d %dx%d/%d pad %d", N, C, H, W, O, kh, kw, stride,
                  pad))
        return;
    /* Winograd for the 3x3 "same" convs at least a tile (4x4) wide
     * (cl_winograd.c); SDC_CL_WINOGRAD=0: the implicit GEMM for all */
    const char *wino = getenv("SDC_CL_WINOGRAD");
    if (kh == 3 && kw == 3 && stride == 1 && pad == 1 && H >= 4 && W >= 4 &&
        !(wino && strcmp(wino, "0") == 0) &&
        clb_conv_winograd(b, y, x, N, C, H, W, w, bias, O, acc))
        return;
    const int Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    /* M = output pixels, N = O, K = C kh kw; y [O, Ho Wo] per image */
    gemm_job g = {.c_mode = 1, .c = y, .ldc = (cl_uint)(Ho * Wo), .c_bs = (cl_uint)O * Ho * Wo,
                  .a = x, .a_bs = (cl_uint)C * H * W, .acc = acc, .w = w, .bias = bias,
                  .M = Ho * Wo, .N = O, .K = C * kh * kw, .batch = N};
    if (kh == 1 && kw == 1 && stride == 1 && pad == 0) {
        g.a_mode = 1, g.lda = (cl_uint)(H * W); /* a plain GEMM on the channel-major map */
    } else {
        g.a_mode = 2;
        g.cH = H, g.cW = W, g.cWo = Wo, g.kh = kh, g.kw = kw, g.stride = stride, g.pad = pad;
    }
    run_gemm(b, &g);
}

/* ---- norms (kernels/norm.cl) ------------------------------------------------------ */

#define NORM_WG 256
static const char k_norm_opts[] = "-DWG=256";

static void cl_group_norm(sdc_backend *be, float *y, const float *x, const float *add, int N,
                          int C, int HW, int G, const sdc_weight *gamma, const sdc_weight *beta,
                          float eps, int silu) {
    clb *b = clb_of(be);
    if (clb_begin(b, "group_norm [%d,%d,%d] G=%d%s%s", N, C, HW, G, add ? " +add" : "",
                  silu ? " silu" : ""))
        return;
    clb_args a = clb_args_start(b, clb_kernel_get(b, "norm", k_norm_opts, "group_norm"));
    clb_arg_act(&a, y);
    clb_arg_act(&a, x);
    clb_arg_act(&a, add);
    clb_arg_i32(&a, add != NULL);
    clb_arg_i32(&a, C);
    clb_arg_i32(&a, HW);
    clb_arg_i32(&a, G);
    clb_arg_w(&a, gamma);
    clb_arg_w(&a, beta);
    clb_arg_f32(&a, eps);
    clb_arg_i32(&a, silu);
    const size_t global = (size_t)N * G * NORM_WG, local = NORM_WG;
    clb_launch(&a, 1, &global, &local);
}

static void cl_layer_norm(sdc_backend *be, float *y, const float *x, int rows, int D,
                          const sdc_weight *gamma, const sdc_weight *beta, float eps) {
    clb *b = clb_of(be);
    if (clb_begin(b, "layer_norm [%d,%d]", rows, D)) return;
    clb_args a = clb_args_start(b, clb_kernel_get(b, "norm", k_norm_opts, "layer_norm"));
    clb_arg_act(&a, y);
    clb_arg_act(&a, x);
    clb_arg_i32(&a, D);
    clb_arg_w(&a, gamma);
    clb_arg_w(&a, beta);
    clb_arg_f32(&a, eps);
    const size_t global = (size_t)rows * NORM_WG, local = NORM_WG;
    clb_launch(&a, 1, &global, &local);
}

/* ---- attention (kernels/attention.cl) ------------------------------------------- */

#define ATT_BQ 64
#define SM_TM 64 /* the partially fused softmax's products (softmax.cl) */
#define SM_TN 64
#define SM_TK 16
#define SM_R 4
#define SM_L (SM_TM / SM_R)
#define SM_WG 64

/* FlashAttention (attention.cl): the score matrix is never written. */
static void attention_flash(clb *b, float *out, const float *q, int q_stride, const float *k,
                            const float *v, int kv_stride, int Sq, int Sk, int heads, int dh,
                            float scale, int causal) {
    /* K and V tiles of BK keys: 2 BK dh floats of local memory, <= 20 KiB */
    const int bk = dh <= 64 ? 32 : dh <= 160 ? 16 : 8;
    char opts[64];
    snprintf(opts, sizeof opts, "-DDH=%d -DBQ=%d -DBK=%d", dh, ATT_BQ, bk);
    clb_args a = clb_args_start(b, clb_kernel_get(b, "attention", opts, "attention"));
    clb_arg_act(&a, out);
    clb_arg_act(&a, q);
    clb_arg_i32(&a, q_stride);
    clb_arg_act(&a, k);
    clb_arg_act(&a, v);
    clb_arg_i32(&a, kv_stride);
    clb_arg_i32(&a, Sq);
    clb_arg_i32(&a, Sk);
    clb_arg_i32(&a, heads);
    clb_arg_f32(&a, scale);
    clb_arg_i32(&a, causal);
    const size_t global[2] = {(size_t)Sq, (size_t)heads}, local[2] = {ATT_BQ, 1};
    clb_launch(&a, 2, global, local);
}

/* The partially fused softmax (softmax.cl), over chunks of query rows whose
 * scores (all heads) fit the Winograd scratch.  0: they cannot (Sk too long). */
static int attention_softmax(clb *b, float *out, const float *q, int q_stride, const float *k,
                             const float *v, int kv_stride, int Sq, int Sk, int heads, int dh,
                             float scale, int causal) {
    const int64_t per_row = (int64_t)heads * (Sk + 2); /* scores and (max, 1/sum) */
    int64_t R = (int64_t)(b->wscratch_bytes / 4) / per_row;
    if (R >= SM_TM) R -= R % SM_TM;
    if (R > Sq) R = Sq;
    if (!b->wscratch || R < 1 || Sk < 1) return 0;
    char opts[96];
    snprintf(opts, sizeof opts, "-DDH=%d -DTM=%d -DTN=%d -DTK=%d -DRM=%d -DRN=%d -DWG=%d", dh,
             SM_TM, SM_TN, SM_TK, SM_R, SM_R, SM_WG);
    cl_kernel ks = clb_kernel_get(b, "softmax", opts, "att_scores");
    cl_kernel kst = clb_kernel_get(b, "softmax", opts, "att_stats");
    cl_kernel kpv = clb_kernel_get(b, "softmax", opts, "att_pv");
    const cl_uint so = 0, sto = (cl_uint)(R * heads * Sk);
    for (int i0 = 0; i0 < Sq && !b->failed; i0 += (int)R) {
        const int r = (int)(Sq - i0 < R ? Sq - i0 : R);
        clb_args a = clb_args_start(b, ks);
        clb_arg_mem(&a, b->wscratch);
        clb_arg_u32(&a, so);
        clb_arg_act(&a, q);
        clb_arg_i32(&a, q_stride);
        clb_arg_act(&a, k);
        clb_arg_i32(&a, kv_stride);
        clb_arg_i32(&a, heads);
        clb_arg_i32(&a, i0);
        clb_arg_i32(&a, r);
        clb_arg_i32(&a, Sk);
        clb_arg_f32(&a, scale);
        clb_arg_i32(&a, causal);
        const size_t gs[3] = {(size_t)(Sk + SM_TN - 1) / SM_TN * SM_L,
                              (size_t)(r + SM_TM - 1) / SM_TM * SM_L, (size_t)heads};
        const size_t ls[3] = {SM_L, SM_L, 1};
        clb_launch(&a, 3, gs, ls);

        a = clb_args_start(b, kst);
        clb_arg_mem(&a, b->wscratch);
        clb_arg_u32(&a, so);
        clb_arg_mem(&a, b->wscratch);
        clb_arg_u32(&a, sto);
        clb_arg_i32(&a, r);
        clb_arg_i32(&a, Sk);
        const size_t gst[2] = {(size_t)r * SM_WG, (size_t)heads}, lst[2] = {SM_WG, 1};
        clb_launch(&a, 2, gst, lst);

        a = clb_args_start(b, kpv);
        clb_arg_act(&a, out);
        clb_arg_mem(&a, b->wscratch);
        clb_arg_u32(&a, so);
        clb_arg_mem(&a, b->wscratch);
        clb_arg_u32(&a, sto);
        clb_arg_act(&a, v);
        clb_arg_i32(&a, kv_stride);
        clb_arg_i32(&a, heads);
        clb_arg_i32(&a, i0);
        clb_arg_i32(&a, r);
        clb_arg_i32(&a, Sk);
        const size_t gpv[3] = {(size_t)(dh + SM_TN - 1) / SM_TN * SM_L,
                               (size_t)(r + SM_TM - 1) / SM_TM * SM_L, (size_t)heads};
        clb_launch(&a, 3, gpv, ls);
    }
    return 1;
}

static void cl_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                         const float *k, const float *v, int kv_stride, int Sq, int Sk, int heads,
                         int dh, float scale, int causal) {
    clb *b = clb_of(be);
    if (clb_begin(b, "attention q[%d,%d] kv[%d,%d] %dx%d%s", Sq, q_stride, Sk, kv_stride, heads,
                  dh, causal ? " causal" : ""))
        return;
    if (dh < 1 || dh > 512) {
        clb_fail_msg(b, "head dim %d outside 1..512", dh);
        return;
    }
    /* The paper's choice: FlashAttention, register-hungry (a query row and
     * its output per item), at head dim <= 40; the partially fused softmax
     * above.  SDC_CL_ATTENTION=flash|softmax takes one for every shape. */
    const char *force = getenv("SDC_CL_ATTENTION");
    int flash = dh <= 40;
    if (force && strcmp(force, "flash") == 0) flash = 1;
    if (force && strcmp(force, "softmax") == 0) flash = 0;
    if (!flash &&
        attention_softmax(b, out, q, q_stride, k, v, kv_stride, Sq, Sk, heads, dh, scale, causal))
        return;
    attention_flash(b, out, q, q_stride, k, v, kv_stride, Sq, Sk, heads, dh, scale, causal);
}

/* ---- elementwise and layout (kernels/elementwise.cl) ------------------------------ */

#define EW_LOCAL 64
static const size_t k_ew_local = EW_LOCAL;

static cl_kernel ew_kernel(clb *b, const char *name) {
    return clb_kernel_get(b, "elementwise", "", name);
}

static void unary(sdc_backend *be, const char *name, float *y, const float *x, int64_t n) {
    clb *b = clb_of(be);
    if (n <= 0 || clb_begin(b, "%s [%lld]", name, (long long)n)) return;
    clb_args a = clb_args_start(b, ew_kernel(b, name));
    clb_arg_act(&a, y);
    clb_arg_act(&a, x);
    clb_arg_u32(&a, (cl_uint)n);
    const size_t global = (size_t)n;
    clb_launch(&a, 1, &global, &k_ew_local);
}

static void cl_silu(sdc_backend *be, float *y, const float *x, int64_t n) {
    unary(be, "silu", y, x, n);
}
static void cl_gelu(sdc_backend *be, float *y, const float *x, int64_t n) {
    unary(be, "gelu", y, x, n);
}
static void cl_quick_gelu(sdc_backend *be, float *y, const float *x, int64_t n) {
    unary(be, "quick_gelu", y, x, n);
}
static void cl_relu(sdc_backend *be, float *y, const float *x, int64_t n) {
    unary(be, "relu", y, x, n);
}

static void cl_add(sdc_backend *be, float *y, const float *x, const float *z, int64_t n) {
    clb *b = clb_of(be);
    if (n <= 0 || clb_begin(b, "add [%lld]", (long long)n)) return;
    clb_args a = clb_args_start(b, ew_kernel(b, "add"));
    clb_arg_act(&a, y);
    clb_arg_act(&a, x);
    clb_arg_act(&a, z);
    clb_arg_u32(&a, (cl_uint)n);
    const size_t global = (size_t)n;
    clb_launch(&a, 1, &global, &k_ew_local);
}

static void cl_lerp(sdc_backend *be, float *y, const float *x, const float *z, float s,
                    int64_t n) {
    clb *b = clb_of(be);
    if (n <= 0 || clb_begin(b, "lerp [%lld]", (long long)n)) return;
    clb_args a = clb_args_start(b, ew_kernel(b, "lerp"));
    clb_arg_act(&a, y);
    clb_arg_act(&a, x);
    clb_arg_act(&a, z);
    clb_arg_f32(&a, s);
    clb_arg_u32(&a, (cl_uint)n);
    const size_t global = (size_t)n;
    clb_launch(&a, 1, &global, &k_ew_local);
}

static void cl_axpby(sdc_backend *be, float *y, float av, const float *x, float bv,
                     const float *z, int64_t n) {
    clb *b = clb_of(be);
    if (n <= 0 || clb_begin(b, "axpby [%lld]", (long long)n)) return;
    clb_args a = clb_args_start(b, ew_kernel(b, "axpby"));
    clb_arg_act(&a, y);
    clb_arg_f32(&a, av);
    clb_arg_act(&a, x);
    clb_arg_f32(&a, bv);
    clb_arg_act(&a, z);
    clb_arg_i32(&a, z != NULL);
    clb_arg_u32(&a, (cl_uint)n);
    const size_t global = (size_t)n;
    clb_launch(&a, 1, &global, &k_ew_local);
}

static void cl_geglu(sdc_backend *be, float *y, const float *x, int rows, int D) {
    clb *b = clb_of(be);
    if (clb_begin(b, "geglu [%d,%d]", rows, D)) return;
    clb_args a = clb_args_start(b, ew_kernel(b, "geglu"));
    clb_arg_act(&a, y);
    clb_arg_act(&a, x);
    clb_arg_u32(&a, (cl_uint)D);
    clb_arg_u32(&a, (cl_uint)rows * (cl_uint)D);
    const size_t global = (size_t)rows * D;
    clb_launch(&a, 1, &global, &k_ew_local);
}

static void cl_upsample2x(sdc_backend *be, float *y, const float *x, int N, int C, int H,
                          int W) {
    clb *b = clb_of(be);
    if (clb_begin(b, "upsample2x [%d,%d,%d,%d]", N, C, H, W)) return;
    const size_t n = (size_t)N * C * 4 * H * W;
    clb_args a = clb_args_start(b, ew_kernel(b, "upsample2x"));
    clb_arg_act(&a, y);
    clb_arg_act(&a, x);
    clb_arg_u32(&a, (cl_uint)H);
    clb_arg_u32(&a, (cl_uint)W);
    clb_arg_u32(&a, (cl_uint)n);
    clb_launch(&a, 1, &n, &k_ew_local);
}

static void cl_pad2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                     int top, int bottom, int left, int right) {
    clb *b = clb_of(be);
    if (clb_begin(b, "pad2d [%d,%d,%d,%d] %d %d %d %d", N, C, H, W, top, bottom, left, right))
        return;
    const int Hp = H + top + bottom, Wp = W + left + right;
    const size_t n = (size_t)N * C * Hp * Wp;
    clb_args a = clb_args_start(b, ew_kernel(b, "pad2d"));
    clb_arg_act(&a, y);
    clb_arg_act(&a, x);
    clb_arg_u32(&a, (cl_uint)H);
    clb_arg_u32(&a, (cl_uint)W);
    clb_arg_u32(&a, (cl_uint)Hp);
    clb_arg_u32(&a, (cl_uint)Wp);
    clb_arg_i32(&a, top);
    clb_arg_i32(&a, left);
    clb_arg_u32(&a, (cl_uint)n);
    clb_launch(&a, 1, &n, &k_ew_local);
}

static void cl_transpose(sdc_backend *be, float *y, const float *x, int N, int H, int W) {
    clb *b = clb_of(be);
    if (clb_begin(b, "transpose [%d,%d,%d]", N, H, W)) return;
    clb_args a = clb_args_start(b, ew_kernel(b, "transpose"));
    clb_arg_act(&a, y);
    clb_arg_act(&a, x);
    clb_arg_u32(&a, (cl_uint)H);
    clb_arg_u32(&a, (cl_uint)W);
    const size_t global[3] = {(size_t)W, (size_t)H, (size_t)N}, local[3] = {16, 16, 1};
    clb_launch(&a, 3, global, local);
}

static void cl_concat(sdc_backend *be, float *y, const float *x, int Ca, const float *z, int Cb,
                      int N, int HW) {
    clb *b = clb_of(be);
    if (clb_begin(b, "concat [%d,%d+%d,%d]", N, Ca, Cb, HW)) return;
    const size_t n = (size_t)N * (Ca + Cb) * HW;
    clb_args a = clb_args_start(b, ew_kernel(b, "concat"));
    clb_arg_act(&a, y);
    clb_arg_act(&a, x);
    clb_arg_act(&a, z);
    clb_arg_u32(&a, (cl_uint)Ca * (cl_uint)HW);
    clb_arg_u32(&a, (cl_uint)Cb * (cl_uint)HW);
    clb_arg_u32(&a, (cl_uint)n);
    clb_launch(&a, 1, &n, &k_ew_local);
}

/* memmove semantics: a buffer copy where the ranges are disjoint, else
 * through the scratch buffer a chunk at a time, in the order that reads
 * every source element before it is overwritten. */
static void cl_copy(sdc_backend *be, float *y, const float *x, int64_t n) {
    clb *b = clb_of(be);
    cl_mem ym, xm;
    cl_uint yo, xo;
    if (n <= 0 || y == x || clb_begin(b, "copy [%lld]", (long long)n)) return;
    if (!clb_addr(b, y, &ym, &yo) || !clb_addr(b, x, &xm, &xo)) return;
    const size_t es = b->esize;
    cl_int err = CL_SUCCESS;
    if (ym != xm || (int64_t)yo + n <= xo || (int64_t)xo + n <= yo) {
        err = b->cl->clEnqueueCopyBuffer(b->q, xm, ym, xo * es, yo * es, (size_t)n * es, 0, NULL,
                                         NULL);
    } else {
        const int64_t chunk = (int64_t)(CLB_SCRATCH / es);
        for (int64_t done = 0; err == CL_SUCCESS && done < n; done += chunk) {
            const int64_t c = n - done < chunk ? n - done : chunk;
            const int64_t i = yo > xo ? n - done - c : done; /* y after x: from the end */
            err = b->cl->clEnqueueCopyBuffer(b->q, xm, b->scratch, ((size_t)xo + i) * es, 0,
                                             (size_t)c * es, 0, NULL, NULL);
            if (err == CL_SUCCESS)
                err = b->cl->clEnqueueCopyBuffer(b->q, b->scratch, ym, 0, ((size_t)yo + i) * es,
                                                 (size_t)c * es, 0, NULL, NULL);
        }
    }
    if (err != CL_SUCCESS) clb_fail(b, "clEnqueueCopyBuffer", err);
}

/* ids go to the device through a small buffer, CLB_IDS_CAP at a time
 * (blocking writes: the host array is consumed before the op returns) */
static void cl_embed(sdc_backend *be, float *y, const int32_t *ids, int n,
                     const sdc_weight *table, const sdc_weight *pos, int D) {
    clb *b = clb_of(be);
    if (n <= 0 || clb_begin(b, "embed [%d] x %d", n, D)) return;
    cl_kernel k = ew_kernel(b, "embed");
    int thalf = 0;
    cl_mem tm = clb_weight_get(b, table, &thalf);
    if (!tm) return;
    for (int i0 = 0; i0 < n && !b->failed; i0 += CLB_IDS_CAP) {
        const int c = n - i0 < CLB_IDS_CAP ? n - i0 : CLB_IDS_CAP;
        cl_int err = b->cl->clEnqueueWriteBuffer(b->q, b->ids, CL_TRUE, 0, (size_t)c * 4,
                                                 ids + i0, 0, NULL, NULL);
        if (err != CL_SUCCESS) {
            clb_fail(b, "clEnqueueWriteBuffer", err);
            return;
        }
        clb_args a = clb_args_start(b, k);
        clb_arg_act(&a, y + (int64_t)i0 * D);
        clb_arg_mem(&a, b->ids);
        clb_arg_mem(&a, tm);
        clb_arg_i32(&a, thalf);
        clb_arg_w(&a, pos);
        clb_arg_u32(&a, (cl_uint)i0);
        clb_arg_u32(&a, (cl_uint)D);
        clb_arg_u32(&a, (cl_uint)c * (cl_uint)D);
        const size_t global = (size_t)c * D;
        clb_launch(&a, 1, &global, &k_ew_local);
    }
}

/* one launch per row, t passed by value */
static void cl_timestep_embed(sdc_backend *be, float *y, const float *t, int n, int dim) {
    clb *b = clb_of(be);
    if (clb_begin(b, "timestep_embed [%d,%d]", n, dim)) return;
    cl_kernel k = ew_kernel(b, "timestep_embed");
    for (int r = 0; r < n && !b->failed; r++) {
        clb_args a = clb_args_start(b, k);
        clb_arg_act(&a, y + (int64_t)r * dim);
        clb_arg_f32(&a, t[r]);
        clb_arg_u32(&a, (cl_uint)dim);
        const size_t global = (size_t)dim / 2 + 1;
        clb_launch(&a, 1, &global, &k_ew_local);
    }
}

void clb_fill_ops(sdc_backend *be) {
    be->linear = cl_linear;
    be->linear_map = cl_linear_map;
    be->conv2d = cl_conv2d;
    be->group_norm = cl_group_norm;
    be->layer_norm = cl_layer_norm;
    be->attention = cl_attention;
    be->silu = cl_silu;
    be->gelu = cl_gelu;
    be->quick_gelu = cl_quick_gelu;
    be->relu = cl_relu;
    be->add = cl_add;
    be->lerp = cl_lerp;
    be->axpby = cl_axpby;
    be->geglu = cl_geglu;
    be->upsample2x = cl_upsample2x;
    be->pad2d = cl_pad2d;
    be->transpose = cl_transpose;
    be->concat = cl_concat;
    be->copy = cl_copy;
    be->embed = cl_embed;
    be->timestep_embed = cl_timestep_embed;
}
#else
typedef int sdc_cl_ops_unused; /* built without OpenCL: opencl_stub.c */
#endif
