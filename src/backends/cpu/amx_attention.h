/* The bf16 mode's attention on AMX tiles, written once on the micro-kernel
 * of amx_kernel.h and included after it by gemm_amx.c (real tiles) and
 * amx_emul.c (the emulation); AMX_FN(x) names the includer's functions.
 *
 * out = softmax(q k^T * scale) v per head, with both products on the tiles:
 *   Q~ = bf16(q * scale * log2 e), K~ = bf16(k), V~ = bf16(v)
 *   per key block of AA_BK keys and query tile of 32 rows:
 *     S = Q~ K~^T                       (f32 sums on the tiles)
 *     m' = max(m, max_j S), c = 2^(m - m'), p = 2^(S - m')
 *     P~ = bf16(p), l = c l + sum P~, O = c O + P~ V~
 *   out = O / l
 * the online softmax of FlashAttention (Dao et al. 2022) with the block's
 * exact maximum; l sums the rounded weights the product uses, so every
 * row's weights sum to one.  K and V of every head are packed once per
 * call into the kernel's pair panels (the backend's shared buffer); a
 * task is one head's block of up to AA_BQ queries, its Q~ packed in the
 * thread's scratch.
 * The non-tile code is plain C: the real-tile build vectorises it for
 * AVX-512, the emulation's for the build's baseline; with no FMA
 * contraction (CMakeLists.txt) the two give the same bits. */
#include <math.h>

#define AA_BK 256 /* keys per block */
#define AA_BQ 128 /* queries per task, at most */
#define AA_QT 32  /* queries per tile: the kernel's rows */
#define AA_DH_MAX 512
/* scratch per thread: Q~ [BQ][dh/2], O [BQ][dh], m and l [BQ], S [QT][BK],
 * P~ [QT][BK/2] */
#define AA_FLOATS(dh) \
    ((size_t)AA_BQ * ((dh) / 2 + (dh)) + 2 * (size_t)AA_BQ + (size_t)AA_QT * AA_BK * 3 / 2)
_Static_assert(AA_FLOATS(AA_DH_MAX) <= SDC_CPU_SCRATCH_FLOATS, "AMX attention scratch");

typedef struct aa_ctx {
    sdc_cpu *cpu;
    float *out;
    const float *q, *k, *v;
    int q_stride, kv_stride, Sq, Sk, heads, dh, causal;
    int d2, nkt, ncb; /* pairs in a head's row, key tiles of 32, column blocks of 32 */
    int bq, qblocks;  /* queries per task, tasks per head */
    float qscale;     /* scale * log2 e */
    uint32_t *kp;     /* K~: head h, key tile t: [d2][32] at (h * nkt + t) * d2 * 32 */
    uint32_t *vp;     /* V~: head h, column block b: [nkt * 16][32] at (h * ncb + b) * nkt * 512 */
} aa_ctx;

/* Packs key tile t of head h: its K~ panel, and its 16 rows of pairs in
 * each of V~'s column blocks; keys past Sk and columns past dh are zero. */
static void aa_pack_task(void *p, int64_t task, int thread) {
    (void)thread;
    const aa_ctx *A = p;
    const int h = (int)(task / A->nkt), t = (int)(task % A->nkt), dh = A->dh;
    uint32_t *kt = A->kp + ((int64_t)h * A->nkt + t) * A->d2 * 32;
    for (int n = 0; n < 32; n++) {
        const int key = 32 * t + n;
        if (key >= A->Sk) {
            for (int k2 = 0; k2 < A->d2; k2++) kt[(int64_t)k2 * 32 + n] = 0;
            continue;
        }
        const float *kr = A->k + (int64_t)key * A->kv_stride + (int64_t)h * dh;
        for (int k2 = 0; k2 < A->d2; k2++)
            kt[(int64_t)k2 * 32 + n] = sdc_bf16_pair(kr[2 * k2], 2 * k2 + 1 < dh ? kr[2 * k2 + 1] : 0.0f);
    }
    for (int b = 0; b < A->ncb; b++) {
        uint32_t *vt = A->vp + ((int64_t)h * A->ncb + b) * A->nkt * 512 + (int64_t)t * 512;
        const int cols = dh - 32 * b < 32 ? dh - 32 * b : 32;
        for (int j2 = 0; j2 < 16; j2++) {
            const int k0 = 32 * t + 2 * j2;
            uint32_t *row = vt + j2 * 32;
            memset(row, 0, 32 * sizeof *row);
            if (k0 >= A->Sk) continue;
            const float *v0 = A->v + (int64_t)k0 * A->kv_stride + (int64_t)h * dh + 32 * b;
            const float *v1 = k0 + 1 < A->Sk ? v0 + A->kv_stride : NULL;
            for (int c = 0; c < cols; c++) row[c] = sdc_bf16_pair(v0[c], v1 ? v1[c] : 0.0f);
        }
    }
}

/* 2^x for x <= 0: a degree-5 polynomial on the fraction (attention_avx512.c's
 * coefficients) times 2^n; 0 below 2^-126 and for -inf, NaN stays NaN. */
static inline float aa_exp2(float x) {
    const float xc = x > -126.0f ? x : -126.0f;
    const float n = (xc + 12582912.0f) - 12582912.0f; /* round to nearest */
    const float f = xc - n;
    float y = 1.327646822377191e-3f;
    y = y * f + 9.675541313348105e-3f;
    y = y * f + 5.5507132852204065e-2f;
    y = y * f + 2.4022119724366986e-1f;
    y = y * f + 6.931469670575058e-1f;
    y = y * f + 1.0000000716545216f;
    const uint32_t e = (uint32_t)((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &e, 4);
    return x > -126.0f ? y * s : x != x ? x : 0.0f;
}

/* Row r of a query tile after S: the block's weights P~ (n keys valid of
 * nk, zero after), m, l and the row of O rescaled. */
static void aa_softmax_row(float *srow, uint32_t *prow, int n, int nk, float *m, float *l,
                           float *orow, int dh) {
    float mx[16];
    for (int u = 0; u < 16; u++) mx[u] = -INFINITY;
    int j = 0;
    for (; j + 16 <= n; j += 16)
        for (int u = 0; u < 16; u++) mx[u] = srow[j + u] > mx[u] ? srow[j + u] : mx[u];
    for (; j < n; j++) mx[0] = srow[j] > mx[0] ? srow[j] : mx[0];
    float mb = *m;
    for (int u = 0; u < 16; u++) mb = mx[u] > mb ? mx[u] : mb;
    const int np = (nk + 1) / 2; /* pairs; an odd last key pairs with zero */
    if (mb == -INFINITY) { /* every key so far masked: nothing to add */
        memset(prow, 0, (size_t)np * sizeof *prow);
        return;
    }
    const float c = aa_exp2(*m - mb);
    for (j = 0; j < n; j++) srow[j] = aa_exp2(srow[j] - mb);
    for (; j < 2 * np; j++) srow[j] = 0.0f; /* masked keys */
    float acc[16] = {0}; /* lane u: the pairs j = u mod 16, in order */
    for (j = 0; j < np; j += 16)
        for (int u = 0; u < 16 && j + u < np; u++) {
            const uint32_t w = sdc_bf16_pair(srow[2 * (j + u)], srow[2 * (j + u) + 1]), wl = w << 16,
                           wh = w & 0xffff0000u;
            float lo, hi;
            memcpy(&lo, &wl, 4), memcpy(&hi, &wh, 4);
            prow[j + u] = w;
            acc[u] += lo + hi;
        }
    for (int s = 8; s > 0; s /= 2) /* a fixed order: the same sum on any build */
        for (int u = 0; u < s; u++) acc[u] += acc[u + s];
    *l = *l * c + acc[0];
    *m = mb;
    if (c != 1.0f)
        for (int i = 0; i < dh; i++) orow[i] *= c;
}

static void aa_task(void *p, int64_t task, int thread) {
    const aa_ctx *A = p;
    const int h = (int)(task / A->qblocks), i0 = (int)(task % A->qblocks) * A->bq;
    const int bq = A->Sq - i0 < A->bq ? A->Sq - i0 : A->bq, dh = A->dh, d2 = A->d2;
    uint32_t *qp = (uint32_t *)(void *)sdc_cpu_scratch(A->cpu, thread);
    float *O = (float *)(void *)(qp + (size_t)AA_BQ * d2), *m = O + (size_t)AA_BQ * dh,
          *l = m + AA_BQ, *S = l + AA_BQ;
    uint32_t *P = (uint32_t *)(void *)(S + (size_t)AA_QT * AA_BK);
    for (int r = 0; r < bq; r++) {
        const float *qr = A->q + (int64_t)(i0 + r) * A->q_stride + (int64_t)h * dh;
        for (int k2 = 0; k2 < d2; k2++)
            qp[(size_t)r * d2 + k2] = sdc_bf16_pair(qr[2 * k2] * A->qscale,
                                              2 * k2 + 1 < dh ? qr[2 * k2 + 1] * A->qscale : 0.0f);
        m[r] = -INFINITY, l[r] = 0.0f;
    }
    memset(O, 0, (size_t)bq * dh * sizeof *O);
    int kmax = A->Sk;
    if (A->causal && i0 + bq < kmax) kmax = i0 + bq;
    const uint32_t *kh = A->kp + (int64_t)h * A->nkt * d2 * 32;
    const uint32_t *vh = A->vp + (int64_t)h * A->ncb * A->nkt * 512;
    AMX_FN(begin)();
    for (int j0 = 0; j0 < kmax; j0 += AA_BK) {
        const int nk = kmax - j0 < AA_BK ? kmax - j0 : AA_BK;
        for (int r0 = 0; r0 < bq; r0 += AA_QT) {
            const int nr = bq - r0 < AA_QT ? bq - r0 : AA_QT;
            if (A->causal && j0 > i0 + r0 + nr - 1) continue; /* every key masked */
            for (int r = 0; r < nr; r++) memset(S + (size_t)r * AA_BK, 0, (size_t)nk * sizeof *S);
            for (int t = 0; 32 * t < nk; t++)
                AMX_FN(kernel)(d2, qp + (size_t)r0 * d2, d2, kh + (int64_t)(j0 / 32 + t) * d2 * 32,
                               S + 32 * t, AA_BK, nr, nk - 32 * t < 32 ? nk - 32 * t : 32);
            for (int r = 0; r < nr; r++) {
                int n = nk; /* keys visible to this row */
                if (A->causal && i0 + r0 + r + 1 - j0 < n) n = i0 + r0 + r + 1 - j0;
                aa_softmax_row(S + (size_t)r * AA_BK, P + (size_t)r * (AA_BK / 2), n, nk,
                               m + r0 + r, l + r0 + r, O + (size_t)(r0 + r) * dh, dh);
            }
            for (int b = 0; b < A->ncb; b++)
                AMX_FN(kernel)((nk + 1) / 2, P, AA_BK / 2,
                               vh + (int64_t)b * A->nkt * 512 + (int64_t)j0 / 2 * 32,
                               O + (size_t)r0 * dh + 32 * b, dh, nr,
                               dh - 32 * b < 32 ? dh - 32 * b : 32);
        }
    }
    AMX_FN(end)();
    const int64_t ldo = (int64_t)A->heads * dh;
    for (int r = 0; r < bq; r++) {
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        float *o = A->out + (int64_t)(i0 + r) * ldo + (int64_t)h * dh;
        for (int i = 0; i < dh; i++) o[i] = O[(size_t)r * dh + i] * inv;
    }
}

/* The backend op (backend.h's attention) in the bf16 mode; head dims above
 * AA_DH_MAX, or no room for the packed K and V, take the f32 kernel. */
static void AMX_FN(attention)(sdc_backend *be, float *out, const float *q, int q_stride,
                              const float *k, const float *v, int kv_stride, int Sq, int Sk,
                              int heads, int dh, float scale, int causal) {
    sdc_cpu *cpu = sdc_cpu_of(be);
    if (Sq <= 0 || heads <= 0 || dh <= 0) return;
    const int nkt = (Sk + 31) / 32, d2 = (dh + 1) / 2, ncb = (dh + 31) / 32;
    const size_t words = (size_t)heads * nkt * ((size_t)d2 * 32 + (size_t)ncb * 512);
    uint32_t *kp = dh <= AA_DH_MAX && Sk > 0 ? (uint32_t *)(void *)sdc_cpu_shared_buffer(cpu, words)
                                             : NULL;
    if (!kp) {
        cpu->attention_f32(be, out, q, q_stride, k, v, kv_stride, Sq, Sk, heads, dh, scale,
                           causal);
        return;
    }
    int bq = AA_BQ; /* smaller blocks where there would be few tasks */
    while (bq > AA_QT && (bq >= 2 * Sq || (int64_t)heads * ((Sq + bq - 1) / bq) < 4 * cpu->n_threads))
        bq /= 2;
    aa_ctx A = {cpu, out, q, k, v, q_stride, kv_stride, Sq, Sk, heads, dh, causal, d2, nkt, ncb, bq,
                (Sq + bq - 1) / bq, scale * 1.44269504088896341f, kp,
                kp + (size_t)heads * nkt * d2 * 32};
    sdc_parallel_for(cpu->pool, (int64_t)heads * nkt, aa_pack_task, &A);
    sdc_parallel_for(cpu->pool, (int64_t)heads * A.qblocks, aa_task, &A);
}
