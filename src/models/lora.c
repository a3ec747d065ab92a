/* LoRA files: formats, name resolution, checks, and the merge (lora.h). */
#include "models/lora.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "io/json_util.h"
#include "io/name_index.h"
#include "io/name_map.h"
#include "io/safetensors.h"

#define MAX_LISTED 10 /* skipped tensors named in the warning */
#define NAME_CAP 512

typedef enum { ROLE_DOWN = 0, ROLE_UP, ROLE_ALPHA, ROLE_MID, ROLE_OTHER } role;
typedef enum { FMT_KOHYA = 0, FMT_PEFT, FMT_DIFFUSERS } lora_fmt;

/* A module while parsing: the file's tensors for one update. */
typedef struct pending {
    const char *name; /* module name as keyed in the file (owned by names[]) */
    const sdc_weight *down, *up, *alpha, *mid;
    lora_fmt fmt;
} pending;

struct sdc_lora_file {
    sdc_st_file *st;
    lora_fmt fmt;
    sdc_lora_module *mods; /* [count], by target */
    size_t count, skipped;
};

/* ---- key forms --------------------------------------------------------- */

static int ends_with(const char *s, size_t n, const char *suf) {
    size_t m = strlen(suf);
    return n >= m && memcmp(s + n - m, suf, m) == 0;
}

static int starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* The suffixes that name a factor, longest forms first. */
static const struct {
    const char *suffix;
    role r;
    lora_fmt fmt;
} k_suffixes[] = {
    {".lora_down.weight", ROLE_DOWN, FMT_KOHYA},
    {".lora_up.weight", ROLE_UP, FMT_KOHYA},
    {".lora_mid.weight", ROLE_MID, FMT_KOHYA},
    {".lora_A.weight", ROLE_DOWN, FMT_PEFT},
    {".lora_B.weight", ROLE_UP, FMT_PEFT},
    {".lora_linear_layer.down.weight", ROLE_DOWN, FMT_DIFFUSERS},
    {".lora_linear_layer.up.weight", ROLE_UP, FMT_DIFFUSERS},
    {".lora.down.weight", ROLE_DOWN, FMT_DIFFUSERS},
    {".lora.up.weight", ROLE_UP, FMT_DIFFUSERS},
    {"_lora.down.weight", ROLE_DOWN, FMT_DIFFUSERS}, /* processor.to_q_lora.down.weight */
    {"_lora.up.weight", ROLE_UP, FMT_DIFFUSERS},
    {".alpha", ROLE_ALPHA, FMT_PEFT}, /* the format is the factors' */
};

/* Splits a tensor key into its module name (written to mod) and role. */
static role split_key(const char *key, char mod[NAME_CAP], lora_fmt *fmt) {
    size_t n = strlen(key);
    for (size_t i = 0; i < sizeof k_suffixes / sizeof k_suffixes[0]; i++) {
        const char *suf = k_suffixes[i].suffix;
        if (!ends_with(key, n, suf)) continue;
        size_t m = n - strlen(suf);
        if (m == 0 || m >= NAME_CAP) return ROLE_OTHER;
        memcpy(mod, key, m);
        mod[m] = 0;
        *fmt = k_suffixes[i].fmt;
        /* an older attention processor's factor: <attn>.processor.to_q_lora */
        if (suf[0] == '_') {
            char *p = strstr(mod, ".processor.to_");
            const char *which = p ? p + strlen(".processor.to_") : strstr(mod, "self_attn.to_");
            if (!p && which) which += strlen("self_attn.to_");
            if (!which) return ROLE_OTHER;
            static const char *const q[][3] = {{"q", "to_q", "q_proj"},
                                               {"k", "to_k", "k_proj"},
                                               {"v", "to_v", "v_proj"},
                                               {"out", "to_out.0", "out_proj"}};
            char tail[16];
            snprintf(tail, sizeof tail, "%s", which);
            int hit = -1;
            for (int j = 0; j < 4; j++)
                if (strcmp(tail, q[j][0]) == 0) hit = j;
            if (hit < 0) return ROLE_OTHER;
            char *cut = p ? p : (char *)which - strlen("to_");
            size_t keep = (size_t)(cut - mod);
            char out[NAME_CAP];
            int w = p ? snprintf(out, sizeof out, "%.*s.%s", (int)keep, mod, q[hit][1])
                      : snprintf(out, sizeof out, "%.*s%s", (int)keep, mod, q[hit][2]);
            if (w < 0 || w >= NAME_CAP) return ROLE_OTHER;
            memcpy(mod, out, (size_t)w + 1);
        }
        return k_suffixes[i].r;
    }
    return ROLE_OTHER;
}

/* What only an SDXL LoRA has (its second text encoder, its extra
 * embeddings); NULL if nothing. */
static const char *sdxl_sign(const char *key) {
    if (starts_with(key, "lora_te1_") || starts_with(key, "lora_te2_")) return "lora_te1_/lora_te2_";
    if (starts_with(key, "text_encoder_2.")) return "text_encoder_2.";
    if (strstr(key, "add_embedding") || strstr(key, "label_emb")) return "add_embedding";
    return NULL;
}

/* ---- resolution -------------------------------------------------------- */

/* kohya's names of every weight: "lora_unet_" / "lora_te_" + the module
 * path with '.' -> '_', mapped to the weight's index. */
typedef struct kohya_names {
    char **names; /* [n], owned */
    size_t n;
    sdc_name_index ix;
} kohya_names;

static void kohya_free(kohya_names *k) {
    for (size_t i = 0; i < k->n; i++) free(k->names[i]);
    free(k->names);
    sdc_name_index_free(&k->ix);
}

static sdc_status kohya_build(const sdc_model_files *mf, kohya_names *k) {
    memset(k, 0, sizeof *k);
    size_t count = sdc_model_files_count(mf);
    k->names = calloc(count ? count : 1, sizeof *k->names);
    if (!k->names || sdc_name_index_init(&k->ix, count) != SDC_OK)
        return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const char *key = sdc_model_files_key(mf, i), *path, *pre;
        if (starts_with(key, "unet.")) {
            path = key + 5;
            pre = "lora_unet_";
        } else if (starts_with(key, "text_encoder.")) {
            path = key + 13;
            pre = "lora_te_";
        } else {
            continue;
        }
        size_t n = strlen(path);
        if (!ends_with(path, n, ".weight")) continue;
        n -= strlen(".weight");
        char *s = malloc(strlen(pre) + n + 1);
        if (!s) return sdc_fail(SDC_ERR_NOMEM, "out of memory");
        strcpy(s, pre);
        char *d = s + strlen(pre);
        for (size_t j = 0; j < n; j++) d[j] = path[j] == '.' ? '_' : path[j];
        d[n] = 0;
        k->names[k->n++] = s;
        sdc_name_index_put(&k->ix, s, i); /* a clash keeps the first: none in SD 1.x */
    }
    return SDC_OK;
}

/* A whole decimal number at *s followed by '_' (or the end when last is
 * set), advancing past it; -1 if none. */
static int take_index(const char **s, int last) {
    const char *q = *s;
    int v = 0, n = 0;
    while (*q >= '0' && *q <= '9' && n < 6) v = v * 10 + (*q++ - '0'), n++;
    if (n == 0 || (*q != '_' && !(last && *q == 0))) return -1;
    *s = *q ? q + 1 : q;
    return v;
}

/* kohya-ss names in the original (CompVis) UNet layout, which diffusers also
 * reads for SD 1.x: lora_unet_input_blocks_4_1_proj_in,
 * ..._output_blocks_3_0_in_layers_2, ..._input_blocks_3_0_op.  The block
 * (input_blocks.N.M, middle_block.M, output_blocks.N.M) is mapped by
 * io/name_map.h through a probe name of each kind a block can be; the rest
 * is the module inside it: a ResNet's leaf renamed (in_layers_2 conv1,
 * out_layers_3 conv2, emb_layers_1 time_emb_proj, skip_connection
 * conv_shortcut), a transformer's kept (the same names in both layouts);
 * then the underscored diffusers name is looked up as any kohya name. */
static int64_t resolve_ldm(const sdc_model_files *mf, const kohya_names *k, const char *rest) {
    static const char *const blocks[] = {"input_blocks_", "output_blocks_", "middle_block_"};
    static const char *const ldm_leaf[][2] = {{"in_layers_2", "conv1"},
                                              {"out_layers_3", "conv2"},
                                              {"emb_layers_1", "time_emb_proj"},
                                              {"skip_connection", "conv_shortcut"}};
    sdc_orig_layout lay = {sdc_model_files_unet(mf)->layers_per_block, 1};
    char orig[NAME_CAP], canon[NAME_CAP], key[2 * NAME_CAP];
    int b = -1, N = 0, M = 0;
    for (int j = 0; j < 3 && b < 0; j++)
        if (starts_with(rest, blocks[j])) b = j;
    if (b < 0 || lay.unet_layers < 1) return -1;
    const char *q = rest + strlen(blocks[b]);
    if (b < 2 && (N = take_index(&q, 0)) < 0) return -1;
    if ((M = take_index(&q, 0)) < 0) return -1;
    const char *tail = q;
    /* probes: a ResNet, a transformer, a down- and an upsampler */
    static const char *const probe[] = {"in_layers.2.weight", "proj_in.weight", "op.weight",
                                        "conv.weight"};
    for (int pr = 0; pr < 4; pr++) {
        if (b < 2)
            snprintf(orig, sizeof orig, "model.diffusion_model.%s.%d.%d.%s",
                     b == 0 ? "input_blocks" : "output_blocks", N, M, probe[pr]);
        else
            snprintf(orig, sizeof orig, "model.diffusion_model.middle_block.%d.%s", M, probe[pr]);
        if (sdc_name_from_original(orig, &lay, canon, sizeof canon) != SDC_NAME_MAPPED) continue;
        /* canon: unet.<block path>.<probe's diffusers leaf>.weight */
        size_t n = strlen(canon);
        const char *leaf = pr == 0 ? ".conv1.weight" : pr == 1 ? ".proj_in.weight"
                                                               : ".conv.weight";
        if (n <= strlen(leaf) || strcmp(canon + n - strlen(leaf), leaf) != 0) continue;
        canon[n - strlen(leaf)] = 0;
        const char *mod = tail;
        if (pr == 0) {
            mod = NULL;
            for (int j = 0; j < 4; j++)
                if (strcmp(tail, ldm_leaf[j][0]) == 0) mod = ldm_leaf[j][1];
        } else if (pr >= 2) {
            mod = strcmp(tail, pr == 2 ? "op" : "conv") == 0 ? "conv" : NULL;
        }
        if (!mod) continue;
        int w = snprintf(key, sizeof key, "lora_%s_%s", canon, mod);
        if (w < 0 || (size_t)w >= sizeof key) continue;
        for (char *c = key; *c; c++)
            if (*c == '.') *c = '_';
        size_t i;
        if (sdc_name_index_get(&k->ix, key, &i)) return (int64_t)i;
    }
    return -1;
}

/* The weight index a module name updates, or -1 (kohya: k's table). */
static int64_t resolve(const sdc_model_files *mf, const kohya_names *k, const pending *p) {
    size_t i;
    char key[NAME_CAP + 32];
    if (p->fmt == FMT_KOHYA) {
        if (!k->names) return -1;
        if (sdc_name_index_get(&k->ix, p->name, &i)) return (int64_t)i;
        if (starts_with(p->name, "lora_unet_")) return resolve_ldm(mf, k, p->name + 10);
        /* the text encoder as transformers 5 names it (no text_model level) */
        if (!starts_with(p->name, "lora_te_") || starts_with(p->name, "lora_te_text_model_"))
            return -1;
        snprintf(key, sizeof key, "lora_te_text_model_%s", p->name + strlen("lora_te_"));
        return sdc_name_index_get(&k->ix, key, &i) ? (int64_t)i : -1;
    }
    /* prefixed names as they are; bare ones in the UNet, then the text
     * encoder; text encoder names with or without transformers' text_model */
    static const char *const pre[] = {"", "unet.", "text_encoder.", "text_encoder.text_model."};
    const int bare = !starts_with(p->name, "unet.") && !starts_with(p->name, "text_encoder.");
    const int te_flat = starts_with(p->name, "text_encoder.") &&
                        !starts_with(p->name, "text_encoder.text_model.");
    for (int j = 0; j < 4; j++) {
        if (bare ? j == 0 : j != 0 && !(te_flat && j == 3)) continue;
        const char *name = te_flat && j == 3 ? p->name + strlen("text_encoder.") : p->name;
        snprintf(key, sizeof key, "%s%s.weight", pre[j], name);
        const sdc_weight *w = sdc_model_files_get(mf, key);
        if (w) return (int64_t)(w - sdc_model_files_at(mf, 0)); /* one table */
    }
    return -1;
}

/* ---- checks -------------------------------------------------------------- */

static int float_dtype(sdc_dtype d) {
    return d == SDC_DT_F32 || d == SDC_DT_F16 || d == SDC_DT_BF16;
}

static void shape_str(const sdc_weight *w, char *out, size_t cap) {
    size_t n = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < w->ndim && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, i ? ", %lld" : "%lld", (long long)w->shape[i]);
    if (n < cap) snprintf(out + n, cap - n, "]");
}

/* Product of shape[from..ndim). */
static int64_t tail_numel(const sdc_weight *w, int from) {
    int64_t n = 1;
    for (int i = from; i < w->ndim; i++) n *= w->shape[i];
    return n;
}

/* Dims from..ndim with trailing 1s dropped equal (a 1x1 conv is a Linear). */
static int same_tail(const sdc_weight *a, int fa, const sdc_weight *b, int fb) {
    int na = a->ndim, nb = b->ndim;
    while (na > fa && a->shape[na - 1] == 1) na--;
    while (nb > fb && b->shape[nb - 1] == 1) nb--;
    if (na - fa != nb - fb) return 0;
    for (int i = 0; i < na - fa; i++)
        if (a->shape[fa + i] != b->shape[fb + i]) return 0;
    return 1;
}

/* The module's factors against the weight: up [out, r(, 1, 1)], down
 * [r, in(, kh, kw)] with W [out, in(, kh, kw)]. */
static sdc_status check_module(const char *path, const pending *p, const sdc_weight *w,
                               const char *wname, int *rank) {
    char a[96], b[96], c[96];
    const sdc_weight *d = p->down, *u = p->up;
    if (!float_dtype(d->dtype) || !float_dtype(u->dtype))
        return sdc_fail(SDC_ERR_FORMAT, "%s: %s: factors of dtype %s/%s (F32, F16 or BF16 wanted)",
                        path, p->name, sdc_dtype_name(d->dtype), sdc_dtype_name(u->dtype));
    if (!float_dtype(w->dtype) || (w->ndim != 2 && w->ndim != 4))
        return sdc_fail(SDC_ERR_FORMAT, "%s: %s updates %s, which is not a Linear or Conv2d weight",
                        path, p->name, wname);
    shape_str(d, a, sizeof a);
    shape_str(u, b, sizeof b);
    shape_str(w, c, sizeof c);
    if (d->ndim < 2 || u->ndim < 2 || d->shape[0] < 1 || d->shape[0] > SDC_LORA_MAX_RANK)
        return sdc_fail(SDC_ERR_FORMAT, "%s: %s: factors down %s, up %s: not a rank 1..%d update",
                        path, p->name, a, b, SDC_LORA_MAX_RANK);
    const int64_t r = d->shape[0];
    if (u->shape[1] != r || tail_numel(u, 2) != 1)
        return sdc_fail(SDC_ERR_FORMAT, "%s: %s: up %s does not fit down %s (rank %lld)", path,
                        p->name, b, a, (long long)r);
    if (u->shape[0] != w->shape[0] || !same_tail(d, 1, w, 1)) {
        /* SD 2.x's cross-attention reads 1024-wide text embeddings (SD 1.x: 768) */
        const int sd2 = d->ndim == 2 && d->shape[1] == 1024 && w->shape[1] != 1024 &&
                        (strstr(wname, "attn2.to_k") || strstr(wname, "attn2.to_v"));
        return sdc_fail(sd2 ? SDC_ERR_UNSUPPORTED : SDC_ERR_FORMAT,
                        "%s: %s: down %s and up %s make a %lldx%lld update, but %s is %s%s",
                        path, p->name, a, b, (long long)u->shape[0], (long long)tail_numel(d, 1),
                        wname, c,
                        sd2 ? " (a LoRA for SD 2.x, whose text embeddings are 1024 wide; sdc "
                              "runs SD 1.x)"
                            : "");
    }
    *rank = (int)r;
    return SDC_OK;
}

/* alpha: one finite float. */
static sdc_status alpha_value(const char *path, const pending *p, float *out) {
    const sdc_weight *a = p->alpha;
    if (!float_dtype(a->dtype) || a->numel != 1)
        return sdc_fail(SDC_ERR_FORMAT, "%s: %s.alpha: not one float (%s, %lld values)", path,
                        p->name, sdc_dtype_name(a->dtype), (long long)a->numel);
    *out = sdc_weight_get(a, 0);
    if (!isfinite(*out))
        return sdc_fail(SDC_ERR_FORMAT, "%s: %s.alpha is not finite", path, p->name);
    return SDC_OK;
}

/* ---- PEFT's adapter config (lora_adapter_metadata) ----------------------- */

/* PEFT's pattern match of a module path: the pattern is the path or a
 * dot-separated tail of it ("^" anchors it at the start). */
static int pattern_match(const char *pat, const char *path) {
    if (pat[0] == '^') return strcmp(pat + 1, path) == 0;
    size_t n = strlen(path), m = strlen(pat);
    return n >= m && strcmp(path + n - m, pat) == 0 && (n == m || path[n - m - 1] == '.');
}

/* The number under name in obj[comp + "." + key] (a pattern object when
 * key is *_pattern and path is given). */
static int meta_num(const cJSON *meta, const char *comp, const char *key, const char *path,
                    double *out) {
    char k[64];
    snprintf(k, sizeof k, "%s.%s", comp, key);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, k);
    if (!v) return 0;
    if (!path) {
        if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
        else if (cJSON_IsNumber(v)) *out = v->valuedouble;
        else return 0;
        return 1;
    }
    if (!cJSON_IsObject(v)) return 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (e->string && cJSON_IsNumber(e) && pattern_match(e->string, path)) {
            *out = e->valuedouble;
            return 1;
        }
    }
    return 0;
}

/* scale of a PEFT module from the adapter config, where the file has one. */
static sdc_status peft_scale(const char *path, const cJSON *meta, const sdc_model_files *mf,
                             size_t target, int rank, float *scale) {
    const char *key = sdc_model_files_key(mf, target);
    const char *comp = starts_with(key, "unet.") ? "unet" : "text_encoder";
    char mod[NAME_CAP];
    snprintf(mod, sizeof mod, "%s", key + strlen(comp) + 1);
    size_t n = strlen(mod);
    if (ends_with(mod, n, ".weight")) mod[n - strlen(".weight")] = 0;
    double alpha = rank, rslora = 0;
    if (!meta_num(meta, comp, "alpha_pattern", mod, &alpha) &&
        !meta_num(meta, comp, "lora_alpha", NULL, &alpha))
        alpha = rank;
    meta_num(meta, comp, "use_rslora", NULL, &rslora);
    if (!isfinite(alpha) || fabs(alpha) > 1e6)
        return sdc_fail(SDC_ERR_FORMAT, "%s: lora_adapter_metadata: bad lora_alpha %g", path, alpha);
    *scale = (float)(rslora != 0 ? alpha / sqrt((double)rank) : alpha / rank);
    return SDC_OK;
}

/* ---- opening ------------------------------------------------------------- */

static int by_target(const void *a, const void *b) {
    size_t x = ((const sdc_lora_module *)a)->target, y = ((const sdc_lora_module *)b)->target;
    return x < y ? -1 : x > y;
}

/* Skipped tensor names, for the warning. */
typedef struct skip_list {
    const char *names[MAX_LISTED];
    size_t n;
} skip_list;

static void skip(skip_list *s, const char *name) {
    if (s->n < MAX_LISTED) s->names[s->n] = name;
    s->n++;
}

typedef struct parse_state {
    const char *path;
    sdc_st_file *st;
    pending *pend;   /* [tensors] */
    char **names;    /* [tensors]: the pending modules' names, owned */
    size_t n_pend;
    sdc_name_index ix; /* module name -> pend index */
    kohya_names kohya;
    cJSON *meta;
} parse_state;

static void parse_free(parse_state *ps) {
    for (size_t i = 0; i < ps->n_pend; i++) free(ps->names[i]);
    free(ps->names);
    free(ps->pend);
    sdc_name_index_free(&ps->ix);
    kohya_free(&ps->kohya);
    cJSON_Delete(ps->meta);
}

/* Groups the file's tensors by module; unknown ones go to sk. */
static sdc_status group(parse_state *ps, skip_list *sk) {
    size_t n = sdc_st_count(ps->st);
    ps->pend = calloc(n ? n : 1, sizeof *ps->pend);
    ps->names = calloc(n ? n : 1, sizeof *ps->names);
    if (!ps->pend || !ps->names || sdc_name_index_init(&ps->ix, n) != SDC_OK)
        return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const sdc_weight *t = sdc_st_at(ps->st, i);
        const char *sx = sdxl_sign(t->name);
        if (sx)
            return sdc_fail(SDC_ERR_UNSUPPORTED,
                            "%s: an SDXL LoRA (tensor '%.200s', %s); sdc runs SD 1.x models",
                            ps->path, t->name, sx);
        char mod[NAME_CAP];
        lora_fmt fmt = FMT_PEFT;
        role r = split_key(t->name, mod, &fmt);
        if (r == ROLE_OTHER) {
            skip(sk, t->name);
            continue;
        }
        if (starts_with(mod, "lora_unet_") || starts_with(mod, "lora_te_")) fmt = FMT_KOHYA;
        size_t at;
        if (!sdc_name_index_get(&ps->ix, mod, &at)) {
            at = ps->n_pend;
            if (!(ps->names[at] = malloc(strlen(mod) + 1)))
                return sdc_fail(SDC_ERR_NOMEM, "out of memory");
            strcpy(ps->names[at], mod);
            ps->pend[at].name = ps->names[at];
            ps->pend[at].fmt = fmt;
            ps->n_pend++;
            sdc_name_index_put(&ps->ix, ps->names[at], at);
        }
        pending *p = &ps->pend[at];
        if (r != ROLE_ALPHA) p->fmt = fmt;
        const sdc_weight **slot = r == ROLE_DOWN ? &p->down : r == ROLE_UP ? &p->up
                                : r == ROLE_ALPHA ? &p->alpha : &p->mid;
        if (*slot)
            return sdc_fail(SDC_ERR_FORMAT, "%s: tensors '%.200s' and '%.200s' are the same factor",
                            ps->path, (*slot)->name, t->name);
        *slot = t;
    }
    return SDC_OK;
}

/* SDXL's UNet has a 2048-wide cross-attention: its to_k/to_v factors say so
 * before any name is resolved. */
static sdc_status check_sdxl_width(const parse_state *ps) {
    for (size_t i = 0; i < ps->n_pend; i++) {
        const pending *p = &ps->pend[i];
        if (p->down && p->down->ndim == 2 && p->down->shape[1] == 2048 &&
            (strstr(p->name, "attn2_to_k") || strstr(p->name, "attn2.to_k") ||
             strstr(p->name, "attn2_to_v") || strstr(p->name, "attn2.to_v")))
            return sdc_fail(SDC_ERR_UNSUPPORTED,
                            "%s: an SDXL LoRA ('%.200s' reads 2048-wide text embeddings); sdc "
                            "runs SD 1.x models",
                            ps->path, p->name);
    }
    return SDC_OK;
}

static void warn_skipped(const char *path, const skip_list *sk) {
    if (!sk->n) return;
    fprintf(stderr, "sdc: warning: LoRA %s: %zu tensor%s not applied (no such weight in this "
            "model, or a LoRA variant sdc does not read):", path, sk->n, sk->n == 1 ? "" : "s");
    for (size_t i = 0; i < sk->n && i < MAX_LISTED; i++)
        fprintf(stderr, "%s %s", i ? "," : "", sk->names[i]);
    if (sk->n > MAX_LISTED) fprintf(stderr, ", ... (%zu more)", sk->n - MAX_LISTED);
    fputc('\n', stderr);
}

static sdc_status resolve_all(parse_state *ps, const sdc_model_files *mf, sdc_lora_file *f,
                              skip_list *sk) {
    f->mods = calloc(ps->n_pend ? ps->n_pend : 1, sizeof *f->mods);
    if (!f->mods) return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    int kinds[3] = {0, 0, 0};
    for (size_t i = 0; i < ps->n_pend; i++) {
        const pending *p = &ps->pend[i];
        if (p->fmt == FMT_KOHYA && !ps->kohya.names) {
            sdc_status st = kohya_build(mf, &ps->kohya);
            if (st != SDC_OK) return st;
        }
        if (p->mid)
            return sdc_fail(SDC_ERR_UNSUPPORTED,
                            "%s: '%.200s' is a LoCon layer in Tucker form (lora_mid), which sdc "
                            "does not apply", ps->path, p->mid->name);
        int64_t t = resolve(mf, &ps->kohya, p);
        if (t < 0 || !p->down || !p->up) {
            if (t >= 0) /* half a pair: a damaged file, not a variant */
                return sdc_fail(SDC_ERR_FORMAT, "%s: module '%.200s' has no %s factor", ps->path,
                                p->name, p->down ? "up" : "down");
            const sdc_weight *ts[3] = {p->down, p->up, p->alpha};
            for (int j = 0; j < 3; j++)
                if (ts[j]) skip(sk, ts[j]->name);
            continue;
        }
        const sdc_weight *w = sdc_model_files_at(mf, (size_t)t);
        sdc_lora_module *m = &f->mods[f->count];
        sdc_status st = check_module(ps->path, p, w, sdc_model_files_key(mf, (size_t)t), &m->rank);
        if (st != SDC_OK) return st;
        m->target = (size_t)t;
        m->down = p->down;
        m->up = p->up;
        m->scale = 1.0f;
        if (p->alpha) {
            float alpha = 0;
            if ((st = alpha_value(ps->path, p, &alpha)) != SDC_OK) return st;
            m->scale = alpha / (float)m->rank;
        } else if (ps->meta && p->fmt != FMT_KOHYA) {
            st = peft_scale(ps->path, ps->meta, mf, m->target, m->rank, &m->scale);
            if (st != SDC_OK) return st;
        }
        kinds[p->fmt]++;
        f->count++;
    }
    f->fmt = kinds[FMT_KOHYA] >= kinds[FMT_PEFT] && kinds[FMT_KOHYA] >= kinds[FMT_DIFFUSERS]
                 ? FMT_KOHYA
                 : kinds[FMT_PEFT] >= kinds[FMT_DIFFUSERS] ? FMT_PEFT : FMT_DIFFUSERS;
    qsort(f->mods, f->count, sizeof *f->mods, by_target);
    for (size_t i = 1; i < f->count; i++)
        if (f->mods[i].target == f->mods[i - 1].target)
            return sdc_fail(SDC_ERR_FORMAT, "%s: two modules update %s ('%.200s' and '%.200s')",
                            ps->path, sdc_model_files_key(mf, f->mods[i].target),
                            f->mods[i - 1].down->name, f->mods[i].down->name);
    return SDC_OK;
}

sdc_status sdc_lora_open(const char *path, const sdc_model_files *mf, sdc_lora_file **out) {
    *out = NULL;
    sdc_lora_file *f = calloc(1, sizeof *f);
    if (!f) return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    parse_state ps;
    memset(&ps, 0, sizeof ps);
    ps.path = path;
    skip_list sk = {{0}, 0};
    sdc_status st = sdc_st_open(path, &f->st);
    if (st != SDC_OK) {
        free(f);
        return sdc_fail_context(st, "LoRA");
    }
    ps.st = f->st;
    const char *meta = sdc_st_metadata(f->st, "lora_adapter_metadata");
    if (meta && (st = sdc_json_parse(meta, strlen(meta), path, &ps.meta)) == SDC_OK &&
        !cJSON_IsObject(ps.meta))
        st = sdc_fail(SDC_ERR_FORMAT, "%s: lora_adapter_metadata is not a JSON object", path);
    if (st == SDC_OK) st = group(&ps, &sk);
    if (st == SDC_OK) st = check_sdxl_width(&ps);
    if (st == SDC_OK) st = resolve_all(&ps, mf, f, &sk);
    if (st == SDC_OK && f->count == 0) {
        st = sdc_fail(SDC_ERR_UNSUPPORTED,
                      "%s: none of its %zu tensors updates a weight of this model (first: "
                      "'%.200s'): a LoRA for another architecture, or a variant sdc does not "
                      "read", path, sdc_st_count(f->st),
                      sdc_st_count(f->st) ? sdc_st_at(f->st, 0)->name : "none");
    }
    parse_free(&ps);
    if (st != SDC_OK) {
        sdc_lora_close(f);
        return st;
    }
    f->skipped = sk.n;
    warn_skipped(path, &sk);
    *out = f;
    return SDC_OK;
}

void sdc_lora_close(sdc_lora_file *f) {
    if (!f) return;
    sdc_st_close(f->st);
    free(f->mods);
    free(f);
}

const char *sdc_lora_format(const sdc_lora_file *f) {
    static const char *const names[] = {"kohya", "peft", "diffusers"};
    return names[f->fmt];
}
size_t sdc_lora_count(const sdc_lora_file *f) { return f->count; }
const sdc_lora_module *sdc_lora_at(const sdc_lora_file *f, size_t i) {
    return i < f->count ? &f->mods[i] : NULL;
}
size_t sdc_lora_skipped(const sdc_lora_file *f) { return f->skipped; }

void sdc_lora_delta_ref(const sdc_lora_module *m, float s, float *dst) {
    const int64_t out = m->up->shape[0], r = m->rank, K = m->down->numel / r;
    for (int64_t o = 0; o < out; o++)
        for (int64_t j = 0; j < r; j++) {
            const float u = s * sdc_weight_get(m->up, o * r + j);
            for (int64_t k = 0; k < K; k++) dst[o * K + k] += u * sdc_weight_get(m->down, j * K + k);
        }
}

/* ---- merging ------------------------------------------------------------- */

/* What a file was when it was merged: the same path with another identity
 * (rewritten, replaced) is another LoRA. */
typedef struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} file_id;

static file_id identity(const char *path) {
    file_id id;
    memset(&id, 0, sizeof id);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        id.dev = sb.st_dev;
        id.ino = sb.st_ino;
        id.size = sb.st_size;
        id.mtime = sb.st_mtim;
    }
    return id;
}

static int same_file(const file_id *a, const file_id *b) {
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

struct sdc_lora_merged {
    int n;
    char **paths;   /* [n], owned */
    float *weights; /* [n] */
    file_id *ids;   /* [n]: the files as they were merged */
    void *map;      /* the merged weights, one slot per target (page-aligned) */
    size_t map_size;
    int pageable;   /* map is a shared file mapping */
    size_t *targets; /* [n_targets]: weight indices that hold merged data */
    size_t n_targets;
};

static int same_set(const sdc_lora_merged *c, const sdc_lora *set, int n) {
    if (!c) return n == 0;
    if (c->n != n) return 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(c->paths[i], set[i].path) != 0 || c->weights[i] != set[i].weight) return 0;
        file_id now = identity(set[i].path);
        if (!same_file(&now, &c->ids[i])) return 0;
    }
    return 1;
}

static void release(sdc_backend *be, const sdc_weight *w) {
    if (be && be->weights) be->weights(be, &w, 1, SDC_RES_RELEASE);
}

static void merged_free(sdc_lora_merged *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) free(c->paths[i]);
    free(c->paths);
    free(c->weights);
    free(c->ids);
    if (c->map) munmap(c->map, c->map_size);
    free(c->targets);
    free(c);
}

void sdc_lora_unmerge(sdc_model_files *mf, sdc_backend *be, sdc_lora_merged *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_targets; i++) {
        release(be, sdc_model_files_at(mf, c->targets[i]));
        sdc_model_files_restore_data(mf, c->targets[i]);
    }
    merged_free(c);
}

size_t sdc_lora_merged_bytes(const sdc_lora_merged *c) { return c ? c->map_size : 0; }

/* The merged weights' storage: a scratch file (blocks reserved) mapped shared and read-only
 * (its pages can be dropped and read back), written through *fd with
 * pwrite (no page of it enters the resident set while merging); else
 * anonymous memory (*fd -1). */
static sdc_status storage(sdc_lora_merged *c, size_t bytes, int *fd_out) {
    *fd_out = -1;
    const char *dir = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/sdc-lora-XXXXXX", dir && dir[0] ? dir : "/tmp");
    int fd = mkstemp(tmpl);
    if (fd >= 0) {
        unlink(tmpl);
        /* the blocks reserved now: a full disk shows here, not as a failed
         * write halfway through the merge */
        if (posix_fallocate(fd, 0, (off_t)bytes) == 0) {
            void *p = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED) {
                *fd_out = fd;
                c->map = p;
                c->map_size = bytes;
                c->pageable = 1;
                return SDC_OK;
            }
        }
        close(fd);
    }
    fprintf(stderr, "sdc: warning: no scratch file of %zu MiB could be made in %s (set TMPDIR "
            "to a folder with room); the merged LoRA weights stay in memory\n", bytes >> 20,
            dir && dir[0] ? dir : "/tmp");
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return sdc_fail(SDC_ERR_NOMEM, "cannot allocate %zu MiB for the merged LoRA weights",
                        bytes >> 20);
    c->map = p;
    c->map_size = bytes;
    c->pageable = 0;
    return SDC_OK;
}

/* f32 -> bf16, round to nearest even (NaN kept a NaN). */
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/* Work memory of one merge, on the merge's CPU backend (host memory). */
typedef struct merge_ctx {
    sdc_backend *cpu;
    float *dt;  /* [kc, r]: a chunk of down^T * (weight * scale), the GEMM's "weight" */
    float *up;  /* [out, r]: up in f32, the GEMM's activations */
    float *y;   /* [out, kc]: the chunk of the update */
    float *row; /* [kc]: a row of W' being formed */
    int rmax;
    int fd;          /* the scratch file (pwrite), or -1: write into the mapping */
    size_t file_off; /* the target's slot in it */
    float *h2f;      /* [65536]: f16 -> f32 (a table: a call per value costs seconds) */
    void *bytes;     /* [kc * 4]: a row chunk in the weight's dtype, for pwrite */
} merge_ctx;

#define KC_MAX 8192                  /* columns of W per chunk */
#define Y_FLOATS ((int64_t)1 << 22)  /* 16 MiB of update per chunk */
#define X_FLOATS ((int64_t)1 << 21)  /* 8 MiB of down factor per chunk */
#define UP_FLOATS ((int64_t)1 << 24) /* 64 MiB: out * r of the largest up factor */

static int64_t chunk_cols(int64_t out, int64_t K, int rmax) {
    int64_t kc = KC_MAX;
    if (kc > K) kc = K;
    if (kc > Y_FLOATS / out) kc = Y_FLOATS / out;
    if (kc > X_FLOATS / rmax) kc = X_FLOATS / rmax;
    return kc < 1 ? 1 : kc;
}

/* dst[0..n) = floats of a weight's data from element at. */
static void load_f32(const merge_ctx *mc, sdc_dtype dt, const void *data, int64_t at, int64_t n,
                     float *dst) {
    switch (dt) {
    case SDC_DT_F32: memcpy(dst, (const float *)data + at, (size_t)n * sizeof *dst); break;
    case SDC_DT_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = mc->h2f[((const uint16_t *)data)[at + i]];
        break;
    default:
        for (int64_t i = 0; i < n; i++) dst[i] = sdc_bf16_to_f32(((const uint16_t *)data)[at + i]);
        break;
    }
}

/* f32 -> f16, round to nearest even, inline (F. Giesen's float_to_half_fast3_rtne):
 * the same bits as sdc_f32_to_f16 for every finite input. */
static inline uint16_t to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u;
    u &= 0x7fffffffu;
    uint32_t o;
    if (u >= (uint32_t)(127 + 16) << 23) { /* >= 65536: inf (NaN: a quiet NaN) */
        o = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
    } else if (u < (uint32_t)113 << 23) { /* f16 subnormal or zero: the FPU rounds */
        const uint32_t magic_u = (uint32_t)((127 - 15) + (23 - 10) + 1) << 23;
        float magic, v;
        memcpy(&magic, &magic_u, 4);
        memcpy(&v, &u, 4);
        v += magic;
        memcpy(&o, &v, 4);
        o -= magic_u;
    } else {
        const uint32_t odd = (u >> 13) & 1;
        u += ((uint32_t)(15 - 127) << 23) + 0xfffu + odd;
        o = u >> 13;
    }
    return (uint16_t)(o | sign);
}

/* len bytes at byte off of the target's slot in the scratch file. */
static sdc_status write_at(const merge_ctx *mc, int64_t off, const void *p, size_t len) {
    const off_t base = (off_t)(mc->file_off + (size_t)off);
    size_t done = 0;
    while (done < len) {
        ssize_t k = pwrite(mc->fd, (const char *)p + done, len - done, base + (off_t)done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return sdc_fail(SDC_ERR_IO, "cannot write the merged LoRA weights to a scratch file: %s",
                            k < 0 ? strerror(errno) : "no space left");
        done += (size_t)k;
    }
    return SDC_OK;
}

/* f16 -> f32 without branches (F. Giesen's half_to_float with selects),
 * so that the compiler vectorises the loops it is in. */
static inline float from_f16(uint16_t h) {
    const uint32_t shifted_exp = 0x7c00u << 13;
    uint32_t o = ((uint32_t)h & 0x7fffu) << 13;
    const uint32_t exp = o & shifted_exp;
    o += (uint32_t)(127 - 15) << 23;
    const uint32_t inf = -(uint32_t)(exp == shifted_exp), den = -(uint32_t)(exp == 0);
    o += inf & ((uint32_t)(128 - 16) << 23);
    o += den & (1u << 23);
    const uint32_t magic_u = 113u << 23;
    float f, magic;
    memcpy(&f, &o, 4);
    memcpy(&magic, &magic_u, 4);
    const float fd = f - magic;
    uint32_t a, b;
    memcpy(&a, &f, 4);
    memcpy(&b, &fd, 4);
    o = ((a & ~den) | (b & den)) | (((uint32_t)h & 0x8000u) << 16);
    memcpy(&f, &o, 4);
    return f;
}

/* f32 -> f16 for a value in f16's finite range (|v| < 65520), without
 * branches: normal results by the exponent rebias with the rounding bias
 * (round to nearest even), subnormal ones by the FPU's rounding of an add
 * (F. Giesen's float_to_half_fast3_rtne, the branch made a select). */
static inline uint16_t to_f16_finite(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    const uint32_t sign = (u >> 16) & 0x8000u;
    u &= 0x7fffffffu;
    const uint32_t odd = (u >> 13) & 1;
    const uint32_t normal = (u + ((uint32_t)(15 - 127) << 23) + 0xfffu + odd) >> 13;
    const uint32_t magic_u = (uint32_t)((127 - 15) + (23 - 10) + 1) << 23;
    float magic, a;
    memcpy(&magic, &magic_u, 4);
    memcpy(&a, &u, 4);
    a += magic;
    uint32_t sub;
    memcpy(&sub, &a, 4);
    sub -= magic_u;
    const uint32_t is_sub = -(uint32_t)(u < (113u << 23));
    return (uint16_t)(((normal & ~is_sub) | (sub & is_sub)) | sign);
}

/* An F16 row chunk: out = f16(orig + y), rounded once.  Returns the index
 * of the first value too large for f16 or not finite, or -1. */
static int64_t merge_f16(const uint16_t *restrict orig, const float *restrict y,
                         uint16_t *restrict out, int64_t n) {
    uint32_t over = 0; /* |v| > 65504, inf or NaN: the bits of |v| above 65504's */
    if (y) {
        for (int64_t i = 0; i < n; i++) {
            const float v = from_f16(orig[i]) + y[i];
            uint32_t u;
            memcpy(&u, &v, 4);
            over |= (uint32_t)((u & 0x7fffffffu) > 0x477fe000u);
            out[i] = to_f16_finite(v);
        }
    } else {
        for (int64_t i = 0; i < n; i++) out[i] = orig[i];
    }
    if (!over) return -1;
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(from_f16(orig[i]) + y[i]) <= 65504.0f)) return i;
    return -1;
}

/* Row chunk src[0..n) rounded once to dt, into element at of the target:
 * dst (anonymous memory) or the scratch file.  Returns the index of the
 * first value that is not finite in dt, or -1; *st a write failure. */
static int64_t store(merge_ctx *mc, sdc_dtype dt, void *dst, int64_t at, int64_t n,
                     const float *src, sdc_status *st) {
    int64_t bad = -1;
    const size_t es = sdc_dtype_size(dt);
    void *out = mc->fd >= 0 ? mc->bytes : (char *)dst + (size_t)at * es;
    for (int64_t i = 0; i < n; i++) {
        const float v = src[i];
        if (!isfinite(v) || (dt == SDC_DT_F16 && fabsf(v) > 65504.0f)) {
            if (bad < 0) bad = i;
        }
        if (dt == SDC_DT_F32) ((float *)out)[i] = v;
        else if (dt == SDC_DT_F16) ((uint16_t *)out)[i] = to_f16(v);
        else ((uint16_t *)out)[i] = to_bf16(v);
    }
    if (mc->fd >= 0) *st = write_at(mc, at * (int64_t)es, out, (size_t)n * es);
    return bad;
}

/* One weight: dst = W + sum_i s[i] * up_i @ down_i over mods[0..nm),
 * formed in f32 by chunks of columns and rounded once to W's dtype.  Each
 * chunk's update is one GEMM per module, y [out, kc] (+)= up · dt^T with
 * dt = (s * down[:, chunk])^T [kc, r] standing as the Linear's weight, so
 * that y's rows are W's rows. */
static sdc_status merge_one(merge_ctx *mc, const sdc_weight *w, const void *orig, void *dst,
                            const sdc_lora_module *const *mods, const float *s, int nm,
                            const char *wname) {
    sdc_backend *be = mc->cpu;
    const int64_t out = w->shape[0], K = w->numel / out;
    if (out > Y_FLOATS || out * mc->rmax > UP_FLOATS)
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: %lld rows are too many to merge a LoRA into",
                        wname, (long long)out);
    const int64_t kc = chunk_cols(out, K, mc->rmax);
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
        const int64_t nk = K - k0 < kc ? K - k0 : kc;
        int any = 0;
        for (int i = 0; i < nm; i++) {
            if (s[i] == 0.0f) continue;
            const sdc_lora_module *m = mods[i];
            const int r = m->rank;
            for (int j = 0; j < r; j++) { /* dt [nk, r] = (s * down[j, k0..])^T */
                load_f32(mc, m->down->dtype, m->down->data, j * K + k0, nk, mc->row);
                for (int64_t kk = 0; kk < nk; kk++) mc->dt[kk * r + j] = s[i] * mc->row[kk];
            }
            load_f32(mc, m->up->dtype, m->up->data, 0, out * r, mc->up); /* [out, r] */
            sdc_weight dtw = {"lora.down^T", SDC_DT_F32, 2, {nk, r}, nk * r, mc->dt,
                              (size_t)(nk * r) * sizeof(float)};
            be->linear(be, mc->y, mc->up, &dtw, NULL, any ? mc->y : NULL, (int)out, (int)nk, r);
            any = 1;
        }
        sdc_status st = be->sync(be);
        if (st != SDC_OK) return st;
        for (int64_t o = 0; o < out; o++) {
            const int64_t at = o * K + k0;
            if (w->dtype == SDC_DT_F16) {
                uint16_t *o16 = mc->fd >= 0 ? mc->bytes : (uint16_t *)dst + at;
                int64_t bad = merge_f16((const uint16_t *)orig + at, any ? mc->y + o * nk : NULL,
                                       o16, nk);
                if (bad >= 0) {
                    const float v = from_f16(((const uint16_t *)orig)[at + bad]) +
                                    (any ? mc->y[o * nk + bad] : 0.0f);
                    return sdc_fail(SDC_ERR_FORMAT,
                                    "the update makes %s %s at element %lld (%g): too large a "
                                    "LoRA weight for its F16 values",
                                    wname, isfinite(v) ? "overflow" : "not finite",
                                    (long long)(at + bad), (double)v);
                }
                if (mc->fd >= 0 && (st = write_at(mc, at * 2, o16, (size_t)nk * 2)) != SDC_OK)
                    return st;
                continue;
            }
            load_f32(mc, w->dtype, orig, at, nk, mc->row);
            if (any) {
                const float *yr = mc->y + o * nk;
                for (int64_t kk = 0; kk < nk; kk++) mc->row[kk] += yr[kk];
            }
            sdc_status wst = SDC_OK;
            int64_t bad = store(mc, w->dtype, dst, at, nk, mc->row, &wst);
            if (wst != SDC_OK) return wst;
            if (bad >= 0)
                return sdc_fail(SDC_ERR_FORMAT,
                                "the update makes %s %s at element %lld (%g): too large a LoRA "
                                "weight for its %s values",
                                wname, isfinite(mc->row[bad]) ? "overflow" : "not finite",
                                (long long)(at + bad), (double)mc->row[bad],
                                sdc_dtype_name(w->dtype));
        }
    }
    return SDC_OK;
}

static size_t round64(size_t b) { return (b + 63) / 64 * 64; }

/* Work buffers for the largest chunk of any target. */
static sdc_status merge_buffers(merge_ctx *mc, int rmax) {
    sdc_backend *be = mc->cpu;
    mc->rmax = rmax;
    sdc_status st = be->buffer_alloc(be, round64((size_t)Y_FLOATS * sizeof(float)), &mc->y);
    if (st == SDC_OK)
        st = be->buffer_alloc(be, round64((size_t)(X_FLOATS + rmax) * sizeof(float)), &mc->dt);
    if (st == SDC_OK) st = be->buffer_alloc(be, round64((size_t)UP_FLOATS * sizeof(float)), &mc->up);
    if (st != SDC_OK) return st;
    mc->row = malloc((size_t)KC_MAX * sizeof(float));
    mc->bytes = malloc((size_t)KC_MAX * sizeof(float));
    mc->h2f = malloc(65536 * sizeof *mc->h2f);
    if (!mc->row || !mc->bytes || !mc->h2f) return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    for (uint32_t h = 0; h < 65536; h++) mc->h2f[h] = sdc_f16_to_f32((uint16_t)h);
    return SDC_OK;
}

static void merge_ctx_free(merge_ctx *mc) {
    if (mc->fd >= 0) close(mc->fd);
    free(mc->h2f);
    free(mc->bytes);
    if (!mc->cpu) return;
    mc->cpu->buffer_free(mc->cpu, mc->dt);
    mc->cpu->buffer_free(mc->cpu, mc->up);
    mc->cpu->buffer_free(mc->cpu, mc->y);
    free(mc->row);
    mc->cpu->free(mc->cpu);
}

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

sdc_status sdc_lora_merge(sdc_model_files *mf, sdc_backend *be, const sdc_lora *set, int n,
                          int n_threads, int verbose, sdc_lora_merged **cur) {
    if (n < 0 || (n > 0 && !set))
        return sdc_fail(SDC_ERR_INVALID_ARG, "LoRA list: %d entries, none given", n);
    for (int i = 0; i < n; i++) {
        if (!set[i].path || !set[i].path[0])
            return sdc_fail(SDC_ERR_INVALID_ARG, "LoRA %d: no path", i + 1);
        if (!isfinite(set[i].weight))
            return sdc_fail(SDC_ERR_INVALID_ARG, "LoRA %s: weight %g is not finite", set[i].path,
                            (double)set[i].weight);
    }
    if (same_set(*cur, set, n)) return SDC_OK;
    sdc_lora_unmerge(mf, be, *cur);
    *cur = NULL;
    if (n == 0) return SDC_OK;

    const size_t count = sdc_model_files_count(mf);
    sdc_lora_file **files = calloc((size_t)n, sizeof *files);
    size_t *pos = calloc((size_t)n, sizeof *pos); /* each file's next module */
    sdc_lora_merged *c = calloc(1, sizeof *c);
    const sdc_lora_module **mods = calloc((size_t)n, sizeof *mods);
    float *s = calloc((size_t)n, sizeof *s);
    merge_ctx mc;
    memset(&mc, 0, sizeof mc);
    mc.fd = -1;
    sdc_status st = SDC_OK;
    if (!files || !pos || !c || !mods || !s ||
        !(c->paths = calloc((size_t)n, sizeof *c->paths)) ||
        !(c->weights = calloc((size_t)n, sizeof *c->weights)) ||
        !(c->ids = calloc((size_t)n, sizeof *c->ids)) ||
        !(c->targets = calloc(count ? count : 1, sizeof *c->targets))) {
        st = sdc_fail(SDC_ERR_NOMEM, "out of memory");
        goto done;
    }
    c->n = n;
    for (int i = 0; i < n; i++) {
        c->weights[i] = set[i].weight;
        c->ids[i] = identity(set[i].path); /* before reading it: a later change shows */
        if (!(c->paths[i] = malloc(strlen(set[i].path) + 1))) {
            st = sdc_fail(SDC_ERR_NOMEM, "out of memory");
            goto done;
        }
        strcpy(c->paths[i], set[i].path);
    }
    const double t0 = wall();
    int rmax = 1;
    for (int i = 0; i < n && st == SDC_OK; i++) {
        st = sdc_lora_open(set[i].path, mf, &files[i]);
        if (st != SDC_OK) break;
        for (size_t j = 0; j < sdc_lora_count(files[i]); j++)
            if (sdc_lora_at(files[i], j)->rank > rmax) rmax = sdc_lora_at(files[i], j)->rank;
        if (verbose)
            fprintf(stderr, "sdc: LoRA %s (%s): %zu weights at weight %g\n", set[i].path,
                    sdc_lora_format(files[i]), sdc_lora_count(files[i]), (double)set[i].weight);
    }
    if (st != SDC_OK) goto done;

    /* the targets, in weight order, and their slots (page-aligned, so that
     * dropping one slot's pages leaves its neighbours alone) */
    long pg = sysconf(_SC_PAGESIZE);
    const size_t page = pg > 0 ? (size_t)pg : 4096;
    size_t total = 0;
    unsigned char *hit = calloc(count ? count : 1, 1);
    if (!hit) {
        st = sdc_fail(SDC_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) /* a LoRA at weight 0 changes nothing: no copies for it */
        for (size_t j = 0; set[i].weight != 0.0f && j < sdc_lora_count(files[i]); j++)
            hit[sdc_lora_at(files[i], j)->target] = 1;
    size_t n_targets = 0;
    for (size_t t = 0; t < count; t++)
        if (hit[t]) {
            c->targets[n_targets++] = t;
            total += (sdc_model_files_at(mf, t)->nbytes + page - 1) / page * page;
        }
    free(hit);
    if ((st = storage(c, total ? total : page, &mc.fd)) != SDC_OK) goto done;
    if (!(mc.cpu = sdc_backend_cpu_create(n_threads, 0))) {
        st = sdc_fail_context(SDC_ERR_NOMEM, "LoRA merge");
        goto done;
    }
    if ((st = merge_buffers(&mc, rmax)) != SDC_OK) goto done;

    size_t off = 0;
    for (size_t ti = 0; ti < n_targets; ti++) {
        const size_t t = c->targets[ti];
        const sdc_weight *w = sdc_model_files_at(mf, t);
        int nm = 0;
        for (int i = 0; i < n; i++) {
            const sdc_lora_module *m = sdc_lora_at(files[i], pos[i]);
            if (m && m->target == t) {
                mods[nm] = m;
                s[nm++] = set[i].weight * m->scale;
                pos[i]++;
            }
        }
        void *dst = (char *)c->map + off;
        mc.file_off = off;
        st = merge_one(&mc, w, sdc_model_files_orig_data(mf, t), dst, mods, s, nm,
                       sdc_model_files_key(mf, t));
        if (st != SDC_OK) {
            st = sdc_fail_context(st, "LoRA %s", n == 1 ? set[0].path : "set");
            goto done;
        }
        /* the original's device copy and pages go (whatever the backend
         * does with its release); the merged data's pages are dropped too (a
         * shared file mapping keeps them) until used */
        release(be, w);
        sdc_model_files_advise(mf, w, SDC_PAGES_EVICT);
        if ((st = sdc_model_files_set_data(mf, t, dst, c->pageable)) != SDC_OK) goto done;
        c->n_targets = ti + 1;
        sdc_model_files_advise(mf, w, SDC_PAGES_RELEASE);
        off += (w->nbytes + page - 1) / page * page;
    }
    sdc_model_files_drop_replaced(mf); /* what later reads mapped back in */
    if (verbose)
        fprintf(stderr, "sdc: LoRA: %zu weights merged (%.0f MiB, %s) in %.2f s\n",
                c->n_targets, c->map_size / 1048576.0,
                c->pageable ? "in a scratch file" : "in memory", wall() - t0);
    *cur = c;
    c = NULL;

done:
    merge_ctx_free(&mc);
    if (c) sdc_lora_unmerge(mf, be, c);
    for (int i = 0; files && i < n; i++) sdc_lora_close(files[i]);
    free(files);
    free(pos);
    free(mods);
    free(s);
    return st;
}
