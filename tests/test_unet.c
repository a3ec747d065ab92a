/* The UNet against diffusers' UNet2DConditionModel on the tiny random-weight
 * model (tests/fixtures/unet_ref.safetensors, scripts/fixtures_lib/models.py),
 * in both layouts (single file F16, diffusers folder F32), with the fast and
 * the reference CPU ops.  Tolerance: relative L2 error <= 1e-4. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "core/arena.h"
#include "harness.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "models/models.h"

#define TOL 1e-4

/* One forward pass with its inputs and output in activation memory; with
 * use_kv, the context's keys and values made first by sdc_unet_context;
 * shared as sdc_unet_forward's. */
static void pass_shared(const sdc_unet *m, sdc_backend *be, sdc_arena *a, const float *x, int N,
                        int shared, int h, int w, const float *t, const float *ctx, int S,
                        int use_kv, float *out) {
    const sdc_unet_config *c = sdc_unet_cfg(m);
    size_t mark = sdc_arena_mark(a);
    size_t nx = (size_t)N * c->in_channels * h * w, nc = (size_t)N * S * c->cross_dim;
    size_t no = (size_t)N * c->out_channels * h * w;
    float *xd = sdc_arena_alloc(a, nx), *cd = sdc_arena_alloc(a, nc), *od = sdc_arena_alloc(a, no);
    float *kv = use_kv ? sdc_arena_alloc(a, sdc_unet_context_floats(m, N, S)) : NULL;
    be->copy_in(be, xd, x, (int64_t)nx);
    be->copy_in(be, cd, ctx, (int64_t)nc);
    if (use_kv) sdc_unet_context(m, be, cd, N, S, kv);
    sdc_unet_forward(m, be, a, xd, N, shared, h, w, t, NULL, cd, S, kv, od);
    be->copy_out(be, out, od, (int64_t)no);
    sdc_arena_reset(a, mark);
}

static void pass(const sdc_unet *m, sdc_backend *be, sdc_arena *a, const float *x, int N, int h,
                 int w, const float *t, const float *ctx, int S, int use_kv, float *out) {
    pass_shared(m, be, a, x, N, 0, h, w, t, ctx, S, use_kv, out);
}

/* CFG's form: both rows take x's first image and t[0].  The shared pass
 * (the part before the prompt enters run once) against the plain pass on
 * x's first image twice, which the diffusers check above covers: equal bit
 * for bit on every path, since no op rounds an image by its batch (test_ops'
 * test_batch_invariance). */
static void check_shared(const sdc_unet *m, const char *fixture, const float *x, const float *t,
                         const float *ctx, int N, int H, int W, int S) {
    const size_t per = (size_t)4 * H * W, no = (size_t)N * per;
    float *x2 = malloc(sizeof(float) * no), *want = malloc(sizeof(float) * no);
    float *got = malloc(sizeof(float) * no), t2[2] = {t[0], t[0]};
    CHECK(N == 2 && x2 && want && got);
    for (int p = 0; p < t_npaths() && N == 2 && x2 && want && got; p++) {
        for (int i = 0; i < N; i++) memcpy(x2 + i * per, x, sizeof(float) * per);
        sdc_backend *be = t_path_backend(p, 2);
        if (!be) continue;
        double e[2] = {0, 0};
        for (int shared = 0; shared <= 1; shared++) {
            sdc_arena a = {0};
            sdc_arena_plan(&a);
            pass_shared(m, sdc_backend_null(), &a, NULL, N, shared, H, W, t2, NULL, S, 1, NULL);
            size_t peak = a.peak;
            CHECK(!a.overflow && sdc_arena_commit(&a, 0) == SDC_OK);
            if (shared) /* only the first image is read: the second is poisoned */
                for (size_t i = per; i < no; i++) x2[i] = NAN;
            memset(got, 0, sizeof(float) * no);
            pass_shared(m, be, &a, x2, N, shared, H, W, t2, ctx, S, 1, shared ? got : want);
            CHECK(!a.overflow && a.top == 0 && a.peak == peak);
            sdc_arena_free(&a);
        }
        e[0] = t_rel_l2(got, want, per);
        e[1] = t_rel_l2(got + per, want + per, per);
        CHECKF(e[0] == 0 && e[1] == 0, "%s shared %s: rel L2 %.3g, %.3g", fixture,
               t_path_name(p), e[0], e[1]);
        /* the rows differ (their prompts do): the shared part was not
         * copied past the cross-attention */
        CHECK(t_rel_l2(got, got + per, per) > 1e-3);
        printf("  %-20s %-10s %-7s shared    rel L2 %.2e, %.2e\n", fixture, "x[0] twice",
               t_path_name(p), e[0], e[1]);
        be->free(be);
    }
    free(x2);
    free(want);
    free(got);
}

static void check_layout(const char *fixture) {
    sdc_model_files *mf = NULL;
    sdc_st_file *ref = NULL;
    sdc_unet *m = NULL;
    sdc_status st = sdc_model_files_open(t_fixture(fixture), &mf);
    CHECKF(st == SDC_OK, "%s: %s", fixture, sdc_last_error());
    if (st != SDC_OK) return;
    st = sdc_unet_create(mf, &m);
    CHECKF(st == SDC_OK, "%s: %s", fixture, sdc_last_error());
    CHECK(sdc_st_open(t_fixture("unet_ref.safetensors"), &ref) == SDC_OK);
    if (!m || !ref) goto done;
    const sdc_unet_config *c = sdc_unet_cfg(m);
    CHECK(c->levels == 2 && c->channels[0] == 32 && c->channels[1] == 64 && c->attn[0] == 1 &&
          c->attn[1] == 0 && c->layers_per_block == 2 && c->heads == 8 && c->cross_dim == 32);
    enum { N = 2, H = 16, W = 16, S = 77 };
    const float *x = t_ref_f32(ref, "x", N * 4 * H * W);
    const float *ctx = t_ref_f32(ref, "ctx", N * S * 32);
    const char *cases[2][2] = {{"t", "out"}, {"t_mixed", "out_mixed"}};
    /* each case per block (kv NULL) and with the context's keys and
     * values made once (sdc_unet_context): the same output, bit for bit */
    const size_t no = (size_t)N * 4 * H * W;
    float *got = malloc(sizeof(float) * no), *prev[T_MAX_PATHS] = {NULL};
    int have_prev = got != NULL;
    for (int p = 0; p < t_npaths(); p++) have_prev &= (prev[p] = malloc(sizeof(float) * no)) != NULL;
    for (int ci = 0; ci < 2 && x && ctx && have_prev; ci++) {
        const float *t = t_ref_f32(ref, cases[ci][0], N);
        const float *want = t_ref_f32(ref, cases[ci][1], N * 4 * H * W);
        if (!t || !want) continue;
        for (int use_kv = 0; use_kv <= 1; use_kv++) {
            sdc_arena a = {0};
            sdc_arena_plan(&a);
            pass(m, sdc_backend_null(), &a, NULL, N, H, W, t, NULL, S, use_kv, NULL);
            CHECK(!a.overflow && a.top == 0);
            size_t peak = a.peak;
            CHECK(sdc_arena_commit(&a, 0) == SDC_OK);
            for (int p = 0; p < t_npaths(); p++) {
                sdc_backend *be = t_path_backend(p, 2);
                if (!be) continue;
                memset(got, 0, sizeof(float) * no);
                pass(m, be, &a, x, N, H, W, t, ctx, S, use_kv, got);
                CHECK(!a.overflow && a.top == 0 && a.peak == peak);
                double e = t_rel_l2(got, want, no);
                CHECKF(e <= TOL, "%s %s %s kv=%d: rel L2 %.3g", fixture, cases[ci][1],
                       t_path_name(p), use_kv, e);
                if (use_kv)
                    CHECKF(memcmp(got, prev[p], sizeof(float) * no) == 0,
                           "%s %s %s: kv once != kv per block", fixture, cases[ci][1],
                           t_path_name(p));
                else
                    memcpy(prev[p], got, sizeof(float) * no);
                printf("  %-20s %-10s %-7s %-9s rel L2 %.2e  arena %zu KiB\n", fixture,
                       cases[ci][1], t_path_name(p), use_kv ? "kv once" : "kv/block", e,
                       peak >> 10);
                be->free(be);
            }
            sdc_arena_free(&a);
        }
    }
    free(got);
    for (int p = 0; p < t_npaths(); p++) free(prev[p]);
    const float *t0 = t_ref_f32(ref, "t", N);
    if (x && ctx && t0) check_shared(m, fixture, x, t0, ctx, N, H, W, S);
done:
    sdc_unet_free(m);
    sdc_st_close(ref);
    sdc_model_files_close(mf);
}

static void test_unet_single_file(void) { check_layout("tiny-sd.safetensors"); }
static void test_unet_diffusers_folder(void) { check_layout("tiny-sd"); }

/* Copies src to dst, replacing the first occurrence of from by to. */
static int copy_edit(const char *src, const char *dst, const char *from, const char *to) {
    FILE *f = fopen(src, "rb");
    if (!f) return 0;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strstr(buf, from);
    if (!p) return 0;
    f = fopen(dst, "wb");
    if (!f) return 0;
    fwrite(buf, 1, (size_t)(p - buf), f);
    fputs(to, f);
    fputs(p + strlen(from), f);
    return fclose(f) == 0;
}

/* A copy of the tiny diffusers folder (weights linked) whose
 * unet/config.json has `from` replaced by `to`; returns the folder. */
static const char *edited_folder(const char *name, const char *from, const char *to) {
    static char root[512];
    char path[1024], src[1024];
    snprintf(root, sizeof root, "%s", t_tmp(name));
    const char *dirs[] = {"", "/unet", "/vae", "/text_encoder", "/scheduler"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s%s", root, dirs[i]);
        mkdir(path, 0755);
    }
    const char *same[] = {"model_index.json", "scheduler/scheduler_config.json",
                          "vae/config.json", "text_encoder/config.json"};
    const char *links[] = {"unet/diffusion_pytorch_model.safetensors",
                           "vae/diffusion_pytorch_model.safetensors",
                           "text_encoder/model.safetensors"};
    for (int i = 0; i < 4; i++) {
        snprintf(src, sizeof src, "%s/%s", t_fixture("tiny-sd"), same[i]);
        snprintf(path, sizeof path, "%s/%s", root, same[i]);
        CHECK(copy_edit(src, path, "{", "{"));
    }
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof src, "%s/%s", t_fixture("tiny-sd"), links[i]);
        snprintf(path, sizeof path, "%s/%s", root, links[i]);
        unlink(path);
        CHECK(symlink(src, path) == 0);
    }
    snprintf(src, sizeof src, "%s/unet/config.json", t_fixture("tiny-sd"));
    snprintf(path, sizeof path, "%s/unet/config.json", root);
    CHECK(copy_edit(src, path, from, to));
    return root;
}

/* Creation from a folder whose config disagrees with its weights fails
 * with SDC_ERR_FORMAT and a message naming the tensor. */
static void expect_bind_error(const char *root, const char *tensor, const char *detail) {
    sdc_model_files *mf = NULL;
    sdc_status st = sdc_model_files_open(root, &mf);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st != SDC_OK) return;
    sdc_unet *m = NULL;
    st = sdc_unet_create(mf, &m);
    CHECK(st == SDC_ERR_FORMAT && m == NULL);
    CHECKF(strstr(sdc_last_error(), tensor) && strstr(sdc_last_error(), detail), "message: %s",
           sdc_last_error());
    sdc_unet_free(m);
    sdc_model_files_close(mf);
}

static void test_unet_shape_mismatch(void) {
    const char *root = edited_folder("unet-bad-channels", "    64\n  ],", "    96\n  ],");
    expect_bind_error(root, "unet.down_blocks.1.resnets.0.conv1.weight",
                      "shape [64, 32, 3, 3], expected [96, 32, 3, 3]");
}

static void test_unet_missing_tensor(void) {
    const char *root = edited_folder("unet-bad-layers", "\"layers_per_block\": 2",
                                     "\"layers_per_block\": 3");
    expect_bind_error(root, "unet.down_blocks.0.resnets.2.norm1.weight", "missing");
}


int main(void) {
    RUN(test_unet_single_file);
    RUN(test_unet_diffusers_folder);
    RUN(test_unet_shape_mismatch);
    RUN(test_unet_missing_tensor);
    return t_summary();
}
