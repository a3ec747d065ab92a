/* AArch64 NEON GEMM micro-kernel and F16 / BF16 widening (gemm.c drives).
 * NEON (Advanced SIMD) with FCVTL is baseline on AArch64: no run-time check. */
#include <arm_neon.h>

#include "backends/cpu/cpu_impl.h"
#include "backends/cpu/neon_transpose.h"

#if SDC_GEMM_MR != 6 || SDC_GEMM_NR != 16
#error "gemm_neon.c is written for a 6x16 register tile"
#endif

/* Adds the 6x16 tile r (4 quads per row) to rows i < mr, columns j < nr of c. */
static inline __attribute__((always_inline)) void store_6x16(float32x4_t r[6][4], float *c,
                                                           int64_t ldc, int mr, int nr) {
    if (nr == 16) {
        for (int i = 0; i < mr; i++) {
            float *ci = c + i * ldc;
            for (int q = 0; q < 4; q++)
                vst1q_f32(ci + 4 * q, vaddq_f32(vld1q_f32(ci + 4 * q), r[i][q]));
        }
    } else {
        float t[16];
        for (int i = 0; i < mr; i++) {
            float *ci = c + i * ldc;
            for (int q = 0; q < 4; q++) vst1q_f32(t + 4 * q, r[i][q]);
            for (int j = 0; j < nr; j++) ci[j] += t[j];
        }
    }
}

/* The 24 accumulators (6 rows x 4 quads) as named registers: an array of
 * vectors indexed in the loop would live on the stack. */
#define ACC_DECL                                                                                  \
    float32x4_t c00 = vdupq_n_f32(0.0f), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00,  \
                c12 = c00, c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00,      \
                c31 = c00, c32 = c00, c33 = c00, c40 = c00, c41 = c00, c42 = c00, c43 = c00,      \
                c50 = c00, c51 = c00, c52 = c00, c53 = c00
#define ACC_STORE(c, ldc, mr, nr)                                                                 \
    do {                                                                                          \
        float32x4_t r_[6][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23}, \
                                {c30, c31, c32, c33}, {c40, c41, c42, c43}, {c50, c51, c52, c53}}; \
        store_6x16(r_, c, ldc, mr, nr);                                                           \
    } while (0)
/* c[i][q] += B(k, 4q..4q+3) * A(i, k), A(0..3, k) in a03, A(4..5, k) in a45. */
#define ROW_FMA(i, av, lane, fma)                                                                 \
    c##i##0 = fma(c##i##0, b0, av, lane);                                                         \
    c##i##1 = fma(c##i##1, b1, av, lane);                                                         \
    c##i##2 = fma(c##i##2, b2, av, lane);                                                         \
    c##i##3 = fma(c##i##3, b3, av, lane)
#define FMA_6x16(a03, a45)                                                                        \
    ROW_FMA(0, a03, 0, vfmaq_laneq_f32);                                                          \
    ROW_FMA(1, a03, 1, vfmaq_laneq_f32);                                                          \
    ROW_FMA(2, a03, 2, vfmaq_laneq_f32);                                                          \
    ROW_FMA(3, a03, 3, vfmaq_laneq_f32);                                                          \
    ROW_FMA(4, a45, 0, vfmaq_lane_f32);                                                           \
    ROW_FMA(5, a45, 1, vfmaq_lane_f32)

/* Packed A ([kc][6]): c[6, 16] += A · B with 24 accumulators, 4 quads of B
 * and A(0..5, k) in two registers (fmla by lane): 30 of the 32 vector
 * registers. */
static void kernel_6x16_packed(int kc, const float *a, const float *b, int64_t rs_b, float *c,
                               int64_t ldc, int mr, int nr) {
    ACC_DECL;
    for (int k = 0; k < kc; k++, a += 6, b += rs_b) {
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8),
                    b3 = vld1q_f32(b + 12);
        float32x4_t a03 = vld1q_f32(a);
        float32x2_t a45 = vld1_f32(a + 4);
        FMA_6x16(a03, a45);
    }
    ACC_STORE(c, ldc, mr, nr);
}

/* Any A strides: A(i, k) = ar[i][k * astep], gathered into two registers
 * by lane loads, then as the packed loop. */
static inline __attribute__((always_inline)) void
kernel_6x16_strided(int kc, const float *const ar[6], int64_t astep, const float *b,
                    int64_t rs_b, float *c, int64_t ldc, int mr, int nr) {
    ACC_DECL;
    const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3], *a4 = ar[4], *a5 = ar[5];
    float32x4_t a03 = vdupq_n_f32(0.0f);
    float32x2_t a45 = vdup_n_f32(0.0f);
    for (int64_t k = 0, ka = 0; k < kc; k++, ka += astep, b += rs_b) {
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8),
                    b3 = vld1q_f32(b + 12);
        a03 = vld1q_lane_f32(a0 + ka, a03, 0);
        a03 = vld1q_lane_f32(a1 + ka, a03, 1);
        a03 = vld1q_lane_f32(a2 + ka, a03, 2);
        a03 = vld1q_lane_f32(a3 + ka, a03, 3);
        a45 = vld1_lane_f32(a4 + ka, a45, 0);
        a45 = vld1_lane_f32(a5 + ka, a45, 1);
        FMA_6x16(a03, a45);
    }
    ACC_STORE(c, ldc, mr, nr);
}

/* See sdc_gemm_kernel_fn (cpu_impl.h).  The packed A panel ([kc][6]) loads
 * A(0..5, k) with two loads; A in place (linear, f32 conv weights) and other
 * strides gather it by lane, rows >= mr repeating row mr-1 (computed, not
 * stored).  Both run under test_ops. */
void sdc_gemm_kernel_neon(int kc, const float *a, int64_t rs_a, int64_t cs_a, const float *b,
                          int64_t rs_b, float *c, int64_t ldc, int mr, int nr) {
    if (rs_a == 1 && cs_a == 6) {
        kernel_6x16_packed(kc, a, b, rs_b, c, ldc, mr, nr);
        return;
    }
    const float *r[6];
    for (int i = 0; i < 6; i++) r[i] = a + (i < mr ? i : mr - 1) * rs_a;
    if (cs_a == 1)
        kernel_6x16_strided(kc, r, 1, b, rs_b, c, ldc, mr, nr);
    else
        kernel_6x16_strided(kc, r, cs_a, b, rs_b, c, ldc, mr, nr);
}

/* IEEE half -> float, 8 at a time (FCVTL). */
void sdc_cvt_f16_neon(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src + i));
        vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i < n; i++) dst[i] = sdc_f16_to_f32(src[i]);
}

/* bfloat16 -> float: the 16 bits become the high half (exact). */
void sdc_cvt_bf16_neon(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x8_t h = vld1q_u16(src + i);
        vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
        vst1q_f32(dst + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)));
    }
    for (; i < n; i++) dst[i] = sdc_bf16_to_f32(src[i]);
}

/* 4 values of row `off` .. off+4 as f32. */
static inline float32x4_t load_row4(const float *src_f32, const sdc_weight *w, int64_t off) {
    if (src_f32) return vld1q_f32(src_f32 + off);
    switch (w->dtype) {
    case SDC_DT_F32: return vld1q_f32((const float *)w->data + off);
    case SDC_DT_F16:
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)w->data + off)));
    case SDC_DT_BF16:
        return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)w->data + off), 16));
    default: return vdupq_n_f32(0.0f);
    }
}

/* the first g lanes of v to d */
static inline void store_lanes4(float *d, float32x4_t v, int g) {
    if (g == 4) {
        vst1q_f32(d, v);
        return;
    }
    float t[4];
    vst1q_f32(t, v);
    for (int j = 0; j < g; j++) d[j] = t[j];
}

#define PR_FN sdc_pack_rows_neon
#define PR_L 4
#define PR_VEC float32x4_t
#define PR_LOAD load_row4
#define PR_ZERO() vdupq_n_f32(0.0f)
#define PR_TRANSPOSE sdc_neon_transpose4
#define PR_MASK_T int
#define PR_MASK(g) (g)
#define PR_STORE store_lanes4
#include "backends/cpu/pack_rows_tf.h"
