/* The Winograd F(4x4, 3x3) and F(2x2, 3x3) transforms, written once over blocks of WB = 16
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
 * stride 4 (cross-correlation, as conv2d).
 *
 * F(2x2, 3x3), points 0, 1, -1, inf (the sdc_wino2_* functions, same
 * interfaces with 16 points xi = 4a + b and 2x2 output tiles):
 *   B^T = [1 0 -1 0;  0 1 1 0;  0 -1 1 0;  0 1 0 -1]
 *   G   = [1 0 0;  1/2 1/2 1/2;  1/2 -1/2 1/2;  0 0 1]
 *   A^T = [1 1 1 0;  0 1 -1 -1]
 * d the 4x4 input tile at stride 2: 16 products per 4 outputs (2.25x fewer
 * multiplies than direct, 4x for F(4x4)), but 4x the tiles of F(4x4) on a
 * map, which is what the UNet's 8x8 maps need (winograd.c). */
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

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

#ifndef SDC_WINOGRAD_TF_TYPES
#define SDC_WINOGRAD_TF_TYPES
/* The lanes of a block of WB tiles in runs that share an image and a tile
 * row: each run reads its input rows once (zero-padded) and splits them
 * into its tiles. */
typedef struct wino_segs {
    int j0[WB + 1], y0[WB], x0[WB], n;
    int64_t img[WB];
} wino_segs;
#endif

/* The runs of tiles t0 .. t0+WB (of NT; tile t: image t / T, tile t % T of
 * its image, tw tiles per row, ts outputs per tile side; pad 1). */
static inline void WINO_FN(segs)(wino_segs *sg, int C, int H, int W, int tw, int T, int NT, int t0,
                                 int ts) {
    sg->n = 0;
    sg->j0[0] = 0;
    for (int j = 0; j < WB && t0 + j < NT; j++) {
        int t = t0 + j, tt = t % T;
        if (j == 0 || tt % tw == 0) {
            sg->j0[sg->n] = j;
            sg->img[sg->n] = (int64_t)(t / T) * C * H * W;
            sg->y0[sg->n] = (tt / tw) * ts - 1;
            sg->x0[sg->n] = (tt % tw) * ts - 1;
            sg->n++;
        }
        sg->j0[sg->n] = j + 1;
    }
}

/* d[r*a + s][j] = the a x a input tile (stride ts) of lane j, channel c. */
#if defined(__AVX512F__) && WB == 16
/* AVX-512: a segment's input row (ts*n + a - ts <= 80 values) in five zmm
 * by masked loads (zero outside the image: the masked-off lanes are not
 * read), then each tile column s picked out by permutes: lane j takes
 * value ts*(j - j0) + s, from zmm 0-1, 2-3 or 4 (32-value windows).  The
 * scalar form below copied and scattered the values one by one. */
static inline __attribute__((always_inline)) void
WINO_FN(gather)(const float *x, const wino_segs *sg, int c, int H, int W, int ts, int a,
                float (*d)[WB]) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i w32 = _mm512_set1_epi32(32), w64 = _mm512_set1_epi32(64);
    for (int g = 0; g < sg->n; g++) {
        const float *p = x + sg->img[g] + (int64_t)c * H * W;
        const int j0 = sg->j0[g], n = sg->j0[g + 1] - j0, xa = sg->x0[g], len = ts * n + a - ts;
        const int lo = xa < 0 ? -xa : 0, hi = W - xa < len ? W - xa : len; /* values inside */
        const __mmask16 mseg = (__mmask16)(((1u << n) - 1) << j0);
        const __m512i pos0 = _mm512_mullo_epi32(_mm512_sub_epi32(lane, _mm512_set1_epi32(j0)),
                                                _mm512_set1_epi32(ts));
        for (int r = 0; r < a; r++) {
            const int yy = sg->y0[g] + r;
            __m512 b[5];
            for (int q = 0; q < 5; q++) {
                const int i0 = 16 * q, l0 = lo > i0 ? lo - i0 : 0, l1 = hi - i0 < 16 ? hi - i0 : 16;
                __mmask16 m = l1 > l0 ? (__mmask16)(((1u << (l1 - l0)) - 1) << l0) : 0;
                if (yy < 0 || yy >= H) m = 0;
                /* value i0 + l at column xa + i0 + l of row yy (an address, not a
                 * pointer into x, where xa + i0 < 0: lanes there are masked off) */
                const uintptr_t at = (uintptr_t)(p + (int64_t)(yy < 0 ? 0 : yy) * W) +
                                     (uintptr_t)((int64_t)(xa + i0) * (int64_t)sizeof(float));
                b[q] = _mm512_maskz_loadu_ps(m, (const void *)at);
            }
            for (int s = 0; s < a; s++) {
                const __m512i pos = _mm512_add_epi32(pos0, _mm512_set1_epi32(s));
                __m512 t = _mm512_permutex2var_ps(b[0], pos, b[1]);
                t = _mm512_mask_mov_ps(t, _mm512_cmpge_epi32_mask(pos, w32),
                                       _mm512_permutex2var_ps(b[2], pos, b[3]));
                t = _mm512_mask_mov_ps(t, _mm512_cmpge_epi32_mask(pos, w64),
                                       _mm512_permutexvar_ps(pos, b[4]));
                _mm512_mask_storeu_ps(d[r * a + s], mseg, t);
            }
        }
    }
}
#else
static inline __attribute__((always_inline)) void
WINO_FN(gather)(const float *x, const wino_segs *sg, int c, int H, int W, int ts, int a,
                float (*d)[WB]) {
    for (int g = 0; g < sg->n; g++) {
        const float *p = x + sg->img[g] + (int64_t)c * H * W;
        const int j0 = sg->j0[g], n = sg->j0[g + 1] - j0, xa = sg->x0[g], len = ts * n + a - ts;
        const int full = xa >= 0 && xa + len <= W;
        for (int r = 0; r < a; r++) {
            float buf[4 * WB + 4];
            int yy = sg->y0[g] + r;
            if (yy < 0 || yy >= H) {
                memset(buf, 0, sizeof buf);
            } else if (full) {
                memcpy(buf, p + (int64_t)yy * W + xa, (size_t)len * sizeof buf[0]);
            } else {
                for (int i = 0; i < len; i++)
                    buf[i] = xa + i >= 0 && xa + i < W ? p[(int64_t)yy * W + xa + i] : 0.0f;
            }
            for (int jj = 0; jj < n; jj++)
                for (int s = 0; s < a; s++) d[r * a + s][j0 + jj] = buf[ts * jj + s];
        }
    }
}
#endif

/* V[xi*xs + c*cs + jofs + j] (xi = 6a + b) for the WB tiles t0 .. t0+WB
 * of the NT = N*T tiles of the images x [N][C, H, W] (tile t: image t / T,
 * tile t % T of its image; pad 1; tiles past NT are 0). */
void WINO_FN(sdc_wino_input)(const float *x, int C, int H, int W, int tw, int T, int NT, int t0,
                             float *v, int64_t xs, int64_t cs, int jofs) {
    wino_segs sg;
    WINO_FN(segs)(&sg, C, H, W, tw, T, NT, t0, 4);
    float d[36][WB], tr[36][WB], u[36][WB];
    memset(d, 0, sizeof d); /* lanes past NT stay 0 */
    for (int c = 0; c < C; c++) {
        WINO_FN(gather)(x, &sg, c, H, W, 4, 6, d);
        for (int s6 = 0; s6 < 6; s6++)
            WINO_FN(bt6)(tr + s6, (const float(*)[WB])d + s6, 6, 6); /* rows */
        for (int a6 = 0; a6 < 6; a6++)
            WINO_FN(bt6)(u + a6 * 6, (const float(*)[WB])tr + a6 * 6, 1, 1);
        for (int xi = 0; xi < 36; xi++)
            memcpy(v + xi * xs + (int64_t)c * cs + jofs, u[xi], sizeof u[xi]);
    }
}

/* F(2x2): as sdc_wino_input with 4x4 tiles at stride 2, xi = 4a + b. */
void WINO_FN(sdc_wino2_input)(const float *x, int C, int H, int W, int tw, int T, int NT, int t0,
                              float *v, int64_t xs, int64_t cs, int jofs) {
    wino_segs sg;
    WINO_FN(segs)(&sg, C, H, W, tw, T, NT, t0, 2);
    float d[16][WB], tr[16][WB];
    memset(d, 0, sizeof d);
    for (int c = 0; c < C; c++) {
        WINO_FN(gather)(x, &sg, c, H, W, 2, 4, d);
        for (int s = 0; s < 4; s++) /* columns: tr = B^T d */
            for (int j = 0; j < WB; j++) {
                float d0 = d[s][j], d1 = d[4 + s][j], d2 = d[8 + s][j], d3 = d[12 + s][j];
                tr[s][j] = d0 - d2;
                tr[4 + s][j] = d1 + d2;
                tr[8 + s][j] = d2 - d1;
                tr[12 + s][j] = d1 - d3;
            }
        float *o = v + (int64_t)c * cs + jofs;
        for (int r = 0; r < 4; r++) /* rows: (B^T d) B */
            for (int j = 0; j < WB; j++) {
                float d0 = tr[4 * r][j], d1 = tr[4 * r + 1][j], d2 = tr[4 * r + 2][j],
                      d3 = tr[4 * r + 3][j];
                o[(4 * r) * xs + j] = d0 - d2;
                o[(4 * r + 1) * xs + j] = d1 + d2;
                o[(4 * r + 2) * xs + j] = d2 - d1;
                o[(4 * r + 3) * xs + j] = d1 - d3;
            }
    }
}

/* gi[k][j] = tap k of filter j (g = [n][9]), 0 for j >= n. */
static inline void WINO_FN(load_g)(float (*gi)[WB], const float *g, int n) {
    if (n == WB) {
#if defined(__AVX512F__) && WB == 16
        const __m512i idx = _mm512_setr_epi32(0, 9, 18, 27, 36, 45, 54, 63, 72, 81, 90, 99, 108,
                                              117, 126, 135);
        for (int k = 0; k < 9; k++) _mm512_storeu_ps(gi[k], _mm512_i32gather_ps(idx, g + k, 4));
#elif defined(__AVX2__) && WB == 16
        const __m256i idx = _mm256_setr_epi32(0, 9, 18, 27, 36, 45, 54, 63);
        for (int k = 0; k < 9; k++) {
            _mm256_storeu_ps(gi[k], _mm256_i32gather_ps(g + k, idx, 4));
            _mm256_storeu_ps(gi[k] + 8, _mm256_i32gather_ps(g + 72 + k, idx, 4));
        }
#else
        for (int j = 0; j < WB; j++)
            for (int k = 0; k < 9; k++) gi[k][j] = g[j * 9 + k];
#endif
    } else {
        for (int k = 0; k < 9; k++)
            for (int j = 0; j < WB; j++) gi[k][j] = j < n ? g[j * 9 + k] : 0.0f;
    }
}

/* u[xi*xs + j*mr] = q[xi][j] for the points xi < npt and lanes j < n. */
static inline void WINO_FN(store_u)(const float (*q)[WB], int npt, int n, float *u, int64_t xs,
                                    int mr) {
    if (mr == 1 && n == WB) /* channel rows (the panel path): whole vectors */
        for (int xi = 0; xi < npt; xi++)
            memcpy(u + xi * xs, q[xi], sizeof q[xi]);
    else if (mr == 1)
        for (int xi = 0; xi < npt; xi++)
            for (int j = 0; j < n; j++)
                u[xi * xs + j] = q[xi][j];
    else
        for (int xi = 0; xi < npt; xi++)
            for (int j = 0; j < n; j++)
                u[xi * xs + (int64_t)j * mr] = q[xi][j];
}

/* The transformed filters of WB channels c0.. of one output channel:
 * g = [n][9] f32 (n <= WB channels), writes u[xi*xs + j*mr], j < n (mr:
 * the stride between channels, 1 for contiguous rows). */
void WINO_FN(sdc_wino_weight)(const float *g, int n, float *u, int64_t xs, int mr) {
    float gi[9][WB], h[18][WB], q[36][WB];
    WINO_FN(load_g)(gi, g, n);
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
    WINO_FN(store_u)((const float(*)[WB])q, 36, n, u, xs, mr);
}

/* F(2x2): as sdc_wino_weight, 16 points. */
void WINO_FN(sdc_wino2_weight)(const float *g, int n, float *u, int64_t xs, int mr) {
    float gi[9][WB], h[12][WB], q[16][WB];
    WINO_FN(load_g)(gi, g, n);
    for (int s = 0; s < 3; s++) /* h = G g: [4][3] */
        for (int j = 0; j < WB; j++) {
            float a = gi[s][j], b = gi[3 + s][j], c = gi[6 + s][j], ac = 0.5f * (a + c);
            h[0 * 3 + s][j] = a;
            h[1 * 3 + s][j] = ac + 0.5f * b;
            h[2 * 3 + s][j] = ac - 0.5f * b;
            h[3 * 3 + s][j] = c;
        }
    for (int r = 0; r < 4; r++) /* q = h G^T: [4][4] */
        for (int j = 0; j < WB; j++) {
            float a = h[r * 3][j], b = h[r * 3 + 1][j], c = h[r * 3 + 2][j], ac = 0.5f * (a + c);
            q[r * 4 + 0][j] = a;
            q[r * 4 + 1][j] = ac + 0.5f * b;
            q[r * 4 + 2][j] = ac - 0.5f * b;
            q[r * 4 + 3][j] = c;
        }
    WINO_FN(store_u)((const float(*)[WB])q, 16, n, u, xs, mr);
}

/* y (+ acc) at the ts x ts output tiles of lanes j (o[r*ts + s][j]), for
 * the tiles t0 .. of NT, as sdc_wino_output. */
static inline __attribute__((always_inline)) void
WINO_FN(scatter)(const float (*o)[WB], int ts, float *y, const float *acc, int Ho, int Wo, int tw,
                 int T, int NT, int t0, int64_t ys) {
    if (t0 + WB <= NT && t0 / T == (t0 + WB - 1) / T &&
        (t0 % T) / tw == (t0 % T + WB - 1) / tw) { /* one tile row of one image */
        int64_t io = (int64_t)(t0 / T) * ys;
        int tt = t0 % T;
        int oy = (tt / tw) * ts, ox = (tt % tw) * ts, n = Wo - ox < ts * WB ? Wo - ox : ts * WB;
        for (int r = 0; r < ts && oy + r < Ho; r++) {
            float buf[4 * WB];
            for (int j = 0; j < WB; j++)
                for (int s = 0; s < ts; s++)
                    buf[ts * j + s] = o[r * ts + s][j];
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
        int oy = (tt / tw) * ts, ox = (tt % tw) * ts;
        for (int r = 0; r < ts && oy + r < Ho; r++) {
            int64_t base = io + (int64_t)(oy + r) * Wo + ox;
            for (int s = 0; s < ts && ox + s < Wo; s++)
                y[base + s] = acc ? o[r * ts + s][j] + acc[base + s] : o[r * ts + s][j];
        }
    }
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
    WINO_FN(scatter)((const float(*)[WB])o, 4, y, acc, Ho, Wo, tw, T, NT, t0, ys);
}

/* F(2x2): as sdc_wino_output, 16 products m[xi*ms + j], 2x2 tiles. */
void WINO_FN(sdc_wino2_output)(const float *m, int64_t ms, float *y, const float *acc, float bias,
                               int Ho, int Wo, int tw, int T, int NT, int t0, int64_t ys) {
    float t[8][WB], o[4][WB];
    for (int s = 0; s < 4; s++) /* rows: t[2][4] = A^T M */
        for (int j = 0; j < WB; j++) {
            float m0 = m[s * ms + j], m1 = m[(4 + s) * ms + j], m2 = m[(8 + s) * ms + j],
                  m3 = m[(12 + s) * ms + j];
            t[s][j] = m0 + m1 + m2;
            t[4 + s][j] = m1 - m2 - m3;
        }
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < WB; j++) {
            float m0 = t[r * 4][j], m1 = t[r * 4 + 1][j], m2 = t[r * 4 + 2][j],
                  m3 = t[r * 4 + 3][j];
            o[r * 2 + 0][j] = m0 + m1 + m2 + bias;
            o[r * 2 + 1][j] = m1 - m2 - m3 + bias;
        }
    WINO_FN(scatter)((const float(*)[WB])o, 2, y, acc, Ho, Wo, tw, T, NT, t0, ys);
}

#undef WB
