/* Full-size spot check: sdc's CLIP, UNet and VAE on the full-size SD 1.4
 * stand-in (random weights with SD 1.4's real names, shapes and fp16 dtype,
 * both layouts) against diffusers/transformers in fp32.
 *
 *   python3 scripts/make_fixtures.py --full-size DIR
 *   build/fullsize_check DIR
 *
 * Not part of CTest (the stand-in is ~4 GB and never committed); its
 * results are recorded in docs/perf.md.  Tolerance: relative L2 <= 1e-3. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "core/arena.h"
#include "harness.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "models/models.h"

enum { S = 77 };
static const char *g_dir;

/* One UNet pass with its inputs and output in activation memory. */
static void pass(const sdc_unet *m, sdc_backend *be, sdc_arena *a, const float *x, int N, int h,
                 int w, const float *t, const float *ctx, int S_, float *out) {
    const sdc_unet_config *c = sdc_unet_cfg(m);
    size_t mark = sdc_arena_mark(a);
    size_t nx = (size_t)N * c->in_channels * h * w, nc = (size_t)N * S_ * c->cross_dim;
    size_t no = (size_t)N * c->out_channels * h * w;
    float *xd = sdc_arena_alloc(a, nx), *cd = sdc_arena_alloc(a, nc), *od = sdc_arena_alloc(a, no);
    be->copy_in(be, xd, x, (int64_t)nx);
    be->copy_in(be, cd, ctx, (int64_t)nc);
    sdc_unet_forward(m, be, a, xd, N, 0, h, w, t, NULL, cd, S_, NULL, od);
    be->copy_out(be, out, od, (int64_t)no);
    sdc_arena_reset(a, mark);
}

/* Spot check on the full-size SD 1.4 stand-in (scripts/fixtures_lib/fullsize.py).  Tolerance: relative L2 <= 1e-3. */
static void check_clip(void) {
    const char *dir = g_dir;
    char path[1024];
    sdc_st_file *ref = NULL;
    snprintf(path, sizeof path, "%s/fullsize_ref.safetensors", dir);
    CHECKF(sdc_st_open(path, &ref) == SDC_OK, "%s", sdc_last_error());
    const sdc_weight *ids = ref ? sdc_st_find(ref, "clip_ids") : NULL;
    const sdc_weight *hid = ref ? sdc_st_find(ref, "clip_hidden") : NULL;
    int ok = ids && ids->dtype == SDC_DT_I32 && ids->numel == S && hid &&
             hid->dtype == SDC_DT_F32 && hid->numel == S * 768;
    CHECK(ok);
    const char *layouts[] = {"sd14-standin.safetensors", "sd14-standin"};
    float *got = malloc(sizeof(float) * S * 768);
    for (int li = 0; li < 2 && ok && got; li++) {
        snprintf(path, sizeof path, "%s/%s", dir, layouts[li]);
        sdc_model_files *mf = NULL;
        sdc_clip *m = NULL;
        CHECKF(sdc_model_files_open(path, &mf) == SDC_OK, "%s", sdc_last_error());
        if (mf) CHECKF(sdc_clip_create(mf, &m) == SDC_OK, "%s", sdc_last_error());
        if (m) {
            sdc_arena a = {0};
            sdc_arena_plan(&a);
            float *od = sdc_arena_alloc(&a, S * 768);
            sdc_clip_forward(m, sdc_backend_null(), &a, ids->data, S, od);
            CHECK(!a.overflow && sdc_arena_commit(&a, 0) == SDC_OK);
            sdc_backend *be = sdc_backend_cpu_create(0, 0);
            if (be && a.base) {
                od = sdc_arena_alloc(&a, S * 768);
                sdc_clip_forward(m, be, &a, ids->data, S, od);
                be->copy_out(be, got, od, S * 768);
                double e = t_rel_l2(got, hid->data, S * 768);
                CHECKF(e <= 1e-3, "%s: rel L2 %.3g", layouts[li], e);
                printf("  %-26s rel L2 %.2e\n", layouts[li], e);
            }
            if (be) be->free(be);
            sdc_arena_free(&a);
        }
        sdc_clip_free(m);
        sdc_model_files_close(mf);
    }
    free(got);
    sdc_st_close(ref);
}

/* Spot check on the full-size SD 1.4 stand-in (scripts/fixtures_lib/fullsize.py): fp16 weights, batch 2, 64x64
 * latent, fast ops.  Tolerance: relative L2 error <= 1e-3. */
static void check_unet(void) {
    const char *dir = g_dir;
    char path[1024];
    sdc_st_file *ref = NULL;
    snprintf(path, sizeof path, "%s/fullsize_ref.safetensors", dir);
    CHECKF(sdc_st_open(path, &ref) == SDC_OK, "%s", sdc_last_error());
    enum { N = 2, H = 64, W = 64, X = 768 };
    const float *x = ref ? t_ref_f32(ref, "unet_x", N * 4 * H * W) : NULL;
    const float *t = ref ? t_ref_f32(ref, "unet_t", N) : NULL;
    const float *ctx = ref ? t_ref_f32(ref, "unet_ctx", N * S * X) : NULL;
    const float *want = ref ? t_ref_f32(ref, "unet_out", N * 4 * H * W) : NULL;
    float *got = malloc(sizeof(float) * N * 4 * H * W);
    const char *layouts[] = {"sd14-standin.safetensors", "sd14-standin"};
    for (int li = 0; li < 2 && x && t && ctx && want && got; li++) {
        snprintf(path, sizeof path, "%s/%s", dir, layouts[li]);
        sdc_model_files *mf = NULL;
        sdc_unet *m = NULL;
        CHECKF(sdc_model_files_open(path, &mf) == SDC_OK, "%s", sdc_last_error());
        if (mf) CHECKF(sdc_unet_create(mf, &m) == SDC_OK, "%s", sdc_last_error());
        if (m) {
            sdc_arena a = {0};
            sdc_arena_plan(&a);
            pass(m, sdc_backend_null(), &a, NULL, N, H, W, t, NULL, S, NULL);
            CHECK(!a.overflow && a.top == 0);
            CHECK(sdc_arena_commit(&a, 0) == SDC_OK);
            sdc_backend *be = sdc_backend_cpu_create(0, 0);
            if (be && a.base) {
                pass(m, be, &a, x, N, H, W, t, ctx, S, got);
                double e = t_rel_l2(got, want, (size_t)N * 4 * H * W);
                CHECKF(e <= 1e-3, "%s: rel L2 %.3g", layouts[li], e);
                printf("  %-26s rel L2 %.2e  arena %zu MiB\n", layouts[li], e, a.peak >> 20);
            }
            if (be) be->free(be);
            sdc_arena_free(&a);
        }
        sdc_unet_free(m);
        sdc_model_files_close(mf);
    }
    free(got);
    sdc_st_close(ref);
}

/* Spot check on the full-size SD 1.4 stand-in (scripts/fixtures_lib/fullsize.py): fp16 weights, decode of a 64x64
 * latent, fast ops.  Tolerance: relative L2 error <= 1e-3. */
static void check_vae(void) {
    const char *dir = g_dir;
    char path[1024];
    sdc_st_file *ref = NULL;
    snprintf(path, sizeof path, "%s/fullsize_ref.safetensors", dir);
    CHECKF(sdc_st_open(path, &ref) == SDC_OK, "%s", sdc_last_error());
    enum { h = 64, w = 64 };
    const size_t nz = 4 * h * w, ni = 3 * (8 * h) * (8 * w);
    const float *z = ref ? t_ref_f32(ref, "vae_z", (int64_t)nz) : NULL;
    const float *want = ref ? t_ref_f32(ref, "vae_decoded", (int64_t)ni) : NULL;
    float *got = malloc(sizeof(float) * ni);
    snprintf(path, sizeof path, "%s/sd14-standin.safetensors", dir);
    sdc_model_files *mf = NULL;
    sdc_vae *m = NULL;
    CHECKF(sdc_model_files_open(path, &mf) == SDC_OK, "%s", sdc_last_error());
    if (mf) CHECKF(sdc_vae_create(mf, &m) == SDC_OK, "%s", sdc_last_error());
    if (m && z && want && got) {
        sdc_arena a = {0};
        sdc_backend *nb = sdc_backend_null();
        sdc_arena_plan(&a);
        float *zd = sdc_arena_alloc(&a, nz), *od = sdc_arena_alloc(&a, ni);
        sdc_vae_decode(m, nb, &a, zd, 1, h, w, od);
        CHECK(!a.overflow);
        CHECK(sdc_arena_commit(&a, 0) == SDC_OK);
        sdc_backend *be = sdc_backend_cpu_create(0, 0);
        if (be && a.base) {
            zd = sdc_arena_alloc(&a, nz), od = sdc_arena_alloc(&a, ni);
            be->copy_in(be, zd, z, (int64_t)nz);
            sdc_vae_decode(m, be, &a, zd, 1, h, w, od);
            be->copy_out(be, got, od, (int64_t)ni);
            CHECK(!a.overflow);
            double e = t_rel_l2(got, want, ni);
            CHECKF(e <= 1e-3, "rel L2 %.3g", e);
            printf("  decode 64x64 latent  rel L2 %.2e  arena %zu MiB\n", e, a.peak >> 20);
        }
        if (be) be->free(be);
        sdc_arena_free(&a);
    }
    free(got);
    sdc_vae_free(m);
    sdc_model_files_close(mf);
    sdc_st_close(ref);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR   (DIR: what make_fixtures.py --full-size wrote)\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    RUN(check_clip);
    RUN(check_unet);
    RUN(check_vae);
    return t_summary();
}
