/* sdc: text to image with Stable Diffusion 1.x on the CPU.
 *
 *   sdc -m model.safetensors -p "a lighthouse at dawn" -o out.png
 *
 * Order of work: parse and check every argument, check that every output
 * file can be written, load the model, then make the images; so a mistake
 * costs no computation.  Exit status: 0 done, 1 runtime error, 2 usage
 * error (including sizes the model cannot make), 130 interrupted.  No output
 * file is ever left half-written. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "core/error.h"
#include "image/image_read.h"
#include "image/png.h"
#include "models/config.h"
#include "progress.h"
#include "sched/sched.h"
#include "sdc.h"

/* The sampler offers Karras sigmas (asks the scheduler module). */
static int offers_karras(sdc_sampler s) {
    sdc_sched_config cfg = sdc_sched_config_sd1();
    sdc_sched *sc = NULL;
    sdc_status st = sdc_sched_create(s, SDC_SCHEDULE_KARRAS, &cfg, 1, 1, &sc);
    sdc_sched_free(sc);
    sdc_clear_error();
    return st == SDC_OK;
}

/* Output i (1-based) of n: the path itself when n == 1, else "-i" before
 * the extension of the base name ("out.png" -> "out-2.png"; "out" ->
 * "out-2").  malloc'ed. */
static char *numbered_path(const char *path, int i, int n) {
    size_t len = strlen(path);
    char *r = malloc(len + 16);
    if (!r) return NULL;
    if (n == 1) {
        memcpy(r, path, len + 1);
        return r;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base) dot = path + len; /* no extension, or a dot file */
    size_t head = (size_t)(dot - path);
    memcpy(r, path, head);
    snprintf(r + head, len + 16 - head, "-%d%s", i, dot);
    return r;
}

/* The model's name for the PNG metadata, as A1111 writes it: the base name
 * of the file or folder without ".safetensors". */
static void model_name(const char *path, char *out, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    size_t l = len - start;
    static const char ext[] = ".safetensors";
    if (l > sizeof ext - 1 && strncmp(path + len - (sizeof ext - 1), ext, sizeof ext - 1) == 0)
        l -= sizeof ext - 1;
    if (l >= n) l = n - 1;
    memcpy(out, path + start, l);
    out[l] = 0;
}

/* 32 random bits (A1111-sized seeds are easy to retype). */
static uint64_t random_seed(void) {
    uint32_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        ssize_t got = read(fd, &v, sizeof v);
        close(fd);
        if (got == (ssize_t)sizeof v) return v;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint32_t)(ts.tv_sec * 1000003u ^ ts.tv_nsec ^ ((uint64_t)getpid() << 16));
}

/* The process's peak resident set so far, MiB (getrusage; Linux reports
 * ru_maxrss in KiB); negative if unknown. */
static double peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1.0;
    return (double)ru.ru_maxrss / 1024.0;
}

/* One line: text encoding, seconds per UNet step, VAE decode, total, peak
 * RSS. */
static void print_timings(const sdc_timings *tm) {
    double rss = peak_rss_mib();
    fprintf(stderr, "sdc: timings: ");
    if (tm->lora >= 0.005) fprintf(stderr, "LoRA merge %.2f s, ", tm->lora);
    fprintf(stderr, "text %.2f s, ", tm->text);
    if (tm->encode > 0) fprintf(stderr, "encode %.2f s, ", tm->encode);
    fprintf(stderr,
            "%.2f s/step (%d steps, %.2f s; sampling stage %.2f s), decode %.2f s, total %.2f s, "
            "peak RSS ",
            tm->steps ? tm->sample_steps / tm->steps : 0.0, tm->steps, tm->sample_steps,
            tm->sample, tm->decode, tm->total);
    if (rss >= 0)
        fprintf(stderr, "%.0f MiB (%.2f GB)\n", rss, rss * 1048576.0 / 1e9);
    else
        fprintf(stderr, "unknown\n");
}

/* --preview: each preview replaces the file atomically (sdc_png_write); a
 * failure is said once and does not stop the image. */
typedef struct preview_out {
    const char *path;
    int overwrite; /* the first write replaces a file only with --overwrite */
    int failed;
} preview_out;

static void write_preview(void *user, int step, int total, const sdc_image *im) {
    preview_out *po = user;
    (void)step, (void)total;
    if (po->failed) return;
    if (sdc_png_write(po->path, im, NULL, 0, po->overwrite) != SDC_OK) {
        fprintf(stderr, "\nsdc: warning: no more previews: %s\n", sdc_last_error());
        po->failed = 1;
        return;
    }
    po->overwrite = 1;
}

/* The init image or mask at path (RGB); 1 with a message on failure. */
static int read_input(const char *what, const char *path, sdc_image *out) {
    sdc_status st = sdc_image_load(path, 3, CLI_MAX_INPUT_PIXELS, out);
    if (st == SDC_OK) return 0;
    fprintf(stderr, "sdc: cannot read the %s: %s\n", what, sdc_last_error());
    return 1;
}

/* With an init image and no -W/-H: its size rounded down to what the model
 * takes.  2 (usage) when that leaves nothing. */
static int default_size(cli_args *a, const sdc_image *init, const sdc_model *m) {
    const int k = sdc_model_size_multiple(m);
    if (!a->width_given) a->width = init->width / k * k;
    if (!a->height_given) a->height = init->height / k * k;
    if (a->width < k || a->height < k) {
        fprintf(stderr, "sdc: the init image (%dx%d) is smaller than this model's %d pixels: "
                "give -W and -H to enlarge it\n", init->width, init->height, k);
        return 2;
    }
    if (init->width != a->width || init->height != a->height)
        fprintf(stderr, "sdc: the init image (%dx%d) is resized to %dx%d\n", init->width,
                init->height, a->width, a->height);
    return 0;
}

/* --list-devices: one line per OpenCL device; exit 1 without OpenCL. */
static int list_devices(void) {
    sdc_device_info d[64];
    int n = 0;
    if (sdc_devices(d, 64, &n) != SDC_OK) {
        fprintf(stderr, "sdc: no OpenCL: %s\n", sdc_last_error());
        return 1;
    }
    if (n == 0) printf("no OpenCL devices\n");
    for (int i = 0; i < n && i < 64; i++)
        printf("%d: %s | %s (%s, %s) | %s | %.1f GiB, %d compute units, fp16 %s\n", d[i].index,
               d[i].name, d[i].platform, d[i].version, d[i].driver,
               d[i].is_gpu ? "GPU" : d[i].is_cpu ? "CPU" : "accelerator",
               d[i].memory / 1073741824.0, d[i].compute_units, d[i].fp16 ? "yes" : "no");
    return 0;
}

static int exit_code(sdc_status st) {
    switch (st) {
    case SDC_OK: return 0;
    case SDC_ERR_INVALID_ARG: return 2;
    case SDC_ERR_CANCELLED: return 130;
    default: return 1;
    }
}

int main(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(argc, argv, &a);
    if (rc) return rc;
    if (a.help) {
        cli_usage(stdout);
        return 0;
    }
    if (a.version) {
        printf("sdc %s\n%s\n", SDC_VERSION, sdc_build_info());
        return 0;
    }
    if (a.list_devices) return list_devices();
    if (!a.schedule_given) { /* Karras sigmas have no spacing: a spacing asked for wins */
        a.schedule = offers_karras(a.sampler) && a.spacing == SDC_SPACING_DEFAULT
                         ? SDC_SCHEDULE_KARRAS
                         : SDC_SCHEDULE_DISCRETE;
    } else if (a.schedule == SDC_SCHEDULE_KARRAS && !offers_karras(a.sampler)) {
        fprintf(stderr,
                "sdc: --scheduler karras: the %s sampler does not offer Karras sigmas (use "
                "--scheduler discrete)\n",
                sdc_sampler_name(a.sampler));
        return 2;
    }

    /* every destination is checked before any work */
    char **paths = calloc((size_t)a.batch_count, sizeof *paths);
    if (!paths) {
        fprintf(stderr, "sdc: out of memory\n");
        return 1;
    }
    sdc_model *model = NULL;
    sdc_image init = {0, 0, 0, NULL}, mask = {0, 0, 0, NULL};
    rc = 0;
    for (int i = 0; i < a.batch_count && !rc; i++) {
        paths[i] = numbered_path(a.output, i + 1, a.batch_count);
        if (!paths[i]) {
            fprintf(stderr, "sdc: out of memory\n");
            rc = 1;
        } else if (sdc_png_check_dest(paths[i], 1) != SDC_OK) {
            fprintf(stderr, "sdc: cannot write the output: %s\n", sdc_last_error());
            rc = 1;
        } else if (!a.overwrite && sdc_png_check_dest(paths[i], 0) != SDC_OK) {
            fprintf(stderr, "sdc: %s already exists (--overwrite replaces it)\n", paths[i]);
            rc = 1;
        }
    }
    if (!rc && a.preview) {
        if (sdc_png_check_dest(a.preview, 1) != SDC_OK) {
            fprintf(stderr, "sdc: cannot write the preview: %s\n", sdc_last_error());
            rc = 1;
        } else if (!a.overwrite && sdc_png_check_dest(a.preview, 0) != SDC_OK) {
            fprintf(stderr, "sdc: %s already exists (--overwrite replaces it)\n", a.preview);
            rc = 1;
        }
    }
    if (rc) goto out;

    /* the input images, read and checked before the model is loaded */
    if ((a.init_image && (rc = read_input("init image", a.init_image, &init))) ||
        (a.mask && (rc = read_input("mask", a.mask, &mask))))
        goto out;
    if (a.mask && (mask.width != init.width || mask.height != init.height)) {
        fprintf(stderr, "sdc: the mask is %dx%d and the init image %dx%d: they must be the same "
                "size\n", mask.width, mask.height, init.width, init.height);
        rc = 2;
        goto out;
    }

    uint64_t seed = a.seed_random ? random_seed() : a.seed;
    fprintf(stderr, "sdc: seed %" PRIu64 "%s\n", seed, a.seed_random ? " (random)" : "");
    interrupt_install();

    sdc_load_params lp = sdc_load_params_default();
    lp.n_threads = a.threads;
    lp.verbose = a.verbose;
    lp.low_memory = a.low_memory;
    lp.precision = a.precision;
    lp.backend = a.backend;
    lp.device = a.device;
    lp.fp16_activations = a.fp16_activations;
    lp.taesd = a.taesd;
    lp.taesd_previews_only = a.taesd_preview_only;
    sdc_status st = sdc_model_load(a.model, &lp, &model);
    if (st != SDC_OK) {
        fprintf(stderr, "sdc: cannot load the model: %s\n", sdc_last_error());
        rc = exit_code(st) == 2 ? 1 : exit_code(st);
        goto out;
    }
    interrupt_cancels(model);
    if (a.init_image && (rc = default_size(&a, &init, model))) goto out;
    if (sdc_model_is_inpainting(model) && !a.mask) {
        fprintf(stderr, "sdc: %s is an inpainting model: give the image (-i) and the mask "
                "(--mask)\n", a.model);
        rc = 2;
        goto out;
    }
    /* an LCM-distilled UNet is made for few lcm steps; other samplers run
     * (the guidance still enters through its embedding) but draw poorly */
    if (sdc_model_has_guidance_embed(model) && a.sampler != SDC_SAMPLER_LCM &&
        a.sampler != SDC_SAMPLER_TCD)
        fprintf(stderr, "sdc: note: %s is an LCM-distilled model, made for --sampler lcm "
                "--steps 4 --cfg-scale 8 (the guidance enters through the UNet)\n", a.model);
    char name[256];
    model_name(a.model, name, sizeof name);
    preview_out po = {a.preview, a.overwrite, 0};

    for (int i = 0; i < a.batch_count; i++) {
        if (interrupted()) {
            fprintf(stderr, "sdc: interrupted; %d of %d images written\n", i, a.batch_count);
            rc = 130;
            goto out;
        }
        sdc_gen_params gp = sdc_gen_params_default();
        gp.prompt = a.prompt;
        gp.negative_prompt = a.negative;
        gp.width = a.width;
        gp.height = a.height;
        gp.steps = a.steps;
        gp.cfg_scale = a.cfg_scale;
        gp.seed = seed + (uint64_t)i; /* wraps modulo 2^64 */
        gp.sampler = a.sampler;
        gp.schedule = a.schedule;
        gp.vae_tiling = a.vae_tiling;
        gp.spacing = a.spacing;
        gp.loras = a.loras;
        gp.n_loras = a.n_loras;
        gp.lora_dir = a.lora_dir;
        gp.clip_skip = a.clip_skip;
        gp.embeddings_dir = a.embeddings;
        gp.prompt_syntax = a.prompt_syntax;
        if (a.init_image) {
            gp.init_image = &init;
            gp.strength = a.strength;
            gp.mask = a.mask ? &mask : NULL;
        }
        if (a.preview) {
            gp.preview = write_preview;
            gp.preview_user = &po;
            gp.preview_every = a.preview_every;
        }
        progress pr;
        progress_init(&pr, i + 1, a.batch_count);
        gp.progress = progress_cb;
        gp.progress_user = &pr;

        sdc_image img = {0};
        sdc_timings tm;
        st = sdc_generate(model, &gp, &img, &tm);
        progress_done(&pr);
        if (st == SDC_ERR_CANCELLED) {
            fprintf(stderr, "sdc: interrupted; %s not written\n", paths[i]);
            rc = 130;
            goto out;
        }
        if (st != SDC_OK) {
            fprintf(stderr, "sdc: %s\n", sdc_last_error());
            rc = exit_code(st);
            goto out;
        }
        char *info = sdc_infotext(&gp, name);
        if (!info) {
            sdc_image_free(&img);
            fprintf(stderr, "sdc: out of memory\n");
            rc = 1;
            goto out;
        }
        sdc_png_text text = {"parameters", info};
        st = sdc_png_write(paths[i], &img, &text, 1, a.overwrite);
        free(info);
        sdc_image_free(&img);
        if (st != SDC_OK) {
            fprintf(stderr, "sdc: %s\n", sdc_last_error());
            rc = 1;
            goto out;
        }
        printf("wrote %s (seed %" PRIu64 ")\n", paths[i], gp.seed);
        fflush(stdout);
        if (a.verbose) print_timings(&tm);
    }

out:
    interrupt_cancels(NULL);
    sdc_model_free(model);
    sdc_image_free(&init);
    sdc_image_free(&mask);
    for (int i = 0; i < a.batch_count; i++) free(paths[i]);
    free(paths);
    return rc;
}
