/* The whole pipeline against diffusers' StableDiffusionPipeline on the tiny
 * model (tests/fixtures/pipeline_ref.safetensors, scripts/fixtures_lib/
 * pipeline.py), for every sampler and both model layouts; parameter
 * checks, progress and cancellation; the PNG writer (read back with libpng)
 * and the A1111 infotext.
 *
 * Tolerances: final latents relative L2 <= 1e-4; image: mean |u8 - 255*ref|
 * <= 0.5 (ref = diffusers' float image; rounding alone gives ~0.25) and the
 * float image before quantisation mean |x - ref| <= 0.5/255; and against
 * diffusers' own uint8 image (round(ref*255)): no byte off by more than
 * one, at most 1% off by one. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "harness.h"
#include "image/png.h"
#include "io/safetensors.h"
#include "pipeline/pipeline_internal.h"
#include "sdc.h"

#define LATENT_TOL 1e-4
#define U8_MAE_TOL 0.5
#define FLOAT_MAE_TOL (0.5 / 255.0)

/* ---- PNG read-back (libpng) -------------------------------------------- */

typedef struct png_back {
    int ok, width, height, color, depth;
    uint8_t *rgb;       /* [h, w, 3] */
    char text[4096];    /* the "parameters" chunk, raw bytes */
    int text_compression; /* PNG_TEXT_COMPRESSION_NONE (tEXt) or PNG_ITXT_COMPRESSION_NONE */
    int n_text;
} png_back;

static void png_back_free(png_back *b) { free(b->rgb); }

static png_back read_png(const char *path) {
    png_back r;
    memset(&r, 0, sizeof r);
    FILE *f = fopen(path, "rb");
    if (!f) return r;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        return r;
    }
    png_init_io(png, f);
    png_read_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    r.width = (int)png_get_image_width(png, info);
    r.height = (int)png_get_image_height(png, info);
    r.color = png_get_color_type(png, info);
    r.depth = png_get_bit_depth(png, info);
    png_bytepp rows = png_get_rows(png, info);
    if (r.color == PNG_COLOR_TYPE_RGB && r.depth == 8) {
        r.rgb = malloc((size_t)r.width * r.height * 3);
        for (int y = 0; y < r.height; y++)
            memcpy(r.rgb + (size_t)y * r.width * 3, rows[y], (size_t)r.width * 3);
    }
    png_textp texts;
    int n = 0;
    png_get_text(png, info, &texts, &n);
    r.n_text = n;
    for (int i = 0; i < n; i++) {
        if (strcmp(texts[i].key, "parameters") != 0) continue;
        size_t len = texts[i].compression == PNG_ITXT_COMPRESSION_NONE ? texts[i].itxt_length
                                                                        : texts[i].text_length;
        if (len >= sizeof r.text) len = sizeof r.text - 1;
        memcpy(r.text, texts[i].text, len);
        r.text[len] = 0;
        r.text_compression = texts[i].compression;
    }
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    r.ok = 1;
    return r;
}

static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strncmp(e->d_name, ".sdc-tmp-", 9) == 0) n++;
    closedir(d);
    return n;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* ---- PNG writer -------------------------------------------------------- */

static sdc_image test_image(int w, int h, uint8_t *buf) {
    for (int i = 0; i < w * h * 3; i++) buf[i] = (uint8_t)(i * 37 + 11);
    sdc_image img = {w, h, 3, buf};
    return img;
}

static void test_png_roundtrip(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", t_tmp("png_rt"));
    mkdir(dir, 0777);
    char path[4200];
    snprintf(path, sizeof path, "%s/a.png", dir);
    unlink(path);
    uint8_t buf[7 * 5 * 3];
    sdc_image img = test_image(7, 5, buf);

    /* Latin-1 text -> tEXt, bytes in Latin-1 */
    sdc_png_text t = {"parameters", "caf\xc3\xa9 au lait\nSteps: 2"};
    CHECK(sdc_png_write(path, &img, &t, 1, 0) == SDC_OK);
    png_back b = read_png(path);
    CHECK(b.ok && b.width == 7 && b.height == 5 && b.color == PNG_COLOR_TYPE_RGB && b.depth == 8);
    CHECK(b.rgb && memcmp(b.rgb, buf, sizeof buf) == 0);
    CHECK(b.n_text == 1);
    CHECK(b.text_compression == PNG_TEXT_COMPRESSION_NONE);
    CHECKF(strcmp(b.text, "caf\xe9 au lait\nSteps: 2") == 0, "got '%s'", b.text);
    png_back_free(&b);

    /* existing file, no overwrite: refused, file untouched */
    long before = file_size(path);
    uint8_t buf2[3 * 2 * 3] = {0};
    sdc_image img2 = {3, 2, 3, buf2};
    sdc_status st = sdc_png_write(path, &img2, NULL, 0, 0);
    CHECK(st == SDC_ERR_IO);
    CHECKF(strstr(sdc_last_error(), "exists") != NULL, "%s", sdc_last_error());
    CHECK(file_size(path) == before);
    CHECK(sdc_png_check_dest(path, 0) == SDC_ERR_IO);
    CHECK(sdc_png_check_dest(path, 1) == SDC_OK);

    /* overwrite: replaced; non-Latin-1 text -> iTXt in UTF-8 */
    sdc_png_text u = {"parameters", "\xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x8c\x83 caf\xc3\xa9"};
    CHECK(sdc_png_write(path, &img2, &u, 1, 1) == SDC_OK);
    b = read_png(path);
    CHECK(b.ok && b.width == 3 && b.height == 2);
    CHECK(b.text_compression == PNG_ITXT_COMPRESSION_NONE);
    CHECKF(strcmp(b.text, u.text) == 0, "got '%s'", b.text);
    png_back_free(&b);

    /* invalid UTF-8 becomes U+FFFD (then iTXt) */
    sdc_png_text bad = {"parameters", "a\xff" "b"};
    CHECK(sdc_png_write(path, &img2, &bad, 1, 1) == SDC_OK);
    b = read_png(path);
    CHECKF(strcmp(b.text, "a\xef\xbf\xbd" "b") == 0, "got '%s'", b.text);
    CHECK(b.text_compression == PNG_ITXT_COMPRESSION_NONE);
    png_back_free(&b);

    CHECK(count_tmp_files(dir) == 0);
}

static void test_png_errors(void) {
    uint8_t buf[4 * 4 * 3];
    sdc_image img = test_image(4, 4, buf);
    char path[4200];
    /* folder missing */
    snprintf(path, sizeof path, "%s/no/such/dir/x.png", t_tmp(""));
    CHECK(sdc_png_write(path, &img, NULL, 0, 0) == SDC_ERR_IO);
    CHECK(sdc_png_check_dest(path, 0) == SDC_ERR_IO);
    CHECKF(strstr(sdc_last_error(), "no/such/dir") != NULL, "%s", sdc_last_error());
    /* a folder as the output */
    snprintf(path, sizeof path, "%s", t_tmp("png_rt"));
    CHECK(sdc_png_check_dest(path, 1) == SDC_ERR_IO);
    CHECK(sdc_png_write(path, &img, NULL, 0, 1) != SDC_OK);
    CHECK(count_tmp_files(path) == 0);
    snprintf(path, sizeof path, "%s/", t_tmp("png_rt"));
    CHECK(sdc_png_check_dest(path, 1) == SDC_ERR_IO);
    /* bad images */
    sdc_image gray = {4, 4, 1, buf};
    CHECK(sdc_png_write(t_tmp("png_rt/g.png"), &gray, NULL, 0, 1) == SDC_ERR_INVALID_ARG);
    sdc_png_text longkey = {"an overly long key that goes on and on past the limit of seventy-nine "
                            "characters",
                            "x"};
    CHECK(sdc_png_write(t_tmp("png_rt/k.png"), &img, &longkey, 1, 1) == SDC_ERR_INVALID_ARG);
    CHECK(access(t_tmp("png_rt/k.png"), F_OK) != 0);
    /* a read-only folder (skipped as root, who may write anyway) */
    if (geteuid() != 0) {
        char ro[4096];
        snprintf(ro, sizeof ro, "%s", t_tmp("png_ro"));
        mkdir(ro, 0555);
        chmod(ro, 0555);
        snprintf(path, sizeof path, "%s/x.png", ro);
        CHECK(sdc_png_check_dest(path, 0) == SDC_ERR_IO);
        CHECK(sdc_png_write(path, &img, NULL, 0, 0) == SDC_ERR_IO);
    }
}

/* Only regular files are replaced, checked by sdc_png_write itself (not
 * only by sdc_png_check_dest): a FIFO, a character device (made here, as
 * root; the real /dev nodes are never the target), a link to either or to a
 * folder are refused with and without overwrite and stay as they were; a
 * link to a regular file is replaced (the link, not its target). */
static void test_png_not_regular(void) {
    uint8_t buf[4 * 4 * 3];
    sdc_image img = test_image(4, 4, buf);
    char dir[4096], fifo[4200], dev[4200], path[4200], target[4200];
    snprintf(dir, sizeof dir, "%s", t_tmp("png_nodes"));
    mkdir(dir, 0777);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(dev, sizeof dev, "%s/dev", dir);
    unlink(fifo);
    unlink(dev);
    CHECK(mkfifo(fifo, 0644) == 0);
    int have_dev = mknod(dev, S_IFCHR | 0644, makedev(1, 3)) == 0;
    if (!have_dev) printf("note: mknod failed (not root?): the device-node case is skipped\n");
    struct {
        const char *name, *target, *kind; /* link name (NULL: the node itself) */
    } cases[] = {
        {NULL, "fifo", "FIFO"},
        {"fifolink", "fifo", "a symbolic link to a FIFO"},
        {"dirlink", ".", "a symbolic link to a folder"},
        {NULL, "dev", "character device"},
        {"devlink", "dev", "a symbolic link to a character device"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!have_dev && strcmp(cases[i].target, "dev") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].name ? cases[i].name : cases[i].target);
        if (cases[i].name) {
            unlink(path);
            CHECK(symlink(cases[i].target, path) == 0);
        }
        for (int overwrite = 0; overwrite <= 1; overwrite++) {
            CHECKF(sdc_png_write(path, &img, NULL, 0, overwrite) == SDC_ERR_IO,
                   "%s, overwrite %d: written", path, overwrite);
            CHECKF(strstr(sdc_last_error(), cases[i].kind) != NULL, "%s: message \"%s\"", path,
                   sdc_last_error());
            CHECK(sdc_png_check_dest(path, overwrite) == SDC_ERR_IO);
        }
        struct stat sb;
        CHECKF(lstat(path, &sb) == 0 && (cases[i].name ? S_ISLNK(sb.st_mode)
                                         : strcmp(cases[i].target, "dev") == 0
                                             ? S_ISCHR(sb.st_mode)
                                             : S_ISFIFO(sb.st_mode)),
               "%s was replaced", path);
    }
    /* a link to a regular file: replaced by the PNG, the file kept */
    snprintf(target, sizeof target, "%s/target", dir);
    FILE *f = fopen(target, "wb");
    if (f) {
        fputs("precious", f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/filelink", dir);
    unlink(path);
    CHECK(symlink("target", path) == 0);
    CHECK(sdc_png_write(path, &img, NULL, 0, 0) == SDC_ERR_IO);
    CHECKF(strstr(sdc_last_error(), "exists") != NULL, "%s", sdc_last_error());
    CHECK(sdc_png_write(path, &img, NULL, 0, 1) == SDC_OK);
    struct stat sb;
    CHECK(lstat(path, &sb) == 0 && S_ISREG(sb.st_mode));
    CHECK(file_size(target) == 8);
    CHECK(count_tmp_files(dir) == 0);
}

static void test_infotext(void) {
    sdc_gen_params p = sdc_gen_params_default();
    p.prompt = "a cat";
    p.negative_prompt = "blurry";
    p.steps = 20;
    p.sampler = SDC_SAMPLER_EULER_A;
    p.schedule = SDC_SCHEDULE_DISCRETE;
    p.cfg_scale = 7.5f;
    p.seed = 42;
    p.width = 512;
    p.height = 768;
    char *s = sdc_infotext(&p, "v1-5-pruned-emaonly");
    const char *want = "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Schedule type: "
                       "Automatic, CFG scale: 7.5, Seed: 42, Size: 512x768, Model: "
                       "v1-5-pruned-emaonly, Version: sdc " SDC_VERSION;
    CHECKF(s && strcmp(s, want) == 0, "got '%s'", s ? s : "(null)");
    free(s);

    p.negative_prompt = "";
    p.sampler = SDC_SAMPLER_DPMPP_2M;
    p.schedule = SDC_SCHEDULE_KARRAS;
    p.cfg_scale = 7.0f;
    p.seed = 18446744073709551615ull;
    s = sdc_infotext(&p, "my model, v2: final");
    want = "a cat\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.0, Seed: "
           "18446744073709551615, Size: 512x768, Model: \"my model, v2: final\", Version: sdc " SDC_VERSION;
    CHECKF(s && strcmp(s, want) == 0, "got '%s'", s ? s : "(null)");
    free(s);

    p.negative_prompt = NULL;
    p.prompt = "";
    p.sampler = SDC_SAMPLER_PNDM;
    p.cfg_scale = 1.1f;
    s = sdc_infotext(&p, NULL);
    want = "Steps: 20, Sampler: PLMS, Schedule type: Karras, CFG scale: 1.1, Seed: "
           "18446744073709551615, Size: 512x768, Version: sdc " SDC_VERSION;
    CHECKF(s && strcmp(s, want) == 0, "got '%s'", s ? s : "(null)");
    free(s);

    /* CLIP skip and LoRAs given apart from the prompt (as tags A1111 reads) */
    sdc_lora loras[2] = {{"/x/y/lcm-lora.safetensors", 1.0f}, {"style", 0.25f}};
    p.prompt = "a cat <lora:detail:0.5>";
    p.loras = loras;
    p.n_loras = 2;
    p.clip_skip = 2;
    s = sdc_infotext(&p, NULL);
    want = "a cat <lora:detail:0.5> <lora:lcm-lora:1.0> <lora:style:0.25>\nSteps: 20, Sampler: "
           "PLMS, Schedule type: Karras, CFG scale: 1.1, Seed: 18446744073709551615, Size: "
           "512x768, Clip skip: 2, Version: sdc " SDC_VERSION;
    CHECKF(s && strcmp(s, want) == 0, "got '%s'", s ? s : "(null)");
    free(s);

    const char *names[] = {"Euler", "Euler a", "Heun", "DPM++ 2M", "DDIM", "PLMS", "LMS", "LCM",
                           "TCD"};
    for (int i = 0; i < SDC_SAMPLER_COUNT; i++)
        CHECK(strcmp(sdc_sampler_display_name((sdc_sampler)i), names[i]) == 0);
}

/* ---- pipeline vs diffusers --------------------------------------------- */

typedef struct ref_case {
    char name[64], prompt[256], negative[256];
    int has_negative;
    sdc_sampler sampler;
    sdc_schedule schedule;
    sdc_spacing spacing;
    int steps, width, height;
    float cfg;
    uint64_t seed;
    /* img2img_ref only: the model, strength, and the init image's and
     * mask's names (mask "": none) */
    char model[32], taesd[32], init[32], mask[32];
    double strength;
    sdc_image init_image, mask_image; /* borrowed from the reference file */
} ref_case;

/* An input picture of the reference file (U8 [H, W, C]) as an sdc_image. */
static sdc_image ref_pixels(const sdc_st_file *ref, const char *name) {
    char key[64];
    snprintf(key, sizeof key, "%.40s.pixels", name);
    const sdc_weight *w = sdc_st_find(ref, key);
    sdc_image im = {0, 0, 0, NULL};
    CHECKF(w && w->dtype == SDC_DT_U8 && w->ndim == 3, "%s: no U8 [H, W, C] pixels", key);
    if (w && w->dtype == SDC_DT_U8 && w->ndim == 3) {
        im.height = (int)w->shape[0], im.width = (int)w->shape[1], im.channels = (int)w->shape[2];
        im.data = (uint8_t *)w->data;
    }
    return im;
}

/* The cases listed in the fixture's metadata; returns the count. */
static int load_cases(const sdc_st_file *ref, ref_case *cases, int max) {
    const char *json = sdc_st_metadata(ref, "cases");
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    int n = 0;
    cJSON *c;
    cJSON_ArrayForEach(c, root) {
        if (n >= max) break;
        ref_case *r = &cases[n];
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", cJSON_GetObjectItem(c, "name")->valuestring);
        snprintf(r->prompt, sizeof r->prompt, "%s", cJSON_GetObjectItem(c, "prompt")->valuestring);
        cJSON *neg = cJSON_GetObjectItem(c, "negative");
        r->has_negative = cJSON_IsString(neg);
        if (r->has_negative) snprintf(r->negative, sizeof r->negative, "%s", neg->valuestring);
        r->sampler = sdc_sampler_from_name(cJSON_GetObjectItem(c, "sampler")->valuestring);
        r->schedule = sdc_schedule_from_name(cJSON_GetObjectItem(c, "schedule")->valuestring);
        const cJSON *spacing = cJSON_GetObjectItem(c, "spacing");
        r->spacing = cJSON_IsString(spacing) ? sdc_spacing_from_name(spacing->valuestring)
                                             : SDC_SPACING_DEFAULT;
        r->steps = cJSON_GetObjectItem(c, "steps")->valueint;
        r->width = cJSON_GetObjectItem(c, "width")->valueint;
        r->height = cJSON_GetObjectItem(c, "height")->valueint;
        r->cfg = (float)cJSON_GetObjectItem(c, "cfg")->valuedouble;
        r->seed = (uint64_t)cJSON_GetObjectItem(c, "seed")->valuedouble;
        const cJSON *model = cJSON_GetObjectItem(c, "model");
        const cJSON *init = cJSON_GetObjectItem(c, "init"), *mask = cJSON_GetObjectItem(c, "mask");
        if (cJSON_IsString(model)) snprintf(r->model, sizeof r->model, "%s", model->valuestring);
        const cJSON *taesd = cJSON_GetObjectItem(c, "taesd");
        if (cJSON_IsString(taesd)) snprintf(r->taesd, sizeof r->taesd, "%s", taesd->valuestring);
        if (cJSON_IsString(init)) {
            snprintf(r->init, sizeof r->init, "%s", init->valuestring);
            r->strength = cJSON_GetObjectItem(c, "strength")->valuedouble;
            r->init_image = ref_pixels(ref, r->init);
        }
        if (cJSON_IsString(mask)) {
            snprintf(r->mask, sizeof r->mask, "%s", mask->valuestring);
            r->mask_image = ref_pixels(ref, r->mask);
        }
        n++;
    }
    cJSON_Delete(root);
    return n;
}

static sdc_gen_params case_params(const ref_case *c) {
    sdc_gen_params p = sdc_gen_params_default();
    p.prompt = c->prompt;
    p.negative_prompt = c->has_negative ? c->negative : NULL;
    p.width = c->width;
    p.height = c->height;
    p.steps = c->steps;
    p.cfg_scale = c->cfg;
    p.seed = c->seed;
    p.sampler = c->sampler;
    p.schedule = c->schedule;
    p.spacing = c->spacing;
    if (c->init[0]) {
        p.init_image = &c->init_image;
        p.strength = c->strength;
    }
    if (c->mask[0]) p.mask = &c->mask_image;
    return p;
}

static double worst_latent, worst_u8, worst_float;
static size_t worst_bytes;

/* What a case must meet: latents rel L2, image MAEs (u8 vs 255*ref, float),
 * and whether the bytes must match diffusers' uint8 image (fp32 only). */
typedef struct case_tol {
    double lat, u8, f;
    int bytes;
} case_tol;
static const case_tol k_fp32_tol = {LATENT_TOL, U8_MAE_TOL, FLOAT_MAE_TOL, 1};

static void run_case(sdc_model *m, const sdc_st_file *ref, const ref_case *c, const char *layout,
                     const case_tol *tol) {
    char key[96];
    snprintf(key, sizeof key, "%.63s.latents", c->name);
    const sdc_weight *rl = sdc_st_find(ref, key);
    snprintf(key, sizeof key, "%.63s.image", c->name);
    const sdc_weight *ri = sdc_st_find(ref, key);
    CHECKF(rl && ri && rl->dtype == SDC_DT_F32 && ri->dtype == SDC_DT_F32, "%s: no reference",
           c->name);
    if (!rl || !ri) return;
    const int f = sdc_model_vae_scale(m), C = sdc_model_latent_channels(m);
    const size_t n_lat = (size_t)C * (c->height / f) * (c->width / f);
    const size_t n_img = (size_t)c->height * c->width * 3;
    CHECK((size_t)rl->numel == n_lat && (size_t)ri->numel == n_img);
    if ((size_t)rl->numel != n_lat || (size_t)ri->numel != n_img) return;

    float *lat = malloc(n_lat * sizeof *lat), *img = malloc(n_img * sizeof *img);
    sdc_gen_debug dbg = {.latents = lat, .image = img};
    sdc_gen_params p = case_params(c);
    sdc_image out;
    sdc_timings tm;
    sdc_status st = sdc_generate_debug(m, &p, &out, &tm, &dbg);
    CHECKF(st == SDC_OK, "%s/%s: %s", layout, c->name, sdc_last_error());
    if (st == SDC_OK) {
        const float *ref_lat = rl->data, *ref_img = ri->data;
        double e_lat = t_rel_l2(lat, ref_lat, n_lat);
        double e_u8 = 0, e_f = 0;
        size_t off_by_one = 0, off_more = 0; /* vs diffusers' own uint8 */
        for (size_t i = 0; i < n_img; i++) {
            e_u8 += fabs((double)out.data[i] - 255.0 * ref_img[i]);
            e_f += fabs((double)img[i] - ref_img[i]);
            int d = abs((int)out.data[i] - (int)nearbyintf(ref_img[i] * 255.0f));
            off_by_one += d == 1;
            off_more += d > 1;
        }
        e_u8 /= (double)n_img;
        e_f /= (double)n_img;
        printf("  %-9s %-16s latents rel L2 %.2e  image MAE %.3f/255 (u8), %.2e (float)  %.2f s\n",
               layout, c->name, e_lat, e_u8, e_f, tm.total);
        CHECKF(e_lat <= tol->lat, "%s/%s: latents rel L2 %.3g", layout, c->name, e_lat);
        CHECKF(e_u8 <= tol->u8, "%s/%s: image MAE %.3g", layout, c->name, e_u8);
        CHECKF(e_f <= tol->f, "%s/%s: float image MAE %.3g", layout, c->name, e_f);
        CHECKF(!tol->bytes || (off_more == 0 && off_by_one <= n_img / 100),
               "%s/%s: %zu bytes differ by 1, %zu by more from diffusers' uint8 image", layout,
               c->name, off_by_one, off_more);
        if (off_by_one > worst_bytes) worst_bytes = off_by_one;
        CHECK(out.width == c->width && out.height == c->height && out.channels == 3);
        CHECK(tm.total > 0 && (c->init[0] ? tm.steps >= 1 && tm.steps <= 2 * c->steps
                                          : tm.steps >= c->steps));
        if (e_lat > worst_latent) worst_latent = e_lat;
        if (e_u8 > worst_u8) worst_u8 = e_u8;
        if (e_f > worst_float) worst_float = e_f;
        sdc_image_free(&out);
    }
    free(lat);
    free(img);
}

/* Under t_quick(): each case of diffusers' runs in one of the two layouts,
 * alternating, instead of both (reading a layout is the same C on every
 * machine; the kernels run as often). */
static int in_layout(int i, int layout) { return !t_quick() || i % 2 == layout; }

/* diffusers' outputs (file, e.g. pipeline_ref.safetensors) and their cases;
 * NULL (a failed check) if the file does not open. */
static sdc_st_file *open_ref(const char *file, ref_case *cases, int cap, int *n) {
    sdc_st_file *ref = NULL;
    sdc_status st = sdc_st_open(t_fixture(file), &ref);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st != SDC_OK) return NULL;
    *n = load_cases(ref, cases, cap);
    return ref;
}

static void test_against_diffusers(void) {
    ref_case cases[32];
    int n = 0;
    sdc_st_file *ref = open_ref("pipeline_ref.safetensors", cases, 32, &n);
    if (!ref) return;
    sdc_status st;
    CHECK(n >= 19);
    const char *layouts[2] = {"tiny-sd", "tiny-sd.safetensors"};
    for (int l = 0; l < 2; l++) {
        sdc_model *m = NULL;
        sdc_load_params lp = sdc_load_params_default();
        lp.n_threads = 2;
        st = sdc_model_load(t_fixture(layouts[l]), &lp, &m);
        CHECKF(st == SDC_OK, "%s: %s", layouts[l], sdc_last_error());
        if (st != SDC_OK) continue;
        CHECK(sdc_model_vae_scale(m) == 2);
        printf("  %s: %s\n", layouts[l], sdc_model_describe(m));
        for (int i = 0; i < n; i++)
            if (in_layout(i, l))
                run_case(m, ref, &cases[i], l == 0 ? "folder" : "file", &k_fp32_tol);
        sdc_model_free(m);
    }
    printf("  worst: latents rel L2 %.2e (tol %.0e), image MAE %.3f/255 (tol %.2f), "
           "float image MAE %.2e (tol %.2e), %zu bytes off by one from diffusers' uint8 "
           "(tol 1%%)\n",
           worst_latent, LATENT_TOL, worst_u8, U8_MAE_TOL, worst_float, FLOAT_MAE_TOL, worst_bytes);
    sdc_st_close(ref);
}

/* Image to image and inpainting against diffusers' StableDiffusionImg2ImgPipeline
 * and StableDiffusionInpaintPipeline (img2img_ref.safetensors,
 * scripts/fixtures_lib/img2img.py): every sampler, three and more strengths,
 * both UNet kinds, grey and RGB inputs and masks, resizing; both layouts of
 * both models; the text-to-image tolerances. */
static void test_img2img(void) {
    ref_case cases[32];
    int n = 0;
    sdc_st_file *ref = open_ref("img2img_ref.safetensors", cases, 32, &n);
    if (!ref) return;
    CHECK(n >= 18);
    worst_latent = worst_u8 = worst_float = 0;
    worst_bytes = 0;
    const char *models[2] = {"tiny-sd", "tiny-sd-inpaint"};
    int ran = 0;
    for (int mi = 0; mi < 4; mi++)
        for (int l = 0; l < 2; l++) {
            char path[64], taesd[300];
            snprintf(path, sizeof path, "%s%s", models[mi % 2], l ? ".safetensors" : "");
            snprintf(taesd, sizeof taesd, "%s", mi >= 2 ? t_fixture("tiny-taesd-x2") : "");
            sdc_model *m = NULL;
            sdc_load_params lp = sdc_load_params_default();
            lp.n_threads = 2;
            lp.taesd = mi >= 2 ? taesd : NULL;
            sdc_status st = sdc_model_load(t_fixture(path), &lp, &m);
            CHECKF(st == SDC_OK, "%s: %s", path, sdc_last_error());
            if (st != SDC_OK) continue;
            for (int i = 0; i < n; i++)
                if (strcmp(cases[i].model, models[mi % 2]) == 0 && !cases[i].taesd[0] == (mi < 2) &&
                    in_layout(i, l))
                    run_case(m, ref, &cases[i], l ? "file" : "folder", &k_fp32_tol), ran++;
            sdc_model_free(m);
        }
    CHECKF(ran == (t_quick() ? n : 2 * n), "%d of %d cases ran", ran, t_quick() ? n : 2 * n);
    printf("  img2img worst: latents rel L2 %.2e (tol %.0e), image MAE %.3f/255 (tol %.2f), "
           "float image MAE %.2e (tol %.2e), %zu bytes off by one\n",
           worst_latent, LATENT_TOL, worst_u8, U8_MAE_TOL, worst_float, FLOAT_MAE_TOL, worst_bytes);
    sdc_st_close(ref);
}

typedef struct preview_log {
    int calls, last_step, last_total, width, height, channels;
    uint8_t last[16 * 16 * 3];
} preview_log;

static void on_preview(void *user, int step, int total, const sdc_image *im) {
    preview_log *l = user;
    l->calls++;
    l->last_step = step, l->last_total = total;
    l->width = im->width, l->height = im->height, l->channels = im->channels;
    if ((size_t)im->width * im->height * 3 <= sizeof l->last)
        memcpy(l->last, im->data, (size_t)im->width * im->height * 3);
}

/* Previews: every N steps and at the last; at the last step of Euler the
 * denoised estimate is the final latents (sigma_next = 0), so the preview
 * is their picture by the latent-to-RGB map. */
static void test_preview(void) {
    sdc_model *m = NULL;
    sdc_status st = sdc_model_load(t_fixture("tiny-sd"), NULL, &m);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (!m) return;
    static const float k[3][4] = {{0.298f, 0.187f, -0.158f, -0.184f},
                                  {0.207f, 0.286f, 0.189f, -0.271f},
                                  {0.208f, 0.173f, 0.264f, -0.473f}};
    sdc_gen_params p = sdc_gen_params_default();
    p.prompt = "a red cube";
    p.width = p.height = 32;
    p.steps = 5;
    p.sampler = SDC_SAMPLER_EULER;
    p.schedule = SDC_SCHEDULE_DISCRETE;
    preview_log log;
    memset(&log, 0, sizeof log);
    p.preview = on_preview;
    p.preview_user = &log;
    p.preview_every = 2;
    float lat[4 * 16 * 16];
    sdc_gen_debug dbg = {.latents = lat, .image = NULL};
    sdc_image out;
    st = sdc_generate_debug(m, &p, &out, NULL, &dbg);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    CHECKF(log.calls == 3 && log.last_step == 5 && log.last_total == 5, "%d previews, last %d/%d",
           log.calls, log.last_step, log.last_total);
    CHECK(log.width == 16 && log.height == 16 && log.channels == 3);
    int off = 0;
    for (int i = 0; i < 16 * 16; i++)
        for (int c = 0; c < 3; c++) {
            float v = 0;
            for (int l = 0; l < 4; l++) v += k[c][l] * lat[l * 256 + i];
            v = fminf(fmaxf((v + 1) * 0.5f, 0), 1) * 255;
            off += abs((int)log.last[3 * i + c] - (int)nearbyintf(v)) > 1;
        }
    CHECKF(off == 0, "%d preview values differ from the final latents' picture", off);
    sdc_image_free(&out);
    /* refused: no steps between previews */
    p.preview_every = 0;
    st = sdc_generate(m, &p, &out, NULL);
    CHECKF(st == SDC_ERR_INVALID_ARG && strstr(sdc_last_error(), "preview"), "%s",
           sdc_last_error());
    sdc_model_free(m);
}

/* Bad image-to-image and inpainting parameters: refused before any work,
 * with a message naming the problem. */
static void test_img2img_params(void) {
    sdc_model *m = NULL, *m9 = NULL;
    sdc_status st = sdc_model_load(t_fixture("tiny-sd"), NULL, &m);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    st = sdc_model_load(t_fixture("tiny-sd-inpaint"), NULL, &m9);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (!m || !m9) {
        sdc_model_free(m);
        sdc_model_free(m9);
        return;
    }
    uint8_t px[32 * 32 * 3], px2[16 * 32];
    memset(px, 128, sizeof px);
    memset(px2, 255, sizeof px2);
    sdc_image init = {32, 32, 3, px}, mask = {32, 32, 1, px}, small = {32, 16, 1, px2};
    sdc_image four = {32, 32, 4, px}, empty = {0, 32, 3, px}, nodata = {32, 32, 3, NULL};
    struct {
        sdc_model *m;
        const sdc_image *init, *mask;
        double strength;
        int steps;
        const char *says;
    } bad[] = {
        {m, NULL, &mask, 0.5, 4, "mask needs an init image"},
        {m, &init, NULL, 1.5, 4, "strength 1.5 is out of range"},
        {m, &init, NULL, -0.1, 4, "strength -0.1 is out of range"},
        {m, &init, NULL, 0.2, 4, "leaves no step"},
        {m, &init, &small, 0.5, 4, "must be the same size"},
        {m, &four, NULL, 0.5, 4, "4 channels"},
        {m, &empty, NULL, 0.5, 4, "out of range"},
        {m, &nodata, NULL, 0.5, 4, "no pixels"},
        {m9, NULL, NULL, 0.5, 4, "inpainting model: it needs an init image"},
        {m9, &init, NULL, 0.5, 4, "inpainting model: it needs a mask"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sdc_gen_params p = sdc_gen_params_default();
        p.prompt = "x";
        p.width = p.height = 32;
        p.steps = bad[i].steps;
        p.init_image = bad[i].init;
        p.mask = bad[i].mask;
        p.strength = bad[i].strength;
        sdc_image out = {1, 1, 3, NULL};
        st = sdc_generate(bad[i].m, &p, &out, NULL);
        CHECKF(st == SDC_ERR_INVALID_ARG && strstr(sdc_last_error(), bad[i].says),
               "case %zu: %s: %s", i, sdc_status_str(st), sdc_last_error());
        CHECK(out.data == NULL);
    }
    sdc_model_free(m);
    sdc_model_free(m9);
}

/* The bf16 precision mode against the same fp32 references: its error,
 * stated (docs/perf.md) and bounded by BF16_*_TOL; where the CPU lacks
 * AVX512_BF16, the refusal. */
#define BF16_LATENT_TOL 5e-2 /* measured <= 2.5e-2 (AVX512_BF16, 2026-11-26) */
#define BF16_U8_MAE_TOL 3.0 /* measured <= 1.46 */
static void test_bf16_mode(void) {
    sdc_load_params lp = sdc_load_params_default();
    lp.n_threads = 2;
    lp.precision = SDC_PRECISION_BF16;
    sdc_model *m = NULL;
    sdc_status st = sdc_model_load(t_fixture("tiny-sd"), &lp, &m);
    if (st == SDC_ERR_UNSUPPORTED) {
        printf("  refused: %s\n", sdc_last_error());
        CHECK(strstr(sdc_last_error(), "AVX512_BF16") != NULL && m == NULL);
        return;
    }
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st != SDC_OK) return;
    sdc_st_file *ref = NULL;
    st = sdc_st_open(t_fixture("pipeline_ref.safetensors"), &ref);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st == SDC_OK) {
        ref_case cases[32];
        int n = load_cases(ref, cases, 32);
        const case_tol tol = {BF16_LATENT_TOL, BF16_U8_MAE_TOL, BF16_U8_MAE_TOL / 255.0, 0};
        worst_latent = worst_u8 = worst_float = 0;
        for (int i = 0; i < n; i++) run_case(m, ref, &cases[i], "bf16", &tol);
        printf("  bf16 worst: latents rel L2 %.2e (tol %.0e), image MAE %.3f/255 (tol %.1f)\n",
               worst_latent, BF16_LATENT_TOL, worst_u8, BF16_U8_MAE_TOL);
        sdc_st_close(ref);
    }
    sdc_model_free(m);
}

/* Cases through every OpenCL device (CPU devices such as PoCL and rusticl
 * included), both layouts: fp32 activations within the CPU path's
 * tolerances, fp16 activations within FP16_*_TOL.  The samplers run on the
 * host, so three cases cover what the device does: guidance on (euler_a),
 * a non-square image (euler_a_wide), guidance off (ddim_nocfg: batch 1).
 * No OpenCL: said, and nothing else is checked. */
static int opencl_case(const char *name) {
    return !strcmp(name, "euler_a") || !strcmp(name, "euler_a_wide") ||
           !strcmp(name, "ddim_nocfg");
}

#define FP16_LATENT_TOL 2e-2 /* fp16 storage rounds every activation to 11 bits */
#define FP16_U8_MAE_TOL 2.0
static void test_opencl(void) {
    sdc_device_info d[16];
    const int nd = t_opencl_devices(d, 16);
    if (nd == 0) return;
    ref_case cases[32];
    int n = 0;
    sdc_st_file *ref = open_ref("pipeline_ref.safetensors", cases, 32, &n);
    if (!ref) return;
    sdc_status st;
    const char *layouts[2] = {"tiny-sd", "tiny-sd.safetensors"};
    for (int i = 0; i < nd && i < 16; i++) {
        for (int fp16 = 0; fp16 <= 1; fp16++) {
            const case_tol tol16 = {FP16_LATENT_TOL, FP16_U8_MAE_TOL, FP16_U8_MAE_TOL / 255.0, 0};
            const case_tol *tol = fp16 ? &tol16 : &k_fp32_tol;
            worst_latent = worst_u8 = worst_float = 0;
            worst_bytes = 0;
            int ran = 0;
            for (int l = 0; l < 2; l++) {
                char dev[16], what[64];
                snprintf(dev, sizeof dev, "%d", d[i].index);
                snprintf(what, sizeof what, "cl%d%s/%s", d[i].index, fp16 ? "-f16" : "",
                         l == 0 ? "folder" : "file");
                sdc_load_params lp = sdc_load_params_default();
                lp.backend = SDC_BACKEND_OPENCL;
                lp.device = dev;
                lp.fp16_activations = fp16;
                sdc_model *m = NULL;
                st = sdc_model_load(t_fixture(layouts[l]), &lp, &m);
                CHECKF(st == SDC_OK, "%s: %s", what, sdc_last_error());
                if (st != SDC_OK) continue;
                for (int c = 0; c < n; c++)
                    if (opencl_case(cases[c].name)) run_case(m, ref, &cases[c], what, tol), ran++;
                sdc_model_free(m);
            }
            CHECKF(ran == 6, "opencl: %d of the 6 cases ran", ran);
            printf("  opencl %d (%s, %s activations) worst: latents rel L2 %.2e (tol %.0e), "
                   "image MAE %.3f/255 (tol %.2f)\n",
                   d[i].index, d[i].name, fp16 ? "fp16" : "fp32", worst_latent, tol->lat,
                   worst_u8, tol->u8);
        }
    }
    sdc_st_close(ref);
}

/* ---- parameters, progress, cancellation ------------------------------- */

typedef struct progress_log {
    int calls[SDC_STAGE_COUNT];
    int last_step[SDC_STAGE_COUNT], last_total[SDC_STAGE_COUNT];
    int in_order;       /* steps arrive 1, 2, ... within a stage */
    int cancel_at;      /* cancel at this sample step (0: never) */
} progress_log;

static int on_progress(void *user, sdc_stage stage, int step, int total) {
    progress_log *l = user;
    if ((unsigned)stage >= SDC_STAGE_COUNT) return 1;
    if (step != l->last_step[stage] + 1 || total < step) l->in_order = 0;
    l->calls[stage]++;
    l->last_step[stage] = step;
    l->last_total[stage] = total;
    return l->cancel_at && stage == SDC_STAGE_SAMPLE && step == l->cancel_at;
}

static void test_params_and_progress(void) {
    sdc_model *m = NULL;
    sdc_status st = sdc_model_load(t_fixture("tiny-sd"), NULL, &m);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st != SDC_OK) return;

    sdc_gen_params base = sdc_gen_params_default();
    base.prompt = "a cat";
    base.width = base.height = 32;
    base.steps = 3;
    base.sampler = SDC_SAMPLER_EULER;
    base.schedule = SDC_SCHEDULE_DISCRETE;
    sdc_image out;

    struct {
        const char *what;
        sdc_gen_params p;
        const char *words;
    } bad[12];
    int nb = 0;
#define BAD(field, value, w)                                                                  \
    do {                                                                                      \
        bad[nb].what = #field "=" #value;                                                     \
        bad[nb].p = base;                                                                     \
        bad[nb].p.field = value;                                                              \
        bad[nb].words = w;                                                                    \
        nb++;                                                                                 \
    } while (0)
    BAD(width, 33, "width");
    BAD(width, 36, "multiple of 8");
    BAD(height, 0, "height");
    BAD(height, 1 << 20, "height");
    BAD(steps, 0, "steps");
    BAD(steps, 1001, "steps");
    BAD(cfg_scale, NAN, "CFG");
    BAD(cfg_scale, -1.0f, "CFG");
    BAD(sampler, SDC_SAMPLER_COUNT, "sampler");
    BAD(schedule, (sdc_schedule)7, "schedule");
    BAD(prompt, NULL, "prompt");
    for (int i = 0; i < nb; i++) {
        memset(&out, 0x55, sizeof out);
        st = sdc_generate(m, &bad[i].p, &out, NULL);
        CHECKF(st == SDC_ERR_INVALID_ARG, "%s: status %d", bad[i].what, (int)st);
        CHECKF(strstr(sdc_last_error(), bad[i].words) != NULL, "%s: message '%s'", bad[i].what,
               sdc_last_error());
        CHECK(out.data == NULL);
    }
    sdc_gen_params p = base;
    p.width = p.height = 16384; /* each side fine, too many pixels */
    CHECK(sdc_generate(m, &p, &out, NULL) == SDC_ERR_INVALID_ARG);
    p = base;
    p.sampler = SDC_SAMPLER_DDIM;
    p.schedule = SDC_SCHEDULE_KARRAS; /* not offered by ddim */
    CHECK(sdc_generate(m, &p, &out, NULL) == SDC_ERR_INVALID_ARG);
    CHECK(out.data == NULL);

    /* progress: text 2 (cfg), sample 1..len, decode 1 */
    progress_log log;
    memset(&log, 0, sizeof log);
    log.in_order = 1;
    p = base;
    p.progress = on_progress;
    p.progress_user = &log;
    sdc_timings tm;
    st = sdc_generate(m, &p, &out, &tm);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    CHECK(log.in_order);
    CHECK(log.calls[SDC_STAGE_TEXT] == 2 && log.last_total[SDC_STAGE_TEXT] == 2);
    CHECK(log.calls[SDC_STAGE_SAMPLE] == 3 && log.last_total[SDC_STAGE_SAMPLE] == 3);
    CHECK(log.calls[SDC_STAGE_DECODE] == 1);
    CHECK(tm.steps == 3 && tm.total >= tm.sample && tm.sample > 0);
    CHECK(tm.sample_steps > 0 && tm.sample_steps <= tm.sample);
    CHECK(out.data && out.width == 32 && out.height == 32 && out.channels == 3);

    /* same seed, same image; another seed, another image */
    sdc_image again, other;
    CHECK(sdc_generate(m, &base, &again, NULL) == SDC_OK);
    CHECK(out.data && again.data && memcmp(out.data, again.data, 32 * 32 * 3) == 0);
    p = base;
    p.seed = base.seed + 1;
    CHECK(sdc_generate(m, &p, &other, NULL) == SDC_OK);
    CHECK(other.data && memcmp(out.data, other.data, 32 * 32 * 3) != 0);
    sdc_image_free(&other);
    sdc_image_free(&again);
    sdc_image_free(&out);

    /* guidance off: one text pass */
    memset(&log, 0, sizeof log);
    log.in_order = 1;
    p = base;
    p.cfg_scale = 1.0f;
    p.progress = on_progress;
    p.progress_user = &log;
    CHECK(sdc_generate(m, &p, &out, NULL) == SDC_OK);
    CHECK(log.calls[SDC_STAGE_TEXT] == 1);
    sdc_image_free(&out);

    /* cancel at sample step 2 */
    memset(&log, 0, sizeof log);
    log.in_order = 1;
    log.cancel_at = 2;
    p = base;
    p.progress = on_progress;
    p.progress_user = &log;
    st = sdc_generate(m, &p, &out, NULL);
    CHECK(st == SDC_ERR_CANCELLED);
    CHECK(out.data == NULL);
    CHECK(log.calls[SDC_STAGE_SAMPLE] == 2 && log.calls[SDC_STAGE_DECODE] == 0);
    sdc_image_free(&out); /* harmless on an empty image */
    sdc_image_free(NULL);

    sdc_model_free(m);
    sdc_model_free(NULL);
}

/* ---- non-finite values, cancellation mid-step ------------------------------- */

/* A copy of the tiny diffusers folder in t_tmp(name) whose network file
 * `rel` has the first value of tensor `tensor` set to v (F32, F16 or BF16
 * as stored). */
static const char *poisoned_folder(const char *name, const char *rel, const char *tensor, float v) {
    static char dir[2048];
    char cmd[8192], path[4096];
    snprintf(dir, sizeof dir, "%s", t_tmp(name));
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dir, t_fixture("tiny-sd"), dir);
    CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    sdc_st_file *f = NULL;
    CHECKF(sdc_st_open(path, &f) == SDC_OK, "%s", sdc_last_error());
    const sdc_weight *w = f ? sdc_st_find(f, tensor) : NULL;
    CHECKF(w && w->nbytes >= 8, "%s in %s", tensor, rel);
    uint32_t bits;
    memcpy(&bits, &v, 4);
    uint16_t half = w && w->dtype == SDC_DT_F16 ? sdc_f32_to_f16(v) : (uint16_t)(bits >> 16);
    const void *val = w && w->dtype == SDC_DT_F32 ? (const void *)&v : (const void *)&half;
    const size_t vsize = w ? sdc_dtype_size(w->dtype) : 4;
    /* the tensor's bytes (random floats: unique in the file) locate it */
    FILE *fp = fopen(path, "r+b");
    long size = -1;
    if (fp && fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
    char *buf = size > 0 ? malloc((size_t)size) : NULL;
    long at = -1;
    if (w && buf && fseek(fp, 0, SEEK_SET) == 0 && fread(buf, 1, (size_t)size, fp) == (size_t)size)
        for (long i = 0; i + (long)w->nbytes <= size && at < 0; i++)
            if (memcmp(buf + i, w->data, w->nbytes) == 0) at = i;
    CHECKF(at >= 0, "%s not found in %s", tensor, path);
    if (at >= 0) CHECK(fseek(fp, at, SEEK_SET) == 0 && fwrite(val, vsize, 1, fp) == 1);
    if (fp) CHECK(fclose(fp) == 0);
    free(buf);
    sdc_st_close(f);
    return dir;
}

/* A NaN or an infinity in any network's output is an error that names the
 * network (and the step), never a black image with SDC_OK. */
static void test_nonfinite(void) {
    static const struct {
        const char *rel, *tensor;
        float v;
        const char *words;
    } cases[] = {
        {"unet/diffusion_pytorch_model.safetensors", "conv_out.bias", NAN,
         "the UNet produced NaN at step 1 of 3"},
        {"unet/diffusion_pytorch_model.safetensors", "up_blocks.1.resnets.2.conv2.weight",
         INFINITY, "the UNet produced"},
        {"vae/diffusion_pytorch_model.safetensors", "decoder.conv_out.bias", INFINITY,
         "the VAE decoder produced Inf"},
        {"text_encoder/model.safetensors", "text_model.final_layer_norm.bias", NAN,
         "the text encoder produced NaN"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *dir = poisoned_folder("poisoned", cases[i].rel, cases[i].tensor, cases[i].v);
        sdc_model *m = NULL;
        sdc_status st = sdc_model_load(dir, NULL, &m);
        CHECKF(st == SDC_OK, "%s", sdc_last_error());
        if (st != SDC_OK) continue;
        sdc_gen_params p = sdc_gen_params_default();
        p.prompt = "a cat";
        p.width = p.height = 32;
        p.steps = 3;
        sdc_image out;
        memset(&out, 0x55, sizeof out);
        st = sdc_generate(m, &p, &out, NULL);
        CHECKF(st == SDC_ERR_FORMAT && strstr(sdc_last_error(), cases[i].words),
               "%s = %g: status %d, '%s'", cases[i].tensor, cases[i].v, (int)st, sdc_last_error());
        CHECK(out.data == NULL);
        printf("  %-40s %s\n", cases[i].tensor, sdc_last_error());
        sdc_model_free(m);
    }
}

typedef struct cancel_job {
    sdc_model *m;
    double delay, sent; /* seconds: when to cancel; when it was */
} cancel_job;

static void *cancel_later(void *p) {
    cancel_job *j = p;
    double t0 = t_seconds();
    while (t_seconds() - t0 < j->delay) usleep(1000);
    j->sent = t_seconds();
    sdc_model_cancel(j->m, 1);
    return NULL;
}

static int count_steps(void *user, sdc_stage stage, int step, int total) {
    (void)total;
    if (stage == SDC_STAGE_SAMPLE) *(int *)user = step;
    return 0;
}

/* sdc_model_cancel from another thread stops a generation mid-step (the
 * tiny model at 384x384 takes tens of seconds a step here): it returns
 * SDC_ERR_CANCELLED within a few seconds, no step having ended; a request
 * made before the call stops it at once; withdrawn, the model generates. */
static void test_cancel_mid_step(void) {
    sdc_model *m = NULL;
    sdc_load_params lp = sdc_load_params_default();
    lp.n_threads = 2;
    sdc_status st = sdc_model_load(t_fixture("tiny-sd"), &lp, &m);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st != SDC_OK) return;
    sdc_gen_params p = sdc_gen_params_default();
    p.prompt = "a cat";
    p.width = p.height = 384;
    p.steps = 2;
    int steps_done = 0;
    p.progress = count_steps;
    p.progress_user = &steps_done;
    sdc_image out;
    memset(&out, 0x55, sizeof out);
    cancel_job j = {m, 1.0, 0};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, cancel_later, &j) == 0);
    st = sdc_generate(m, &p, &out, NULL);
    const double late = t_seconds() - j.sent;
    pthread_join(th, NULL);
    printf("  cancelled mid-step: returned %.3f s after the request\n", late);
    CHECKF(st == SDC_ERR_CANCELLED, "status %d: %s", (int)st, sdc_last_error());
    CHECK(out.data == NULL && steps_done == 0);
    /* ~1 s natively; the bound leaves room for sanitizers, qemu and a
     * loaded machine (the largest task of an op at this size) */
    CHECKF(late <= 10.0, "returned %.1f s after the request", late);
    /* still set: the next call stops at once */
    p.width = p.height = 32;
    st = sdc_generate(m, &p, &out, NULL);
    CHECK(st == SDC_ERR_CANCELLED && out.data == NULL);
    sdc_model_cancel(m, 0);
    st = sdc_generate(m, &p, &out, NULL);
    CHECKF(st == SDC_OK && out.data != NULL, "%s", sdc_last_error());
    sdc_image_free(&out);
    sdc_model_free(m);
}

static void test_load_errors(void) {
    sdc_model *m = (sdc_model *)1;
    CHECK(sdc_model_load(t_fixture("no-such-model.safetensors"), NULL, &m) != SDC_OK);
    CHECK(m == NULL);
    CHECK(strlen(sdc_last_error()) > 0);
    sdc_load_params lp = sdc_load_params_default();
    lp.n_threads = -3;
    CHECK(sdc_model_load(t_fixture("tiny-sd"), &lp, &m) == SDC_ERR_INVALID_ARG);
    CHECK(sdc_model_load(NULL, NULL, &m) == SDC_ERR_INVALID_ARG);
}

int main(void) {
    RUN(test_infotext);
    RUN(test_png_roundtrip);
    RUN(test_png_errors);
    RUN(test_png_not_regular);
    RUN(test_load_errors);
    RUN(test_params_and_progress);
    RUN(test_nonfinite);
    RUN(test_cancel_mid_step);
    RUN(test_against_diffusers);
    RUN(test_img2img);
    RUN(test_img2img_params);
    RUN(test_preview);
    RUN(test_bf16_mode);
    RUN(test_opencl);
    return t_summary();
}
