/* The profiling backend (backend.h): forwards every op to an inner backend
 * and adds up the wall time of each (stage, op, shape).  The pipeline wraps
 * its backend in one when SDC_PROFILE is set and prints the table after each
 * generation, so that the time of the real pipeline can be read per op and
 * set beside bench_ops' figures for the same shapes.
 *
 * Each op is timed alone with CLOCK_MONOTONIC: the inner backend is synced
 * before the op (so earlier queued work is not counted) and after it (so a
 * device's op is counted to its end, not to its enqueue).  A failure such a
 * sync reports is kept and returned by the profiler's own sync, so timing
 * never swallows an error.  On the CPU the cost is two clock reads, two
 * no-op syncs and one table lookup per op (a few hundred ns against ops of
 * tens of microseconds and up). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "core/error.h"

#define PROF_SLOTS 1024 /* distinct (stage, op, shape) keys; power of two */
#define PROF_KEY 96

typedef struct prof_entry {
    char key[PROF_KEY]; /* "op\tshape"; empty: free slot */
    int stage;
    int64_t calls;
    double seconds;
    double gflop; /* per call; 0 where not counted */
} prof_entry;

typedef struct prof {
    sdc_backend *inner;
    sdc_status err;    /* the first failure a timing sync saw, until p_sync */
    char err_msg[512];
    char stages[8][16];
    int nstages, stage;
    int overflow; /* keys that found no slot (counted under "other") */
    prof_entry e[PROF_SLOTS];
} prof;

static const char prof_name[] = "profile";

static double prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t prof_hash(const char *s, int stage) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)stage;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void prof_add(sdc_backend *be, const char *key, double seconds, double gflop) {
    prof *p = be->impl;
    uint64_t h = prof_hash(key, p->stage);
    for (int i = 0; i < PROF_SLOTS; i++) {
        prof_entry *e = &p->e[(h + (uint64_t)i) & (PROF_SLOTS - 1)];
        if (!e->key[0]) {
            snprintf(e->key, sizeof e->key, "%s", key);
            e->stage = p->stage;
            e->gflop = gflop;
        } else if (e->stage != p->stage || strcmp(e->key, key) != 0) {
            continue;
        }
        e->calls++;
        e->seconds += seconds;
        return;
    }
    p->overflow++;
}

static const char *wdt(const sdc_weight *w) {
    if (!w) return "-";
    switch (w->dtype) {
    case SDC_DT_F16: return "f16";
    case SDC_DT_BF16: return "bf16";
    default: return "f32";
    }
}

#define INNER(be) (((prof *)(be)->impl)->inner)

/* Waits for the inner backend's queue, keeping a failure for p_sync. */
static void prof_wait(sdc_backend *be) {
    prof *p = be->impl;
    sdc_status st = p->inner->sync(p->inner);
    if (st != SDC_OK && p->err == SDC_OK) {
        p->err = st;
        snprintf(p->err_msg, sizeof p->err_msg, "%s", sdc_last_error());
    }
}

static double prof_start(sdc_backend *be) {
    prof_wait(be);
    return prof_now();
}

static double prof_stop(sdc_backend *be, double t0) {
    prof_wait(be);
    return prof_now() - t0;
}

static void p_linear(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                     const sdc_weight *b, const float *acc, int M, int N, int K) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->linear(in, y, x, W, b, acc, M, N, K);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "linear\tM%d N%d K%d %s%s%s", M, N, K, wdt(W), b ? " +b" : "",
             acc ? " +acc" : "");
    prof_add(be, k, t, 2e-9 * M * N * K);
}

static void p_linear_map(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                         const sdc_weight *b, const float *acc, int N, int HW, int C, int O,
                         int to_tokens) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->linear_map(in, y, x, W, b, acc, N, HW, C, O, to_tokens);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "linear_map\tN%d HW%d C%d O%d %s %s%s%s", N, HW, C, O,
             to_tokens ? "to tokens" : "to map", wdt(W), b ? " +b" : "", acc ? " +acc" : "");
    prof_add(be, k, t, 2e-9 * N * HW * (double)C * O);
}

static void p_conv2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                     const sdc_weight *w, const sdc_weight *b, int O, int kh, int kw,
                     int stride, int pad, const float *acc) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->conv2d(in, y, x, N, C, H, W, w, b, O, kh, kw, stride, pad, acc);
    t = prof_stop(be, t);
    int Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    char k[PROF_KEY];
    snprintf(k, sizeof k, "conv2d\tN%d C%d %dx%d O%d k%d s%d %s%s%s", N, C, H, W, O, kh,
             stride, wdt(w), b ? " +b" : "", acc ? " +acc" : "");
    prof_add(be, k, t, 2e-9 * N * O * Ho * Wo * (double)C * kh * kw);
}

static void p_group_norm(sdc_backend *be, float *y, const float *x, const float *add, int N, int C,
                         int HW, int G, const sdc_weight *gamma, const sdc_weight *beta, float eps,
                         int silu) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->group_norm(in, y, x, add, N, C, HW, G, gamma, beta, eps, silu);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "group_norm\t[%d,%d,%d] G%d%s%s%s", N, C, HW, G, add ? " +add" : "",
             silu ? " silu" : "", y == x ? " inplace" : "");
    prof_add(be, k, t, 0);
}

static void p_layer_norm(sdc_backend *be, float *y, const float *x, int rows, int D,
                         const sdc_weight *gamma, const sdc_weight *beta, float eps) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->layer_norm(in, y, x, rows, D, gamma, beta, eps);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "layer_norm\t[%d,%d]", rows, D);
    prof_add(be, k, t, 0);
}

static void p_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                        const float *k, const float *v, int kv_stride, int Sq, int Sk, int heads,
                        int dh, float scale, int causal) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->attention(in, out, q, q_stride, k, v, kv_stride, Sq, Sk, heads, dh, scale, causal);
    t = prof_stop(be, t);
    char key[PROF_KEY];
    snprintf(key, sizeof key, "attention\tSq%d Sk%d h%d dh%d%s", Sq, Sk, heads, dh,
             causal ? " causal" : "");
    prof_add(be, key, t, 4e-9 * Sq * (double)Sk * heads * dh);
}

/* The elementwise and data-movement ops: timed under their name and size. */
#define P_UNARY(NAME)                                                                         \
    static void p_##NAME(sdc_backend *be, float *y, const float *x, int64_t n) {             \
        sdc_backend *in = INNER(be);                                                          \
        double t = prof_start(be);                                                                \
        in->NAME(in, y, x, n);                                                                \
        t = prof_stop(be, t);                                                                   \
        char k[PROF_KEY];                                                                     \
        snprintf(k, sizeof k, #NAME "\tn%lld", (long long)n);                                 \
        prof_add(be, k, t, 0);                                                                \
    }
P_UNARY(silu)
P_UNARY(gelu)
P_UNARY(quick_gelu)
P_UNARY(relu)
P_UNARY(copy)
P_UNARY(copy_in)
P_UNARY(copy_out)

static void p_add(sdc_backend *be, float *y, const float *a, const float *b, int64_t n) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->add(in, y, a, b, n);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "add\tn%lld", (long long)n);
    prof_add(be, k, t, 0);
}

static void p_lerp(sdc_backend *be, float *y, const float *a, const float *b, float s,
                   int64_t n) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->lerp(in, y, a, b, s, n);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "lerp\tn%lld", (long long)n);
    prof_add(be, k, t, 0);
}

static void p_axpby(sdc_backend *be, float *y, float a, const float *x, float b, const float *z,
                    int64_t n) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->axpby(in, y, a, x, b, z, n);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "axpby\tn%lld", (long long)n);
    prof_add(be, k, t, 0);
}

static void p_geglu(sdc_backend *be, float *y, const float *x, int rows, int D) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->geglu(in, y, x, rows, D);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "geglu\t[%d,%d]", rows, D);
    prof_add(be, k, t, 0);
}

static void p_upsample2x(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->upsample2x(in, y, x, N, C, H, W);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "upsample2x\t[%d,%d,%d,%d]", N, C, H, W);
    prof_add(be, k, t, 0);
}

static void p_pad2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                    int top, int bottom, int left, int right) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->pad2d(in, y, x, N, C, H, W, top, bottom, left, right);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "pad2d\t[%d,%d,%d,%d]", N, C, H, W);
    prof_add(be, k, t, 0);
}

static void p_transpose(sdc_backend *be, float *y, const float *x, int N, int H, int W) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->transpose(in, y, x, N, H, W);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "transpose\t[%d,%d,%d]", N, H, W);
    prof_add(be, k, t, 0);
}

static void p_concat(sdc_backend *be, float *y, const float *a, int Ca, const float *b, int Cb,
                     int N, int HW) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->concat(in, y, a, Ca, b, Cb, N, HW);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "concat\tN%d %d+%d HW%d", N, Ca, Cb, HW);
    prof_add(be, k, t, 0);
}

static void p_embed(sdc_backend *be, float *y, const int32_t *ids, int n,
                    const sdc_weight *table, const sdc_weight *pos, int D) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->embed(in, y, ids, n, table, pos, D);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "embed\tn%d D%d", n, D);
    prof_add(be, k, t, 0);
}

static void p_timestep_embed(sdc_backend *be, float *y, const float *tt, int n, int dim) {
    sdc_backend *in = INNER(be);
    double t = prof_start(be);
    in->timestep_embed(in, y, tt, n, dim);
    t = prof_stop(be, t);
    char k[PROF_KEY];
    snprintf(k, sizeof k, "timestep_embed\tn%d dim%d", n, dim);
    prof_add(be, k, t, 0);
}

static sdc_status p_buffer_alloc(sdc_backend *be, size_t bytes, float **base) {
    return INNER(be)->buffer_alloc(INNER(be), bytes, base);
}

static void p_buffer_free(sdc_backend *be, float *base) {
    INNER(be)->buffer_free(INNER(be), base);
}

static void p_weights(sdc_backend *be, const sdc_weight *const *w, int n, sdc_residency r) {
    INNER(be)->weights(INNER(be), w, n, r);
}

static sdc_status p_sync(sdc_backend *be) {
    prof *p = be->impl;
    sdc_status st = p->inner->sync(p->inner);
    if (p->err != SDC_OK) {
        st = sdc_fail(p->err, "%s", p->err_msg);
        p->err = SDC_OK;
    }
    return st;
}

static void p_memory(sdc_backend *be, size_t *now, size_t *peak) {
    sdc_backend *in = INNER(be);
    if (in->memory)
        in->memory(in, now, peak);
    else
        *now = *peak = 0;
}

static void p_free(sdc_backend *be) {
    prof *p = be->impl;
    p->inner->free(p->inner);
    free(p);
    free(be);
}

sdc_backend *sdc_backend_profile_wrap(sdc_backend *inner) {
    sdc_backend *be = calloc(1, sizeof *be);
    prof *p = calloc(1, sizeof *p);
    if (!be || !p) {
        free(be);
        free(p);
        return NULL;
    }
    p->inner = inner;
    be->name = prof_name;
    be->impl = p;
    be->linear = p_linear;
    be->linear_map = p_linear_map;
    be->conv2d = p_conv2d;
    be->group_norm = p_group_norm;
    be->layer_norm = p_layer_norm;
    be->attention = p_attention;
    be->silu = p_silu;
    be->gelu = p_gelu;
    be->quick_gelu = p_quick_gelu;
    be->relu = p_relu;
    be->add = p_add;
    be->lerp = p_lerp;
    be->axpby = p_axpby;
    be->geglu = p_geglu;
    be->upsample2x = p_upsample2x;
    be->pad2d = p_pad2d;
    be->transpose = p_transpose;
    be->concat = p_concat;
    be->copy = p_copy;
    be->copy_in = p_copy_in;
    be->copy_out = p_copy_out;
    be->embed = p_embed;
    be->timestep_embed = p_timestep_embed;
    be->buffer_alloc = p_buffer_alloc;
    be->buffer_free = p_buffer_free;
    be->weights = p_weights;
    be->sync = p_sync;
    be->memory = inner->memory ? p_memory : NULL;
    be->free = p_free;
    return be;
}

static prof *as_prof(sdc_backend *be) {
    return be && be->name == prof_name ? (prof *)be->impl : NULL;
}

sdc_backend *sdc_backend_profile_inner(sdc_backend *be) {
    prof *p = as_prof(be);
    return p ? p->inner : be;
}

void sdc_backend_profile_stage(sdc_backend *be, const char *stage) {
    prof *p = as_prof(be);
    if (!p) return;
    for (int i = 0; i < p->nstages; i++)
        if (strcmp(p->stages[i], stage) == 0) {
            p->stage = i;
            return;
        }
    if (p->nstages == (int)(sizeof p->stages / sizeof p->stages[0])) return; /* keep the last */
    snprintf(p->stages[p->nstages], sizeof p->stages[0], "%s", stage);
    p->stage = p->nstages++;
}

static int by_stage_then_time(const void *a, const void *b) {
    const prof_entry *x = *(prof_entry *const *)a, *y = *(prof_entry *const *)b;
    if (x->stage != y->stage) return x->stage < y->stage ? -1 : 1;
    return x->seconds > y->seconds ? -1 : x->seconds < y->seconds ? 1 : strcmp(x->key, y->key);
}

void sdc_backend_profile_report(sdc_backend *be, FILE *f, int reset) {
    prof *p = as_prof(be);
    if (!p) return;
    if (!f) { /* clear only */
        memset(p->e, 0, sizeof p->e);
        p->overflow = 0;
        return;
    }
    prof_entry *rows[PROF_SLOTS];
    int n = 0;
    for (int i = 0; i < PROF_SLOTS; i++)
        if (p->e[i].key[0]) rows[n++] = &p->e[i];
    qsort(rows, (size_t)n, sizeof rows[0], by_stage_then_time);
    fprintf(f, "profile (SDC_PROFILE): wall time of each op, by stage; GFLOP/s where counted\n");
    for (int s = 0, i = 0; s < p->nstages; s++) {
        double total = 0;
        for (int j = i; j < n && rows[j]->stage == s; j++) total += rows[j]->seconds;
        fprintf(f, "%-6s %-14s %-40s %7s %11s %9s %8s %6s\n", p->stages[s], "op", "shape", "calls",
                "total ms", "ms/call", "GFLOP/s", "share");
        /* per op kind */
        char kinds[32][PROF_KEY];
        double ksec[32];
        int nk = 0;
        for (; i < n && rows[i]->stage == s; i++) {
            prof_entry *e = rows[i];
            char op[PROF_KEY];
            snprintf(op, sizeof op, "%s", e->key);
            char *tab = strchr(op, '\t');
            const char *shape = "";
            if (tab) {
                *tab = 0;
                shape = e->key + (tab - op) + 1;
            }
            double ms = 1e3 * e->seconds;
            char gf[16] = "";
            if (e->gflop > 0 && e->seconds > 0)
                snprintf(gf, sizeof gf, "%.0f", e->gflop * (double)e->calls / e->seconds);
            fprintf(f, "%-6s %-14s %-40s %7lld %11.1f %9.3f %8s %5.1f%%\n", p->stages[s], op,
                    shape, (long long)e->calls, ms, ms / (double)e->calls, gf,
                    total > 0 ? 100.0 * e->seconds / total : 0.0);
            int k = 0;
            while (k < nk && strcmp(kinds[k], op) != 0) k++;
            if (k == nk && nk < 32) {
                snprintf(kinds[nk], sizeof kinds[nk], "%s", op);
                ksec[nk++] = 0;
            }
            if (k < nk) ksec[k] += e->seconds;
        }
        for (int k = 0; k < nk; k++)
            fprintf(f, "%-6s %-14s %-40s %7s %11.1f %9s %8s %5.1f%%\n", p->stages[s], kinds[k],
                    "(all shapes)", "", 1e3 * ksec[k], "", "",
                    total > 0 ? 100.0 * ksec[k] / total : 0.0);
        fprintf(f, "%-6s %-14s %-40s %7s %11.1f\n", p->stages[s], "(all ops)", "", "", 1e3 * total);
    }
    if (p->overflow) fprintf(f, "profile: %d op calls had no table slot and are not shown\n", p->overflow);
    if (reset) {
        memset(p->e, 0, sizeof p->e);
        p->overflow = 0;
    }
}
