#include "args.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void cli_usage(FILE *f) {
    fprintf(f,
            "usage: sdc -m MODEL -p PROMPT [options]\n"
            "\n"
            "Makes an image from a text prompt with a Stable Diffusion 1.x model, from\n"
            "scratch, from an init image, or inpainting a masked part of one.\n"
            "\n"
            "  -m, --model PATH            model: a .safetensors checkpoint or a diffusers folder\n"
            "  -p, --prompt TEXT           what to draw\n"
            "  -n, --negative-prompt TEXT  what to avoid (default: none)\n"
            "  -o, --output FILE           PNG to write (default: output.png)\n"
            "  -W, --width N               image width in pixels, a multiple of 8 (default 512;\n"
            "                              with -i the init image's, rounded down to a\n"
            "                              multiple of 64)\n"
            "  -H, --height N              image height in pixels, likewise\n"
            "  -i, --init-image FILE       image to image: start from this PNG or JPEG (resized\n"
            "                              to -W x -H with Lanczos when its size differs)\n"
            "      --strength X            0..1: how much of the init image is redrawn; the\n"
            "                              sampler runs int(steps * X) of its steps (default\n"
            "                              0.75; 1.0 with --mask)\n"
            "      --mask FILE             inpainting: white is repainted, black kept (grey\n"
            "                              from 50%% counts as white); the init image's size.\n"
            "                              An inpainting model (UNet with 9 input channels)\n"
            "                              needs it; with an ordinary model the kept part is\n"
            "                              blended back after every step\n"
            "      --steps N               sampling steps, 1..%d (default 20)\n"
            "      --cfg-scale X           classifier-free guidance scale, 0..%g (default 7.5;\n"
            "                              <= 1 turns guidance off: one UNet pass per step).\n"
            "                              An LCM-distilled model (e.g. LCM_Dreamshaper_v7)\n"
            "                              takes it as an input, one pass per step, and no\n"
            "                              negative prompt: run it with --sampler lcm\n"
            "                              --steps 4 --cfg-scale 8\n"
            "  -s, --seed N                0..18446744073709551615, or -1 for a random seed\n"
            "                              (default -1; the seed used is printed)\n"
            "      --sampler NAME          euler, euler_a, heun, dpm++2m, ddim, pndm, lms,\n"
            "                              lcm, tcd (default dpm++2m; lcm and tcd: 1..50\n"
            "                              steps, for LCM and TCD models and LoRAs)\n"
            "      --scheduler NAME        discrete or karras (default: karras where the\n"
            "                              sampler offers it and no spacing is asked for,\n"
            "                              else discrete)\n"
            "      --timestep-spacing S    default, linspace, leading or trailing: where the\n"
            "                              steps' timesteps fall (default: the sampler's own,\n"
            "                              as in diffusers; few-step models want trailing)\n"
            "  -b, --batch-count N         images to make, seeds seed, seed+1, ... (default 1);\n"
            "                              with N > 1 the outputs are numbered: out.png ->\n"
            "                              out-1.png ... out-N.png\n"
            "  -t, --threads N             CPU threads (default 0: all cores)\n"
            "      --overwrite             replace existing output files (regular files\n"
            "                              only: a device, FIFO or folder is refused)\n"
            "      --low-memory            keep the weights out of memory between uses: each\n"
            "                              block maps its weights in from the file and lets\n"
            "                              them go after it runs (peak memory at 512x512\n"
            "                              about 0.7 GB instead of 2 GB, ~5%% slower; the\n"
            "                              same image)\n"
            "      --vae-tiling MODE       auto, on or off (default auto): decode the image in\n"
            "                              overlapping tiles of the VAE's size (512x512 for\n"
            "                              SD 1.x) blended into each other, so the decoder\n"
            "                              needs one tile's memory (0.5 GiB) at any image size\n"
            "                              (diffusers' enable_tiling); auto tiles images larger\n"
            "                              than 512 pixels on a side, on also smaller ones for\n"
            "                              a VAE with smaller tiles, off decodes the whole\n"
            "                              image at once (2 GiB at 1024x1024; ~25%% faster)\n"
            "      --precision P           fp32, bf16 or auto (default fp32): bf16 rounds the\n"
            "                              operands of the linear layers, the non-Winograd\n"
            "                              convolutions and (on AMX) attention to bf16 and\n"
            "                              sums in fp32: on AMX-BF16 tiles (Sapphire Rapids\n"
            "                              and later Xeons) or AVX512_BF16 where the CPU has\n"
            "                              them (refused on others), a slightly different\n"
            "                              image; auto takes bf16 where it is the faster\n"
            "                              (AMX; AVX512_BF16 on AMD), else fp32\n"
            "      --backend B             auto, cpu or opencl (default auto): auto runs on an\n"
            "                              OpenCL GPU when there is one, else on the CPU;\n"
            "                              opencl insists (CPU OpenCL devices included)\n"
            "      --device D              the OpenCL device: its number in --list-devices or\n"
            "                              part of its name (default: the first GPU)\n"
            "      --list-devices          list the OpenCL devices and exit\n"
            "      --fp16-activations      on an OpenCL device, keep activations as fp16 (half\n"
            "                              the activation memory; a slightly different image)\n"
            "      --preview FILE          while sampling, write the current estimate of the\n"
            "                              image to FILE (PNG, replaced atomically: a viewer\n"
            "                              never sees half a file); 1/8 of the image's size\n"
            "                              (a linear map of the latents), or the full size\n"
            "                              through --taesd\n"
            "      --preview-every N       a preview every N steps (default 1)\n"
            "      --taesd PATH            TAESD (madebyollin/taesd: a diffusers folder or\n"
            "                              .safetensors), a tiny VAE: decodes the image,\n"
            "                              encodes the init image and draws full-size\n"
            "                              previews, an order of magnitude faster than the\n"
            "                              VAE, with a little less detail\n"
            "      --taesd-preview-only    TAESD for the previews only (the VAE for the rest)\n"
            "      --lora FILE[:W]         apply a LoRA (.safetensors, kohya-ss or diffusers/\n"
            "                              PEFT naming; LCM-LoRA, TCD-LoRA, styles) at weight W\n"
            "                              (default 1; a path holding ':' takes its last ':'\n"
            "                              as the weight's only when a number follows);\n"
            "                              repeatable, up to %d, the updates add up.  Merged\n"
            "                              into the weights once (a scratch file in $TMPDIR)\n"
            "      --lora-dir DIR          where <lora:NAME:W> prompt tags find NAME.safetensors\n"
            "      --clip-skip N           AUTOMATIC1111's CLIP skip: 1 the text encoder's last\n"
            "                              layer (default), 2 the one before, ... (models\n"
            "                              trained on it, e.g. anime ones, want 2)\n"
            "      --embeddings DIR        textual-inversion embeddings: each .safetensors\n"
            "                              file in DIR is used where its name (without the\n"
            "                              extension) appears in a prompt\n"
            "      --prompt-syntax S       a1111 or plain (default a1111): a1111 reads prompts\n"
            "                              as AUTOMATIC1111 does: (word) x1.1, [word] /1.1,\n"
            "                              (word:1.3), \\( for a bracket, BREAK, <lora:NAME:W>,\n"
            "                              any length (75-token chunks); plain is diffusers'\n"
            "                              StableDiffusionPipeline: the text as it is, cut at\n"
            "                              77 tokens\n"
            "  -v, --verbose               say more about the model and the timings\n"
            "      --version               print the version and how sdc was built\n"
            "  -h, --help                  print this help\n"
            "\n"
            "The PNG carries the settings in a \"parameters\" text chunk, in the format of\n"
            "AUTOMATIC1111's web UI.  Exit status: 0 done, 1 runtime error, 2 usage error,\n"
            "130 interrupted.\n",
            CLI_MAX_STEPS, (double)CLI_MAX_CFG, CLI_MAX_LORAS);
}

static int usage_error(const char *fmt, ...) SDC_PRINTF(1, 2);

/* Prints "sdc: <message>" and a hint; returns 2 (the usage-error status). */
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sdc: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'sdc --help' for more information.\n");
    va_end(ap);
    return 2;
}

/* A whole decimal integer in [lo, hi]; no spaces, no trailing text. */
static int parse_int(const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    if (!*s || isspace((unsigned char)*s))
        return usage_error("%s: '%s' is not a number", opt, s);
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end) return usage_error("%s: '%s' is not a whole number", opt, s);
    if (errno == ERANGE || v < lo || v > hi) {
        return usage_error("%s: %s is out of range (%ld..%ld)", opt, s, lo, hi);
    }
    *out = (int)v;
    return 0;
}

static int parse_float(const char *opt, const char *s, float lo, float hi, float *out) {
    char *end;
    if (!*s || isspace((unsigned char)*s))
        return usage_error("%s: '%s' is not a number", opt, s);
    errno = 0;
    float v = strtof(s, &end);
    if (*end) return usage_error("%s: '%s' is not a number", opt, s);
    if (errno == ERANGE || !isfinite(v) || v < lo || v > hi) {
        return usage_error("%s: %s is out of range (%g..%g)", opt, s, (double)lo, (double)hi);
    }
    *out = v;
    return 0;
}

/* -1 (random) or 0..2^64-1. */
static int parse_seed(const char *opt, const char *s, cli_args *a) {
    if (strcmp(s, "-1") == 0) {
        a->seed_random = 1;
        return 0;
    }
    if (!isdigit((unsigned char)*s))
        return usage_error("%s: '%s' is not a seed (0..18446744073709551615, or -1)", opt, s);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end) return usage_error("%s: '%s' is not a whole number", opt, s);
    if (errno == ERANGE || v > UINT64_MAX)
        return usage_error("%s: %s is out of range (0..18446744073709551615, or -1)", opt, s);
    a->seed_random = 0;
    a->seed = (uint64_t)v;
    return 0;
}

static int parse_side(const char *opt, const char *s, int *out) {
    int rc = parse_int(opt, s, 8, CLI_MAX_SIDE, out);
    if (rc) return rc;
    if (*out % 8 != 0) return usage_error("%s: %s is not a multiple of 8", opt, s);
    return 0;
}

static int parse_tiling(const char *opt, const char *s, sdc_vae_tiling *out) {
    static const char *const names[SDC_VAE_TILING_COUNT] = {"auto", "on", "off"};
    for (int i = 0; i < SDC_VAE_TILING_COUNT; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (sdc_vae_tiling)i;
            return 0;
        }
    return usage_error("%s: unknown mode '%s' (choose auto, on or off)", opt, s);
}

/* --lora FILE[:WEIGHT]: the text after the last ':' is the weight when it
 * is a number (so "C:/x.safetensors" and "a:b.safetensors" stay paths).  The
 * ':' is overwritten with a NUL in place: argv's strings are the program's
 * to change, and the path then lives as long as argv. */
static int parse_lora(const char *opt, const char *v, cli_args *a) {
    if (!*v) return usage_error("%s: empty file name", opt);
    if (a->n_loras == CLI_MAX_LORAS) return usage_error("%s: more than %d LoRAs", opt, CLI_MAX_LORAS);
    float w = 1.0f;
    char *colon = strrchr(v, ':');
    if (colon && colon != v && colon[1] && !isspace((unsigned char)colon[1])) {
        char *end;
        errno = 0;
        float x = strtof(colon + 1, &end);
        if (!*end) {
            if (errno == ERANGE || !isfinite(x) || fabsf(x) > CLI_MAX_LORA_WEIGHT)
                return usage_error("%s: weight %s is out of range (-%g..%g)", opt, colon + 1,
                                   (double)CLI_MAX_LORA_WEIGHT, (double)CLI_MAX_LORA_WEIGHT);
            w = x;
            *colon = 0;
        }
    }
    a->loras[a->n_loras].path = v;
    a->loras[a->n_loras].weight = w;
    a->n_loras++;
    return 0;
}

typedef enum {
    O_MODEL, O_PROMPT, O_NEG, O_OUTPUT, O_WIDTH, O_HEIGHT, O_STEPS, O_CFG, O_SEED,
    O_SAMPLER, O_SCHED, O_BATCH, O_THREADS, O_OVERWRITE, O_LOW_MEMORY, O_VERBOSE,
    O_VERSION, O_HELP, O_VAE_TILING, O_PRECISION, O_BACKEND, O_DEVICE, O_LIST_DEVICES,
    O_FP16_ACT, O_INIT, O_MASK, O_STRENGTH, O_PREVIEW, O_PREVIEW_EVERY, O_TAESD, O_TAESD_PREVIEW,
    O_SPACING, O_LORA, O_LORA_DIR, O_CLIP_SKIP, O_EMBEDDINGS, O_PROMPT_SYNTAX
} opt_id;

typedef struct opt {
    char shrt;        /* 0: none */
    const char *lng;
    int takes_value;
    opt_id id;
} opt;

static const opt OPTS[] = {
    {'m', "model", 1, O_MODEL},          {'p', "prompt", 1, O_PROMPT},
    {'n', "negative-prompt", 1, O_NEG},  {'o', "output", 1, O_OUTPUT},
    {'W', "width", 1, O_WIDTH},          {'H', "height", 1, O_HEIGHT},
    {0, "steps", 1, O_STEPS},            {0, "cfg-scale", 1, O_CFG},
    {'s', "seed", 1, O_SEED},            {0, "sampler", 1, O_SAMPLER},
    {0, "scheduler", 1, O_SCHED},        {'b', "batch-count", 1, O_BATCH},
    {'t', "threads", 1, O_THREADS},      {0, "overwrite", 0, O_OVERWRITE},
    {'v', "verbose", 0, O_VERBOSE},      {0, "version", 0, O_VERSION},
    {'h', "help", 0, O_HELP},            {0, "low-memory", 0, O_LOW_MEMORY},
    {0, "vae-tiling", 1, O_VAE_TILING},  {0, "precision", 1, O_PRECISION},
    {0, "backend", 1, O_BACKEND},        {0, "device", 1, O_DEVICE},
    {0, "list-devices", 0, O_LIST_DEVICES}, {0, "fp16-activations", 0, O_FP16_ACT},
    {'i', "init-image", 1, O_INIT},      {0, "mask", 1, O_MASK},
    {0, "strength", 1, O_STRENGTH},      {0, "preview", 1, O_PREVIEW},
    {0, "preview-every", 1, O_PREVIEW_EVERY}, {0, "taesd", 1, O_TAESD},
    {0, "taesd-preview-only", 0, O_TAESD_PREVIEW}, {0, "timestep-spacing", 1, O_SPACING},
    {0, "lora", 1, O_LORA},              {0, "lora-dir", 1, O_LORA_DIR},
    {0, "clip-skip", 1, O_CLIP_SKIP},    {0, "embeddings", 1, O_EMBEDDINGS},
    {0, "prompt-syntax", 1, O_PROMPT_SYNTAX},
};
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])

static int apply(const opt *o, const char *name, const char *v, cli_args *a) {
    switch (o->id) {
    case O_MODEL: a->model = v; return 0;
    case O_PROMPT: a->prompt = v; return 0;
    case O_NEG: a->negative = v; return 0;
    case O_OUTPUT:
        if (!*v) return usage_error("%s: empty file name", name);
        a->output = v;
        return 0;
    case O_WIDTH: a->width_given = 1; return parse_side(name, v, &a->width);
    case O_HEIGHT: a->height_given = 1; return parse_side(name, v, &a->height);
    case O_INIT:
        if (!*v) return usage_error("%s: empty file name", name);
        a->init_image = v;
        return 0;
    case O_MASK:
        if (!*v) return usage_error("%s: empty file name", name);
        a->mask = v;
        return 0;
    case O_PREVIEW:
        if (!*v) return usage_error("%s: empty file name", name);
        a->preview = v;
        return 0;
    case O_PREVIEW_EVERY: return parse_int(name, v, 1, CLI_MAX_STEPS, &a->preview_every);
    case O_TAESD:
        if (!*v) return usage_error("%s: empty path", name);
        a->taesd = v;
        return 0;
    case O_TAESD_PREVIEW: a->taesd_preview_only = 1; return 0;
    case O_SPACING:
        a->spacing = sdc_spacing_from_name(v);
        if (a->spacing >= SDC_SPACING_COUNT)
            return usage_error("%s: unknown spacing '%s' (choose default, linspace, leading or "
                               "trailing)", name, v);
        return 0;
    case O_STRENGTH: {
        float f;
        int rc = parse_float(name, v, 0.0f, 1.0f, &f);
        if (rc) return rc;
        a->strength = strtod(v, NULL); /* the decimal as a double, as diffusers takes it */
        a->strength_given = 1;
        return 0;
    }
    case O_STEPS: return parse_int(name, v, 1, CLI_MAX_STEPS, &a->steps);
    case O_CFG: return parse_float(name, v, 0.0f, CLI_MAX_CFG, &a->cfg_scale);
    case O_SEED: return parse_seed(name, v, a);
    case O_SAMPLER:
        a->sampler = sdc_sampler_from_name(v);
        if (a->sampler >= SDC_SAMPLER_COUNT)
            return usage_error("%s: unknown sampler '%s' (choose from euler, euler_a, heun, "
                               "dpm++2m, ddim, pndm, lms, lcm, tcd)",
                               name, v);
        return 0;
    case O_SCHED:
        a->schedule = sdc_schedule_from_name(v);
        if (a->schedule >= SDC_SCHEDULE_COUNT)
            return usage_error("%s: unknown scheduler '%s' (choose discrete or karras)", name,
                               v);
        a->schedule_given = 1;
        return 0;
    case O_BATCH: return parse_int(name, v, 1, CLI_MAX_BATCH, &a->batch_count);
    case O_THREADS: return parse_int(name, v, 0, CLI_MAX_THREADS, &a->threads);
    case O_OVERWRITE: a->overwrite = 1; return 0;
    case O_LOW_MEMORY: a->low_memory = 1; return 0;
    case O_VAE_TILING: return parse_tiling(name, v, &a->vae_tiling);
    case O_PRECISION:
        if (strcmp(v, "fp32") == 0) a->precision = SDC_PRECISION_FP32;
        else if (strcmp(v, "bf16") == 0) a->precision = SDC_PRECISION_BF16;
        else if (strcmp(v, "auto") == 0) a->precision = SDC_PRECISION_AUTO;
        else return usage_error("%s: unknown precision '%s' (choose fp32, bf16 or auto)", name, v);
        return 0;
    case O_BACKEND:
        if (strcmp(v, "auto") == 0) a->backend = SDC_BACKEND_AUTO;
        else if (strcmp(v, "cpu") == 0) a->backend = SDC_BACKEND_CPU;
        else if (strcmp(v, "opencl") == 0) a->backend = SDC_BACKEND_OPENCL;
        else return usage_error("%s: unknown backend '%s' (choose auto, cpu or opencl)", name, v);
        return 0;
    case O_DEVICE:
        if (!*v) return usage_error("%s: empty device name", name);
        a->device = v;
        return 0;
    case O_LIST_DEVICES: a->list_devices = 1; return 0;
    case O_FP16_ACT: a->fp16_activations = 1; return 0;
    case O_VERBOSE: a->verbose = 1; return 0;
    case O_VERSION: a->version = 1; return 0;
    case O_HELP: a->help = 1; return 0;
    case O_LORA: return parse_lora(name, v, a);
    case O_LORA_DIR:
        if (!*v) return usage_error("%s: empty path", name);
        a->lora_dir = v;
        return 0;
    case O_CLIP_SKIP: return parse_int(name, v, 1, CLI_MAX_CLIP_SKIP, &a->clip_skip);
    case O_EMBEDDINGS:
        if (!*v) return usage_error("%s: empty path", name);
        a->embeddings = v;
        return 0;
    case O_PROMPT_SYNTAX:
        if (strcmp(v, "a1111") == 0) a->prompt_syntax = SDC_PROMPT_A1111;
        else if (strcmp(v, "plain") == 0) a->prompt_syntax = SDC_PROMPT_PLAIN;
        else return usage_error("%s: unknown syntax '%s' (choose a1111 or plain)", name, v);
        return 0;
    }
    return 0;
}

int cli_parse(int argc, char **argv, cli_args *a) {
    memset(a, 0, sizeof *a);
    a->output = "output.png";
    a->steps = 20;
    a->cfg_scale = 7.5f;
    a->width = a->height = 512;
    a->seed_random = 1;
    a->sampler = SDC_SAMPLER_DPMPP_2M;
    a->schedule = SDC_SCHEDULE_KARRAS;
    a->batch_count = 1;
    a->vae_tiling = SDC_VAE_TILING_AUTO;
    a->preview_every = 1;
    a->clip_skip = 1;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const opt *o = NULL;
        const char *value = NULL; /* attached: --name=value or -Xvalue */
        char name[64];
        if (strcmp(arg, "--") == 0) {
            if (i + 1 < argc)
                return usage_error("unexpected argument '%s'", argv[i + 1]);
            break;
        }
        if (arg[0] == '-' && arg[1] == '-' && arg[2]) {
            const char *eq = strchr(arg + 2, '=');
            size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
            for (size_t k = 0; k < N_OPTS; k++)
                if (strlen(OPTS[k].lng) == len && strncmp(OPTS[k].lng, arg + 2, len) == 0)
                    o = &OPTS[k];
            if (!o) return usage_error("unknown option '%s'", arg);
            snprintf(name, sizeof name, "--%s", o->lng);
            if (eq) {
                if (!o->takes_value) return usage_error("%s takes no value", name);
                value = eq + 1;
            }
        } else if (arg[0] == '-' && arg[1] && arg[1] != '-') {
            for (size_t k = 0; k < N_OPTS; k++)
                if (OPTS[k].shrt == arg[1]) o = &OPTS[k];
            if (!o) return usage_error("unknown option '%s'", arg);
            snprintf(name, sizeof name, "--%s", o->lng); /* messages use the long name */
            if (arg[2]) {
                if (!o->takes_value) return usage_error("unknown option '%s'", arg);
                value = arg + 2;
            }
        } else {
            return usage_error("unexpected argument '%s' (options start with - or --)", arg);
        }
        if (o->takes_value && !value) {
            if (i + 1 >= argc) return usage_error("%s needs a value", name);
            value = argv[++i];
        }
        int rc = apply(o, name, value, a);
        if (rc) return rc;
    }
    if (a->help || a->version || a->list_devices) return 0;
    if (a->backend == SDC_BACKEND_CPU && a->device)
        return usage_error("--device chooses an OpenCL device; it does not go with --backend cpu");
    if (a->backend == SDC_BACKEND_CPU && a->fp16_activations)
        return usage_error("--fp16-activations is a mode of OpenCL devices, not of --backend cpu");
    if (a->mask && !a->init_image)
        return usage_error("--mask needs the image to inpaint (-i FILE)");
    if (a->strength_given && !a->init_image)
        return usage_error("--strength needs an init image (-i FILE)");
    if (!a->strength_given) a->strength = a->mask ? 1.0 : 0.75;
    if (a->embeddings && a->prompt_syntax == SDC_PROMPT_PLAIN)
        return usage_error("--embeddings needs --prompt-syntax a1111 (plain prompts are "
                           "diffusers' and take no embeddings)");
    if (a->lora_dir && a->prompt_syntax == SDC_PROMPT_PLAIN)
        return usage_error("--lora-dir needs --prompt-syntax a1111 (plain prompts have no "
                           "<lora:...> tags; use --lora FILE)");
    if (a->taesd_preview_only && !a->taesd)
        return usage_error("--taesd-preview-only needs --taesd PATH");
    if (!a->model) return usage_error("no model given (use -m PATH)");
    if (!a->prompt) return usage_error("no prompt given (use -p TEXT)");
    return 0;
}
