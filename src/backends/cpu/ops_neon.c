/* AArch64 NEON ops: group/layer norm, the transcendental elementwise ops and
 * transpose, threaded over the pool; ops_avx2.c's formulas on 4 lanes.
 *
 * exp: Cephes' expf scheme (x = n ln2 + r, |r| <= ln2/2, degree-5
 * polynomial, 2^n by exponent bits), within ~2 ulp on [-87.3, 88.0]
 * (inputs are clamped to that range).
 * erfc: the Chebyshev fit of Numerical Recipes (erfcc), fractional error
 * < 1.2e-7 everywhere, so GELU = 0.5 x erfc(-x/sqrt 2) keeps its relative
 * accuracy for large negative x.
 * Norm statistics in double (float64x2_t), as ops_avx2.c. */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "backends/cpu/cpu_impl.h"
#include "backends/cpu/neon_transpose.h"

#define CHUNK ((int64_t)1 << 15)

static inline float32x4_t exp128(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.33654f)), vdupq_n_f32(88.02f));
    float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t y = vdupq_n_f32(1.9875691500e-4f);
    y = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), y, r);
    y = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), y, r);
    y = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), y, r);
    y = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), y, r);
    y = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), y, r);
    y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), y, vmulq_f32(r, r));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(y, vreinterpretq_f32_s32(e));
}

/* erfc(u) = t exp(-z^2 + P(t)), z = |u|, t = 1/(1 + z/2); 2 - that for u < 0 */
static inline float32x4_t erfc128(float32x4_t u) {
    float32x4_t z = vabsq_f32(u);
    float32x4_t t = vdivq_f32(vdupq_n_f32(1.0f), vfmaq_f32(vdupq_n_f32(1.0f), z, vdupq_n_f32(0.5f)));
    float32x4_t p = vdupq_n_f32(0.17087277f);
    p = vfmaq_f32(vdupq_n_f32(-0.82215223f), p, t);
    p = vfmaq_f32(vdupq_n_f32(1.48851587f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-1.13520398f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.27886807f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-0.18628806f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.09678418f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.37409196f), p, t);
    p = vfmaq_f32(vdupq_n_f32(1.00002368f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-1.26551223f), p, t);
    float32x4_t r = vmulq_f32(t, exp128(vfmsq_f32(p, z, z)));
    return vbslq_f32(vcltzq_f32(u), vsubq_f32(vdupq_n_f32(2.0f), r), r);
}

static inline float32x4_t silu128(float32x4_t x) {
    return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), exp128(vnegq_f32(x))));
}

static inline float32x4_t gelu128(float32x4_t x) {
    float32x4_t u = vmulq_f32(x, vdupq_n_f32(-0.70710678118654752f));
    return vmulq_f32(vmulq_f32(vdupq_n_f32(0.5f), x), erfc128(u));
}

static inline float32x4_t qgelu128(float32x4_t x) {
    float32x4_t e = exp128(vmulq_f32(x, vdupq_n_f32(-1.702f)));
    return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), e));
}

/* The last n < 4 floats of x as a quad (zeros past them), and back. */
static inline float32x4_t load_tail(const float *x, int n) {
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    memcpy(t, x, (size_t)n * sizeof *t);
    return vld1q_f32(t);
}
static inline void store_tail(float *y, float32x4_t v, int n) {
    float t[4];
    vst1q_f32(t, v);
    memcpy(y, t, (size_t)n * sizeof *t);
}

/* ---- elementwise ---------------------------------------------------------- */

enum { UN_SILU, UN_GELU, UN_QGELU };

static inline float32x4_t unary128(int kind, float32x4_t x) {
    switch (kind) {
    case UN_SILU: return silu128(x);
    case UN_GELU: return gelu128(x);
    default: return qgelu128(x);
    }
}

static void unary_span(int kind, float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, unary128(kind, vld1q_f32(x + i)));
    if (i < n) store_tail(y + i, unary128(kind, load_tail(x + i, (int)(n - i))), (int)(n - i));
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

void sdc_neon_silu(sdc_backend *be, float *y, const float *x, int64_t n) {
    unary_run(be, UN_SILU, y, x, n);
}
void sdc_neon_gelu(sdc_backend *be, float *y, const float *x, int64_t n) {
    unary_run(be, UN_GELU, y, x, n);
}
void sdc_neon_quick_gelu(sdc_backend *be, float *y, const float *x, int64_t n) {
    unary_run(be, UN_QGELU, y, x, n);
}

void sdc_neon_geglu_row(float *y, const float *h, const float *gate, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vmulq_f32(vld1q_f32(h + i), gelu128(vld1q_f32(gate + i))));
    if (i < n)
        store_tail(y + i, vmulq_f32(load_tail(h + i, n - i), gelu128(load_tail(gate + i, n - i))),
                   n - i);
}

/* ---- statistics in double ------------------------------------------------ */

static double sum_d(const float *x, int64_t n) {
    float64x2_t a0 = vdupq_n_f64(0.0), a1 = a0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        a0 = vaddq_f64(a0, vcvt_f64_f32(vget_low_f32(v)));
        a1 = vaddq_f64(a1, vcvt_high_f64_f32(v));
    }
    double s = vaddvq_f64(vaddq_f64(a0, a1));
    for (; i < n; i++) s += x[i];
    return s;
}

/* sum (x - mean)^2 */
static double sqdev_d(const float *x, int64_t n, double mean) {
    float64x2_t m = vdupq_n_f64(mean), a0 = vdupq_n_f64(0.0), a1 = a0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        float64x2_t d0 = vsubq_f64(vcvt_f64_f32(vget_low_f32(v)), m);
        float64x2_t d1 = vsubq_f64(vcvt_high_f64_f32(v), m);
        a0 = vfmaq_f64(a0, d0, d0);
        a1 = vfmaq_f64(a1, d1, d1);
    }
    double s = vaddvq_f64(vaddq_f64(a0, a1));
    for (; i < n; i++) s += (x[i] - mean) * (x[i] - mean);
    return s;
}

/* One pass: mean and biased variance of x[0..n), n > 0, from the sums of
 * d = x - x[0] and d^2 in double (shifted so that a large common offset
 * does not cancel). */
static void stats_d(const float *x, int64_t n, double *mean, double *var) {
    const double s0 = x[0];
    float64x2_t vs = vdupq_n_f64(s0), a0 = vdupq_n_f64(0.0), a1 = a0, q0 = a0, q1 = a0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        float64x2_t d0 = vsubq_f64(vcvt_f64_f32(vget_low_f32(v)), vs);
        float64x2_t d1 = vsubq_f64(vcvt_high_f64_f32(v), vs);
        a0 = vaddq_f64(a0, d0);
        a1 = vaddq_f64(a1, d1);
        q0 = vfmaq_f64(q0, d0, d0);
        q1 = vfmaq_f64(q1, d1, d1);
    }
    double s = vaddvq_f64(vaddq_f64(a0, a1)), q = vaddvq_f64(vaddq_f64(q0, q1));
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
    const float32x4_t vm = vdupq_n_f32(mean), va = vdupq_n_f32(a), vb = vdupq_n_f32(b);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vfmaq_f32(vb, vsubq_f32(vld1q_f32(x + i), vm), va);
        vst1q_f32(y + i, silu ? silu128(v) : v);
    }
    if (i < n) {
        float32x4_t v = vfmaq_f32(vb, vsubq_f32(load_tail(x + i, (int)(n - i)), vm), va);
        store_tail(y + i, silu ? silu128(v) : v, (int)(n - i));
    }
}

/* ---- group norm: one task per (image, group) ----------------------------- */

#include "backends/cpu/group_norm_task.h"

void sdc_neon_group_norm(sdc_backend *be, float *y, const float *x, const float *add, int N, int C,
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
        const float32x4_t vm = vdupq_n_f32((float)mean),
                          vr = vdupq_n_f32((float)(1.0 / sqrt(var + l->eps)));
        int i = 0;
        for (; i + 4 <= D; i += 4) {
            float32x4_t v = vmulq_f32(vsubq_f32(vld1q_f32(x + i), vm), vr);
            vst1q_f32(y + i, vfmaq_f32(vld1q_f32(bb + i), v, vld1q_f32(ga + i)));
        }
        if (i < D) {
            const int n = D - i;
            float32x4_t v = vmulq_f32(vsubq_f32(load_tail(x + i, n), vm), vr);
            store_tail(y + i, vfmaq_f32(load_tail(bb + i, n), v, load_tail(ga + i, n)), n);
        }
    }
}

void sdc_neon_layer_norm(sdc_backend *be, float *y, const float *x, int rows, int D,
                         const sdc_weight *gamma, const sdc_weight *beta, float eps) {
    if (rows <= 0 || D <= 0) return;
    ln_ctx l = {be, y, x, rows, D, gamma, beta, eps};
    sdc_parallel_for(sdc_cpu_of(be)->pool, (rows + LN_ROWS - 1) / LN_ROWS, ln_task, &l);
}

/* ---- transpose: 4x4 register transposes; a task is (matrix, 32 rows) ----- */

typedef struct tr_ctx {
    float *y;
    const float *x;
    int H, W, groups;
} tr_ctx;

static inline void transpose4(const float *x, int64_t ldx, float *y, int64_t ldy) {
    float32x4_t r[4];
    for (int i = 0; i < 4; i++) r[i] = vld1q_f32(x + i * ldx);
    sdc_neon_transpose4(r);
    for (int i = 0; i < 4; i++) vst1q_f32(y + i * ldy, r[i]);
}

static void tr_task(void *p, int64_t task, int thread) {
    (void)thread;
    const tr_ctx *t = p;
    int64_t n = task / t->groups;
    int r0 = (int)(task % t->groups) * 32, r1 = r0 + 32 < t->H ? r0 + 32 : t->H;
    const int H = t->H, W = t->W;
    const float *x = t->x + n * H * (int64_t)W;
    float *y = t->y + n * H * (int64_t)W;
    for (int i = r0; i < r1; i += 4) {
        if (i + 4 <= r1) {
            int j = 0;
            for (; j + 4 <= W; j += 4) transpose4(x + (int64_t)i * W + j, W, y + (int64_t)j * H + i, H);
            for (; j < W; j++)
                for (int ii = i; ii < i + 4; ii++) y[(int64_t)j * H + ii] = x[(int64_t)ii * W + j];
        } else {
            for (int j = 0; j < W; j++)
                for (int ii = i; ii < r1; ii++) y[(int64_t)j * H + ii] = x[(int64_t)ii * W + j];
        }
    }
}

void sdc_neon_transpose(sdc_backend *be, float *y, const float *x, int N, int H, int W) {
    if (N <= 0 || H <= 0 || W <= 0) return;
    tr_ctx t = {y, x, H, W, (H + 31) / 32};
    sdc_parallel_for(sdc_cpu_of(be)->pool, (int64_t)N * t.groups, tr_task, &t);
}
