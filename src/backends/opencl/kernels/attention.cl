/* FlashAttention (Dao et al. 2022), forward, online softmax: the score
 * matrix is never written.  One work-group = BQ queries of one head
 * (get_group_id(0) = query block, get_group_id(1) = head), one query per
 * work-item, its q row and output accumulator in private memory; K and V
 * pass through local memory BK keys at a time.  Options: DH (head dim),
 * BQ (work-group size), BK.  Scores and sums in fp32. */
kernel void attention(global act_t *out, uint oo, global act_t *q, uint qo, int q_stride,
                      global act_t *k, uint ko, global act_t *v, uint vo, int kv_stride, int Sq,
                      int Sk, int heads, float scale, int causal) {
    local float Ks[BK][DH], Vs[BK][DH];
    const int lid = get_local_id(0), h = get_group_id(1);
    const int q0 = get_group_id(0) * BQ, i = q0 + lid;
    const int live = i < Sq;
    float qr[DH], acc[DH];
    for (int d = 0; d < DH; d++) {
        qr[d] = live ? LDA(q, qo + (uint)i * q_stride + h * DH + d) : 0.0f;
        acc[d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    /* causal: no query of the block sees a key past its last query */
    const int kend = causal ? min(Sk, q0 + BQ) : Sk;
    for (int j0 = 0; j0 < kend; j0 += BK) {
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = lid; e < BK * DH; e += BQ) {
            const int jj = e / DH, d = e - jj * DH, j = j0 + jj;
            const uint off = (uint)j * kv_stride + h * DH + d;
            Ks[jj][d] = j < Sk ? LDA(k, ko + off) : 0.0f;
            Vs[jj][d] = j < Sk ? LDA(v, vo + off) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!live) continue;
        float s[BK], mt = m;
        for (int jj = 0; jj < BK; jj++) {
            const int j = j0 + jj;
            float dot = 0.0f;
            for (int d = 0; d < DH; d++) dot += qr[d] * Ks[jj][d];
            s[jj] = j < Sk && (!causal || j <= i) ? dot * scale : -INFINITY;
            mt = fmax(mt, s[jj]);
        }
        if (mt == -INFINITY) continue; /* every key of the tile masked */
        const float corr = exp(m - mt); /* 0 on the first live tile */
        l *= corr;
        for (int d = 0; d < DH; d++) acc[d] *= corr;
        for (int jj = 0; jj < BK; jj++) {
            const float p = exp(s[jj] - mt);
            l += p;
            for (int d = 0; d < DH; d++) acc[d] += p * Vs[jj][d];
        }
        m = mt;
    }
    if (live) {
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        for (int d = 0; d < DH; d++)
            STA(out, oo + (uint)i * heads * DH + h * DH + d, acc[d] * inv);
    }
}
