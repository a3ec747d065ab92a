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

#if defined(TM) && defined(TN) && defined(TK) && defined(RM) && defined(RN)
/* The register block of the tiled products (gemm.cl, softmax.cl,
 * winograd.cl): r[i][j] += sum_k As[k][r0 + i rs] Bs[k][c0 + j cs] over one
 * TK-deep slice staged in local memory, rows and columns strided as the
 * caller lays its items out. */
inline void tile_fma(local float (*As)[TM + 1], local float (*Bs)[TN + 1],
                     float (*r)[RN], int r0, int rs, int c0, int cs) {
    for (int kk = 0; kk < TK; kk++) {
        float av[RM], bv[RN];
        for (int i = 0; i < RM; i++) av[i] = As[kk][r0 + i * rs];
        for (int j = 0; j < RN; j++) bv[j] = Bs[kk][c0 + j * cs];
        for (int i = 0; i < RM; i++)
            for (int j = 0; j < RN; j++) r[i][j] += av[i] * bv[j];
    }
}
#endif
