/* PyTorch's CPU random generator, reproduced bit for bit:
 * torch.Generator("cpu").manual_seed(seed) followed by torch.randn(shape,
 * generator=g, dtype=float32) gives the same numbers as sdc_rng_randn. */
#ifndef SDC_SCHED_RNG_H
#define SDC_SCHED_RNG_H

#include <stdint.h>

typedef struct sdc_rng {
    uint32_t mt[624];
    int index;
    /* PyTorch's cached second normal sample of its double-precision path */
    int has_next_double;
    double next_double;
} sdc_rng;

void sdc_rng_seed(sdc_rng *r, uint64_t seed);
uint32_t sdc_rng_u32(sdc_rng *r);
uint64_t sdc_rng_u64(sdc_rng *r);
/* n float32 standard normal samples, as one torch.randn call of n elements. */
void sdc_rng_randn(sdc_rng *r, float *out, int64_t n);

#endif
