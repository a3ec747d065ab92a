/* Building blocks shared by the UNet and the VAE (and the weight binder all
 * three networks use), written against the op interface.
 *
 * A block's weights are bound once by its *_bind function, which checks
 * every shape; its forward takes activation memory from the arena and gives
 * back everything above the arena's mark on entry, except where it says. */
#ifndef SDC_MODELS_BLOCKS_H
#define SDC_MODELS_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "core/arena.h"
#include "core/error.h"
#include "io/model_files.h"

/* ---- weight binding ------------------------------------------------------ */

/* Binds weights by canonical name.  The first failure is kept (status and
 * message); later binds are no-ops, so a create function binds everything
 * and checks binder.st once at the end. */
typedef struct sdc_binder {
    const sdc_model_files *mf; /* borrowed */
    sdc_status st;
} sdc_binder;

/* The weight named by fmt (printf-style, full canonical name) with exactly
 * this shape (missing trailing dims on either side count as 1, so a 1x1
 * conv weight [O, C, 1, 1] also binds as a Linear [O, C]); NULL after a
 * failure.  optional != 0: a missing tensor is NULL, not a failure (a
 * present one is still shape-checked). */
const sdc_weight *sdc_bind(sdc_binder *b, int optional, int ndim, const int64_t *shape,
                           const char *fmt, ...) SDC_PRINTF(5, 6);

typedef struct sdc_linear_w {
    const sdc_weight *w; /* [out, in] */
    const sdc_weight *b; /* [out] or NULL */
    int in, out;
} sdc_linear_w;

typedef struct sdc_conv_w {
    const sdc_weight *w; /* [out, in, k, k] */
    const sdc_weight *b; /* [out] */
    int in, out, k;
} sdc_conv_w;

typedef struct sdc_norm_w {
    const sdc_weight *g, *b; /* [C] each */
    int C;
} sdc_norm_w;

/* "<name>.weight" and "<name>.bias" (bias: 0 none, 1 required). */
void sdc_bind_linear(sdc_binder *b, sdc_linear_w *l, int in, int out, int bias,
                     const char *fmt, ...) SDC_PRINTF(6, 7);
void sdc_bind_conv(sdc_binder *b, sdc_conv_w *c, int in, int out, int k, const char *fmt, ...)
    SDC_PRINTF(6, 7);
void sdc_bind_norm(sdc_binder *b, sdc_norm_w *n, int C, const char *fmt, ...) SDC_PRINTF(4, 5);

/* y [M, out] = x [M, in] · W^T + b (+ acc) */
void sdc_linear_fwd(sdc_backend *be, const sdc_linear_w *l, float *y, const float *x, int M,
                    const float *acc);
/* The same Linear between layouts (backend.h's linear_map): to_tokens:
 * y [N, HW, out] from the map x [N, in, HW]; else y [N, out, HW] (+ acc)
 * from the tokens x [N, HW, in] */
void sdc_linear_map_fwd(sdc_backend *be, const sdc_linear_w *l, float *y, const float *x, int N,
                        int HW, const float *acc, int to_tokens);
/* y [N, out, Ho, Wo] = conv(x [N, in, H, W]) (+ acc); pad = k/2 */
void sdc_conv_fwd(sdc_backend *be, const sdc_conv_w *c, float *y, const float *x, int N, int H,
                  int W, int stride, const float *acc);

/* ---- ResnetBlock2D (diffusers, output_scale_factor 1, "default" time
 * embedding norm) ------------------------------------------------------------
 * h = conv1(silu(norm1(x))) + time_emb_proj(silu(temb))[:, :, None, None]
 * y = conv_shortcut(x) (or x) + conv2(silu(norm2(h))) */
typedef struct sdc_resnet_w {
    sdc_norm_w norm1, norm2;
    sdc_conv_w conv1, conv2;
    sdc_linear_w temb;     /* time_emb_proj; .w NULL in the VAE */
    sdc_conv_w shortcut;   /* 1x1 conv_shortcut; .w NULL when in == out */
    int in, out, groups;
    float eps;
} sdc_resnet_w;

/* prefix names the block ("unet.down_blocks.0.resnets.1"); temb_dim 0: no
 * time embedding. */
void sdc_bind_resnet(sdc_binder *b, sdc_resnet_w *r, int in, int out, int temb_dim, int groups,
                     float eps, const char *prefix);
/* x [N, in, H, W], temb_act [N, temb_dim] = silu(temb) or NULL ->
 * y [N, out, H, W].  y may equal x when in == out. */
void sdc_resnet_fwd(const sdc_resnet_w *r, sdc_backend *be, sdc_arena *a, float *y,
                    const float *x, int N, int H, int W, const float *temb_act);
/* The same result, bit for bit, for a block with a shortcut (in != out)
 * whose input is dead afterwards: x is overwritten (it holds
 * silu(norm1(x)) on return), y must not overlap x.  Order:
 * y = conv_shortcut(x); x = silu(norm1(x)); h = conv1(x) (+ temb);
 * y = y + conv2(silu(norm2(h))).  Scratch: one [N, out, H, W] instead of
 * sdc_resnet_fwd's [N, in, H, W] + [N, out, H, W]. */
void sdc_resnet_fwd_consume(const sdc_resnet_w *r, sdc_backend *be, sdc_arena *a, float *y,
                            float *x, int N, int H, int W, const float *temb_act);

/* ---- single-head self-attention of the VAE mid block (diffusers Attention
 * with group_norm, residual_connection, bias) -------------------------------
 * x += to_out(softmax(q k^T / sqrt(C)) v), q, k, v = linear(group_norm(x))
 * over the H*W positions. */
typedef struct sdc_vae_attn_w {
    sdc_norm_w norm;
    sdc_linear_w q, k, v, out;
    int C, groups;
    float eps;
} sdc_vae_attn_w;

void sdc_bind_vae_attn(sdc_binder *b, sdc_vae_attn_w *w, int C, int groups, float eps,
                       const char *prefix);
/* x [N, C, H*W], updated in place. */
void sdc_vae_attn_fwd(const sdc_vae_attn_w *w, sdc_backend *be, sdc_arena *a, float *x, int N,
                      int HW);

/* ---- weight residency (low-memory mode) -----------------------------------
 * In low-memory mode a network asks its backend to make a block's weights
 * resident before the block runs and to release them right after
 * (be->weights: on the CPU their mapped pages, on a device its copy); the
 * next pass brings them back.  The arithmetic is unchanged.  pg NULL:
 * nothing is done, so model code passes NULL while planning or when the
 * mode is off.  Each call is one be->weights call for the whole block. */
typedef struct sdc_pager {
    sdc_backend *be; /* borrowed */
} sdc_pager;

void sdc_page_linear(const sdc_pager *pg, const sdc_linear_w *l, sdc_residency r);
void sdc_page_conv(const sdc_pager *pg, const sdc_conv_w *c, sdc_residency r);
void sdc_page_norm(const sdc_pager *pg, const sdc_norm_w *n, sdc_residency r);
void sdc_page_resnet(const sdc_pager *pg, const sdc_resnet_w *w, sdc_residency r);
void sdc_page_vae_attn(const sdc_pager *pg, const sdc_vae_attn_w *w, sdc_residency r);

/* ---- arena helpers ---------------------------------------------------------- */

/* p + i, or NULL while planning (offsetting NULL is undefined). */
static inline float *sdc_at(float *p, size_t i) { return p ? p + i : NULL; }
static inline const float *sdc_atc(const float *p, size_t i) { return p ? p + i : NULL; }

/* A block's result src (n floats), allocated at arena offset *src_off, is
 * moved down to offset mark when it fits below *src_off (no overlap), and
 * the arena is reset to just above it; otherwise the arena is reset to just
 * above src where it is.  Returns where the result now lives and sets
 * *src_off to its offset.  Decided from offsets only, so planning and
 * running agree.  Everything between mark and *src_off must be dead. */
float *sdc_settle(sdc_backend *be, sdc_arena *a, size_t mark, float *src, size_t *src_off,
                  size_t n);

/* Nearest 2x upsampling in place: x [N, C, H, W], allocated at arena offset
 * x_off at the top of the arena, becomes [N, C, 2H, 2W] at the same place
 * (the arena grows to hold it).  Returns the result (NULL while planning).
 * Planes are written last to first, in groups whose destination lies above
 * every source plane not yet read; plane 0 goes through a copy. */
float *sdc_upsample2x_in_place(sdc_backend *be, sdc_arena *a, float *x, size_t x_off, int N,
                               int C, int H, int W);

#endif
