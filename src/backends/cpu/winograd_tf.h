/* The Winograd F(4x4, 3x3) transforms, written once over blocks of WB = 16
 * lanes (tiles or channels) so that each ISA's compiler flags vectorise
 * them: included by winograd.c (portable) and winograd_avx2.c /
 * winograd_avx512.c with WINO_FN(name) defined to name the copy.
 *
 * Points 0, 1, -1, 2, -2, inf (Lavin & Gray 2015):
 *   B^T = [4  0 -5  0 1 0;  0 -4 -4  1 1 0;  0 4 -4 -1 1 0;
 *          0 -2 -1  2 1 0;  0  2 -1 -2 1 0;  0 4  0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
 *          1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0;  0 1 -1 2 -2 0;  0 1 1 4 4 0;  0 1 -1 8 -8 1]
 * y(4x4 tile) = A^T [ (G g G^T) (.) (B^T d B) ] A, d the 6x6 input tile at
 * stride 4 (cross-correlation, as conv2d). */
#include <stdint.h>
#include <string.h>

#define WB 16

/* one 6-point B^T column: out[i*os] from in[i*is], lanes j < WB */
static inline void WINO_FN(bt6)(float (*o)[WB], const float (*d)[WB], int os, int is) {
    for (int j = 0; j < WB; j++) {
        float d0 = d[0][j], d1 = d[is][j], d2 = d[2 * is][j], d3 = d[3 * is][j], d4 = d[4 * is][j],
              d5 = d[5 * is][j];
        o[0][j] = 4.0f * d0 - 5.0f * d2 + d4;
        o[os][j] = -4.0f * (d1 + d2) + d3 + d4;
        o[2 * os][j] = 4.0f * (d1 - d2) - d3 + d4;
        o[3 * os][j] = 2.0f * (d3 - d1) - d2 + d4;
        o[4 * os][j] = 2.0f * (d1 - d3) - d2 + d4;
        o[5 * os][j] = 4.0f * d1 - 5.0f * d3 + d5;
    }
}

/* V[xi*xs + c*cs + jofs + j] (xi = 6a + b) for the WB tiles t0 .. t0+WB
 * of the NT = N*T tiles of the images x [N][C, H, W] (tile t: image t / T,
 * tile t % T of its image; pad 1; tiles past NT are 0). */
void WINO_FN(sdc_wino_input)(const float *x, int C, int H, int W, int tw, int T, int NT, int t0,
                             float *v, int64_t xs, int64_t cs, int jofs) {
    /* the lanes in runs of tiles that share an image and a tile row: each
     * run reads its 6 input rows once (zero-padded) and splits them into
     * its tiles' columns 4j + s */
    int seg_j0[WB + 1], seg_y0[WB], seg_x0[WB], nseg = 0;
    int64_t seg_img[WB];
    for (int j = 0; j < WB && t0 + j < NT; j++) {
        int t = t0 + j, tt = t % T;
        if (j == 0 || tt % tw == 0 || tt == 0) {
            seg_j0[nseg] = j;
            seg_img[nseg] = (int64_t)(t / T) * C * H * W;
            seg_y0[nseg] = (tt / tw) * 4 - 1;
            seg_x0[nseg] = (tt % tw) * 4 - 1;
            nseg++;
        }
        seg_j0[nseg] = j + 1;
    }
    float d[36][WB], tr[36][WB], u[36][WB];
    memset(d, 0, sizeof d); /* lanes past NT stay 0 */
    for (int c = 0; c < C; c++) {
        for (int g = 0; g < nseg; g++) {
            const float *p = x + seg_img[g] + (int64_t)c * H * W;
            const int j0 = seg_j0[g], n = seg_j0[g + 1] - j0, xa = seg_x0[g], len = 4 * n + 2;
            const int full = xa >= 0 && xa + len <= W;
            for (int r = 0; r < 6; r++) {
                float buf[4 * WB + 4];
                int yy = seg_y0[g] + r;
                if (yy < 0 || yy >= H) {
                    memset(buf, 0, sizeof buf);
                } else if (full) {
                    memcpy(buf, p + (int64_t)yy * W + xa, (size_t)len * sizeof buf[0]);
                } else {
                    for (int i = 0; i < len; i++)
                        buf[i] = xa + i >= 0 && xa + i < W ? p[(int64_t)yy * W + xa + i] : 0.0f;
                }
                for (int jj = 0; jj < n; jj++)
                    for (int s6 = 0; s6 < 6; s6++) d[r * 6 + s6][j0 + jj] = buf[4 * jj + s6];
            }
        }
        for (int s6 = 0; s6 < 6; s6++)
            WINO_FN(bt6)(tr + s6, (const float(*)[WB])d + s6, 6, 6); /* rows */
        for (int a6 = 0; a6 < 6; a6++)
            WINO_FN(bt6)(u + a6 * 6, (const float(*)[WB])tr + a6 * 6, 1, 1);
        for (int xi = 0; xi < 36; xi++)
            memcpy(v + xi * xs + (int64_t)c * cs + jofs, u[xi], sizeof u[xi]);
    }
}

/* The transformed filters of WB channels c0.. of one output channel:
 * g = [n][9] f32 (n <= WB channels), writes u[xi*xs + j*mr], j < n (mr:
 * the stride between channels, 1 for contiguous rows). */
void WINO_FN(sdc_wino_weight)(const float *g, int n, float *u, int64_t xs, int mr) {
    float gi[9][WB], h[18][WB], q[36][WB];
    for (int k = 0; k < 9; k++)
        for (int j = 0; j < WB; j++)
            gi[k][j] = j < n ? g[j * 9 + k] : 0.0f;
    /* h = G g: [6][3], then q = h G^T: [6][6].  Multiplications by the
     * rounded reciprocals, the shared sums formed once: divisions cost ~5x
     * a multiply in throughput and the transform is redone per call (at
     * the UNet's 8x8 maps it rivals the products).  Within an ulp or two of
     * the divided form. */
    const float r6 = 1.0f / 6.0f, r12 = 1.0f / 12.0f, r24 = 1.0f / 24.0f;
    for (int s = 0; s < 3; s++)
        for (int j = 0; j < WB; j++) {
            float a = gi[s][j], b = gi[3 + s][j], c = gi[6 + s][j];
            float ac = a + c, e = a * r24 + c * r6, f = b * r12;
            h[0 * 3 + s][j] = 0.25f * a;
            h[1 * 3 + s][j] = -(ac + b) * r6;
            h[2 * 3 + s][j] = -(ac - b) * r6;
            h[3 * 3 + s][j] = e + f;
            h[4 * 3 + s][j] = e - f;
            h[5 * 3 + s][j] = c;
        }
    for (int r = 0; r < 6; r++)
        for (int j = 0; j < WB; j++) {
            float a = h[r * 3][j], b = h[r * 3 + 1][j], c = h[r * 3 + 2][j];
            float ac = a + c, e = a * r24 + c * r6, f = b * r12;
            q[r * 6 + 0][j] = 0.25f * a;
            q[r * 6 + 1][j] = -(ac + b) * r6;
            q[r * 6 + 2][j] = -(ac - b) * r6;
            q[r * 6 + 3][j] = e + f;
            q[r * 6 + 4][j] = e - f;
            q[r * 6 + 5][j] = c;
        }
    if (mr == 1 && n == WB) /* channel rows (the panel path): whole vectors */
        for (int xi = 0; xi < 36; xi++)
            memcpy(u + xi * xs, q[xi], sizeof q[xi]);
    else if (mr == 1)
        for (int xi = 0; xi < 36; xi++)
            for (int j = 0; j < n; j++)
                u[xi * xs + j] = q[xi][j];
    else
        for (int xi = 0; xi < 36; xi++)
            for (int j = 0; j < n; j++)
                u[xi * xs + (int64_t)j * mr] = q[xi][j];
}

/* y[o, tile] = acc + bias + A^T M A for the WB tiles t0.. (of NT = N*T,
 * as sdc_wino_input) of output channel o: m[xi*ms + j] the 36 products
 * (lanes j < WB), y/acc the [Ho, Wo] plane of channel o in image 0, the
 * planes of image n at n*ys further. */
void WINO_FN(sdc_wino_output)(const float *m, int64_t ms, float *y, const float *acc, float bias,
                              int Ho, int Wo, int tw, int T, int NT, int t0, int64_t ys) {
    float t[24][WB], o[16][WB];
    for (int s = 0; s < 6; s++) /* rows: t[4][6] = A^T M */
        for (int j = 0; j < WB; j++) {
            float m0 = m[(0 + s) * ms + j], m1 = m[(6 + s) * ms + j], m2 = m[(12 + s) * ms + j],
                  m3 = m[(18 + s) * ms + j], m4 = m[(24 + s) * ms + j], m5 = m[(30 + s) * ms + j];
            float p12 = m1 + m2, d12 = m1 - m2, p34 = m3 + m4, d34 = m3 - m4;
            t[0 * 6 + s][j] = m0 + p12 + p34;
            t[1 * 6 + s][j] = d12 + 2.0f * d34;
            t[2 * 6 + s][j] = p12 + 4.0f * p34;
            t[3 * 6 + s][j] = d12 + 8.0f * d34 + m5;
        }
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < WB; j++) {
            float m0 = t[r * 6][j], m1 = t[r * 6 + 1][j], m2 = t[r * 6 + 2][j],
                  m3 = t[r * 6 + 3][j], m4 = t[r * 6 + 4][j], m5 = t[r * 6 + 5][j];
            float p12 = m1 + m2, d12 = m1 - m2, p34 = m3 + m4, d34 = m3 - m4;
            o[r * 4 + 0][j] = m0 + p12 + p34 + bias;
            o[r * 4 + 1][j] = d12 + 2.0f * d34 + bias;
            o[r * 4 + 2][j] = p12 + 4.0f * p34 + bias;
            o[r * 4 + 3][j] = d12 + 8.0f * d34 + m5 + bias;
        }
    if (t0 + WB <= NT && t0 / T == (t0 + WB - 1) / T &&
        (t0 % T) / tw == (t0 % T + WB - 1) / tw) { /* one tile row of one image */
        int64_t io = (int64_t)(t0 / T) * ys;
        int tt = t0 % T;
        int oy = (tt / tw) * 4, ox = (tt % tw) * 4, n = Wo - ox < 4 * WB ? Wo - ox : 4 * WB;
        for (int r = 0; r < 4 && oy + r < Ho; r++) {
            float buf[4 * WB];
            for (int j = 0; j < WB; j++)
                for (int s = 0; s < 4; s++)
                    buf[4 * j + s] = o[r * 4 + s][j];
            int64_t base = io + (int64_t)(oy + r) * Wo + ox;
            if (acc)
                for (int i = 0; i < n; i++)
                    y[base + i] = buf[i] + acc[base + i];
            else
                memcpy(y + base, buf, (size_t)n * sizeof *buf);
        }
        return;
    }
    for (int j = 0; j < WB && t0 + j < NT; j++) {
        int64_t io = (int64_t)((t0 + j) / T) * ys;
        int tt = (t0 + j) % T;
        int oy = (tt / tw) * 4, ox = (tt % tw) * 4;
        for (int r = 0; r < 4 && oy + r < Ho; r++) {
            int64_t base = io + (int64_t)(oy + r) * Wo + ox;
            for (int s = 0; s < 4 && ox + s < Wo; s++)
                y[base + s] = acc ? o[r * 4 + s][j] + acc[base + s] : o[r * 4 + s][j];
        }
    }
}

#undef WB
