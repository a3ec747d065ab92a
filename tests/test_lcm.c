/* LCM-distilled UNets (time_cond_proj_dim: the guidance-scale embedding
 * added to the timestep's) against diffusers on a tiny such model
 * (tests/fixtures/lcm_ref.safetensors, tiny-sd-lcm/ and
 * tiny-sd-lcm.safetensors; scripts/fixtures_lib/lcm.py), in both layouts:
 *   the UNet alone, with and without the embedding, on every CPU path
 *     (relative L2 <= 1e-4, as test_unet);
 *   whole pipelines (LatentConsistencyModelPipeline and StableDiffusion-
 *     Pipeline with LCMScheduler; the lcm sampler, 2-4 steps, guidance 1,
 *     1.5 and 8) with test_pipeline's tolerances: final latents relative L2
 *     <= 1e-4, image mean |u8 - 255*ref| <= 0.5 and float MAE <= 0.5/255;
 *     the CPU backend, low-memory mode, and every OpenCL device there is;
 *   configs and weights that disagree: SDC_ERR_FORMAT naming the file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backends/backend.h"
#include "core/arena.h"
#include "harness.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "models/models.h"
#include "pipeline/pipeline_internal.h"
#include "sdc.h"

#define UNET_TOL 1e-4
#define LATENT_TOL 1e-4
#define U8_MAE_TOL 0.5
#define FLOAT_MAE_TOL (0.5 / 255.0)
#define COND_DIM 24 /* lcm.py's COND_DIM */

static const char *const k_layouts[2] = {"tiny-sd-lcm", "tiny-sd-lcm.safetensors"};

/* ---- the UNet alone ----------------------------------------------------- */

/* One pass, inputs and output through activation memory; cond NULL: the
 * UNet's guidance embedding left out (diffusers' timestep_cond=None). */
static void unet_pass(const sdc_unet *m, sdc_backend *be, sdc_arena *a, const float *x,
                      const float *t, const float *cond, const float *ctx, int use_cond,
                      float *out) {
    enum { N = 2, H = 16, W = 16, S = 77 };
    const size_t nx = (size_t)N * 4 * H * W, nc = (size_t)N * S * 32, nw = (size_t)N * COND_DIM;
    size_t mark = sdc_arena_mark(a);
    float *xd = sdc_arena_alloc(a, nx), *cd = sdc_arena_alloc(a, nc);
    float *wd = use_cond ? sdc_arena_alloc(a, nw) : NULL, *od = sdc_arena_alloc(a, nx);
    be->copy_in(be, xd, x, (int64_t)nx);
    be->copy_in(be, cd, ctx, (int64_t)nc);
    if (wd) be->copy_in(be, wd, cond, (int64_t)nw);
    sdc_unet_forward(m, be, a, xd, N, 0, H, W, t, wd, cd, S, NULL, od);
    be->copy_out(be, out, od, (int64_t)nx);
    sdc_arena_reset(a, mark);
}

static void unet_layout(const char *fixture) {
    sdc_model_files *mf = NULL;
    sdc_st_file *ref = NULL;
    sdc_unet *m = NULL;
    sdc_status st = sdc_model_files_open(t_fixture(fixture), &mf);
    CHECKF(st == SDC_OK, "%s: %s", fixture, sdc_last_error());
    if (st == SDC_OK) {
        CHECK(sdc_model_files_unet(mf)->time_cond_proj_dim == COND_DIM);
        st = sdc_unet_create(mf, &m);
        CHECKF(st == SDC_OK, "%s: %s", fixture, sdc_last_error());
    }
    CHECK(sdc_st_open(t_fixture("lcm_ref.safetensors"), &ref) == SDC_OK);
    enum { N = 2, NX = N * 4 * 16 * 16 };
    const float *x = ref ? t_ref_f32(ref, "unet.x", NX) : NULL;
    const float *ctx = ref ? t_ref_f32(ref, "unet.ctx", N * 77 * 32) : NULL;
    const float *t = ref ? t_ref_f32(ref, "unet.t", N) : NULL;
    const float *wemb = ref ? t_ref_f32(ref, "unet.wemb", N * COND_DIM) : NULL;
    const float *want[2] = {ref ? t_ref_f32(ref, "unet.out_nocond", NX) : NULL,
                            ref ? t_ref_f32(ref, "unet.out", NX) : NULL};
    float *got = malloc(sizeof(float) * NX);
    if (m && x && ctx && t && wemb && want[0] && want[1] && got) {
        for (int use_cond = 0; use_cond <= 1; use_cond++) {
            sdc_arena a = {0};
            sdc_arena_plan(&a);
            unet_pass(m, sdc_backend_null(), &a, NULL, t, NULL, NULL, use_cond, NULL);
            CHECK(!a.overflow && sdc_arena_commit(&a, 0) == SDC_OK);
            for (int p = 0; p < t_npaths(); p++) {
                sdc_backend *be = t_path_backend(p, 2);
                if (!be) continue;
                memset(got, 0, sizeof(float) * NX);
                unet_pass(m, be, &a, x, t, wemb, ctx, use_cond, got);
                CHECK(be->sync(be) == SDC_OK && !a.overflow && a.top == 0);
                double e = t_rel_l2(got, want[use_cond], NX);
                double moved = t_rel_l2(want[0], want[1], NX); /* the embedding's effect */
                CHECKF(e <= UNET_TOL, "%s %s %s: rel L2 %.3g", fixture,
                       use_cond ? "out" : "out_nocond", t_path_name(p), e);
                printf("  %-24s %-10s %-7s rel L2 %.2e (tol %.0e; the embedding moves the "
                       "output by %.2f)\n",
                       fixture, use_cond ? "out" : "out_nocond", t_path_name(p), e, UNET_TOL,
                       moved);
                be->free(be);
            }
            sdc_arena_free(&a);
        }
    }
    free(got);
    sdc_unet_free(m);
    sdc_st_close(ref);
    sdc_model_files_close(mf);
}

static void test_unet_folder(void) { unet_layout("tiny-sd-lcm"); }
static void test_unet_single_file(void) { unet_layout("tiny-sd-lcm.safetensors"); }

/* ---- whole pipelines ---------------------------------------------------- */

typedef struct lcm_case {
    char name[64], pipeline[8], prompt[256], negative[256];
    int has_negative, steps, width, height;
    float cfg;
    uint64_t seed;
} lcm_case;

static int load_cases(const sdc_st_file *ref, lcm_case *cases, int max) {
    const char *json = sdc_st_metadata(ref, "cases");
    cJSON *root = json ? cJSON_Parse(json) : NULL, *c;
    int n = 0;
    cJSON_ArrayForEach(c, root) {
        if (n >= max) break;
        lcm_case *r = &cases[n++];
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", cJSON_GetObjectItem(c, "name")->valuestring);
        snprintf(r->pipeline, sizeof r->pipeline, "%s",
                 cJSON_GetObjectItem(c, "pipeline")->valuestring);
        snprintf(r->prompt, sizeof r->prompt, "%s", cJSON_GetObjectItem(c, "prompt")->valuestring);
        const cJSON *neg = cJSON_GetObjectItem(c, "negative");
        r->has_negative = cJSON_IsString(neg);
        if (r->has_negative) snprintf(r->negative, sizeof r->negative, "%s", neg->valuestring);
        CHECK(strcmp(cJSON_GetObjectItem(c, "sampler")->valuestring, "lcm") == 0);
        r->steps = cJSON_GetObjectItem(c, "steps")->valueint;
        r->width = cJSON_GetObjectItem(c, "width")->valueint;
        r->height = cJSON_GetObjectItem(c, "height")->valueint;
        r->cfg = (float)cJSON_GetObjectItem(c, "cfg")->valuedouble;
        r->seed = (uint64_t)cJSON_GetObjectItem(c, "seed")->valuedouble;
    }
    cJSON_Delete(root);
    return n;
}

static double worst_lat, worst_u8, worst_f;

/* One case on model m against the reference; what names the run. */
static void run_case(sdc_model *m, const sdc_st_file *ref, const lcm_case *c, const char *what) {
    char key[96];
    snprintf(key, sizeof key, "%.63s.latents", c->name);
    const sdc_weight *rl = sdc_st_find(ref, key);
    snprintf(key, sizeof key, "%.63s.image", c->name);
    const sdc_weight *ri = sdc_st_find(ref, key);
    const size_t n_lat = (size_t)4 * (c->height / 2) * (c->width / 2);
    const size_t n_img = (size_t)c->height * c->width * 3;
    CHECKF(rl && ri && rl->dtype == SDC_DT_F32 && ri->dtype == SDC_DT_F32 &&
               (size_t)rl->numel == n_lat && (size_t)ri->numel == n_img,
           "%s: no reference", c->name);
    if (!rl || !ri || (size_t)rl->numel != n_lat || (size_t)ri->numel != n_img) return;
    float *lat = malloc(n_lat * sizeof *lat), *img = malloc(n_img * sizeof *img);
    sdc_gen_debug dbg = {.latents = lat, .image = img};
    sdc_gen_params p = sdc_gen_params_default();
    p.prompt = c->prompt;
    p.negative_prompt = c->has_negative ? c->negative : NULL;
    p.width = c->width, p.height = c->height, p.steps = c->steps;
    p.cfg_scale = c->cfg, p.seed = c->seed, p.sampler = SDC_SAMPLER_LCM;
    p.schedule = SDC_SCHEDULE_DISCRETE;
    sdc_image out;
    sdc_timings tm;
    sdc_status st = lat && img ? sdc_generate_debug(m, &p, &out, &tm, &dbg) : SDC_ERR_NOMEM;
    CHECKF(st == SDC_OK, "%s/%s: %s", what, c->name, sdc_last_error());
    if (st == SDC_OK) {
        const float *ref_img = ri->data;
        double e_lat = t_rel_l2(lat, rl->data, n_lat), e_u8 = 0, e_f = 0;
        for (size_t i = 0; i < n_img; i++) {
            e_u8 += fabs((double)out.data[i] - 255.0 * ref_img[i]);
            e_f += fabs((double)img[i] - ref_img[i]);
        }
        e_u8 /= (double)n_img, e_f /= (double)n_img;
        printf("  %-18s %-15s latents rel L2 %.2e  image MAE %.3f/255 (u8), %.2e (float)  "
               "%d UNet steps\n",
               what, c->name, e_lat, e_u8, e_f, tm.steps);
        CHECKF(e_lat <= LATENT_TOL, "%s/%s: latents rel L2 %.3g", what, c->name, e_lat);
        CHECKF(e_u8 <= U8_MAE_TOL, "%s/%s: image MAE %.3g", what, c->name, e_u8);
        CHECKF(e_f <= FLOAT_MAE_TOL, "%s/%s: float image MAE %.3g", what, c->name, e_f);
        CHECK(tm.steps == c->steps && out.width == c->width && out.height == c->height);
        if (e_lat > worst_lat) worst_lat = e_lat;
        if (e_u8 > worst_u8) worst_u8 = e_u8;
        if (e_f > worst_f) worst_f = e_f;
        sdc_image_free(&out);
    }
    free(lat);
    free(img);
}

static sdc_st_file *open_ref(lcm_case *cases, int cap, int *n) {
    sdc_st_file *ref = NULL;
    sdc_status st = sdc_st_open(t_fixture("lcm_ref.safetensors"), &ref);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    *n = st == SDC_OK ? load_cases(ref, cases, cap) : 0;
    return st == SDC_OK ? ref : NULL;
}

static void test_pipelines(void) {
    lcm_case cases[8];
    int n = 0;
    sdc_st_file *ref = open_ref(cases, 8, &n);
    if (!ref) return;
    CHECK(n == 4);
    worst_lat = worst_u8 = worst_f = 0;
    for (int l = 0; l < 2; l++)
        for (int low = 0; low <= 1; low++) {
            if (low && l == 1) continue; /* low-memory mode once: the folder */
            sdc_load_params lp = sdc_load_params_default();
            lp.n_threads = 2;
            lp.low_memory = low;
            sdc_model *m = NULL;
            sdc_status st = sdc_model_load(t_fixture(k_layouts[l]), &lp, &m);
            CHECKF(st == SDC_OK, "%s: %s", k_layouts[l], sdc_last_error());
            if (st != SDC_OK) continue;
            CHECK(sdc_model_has_guidance_embed(m) == 1);
            CHECKF(strstr(sdc_model_describe(m), "LCM: guidance embedding 24"), "%s",
                   sdc_model_describe(m));
            if (!low) printf("  %s: %s\n", k_layouts[l], sdc_model_describe(m));
            const char *what = l ? "file" : low ? "folder low-mem" : "folder";
            for (int i = 0; i < n; i++)
                if (!low || i == 0) run_case(m, ref, &cases[i], what);
            sdc_model_free(m);
        }
    printf("  worst: latents rel L2 %.2e (tol %.0e), image MAE %.3f/255 (tol %.2f), float "
           "image MAE %.2e (tol %.2e)\n",
           worst_lat, LATENT_TOL, worst_u8, U8_MAE_TOL, worst_f, FLOAT_MAE_TOL);
    /* an ordinary model has no guidance embedding */
    sdc_model *m = NULL;
    CHECK(sdc_model_load(t_fixture("tiny-sd"), NULL, &m) == SDC_OK);
    CHECK(m && sdc_model_has_guidance_embed(m) == 0 && !strstr(sdc_model_describe(m), "LCM"));
    sdc_model_free(m);
    CHECK(sdc_model_has_guidance_embed(NULL) == 0);
    sdc_st_close(ref);
}

/* Every OpenCL device (PoCL on a CPU counts), fp32 activations: the guidance
 * embedding is one more linear, so two cases suffice. */
static void test_opencl(void) {
    sdc_device_info d[16];
    const int nd = t_opencl_devices(d, 16);
    if (nd == 0) return;
    lcm_case cases[8];
    int n = 0;
    sdc_st_file *ref = open_ref(cases, 8, &n);
    if (!ref) return;
    worst_lat = worst_u8 = worst_f = 0;
    for (int i = 0; i < nd && i < 16; i++)
        for (int l = 0; l < 2; l++) {
            char dev[16], what[64];
            snprintf(dev, sizeof dev, "%d", d[i].index);
            snprintf(what, sizeof what, "cl%d/%s", d[i].index, l ? "file" : "folder");
            sdc_load_params lp = sdc_load_params_default();
            lp.backend = SDC_BACKEND_OPENCL;
            lp.device = dev;
            sdc_model *m = NULL;
            sdc_status st = sdc_model_load(t_fixture(k_layouts[l]), &lp, &m);
            CHECKF(st == SDC_OK, "%s: %s", what, sdc_last_error());
            if (st != SDC_OK) continue;
            for (int c = 0; c < n; c++)
                if (!strcmp(cases[c].name, "lcm4_cfg8") || !strcmp(cases[c].name, "lcm2_cfg1.5"))
                    run_case(m, ref, &cases[c], what);
            sdc_model_free(m);
        }
    printf("  opencl worst: latents rel L2 %.2e (tol %.0e), image MAE %.3f/255 (tol %.2f)\n",
           worst_lat, LATENT_TOL, worst_u8, U8_MAE_TOL);
    sdc_st_close(ref);
}

/* ---- configs and weights that disagree -------------------------------- */

/* The text file at src into dst with its first `from` replaced by `to`
 * (from NULL: unchanged). */
static int copy_edit(const char *src, const char *dst, const char *from, const char *to) {
    size_t n = 0;
    char *buf = t_read_file(src, &n);
    if (!buf) return 0;
    char *p = from ? strstr(buf, from) : NULL; /* text: t_read_file ends it with a NUL */
    FILE *f = (!from || p) ? fopen(dst, "wb") : NULL;
    int ok = f != NULL;
    if (f) {
        size_t head = p ? (size_t)(p - buf) : n;
        ok &= fwrite(buf, 1, head, f) == head;
        if (p) {
            ok &= fputs(to, f) >= 0;
            size_t tail = n - head - strlen(from);
            ok &= fwrite(p + strlen(from), 1, tail, f) == tail;
        }
        ok &= fclose(f) == 0;
    }
    free(buf);
    return ok;
}

/* A folder of tiny-sd's text encoder, VAE and scheduler (linked) with the
 * UNet weights of weights_from/ and its unet/config.json from config_from/
 * with from -> to (from NULL: unchanged). */
static const char *mixed_folder(const char *name, const char *weights_from,
                                const char *config_from, const char *from, const char *to) {
    static char root[1024];
    char path[1400], src[1400];
    snprintf(root, sizeof root, "%s", t_tmp(name));
    mkdir(root, 0755);
    snprintf(path, sizeof path, "%s/unet", root);
    mkdir(path, 0755);
    const char *parts[] = {"vae", "text_encoder", "scheduler"};
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof src, "%s/%s", t_fixture("tiny-sd"), parts[i]);
        snprintf(path, sizeof path, "%s/%s", root, parts[i]);
        CHECK(symlink(src, path) == 0);
    }
    snprintf(src, sizeof src, "%s/unet/diffusion_pytorch_model.safetensors",
             t_fixture(weights_from));
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", root);
    CHECK(symlink(src, path) == 0);
    snprintf(src, sizeof src, "%s/unet/config.json", t_fixture(config_from));
    snprintf(path, sizeof path, "%s/unet/config.json", root);
    CHECK(copy_edit(src, path, from, to));
    return root;
}

/* Opening path fails with SDC_ERR_FORMAT and a message holding each of
 * the NULL-terminated parts. */
static void expect_format(const char *path, const char *const *parts) {
    sdc_model *m = NULL;
    sdc_status st = sdc_model_load(path, NULL, &m);
    const char *msg = sdc_last_error();
    CHECKF(st == SDC_ERR_FORMAT && !m, "%s: status %d (%s)", path, (int)st, msg);
    for (; *parts; parts++) CHECKF(strstr(msg, *parts), "'%s' not in: %s", *parts, msg);
    printf("  %s\n", msg);
    sdc_model_free(m);
}

static void test_bad_input(void) {
    const char *root;
    char weights[1400];
    /* the config asks for the embedding, the weights have none */
    root = mixed_folder("lcm-no-weight", "tiny-sd", "tiny-sd-lcm", NULL, NULL);
    snprintf(weights, sizeof weights, "%s/unet/diffusion_pytorch_model.safetensors", root);
    expect_format(root, (const char *const[]){weights, "time_cond_proj_dim 24",
                                              "time_embedding.cond_proj.weight", "missing", NULL});
    /* the weights have it, the config does not: refused, not dropped */
    root = mixed_folder("lcm-no-config", "tiny-sd-lcm", "tiny-sd", NULL, NULL);
    snprintf(weights, sizeof weights, "%s/unet/diffusion_pytorch_model.safetensors", root);
    expect_format(root, (const char *const[]){weights, "present", "unet/config.json",
                                              "no time_cond_proj_dim", NULL});
    /* a width other than the weight's */
    root = mixed_folder("lcm-bad-dim", "tiny-sd-lcm", "tiny-sd-lcm", "\"time_cond_proj_dim\": 24",
                        "\"time_cond_proj_dim\": 16");
    snprintf(weights, sizeof weights, "%s/unet/diffusion_pytorch_model.safetensors", root);
    expect_format(root, (const char *const[]){weights, "shape [32, 24]", "expected [32, 16]",
                                              NULL});
    /* a bad time_cond_proj_dim in the config */
    root = mixed_folder("lcm-bad-json", "tiny-sd-lcm", "tiny-sd-lcm", "\"time_cond_proj_dim\": 24",
                        "\"time_cond_proj_dim\": 0");
    expect_format(root, (const char *const[]){"unet/config.json", "time_cond_proj_dim", NULL});
    /* a single file whose cond_proj is transposed ([24, 32]: the same bytes) */
    const char *file = t_tmp("lcm-transposed.safetensors");
    const char *key = "\"model.diffusion_model.time_embedding.cond_proj.weight\":{";
    size_t n = 0;
    char *buf = t_read_file(t_fixture("tiny-sd-lcm.safetensors"), &n);
    char *at = buf && n > 8 ? strstr(buf + 8, key) : NULL; /* the JSON header, after its size */
    char *shape = at ? strstr(at, "\"shape\":[32,24]") : NULL;
    CHECKF(shape, "no cond_proj shape in the fixture's header");
    if (shape) {
        memcpy(shape, "\"shape\":[24,32]", strlen("\"shape\":[24,32]"));
        FILE *f = fopen(file, "wb");
        CHECK(f && fwrite(buf, 1, n, f) == n && fclose(f) == 0);
        expect_format(file, (const char *const[]){file, "shape [24, 32]", "expected [32, N]",
                                                   NULL});
    }
    free(buf);
}

int main(void) {
    RUN(test_unet_folder);
    RUN(test_unet_single_file);
    RUN(test_pipelines);
    RUN(test_opencl);
    RUN(test_bad_input);
    return t_summary();
}
