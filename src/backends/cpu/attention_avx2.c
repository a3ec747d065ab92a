/* AVX2 + FMA attention: the design of attention_avx512.c (FlashAttention
 * tiles, softmax on each score tile in registers, lazy rescale of the
 * running shift) on 16 ymm registers, with both products in one tile shape.
 *
 * A task is (query block of bq queries, one head or a group of heads).  It
 * walks the keys in blocks of BK; per query it keeps m (a running shift,
 * log2 domain), l (the running sum) and O^T (the unnormalised output,
 * transposed: [dh][QT] per query micro-tile, in scratch):
 *   for each micro-tile of QT = 16 queries (lanes) and KT = 6 keys:
 *     X[k, q] = s(q, k) - m(q),  s = log2(e) * scale * q.k   (registers)
 *     if max_k X > TAU for some q (lazy rescale: m moves only when a score
 *       exceeds it by more than TAU, so every p <= 2^TAU): m += d, X -= d,
 *       l, the block's earlier P^T rows and O^T (at P V time) times 2^-d
 *     P^T[k, q] = 2^X (scratch, [BK][QT]),  l += sum_k P^T[k, q]
 *   then O^T[d, q] = c(q) O^T[d, q] + sum_k V[k, d] P^T[k, q] over the
 *   block's keys; the last block stores O^T / l and writes it transposed
 *   to out.
 * The first key tile of a query sets m to its exact column max.  Both
 * products are the same register tile, 6 rows x 16 lanes (12 ymm
 * accumulators, 2 lane vectors, 1 broadcast): S^T[k, :] = sum_d K[k, d]
 * Q^T[d, :] (rows: keys, K read in place; a last partial key tile is
 * copied) and O^T[d, :] = sum_k V[k, d] P^T[k, :] (rows: head dims, V read
 * in place), so the softmax factors c and 1/l are lane vectors.  Q is
 * packed per task and head as [bq/QT][dh][QT], prescaled by
 * log2(e) * scale.
 * exp2: x = n + f, |f| <= 1/2, 2^f by attention_avx512.c's degree-5
 * polynomial, 2^n by exponent bits (n from adding 1.5 * 2^23 + 127); x is
 * clamped to >= -127, where 2^n is +0, so masked keys give exactly 0. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backends/cpu/cpu_impl.h"

#define QT 16              /* queries per micro-tile: 2 ymm of lanes */
#define KT 6               /* rows of a register tile: keys (Q K^T), head dims (P V) */

#include "backends/cpu/attention_tiles.h"

static inline __m256 exp2_256(__m256 x) {
    const __m256 magic = _mm256_set1_ps(12582912.0f + 127.0f); /* 1.5 * 2^23 + bias */
    x = _mm256_max_ps(x, _mm256_set1_ps(-127.0f));
    __m256 t = _mm256_add_ps(x, magic); /* low mantissa bits: n + 127 */
    __m256 f = _mm256_sub_ps(x, _mm256_sub_ps(t, magic));
    __m256 y = _mm256_set1_ps(1.327646822377191e-3f);
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(9.675541313348105e-3f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(5.5507132852204065e-2f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(2.4022119724366986e-1f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(6.931469670575058e-1f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(1.0000000716545216f));
    return _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23)));
}

/* Keys k0..k0+nk (nk <= KT; KT rows readable) against the QT queries of
 * panel qp ([dh][QT]): P^T rows done..done+nk of the block, m, l and c
 * updated.  kh: key k0's row (stride kvs); causal: kq0 = k0 minus the
 * query index of lane 0 (key k0+r is masked for lane j when kq0 + r > j). */
static inline __attribute__((always_inline)) void
qk_tile(const qtile *t, int done, const float *qp, const float *kh, int64_t kvs, int dh, int nk,
        int causal, int kq0) {
    /* row 3i + j at b[i] + j s */
    const int64_t s = kvs * (int64_t)sizeof(float);
    const char *b0 = (const char *)kh, *b3 = b0 + 3 * s;
    __m256 a0[KT], a1[KT];
#pragma GCC unroll 6
    for (int r = 0; r < KT; r++) a0[r] = a1[r] = _mm256_setzero_ps();
    for (int d = 0; d < dh; d++, b0 += 4, b3 += 4) {
        __m256 q0 = _mm256_loadu_ps(qp + (size_t)d * QT), q1 = _mm256_loadu_ps(qp + (size_t)d * QT + 8);
#define ROW(r, base, j)                                                                        \
    {                                                                                          \
        __m256 b = _mm256_broadcast_ss((const float *)(base + j * s));                         \
        a0[r] = _mm256_fmadd_ps(b, q0, a0[r]);                                                 \
        a1[r] = _mm256_fmadd_ps(b, q1, a1[r]);                                                 \
    }
        ROW(0, b0, 0) ROW(1, b0, 1) ROW(2, b0, 2) ROW(3, b3, 0) ROW(4, b3, 1) ROW(5, b3, 2)
#undef ROW
    }
    __m256 m0 = _mm256_loadu_ps(t->m), m1 = _mm256_loadu_ps(t->m + 8);
    if (!t->first) /* subtracted here, not as the sums' start: keeps their rounding small */
#pragma GCC unroll 6
        for (int r = 0; r < KT; r++) a0[r] = _mm256_sub_ps(a0[r], m0), a1[r] = _mm256_sub_ps(a1[r], m1);
    if (causal) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i lane8 = _mm256_add_epi32(lane, _mm256_set1_epi32(8));
        const __m256 mv = _mm256_set1_ps(MASKED);
#pragma GCC unroll 6
        for (int r = 0; r < KT; r++) {
            __m256i kk = _mm256_set1_epi32(kq0 + r);
            a0[r] = _mm256_blendv_ps(a0[r], mv, _mm256_castsi256_ps(_mm256_cmpgt_epi32(kk, lane)));
            a1[r] = _mm256_blendv_ps(a1[r], mv, _mm256_castsi256_ps(_mm256_cmpgt_epi32(kk, lane8)));
        }
    }
    __m256 x0 = a0[0], x1 = a1[0]; /* column max over the valid rows */
#pragma GCC unroll 6
    for (int r = 1; r < KT; r++)
        if (r < nk) x0 = _mm256_max_ps(x0, a0[r]), x1 = _mm256_max_ps(x1, a1[r]);
    __m256 c0 = _mm256_set1_ps(1.0f), c1 = c0;
    if (t->first) { /* m = the column max (0 where every key is masked) */
        const __m256 lo = _mm256_set1_ps(0.5f * MASKED);
        x0 = _mm256_andnot_ps(_mm256_cmp_ps(x0, lo, _CMP_LT_OQ), x0);
        x1 = _mm256_andnot_ps(_mm256_cmp_ps(x1, lo, _CMP_LT_OQ), x1);
#pragma GCC unroll 6
        for (int r = 0; r < KT; r++) a0[r] = _mm256_sub_ps(a0[r], x0), a1[r] = _mm256_sub_ps(a1[r], x1);
        _mm256_storeu_ps(t->m, x0), _mm256_storeu_ps(t->m + 8, x1);
    } else {
        const __m256 tau = _mm256_set1_ps(TAU);
        __m256 u0 = _mm256_cmp_ps(x0, tau, _CMP_GT_OQ), u1 = _mm256_cmp_ps(x1, tau, _CMP_GT_OQ);
        if (_mm256_movemask_ps(_mm256_or_ps(u0, u1))) { /* raise m by d = max X on those lanes */
            __m256 d0 = _mm256_and_ps(u0, x0), d1 = _mm256_and_ps(u1, x1);
#pragma GCC unroll 6
            for (int r = 0; r < KT; r++) a0[r] = _mm256_sub_ps(a0[r], d0), a1[r] = _mm256_sub_ps(a1[r], d1);
            _mm256_storeu_ps(t->m, _mm256_add_ps(m0, d0));
            _mm256_storeu_ps(t->m + 8, _mm256_add_ps(m1, d1));
            c0 = exp2_256(_mm256_sub_ps(_mm256_setzero_ps(), d0));
            c1 = exp2_256(_mm256_sub_ps(_mm256_setzero_ps(), d1));
            _mm256_storeu_ps(t->c, _mm256_mul_ps(_mm256_loadu_ps(t->c), c0));
            _mm256_storeu_ps(t->c + 8, _mm256_mul_ps(_mm256_loadu_ps(t->c + 8), c1));
            for (int r = 0; r < done; r++) {
                float *p = t->pt + (size_t)r * QT;
                _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_loadu_ps(p), c0));
                _mm256_storeu_ps(p + 8, _mm256_mul_ps(_mm256_loadu_ps(p + 8), c1));
            }
        }
    }
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
#pragma GCC unroll 6
    for (int r = 0; r < KT; r++)
        if (r < nk) {
            __m256 p0 = exp2_256(a0[r]), p1 = exp2_256(a1[r]);
            s0 = _mm256_add_ps(s0, p0), s1 = _mm256_add_ps(s1, p1);
            float *p = t->pt + (size_t)(done + r) * QT;
            _mm256_storeu_ps(p, p0), _mm256_storeu_ps(p + 8, p1);
        }
    _mm256_storeu_ps(t->l, _mm256_fmadd_ps(_mm256_loadu_ps(t->l), c0, s0));
    _mm256_storeu_ps(t->l + 8, _mm256_fmadd_ps(_mm256_loadu_ps(t->l + 8), c1, s1));
}

/* P^T rows 0..nk of the block for one query micro-tile.  kt: room for a
 * last partial tile ([KT][dh], rows past it repeat its last row); vh: the
 * block's V rows, prefetched tile by tile with the next K tile, or NULL. */
static void score_tiles(qtile *t, const float *qp, const float *kh, const float *vh, int64_t kvs,
                        int dh, int nk, int causal, int kq0, float *kt) {
    for (int j = 0; j < nk; j += KT) {
        const int n = nk - j < KT ? nk - j : KT;
        const float *src = kh + (int64_t)j * kvs;
        int64_t stride = kvs;
        if (vh) {
            if (j + KT < nk) prefetch_rows(src + KT * kvs, kvs, nk - j - KT < KT ? nk - j - KT : KT, dh);
            prefetch_rows(vh + (int64_t)j * kvs, kvs, n, dh);
        }
        if (n < KT) {
            for (int r = 0; r < KT; r++)
                memcpy(kt + (size_t)r * dh, src + (int64_t)(r < n ? r : n - 1) * kvs, (size_t)dh * sizeof *kt);
            src = kt, stride = dh;
        }
        if (dh == 40) qk_tile(t, j, qp, src, stride, 40, n, causal, kq0 + j);
        else qk_tile(t, j, qp, src, stride, dh, n, causal, kq0 + j);
        t->first = 0;
    }
}

/* Rows d0..d0+R of O^T (R <= KT; ot: row d0, row stride QT):
 *   ot[r, :] = (c * ot[r, :] + sum_{k < bk} V[k, d0 + r] P^T[k, :]) * f
 * with c, f lane vectors ([QT]); c NULL: ot not read (first block);
 * f NULL: 1.  v: V[0, d0] (row stride kvs). */
static inline __attribute__((always_inline)) void
pv_tile(const int R, float *ot, const float *c, const float *f, const float *pt, int bk,
        const float *v, int64_t kvs) {
    __m256 a0[KT], a1[KT];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) a0[r] = a1[r] = _mm256_setzero_ps();
    for (int k = 0; k < bk; k++, pt += QT, v += kvs) {
        __m256 p0 = _mm256_loadu_ps(pt), p1 = _mm256_loadu_ps(pt + 8);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m256 b = _mm256_broadcast_ss(v + r);
            a0[r] = _mm256_fmadd_ps(b, p0, a0[r]);
            a1[r] = _mm256_fmadd_ps(b, p1, a1[r]);
        }
    }
    /* O^T added after the sum over this block (not as its start: a blocked
     * sum, whose rounding grows with the block, not with Sk) */
    if (c) {
        const __m256 c0 = _mm256_loadu_ps(c), c1 = _mm256_loadu_ps(c + 8);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(ot + r * QT), c0, a0[r]);
            a1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(ot + r * QT + 8), c1, a1[r]);
        }
    }
    if (f) {
        const __m256 f0 = _mm256_loadu_ps(f), f1 = _mm256_loadu_ps(f + 8);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) a0[r] = _mm256_mul_ps(a0[r], f0), a1[r] = _mm256_mul_ps(a1[r], f1);
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) _mm256_storeu_ps(ot + r * QT, a0[r]), _mm256_storeu_ps(ot + r * QT + 8, a1[r]);
}

/* pv_tile over all dh rows of one micro-tile's O^T, KT rows at a time. */
static void pv_qtile(int dh, float *ot, const float *c, const float *f, const float *pt, int bk,
                     const float *v, int64_t kvs) {
    int d0 = 0;
    for (; d0 + KT <= dh; d0 += KT) pv_tile(KT, ot + (size_t)d0 * QT, c, f, pt, bk, v + d0, kvs);
    switch (dh - d0) {
    case 5: pv_tile(5, ot + (size_t)d0 * QT, c, f, pt, bk, v + d0, kvs); break;
    case 4: pv_tile(4, ot + (size_t)d0 * QT, c, f, pt, bk, v + d0, kvs); break;
    case 3: pv_tile(3, ot + (size_t)d0 * QT, c, f, pt, bk, v + d0, kvs); break;
    case 2: pv_tile(2, ot + (size_t)d0 * QT, c, f, pt, bk, v + d0, kvs); break;
    case 1: pv_tile(1, ot + (size_t)d0 * QT, c, f, pt, bk, v + d0, kvs); break;
    default: break;
    }
}

/* dst[j * ldd + i] = s * src[i * lds + j] for i < rows, j < cols: 8x8
 * blocks transposed in registers, the edges one by one. */
static void transpose_scaled(float *dst, int64_t ldd, const float *src, int64_t lds, int rows,
                             int cols, float s) {
    const __m256 vs = _mm256_set1_ps(s);
    int i0 = 0;
    for (; i0 + 8 <= rows; i0 += 8) {
        int j0 = 0;
        for (; j0 + 8 <= cols; j0 += 8) {
            const float *a = src + (int64_t)i0 * lds + j0;
            __m256 r[8], t[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(a + i * lds);
#pragma GCC unroll 4
            for (int i = 0; i < 8; i += 2) {
                t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            }
            /* r[4g + c]: per 128-bit lane, column c (+4) of rows 4g..4g+3 */
#pragma GCC unroll 2
            for (int g = 0; g < 2; g++) {
                __m256 p = t[4 * g], q = t[4 * g + 1], u = t[4 * g + 2], w = t[4 * g + 3];
                r[4 * g + 0] = _mm256_shuffle_ps(p, u, 0x44);
                r[4 * g + 1] = _mm256_shuffle_ps(p, u, 0xee);
                r[4 * g + 2] = _mm256_shuffle_ps(q, w, 0x44);
                r[4 * g + 3] = _mm256_shuffle_ps(q, w, 0xee);
            }
            float *b = dst + (int64_t)j0 * ldd + i0;
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                _mm256_storeu_ps(b + c * ldd, _mm256_mul_ps(_mm256_permute2f128_ps(r[c], r[4 + c], 0x20), vs));
                _mm256_storeu_ps(b + (c + 4) * ldd, _mm256_mul_ps(_mm256_permute2f128_ps(r[c], r[4 + c], 0x31), vs));
            }
        }
        for (int i = i0; i < i0 + 8; i++)
            for (int j = j0; j < cols; j++) dst[(int64_t)j * ldd + i] = s * src[(int64_t)i * lds + j];
    }
    for (int i = i0; i < rows; i++)
        for (int j = 0; j < cols; j++) dst[(int64_t)j * ldd + i] = s * src[(int64_t)i * lds + j];
}

static void att_pack_q(const att_ctx *A, float *Qp, int i0, int h, int bq) {
    const int dh = A->dh;
    for (int t = 0; t * QT < bq; t++) {
        const int n = bq - t * QT < QT ? bq - t * QT : QT;
        float *qp = Qp + (size_t)t * dh * QT;
        if (n < QT) memset(qp, 0, (size_t)dh * QT * sizeof *qp);
        transpose_scaled(qp, QT, A->q + (int64_t)(i0 + t * QT) * A->q_stride + (int64_t)h * dh,
                         A->q_stride, n, dh, A->qscale);
    }
}

/* O^T [dh][QT], transposed into out after the last block */
static void att_pv(int dh, float *O, const float *c, int first, const float *l, int last,
                   float *out, int64_t ldo, int nrows, const float *pt, int nk, const float *v,
                   int64_t kvs) {
    pv_qtile(dh, O, first ? NULL : c, last ? l : NULL, pt, nk, v, kvs);
    if (last) transpose_scaled(out, ldo, O, QT, dh, nrows, 1.0f);
}

void sdc_avx2_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                        const float *k, const float *v, int kv_stride, int Sq, int Sk, int heads,
                        int dh, float scale, int causal) {
    att_run(be, out, q, q_stride, k, v, kv_stride, Sq, Sk, heads, dh, scale, causal);
}
