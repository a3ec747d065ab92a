/* TAESD: madebyollin's tiny distilled autoencoder, as diffusers'
 * AutoencoderTiny (diffusers 0.42.1: models/autoencoders/autoencoder_tiny.py,
 * vae.py EncoderTiny/DecoderTiny, unet_2d_blocks.py AutoencoderTinyBlock).
 * It decodes SD latents an order of magnitude faster than the full VAE, for
 * fast images, previews and img2img encoding.
 *
 *   block(x)  = relu(conv(relu(conv(relu(conv(x))))) + x)     (3x3 convs, bias)
 *   decode(z) = 2 * D(tanh(z / 3) * 3) - 1, D = conv, relu,
 *               level l = 0 .. L-1: block x dec_blocks[l];
 *                                   l < L-1: nearest 2x, conv without bias
 *               conv to out_channels                          (f = 2^(L-1))
 *   encode(x) = E((x + 1) / 2), E = conv, level l = 0 .. L-1:
 *               (l > 0: 3x3 stride-2 conv without bias) block x enc_blocks[l];
 *               conv to latent_channels (no distribution, no random draw:
 *               diffusers' vae.encode(x).latents)
 * diffusers' pipelines decode vae.decode(latents / scaling_factor) and
 * start img2img from vae.encode(image).latents * scaling_factor
 * (scaling_factor is 1.0 for the SD TAESDs).
 *
 * Files (every one untrusted; any missing or misshapen tensor is
 * SDC_ERR_FORMAT naming it and the file):
 *   - a diffusers AutoencoderTiny folder (madebyollin/taesd): config.json
 *     and diffusion_pytorch_model.safetensors, or its .fp16 variant;
 *   - one .safetensors file with diffusers' names (encoder.layers.*,
 *     decoder.layers.*); the config is then read from the shapes and layer
 *     indices (AutoencoderTiny's defaults for the rest);
 *   - one of madebyollin's original files (taesd_decoder.safetensors:
 *     "1.weight", "3.conv.0.weight", ...; taesd_encoder.safetensors: "0.weight",
 *     ...), each holding one half: diffusers' decoder.layers.K is the
 *     original K+1 (its layer 0 is the clamp), encoder.layers.K is K.
 * A file with one half only is accepted; the other is absent
 * (sdc_taesd_cfg: has_encoder, has_decoder) and using it fails with
 * SDC_ERR_UNSUPPORTED naming the file.  Weights are F32, F16 or BF16, read in
 * place from the mapping.
 * SDXL's TAESD (taesdxl) has the same architecture and shapes and so cannot
 * be told apart: it is accepted, and decodes SD 1.x latents with SDXL's
 * colours (wrong); choosing the SD 1.x TAESD is the user's part.  A TAESD
 * for 16-channel latents (FLUX's taef1, SD3's taesd3) is refused
 * (SDC_ERR_UNSUPPORTED, named), as is any latent_channels but 4, and the full
 * VAE (AutoencoderKL) given in its place. */
#ifndef SDC_MODELS_TAESD_H
#define SDC_MODELS_TAESD_H

#include <stddef.h>

#include "backends/backend.h"
#include "core/arena.h"
#include "sdc.h"

#define SDC_TAESD_MAX_LEVELS 8
#define SDC_TAESD_MAX_BLOCKS 16 /* per level */

typedef struct sdc_taesd sdc_taesd;

/* AutoencoderTiny's config (defaults in brackets).  Its block_out_channels
 * lists must hold one value per side: every conv of EncoderTiny after the
 * first maps that side's channels to themselves, so diffusers cannot run
 * anything else either. */
typedef struct sdc_taesd_config {
    int in_channels, out_channels, latent_channels; /* [3, 3, 4] */
    int has_encoder, has_decoder;        /* which halves the file holds */
    int enc_levels, dec_levels;          /* [4, 4] */
    int enc_channels, dec_channels;      /* [64, 64] */
    int enc_blocks[SDC_TAESD_MAX_LEVELS]; /* [1, 3, 3, 3] */
    int dec_blocks[SDC_TAESD_MAX_LEVELS]; /* [3, 3, 3, 1] */
    int enc_factor, dec_factor;          /* pixels per latent position: 2^(levels-1) [8, 8] */
    float scaling_factor, shift_factor;  /* [1.0, 0.0] */
} sdc_taesd_config;

/* Opens path (a folder or a .safetensors file, as above), maps it and binds
 * every weight.  On success *out owns the mapping until sdc_taesd_free; on
 * failure *out is NULL and the message names the file and the problem. */
sdc_status sdc_taesd_open(const char *path, sdc_taesd **out);
/* Unmaps and frees (NULL allowed).  A device backend that used the weights
 * must have been told SDC_RES_RELEASE for them first (backend.h). */
void sdc_taesd_free(sdc_taesd *m);
const sdc_taesd_config *sdc_taesd_cfg(const sdc_taesd *m); /* valid until free */
/* The file's base name, for messages. */
const char *sdc_taesd_name(const sdc_taesd *m);

/* The weights of the encoder (SDC_TAESD_ENCODER), the decoder
 * (SDC_TAESD_DECODER) or both, for be->weights (SDC_RES_PREFETCH before a
 * pass, SDC_RES_RELEASE after): the first cap of them stored in out (out
 * may be NULL when cap is 0); returns how many there are (0 for an absent
 * half).  Pointers valid until sdc_taesd_free. */
enum { SDC_TAESD_ENCODER = 1, SDC_TAESD_DECODER = 2 };
size_t sdc_taesd_weights(const sdc_taesd *m, int parts, const sdc_weight **out, size_t cap);

/* Decode: z host [N, latent_channels, h, w] (latents / scaling_factor) ->
 * img host [N, out_channels, h*f, w*f], f = dec_factor, values ~[-1, 1] (not
 * clamped).  Both live in host memory: the clamp tanh(z/3)*3 is applied
 * while z is copied in, and 2x - 1 after the image is copied out, so
 * neither needs an op (see taesd.c).  The call waits for the image
 * (copy_out); if be->sync then reports a failure, img is garbage.
 * Arena: z, the image and the decoder's activations, all given back on
 * return.  Planning: against the null backend with a planning arena, z and
 * img NULL (neither is touched).  SDC_ERR_UNSUPPORTED (message set) if the
 * file has no decoder; SDC_ERR_INVALID_ARG unless 1 <= N <= 1024 and
 * h, w >= 1 with the image's sides h*f, w*f at most 65536. */
sdc_status sdc_taesd_decode(const sdc_taesd *m, sdc_backend *be, sdc_arena *a, const float *z,
                            int N, int h, int w, float *img);
/* Encode: img host [N, in_channels, H, W], values in [-1, 1], H and W
 * multiples of enc_factor -> z host [N, latent_channels, H/f, W/f]
 * (diffusers' vae.encode(img).latents: multiply by scaling_factor for the
 * sampler, as diffusers does).  (x + 1) / 2 is applied while img is copied
 * in.  Waits, arena and planning as decode.  SDC_ERR_UNSUPPORTED if the
 * file has no encoder; SDC_ERR_INVALID_ARG unless 1 <= N <= 1024 and H, W
 * are multiples of f up to 65536. */
sdc_status sdc_taesd_encode(const sdc_taesd *m, sdc_backend *be, sdc_arena *a, const float *img,
                            int N, int H, int W, float *z);

#endif
