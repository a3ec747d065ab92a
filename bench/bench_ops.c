/* bench_ops: per-op time and GFLOP/s of the CPU backend on SD 1.x's real
 * shapes (512x512 image: 64x64 latent, CFG batch 2), against the measured
 * peak of FMA throughput on the same threads.
 *
 *   bench_ops [threads (0 = all)] [repetitions (default 3)]
 *
 * FLOPs count 2 per multiply-add (linear, conv2d: 2*M*N*K; attention:
 * 4*Sq*Sk*D for QK^T and PV); memory-bound ops report GB/s instead. The
 * time shown is the best of the repetitions (wall clock).  "of peak" compares
 * with the FMA peak of all threads (wall clock); "cpu eff" divides the FLOPs
 * by the CPU time the process used and compares with one core's peak, which
 * stays meaningful on a machine shared with other jobs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "backends/cpu/cpu_features.h"
#include "backends/cpu/cpu_impl.h"
#include "backends/cpu/threadpool.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_now(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

static float *frand(size_t n) {
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
    }
    return p;
}

static sdc_weight wrand(sdc_dtype dt, int64_t n) {
    sdc_weight w;
    memset(&w, 0, sizeof w);
    w.dtype = dt;
    w.ndim = 1;
    w.shape[0] = w.numel = n;
    w.nbytes = (size_t)n * sdc_dtype_size(dt);
    float *f = frand((size_t)n);
    if (dt == SDC_DT_F16) {
        uint16_t *h = malloc(w.nbytes);
        if (!h) exit(1);
        for (int64_t i = 0; i < n; i++) h[i] = sdc_f32_to_f16(f[i] * 0.1f);
        free(f);
        w.data = h;
    } else {
        for (int64_t i = 0; i < n; i++) f[i] *= 0.1f;
        w.data = f;
    }
    return w;
}

/* ---- peak: independent FMA chains, all threads ---------------------------- */

#define PEAK_ITERS 20000000L
static volatile float g_peak_sink[256]; /* per thread: keeps the loops alive */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx2,fma"))) static void peak_task(void *ctx, int64_t task, int thread) {
    (void)ctx, (void)task;
    __m256 a[12], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < PEAK_ITERS / 12; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    g_peak_sink[thread & 255] = out[0];
}
#define PEAK_FLOPS_PER_TASK ((double)(PEAK_ITERS / 12) * 12 * 8 * 2)
#else
static void peak_task(void *ctx, int64_t task, int thread) {
    (void)ctx, (void)task;
    float a[8] = {0};
    for (long it = 0; it < PEAK_ITERS / 8; it++)
        for (int i = 0; i < 8; i++) a[i] = a[i] * 0.999999f + 1e-7f;
    g_peak_sink[thread & 255] = a[0];
}
#define PEAK_FLOPS_PER_TASK ((double)(PEAK_ITERS / 8) * 8 * 2)
#endif

/* all threads, wall clock; and one core, its CPU time */
static double measure_peak(sdc_threadpool *pool, int threads, double *core) {
    double best = 0;
    *core = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        sdc_parallel_for(pool, threads, peak_task, NULL);
        double g = PEAK_FLOPS_PER_TASK * threads / (now() - t0) * 1e-9;
        if (g > best) best = g;
        t0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        peak_task(NULL, 0, 0);
        g = PEAK_FLOPS_PER_TASK / (clock_s(CLOCK_THREAD_CPUTIME_ID) - t0) * 1e-9;
        if (g > *core) *core = g;
    }
    return best;
}

/* ---- the table ----------------------------------------------------------- */

static double g_peak, g_core_peak;
static int g_reps = 3;
static double g_best_cpu; /* CPU seconds of the last TIMED (its best repetition) */

static void row(const char *op, const char *shape, double best_s, double flops, double bytes) {
    if (flops > 0)
        printf("%-11s %-34s %9.3f %9.3f %9.1f %7.1f%% %7.1f%%\n", op, shape, best_s * 1e3,
               g_best_cpu * 1e3, flops / best_s * 1e-9, 100.0 * flops / best_s * 1e-9 / g_peak,
               100.0 * flops / g_best_cpu * 1e-9 / g_core_peak);
    else
        printf("%-11s %-34s %9.3f %9.3f %9.1f GB/s (%.1f GB/s per cpu-second)\n", op, shape,
               best_s * 1e3, g_best_cpu * 1e3, bytes / best_s * 1e-9, bytes / g_best_cpu * 1e-9);
}

#define TIMED(best, stmt)                                                                      \
    do {                                                                                       \
        best = 1e30;                                                                           \
        g_best_cpu = 1e30;                                                                     \
        for (int r_ = 0; r_ < g_reps; r_++) {                                                  \
            double t0_ = now(), c0_ = cpu_now();                                               \
            stmt;                                                                              \
            double dt_ = now() - t0_, dc_ = cpu_now() - c0_;                                   \
            if (dt_ < best) best = dt_;                                                        \
            if (dc_ < g_best_cpu) g_best_cpu = dc_;                                            \
        }                                                                                      \
    } while (0)

static void b_linear(sdc_backend *be, int M, int N, int K, sdc_dtype dt) {
    float *x = frand((size_t)M * K), *y = frand((size_t)M * N);
    sdc_weight W = wrand(dt, (int64_t)N * K), b = wrand(SDC_DT_F32, N);
    double best;
    TIMED(best, be->linear(be, y, x, &W, &b, NULL, M, N, K));
    char s[64];
    snprintf(s, sizeof s, "M%d N%d K%d %s", M, N, K, sdc_dtype_name(dt));
    row("linear", s, best, 2.0 * M * N * K, 0);
    free(x), free(y), free((void *)W.data), free((void *)b.data);
}

static void b_conv(sdc_backend *be, int N, int C, int H, int W, int O, int k, int stride,
                   sdc_dtype dt) {
    int pad = k / 2, Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    float *x = frand((size_t)N * C * H * W), *y = frand((size_t)N * O * Ho * Wo);
    sdc_weight w = wrand(dt, (int64_t)O * C * k * k), b = wrand(SDC_DT_F32, O);
    double best;
    TIMED(best, be->conv2d(be, y, x, N, C, H, W, &w, &b, O, k, k, stride, pad, NULL));
    char s[64];
    snprintf(s, sizeof s, "N%d C%d %dx%d O%d k%d s%d %s", N, C, H, W, O, k, stride,
             sdc_dtype_name(dt));
    row("conv2d", s, best, 2.0 * N * O * Ho * Wo * (double)C * k * k, 0);
    free(x), free(y), free((void *)w.data), free((void *)b.data);
}

static void b_attention(sdc_backend *be, int Sq, int Sk, int heads, int dh, int causal) {
    int D = heads * dh;
    float *q = frand((size_t)Sq * D), *kv = frand((size_t)Sk * 2 * D), *y = frand((size_t)Sq * D);
    double best;
    TIMED(best, be->attention(be, y, q, D, kv, kv + D, 2 * D, Sq, Sk, heads, dh,
                              1.0f / sqrtf((float)dh), causal));
    char s[64];
    snprintf(s, sizeof s, "Sq%d Sk%d h%d dh%d%s", Sq, Sk, heads, dh, causal ? " causal" : "");
    row("attention", s, best, 4.0 * Sq * Sk * D * (causal ? 0.5 : 1.0), 0);
    free(q), free(kv), free(y);
}

static void b_memops(sdc_backend *be) {
    const int N = 2, C = 320, HW = 4096;
    size_t n = (size_t)N * C * HW;
    float *x = frand(n), *z = frand(n), *y = frand(4 * n);
    sdc_weight g = wrand(SDC_DT_F32, C), b = wrand(SDC_DT_F32, C);
    double best;
    char s[64];
    snprintf(s, sizeof s, "[%d,%d,%d]", N, C, HW);
    TIMED(best, be->group_norm(be, y, x, N, C, HW, 32, &g, &b, 1e-5f, 1));
    row("groupnorm+", s, best, 0, 2.0 * n * 4);
    sdc_weight lg = wrand(SDC_DT_F32, C), lb = wrand(SDC_DT_F32, C);
    TIMED(best, be->layer_norm(be, y, x, N * HW, C, &lg, &lb, 1e-5f));
    row("layernorm", s, best, 0, 2.0 * n * 4);
    TIMED(best, be->silu(be, y, x, (int64_t)n));
    row("silu", s, best, 0, 2.0 * n * 4);
    TIMED(best, be->gelu(be, y, x, (int64_t)n));
    row("gelu", s, best, 0, 2.0 * n * 4);
    TIMED(best, be->geglu(be, y, x, N * HW / 8, 2 * C));
    row("geglu", "rows 1024 D 640", best, 0, 3.0 * n / 2 * 4);
    TIMED(best, be->add(be, y, x, z, (int64_t)n));
    row("add", s, best, 0, 3.0 * n * 4);
    TIMED(best, be->transpose(be, y, x, N, C, HW));
    row("transpose", s, best, 0, 2.0 * n * 4);
    TIMED(best, be->upsample2x(be, y, x, N, C, 64, 64));
    row("upsample2x", s, best, 0, 5.0 * n * 4);
    free(x), free(z), free(y);
    free((void *)g.data), free((void *)b.data), free((void *)lg.data), free((void *)lb.data);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    g_reps = argc > 2 ? atoi(argv[2]) : 3;
    if (g_reps < 1) g_reps = 1;
    sdc_backend *be = sdc_backend_cpu_create(threads, 0);
    if (!be) {
        fprintf(stderr, "cannot create the CPU backend\n");
        return 1;
    }
    sdc_cpu *cpu = sdc_cpu_of(be);
    printf("%s\nbackend: %s\n", sdc_build_info(), be->name);
    g_peak = measure_peak(cpu->pool, cpu->n_threads, &g_core_peak);
    printf("peak (fma): %.1f GFLOP/s on %d threads (wall), %.1f GFLOP/s per core (cpu time)\n\n",
           g_peak, cpu->n_threads, g_core_peak);
    printf("%-11s %-34s %9s %9s %9s %8s %8s\n", "op", "shape", "ms", "cpu ms", "GFLOP/s",
           "of peak", "cpu eff");

    b_linear(be, 8192, 320, 320, SDC_DT_F16);
    b_linear(be, 8192, 2560, 320, SDC_DT_F16);
    b_linear(be, 8192, 320, 1280, SDC_DT_F16);
    b_linear(be, 2048, 640, 640, SDC_DT_F16);
    b_linear(be, 512, 1280, 1280, SDC_DT_F16);
    b_linear(be, 128, 10240, 1280, SDC_DT_F16);
    b_linear(be, 154, 320, 768, SDC_DT_F16);
    b_linear(be, 77, 3072, 768, SDC_DT_F32);
    b_conv(be, 2, 320, 64, 64, 320, 3, 1, SDC_DT_F16);
    b_conv(be, 2, 640, 32, 32, 640, 3, 1, SDC_DT_F16);
    b_conv(be, 2, 1280, 16, 16, 1280, 3, 1, SDC_DT_F16);
    b_conv(be, 2, 320, 64, 64, 320, 3, 2, SDC_DT_F16);
    b_conv(be, 2, 960, 32, 32, 640, 1, 1, SDC_DT_F16);
    b_conv(be, 1, 128, 256, 256, 128, 3, 1, SDC_DT_F32);
    b_conv(be, 1, 512, 64, 64, 512, 3, 1, SDC_DT_F32);
    b_attention(be, 4096, 4096, 8, 40, 0);
    b_attention(be, 4096, 77, 8, 40, 0);
    b_attention(be, 1024, 1024, 8, 80, 0);
    b_attention(be, 256, 256, 8, 160, 0);
    b_attention(be, 77, 77, 12, 64, 1);
    b_attention(be, 4096, 4096, 1, 512, 0);
    b_memops(be);
    be->free(be);
    return 0;
}
