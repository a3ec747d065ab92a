/* bench_taesd: TAESD (models/taesd.h) against the full VAE, whole passes on
 * the CPU backend.
 *
 *   bench_taesd [--taesd PATH] [--vae PATH] [--threads N] [--reps R] [--size PX]
 *               [--no-vae] [--profile]
 *
 * Defaults: the full-size stand-ins (scripts/make_fixtures.py --full-size
 * /tmp/fs): /tmp/fs/taesd (madebyollin/taesd's config, random fp16
 * weights) and the VAE of /tmp/fs/sd14-standin.safetensors; 2 threads;
 * a PX x PX image (default 512: latent 64x64), batch 1.  Timed:
 *   taesd decode   latent -> image (sdc_taesd_decode, its host copies included)
 *   taesd encode   image -> latent (sdc_taesd_encode)
 *   vae decode     latent -> image (sdc_vae_decode, with the pipeline's copy in
 *                  and out)
 * Each: a first pass (weights mapped in, caches cold) apart, then the best of
 * R (default 3; the VAE's 1, at ~18x TAESD's FLOPs) by wall clock.  FLOPs
 * are counted from the ops a planning pass issues (2 per multiply-add:
 * conv 2*N*O*Ho*Wo*C*kh*kw, linear 2*M*N*K, attention 4*Sq*Sk*heads*dh);
 * GFLOP/s divides them by the best time (Winograd convolutions do fewer
 * multiplications than they are counted for, so this can pass the FMA
 * peak).  Arena: the activation memory each pass plans.  --profile: the
 * backend wrapped by the profiler (backend.h; it syncs around every op, so
 * times grow a little), its table of the timed passes after each kind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "core/arena.h"
#include "io/model_files.h"
#include "machine.h"
#include "models/models.h"
#include "models/taesd.h"

#define MAX_REPS 100

/* ---- FLOPs, counted by a null backend ------------------------------------------ */

static double g_flop;

static void c_linear(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                     const sdc_weight *b, const float *acc, int M, int N, int K) {
    (void)be, (void)y, (void)x, (void)W, (void)b, (void)acc;
    g_flop += 2.0 * M * N * K;
}
static void c_linear_map(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                         const sdc_weight *b, const float *acc, int N, int HW, int C, int O,
                         int to_tokens) {
    (void)be, (void)y, (void)x, (void)W, (void)b, (void)acc, (void)to_tokens;
    g_flop += 2.0 * N * HW * C * O;
}
static void c_conv2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                     const sdc_weight *w, const sdc_weight *b, int O, int kh, int kw, int stride,
                     int pad, const float *acc) {
    (void)be, (void)y, (void)x, (void)w, (void)b, (void)acc;
    const double Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    g_flop += 2.0 * N * O * Ho * Wo * C * kh * kw;
}
static void c_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                        const float *k, const float *v, int kv_stride, int Sq, int Sk, int heads,
                        int dh, float scale, int causal) {
    (void)be, (void)out, (void)q, (void)q_stride, (void)k, (void)v, (void)kv_stride;
    (void)scale;
    g_flop += 4.0 * Sq * Sk * heads * dh * (causal ? 0.5 : 1.0);
}

static sdc_backend *counting_backend(void) {
    static sdc_backend b;
    b = *sdc_backend_null();
    b.name = "counting";
    b.linear = c_linear, b.linear_map = c_linear_map, b.conv2d = c_conv2d;
    b.attention = c_attention;
    return &b;
}

/* ---- the passes -------------------------------------------------------------------- */

typedef enum { TAESD_DECODE, TAESD_ENCODE, VAE_DECODE } pass_kind;
static const char *const k_pass[] = {"taesd decode", "taesd encode", "vae decode"};

typedef struct job {
    pass_kind kind;
    const sdc_taesd *taesd;
    const sdc_vae *vae;
    int px, f;
    float *in, *out; /* host: the latent or the image */
    float *din, *dout; /* the VAE's, in the arena */
} job;

static sdc_status run(const job *j, sdc_backend *be, sdc_arena *a) {
    const int h = j->px / j->f;
    switch (j->kind) {
    case TAESD_DECODE: return sdc_taesd_decode(j->taesd, be, a, j->in, 1, h, h, j->out);
    case TAESD_ENCODE: return sdc_taesd_encode(j->taesd, be, a, j->in, 1, j->px, j->px, j->out);
    case VAE_DECODE: {
        const sdc_vae_config *c = sdc_vae_cfg(j->vae);
        const int64_t nz = (int64_t)c->latent_channels * h * h;
        const int64_t ni = (int64_t)c->out_channels * j->px * j->px;
        if (!a->planning) be->copy_in(be, j->din, j->in, nz);
        sdc_vae_decode(j->vae, be, a, j->din, 1, h, h, j->dout);
        if (!a->planning) be->copy_out(be, j->out, j->dout, ni);
        return SDC_OK;
    }
    }
    return SDC_ERR_INTERNAL;
}

/* Plans, commits and times R passes (after a first one); 0 on success. */
static int bench(job *j, sdc_backend *be, int reps) {
    const size_t nlat = (size_t)4 * (j->px / j->f) * (j->px / j->f), nimg = (size_t)3 * j->px * j->px;
    const int decode = j->kind != TAESD_ENCODE;
    j->in = malloc((decode ? nlat : nimg) * sizeof *j->in);
    j->out = malloc((decode ? nimg : nlat) * sizeof *j->out);
    sdc_arena a;
    memset(&a, 0, sizeof a);
    int rc = 1;
    if (!j->in || !j->out) goto done;
    for (size_t i = 0, n = decode ? nlat : nimg; i < n; i++)
        j->in[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    /* plan, counting the FLOPs; the VAE's latent and image live in the arena */
    g_flop = 0;
    sdc_arena_plan(&a);
    if (j->kind == VAE_DECODE) j->din = sdc_arena_alloc(&a, nlat), j->dout = sdc_arena_alloc(&a, nimg);
    sdc_status st = run(j, counting_backend(), &a);
    if (st == SDC_OK && !a.overflow) st = sdc_arena_commit(&a, 0);
    if (st != SDC_OK || a.overflow) {
        fprintf(stderr, "%s: %s\n", k_pass[j->kind], sdc_last_error());
        goto done;
    }
    const size_t arena = a.size;
    const double flop = g_flop;
    if (j->kind == VAE_DECODE) j->din = sdc_arena_alloc(&a, nlat), j->dout = sdc_arena_alloc(&a, nimg);
    const size_t mark = sdc_arena_mark(&a);
    double best = 1e30, first = 0;
    sdc_backend_profile_stage(be, k_pass[j->kind]);
    for (int r = -1; r < reps; r++) {
        sdc_backend_profile_report(be, NULL, 1); /* the table: the timed passes only */
        double t0 = bm_now();
        st = run(j, be, &a);
        if (st == SDC_OK) st = be->sync(be);
        double ms = (bm_now() - t0) * 1e3;
        sdc_arena_reset(&a, mark);
        if (st != SDC_OK) {
            fprintf(stderr, "%s: %s\n", k_pass[j->kind], sdc_last_error());
            goto done;
        }
        if (r < 0) first = ms;
        else if (ms < best) best = ms;
    }
    printf("%-13s %9.1f ms  %8.1f GFLOP  %7.1f GFLOP/s  first %9.1f ms  arena %6.1f MiB\n",
           k_pass[j->kind], best, flop * 1e-9, flop * 1e-9 / best * 1e3, first,
           arena / 1048576.0);
    fflush(stdout);
    sdc_backend_profile_report(be, stdout, 1); /* a profiler's table; nothing otherwise */
    rc = 0;
done:
    sdc_arena_free(&a);
    free(j->in), free(j->out);
    j->in = j->out = NULL;
    return rc;
}

static int usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--taesd PATH] [--vae PATH] [--threads N] [--reps R] [--size PX]\n"
            "       [--no-vae] [--profile]\n"
            "  defaults /tmp/fs/taesd, /tmp/fs/sd14-standin.safetensors, 2 threads, R = 3\n"
            "  (at most %d), PX = 512 (a multiple of 64 in [64, 2048])\n",
            argv0, MAX_REPS);
    return 2;
}

int main(int argc, char **argv) {
    const char *taesd_path = "/tmp/fs/taesd", *vae_path = "/tmp/fs/sd14-standin.safetensors";
    int threads = 2, reps = 3, px = 512, with_vae = 1, profile = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--taesd") && v) taesd_path = v, i++;
        else if (!strcmp(a, "--vae") && v) vae_path = v, i++;
        else if (!strcmp(a, "--threads") && v) threads = atoi(v), i++;
        else if (!strcmp(a, "--reps") && v) reps = atoi(v), i++;
        else if (!strcmp(a, "--size") && v) px = atoi(v), i++;
        else if (!strcmp(a, "--no-vae")) with_vae = 0;
        else if (!strcmp(a, "--profile")) profile = 1;
        else return usage(argv[0]);
    }
    if (threads < 1 || reps < 1 || reps > MAX_REPS || px < 64 || px > 2048 || px % 64)
        return usage(argv[0]);

    sdc_taesd *taesd = NULL;
    sdc_model_files *mf = NULL;
    sdc_vae *vae = NULL;
    sdc_backend *be = NULL;
    int rc = 1;
    sdc_status st = sdc_taesd_open(taesd_path, &taesd);
    if (st != SDC_OK) {
        fprintf(stderr, "cannot open %s: %s\n", taesd_path, sdc_last_error());
        goto done;
    }
    if (with_vae) {
        st = sdc_model_files_open(vae_path, &mf);
        if (st == SDC_OK) st = sdc_vae_create(mf, &vae);
        if (st != SDC_OK) {
            fprintf(stderr, "cannot load the VAE of %s: %s\n", vae_path, sdc_last_error());
            goto done;
        }
    }
    be = sdc_backend_cpu_create(threads, 0);
    if (be && profile) {
        sdc_backend *p = sdc_backend_profile_wrap(be);
        if (!p) be->free(be);
        be = p;
    }
    if (!be) {
        fprintf(stderr, "cannot create the CPU backend: %s\n", sdc_last_error());
        goto done;
    }
    char cpu[256];
    bm_cpu_model(cpu, sizeof cpu);
    const bm_kind pk = bm_best_fp32();
    printf("%s\nbackend: %s; cpu: %s; peak %s %.1f GFLOP/s (%d threads)\n", sdc_build_info(),
           be->name, cpu, bm_kind_name(pk), bm_peak_gflops(pk, threads), threads);
    printf("%dx%d image, latent %dx%d, batch 1; TAESD %s, VAE %s; best of %d (VAE: 1)\n", px, px,
           px / 8, px / 8, taesd_path, with_vae ? vae_path : "(not run)", reps);
    const sdc_taesd_config *tc = sdc_taesd_cfg(taesd);
    job j = {TAESD_DECODE, taesd, vae, px, tc->dec_factor, NULL, NULL, NULL, NULL};
    if (!tc->has_decoder) {
        fprintf(stderr, "%s holds no decoder\n", taesd_path);
        goto done;
    }
    if (bench(&j, be, reps)) goto done;
    j.kind = TAESD_ENCODE, j.f = tc->enc_factor;
    if (tc->has_encoder && bench(&j, be, reps)) goto done;
    if (with_vae) {
        j.kind = VAE_DECODE, j.f = 1 << (sdc_vae_cfg(vae)->levels - 1);
        if (bench(&j, be, 1)) goto done;
    }
    rc = 0;
done:
    if (be) be->free(be);
    sdc_taesd_free(taesd);
    sdc_vae_free(vae);
    sdc_model_files_close(mf);
    return rc;
}
