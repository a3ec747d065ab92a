/* The AMX tile instructions in plain C (amx_tile.h says what they do), and
 * the AMX-BF16 micro-kernel (amx_kernel.h) built on them: the bf16 mode's
 * AMX path on any CPU (SDC_AMX=emulate), slow but with the real kernel's
 * layout, tiling and edges.  Portable C11: no intrinsics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/amx_tile.h"
#include "backends/cpu/cpu_impl.h"

/* One thread's tile state, as the hardware keeps it per logical CPU. */
typedef struct emu_state {
    int configured;
    sdc_amx_cfg cfg;
    _Alignas(64) uint8_t tile[8][16][64];
} emu_state;

static _Thread_local emu_state g_emu;

static void ud(const char *insn, const char *why, int t) {
    fprintf(stderr, "sdc: AMX emulation: %s raises #UD: %s (tile %d)\n", insn, why, t);
    abort();
}

/* tile t, configured (rows and colsb non-zero) */
static void need(const char *insn, int t) {
    if (!g_emu.configured) ud(insn, "tiles not configured (no LDTILECFG)", t);
    if (t < 0 || t > 7 || !g_emu.cfg.rows[t] || !g_emu.cfg.colsb[t])
        ud(insn, "tile not configured", t);
}

void sdc_amx_emu_release(void) {
    memset(&g_emu, 0, sizeof g_emu);
}

void sdc_amx_emu_loadconfig(const sdc_amx_cfg *cfg) {
    if (cfg->palette == 0) {
        sdc_amx_emu_release();
        return;
    }
    /* the SDM's #GP cases, reported alike */
    if (cfg->palette != 1) ud("LDTILECFG", "palette other than 0 and 1", -1);
    for (int i = 0; i < 14; i++)
        if (cfg->reserved0[i]) ud("LDTILECFG", "reserved bytes not zero", -1);
    for (int t = 0; t < 16; t++) {
        if (t >= 8 && (cfg->rows[t] || cfg->colsb[t])) ud("LDTILECFG", "tile 8-15 used", t);
        if (cfg->rows[t] > 16 || cfg->colsb[t] > 64) ud("LDTILECFG", "tile larger than 16 x 64", t);
        if (!cfg->rows[t] != !cfg->colsb[t]) ud("LDTILECFG", "rows and colsb not both zero", t);
    }
    memset(&g_emu, 0, sizeof g_emu);
    g_emu.cfg = *cfg;
    g_emu.cfg.start_row = 0; /* restarts after a fault are not emulated */
    g_emu.configured = 1;
}

void sdc_amx_emu_zero(int t) {
    need("TILEZERO", t);
    memset(g_emu.tile[t], 0, sizeof g_emu.tile[t]);
}

void sdc_amx_emu_load(int t, const void *base, int64_t stride) {
    need("TILELOADD", t);
    const int rows = g_emu.cfg.rows[t], colsb = g_emu.cfg.colsb[t];
    memset(g_emu.tile[t], 0, sizeof g_emu.tile[t]); /* the row tails and rows past `rows` */
    for (int r = 0; r < rows; r++)
        memcpy(g_emu.tile[t][r], (const uint8_t *)base + r * stride, (size_t)colsb);
}

void sdc_amx_emu_store(int t, void *base, int64_t stride) {
    need("TILESTORED", t);
    const int rows = g_emu.cfg.rows[t], colsb = g_emu.cfg.colsb[t];
    for (int r = 0; r < rows; r++)
        memcpy((uint8_t *)base + r * stride, g_emu.tile[t][r], (size_t)colsb);
}

/* ---- the arithmetic ------------------------------------------------------ */

/* DAZ: a denormal input reads as zero of its sign */
static inline float daz(float x) {
    return fabsf(x) < 0x1p-126f ? copysignf(0.0f, x) : x;
}

/* The f32 result of an exact (or Figueroa-safe: 53 >= 2*24 + 2 bits) double
 * v: rounded to nearest even, FTZ with tininess after rounding: |v| below
 * 2^-126 (1 - 2^-25), which rounds to 2^-126 at unbounded exponent, is tiny. */
static inline float ftz(double v) {
    float r = (float)v;
    return fabs(v) < 0x1.ffffffp-127 ? copysignf(0.0f, r) : r;
}

/* bf16 bits as f32 with DAZ */
static inline float bf(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return daz(f);
}

float sdc_amx_emu_fma(float x, float y, float acc) {
    return ftz((double)daz(x) * (double)daz(y) + (double)daz(acc));
}

float sdc_amx_emu_add(float a, float b) {
    return ftz((double)daz(a) + (double)daz(b));
}

void sdc_amx_emu_dpbf16ps(int c, int a, int b) {
    need("TDPBF16PS", c), need("TDPBF16PS", a), need("TDPBF16PS", b);
    if (c == a || c == b || a == b) ud("TDPBF16PS", "the three tiles are not distinct", c);
    const sdc_amx_cfg *g = &g_emu.cfg;
    if (g->colsb[c] % 4 || g->colsb[a] % 4 || g->colsb[b] % 4)
        ud("TDPBF16PS", "colsb not a multiple of 4", c);
    const int M = g->rows[c], N = g->colsb[c] / 4, K = g->colsb[a] / 4;
    if (g->colsb[b] != g->colsb[c] || g->rows[a] != M || g->rows[b] != K)
        ud("TDPBF16PS", "shapes do not match (C m x n, A m x k, B k x n)", c);
    /* B widened once: bw[k][2n + p] = B.row[k].bf16[2n + p] */
    float bw[16][32];
    for (int k = 0; k < K; k++)
        for (int i = 0; i < 2 * N; i++) {
            uint16_t h;
            memcpy(&h, &g_emu.tile[b][k][2 * i], 2);
            bw[k][i] = bf(h);
        }
    for (int m = 0; m < M; m++) {
        float e[16] = {0}, o[16] = {0}; /* temp1[2n], temp1[2n + 1] */
        for (int k = 0; k < K; k++) {
            uint16_t h0, h1;
            memcpy(&h0, &g_emu.tile[a][m][4 * k], 2);
            memcpy(&h1, &g_emu.tile[a][m][4 * k + 2], 2);
            const double a0 = bf(h0), a1 = bf(h1);
            for (int n = 0; n < N; n++) {
                e[n] = ftz(a0 * bw[k][2 * n] + e[n]);
                o[n] = ftz(a1 * bw[k][2 * n + 1] + o[n]);
            }
        }
        float row[16] = {0}; /* write_row_and_zero: bytes past colsb become 0 */
        memcpy(row, g_emu.tile[c][m], (size_t)N * 4);
        for (int n = 0; n < N; n++)
            row[n] = sdc_amx_emu_add(row[n], sdc_amx_emu_add(e[n], o[n]));
        memcpy(g_emu.tile[c][m], row, sizeof row);
    }
    for (int m = M; m < 16; m++)
        memset(g_emu.tile[c][m], 0, 64); /* zero_upper_rows */
}

/* ---- the kernel on the emulated tiles ---------------------------------- */
#define AMX_FN(x) sdc_amx_emul_##x
#define T_CFG(p) sdc_amx_emu_loadconfig(p)
#define T_RELEASE() sdc_amx_emu_release()
#define T_LOAD(t, p, s) sdc_amx_emu_load(t, p, s)
#define T_STORE(t, p, s) sdc_amx_emu_store(t, p, s)
#define T_DP(c, a, b) sdc_amx_emu_dpbf16ps(c, a, b)
#include "backends/cpu/amx_kernel.h"
#include "backends/cpu/amx_attention.h"

void sdc_gemm_kernel_bf16_amx_emul(int kc2, const uint32_t *a, int64_t rs_a, const uint32_t *b,
                                   float *c, int64_t ldc, int mr, int nr) {
    sdc_amx_emul_kernel(kc2, a, rs_a, b, c, ldc, mr, nr);
}
void sdc_amx_begin_emul(void) {
    sdc_amx_emul_begin();
}
void sdc_amx_end_emul(void) {
    sdc_amx_emul_end();
}
void sdc_amx_attention_emul(sdc_backend *be, float *out, const float *q, int q_stride,
                            const float *k, const float *v, int kv_stride, int Sq, int Sk,
                            int heads, int dh, float scale, int causal) {
    sdc_amx_emul_attention(be, out, q, q_stride, k, v, kv_stride, Sq, Sk, heads, dh, scale,
                           causal);
}
