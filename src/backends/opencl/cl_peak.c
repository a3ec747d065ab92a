/* sdc_opencl_peak: the device's fp32 multiply-add rate and copy bandwidth,
 * measured with kernels/peak.cl, as the yardstick of bench_ops' table. */
#include "backends/opencl/opencl.h"

#include "core/error.h"

#if SDC_HAVE_OPENCL
#include <time.h>

#include "backends/opencl/cl_impl.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds of one launch of k over n items (after a warm-up launch); < 0 on
 * a failure (recorded in b). */
static double timed(clb *b, clb_args *a, size_t n) {
    clb_launch(a, 1, &n, NULL);
    if (b->failed || b->cl->clFinish(b->q) != CL_SUCCESS) return -1;
    double t = now_s();
    clb_launch(a, 1, &n, NULL);
    if (b->failed || b->cl->clFinish(b->q) != CL_SUCCESS) return -1;
    return now_s() - t;
}

sdc_status sdc_opencl_peak(sdc_backend *be, double *gflops, double *gbps) {
    clb *b = clb_of(sdc_backend_profile_inner(be));
    *gflops = *gbps = 0;
    if (clb_begin(b, "peak")) return be->sync(be);
    const size_t items = (size_t)(b->info.compute_units > 0 ? b->info.compute_units : 1) * 2048;
    const size_t copy_bytes = (size_t)64 << 20; /* per buffer, far beyond any cache */
    cl_int err = CL_SUCCESS;
    cl_mem out = b->cl->clCreateBuffer(b->ctx, CL_MEM_READ_WRITE, items * 4, NULL, &err);
    cl_mem src = err == CL_SUCCESS
                     ? b->cl->clCreateBuffer(b->ctx, CL_MEM_READ_WRITE, copy_bytes, NULL, &err)
                     : NULL;
    cl_mem dst = err == CL_SUCCESS
                     ? b->cl->clCreateBuffer(b->ctx, CL_MEM_READ_WRITE, copy_bytes, NULL, &err)
                     : NULL;
    if (err != CL_SUCCESS) clb_fail(b, "clCreateBuffer", err);
    cl_kernel kf = b->failed ? NULL : clb_kernel_get(b, "peak", "", "peak_fma");
    cl_kernel kc = b->failed ? NULL : clb_kernel_get(b, "peak", "", "peak_copy");
    if (kf && kc) {
        /* the chain grows until a launch takes 0.1 s: a kernel that short
         * would measure its launch, not its arithmetic */
        for (int iters = 64; iters <= (1 << 22); iters *= 4) {
            clb_args a = clb_args_start(b, kf);
            clb_arg_mem(&a, out);
            clb_arg_f32(&a, 0.999f);
            clb_arg_f32(&a, 1e-3f);
            clb_arg_i32(&a, iters);
            double t = timed(b, &a, items);
            if (t < 0) break;
            *gflops = 2.0 * 16 * iters * (double)items / t * 1e-9;
            if (t >= 0.1) break;
        }
        clb_args a = clb_args_start(b, kc);
        clb_arg_mem(&a, dst);
        clb_arg_mem(&a, src);
        double t = timed(b, &a, copy_bytes / 16);
        if (t > 0) *gbps = 2.0 * (double)copy_bytes / t * 1e-9;
    }
    if (out) b->cl->clReleaseMemObject(out);
    if (src) b->cl->clReleaseMemObject(src);
    if (dst) b->cl->clReleaseMemObject(dst);
    return be->sync(be);
}

#else

sdc_status sdc_opencl_peak(sdc_backend *be, double *gflops, double *gbps) {
    (void)be;
    *gflops = *gbps = 0;
    return sdc_fail(SDC_ERR_DEVICE, "this sdc was built without OpenCL");
}

#endif
