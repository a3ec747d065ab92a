/* TAESD (diffusers' AutoencoderTiny): loading and the two passes; the
 * structure and the files are described in taesd.h.
 *
 * Layer indices.  diffusers keeps each half as one nn.Sequential, so a
 * weight's name is its layer's index in that list:
 *   encoder.layers: 0 conv(in -> C); level 0's blocks; for each later
 *     level a stride-2 conv (no bias) then its blocks; the final
 *     conv(C -> latent).
 *   decoder.layers: 0 conv(latent -> C), 1 ReLU; per level its blocks, then
 *     (all but the last) Upsample (no weights) and conv (no bias); the final
 *     conv(C -> out).
 *   A block's convs are <index>.conv.0, .conv.2, .conv.4 (ReLUs between).
 * Without config.json the levels and blocks are read back from which
 * indices hold tensors, and the channels from the shapes.
 *
 * The clamp and the affine maps.  decode's tanh(z/3)*3 and 2x - 1 and
 * encode's (x + 1)/2 touch only the network's input and output, which cross
 * between host and backend memory anyway: they are applied on the host as
 * the data is copied (the input through a small stack buffer, the output in
 * place in the caller's array).  The alternative, a tanh op (and an affine
 * one), would add kernels to every backend (ref, the CPU paths, OpenCL,
 * the null backend, the profiler, bench_ops, test_backend_ops) for a
 * latent of 16 K floats per 512x512 image, and a device round trip
 * is paid by the copies in any case.
 *
 * Memory: a block holds its input and two temporaries ([N, C, H, W] each:
 * the skip needs x until the third conv, which adds it in place); the
 * upsampling is in place and its conv's result settles down onto it
 * (models/blocks.h), so the decoder's peak is three maps of the last level
 * (192 MiB at 512x512 with 64 channels) and the encoder's three of the
 * first, plus the input and output. */
#include "models/taesd.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "io/fs_util.h"
#include "io/json_util.h"
#include "io/safetensors.h"
#include "models/blocks.h"

#define CONFIG_MAX ((size_t)1 << 20)
#define PATH_CAP 4096
#define MAX_CHANNELS 4096
#define MAX_SIDE (1 << 16) /* pixels per image side */
#define MAX_BATCH 1024
#define HOST_CHUNK 4096    /* floats per copy through the stack buffer */
/* weights per half: first and final conv (2 each), per level a conv and
 * 3 convs x 2 tensors per block */
#define MAX_WEIGHTS (4 + SDC_TAESD_MAX_LEVELS * (1 + 6 * SDC_TAESD_MAX_BLOCKS))

enum { ENC = 0, DEC = 1 };
static const char *const k_side[2] = {"encoder", "decoder"};

/* Names in the file: diffusers' "<side>.layers.<i>.<rest>", or one of
 * madebyollin's halves, "<i + shift>.<rest>". */
enum { NAMES_DIFFUSERS = 0, NAMES_ORIGINAL_ENCODER, NAMES_ORIGINAL_DECODER };

typedef struct tiny_block {
    sdc_conv_w c[3]; /* conv.0, conv.2, conv.4: [C, C, 3, 3] + bias */
} tiny_block;

struct sdc_taesd {
    sdc_taesd_config cfg;
    sdc_st_file *file;
    int names; /* NAMES_* */
    char name[256];
    /* encoder: first conv [C, in, 3, 3]; down[l] (l > 0) [C, C, 3, 3] stride 2,
     * no bias; final conv [latent, C, 3, 3] */
    sdc_conv_w e_in, e_down[SDC_TAESD_MAX_LEVELS], e_out;
    tiny_block e_blk[SDC_TAESD_MAX_LEVELS][SDC_TAESD_MAX_BLOCKS];
    /* decoder: first conv [C, latent, 3, 3]; up[l] (l < L-1) [C, C, 3, 3] after
     * the 2x upsampling, no bias; final conv [out, C, 3, 3] */
    sdc_conv_w d_in, d_up[SDC_TAESD_MAX_LEVELS], d_out;
    tiny_block d_blk[SDC_TAESD_MAX_LEVELS][SDC_TAESD_MAX_BLOCKS];
    const sdc_weight *wl[2][MAX_WEIGHTS]; /* every bound weight, per half */
    size_t nw[2];
};

/* ---- names ------------------------------------------------------------------ */

/* The stored name of layer idx of side (rest "" for the layer itself, for
 * messages); 0 if it does not fit. */
static int layer_name(const sdc_taesd *m, int side, int idx, const char *rest, char *buf,
                      size_t cap) {
    const char *dot = rest[0] ? "." : "";
    int n;
    if (m->names == NAMES_DIFFUSERS)
        n = snprintf(buf, cap, "%s.layers.%d%s%s", k_side[side], idx, dot, rest);
    else
        n = snprintf(buf, cap, "%d%s%s", idx + (side == DEC), dot, rest);
    return n > 0 && (size_t)n < cap;
}

static const sdc_weight *find(const sdc_taesd *m, int side, int idx, const char *rest) {
    char name[128];
    return layer_name(m, side, idx, rest, name, sizeof name) ? sdc_st_find(m->file, name) : NULL;
}

/* A plain conv's weight (4-d) at idx, or NULL. */
static const sdc_weight *find_conv(const sdc_taesd *m, int side, int idx) {
    const sdc_weight *w = find(m, side, idx, "weight");
    return w && w->ndim == 4 ? w : NULL;
}
static int is_block(const sdc_taesd *m, int side, int idx) {
    return find(m, side, idx, "conv.0.weight") != NULL;
}
static int is_layer(const sdc_taesd *m, int side, int idx) {
    return find(m, side, idx, "weight") || is_block(m, side, idx);
}

/* ---- binding ------------------------------------------------------------------ */

typedef struct binder {
    sdc_taesd *m;
    int side;
    sdc_status st; /* the first failure; later binds do nothing */
} binder;

/* The tensor <idx>.<rest> with exactly this shape (need 1), or checked
 * absent (need 0: a bias-free conv's bias would be an unexpected tensor). */
static const sdc_weight *bind(binder *b, int idx, const char *rest, int need, int ndim,
                              const int64_t *shape) {
    if (b->st != SDC_OK) return NULL;
    const char *file = sdc_st_path(b->m->file);
    char name[128];
    if (!layer_name(b->m, b->side, idx, rest, name, sizeof name)) {
        b->st = sdc_fail(SDC_ERR_INTERNAL, "TAESD weight name too long");
        return NULL;
    }
    const sdc_weight *w = sdc_st_find(b->m->file, name);
    if (!need) {
        if (w)
            b->st = sdc_fail(SDC_ERR_FORMAT, "%s: unexpected tensor %s (that conv has no bias)",
                             file, name);
        return NULL;
    }
    if (!w) {
        b->st = sdc_fail(SDC_ERR_FORMAT, "%s: tensor %s is missing", file, name);
        return NULL;
    }
    if (w->dtype != SDC_DT_F32 && w->dtype != SDC_DT_F16 && w->dtype != SDC_DT_BF16) {
        b->st = sdc_fail(SDC_ERR_FORMAT, "%s: tensor %s has dtype %s, expected F32, F16 or BF16",
                         file, name, sdc_dtype_name(w->dtype));
        return NULL;
    }
    int same = w->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = w->shape[i] == shape[i];
    if (!same) {
        char got[96] = "[", want[96] = "[";
        for (int i = 0; i < w->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), i ? ", %lld" : "%lld",
                     (long long)w->shape[i]);
        for (int i = 0; i < ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), i ? ", %lld" : "%lld",
                     (long long)shape[i]);
        b->st = sdc_fail(SDC_ERR_FORMAT, "%s: tensor %s has shape %s], expected %s]", file, name,
                         got, want);
        return NULL;
    }
    assert(b->m->nw[b->side] < MAX_WEIGHTS); /* the config's limits bound the count */
    b->m->wl[b->side][b->m->nw[b->side]++] = w;
    return w;
}

/* A 3x3 conv in -> out at layer idx ("" for the layer itself, "conv.K" in a
 * block), with or without bias. */
static void bind_conv(binder *b, sdc_conv_w *c, int idx, const char *sub, int in, int out,
                      int bias) {
    char wn[32], bn[32];
    snprintf(wn, sizeof wn, "%s%sweight", sub, sub[0] ? "." : "");
    snprintf(bn, sizeof bn, "%s%sbias", sub, sub[0] ? "." : "");
    const int64_t ws[4] = {out, in, 3, 3}, bs[1] = {out};
    c->in = in, c->out = out, c->k = 3;
    c->w = bind(b, idx, wn, 1, 4, ws);
    c->b = bind(b, idx, bn, bias, 1, bs);
}

static void bind_block(binder *b, tiny_block *t, int idx, int C) {
    bind_conv(b, &t->c[0], idx, "conv.0", C, C, 1);
    bind_conv(b, &t->c[1], idx, "conv.2", C, C, 1);
    bind_conv(b, &t->c[2], idx, "conv.4", C, C, 1);
}

static sdc_status bind_encoder(sdc_taesd *m) {
    const sdc_taesd_config *c = &m->cfg;
    binder b = {m, ENC, SDC_OK};
    const int C = c->enc_channels;
    int idx = 0;
    bind_conv(&b, &m->e_in, idx++, "", c->in_channels, C, 1);
    for (int l = 0; l < c->enc_levels; l++) {
        if (l > 0) bind_conv(&b, &m->e_down[l], idx++, "", C, C, 0);
        for (int j = 0; j < c->enc_blocks[l]; j++) bind_block(&b, &m->e_blk[l][j], idx++, C);
    }
    bind_conv(&b, &m->e_out, idx, "", C, c->latent_channels, 1);
    return b.st;
}

static sdc_status bind_decoder(sdc_taesd *m) {
    const sdc_taesd_config *c = &m->cfg;
    binder b = {m, DEC, SDC_OK};
    const int C = c->dec_channels;
    int idx = 0;
    bind_conv(&b, &m->d_in, idx, "", c->latent_channels, C, 1);
    idx += 2; /* the conv, then its ReLU */
    for (int l = 0; l < c->dec_levels; l++) {
        for (int j = 0; j < c->dec_blocks[l]; j++) bind_block(&b, &m->d_blk[l][j], idx++, C);
        if (l < c->dec_levels - 1) {
            idx++; /* Upsample */
            bind_conv(&b, &m->d_up[l], idx++, "", C, C, 0);
        }
    }
    bind_conv(&b, &m->d_out, idx, "", C, c->out_channels, 1);
    return b.st;
}

/* ---- the config ---------------------------------------------------------------- */

static void config_defaults(sdc_taesd_config *c) {
    static const int enc[4] = {1, 3, 3, 3}, dec[4] = {3, 3, 3, 1};
    memset(c, 0, sizeof *c);
    c->in_channels = c->out_channels = 3;
    c->latent_channels = 4;
    c->enc_levels = c->dec_levels = 4;
    c->enc_channels = c->dec_channels = 64;
    memcpy(c->enc_blocks, enc, sizeof enc);
    memcpy(c->dec_blocks, dec, sizeof dec);
    c->scaling_factor = 1.0f;
    c->shift_factor = 0.0f;
}

/* obj[key], when present: an array of 1..SDC_TAESD_MAX_LEVELS integers in
 * [lo, hi] into out, its length in *n. */
static sdc_status json_levels(const cJSON *obj, const char *key, int lo, int hi,
                              const char *what, int *out, int *n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!a || cJSON_IsNull(a)) return SDC_OK;
    int len = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    if (len < 1 || len > SDC_TAESD_MAX_LEVELS)
        return sdc_fail(SDC_ERR_FORMAT, "%s: %s must be a list of 1 to %d integers", what, key,
                        SDC_TAESD_MAX_LEVELS);
    for (int i = 0; i < len; i++) {
        uint64_t v;
        if (!sdc_json_uint(cJSON_GetArrayItem(a, i), &v) || v < (uint64_t)lo || v > (uint64_t)hi)
            return sdc_fail(SDC_ERR_FORMAT, "%s: %s[%d] must be an integer in [%d, %d]", what,
                            key, i, lo, hi);
        out[i] = (int)v;
    }
    *n = len;
    return SDC_OK;
}

#define TRY(x)                                                                                 \
    do {                                                                                       \
        sdc_status st_ = (x);                                                                  \
        if (st_ != SDC_OK) return st_;                                                         \
    } while (0)

/* One side's two lists: block_out_channels (all equal: see taesd.h) and
 * num_blocks, of the same length. */
static sdc_status json_side(const cJSON *o, const char *what, const char *ch_key,
                            const char *nb_key, int *levels, int *channels, int *blocks) {
    int ch[SDC_TAESD_MAX_LEVELS], nch = *levels, nb = *levels;
    for (int i = 0; i < nch; i++) ch[i] = *channels;
    TRY(json_levels(o, ch_key, 1, MAX_CHANNELS, what, ch, &nch));
    TRY(json_levels(o, nb_key, 0, SDC_TAESD_MAX_BLOCKS, what, blocks, &nb));
    if (nch != nb)
        return sdc_fail(SDC_ERR_FORMAT, "%s: %s has %d levels, %s %d", what, ch_key, nch, nb_key,
                        nb);
    for (int i = 1; i < nch; i++)
        if (ch[i] != ch[0])
            return sdc_fail(SDC_ERR_UNSUPPORTED,
                            "%s: %s differ between levels (AutoencoderTiny cannot run that)",
                            what, ch_key);
    *levels = nch, *channels = ch[0];
    return SDC_OK;
}

static sdc_status parse_config(const cJSON *o, const char *what, sdc_taesd_config *c) {
    if (!cJSON_IsObject(o)) return sdc_fail(SDC_ERR_FORMAT, "%s: not a JSON object", what);
    int bad = 0;
    const char *cls = sdc_json_opt_string(o, "_class_name", &bad);
    if (cls && strcmp(cls, "AutoencoderKL") == 0)
        return sdc_fail(SDC_ERR_UNSUPPORTED,
                        "%s: this is a full VAE (AutoencoderKL), not a TAESD (AutoencoderTiny)",
                        what);
    if (bad || (cls && strcmp(cls, "AutoencoderTiny") != 0))
        return sdc_fail(SDC_ERR_FORMAT, "%s: _class_name \"%.40s\" is not AutoencoderTiny", what,
                        cls ? cls : "?");
    TRY(sdc_json_opt_int(o, "in_channels", 1, 64, what, &c->in_channels));
    TRY(sdc_json_opt_int(o, "out_channels", 1, 64, what, &c->out_channels));
    TRY(sdc_json_opt_int(o, "latent_channels", 1, 64, what, &c->latent_channels));
    TRY(json_side(o, what, "encoder_block_out_channels", "num_encoder_blocks", &c->enc_levels,
                  &c->enc_channels, c->enc_blocks));
    TRY(json_side(o, what, "decoder_block_out_channels", "num_decoder_blocks", &c->dec_levels,
                  &c->dec_channels, c->dec_blocks));
    int up = 2;
    TRY(sdc_json_opt_int(o, "upsampling_scaling_factor", 1, 64, what, &up));
    if (up != 2)
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: upsampling_scaling_factor %d (only 2 is)", what,
                        up);
    static const struct {
        const char *key, *want;
    } strs[] = {{"act_fn", "relu"}, {"upsample_fn", "nearest"}};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        const char *v = sdc_json_opt_string(o, strs[i].key, &bad);
        if (bad) return sdc_fail(SDC_ERR_FORMAT, "%s: %s is not a string", what, strs[i].key);
        if (v && strcmp(v, strs[i].want) != 0)
            return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: %s \"%.40s\" (only \"%s\" is supported)",
                            what, strs[i].key, v, strs[i].want);
    }
    double sf = c->scaling_factor, shift = c->shift_factor;
    TRY(sdc_json_opt_double(o, "scaling_factor", 1e-6, 1e6, what, &sf));
    TRY(sdc_json_opt_double(o, "shift_factor", -1e6, 1e6, what, &shift));
    c->scaling_factor = (float)sf, c->shift_factor = (float)shift;
    return SDC_OK;
}

/* The levels and blocks of one half from its layer indices (module
 * comment), the channels from the first conv; the final conv's output
 * channels in *final_out.  Shapes are checked later, when binding. */
static sdc_status infer_side(const sdc_taesd *m, int side, sdc_taesd_config *c, int *final_out) {
    const char *file = sdc_st_path(m->file);
    char ln[128];
    const sdc_weight *w0 = find(m, side, 0, "weight");
    if (w0->ndim != 4) {
        layer_name(m, side, 0, "weight", ln, sizeof ln);
        return sdc_fail(SDC_ERR_FORMAT, "%s: tensor %s has %d dims, expected a conv's 4", file,
                        ln, w0->ndim);
    }
    int *blocks = side == ENC ? c->enc_blocks : c->dec_blocks;
    int L = 1, idx = side == ENC ? 1 : 2;
    memset(blocks, 0, SDC_TAESD_MAX_LEVELS * sizeof *blocks);
    for (;;) {
        if (is_block(m, side, idx)) {
            if (++blocks[L - 1] > SDC_TAESD_MAX_BLOCKS)
                return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: TAESD %s level with over %d blocks",
                                file, k_side[side], SDC_TAESD_MAX_BLOCKS);
            idx++;
            continue;
        }
        const sdc_weight *w = find_conv(m, side, idx);
        const int more = is_layer(m, side, idx + 1);
        if (w && !more) { /* the final conv */
            *final_out = (int)w->shape[0];
            break;
        }
        /* a new level: the encoder's stride-2 conv; the decoder's Upsample
         * (no weights) and its conv */
        const int next = side == ENC ? (w && more) : (!w && !is_layer(m, side, idx) &&
                                                      find_conv(m, side, idx + 1));
        if (!next) {
            layer_name(m, side, idx, "", ln, sizeof ln);
            return sdc_fail(SDC_ERR_FORMAT,
                            "%s: TAESD %s: layer %s holds neither a block, the next level's "
                            "conv nor the final conv (a layer is missing)",
                            file, k_side[side], ln);
        }
        if (++L > SDC_TAESD_MAX_LEVELS)
            return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: TAESD %s with over %d levels", file,
                            k_side[side], SDC_TAESD_MAX_LEVELS);
        idx += side == ENC ? 1 : 2;
    }
    const int C = (int)w0->shape[0], in = (int)w0->shape[1];
    if (C < 1 || C > MAX_CHANNELS || in < 1 || in > 64 || *final_out < 1 || *final_out > 64)
        return sdc_fail(SDC_ERR_FORMAT, "%s: TAESD %s with %d channels from %d", file,
                        k_side[side], C, in);
    if (side == ENC)
        c->enc_levels = L, c->enc_channels = C, c->in_channels = in;
    else
        c->dec_levels = L, c->dec_channels = C, c->latent_channels = in;
    return SDC_OK;
}

/* ---- opening ------------------------------------------------------------------- */

/* Which naming the file uses, and which halves it holds. */
static sdc_status detect(sdc_taesd *m) {
    const char *file = sdc_st_path(m->file);
    m->names = NAMES_DIFFUSERS;
    m->cfg.has_encoder = find(m, ENC, 0, "weight") != NULL;
    m->cfg.has_decoder = find(m, DEC, 0, "weight") != NULL;
    if (m->cfg.has_encoder || m->cfg.has_decoder) return SDC_OK;
    /* madebyollin's halves: the encoder starts at "0", the decoder at "1"
     * (its layer 0 is the clamp) */
    if (sdc_st_find(m->file, "0.weight")) {
        m->names = NAMES_ORIGINAL_ENCODER;
        m->cfg.has_encoder = 1;
    } else if (sdc_st_find(m->file, "1.weight")) {
        m->names = NAMES_ORIGINAL_DECODER;
        m->cfg.has_decoder = 1;
    }
    if (m->cfg.has_encoder || m->cfg.has_decoder) return SDC_OK;
    static const char *const full_vae[] = {"encoder.conv_in.weight", "decoder.conv_in.weight",
                                           "first_stage_model.decoder.conv_in.weight",
                                           "vae.decoder.conv_in.weight"};
    for (size_t i = 0; i < sizeof full_vae / sizeof *full_vae; i++)
        if (sdc_st_find(m->file, full_vae[i]))
            return sdc_fail(SDC_ERR_UNSUPPORTED,
                            "%s: this holds a full VAE (AutoencoderKL, alone or in an SD "
                            "checkpoint), not a TAESD",
                            file);
    return sdc_fail(SDC_ERR_FORMAT,
                    "%s: not a TAESD: no encoder.layers.* or decoder.layers.* tensors "
                    "(diffusers' AutoencoderTiny) nor madebyollin's numbered ones",
                    file);
}

/* The config, then its checks: read (with_config) or inferred from the
 * halves present. */
static sdc_status configure(sdc_taesd *m, int with_config) {
    sdc_taesd_config *c = &m->cfg;
    const char *file = sdc_st_path(m->file);
    if (!with_config) {
        int enc_z = 0, dec_out = 0;
        if (c->has_encoder) TRY(infer_side(m, ENC, c, &enc_z));
        if (c->has_decoder) TRY(infer_side(m, DEC, c, &dec_out));
        if (c->has_decoder) c->out_channels = dec_out;
        if (c->has_encoder && c->has_decoder && enc_z != c->latent_channels)
            return sdc_fail(SDC_ERR_FORMAT,
                            "%s: the TAESD encoder makes %d latent channels, the decoder reads %d",
                            file, enc_z, c->latent_channels);
        if (c->has_encoder) c->latent_channels = enc_z;
    }
    if (c->latent_channels == 16)
        return sdc_fail(SDC_ERR_UNSUPPORTED,
                        "%s: a TAESD for 16-channel latents (FLUX's taef1 or SD3's taesd3); SD "
                        "1.x needs the one for 4 channels (madebyollin/taesd)",
                        file);
    if (c->latent_channels != 4)
        return sdc_fail(SDC_ERR_UNSUPPORTED,
                        "%s: a TAESD for %d latent channels; SD 1.x's latents have 4", file,
                        c->latent_channels);
    c->enc_factor = 1 << (c->enc_levels - 1);
    c->dec_factor = 1 << (c->dec_levels - 1);
    return SDC_OK;
}

sdc_status sdc_taesd_open(const char *path, sdc_taesd **out) {
    *out = NULL;
    sdc_taesd *m = calloc(1, sizeof *m);
    if (!m) return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    config_defaults(&m->cfg);
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/') end--;
    size_t start = end;
    while (start > 0 && path[start - 1] != '/') start--;
    snprintf(m->name, sizeof m->name, "%.*s", (int)(end - start), path + start);

    char p[PATH_CAP];
    sdc_status st = SDC_OK;
    int with_config = 0;
    if (sdc_is_dir(path)) {
        static const char *const files[] = {"diffusion_pytorch_model.safetensors",
                                            "diffusion_pytorch_model.fp16.safetensors"};
        const char *weights = NULL;
        for (size_t i = 0; i < 2 && !weights; i++)
            if (snprintf(p, sizeof p, "%s/%s", path, files[i]) < (int)sizeof p && sdc_is_file(p))
                weights = files[i];
        if (!weights) {
            st = sdc_fail(SDC_ERR_FORMAT,
                          "%s: no diffusion_pytorch_model[.fp16].safetensors in this folder "
                          "(give a diffusers AutoencoderTiny folder, such as madebyollin/taesd, "
                          "or one .safetensors file)",
                          path);
            goto fail;
        }
        if ((st = sdc_st_open(p, &m->file)) != SDC_OK) goto fail;
        if (snprintf(p, sizeof p, "%s/config.json", path) < (int)sizeof p && sdc_is_file(p)) {
            cJSON *o = NULL;
            if ((st = sdc_json_read_file(p, CONFIG_MAX, &o)) != SDC_OK) goto fail;
            st = parse_config(o, p, &m->cfg);
            cJSON_Delete(o);
            if (st != SDC_OK) goto fail;
            with_config = 1;
        }
    } else if ((st = sdc_st_open(path, &m->file)) != SDC_OK) {
        goto fail;
    }
    if ((st = detect(m)) != SDC_OK || (st = configure(m, with_config)) != SDC_OK) goto fail;
    if (m->cfg.has_encoder && (st = bind_encoder(m)) != SDC_OK) goto fail;
    if (m->cfg.has_decoder && (st = bind_decoder(m)) != SDC_OK) goto fail;
    *out = m;
    return SDC_OK;
fail:
    sdc_taesd_free(m);
    return st;
}

void sdc_taesd_free(sdc_taesd *m) {
    if (!m) return;
    sdc_st_close(m->file);
    free(m);
}

const sdc_taesd_config *sdc_taesd_cfg(const sdc_taesd *m) { return &m->cfg; }

const char *sdc_taesd_name(const sdc_taesd *m) { return m->name; }

size_t sdc_taesd_weights(const sdc_taesd *m, int parts, const sdc_weight **out, size_t cap) {
    size_t n = 0;
    for (int side = ENC; side <= DEC; side++) {
        if (!(parts & (side == ENC ? SDC_TAESD_ENCODER : SDC_TAESD_DECODER))) continue;
        for (size_t i = 0; i < m->nw[side]; i++, n++)
            if (n < cap) out[n] = m->wl[side][i];
    }
    return n;
}

/* ---- the passes -------------------------------------------------------------------- */

enum { MAP_CLAMP, MAP_UNIT };

/* dev[0, n) = f(host[0, n)) through a stack buffer (copy_in consumes its
 * source before it returns): MAP_CLAMP tanh(x / 3) * 3 (DecoderTiny),
 * MAP_UNIT (x + 1) / 2 (EncoderTiny), in fp32 as torch computes them. */
static void copy_in_mapped(sdc_backend *be, float *dev, const float *host, int64_t n, int map) {
    float buf[HOST_CHUNK];
    for (int64_t i = 0; i < n; i += HOST_CHUNK) {
        const int k = (int)(n - i < HOST_CHUNK ? n - i : HOST_CHUNK);
        const float *h = host + i;
        if (map == MAP_CLAMP)
            for (int j = 0; j < k; j++) buf[j] = tanhf(h[j] / 3.0f) * 3.0f;
        else
            for (int j = 0; j < k; j++) buf[j] = (h[j] + 1.0f) / 2.0f;
        be->copy_in(be, dev + i, buf, k);
    }
}

/* AutoencoderTinyBlock on x [N, C, H, W], in place:
 * x = relu(conv4(relu(conv2(relu(conv0(x))))) + x). */
static void block_fwd(const tiny_block *b, sdc_backend *be, sdc_arena *a, float *x, int N, int C,
                      int H, int W) {
    const size_t mark = sdc_arena_mark(a), n = (size_t)N * C * H * W;
    float *t = sdc_arena_alloc(a, n), *u = sdc_arena_alloc(a, n);
    sdc_conv_fwd(be, &b->c[0], t, x, N, H, W, 1, NULL);
    be->relu(be, t, t, (int64_t)n);
    sdc_conv_fwd(be, &b->c[1], u, t, N, H, W, 1, NULL);
    be->relu(be, u, u, (int64_t)n);
    sdc_conv_fwd(be, &b->c[2], x, u, N, H, W, 1, x);
    be->relu(be, x, x, (int64_t)n);
    sdc_arena_reset(a, mark);
}

static sdc_status missing(const sdc_taesd *m, const char *half) {
    return sdc_fail(SDC_ERR_UNSUPPORTED,
                    "%s: this TAESD file holds no %s (madebyollin's taesd_encoder and "
                    "taesd_decoder files hold one half each; the diffusers folder "
                    "madebyollin/taesd holds both)",
                    m->name, half);
}

sdc_status sdc_taesd_decode(const sdc_taesd *m, sdc_backend *be, sdc_arena *a, const float *z,
                            int N, int h, int w, float *img) {
    const sdc_taesd_config *c = &m->cfg;
    if (!c->has_decoder) return missing(m, "decoder");
    const int f = c->dec_factor, C = c->dec_channels, Z = c->latent_channels;
    if (N < 1 || N > MAX_BATCH || h < 1 || w < 1 || h > MAX_SIDE / f || w > MAX_SIDE / f)
        return sdc_fail(SDC_ERR_INVALID_ARG, "TAESD decode of %d latents %dx%d", N, h, w);
    const size_t mark0 = sdc_arena_mark(a), nz = (size_t)N * Z * h * w;
    float *zd = sdc_arena_alloc(a, nz); /* [N, Z, h, w] */
    if (!a->planning) copy_in_mapped(be, zd, z, (int64_t)nz, MAP_CLAMP);
    int H = h, W = w;
    size_t cur_off = sdc_arena_mark(a);
    float *cur = sdc_arena_alloc(a, (size_t)N * C * H * W); /* [N, C, H, W] */
    sdc_conv_fwd(be, &m->d_in, cur, zd, N, H, W, 1, NULL);
    be->relu(be, cur, cur, (int64_t)N * C * H * W);
    for (int l = 0; l < c->dec_levels; l++) {
        for (int j = 0; j < c->dec_blocks[l]; j++) block_fwd(&m->d_blk[l][j], be, a, cur, N, C, H, W);
        if (l == c->dec_levels - 1) break;
        float *up = sdc_upsample2x_in_place(be, a, cur, cur_off, N, C, H, W);
        H *= 2, W *= 2;
        const size_t n = (size_t)N * C * H * W;
        size_t res_off = sdc_arena_mark(a);
        float *res = sdc_arena_alloc(a, n);
        sdc_conv_fwd(be, &m->d_up[l], res, up, N, H, W, 1, NULL);
        cur = sdc_settle(be, a, cur_off, res, &res_off, n);
        cur_off = res_off;
    }
    const size_t ni = (size_t)N * c->out_channels * H * W;
    float *id = sdc_arena_alloc(a, ni); /* [N, out, H, W] */
    sdc_conv_fwd(be, &m->d_out, id, cur, N, H, W, 1, NULL);
    if (!a->planning) {
        be->copy_out(be, img, id, (int64_t)ni);
        for (size_t i = 0; i < ni; i++) img[i] = img[i] * 2.0f - 1.0f; /* x.mul(2).sub(1) */
    }
    sdc_arena_reset(a, mark0);
    return SDC_OK;
}

sdc_status sdc_taesd_encode(const sdc_taesd *m, sdc_backend *be, sdc_arena *a, const float *img,
                            int N, int H, int W, float *z) {
    const sdc_taesd_config *c = &m->cfg;
    if (!c->has_encoder) return missing(m, "encoder");
    const int f = c->enc_factor, C = c->enc_channels;
    if (N < 1 || N > MAX_BATCH || H < f || W < f || H > MAX_SIDE || W > MAX_SIDE || H % f ||
        W % f)
        return sdc_fail(SDC_ERR_INVALID_ARG,
                        "TAESD encode of %d images %dx%d (sides must be multiples of %d)", N, W,
                        H, f);
    const size_t mark0 = sdc_arena_mark(a), ni = (size_t)N * c->in_channels * H * W;
    float *id = sdc_arena_alloc(a, ni); /* [N, in, H, W] */
    if (!a->planning) copy_in_mapped(be, id, img, (int64_t)ni, MAP_UNIT);
    size_t cur_off = sdc_arena_mark(a);
    float *cur = sdc_arena_alloc(a, (size_t)N * C * H * W); /* [N, C, H, W] */
    sdc_conv_fwd(be, &m->e_in, cur, id, N, H, W, 1, NULL);
    for (int l = 0; l < c->enc_levels; l++) {
        if (l > 0) {
            const size_t n = (size_t)N * C * (H / 2) * (W / 2);
            size_t res_off = sdc_arena_mark(a);
            float *res = sdc_arena_alloc(a, n);
            sdc_conv_fwd(be, &m->e_down[l], res, cur, N, H, W, 2, NULL);
            H /= 2, W /= 2;
            cur = sdc_settle(be, a, cur_off, res, &res_off, n);
            cur_off = res_off;
        }
        for (int j = 0; j < c->enc_blocks[l]; j++) block_fwd(&m->e_blk[l][j], be, a, cur, N, C, H, W);
    }
    const size_t nz = (size_t)N * c->latent_channels * H * W;
    float *zd = sdc_arena_alloc(a, nz); /* [N, Z, H/f, W/f] */
    sdc_conv_fwd(be, &m->e_out, zd, cur, N, H, W, 1, NULL);
    if (!a->planning) be->copy_out(be, z, zd, (int64_t)nz);
    sdc_arena_reset(a, mark0);
    return SDC_OK;
}
