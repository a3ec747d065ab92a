/* 3x3 stride-1 pad-1 convolution by Winograd F(4x4, 3x3) (transforms in
 * winograd_tf.h).
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
 * mapping fails the caller falls back to the im2col GEMM.
 *
 * When (sdc_cpu_use_winograd, gemm.c): ms, F16 filters, 2 threads, Zen 4,
 * avx512 (N = 2 for the UNet's shapes), im2col GEMM vs Winograd:
 *   C     HxW      O     N  gemm     wino    speed-up  rel L2 vs direct
 *   128   512x512  128   1   891      389    2.29      2.3e-6
 *   256   256x256  256   1   862      338    2.55      3.2e-6
 *   512   128x128  512   1   862      358    2.41      3.2e-6
 *   512    64x64   512   2   432      158    2.74      3.2e-6
 *   256   512x512  256   1  2432     1191    2.04      3.2e-6
 *   128   512x512    3   1   169       86    1.97      2.3e-6
 *   320    64x64   320   2   111       39    2.86      2.6e-6
 *   960    64x64   320   2   499      134    3.71      3.2e-6
 *   640    32x32   640   2   117       57    2.06      3.0e-6
 *   1920   32x32   640   2   459      492    0.93      3.2e-6
 *   640    16x16   640   2    67       48    1.41      3.0e-6
 *   1280   16x16  1280   2   119      240    0.50      3.4e-6
 *   2560   16x16  1280   2   437      716    0.61      3.4e-6
 *   1280    8x8   1280   2    37      275    0.14      3.5e-6
 * (few tiles per thread and small O blocks at large C lose), hence:
 * Winograd iff C >= 8 and (H*W >= 4096 or (H*W >= 256 and C <= 640)).
 *
 * Input transform is repeated per Ob block (cheap: ~130 flops per tile and
 * channel against 72*Ob for the products). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backends/cpu/cpu_impl.h"

#define WINO_U_CAP ((size_t)4 << 20) /* floats */
#define WINO_OB_MAX 256

typedef void (*wino_in_fn)(const float *x, int C, int H, int W, int tw, int T, int t0, float *v,
                           int nr, int jofs);
typedef void (*wino_w_fn)(const float *g, int n, float *u, int64_t xs, int mr);
typedef void (*wino_out_fn)(const float *m, int64_t ms, float *y, const float *acc, float bias,
                            int Ho, int Wo, int tw, int T, int t0);

#define WINO_FN(name) name##_generic
#include "backends/cpu/winograd_tf.h"
#undef WINO_FN
#define WB 16 /* lanes of one transform call (winograd_tf.h) */

#ifdef SDC_HAVE_X86
void sdc_wino_input_avx2(const float *, int, int, int, int, int, int, float *, int, int);
void sdc_wino_weight_avx2(const float *, int, float *, int64_t, int);
void sdc_wino_output_avx2(const float *, int64_t, float *, const float *, float, int, int, int, int,
                          int);
void sdc_wino_input_avx512(const float *, int, int, int, int, int, int, float *, int, int);
void sdc_wino_weight_avx512(const float *, int, float *, int64_t, int);
void sdc_wino_output_avx512(const float *, int64_t, float *, const float *, float, int, int, int,
                            int, int);
#endif

/* Buffers straight from the OS and back after the call: malloc would keep
 * them in its heap (glibc raises its mmap threshold after the first free),
 * and peak RSS rose by ~100 MiB over a 512x512 image that way. */
static float *wino_alloc(size_t floats) {
    void *p = mmap(NULL, floats * sizeof(float), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void wino_free(float *p, size_t floats) {
    if (p)
        munmap(p, floats * sizeof(float));
}

static int imin(int a, int b) { return a < b ? a : b; }
static int ceil_div(int a, int b) { return (a + b - 1) / b; }

typedef struct wino_job {
    sdc_cpu *cpu;
    wino_in_fn in;
    wino_w_fn wt;
    wino_out_fn out;
    const float *x, *acc; /* this image: [C, H, W], [O, H*W] or NULL */
    float *y;             /* this image: [O, H, W] */
    const sdc_weight *w, *b;
    int C, H, W, O, tw, T;
    int o0, ob, np; /* the O block: channels o0..o0+ob in np panels of mr */
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

/* nr tiles from tile task*nr: transform, 36 GEMMs, inverse transform. */
static void wino_tile_task(void *ctx, int64_t task, int thread) {
    const wino_job *jb = ctx;
    const sdc_cpu_kernels *K = &jb->cpu->k;
    const int mr = K->mr, nr = K->nr, C = jb->C, np = jb->np, rows = np * mr;
    int t0 = (int)task * nr;
    float *V = jb->V + (size_t)thread * 36 * C * nr;
    float *M = jb->M + (size_t)thread * 36 * rows * nr;
    for (int j = 0; j < nr; j += WB)
        jb->in(jb->x, C, jb->H, jb->W, jb->tw, jb->T, t0 + j, V, nr, j);
    memset(M, 0, (size_t)36 * rows * nr * sizeof *M);
    const int kb = ceil_div(C, ceil_div(C, K->kc));
    for (int xi = 0; xi < 36; xi++) {
        const float *u = jb->U + (int64_t)xi * np * C * mr;
        const float *v = V + (int64_t)xi * C * nr;
        float *m = M + (int64_t)xi * rows * nr;
        for (int k0 = 0; k0 < C; k0 += kb) {
            int kc = imin(kb, C - k0);
            for (int p = 0; p < np; p++)
                K->gemm(kc, u + ((int64_t)p * C + k0) * mr, 1, mr, v + (int64_t)k0 * nr, nr,
                        m + (int64_t)p * mr * nr, nr, imin(mr, jb->ob - p * mr), nr);
        }
    }
    const int64_t P = (int64_t)jb->H * jb->W;
    for (int o = 0; o < jb->ob; o++) {
        int oc = jb->o0 + o;
        float bias = jb->b ? sdc_wget(jb->b, oc) : 0.0f;
        for (int j = 0; j < nr && t0 + j < jb->T; j += WB)
            jb->out(M + (int64_t)o * nr + j, (int64_t)rows * nr, jb->y + oc * P,
                    jb->acc ? jb->acc + oc * P : NULL, bias, jb->H, jb->W, jb->tw, jb->T, t0 + j);
    }
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
#ifdef SDC_HAVE_X86
    if (strcmp(K->isa, "avx512") == 0) {
        jb.in = sdc_wino_input_avx512, jb.wt = sdc_wino_weight_avx512;
        jb.out = sdc_wino_output_avx512;
    } else if (strcmp(K->isa, "avx2") == 0) {
        jb.in = sdc_wino_input_avx2, jb.wt = sdc_wino_weight_avx2, jb.out = sdc_wino_output_avx2;
    }
#endif
    jb.tw = ceil_div(W, 4);
    jb.T = ceil_div(H, 4) * jb.tw;
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
    jb.U = wino_alloc(nU);
    jb.V = wino_alloc(nV);
    jb.M = wino_alloc(nM);
    if (!jb.U || !jb.V || !jb.M) {
        wino_free(jb.U, nU), wino_free(jb.V, nV), wino_free(jb.M, nM);
        return -1;
    }
    const int64_t P = (int64_t)H * W;
    for (int o0 = 0; o0 < O; o0 += ob) {
        jb.o0 = o0;
        jb.ob = imin(ob, O - o0);
        jb.np = ceil_div(jb.ob, mr);
        sdc_parallel_for(cpu->pool, jb.ob, wino_weight_task, &jb);
        wino_zero_pad_rows(&jb);
        for (int n = 0; n < N; n++) {
            jb.x = x + (int64_t)n * C * P;
            jb.y = y + (int64_t)n * O * P;
            jb.acc = acc ? acc + (int64_t)n * O * P : NULL;
            sdc_parallel_for(cpu->pool, ceil_div(jb.T, nr), wino_tile_task, &jb);
        }
    }
    wino_free(jb.U, nU), wino_free(jb.V, nV), wino_free(jb.M, nM);
    return 0;
}
