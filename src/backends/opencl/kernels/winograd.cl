/* Winograd F(4x4, 3x3) convolution, stride 1, pad 1 (Lavin & Gray 2015; the
 * matrices of backends/cpu/winograd_tf.h, points 0, +-1, +-2, inf):
 *   y (4x4 tile) = A^T [ U (.) V ] A,  U = G g G^T,  V = B^T d B,
 * d the 6x6 input tile at stride 4 (origin -1: the padding), 36 points p.
 * Four kernels: wino_filter (U of a slice of O output channels, per call),
 * wino_input (V), wino_gemm (M[p] = U[p] V[p], batched over p) and
 * wino_output (y = A^T M A + bias, + acc).  Tiles are numbered over the
 * batch (tile g: image g / tpi), a chunk of T of them at a time.  Layouts,
 * fp32 unless said:
 *   U[p][O][C]   (in fp32 for every weight dtype: in half its rounding,
 *                amplified by A^T, gave ~2e-3 relative error)
 *   V[p][C][T], M[p][O][T]   in the scratch buffer at element offsets.
 * Options: TM, TN, TK, RM, RN (wino_gemm's tiles, as gemm.cl; TM/RM == TN/RN). */

/* G (6x3) times a 3-vector */
inline void wg6(float g0, float g1, float g2, float *o) {
    o[0] = 0.25f * g0;
    o[1] = (g0 + g1 + g2) * (-1.0f / 6.0f);
    o[2] = (g0 - g1 + g2) * (-1.0f / 6.0f);
    o[3] = g0 * (1.0f / 24.0f) + g1 * (1.0f / 12.0f) + g2 * (1.0f / 6.0f);
    o[4] = g0 * (1.0f / 24.0f) - g1 * (1.0f / 12.0f) + g2 * (1.0f / 6.0f);
    o[5] = g2;
}

/* B^T (6x6) times a 6-vector */
inline void wb6(float d0, float d1, float d2, float d3, float d4, float d5, float *o) {
    o[0] = 4.0f * d0 - 5.0f * d2 + d4;
    o[1] = -4.0f * (d1 + d2) + d3 + d4;
    o[2] = 4.0f * (d1 - d2) - d3 + d4;
    o[3] = 2.0f * (d3 - d1) - d2 + d4;
    o[4] = 2.0f * (d1 - d3) - d2 + d4;
    o[5] = 4.0f * d1 - 5.0f * d3 + d5;
}

/* A^T (4x6) times a 6-vector */
inline void wa4(float m0, float m1, float m2, float m3, float m4, float m5, float *o) {
    const float a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
    o[0] = m0 + a + c;
    o[1] = b + 2.0f * d;
    o[2] = a + 4.0f * c;
    o[3] = b + 8.0f * d + m5;
}

/* one item per (o, c) = i of the slice: u[p OC + i] = (G g G^T)[p],
 * g = w[w0 + 9i .. w0 + 9i + 8] (w float, or half if whalf) */
kernel void wino_filter(global float *u, global const float *w, int whalf, uint w0, uint OC) {
    const uint i = get_global_id(0);
    if (i >= OC) return;
    float t[3][6], r[6];
    const uint g = w0 + 9 * i; /* filter i of the slice */
    for (int s = 0; s < 3; s++) /* columns of G g */
        wg6(ldw(w, whalf, g + s), ldw(w, whalf, g + 3 + s), ldw(w, whalf, g + 6 + s), t[s]);
    for (int a = 0; a < 6; a++) {
        wg6(t[0][a], t[1][a], t[2][a], r);
        for (int s = 0; s < 6; s++) u[(uint)(a * 6 + s) * OC + i] = r[s];
    }
}

/* one item per (tile t of the chunk, channel c) */
kernel void wino_input(global float *s, uint vo, global const act_t *x, uint xo, int C, int H,
                       int W, int tw, int tpi, int g0, int T) {
    const int t = get_global_id(0), c = get_global_id(1);
    if (t >= T || c >= C) return;
    const int g = g0 + t, n = g / tpi, r = g % tpi;
    const int y0 = r / tw * 4 - 1, x0 = r % tw * 4 - 1;
    const uint base = xo + ((uint)n * C + c) * (uint)(H * W);
    float d[6][6], e[6][6];
    for (int i = 0; i < 6; i++) {
        const int yy = y0 + i;
        for (int j = 0; j < 6; j++) {
            const int xx = x0 + j;
            d[i][j] = yy >= 0 && yy < H && xx >= 0 && xx < W
                          ? LDA(x, base + (uint)(yy * W + xx)) : 0.0f;
        }
    }
    for (int j = 0; j < 6; j++) { /* e = B^T d, column by column */
        float o[6];
        wb6(d[0][j], d[1][j], d[2][j], d[3][j], d[4][j], d[5][j], o);
        for (int i = 0; i < 6; i++) e[i][j] = o[i];
    }
    for (int i = 0; i < 6; i++) { /* V = e B */
        float o[6];
        wb6(e[i][0], e[i][1], e[i][2], e[i][3], e[i][4], e[i][5], o);
        for (int j = 0; j < 6; j++) s[vo + ((uint)(i * 6 + j) * C + c) * (uint)T + t] = o[j];
    }
}

/* M[p][o][t] = sum_c U[p][o][c] V[p][c][t], p = get_group_id(2): gemm.cl's
 * tiling (a TM x TN tile per work-group, TK-deep slices in local memory,
 * RM x RN sums per item; m = tile, the fastest item index, n = output
 * channel). */
#define LX (TN / RN)
#define LY (TM / RM)
#define NT (LX * LY)
kernel __attribute__((reqd_work_group_size(LX, LY, 1))) void
wino_gemm(global float *s, uint vo, uint mo, global const float *u, int O, int C, int T) {
    local float As[TK][TM + 1], Bs[TK][TN + 1];
    const int tx = get_local_id(0), ty = get_local_id(1), lid = ty * LX + tx;
    const int m0 = get_group_id(0) * TM, n0 = get_group_id(1) * TN, p = get_group_id(2);
    const uint vb = vo + (uint)p * C * T, mb = mo + (uint)p * O * T, ub = (uint)p * O * C;
    float r[RM][RN];
    for (int i = 0; i < RM; i++)
        for (int j = 0; j < RN; j++) r[i][j] = 0.0f;
    for (int k0 = 0; k0 < C; k0 += TK) {
        for (int e = lid; e < TM * TK; e += NT) {
            const int mm = e % TM, kk = e / TM, m = m0 + mm, k = k0 + kk;
            As[kk][mm] = m < T && k < C ? s[vb + (uint)k * T + m] : 0.0f;
        }
        for (int e = lid; e < TN * TK; e += NT) {
            const int kk = e % TK, nn = e / TK, n = n0 + nn, k = k0 + kk;
            Bs[kk][nn] = n < O && k < C ? u[ub + (uint)n * C + k] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        tile_fma(As, Bs, r, tx, LX, ty, LY);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int i = 0; i < RM; i++)
        for (int j = 0; j < RN; j++) {
            const int m = m0 + tx + i * LX, n = n0 + ty + j * LY;
            if (m < T && n < O) s[mb + (uint)n * T + m] = r[i][j];
        }
}

/* one item per (tile t of the chunk, output channel o of the slice that
 * starts at o0 of Oall): the 4x4 outputs inside the map,
 * y = acc + (A^T M A + bias) */
kernel void wino_output(global act_t *y, uint yo, global const float *s, uint mo,
                        global const float *bias, int bias_half, int has_bias,
                        global const act_t *acc, uint acco, int has_acc, int O, int o0,
                        int Oall, int H, int W, int tw, int tpi, int g0, int T) {
    const int t = get_global_id(0), o = get_global_id(1);
    if (t >= T || o >= O) return;
    float m[6][6], e[4][6];
    for (int p = 0; p < 36; p++) m[p / 6][p % 6] = s[mo + ((uint)p * O + o) * (uint)T + t];
    for (int j = 0; j < 6; j++) { /* e = A^T M, column by column */
        float q[4];
        wa4(m[0][j], m[1][j], m[2][j], m[3][j], m[4][j], m[5][j], q);
        for (int i = 0; i < 4; i++) e[i][j] = q[i];
    }
    const int g = g0 + t, n = g / tpi, r = g % tpi, y0 = r / tw * 4, x0 = r % tw * 4;
    const float bv = has_bias ? ldw(bias, bias_half, o0 + o) : 0.0f;
    const uint ob = ((uint)n * Oall + o0 + o) * (uint)(H * W);
    for (int i = 0; i < 4; i++) {
        float q[4];
        wa4(e[i][0], e[i][1], e[i][2], e[i][3], e[i][4], e[i][5], q);
        if (y0 + i >= H) break;
        for (int j = 0; j < 4 && x0 + j < W; j++) {
            const uint k = ob + (uint)((y0 + i) * W + x0 + j);
            float v = q[j] + bv;
            if (has_acc) v = LDA(acc, acco + k) + v;
            STA(y, yo + k, v);
        }
    }
}
