/* Every op of backends/backend.h on every backend this machine has, against
 * the reference ops (backends/ref.h) run on host copies of the same inputs.
 *
 * Backends under test: the CPU backend on each kernel path (harness.h),
 * and every OpenCL device found (CPU devices allowed), once with fp32 and
 * once with fp16 activation storage.  No OpenCL library or device: the CPU
 * paths alone ("opencl: none (<reason>)").
 *
 * Each case: inputs copy_in'ed into a block from buffer_alloc, the op, then
 * copy_out and sync (must be SDC_OK).  With fp16 storage the reference runs
 * on the inputs rounded to half as the device holds them, so the error is
 * the device's arithmetic plus the final rounding to half.  Weights are
 * made in F32, F16 and BF16 (the reference reads the same rounded values).
 *
 * Tolerances, relative L2 | max |diff| / max(1, max |want|):
 *                                fp32 storage       fp16 storage
 *   linear, linear_map, conv2d    1e-5 | 1e-5        1e-3 | 2e-3
 *   conv2d by OpenCL's Winograd   3e-5 | 1e-4        1e-3 | 2e-3  (vs the reference and vs
 *     the implicit GEMM; measured at most 7.7e-6 | 2.5e-5 at fp32, C = 1280)
 *   attention                     1e-5 | 1e-5        1e-3 | 2e-3  (OpenCL: each shape by
 *     FlashAttention and by the partially fused softmax, SDC_CL_ATTENTION)
 *   group_norm, layer_norm        1e-5 | 2e-5        1e-3 | 4e-3
 *   activations, geglu            2e-6 | 2e-6        1e-3 | 2e-3
 *   add, lerp, axpby              1e-6 | 1e-6        1e-3 | 2e-3
 *   relu                          exact              exact
 *   layout ops, copy, embed       exact              exact (inputs are halfs already;
 *                                                     embed: 1e-3 | 2e-3)
 *   timestep_embed                1e-5 | 1e-4        1e-3 | 2e-3
 * or, at fp32 storage, max |diff| <= 1e-6 (a few outputs near 0).
 * Measured maxima per op and backend are printed at the end of each run.
 *
 * Default tier: small shapes and sizes that do not fill a tile (PoCL is
 * 5-40x slower than plain C).  SDC_TEST_FULL=1 adds the SD 1.x shapes;
 * SDC_TEST_TARGETS=<substring> keeps only the backends whose name has it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/opencl/opencl.h"
#include "backends/ref.h"
#include "core/error.h"
#include "harness.h"

#include "vendor_leaks.h"

/* ---- backends under test ---------------------------------------------------- */

enum { OP_LINEAR, OP_LINEAR_MAP, OP_CONV, OP_GN, OP_LN, OP_ATT, OP_SILU, OP_GELU, OP_QGELU, OP_RELU,
       OP_ADD, OP_LERP, OP_AXPBY, OP_GEGLU, OP_UP, OP_PAD, OP_TRANS, OP_CONCAT, OP_COPY,
       OP_EMBED, OP_TEMB, OP_WINO, OP_WINO_GEMM, OP_ATT_FLASH, OP_ATT_SOFTMAX, OP_COUNT };
static const char *const k_op_names[OP_COUNT] = {
    "linear", "linear_map", "conv2d", "group_norm", "layer_norm", "attention", "silu", "gelu",
    "quick_gelu", "relu", "add", "lerp", "axpby", "geglu", "upsample2x", "pad2d", "transpose",
    "concat",
    "copy", "embed", "timestep_embed", "conv2d wino", "wino vs gemm", "attention flash",
    "attention softmax"};

/* OpenCL's Winograd F(4x4, 3x3) convs (3x3, stride 1, pad 1, maps >= 4x4)
 * against the reference and against the implicit GEMM (SDC_CL_WINOGRAD=0):
 * the transforms' rounding, growing with C (7.7e-6 | 2.5e-5 at C = 1280) */
#define WINO_REL 3e-5
#define WINO_ABS 1e-4

typedef struct tol {
    double rel, abs;
} tol;
/* [op] = {fp32 storage, fp16 storage} */
static const tol k_tol[OP_COUNT][2] = {
    [OP_LINEAR] = {{1e-5, 1e-5}, {1e-3, 2e-3}}, [OP_LINEAR_MAP] = {{1e-5, 1e-5}, {1e-3, 2e-3}},
    [OP_CONV] = {{1e-5, 1e-5}, {1e-3, 2e-3}},   [OP_ATT] = {{1e-5, 1e-5}, {1e-3, 2e-3}},
    [OP_GN] = {{1e-5, 2e-5}, {1e-3, 4e-3}},     [OP_LN] = {{1e-5, 2e-5}, {1e-3, 4e-3}},
    [OP_SILU] = {{2e-6, 2e-6}, {1e-3, 2e-3}},   [OP_GELU] = {{2e-6, 2e-6}, {1e-3, 2e-3}},
    [OP_QGELU] = {{2e-6, 2e-6}, {1e-3, 2e-3}},  [OP_GEGLU] = {{2e-6, 2e-6}, {1e-3, 2e-3}},
    [OP_RELU] = {{0, 0}, {0, 0}},
    [OP_ADD] = {{1e-6, 1e-6}, {1e-3, 2e-3}},    [OP_LERP] = {{1e-6, 1e-6}, {1e-3, 2e-3}},
    [OP_AXPBY] = {{1e-6, 1e-6}, {1e-3, 2e-3}},  [OP_UP] = {{0, 0}, {0, 0}},
    [OP_PAD] = {{0, 0}, {0, 0}},                [OP_TRANS] = {{0, 0}, {0, 0}},
    [OP_CONCAT] = {{0, 0}, {0, 0}},             [OP_COPY] = {{0, 0}, {0, 0}},
    [OP_EMBED] = {{0, 0}, {1e-3, 2e-3}},        [OP_TEMB] = {{1e-5, 1e-4}, {1e-3, 2e-3}},
    [OP_WINO] = {{WINO_REL, WINO_ABS}, {1e-3, 2e-3}},
    [OP_WINO_GEMM] = {{WINO_REL, WINO_ABS}, {1e-3, 2e-3}},
    [OP_ATT_FLASH] = {{1e-5, 1e-5}, {1e-3, 2e-3}}, [OP_ATT_SOFTMAX] = {{1e-5, 1e-5}, {1e-3, 2e-3}},
};

typedef struct target {
    char name[200];
    sdc_backend *be;
    int fp16;    /* activations stored as half */
    int rusticl; /* Mesa's rusticl (known defects skipped, see below) */
    float *base; /* the block cases allocate from */
    size_t cap, top; /* floats */
    int owned;   /* base from aligned_alloc: the backend has no buffer_alloc */
    int cases[OP_COUNT];
    double rel[OP_COUNT], abs[OP_COUNT];
} target;

#define MAX_TARGETS 24
static target g_t[MAX_TARGETS];
static int g_nt;
static int g_full;

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

/* n random floats in [-scale, scale) */
static float *rnd(size_t n, float scale) {
    float *p = xmalloc(n * sizeof *p);
    t_rand_fill(p, n, scale);
    return p;
}

static float *zeros(size_t n) {
    float *p = xmalloc(n * sizeof *p);
    memset(p, 0, n * sizeof *p);
    return p;
}

/* the values as t holds them: rounded to half with fp16 storage */
static void as_held(const target *t, float *x, size_t n) {
    if (t->fp16)
        for (size_t i = 0; i < n; i++) x[i] = sdc_f16_to_f32(sdc_f32_to_f16(x[i]));
}

/* ---- device memory: a bump allocator in t's block ----------------------------- */

static float *dalloc(target *t, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (t->top + n > t->cap) {
        fprintf(stderr, "%s: test block too small (%zu + %zu > %zu floats)\n", t->name, t->top,
                n, t->cap);
        abort();
    }
    float *p = t->base + t->top;
    t->top += n;
    return p;
}

static float *din(target *t, const float *h, size_t n) {
    float *d = dalloc(t, n);
    t->be->copy_in(t->be, d, h, (int64_t)n);
    return d;
}

/* Reads back n values of d into got, syncs (must be SDC_OK), and compares
 * with want; the tolerance of op at t's storage. */
static void compare(target *t, int op, const char *shape, const float *got, const float *want,
                    size_t n);
static void finish(target *t, int op, const char *shape, float *got, const float *d,
                   const float *want, size_t n) {
    t->be->copy_out(t->be, got, d, (int64_t)n);
    sdc_status st = t->be->sync(t->be);
    CHECKF(st == SDC_OK, "%s: %s %s: sync: %s", t->name, k_op_names[op], shape, sdc_last_error());
    t->top = 0;
    if (st == SDC_OK) compare(t, op, shape, got, want, n);
}

/* got against want within op's tolerance at t's storage; the maxima kept */
static void compare(target *t, int op, const char *shape, const float *got, const float *want,
                    size_t n) {
    double mx = 1.0; /* (fmax here crashed aarch64 gcc 12's vectoriser) */
    for (size_t i = 0; i < n; i++) {
        const double a = fabs((double)want[i]);
        if (a > mx) mx = a;
    }
    const double rel = t_rel_l2(got, want, n), ab = t_max_abs(got, want, n) / mx;
    const tol lim = k_tol[op][t->fp16];
    /* or, at fp32, every value within 1e-6 (outputs of a few values near 0,
     * where the relative error means little) */
    const int ok = (rel <= lim.rel && ab <= lim.abs) || (!t->fp16 && t_max_abs(got, want, n) <= 1e-6);
    CHECKF(ok, "%s: %s %s: rel L2 %.3g, max abs %.3g (limits %.3g, %.3g)",
           t->name, k_op_names[op], shape, rel, ab, lim.rel, lim.abs);
    t->cases[op]++;
    if (!(rel <= t->rel[op])) t->rel[op] = rel;
    if (!(ab <= t->abs[op])) t->abs[op] = ab;
}

/* Weights leave the backends before their host memory is freed: a device
 * keeps its copy by the host address, which malloc may hand out again. */
static void wrelease(sdc_weight *w, int n) {
    for (int i = 0; i < g_nt; i++) {
        if (!g_t[i].be->weights) continue;
        for (int j = 0; j < n; j++) {
            const sdc_weight *p = &w[j];
            g_t[i].be->weights(g_t[i].be, &p, 1, SDC_RES_RELEASE);
        }
    }
    for (int j = 0; j < n; j++) t_weight_free(&w[j]);
}

static const sdc_dtype k_dts[3] = {SDC_DT_F32, SDC_DT_F16, SDC_DT_BF16};

/* ---- GEMM-based ops ------------------------------------------------------------ */

/* acc_mode 0: none; 1: a separate acc; 2: acc aliasing y */
static void case_linear(int M, int N, int K, sdc_dtype dt, int bias, int acc_mode) {
    char shape[96];
    snprintf(shape, sizeof shape, "[%d,%d]x[%d,%d]^T %s%s%s", M, K, N, K, sdc_dtype_name(dt),
             bias ? " +b" : "", acc_mode == 1 ? " +acc" : acc_mode == 2 ? " +=acc" : "");
    const size_t ny = (size_t)M * N;
    float *x0 = rnd((size_t)M * K, 1), *acc0 = rnd(ny, 1), *w = rnd((size_t)N * K, 0.2f);
    float *bv = rnd((size_t)N, 1), *x = zeros((size_t)M * K), *acc = zeros(ny);
    float *want = zeros(ny), *got = zeros(ny);
    sdc_weight W[2] = {t_weight_make(dt, w, (int64_t)N * K), t_weight_make(dt, bv, N)};
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        memcpy(x, x0, (size_t)M * K * sizeof *x), memcpy(acc, acc0, ny * sizeof *acc);
        as_held(t, x, (size_t)M * K), as_held(t, acc, ny);
        sdc_ref_linear(NULL, want, x, &W[0], bias ? &W[1] : NULL, acc_mode ? acc : NULL, M, N, K);
        float *dx = din(t, x, (size_t)M * K), *dacc = acc_mode ? din(t, acc, ny) : NULL;
        float *dy = acc_mode == 2 ? dacc : dalloc(t, ny);
        t->be->linear(t->be, dy, dx, &W[0], bias ? &W[1] : NULL, dacc, M, N, K);
        finish(t, OP_LINEAR, shape, got, dy, want, ny);
    }
    wrelease(W, 2);
    free(x0), free(acc0), free(w), free(bv), free(x), free(acc), free(want), free(got);
}

static void case_linear_map(int N, int HW, int C, int O, int to_tokens, sdc_dtype dt, int bias,
                            int acc_mode) {
    char shape[96];
    snprintf(shape, sizeof shape, "[%d,%d,%d]->%d %s %s%s%s", N, HW, C, O,
             to_tokens ? "to tokens" : "to map", sdc_dtype_name(dt), bias ? " +b" : "",
             acc_mode == 1 ? " +acc" : acc_mode == 2 ? " +=acc" : "");
    const size_t nx = (size_t)N * HW * C, ny = (size_t)N * HW * O;
    float *x0 = rnd(nx, 1), *acc0 = rnd(ny, 1), *w = rnd((size_t)O * C, 0.2f), *bv = rnd(O, 1);
    float *x = zeros(nx), *acc = zeros(ny), *want = zeros(ny), *got = zeros(ny);
    sdc_weight W[2] = {t_weight_make(dt, w, (int64_t)O * C), t_weight_make(dt, bv, O)};
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        memcpy(x, x0, nx * sizeof *x), memcpy(acc, acc0, ny * sizeof *acc);
        as_held(t, x, nx), as_held(t, acc, ny);
        sdc_ref_linear_map(NULL, want, x, &W[0], bias ? &W[1] : NULL, acc_mode ? acc : NULL, N,
                           HW, C, O, to_tokens);
        float *dx = din(t, x, nx), *dacc = acc_mode ? din(t, acc, ny) : NULL;
        float *dy = acc_mode == 2 ? dacc : dalloc(t, ny);
        t->be->linear_map(t->be, dy, dx, &W[0], bias ? &W[1] : NULL, dacc, N, HW, C, O,
                          to_tokens);
        finish(t, OP_LINEAR_MAP, shape, got, dy, want, ny);
    }
    wrelease(W, 2);
    free(x0), free(acc0), free(w), free(bv), free(x), free(acc), free(want), free(got);
}

static void case_conv(int N, int C, int H, int W, int O, int k, int stride, int pad,
                      sdc_dtype dt, int bias, int acc_mode) {
    char shape[128];
    snprintf(shape, sizeof shape, "[%d,%d,%d,%d]->%d %dx%d/%d pad %d %s%s%s", N, C, H, W, O, k,
             k, stride, pad, sdc_dtype_name(dt), bias ? " +b" : "",
             acc_mode == 1 ? " +acc" : acc_mode == 2 ? " +=acc" : "");
    const int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    const size_t nx = (size_t)N * C * H * W, ny = (size_t)N * O * Ho * Wo, nw = (size_t)O * C * k * k;
    float *x0 = rnd(nx, 1), *acc0 = rnd(ny, 1), *w = rnd(nw, 0.2f), *bv = rnd(O, 1);
    float *x = zeros(nx), *acc = zeros(ny), *want = zeros(ny), *got = zeros(ny);
    float *got2 = zeros(ny);
    sdc_weight Wt[2] = {t_weight_make(dt, w, (int64_t)nw), t_weight_make(dt, bv, O)};
    Wt[0].ndim = 4, Wt[0].shape[0] = O, Wt[0].shape[1] = C, Wt[0].shape[2] = k, Wt[0].shape[3] = k;
    /* OpenCL's Winograd shapes: once by Winograd, once by the implicit GEMM */
    const int wino = k == 3 && stride == 1 && pad == 1 && H >= 4 && W >= 4;
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        memcpy(x, x0, nx * sizeof *x), memcpy(acc, acc0, ny * sizeof *acc);
        as_held(t, x, nx), as_held(t, acc, ny);
        sdc_ref_conv2d(NULL, want, x, N, C, H, W, &Wt[0], bias ? &Wt[1] : NULL, O, k, k, stride,
                       pad, acc_mode ? acc : NULL);
        const int cl_wino = wino && strncmp(t->name, "opencl", 6) == 0;
        for (int pass = 0; pass < 1 + cl_wino; pass++) {
            if (pass) setenv("SDC_CL_WINOGRAD", "0", 1);
            float *dx = din(t, x, nx), *dacc = acc_mode ? din(t, acc, ny) : NULL;
            float *dy = acc_mode == 2 ? dacc : dalloc(t, ny);
            t->be->conv2d(t->be, dy, dx, N, C, H, W, &Wt[0], bias ? &Wt[1] : NULL, O, k, k,
                          stride, pad, dacc);
            finish(t, cl_wino && !pass ? OP_WINO : OP_CONV, shape, pass ? got2 : got, dy, want,
                   ny);
            if (pass) {
                unsetenv("SDC_CL_WINOGRAD");
                compare(t, OP_WINO_GEMM, shape, got, got2, ny);
            }
        }
    }
    wrelease(Wt, 2);
    free(x0), free(acc0), free(w), free(bv), free(x), free(acc), free(want), free(got);
    free(got2);
}

/* ---- norms ------------------------------------------------------------------------ */

static void case_group_norm(int N, int C, int HW, int G, int add, int affine, int silu,
                            int inplace, sdc_dtype dt) {
    char shape[96];
    snprintf(shape, sizeof shape, "[%d,%d,%d] G=%d%s%s%s%s %s", N, C, HW, G, add ? " +add" : "",
             affine ? " affine" : "", silu ? " silu" : "", inplace ? " in place" : "",
             sdc_dtype_name(dt));
    const size_t n = (size_t)N * C * HW;
    float *x0 = rnd(n, 2), *a0 = rnd((size_t)N * C, 1), *g = rnd(C, 1), *bb = rnd(C, 1);
    for (size_t i = 0; i < n; i++) x0[i] += 0.5f; /* a mean away from 0 */
    float *x = zeros(n), *a = zeros((size_t)N * C), *want = zeros(n), *got = zeros(n);
    sdc_weight W[2] = {t_weight_make(dt, g, C), t_weight_make(dt, bb, C)};
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        memcpy(x, x0, n * sizeof *x), memcpy(a, a0, (size_t)N * C * sizeof *a);
        as_held(t, x, n), as_held(t, a, (size_t)N * C);
        sdc_ref_group_norm(NULL, want, x, add ? a : NULL, N, C, HW, G, affine ? &W[0] : NULL,
                           affine ? &W[1] : NULL, 1e-5f, silu);
        float *dx = din(t, x, n), *da = add ? din(t, a, (size_t)N * C) : NULL;
        float *dy = inplace ? dx : dalloc(t, n);
        t->be->group_norm(t->be, dy, dx, da, N, C, HW, G, affine ? &W[0] : NULL,
                          affine ? &W[1] : NULL, 1e-5f, silu);
        finish(t, OP_GN, shape, got, dy, want, n);
    }
    wrelease(W, 2);
    free(x0), free(a0), free(g), free(bb), free(x), free(a), free(want), free(got);
}

static void case_layer_norm(int rows, int D, int affine, int inplace, sdc_dtype dt) {
    char shape[80];
    snprintf(shape, sizeof shape, "[%d,%d]%s%s %s", rows, D, affine ? " affine" : "",
             inplace ? " in place" : "", sdc_dtype_name(dt));
    const size_t n = (size_t)rows * D;
    float *x0 = rnd(n, 3), *g = rnd(D, 1), *bb = rnd(D, 1), *x = zeros(n), *want = zeros(n),
          *got = zeros(n);
    sdc_weight W[2] = {t_weight_make(dt, g, D), t_weight_make(dt, bb, D)};
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        memcpy(x, x0, n * sizeof *x);
        as_held(t, x, n);
        sdc_ref_layer_norm(NULL, want, x, rows, D, affine ? &W[0] : NULL, affine ? &W[1] : NULL,
                           1e-5f);
        float *dx = din(t, x, n), *dy = inplace ? dx : dalloc(t, n);
        t->be->layer_norm(t->be, dy, dx, rows, D, affine ? &W[0] : NULL, affine ? &W[1] : NULL,
                          1e-5f);
        finish(t, OP_LN, shape, got, dy, want, n);
    }
    wrelease(W, 2);
    free(x0), free(g), free(bb), free(x), free(want), free(got);
}

/* ---- attention ------------------------------------------------------------------ */

/* fused: q, k, v are column slices of one [S, 3 D] projection (self-attention,
 * Sq == Sk); else q [Sq, D] and k, v slices of one [Sk, 2 D] */
static void case_attention(int Sq, int Sk, int heads, int dh, int causal, int fused) {
    char shape[96];
    snprintf(shape, sizeof shape, "Sq=%d Sk=%d %dx%d%s%s", Sq, Sk, heads, dh,
             causal ? " causal" : "", fused ? " fused qkv" : "");
    const int D = heads * dh;
    const int qs = fused ? 3 * D : D, kvs = fused ? 3 * D : 2 * D;
    const size_t nq = (size_t)Sq * qs, nkv = fused ? 0 : (size_t)Sk * kvs, no = (size_t)Sq * D;
    float *q0 = rnd(nq, 1.5f), *kv0 = rnd(nkv, 1.5f), *q = zeros(nq), *kv = zeros(nkv);
    float *want = zeros(no), *got = zeros(no);
    const float scale = 1.0f / sqrtf((float)dh);
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        memcpy(q, q0, nq * sizeof *q), memcpy(kv, kv0, nkv * sizeof *kv);
        as_held(t, q, nq), as_held(t, kv, nkv);
        const float *hk = fused ? q + D : kv, *hv = fused ? q + 2 * D : kv + D;
        sdc_ref_attention(NULL, want, q, qs, hk, hv, kvs, Sq, Sk, heads, dh, scale, causal);
        /* OpenCL: once by each of its two kernels */
        const int cl = strncmp(t->name, "opencl", 6) == 0;
        for (int pass = 0; pass < 1 + cl; pass++) {
            if (cl) setenv("SDC_CL_ATTENTION", pass ? "softmax" : "flash", 1);
            float *dq = din(t, q, nq), *dkv = fused ? NULL : din(t, kv, nkv);
            float *dout = dalloc(t, no);
            const float *dk = fused ? dq + D : dkv, *dv = fused ? dq + 2 * D : dkv + D;
            t->be->attention(t->be, dout, dq, qs, dk, dv, kvs, Sq, Sk, heads, dh, scale, causal);
            finish(t, !cl ? OP_ATT : pass ? OP_ATT_SOFTMAX : OP_ATT_FLASH, shape, got, dout,
                   want, no);
        }
        unsetenv("SDC_CL_ATTENTION");
    }
    free(q0), free(kv0), free(q), free(kv), free(want), free(got);
}

/* ---- elementwise ------------------------------------------------------------------ */

/* op on n elements; inplace: y is x's (first input's) memory */
static void case_ew(int op, int64_t n, int inplace) {
    char shape[64];
    snprintf(shape, sizeof shape, "[%lld]%s", (long long)n, inplace ? " in place" : "");
    float *a0 = rnd((size_t)n, 4), *b0 = rnd((size_t)n, 4), *a = zeros((size_t)n),
          *b = zeros((size_t)n), *want = zeros((size_t)n), *got = zeros((size_t)n);
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        memcpy(a, a0, (size_t)n * 4), memcpy(b, b0, (size_t)n * 4);
        as_held(t, a, (size_t)n), as_held(t, b, (size_t)n);
        float *da = din(t, a, (size_t)n), *db = din(t, b, (size_t)n);
        float *dy = inplace ? da : dalloc(t, (size_t)n);
        sdc_backend *be = t->be;
        switch (op) {
        case OP_SILU: sdc_ref_silu(NULL, want, a, n), be->silu(be, dy, da, n); break;
        case OP_GELU: sdc_ref_gelu(NULL, want, a, n), be->gelu(be, dy, da, n); break;
        case OP_QGELU: sdc_ref_quick_gelu(NULL, want, a, n), be->quick_gelu(be, dy, da, n); break;
        case OP_RELU: sdc_ref_relu(NULL, want, a, n), be->relu(be, dy, da, n); break;
        case OP_ADD: sdc_ref_add(NULL, want, a, b, n), be->add(be, dy, da, db, n); break;
        case OP_LERP:
            sdc_ref_lerp(NULL, want, a, b, 7.5f, n), be->lerp(be, dy, da, db, 7.5f, n);
            break;
        case OP_AXPBY:
            sdc_ref_axpby(NULL, want, 0.75f, a, -1.25f, b, n);
            be->axpby(be, dy, 0.75f, da, -1.25f, db, n);
            break;
        default: /* axpby without z */
            op = OP_AXPBY;
            sdc_ref_axpby(NULL, want, 0.75f, a, 0, NULL, n);
            be->axpby(be, dy, 0.75f, da, 0, NULL, n);
        }
        finish(t, op, shape, got, dy, want, (size_t)n);
    }
    free(a0), free(b0), free(a), free(b), free(want), free(got);
}

static void case_geglu(int rows, int D) {
    char shape[64];
    snprintf(shape, sizeof shape, "[%d,%d]", rows, D);
    const size_t nx = (size_t)rows * 2 * D, ny = (size_t)rows * D;
    float *x0 = rnd(nx, 3), *x = zeros(nx), *want = zeros(ny), *got = zeros(ny);
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        memcpy(x, x0, nx * 4);
        as_held(t, x, nx);
        sdc_ref_geglu(NULL, want, x, rows, D);
        float *dx = din(t, x, nx), *dy = dalloc(t, ny);
        t->be->geglu(t->be, dy, dx, rows, D);
        finish(t, OP_GEGLU, shape, got, dy, want, ny);
    }
    free(x0), free(x), free(want), free(got);
}

/* ---- layout ---------------------------------------------------------------------- */

static void case_upsample(int N, int C, int H, int W) {
    char shape[64];
    snprintf(shape, sizeof shape, "[%d,%d,%d,%d]", N, C, H, W);
    const size_t nx = (size_t)N * C * H * W, ny = nx * 4;
    float *x = rnd(nx, 1), *want = zeros(ny), *got = zeros(ny);
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        as_held(t, x, nx); /* idempotent: the same halfs for every target */
        sdc_ref_upsample2x(NULL, want, x, N, C, H, W);
        float *dx = din(t, x, nx), *dy = dalloc(t, ny);
        t->be->upsample2x(t->be, dy, dx, N, C, H, W);
        finish(t, OP_UP, shape, got, dy, want, ny);
    }
    free(x), free(want), free(got);
}

static void case_pad(int N, int C, int H, int W, int top, int bottom, int left, int right) {
    char shape[80];
    snprintf(shape, sizeof shape, "[%d,%d,%d,%d] %d %d %d %d", N, C, H, W, top, bottom, left,
             right);
    const size_t nx = (size_t)N * C * H * W,
                 ny = (size_t)N * C * (H + top + bottom) * (W + left + right);
    float *x = rnd(nx, 1), *want = zeros(ny), *got = zeros(ny);
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        as_held(t, x, nx);
        sdc_ref_pad2d(NULL, want, x, N, C, H, W, top, bottom, left, right);
        float *dx = din(t, x, nx), *dy = dalloc(t, ny);
        /* the padding must be written, not left from before */
        float *junk = rnd(ny, 9);
        t->be->copy_in(t->be, dy, junk, (int64_t)ny);
        free(junk);
        t->be->pad2d(t->be, dy, dx, N, C, H, W, top, bottom, left, right);
        finish(t, OP_PAD, shape, got, dy, want, ny);
    }
    free(x), free(want), free(got);
}

static void case_transpose(int N, int H, int W) {
    char shape[64];
    snprintf(shape, sizeof shape, "[%d,%d,%d]", N, H, W);
    const size_t n = (size_t)N * H * W;
    float *x = rnd(n, 1), *want = zeros(n), *got = zeros(n);
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        as_held(t, x, n);
        sdc_ref_transpose(NULL, want, x, N, H, W);
        float *dx = din(t, x, n), *dy = dalloc(t, n);
        t->be->transpose(t->be, dy, dx, N, H, W);
        finish(t, OP_TRANS, shape, got, dy, want, n);
    }
    free(x), free(want), free(got);
}

static void case_concat(int N, int Ca, int Cb, int HW) {
    char shape[64];
    snprintf(shape, sizeof shape, "[%d,%d+%d,%d]", N, Ca, Cb, HW);
    const size_t na = (size_t)N * Ca * HW, nb = (size_t)N * Cb * HW, ny = na + nb;
    float *a = rnd(na, 1), *b = rnd(nb, 1), *want = zeros(ny), *got = zeros(ny);
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        as_held(t, a, na), as_held(t, b, nb);
        sdc_ref_concat(NULL, want, a, Ca, b, Cb, N, HW);
        float *da = din(t, a, na), *db = din(t, b, nb), *dy = dalloc(t, ny);
        t->be->concat(t->be, dy, da, Ca, db, Cb, N, HW);
        finish(t, OP_CONCAT, shape, got, dy, want, ny);
    }
    free(a), free(b), free(want), free(got);
}

/* copy of n elements from offset src to offset dst of one region of
 * n + |dst - src|.  Overlapping ranges (|dst - src| < n) are outside the
 * contract ("out never aliases an input"); the OpenCL copy gives memmove's
 * result there (a chunked staging copy), tested on OpenCL targets only. */
static void case_copy(int64_t n, int64_t src, int64_t dst) {
    char shape[80];
    snprintf(shape, sizeof shape, "[%lld] %lld -> %lld", (long long)n, (long long)src,
             (long long)dst);
    const size_t len = (size_t)(n + (src > dst ? src : dst));
    float *x = rnd(len, 1), *want = zeros(len), *got = zeros(len);
    const int overlap = (src > dst ? src - dst : dst - src) < n;
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        if (overlap && strncmp(t->name, "opencl", 6) != 0) continue;
        as_held(t, x, len);
        memcpy(want, x, len * 4);
        sdc_ref_copy(NULL, want + dst, want + src, n);
        float *d = din(t, x, len);
        t->be->copy(t->be, d + dst, d + src, n);
        finish(t, OP_COPY, shape, got, d, want, len);
    }
    free(x), free(want), free(got);
}

static void case_embed(int n, int V, int D, int pos, sdc_dtype dt) {
    char shape[80];
    snprintf(shape, sizeof shape, "[%d] of %dx%d%s %s", n, V, D, pos ? " +pos" : "",
             sdc_dtype_name(dt));
    const size_t ny = (size_t)n * D;
    float *tab = rnd((size_t)V * D, 1), *p = rnd(ny, 1), *want = zeros(ny), *got = zeros(ny);
    int32_t *ids = xmalloc((size_t)n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(((unsigned)i * 7919u + 13u) % (unsigned)V);
    sdc_weight W[2] = {t_weight_make(dt, tab, (int64_t)V * D), t_weight_make(dt, p, (int64_t)ny)};
    sdc_ref_embed(NULL, want, ids, n, &W[0], pos ? &W[1] : NULL, D);
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        float *dy = dalloc(t, ny);
        t->be->embed(t->be, dy, ids, n, &W[0], pos ? &W[1] : NULL, D);
        memset(ids, 0xff, (size_t)n * sizeof *ids); /* consumed: the op must not read them later */
        finish(t, OP_EMBED, shape, got, dy, want, ny);
        for (int j = 0; j < n; j++) ids[j] = (int32_t)(((unsigned)j * 7919u + 13u) % (unsigned)V);
    }
    wrelease(W, 2);
    free(tab), free(p), free(want), free(got), free(ids);
}

static void case_timestep(int n, int dim) {
    char shape[64];
    snprintf(shape, sizeof shape, "[%d,%d]", n, dim);
    const size_t ny = (size_t)n * dim;
    float *ts = xmalloc((size_t)n * sizeof *ts), *want = zeros(ny), *got = zeros(ny);
    for (int i = 0; i < n; i++) ts[i] = i == 0 ? 999.0f : (float)(i * 37 % 1000) + 0.5f;
    sdc_ref_timestep_embed(NULL, want, ts, n, dim);
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        float *dy = dalloc(t, ny);
        t->be->timestep_embed(t->be, dy, ts, n, dim);
        finish(t, OP_TEMB, shape, got, dy, want, ny);
    }
    free(ts), free(want), free(got);
}

/* ---- the tiers ------------------------------------------------------------------- */

static void ops_gemm(void) {
    /* odd sizes that fill no tile; a size of one; exact tiles; K > one slice */
    const int shapes[][3] = {{37, 29, 53}, {1, 7, 3}, {64, 64, 64}, {130, 70, 200}, {5, 300, 17}};
    int c = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int acc = 0; acc < 3; acc++, c++)
            case_linear(shapes[s][0], shapes[s][1], shapes[s][2], k_dts[c % 3], (c / 3) % 2 == 0,
                        acc);
    for (int tt = 0; tt < 2; tt++)
        for (int acc = 0; acc < (tt ? 1 : 3); acc++)
            for (int d = 0; d < 3; d++) case_linear_map(2, 37, 29, 45, tt, k_dts[d], d != 1, acc);
    case_linear_map(1, 64, 64, 64, 1, SDC_DT_F16, 1, 0);
    case_linear_map(1, 70, 130, 66, 0, SDC_DT_F32, 1, 2);
}

static void ops_conv(void) {
    case_conv(2, 5, 7, 5, 6, 3, 1, 1, SDC_DT_F32, 1, 0);  /* a 7x5 map */
    case_conv(1, 8, 9, 9, 16, 3, 2, 1, SDC_DT_F16, 1, 0); /* downsampler */
    case_conv(1, 6, 8, 8, 5, 3, 2, 0, SDC_DT_BF16, 0, 0); /* VAE encoder's, after pad2d */
    case_conv(1, 3, 7, 5, 4, 1, 1, 0, SDC_DT_F16, 1, 1);  /* 1x1: plain GEMM */
    case_conv(1, 4, 6, 6, 3, 1, 2, 0, SDC_DT_F32, 0, 0);  /* 1x1 stride 2: implicit */
    case_conv(2, 16, 8, 8, 32, 3, 1, 1, SDC_DT_F16, 1, 2); /* residual in place */
    case_conv(1, 4, 16, 16, 70, 3, 1, 1, SDC_DT_BF16, 1, 1); /* O over one tile */
    case_conv(1, 40, 3, 3, 8, 3, 1, 1, SDC_DT_F32, 1, 0);  /* few pixels, K = 360 */
    case_conv(2, 320, 8, 8, 16, 3, 1, 1, SDC_DT_F16, 1, 0); /* UNet-like channels, 8x8 */
    case_conv(1, 4, 8, 8, 320, 3, 1, 1, SDC_DT_F16, 1, 0);  /* conv_in-like */
    /* Winograd on OpenCL: maps that do not fill a 4x4 tile, C and O that do
     * not fill the GEMM's 64x64x16 tile, more tiles than one GEMM tile */
    case_conv(2, 5, 7, 9, 3, 3, 1, 1, SDC_DT_F32, 1, 0);
    case_conv(2, 5, 7, 9, 3, 3, 1, 1, SDC_DT_BF16, 0, 2);
    case_conv(1, 37, 13, 11, 29, 3, 1, 1, SDC_DT_F16, 0, 2);
    case_conv(1, 37, 13, 11, 29, 3, 1, 1, SDC_DT_F32, 1, 1);
    case_conv(1, 37, 13, 11, 29, 3, 1, 1, SDC_DT_BF16, 1, 0);
    case_conv(2, 19, 4, 6, 70, 3, 1, 1, SDC_DT_F32, 0, 2);
    case_conv(2, 8, 22, 30, 12, 3, 1, 1, SDC_DT_F16, 1, 1);
    /* OpenCL's U scratch (32 MiB) holds 64 of these 2048-channel filters:
     * O in three slices (64, 64, 2), bias and residual at their offsets */
    case_conv(1, 2048, 4, 5, 130, 3, 1, 1, SDC_DT_F16, 1, 1);
}

static void ops_norm(void) {
    case_group_norm(2, 64, 35, 32, 1, 1, 1, 0, SDC_DT_F32);
    case_group_norm(2, 64, 35, 32, 0, 0, 0, 1, SDC_DT_F16);
    case_group_norm(1, 320, 256, 32, 1, 1, 1, 1, SDC_DT_BF16);
    case_group_norm(1, 6, 5, 3, 0, 1, 0, 0, SDC_DT_F16);
    case_group_norm(2, 4, 1000, 2, 1, 1, 0, 0, SDC_DT_F32);
    case_layer_norm(77, 768, 1, 0, SDC_DT_F16);
    case_layer_norm(5, 37, 0, 1, SDC_DT_F32);
    case_layer_norm(64, 320, 1, 1, SDC_DT_BF16);
    case_layer_norm(3, 1000, 1, 0, SDC_DT_F32);
}

static void ops_attention(void) {
    case_attention(77, 77, 2, 40, 1, 1);  /* CLIP-like causal, fused strides */
    case_attention(77, 77, 2, 64, 1, 0);
    case_attention(37, 77, 2, 80, 0, 0); /* cross-attention, odd Sq */
    case_attention(20, 33, 2, 160, 0, 0);
    case_attention(20, 20, 1, 160, 1, 1);
    case_attention(256, 256, 8, 40, 0, 1); /* a 16x16 latent's self-attention */
    case_attention(5, 1, 3, 8, 0, 0);
    case_attention(9, 130, 1, 40, 0, 0); /* keys over several tiles, partial last */
    case_attention(70, 50, 1, 40, 1, 0);  /* causal with Sq > Sk */
    case_attention(300, 60000, 1, 8, 1, 0); /* the softmax's scores in two chunks of rows */
}

static void ops_elementwise(void) {
    const int ops[] = {OP_SILU, OP_GELU, OP_QGELU, OP_RELU, OP_ADD, OP_LERP, OP_AXPBY, -1};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        case_ew(ops[i], 1000, 0);
        case_ew(ops[i], 4099, 1);
        case_ew(ops[i], 1, 0);
    }
    case_geglu(37, 45);
    case_geglu(2, 1280);
}

static void ops_layout(void) {
    case_upsample(2, 3, 5, 7);
    case_upsample(1, 1, 1, 1);
    case_pad(1, 3, 7, 5, 0, 1, 0, 1);
    case_pad(2, 2, 4, 3, 2, 1, 3, 0);
    case_transpose(2, 37, 29);
    case_transpose(1, 16, 64);
    case_transpose(3, 1, 5);
    case_concat(2, 3, 5, 35);
    case_concat(1, 1, 1, 1);
    case_copy(1000, 0, 2000);
    case_copy(1000, 300, 0);   /* overlapping, forward */
    case_copy(1000, 0, 300);   /* overlapping, backward */
    case_copy(1 << 21, 0, 5);  /* overlapping, over several staging chunks */
    case_copy(1 << 21, 7, 0);
    case_embed(77, 100, 64, 1, SDC_DT_F32);
    case_embed(77, 100, 64, 0, SDC_DT_F16);
    case_embed(5000, 50, 3, 1, SDC_DT_BF16); /* ids over one transfer */
    case_timestep(2, 320);
    case_timestep(3, 7);
}

/* The real SD 1.x shapes (SDC_TEST_FULL=1) */
static void ops_full(void) {
    case_linear(4096, 320, 320, SDC_DT_F16, 1, 2);
    case_linear(4096, 2560, 320, SDC_DT_F16, 1, 0);
    case_linear_map(2, 4096, 320, 320, 1, SDC_DT_F16, 1, 0);
    case_linear_map(2, 4096, 320, 320, 0, SDC_DT_F16, 1, 2);
    case_conv(2, 320, 64, 64, 320, 3, 1, 1, SDC_DT_F16, 1, 0);
    case_conv(1, 128, 512, 512, 128, 3, 1, 1, SDC_DT_F16, 1, 2); /* VAE decoder's last level */
    case_conv(2, 640, 32, 32, 640, 3, 2, 1, SDC_DT_F16, 1, 0);
    case_conv(2, 1280, 8, 8, 1280, 3, 1, 1, SDC_DT_F16, 1, 2);
    case_conv(1, 512, 64, 64, 512, 3, 1, 1, SDC_DT_F32, 1, 0); /* the VAE's mid block */
    case_group_norm(2, 320, 4096, 32, 1, 1, 1, 1, SDC_DT_F16);
    case_layer_norm(8192, 320, 1, 0, SDC_DT_F16);
    case_attention(4096, 4096, 8, 40, 0, 1);
    case_attention(4096, 77, 8, 40, 0, 0);
    case_attention(1024, 1024, 8, 80, 0, 1);
    case_attention(256, 256, 8, 160, 0, 1);
    case_attention(77, 77, 12, 64, 1, 1);
    case_attention(4096, 4096, 1, 512, 0, 1); /* the VAE's mid block */
    case_geglu(4096, 1280);
}

/* ---- set-up ------------------------------------------------------------------------ */

/* SDC_TEST_TARGETS: only the backends whose name contains it (e.g.
 * "opencl", "fp16", "cpu/avx2") */
static int add_target(sdc_backend *be, const char *name, int fp16, int rusticl) {
    if (!be) return 0;
    const char *only = getenv("SDC_TEST_TARGETS");
    if (only && only[0] && !strstr(name, only)) {
        be->free(be);
        return 0;
    }
    target *t = &g_t[g_nt];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->be = be, t->fp16 = fp16, t->rusticl = rusticl;
    const size_t bytes = (g_full ? (size_t)640 << 20 : (size_t)48 << 20);
    if (be->buffer_alloc) {
        sdc_status st = be->buffer_alloc(be, bytes, &t->base);
        CHECKF(st == SDC_OK, "%s: buffer_alloc %zu: %s", name, bytes, sdc_last_error());
        if (st != SDC_OK) {
            be->free(be);
            return 0;
        }
    } else {
        t->base = aligned_alloc(64, bytes);
        t->owned = 1;
    }
    t->cap = bytes / 4;
    g_nt++;
    return 1;
}

static void free_targets(void) {
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        if (t->owned) free(t->base);
        else t->be->buffer_free(t->be, t->base);
        t->be->free(t->be);
    }
    g_nt = 0;
}

static void report(void) {
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        printf("  %s: cases, max rel L2, max abs/max(1,|want|)\n", t->name);
        for (int op = 0; op < OP_COUNT; op++)
            printf("    %-15s %3d  %.2e  %.2e\n", k_op_names[op], t->cases[op], t->rel[op],
                   t->abs[op]);
    }
}

static void setup(void) {
    for (int i = 0; i < t_npaths() && g_nt < MAX_TARGETS; i++) {
        char name[64];
        snprintf(name, sizeof name, "cpu/%s", t_path_name(i));
        add_target(t_path_backend(i, 0), name, 0, 0);
    }
    sdc_cl_device devs[8];
    LSAN_OFF();
    int n = sdc_opencl_devices(devs, 8);
    LSAN_ON();
    if (n <= 0) {
        printf("  opencl: none (%s)\n", n < 0 ? sdc_last_error() : "no device");
        return;
    }
    for (int d = 0; d < n && d < 8; d++)
        for (int fp16 = 0; fp16 < 2 && g_nt < MAX_TARGETS; fp16++) {
            char idx[16], name[200];
            snprintf(idx, sizeof idx, "%d", d);
            sdc_cl_options o = {.device = idx, .allow_cpu = 1, .fp16_storage = fp16};
            snprintf(name, sizeof name, "opencl/%d %s (%s) %s", d, devs[d].name, devs[d].platform,
                     fp16 ? "fp16" : "fp32");
            sdc_backend *be = sdc_backend_opencl_create(&o);
            CHECKF(be != NULL, "%s: %s", name, sdc_last_error());
            if (add_target(be, name, fp16, strstr(devs[d].platform, "rusticl") != NULL))
                printf("  %s\n", name);
        }
}

/* A failure is sticky, named, returned by sync once, and the backend
 * works again after it. */
static void opencl_errors(void) {
    for (int i = 0; i < g_nt; i++) {
        target *t = &g_t[i];
        if (strncmp(t->name, "opencl", 6) != 0) continue;
        static float not_a_block[64];
        float x[4] = {1, 2, 3, 4}, y[4];
        float *d = dalloc(t, 4);
        t->be->copy_in(t->be, d, x, 4);
        t->be->silu(t->be, not_a_block, d, 4);         /* fails */
        t->be->axpby(t->be, d, 2.0f, d, 0, NULL, 4);   /* skipped */
        sdc_status st = t->be->sync(t->be);
        CHECKF(st == SDC_ERR_DEVICE && strstr(sdc_last_error(), "silu [4]"),
               "%s: sync after a bad address: %d %s", t->name, st, sdc_last_error());
        CHECK(t->be->sync(t->be) == SDC_OK);
        t->be->axpby(t->be, d, 2.0f, d, 0, NULL, 4);
        t->be->copy_out(t->be, y, d, 4);
        CHECK(t->be->sync(t->be) == SDC_OK);
        CHECKF(y[0] == 2 && y[3] == 8, "%s: after the failure: %g %g", t->name, y[0], y[3]);
        t->top = 0;
        size_t now = 0, peak = 0;
        t->be->memory(t->be, &now, &peak);
        CHECKF(now >= t->cap * (t->fp16 ? 2 : 4) && peak >= now, "%s: memory %zu %zu", t->name,
               now, peak);
    }
}

/* The OpenCL entry points without a library or a device to match. */
static void opencl_absent(void) {
    const char *old = getenv("SDC_OPENCL_LIB");
    char saved[512] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    setenv("SDC_OPENCL_LIB", "/nonexistent/libOpenCL.so", 1);
    sdc_cl_device d[2];
    int n = sdc_opencl_devices(d, 2);
    CHECKF(n == -1 && strstr(sdc_last_error(), "OpenCL"), "devices without a library: %d %s", n,
           sdc_last_error());
    sdc_cl_options o = {.allow_cpu = 1};
    CHECK(sdc_backend_opencl_create(&o) == NULL);
    CHECKF(strstr(sdc_last_error(), "OpenCL") != NULL, "%s", sdc_last_error());
    if (old) setenv("SDC_OPENCL_LIB", saved, 1);
    else unsetenv("SDC_OPENCL_LIB");
    n = sdc_opencl_devices(d, 2);
    if (n > 0) {
        o.device = "no such device 1234";
        CHECK(sdc_backend_opencl_create(&o) == NULL);
        CHECKF(strstr(sdc_last_error(), "no such device 1234") != NULL, "%s", sdc_last_error());
        o.device = "4096";
        CHECK(sdc_backend_opencl_create(&o) == NULL);
        CHECKF(strstr(sdc_last_error(), "4096") != NULL, "%s", sdc_last_error());
        if (d[0].is_cpu) { /* a CPU device only when allowed */
            o.device = "0", o.allow_cpu = 0;
            CHECK(sdc_backend_opencl_create(&o) == NULL);
            CHECKF(strstr(sdc_last_error(), "CPU") != NULL, "%s", sdc_last_error());
        }
    }
}

int main(void) {
    const char *full = getenv("SDC_TEST_FULL");
    g_full = full && full[0] == '1';
    t_rand_seed(42);
    setup();
    RUN(opencl_absent);
    RUN(opencl_errors);
    RUN(ops_elementwise);
    RUN(ops_layout);
    RUN(ops_norm);
    RUN(ops_gemm);
    RUN(ops_conv);
    RUN(ops_attention);
    if (g_full) RUN(ops_full);
    else printf("  (SDC_TEST_FULL=1 adds the SD 1.x shapes)\n");
    report();
    free_targets();
    return t_summary();
}
