/* A 4x4 transpose of floats in NEON registers, for ops_neon.c's transpose
 * op and gemm_neon.c's panel packing. */
#ifndef SDC_CPU_NEON_TRANSPOSE_H
#define SDC_CPU_NEON_TRANSPOSE_H

#include <arm_neon.h>

/* r[i] = row i -> r[j] = column j. */
static inline void sdc_neon_transpose4(float32x4_t r[4]) {
    const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r[0], r[1])),
                      t1 = vreinterpretq_f64_f32(vtrn2q_f32(r[0], r[1])),
                      t2 = vreinterpretq_f64_f32(vtrn1q_f32(r[2], r[3])),
                      t3 = vreinterpretq_f64_f32(vtrn2q_f32(r[2], r[3]));
    r[0] = vreinterpretq_f32_f64(vtrn1q_f64(t0, t2));
    r[1] = vreinterpretq_f32_f64(vtrn1q_f64(t1, t3));
    r[2] = vreinterpretq_f32_f64(vtrn2q_f64(t0, t2));
    r[3] = vreinterpretq_f32_f64(vtrn2q_f64(t1, t3));
}

#endif
