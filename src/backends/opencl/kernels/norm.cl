/* Normalisations: one work-group of WG items (a power of two, -DWG) per
 * normalised set, two passes over it (mean, then the variance of the
 * deviations) reduced in fp32 through local memory, then the write.  Each
 * item writes only what it reads in the last pass, so y may alias x. */

/* GroupNorm of x [N, C, HW] + add[n, c] (has_add), G groups: work-group
 * (n, g) = get_group_id(0).  y = (x - (mean - a)) * rstd * gamma + beta,
 * then silu. */
kernel void group_norm(global act_t *y, uint yo, global act_t *x, uint xo, global act_t *add,
                       uint ado, int has_add, int C, int HW, int G, global const float *gamma,
                       int gamma_half, int has_gamma, global const float *beta, int beta_half,
                       int has_beta, float eps, int silu) {
    local float red[WG];
    const int lid = get_local_id(0), ng = get_group_id(0), n = ng / G, g = ng - n * G;
    const int cg = C / G, c0 = g * cg;
    const uint base = ((uint)n * C + c0) * HW;
    float s = 0.0f;
    for (int c = 0; c < cg; c++) {
        const float a = has_add ? LDA(add, ado + n * C + c0 + c) : 0.0f;
        for (int p = lid; p < HW; p += WG) s += LDA(x, xo + base + c * HW + p) + a;
    }
    const float cnt = (float)cg * (float)HW;
    const float mean = wg_sum(s, red) / cnt;
    s = 0.0f;
    for (int c = 0; c < cg; c++) {
        const float a = has_add ? LDA(add, ado + n * C + c0 + c) : 0.0f;
        for (int p = lid; p < HW; p += WG) {
            const float d = LDA(x, xo + base + c * HW + p) + a - mean;
            s += d * d;
        }
    }
    const float rstd = 1.0f / sqrt(wg_sum(s, red) / cnt + eps);
    for (int c = 0; c < cg; c++) {
        const float a = has_add ? LDA(add, ado + n * C + c0 + c) : 0.0f;
        const float ga = has_gamma ? ldw(gamma, gamma_half, c0 + c) : 1.0f;
        const float be = has_beta ? ldw(beta, beta_half, c0 + c) : 0.0f;
        const float fm = mean - a;
        for (int p = lid; p < HW; p += WG) {
            const uint i = base + c * HW + p;
            float v = (LDA(x, xo + i) - fm) * rstd * ga + be;
            if (silu) v = silu1(v);
            STA(y, yo + i, v);
        }
    }
}

/* LayerNorm of each row of x [rows, D] (work-group = row) */
kernel void layer_norm(global act_t *y, uint yo, global act_t *x, uint xo, int D,
                       global const float *gamma, int gamma_half, int has_gamma,
                       global const float *beta, int beta_half, int has_beta, float eps) {
    local float red[WG];
    const int lid = get_local_id(0);
    const uint base = (uint)get_group_id(0) * D;
    float s = 0.0f;
    for (int i = lid; i < D; i += WG) s += LDA(x, xo + base + i);
    const float mean = wg_sum(s, red) / (float)D;
    s = 0.0f;
    for (int i = lid; i < D; i += WG) {
        const float d = LDA(x, xo + base + i) - mean;
        s += d * d;
    }
    const float rstd = 1.0f / sqrt(wg_sum(s, red) / (float)D + eps);
    for (int i = lid; i < D; i += WG) {
        float v = (LDA(x, xo + base + i) - mean) * rstd;
        v = v * (has_gamma ? ldw(gamma, gamma_half, i) : 1.0f) +
            (has_beta ? ldw(beta, beta_half, i) : 0.0f);
        STA(y, yo + base + i, v);
    }
}
