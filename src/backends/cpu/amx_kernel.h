/* The AMX-BF16 micro-kernel, written once against the tile layer
 * (amx_tile.h) and included by gemm_amx.c (real tiles) and amx_emul.c (the
 * emulation).  The includer defines, with tile numbers as constants:
 *   AMX_FN(x)           the name of each function defined here
 *   T_CFG(p)            LDTILECFG from the sdc_amx_cfg at p
 *   T_RELEASE()         TILERELEASE
 *   T_LOAD(t, p, s)     TILELOADD tmm t from p, row stride s bytes
 *   T_STORE(t, p, s)    TILESTORED
 *   T_DP(c, a, b)       TDPBF16PS tmm c += tmm a . tmm b
 * and must make T_LOAD/T_CFG see the C stores before them (gemm_amx.c:
 * compiler barriers, GCC's intrinsics declare no memory read).
 *
 * c[mr, nr] += A . B, a 32 x 32 block in four C tiles (tmm 2i+j: rows 16i,
 * columns 16j), per 16 pairs of k two A tiles (tmm4-5) and two B tiles
 * (tmm6-7), four TDPBF16PS: 8 tiles, 4 loads per 4 products.  Whole tiles
 * are loaded in place (C from c with stride ldc, A from the packed rows, B
 * from the pair panel); a tile cut by mr, nr or the end of K goes through
 * a zero-padded 16 x 64-byte copy, so that no row or pair outside the
 * operands is ever read (zero pairs add +0 to e and o: a NaN or infinity
 * beyond the end of a row cannot leak in).  Tiles wholly outside mr x nr
 * are not touched. */
#include <string.h>

/* rows x words of src (row stride ld words) into a 16 x 16-word tile
 * image, zero elsewhere */
static void AMX_FN(stage)(uint32_t *dst, const uint32_t *src, int64_t ld, int rows, int words) {
    memset(dst, 0, 16 * 16 * sizeof *dst);
    for (int r = 0; r < rows; r++)
        memcpy(dst + r * 16, src + r * ld, (size_t)words * sizeof *dst);
}

static void AMX_FN(begin)(void) {
    const sdc_amx_cfg cfg = sdc_amx_cfg_kernel();
    T_CFG(&cfg);
}

static void AMX_FN(end)(void) {
    T_RELEASE();
}

static void AMX_FN(kernel)(int kc2, const uint32_t *a, int64_t rs_a, const uint32_t *b, float *c,
                           int64_t ldc, int mr, int nr) {
    _Alignas(64) float cs[4][256];    /* C tiles cut by mr or nr */
    _Alignas(64) uint32_t as[256];    /* an A tile cut by mr or K */
    _Alignas(64) uint32_t bs[2][256]; /* B tiles cut by K */
    const int m2 = mr > 16, n2 = nr > 16;
    float *cp[4];
    int64_t cst[4];
    for (int t = 0; t < 4; t++) {
        const int i = t >> 1, j = t & 1;
        const int rows = mr - 16 * i < 16 ? mr - 16 * i : 16,
                  cols = nr - 16 * j < 16 ? nr - 16 * j : 16;
        cp[t] = NULL, cst[t] = 64;
        if (rows <= 0 || cols <= 0) continue; /* outside mr x nr */
        cp[t] = c + (int64_t)16 * i * ldc + 16 * j, cst[t] = ldc * (int64_t)sizeof(float);
        if (rows == 16 && cols == 16) continue;
        memset(cs[t], 0, sizeof cs[t]);
        for (int r = 0; r < rows; r++)
            memcpy(cs[t] + r * 16, cp[t] + r * ldc, (size_t)cols * sizeof(float));
        cp[t] = cs[t], cst[t] = 64;
    }
    T_LOAD(0, cp[0], cst[0]);
    if (n2) T_LOAD(1, cp[1], cst[1]);
    if (m2) T_LOAD(2, cp[2], cst[2]);
    if (m2 && n2) T_LOAD(3, cp[3], cst[3]);
    const int rows0 = mr < 16 ? mr : 16, rows1 = mr - 16;
    for (int k = 0; k < kc2; k += 16) {
        const int kk = kc2 - k < 16 ? kc2 - k : 16; /* pairs in this step */
        const uint32_t *ak = a + k, *bk = b + (int64_t)k * SDC_AMX_NR;
        if (kk == 16) {
            T_LOAD(6, bk, SDC_AMX_NR * 4);
            if (n2) T_LOAD(7, bk + 16, SDC_AMX_NR * 4);
        } else {
            AMX_FN(stage)(bs[0], bk, SDC_AMX_NR, kk, 16);
            T_LOAD(6, bs[0], 64);
            if (n2) {
                AMX_FN(stage)(bs[1], bk + 16, SDC_AMX_NR, kk, 16);
                T_LOAD(7, bs[1], 64);
            }
        }
        if (rows0 == 16 && kk == 16) {
            T_LOAD(4, ak, rs_a * 4);
        } else {
            AMX_FN(stage)(as, ak, rs_a, rows0, kk);
            T_LOAD(4, as, 64);
        }
        T_DP(0, 4, 6);
        if (n2) T_DP(1, 4, 7);
        if (m2) {
            if (rows1 == 16 && kk == 16) {
                T_LOAD(5, ak + 16 * rs_a, rs_a * 4);
            } else {
                AMX_FN(stage)(as, ak + 16 * rs_a, rs_a, rows1, kk);
                T_LOAD(5, as, 64);
            }
            T_DP(2, 5, 6);
            if (n2) T_DP(3, 5, 7);
        }
    }
    T_STORE(0, cp[0], cst[0]);
    if (n2) T_STORE(1, cp[1], cst[1]);
    if (m2) T_STORE(2, cp[2], cst[2]);
    if (m2 && n2) T_STORE(3, cp[3], cst[3]);
    for (int t = 0; t < 4; t++) {
        if (!cp[t] || cp[t] != cs[t]) continue;
        const int i = t >> 1, j = t & 1;
        const int rows = mr - 16 * i, cols = nr - 16 * j < 16 ? nr - 16 * j : 16;
        float *d = c + (int64_t)16 * i * ldc + 16 * j;
        for (int r = 0; r < rows && r < 16; r++)
            memcpy(d + r * ldc, cs[t] + r * 16, (size_t)cols * sizeof(float));
    }
}
