/* bench_lora: the two ways of applying a LoRA, measured.
 *
 *   bench_lora --model PATH --lora FILE [--threads N] [--passes P] [--size PX]
 *
 * Merge (what sdc does): the time of sdc_lora_merge over the model's weights
 * (the rank-r products, W + update rounded to W's dtype, written to the
 * scratch file) and the bytes of merged weights it holds.
 * At run time (the alternative): each UNet step would add, for every updated
 * layer, down then up on that layer's input: a Linear's x [M, in] -> [M, r]
 * -> [M, out] (two linear ops, the second accumulating into the output), a
 * convolution's x -> conv(down [r, in, k, k]) -> 1x1 conv(up) accumulated.
 * M is the layer's rows at a PX x PX image: the latent's pixels at the
 * layer's level (down_blocks.i: PX/8 >> i, up_blocks.i: PX/64 << i, the mid
 * block PX/64; an upsampler's conv after the doubling, a downsampler's
 * stride-2 conv on its input), 77 context tokens for attn2's to_k/to_v, one
 * row per image for time_emb_proj; batch 1 and 2 (CFG).  The products run on
 * the CPU backend with the LoRA's own (fp16) factors; P passes, the minimum
 * and the median per pass are reported. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "io/model_files.h"
#include "models/lora.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The latent side a UNet layer runs at (lat: the latent's side), its input
 * side for a stride-2 conv; 0 for names outside the levels. */
static int layer_side(const char *key, int lat, int *stride) {
    int i;
    *stride = 1;
    if (sscanf(key, "unet.down_blocks.%d.", &i) == 1) {
        if (strstr(key, "downsamplers")) *stride = 2;
        return lat >> i;
    }
    if (sscanf(key, "unet.up_blocks.%d.", &i) == 1)
        return (lat >> 3) << (i + (strstr(key, "upsamplers") ? 1 : 0));
    if (strncmp(key, "unet.mid_block.", 15) == 0) return lat >> 3;
    if (strncmp(key, "unet.conv_", 10) == 0) return lat;
    return 0;
}

/* One pass of every module's runtime products at batch B; seconds. */
static double runtime_pass(sdc_backend *be, const sdc_model_files *mf, const sdc_lora_file *lf,
                           int lat, int B, float *x, float *h, float *y) {
    double t0 = now();
    for (size_t i = 0; i < sdc_lora_count(lf); i++) {
        const sdc_lora_module *m = sdc_lora_at(lf, i);
        const char *key = sdc_model_files_key(mf, m->target);
        const sdc_weight *w = sdc_model_files_at(mf, m->target);
        int stride, side = layer_side(key, lat, &stride);
        if (!side) continue;
        const int out = (int)w->shape[0], r = m->rank;
        if (w->ndim == 4 && (w->shape[2] > 1 || strstr(key, "conv"))) {
            const int C = (int)w->shape[1], k = (int)w->shape[2];
            const int so = (side + 2 * (k / 2) - k) / stride + 1;
            be->conv2d(be, h, x, B, C, side, side, m->down, NULL, r, k, k, stride, k / 2, NULL);
            be->conv2d(be, y, h, B, r, so, so, m->up, NULL, out, 1, 1, 1, 0, y);
        } else {
            const int in = (int)(w->numel / out);
            int M = B * side * side;
            if (strstr(key, "time_emb_proj")) M = B;
            if (strstr(key, "attn2.to_k") || strstr(key, "attn2.to_v")) M = B * 77;
            be->linear(be, h, x, m->down, NULL, NULL, M, r, in);
            be->linear(be, y, h, m->up, NULL, y, M, out, r);
        }
    }
    be->sync(be);
    return now() - t0;
}

int main(int argc, char **argv) {
    const char *model = NULL, *lora = NULL;
    int threads = 0, passes = 3, px = 512;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) model = v, i++;
        else if (!strcmp(a, "--lora") && v) lora = v, i++;
        else if (!strcmp(a, "--threads") && v) threads = atoi(v), i++;
        else if (!strcmp(a, "--passes") && v) passes = atoi(v), i++;
        else if (!strcmp(a, "--size") && v) px = atoi(v), i++;
        else model = NULL, i = argc;
    }
    if (!model || !lora || passes < 1 || passes > 100 || px < 64 || px > 2048 || px % 64) {
        fprintf(stderr, "usage: %s --model PATH --lora FILE [--threads N] [--passes P (1..100, "
                        "default 3)] [--size PX (multiple of 64, default 512)]\n", argv[0]);
        return 2;
    }
    sdc_model_files *mf = NULL;
    if (sdc_model_files_open(model, &mf) != SDC_OK) {
        fprintf(stderr, "bench_lora: %s\n", sdc_last_error());
        return 1;
    }
    sdc_backend *be = sdc_backend_cpu_create(threads, 0);
    sdc_lora_file *lf = NULL;
    if (!be || sdc_lora_open(lora, mf, &lf) != SDC_OK) {
        fprintf(stderr, "bench_lora: %s\n", sdc_last_error());
        return 1;
    }
    /* the factors' bytes: what the runtime way keeps resident */
    size_t fbytes = 0;
    int64_t params = 0;
    for (size_t i = 0; i < sdc_lora_count(lf); i++) {
        fbytes += sdc_lora_at(lf, i)->down->nbytes + sdc_lora_at(lf, i)->up->nbytes;
        params += sdc_lora_at(lf, i)->down->numel + sdc_lora_at(lf, i)->up->numel;
    }
    printf("%s: %zu modules, %.1f M parameters (%.1f MiB)\n", lora, sdc_lora_count(lf),
           params / 1e6, fbytes / 1048576.0);

    /* run time: the largest activation is 2 x 320 x 64 x 64 (or 2 x 4096 x 1280 for ff) */
    const int lat = px / 8;
    const size_t big = (size_t)2 * lat * lat * 2560; /* GEGLU's proj width at level 0 is 2560 */
    float *x, *h, *y;
    if (be->buffer_alloc(be, big * sizeof(float), &x) || be->buffer_alloc(be, big * sizeof(float), &h) ||
        be->buffer_alloc(be, big * sizeof(float), &y)) {
        fprintf(stderr, "bench_lora: %s\n", sdc_last_error());
        return 1;
    }
    float *host = malloc(big * sizeof *host);
    for (size_t i = 0; i < big; i++) host[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    be->copy_in(be, x, host, (int64_t)big);
    be->copy_in(be, y, host, (int64_t)big);
    be->copy_in(be, h, host, (int64_t)big);
    be->sync(be);
    for (int B = 1; B <= 2; B++) {
        double *t = malloc((size_t)passes * sizeof *t);
        runtime_pass(be, mf, lf, lat, B, x, h, y); /* warm: factors mapped in */
        for (int p = 0; p < passes; p++) t[p] = runtime_pass(be, mf, lf, lat, B, x, h, y);
        qsort(t, (size_t)passes, sizeof *t, cmp_double);
        printf("run time, %dx%d, batch %d: %.3f s per UNet step (min of %d; median %.3f s)\n", px,
               px, B, t[0], passes, t[passes / 2]);
        free(t);
    }
    be->buffer_free(be, x);
    be->buffer_free(be, h);
    be->buffer_free(be, y);
    free(host);

    /* merge: as sdc_generate does it (pages of the originals read in from the file) */
    sdc_lora set = {lora, 1.0f};
    sdc_lora_merged *cur = NULL;
    sdc_model_files_advise_prefix(mf, "unet.", SDC_PAGES_RELEASE);
    double t0 = now();
    if (sdc_lora_merge(mf, be, &set, 1, threads, 0, &cur) != SDC_OK) {
        fprintf(stderr, "bench_lora: %s\n", sdc_last_error());
        return 1;
    }
    double tm = now() - t0;
    printf("merge: %.2f s, %.1f MiB of merged weights; back to the originals: ", tm,
           sdc_lora_merged_bytes(cur) / 1048576.0);
    t0 = now();
    sdc_lora_unmerge(mf, be, cur);
    printf("%.3f s\n", now() - t0);
    sdc_lora_close(lf);
    be->free(be);
    sdc_model_files_close(mf);
    return 0;
}
