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
#include <string.h>

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
    sdc_page_resnet(pg, r, SDC_RES_PREFETCH);
    if (r->in == r->out) {
        sdc_resnet_fwd(r, be, a, cur, cur, N, H, W, NULL);
    } else {
        size_t n = (size_t)N * r->out * H * W, res_off = sdc_arena_mark(a);
        float *res = sdc_arena_alloc(a, n);
        sdc_resnet_fwd_consume(r, be, a, res, cur, N, H, W, NULL);
        cur = sdc_settle(be, a, *cur_off, res, &res_off, n);
        *cur_off = res_off;
    }
    sdc_page_resnet(pg, r, SDC_RES_RELEASE);
    return cur;
}

static void mid_fwd(const mid_block *mb, const sdc_pager *pg, sdc_backend *be, sdc_arena *a,
                    float *x, int N, int H, int W) {
    sdc_page_resnet(pg, &mb->res[0], SDC_RES_PREFETCH);
    sdc_resnet_fwd(&mb->res[0], be, a, x, x, N, H, W, NULL);
    sdc_page_resnet(pg, &mb->res[0], SDC_RES_RELEASE);
    sdc_page_vae_attn(pg, &mb->attn, SDC_RES_PREFETCH);
    sdc_vae_attn_fwd(&mb->attn, be, a, x, N, H * W);
    sdc_page_vae_attn(pg, &mb->attn, SDC_RES_RELEASE);
    sdc_page_resnet(pg, &mb->res[1], SDC_RES_PREFETCH);
    sdc_resnet_fwd(&mb->res[1], be, a, x, x, N, H, W, NULL);
    sdc_page_resnet(pg, &mb->res[1], SDC_RES_RELEASE);
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
    const sdc_pager pager = {be}, *pg = m->low_memory && !a->planning ? &pager : NULL;
    size_t mark0 = sdc_arena_mark(a);
    int H = h, W = w;
    float *p = sdc_arena_alloc(a, (size_t)N * Z * H * W);
    sdc_conv_fwd(be, &m->post_quant_conv, p, z, N, H, W, 1, NULL);
    size_t cur_off = sdc_arena_mark(a);
    float *cur = sdc_arena_alloc(a, (size_t)N * CL * H * W);
    sdc_page_conv(pg, &m->d_conv_in, SDC_RES_PREFETCH);
    sdc_conv_fwd(be, &m->d_conv_in, cur, p, N, H, W, 1, NULL);
    sdc_page_conv(pg, &m->d_conv_in, SDC_RES_RELEASE);
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
            sdc_page_conv(pg, &m->d_up[i], SDC_RES_PREFETCH);
            sdc_conv_fwd(be, &m->d_up[i], res, up, N, H, W, 1, NULL);
            sdc_page_conv(pg, &m->d_up[i], SDC_RES_RELEASE);
            cur = sdc_settle(be, a, cur_off, res, &res_off, n);
            cur_off = res_off;
        }
    }
    int C0 = c->channels[0];
    be->group_norm(be, cur, cur, NULL, N, C0, H * W, G, m->d_norm_out.g, m->d_norm_out.b, VAE_EPS, 1);
    sdc_conv_fwd(be, &m->d_conv_out, img, cur, N, H, W, 1, NULL);
    sdc_page_norm(pg, &m->d_norm_out, SDC_RES_RELEASE);
    sdc_page_conv(pg, &m->d_conv_out, SDC_RES_RELEASE);
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
    be->group_norm(be, cur, cur, NULL, N, C, H * W, G, m->e_norm_out.g, m->e_norm_out.b, VAE_EPS, 1);
    float *t = sdc_arena_alloc(a, (size_t)N * 2 * Z * H * W);
    sdc_conv_fwd(be, &m->e_conv_out, t, cur, N, H, W, 1, NULL);
    sdc_conv_fwd(be, &m->quant_conv, moments, t, N, H, W, 1, NULL);
    sdc_arena_reset(a, mark0);
}

/* ---- tiled decoding (models.h: diffusers' tiled_decode) ------------------ */

int sdc_vae_tile_latent(const sdc_vae *m) {
    const int f = 1 << (m->cfg.levels - 1), s = m->cfg.sample_size;
    return s > 0 && s % (4 * f) == 0 ? s / f : 0;
}

/* The tile geometry in latent positions (T, S) and pixels (TP, BL, RL). */
typedef struct tiling {
    int T, S;      /* tile side, stride = 3T/4 */
    int f;         /* pixels per latent position */
    int TP, BL;    /* tile side T*f, blend extent TP/4 */
    int RL;        /* row limit TP - BL (= S*f): what a tile keeps */
    int cols;      /* tile columns: ceil(w / S) */
    int P;         /* image planes N * out_channels */
} tiling;

static tiling tiling_of(const sdc_vae *m, int N, int w, int tile) {
    assert(N > 0 && w > 0 && tile >= 4 && tile % 4 == 0);
    tiling g;
    g.T = tile, g.S = tile / 4 * 3, g.f = 1 << (m->cfg.levels - 1);
    g.TP = tile * g.f, g.BL = g.TP / 4, g.RL = g.TP - g.BL;
    g.cols = (w + g.S - 1) / g.S;
    g.P = N * m->cfg.out_channels;
    return g;
}

/* Workspace: latent tile [N*Z, T, T], decoded tile [P, TP, TP], a row band
 * [P, BL, TP] per tile column, a column band [P, TP, BL]. */
static size_t work_tile_z(const sdc_vae *m, int N, const tiling *g) {
    return (size_t)N * m->cfg.latent_channels * g->T * g->T;
}
static size_t work_tile_img(const tiling *g) { return (size_t)g->P * g->TP * g->TP; }
static size_t work_band(const tiling *g) { return (size_t)g->P * g->BL * g->TP; }

size_t sdc_vae_tiled_work_floats(const sdc_vae *m, int N, int w, int tile) {
    tiling g = tiling_of(m, N, w, tile);
    return work_tile_z(m, N, &g) + work_tile_img(&g) + ((size_t)g.cols + 1) * work_band(&g);
}

static int imin(int a, int b) { return a < b ? a : b; }

/* diffusers' blend weights for position y of e: (1 - y/e) on the
 * neighbour, y/e on the tile (Python doubles, applied in fp32). */
static float blend_px(float nb, float t, int y, int e) {
    const float wn = (float)(1.0 - (double)y / e), wt = (float)((double)y / e);
    return nb * wn + t * wt;
}

/* t [P, ph, pw]: rows y < e blended with band rows nb - e + y of band
 * [P, nb, pw] (the bottom of the tile above). */
static void blend_rows(float *t, const float *band, int P, int ph, int pw, int nb, int e) {
    for (int p = 0; p < P; p++)
        for (int y = 0; y < e; y++) {
            float *row = t + ((size_t)p * ph + y) * pw;
            const float *src = band + ((size_t)p * nb + nb - e + y) * pw;
            for (int x = 0; x < pw; x++) row[x] = blend_px(src[x], row[x], y, e);
        }
}

/* t [P, ph, pw]: columns x < e blended with band columns nb - e + x of
 * band [P, ph, nb] (the right of the tile to the left). */
static void blend_cols(float *t, const float *band, int P, int ph, int pw, int nb, int e) {
    for (int p = 0; p < P; p++)
        for (int y = 0; y < ph; y++) {
            float *row = t + ((size_t)p * ph + y) * pw;
            const float *src = band + ((size_t)p * ph + y) * nb + nb - e;
            for (int x = 0; x < e; x++) row[x] = blend_px(src[x], row[x], x, e);
        }
}

/* Blends the decoded tile t [P, ph, pw] with its neighbours (above: the
 * rows of the tile above, 0 in the first tile row; left: the columns of the
 * tile to the left, 0 in the first column), keeps its bottom rows in vb
 * [P, min(ph, BL), pw] and its right columns in hb [P, ph, min(pw, BL)] for
 * the tiles below and to the right, and crops it into img [P, H, W] at
 * pixel (y0, x0). */
static void place_tile(const tiling *g, float *t, int ph, int pw, int above, int left,
                       float *vb, float *hb, float *img, size_t H, size_t W, size_t y0,
                       size_t x0) {
    const int P = g->P;
    if (above) blend_rows(t, vb, P, ph, pw, imin(above, g->BL), imin(imin(above, ph), g->BL));
    if (left) blend_cols(t, hb, P, ph, pw, imin(left, g->BL), imin(imin(left, pw), g->BL));
    const int nr = imin(ph, g->BL), nc = imin(pw, g->BL);
    const int kh = imin(ph, g->RL), kw = imin(pw, g->RL);
    for (int p = 0; p < P; p++) {
        const float *tp = t + (size_t)p * ph * pw;
        memcpy(vb + (size_t)p * nr * pw, tp + (size_t)(ph - nr) * pw,
               (size_t)nr * pw * sizeof *vb);
        for (int y = 0; y < ph; y++)
            memcpy(hb + ((size_t)p * ph + y) * nc, tp + (size_t)y * pw + pw - nc,
                   (size_t)nc * sizeof *hb);
        for (int y = 0; y < kh; y++)
            memcpy(img + ((size_t)p * H + y0 + y) * W + x0, tp + (size_t)y * pw,
                   (size_t)kw * sizeof *img);
    }
}

/* Memory: the arena holds one tile's latent and image and one
 * sdc_vae_decode of at most T x T; blending and cropping run on the host
 * copy of the tile, with the bands that later tiles blend against. */
void sdc_vae_decode_tiled(const sdc_vae *m, sdc_backend *be, sdc_arena *a, const float *z,
                          int N, int h, int w, int tile, float *img, float *work) {
    assert(N > 0 && h > 0 && w > 0 && tile >= 4 && tile % 4 == 0);
    const tiling g = tiling_of(m, N, w, tile);
    const int Z = m->cfg.latent_channels, f = g.f;
    const int host = !a->planning;
    float *zt = NULL, *t = NULL, *vbands = NULL, *hband = NULL;
    if (host) {
        zt = work;
        t = zt + work_tile_z(m, N, &g);
        vbands = t + work_tile_img(&g);
        hband = vbands + (size_t)g.cols * work_band(&g);
    }
    int above = 0; /* pixel rows of the previous tile row; 0 in the first */
    for (int i = 0; i < h; i += g.S) {
        const int th = imin(tile, h - i), ph = th * f;
        int left = 0; /* pixel columns of the previous tile in this row */
        for (int j = 0, col = 0; j < w; j += g.S, col++) {
            const int tw = imin(tile, w - j), pw = tw * f;
            const size_t nz = (size_t)N * Z * th * tw, nt = (size_t)g.P * ph * pw;
            const size_t mark = sdc_arena_mark(a);
            float *zd = sdc_arena_alloc(a, nz); /* dev [N, Z, th, tw] */
            float *td = sdc_arena_alloc(a, nt); /* dev [N, out, ph, pw] */
            if (host)
                for (int p = 0; p < N * Z; p++)
                    for (int y = 0; y < th; y++)
                        memcpy(zt + ((size_t)p * th + y) * tw,
                               z + ((size_t)p * h + i + y) * w + j, (size_t)tw * sizeof *zt);
            be->copy_in(be, zd, zt, (int64_t)nz);
            sdc_vae_decode(m, be, a, zd, N, th, tw, td);
            be->copy_out(be, t, td, (int64_t)nt);
            sdc_arena_reset(a, mark);
            if (host)
                place_tile(&g, t, ph, pw, above, left, vbands + (size_t)col * work_band(&g),
                           hband, img, (size_t)h * f, (size_t)w * f, (size_t)i * f,
                           (size_t)j * f);
            left = pw;
        }
        above = ph;
    }
}
