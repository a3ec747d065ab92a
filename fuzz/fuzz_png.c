/* libFuzzer harness: the PNG writer's metadata path (image/png.c): the
 * A1111 infotext (sdc_infotext) and text chunks (UTF-8 -> tEXt or iTXt),
 * written by sdc_png_write into the scratch folder and read back with
 * libpng.
 *
 * Input: a fixed head of HEAD bytes (generation parameters, the image's
 * size, flags), then parts: prompt, negative prompt, model name, and
 * optionally an extra chunk's key and text.  Properties: the write succeeds
 * unless the extra key is one libpng refuses; what is written reads back
 * as a PNG with the same pixels whose first text chunk is "parameters"
 * holding the infotext as png.h says (Latin-1 as tEXt, else UTF-8 as iTXt,
 * ill-formed bytes as U+FFFD); the folder holds no temporary file after. */
#include "fuzz_util.h"

#include <dirent.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include "image/png.h"
#include "text/unicode.h"

enum { HEAD = 22, MAX_SIDE = 8 };

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* What png.c writes for text: Latin-1 bytes when every code point fits
 * (*latin1 = 1), else UTF-8 with U+FFFD for ill-formed input.  malloc'ed. */
static char *expected_chunk(const char *text, int *latin1) {
    sdc_cps cps = {0};
    FZ_ASSERT(sdc_utf8_decode(text, strlen(text), &cps) == SDC_OK, "decode");
    *latin1 = 1;
    for (size_t i = 0; i < cps.len; i++)
        if (cps.cp[i] > 0xFF) *latin1 = 0;
    char *out = malloc(4 * cps.len + 1);
    size_t o = 0;
    for (size_t i = 0; i < cps.len; i++) {
        if (*latin1)
            out[o++] = (char)cps.cp[i];
        else
            o += sdc_utf8_encode(cps.cp[i], out + o);
    }
    out[o] = 0;
    sdc_cps_free(&cps);
    return out;
}

typedef struct readback {
    int ok, width, height, n_text;
    uint8_t rgb[MAX_SIDE * MAX_SIDE * 3];
    char *text[2]; /* the first two chunks' text, malloc'ed */
    int itxt[2];   /* 1: read as iTXt */
} readback;

static void on_read_error(png_structp png, png_const_charp msg) {
    fprintf(stderr, "libpng: %s\n", msg);
    png_longjmp(png, 1);
}

static void on_read_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

/* Reads path back; r->ok = 0 when libpng cannot.  r must be zeroed; the
 * caller frees r->text[] whatever the outcome. */
static void read_back(const char *path, readback *r) {
    FILE *f = fopen(path, "rb");
    if (!f) return;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, on_read_error,
                                             on_read_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) abort();
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        return;
    }
    png_init_io(png, f);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, NULL, NULL, NULL);
    if (w > MAX_SIDE || h > MAX_SIDE || depth != 8 || ctype != PNG_COLOR_TYPE_RGB)
        png_error(png, "unexpected IHDR");
    r->width = (int)w;
    r->height = (int)h;
    for (png_uint_32 y = 0; y < h; y++) png_read_row(png, r->rgb + (size_t)y * w * 3, NULL);
    png_read_end(png, info);
    png_textp text;
    int n = 0;
    png_get_text(png, info, &text, &n);
    r->n_text = n;
    for (int i = 0; i < n && i < 2; i++) {
        size_t len = strlen(text[i].text);
        r->text[i] = malloc(len + 1);
        memcpy(r->text[i], text[i].text, len + 1);
        r->itxt[i] = text[i].compression == PNG_ITXT_COMPRESSION_NONE;
        if (i == 0 && strcmp(text[i].key, "parameters") != 0) png_error(png, "first key");
    }
    r->ok = 1;
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
}

static void check_chunk(const readback *r, int i, const char *text) {
    int latin1;
    char *want = expected_chunk(text, &latin1);
    FZ_ASSERT(r->itxt[i] == !latin1, "chunk %d written as %s", i, r->itxt[i] ? "iTXt" : "tEXt");
    FZ_ASSERT(strcmp(r->text[i], want) == 0, "chunk %d reads back as \"%.200s\", not \"%.200s\"",
              i, r->text[i], want);
    free(want);
}

static void check_no_temporaries(void) {
    DIR *d = opendir(fz_dir());
    FZ_ASSERT(d != NULL, "scratch folder");
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        FZ_ASSERT(strncmp(e->d_name, ".sdc-tmp-", 9) != 0, "temporary file %s left", e->d_name);
    closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < HEAD) return 0;
    fz_part parts[5] = {{NULL, 0}};
    size_t np = fz_split(data + HEAD, size - HEAD, parts, 5);
    char *s[5];
    for (int i = 0; i < 5; i++) s[i] = fz_cstr(parts[i]);

    sdc_gen_params p = sdc_gen_params_default();
    p.prompt = s[0];
    p.negative_prompt = np > 1 && (data[21] & 1) ? s[1] : NULL;
    p.steps = (int)(int16_t)le(data, 2);
    p.sampler = (sdc_sampler)(data[2] % (SDC_SAMPLER_COUNT + 2));
    p.schedule = (sdc_schedule)(data[3] % (SDC_SCHEDULE_COUNT + 1));
    uint32_t bits = (uint32_t)le(data + 4, 4);
    memcpy(&p.cfg_scale, &bits, sizeof bits);
    p.seed = le(data + 8, 8);
    p.width = (int)(int16_t)le(data + 16, 2);
    p.height = (int)(int8_t)data[18] * 64;
    sdc_image img = {1 + data[19] % MAX_SIDE, 1 + data[20] % MAX_SIDE, 3, NULL};
    uint8_t rgb[MAX_SIDE * MAX_SIDE * 3];
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 37 + data[19]);
    img.data = rgb;

    char *info = sdc_infotext(&p, np > 2 ? s[2] : NULL);
    FZ_ASSERT(info != NULL, "sdc_infotext failed");
    sdc_png_text texts[2] = {{"parameters", info}, {s[3], s[4]}};
    int n_texts = np > 3 ? 2 : 1;
    int overwrite = data[21] >> 1 & 1;
    char path[4096];
    fz_path(path, "out.png");
    if (!overwrite) remove(path); /* else the previous input's file is replaced */
    FZ_ASSERT(sdc_png_check_dest(path, overwrite) == SDC_OK, "check_dest: %s", sdc_last_error());
    sdc_status st = sdc_png_write(path, &img, texts, n_texts, overwrite);
    fz_report("write", st, sdc_last_error());
    check_no_temporaries();
    size_t kl = strlen(s[3]);
    int key_ok = n_texts < 2 || (kl >= 1 && kl <= 79);
    if (st != SDC_OK) {
        /* refused: a key out of 1..79 bytes, or one libpng's keyword check
         * leaves empty (no printable Latin-1) */
        FZ_ASSERT(n_texts == 2, "write failed: %s", sdc_last_error());
        FZ_ASSERT(*sdc_last_error() != 0, "failure without a message");
    } else {
        FZ_ASSERT(key_ok, "key of %zu bytes accepted", kl);
        readback r = {0};
        read_back(path, &r);
        FZ_ASSERT(r.ok, "the PNG does not read back (text: %s)", r.text[0] ? r.text[0] : "-");
        FZ_ASSERT(r.width == img.width && r.height == img.height, "size %dx%d", r.width, r.height);
        FZ_ASSERT(memcmp(r.rgb, rgb, (size_t)img.width * img.height * 3) == 0, "pixels differ");
        FZ_ASSERT(r.n_text == n_texts, "%d text chunks, wrote %d", r.n_text, n_texts);
        check_chunk(&r, 0, info);
        if (n_texts == 2) check_chunk(&r, 1, s[4]);
        free(r.text[0]);
        free(r.text[1]);
    }
    free(info);
    for (int i = 0; i < 5; i++) free(s[i]);
    return 0;
}
