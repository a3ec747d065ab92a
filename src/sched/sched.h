/* Samplers: diffusers' schedulers for SD 1.x, reproduced.
 *
 * The loop mirrors diffusers' pipeline:
 *   x = randn * init_noise_sigma
 *   for i in 0..len-1:
 *       t   = timestep(i)
 *       eps = unet(x * input_scale(i), t)          (with CFG)
 *       step(i, eps, x)                            (x updated in place)
 * Heun's timesteps are doubled as in diffusers (len = 2*steps - 1); PLMS
 * (pndm) evaluates one extra time (len = steps + 1 for steps >= 2). */
#ifndef SDC_SCHED_SCHED_H
#define SDC_SCHED_SCHED_H

#include <stdint.h>

#include "models/config.h"
#include "sched/rng.h"
#include "sdc.h"

typedef struct sdc_sched sdc_sched;

/* n: elements of one latent (C*h*w).  Allocates all history buffers now;
 * step never allocates.  SDC_ERR_INVALID_ARG for steps outside
 * [1, num_train_timesteps] or a schedule the sampler does not offer (karras
 * with euler_a, ddim, pndm: their diffusers classes have no Karras option). */
sdc_status sdc_sched_create(sdc_sampler sampler, sdc_schedule schedule,
                            const sdc_sched_config *cfg, int steps, int64_t n,
                            sdc_sched **out);
void sdc_sched_free(sdc_sched *s);

int sdc_sched_len(const sdc_sched *s);               /* model evaluations */
float sdc_sched_timestep(const sdc_sched *s, int i); /* t given to the UNet */
float sdc_sched_init_noise_sigma(const sdc_sched *s);
float sdc_sched_input_scale(const sdc_sched *s, int i);
/* Advances x [n] with the model output eps [n] at index i.  Steps run in
 * order i = 0 .. len-1; step 0 clears the history, so one sdc_sched serves
 * several images.  rng: the generator for ancestral noise (euler_a draws n
 * normals per step from it, as diffusers does from its generator); unused,
 * and may be NULL, for the other samplers. */
void sdc_sched_step(sdc_sched *s, int i, const float *eps, float *x, sdc_rng *rng);

/* For tests: diffusers' scheduler.timesteps and .sigmas (sigmas has len+1
 * entries, or 0 for samplers without sigmas). */
int sdc_sched_n_sigmas(const sdc_sched *s);
double sdc_sched_sigma(const sdc_sched *s, int i);

#endif
