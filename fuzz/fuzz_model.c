/* libFuzzer harness: opening a model (io/model_files.c: layout detection,
 * model_index.json and config.json parsing, configs inferred from shapes,
 * name mapping, family checks; io/json_util.c) and binding its weights to
 * the networks (sdc_clip_create, sdc_unet_create, sdc_vae_create: every
 * shape checked against the config).
 *
 * Input: one part (no FZ_SEP): a single-file checkpoint.  Several parts: a
 * diffusers folder, the parts in this order (an empty or missing part: no
 * such file; a component folder is made when its config or weights are):
 *   0 model_index.json              5 unet/diffusion_pytorch_model.safetensors
 *   1 unet/config.json              6 vae/diffusion_pytorch_model.safetensors
 *   2 vae/config.json               7 text_encoder/model.safetensors
 *   3 text_encoder/config.json
 *   4 scheduler/scheduler_config.json
 * Weights files are extended with a hole (zeros) up to the largest
 * data_offsets end their header names (at most 64 MiB), so that a seed
 * needs only the 8 + header bytes of a real file: the fuzzer works on
 * names, shapes and configs, and the data validation is
 * fuzz_safetensors's. */
#include "fuzz_util.h"

#include <stdint.h>
#include <string.h>

#include "io/model_files.h"
#include "models/models.h"

#define MAX_DATA ((uint64_t)64 << 20)

enum { N_PARTS = 8, FIRST_WEIGHTS = 5 };
static const char *const k_rel[N_PARTS] = {
    "model_index.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "scheduler/scheduler_config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/model.safetensors",
};
static const char *const k_dirs[] = {"unet", "vae", "text_encoder", "scheduler"};


static void write_weights(const char *rel, fz_part part) {
    fz_write(rel, part.p, part.n, fz_st_needed_size(part.p, part.n, MAX_DATA));
}

static void check_model(const sdc_model_files *mf) {
    size_t n = sdc_model_files_count(mf);
    for (size_t i = 0; i < n; i++) {
        const char *key = sdc_model_files_key(mf, i);
        FZ_ASSERT(key != NULL, "no key %zu of %zu", i, n);
        FZ_ASSERT(sdc_model_files_get(mf, key) != NULL, "'%.100s' not found by its key", key);
    }
    FZ_ASSERT(sdc_model_files_key(mf, n) == NULL, "a key past the count");
    const sdc_unet_config *u = sdc_model_files_unet(mf);
    const sdc_vae_config *v = sdc_model_files_vae(mf);
    FZ_ASSERT(u->levels >= 1 && u->levels <= SDC_MAX_LEVELS, "UNet levels %d", u->levels);
    FZ_ASSERT(v->levels >= 1 && v->levels <= SDC_MAX_LEVELS, "VAE levels %d", v->levels);
    FZ_ASSERT(sdc_model_files_name(mf) != NULL, "no name");

    /* what sdc_model_load does next: bind the weights to the networks */
    sdc_clip *clip = NULL;
    sdc_unet *unet = NULL;
    sdc_vae *vae = NULL;
    sdc_status st = sdc_clip_create(mf, &clip);
    if (st == SDC_OK) st = sdc_unet_create(mf, &unet);
    if (st == SDC_OK) st = sdc_vae_create(mf, &vae);
    fz_report("networks", st, sdc_last_error());
    if (st == SDC_OK) {
        FZ_ASSERT(sdc_clip_cfg(clip)->hidden % sdc_clip_cfg(clip)->heads == 0,
                  "text encoder hidden %d, heads %d", sdc_clip_cfg(clip)->hidden,
                  sdc_clip_cfg(clip)->heads);
    }
    sdc_vae_free(vae);
    sdc_unet_free(unet);
    sdc_clip_free(clip);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_part parts[N_PARTS];
    size_t np = fz_split(data, size, parts, N_PARTS);
    char path[4096];
    fz_clear();
    if (np == 1) {
        write_weights("model.safetensors", parts[0]);
        fz_path(path, "model.safetensors");
    } else {
        for (size_t i = np; i < N_PARTS; i++) parts[i] = (fz_part){NULL, 0};
        for (size_t d = 0; d < sizeof k_dirs / sizeof k_dirs[0]; d++) {
            size_t len = strlen(k_dirs[d]);
            int any = 0;
            for (size_t i = 0; i < N_PARTS; i++)
                any |= parts[i].n > 0 && strncmp(k_rel[i], k_dirs[d], len) == 0 &&
                       k_rel[i][len] == '/';
            if (any) fz_mkdir(k_dirs[d]);
        }
        for (size_t i = 0; i < N_PARTS; i++) {
            if (parts[i].n == 0) continue;
            if (i >= FIRST_WEIGHTS)
                write_weights(k_rel[i], parts[i]);
            else
                fz_write(k_rel[i], parts[i].p, parts[i].n, 0);
        }
        snprintf(path, sizeof path, "%s", fz_dir());
    }
    sdc_model_files *mf = (sdc_model_files *)&np; /* must become NULL on failure */
    sdc_status st = sdc_model_files_open(path, &mf);
    fz_report("open", st, sdc_last_error());
    if (st != SDC_OK) {
        FZ_ASSERT(mf == NULL, "failed open left *out set");
        FZ_ASSERT(*sdc_last_error() != 0, "failure (%d) without a message", (int)st);
        return 0;
    }
    check_model(mf);
    sdc_model_files_close(mf);
    return 0;
}
