/* What the SIMD attention kernels (attention_avx512.c, attention_avx2.c,
 * attention_neon.c) share: the block sizes, the per-call state, the task
 * plan and the task driver.  Each includes this after defining QT (queries
 * per micro-tile) and KT (keys per score tile), and defines att_head: one
 * head of one query block, the ISA's own tiles.
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

/* Head h of the query block from i0 (the ISA's file); next: another head
 * of the same block follows in this task (prefetch its rows). */
static void att_head(const att_ctx *A, int h, int i0, int next, int thread);

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
