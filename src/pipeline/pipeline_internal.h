/* Test hooks into the pipeline (not public API). */
#ifndef SDC_PIPELINE_INTERNAL_H
#define SDC_PIPELINE_INTERNAL_H

#include "sdc.h"

/* What sdc_generate_debug copies out besides the image.  Each pointer is
 * caller-owned memory or NULL (not wanted). */
typedef struct sdc_gen_debug {
    /* [C, h, w] with h = height/f, w = width/f (f = sdc_model_vae_scale,
     * C = the UNet's in_channels): the final latents, before the division
     * by the VAE's scaling factor (diffusers' output_type="latent"). */
    float *latents;
    /* [height, width, 3]: the decoded image after x*0.5+0.5 and the clamp
     * to [0, 1], before quantisation (diffusers' output_type="np"). */
    float *image;
    /* [B, S, D] (ctx_cap floats): the text encoder's conditioning, the
     * negative prompt's first when B == 2; *ctx_tokens = S. */
    float *ctx;
    size_t ctx_cap;
    int *ctx_tokens;
    /* 1: stop after the text stage (out stays empty, SDC_OK). */
    int text_only;
} sdc_gen_debug;

/* sdc_generate, plus the copies asked for in dbg (may be NULL). */
sdc_status sdc_generate_debug(sdc_model *model, const sdc_gen_params *params, sdc_image *out,
                              sdc_timings *timings, const sdc_gen_debug *dbg);

/* Makes the model's weights the originals plus loras[0..n) (models/lora.h,
 * sdc_lora_merge): nothing when they are what is merged now, the originals
 * for n == 0.  sdc_generate calls it with its params' list before the text
 * encoder runs.  On failure the originals are back and the message names
 * the file. */
sdc_status sdc_model_apply_loras(sdc_model *m, const sdc_lora *loras, int n);

/* The UNet's in_channels (latent channels). */
int sdc_model_latent_channels(const sdc_model *model);

/* Bytes of weights the model has released so far (low-memory mode: every
 * block after it runs; sdc_model_files_released_bytes). */
size_t sdc_model_released_bytes(const sdc_model *model);

#endif
