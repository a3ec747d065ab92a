/* conv2d 3x3, stride 1, pad 1 by Winograd F(4x4, 3x3) (kernels/winograd.cl):
 * 36 multiplies per 4x4 outputs and channel pair instead of 144.
 *   U = G g G^T   [36, Ob, C]  fp32, for a slice of Ob output channels, made
 *                 per call in its own scratch (b->wscratch_u): kept per
 *                 weight, U would be 4x an F32 weight's bytes and 8x an F16
 *                 one's (~9 GB for SD's UNet); per call it costs about
 *                 100/(72 T) of the product, under 1% from 32x32 maps;
 *   V = B^T d B   [36, C, T]  for a chunk of T tiles (of all images),
 *   M[p] = U[p] V[p]  [36, Ob, T]  (the batched, tiled GEMM),
 *   y = A^T M A + bias (+ acc), stored inside the map.
 * V and M live in the Winograd scratch (b->wscratch): a chunk is the tiles
 * that fit, 144 (C + Ob) bytes each, a multiple of the GEMM's tile.  Both
 * scratch buffers are made with the backend: nothing is allocated here. */
#if SDC_HAVE_OPENCL
#include <stdio.h>

#include "backends/opencl/cl_impl.h"

/* wino_gemm's tiles: those of gemm.cl (cl_ops.c) */
#define WG_TM 64
#define WG_TN 64
#define WG_TK 16
#define WG_R 4
#define WG_L (WG_TM / WG_R)
#define WG_LOCAL 64 /* the transforms' work-group, along the tiles */

static cl_kernel wino_kernel(clb *b, const char *name) {
    char opts[96];
    snprintf(opts, sizeof opts, "-DTM=%d -DTN=%d -DTK=%d -DRM=%d -DRN=%d", WG_TM, WG_TN, WG_TK,
             WG_R, WG_R);
    return clb_kernel_get(b, "winograd", opts, name);
}

/* U of output channels [o0, o0 + ob) of w into b->wscratch_u. */
static void wino_filter(clb *b, const sdc_weight *w, int o0, int ob, int C) {
    int half = 0;
    cl_mem wm = clb_weight_get(b, w, &half);
    if (!wm) return;
    const size_t oc = (size_t)ob * C, local = WG_LOCAL;
    clb_args a = clb_args_start(b, wino_kernel(b, "wino_filter"));
    clb_arg_mem(&a, b->wscratch_u);
    clb_arg_mem(&a, wm);
    clb_arg_i32(&a, half);
    clb_arg_u32(&a, (cl_uint)((size_t)o0 * C * 9));
    clb_arg_u32(&a, (cl_uint)oc);
    clb_launch(&a, 1, &oc, &local);
}

/* The transforms' trailing arguments: the map, its tiles, the chunk. */
static void tile_args(clb_args *a, int H, int W, int tw, int tpi, int64_t g0, int t) {
    clb_arg_i32(a, H);
    clb_arg_i32(a, W);
    clb_arg_i32(a, tw);
    clb_arg_i32(a, tpi);
    clb_arg_i32(a, (cl_int)g0);
    clb_arg_i32(a, t);
}

int clb_conv_winograd(clb *b, float *y, const float *x, int N, int C, int H, int W,
                      const sdc_weight *w, const sdc_weight *bias, int O, const float *acc) {
    const int th = (H + 3) / 4, tw = (W + 3) / 4, tpi = th * tw;
    const int64_t nt = (int64_t)N * tpi;
    /* the O slice: U's scratch holds it, a multiple of the GEMM's tile */
    int64_t ob = (int64_t)(b->wscratch_u_bytes / ((size_t)144 * C));
    if (ob >= WG_TN) ob -= ob % WG_TN;
    if (ob > O) ob = O;
    const int64_t per_tile = 144 * ((int64_t)C + ob);
    int64_t cap = (int64_t)(b->wscratch_bytes / (size_t)per_tile);
    if (cap >= WG_TM) cap -= cap % WG_TM;
    /* every offset in 32 bits: the kernels index with uint */
    if (!b->wscratch || !b->wscratch_u || ob < 1 || cap < 1 || nt > INT32_MAX ||
        (int64_t)O * C * 9 > UINT32_MAX || (int64_t)N * O * H * W > UINT32_MAX)
        return 0; /* the implicit GEMM */
    const int T = (int)(nt < cap ? nt : cap);
    cl_kernel kin = wino_kernel(b, "wino_input"), kmm = wino_kernel(b, "wino_gemm");
    cl_kernel kout = wino_kernel(b, "wino_output");
    const cl_uint vo = 0, mo = (cl_uint)(36 * (int64_t)C * T);
    for (int o0 = 0; o0 < O && !b->failed; o0 += (int)ob) {
        const int os = (int)(O - o0 < ob ? O - o0 : ob);
        wino_filter(b, w, o0, os, C);
        for (int64_t g0 = 0; g0 < nt && !b->failed; g0 += T) {
            const int t = (int)(nt - g0 < T ? nt - g0 : T);
            clb_args a = clb_args_start(b, kin);
            clb_arg_mem(&a, b->wscratch);
            clb_arg_u32(&a, vo);
            clb_arg_act(&a, x);
            clb_arg_i32(&a, C);
            tile_args(&a, H, W, tw, tpi, g0, t);
            const size_t gin[2] = {(size_t)t, (size_t)C}, lin[2] = {WG_LOCAL, 1};
            clb_launch(&a, 2, gin, lin);

            a = clb_args_start(b, kmm);
            clb_arg_mem(&a, b->wscratch);
            clb_arg_u32(&a, vo);
            clb_arg_u32(&a, mo);
            clb_arg_mem(&a, b->wscratch_u);
            clb_arg_i32(&a, os);
            clb_arg_i32(&a, C);
            clb_arg_i32(&a, t);
            const size_t gmm[3] = {(size_t)(t + WG_TM - 1) / WG_TM * WG_L,
                                   (size_t)(os + WG_TN - 1) / WG_TN * WG_L, 36};
            const size_t lmm[3] = {WG_L, WG_L, 1};
            clb_launch(&a, 3, gmm, lmm);

            a = clb_args_start(b, kout);
            clb_arg_act(&a, y);
            clb_arg_mem(&a, b->wscratch);
            clb_arg_u32(&a, mo);
            clb_arg_w(&a, bias);
            clb_arg_act(&a, acc);
            clb_arg_i32(&a, acc != NULL);
            clb_arg_i32(&a, os);
            clb_arg_i32(&a, o0);
            clb_arg_i32(&a, O);
            tile_args(&a, H, W, tw, tpi, g0, t);
            const size_t gout[2] = {(size_t)t, (size_t)os}, lout[2] = {WG_LOCAL, 1};
            clb_launch(&a, 2, gout, lout);
        }
    }
    return 1;
}
#else
typedef int sdc_cl_winograd_unused; /* built without OpenCL: opencl_stub.c */
#endif
