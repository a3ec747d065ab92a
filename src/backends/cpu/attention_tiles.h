/* What the SIMD attention kernels (attention_avx512.c, attention_avx2.c,
 * attention_neon.c) share: the block sizes, the per-call state, the task
 * plan, the task driver and the walk of one head's query block over its
 * key blocks (att_head).  Each includes this after defining QT (queries
 * per micro-tile) and KT (keys per score tile), and defines its tiles:
 * score_tiles, att_pack_q and att_pv (below).
 *
 * The plan.  A task is (query block of bqt queries, hg heads).  When K and
 * V of all heads are big (> KV_SMALL bytes) the blocks are BQ_BIG queries
 * and the tasks go head by head (hmajor: a head's K and V stay cached
 * across its query blocks); otherwise BQ_SMALL queries, in query-block
 * order, with a block's heads grouped so that there are at least 16 tasks
 * (their Q and output rows are read and written in whole lines; the next
 * head's are prefetched).  bqt shrinks to what the per-thread scratch
 * holds and what Sq needs. */
#ifndef SDC_ATTENTION_TILES_H
#define SDC_ATTENTION_TILES_H

#include <stdint.h>
#include <string.h>

#include "backends/cpu/cpu_impl.h"

#define BK 192             /* keys per block (multiple of every KT) */
#define BQ_BIG 256         /* queries per task when K and V are big (reuse) */
#define BQ_SMALL 64        /* ... and when they are small */
#define KV_SMALL (1 << 20) /* bytes of K and V (all heads) that count as small */
#define TAU 8.0f           /* lazy rescale threshold, log2 domain */
#define MASKED (-1e30f)    /* X of a causally masked key: 2^X = 0 */

/* scratch per thread for bq queries per task: Qp [bq/QT][dh][QT], the
 * output accumulator [bq][dh], P^T [BK][QT], m, l, c [bq], a partial key
 * tile [KT][dh] */
#define ATT_FLOATS(bq, dh) ((2 * (size_t)(bq) + KT) * (dh) + (size_t)BK * QT + 3 * (size_t)(bq))
_Static_assert(ATT_FLOATS(QT, SDC_ATT_DH_MAX) <= SDC_CPU_SCRATCH_FLOATS, "attention scratch");

typedef struct att_ctx {
    sdc_cpu *cpu;
    float *out;
    const float *q, *k, *v;
    int q_stride, kv_stride, Sq, Sk, heads, dh, causal;
    int bqt, qblocks; /* queries per task, query blocks */
    int hg, hmajor;   /* heads per task; task order (att_task) */
    float qscale;     /* scale * log2(e) */
} att_ctx;

/* One query micro-tile's softmax state within a key block. */
typedef struct qtile {
    float *m, *l, *c; /* [QT] each: shift, sum, the block's pending output factor */
    float *pt;        /* P^T [BK][QT] */
    int first;        /* no key seen yet: m is unset */
} qtile;

/* The ISA's tiles (its file):
 * score_tiles: P^T of a micro-tile's queries (packed qp) against nk keys
 *   from kh, updating m, l and c (kq0: the first key's position relative
 *   to the first query, for the causal mask; vh: rows to prefetch, or NULL;
 *   kt: room for a partial key tile);
 * att_pack_q: the query micro-tiles of rows i0 .. i0+bq of head h into Qp,
 *   prescaled by A->qscale;
 * att_pv: the micro-tile's output accumulator O (the scratch layout of the
 *   ISA) += P^T^T V over nk keys, first scaled by c (first: the first key
 *   block, O not yet set); last: the block is the last, l holds 1/l, and
 *   the nrows output rows go to out (row stride ldo) instead. */
static void score_tiles(qtile *t, const float *qp, const float *kh, const float *vh, int64_t kvs,
                        int dh, int nk, int causal, int kq0, float *kt);
static void att_pack_q(const att_ctx *A, float *Qp, int i0, int h, int bq);
static void att_pv(int dh, float *O, const float *c, int first, const float *l, int last,
                   float *out, int64_t ldo, int nrows, const float *pt, int nk, const float *v,
                   int64_t kvs);

/* Lines covering n rows of w floats at ld apart towards L1. */
static void prefetch_rows(const float *base, int64_t ld, int n, int w) {
    for (int i = 0; i < n; i++) {
        uintptr_t a = (uintptr_t)(base + (int64_t)i * ld), e = a + (uintptr_t)w * sizeof(float);
        for (a &= ~(uintptr_t)63; a < e; a += 64) __builtin_prefetch((const void *)a, 0, 3);
    }
}

/* Head h of the query block from i0; next: another head of the same block
 * follows in this task (its rows are prefetched). */
static void att_head(const att_ctx *A, int h, int i0, int next, int thread) {
    const int BQ = A->bqt, bq = A->Sq - i0 < BQ ? A->Sq - i0 : BQ, dh = A->dh;
    const int64_t kvs = A->kv_stride, ldo = (int64_t)A->heads * dh;
    float *Qp = sdc_cpu_scratch(A->cpu, thread);
    float *O = Qp + (size_t)BQ * dh, *Pt = O + (size_t)BQ * dh;
    float *mrow = Pt + (size_t)BK * QT, *lrow = mrow + BQ, *crow = lrow + BQ, *Kt = crow + BQ;
    float *out = A->out + (int64_t)i0 * ldo + (int64_t)h * dh;
    const int ntiles = (bq + QT - 1) / QT;
    att_pack_q(A, Qp, i0, h, bq);
    for (int i = 0; i < ntiles * QT; i++) mrow[i] = 0.0f, lrow[i] = 0.0f;
    if (A->Sk <= 0) /* no keys: zeros, as the reference */
        for (int i = 0; i < bq; i++) memset(out + i * ldo, 0, (size_t)dh * sizeof *out);
    int kmax = A->Sk;
    if (A->causal && i0 + bq < kmax) kmax = i0 + bq;
    for (int j0 = 0; j0 < kmax; j0 += BK) {
        const float *kh = A->k + (int64_t)j0 * kvs + (int64_t)h * dh;
        const float *vh = A->v + (int64_t)j0 * kvs + (int64_t)h * dh;
        for (int t = 0; t < ntiles; t++) {
            const int q0 = t * QT, nrows = bq - q0 < QT ? bq - q0 : QT;
            int kend = A->Sk; /* keys this micro-tile sees */
            if (A->causal && i0 + q0 + QT < kend) kend = i0 + q0 + QT;
            if (j0 >= kend) continue;
            const int nk = kend - j0 < BK ? kend - j0 : BK, last = j0 + BK >= kend;
            qtile qt = {mrow + q0, lrow + q0, crow + q0, Pt, j0 == 0};
            for (int i = 0; i < QT; i++) crow[q0 + i] = 1.0f;
            score_tiles(&qt, Qp + (size_t)t * dh * QT, kh, t == 0 ? vh : NULL, kvs, dh, nk,
                        A->causal, j0 - (i0 + q0), Kt);
            if (last) /* l becomes 1/l */
                for (int i = 0; i < QT; i++)
                    lrow[q0 + i] = lrow[q0 + i] > 0.0f ? 1.0f / lrow[q0 + i] : 0.0f;
            if (next && last) {
                prefetch_rows(A->q + (int64_t)(i0 + q0) * A->q_stride + (int64_t)(h + 1) * dh,
                              A->q_stride, nrows, dh);
                prefetch_rows(out + q0 * ldo + dh, ldo, nrows, dh);
            }
            att_pv(dh, O + (size_t)q0 * dh, crow + q0, j0 == 0, lrow + q0, last, out + q0 * ldo,
                   ldo, nrows, Pt, nk, vh, kvs);
        }
    }
}

/* A task: heads h0..h0+hg of one query block, in the plan's order. */
static void att_task(void *p, int64_t task, int thread) {
    const att_ctx *A = p;
    const int groups = (A->heads + A->hg - 1) / A->hg;
    int qb = (int)(task / groups), h0 = (int)(task % groups) * A->hg;
    if (A->hmajor) qb = (int)(task % A->qblocks), h0 = (int)(task / A->qblocks);
    const int i0 = qb * A->bqt, h1 = h0 + A->hg < A->heads ? h0 + A->hg : A->heads;
    for (int h = h0; h < h1; h++) att_head(A, h, i0, h + 1 < h1, thread);
}

/* The backend op (backend.h's attention) on this ISA's tiles: head dims
 * above SDC_ATT_DH_MAX go to the reference. */
static void att_run(sdc_backend *be, float *out, const float *q, int q_stride, const float *k,
                    const float *v, int kv_stride, int Sq, int Sk, int heads, int dh,
                    float scale, int causal) {
    if (Sq <= 0 || heads <= 0 || dh <= 0) return;
    if (dh > SDC_ATT_DH_MAX) {
        sdc_ref_attention(be, out, q, q_stride, k, v, kv_stride, Sq, Sk, heads, dh, scale, causal);
        return;
    }
    const int hmajor = (int64_t)(Sk > 0 ? Sk : 0) * heads * dh * 2 * (int64_t)sizeof(float) > KV_SMALL;
    int bqt = hmajor ? BQ_BIG : BQ_SMALL; /* no more than the scratch holds or Sq needs */
    while (bqt > QT && ATT_FLOATS(bqt, dh) > SDC_CPU_SCRATCH_FLOATS) bqt -= QT;
    if (bqt > (Sq + QT - 1) / QT * QT) bqt = (Sq + QT - 1) / QT * QT;
    const int qblocks = (Sq + bqt - 1) / bqt;
    const int split = qblocks >= 16 ? 1 : (16 + qblocks - 1) / qblocks; /* >= 16 tasks */
    const int hg = hmajor || split >= heads ? 1 : (heads + split - 1) / split;
    att_ctx A = {sdc_cpu_of(be), out, q, k, v, q_stride, kv_stride, Sq, Sk, heads, dh, causal,
                 bqt, qblocks, hg, hmajor, scale * 1.44269504088896341f};
    sdc_parallel_for(A.cpu->pool, (int64_t)qblocks * ((heads + hg - 1) / hg), att_task, &A);
}

#endif
