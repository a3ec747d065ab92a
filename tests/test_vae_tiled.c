/* Tiled VAE decoding (sdc_vae_decode_tiled, sdc_gen_params.vae_tiling)
 * against diffusers' AutoencoderKL with enable_tiling() on the tiny
 * random-weight VAE (tests/fixtures/vae_tiled_ref.safetensors, made by
 * scripts/fixtures_lib/vae_tiling.py): tile 8 latents (sample_size 16 / 2),
 * stride 6, blend 4 pixels; latents larger than a tile in both dimensions
 * and non-square (a: [2, 4, 13, 20], short last tiles) and as high as a tile
 * but wider (b: [1, 4, 8, 14]); the whole-latent decode on the same latents
 * against diffusers without tiling.  Both layouts on the fast CPU ops, the
 * tiled decode also on the reference ops (diffusers folder).  Tolerance: relative L2 error <= 1e-4 (as test_vae).
 *
 * Also: the arena of a tiled decode is that of one tile whatever the
 * latent's size; low-memory mode gives the same bits; the pipeline's
 * auto/on/off rule (auto = off for images up to 512 pixels a side, so the
 * existing pipeline fixtures are untouched; on = diffusers' rule) and its
 * wiring (the image is the tiled decode of its own latents). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "core/arena.h"
#include "harness.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "models/models.h"
#include "pipeline/pipeline_internal.h"
#include "sdc.h"

#define TOL 1e-4
#define TILE 8 /* diffusers' tile_latent_min_size of the tiny VAE */
enum { ZC = 4, OC = 3, F = 2 };

typedef struct ref_case {
    const char *name;
    int N, h, w;
} ref_case;
static const ref_case CASES[] = {{"a", 2, 13, 20}, {"b", 1, 8, 14}};

/* Decodes z host [N, 4, h, w] -> img host [N, 3, 2h, 2w], in tiles of
 * `tile` (0: whole, sdc_vae_decode), with an arena planned for the call.
 * be NULL: plans only.  Returns the planned arena size, bytes. */
static size_t decode(const sdc_vae *m, sdc_backend *be, int N, int h, int w, int tile,
                     const float *z, float *img) {
    const size_t nz = (size_t)N * ZC * h * w, ni = (size_t)N * OC * F * h * F * w;
    sdc_arena a = {0};
    float *zd = NULL, *id = NULL;
    sdc_arena_plan(&a);
    if (tile) {
        sdc_vae_decode_tiled(m, sdc_backend_null(), &a, NULL, N, h, w, tile, NULL, NULL);
    } else {
        zd = sdc_arena_alloc(&a, nz), id = sdc_arena_alloc(&a, ni);
        sdc_vae_decode(m, sdc_backend_null(), &a, zd, N, h, w, id);
        sdc_arena_reset(&a, 0);
    }
    const size_t peak = a.peak;
    CHECK(!a.overflow && a.top == 0);
    if (!be) goto done;
    CHECK(sdc_arena_commit(&a, 0) == SDC_OK);
    if (tile) {
        float *work = malloc(sdc_vae_tiled_work_floats(m, N, w, tile) * sizeof(float));
        CHECK(work != NULL);
        if (work) sdc_vae_decode_tiled(m, be, &a, z, N, h, w, tile, img, work);
        free(work);
    } else {
        zd = sdc_arena_alloc(&a, nz), id = sdc_arena_alloc(&a, ni);
        be->copy_in(be, zd, z, (int64_t)nz);
        sdc_vae_decode(m, be, &a, zd, N, h, w, id);
        be->copy_out(be, img, id, (int64_t)ni);
        sdc_arena_reset(&a, 0);
    }
    CHECK(!a.overflow && a.top == 0 && a.peak == peak);
done:
    sdc_arena_free(&a);
    return peak;
}

typedef struct opened {
    sdc_model_files *mf;
    sdc_vae *m;
} opened;

static opened open_vae(const char *fixture) {
    opened o = {NULL, NULL};
    sdc_status st = sdc_model_files_open(t_fixture(fixture), &o.mf);
    CHECKF(st == SDC_OK, "%s: %s", fixture, sdc_last_error());
    if (st == SDC_OK) {
        st = sdc_vae_create(o.mf, &o.m);
        CHECKF(st == SDC_OK, "%s: %s", fixture, sdc_last_error());
    }
    return o;
}

static void close_vae(opened *o) {
    sdc_vae_free(o->m);
    sdc_model_files_close(o->mf);
}

/* The tile comes from the VAE's sample_size as diffusers computes it:
 * config.json says 16 (tile 8); the single file has no config, so SD 1.x's
 * 512 (what diffusers' from_single_file uses; tile 256 at f = 2). */
static void test_tile_size(void) {
    opened d = open_vae("tiny-sd"), s = open_vae("tiny-sd.safetensors");
    if (d.m) CHECK(sdc_vae_cfg(d.m)->sample_size == 16 && sdc_vae_tile_latent(d.m) == TILE);
    if (s.m) CHECK(sdc_vae_cfg(s.m)->sample_size == 512 && sdc_vae_tile_latent(s.m) == 256);
    close_vae(&d);
    close_vae(&s);
}

static void check_layout(const char *fixture, int with_ref) {
    opened o = open_vae(fixture);
    sdc_st_file *ref = NULL;
    CHECK(sdc_st_open(t_fixture("vae_tiled_ref.safetensors"), &ref) == SDC_OK);
    if (!o.m || !ref) goto done;
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        const ref_case *c = &CASES[k];
        const size_t nz = (size_t)c->N * ZC * c->h * c->w;
        const size_t ni = (size_t)c->N * OC * F * c->h * F * c->w;
        char key[3][16];
        snprintf(key[0], sizeof key[0], "%s.z", c->name);
        snprintf(key[1], sizeof key[1], "%s.tiled", c->name);
        snprintf(key[2], sizeof key[2], "%s.whole", c->name);
        const float *z = t_ref_f32(ref, key[0], (int64_t)nz);
        const float *want_tiled = t_ref_f32(ref, key[1], (int64_t)ni);
        const float *want_whole = t_ref_f32(ref, key[2], (int64_t)ni);
        float *got = malloc(ni * sizeof *got), *low = malloc(ni * sizeof *low);
        if (!z || !want_tiled || !want_whole || !got || !low) goto next;
        /* the fixture tells the two apart far beyond the tolerance */
        double apart = t_rel_l2(want_tiled, want_whole, ni);
        CHECKF(apart > 100 * TOL, "%s: tiled and whole references differ by only %.3g",
               c->name, apart);
        for (int p = 0; p < t_npaths(); p++) {
            const int force_ref = strcmp(t_path_name(p), "ref") == 0;
            if (force_ref && !with_ref) continue;
            sdc_backend *be = t_path_backend(p, 2);
            if (!be) continue;
            /* the reference ops: the tiled decode only, on one layout (the
             * whole decode on them is test_vae's; the layouts differ only
             * in loading), which keeps the test short under qemu */
            for (int tiled = force_ref; tiled <= 1; tiled++) {
                memset(got, 0xff, ni * sizeof *got); /* NaN: every pixel must be written */
                decode(o.m, be, c->N, c->h, c->w, tiled ? TILE : 0, z, got);
                double e = t_rel_l2(got, tiled ? want_tiled : want_whole, ni);
                CHECKF(e <= TOL, "%s %s %s %s: rel L2 %.3g", fixture, c->name,
                       tiled ? "tiled" : "whole", t_path_name(p), e);
                printf("  %-20s %s %-5s %-7s rel L2 %.2e (tiled vs whole %.2f)\n", fixture,
                       c->name, tiled ? "tiled" : "whole", t_path_name(p), e, apart);
            }
            if (!force_ref) { /* got: tiled, fast ops */
                sdc_vae_set_low_memory(o.m, 1);
                decode(o.m, be, c->N, c->h, c->w, TILE, z, low);
                sdc_vae_set_low_memory(o.m, 0);
                CHECKF(memcmp(got, low, ni * sizeof *got) == 0,
                       "%s %s: low-memory tiled decode differs", fixture, c->name);
            }
            be->free(be);
        }
    next:
        free(got);
        free(low);
    }
done:
    sdc_st_close(ref);
    close_vae(&o);
}

static void test_tiled_single_file(void) { check_layout("tiny-sd.safetensors", 0); }
static void test_tiled_diffusers_folder(void) { check_layout("tiny-sd", 1); }

/* The arena of a tiled decode is exactly that of the whole decode of one
 * T x T tile (its latent, its image and the decoder's activations), for any
 * latent size; the host workspace grows with the width only and stays far
 * below the image. */
static void test_arena_bounded(void) {
    opened o = open_vae("tiny-sd");
    if (!o.m) goto done;
    const size_t one_tile = decode(o.m, NULL, 1, TILE, TILE, 0, NULL, NULL);
    static const int sizes[][2] = {{9, 8}, {13, 20}, {64, 96}, {200, 37}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const int h = sizes[k][0], w = sizes[k][1];
        const size_t tiled = decode(o.m, NULL, 1, h, w, TILE, NULL, NULL);
        const size_t whole = decode(o.m, NULL, 1, h, w, 0, NULL, NULL);
        const size_t work = sdc_vae_tiled_work_floats(o.m, 1, w, TILE) * sizeof(float);
        const size_t image = (size_t)OC * F * h * F * w * sizeof(float);
        CHECKF(tiled == one_tile, "%dx%d: tiled arena %zu bytes, one tile's %zu", h, w, tiled,
               one_tile);
        CHECK(whole > tiled);
        CHECK(sdc_vae_tiled_work_floats(o.m, 1, 2 * w, TILE) <=
              2 * sdc_vae_tiled_work_floats(o.m, 1, w, TILE));
        if (h * w >= 64 * 64) CHECK(work * 4 < image);
        printf("  latent %3dx%-3d arena: tiled %6zu KiB, whole %6zu KiB; host work %4zu KiB, "
               "image %5zu KiB\n",
               h, w, tiled >> 10, whole >> 10, work >> 10, image >> 10);
    }
done:
    close_vae(&o);
}

/* ---- the pipeline's modes -------------------------------------------------- */

typedef struct gen_out {
    sdc_image img;
    float *lat, *rgbf; /* [C, h, w], [H, W, 3] */
} gen_out;

static int generate(sdc_model *m, int W, int H, sdc_vae_tiling mode, gen_out *o) {
    const int f = sdc_model_vae_scale(m), C = sdc_model_latent_channels(m);
    memset(o, 0, sizeof *o);
    o->lat = malloc((size_t)C * (H / f) * (W / f) * sizeof(float));
    o->rgbf = malloc((size_t)H * W * 3 * sizeof(float));
    sdc_gen_params gp = sdc_gen_params_default();
    CHECK(gp.vae_tiling == SDC_VAE_TILING_AUTO);
    gp.prompt = "a lighthouse at dawn";
    gp.width = W, gp.height = H;
    gp.steps = 1; /* the modes differ only in the decode (and qemu is slow) */
    gp.seed = 77;
    gp.vae_tiling = mode;
    sdc_gen_debug dbg = {.latents = o->lat, .image = o->rgbf};
    sdc_status st = o->lat && o->rgbf ? sdc_generate_debug(m, &gp, &o->img, NULL, &dbg)
                                      : SDC_ERR_NOMEM;
    CHECKF(st == SDC_OK, "%dx%d mode %d: %s", W, H, (int)mode, sdc_last_error());
    return st == SDC_OK;
}

static void gen_free(gen_out *o) {
    sdc_image_free(&o->img);
    free(o->lat);
    free(o->rgbf);
}

static int same(const gen_out *a, const gen_out *b) {
    size_t n = (size_t)a->img.width * a->img.height * 3;
    return a->img.data && b->img.data && memcmp(a->img.data, b->img.data, n) == 0 &&
           memcmp(a->rgbf, b->rgbf, n * sizeof(float)) == 0;
}

/* The image equals the tiled decode of the pipeline's own final latents
 * (/ scaling_factor, then x*0.5+0.5 clamped to [0, 1]). */
static void check_wiring(const opened *o, const gen_out *g) {
    const int W = g->img.width, H = g->img.height, h = H / F, w = W / F;
    const size_t nz = (size_t)ZC * h * w, plane = (size_t)H * W;
    float *z = malloc(nz * sizeof *z), *img = malloc(3 * plane * sizeof *img);
    sdc_backend *be = sdc_backend_cpu_create(2, 0);
    if (z && img && be) {
        const float sf = sdc_vae_cfg(o->m)->scaling_factor;
        for (size_t i = 0; i < nz; i++) z[i] = g->lat[i] / sf;
        decode(o->m, be, 1, h, w, TILE, z, img);
        double worst = 0;
        for (size_t i = 0; i < plane; i++)
            for (int c = 0; c < 3; c++) {
                float v = img[c * plane + i] * 0.5f + 0.5f;
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                worst = fmax(worst, fabs((double)v - g->rgbf[i * 3 + c]));
            }
        CHECKF(worst <= 1e-5, "%dx%d: pipeline image vs tiled decode of its latents: %.3g", W,
               H, worst);
    }
    if (be) be->free(be);
    free(z);
    free(img);
}

static void test_pipeline_modes(void) {
    sdc_model *m = NULL, *low = NULL;
    sdc_load_params lp = sdc_load_params_default();
    lp.n_threads = 2;
    CHECKF(sdc_model_load(t_fixture("tiny-sd"), &lp, &m) == SDC_OK, "%s", sdc_last_error());
    lp.low_memory = 1;
    CHECKF(sdc_model_load(t_fixture("tiny-sd"), &lp, &low) == SDC_OK, "%s", sdc_last_error());
    opened o = open_vae("tiny-sd");
    if (!m || !low || !o.m) goto done;

    /* 32x32 (latent 16x16, two tiles a side): auto decodes whole as off
     * does (the pipeline fixtures' size); on tiles, as diffusers would */
    gen_out g_auto, g_on, g_off, g_low;
    if (generate(m, 32, 32, SDC_VAE_TILING_AUTO, &g_auto) &&
        generate(m, 32, 32, SDC_VAE_TILING_ON, &g_on) &&
        generate(m, 32, 32, SDC_VAE_TILING_OFF, &g_off) &&
        generate(low, 32, 32, SDC_VAE_TILING_ON, &g_low)) {
        CHECKF(same(&g_auto, &g_off), "auto at 32x32 is not the whole decode");
        CHECKF(!same(&g_on, &g_off), "on at 32x32 did not tile");
        CHECKF(same(&g_on, &g_low), "low-memory mode changes the tiled image");
        check_wiring(&o, &g_on);
    }
    gen_free(&g_auto), gen_free(&g_on), gen_free(&g_off), gen_free(&g_low);

    /* wider than 512 pixels: auto tiles as on does */
    if (generate(m, 528, 16, SDC_VAE_TILING_AUTO, &g_auto) &&
        generate(m, 528, 16, SDC_VAE_TILING_ON, &g_on) &&
        generate(m, 528, 16, SDC_VAE_TILING_OFF, &g_off)) {
        CHECKF(same(&g_auto, &g_on), "auto at 528x16 is not the tiled decode");
        CHECKF(!same(&g_on, &g_off), "on at 528x16 did not tile");
        check_wiring(&o, &g_on);
    }
    gen_free(&g_auto), gen_free(&g_on), gen_free(&g_off);

    /* a latent no larger than a tile is decoded whole in every mode */
    if (generate(m, 16, 16, SDC_VAE_TILING_ON, &g_on) &&
        generate(m, 16, 16, SDC_VAE_TILING_OFF, &g_off))
        CHECKF(same(&g_on, &g_off), "on tiles a latent of one tile");
    gen_free(&g_on), gen_free(&g_off);

    /* an unknown mode is refused before any work */
    sdc_gen_params gp = sdc_gen_params_default();
    gp.width = gp.height = 32;
    gp.vae_tiling = SDC_VAE_TILING_COUNT;
    sdc_image img;
    CHECK(sdc_generate(m, &gp, &img, NULL) == SDC_ERR_INVALID_ARG);
    CHECK(strstr(sdc_last_error(), "tiling") != NULL && img.data == NULL);
    gp.vae_tiling = (sdc_vae_tiling)-1;
    CHECK(sdc_generate(m, &gp, &img, NULL) == SDC_ERR_INVALID_ARG);
done:
    close_vae(&o);
    sdc_model_free(m);
    sdc_model_free(low);
}

int main(void) {
    RUN(test_tile_size);
    RUN(test_tiled_single_file);
    RUN(test_tiled_diffusers_folder);
    RUN(test_arena_bounded);
    RUN(test_pipeline_modes);
    return t_summary();
}
