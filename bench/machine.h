/* What the machine can do: peak FMA throughput and memory bandwidth,
 * measured with micro-benchmarks (header-only; included by bench_peak.c and
 * bench_ops.c, which are separate programs).
 *
 * Peak: every thread runs 12 independent chains of vector FMAs (enough to
 * cover latency x pipes on current cores: 4 cycles x 2 FMA pipes = 8), with
 * no loads, for about 0.2 s; FLOPs count 2 per multiply-add lane:
 *   fp32 AVX2     vfmadd ymm      16 FLOP / instruction
 *   fp32 AVX-512  vfmadd zmm      32 FLOP / instruction
 *   bf16 AVX-512  vdpbf16ps zmm   64 FLOP / instruction (16 lanes x 2 pairs)
 *   bf16 AMX      tdpbf16ps       16384 FLOP / instruction (16 x 16 x 32 x 2),
 *                 4 tile accumulators (throughput, not latency, bound)
 * Bandwidth: a buffer of BW_BYTES (far beyond the caches), split evenly over
 * the threads; "read" sums it with vector loads (bytes read / s), "copy" is
 * memcpy into a second buffer (bytes read + bytes written / s).
 * Each figure is the best of 5 runs, wall clock from the first thread's
 * start (after a barrier) to the last thread's end. */
#ifndef SDC_BENCH_MACHINE_H
#define SDC_BENCH_MACHINE_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/cpu/amx_tile.h"
#include "backends/cpu/cpu_features.h"

#define BW_BYTES ((size_t)512 << 20)

static double bm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef enum {
    BM_FP32_AVX2, BM_FP32_AVX512, BM_BF16_AVX512, BM_FP32_SCALAR, BM_READ, BM_COPY, BM_AMX_BF16
} bm_kind;

/* Returns the FLOPs done (or bytes moved); sink keeps the work alive. */
typedef double (*bm_fn)(long iters, int thread, int threads, float *sink);

static volatile float g_bm_sink;

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx2,fma"))) static double bm_fma_avx2(long iters, int th, int nth,
                                                              float *sink) {
    (void)th, (void)nth;
    __m256 a[12], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    *sink = _mm256_cvtss_f32(s);
    return (double)iters * 12 * 16;
}

__attribute__((target("avx512f"))) static double bm_fma_avx512(long iters, int th, int nth,
                                                               float *sink) {
    (void)th, (void)nth;
    __m512 a[12], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    for (int i = 1; i < 12; i++) a[0] = _mm512_add_ps(a[0], a[i]);
    *sink = _mm512_reduce_add_ps(a[0]);
    return (double)iters * 12 * 32;
}

#if defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#define BM_HAVE_BF16 1
__attribute__((target("avx512f,avx512bf16"))) static double bm_dp_bf16(long iters, int th,
                                                                       int nth, float *sink) {
    (void)th, (void)nth;
    __m512 a[12];
    /* bf16 0x3f80 = 1.0, 0x3400 ~ 1.2e-7: the sums stay finite */
    __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3400);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_dpbf16_ps(a[i], x, y);
    for (int i = 1; i < 12; i++) a[0] = _mm512_add_ps(a[0], a[i]);
    *sink = _mm512_reduce_add_ps(a[0]);
    return (double)iters * 12 * 64;
}
#endif

__attribute__((target("avx2"))) static float bm_sum_avx2(const float *p, size_t n) {
    __m256 s[8];
    for (int i = 0; i < 8; i++) s[i] = _mm256_setzero_ps();
    for (size_t i = 0; i + 64 <= n; i += 64)
        for (int j = 0; j < 8; j++) s[j] = _mm256_add_ps(s[j], _mm256_loadu_ps(p + i + 8 * j));
    for (int j = 1; j < 8; j++) s[0] = _mm256_add_ps(s[0], s[j]);
    return _mm256_cvtss_f32(s[0]);
}
#define BM_HAVE_X86 1
#endif

/* AMX-BF16: TDPBF16PS on 4 tiles (the library's loop, gemm_amx.c; each
 * thread configures its own tiles) */
static double bm_amx(long iters, int th, int nth, float *sink) {
    (void)th, (void)nth;
    *sink = 0;
    return sdc_amx_tdp_loop(iters);
}

/* portable fallback for the FMA peak (what the compiler makes of it) */
static double bm_fma_scalar(long iters, int th, int nth, float *sink) {
    (void)th, (void)nth;
    float a[12];
    for (int i = 0; i < 12; i++) a[i] = (float)i;
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) a[i] = a[i] * 0.999999f + 1e-7f;
    for (int i = 1; i < 12; i++) a[0] += a[i];
    *sink = a[0];
    return (double)iters * 12 * 2;
}

static float *g_bm_src, *g_bm_dst; /* [BW_BYTES / 4] each */

static double bm_read(long iters, int th, int nth, float *sink) {
    size_t n = BW_BYTES / sizeof(float) / (size_t)nth, off = n * (size_t)th;
    float s = 0;
    for (long it = 0; it < iters; it++) {
#ifdef BM_HAVE_X86
        if (sdc_cpu_features_get()->avx2) {
            s += bm_sum_avx2(g_bm_src + off, n);
            continue;
        }
#endif
        for (size_t i = 0; i < n; i++) s += g_bm_src[off + i];
    }
    *sink = s;
    return (double)iters * (double)n * sizeof(float);
}

static double bm_copy(long iters, int th, int nth, float *sink) {
    size_t n = BW_BYTES / sizeof(float) / (size_t)nth, off = n * (size_t)th;
    for (long it = 0; it < iters; it++) memcpy(g_bm_dst + off, g_bm_src + off, n * sizeof(float));
    *sink = g_bm_dst[off + (size_t)iters % n];
    return (double)iters * (double)n * sizeof(float) * 2;
}

typedef struct bm_job {
    bm_fn fn;
    long iters;
    int thread, threads;
    pthread_barrier_t *bar;
    double work, t_start, t_end;
} bm_job;

static void *bm_thread(void *p) {
    bm_job *j = p;
    float sink = 0;
    pthread_barrier_wait(j->bar);
    j->t_start = bm_now();
    j->work = j->fn(j->iters, j->thread, j->threads, &sink);
    j->t_end = bm_now();
    g_bm_sink = sink;
    return NULL;
}

/* Work per second of fn on `threads` threads (each running `iters`), best of
 * reps; 0 on failure. */
static double bm_rate(bm_fn fn, long iters, int threads, int reps) {
    double best = 0;
    if (threads < 1 || threads > 256) return 0;
    for (int r = 0; r < reps; r++) {
        pthread_t tid[256];
        bm_job job[256];
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
        int started = 0;
        for (int t = 0; t < threads; t++) {
            job[t] = (bm_job){fn, iters, t, threads, &bar, 0, 0, 0};
            if (pthread_create(&tid[t], NULL, bm_thread, &job[t]) != 0) break;
            started++;
        }
        if (started < threads) { /* cannot happen in practice; do not hang */
            fprintf(stderr, "bench: cannot start %d threads\n", threads);
            exit(1);
        }
        pthread_barrier_wait(&bar);
        /* from the first thread's start to the last one's end (this thread
         * may be descheduled right after the barrier: its clock would be
         * late) */
        double t0 = 1e300, t1 = 0, work = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            if (job[t].t_start < t0) t0 = job[t].t_start;
            if (job[t].t_end > t1) t1 = job[t].t_end;
            work += job[t].work;
        }
        pthread_barrier_destroy(&bar);
        if (t1 > t0 && work / (t1 - t0) > best) best = work / (t1 - t0);
    }
    return best;
}

/* The FMA kernel of a kind, or NULL where this machine or build lacks it. */
static bm_fn bm_flops_fn(bm_kind k) {
#ifdef BM_HAVE_X86
    const sdc_cpu_features *f = sdc_cpu_features_get();
    if (k == BM_FP32_AVX2) return f->avx2 && f->fma ? bm_fma_avx2 : NULL;
    if (k == BM_FP32_AVX512) return f->avx512f ? bm_fma_avx512 : NULL;
#ifdef BM_HAVE_BF16
    if (k == BM_BF16_AVX512) return f->avx512f && f->avx512_bf16 ? bm_dp_bf16 : NULL;
#endif
#endif
    if (k == BM_FP32_SCALAR) return bm_fma_scalar;
    if (k == BM_AMX_BF16) return sdc_amx_hw_ready(NULL, 0) ? bm_amx : NULL;
    return NULL;
}

/* GFLOP/s of an FMA kind on `threads` threads (0 if unavailable): about
 * 0.2 s per run at 200 GFLOP/s per thread. */
static inline double bm_peak_gflops(bm_kind k, int threads) {
    bm_fn fn = bm_flops_fn(k);
    if (!fn) return 0;
    long iters = k == BM_AMX_BF16 ? 4000000L : k == BM_BF16_AVX512 ? 3000000L : k == BM_FP32_AVX512 ? 6000000L
               : k == BM_FP32_AVX2 ? 12000000L : 30000000L;
    return bm_rate(fn, iters, threads, 5) * 1e-9;
}

/* GB/s of read or copy on `threads` threads; allocates and frees the
 * buffers (2 x BW_BYTES); 0 if memory is short. */
static inline double bm_bandwidth(bm_kind k, int threads) {
    g_bm_src = malloc(BW_BYTES);
    g_bm_dst = malloc(BW_BYTES);
    double r = 0;
    if (g_bm_src && g_bm_dst) {
        for (size_t i = 0; i < BW_BYTES / sizeof(float); i++) g_bm_src[i] = (float)(i & 1023);
        memset(g_bm_dst, 0, BW_BYTES);
        r = bm_rate(k == BM_READ ? bm_read : bm_copy, 4, threads, 5) * 1e-9;
    }
    free(g_bm_src), free(g_bm_dst);
    g_bm_src = g_bm_dst = NULL;
    return r;
}

/* The best fp32 FMA kind this machine has. */
static inline bm_kind bm_best_fp32(void) {
    if (bm_flops_fn(BM_FP32_AVX512)) return BM_FP32_AVX512;
    if (bm_flops_fn(BM_FP32_AVX2)) return BM_FP32_AVX2;
    return BM_FP32_SCALAR;
}

static inline const char *bm_kind_name(bm_kind k) {
    switch (k) {
    case BM_FP32_AVX2: return "fp32 FMA, AVX2 (ymm)";
    case BM_FP32_AVX512: return "fp32 FMA, AVX-512 (zmm)";
    case BM_BF16_AVX512: return "bf16 dot, AVX512_BF16 (vdpbf16ps)";
    case BM_FP32_SCALAR: return "fp32, portable C";
    case BM_READ: return "read (vector loads)";
    case BM_COPY: return "copy (memcpy, read+write)";
    case BM_AMX_BF16: return "bf16 tiles, AMX (tdpbf16ps)";
    }
    return "?";
}

static inline int bm_ncpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

static inline void bm_cpu_model(char *buf, size_t n) {
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && c) {
            c++;
            while (*c == ' ' || *c == '\t') c++;
            c[strcspn(c, "\n")] = 0;
            snprintf(buf, n, "%s", c);
            break;
        }
    }
    fclose(f);
}

#endif
