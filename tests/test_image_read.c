/* Input images against PIL 13: sdc_image_load (PNG, JPEG, orientation),
 * sdc_image_resize (Image.LANCZOS), sdc_image_convert; hostile files.
 * Reference: tests/fixtures/images/ (scripts/fixtures_lib/images.py):
 *   decode.<file>.rgb / .l  load_image(<file>) [then .convert("L")], [h, w, c] U8
 *   src.<name>, resize.<name>.<W>x<H>  src.resize((W, H), Image.LANCZOS)
 * PNG decoding, the conversions and the resize are compared bit for bit.
 * JPEG within JPEG_TOL: PIL's wheel bundles libjpeg-turbo 3.2.0, sdc uses
 * the system's (2.1.5 on Debian 12); measured max |diff| 0 on every JPEG
 * fixture (same IDCT, islow, and upsampling code), 1 allowed for other
 * libjpeg-turbo versions.  Hostile files are made at run time in
 * t_tmp_dir(). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "harness.h"
#include "image/image_read.h"
#include "io/safetensors.h"

#define JPEG_TOL 1

static sdc_st_file *g_ref;

/* ---- helpers ----------------------------------------------------------- */

static uint8_t *read_all(const char *path, size_t *n) {
    *n = 0;
    uint8_t *buf = (uint8_t *)t_read_file(path, n);
    CHECKF(buf != NULL, "cannot read %s", path);
    return buf;
}

static const char *write_file(const char *name, const void *p, size_t n) {
    const char *path = t_tmp(name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    if (n) fwrite(p, 1, n, f);
    fclose(f);
    return path;
}

static uint8_t *fixture_bytes(const char *file, size_t *n) {
    char name[256];
    snprintf(name, sizeof name, "images/%s", file);
    return read_all(t_fixture(name), n);
}

/* A reference U8 tensor [h, w, c] as an image view (not owned). */
static int ref_image(const char *name, sdc_image *im) {
    const sdc_weight *w = sdc_st_find(g_ref, name);
    int ok = w && w->dtype == SDC_DT_U8 && w->ndim == 3;
    CHECKF(ok, "reference %s ([h, w, c] U8)", name);
    if (!ok) return 0;
    *im = (sdc_image){(int)w->shape[1], (int)w->shape[0], (int)w->shape[2], (uint8_t *)w->data};
    return 1;
}

/* max |a - b| over the pixels, or -1 when the shapes differ. */
static int image_diff(const sdc_image *a, const sdc_image *b) {
    if (a->width != b->width || a->height != b->height || a->channels != b->channels) return -1;
    int d = 0;
    size_t n = (size_t)a->width * a->height * a->channels;
    for (size_t i = 0; i < n; i++) {
        int e = abs((int)a->data[i] - (int)b->data[i]);
        if (e > d) d = e;
    }
    return d;
}

/* Loads path expecting status want, a message naming the file and holding
 * needle, and an empty image. */
static void expect_fail(const char *path, int channels, int64_t max_pixels, sdc_status want,
                        const char *needle) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path ? path : "(null)");
    sdc_image im = {1, 1, 1, (uint8_t *)p}; /* must be cleared */
    sdc_status st = sdc_image_load(path, channels, max_pixels, &im);
    const char *msg = sdc_last_error();
    CHECKF(st == want, "%s: status %s, want %s (%s)", p, sdc_status_str(st), sdc_status_str(want),
           msg);
    CHECKF(msg && strstr(msg, needle), "%s: message \"%s\" lacks \"%s\"", p, msg, needle);
    if (path && *path) {
        const char *base = strrchr(path, '/');
        CHECKF(msg && strstr(msg, base ? base + 1 : path), "%s: message \"%s\" lacks the name", p,
               msg);
    }
    CHECK(im.data == NULL && im.width == 0 && im.height == 0);
    sdc_image_free(&im);
}

/* Loads path expecting the image of reference tensor ref exactly. */
static void expect_image(const char *path, int channels, const char *ref) {
    sdc_image want, got = {0};
    if (!ref_image(ref, &want)) return;
    sdc_status st = sdc_image_load(path, channels, SDC_IMAGE_DEFAULT_MAX_PIXELS, &got);
    CHECKF(st == SDC_OK, "%s: %s", path, sdc_last_error());
    int d = st == SDC_OK ? image_diff(&got, &want) : -1;
    CHECKF(d == 0, "%s: max |diff| %d against %s (-1: shape %dx%dx%d)", path, d, ref, got.width,
           got.height, got.channels);
    sdc_image_free(&got);
}

static void put32be(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* A PNG chunk at p: length, type, data, CRC; returns its size. */
static size_t put_chunk(uint8_t *p, const char *type, const void *data, uint32_t n) {
    put32be(p, n);
    memcpy(p + 4, type, 4);
    if (n) memcpy(p + 8, data, n);
    put32be(p + 8 + n, (uint32_t)crc32(0, p + 4, 4 + n));
    return 12 + (size_t)n;
}

/* An 8-bit RGB PNG declaring w x h whose IDAT holds one row of zeros. */
static const char *write_png_header_only(const char *name, uint32_t w, uint32_t h) {
    uint8_t buf[256], ihdr[13] = {0}, row[16] = {0}, z[64];
    uLongf zn = sizeof z;
    compress(z, &zn, row, sizeof row);
    put32be(ihdr, w);
    put32be(ihdr + 4, h);
    ihdr[8] = 8;
    ihdr[9] = 2;
    size_t n = 0;
    memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
    n = 8;
    n += put_chunk(buf + n, "IHDR", ihdr, 13);
    n += put_chunk(buf + n, "IDAT", z, (uint32_t)zn);
    n += put_chunk(buf + n, "IEND", NULL, 0);
    return write_file(name, buf, n);
}

/* Offset of the first JPEG marker 0xFF m at or after from, or 0. */
static size_t jpeg_find(const uint8_t *b, size_t n, size_t from, uint8_t m) {
    for (size_t i = from; i + 1 < n; i++)
        if (b[i] == 0xFF && b[i + 1] == m) return i;
    return 0;
}

/* ---- against PIL ------------------------------------------------------- */

static void test_decode_vs_pil(void) {
    int n_png = 0, n_png_exact = 0, n_jpeg = 0, jpeg_max = 0;
    for (size_t i = 0; i < sdc_st_count(g_ref); i++) {
        const char *name = sdc_st_at(g_ref, i)->name;
        if (strncmp(name, "decode.", 7) != 0) continue;
        const char *dot = strrchr(name, '.');
        char file[128], rel[160];
        snprintf(file, sizeof file, "%.*s", (int)(dot - name - 7), name + 7);
        snprintf(rel, sizeof rel, "images/%s", file);
        int channels = strcmp(dot, ".l") == 0 ? 1 : 3;
        int jpeg = strstr(file, ".jpg") != NULL;
        sdc_image want, got;
        if (!ref_image(name, &want)) continue;
        sdc_status st =
            sdc_image_load(t_fixture(rel), channels, SDC_IMAGE_DEFAULT_MAX_PIXELS, &got);
        CHECKF(st == SDC_OK, "%s: %s", file, sdc_last_error());
        if (st != SDC_OK) continue;
        int d = image_diff(&got, &want);
        CHECKF(d >= 0 && d <= (jpeg ? JPEG_TOL : 0),
               "%s (%d channels): max |diff| %d against PIL (-1: got %dx%dx%d, PIL %dx%dx%d)", file,
               channels, d, got.width, got.height, got.channels, want.width, want.height,
               want.channels);
        if (jpeg) {
            n_jpeg++;
            if (d > jpeg_max) jpeg_max = d;
        } else {
            n_png++;
            n_png_exact += d == 0;
        }
        sdc_image_free(&got);
    }
    printf("  %d of %d PNG loads bit for bit; %d JPEG loads: max |diff| %d (tolerance %d)\n",
           n_png_exact, n_png, n_jpeg, jpeg_max, JPEG_TOL);
    CHECK(n_png >= 50 && n_jpeg >= 40);
}

static void test_resize_vs_pil(void) {
    int n = 0, n_exact = 0;
    for (size_t i = 0; i < sdc_st_count(g_ref); i++) {
        const char *name = sdc_st_at(g_ref, i)->name;
        if (strncmp(name, "resize.", 7) != 0) continue;
        const char *dot = strrchr(name, '.');
        char src[128];
        int w, h;
        snprintf(src, sizeof src, "src.%.*s", (int)(dot - name - 7), name + 7);
        CHECKF(sscanf(dot + 1, "%dx%d", &w, &h) == 2, "bad reference name %s", name);
        sdc_image in, want, got;
        if (!ref_image(src, &in) || !ref_image(name, &want)) continue;
        sdc_status st = sdc_image_resize(&in, w, h, &got);
        CHECKF(st == SDC_OK, "%s: %s", name, sdc_last_error());
        if (st != SDC_OK) continue;
        int d = image_diff(&got, &want);
        CHECKF(d == 0, "%s: max |diff| %d against PIL (-1: shape)", name, d);
        if (w == in.width && h == in.height) CHECK(got.data != in.data);
        sdc_image_free(&got);
        n++;
        n_exact += d == 0;
    }
    printf("  %d of %d resizes bit for bit\n", n_exact, n);
    CHECK(n >= 20);
}

/* ---- conversions ------------------------------------------------------- */

static void test_convert(void) {
    uint8_t rgb[] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 12, 200, 99};
    uint8_t want_l[] = {76, 150, 29, 255, 0, 132}; /* PIL's convert("L") */
    sdc_image in = {3, 2, 3, rgb}, l, back;
    CHECK(sdc_image_convert(&in, 1, &l) == SDC_OK);
    CHECK(l.channels == 1 && l.width == 3 && l.height == 2 && memcmp(l.data, want_l, 6) == 0);
    CHECK(sdc_image_convert(&l, 3, &back) == SDC_OK);
    for (int i = 0; i < 6; i++)
        CHECK(back.data[3 * i] == want_l[i] && back.data[3 * i + 1] == want_l[i] &&
              back.data[3 * i + 2] == want_l[i]);
    sdc_image_free(&l);
    sdc_image_free(&back);
    /* diffusers' colour mask: resize the RGB image, then L (not the other way) */
    sdc_image src, big, mask;
    if (ref_image("src.rgb33x17", &src)) {
        CHECK(sdc_image_resize(&src, 64, 48, &big) == SDC_OK);
        CHECK(sdc_image_convert(&big, 1, &mask) == SDC_OK);
        CHECK(mask.channels == 1 && mask.width == 64 && mask.height == 48);
        sdc_image_free(&big);
        sdc_image_free(&mask);
    }
    CHECK(sdc_image_convert(&in, 2, &l) == SDC_ERR_INVALID_ARG && l.data == NULL);
    sdc_image bad = {3, 2, 4, rgb};
    CHECK(sdc_image_convert(&bad, 3, &l) == SDC_ERR_INVALID_ARG);
    CHECK(sdc_image_resize(&bad, 2, 2, &l) == SDC_ERR_INVALID_ARG && l.data == NULL);
    CHECK(sdc_image_resize(&in, 0, 2, &l) == SDC_ERR_INVALID_ARG);
    CHECK(sdc_image_resize(&in, 2, SDC_IMAGE_MAX_SIDE + 1, &l) == SDC_ERR_INVALID_ARG);
    CHECK(sdc_image_resize(NULL, 2, 2, &l) == SDC_ERR_INVALID_ARG);
    CHECK(sdc_image_resize(&in, 2, 2, NULL) == SDC_ERR_INVALID_ARG);
    /* an extreme ratio: every output pixel reads the whole row */
    static uint8_t wide[3 * 4000];
    for (int i = 0; i < 3 * 4000; i++) wide[i] = (uint8_t)(i * 7);
    sdc_image w = {4000, 1, 3, wide}, one;
    CHECK(sdc_image_resize(&w, 1, 3, &one) == SDC_OK && one.width == 1 && one.height == 3);
    sdc_image_free(&one);
}

/* ---- limits and hostile files ----------------------------------------- */

static void test_limits(void) {
    /* rgb8.png is 13x11 = 143 pixels */
    sdc_image im;
    CHECK(sdc_image_load(t_fixture("images/rgb8.png"), 3, 143, &im) == SDC_OK);
    sdc_image_free(&im);
    expect_fail(t_fixture("images/rgb8.png"), 3, 142, SDC_ERR_FORMAT,
                "13x11 pixels (143) is above the limit of 142");
    CHECK(sdc_image_load(t_fixture("images/j420.jpg"), 3, 27 * 21, &im) == SDC_OK);
    sdc_image_free(&im);
    expect_fail(t_fixture("images/j420.jpg"), 1, 27 * 21 - 1, SDC_ERR_FORMAT, "above the limit");

    /* decompression bombs: tiny files declaring huge images */
    expect_fail(write_png_header_only("huge.png", 100000, 100000), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS,
                SDC_ERR_FORMAT, "100000x100000 pixels: a side is above the limit of 65535");
    expect_fail(write_png_header_only("big.png", 60000, 60000), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS,
                SDC_ERR_FORMAT, "60000x60000 pixels (3600000000) is above the limit of 89478485");
    expect_fail(write_png_header_only("side.png", 70000, 1), 3, INT64_MAX, SDC_ERR_FORMAT,
                "above the limit of 65535");
    expect_fail(write_png_header_only("zero.png", 0, 16), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS,
                SDC_ERR_FORMAT, "0x16 pixels: an empty image");
    /* within the limits but the data is missing: decoded, refused, freed */
    expect_fail(write_png_header_only("short.png", 2000, 1500), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS,
                SDC_ERR_FORMAT, "bad PNG");

    size_t n;
    uint8_t *j = fixture_bytes("j420.jpg", &n);
    size_t sof = j ? jpeg_find(j, n, 2, 0xC0) : 0;
    CHECK(sof > 0);
    if (sof) {
        uint8_t *b = malloc(n);
        memcpy(b, j, n);
        b[sof + 5] = b[sof + 7] = 0xFD; /* 65000 = 0xFDE8 */
        b[sof + 6] = b[sof + 8] = 0xE8;
        expect_fail(write_file("huge.jpg", b, n), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS, SDC_ERR_FORMAT,
                    "65000x65000 pixels (4225000000) is above the limit of 89478485");
        b[sof + 5] = b[sof + 6] = 0; /* height 0: "DNL" */
        expect_fail(write_file("zero.jpg", b, n), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS, SDC_ERR_FORMAT,
                    "JPEG");
        memcpy(b, j, n);
        b[sof + 4] = 12; /* 12-bit samples */
        expect_fail(write_file("twelve.jpg", b, n), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS,
                    SDC_ERR_UNSUPPORTED, "Unsupported JPEG");
        memcpy(b, j, n);
        b[sof + 1] = 0xC3; /* lossless */
        expect_fail(write_file("lossless.jpg", b, n), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS,
                    SDC_ERR_UNSUPPORTED, "Unsupported JPEG");
        free(b);
    }
    free(j);
}

static void test_truncated(void) {
    size_t n;
    uint8_t *p = fixture_bytes("rgb8.png", &n);
    if (p) {
        size_t cuts[] = {1, 7, 8, 20, 33, 41, n / 2, n - 24};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, "cut%zu.png", cuts[i]);
            expect_fail(write_file(name, p, cuts[i]), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS,
                        SDC_ERR_FORMAT, cuts[i] < 8 ? "not a PNG or JPEG" : "truncated PNG data");
        }
        /* no IEND after complete image data: read, as PIL reads it */
        expect_image(write_file("no_iend.png", p, n - 12), 3, "decode.rgb8.png.rgb");
        /* bytes after IEND are never read */
        uint8_t *q = malloc(n + 5);
        memcpy(q, p, n);
        memcpy(q + n, "junk!", 5);
        expect_image(write_file("trailing.png", q, n + 5), 3, "decode.rgb8.png.rgb");
        free(q);
    }
    free(p);
    const char *jpegs[] = {"j420.jpg", "j420_prog.jpg", "grey.jpg"};
    for (int k = 0; k < 3; k++) {
        uint8_t *j = fixture_bytes(jpegs[k], &n);
        if (!j) continue;
        size_t sos = jpeg_find(j, n, 2, 0xDA);
        size_t cuts[] = {3, 4, 20, sos + 2, sos + 20, n / 2, n - 3, n - 2, n - 1};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, "cut%zu_%s", cuts[i], jpegs[k]);
            expect_fail(write_file(name, j, cuts[i]), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS,
                        SDC_ERR_FORMAT, "truncated JPEG data");
        }
        free(j);
    }
}

static void test_corrupt(void) {
    size_t n;
    uint8_t *p = fixture_bytes("rgb8.png", &n);
    if (p) {
        uint8_t *b = malloc(n);
        memcpy(b, p, n);
        b[29] ^= 0x01; /* IHDR's CRC */
        expect_fail(write_file("crc_ihdr.png", b, n), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS,
                    SDC_ERR_FORMAT, "CRC");
        memcpy(b, p, n);
        b[33 + 8 + 10] ^= 0x40; /* a byte of IDAT's data: zlib or the CRC objects */
        expect_fail(write_file("idat_byte.png", b, n), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS,
                    SDC_ERR_FORMAT, "bad PNG");
        memcpy(b, p, n);
        uint32_t len = (uint32_t)b[33] << 24 | b[34] << 16 | b[35] << 8 | b[36];
        b[33 + 8 + len] ^= 0x01; /* IDAT's CRC, the data intact */
        expect_fail(write_file("crc_idat.png", b, n), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS,
                    SDC_ERR_FORMAT, "IDAT: CRC error");
        /* a broken zlib stream with a correct CRC */
        memcpy(b, p, n);
        b[33 + 8] = 0x00; /* the zlib header */
        put32be(b + 33 + 8 + len, (uint32_t)crc32(0, b + 33 + 4, 4 + len));
        expect_fail(write_file("zlib.png", b, n), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS, SDC_ERR_FORMAT,
                    "bad PNG");
        free(b);
    }
    free(p);
    uint8_t *j = fixture_bytes("j420.jpg", &n);
    if (j) {
        size_t sos = jpeg_find(j, n, 2, 0xDA);
        size_t data = sos + 2 + ((size_t)j[sos + 2] << 8 | j[sos + 3]);
        uint8_t *b = malloc(n + 2);
        /* an EOI in the middle of the entropy-coded data */
        size_t mid = data + (n - data) / 2;
        memcpy(b, j, mid);
        b[mid] = 0xFF;
        b[mid + 1] = 0xD9;
        memcpy(b + mid + 2, j + mid, n - mid);
        expect_fail(write_file("early_eoi.jpg", b, n + 2), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS,
                    SDC_ERR_FORMAT, "Corrupt JPEG data");
        /* all-ones bits (stuffed 0xFF 0x00): no valid Huffman code */
        memcpy(b, j, n);
        for (size_t i = data + 8; i + 1 < data + 40 && i + 1 < n - 2; i += 2) {
            b[i] = 0xFF;
            b[i + 1] = 0;
        }
        expect_fail(write_file("bad_huffman.jpg", b, n), 3, SDC_IMAGE_DEFAULT_MAX_PIXELS,
                    SDC_ERR_FORMAT, "Corrupt JPEG data");
        free(b);
    }
    free(j);
}

static void test_paths_and_args(void) {
    expect_fail(t_tmp("missing.png"), 3, 100, SDC_ERR_IO, "No such file");
    expect_fail(t_tmp_dir(), 3, 100, SDC_ERR_IO, "folder");
    expect_fail(write_file("empty.png", "", 0), 3, 100, SDC_ERR_FORMAT, "empty file");
    expect_fail(write_file("text.png", "hello, world\n", 13), 3, 100, SDC_ERR_FORMAT,
                "not a PNG or JPEG");
    expect_fail(write_file("x.jpg", "\xFF\xD8", 2), 3, 100, SDC_ERR_FORMAT, "not a PNG or JPEG");
    expect_fail(write_file("anim.png", "GIF89a\x01\x00\x01\x00\x00\x00\x00", 13), 3, 100,
                SDC_ERR_UNSUPPORTED, "a GIF image");
    expect_fail(write_file("photo.jpg", "RIFF\x10\x00\x00\x00WEBPVP8 ", 16), 3, 100,
                SDC_ERR_UNSUPPORTED, "a WebP image");
    const char *fifo = t_tmp("fifo.png");
    if (mkfifo(fifo, 0600) == 0) expect_fail(fifo, 3, 100, SDC_ERR_IO, "not a regular file");
    const char *ok = t_fixture("images/rgb8.png");
    expect_fail(ok, 2, 100, SDC_ERR_INVALID_ARG, "1 (L) or 3 (RGB)");
    expect_fail(ok, 3, 0, SDC_ERR_INVALID_ARG, "pixel limit");
    expect_fail(NULL, 3, 100, SDC_ERR_INVALID_ARG, "empty path");
    expect_fail("", 3, 100, SDC_ERR_INVALID_ARG, "empty path");
    CHECK(sdc_image_load(ok, 3, 100, NULL) == SDC_ERR_INVALID_ARG);
}

/* Exif and XMP from hostile APP1 segments, in orient1.jpg with its own
 * Exif removed: the pixels are PIL's either way as it turns them (orient1:
 * not turned; orient6: turned 90 degrees clockwise).  Each case's outcome
 * was checked against PIL 13's exif_transpose. */
static void test_hostile_orientation(void) {
    size_t n;
    uint8_t *src = fixture_bytes("orient1.jpg", &n);
    if (!src) return;
    uint8_t *base = malloc(n);
    size_t bn = 2, i = 2;
    memcpy(base, src, 2);
    while (i + 4 <= n && src[i] == 0xFF && src[i + 1] != 0xDA) {
        size_t len = 2 + ((size_t)src[i + 2] << 8 | src[i + 3]);
        if (src[i + 1] != 0xE1) memcpy(base + bn, src + i, len), bn += len;
        i += len;
    }
    memcpy(base + bn, src + i, n - i);
    bn += n - i;
    free(src);

#define E "Exif\0\0"
#define II "II*\0\x08\0\0\0"
#define X "http://ns.adobe.com/xap/1.0/\0"
    /* IFD entries: tag 0x0112, type, count (little-endian), 4 value bytes */
#define ORI(type, cnt, v) "\x12\x01" type "\0" cnt "\0\0\0" v
    static const struct {
        const char *name;
        const char *seg[2];
        size_t len[2];
        int turned;
    } cases[] = {
#define C1(name, s, turned) {name, {s, NULL}, {sizeof s - 1, 0}, turned}
#define C2(name, s, t, turned) {name, {s, t}, {sizeof s - 1, sizeof t - 1}, turned}
        C1("short 6", E II "\1\0" ORI("\3", "\1", "\6\0\0\0"), 1),
        C1("big-endian long 6", E "MM\0*\0\0\0\x08\0\1\x01\x12\0\4\0\0\0\1\0\0\0\6", 1),
        C1("IFD offset past the end", E "II*\0\xF0\xFF\xFF\xFF", 0),
        C1("65535 entries, one there", E II "\xFF\xFF" ORI("\3", "\1", "\6\0\0\0"), 1),
        C1("value 9", E II "\1\0" ORI("\3", "\1", "\x09\0\0\0"), 0),
        C1("value 0", E II "\1\0" ORI("\3", "\1", "\0\0\0\0"), 0),
        C1("UNDEFINED type", E II "\1\0" ORI("\7", "\1", "\6\0\0\0"), 0),
        C1("BYTE type", E II "\1\0" ORI("\1", "\1", "\6\0\0\0"), 0),
        C1("SBYTE type", E II "\1\0" ORI("\6", "\1", "\6\0\0\0"), 1),
        C1("SSHORT type", E II "\1\0" ORI("\x08", "\1", "\6\0\0\0"), 1),
        C1("IFD type", E II "\1\0" ORI("\x0D", "\1", "\6\0\0\0"), 1),
        C1("negative SLONG", E II "\1\0" ORI("\x09", "\1", "\xFF\xFF\xFF\xFF"), 0),
        C1("two SHORTs: the first", E II "\1\0" ORI("\3", "\2", "\6\0\1\0"), 1),
        C1("first entry wins",
           E II "\2\0" ORI("\3", "\1", "\1\0\0\0") ORI("\3", "\1", "\6\0\0\0"), 0),
        C1("unknown type skipped",
           E II "\2\0" ORI("\x63", "\1", "\1\0\0\0") ORI("\3", "\1", "\6\0\0\0"), 1),
        C1("no data skipped",
           E II "\2\0" ORI("\3", "\0", "\7\0\0\0") ORI("\3", "\1", "\6\0\0\0"), 1),
        C1("three SHORTs out of line",
           E II "\1\0" ORI("\3", "\3", "\x1A\0\0\0") "\0\0\0\0\6\0\1\0\1\0", 1),
        C1("out of line past the end ends the IFD",
           E II "\2\0" ORI("\3", "\3", "\xD0\x07\0\0") ORI("\3", "\1", "\6\0\0\0"), 0),
        C1("entry cut short", E II "\1\0\x12\x01\3\0\1\0\0\0\6", 0),
        C1("Exif prefix only", E, 0),
        C1("Exif prefix twice", E E II "\1\0" ORI("\3", "\1", "\6\0\0\0"), 1),
        C1("not TIFF", E "XXXXXXXXXXXXXXXX", 0),
        C1("empty APP1", "", 0),
        C2("IFD in the second Exif segment", E II, E "\1\0" ORI("\3", "\1", "\6\0\0\0"), 1),
        C1("XMP attribute", X "<x tiff:Orientation=\"6\"/>", 1),
        C1("XMP element", X "<tiff:Orientation>6</tiff:Orientation>", 1),
        C1("XMP first match", X "tiff:Orientation=6 tiff:Orientation=\"6\"", 1),
        C1("XMP key at the very end", X "tiff:Orientation", 0),
        C2("XMP: the last segment", X "tiff:Orientation=\"6\"", X "tiff:Orientation=\"1\"", 0),
        C2("Exif tag present: XMP unread", E II "\1\0" ORI("\7", "\1", "\6\0\0\0"),
           X "tiff:Orientation=\"6\"", 0),
        C2("Exif tag skipped: XMP read", E II "\1\0" ORI("\x63", "\1", "\1\0\0\0"),
           X "tiff:Orientation=\"6\"", 1),
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint8_t *b = malloc(bn + 2 * (4 + 65535));
        size_t m = 2;
        memcpy(b, base, 2);
        for (int s = 0; s < 2 && cases[k].seg[s]; s++) {
            size_t len = cases[k].len[s] + 2;
            b[m] = 0xFF, b[m + 1] = 0xE1, b[m + 2] = (uint8_t)(len >> 8), b[m + 3] = (uint8_t)len;
            memcpy(b + m + 4, cases[k].seg[s], cases[k].len[s]);
            m += 2 + len;
        }
        memcpy(b + m, base + 2, bn - 2);
        m += bn - 2;
        char name[64];
        snprintf(name, sizeof name, "exif%zu.jpg", k);
        const char *path = write_file(name, b, m);
        free(b);
        sdc_image got, want;
        const char *ref = cases[k].turned ? "decode.orient6.jpg.rgb" : "decode.orient1.jpg.rgb";
        if (!ref_image(ref, &want)) continue;
        sdc_status st = sdc_image_load(path, 3, SDC_IMAGE_DEFAULT_MAX_PIXELS, &got);
        CHECKF(st == SDC_OK, "%s: %s", cases[k].name, sdc_last_error());
        if (st != SDC_OK) continue;
        int d = image_diff(&got, &want);
        CHECKF(d >= 0 && d <= JPEG_TOL, "%s: %s, %dx%d (max |diff| %d)", cases[k].name,
               cases[k].turned ? "should be turned" : "should not be turned", got.width, got.height,
               d);
        sdc_image_free(&got);
    }
    free(base);
#undef E
#undef II
#undef X
#undef ORI
#undef C1
#undef C2
}

/* A chunk before the image data declaring 1.9 GB (libpng 1.6 would allocate
 * it: fuzz_image's finding, fuzz/findings/image-oom-itxt.png) is refused
 * before libpng reads it. */
static void test_chunk_bomb(void) {
    static const uint8_t png[] = {
        0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a,               /* signature */
        0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 0, 0, 13, 0, 0, 0, 11, 8, 2, 0, 0, 0,
        0x2b, 0xd0, 0x90, 0x36,                                     /* IHDR 13x11 RGB, CRC */
        0x73, 0x00, 0x01, 0x28, 'i', 'T', 'X', 't', 'X', 'M', 'L', 0, 0, 0, 0, 0}; /* 1.9 GB */
    const char *path = write_file("bomb.png", png, sizeof png);
    sdc_image im;
    sdc_status st = sdc_image_load(path, 3, 1 << 20, &im);
    CHECKF(st == SDC_ERR_FORMAT && strstr(sdc_last_error(), "iTXt declares 1929380136 bytes"),
           "%s: %s", sdc_status_str(st), sdc_last_error());
    CHECK(im.data == NULL);
}

int main(void) {
    sdc_status st = sdc_st_open(t_fixture("images/ref.safetensors"), &g_ref);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st == SDC_OK) {
        printf("  reference: PIL %s, libjpeg-turbo %s\n", sdc_st_metadata(g_ref, "pil"),
               sdc_st_metadata(g_ref, "libjpeg_turbo"));
        RUN(test_decode_vs_pil);
        RUN(test_resize_vs_pil);
        RUN(test_convert);
        RUN(test_limits);
        RUN(test_truncated);
        RUN(test_corrupt);
        RUN(test_hostile_orientation);
    }
    RUN(test_paths_and_args);
    RUN(test_chunk_bomb);
    sdc_st_close(g_ref);
    return t_summary();
}
