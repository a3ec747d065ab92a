/* What the libFuzzer harnesses share (header-only: each harness is one .c).
 *
 * Inputs made of several files (a model folder, vocab.json + merges.txt)
 * are one fuzz input cut at FZ_SEP into parts, in a fixed order per
 * harness; the dictionaries hold FZ_SEP, so mutations add and drop parts.
 *
 * Files go to this process's scratch folder only: mkdtemp'ed on first use
 * under $TMPDIR (else /tmp), emptied between inputs by the harnesses that
 * need it, removed with its contents at exit.  A crash leaves it behind;
 * fuzz/run.sh points TMPDIR at a folder of its own and removes that.
 *
 * Include this first: it asks for _GNU_SOURCE (memfd_create). */
#ifndef SDC_FUZZ_UTIL_H
#define SDC_FUZZ_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FZ_SEP "\n##part##\n"
#define FZ_SEP_LEN (sizeof FZ_SEP - 1)

/* A property a harness checks does not hold: report and abort, which
 * libFuzzer records as a crash with the input that did it. */
#define FZ_ASSERT(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property failed: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* With SDC_FUZZ_VERBOSE=1 in the environment, prints what the library said
 * about an input (for looking at a corpus: fuzz_x -runs=0 DIR). */
static inline void fz_report(const char *what, int status, const char *message) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("SDC_FUZZ_VERBOSE") && atoi(getenv("SDC_FUZZ_VERBOSE")) > 0;
    if (verbose) fprintf(stderr, "%s: status %d: %s\n", what, status, status ? message : "ok");
}

/* 8 + header length + the largest data_offsets end (at most max_data) of a
 * safetensors file's header: the size its tensors need, to pad a short
 * input to; 0 when the header cannot be read. */
static inline size_t fz_st_needed_size(const uint8_t *p, size_t n, uint64_t max_data) {
    if (n < 8) return 0;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > n - 8) return 0;
    cJSON *h = cJSON_ParseWithLength((const char *)p + 8, (size_t)hlen);
    if (!h) return 0;
    double end = 0;
    for (const cJSON *e = h->child; e; e = e->next) {
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        const cJSON *v = cJSON_GetArrayItem(off, 1);
        if (cJSON_IsNumber(v) && v->valuedouble > end && v->valuedouble <= (double)max_data)
            end = v->valuedouble;
    }
    cJSON_Delete(h);
    return 8 + (size_t)hlen + (size_t)end;
}

typedef struct fz_part {
    const uint8_t *p; /* into the fuzz input */
    size_t n;
} fz_part;

/* Cuts data[0, size) at FZ_SEP into at most max parts (the last one keeps
 * any further separators); returns the number of parts (>= 1). */
static inline size_t fz_split(const uint8_t *data, size_t size, fz_part *parts, size_t max) {
    size_t n = 0, start = 0;
    for (size_t i = 0; n + 1 < max && i + FZ_SEP_LEN <= size; i++) {
        if (data[i] != '\n' || memcmp(data + i, FZ_SEP, FZ_SEP_LEN) != 0) continue;
        parts[n++] = (fz_part){data + start, i - start};
        start = i + FZ_SEP_LEN;
        i = start - 1;
    }
    parts[n++] = (fz_part){data + start, size - start};
    return n;
}

/* A NUL-terminated malloc'ed copy of a part (NUL bytes inside stay). */
static inline char *fz_cstr(fz_part part) {
    char *s = malloc(part.n + 1);
    if (!s) abort();
    if (part.n) memcpy(s, part.p, part.n);
    s[part.n] = 0;
    return s;
}

static inline int fz_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    if (ftw->level > 0) remove(path);
    return 0;
}

static char fz_dir_path[4096];

/* Removes everything inside the scratch folder (not the folder). */
static inline void fz_clear(void) {
    if (fz_dir_path[0]) nftw(fz_dir_path, fz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void fz_dir_remove(void) {
    if (!fz_dir_path[0]) return;
    fz_clear();
    rmdir(fz_dir_path);
    fz_dir_path[0] = 0;
}

/* The scratch folder (made on first call). */
static inline const char *fz_dir(void) {
    if (fz_dir_path[0]) return fz_dir_path;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    int n = snprintf(fz_dir_path, sizeof fz_dir_path, "%s/sdc-fuzz-XXXXXX", base);
    if (n < 0 || (size_t)n >= sizeof fz_dir_path || !mkdtemp(fz_dir_path)) {
        fprintf(stderr, "fuzz: cannot make a scratch folder under %s\n", base);
        exit(2);
    }
    atexit(fz_dir_remove);
    return fz_dir_path;
}

/* fz_dir()/rel into out[4096]. */
static inline const char *fz_path(char out[4096], const char *rel) {
    snprintf(out, 4096, "%s/%s", fz_dir(), rel);
    return out;
}

/* Writes bytes to fz_dir()/rel (its folder must exist); then, when
 * extend_to > n, makes the file extend_to bytes long with a hole (zeros
 * that take no memory).  Exits on failure: that is the machine, not the
 * input. */
static inline void fz_write(const char *rel, const void *bytes, size_t n, size_t extend_to) {
    char path[4096];
    fz_path(path, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const char *p = bytes;
    size_t done = 0;
    while (fd >= 0 && done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    if (fd < 0 || done < n || (extend_to > n && ftruncate(fd, (off_t)extend_to) != 0)) {
        fprintf(stderr, "fuzz: cannot write %s\n", path);
        exit(2);
    }
    close(fd);
}

static inline void fz_mkdir(const char *rel) {
    char path[4096];
    if (mkdir(fz_path(path, rel), 0700) != 0) {
        fprintf(stderr, "fuzz: cannot make %s\n", path);
        exit(2);
    }
}

/* An in-memory file holding bytes, named by path[64] ("/proc/self/fd/N"),
 * so that code that opens paths reads it; close the returned descriptor.
 * Where memfd_create is missing, a file in the scratch folder. */
static inline int fz_memfile(const void *bytes, size_t n, char path[64]) {
    int fd = memfd_create("sdc-fuzz", MFD_CLOEXEC);
    if (fd < 0) {
        fz_write("memfile", bytes, n, 0);
        char p[4096];
        fz_path(p, "memfile");
        fd = open(p, O_RDONLY);
        snprintf(path, 64, "/proc/self/fd/%d", fd);
        return fd;
    }
    const char *b = bytes;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, b + done, n - done);
        if (w <= 0) {
            fprintf(stderr, "fuzz: cannot write a memfd\n");
            exit(2);
        }
        done += (size_t)w;
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

#endif
