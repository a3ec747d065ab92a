/* sdc — Stable Diffusion in C.  The public API.
 *
 * Ownership: every handle is created by a named constructor and released by
 * its matching _free function; passing NULL to a _free function is allowed.
 * Failures: functions return an sdc_status; on anything but SDC_OK the
 * calling thread's message (sdc_last_error) says what went wrong.  The
 * library never calls exit() and never aborts on bad input.
 */
#ifndef SDC_H
#define SDC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SDC_VERSION "0.1.0"

typedef enum sdc_status {
    SDC_OK = 0,
    SDC_ERR_IO,          /* a file could not be opened, read, mapped or written */
    SDC_ERR_FORMAT,      /* a file is malformed (bad header, sizes that lie, ...) */
    SDC_ERR_UNSUPPORTED, /* well-formed but not something sdc runs (SDXL, .ckpt, ...) */
    SDC_ERR_NOMEM,       /* an allocation failed */
    SDC_ERR_INVALID_ARG, /* a parameter is out of range */
    SDC_ERR_CANCELLED,   /* the progress callback or sdc_model_cancel asked to stop */
    SDC_ERR_INTERNAL,    /* a bug in sdc; please report it */
    SDC_ERR_DEVICE       /* a compute device failed (out of device memory, a kernel
                            that does not build, a lost device) or is missing */
} sdc_status;

/* The message of the last failure in the calling thread.  Valid until the
 * next sdc call in this thread; never NULL (empty when there was none). */
const char *sdc_last_error(void);
/* A fixed English name for a status ("format error", ...). */
const char *sdc_status_str(sdc_status s);

/* How this build was made and what the CPU offers, one line. */
const char *sdc_build_info(void);

/* ---- samplers and schedules ------------------------------------------ */

/* New values go at the end. */
typedef enum sdc_sampler {
    SDC_SAMPLER_EULER = 0,
    SDC_SAMPLER_EULER_A,
    SDC_SAMPLER_HEUN,
    SDC_SAMPLER_DPMPP_2M,
    SDC_SAMPLER_DDIM,
    SDC_SAMPLER_PNDM,
    SDC_SAMPLER_LMS,
    SDC_SAMPLER_LCM, /* latent consistency models (LCM, LCM-LoRA): 1..50 steps */
    SDC_SAMPLER_TCD, /* trajectory consistency distillation (TCD-LoRA): 1..50 steps */
    SDC_SAMPLER_COUNT
} sdc_sampler;

typedef enum sdc_schedule {
    SDC_SCHEDULE_DISCRETE = 0, /* the model's own discrete sigmas/timesteps */
    SDC_SCHEDULE_KARRAS,       /* Karras et al. 2022 sigmas (euler, heun, dpm++2m, lms) */
    SDC_SCHEDULE_COUNT
} sdc_schedule;

/* Which of the training timesteps the steps visit (diffusers' timestep_spacing,
 * Lin et al. 2023, table 2).  DEFAULT: the sampler's diffusers class default
 * (linspace for euler, euler_a, heun, dpm++2m, lms; leading for ddim, pndm;
 * lcm and tcd take theirs from the distillation grid and offer no other). */
typedef enum sdc_spacing {
    SDC_SPACING_DEFAULT = 0,
    SDC_SPACING_LINSPACE, /* evenly from T-1 down to 0 */
    SDC_SPACING_LEADING,  /* k * (T // steps) + 1 */
    SDC_SPACING_TRAILING, /* T - 1 - k * (T / steps), rounded: starts at T-1 */
    SDC_SPACING_COUNT
} sdc_spacing;

/* "euler", "euler_a", "heun", "dpm++2m", "ddim", "pndm", "lms", "lcm", "tcd". */
const char *sdc_sampler_name(sdc_sampler s);
/* Returns SDC_SAMPLER_COUNT for an unknown name. */
sdc_sampler sdc_sampler_from_name(const char *name);
/* "discrete", "karras". */
const char *sdc_schedule_name(sdc_schedule s);
sdc_schedule sdc_schedule_from_name(const char *name);
/* "default", "linspace", "leading", "trailing"; SDC_SPACING_COUNT for an unknown name. */
const char *sdc_spacing_name(sdc_spacing s);
sdc_spacing sdc_spacing_from_name(const char *name);

/* ---- model ------------------------------------------------------------ */

typedef struct sdc_model sdc_model;

/* Arithmetic of the matrix products.  FP32: every product and sum in f32
 * (the images match diffusers' fp32 pipeline).  BF16: the linear layers'
 * and the GEMM-path convolutions' operands rounded to bf16 (8-bit
 * significand), products summed in f32; on AMX tiles the attention's two
 * products too (its softmax weights rounded to bf16); Winograd
 * convolutions and the rest stay f32.  Runs where the CPU has AMX-BF16 or
 * AVX512_BF16 (elsewhere loading fails with SDC_ERR_UNSUPPORTED); ~2e-3
 * relative error per product, a slightly different image (docs/perf.md). */
typedef enum sdc_precision {
    SDC_PRECISION_FP32 = 0,
    SDC_PRECISION_BF16,
    /* BF16 where it was measured faster than FP32 on the CPU backend (AMX
     * tiles; AVX512_BF16 on AMD CPUs), else FP32; never refused */
    SDC_PRECISION_AUTO,
    SDC_PRECISION_COUNT
} sdc_precision;

/* Where the networks run.  AUTO: an OpenCL GPU (or accelerator) when one
 * can be had, else the CPU; never a CPU OpenCL device.  OPENCL: an OpenCL
 * device, CPU devices (PoCL, rusticl) included; none is an error
 * (SDC_ERR_DEVICE). */
typedef enum sdc_backend_kind {
    SDC_BACKEND_AUTO = 0,
    SDC_BACKEND_CPU,
    SDC_BACKEND_OPENCL,
    SDC_BACKEND_COUNT
} sdc_backend_kind;

typedef struct sdc_load_params {
    int n_threads;  /* 0: all cores */
    int verbose;    /* 1: log what was found to stderr */
    int low_memory; /* 1: keep weights out of resident memory between uses:
                       each UNet and VAE block maps its weights in from the
                       file and releases them after it runs (slower; the
                       same images, bit for bit) */
    sdc_precision precision; /* SDC_PRECISION_FP32 (default), _BF16 (CPU only) or _AUTO */
    sdc_backend_kind backend; /* SDC_BACKEND_AUTO (default) */
    const char *device;       /* OpenCL device: NULL (the first GPU; for OPENCL the
                                 first device), its index in sdc_devices' list
                                 ("1"), or part of its name ("H100"); a device
                                 named is used even under AUTO and even if it is
                                 a CPU */
    int fp16_activations;     /* 1: a device keeps activations as fp16 (half the
                                 activation memory; a slightly different image) */
    const char *taesd;        /* NULL, or TAESD (a tiny distilled VAE: diffusers'
                                 AutoencoderTiny folder or .safetensors) that
                                 decodes the image and encodes init images
                                 instead of the VAE (an order of magnitude
                                 faster, a little less detail) and decodes the
                                 previews */
    int taesd_previews_only;  /* 1: TAESD decodes the previews only */
} sdc_load_params;

/* A compute device sdc can run on (besides the CPU). */
typedef struct sdc_device_info {
    int index;          /* what sdc_load_params.device takes */
    char platform[128]; /* the OpenCL platform's name */
    char name[128];
    char version[64];   /* OpenCL version string of the device */
    char driver[64];
    int is_gpu, is_cpu;
    uint64_t memory;    /* global memory, bytes */
    int compute_units;
    int fp16;           /* has half-precision arithmetic (cl_khr_fp16) */
} sdc_device_info;

/* The OpenCL devices of this machine: the first cap stored in out, their
 * number in *count (0: none).  SDC_ERR_DEVICE (message set) when no OpenCL
 * library can be loaded. */
sdc_status sdc_devices(sdc_device_info *out, int cap, int *count);

sdc_load_params sdc_load_params_default(void);

/* Opens a model: a single-file checkpoint (.safetensors) or a diffusers
 * folder.  Weights are memory-mapped, not copied.  On success *out owns the
 * mapping until sdc_model_free. */
sdc_status sdc_model_load(const char *path, const sdc_load_params *params, sdc_model **out);
void sdc_model_free(sdc_model *model);

/* Asks the sdc_generate running on model (in another thread, or interrupted
 * by a signal handler that calls this) to stop: it returns
 * SDC_ERR_CANCELLED within about a second at any image size, having written
 * nothing.  on = 0 withdraws the request; sdc_generate does not clear it, so
 * a request made between two calls stops the next one.  Async-signal-safe
 * and thread-safe (one atomic store). */
void sdc_model_cancel(sdc_model *model, int on);

/* One line describing the model ("SD 1.x, diffusers folder, unet f16, ..."). */
const char *sdc_model_describe(const sdc_model *model);
/* The factor between image and latent size (8 for SD 1.x). */
int sdc_model_vae_scale(const sdc_model *model);
/* What image sides must be multiples of (64 for SD 1.x: the VAE's 8 times
 * the UNet's 8). */
int sdc_model_size_multiple(const sdc_model *model);
/* 1 for an inpainting model (a UNet that takes the mask and the masked
 * image besides the latent): it makes images only with an init image and
 * a mask. */
int sdc_model_is_inpainting(const sdc_model *model);
/* 1 for an LCM-distilled model (UNet config time_cond_proj_dim, e.g.
 * LCM_Dreamshaper_v7): its UNet takes the guidance scale as an embedding
 * added to the timestep's, so every step is one UNet pass whatever the
 * cfg_scale, and the negative prompt is unused (as diffusers).  Such
 * models are made for the lcm sampler, 2-8 steps, cfg_scale about 8. */
int sdc_model_has_guidance_embed(const sdc_model *model);

/* ---- generation ------------------------------------------------------- */

typedef enum sdc_stage {
    SDC_STAGE_LOAD = 0,
    SDC_STAGE_TEXT,   /* text encoding */
    SDC_STAGE_SAMPLE, /* denoising steps */
    SDC_STAGE_DECODE, /* VAE decoding */
    SDC_STAGE_ENCODE, /* VAE encoding of the init image (img2img, inpainting) */
    SDC_STAGE_COUNT
} sdc_stage;

/* 8-bit pixels, rows top to bottom, channels interleaved.  Images sdc
 * makes are RGB (channels 3) and owned by the caller (sdc_image_free);
 * images given to sdc (init image, mask) are borrowed. */
typedef struct sdc_image {
    int width, height, channels;
    uint8_t *data; /* height*width*channels */
} sdc_image;

/* Called from the generating thread.  step counts from 1 to total within the
 * stage.  Return non-zero to cancel: sdc_generate then returns
 * SDC_ERR_CANCELLED (this takes effect at the end of the step or stage;
 * sdc_model_cancel stops mid-step). */
typedef int (*sdc_progress_fn)(void *user, sdc_stage stage, int step, int total);
/* Called from the generating thread after sampling step `step` of `total`
 * (every preview_every steps) with the current denoised estimate (the
 * sampler's prediction of the final latents) as an RGB image: decoded by
 * TAESD when one is loaded (sdc_load_params.taesd; the image's size), else
 * by a fixed linear map from the 4 latent channels to RGB (the latent's
 * size, 1/8 of the image's).  The image is valid during the call only. */
typedef void (*sdc_preview_fn)(void *user, int step, int total, const sdc_image *preview);

/* VAE decoding in tiles: diffusers' AutoencoderKL tiled decoding
 * (vae.enable_tiling()).  The latent is cut into overlapping tiles of the
 * VAE's training size (config sample_size / 8: 64x64 latents, 512x512
 * pixels for SD 1.x), each decoded alone and blended linearly with its
 * neighbours over a quarter tile, so the decoder's memory is one tile's
 * whatever the image size and no seam shows.  A tiled image is not the
 * whole-latent one: each tile sees only its part of the latent. */
typedef enum sdc_vae_tiling {
    SDC_VAE_TILING_AUTO = 0, /* ON for images larger than 512 pixels on a side
                                (for SD 1.x VAEs exactly ON); smaller images are
                                decoded whole whatever the VAE's tile */
    SDC_VAE_TILING_ON,       /* tile when the latent is larger than one tile in
                                either dimension, as diffusers with enable_tiling()
                                (the VAE's own tile: smaller ones would only add
                                overlap work and seams, the memory is already one
                                tile's) */
    SDC_VAE_TILING_OFF,      /* decode the whole latent at once (diffusers'
                                default; memory grows with the image area) */
    SDC_VAE_TILING_COUNT
} sdc_vae_tiling;

typedef enum sdc_prompt_syntax {
    SDC_PROMPT_A1111 = 0,
    SDC_PROMPT_PLAIN,
    SDC_PROMPT_SYNTAX_COUNT
} sdc_prompt_syntax;

/* A LoRA to apply (a low-rank update of the model's weights, Hu et al.
 * 2021): a .safetensors file in kohya-ss's or diffusers/PEFT's naming, at a
 * weight (1 as trained; 0 off; negative subtracts). */
typedef struct sdc_lora {
    const char *path; /* borrowed for the call */
    float weight;
} sdc_lora;

typedef struct sdc_gen_params {
    const char *prompt;          /* UTF-8; borrowed for the call */
    const char *negative_prompt; /* UTF-8 or NULL (""); borrowed */
    int width, height;           /* pixels, multiples of 8 */
    int steps;                   /* >= 1 */
    float cfg_scale;             /* 1.0 disables guidance (one UNet pass); an
                                    LCM-distilled model takes it as an input
                                    (sdc_model_has_guidance_embed) */
    uint64_t seed;
    sdc_sampler sampler;
    sdc_schedule schedule;
    sdc_progress_fn progress; /* may be NULL */
    void *progress_user;
    sdc_vae_tiling vae_tiling; /* SDC_VAE_TILING_AUTO (default) | _ON | _OFF */
    sdc_spacing spacing;       /* the timesteps' spacing: SDC_SPACING_DEFAULT (the
                                  sampler's diffusers class default), or as asked
                                  (few-step models want trailing) */

    /* Image to image (init_image set, mask NULL): diffusers'
     * StableDiffusionImg2ImgPipeline.  The init image is resized to width x
     * height when its size differs (PIL's Lanczos, as diffusers' image
     * processor), encoded by the VAE (a sample of its latent distribution,
     * drawn from the seed's generator as diffusers does), noised to the point
     * of the schedule that strength gives, and denoised from there:
     * int(steps * strength) steps run (at least one, else
     * SDC_ERR_INVALID_ARG).
     * Inpainting (mask set too): diffusers' StableDiffusionInpaintPipeline.
     * The mask (the init image's size; grey, or RGB taken as PIL's luma) is
     * resized likewise and binarized at 50%: white is repainted, black kept.
     * An inpainting model (UNet with 9 input channels) sees the mask and the
     * masked image's latents; an ordinary one has the kept region's noised
     * latents blended back after every step.  strength 1 starts from pure
     * noise.  Images are 8-bit, 1 (grey) or 3 (RGB) channels, borrowed for
     * the call. */
    const sdc_image *init_image; /* NULL: text to image */
    double strength;             /* 0..1; default 0.75 */
    const sdc_image *mask;       /* NULL: no inpainting */

    sdc_preview_fn preview; /* NULL: no previews */
    void *preview_user;
    int preview_every;      /* sampling steps between previews, >= 1 (default 1) */

    /* How prompts are read.  SDC_PROMPT_A1111 (the default): AUTOMATIC1111's
     * syntax and text encoding: "(text)" x1.1, "[text]" /1.1, "(text:W)",
     * nesting, "\(" escapes, BREAK; prompts of any length in 75-token
     * chunks encoded one by one and concatenated (the shorter of prompt and
     * negative prompt padded with the empty prompt's encoding to the same
     * count); the weights applied to the encoder's output with A1111's
     * mean-restoring rescale; "<lora:NAME:W>" tags taken out (see loras).
     * SDC_PROMPT_PLAIN: diffusers' StableDiffusionPipeline: the text as it
     * is, truncated at 77 tokens. */
    sdc_prompt_syntax prompt_syntax;
    /* AUTOMATIC1111's "Clip skip": 0 or 1 the text encoder's last layer, N
     * the hidden state N - 1 layers before it, through the final LayerNorm
     * (diffusers' clip_skip = N - 1).  At most the encoder's layer count.
     * A1111 syntax: both prompts; plain: the prompt only, as diffusers. */
    int clip_skip;
    /* Textual-inversion embeddings: a folder of .safetensors files, each
     * used where its file name (without the extension) appears in a prompt
     * (A1111 syntax only).  NULL: none. */
    const char *embeddings_dir;

    /* LoRAs merged into the model's weights for this image: the sum of their
     * updates, each at its weight (the UNet's and the text encoder's).  The
     * merge is kept for the next call with the same list (same paths and
     * weights in the same order, the files unchanged); a different list is
     * merged afresh from the original weights, an empty one restores them.
     * Merging costs a pass over the weights it updates (docs/perf.md); the
     * merged weights live in a scratch file under $TMPDIR (else /tmp),
     * mapped like the model's own.
     * A file that is missing, damaged, made for another architecture (SDXL)
     * or does not fit the model's shapes is an error naming it. */
    const sdc_lora *loras; /* [n_loras], borrowed for the call; NULL when n_loras is 0 */
    int n_loras;
    const char *lora_dir;  /* where <lora:NAME:W> prompt tags are looked up
                              (NAME.safetensors); NULL: tags are an error */
} sdc_gen_params;

sdc_gen_params sdc_gen_params_default(void);

/* Timings of the last sdc_generate, seconds.  sample is the whole sampling
 * stage; sample_steps the part of it spent in its steps (the rest: planning
 * the UNet's activations, mapping its weights in, the prompt's
 * cross-attention keys and values, letting the weights go after). */
typedef struct sdc_timings {
    double text, sample, decode, total;
    int steps; /* denoising steps run (img2img: the part strength leaves) */
    double sample_steps;
    double encode; /* VAE encoding of the init image (0 without one) */
    double lora;   /* merging the LoRAs into the weights (microseconds when the
                      same set was merged already, or there is none) */
} sdc_timings;

/* Makes one image.  On success *out holds pixels owned by the caller. */
sdc_status sdc_generate(sdc_model *model, const sdc_gen_params *params, sdc_image *out,
                        sdc_timings *timings /* may be NULL */);
void sdc_image_free(sdc_image *img);

#ifdef __cplusplus
}
#endif
#endif /* SDC_H */
