/* The bf16 mode's GEMM pieces (AVX512_BF16): a 14x32 micro-kernel on
 * vdpbf16ps and the conversion of packed f32 panels to bf16 pairs.
 *
 * A is converted row by row (a bf16 row of even length is its own pair
 * row: vcvtne2ps2bf16 keeps the order); B's packed f32 panels in place:
 * a pair panel of width w holds, for k2 = 0 .. ceil(kc/2)-1 and j < w, the
 * 32-bit word  bf16(P[2*k2][j]) | bf16(P[2*k2+1][j]) << 16  (P the f32 panel
 * [kc][w], row kc read as 0 when kc is odd), rounded to nearest even.
 * vdpbf16ps then adds a_lo*b_lo + a_hi*b_hi to each f32 lane: the products
 * are exact in f32, the sums rounded as f32 (two per pair). */
#include <immintrin.h>
#include <string.h>

#include "backends/cpu/avx512_transpose.h"
#include "backends/cpu/cpu_impl.h"

/* f32 -> bf16 round to nearest even, in the upper 16 bits of each lane
 * (finite inputs; NaN would round to an infinity or another NaN). */
static inline __m512i rne_hi(__m512 x) {
    __m512i u = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    return _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
}

static inline __m512i pair16(__m512 lo, __m512 hi) {
    __m512i l = _mm512_srli_epi32(rne_hi(lo), 16);
    __m512i h = _mm512_and_si512(rne_hi(hi), _mm512_set1_epi32((int)0xffff0000u));
    return _mm512_or_si512(l, h);
}

void sdc_bf16_pairs_avx512(float *panel, int kc, int w) {
    uint32_t *out = (uint32_t *)(void *)panel;
    for (int k = 0; k < kc; k += 2) {
        const float *r0 = panel + (int64_t)k * w, *r1 = r0 + w;
        int have1 = k + 1 < kc;
        /* both rows are read before the pair row is written: for k = 0 the
         * output overlaps them */
        __m512i p[4];
        int nv = (w + 15) / 16;
        for (int v = 0; v < nv; v++) {
            int n = w - 16 * v < 16 ? w - 16 * v : 16;
            __mmask16 m = (__mmask16)((1u << n) - 1);
            __m512 a = _mm512_maskz_loadu_ps(m, r0 + 16 * v);
            __m512 b = have1 ? _mm512_maskz_loadu_ps(m, r1 + 16 * v) : _mm512_setzero_ps();
            p[v] = pair16(a, b);
        }
        for (int v = 0; v < nv; v++) {
            int n = w - 16 * v < 16 ? w - 16 * v : 16;
            _mm512_mask_storeu_epi32(out + (int64_t)(k / 2) * w + 16 * v, (__mmask16)((1u << n) - 1),
                                     p[v]);
        }
    }
}

void sdc_bf16_row_f32_avx512(uint32_t *dst, const float *src, int kc) {
    int k = 0;
    for (; k + 32 <= kc; k += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + k + 16), _mm512_loadu_ps(src + k));
        _mm512_storeu_si512(dst + k / 2, (__m512i)v);
    }
    if (k < kc) { /* the tail, zero-padded to a whole pair */
        int n = kc - k;
        __mmask16 m0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
        __mmask16 m1 = n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, src + k + 16),
                                         _mm512_maskz_loadu_ps(m0, src + k));
        int words = (n + 1) / 2;
        _mm512_mask_storeu_epi32(dst + k / 2, (__mmask16)((1u << words) - 1), (__m512i)v);
    }
}

void sdc_bf16_row_f16_avx512(uint32_t *dst, const uint16_t *src, int kc) {
    float tmp[32];
    int k = 0;
    for (; k + 32 <= kc; k += 32) {
        __m512 lo = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + k)));
        __m512 hi = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + k + 16)));
        _mm512_storeu_si512(dst + k / 2, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
    if (k < kc) {
        int n = kc - k;
        sdc_cvt_f16_avx512(tmp, src + k, n);
        sdc_bf16_row_f32_avx512(dst + k / 2, tmp, n);
    }
}

void sdc_bf16_panel_rows_avx512(uint32_t *dst, int nr, const sdc_weight *w, int64_t ld, int r0,
                                int rows, int k0, int kc) {
    const int kc2 = (kc + 1) / 2;
    uint32_t tmp[16][SDC_GEMM_KC / 2 + 16];
    float f[SDC_GEMM_KC];
    for (int j0 = 0; j0 < nr; j0 += 16) {
        for (int j = 0; j < 16; j++) {
            int r = j0 + j;
            int64_t off = (int64_t)(r0 + r) * ld + k0;
            if (r >= rows)
                memset(tmp[j], 0, (size_t)kc2 * sizeof tmp[j][0]);
            else if (w->dtype == SDC_DT_F16)
                sdc_bf16_row_f16_avx512(tmp[j], (const uint16_t *)w->data + off, kc);
            else if (w->dtype == SDC_DT_F32)
                sdc_bf16_row_f32_avx512(tmp[j], (const float *)w->data + off, kc);
            else {
                sdc_cvt_bf16_avx512(f, (const uint16_t *)w->data + off, kc);
                sdc_bf16_row_f32_avx512(tmp[j], f, kc);
            }
            for (int k = kc2; k < ((kc2 + 15) & ~15); k++) tmp[j][k] = 0;
        }
        for (int k = 0; k < kc2; k += 16) {
            __m512i r[16];
            for (int j = 0; j < 16; j++) r[j] = _mm512_loadu_si512(&tmp[j][k]);
            sdc_avx512_transpose16(r);
            int n = kc2 - k < 16 ? kc2 - k : 16;
            for (int i = 0; i < n; i++)
                _mm512_storeu_si512(dst + (int64_t)(k + i) * nr + j0, r[i]);
        }
    }
}

/* c[14, 32] += A · B over kc2 pairs: A(i, k2) = a[i*rs_a + k2] (rows >= mr
 * read row mr-1: computed, not stored), b the [kc2][32] pair panel; 28
 * accumulators, 2 loads of B and 14 broadcasts of A per pair. */
#define ROWS14(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)
#define DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
#define DOT(i)                                                                                 \
    {                                                                                          \
        __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[o##i + k]);                           \
        c##i##0 = _mm512_dpbf16_ps(c##i##0, ai, b0);                                           \
        c##i##1 = _mm512_dpbf16_ps(c##i##1, ai, b1);                                           \
    }
#define STORE(i)                                                                               \
    if (i < mr) {                                                                              \
        float *ci = c + (int64_t)i * ldc;                                                      \
        _mm512_mask_storeu_ps(ci, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), c##i##0));  \
        _mm512_mask_storeu_ps(ci + 16, m1,                                                     \
                              _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), c##i##1));     \
    }

#define OFF(i) const int64_t o##i = (int64_t)(i < mr ? i : mr - 1) * rs_a;

void sdc_gemm_kernel_bf16_avx512(int kc2, const uint32_t *a, int64_t rs_a, const uint32_t *b,
                                 float *c, int64_t ldc, int mr, int nr) {
    ROWS14(OFF)
    ROWS14(DECL)
    for (int k = 0; k < kc2; k++, b += SDC_AVX512_NR) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 16);
        ROWS14(DOT)
    }
    __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    ROWS14(STORE)
}
#undef DECL
#undef DOT
#undef OFF
#undef STORE
