/* libFuzzer harness: opening a TAESD (models/taesd.c: layout detection,
 * diffusers' and madebyollin's names, config.json parsing, the config read
 * back from shapes and layer indices, every weight's shape checked).  No
 * decode or encode: too slow per input.
 *
 * Input: one part (no FZ_SEP): a single .safetensors file.  Two parts: an
 * AutoencoderTiny folder, part 0 its config.json and part 1 its
 * diffusion_pytorch_model.safetensors (an empty part: no such file).
 * Weights files are extended with a hole (zeros) up to the largest
 * data_offsets end their header names (at most 64 MiB), as fuzz_model
 * does, so that a seed needs only the 8 + header bytes of a real file.
 * Properties: a failure leaves *out NULL and sets a message; an opened
 * TAESD holds at least one half, 4 latent channels and factors
 * 2^(levels-1). */
#include "fuzz_util.h"

#include <stdint.h>
#include <string.h>

#include "models/taesd.h"

#define MAX_DATA ((uint64_t)64 << 20)

static void check_taesd(const sdc_taesd *m) {
    const sdc_taesd_config *c = sdc_taesd_cfg(m);
    FZ_ASSERT(c->has_encoder || c->has_decoder, "neither half");
    FZ_ASSERT(c->latent_channels == 4, "latent channels %d", c->latent_channels);
    if (c->has_encoder)
        FZ_ASSERT(c->enc_levels >= 1 && c->enc_levels <= SDC_TAESD_MAX_LEVELS &&
                      c->enc_factor == 1 << (c->enc_levels - 1),
                  "encoder levels %d, factor %d", c->enc_levels, c->enc_factor);
    if (c->has_decoder)
        FZ_ASSERT(c->dec_levels >= 1 && c->dec_levels <= SDC_TAESD_MAX_LEVELS &&
                      c->dec_factor == 1 << (c->dec_levels - 1),
                  "decoder levels %d, factor %d", c->dec_levels, c->dec_factor);
    FZ_ASSERT(sdc_taesd_name(m) != NULL, "no name");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_part parts[2];
    size_t np = fz_split(data, size, parts, 2);
    char path[4096];
    fz_clear();
    if (np == 1) {
        fz_write("taesd.safetensors", parts[0].p, parts[0].n,
                 fz_st_needed_size(parts[0].p, parts[0].n, MAX_DATA));
        fz_path(path, "taesd.safetensors");
    } else {
        if (parts[0].n) fz_write("config.json", parts[0].p, parts[0].n, 0);
        if (parts[1].n)
            fz_write("diffusion_pytorch_model.safetensors", parts[1].p, parts[1].n,
                     fz_st_needed_size(parts[1].p, parts[1].n, MAX_DATA));
        snprintf(path, sizeof path, "%s", fz_dir());
    }
    sdc_taesd *m = (sdc_taesd *)&np; /* must become NULL on failure */
    sdc_status st = sdc_taesd_open(path, &m);
    fz_report("open", st, sdc_last_error());
    if (st != SDC_OK) {
        FZ_ASSERT(m == NULL, "failed open left *out set");
        FZ_ASSERT(*sdc_last_error() != 0, "failure (%d) without a message", (int)st);
        return 0;
    }
    check_taesd(m);
    sdc_taesd_free(m);
    return 0;
}
