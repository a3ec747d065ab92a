/* Tiled, register-blocked GEMM: C[m, n] = acc + (sum_k A(m, k) W[n, k] + bias[n])
 * for one image per get_group_id(2).  A work-group computes a TM x TN tile of
 * C through TK-deep slices of A and W staged in local memory; each of its
 * (TN/RN) x (TM/RM) items keeps an RM x RN block of sums in registers
 * (rows MI + i*(TM/RM), columns NI + j*(TN/RN): the item index that runs
 * fastest walks the dimension C is contiguous in, so stores coalesce).
 * Options:
 *   TM, TN, TK, RM, RN   tile sizes (TM/RM == TN/RN)
 *   A_MODE  0: A(m, k) = a[m lda + k]   (token rows: linear)
 *           1: A(m, k) = a[k lda + m]   (channel-major maps: 1x1 conv, to tokens)
 *           2: implicit convolution: m = output pixel, k = (c, ky, kx) as in
 *              the weight [O, C, kh, kw]; zero padding
 *   C_MODE  0: C(m, n) at c[m ldc + n]; 1: at c[n ldc + m]
 *   B_HALF  W stored as half */
#define LX (TN / RN)
#define LY (TM / RM)
#define NT (LX * LY)

#if B_HALF
typedef half wt_t;
#define LDB(p, i) vload_half((i), (p))
#else
typedef float wt_t;
#define LDB(p, i) ((p)[i])
#endif

#if C_MODE == 0
#define MI ty
#define NI tx
#else
#define MI tx
#define NI ty
#endif

kernel __attribute__((reqd_work_group_size(LX, LY, 1))) void
gemm(global act_t *c, uint co, uint c_bs, uint ldc, global act_t *a, uint ao, uint a_bs, uint lda,
     global const wt_t *w, global const float *bias, int bias_half, int has_bias,
     global act_t *acc, uint acco, int has_acc, int M, int N, int K, int cH, int cW, int cWo,
     int kh, int kw, int stride, int pad) {
    local float As[TK][TM + 1], Bs[TK][TN + 1];
    const int tx = get_local_id(0), ty = get_local_id(1), lid = ty * LX + tx;
    const int m0 = get_group_id(1) * TM, n0 = get_group_id(0) * TN;
    const uint img = get_group_id(2);
    const uint abase = ao + img * a_bs, cbase = co + img * c_bs, accbase = acco + img * c_bs;
    float r[RM][RN];
    for (int i = 0; i < RM; i++)
        for (int j = 0; j < RN; j++) r[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += TK) {
        for (int e = lid; e < TM * TK; e += NT) {
#if A_MODE == 0
            const int kk = e % TK, mm = e / TK;
#else
            const int mm = e % TM, kk = e / TM;
#endif
            const int m = m0 + mm, kq = k0 + kk;
            float v = 0.0f;
            if (m < M && kq < K) {
#if A_MODE == 0
                v = LDA(a, abase + (uint)m * lda + kq);
#elif A_MODE == 1
                v = LDA(a, abase + (uint)kq * lda + m);
#else
                const int kx = kq % kw, t = kq / kw, ky = t % kh, ci = t / kh;
                const int ox = m % cWo, oy = m / cWo;
                const int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                if (iy >= 0 && iy < cH && ix >= 0 && ix < cW)
                    v = LDA(a, abase + ((uint)ci * cH + iy) * cW + ix);
#endif
            }
            As[kk][mm] = v;
        }
        for (int e = lid; e < TN * TK; e += NT) {
            const int kk = e % TK, nn = e / TK, n = n0 + nn, kq = k0 + kk;
            Bs[kk][nn] = n < N && kq < K ? LDB(w, (uint)n * K + kq) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        tile_fma(As, Bs, r, MI, LY, NI, LX);
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    for (int i = 0; i < RM; i++)
        for (int j = 0; j < RN; j++) {
            const int m = m0 + MI + i * LY, n = n0 + NI + j * LX;
            if (m >= M || n >= N) continue;
            float v = r[i][j] + (has_bias ? ldw(bias, bias_half, n) : 0.0f);
#if C_MODE == 0
            const uint ci = (uint)m * ldc + n;
#else
            const uint ci = (uint)n * ldc + m;
#endif
            if (has_acc) v = LDA(acc, accbase + ci) + v;
            STA(c, cbase + ci, v);
        }
}
