/* Tensor names: the original (CompVis/ldm) single-file checkpoint layout
 * -> sdc's canonical names (the diffusers name with a component prefix).
 *
 *   model.diffusion_model.*                  -> unet.*
 *   first_stage_model.*                      -> vae.*
 *   cond_stage_model.transformer.[text_model.]* -> text_encoder.text_model.*
 *
 * UNet, with L = layers_per_block (the same for every level):
 *   time_embed.0 / .2                 time_embedding.linear_1 / linear_2
 *   input_blocks.0.0                  conv_in
 *   input_blocks.{1 + i*(L+1) + j}.0  down_blocks.i.resnets.j        (j < L)
 *   input_blocks.{1 + i*(L+1) + j}.1  down_blocks.i.attentions.j
 *   input_blocks.{(i+1)*(L+1)}.0.op   down_blocks.i.downsamplers.0.conv
 *   middle_block.0 / .1 / .2          mid_block.resnets.0 / attentions.0 / resnets.1
 *   output_blocks.{i*(L+1) + j}.0     up_blocks.i.resnets.j          (j <= L)
 *   output_blocks.{i*(L+1) + j}.1     up_blocks.i.attentions.j
 *   output_blocks.{i*(L+1) + L}.{1|2}.conv  up_blocks.i.upsamplers.0.conv
 *   out.0 / out.2                     conv_norm_out / conv_out
 *   resnets: in_layers.0 norm1, in_layers.2 conv1, emb_layers.1 time_emb_proj,
 *            out_layers.0 norm2, out_layers.3 conv2, skip_connection conv_shortcut
 *   attentions (SpatialTransformer): same names in both layouts.
 * VAE, with n levels:
 *   {en,de}coder.norm_out             {en,de}coder.conv_norm_out
 *   encoder.down.i.block.j            encoder.down_blocks.i.resnets.j
 *   encoder.down.i.downsample.conv    encoder.down_blocks.i.downsamplers.0.conv
 *   decoder.up.k.block.j              decoder.up_blocks.{n-1-k}.resnets.j   (reversed)
 *   decoder.up.k.upsample.conv        decoder.up_blocks.{n-1-k}.upsamplers.0.conv
 *   mid.block_1 / attn_1 / block_2    mid_block.resnets.0 / attentions.0 / resnets.1
 *   resnets: nin_shortcut             conv_shortcut
 *   attention: norm, q, k, v, proj_out   group_norm, to_q, to_k, to_v, to_out.0
 * The VAE attention's 1x1-conv weights [C, C, 1, 1] keep their shape here;
 * model_files presents them as [C, C]. */
#ifndef SDC_IO_NAME_MAP_H
#define SDC_IO_NAME_MAP_H

#include <stddef.h>

/* Facts about an original checkpoint that its names depend on. */
typedef struct sdc_orig_layout {
    int unet_layers; /* layers_per_block L (>= 1) */
    int vae_levels;  /* number of encoder.down / decoder.up levels (>= 1) */
} sdc_orig_layout;

typedef enum {
    SDC_NAME_MAPPED = 0, /* out holds the canonical name */
    SDC_NAME_IGNORED,    /* not part of an SD 1.x model (EMA copies, schedule
                             buffers, other families' tensors) */
    SDC_NAME_BAD         /* under a known prefix but malformed (bad index, too
                             long for out) */
} sdc_name_result;

/* Maps one original name to its canonical name in out[cap]. */
sdc_name_result sdc_name_from_original(const char *orig, const sdc_orig_layout *lay, char *out,
                                       size_t cap);

/* Canonical name of a tensor of a diffusers folder's component file:
 * prefix + "." + name, with the VAE attention names of older diffusers
 * (query, key, value, proj_attn) renamed to to_q, to_k, to_v, to_out.0.
 * Returns SDC_NAME_MAPPED or SDC_NAME_BAD (too long). */
sdc_name_result sdc_name_from_diffusers(const char *prefix, const char *name, char *out,
                                        size_t cap);

/* Parses a non-negative decimal index at *s (no sign, no leading zeros
 * except "0", at most 6 digits) followed by '.' and advances past the dot.
 * Returns the index or -1. */
int sdc_name_index_at(const char **s);

#endif
