/* The CPU backend's bf16 mode (sdc_backend_cpu_set_bf16).
 *
 * Where the CPU has AVX512_BF16:
 * 1. linear and the im2col convolution in bf16 mode against the reference
 *    ops run on the same operands rounded to bf16 first (x rounded to
 *    nearest even, the weight stored as BF16): the same products, so only
 *    the f32 summation order differs.  Tolerance 1e-5 relative L2, as every
 *    GEMM-based op.
 * 2. The same ops in bf16 mode against the f32 reference: the error of the
 *    mode itself, printed and bounded by TOL_MODE.  Winograd convolutions
 *    stay f32 in the mode (rounding the transformed tiles and filters gave
 *    ~2.5e-2: winograd.c): they must match the f32 reference at 1e-5.
 * 3. Switching the mode off gives the fp32 results back.
 * Elsewhere: the mode is refused with SDC_ERR_UNSUPPORTED and a message.
 * Shapes: odd sizes (K odd: a zero-padded last pair), M = 1, tiles across
 * register panels, and SD 1.x's real shapes (rows sliced). */
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/cpu/cpu_impl.h"
#include "harness.h"

#define TOL 1e-5      /* against the reference on bf16-rounded operands */
#define TOL_MODE 5e-3 /* bf16 mode against fp32 (measured <= 2.5e-3, see the log) */

static sdc_backend *g_ref, *g_bf;

static float bf16_round(float f) {
    uint32_t u = (uint32_t)t_bf16_bits(f) << 16;
    memcpy(&f, &u, 4);
    return f;
}

static float *fbuf(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) abort();
    return p;
}

static float *frand(size_t n, float scale) {
    float *p = fbuf(n);
    t_rand_fill(p, n, scale);
    return p;
}


/* The weight's values as float, then rounded to bf16 (a BF16 weight). */
static sdc_weight wround(const sdc_weight *w) {
    float *f = fbuf((size_t)w->numel);
    for (int64_t i = 0; i < w->numel; i++) f[i] = sdc_weight_get(w, i);
    sdc_weight r = t_weight_make(SDC_DT_BF16, f, w->numel);
    free(f);
    return r;
}

static float *rounded(const float *x, size_t n) {
    float *r = fbuf(n);
    for (size_t i = 0; i < n; i++) r[i] = bf16_round(x[i]);
    return r;
}

static double g_worst_gemm;

static void check(const char *what, const float *got, const float *want, size_t n, double tol) {
    double e = t_rel_l2(got, want, n);
    if (getenv("SDC_TEST_VERBOSE")) printf("    %-58s rel L2 %.3g\n", what, e);
    CHECKF(e <= tol, "%s: rel L2 %.3g > %.3g", what, e, tol);
}

static void check_linear(int M, int N, int K, sdc_dtype dt, int bias, int acc) {
    float *x = frand((size_t)M * K, 1.0f), *xr = rounded(x, (size_t)M * K);
    float *a = acc ? frand((size_t)M * N, 1.0f) : NULL;
    float *y = fbuf((size_t)M * N), *ye = fbuf((size_t)M * N), *yf = fbuf((size_t)M * N);
    float *wf = frand((size_t)N * K, 0.3f), *bf = frand((size_t)N, 1.0f);
    sdc_weight W = t_weight_make(dt, wf, (int64_t)N * K), b = t_weight_make(dt, bf, N), Wr = wround(&W);
    const sdc_weight *bp = bias ? &b : NULL;
    g_bf->linear(g_bf, y, x, &W, bp, a, M, N, K);
    g_ref->linear(g_ref, ye, xr, &Wr, bp, a, M, N, K);
    g_ref->linear(g_ref, yf, x, &W, bp, a, M, N, K);
    char what[96];
    snprintf(what, sizeof what, "linear M%d N%d K%d %s vs rounded operands", M, N, K,
             sdc_dtype_name(dt));
    check(what, y, ye, (size_t)M * N, TOL);
    snprintf(what, sizeof what, "linear M%d N%d K%d %s vs fp32", M, N, K, sdc_dtype_name(dt));
    check(what, y, yf, (size_t)M * N, TOL_MODE);
    double e = t_rel_l2(y, yf, (size_t)M * N);
    if (e > g_worst_gemm) g_worst_gemm = e;
    free(x), free(xr), free(a), free(y), free(ye), free(yf), free(wf), free(bf);
    t_weight_free(&W), t_weight_free(&b), t_weight_free(&Wr);
}

/* wino: -1 im2col GEMM (SDC_WINOGRAD=0, compared also on rounded operands),
 * 1 Winograd (SDC_WINOGRAD=1). */
static void check_conv(int N, int C, int H, int W, int O, int k, int stride, int pad,
                       sdc_dtype dt, int wino) {
    setenv("SDC_WINOGRAD", wino > 0 ? "1" : "0", 1);
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    size_t nx = (size_t)N * C * H * W, ny = (size_t)N * O * Ho * Wo;
    float *x = frand(nx, 1.0f), *xr = rounded(x, nx);
    float *y = fbuf(ny), *ye = fbuf(ny), *yf = fbuf(ny);
    float *wf = frand((size_t)O * C * k * k, 0.3f), *bf = frand((size_t)O, 1.0f);
    sdc_weight w = t_weight_make(dt, wf, (int64_t)O * C * k * k), b = t_weight_make(dt, bf, O), wr = wround(&w);
    g_bf->conv2d(g_bf, y, x, N, C, H, W, &w, &b, O, k, k, stride, pad, NULL);
    g_ref->conv2d(g_ref, yf, x, N, C, H, W, &w, &b, O, k, k, stride, pad, NULL);
    char what[112];
    if (wino < 0) {
        g_ref->conv2d(g_ref, ye, xr, N, C, H, W, &wr, &b, O, k, k, stride, pad, NULL);
        snprintf(what, sizeof what, "conv N%d C%d %dx%d O%d k%d s%d %s vs rounded operands", N,
                 C, H, W, O, k, stride, sdc_dtype_name(dt));
        check(what, y, ye, ny, TOL);
    }
    snprintf(what, sizeof what, "conv%s N%d C%d %dx%d O%d k%d s%d %s vs fp32",
             wino > 0 ? " wino" : "", N, C, H, W, O, k, stride, sdc_dtype_name(dt));
    check(what, y, yf, ny, wino > 0 ? TOL : TOL_MODE);
    double e = t_rel_l2(y, yf, ny);
    if (wino < 0 && e > g_worst_gemm) g_worst_gemm = e;
    free(x), free(xr), free(y), free(ye), free(yf), free(wf), free(bf);
    t_weight_free(&w), t_weight_free(&b), t_weight_free(&wr);
    unsetenv("SDC_WINOGRAD");
}

static void test_linear(void) {
    static const int shapes[][3] = {{1, 1, 1},     {5, 37, 3},    {33, 100, 255}, {14, 32, 2},
                                    {15, 33, 17},  {77, 768, 768}, {300, 70, 1280}, {2, 1280, 320}};
    const sdc_dtype dts[3] = {SDC_DT_F32, SDC_DT_F16, SDC_DT_BF16};
    for (int s = 0; s < (int)(sizeof shapes / sizeof *shapes); s++)
        for (int d = 0; d < 3; d++)
            check_linear(shapes[s][0], shapes[s][1], shapes[s][2], dts[d], (s + d) % 2, (s + d) % 3 == 0);
    /* real shapes, rows sliced */
    check_linear(512, 320, 320, SDC_DT_F16, 1, 1);  /* attention projections, 64x64 */
    check_linear(256, 2560, 320, SDC_DT_F16, 1, 0); /* GEGLU proj */
    check_linear(256, 320, 1280, SDC_DT_F16, 1, 1); /* FF out */
}

static void test_conv(void) {
    const sdc_dtype dts[3] = {SDC_DT_F32, SDC_DT_F16, SDC_DT_BF16};
    for (int d = 0; d < 3; d++) {
        check_conv(2, 3, 7, 9, 5, 3, 1, 1, dts[d], -1);   /* K = 27: odd */
        check_conv(1, 13, 5, 5, 20, 1, 1, 0, dts[d], -1); /* 1x1 */
        check_conv(1, 4, 8, 8, 7, 3, 2, 1, dts[d], -1);   /* stride 2 */
        check_conv(2, 17, 17, 19, 29, 3, 1, 1, dts[d], 1); /* Winograd: f32 in the mode */
    }
    /* real shapes */
    check_conv(1, 320, 64, 64, 64, 3, 1, 1, SDC_DT_F16, 1);   /* 64x64, O sliced */
    check_conv(1, 320, 64, 64, 64, 3, 2, 1, SDC_DT_F16, -1);  /* downsample */
    check_conv(2, 640, 16, 16, 64, 3, 1, 1, SDC_DT_F16, -1);  /* 3x3 on the GEMM path */
    check_conv(1, 960, 32, 32, 64, 1, 1, 0, SDC_DT_F16, -1);  /* skip 1x1 */
    printf("  worst error against fp32 (GEMM paths): %.3g\n", g_worst_gemm);
}

static void test_off_again(void) {
    CHECK(sdc_backend_cpu_set_bf16(g_bf, 0) == SDC_OK);
    int M = 33, N = 40, K = 255;
    float *x = frand((size_t)M * K, 1.0f), *y = fbuf((size_t)M * N), *yr = fbuf((size_t)M * N);
    float *wf = frand((size_t)N * K, 0.3f);
    sdc_weight W = t_weight_make(SDC_DT_F16, wf, (int64_t)N * K);
    g_bf->linear(g_bf, y, x, &W, NULL, NULL, M, N, K);
    g_ref->linear(g_ref, yr, x, &W, NULL, NULL, M, N, K);
    check("linear after the mode is switched off vs fp32", y, yr, (size_t)M * N, TOL);
    free(x), free(y), free(yr), free(wf), t_weight_free(&W);
    CHECK(sdc_backend_cpu_set_bf16(g_bf, 1) == SDC_OK);
}

int main(void) {
    t_rand_seed(7);
    unsetenv("SDC_FORCE_REF");
    unsetenv("SDC_CPU_ISA");
    g_ref = sdc_backend_cpu_create(1, 1);
    g_bf = sdc_backend_cpu_create(0, 0);
    if (!g_ref || !g_bf) {
        fprintf(stderr, "cannot create the CPU backend: %s\n", sdc_last_error());
        return 1;
    }
    /* the reference backend never has the mode */
    CHECK(sdc_backend_cpu_set_bf16(g_ref, 1) == SDC_ERR_UNSUPPORTED);
    CHECK(strstr(sdc_last_error(), "AVX512_BF16") != NULL);
    CHECK(sdc_backend_cpu_set_bf16(sdc_backend_null(), 1) == SDC_ERR_UNSUPPORTED);
    if (sdc_backend_cpu_set_bf16(g_bf, 1) != SDC_OK) {
        printf("  %s: %s\n  (only the refusal is tested here)\n", g_bf->name, sdc_last_error());
        CHECK(strstr(sdc_last_error(), "AVX512_BF16") != NULL);
    } else {
        CHECK(strstr(g_bf->name, "bf16") != NULL);
        printf("  %s\n", g_bf->name);
        RUN(test_linear);
        RUN(test_conv);
        RUN(test_off_again);
    }
    g_bf->free(g_bf);
    g_ref->free(g_ref);
    return t_summary();
}
