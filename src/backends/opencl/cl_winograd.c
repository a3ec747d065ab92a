/* conv2d 3x3, stride 1, pad 1 by Winograd F(4x4, 3x3) (kernels/winograd.cl):
 * 36 multiplies per 4x4 outputs and channel pair instead of 144.
 *   U = G g G^T   [36, O, C]  fp32, once per weight, kept beside its device
 *                 copy (4x an F32 weight's bytes, 8x an F16 one's: half U
 *                 was ~2e-3 off), freed with it;
 *   V = B^T d B   [36, C, T]  for a chunk of T tiles (of all images),
 *   M[p] = U[p] V[p]  [36, O, T]  (the batched, tiled GEMM),
 *   y = A^T M A + bias (+ acc), stored inside the map.
 * V and M live in the Winograd scratch (b->wscratch, fixed at creation): a
 * chunk is the tiles that fit, 144 (C + O) bytes each, a multiple of the
 * GEMM's tile. */
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

/* U of w, made on first use; NULL on failure (recorded), or without a
 * recorded failure where the device has no room for U (the caller falls
 * back to the implicit GEMM). */
static cl_mem wino_filter(clb *b, const sdc_weight *w, int O, int C) {
    clb_weight *e = clb_weight_entry(b, w);
    if (!e) return NULL;
    if (e->wino && e->wino_o == O) return e->wino;
    if (e->wino) { /* made for another split of the same numel */
        b->cl->clReleaseMemObject(e->wino);
        b->mem_now -= e->wino_bytes;
        e->wino = NULL, e->wino_bytes = 0;
    }
    const size_t oc = (size_t)O * C, bytes = 36 * oc * 4;
    cl_int err;
    cl_mem u = b->cl->clCreateBuffer(b->ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (!u) {
        if (err != CL_MEM_OBJECT_ALLOCATION_FAILURE && err != CL_OUT_OF_RESOURCES &&
            err != CL_INVALID_BUFFER_SIZE)
            clb_fail_msg(b, "Winograd filter transform of %s (%zu bytes): %s",
                         w->name ? w->name : "?", bytes, sdc_cl_error_name(err));
        return NULL;
    }
    clb_args a = clb_args_start(b, wino_kernel(b, "wino_filter"));
    clb_arg_mem(&a, u);
    clb_arg_mem(&a, e->mem);
    clb_arg_i32(&a, e->half);
    clb_arg_u32(&a, (cl_uint)oc);
    const size_t global = oc, local = WG_LOCAL;
    clb_launch(&a, 1, &global, &local);
    if (b->failed) {
        b->cl->clReleaseMemObject(u);
        return NULL;
    }
    e->wino = u, e->wino_o = O, e->wino_bytes = bytes;
    clb_mem_add(b, bytes);
    return u;
}

int clb_conv_winograd(clb *b, float *y, const float *x, int N, int C, int H, int W,
                      const sdc_weight *w, const sdc_weight *bias, int O, const float *acc) {
    const int th = (H + 3) / 4, tw = (W + 3) / 4, tpi = th * tw;
    const int64_t nt = (int64_t)N * tpi, per_tile = 36 * 4 * ((int64_t)C + O);
    int64_t cap = (int64_t)(b->wscratch_bytes / (size_t)per_tile);
    if (cap >= WG_TM) cap -= cap % WG_TM;
    /* every offset in 32 bits: the kernels index with uint */
    if (!b->wscratch || cap < 1 || nt > INT32_MAX || (int64_t)O * C * 36 > UINT32_MAX) return 0;
    const int T = (int)(nt < cap ? nt : cap);
    cl_mem u = wino_filter(b, w, O, C);
    if (!u) return b->failed; /* no room for U: the implicit GEMM */
    cl_kernel kin = wino_kernel(b, "wino_input"), kmm = wino_kernel(b, "wino_gemm");
    cl_kernel kout = wino_kernel(b, "wino_output");
    const cl_uint vo = 0, mo = (cl_uint)(36 * (int64_t)C * T);
    for (int64_t g0 = 0; g0 < nt && !b->failed; g0 += T) {
        const int t = (int)(nt - g0 < T ? nt - g0 : T);
        clb_args a = clb_args_start(b, kin);
        clb_arg_mem(&a, b->wscratch);
        clb_arg_u32(&a, vo);
        clb_arg_act(&a, x);
        clb_arg_i32(&a, C);
        clb_arg_i32(&a, H);
        clb_arg_i32(&a, W);
        clb_arg_i32(&a, tw);
        clb_arg_i32(&a, tpi);
        clb_arg_i32(&a, (cl_int)g0);
        clb_arg_i32(&a, t);
        const size_t gin[2] = {(size_t)t, (size_t)C}, lin[2] = {WG_LOCAL, 1};
        clb_launch(&a, 2, gin, lin);

        a = clb_args_start(b, kmm);
        clb_arg_mem(&a, b->wscratch);
        clb_arg_u32(&a, vo);
        clb_arg_u32(&a, mo);
        clb_arg_mem(&a, u);
        clb_arg_i32(&a, O);
        clb_arg_i32(&a, C);
        clb_arg_i32(&a, t);
        const size_t gmm[3] = {(size_t)(t + WG_TM - 1) / WG_TM * WG_L,
                               (size_t)(O + WG_TN - 1) / WG_TN * WG_L, 36};
        const size_t lmm[3] = {WG_L, WG_L, 1};
        clb_launch(&a, 3, gmm, lmm);

        a = clb_args_start(b, kout);
        clb_arg_act(&a, y);
        clb_arg_mem(&a, b->wscratch);
        clb_arg_u32(&a, mo);
        clb_arg_w(&a, bias);
        clb_arg_act(&a, acc);
        clb_arg_i32(&a, acc != NULL);
        clb_arg_i32(&a, O);
        clb_arg_i32(&a, H);
        clb_arg_i32(&a, W);
        clb_arg_i32(&a, tw);
        clb_arg_i32(&a, tpi);
        clb_arg_i32(&a, (cl_int)g0);
        clb_arg_i32(&a, t);
        const size_t gout[2] = {(size_t)t, (size_t)O}, lout[2] = {WG_LOCAL, 1};
        clb_launch(&a, 2, gout, lout);
    }
    return 1;
}
#else
typedef int sdc_cl_winograd_unused; /* built without OpenCL: opencl_stub.c */
#endif
