/* The op interface: the model code (CLIP, UNet, VAE) is written once against
 * this table of functions; each backend fills it.
 *
 * Conventions
 * - Activations are fp32, contiguous, row-major, in the layouts PyTorch uses:
 *   images/feature maps [N, C, H, W]; token sequences [N, S, D].
 * - Weights are sdc_weight (F32, F16 or BF16, read-only, host memory, usually
 *   mapped from the model file); the backend converts as it reads, and a
 *   device backend keeps its own copy (see `weights`).  A bias or norm
 *   parameter may be NULL where stated.
 * - Addresses.  Activation memory is blocks the backend hands out
 *   (buffer_alloc); an activation address is the block's base plus a byte
 *   offset: element i of a block is at base + i (a float * counts fp32
 *   slots).  The base is host memory on the CPU and an opaque address on a
 *   device (never dereferenced by anyone but the backend, which maps
 *   p - base to an offset in its device buffer; fp16 storage maps element i
 *   to byte 2i).  The model takes addresses from an arena over one block
 *   (core/arena.h).  During planning the arena hands out NULL and the model
 *   runs against the null backend (every op a no-op), so model code never
 *   reads or writes activation memory itself: every touch of data goes
 *   through an op.
 * - Order and completion.  Ops run in call order, each seeing the results
 *   of the ones before; they may return before they finish (a device queues
 *   them).  Host arguments (ids, t, copy_in's source, shapes) are consumed
 *   before an op returns.  copy_out and sync wait for everything before
 *   them.  Ops allocate nothing: scratch is sized when the backend is
 *   created.
 * - Errors.  Ops return nothing; a failure (a device's out-of-resources, a
 *   kernel that does not build) is sticky: the backend records the first
 *   one with a message naming the op, its shape and the device's error,
 *   skips the ops after it, and sync returns it.  Results read back before
 *   a failing sync are garbage and must not be used (the pipeline checks
 *   sync after every network pass, so a failure never becomes an image).
 * - `out` never aliases an input unless the op says so.
 */
#ifndef SDC_BACKEND_H
#define SDC_BACKEND_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/weights.h"

typedef struct sdc_backend sdc_backend;

typedef enum sdc_residency { SDC_RES_RELEASE = 0, SDC_RES_PREFETCH = 1 } sdc_residency;

struct sdc_backend {
    const char *name;
    void *impl; /* backend-private state (threads, scratch) */

    /* y[M, N] = x[M, K] · W[N, K]^T + b[N]  (PyTorch Linear).  b may be NULL.
     * If acc is non-NULL: y = acc + (x·W^T + b); acc may alias y (residual). */
    void (*linear)(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                   const sdc_weight *b, const float *acc, int M, int N, int K);

    /* A Linear between the feature-map and the token layouts, the transpose
     * absorbed into the product (Transformer2DModel's proj_in/proj_out, the
     * VAE attention's projections).  W [O, C], b [O] or NULL.
     * to_tokens != 0: y [N, HW, O] = x^T · W^T + b for x [N, C, HW] (acc
     *   must be NULL);
     * to_tokens == 0: y [N, O, HW] = acc + (x · W^T + b)^T for x [N, HW, C]
     *   (acc [N, O, HW] or NULL; may alias y: the residual). */
    void (*linear_map)(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                       const sdc_weight *b, const float *acc, int N, int HW, int C, int O,
                       int to_tokens);

    /* 2-D convolution, PyTorch Conv2d semantics, zero padding:
     * x [N, C, H, W], w [O, C, kh, kw], b [O] or NULL,
     * y [N, O, Ho, Wo] with Ho = (H + 2*pad - kh)/stride + 1 (same for Wo).
     * If acc is non-NULL (shape of y): y = acc + conv; acc may alias y. */
    void (*conv2d)(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                   const sdc_weight *w, const sdc_weight *b, int O, int kh, int kw,
                   int stride, int pad, const float *acc);

    /* GroupNorm over x [N, C, HW] with G groups (C % G == 0), biased variance,
     * y = (x - mean) / sqrt(var + eps) * gamma[c] + beta[c]; gamma/beta may be
     * NULL (1 and 0).  silu != 0 applies y = y * sigmoid(y) afterwards.
     * add [N, C] or NULL: normalises x[n, c, :] + add[n*C + c] instead (a
     * ResNet block's timestep embedding, fused; x itself is not changed
     * unless y aliases it).  y may alias x. */
    void (*group_norm)(sdc_backend *be, float *y, const float *x, const float *add, int N,
                       int C, int HW, int G, const sdc_weight *gamma, const sdc_weight *beta,
                       float eps, int silu);

    /* LayerNorm over the last dim D of x [rows, D]; biased variance.
     * gamma/beta may be NULL.  y may alias x. */
    void (*layer_norm)(sdc_backend *be, float *y, const float *x, int rows, int D,
                       const sdc_weight *gamma, const sdc_weight *beta, float eps);

    /* Multi-head scaled dot-product attention for one batch item:
     * q [Sq, q_stride] holding heads*dh used columns (head h at h*dh),
     * k, v [Sk, kv_stride] likewise; out [Sq, heads*dh] (contiguous).
     * out = softmax(q k^T * scale (+ causal mask: key j > query i gets -inf)) v.
     * Strides let q, k, v be slices of one fused [S, 3*D] projection. */
    void (*attention)(sdc_backend *be, float *out, const float *q, int q_stride,
                      const float *k, const float *v, int kv_stride, int Sq, int Sk,
                      int heads, int dh, float scale, int causal);

    /* Elementwise, n elements; y may alias x (and a, b). */
    void (*silu)(sdc_backend *be, float *y, const float *x, int64_t n);
    void (*gelu)(sdc_backend *be, float *y, const float *x, int64_t n);       /* erf GELU */
    void (*quick_gelu)(sdc_backend *be, float *y, const float *x, int64_t n); /* x*sigmoid(1.702x) */
    void (*relu)(sdc_backend *be, float *y, const float *x, int64_t n); /* x < 0 ? 0 : x (NaN stays) */
    void (*add)(sdc_backend *be, float *y, const float *a, const float *b, int64_t n);
    /* y = a + s * (b - a)   (classifier-free guidance: a = uncond, b = cond) */
    void (*lerp)(sdc_backend *be, float *y, const float *a, const float *b, float s, int64_t n);
    /* y = a * x + b * z (z may be NULL: y = a * x). y may alias x or z. */
    void (*axpby)(sdc_backend *be, float *y, float a, const float *x, float b, const float *z,
                  int64_t n);

    /* GEGLU: x [rows, 2*D] = [h | gate];  y [rows, D] = h * gelu(gate). */
    void (*geglu)(sdc_backend *be, float *y, const float *x, int rows, int D);

    /* y [N, C, 2H, 2W] = nearest-neighbour 2x upsampling of x [N, C, H, W]. */
    void (*upsample2x)(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W);

    /* Zero padding: y [N, C, H+top+bottom, W+left+right] (the VAE encoder's
     * downsampler pads right and bottom by one before a stride-2 conv). */
    void (*pad2d)(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                  int top, int bottom, int left, int right);

    /* y [N, W, H] = transpose of each x [N, H, W] (N independent matrices);
     * used for [C, HW] <-> [HW, C]. */
    void (*transpose)(sdc_backend *be, float *y, const float *x, int N, int H, int W);

    /* Channel concatenation: y [N, Ca+Cb, HW] = cat(a [N, Ca, HW], b [N, Cb, HW]). */
    void (*concat)(sdc_backend *be, float *y, const float *a, int Ca, const float *b, int Cb,
                   int N, int HW);

    /* y[i] = x[i] for n floats (device copy; the two ranges must not
     * overlap).  The copy_in/copy_out forms move data between host memory
     * and activation memory. */
    void (*copy)(sdc_backend *be, float *y, const float *x, int64_t n);
    void (*copy_in)(sdc_backend *be, float *dev, const float *host, int64_t n);
    void (*copy_out)(sdc_backend *be, float *host, const float *dev, int64_t n);

    /* y [n, D] = table[ids[i]] + (pos ? pos[i] : 0): token + position
     * embedding.  table [V, D], pos [>= n, D] or NULL.  ids are host memory
     * and already validated (< V). */
    void (*embed)(sdc_backend *be, float *y, const int32_t *ids, int n,
                  const sdc_weight *table, const sdc_weight *pos, int D);

    /* Sinusoidal timestep embedding as diffusers' get_timestep_embedding with
     * flip_sin_to_cos=True, downscale_freq_shift=0 (SD 1.x):
     * freq_i = exp(-ln(10000) * i / half), half = dim/2,
     * y[n, :] = [cos(t[n]*freq), sin(t[n]*freq)].  t is host memory. */
    void (*timestep_embed)(sdc_backend *be, float *y, const float *t, int n, int dim);

    /* ---- memory, residency, completion ---------------------------------- */

    /* A block of activation memory of `bytes` (a multiple of 64), its base
     * 64-byte aligned: host memory on the CPU, an opaque address on a
     * device.  SDC_ERR_NOMEM (message set) if it cannot be had. */
    sdc_status (*buffer_alloc)(sdc_backend *be, size_t bytes, float **base);
    void (*buffer_free)(sdc_backend *be, float *base); /* base NULL: nothing */

    /* Residency of n weights (entries may be NULL):
     *   SDC_RES_PREFETCH: they are used soon (CPU: their pages read in;
     *     device: uploaded now rather than at first use);
     *   SDC_RES_RELEASE: not used again until a later prefetch or use
     *     (CPU: their pages dropped from the resident set; device: its copy
     *     freed).
     * A weight an op uses is made resident by the op if it is not.  Advice
     * only: the results do not depend on it.  A device finds its copy by
     * w->data, so whoever owns weight memory releases the weights
     * (SDC_RES_RELEASE) before freeing or unmapping it. */
    void (*weights)(sdc_backend *be, const sdc_weight *const *w, int n, sdc_residency r);
    /* Host page residency, set by the owner of the weights' mapping
     * (sdc_backend_set_host_pages); a backend's `weights` calls it for the
     * host copy (the CPU's only copy; a device's upload source). */
    void (*host_pages)(void *ctx, const sdc_weight *w, sdc_residency r);
    void *host_pages_ctx;

    /* Waits for every op so far; returns SDC_OK, or the first failure since
     * the last sync (its message in sdc_last_error) and clears it. */
    sdc_status (*sync)(sdc_backend *be);

    /* Device memory in use now and at most since creation, bytes (NULL on
     * the CPU, whose memory the process's RSS shows). */
    void (*memory)(sdc_backend *be, size_t *now, size_t *peak);

    /* Releases impl. */
    void (*free)(sdc_backend *be);
};

/* Sets the host page hook of be (and of the backend a profiler wraps). */
void sdc_backend_set_host_pages(sdc_backend *be,
                                void (*fn)(void *ctx, const sdc_weight *w, sdc_residency r),
                                void *ctx);

/* The CPU backend.  n_threads <= 0: all cores.  force_ref != 0 (or the
 * environment variable SDC_FORCE_REF=1) selects the plain C reference ops. */
sdc_backend *sdc_backend_cpu_create(int n_threads, int force_ref);
/* The bf16 mode of a CPU backend (on != 0): linear and convolution round
 * their operands to bf16 and multiply them with bf16 dot products,
 * accumulating in f32: on AMX tiles where the CPU has AMX-BF16 and the OS
 * grants the tile state (attention's products too), else with AVX512_BF16
 * (error stated in docs/perf.md).  SDC_AMX=0 leaves AMX out,
 * SDC_AMX=emulate runs the AMX kernel on emulated tiles on any CPU (tests);
 * the backend's name says which (and why AMX is not used where the CPU has
 * it).  Returns SDC_OK, or SDC_ERR_UNSUPPORTED (message set) if this
 * backend's CPU or build has no bf16 kernels. */
sdc_status sdc_backend_cpu_set_bf16(sdc_backend *be, int on);
/* Whether the bf16 mode is the faster one on this CPU backend
 * (SDC_PRECISION_AUTO): AMX tiles that can run here, or AVX512_BF16 on an
 * AMD CPU (Zen 4: 1.3x fp32 per step); not AVX512_BF16 alone on Intel
 * (there half the fp32 FMA rate).  docs/perf.md has the measurements. */
int sdc_backend_cpu_bf16_faster(sdc_backend *be);
/* Once *stop is non-zero, the CPU backend's ops skip their remaining work
 * (each ends within about one of its tasks): a cancelled generation stops
 * mid-pass instead of at the end of a step.  What they write then is
 * undefined.  stop NULL: never.  No effect on other backends. */
void sdc_backend_cpu_set_stop(sdc_backend *be, const atomic_int *stop);
/* The profiling backend (profile.c): forwards every op to inner (which it
 * then owns and frees) and adds up the wall time per (stage, op, shape).
 * Returns NULL if out of memory (inner is not freed then).  _stage names
 * the stage later ops count under; _report prints the table (stages in
 * first-use order, rows by time) and with reset != 0 clears it (f NULL:
 * clears without printing); _inner
 * gives the wrapped backend.  On a backend that is not a profiler, _stage
 * and _report do nothing and _inner returns it. */
sdc_backend *sdc_backend_profile_wrap(sdc_backend *inner);
sdc_backend *sdc_backend_profile_inner(sdc_backend *be);
void sdc_backend_profile_stage(sdc_backend *be, const char *stage);
void sdc_backend_profile_report(sdc_backend *be, FILE *f, int reset);
/* The planning backend: every op does nothing. Static; no free needed. */
sdc_backend *sdc_backend_null(void);

#endif
