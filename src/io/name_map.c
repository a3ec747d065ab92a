#include "io/name_map.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *from, *to;
} name_rename;

/* Consumes prefix at *s if present. */
static int eat(const char **s, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(*s, prefix, n) != 0) return 0;
    *s += n;
    return 1;
}

/* If *rest starts with a table entry's `from`, advances past it and returns
 * its `to`; else returns "" (the name passes through unchanged). */
static const char *renamed(const name_rename *table, const char **rest) {
    for (; table->from; table++)
        if (eat(rest, table->from)) return table->to;
    return "";
}

static sdc_name_result put(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < cap ? SDC_NAME_MAPPED : SDC_NAME_BAD;
}

int sdc_name_index_at(const char **s) {
    const char *p = *s;
    int v = 0, digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (digits == 6 || (digits == 1 && v == 0)) return -1;
        v = v * 10 + (*p++ - '0');
        digits++;
    }
    if (!digits || *p != '.') return -1;
    *s = p + 1;
    return v;
}

static const name_rename k_unet_resnet[] = {
    {"in_layers.0.", "norm1."},
    {"in_layers.2.", "conv1."},
    {"emb_layers.1.", "time_emb_proj."},
    {"out_layers.0.", "norm2."},
    {"out_layers.3.", "conv2."},
    {"skip_connection.", "conv_shortcut."},
    {NULL, NULL},
};

static sdc_name_result map_unet(const char *r, int L, char *out, size_t cap) {
    const char *p = r;
    if (eat(&p, "time_embed.0.")) return put(out, cap, "unet.time_embedding.linear_1.%s", p);
    if (eat(&p, "time_embed.2.")) return put(out, cap, "unet.time_embedding.linear_2.%s", p);
    /* LCM's guidance embedding: diffusers' convert_diffusers_to_original
     * script passes the name through (its single-file loader drops it) */
    if (eat(&p, "time_embedding.cond_proj."))
        return put(out, cap, "unet.time_embedding.cond_proj.%s", p);
    if (eat(&p, "out.0.")) return put(out, cap, "unet.conv_norm_out.%s", p);
    if (eat(&p, "out.2.")) return put(out, cap, "unet.conv_out.%s", p);
    if (eat(&p, "input_blocks.")) {
        int n = sdc_name_index_at(&p), k = n < 0 ? -1 : sdc_name_index_at(&p);
        if (k < 0) return SDC_NAME_BAD;
        if (n == 0) return k == 0 ? put(out, cap, "unet.conv_in.%s", p) : SDC_NAME_BAD;
        int i = (n - 1) / (L + 1), j = (n - 1) % (L + 1);
        if (j < L && k == 0) {
            const char *to = renamed(k_unet_resnet, &p);
            return put(out, cap, "unet.down_blocks.%d.resnets.%d.%s%s", i, j, to, p);
        }
        if (j < L && k == 1) return put(out, cap, "unet.down_blocks.%d.attentions.%d.%s", i, j, p);
        if (j == L && k == 0 && eat(&p, "op."))
            return put(out, cap, "unet.down_blocks.%d.downsamplers.0.conv.%s", i, p);
        return SDC_NAME_BAD;
    }
    if (eat(&p, "middle_block.")) {
        int k = sdc_name_index_at(&p);
        if (k == 1) return put(out, cap, "unet.mid_block.attentions.0.%s", p);
        if (k != 0 && k != 2) return SDC_NAME_BAD;
        const char *to = renamed(k_unet_resnet, &p);
        return put(out, cap, "unet.mid_block.resnets.%d.%s%s", k / 2, to, p);
    }
    if (eat(&p, "output_blocks.")) {
        int n = sdc_name_index_at(&p), k = n < 0 ? -1 : sdc_name_index_at(&p);
        if (k < 0) return SDC_NAME_BAD;
        int i = n / (L + 1), j = n % (L + 1);
        if (k == 0) {
            const char *to = renamed(k_unet_resnet, &p);
            return put(out, cap, "unet.up_blocks.%d.resnets.%d.%s%s", i, j, to, p);
        }
        /* the upsampler follows the resnet (and the attention, if any) */
        if (j == L && eat(&p, "conv."))
            return put(out, cap, "unet.up_blocks.%d.upsamplers.0.conv.%s", i, p);
        if (k == 1) return put(out, cap, "unet.up_blocks.%d.attentions.%d.%s", i, j, p);
        return SDC_NAME_BAD;
    }
    return SDC_NAME_IGNORED;
}

static const name_rename k_vae_resnet[] = {{"nin_shortcut.", "conv_shortcut."}, {NULL, NULL}};
static const name_rename k_vae_attn[] = {
    {"norm.", "group_norm."},   {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."},
    {"proj_out.", "to_out.0."}, {NULL, NULL},
};

static sdc_name_result map_vae(const char *r, int nlev, char *out, size_t cap) {
    const char *p = r, *part;
    if (eat(&p, "quant_conv.") || eat(&p, "post_quant_conv.")) return put(out, cap, "vae.%s", r);
    if (eat(&p, "encoder."))
        part = "encoder";
    else if (eat(&p, "decoder."))
        part = "decoder";
    else
        return SDC_NAME_IGNORED;

    if (eat(&p, "norm_out.")) return put(out, cap, "vae.%s.conv_norm_out.%s", part, p);
    if (strncmp(p, "conv_in.", 8) == 0 || strncmp(p, "conv_out.", 9) == 0)
        return put(out, cap, "vae.%s.%s", part, p);
    if (eat(&p, "mid.")) {
        if (eat(&p, "attn_1.")) {
            const char *to = renamed(k_vae_attn, &p);
            if (!*to) return SDC_NAME_BAD;
            return put(out, cap, "vae.%s.mid_block.attentions.0.%s%s", part, to, p);
        }
        int k = eat(&p, "block_1.") ? 0 : eat(&p, "block_2.") ? 1 : -1;
        if (k < 0) return SDC_NAME_BAD;
        const char *to = renamed(k_vae_resnet, &p);
        return put(out, cap, "vae.%s.mid_block.resnets.%d.%s%s", part, k, to, p);
    }
    int enc = part[0] == 'e';
    if (!eat(&p, enc ? "down." : "up.")) return SDC_NAME_BAD;
    int i = sdc_name_index_at(&p);
    if (i < 0 || i >= nlev) return SDC_NAME_BAD;
    if (!enc) i = nlev - 1 - i; /* decoder.up is stored lowest resolution first */
    const char *blocks = enc ? "down_blocks" : "up_blocks";
    if (eat(&p, "block.")) {
        int j = sdc_name_index_at(&p);
        if (j < 0) return SDC_NAME_BAD;
        const char *to = renamed(k_vae_resnet, &p);
        return put(out, cap, "vae.%s.%s.%d.resnets.%d.%s%s", part, blocks, i, j, to, p);
    }
    if (eat(&p, enc ? "downsample.conv." : "upsample.conv."))
        return put(out, cap, "vae.%s.%s.%d.%s.0.conv.%s", part, blocks, i,
                   enc ? "downsamplers" : "upsamplers", p);
    return SDC_NAME_BAD;
}

sdc_name_result sdc_name_from_original(const char *orig, const sdc_orig_layout *lay, char *out,
                                       size_t cap) {
    const char *p = orig;
    if (eat(&p, "model.diffusion_model."))
        return lay->unet_layers >= 1 ? map_unet(p, lay->unet_layers, out, cap) : SDC_NAME_BAD;
    if (eat(&p, "first_stage_model."))
        return lay->vae_levels >= 1 ? map_vae(p, lay->vae_levels, out, cap) : SDC_NAME_BAD;
    if (eat(&p, "cond_stage_model.transformer.")) {
        if (eat(&p, "text_model.")) return put(out, cap, "text_encoder.text_model.%s", p);
        return put(out, cap, "text_encoder.text_model.%s", p);
    }
    return SDC_NAME_IGNORED;
}

static const name_rename k_vae_attn_old[] = {
    {"query.", "to_q."},         {"key.", "to_k."}, {"value.", "to_v."},
    {"proj_attn.", "to_out.0."}, {NULL, NULL},
};

sdc_name_result sdc_name_from_diffusers(const char *prefix, const char *name, char *out,
                                        size_t cap) {
    static const char mid_attn[] = "mid_block.attentions.0.";
    const char *at = strstr(name, mid_attn);
    if (strcmp(prefix, "vae") == 0 && at) {
        const char *p = at + strlen(mid_attn);
        const char *to = renamed(k_vae_attn_old, &p);
        int keep = (int)(at - name) + (int)strlen(mid_attn); /* "...mid_block.attentions.0." */
        if (*to) return put(out, cap, "vae.%.*s%s%s", keep, name, to, p);
    }
    return put(out, cap, "%s.%s", prefix, name);
}
