/* The reference ops: the specification of every op in backends/backend.h,
 * as plain single-threaded loops over host memory (dot products accumulated
 * in double).  Every backend's ops are tested against these
 * (tests/test_backend_ops.c), and these against PyTorch (tests/test_ops.c).
 * The backend argument is unused: pointers are host memory. */
#ifndef SDC_BACKENDS_REF_H
#define SDC_BACKENDS_REF_H

#include <math.h>

#include "backends/backend.h"

void sdc_ref_linear(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                    const sdc_weight *b, const float *acc, int M, int N, int K);
void sdc_ref_linear_map(sdc_backend *be, float *y, const float *x, const sdc_weight *W,
                        const sdc_weight *b, const float *acc, int N, int HW, int C, int O,
                        int to_tokens);
void sdc_ref_conv2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                    const sdc_weight *w, const sdc_weight *b, int O, int kh, int kw, int stride,
                    int pad, const float *acc);
void sdc_ref_group_norm(sdc_backend *be, float *y, const float *x, const float *add, int N, int C,
                        int HW, int G, const sdc_weight *gamma, const sdc_weight *beta,
                        float eps, int silu);
void sdc_ref_layer_norm(sdc_backend *be, float *y, const float *x, int rows, int D,
                        const sdc_weight *gamma, const sdc_weight *beta, float eps);
void sdc_ref_attention(sdc_backend *be, float *out, const float *q, int q_stride,
                       const float *k, const float *v, int kv_stride, int Sq, int Sk, int heads,
                       int dh, float scale, int causal);
void sdc_ref_silu(sdc_backend *be, float *y, const float *x, int64_t n);
void sdc_ref_gelu(sdc_backend *be, float *y, const float *x, int64_t n);
void sdc_ref_quick_gelu(sdc_backend *be, float *y, const float *x, int64_t n);
void sdc_ref_relu(sdc_backend *be, float *y, const float *x, int64_t n);
void sdc_ref_add(sdc_backend *be, float *y, const float *a, const float *b, int64_t n);
void sdc_ref_lerp(sdc_backend *be, float *y, const float *a, const float *b, float s,
                  int64_t n);
void sdc_ref_axpby(sdc_backend *be, float *y, float a, const float *x, float b, const float *z,
                   int64_t n);
void sdc_ref_geglu(sdc_backend *be, float *y, const float *x, int rows, int D);
void sdc_ref_upsample2x(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W);
void sdc_ref_pad2d(sdc_backend *be, float *y, const float *x, int N, int C, int H, int W,
                   int top, int bottom, int left, int right);
void sdc_ref_transpose(sdc_backend *be, float *y, const float *x, int N, int H, int W);
void sdc_ref_concat(sdc_backend *be, float *y, const float *a, int Ca, const float *b, int Cb,
                    int N, int HW);
void sdc_ref_copy(sdc_backend *be, float *y, const float *x, int64_t n);
void sdc_ref_embed(sdc_backend *be, float *y, const int32_t *ids, int n, const sdc_weight *table,
                   const sdc_weight *pos, int D);
void sdc_ref_timestep_embed(sdc_backend *be, float *y, const float *t, int n, int dim);

/* Scalar formulas shared by the reference and the portable threaded ops. */
static inline float sdc_ref_gelu1(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

#endif
