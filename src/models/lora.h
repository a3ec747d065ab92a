/* LoRA: low-rank updates of a model's weights (Hu et al. 2021, "LoRA"),
 * merged into the weights:
 *
 *   W' = W + sum over files f of  weight_f * scale_m * up_m @ down_m
 *
 * for every module m (one model weight) a file updates; up [out, r],
 * down [r, in] for a Linear, down [r, in, kh, kw] and up [out, r, 1, 1] for
 * a convolution (LoCon), the product taken over r with the weight viewed as
 * [out, in * kh * kw].  scale = alpha / r where the file gives alpha, else 1
 * (with PEFT's use_rslora: alpha / sqrt(r)).
 *
 * Formats (what diffusers' load_lora_weights reads for SD 1.x, which is the
 * specification here):
 * - kohya-ss: lora_unet_<module path, '.' -> '_'>.lora_down.weight /
 *   .lora_up.weight / .alpha, and lora_te_<text encoder path> likewise.
 *   The underscored names are resolved by the underscored form of every
 *   weight the model has, never by guessing where the dots went.  UNet
 *   names in the original (CompVis) layout (lora_unet_input_blocks_4_1_
 *   proj_in, ..._output_blocks_3_0_in_layers_2, ..._input_blocks_3_0_op),
 *   which diffusers also reads for SD 1.x, through io/name_map.h's block
 *   mapping.
 * - diffusers / PEFT: unet.<path>.lora_A.weight / .lora_B.weight and
 *   text_encoder.<path>..., scale from the file's "lora_adapter_metadata"
 *   (r, lora_alpha, alpha_pattern, rank_pattern, use_rslora: what
 *   save_lora_weights stores), else a per-module .alpha, else 1.  Keys
 *   without the unet. / text_encoder. prefix (some trainers save those;
 *   diffusers drops them) are looked up in the UNet, then the text encoder.
 * - the older diffusers forms: <path>.lora.down.weight / .lora.up.weight,
 *   <path>.lora_linear_layer.down/up, and the attention processors'
 *   <attn>.processor.to_q_lora.down.weight (to_out_lora: to_out.0; in the
 *   text encoder to_q_lora: q_proj, to_out_lora: out_proj).
 * Refused: SDXL LoRAs (lora_te1_/lora_te2_, text_encoder_2., a 2048-wide
 * cross-attention, add_embedding) and LoCon's Tucker form (lora_mid), with
 * SDC_ERR_UNSUPPORTED naming them.  Tensors that update nothing this model
 * has (LoHa, LoKr, DoRA scales, other architectures' modules) are skipped
 * and listed in a warning on stderr.  A factor whose shape does not fit the
 * weight is SDC_ERR_FORMAT naming the key and both shapes.  Files are
 * untrusted: dtypes (F32, F16, BF16), ranks (1..SDC_LORA_MAX_RANK), shapes
 * and alphas (finite) are checked before anything is multiplied.
 *
 * Merging keeps the weight's dtype (an F16 weight stays F16: the sum is
 * formed in f32 and rounded once).  The merged weights live in one scratch
 * file ($TMPDIR, else /tmp; created and unlinked at once) mapped shared, so
 * that page advice can drop them from the resident set like the model's own
 * mapped weights (the pipeline releases the UNet's weights before the VAE
 * decodes); where no such file can be made (no room: a warning says so), in
 * anonymous memory.
 *
 * kohya-ss's alpha is read per module, for every module: diffusers 0.42
 * gives the attention processors and the text encoder's modules the file's
 * most common alpha instead (its alpha_pattern keeps the converted key,
 * "...processor.to_v_lora.down.weight", which names no module), so for
 * files whose alphas differ between modules its images are not the
 * trainer's; the fixtures keep to alphas both read alike. */
#ifndef SDC_MODELS_LORA_H
#define SDC_MODELS_LORA_H

#include <stddef.h>

#include "backends/backend.h"
#include "io/model_files.h"
#include "sdc.h"

#define SDC_LORA_MAX_RANK 4096

typedef struct sdc_lora_file sdc_lora_file;

/* One module of a LoRA file: the update of one model weight. */
typedef struct sdc_lora_module {
    size_t target;          /* the weight's index in the model (sdc_model_files_at) */
    const sdc_weight *down; /* [r, in(, kh, kw)]: PEFT's lora_A; in the file's mapping */
    const sdc_weight *up;   /* [out, r(, 1, 1)]: lora_B */
    int rank;               /* r */
    float scale;            /* alpha / r, or 1 */
} sdc_lora_module;

/* Opens, validates and resolves path against mf's weights.  On success *out
 * owns the file's mapping until sdc_lora_close; on failure *out is NULL and
 * the message names the file. */
sdc_status sdc_lora_open(const char *path, const sdc_model_files *mf, sdc_lora_file **out);
void sdc_lora_close(sdc_lora_file *f); /* NULL allowed */

/* "kohya", "peft" or "diffusers" (the older forms). */
const char *sdc_lora_format(const sdc_lora_file *f);
size_t sdc_lora_count(const sdc_lora_file *f);
/* Module i (0 <= i < count), in the model's weight order.  Valid until close. */
const sdc_lora_module *sdc_lora_at(const sdc_lora_file *f, size_t i);
/* The number of tensors skipped (the warning's count). */
size_t sdc_lora_skipped(const sdc_lora_file *f);

/* dst[o, k] += s * sum_j up[o, j] * down[j, k] over the module's weight,
 * dst [out, in * kh * kw] in f32 (the plain reference of the merge). */
void sdc_lora_delta_ref(const sdc_lora_module *m, float s, float *dst);

/* The set of LoRAs merged into a model's weights now. */
typedef struct sdc_lora_merged sdc_lora_merged;

/* Makes mf's weights the originals plus the updates of set[0..n) at their
 * weights, replacing what *cur merged (re-merged from the originals).  Same
 * paths and weights in the same order as *cur, the files unchanged (device,
 * inode, size, modification time): nothing to do.  n == 0: the
 * originals back, the buffers freed, *cur NULL.  be is the model's backend:
 * each replaced or restored weight is released through it first (a device
 * drops its copy, found by w->data).  The products run on a CPU backend of
 * n_threads (0: all cores) made for the call, in f32.  Prints a warning on
 * stderr for skipped tensors, and with verbose a line per file.  On failure
 * the originals are back, *cur is NULL and the message names the file. */
sdc_status sdc_lora_merge(sdc_model_files *mf, sdc_backend *be, const sdc_lora *set, int n,
                          int n_threads, int verbose, sdc_lora_merged **cur);
/* The originals back and cur freed (sdc_lora_merge with n == 0). */
void sdc_lora_unmerge(sdc_model_files *mf, sdc_backend *be, sdc_lora_merged *cur);
/* Bytes of merged weights cur holds (0 for NULL). */
size_t sdc_lora_merged_bytes(const sdc_lora_merged *cur);

#endif
