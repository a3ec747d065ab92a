/* AVX2 + FMA GEMM micro-kernel and F16C / BF16 widening (gemm.c drives). */
#include <immintrin.h>

#include "backends/cpu/avx2_transpose.h"
#include "backends/cpu/cpu_impl.h"

#if SDC_GEMM_MR != 6 || SDC_GEMM_NR != 16
#error "gemm_avx2.c is written for a 6x16 register tile"
#endif

/* c[6, 16] += A[6, kc] · B[kc, 16]: 12 accumulators (6 rows x 2 ymm),
 * 2 loads of B and 6 broadcasts of A per k; A(i, k) = a_i[k * astep],
 * B(k, :) = b + k * bstep.  C's lines are prefetched for writing at the
 * start: where the K loop is blocked (K > 640, gemm.c) C is revisited per
 * K block from beyond L2 (a 512x512 tile is 1 MiB; Zen 1's L2 512 KiB),
 * and the loads at the end otherwise stall ~100+ cycles of a ~3000-cycle
 * call.  UNet linears on Zen 1 (ab_ops, 5 rounds, 2026-11-28) 6638 ->
 * 6509-6546 ms per step, M512 N10240 K1280 alone (1 call, min of 8) 206
 * -> 196 ms; convolutions unchanged. */
static inline __attribute__((always_inline)) void
kernel_6x16(int kc, const float *a0, const float *a1, const float *a2, const float *a3,
            const float *a4, const float *a5, int64_t astep, const float *b, int64_t bstep,
            float *c, int64_t ldc, int mr, int nr) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int i = 0; i < mr; i++) {
        __builtin_prefetch(c + i * ldc, 1, 3);
        __builtin_prefetch(c + i * ldc + nr - 1, 1, 3);
    }
    for (int64_t k = 0, ka = 0; k < kc; k++, ka += astep, b += bstep) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), ai;
        ai = _mm256_broadcast_ss(a0 + ka);
        c00 = _mm256_fmadd_ps(ai, b0, c00);
        c01 = _mm256_fmadd_ps(ai, b1, c01);
        ai = _mm256_broadcast_ss(a1 + ka);
        c10 = _mm256_fmadd_ps(ai, b0, c10);
        c11 = _mm256_fmadd_ps(ai, b1, c11);
        ai = _mm256_broadcast_ss(a2 + ka);
        c20 = _mm256_fmadd_ps(ai, b0, c20);
        c21 = _mm256_fmadd_ps(ai, b1, c21);
        ai = _mm256_broadcast_ss(a3 + ka);
        c30 = _mm256_fmadd_ps(ai, b0, c30);
        c31 = _mm256_fmadd_ps(ai, b1, c31);
        ai = _mm256_broadcast_ss(a4 + ka);
        c40 = _mm256_fmadd_ps(ai, b0, c40);
        c41 = _mm256_fmadd_ps(ai, b1, c41);
        ai = _mm256_broadcast_ss(a5 + ka);
        c50 = _mm256_fmadd_ps(ai, b0, c50);
        c51 = _mm256_fmadd_ps(ai, b1, c51);
    }
    __m256 r[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    if (nr == 16) {
        for (int i = 0; i < mr; i++) {
            float *ci = c + i * ldc;
            _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(ci), r[i][0]));
            _mm256_storeu_ps(ci + 8, _mm256_add_ps(_mm256_loadu_ps(ci + 8), r[i][1]));
        }
    } else {
        float t[16];
        for (int i = 0; i < mr; i++) {
            float *ci = c + i * ldc;
            _mm256_storeu_ps(t, r[i][0]);
            _mm256_storeu_ps(t + 8, r[i][1]);
            for (int j = 0; j < nr; j++) ci[j] += t[j];
        }
    }
}

/* Specialised for the packed panel (a [kc][6], b [kc][16]), A in place
 * (k contiguous, b packed), and any strides. Rows >= mr repeat row mr-1
 * (computed, not stored). */
void sdc_gemm_kernel_avx2(int kc, const float *a, int64_t rs_a, int64_t cs_a, const float *b,
                          int64_t rs_b, float *c, int64_t ldc, int mr, int nr) {
    const float *r[6];
    for (int i = 0; i < 6; i++) r[i] = a + (i < mr ? i : mr - 1) * rs_a;
    if (rs_a == 1 && cs_a == 6 && rs_b == 16)
        kernel_6x16(kc, r[0], r[1], r[2], r[3], r[4], r[5], 6, b, 16, c, ldc, mr, nr);
    else if (cs_a == 1 && rs_b == 16)
        kernel_6x16(kc, r[0], r[1], r[2], r[3], r[4], r[5], 1, b, 16, c, ldc, mr, nr);
    else
        kernel_6x16(kc, r[0], r[1], r[2], r[3], r[4], r[5], cs_a, b, rs_b, c, ldc, mr, nr);
}

void sdc_cvt_f16_avx2(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = sdc_f16_to_f32(src[i]);
}

void sdc_cvt_bf16_avx2(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    for (; i < n; i++) dst[i] = sdc_bf16_to_f32(src[i]);
}

/* 8 values of row `off` .. off+8 as f32. */
static inline __m256 load_row8(const float *src_f32, const sdc_weight *w, int64_t off) {
    if (src_f32) return _mm256_loadu_ps(src_f32 + off);
    switch (w->dtype) {
    case SDC_DT_F32: return _mm256_loadu_ps((const float *)w->data + off);
    case SDC_DT_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w->data + off)));
    case SDC_DT_BF16: {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w->data + off));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    default: return _mm256_setzero_ps();
    }
}

#define PR_FN sdc_pack_rows_avx2
#define PR_L 8
#define PR_VEC __m256
#define PR_LOAD load_row8
#define PR_ZERO _mm256_setzero_ps
#define PR_TRANSPOSE sdc_avx2_transpose8
#define PR_MASK_T __m256i
#define PR_MASK(g)                                                                                 \
    _mm256_cmpgt_epi32(_mm256_set1_epi32(g), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define PR_STORE(d, v, m) _mm256_maskstore_ps(d, m, v)
#include "backends/cpu/pack_rows_tf.h"
