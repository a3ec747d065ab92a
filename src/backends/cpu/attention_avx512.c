/* AVX-512 attention: FlashAttention-style tiles (Dao et al. 2022) with the
 * softmax done on each score tile while it is still in registers.
 *
 * A task is (query block of bq queries, one head or a group of heads).  It
 * walks the keys in blocks of BK; per query it keeps m (a running shift,
 * log2 domain), l (the running sum) and O (the unnormalised output,
 * [bq, dh] in scratch):
 *   for each micro-tile of QT = 32 queries (lanes) and KT = 12 keys:
 *     X[k, q] = s(q, k) - m(q),  s = log2(e) * scale * q.k   (registers)
 *     if max_k X > TAU for some q (lazy rescale: m moves only when a score
 *       exceeds it by more than TAU, so every p <= 2^TAU): m += d, X -= d,
 *       l, the block's earlier P^T rows and O (at P V time) times 2^-d
 *     P^T[k, q] = 2^X (scratch, [BK][QT]),  l += sum_k P^T[k, q]
 *   then O[q, :] += sum_k P^T[k, q] V[k, :] over the block's keys; the
 *   last block writes out = O / l instead of O.
 * The first key tile of a query sets m to its exact column max.  The
 * score matrix exists only as one [BK, QT] block of P^T.  K and V are read
 * in place (a last partial key tile is copied); Q is packed per task and
 * head as [bq/QT][dh][QT], prescaled by log2(e) * scale.
 * exp2: x = n + f, |f| <= 1/2, 2^f by a degree-5 polynomial (relative
 * error 7.5e-8 on [-1/2, 1/2], a minimax-style fit made for this file),
 * 2^n by vscalefps: 5 FMAs per 16 scores against the products' 2 dh (on
 * Zen 4 the rounding, subtractions, max and sums run on the add pipes).
 * Registers: a score tile is 12 keys x 32 queries (24 zmm); a P V tile is
 * R query rows x up to 80 columns (dh 40: 8 rows x 16+16+8, the 8 in a ymm,
 * which on Zen 4 costs half a zmm).
 * The alternative, the partially fused softmax of "Speed Is All You Need"
 * (a query tile's scores over all keys first with their exact max, then
 * exp and P V), measured equal or slower on every SD shape (up to 7%;
 * docs/perf.md), so every shape takes this path. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backends/cpu/cpu_impl.h"

#define QT 32           /* queries per micro-tile: 2 zmm of lanes */
#define KT 12           /* keys per score tile (a tail of <= 6 keys: 6) */

#include "backends/cpu/attention_tiles.h"

static inline __m512 exp2_512(__m512 x) {
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(x, n);
    __m512 y = _mm512_set1_ps(1.327646822377191e-3f);
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(9.675541313348105e-3f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(5.5507132852204065e-2f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(2.4022119724366986e-1f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(6.931469670575058e-1f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.0000000716545216f));
    return _mm512_scalef_ps(y, n);
}

/* Keys k0..k0+nk (nk <= R; R = 12 or 6 rows, all readable) against the
 * QT queries of panel qp ([dh][QT]): P^T rows done..done+nk of the block,
 * m, l and c updated.  kh: key k0's row (stride kvs); causal: kq0 = k0
 * minus the query index of lane 0 (key k0+r is masked for lane j when
 * kq0 + r > j). */
static inline __attribute__((always_inline)) void
qk_tile(const int R, const qtile *t, int done, const float *qp, const float *kh, int64_t kvs,
        int dh, int nk, int causal, int kq0) {
    /* row 3i + j at b[i] + j s */
    const int64_t s = kvs * (int64_t)sizeof(float);
    const char *b0 = (const char *)kh, *b3 = b0 + 3 * s, *b6 = b3 + 3 * s, *b9 = b6 + 3 * s;
    __m512 a0[KT], a1[KT];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) a0[r] = a1[r] = _mm512_setzero_ps();
    for (int d = 0; d < dh; d++, b0 += 4, b3 += 4, b6 += 4, b9 += 4) {
        __m512 q0 = _mm512_loadu_ps(qp + (size_t)d * QT), q1 = _mm512_loadu_ps(qp + (size_t)d * QT + 16);
#define ROW(r, base, j)                                                                        \
    {                                                                                          \
        __m512 b = _mm512_set1_ps(*(const float *)(base + j * s));                             \
        a0[r] = _mm512_fmadd_ps(b, q0, a0[r]);                                                 \
        a1[r] = _mm512_fmadd_ps(b, q1, a1[r]);                                                 \
    }
        ROW(0, b0, 0) ROW(1, b0, 1) ROW(2, b0, 2) ROW(3, b3, 0) ROW(4, b3, 1) ROW(5, b3, 2)
        if (R > 6) {
            ROW(6, b6, 0) ROW(7, b6, 1) ROW(8, b6, 2) ROW(9, b9, 0) ROW(10, b9, 1) ROW(11, b9, 2)
        }
#undef ROW
    }
    __m512 m0 = _mm512_loadu_ps(t->m), m1 = _mm512_loadu_ps(t->m + 16);
    if (!t->first) /* subtracted here, not as the sums' start: keeps their rounding small */
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) a0[r] = _mm512_sub_ps(a0[r], m0), a1[r] = _mm512_sub_ps(a1[r], m1);
    if (causal) {
        const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        const __m512 mv = _mm512_set1_ps(MASKED);
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            __m512i kk = _mm512_set1_epi32(kq0 + r);
            a0[r] = _mm512_mask_mov_ps(a0[r], _mm512_cmpgt_epi32_mask(kk, lane), mv);
            a1[r] = _mm512_mask_mov_ps(
                a1[r], _mm512_cmpgt_epi32_mask(kk, _mm512_add_epi32(lane, _mm512_set1_epi32(16))), mv);
        }
    }
    __m512 x0 = a0[0], x1 = a1[0]; /* column max over the valid rows */
#pragma GCC unroll 12
    for (int r = 1; r < R; r++)
        if (r < nk) x0 = _mm512_max_ps(x0, a0[r]), x1 = _mm512_max_ps(x1, a1[r]);
    __m512 c0 = _mm512_set1_ps(1.0f), c1 = c0;
    if (t->first) { /* m = the column max (0 where every key is masked) */
        const __m512 lo = _mm512_set1_ps(0.5f * MASKED);
        x0 = _mm512_mask_mov_ps(x0, _mm512_cmp_ps_mask(x0, lo, _CMP_LT_OQ), _mm512_setzero_ps());
        x1 = _mm512_mask_mov_ps(x1, _mm512_cmp_ps_mask(x1, lo, _CMP_LT_OQ), _mm512_setzero_ps());
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) a0[r] = _mm512_sub_ps(a0[r], x0), a1[r] = _mm512_sub_ps(a1[r], x1);
        _mm512_storeu_ps(t->m, x0), _mm512_storeu_ps(t->m + 16, x1);
    } else {
        const __m512 tau = _mm512_set1_ps(TAU);
        __mmask16 u0 = _mm512_cmp_ps_mask(x0, tau, _CMP_GT_OQ), u1 = _mm512_cmp_ps_mask(x1, tau, _CMP_GT_OQ);
        if (u0 | u1) { /* raise m by d = max X on those lanes */
            __m512 d0 = _mm512_maskz_mov_ps(u0, x0), d1 = _mm512_maskz_mov_ps(u1, x1);
#pragma GCC unroll 12
            for (int r = 0; r < R; r++) a0[r] = _mm512_sub_ps(a0[r], d0), a1[r] = _mm512_sub_ps(a1[r], d1);
            _mm512_storeu_ps(t->m, _mm512_add_ps(m0, d0));
            _mm512_storeu_ps(t->m + 16, _mm512_add_ps(m1, d1));
            c0 = exp2_512(_mm512_sub_ps(_mm512_setzero_ps(), d0));
            c1 = exp2_512(_mm512_sub_ps(_mm512_setzero_ps(), d1));
            _mm512_storeu_ps(t->c, _mm512_mul_ps(_mm512_loadu_ps(t->c), c0));
            _mm512_storeu_ps(t->c + 16, _mm512_mul_ps(_mm512_loadu_ps(t->c + 16), c1));
            for (int r = 0; r < done; r++) {
                float *p = t->pt + (size_t)r * QT;
                _mm512_storeu_ps(p, _mm512_mul_ps(_mm512_loadu_ps(p), c0));
                _mm512_storeu_ps(p + 16, _mm512_mul_ps(_mm512_loadu_ps(p + 16), c1));
            }
        }
    }
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
        if (r < nk) {
            __m512 p0 = exp2_512(a0[r]), p1 = exp2_512(a1[r]);
            s0 = _mm512_add_ps(s0, p0), s1 = _mm512_add_ps(s1, p1);
            float *p = t->pt + (size_t)(done + r) * QT;
            _mm512_storeu_ps(p, p0), _mm512_storeu_ps(p + 16, p1);
        }
    _mm512_storeu_ps(t->l, _mm512_fmadd_ps(_mm512_loadu_ps(t->l), c0, s0));
    _mm512_storeu_ps(t->l + 16, _mm512_fmadd_ps(_mm512_loadu_ps(t->l + 16), c1, s1));
}

/* P^T rows 0..nk of the block for one query micro-tile.  kt: room for a
 * last partial tile ([KT][dh], rows past it repeat its last row); vh: the
 * block's V rows, prefetched tile by tile with the next K tile, or NULL. */
static void score_tiles(qtile *t, const float *qp, const float *kh, const float *vh, int64_t kvs,
                        int dh, int nk, int causal, int kq0, float *kt) {
    for (int j = 0; j < nk; j += KT) {
        const int n = nk - j < KT ? nk - j : KT, R = n > 6 ? 12 : 6;
        const float *src = kh + (int64_t)j * kvs;
        int64_t stride = kvs;
        if (vh) {
            if (j + KT < nk) prefetch_rows(src + KT * kvs, kvs, nk - j - KT < KT ? nk - j - KT : KT, dh);
            prefetch_rows(vh + (int64_t)j * kvs, kvs, n, dh);
        }
        if (n < R) {
            for (int r = 0; r < R; r++)
                memcpy(kt + (size_t)r * dh, src + (int64_t)(r < n ? r : n - 1) * kvs, (size_t)dh * sizeof *kt);
            src = kt, stride = dh;
        }
        if (dh == 40 && R == 12) qk_tile(12, t, j, qp, src, stride, 40, n, causal, kq0 + j);
        else if (dh == 40) qk_tile(6, t, j, qp, src, stride, 40, n, causal, kq0 + j);
        else if (R == 12) qk_tile(12, t, j, qp, src, stride, dh, n, causal, kq0 + j);
        else qk_tile(6, t, j, qp, src, stride, dh, n, causal, kq0 + j);
        t->first = 0;
    }
}

/* R rows x NV*16 columns (the last vector masked by ml; a ymm if YL):
 *   dst[r, :] = (c[r] * src[r, :] + sum_{k < bk} P^T[k, r] V[k, :]) * f[r]
 * for r < nrows.  src NULL: zeros; c, f NULL: 1.  pt: P^T column of row 0
 * (row stride QT); v: V row 0 (stride kvs), at this chunk's columns. */
static inline __attribute__((always_inline)) void
pv_tile(const int R, const int NV, const int YL, const float *src, int64_t lds, const float *c,
        float *dst, int64_t ldd, const float *f, int nrows, const float *pt, int bk, const float *v,
        int64_t kvs, __mmask16 ml) {
    __m512 acc[8][5];
    __m256 accy[8];
    const int NZ = YL ? NV - 1 : NV; /* zmm columns */
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 5
        for (int i = 0; i < NZ; i++) acc[r][i] = _mm512_setzero_ps();
        accy[r] = _mm256_setzero_ps();
        if (src) _mm_prefetch((const char *)(src + (int64_t)r * lds), _MM_HINT_T0);
    }
    for (int k = 0; k < bk; k++, pt += QT, v += kvs) {
        __m512 vb[5];
        __m256 vy = _mm256_setzero_ps();
#pragma GCC unroll 5
        for (int i = 0; i < NZ; i++) vb[i] = _mm512_maskz_loadu_ps(i == NV - 1 ? ml : 0xffff, v + 16 * i);
        if (YL) vy = _mm256_maskz_loadu_ps((__mmask8)ml, v + 16 * NZ);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 b = _mm512_set1_ps(pt[r]);
#pragma GCC unroll 5
            for (int i = 0; i < NZ; i++) acc[r][i] = _mm512_fmadd_ps(b, vb[i], acc[r][i]);
            if (YL) accy[r] = _mm256_fmadd_ps(_mm512_castps512_ps256(b), vy, accy[r]);
        }
    }
    /* src added after the sum over this block (not as its start: a
     * blocked sum, whose rounding grows with the block, not with Sk) */
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        if (r >= nrows) break;
        if (src) {
            const float *row = src + (int64_t)r * lds;
            __m512 cr = _mm512_set1_ps(c ? c[r] : 1.0f);
#pragma GCC unroll 5
            for (int i = 0; i < NZ; i++)
                acc[r][i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(i == NV - 1 ? ml : 0xffff, row + 16 * i), cr, acc[r][i]);
            if (YL)
                accy[r] = _mm256_fmadd_ps(_mm256_maskz_loadu_ps((__mmask8)ml, row + 16 * NZ),
                                          _mm512_castps512_ps256(cr), accy[r]);
        }
        float *row = dst + (int64_t)r * ldd;
        __m512 fr = _mm512_set1_ps(f ? f[r] : 1.0f);
#pragma GCC unroll 5
        for (int i = 0; i < NZ; i++)
            _mm512_mask_storeu_ps(row + 16 * i, i == NV - 1 ? ml : 0xffff, f ? _mm512_mul_ps(acc[r][i], fr) : acc[r][i]);
        if (YL)
            _mm256_mask_storeu_ps(row + 16 * NZ, (__mmask8)ml,
                                  f ? _mm256_mul_ps(accy[r], _mm512_castps512_ps256(fr)) : accy[r]);
    }
}

/* pv_tile over the QT rows of one query micro-tile (nrows of them stored)
 * and all dh columns, in chunks: dh 40 as one 8-row tile of 16+16+8,
 * multiples of 80 in 4-row tiles of 5 zmm, the rest in 4-row tiles of up
 * to 4 zmm (the last masked). */
static void pv_qtile(int dh, const float *src, const float *c, float *dst, int64_t ldd,
                     const float *f, int nrows, const float *pt, int bk, const float *v, int64_t kvs) {
#define ARGS(r0, d0)                                                                           \
    src ? src + (int64_t)(r0) * dh + (d0) : NULL, dh, c ? c + (r0) : NULL,                     \
        dst + (int64_t)(r0) * ldd + (d0), ldd, f ? f + (r0) : NULL, nrows - (r0), pt + (r0), bk, \
        v + (d0), kvs
    if (dh == 40) {
        for (int r = 0; r < QT && r < nrows; r += 8) pv_tile(8, 3, 1, ARGS(r, 0), 0xff);
        return;
    }
    int d0 = 0;
    if (dh % 80 == 0)
        for (; d0 < dh; d0 += 80)
            for (int r = 0; r < QT && r < nrows; r += 4) pv_tile(4, 5, 0, ARGS(r, d0), 0xffff);
    for (; d0 < dh; d0 += 64) {
        const int w = dh - d0 < 64 ? dh - d0 : 64, nv = (w + 15) / 16;
        const __mmask16 ml = (__mmask16)((1u << (w - 16 * (nv - 1))) - 1u);
        for (int r = 0; r < QT && r < nrows; r += 4) switch (nv) {
            case 4: pv_tile(4, 4, 0, ARGS(r, d0), ml); break;
            case 3: pv_tile(4, 3, 0, ARGS(r, d0), ml); break;
            case 2: pv_tile(4, 2, 0, ARGS(r, d0), ml); break;
            default: pv_tile(4, 1, 0, ARGS(r, d0), ml); break;
            }
    }
#undef ARGS
}

/* dst[d * QT + i] = scale * src[i * ld + d] for 16 rows i (0 for i >= n),
 * d < dh: 16x16 blocks transposed in registers. */
static void pack_q16(float *dst, const float *src, int64_t ld, int n, int dh, float scale) {
    const __m512 vs = _mm512_set1_ps(scale);
    for (int d0 = 0; d0 < dh; d0 += 16) {
        const int w = dh - d0 < 16 ? dh - d0 : 16;
        const __mmask16 mk = (__mmask16)((1u << w) - 1u);
        __m512 r[16], t[16], c4[4][4];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            r[i] = i < n ? _mm512_maskz_loadu_ps(mk, src + (int64_t)i * ld + d0) : _mm512_setzero_ps();
        /* t[2i], t[2i+1]: rows 2i, 2i+1 interleaved (per 128-bit lane) */
#pragma GCC unroll 8
        for (int i = 0; i < 16; i += 2) {
            t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
        }
        /* c4[g][c], 128-bit lane l: column 4l + c of rows 4g..4g+3 */
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
            __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
            __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
            c4[g][0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
            c4[g][1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
            c4[g][2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
            c4[g][3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
        }
        /* column 4l + c: lane l of c4[0..3][c] */
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512 a = _mm512_shuffle_f32x4(c4[0][c], c4[1][c], 0x88);
            __m512 b = _mm512_shuffle_f32x4(c4[0][c], c4[1][c], 0xdd);
            __m512 e = _mm512_shuffle_f32x4(c4[2][c], c4[3][c], 0x88);
            __m512 g = _mm512_shuffle_f32x4(c4[2][c], c4[3][c], 0xdd);
            r[c] = _mm512_shuffle_f32x4(a, e, 0x88);
            r[4 + c] = _mm512_shuffle_f32x4(b, g, 0x88);
            r[8 + c] = _mm512_shuffle_f32x4(a, e, 0xdd);
            r[12 + c] = _mm512_shuffle_f32x4(b, g, 0xdd);
        }
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            if (j < w) _mm512_storeu_ps(dst + (size_t)(d0 + j) * QT, _mm512_mul_ps(r[j], vs));
    }
}

static void att_pack_q(const att_ctx *A, float *Qp, int i0, int h, int bq) {
    for (int t = 0; t * QT < bq; t++)
        for (int half = 0; half < 2; half++) {
            int j0 = t * QT + 16 * half, n = bq - j0 < 16 ? bq - j0 : 16;
            pack_q16(Qp + (size_t)t * A->dh * QT + 16 * half,
                     A->q + (int64_t)(i0 + j0) * A->q_stride + (int64_t)h * A->dh, A->q_stride,
                     n < 0 ? 0 : n, A->dh, A->qscale);
        }
}

/* O [QT][dh] rows; the factors c are applied only when one is not 1 */
static void att_pv(int dh, float *O, const float *c, int first, const float *l, int last,
                   float *out, int64_t ldo, int nrows, const float *pt, int nk, const float *v,
                   int64_t kvs) {
    int scaled = 0;
    for (int i = 0; i < QT; i++) scaled |= c[i] != 1.0f;
    pv_qtile(dh, first ? NULL : O, scaled ? c : NULL, last ? out : O, last ? ldo : dh,
             last ? l : NULL, last ? nrows : QT, pt, nk, v, kvs);
}

void sdc_avx512_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                          const float *k, const float *v, int kv_stride, int Sq, int Sk, int heads,
                          int dh, float scale, int causal) {
    att_run(be, out, q, q_stride, k, v, kv_stride, Sq, Sk, heads, dh, scale, causal);
}
