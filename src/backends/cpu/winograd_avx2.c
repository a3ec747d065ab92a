/* The Winograd transforms (winograd_tf.h) compiled for AVX2+FMA. */
#define WINO_FN(name) name##_avx2
#include "backends/cpu/winograd_tf.h"

#include "backends/cpu/avx2_transpose.h"

/* ---- the panel path's filter transforms straight from F16 filters ------------
 * As winograd_avx512.c's: sixteen filters of one output channel (channels
 * c .. c+16, 144 halfs in a row) to their transforms U[xi] (16 lanes at
 * u + xi*xs), in registers, eight filters at a time.  AVX2 has no word
 * permute across lanes, so the 72 halfs of eight filters are widened
 * (9 vcvtph2ps) to a stack row and read back as eight rows of nine taps:
 * taps 0-7 by an 8x8 register transpose of the rows, tap 8 by inserts.
 * Replaces the widening pass through sdc_cpu_weight_row and the generic
 * transform's scalar tap gathers and arrays in memory. */

/* g[k] = tap k (ky*3 + kx) of the 8 filters at h (72 halfs, read exactly) */
static inline __attribute__((always_inline)) void taps8_f16(const uint16_t *h, __m256 g[9]) {
    float f[72];
#pragma GCC unroll 9
    for (int i = 0; i < 9; i++)
        _mm256_storeu_ps(f + 8 * i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + 8 * i))));
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) g[j] = _mm256_loadu_ps(f + 9 * j);
    sdc_avx2_transpose8(g);
    g[8] = _mm256_setr_ps(f[8], f[17], f[26], f[35], f[44], f[53], f[62], f[71]);
}

#define WG_V __m256
#define WG_SET1(x) _mm256_set1_ps(x)
#define WG_ADD(a, b) _mm256_add_ps(a, b)
#define WG_SUB(a, b) _mm256_sub_ps(a, b)
#define WG_MUL(a, b) _mm256_mul_ps(a, b)
#define WG_STORE(p, v) _mm256_storeu_ps(p, v)
#include "backends/cpu/winograd_g_simd.h"

/* U of 8 filters (72 halfs at h) to lanes 0-7 of u + xi*xs */
static inline __attribute__((always_inline)) void weight8(const uint16_t *h, float *u, int64_t xs,
                                                          const int P, wg_gcol_fn gcol) {
    __m256 g[9];
    taps8_f16(h, g);
    wg_weight(g, u, xs, P, gcol);
}

void sdc_wino_weight16_f16_avx2(const uint16_t *h, float *u, int64_t xs) {
    weight8(h, u, xs, 6, wg_g6);
    weight8(h + 72, u + 8, xs, 6, wg_g6);
}

void sdc_wino2_weight16_f16_avx2(const uint16_t *h, float *u, int64_t xs) {
    weight8(h, u, xs, 4, wg_g4);
    weight8(h + 72, u + 8, xs, 4, wg_g4);
}
