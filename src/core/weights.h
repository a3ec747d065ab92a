/* Weights: read-only tensors that live in a memory-mapped model file. */
#ifndef SDC_CORE_WEIGHTS_H
#define SDC_CORE_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "sdc.h"

/* New values go at the end. */
typedef enum sdc_dtype {
    SDC_DT_F32 = 0,
    SDC_DT_F16,
    SDC_DT_BF16,
    SDC_DT_F64,
    SDC_DT_I64,
    SDC_DT_I32,
    SDC_DT_I16,
    SDC_DT_I8,
    SDC_DT_U8,
    SDC_DT_BOOL,
    SDC_DT_COUNT
} sdc_dtype;

#define SDC_MAX_DIMS 8

/* One tensor.  `data` points into the mapped file (or, for a tensor that had
 * to be converted, into memory owned by the weight store); it stays valid
 * until the store is freed.  Shapes are outermost first, as in PyTorch:
 * a Linear weight is [out, in], a Conv2d weight [out, in, kh, kw]. */
typedef struct sdc_weight {
    const char *name;   /* the name as stored in the file */
    sdc_dtype dtype;
    int ndim;
    int64_t shape[SDC_MAX_DIMS];
    int64_t numel;
    const void *data;
    size_t nbytes;
} sdc_weight;

size_t sdc_dtype_size(sdc_dtype dt);   /* 0 for an unknown value */
const char *sdc_dtype_name(sdc_dtype dt);

/* Scalar conversions used by the references and the loaders. */
float sdc_f16_to_f32(uint16_t h);
uint16_t sdc_f32_to_f16(float f); /* round to nearest even */
float sdc_bf16_to_f32(uint16_t b);

/* Element i of a floating-point weight (F32, F16, BF16) as float. */
float sdc_weight_get(const sdc_weight *w, int64_t i);
/* Converts a whole floating-point weight to float (n = numel). */
void sdc_weight_to_f32(const sdc_weight *w, float *dst);

#endif
