/* Attention with the paper's partially fused softmax, for a chunk of R query
 * rows (from row i0) of every head (get_group_id(2) = head):
 *   att_scores  S[h, r, j] = scale q(i0 + r) . k(j), -inf past the query when
 *               causal: the only matrix written, fp32, in the backend's scratch;
 *   att_stats   each row's max m and 1 / sum_j exp(S - m), one work-group a row;
 *   att_pv      out = (sum_j exp(S - m) v(j)) / l: the exponentiation in the
 *               product's loads and the normalisation in its stores, so the
 *               probabilities never reach memory.
 * The products are tiled and register-blocked as gemm.cl's (TM, TN, TK, RM, RN;
 * item (tx, ty) holds rows ty + i*LY and columns tx + j*LX).  Options also:
 * DH (head dim), WG (att_stats' work-group, a power of two). */
#define LX (TN / RN)
#define LY (TM / RM)
#define NT (LX * LY)

kernel __attribute__((reqd_work_group_size(LX, LY, 1))) void
att_scores(global float *s, uint so, global act_t *q, uint qo, int q_stride, global act_t *k,
           uint ko, int kv_stride, int heads, int i0, int R, int Sk, float scale, int causal) {
    local float As[TK][TM + 1], Bs[TK][TN + 1];
    const int tx = get_local_id(0), ty = get_local_id(1), lid = ty * LX + tx;
    const int m0 = get_group_id(1) * TM, n0 = get_group_id(0) * TN, h = get_group_id(2);
    float r[RM][RN];
    for (int i = 0; i < RM; i++)
        for (int j = 0; j < RN; j++) r[i][j] = 0.0f;
    for (int d0 = 0; d0 < DH; d0 += TK) {
        for (int e = lid; e < TM * TK; e += NT) {
            const int kk = e % TK, mm = e / TK, m = m0 + mm, d = d0 + kk;
            As[kk][mm] = m < R && d < DH ? LDA(q, qo + (uint)(i0 + m) * q_stride + h * DH + d)
                                         : 0.0f;
        }
        for (int e = lid; e < TN * TK; e += NT) {
            const int kk = e % TK, nn = e / TK, n = n0 + nn, d = d0 + kk;
            Bs[kk][nn] = n < Sk && d < DH ? LDA(k, ko + (uint)n * kv_stride + h * DH + d) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        tile_fma(As, Bs, r, ty, LY, tx, LX);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const uint base = so + (uint)h * R * Sk;
    for (int i = 0; i < RM; i++)
        for (int j = 0; j < RN; j++) {
            const int m = m0 + ty + i * LY, n = n0 + tx + j * LX;
            if (m < R && n < Sk)
                s[base + (uint)m * Sk + n] = causal && n > i0 + m ? -INFINITY : r[i][j] * scale;
        }
}

/* stats[2 (h R + r)] = max, stats[2 (h R + r) + 1] = 1 / sum exp(S - max);
 * global (R WG, heads), local (WG, 1) */
kernel void att_stats(global float *s, uint so, global float *stats, uint sto, int R, int Sk) {
    local float red[WG];
    const int lid = get_local_id(0), r = get_group_id(0), h = get_group_id(1);
    const uint row = so + ((uint)h * R + r) * Sk;
    float m = -INFINITY;
    for (int j = lid; j < Sk; j += WG) m = fmax(m, s[row + j]);
    red[lid] = m;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int w = WG / 2; w > 0; w >>= 1) {
        if (lid < w) red[lid] = fmax(red[lid], red[lid + w]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    m = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    float l = 0.0f;
    for (int j = lid; j < Sk; j += WG) l += exp(s[row + j] - m);
    l = wg_sum(l, red);
    if (lid == 0) {
        stats[sto + 2 * ((uint)h * R + r)] = m;
        stats[sto + 2 * ((uint)h * R + r) + 1] = 1.0f / l;
    }
}

/* out[i0 + r, h DH + n] for n < DH: M = R, N = DH, K = Sk */
kernel __attribute__((reqd_work_group_size(LX, LY, 1))) void
att_pv(global act_t *out, uint oo, global float *s, uint so, global float *stats, uint sto,
       global act_t *v, uint vo, int kv_stride, int heads, int i0, int R, int Sk) {
    local float As[TK][TM + 1], Bs[TK][TN + 1];
    local float mrow[TM];
    const int tx = get_local_id(0), ty = get_local_id(1), lid = ty * LX + tx;
    const int m0 = get_group_id(1) * TM, n0 = get_group_id(0) * TN, h = get_group_id(2);
    const uint srow = so + (uint)h * R * Sk, st = sto + 2 * (uint)h * R;
    for (int e = lid; e < TM; e += NT) mrow[e] = m0 + e < R ? stats[st + 2 * (m0 + e)] : 0.0f;
    float r[RM][RN];
    for (int i = 0; i < RM; i++)
        for (int j = 0; j < RN; j++) r[i][j] = 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k0 = 0; k0 < Sk; k0 += TK) {
        for (int e = lid; e < TM * TK; e += NT) {
            const int kk = e % TK, mm = e / TK, m = m0 + mm, j = k0 + kk;
            As[kk][mm] = m < R && j < Sk ? exp(s[srow + (uint)m * Sk + j] - mrow[mm]) : 0.0f;
        }
        for (int e = lid; e < TN * TK; e += NT) {
            const int nn = e % TN, kk = e / TN, n = n0 + nn, j = k0 + kk;
            Bs[kk][nn] = n < DH && j < Sk ? LDA(v, vo + (uint)j * kv_stride + h * DH + n) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        tile_fma(As, Bs, r, ty, LY, tx, LX);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int i = 0; i < RM; i++) {
        const int m = m0 + ty + i * LY;
        if (m >= R) continue;
        const float inv = stats[st + 2 * m + 1];
        for (int j = 0; j < RN; j++) {
            const int n = n0 + tx + j * LX;
            if (n < DH) STA(out, oo + (uint)(i0 + m) * heads * DH + h * DH + n, r[i][j] * inv);
        }
    }
}
