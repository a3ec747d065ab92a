/* 3x3 stride-1 pad-1 convolution by Winograd F(4x4, 3x3) (transforms in
 * winograd_tf.h), and F(2x2, 3x3) for the smallest maps (below).
 *
 * Per image, with T = ceil(H/4) * ceil(W/4) output tiles of 4x4:
 *   U[xi][O][C] = G g G^T       (filters, 36 = 6x6 points xi)
 *   V[xi][C][T] = B^T d B       (6x6 input tiles at stride 4)
 *   M[xi][O][T] = U[xi] V[xi]   (36 GEMMs, the ISA's micro-kernel)
 *   y[O][tile]  = A^T M A + bias (+ acc)
 * 36 products per 16 outputs instead of 144: 4x fewer multiplies.
 *
 * Memory.  U for a whole layer is 4x the f32 filters (36/9): 236 MB for a
 * 1280x1280 UNet conv, 472 MB for 2560 -> 1280, too much for the 2 GB budget
 * if kept for all layers, so U is made on the fly per layer, in blocks of
 * Ob output channels with 36*Ob*C <= WINO_U_CAP floats (16 MiB).  Its cost,
 * 162 multiply-adds per (o, c) filter against 36*T*N for the products, is
 * 4.5/(T*N) of them: <= 3.5% at 32x32 (T*N = 128), <= 0.5% in the VAE.
 * Each thread transforms nr tiles at a time: V = 36*C*nr floats (<= 11.8 MB
 * at C = 2560, nr = 32) and M = 36*Ob*nr floats (<= 1.2 MB): at most
 * 16 + 2*(11.8 + 1.2) = 42 MB in all (C = 2560; the VAE's C = 512 layers
 * 16 + 2*(2.4 + 1.2) = 23 MB).  They are mapped per call and unmapped after
 * it, so they hold no resident memory between convolutions (measured peak
 * RSS of a 512x512 image: 1762 MiB, 1738 with SDC_WINOGRAD=0); if the
 * mapping fails the caller falls back to the im2col GEMM.  The panel path
 * (below) keeps one buffer between calls (cpu->shared): V for one group of
 * 64 tiles, 36*C*64 floats (23.6 MB at C = 2560), and each thread's
 * products (0.5 MiB); its U slices live in the threads' scratch.
 *
 * Two schedules.  The layer path (below) makes U for a block of Ob output
 * channels at once, then tasks over tile panels: good when the tiles are
 * many and C, O small (the VAE's 128-channel convs at 512x512, O = 3/4
 * outputs).  The panel path (wino_panel_run) gives each task 4 panels of
 * mr output channels, their U made in L2-sized slices, over groups of 64
 * tiles: everything else.
 *
 * When (sdc_cpu_use_winograd, gemm.c): ms per call, F16 filters, 2 threads,
 * Zen 4, avx512, 2026-11-26 (bench_ops; GEMM: SDC_WINOGRAD=0 at 8008a94's
 * state, Winograd: bench/results/ops_b759735.json; machine shared, +-10%):
 *   C     HxW      O     N   im2col GEMM   Winograd   speed-up
 *   320   64x64    320   2       87.2        29.6      2.9
 *   640   64x64    640   2      326.5       143.1      2.3
 *   640   32x32    640   2       94.3        26.5      3.6
 *   1280  32x32    1280  2      380.0       138.2      2.8
 *   1280  16x16    1280  2      118.5        32.3      3.7
 *   2560  16x16    1280  2      248.7        80.4      3.1
 *   1280   8x8     1280  2       38.6        18.1      2.1
 *   2560   8x8     1280  2       75.8        40.1      1.9
 *   320   64x64    4     2       10.6         4.5      2.4   (layer path)
 *   512   128x128  512   1      432          153       2.8
 *   128   512x512  128   1      533          173       3.1   (layer path)
 * Error against direct convolution 2.3e-6 to 3.5e-6 relative L2 on the
 * real shapes.  Hence: Winograd iff C >= 8 and H*W >= 64 (a 4x4 map has 1
 * tile per image: 1/16 of the panel's lanes used); the layer path when
 * the tiles of an image are many (more than 64) and C < 256 or O < 64, or more than
 * 8192 (the VAE's 512x512 level: C 256 there, 2026-11-27, back to back on
 * a busy machine: O 256 896-1202 -> 736-754 ms, O 128 522-671 -> 324-401
 * ms against the panel path).
 *
 * F(2x2, 3x3) (16 points, 2x2 tiles: 2.25x fewer multiplies than direct)
 * on the panel path where F(4x4) has at most nr/2 tiles: the UNet's 8x8
 * maps at N = 2 have 8 tiles of 4x4, a quarter of AVX-512's 32-tile
 * register panel (the 6x16 kernel at half its lanes), but 32 tiles of 2x2,
 * a full panel; its filter transform is also 6x cheaper (the F(4x4) one
 * rivals the products there).  bench cb, 2 threads, min of 3 rounds,
 * 2026-11-27 (busy host): C 1280 8x8 O 1280 N 2: F(4x4) 17.1 ms, F(2x2)
 * 15.3, im2col 44.2; C 2560: 38.4, 28.6, 77.6 (same minutes earlier: 18.6
 * -> 13.5 and 37.2 -> 26.7).  At 16x16 F(2x2) loses (C 1280: 45 against 30
 * ms).  Error on the real 8x8 shape 3.2e-7 relative L2 (F(4x4): ~3e-6).
 *
 * The bf16 mode (sdc_backend_cpu_set_bf16) does not reach here: rounding U
 * and V to bf16 gave 2.1e-2 to 2.8e-2 relative L2 against the f32 convolution
 * (the inverse transform amplifies it; the bf16 GEMM's is 1e-3 to 2.4e-3),
 * so Winograd stays f32, still faster than a bf16 im2col GEMM would be.
 *
 * Input transform is repeated per Ob block (cheap: ~130 flops per tile and
 * channel against 72*Ob for the products). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backends/cpu/cpu_impl.h"

#define WINO_U_CAP ((size_t)4 << 20) /* floats */
#define WINO_OB_MAX 256

typedef void (*wino_in_fn)(const float *x, int C, int H, int W, int tw, int T, int NT, int t0,
                           float *v, int64_t xs, int64_t cs, int jofs);
typedef void (*wino_w_fn)(const float *g, int n, float *u, int64_t xs, int mr);
typedef void (*wino_out_fn)(const float *m, int64_t ms, float *y, const float *acc, float bias,
                            int Ho, int Wo, int tw, int T, int NT, int t0, int64_t ys);
/* the transforms of 16 filters (channels in a row, F16: 144 halfs) of one
 * output channel: u[xi*xs + j], j < 16 (the panel path's U slices) */
typedef void (*wino_w16_fn)(const uint16_t *h, float *u, int64_t xs);

#define WINO_FN(name) name##_generic
#include "backends/cpu/winograd_tf.h"
#undef WINO_FN
#define WB 16 /* lanes of one transform call (winograd_tf.h) */

#ifdef SDC_HAVE_X86
void sdc_wino_input_avx2(const float *, int, int, int, int, int, int, int, float *, int64_t,
                         int64_t, int);
void sdc_wino_weight_avx2(const float *, int, float *, int64_t, int);
void sdc_wino_output_avx2(const float *, int64_t, float *, const float *, float, int, int, int, int,
                          int, int, int64_t);
void sdc_wino_input_avx512(const float *, int, int, int, int, int, int, int, float *, int64_t,
                           int64_t, int);
void sdc_wino_weight_avx512(const float *, int, float *, int64_t, int);
void sdc_wino_output_avx512(const float *, int64_t, float *, const float *, float, int, int, int,
                            int, int, int, int64_t);
void sdc_wino2_input_avx2(const float *, int, int, int, int, int, int, int, float *, int64_t,
                          int64_t, int);
void sdc_wino2_weight_avx2(const float *, int, float *, int64_t, int);
void sdc_wino2_output_avx2(const float *, int64_t, float *, const float *, float, int, int, int,
                           int, int, int, int64_t);
void sdc_wino2_input_avx512(const float *, int, int, int, int, int, int, int, float *, int64_t,
                            int64_t, int);
void sdc_wino2_weight_avx512(const float *, int, float *, int64_t, int);
void sdc_wino_weight16_f16_avx512(const uint16_t *, float *, int64_t);
void sdc_wino2_weight16_f16_avx512(const uint16_t *, float *, int64_t);
void sdc_wino_weight16_f16_avx2(const uint16_t *, float *, int64_t);
void sdc_wino2_weight16_f16_avx2(const uint16_t *, float *, int64_t);
void sdc_wino2_output_avx512(const float *, int64_t, float *, const float *, float, int, int,
                             int, int, int, int, int64_t);
#endif

/* Elements off .. off+n of the weight w towards the caches. */
static void wino_prefetch_w(const sdc_weight *w, int64_t off, int64_t n) {
    size_t es = sdc_dtype_size(w->dtype);
    const char *p = (const char *)w->data + off * (int64_t)es;
    for (int64_t i = 0; i < n * (int64_t)es; i += 64) __builtin_prefetch(p + i);
}

static int imin(int a, int b) { return a < b ? a : b; }
static int ceil_div(int a, int b) { return (a + b - 1) / b; }

typedef struct wino_job {
    sdc_cpu *cpu;
    wino_in_fn in;
    wino_w_fn wt;
    wino_out_fn out;
    const float *x, *acc; /* [N, C, H, W], [N, O, H*W] or NULL */
    float *y;             /* [N, O, H, W] */
    const sdc_weight *w, *b;
    int C, H, W, O, tw, T, NT; /* T tiles per image, NT = N*T in all */
    int o0, ob, np; /* the O block: channels o0..o0+ob in np panels of mr */
    int n_og, pg;   /* tasks split the np panels into n_og groups of pg */
    float *U;       /* [36][np][C][mr] */
    float *V, *M;   /* per thread: [36][C][nr], [36][np*mr][nr] */
} wino_job;

/* U for output channels o0 + task (one channel per task). */
static void wino_weight_task(void *ctx, int64_t task, int thread) {
    const wino_job *jb = ctx;
    const int mr = jb->cpu->k.mr, C = jb->C;
    int o = (int)task, p = o / mr, r = o % mr;
    float *g = sdc_cpu_scratch(jb->cpu, thread); /* C*9 <= 23040 floats, fits */
    sdc_cpu_weight_row(jb->cpu, g, jb->w, (int64_t)(jb->o0 + o) * C * 9, (int64_t)C * 9);
    int64_t xs = (int64_t)jb->np * C * mr;
    for (int c = 0; c < C; c += WB)
        jb->wt(g + (int64_t)c * 9, imin(WB, C - c), jb->U + ((int64_t)p * C + c) * mr + r, xs, mr);
}

static void wino_zero_pad_rows(const wino_job *jb) {
    const int mr = jb->cpu->k.mr;
    int64_t xs = (int64_t)jb->np * jb->C * mr;
    for (int o = jb->ob; o < jb->np * mr; o++) {
        int p = o / mr, r = o % mr;
        for (int xi = 0; xi < 36; xi++)
            for (int c = 0; c < jb->C; c++)
                jb->U[xi * xs + ((int64_t)p * jb->C + c) * mr + r] = 0.0f;
    }
}

/* Task (tile panel tp, O-panel group og): the nr tiles from tp*nr
 * (all images' tiles in one sequence), input transform, the 36 GEMMs for
 * the O panels of group og, inverse transform of their rows. */
static void wino_tile_task(void *ctx, int64_t task, int thread) {
    const wino_job *jb = ctx;
    const sdc_cpu_kernels *K = &jb->cpu->k;
    const int mr = K->mr, nr = K->nr, C = jb->C, np = jb->np, rows = np * mr;
    const int t0 = (int)(task / jb->n_og) * nr, og = (int)(task % jb->n_og);
    const int p0 = og * jb->pg, p1 = imin(np, p0 + jb->pg);
    if (p0 >= p1) return;
    float *V = jb->V + (size_t)thread * 36 * C * nr;
    float *M = jb->M + (size_t)thread * 36 * rows * nr;
    for (int j = 0; j < nr; j += WB)
        jb->in(jb->x, C, jb->H, jb->W, jb->tw, jb->T, jb->NT, t0 + j, V, (int64_t)C * nr, nr, j);
    for (int xi = 0; xi < 36; xi++)
        memset(M + ((int64_t)xi * rows + p0 * mr) * nr, 0,
               (size_t)(p1 - p0) * mr * nr * sizeof *M);
    const int kb = ceil_div(C, ceil_div(C, K->kc));
    for (int xi = 0; xi < 36; xi++) {
        const float *u = jb->U + (int64_t)xi * np * C * mr;
        const float *v = V + (int64_t)xi * C * nr;
        float *m = M + (int64_t)xi * rows * nr;
        for (int k0 = 0; k0 < C; k0 += kb) {
            int kc = imin(kb, C - k0);
            for (int p = p0; p < p1; p++)
                K->gemm(kc, u + ((int64_t)p * C + k0) * mr, 1, mr, v + (int64_t)k0 * nr, nr,
                        m + (int64_t)p * mr * nr, nr, imin(mr, jb->ob - p * mr), nr);
        }
    }
    const int64_t P = (int64_t)jb->H * jb->W, ys = (int64_t)jb->O * P;
    for (int o = p0 * mr; o < imin(jb->ob, p1 * mr); o++) {
        int oc = jb->o0 + o;
        float bias = jb->b ? sdc_wget(jb->b, oc) : 0.0f;
        for (int j = 0; j < nr && t0 + j < jb->NT; j += WB)
            jb->out(M + (int64_t)o * nr + j, (int64_t)rows * nr, jb->y + oc * P,
                    jb->acc ? jb->acc + oc * P : NULL, bias, jb->H, jb->W, jb->tw, jb->T, jb->NT,
                    t0 + j, ys);
    }
}

/* ---- the panel path -----------------------------------------------------------
 * At 16x16 and 8x8 there are too few tiles (NT = N*T) to amortise a whole
 * layer's U through memory (236 MB for 1280 -> 1280); at every size, a
 * layer-wide U costs a pass over memory.  Here each task owns pp panels of
 * mr output channels and makes their U in kc-deep slices ([pp][36][mr][kc],
 * 126 KiB per panel at kc = 64, mr = 14: rows of channels, so that the
 * filter transform stores whole vectors and the micro-kernel broadcasts
 * from mr row streams) used at once by the 36 products of
 * every tile panel of the group.  Tiles go in groups of 64: V of the group
 * (36*C*64 floats) made first, shared read-only, then the panel tasks.
 * Larger groups would transform U fewer times but the products of a task,
 * M (pp*36*mr*64 floats per thread, 258 KiB at pp = 2, mr = 14), would
 * outgrow L2: measured (bench_ops, 2026-11-26), groups of up to 16 MiB of
 * V took the VAE's convolutions from 5.1 s to 6.3-6.7 s and gave the UNet's
 * nothing.  V and M live in the backend's shared buffer (cpu->shared).
 * Each V element loaded serves pp*mr output channels (28 at pp = 2: 14
 * FLOP per byte).  pp = 4 (U slices and M 516 KiB each, the whole L2 with
 * V streaming through it) measured 4-5% slower than 2 or 3 over the UNet's
 * 14 shapes (bench cb, min of 5 interleaved rounds, 2026-11-27: 1342 ->
 * 1285 ms per step's worth at pp = 2), the VAE's the same within 2%; pp =
 * 1 with kc 64-256 within 2% of pp = 2 (an earlier measurement of pp = 1,
 * GEMMs at ~45% of peak with V streamed from L3, does not hold on this
 * code).  Up to 16 tiles use the 6x16
 * kernel (8x8 maps at N = 2: 8 tiles), more the ISA's main kernel.
 * With a prefetching kernel (gemm.c) the pp calls on one V panel fetch
 * the next panel's lines between them: V (36*C*64 floats: 2.9 MB at C =
 * 320) lives in L3.  bench cb (2 threads, min of 3 interleaved rounds,
 * 2026-11-27): a step's worth 1227 -> 1211 ms, C 1920 32x32 81.2 -> 67.2
 * ms, C 2560 16x16 48.4 -> 43.8, C 1280 32x32 86.4 -> 83.0, the rest
 * within +-2%. */
#define WINO_PANEL_NT 64 /* tiles per group (a multiple of every nr) */
#define WINO_PANEL_KC 64
#define WINO_PANEL_PP 2

typedef struct wino_panel {
    sdc_cpu *cpu;
    wino_in_fn in;
    wino_w_fn wt;
    wino_w16_fn wt16; /* F16 filters, 16 channels at a time (or NULL) */
    wino_out_fn out;
    sdc_gemm_kernel_fn kern;
    sdc_gemm_kernel_pf_fn kern_pf; /* kern with prefetches, or NULL */
    int npt, ts;      /* F(4x4): 36 points, 4x4 tiles; F(2x2): 16, 2x2 */
    int mr, nr, n_tp; /* the kernel's tile; tile panels of nr tiles */
    int pp;           /* output-channel panels per task, at most */
    int n_tasks;      /* tasks over the np panels (a multiple of the threads) */
    int np;
    const float *x, *acc;
    float *y;
    const sdc_weight *w, *b;
    int C, H, W, O, tw, T, NT;
    int t_base; /* this group's first tile; n_tp panels of it */
    float *V;   /* [n_tp][npt][C][nr] */
    float *M;   /* per thread: [pp][n_tp][npt][mr][nr], stride m_stride */
    size_t m_stride;
} wino_panel;

static void wino_panel_input_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const wino_panel *js = ctx;
    int tp = (int)(task / (js->nr / WB)), j = (int)(task % (js->nr / WB)) * WB;
    js->in(js->x, js->C, js->H, js->W, js->tw, js->T, js->NT, js->t_base + tp * js->nr + j,
           js->V + (int64_t)tp * js->npt * js->C * js->nr, (int64_t)js->C * js->nr, js->nr, j);
}

/* Output channels of panels task*pp .. task*pp+pp, all tiles of the group. */
static void wino_panel_task(void *ctx, int64_t task, int thread) {
    const wino_panel *js = ctx;
    const int mr = js->mr, nr = js->nr, C = js->C, n_tp = js->n_tp, npt = js->npt;
    /* panels pa .. pb, the np panels split as evenly as they go */
    const int pa = (int)(task * js->np / js->n_tasks), pb = (int)((task + 1) * js->np / js->n_tasks);
    const int o_first = pa * mr, pp = pb - pa; /* pp <= js->pp */
    if (pp <= 0) return;
    const int64_t msz = (int64_t)n_tp * npt * mr * nr;           /* M of one panel */
    float *M = js->M + thread * js->m_stride;                   /* [pp][n_tp][npt][mr][nr] */
    float *U = sdc_cpu_scratch(js->cpu, thread);                 /* [pp][npt][mr][kc] */
    memset(M, 0, (size_t)pp * msz * sizeof *M);
    const int kb = ceil_div(C, ceil_div(C, WINO_PANEL_KC));
    for (int k0 = 0; k0 < C; k0 += kb) {
        const int kc = imin(kb, C - k0);
        const int64_t xs = (int64_t)kc * mr, usz = npt * xs;
        const int n_rows = imin(pp * mr, js->O - o_first);
        for (int q = 0; q < pp; q++) {
            const int o0 = o_first + q * mr, rows = imin(mr, js->O - o0);
            for (int r = 0; r < rows; r++) {
                /* the filters two rows on (or the next slice's first rows)
                 * from memory while these transform: the hardware
                 * prefetchers do not follow the jump of C*9 between rows */
                int ahead = q * mr + r + 2, k1 = k0;
                if (ahead >= n_rows) ahead -= n_rows, k1 += kb;
                if (k1 < C && ahead < n_rows)
                    wino_prefetch_w(js->w, ((int64_t)(o_first + ahead) * C + k1) * 9,
                                    (int64_t)imin(kb, C - k1) * 9);
                for (int c = k0; c < k0 + kc; c += WB) {
                    float g[WB * 9];
                    int n = imin(WB, k0 + kc - c);
                    const int64_t off = ((int64_t)(o0 + r) * C + c) * 9;
                    float *u = U + q * usz + (int64_t)r * kc + (c - k0);
                    if (js->wt16 && n == WB) {
                        js->wt16((const uint16_t *)js->w->data + off, u, xs);
                        continue;
                    }
                    sdc_cpu_weight_row(js->cpu, g, js->w, off, (int64_t)n * 9);
                    js->wt(g, n, u, xs, 1);
                }
            }
        }
        for (int xi = 0; xi < npt; xi++)
            for (int tp = 0; tp < n_tp; tp++) {
                const float *v = js->V + (((int64_t)tp * npt + xi) * C + k0) * nr;
                /* the next V panel (tp + 1, or the next point's first),
                 * fetched in parts by this panel's pp calls */
                const int ntp = tp + 1 < n_tp ? tp + 1 : 0, nxi = tp + 1 < n_tp ? xi : xi + 1;
                const float *vn = nxi < npt ? js->V + (((int64_t)ntp * npt + nxi) * C + k0) * nr : NULL;
                const int vlines = kc * nr * (int)sizeof(float) / 64, part = ceil_div(vlines, pp);
                for (int q = 0; q < pp; q++) {
                    const int rows = imin(mr, js->O - (o_first + q * mr));
                    float *m = M + q * msz + ((int64_t)tp * npt + xi) * mr * nr;
                    if (!js->kern_pf) {
                        js->kern(kc, U + q * usz + xi * xs, kc, 1, v, nr, m, nr, rows, nr);
                        continue;
                    }
                    sdc_gemm_pf pf = {{NULL, 0, 0, 0}, {NULL, 0, 0, 0}};
                    if (vn && q * part < vlines)
                        pf.a = (sdc_gemm_pf_lines){(const char *)vn + (int64_t)q * part * 64, 0, 1,
                                                   imin(part, vlines - q * part)};
                    js->kern_pf(kc, U + q * usz + xi * xs, kc, 1, v, nr, m, nr, rows, nr, &pf);
                }
            }
    }
    const int64_t P = (int64_t)js->H * js->W, ys = (int64_t)js->O * P;
    for (int q = 0; q < pp; q++) {
        const int o0 = o_first + q * mr, rows = imin(mr, js->O - o0);
        for (int r = 0; r < rows; r++) {
            int oc = o0 + r;
            float bias = js->b ? sdc_wget(js->b, oc) : 0.0f;
            for (int tp = 0; tp < n_tp; tp++)
                for (int j = 0, t = js->t_base + tp * nr; j < nr && t + j < js->NT; j += WB)
                    js->out(M + q * msz + (int64_t)tp * npt * mr * nr + (int64_t)r * nr + j,
                            (int64_t)mr * nr, js->y + oc * P, js->acc ? js->acc + oc * P : NULL,
                            bias, js->H, js->W, js->tw, js->T, js->NT, t + j, ys);
        }
    }
}

static int wino_panel_run(sdc_cpu *cpu, int f2, wino_in_fn in, wino_w_fn wt, wino_w16_fn wt16,
                          wino_out_fn out, float *y, const float *x, int N, int C, int H, int W,
                          const sdc_weight *w, const sdc_weight *b, int O, const float *acc) {
    const sdc_cpu_kernels *K = &cpu->k;
    wino_panel js = {.cpu = cpu, .in = in, .wt = wt, .out = out, .x = x, .acc = acc, .y = y,
                     .w = w, .b = b, .C = C, .H = H, .W = W, .O = O};
    if (w->dtype == SDC_DT_F16) js.wt16 = wt16;
    js.npt = f2 ? 16 : 36;
    js.ts = f2 ? 2 : 4;
    js.tw = ceil_div(W, js.ts);
    js.T = ceil_div(H, js.ts) * js.tw;
    js.NT = N * js.T;
    if (js.NT <= SDC_GEMM_NR && K->gemm16)
        js.kern = K->gemm16, js.mr = SDC_GEMM_MR, js.nr = SDC_GEMM_NR;
    else
        js.kern = K->gemm, js.kern_pf = K->gemm_pf, js.mr = K->mr, js.nr = K->nr;
    const int group = imin(WINO_PANEL_NT, js.NT); /* tiles per group */
    const int max_tp = ceil_div(group, js.nr);
    /* pp panels per task, fewer while there would be under 3 tasks per
     * thread */
    const int np = ceil_div(O, js.mr);
    js.pp = WINO_PANEL_PP;
    while (js.pp > 1 && ceil_div(np, js.pp) < 3 * cpu->n_threads) js.pp--;
    /* tasks: a multiple of the threads (n equal tasks end after ceil(n/T)
     * of them), each of at most pp panels */
    js.np = np;
    js.n_tasks = ceil_div(ceil_div(np, js.pp), cpu->n_threads) * cpu->n_threads;
    if (js.n_tasks > np) js.n_tasks = np;
    if ((size_t)js.pp * js.npt * js.mr * WINO_PANEL_KC > SDC_CPU_SCRATCH_FLOATS)
        return -1;
    const size_t nV = (size_t)max_tp * js.npt * C * js.nr;
    js.m_stride = (size_t)js.pp * max_tp * js.npt * js.mr * js.nr;
    js.V = sdc_cpu_shared_buffer(cpu, nV + (size_t)cpu->n_threads * js.m_stride);
    if (!js.V) return -1;
    js.M = js.V + nV;
    for (js.t_base = 0; js.t_base < js.NT; js.t_base += group) {
        js.n_tp = ceil_div(imin(group, js.NT - js.t_base), js.nr);
        sdc_parallel_for(cpu->pool, (int64_t)js.n_tp * (js.nr / WB), wino_panel_input_task, &js);
        sdc_parallel_for(cpu->pool, js.n_tasks, wino_panel_task, &js);
    }
    return 0;
}

int sdc_cpu_conv2d_winograd(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                            const sdc_weight *w, const sdc_weight *b, int O, const float *acc) {
    sdc_cpu *cpu = sdc_cpu_of(be);
    const sdc_cpu_kernels *K = &cpu->k;
    const int mr = K->mr, nr = K->nr;
    if (nr % WB != 0 || (int64_t)C * 9 > (int64_t)SDC_CPU_SCRATCH_FLOATS)
        return -1;
    wino_job jb = {.cpu = cpu,
                   .in = sdc_wino_input_generic,
                   .wt = sdc_wino_weight_generic,
                   .out = sdc_wino_output_generic,
                   .w = w,
                   .b = b,
                   .C = C,
                   .H = H,
                   .W = W,
                   .O = O};
    wino_w16_fn wt16 = NULL;
#ifdef SDC_HAVE_X86
    if (strcmp(K->isa, "avx512") == 0) {
        jb.in = sdc_wino_input_avx512, jb.wt = sdc_wino_weight_avx512;
        wt16 = sdc_wino_weight16_f16_avx512;
        jb.out = sdc_wino_output_avx512;
    } else if (strcmp(K->isa, "avx2") == 0) {
        jb.in = sdc_wino_input_avx2, jb.wt = sdc_wino_weight_avx2, jb.out = sdc_wino_output_avx2;
        wt16 = sdc_wino_weight16_f16_avx2;
    }
#endif
    jb.tw = ceil_div(W, 4);
    jb.T = ceil_div(H, 4) * jb.tw;
    jb.NT = N * jb.T;
    /* F(2x2, 3x3) where F(4x4) would fill under half a register panel with
     * the tiles of two images (the UNet's 8x8 maps at N = 2: 8 tiles of 4x4,
     * 32 of 2x2; see the table above).  Decided per image, not from N*T:
     * the two round differently, and an image must come out the same
     * whatever the batch (the CFG-shared prefix runs one image where the
     * plain pass runs two).  SDC_WINOGRAD=2 forces it, =1 forces F(4x4). */
    const char *env = getenv("SDC_WINOGRAD");
    const int f2 = env && env[0] == '2' ? 1 : env && env[0] == '1' ? 0 : jb.T <= nr / 4;
    if (f2 && mr <= 16) {
        wino_in_fn in2 = sdc_wino2_input_generic;
        wino_w_fn wt2 = sdc_wino2_weight_generic;
        wino_w16_fn wt2_16 = NULL;
        wino_out_fn out2 = sdc_wino2_output_generic;
#ifdef SDC_HAVE_X86
        if (strcmp(K->isa, "avx512") == 0)
            in2 = sdc_wino2_input_avx512, wt2 = sdc_wino2_weight_avx512,
            wt2_16 = sdc_wino2_weight16_f16_avx512, out2 = sdc_wino2_output_avx512;
        else if (strcmp(K->isa, "avx2") == 0)
            in2 = sdc_wino2_input_avx2, wt2 = sdc_wino2_weight_avx2,
            wt2_16 = sdc_wino2_weight16_f16_avx2, out2 = sdc_wino2_output_avx2;
#endif
        if (wino_panel_run(cpu, 1, in2, wt2, wt2_16, out2, y, x, N, C, H, W, w, b, O, acc) == 0)
            return 0;
    }
    /* the panel-task path (measured, see the table above) for small maps,
     * and for larger ones when C and O are large enough for its slices and
     * its O-panel tasks.  By the tiles of one image, as F(2x2) above: the
     * paths sum C in slices of their own */
    const int small = jb.T <= WINO_PANEL_NT || (C >= 256 && O >= 64 && jb.T <= 8192);
    if (small && mr <= 16 &&
        wino_panel_run(cpu, 0, jb.in, jb.wt, wt16, jb.out, y, x, N, C, H, W, w, b, O, acc) == 0)
        return 0;
    jb.x = x, jb.y = y, jb.acc = acc;
    /* Ob: a multiple of mr with 36*Ob*C <= WINO_U_CAP, at most WINO_OB_MAX */
    size_t cap = WINO_U_CAP / ((size_t)36 * C);
    int ob_max = (int)(cap < WINO_OB_MAX ? cap : WINO_OB_MAX) / mr * mr;
    if (ob_max < mr)
        ob_max = mr;
    int nblk = ceil_div(O, ob_max);
    int ob = ceil_div(ceil_div(O, nblk), mr) * mr; /* balanced blocks */
    int np_max = ob / mr;
    int T_ = cpu->n_threads;
    const size_t nU = (size_t)36 * np_max * C * mr, nV = (size_t)T_ * 36 * C * nr,
                 nM = (size_t)T_ * 36 * np_max * mr * nr;
    /* U, V and M in the backend's shared buffer (nothing else uses it
     * during this path), each on a 64-byte boundary */
    const size_t rU = (nU + 15) / 16 * 16, rV = (nV + 15) / 16 * 16;
    float *buf = sdc_cpu_shared_buffer(cpu, rU + rV + nM);
    if (!buf) return -1;
    jb.U = buf, jb.V = buf + rU, jb.M = buf + rU + rV;
    const int n_tp = ceil_div(jb.NT, nr); /* tile panels */
    for (int o0 = 0; o0 < O; o0 += ob) {
        jb.o0 = o0;
        jb.ob = imin(ob, O - o0);
        jb.np = ceil_div(jb.ob, mr);
        /* few tile panels (small maps): split the O panels too, for at
         * least 2 tasks per thread */
        jb.n_og = n_tp >= 2 * T_ ? 1 : imin(jb.np, ceil_div(2 * T_, n_tp));
        jb.pg = ceil_div(jb.np, jb.n_og);
        jb.n_og = ceil_div(jb.np, jb.pg);
        sdc_parallel_for(cpu->pool, jb.ob, wino_weight_task, &jb);
        wino_zero_pad_rows(&jb);
        sdc_parallel_for(cpu->pool, (int64_t)n_tp * jb.n_og, wino_tile_task, &jb);
    }
    return 0;
}
