/* bench_ops: every op the engine runs for a 512x512 image, timed one by one
 * on the CPU backend, against the machine's measured peak.
 *
 *   bench_ops [--model PATH] [--threads N] [--reps R] [--stage text|unet|vae]
 *             [--json FILE] [--size PX] [--op NAME] [--bf16]
 *
 * The shapes are not typed in: the real models (loaded from PATH, default
 * /tmp/fs/sd14-standin, the full-size SD 1.4 stand-in; any SD 1.x model
 * gives the same shapes) run once against a recording backend in planning
 * mode, as the pipeline plans them:
 *   text  one CLIP text-encoder call, 77 tokens (an image makes 2)
 *   unet  one UNet call at batch 2 (CFG), latent 64x64, context [2, 77, 768]
 *         (an image makes one per step)
 *   vae   one VAE decode, latent [1, 4, 64, 64] -> [1, 3, 512, 512]
 * (--size changes the image size).  Every distinct call (op, shape, weight
 * dtype, bias/residual/silu/causal flags) is then timed on random data:
 * one warm-up call, then the best of R calls (stopping early once 2 s are
 * spent on one shape), wall clock.  --op NAME times only that op's calls
 * (the stage sums then cover only them); --bf16 runs the backend in its
 * bf16 mode (sdc_backend_cpu_set_bf16; % of peak stays against the fp32
 * peak, so the mode's ops can pass 100%).
 *
 * Columns: count per stage call, ms per call, count*ms, and the rate:
 *   linear, conv2d, attention: GFLOP/s (2 FLOP per multiply-add: linear
 *     2*M*N*K, conv 2*N*O*Ho*Wo*C*kh*kw, attention 4*Sq*Sk*heads*dh, half
 *     that when causal) and % of the measured fp32 FMA peak (the better of
 *     AVX2 and AVX-512) on the same threads;
 *   the rest: GB/s of compulsory traffic (each input read once, each output
 *     written once) and % of the measured copy bandwidth on the same threads.
 * "cpu eff" divides the FLOPs (or bytes) by the process CPU time instead of
 * wall time and compares with ONE thread's peak: it stays meaningful when
 * other jobs share the machine.
 * The summary adds count*ms per stage (an estimate of the stage's time with
 * no cache effects between ops) and divides the stage's FLOP count of
 * ../shared/TARGETS.md by it.
 *
 * A new op in backends/backend.h needs a recorder and a timer here, or it is
 * missing from the table (it then falls back to the null backend's no-op). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "backends/cpu/cpu_features.h"
#include "backends/opencl/opencl.h"
#include "core/arena.h"
#include "core/error.h"
#include "io/model_files.h"
#include "machine.h"
#include "models/models.h"
#include "sdc.h"

/* ---- op records ------------------------------------------------------------ */

typedef enum {
    OP_LINEAR, OP_CONV, OP_ATTN, OP_GN, OP_LN, OP_SILU, OP_GELU, OP_QGELU, OP_GEGLU, OP_ADD,
    OP_LERP, OP_AXPBY, OP_UPS, OP_PAD, OP_TRANSPOSE, OP_CONCAT, OP_COPY, OP_EMBED,
    OP_TEMB, OP_LINMAP, OP_RELU, OP_KINDS
} op_kind;

static const char *const k_op_name[OP_KINDS] = {
    "linear", "conv2d", "attention", "group_norm", "layer_norm", "silu", "gelu",
    "quick_gelu", "geglu", "add", "lerp", "axpby", "upsample2x", "pad2d",
    "transpose", "concat", "copy", "embed", "timestep_emb", "linear_map", "relu"};

enum { ST_TEXT, ST_UNET, ST_VAE, ST_COUNT };
static const char *const k_stage[ST_COUNT] = {"text", "unet", "vae"};
/* FLOP per stage call, ../shared/TARGETS.md (512x512; text: one prompt,
 * CLIP's 13.3 + the cross-attention K/V of SD 1.x's 16 transformer blocks,
 * 4 * 77 * 768 * (5*320 + 5*640 + 6*1280) = 2.95; the UNet step's 1606.5
 * still counts them, as TARGETS.md does) */
static const double k_stage_gflop[ST_COUNT] = {16.25, 1606.5, 2514.5};
static const char *const k_stage_what[ST_COUNT] = {
    "CLIP text encoder + the UNet's cross-attention K/V, 1 prompt of 77 tokens (2 per image)",
    "UNet, 1 call at batch 2 (CFG) = 1 sampling step",
    "VAE decode, 1 call"};

/* flags */
#define F_BIAS 1
#define F_ACC 2
#define F_SILU 4
#define F_CAUSAL 8
#define F_Z 16  /* axpby with z */
#define F_POS 32 /* embed with positions */
#define F_TOK 64 /* linear_map to tokens */

typedef struct op_rec {
    op_kind kind;
    int64_t p[10]; /* shape, per kind (see the recorders) */
    sdc_dtype wdt; /* weight dtype: linear, conv2d, embed */
    int flags;
    int count[ST_COUNT];
    double ms, cpu_ms; /* one call: wall, process CPU */
    double flop, bytes;
} op_rec;

#define MAX_RECS 1024
static op_rec g_rec[MAX_RECS];
static int g_nrec, g_stage, g_overflow;

static void record(op_kind kind, const int64_t *p, int np, sdc_dtype wdt, int flags) {
    op_rec r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    for (int i = 0; i < np; i++) r.p[i] = p[i];
    r.wdt = wdt;
    r.flags = flags;
    for (int i = 0; i < g_nrec; i++) {
        op_rec *o = &g_rec[i];
        if (o->kind == kind && o->wdt == wdt && o->flags == flags &&
            !memcmp(o->p, r.p, sizeof r.p)) {
            o->count[g_stage]++;
            return;
        }
    }
    if (g_nrec == MAX_RECS) {
        g_overflow = 1;
        return;
    }
    r.count[g_stage] = 1;
    g_rec[g_nrec++] = r;
}
#define REC(kind, wdt, flags, ...)                                                             \
    do {                                                                                       \
        const int64_t p_[] = {__VA_ARGS__};                                                    \
        record(kind, p_, (int)(sizeof p_ / sizeof p_[0]), wdt, flags);                         \
    } while (0)

/* ---- the recording backend (no pointer is touched: planning mode) ---------- */

static void r_linear(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                     const sdc_weight *b, const float *acc, int M, int N, int K) {
    (void)be, (void)y, (void)x;
    REC(OP_LINEAR, W->dtype, (b ? F_BIAS : 0) | (acc ? F_ACC : 0), M, N, K);
}
static void r_linear_map(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                         const sdc_weight *b, const float *acc, int N, int HW, int C, int O,
                         int to_tokens) {
    (void)be, (void)y, (void)x;
    REC(OP_LINMAP, W->dtype, (b ? F_BIAS : 0) | (acc ? F_ACC : 0) | (to_tokens ? F_TOK : 0), N,
        HW, C, O);
}
static void r_conv2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                     const sdc_weight *w, const sdc_weight *b, int O, int kh, int kw, int stride,
                     int pad, const float *acc) {
    (void)be, (void)y, (void)x;
    REC(OP_CONV, w->dtype, (b ? F_BIAS : 0) | (acc ? F_ACC : 0), N, C, H, W, O, kh, kw, stride,
        pad);
}
static void r_group_norm(sdc_backend *be, float *y, const float *x, const float *add, int N, int C,
                         int HW, int G, const sdc_weight *gamma, const sdc_weight *beta, float eps,
                         int silu) {
    /* add is NULL while recording (planning pointers), as acc is */
    (void)be, (void)y, (void)x, (void)add, (void)gamma, (void)beta, (void)eps;
    REC(OP_GN, SDC_DT_F32, silu ? F_SILU : 0, N, C, HW, G);
}
static void r_layer_norm(sdc_backend *be, float *y, const float *x, int rows, int D,
                         const sdc_weight *gamma, const sdc_weight *beta, float eps) {
    (void)be, (void)y, (void)x, (void)gamma, (void)beta, (void)eps;
    REC(OP_LN, SDC_DT_F32, 0, rows, D);
}
static void r_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                        const float *k, const float *v, int kv_stride, int Sq, int Sk, int heads,
                        int dh, float scale, int causal) {
    (void)be, (void)out, (void)q, (void)k, (void)v, (void)scale;
    REC(OP_ATTN, SDC_DT_F32, causal ? F_CAUSAL : 0, Sq, Sk, heads, dh, q_stride, kv_stride);
}
static void r_silu(sdc_backend *be, float *y, const float *x, int64_t n) {
    (void)be, (void)y, (void)x;
    REC(OP_SILU, SDC_DT_F32, 0, n);
}
static void r_gelu(sdc_backend *be, float *y, const float *x, int64_t n) {
    (void)be, (void)y, (void)x;
    REC(OP_GELU, SDC_DT_F32, 0, n);
}
static void r_quick_gelu(sdc_backend *be, float *y, const float *x, int64_t n) {
    (void)be, (void)y, (void)x;
    REC(OP_QGELU, SDC_DT_F32, 0, n);
}
static void r_relu(sdc_backend *be, float *y, const float *x, int64_t n) {
    (void)be, (void)y, (void)x;
    REC(OP_RELU, SDC_DT_F32, 0, n);
}
static void r_add(sdc_backend *be, float *y, const float *a, const float *b, int64_t n) {
    (void)be, (void)y, (void)a, (void)b;
    REC(OP_ADD, SDC_DT_F32, 0, n);
}
static void r_lerp(sdc_backend *be, float *y, const float *a, const float *b, float s,
                   int64_t n) {
    (void)be, (void)y, (void)a, (void)b, (void)s;
    REC(OP_LERP, SDC_DT_F32, 0, n);
}
static void r_axpby(sdc_backend *be, float *y, float a, const float *x, float b, const float *z,
                    int64_t n) {
    (void)be, (void)y, (void)a, (void)x, (void)b;
    REC(OP_AXPBY, SDC_DT_F32, z ? F_Z : 0, n);
}
static void r_geglu(sdc_backend *be, float *y, const float *x, int rows, int D) {
    (void)be, (void)y, (void)x;
    REC(OP_GEGLU, SDC_DT_F32, 0, rows, D);
}
static void r_upsample2x(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W) {
    (void)be, (void)y, (void)x;
    REC(OP_UPS, SDC_DT_F32, 0, N, C, H, W);
}
static void r_pad2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W, int top,
                    int bottom, int left, int right) {
    (void)be, (void)y, (void)x;
    REC(OP_PAD, SDC_DT_F32, 0, N, C, H, W, top, bottom, left, right);
}
static void r_transpose(sdc_backend *be, float *y, const float *x, int N, int H, int W) {
    (void)be, (void)y, (void)x;
    REC(OP_TRANSPOSE, SDC_DT_F32, 0, N, H, W);
}
static void r_concat(sdc_backend *be, float *y, const float *a, int Ca, const float *b, int Cb,
                     int N, int HW) {
    (void)be, (void)y, (void)a, (void)b;
    REC(OP_CONCAT, SDC_DT_F32, 0, N, Ca, Cb, HW);
}
static void r_copy(sdc_backend *be, float *y, const float *x, int64_t n) {
    (void)be, (void)y, (void)x;
    REC(OP_COPY, SDC_DT_F32, 0, n);
}
static void r_embed(sdc_backend *be, float *y, const int32_t *ids, int n, const sdc_weight *table,
                    const sdc_weight *pos, int D) {
    (void)be, (void)y, (void)ids;
    REC(OP_EMBED, table->dtype, pos ? F_POS : 0, n, D, table->numel / (D > 0 ? D : 1));
}
static void r_timestep_embed(sdc_backend *be, float *y, const float *t, int n, int dim) {
    (void)be, (void)y, (void)t;
    REC(OP_TEMB, SDC_DT_F32, 0, n, dim);
}

static sdc_backend recording_backend(void) {
    sdc_backend b = *sdc_backend_null();
    b.name = "recording";
    b.linear = r_linear, b.linear_map = r_linear_map, b.conv2d = r_conv2d, b.group_norm = r_group_norm;
    b.layer_norm = r_layer_norm, b.attention = r_attention, b.silu = r_silu;
    b.gelu = r_gelu, b.quick_gelu = r_quick_gelu, b.add = r_add, b.lerp = r_lerp;
    b.axpby = r_axpby, b.geglu = r_geglu, b.relu = r_relu;
    b.upsample2x = r_upsample2x, b.pad2d = r_pad2d, b.transpose = r_transpose;
    b.concat = r_concat, b.copy = r_copy, b.embed = r_embed;
    b.timestep_embed = r_timestep_embed;
    return b;
}

/* Runs the three stage calls against the recording backend. */
static sdc_status record_model(const char *path, int px) {
    sdc_model_files *mf = NULL;
    sdc_clip *clip = NULL;
    sdc_unet *unet = NULL;
    sdc_vae *vae = NULL;
    sdc_status st = sdc_model_files_open(path, &mf);
    if (st == SDC_OK) st = sdc_clip_create(mf, &clip);
    if (st == SDC_OK) st = sdc_unet_create(mf, &unet);
    if (st == SDC_OK) st = sdc_vae_create(mf, &vae);
    if (st == SDC_OK) {
        sdc_backend rb = recording_backend();
        sdc_arena a;
        memset(&a, 0, sizeof a); /* sdc_arena_plan releases what a holds */
        const int S = 77, f = 1 << (sdc_vae_cfg(vae)->levels - 1);
        const int h = px / f, w = px / f;
        int32_t ids[77];
        for (int i = 0; i < S; i++) ids[i] = i == 0 ? 49406 : 49407; /* BOS, EOS padding */
        float t[2] = {500, 500};

        /* the text stage is what runs once per prompt: CLIP and the
         * UNet's cross-attention keys and values of its output (made once
         * per image, as the pipeline does; kv is only addressed, never
         * touched here) */
        float *kv = malloc(sdc_unet_context_floats(unet, 2, S) * sizeof *kv);
        if (!kv) {
            st = sdc_fail(SDC_ERR_NOMEM, "out of memory");
            goto out;
        }
        g_stage = ST_TEXT;
        sdc_arena_plan(&a);
        sdc_clip_forward(clip, &rb, &a, ids, S, NULL);
        sdc_unet_context(unet, &rb, NULL, 1, S, kv);
        g_stage = ST_UNET;
        sdc_arena_plan(&a);
        sdc_unet_forward(unet, &rb, &a, NULL, 2, 1, h, w, t, NULL, NULL, S, kv, NULL); /* as the pipeline: CFG's rows share x */
        free(kv);
        g_stage = ST_VAE;
        sdc_arena_plan(&a);
        sdc_vae_decode(vae, &rb, &a, NULL, 1, h, w, NULL);
    out:
        sdc_arena_free(&a);
    }
    sdc_vae_free(vae);
    sdc_unet_free(unet);
    sdc_clip_free(clip);
    sdc_model_files_close(mf);
    return st;
}

/* ---- timing ---------------------------------------------------------------- */

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The sizes of the live frand buffers (a device backend copies them in). */
#define FR_SLOTS 16
static struct {
    const float *p;
    size_t n;
} g_fr[FR_SLOTS];

static size_t frand_len(const float *p) {
    for (int i = 0; i < FR_SLOTS; i++)
        if (p && g_fr[i].p == p) return g_fr[i].n;
    return 0;
}

static void fr_forget(const float *p) {
    for (int i = 0; i < FR_SLOTS; i++)
        if (p && g_fr[i].p == p) g_fr[i].p = NULL, g_fr[i].n = 0;
}

/* n floats of uniform noise in [-0.5, 0.5), 64-byte aligned; NULL if short. */
static float *frand(size_t n) {
    size_t bytes = ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (!p) return NULL;
    for (int i = 0; i < FR_SLOTS; i++)
        if (!g_fr[i].p) {
            g_fr[i].p = p, g_fr[i].n = n;
            break;
        }
    uint32_t s = 12345;
    size_t period = n < 65536 ? n : 65536;
    for (size_t i = 0; i < period; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
    }
    for (size_t i = period; i < n; i += period)
        memcpy(p + i, p, (n - i < period ? n - i : period) * sizeof(float));
    return p;
}

/* A weight of n elements of dtype dt with values of about +-0.05. */
static sdc_weight wrand(sdc_dtype dt, int64_t n) {
    sdc_weight w;
    memset(&w, 0, sizeof w);
    w.name = "bench";
    w.dtype = dt == SDC_DT_F16 || dt == SDC_DT_BF16 ? dt : SDC_DT_F32;
    w.ndim = 1;
    w.shape[0] = w.numel = n;
    w.nbytes = (size_t)n * sdc_dtype_size(w.dtype);
    float *f = frand((size_t)n);
    fr_forget(f); /* weights stay host memory */
    if (!f) return w;
    if (w.dtype == SDC_DT_F32) {
        for (int64_t i = 0; i < n; i++) f[i] *= 0.1f;
        w.data = f;
        return w;
    }
    uint16_t *h = malloc(w.nbytes ? w.nbytes : 2);
    if (h)
        for (int64_t i = 0; i < n; i++) {
            float v = f[i] * 0.1f;
            uint32_t u;
            memcpy(&u, &v, 4);
            h[i] = w.dtype == SDC_DT_F16 ? sdc_f32_to_f16(v) : (uint16_t)(u >> 16);
        }
    free(f);
    w.data = h;
    return w;
}

typedef struct bufs {
    float *a, *b, *c, *y;
    sdc_weight w, bias, g2;
    int32_t *ids;
    int ok;
} bufs;

static void bufs_free(bufs *B) {
    fr_forget(B->a), fr_forget(B->b), fr_forget(B->c), fr_forget(B->y);
    free(B->a), free(B->b), free(B->c), free(B->y), free(B->ids);
    free((void *)B->w.data), free((void *)B->bias.data), free((void *)B->g2.data);
}

#define NEED(x) B->ok = B->ok && (x) != NULL

/* Allocates what op r needs and sets its FLOP and byte counts. */
static void bufs_make(bufs *B, op_rec *r) {
    memset(B, 0, sizeof *B);
    B->ok = 1;
    const int64_t *p = r->p;
    double F = 4.0; /* bytes per float */
    switch (r->kind) {
    case OP_LINEAR: { /* M N K */
        B->a = frand((size_t)(p[0] * p[2])), B->y = frand((size_t)(p[0] * p[1]));
        B->w = wrand(r->wdt, p[1] * p[2]);
        if (r->flags & F_BIAS) B->bias = wrand(SDC_DT_F32, p[1]), NEED(B->bias.data);
        NEED(B->a), NEED(B->y), NEED(B->w.data);
        r->flop = 2.0 * p[0] * p[1] * p[2];
        break;
    }
    case OP_LINMAP: { /* N HW C O */
        B->a = frand((size_t)(p[0] * p[1] * p[2])), B->y = frand((size_t)(p[0] * p[1] * p[3]));
        B->w = wrand(r->wdt, p[3] * p[2]);
        if (r->flags & F_BIAS) B->bias = wrand(SDC_DT_F32, p[3]), NEED(B->bias.data);
        NEED(B->a), NEED(B->y), NEED(B->w.data);
        r->flop = 2.0 * p[0] * p[1] * p[2] * p[3];
        break;
    }
    case OP_CONV: { /* N C H W O kh kw stride pad */
        int64_t Ho = (p[2] + 2 * p[8] - p[5]) / p[7] + 1, Wo = (p[3] + 2 * p[8] - p[6]) / p[7] + 1;
        B->a = frand((size_t)(p[0] * p[1] * p[2] * p[3])), B->y = frand((size_t)(p[0] * p[4] * Ho * Wo));
        B->w = wrand(r->wdt, p[4] * p[1] * p[5] * p[6]);
        if (r->flags & F_BIAS) B->bias = wrand(SDC_DT_F32, p[4]), NEED(B->bias.data);
        NEED(B->a), NEED(B->y), NEED(B->w.data);
        r->flop = 2.0 * p[0] * p[4] * Ho * Wo * (double)p[1] * p[5] * p[6];
        break;
    }
    case OP_ATTN: { /* Sq Sk heads dh q_stride kv_stride */
        B->a = frand((size_t)(p[0] * p[4])), B->b = frand((size_t)(p[1] * p[5]));
        B->c = frand((size_t)(p[1] * p[5])), B->y = frand((size_t)(p[0] * p[2] * p[3]));
        NEED(B->a), NEED(B->b), NEED(B->c), NEED(B->y);
        r->flop = 4.0 * p[0] * p[1] * p[2] * p[3] * (r->flags & F_CAUSAL ? 0.5 : 1.0);
        break;
    }
    case OP_GN: /* N C HW G */
    case OP_LN: { /* rows D */
        int64_t n = r->kind == OP_GN ? p[0] * p[1] * p[2] : p[0] * p[1];
        int64_t ch = r->kind == OP_GN ? p[1] : p[1];
        B->a = frand((size_t)n), B->y = frand((size_t)n);
        B->bias = wrand(SDC_DT_F32, ch), B->g2 = wrand(SDC_DT_F32, ch);
        NEED(B->a), NEED(B->y), NEED(B->bias.data), NEED(B->g2.data);
        r->bytes = 2.0 * n * F;
        break;
    }
    case OP_SILU: case OP_GELU: case OP_QGELU: case OP_RELU: case OP_COPY:
        B->a = frand((size_t)p[0]), B->y = frand((size_t)p[0]);
        NEED(B->a), NEED(B->y);
        r->bytes = 2.0 * p[0] * F;
        break;
    case OP_ADD: case OP_LERP: case OP_AXPBY:
        B->a = frand((size_t)p[0]), B->b = frand((size_t)p[0]), B->y = frand((size_t)p[0]);
        NEED(B->a), NEED(B->b), NEED(B->y);
        r->bytes = (r->kind == OP_AXPBY && !(r->flags & F_Z) ? 2.0 : 3.0) * p[0] * F;
        break;
    case OP_GEGLU: /* rows D */
        B->a = frand((size_t)(p[0] * 2 * p[1])), B->y = frand((size_t)(p[0] * p[1]));
        NEED(B->a), NEED(B->y);
        r->bytes = 3.0 * p[0] * p[1] * F;
        break;
    case OP_UPS: /* N C H W */
        B->a = frand((size_t)(p[0] * p[1] * p[2] * p[3])), B->y = frand((size_t)(4 * p[0] * p[1] * p[2] * p[3]));
        NEED(B->a), NEED(B->y);
        r->bytes = 5.0 * p[0] * p[1] * p[2] * p[3] * F;
        break;
    case OP_PAD: { /* N C H W top bottom left right */
        int64_t in = p[0] * p[1] * p[2] * p[3], out = p[0] * p[1] * (p[2] + p[4] + p[5]) * (p[3] + p[6] + p[7]);
        B->a = frand((size_t)in), B->y = frand((size_t)out);
        NEED(B->a), NEED(B->y);
        r->bytes = (double)(in + out) * F;
        break;
    }
    case OP_TRANSPOSE: /* N H W */
        B->a = frand((size_t)(p[0] * p[1] * p[2])), B->y = frand((size_t)(p[0] * p[1] * p[2]));
        NEED(B->a), NEED(B->y);
        r->bytes = 2.0 * p[0] * p[1] * p[2] * F;
        break;
    case OP_CONCAT: /* N Ca Cb HW */
        B->a = frand((size_t)(p[0] * p[1] * p[3])), B->b = frand((size_t)(p[0] * p[2] * p[3]));
        B->y = frand((size_t)(p[0] * (p[1] + p[2]) * p[3]));
        NEED(B->a), NEED(B->b), NEED(B->y);
        r->bytes = 2.0 * p[0] * (p[1] + p[2]) * p[3] * F;
        break;
    case OP_EMBED: /* n D V */
        B->w = wrand(r->wdt, p[2] * p[1]), B->y = frand((size_t)(p[0] * p[1]));
        if (r->flags & F_POS) B->g2 = wrand(SDC_DT_F32, p[0] * p[1]), NEED(B->g2.data);
        B->ids = malloc((size_t)p[0] * sizeof *B->ids);
        NEED(B->w.data), NEED(B->y), NEED(B->ids);
        if (B->ids)
            for (int64_t i = 0; i < p[0]; i++) B->ids[i] = (int32_t)((i * 7919) % p[2]);
        r->bytes = (double)p[0] * p[1] * (sdc_dtype_size(B->w.dtype) + F + (r->flags & F_POS ? F : 0));
        break;
    case OP_TEMB: /* n dim */
        B->a = frand((size_t)p[0]), B->y = frand((size_t)(p[0] * p[1]));
        NEED(B->a), NEED(B->y);
        if (B->a)
            for (int64_t i = 0; i < p[0]; i++) B->a[i] = 500.0f;
        r->bytes = (double)p[0] * p[1] * F;
        break;
    case OP_KINDS: break;
    }
}

static void run_op(sdc_backend *be, const op_rec *r, bufs *B) {
    const int64_t *p = r->p;
    const sdc_weight *bias = r->flags & F_BIAS ? &B->bias : NULL;
    switch (r->kind) {
    case OP_LINEAR:
        be->linear(be, B->y, B->a, &B->w, bias, r->flags & F_ACC ? B->y : NULL, (int)p[0],
                   (int)p[1], (int)p[2]);
        break;
    case OP_LINMAP:
        be->linear_map(be, B->y, B->a, &B->w, bias, r->flags & F_ACC ? B->y : NULL, (int)p[0],
                       (int)p[1], (int)p[2], (int)p[3], !!(r->flags & F_TOK));
        break;
    case OP_CONV:
        be->conv2d(be, B->y, B->a, (int)p[0], (int)p[1], (int)p[2], (int)p[3], &B->w, bias,
                   (int)p[4], (int)p[5], (int)p[6], (int)p[7], (int)p[8],
                   r->flags & F_ACC ? B->y : NULL);
        break;
    case OP_ATTN:
        be->attention(be, B->y, B->a, (int)p[4], B->b, B->c, (int)p[5], (int)p[0], (int)p[1],
                      (int)p[2], (int)p[3], 1.0f / sqrtf((float)p[3]), r->flags & F_CAUSAL);
        break;
    case OP_GN:
        be->group_norm(be, B->y, B->a, NULL, (int)p[0], (int)p[1], (int)p[2], (int)p[3], &B->g2,
                       &B->bias, 1e-5f, r->flags & F_SILU);
        break;
    case OP_LN: be->layer_norm(be, B->y, B->a, (int)p[0], (int)p[1], &B->g2, &B->bias, 1e-5f); break;
    case OP_SILU: be->silu(be, B->y, B->a, p[0]); break;
    case OP_GELU: be->gelu(be, B->y, B->a, p[0]); break;
    case OP_QGELU: be->quick_gelu(be, B->y, B->a, p[0]); break;
    case OP_RELU: be->relu(be, B->y, B->a, p[0]); break;
    case OP_COPY: be->copy(be, B->y, B->a, p[0]); break;
    case OP_ADD: be->add(be, B->y, B->a, B->b, p[0]); break;
    case OP_LERP: be->lerp(be, B->y, B->a, B->b, 7.5f, p[0]); break;
    case OP_AXPBY: be->axpby(be, B->y, 0.5f, B->a, 0.25f, r->flags & F_Z ? B->b : NULL, p[0]); break;
    case OP_GEGLU: be->geglu(be, B->y, B->a, (int)p[0], (int)p[1]); break;
    case OP_UPS: be->upsample2x(be, B->y, B->a, (int)p[0], (int)p[1], (int)p[2], (int)p[3]); break;
    case OP_PAD:
        be->pad2d(be, B->y, B->a, (int)p[0], (int)p[1], (int)p[2], (int)p[3], (int)p[4], (int)p[5],
                  (int)p[6], (int)p[7]);
        break;
    case OP_TRANSPOSE: be->transpose(be, B->y, B->a, (int)p[0], (int)p[1], (int)p[2]); break;
    case OP_CONCAT:
        be->concat(be, B->y, B->a, (int)p[1], B->b, (int)p[2], (int)p[0], (int)p[3]);
        break;
    case OP_EMBED:
        be->embed(be, B->y, B->ids, (int)p[0], &B->w, r->flags & F_POS ? &B->g2 : NULL, (int)p[1]);
        break;
    case OP_TEMB: be->timestep_embed(be, B->y, B->a, (int)p[0], (int)p[1]); break;
    case OP_KINDS: break;
    }
}

static int g_device; /* the backend is a device's: data copied in, ops synced */

/* B's activation buffers copied into one block of be's memory: D is B with
 * device addresses.  Returns the block (NULL if it cannot be had). */
static float *to_device(sdc_backend *be, const bufs *B, bufs *D) {
    *D = *B;
    float **dev[4] = {&D->a, &D->b, &D->c, &D->y};
    const float *host[4] = {B->a, B->b, B->c, B->y};
    size_t off[4], total = 0;
    for (int i = 0; i < 4; i++) {
        off[i] = total;
        total += (frand_len(host[i]) + 15) / 16 * 16;
    }
    float *base = NULL;
    if (be->buffer_alloc(be, (total ? total : 16) * sizeof(float), &base) != SDC_OK) return NULL;
    for (int i = 0; i < 4; i++) {
        *dev[i] = host[i] ? base + off[i] : NULL;
        if (host[i]) be->copy_in(be, *dev[i], host[i], (int64_t)frand_len(host[i]));
    }
    return base;
}

/* Times r: one warm-up, then the best of reps (at most ~2 s in all); on a
 * device each call is timed from an idle queue to its end (be->sync). */
static int time_op(sdc_backend *be, op_rec *r, int reps) {
    bufs B, D;
    bufs_make(&B, r);
    float *block = NULL;
    if (B.ok && g_device && !(block = to_device(be, &B, &D))) B.ok = 0;
    if (!B.ok) {
        bufs_free(&B);
        return 0;
    }
    bufs *X = g_device ? &D : &B;
    run_op(be, r, X);
    double best = 1e30, best_cpu = 1e30, spent = 0;
    for (int i = 0; i < reps && (i == 0 || spent < 2.0); i++) {
        be->sync(be);
        double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        run_op(be, r, X);
        be->sync(be);
        double dt = clock_s(CLOCK_MONOTONIC) - t0, dc = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        spent += dt;
        if (dt < best) best = dt;
        if (dc < best_cpu) best_cpu = dc;
    }
    int ok = be->sync(be) == SDC_OK;
    if (!ok) fprintf(stderr, "%s\n", sdc_last_error());
    r->ms = best * 1e3;
    r->cpu_ms = best_cpu * 1e3;
    if (block) be->buffer_free(be, block);
    bufs_free(&B);
    return ok;
}

/* ---- report ------------------------------------------------------------------ */

static void shape_str(const op_rec *r, char *s, size_t n) {
    const int64_t *p = r->p;
    const char *dt = r->wdt == SDC_DT_F16 ? " f16" : r->wdt == SDC_DT_BF16 ? " bf16" : "";
    switch (r->kind) {
    case OP_LINEAR:
        snprintf(s, n, "M%lld N%lld K%lld%s%s%s", (long long)p[0], (long long)p[1], (long long)p[2],
                 dt, r->flags & F_BIAS ? " +b" : "", r->flags & F_ACC ? " +res" : "");
        break;
    case OP_LINMAP:
        snprintf(s, n, "N%lld HW%lld C%lld O%lld %s%s%s%s", (long long)p[0], (long long)p[1],
                 (long long)p[2], (long long)p[3], r->flags & F_TOK ? "to tok" : "to map", dt,
                 r->flags & F_BIAS ? " +b" : "", r->flags & F_ACC ? " +res" : "");
        break;
    case OP_CONV:
        snprintf(s, n, "N%lld C%lld %lldx%lld O%lld k%lld%s%s%s%s", (long long)p[0], (long long)p[1],
                 (long long)p[2], (long long)p[3], (long long)p[4], (long long)p[5],
                 p[7] != 1 ? " s2" : "", dt, r->flags & F_BIAS ? " +b" : "",
                 r->flags & F_ACC ? " +res" : "");
        break;
    case OP_ATTN:
        snprintf(s, n, "Sq%lld Sk%lld h%lld dh%lld%s", (long long)p[0], (long long)p[1],
                 (long long)p[2], (long long)p[3], r->flags & F_CAUSAL ? " causal" : "");
        break;
    case OP_GN:
        snprintf(s, n, "[%lld,%lld,%lld] G%lld%s", (long long)p[0], (long long)p[1], (long long)p[2],
                 (long long)p[3], r->flags & F_SILU ? " +silu" : "");
        break;
    case OP_LN: case OP_GEGLU: case OP_TEMB:
        snprintf(s, n, "[%lld,%lld]", (long long)p[0], (long long)p[1]);
        break;
    case OP_TRANSPOSE:
        snprintf(s, n, "[%lld,%lld,%lld]", (long long)p[0], (long long)p[1], (long long)p[2]);
        break;
    case OP_UPS: case OP_PAD:
        snprintf(s, n, "[%lld,%lld,%lld,%lld]", (long long)p[0], (long long)p[1], (long long)p[2],
                 (long long)p[3]);
        break;
    case OP_CONCAT:
        snprintf(s, n, "N%lld %lld+%lld HW%lld", (long long)p[0], (long long)p[1], (long long)p[2],
                 (long long)p[3]);
        break;
    case OP_EMBED:
        snprintf(s, n, "n%lld D%lld V%lld%s", (long long)p[0], (long long)p[1], (long long)p[2], dt);
        break;
    default: snprintf(s, n, "n%lld%s", (long long)p[0], r->flags & F_Z ? " +z" : ""); break;
    }
}

typedef struct machine {
    double peak, peak1, bw, bw1; /* GFLOP/s, GB/s: all threads, one thread */
    const char *peak_kind;
} machine;

static int is_flop(const op_rec *r) { return r->flop > 0; }
static double rate(const op_rec *r) { return (is_flop(r) ? r->flop : r->bytes) / r->ms * 1e-6; }
static double pct(const op_rec *r, const machine *m) {
    return 100.0 * rate(r) / (is_flop(r) ? m->peak : m->bw);
}
static double cpu_eff(const op_rec *r, const machine *m) {
    double per_cpu_s = (is_flop(r) ? r->flop : r->bytes) / r->cpu_ms * 1e-6;
    return 100.0 * per_cpu_s / (is_flop(r) ? m->peak1 : m->bw1);
}

static void print_stage(int st, const machine *m) {
    printf("\n== %s: %s ==\n", k_stage[st], k_stage_what[st]);
    printf("%-12s %-34s %5s %9s %9s %9s %8s %8s\n", "op", "shape", "count", "ms", "count*ms",
           "rate", "of peak", "cpu eff");
    double kind_ms[OP_KINDS] = {0}, total = 0;
    for (int k = 0; k < OP_KINDS; k++)
        for (int i = 0; i < g_nrec; i++) {
            const op_rec *r = &g_rec[i];
            if (r->kind != (op_kind)k || !r->count[st] || r->ms <= 0) continue; /* --op */
            char s[80];
            shape_str(r, s, sizeof s);
            double tot = r->count[st] * r->ms;
            kind_ms[k] += tot;
            total += tot;
            printf("%-12s %-34s %5d %9.3f %9.1f %6.1f %-4s %6.1f%% %7.1f%%\n", k_op_name[k], s,
                   r->count[st], r->ms, tot, rate(r), is_flop(r) ? "GF/s" : "GB/s", pct(r, m),
                   cpu_eff(r, m));
        }
    printf("-- %s by op: ", k_stage[st]);
    for (int k = 0; k < OP_KINDS; k++)
        if (kind_ms[k] > 0) printf("%s %.0f ms (%.1f%%)  ", k_op_name[k], kind_ms[k], 100 * kind_ms[k] / total);
    printf("\n-- %s estimate: %.1f ms per call = %.1f GFLOP/s at %.1f GFLOP (%.1f%% of %.1f)\n",
           k_stage[st], total, k_stage_gflop[st] / total * 1e3, k_stage_gflop[st],
           100.0 * k_stage_gflop[st] / total * 1e3 / m->peak, m->peak);
}

static double stage_ms(int st) {
    double t = 0;
    for (int i = 0; i < g_nrec; i++) t += g_rec[i].count[st] * g_rec[i].ms;
    return t;
}

static void json_escape(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
    fputc('"', f);
}

static int write_json(const char *path, const machine *m, int threads, const char *model, int px,
                      const int *want) {
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 0;
    }
    char cpu[256], date[64];
    bm_cpu_model(cpu, sizeof cpu);
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f, "{\n  \"date_utc\": \"%s\",\n  \"cpu\": ", date);
    json_escape(f, cpu);
    fprintf(f, ",\n  \"build\": ");
    json_escape(f, sdc_build_info());
    fprintf(f, ",\n  \"model\": ");
    json_escape(f, model);
    fprintf(f, ",\n  \"image_px\": %d,\n  \"threads\": %d,\n", px, threads);
    fprintf(f, "  \"peak\": {\"kind\": \"%s\", \"gflops\": %.1f, \"gflops_one_thread\": %.1f, "
               "\"copy_gbps\": %.1f, \"copy_gbps_one_thread\": %.1f},\n",
            m->peak_kind, m->peak, m->peak1, m->bw, m->bw1);
    fprintf(f, "  \"ops\": [\n");
    int first = 1;
    for (int i = 0; i < g_nrec; i++) {
        const op_rec *r = &g_rec[i];
        int any = 0;
        for (int st = 0; st < ST_COUNT; st++) any |= want[st] && r->count[st];
        if (!any || r->ms <= 0) continue;
        char s[80];
        shape_str(r, s, sizeof s);
        fprintf(f, "%s    {\"op\": \"%s\", \"shape\": \"%s\", \"params\": [", first ? "" : ",\n",
                k_op_name[r->kind], s);
        first = 0;
        for (int j = 0; j < 10; j++) fprintf(f, "%s%lld", j ? ", " : "", (long long)r->p[j]);
        fprintf(f, "], \"count\": {\"text\": %d, \"unet\": %d, \"vae\": %d}, \"ms\": %.4f, "
                   "\"cpu_ms\": %.4f, ",
                r->count[ST_TEXT], r->count[ST_UNET], r->count[ST_VAE], r->ms, r->cpu_ms);
        if (is_flop(r))
            fprintf(f, "\"gflop\": %.4f, \"gflops\": %.2f, \"pct_peak\": %.2f, ", r->flop * 1e-9,
                    rate(r), pct(r, m));
        else
            fprintf(f, "\"gbytes\": %.5f, \"gbps\": %.2f, \"pct_bw\": %.2f, ", r->bytes * 1e-9,
                    rate(r), pct(r, m));
        fprintf(f, "\"cpu_eff_pct\": %.2f}", cpu_eff(r, m));
    }
    fprintf(f, "\n  ],\n  \"stages\": {");
    first = 1;
    for (int st = 0; st < ST_COUNT; st++) {
        if (!want[st]) continue;
        double t = stage_ms(st);
        fprintf(f, "%s\n    \"%s\": {\"what\": \"%s\", \"est_ms\": %.1f, \"gflop\": %.1f, "
                   "\"gflops\": %.1f, \"pct_peak\": %.2f}",
                first ? "" : ",", k_stage[st], k_stage_what[st], t, k_stage_gflop[st],
                k_stage_gflop[st] / t * 1e3, 100.0 * k_stage_gflop[st] / t * 1e3 / m->peak);
        first = 0;
    }
    fprintf(f, "\n  }\n}\n");
    fclose(f);
    return 1;
}

static int usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--model PATH] [--threads N] [--reps R] [--stage text|unet|vae]\n"
            "          [--json FILE] [--size PX] [--op NAME] [--bf16]\n"
            "          [--backend cpu|opencl] [--device D] [--fp16-activations]\n",
            argv0);
    return 2;
}

int main(int argc, char **argv) {
    const char *model = "/tmp/fs/sd14-standin", *json = NULL, *only_op = NULL;
    int bf16 = 0, opencl = 0, fp16_act = 0;
    const char *device = NULL;
    int threads = 0, reps = 3, px = 512, want[ST_COUNT] = {1, 1, 1}, npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) model = v, i++;
        else if (!strcmp(a, "--threads") && v) threads = atoi(v), i++;
        else if (!strcmp(a, "--reps") && v) reps = atoi(v), i++;
        else if (!strcmp(a, "--json") && v) json = v, i++;
        else if (!strcmp(a, "--size") && v) px = atoi(v), i++;
        else if (!strcmp(a, "--op") && v) only_op = v, i++;
        else if (!strcmp(a, "--bf16")) bf16 = 1;
        else if (!strcmp(a, "--fp16-activations")) fp16_act = 1;
        else if (!strcmp(a, "--device") && v) device = v, i++;
        else if (!strcmp(a, "--backend") && v) {
            if (strcmp(v, "cpu") && strcmp(v, "opencl")) return usage(argv[0]);
            opencl = !strcmp(v, "opencl"), i++;
        }
        else if (!strcmp(a, "--stage") && v) {
            int found = 0;
            for (int st = 0; st < ST_COUNT; st++) {
                if (npos == 0) want[st] = 0;
                if (!strcmp(v, k_stage[st])) want[st] = found = 1;
            }
            if (!found) return usage(argv[0]);
            npos = 1, i++;
        } else return usage(argv[0]);
    }
    if (reps < 1) reps = 1;
    if (px < 64 || px > 4096 || px % 64) {
        fprintf(stderr, "--size must be a multiple of 64 in [64, 4096]\n");
        return 2;
    }
    if (record_model(model, px) != SDC_OK) {
        fprintf(stderr, "cannot load %s: %s\n(bench_ops takes its shapes from a real SD 1.x model; "
                        "give one with --model)\n", model, sdc_last_error());
        return 1;
    }
    if (g_overflow) {
        fprintf(stderr, "more than %d distinct ops\n", MAX_RECS);
        return 1;
    }
    sdc_backend *be = NULL;
    if (opencl) {
        sdc_cl_options o = {device, 1, fp16_act, NULL, 0};
        be = sdc_backend_opencl_create(&o);
        g_device = 1;
    } else {
        be = sdc_backend_cpu_create(threads, 0);
    }
    if (!be) {
        fprintf(stderr, "cannot create the %s backend: %s\n", opencl ? "OpenCL" : "CPU",
                sdc_last_error());
        return 1;
    }
    if (bf16 && sdc_backend_cpu_set_bf16(be, 1) != SDC_OK) {
        fprintf(stderr, "--bf16: %s\n", sdc_last_error());
        be->free(be);
        return 1;
    }
    if (threads <= 0) threads = bm_ncpus();

    char cpu[256];
    bm_cpu_model(cpu, sizeof cpu);
    machine m;
    /* the fp32 peak: the best of the FMA kinds this machine has (on some
     * machines 512-bit FMAs do no more FLOPs per cycle than 256-bit ones) */
    bm_kind pk = bm_best_fp32();
    m.peak = bm_peak_gflops(pk, threads), m.peak1 = bm_peak_gflops(pk, 1);
    if (pk == BM_FP32_AVX512) {
        double p2 = bm_peak_gflops(BM_FP32_AVX2, threads);
        if (p2 > m.peak) pk = BM_FP32_AVX2, m.peak = p2, m.peak1 = bm_peak_gflops(pk, 1);
    }
    m.peak_kind = bm_kind_name(pk);
    m.bw = bm_bandwidth(BM_COPY, threads), m.bw1 = bm_bandwidth(BM_COPY, 1);
    if (opencl) {
        /* the device's own: an FMA chain and a copy kernel (opencl.h) */
        double gf = 0, gb = 0;
        if (sdc_opencl_peak(be, &gf, &gb) != SDC_OK) {
            fprintf(stderr, "cannot measure the device's peak: %s\n", sdc_last_error());
            be->free(be);
            return 1;
        }
        m.peak = m.peak1 = gf, m.bw = m.bw1 = gb;
        m.peak_kind = "device fp32 FMA";
    }
    printf("%s\nbackend: %s; cpu: %s; features: %s\n", sdc_build_info(), be->name, cpu,
           sdc_cpu_features_str());
    printf("model shapes from %s, image %dx%d; %d threads, best of %d\n", model, px, px,
           threads, reps);
    printf("peak: %s %.1f GFLOP/s (%d threads), %.1f (1 thread); copy %.1f GB/s (%d threads), "
           "%.1f (1 thread)\n",
           m.peak_kind, m.peak, threads, m.peak1, m.bw, threads, m.bw1);

    for (int i = 0; i < g_nrec; i++) {
        op_rec *r = &g_rec[i];
        int any = 0;
        for (int st = 0; st < ST_COUNT; st++) any |= want[st] && r->count[st];
        if (only_op && strcmp(k_op_name[r->kind], only_op)) any = 0;
        if (any && !time_op(be, r, reps)) {
            char s[80];
            shape_str(r, s, sizeof s);
            fprintf(stderr, "out of memory timing %s %s\n", k_op_name[r->kind], s);
            be->free(be);
            return 1;
        }
    }
    for (int st = 0; st < ST_COUNT; st++)
        if (want[st]) print_stage(st, &m);
    if (want[ST_UNET] && want[ST_VAE] && want[ST_TEXT]) {
        double img = 2 * stage_ms(ST_TEXT) + 20 * stage_ms(ST_UNET) + stage_ms(ST_VAE);
        printf("\n-- image estimate (2 text + 20 UNet steps + 1 decode): %.1f s\n", img * 1e-3);
    }
    be->free(be);
    if (json && !write_json(json, &m, threads, model, px, want)) return 1;
    return 0;
}
