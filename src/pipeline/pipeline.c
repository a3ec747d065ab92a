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
 * not encoded.
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
#include "io/model_files.h"
#include "models/models.h"
#include "pipeline/pipeline_internal.h"
#include "sched/rng.h"
#include "sched/sched.h"
#include "text/tokenizer.h"

/* Bounds on the image: each side at most SDC_MAX_SIDE pixels and at most
 * SDC_MAX_PIXELS pixels in all, so no size product can overflow. */
#define SDC_MAX_SIDE 16384
#define SDC_MAX_PIXELS (4096 * 4096)
#define SDC_MAX_STEPS 1000
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
    int vae_scale;       /* f = 2^(vae levels - 1): image / latent size */
    int unet_div;        /* 2^(unet levels - 1): latent sides must be multiples */
    int verbose;
    int low_memory;
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
    sdc_load_params p = {0, 0, 0, SDC_PRECISION_FP32, SDC_BACKEND_AUTO, NULL, 0};
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
    if (lp->precision == SDC_PRECISION_BF16) {
        sdc_status st = sdc_backend_cpu_set_bf16(m->be, 1);
        if (st != SDC_OK) return st;
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
    return p;
}

void sdc_model_free(sdc_model *m) {
    if (!m) return;
    sdc_vae_free(m->vae);
    sdc_unet_free(m->unet);
    sdc_clip_free(m->clip);
    if (m->be) m->be->free(m->be);
    sdc_tokenizer_free(m->tok);
    sdc_model_files_close(m->mf);
    free(m);
}

const char *sdc_model_describe(const sdc_model *m) { return m ? m->desc : ""; }

int sdc_model_vae_scale(const sdc_model *m) { return m ? m->vae_scale : 0; }

size_t sdc_model_released_bytes(const sdc_model *m) {
    return m ? sdc_model_files_released_bytes(m->mf) : 0;
}

int sdc_model_latent_channels(const sdc_model *m) {
    return m ? sdc_unet_cfg(m->unet)->in_channels : 0;
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
    if (vc->latent_channels != uc->in_channels || uc->out_channels != uc->in_channels)
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

sdc_status sdc_model_load(const char *path, const sdc_load_params *params, sdc_model **out) {
    if (out) *out = NULL;
    if (!path || !out) return sdc_fail(SDC_ERR_INVALID_ARG, "sdc_model_load: NULL argument");
    sdc_load_params lp = params ? *params : sdc_load_params_default();
    if ((unsigned)lp.backend >= SDC_BACKEND_COUNT)
        return sdc_fail(SDC_ERR_INVALID_ARG, "backend %d is not one of auto, cpu, opencl",
                        (int)lp.backend);
    if (lp.n_threads < 0 || lp.n_threads > 4096)
        return sdc_fail(SDC_ERR_INVALID_ARG, "thread count %d is out of range (0 = all cores)",
                        lp.n_threads);

    sdc_model *m = calloc(1, sizeof *m);
    if (!m) return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    m->verbose = lp.verbose;
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

    snprintf(m->desc, sizeof m->desc,
             "SD 1.x, %s, unet %s, text encoder %s, vae %s, tokenizer %s, %s",
             sdc_model_files_layout(m->mf) == SDC_LAYOUT_DIFFUSERS ? "diffusers folder"
                                                                   : "single file",
             weight_dtype(m->mf, "unet.conv_in.weight"),
             weight_dtype(m->mf, "text_encoder.text_model.embeddings.token_embedding.weight"),
             weight_dtype(m->mf, "vae.decoder.conv_in.weight"),
             vocab && merges ? "from the model" : "built-in", sdc_model_files_name(m->mf));
    if (m->verbose)
        fprintf(stderr, "sdc: loaded %s (%s)%s%s; backend %s\n", path, m->desc,
                m->low_memory ? "; low-memory mode" : "",
                lp.precision == SDC_PRECISION_BF16 ? "; bf16 precision" : "",
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

static sdc_status check_params(const sdc_model *m, const sdc_gen_params *p) {
    if (!p->prompt) return sdc_fail(SDC_ERR_INVALID_ARG, "prompt is NULL");
    int gran = m->vae_scale * m->unet_div;
    if (gran < 8) gran = 8;
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
    if ((unsigned)p->vae_tiling >= SDC_VAE_TILING_COUNT)
        return sdc_fail(SDC_ERR_INVALID_ARG, "unknown VAE tiling mode %d", (int)p->vae_tiling);
    return SDC_OK;
}

/* Everything one sdc_generate call owns; freed by gen_free. */
typedef struct gen_state {
    sdc_sched *sched;
    sdc_arena arena; /* the network that runs now */
    float *x;        /* host [n]: latents */
    float *eps;      /* host [n]: guided noise; then x / scaling_factor */
    float *ctx;      /* host [B, S, D]: uncond then cond */
    float *img;      /* host [3, H, W] */
    uint8_t *rgb;    /* host [H, W, 3]; handed to the caller on success */
    double steps_s;  /* seconds in the denoising steps themselves */
} gen_state;

static void gen_free(gen_state *g) {
    sdc_sched_free(g->sched);
    sdc_arena_free(&g->arena);
    free(g->x);
    free(g->eps);
    free(g->ctx);
    free(g->img);
    free(g->rgb);
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
}

/* The backend's first failure since the last check (a device's; the CPU
 * never fails), named with the network it happened in. */
static sdc_status synced(const sdc_model *m, const char *what) {
    sdc_status st = m->be->sync(m->be);
    return st == SDC_OK ? st : sdc_fail_context(st, "%s", what);
}

/* Text stage: g->ctx [B, S, D] = clip(negative) (if B == 2), clip(prompt). */
static sdc_status encode_text(sdc_model *m, const sdc_gen_params *p, gen_state *g, int B) {
    const int S = SDC_CLIP_CONTEXT, D = sdc_clip_cfg(m->clip)->hidden;
    int32_t ids[2][SDC_CLIP_CONTEXT];
    const char *texts[2] = {p->negative_prompt ? p->negative_prompt : "", p->prompt};
    const int V = sdc_clip_cfg(m->clip)->vocab_size;
    for (int b = 0; b < B; b++) {
        const char *t = texts[2 - B + b];
        if (sdc_tokenize(m->tok, t, ids[b]) < 0)
            return sdc_fail_context(SDC_ERR_INVALID_ARG, "%s",
                                    t == p->prompt ? "prompt" : "negative prompt");
        /* the embedding has V rows: a tokenizer/vocab.json larger than the
         * text encoder's table gives ids that it has no row for (the
         * reference fails on them as well: an index error) */
        for (int i = 0; i < S; i++)
            if (ids[b][i] < 0 || ids[b][i] >= V)
                return sdc_fail(SDC_ERR_FORMAT,
                                "the tokenizer gave token id %d, but the text encoder has %d "
                                "token embeddings (the vocabulary does not fit the model)",
                                (int)ids[b][i], V);
    }

    prefetch_weights(m, "text_encoder.");
    sdc_arena *a = &g->arena;
    sdc_arena_plan(a);
    float *out = sdc_arena_alloc(a, (size_t)S * D); /* dev [S, D] */
    size_t mark = sdc_arena_mark(a);
    sdc_clip_forward(m->clip, sdc_backend_null(), a, ids[0], S, out);
    sdc_status st = arena_commit_plan(m, a, "the text encoder");
    if (st != SDC_OK) return st;
    out = sdc_arena_alloc(a, (size_t)S * D);
    if (!out || sdc_arena_mark(a) != mark) return arena_checked(a, "the text encoder");
    for (int b = 0; b < B; b++) {
        sdc_arena_reset(a, mark);
        sdc_clip_forward(m->clip, m->be, a, ids[b], S, out);
        if ((st = arena_checked(a, "the text encoder")) != SDC_OK) return st;
        m->be->copy_out(m->be, g->ctx + (size_t)b * S * D, out, (int64_t)S * D);
        if ((st = synced(m, "the text encoder")) != SDC_OK) return st;
        if (cancel_asked(m)) return cancel_requested();
        st = check_finite(g->ctx + (size_t)b * S * D, (int64_t)S * D, "text encoder", 0, 0);
        if (st != SDC_OK) return st;
        if (report(p, SDC_STAGE_TEXT, b + 1, B)) return cancelled();
    }
    sdc_arena_free(a);
    release_weights(m, "text_encoder.");
    return SDC_OK;
}

/* Sample stage: the denoising loop over g->x [n] (n = C*h*w). */
static sdc_status denoise(sdc_model *m, const sdc_gen_params *p, gen_state *g, int B, int h,
                          int w, int64_t n) {
    sdc_backend *be = m->be;
    const int S = SDC_CLIP_CONTEXT, D = sdc_clip_cfg(m->clip)->hidden;
    const size_t ctx_n = (size_t)B * S * D;
    sdc_arena *a = &g->arena;
    float t[2];

    /* plan: in dev [C, h, w] (the B rows share it), ctx dev [B, S, D], the context's keys and
     * values kv (sdc_unet_context), out dev [B, C, h, w], then one UNet pass
     * against the null backend */
    float *in = NULL, *ctx = NULL, *kv = NULL, *out = NULL;
    size_t mark = 0;
    sdc_arena_plan(a);
    for (int pass = 0; pass < 2; pass++) {
        in = sdc_arena_alloc(a, (size_t)n);
        ctx = sdc_arena_alloc(a, ctx_n);
        kv = sdc_arena_alloc(a, sdc_unet_context_floats(m->unet, B, S));
        out = sdc_arena_alloc(a, (size_t)(B * n));
        mark = sdc_arena_mark(a);
        if (pass == 0) {
            t[0] = t[1] = sdc_sched_timestep(g->sched, 0);
            sdc_unet_forward(m->unet, sdc_backend_null(), a, in, B, B > 1, h, w, t, ctx, S, NULL,
                             out);
            sdc_status st = arena_commit_plan(m, a, "the UNet");
            if (st != SDC_OK) return st;
        }
    }
    if (!in || !ctx || !kv || !out) return arena_checked(a, "the UNet");
    prefetch_weights(m, "unet.");
    be->copy_in(be, ctx, g->ctx, (int64_t)ctx_n);
    /* the prompt's cross-attention keys and values, once for all steps
     * (SDC_PROFILE counts them with the prompt's other work, as "text") */
    sdc_backend_profile_stage(be, "text");
    sdc_unet_context(m->unet, be, ctx, B, S, kv);
    sdc_backend_profile_stage(be, "unet");

    sdc_rng rng;
    sdc_rng_seed(&rng, p->seed);
    sdc_rng_randn(&rng, g->x, n);
    const float sigma0 = sdc_sched_init_noise_sigma(g->sched);
    for (int64_t i = 0; i < n; i++) g->x[i] *= sigma0;

    const int len = sdc_sched_len(g->sched);
    const double t_steps = now_s();
    for (int i = 0; i < len; i++) {
        /* the B rows (CFG: unconditional, conditional) share the input:
         * the UNet takes it once (sdc_unet_forward's shared) */
        be->copy_in(be, in, g->x, n);
        float s = sdc_sched_input_scale(g->sched, i);
        if (s != 1.0f) be->axpby(be, in, s, in, 0.0f, NULL, n);
        t[0] = t[1] = sdc_sched_timestep(g->sched, i);
        sdc_arena_reset(a, mark);
        sdc_unet_forward(m->unet, be, a, in, B, B > 1, h, w, t, ctx, S, kv, out);
        sdc_status st = arena_checked(a, "the UNet");
        if (st != SDC_OK) return st;
        if (B == 2) be->lerp(be, out, out, out + n, p->cfg_scale, n);
        be->copy_out(be, g->eps, out, n);
        if ((st = synced(m, "the UNet")) != SDC_OK) return st;
        if (cancel_asked(m)) return cancel_requested();
        sdc_sched_step(g->sched, i, g->eps, g->x, &rng);
        if ((st = check_finite(g->x, n, "UNet", i + 1, len)) != SDC_OK) return st;
        if (report(p, SDC_STAGE_SAMPLE, i + 1, len)) return cancelled();
    }
    g->steps_s = now_s() - t_steps;
    sdc_arena_free(a);
    release_weights(m, "unet.");
    return SDC_OK;
}

static sdc_status alloc_floats(float **p, size_t n) {
    size_t bytes;
    if (!sdc_mul_size(n, sizeof(float), &bytes) || !(*p = malloc(bytes ? bytes : 1)))
        return sdc_fail(SDC_ERR_NOMEM, "out of memory (%zu floats)", n);
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
 * whole or in tiles (vae_tile). */
static sdc_status decode(sdc_model *m, const sdc_gen_params *p, gen_state *g, int h, int w,
                         int64_t n) {
    const int64_t img_n = (int64_t)3 * p->height * p->width;
    const float sf = sdc_vae_cfg(m->vae)->scaling_factor;
    for (int64_t i = 0; i < n; i++) g->eps[i] = g->x[i] / sf; /* as diffusers: a division */
    prefetch_weights(m, "vae.post_quant_conv.");
    prefetch_weights(m, "vae.decoder.");
    const int tile = vae_tile(m, p, h, w);
    sdc_status st = tile ? decode_tiles(m, g, h, w, tile) : decode_whole(m, g, h, w, n, img_n);
    if (st != SDC_OK) return st;
    if (cancel_asked(m)) return cancel_requested();
    if ((st = check_finite(g->img, img_n, "VAE decoder", 0, 0)) != SDC_OK) return st;
    sdc_arena_free(&g->arena);
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
    const int C = sdc_unet_cfg(m->unet)->in_channels;
    const int64_t n = (int64_t)C * h * w;
    const int B = p->cfg_scale > 1.0f ? 2 : 1;
    const int D = sdc_clip_cfg(m->clip)->hidden;
    const size_t plane = (size_t)H * W;

    gen_state g;
    memset(&g, 0, sizeof g);
    g.arena.be = m->be; /* activation memory is the backend's */
    if (cancel_asked(m)) {
        st = cancel_requested();
        goto done;
    }
    st = sdc_sched_create(p->sampler, p->schedule, sdc_model_files_sched(m->mf), p->steps, n,
                          &g.sched);
    if (st != SDC_OK) goto done;
    if ((st = alloc_floats(&g.x, (size_t)n)) != SDC_OK ||
        (st = alloc_floats(&g.eps, (size_t)n)) != SDC_OK ||
        (st = alloc_floats(&g.ctx, (size_t)B * SDC_CLIP_CONTEXT * D)) != SDC_OK ||
        (st = alloc_floats(&g.img, 3 * plane)) != SDC_OK)
        goto done;
    if (!(g.rgb = malloc(3 * plane))) {
        st = sdc_fail(SDC_ERR_NOMEM, "out of memory");
        goto done;
    }

    double t1 = now_s();
    /* a failed generation's ops must not count into this one's table */
    sdc_backend_profile_report(m->be, NULL, 1);
    sdc_backend_profile_stage(m->be, "text");
    st = encode_text(m, p, &g, B);
    if (st != SDC_OK) goto done;
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
        timings->text = t2 - t1;
        timings->sample = t3 - t2;
        timings->decode = t4 - t3;
        timings->total = t4 - t0;
        timings->steps = sdc_sched_len(g.sched);
        timings->sample_steps = g.steps_s;
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

sdc_status sdc_generate(sdc_model *m, const sdc_gen_params *p, sdc_image *out,
                        sdc_timings *timings) {
    return sdc_generate_debug(m, p, out, timings, NULL);
}
