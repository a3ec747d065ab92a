/* AArch64 NEON attention: attention_avx2.c's design (FlashAttention tiles,
 * softmax on each score tile in registers, lazy rescale of the running
 * shift) on 32 quad registers, the same 6 x 16 register tile.
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
 * products are the same register tile, 6 rows x 16 lanes (24 quad
 * accumulators, 4 lane quads, the 6 rows' values in the lanes of 2
 * registers, fmla by element): S^T[k, :] = sum_d K[k, d] Q^T[d, :] (rows:
 * keys, K read in place, gathered by lane loads; a last partial key tile
 * is copied) and O^T[d, :] = sum_k V[k, d] P^T[k, :] (rows: head dims, V
 * read in place), so the softmax factors c and 1/l are lane vectors.  Q is
 * packed per task and head as [bq/QT][dh][QT], prescaled by
 * log2(e) * scale.  Transposes in and out: 4x4 blocks (trn1/trn2 on 32-
 * then 64-bit elements).
 * exp2: attention_avx2.c's: x = n + f, |f| <= 1/2, 2^f by
 * attention_avx512.c's degree-5 polynomial, 2^n by exponent bits (n from
 * adding 1.5 * 2^23 + 127); x is clamped to >= -127, where 2^n is +0, so
 * masked keys give exactly 0. */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "backends/cpu/cpu_impl.h"

#define QT 16              /* queries per micro-tile: 4 quads of lanes */
#define QV (QT / 4)        /* quads per lane row */
#define KT 6               /* rows of a register tile: keys (Q K^T), head dims (P V) */

#include "backends/cpu/attention_tiles.h"

static inline float32x4_t exp2_128(float32x4_t x) {
    const float32x4_t magic = vdupq_n_f32(12582912.0f + 127.0f); /* 1.5 * 2^23 + bias */
    x = vmaxq_f32(x, vdupq_n_f32(-127.0f));
    float32x4_t t = vaddq_f32(x, magic); /* low mantissa bits: n + 127 */
    float32x4_t f = vsubq_f32(x, vsubq_f32(t, magic));
    float32x4_t y = vdupq_n_f32(1.327646822377191e-3f);
    y = vfmaq_f32(vdupq_n_f32(9.675541313348105e-3f), y, f);
    y = vfmaq_f32(vdupq_n_f32(5.5507132852204065e-2f), y, f);
    y = vfmaq_f32(vdupq_n_f32(2.4022119724366986e-1f), y, f);
    y = vfmaq_f32(vdupq_n_f32(6.931469670575058e-1f), y, f);
    y = vfmaq_f32(vdupq_n_f32(1.0000000716545216f), y, f);
    return vmulq_f32(y, vreinterpretq_f32_u32(vshlq_n_u32(vreinterpretq_u32_f32(t), 23)));
}

/* Loops over the tile: r over KT rows, g over the QV quads of a row. */
#define FOR_R _Pragma("GCC unroll 6") for (int r = 0; r < KT; r++)
#define FOR_G _Pragma("GCC unroll 4") for (int g = 0; g < QV; g++)
/* a[r][:] += x[:] * (row r's scalar): rows 0..3 in the lanes of s03, rows
 * 4, 5 in those of s45 (24 accumulators + 4 lane quads + 2 = 30 of the 32
 * registers; six scalars in six registers would spill two accumulators) */
#define FMA_ROW(r, x, s, lane, fma) FOR_G a[r][g] = fma(a[r][g], x[g], s, lane)
#define FMA_6xQT(x, s03, s45)                                                                    \
    FMA_ROW(0, x, s03, 0, vfmaq_laneq_f32);                                                      \
    FMA_ROW(1, x, s03, 1, vfmaq_laneq_f32);                                                      \
    FMA_ROW(2, x, s03, 2, vfmaq_laneq_f32);                                                      \
    FMA_ROW(3, x, s03, 3, vfmaq_laneq_f32);                                                      \
    FMA_ROW(4, x, s45, 0, vfmaq_lane_f32);                                                       \
    FMA_ROW(5, x, s45, 1, vfmaq_lane_f32)

/* Keys k0..k0+nk (nk <= KT; KT rows readable) against the QT queries of
 * panel qp ([dh][QT]): P^T rows done..done+nk of the block, m, l and c
 * updated.  kh: key k0's row (stride kvs); causal: kq0 = k0 minus the
 * query index of lane 0 (key k0+r is masked for lane j when kq0 + r > j). */
static inline __attribute__((always_inline)) void
qk_tile(const qtile *t, int done, const float *qp, const float *kh, int64_t kvs, int dh, int nk,
        int causal, int kq0) {
    float32x4_t a[KT][QV], s03 = vdupq_n_f32(0.0f);
    float32x2_t s45 = vdup_n_f32(0.0f);
    FOR_R FOR_G a[r][g] = vdupq_n_f32(0.0f);
    for (int d = 0; d < dh; d++) { /* K(r, d) gathered by lane loads */
        const float *qd = qp + (size_t)d * QT, *kd = kh + d;
        float32x4_t q[QV];
        FOR_G q[g] = vld1q_f32(qd + 4 * g);
        s03 = vld1q_lane_f32(kd, s03, 0);
        s03 = vld1q_lane_f32(kd + kvs, s03, 1);
        s03 = vld1q_lane_f32(kd + 2 * kvs, s03, 2);
        s03 = vld1q_lane_f32(kd + 3 * kvs, s03, 3);
        s45 = vld1_lane_f32(kd + 4 * kvs, s45, 0);
        s45 = vld1_lane_f32(kd + 5 * kvs, s45, 1);
        __asm__("" : "+w"(s03), "+w"(s45)); /* kept as vectors: gcc would split them */
        FMA_6xQT(q, s03, s45);
    }
    float32x4_t m[QV], x[QV], c[QV];
    FOR_G m[g] = vld1q_f32(t->m + 4 * g);
    if (!t->first) /* subtracted here, not as the sums' start: keeps their rounding small */
        FOR_R FOR_G a[r][g] = vsubq_f32(a[r][g], m[g]);
    if (causal) {
        const int32_t lanes[4] = {0, 1, 2, 3};
        const int32x4_t lane = vld1q_s32(lanes);
        const float32x4_t mv = vdupq_n_f32(MASKED);
        FOR_R {
            const int32x4_t kk = vdupq_n_s32(kq0 + r);
            FOR_G a[r][g] = vbslq_f32(vcgtq_s32(kk, vaddq_s32(lane, vdupq_n_s32(4 * g))), mv, a[r][g]);
        }
    }
    FOR_G x[g] = a[0][g]; /* column max over the valid rows */
    _Pragma("GCC unroll 6") for (int r = 1; r < KT; r++)
        if (r < nk) FOR_G x[g] = vmaxq_f32(x[g], a[r][g]);
    FOR_G c[g] = vdupq_n_f32(1.0f);
    if (t->first) { /* m = the column max (0 where every key is masked) */
        const float32x4_t lo = vdupq_n_f32(0.5f * MASKED);
        FOR_G x[g] = vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(x[g]), vcltq_f32(x[g], lo)));
        FOR_R FOR_G a[r][g] = vsubq_f32(a[r][g], x[g]);
        FOR_G vst1q_f32(t->m + 4 * g, x[g]);
    } else {
        const float32x4_t tau = vdupq_n_f32(TAU);
        uint32x4_t u[QV], any = vdupq_n_u32(0);
        FOR_G u[g] = vcgtq_f32(x[g], tau), any = vorrq_u32(any, u[g]);
        if (vmaxvq_u32(any)) { /* raise m by d = max X on those lanes */
            float32x4_t dv[QV];
            FOR_G dv[g] = vreinterpretq_f32_u32(vandq_u32(u[g], vreinterpretq_u32_f32(x[g])));
            FOR_R FOR_G a[r][g] = vsubq_f32(a[r][g], dv[g]);
            FOR_G {
                vst1q_f32(t->m + 4 * g, vaddq_f32(m[g], dv[g]));
                c[g] = exp2_128(vnegq_f32(dv[g]));
                vst1q_f32(t->c + 4 * g, vmulq_f32(vld1q_f32(t->c + 4 * g), c[g]));
            }
            for (int r = 0; r < done; r++) {
                float *p = t->pt + (size_t)r * QT;
                FOR_G vst1q_f32(p + 4 * g, vmulq_f32(vld1q_f32(p + 4 * g), c[g]));
            }
        }
    }
    float32x4_t s[QV];
    FOR_G s[g] = vdupq_n_f32(0.0f);
    FOR_R if (r < nk) {
        float *p = t->pt + (size_t)(done + r) * QT;
        FOR_G {
            const float32x4_t e = exp2_128(a[r][g]);
            s[g] = vaddq_f32(s[g], e);
            vst1q_f32(p + 4 * g, e);
        }
    }
    FOR_G vst1q_f32(t->l + 4 * g, vfmaq_f32(s[g], vld1q_f32(t->l + 4 * g), c[g]));
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
    float32x4_t a[KT][QV];
#define FOR_RR _Pragma("GCC unroll 6") for (int r = 0; r < R; r++)
    FOR_RR FOR_G a[r][g] = vdupq_n_f32(0.0f);
    for (int k = 0; k < bk; k++, pt += QT, v += kvs) {
        float32x4_t p[QV];
        FOR_G p[g] = vld1q_f32(pt + 4 * g);
        if (R == KT) { /* V(k, d0..d0+5) in two loads */
            const float32x4_t v03 = vld1q_f32(v);
            const float32x2_t v45 = vld1_f32(v + 4);
            FMA_6xQT(p, v03, v45);
        } else {
            FOR_RR {
                const float b = v[r];
                FOR_G a[r][g] = vfmaq_n_f32(a[r][g], p[g], b);
            }
        }
    }
    /* O^T added after the sum over this block (not as its start: a blocked
     * sum, whose rounding grows with the block, not with Sk) */
    if (c) {
        float32x4_t cv[QV];
        FOR_G cv[g] = vld1q_f32(c + 4 * g);
        FOR_RR FOR_G a[r][g] = vfmaq_f32(a[r][g], vld1q_f32(ot + r * QT + 4 * g), cv[g]);
    }
    if (f) {
        float32x4_t fv[QV];
        FOR_G fv[g] = vld1q_f32(f + 4 * g);
        FOR_RR FOR_G a[r][g] = vmulq_f32(a[r][g], fv[g]);
    }
    FOR_RR FOR_G vst1q_f32(ot + r * QT + 4 * g, a[r][g]);
#undef FOR_RR
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

/* dst[j * ldd + i] = s * src[i * lds + j] for i < rows, j < cols: 4x4
 * blocks transposed in registers, the edges one by one. */
static void transpose_scaled(float *dst, int64_t ldd, const float *src, int64_t lds, int rows,
                             int cols, float s) {
    int i0 = 0;
    for (; i0 + 4 <= rows; i0 += 4) {
        int j0 = 0;
        for (; j0 + 4 <= cols; j0 += 4) {
            const float *a = src + (int64_t)i0 * lds + j0;
            const float32x4_t r0 = vld1q_f32(a), r1 = vld1q_f32(a + lds),
                              r2 = vld1q_f32(a + 2 * lds), r3 = vld1q_f32(a + 3 * lds);
            /* t0 = (r0[0] r1[0] r0[2] r1[2]), t1 = (r0[1] r1[1] r0[3] r1[3]), t2, t3 of r2, r3 */
            const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1)),
                              t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1)),
                              t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3)),
                              t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));
            float *b = dst + (int64_t)j0 * ldd + i0;
            vst1q_f32(b, vmulq_n_f32(vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)), s));
            vst1q_f32(b + ldd, vmulq_n_f32(vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)), s));
            vst1q_f32(b + 2 * ldd, vmulq_n_f32(vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)), s));
            vst1q_f32(b + 3 * ldd, vmulq_n_f32(vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)), s));
        }
        for (int i = i0; i < i0 + 4; i++)
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

void sdc_neon_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                        const float *k, const float *v, int kv_stride, int Sq, int Sk, int heads,
                        int dh, float scale, int causal) {
    att_run(be, out, q, q_stride, k, v, kv_stride, Sq, Sk, heads, dh, scale, causal);
}
