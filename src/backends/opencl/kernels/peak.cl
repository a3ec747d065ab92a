/* The device's measured peaks for bench_ops' "% of peak" (cl_peak.c):
 * peak_fma: 16 independent multiply-add chains per work-item (enough to
 * hide the FMA latency on any GPU), the sum written so that nothing is
 * optimised away; peak_copy: float4 copy, the memory bandwidth. */
kernel void peak_fma(global float *out, float a, float b, int iters) {
    float x[16];
    for (int j = 0; j < 16; j++) x[j] = (float)(get_global_id(0) + j) * 1e-7f;
    for (int i = 0; i < iters; i++) {
#pragma unroll
        for (int j = 0; j < 16; j++) x[j] = mad(x[j], a, b);
    }
    float s = 0.0f;
    for (int j = 0; j < 16; j++) s += x[j];
    out[get_global_id(0)] = s;
}

kernel void peak_copy(global float4 *dst, global const float4 *src) {
    size_t i = get_global_id(0);
    dst[i] = src[i];
}
