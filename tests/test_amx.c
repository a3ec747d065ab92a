/* The AMX tile layer and the bf16 mode's AMX GEMM (amx_tile.h), on every
 * machine through the emulation, and on real tiles where the CPU has
 * AMX-BF16.
 *
 * 1. TDPBF16PS emulated (through LDTILECFG, TILELOADD, TILESTORED) against
 *    an independent scalar model of the SDM's pseudo-code (fmaf from libm,
 *    DAZ and FTZ applied around it): bit for bit, NaN for NaN, on random
 *    tiles with denormal, infinite, NaN, overflowing and underflowing
 *    values, full and partial shapes.
 * 2. The micro-kernel (emulated) against the same scalar model run over its
 *    zero-padded tiles: bit for bit on random mr, nr, kc2, strides.
 * 3. The portable bf16 packers against the obvious definition (round to
 *    nearest even), their round trips, and (with AVX512_BF16) against the
 *    AVX-512 packers bit for bit.
 * 4. The bf16 mode on emulated tiles (SDC_AMX=emulate) against a double
 *    reference on operands rounded to bf16: linear with and without bias
 *    (F32, F16, BF16) and residual, on edge shapes (M, N, K not multiples of
 *    16 or 32, K odd, 1) and SD 1.x's real shapes (rows sliced); the 1x1,
 *    im2col and stride-2 convolutions against the reference backend on
 *    rounded operands.  Only the f32 summation order differs: TOL_GEMM.
 * 5. The mode's attention on emulated tiles against a double reference on
 *    Q, K, V rounded to bf16: where the keys fit one block (<= 256) the
 *    reference also rounds the softmax weights to bf16 as the kernel does
 *    (TOL_ATT_EXACT: summation order and exp2's polynomial); across blocks
 *    the kernel rounds weights shifted by each block's running maximum,
 *    which the reference does not model (TOL_ATT); against the f32
 *    attention, what bf16 costs (TOL_ATT_F32).  Edge shapes (odd head
 *    dims, partial tiles and blocks, causal masks across tiles, blocks and
 *    tasks, strided fused rows, peaked scores that move the maximum) and
 *    SD 1.x's shapes (queries sliced).
 * 6. Where amx_bf16 is present and the OS grants it: the real kernel and the
 *    real bf16 mode against the emulated ones, bit for bit (else skipped
 *    with a note). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/cpu/amx_tile.h"
#include "backends/cpu/cpu_features.h"
#include "backends/cpu/cpu_impl.h"
#include "harness.h"

#define TOL_GEMM 1e-6 /* rel L2 vs the double reference on bf16 operands */
#define TOL_CONV 1e-5 /* vs the reference backend's f32 sums (as test_bf16) */
/* attention, one key block, vs the model of its roundings: a weight whose
 * exp2 lands within the polynomial's 7.5e-8 of a bf16 rounding boundary
 * rounds the other way (2^-8 of that weight); over few keys that shows */
#define TOL_ATT_EXACT 1e-4
#define TOL_ATT 4e-3       /* attention across key blocks, weights unrounded in the reference */
#define TOL_ATT_F32 2e-2   /* attention vs f32 attention */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* A bf16 value: mostly moderate normals, some specials (`wild` in 0..100:
 * the percentage of zeros, denormals, infinities, NaNs and exponents from
 * the whole range, whose products overflow or underflow). */
static uint16_t rnd_bf16(int wild) {
    const uint16_t sign = (uint16_t)((rnd() & 1) << 15), man = (uint16_t)(rnd() & 0x7f);
    if ((int)(rnd() % 100) >= wild) return sign | (uint16_t)((127 - 6 + rnd() % 12) << 7) | man;
    switch (rnd() % 6) {
    case 0:
        return sign; /* +-0 */
    case 1:
        return sign | (man ? man : 1); /* denormal */
    case 2:
        return sign | 0x7f80; /* +-inf */
    case 3:
        return sign | 0x7f80 | (man ? man : 0x40); /* NaN */
    case 4:
        return sign | (uint16_t)((1 + rnd() % 40) << 7) | man; /* tiny: products flush */
    default:
        return sign | (uint16_t)((1 + rnd() % 254) << 7) | man;
    }
}

/* An f32 accumulator value alike (denormals included: DAZ on C). */
static float rnd_c(int wild) {
    if ((int)(rnd() % 100) >= wild) return (float)((int)(rnd() % 2001) - 1000) / 256.0f;
    switch (rnd() % 4) {
    case 0:
        return from_bits((rnd() & 0x80000000u) | (rnd() & 0x7fffff)); /* denormal, 0 */
    case 1:
        return from_bits((rnd() & 0x80000000u) | 0x7f800000u); /* inf */
    case 2:
        return from_bits((rnd() & 0x80000000u) | (1 + rnd() % 254) << 23 | (rnd() & 0x7fffff));
    default:
        return from_bits((rnd() & 0x80000000u) | 0x7fc00000u | (rnd() & 0x3fffff));
    }
}

/* ---- the scalar model (the SDM's pseudo-code, fmaf based) ---------------- */

static float m_daz(float x) {
    return fpclassify(x) == FP_SUBNORMAL ? copysignf(0.0f, x) : x;
}
/* FTZ: a result below 2^-126 after rounding is zero of its sign (the
 * emulation also flushes the 2^-151-wide band that rounds up to 2^-126
 * only on the denormal grid; random data never lands there) */
static float m_ftz(float r) {
    return fabsf(r) < 0x1p-126f ? copysignf(0.0f, r) : r;
}
static float m_fma(float x, float y, float acc) {
    return m_ftz(fmaf(m_daz(x), m_daz(y), m_daz(acc)));
}
static float m_add(float a, float b) {
    return m_ftz(m_daz(a) + m_daz(b));
}
static float m_bf(uint16_t h) {
    return from_bits((uint32_t)h << 16);
}

/* C[M][N] (row stride ldc floats) += A[M][K pairs] . B[K][N pairs] as one
 * TDPBF16PS: a (row stride lda words), b (row stride ldb words). */
static void model_tdp(float *c, int ldc, const uint32_t *a, int lda, const uint32_t *b, int ldb,
                      int M, int N, int K) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float e = 0.0f, o = 0.0f;
            for (int k = 0; k < K; k++) {
                const uint32_t x = a[m * lda + k], y = b[k * ldb + n];
                e = m_fma(m_bf((uint16_t)x), m_bf((uint16_t)y), e);
                o = m_fma(m_bf((uint16_t)(x >> 16)), m_bf((uint16_t)(y >> 16)), o);
            }
            c[m * ldc + n] = m_add(c[m * ldc + n], m_add(e, o));
        }
}

static int same(float x, float y) {
    return (isnan(x) && isnan(y)) || bits(x) == bits(y);
}

static int count_diff(const float *x, const float *y, int64_t n, int64_t *first) {
    int d = 0;
    for (int64_t i = 0; i < n; i++)
        if (!same(x[i], y[i]) && d++ == 0 && first) *first = i;
    return d;
}

/* ---- 1. the instruction ---------------------------------------------------- */

static void tdp_case(int M, int N, int K, int wild) {
    uint32_t a[16 * 16], b[16 * 16];
    float c[16 * 16], want[16 * 16], got[16 * 16];
    for (int i = 0; i < 256; i++) {
        a[i] = rnd_bf16(wild) | (uint32_t)rnd_bf16(wild) << 16;
        b[i] = rnd_bf16(wild) | (uint32_t)rnd_bf16(wild) << 16;
        c[i] = want[i] = rnd_c(wild);
    }
    sdc_amx_cfg cfg = {0};
    cfg.palette = 1;
    cfg.rows[0] = (uint8_t)M, cfg.colsb[0] = (uint16_t)(4 * N); /* C */
    cfg.rows[1] = (uint8_t)M, cfg.colsb[1] = (uint16_t)(4 * K); /* A */
    cfg.rows[2] = (uint8_t)K, cfg.colsb[2] = (uint16_t)(4 * N); /* B */
    sdc_amx_emu_loadconfig(&cfg);
    sdc_amx_emu_load(0, c, 64), sdc_amx_emu_load(1, a, 64), sdc_amx_emu_load(2, b, 64);
    sdc_amx_emu_dpbf16ps(0, 1, 2);
    memcpy(got, c, sizeof got);
    sdc_amx_emu_store(0, got, 64);
    sdc_amx_emu_release();
    model_tdp(want, 16, a, 16, b, 16, M, N, K);
    int64_t first = 0;
    const int d = count_diff(got, want, 256, &first);
    CHECKF(d == 0, "TDPBF16PS %dx%dx%d wild %d: %d of 256 differ, first [%d][%d]: %a vs %a", M, N,
           K, wild, d, (int)(first / 16), (int)(first % 16), got[first], want[first]);
}

static void test_tdp(void) {
    for (int r = 0; r < 300; r++)
        tdp_case(16, 16, 16, r < 100 ? 0 : r < 200 ? 10 : 40);
    for (int r = 0; r < 200; r++)
        tdp_case(1 + rnd() % 16, 1 + rnd() % 16, 1 + rnd() % 16, 20);
    /* the scalar pieces, on values picked to flush and to overflow */
    CHECK(bits(sdc_amx_emu_fma(0x1p-70f, 0x1p-70f, 0.0f)) == 0);            /* product tiny: +0 */
    CHECK(bits(sdc_amx_emu_fma(-0x1p-70f, 0x1p-70f, 0.0f)) == 0x80000000u); /* -0 */
    CHECK(sdc_amx_emu_fma(0x1p-63f, 0x1p-63f, 0.0f) == 0x1p-126f);          /* FLT_MIN stays */
    CHECK(sdc_amx_emu_fma(1.0f, 1.0f, 0x1p-130f) == 1.0f);                  /* DAZ on acc */
    CHECK(isinf(sdc_amx_emu_fma(0x1p127f, 4.0f, 0.0f)));
    /* 3 * 2^127 overflows f32, the fused sum does not: 2^127 + 2^104 */
    CHECK(sdc_amx_emu_fma(0x1p127f, 3.0f, -0x1.fffffep127f) == 0x1.000002p127f);
    CHECK(isnan(sdc_amx_emu_add(INFINITY, -INFINITY)));
    /* FTZ at the normal boundary, tininess after rounding (unbounded
     * exponent): 2^-126 - 1.5 * 2^-151 rounds to 2^-126 - 2^-150, tiny: 0
     * (the denormal grid would round it up to 2^-126); 2^-126 - 2^-151, a
     * tie, rounds to even 2^-126: kept; 2^-126 - 2^-152 too */
    CHECK(bits(sdc_amx_emu_fma(-0x1.8p-75f, 0x1p-76f, 0x1p-126f)) == 0);
    CHECK(sdc_amx_emu_fma(-0x1p-75f, 0x1p-76f, 0x1p-126f) == 0x1p-126f);
    CHECK(sdc_amx_emu_fma(-0x1p-76f, 0x1p-76f, 0x1p-126f) == 0x1p-126f);
}

/* One element through a kernel: C = 0 + (e + o) with the even chain
 * e = fma(-1.5 * 2^-75, 2^-76, fma(2^-63, 2^-63, 0)) = the FTZ window above
 * (0 by the SDM's FTZ, 2^-126 if tininess were judged on the denormal
 * grid): what the hardware does there. */
static float probe_ftz_window(void (*fn)(int, const uint32_t *, int64_t, const uint32_t *, float *,
                                         int64_t, int, int),
                              void (*begin)(void), void (*end)(void)) {
    uint32_t a[2] = {bits(0x1p-63f) >> 16, bits(-0x1.8p-75f) >> 16};
    uint32_t b[2 * SDC_AMX_NR] = {0};
    b[0] = bits(0x1p-63f) >> 16, b[SDC_AMX_NR] = bits(0x1p-76f) >> 16;
    float c = 0.0f;
    begin();
    fn(2, a, 2, b, &c, 1, 1, 1);
    end();
    return c;
}

/* ---- 2. the micro-kernel ------------------------------------------------ */

/* The kernel's arithmetic, scalar: per 16 pairs (the last zero-padded) one
 * TDPBF16PS step on each element. */
static void model_kernel(int kc2, const uint32_t *a, int64_t rs_a, const uint32_t *b, float *c,
                         int64_t ldc, int mr, int nr) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float acc = c[i * ldc + j];
            for (int k0 = 0; k0 < kc2; k0 += 16) {
                float e = 0.0f, o = 0.0f;
                for (int k = k0; k < k0 + 16; k++) {
                    const uint32_t x = k < kc2 ? a[i * rs_a + k] : 0,
                                   y = k < kc2 ? b[k * SDC_AMX_NR + j] : 0;
                    e = m_fma(m_bf((uint16_t)x), m_bf((uint16_t)y), e);
                    o = m_fma(m_bf((uint16_t)(x >> 16)), m_bf((uint16_t)(y >> 16)), o);
                }
                acc = m_add(acc, m_add(e, o));
            }
            c[i * ldc + j] = acc;
        }
}

typedef void (*kern_fn)(int, const uint32_t *, int64_t, const uint32_t *, float *, int64_t, int,
                        int);

/* One random kernel call: a and b exactly as large as the call reads (the
 * sanitizer build sees any read beyond); the outputs of `fn` in *out and
 * the model's in *ref (malloc'ed, mr rows of ldc: columns past nr must come
 * back untouched); returns their length. */
static int64_t kernel_case(kern_fn fn, void (*begin)(void), void (*end)(void), int mr, int nr,
                           int kc2, int wild, float **out, float **ref) {
    const int64_t rs_a = kc2 + (int64_t)(rnd() % 3) * 16 + (rnd() & 1), ldc = nr + rnd() % 40;
    uint32_t *a = malloc(sizeof *a * (size_t)((mr - 1) * rs_a + kc2 + 1));
    uint32_t *b = malloc(sizeof *b * (size_t)(kc2 * SDC_AMX_NR + 1));
    float *c = malloc(sizeof *c * (size_t)(mr * ldc)), *r = malloc(sizeof *r * (size_t)(mr * ldc));
    if (!a || !b || !c || !r) abort();
    for (int64_t i = 0; i < (mr - 1) * rs_a + kc2; i++)
        a[i] = rnd_bf16(wild) | (uint32_t)rnd_bf16(wild) << 16;
    for (int i = 0; i < kc2 * SDC_AMX_NR; i++)
        b[i] = rnd_bf16(wild) | (uint32_t)rnd_bf16(wild) << 16;
    for (int64_t i = 0; i < mr * ldc; i++)
        c[i] = r[i] = rnd_c(wild);
    begin();
    fn(kc2, a, rs_a, b, c, ldc, mr, nr);
    end();
    model_kernel(kc2, a, rs_a, b, r, ldc, mr, nr);
    free(a), free(b);
    *out = c, *ref = r;
    return (int64_t)mr * ldc; /* floats in each */
}

static void test_kernel_emulated(void) {
    CHECK(bits(probe_ftz_window(sdc_gemm_kernel_bf16_amx_emul, sdc_amx_begin_emul,
                                sdc_amx_end_emul)) == 0);
    static const int fixed[][3] = {{32, 32, 16}, {32, 32, 128},    {1, 1, 1},   {16, 16, 16},
                                   {17, 17, 17}, {31, 33 - 1, 15}, {32, 5, 80}, {7, 32, 112},
                                   {16, 32, 0},  {32, 16, 33}};
    int cases = 0, bad = 0;
    for (int r = 0; r < 60; r++) {
        int mr, nr, kc2;
        if (r < (int)(sizeof fixed / sizeof *fixed))
            mr = fixed[r][0], nr = fixed[r][1], kc2 = fixed[r][2];
        else
            mr = 1 + rnd() % 32, nr = 1 + rnd() % 32, kc2 = 1 + rnd() % 100;
        float *got, *want;
        const int wild = r % 3 == 0 ? 0 : 15;
        const int64_t n = kernel_case(sdc_gemm_kernel_bf16_amx_emul, sdc_amx_begin_emul,
                                      sdc_amx_end_emul, mr, nr, kc2, wild, &got, &want);
        int64_t first = 0;
        const int d = count_diff(got, want, n, &first);
        cases++;
        if (d) bad++;
        CHECKF(d == 0, "kernel mr %d nr %d kc2 %d: %d differ (first at %lld: %a vs %a)", mr, nr,
               kc2, d, (long long)first, got[first], want[first]);
        free(got), free(want);
    }
    printf("  emulated kernel vs scalar model: %d cases, %d with a difference\n", cases, bad);
}

/* ---- 3. the packers --------------------------------------------------------- */

static uint32_t want_bf16(float f) {
    return t_bf16_bits(f);
}

static void test_packers(void) {
    enum { KC = 37, W = 32 };
    float src[KC], panel[KC * W], orig[KC * W];
    uint32_t row[(KC + 1) / 2];
    for (int k = 0; k < KC; k++)
        src[k] = t_randf() * 100.0f;
    src[3] = from_bits(0x3f808000u); /* a tie: rounds to even (down) */
    src[4] = from_bits(0x3f818000u); /* a tie: rounds to even (up) */
    sdc_bf16_row_f32_generic(row, src, KC);
    int bad = 0;
    for (int k = 0; k < KC; k++)
        bad += (k & 1 ? row[k / 2] >> 16 : row[k / 2] & 0xffff) != want_bf16(src[k]);
    bad += row[KC / 2] >> 16 != 0; /* the odd tail's pad */
    CHECKF(bad == 0, "bf16_row_f32_generic: %d wrong", bad);
    CHECK((row[1] >> 16) == 0x3f80 && (row[2] & 0xffff) == 0x3f82); /* src[3], src[4] */
    /* f16 rows: exact widening, then as f32 */
    uint16_t h[KC];
    for (int k = 0; k < KC; k++)
        h[k] = sdc_f32_to_f16(src[k] / 64.0f);
    sdc_bf16_row_f16_generic(row, h, KC);
    bad = 0;
    for (int k = 0; k < KC; k++)
        bad += (k & 1 ? row[k / 2] >> 16 : row[k / 2] & 0xffff) != want_bf16(sdc_f16_to_f32(h[k]));
    CHECKF(bad == 0, "bf16_row_f16_generic: %d wrong", bad);
    /* pair panels in place, and back */
    for (int i = 0; i < KC * W; i++)
        panel[i] = orig[i] = t_randf();
    sdc_bf16_pairs_generic(panel, KC, W);
    const uint32_t *p = (const uint32_t *)(const void *)panel;
    bad = 0;
    for (int k = 0; k < KC + 1; k++)
        for (int j = 0; j < W; j++) {
            const uint32_t w = p[(k / 2) * W + j], got = k & 1 ? w >> 16 : w & 0xffff;
            bad += got != (k < KC ? want_bf16(orig[k * W + j]) : 0);
        }
    CHECKF(bad == 0, "bf16_pairs_generic round trip: %d wrong", bad);
    /* weight rows -> the pair panel of W^T, rows past `rows` zero */
    const sdc_dtype dts[3] = {SDC_DT_F32, SDC_DT_F16, SDC_DT_BF16};
    for (int d = 0; d < 3; d++) {
        enum { R = 20, LD = 50 };
        float wf[R * LD];
        for (int i = 0; i < R * LD; i++)
            wf[i] = t_randf();
        sdc_weight w = t_weight_make(dts[d], wf, R * LD);
        uint32_t pr[(KC + 1) / 2 * W];
        sdc_bf16_panel_rows_generic(pr, W, &w, LD, 3, R - 3, 5, KC);
        bad = 0;
        for (int k = 0; k < KC + 1; k++)
            for (int j = 0; j < W; j++) {
                const uint32_t v = pr[(k / 2) * W + j], got = k & 1 ? v >> 16 : v & 0xffff;
                const uint32_t e =
                    k < KC && j < R - 3 ? want_bf16(sdc_weight_get(&w, (3 + j) * LD + 5 + k)) : 0;
                bad += got != e;
            }
        CHECKF(bad == 0, "bf16_panel_rows_generic %s: %d wrong", sdc_dtype_name(dts[d]), bad);
#if defined(__x86_64__) || defined(__i386__) /* the AVX512_BF16 packers exist */
        if (sdc_cpu_features_get()->avx512_bf16 && sdc_cpu_isa_supported(SDC_ISA_AVX512)) {
            uint32_t q[(KC + 1) / 2 * W];
            sdc_bf16_panel_rows_avx512(q, W, &w, LD, 3, R - 3, 5, KC);
            CHECKF(memcmp(q, pr, sizeof q) == 0, "panel_rows generic vs avx512 (%s)",
                   sdc_dtype_name(dts[d]));
        }
#endif
        t_weight_free(&w);
    }
#if defined(__x86_64__) || defined(__i386__)
    if (sdc_cpu_features_get()->avx512_bf16 && sdc_cpu_isa_supported(SDC_ISA_AVX512)) {
        uint32_t q[(KC + 1) / 2];
        sdc_bf16_row_f32_generic(row, src, KC);
        sdc_bf16_row_f32_avx512(q, src, KC);
        CHECK(memcmp(q, row, sizeof q) == 0);
        float p2[KC * W];
        memcpy(p2, orig, sizeof p2);
        memcpy(panel, orig, sizeof panel);
        sdc_bf16_pairs_generic(panel, KC, W);
        sdc_bf16_pairs_avx512(p2, KC, W);
        CHECK(memcmp(p2, panel, (KC + 1) / 2 * W * 4) == 0);
        printf("  generic packers = AVX512_BF16 packers, bit for bit\n");
    }
#endif
}

/* ---- 4. the bf16 mode on emulated tiles --------------------------------- */

static sdc_backend *g_ref, *g_emu, *g_hw;

static sdc_backend *bf16_backend(const char *amx) {
    if (amx)
        setenv("SDC_AMX", amx, 1);
    else
        unsetenv("SDC_AMX");
    sdc_backend *be = sdc_backend_cpu_create(0, 0);
    if (be && sdc_backend_cpu_set_bf16(be, 1) != SDC_OK) {
        be->free(be);
        be = NULL;
    }
    unsetenv("SDC_AMX");
    return be;
}

static float bf16r(float f) {
    return from_bits((uint32_t)t_bf16_bits(f) << 16);
}

static float *fbuf(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) abort();
    return p;
}

static double g_worst_linear;

/* y = x W^T + b + acc on be, against the double reference on bf16 x, W */
static void check_linear(sdc_backend *be, int M, int N, int K, sdc_dtype dt, int bias, int acc,
                         const char *tag) {
    float *x = fbuf((size_t)M * K), *wf = fbuf((size_t)N * K), *bf = fbuf((size_t)N);
    float *a = acc ? fbuf((size_t)M * N) : NULL, *y = fbuf((size_t)M * N),
          *ye = fbuf((size_t)M * N);
    t_rand_fill(x, (size_t)M * K, 1.0f), t_rand_fill(wf, (size_t)N * K, 0.3f),
        t_rand_fill(bf, N, 1.0f);
    if (a) t_rand_fill(a, (size_t)M * N, 1.0f);
    sdc_weight W = t_weight_make(dt, wf, (int64_t)N * K), b = t_weight_make(dt, bf, N);
    be->linear(be, y, x, &W, bias ? &b : NULL, a, M, N, K);
    float *xr = fbuf((size_t)M * K), *wr = fbuf((size_t)N * K);
    for (int64_t i = 0; i < (int64_t)M * K; i++)
        xr[i] = bf16r(x[i]);
    for (int64_t i = 0; i < (int64_t)N * K; i++)
        wr[i] = bf16r(sdc_weight_get(&W, i));
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            /* the epilogue's f32 init (acc + bias), then the exact products */
            float init = (a ? a[(int64_t)m * N + n] : 0.0f) + (bias ? sdc_weight_get(&b, n) : 0.0f);
            double s = init;
            const float *xm = xr + (int64_t)m * K, *wn = wr + (int64_t)n * K;
            for (int k = 0; k < K; k++)
                s += (double)xm[k] * wn[k];
            ye[(int64_t)m * N + n] = (float)s;
        }
    const double e = t_rel_l2(y, ye, (size_t)M * N);
    if (e > g_worst_linear) g_worst_linear = e;
    if (getenv("SDC_TEST_VERBOSE"))
        printf("    %s linear M%d N%d K%d %s%s%s: rel L2 %.3g\n", tag, M, N, K, sdc_dtype_name(dt),
               bias ? " bias" : "", acc ? " acc" : "", e);
    CHECKF(e <= TOL_GEMM, "%s linear M%d N%d K%d %s: rel L2 %.3g > %.1g", tag, M, N, K,
           sdc_dtype_name(dt), e, TOL_GEMM);
    free(x), free(wf), free(bf), free(a), free(y), free(ye), free(xr), free(wr);
    t_weight_free(&W), t_weight_free(&b);
}

static void test_linear_emulated(void) {
    static const int shapes[][3] = {{1, 1, 1},     {5, 37, 3},     {33, 100, 255}, {32, 32, 32},
                                    {31, 33, 17},  {64, 64, 33},   {65, 31, 640},  {7, 200, 1281},
                                    {300, 70, 96}, {2, 1280, 320}, {224, 40, 513}};
    const sdc_dtype dts[3] = {SDC_DT_F32, SDC_DT_F16, SDC_DT_BF16};
    for (int s = 0; s < (int)(sizeof shapes / sizeof *shapes); s++)
        for (int d = 0; d < 3; d++)
            check_linear(g_emu, shapes[s][0], shapes[s][1], shapes[s][2], dts[d], (s + d) % 2,
                         (s + d) % 3 == 0, "emulated");
    printf("  worst rel L2 (edge shapes): %.3g\n", g_worst_linear);
}

/* SD 1.x's UNet at 512x512 (64x64 latents; rows sliced to keep the
 * emulation within seconds; the row count does not change the K blocks,
 * and tiles of rows are independent; SDC_TEST_QUICK, the cross build's
 * suite under qemu, slices 8x more). */
static void test_linear_real_shapes(void) {
    g_worst_linear = 0;
    const int q = t_quick() ? 8 : 1; /* under qemu: 1/8 of the rows */
    check_linear(g_emu, 4096 / q, 320, 320, SDC_DT_F16, 1, 1, "emulated"); /* attn, 64x64 */
    check_linear(g_emu, 256 / q, 2560, 320, SDC_DT_F16, 1, 0, "emulated"); /* GEGLU proj */
    check_linear(g_emu, 256 / q, 320, 1280, SDC_DT_F16, 1, 1, "emulated"); /* FF out */
    check_linear(g_emu, 77, 320, 768, SDC_DT_F16, 0, 0, "emulated");       /* cross k/v */
    check_linear(g_emu, 128 / q, 640, 640, SDC_DT_F16, 1, 1, "emulated");  /* attn, 32x32 */
    check_linear(g_emu, 64 / q, 1280, 2560, SDC_DT_F16, 1, 1, "emulated"); /* FF out, 32x32 */
    check_linear(g_emu, 32 / q, 1280, 5120, SDC_DT_F16, 1, 1, "emulated"); /* FF out, 16x16 */
    check_linear(g_emu, 2, 1280, 320, SDC_DT_F32, 1, 0, "emulated");       /* time embedding */
    printf("  worst rel L2 (real shapes): %.3g\n", g_worst_linear);
}

static void check_conv(sdc_backend *be, int N, int C, int H, int W, int O, int k, int stride,
                       int pad, sdc_dtype dt) {
    setenv("SDC_WINOGRAD", "0", 1); /* the GEMM paths (Winograd stays f32 in the mode) */
    const int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    const size_t nx = (size_t)N * C * H * W, ny = (size_t)N * O * Ho * Wo,
                 nw = (size_t)O * C * k * k;
    float *x = fbuf(nx), *xr = fbuf(nx), *y = fbuf(ny), *ye = fbuf(ny), *acc = fbuf(ny);
    float *wf = fbuf(nw), *bf = fbuf((size_t)O), *wr = fbuf(nw);
    t_rand_fill(x, nx, 1.0f), t_rand_fill(wf, nw, 0.3f), t_rand_fill(bf, O, 1.0f),
        t_rand_fill(acc, ny, 1.0f);
    for (size_t i = 0; i < nx; i++)
        xr[i] = bf16r(x[i]);
    sdc_weight w = t_weight_make(dt, wf, (int64_t)nw), b = t_weight_make(dt, bf, O);
    for (size_t i = 0; i < nw; i++)
        wr[i] = bf16r(sdc_weight_get(&w, (int64_t)i));
    sdc_weight wrw = t_weight_make(SDC_DT_F32, wr, (int64_t)nw);
    be->conv2d(be, y, x, N, C, H, W, &w, &b, O, k, k, stride, pad, acc);
    g_ref->conv2d(g_ref, ye, xr, N, C, H, W, &wrw, &b, O, k, k, stride, pad, acc);
    const double e = t_rel_l2(y, ye, ny);
    if (getenv("SDC_TEST_VERBOSE"))
        printf("    conv N%d C%d %dx%d O%d k%d s%d %s: rel L2 %.3g\n", N, C, H, W, O, k, stride,
               sdc_dtype_name(dt), e);
    CHECKF(e <= TOL_CONV, "conv N%d C%d %dx%d O%d k%d s%d %s: rel L2 %.3g", N, C, H, W, O, k,
           stride, sdc_dtype_name(dt), e);
    free(x), free(xr), free(y), free(ye), free(acc), free(wf), free(bf), free(wr);
    t_weight_free(&w), t_weight_free(&b), t_weight_free(&wrw);
    unsetenv("SDC_WINOGRAD");
}

static void test_conv_emulated(void) {
    check_conv(g_emu, 2, 3, 7, 9, 5, 3, 1, 1, SDC_DT_F16);      /* K 27: odd */
    check_conv(g_emu, 3, 13, 8, 8, 20, 1, 1, 0, SDC_DT_F32);    /* 1x1, images side by side */
    check_conv(g_emu, 1, 4, 9, 8, 7, 3, 2, 1, SDC_DT_BF16);     /* stride 2 */
    check_conv(g_emu, 1, 320, 16, 16, 40, 3, 2, 1, SDC_DT_F16); /* downsample, K 2880 */
    check_conv(g_emu, 2, 640, 8, 8, 48, 1, 1, 0, SDC_DT_F16);   /* skip 1x1 */
    /* O 640: several m-tiles share B (im2col / the map packed once) */
    check_conv(g_emu, 2, 64, 16, 16, 640, 1, 1, 0, SDC_DT_F16);
    check_conv(g_emu, 1, 32, 32, 32, 640, 3, 2, 1, SDC_DT_F16);
}

/* ---- 5. attention on emulated tiles --------------------------------------- */

typedef struct att_case {
    int Sq, Sk, heads, dh, causal, fused; /* fused: q, k, v rows of one [S, 3 * heads * dh] */
    float peak;                           /* q's scale: large values peak the softmax */
} att_case;

/* rows x D of src (row stride ld), each times mul, rounded to bf16:
 * [rows][D] */
static float *bf16_rows(const float *src, int ld, int rows, int D, float mul) {
    float *r = fbuf((size_t)rows * D);
    for (int i = 0; i < rows; i++)
        for (int e = 0; e < D; e++) r[(size_t)i * D + e] = bf16r(src[(int64_t)i * ld + e] * mul);
    return r;
}

/* The double reference on bf16 q * scale * log2 e, k, v; round_p: the
 * weights 2^(s - max) rounded to bf16 too. */
static void att_reference(float *out, const float *q, int qs, const float *k, const float *v,
                          int kvs, const att_case *c, float scale, int round_p) {
    const int D = c->heads * c->dh;
    float *qr = bf16_rows(q, qs, c->Sq, D, scale * 1.44269504088896341f),
          *kr = bf16_rows(k, kvs, c->Sk, D, 1.0f), *vr = bf16_rows(v, kvs, c->Sk, D, 1.0f);
    double *s = malloc(sizeof(double) * (size_t)(c->Sk > 0 ? c->Sk : 1));
    if (!s) abort();
    for (int h = 0; h < c->heads; h++)
        for (int i = 0; i < c->Sq; i++) {
            const int n = c->causal && i + 1 < c->Sk ? i + 1 : c->Sk;
            const float *qi = qr + (size_t)i * D + h * c->dh;
            double mx = -INFINITY, l = 0;
            for (int j = 0; j < n; j++) {
                const float *kj = kr + (size_t)j * D + h * c->dh;
                double d = 0;
                for (int e = 0; e < c->dh; e++) d += (double)qi[e] * kj[e];
                s[j] = d;
                if (d > mx) mx = d;
            }
            for (int j = 0; j < n; j++) {
                s[j] = exp2(s[j] - mx);
                if (round_p) s[j] = bf16r((float)s[j]);
                l += s[j];
            }
            for (int e = 0; e < c->dh; e++) {
                double o = 0;
                for (int j = 0; j < n; j++) o += s[j] * vr[(size_t)j * D + h * c->dh + e];
                out[(size_t)i * D + h * c->dh + e] = n > 0 ? (float)(o / l) : 0.0f;
            }
        }
    free(s), free(qr), free(kr), free(vr);
}

static double g_worst_att[3];

static void check_attention(sdc_backend *be, const att_case *c) {
    const int D = c->heads * c->dh, qs = c->fused ? 3 * D : D;
    const int S = c->Sq > c->Sk ? c->Sq : c->Sk;
    float *qkv = fbuf((size_t)S * qs * (c->fused ? 1 : 3));
    t_rand_fill(qkv, (size_t)S * qs * (c->fused ? 1 : 3), 1.0f);
    const float *q = qkv, *k = c->fused ? qkv + D : qkv + (size_t)S * qs,
                *v = c->fused ? qkv + 2 * D : qkv + 2 * (size_t)S * qs;
    for (int64_t i = 0; i < (int64_t)c->Sq * qs; i++) qkv[i] *= c->peak;
    const size_t no = (size_t)c->Sq * D;
    float *y = fbuf(no), *ye = fbuf(no), *yf = fbuf(no);
    const float scale = 1.0f / sqrtf((float)c->dh);
    be->attention(be, y, q, qs, k, v, qs, c->Sq, c->Sk, c->heads, c->dh, scale, c->causal);
    g_ref->attention(g_ref, yf, q, qs, k, v, qs, c->Sq, c->Sk, c->heads, c->dh, scale, c->causal);
    const int one_block = c->Sk <= 256;
    att_reference(ye, q, qs, k, v, qs, c, scale, one_block);
    const double e = t_rel_l2(y, ye, no), ef = t_rel_l2(y, yf, no);
    const double tol = one_block ? TOL_ATT_EXACT : TOL_ATT;
    if (e > g_worst_att[one_block]) g_worst_att[one_block] = e;
    if (ef > g_worst_att[2]) g_worst_att[2] = ef;
    if (getenv("SDC_TEST_VERBOSE"))
        printf("    attention Sq%d Sk%d h%d dh%d%s%s x%g: rel L2 %.3g (model), %.3g (f32)\n",
               c->Sq, c->Sk, c->heads, c->dh, c->causal ? " causal" : "", c->fused ? " fused" : "",
               c->peak, e, ef);
    CHECKF(e <= tol, "attention Sq%d Sk%d h%d dh%d causal %d: rel L2 %.3g > %.1g", c->Sq, c->Sk,
           c->heads, c->dh, c->causal, e, tol);
    CHECKF(ef <= TOL_ATT_F32, "attention Sq%d Sk%d h%d dh%d causal %d: vs f32 %.3g > %.1g", c->Sq,
           c->Sk, c->heads, c->dh, c->causal, ef, TOL_ATT_F32);
    free(qkv), free(y), free(ye), free(yf);
}

static void test_attention_emulated(void) {
    const int q = t_quick() ? 4 : 1; /* under qemu: fewer queries */
    static const att_case edge[] = {
        {1, 1, 1, 1, 0, 0, 1},      {5, 3, 2, 7, 0, 0, 1},      {33, 65, 3, 33, 0, 1, 1},
        {31, 31, 2, 16, 1, 0, 1},   {100, 300, 2, 40, 0, 0, 1}, {300, 300, 1, 80, 1, 0, 1},
        {70, 600, 1, 24, 0, 1, 6},  {40, 256, 2, 40, 0, 0, 8},  {257, 257, 1, 32, 1, 0, 4},
        {65, 513, 1, 96, 0, 0, 1},  {3, 40, 1, 511, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++) check_attention(g_emu, &edge[i]);
    /* SD 1.x at 512x512 (queries sliced), CLIP's causal self-attention,
     * the VAE's single 512-wide head */
    const att_case real[] = {
        {256 / q, 4096, 2, 40, 0, 1, 1}, /* self-attention, 64x64 (2 of 8 heads) */
        {1024 / q, 77, 2, 40, 0, 0, 1},  /* cross-attention, 64x64 */
        {128 / q, 1024, 2, 80, 0, 1, 1}, /* self-attention, 32x32 */
        {64, 64, 8, 160, 0, 1, 1},       /* self-attention, 8x8 */
        {77, 77, 12, 64, 1, 1, 1},       /* CLIP ViT-L/14 */
        {64 / q, 1024, 1, 512, 0, 1, 1}, /* VAE mid-block, 256x256 image */
    };
    for (size_t i = 0; i < sizeof real / sizeof *real; i++) check_attention(g_emu, &real[i]);
    printf("  worst rel L2: one block %.3g (tol %.0e), across blocks %.3g (tol %.0e), vs f32 "
           "%.3g (tol %.0e)\n",
           g_worst_att[1], TOL_ATT_EXACT, g_worst_att[0], TOL_ATT, g_worst_att[2], TOL_ATT_F32);
    /* no keys: zeros, as the reference */
    float qz[4] = {1, 2, 3, 4}, yz[4] = {5, 5, 5, 5};
    g_emu->attention(g_emu, yz, qz, 4, qz, qz, 4, 1, 0, 1, 4, 0.5f, 0);
    CHECK(yz[0] == 0 && yz[1] == 0 && yz[2] == 0 && yz[3] == 0);
}

/* ---- 6. real tiles against the emulation ----------------------------------- */

static void test_hw_vs_emulation(void) {
    char why[160];
    if (!sdc_amx_hw_ready(why, sizeof why)) {
        printf("  no AMX-BF16 here%s%s: the hardware comparison is skipped\n", why[0] ? ": " : "",
               why);
        return;
    }
    int bad = 0, cases = 0;
    for (int r = 0; r < 200; r++) {
        const int mr = r < 50 ? 32 : 1 + rnd() % 32, nr = r < 50 ? 32 : 1 + rnd() % 32;
        const int kc2 = r < 50 ? 16 * (1 + rnd() % 8) : 1 + rnd() % 128, wild = r % 4 ? 20 : 0;
        const uint64_t seed = g_rng;
        float *hw, *emu, *m1, *m2;
        const int64_t n = kernel_case(sdc_gemm_kernel_bf16_amx, sdc_amx_begin_hw, sdc_amx_end_hw,
                                      mr, nr, kc2, wild, &hw, &m1);
        g_rng = seed; /* the same operands again */
        kernel_case(sdc_gemm_kernel_bf16_amx_emul, sdc_amx_begin_emul, sdc_amx_end_emul, mr, nr,
                    kc2, wild, &emu, &m2);
        int64_t first = 0;
        const int d = count_diff(hw, emu, n, &first);
        cases++;
        if (d) {
            if (bad++ < 5)
                fprintf(stderr,
                        "  hw vs emulation mr %d nr %d kc2 %d wild %d: %d differ, first %lld: %a "
                        "vs %a\n",
                        mr, nr, kc2, wild, d, (long long)first, hw[first], emu[first]);
        }
        free(hw), free(emu), free(m1), free(m2);
    }
    printf("  real AMX kernel vs emulation: %d cases, %d with a difference\n", cases, bad);
    const float hw_w = probe_ftz_window(sdc_gemm_kernel_bf16_amx, sdc_amx_begin_hw, sdc_amx_end_hw);
    printf("  FTZ window (2^-126 - 1.5 * 2^-151): hardware %a, emulation 0\n", hw_w);
    CHECK(bits(hw_w) == 0);
    CHECK(bad == 0);
    /* the whole mode: real and emulated backends, the same bits */
    if (!g_hw) {
        CHECKF(0, "AMX present but the bf16 mode does not take it");
        return;
    }
    CHECK(strstr(g_hw->name, "bf16-amx (") != NULL);
    static const int shapes[][3] = {
        {33, 100, 255}, {4096, 320, 320}, {256, 2560, 320}, {77, 320, 768}};
    for (int s = 0; s < 4; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *x = fbuf((size_t)M * K), *wf = fbuf((size_t)N * K), *y1 = fbuf((size_t)M * N),
              *y2 = fbuf((size_t)M * N);
        t_rand_fill(x, (size_t)M * K, 1.0f), t_rand_fill(wf, (size_t)N * K, 0.3f);
        sdc_weight W = t_weight_make(SDC_DT_F16, wf, (int64_t)N * K);
        g_hw->linear(g_hw, y1, x, &W, NULL, NULL, M, N, K);
        g_emu->linear(g_emu, y2, x, &W, NULL, NULL, M, N, K);
        CHECKF(count_diff(y1, y2, (int64_t)M * N, NULL) == 0, "linear M%d N%d K%d: hw vs emulation",
               M, N, K);
        free(x), free(wf), free(y1), free(y2), t_weight_free(&W);
    }
    static const int att[][5] = {{300, 300, 2, 40, 1}, {512, 77, 8, 40, 0}, {64, 520, 1, 512, 0}};
    for (int s = 0; s < 3; s++) {
        const int Sq = att[s][0], Sk = att[s][1], H = att[s][2], dh = att[s][3], D = H * dh;
        float *x = fbuf((size_t)(Sq + 2 * Sk) * D), *y1 = fbuf((size_t)Sq * D),
              *y2 = fbuf((size_t)Sq * D);
        t_rand_fill(x, (size_t)(Sq + 2 * Sk) * D, 1.0f);
        const float *k = x + (size_t)Sq * D, *v = k + (size_t)Sk * D;
        g_hw->attention(g_hw, y1, x, D, k, v, D, Sq, Sk, H, dh, 0.125f, att[s][4]);
        g_emu->attention(g_emu, y2, x, D, k, v, D, Sq, Sk, H, dh, 0.125f, att[s][4]);
        CHECKF(count_diff(y1, y2, (int64_t)Sq * D, NULL) == 0,
               "attention Sq%d Sk%d h%d dh%d: hw vs emulation", Sq, Sk, H, dh);
        free(x), free(y1), free(y2);
    }
}

static void test_selection(void) {
    /* the reference backend never has the mode, SDC_AMX=emulate or not */
    setenv("SDC_AMX", "emulate", 1);
    CHECK(sdc_backend_cpu_set_bf16(g_ref, 1) == SDC_ERR_UNSUPPORTED);
    unsetenv("SDC_AMX");
    CHECK(g_emu != NULL && strstr(g_emu->name, "bf16-amx-emulated") != NULL);
    /* SDC_AMX=0: AVX512_BF16 or the refusal, never AMX */
    sdc_backend *off = bf16_backend("0");
    if (off) {
        CHECK(strstr(off->name, "amx") == NULL);
        off->free(off);
    } else {
        CHECK(strstr(sdc_last_error(), "AVX512_BF16") != NULL);
    }
    if (g_emu) printf("  %s\n", g_emu->name);
    if (g_hw) printf("  %s\n", g_hw->name);
}

int main(void) {
    t_rand_seed(11);
    unsetenv("SDC_FORCE_REF");
    unsetenv("SDC_CPU_ISA");
    g_ref = sdc_backend_cpu_create(1, 1);
    g_emu = bf16_backend("emulate");
    g_hw = sdc_amx_hw_ready(NULL, 0) ? bf16_backend(NULL) : NULL;
    if (!g_ref || !g_emu) {
        fprintf(stderr, "cannot create the backends: %s\n", sdc_last_error());
        return 1;
    }
    printf("  CPU features: %s\n", sdc_cpu_features_str());
    RUN(test_selection);
    RUN(test_tdp);
    RUN(test_kernel_emulated);
    RUN(test_packers);
    RUN(test_linear_emulated);
    RUN(test_linear_real_shapes);
    RUN(test_conv_emulated);
    RUN(test_attention_emulated);
    RUN(test_hw_vs_emulation);
    g_emu->free(g_emu);
    if (g_hw) g_hw->free(g_hw);
    g_ref->free(g_ref);
    return t_summary();
}
