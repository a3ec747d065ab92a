/* The CPU backend's ops.
 *
 * 1. The reference ops (SDC_FORCE_REF path) against PyTorch outputs in
 *    fixtures/ops_ref.safetensors (scripts/fixtures_lib/ops.py).
 * 2. Every fast op against the reference: random shapes (odd sizes, M = 1,
 *    K not a multiple of 8, aliasing as allowed by backend.h), F32/F16/BF16
 *    weights, on every path this CPU runs (SDC_CPU_ISA: generic, avx2,
 *    avx512, neon; all cores) and the default path on 3 threads; then SD
 *    1.x's real shapes on every SIMD path (rows/channels/queries sliced
 *    where the reference would be slow).  SDC_CPU_ISA itself: each name
 *    selects its path, an unknown or unsupported one the best.
 * 3. The null backend accepts every op with NULL activations.
 *
 * Tolerances (relative L2 unless said):
 *   linear, conv2d, attention: 1e-5 (measured: <= 1.5e-6)
 *   group/layer norm, silu, gelu, quick_gelu, geglu: 1e-6 (measured: <= 1e-7)
 *   data movement and simple arithmetic (copy, add, lerp, pad, ...): exact
 *   (activations of a handful of values: or max |diff| <= 1e-6)
 *   reference vs PyTorch: 1e-5, and max |diff| <= 1e-4 for the timestep
 *   embedding at t = 999. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/cpu/cpu_impl.h"
#include "backends/cpu/threadpool.h"
#include "harness.h"
#include "io/safetensors.h"

#define TOL 1e-5     /* GEMM-based ops and attention (sums of up to 11520 products) */
#define TOL_ACT 1e-6 /* norms and activations */

static sdc_backend *g_ref;     /* reference ops, 1 thread */
/* g_fast[0]: the default (best ISA, all cores); [1]: the best ISA on 3
 * threads; [2..]: every other ISA this CPU runs (SDC_CPU_ISA paths), all
 * cores.  g_real: those that run the SIMD kernels, for the real shapes. */
static sdc_backend *g_fast[2 + SDC_ISA_NEON];
static char g_fast_name[2 + SDC_ISA_NEON][32];
static int g_nfast;
static sdc_backend *g_real[2 + SDC_ISA_NEON];
static int g_nreal;

/* ---- helpers ------------------------------------------------------------ */

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

static sdc_weight wrand(sdc_dtype dt, int64_t n, float scale) {
    float *f = frand((size_t)n, scale);
    sdc_weight w = t_weight_make(dt, f, n);
    free(f);
    return w;
}

/* rows [r0, r0+cnt) of a weight whose rows hold `row` elements */
static sdc_weight wslice(const sdc_weight *w, int64_t r0, int64_t cnt, int64_t row) {
    sdc_weight s = *w;
    s.data = (const char *)w->data + (size_t)(r0 * row) * sdc_dtype_size(w->dtype);
    s.shape[0] = cnt;
    s.numel = cnt * row;
    s.nbytes = (size_t)s.numel * sdc_dtype_size(w->dtype);
    return s;
}

static void expect_close(const char *what, const float *got, const float *want, size_t n,
                         double tol) {
    double e = t_rel_l2(got, want, n);
    if (getenv("SDC_TEST_VERBOSE")) printf("    %-60s rel L2 %.3g\n", what, e);
    CHECKF(e <= tol, "%s: rel L2 %.3g > %.3g (max abs %.3g)", what, e, tol,
           t_max_abs(got, want, n));
}

/* for activations of small outputs: rel L2 <= tol or max |diff| <= abs_tol
 * (the reference's 1 + erf(x) loses relative accuracy for x << 0) */
static void expect_close_abs(const char *what, const float *got, const float *want, size_t n,
                             double tol, double abs_tol) {
    double e = t_rel_l2(got, want, n), m = t_max_abs(got, want, n);
    CHECKF(e <= tol || m <= abs_tol, "%s: rel L2 %.3g > %.3g and max abs %.3g > %.3g", what, e,
           tol, m, abs_tol);
}

static void expect_equal(const char *what, const float *got, const float *want, size_t n) {
    double e = t_max_abs(got, want, n);
    CHECKF(e == 0.0, "%s: max abs %.3g, want exact", what, e);
}

static const sdc_dtype k_dtypes[3] = {SDC_DT_F32, SDC_DT_F16, SDC_DT_BF16};

/* ---- 1. reference vs PyTorch --------------------------------------------- */

static const float *fx(const sdc_st_file *f, const char *name, int64_t numel) {
    const sdc_weight *w = sdc_st_find(f, name);
    CHECKF(w && w->dtype == SDC_DT_F32 && w->numel == numel, "fixture tensor %s", name);
    if (!w || w->dtype != SDC_DT_F32 || w->numel != numel) abort();
    return w->data;
}

static const sdc_weight *fw(const sdc_st_file *f, const char *name) {
    const sdc_weight *w = sdc_st_find(f, name);
    CHECKF(w != NULL, "fixture tensor %s", name);
    if (!w) abort();
    return w;
}

static void test_ref_vs_pytorch(void) {
    sdc_st_file *f = NULL;
    sdc_status st = sdc_st_open(t_fixture("ops_ref.safetensors"), &f);
    CHECKF(st == SDC_OK, "open ops_ref.safetensors: %s", sdc_last_error());
    if (st != SDC_OK) return;
    sdc_backend *r = g_ref;
    float y[2 * 320];

    r->linear(r, y, fx(f, "linear.x", 65), fw(f, "linear.w"), fw(f, "linear.b"), NULL, 5, 7, 13);
    expect_close("linear", y, fx(f, "linear.y", 35), 35, TOL);

    r->conv2d(r, y, fx(f, "conv.x", 2 * 3 * 9 * 8), 2, 3, 9, 8, fw(f, "conv.w"), fw(f, "conv.b"),
              4, 3, 3, 2, 1, NULL);
    expect_close("conv2d stride 2 pad 1", y, fx(f, "conv.y", 2 * 4 * 5 * 4), 160, TOL);

    const float *gx = fx(f, "gn.x", 400);
    r->group_norm(r, y, gx, NULL, 2, 8, 25, 4, fw(f, "gn.gamma"), fw(f, "gn.beta"), 1e-6f, 0);
    expect_close("group_norm", y, fx(f, "gn.y", 400), 400, TOL);
    r->group_norm(r, y, gx, NULL, 2, 8, 25, 4, fw(f, "gn.gamma"), fw(f, "gn.beta"), 1e-6f, 1);
    expect_close("group_norm + silu", y, fx(f, "gn.y_silu", 400), 400, TOL);

    r->layer_norm(r, y, fx(f, "ln.x", 60), 5, 12, fw(f, "ln.gamma"), fw(f, "ln.beta"), 1e-5f);
    expect_close("layer_norm", y, fx(f, "ln.y", 60), 60, TOL);

    r->attention(r, y, fx(f, "att.q", 112), 16, fx(f, "att.k", 112), fx(f, "att.v", 112), 16, 7,
                 7, 2, 8, 1.0f / sqrtf(8.0f), 1);
    expect_close("attention causal", y, fx(f, "att.y", 112), 112, TOL);
    r->attention(r, y, fx(f, "xatt.q", 40), 8, fx(f, "xatt.k", 72), fx(f, "xatt.v", 72), 8, 5, 9,
                 2, 4, 0.5f, 0);
    expect_close("attention cross", y, fx(f, "xatt.y", 40), 40, TOL);

    r->geglu(r, y, fx(f, "geglu.x", 60), 3, 10);
    expect_close("geglu", y, fx(f, "geglu.y", 30), 30, TOL);

    const float *ax = fx(f, "act.x", 64);
    r->silu(r, y, ax, 64);
    expect_close("silu", y, fx(f, "act.silu", 64), 64, TOL);
    r->gelu(r, y, ax, 64);
    expect_close("gelu", y, fx(f, "act.gelu", 64), 64, TOL);
    r->quick_gelu(r, y, ax, 64);
    expect_close("quick_gelu", y, fx(f, "act.quick_gelu", 64), 64, TOL);

    r->timestep_embed(r, y, fx(f, "temb.t", 2), 2, 320);
    const float *ty = fx(f, "temb.y", 640);
    expect_close("timestep_embed", y, ty, 640, TOL);
    double e = t_max_abs(y, ty, 640);
    CHECKF(e <= 1e-4, "timestep_embed t=999,1: max abs %.3g > 1e-4", e);

    r->upsample2x(r, y, fx(f, "up.x", 24), 1, 2, 3, 4);
    expect_equal("upsample2x", y, fx(f, "up.y", 96), 96);
    sdc_st_close(f);
}

/* ---- 2. fast vs reference: random shapes -------------------------------- */

static void check_linear(sdc_backend *be, const char *bn, int M, int N, int K, sdc_dtype dt,
                         int bias, int acc_mode /* 0 none, 1 separate, 2 aliases y */) {
    float *x = frand((size_t)M * K, 1.0f), *y = fbuf((size_t)M * N), *yr = fbuf((size_t)M * N);
    float *acc = acc_mode ? frand((size_t)M * N, 1.0f) : NULL;
    sdc_weight W = wrand(dt, (int64_t)N * K, 0.5f), b = wrand(dt, N, 1.0f);
    const sdc_weight *bp = bias ? &b : NULL;
    if (acc_mode == 2) { /* y = y + x W^T + b */
        memcpy(y, acc, (size_t)M * N * sizeof *y);
        memcpy(yr, acc, (size_t)M * N * sizeof *y);
        be->linear(be, y, x, &W, bp, y, M, N, K);
        g_ref->linear(g_ref, yr, x, &W, bp, yr, M, N, K);
    } else {
        be->linear(be, y, x, &W, bp, acc, M, N, K);
        g_ref->linear(g_ref, yr, x, &W, bp, acc, M, N, K);
    }
    char what[160];
    snprintf(what, sizeof what, "%s linear M%d N%d K%d %s bias%d acc%d", bn, M, N, K,
             sdc_dtype_name(dt), bias, acc_mode);
    expect_close(what, y, yr, (size_t)M * N, TOL);
    free(x), free(y), free(yr), free(acc), t_weight_free(&W), t_weight_free(&b);
}

static void test_linear_random(void) {
    static const int shapes[][3] = {{1, 1, 1},    {1, 17, 5},    {7, 33, 13},   {6, 16, 8},
                                    {13, 50, 300}, {65, 100, 257}, {2, 1280, 320}, {37, 271, 520},
                                    {200, 40, 9},  {1, 300, 1000}, {31, 70, 1024}};
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int b = 0; b < g_nfast; b++)
        for (int s = 0; s < ns; s++)
            for (int d = 0; d < 3; d++)
                check_linear(g_fast[b], g_fast_name[b], shapes[s][0], shapes[s][1], shapes[s][2],
                             k_dtypes[d], (s + d) % 2, (s + d + b) % 3);
}

/* linear_map in both directions against the reference (acc_mode as in
 * check_linear; to tokens takes none). */
static void check_linear_map(sdc_backend *be, const char *bn, int N, int HW, int C, int O,
                             int to_tokens, sdc_dtype dt, int bias, int acc_mode) {
    const size_t nx = (size_t)N * HW * C, ny = (size_t)N * HW * O;
    float *x = frand(nx, 1.0f), *y = fbuf(ny), *yr = fbuf(ny);
    float *acc = acc_mode && !to_tokens ? frand(ny, 1.0f) : NULL;
    sdc_weight W = wrand(dt, (int64_t)O * C, 0.5f), b = wrand(dt, O, 1.0f);
    const sdc_weight *bp = bias ? &b : NULL;
    if (acc && acc_mode == 2) { /* y = y + ... (the residual in place) */
        memcpy(y, acc, ny * sizeof *y);
        memcpy(yr, acc, ny * sizeof *y);
        be->linear_map(be, y, x, &W, bp, y, N, HW, C, O, 0);
        g_ref->linear_map(g_ref, yr, x, &W, bp, yr, N, HW, C, O, 0);
    } else {
        be->linear_map(be, y, x, &W, bp, acc, N, HW, C, O, to_tokens);
        g_ref->linear_map(g_ref, yr, x, &W, bp, acc, N, HW, C, O, to_tokens);
    }
    char what[256];
    snprintf(what, sizeof what, "%s linear_map %s N%d HW%d C%d O%d %s bias%d acc%d", bn,
             to_tokens ? "to tokens" : "to map", N, HW, C, O, sdc_dtype_name(dt), bias,
             acc ? acc_mode : 0);
    expect_close(what, y, yr, ny, TOL);
    free(x), free(y), free(yr), free(acc), t_weight_free(&W), t_weight_free(&b);
}

static void test_linear_map_random(void) {
    /* the reference against its definition: transpose, then linear (+ acc) */
    {
        const int N = 2, HW = 21, C = 13, O = 9;
        const size_t nx = (size_t)N * HW * C, ny = (size_t)N * HW * O;
        float *x = frand(nx, 1.0f), *t = fbuf(nx), *y = fbuf(ny), *yr = fbuf(ny), *u = fbuf(ny);
        float *acc = frand(ny, 1.0f);
        sdc_weight W = wrand(SDC_DT_F16, (int64_t)O * C, 0.5f), b = wrand(SDC_DT_F16, O, 1.0f);
        g_ref->linear_map(g_ref, y, x, &W, &b, NULL, N, HW, C, O, 1);
        g_ref->transpose(g_ref, t, x, N, C, HW);
        g_ref->linear(g_ref, yr, t, &W, &b, NULL, N * HW, O, C);
        expect_equal("ref linear_map to tokens = transpose + linear", y, yr, ny);
        g_ref->linear_map(g_ref, y, x, &W, &b, acc, N, HW, C, O, 0); /* x as [N, HW, C] */
        g_ref->linear(g_ref, u, x, &W, &b, NULL, N * HW, O, C);
        g_ref->transpose(g_ref, yr, u, N, HW, O);
        g_ref->add(g_ref, yr, yr, acc, (int64_t)ny);
        expect_close("ref linear_map to map = linear + transpose + add", y, yr, ny, 1e-6);
        free(x), free(t), free(y), free(yr), free(u), free(acc), t_weight_free(&W), t_weight_free(&b);
    }
    static const int shapes[][4] = {{1, 1, 1, 1},   {2, 37, 20, 24},  {2, 64, 32, 40},
                                    {1, 100, 17, 33}, {3, 15, 50, 64}, {2, 300, 64, 96},
                                    {2, 29, 320, 7},  {3, 32, 24, 18}};
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int b = 0; b < g_nfast; b++)
        for (int s = 0; s < ns; s++)
            for (int tt = 0; tt < 2; tt++) {
                int d = (s + tt + b) % 3;
                check_linear_map(g_fast[b], g_fast_name[b], shapes[s][0], shapes[s][1],
                                 shapes[s][2], shapes[s][3], tt, k_dtypes[d], (s + tt) % 2,
                                 (s + b) % 3);
            }
}

static void check_conv(sdc_backend *be, const char *bn, int N, int C, int H, int W, int O, int kh,
                       int kw, int stride, int pad, sdc_dtype dt, int bias, int acc_mode) {
    int Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    size_t ny = (size_t)N * O * Ho * Wo;
    float *x = frand((size_t)N * C * H * W, 1.0f), *y = fbuf(ny), *yr = fbuf(ny);
    float *acc = acc_mode ? frand(ny, 1.0f) : NULL;
    sdc_weight w = wrand(dt, (int64_t)O * C * kh * kw, 0.3f), b = wrand(dt, O, 1.0f);
    const sdc_weight *bp = bias ? &b : NULL;
    if (acc_mode == 2) {
        memcpy(y, acc, ny * sizeof *y);
        memcpy(yr, acc, ny * sizeof *y);
        be->conv2d(be, y, x, N, C, H, W, &w, bp, O, kh, kw, stride, pad, y);
        g_ref->conv2d(g_ref, yr, x, N, C, H, W, &w, bp, O, kh, kw, stride, pad, yr);
    } else {
        be->conv2d(be, y, x, N, C, H, W, &w, bp, O, kh, kw, stride, pad, acc);
        g_ref->conv2d(g_ref, yr, x, N, C, H, W, &w, bp, O, kh, kw, stride, pad, acc);
    }
    char what[160];
    snprintf(what, sizeof what, "%s conv N%d C%d %dx%d O%d k%dx%d s%d p%d %s", bn, N, C, H, W, O,
             kh, kw, stride, pad, sdc_dtype_name(dt));
    expect_close(what, y, yr, ny, TOL);
    free(x), free(y), free(yr), free(acc), t_weight_free(&w), t_weight_free(&b);
}

static void test_conv_random(void) {
    /* N C H W O kh kw stride pad */
    static const int shapes[][9] = {
        {2, 3, 7, 9, 5, 3, 3, 1, 1},  {1, 4, 8, 8, 7, 3, 3, 2, 1},   {1, 5, 9, 7, 3, 3, 3, 2, 0},
        {1, 13, 5, 5, 20, 1, 1, 1, 0}, {1, 3, 6, 6, 2, 1, 1, 2, 0},  {2, 8, 17, 19, 33, 3, 3, 1, 1},
        {1, 2, 5, 11, 4, 1, 3, 1, 1},  {1, 40, 6, 10, 9, 3, 3, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 0},
        {1, 7, 23, 3, 17, 3, 3, 1, 1}, {1, 30, 20, 20, 8, 1, 1, 1, 0}, {1, 3, 9, 8, 4, 3, 3, 2, 1},
        /* several images whose pixel counts are whole register strips (16,
         * 32, 64): one GEMM over all of them (gemm.c, conv_gemm_images) */
        {2, 12, 8, 8, 9, 1, 1, 1, 0},  {3, 10, 16, 8, 7, 3, 3, 2, 1}, {2, 20, 16, 16, 13, 3, 3, 2, 1},
        {2, 9, 4, 4, 5, 1, 1, 1, 0},   {3, 6, 8, 4, 19, 1, 1, 1, 0}};
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int b = 0; b < g_nfast; b++)
        for (int s = 0; s < ns; s++)
            for (int d = 0; d < 3; d++) {
                const int *p = shapes[s];
                check_conv(g_fast[b], g_fast_name[b], p[0], p[1], p[2], p[3], p[4], p[5], p[6],
                           p[7], p[8], k_dtypes[d], (s + d) % 2, (s + d + b) % 3);
            }
}

/* GEMMs whose operands are packed once per call into the shared buffer
 * (gemm.c: B when there are several m-tiles, a packed A when several
 * n-tiles), with K not a multiple of its blocks (K 301: 2 blocks of 151,
 * 302 deep in all) so that each tile's block regions are larger than K
 * rows, and both operands shared at once (a region sized by K instead
 * overran into the next: 3e6ecf8, found by a full-size image that changed
 * with --low-memory).  1x1 conv with F16 weights: M = O = 240 in 2
 * m-tiles, N = 24x24 = 576 in 4 n-tiles on 2 threads; then 3x3 stride 2
 * (im2col B), after a small call. */
static void test_gemm_shared_packs(void) {
    /* N C H W O kh kw stride pad */
    static const int shapes[][9] = {{1, 8, 4, 4, 8, 1, 1, 1, 0},
                                    {1, 301, 24, 24, 240, 1, 1, 1, 0},
                                    {1, 33, 48, 48, 240, 3, 3, 2, 1}};
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int b = 0; b < g_nfast; b++)
        for (int s = 0; s < ns; s++) {
            const int *p = shapes[s];
            check_conv(g_fast[b], g_fast_name[b], p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7],
                       p[8], SDC_DT_F16, s % 2, s % 3);
        }
}

/* The ISA's panel packing (k.pack_rows: 16x16 register transposes on
 * AVX-512) against the portable form, bit for bit: f32 rows in place and
 * F32/F16/BF16 weights, panel widths of both kernels (14/32, 6/16) and odd
 * ones, rows and depths around the 16-blocks, offsets into a wider matrix. */
static void test_pack_rows(void) {
    static const int wps[] = {14, 32, 6, 16, 5};
    static const int rowss[] = {1, 13, 14, 15, 31, 33, 70};
    static const int kcs[] = {1, 15, 16, 17, 100, 256, 640};
    const int ld = 700, nrows = 90;
    float *src = frand((size_t)nrows * ld, 1.0f);
    float *got = fbuf((size_t)(70 + 32) * 640), *want = fbuf((size_t)(70 + 32) * 640);
    for (int b = 0; b < g_nfast; b++) {
        const sdc_cpu *cpu = sdc_cpu_of(g_fast[b]);
        if (!cpu->k.pack_rows) continue;
        sdc_cpu portable = *cpu;
        portable.k.pack_rows = NULL;
        for (int d = -1; d < 3; d++) {
            sdc_weight w = wrand(d < 0 ? SDC_DT_F32 : k_dtypes[d], (int64_t)nrows * ld, 1.0f);
            int bad = 0, cases = 0;
            for (size_t i = 0; i < sizeof wps / sizeof *wps; i++)
                for (size_t j = 0; j < sizeof rowss / sizeof *rowss; j++)
                    for (size_t k = 0; k < sizeof kcs / sizeof *kcs; k++) {
                        int wp = wps[i], rows = rowss[j], kc = kcs[k];
                        int r0 = (int)(j % 3) * 7, k0 = kc <= 60 ? (int)k * 3 : 0;
                        size_t n = (size_t)((rows + wp - 1) / wp) * wp * kc;
                        memset(got, 0xff, n * sizeof *got);
                        memset(want, 0, n * sizeof *want);
                        const float *f32 = d < 0 ? src : NULL;
                        cpu->k.pack_rows(got, wp, f32, &w, ld, r0, rows, k0, kc);
                        sdc_gemm_pack_rows(&portable, want, wp, f32, &w, ld, r0, rows, k0, kc);
                        bad += memcmp(got, want, n * sizeof *got) != 0;
                        cases++;
                    }
            CHECKF(bad == 0, "%s pack_rows (%s): %d of %d cases differ from the portable form",
                   g_fast_name[b], d < 0 ? "f32 rows" : d == 0 ? "F32" : d == 1 ? "F16" : "BF16",
                   bad, cases);
            t_weight_free(&w);
        }
    }
    free(src);
    free(got);
    free(want);
}

/* 3x3 stride-1 pad-1 convs on the three conv paths, forced by SDC_WINOGRAD
 * (1: Winograd F(4x4,3x3), 2: F(2x2,3x3), 0: im2col GEMM) against the
 * reference: sizes
 * not multiples of 4 (partial tiles), 1x1 and 2x3 images, tile blocks that
 * cross tile rows and images (tiles of all images in one sequence: N = 3
 * with 12 tiles per image), both schedules (layer path: 144 and 180 tiles
 * at C < 256; panel path: small maps, and 130 tiles = two groups at
 * C = 256), O across register panels and output-channel blocks
 * (O = 300 > 256; C = 2560 gives blocks of 42), F32/F16/BF16, bias and
 * accumulate (also in place).  Same tolerance as every conv (1e-5); the
 * measured Winograd error is ~3e-6 (the real shapes print theirs). */
static void test_conv_winograd(void) {
    /* N C H W O */
    static const int shapes[][5] = {
        {2, 3, 7, 9, 5},    {1, 1, 1, 1, 1},     {1, 4, 2, 3, 3},    {1, 8, 4, 4, 16},
        {2, 17, 17, 19, 29}, {1, 20, 8, 64, 15}, {1, 5, 12, 20, 14}, {1, 16, 9, 10, 300},
        {1, 2560, 4, 5, 100}, {1, 40, 33, 30, 28}, {2, 64, 16, 16, 64}, {3, 16, 13, 9, 30},
        {2, 24, 8, 8, 40},   {3, 8, 5, 6, 20},    {1, 8, 48, 48, 20}, {2, 12, 36, 40, 17},
        {1, 256, 52, 40, 70}};
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    const char *old = getenv("SDC_WINOGRAD");
    char saved[16] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    static const char *const modes[] = {"1", "2", "0"};
    for (int mi = 0; mi < 3; mi++) {
        const int mode = modes[mi][0] - '0';
        setenv("SDC_WINOGRAD", modes[mi], 1);
        for (int b = 0; b < g_nfast; b++)
            for (int s = 0; s < ns; s++)
                for (int d = 0; d < 3; d++) {
                    const int *p = shapes[s];
                    if (p[1] >= 256 && (d != 1 || b > 1)) continue; /* the slow ones once */
                    char name[64];
                    snprintf(name, sizeof name, "%.31s wino%d", g_fast_name[b], mode);
                    check_conv(g_fast[b], name, p[0], p[1], p[2], p[3], p[4], 3, 3, 1, 1,
                               k_dtypes[d], (s + d) % 2, (s + d + b) % 3);
                }
    }
    if (saved[0]) setenv("SDC_WINOGRAD", saved, 1);
    else unsetenv("SDC_WINOGRAD");
    /* the size rule: maps from 8x8 up go to Winograd, 4x4 maps and 4-channel
     * inputs do not */
    CHECK((sdc_cpu_use_winograd(128, 512, 512, 128) == 1 &&
           sdc_cpu_use_winograd(1280, 8, 8, 1280) == 1) || saved[0] == '0');
    CHECK((sdc_cpu_use_winograd(1280, 4, 4, 1280) == 0 &&
           sdc_cpu_use_winograd(4, 64, 64, 320) == 0) || saved[0] == '1');
}

/* q, k, v as slices of one fused [S, 3*D] buffer when self-attention;
 * ramp: key j scaled by 0.25 + 2 j / Sk, so that later keys score higher
 * than every earlier one (the kernels' running max moves: rescaling within
 * and across key blocks). */
static void check_attention(sdc_backend *be, const char *bn, int Sq, int Sk, int heads, int dh,
                            int causal, int fused, int ramp) {
    int D = heads * dh;
    float *qb, *kvb, *q, *k, *v;
    int qs, kvs;
    if (fused) {
        Sk = Sq;
        qb = frand((size_t)Sq * 3 * D, 2.0f);
        kvb = NULL;
        q = qb, k = qb + D, v = qb + 2 * D, qs = kvs = 3 * D;
    } else {
        qb = frand((size_t)Sq * D, 2.0f);
        kvb = frand((size_t)Sk * 2 * D, 2.0f);
        q = qb, k = kvb, v = kvb + D, qs = D, kvs = 2 * D;
    }
    if (ramp)
        for (int j = 0; j < Sk; j++)
            for (int c = 0; c < D; c++) k[(size_t)j * kvs + c] *= 0.25f + 2.0f * (float)j / (float)Sk;
    float *y = fbuf((size_t)Sq * D), *yr = fbuf((size_t)Sq * D);
    float scale = 1.0f / sqrtf((float)dh);
    be->attention(be, y, q, qs, k, v, kvs, Sq, Sk, heads, dh, scale, causal);
    g_ref->attention(g_ref, yr, q, qs, k, v, kvs, Sq, Sk, heads, dh, scale, causal);
    char what[256]; /* 160 draws -Wformat-truncation from aarch64 gcc 12 */
    snprintf(what, sizeof what, "%s attention Sq%d Sk%d h%d dh%d causal%d ramp%d", bn, Sq, Sk,
             heads, dh, causal, ramp);
    expect_close(what, y, yr, (size_t)Sq * D, TOL);
    free(qb), free(kvb), free(y), free(yr);
}

/* Random shapes, chosen for the tiled kernels' edges (attention_avx512.c:
 * 32-query micro-tiles, 12- and 6-key score tiles, 192-key blocks, tasks
 * of 64 or 256 queries and of one head or a group of heads;
 * attention_avx2.c and attention_neon.c: 16-query micro-tiles, 6-key score
 * tiles, P V tiles of 6 head dims (a tail of 1..5), 8x8 (NEON: 4x4)
 * transposes in and out, 192-key blocks, tasks of 64 or 256 queries, fewer
 * for big dh): partial tiles and blocks on both axes, Sk = 0, causal masks
 * across blocks, head dims of every column path (40, multiples of 80, of
 * 64, odd, over the 512 limit), K and V over 1 MiB (one head per task;
 * with dh 512 a partial block of 176 queries), a moving running max
 * (ramp). */
static void test_attention_random(void) {
    /* Sq Sk heads dh causal fused ramp */
    static const int shapes[][7] = {
        {1, 1, 1, 4, 0, 0, 0},      {5, 7, 2, 8, 0, 0, 0},      {77, 77, 12, 64, 1, 1, 0},
        {130, 77, 2, 40, 0, 0, 0},  {70, 70, 1, 512, 0, 1, 0},  {33, 100, 3, 80, 0, 0, 0},
        {65, 129, 2, 160, 0, 0, 0}, {150, 150, 2, 4, 1, 1, 0},  {129, 129, 1, 8, 1, 1, 0},
        {3, 200, 1, 13, 0, 0, 0},   {64, 64, 2, 40, 1, 1, 0},   {9, 1, 3, 40, 0, 0, 0},
        {20, 20, 1, 600, 0, 1, 0},  {300, 389, 2, 40, 0, 0, 1}, {333, 333, 2, 80, 1, 1, 0},
        {280, 1100, 2, 128, 0, 0, 1}, {100, 77, 3, 40, 0, 0, 1}, {3, 0, 2, 40, 0, 0, 0},
        {47, 390, 1, 240, 0, 0, 1}, {200, 200, 3, 40, 1, 1, 1}, {37, 45, 2, 5, 0, 0, 1},
        {40, 50, 3, 27, 0, 0, 0},   {200, 300, 1, 512, 0, 0, 1}};
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int b = 0; b < g_nfast; b++)
        for (int s = 0; s < ns; s++) {
            const int *p = shapes[s];
            check_attention(g_fast[b], g_fast_name[b], p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
        }
}

static void check_norms(sdc_backend *be, const char *bn, int N, int C, int HW, int G, sdc_dtype dt,
                        int affine, int silu, float offset, int alias) {
    size_t n = (size_t)N * C * HW;
    float *x = frand(n, 2.0f), *y = fbuf(n), *yr = fbuf(n);
    for (size_t i = 0; i < n; i++) x[i] += offset;
    sdc_weight ga = wrand(dt, C, 1.0f), bb = wrand(dt, C, 1.0f);
    const sdc_weight *gp = affine ? &ga : NULL, *bp = affine ? &bb : NULL;
    char what[160];
    g_ref->group_norm(g_ref, yr, x, NULL, N, C, HW, G, gp, bp, 1e-5f, silu);
    if (alias) {
        memcpy(y, x, n * sizeof *y);
        be->group_norm(be, y, y, NULL, N, C, HW, G, gp, bp, 1e-5f, silu);
    } else {
        be->group_norm(be, y, x, NULL, N, C, HW, G, gp, bp, 1e-5f, silu);
    }
    snprintf(what, sizeof what, "%s group_norm N%d C%d HW%d G%d %s silu%d off%g", bn, N, C, HW, G,
             sdc_dtype_name(dt), silu, offset);
    expect_close(what, y, yr, n, TOL_ACT);
    /* with a per-(image, channel) add (the timestep embedding): the
     * reference against the sum taken first, then group_norm (1e-5: it is
     * rounded to f32 before the statistics, the fused one is not: 1.9e-6 at
     * an offset of 100), the ISA against the reference; x unchanged unless
     * aliased */
    {
        float *v = frand((size_t)N * C, 3.0f), *t = fbuf(n), *x0 = fbuf(n);
        memcpy(x0, x, n * sizeof *x0);
        for (size_t i = 0; i < n; i++) t[i] = x[i] + v[i / (size_t)HW]; /* v [N, C] */
        g_ref->group_norm(g_ref, yr, t, NULL, N, C, HW, G, gp, bp, 1e-5f, silu);
        g_ref->group_norm(g_ref, t, x, v, N, C, HW, G, gp, bp, 1e-5f, silu);
        snprintf(what, sizeof what, "ref group_norm +add N%d C%d HW%d G%d (= the sum, then)",
                 N, C, HW, G);
        expect_close(what, t, yr, n, 1e-5);
        memcpy(yr, t, n * sizeof *yr);
        if (alias) {
            memcpy(y, x, n * sizeof *y);
            be->group_norm(be, y, y, v, N, C, HW, G, gp, bp, 1e-5f, silu);
        } else {
            be->group_norm(be, y, x, v, N, C, HW, G, gp, bp, 1e-5f, silu);
            expect_equal("group_norm +add leaves x", x, x0, n);
        }
        snprintf(what, sizeof what, "%s group_norm +add N%d C%d HW%d G%d %s silu%d off%g", bn, N,
                 C, HW, G, sdc_dtype_name(dt), silu, offset);
        expect_close(what, y, yr, n, TOL_ACT);
        free(v), free(t), free(x0);
    }
    /* layer norm over rows of length HW */
    int rows = N * C;
    sdc_weight lg = wrand(dt, HW, 1.0f), lb = wrand(dt, HW, 1.0f);
    g_ref->layer_norm(g_ref, yr, x, rows, HW, affine ? &lg : NULL, affine ? &lb : NULL, 1e-5f);
    if (alias) {
        memcpy(y, x, n * sizeof *y);
        be->layer_norm(be, y, y, rows, HW, affine ? &lg : NULL, affine ? &lb : NULL, 1e-5f);
    } else {
        be->layer_norm(be, y, x, rows, HW, affine ? &lg : NULL, affine ? &lb : NULL, 1e-5f);
    }
    snprintf(what, sizeof what, "%s layer_norm rows%d D%d %s off%g", bn, rows, HW,
             sdc_dtype_name(dt), offset);
    expect_close(what, y, yr, n, TOL_ACT);
    free(x), free(y), free(yr), t_weight_free(&ga), t_weight_free(&bb), t_weight_free(&lg), t_weight_free(&lb);
}

static void test_norms_random(void) {
    for (int b = 0; b < g_nfast; b++) {
        check_norms(g_fast[b], g_fast_name[b], 2, 6, 7, 3, SDC_DT_F32, 1, 0, 0.0f, 0);
        check_norms(g_fast[b], g_fast_name[b], 2, 6, 7, 3, SDC_DT_F16, 1, 1, 0.0f, 1);
        check_norms(g_fast[b], g_fast_name[b], 1, 32, 33, 32, SDC_DT_BF16, 0, 1, 0.0f, 0);
        check_norms(g_fast[b], g_fast_name[b], 3, 8, 100, 2, SDC_DT_F32, 1, 1, 100.0f, 1);
        check_norms(g_fast[b], g_fast_name[b], 1, 1, 1, 1, SDC_DT_F32, 1, 0, 0.0f, 0);
        check_norms(g_fast[b], g_fast_name[b], 2, 64, 257, 32, SDC_DT_F16, 1, 1, -3.0f, 0);
    }
}

static void test_elementwise(void) {
    const int64_t n = 100003;
    float *x = frand((size_t)n, 12.0f), *z = frand((size_t)n, 3.0f), *y = fbuf((size_t)n),
          *yr = fbuf((size_t)n);
    x[0] = 0.0f, x[1] = -90.0f, x[2] = 90.0f, x[3] = -1e-20f, x[4] = 30.0f, x[5] = -30.0f;
    for (int b = 0; b < g_nfast; b++) {
        sdc_backend *be = g_fast[b];
        char what[96];
#define UNARY(op)                                                                              \
    do {                                                                                       \
        be->op(be, y, x, n);                                                                   \
        g_ref->op(g_ref, yr, x, n);                                                            \
        snprintf(what, sizeof what, "%s %s", g_fast_name[b], #op);                             \
        expect_close(what, y, yr, (size_t)n, TOL_ACT);                                         \
        double e_ = t_max_abs(y, yr, (size_t)n);                                               \
        CHECKF(e_ <= 1e-5, "%s: max abs %.3g", what, e_);                                      \
        memcpy(y, x, (size_t)n * sizeof *y);                                                   \
        be->op(be, y, y, n);                                                                   \
        expect_close(what, y, yr, (size_t)n, TOL_ACT);                                         \
    } while (0)
        UNARY(silu);
        UNARY(gelu);
        UNARY(quick_gelu);
#undef UNARY
        be->add(be, y, x, z, n);
        g_ref->add(g_ref, yr, x, z, n);
        expect_equal("add", y, yr, (size_t)n);
        be->lerp(be, y, x, z, 7.5f, n);
        g_ref->lerp(g_ref, yr, x, z, 7.5f, n);
        expect_equal("lerp", y, yr, (size_t)n);
        be->axpby(be, y, 0.3f, x, -1.7f, z, n);
        g_ref->axpby(g_ref, yr, 0.3f, x, -1.7f, z, n);
        expect_equal("axpby", y, yr, (size_t)n);
        be->axpby(be, y, 0.3f, x, 0.0f, NULL, n);
        g_ref->axpby(g_ref, yr, 0.3f, x, 0.0f, NULL, n);
        expect_equal("axpby z NULL", y, yr, (size_t)n);
        memcpy(y, z, (size_t)n * sizeof *y);
        be->axpby(be, y, 0.3f, x, 2.0f, y, n); /* y aliases z */
        g_ref->axpby(g_ref, yr, 0.3f, x, 2.0f, z, n);
        expect_equal("axpby alias", y, yr, (size_t)n);
        be->copy(be, y, x, n);
        expect_equal("copy", y, x, (size_t)n);
        be->copy_in(be, y, z, n);
        expect_equal("copy_in", y, z, (size_t)n);
        be->copy_out(be, y, x, n);
        expect_equal("copy_out", y, x, (size_t)n);

        /* geglu: odd D and SD's D = 1280 */
        static const int gs[][2] = {{7, 13}, {77, 1280}, {1, 1}};
        for (int s = 0; s < 3; s++) {
            int rows = gs[s][0], D = gs[s][1];
            float *gx = frand((size_t)rows * 2 * D, 6.0f), *gy = fbuf((size_t)rows * D),
                  *gyr = fbuf((size_t)rows * D);
            be->geglu(be, gy, gx, rows, D);
            g_ref->geglu(g_ref, gyr, gx, rows, D);
            snprintf(what, sizeof what, "%s geglu rows%d D%d", g_fast_name[b], rows, D);
            expect_close_abs(what, gy, gyr, (size_t)rows * D, TOL_ACT, 1e-6);
            free(gx), free(gy), free(gyr);
        }
    }
    free(x), free(z), free(y), free(yr);
}

static void test_layout_ops(void) {
    for (int b = 0; b < g_nfast; b++) {
        sdc_backend *be = g_fast[b];
        /* N C H W */
        static const int shapes[][4] = {{2, 3, 5, 7}, {1, 1, 1, 1}, {2, 320, 64, 64}, {1, 4, 33, 1}};
        for (int s = 0; s < 4; s++) {
            int N = shapes[s][0], C = shapes[s][1], H = shapes[s][2], W = shapes[s][3];
            size_t n = (size_t)N * C * H * W, n4 = 4 * n + 64 * (size_t)N * C;
            float *x = frand(n, 1.0f), *y = fbuf(n4), *yr = fbuf(n4), *z = frand(n, 1.0f);
            be->upsample2x(be, y, x, N, C, H, W);
            g_ref->upsample2x(g_ref, yr, x, N, C, H, W);
            expect_equal("upsample2x", y, yr, 4 * n);
            be->pad2d(be, y, x, N, C, H, W, 0, 1, 0, 1);
            g_ref->pad2d(g_ref, yr, x, N, C, H, W, 0, 1, 0, 1);
            expect_equal("pad2d 0101", y, yr, (size_t)N * C * (H + 1) * (W + 1));
            be->pad2d(be, y, x, N, C, H, W, 2, 1, 3, 0);
            g_ref->pad2d(g_ref, yr, x, N, C, H, W, 2, 1, 3, 0);
            expect_equal("pad2d 2130", y, yr, (size_t)N * C * (H + 3) * (W + 3));
            be->transpose(be, y, x, N, C, H * W);
            g_ref->transpose(g_ref, yr, x, N, C, H * W);
            expect_equal("transpose", y, yr, n);
            be->concat(be, y, x, C, z, C, N, H * W);
            g_ref->concat(g_ref, yr, x, C, z, C, N, H * W);
            expect_equal("concat", y, yr, 2 * n);
            free(x), free(y), free(yr), free(z);
        }
        /* embed, timestep_embed */
        int32_t ids[5] = {3, 0, 9, 3, 7};
        for (int d = 0; d < 3; d++) {
            sdc_weight tab = wrand(k_dtypes[d], 10 * 12, 1.0f), pos = wrand(k_dtypes[d], 6 * 12, 1.0f);
            float y[60], yr[60];
            be->embed(be, y, ids, 5, &tab, &pos, 12);
            g_ref->embed(g_ref, yr, ids, 5, &tab, &pos, 12);
            expect_equal("embed", y, yr, 60);
            be->embed(be, y, ids, 5, &tab, NULL, 12);
            g_ref->embed(g_ref, yr, ids, 5, &tab, NULL, 12);
            expect_equal("embed no pos", y, yr, 60);
            CHECK(yr[0] == sdc_weight_get(&tab, 36) && yr[13] == sdc_weight_get(&tab, 1));
            t_weight_free(&tab), t_weight_free(&pos);
        }
        float t[3] = {999.0f, 1.0f, 0.0f}, y[3 * 321], yr[3 * 321];
        be->timestep_embed(be, y, t, 3, 321);
        g_ref->timestep_embed(g_ref, yr, t, 3, 321);
        expect_equal("timestep_embed", y, yr, 3 * 321);
        CHECK(yr[2 * 321] == 1.0f && yr[2 * 321 + 160] == 0.0f && yr[320] == 0.0f);
    }
}

/* ---- 2b. SD 1.x's real shapes ------------------------------------------- */

static void sd_linear(sdc_backend *be, int M, int N, int K, sdc_dtype dt) {
    if (t_quick() && M >= 64) M /= 4; /* under qemu: a quarter of the rows */
    float *x = frand((size_t)M * K, 1.0f), *y = fbuf((size_t)M * N), *yr = fbuf(N);
    float *acc = frand((size_t)M * N, 1.0f);
    sdc_weight W = wrand(dt, (int64_t)N * K, 0.05f), b = wrand(dt, N, 0.1f);
    double t0 = t_seconds();
    be->linear(be, y, x, &W, &b, acc, M, N, K);
    double t1 = t_seconds();
    /* the reference on a few rows spread over M */
    int rows[5] = {0, M / 3, M / 2 + 1, M - 7, M - 1};
    double worst = 0;
    for (int r = 0; r < 5; r++) {
        int m = rows[r] < 0 ? 0 : rows[r] >= M ? M - 1 : rows[r];
        g_ref->linear(g_ref, yr, x + (int64_t)m * K, &W, &b, acc + (int64_t)m * N, 1, N, K);
        double e = t_rel_l2(y + (int64_t)m * N, yr, (size_t)N);
        if (e > worst) worst = e;
    }
    CHECKF(worst <= TOL, "%s SD linear M%d N%d K%d %s: rel L2 %.3g", be->name, M, N, K, sdc_dtype_name(dt), worst);
    printf("  linear   M%-5d N%-5d K%-5d %-4s %7.2f ms %6.1f GFLOP/s  rel L2 %.2g\n", M, N, K,
           sdc_dtype_name(dt), (t1 - t0) * 1e3, 2.0 * M * N * K / (t1 - t0) * 1e-9, worst);
    free(x), free(y), free(yr), free(acc), t_weight_free(&W), t_weight_free(&b);
}

/* linear_map on a real shape, both ways; the reference on 5 pixels. */
static void sd_linear_map(sdc_backend *be, int N, int HW, int C, sdc_dtype dt) {
    const int O = C;
    const size_t n = (size_t)N * HW * C;
    float *x = frand(n, 1.0f), *y = fbuf(n), *acc = frand(n, 1.0f);
    float *row = fbuf((size_t)C), *yr = fbuf((size_t)O), *got = fbuf((size_t)O);
    sdc_weight W = wrand(dt, (int64_t)O * C, 0.05f), b = wrand(dt, O, 0.1f);
    for (int to_tokens = 1; to_tokens >= 0; to_tokens--) {
        double t0 = t_seconds();
        be->linear_map(be, y, x, &W, &b, to_tokens ? NULL : acc, N, HW, C, O, to_tokens);
        double t1 = t_seconds();
        int pix[5] = {0, HW / 3, HW / 2 + 1, HW - 7, HW - 1};
        double worst = 0;
        for (int i = 0; i < 5; i++) {
            const int nn = i % N, p = pix[i] < 0 ? 0 : pix[i];
            /* the pixel's input row, its reference output and the op's */
            for (int c = 0; c < C; c++)
                row[c] = to_tokens ? x[((size_t)nn * C + c) * HW + p] : x[((size_t)nn * HW + p) * C + c];
            g_ref->linear(g_ref, yr, row, &W, &b, NULL, 1, O, C);
            for (int o = 0; o < O; o++) {
                if (to_tokens) {
                    got[o] = y[((size_t)nn * HW + p) * O + o];
                } else {
                    got[o] = y[((size_t)nn * O + o) * HW + p];
                    yr[o] += acc[((size_t)nn * O + o) * HW + p];
                }
            }
            double e = t_rel_l2(got, yr, (size_t)O);
            if (e > worst) worst = e;
        }
        CHECKF(worst <= TOL, "%s SD linear_map %s N%d HW%d C%d %s: rel L2 %.3g", be->name,
               to_tokens ? "to tokens" : "to map", N, HW, C, sdc_dtype_name(dt), worst);
        printf("  linear_map %-9s N%d HW%-5d C%-5d %-4s %7.2f ms %6.1f GFLOP/s  rel L2 %.2g\n",
               to_tokens ? "to tokens" : "to map", N, HW, C, sdc_dtype_name(dt), (t1 - t0) * 1e3,
               2.0 * N * HW * C * O / (t1 - t0) * 1e-9, worst);
    }
    free(x), free(y), free(acc), free(row), free(yr), free(got), t_weight_free(&W), t_weight_free(&b);
}

static void sd_conv(sdc_backend *be, int N, int C, int H, int W, int O, int k, int stride, int pad, sdc_dtype dt) {
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    size_t P = (size_t)Ho * Wo, ny = (size_t)N * O * P;
    float *x = frand((size_t)N * C * H * W, 1.0f), *y = fbuf(ny);
    sdc_weight w = wrand(dt, (int64_t)O * C * k * k, 0.05f), b = wrand(dt, O, 0.1f);
    double t0 = t_seconds();
    be->conv2d(be, y, x, N, C, H, W, &w, &b, O, k, k, stride, pad, NULL);
    double t1 = t_seconds();
    /* the reference on 3 output channels (first, middle, last) of the last image */
    int cs[3] = {0, O / 2, O - 1};
    float *yr = fbuf((size_t)N * P);
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        sdc_weight ws = wslice(&w, cs[i], 1, (int64_t)C * k * k), bs = wslice(&b, cs[i], 1, 1);
        g_ref->conv2d(g_ref, yr, x + (size_t)(N - 1) * C * H * W, 1, C, H, W, &ws, &bs, 1, k, k,
                      stride, pad, NULL);
        double e = t_rel_l2(y + ((size_t)(N - 1) * O + cs[i]) * P, yr, P);
        if (e > worst) worst = e;
    }
    CHECKF(worst <= TOL, "%s SD conv C%d %dx%d O%d k%d s%d %s: rel L2 %.3g", be->name, C, H, W, O, k, stride,
           sdc_dtype_name(dt), worst);
    printf("  conv2d   N%d C%-4d %3dx%-3d O%-4d k%d s%d %-4s %7.2f ms %6.1f GFLOP/s  rel L2 %.2g\n",
           N, C, H, W, O, k, stride, sdc_dtype_name(dt), (t1 - t0) * 1e3,
           2.0 * N * O * P * C * k * k / (t1 - t0) * 1e-9, worst);
    free(x), free(y), free(yr), t_weight_free(&w), t_weight_free(&b);
}

static void sd_attention(sdc_backend *be, int Sq, int Sk, int heads, int dh, int causal, int q_slice) {
    int D = heads * dh;
    float *q = frand((size_t)Sq * D, 2.0f), *kv = frand((size_t)Sk * 2 * D, 2.0f);
    float *y = fbuf((size_t)q_slice * D), *yr = fbuf((size_t)q_slice * D);
    float scale = 1.0f / sqrtf((float)dh);
    /* a slice of q_slice queries from the middle (no causal mask: slicing would shift it) */
    int i0 = causal ? 0 : (Sq - q_slice) / 2;
    const float *qs = q + (size_t)i0 * D;
    double t0 = t_seconds();
    be->attention(be, y, qs, D, kv, kv + D, 2 * D, q_slice, Sk, heads, dh, scale, causal);
    double t1 = t_seconds();
    g_ref->attention(g_ref, yr, qs, D, kv, kv + D, 2 * D, q_slice, Sk, heads, dh, scale, causal);
    double e = t_rel_l2(y, yr, (size_t)q_slice * D);
    CHECKF(e <= TOL, "%s SD attention Sq%d Sk%d h%d dh%d: rel L2 %.3g", be->name, Sq, Sk, heads, dh, e);
    printf("  attention %d/%d queries Sk%-5d h%-2d dh%-3d %7.2f ms %6.1f GFLOP/s  rel L2 %.2g\n",
           q_slice, Sq, Sk, heads, dh, (t1 - t0) * 1e3,
           4.0 * q_slice * Sk * D / (t1 - t0) * 1e-9, e);
    free(q), free(kv), free(y), free(yr);
}

static void test_sd_shapes(void) {
    for (int r = 0; r < g_nreal; r++) {
        sdc_backend *be = g_real[r];
        printf("  %s\n", be->name);
        /* UNet at 512x512 (latent 64x64; CFG batch 2), CLIP, VAE */
        sd_linear(be, 8192, 320, 320, SDC_DT_F16);  /* attn q/k/v/out, 64x64 */
        sd_linear(be, 4096, 2560, 320, SDC_DT_F16); /* GEGLU proj */
        sd_linear(be, 4096, 320, 1280, SDC_DT_F16); /* FF out */
        sd_linear(be, 2048, 640, 640, SDC_DT_BF16); /* 32x32 */
        sd_linear(be, 512, 1280, 1280, SDC_DT_F32); /* 16x16 */
        sd_linear(be, 128, 5120, 1280, SDC_DT_F16); /* GEGLU at 8x8 (half of it) */
        sd_linear(be, 512, 1280, 5120, SDC_DT_F16); /* FF out, 16x16: A rows 20 KiB apart (packed) */
        sd_linear(be, 154, 320, 768, SDC_DT_F16);   /* cross-attn k/v from the text */
        sd_linear(be, 77, 3072, 768, SDC_DT_F16);   /* CLIP MLP */
        sd_linear(be, 2, 1280, 320, SDC_DT_F32);    /* time embedding */
        sd_linear_map(be, 2, 4096, 320, SDC_DT_F16); /* proj_in/out, 64x64 */
        sd_linear_map(be, 2, 256, 1280, SDC_DT_F16); /* 16x16 */
        sd_linear_map(be, 1, 4096, 512, SDC_DT_F32); /* VAE mid-block q/k/v/out */
        sd_conv(be, 2, 4, 64, 64, 320, 3, 1, 1, SDC_DT_F16);    /* conv_in */
        sd_conv(be, 1, 320, 64, 64, 320, 3, 1, 1, SDC_DT_F16);  /* resnet 64x64 */
        sd_conv(be, 1, 320, 64, 64, 320, 3, 2, 1, SDC_DT_F16);  /* downsample */
        sd_conv(be, 1, 960, 32, 32, 640, 1, 1, 0, SDC_DT_F16);  /* skip 1x1 */
        sd_conv(be, 2, 2560, 8, 8, 1280, 1, 1, 0, SDC_DT_F16);  /* skip 1x1, 8x8: both images in one GEMM */
        sd_conv(be, 2, 1280, 8, 8, 1280, 3, 1, 1, SDC_DT_BF16); /* 8x8 */
        sd_conv(be, 1, 128, 128, 128, 128, 3, 1, 1, SDC_DT_F32); /* VAE decoder (256 px) */
        sd_conv(be, 1, 512, 64, 64, 3, 3, 1, 1, SDC_DT_F32);    /* small O */
        sd_attention(be, 4096, 4096, 8, 40, 0, 128); /* self-attn 64x64 */
        sd_attention(be, 4096, 77, 8, 40, 0, 4096);  /* cross-attn 64x64 */
        sd_attention(be, 1024, 1024, 8, 80, 0, 256); /* 32x32 */
        sd_attention(be, 256, 256, 8, 160, 0, 256);  /* 16x16 */
        sd_attention(be, 77, 77, 12, 64, 1, 77);     /* CLIP, causal */
        sd_attention(be, 4096, 4096, 1, 512, 0, 64); /* VAE mid-block */
        for (int d = 0; d < 3; d++) /* GroupNorm + SiLU of a 64x64 resnet, LayerNorm of a transformer */
            check_norms(be, be->name, 2, 320, 4096, 32, k_dtypes[d], 1, d != 1, 0.5f, d == 2);
    }
}

/* ---- batch invariance ------------------------------------------------------
 * An image's result must not depend on the other images of the call: the
 * UNet's CFG-shared prefix computes one image where the plain pass computes
 * two (sdc_unet_forward's shared), and the pipeline's images must not change
 * with the batch.  Every choice a kernel makes from the batch (Winograd's
 * tile size and schedule, the GEMM's tiling and K blocks, one GEMM over all
 * images) must round each output the same way: image 0 of a call on N = 2
 * (or 2M rows) equals the call on it alone, bit for bit. */

static void batch_conv(sdc_backend *be, const char *bn, int C, int H, int W, int O, int k,
                       int stride, sdc_dtype dt, int with_acc) {
    const int pad = k == 3 ? 1 : 0, Ho = (H + 2 * pad - k) / stride + 1,
              Wo = (W + 2 * pad - k) / stride + 1;
    const size_t nx = (size_t)C * H * W, ny = (size_t)O * Ho * Wo;
    float *x = frand(2 * nx, 1.0f), *acc = with_acc ? frand(2 * ny, 1.0f) : NULL;
    float *y2 = fbuf(2 * ny), *y1 = fbuf(ny);
    sdc_weight w = wrand(dt, (int64_t)O * C * k * k, 0.3f), b = wrand(dt, O, 1.0f);
    be->conv2d(be, y2, x, 2, C, H, W, &w, &b, O, k, k, stride, pad, acc);
    be->conv2d(be, y1, x, 1, C, H, W, &w, &b, O, k, k, stride, pad, acc);
    char what[160];
    snprintf(what, sizeof what, "%s conv C%d %dx%d O%d k%d s%d %s acc%d: image 0 of 2 = alone",
             bn, C, H, W, O, k, stride, sdc_dtype_name(dt), with_acc);
    expect_equal(what, y2, y1, ny);
    free(x), free(acc), free(y2), free(y1), t_weight_free(&w), t_weight_free(&b);
}

static void batch_linear(sdc_backend *be, const char *bn, int M, int N, int K, sdc_dtype dt) {
    float *x = frand((size_t)2 * M * K, 1.0f), *y2 = fbuf((size_t)2 * M * N), *y1 = fbuf((size_t)M * N);
    sdc_weight W = wrand(dt, (int64_t)N * K, 0.5f), b = wrand(dt, N, 1.0f);
    be->linear(be, y2, x, &W, &b, NULL, 2 * M, N, K);
    be->linear(be, y1, x, &W, &b, NULL, M, N, K);
    char what[160];
    snprintf(what, sizeof what, "%s linear M%d N%d K%d %s: rows of 2M = M alone", bn, M, N, K,
             sdc_dtype_name(dt));
    expect_equal(what, y2, y1, (size_t)M * N);
    free(x), free(y2), free(y1), t_weight_free(&W), t_weight_free(&b);
}

static void batch_linear_map(sdc_backend *be, const char *bn, int HW, int C, int O, int to_tokens) {
    const size_t nx = (size_t)HW * C, ny = (size_t)HW * O;
    float *x = frand(2 * nx, 1.0f), *acc = to_tokens ? NULL : frand(2 * ny, 1.0f);
    float *y2 = fbuf(2 * ny), *y1 = fbuf(ny);
    sdc_weight W = wrand(SDC_DT_F16, (int64_t)O * C, 0.5f), b = wrand(SDC_DT_F16, O, 1.0f);
    be->linear_map(be, y2, x, &W, &b, acc, 2, HW, C, O, to_tokens);
    be->linear_map(be, y1, x, &W, &b, acc, 1, HW, C, O, to_tokens);
    char what[160];
    snprintf(what, sizeof what, "%s linear_map %s HW%d C%d O%d: image 0 of 2 = alone", bn,
             to_tokens ? "to tokens" : "to map", HW, C, O);
    expect_equal(what, y2, y1, ny);
    free(x), free(acc), free(y2), free(y1), t_weight_free(&W), t_weight_free(&b);
}

static void batch_group_norm(sdc_backend *be, const char *bn, int C, int HW, int G) {
    const size_t n = (size_t)C * HW;
    float *x = frand(2 * n, 2.0f), *add = frand((size_t)2 * C, 1.0f), *y2 = fbuf(2 * n), *y1 = fbuf(n);
    sdc_weight g = wrand(SDC_DT_F32, C, 1.0f), bb = wrand(SDC_DT_F32, C, 1.0f);
    be->group_norm(be, y2, x, add, 2, C, HW, G, &g, &bb, 1e-5f, 1);
    be->group_norm(be, y1, x, add, 1, C, HW, G, &g, &bb, 1e-5f, 1);
    char what[160];
    snprintf(what, sizeof what, "%s group_norm C%d HW%d G%d: image 0 of 2 = alone", bn, C, HW, G);
    expect_equal(what, y2, y1, n);
    free(x), free(add), free(y2), free(y1), t_weight_free(&g), t_weight_free(&bb);
}

static void test_batch_invariance(void) {
    /* 3x3 convolutions (C H W O), chosen to cross every batch-dependent
     * threshold of winograd.c on some ISA: F(2x2) against F(4x4) (tiles
     * per call against half or a quarter of a 16- or 32-tile register
     * panel), the panel path's 6x16 kernel (up to 16 tiles), panel against
     * layer path (64 tiles), K slices of 64 against kc; the tiny UNet's
     * 16x16 maps; then im2col (SDC_WINOGRAD=0) for the same shapes. */
    static const int wino[][4] = {{32, 16, 16, 32}, {16, 8, 8, 24},  {40, 12, 12, 20},
                                  {128, 32, 32, 30}, {96, 32, 32, 16}, {24, 24, 24, 12},
                                  {64, 16, 16, 64}, {300, 8, 8, 16}, {20, 8, 12, 16}};
    const char *old = getenv("SDC_WINOGRAD");
    char saved[16] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    for (int b = 0; b < g_nfast; b++) {
        for (int mode = 0; mode < 2; mode++) {
            if (mode) setenv("SDC_WINOGRAD", "0", 1);
            else if (saved[0]) setenv("SDC_WINOGRAD", saved, 1);
            else unsetenv("SDC_WINOGRAD");
            for (size_t s = 0; s < sizeof wino / sizeof wino[0]; s++)
                batch_conv(g_fast[b], g_fast_name[b], wino[s][0], wino[s][1], wino[s][2],
                           wino[s][3], 3, 1, k_dtypes[(s + b) % 3], (int)(s % 2));
        }
        if (saved[0]) setenv("SDC_WINOGRAD", saved, 1);
        else unsetenv("SDC_WINOGRAD");
        /* 1x1 and stride 2: one GEMM over both images when the pixels are
         * whole register strips; K = 576 and 640 (K over kc, one block or
         * two by the scratch) */
        batch_conv(g_fast[b], g_fast_name[b], 64, 8, 8, 40, 1, 1, SDC_DT_F16, 1);
        batch_conv(g_fast[b], g_fast_name[b], 48, 16, 16, 33, 1, 1, SDC_DT_F32, 0);
        batch_conv(g_fast[b], g_fast_name[b], 64, 16, 16, 64, 3, 2, SDC_DT_F16, 0);
        batch_conv(g_fast[b], g_fast_name[b], 64, 32, 32, 20, 3, 2, SDC_DT_BF16, 1);
        /* linears: M from one strip to several m-tiles; K deep (<= 640 in
         * place), one block over kc, and split */
        static const int lin[][3] = {{1, 64, 32}, {14, 70, 128}, {77, 96, 600},
                                     {256, 64, 576}, {300, 40, 640}, {40, 200, 1000}};
        for (size_t s = 0; s < sizeof lin / sizeof lin[0]; s++)
            batch_linear(g_fast[b], g_fast_name[b], lin[s][0], lin[s][1], lin[s][2],
                         k_dtypes[(s + b) % 3]);
        batch_linear_map(g_fast[b], g_fast_name[b], 256, 32, 32, 1);
        batch_linear_map(g_fast[b], g_fast_name[b], 256, 32, 32, 0);
        batch_linear_map(g_fast[b], g_fast_name[b], 100, 40, 24, 0);
        batch_group_norm(g_fast[b], g_fast_name[b], 32, 256, 8);
    }
}

/* ---- 3. the null backend and the plumbing --------------------------------- */

/* The planning backend: every op is there and does nothing.  Each gets
 * real buffers (pattern-filled, large enough for the shapes given) and must
 * leave every one of them as it was; the planning passes also hand it NULL
 * activations, which it must not touch either. */
static void test_null_backend(void) {
    sdc_backend *n = sdc_backend_null();
    CHECK(n && n->name && strcmp(n->name, "null") == 0);
    enum { NB = 4, FL = 4096 };
    float *buf[NB];
    for (int i = 0; i < NB; i++) memset(buf[i] = fbuf(FL), 0x5a, FL * sizeof(float));
    float *y = buf[0], *x = buf[1], *a = buf[2];
    float *wd = buf[3];
    sdc_weight w;
    memset(&w, 0, sizeof w);
    w.name = "w", w.dtype = SDC_DT_F32, w.ndim = 1, w.shape[0] = FL, w.numel = FL;
    w.nbytes = FL * sizeof(float), w.data = wd;
    int32_t id = 0;
    float t = 1;
    for (int pass = 0; pass < 2; pass++) { /* real buffers, then NULL */
        float *Y = pass ? NULL : y, *X = pass ? NULL : x, *A = pass ? NULL : a;
        const float *V = pass ? NULL : a + 8;
        n->linear(n, Y, X, &w, &w, A, 4, 8, 8);
        n->linear_map(n, Y, X, &w, &w, NULL, 2, 16, 8, 8, 1);
        n->linear_map(n, Y, X, &w, &w, A, 2, 16, 8, 8, 0);
        n->conv2d(n, Y, X, 2, 4, 8, 8, &w, &w, 8, 3, 3, 1, 1, A);
        n->group_norm(n, Y, X, A, 2, 8, 64, 4, &w, &w, 1e-5f, 1);
        n->layer_norm(n, Y, X, 8, 64, &w, &w, 1e-5f);
        n->attention(n, Y, X, 24, A, V, 24, 16, 16, 2, 4, 0.1f, 0);
        n->silu(n, Y, X, 100);
        n->gelu(n, Y, X, 100);
        n->quick_gelu(n, Y, X, 100);
        n->add(n, Y, X, A, 100);
        n->lerp(n, Y, X, A, 7.5f, 100);
        n->axpby(n, Y, 1, X, 2, A, 100);
        n->geglu(n, Y, X, 16, 32);
        n->upsample2x(n, Y, X, 2, 4, 8, 8);
        n->pad2d(n, Y, X, 1, 3, 8, 8, 0, 1, 0, 1);
        n->transpose(n, Y, X, 2, 16, 64);
        n->concat(n, Y, X, 8, A, 8, 2, 64);
        n->copy(n, Y, X, 100);
        n->copy_in(n, Y, X, 100);
        n->copy_out(n, Y, X, 100);
        n->embed(n, Y, &id, 1, &w, NULL, 1);
        n->timestep_embed(n, Y, &t, 1, 32);
    }
    int same = 1;
    for (int i = 0; i < NB; i++)
        for (size_t j = 0; j < FL * sizeof(float); j++) same &= ((unsigned char *)buf[i])[j] == 0x5a;
    CHECKF(same, "the null backend wrote to a buffer");
    n->free(n);
    CHECK(sdc_backend_null() == n);
    for (int i = 0; i < NB; i++) free(buf[i]);
}

/* SDC_CPU_ISA: each name this CPU runs selects its path; an unknown or
 * unsupported one falls back to the best path (found here as pick_isa does,
 * not from a backend made while SDC_CPU_ISA may already be set). */
static void test_isa_override(void) {
    static const char *names[] = {"ref", "generic", "avx2", "avx512", "neon"};
    const char *best = "generic";
    for (int i = SDC_ISA_NEON; i > SDC_ISA_GENERIC; i--)
        if (sdc_cpu_isa_supported((sdc_cpu_isa)i)) {
            best = names[i];
            break;
        }
    const char *saved = getenv("SDC_CPU_ISA");
    char keep[32] = "";
    if (saved) snprintf(keep, sizeof keep, "%s", saved);
    for (int i = 0; i <= SDC_ISA_NEON + 1; i++) {
        const char *want = i <= SDC_ISA_NEON ? names[i] : "sse9";
        setenv("SDC_CPU_ISA", want, 1);
        sdc_backend *be = sdc_backend_cpu_create(1, 0);
        CHECK(be != NULL);
        if (!be) continue;
        int ok = i <= SDC_ISA_NEON && sdc_cpu_isa_supported((sdc_cpu_isa)i);
        const char *got = sdc_cpu_of(be)->k.isa;
        CHECKF(strcmp(got, ok ? want : best) == 0, "SDC_CPU_ISA=%s gave %s", want, got);
        CHECK(strstr(be->name, got) != NULL);
        be->free(be);
    }
    if (saved) setenv("SDC_CPU_ISA", keep, 1);
    else unsetenv("SDC_CPU_ISA");
    CHECK(sdc_backend_cpu_create_isa(1, (sdc_cpu_isa)99) == NULL);
}

static void count_task(void *ctx, int64_t task, int thread) {
    atomic_int *hits = ctx;
    atomic_fetch_add(&hits[task], thread >= 0 && thread < 3 ? 1 : 1000);
}

static void test_threadpool_and_info(void) {
    sdc_threadpool *p = sdc_threadpool_create(3);
    CHECK(p && sdc_threadpool_size(p) == 3);
    static atomic_int hits[1000];
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 1000; i++) atomic_store(&hits[i], 0);
        int n = 1 + round * 19;
        sdc_parallel_for(p, n, count_task, hits);
        int ok = 1;
        for (int i = 0; i < 1000; i++) ok &= atomic_load(&hits[i]) == (i < n);
        CHECKF(ok, "parallel_for round %d: a task ran twice or never", round);
    }
    sdc_threadpool_free(p);
    const char *info = sdc_build_info();
    CHECK(strstr(info, "sdc " SDC_VERSION) && strstr(info, "cpu: ") && strstr(info, "threads"));
    printf("  %s\n  backend: %s\n", info, g_fast[0]->name);
}

int main(void) {
    double t0 = t_seconds();
    t_rand_seed(42);
    if (getenv("SDC_FORCE_REF")) { /* this test compares the fast paths with the references */
        printf("  note: ignoring SDC_FORCE_REF\n");
        unsetenv("SDC_FORCE_REF");
    }
    g_ref = sdc_backend_cpu_create(1, 1);
    g_fast[0] = sdc_backend_cpu_create(0, 0);
    g_fast[1] = sdc_backend_cpu_create(3, 0);
    g_nfast = 2;
    if (!g_ref || !g_fast[0] || !g_fast[1]) {
        fprintf(stderr, "cannot create the CPU backend: %s\n", sdc_last_error());
        return 1;
    }
    const char *best = sdc_cpu_of(g_fast[0])->k.isa;
    snprintf(g_fast_name[0], sizeof g_fast_name[0], "%s", best);
    snprintf(g_fast_name[1], sizeof g_fast_name[1], "%s-3t", best);
    for (int isa = SDC_ISA_GENERIC; isa <= SDC_ISA_NEON; isa++) {
        if (!sdc_cpu_isa_supported((sdc_cpu_isa)isa)) continue;
        sdc_backend *be = sdc_backend_cpu_create_isa(0, (sdc_cpu_isa)isa);
        CHECKF(be != NULL, "create ISA %d: %s", isa, sdc_last_error());
        if (!be) return 1;
        const char *name = sdc_cpu_of(be)->k.isa;
        if (t_path_skipped(name) && strcmp(name, best) != 0) { /* SDC_TEST_SKIP_PATHS */
            be->free(be);
            continue;
        }
        if (isa != SDC_ISA_GENERIC) g_real[g_nreal++] = be;
        if (strcmp(name, best) == 0) { /* already g_fast[0] */
            if (isa != SDC_ISA_GENERIC) g_real[g_nreal - 1] = g_fast[0];
            be->free(be);
            continue;
        }
        snprintf(g_fast_name[g_nfast], sizeof g_fast_name[g_nfast], "%s", name);
        g_fast[g_nfast++] = be;
    }
    printf("  paths:");
    for (int b = 0; b < g_nfast; b++) printf(" %s", g_fast_name[b]);
    if (getenv("SDC_TEST_SKIP_PATHS")) printf(" (skipped: %s)", getenv("SDC_TEST_SKIP_PATHS"));
    printf("\n");

    RUN(test_threadpool_and_info);
    RUN(test_isa_override);
    RUN(test_null_backend);
    RUN(test_ref_vs_pytorch);
    RUN(test_linear_random);
    RUN(test_linear_map_random);
    RUN(test_gemm_shared_packs);
    RUN(test_pack_rows);
    RUN(test_conv_random);
    RUN(test_conv_winograd);
    RUN(test_attention_random);
    RUN(test_norms_random);
    RUN(test_elementwise);
    RUN(test_layout_ops);
    RUN(test_sd_shapes);
    RUN(test_batch_invariance);

    for (int b = 0; b < g_nfast; b++) g_fast[b]->free(g_fast[b]);
    g_ref->free(g_ref);
    printf("  %.1f s\n", t_seconds() - t0);
    return t_summary();
}
