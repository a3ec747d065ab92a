/* The panel path's filter transform U = G g G^T in registers, written once
 * for winograd_avx2.c (8 filters per ymm) and winograd_avx512.c (16 per
 * zmm).  The including file defines, before the include:
 *   WG_V                      the vector type
 *   WG_SET1(x) WG_ADD(a, b) WG_SUB(a, b) WG_MUL(a, b)
 *   WG_STORE(p, v)            its intrinsics
 * and gets, for a vector of filters whose taps g[k] (k = ky*3 + kx) are
 * already in registers:
 *   wg_g6, wg_g4     the 6-point (F(4x4)) and 4-point (F(2x2)) G of
 *                    winograd_tf.h's sdc_wino_weight / sdc_wino2_weight on
 *                    three vectors (a column or a row of g)
 *   wg_weight        U[r * P + s] = (G g G^T)[r, s], stored at u + (r*P + s)*xs
 * The operations and their order are those of the scalar transforms'
 * formulas, so every ISA's U is the same, bit for bit: no fused
 * multiply-add (the scalar forms are compiled without contraction), since
 * the layer path transforms with those and must round as the panel path. */

/* F(4x4): G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
 *              1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1] */
static inline __attribute__((always_inline)) void wg_g6(WG_V a, WG_V b, WG_V c, WG_V o[]) {
    const WG_V r6 = WG_SET1(1.0f / 6.0f), r12 = WG_SET1(1.0f / 12.0f), r24 = WG_SET1(1.0f / 24.0f),
               neg = WG_SET1(-1.0f / 6.0f);
    WG_V ac = WG_ADD(a, c), e = WG_ADD(WG_MUL(a, r24), WG_MUL(c, r6));
    WG_V f = WG_MUL(b, r12);
    o[0] = WG_MUL(a, WG_SET1(0.25f));
    o[1] = WG_MUL(WG_ADD(ac, b), neg);
    o[2] = WG_MUL(WG_SUB(ac, b), neg);
    o[3] = WG_ADD(e, f);
    o[4] = WG_SUB(e, f);
    o[5] = c;
}

/* F(2x2): G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1] */
static inline __attribute__((always_inline)) void wg_g4(WG_V a, WG_V b, WG_V c, WG_V o[]) {
    const WG_V half = WG_SET1(0.5f);
    WG_V ac = WG_MUL(half, WG_ADD(a, c)), hb = WG_MUL(half, b);
    o[0] = a;
    o[1] = WG_ADD(ac, hb);
    o[2] = WG_SUB(ac, hb);
    o[3] = c;
}

/* U = G g G^T by the P-point column transform gcol (wg_g6: P = 6, wg_g4:
 * P = 4): over g's columns (h = G g), then over the rows of h (h G^T). */
typedef void (*wg_gcol_fn)(WG_V a, WG_V b, WG_V c, WG_V o[]);
static inline __attribute__((always_inline)) void wg_weight(const WG_V g[9], float *u, int64_t xs,
                                                            const int P, wg_gcol_fn gcol) {
    WG_V hc[3][6];
    for (int s = 0; s < 3; s++) gcol(g[s], g[3 + s], g[6 + s], hc[s]);
    for (int r = 0; r < P; r++) {
        WG_V q[6];
        gcol(hc[0][r], hc[1][r], hc[2][r], q);
        for (int s = 0; s < P; s++) WG_STORE(u + (r * P + s) * xs, q[s]);
    }
}
