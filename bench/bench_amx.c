/* bench_amx: the bf16 mode's GEMM (AMX tiles where the CPU has them) on the
 * SD 1.x UNet's linear layers at 512x512 with CFG, against the fp32 mode on
 * the same backend and the measured peaks; no model file needed.
 *
 *   bench_amx [--threads N] [--reps R (default 5)] [--emulate] [--json FILE]
 *
 * Shapes (tokens M = 2 images x pixels; K in, N out; count per UNet step):
 * the attention projections, GEGLU and FF layers of the 16 transformer
 * blocks (5 at 64x64, 5 at 32x32, 5 at 16x16, 1 at 8x8) and the
 * cross-attention keys/values (M = 2 x 77).  Each is timed on random data
 * (F16 weights with bias): one warm-up call, then the best of R, wall
 * clock.  Columns: ms and GFLOP/s (2*M*N*K) for bf16 and fp32, bf16's
 * fraction of the TDPBF16PS peak (bench_peak's loop: 4 tiles accumulating,
 * no loads) and of the fp32 FMA peak, and count x ms summed per step.
 * --emulate runs the AMX kernel on emulated tiles (SDC_AMX=emulate: slow;
 * on 1/32 of the rows, once, no fp32: it checks that the program runs,
 * not the speed).  Without AMX and
 * without --emulate the bf16 mode is whatever the CPU offers (AVX512_BF16)
 * or the program says why not and exits 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/cpu/amx_tile.h"
#include "backends/cpu/cpu_features.h"
#include "core/error.h"
#include "machine.h"

typedef struct shape {
    const char *what;
    int M, N, K, count;
} shape;

static const shape k_shapes[] = {
    /* per block: self q, k, v, out; cross q, out; proj_in, proj_out */
    {"64x64 attn q/k/v/out, proj", 8192, 320, 320, 5 * 8},
    {"64x64 GEGLU proj", 8192, 2560, 320, 5},
    {"64x64 FF out", 8192, 320, 1280, 5},
    {"32x32 attn q/k/v/out, proj", 2048, 640, 640, 5 * 8},
    {"32x32 GEGLU proj", 2048, 5120, 640, 5},
    {"32x32 FF out", 2048, 640, 2560, 5},
    {"16x16 attn q/k/v/out, proj", 512, 1280, 1280, 5 * 8},
    {"16x16 GEGLU proj", 512, 10240, 1280, 5},
    {"16x16 FF out", 512, 1280, 5120, 5},
    {"8x8 (mid) attn, proj", 128, 1280, 1280, 8},
    {"8x8 (mid) GEGLU proj", 128, 10240, 1280, 1},
    {"8x8 (mid) FF out", 128, 1280, 5120, 1},
    {"cross-attn k/v 320", 154, 320, 768, 5 * 2},
    {"cross-attn k/v 640", 154, 640, 768, 5 * 2},
    {"cross-attn k/v 1280", 154, 1280, 768, 6 * 2},
};

static double time_linear(sdc_backend *be, const shape *s, const float *x, const sdc_weight *W,
                          const sdc_weight *b, float *y, int reps) {
    be->linear(be, y, x, W, b, NULL, s->M, s->N, s->K); /* warm-up */
    double best = 1e300;
    for (int r = 0; r < reps; r++) {
        double t0 = bm_now();
        be->linear(be, y, x, W, b, NULL, s->M, s->N, s->K);
        double t = bm_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    int threads = bm_ncpus(), reps = 5, emulate = 0;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else if (!strcmp(argv[i], "--emulate"))
            emulate = 1;
        else {
            fprintf(stderr, "usage: %s [--threads N] [--reps R] [--emulate] [--json FILE]\n",
                    argv[0]);
            return 2;
        }
    }
    if (threads < 1 || threads > 256) threads = bm_ncpus();
    if (reps < 1) reps = 1;
    if (emulate) setenv("SDC_AMX", "emulate", 1);
    sdc_backend *be = sdc_backend_cpu_create(threads, 0);
    if (!be || sdc_backend_cpu_set_bf16(be, 1) != SDC_OK) {
        fprintf(stderr, "bench_amx: %s\n", sdc_last_error());
        return 1;
    }
    char model[256];
    bm_cpu_model(model, sizeof model);
    const double amx_peak = sdc_amx_hw_ready(NULL, 0) ? bm_peak_gflops(BM_AMX_BF16, threads) : 0;
    const bm_kind pk = bm_best_fp32();
    const double fp32_peak = bm_peak_gflops(pk, threads);
    printf("cpu: %s; features: %s\nbackend: %s\n", model, sdc_cpu_features_str(), be->name);
    printf("peaks (%d threads): TDPBF16PS %.1f GFLOP/s%s, %s %.1f GFLOP/s\n", threads, amx_peak,
           amx_peak > 0 ? "" : " (no AMX here)", bm_kind_name(pk), fp32_peak);
    printf("%-28s %5s %5s %5s %3s | %9s %8s %6s %6s | %9s %8s\n", "shape", "M", "N", "K", "n",
           "bf16 ms", "GFLOP/s", "%amx", "%fp32", "fp32 ms", "GFLOP/s");
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (json && !jf) perror(json);
    if (jf)
        fprintf(
            jf,
            "{\n  \"cpu\": \"%s\", \"backend\": \"%s\", \"threads\": %d,\n  \"amx_peak_gflops\": "
            "%.1f, \"fp32_peak_gflops\": %.1f,\n  \"shapes\": [\n",
            model, be->name, threads, amx_peak, fp32_peak);
    double step_bf = 0, step_fp = 0;
    const int ns = (int)(sizeof k_shapes / sizeof *k_shapes);
    for (int i = 0; i < ns; i++) {
        shape sm = k_shapes[i];
        if (emulate) sm.M = (sm.M + 31) / 32; /* only that it runs: 1/32 of the rows */
        const shape *s = &sm;
        float *x = malloc(sizeof *x * (size_t)s->M * s->K),
              *y = malloc(sizeof *y * (size_t)s->M * s->N);
        float *wf = malloc(sizeof *wf * (size_t)s->N * s->K);
        uint16_t *wh = malloc(sizeof *wh * (size_t)s->N * s->K),
                 *bh = malloc(sizeof *bh * (size_t)s->N);
        if (!x || !y || !wf || !wh || !bh) {
            fprintf(stderr, "bench_amx: out of memory\n");
            return 1;
        }
        for (size_t j = 0; j < (size_t)s->M * s->K; j++)
            x[j] = (float)((j * 2654435761u) % 2001) / 1000.0f - 1.0f;
        for (size_t j = 0; j < (size_t)s->N * s->K; j++)
            wh[j] = sdc_f32_to_f16((float)((j * 40503u) % 2001) / 3000.0f - 0.33f);
        for (int j = 0; j < s->N; j++)
            bh[j] = sdc_f32_to_f16((float)(j % 17) / 17.0f);
        sdc_weight W = {.name = "w",
                        .dtype = SDC_DT_F16,
                        .ndim = 2,
                        .shape = {s->N, s->K},
                        .numel = (int64_t)s->N * s->K,
                        .data = wh,
                        .nbytes = (size_t)s->N * s->K * 2};
        sdc_weight b = {.name = "b",
                        .dtype = SDC_DT_F16,
                        .ndim = 1,
                        .shape = {s->N},
                        .numel = s->N,
                        .data = bh,
                        .nbytes = (size_t)s->N * 2};
        const double flop = 2.0 * s->M * s->N * s->K;
        sdc_backend_cpu_set_bf16(be, 1);
        const double tb = time_linear(be, s, x, &W, &b, y, emulate ? 1 : reps);
        sdc_backend_cpu_set_bf16(be, 0);
        const double tf = emulate ? 0 : time_linear(be, s, x, &W, &b, y, reps);
        const double gb = flop / tb * 1e-9, gf = tf > 0 ? flop / tf * 1e-9 : 0;
        step_bf += s->count * tb, step_fp += s->count * tf;
        printf("%-28s %5d %5d %5d %3d | %9.3f %8.1f %5.1f%% %5.0f%% | %9.3f %8.1f\n", s->what, s->M,
               s->N, s->K, s->count, tb * 1e3, gb, amx_peak > 0 ? 100 * gb / amx_peak : 0.0,
               fp32_peak > 0 ? 100 * gb / fp32_peak : 0.0, tf * 1e3, gf);
        fflush(stdout);
        if (jf)
            fprintf(jf,
                    "    {\"what\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, \"count\": %d, "
                    "\"bf16_ms\": %.4f, \"bf16_gflops\": %.1f, \"fp32_ms\": %.4f, \"fp32_gflops\": "
                    "%.1f}%s\n",
                    s->what, s->M, s->N, s->K, s->count, tb * 1e3, gb, tf * 1e3, gf,
                    i + 1 < ns ? "," : "");
        free(x), free(y), free(wf), free(wh), free(bh);
    }
    sdc_backend_cpu_set_bf16(be, 1);
    printf("per UNet step (count x ms, these linears): bf16 %.1f ms, fp32 %.1f ms\n", step_bf * 1e3,
           step_fp * 1e3);
    if (jf) {
        fprintf(jf, "  ],\n  \"step_bf16_ms\": %.2f, \"step_fp32_ms\": %.2f\n}\n", step_bf * 1e3,
                step_fp * 1e3);
        fclose(jf);
    }
    be->free(be);
    return 0;
}
