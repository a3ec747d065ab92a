/* The VAE against diffusers' AutoencoderKL on the tiny random-weight model
 * (tests/fixtures/vae_ref.safetensors, scripts/fixtures_lib/models.py), in
 * both layouts (F32 in both; the single file holds the original layout's
 * [C, C, 1, 1] mid-block attention weights), with the fast and the
 * reference CPU ops.  Tolerance: relative L2 error <= 1e-4. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "core/arena.h"
#include "harness.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "models/models.h"

#define TOL 1e-4
enum { ZC = 4, ZH = 8, ZW = 8, IC = 3, IH = 16, IW = 16 };

/* decode != 0: z [1, 4, 8, 8] -> image [1, 3, 16, 16]; else image -> moments [1, 8, 8, 8] */
static void pass(const sdc_vae *m, sdc_backend *be, sdc_arena *a, int decode, const float *in,
                 float *out) {
    size_t mark = sdc_arena_mark(a);
    size_t nz = ZC * ZH * ZW, ni = IC * IH * IW, nm = 2 * nz;
    size_t nin = decode ? nz : ni, nout = decode ? ni : nm;
    float *id = sdc_arena_alloc(a, nin), *od = sdc_arena_alloc(a, nout);
    be->copy_in(be, id, in, (int64_t)nin);
    if (decode)
        sdc_vae_decode(m, be, a, id, 1, ZH, ZW, od);
    else
        sdc_vae_encode(m, be, a, id, 1, IH, IW, od);
    be->copy_out(be, out, od, (int64_t)nout);
    sdc_arena_reset(a, mark);
}

static void check_layout(const char *fixture) {
    sdc_model_files *mf = NULL;
    sdc_st_file *ref = NULL;
    sdc_vae *m = NULL;
    sdc_status st = sdc_model_files_open(t_fixture(fixture), &mf);
    CHECKF(st == SDC_OK, "%s: %s", fixture, sdc_last_error());
    if (st != SDC_OK) return;
    st = sdc_vae_create(mf, &m);
    CHECKF(st == SDC_OK, "%s: %s", fixture, sdc_last_error());
    CHECK(sdc_st_open(t_fixture("vae_ref.safetensors"), &ref) == SDC_OK);
    if (!m || !ref) goto done;
    const sdc_vae_config *c = sdc_vae_cfg(m);
    CHECK(c->levels == 2 && c->channels[0] == 32 && c->channels[1] == 64 &&
          c->layers_per_block == 1 && c->latent_channels == 4 && c->groups == 32);
    const char *names[2][2] = {{"image", "moments"}, {"z", "decoded"}};
    const int64_t sizes[2][2] = {{IC * IH * IW, 2 * ZC * ZH * ZW}, {ZC * ZH * ZW, IC * IH * IW}};
    for (int decode = 0; decode <= 1; decode++) {
        const float *in = t_ref_f32(ref, names[decode][0], sizes[decode][0]);
        const float *want = t_ref_f32(ref, names[decode][1], sizes[decode][1]);
        float *got = calloc((size_t)sizes[decode][1], sizeof(float));
        if (!in || !want || !got) {
            free(got);
            continue;
        }
        sdc_arena a = {0};
        sdc_arena_plan(&a);
        pass(m, sdc_backend_null(), &a, decode, NULL, NULL);
        CHECK(!a.overflow && a.top == 0);
        size_t peak = a.peak;
        CHECK(sdc_arena_commit(&a, 0) == SDC_OK);
        for (int p = 0; p < t_npaths(); p++) {
            sdc_backend *be = t_path_backend(p, 2);
            if (!be) continue;
            pass(m, be, &a, decode, in, got);
            CHECK(!a.overflow && a.top == 0 && a.peak == peak);
            double e = t_rel_l2(got, want, (size_t)sizes[decode][1]);
            CHECKF(e <= TOL, "%s %s %s: rel L2 %.3g", fixture, names[decode][1],
                   t_path_name(p), e);
            printf("  %-20s %-8s %-7s rel L2 %.2e  arena %zu KiB\n", fixture, names[decode][1],
                   t_path_name(p), e, peak >> 10);
            be->free(be);
        }
        sdc_arena_free(&a);
        free(got);
    }
done:
    sdc_vae_free(m);
    sdc_st_close(ref);
    sdc_model_files_close(mf);
}

static void test_vae_single_file(void) { check_layout("tiny-sd.safetensors"); }
static void test_vae_diffusers_folder(void) { check_layout("tiny-sd"); }


int main(void) {
    RUN(test_vae_single_file);
    RUN(test_vae_diffusers_folder);
    return t_summary();
}
