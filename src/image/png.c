#include "image/png.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "text/unicode.h"

/* ---- text chunk ------------------------------------------------------- */

/* The text as chunk bytes: Latin-1 (*latin1 = 1) when every code point is
 * <= U+00FF, else valid UTF-8 (ill-formed input replaced by U+FFFD, as the
 * tokenizer reads it).  malloc'ed; NULL when out of memory. */
static char *chunk_text(const char *text, int *latin1) {
    sdc_cps cps = {0};
    if (sdc_utf8_decode(text, strlen(text), &cps) != SDC_OK) return NULL;
    int all_latin1 = 1;
    for (size_t i = 0; i < cps.len; i++)
        if (cps.cp[i] > 0xFF) all_latin1 = 0;
    size_t cap;
    char *out = NULL;
    if (sdc_mul_size(cps.len, 4, &cap) && sdc_add_size(cap, 1, &cap)) out = malloc(cap);
    if (out) {
        size_t o = 0;
        for (size_t i = 0; i < cps.len; i++) {
            if (all_latin1)
                out[o++] = (char)cps.cp[i];
            else
                o += sdc_utf8_encode(cps.cp[i], out + o);
        }
        out[o] = 0;
        *latin1 = all_latin1;
    }
    sdc_cps_free(&cps);
    return out;
}

/* ---- libpng ------------------------------------------------------------ */

typedef struct png_err {
    char msg[256];
} png_err;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_err *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

/* Encodes img with the prepared text chunks into f.  All allocations are
 * made by the caller, so a longjmp leaks nothing; err belongs to the caller
 * too, so that it is not a local modified between setjmp and longjmp. */
static sdc_status encode(FILE *f, const sdc_image *img, png_text *chunks, int n_chunks,
                         const char *path, png_err *err) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, err, on_png_error,
                                              on_png_warning);
    if (!png) return sdc_fail(SDC_ERR_NOMEM, "%s: cannot create a PNG writer", path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return sdc_fail(SDC_ERR_NOMEM, "%s: cannot create a PNG writer", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return sdc_fail(SDC_ERR_IO, "%s: PNG encoding failed: %s", path, err->msg);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8,
                 PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (n_chunks > 0) png_set_text(png, info, chunks, n_chunks);
    png_write_info(png, info);
    size_t stride = (size_t)img->width * 3;
    for (int y = 0; y < img->height; y++) png_write_row(png, img->data + (size_t)y * stride);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return SDC_OK;
}

/* ---- files ------------------------------------------------------------- */

/* Splits path into its folder ("." when none) and base name; malloc'ed. */
static sdc_status split_path(const char *path, char **dir, const char **base) {
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    if (**base == 0) return sdc_fail(SDC_ERR_IO, "%s: names a folder, not a file", path);
    size_t n = slash ? (size_t)(slash - path) : 1;
    if (slash && n == 0) n = 1; /* "/x": the folder is "/" */
    *dir = malloc(n + 1);
    if (!*dir) return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    memcpy(*dir, slash ? path : ".", n);
    (*dir)[n] = 0;
    return SDC_OK;
}

#define TMP_TEMPLATE "/.sdc-tmp-XXXXXX"

/* Creates and removes a temporary file in dir; 0 (errno set) if it cannot. */
static int can_create_in(const char *dir) {
    char *probe = malloc(strlen(dir) + sizeof TMP_TEMPLATE);
    if (!probe) return 0;
    strcpy(probe, dir);
    strcat(probe, TMP_TEMPLATE);
    int fd = mkstemp(probe);
    if (fd >= 0) {
        close(fd);
        unlink(probe);
    }
    free(probe);
    return fd >= 0;
}

/* What the mode is, for a message ("a FIFO"). */
static const char *kind_name(mode_t m) {
    if (S_ISDIR(m)) return "a folder";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

/* An existing path (lsb: its lstat) that sdc_png_write may replace: a
 * regular file, a symbolic link to one, or a dangling link (rename() puts the
 * new file in the link's place and never writes through it, so nothing the
 * link names is touched; a dangling one names nothing).  Anything else is
 * refused, overwrite or not: renaming over a device node, FIFO or socket
 * would destroy it (as root: /dev/null, /dev/full), and a link to one or to
 * a folder names something that is not a file to be replaced.  SDC_ERR_IO
 * with a message. */
static sdc_status check_replaceable(const char *path, const struct stat *lsb) {
    struct stat sb = *lsb;
    const char *via = "";
    if (S_ISLNK(lsb->st_mode)) {
        if (stat(path, &sb) != 0) {
            if (errno == ENOENT || errno == ENOTDIR) return SDC_OK; /* dangling */
            return sdc_fail(SDC_ERR_IO, "%s: a symbolic link that cannot be followed: %s", path,
                            strerror(errno));
        }
        via = "a symbolic link to ";
    }
    if (S_ISREG(sb.st_mode)) return SDC_OK;
    if (S_ISDIR(sb.st_mode)) return sdc_fail(SDC_ERR_IO, "%s: is %sa folder", path, via);
    return sdc_fail(SDC_ERR_IO,
                    "%s: is %s%s, not a regular file: only regular files are replaced, even "
                    "when overwriting",
                    path, via, kind_name(sb.st_mode));
}

sdc_status sdc_png_check_dest(const char *path, int overwrite) {
    if (!path || !*path) return sdc_fail(SDC_ERR_IO, "empty output path");
    char *dir;
    const char *base;
    sdc_status st = split_path(path, &dir, &base);
    if (st != SDC_OK) return st;
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        st = sdc_fail(SDC_ERR_IO, "%s: folder %s: %s", path, dir, strerror(errno));
    } else if (!S_ISDIR(sb.st_mode)) {
        st = sdc_fail(SDC_ERR_IO, "%s: %s is not a folder", path, dir);
    } else if (access(dir, W_OK | X_OK) != 0) {
        st = sdc_fail(SDC_ERR_IO, "%s: folder %s is not writable: %s", path, dir,
                      strerror(errno));
    } else if (!can_create_in(dir)) {
        /* access() says yes to root everywhere; only a real file tells (procfs,
         * read-only mounts) */
        st = sdc_fail(SDC_ERR_IO, "%s: folder %s is not writable: %s", path, dir,
                      strerror(errno));
    } else if (lstat(path, &sb) == 0) {
        st = check_replaceable(path, &sb);
        if (st == SDC_OK && !overwrite)
            st = sdc_fail(SDC_ERR_IO, "%s: file exists; not overwriting it", path);
    } else if (errno != ENOENT) {
        st = sdc_fail(SDC_ERR_IO, "%s: %s", path, strerror(errno));
    }
    free(dir);
    return st;
}

/* The process umask without changing it (umask() would, for a moment, for
 * every thread): the "Umask:" line of /proc/self/status, else 022. */
static mode_t current_umask(void) {
    mode_t m = 022;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return m;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned v;
        if (sscanf(line, "Umask: %o", &v) == 1) {
            m = (mode_t)(v & 0777);
            break;
        }
    }
    fclose(f);
    return m;
}

static void sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: some file systems refuse */
        close(fd);
    }
}

/* The error for a path that exists when it must not: why it may not be
 * replaced at all, else that it exists. */
static sdc_status exists_error(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) == 0 && check_replaceable(path, &sb) != SDC_OK) return SDC_ERR_IO;
    return sdc_fail(SDC_ERR_IO, "%s: file exists; not overwriting it", path);
}

/* Moves the finished temporary file tmp to path (see png.h). */
static sdc_status publish(const char *tmp, const char *path, int overwrite) {
    if (overwrite) {
        /* checked again here, not only by sdc_png_check_dest: the path may
         * have changed during the generation, and library callers may not
         * check first.  A window remains between this lstat and rename(). */
        struct stat sb;
        if (lstat(path, &sb) == 0) {
            sdc_status st = check_replaceable(path, &sb);
            if (st != SDC_OK) return st;
        } else if (errno != ENOENT) {
            return sdc_fail(SDC_ERR_IO, "%s: %s", path, strerror(errno));
        }
        if (rename(tmp, path) != 0)
            return sdc_fail(SDC_ERR_IO, "%s: cannot rename the temporary file into place: %s",
                            path, strerror(errno));
        return SDC_OK;
    }
    if (link(tmp, path) == 0) {
        unlink(tmp);
        return SDC_OK;
    }
    if (errno == EEXIST) return exists_error(path);
    if (errno != EPERM && errno != ENOTSUP && errno != EOPNOTSUPP && errno != ENOSYS &&
        errno != EMLINK)
        return sdc_fail(SDC_ERR_IO, "%s: %s", path, strerror(errno));
    /* no hard links here: check, then rename */
    struct stat sb;
    if (lstat(path, &sb) == 0) return exists_error(path);
    if (rename(tmp, path) != 0)
        return sdc_fail(SDC_ERR_IO, "%s: cannot rename the temporary file into place: %s", path,
                        strerror(errno));
    return SDC_OK;
}

sdc_status sdc_png_write(const char *path, const sdc_image *img, const sdc_png_text *texts,
                         int n_texts, int overwrite) {
    if (!path || !*path) return sdc_fail(SDC_ERR_INVALID_ARG, "empty output path");
    if (!img || !img->data || img->channels != 3 || img->width <= 0 || img->height <= 0 ||
        img->width > 0x7FFFFFFF / 3)
        return sdc_fail(SDC_ERR_INVALID_ARG, "%s: not an RGB image", path);
    if (n_texts < 0 || (n_texts > 0 && !texts))
        return sdc_fail(SDC_ERR_INVALID_ARG, "%s: bad text chunk list", path);
    for (int i = 0; i < n_texts; i++) {
        size_t kl = texts[i].key ? strlen(texts[i].key) : 0;
        if (kl < 1 || kl > 79 || !texts[i].text)
            return sdc_fail(SDC_ERR_INVALID_ARG, "%s: bad text chunk key", path);
    }

    sdc_status st = SDC_OK;
    char *dir = NULL, *tmp = NULL;
    png_text *chunks = NULL;
    FILE *f = NULL;
    int fd = -1, made_tmp = 0;
    const char *base;

    if (n_texts > 0) {
        chunks = calloc((size_t)n_texts, sizeof *chunks);
        if (!chunks) return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n_texts; i++) {
        int latin1;
        char *t = chunk_text(texts[i].text, &latin1);
        if (!t) {
            st = sdc_fail(SDC_ERR_NOMEM, "out of memory");
            goto done;
        }
        chunks[i].key = (png_charp)texts[i].key;
        chunks[i].text = t;
        if (latin1) {
            chunks[i].compression = PNG_TEXT_COMPRESSION_NONE;
            chunks[i].text_length = strlen(t);
        } else {
            chunks[i].compression = PNG_ITXT_COMPRESSION_NONE;
            chunks[i].itxt_length = strlen(t);
            chunks[i].lang = (png_charp) "";
            chunks[i].lang_key = (png_charp) "";
        }
    }

    st = split_path(path, &dir, &base);
    if (st != SDC_OK) goto done;
    tmp = malloc(strlen(dir) + sizeof TMP_TEMPLATE);
    if (!tmp) {
        st = sdc_fail(SDC_ERR_NOMEM, "out of memory");
        goto done;
    }
    strcpy(tmp, dir);
    strcat(tmp, TMP_TEMPLATE);
    fd = mkstemp(tmp);
    if (fd < 0) {
        st = sdc_fail(SDC_ERR_IO, "%s: cannot create a temporary file in %s: %s", path, dir,
                      strerror(errno));
        goto done;
    }
    made_tmp = 1;
    (void)fchmod(fd, 0666 & ~current_umask());
    f = fdopen(fd, "wb");
    if (!f) {
        st = sdc_fail(SDC_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    fd = -1; /* owned by f now */
    png_err err = {{0}};
    st = encode(f, img, chunks, n_texts, path, &err);
    if (st != SDC_OK) goto done;
    if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0) {
        st = sdc_fail(SDC_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        goto done;
    }
    int rc = fclose(f);
    f = NULL;
    if (rc != 0) {
        st = sdc_fail(SDC_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        goto done;
    }
    st = publish(tmp, path, overwrite);
    if (st == SDC_OK) {
        made_tmp = 0;
        sync_dir(dir);
    }

done:
    if (f) fclose(f);
    if (fd >= 0) close(fd);
    if (made_tmp) unlink(tmp);
    for (int i = 0; chunks && i < n_texts; i++) free(chunks[i].text);
    free(chunks);
    free(tmp);
    free(dir);
    return st;
}

/* ---- A1111 infotext ---------------------------------------------------- */

const char *sdc_sampler_display_name(sdc_sampler s) {
    switch (s) {
    case SDC_SAMPLER_EULER: return "Euler";
    case SDC_SAMPLER_EULER_A: return "Euler a";
    case SDC_SAMPLER_HEUN: return "Heun";
    case SDC_SAMPLER_DPMPP_2M: return "DPM++ 2M";
    case SDC_SAMPLER_DDIM: return "DDIM";
    case SDC_SAMPLER_PNDM: return "PLMS";
    case SDC_SAMPLER_LMS: return "LMS";
    case SDC_SAMPLER_LCM: return "LCM";
    case SDC_SAMPLER_TCD: return "TCD";
    case SDC_SAMPLER_COUNT: break;
    }
    return "Unknown";
}

/* A growable string; on allocation failure `failed` is set and appends stop. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
    int failed;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->failed = 1;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->s, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

/* A1111's quote(): values holding ',', ':' or '\n' become JSON strings
 * (json.dumps with ensure_ascii=False). */
static void sb_put_value(sbuf *b, const char *v) {
    if (!strpbrk(v, ",:\n")) {
        sb_puts(b, v);
        return;
    }
    sb_putn(b, "\"", 1);
    for (const char *p = v; *p; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[8];
        switch (c) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        case '\b': sb_puts(b, "\\b"); break;
        case '\f': sb_puts(b, "\\f"); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                sb_puts(b, esc);
            } else {
                sb_putn(b, p, 1);
            }
        }
    }
    sb_putn(b, "\"", 1);
}

/* Shortest decimal that reads back as the same float, Python-style ("7.0"). */
static void format_float(float v, char *out, size_t n) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(out, n, "%.*g", prec, (double)v);
        if (strtof(out, NULL) == v) break;
    }
    if (isfinite(v) && !strpbrk(out, ".e")) {
        size_t l = strlen(out);
        if (l + 3 <= n) memcpy(out + l, ".0", 3);
    }
}

char *sdc_infotext(const sdc_gen_params *p, const char *model_name) {
    sbuf b = {0};
    char num[64];
    sb_puts(&b, p->prompt ? p->prompt : "");
    /* LoRAs given apart from the prompt: the tags A1111 would need */
    for (int i = 0; i < p->n_loras && p->loras; i++) {
        const char *path = p->loras[i].path ? p->loras[i].path : "";
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        size_t len = strlen(base);
        if (len > 12 && strcmp(base + len - 12, ".safetensors") == 0) len -= 12;
        sb_puts(&b, " <lora:");
        sb_putn(&b, base, len);
        format_float(p->loras[i].weight, num, sizeof num);
        sb_puts(&b, ":");
        sb_puts(&b, num);
        sb_puts(&b, ">");
    }
    if (p->negative_prompt && *p->negative_prompt) {
        sb_puts(&b, "\nNegative prompt: ");
        sb_puts(&b, p->negative_prompt);
    }
    snprintf(num, sizeof num, "\nSteps: %d, Sampler: ", p->steps);
    sb_puts(&b, num);
    sb_puts(&b, sdc_sampler_display_name(p->sampler));
    sb_puts(&b, ", Schedule type: ");
    sb_puts(&b, p->schedule == SDC_SCHEDULE_KARRAS ? "Karras" : "Automatic");
    sb_puts(&b, ", CFG scale: ");
    format_float(p->cfg_scale, num, sizeof num);
    sb_puts(&b, num);
    snprintf(num, sizeof num, ", Seed: %" PRIu64 ", Size: %dx%d", p->seed, p->width, p->height);
    sb_puts(&b, num);
    if (model_name && *model_name) {
        sb_puts(&b, ", Model: ");
        sb_put_value(&b, model_name);
    }
    if (p->init_image) {
        sb_puts(&b, ", Denoising strength: ");
        format_float((float)p->strength, num, sizeof num);
        sb_puts(&b, num);
    }
    if (p->clip_skip > 1) {
        snprintf(num, sizeof num, ", Clip skip: %d", p->clip_skip);
        sb_puts(&b, num);
    }
    sb_puts(&b, ", Version: sdc " SDC_VERSION);
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    /* A1111 strips the whole text (an empty prompt leaves no blank line) */
    size_t lead = strspn(b.s, " \t\n\r\v\f");
    memmove(b.s, b.s + lead, b.len - lead + 1);
    return b.s;
}
