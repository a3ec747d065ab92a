/* Shared by every program (passed as the first source string).
 * ACT_HALF (0/1): activations stored as half (element i at byte 2i), read
 * and written through vload_half / vstore_half_rte: fp32 arithmetic, no
 * cl_khr_fp16 needed.  Weights are float or half (flag per argument). */
#if ACT_HALF
typedef half act_t;
#define LDA(p, i) vload_half((i), (p))
#define STA(p, i, v) vstore_half_rte((v), (i), (p))
#else
typedef float act_t;
#define LDA(p, i) ((p)[i])
#define STA(p, i, v) ((p)[i] = (v))
#endif

/* element i of a weight stored as float (h == 0) or half (h != 0) */
inline float ldw(global const float *p, int h, uint i) {
    return h ? vload_half(i, (global const half *)p) : p[i];
}

/* Sum of v over the work-group (dimension 0, a power-of-two size <= the
 * length of red), every item gets it; red is reused after a barrier. */
inline float wg_sum(float v, local float *red) {
    const int lid = get_local_id(0), n = get_local_size(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

inline float gelu1(float x) { return 0.5f * x * (1.0f + erf(x * 0.70710678118654752f)); }
inline float silu1(float x) { return x / (1.0f + exp(-x)); }
