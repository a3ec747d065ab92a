/* The reference ops: plain loops that follow the formulas in backend.h,
 * single-threaded, dot products accumulated in double.  Every fast path is
 * tested against these, and these against PyTorch (tests/test_ops.c). */
#include <math.h>
#include <string.h>

#include "backends/ref.h"

void sdc_ref_linear(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                    const sdc_weight *b, const float *acc, int M, int N, int K) {
    (void)be;
    for (int m = 0; m < M; m++) {
        const float *xm = x + (int64_t)m * K;
        for (int n = 0; n < N; n++) {
            double s = b ? sdc_weight_get(b, n) : 0.0;
            for (int k = 0; k < K; k++) s += (double)xm[k] * sdc_weight_get(W, (int64_t)n * K + k);
            int64_t i = (int64_t)m * N + n;
            y[i] = acc ? acc[i] + (float)s : (float)s;
        }
    }
}

void sdc_ref_linear_map(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                        const sdc_weight *b, const float *acc, int N, int HW, int C, int O,
                        int to_tokens) {
    (void)be;
    for (int n = 0; n < N; n++)
        for (int p = 0; p < HW; p++)
            for (int o = 0; o < O; o++) {
                double s = b ? sdc_weight_get(b, o) : 0.0;
                for (int c = 0; c < C; c++) {
                    /* x [N, C, HW] (to tokens) or [N, HW, C] */
                    float xv = to_tokens ? x[((int64_t)n * C + c) * HW + p]
                                         : x[((int64_t)n * HW + p) * C + c];
                    s += (double)xv * sdc_weight_get(W, (int64_t)o * C + c);
                }
                int64_t i = to_tokens ? ((int64_t)n * HW + p) * O + o : ((int64_t)n * O + o) * HW + p;
                y[i] = acc && !to_tokens ? acc[i] + (float)s : (float)s;
            }
}

/* Direct convolution, each output a double sum over (c, ky, kx) in that
 * order.  The loops run a chunk of output columns at a time (the sums of a
 * row segment side by side, each weight read once per segment), which
 * leaves every output's sum and its order as in the plain nest. */
#define REF_CONV_COLS 64

void sdc_ref_conv2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                    const sdc_weight *w, const sdc_weight *b, int O, int kh, int kw, int stride,
                    int pad, const float *acc) {
    (void)be;
    int Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    double s[REF_CONV_COLS];
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox0 = 0; ox0 < Wo; ox0 += REF_CONV_COLS) {
                    const int nc = Wo - ox0 < REF_CONV_COLS ? Wo - ox0 : REF_CONV_COLS;
                    const double bias = b ? sdc_weight_get(b, o) : 0.0;
                    for (int j = 0; j < nc; j++) s[j] = bias;
                    for (int c = 0; c < C; c++)
                        for (int ky = 0; ky < kh; ky++) {
                            int iy = oy * stride - pad + ky;
                            if (iy < 0 || iy >= H) continue;
                            const float *xr = x + (((int64_t)n * C + c) * H + iy) * W;
                            for (int kx = 0; kx < kw; kx++) {
                                /* the columns whose input ix = ox*stride - pad + kx is in
                                 * [0, W) */
                                int lo = 0, hi = nc;
                                while (lo < nc && (ox0 + lo) * stride - pad + kx < 0) lo++;
                                while (hi > lo && (ox0 + hi - 1) * stride - pad + kx >= W) hi--;
                                if (lo >= hi) continue;
                                const double wv =
                                    sdc_weight_get(w, (((int64_t)o * C + c) * kh + ky) * kw + kx);
                                const int64_t ix0 = (int64_t)ox0 * stride - pad + kx;
                                for (int j = lo; j < hi; j++)
                                    s[j] += (double)xr[ix0 + (int64_t)j * stride] * wv;
                            }
                        }
                    int64_t i = (((int64_t)n * O + o) * Ho + oy) * Wo + ox0;
                    for (int j = 0; j < nc; j++)
                        y[i + j] = acc ? acc[i + j] + (float)s[j] : (float)s[j];
                }
}

void sdc_ref_group_norm(sdc_backend *be, float *y, const float *x, const float *add, int N, int C,
                        int HW, int G, const sdc_weight *gamma, const sdc_weight *beta,
                        float eps, int silu) {
    (void)be;
    int cg = C / G;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            int64_t base = ((int64_t)n * C + (int64_t)g * cg) * HW, cnt = (int64_t)cg * HW;
            /* the value normalised: x + a, a = add[n, c] (0 without add) */
#define GN_A(i) (add ? (double)add[(int64_t)n * C + g * cg + (i) / HW] : 0.0)
            double mean = 0, var = 0;
            for (int64_t i = 0; i < cnt; i++) mean += x[base + i] + GN_A(i);
            mean /= (double)cnt;
            for (int64_t i = 0; i < cnt; i++) {
                double d = x[base + i] + GN_A(i) - mean;
                var += d * d;
            }
#undef GN_A
            var /= (double)cnt;
            float rstd = (float)(1.0 / sqrt(var + eps));
            for (int cc = 0; cc < cg; cc++) {
                int c = g * cg + cc;
                float ga = gamma ? sdc_weight_get(gamma, c) : 1.0f;
                float be_ = beta ? sdc_weight_get(beta, c) : 0.0f;
                /* x + a - mean as x - (mean - a) */
                float fmean = (float)(mean - (add ? (double)add[(int64_t)n * C + c] : 0.0));
                for (int64_t i = 0; i < HW; i++) {
                    int64_t j = base + (int64_t)cc * HW + i;
                    float v = (x[j] - fmean) * rstd * ga + be_;
                    y[j] = silu ? v / (1.0f + expf(-v)) : v;
                }
            }
        }
}

void sdc_ref_layer_norm(sdc_backend *be, float *y, const float *x, int rows, int D,
                        const sdc_weight *gamma, const sdc_weight *beta, float eps) {
    (void)be;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (int64_t)r * D;
        float *yr = y + (int64_t)r * D;
        double mean = 0, var = 0;
        for (int i = 0; i < D; i++) mean += xr[i];
        mean /= D;
        for (int i = 0; i < D; i++) var += (xr[i] - mean) * (xr[i] - mean);
        var /= D;
        float fmean = (float)mean, rstd = (float)(1.0 / sqrt(var + eps));
        for (int i = 0; i < D; i++) {
            float v = (xr[i] - fmean) * rstd;
            yr[i] = v * (gamma ? sdc_weight_get(gamma, i) : 1.0f) + (beta ? sdc_weight_get(beta, i) : 0.0f);
        }
    }
}

/* Per query: m = max_j s_j; out = sum_j exp(s_j - m) v_j / sum_j exp(s_j - m),
 * s_j = scale * q·k_j over the unmasked keys; head dims in chunks of
 * REF_DCHUNK (scores recomputed per chunk). */
#define REF_DCHUNK 512
void sdc_ref_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                       const float *k, const float *v, int kv_stride, int Sq, int Sk, int heads,
                       int dh, float scale, int causal) {
    (void)be;
    double acc[REF_DCHUNK];
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < Sq; i++) {
            const float *qi = q + (int64_t)i * q_stride + (int64_t)h * dh;
            int nk = causal ? (i + 1 < Sk ? i + 1 : Sk) : Sk;
            double m = -INFINITY;
            for (int j = 0; j < nk; j++) {
                const float *kj = k + (int64_t)j * kv_stride + (int64_t)h * dh;
                double s = 0;
                for (int d = 0; d < dh; d++) s += (double)qi[d] * kj[d];
                s *= scale;
                if (s > m) m = s;
            }
            for (int d0 = 0; d0 < dh; d0 += REF_DCHUNK) {
                int nd = dh - d0 < REF_DCHUNK ? dh - d0 : REF_DCHUNK;
                double l = 0;
                for (int d = 0; d < nd; d++) acc[d] = 0;
                for (int j = 0; j < nk; j++) {
                    const float *kj = k + (int64_t)j * kv_stride + (int64_t)h * dh;
                    const float *vj = v + (int64_t)j * kv_stride + (int64_t)h * dh + d0;
                    double s = 0;
                    for (int d = 0; d < dh; d++) s += (double)qi[d] * kj[d];
                    double p = exp(s * scale - m);
                    l += p;
                    for (int d = 0; d < nd; d++) acc[d] += p * vj[d];
                }
                float *oi = out + (int64_t)i * heads * dh + (int64_t)h * dh + d0;
                for (int d = 0; d < nd; d++) oi[d] = nk > 0 ? (float)(acc[d] / l) : 0.0f;
            }
        }
}

void sdc_ref_silu(sdc_backend *be, float *y, const float *x, int64_t n) {
    (void)be;
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

void sdc_ref_gelu(sdc_backend *be, float *y, const float *x, int64_t n) {
    (void)be;
    for (int64_t i = 0; i < n; i++) y[i] = sdc_ref_gelu1(x[i]);
}

void sdc_ref_quick_gelu(sdc_backend *be, float *y, const float *x, int64_t n) {
    (void)be;
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

/* torch.relu: a NaN input stays NaN (x < 0 is false for it) */
void sdc_ref_relu(sdc_backend *be, float *y, const float *x, int64_t n) {
    (void)be;
    for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void sdc_ref_add(sdc_backend *be, float *y, const float *a, const float *b, int64_t n) {
    (void)be;
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void sdc_ref_lerp(sdc_backend *be, float *y, const float *a, const float *b, float s,
                  int64_t n) {
    (void)be;
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + s * (b[i] - a[i]);
}

void sdc_ref_axpby(sdc_backend *be, float *y, float a, const float *x, float b, const float *z,
                   int64_t n) {
    (void)be;
    if (z)
        for (int64_t i = 0; i < n; i++) y[i] = a * x[i] + b * z[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] = a * x[i];
}

void sdc_ref_geglu(sdc_backend *be, float *y, const float *x, int rows, int D) {
    (void)be;
    for (int r = 0; r < rows; r++) {
        const float *h = x + (int64_t)r * 2 * D, *gate = h + D;
        for (int i = 0; i < D; i++) y[(int64_t)r * D + i] = h[i] * sdc_ref_gelu1(gate[i]);
    }
}

void sdc_ref_upsample2x(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W) {
    (void)be;
    for (int64_t nc = 0; nc < (int64_t)N * C; nc++)
        for (int oy = 0; oy < 2 * H; oy++)
            for (int ox = 0; ox < 2 * W; ox++)
                y[(nc * 2 * H + oy) * 2 * W + ox] = x[(nc * H + oy / 2) * W + ox / 2];
}

void sdc_ref_pad2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                   int top, int bottom, int left, int right) {
    (void)be;
    int Hp = H + top + bottom, Wp = W + left + right;
    for (int64_t nc = 0; nc < (int64_t)N * C; nc++)
        for (int oy = 0; oy < Hp; oy++)
            for (int ox = 0; ox < Wp; ox++) {
                int iy = oy - top, ix = ox - left;
                y[(nc * Hp + oy) * Wp + ox] =
                    iy >= 0 && iy < H && ix >= 0 && ix < W ? x[(nc * H + iy) * W + ix] : 0.0f;
            }
}

void sdc_ref_transpose(sdc_backend *be, float *y, const float *x, int N, int H, int W) {
    (void)be;
    for (int64_t n = 0; n < N; n++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++)
                y[(n * W + j) * H + i] = x[(n * H + i) * W + j];
}

void sdc_ref_concat(sdc_backend *be, float *y, const float *a, int Ca, const float *b, int Cb,
                    int N, int HW) {
    (void)be;
    for (int64_t n = 0; n < N; n++) {
        float *yn = y + n * (Ca + Cb) * (int64_t)HW;
        for (int64_t i = 0; i < (int64_t)Ca * HW; i++) yn[i] = a[n * Ca * HW + i];
        for (int64_t i = 0; i < (int64_t)Cb * HW; i++) yn[(int64_t)Ca * HW + i] = b[n * Cb * HW + i];
    }
}

void sdc_ref_copy(sdc_backend *be, float *y, const float *x, int64_t n) {
    (void)be;
    if (n > 0 && y != x) memmove(y, x, (size_t)n * sizeof *y);
}

void sdc_ref_embed(sdc_backend *be, float *y, const int32_t *ids, int n, const sdc_weight *table,
                   const sdc_weight *pos, int D) {
    (void)be;
    for (int i = 0; i < n; i++)
        for (int d = 0; d < D; d++) {
            float v = sdc_weight_get(table, (int64_t)ids[i] * D + d);
            if (pos) v += sdc_weight_get(pos, (int64_t)i * D + d);
            y[(int64_t)i * D + d] = v;
        }
}

/* float32 throughout, in PyTorch's order: e_i = (-ln(10000) * i) / half;
 * f_i = exp(e_i); a = t * f_i; y = [cos(a), sin(a)] (+ a zero column if dim
 * is odd). */
void sdc_ref_timestep_embed(sdc_backend *be, float *y, const float *t, int n, int dim) {
    (void)be;
    int half = dim / 2;
    const float neg_ln = (float)-9.210340371976184; /* -ln(10000) */
    for (int r = 0; r < n; r++) {
        float *yr = y + (int64_t)r * dim;
        for (int i = 0; i < half; i++) {
            float e = neg_ln * (float)i;
            e = e / (float)half;
            float a = t[r] * expf(e);
            yr[i] = cosf(a);
            yr[half + i] = sinf(a);
        }
        if (dim % 2) yr[dim - 1] = 0.0f;
    }
}
