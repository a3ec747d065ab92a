/* AVX-512F GEMM micro-kernels (14x32 for the driver, 6x16 for attention)
 * and F16C / BF16 widening to 16 lanes (gemm.c drives). */
#include <immintrin.h>

#include "backends/cpu/avx512_transpose.h"
#include "backends/cpu/cpu_impl.h"

/* Walking an sdc_gemm_pf_lines (cpu_impl.h) one cache line per k step:
 * the line at p, the same line of the next row, ...; after the last row
 * the next line of the first. */
typedef struct pf_walk {
    const char *p;
    int64_t rs, back; /* row stride; from the last row to the next line of the first */
    int rows, row, left;
} pf_walk;

static inline __attribute__((always_inline)) void pf_start(pf_walk *w, const sdc_gemm_pf_lines *l) {
    w->p = l->p, w->rs = l->rs, w->rows = l->rows, w->row = 0;
    w->back = 64 - (int64_t)(l->rows - 1) * l->rs;
    w->left = l->p && l->rows > 0 && l->lines > 0 ? l->rows * l->lines : 0;
}

static inline __attribute__((always_inline)) void pf_next(pf_walk *w) {
    w->left--;
    if (++w->row == w->rows) w->row = 0, w->p += w->back;
    else w->p += w->rs;
}

/* One step of both walks: A's line for reading, C's for writing. */
#define PF_STEP(wa, wc)                                                                            \
    do {                                                                                           \
        if ((wa).left) __builtin_prefetch((wa).p, 0, 3), pf_next(&(wa));                           \
        if ((wc).left) __builtin_prefetch((wc).p, 1, 3), pf_next(&(wc));                           \
    } while (0)

/* c[14, 32] += A[14, kc] · B[kc, 32]: 28 accumulators (14 rows x 2 zmm),
 * 2 loads of B and 14 broadcasts of A (memory operands) per k, 28 FMAs.
 * A(i, k) = a[i*rs + k*astep] (rows >= mr repeat row mr-1: computed, not
 * stored; rows >= mr_read are not read), B(k, :) = b + k*bstep.
 * With pf, its lines for the next call are fetched one per k step (see
 * gemm.c for what they are and what it gained). */
#define ROWS14(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)
#define DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
#define FMA(i)                                                                                 \
    {                                                                                          \
        __m512 ai = _mm512_set1_ps(a[o##i + ka]);                                              \
        c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);                                            \
        c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);                                            \
    }
#define OFF(i) const int64_t o##i = (int64_t)(i < mr_read ? i : mr_read - 1) * rs;
#define STORE(i)                                                                               \
    if (i < mr) {                                                                              \
        float *ci = c + (int64_t)i * ldc;                                                      \
        _mm512_mask_storeu_ps(ci, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), c##i##0));  \
        _mm512_mask_storeu_ps(ci + 16, m1,                                                     \
                              _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), c##i##1));     \
    }

static inline __attribute__((always_inline)) void
kernel_14x32(int kc, const float *a, int64_t rs, int64_t astep, const float *b, int64_t bstep,
             float *c, int64_t ldc, int mr_read, int mr, int nr, const sdc_gemm_pf *pf) {
    ROWS14(OFF)
    ROWS14(DECL)
    int64_t k = 0, ka = 0;
    if (pf) { /* the k steps that prefetch, then the plain loop */
        pf_walk wa, wc;
        pf_start(&wa, &pf->a), pf_start(&wc, &pf->c);
        const int64_t n_pf = wa.left > wc.left ? wa.left : wc.left;
        for (; k < kc && k < n_pf; k++, ka += astep, b += bstep) {
            __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
            PF_STEP(wa, wc);
            ROWS14(FMA)
        }
    }
    for (; k < kc; k++, ka += astep, b += bstep) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        ROWS14(FMA)
    }
    __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    ROWS14(STORE)
}
#undef DECL
#undef FMA
#undef OFF
#undef STORE

/* Specialised for the packed panels (a [kc][14], b [kc][32], all 14 rows
 * readable, zero past mr); any other strides take the general form. */
void sdc_gemm_kernel_avx512(int kc, const float *a, int64_t rs_a, int64_t cs_a, const float *b,
                            int64_t rs_b, float *c, int64_t ldc, int mr, int nr) {
    if (rs_a == 1 && cs_a == SDC_AVX512_MR && rs_b == SDC_AVX512_NR)
        kernel_14x32(kc, a, 1, SDC_AVX512_MR, b, SDC_AVX512_NR, c, ldc, SDC_AVX512_MR, mr, nr, NULL);
    else
        kernel_14x32(kc, a, rs_a, cs_a, b, rs_b, c, ldc, mr, mr, nr, NULL);
}

/* The same with the next call's lines prefetched (pf non-NULL). */
void sdc_gemm_kernel_pf_avx512(int kc, const float *a, int64_t rs_a, int64_t cs_a,
                               const float *b, int64_t rs_b, float *c, int64_t ldc, int mr,
                               int nr, const sdc_gemm_pf *pf) {
    if (rs_a == 1 && cs_a == SDC_AVX512_MR && rs_b == SDC_AVX512_NR)
        kernel_14x32(kc, a, 1, SDC_AVX512_MR, b, SDC_AVX512_NR, c, ldc, SDC_AVX512_MR, mr, nr, pf);
    else
        kernel_14x32(kc, a, rs_a, cs_a, b, rs_b, c, ldc, mr, mr, nr, pf);
}

/* c[6, 16] += A[6, kc] · B[kc, 16], one zmm per row; for attention's tiles,
 * which pass packed A ([kc][6] or [kc][BQ] columns) and B in place. */
#define ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define DECL(i) __m512 c##i = _mm512_setzero_ps();
#define OFF(i) const int64_t o##i = (int64_t)(i < mr ? i : mr - 1) * rs_a;
#define FMA(i) c##i = _mm512_fmadd_ps(_mm512_set1_ps(a[o##i + ka]), b0, c##i);
#define STORE(i)                                                                               \
    if (i < mr) {                                                                              \
        float *ci = c + (int64_t)i * ldc;                                                      \
        _mm512_mask_storeu_ps(ci, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), c##i));     \
    }

void sdc_gemm_kernel16_avx512(int kc, const float *a, int64_t rs_a, int64_t cs_a,
                              const float *b, int64_t rs_b, float *c, int64_t ldc, int mr,
                              int nr) {
    ROWS6(OFF)
    ROWS6(DECL)
    /* two k per step into two sets would double the chains; 6 chains of
     * latency 4 on 2 FMA ports keep it near 75% busy, enough here */
    for (int64_t k = 0, ka = 0; k < kc; k++, ka += cs_a, b += rs_b) {
        __m512 b0 = _mm512_loadu_ps(b);
        ROWS6(FMA)
    }
    __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    ROWS6(STORE)
}
#undef DECL
#undef FMA
#undef OFF
#undef STORE

void sdc_cvt_f16_avx512(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m256i h = _mm256_maskz_loadu_epi16(m, src + i);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(h));
    }
}

void sdc_cvt_bf16_avx512(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, src + i));
        _mm512_mask_storeu_ps(dst + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
}

/* 16 values of row `off` + k .. k+16 (those under mask m, the rest 0) as f32. */
static inline __m512 load_row16(const float *src_f32, const sdc_weight *w, int64_t off,
                                __mmask16 m) {
    if (src_f32) return _mm512_maskz_loadu_ps(m, src_f32 + off);
    switch (w->dtype) {
    case SDC_DT_F32: return _mm512_maskz_loadu_ps(m, (const float *)w->data + off);
    case SDC_DT_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w->data + off));
    case SDC_DT_BF16: {
        __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w->data + off);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    default: return _mm512_setzero_ps();
    }
}

/* sdc_gemm_pack_rows on 16x16 blocks: 16 rows' next 16 values loaded (and
 * widened) as 16 zmm, transposed in registers, stored as 16 k-rows of the
 * panel (the scalar form stores each value alone, 32 rows apart: 1.8-2.2
 * ops per value and the panel thrashing L1). */
void sdc_pack_rows_avx512(float *dst, int wp, const float *src_f32, const sdc_weight *w,
                          int64_t ld, int r0, int rows, int k0, int kc) {
    const int panels = (rows + wp - 1) / wp;
    for (int p = 0; p < panels; p++)
        for (int j0 = 0; j0 < wp; j0 += 16) {
            const int g = wp - j0 < 16 ? wp - j0 : 16; /* columns of the panel in this group */
            const __mmask16 ms = (__mmask16)((1u << g) - 1);
            int n = rows - p * wp - j0; /* rows of the source in this group */
            n = n < 0 ? 0 : n > g ? g : n;
            float *d = dst + (int64_t)p * kc * wp + j0;
            const int64_t off = (int64_t)(r0 + p * wp + j0) * ld + k0;
            for (int k = 0; k < kc; k += 16) {
                const int kn = kc - k < 16 ? kc - k : 16;
                const __mmask16 mk = (__mmask16)((1u << kn) - 1);
                __m512i r[16];
                for (int j = 0; j < 16; j++)
                    r[j] = j < n ? _mm512_castps_si512(load_row16(src_f32, w, off + j * ld + k, mk))
                                 : _mm512_setzero_si512();
                sdc_avx512_transpose16(r);
                for (int i = 0; i < kn; i++)
                    _mm512_mask_storeu_ps(d + (int64_t)(k + i) * wp, ms, _mm512_castsi512_ps(r[i]));
            }
        }
}
