/* The text-to-image pipeline: diffusers' StableDiffusionPipeline.__call__
 * for SD 1.x, on one image.
 *
 *   ids   = tokenize(prompt), tokenize(negative or "")        [77] each
 *   ctx   = [clip(neg_ids), clip(ids)]                        [B, 77, D]
 *   x     = randn([C, h, w], seed) * init_noise_sigma          h = H/f, w = W/f
 *   for i in 0..len-1:
 *       in  = cat([x, x]) * input_scale(i)                     [B, C, h, w]
 *       e   = unet(in, t_i, ctx)                               [B, C, h, w]
 *       eps = e_uncond + cfg * (e_cond - e_uncond)
 *       x   = step(i, eps, x)
 *   img   = vae_decode(x / scaling_factor)                     [3, H, W]
 *           (in tiles for large images, sdc_vae_tiling: diffusers' tiled_decode)
 *   rgb   = round(clamp(img * 0.5 + 0.5, 0, 1) * 255)          [H, W, 3] u8
 *
 * Guidance runs (B = 2, uncond first) only when cfg > 1, as diffusers'
 * do_classifier_free_guidance; otherwise B = 1 and the negative prompt is
 * not encoded.  An LCM-distilled UNet (time_cond_proj_dim) takes the
 * guidance as an input instead: B = 1, and every pass adds
 * cond_proj(guidance_embedding(cfg - 1)) to its timestep embedding.
 *
 * Memory: each network's activations live in its own arena, planned with
 * the null backend right before the network runs and freed right after its
 * last pass (text encoder before the UNet, UNet before the VAE; a tiled
 * decode's arena is one tile's, whatever the image size); each
 * network's weight pages leave the resident set when it is done
 * (release_weights), and in low-memory mode after every block.  Host
 * buffers (latents, guided noise, context, image) and the sampler's history
 * are allocated before the denoising loop, which allocates nothing.
 *
 * Checks: the prompt's encoding, the latents after every step and the
 * decoded image must be finite (a NaN or Inf is an error naming the network
 * and step, never a black image); sdc_model_cancel stops the CPU backend's
 * ops mid-pass and the pipeline at the next check. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "backends/opencl/opencl.h"
#include "core/arena.h"
#include "core/error.h"
#include "image/image_read.h"
#include "io/fs_util.h"
#include "io/model_files.h"
#include "models/lora.h"
#include "models/models.h"
#include "models/taesd.h"
#include "pipeline/pipeline_internal.h"
#include "sched/rng.h"
#include "sched/sched.h"
#include "text/chunks.h"
#include "text/embeddings.h"
#include "text/prompt.h"
#include "text/tokenizer.h"

/* Bounds on the image: each side at most SDC_MAX_SIDE pixels and at most
 * SDC_MAX_PIXELS pixels in all, so no size product can overflow. */
#define SDC_MAX_SIDE 16384
#define SDC_MAX_PIXELS (4096 * 4096)
/* An init image or mask may be larger than the image made (it is resized) */
#define SDC_MAX_INPUT_PIXELS (8192 * 8192)
#define SDC_MAX_STEPS 1000
/* The prompt's tokens at most (77 per chunk of 75): the UNet's
 * cross-attention grows with it; 64 chunks is far beyond any real prompt */
#define SDC_MAX_CONTEXT (64 * 77)
#define SDC_MAX_CFG 100.0f
/* SDC_VAE_TILING_AUTO decodes images up to this side whole (SD 1.x's 512,
 * its VAE's tile). */
#define SDC_AUTO_TILE_SIDE 512

struct sdc_model {
    sdc_model_files *mf; /* owned; the weights live in its mappings */
    sdc_tokenizer *tok;  /* owned */
    sdc_backend *be;     /* owned; be->free */
    sdc_clip *clip;      /* owned */
    sdc_unet *unet;      /* owned */
    sdc_vae *vae;        /* owned */
    sdc_taesd *taesd;    /* owned; NULL: none */
    sdc_lora_merged *lora; /* the LoRAs merged into mf's weights now; NULL: none */
    int n_threads;         /* sdc_load_params.n_threads (the LoRA merge's too) */
    int taesd_all;       /* TAESD decodes and encodes (else previews only) */
    int vae_scale;       /* f = 2^(vae levels - 1): image / latent size */
    int unet_div;        /* 2^(unet levels - 1): latent sides must be multiples */
    int verbose;
    int low_memory;
    int bf16; /* the CPU backend runs its bf16 mode */
    atomic_int cancel; /* sdc_model_cancel; the CPU backend's ops stop on it too */
    char desc[320];
};

/* SDC_PROFILE set and not "0": time every op (backends/profile.c) and print
 * the table to stderr after each generation. */
static int profiling(void) {
    const char *e = getenv("SDC_PROFILE");
    return e && e[0] && strcmp(e, "0") != 0;
}

sdc_load_params sdc_load_params_default(void) {
    sdc_load_params p = {0, 0, 0, SDC_PRECISION_FP32, SDC_BACKEND_AUTO, NULL, 0, NULL, 0};
    return p;
}

sdc_status sdc_devices(sdc_device_info *out, int cap, int *count) {
    *count = 0;
    if (cap < 0 || (cap > 0 && !out))
        return sdc_fail(SDC_ERR_INVALID_ARG, "sdc_devices: no room for the list");
    sdc_cl_device d[64];
    int n = sdc_opencl_devices(d, 64);
    if (n < 0) return SDC_ERR_DEVICE; /* message set */
    for (int i = 0; i < n && i < 64 && i < cap; i++) {
        sdc_device_info *o = &out[i];
        memset(o, 0, sizeof *o);
        o->index = d[i].index;
        snprintf(o->platform, sizeof o->platform, "%s", d[i].platform);
        snprintf(o->name, sizeof o->name, "%s", d[i].name);
        snprintf(o->version, sizeof o->version, "%s", d[i].version);
        snprintf(o->driver, sizeof o->driver, "%s", d[i].driver);
        o->is_gpu = d[i].is_gpu;
        o->is_cpu = d[i].is_cpu;
        o->memory = d[i].global_mem;
        o->compute_units = d[i].compute_units;
        o->fp16 = d[i].fp16;
    }
    *count = n;
    return SDC_OK;
}

/* The backend's hook for the host pages of the weights (backend.h). */
static void host_pages(void *ctx, const sdc_weight *w, sdc_residency r) {
    sdc_model_files_advise(ctx, w, r == SDC_RES_PREFETCH ? SDC_PAGES_PREFETCH : SDC_PAGES_RELEASE);
}

/* The CPU backend (with the load parameters' precision and the model's
 * cancel flag). */
static sdc_status create_cpu(sdc_model *m, const sdc_load_params *lp) {
    m->be = sdc_backend_cpu_create(lp->n_threads, 0);
    if (!m->be) return sdc_fail(SDC_ERR_NOMEM, "cannot create the CPU backend");
    if (lp->precision == SDC_PRECISION_BF16 ||
        (lp->precision == SDC_PRECISION_AUTO && sdc_backend_cpu_bf16_faster(m->be))) {
        sdc_status st = sdc_backend_cpu_set_bf16(m->be, 1);
        if (st != SDC_OK) return st;
        m->bf16 = 1;
    }
    sdc_backend_cpu_set_stop(m->be, &m->cancel);
    return SDC_OK;
}

/* m->be by lp->backend: AUTO tries an OpenCL GPU first (a failure to start
 * one is said on stderr, then the CPU is used), OPENCL or a named device
 * insists. */
static sdc_status create_backend(sdc_model *m, const sdc_load_params *lp) {
    if (lp->backend == SDC_BACKEND_CPU) return create_cpu(m, lp);
    const int explicit = lp->backend == SDC_BACKEND_OPENCL || (lp->device && lp->device[0]);
    if (lp->precision == SDC_PRECISION_BF16) {
        if (explicit)
            return sdc_fail(SDC_ERR_UNSUPPORTED,
                            "--precision bf16 is a mode of the CPU backend, not of OpenCL");
        return create_cpu(m, lp);
    }
    if (!explicit) {
        /* no GPU, or no OpenCL at all: the CPU, without a word */
        sdc_cl_device d[64];
        int n = sdc_opencl_devices(d, 64), gpus = 0;
        for (int i = 0; i < n && i < 64; i++) gpus += !d[i].is_cpu;
        if (gpus == 0) {
            sdc_clear_error();
            if (m->verbose) fprintf(stderr, "sdc: no OpenCL GPU; running on the CPU\n");
            return create_cpu(m, lp);
        }
    }
    /* a device asked for by name or number is taken even if it is a CPU */
    sdc_cl_options o = {lp->device, explicit, lp->fp16_activations, NULL, lp->verbose};
    m->be = sdc_backend_opencl_create(&o);
    if (m->be) return SDC_OK;
    if (explicit) return sdc_fail_context(SDC_ERR_DEVICE, "OpenCL");
    fprintf(stderr, "sdc: warning: the OpenCL GPU cannot be used (%s); running on the CPU\n",
            sdc_last_error());
    return create_cpu(m, lp);
}

sdc_gen_params sdc_gen_params_default(void) {
    sdc_gen_params p;
    memset(&p, 0, sizeof p);
    p.prompt = "";
    p.negative_prompt = NULL;
    p.width = p.height = 512;
    p.steps = 20;
    p.cfg_scale = 7.5f;
    p.seed = 42;
    p.sampler = SDC_SAMPLER_DPMPP_2M;
    p.schedule = SDC_SCHEDULE_KARRAS;
    p.strength = 0.75;
    p.preview_every = 1;
    return p;
}

static void taesd_residency(const sdc_model *m, sdc_residency r);

void sdc_model_free(sdc_model *m) {
    if (!m) return;
    sdc_vae_free(m->vae);
    sdc_unet_free(m->unet);
    sdc_clip_free(m->clip);
    if (m->be && m->taesd) taesd_residency(m, SDC_RES_RELEASE);
    if (m->mf) sdc_lora_unmerge(m->mf, m->be, m->lora);
    if (m->be) m->be->free(m->be);
    sdc_taesd_free(m->taesd);
    sdc_tokenizer_free(m->tok);
    sdc_model_files_close(m->mf);
    free(m);
}

const char *sdc_model_describe(const sdc_model *m) { return m ? m->desc : ""; }

int sdc_model_vae_scale(const sdc_model *m) { return m ? m->vae_scale : 0; }

int sdc_model_size_multiple(const sdc_model *m) {
    return !m ? 0 : m->vae_scale * m->unet_div < 8 ? 8 : m->vae_scale * m->unet_div;
}

/* The UNet takes the mask and the masked image's latents besides the latent. */
static int inpainting_unet(const sdc_model *m) {
    return sdc_unet_cfg(m->unet)->in_channels != sdc_unet_cfg(m->unet)->out_channels;
}

int sdc_model_is_inpainting(const sdc_model *m) { return m ? inpainting_unet(m) : 0; }

int sdc_model_has_guidance_embed(const sdc_model *m) {
    return m ? sdc_unet_cfg(m->unet)->time_cond_proj_dim > 0 : 0;
}

size_t sdc_model_released_bytes(const sdc_model *m) {
    return m ? sdc_model_files_released_bytes(m->mf) : 0;
}

int sdc_model_latent_channels(const sdc_model *m) {
    return m ? sdc_unet_cfg(m->unet)->out_channels : 0;
}

static const char *weight_dtype(const sdc_model_files *mf, const char *name) {
    const sdc_weight *w = sdc_model_files_get(mf, name);
    return w ? sdc_dtype_name(w->dtype) : "?";
}

/* Checks that the three networks fit together as SD 1.x's pipeline uses them. */
static sdc_status check_configs(const sdc_model *m, const char *path) {
    const sdc_clip_config *cc = sdc_clip_cfg(m->clip);
    const sdc_unet_config *uc = sdc_unet_cfg(m->unet);
    const sdc_vae_config *vc = sdc_vae_cfg(m->vae);
    if (cc->max_positions < SDC_CLIP_CONTEXT)
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: text encoder has %d positions, need %d", path,
                        cc->max_positions, SDC_CLIP_CONTEXT);
    if (cc->hidden != uc->cross_dim)
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: text encoder width %d does not match the UNet's cross_attention_dim %d",
                        path, cc->hidden, uc->cross_dim);
    /* an inpainting UNet takes the latent, the mask and the masked image's latent */
    const int lc = vc->latent_channels;
    if (uc->out_channels != lc || (uc->in_channels != lc && uc->in_channels != 2 * lc + 1))
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: VAE latent channels %d do not match the UNet's in/out channels %d/%d",
                        path, vc->latent_channels, uc->in_channels, uc->out_channels);
    if (vc->out_channels != 3)
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: VAE makes %d channels, need 3 (RGB)", path,
                        vc->out_channels);
    if (vc->levels < 1 || vc->levels > SDC_MAX_LEVELS || uc->levels < 1 ||
        uc->levels > SDC_MAX_LEVELS)
        return sdc_fail(SDC_ERR_FORMAT, "%s: bad number of levels (UNet %d, VAE %d)", path,
                        uc->levels, vc->levels);
    if (!(vc->scaling_factor > 0) || !isfinite(vc->scaling_factor))
        return sdc_fail(SDC_ERR_FORMAT, "%s: bad VAE scaling_factor %g", path,
                        (double)vc->scaling_factor);
    return SDC_OK;
}

/* The weights of the TAESD's halves to the backend (one be->weights call). */
static void taesd_residency(const sdc_model *m, sdc_residency r) {
    const int parts = SDC_TAESD_ENCODER | SDC_TAESD_DECODER;
    size_t n = sdc_taesd_weights(m->taesd, parts, NULL, 0);
    const sdc_weight **w = n ? malloc(n * sizeof *w) : NULL;
    if (!w) return; /* advice only */
    sdc_taesd_weights(m->taesd, parts, w, n);
    if (n <= INT32_MAX) m->be->weights(m->be, w, (int)n, r);
    free(w);
}

/* lp->taesd: opened and checked against the model's VAE (latent channels,
 * size factor); it must hold the decoder. */
static sdc_status open_taesd(sdc_model *m, const sdc_load_params *lp) {
    sdc_status st = sdc_taesd_open(lp->taesd, &m->taesd);
    if (st != SDC_OK) return sdc_fail_context(st, "TAESD");
    const sdc_taesd_config *t = sdc_taesd_cfg(m->taesd);
    const int lc = sdc_vae_cfg(m->vae)->latent_channels;
    if (!t->has_decoder)
        return sdc_fail(SDC_ERR_UNSUPPORTED, "TAESD %s has no decoder", sdc_taesd_name(m->taesd));
    if (t->latent_channels != lc || t->dec_factor != m->vae_scale ||
        (t->has_encoder && t->enc_factor != m->vae_scale))
        return sdc_fail(SDC_ERR_UNSUPPORTED,
                        "TAESD %s (%d latent channels, %dx) does not fit this model's VAE (%d "
                        "latent channels, %dx)",
                        sdc_taesd_name(m->taesd), t->latent_channels, t->dec_factor, lc,
                        m->vae_scale);
    m->taesd_all = !lp->taesd_previews_only;
    if (m->verbose)
        fprintf(stderr, "sdc: TAESD %s%s for %s\n", sdc_taesd_name(m->taesd),
                t->has_encoder ? "" : " (decoder only)",
                m->taesd_all ? "decoding, encoding and previews" : "previews");
    return SDC_OK;
}

sdc_status sdc_model_load(const char *path, const sdc_load_params *params, sdc_model **out) {
    if (out) *out = NULL;
    if (!path || !out) return sdc_fail(SDC_ERR_INVALID_ARG, "sdc_model_load: NULL argument");
    sdc_load_params lp = params ? *params : sdc_load_params_default();
    if ((unsigned)lp.backend >= SDC_BACKEND_COUNT)
        return sdc_fail(SDC_ERR_INVALID_ARG, "backend %d is not one of auto, cpu, opencl",
                        (int)lp.backend);
    if ((unsigned)lp.precision >= SDC_PRECISION_COUNT)
        return sdc_fail(SDC_ERR_INVALID_ARG, "precision %d is not one of fp32, bf16, auto",
                        (int)lp.precision);
    if (lp.n_threads < 0 || lp.n_threads > 4096)
        return sdc_fail(SDC_ERR_INVALID_ARG, "thread count %d is out of range (0 = all cores)",
                        lp.n_threads);

    sdc_model *m = calloc(1, sizeof *m);
    if (!m) return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    m->verbose = lp.verbose;
    m->n_threads = lp.n_threads;
    m->low_memory = lp.low_memory != 0;
    sdc_status st = sdc_model_files_open(path, &m->mf);
    if (st != SDC_OK) goto fail;

    const char *vocab = sdc_model_files_vocab_path(m->mf);
    const char *merges = sdc_model_files_merges_path(m->mf);
    if (vocab && merges)
        st = sdc_tokenizer_load(vocab, merges, &m->tok);
    else
        st = sdc_tokenizer_load_builtin(&m->tok);
    if (st != SDC_OK) goto fail;

    st = sdc_clip_create(m->mf, &m->clip);
    if (st != SDC_OK) goto fail;
    st = sdc_unet_create(m->mf, &m->unet);
    if (st != SDC_OK) goto fail;
    st = sdc_vae_create(m->mf, &m->vae);
    if (st != SDC_OK) goto fail;
    st = check_configs(m, path);
    if (st != SDC_OK) goto fail;
    sdc_unet_set_low_memory(m->unet, m->low_memory);
    sdc_vae_set_low_memory(m->vae, m->low_memory);

    st = create_backend(m, &lp);
    if (st != SDC_OK) goto fail;
    sdc_backend_set_host_pages(m->be, host_pages, m->mf);
    if (profiling()) {
        sdc_backend *pb = sdc_backend_profile_wrap(m->be);
        if (!pb) {
            st = sdc_fail(SDC_ERR_NOMEM, "cannot create the profiling backend");
            goto fail;
        }
        m->be = pb;
    }
    m->vae_scale = 1 << (sdc_vae_cfg(m->vae)->levels - 1);
    m->unet_div = 1 << (sdc_unet_cfg(m->unet)->levels - 1);
    if (lp.taesd && (st = open_taesd(m, &lp)) != SDC_OK) goto fail;

    char lcm[64] = "";
    if (sdc_model_has_guidance_embed(m))
        snprintf(lcm, sizeof lcm, " (LCM: guidance embedding %d)",
                 sdc_unet_cfg(m->unet)->time_cond_proj_dim);
    snprintf(m->desc, sizeof m->desc,
             "SD 1.x%s, %s, unet %s, text encoder %s, vae %s, tokenizer %s, %s", lcm,
             sdc_model_files_layout(m->mf) == SDC_LAYOUT_DIFFUSERS ? "diffusers folder"
                                                                   : "single file",
             weight_dtype(m->mf, "unet.conv_in.weight"),
             weight_dtype(m->mf, "text_encoder.text_model.embeddings.token_embedding.weight"),
             weight_dtype(m->mf, "vae.decoder.conv_in.weight"),
             vocab && merges ? "from the model" : "built-in", sdc_model_files_name(m->mf));
    if (m->verbose)
        fprintf(stderr, "sdc: loaded %s (%s)%s%s; backend %s\n", path, m->desc,
                m->low_memory ? "; low-memory mode" : "",
                m->bf16 ? "; bf16 precision" : "",
                sdc_backend_profile_inner(m->be)->name);
    *out = m;
    return SDC_OK;

fail:
    sdc_model_free(m);
    return st;
}

void sdc_image_free(sdc_image *img) {
    if (!img) return;
    free(img->data);
    img->data = NULL;
    img->width = img->height = img->channels = 0;
}

/* ---- generation -------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static sdc_status check_side(const char *what, int v, int gran, int f) {
    if (v < 8 || v > SDC_MAX_SIDE)
        return sdc_fail(SDC_ERR_INVALID_ARG, "%s %d is out of range (8..%d)", what, v,
                        SDC_MAX_SIDE);
    if (v % 8 != 0)
        return sdc_fail(SDC_ERR_INVALID_ARG, "%s %d is not a multiple of 8", what, v);
    if (v % gran != 0)
        return sdc_fail(SDC_ERR_INVALID_ARG,
                        "%s %d is not a multiple of %d, which this model needs (%dx VAE "
                        "downscaling times %dx in the UNet)",
                        what, v, gran, f, gran / f);
    return SDC_OK;
}

/* A borrowed input image: sizes within the limits, 1 or 3 channels. */
static sdc_status check_input_image(const char *what, const sdc_image *im) {
    if (!im->data) return sdc_fail(SDC_ERR_INVALID_ARG, "%s: no pixels", what);
    if (im->width < 1 || im->height < 1 || im->width > SDC_MAX_SIDE || im->height > SDC_MAX_SIDE ||
        (int64_t)im->width * im->height > SDC_MAX_INPUT_PIXELS)
        return sdc_fail(SDC_ERR_INVALID_ARG,
                        "%s: %dx%d pixels is out of range (sides 1..%d, at most %d pixels)", what,
                        im->width, im->height, SDC_MAX_SIDE, SDC_MAX_INPUT_PIXELS);
    if (im->channels != 1 && im->channels != 3)
        return sdc_fail(SDC_ERR_INVALID_ARG, "%s: %d channels (need 1, grey, or 3, RGB)", what,
                        im->channels);
    return SDC_OK;
}

/* The image-to-image and inpainting parameters against the model. */
static sdc_status check_images(const sdc_model *m, const sdc_gen_params *p) {
    const int inpaint_unet = inpainting_unet(m);
    if (!p->init_image) {
        if (p->mask)
            return sdc_fail(SDC_ERR_INVALID_ARG, "a mask needs an init image to inpaint");
        if (inpaint_unet)
            return sdc_fail(SDC_ERR_INVALID_ARG,
                            "this is an inpainting model: it needs an init image and a mask");
        return SDC_OK;
    }
    sdc_status st = check_input_image("init image", p->init_image);
    if (st != SDC_OK) return st;
    if (!(p->strength >= 0.0 && p->strength <= 1.0))
        return sdc_fail(SDC_ERR_INVALID_ARG, "strength %g is out of range (0..1)", p->strength);
    if (p->mask) {
        if ((st = check_input_image("mask", p->mask)) != SDC_OK) return st;
        if (p->mask->width != p->init_image->width || p->mask->height != p->init_image->height)
            return sdc_fail(SDC_ERR_INVALID_ARG, "the mask is %dx%d, the init image %dx%d: they "
                            "must be the same size", p->mask->width, p->mask->height,
                            p->init_image->width, p->init_image->height);
    } else if (inpaint_unet) {
        return sdc_fail(SDC_ERR_INVALID_ARG, "this is an inpainting model: it needs a mask");
    }
    return SDC_OK;
}

static sdc_status check_params(const sdc_model *m, const sdc_gen_params *p) {
    if (!p->prompt) return sdc_fail(SDC_ERR_INVALID_ARG, "prompt is NULL");
    const int gran = sdc_model_size_multiple(m);
    sdc_status st = check_side("width", p->width, gran, m->vae_scale);
    if (st == SDC_OK) st = check_side("height", p->height, gran, m->vae_scale);
    if (st != SDC_OK) return st;
    if ((int64_t)p->width * p->height > SDC_MAX_PIXELS)
        return sdc_fail(SDC_ERR_INVALID_ARG, "image size %dx%d is above the limit of %d pixels",
                        p->width, p->height, SDC_MAX_PIXELS);
    int max_steps = sdc_model_files_sched(m->mf)->num_train_timesteps;
    if (max_steps > SDC_MAX_STEPS) max_steps = SDC_MAX_STEPS;
    if (p->steps < 1 || p->steps > max_steps)
        return sdc_fail(SDC_ERR_INVALID_ARG, "steps %d is out of range (1..%d)", p->steps,
                        max_steps);
    if (!isfinite(p->cfg_scale) || p->cfg_scale < 0 || p->cfg_scale > SDC_MAX_CFG)
        return sdc_fail(SDC_ERR_INVALID_ARG, "CFG scale %g is out of range (0..%g)",
                        (double)p->cfg_scale, (double)SDC_MAX_CFG);
    if ((unsigned)p->sampler >= SDC_SAMPLER_COUNT)
        return sdc_fail(SDC_ERR_INVALID_ARG, "unknown sampler %d", (int)p->sampler);
    if ((unsigned)p->schedule >= SDC_SCHEDULE_COUNT)
        return sdc_fail(SDC_ERR_INVALID_ARG, "unknown schedule %d", (int)p->schedule);
    if ((unsigned)p->spacing >= SDC_SPACING_COUNT)
        return sdc_fail(SDC_ERR_INVALID_ARG, "unknown timestep spacing %d", (int)p->spacing);
    if ((unsigned)p->prompt_syntax >= SDC_PROMPT_SYNTAX_COUNT)
        return sdc_fail(SDC_ERR_INVALID_ARG, "unknown prompt syntax %d", (int)p->prompt_syntax);
    const int layers = sdc_clip_cfg(m->clip)->layers;
    if (p->clip_skip < 0 || p->clip_skip > layers)
        return sdc_fail(SDC_ERR_INVALID_ARG,
                        "clip skip %d is out of range (1..%d: the text encoder's layers)",
                        p->clip_skip, layers);
    if ((unsigned)p->vae_tiling >= SDC_VAE_TILING_COUNT)
        return sdc_fail(SDC_ERR_INVALID_ARG, "unknown VAE tiling mode %d", (int)p->vae_tiling);
    if (p->preview && p->preview_every < 1)
        return sdc_fail(SDC_ERR_INVALID_ARG, "preview every %d steps: must be at least 1",
                        p->preview_every);
    if (p->preview && !m->taesd && sdc_unet_cfg(m->unet)->out_channels != 4)
        return sdc_fail(SDC_ERR_UNSUPPORTED, "previews need 4 latent channels (the model has %d)",
                        sdc_unet_cfg(m->unet)->out_channels);
    return check_images(m, p);
}

/* Everything one sdc_generate call owns; freed by gen_free. */
typedef struct gen_state {
    sdc_sched *sched;
    sdc_rng rng;     /* the seed's generator: VAE samples, noise, ancestral steps */
    sdc_arena arena; /* the network that runs now */
    float *x;        /* host [n]: latents */
    float *eps;      /* host [n]: guided noise; then x / scaling_factor */
    float *ctx;      /* host [B, S, D]: uncond then cond */
    int S;           /* the context's tokens: 77 x chunks */
    sdc_prompt *pp[2];   /* A1111 syntax: the negative prompt, the prompt parsed */
    sdc_embeddings *emb; /* p->embeddings_dir's index, once a prompt is chunked */
    sdc_lora *loras;     /* [n_loras]: p->loras, then the prompts' tags */
    char **lora_paths;   /* [lora_cap]: the tags' paths (NULL for p->loras') */
    int n_loras, lora_cap;
    float *img;      /* host [3, H, W]: the init image, then the decoded image */
    uint8_t *rgb;    /* host [H, W, 3]; handed to the caller on success */
    double steps_s;  /* seconds in the denoising steps themselves */
    /* inpainting (NULL otherwise) */
    float *mask;     /* host [H, W] then [h, w]: 1 repaint, 0 keep */
    float *lat0;     /* host [n]: the init image's latents (ordinary UNet) */
    float *noise;    /* host [n]: the noise they are noised with at each step */
    float *cond;     /* host [n + h w]: the mask and the masked image's latents
                        (inpainting UNet: its extra input channels) */
    float *wemb;     /* host [time_cond_proj_dim]: the guidance-scale embedding
                        (LCM-distilled UNet; NULL otherwise) */
    /* previews (NULL otherwise) */
    float *x0;       /* host [n]: the denoised estimate */
    uint8_t *prgb;   /* host [h, w, 3] (TAESD: [H, W, 3]): its picture */
    sdc_arena parena; /* TAESD's activations for the previews */
} gen_state;

static void gen_free(gen_state *g) {
    sdc_sched_free(g->sched);
    sdc_arena_free(&g->arena);
    free(g->x);
    free(g->eps);
    free(g->ctx);
    sdc_prompt_free(g->pp[0]);
    sdc_prompt_free(g->pp[1]);
    sdc_embeddings_free(g->emb);
    for (int i = 0; g->lora_paths && i < g->lora_cap; i++) free(g->lora_paths[i]);
    free(g->lora_paths);
    free(g->loras);
    free(g->img);
    free(g->rgb);
    free(g->mask);
    free(g->lat0);
    free(g->noise);
    free(g->cond);
    free(g->wemb);
    free(g->x0);
    free(g->prgb);
    sdc_arena_free(&g->parena);
}

static int report(const sdc_gen_params *p, sdc_stage stage, int step, int total) {
    return p->progress ? p->progress(p->progress_user, stage, step, total) : 0;
}

static sdc_status cancelled(void) {
    return sdc_fail(SDC_ERR_CANCELLED, "cancelled by the progress callback");
}

/* sdc_model_cancel was called: the ops since may have skipped their work,
 * so nothing they wrote is used. */
static int cancel_asked(const sdc_model *m) { return atomic_load(&m->cancel) != 0; }

static sdc_status cancel_requested(void) {
    return sdc_fail(SDC_ERR_CANCELLED, "cancelled");
}

void sdc_model_cancel(sdc_model *m, int on) {
    if (m) atomic_store(&m->cancel, on != 0);
}

/* SDC_OK, or SDC_ERR_FORMAT naming the network and the step if x[0..n)
 * holds a NaN or an infinity: a black or noise image must not come out as
 * a success.  One pass over a latent or an image: well under 1% of a step. */
static sdc_status check_finite(const float *x, int64_t n, const char *network, int step,
                               int steps) {
    int64_t i = 0;
    while (i < n && isfinite(x[i])) i++;
    if (i == n) return SDC_OK;
    char at[48] = "";
    if (step > 0) snprintf(at, sizeof at, " at step %d of %d", step, steps);
    return sdc_fail(SDC_ERR_FORMAT,
                    "the %s produced %s%s: its weights hold NaN or Inf values, or its "
                    "activations overflow float32 (the model does not suit this precision)",
                    network, isnan(x[i]) ? "NaN" : "Inf", at);
}

static sdc_status arena_checked(const sdc_arena *a, const char *what) {
    if (a->overflow)
        return sdc_fail(SDC_ERR_INTERNAL, "%s used more activation memory than planned", what);
    return SDC_OK;
}

/* Ends a planning pass: allocates the block the pass asked for. */
static sdc_status arena_commit_plan(const sdc_model *m, sdc_arena *a, const char *what) {
    if (a->overflow)
        return sdc_fail(SDC_ERR_NOMEM, "%s: activation memory size overflows", what);
    sdc_status st = sdc_arena_commit(a, 0);
    if (st != SDC_OK) return sdc_fail_context(st, "%s", what);
    if (m->verbose)
        fprintf(stderr, "sdc: %s: %.1f MiB of activations\n", what, a->size / 1048576.0);
    return SDC_OK;
}

/* Asks the backend to make every weight of a network (canonical name
 * prefix) resident, or to release them (one be->weights call). */
static void weights_residency(const sdc_model *m, const char *prefix, sdc_residency r) {
    size_t n = sdc_model_files_prefixed(m->mf, prefix, NULL, 0);
    const sdc_weight **w = n ? malloc(n * sizeof *w) : NULL;
    if (!w) return; /* advice only */
    sdc_model_files_prefixed(m->mf, prefix, w, n);
    size_t k = 0; /* the networks' tensors: floats (not e.g. CLIP's int64 position ids) */
    for (size_t i = 0; i < n; i++)
        if (w[i]->dtype == SDC_DT_F32 || w[i]->dtype == SDC_DT_F16 || w[i]->dtype == SDC_DT_BF16)
            w[k++] = w[i];
    if (k <= INT32_MAX) m->be->weights(m->be, w, (int)k, r);
    free(w);
}

/* Releases a network's weights once it is done for this image (CPU: their
 * pages leave the resident set and are mapped back in from the file for
 * the next image; a device frees its copy).  Memory: the text encoder's
 * weights are gone before the UNet runs, the UNet's before the VAE
 * decodes. */
static void release_weights(const sdc_model *m, const char *prefix) {
    weights_residency(m, prefix, SDC_RES_RELEASE);
}

/* Makes a network's weights resident before its stage runs (default mode;
 * in low-memory mode each block asks for its own).  On the CPU one
 * MADV_POPULATE_READ per tensor instead of a page fault per 4 KiB page in
 * the first pass: measured on the full-size UNet, the first step cost ~3 s
 * more than the next ones without this (docs/perf.md); a device uploads
 * them.  Resident memory is what the first pass would have touched anyway. */
static void prefetch_weights(const sdc_model *m, const char *prefix) {
    if (!m->low_memory) weights_residency(m, prefix, SDC_RES_PREFETCH);
    /* originals a LoRA replaced, mapped back in beside their neighbours
     * (models/lora.h) */
    sdc_model_files_drop_replaced(m->mf);
}

/* The backend's first failure since the last check (a device's; the CPU
 * never fails), named with the network it happened in. */
static sdc_status synced(const sdc_model *m, const char *what) {
    sdc_status st = m->be->sync(m->be);
    return st == SDC_OK ? st : sdc_fail_context(st, "%s", what);
}

static sdc_status alloc_floats(float **p, size_t n) {
    size_t bytes;
    if (!sdc_mul_size(n, sizeof(float), &bytes) || !(*p = malloc(bytes ? bytes : 1)))
        return sdc_fail(SDC_ERR_NOMEM, "out of memory (%zu floats)", n);
    return SDC_OK;
}

/* The prompts read as p->prompt_syntax says: A1111's syntax parsed (its
 * tags cut out) into g->pp; nothing to do for plain prompts. */
static sdc_status parse_prompts(const sdc_gen_params *p, gen_state *g) {
    if (p->prompt_syntax == SDC_PROMPT_PLAIN) return SDC_OK;
    const char *texts[2] = {p->negative_prompt ? p->negative_prompt : "", p->prompt};
    for (int i = 0; i < 2; i++) {
        sdc_status st = sdc_prompt_parse(texts[i], SDC_PARSE_TAGS, &g->pp[i]);
        if (st != SDC_OK) return sdc_fail_context(st, "%s", i ? "prompt" : "negative prompt");
    }
    return SDC_OK;
}

/* The LoRAs of this image in g->loras: p->loras, then the <lora:NAME:W>
 * tags of the prompt and of the negative prompt (A1111 activates both),
 * NAME resolved to p->lora_dir/NAME.safetensors.  Other tag kinds
 * (hypernetworks, ...) are ignored with a warning, as A1111 does for kinds
 * it has no handler for. */
static sdc_status collect_loras(const sdc_gen_params *p, gen_state *g) {
    const sdc_prompt_tag *tags[2] = {NULL, NULL};
    if (p->n_loras < 0 || (p->n_loras > 0 && !p->loras))
        return sdc_fail(SDC_ERR_INVALID_ARG, "n_loras is %d with loras %s", p->n_loras,
                        p->loras ? "set" : "NULL");
    int nt[2] = {0, 0}, n = p->n_loras;
    for (int i = 0; i < 2; i++)
        if (g->pp[i]) {
            nt[i] = sdc_prompt_tags(g->pp[i], &tags[i]);
            n += nt[i];
        }
    if (n == 0) return SDC_OK;
    if (!(g->loras = calloc((size_t)n, sizeof *g->loras)) ||
        !(g->lora_paths = calloc((size_t)n, sizeof *g->lora_paths)))
        return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    g->lora_cap = n;
    for (int k = 0; k < p->n_loras; k++) g->loras[g->n_loras++] = p->loras[k];
    for (int i = 1; i >= 0; i--)
        for (int k = 0; k < nt[i]; k++) {
            const sdc_prompt_tag *t = &tags[i][k];
            const char *what = i ? "prompt" : "negative prompt";
            if (strcmp(t->kind, "lora") != 0) {
                fprintf(stderr, "sdc: warning: %s: <%s:...> is not a network sdc has; ignored\n",
                        what, t->kind);
                continue;
            }
            if (t->weight_status == SDC_TAG_WEIGHT_BAD)
                return sdc_fail(SDC_ERR_INVALID_ARG, "%s: <lora:%s:%s>: the weight is not a number",
                                what, t->name, t->args[1]);
            if (t->n_args > 2)
                return sdc_fail(SDC_ERR_UNSUPPORTED,
                                "%s: <lora:%s:...> has %d arguments; sdc takes one weight for "
                                "the UNet and the text encoder together (<lora:%s:W>)",
                                what, t->name, t->n_args - 1, t->name);
            if (!*t->name || strchr(t->name, '/') || strchr(t->name, '\\') || t->name[0] == '.')
                return sdc_fail(SDC_ERR_INVALID_ARG,
                                "%s: <lora:%s>: a LoRA's name is its file name in the LoRA folder, "
                                "without folders",
                                what, t->name);
            if (!p->lora_dir)
                return sdc_fail(SDC_ERR_INVALID_ARG,
                                "%s: <lora:%s> names a LoRA, but no LoRA folder was given "
                                "(--lora-dir)",
                                what, t->name);
            size_t len = strlen(p->lora_dir) + strlen(t->name) + sizeof "/.safetensors";
            char *path = malloc(len);
            if (!path) return sdc_fail(SDC_ERR_NOMEM, "out of memory");
            snprintf(path, len, "%s/%s.safetensors", p->lora_dir, t->name);
            g->lora_paths[g->n_loras] = path;
            if (!sdc_is_file(path))
                return sdc_fail(SDC_ERR_IO, "%s: <lora:%s>: no LoRA %s", what, t->name, path);
            g->loras[g->n_loras++] = (sdc_lora){path, (float)t->weight};
        }
    return SDC_OK;
}

/* A1111's "Original" emphasis on one encoded chunk z [n, D]: every row
 * times its weight, then all of it times mean(z before) / mean(z after)
 * (float32 scalars, as torch has them). */
static sdc_status emphasis(float *z, const float *mult, int n, int D) {
    int plain = 1;
    for (int i = 0; i < n; i++) plain &= mult[i] == 1.0f;
    if (plain) return SDC_OK; /* z * 1 and a ratio of equal means: z itself */
    const size_t nd = (size_t)n * D;
    double s0 = 0, s1 = 0;
    for (size_t i = 0; i < nd; i++) s0 += z[i];
    for (int i = 0; i < n; i++)
        for (int d = 0; d < D; d++) {
            z[(size_t)i * D + d] *= mult[i];
            s1 += z[(size_t)i * D + d];
        }
    const float ratio = (float)(s0 / (double)nd) / (float)(s1 / (double)nd);
    for (size_t i = 0; i < nd; i++) z[i] *= ratio;
    for (size_t i = 0; i < nd; i++)
        if (!isfinite(z[i]))
            return sdc_fail(SDC_ERR_INVALID_ARG,
                            "the prompt's emphasis weights make its encoding infinite or NaN "
                            "(weights of 0 or ones whose weighted mean is 0)");
    return SDC_OK;
}

/* The chunks of text i (0 negative, 1 prompt), checked against the text
 * encoder's vocabulary and with finite weights. */
static sdc_status make_chunks(sdc_model *m, const sdc_gen_params *p, gen_state *g, int i,
                              sdc_chunks *c) {
    const char *what = i ? "prompt" : "negative prompt";
    const sdc_clip_config *cc = sdc_clip_cfg(m->clip);
    sdc_status st;
    if (p->prompt_syntax == SDC_PROMPT_PLAIN) {
        const char *t = i ? p->prompt : p->negative_prompt ? p->negative_prompt : "";
        st = sdc_chunks_plain(m->tok, t, c);
    } else {
        if (p->embeddings_dir && !g->emb &&
            (st = sdc_embeddings_open(p->embeddings_dir, m->tok, &g->emb)) != SDC_OK)
            return st;
        st = sdc_chunks_make(m->tok, g->pp[i], g->emb, cc->hidden, c);
    }
    if (st != SDC_OK) return sdc_fail_context(st, "%s", what);
    for (int k = 0; k < c->n * SDC_CLIP_CONTEXT; k++) {
        /* the embedding has V rows: a tokenizer/vocab.json larger than the
         * text encoder's table gives ids that it has no row for (the
         * reference fails on them as well: an index error) */
        if (c->ids[k] < 0 || c->ids[k] >= cc->vocab_size)
            return sdc_fail(SDC_ERR_FORMAT,
                            "the tokenizer gave token id %d, but the text encoder has %d "
                            "token embeddings (the vocabulary does not fit the model)",
                            (int)c->ids[k], cc->vocab_size);
        if (!isfinite(c->mult[k]))
            return sdc_fail(SDC_ERR_INVALID_ARG,
                            "%s: an emphasis weight is %g (brackets nested too deep?)", what,
                            (double)c->mult[k]);
    }
    return SDC_OK;
}

/* Chunk k of c encoded into z host [77, D] leaving out the encoder's last
 * skip layers: its embeddings' vectors put in, then A1111's emphasis. */
static sdc_status encode_chunk(sdc_model *m, int skip, sdc_arena *a, float *out,
                               const sdc_chunks *c, int k, float *z) {
    const int S = SDC_CLIP_CONTEXT, D = sdc_clip_cfg(m->clip)->hidden;
    sdc_clip_fix fix[SDC_CLIP_CONTEXT];
    int nf = 0;
    for (int j = 0; j < c->n_fix && nf < SDC_CLIP_CONTEXT; j++) {
        const sdc_chunk_fix *f = &c->fix[j];
        if (f->pos / S != k) continue;
        /* a fix that A1111's comma backtrack left behind may reach into the
         * chunk's end token and padding: it is applied there too, as A1111
         * does, up to the chunk's end */
        const int at = f->pos % S, len = f->n < S - at ? f->n : S - at;
        fix[nf++] = (sdc_clip_fix){at, len, f->vec};
    }
    sdc_status st = sdc_clip_forward_ex(m->clip, m->be, a, c->ids + (size_t)k * S, S, skip, fix,
                                        nf, out);
    if (st == SDC_OK) st = arena_checked(a, "the text encoder");
    if (st != SDC_OK) return st;
    m->be->copy_out(m->be, z, out, (int64_t)S * D);
    if ((st = synced(m, "the text encoder")) != SDC_OK) return st;
    if ((st = check_finite(z, (int64_t)S * D, "text encoder", 0, 0)) != SDC_OK) return st;
    return emphasis(z, c->mult + (size_t)k * S, S, D);
}

/* Text stage: g->ctx [B, S, D] = the negative prompt's encoding (if B ==
 * 2), then the prompt's; S = 77 x the larger chunk count (g->S), the other
 * padded with the empty prompt's encoding. */
static sdc_status encode_text(sdc_model *m, const sdc_gen_params *p, gen_state *g, int B) {
    const int S0 = SDC_CLIP_CONTEXT, D = sdc_clip_cfg(m->clip)->hidden;
    sdc_chunks ch[2] = {{0}}, empty = {0};
    int nc = 1;
    sdc_status st = SDC_OK;
    for (int b = 0; b < B && st == SDC_OK; b++) {
        st = make_chunks(m, p, g, 2 - B + b, &ch[b]);
        if (st == SDC_OK && ch[b].n > nc) nc = ch[b].n;
    }
    if (st == SDC_OK && (B == 2 && ch[0].n != ch[1].n))
        st = sdc_chunks_plain(m->tok, "", &empty);
    if (st == SDC_OK && (size_t)nc * S0 > SDC_MAX_CONTEXT)
        st = sdc_fail(SDC_ERR_INVALID_ARG,
                      "the prompt takes %d chunks of 75 tokens, above the limit of %d", nc,
                      SDC_MAX_CONTEXT / S0);
    if (st != SDC_OK) goto done;
    g->S = nc * S0;
    if ((st = alloc_floats(&g->ctx, (size_t)B * g->S * D)) != SDC_OK) goto done;

    prefetch_weights(m, "text_encoder.");
    sdc_arena *a = &g->arena;
    sdc_arena_plan(a);
    float *out = sdc_arena_alloc(a, (size_t)S0 * D); /* dev [77, D] */
    size_t mark = sdc_arena_mark(a);
    sdc_clip_forward(m->clip, sdc_backend_null(), a, ch[0].ids, S0, out);
    if ((st = arena_commit_plan(m, a, "the text encoder")) != SDC_OK) goto done;
    out = sdc_arena_alloc(a, (size_t)S0 * D);
    if (!out || sdc_arena_mark(a) != mark) {
        st = arena_checked(a, "the text encoder");
        goto done;
    }
    const float *pad = NULL; /* the empty prompt's encoding, once made */
    for (int b = 0; b < B; b++) {
        /* CLIP skip: A1111 applies it to both prompts; diffusers to the
         * prompt only (its negative prompt takes the last layer) */
        const int is_neg = b == 0 && B == 2;
        const int skip = p->clip_skip > 1 && !(is_neg && p->prompt_syntax == SDC_PROMPT_PLAIN)
                             ? p->clip_skip - 1
                             : 0;
        for (int k = 0; k < nc; k++) {
            float *z = g->ctx + ((size_t)b * g->S + (size_t)k * S0) * D;
            sdc_arena_reset(a, mark);
            if (k < ch[b].n) {
                st = encode_chunk(m, skip, a, out, &ch[b], k, z);
            } else if (pad) {
                memcpy(z, pad, (size_t)S0 * D * sizeof *z);
            } else {
                st = encode_chunk(m, skip, a, out, &empty, 0, z);
                pad = z;
            }
            if (st != SDC_OK) goto done;
            if (cancel_asked(m)) {
                st = cancel_requested();
                goto done;
            }
        }
        if (report(p, SDC_STAGE_TEXT, b + 1, B)) {
            st = cancelled();
            goto done;
        }
    }
    sdc_arena_free(a);
    release_weights(m, "text_encoder.");
done:
    for (int b = 0; b < 2; b++) sdc_chunks_free(&ch[b]);
    sdc_chunks_free(&empty);
    return st;
}

/* Plans a (TAESD) arena with the pass the null backend ran into it. */
static sdc_status taesd_plan(sdc_model *m, sdc_arena *a, sdc_status pass, const char *what) {
    if (pass != SDC_OK) return pass;
    return arena_commit_plan(m, a, what);
}

/* g->img [3, H, W] = TAESD's decode of z host [C, h, w] in arena a: planned,
 * run, the arena given back. */
static sdc_status taesd_decode(sdc_model *m, sdc_arena *a, const float *z, int h, int w,
                               float *img) {
    sdc_arena_plan(a);
    sdc_status st = taesd_plan(
        m, a, sdc_taesd_decode(m->taesd, sdc_backend_null(), a, NULL, 1, h, w, NULL), "TAESD");
    if (st == SDC_OK) st = sdc_taesd_decode(m->taesd, m->be, a, z, 1, h, w, img);
    if (st == SDC_OK) st = arena_checked(a, "TAESD");
    if (st == SDC_OK) st = synced(m, "TAESD");
    sdc_arena_free(a);
    return st;
}

/* ---- image to image and inpainting: the init image's latents ------------------ */


/* in at width x height into *out: the pixels as they are, or resized as
 * diffusers' image processor resizes (PIL's Lanczos) into tmp. */
static sdc_status fit_image(const char *what, const sdc_image *in, int W, int H, sdc_image *tmp,
                            const sdc_image **out) {
    *out = in;
    if (in->width == W && in->height == H) return SDC_OK;
    sdc_status st = sdc_image_resize(in, W, H, tmp);
    if (st != SDC_OK) return sdc_fail_context(st, "resizing %s", what);
    *out = tmp;
    return SDC_OK;
}

/* diffusers' image processor on the init image: [3, H, W] = 2 (u / 255) - 1
 * in float32, a grey image replicated to RGB. */
static sdc_status init_planes(const sdc_gen_params *p, float *out) {
    sdc_image tmp = {0, 0, 0, NULL};
    const sdc_image *im;
    const int W = p->width, H = p->height;
    sdc_status st = fit_image("the init image", p->init_image, W, H, &tmp, &im);
    if (st != SDC_OK) return st;
    const size_t plane = (size_t)W * H;
    for (size_t k = 0; k < plane; k++)
        for (int c = 0; c < 3; c++) {
            const uint8_t u = im->data[k * im->channels + (im->channels == 3 ? c : 0)];
            out[c * plane + k] = 2.0f * ((float)u / 255.0f) - 1.0f;
        }
    sdc_image_free(&tmp);
    return SDC_OK;
}

/* The inpainting pipeline's mask processor: resized, then grey (PIL's
 * convert("L") of RGB), u / 255 binarized at 0.5 -> [H, W] of 0 (keep) and
 * 1 (repaint). */
static sdc_status mask_plane(const sdc_gen_params *p, float *out) {
    const int W = p->width, H = p->height;
    sdc_image tmp = {0, 0, 0, NULL}, grey = {0, 0, 0, NULL};
    const sdc_image *im;
    sdc_status st = fit_image("the mask", p->mask, W, H, &tmp, &im);
    if (st == SDC_OK && im->channels == 3) {
        st = sdc_image_convert(im, 1, &grey);
        im = &grey;
    }
    if (st == SDC_OK)
        for (size_t k = 0; k < (size_t)W * H; k++)
            out[k] = (float)im->data[k] / 255.0f < 0.5f ? 0.0f : 1.0f;
    sdc_image_free(&tmp);
    sdc_image_free(&grey);
    return st;
}

typedef struct encoder_job {
    float *img, *moments; /* dev [3, H, W], [2 C, h, w] */
    float *host;          /* host [2 n]: the moments */
    int H, W;
    int64_t n;
} encoder_job;

/* TAESD encodes (sdc_load_params.taesd, with its encoder). */
static int taesd_encodes(const sdc_model *m) {
    return m->taesd && m->taesd_all && sdc_taesd_cfg(m->taesd)->has_encoder;
}

/* dst [n] = scaling_factor * (mean + exp(logvar / 2) * randn) of the VAE's
 * latent distribution for the image in g->img, the logvar clamped to
 * [-30, 20]: diffusers' retrieve_latents sampling with the generator, in
 * its order of draws.  Through TAESD: scaling_factor * its latents, no
 * draw (retrieve_latents takes AutoencoderTiny's .latents). */
static sdc_status vae_sample(sdc_model *m, gen_state *g, const encoder_job *j, float *dst) {
    sdc_backend *be = m->be;
    if (taesd_encodes(m)) {
        sdc_status st = sdc_taesd_encode(m->taesd, be, &g->arena, g->img, 1, j->H, j->W, dst);
        if (st == SDC_OK) st = arena_checked(&g->arena, "TAESD");
        if (st == SDC_OK) st = synced(m, "TAESD");
        if (st != SDC_OK) return st;
        if (cancel_asked(m)) return cancel_requested();
        const float sf = sdc_taesd_cfg(m->taesd)->scaling_factor;
        for (int64_t k = 0; k < j->n; k++) dst[k] = sf * dst[k];
        return check_finite(dst, j->n, "TAESD encoder", 0, 0);
    }
    be->copy_in(be, j->img, g->img, (int64_t)3 * j->H * j->W);
    sdc_vae_encode(m->vae, be, &g->arena, j->img, 1, j->H, j->W, j->moments);
    sdc_status st = arena_checked(&g->arena, "the VAE encoder");
    if (st != SDC_OK) return st;
    be->copy_out(be, j->host, j->moments, 2 * j->n);
    if ((st = synced(m, "the VAE encoder")) != SDC_OK) return st;
    if (cancel_asked(m)) return cancel_requested();
    if ((st = check_finite(j->host, 2 * j->n, "VAE encoder", 0, 0)) != SDC_OK) return st;
    const float sf = sdc_vae_cfg(m->vae)->scaling_factor;
    sdc_rng_randn(&g->rng, dst, j->n);
    for (int64_t k = 0; k < j->n; k++) {
        float lv = j->host[j->n + k];
        lv = lv < -30.0f ? -30.0f : lv > 20.0f ? 20.0f : lv;
        const float z = j->host[k] + expf(0.5f * lv) * dst[k];
        dst[k] = sf * z;
    }
    return SDC_OK;
}

/* Encode stage (an init image): g->x = the latents the denoising starts
 * from, and for inpainting the mask and latents the steps use, drawing from
 * g->rng as diffusers' prepare_latents and prepare_mask_latents do:
 *   img2img    lat = sample(init); noise; x = add_noise(lat, noise, begin)
 *   inpainting lat = sample(init) (unless an inpainting UNet at strength 1);
 *              noise; x = strength 1 ? noise * init_sigma : add_noise(...);
 *              masked = sample(init * (mask < 0.5)) (its draws taken even
 *              where an ordinary UNet has no use for it).
 * Through TAESD a "sample" is its latents and draws nothing. */
static sdc_status encode_image(sdc_model *m, const sdc_gen_params *p, gen_state *g, int h,
                               int w, int64_t n) {
    const int H = p->height, W = p->width, f = m->vae_scale;
    const int inpaint = p->mask != NULL, unet9 = inpainting_unet(m);
    const int begin = sdc_sched_begin_for_strength(g->sched, p->strength);
    if (begin < 0)
        return sdc_fail(SDC_ERR_INVALID_ARG,
                        "strength %g leaves no step of %d to run (int(steps * strength) < 1)",
                        p->strength, p->steps);
    sdc_sched_set_begin(g->sched, begin);
    sdc_status st = init_planes(p, g->img);
    if (st == SDC_OK && inpaint) st = mask_plane(p, g->mask);
    if (st != SDC_OK) return st;

    encoder_job j = {NULL, NULL, NULL, H, W, n};
    sdc_arena *a = &g->arena;
    const int tiny = taesd_encodes(m);
    if (tiny) {
        taesd_residency(m, SDC_RES_PREFETCH);
        sdc_arena_plan(a);
        st = taesd_plan(
            m, a, sdc_taesd_encode(m->taesd, sdc_backend_null(), a, NULL, 1, H, W, NULL), "TAESD");
        if (st != SDC_OK) goto done;
    } else {
        if ((st = alloc_floats(&j.host, 2 * (size_t)n)) != SDC_OK) return st;
        prefetch_weights(m, "vae.encoder.");
        prefetch_weights(m, "vae.quant_conv.");
        sdc_arena_plan(a);
        for (int pass = 0; pass < 2; pass++) {
            j.img = sdc_arena_alloc(a, (size_t)3 * H * W);
            j.moments = sdc_arena_alloc(a, 2 * (size_t)n);
            if (pass == 0) {
                sdc_vae_encode(m->vae, sdc_backend_null(), a, j.img, 1, H, W, j.moments);
                if ((st = arena_commit_plan(m, a, "the VAE encoder")) != SDC_OK) goto done;
            }
        }
        if (!j.img || !j.moments) {
            st = arena_checked(a, "the VAE encoder");
            goto done;
        }
    }
    const int strength_max = p->strength == 1.0;
    if (!inpaint) {
        if ((st = vae_sample(m, g, &j, g->x)) != SDC_OK) goto done;
        sdc_rng_randn(&g->rng, g->eps, n);
        sdc_sched_add_noise(g->sched, begin, g->x, g->eps, g->x);
    } else {
        if ((!unet9 || !strength_max) && (st = vae_sample(m, g, &j, g->lat0)) != SDC_OK) goto done;
        sdc_rng_randn(&g->rng, g->noise, n);
        if (strength_max) {
            const float s0 = sdc_sched_init_noise_sigma(g->sched);
            for (int64_t k = 0; k < n; k++) g->x[k] = g->noise[k] * s0;
        } else {
            sdc_sched_add_noise(g->sched, begin, g->lat0, g->noise, g->x);
        }
        const size_t plane = (size_t)H * W;
        for (int c = 0; c < 3; c++)
            for (size_t k = 0; k < plane; k++) g->img[c * plane + k] *= g->mask[k] < 0.5f;
        /* the mask at latent size (torch's nearest interpolation by f), in place */
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                g->mask[(size_t)y * w + x] = g->mask[(size_t)y * f * W + (size_t)x * f];
        if (unet9) {
            memcpy(g->cond, g->mask, (size_t)h * w * sizeof(float));
            st = vae_sample(m, g, &j, g->cond + (size_t)h * w);
        } else if (!tiny) {
            sdc_rng_randn(&g->rng, g->eps, n); /* the masked image's sample, unused */
        }
        if (st != SDC_OK) goto done;
    }
    if (report(p, SDC_STAGE_ENCODE, 1, 1)) st = cancelled();
done:
    free(j.host);
    sdc_arena_free(a);
    if (tiny) {
        taesd_residency(m, SDC_RES_RELEASE);
    } else {
        release_weights(m, "vae.encoder.");
        release_weights(m, "vae.quant_conv.");
    }
    return st;
}

/* Inpainting with an ordinary UNet, after step i: the kept region (mask 0)
 * becomes the init image's latents noised to the next step's level (or
 * clean after the last), as diffusers' pipeline does:
 * x = (1 - m) * proper + m * x.  g->eps serves as scratch. */
static void blend_known(gen_state *g, int i, int len, int64_t n, int64_t hw) {
    const float *proper = g->lat0;
    if (i < len - 1) {
        sdc_sched_add_noise(g->sched, i + 1, g->lat0, g->noise, g->eps);
        proper = g->eps;
    }
    for (int64_t k = 0; k < n; k++) {
        const float mk = g->mask[k % hw];
        g->x[k] = (1.0f - mk) * proper[k] + mk * g->x[k];
    }
}

/* A preview of the denoised estimate x0 [4, h, w] by a fixed linear map
 * from SD's four latent channels to RGB (the approximation peers call
 * "cheap": a least-squares fit of decoded colours to latents), then
 * (v + 1) / 2 to 8 bits. */
static void latent_rgb(const float *x0, int h, int w, uint8_t *rgb) {
    static const float k[3][4] = {{0.298f, 0.187f, -0.158f, -0.184f},
                                  {0.207f, 0.286f, 0.189f, -0.271f},
                                  {0.208f, 0.173f, 0.264f, -0.473f}};
    const size_t plane = (size_t)h * w;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            float v = 0.0f;
            for (int l = 0; l < 4; l++) v += k[c][l] * x0[l * plane + i];
            v = (v + 1.0f) * 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            rgb[3 * i + c] = (uint8_t)nearbyintf(v * 255.0f);
        }
}

static void to_rgb(const float *img, int H, int W, uint8_t *rgb, float *dbg_image);

/* After the model output eps of step i (before the step): the preview, if
 * one is due; through TAESD in g->parena (planned by the caller) when the
 * model has one. */
static sdc_status preview(sdc_model *m, gen_state *g, const sdc_gen_params *p, int i, int begin,
                          int len, int h, int w) {
    const int step = i + 1 - begin, total = len - begin;
    if (!p->preview || (step % p->preview_every != 0 && step != total)) return SDC_OK;
    sdc_sched_pred_x0(g->sched, i, g->x, g->eps, g->x0);
    sdc_image im = {w, h, 3, g->prgb};
    if (m->taesd) {
        const float sf = sdc_taesd_cfg(m->taesd)->scaling_factor;
        for (int64_t k = 0; k < (int64_t)4 * h * w; k++) g->x0[k] /= sf;
        sdc_status st = sdc_taesd_decode(m->taesd, m->be, &g->parena, g->x0, 1, h, w, g->img);
        if (st == SDC_OK) st = synced(m, "TAESD (preview)");
        if (st != SDC_OK) return st;
        im.width = p->width, im.height = p->height;
        to_rgb(g->img, im.height, im.width, g->prgb, NULL);
    } else {
        latent_rgb(g->x0, h, w, g->prgb);
    }
    p->preview(p->preview_user, step, total, &im);
    return SDC_OK;
}

/* diffusers' get_guidance_scale_embedding (VDM's, of w * 1000) in float32
 * as torch computes it: out = [sin(w' f_i), cos(w' f_i)], i < half = dim / 2,
 * f_i = exp(-i ln(10000) / (half - 1)), and a zero at the end when dim is
 * odd. */
static void guidance_embedding(float w, int dim, float *out) {
    const int half = dim / 2;
    const float wk = w * 1000.0f, step = logf(10000.0f) / (float)(half - 1);
    for (int i = 0; i < half; i++) {
        const float arg = wk * expf((float)i * -step);
        out[i] = sinf(arg);
        out[half + i] = cosf(arg);
    }
    if (dim % 2) out[dim - 1] = 0.0f;
}

/* Sample stage: the denoising loop over g->x [n] (n = C*h*w). */
static sdc_status denoise(sdc_model *m, const sdc_gen_params *p, gen_state *g, int B, int h,
                          int w, int64_t n) {
    sdc_backend *be = m->be;
    const int S = g->S, D = sdc_clip_cfg(m->clip)->hidden;
    const size_t ctx_n = (size_t)B * S * D;
    sdc_arena *a = &g->arena;
    float t[2];

    /* plan: in dev [Cin, h, w] (the B rows share it; an inpainting UNet's
     * Cin = C + 1 + C), ctx dev [B, S, D], the context's keys and
     * values kv (sdc_unet_context), out dev [B, C, h, w], the guidance
     * embedding wd dev [dim] (LCM), then one UNet pass against the null
     * backend */
    const int wdim = g->wemb ? sdc_unet_cfg(m->unet)->time_cond_proj_dim : 0;
    float *in = NULL, *ctx = NULL, *kv = NULL, *out = NULL, *wd = NULL;
    size_t mark = 0;
    sdc_arena_plan(a);
    const int64_t n_cond = g->cond ? n + (int64_t)h * w : 0;
    for (int pass = 0; pass < 2; pass++) {
        in = sdc_arena_alloc(a, (size_t)(n + n_cond));
        ctx = sdc_arena_alloc(a, ctx_n);
        kv = sdc_arena_alloc(a, sdc_unet_context_floats(m->unet, B, S));
        out = sdc_arena_alloc(a, (size_t)(B * n));
        wd = wdim ? sdc_arena_alloc(a, (size_t)wdim) : NULL;
        mark = sdc_arena_mark(a);
        if (pass == 0) {
            t[0] = t[1] = sdc_sched_timestep(g->sched, 0);
            sdc_unet_forward(m->unet, sdc_backend_null(), a, in, B, B > 1, h, w, t, wd, ctx, S,
                             NULL, out);
            sdc_status st = arena_commit_plan(m, a, "the UNet");
            if (st != SDC_OK) return st;
        }
    }
    if (!in || !ctx || !kv || !out || (wdim && !wd)) return arena_checked(a, "the UNet");
    prefetch_weights(m, "unet.");
    be->copy_in(be, ctx, g->ctx, (int64_t)ctx_n);
    if (wd) be->copy_in(be, wd, g->wemb, wdim);
    /* the prompt's cross-attention keys and values, once for all steps
     * (SDC_PROFILE counts them with the prompt's other work, as "text") */
    sdc_backend_profile_stage(be, "text");
    sdc_unet_context(m->unet, be, ctx, B, S, kv);
    sdc_backend_profile_stage(be, "unet");
    /* the inpainting UNet's mask and masked latents: the same every step */
    if (n_cond) be->copy_in(be, in + n, g->cond, n_cond);
    if (p->preview && m->taesd) { /* TAESD's arena and weights for the previews */
        taesd_residency(m, SDC_RES_PREFETCH);
        sdc_arena_plan(&g->parena);
        sdc_status st = taesd_plan(
            m, &g->parena, sdc_taesd_decode(m->taesd, sdc_backend_null(), &g->parena, NULL, 1, h,
                                            w, NULL),
            "TAESD (previews)");
        if (st != SDC_OK) return st;
    }

    if (!p->init_image) { /* text to image: pure noise (an init image's latents are made) */
        sdc_rng_randn(&g->rng, g->x, n);
        const float sigma0 = sdc_sched_init_noise_sigma(g->sched);
        for (int64_t i = 0; i < n; i++) g->x[i] *= sigma0;
    }

    const int len = sdc_sched_len(g->sched), begin = sdc_sched_begin(g->sched);
    const double t_steps = now_s();
    for (int i = begin; i < len; i++) {
        /* the B rows (CFG: unconditional, conditional) share the input:
         * the UNet takes it once (sdc_unet_forward's shared) */
        be->copy_in(be, in, g->x, n);
        float s = sdc_sched_input_scale(g->sched, i);
        if (s != 1.0f) be->axpby(be, in, s, in, 0.0f, NULL, n);
        t[0] = t[1] = sdc_sched_timestep(g->sched, i);
        sdc_arena_reset(a, mark);
        sdc_unet_forward(m->unet, be, a, in, B, B > 1, h, w, t, wd, ctx, S, kv, out);
        sdc_status st = arena_checked(a, "the UNet");
        if (st != SDC_OK) return st;
        if (B == 2) be->lerp(be, out, out, out + n, p->cfg_scale, n);
        be->copy_out(be, g->eps, out, n);
        if ((st = synced(m, "the UNet")) != SDC_OK) return st;
        if (cancel_asked(m)) return cancel_requested();
        if ((st = preview(m, g, p, i, begin, len, h, w)) != SDC_OK) return st;
        sdc_sched_step(g->sched, i, g->eps, g->x, &g->rng);
        if (p->mask && !g->cond) blend_known(g, i, len, n, (int64_t)h * w);
        if ((st = check_finite(g->x, n, "UNet", i + 1 - begin, len - begin)) != SDC_OK) return st;
        if (report(p, SDC_STAGE_SAMPLE, i + 1 - begin, len - begin)) return cancelled();
    }
    g->steps_s = now_s() - t_steps;
    sdc_arena_free(a);
    release_weights(m, "unet.");
    if (p->preview && m->taesd) {
        sdc_arena_free(&g->parena);
        taesd_residency(m, SDC_RES_RELEASE);
    }
    return SDC_OK;
}

/* The latent tile side of the decode stage, 0 for a whole decode
 * (sdc_vae_tiling): diffusers tiles when the latent is larger than a tile
 * in either dimension; AUTO also leaves images up to SDC_AUTO_TILE_SIDE
 * whole. */
static int vae_tile(const sdc_model *m, const sdc_gen_params *p, int h, int w) {
    const int T = sdc_vae_tile_latent(m->vae);
    if (p->vae_tiling == SDC_VAE_TILING_OFF || T == 0 || (h <= T && w <= T)) return 0;
    if (p->vae_tiling == SDC_VAE_TILING_AUTO && p->width <= SDC_AUTO_TILE_SIDE &&
        p->height <= SDC_AUTO_TILE_SIDE)
        return 0;
    return T;
}

/* g->img [3, H, W] = vae_decode(z), z dev = g->eps [1, C, h, w]: one pass
 * over the whole latent; the arena holds z, the image and the decoder's
 * activations at full size. */
static sdc_status decode_whole(sdc_model *m, gen_state *g, int h, int w, int64_t n,
                               int64_t img_n) {
    sdc_backend *be = m->be;
    sdc_arena *a = &g->arena;
    float *z = NULL, *img = NULL;
    sdc_arena_plan(a);
    for (int pass = 0; pass < 2; pass++) {
        z = sdc_arena_alloc(a, (size_t)n);             /* dev [1, C, h, w] */
        img = sdc_arena_alloc(a, (size_t)img_n);       /* dev [1, 3, H, W] */
        if (pass == 0) {
            sdc_vae_decode(m->vae, sdc_backend_null(), a, z, 1, h, w, img);
            sdc_status st = arena_commit_plan(m, a, "the VAE");
            if (st != SDC_OK) return st;
        }
    }
    if (!z || !img) return arena_checked(a, "the VAE");
    be->copy_in(be, z, g->eps, n);
    sdc_vae_decode(m->vae, be, a, z, 1, h, w, img);
    sdc_status st = arena_checked(a, "the VAE");
    if (st != SDC_OK) return st;
    be->copy_out(be, g->img, img, img_n);
    return synced(m, "the VAE");
}

/* The same, in tiles of tile x tile latents (sdc_vae_decode_tiled): the
 * arena holds one tile, the host the blend bands; g->img is written in
 * place. */
static sdc_status decode_tiles(sdc_model *m, gen_state *g, int h, int w, int tile) {
    sdc_arena *a = &g->arena;
    const int S = tile / 4 * 3, rows = (h + S - 1) / S, cols = (w + S - 1) / S;
    if (m->verbose)
        fprintf(stderr, "sdc: the VAE decodes %d x %d tiles of %dx%d latents\n", rows, cols,
                tile, tile);
    float *work = NULL;
    sdc_status st = alloc_floats(&work, sdc_vae_tiled_work_floats(m->vae, 1, w, tile));
    if (st != SDC_OK) return st;
    sdc_arena_plan(a);
    sdc_vae_decode_tiled(m->vae, sdc_backend_null(), a, NULL, 1, h, w, tile, NULL, NULL);
    st = arena_commit_plan(m, a, "the VAE");
    if (st == SDC_OK) {
        sdc_vae_decode_tiled(m->vae, m->be, a, g->eps, 1, h, w, tile, g->img, work);
        st = arena_checked(a, "the VAE");
        if (st == SDC_OK) st = synced(m, "the VAE");
    }
    free(work);
    return st;
}

/* Decode stage: g->img [3, H, W] = vae_decode(g->x / scaling_factor),
 * whole or in tiles (vae_tile); or TAESD's decode of g->x / its
 * scaling_factor (whole: its activations are a tenth of the VAE's). */
static sdc_status decode(sdc_model *m, const sdc_gen_params *p, gen_state *g, int h, int w,
                         int64_t n) {
    const int64_t img_n = (int64_t)3 * p->height * p->width;
    const int tiny = m->taesd && m->taesd_all;
    const float sf = tiny ? sdc_taesd_cfg(m->taesd)->scaling_factor
                          : sdc_vae_cfg(m->vae)->scaling_factor;
    for (int64_t i = 0; i < n; i++) g->eps[i] = g->x[i] / sf; /* as diffusers: a division */
    sdc_status st;
    if (tiny) {
        taesd_residency(m, SDC_RES_PREFETCH);
        st = taesd_decode(m, &g->arena, g->eps, h, w, g->img);
    } else {
        prefetch_weights(m, "vae.post_quant_conv.");
        prefetch_weights(m, "vae.decoder.");
        const int tile = vae_tile(m, p, h, w);
        st = tile ? decode_tiles(m, g, h, w, tile) : decode_whole(m, g, h, w, n, img_n);
    }
    if (st != SDC_OK) return st;
    if (cancel_asked(m)) return cancel_requested();
    if ((st = check_finite(g->img, img_n, "VAE decoder", 0, 0)) != SDC_OK) return st;
    sdc_arena_free(&g->arena);
    if (tiny)
        taesd_residency(m, SDC_RES_RELEASE);
    else
        release_weights(m, "vae.");
    if (report(p, SDC_STAGE_DECODE, 1, 1)) return cancelled();
    return SDC_OK;
}

/* [3, H, W] in ~[-1, 1] -> dbg_image [H, W, 3] float and rgb [H, W, 3]:
 * v = clamp(x * 0.5 + 0.5, 0, 1); u8 = round_half_even(v * 255), as
 * diffusers' denormalize and numpy_to_pil (float32 throughout). */
static void to_rgb(const float *img, int H, int W, uint8_t *rgb, float *dbg_image) {
    const size_t plane = (size_t)H * W;
    for (size_t i = 0; i < plane; i++) {
        for (int c = 0; c < 3; c++) {
            float v = img[c * plane + i] * 0.5f + 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            if (v != v) v = 0.0f; /* NaN: numpy's cast is undefined; choose black */
            if (dbg_image) dbg_image[i * 3 + c] = v;
            rgb[i * 3 + c] = (uint8_t)nearbyintf(v * 255.0f);
        }
    }
}

sdc_status sdc_generate_debug(sdc_model *m, const sdc_gen_params *p, sdc_image *out,
                              sdc_timings *timings, const sdc_gen_debug *dbg) {
    if (out) memset(out, 0, sizeof *out);
    if (timings) memset(timings, 0, sizeof *timings);
    if (!m || !p || !out) return sdc_fail(SDC_ERR_INVALID_ARG, "sdc_generate: NULL argument");
    sdc_status st = check_params(m, p);
    if (st != SDC_OK) return st;

    const double t0 = now_s();
    const int H = p->height, W = p->width, f = m->vae_scale;
    const int h = H / f, w = W / f;
    const int C = sdc_unet_cfg(m->unet)->out_channels; /* latent channels */
    const int64_t n = (int64_t)C * h * w;
    /* an LCM-distilled UNet takes the guidance as an input: no CFG (diffusers) */
    const int wdim = sdc_unet_cfg(m->unet)->time_cond_proj_dim;
    const int B = p->cfg_scale > 1.0f && wdim == 0 ? 2 : 1;
    const size_t plane = (size_t)H * W;

    gen_state g;
    memset(&g, 0, sizeof g);
    g.arena.be = m->be; /* activation memory is the backend's */
    if (cancel_asked(m)) {
        st = cancel_requested();
        goto done;
    }
    if ((st = parse_prompts(p, &g)) != SDC_OK || (st = collect_loras(p, &g)) != SDC_OK)
        goto done;
    const double t_lora = now_s();
    if ((st = sdc_model_apply_loras(m, g.loras, g.n_loras)) != SDC_OK) goto done;
    const double lora_s = now_s() - t_lora;
    sdc_sched_opts so = sdc_sched_opts_default();
    so.spacing = p->spacing;
    st = sdc_sched_create_ex(p->sampler, p->schedule, &so, sdc_model_files_sched(m->mf), p->steps,
                             n, &g.sched);
    if (st != SDC_OK) goto done;
    if ((st = alloc_floats(&g.x, (size_t)n)) != SDC_OK ||
        (st = alloc_floats(&g.eps, (size_t)n)) != SDC_OK ||
        (st = alloc_floats(&g.img, 3 * plane)) != SDC_OK)
        goto done;
    if (!(g.rgb = malloc(3 * plane))) {
        st = sdc_fail(SDC_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (p->mask && ((st = alloc_floats(&g.mask, plane)) != SDC_OK ||
                    (st = alloc_floats(&g.lat0, (size_t)n)) != SDC_OK ||
                    (st = alloc_floats(&g.noise, (size_t)n)) != SDC_OK ||
                    (inpainting_unet(m) &&
                     (st = alloc_floats(&g.cond, (size_t)n + (size_t)h * w)) != SDC_OK)))
        goto done;
    g.parena.be = m->be;
    if (p->preview && ((st = alloc_floats(&g.x0, (size_t)n)) != SDC_OK ||
                       !(g.prgb = malloc(m->taesd ? 3 * plane : (size_t)h * w * 3)))) {
        if (st == SDC_OK) st = sdc_fail(SDC_ERR_NOMEM, "out of memory (preview)");
        goto done;
    }
    if (wdim > 0) {
        if ((st = alloc_floats(&g.wemb, (size_t)wdim)) != SDC_OK) goto done;
        /* diffusers: torch.tensor(guidance_scale - 1), a float32 of the double */
        guidance_embedding((float)((double)p->cfg_scale - 1.0), wdim, g.wemb);
        if (m->verbose && p->negative_prompt && *p->negative_prompt)
            fprintf(stderr, "sdc: the negative prompt is unused: this LCM-distilled UNet takes "
                            "the guidance scale as an input instead of CFG\n");
    }
    sdc_rng_seed(&g.rng, p->seed);

    double t1 = now_s();
    /* a failed generation's ops must not count into this one's table */
    sdc_backend_profile_report(m->be, NULL, 1);
    sdc_backend_profile_stage(m->be, "text");
    st = encode_text(m, p, &g, B);
    if (st != SDC_OK) goto done;
    if (dbg && dbg->ctx) {
        const size_t nctx = (size_t)B * g.S * sdc_clip_cfg(m->clip)->hidden;
        if (nctx > dbg->ctx_cap) {
            st = sdc_fail(SDC_ERR_INVALID_ARG, "debug: %zu conditioning floats, room for %zu",
                          nctx, dbg->ctx_cap);
            goto done;
        }
        memcpy(dbg->ctx, g.ctx, nctx * sizeof *g.ctx);
        if (dbg->ctx_tokens) *dbg->ctx_tokens = g.S;
    }
    if (dbg && dbg->text_only) goto done;
    double t_enc = now_s();
    if (p->init_image) {
        sdc_backend_profile_stage(m->be, "vae");
        st = encode_image(m, p, &g, h, w, n);
        if (st != SDC_OK) goto done;
    }
    double t2 = now_s();
    sdc_backend_profile_stage(m->be, "unet");
    st = denoise(m, p, &g, B, h, w, n);
    if (st != SDC_OK) goto done;
    double t3 = now_s();
    if (dbg && dbg->latents) memcpy(dbg->latents, g.x, (size_t)n * sizeof(float));
    sdc_backend_profile_stage(m->be, "vae");
    st = decode(m, p, &g, h, w, n);
    if (st != SDC_OK) goto done;
    to_rgb(g.img, H, W, g.rgb, dbg ? dbg->image : NULL);
    double t4 = now_s();
    sdc_backend_profile_report(m->be, stderr, 1);

    out->width = W;
    out->height = H;
    out->channels = 3;
    out->data = g.rgb;
    g.rgb = NULL;
    if (timings) {
        timings->text = t_enc - t1;
        timings->encode = p->init_image ? t2 - t_enc : 0.0;
        timings->sample = t3 - t2;
        timings->decode = t4 - t3;
        timings->total = t4 - t0;
        timings->steps = sdc_sched_len(g.sched) - sdc_sched_begin(g.sched);
        timings->sample_steps = g.steps_s;
        timings->lora = lora_s;
    }
    if (m->verbose && m->be->memory) {
        size_t now = 0, peak = 0;
        m->be->memory(m->be, &now, &peak);
        fprintf(stderr, "sdc: device memory: peak %.0f MiB, %.0f MiB held now\n",
                peak / 1048576.0, now / 1048576.0);
    }

done:
    if (st != SDC_OK) {
        /* a failed generation leaves nothing queued or pending for the next;
         * the message is st's, not this sync's */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sdc_last_error());
        m->be->sync(m->be);
        sdc_fail(st, "%s", msg);
    }
    gen_free(&g);
    return st;
}

sdc_status sdc_model_apply_loras(sdc_model *m, const sdc_lora *loras, int n) {
    if (!m) return sdc_fail(SDC_ERR_INVALID_ARG, "sdc_model_apply_loras: NULL model");
    return sdc_lora_merge(m->mf, m->be, loras, n, m->n_threads, m->verbose, &m->lora);
}

sdc_status sdc_generate(sdc_model *m, const sdc_gen_params *p, sdc_image *out,
                        sdc_timings *timings) {
    return sdc_generate_debug(m, p, out, timings, NULL);
}
