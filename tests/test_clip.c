/* The CLIP text encoder against transformers' CLIPTextModel
 * (last_hidden_state) on the tiny random-weight model
 * (tests/fixtures/clip_ref.safetensors, scripts/fixtures_lib/models.py), in
 * both layouts (single file F16, diffusers folder BF16), with the fast and
 * the reference CPU ops.  Tolerance: relative L2 error <= 1e-4. */
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
enum { B = 2, S = 77, D = 32 };

static void pass(const sdc_clip *m, sdc_backend *be, sdc_arena *a, const int32_t *ids, int n,
                 float *out) {
    size_t mark = sdc_arena_mark(a);
    float *od = sdc_arena_alloc(a, (size_t)n * D);
    sdc_clip_forward(m, be, a, ids, n, od);
    be->copy_out(be, out, od, (int64_t)n * D);
    sdc_arena_reset(a, mark);
}

/* Runs prompt b's first n tokens; with the causal mask these rows equal the
 * first n rows of the full-length reference. */
static void check_prompt(const sdc_clip *m, const int32_t *ids, const float *want, int n,
                         const char *what) {
    sdc_arena a = {0};
    sdc_arena_plan(&a);
    pass(m, sdc_backend_null(), &a, ids, n, NULL);
    CHECK(!a.overflow && a.top == 0);
    size_t peak = a.peak;
    CHECK(sdc_arena_commit(&a, 0) == SDC_OK);
    float *got = calloc((size_t)n * D, sizeof(float));
    for (int p = 0; p < t_npaths() && got; p++) {
        sdc_backend *be = t_path_backend(p, 2);
        if (!be) continue;
        pass(m, be, &a, ids, n, got);
        CHECK(!a.overflow && a.top == 0 && a.peak == peak);
        double e = t_rel_l2(got, want, (size_t)n * D);
        CHECKF(e <= TOL, "%s n=%d %s: rel L2 %.3g", what, n, t_path_name(p), e);
        printf("  %-32s n=%-3d %-7s rel L2 %.2e  arena %zu KiB\n", what, n, t_path_name(p), e,
               peak >> 10);
        be->free(be);
    }
    free(got);
    sdc_arena_free(&a);
}

static void check_layout(const char *fixture) {
    sdc_model_files *mf = NULL;
    sdc_st_file *ref = NULL;
    sdc_clip *m = NULL;
    sdc_status st = sdc_model_files_open(t_fixture(fixture), &mf);
    CHECKF(st == SDC_OK, "%s: %s", fixture, sdc_last_error());
    if (st != SDC_OK) return;
    st = sdc_clip_create(mf, &m);
    CHECKF(st == SDC_OK, "%s: %s", fixture, sdc_last_error());
    CHECK(sdc_st_open(t_fixture("clip_ref.safetensors"), &ref) == SDC_OK);
    if (!m || !ref) goto done;
    const sdc_clip_config *c = sdc_clip_cfg(m);
    CHECK(c->hidden == D && c->layers == 2 && c->heads == 4 && c->intermediate == 37 &&
          c->vocab_size == 49408 && c->max_positions == S && c->quick_gelu == 1);
    const sdc_weight *ids = sdc_st_find(ref, "ids");
    const sdc_weight *hid = sdc_st_find(ref, "last_hidden_state");
    CHECK(ids && ids->dtype == SDC_DT_I32 && ids->numel == B * S);
    CHECK(hid && hid->dtype == SDC_DT_F32 && hid->numel == B * S * D);
    if (!ids || ids->dtype != SDC_DT_I32 || ids->numel != B * S || !hid ||
        hid->dtype != SDC_DT_F32 || hid->numel != B * S * D)
        goto done;
    const int32_t *id = ids->data;
    const float *want = hid->data;
    char what[96];
    for (int b = 0; b < B; b++) {
        snprintf(what, sizeof what, "%s prompt %d", fixture, b);
        check_prompt(m, id + b * S, want + (size_t)b * S * D, S, what);
    }
    snprintf(what, sizeof what, "%s prompt 0 prefix", fixture);
    check_prompt(m, id, want, 5, what);
done:
    sdc_clip_free(m);
    sdc_st_close(ref);
    sdc_model_files_close(mf);
}

static void test_clip_single_file(void) { check_layout("tiny-sd.safetensors"); }
static void test_clip_diffusers_folder(void) { check_layout("tiny-sd"); }


int main(void) {
    RUN(test_clip_single_file);
    RUN(test_clip_diffusers_folder);
    return t_summary();
}
