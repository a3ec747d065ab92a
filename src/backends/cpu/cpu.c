/* The CPU backend: creation, run-time dispatch, and the threaded portable
 * ops (memory movement and simple elementwise math, split over the pool).
 *
 * Dispatch (once, at creation), the best the CPU and OS support:
 *   avx512f/bw/vl/dq (+ opmask and ZMM state saved by the OS), avx2, fma,
 *   f16c                          -> "avx512": AVX-512 GEMM and attention
 *                                    (gemm_avx512.c, attention_avx512.c),
 *                                    the other ops as "avx2" (ops_avx2.c)
 *   avx2 + fma + f16c, OS-enabled -> "avx2": gemm_avx2.c, ops_avx2.c,
 *                                    attention_avx2.c
 *   aarch64 (NEON is baseline)    -> "neon": gemm_neon.c, ops_neon.c,
 *                                    attention_neon.c
 *   otherwise                     -> "generic": portable GEMM kernel; the
 *                                    other math ops are the references
 *   force_ref or SDC_FORCE_REF=1  -> "ref": every op the reference (ops_ref.c)
 * The environment variable SDC_CPU_ISA=ref|generic|avx2|avx512|neon forces a
 * path; a name this CPU or build cannot run is ignored (the best is used).
 * The bf16 mode (sdc_backend_cpu_set_bf16) has its own GEMM kernel set:
 * AMX tiles (amx_tile.h; SDC_AMX=0/emulate) or AVX512_BF16.
 * Threads: linear/conv2d (tiles of C), attention (heads x query blocks),
 * norms (groups/rows) and elementwise ops (chunks) run on all threads.
 * Scratch: SDC_CPU_SCRATCH_FLOATS per thread (704 KiB), allocated here;
 * ops allocate nothing.  Threads: at most MAX_THREADS.  One backend serves
 * one calling thread at a time (its pool runs one op at a time). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backends/cpu/amx_tile.h"
#include "backends/cpu/cpu_features.h"
#include "backends/cpu/cpu_impl.h"
#include "core/error.h"

#define CHUNK ((int64_t)1 << 15) /* elements per task of an elementwise op */
#define MAX_THREADS 256

typedef struct cpu_backend {
    sdc_backend be;
    sdc_cpu cpu;
    char name[256];
} cpu_backend;

/* ---- chunked elementwise ops ------------------------------------------- */

typedef struct ew_ctx {
    sdc_backend *be;
    int kind;
    float *y;
    const float *a, *b;
    float s, t;
    int64_t n;
} ew_ctx;

enum { EW_ADD, EW_LERP, EW_AXPBY, EW_COPY, EW_SILU, EW_GELU, EW_QGELU, EW_RELU };

static void ew_task(void *p, int64_t task, int thread) {
    (void)thread;
    const ew_ctx *e = p;
    int64_t i0 = task * CHUNK, n = e->n - i0 < CHUNK ? e->n - i0 : CHUNK;
    float *y = e->y + i0;
    const float *a = e->a + i0, *b = e->b ? e->b + i0 : NULL;
    switch (e->kind) {
    case EW_ADD: sdc_ref_add(e->be, y, a, b, n); break;
    case EW_LERP: sdc_ref_lerp(e->be, y, a, b, e->s, n); break;
    case EW_AXPBY: sdc_ref_axpby(e->be, y, e->s, a, e->t, b, n); break;
    case EW_COPY: memcpy(y, a, (size_t)n * sizeof *y); break;
    case EW_SILU: sdc_ref_silu(e->be, y, a, n); break;
    case EW_GELU: sdc_ref_gelu(e->be, y, a, n); break;
    case EW_QGELU: sdc_ref_quick_gelu(e->be, y, a, n); break;
    case EW_RELU: sdc_ref_relu(e->be, y, a, n); break;
    }
}

static void ew_run(sdc_backend *be, int kind, float *y, const float *a, const float *b, float s,
                   float t, int64_t n) {
    if (n <= 0) return;
    ew_ctx e = {be, kind, y, a, b, s, t, n};
    sdc_parallel_for(sdc_cpu_of(be)->pool, (n + CHUNK - 1) / CHUNK, ew_task, &e);
}

static void cpu_add(sdc_backend *be, float *y, const float *a, const float *b, int64_t n) {
    ew_run(be, EW_ADD, y, a, b, 0, 0, n);
}
static void cpu_lerp(sdc_backend *be, float *y, const float *a, const float *b, float s,
                     int64_t n) {
    ew_run(be, EW_LERP, y, a, b, s, 0, n);
}
static void cpu_axpby(sdc_backend *be, float *y, float a, const float *x, float b,
                      const float *z, int64_t n) {
    ew_run(be, EW_AXPBY, y, x, z, a, b, n);
}
static void cpu_copy(sdc_backend *be, float *y, const float *x, int64_t n) {
    if (y == x) return;
    ew_run(be, EW_COPY, y, x, NULL, 0, 0, n);
}
static void cpu_silu(sdc_backend *be, float *y, const float *x, int64_t n) {
    ew_run(be, EW_SILU, y, x, NULL, 0, 0, n);
}
static void cpu_gelu(sdc_backend *be, float *y, const float *x, int64_t n) {
    ew_run(be, EW_GELU, y, x, NULL, 0, 0, n);
}
static void cpu_quick_gelu(sdc_backend *be, float *y, const float *x, int64_t n) {
    ew_run(be, EW_QGELU, y, x, NULL, 0, 0, n);
}
/* every fast path (generic, avx2, avx512, neon): the reference's loop in
 * chunks over the threads, which the compiler turns into vector maxes */
static void cpu_relu(sdc_backend *be, float *y, const float *x, int64_t n) {
    ew_run(be, EW_RELU, y, x, NULL, 0, 0, n);
}

/* ---- per-plane ops: tasks over groups of [H, W] planes ------------------ */

typedef struct plane_ctx {
    sdc_backend *be;
    int kind;
    float *y;
    const float *x;
    int64_t planes, per_task, HW;
    int H, W, top, bottom, left, right;
} plane_ctx;

enum { PL_UPSAMPLE, PL_PAD };

static void plane_task(void *p, int64_t task, int thread) {
    (void)thread;
    const plane_ctx *c = p;
    int64_t p0 = task * c->per_task;
    int cnt = (int)(c->planes - p0 < c->per_task ? c->planes - p0 : c->per_task);
    switch (c->kind) {
    case PL_UPSAMPLE: /* each input row -> two equal output rows of pairs */
        for (int64_t pl = p0; pl < p0 + cnt; pl++)
            for (int iy = 0; iy < c->H; iy++) {
                const float *xr = c->x + pl * c->HW + (int64_t)iy * c->W;
                float *y0 = c->y + pl * 4 * c->HW + (int64_t)iy * 4 * c->W, *y1 = y0 + 2 * c->W;
                for (int ix = 0; ix < c->W; ix++) y0[2 * ix] = y0[2 * ix + 1] = xr[ix];
                memcpy(y1, y0, (size_t)2 * c->W * sizeof *y1);
            }
        break;
    case PL_PAD: {
        int64_t out_hw = (int64_t)(c->H + c->top + c->bottom) * (c->W + c->left + c->right);
        sdc_ref_pad2d(c->be, c->y + p0 * out_hw, c->x + p0 * c->HW, 1, cnt, c->H, c->W, c->top,
                      c->bottom, c->left, c->right);
        break;
    }
    }
}

static void plane_run(plane_ctx *c) {
    if (c->planes <= 0) return;
    int64_t per = CHUNK / (c->HW > 0 ? c->HW : 1);
    c->per_task = per < 1 ? 1 : per;
    sdc_parallel_for(sdc_cpu_of(c->be)->pool, (c->planes + c->per_task - 1) / c->per_task,
                     plane_task, c);
}

static void cpu_upsample2x(sdc_backend *be, float *y, const float *x, int N, int C, int H,
                           int W) {
    plane_ctx c = {.be = be, .kind = PL_UPSAMPLE, .y = y, .x = x, .planes = (int64_t)N * C,
                   .HW = (int64_t)H * W, .H = H, .W = W};
    plane_run(&c);
}

static void cpu_pad2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                      int top, int bottom, int left, int right) {
    plane_ctx c = {.be = be, .kind = PL_PAD, .y = y, .x = x, .planes = (int64_t)N * C,
                   .HW = (int64_t)H * W, .H = H, .W = W, .top = top, .bottom = bottom,
                   .left = left, .right = right};
    plane_run(&c);
}

/* ---- transpose: tasks over (matrix, 32-row block), 32x32 cache tiles ---- */

#define TT 32
typedef struct tr_ctx {
    float *y;
    const float *x;
    int H, W, row_blocks;
} tr_ctx;

static void tr_task(void *p, int64_t task, int thread) {
    (void)thread;
    const tr_ctx *t = p;
    int64_t n = task / t->row_blocks;
    int i0 = (int)(task % t->row_blocks) * TT, i1 = i0 + TT < t->H ? i0 + TT : t->H;
    const float *x = t->x + n * t->H * (int64_t)t->W;
    float *y = t->y + n * t->H * (int64_t)t->W;
    for (int j0 = 0; j0 < t->W; j0 += TT) {
        int j1 = j0 + TT < t->W ? j0 + TT : t->W;
        for (int j = j0; j < j1; j++)
            for (int i = i0; i < i1; i++) y[(int64_t)j * t->H + i] = x[(int64_t)i * t->W + j];
    }
}

static void cpu_transpose(sdc_backend *be, float *y, const float *x, int N, int H, int W) {
    if (N <= 0 || H <= 0 || W <= 0) return;
    tr_ctx t = {y, x, H, W, (H + TT - 1) / TT};
    sdc_parallel_for(sdc_cpu_of(be)->pool, (int64_t)N * t.row_blocks, tr_task, &t);
}

/* ---- concat: a chunked copy per (image, source) ---------------------------- */

typedef struct cat_ctx {
    float *y;
    const float *a, *b;
    int64_t na, nb, chunks_a, chunks_b; /* floats per image of a, b; chunks of each */
} cat_ctx;

static void cat_task(void *p, int64_t task, int thread) {
    (void)thread;
    const cat_ctx *c = p;
    int64_t per_img = c->chunks_a + c->chunks_b, n = task / per_img, r = task % per_img;
    float *yn = c->y + n * (c->na + c->nb);
    const float *src;
    int64_t len, off;
    if (r < c->chunks_a) {
        off = r * CHUNK;
        len = c->na - off;
        src = c->a + n * c->na + off;
    } else {
        off = (r - c->chunks_a) * CHUNK;
        len = c->nb - off;
        src = c->b + n * c->nb + off;
        yn += c->na;
    }
    if (len > CHUNK) len = CHUNK;
    memcpy(yn + off, src, (size_t)len * sizeof *yn);
}

static void cpu_concat(sdc_backend *be, float *y, const float *a, int Ca, const float *b,
                       int Cb, int N, int HW) {
    cat_ctx c = {y, a, b, (int64_t)Ca * HW, (int64_t)Cb * HW, 0, 0};
    c.chunks_a = (c.na + CHUNK - 1) / CHUNK;
    c.chunks_b = (c.nb + CHUNK - 1) / CHUNK;
    sdc_parallel_for(sdc_cpu_of(be)->pool, (int64_t)N * (c.chunks_a + c.chunks_b), cat_task, &c);
}

/* ---- the shared buffer -------------------------------------------------- */

/* Straight from the OS and back: malloc would keep it in its heap (glibc
 * raises its mmap threshold after the first free; peak RSS rose by ~100
 * MiB over a 512x512 image that way). */
static void unmap(float **p, size_t *floats) {
    if (*p) munmap(*p, *floats * sizeof(float));
    *p = NULL;
    *floats = 0;
}

static float *grow(float **p, size_t *have, size_t floats) {
    if (*have >= floats) return *p;
    unmap(p, have);
    void *q = mmap(NULL, floats * sizeof(float), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (q == MAP_FAILED) return NULL;
    *p = q;
    *have = floats;
    return q;
}

void sdc_cpu_shared_release(sdc_cpu *cpu) {
    unmap(&cpu->shared, &cpu->shared_floats);
    unmap(&cpu->aux, &cpu->aux_floats);
}

float *sdc_cpu_shared_buffer(sdc_cpu *cpu, size_t floats) {
    return grow(&cpu->shared, &cpu->shared_floats, floats);
}

float *sdc_cpu_aux_buffer(sdc_cpu *cpu, size_t floats) {
    return grow(&cpu->aux, &cpu->aux_floats, floats);
}

/* ---- creation ---------------------------------------------------------- */

static void cpu_free(sdc_backend *be) {
    if (!be) return;
    cpu_backend *cb = (cpu_backend *)be;
    sdc_threadpool_free(cb->cpu.pool);
    sdc_cpu_shared_release(&cb->cpu);
    free(cb->cpu.scratch);
    free(cb->cpu.bias);
    free(cb);
}

/* GEGLU over the pool with the ISA's row function (cpu->k.geglu_row). */
typedef struct geglu_job {
    const sdc_cpu *cpu;
    float *y;
    const float *x;
    int rows, D, per; /* rows per task */
} geglu_job;

static void geglu_task(void *p, int64_t task, int thread) {
    (void)thread;
    const geglu_job *j = p;
    int r0 = (int)task * j->per, r1 = r0 + j->per < j->rows ? r0 + j->per : j->rows;
    for (int r = r0; r < r1; r++) {
        const float *h = j->x + (int64_t)r * 2 * j->D;
        j->cpu->k.geglu_row(j->y + (int64_t)r * j->D, h, h + j->D, j->D);
    }
}

static void cpu_geglu(sdc_backend *be, float *y, const float *x, int rows, int D) {
    const sdc_cpu *cpu = sdc_cpu_of(be);
    if (!cpu->k.geglu_row) {
        sdc_ref_geglu(be, y, x, rows, D);
        return;
    }
    if (rows <= 0 || D <= 0) return;
    int per = (int)((1 << 15) / D);
    geglu_job j = {cpu, y, x, rows, D, per < 1 ? 1 : per};
    sdc_parallel_for(cpu->pool, (rows + j.per - 1) / j.per, geglu_task, &j);
}

/* ---- memory, residency, completion (backend.h) ------------------------ */

static sdc_status cpu_buffer_alloc(sdc_backend *be, size_t bytes, float **base) {
    (void)be;
    size_t n = bytes ? (bytes + 63) / 64 * 64 : 64;
    *base = n >= bytes ? aligned_alloc(64, n) : NULL;
    if (!*base)
        return sdc_fail(SDC_ERR_NOMEM, "cannot allocate %zu MiB of activation memory",
                        bytes >> 20);
    return SDC_OK;
}

static void cpu_buffer_free(sdc_backend *be, float *base) {
    (void)be;
    free(base);
}

/* The weights are read where they lie: their host pages are all there is. */
static void cpu_weights(sdc_backend *be, const sdc_weight *const *w, int n, sdc_residency r) {
    if (!be->host_pages) return;
    for (int i = 0; i < n; i++)
        if (w[i]) be->host_pages(be->host_pages_ctx, w[i], r);
}

/* Ops return when done and cannot fail. */
static sdc_status cpu_sync(sdc_backend *be) {
    (void)be;
    return SDC_OK;
}

static void fill_ref(sdc_backend *be) {
    be->linear = sdc_ref_linear;
    be->linear_map = sdc_ref_linear_map;
    be->conv2d = sdc_ref_conv2d;
    be->group_norm = sdc_ref_group_norm;
    be->layer_norm = sdc_ref_layer_norm;
    be->attention = sdc_ref_attention;
    be->silu = sdc_ref_silu;
    be->gelu = sdc_ref_gelu;
    be->quick_gelu = sdc_ref_quick_gelu;
    be->relu = sdc_ref_relu;
    be->add = sdc_ref_add;
    be->lerp = sdc_ref_lerp;
    be->axpby = sdc_ref_axpby;
    be->geglu = sdc_ref_geglu;
    be->upsample2x = sdc_ref_upsample2x;
    be->pad2d = sdc_ref_pad2d;
    be->transpose = sdc_ref_transpose;
    be->concat = sdc_ref_concat;
    be->copy = sdc_ref_copy;
    be->copy_in = sdc_ref_copy;
    be->copy_out = sdc_ref_copy;
    be->embed = sdc_ref_embed;
    be->timestep_embed = sdc_ref_timestep_embed;
}

static void fill_portable(sdc_backend *be) {
    fill_ref(be);
    be->linear = sdc_cpu_linear;
    be->linear_map = sdc_cpu_linear_map;
    be->conv2d = sdc_cpu_conv2d;
    be->silu = cpu_silu;
    be->gelu = cpu_gelu;
    be->quick_gelu = cpu_quick_gelu;
    be->relu = cpu_relu;
    be->add = cpu_add;
    be->lerp = cpu_lerp;
    be->axpby = cpu_axpby;
    be->upsample2x = cpu_upsample2x;
    be->pad2d = cpu_pad2d;
    be->transpose = cpu_transpose;
    be->concat = cpu_concat;
    be->copy = cpu_copy;
    be->copy_in = cpu_copy;
    be->copy_out = cpu_copy;
}

#ifdef SDC_HAVE_X86
static void fill_avx2(sdc_backend *be) {
    fill_portable(be);
    be->attention = sdc_avx2_attention;
    be->group_norm = sdc_avx2_group_norm;
    be->layer_norm = sdc_avx2_layer_norm;
    be->silu = sdc_avx2_silu;
    be->gelu = sdc_avx2_gelu;
    be->quick_gelu = sdc_avx2_quick_gelu;
    be->geglu = cpu_geglu;
    be->transpose = sdc_avx2_transpose;
}
#endif

#if defined(__aarch64__)
static void fill_neon(sdc_backend *be) {
    fill_portable(be);
    be->attention = sdc_neon_attention;
    be->group_norm = sdc_neon_group_norm;
    be->layer_norm = sdc_neon_layer_norm;
    be->silu = sdc_neon_silu;
    be->gelu = sdc_neon_gelu;
    be->quick_gelu = sdc_neon_quick_gelu;
    be->geglu = cpu_geglu;
    be->transpose = sdc_neon_transpose;
}
#endif

/* A 6x16-tile kernel set (the AVX2 and portable kernels). */
static sdc_cpu_kernels kernels_6x16(const char *isa, sdc_gemm_kernel_fn gemm, sdc_cvt16_fn f16,
                                    sdc_cvt16_fn bf16) {
    return (sdc_cpu_kernels){.isa = isa, .gemm = gemm, .mr = SDC_GEMM_MR, .nr = SDC_GEMM_NR,
                             .kc = SDC_GEMM_KC, .mc = 192, .inplace_a = 1, .gemm16 = gemm,
                             .f16 = f16, .bf16 = bf16};
}

int sdc_cpu_isa_supported(sdc_cpu_isa isa) {
    switch (isa) {
    case SDC_ISA_REF:
    case SDC_ISA_GENERIC: return 1;
#ifdef SDC_HAVE_X86
    case SDC_ISA_AVX2: {
        const sdc_cpu_features *f = sdc_cpu_features_get();
        return f->avx2 && f->fma && f->f16c;
    }
    case SDC_ISA_AVX512: {
        const sdc_cpu_features *f = sdc_cpu_features_get();
        return f->avx2 && f->fma && f->f16c && f->avx512f && f->avx512bw && f->avx512vl &&
               f->avx512dq;
    }
#endif
#if defined(__aarch64__)
    case SDC_ISA_NEON: return 1;
#endif
    default: return 0;
    }
}

static const char *const k_isa_names[] = {"ref", "generic", "avx2", "avx512", "neon"};

const char *sdc_cpu_isa_name(sdc_cpu_isa isa) {
    return (unsigned)isa < sizeof k_isa_names / sizeof *k_isa_names ? k_isa_names[isa] : NULL;
}

sdc_backend *sdc_backend_cpu_create_isa(int n_threads, sdc_cpu_isa isa) {
    if (!sdc_cpu_isa_supported(isa)) {
        sdc_fail(SDC_ERR_UNSUPPORTED, "cpu backend: this CPU or build has no %s kernels",
                 sdc_cpu_isa_name(isa) ? sdc_cpu_isa_name(isa) : "such");
        return NULL;
    }
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)(n < MAX_THREADS ? n : MAX_THREADS) : 1;
    }
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb) {
        sdc_fail(SDC_ERR_NOMEM, "cpu backend: out of memory");
        return NULL;
    }
    sdc_cpu *cpu = &cb->cpu;
    cpu->n_threads = n_threads;
    size_t bytes = (size_t)n_threads * SDC_CPU_SCRATCH_FLOATS * sizeof(float);
    cpu->scratch = aligned_alloc(64, bytes); /* a multiple of 64 (KC*NC*4 is) */
    cpu->pool = sdc_threadpool_create(n_threads);
    cpu->bias = malloc(SDC_CPU_BIAS_FLOATS * sizeof *cpu->bias);
    if (!cpu->scratch || !cpu->pool || !cpu->bias) {
        sdc_fail(SDC_ERR_NOMEM, "cpu backend: cannot allocate %d threads and %zu KiB of scratch",
                 n_threads, bytes >> 10);
        cpu_free(&cb->be);
        return NULL;
    }
    sdc_backend *be = &cb->be;
    be->impl = cpu;
    be->free = cpu_free;
    be->buffer_alloc = cpu_buffer_alloc;
    be->buffer_free = cpu_buffer_free;
    be->weights = cpu_weights;
    be->sync = cpu_sync;
    cpu->k = kernels_6x16("generic", sdc_gemm_kernel_generic, sdc_cvt_f16_generic,
                          sdc_cvt_bf16_generic);
    switch (isa) {
    case SDC_ISA_REF:
        cpu->k.isa = "ref";
        fill_ref(be);
        break;
    case SDC_ISA_GENERIC: fill_portable(be); break;
#ifdef SDC_HAVE_X86
    case SDC_ISA_AVX2:
        cpu->k = kernels_6x16("avx2", sdc_gemm_kernel_avx2, sdc_cvt_f16_avx2, sdc_cvt_bf16_avx2);
        cpu->k.geglu_row = sdc_avx2_geglu_row;
        cpu->k.pack_rows = sdc_pack_rows_avx2;
        fill_avx2(be);
        break;
    case SDC_ISA_AVX512:
        cpu->k = (sdc_cpu_kernels){.isa = "avx512", .gemm = sdc_gemm_kernel_avx512,
                                   .mr = SDC_AVX512_MR, .nr = SDC_AVX512_NR, .kc = 256,
                                   .mc = 16 * SDC_AVX512_MR, .inplace_a = 1,
                                   .gemm_pf = sdc_gemm_kernel_pf_avx512,
                                   .gemm16 = sdc_gemm_kernel16_avx512, .f16 = sdc_cvt_f16_avx512,
                                   .bf16 = sdc_cvt_bf16_avx512, .geglu_row = sdc_avx512_geglu_row,
                                   .pack_rows = sdc_pack_rows_avx512};
        if (sdc_cpu_features_get()->avx512_bf16) {
            cpu->k.gemm_bf16 = sdc_gemm_kernel_bf16_avx512;
            cpu->k.bf16_pairs = sdc_bf16_pairs_avx512;
            cpu->k.bf16_row_f32 = sdc_bf16_row_f32_avx512;
            cpu->k.bf16_row_f16 = sdc_bf16_row_f16_avx512;
            cpu->k.bf16_panel_rows = sdc_bf16_panel_rows_avx512;
        }
        fill_avx2(be);
        be->attention = sdc_avx512_attention;
        break;
#endif
#if defined(__aarch64__)
    case SDC_ISA_NEON:
        cpu->k = kernels_6x16("neon", sdc_gemm_kernel_neon, sdc_cvt_f16_neon, sdc_cvt_bf16_neon);
        cpu->k.geglu_row = sdc_neon_geglu_row;
        cpu->k.pack_rows = sdc_pack_rows_neon;
        fill_neon(be);
        break;
#endif
    default: break;
    }
    cpu->attention_f32 = be->attention;
    snprintf(cb->name, sizeof cb->name, "cpu-%s (%d threads)", cpu->k.isa, n_threads);
    be->name = cb->name;
    return be;
}

/* The best supported ISA, or the one SDC_CPU_ISA names if it is supported
 * (an unknown or unsupported name falls back to the best). */
static sdc_cpu_isa pick_isa(void) {
    sdc_cpu_isa best = SDC_ISA_GENERIC;
    for (int i = SDC_ISA_NEON; i > SDC_ISA_GENERIC; i--)
        if (sdc_cpu_isa_supported((sdc_cpu_isa)i)) {
            best = (sdc_cpu_isa)i;
            break;
        }
    const char *env = getenv("SDC_CPU_ISA");
    if (env)
        for (int i = 0; i < (int)(sizeof k_isa_names / sizeof *k_isa_names); i++)
            if (strcmp(env, k_isa_names[i]) == 0 && sdc_cpu_isa_supported((sdc_cpu_isa)i))
                return (sdc_cpu_isa)i;
    return best;
}

/* SDC_AMX=0 or off: the bf16 mode leaves AMX out. */
static int amx_turned_off(void) {
    const char *env = getenv("SDC_AMX");
    return env && (strcmp(env, "0") == 0 || strcmp(env, "off") == 0);
}

/* The bf16 mode's kernels, the first that can run: AMX tiles (where the
 * CPU has AMX-BF16 and the OS grants the tile state), AVX512_BF16 (with the
 * avx512 kernels), else none.  SDC_AMX=0 leaves AMX out; SDC_AMX=emulate
 * takes the AMX kernel on emulated tiles (amx_emul.c: any CPU, slow, for
 * tests).  The reference backend never has the mode. */
sdc_status sdc_backend_cpu_set_bf16(sdc_backend *be, int on) {
    if (!be || be->free != cpu_free)
        return sdc_fail(SDC_ERR_UNSUPPORTED, "bf16 mode: not a CPU backend");
    sdc_cpu *cpu = sdc_cpu_of(be);
    const char *env = getenv("SDC_AMX");
    const int ref = strcmp(cpu->k.isa, "ref") == 0;
    const int emulate = !ref && env && strcmp(env, "emulate") == 0;
    const int amx_off = amx_turned_off();
    char why[160] = ""; /* why AMX is not used, where the CPU has it */
    int amx = 0;
    if (on && !ref && !emulate && !amx_off) amx = sdc_amx_hw_ready(why, sizeof why);
    if (on && !amx && !emulate && !cpu->k.gemm_bf16)
        return sdc_fail(SDC_ERR_UNSUPPORTED,
                        "bf16 mode needs a CPU with AMX-BF16, or AVX512_BF16 and the avx512 "
                        "kernels (this backend: %s; CPU features: %s)%s%s",
                        cpu->k.isa, sdc_cpu_features_str(), why[0] ? "; " : "", why);
    cpu->kbf = cpu->k;
    if (amx || emulate) sdc_amx_kernels(&cpu->kbf, emulate);
    cpu->bf16 = on != 0;
    /* on tiles the attention's two products run there too */
    be->attention = !on || !(amx || emulate) ? cpu->attention_f32
                    : emulate                ? sdc_amx_attention_emul
                                             : sdc_amx_attention_hw;
    cpu_backend *cb = (cpu_backend *)(void *)be; /* be is its first member */
    const char *tiles = !cpu->bf16 ? "" : emulate ? "-amx-emulated" : amx ? "-amx" : "";
    snprintf(cb->name, sizeof cb->name, "cpu-%s%s%s (%d threads)%s%s", cpu->k.isa,
             cpu->bf16 ? " bf16" : "", tiles, cpu->n_threads,
             cpu->bf16 && why[0] ? "; AMX not used: " : "", cpu->bf16 ? why : "");
    return SDC_OK;
}

int sdc_backend_cpu_bf16_faster(sdc_backend *be) {
    if (!be || be->free != cpu_free) return 0;
    const sdc_cpu *cpu = sdc_cpu_of(be);
    if (strcmp(cpu->k.isa, "ref") == 0) return 0;
    if (!amx_turned_off() && sdc_amx_hw_ready(NULL, 0)) return 1;
    return cpu->k.gemm_bf16 != NULL && sdc_cpu_features_get()->amd;
}

void sdc_backend_cpu_set_stop(sdc_backend *be, const atomic_int *stop) {
    if (be && be->free == cpu_free) sdc_threadpool_set_stop(sdc_cpu_of(be)->pool, stop);
}

sdc_backend *sdc_backend_cpu_create(int n_threads, int force_ref) {
    const char *env = getenv("SDC_FORCE_REF");
    if (env && env[0] == '1') force_ref = 1;
    return sdc_backend_cpu_create_isa(n_threads, force_ref ? SDC_ISA_REF : pick_isa());
}
