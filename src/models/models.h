/* The three networks of SD 1.x, written once against the op interface.
 *
 * Each model binds its weights at init (checking every shape against the
 * config; a missing or misshapen tensor is SDC_ERR_FORMAT naming it) and
 * then runs forward passes that take activation memory from an arena.  A
 * forward pass against the null backend with a planning arena sizes that
 * arena (core/arena.h); the same pass against a real backend then allocates
 * nothing.  Inputs and outputs named "dev" live in activation memory;
 * "host" ones in ordinary memory. */
#ifndef SDC_MODELS_MODELS_H
#define SDC_MODELS_MODELS_H

#include <stdint.h>

#include "backends/backend.h"
#include "core/arena.h"
#include "io/model_files.h"
#include "models/config.h"

typedef struct sdc_clip sdc_clip;
typedef struct sdc_unet sdc_unet;
typedef struct sdc_vae sdc_vae;

/* ---- CLIP text encoder (transformers' CLIPTextModel, last_hidden_state) */
sdc_status sdc_clip_create(const sdc_model_files *mf, sdc_clip **out);
void sdc_clip_free(sdc_clip *m);
const sdc_clip_config *sdc_clip_cfg(const sdc_clip *m);
/* ids host [n] (n <= max_positions, each < vocab_size) -> out dev [n, hidden] */
void sdc_clip_forward(const sdc_clip *m, sdc_backend *be, sdc_arena *a, const int32_t *ids,
                      int n, float *out);

/* Vectors that replace the token embeddings of positions [pos, pos + n)
 * (textual inversion; the position embedding is added to them as to a
 * token's).  vec host [n, hidden]. */
typedef struct sdc_clip_fix {
    int pos, n;
    const float *vec;
} sdc_clip_fix;

/* The same with options: skip > 0 leaves out the last skip layers (the
 * hidden state skip layers before the last, through final_layer_norm:
 * AUTOMATIC1111's "CLIP skip" skip + 1, diffusers' clip_skip skip; 0 <=
 * skip < layers); fix [n_fix] within [0, n).  Fails only for want of host
 * memory for the fixes (SDC_ERR_NOMEM). */
sdc_status sdc_clip_forward_ex(const sdc_clip *m, sdc_backend *be, sdc_arena *a,
                               const int32_t *ids, int n, int skip, const sdc_clip_fix *fix,
                               int n_fix, float *out);

/* ---- UNet (diffusers' UNet2DConditionModel for SD 1.x) ------------------ */
sdc_status sdc_unet_create(const sdc_model_files *mf, sdc_unet **out);
void sdc_unet_free(sdc_unet *m);
const sdc_unet_config *sdc_unet_cfg(const sdc_unet *m);
/* x dev [N, in_channels, h, w], t host [N], ctx dev [N, S, cross_dim]
 * -> out dev [N, out_channels, h, w].  h and w must be multiples of
 * 2^(levels-1).  cond dev [N, time_cond_proj_dim]: the guidance-scale
 * embedding of an LCM-distilled UNet (diffusers' timestep_cond), or NULL:
 * none added (always NULL for other UNets; ignored by them).  kv: the
 * cross-attention keys and values of ctx made once by sdc_unet_context
 * (the same N, S and ctx), or NULL: each pass then makes them from ctx (a
 * plan made with NULL bounds a pass with kv).  shared != 0: the N rows
 * have one input, x's first image, one timestep, t[0], and cond's first
 * row (classifier-free guidance: one latent under N prompts); the part of
 * the pass before the prompt enters runs once.  The output is that of x
 * holding N copies, to rounding. */
void sdc_unet_forward(const sdc_unet *m, sdc_backend *be, sdc_arena *a, const float *x, int N,
                      int shared, int h, int w, const float *t, const float *cond,
                      const float *ctx, int S, const float *kv, float *out);
/* The keys and values of every cross-attention for ctx dev [N, S,
 * cross_dim] into kv dev [sdc_unet_context_floats]: they depend on the
 * prompt only, so a sampling loop makes them once instead of per step. */
size_t sdc_unet_context_floats(const sdc_unet *m, int N, int S);
void sdc_unet_context(const sdc_unet *m, sdc_backend *be, const float *ctx, int N, int S,
                      float *kv);
/* Low-memory mode (on != 0): every forward pass maps each block's weights
 * in before the block and releases them from the resident set after it
 * (models/blocks.h, sdc_pager); the results are the same, bit for bit.
 * The model files given at create must stay open. */
void sdc_unet_set_low_memory(sdc_unet *m, int on);

/* ---- VAE (diffusers' AutoencoderKL) ------------------------------------- */
sdc_status sdc_vae_create(const sdc_model_files *mf, sdc_vae **out);
void sdc_vae_free(sdc_vae *m);
const sdc_vae_config *sdc_vae_cfg(const sdc_vae *m);
/* z dev [N, latent_channels, h, w] (already divided by scaling_factor)
 * -> img dev [N, out_channels, h*f, w*f], f = 2^(levels-1); values ~[-1, 1].
 * post_quant_conv then the decoder. */
void sdc_vae_decode(const sdc_vae *m, sdc_backend *be, sdc_arena *a, const float *z, int N,
                    int h, int w, float *img);
/* Low-memory mode for sdc_vae_decode, as sdc_unet_set_low_memory. */
void sdc_vae_set_low_memory(sdc_vae *m, int on);

/* Tiled decoding: diffusers' AutoencoderKL.tiled_decode (vae.enable_tiling()),
 * which bounds the decoder's activations by one tile's whatever the image
 * size.  With T = tile (latent positions), f = 2^(levels-1):
 *   tiles    latent [i, i+T) x [j, j+T) clipped to [h, w], for i, j multiples
 *            of the stride S = 3T/4 (int(T * (1 - 0.25))) below h, w; each
 *            decoded alone by sdc_vae_decode into up to T*f x T*f pixels
 *   blend    in row-major tile order, a tile's first e rows become
 *            above[rows_above - e + y] * (1 - y/e) + tile[y] * (y/e), then its
 *            first e' columns likewise with the tile to its left, where
 *            e = min(blend, both tiles' extents), blend = T*f/4 pixels, and
 *            the neighbours are taken after their own blending
 *   crop     the tile's top-left min(extent, 3T*f/4) rows and columns go to
 *            the image at (i*f, j*f)
 * T must be a positive multiple of 4, so that 3T*f/4 = S*f and the crops
 * tile the image exactly.  diffusers tiles only when h > T or w > T; below
 * that it decodes whole (and so should the caller). */

/* diffusers' tile_latent_min_size, sample_size / f, when sample_size is a
 * multiple of 4f (every SD 1.x VAE: 512 / 8 = 64); 0 otherwise (diffusers'
 * tiles would not reassemble the image at its size: no tiling). */
int sdc_vae_tile_latent(const sdc_vae *m);
/* Floats of host workspace sdc_vae_decode_tiled needs for a latent w wide:
 * one latent tile, one decoded tile, a band of blend rows under each tile
 * column and one of blend columns (grows with w only, never with h). */
size_t sdc_vae_tiled_work_floats(const sdc_vae *m, int N, int w, int tile);
/* z host [N, latent_channels, h, w] (already divided by scaling_factor)
 * -> img host [N, out_channels, h*f, w*f], tiled as above; work host
 * [sdc_vae_tiled_work_floats(m, N, w, tile)].  All three are the caller's
 * and are neither read nor written while the arena is planning (they may
 * then be NULL).  Arena: one tile's latent and image plus sdc_vae_decode of
 * one tile, all given back on return. */
void sdc_vae_decode_tiled(const sdc_vae *m, sdc_backend *be, sdc_arena *a, const float *z,
                          int N, int h, int w, int tile, float *img, float *work);
/* img dev [N, in_channels, H, W] (H, W multiples of f) -> moments dev
 * [N, 2*latent_channels, H/f, W/f] (mean then logvar): encoder then
 * quant_conv. */
void sdc_vae_encode(const sdc_vae *m, sdc_backend *be, sdc_arena *a, const float *img, int N,
                    int H, int W, float *moments);

#endif
