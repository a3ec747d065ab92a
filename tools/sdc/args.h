/* Command line of the sdc program. */
#ifndef SDC_TOOL_ARGS_H
#define SDC_TOOL_ARGS_H

#include <stdint.h>
#include <stdio.h>

#include "sdc.h"

/* Limits the parser enforces (the library checks the model-specific ones,
 * e.g. SD 1.x needs sides that are multiples of 64). */
#define CLI_MAX_SIDE 16384
#define CLI_MAX_STEPS 1000
#define CLI_MAX_CFG 100.0f
#define CLI_MAX_BATCH 10000
#define CLI_MAX_THREADS 4096
#define CLI_MAX_INPUT_PIXELS ((int64_t)8192 * 8192) /* an init image or mask */
#define CLI_MAX_LORAS 64
#define CLI_MAX_CLIP_SKIP 64 /* the model's layer count is checked when it is loaded */
#define CLI_MAX_LORA_WEIGHT 100.0f

typedef struct cli_args {
    const char *model;    /* -m; required */
    const char *prompt;   /* -p; required (may be "") */
    const char *negative; /* -n; NULL: none */
    const char *output;   /* -o; "output.png" */
    int steps;            /* 20 */
    float cfg_scale;      /* 7.5 */
    int width, height;    /* 512 */
    int seed_random;      /* 1: -s -1 or no -s */
    uint64_t seed;
    sdc_sampler sampler;  /* dpm++2m */
    sdc_schedule schedule;
    sdc_spacing spacing;  /* --timestep-spacing; default */
    int schedule_given;   /* 0: karras where the sampler offers it, else discrete */
    int batch_count;      /* 1 */
    int threads;          /* 0: all cores */
    int low_memory;       /* --low-memory */
    sdc_vae_tiling vae_tiling; /* --vae-tiling; auto */
    sdc_precision precision;   /* --precision; fp32 */
    sdc_backend_kind backend;  /* --backend; auto */
    const char *device;        /* --device; NULL */
    int list_devices;          /* --list-devices */
    int fp16_activations;      /* --fp16-activations */
    const char *init_image;    /* -i; NULL: text to image */
    const char *mask;          /* --mask; NULL: no inpainting */
    double strength;           /* --strength; 0.75, 1.0 with --mask */
    int strength_given;
    int width_given, height_given; /* -W, -H (with -i the default is the image's size) */
    const char *taesd;         /* --taesd; NULL: none */
    int taesd_preview_only;    /* --taesd-preview-only */
    const char *preview;       /* --preview; NULL: none */
    int preview_every;         /* --preview-every; 1 */
    int verbose, overwrite, help, version;
    sdc_lora loras[CLI_MAX_LORAS]; /* --lora FILE[:WEIGHT], in order; paths point into argv */
    int n_loras;
    const char *lora_dir;          /* --lora-dir; NULL: none */
    int clip_skip;                 /* --clip-skip; 1 */
    const char *embeddings;        /* --embeddings; NULL: none */
    sdc_prompt_syntax prompt_syntax; /* --prompt-syntax; a1111 */
} cli_args;

/* Parses argv into *a.  Returns 0 on success, or 2 after printing a message
 * naming the problem to stderr. */
int cli_parse(int argc, char **argv, cli_args *a);

void cli_usage(FILE *f);

#endif
