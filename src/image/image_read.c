/* Reading PNG (libpng) and JPEG (libjpeg-turbo) as diffusers' load_image
 * does; see image_read.h for what is matched and what is not.
 *
 * Both decoders report errors by longjmp.  Each decode function keeps
 * everything it allocates, and everything it changes after its setjmp, in a
 * context struct that its caller owns and frees, so that no local variable
 * is read after a longjmp and nothing leaks. */
#include "image/image_read.h"

#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jerror.h>
#include <jpeglib.h>

#include "core/error.h"

#define MAX_JPEG_SCANS 1000
#define PNG_CHUNK_MAX ((png_alloc_size_t)8 << 20)

/* ---- limits ------------------------------------------------------------ */

static sdc_status check_size(const char *path, int64_t w, int64_t h, int64_t max_pixels) {
    if (w < 1 || h < 1)
        return sdc_fail(SDC_ERR_FORMAT, "%s: %lldx%lld pixels: an empty image", path,
                        (long long)w, (long long)h);
    if (w > SDC_IMAGE_MAX_SIDE || h > SDC_IMAGE_MAX_SIDE)
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: %lldx%lld pixels: a side is above the limit of %d pixels", path,
                        (long long)w, (long long)h, SDC_IMAGE_MAX_SIDE);
    if (w * h > max_pixels)
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: %lldx%lld pixels (%lld) is above the limit of %lld pixels", path,
                        (long long)w, (long long)h, (long long)(w * h), (long long)max_pixels);
    return SDC_OK;
}

/* ---- orientation: Exif IFD0 tag 0x0112, XMP tiff:Orientation ----------- */

static uint32_t get16(const uint8_t *p, int big) {
    return big ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static uint32_t get32(const uint8_t *p, int big) {
    return big ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
               : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* Bytes per value of TIFF type t (PIL's _load_dispatch); 0: unknown. */
static uint32_t tiff_unit(uint32_t t) {
    static const uint8_t unit[17] = {0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4, 0, 0, 8};
    return t < 17 ? unit[t] : 0;
}

/* The Orientation of Exif data p[0..n): a TIFF header and IFD0, after any
 * number of "Exif\0\0" prefixes, as PIL's Exif.load strips them.  IFD0 is
 * walked as PIL's TiffImagePlugin.ImageFileDirectory_v2.load walks it:
 *   - entries are read while they fit (a cut IFD keeps those before the cut);
 *   - an entry is skipped when its tag was already kept, its type is
 *     unknown, it holds no data, or the out-of-line data of the entries so
 *     far adds up to more than n;
 *   - out-of-line data that runs past the end ends the walk (a short read);
 *   - the first kept entry of a tag is its value.
 * *present: an Orientation entry was kept (PIL then does not look at XMP).
 * The value is the first of an integer type's values; BYTE and UNDEFINED
 * are bytes to PIL, ASCII a string, and rationals and floats are not read
 * here: those turn nothing (1). */
static int exif_orientation(const uint8_t *p, size_t n, int *present) {
    *present = 0;
    while (n >= 6 && memcmp(p, "Exif\0\0", 6) == 0) {
        p += 6;
        n -= 6;
    }
    if (n < 8) return 1;
    int big;
    if (memcmp(p, "II*\0", 4) == 0)
        big = 0;
    else if (memcmp(p, "MM\0*", 4) == 0)
        big = 1;
    else
        return 1;
    uint32_t ifd = get32(p + 4, big);
    if (ifd > n || n - ifd < 2) return 1;
    uint32_t count = get16(p + ifd, big);
    uint8_t kept[65536 / 8] = {0};
    uint64_t out_of_line = 0;
    for (uint32_t i = 0; i < count; i++) {
        size_t at = (size_t)ifd + 2 + (size_t)i * 12;
        if (at + 12 > n) break;
        const uint8_t *e = p + at;
        uint32_t tag = get16(e, big), type = get16(e + 2, big);
        uint64_t size = (uint64_t)get32(e + 4, big) * tiff_unit(type);
        if (kept[tag / 8] >> (tag % 8) & 1 || tiff_unit(type) == 0) continue;
        const uint8_t *v = e + 8;
        if (size > 4) {
            out_of_line += size;
            if (out_of_line > n) continue;
            uint32_t off = get32(e + 8, big);
            if (off > n || size > n - off) break;
            v = p + off;
        }
        if (size == 0) continue;
        kept[tag / 8] |= (uint8_t)(1u << (tag % 8));
        if (tag != 0x0112) continue;
        *present = 1;
        switch (type) {
        case 3: return (int)get16(v, big);                            /* SHORT */
        case 8: return (int16_t)get16(v, big);                        /* SSHORT */
        case 4:                                                       /* LONG */
        case 9:                                                       /* SLONG */
        case 13: return get32(v, big) <= 8 ? (int)get32(v, big) : 0;  /* IFD */
        case 16:                                                      /* LONG8 */
            return get32(v + (big ? 0 : 4), big) == 0 && get32(v + (big ? 4 : 0), big) <= 8
                       ? (int)get32(v + (big ? 4 : 0), big)
                       : 0;
        case 6: return (int8_t)v[0];                                  /* SBYTE */
        default: return 1;
        }
    }
    return 1;
}

/* PIL's re.search(rb'tiff:Orientation(="|>)([0-9])', xmp): the first
 * match's digit, else 1. */
static int xmp_orientation(const uint8_t *p, size_t n) {
    static const char key[] = "tiff:Orientation";
    size_t kl = sizeof key - 1;
    for (size_t i = 0; i + kl < n; i++) {
        if (memcmp(p + i, key, kl) != 0) continue;
        const uint8_t *q = p + i + kl;
        size_t left = n - i - kl;
        if (left >= 3 && q[0] == '=' && q[1] == '"' && q[2] >= '0' && q[2] <= '9')
            return q[2] - '0';
        if (left >= 2 && q[0] == '>' && q[1] >= '0' && q[1] <= '9') return q[1] - '0';
    }
    return 1;
}

/* ---- decoded pixels ---------------------------------------------------- */

/* What a decoder hands over: [h, w, nc] with nc 1 (grey) or 3 (RGB), and
 * the orientation to apply (1..8; 1: none). */
typedef struct decoded {
    int w, h, nc, orientation;
    uint8_t *px;
} decoded;

/* PIL's convert("L") of one RGB pixel (Convert.c, rgb2l). */
static uint8_t luma(const uint8_t *rgb) {
    return (uint8_t)((rgb[0] * 19595u + rgb[1] * 38470u + rgb[2] * 7471u + 0x8000u) >> 16);
}

/* Copies n pixels of nc_in channels, pixels start, start + step, ... of
 * src, to dst as nc_out channels: the same, grey replicated, or RGB to L. */
static void convert_run(const uint8_t *src, ptrdiff_t start, ptrdiff_t step, int nc_in,
                        uint8_t *dst, int nc_out, int n) {
    for (int i = 0; i < n; i++, dst += nc_out) {
        const uint8_t *p = src + (start + i * step) * nc_in;
        if (nc_in == nc_out)
            memcpy(dst, p, (size_t)nc_out);
        else if (nc_out == 3)
            dst[0] = dst[1] = dst[2] = p[0];
        else
            dst[0] = luma(p);
    }
}

/* Orientation o turns a w x h image; out pixel (x, y) is in pixel
 * o0 + x * dx + y * dy (ImageOps.exif_transpose's Image.transpose methods:
 * 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE,
 * 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90).  Returns whether w and h swap. */
static int orient_steps(int o, int w, int h, ptrdiff_t *o0, ptrdiff_t *dx, ptrdiff_t *dy) {
    ptrdiff_t W = w, H = h;
    switch (o) {
    case 2: *o0 = W - 1; *dx = -1; *dy = W; return 0;
    case 3: *o0 = (H - 1) * W + W - 1; *dx = -1; *dy = -W; return 0;
    case 4: *o0 = (H - 1) * W; *dx = 1; *dy = -W; return 0;
    case 5: *o0 = 0; *dx = W; *dy = 1; return 1;
    case 6: *o0 = (H - 1) * W; *dx = -W; *dy = 1; return 1;
    case 7: *o0 = (H - 1) * W + W - 1; *dx = -W; *dy = -1; return 1;
    case 8: *o0 = W - 1; *dx = W; *dy = -1; return 1;
    default: *o0 = 0; *dx = 1; *dy = W; return 0;
    }
}

/* d -> *out with the orientation applied and channels converted; takes
 * d->px (reused when nothing changes, else freed). */
static sdc_status finish(const char *path, decoded *d, int channels, sdc_image *out) {
    ptrdiff_t o0, dx, dy;
    int swap = orient_steps(d->orientation, d->w, d->h, &o0, &dx, &dy);
    if (d->nc == channels && (d->orientation < 2 || d->orientation > 8)) {
        *out = (sdc_image){d->w, d->h, channels, d->px};
        d->px = NULL;
        return SDC_OK;
    }
    int ow = swap ? d->h : d->w, oh = swap ? d->w : d->h;
    uint8_t *dst = malloc((size_t)ow * (size_t)oh * (size_t)channels);
    if (!dst) return sdc_fail(SDC_ERR_NOMEM, "%s: out of memory", path);
    for (int y = 0; y < oh; y++)
        convert_run(d->px, o0 + y * dy, dx, d->nc, dst + (size_t)y * (size_t)ow * (size_t)channels,
                    channels, ow);
    free(d->px);
    d->px = NULL;
    *out = (sdc_image){ow, oh, channels, dst};
    return SDC_OK;
}

/* ---- PNG --------------------------------------------------------------- */

typedef struct png_ctx {
    FILE *f;
    const char *path;
    int64_t max_pixels;
    char msg[256];     /* libpng's error message */
    sdc_status status; /* set before a longjmp of our own; else FORMAT */
    int ended;         /* the file ended before libpng had what it read */
    png_bytep *rows;   /* freed by the caller */
    decoded d;         /* d.px freed by the caller */
} png_ctx;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void read_png_bytes(png_structp png, png_bytep data, size_t n) {
    png_ctx *c = png_get_io_ptr(png);
    if (fread(data, 1, n, c->f) == n) return;
    if (ferror(c->f)) {
        c->status = sdc_fail(SDC_ERR_IO, "%s: read error: %s", c->path, strerror(errno));
        png_error(png, "read error");
    }
    c->ended = 1;
    png_error(png, "the file ends early");
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png; /* ancillary-chunk trouble: PIL ignores it too */
    (void)msg;
}

/* Orientation from the chunks before the image data: eXIf, else XMP. */
static int png_orientation(png_structp png, png_infop info) {
    png_uint_32 n = 0;
    png_bytep exif = NULL;
    int present = 0, o = 1;
    if ((png_get_eXIf_1(png, info, &n, &exif) & PNG_INFO_eXIf) && exif)
        o = exif_orientation(exif, n, &present);
    if (present) return o;
    png_textp text = NULL;
    int n_text = png_get_text(png, info, &text, NULL);
    for (int i = 0; i < n_text; i++) {
        if (strcmp(text[i].key, "XML:com.adobe.xmp") != 0) continue;
        /* iTXt (compression 1, 2) keeps its length in itxt_length */
        size_t len = text[i].compression > 0 ? text[i].itxt_length : text[i].text_length;
        o = xmp_orientation((const uint8_t *)text[i].text, len);
    }
    return o;
}

/* The chunks before the image data, read ahead of libpng: one longer than
 * PNG_CHUNK_MAX is refused, since libpng 1.6 allocates a text chunk's
 * declared length before reading it, whatever png_set_chunk_malloc_max says
 * (a 789-byte file declaring a 1.9 GB iTXt).  The file is left at its start. */
static sdc_status png_prescan(png_ctx *c) {
    uint8_t h[8];
    sdc_status st = SDC_OK;
    if (fseek(c->f, 8, SEEK_SET) != 0) return SDC_OK; /* libpng reports it */
    while (fread(h, 1, 8, c->f) == 8) {
        const uint32_t len = get32(h, 1);
        if (memcmp(h + 4, "IDAT", 4) == 0) break;
        if (len > PNG_CHUNK_MAX) {
            st = sdc_fail(SDC_ERR_FORMAT, "%s: PNG chunk %.4s declares %u bytes (limit %u)",
                          c->path, (const char *)h + 4, len, (unsigned)PNG_CHUNK_MAX);
            break;
        }
        if (fseek(c->f, (long)len + 4, SEEK_CUR) != 0) break;
    }
    if (fseek(c->f, 0, SEEK_SET) != 0 && st == SDC_OK)
        st = sdc_fail(SDC_ERR_IO, "%s: cannot seek: %s", c->path, strerror(errno));
    return st;
}

static sdc_status png_decode(png_ctx *c) {
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, c, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return sdc_fail(SDC_ERR_NOMEM, "%s: cannot create a PNG reader", c->path);
    }
    c->status = SDC_ERR_FORMAT;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        if (c->status != SDC_ERR_FORMAT) return c->status;
        if (c->ended) return sdc_fail(SDC_ERR_FORMAT, "%s: truncated PNG data", c->path);
        return sdc_fail(SDC_ERR_FORMAT, "%s: bad PNG: %s", c->path, c->msg);
    }
    png_set_user_limits(png, SDC_IMAGE_MAX_SIDE, SDC_IMAGE_MAX_SIDE);
    png_set_chunk_cache_max(png, 256);
    png_set_chunk_malloc_max(png, PNG_CHUNK_MAX);
    png_set_read_fn(png, c, read_png_bytes);
    png_read_info(png, info);
    c->d.w = (int)png_get_image_width(png, info);
    c->d.h = (int)png_get_image_height(png, info);
    if (check_size(c->path, c->d.w, c->d.h, c->max_pixels) != SDC_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return SDC_ERR_FORMAT;
    }
    c->d.orientation = png_orientation(png, info);
    png_set_expand(png);      /* palette -> RGB, grey 1/2/4 -> 8 bits, tRNS -> alpha */
    png_set_strip_16(png);    /* the high byte, as PIL's ;16B unpackers */
    png_set_strip_alpha(png); /* convert("RGB"): dropped, not composited */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    c->d.nc = png_get_channels(png, info);
    size_t stride = (size_t)c->d.w * (size_t)c->d.nc;
    if ((c->d.nc != 1 && c->d.nc != 3) || png_get_rowbytes(png, info) != stride) {
        snprintf(c->msg, sizeof c->msg, "unexpected row layout after conversion (%d channels)",
                 c->d.nc);
        png_longjmp(png, 1);
    }
    c->d.px = malloc(stride * (size_t)c->d.h);
    c->rows = malloc(sizeof *c->rows * (size_t)c->d.h);
    if (!c->d.px || !c->rows) {
        c->status = sdc_fail(SDC_ERR_NOMEM, "%s: out of memory for %dx%d pixels", c->path, c->d.w,
                             c->d.h);
        png_longjmp(png, 1);
    }
    for (int y = 0; y < c->d.h; y++) c->rows[y] = c->d.px + (size_t)y * stride;
    png_read_image(png, c->rows);
    png_destroy_read_struct(&png, &info, NULL);
    return SDC_OK;
}

/* ---- JPEG -------------------------------------------------------------- */

typedef struct jpeg_ctx {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    struct jpeg_progress_mgr progress;
    jmp_buf jmp;
    const char *path;
    int64_t max_pixels;
    char msg[JMSG_LENGTH_MAX];
    sdc_status status;  /* of the error that jumped */
    int code;           /* its libjpeg message code, or -1 */
    uint8_t *exif;      /* the Exif segments joined; freed by the caller */
    uint8_t *row;       /* one CMYK row; freed by the caller */
    decoded d;          /* d.px freed by the caller */
} jpeg_ctx;

static sdc_status jpeg_status(int code) {
    switch (code) {
    case JERR_BAD_PRECISION:
    case JERR_SOF_UNSUPPORTED:
    case JERR_CONVERSION_NOTIMPL:
    case JERR_NOTIMPL:
    case JERR_IMAGE_TOO_BIG: return SDC_ERR_UNSUPPORTED;
    case JERR_OUT_OF_MEMORY: return SDC_ERR_NOMEM;
    case JERR_FILE_READ: return SDC_ERR_IO;
    default: return SDC_ERR_FORMAT;
    }
}

static void on_jpeg_error(j_common_ptr cinfo) {
    jpeg_ctx *c = cinfo->client_data;
    cinfo->err->format_message(cinfo, c->msg);
    c->code = cinfo->err->msg_code;
    c->status = jpeg_status(c->code);
    longjmp(c->jmp, 1);
}

/* Warnings (level -1) about damaged data are errors; level >= 0 is trace. */
static void on_jpeg_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;
    switch (cinfo->err->msg_code) {
    case JWRN_EXTRANEOUS_DATA: /* bytes skipped before a marker */
    case JWRN_JFIF_MAJOR:
    case JWRN_ADOBE_XFORM:
    case JWRN_BOGUS_ICC: return;
    default: on_jpeg_error(cinfo);
    }
}

static void on_jpeg_progress(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number <= MAX_JPEG_SCANS) return;
    jpeg_ctx *c = cinfo->client_data;
    snprintf(c->msg, sizeof c->msg, "more than %d scans", MAX_JPEG_SCANS);
    c->status = SDC_ERR_FORMAT;
    longjmp(c->jmp, 1);
}

/* Orientation from the saved APP1 segments, as PIL reads them: every "Exif"
 * segment's data after its 6-byte header joined in file order (PIL appends
 * each later segment's), else the last XMP segment's data after its name.
 * Runs inside jpeg_decode's setjmp scope: out of memory jumps. */
static int jpeg_orientation(jpeg_ctx *c) {
    static const char xmp_name[] = "http://ns.adobe.com/xap/1.0/";
    size_t total = 0;
    const struct jpeg_marker_struct *xmp = NULL;
    for (jpeg_saved_marker_ptr m = c->cinfo.marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1) continue;
        if (m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0)
            total += m->data_length - 6;
        else if (m->data_length >= sizeof xmp_name &&
                 memcmp(m->data, xmp_name, sizeof xmp_name) == 0)
            xmp = m;
    }
    int present = 0, o = 1;
    if (total > 0 && !(c->exif = malloc(total))) {
        c->status = SDC_ERR_NOMEM;
        longjmp(c->jmp, 1);
    }
    if (total > 0) {
        size_t at = 0;
        for (jpeg_saved_marker_ptr m = c->cinfo.marker_list; m; m = m->next)
            if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
                memcmp(m->data, "Exif\0\0", 6) == 0) {
                memcpy(c->exif + at, m->data + 6, m->data_length - 6);
                at += m->data_length - 6;
            }
        o = exif_orientation(c->exif, total, &present);
    }
    if (!present && xmp)
        o = xmp_orientation(xmp->data + sizeof xmp_name, xmp->data_length - sizeof xmp_name);
    return o;
}

/* PIL's CMYK JPEG: the samples read as inverted ("CMYK;I"), then cmyk2rgb:
 * nk = 255 - k, v = nk - round(c * nk / 255) (MULDIV255), clipped. */
static void cmyk_row_to_rgb(const uint8_t *in, uint8_t *out, int w) {
    for (int x = 0; x < w; x++, in += 4, out += 3) {
        int nk = in[3]; /* 255 - (255 - stored k) */
        for (int ch = 0; ch < 3; ch++) {
            int t = (255 - in[ch]) * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            out[ch] = (uint8_t)(v < 0 ? 0 : v);
        }
    }
}

static sdc_status jpeg_decode(FILE *f, jpeg_ctx *c) {
    c->cinfo.err = jpeg_std_error(&c->jerr);
    c->jerr.error_exit = on_jpeg_error;
    c->jerr.emit_message = on_jpeg_message;
    c->cinfo.client_data = c;
    if (setjmp(c->jmp)) {
        jpeg_destroy_decompress(&c->cinfo);
        if (c->status == SDC_ERR_NOMEM) return sdc_fail(c->status, "%s: out of memory", c->path);
        if (c->code == JWRN_JPEG_EOF)
            return sdc_fail(c->status, "%s: truncated JPEG data", c->path);
        if (c->status == SDC_ERR_UNSUPPORTED) return sdc_fail(c->status, "%s: %s", c->path, c->msg);
        return sdc_fail(c->status, "%s: bad JPEG: %s", c->path, c->msg);
    }
    jpeg_create_decompress(&c->cinfo); /* keeps err and client_data */
    jpeg_stdio_src(&c->cinfo, f);
    jpeg_save_markers(&c->cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&c->cinfo, TRUE);
    c->d.w = (int)c->cinfo.image_width;
    c->d.h = (int)c->cinfo.image_height;
    if (check_size(c->path, c->cinfo.image_width, c->cinfo.image_height, c->max_pixels) != SDC_OK) {
        jpeg_destroy_decompress(&c->cinfo);
        return SDC_ERR_FORMAT;
    }
    switch (c->cinfo.num_components) {
    case 1: c->cinfo.out_color_space = JCS_GRAYSCALE; break;
    case 3: c->cinfo.out_color_space = JCS_RGB; break;
    case 4: c->cinfo.out_color_space = JCS_CMYK; break;
    default:
        snprintf(c->msg, sizeof c->msg, "a JPEG of %d colour components; 1, 3 or 4 are read",
                 c->cinfo.num_components);
        c->status = SDC_ERR_UNSUPPORTED;
        longjmp(c->jmp, 1);
    }
    c->d.orientation = jpeg_orientation(c);
    c->cinfo.dct_method = JDCT_ISLOW; /* PIL's decoder: libjpeg's defaults */
    c->cinfo.do_fancy_upsampling = TRUE;
    c->progress.progress_monitor = on_jpeg_progress;
    c->cinfo.progress = &c->progress;
    jpeg_start_decompress(&c->cinfo);
    int comps = c->cinfo.output_components;
    c->d.nc = comps == 1 ? 1 : 3;
    if ((int)c->cinfo.output_width != c->d.w || (int)c->cinfo.output_height != c->d.h ||
        (comps != 1 && comps != 3 && comps != 4)) {
        snprintf(c->msg, sizeof c->msg, "unexpected output layout (%d components)", comps);
        c->status = SDC_ERR_FORMAT;
        longjmp(c->jmp, 1);
    }
    size_t stride = (size_t)c->d.w * (size_t)c->d.nc;
    c->d.px = malloc(stride * (size_t)c->d.h);
    if (comps == 4) c->row = malloc((size_t)c->d.w * 4);
    if (!c->d.px || (comps == 4 && !c->row)) {
        c->status = SDC_ERR_NOMEM;
        longjmp(c->jmp, 1);
    }
    while (c->cinfo.output_scanline < c->cinfo.output_height) {
        uint8_t *dst = c->d.px + (size_t)c->cinfo.output_scanline * stride;
        JSAMPROW row = comps == 4 ? c->row : dst;
        if (jpeg_read_scanlines(&c->cinfo, &row, 1) != 1) {
            snprintf(c->msg, sizeof c->msg, "no scanline decoded");
            c->status = SDC_ERR_FORMAT;
            longjmp(c->jmp, 1);
        }
        if (comps == 4) cmyk_row_to_rgb(c->row, dst, c->d.w);
    }
    jpeg_finish_decompress(&c->cinfo);
    jpeg_destroy_decompress(&c->cinfo);
    return SDC_OK;
}

/* ---- files ------------------------------------------------------------- */

/* Other image formats, by their first bytes (n of them in h): a name for
 * the message, or NULL. */
static const char *other_format(const uint8_t *h, size_t n) {
    if (n >= 6 && (memcmp(h, "GIF87a", 6) == 0 || memcmp(h, "GIF89a", 6) == 0)) return "a GIF";
    if (n >= 12 && memcmp(h, "RIFF", 4) == 0 && memcmp(h + 8, "WEBP", 4) == 0) return "a WebP";
    if (n >= 4 && (memcmp(h, "II*\0", 4) == 0 || memcmp(h, "MM\0*", 4) == 0)) return "a TIFF";
    if (n >= 18 && h[0] == 'B' && h[1] == 'M' && h[15] == 0 && h[16] == 0 && h[17] == 0 &&
        (h[14] == 12 || h[14] == 40 || h[14] == 52 || h[14] == 56 || h[14] == 108 || h[14] == 124))
        return "a BMP";
    if (n >= 12 && memcmp(h + 4, "ftyp", 4) == 0 &&
        (memcmp(h + 8, "heic", 4) == 0 || memcmp(h + 8, "heix", 4) == 0 ||
         memcmp(h + 8, "mif1", 4) == 0 || memcmp(h + 8, "avif", 4) == 0))
        return "an HEIF/AVIF";
    return NULL;
}

/* Opens path for reading: a regular file, never a FIFO or device (opened
 * without blocking, so that a FIFO with no writer does not hang). */
static sdc_status open_image(const char *path, FILE **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return sdc_fail(SDC_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    sdc_status st = SDC_OK;
    if (fstat(fd, &sb) != 0)
        st = sdc_fail(SDC_ERR_IO, "%s: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        st = sdc_fail(SDC_ERR_IO, "%s: is a folder, not an image file", path);
    else if (!S_ISREG(sb.st_mode))
        st = sdc_fail(SDC_ERR_IO, "%s: not a regular file", path);
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0 ||
             !(*out = fdopen(fd, "rb")))
        st = sdc_fail(SDC_ERR_IO, "%s: %s", path, strerror(errno));
    if (st != SDC_OK) close(fd);
    return st;
}

/* The PNG's IHDR size, from the first 24 bytes (before libpng, whose own
 * limit would otherwise answer first with a vaguer message). */
static sdc_status png_header_size(const char *path, const uint8_t *h, size_t n,
                                  int64_t max_pixels) {
    if (n < 24 || memcmp(h + 12, "IHDR", 4) != 0) return SDC_OK; /* libpng says what is wrong */
    return check_size(path, get32(h + 16, 1), get32(h + 20, 1), max_pixels);
}

sdc_status sdc_image_load(const char *path, int channels, int64_t max_pixels, sdc_image *out) {
    if (!out) return sdc_fail(SDC_ERR_INVALID_ARG, "image: no output image");
    memset(out, 0, sizeof *out);
    if (!path || !*path) return sdc_fail(SDC_ERR_INVALID_ARG, "image: empty path");
    if (channels != 1 && channels != 3)
        return sdc_fail(SDC_ERR_INVALID_ARG, "%s: %d channels asked; 1 (L) or 3 (RGB)", path,
                        channels);
    if (max_pixels < 1)
        return sdc_fail(SDC_ERR_INVALID_ARG, "%s: pixel limit %lld", path, (long long)max_pixels);

    FILE *f;
    sdc_status st = open_image(path, &f);
    if (st != SDC_OK) return st;
    uint8_t head[32];
    size_t n = fread(head, 1, sizeof head, f);
    const char *other = other_format(head, n);
    if (ferror(f)) {
        st = sdc_fail(SDC_ERR_IO, "%s: read error", path);
    } else if (n == 0) {
        st = sdc_fail(SDC_ERR_FORMAT, "%s: empty file", path);
    } else if (other) {
        st = sdc_fail(SDC_ERR_UNSUPPORTED, "%s: %s image; sdc reads PNG and JPEG", path, other);
    } else if (fseek(f, 0, SEEK_SET) != 0) {
        st = sdc_fail(SDC_ERR_IO, "%s: %s", path, strerror(errno));
    } else if (n >= 8 && memcmp(head, "\x89PNG\r\n\x1a\n", 8) == 0) {
        st = png_header_size(path, head, n, max_pixels);
        if (st == SDC_OK) {
            png_ctx c = {.f = f, .path = path, .max_pixels = max_pixels};
            st = png_prescan(&c);
            if (st == SDC_OK) st = png_decode(&c);
            if (st == SDC_OK) st = finish(path, &c.d, channels, out);
            free(c.rows);
            free(c.d.px);
        }
    } else if (n >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF) {
        jpeg_ctx *c = calloc(1, sizeof *c);
        if (!c) {
            st = sdc_fail(SDC_ERR_NOMEM, "%s: out of memory", path);
        } else {
            c->path = path;
            c->max_pixels = max_pixels;
            c->code = -1;
            st = jpeg_decode(f, c);
            if (st == SDC_OK) st = finish(path, &c->d, channels, out);
            free(c->exif);
            free(c->row);
            free(c->d.px);
            free(c);
        }
    } else {
        st = sdc_fail(SDC_ERR_FORMAT, "%s: not a PNG or JPEG image", path);
    }
    fclose(f);
    return st;
}

sdc_status sdc_image_convert(const sdc_image *in, int channels, sdc_image *out) {
    if (!out) return sdc_fail(SDC_ERR_INVALID_ARG, "convert: no output image");
    memset(out, 0, sizeof *out);
    if (!in || !in->data || (in->channels != 1 && in->channels != 3) || in->width < 1 ||
        in->height < 1 || in->width > SDC_IMAGE_MAX_SIDE || in->height > SDC_IMAGE_MAX_SIDE)
        return sdc_fail(SDC_ERR_INVALID_ARG, "convert: the input is not an RGB or L image");
    if (channels != 1 && channels != 3)
        return sdc_fail(SDC_ERR_INVALID_ARG, "convert: %d channels asked; 1 (L) or 3 (RGB)",
                        channels);
    size_t n = (size_t)in->width * (size_t)in->height;
    uint8_t *dst = malloc(n * (size_t)channels);
    if (!dst) return sdc_fail(SDC_ERR_NOMEM, "convert: out of memory");
    for (int y = 0; y < in->height; y++) {
        size_t row = (size_t)y * (size_t)in->width;
        convert_run(in->data, (ptrdiff_t)row, 1, in->channels, dst + row * (size_t)channels,
                    channels, in->width);
    }
    *out = (sdc_image){in->width, in->height, channels, dst};
    return SDC_OK;
}
