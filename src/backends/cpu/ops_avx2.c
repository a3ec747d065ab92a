/* AVX2 + FMA ops: attention (tiled, online softmax), group/layer norm, and
 * the transcendental elementwise ops, threaded over the pool.
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

#include "backends/cpu/cpu_impl.h"

#define CHUNK ((int64_t)1 << 15)

static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.02f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* erfc(u) = t exp(-z^2 + P(t)), z = |u|, t = 1/(1 + z/2); 2 - that for u < 0 */
static inline __m256 erfc256(__m256 u) {
    __m256 z = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), u);
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                             _mm256_fmadd_ps(z, _mm256_set1_ps(0.5f), _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(0.17087277f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
    __m256 r = _mm256_mul_ps(t, exp256(_mm256_fnmadd_ps(z, z, p)));
    __m256 neg = _mm256_cmp_ps(u, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_blendv_ps(r, _mm256_sub_ps(_mm256_set1_ps(2.0f), r), neg);
}

static inline __m256 silu256(__m256 x) {
    __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

static inline __m256 gelu256(__m256 x) {
    __m256 u = _mm256_mul_ps(x, _mm256_set1_ps(-0.70710678118654752f));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), erfc256(u));
}

static inline __m256 qgelu256(__m256 x) {
    __m256 e = exp256(_mm256_mul_ps(x, _mm256_set1_ps(-1.702f)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* lanes < n (0 <= n <= 8) set */
static inline __m256i tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- elementwise ---------------------------------------------------------- */

enum { UN_SILU, UN_GELU, UN_QGELU };

static inline __m256 unary256(int kind, __m256 x) {
    switch (kind) {
    case UN_SILU: return silu256(x);
    case UN_GELU: return gelu256(x);
    default: return qgelu256(x);
    }
}

static void unary_span(int kind, float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, unary256(kind, _mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i m = tail_mask((int)(n - i));
        _mm256_maskstore_ps(y + i, m, unary256(kind, _mm256_maskload_ps(x + i, m)));
    }
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

typedef struct geglu_ctx {
    float *y;
    const float *x;
    int rows, D, rows_per_task;
} geglu_ctx;

static void geglu_task(void *p, int64_t task, int thread) {
    (void)thread;
    const geglu_ctx *g = p;
    int r0 = (int)task * g->rows_per_task;
    int r1 = r0 + g->rows_per_task < g->rows ? r0 + g->rows_per_task : g->rows;
    for (int r = r0; r < r1; r++) {
        const float *h = g->x + (int64_t)r * 2 * g->D, *gate = h + g->D;
        float *y = g->y + (int64_t)r * g->D;
        int i = 0;
        for (; i + 8 <= g->D; i += 8)
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(h + i),
                                                  gelu256(_mm256_loadu_ps(gate + i))));
        if (i < g->D) {
            __m256i m = tail_mask(g->D - i);
            _mm256_maskstore_ps(y + i, m, _mm256_mul_ps(_mm256_maskload_ps(h + i, m),
                                                        gelu256(_mm256_maskload_ps(gate + i, m))));
        }
    }
}

void sdc_avx2_geglu(sdc_backend *be, float *y, const float *x, int rows, int D) {
    if (rows <= 0 || D <= 0) return;
    int per = (int)(CHUNK / D);
    geglu_ctx g = {y, x, rows, D, per < 1 ? 1 : per};
    sdc_parallel_for(sdc_cpu_of(be)->pool, (rows + g.rows_per_task - 1) / g.rows_per_task,
                     geglu_task, &g);
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

/* y = (x - mean) * a + b, then silu if asked */
static void norm_span(float *y, const float *x, int64_t n, float mean, float a, float b,
                      int silu) {
    __m256 vm = _mm256_set1_ps(mean), va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_fmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), va, vb);
        _mm256_storeu_ps(y + i, silu ? silu256(v) : v);
    }
    if (i < n) {
        __m256i mk = tail_mask((int)(n - i));
        __m256 v = _mm256_fmadd_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm), va, vb);
        _mm256_maskstore_ps(y + i, mk, silu ? silu256(v) : v);
    }
}

/* ---- group norm: one task per (image, group) ----------------------------- */

typedef struct gn_ctx {
    float *y;
    const float *x;
    int C, HW, G, silu;
    const sdc_weight *gamma, *beta;
    float eps;
} gn_ctx;

static void gn_task(void *p, int64_t task, int thread) {
    (void)thread;
    const gn_ctx *g = p;
    int n = (int)(task / g->G), grp = (int)(task % g->G), cg = g->C / g->G;
    int64_t base = ((int64_t)n * g->C + (int64_t)grp * cg) * g->HW, cnt = (int64_t)cg * g->HW;
    double mean = sum_d(g->x + base, cnt) / (double)cnt;
    double var = sqdev_d(g->x + base, cnt, mean) / (double)cnt;
    float rstd = (float)(1.0 / sqrt(var + g->eps));
    for (int cc = 0; cc < cg; cc++) {
        int c = grp * cg + cc;
        float ga = g->gamma ? sdc_wget(g->gamma, c) : 1.0f;
        float be = g->beta ? sdc_wget(g->beta, c) : 0.0f;
        int64_t off = base + (int64_t)cc * g->HW;
        norm_span(g->y + off, g->x + off, g->HW, (float)mean, rstd * ga, be, g->silu);
    }
}

void sdc_avx2_group_norm(sdc_backend *be, float *y, const float *x, int N, int C, int HW, int G,
                         const sdc_weight *gamma, const sdc_weight *beta, float eps, int silu) {
    if (N <= 0 || G <= 0) return;
    gn_ctx g = {y, x, C, HW, G, silu, gamma, beta, eps};
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

/* ---- attention ------------------------------------------------------------
 * FlashAttention-style (Dao et al. 2022): a task is (head, block of BQ
 * queries); it walks the keys in blocks of BK, keeping per query the running
 * max m, the running sum l and the unnormalised output O:
 *   S = scale * Q K^T (block), m' = max(m, max_j S), c = exp(m - m'),
 *   P = exp(S - m'), l = c l + sum_j P, O = c O + P V;  out = O / l.
 * Scratch per thread: O [BQ, dh], K^T [dh, BK], S [BQ, BK], m, l [BQ]. */

#define BQ SDC_ATT_BQ
#define BK SDC_ATT_BK

typedef struct att_ctx {
    sdc_cpu *cpu;
    float *out;
    const float *q, *k, *v;
    int q_stride, kv_stride, Sq, Sk, heads, dh, causal, qblocks;
    float scale;
} att_ctx;

/* o[0..dh) = o * c + sum_{j < nk} p[j] v_j[0..dh), v_j = v + j * stride */
static void att_pv(float *o, float c, const float *p, int nk, const float *v, int64_t stride,
                   int dh) {
    __m256 vc = _mm256_set1_ps(c);
    for (int d0 = 0; d0 < dh; d0 += 32) {
        int rem = dh - d0;
        if (rem >= 32) {
            __m256 a0 = _mm256_mul_ps(_mm256_loadu_ps(o + d0), vc);
            __m256 a1 = _mm256_mul_ps(_mm256_loadu_ps(o + d0 + 8), vc);
            __m256 a2 = _mm256_mul_ps(_mm256_loadu_ps(o + d0 + 16), vc);
            __m256 a3 = _mm256_mul_ps(_mm256_loadu_ps(o + d0 + 24), vc);
            const float *vr = v + d0;
            for (int j = 0; j < nk; j++, vr += stride) {
                __m256 pj = _mm256_broadcast_ss(p + j);
                a0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr), a0);
                a1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr + 8), a1);
                a2 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr + 16), a2);
                a3 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr + 24), a3);
            }
            _mm256_storeu_ps(o + d0, a0);
            _mm256_storeu_ps(o + d0 + 8, a1);
            _mm256_storeu_ps(o + d0 + 16, a2);
            _mm256_storeu_ps(o + d0 + 24, a3);
        } else {
            __m256i m[4];
            __m256 a[4];
            int nv = (rem + 7) / 8;
            for (int t = 0; t < nv; t++) {
                int r = rem - 8 * t;
                m[t] = tail_mask(r > 8 ? 8 : r);
                a[t] = _mm256_mul_ps(_mm256_maskload_ps(o + d0 + 8 * t, m[t]), vc);
            }
            const float *vr = v + d0;
            for (int j = 0; j < nk; j++, vr += stride) {
                __m256 pj = _mm256_broadcast_ss(p + j);
                for (int t = 0; t < nv; t++)
                    a[t] = _mm256_fmadd_ps(pj, _mm256_maskload_ps(vr + 8 * t, m[t]), a[t]);
            }
            for (int t = 0; t < nv; t++) _mm256_maskstore_ps(o + d0 + 8 * t, m[t], a[t]);
        }
    }
}

static void att_task(void *p, int64_t task, int thread) {
    const att_ctx *A = p;
    int h = (int)(task / A->qblocks), i0 = (int)(task % A->qblocks) * BQ;
    int bq = A->Sq - i0 < BQ ? A->Sq - i0 : BQ, dh = A->dh;
    float *O = sdc_cpu_scratch(A->cpu, thread);
    float *Kt = O + (size_t)BQ * SDC_ATT_DH_MAX;
    float *S = Kt + (size_t)SDC_ATT_DH_MAX * BK;
    float *mrow = S + (size_t)BQ * BK, *lrow = mrow + BQ;
    memset(O, 0, (size_t)bq * dh * sizeof *O);
    for (int i = 0; i < bq; i++) {
        mrow[i] = -INFINITY;
        lrow[i] = 0.0f;
    }
    int kend = A->Sk;
    if (A->causal && i0 + bq < kend) kend = i0 + bq;
    const __m256 vscale = _mm256_set1_ps(A->scale);
    for (int j0 = 0; j0 < kend; j0 += BK) {
        int bk = kend - j0 < BK ? kend - j0 : BK;
        /* Kt[d][jj] = k[j0 + jj, h*dh + d], zero past bk */
        for (int jj = 0; jj < BK; jj++) {
            const float *kr = A->k + (int64_t)(j0 + jj) * A->kv_stride + (int64_t)h * dh;
            if (jj < bk)
                for (int d = 0; d < dh; d++) Kt[d * BK + jj] = kr[d];
            else
                for (int d = 0; d < dh; d++) Kt[d * BK + jj] = 0.0f;
        }
        for (int i = 0; i < bq; i++) {
            int nvalid = bk;
            if (A->causal && i0 + i - j0 + 1 < nvalid) nvalid = i0 + i - j0 + 1;
            if (nvalid <= 0) continue;
            const float *qi = A->q + (int64_t)(i0 + i) * A->q_stride + (int64_t)h * dh;
            float *s = S + (size_t)i * BK;
            __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0,
                   s6 = s0, s7 = s0;
            const float *kt = Kt;
            if (nvalid > 32) {
                for (int d = 0; d < dh; d++, kt += BK) {
                    __m256 qd = _mm256_broadcast_ss(qi + d);
                    s0 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt), s0);
                    s1 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt + 8), s1);
                    s2 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt + 16), s2);
                    s3 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt + 24), s3);
                    s4 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt + 32), s4);
                    s5 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt + 40), s5);
                    s6 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt + 48), s6);
                    s7 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt + 56), s7);
                }
            } else {
                for (int d = 0; d < dh; d++, kt += BK) {
                    __m256 qd = _mm256_broadcast_ss(qi + d);
                    s0 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt), s0);
                    s1 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt + 8), s1);
                    s2 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt + 16), s2);
                    s3 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt + 24), s3);
                }
            }
            _mm256_storeu_ps(s, _mm256_mul_ps(s0, vscale));
            _mm256_storeu_ps(s + 8, _mm256_mul_ps(s1, vscale));
            _mm256_storeu_ps(s + 16, _mm256_mul_ps(s2, vscale));
            _mm256_storeu_ps(s + 24, _mm256_mul_ps(s3, vscale));
            _mm256_storeu_ps(s + 32, _mm256_mul_ps(s4, vscale));
            _mm256_storeu_ps(s + 40, _mm256_mul_ps(s5, vscale));
            _mm256_storeu_ps(s + 48, _mm256_mul_ps(s6, vscale));
            _mm256_storeu_ps(s + 56, _mm256_mul_ps(s7, vscale));
            /* online softmax over s[0..nvalid) */
            __m256 vmax = _mm256_set1_ps(-INFINITY);
            int jv = 0;
            for (; jv + 8 <= nvalid; jv += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + jv));
            float bmax = hmax256(vmax);
            for (; jv < nvalid; jv++) bmax = s[jv] > bmax ? s[jv] : bmax;
            float m_old = mrow[i], m_new = m_old > bmax ? m_old : bmax;
            float corr = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
            __m256 vmn = _mm256_set1_ps(m_new), vsum = _mm256_setzero_ps();
            for (int j = 0; j < nvalid; j += 8) {
                __m256i mk = tail_mask(nvalid - j > 8 ? 8 : nvalid - j);
                __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmn));
                e = _mm256_and_ps(e, _mm256_castsi256_ps(mk));
                vsum = _mm256_add_ps(vsum, e);
                _mm256_storeu_ps(s + j, e);
            }
            mrow[i] = m_new;
            lrow[i] = lrow[i] * corr + hsum256(vsum);
            att_pv(O + (size_t)i * dh, corr, s, nvalid,
                   A->v + (int64_t)j0 * A->kv_stride + (int64_t)h * dh, A->kv_stride, dh);
        }
    }
    for (int i = 0; i < bq; i++) {
        float *o = A->out + (int64_t)(i0 + i) * A->heads * dh + (int64_t)h * dh;
        float inv = lrow[i] > 0.0f ? 1.0f / lrow[i] : 0.0f;
        for (int d = 0; d < dh; d++) o[d] = O[(size_t)i * dh + d] * inv;
    }
}

void sdc_avx2_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                        const float *k, const float *v, int kv_stride, int Sq, int Sk, int heads,
                        int dh, float scale, int causal) {
    if (Sq <= 0 || heads <= 0 || dh <= 0) return;
    if (dh > SDC_ATT_DH_MAX) {
        sdc_ref_attention(be, out, q, q_stride, k, v, kv_stride, Sq, Sk, heads, dh, scale, causal);
        return;
    }
    att_ctx A = {sdc_cpu_of(be), out, q, k, v, q_stride, kv_stride, Sq, Sk, heads, dh, causal,
                 (Sq + BQ - 1) / BQ, scale};
    sdc_parallel_for(A.cpu->pool, (int64_t)heads * A.qblocks, att_task, &A);
}
