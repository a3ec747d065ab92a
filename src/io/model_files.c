#include "io/model_files.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/fs_util.h"
#include "io/json_util.h"
#include "io/name_index.h"
#include "io/name_map.h"
#include "io/safetensors.h"

enum { COMP_UNET = 0, COMP_VAE, COMP_TEXT, COMP_COUNT };

struct sdc_model_files {
    sdc_layout layout;
    char *name;                     /* owned */
    char *vocab, *merges;           /* owned, or NULL */
    sdc_st_file *files[COMP_COUNT]; /* single file: files[0] only */
    sdc_weight *weights;            /* [count]: copies; data points into files */
    char **keys;                    /* [count]: canonical names, owned */
    size_t count, cap;
    sdc_name_index index; /* canonical name -> position in weights */
    sdc_clip_config clip;
    sdc_unet_config unet;
    sdc_vae_config vae;
    sdc_sched_config sched;
    atomic_size_t released; /* sdc_model_files_released_bytes */
    /* LoRA merging (sdc_model_files_set_data): per weight, the original data
     * while another buffer stands in (NULL: none), and whether page advice
     * may drop that buffer's pages; [count] each, allocated on first use */
    const void **orig;
    unsigned char *pageable;
    size_t n_replaced; /* weights with another buffer standing in */
};

/* Page cache folios of a file can be large (up to 2 MiB on x86-64), and a
 * fault maps the whole folio: paging in one small weight maps the replaced
 * originals beside it back into the resident set (measured: 260 MiB of the
 * full-size UNet's originals with LCM-LoRA merged).  After a prefetch, the
 * originals within this distance of the weight are dropped again. */
#define FOLIO_REACH ((size_t)4 << 20)

#define PATH_CAP 4096
#define NAME_CAP 512
#define CONFIG_MAX ((size_t)1 << 20) /* config.json files are a few KiB */

/* ---- small helpers ------------------------------------------------------ */

static char *dup_str(const char *s) {
    char *d = malloc(strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

/* dir + "/" + rel into out[PATH_CAP]; 0 if too long. */
static int join(char *out, const char *dir, const char *rel) {
    int n = snprintf(out, PATH_CAP, "%s/%s", dir, rel);
    return n >= 0 && n < PATH_CAP;
}

/* Base name without trailing slashes or ".safetensors". */
static char *base_name(const char *path) {
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/') end--;
    size_t start = end;
    while (start > 0 && path[start - 1] != '/') start--;
    size_t n = end - start;
    const char *ext = ".safetensors";
    size_t el = strlen(ext);
    if (n > el && strncmp(path + end - el, ext, el) == 0) n -= el;
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, path + start, n);
    s[n] = 0;
    return s;
}

static int has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* ---- the weight table ---------------------------------------------------- */

/* The VAE mid-block attention's q/k/v/out weights are 1x1 convs [C, C, 1, 1]
 * in the original layout and Linear [C, C] in diffusers: present [C, C]. */
static void vae_attention_shape(const char *key, sdc_weight *w) {
    if (!has_prefix(key, "vae.") || !strstr(key, ".mid_block.attentions.0.")) return;
    const char *leaf = strstr(key, ".mid_block.attentions.0.") + strlen(".mid_block.attentions.0.");
    if (strcmp(leaf, "to_q.weight") && strcmp(leaf, "to_k.weight") && strcmp(leaf, "to_v.weight") &&
        strcmp(leaf, "to_out.0.weight"))
        return;
    if (w->ndim == 4 && w->shape[2] == 1 && w->shape[3] == 1) w->ndim = 2;
}

static sdc_status add_weight(sdc_model_files *mf, const char *key, const sdc_weight *w,
                             const char *file) {
    if (mf->count == mf->cap) return sdc_fail(SDC_ERR_INTERNAL, "weight table full");
    char *k = dup_str(key);
    if (!k) return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    if (!sdc_name_index_put(&mf->index, k, mf->count)) {
        size_t other;
        sdc_name_index_get(&mf->index, k, &other);
        sdc_status st =
            sdc_fail(SDC_ERR_FORMAT, "%s: tensors '%.200s' and '%.200s' both map to '%.200s'", file,
                     mf->weights[other].name, w->name, k);
        free(k);
        return st;
    }
    mf->keys[mf->count] = k;
    mf->weights[mf->count] = *w;
    vae_attention_shape(k, &mf->weights[mf->count]);
    mf->count++;
    return SDC_OK;
}

static sdc_status alloc_table(sdc_model_files *mf, size_t n) {
    mf->weights = calloc(n ? n : 1, sizeof *mf->weights);
    mf->keys = calloc(n ? n : 1, sizeof *mf->keys);
    if (!mf->weights || !mf->keys || sdc_name_index_init(&mf->index, n) != SDC_OK)
        return sdc_fail(SDC_ERR_NOMEM, "out of memory for %zu tensors", n);
    mf->cap = n;
    return SDC_OK;
}

static const sdc_weight *get(const sdc_model_files *mf, const char *fmt, ...) SDC_PRINTF(2, 3);
static const sdc_weight *get(const sdc_model_files *mf, const char *fmt, ...) {
    char key[NAME_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof key, fmt, ap);
    va_end(ap);
    return sdc_model_files_get(mf, key);
}

/* ---- configs inferred from shapes ---------------------------------------- */

/* A weight that must exist with ndim dims. */
static sdc_status need(const sdc_model_files *mf, const char *key, int ndim,
                       const sdc_weight **out) {
    *out = sdc_model_files_get(mf, key);
    if (!*out) return sdc_fail(SDC_ERR_FORMAT, "missing tensor '%s'", key);
    if ((*out)->ndim != ndim)
        return sdc_fail(SDC_ERR_FORMAT, "tensor '%s' has %d dims, expected %d", key, (*out)->ndim,
                        ndim);
    return SDC_OK;
}

static int dim_ok(int64_t d) { return d >= 1 && d <= (1 << 20); }

/* time_cond_proj_dim's bound (LCM checkpoints use 256) */
#define COND_PROJ_DIM_MAX 8192
#define COND_PROJ "time_embedding.cond_proj.weight"

static sdc_status infer_unet(const sdc_model_files *mf, sdc_unet_config *c) {
    *c = sdc_unet_config_sd1();
    const sdc_weight *w;
    sdc_status st;
    if ((st = need(mf, "unet.conv_in.weight", 4, &w)) != SDC_OK) return st;
    if (!dim_ok(w->shape[0]) || !dim_ok(w->shape[1]))
        return sdc_fail(SDC_ERR_FORMAT, "unet.conv_in.weight: bad shape");
    c->in_channels = (int)w->shape[1];
    if ((st = need(mf, "unet.conv_out.weight", 4, &w)) != SDC_OK) return st;
    if (!dim_ok(w->shape[0])) return sdc_fail(SDC_ERR_FORMAT, "unet.conv_out.weight: bad shape");
    c->out_channels = (int)w->shape[0];

    int levels = 0;
    while ((w = get(mf, "unet.down_blocks.%d.resnets.0.conv1.weight", levels)) != NULL) {
        if (levels == SDC_MAX_LEVELS)
            return sdc_fail(SDC_ERR_UNSUPPORTED, "UNet with more than %d levels", SDC_MAX_LEVELS);
        if (w->ndim != 4 || !dim_ok(w->shape[0]))
            return sdc_fail(SDC_ERR_FORMAT, "unet.down_blocks.%d.resnets.0.conv1.weight: bad shape",
                            levels);
        c->channels[levels] = (int)w->shape[0];
        c->attn[levels] =
            get(mf, "unet.down_blocks.%d.attentions.0.proj_in.weight", levels) != NULL;
        levels++;
    }
    if (levels == 0)
        return sdc_fail(SDC_ERR_FORMAT,
                        "missing tensor 'unet.down_blocks.0.resnets.0.conv1.weight'");
    c->levels = levels;
    for (int i = levels; i < SDC_MAX_LEVELS; i++) c->channels[i] = c->attn[i] = 0;

    int L = 0;
    while (L < 64 && get(mf, "unet.down_blocks.0.resnets.%d.conv1.weight", L)) L++;
    c->layers_per_block = L;

    /* cross-attention facts from the first transformer (down path or mid block) */
    char pre[NAME_CAP] = "unet.mid_block.attentions.0";
    for (int i = 0; i < levels; i++)
        if (c->attn[i]) {
            snprintf(pre, sizeof pre, "unet.down_blocks.%d.attentions.0", i);
            break;
        }
    if ((w = get(mf, "%s.proj_in.weight", pre)) != NULL) {
        c->use_linear_projection = w->ndim == 2;
        int depth = 0;
        while (depth < 64 && get(mf, "%s.transformer_blocks.%d.attn1.to_q.weight", pre, depth))
            depth++;
        c->transformer_depth = depth;
        w = get(mf, "%s.transformer_blocks.0.attn2.to_k.weight", pre);
        if (!w || w->ndim != 2 || !dim_ok(w->shape[1]))
            return sdc_fail(
                SDC_ERR_FORMAT,
                "missing or misshapen tensor '%s.transformer_blocks.0.attn2.to_k.weight'", pre);
        c->cross_dim = (int)w->shape[1];
    }
    /* an LCM-distilled UNet's guidance embedding: [C0, dim] (check_cond_proj) */
    w = get(mf, "unet." COND_PROJ);
    if (w && w->ndim == 2 && w->shape[1] >= 1 && w->shape[1] <= COND_PROJ_DIM_MAX)
        c->time_cond_proj_dim = (int)w->shape[1];
    return SDC_OK;
}

static sdc_status infer_vae(const sdc_model_files *mf, sdc_vae_config *c) {
    *c = sdc_vae_config_sd1();
    const sdc_weight *w;
    sdc_status st;
    if ((st = need(mf, "vae.encoder.conv_in.weight", 4, &w)) != SDC_OK) return st;
    if (!dim_ok(w->shape[1]))
        return sdc_fail(SDC_ERR_FORMAT, "vae.encoder.conv_in.weight: bad shape");
    c->in_channels = (int)w->shape[1];
    if ((st = need(mf, "vae.decoder.conv_out.weight", 4, &w)) != SDC_OK) return st;
    if (!dim_ok(w->shape[0]))
        return sdc_fail(SDC_ERR_FORMAT, "vae.decoder.conv_out.weight: bad shape");
    c->out_channels = (int)w->shape[0];
    if ((st = need(mf, "vae.decoder.conv_in.weight", 4, &w)) != SDC_OK) return st;
    if (!dim_ok(w->shape[1]))
        return sdc_fail(SDC_ERR_FORMAT, "vae.decoder.conv_in.weight: bad shape");
    c->latent_channels = (int)w->shape[1];
    int levels = 0;
    while ((w = get(mf, "vae.encoder.down_blocks.%d.resnets.0.conv1.weight", levels)) != NULL) {
        if (levels == SDC_MAX_LEVELS)
            return sdc_fail(SDC_ERR_UNSUPPORTED, "VAE with more than %d levels", SDC_MAX_LEVELS);
        if (w->ndim != 4 || !dim_ok(w->shape[0]))
            return sdc_fail(SDC_ERR_FORMAT,
                            "vae.encoder.down_blocks.%d.resnets.0.conv1.weight: bad shape", levels);
        c->channels[levels++] = (int)w->shape[0];
    }
    if (levels == 0)
        return sdc_fail(SDC_ERR_FORMAT,
                        "missing tensor 'vae.encoder.down_blocks.0.resnets.0.conv1.weight'");
    c->levels = levels;
    for (int i = levels; i < SDC_MAX_LEVELS; i++) c->channels[i] = 0;
    int L = 0;
    while (L < 64 && get(mf, "vae.encoder.down_blocks.0.resnets.%d.conv1.weight", L)) L++;
    c->layers_per_block = L;
    return SDC_OK;
}

static sdc_status infer_clip(const sdc_model_files *mf, sdc_clip_config *c) {
    *c = sdc_clip_config_sd1();
    const sdc_weight *w;
    sdc_status st;
    const char *p = "text_encoder.text_model.";
    char key[NAME_CAP];
    snprintf(key, sizeof key, "%sembeddings.token_embedding.weight", p);
    if ((st = need(mf, key, 2, &w)) != SDC_OK) return st;
    if (!dim_ok(w->shape[0]) || !dim_ok(w->shape[1]))
        return sdc_fail(SDC_ERR_FORMAT, "%s: bad shape", key);
    c->vocab_size = (int)w->shape[0];
    c->hidden = (int)w->shape[1];
    snprintf(key, sizeof key, "%sembeddings.position_embedding.weight", p);
    if ((st = need(mf, key, 2, &w)) != SDC_OK) return st;
    if (!dim_ok(w->shape[0])) return sdc_fail(SDC_ERR_FORMAT, "%s: bad shape", key);
    c->max_positions = (int)w->shape[0];
    int layers = 0;
    while (layers < 1024 && get(mf, "%sencoder.layers.%d.self_attn.q_proj.weight", p, layers))
        layers++;
    if (layers == 0)
        return sdc_fail(SDC_ERR_FORMAT,
                        "missing tensor '%sencoder.layers.0.self_attn.q_proj.weight'", p);
    c->layers = layers;
    snprintf(key, sizeof key, "%sencoder.layers.0.mlp.fc1.weight", p);
    if ((st = need(mf, key, 2, &w)) != SDC_OK) return st;
    if (!dim_ok(w->shape[0])) return sdc_fail(SDC_ERR_FORMAT, "%s: bad shape", key);
    c->intermediate = (int)w->shape[0];
    /* Heads cannot be read from shapes.  CLIP text models use head_dim 64
     * (ViT-L/14: 768 = 12 x 64); test-size models (hidden not a multiple of
     * 64) follow transformers' tiny configs with head_dim 8. */
    c->heads = c->hidden % 64 == 0 ? c->hidden / 64 : c->hidden % 8 == 0 ? c->hidden / 8 : 1;
    return SDC_OK;
}

/* ---- configs from diffusers config.json ----------------------------------- */

/* key must be absent, null, or (when want is non-NULL) the string want. */
static sdc_status want_str(const cJSON *o, const char *key, const char *want, const char *what,
                           const char *family) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it)) return SDC_OK;
    if (want && cJSON_IsString(it) && it->valuestring && strcmp(it->valuestring, want) == 0)
        return SDC_OK;
    char val[64] = "a non-string value";
    if (cJSON_IsString(it) && it->valuestring)
        snprintf(val, sizeof val, "\"%.40s\"", it->valuestring);
    return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: %s %s is not supported (%s)", what, key, val, family);
}

/* key must be absent, null, or the boolean want. */
static sdc_status want_bool(const cJSON *o, const char *key, int want, const char *what,
                            const char *family) {
    int v = want;
    sdc_status st = sdc_json_opt_bool(o, key, what, &v);
    if (st != SDC_OK) return st;
    if (v != want)
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: %s %s is not supported (%s)", what, key,
                        v ? "true" : "false", family);
    return SDC_OK;
}

/* key must be absent, null, or the number want. */
static sdc_status want_num(const cJSON *o, const char *key, double want, const char *what,
                           const char *family) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it) || (cJSON_IsNumber(it) && it->valuedouble == want)) return SDC_OK;
    return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: %s other than %g is not supported (%s)", what, key,
                    want, family);
}

/* An array of `n` positive ints (n <= SDC_MAX_LEVELS) into out; *n_out. */
static sdc_status int_list(const cJSON *o, const char *key, int lo, int hi, const char *what,
                           int *out, int *n_out) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(a)) return sdc_fail(SDC_ERR_FORMAT, "%s: \"%s\" must be a list", what, key);
    int n = cJSON_GetArraySize(a);
    if (n < 1 || n > SDC_MAX_LEVELS)
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: \"%s\" has %d entries (sdc supports 1 to %d)",
                        what, key, n, SDC_MAX_LEVELS);
    int i = 0;
    for (const cJSON *it = a->child; it; it = it->next, i++) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (!(v >= lo && v <= hi) || v != (int)v)
            return sdc_fail(SDC_ERR_FORMAT, "%s: \"%s\"[%d] must be an integer in [%d, %d]", what,
                            key, i, lo, hi);
        out[i] = (int)v;
    }
    *n_out = n;
    return SDC_OK;
}

/* Entry i of a list of strings, or NULL. */
static const char *str_at(const cJSON *a, int i) {
    const cJSON *it = cJSON_GetArrayItem(a, i);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        sdc_status st_ = (expr);                                                                   \
        if (st_ != SDC_OK) return st_;                                                             \
    } while (0)

/* GroupNorm needs every level's channel count divisible by the groups. */
static sdc_status check_groups(const int *channels, int levels, int groups, const char *what) {
    for (int i = 0; i < levels; i++)
        if (channels[i] % groups != 0)
            return sdc_fail(SDC_ERR_FORMAT,
                            "%s: block_out_channels[%d] = %d is not a multiple of norm_num_groups %d",
                            what, i, channels[i], groups);
    return SDC_OK;
}

static sdc_status parse_unet(const cJSON *o, const char *what, sdc_unet_config *c) {
    *c = sdc_unet_config_sd1();
    if (!cJSON_IsObject(o)) return sdc_fail(SDC_ERR_FORMAT, "%s: not a JSON object", what);
    TRY(want_str(o, "_class_name", "UNet2DConditionModel", what, "sdc runs UNet2DConditionModel"));
    TRY(want_str(o, "addition_embed_type", NULL, what, "SDXL"));
    TRY(want_str(o, "class_embed_type", NULL, what, "class-conditioned UNet"));
    TRY(want_str(o, "encoder_hid_dim_type", NULL, what, "projected text embeddings"));
    TRY(sdc_json_opt_int(o, "time_cond_proj_dim", 1, COND_PROJ_DIM_MAX, what,
                         &c->time_cond_proj_dim));
    TRY(want_num(o, "num_class_embeds", -1, what, "class-conditioned UNet"));
    TRY(want_bool(o, "use_linear_projection", 0, what, "SD 2.x"));
    TRY(want_bool(o, "center_input_sample", 0, what, "not SD 1.x"));
    TRY(want_bool(o, "dual_cross_attention", 0, what, "not SD 1.x"));
    TRY(want_bool(o, "flip_sin_to_cos", 1, what, "not SD 1.x"));
    TRY(want_num(o, "freq_shift", 0, what, "not SD 1.x"));
    TRY(want_num(o, "downsample_padding", 1, what, "not SD 1.x"));
    TRY(want_num(o, "mid_block_scale_factor", 1, what, "not SD 1.x"));
    TRY(want_num(o, "conv_in_kernel", 3, what, "not SD 1.x"));
    TRY(want_num(o, "conv_out_kernel", 3, what, "not SD 1.x"));
    TRY(want_str(o, "act_fn", "silu", what, "not SD 1.x"));
    TRY(want_str(o, "resnet_time_scale_shift", "default", what, "not SD 1.x"));
    TRY(want_str(o, "time_embedding_type", "positional", what, "not SD 1.x"));
    TRY(want_str(o, "mid_block_type", "UNetMidBlock2DCrossAttn", what, "not SD 1.x"));
    TRY(want_str(o, "attention_type", "default", what, "not SD 1.x"));
    const cJSON *oca = cJSON_GetObjectItemCaseSensitive(o, "only_cross_attention");
    if (oca && !cJSON_IsNull(oca) && !cJSON_IsFalse(oca))
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: only_cross_attention is not supported", what);

    TRY(sdc_json_opt_int(o, "in_channels", 1, 64, what, &c->in_channels));
    TRY(sdc_json_opt_int(o, "out_channels", 1, 64, what, &c->out_channels));
    TRY(sdc_json_opt_int(o, "sample_size", 1, 4096, what, &c->sample_size));
    TRY(sdc_json_opt_int(o, "norm_num_groups", 1, 1024, what, &c->groups));
    double eps = c->eps;
    TRY(sdc_json_opt_double(o, "norm_eps", 1e-12, 0.1, what, &eps));
    c->eps = (float)eps;

    const cJSON *lpb = cJSON_GetObjectItemCaseSensitive(o, "layers_per_block");
    if (cJSON_IsArray(lpb))
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: per-level layers_per_block is not supported",
                        what);
    TRY(sdc_json_opt_int(o, "layers_per_block", 1, 16, what, &c->layers_per_block));
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(o, "transformer_layers_per_block");
    if (cJSON_IsArray(tl))
        return sdc_fail(SDC_ERR_UNSUPPORTED,
                        "%s: per-level transformer_layers_per_block is not supported (SDXL)", what);
    TRY(sdc_json_opt_int(o, "transformer_layers_per_block", 1, 16, what, &c->transformer_depth));
    const cJSON *cad = cJSON_GetObjectItemCaseSensitive(o, "cross_attention_dim");
    if (cJSON_IsArray(cad))
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: per-level cross_attention_dim is not supported",
                        what);
    TRY(sdc_json_opt_int(o, "cross_attention_dim", 1, 16384, what, &c->cross_dim));

    /* diffusers: num_attention_heads = num_attention_heads or attention_head_dim */
    const char *hkey = "attention_head_dim";
    const cJSON *nah = cJSON_GetObjectItemCaseSensitive(o, "num_attention_heads");
    if (nah && !cJSON_IsNull(nah)) hkey = "num_attention_heads";
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, hkey);
    if (cJSON_IsArray(h)) {
        int v[SDC_MAX_LEVELS], n;
        TRY(int_list(o, hkey, 1, 1024, what, v, &n));
        for (int i = 1; i < n; i++)
            if (v[i] != v[0])
                return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: per-level %s is not supported (SD 2.x)",
                                what, hkey);
        c->heads = v[0];
    } else {
        TRY(sdc_json_opt_int(o, hkey, 1, 1024, what, &c->heads));
    }

    int levels;
    TRY(int_list(o, "block_out_channels", 1, 16384, what, c->channels, &levels));
    c->levels = levels;
    const cJSON *down = cJSON_GetObjectItemCaseSensitive(o, "down_block_types");
    const cJSON *up = cJSON_GetObjectItemCaseSensitive(o, "up_block_types");
    if (!cJSON_IsArray(down) || cJSON_GetArraySize(down) != levels || !cJSON_IsArray(up) ||
        cJSON_GetArraySize(up) != levels)
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: down_block_types and up_block_types must list %d block types", what,
                        levels);
    for (int i = 0; i < levels; i++) {
        const char *d = str_at(down, i), *u = str_at(up, levels - 1 - i);
        if (d && strcmp(d, "CrossAttnDownBlock2D") == 0)
            c->attn[i] = 1;
        else if (d && strcmp(d, "DownBlock2D") == 0)
            c->attn[i] = 0;
        else
            return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: down block type \"%.40s\" is not supported",
                            what, d ? d : "?");
        const char *want = c->attn[i] ? "CrossAttnUpBlock2D" : "UpBlock2D";
        if (!u || strcmp(u, want) != 0)
            return sdc_fail(SDC_ERR_UNSUPPORTED,
                            "%s: up block type \"%.40s\" at %d is not supported (expected %s, "
                            "mirroring the down blocks)",
                            what, u ? u : "?", levels - 1 - i, want);
    }
    for (int i = levels; i < SDC_MAX_LEVELS; i++) c->channels[i] = c->attn[i] = 0;
    return check_groups(c->channels, levels, c->groups, what);
}

static sdc_status parse_vae(const cJSON *o, const char *what, sdc_vae_config *c) {
    *c = sdc_vae_config_sd1();
    if (!cJSON_IsObject(o)) return sdc_fail(SDC_ERR_FORMAT, "%s: not a JSON object", what);
    TRY(want_str(o, "_class_name", "AutoencoderKL", what, "sdc runs AutoencoderKL"));
    TRY(want_str(o, "act_fn", "silu", what, "not SD 1.x"));
    TRY(want_num(o, "shift_factor", -1, what, "SD 3 / FLUX VAE"));
    TRY(want_str(o, "latents_mean", NULL, what, "not SD 1.x"));
    TRY(want_bool(o, "use_quant_conv", 1, what, "not SD 1.x"));
    TRY(want_bool(o, "use_post_quant_conv", 1, what, "not SD 1.x"));
    TRY(want_bool(o, "mid_block_add_attention", 1, what, "not SD 1.x"));
    TRY(sdc_json_opt_int(o, "in_channels", 1, 64, what, &c->in_channels));
    TRY(sdc_json_opt_int(o, "out_channels", 1, 64, what, &c->out_channels));
    TRY(sdc_json_opt_int(o, "latent_channels", 1, 64, what, &c->latent_channels));
    TRY(sdc_json_opt_int(o, "layers_per_block", 1, 16, what, &c->layers_per_block));
    TRY(sdc_json_opt_int(o, "norm_num_groups", 1, 1024, what, &c->groups));
    double sf = c->scaling_factor;
    TRY(sdc_json_opt_double(o, "scaling_factor", 1e-6, 1e6, what, &sf));
    c->scaling_factor = (float)sf;
    /* a [h, w] list loads, but diffusers' tiled decode needs one number */
    if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "sample_size")))
        c->sample_size = 0;
    else
        TRY(sdc_json_opt_int(o, "sample_size", 1, 1 << 16, what, &c->sample_size));
    int levels;
    TRY(int_list(o, "block_out_channels", 1, 16384, what, c->channels, &levels));
    c->levels = levels;
    for (int i = levels; i < SDC_MAX_LEVELS; i++) c->channels[i] = 0;
    const cJSON *down = cJSON_GetObjectItemCaseSensitive(o, "down_block_types");
    const cJSON *up = cJSON_GetObjectItemCaseSensitive(o, "up_block_types");
    for (int i = 0; i < levels; i++) {
        const char *d = down ? str_at(down, i) : "DownEncoderBlock2D";
        const char *u = up ? str_at(up, i) : "UpDecoderBlock2D";
        if (!d || strcmp(d, "DownEncoderBlock2D") != 0)
            return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: down block type \"%.40s\" is not supported",
                            what, d ? d : "?");
        if (!u || strcmp(u, "UpDecoderBlock2D") != 0)
            return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: up block type \"%.40s\" is not supported",
                            what, u ? u : "?");
    }
    if ((down && cJSON_GetArraySize(down) != levels) || (up && cJSON_GetArraySize(up) != levels))
        return sdc_fail(SDC_ERR_FORMAT, "%s: down/up_block_types must list %d block types", what,
                        levels);
    return check_groups(c->channels, levels, c->groups, what);
}

static sdc_status parse_clip(const cJSON *o, const char *what, sdc_clip_config *c) {
    *c = sdc_clip_config_sd1();
    if (!cJSON_IsObject(o)) return sdc_fail(SDC_ERR_FORMAT, "%s: not a JSON object", what);
    TRY(want_str(o, "model_type", "clip_text_model", what, "sdc runs CLIPTextModel"));
    TRY(sdc_json_opt_int(o, "vocab_size", 1, 1 << 20, what, &c->vocab_size));
    TRY(sdc_json_opt_int(o, "hidden_size", 1, 16384, what, &c->hidden));
    TRY(sdc_json_opt_int(o, "num_hidden_layers", 1, 256, what, &c->layers));
    TRY(sdc_json_opt_int(o, "num_attention_heads", 1, 1024, what, &c->heads));
    TRY(sdc_json_opt_int(o, "intermediate_size", 1, 1 << 18, what, &c->intermediate));
    TRY(sdc_json_opt_int(o, "max_position_embeddings", 1, 1 << 16, what, &c->max_positions));
    double eps = c->eps;
    TRY(sdc_json_opt_double(o, "layer_norm_eps", 1e-12, 0.1, what, &eps));
    c->eps = (float)eps;
    int bad = 0;
    const char *act = sdc_json_opt_string(o, "hidden_act", &bad);
    if (bad) return sdc_fail(SDC_ERR_FORMAT, "%s: \"hidden_act\" must be a string", what);
    if (act) {
        if (strcmp(act, "quick_gelu") == 0)
            c->quick_gelu = 1;
        else if (strcmp(act, "gelu") == 0)
            c->quick_gelu = 0;
        else
            return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: hidden_act \"%.40s\" is not supported", what,
                            act);
    }
    if (c->hidden % c->heads != 0)
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: hidden_size %d is not a multiple of num_attention_heads %d", what,
                        c->hidden, c->heads);
    return SDC_OK;
}

static sdc_status parse_sched(const cJSON *o, const char *what, sdc_sched_config *c) {
    *c = sdc_sched_config_sd1();
    if (!cJSON_IsObject(o)) return sdc_fail(SDC_ERR_FORMAT, "%s: not a JSON object", what);
    const cJSON *tb = cJSON_GetObjectItemCaseSensitive(o, "trained_betas");
    if (tb && !cJSON_IsNull(tb))
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: trained_betas are not supported", what);
    TRY(sdc_json_opt_int(o, "num_train_timesteps", 2, 100000, what, &c->num_train_timesteps));
    TRY(sdc_json_opt_double(o, "beta_start", 1e-8, 0.999, what, &c->beta_start));
    TRY(sdc_json_opt_double(o, "beta_end", 1e-8, 0.999, what, &c->beta_end));
    if (c->beta_start > c->beta_end)
        return sdc_fail(SDC_ERR_FORMAT, "%s: beta_start %g is larger than beta_end %g", what,
                        c->beta_start, c->beta_end);
    TRY(sdc_json_opt_int(o, "steps_offset", 0, c->num_train_timesteps - 1, what, &c->steps_offset));
    TRY(sdc_json_opt_bool(o, "set_alpha_to_one", what, &c->set_alpha_to_one));
    TRY(sdc_json_opt_bool(o, "clip_sample", what, &c->clip_sample));
    int bad = 0;
    const char *bs = sdc_json_opt_string(o, "beta_schedule", &bad);
    if (bad) return sdc_fail(SDC_ERR_FORMAT, "%s: \"beta_schedule\" must be a string", what);
    if (bs) {
        if (strcmp(bs, "scaled_linear") == 0)
            c->beta_schedule = SDC_BETA_SCALED_LINEAR;
        else if (strcmp(bs, "linear") == 0)
            c->beta_schedule = SDC_BETA_LINEAR;
        else
            return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: beta_schedule \"%.40s\" is not supported",
                            what, bs);
    }
    const char *pt = sdc_json_opt_string(o, "prediction_type", &bad);
    if (bad) return sdc_fail(SDC_ERR_FORMAT, "%s: \"prediction_type\" must be a string", what);
    if (pt) {
        if (strcmp(pt, "v_prediction") == 0)
            return sdc_fail(SDC_ERR_UNSUPPORTED,
                            "%s: v-prediction models (SD 2.x 768-v) are not supported", what);
        if (strcmp(pt, "epsilon") != 0)
            return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: prediction_type \"%.40s\" is not supported",
                            what, pt);
    }
    return SDC_OK;
}

/* Reads dir/rel/config.json with parse() if present, else infer(). */
typedef sdc_status (*parse_fn)(const cJSON *, const char *, void *);

static sdc_status config_from(const char *dir, const char *rel, parse_fn parse, void *cfg) {
    char path[PATH_CAP];
    if (!join(path, dir, rel)) return sdc_fail(SDC_ERR_IO, "%s: path too long", dir);
    cJSON *o;
    TRY(sdc_json_read_file(path, CONFIG_MAX, &o));
    sdc_status st = parse(o, path, cfg);
    cJSON_Delete(o);
    return st;
}

static sdc_status parse_unet_v(const cJSON *o, const char *w, void *c) {
    return parse_unet(o, w, c);
}
static sdc_status parse_vae_v(const cJSON *o, const char *w, void *c) { return parse_vae(o, w, c); }
static sdc_status parse_clip_v(const cJSON *o, const char *w, void *c) {
    return parse_clip(o, w, c);
}
static sdc_status parse_sched_v(const cJSON *o, const char *w, void *c) {
    return parse_sched(o, w, c);
}

/* ---- family checks shared by both layouts ------------------------------- */

static sdc_status check_family(const sdc_model_files *mf) {
    const sdc_unet_config *u = &mf->unet;
    if (get(mf, "unet.add_embedding.linear_1.weight"))
        return sdc_fail(SDC_ERR_UNSUPPORTED,
                        "SDXL models are not supported (UNet has add_embedding)");
    if (get(mf, "unet.class_embedding.linear_1.weight") || get(mf, "unet.class_embedding.weight"))
        return sdc_fail(SDC_ERR_UNSUPPORTED,
                        "class-conditioned UNets (unCLIP, upscalers) are not supported");
    if (u->cross_dim == 2048 || mf->clip.hidden == 1280)
        return sdc_fail(SDC_ERR_UNSUPPORTED,
                        "SDXL models are not supported (cross-attention dim %d)", u->cross_dim);
    if (u->cross_dim == 1024 || mf->clip.hidden == 1024 || u->use_linear_projection)
        return sdc_fail(
            SDC_ERR_UNSUPPORTED,
            "SD 2.x models are not supported (OpenCLIP text encoder, cross-attention dim %d%s)",
            u->cross_dim, u->use_linear_projection ? ", linear projections" : "");
    if (u->in_channels == 8)
        return sdc_fail(SDC_ERR_UNSUPPORTED,
                        "InstructPix2Pix models are not supported (UNet in_channels 8)");
    /* an inpainting UNet also takes the mask and the masked image's latent */
    const int lc = mf->vae.latent_channels;
    if ((u->in_channels != lc && u->in_channels != 2 * lc + 1) || u->out_channels != lc)
        return sdc_fail(SDC_ERR_UNSUPPORTED,
                        "UNet in/out channels %d/%d do not match the VAE's %d latent channels",
                        u->in_channels, u->out_channels, mf->vae.latent_channels);
    if (u->cross_dim != mf->clip.hidden)
        return sdc_fail(
            SDC_ERR_FORMAT,
            "UNet cross-attention dim %d does not match the text encoder's hidden size %d",
            u->cross_dim, mf->clip.hidden);
    return SDC_OK;
}

/* An LCM-distilled UNet adds a projection of the guidance-scale embedding to
 * the timestep's (diffusers' TimestepEmbedding.cond_proj: Linear(dim, C0)
 * without bias).  The config's time_cond_proj_dim (config: where it was
 * read; NULL when inferred from the weight) and the weight must agree, and
 * a weight no config asks for is refused rather than silently dropped. */
static sdc_status check_cond_proj(const sdc_model_files *mf, const char *file,
                                  const char *config) {
    const int dim = mf->unet.time_cond_proj_dim, C0 = mf->unet.channels[0];
    const sdc_weight *w = get(mf, "unet." COND_PROJ);
    if (!w && dim)
        return sdc_fail(SDC_ERR_FORMAT, "%s: %s sets time_cond_proj_dim %d, but tensor " COND_PROJ
                        " (the guidance embedding) is missing",
                        file, config ? config : "the UNet config", dim);
    if (!w) return SDC_OK;
    if (!dim && config)
        return sdc_fail(SDC_ERR_FORMAT, "%s: tensor " COND_PROJ " (an LCM guidance embedding) is "
                        "present, but %s has no time_cond_proj_dim", file, config);
    if (w->ndim != 2 || w->shape[0] != C0 || w->shape[1] != dim) {
        char got[96] = "[";
        for (int i = 0; i < w->ndim && i < 8; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "",
                     (long long)w->shape[i]);
        snprintf(got + strlen(got), sizeof got - strlen(got), "]");
        if (config)
            return sdc_fail(SDC_ERR_FORMAT, "%s: tensor " COND_PROJ " has shape %s, expected "
                            "[%d, %d] (block_out_channels[0], time_cond_proj_dim of %s)", file,
                            got, C0, dim, config);
        return sdc_fail(SDC_ERR_FORMAT, "%s: tensor " COND_PROJ " has shape %s, expected [%d, N] "
                        "(the UNet's %d channels, N in [1, %d])", file, got, C0, C0,
                        COND_PROJ_DIM_MAX);
    }
    if (get(mf, "unet.time_embedding.cond_proj.bias"))
        return sdc_fail(SDC_ERR_FORMAT, "%s: tensor time_embedding.cond_proj.bias: diffusers' "
                        "cond_proj has no bias", file);
    return SDC_OK;
}

/* ---- single-file checkpoints --------------------------------------------- */

static sdc_status pickle_message(const char *path) {
    return sdc_fail(
        SDC_ERR_UNSUPPORTED,
        "%.300s is a PyTorch pickle checkpoint (.ckpt/.pt/.bin); sdc reads only .safetensors "
        "(pickles can run code). Convert it once with: python -c \"import torch, "
        "safetensors.torch as s; d = torch.load('IN.ckpt', map_location='cpu', "
        "weights_only=True); d = d.get('state_dict', d); s.save_file({k: v.contiguous().clone() "
        "for k, v in d.items() if isinstance(v, torch.Tensor)}, 'OUT.safetensors')\"",
        path);
}

/* Zip (torch.save since 1.6) or a raw pickle (protocol 2-5), unless the
 * bytes also read as a safetensors header ("{" after the length). */
static sdc_status check_not_pickle(const char *path) {
    unsigned char b[9] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return sdc_fail(SDC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t n = fread(b, 1, sizeof b, fp);
    fclose(fp);
    if (n == sizeof b && b[8] == '{') return SDC_OK;
    if (n >= 4 && memcmp(b, "PK\x03\x04", 4) == 0) return pickle_message(path);
    if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5) return pickle_message(path);
    return SDC_OK;
}

/* Reads L (UNet layers_per_block) and the VAE levels off the original names. */
static sdc_status scan_original(const sdc_st_file *f, sdc_orig_layout *lay) {
    const char *path = sdc_st_path(f);
    int max_in = -1, min_op = -1, vae_enc = 0, vae_dec = 0;
    for (size_t i = 0; i < sdc_st_count(f); i++) {
        const char *p = sdc_st_at(f, i)->name;
        if (has_prefix(p, "model.diffusion_model.input_blocks.")) {
            p += strlen("model.diffusion_model.input_blocks.");
            int n = sdc_name_index_at(&p), k = n < 0 ? -1 : sdc_name_index_at(&p);
            if (k < 0) continue;
            if (n > max_in) max_in = n;
            if (k == 0 && has_prefix(p, "op.") && (min_op < 0 || n < min_op)) min_op = n;
        } else if (has_prefix(p, "first_stage_model.encoder.down.")) {
            p += strlen("first_stage_model.encoder.down.");
            int n = sdc_name_index_at(&p);
            if (n + 1 > vae_enc) vae_enc = n + 1;
        } else if (has_prefix(p, "first_stage_model.decoder.up.")) {
            p += strlen("first_stage_model.decoder.up.");
            int n = sdc_name_index_at(&p);
            if (n + 1 > vae_dec) vae_dec = n + 1;
        }
    }
    if (max_in < 1) return sdc_fail(SDC_ERR_FORMAT, "%s: UNet has no input_blocks", path);
    /* input_blocks: conv_in, then per level L resnets (+ a downsampler but the last) */
    int L = min_op > 0 ? min_op - 1 : max_in;
    if (L < 1 || (max_in + 1) % (L + 1) != 0)
        return sdc_fail(SDC_ERR_FORMAT, "%s: UNet input_blocks 0..%d do not form equal levels",
                        path, max_in);
    if (vae_enc < 1 || vae_enc != vae_dec)
        return sdc_fail(SDC_ERR_FORMAT, "%s: VAE has %d encoder and %d decoder levels", path,
                        vae_enc, vae_dec);
    lay->unet_layers = L;
    lay->vae_levels = vae_enc;
    return SDC_OK;
}

/* Which family a single file belongs to, by its names. */
static sdc_status check_single_names(const sdc_st_file *f) {
    const char *path = sdc_st_path(f);
    int unet = 0, vae = 0, text = 0, diffusers = 0;
    for (size_t i = 0; i < sdc_st_count(f); i++) {
        const char *p = sdc_st_at(f, i)->name;
        if (has_prefix(p, "conditioner.embedders."))
            return sdc_fail(SDC_ERR_UNSUPPORTED,
                            "%s: SDXL checkpoints are not supported (conditioner.embedders.*)",
                            path);
        if (has_prefix(p, "cond_stage_model.model."))
            return sdc_fail(SDC_ERR_UNSUPPORTED,
                            "%s: SD 2.x checkpoints are not supported (OpenCLIP text encoder "
                            "cond_stage_model.model.*)",
                            path);
        if (has_prefix(p, "model.diffusion_model.label_emb."))
            return sdc_fail(SDC_ERR_UNSUPPORTED,
                            "%s: SDXL checkpoints are not supported (label_emb)", path);
        unet |= has_prefix(p, "model.diffusion_model.");
        vae |= has_prefix(p, "first_stage_model.");
        text |= has_prefix(p, "cond_stage_model.transformer.");
        diffusers |= has_prefix(p, "down_blocks.") || has_prefix(p, "text_model.") ||
                     has_prefix(p, "encoder.down_blocks.");
    }
    if (!unet && diffusers)
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: a single diffusers component, not a whole checkpoint; open the "
                        "diffusers folder instead",
                        path);
    if (!unet)
        return sdc_fail(
            SDC_ERR_FORMAT,
            "%s: not a Stable Diffusion checkpoint (no model.diffusion_model.* tensors)", path);
    if (!vae)
        return sdc_fail(SDC_ERR_FORMAT, "%s: checkpoint has no VAE (first_stage_model.*)", path);
    if (!text)
        return sdc_fail(SDC_ERR_FORMAT,
                        "%s: checkpoint has no CLIP text encoder (cond_stage_model.transformer.*)",
                        path);
    return SDC_OK;
}

static sdc_status open_single(sdc_model_files *mf, const char *path) {
    mf->layout = SDC_LAYOUT_SINGLE_FILE;
    TRY(check_not_pickle(path));
    TRY(sdc_st_open(path, &mf->files[0]));
    const sdc_st_file *f = mf->files[0];
    TRY(check_single_names(f));
    sdc_orig_layout lay;
    TRY(scan_original(f, &lay));
    TRY(alloc_table(mf, sdc_st_count(f)));
    char key[NAME_CAP];
    for (size_t i = 0; i < sdc_st_count(f); i++) {
        const sdc_weight *w = sdc_st_at(f, i);
        sdc_name_result r = sdc_name_from_original(w->name, &lay, key, sizeof key);
        if (r == SDC_NAME_IGNORED) continue;
        if (r == SDC_NAME_BAD)
            return sdc_fail(SDC_ERR_FORMAT, "%s: tensor '%.200s' does not fit the SD 1.x layout",
                            path, w->name);
        TRY(add_weight(mf, key, w, path));
    }
    sdc_status st;
    if ((st = infer_unet(mf, &mf->unet)) != SDC_OK || (st = infer_vae(mf, &mf->vae)) != SDC_OK ||
        (st = infer_clip(mf, &mf->clip)) != SDC_OK || (st = check_family(mf)) != SDC_OK)
        return sdc_fail_context(st, "%s", path);
    TRY(check_cond_proj(mf, path, NULL));
    mf->sched = sdc_sched_config_sd1();
    return SDC_OK;
}

/* ---- diffusers folders ----------------------------------------------------- */

static const char *const k_comp_dir[COMP_COUNT] = {"unet", "vae", "text_encoder"};
static const char *const k_comp_file[COMP_COUNT] = {"diffusion_pytorch_model",
                                                    "diffusion_pytorch_model", "model"};
static const char *const k_comp_what[COMP_COUNT] = {"UNet", "VAE", "text encoder"};

static sdc_status open_component(sdc_model_files *mf, const char *dir, int c) {
    char sub[PATH_CAP], p[PATH_CAP], rel[256];
    if (!join(sub, dir, k_comp_dir[c])) return sdc_fail(SDC_ERR_IO, "%s: path too long", dir);
    if (!sdc_is_dir(sub))
        return sdc_fail(SDC_ERR_FORMAT, "%s: the %s is missing (no %s/ folder)", dir,
                        k_comp_what[c], k_comp_dir[c]);
    static const char *const exts[] = {".safetensors", ".fp16.safetensors"};
    for (int e = 0; e < 2; e++) {
        snprintf(rel, sizeof rel, "%s%s", k_comp_file[c], exts[e]);
        if (join(p, sub, rel) && sdc_is_file(p)) {
            TRY(check_not_pickle(p));
            return sdc_st_open(p, &mf->files[c]);
        }
    }
    static const char *const bins[] = {".bin", ".fp16.bin", ".safetensors.index.json"};
    for (int e = 0; e < 3; e++) {
        snprintf(rel, sizeof rel, "%s%s", k_comp_file[c], bins[e]);
        if (!join(p, sub, rel) || !sdc_is_file(p)) continue;
        if (e == 2)
            return sdc_fail(SDC_ERR_UNSUPPORTED,
                            "%s: sharded weights are not supported; save the model unsharded", p);
        return sdc_fail(
            SDC_ERR_UNSUPPORTED,
            "%.300s: PyTorch pickle weights; sdc needs safetensors. Convert the folder once with: "
            "python -c \"from diffusers import StableDiffusionPipeline as P; "
            "P.from_pretrained('IN').save_pretrained('OUT', safe_serialization=True)\"",
            p);
    }
    return sdc_fail(SDC_ERR_FORMAT, "%s: the %s weights are missing (no %s/%s.safetensors)", dir,
                    k_comp_what[c], k_comp_dir[c], k_comp_file[c]);
}

static sdc_status check_model_index(const char *dir) {
    char p[PATH_CAP];
    if (join(p, dir, "text_encoder_2") && sdc_is_dir(p))
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: SDXL models are not supported (text_encoder_2/)",
                        dir);
    if (!join(p, dir, "model_index.json") || !sdc_is_file(p)) return SDC_OK;
    cJSON *o;
    TRY(sdc_json_read_file(p, CONFIG_MAX, &o));
    sdc_status st = SDC_OK;
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(o, "_class_name");
    const char *name = cJSON_IsString(cls) ? cls->valuestring : NULL;
    if (!cJSON_IsObject(o)) {
        st = sdc_fail(SDC_ERR_FORMAT, "%s: not a JSON object", p);
    } else if (cJSON_GetObjectItemCaseSensitive(o, "text_encoder_2")) {
        st = sdc_fail(SDC_ERR_UNSUPPORTED, "%s: SDXL models are not supported (text_encoder_2)", p);
    } else if (name &&
               (strstr(name, "XL") || strstr(name, "StableDiffusion3") || strstr(name, "Flux") ||
                strstr(name, "Upscale") || strstr(name, "UnCLIP") ||
                (strstr(name, "Inpaint") && strcmp(name, "StableDiffusionInpaintPipeline") != 0))) {
        st = sdc_fail(SDC_ERR_UNSUPPORTED, "%s: %.60s models are not supported (sdc runs SD 1.x)",
                      p, name);
    }
    cJSON_Delete(o);
    return st;
}

static sdc_status open_folder(sdc_model_files *mf, const char *dir) {
    mf->layout = SDC_LAYOUT_DIFFUSERS;
    char p[PATH_CAP];
    int known = join(p, dir, "model_index.json") && sdc_is_file(p);
    for (int c = 0; c < COMP_COUNT; c++) known |= join(p, dir, k_comp_dir[c]) && sdc_is_dir(p);
    if (!known)
        return sdc_fail(
            SDC_ERR_FORMAT,
            "%s: not a diffusers model folder (no model_index.json, unet/, vae/ or text_encoder/)",
            dir);
    TRY(check_model_index(dir));
    size_t total = 0;
    for (int c = 0; c < COMP_COUNT; c++) {
        TRY(open_component(mf, dir, c));
        total += sdc_st_count(mf->files[c]);
    }
    TRY(alloc_table(mf, total));
    char key[NAME_CAP];
    for (int c = 0; c < COMP_COUNT; c++) {
        const sdc_st_file *f = mf->files[c];
        for (size_t i = 0; i < sdc_st_count(f); i++) {
            const sdc_weight *w = sdc_st_at(f, i);
            if (sdc_name_from_diffusers(k_comp_dir[c], w->name, key, sizeof key) != SDC_NAME_MAPPED)
                return sdc_fail(SDC_ERR_FORMAT, "%s: tensor name '%.200s' is too long",
                                sdc_st_path(f), w->name);
            TRY(add_weight(mf, key, w, sdc_st_path(f)));
        }
    }

    /* configs: config.json where present, else shapes */
    static const char *const cfg_rel[COMP_COUNT] = {"unet/config.json", "vae/config.json",
                                                    "text_encoder/config.json"};
    parse_fn parse[COMP_COUNT] = {parse_unet_v, parse_vae_v, parse_clip_v};
    void *cfg[COMP_COUNT] = {&mf->unet, &mf->vae, &mf->clip};
    for (int c = 0; c < COMP_COUNT; c++) {
        if (join(p, dir, cfg_rel[c]) && sdc_is_file(p)) {
            TRY(config_from(dir, cfg_rel[c], parse[c], cfg[c]));
            continue;
        }
        sdc_status st = c == COMP_UNET  ? infer_unet(mf, &mf->unet)
                        : c == COMP_VAE ? infer_vae(mf, &mf->vae)
                                        : infer_clip(mf, &mf->clip);
        if (st != SDC_OK) return sdc_fail_context(st, "%s", dir);
    }
    mf->sched = sdc_sched_config_sd1();
    if (join(p, dir, "scheduler/scheduler_config.json") && sdc_is_file(p))
        TRY(config_from(dir, "scheduler/scheduler_config.json", parse_sched_v, &mf->sched));
    sdc_status st = check_family(mf);
    if (st != SDC_OK) return sdc_fail_context(st, "%s", dir);
    const int unet_cfg = join(p, dir, cfg_rel[COMP_UNET]) && sdc_is_file(p);
    TRY(check_cond_proj(mf, sdc_st_path(mf->files[COMP_UNET]), unet_cfg ? p : NULL));

    char m[PATH_CAP];
    if (join(p, dir, "tokenizer/vocab.json") && sdc_is_file(p) &&
        join(m, dir, "tokenizer/merges.txt") && sdc_is_file(m)) {
        mf->vocab = dup_str(p);
        mf->merges = dup_str(m);
        if (!mf->vocab || !mf->merges) return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    }
    return SDC_OK;
}

/* ---- public ------------------------------------------------------------------ */

sdc_status sdc_model_files_open(const char *path, sdc_model_files **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return sdc_fail(SDC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    sdc_model_files *mf = calloc(1, sizeof *mf);
    if (!mf || !(mf->name = base_name(path))) {
        free(mf);
        return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    }
    sdc_status st;
    if (S_ISDIR(sb.st_mode))
        st = open_folder(mf, path);
    else if (S_ISREG(sb.st_mode))
        st = open_single(mf, path);
    else
        st = sdc_fail(SDC_ERR_IO, "%s: neither a file nor a folder", path);
    if (st != SDC_OK) {
        sdc_model_files_close(mf);
        return st;
    }
    *out = mf;
    return SDC_OK;
}

void sdc_model_files_close(sdc_model_files *mf) {
    if (!mf) return;
    for (size_t i = 0; i < mf->count; i++) free(mf->keys[i]);
    free(mf->keys);
    free(mf->weights);
    free(mf->orig);
    free(mf->pageable);
    sdc_name_index_free(&mf->index);
    for (int c = 0; c < COMP_COUNT; c++) sdc_st_close(mf->files[c]);
    free(mf->vocab);
    free(mf->merges);
    free(mf->name);
    free(mf);
}

sdc_layout sdc_model_files_layout(const sdc_model_files *mf) { return mf->layout; }

const sdc_weight *sdc_model_files_get(const sdc_model_files *mf, const char *name) {
    size_t i;
    return sdc_name_index_get(&mf->index, name, &i) ? &mf->weights[i] : NULL;
}

size_t sdc_model_files_count(const sdc_model_files *mf) { return mf->count; }

const char *sdc_model_files_key(const sdc_model_files *mf, size_t i) {
    return i < mf->count ? mf->keys[i] : NULL;
}

const sdc_clip_config *sdc_model_files_clip(const sdc_model_files *mf) { return &mf->clip; }
const sdc_unet_config *sdc_model_files_unet(const sdc_model_files *mf) { return &mf->unet; }
const sdc_vae_config *sdc_model_files_vae(const sdc_model_files *mf) { return &mf->vae; }
const sdc_sched_config *sdc_model_files_sched(const sdc_model_files *mf) { return &mf->sched; }
const char *sdc_model_files_vocab_path(const sdc_model_files *mf) { return mf->vocab; }
const char *sdc_model_files_merges_path(const sdc_model_files *mf) { return mf->merges; }
const char *sdc_model_files_name(const sdc_model_files *mf) { return mf->name; }

/* The pages wholly inside replaced weight i's original data in file c,
 * released: rounding in leaves a neighbour's page mapped (rounding out
 * would unmap it, and its next fault map the whole folio back in). */
static int drop_original(const sdc_model_files *mf, int c, size_t i) {
    long pg = sysconf(_SC_PAGESIZE);
    const uintptr_t ps = pg > 0 ? (uintptr_t)pg : 4096;
    const uintptr_t o = (uintptr_t)mf->orig[i], e = o + mf->weights[i].nbytes;
    const uintptr_t lo = (o + ps - 1) / ps * ps, hi = e / ps * ps;
    return hi > lo && sdc_st_advise(mf->files[c], (const void *)lo, hi - lo, SDC_PAGES_RELEASE);
}

void sdc_model_files_advise(const sdc_model_files *mf, const sdc_weight *w,
                            sdc_page_advice advice) {
    if (!mf || !w) return;
    if (mf->orig && w >= mf->weights && w < mf->weights + mf->count &&
        mf->orig[w - mf->weights]) {
        /* merged data: a shared file mapping keeps what it drops; anonymous
         * memory would come back zeroed, so it is left alone */
        if (mf->pageable[w - mf->weights] && sdc_pages_advise(w->data, w->nbytes, advice) &&
            advice != SDC_PAGES_PREFETCH)
            atomic_fetch_add(&((sdc_model_files *)mf)->released, w->nbytes);
        return;
    }
    for (int c = 0; c < COMP_COUNT; c++)
        if (sdc_st_advise(mf->files[c], w->data, w->nbytes, advice)) {
            if (advice != SDC_PAGES_PREFETCH) /* the counter is no part of the files' state */
                atomic_fetch_add(&((sdc_model_files *)mf)->released, w->nbytes);
            if (advice == SDC_PAGES_PREFETCH && mf->n_replaced) {
                /* replaced originals the folios around w brought in */
                const uintptr_t lo = (uintptr_t)w->data, hi = lo + w->nbytes;
                for (size_t i = 0; i < mf->count; i++) {
                    const uintptr_t o = (uintptr_t)mf->orig[i];
                    if (o && o < hi + FOLIO_REACH && o + mf->weights[i].nbytes + FOLIO_REACH > lo)
                        drop_original(mf, c, i);
                }
            }
            return;
        }
}

size_t sdc_model_files_released_bytes(const sdc_model_files *mf) {
    return mf ? atomic_load(&((sdc_model_files *)mf)->released) : 0;
}

size_t sdc_model_files_prefixed(const sdc_model_files *mf, const char *prefix,
                                const sdc_weight **out, size_t cap) {
    if (!mf || !prefix) return 0;
    size_t len = strlen(prefix), n = 0;
    for (size_t i = 0; i < mf->count; i++)
        if (strncmp(mf->keys[i], prefix, len) == 0) {
            if (n < cap) out[n] = &mf->weights[i];
            n++;
        }
    return n;
}

void sdc_model_files_advise_prefix(const sdc_model_files *mf, const char *prefix,
                                   sdc_page_advice advice) {
    if (!mf || !prefix) return;
    size_t len = strlen(prefix);
    for (size_t i = 0; i < mf->count; i++)
        if (strncmp(mf->keys[i], prefix, len) == 0)
            sdc_model_files_advise(mf, &mf->weights[i], advice);
}

const sdc_weight *sdc_model_files_at(const sdc_model_files *mf, size_t i) {
    return i < mf->count ? &mf->weights[i] : NULL;
}

sdc_status sdc_model_files_set_data(sdc_model_files *mf, size_t i, const void *data,
                                    int pageable) {
    if (i >= mf->count || !data) return sdc_fail(SDC_ERR_INTERNAL, "set_data: bad weight %zu", i);
    if (!mf->orig) {
        mf->orig = calloc(mf->count, sizeof *mf->orig);
        mf->pageable = calloc(mf->count, 1);
        if (!mf->orig || !mf->pageable) {
            free(mf->orig);
            free(mf->pageable);
            mf->orig = NULL;
            mf->pageable = NULL;
            return sdc_fail(SDC_ERR_NOMEM, "out of memory");
        }
    }
    if (!mf->orig[i]) {
        mf->orig[i] = mf->weights[i].data;
        mf->n_replaced++;
    }
    mf->weights[i].data = data;
    mf->pageable[i] = pageable != 0;
    return SDC_OK;
}

void sdc_model_files_drop_replaced(const sdc_model_files *mf) {
    for (size_t i = 0; mf->n_replaced && i < mf->count; i++)
        for (int c = 0; mf->orig[i] && c < COMP_COUNT; c++)
            if (drop_original(mf, c, i)) break;
}

void sdc_model_files_restore_data(sdc_model_files *mf, size_t i) {
    if (!mf->orig || i >= mf->count || !mf->orig[i]) return;
    mf->weights[i].data = mf->orig[i];
    mf->orig[i] = NULL;
    mf->n_replaced--;
    mf->pageable[i] = 0;
}

const void *sdc_model_files_orig_data(const sdc_model_files *mf, size_t i) {
    if (i >= mf->count) return NULL;
    return mf->orig && mf->orig[i] ? mf->orig[i] : mf->weights[i].data;
}
