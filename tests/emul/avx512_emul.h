/* The AVX-512 kernels on a CPU with AVX2 only, for testing them where no
 * AVX-512 CPU is at hand (cmake -DSDC_EMULATE_AVX512=ON; forced into each
 * *_avx512.c by -include): the compiler's own intrinsics are declared
 * first, then SIMDe (libsimde-dev) renames every AVX-512 one to its portable
 * form, and those SIMDe 0.7.4 lacks are defined here, element by element.
 * Arithmetic is the same IEEE single precision (SIMDe's FMA is the AVX2
 * FMA on each half), so results match a real AVX-512 CPU's where the
 * kernels' instructions are exact; only speed differs.  Not for the bf16
 * kernels (gemm_avx512bf16.c), which stay native and unused. */
#ifndef SDC_AVX512_EMUL_H
#define SDC_AVX512_EMUL_H
#include <immintrin.h>
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <string.h>

static inline simde__m512 emu_mm512_maskz_loadu_ps(simde__mmask16 k, const void *p) {
    float v[16] = {0};
    for (int i = 0; i < 16; i++) if ((k >> i) & 1) memcpy(&v[i], (const float *)p + i, 4);
    return simde_mm512_loadu_ps(v);
}
static inline void emu_mm512_mask_storeu_ps(void *p, simde__mmask16 k, simde__m512 a) {
    float v[16];
    simde_mm512_storeu_ps(v, a);
    for (int i = 0; i < 16; i++) if ((k >> i) & 1) memcpy((float *)p + i, &v[i], 4);
}
static inline void emu_mm512_mask_storeu_epi32(void *p, simde__mmask16 k, simde__m512i a) {
    int32_t v[16];
    simde_mm512_storeu_si512(v, a);
    for (int i = 0; i < 16; i++) if ((k >> i) & 1) memcpy((int32_t *)p + i, &v[i], 4);
}
static inline simde__m256 emu_mm256_maskz_loadu_ps(simde__mmask8 k, const void *p) {
    float v[8] = {0};
    for (int i = 0; i < 8; i++) if ((k >> i) & 1) memcpy(&v[i], (const float *)p + i, 4);
    return simde_mm256_loadu_ps(v);
}
static inline void emu_mm256_mask_storeu_ps(void *p, simde__mmask8 k, simde__m256 a) {
    float v[8];
    simde_mm256_storeu_ps(v, a);
    for (int i = 0; i < 8; i++) if ((k >> i) & 1) memcpy((float *)p + i, &v[i], 4);
}
static inline simde__m256i emu_mm256_maskz_loadu_epi16(simde__mmask16 k, const void *p) {
    int16_t v[16] = {0};
    for (int i = 0; i < 16; i++) if ((k >> i) & 1) memcpy(&v[i], (const int16_t *)p + i, 2);
    return simde_mm256_loadu_si256((const void *)v);
}
static inline simde__m512i emu_mm512_maskz_loadu_epi16(simde__mmask32 k, const void *p) {
    int16_t v[32] = {0};
    for (int i = 0; i < 32; i++) if ((k >> i) & 1) memcpy(&v[i], (const int16_t *)p + i, 2);
    return simde_mm512_loadu_si512(v);
}
static inline simde__m512 emu_mm512_cvtph_ps(simde__m256i h) {
    simde__m128i lo = simde_mm256_castsi256_si128(h), hi = simde_mm256_extracti128_si256(h, 1);
    return simde_mm512_insertf32x8(simde_mm512_castps256_ps512(_mm256_cvtph_ps((__m128i)lo)),
                                   _mm256_cvtph_ps((__m128i)hi), 1);
}
#define _mm512_maskz_loadu_ps emu_mm512_maskz_loadu_ps
#define _mm512_mask_storeu_ps emu_mm512_mask_storeu_ps
#define _mm512_mask_storeu_epi32 emu_mm512_mask_storeu_epi32
#define _mm256_maskz_loadu_ps emu_mm256_maskz_loadu_ps
#define _mm256_mask_storeu_ps emu_mm256_mask_storeu_ps
#define _mm256_maskz_loadu_epi16 emu_mm256_maskz_loadu_epi16
#define _mm512_maskz_loadu_epi16 emu_mm512_maskz_loadu_epi16
#define _mm512_cvtph_ps emu_mm512_cvtph_ps
static inline simde__m512i emu_mm512_cvtepu16_epi32(simde__m256i a) {
    uint16_t s[16];
    uint32_t d[16];
    simde_mm256_storeu_si256((void *)s, a);
    for (int i = 0; i < 16; i++) d[i] = s[i];
    return simde_mm512_loadu_si512(d);
}
static inline simde__m512 emu_mm512_shuffle_f32x4(simde__m512 a, simde__m512 b, int imm) {
    float x[16], y[16], r[16];
    simde_mm512_storeu_ps(x, a);
    simde_mm512_storeu_ps(y, b);
    for (int l = 0; l < 4; l++) {
        const float *src = l < 2 ? x : y;
        int sel = (imm >> (2 * l)) & 3;
        memcpy(r + 4 * l, src + 4 * sel, 16);
    }
    return simde_mm512_loadu_ps(r);
}
#define _mm512_cvtepu16_epi32 emu_mm512_cvtepu16_epi32
#define _mm512_shuffle_f32x4(a, b, imm) emu_mm512_shuffle_f32x4(a, b, imm)

#endif
