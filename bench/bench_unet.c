/* bench_unet: whole UNet passes, timed one by one, as the sampling loop runs
 * them (the op-by-op table is bench_ops).
 *
 *   bench_unet --model PATH [--threads N] [--passes P] [--size PX] [--distinct]
 *              [--json FILE]
 *
 * One pass = one sampling step with CFG: batch 2, a (PX/8)x(PX/8) latent, a
 * 77-token context whose cross-attention keys and values are made once
 * beforehand (as the pipeline does), t = 500, the two rows sharing one
 * latent as CFG's do (sdc_unet_forward's shared; --distinct: two latents,
 * every op on both rows).  Inputs are fixed
 * pseudo-random numbers (speed does not depend on them).  A first pass
 * (weights mapped in, caches cold) is timed apart; then P passes.  Each
 * pass's operands come and go through memory the way they do in a run of
 * the program, unlike bench_ops, which repeats each op on the same buffers;
 * the host's noise shows as the spread between the minimum and the median.
 * At 512x512 the passes are also given as GFLOP/s counted at the issue's
 * 1606.5 GFLOP per step, and as a fraction of the measured FMA peak. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "core/arena.h"
#include "io/model_files.h"
#include "machine.h"
#include "models/models.h"

#define UNET_GFLOP_512 1606.5 /* ../shared/TARGETS.md: one CFG step at 512x512 */
#define MAX_PASSES 1000

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s --model PATH [--threads N] [--passes P] [--size PX] [--distinct]\n"
            "       [--json FILE]\n"
            "  P UNet passes (default 5, at most %d) after a first one timed apart;\n"
            "  PX a multiple of 64 in [64, 2048] (default 512); --distinct: the two rows\n"
            "  with their own latents (no work shared before the prompt enters)\n",
            argv0, MAX_PASSES);
    return 2;
}

int main(int argc, char **argv) {
    const char *model = NULL, *json = NULL;
    int threads = 0, passes = 5, px = 512, shared = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) model = v, i++;
        else if (!strcmp(a, "--threads") && v) threads = atoi(v), i++;
        else if (!strcmp(a, "--passes") && v) passes = atoi(v), i++;
        else if (!strcmp(a, "--size") && v) px = atoi(v), i++;
        else if (!strcmp(a, "--json") && v) json = v, i++;
        else if (!strcmp(a, "--distinct")) shared = 0;
        else return usage(argv[0]);
    }
    if (!model || passes < 1 || passes > MAX_PASSES || px < 64 || px > 2048 || px % 64 ||
        threads < 0)
        return usage(argv[0]);

    sdc_model_files *mf = NULL;
    sdc_unet *unet = NULL;
    sdc_status st = sdc_model_files_open(model, &mf);
    if (st == SDC_OK) st = sdc_unet_create(mf, &unet);
    if (st != SDC_OK) {
        fprintf(stderr, "cannot load %s: %s\n", model, sdc_last_error());
        sdc_model_files_close(mf);
        return 1;
    }
    const sdc_unet_config *c = sdc_unet_cfg(unet);
    enum { N = 2, S = 77 };
    const int h = px / 8, w = px / 8;
    const size_t nx = (size_t)N * c->in_channels * h * w, nc = (size_t)N * S * c->cross_dim;
    const size_t no = (size_t)N * c->out_channels * h * w, nkv = sdc_unet_context_floats(unet, N, S);
    const float t[N] = {500, 500};

    /* activation memory planned by a pass against the null backend, as the
     * pipeline plans it */
    sdc_arena a;
    memset(&a, 0, sizeof a);
    sdc_arena_plan(&a);
    float *x = sdc_arena_alloc(&a, nx), *ctx = sdc_arena_alloc(&a, nc);
    float *kv = sdc_arena_alloc(&a, nkv), *out = sdc_arena_alloc(&a, no);
    size_t mark = sdc_arena_mark(&a);
    sdc_unet_forward(unet, sdc_backend_null(), &a, x, N, shared, h, w, t, NULL, ctx, S, kv, out);
    sdc_arena_reset(&a, 0);
    sdc_backend *be = NULL;
    float *host = malloc((nx > nc ? nx : nc) * sizeof *host);
    int rc = 1;
    if (a.overflow || sdc_arena_commit(&a, 0) != SDC_OK || !host) {
        fprintf(stderr, "out of memory for the activations\n");
        goto done;
    }
    x = sdc_arena_alloc(&a, nx), ctx = sdc_arena_alloc(&a, nc);
    kv = sdc_arena_alloc(&a, nkv), out = sdc_arena_alloc(&a, no);
    mark = sdc_arena_mark(&a);
    be = sdc_backend_cpu_create(threads, 0);
    if (!be) {
        fprintf(stderr, "cannot create the CPU backend: %s\n", sdc_last_error());
        goto done;
    }
    if (threads <= 0) threads = bm_ncpus();
    for (size_t i = 0; i < nx; i++) host[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    be->copy_in(be, x, host, (int64_t)nx);
    for (size_t i = 0; i < nc; i++) host[i] = (float)((i * 104729) % 1000) / 500.0f - 1.0f;
    be->copy_in(be, ctx, host, (int64_t)nc);
    sdc_unet_context(unet, be, ctx, N, S, kv);

    char cpu[256];
    bm_cpu_model(cpu, sizeof cpu);
    bm_kind pk = bm_best_fp32();
    double peak = bm_peak_gflops(pk, threads);
    printf("%s\nbackend: %s; cpu: %s; peak %s %.1f GFLOP/s (%d threads)\n", sdc_build_info(),
           be->name, cpu, bm_kind_name(pk), peak, threads);
    printf("model %s, %dx%d (latent %dx%d), batch 2 (CFG, %s), %d passes after a first\n",
           model, px, px, w, h, shared ? "one latent" : "two latents", passes);

    double ms[MAX_PASSES], first = 0;
    for (int p = -1; p < passes; p++) {
        double t0 = bm_now();
        sdc_unet_forward(unet, be, &a, x, N, shared, h, w, t, NULL, ctx, S, kv, out);
        double dt = (bm_now() - t0) * 1e3;
        sdc_arena_reset(&a, mark);
        if (p < 0) {
            first = dt;
            printf("first pass  %9.1f ms\n", dt);
            continue;
        }
        ms[p] = dt;
        if (px == 512)
            printf("pass %-4d   %9.1f ms  %6.1f GFLOP/s counted\n", p + 1, dt,
                   UNET_GFLOP_512 / dt * 1e3);
        else
            printf("pass %-4d   %9.1f ms\n", p + 1, dt);
    }
    double sorted[MAX_PASSES], mean = 0;
    memcpy(sorted, ms, (size_t)passes * sizeof *ms);
    qsort(sorted, (size_t)passes, sizeof *sorted, cmp_double);
    for (int p = 0; p < passes; p++) mean += ms[p] / passes;
    const double mn = sorted[0], med = passes % 2 ? sorted[passes / 2]
                                                  : 0.5 * (sorted[passes / 2 - 1] + sorted[passes / 2]);
    printf("-- UNet pass: min %.1f ms, median %.1f, mean %.1f, max %.1f", mn, med, mean,
           sorted[passes - 1]);
    if (px == 512)
        printf("; counted %.1f GFLOP/s at the median (%.1f%% of peak), %.1f at the min\n",
               UNET_GFLOP_512 / med * 1e3, UNET_GFLOP_512 / med * 1e3 / peak * 100,
               UNET_GFLOP_512 / mn * 1e3);
    else
        printf("\n");
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            fprintf(stderr, "cannot write %s\n", json);
            goto done;
        }
        fprintf(f, "{\n  \"build\": \"%s\",\n  \"threads\": %d,\n  \"image_px\": %d,\n", sdc_build_info(),
                threads, px);
        fprintf(f, "  \"rows_share_latent\": %s,\n", shared ? "true" : "false");
        fprintf(f, "  \"peak_gflops\": %.1f,\n  \"first_ms\": %.1f,\n  \"pass_ms\": [", peak, first);
        for (int p = 0; p < passes; p++) fprintf(f, "%s%.1f", p ? ", " : "", ms[p]);
        fprintf(f, "],\n  \"min_ms\": %.1f,\n  \"median_ms\": %.1f,\n  \"mean_ms\": %.1f", mn, med, mean);
        if (px == 512) fprintf(f, ",\n  \"median_gflops_counted\": %.1f", UNET_GFLOP_512 / med * 1e3);
        fprintf(f, "\n}\n");
        if (fclose(f) != 0) {
            fprintf(stderr, "cannot write %s\n", json);
            goto done;
        }
    }
    rc = 0;
done:
    if (be) be->free(be);
    free(host);
    sdc_arena_free(&a);
    sdc_unet_free(unet);
    sdc_model_files_close(mf);
    return rc;
}
