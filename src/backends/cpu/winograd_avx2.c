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

/* F(4x4): the 6-point G of winograd_tf.h's sdc_wino_weight on three vectors */
static inline __attribute__((always_inline)) void g6(__m256 a, __m256 b, __m256 c, __m256 o[]) {
    const __m256 r6 = _mm256_set1_ps(1.0f / 6.0f), r12 = _mm256_set1_ps(1.0f / 12.0f),
                 r24 = _mm256_set1_ps(1.0f / 24.0f), neg = _mm256_set1_ps(-1.0f / 6.0f);
    __m256 ac = _mm256_add_ps(a, c), e = _mm256_fmadd_ps(a, r24, _mm256_mul_ps(c, r6));
    __m256 f = _mm256_mul_ps(b, r12);
    o[0] = _mm256_mul_ps(a, _mm256_set1_ps(0.25f));
    o[1] = _mm256_mul_ps(_mm256_add_ps(ac, b), neg);
    o[2] = _mm256_mul_ps(_mm256_sub_ps(ac, b), neg);
    o[3] = _mm256_add_ps(e, f);
    o[4] = _mm256_sub_ps(e, f);
    o[5] = c;
}

/* F(2x2): the 4-point G of sdc_wino2_weight */
static inline __attribute__((always_inline)) void g4(__m256 a, __m256 b, __m256 c, __m256 o[]) {
    const __m256 half = _mm256_set1_ps(0.5f);
    __m256 ac = _mm256_mul_ps(half, _mm256_add_ps(a, c)), hb = _mm256_mul_ps(half, b);
    o[0] = a;
    o[1] = _mm256_add_ps(ac, hb);
    o[2] = _mm256_sub_ps(ac, hb);
    o[3] = c;
}

/* U = G g G^T of 8 filters by the P-point column transform gcol (g6:
 * F(4x4), g4: F(2x2)): over g's columns, then over the rows' */
typedef void (*gcol_fn)(__m256 a, __m256 b, __m256 c, __m256 o[]);
static inline __attribute__((always_inline)) void weight8(const uint16_t *h, float *u, int64_t xs,
                                                          const int P, gcol_fn gcol) {
    __m256 g[9], hc[3][6];
    taps8_f16(h, g);
    for (int s = 0; s < 3; s++) gcol(g[s], g[3 + s], g[6 + s], hc[s]); /* h = G g */
    for (int r = 0; r < P; r++) { /* row r of h G^T */
        __m256 q[6];
        gcol(hc[0][r], hc[1][r], hc[2][r], q);
        for (int s = 0; s < P; s++) _mm256_storeu_ps(u + (r * P + s) * xs, q[s]);
    }
}

void sdc_wino_weight16_f16_avx2(const uint16_t *h, float *u, int64_t xs) {
    weight8(h, u, xs, 6, g6);
    weight8(h + 72, u + 8, xs, 6, g6);
}

void sdc_wino2_weight16_f16_avx2(const uint16_t *h, float *u, int64_t xs) {
    weight8(h, u, xs, 4, g4);
    weight8(h + 72, u + 8, xs, 4, g4);
}
