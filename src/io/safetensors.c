#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/json_util.h"
#include "io/name_index.h"

struct sdc_st_file {
    char *path; /* owned copy */
    void *map;  /* the whole file, read-only */
    size_t map_size;
    cJSON *header;         /* owns the strings the weights' names point into */
    const cJSON *metadata; /* "__metadata__" object inside header, or NULL */
    sdc_weight *weights;   /* [count], header order */
    void **copies;         /* [count]: heap copies of misaligned tensors, or NULL */
    size_t count;
    sdc_name_index index; /* name -> position in weights */
};

/* Names in messages are clipped so that the file and problem still fit. */
#define NAME_FMT "'%.200s'"

static int parse_dtype(const char *s, sdc_dtype *out) {
    static const struct {
        const char *name;
        sdc_dtype dt;
    } table[] = {
        {"F64", SDC_DT_F64}, {"F32", SDC_DT_F32},   {"F16", SDC_DT_F16}, {"BF16", SDC_DT_BF16},
        {"I64", SDC_DT_I64}, {"I32", SDC_DT_I32},   {"I16", SDC_DT_I16}, {"I8", SDC_DT_I8},
        {"U8", SDC_DT_U8},   {"BOOL", SDC_DT_BOOL},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(s, table[i].name) == 0) {
            *out = table[i].dt;
            return 1;
        }
    return 0;
}

/* "[3, 3]" into buf */
static void shape_str(const sdc_weight *w, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < w->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ", %lld" : "%lld", (long long)w->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Fills w from one header entry; checks everything but overlaps. */
static sdc_status parse_entry(const char *path, const cJSON *e, size_t data_size, sdc_weight *w,
                              uint64_t *begin_out) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return sdc_fail(SDC_ERR_FORMAT, "%s: tensor " NAME_FMT ": entry is not a JSON object", path,
                        name);
    memset(w, 0, sizeof *w);
    w->name = name;

    const cJSON *jdt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(jdt) || !jdt->valuestring)
        return sdc_fail(SDC_ERR_FORMAT, "%s: tensor " NAME_FMT ": missing or non-string \"dtype\"",
                        path, name);
    if (!parse_dtype(jdt->valuestring, &w->dtype))
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: tensor " NAME_FMT ": unknown dtype \"%.32s\" (known: F64 F32 F16 BF16 "
                        "I64 I32 I16 I8 U8 BOOL)",
                        path, name, jdt->valuestring);
    uint64_t esize = sdc_dtype_size(w->dtype);

    const cJSON *jshape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(jshape))
        return sdc_fail(SDC_ERR_FORMAT, "%s: tensor " NAME_FMT ": missing or non-array \"shape\"",
                        path, name);
    int ndim = cJSON_GetArraySize(jshape);
    if (ndim > SDC_MAX_DIMS)
        return sdc_fail(SDC_ERR_FORMAT, "%s: tensor " NAME_FMT ": shape has %d dims (at most %d)",
                        path, name, ndim, SDC_MAX_DIMS);
    /* numel * esize must fit int64 and size_t; checked one factor at a time */
    uint64_t limit = (uint64_t)INT64_MAX < (uint64_t)SIZE_MAX ? (uint64_t)INT64_MAX : SIZE_MAX;
    uint64_t nbytes = esize;
    int d = 0, overflow = 0;
    for (const cJSON *it = jshape->child; it; it = it->next, d++) {
        uint64_t v;
        if (!sdc_json_uint(it, &v))
            return sdc_fail(SDC_ERR_FORMAT,
                            "%s: tensor " NAME_FMT ": shape dim %d is not a non-negative integer",
                            path, name, d);
        w->shape[d] = (int64_t)v;
        if (v != 0 && nbytes > limit / v)
            overflow = 1;
        else
            nbytes *= v;
    }
    w->ndim = ndim;
    /* A zero dim makes the product zero whatever the other dims are. */
    for (d = 0; d < ndim; d++)
        if (w->shape[d] == 0) overflow = 0, nbytes = 0;
    if (overflow) {
        char sh[256];
        shape_str(w, sh, sizeof sh);
        return sdc_fail(SDC_ERR_FORMAT, "%s: tensor " NAME_FMT ": shape %s of %s is too large",
                        path, name, sh, sdc_dtype_name(w->dtype));
    }
    w->numel = (int64_t)(nbytes / esize);
    w->nbytes = (size_t)nbytes;

    const cJSON *joff = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(joff) || cJSON_GetArraySize(joff) != 2 ||
        !sdc_json_uint(joff->child, &begin) || !sdc_json_uint(joff->child->next, &end))
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: tensor " NAME_FMT
                        ": \"data_offsets\" must be [begin, end] with non-negative integers",
                        path, name);
    if (begin > end || end > data_size)
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: tensor " NAME_FMT
                        ": data_offsets [%llu, %llu] lie outside the data (%zu bytes)",
                        path, name, (unsigned long long)begin, (unsigned long long)end, data_size);
    if (end - begin != nbytes) {
        char sh[256];
        shape_str(w, sh, sizeof sh);
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: tensor " NAME_FMT
                        ": data_offsets [%llu, %llu] do not match shape %s of %s (%llu bytes)",
                        path, name, (unsigned long long)begin, (unsigned long long)end, sh,
                        sdc_dtype_name(w->dtype), (unsigned long long)nbytes);
    }
    *begin_out = begin;
    return SDC_OK;
}

typedef struct {
    uint64_t begin, end;
    size_t i;
} range;

static int cmp_range(const void *a, const void *b) {
    const range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static sdc_status check_metadata(const char *path, const cJSON *m) {
    if (!cJSON_IsObject(m))
        return sdc_fail(SDC_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", path);
    for (const cJSON *it = m->child; it; it = it->next)
        if (!cJSON_IsString(it))
            return sdc_fail(SDC_ERR_FORMAT,
                            "%s: \"__metadata__\" entry " NAME_FMT " is not a string", path,
                            it->string);
    return SDC_OK;
}

/* Parses and validates the header of f (map, map_size set). */
static sdc_status parse_header(sdc_st_file *f) {
    const char *path = f->path;
    const unsigned char *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > SDC_ST_MAX_HEADER)
        return sdc_fail(SDC_ERR_FORMAT, "%s: header length %llu exceeds the limit of %zu bytes",
                        path, (unsigned long long)hlen, SDC_ST_MAX_HEADER);
    if (hlen > f->map_size - 8)
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: header length %llu exceeds the file size (%zu bytes); truncated file?",
                        path, (unsigned long long)hlen, f->map_size);
    if (hlen < 2)
        return sdc_fail(SDC_ERR_FORMAT, "%s: header of %llu bytes is too short", path,
                        (unsigned long long)hlen);

    char what[300];
    snprintf(what, sizeof what, "%s: header", path);
    sdc_status st = sdc_json_parse((const char *)p + 8, (size_t)hlen, what, &f->header);
    if (st != SDC_OK) return st;
    if (!cJSON_IsObject(f->header))
        return sdc_fail(SDC_ERR_FORMAT, "%s: header is not a JSON object", path);

    const unsigned char *data = p + 8 + hlen;
    size_t data_size = f->map_size - 8 - (size_t)hlen;

    size_t n = 0;
    for (const cJSON *e = f->header->child; e; e = e->next)
        if (!e->string || strcmp(e->string, "__metadata__") != 0) n++;
    f->weights = calloc(n ? n : 1, sizeof *f->weights);
    f->copies = calloc(n ? n : 1, sizeof *f->copies);
    range *ranges = calloc(n ? n : 1, sizeof *ranges);
    if (!f->weights || !f->copies || !ranges || sdc_name_index_init(&f->index, n) != SDC_OK) {
        free(ranges);
        return sdc_fail(SDC_ERR_NOMEM, "%s: out of memory for %zu tensors", path, n);
    }

    size_t nr = 0;
    int seen_meta = 0;
    for (const cJSON *e = f->header->child; e; e = e->next) {
        if (!e->string) {
            st = sdc_fail(SDC_ERR_FORMAT, "%s: header entry without a name", path);
            break;
        }
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta++) {
                st = sdc_fail(SDC_ERR_FORMAT, "%s: duplicate \"__metadata__\"", path);
                break;
            }
            if ((st = check_metadata(path, e)) != SDC_OK) break;
            f->metadata = e;
            continue;
        }
        sdc_weight *w = &f->weights[f->count];
        uint64_t begin = 0;
        if ((st = parse_entry(path, e, data_size, w, &begin)) != SDC_OK) break;
        if (!sdc_name_index_put(&f->index, w->name, f->count)) {
            st = sdc_fail(SDC_ERR_FORMAT, "%s: tensor " NAME_FMT " appears twice", path, w->name);
            break;
        }
        w->data = data + begin;
        if (w->nbytes) ranges[nr++] = (range){begin, begin + w->nbytes, f->count};
        f->count++;
    }
    if (st == SDC_OK) {
        qsort(ranges, nr, sizeof *ranges, cmp_range);
        for (size_t i = 1; i < nr; i++)
            if (ranges[i].begin < ranges[i - 1].end) {
                st = sdc_fail(SDC_ERR_FORMAT,
                              "%s: tensors " NAME_FMT " and " NAME_FMT " overlap in the data", path,
                              f->weights[ranges[i - 1].i].name, f->weights[ranges[i].i].name);
                break;
            }
    }
    free(ranges);
    if (st != SDC_OK) return st;

    /* Give every tensor data aligned to its dtype (see the header). */
    for (size_t i = 0; i < f->count; i++) {
        sdc_weight *w = &f->weights[i];
        size_t a = sdc_dtype_size(w->dtype);
        if (w->nbytes == 0 || (uintptr_t)w->data % a == 0) continue;
        f->copies[i] = malloc(w->nbytes);
        if (!f->copies[i])
            return sdc_fail(SDC_ERR_NOMEM, "%s: tensor " NAME_FMT ": out of memory", path, w->name);
        memcpy(f->copies[i], w->data, w->nbytes);
        w->data = f->copies[i];
    }
    return SDC_OK;
}

sdc_status sdc_st_open(const char *path, sdc_st_file **out) {
    *out = NULL;
    sdc_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = malloc(strlen(path) + 1))) {
        free(f);
        return sdc_fail(SDC_ERR_NOMEM, "%s: out of memory", path);
    }
    strcpy(f->path, path);

    sdc_status st = SDC_OK;
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0) {
        st = sdc_fail(SDC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    } else if (fstat(fd, &sb) != 0) {
        st = sdc_fail(SDC_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        st = sdc_fail(SDC_ERR_IO, "%s: not a regular file", path);
    } else if (sb.st_size < 8) {
        st = sdc_fail(SDC_ERR_FORMAT,
                      "%s: file of %lld bytes is too small for a safetensors header (8 bytes)",
                      path, (long long)sb.st_size);
    } else if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = sdc_fail(SDC_ERR_IO, "%s: file too large to map", path);
    } else {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            st = sdc_fail(SDC_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
        } else {
            f->map = m;
            f->map_size = (size_t)sb.st_size;
        }
    }
    if (fd >= 0) close(fd);
    if (st == SDC_OK) st = parse_header(f);
    if (st != SDC_OK) {
        sdc_st_close(f);
        return st;
    }
    *out = f;
    return SDC_OK;
}

void sdc_st_close(sdc_st_file *f) {
    if (!f) return;
    if (f->copies)
        for (size_t i = 0; i < f->count; i++) free(f->copies[i]);
    free(f->copies);
    free(f->weights);
    sdc_name_index_free(&f->index);
    cJSON_Delete(f->header);
    if (f->map) munmap(f->map, f->map_size);
    free(f->path);
    free(f);
}

size_t sdc_st_count(const sdc_st_file *f) { return f->count; }

const sdc_weight *sdc_st_at(const sdc_st_file *f, size_t i) {
    return i < f->count ? &f->weights[i] : NULL;
}

const sdc_weight *sdc_st_find(const sdc_st_file *f, const char *name) {
    size_t i;
    return sdc_name_index_get(&f->index, name, &i) ? &f->weights[i] : NULL;
}

const char *sdc_st_metadata(const sdc_st_file *f, const char *key) {
    if (!f->metadata) return NULL;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(f->metadata, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

const char *sdc_st_path(const sdc_st_file *f) { return f->path; }

int sdc_st_advise(const sdc_st_file *f, const void *p, size_t n, sdc_page_advice advice) {
    if (!f || !f->map || !p || n == 0) return 0;
    uintptr_t base = (uintptr_t)f->map, lo = (uintptr_t)p;
    if (lo < base || lo - base > f->map_size || n > f->map_size - (lo - base)) return 0;
    /* the mapping starts on a page and its last page is mapped whole, so the
     * range rounded out to pages stays inside it */
    return sdc_pages_advise(p, n, advice);
}

int sdc_pages_advise(const void *p, size_t n, sdc_page_advice advice) {
    if (!p || n == 0) return 0;
    uintptr_t lo = (uintptr_t)p;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t ps = page > 0 ? (uintptr_t)page : 4096;
    uintptr_t start = lo / ps * ps, end = (lo + n + ps - 1) / ps * ps; /* whole pages */
    void *addr = (void *)start;
    size_t len = (size_t)(end - start);
    if (advice == SDC_PAGES_RELEASE) return madvise(addr, len, MADV_DONTNEED) == 0;
    if (advice == SDC_PAGES_EVICT) {
#ifdef MADV_PAGEOUT
        if (madvise(addr, len, MADV_PAGEOUT) == 0) return madvise(addr, len, MADV_DONTNEED) == 0;
#endif
        return madvise(addr, len, MADV_DONTNEED) == 0;
    }
    int hinted = 0;
#ifdef MADV_POPULATE_READ
    hinted = madvise(addr, len, MADV_POPULATE_READ) == 0;
#endif
    if (!hinted && madvise(addr, len, MADV_WILLNEED) != 0) return 0;
    /* then a read of each page (cheap where already in): Linux < 5.14 has
     * no MADV_POPULATE_READ and qemu-user 7.2 accepts and ignores it */
    for (uintptr_t q = start; q < end; q += ps) (void)*(const volatile char *)q;
    return 1;
}
