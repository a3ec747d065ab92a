/* VAE: diffusers' AutoencoderKL (GroupNorm eps 1e-6 throughout).
 *
 * encode: h = conv_in(img)
 *         level l: resnet x layers_per_block; (l < L-1) pad (0,1,0,1) then
 *                  3x3 stride-2 conv with no padding
 *         mid: resnet, single-head attention, resnet
 *         moments = quant_conv(conv_out(silu(conv_norm_out(h))))  [mean | logvar]
 * decode: h = conv_in(post_quant_conv(z))
 *         mid: resnet, attention, resnet
 *         up level l = L-1 .. 0: resnet x (layers_per_block + 1);
 *                  (l > 0) nearest 2x then 3x3 conv
 *         img = conv_out(silu(conv_norm_out(h))) */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "models/blocks.h"
#include "models/models.h"

#define VAE_EPS 1e-6f
#define MAX_LPB 8

typedef struct mid_block {
    sdc_resnet_w res[2];
    sdc_vae_attn_w attn;
} mid_block;

struct sdc_vae {
    sdc_vae_config cfg;
    /* encoder */
    sdc_conv_w e_conv_in, e_conv_out, quant_conv;
    sdc_resnet_w e_res[SDC_MAX_LEVELS][MAX_LPB];
    sdc_conv_w e_down[SDC_MAX_LEVELS]; /* .w NULL on the last level */
    mid_block e_mid;
    sdc_norm_w e_norm_out;
    /* decoder; index i is level L-1-i, as diffusers numbers up_blocks */
    sdc_conv_w post_quant_conv, d_conv_in, d_conv_out;
    mid_block d_mid;
    sdc_resnet_w d_res[SDC_MAX_LEVELS][MAX_LPB + 1];
    sdc_conv_w d_up[SDC_MAX_LEVELS]; /* .w NULL on the last */
    sdc_norm_w d_norm_out;
    sdc_pager pager;  /* the model files, for low-memory mode */
    int low_memory;   /* sdc_vae_set_low_memory */
};

static void bind_mid(sdc_binder *b, mid_block *mb, int C, int G, const char *side) {
    char p[96];
    for (int j = 0; j < 2; j++) {
        snprintf(p, sizeof p, "vae.%s.mid_block.resnets.%d", side, j);
        sdc_bind_resnet(b, &mb->res[j], C, C, 0, G, VAE_EPS, p);
    }
    snprintf(p, sizeof p, "vae.%s.mid_block.attentions.0", side);
    sdc_bind_vae_attn(b, &mb->attn, C, G, VAE_EPS, p);
}

sdc_status sdc_vae_create(const sdc_model_files *mf, sdc_vae **out) {
    *out = NULL;
    const char *name = sdc_model_files_name(mf);
    const sdc_vae_config *c = sdc_model_files_vae(mf);
    if (!c) return sdc_fail(SDC_ERR_FORMAT, "%s: no VAE", name);
    if (c->levels < 1 || c->levels > SDC_MAX_LEVELS || c->layers_per_block < 1 ||
        c->layers_per_block > MAX_LPB)
        return sdc_fail(SDC_ERR_UNSUPPORTED, "%s: VAE with %d levels, layers_per_block %d", name,
                        c->levels, c->layers_per_block);
    if (c->in_channels < 1 || c->out_channels < 1 || c->latent_channels < 1 || c->groups < 1)
        return sdc_fail(SDC_ERR_FORMAT, "%s: bad VAE config", name);
    for (int l = 0; l < c->levels; l++)
        if (c->channels[l] < 1 || c->channels[l] > (1 << 16) || c->channels[l] % c->groups)
            return sdc_fail(SDC_ERR_FORMAT, "%s: VAE level %d has %d channels (groups %d)", name,
                            l, c->channels[l], c->groups);
    sdc_vae *m = calloc(1, sizeof *m);
    if (!m) return sdc_fail(SDC_ERR_NOMEM, "out of memory");
    m->cfg = *c;
    m->pager.mf = mf;
    sdc_binder b = {mf, SDC_OK};
    int L = c->levels, lpb = c->layers_per_block, G = c->groups, Z = c->latent_channels;
    int CL = c->channels[L - 1];
    char p[96];

    sdc_bind_conv(&b, &m->e_conv_in, c->in_channels, c->channels[0], 3, "vae.encoder.conv_in");
    int prev = c->channels[0];
    for (int l = 0; l < L; l++) {
        int C = c->channels[l];
        for (int j = 0; j < lpb; j++) {
            snprintf(p, sizeof p, "vae.encoder.down_blocks.%d.resnets.%d", l, j);
            sdc_bind_resnet(&b, &m->e_res[l][j], j ? C : prev, C, 0, G, VAE_EPS, p);
        }
        if (l < L - 1)
            sdc_bind_conv(&b, &m->e_down[l], C, C, 3, "vae.encoder.down_blocks.%d.downsamplers.0.conv",
                          l);
        prev = C;
    }
    bind_mid(&b, &m->e_mid, CL, G, "encoder");
    sdc_bind_norm(&b, &m->e_norm_out, CL, "vae.encoder.conv_norm_out");
    sdc_bind_conv(&b, &m->e_conv_out, CL, 2 * Z, 3, "vae.encoder.conv_out");
    sdc_bind_conv(&b, &m->quant_conv, 2 * Z, 2 * Z, 1, "vae.quant_conv");

    sdc_bind_conv(&b, &m->post_quant_conv, Z, Z, 1, "vae.post_quant_conv");
    sdc_bind_conv(&b, &m->d_conv_in, Z, CL, 3, "vae.decoder.conv_in");
    bind_mid(&b, &m->d_mid, CL, G, "decoder");
    prev = CL;
    for (int i = 0; i < L; i++) {
        int C = c->channels[L - 1 - i];
        for (int j = 0; j <= lpb; j++) {
            snprintf(p, sizeof p, "vae.decoder.up_blocks.%d.resnets.%d", i, j);
            sdc_bind_resnet(&b, &m->d_res[i][j], j ? C : prev, C, 0, G, VAE_EPS, p);
        }
        if (i < L - 1)
            sdc_bind_conv(&b, &m->d_up[i], C, C, 3, "vae.decoder.up_blocks.%d.upsamplers.0.conv", i);
        prev = C;
    }
    sdc_bind_norm(&b, &m->d_norm_out, c->channels[0], "vae.decoder.conv_norm_out");
    sdc_bind_conv(&b, &m->d_conv_out, c->channels[0], c->out_channels, 3, "vae.decoder.conv_out");
    if (b.st != SDC_OK) {
        free(m);
        return b.st;
    }
    *out = m;
    return SDC_OK;
}

void sdc_vae_free(sdc_vae *m) { free(m); }

const sdc_vae_config *sdc_vae_cfg(const sdc_vae *m) { return &m->cfg; }

void sdc_vae_set_low_memory(sdc_vae *m, int on) { m->low_memory = on != 0; }

/* Runs a resnet on cur [N, r->in, H, W] (living at *cur_off, top of the
 * arena) and leaves the result on top of the arena at *cur_off.  With a
 * shortcut, cur is dead afterwards and serves as the block's scratch. */
static float *resnet_step(const sdc_resnet_w *r, const sdc_pager *pg, sdc_backend *be,
                          sdc_arena *a, float *cur, size_t *cur_off, int N, int H, int W) {
    sdc_page_resnet(pg, r, SDC_PAGES_PREFETCH);
    if (r->in == r->out) {
        sdc_resnet_fwd(r, be, a, cur, cur, N, H, W, NULL);
    } else {
        size_t n = (size_t)N * r->out * H * W, res_off = sdc_arena_mark(a);
        float *res = sdc_arena_alloc(a, n);
        sdc_resnet_fwd_consume(r, be, a, res, cur, N, H, W, NULL);
        cur = sdc_settle(be, a, *cur_off, res, &res_off, n);
        *cur_off = res_off;
    }
    sdc_page_resnet(pg, r, SDC_PAGES_RELEASE);
    return cur;
}

static void mid_fwd(const mid_block *mb, const sdc_pager *pg, sdc_backend *be, sdc_arena *a,
                    float *x, int N, int H, int W) {
    sdc_page_resnet(pg, &mb->res[0], SDC_PAGES_PREFETCH);
    sdc_resnet_fwd(&mb->res[0], be, a, x, x, N, H, W, NULL);
    sdc_page_resnet(pg, &mb->res[0], SDC_PAGES_RELEASE);
    sdc_page_vae_attn(pg, &mb->attn, SDC_PAGES_PREFETCH);
    sdc_vae_attn_fwd(&mb->attn, be, a, x, N, H * W);
    sdc_page_vae_attn(pg, &mb->attn, SDC_PAGES_RELEASE);
    sdc_page_resnet(pg, &mb->res[1], SDC_PAGES_PREFETCH);
    sdc_resnet_fwd(&mb->res[1], be, a, x, x, N, H, W, NULL);
    sdc_page_resnet(pg, &mb->res[1], SDC_PAGES_RELEASE);
}

/* Memory: the largest live set is two tensors of the upsampled size (the
 * in-place upsample and its conv) or, in a level's first resnet, its input
 * plus two outputs (sdc_resnet_fwd_consume). */
void sdc_vae_decode(const sdc_vae *m, sdc_backend *be, sdc_arena *a, const float *z, int N,
                    int h, int w, float *img) {
    const sdc_vae_config *c = &m->cfg;
    int L = c->levels, lpb = c->layers_per_block, Z = c->latent_channels, G = c->groups;
    int CL = c->channels[L - 1];
    assert(N > 0 && h > 0 && w > 0);
    const sdc_pager *pg = m->low_memory && !a->planning ? &m->pager : NULL;
    size_t mark0 = sdc_arena_mark(a);
    int H = h, W = w;
    float *p = sdc_arena_alloc(a, (size_t)N * Z * H * W);
    sdc_conv_fwd(be, &m->post_quant_conv, p, z, N, H, W, 1, NULL);
    size_t cur_off = sdc_arena_mark(a);
    float *cur = sdc_arena_alloc(a, (size_t)N * CL * H * W);
    sdc_page_conv(pg, &m->d_conv_in, SDC_PAGES_PREFETCH);
    sdc_conv_fwd(be, &m->d_conv_in, cur, p, N, H, W, 1, NULL);
    sdc_page_conv(pg, &m->d_conv_in, SDC_PAGES_RELEASE);
    mid_fwd(&m->d_mid, pg, be, a, cur, N, H, W);
    for (int i = 0; i < L; i++) {
        int C = c->channels[L - 1 - i];
        for (int j = 0; j <= lpb; j++)
            cur = resnet_step(&m->d_res[i][j], pg, be, a, cur, &cur_off, N, H, W);
        if (m->d_up[i].w) {
            float *up = sdc_upsample2x_in_place(be, a, cur, cur_off, N, C, H, W);
            H *= 2, W *= 2;
            size_t n = (size_t)N * C * H * W, res_off = sdc_arena_mark(a);
            float *res = sdc_arena_alloc(a, n);
            sdc_page_conv(pg, &m->d_up[i], SDC_PAGES_PREFETCH);
            sdc_conv_fwd(be, &m->d_up[i], res, up, N, H, W, 1, NULL);
            sdc_page_conv(pg, &m->d_up[i], SDC_PAGES_RELEASE);
            cur = sdc_settle(be, a, cur_off, res, &res_off, n);
            cur_off = res_off;
        }
    }
    int C0 = c->channels[0];
    be->group_norm(be, cur, cur, N, C0, H * W, G, m->d_norm_out.g, m->d_norm_out.b, VAE_EPS, 1);
    sdc_conv_fwd(be, &m->d_conv_out, img, cur, N, H, W, 1, NULL);
    sdc_page_norm(pg, &m->d_norm_out, SDC_PAGES_RELEASE);
    sdc_page_conv(pg, &m->d_conv_out, SDC_PAGES_RELEASE);
    sdc_arena_reset(a, mark0);
}

void sdc_vae_encode(const sdc_vae *m, sdc_backend *be, sdc_arena *a, const float *img, int N,
                    int H, int W, float *moments) {
    const sdc_vae_config *c = &m->cfg;
    int L = c->levels, lpb = c->layers_per_block, Z = c->latent_channels, G = c->groups;
    assert(N > 0 && H > 0 && W > 0 && H % (1 << (L - 1)) == 0 && W % (1 << (L - 1)) == 0);
    size_t mark0 = sdc_arena_mark(a);
    size_t cur_off = mark0;
    int C = c->channels[0];
    float *cur = sdc_arena_alloc(a, (size_t)N * C * H * W);
    sdc_conv_fwd(be, &m->e_conv_in, cur, img, N, H, W, 1, NULL);
    for (int l = 0; l < L; l++) {
        for (int j = 0; j < lpb; j++)
            cur = resnet_step(&m->e_res[l][j], NULL, be, a, cur, &cur_off, N, H, W);
        C = c->channels[l];
        if (m->e_down[l].w) {
            /* Downsample2D(padding=0): pad right and bottom by one, then
             * a 3x3 stride-2 conv without padding */
            float *pad = sdc_arena_alloc(a, (size_t)N * C * (H + 1) * (W + 1));
            be->pad2d(be, pad, cur, N, C, H, W, 0, 1, 0, 1);
            size_t n = (size_t)N * C * (H / 2) * (W / 2), res_off = sdc_arena_mark(a);
            float *res = sdc_arena_alloc(a, n);
            be->conv2d(be, res, pad, N, C, H + 1, W + 1, m->e_down[l].w, m->e_down[l].b, C, 3, 3,
                       2, 0, NULL);
            H /= 2, W /= 2;
            cur = sdc_settle(be, a, cur_off, res, &res_off, n);
            cur_off = res_off;
        }
    }
    mid_fwd(&m->e_mid, NULL, be, a, cur, N, H, W);
    be->group_norm(be, cur, cur, N, C, H * W, G, m->e_norm_out.g, m->e_norm_out.b, VAE_EPS, 1);
    float *t = sdc_arena_alloc(a, (size_t)N * 2 * Z * H * W);
    sdc_conv_fwd(be, &m->e_conv_out, t, cur, N, H, W, 1, NULL);
    sdc_conv_fwd(be, &m->quant_conv, moments, t, N, H, W, 1, NULL);
    sdc_arena_reset(a, mark0);
}
