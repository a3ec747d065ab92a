/* The AMX tile layer: the bf16 mode's GEMM on Intel AMX tiles (TDPBF16PS),
 * with a plain C emulation of the tile instructions it uses.
 *
 * Files: amx_tile.h    this: the tile state's layout, the emulation's
 *                      instructions, the kernels' entry points
 *        amx_kernel.h  the micro-kernel, written once against five tile
 *                      macros (LDTILECFG, TILERELEASE, TILELOADD,
 *                      TILESTORED, TDPBF16PS) and included by
 *                      gemm_amx.c (the intrinsics; -mamx-tile -mamx-bf16)
 *                      and amx_emul.c (the emulation below; plain C11,
 *                      any CPU), so the emulated kernel is the real one
 *        amx.c         the run-time check (CPUID, XCR0, Linux's
 *                      permission), the portable bf16 packers, the kernel
 *                      set the bf16 mode runs
 *
 * Palette 1: 8 tiles, each up to 16 rows of 64 bytes.  The kernel uses them
 * all at 16 x 64: tmm0-3 C (f32 16 x 16, rows i and columns j of a 32 x 32
 * block: tmm(2i+j)), tmm4-5 A (16 rows x 16 bf16 pairs), tmm6-7 B (16 pair
 * rows x 16 columns: the VNNI layout, word (k2, n) = B[2k2][n] | B[2k2+1][n]
 * << 16 — exactly the bf16 mode's pair panels, sdc_cpu_kernels.bf16_pairs).
 *
 * TDPBF16PS C, A, B (Intel SDM vol. 2, "TDPBF16PS"; Bochs' amx.cc reads it
 * alike), per row m of C and column n:
 *   e = 0, o = 0                    (f32)
 *   for k in 0 .. A.colsb/4 - 1:    e = fma(A[m].bf16[2k],   B[k].bf16[2n],   e)
 *                                   o = fma(A[m].bf16[2k+1], B[k].bf16[2n+1], o)
 *   C[m][n] = C[m][n] + (e + o)
 * every fma and add in f32 rounded to nearest even, with DAZ (denormal
 * inputs, bf16 or the f32 C, read as zero of their sign) and FTZ (a result
 * that is tiny after rounding becomes zero of its sign); MXCSR is neither
 * read nor written.  The emulation computes each fma in double: the bf16
 * product (16 significant bits) is exact there, and the double sum of two
 * 24-bit values rounded to f32 is the correctly rounded f32 sum (53 >= 2 *
 * 24 + 2 bits: double rounding is innocuous, Figueroa 1995); it detects
 * tininess after rounding (at unbounded exponent), as x86 does.  NaN payloads are not specified by
 * the SDM: the emulation's NaNs are NaNs, not necessarily the same bits. */
#ifndef SDC_AMX_TILE_H
#define SDC_AMX_TILE_H

#include <stdint.h>
#include <string.h>

/* The 64-byte operand of LDTILECFG (palette 1). */
typedef struct sdc_amx_cfg {
    uint8_t palette, start_row;
    uint8_t reserved0[14];
    uint16_t colsb[16]; /* bytes per row of tile t (t < 8), 0 = unused */
    uint8_t rows[16];   /* rows of tile t (t < 8) */
} sdc_amx_cfg;
_Static_assert(sizeof(sdc_amx_cfg) == 64, "LDTILECFG reads 64 bytes");

/* The kernel's configuration: tiles 0-7 all 16 rows x 64 bytes. */
static inline sdc_amx_cfg sdc_amx_cfg_kernel(void) {
    sdc_amx_cfg c = {0};
    c.palette = 1;
    for (int t = 0; t < 8; t++) c.colsb[t] = 64, c.rows[t] = 16;
    return c;
}

/* f32 -> bf16, round to nearest even; a NaN stays a (quiet) NaN */
static inline uint32_t sdc_bf16_rne(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40;
    return (u + 0x7fffu + ((u >> 16) & 1)) >> 16;
}

/* One word of the pair layout: lo in the low half, hi in the high half. */
static inline uint32_t sdc_bf16_pair(float lo, float hi) {
    return sdc_bf16_rne(lo) | sdc_bf16_rne(hi) << 16;
}

/* ---- the emulation (amx_emul.c): one tile state per thread, as the
 * hardware has.  A use the SDM answers with #UD (no configuration, a tile
 * not configured, shapes that do not fit, one tile twice) prints what and
 * aborts, as the hardware's SIGILL would end the process. ---------------- */
void sdc_amx_emu_loadconfig(const sdc_amx_cfg *cfg); /* palette 0: as release */
void sdc_amx_emu_release(void);
void sdc_amx_emu_zero(int t);
/* rows of tile t from base + r * stride (bytes), colsb bytes each */
void sdc_amx_emu_load(int t, const void *base, int64_t stride);
void sdc_amx_emu_store(int t, void *base, int64_t stride);
void sdc_amx_emu_dpbf16ps(int c, int a, int b);
/* One f32 fma with TDPBF16PS's rounding (DAZ on x, y, acc; FTZ on the
 * result), x and y widened from bf16: the scalar the tests check against. */
float sdc_amx_emu_fma(float x, float y, float acc);
/* a + b with the same rules */
float sdc_amx_emu_add(float a, float b);

/* ---- the bf16 mode's kernels (sdc_gemm_bf16_fn; cpu_impl.h) ------------
 * c[mr, nr] += A · B over kc2 pairs, mr <= 32, nr <= 32: A(i, k2) =
 * a[i*rs_a + k2] (bf16 pair rows), b the [kc2][32] pair panel.  Any kc2
 * works (a last partial tile of pairs is staged zero-padded); the GEMM
 * driver cuts K in multiples of 32 (sdc_cpu_kernels.kalign) so that only
 * K's own end is partial.  begin/end bracket a thread's calls: LDTILECFG
 * (the tile state is per thread) and TILERELEASE (the OS then need not
 * save 8 KiB of tiles at a context switch). */
#define SDC_AMX_MR 32
#define SDC_AMX_NR 32
void sdc_gemm_kernel_bf16_amx_emul(int kc2, const uint32_t *a, int64_t rs_a, const uint32_t *b,
                                   float *c, int64_t ldc, int mr, int nr);
void sdc_amx_begin_emul(void);
void sdc_amx_end_emul(void);
/* gemm_amx.c: call only when sdc_amx_hw_ready() (a build without the AMX
 * file has stubs that abort) */
void sdc_gemm_kernel_bf16_amx(int kc2, const uint32_t *a, int64_t rs_a, const uint32_t *b,
                              float *c, int64_t ldc, int mr, int nr);
void sdc_amx_begin_hw(void);
void sdc_amx_end_hw(void);
/* The bf16 mode's attention on tiles (amx_attention.h; backend.h's
 * attention, the backend a CPU one): real (gemm_amx.c) or emulated. */
struct sdc_backend;
void sdc_amx_attention_hw(struct sdc_backend *be, float *out, const float *q, int q_stride,
                          const float *k, const float *v, int kv_stride, int Sq, int Sk,
                          int heads, int dh, float scale, int causal);
void sdc_amx_attention_emul(struct sdc_backend *be, float *out, const float *q, int q_stride,
                            const float *k, const float *v, int kv_stride, int Sq, int Sk,
                            int heads, int dh, float scale, int causal);
/* iters x 4 TDPBF16PS on tiles already zeroed, no memory operands (the
 * peak); returns the FLOPs done (16 x 16 x 32 x 2 per instruction) */
double sdc_amx_tdp_loop(long iters);

/* Whether the real AMX-BF16 kernel can run here: this build has it, CPUID
 * says amx_tile and amx_bf16, the OS enables the tile state (XCR0) and, on
 * Linux, grants this process the tile data (arch_prctl
 * ARCH_REQ_XCOMP_PERM, asked once).  If not and why is not NULL, why gets
 * the reason ("" when the CPU simply has no AMX). */
int sdc_amx_hw_ready(char *why, int why_len);

/* k (a copy of the backend's kernel set) made the AMX bf16 set: the AMX
 * kernel (real, or emulated), its 32 x 32 tile, K blocks in whole tiles,
 * and k's own bf16 packers where it has them (AVX512_BF16), else the
 * portable ones below.  The caller has checked sdc_amx_hw_ready() unless
 * emulated. */
struct sdc_cpu_kernels;
void sdc_amx_kernels(struct sdc_cpu_kernels *k, int emulated);

/* The portable bf16 packers (amx.c), bit for bit the AVX512_BF16 ones on
 * finite values (round to nearest even; a NaN stays a quiet NaN): see
 * sdc_cpu_kernels.bf16_pairs, bf16_row_f32, bf16_row_f16, bf16_panel_rows. */
struct sdc_weight;
void sdc_bf16_pairs_generic(float *panel, int kc, int w);
void sdc_bf16_row_f32_generic(uint32_t *dst, const float *src, int kc);
void sdc_bf16_row_f16_generic(uint32_t *dst, const uint16_t *src, int kc);
void sdc_bf16_panel_rows_generic(uint32_t *dst, int nr, const struct sdc_weight *w, int64_t ld,
                                 int r0, int rows, int k0, int kc);

#endif
