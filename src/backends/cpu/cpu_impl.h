/* The CPU backend's insides: state, scratch, the reference ops and the
 * per-ISA kernels behind one dispatch point (cpu.c).
 *
 * Files: ops_ref.c   plain C reference of every op (single-threaded)
 *        gemm.c      the packed GEMM driver (blocking, packing, threads)
 *        cpu.c       creation, dispatch, threaded portable ops
 *        *_avx2.c    AVX2+FMA+F16C kernels (gemm_avx2.c, ops_avx2.c,
 *                    attention_avx2.c)
 *        *_avx512.c  AVX-512 kernels (gemm_avx512.c, attention_avx512.c)
 *        *_neon.c    AArch64 NEON kernels (gemm_neon.c, ops_neon.c,
 *                    attention_neon.c)
 *        amx*.c, gemm_amx.c  the bf16 mode on AMX tiles, real or emulated
 *                    (amx_tile.h)
 * A new ISA adds its own files and an entry in cpu.c. */
#ifndef SDC_CPU_IMPL_H
#define SDC_CPU_IMPL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "backends/cpu/threadpool.h"

/* ---- GEMM blocking (gemm.c) ------------------------------------------
 * C[M, N] += A[M, K] · B[K, N] with A packed in panels of mr rows
 * ([kc][mr], k-major) and B in panels of nr columns ([kc][nr]).  The
 * register tile mr x nr and the block sizes kc, mc belong to the ISA's
 * micro-kernel (sdc_cpu_kernels); these bound them.  MR/NR name the 6x16
 * tile that every ISA also provides (gemm16: Winograd's narrow products). */
#define SDC_GEMM_MR 6
#define SDC_GEMM_NR 16
#define SDC_GEMM_NR_MAX 64 /* widest register tile of any kernel */
#define SDC_GEMM_MC 224    /* rows of A packed at once, at most (mc <= MC) */
#define SDC_GEMM_KC 256    /* depth of one packed block, at most (kc <= KC) */
#define SDC_GEMM_NC 512    /* columns of B packed at once (multiple of every nr) */

/* ---- attention (attention_avx2.c, attention_avx512.c, attention_neon.c) */
#define SDC_ATT_DH_MAX 512 /* larger head dims use the reference */

/* Per-thread scratch, in floats: the larger of
 *   GEMM:      MC*KC (packed A) + KC*NC (packed B)             = 188416
 *   Winograd's panel tasks (winograd.c): U slices, 4 panels x 36 points
 *              x mr <= 16 x 64 channels                          = 147456
 * i.e. 736 KiB per thread, allocated once at creation.  The attention
 * kernels fit their query blocks into it (each asserts that one
 * micro-tile of DH_MAX fits). */
#define SDC_CPU_SCRATCH_GEMM ((size_t)SDC_GEMM_MC * SDC_GEMM_KC + (size_t)SDC_GEMM_KC * SDC_GEMM_NC)
#define SDC_CPU_SCRATCH_WINO ((size_t)4 * 36 * 16 * 64)
#define SDC_CPU_SCRATCH_MAX2(a, b) ((a) > (b) ? (a) : (b))
#define SDC_CPU_SCRATCH_FLOATS SDC_CPU_SCRATCH_MAX2(SDC_CPU_SCRATCH_WINO, SDC_CPU_SCRATCH_GEMM)

/* The micro-kernel: c[mr, nr] (row stride ldc) += A[mr, kc] · B[kc, NR] with
 * A(i, k) = a[i*rs_a + k*cs_a] (rows >= mr are not read) and
 * B(k, j) = b[k*rs_b + j] (all NR columns are read; nr says how many are
 * stored).  Packed operands are a [kc][MR] panel (rs_a 1, cs_a MR) and a
 * [kc][NR] panel (rs_b NR); A read in place has cs_a 1, rs_a its row
 * stride. */
typedef void (*sdc_gemm_kernel_fn)(int kc, const float *a, int64_t rs_a, int64_t cs_a,
                                   const float *b, int64_t rs_b, float *c, int64_t ldc, int mr,
                                   int nr);
/* Cache lines a micro-kernel call fetches for the next call while it runs,
 * one of each kind per k step, spread among its FMAs: `rows` rows of
 * `lines` 64-byte lines from `p` (row stride `rs` bytes), column by column
 * (every row's first line, then every row's second, ...: the order the
 * next call reads A in).  a: the next A strip (read), c: the next C tile
 * (written).  rows 0 or p NULL: nothing. */
typedef struct sdc_gemm_pf_lines {
    const char *p;
    int64_t rs;
    int rows, lines;
} sdc_gemm_pf_lines;
typedef struct sdc_gemm_pf {
    sdc_gemm_pf_lines a, c;
} sdc_gemm_pf;
/* The micro-kernel with those prefetches (same operands as
 * sdc_gemm_kernel_fn). */
typedef void (*sdc_gemm_kernel_pf_fn)(int kc, const float *a, int64_t rs_a, int64_t cs_a,
                                      const float *b, int64_t rs_b, float *c, int64_t ldc,
                                      int mr, int nr, const sdc_gemm_pf *pf);
/* The bf16 micro-kernel: c[mr, nr] (row stride ldc) += A · B over kc2
 * pairs of k: A(i, pair k2) = a[i*rs_a + k2] (bf16 rows, bf16_row_*), b
 * the [kc2][NR] pair panel of B (bf16_pairs), products summed in f32. */
typedef void (*sdc_gemm_bf16_fn)(int kc2, const uint32_t *a, int64_t rs_a, const uint32_t *b,
                                 float *c, int64_t ldc, int mr, int nr);
/* dst[i] = (float)src[i], i < n, for 16-bit float formats. */
typedef void (*sdc_cvt16_fn)(float *dst, const uint16_t *src, int64_t n);

typedef struct sdc_cpu_kernels {
    const char *isa;         /* "ref", "generic", "avx2", "avx512" */
    sdc_gemm_kernel_fn gemm; /* the GEMM driver's micro-kernel, tile mr x nr */
    int mr, nr;              /* mr <= 16 (kbf: <= 32), nr <= NR_MAX, NC % nr == 0 */
    int kc, mc;              /* block depth (<= KC) and rows (<= MC, multiple of mr) */
    int inplace_a;           /* 1: f32 A may be read in place (cs_a 1) */
    sdc_gemm_kernel_pf_fn gemm_pf; /* gemm with prefetches for the next call (or NULL) */
    sdc_gemm_kernel_fn gemm16; /* a 6x16 kernel (MR x NR), for narrow products */
    sdc_cvt16_fn f16, bf16;
    /* The bf16 mode (NULL where the ISA has no bf16 dot products): the
     * micro-kernel over pair panels (gemm_avx512bf16.c) with the same tile
     * mr x nr, and the in-place conversion of a packed f32 panel [kc][w]
     * to its pair panel [ceil(kc/2)][w] (32-bit words, same start). */
    sdc_gemm_bf16_fn gemm_bf16;
    void (*bf16_pairs)(float *panel, int kc, int w);
    /* dst[0 .. ceil(kc/2)) = the kc values of src as bf16 (the last word
     * zero-padded when kc is odd) */
    void (*bf16_row_f32)(uint32_t *dst, const float *src, int kc);
    void (*bf16_row_f16)(uint32_t *dst, const uint16_t *src, int kc);
    /* the [ceil(kc/2)][nr] pair panel of B = w^T: rows r0 .. r0+rows of
     * the weight w (row length ld; columns k0 .. k0+kc, kc <= KC), rows
     * past `rows` zero; nr a multiple of 16 */
    void (*bf16_panel_rows)(uint32_t *dst, int nr, const sdc_weight *w, int64_t ld, int r0,
                            int rows, int k0, int kc);
    /* Around a thread's bf16 kernel calls in one GEMM task (NULL: none):
     * the AMX kernels' tile configuration and release (per thread state) */
    void (*bf16_begin)(void), (*bf16_end)(void);
    int kalign; /* K blocks a multiple of this (0: any; AMX: 32, 16 pairs a tile) */
    int bf16_shared; /* 1: the bf16 mode packs an operand several tiles share once
                      * per call (gemm.c's shared packs; AMX) */
    /* y[i] = h[i] * gelu(gate[i]), i < n, on the calling thread (the
     * backend's geglu runs it over the pool; NULL: the reference) */
    void (*geglu_row)(float *y, const float *h, const float *gate, int n);
    /* sdc_gemm_pack_rows's work (NULL: its portable form) */
    void (*pack_rows)(float *dst, int wp, const float *src_f32, const sdc_weight *w, int64_t ld,
                      int r0, int rows, int k0, int kc);
} sdc_cpu_kernels;

/* The ISAs in order; a backend runs one of them (SDC_CPU_ISA env var). */
typedef enum {
    SDC_ISA_REF, SDC_ISA_GENERIC, SDC_ISA_AVX2, SDC_ISA_AVX512, SDC_ISA_NEON
} sdc_cpu_isa;
/* Whether this build and this CPU can run isa. */
int sdc_cpu_isa_supported(sdc_cpu_isa isa);
/* Its name as SDC_CPU_ISA takes it ("ref", "generic", ...), or NULL. */
const char *sdc_cpu_isa_name(sdc_cpu_isa isa);
/* A CPU backend on exactly this ISA (which must be supported), for tests and
 * benchmarks; otherwise as sdc_backend_cpu_create. */
sdc_backend *sdc_backend_cpu_create_isa(int n_threads, sdc_cpu_isa isa);

typedef struct sdc_cpu {
    sdc_threadpool *pool; /* owned */
    int n_threads;
    sdc_cpu_kernels k;
    int bf16; /* the bf16 mode: GEMM operands rounded to bf16 (kbf.gemm_bf16) */
    /* The bf16 mode's kernel set (sdc_backend_cpu_set_bf16): k itself on
     * AVX512_BF16, or k with the AMX kernel, its tile and packers */
    sdc_cpu_kernels kbf;
    float *scratch; /* [n_threads][SDC_CPU_SCRATCH_FLOATS], owned, 64-byte aligned */
    /* One buffer for whichever op needs a large one within a call:
     * Winograd's panel path (winograd.c: V of a tile group and the
     * threads' products), its layer path (U, V, M) and the GEMM's operands
     * packed once for all its tiles (gemm.c).  Mapped, grown to the
     * largest need in the first pass, kept between calls (mapping it per
     * call cost ~15% of the convolution in page faults); released by
     * sdc_cpu_shared_release */
    float *shared;
    size_t shared_floats;
    /* The bf16 mode's per-image transpose (linear_map to tokens), which
     * holds its data across a GEMM that uses `shared`; grown alike */
    float *aux;
    size_t aux_floats;
    float *bias; /* [SDC_CPU_BIAS_FLOATS]: a 16-bit bias widened once per call */
    /* The ISA's f32 attention (be->attention outside the bf16 mode on AMX) */
    void (*attention_f32)(sdc_backend *be, float *out, const float *q, int q_stride,
                          const float *k, const float *v, int kv_stride, int Sq, int Sk,
                          int heads, int dh, float scale, int causal);
} sdc_cpu;

#define SDC_CPU_BIAS_FLOATS 16384

static inline sdc_cpu *sdc_cpu_of(sdc_backend *be) { return (sdc_cpu *)be->impl; }
/* The kernel set the GEMM driver (gemm.c) runs in the current mode. */
static inline const sdc_cpu_kernels *sdc_cpu_gemm_k(const sdc_cpu *cpu) {
    return cpu->bf16 ? &cpu->kbf : &cpu->k;
}
static inline float *sdc_cpu_scratch(sdc_cpu *cpu, int thread) {
    return cpu->scratch + (size_t)thread * SDC_CPU_SCRATCH_FLOATS;
}

/* Element i of weight w as float (F32, F16, BF16; 0 for other dtypes). */
static inline float sdc_wget(const sdc_weight *w, int64_t i) { return sdc_weight_get(w, i); }
/* dst[0..n) = w[off .. off+n) as float, through the ISA's converters. */
void sdc_cpu_weight_row(const sdc_cpu *cpu, float *dst, const sdc_weight *w, int64_t off,
                        int64_t n);

/* ---- the packed GEMM driver (gemm.c) ---------------------------------- */
typedef struct sdc_gemm sdc_gemm;
struct sdc_gemm {
    sdc_cpu *cpu;
    int M, N, K;
    float *C; /* [M, ldc] */
    int64_t ldc;
    /* A in place (f32, row stride lda, k contiguous); or NULL,
     * and then pack_a: dst = ceil(mc/MR) panels [kc][MR] of rows
     * m0..m0+mc of A, columns k0..k0+kc; rows past mc are zero. */
    const float *a;
    int64_t lda;
    void (*pack_a)(const sdc_gemm *g, float *dst, int m0, int mc, int k0, int kc);
    /* dst = ceil(nc/NR) panels [kc][NR] of columns n0..n0+nc of B, rows
     * k0..k0+kc; columns past nc are zero. */
    void (*pack_b)(const sdc_gemm *g, float *dst, int n0, int nc, int k0, int kc);
    /* Writes the initial value of the C tile (bias, residual, or 0). */
    void (*init_c)(const sdc_gemm *g, int m0, int mc, int n0, int nc);
    const void *ctx; /* for the callbacks */
    /* A as a weight [M, K] (row-major), when a is NULL: the bf16 mode
     * converts its rows directly (NULL: A is g->a) */
    const sdc_weight *aw;
    /* B as the transpose of a weight [N, K] (row-major), or NULL: the bf16
     * mode packs its pair panels directly, else through pack_b */
    const sdc_weight *bw;
    /* Several images side by side in N (0: one): columns n of image
     * n / img_cols (img_cols a multiple of the kernel's nr, so that no
     * register strip spans two images) are at C + (n / img_cols) *
     * img_stride + n % img_cols in row m's [ldc] (sdc_gemm_off). */
    int64_t img_cols, img_stride;
};
/* Offset of C[m, n] from g->C (and of the same element of a buffer laid
 * out as C: a convolution's residual). */
static inline int64_t sdc_gemm_off(const sdc_gemm *g, int m, int n) {
    if (g->img_cols > 0)
        return (int64_t)m * g->ldc + (n / g->img_cols) * g->img_stride + n % g->img_cols;
    return (int64_t)m * g->ldc + n;
}
/* Runs C = init + A·B over the pool. */
void sdc_gemm_run(const sdc_gemm *g);

/* Packs rows r0..r0+rows of a row-major matrix (row length ld; columns
 * k0..k0+kc) into ceil(rows/wp) panels [kc][wp], the last one zero-padded.
 * The source is src_f32 if not NULL, else the weight w (widened). */
void sdc_gemm_pack_rows(const sdc_cpu *cpu, float *dst, int wp, const float *src_f32,
                        const sdc_weight *w, int64_t ld, int r0, int rows, int k0, int kc);

/* The portable C micro-kernel and converters. */
void sdc_gemm_kernel_generic(int kc, const float *a, int64_t rs_a, int64_t cs_a, const float *b,
                             int64_t rs_b, float *c, int64_t ldc, int mr, int nr);
void sdc_cvt_f16_generic(float *dst, const uint16_t *src, int64_t n);
void sdc_cvt_bf16_generic(float *dst, const uint16_t *src, int64_t n);

/* ---- threaded ops built on the GEMM (gemm.c) --------------------------- */
void sdc_cpu_linear(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                    const sdc_weight *b, const float *acc, int M, int N, int K);
void sdc_cpu_linear_map(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                        const sdc_weight *b, const float *acc, int N, int HW, int C, int O,
                        int to_tokens);
void sdc_cpu_conv2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                    const sdc_weight *w, const sdc_weight *b, int O, int kh, int kw, int stride,
                    int pad, const float *acc);

/* 3x3, stride 1, pad 1 by Winograd F(4x4, 3x3) (winograd.c); returns -1
 * (nothing written) if it cannot run (scratch), 0 when done. */
int sdc_cpu_conv2d_winograd(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                            const sdc_weight *w, const sdc_weight *b, int O, const float *acc);
/* cpu->shared with at least `floats` floats (NULL if it cannot be
 * mapped); its contents are the caller's until the op returns. */
float *sdc_cpu_shared_buffer(sdc_cpu *cpu, size_t floats);
/* Unmaps cpu->shared and cpu->aux. */
void sdc_cpu_shared_release(sdc_cpu *cpu);
/* cpu->aux with at least `floats` floats, as sdc_cpu_shared_buffer. */
float *sdc_cpu_aux_buffer(sdc_cpu *cpu, size_t floats);
/* Whether sdc_cpu_conv2d sends this 3x3 stride-1 conv to Winograd. */
int sdc_cpu_use_winograd(int C, int H, int W, int O);

#include "backends/ref.h"

/* ---- AVX2 (gemm_avx2.c, ops_avx2.c, attention_avx2.c); call only when
 * the CPU has avx2 + fma + f16c with OS support -------------------------- */
void sdc_gemm_kernel_avx2(int kc, const float *a, int64_t rs_a, int64_t cs_a, const float *b,
                          int64_t rs_b, float *c, int64_t ldc, int mr, int nr);
void sdc_cvt_f16_avx2(float *dst, const uint16_t *src, int64_t n);
void sdc_cvt_bf16_avx2(float *dst, const uint16_t *src, int64_t n);
void sdc_pack_rows_avx2(float *dst, int wp, const float *src_f32, const sdc_weight *w, int64_t ld,
                        int r0, int rows, int k0, int kc);
void sdc_avx2_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                        const float *k, const float *v, int kv_stride, int Sq, int Sk, int heads,
                        int dh, float scale, int causal); /* attention_avx2.c */
void sdc_avx2_group_norm(sdc_backend *be, float *y, const float *x, const float *add, int N, int C,
                         int HW, int G, const sdc_weight *gamma, const sdc_weight *beta,
                         float eps, int silu);
void sdc_avx2_layer_norm(sdc_backend *be, float *y, const float *x, int rows, int D,
                         const sdc_weight *gamma, const sdc_weight *beta, float eps);
void sdc_avx2_silu(sdc_backend *be, float *y, const float *x, int64_t n);
void sdc_avx2_gelu(sdc_backend *be, float *y, const float *x, int64_t n);
void sdc_avx2_quick_gelu(sdc_backend *be, float *y, const float *x, int64_t n);
void sdc_avx2_geglu_row(float *y, const float *h, const float *gate, int n);
void sdc_avx512_geglu_row(float *y, const float *h, const float *gate, int n);
void sdc_avx2_transpose(sdc_backend *be, float *y, const float *x, int N, int H, int W);

/* ---- AVX-512 (gemm_avx512.c, attention_avx512.c); call only when the CPU has
 * avx512f/bw/vl/dq + fma + f16c with OS support (opmask and ZMM state) ---- */
#define SDC_AVX512_MR 14
#define SDC_AVX512_NR 32
void sdc_gemm_kernel_avx512(int kc, const float *a, int64_t rs_a, int64_t cs_a, const float *b,
                            int64_t rs_b, float *c, int64_t ldc, int mr, int nr);
void sdc_gemm_kernel_pf_avx512(int kc, const float *a, int64_t rs_a, int64_t cs_a,
                               const float *b, int64_t rs_b, float *c, int64_t ldc, int mr,
                               int nr, const sdc_gemm_pf *pf);
void sdc_gemm_kernel16_avx512(int kc, const float *a, int64_t rs_a, int64_t cs_a,
                              const float *b, int64_t rs_b, float *c, int64_t ldc, int mr,
                              int nr);
void sdc_cvt_f16_avx512(float *dst, const uint16_t *src, int64_t n);
void sdc_cvt_bf16_avx512(float *dst, const uint16_t *src, int64_t n);
void sdc_pack_rows_avx512(float *dst, int wp, const float *src_f32, const sdc_weight *w,
                          int64_t ld, int r0, int rows, int k0, int kc);
/* AVX512_BF16 (gemm_avx512bf16.c): also needs avx512_bf16 */
void sdc_gemm_kernel_bf16_avx512(int kc2, const uint32_t *a, int64_t rs_a, const uint32_t *b,
                                 float *c, int64_t ldc, int mr, int nr);
void sdc_bf16_pairs_avx512(float *panel, int kc, int w);
void sdc_bf16_row_f32_avx512(uint32_t *dst, const float *src, int kc);
void sdc_bf16_row_f16_avx512(uint32_t *dst, const uint16_t *src, int kc);
void sdc_bf16_panel_rows_avx512(uint32_t *dst, int nr, const sdc_weight *w, int64_t ld, int r0,
                                int rows, int k0, int kc);
void sdc_avx512_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                          const float *k, const float *v, int kv_stride, int Sq, int Sk, int heads,
                          int dh, float scale, int causal); /* attention_avx512.c */

/* ---- AArch64 NEON (gemm_neon.c, ops_neon.c, attention_neon.c); NEON is
 * baseline on AArch64 ---------------------------------------------------- */
#if defined(__aarch64__)
void sdc_gemm_kernel_neon(int kc, const float *a, int64_t rs_a, int64_t cs_a, const float *b,
                          int64_t rs_b, float *c, int64_t ldc, int mr, int nr);
void sdc_cvt_f16_neon(float *dst, const uint16_t *src, int64_t n);
void sdc_cvt_bf16_neon(float *dst, const uint16_t *src, int64_t n);
void sdc_pack_rows_neon(float *dst, int wp, const float *src_f32, const sdc_weight *w, int64_t ld,
                        int r0, int rows, int k0, int kc);
void sdc_neon_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                        const float *k, const float *v, int kv_stride, int Sq, int Sk, int heads,
                        int dh, float scale, int causal); /* attention_neon.c */
void sdc_neon_group_norm(sdc_backend *be, float *y, const float *x, const float *add, int N, int C,
                         int HW, int G, const sdc_weight *gamma, const sdc_weight *beta,
                         float eps, int silu);
void sdc_neon_layer_norm(sdc_backend *be, float *y, const float *x, int rows, int D,
                         const sdc_weight *gamma, const sdc_weight *beta, float eps);
void sdc_neon_silu(sdc_backend *be, float *y, const float *x, int64_t n);
void sdc_neon_gelu(sdc_backend *be, float *y, const float *x, int64_t n);
void sdc_neon_quick_gelu(sdc_backend *be, float *y, const float *x, int64_t n);
void sdc_neon_geglu_row(float *y, const float *h, const float *gate, int n);
void sdc_neon_transpose(sdc_backend *be, float *y, const float *x, int N, int H, int W);
#endif

#endif
