#include "text/embeddings.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/weights.h"
#include "io/fs_util.h"
#include "io/safetensors.h"

#define MAX_FILES 100000
#define EXT ".safetensors"

typedef struct emb {
    char *name, *path;
    int32_t *ids; /* the name's tokens */
    int n_ids;
    float *vec; /* [n_vec, D] once read */
    int n_vec, D;
} emb;

struct sdc_embeddings {
    emb *e;
    int n;
};

void sdc_embeddings_free(sdc_embeddings *e) {
    if (!e) return;
    for (int i = 0; i < e->n; i++) {
        free(e->e[i].name);
        free(e->e[i].path);
        free(e->e[i].ids);
        free(e->e[i].vec);
    }
    free(e->e);
    free(e);
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const emb *)a)->name, ((const emb *)b)->name);
}

sdc_status sdc_embeddings_open(const char *dir, const sdc_tokenizer *t, sdc_embeddings **out) {
    *out = NULL;
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) return sdc_fail(SDC_ERR_IO, "%s: cannot open the embeddings folder", dir ? dir : "");
    sdc_embeddings *e = calloc(1, sizeof *e);
    int cap = 0;
    sdc_status st = e ? SDC_OK : sdc_fail(SDC_ERR_NOMEM, "out of memory");
    const size_t next = strlen(EXT);
    for (struct dirent *de; st == SDC_OK && (de = readdir(d));) {
        size_t len = strlen(de->d_name);
        if (len <= next || strcmp(de->d_name + len - next, EXT) != 0) continue;
        if (e->n == MAX_FILES) {
            st = sdc_fail(SDC_ERR_INVALID_ARG, "%s: more than %d embeddings", dir, MAX_FILES);
            break;
        }
        size_t plen = strlen(dir) + 1 + len + 1;
        char *path = malloc(plen), *name = malloc(len - next + 1);
        if (path) snprintf(path, plen, "%s/%s", dir, de->d_name);
        if (!path || !name || !sdc_is_file(path)) {
            free(path);
            free(name);
            if (!path || !name) st = sdc_fail(SDC_ERR_NOMEM, "out of memory");
            continue;
        }
        memcpy(name, de->d_name, len - next);
        name[len - next] = 0;
        if (e->n == cap) {
            cap = cap ? 2 * cap : 16;
            emb *p = realloc(e->e, (size_t)cap * sizeof *p);
            if (!p) {
                free(path);
                free(name);
                st = sdc_fail(SDC_ERR_NOMEM, "out of memory");
                break;
            }
            e->e = p;
        }
        emb *x = &e->e[e->n++];
        memset(x, 0, sizeof *x);
        x->name = name;
        x->path = path;
        st = sdc_tokenize_all(t, name, strlen(name), &x->ids, &x->n_ids);
        if (st != SDC_OK) st = sdc_fail_context(st, "%s: the embedding's name", path);
    }
    closedir(d);
    if (st != SDC_OK) {
        sdc_embeddings_free(e);
        return st;
    }
    if (e->n) qsort(e->e, (size_t)e->n, sizeof *e->e, by_name);
    *out = e;
    return SDC_OK;
}

int sdc_embeddings_count(const sdc_embeddings *e) { return e ? e->n : 0; }

const char *sdc_embeddings_name(const sdc_embeddings *e, int i) { return e->e[i].name; }

int sdc_embeddings_match(const sdc_embeddings *e, const int32_t *tokens, int n, int pos,
                         int *len) {
    int best = -1;
    *len = 0;
    if (!e || pos < 0 || pos >= n) return -1;
    for (int i = 0; i < e->n; i++) {
        const emb *x = &e->e[i];
        /* a name without tokens ("" or white space) never matches */
        if (x->n_ids == 0 || x->n_ids <= *len || x->n_ids > n - pos) continue;
        if (memcmp(tokens + pos, x->ids, (size_t)x->n_ids * sizeof *x->ids) == 0) {
            best = i;
            *len = x->n_ids;
        }
    }
    return best;
}

/* The tensor holding the vectors, or NULL with the message set. */
static const sdc_weight *find_vectors(const sdc_st_file *f, const char *path, sdc_status *st) {
    const sdc_weight *w = sdc_st_find(f, "emb_params");
    if (w) return w;
    if (sdc_st_find(f, "clip_g") || sdc_st_find(f, "clip_l")) {
        *st = sdc_fail(SDC_ERR_UNSUPPORTED,
                       "%s: an SDXL embedding (clip_l/clip_g); sdc runs SD 1.x", path);
        return NULL;
    }
    if (sdc_st_count(f) == 1) return sdc_st_at(f, 0);
    *st = sdc_fail(SDC_ERR_FORMAT,
                   "%s: not a textual-inversion embedding (no \"emb_params\" tensor and %zu "
                   "tensors instead of one)",
                   path, sdc_st_count(f));
    return NULL;
}

sdc_status sdc_embeddings_vectors(sdc_embeddings *e, int i, int D, const float **vec, int *n) {
    emb *x = &e->e[i];
    if (!x->vec) {
        sdc_st_file *f = NULL;
        sdc_status st = sdc_st_open(x->path, &f);
        if (st != SDC_OK) return sdc_fail_context(st, "embedding \"%s\"", x->name);
        const sdc_weight *w = find_vectors(f, x->path, &st);
        if (!w) {
            sdc_st_close(f);
            return st;
        }
        int64_t rows = w->ndim == 1 ? 1 : w->ndim == 2 ? w->shape[0] : -1;
        int64_t width = w->ndim ? w->shape[w->ndim - 1] : -1;
        if (w->dtype != SDC_DT_F32 && w->dtype != SDC_DT_F16 && w->dtype != SDC_DT_BF16)
            st = sdc_fail(SDC_ERR_FORMAT, "%s: embedding \"%s\" is %s, not a float type", x->path,
                          w->name, sdc_dtype_name(w->dtype));
        else if (rows < 1 || rows > SDC_EMBEDDING_MAX_VECTORS)
            st = sdc_fail(SDC_ERR_FORMAT,
                          "%s: tensor \"%s\" is not [n, width] with 1 <= n <= %d vectors",
                          x->path, w->name, SDC_EMBEDDING_MAX_VECTORS);
        else if (width != D)
            st = sdc_fail(SDC_ERR_FORMAT,
                          "%s: the embedding's vectors are %lld wide, but this model's text "
                          "encoder takes %d (an embedding for another model family)",
                          x->path, (long long)width, D);
        else if (!(x->vec = malloc((size_t)rows * D * sizeof *x->vec)))
            st = sdc_fail(SDC_ERR_NOMEM, "out of memory");
        if (st == SDC_OK) {
            sdc_weight_to_f32(w, x->vec);
            for (int64_t k = 0; k < rows * D; k++)
                if (!(x->vec[k] - x->vec[k] == 0)) {
                    st = sdc_fail(SDC_ERR_FORMAT, "%s: the embedding holds inf or NaN", x->path);
                    free(x->vec);
                    x->vec = NULL;
                    break;
                }
        }
        sdc_st_close(f);
        if (st != SDC_OK) return st;
        x->n_vec = (int)rows;
        x->D = D;
    } else if (x->D != D) {
        return sdc_fail(SDC_ERR_FORMAT, "%s: the embedding's vectors are %d wide, not %d", x->path,
                        x->D, D);
    }
    *vec = x->vec;
    *n = x->n_vec;
    return SDC_OK;
}
