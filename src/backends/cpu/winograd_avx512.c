/* The Winograd transforms (winograd_tf.h) compiled for AVX-512. */
#define WINO_FN(name) name##_avx512
#include "backends/cpu/winograd_tf.h"

/* ---- the panel path's filter transforms straight from F16 filters ------------
 * Sixteen filters of one output channel (channels c .. c+16, 144 halfs in
 * a row) to their transforms U[xi] (16 lanes each, stored at u + xi*xs),
 * in registers.  The 9 taps are picked out of the 144 halfs by word
 * permutes (vpermt2w) and widened (vcvtph2ps), instead of a pass that
 * widens the halfs to memory and 9 gathers of stride 9: 5 loads, 15
 * permutes and 10 blends per 16 filters.  Tap pair (2p, 2p+1) comes out
 * as one zmm of 32 words, lane l = filter l & 15, tap 2p + (l >> 4), at
 * word pos = 9 (l & 15) + 2p + (l >> 4) of the 144: from words 0-63 (two
 * zmm), 64-127 or 128-143, by the low 6 bits of pos and a blend. */
#define TAP_POS(p, l) (9 * ((l) & 15) + 2 * (p) + ((l) >> 4))
#define TAP_IDX(p, l) (short)(TAP_POS(p, l) & 63)
#define TAP_ROW(p, L)                                                                          \
    TAP_IDX(p, L + 0), TAP_IDX(p, L + 1), TAP_IDX(p, L + 2), TAP_IDX(p, L + 3), TAP_IDX(p, L + 4), \
        TAP_IDX(p, L + 5), TAP_IDX(p, L + 6), TAP_IDX(p, L + 7)
#define TAP_IDXS(p) {TAP_ROW(p, 0), TAP_ROW(p, 8), TAP_ROW(p, 16), TAP_ROW(p, 24)}
#define TAP_IN(p, l, lo, hi) ((uint32_t)(TAP_POS(p, l) >= (lo) && TAP_POS(p, l) < (hi)) << (l))
#define TAP_M8(p, L, lo, hi)                                                                   \
    (TAP_IN(p, L + 0, lo, hi) | TAP_IN(p, L + 1, lo, hi) | TAP_IN(p, L + 2, lo, hi) |            \
     TAP_IN(p, L + 3, lo, hi) | TAP_IN(p, L + 4, lo, hi) | TAP_IN(p, L + 5, lo, hi) |            \
     TAP_IN(p, L + 6, lo, hi) | TAP_IN(p, L + 7, lo, hi))
#define TAP_MASK(p, lo, hi)                                                                    \
    (TAP_M8(p, 0, lo, hi) | TAP_M8(p, 8, lo, hi) | TAP_M8(p, 16, lo, hi) | TAP_M8(p, 24, lo, hi))

static const short k_tap_idx[5][32] = {TAP_IDXS(0), TAP_IDXS(1), TAP_IDXS(2), TAP_IDXS(3),
                                       TAP_IDXS(4)};
static const uint32_t k_tap_m1[5] = {TAP_MASK(0, 64, 128), TAP_MASK(1, 64, 128),
                                     TAP_MASK(2, 64, 128), TAP_MASK(3, 64, 128),
                                     TAP_MASK(4, 64, 128)};
static const uint32_t k_tap_m2[5] = {TAP_MASK(0, 128, 144), TAP_MASK(1, 128, 144),
                                     TAP_MASK(2, 128, 144), TAP_MASK(3, 128, 144),
                                     TAP_MASK(4, 128, 144)};

/* g[k] = tap k (ky*3 + kx) of the 16 filters at h (144 halfs, read exactly) */
static inline __attribute__((always_inline)) void taps16_f16(const uint16_t *h, __m512 g[9]) {
    const __m512i r0 = _mm512_loadu_si512(h), r1 = _mm512_loadu_si512(h + 32),
                  r2 = _mm512_loadu_si512(h + 64), r3 = _mm512_loadu_si512(h + 96),
                  r4 = _mm512_maskz_loadu_epi16(0xffff, h + 128);
    for (int p = 0; p < 5; p++) {
        const __m512i idx = _mm512_loadu_si512(k_tap_idx[p]);
        __m512i t = _mm512_permutex2var_epi16(r0, idx, r1);
        t = _mm512_mask_mov_epi16(t, k_tap_m1[p], _mm512_permutex2var_epi16(r2, idx, r3));
        t = _mm512_mask_mov_epi16(t, k_tap_m2[p], _mm512_permutexvar_epi16(idx, r4));
        g[2 * p] = _mm512_cvtph_ps(_mm512_castsi512_si256(t));
        if (p < 4) g[2 * p + 1] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(t, 1));
    }
}

#define WG_V __m512
#define WG_SET1(x) _mm512_set1_ps(x)
#define WG_ADD(a, b) _mm512_add_ps(a, b)
#define WG_SUB(a, b) _mm512_sub_ps(a, b)
#define WG_MUL(a, b) _mm512_mul_ps(a, b)
#define WG_STORE(p, v) _mm512_storeu_ps(p, v)
#include "backends/cpu/winograd_g_simd.h"

/* U of the 16 filters (144 halfs at h) to u + xi*xs */
static inline __attribute__((always_inline)) void weight16(const uint16_t *h, float *u, int64_t xs,
                                                           const int P, wg_gcol_fn gcol) {
    __m512 g[9];
    taps16_f16(h, g);
    wg_weight(g, u, xs, P, gcol);
}

void sdc_wino_weight16_f16_avx512(const uint16_t *h, float *u, int64_t xs) {
    weight16(h, u, xs, 6, wg_g6);
}

void sdc_wino2_weight16_f16_avx512(const uint16_t *h, float *u, int64_t xs) {
    weight16(h, u, xs, 4, wg_g4);
}
