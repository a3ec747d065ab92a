/* libFuzzer harness: the safetensors reader (io/safetensors.c) and the
 * tensor-name mapping (io/name_map.c).
 *
 * Input: the bytes of one .safetensors file (given to sdc_st_open through
 * an in-memory file).  On success every tensor must be what safetensors.h
 * promises: found again by its name, a known dtype, at most SDC_MAX_DIMS
 * dims whose product times the dtype size is nbytes, data aligned to the
 * dtype and readable to its last byte (read here: ASan checks the copies
 * of misaligned tensors, the mapping faults past the file).  On failure
 * *out is NULL and there is a message.  Every name then goes through both
 * name mappings, with a roomy and a tight output buffer. */
#include "fuzz_util.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "core/weights.h"
#include "io/name_map.h"
#include "io/safetensors.h"

static void map_names(const char *name) {
    static const sdc_orig_layout lays[] = {{1, 1}, {2, 2}, {2, 4}, {3, 3}};
    static const size_t caps[] = {512, 24};
    static const char *const comps[] = {"unet", "vae", "text_encoder"};
    char out[512];
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        for (size_t l = 0; l < sizeof lays / sizeof lays[0]; l++) {
            sdc_name_result r = sdc_name_from_original(name, &lays[l], out, caps[c]);
            FZ_ASSERT(r == SDC_NAME_MAPPED || r == SDC_NAME_IGNORED || r == SDC_NAME_BAD,
                      "result %d", (int)r);
            if (r == SDC_NAME_MAPPED)
                FZ_ASSERT(strnlen(out, caps[c]) < caps[c], "unterminated mapping of '%.100s'",
                          name);
        }
        for (size_t k = 0; k < sizeof comps / sizeof comps[0]; k++) {
            sdc_name_result r = sdc_name_from_diffusers(comps[k], name, out, caps[c]);
            FZ_ASSERT(r == SDC_NAME_MAPPED || r == SDC_NAME_BAD, "result %d", (int)r);
            if (r == SDC_NAME_MAPPED)
                FZ_ASSERT(strnlen(out, caps[c]) < caps[c], "unterminated mapping of '%.100s'",
                          name);
        }
    }
}

static void check_tensor(const sdc_st_file *f, size_t i) {
    const sdc_weight *w = sdc_st_at(f, i);
    FZ_ASSERT(w != NULL, "no tensor %zu of %zu", i, sdc_st_count(f));
    FZ_ASSERT(w->name != NULL, "tensor %zu has no name", i);
    FZ_ASSERT(sdc_st_find(f, w->name) == w, "'%.100s' is not found by its name", w->name);
    FZ_ASSERT(w->dtype >= 0 && w->dtype < SDC_DT_COUNT, "dtype %d", (int)w->dtype);
    FZ_ASSERT(w->ndim >= 0 && w->ndim <= SDC_MAX_DIMS, "ndim %d", w->ndim);
    size_t es = sdc_dtype_size(w->dtype);
    int64_t numel = 1;
    for (int d = 0; d < w->ndim; d++) {
        FZ_ASSERT(w->shape[d] >= 0, "dim %d is %lld", d, (long long)w->shape[d]);
        if (w->shape[d] == 0) numel = 0;
    }
    for (int d = 0; d < w->ndim && numel; d++) numel *= w->shape[d]; /* <= nbytes: fits */
    FZ_ASSERT(w->numel == numel && (uint64_t)w->nbytes == (uint64_t)numel * es,
              "'%.100s': numel %lld nbytes %zu, shape says %lld", w->name, (long long)w->numel,
              w->nbytes, (long long)numel);
    if (w->nbytes == 0) return;
    FZ_ASSERT(w->data != NULL && (uintptr_t)w->data % es == 0, "'%.100s': data %p not aligned",
              w->name, w->data);
    const volatile unsigned char *p = w->data;
    unsigned sum = 0;
    for (size_t k = 0; k < w->nbytes; k++) sum += p[k];
    (void)sum;
    if (w->dtype == SDC_DT_F32 || w->dtype == SDC_DT_F16 || w->dtype == SDC_DT_BF16) {
        (void)sdc_weight_get(w, 0);
        (void)sdc_weight_get(w, w->numel - 1);
    }
    sdc_st_advise(f, w->data, w->nbytes, SDC_PAGES_PREFETCH);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fz_memfile(data, size, path);
    sdc_st_file *f = (sdc_st_file *)&fd; /* must become NULL on failure */
    sdc_status st = sdc_st_open(path, &f);
    fz_report("open", st, sdc_last_error());
    if (st != SDC_OK) {
        FZ_ASSERT(f == NULL, "failed open left *out set");
        FZ_ASSERT(*sdc_last_error() != 0, "failure (%d) without a message", (int)st);
        close(fd);
        return 0;
    }
    size_t n = sdc_st_count(f);
    for (size_t i = 0; i < n; i++) check_tensor(f, i);
    FZ_ASSERT(sdc_st_at(f, n) == NULL, "a tensor past the count");
    for (size_t i = 0; i < n; i++) map_names(sdc_st_at(f, i)->name);
    (void)sdc_st_metadata(f, "format");
    (void)sdc_st_find(f, "model.diffusion_model.conv_in.weight");
    sdc_st_close(f);
    close(fd);
    return 0;
}
