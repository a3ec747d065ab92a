/* diffusers 0.42.1's schedulers as StableDiffusionPipeline runs them.
 *
 * Each sampler is the diffusers class made with Class.from_config(the model's
 * scheduler config) and that class's own defaults for everything else:
 *   euler    EulerDiscreteScheduler       timestep_spacing linspace, final sigma 0
 *   euler_a  EulerAncestralDiscreteScheduler  linspace (no karras option)
 *   heun     HeunDiscreteScheduler        linspace
 *   dpm++2m  DPMSolverMultistepScheduler  dpmsolver++, order 2, midpoint,
 *                                         lower_order_final, final sigma 0, linspace
 *   ddim     DDIMScheduler                leading, eta 0
 *   pndm     PNDMScheduler                leading, skip_prk_steps
 *   lms      LMSDiscreteScheduler         linspace, order 4
 *   lcm      LCMScheduler                 original_inference_steps 50, timestep_scaling 10
 *   tcd      TCDScheduler                 original_inference_steps 50, gamma = the
 *                                         pipeline's eta (0 unless set)
 * A timestep spacing other than the class default (sdc_sched_opts) is that
 * class made with timestep_spacing set.  As the pipeline does, steps_offset
 * is taken as 1 and clip_sample as off whatever the config says
 * (StableDiffusionPipeline rewrites both).
 *
 * Precision follows diffusers: the noise schedule is float32 torch (betas from
 * torch.linspace, alphas_cumprod accumulated in double and stored as float),
 * timesteps and interpolated sigmas are numpy float64 then float32, and every
 * per-step coefficient and element operation is float32 in diffusers' order.
 * cmake/sched.cmake turns off FMA contraction for this file.  Known last-bit
 * differences: torch's sqrt/log/exp on float tensors (MKL/Sleef) and numpy's
 * float32 log are not always correctly rounded; here libm is used.  They stay
 * within an ulp of float32.  LMS coefficients are exact integrals (diffusers'
 * differ by up to 4e-7 relative, see lms_coefficient). */
#include "sched/sched.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define LMS_ORDER 4
#define MAX_HIST 5

struct sdc_sched {
    sdc_sampler sampler;
    sdc_schedule schedule;
    sdc_prediction pred;
    int steps;   /* num_inference_steps */
    int64_t n;   /* elements of one latent */
    int len;     /* model evaluations */
    int n_train; /* num_train_timesteps */
    int ratio;   /* num_train // steps (ddim, pndm) */
    int begin;   /* the first index the loop runs (img2img: sdc_sched_set_begin) */
    sdc_spacing spacing; /* resolved: never DEFAULT */
    double eta;          /* tcd's gamma (the pipeline's eta) */

    float *timesteps;   /* [len]   as the UNet receives them */
    float *sigmas;      /* [len+1] or NULL */
    float *scales;      /* [len]   factor on x before the UNet */
    float init_sigma;
    float *acp;         /* [n_train] alphas_cumprod */
    float final_acp;    /* alphas_cumprod "at t = -1" */

    /* history: hist owns n_hist blocks of n floats, h[k] points at block k */
    float *hist;
    float *h[MAX_HIST];
    int n_hist;

    /* step state (reset when step 0 runs) */
    float heun_dt;   /* heun: dt of the pending first-order step */
    int dpm_cur;     /* dpm++2m: block of the newest x0 prediction */
    int dpm_have;    /* dpm++2m: lower_order_nums */
    int n_ets;       /* pndm: model outputs kept (<= 4), newest at ets_head */
    int ets_head;
};

/* ---- the noise schedule ------------------------------------------------ */

/* torch.linspace(a, b, n, dtype=float32): step = (b - a) / (n - 1) in float,
 * first half a + step*i, second half b - step*(n-1-i), each fused (the ATen
 * kernel's expression, contracted to FMA in its build). */
static void torch_linspace_f32(double a, double b, int n, float *out) {
    float fa = (float)a, fb = (float)b;
    if (n == 1) {
        out[0] = fa;
        return;
    }
    float step = (fb - fa) / (float)(n - 1);
    int half = n / 2;
    for (int i = 0; i < n; i++)
        out[i] = i < half ? fmaf(step, (float)i, fa) : fmaf(-step, (float)(n - 1 - i), fb);
}

/* alphas_cumprod: betas = linspace(sqrt(b0), sqrt(b1))^2 (scaled_linear) or
 * linspace(b0, b1) (linear); alphas = 1 - betas; cumprod (double accumulator). */
static void make_alphas_cumprod(const sdc_sched_config *cfg, float *acp) {
    int T = cfg->num_train_timesteps;
    if (cfg->beta_schedule == SDC_BETA_SCALED_LINEAR) {
        torch_linspace_f32(pow(cfg->beta_start, 0.5), pow(cfg->beta_end, 0.5), T, acp);
        for (int i = 0; i < T; i++) acp[i] = acp[i] * acp[i];
    } else {
        torch_linspace_f32(cfg->beta_start, cfg->beta_end, T, acp);
    }
    double prod = 1.0;
    for (int i = 0; i < T; i++) {
        float alpha = 1.0f - acp[i];
        prod *= (double)alpha;
        acp[i] = (float)prod;
    }
}

/* numpy.linspace(0, stop, num)[i] in float64 */
static double np_linspace(double stop, int num, int i) {
    if (num == 1) return 0.0;
    if (i == num - 1) return stop;
    return (double)i * (stop / (double)(num - 1));
}

/* numpy.interp(x, arange(T), fp) */
static double np_interp(double x, const float *fp, int T) {
    if (x < 0.0) return fp[0];
    if (x > (double)(T - 1)) return fp[T - 1];
    int j = (int)floor(x);
    if (j >= T - 1 || (double)j == x) return fp[j];
    double slope = ((double)fp[j + 1] - (double)fp[j]) / 1.0;
    return slope * (x - (double)j) + (double)fp[j];
}

/* diffusers' _sigma_to_t: the fractional timestep whose log-sigma, linearly
 * interpolated in log_sigmas [T] (float32, increasing), equals log(sigma). */
static double sigma_to_t(double sigma, const float *log_sigmas, int T) {
    double log_sigma = log(sigma > 1e-10 ? sigma : 1e-10);
    int low = 0;
    for (int k = 0; k < T; k++)
        if (log_sigma - (double)log_sigmas[k] >= 0.0) low = k;
    if (low > T - 2) low = T - 2;
    double lo = log_sigmas[low], hi = log_sigmas[low + 1];
    double w = (lo - log_sigma) / (lo - hi);
    if (w < 0.0) w = 0.0;
    if (w > 1.0) w = 1.0;
    return (1.0 - w) * (double)low + w * (double)(low + 1);
}

/* Karras et al. 2022, eq. 5, rho = 7, over num points from sigma_max down. */
static double karras_sigma(double sigma_min, double sigma_max, int num, int i) {
    const double rho = 7.0;
    double ramp = np_linspace(1.0, num, i);
    double min_inv = pow(sigma_min, 1.0 / rho);
    double max_inv = pow(sigma_max, 1.0 / rho);
    return pow(max_inv + ramp * (min_inv - max_inv), rho);
}

static int offers_karras(sdc_sampler s) {
    return s == SDC_SAMPLER_EULER || s == SDC_SAMPLER_HEUN || s == SDC_SAMPLER_DPMPP_2M ||
           s == SDC_SAMPLER_LMS;
}

static int uses_sigmas(sdc_sampler s) {
    return s != SDC_SAMPLER_DDIM && s != SDC_SAMPLER_PNDM && s != SDC_SAMPLER_LCM &&
           s != SDC_SAMPLER_TCD;
}

static int is_consistency(sdc_sampler s) { return s == SDC_SAMPLER_LCM || s == SDC_SAMPLER_TCD; }

/* the class's default timestep_spacing */
static sdc_spacing default_spacing(sdc_sampler s) {
    return s == SDC_SAMPLER_DDIM || s == SDC_SAMPLER_PNDM ? SDC_SPACING_LEADING : SDC_SPACING_LINSPACE;
}

/* LCM and TCD: original_inference_steps, the distillation grid's size */
#define LCM_ORIGINAL_STEPS 50

static int hist_blocks(sdc_sampler s) {
    switch (s) {
    case SDC_SAMPLER_EULER_A: return 1;  /* noise */
    case SDC_SAMPLER_HEUN: return 2;     /* first-order derivative, sample */
    case SDC_SAMPLER_DPMPP_2M: return 2; /* x0 predictions, newest and previous */
    case SDC_SAMPLER_LMS: return LMS_ORDER; /* derivatives */
    case SDC_SAMPLER_PNDM: return 5;     /* 4 model outputs, first sample */
    case SDC_SAMPLER_LCM: return 1;      /* noise */
    case SDC_SAMPLER_TCD: return 1;      /* noise */
    default: return 0;
    }
}

/* diffusers' trailing grid: numpy arange(T, 0, -T/N).round() - 1, descending,
 * as numpy fills it (start, start + step, then start + i * (second - start));
 * 0 where that arange has other than N entries. */
static int trailing_grid(int T, int N, double *ts) {
    const double r = (double)T / (double)N;
    if (ceil((0.0 - (double)T) / -r) != (double)N) return 0;
    const double second = (double)T + -r, delta = second - (double)T;
    for (int k = 0; k < N; k++) {
        const double v = k == 0 ? (double)T : k == 1 ? second : (double)T + (double)k * delta;
        ts[k] = rint(v) - 1.0;
    }
    return 1;
}

/* The N timesteps, descending, of every sampler but lcm and tcd, before
 * Karras (whose sigmas replace them) and before Heun and PLMS repeat some:
 *   linspace  linspace(0, T-1, N) (float32 for the sigma samplers, rounded
 *             for ddim, pndm); dpm++2m: linspace(0, T-1, N+1).round() without 0
 *   leading   k * (T // N) + 1; dpm++2m: k * (T // (N+1)) + 1, k = N..1
 *   trailing  trailing_grid
 * Returns 0 where the trailing grid does not have N entries. */
static int spaced_timesteps(const sdc_sched *s, double *ts) {
    const int T = s->n_train, N = s->steps;
    const int dpm = s->sampler == SDC_SAMPLER_DPMPP_2M, sig = uses_sigmas(s->sampler) && !dpm;
    const int offset = 1; /* StableDiffusionPipeline forces steps_offset = 1 */
    switch (s->spacing) {
    case SDC_SPACING_TRAILING:
        if (!trailing_grid(T, N, ts)) return 0;
        break;
    case SDC_SPACING_LEADING:
        for (int k = 0; k < N; k++)
            ts[k] = dpm ? (double)((N - k) * (T / (N + 1)) + offset)
                        : (double)((N - 1 - k) * (T / N) + offset);
        break;
    default: /* linspace */
        for (int k = 0; k < N; k++) {
            if (dpm)
                ts[k] = rint(np_linspace((double)(T - 1), N + 1, N - k));
            else if (sig)
                ts[k] = (float)np_linspace((double)(T - 1), N, N - 1 - k);
            else
                ts[k] = rint(np_linspace((double)(T - 1), N, N - 1 - k));
        }
    }
    return 1;
}

/* Fills timesteps, sigmas, scales and init_sigma.  sig_tab/log_tab [T]:
 * sqrt((1 - acp) / acp) and its float32 log; scratch [2 * steps]. */
static void build_sigma_schedule(sdc_sched *s, const float *sig_tab, const float *log_tab,
                                 double *scratch) {
    int T = s->n_train, N = s->steps;
    int karras = s->schedule == SDC_SCHEDULE_KARRAS;
    /* per inference step, before Heun doubles them */
    double *ts = scratch, *sg = scratch + N;

    if (s->sampler == SDC_SAMPLER_DPMPP_2M) {
        /* spaced_timesteps did ts: int64 */
        if (karras) {
            for (int k = 0; k < N; k++) {
                sg[k] = karras_sigma(sig_tab[0], sig_tab[T - 1], N, k);
                ts[k] = rint(sigma_to_t(sg[k], log_tab, T));
            }
        } else {
            for (int k = 0; k < N; k++) sg[k] = np_interp(ts[k], sig_tab, T);
        }
    } else {
        /* spaced_timesteps did ts: float32 */
        for (int k = 0; k < N; k++) sg[k] = np_interp(ts[k], sig_tab, T);
        if (karras) {
            double smin = sg[N - 1], smax = sg[0];
            for (int k = 0; k < N; k++) {
                sg[k] = karras_sigma(smin, smax, N, k);
                ts[k] = sigma_to_t(sg[k], log_tab, T);
            }
        }
    }

    if (s->sampler == SDC_SAMPLER_HEUN) {
        /* sigmas [s0, s1, s1, ..., s_{N-1}, s_{N-1}, 0], timesteps [t0, t1, t1, ...] */
        s->sigmas[0] = (float)sg[0];
        s->timesteps[0] = (float)ts[0];
        for (int k = 1; k < N; k++) {
            s->sigmas[2 * k - 1] = s->sigmas[2 * k] = (float)sg[k];
            s->timesteps[2 * k - 1] = s->timesteps[2 * k] = (float)ts[k];
        }
        s->sigmas[2 * N - 1] = 0.0f;
    } else {
        for (int k = 0; k < N; k++) {
            s->sigmas[k] = (float)sg[k];
            s->timesteps[k] = (float)ts[k];
        }
        s->sigmas[N] = 0.0f;
    }

    if (s->sampler == SDC_SAMPLER_DPMPP_2M) {
        s->init_sigma = 1.0f;
        for (int i = 0; i < s->len; i++) s->scales[i] = 1.0f;
        return;
    }
    /* init_noise_sigma = sigmas.max() (linspace, trailing), sqrt(max^2 + 1)
     * (leading); x / sqrt(sigma^2 + 1) */
    float mx = s->sigmas[0];
    for (int i = 0; i <= s->len; i++) mx = s->sigmas[i] > mx ? s->sigmas[i] : mx;
    s->init_sigma = s->spacing == SDC_SPACING_LEADING ? sqrtf(mx * mx + 1.0f) : mx;
    for (int i = 0; i < s->len; i++) {
        float sig = s->sigmas[i];
        s->scales[i] = 1.0f / sqrtf(sig * sig + 1.0f);
    }
}

/* ddim, pndm: the spaced integer timesteps ts [N] (descending);
 * lcm, tcd: the distillation grid's (k = T // 50) timesteps j * k - 1,
 * j = 50..1, at indices floor(i * 50 / N) (numpy linspace without the end). */
static void build_integer_schedule(sdc_sched *s, const double *ts) {
    int N = s->steps;
    if (s->sampler == SDC_SAMPLER_DDIM) {
        for (int k = 0; k < N; k++) s->timesteps[k] = (float)ts[k];
    } else if (s->sampler == SDC_SAMPLER_PNDM) {
        /* plms: concat(t[:-1], t[-2:-1], t[-1:])[::-1], t ascending */
        int m = 0;
        float *t = s->timesteps;
        t[m++] = (float)ts[0];
        if (N >= 2) t[m++] = (float)ts[1];
        for (int k = 1; k < N; k++) t[m++] = (float)ts[k];
        assert(m == s->len);
    } else {
        const int k = s->n_train / LCM_ORIGINAL_STEPS;
        const double step = (double)LCM_ORIGINAL_STEPS / (double)N;
        for (int i = 0; i < N; i++) {
            const int idx = (int)floor((double)i * step);
            s->timesteps[i] = (float)((LCM_ORIGINAL_STEPS - idx) * k - 1);
        }
    }
    s->init_sigma = 1.0f;
    for (int i = 0; i < s->len; i++) s->scales[i] = 1.0f;
}

static sdc_status check_config(const sdc_sched_config *cfg) {
    if (cfg->num_train_timesteps < 2 || cfg->num_train_timesteps > 100000)
        return sdc_fail(SDC_ERR_INVALID_ARG, "scheduler: num_train_timesteps %d out of range [2, 100000]",
                        cfg->num_train_timesteps);
    if (!(cfg->beta_start > 0.0 && cfg->beta_start <= cfg->beta_end && cfg->beta_end < 1.0))
        return sdc_fail(SDC_ERR_INVALID_ARG,
                        "scheduler: betas must satisfy 0 < beta_start (%g) <= beta_end (%g) < 1",
                        cfg->beta_start, cfg->beta_end);
    if (cfg->beta_schedule != SDC_BETA_SCALED_LINEAR && cfg->beta_schedule != SDC_BETA_LINEAR)
        return sdc_fail(SDC_ERR_INVALID_ARG, "scheduler: unknown beta schedule %d", (int)cfg->beta_schedule);
    if (cfg->prediction_type != SDC_PRED_EPSILON && cfg->prediction_type != SDC_PRED_V)
        return sdc_fail(SDC_ERR_INVALID_ARG, "scheduler: unknown prediction type %d",
                        (int)cfg->prediction_type);
    return SDC_OK;
}

sdc_sched_opts sdc_sched_opts_default(void) {
    sdc_sched_opts o = {SDC_SPACING_DEFAULT, 0.0};
    return o;
}

static sdc_status check_opts(sdc_sampler sampler, sdc_schedule schedule, const sdc_sched_opts *o) {
    if ((unsigned)o->spacing >= SDC_SPACING_COUNT)
        return sdc_fail(SDC_ERR_INVALID_ARG, "unknown timestep spacing %d", (int)o->spacing);
    if (o->spacing != SDC_SPACING_DEFAULT && is_consistency(sampler))
        return sdc_fail(SDC_ERR_INVALID_ARG,
                        "sampler %s takes its timesteps from the distillation grid: no %s spacing",
                        sdc_sampler_name(sampler), sdc_spacing_name(o->spacing));
    if (o->spacing != SDC_SPACING_DEFAULT && schedule == SDC_SCHEDULE_KARRAS)
        return sdc_fail(SDC_ERR_INVALID_ARG, "timestep spacing %s is not offered with karras",
                        sdc_spacing_name(o->spacing));
    if (!(o->eta >= 0.0 && o->eta <= 1.0))
        return sdc_fail(SDC_ERR_INVALID_ARG, "eta %g out of range [0, 1]", o->eta);
    if (o->eta != 0.0 && sampler == SDC_SAMPLER_DDIM)
        return sdc_fail(SDC_ERR_INVALID_ARG, "ddim with eta %g is not offered (eta 0 only)", o->eta);
    return SDC_OK;
}

sdc_status sdc_sched_create(sdc_sampler sampler, sdc_schedule schedule, const sdc_sched_config *cfg,
                            int steps, int64_t n, sdc_sched **out) {
    const sdc_sched_opts o = sdc_sched_opts_default();
    return sdc_sched_create_ex(sampler, schedule, &o, cfg, steps, n, out);
}

sdc_status sdc_sched_create_ex(sdc_sampler sampler, sdc_schedule schedule, const sdc_sched_opts *opts,
                               const sdc_sched_config *cfg, int steps, int64_t n, sdc_sched **out) {
    *out = NULL;
    if ((unsigned)sampler >= SDC_SAMPLER_COUNT)
        return sdc_fail(SDC_ERR_INVALID_ARG, "unknown sampler %d", (int)sampler);
    if ((unsigned)schedule >= SDC_SCHEDULE_COUNT)
        return sdc_fail(SDC_ERR_INVALID_ARG, "unknown schedule %d", (int)schedule);
    if (schedule == SDC_SCHEDULE_KARRAS && !offers_karras(sampler))
        return sdc_fail(SDC_ERR_INVALID_ARG,
                        "sampler %s has no karras schedule (karras: euler, heun, dpm++2m, lms)",
                        sdc_sampler_name(sampler));
    sdc_status st = check_opts(sampler, schedule, opts);
    if (st == SDC_OK) st = check_config(cfg);
    if (st != SDC_OK) return st;
    int T = cfg->num_train_timesteps;
    if (steps < 1 || steps > T)
        return sdc_fail(SDC_ERR_INVALID_ARG, "steps %d out of range [1, %d]", steps, T);
    if (is_consistency(sampler) && (steps > LCM_ORIGINAL_STEPS || T < LCM_ORIGINAL_STEPS))
        return sdc_fail(SDC_ERR_INVALID_ARG,
                        "%s takes 1..%d steps (its original_inference_steps) of at least %d training "
                        "timesteps: %d steps of %d",
                        sdc_sampler_name(sampler), LCM_ORIGINAL_STEPS, LCM_ORIGINAL_STEPS, steps, T);
    if (n < 1) return sdc_fail(SDC_ERR_INVALID_ARG, "latent size %lld must be positive", (long long)n);

    sdc_sched *s = calloc(1, sizeof *s);
    if (!s) return sdc_fail(SDC_ERR_NOMEM, "scheduler: out of memory");
    s->sampler = sampler;
    s->schedule = schedule;
    s->pred = cfg->prediction_type;
    s->steps = steps;
    s->spacing = opts->spacing == SDC_SPACING_DEFAULT ? default_spacing(sampler) : opts->spacing;
    s->eta = opts->eta;
    s->n = n;
    s->n_train = T;
    s->ratio = T / steps;
    switch (sampler) {
    case SDC_SAMPLER_HEUN: s->len = 2 * steps - 1; break;
    case SDC_SAMPLER_PNDM: s->len = steps >= 2 ? steps + 1 : 1; break;
    default: s->len = steps;
    }

    size_t hist_floats = 0;
    s->n_hist = hist_blocks(sampler);
    if (!sdc_mul_size((size_t)n, (size_t)s->n_hist, &hist_floats) ||
        !sdc_mul_size(hist_floats, sizeof(float), &hist_floats)) {
        free(s);
        return sdc_fail(SDC_ERR_INVALID_ARG, "latent size %lld too large", (long long)n);
    }
    s->timesteps = malloc(sizeof(float) * (size_t)s->len);
    s->scales = malloc(sizeof(float) * (size_t)s->len);
    s->sigmas = uses_sigmas(sampler) ? malloc(sizeof(float) * (size_t)(s->len + 1)) : NULL;
    s->acp = malloc(sizeof(float) * (size_t)T);
    float *sig_tab = malloc(sizeof(float) * (size_t)T);
    float *log_tab = malloc(sizeof(float) * (size_t)T);
    double *scratch = calloc(2 * (size_t)steps, sizeof(double));
    s->hist = s->n_hist ? malloc(hist_floats) : NULL;
    if (!s->timesteps || !s->scales || (uses_sigmas(sampler) && !s->sigmas) || !s->acp || !sig_tab ||
        !log_tab || !scratch || (s->n_hist && !s->hist)) {
        free(sig_tab);
        free(log_tab);
        free(scratch);
        sdc_sched_free(s);
        return sdc_fail(SDC_ERR_NOMEM, "scheduler: out of memory (%zu bytes of history)", hist_floats);
    }
    for (int k = 0; k < s->n_hist; k++) s->h[k] = s->hist + (size_t)k * (size_t)n;

    make_alphas_cumprod(cfg, s->acp);
    s->final_acp = cfg->set_alpha_to_one ? 1.0f : s->acp[0];
    for (int t = 0; t < T; t++) {
        sig_tab[t] = sqrtf((1.0f - s->acp[t]) / s->acp[t]);
        log_tab[t] = logf(sig_tab[t]);
    }
    const int spaced = is_consistency(sampler) || spaced_timesteps(s, scratch);
    if (spaced && uses_sigmas(sampler))
        build_sigma_schedule(s, sig_tab, log_tab, scratch);
    else if (spaced)
        build_integer_schedule(s, scratch);
    free(sig_tab);
    free(log_tab);
    free(scratch);
    if (!spaced) {
        sdc_sched_free(s);
        return sdc_fail(SDC_ERR_INVALID_ARG,
                        "trailing spacing at %d steps: diffusers' grid arange(%d, 0, -%d/%d) has %d "
                        "entries",
                        steps, T, T, steps, steps + 1);
    }

    /* leading spacing: (steps-1) * (T // steps) + 1 can pass T - 1 */
    if (!uses_sigmas(sampler) && s->timesteps[0] >= (float)T) {
        int t0 = (int)s->timesteps[0];
        sdc_sched_free(s);
        return sdc_fail(SDC_ERR_INVALID_ARG, "%s with %d steps reaches timestep %d, past %d",
                        sdc_sampler_name(sampler), steps, t0, T - 1);
    }
    *out = s;
    return SDC_OK;
}

void sdc_sched_free(sdc_sched *s) {
    if (!s) return;
    free(s->timesteps);
    free(s->scales);
    free(s->sigmas);
    free(s->acp);
    free(s->hist);
    free(s);
}

int sdc_sched_len(const sdc_sched *s) { return s->len; }

float sdc_sched_timestep(const sdc_sched *s, int i) {
    assert(i >= 0 && i < s->len);
    return s->timesteps[i];
}

float sdc_sched_init_noise_sigma(const sdc_sched *s) { return s->init_sigma; }

float sdc_sched_input_scale(const sdc_sched *s, int i) {
    assert(i >= 0 && i < s->len);
    return s->scales[i];
}

int sdc_sched_n_sigmas(const sdc_sched *s) { return s->sigmas ? s->len + 1 : 0; }

double sdc_sched_sigma(const sdc_sched *s, int i) {
    assert(s->sigmas && i >= 0 && i <= s->len);
    return s->sigmas[i];
}

/* ---- steps -------------------------------------------------------------- */

/* x0 from the model output at noise level sigma (k-diffusion form):
 *   epsilon: x - sigma * eps
 *   v:       eps * (-sigma / sqrt(sigma^2 + 1)) + x / (sigma^2 + 1) */
typedef struct {
    int v;
    float sigma, c_out, c_skip_div;
} k_pred;

static k_pred k_pred_make(sdc_prediction pred, float sigma) {
    k_pred p = {pred == SDC_PRED_V, sigma, 0.0f, 0.0f};
    if (p.v) {
        float s2p1 = sigma * sigma + 1.0f;
        p.c_out = -sigma / sqrtf(s2p1);
        p.c_skip_div = s2p1;
    }
    return p;
}

static inline float k_x0(const k_pred *p, float x, float eps) {
    return p->v ? eps * p->c_out + x / p->c_skip_div : x - p->sigma * eps;
}

/* Euler: d = (x - x0) / sigma, x += d * (sigma_next - sigma). */
static void step_euler(sdc_sched *s, int i, const float *eps, float *x) {
    float sigma = s->sigmas[i] * 1.0f; /* sigma_hat, s_churn = 0 */
    float dt = s->sigmas[i + 1] - sigma;
    k_pred p = k_pred_make(s->pred, sigma);
    for (int64_t k = 0; k < s->n; k++) {
        float x0 = k_x0(&p, x[k], eps[k]);
        float d = (x[k] - x0) / sigma;
        x[k] = x[k] + d * dt;
    }
}

/* Euler ancestral: step to sigma_down, then add noise * sigma_up, where
 * sigma_up = sqrt(to^2 (from^2 - to^2) / from^2), sigma_down = sqrt(to^2 - up^2). */
static void step_euler_a(sdc_sched *s, int i, const float *eps, float *x, sdc_rng *rng) {
    float from = s->sigmas[i], to = s->sigmas[i + 1];
    float from2 = from * from, to2 = to * to;
    float up = sqrtf(to2 * (from2 - to2) / from2);
    float down = sqrtf(to2 - up * up);
    float dt = down - from;
    k_pred p = k_pred_make(s->pred, from);
    float *noise = s->h[0];
    sdc_rng_randn(rng, noise, s->n);
    for (int64_t k = 0; k < s->n; k++) {
        float x0 = k_x0(&p, x[k], eps[k]);
        float d = (x[k] - x0) / from;
        float y = x[k] + d * dt;
        x[k] = y + noise[k] * up;
    }
}

/* Heun: even i an Euler step (derivative and start kept), odd i corrects it
 * with the mean of both derivatives from the kept start; the last index is
 * even and stays first order (its sigma_next is 0). */
static void step_heun(sdc_sched *s, int i, const float *eps, float *x) {
    float *d1 = s->h[0], *x_start = s->h[1];
    if (i % 2 == 0) {
        float sigma = s->sigmas[i] * 1.0f, sigma_next = s->sigmas[i + 1];
        float dt = sigma_next - sigma;
        k_pred p = k_pred_make(s->pred, sigma);
        for (int64_t k = 0; k < s->n; k++) {
            float x0 = k_x0(&p, x[k], eps[k]);
            float d = (x[k] - x0) / sigma;
            d1[k] = d;
            x_start[k] = x[k];
            x[k] = x[k] + d * dt;
        }
        s->heun_dt = dt;
    } else {
        float sigma_next = s->sigmas[i];
        float dt = s->heun_dt;
        k_pred p = k_pred_make(s->pred, sigma_next);
        for (int64_t k = 0; k < s->n; k++) {
            float x0 = k_x0(&p, x[k], eps[k]);
            float d = (x[k] - x0) / sigma_next;
            d = (d1[k] + d) / 2.0f;
            x[k] = x_start[k] + d * dt;
        }
    }
}

/* DPM-Solver++(2M) (Lu et al. 2022), in diffusers' variables:
 * alpha = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha, lambda = log alpha - log sigma_t,
 * x0 = (x - sigma_t eps) / alpha (epsilon) or alpha x - sigma_t eps (v).
 * First order (first and last step): x = (s_t / s_s) x - alpha_t (e^-h - 1) x0.
 * Second order: D1 = (1 / r0)(m0 - m1), r0 = h_0 / h,
 *   x = (s_t / s_s0) x - alpha_t (e^-h - 1) D0 - 0.5 alpha_t (e^-h - 1) D1. */
typedef struct {
    float alpha, sigma, lambda;
} dpm_point;

static dpm_point dpm_at(float sigma) {
    dpm_point p;
    p.alpha = 1.0f / sqrtf(sigma * sigma + 1.0f);
    p.sigma = sigma * p.alpha;
    p.lambda = logf(p.alpha) - logf(p.sigma);
    return p;
}

static void step_dpmpp_2m(sdc_sched *s, int i, const float *eps, float *x) {
    if (i == s->begin) s->dpm_have = 0;
    int cur = s->dpm_cur ^ 1;
    float *m0 = s->h[cur], *m1 = s->h[cur ^ 1];
    dpm_point ps0 = dpm_at(s->sigmas[i]);
    for (int64_t k = 0; k < s->n; k++)
        m0[k] = s->pred == SDC_PRED_V ? ps0.alpha * x[k] - ps0.sigma * eps[k]
                                      : (x[k] - ps0.sigma * eps[k]) / ps0.alpha;
    s->dpm_cur = cur;

    int last = i == s->len - 1; /* final_sigmas_type "zero": always first order */
    dpm_point pt = dpm_at(s->sigmas[i + 1]);
    float h = pt.lambda - ps0.lambda;
    float ratio = pt.sigma / ps0.sigma;
    float c0 = pt.alpha * (expf(-h) - 1.0f);
    if (s->dpm_have < 1 || last) {
        for (int64_t k = 0; k < s->n; k++) x[k] = ratio * x[k] - c0 * m0[k];
    } else {
        dpm_point ps1 = dpm_at(s->sigmas[i - 1]);
        float h0 = ps0.lambda - ps1.lambda;
        float r0 = h0 / h;
        float inv_r0 = 1.0f / r0;
        float c1 = 0.5f * c0;
        for (int64_t k = 0; k < s->n; k++) {
            float d1 = inv_r0 * (m0[k] - m1[k]);
            x[k] = (ratio * x[k] - c0 * m0[k]) - c1 * d1;
        }
    }
    if (s->dpm_have < 2) s->dpm_have++;
}

/* DDIM (Song et al. 2020) with eta 0:
 * x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t),  x = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps;
 * v: x0 = sqrt(a_t) x - sqrt(1 - a_t) v, eps = sqrt(a_t) v + sqrt(1 - a_t) x. */
static void step_ddim(sdc_sched *s, int i, const float *eps, float *x) {
    int t = (int)s->timesteps[i];
    int prev = t - s->ratio;
    float a_t = s->acp[t];
    float a_prev = prev >= 0 ? s->acp[prev] : s->final_acp;
    float b_t = 1.0f - a_t;
    float sa = sqrtf(a_t), sb = sqrtf(b_t);
    float std_dev = 0.0f; /* eta * sqrt(variance), eta = 0 */
    float c_x0 = sqrtf(a_prev);
    float c_dir = sqrtf(1.0f - a_prev - std_dev * std_dev);
    for (int64_t k = 0; k < s->n; k++) {
        float x0, e;
        if (s->pred == SDC_PRED_V) {
            x0 = sa * x[k] - sb * eps[k];
            e = sa * eps[k] + sb * x[k];
        } else {
            x0 = (x[k] - sb * eps[k]) / sa;
            e = eps[k];
        }
        x[k] = c_x0 * x0 + c_dir * e;
    }
}

/* PNDM's x_{t_prev} from x_t and an eps estimate (Liu et al. 2022, eq. 9):
 * x' = sqrt(a_prev / a_t) x - (a_prev - a_t) eps / (a_t sqrt(1 - a_prev) + sqrt(a_t (1 - a_t) a_prev)) */
static void pndm_prev_sample(const sdc_sched *s, int t, int prev, const float *x, const float *e,
                             float *out) {
    float a_t = s->acp[t];
    float a_prev = prev >= 0 ? s->acp[prev] : s->final_acp;
    float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
    float sa = sqrtf(a_t), sb = sqrtf(b_t);
    float c_x = sqrtf(a_prev / a_t);
    float denom = a_t * sqrtf(b_prev) + sqrtf(a_t * b_t * a_prev);
    float da = a_prev - a_t;
    for (int64_t k = 0; k < s->n; k++) {
        float ek = s->pred == SDC_PRED_V ? sa * e[k] + sb * x[k] : e[k];
        out[k] = c_x * x[k] - da * ek / denom;
    }
}

/* PLMS (skip_prk_steps): linear multistep on the model outputs kept in ets;
 * step 1 re-takes step 0 from its start with the mean of both outputs (and
 * its output is not kept). */
static void step_pndm(sdc_sched *s, int i, const float *eps, float *x) {
    float *cur_sample = s->h[4];
    const int counter = i - s->begin; /* diffusers' counter: steps since the loop began */
    if (counter == 0) s->n_ets = 0, s->ets_head = 0;
    int t = (int)s->timesteps[i];
    int prev = t - s->ratio;
    if (counter != 1) {
        s->ets_head = (s->ets_head + 1) % 4;
        memcpy(s->h[s->ets_head], eps, sizeof(float) * (size_t)s->n);
        if (s->n_ets < 4) s->n_ets++;
    } else {
        prev = t;
        t = t + s->ratio;
    }
    const float *e1 = s->h[s->ets_head], *e2 = s->h[(s->ets_head + 3) % 4];
    const float *e3 = s->h[(s->ets_head + 2) % 4], *e4 = s->h[(s->ets_head + 1) % 4];
    float *e = s->h[(s->ets_head + 1) % 4]; /* scratch: the oldest, read before written */
    const float *from = x;
    if (s->n_ets == 1 && counter == 0) {
        memcpy(cur_sample, x, sizeof(float) * (size_t)s->n);
        e = (float *)e1; /* model output as is; not written below */
    } else if (s->n_ets == 1 && counter == 1) {
        /* the scratch block is unused while only one output is kept */
        for (int64_t k = 0; k < s->n; k++) e[k] = (eps[k] + e1[k]) / 2.0f;
        from = cur_sample;
    } else if (s->n_ets == 2) {
        for (int64_t k = 0; k < s->n; k++) e[k] = (3.0f * e1[k] - e2[k]) / 2.0f;
    } else if (s->n_ets == 3) {
        for (int64_t k = 0; k < s->n; k++) e[k] = (23.0f * e1[k] - 16.0f * e2[k] + 5.0f * e3[k]) / 12.0f;
    } else {
        const float c = (float)(1.0 / 24.0);
        for (int64_t k = 0; k < s->n; k++)
            e[k] = c * (55.0f * e1[k] - 59.0f * e2[k] + 37.0f * e3[k] - 9.0f * e4[k]);
    }
    pndm_prev_sample(s, t, prev, from, e, x);
}

/* LMS coefficient: the integral over [sigma_i, sigma_{i+1}] of the Lagrange
 * basis polynomial through sigma_i, ..., sigma_{i-order+1} that is 1 at
 * sigma_{i-j}.  Degree <= 3, so 3-point Gauss-Legendre is exact.  (diffusers
 * integrates with scipy quad and evaluates the basis with float32 tensors,
 * so its coefficients differ from these in the 7th digit.) */
static double lms_coefficient(const float *sigmas, int order, int i, int j) {
    static const double node[3] = {-0.7745966692414834, 0.0, 0.7745966692414834}; /* sqrt(3/5) */
    static const double weight[3] = {5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0};
    double a = sigmas[i], b = sigmas[i + 1];
    double mid = 0.5 * (a + b), half = 0.5 * (b - a), sum = 0.0;
    for (int q = 0; q < 3; q++) {
        double tau = mid + half * node[q], prod = 1.0;
        for (int m = 0; m < order; m++) {
            if (m == j) continue;
            prod *= (tau - sigmas[i - m]) / ((double)sigmas[i - j] - sigmas[i - m]);
        }
        sum += weight[q] * prod;
    }
    return sum * half;
}

/* LMS: d_i = (x - x0) / sigma_i, x += sum_j c_j d_{i-j}, order min(i+1, 4).
 * From a later begin (img2img) diffusers keeps the order of the absolute
 * index but has only the derivatives since the begin: the sum takes the
 * first min(order, i - begin + 1) terms of that order's coefficients. */
static void step_lms(sdc_sched *s, int i, const float *eps, float *x) {
    float sigma = s->sigmas[i];
    k_pred p = k_pred_make(s->pred, sigma);
    float *d = s->h[i % LMS_ORDER];
    for (int64_t k = 0; k < s->n; k++) d[k] = (x[k] - k_x0(&p, x[k], eps[k])) / sigma;
    const int order = i + 1 < LMS_ORDER ? i + 1 : LMS_ORDER;
    const int terms = i - s->begin + 1 < order ? i - s->begin + 1 : order;
    float c[LMS_ORDER];
    const float *dj[LMS_ORDER];
    for (int j = 0; j < terms; j++) {
        c[j] = (float)lms_coefficient(s->sigmas, order, i, j);
        dj[j] = s->h[(i - j) % LMS_ORDER];
    }
    for (int64_t k = 0; k < s->n; k++) {
        float acc = 0.0f;
        for (int j = 0; j < terms; j++) acc = acc + c[j] * dj[j][k];
        x[k] = x[k] + acc;
    }
}

/* The DDPM-form x0 at integer timestep t (as DDIM's, LCM's, TCD's step):
 * epsilon (x - sqrt(1 - a) eps) / sqrt(a), v sqrt(a) x - sqrt(1 - a) v. */
static inline float ddpm_x0(sdc_prediction pred, float sa, float sb, float x, float eps) {
    return pred == SDC_PRED_V ? sa * x - sb * eps : (x - sb * eps) / sa;
}

/* LCM's boundary condition (Song et al. 2023, consistency models) at t,
 * sigma_data 0.5, on t * timestep_scaling (10) in float32:
 * c_skip = 0.25 / (st^2 + 0.25), c_out = st / sqrt(st^2 + 0.25). */
static void lcm_scalings(float t, float *c_skip, float *c_out) {
    const float st = t * 10.0f, d = st * st + 0.25f;
    *c_skip = 1.0f / d * 0.25f; /* torch: 0.25 / tensor is reciprocal() * 0.25 */
    *c_out = st / sqrtf(d);
}

/* LCM (Luo et al. 2023): denoised = c_skip x + c_out x0 at t_i; then, but
 * for the last step, x = sqrt(a_prev) denoised + sqrt(1 - a_prev) z with
 * z ~ N(0, I) drawn now (n normals), a_prev at t_{i+1}; the last step
 * returns denoised. */
static void step_lcm(sdc_sched *s, int i, const float *eps, float *x, sdc_rng *rng) {
    const int t = (int)s->timesteps[i], last = i == s->len - 1;
    const int prev = last ? t : (int)s->timesteps[i + 1];
    const float a_t = s->acp[t], a_prev = s->acp[prev];
    const float sa = sqrtf(a_t), sb = sqrtf(1.0f - a_t);
    const float ca = sqrtf(a_prev), cn = sqrtf(1.0f - a_prev);
    float c_skip, c_out;
    lcm_scalings((float)t, &c_skip, &c_out);
    float *noise = s->h[0];
    if (!last) sdc_rng_randn(rng, noise, s->n);
    for (int64_t k = 0; k < s->n; k++) {
        const float x0 = ddpm_x0(s->pred, sa, sb, x[k], eps[k]);
        const float den = c_out * x0 + c_skip * x[k];
        x[k] = last ? den : ca * den + cn * noise[k];
    }
}

/* TCD (Zheng et al. 2024), strategic stochastic sampling with gamma = eta:
 * s = floor((1 - gamma) t_prev) (t_prev = t_{i+1}, 0 after the last step),
 * x_s = sqrt(a_s) x0 + sqrt(1 - a_s) eps_hat (eps_hat: the model's epsilon,
 * v: sqrt(a_t) v + sqrt(1 - a_t) x); with gamma > 0 and but for the last
 * step, x = sqrt(a_prev / a_s) x_s + sqrt(1 - a_prev / a_s) z, z drawn now
 * (n normals); else x = x_s. */
static void step_tcd(sdc_sched *s, int i, const float *eps, float *x, sdc_rng *rng) {
    const int t = (int)s->timesteps[i], last = i == s->len - 1;
    const int prev = last ? 0 : (int)s->timesteps[i + 1];
    /* torch: (1 - eta) * prev (int64 tensor) in float32 */
    const int ts = (int)floorf((float)(1.0 - s->eta) * (float)prev);
    const float a_t = s->acp[t], a_prev = s->acp[prev], a_s = s->acp[ts];
    const float sa = sqrtf(a_t), sb = sqrtf(1.0f - a_t);
    const float ssa = sqrtf(a_s), ssb = sqrtf(1.0f - a_s);
    const int noisy = s->eta > 0.0 && !last;
    const float r = a_prev / a_s, ca = sqrtf(r), cn = sqrtf(1.0f - r);
    float *noise = s->h[0];
    if (noisy) sdc_rng_randn(rng, noise, s->n);
    for (int64_t k = 0; k < s->n; k++) {
        const float x0 = ddpm_x0(s->pred, sa, sb, x[k], eps[k]);
        const float e = s->pred == SDC_PRED_V ? sa * eps[k] + sb * x[k] : eps[k];
        const float xs = ssa * x0 + ssb * e;
        x[k] = noisy ? ca * xs + cn * noise[k] : xs;
    }
}

void sdc_sched_step(sdc_sched *s, int i, const float *eps, float *x, sdc_rng *rng) {
    assert(i >= s->begin && i < s->len);
    switch (s->sampler) {
    case SDC_SAMPLER_EULER: step_euler(s, i, eps, x); break;
    case SDC_SAMPLER_EULER_A: step_euler_a(s, i, eps, x, rng); break;
    case SDC_SAMPLER_HEUN: step_heun(s, i, eps, x); break;
    case SDC_SAMPLER_DPMPP_2M: step_dpmpp_2m(s, i, eps, x); break;
    case SDC_SAMPLER_DDIM: step_ddim(s, i, eps, x); break;
    case SDC_SAMPLER_PNDM: step_pndm(s, i, eps, x); break;
    case SDC_SAMPLER_LMS: step_lms(s, i, eps, x); break;
    case SDC_SAMPLER_LCM: step_lcm(s, i, eps, x, rng); break;
    case SDC_SAMPLER_TCD: step_tcd(s, i, eps, x, rng); break;
    default: assert(0 && "sampler checked at create");
    }
}

/* ---- img2img: a later start and the forward noising ----------------------- */

int sdc_sched_order(const sdc_sched *s) { return s->sampler == SDC_SAMPLER_HEUN ? 2 : 1; }

int sdc_sched_begin_for_strength(const sdc_sched *s, double strength) {
    /* diffusers' get_timesteps: int(steps * strength) in float64, capped */
    const double run = (double)s->steps * strength;
    const int init = run >= (double)s->steps ? s->steps : (int)run;
    if (init < 1) return -1;
    return (s->steps - init) * sdc_sched_order(s);
}

void sdc_sched_set_begin(sdc_sched *s, int begin) {
    assert(begin >= 0 && begin < s->len);
    s->begin = begin;
}

int sdc_sched_begin(const sdc_sched *s) { return s->begin; }

void sdc_sched_add_noise(const sdc_sched *s, int i, const float *x0, const float *noise,
                         float *out) {
    assert(i >= 0 && i <= s->len);
    if (!uses_sigmas(s->sampler)) {
        /* DDPM form at the integer timestep: sqrt(a) x0 + sqrt(1 - a) noise */
        const float a = s->acp[(int)s->timesteps[i < s->len ? i : s->len - 1]];
        const float ca = sqrtf(a), cn = sqrtf(1.0f - a);
        for (int64_t k = 0; k < s->n; k++) out[k] = ca * x0[k] + cn * noise[k];
    } else if (s->sampler == SDC_SAMPLER_DPMPP_2M) {
        /* in the variance-preserving space: alpha x0 + sigma_t noise */
        const dpm_point p = dpm_at(s->sigmas[i]);
        for (int64_t k = 0; k < s->n; k++) out[k] = p.alpha * x0[k] + p.sigma * noise[k];
    } else {
        const float sigma = s->sigmas[i];
        for (int64_t k = 0; k < s->n; k++) out[k] = x0[k] + noise[k] * sigma;
    }
}

void sdc_sched_pred_x0(const sdc_sched *s, int i, const float *x, const float *eps, float *out) {
    assert(i >= 0 && i < s->len);
    if (s->sampler == SDC_SAMPLER_LCM) {
        const float a = s->acp[(int)s->timesteps[i]], sa = sqrtf(a), sb = sqrtf(1.0f - a);
        float c_skip, c_out;
        lcm_scalings(s->timesteps[i], &c_skip, &c_out);
        for (int64_t k = 0; k < s->n; k++)
            out[k] = c_out * ddpm_x0(s->pred, sa, sb, x[k], eps[k]) + c_skip * x[k];
    } else if (!uses_sigmas(s->sampler)) {
        const float a = s->acp[(int)s->timesteps[i]], sa = sqrtf(a), sb = sqrtf(1.0f - a);
        for (int64_t k = 0; k < s->n; k++) out[k] = ddpm_x0(s->pred, sa, sb, x[k], eps[k]);
    } else if (s->sampler == SDC_SAMPLER_DPMPP_2M) {
        const dpm_point p = dpm_at(s->sigmas[i]);
        for (int64_t k = 0; k < s->n; k++)
            out[k] = s->pred == SDC_PRED_V ? p.alpha * x[k] - p.sigma * eps[k]
                                           : (x[k] - p.sigma * eps[k]) / p.alpha;
    } else {
        const k_pred p = k_pred_make(s->pred, s->sigmas[i]);
        for (int64_t k = 0; k < s->n; k++) out[k] = k_x0(&p, x[k], eps[k]);
    }
}
