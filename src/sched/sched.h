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

/* Options beyond sdc_sched_create's (which takes sdc_sched_opts_default()):
 *   spacing  diffusers' timestep_spacing; DEFAULT the class's own.  A
 *            non-default spacing is refused with karras, and by lcm and tcd
 *            (their classes ignore timestep_spacing), and where diffusers'
 *            trailing grid (numpy arange(T, 0, -T/steps)) has steps + 1
 *            entries (e.g. 61 steps).
 *   eta      the eta StableDiffusionPipeline passes to step() (its default
 *            0.0): tcd's gamma in [0, 1] (0: deterministic, no draws; TCD's
 *            authors suggest 0.3); must be 0 for ddim (eta > 0 not offered);
 *            ignored by the others, whose step() takes none. */
typedef struct sdc_sched_opts {
    sdc_spacing spacing;
    double eta;
} sdc_sched_opts;

sdc_sched_opts sdc_sched_opts_default(void);
sdc_status sdc_sched_create_ex(sdc_sampler sampler, sdc_schedule schedule,
                               const sdc_sched_opts *opts, const sdc_sched_config *cfg,
                               int steps, int64_t n, sdc_sched **out);
void sdc_sched_free(sdc_sched *s);

int sdc_sched_len(const sdc_sched *s);               /* model evaluations */
float sdc_sched_timestep(const sdc_sched *s, int i); /* t given to the UNet */
float sdc_sched_init_noise_sigma(const sdc_sched *s);
float sdc_sched_input_scale(const sdc_sched *s, int i);
/* Advances x [n] with the model output eps [n] at index i.  Steps run in
 * order i = begin .. len-1 (begin 0 unless set below); the first step
 * clears the history, so one sdc_sched serves several images.  rng: the
 * generator for ancestral noise, drawn as diffusers draws from its
 * generator: euler_a n normals every step; lcm n normals every step but
 * the last (index len-1); tcd with eta > 0 likewise; unused, and may be
 * NULL, for the other samplers (and tcd with eta 0). */
void sdc_sched_step(sdc_sched *s, int i, const float *eps, float *x, sdc_rng *rng);

/* img2img and inpainting (diffusers' get_timesteps and add_noise).
 * order: 2 for heun (its timesteps are doubled), else 1.
 * begin_for_strength: the index the loop starts at for a strength in
 * [0, 1]: (steps - min(int(steps * strength), steps)) * order, or -1 when
 * that leaves no step (diffusers then refuses).
 * set_begin: the loop runs i = begin .. len-1 and the first step clears the
 * history (PNDM's counter, DPM-Solver's lower orders count from it).
 * add_noise: out = x0 noised to index i (i <= len; len: noise level 0 for
 * the sigma samplers), as that sampler's add_noise at that step does:
 *   euler, euler_a, heun, lms   x0 + noise * sigma_i
 *   dpm++2m                     alpha_i x0 + sigma_t,i noise (alpha = 1/sqrt(sigma^2 + 1))
 *   ddim, pndm, lcm, tcd        sqrt(acp[t_i]) x0 + sqrt(1 - acp[t_i]) noise
 * out may alias x0 or noise. */
int sdc_sched_order(const sdc_sched *s);
int sdc_sched_begin_for_strength(const sdc_sched *s, double strength);
void sdc_sched_set_begin(sdc_sched *s, int begin);
int sdc_sched_begin(const sdc_sched *s);
void sdc_sched_add_noise(const sdc_sched *s, int i, const float *x0, const float *noise,
                         float *out);

/* The denoised estimate (diffusers' pred_original_sample; for lcm the
 * consistency output `denoised`, c_skip x + c_out x0, which LCM's pipelines
 * decode) at index i from the latents x before step i and the model output
 * eps there: what a preview shows. */
void sdc_sched_pred_x0(const sdc_sched *s, int i, const float *x, const float *eps, float *out);

/* For tests: diffusers' scheduler.timesteps and .sigmas (sigmas has len+1
 * entries, or 0 for samplers without sigmas). */
int sdc_sched_n_sigmas(const sdc_sched *s);
double sdc_sched_sigma(const sdc_sched *s, int i);

#endif
