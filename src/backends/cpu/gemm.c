/* The packed GEMM (Goto/BLIS blocking) and the ops built on it.
 *
 * C[M, N] = init + A[M, K] · B[K, N].  The output is cut into tiles of
 * mt x nt (nt <= NC) handed to the threads dynamically; a tile runs
 *   for each kc-deep block: pack B[kc, nt] (nr-column panels),
 *     for each mc rows: pack A[mc, kc] (mr-row panels),
 *       micro-kernel over every mr x nr register tile
 * (mr, nr, kc, mc: the ISA's kernel, cpu_impl.h).
 * The initial value of C (bias, residual) is written micro-tile by
 * micro-tile just before the tile's first product, so it costs no pass over
 * memory of its own.  Packing converts F16/BF16 weights to f32, zero-pads the edges, and (for a
 * convolution) gathers the im2col columns of the tile only, so the scratch
 * stays MC*KC + KC*NC floats per thread (cpu_impl.h) whatever the shape.
 *
 * Shallow products (K <= 640) with A read in place take gemm_tile_deep
 * instead: B[K, nt] packed once (nt cut so that it stays within half the
 * scratch, L2-sized), then each mr-row strip of A (in L1) runs across all
 * of B's panels (streamed from L2 in order): no split of K, so C is written
 * once.  bench lb (the UNet's linears, 2 threads, min of 3 rounds,
 * 2026-11-27): M1024 N5120 K640 35.9 -> 32.4 ms, M2048 N640 K640 8.38 ->
 * 7.98, M8192 N320 K320 9.02 -> 8.87, M1024 N2560 K320 unchanged; deeper
 * K (>= 1280) measured no better that way (kc 320 + strips outer: -2%).
 *
 * Prefetch (where the ISA has a gemm_pf kernel: AVX-512).  Each call of the
 * micro-kernel fetches, one cache line per k step among its FMAs, what the
 * next call will first need from memory: the next tile's C (which init_c
 * writes next; prefetchw) and, in a strip's first panel, the next strip of
 * A where it comes from memory (read in place, or the shared pack).  The
 * kernel alone on the deep path's pattern with A and C beyond L2 (1 thread,
 * M 8190, K 320, 2026-11-27) ran at 80.4% of peak, 87.3% with A's lines
 * fetched, 93.5% with C's too; the UNet's linears on the cold harness
 * (every call on operands out of cache; 2 threads, min of 3 interleaved
 * rounds) 2480 -> 2416 ms per step, M8192 N320 K320 8.79 -> 7.95 ms; a UNet
 * pass on the full-size stand-in 2.1% faster (median of 8 paired passes,
 * with Winograd's prefetch, winograd.c).  The AVX2 kernel with the same
 * scheme measured 1.1% slower (2555 -> 2584 ms, Zen 4), so it has no
 * gemm_pf; it prefetches only its own C tile at its start (gemm_avx2.c). */
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_impl.h"

#define KC SDC_GEMM_KC
#define NC SDC_GEMM_NC
#define NR_MAX SDC_GEMM_NR_MAX
#define SHARED_CAP ((size_t)4 << 20) /* floats of operands packed once per call, at most */
#define MT_MAX 1024 /* rows per thread tile (384: linear 5-7% slower, B packed more often) */

static int imin(int a, int b) { return a < b ? a : b; }
static int round_up(int a, int m) { return (a + m - 1) / m * m; }
static int ceil_div(int a, int b) { return (a + b - 1) / b; }

void sdc_cvt_f16_generic(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = sdc_f16_to_f32(src[i]);
}

void sdc_cvt_bf16_generic(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = sdc_bf16_to_f32(src[i]);
}

void sdc_cpu_weight_row(const sdc_cpu *cpu, float *dst, const sdc_weight *w, int64_t off,
                        int64_t n) {
    switch (w->dtype) {
    case SDC_DT_F32: memcpy(dst, (const float *)w->data + off, (size_t)n * sizeof *dst); break;
    case SDC_DT_F16: cpu->k.f16(dst, (const uint16_t *)w->data + off, n); break;
    case SDC_DT_BF16: cpu->k.bf16(dst, (const uint16_t *)w->data + off, n); break;
    default: memset(dst, 0, (size_t)n * sizeof *dst); break;
    }
}

void sdc_gemm_kernel_generic(int kc, const float *a, int64_t rs_a, int64_t cs_a, const float *b,
                             int64_t rs_b, float *c, int64_t ldc, int mr, int nr) {
    float acc[SDC_GEMM_MR][SDC_GEMM_NR] = {{0}};
    for (int i = 0; i < mr; i++)
        for (int k = 0; k < kc; k++) {
            float ai = a[i * rs_a + k * cs_a];
            for (int j = 0; j < SDC_GEMM_NR; j++) acc[i][j] += ai * b[k * rs_b + j];
        }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) c[i * ldc + j] += acc[i][j];
}

void sdc_gemm_pack_rows(const sdc_cpu *cpu, float *dst, int wp, const float *src_f32,
                        const sdc_weight *w, int64_t ld, int r0, int rows, int k0, int kc) {
    if (cpu->k.pack_rows) {
        cpu->k.pack_rows(dst, wp, src_f32, w, ld, r0, rows, k0, kc);
        return;
    }
    float tmp[KC];
    int panels = ceil_div(rows, wp);
    for (int p = 0; p < panels; p++)
        for (int i = 0; i < wp; i++) {
            int r = p * wp + i;
            float *d = dst + (int64_t)p * kc * wp + i;
            if (r >= rows) {
                for (int k = 0; k < kc; k++) d[k * wp] = 0.0f;
                continue;
            }
            int64_t off = (int64_t)(r0 + r) * ld + k0;
            if (src_f32) {
                for (int k = 0; k < kc; k++) d[k * wp] = src_f32[off + k];
                continue;
            }
            for (int k1 = 0; k1 < kc; k1 += KC) { /* weights widened KC at a time */
                int n = imin(KC, kc - k1);
                sdc_cpu_weight_row(cpu, tmp, w, off + k1, n);
                for (int k = 0; k < n; k++) d[(k1 + k) * wp] = tmp[k];
            }
        }
}

/* ---- the driver --------------------------------------------------------- */

/* bf16 mode: rows m0 .. m0+mc of A, columns k0 .. k0+kc, as bf16 rows of
 * ceil(kc/2) words each (dst[i*ceil(kc/2)]), from g->a (f32) or g->aw. */
static void pack_a_bf16(const sdc_gemm *g, uint32_t *dst, int m0, int mc, int k0, int kc) {
    const sdc_cpu_kernels *K = sdc_cpu_gemm_k(g->cpu);
    const int64_t rs = (kc + 1) / 2;
    for (int i = 0; i < mc; i++) {
        int64_t off = (int64_t)(m0 + i) * g->lda + k0;
        uint32_t *d = dst + i * rs;
        if (g->a) {
            K->bf16_row_f32(d, g->a + off, kc);
        } else if (g->aw->dtype == SDC_DT_F16) {
            K->bf16_row_f16(d, (const uint16_t *)g->aw->data + off, kc);
        } else if (g->aw->dtype == SDC_DT_BF16 && !(off & 1)) {
            memcpy(d, (const uint16_t *)g->aw->data + off, (size_t)(kc / 2) * sizeof *d);
            if (kc & 1) d[kc / 2] = ((const uint16_t *)g->aw->data)[off + kc - 1];
        } else {
            float tmp[KC];
            sdc_cpu_weight_row(g->cpu, tmp, g->aw, off, kc);
            K->bf16_row_f32(d, tmp, kc);
        }
    }
}

typedef struct gemm_plan {
    const sdc_gemm *g;
    int mt, nt, n_mt, n_nt;
    int a_inplace; /* the kernel reads f32 A rows in place (a_rows_spread) */
    int deep;      /* all of K in one block, A strips outer (gemm_tile_deep) */
    int kb, nkb;   /* K in nkb blocks of kb (the last may be shorter) */
    /* operands packed once for all tiles (sdc_gemm_run), or NULL: B as
     * [n_nt][nkb][round_up(nt, nr) * kb], A as [n_mt][nkb][round_up(mt, mr) * kb] */
    float *bsh, *ash;
} gemm_plan;

/* Tile t of n tiles over `len` rows or columns in whole strips of w (the
 * register tile's side): strips split as evenly as they go, so that tiles
 * differ by at most one strip. */
static void tile_span(int t, int n, int len, int w, int *start, int *size) {
    const int strips = ceil_div(len, w);
    const int a = (int)((int64_t)t * strips / n), b = (int)((int64_t)(t + 1) * strips / n);
    *start = a * w;
    *size = imin(b * w, len) - *start;
}

/* The shared packs of tile (n-tile tn or m-tile tm) and K block kbi. */
static float *plan_bsh(const gemm_plan *pl, int tn, int kbi) {
    const int nr = sdc_cpu_gemm_k(pl->g->cpu)->nr;
    return pl->bsh + ((int64_t)tn * pl->nkb + kbi) * round_up(pl->nt, nr) * pl->kb;
}

static float *plan_ash(const gemm_plan *pl, int tm, int kbi) {
    const int mr = sdc_cpu_gemm_k(pl->g->cpu)->mr;
    return pl->ash + ((int64_t)tm * pl->nkb + kbi) * round_up(pl->mt, mr) * pl->kb;
}

/* Task: one (tile, K block) of the shared packs, B's first. */
static void gemm_pack_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const gemm_plan *pl = ctx;
    const sdc_gemm *g = pl->g;
    const int64_t nb = pl->bsh ? (int64_t)pl->n_nt * pl->nkb : 0;
    const int operand_b = task < nb;
    if (!operand_b) task -= nb;
    const int t = (int)(task / pl->nkb), kbi = (int)(task % pl->nkb);
    const int k0 = kbi * pl->kb, kc = imin(pl->kb, g->K - k0);
    const sdc_cpu_kernels *K = sdc_cpu_gemm_k(g->cpu);
    const int bf = g->cpu->bf16, nr = K->nr;
    int start, size;
    if (operand_b) {
        tile_span(t, pl->n_nt, g->N, nr, &start, &size);
        float *dst = plan_bsh(pl, t, kbi);
        if (bf && g->bw) /* the bf16 mode: pair panels, as gemm_tile makes them */
            for (int jr = 0; jr < size; jr += nr)
                K->bf16_panel_rows((uint32_t *)(void *)(dst + (int64_t)jr * kc), nr, g->bw, g->K,
                                   start + jr, imin(nr, size - jr), k0, kc);
        else
            g->pack_b(g, dst, start, size, k0, kc);
        if (bf && !g->bw)
            for (int jr = 0; jr < size; jr += nr) K->bf16_pairs(dst + (int64_t)jr * kc, kc, nr);
    } else {
        tile_span(t, pl->n_mt, g->M, K->mr, &start, &size);
        if (bf) /* bf16 rows of ceil(kc/2) words */
            pack_a_bf16(g, (uint32_t *)(void *)plan_ash(pl, t, kbi), start, size, k0, kc);
        else
            g->pack_a(g, plan_ash(pl, t, kbi), start, size, k0, kc);
    }
}

/* Whether the mr rows of A that one micro-kernel call reads in place (row
 * stride lda floats) spread over the L1 sets: rows whose byte stride is a
 * multiple of 4 KiB all land in one set of a 32 KiB 8-way L1 (64 sets of 64
 * bytes) and evict each other at every k step.  Counts the rows per set
 * index; more than 4 (half the ways, the rest for B and C) packs A instead.
 * UNet linears (bench_ops, 2 threads): K 5120 (stride 20 KiB, one set)
 * 45.1-45.9 -> 39.8 ms, K 2560 (two sets) 20.7 -> 19.0 ms; packing every A
 * instead was slower on the others (linear sum 2.91 -> 3.25 s per step). */
static int a_rows_spread(int64_t lda, int mr) {
    int per_set[64] = {0};
    for (int i = 0; i < mr; i++) {
        int set = (int)(((uint64_t)i * (uint64_t)lda * sizeof(float) / 64) % 64);
        if (++per_set[set] > 4) return 0;
    }
    return 1;
}

/* rows x cols floats from p (row stride ld floats) as prefetch lines:
 * enough 64-byte lines per row to cover the first row's span (one more
 * where rows differ in alignment) */
static sdc_gemm_pf_lines pf_rows(const float *p, int64_t ld, int rows, int cols) {
    const int off = (int)((uintptr_t)p % 64), bytes = cols * (int)sizeof(float);
    int lines = (off + bytes + 63) / 64;
    if ((ld * (int64_t)sizeof(float)) % 64 != 0) lines++;
    sdc_gemm_pf_lines l = {(const char *)p - off, ld * (int64_t)sizeof(float), rows, lines};
    return l;
}

/* One micro-kernel call, with pf's prefetches where the ISA's kernel
 * takes them. */
static inline void kernel_call(const sdc_cpu_kernels *K, int kc, const float *a, int64_t rs_a,
                               int64_t cs_a, const float *b, float *c, int64_t ldc, int mr,
                               int nr, const sdc_gemm_pf *pf) {
    if (K->gemm_pf)
        K->gemm_pf(kc, a, rs_a, cs_a, b, K->nr, c, ldc, mr, nr, pf);
    else
        K->gemm(kc, a, rs_a, cs_a, b, K->nr, c, ldc, mr, nr);
}

static void gemm_tile_deep(const gemm_plan *pl, int64_t task, int thread) {
    const sdc_gemm *g = pl->g;
    const sdc_cpu_kernels *K = sdc_cpu_gemm_k(g->cpu);
    const int mr = K->mr, nr = K->nr, kc = g->K;
    float *bpack = sdc_cpu_scratch(g->cpu, thread);
    int m0, mt, n0, nt;
    tile_span((int)(task / pl->n_nt), pl->n_mt, g->M, mr, &m0, &mt);
    tile_span((int)(task % pl->n_nt), pl->n_nt, g->N, nr, &n0, &nt);
    if (pl->bsh)
        bpack = plan_bsh(pl, (int)(task % pl->n_nt), 0);
    else
        g->pack_b(g, bpack, n0, nt, 0, kc);
    for (int ir = 0; ir < mt; ir += mr) {
        const float *a = g->a + (int64_t)(m0 + ir) * g->lda;
        const int next_rows = imin(mr, mt - ir - mr); /* of the next strip (<= 0: none) */
        for (int jr = 0; jr < nt; jr += nr) {
            float *c = g->C + sdc_gemm_off(g, m0 + ir, n0 + jr);
            g->init_c(g, m0 + ir, imin(mr, mt - ir), n0 + jr, imin(nr, nt - jr));
            /* the first panel's call fetches the next strip's A rows; every
             * call the next tile's C (this strip's next panel, or the next
             * strip's first) */
            sdc_gemm_pf pf = {{NULL, 0, 0, 0}, {NULL, 0, 0, 0}};
            if (K->gemm_pf) {
                if (jr == 0 && next_rows > 0)
                    pf.a = pf_rows(a + (int64_t)mr * g->lda, g->lda, next_rows, kc);
                if (jr + nr < nt)
                    pf.c = pf_rows(g->C + sdc_gemm_off(g, m0 + ir, n0 + jr + nr), g->ldc,
                                   imin(mr, mt - ir), imin(nr, nt - jr - nr));
                else if (next_rows > 0)
                    pf.c = pf_rows(g->C + sdc_gemm_off(g, m0 + ir + mr, n0), g->ldc, next_rows,
                                   imin(nr, nt));
            }
            kernel_call(K, kc, a, g->lda, 1, bpack + (int64_t)(jr / nr) * kc * nr, c, g->ldc,
                        imin(mr, mt - ir), imin(nr, nt - jr), &pf);
        }
    }
}

static void gemm_tile(void *ctx, int64_t task, int thread) {
    const gemm_plan *pl = ctx;
    if (pl->deep) {
        gemm_tile_deep(pl, task, thread);
        return;
    }
    const sdc_gemm *g = pl->g;
    const sdc_cpu_kernels *K = sdc_cpu_gemm_k(g->cpu);
    const int mr = K->mr, nr = K->nr, MCb = K->mc;
    float *apack = sdc_cpu_scratch(g->cpu, thread);
    float *bpack = apack + (size_t)SDC_GEMM_MC * (pl->kb > KC ? pl->kb : KC);
    int m0, mt, n0, nt;
    tile_span((int)(task / pl->n_nt), pl->n_mt, g->M, mr, &m0, &mt);
    tile_span((int)(task % pl->n_nt), pl->n_nt, g->N, nr, &n0, &nt);
    const int bf = g->cpu->bf16; /* pair panels and the bf16 kernel */
    const float *ain = pl->a_inplace && !bf ? g->a : NULL;
    if (g->K <= 0) { /* strip by strip: none spans two images */
        for (int jr = 0; jr < nt; jr += nr) g->init_c(g, m0, mt, n0 + jr, imin(nr, nt - jr));
        return;
    }
    const int kb = pl->kb, tm = (int)(task / pl->n_nt), tn = (int)(task % pl->n_nt);
    if (bf && K->bf16_begin) K->bf16_begin(); /* AMX: this thread's tile configuration */
    for (int k0 = 0; k0 < g->K; k0 += kb) {
        int kc = imin(kb, g->K - k0);
        if (pl->bsh)
            bpack = plan_bsh(pl, tn, k0 / kb);
        else if (bf && g->bw)
            for (int jr = 0; jr < nt; jr += nr)
                K->bf16_panel_rows((uint32_t *)(void *)(bpack + (int64_t)jr * kc), nr, g->bw, g->K,
                                   n0 + jr, imin(nr, nt - jr), k0, kc);
        else
            g->pack_b(g, bpack, n0, nt, k0, kc);
        if (bf && !g->bw && !pl->bsh)
            for (int jr = 0; jr < nt; jr += nr) K->bf16_pairs(bpack + (int64_t)jr * kc, kc, nr);
        for (int mm = 0; mm < mt; mm += MCb) {
            int mc = imin(MCb, mt - mm);
            if (bf && pl->ash) /* the tile's rows, bf16, ceil(kc/2) words each */
                apack = (float *)(void *)((uint32_t *)(void *)plan_ash(pl, tm, k0 / kb) +
                                          (int64_t)mm * ((kc + 1) / 2));
            else if (bf)
                pack_a_bf16(g, (uint32_t *)(void *)apack, m0 + mm, mc, k0, kc);
            else if (pl->ash)
                apack = plan_ash(pl, tm, k0 / kb) + (int64_t)(mm / mr) * kc * mr;
            else if (!ain)
                g->pack_a(g, apack, m0 + mm, mc, k0, kc);
            for (int jr = 0; jr < nt; jr += nr) {
                const float *b = bpack + (int64_t)(jr / nr) * kc * nr;
                for (int ir = 0; ir < mc; ir += mr) {
                    float *c = g->C + sdc_gemm_off(g, m0 + mm + ir, n0 + jr);
                    if (k0 == 0) /* the epilogue's bias/residual, while the tile is in L1 */
                        g->init_c(g, m0 + mm + ir, imin(mr, mc - ir), n0 + jr, imin(nr, nt - jr));
                    if (bf)
                        K->gemm_bf16((kc + 1) / 2,
                                     (const uint32_t *)(const void *)apack + (int64_t)ir * ((kc + 1) / 2),
                                     (kc + 1) / 2, (const uint32_t *)(const void *)b, c, g->ldc,
                                     imin(mr, mc - ir), imin(nr, nt - jr));
                    else {
                        /* prefetched: the next tile's C (this panel's next
                         * strip, or the next panel's first), and in the
                         * first panel the next strip of A where it comes
                         * from memory (in place, or the shared pack) */
                        sdc_gemm_pf pf = {{NULL, 0, 0, 0}, {NULL, 0, 0, 0}};
                        const int next_rows = imin(mr, mc - ir - mr);
                        if (K->gemm_pf) {
                            if (next_rows > 0)
                                pf.c = pf_rows(c + (int64_t)mr * g->ldc, g->ldc, next_rows,
                                               imin(nr, nt - jr));
                            else if (jr + nr < nt)
                                pf.c = pf_rows(g->C + sdc_gemm_off(g, m0 + mm, n0 + jr + nr),
                                               g->ldc, imin(mr, mc), imin(nr, nt - jr - nr));
                            if (jr == 0 && next_rows > 0 && ain)
                                pf.a = pf_rows(ain + (int64_t)(m0 + mm + ir + mr) * g->lda + k0,
                                               g->lda, next_rows, kc);
                            else if (jr == 0 && next_rows > 0 && pl->ash)
                                pf.a = pf_rows(apack + (int64_t)(ir / mr + 1) * kc * mr, 0, 1, kc * mr);
                        }
                        if (ain)
                            kernel_call(K, kc, ain + (int64_t)(m0 + mm + ir) * g->lda + k0, g->lda,
                                        1, b, c, g->ldc, imin(mr, mc - ir), imin(nr, nt - jr), &pf);
                        else
                            kernel_call(K, kc, apack + (int64_t)(ir / mr) * kc * mr, 1, mr, b, c,
                                        g->ldc, imin(mr, mc - ir), imin(nr, nt - jr), &pf);
                    }
                }
            }
        }
    }
    if (bf && K->bf16_end) K->bf16_end();
}

void sdc_gemm_run(const sdc_gemm *g) {
    if (g->M <= 0 || g->N <= 0) return;
    int T = g->cpu->n_threads, target = T > 1 ? 4 * T : 1;
    const sdc_cpu_kernels *GK = sdc_cpu_gemm_k(g->cpu);
    const int MR = GK->mr, NR = GK->nr;
    /* balanced tiles: nt <= NC, mt <= MT_MAX; then split further while
     * there are fewer than 4 tiles per thread */
    const int inplace = GK->inplace_a && g->a && a_rows_spread(g->lda, MR);
    const int deep = inplace && !g->cpu->bf16 && g->K > 0 && g->K <= 640;
    int ncap = deep ? imin(NC, (int)(SDC_CPU_SCRATCH_FLOATS / 2 / g->K) / NR * NR) : NC;
    /* K a little over kc with A packed: all of K in one block (below), so
     * that C is written once, not once per block, when A's block and B's
     * fit the scratch together: nc1 columns of B do; the columns are cut
     * to that where it leaves at least 4 strips, else K is split as usual.
     * linear_map at C = 320 (harness, 2 threads, min of 7, two runs): into
     * tokens 10.23-10.35 -> 9.2-9.5 ms, back to the map 11.1-11.6 ->
     * 10.0-10.1 (the one block alone, before the cut: a step's 26 calls
     * into tokens 144.2 / 144.3 -> 140.1 / 138.0 ms).  Decided from K and
     * the scratch alone: the K blocks set the rounding, and a choice that
     * followed the tiling (which follows M) would round an image by the
     * batch it came in (test_ops' test_batch_invariance). */
    const int64_t nc1 =
        !deep && !g->cpu->bf16 && g->K > GK->kc && g->K <= 640
            ? ((int64_t)SDC_CPU_SCRATCH_FLOATS - (int64_t)SDC_GEMM_MC * g->K) / g->K / NR * NR
            : 0;
    const int one_block = nc1 >= 4 * NR;
    if (one_block) ncap = imin(ncap, (int)nc1);
    if (ncap < NR) ncap = NR;
    int nt = round_up(ceil_div(g->N, ceil_div(g->N, ncap)), NR);
    int mt = round_up(ceil_div(g->M, ceil_div(g->M, MT_MAX)), MR);
    for (;;) {
        int64_t units = (int64_t)ceil_div(g->M, mt) * ceil_div(g->N, nt);
        if (units >= target) break;
        if (nt > 4 * NR && (nt >= mt || mt <= 8 * MR))
            nt = round_up(nt / 2, NR);
        else if (mt > 8 * MR)
            mt = round_up(mt / 2, MR);
        else
            break;
    }
    /* a task count that is a multiple of the threads: with n equal tasks
     * dynamic scheduling ends after ceil(n/T) of them, so 9 on 2 threads
     * take as long as 10 (the last ran alone) */
    int n_mt = ceil_div(g->M, mt), n_nt = ceil_div(g->N, nt);
    const int strips_m = ceil_div(g->M, MR), strips_n = ceil_div(g->N, NR);
    for (int d = 1; T > 1 && (n_mt * n_nt) % T != 0 && d < T; d++) {
        const int wide = ceil_div(strips_n, n_nt) >= ceil_div(strips_m, n_mt);
        if (wide && n_nt + d <= strips_n && (n_mt * (n_nt + d)) % T == 0) n_nt += d;
        else if (n_mt + d <= strips_m && ((n_mt + d) * n_nt) % T == 0) n_mt += d;
        else if (n_nt + d <= strips_n && (n_mt * (n_nt + d)) % T == 0) n_nt += d;
    }
    /* tiles of whole register strips, as even as they go (tile_span); mt,
     * nt: the largest */
    mt = ceil_div(strips_m, n_mt) * MR;
    while ((nt = ceil_div(strips_n, n_nt) * NR) > ncap) n_nt++; /* deep: B within the scratch */
    gemm_plan pl = {g, mt, nt, n_mt, n_nt, inplace, deep, 0, 0, NULL, NULL};
    /* K in equal blocks of at most kc (K = 320: 2 x 160, not 256 + 64) */
    pl.kb = deep || g->K <= 0 ? g->K : ceil_div(g->K, ceil_div(g->K, GK->kc));
    /* whole tiles of pairs (AMX: K 640 in 224 + 224 + 192, not 3 x 214);
     * kc is a multiple of kalign, so kb stays <= kc */
    if (GK->kalign > 1 && pl.kb > 0) pl.kb = round_up(pl.kb, GK->kalign);
    if (one_block) pl.kb = g->K; /* (above; nt <= ncap <= nc1) */
    pl.nkb = pl.kb > 0 ? ceil_div(g->K, pl.kb) : 0;
    /* An operand that several tiles would pack alike (B when there are
     * several m-tiles, a packed A when several n-tiles) is packed once, by
     * all threads, into the shared buffer, when it fits SHARED_CAP (16 MiB,
     * about what Winograd's panel path holds there anyway): the im2col of a
     * stride-2 conv was redone by each of its 8 m-tiles, a 1x1 conv's
     * weights by each of its n-tiles.  bench cb1/lb, 2 threads, min of 3
     * rounds, 2026-11-27: stride-2 convs C640 32x32 31.5 -> 23.7 ms, C1280
     * 16x16 38.4 -> 29.1, 1x1 convs 2-7% faster, linears with a packed A
     * (K 2560, 5120) 9-10%, the UNet's linears 203.0 -> 195.7 ms in all. */
    /* The bf16 mode does so where its kernel set asks (AMX: converting A
     * once per n-tile and B once per m-tile would be a large share of the
     * tiles' fast products; not measured yet); A is then always packed. */
    const int bf = g->cpu->bf16;
    if ((!bf || GK->bf16_shared) && pl.nkb > 0) {
        /* nkb blocks of kb each per tile (kb * nkb may exceed K) */
        const size_t kbs = (size_t)pl.nkb * pl.kb;
        size_t nb = pl.n_mt > 1 ? (size_t)pl.n_nt * round_up(nt, NR) * kbs : 0;
        size_t na = pl.n_nt > 1 && (bf || !inplace) ? (size_t)pl.n_mt * round_up(mt, MR) * kbs : 0;
        if (nb > SHARED_CAP) nb = 0;
        if (na > SHARED_CAP || deep) na = 0;
        float *buf = nb + na ? sdc_cpu_shared_buffer(g->cpu, nb + na) : NULL;
        if (buf) {
            pl.bsh = nb ? buf : NULL;
            pl.ash = na ? buf + nb : NULL;
            int64_t tasks = (nb ? (int64_t)pl.n_nt * pl.nkb : 0) + (na ? (int64_t)pl.n_mt * pl.nkb : 0);
            sdc_parallel_for(g->cpu->pool, tasks, gemm_pack_task, &pl);
        }
    }
    sdc_parallel_for(g->cpu->pool, (int64_t)pl.n_mt * pl.n_nt, gemm_tile, &pl);
}

/* ---- linear: A = x [M, K], B = W^T (W [N, K]) ---------------------------- */

typedef struct linear_ctx {
    const float *x, *acc;
    const sdc_weight *W, *b;
    const float *bias; /* b as f32 (linear_bias), or NULL: converted per tile */
} linear_ctx;

static void linear_pack_a(const sdc_gemm *g, float *dst, int m0, int mc, int k0, int kc) {
    const linear_ctx *L = g->ctx;
    sdc_gemm_pack_rows(g->cpu, dst, sdc_cpu_gemm_k(g->cpu)->mr, L->x, NULL, g->K, m0, mc, k0, kc);
}

static void linear_pack_b(const sdc_gemm *g, float *dst, int n0, int nc, int k0, int kc) {
    const linear_ctx *L = g->ctx;
    sdc_gemm_pack_rows(g->cpu, dst, sdc_cpu_gemm_k(g->cpu)->nr, NULL, L->W, g->K, n0, nc, k0, kc);
}

/* C[m, n] = acc[m, n] + b[n] */
static void linear_init(const sdc_gemm *g, int m0, int mc, int n0, int nc) {
    const linear_ctx *L = g->ctx;
    float tmp[NC];
    const float *bias = L->bias ? L->bias + n0 : tmp;
    if (!L->bias) {
        if (L->b) sdc_cpu_weight_row(g->cpu, tmp, L->b, n0, nc);
        else memset(tmp, 0, (size_t)nc * sizeof *tmp);
    }
    for (int m = m0; m < m0 + mc; m++) {
        float *c = g->C + (int64_t)m * g->ldc + n0;
        const float *a = L->acc ? L->acc + (int64_t)m * g->ldc + n0 : NULL;
        if (a)
            for (int n = 0; n < nc; n++) c[n] = a[n] + bias[n];
        else
            for (int n = 0; n < nc; n++) c[n] = bias[n];
    }
}

/* The bias as f32 for linear_init: an F32 bias in place, another widened
 * once per call into cpu->bias rather than once per micro-tile; NULL
 * (linear_init converts per tile) if b is NULL or longer than the buffer. */
static const float *linear_bias(const sdc_cpu *cpu, const sdc_weight *b, int N) {
    if (!b || N <= 0) return NULL;
    if (b->dtype == SDC_DT_F32) return b->data;
    if (N > SDC_CPU_BIAS_FLOATS) return NULL;
    sdc_cpu_weight_row(cpu, cpu->bias, b, 0, N);
    return cpu->bias;
}

void sdc_cpu_linear(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                    const sdc_weight *b, const float *acc, int M, int N, int K) {
    linear_ctx L = {x, acc, W, b, linear_bias(sdc_cpu_of(be), b, N)};
    sdc_gemm g = {sdc_cpu_of(be), M, N, K, y, N, x, K, linear_pack_a, linear_pack_b, linear_init, &L,
                  NULL, W, 0, 0};
    sdc_gemm_run(&g);
}

/* ---- conv2d: A = w [O, C*kh*kw], B = im2col(x) [C*kh*kw, images*Ho*Wo]
 * (the images side by side: sdc_gemm's img_cols), C = y [images][O, Ho*Wo]
 * ----------------------------------------------------------------------- */

typedef struct conv_ctx {
    const float *x;   /* the first image, [C, H, W] per image */
    const float *acc; /* laid out as y, or NULL */
    const sdc_weight *w, *b;
    int C, H, W, kh, kw, stride, pad, Ho, Wo;
} conv_ctx;

static void conv_pack_a(const sdc_gemm *g, float *dst, int m0, int mc, int k0, int kc) {
    const conv_ctx *cv = g->ctx;
    sdc_gemm_pack_rows(g->cpu, dst, sdc_cpu_gemm_k(g->cpu)->mr, NULL, cv->w, g->K, m0, mc, k0, kc);
}

/* 1x1, stride 1, no padding: B is x itself, [C, H*W] per image.  A panel's
 * columns lie in one image (img_cols); full panels are copied in fixed-size
 * blocks (a libc call per row of 16 floats took 8% of a 1x1 convolution). */
static void conv1x1_pack_b(const sdc_gemm *g, float *dst, int n0, int nc, int k0, int kc) {
    const conv_ctx *cv = g->ctx;
    const int NR = sdc_cpu_gemm_k(g->cpu)->nr;
    const int64_t P = (int64_t)cv->H * cv->W;
    for (int j = 0; j < nc; j += NR) {
        int w = imin(NR, nc - j);
        const int64_t col = n0 + j, img = col / P;
        const float *s = cv->x + (img * cv->C + k0) * P + col % P;
        float *d = dst + (int64_t)(j / NR) * kc * NR;
        if (w == 16 && NR == 16)
            for (int k = 0; k < kc; k++) memcpy(d + k * 16, s + k * P, 16 * sizeof *d);
        else
            for (int k = 0; k < kc; k++) {
                memcpy(d + k * NR, s + k * P, (size_t)w * sizeof *d);
                for (int jj = w; jj < NR; jj++) d[k * NR + jj] = 0.0f;
            }
    }
}

/* im2col of the tile: row kk = (c, ky, kx), column p = (oy, ox) of its
 * image holds x[c, oy*stride - pad + ky, ox*stride - pad + kx] (0 outside). */
static void im2col_pack_b(const sdc_gemm *g, float *dst, int n0, int nc, int k0, int kc) {
    const conv_ctx *cv = g->ctx;
    const int NR = sdc_cpu_gemm_k(g->cpu)->nr;
    const int64_t P = (int64_t)cv->Ho * cv->Wo;
    int khw = cv->kh * cv->kw, s = cv->stride;
    for (int j = 0; j < nc; j += NR) {
        int w = imin(NR, nc - j);
        const int64_t img = (n0 + j) / P;
        const int p0 = (int)(n0 + j - img * P);
        const float *xi = cv->x + img * cv->C * cv->H * cv->W;
        int iy0[NR_MAX], ix0[NR_MAX];
        for (int jj = 0; jj < NR; jj++) {
            int p = p0 + (jj < w ? jj : 0);
            iy0[jj] = (p / cv->Wo) * s - cv->pad;
            ix0[jj] = (p % cv->Wo) * s - cv->pad;
        }
        int one_row = w == NR && iy0[0] == iy0[NR - 1];
        float *d = dst + (int64_t)(j / NR) * kc * NR;
        int c = k0 / khw, r = k0 % khw, ky = r / cv->kw, kx = r % cv->kw;
        for (int k = 0; k < kc; k++, d += NR) {
            const float *plane = xi + (int64_t)c * cv->H * cv->W;
            int iy = iy0[0] + ky, ixa = ix0[0] + kx, ixb = ix0[NR - 1] + kx;
            if (one_row && iy >= 0 && iy < cv->H && ixa >= 0 && ixb < cv->W) {
                const float *row = plane + (int64_t)iy * cv->W + ixa;
                if (s == 1)
                    memcpy(d, row, (size_t)NR * sizeof *d);
                else
                    for (int jj = 0; jj < NR; jj++) d[jj] = row[jj * s];
            } else {
                for (int jj = 0; jj < NR; jj++) {
                    int y = iy0[jj] + ky, x = ix0[jj] + kx;
                    d[jj] = jj < w && y >= 0 && y < cv->H && x >= 0 && x < cv->W
                                ? plane[(int64_t)y * cv->W + x]
                                : 0.0f;
                }
            }
            if (++kx == cv->kw) {
                kx = 0;
                if (++ky == cv->kh) {
                    ky = 0;
                    c++;
                }
            }
        }
    }
}

/* C[o, p] = acc[o, p] + b[o] (columns n0 .. n0+nc of one image) */
static void conv_init(const sdc_gemm *g, int m0, int mc, int n0, int nc) {
    const conv_ctx *cv = g->ctx;
    for (int o = m0; o < m0 + mc; o++) {
        float bias = cv->b ? sdc_wget(cv->b, o) : 0.0f;
        const int64_t off = sdc_gemm_off(g, o, n0);
        float *c = g->C + off;
        const float *a = cv->acc ? cv->acc + off : NULL;
        if (a)
            for (int n = 0; n < nc; n++) c[n] = a[n] + bias;
        else
            for (int n = 0; n < nc; n++) c[n] = bias;
    }
}

/* Runs g (M = O output channels, K, pack and init set, C = y) over N
 * images of cv's shape, laid out [N][C][H*W] in and [N][O][Ho*Wo] out: as
 * one GEMM with the images side by side in its columns when no register
 * strip would span two (Ho*Wo a multiple of nr), else image by image.  One
 * GEMM packs (widens) the weights once instead of once per image and has N
 * times the columns to cut into tiles: the UNet's 1x1 and stride-2
 * convolutions on maps of 8x8 to 32x32 pixels (64 to 1024 columns per
 * image). */
static void conv_gemm_images(sdc_gemm *g, conv_ctx *cv, int N) {
    const int64_t P = (int64_t)cv->Ho * cv->Wo, y_per = (int64_t)g->M * P;
    float *y = g->C;
    if (N > 1 && P % sdc_cpu_gemm_k(g->cpu)->nr == 0 && (int64_t)N * P <= INT32_MAX) {
        g->N = (int)(N * P), g->img_cols = P, g->img_stride = y_per;
        sdc_gemm_run(g);
        return;
    }
    const int64_t x_per = (int64_t)cv->C * cv->H * cv->W;
    const float *x0 = cv->x, *acc0 = cv->acc;
    for (int n = 0; n < N; n++) {
        cv->x = x0 + (int64_t)n * x_per;
        cv->acc = acc0 ? acc0 + (int64_t)n * y_per : NULL;
        g->C = y + (int64_t)n * y_per, g->N = (int)P;
        sdc_gemm_run(g);
    }
}

/* Which 3x3 stride-1 pad-1 convolutions go to Winograd (winograd.c):
 * SDC_WINOGRAD=0/1 forces either way; otherwise by size (measured, see
 * winograd.c's table). */
int sdc_cpu_use_winograd(int C, int H, int W, int O) {
    const char *env = getenv("SDC_WINOGRAD");
    if (env && env[0] == '0') return 0;
    if (env && (env[0] == '1' || env[0] == '2')) return 1;
    (void)O;
    return C >= 8 && (int64_t)H * W >= 64;
}

void sdc_cpu_conv2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                    const sdc_weight *w, const sdc_weight *b, int O, int kh, int kw, int stride,
                    int pad, const float *acc) {
    if (kh == 3 && kw == 3 && stride == 1 && pad == 1 && sdc_cpu_use_winograd(C, H, W, O) &&
        sdc_cpu_conv2d_winograd(be, y, x, N, C, H, W, w, b, O, acc) == 0)
        return;
    int Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    int64_t P = (int64_t)Ho * Wo;
    int direct = kh == 1 && kw == 1 && stride == 1 && pad == 0;
    conv_ctx cv = {x, acc, w, b, C, H, W, kh, kw, stride, pad, Ho, Wo};
    int64_t K = (int64_t)C * kh * kw;
    sdc_gemm g = {sdc_cpu_of(be), O, (int)P, (int)K, y, P,
                  w->dtype == SDC_DT_F32 ? (const float *)w->data : NULL, K,
                  conv_pack_a, direct ? conv1x1_pack_b : im2col_pack_b, conv_init, &cv, w, NULL,
                  0, 0};
    conv_gemm_images(&g, &cv, N);
}

/* ---- linear_map: a Linear between the feature-map and the token layouts --
 *
 * To tokens: one GEMM over the N*HW rows, A = x^T packed straight from the
 * channel-major map (a panel's row k is mr consecutive pixels of channel
 * k: contiguous copies, no transpose), B = W^T as in linear.  To the map:
 * per image the 1x1 convolution's GEMM (A = W, C = y [O, HW], init = bias
 * + residual) with B = the tokens' transpose, packed by pack_rows from the
 * token rows (the panel packer's register transposes).  Either way the
 * transpose costs no pass over memory of its own. */

/* linear_pack_b and linear_init read the linear_ctx at the start */
typedef struct map_ctx {
    linear_ctx L;
    const float *x; /* [N, C, HW] */
    int C, HW;
} map_ctx;

/* Panels [kc][mr] of rows m0 .. m0+mc (row m: image m / HW, pixel m % HW)
 * and channels k0 .. k0+kc of x^T; rows past mc zero. */
static void map_pack_a(const sdc_gemm *g, float *dst, int m0, int mc, int k0, int kc) {
    const map_ctx *mp = g->ctx;
    const int mr = sdc_cpu_gemm_k(g->cpu)->mr;
    for (int ir = 0; ir < mc; ir += mr, dst += (int64_t)kc * mr) {
        const int rows = imin(mr, mc - ir);
        if (rows < mr)
            for (int k = 0; k < kc; k++) memset(dst + (int64_t)k * mr + rows, 0, (size_t)(mr - rows) * sizeof *dst);
        for (int i = 0; i < rows;) { /* a run of rows within one image */
            const int m = m0 + ir + i, n = m / mp->HW, p = m % mp->HW;
            const int run = imin(rows - i, mp->HW - p);
            const float *src = mp->x + ((int64_t)n * mp->C + k0) * mp->HW + p;
            for (int k = 0; k < kc; k++)
                memcpy(dst + (int64_t)k * mr + i, src + (int64_t)k * mp->HW, (size_t)run * sizeof *dst);
            i += run;
        }
    }
}

/* Panels [kc][nr] of B = t^T (t [HW, C] token rows n0 .. n0+nc, channels
 * k0 .. k0+kc): pack_rows over the token rows. */
static void tokens_pack_b(const sdc_gemm *g, float *dst, int n0, int nc, int k0, int kc) {
    const conv_ctx *cv = g->ctx;
    sdc_gemm_pack_rows(g->cpu, dst, sdc_cpu_gemm_k(g->cpu)->nr, cv->x, NULL, cv->C, n0, nc, k0, kc);
}

void sdc_cpu_linear_map(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                        const sdc_weight *b, const float *acc, int N, int HW, int C, int O,
                        int to_tokens) {
    sdc_cpu *cpu = sdc_cpu_of(be);
    if (N <= 0 || HW <= 0 || O <= 0) return;
    if (to_tokens) {
        if (cpu->bf16) {
            /* the bf16 mode converts A from row-major rows: per image the
             * transpose as a pass of its own, then the Linear (the plain C
             * reference if even one image's buffer cannot be had) */
            float *t = sdc_cpu_aux_buffer(cpu, (size_t)HW * C);
            if (!t) {
                sdc_ref_linear_map(be, y, x, W, b, NULL, N, HW, C, O, 1);
                return;
            }
            for (int n = 0; n < N; n++) {
                be->transpose(be, t, x + (int64_t)n * C * HW, 1, C, HW);
                sdc_cpu_linear(be, y + (int64_t)n * HW * O, t, W, b, NULL, HW, O, C);
            }
            return;
        }
        map_ctx mp = {{NULL, NULL, W, b, linear_bias(cpu, b, O)}, x, C, HW};
        sdc_gemm g = {cpu, N * HW, O, C, y, O, NULL, C, map_pack_a, linear_pack_b, linear_init, &mp,
                      NULL, W, 0, 0};
        sdc_gemm_run(&g);
        return;
    }
    /* per image a 1x1 conv over the image as one row of HW pixels; x: its
     * tokens, [N * HW, C] (tokens_pack_b reads them across images) */
    conv_ctx cv = {.x = x, .acc = acc, .w = W, .b = b, .C = C, .H = 1, .W = HW, .kh = 1, .kw = 1,
                   .stride = 1, .pad = 0, .Ho = 1, .Wo = HW};
    sdc_gemm g = {cpu, O, HW, C, y, HW, W->dtype == SDC_DT_F32 ? (const float *)W->data : NULL, C,
                  conv_pack_a, tokens_pack_b, conv_init, &cv, W, NULL, 0, 0};
    conv_gemm_images(&g, &cv, N);
}
