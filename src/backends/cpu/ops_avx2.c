/* AVX2 + FMA ops: group/layer norm, the transcendental elementwise ops and
 * transpose, threaded over the pool.
 *
 * exp: Cephes' expf scheme (x = n ln2 + r, |r| <= ln2/2, degree-5
 * polynomial, 2^n by exponent bits), within ~2 ulp on [-87.3, 88.0]
 * (inputs are clamped to that range).
 * erfc: the Chebyshev fit of Numerical Recipes (erfcc), fractional error
 * < 1.2e-7 everywhere, so GELU = 0.5 x erfc(-x/sqrt 2) keeps its relative
 * accuracy for large negative x. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backends/cpu/avx2_transpose.h"
#include "backends/cpu/cpu_impl.h"

#define CHUNK ((int64_t)1 << 15)

/* The functions on NV vectors in lockstep: every step for all NV before
 * the next.  One GELU is a chain of ~160 cycles of latency (a
 * division, 10 + 9 dependent FMAs) in ~90 micro-ops on Zen 1, whose
 * window holds about two such chains: written one vector at a time (the
 * compiler keeps the order), GEGLU ran at ~95 cycles per 8 values, in L1. */
#define NV 4
#define EACH for (int j_ = 0; j_ < NV; j_++)
#define V(a) a[j_]

static inline __attribute__((always_inline)) void exp256_n(__m256 x[NV]) {
    __m256 n[NV], r[NV], y[NV];
#pragma GCC unroll 4
    EACH V(x) = _mm256_min_ps(_mm256_max_ps(V(x), _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.02f));
#pragma GCC unroll 4
    EACH V(n) = _mm256_round_ps(_mm256_mul_ps(V(x), _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#pragma GCC unroll 4
    EACH V(r) = _mm256_fnmadd_ps(V(n), _mm256_set1_ps(0.693359375f), V(x));
#pragma GCC unroll 4
    EACH V(r) = _mm256_fnmadd_ps(V(n), _mm256_set1_ps(-2.12194440e-4f), V(r));
#pragma GCC unroll 4
    EACH V(y) = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), V(r), _mm256_set1_ps(1.3981999507e-3f));
#pragma GCC unroll 4
    EACH V(y) = _mm256_fmadd_ps(V(y), V(r), _mm256_set1_ps(8.3334519073e-3f));
#pragma GCC unroll 4
    EACH V(y) = _mm256_fmadd_ps(V(y), V(r), _mm256_set1_ps(4.1665795894e-2f));
#pragma GCC unroll 4
    EACH V(y) = _mm256_fmadd_ps(V(y), V(r), _mm256_set1_ps(1.6666665459e-1f));
#pragma GCC unroll 4
    EACH V(y) = _mm256_fmadd_ps(V(y), V(r), _mm256_set1_ps(5.0000001201e-1f));
#pragma GCC unroll 4
    EACH V(y) = _mm256_fmadd_ps(V(y), _mm256_mul_ps(V(r), V(r)), _mm256_add_ps(V(r), _mm256_set1_ps(1.0f)));
#pragma GCC unroll 4
    EACH {
        __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(V(n)), _mm256_set1_epi32(127)), 23);
        V(x) = _mm256_mul_ps(V(y), _mm256_castsi256_ps(e));
    }
}

/* x <- GELU(x) = 0.5 x erfc(-x/sqrt 2), with erfc(u) = t exp(-z^2 + P(t)),
 * z = |u|, t = 1/(1 + z/2), and 2 - that for u < 0 */
static inline __attribute__((always_inline)) void gelu256_n(__m256 x[NV]) {
    __m256 u[NV], z[NV], t[NV], p[NV], r[NV];
#pragma GCC unroll 4
    EACH V(u) = _mm256_mul_ps(V(x), _mm256_set1_ps(-0.70710678118654752f));
#pragma GCC unroll 4
    EACH V(z) = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), V(u));
#pragma GCC unroll 4
    EACH V(t) = _mm256_div_ps(_mm256_set1_ps(1.0f),
                              _mm256_fmadd_ps(V(z), _mm256_set1_ps(0.5f), _mm256_set1_ps(1.0f)));
    static const float c[10] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                                -0.18628806f, 0.09678418f,  0.37409196f, 1.00002368f, -1.26551223f};
#pragma GCC unroll 4
    EACH V(p) = _mm256_fmadd_ps(_mm256_set1_ps(c[0]), V(t), _mm256_set1_ps(c[1]));
#pragma GCC unroll 8
    for (int k = 2; k < 10; k++)
#pragma GCC unroll 4
        EACH V(p) = _mm256_fmadd_ps(V(p), V(t), _mm256_set1_ps(c[k]));
#pragma GCC unroll 4
    EACH V(r) = _mm256_fnmadd_ps(V(z), V(z), V(p));
    exp256_n(r);
#pragma GCC unroll 4
    EACH {
        __m256 e = _mm256_mul_ps(V(t), V(r));
        __m256 neg = _mm256_cmp_ps(V(u), _mm256_setzero_ps(), _CMP_LT_OQ);
        e = _mm256_blendv_ps(e, _mm256_sub_ps(_mm256_set1_ps(2.0f), e), neg);
        V(x) = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), V(x)), e);
    }
}

/* x <- x / (1 + exp(-k x)): SiLU (k = 1) and quick GELU (k = 1.702) */
static inline __attribute__((always_inline)) void sigmul256_n(__m256 x[NV], float k) {
    __m256 e[NV];
#pragma GCC unroll 4
    EACH V(e) = _mm256_mul_ps(V(x), _mm256_set1_ps(-k));
    exp256_n(e);
#pragma GCC unroll 4
    EACH V(x) = _mm256_div_ps(V(x), _mm256_add_ps(_mm256_set1_ps(1.0f), V(e)));
}

/* lanes < n (0 <= n <= 8) set */
static inline __m256i tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The masks and offsets of the NV vectors of a last group of r < 8 NV
 * values (vectors past the end: no lanes, offset 0). */
static inline void tail_group(int64_t r, __m256i m[NV], int64_t off[NV]) {
    for (int j = 0; j < NV; j++) {
        int64_t k = r - 8 * j;
        m[j] = tail_mask(k <= 0 ? 0 : k >= 8 ? 8 : (int)k);
        off[j] = k > 0 ? 8 * j : 0;
    }
}

/* ---- elementwise ---------------------------------------------------------- */

enum { UN_SILU, UN_GELU, UN_QGELU };

static inline __attribute__((always_inline)) void unary256_n(int kind, __m256 x[NV]) {
    switch (kind) {
    case UN_SILU: sigmul256_n(x, 1.0f); break;
    case UN_GELU: gelu256_n(x); break;
    default: sigmul256_n(x, 1.702f); break;
    }
}

/* y = act(x), or act((x - mean) * a + b) when affine (GroupNorm+SiLU's
 * normalise pass), times h[i] when h is given (GEGLU), NV vectors at a
 * time; the last partial group masked */
static inline __attribute__((always_inline)) void act_span(int kind, float *y, const float *x,
                                                           int64_t n, int affine, float mean,
                                                           float a, float b, const float *h) {
    const __m256 vm = _mm256_set1_ps(mean), va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
#define AFFINE(v) (affine ? _mm256_fmadd_ps(_mm256_sub_ps(v, vm), va, vb) : (v))
    int64_t i = 0;
    for (; i + 8 * NV <= n; i += 8 * NV) {
        __m256 v[NV];
#pragma GCC unroll 4
        EACH V(v) = AFFINE(_mm256_loadu_ps(x + i + 8 * j_));
        unary256_n(kind, v);
#pragma GCC unroll 4
        EACH _mm256_storeu_ps(y + i + 8 * j_, h ? _mm256_mul_ps(_mm256_loadu_ps(h + i + 8 * j_), V(v)) : V(v));
    }
    if (i < n) {
        __m256 v[NV];
        __m256i m[NV];
        int64_t off[NV];
        tail_group(n - i, m, off);
        EACH V(v) = AFFINE(_mm256_maskload_ps(x + i + V(off), V(m)));
        unary256_n(kind, v);
        EACH _mm256_maskstore_ps(y + i + V(off), V(m),
                                 h ? _mm256_mul_ps(_mm256_maskload_ps(h + i + V(off), V(m)), V(v)) : V(v));
    }
#undef AFFINE
}

static void unary_span(int kind, float *y, const float *x, int64_t n) {
    act_span(kind, y, x, n, 0, 0.0f, 1.0f, 0.0f, NULL);
}

typedef struct un_ctx {
    int kind;
    float *y;
    const float *x;
    int64_t n;
} un_ctx;

static void un_task(void *p, int64_t task, int thread) {
    (void)thread;
    const un_ctx *u = p;
    int64_t i0 = task * CHUNK, n = u->n - i0 < CHUNK ? u->n - i0 : CHUNK;
    unary_span(u->kind, u->y + i0, u->x + i0, n);
}

static void unary_run(sdc_backend *be, int kind, float *y, const float *x, int64_t n) {
    if (n <= 0) return;
    un_ctx u = {kind, y, x, n};
    sdc_parallel_for(sdc_cpu_of(be)->pool, (n + CHUNK - 1) / CHUNK, un_task, &u);
}

void sdc_avx2_silu(sdc_backend *be, float *y, const float *x, int64_t n) {
    unary_run(be, UN_SILU, y, x, n);
}
void sdc_avx2_gelu(sdc_backend *be, float *y, const float *x, int64_t n) {
    unary_run(be, UN_GELU, y, x, n);
}
void sdc_avx2_quick_gelu(sdc_backend *be, float *y, const float *x, int64_t n) {
    unary_run(be, UN_QGELU, y, x, n);
}

void sdc_avx2_geglu_row(float *y, const float *h, const float *gate, int n) {
    act_span(UN_GELU, y, gate, n, 0, 0.0f, 1.0f, 0.0f, h);
}

/* ---- statistics in double ------------------------------------------------ */

static double sum_d(const float *x, int64_t n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(a0, a1));
    double s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) s += x[i];
    return s;
}

/* sum (x - mean)^2 */
static double sqdev_d(const float *x, int64_t n, double mean) {
    __m256d m = _mm256_set1_pd(mean), a0 = _mm256_setzero_pd(), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), m);
        __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), m);
        a0 = _mm256_fmadd_pd(d0, d0, a0);
        a1 = _mm256_fmadd_pd(d1, d1, a1);
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(a0, a1));
    double s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) s += (x[i] - mean) * (x[i] - mean);
    return s;
}

/* One pass: mean and biased variance of x[0..n), n > 0, from the sums of
 * d = x - x[0] and d^2 in double (shifted so that a large common offset
 * does not cancel). */
static void stats_d(const float *x, int64_t n, double *mean, double *var) {
    const double s0 = x[0];
    __m256d vs = _mm256_set1_pd(s0), a0 = _mm256_setzero_pd(), a1 = a0, q0 = a0, q1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), vs);
        __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), vs);
        a0 = _mm256_add_pd(a0, d0);
        a1 = _mm256_add_pd(a1, d1);
        q0 = _mm256_fmadd_pd(d0, d0, q0);
        q1 = _mm256_fmadd_pd(d1, d1, q1);
    }
    double t[4], u[4];
    _mm256_storeu_pd(t, _mm256_add_pd(a0, a1));
    _mm256_storeu_pd(u, _mm256_add_pd(q0, q1));
    double s = (t[0] + t[1]) + (t[2] + t[3]), q = (u[0] + u[1]) + (u[2] + u[3]);
    for (; i < n; i++) {
        double d = (double)x[i] - s0;
        s += d;
        q += d * d;
    }
    double md = s / (double)n, v = q / (double)n - md * md;
    *mean = s0 + md;
    *var = v > 0.0 ? v : 0.0;
}

/* y = (x - mean) * a + b, then silu if asked */
static void norm_span(float *y, const float *x, int64_t n, float mean, float a, float b,
                      int silu) {
    if (silu) {
        act_span(UN_SILU, y, x, n, 1, mean, a, b, NULL);
        return;
    }
    const __m256 vm = _mm256_set1_ps(mean), va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), va, vb));
    if (i < n) {
        __m256i mk = tail_mask((int)(n - i));
        _mm256_maskstore_ps(y + i, mk, _mm256_fmadd_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm), va, vb));
    }
}

/* ---- group norm: one task per (image, group) ----------------------------- */

#include "backends/cpu/group_norm_task.h"

void sdc_avx2_group_norm(sdc_backend *be, float *y, const float *x, const float *add, int N, int C,
                         int HW, int G, const sdc_weight *gamma, const sdc_weight *beta,
                         float eps, int silu) {
    if (N <= 0 || G <= 0) return;
    gn_ctx g = {y, x, add, C, HW, G, silu, gamma, beta, eps};
    sdc_parallel_for(sdc_cpu_of(be)->pool, (int64_t)N * G, gn_task, &g);
}

/* ---- layer norm: tasks of LN_ROWS rows ----------------------------------- */

#define LN_ROWS 8
typedef struct ln_ctx {
    sdc_backend *be;
    float *y;
    const float *x;
    int rows, D;
    const sdc_weight *gamma, *beta;
    float eps;
} ln_ctx;

static void ln_task(void *p, int64_t task, int thread) {
    const ln_ctx *l = p;
    sdc_cpu *cpu = sdc_cpu_of(l->be);
    int r0 = (int)task * LN_ROWS, r1 = r0 + LN_ROWS < l->rows ? r0 + LN_ROWS : l->rows;
    int D = l->D;
    if ((size_t)2 * D > SDC_CPU_SCRATCH_FLOATS) { /* no room to widen gamma/beta */
        sdc_ref_layer_norm(l->be, l->y + (int64_t)r0 * D, l->x + (int64_t)r0 * D, r1 - r0, D,
                           l->gamma, l->beta, l->eps);
        return;
    }
    float *ga = sdc_cpu_scratch(cpu, thread), *bb = ga + D;
    if (l->gamma) sdc_cpu_weight_row(cpu, ga, l->gamma, 0, D);
    else for (int i = 0; i < D; i++) ga[i] = 1.0f;
    if (l->beta) sdc_cpu_weight_row(cpu, bb, l->beta, 0, D);
    else memset(bb, 0, (size_t)D * sizeof *bb);
    for (int r = r0; r < r1; r++) {
        const float *x = l->x + (int64_t)r * D;
        float *y = l->y + (int64_t)r * D;
        double mean = sum_d(x, D) / D;
        double var = sqdev_d(x, D, mean) / D;
        __m256 vm = _mm256_set1_ps((float)mean), vr = _mm256_set1_ps((float)(1.0 / sqrt(var + l->eps)));
        int i = 0;
        for (; i + 8 <= D; i += 8) {
            __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(v, _mm256_loadu_ps(ga + i), _mm256_loadu_ps(bb + i)));
        }
        if (i < D) {
            __m256i mk = tail_mask(D - i);
            __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm), vr);
            _mm256_maskstore_ps(y + i, mk, _mm256_fmadd_ps(v, _mm256_maskload_ps(ga + i, mk),
                                                           _mm256_maskload_ps(bb + i, mk)));
        }
    }
}

void sdc_avx2_layer_norm(sdc_backend *be, float *y, const float *x, int rows, int D,
                         const sdc_weight *gamma, const sdc_weight *beta, float eps) {
    if (rows <= 0 || D <= 0) return;
    ln_ctx l = {be, y, x, rows, D, gamma, beta, eps};
    sdc_parallel_for(sdc_cpu_of(be)->pool, (rows + LN_ROWS - 1) / LN_ROWS, ln_task, &l);
}

/* ---- transpose: 8x8 register transposes; a task is (matrix, 32 rows) ----- */

typedef struct tr_ctx {
    float *y;
    const float *x;
    int H, W, groups;
} tr_ctx;

static inline void transpose8(const float *x, int64_t ldx, float *y, int64_t ldy) {
    __m256 r[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(x + i * ldx);
    sdc_avx2_transpose8(r);
    for (int i = 0; i < 8; i++) _mm256_storeu_ps(y + i * ldy, r[i]);
}

static void tr_task(void *p, int64_t task, int thread) {
    (void)thread;
    const tr_ctx *t = p;
    int64_t n = task / t->groups;
    int r0 = (int)(task % t->groups) * 32, r1 = r0 + 32 < t->H ? r0 + 32 : t->H;
    const int H = t->H, W = t->W;
    const float *x = t->x + n * H * (int64_t)W;
    float *y = t->y + n * H * (int64_t)W;
    for (int i = r0; i < r1; i += 8) {
        if (i + 8 <= r1) {
            int j = 0;
            for (; j + 8 <= W; j += 8) transpose8(x + (int64_t)i * W + j, W, y + (int64_t)j * H + i, H);
            for (; j < W; j++)
                for (int ii = i; ii < i + 8; ii++) y[(int64_t)j * H + ii] = x[(int64_t)ii * W + j];
        } else {
            for (int j = 0; j < W; j++)
                for (int ii = i; ii < r1; ii++) y[(int64_t)j * H + ii] = x[(int64_t)ii * W + j];
        }
    }
}

void sdc_avx2_transpose(sdc_backend *be, float *y, const float *x, int N, int H, int W) {
    if (N <= 0 || H <= 0 || W <= 0) return;
    tr_ctx t = {y, x, H, W, (H + 31) / 32};
    sdc_parallel_for(sdc_cpu_of(be)->pool, (int64_t)N * t.groups, tr_task, &t);
}
