/* A Stable Diffusion model on disk, in either layout people have:
 * - a single-file original checkpoint (.safetensors with model.diffusion_model.*,
 *   first_stage_model.*, cond_stage_model.transformer.*), or
 * - a diffusers folder (model_index.json, unet/, vae/, text_encoder/,
 *   tokenizer/, scheduler/).
 * The layout is recognised by content.  Weights are looked up by their
 * diffusers name with a component prefix, whatever the layout:
 *   "unet.down_blocks.0.resnets.0.conv1.weight"
 *   "vae.decoder.up_blocks.0.resnets.0.norm1.weight"
 *   "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.weight"
 * Every file is untrusted: all sizes and offsets are checked.
 *
 * Single files: names are mapped as io/name_map.h describes; tensors outside
 * the SD 1.x model (model_ema.*, schedule buffers) are ignored.  The VAE
 * attention's 1x1-conv weights [C, C, 1, 1] are presented as [C, C] in both
 * layouts.  Configs are inferred from shapes; what shapes cannot tell takes
 * the SD 1.x value (UNet heads 8, sample_size 64, groups 32, eps 1e-5, VAE
 * scaling_factor 0.18215 and sample_size 512, the SD 1.x schedule), except the text encoder's
 * heads: hidden / 64 (CLIP's head size), or hidden / 8 for test-size models
 * whose hidden size is not a multiple of 64.
 * Diffusers folders: {unet,vae}/diffusion_pytorch_model[.fp16].safetensors,
 * text_encoder/model[.fp16].safetensors; config.json files are validated
 * (ranges, block types) and shapes are used where one is absent. */
#ifndef SDC_IO_MODEL_FILES_H
#define SDC_IO_MODEL_FILES_H

#include "core/weights.h"
#include "io/safetensors.h"
#include "models/config.h"
#include "sdc.h"

typedef enum { SDC_LAYOUT_SINGLE_FILE = 0, SDC_LAYOUT_DIFFUSERS } sdc_layout;

typedef struct sdc_model_files sdc_model_files;

/* Opens and validates; on failure the message names the file and the
 * problem.  A model family sdc does not run (SD 2.x, SDXL, ...) is
 * SDC_ERR_UNSUPPORTED with a message naming it; a .ckpt file is
 * SDC_ERR_UNSUPPORTED with a message saying how to convert it. */
sdc_status sdc_model_files_open(const char *path, sdc_model_files **out);
void sdc_model_files_close(sdc_model_files *mf);

sdc_layout sdc_model_files_layout(const sdc_model_files *mf);

/* The weight under a canonical (diffusers, prefixed) name, or NULL.  Valid
 * until close. */
const sdc_weight *sdc_model_files_get(const sdc_model_files *mf, const char *name);

/* All weights, for listing and tests: the number, and the canonical name of
 * weight i (0 <= i < count; NULL beyond).  Valid until close. */
size_t sdc_model_files_count(const sdc_model_files *mf);
const char *sdc_model_files_key(const sdc_model_files *mf, size_t i);

/* Hyperparameters: from config.json where present, else inferred from
 * shapes (and SD 1.x defaults for what shapes cannot tell). */
const sdc_clip_config *sdc_model_files_clip(const sdc_model_files *mf);
const sdc_unet_config *sdc_model_files_unet(const sdc_model_files *mf);
const sdc_vae_config *sdc_model_files_vae(const sdc_model_files *mf);
const sdc_sched_config *sdc_model_files_sched(const sdc_model_files *mf);

/* tokenizer/vocab.json and tokenizer/merges.txt of a diffusers folder, or
 * NULL (then the built-in CLIP vocabulary is used).  Valid until close. */
const char *sdc_model_files_vocab_path(const sdc_model_files *mf);
const char *sdc_model_files_merges_path(const sdc_model_files *mf);

/* A short name for messages and PNG metadata (file or folder base name). */
const char *sdc_model_files_name(const sdc_model_files *mf);

/* Page residency (io/safetensors.h, sdc_st_advise): of one weight's data
 * (w from sdc_model_files_get; NULL allowed), and of every weight whose
 * canonical name starts with prefix ("unet.", "vae.decoder.").  Hints only:
 * weights stay valid and readable whatever is released. */
void sdc_model_files_advise(const sdc_model_files *mf, const sdc_weight *w,
                            sdc_page_advice advice);
void sdc_model_files_advise_prefix(const sdc_model_files *mf, const char *prefix,
                                   sdc_page_advice advice);
/* The weights whose canonical names start with prefix: the first cap of
 * them stored in out (out may be NULL when cap is 0); returns how many
 * there are. */
size_t sdc_model_files_prefixed(const sdc_model_files *mf, const char *prefix,
                                const sdc_weight **out, size_t cap);
/* Bytes of weights released so far (SDC_PAGES_RELEASE through the two
 * calls above): how the tests see the low-memory mode at work. */
size_t sdc_model_files_released_bytes(const sdc_model_files *mf);

/* Weight i (0 <= i < count; NULL beyond), the entry every model block
 * points to.  Valid until close. */
const sdc_weight *sdc_model_files_at(const sdc_model_files *mf, size_t i);

/* Data that stands in for weight i's (LoRA merging, models/lora.h): every
 * holder of the weight's pointer reads data from now on.  data has the
 * weight's dtype and byte size, is owned by the caller and stays valid until
 * sdc_model_files_restore_data(i) or close.  pageable != 0: data lies in a
 * shared file mapping whose pages page advice may drop (they come back from
 * the file); 0: anonymous memory, which page advice leaves alone.  The
 * original pointer is kept (sdc_model_files_orig_data).  A device backend
 * finds its copy by w->data: the caller releases the weight through the
 * backend (SDC_RES_RELEASE) before either call.  SDC_ERR_NOMEM on failure. */
sdc_status sdc_model_files_set_data(sdc_model_files *mf, size_t i, const void *data,
                                    int pageable);
/* Drops the pages of every replaced weight's original data from the
 * resident set (page cache folios are mapped whole: reading one weight maps
 * its neighbours' pages too).  sdc_model_files_advise does it near each
 * weight it prefetches. */
void sdc_model_files_drop_replaced(const sdc_model_files *mf);
/* The original data back (nothing if it was not replaced). */
void sdc_model_files_restore_data(sdc_model_files *mf, size_t i);
/* Weight i's data in the model file, whatever stands in for it now. */
const void *sdc_model_files_orig_data(const sdc_model_files *mf, size_t i);

#endif
