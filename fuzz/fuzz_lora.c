/* libFuzzer harness: LoRA files (models/lora.c) against the tiny model
 * (tests/fixtures/tiny-sd, opened once): key forms, SDXL and Tucker
 * refusals, name resolution, shape, dtype, rank and alpha checks, PEFT's
 * adapter metadata; then an opened file is merged at weight 1 and the
 * originals restored.
 *
 * Input: one .safetensors file, extended with a hole (zeros) up to the
 * largest data_offsets end its header names (at most 16 MiB), so that a
 * seed needs only the 8 + header bytes of a real file.
 * Properties: a failure leaves *out NULL and sets a message naming the
 * file; every module of an opened file updates a Linear or Conv2d weight of
 * the model with factors that fit it, a rank in 1..SDC_LORA_MAX_RANK and a
 * finite scale, in weight order; a merge succeeds or fails with a message,
 * and either way leaves every weight's data its original. */
#include "fuzz_util.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "io/model_files.h"
#include "models/lora.h"

#define MAX_DATA ((uint64_t)16 << 20)

static sdc_model_files *model(void) {
    static sdc_model_files *mf;
    if (mf) return mf;
    char path[4096]; /* <source>/fuzz/fuzz_lora.c -> <source>/tests/fixtures/tiny-sd */
    snprintf(path, sizeof path, "%s", __FILE__);
    char *slash = strrchr(path, '/');
    if (slash) *slash = 0;
    strncat(path, "/../tests/fixtures/tiny-sd", sizeof path - strlen(path) - 1);
    if (sdc_model_files_open(path, &mf) != SDC_OK) {
        fprintf(stderr, "fuzz_lora: %s\n", sdc_last_error());
        exit(2);
    }
    return mf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sdc_model_files *mf = model();
    char path[4096];
    fz_write("lora.safetensors", data, size, fz_st_needed_size(data, size, MAX_DATA));
    fz_path(path, "lora.safetensors");
    sdc_lora_file *f = (sdc_lora_file *)&size; /* must become NULL on failure */
    sdc_status st = sdc_lora_open(path, mf, &f);
    fz_report("open", st, sdc_last_error());
    if (st != SDC_OK) {
        FZ_ASSERT(f == NULL, "failed open left *out set");
        FZ_ASSERT(strstr(sdc_last_error(), path), "failure (%d) not naming the file: %s",
                  (int)st, sdc_last_error());
        return 0;
    }
    FZ_ASSERT(sdc_lora_count(f) > 0, "opened with no module");
    for (size_t i = 0; i < sdc_lora_count(f); i++) {
        const sdc_lora_module *m = sdc_lora_at(f, i);
        const sdc_weight *w = sdc_model_files_at(mf, m->target);
        FZ_ASSERT(w && (w->ndim == 2 || w->ndim == 4), "module %zu: target", i);
        FZ_ASSERT(m->rank >= 1 && m->rank <= SDC_LORA_MAX_RANK && m->down->shape[0] == m->rank &&
                      m->up->shape[1] == m->rank,
                  "module %zu: rank %d", i, m->rank);
        FZ_ASSERT(m->up->shape[0] == w->shape[0] && m->up->numel == w->shape[0] * m->rank &&
                      m->down->numel * w->shape[0] == w->numel * m->rank,
                  "module %zu: factors do not fit %s", i, sdc_model_files_key(mf, m->target));
        FZ_ASSERT(isfinite(m->scale), "module %zu: scale", i);
        FZ_ASSERT(i == 0 || m->target > sdc_lora_at(f, i - 1)->target, "order");
    }
    /* the originals, to check the restore against */
    const size_t n = sdc_model_files_count(mf);
    const void **orig = malloc(n * sizeof *orig);
    for (size_t i = 0; i < n; i++) orig[i] = sdc_model_files_at(mf, i)->data;
    sdc_lora_close(f);
    sdc_lora set = {path, 1.0f};
    sdc_lora_merged *cur = NULL;
    st = sdc_lora_merge(mf, NULL, &set, 1, 1, 0, &cur);
    fz_report("merge", st, sdc_last_error());
    FZ_ASSERT(st == SDC_OK ? cur != NULL : cur == NULL && *sdc_last_error(), "merge status %d",
              (int)st);
    sdc_lora_unmerge(mf, NULL, cur);
    for (size_t i = 0; i < n; i++)
        FZ_ASSERT(sdc_model_files_at(mf, i)->data == orig[i], "weight %zu not restored", i);
    free(orig);
    return 0;
}
