/* The samplers against diffusers 0.42.1.
 * Reference: tests/fixtures/sched_ref.safetensors (scripts/fixtures_lib/schedulers.py),
 * per <sampler>.<schedule>[.<variant>].<steps> (variant: a timestep spacing,
 * or tcd's eta0.3; sdc_sched_create_ex): timesteps, sigmas, init_noise_sigma,
 * input_scale, and the latents after the whole pipeline loop with a fake
 * model (final: epsilon prediction, final_v: v prediction); at 5 steps the
 * denoised estimate at the middle index (x0, x0_v: sdc_sched_pred_x0).
 * Tolerances: schedule values 1e-6 relative (float32 numbers computed through
 * MKL/numpy functions that are not always correctly rounded); timesteps
 * also 2e-5 absolute (Karras timesteps near 0 come from a difference of two
 * float32 logs); trajectories 1e-5 relative L2. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "harness.h"
#include "io/safetensors.h"
#include "models/config.h"
#include "sched/sched.h"

#define SEED 1234
#define LATENT_N (4 * 8 * 8)

static sdc_st_file *g_ref;
static const int g_steps[] = {1, 2, 4, 5, 8, 20, 50};
/* "" the class defaults; spacings; tcd with the pipeline's eta 0.3 */
static const char *const g_variants[] = {"", "linspace", "leading", "trailing", "eta0.3"};

/* worst errors seen, for the report */
static double g_worst_t, g_worst_sigma, g_worst_scale, g_worst_traj, g_worst_traj_v, g_worst_x0;

static const sdc_weight *ref(const char *key, const char *what, sdc_dtype dt) {
    char name[128];
    snprintf(name, sizeof name, "%s%s", key, what);
    const sdc_weight *w = sdc_st_find(g_ref, name);
    if (w && w->dtype != dt) w = NULL;
    return w;
}

static double rel_err(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

/* eps = 0.5 x cos(t/300) + 0.1 sin(x + t/1000), in double, rounded to float */
static void fake_model(const float *x_in, float t, float *eps) {
    double tt = t;
    for (int k = 0; k < LATENT_N; k++) {
        double x = x_in[k];
        eps[k] = (float)(0.5 * x * cos(tt / 300.0) + 0.1 * sin(x + tt / 1000.0));
    }
}

/* The pipeline loop of sched.h with the fake model; out [LATENT_N]. */
static void run_loop(sdc_sched *s, float *out) {
    float x_in[LATENT_N], eps[LATENT_N];
    sdc_rng rng;
    sdc_rng_seed(&rng, SEED);
    sdc_rng_randn(&rng, out, LATENT_N);
    float sigma0 = sdc_sched_init_noise_sigma(s);
    for (int k = 0; k < LATENT_N; k++) out[k] = out[k] * sigma0;
    for (int i = 0; i < sdc_sched_len(s); i++) {
        float scale = sdc_sched_input_scale(s, i);
        for (int k = 0; k < LATENT_N; k++) x_in[k] = out[k] * scale;
        fake_model(x_in, sdc_sched_timestep(s, i), eps);
        sdc_sched_step(s, i, eps, out, &rng);
    }
}

static int n_combos;

/* The denoised estimate at the middle index of a 5-step loop (preview):
 * sdc_sched_pred_x0 on diffusers' latents and model output there. */
static void check_x0(sdc_sampler sampler, sdc_schedule schedule, const char *key,
                     sdc_prediction pred, const char *sfx) {
    char name[32];
    const sdc_weight *w[4];
    const char *parts[4] = {"x0_x", "x0_eps", "x0_i", "x0"};
    for (int k = 0; k < 4; k++) {
        snprintf(name, sizeof name, "%s%s", parts[k], sfx);
        w[k] = ref(key, name, k == 2 ? SDC_DT_I64 : SDC_DT_F32);
    }
    CHECKF(w[0] && w[1] && w[2] && w[3] && w[0]->numel == LATENT_N && w[3]->numel == LATENT_N,
           "%s: no x0%s reference", key, sfx);
    if (!(w[0] && w[1] && w[2] && w[3] && w[0]->numel == LATENT_N && w[3]->numel == LATENT_N))
        return;
    sdc_sched_config cfg = sdc_sched_config_sd1();
    cfg.prediction_type = pred;
    sdc_sched *s = NULL;
    if (sdc_sched_create(sampler, schedule, &cfg, 5, LATENT_N, &s) != SDC_OK) return;
    float x0[LATENT_N];
    const int i = (int)*(const int64_t *)w[2]->data;
    sdc_sched_pred_x0(s, i, w[0]->data, w[1]->data, x0);
    const double err = t_rel_l2(x0, w[3]->data, LATENT_N);
    g_worst_x0 = fmax(g_worst_x0, err);
    CHECKF(err <= 1e-6, "%s: denoised estimate%s at %d: rel L2 %.3g", key, sfx, i, err);
    sdc_sched_free(s);
}

static void check_combo(sdc_sampler sampler, sdc_schedule schedule, const char *variant, int steps) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s.%s%s%d.", sdc_sampler_name(sampler), sdc_schedule_name(schedule),
             variant, *variant ? "." : "", steps);
    const sdc_weight *w_t = ref(key, "timesteps", SDC_DT_F64);
    if (!w_t) return; /* this class has no such schedule */
    sdc_sched_opts opts = sdc_sched_opts_default();
    if (strcmp(variant, "eta0.3") == 0)
        opts.eta = 0.3;
    else if (*variant)
        opts.spacing = sdc_spacing_from_name(variant);
    n_combos++;
    const sdc_weight *w_sig = ref(key, "sigmas", SDC_DT_F64);
    const sdc_weight *w_init = ref(key, "init_noise_sigma", SDC_DT_F64);
    const sdc_weight *w_scale = ref(key, "input_scale", SDC_DT_F64);
    const sdc_weight *w_fin = ref(key, "final", SDC_DT_F32);
    const sdc_weight *w_fin_v = ref(key, "final_v", SDC_DT_F32);
    CHECKF(w_init && w_scale && w_fin && w_fin_v && w_fin->numel == LATENT_N && w_fin_v->numel == LATENT_N,
           "%s: fixture incomplete", key);
    if (!(w_init && w_scale && w_fin && w_fin_v && w_fin->numel == LATENT_N && w_fin_v->numel == LATENT_N))
        return;

    sdc_sched_config cfg = sdc_sched_config_sd1();
    sdc_sched *s = NULL;
    sdc_status st = sdc_sched_create_ex(sampler, schedule, &opts, &cfg, steps, LATENT_N, &s);
    CHECKF(st == SDC_OK, "%s: %s", key, sdc_last_error());
    if (st != SDC_OK) return;

    int len = sdc_sched_len(s);
    CHECKF(len == w_t->numel, "%s: len %d, diffusers %lld", key, len, (long long)w_t->numel);
    if (len == w_t->numel) {
        const double *t = w_t->data, *sc = w_scale->data;
        for (int i = 0; i < len; i++) {
            double a = sdc_sched_timestep(s, i), e = fabs(a - t[i]);
            g_worst_t = fmax(g_worst_t, e / fmax(fabs(t[i]), 1.0));
            CHECKF(e <= 1e-6 * fabs(t[i]) + 2e-5, "%s: timestep %d = %.9g, diffusers %.9g", key, i, a, t[i]);
            double r = rel_err(sdc_sched_input_scale(s, i), sc[i]);
            g_worst_scale = fmax(g_worst_scale, r);
            CHECKF(r <= 1e-6, "%s: input scale %d = %.9g, diffusers %.9g", key, i,
                   (double)sdc_sched_input_scale(s, i), sc[i]);
        }
    }
    if (w_sig) {
        CHECKF(sdc_sched_n_sigmas(s) == w_sig->numel, "%s: %d sigmas, diffusers %lld", key,
               sdc_sched_n_sigmas(s), (long long)w_sig->numel);
        if (sdc_sched_n_sigmas(s) == w_sig->numel) {
            const double *sg = w_sig->data;
            for (int i = 0; i < sdc_sched_n_sigmas(s); i++) {
                double a = sdc_sched_sigma(s, i);
                double r = sg[i] == 0.0 ? fabs(a) : rel_err(a, sg[i]);
                g_worst_sigma = fmax(g_worst_sigma, r);
                CHECKF(r <= 1e-6, "%s: sigma %d = %.9g, diffusers %.9g", key, i, a, sg[i]);
            }
        }
    } else {
        CHECKF(sdc_sched_n_sigmas(s) == 0, "%s: sigmas where diffusers has none", key);
    }
    double init = *(const double *)w_init->data;
    CHECKF(rel_err(sdc_sched_init_noise_sigma(s), init) <= 1e-6, "%s: init_noise_sigma %.9g, diffusers %.9g",
           key, (double)sdc_sched_init_noise_sigma(s), init);

    /* trajectory, twice on the same scheduler: state resets at step 0 */
    float out[LATENT_N], again[LATENT_N];
    run_loop(s, out);
    double err = t_rel_l2(out, w_fin->data, LATENT_N);
    g_worst_traj = fmax(g_worst_traj, err);
    CHECKF(err <= 1e-5, "%s: final latents rel L2 %.3g", key, err);
    run_loop(s, again);
    CHECKF(memcmp(out, again, sizeof out) == 0, "%s: a second run differs", key);
    sdc_sched_free(s);

    cfg.prediction_type = SDC_PRED_V;
    st = sdc_sched_create_ex(sampler, schedule, &opts, &cfg, steps, LATENT_N, &s);
    CHECKF(st == SDC_OK, "%s: %s", key, sdc_last_error());
    if (st != SDC_OK) return;
    run_loop(s, out);
    err = t_rel_l2(out, w_fin_v->data, LATENT_N);
    g_worst_traj_v = fmax(g_worst_traj_v, err);
    CHECKF(err <= 1e-5, "%s: final latents (v prediction) rel L2 %.3g", key, err);
    sdc_sched_free(s);
    if (steps == 5 && !*variant) {
        check_x0(sampler, schedule, key, SDC_PRED_EPSILON, "");
        check_x0(sampler, schedule, key, SDC_PRED_V, "_v");
    }
}

static void test_against_diffusers(void) {
    for (int sm = 0; sm < SDC_SAMPLER_COUNT; sm++)
        for (int sc = 0; sc < SDC_SCHEDULE_COUNT; sc++)
            for (size_t v = 0; v < sizeof g_variants / sizeof g_variants[0]; v++)
                for (size_t k = 0; k < sizeof g_steps / sizeof g_steps[0]; k++)
                    check_combo((sdc_sampler)sm, (sdc_schedule)sc, g_variants[v], g_steps[k]);
    /* 7 samplers discrete + 4 karras, 5 step counts each; lcm, tcd 5 step
     * counts; 7 samplers x 3 spacings x 2 step counts; tcd eta 0.3 x 5 */
    CHECKF(n_combos == 55 + 10 + 42 + 5, "%d combinations found in the fixture", n_combos);
    printf("  %d combinations; worst: timestep %.2g, sigma %.2g, input scale %.2g (relative), "
           "final latents rel L2 %.2g (epsilon), %.2g (v), denoised estimate %.2g\n",
           n_combos, g_worst_t, g_worst_sigma, g_worst_scale, g_worst_traj, g_worst_traj_v,
           g_worst_x0);
}

static void test_karras_only_where_offered(void) {
    sdc_sched_config cfg = sdc_sched_config_sd1();
    sdc_sampler no[] = {SDC_SAMPLER_EULER_A, SDC_SAMPLER_DDIM, SDC_SAMPLER_PNDM};
    for (size_t k = 0; k < 3; k++) {
        sdc_sched *s = (sdc_sched *)&cfg; /* must be reset to NULL */
        sdc_clear_error();
        sdc_status st = sdc_sched_create(no[k], SDC_SCHEDULE_KARRAS, &cfg, 20, LATENT_N, &s);
        CHECKF(st == SDC_ERR_INVALID_ARG && s == NULL, "%s karras accepted", sdc_sampler_name(no[k]));
        CHECK(strstr(sdc_last_error(), "karras") != NULL);
    }
    sdc_sampler yes[] = {SDC_SAMPLER_EULER, SDC_SAMPLER_HEUN, SDC_SAMPLER_DPMPP_2M, SDC_SAMPLER_LMS};
    for (size_t k = 0; k < 4; k++) {
        sdc_sched *s = NULL;
        CHECK(sdc_sched_create(yes[k], SDC_SCHEDULE_KARRAS, &cfg, 20, LATENT_N, &s) == SDC_OK);
        sdc_sched_free(s);
    }
}

static void test_bad_arguments(void) {
    sdc_sched_config cfg = sdc_sched_config_sd1();
    sdc_sched *s = NULL;
    CHECK(sdc_sched_create(SDC_SAMPLER_EULER, SDC_SCHEDULE_DISCRETE, &cfg, 0, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    CHECK(sdc_sched_create(SDC_SAMPLER_EULER, SDC_SCHEDULE_DISCRETE, &cfg, -3, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    CHECK(sdc_sched_create(SDC_SAMPLER_EULER, SDC_SCHEDULE_DISCRETE, &cfg, 1001, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    CHECK(sdc_sched_create(SDC_SAMPLER_EULER, SDC_SCHEDULE_DISCRETE, &cfg, 20, 0, &s) == SDC_ERR_INVALID_ARG);
    CHECK(sdc_sched_create(SDC_SAMPLER_COUNT, SDC_SCHEDULE_DISCRETE, &cfg, 20, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    CHECK(sdc_sched_create(SDC_SAMPLER_EULER, SDC_SCHEDULE_COUNT, &cfg, 20, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    CHECK(sdc_sched_create(SDC_SAMPLER_PNDM, SDC_SCHEDULE_DISCRETE, &cfg, 20, INT64_MAX / 2, &s) ==
          SDC_ERR_INVALID_ARG);
    /* ddim at 1000 steps would index alphas_cumprod[1000] (diffusers fails too) */
    CHECK(sdc_sched_create(SDC_SAMPLER_DDIM, SDC_SCHEDULE_DISCRETE, &cfg, 1000, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    CHECK(sdc_sched_create(SDC_SAMPLER_DDIM, SDC_SCHEDULE_DISCRETE, &cfg, 999, LATENT_N, &s) == SDC_OK);
    sdc_sched_free(s);
    s = NULL;
    sdc_sched_config bad = cfg;
    bad.beta_end = 0.0;
    CHECK(sdc_sched_create(SDC_SAMPLER_EULER, SDC_SCHEDULE_DISCRETE, &bad, 20, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    bad = cfg;
    bad.num_train_timesteps = 1;
    CHECK(sdc_sched_create(SDC_SAMPLER_EULER, SDC_SCHEDULE_DISCRETE, &bad, 1, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    CHECK(s == NULL);
    sdc_sched_free(NULL);
}

/* What sdc_sched_opts and lcm/tcd refuse, as diffusers does or where sdc
 * does not follow it. */
static void test_options_refused(void) {
    sdc_sched_config cfg = sdc_sched_config_sd1();
    sdc_sched_opts o = sdc_sched_opts_default();
    sdc_sched *s = (sdc_sched *)&cfg;
    /* LCM/TCD: at most original_inference_steps (50) */
    CHECK(sdc_sched_create(SDC_SAMPLER_LCM, SDC_SCHEDULE_DISCRETE, &cfg, 51, LATENT_N, &s) ==
              SDC_ERR_INVALID_ARG &&
          s == NULL);
    CHECK(sdc_sched_create(SDC_SAMPLER_TCD, SDC_SCHEDULE_DISCRETE, &cfg, 51, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    CHECK(sdc_sched_create(SDC_SAMPLER_LCM, SDC_SCHEDULE_KARRAS, &cfg, 4, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    CHECK(sdc_sched_create(SDC_SAMPLER_LCM, SDC_SCHEDULE_DISCRETE, &cfg, 50, LATENT_N, &s) == SDC_OK);
    CHECK(sdc_sched_len(s) == 50 && sdc_sched_timestep(s, 49) == 19.0f);
    sdc_sched_free(s);
    /* spacing: not with lcm/tcd (ignored by their classes), nor karras */
    o.spacing = SDC_SPACING_TRAILING;
    CHECK(sdc_sched_create_ex(SDC_SAMPLER_LCM, SDC_SCHEDULE_DISCRETE, &o, &cfg, 4, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    CHECK(sdc_sched_create_ex(SDC_SAMPLER_TCD, SDC_SCHEDULE_DISCRETE, &o, &cfg, 4, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    CHECK(sdc_sched_create_ex(SDC_SAMPLER_EULER, SDC_SCHEDULE_KARRAS, &o, &cfg, 4, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    /* numpy's arange(1000, 0, -1000/61) has 62 entries: diffusers' trailing
     * grid then has a timestep -1 */
    CHECK(sdc_sched_create_ex(SDC_SAMPLER_DDIM, SDC_SCHEDULE_DISCRETE, &o, &cfg, 61, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    CHECK(strstr(sdc_last_error(), "trailing") != NULL);
    CHECK(sdc_sched_create_ex(SDC_SAMPLER_DDIM, SDC_SCHEDULE_DISCRETE, &o, &cfg, 60, LATENT_N, &s) ==
          SDC_OK);
    CHECK(sdc_sched_timestep(s, 0) == 999.0f && sdc_sched_timestep(s, 59) >= 0.0f);
    sdc_sched_free(s);
    o.spacing = SDC_SPACING_COUNT;
    CHECK(sdc_sched_create_ex(SDC_SAMPLER_EULER, SDC_SCHEDULE_DISCRETE, &o, &cfg, 4, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    /* eta: [0, 1]; ddim only 0 */
    o = sdc_sched_opts_default();
    o.eta = 1.5;
    CHECK(sdc_sched_create_ex(SDC_SAMPLER_TCD, SDC_SCHEDULE_DISCRETE, &o, &cfg, 4, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    o.eta = NAN;
    CHECK(sdc_sched_create_ex(SDC_SAMPLER_TCD, SDC_SCHEDULE_DISCRETE, &o, &cfg, 4, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    o.eta = 0.5;
    CHECK(sdc_sched_create_ex(SDC_SAMPLER_DDIM, SDC_SCHEDULE_DISCRETE, &o, &cfg, 4, LATENT_N, &s) ==
          SDC_ERR_INVALID_ARG);
    CHECK(s == NULL);
    /* lcm and tcd: order 1; img2img's forward process and the denoised
     * estimate are the DDPM forms, as ddim's at the same timestep (ddim with
     * trailing spacing at 4 steps: 999 749 499 249; lcm, tcd: 999 759 499 259) */
    sdc_sched *d = NULL;
    o = sdc_sched_opts_default();
    o.spacing = SDC_SPACING_TRAILING;
    CHECK(sdc_sched_create_ex(SDC_SAMPLER_DDIM, SDC_SCHEDULE_DISCRETE, &o, &cfg, 4, LATENT_N, &d) == SDC_OK);
    float x0[LATENT_N], z[LATENT_N], a[LATENT_N], b[LATENT_N];
    for (int k = 0; k < LATENT_N; k++) x0[k] = (float)k / LATENT_N, z[k] = 1.0f - 2.0f * x0[k];
    for (int sm = SDC_SAMPLER_LCM; sm <= SDC_SAMPLER_TCD; sm++) {
        s = NULL;
        CHECK(sdc_sched_create((sdc_sampler)sm, SDC_SCHEDULE_DISCRETE, &cfg, 4, LATENT_N, &s) == SDC_OK);
        if (!s || !d) break;
        CHECK(sdc_sched_order(s) == 1 && sdc_sched_begin_for_strength(s, 0.5) == 2);
        for (int i = 0; i < 4; i += 2) {
            CHECK(sdc_sched_timestep(s, i) == sdc_sched_timestep(d, i));
            sdc_sched_add_noise(s, i, x0, z, a);
            sdc_sched_add_noise(d, i, x0, z, b);
            CHECKF(memcmp(a, b, sizeof a) == 0, "%s: add_noise at %d", sdc_sampler_name((sdc_sampler)sm), i);
            if (sm == SDC_SAMPLER_TCD) {
                sdc_sched_pred_x0(s, i, x0, z, a);
                sdc_sched_pred_x0(d, i, x0, z, b);
                CHECKF(memcmp(a, b, sizeof a) == 0, "tcd: denoised estimate at %d", i);
            }
        }
        sdc_sched_free(s);
    }
    sdc_sched_free(d);
}

static void test_names(void) {
    const char *names[] = {"euler", "euler_a", "heun", "dpm++2m", "ddim", "pndm", "lms", "lcm", "tcd"};
    for (int i = 0; i < SDC_SAMPLER_COUNT; i++) {
        CHECK(strcmp(sdc_sampler_name((sdc_sampler)i), names[i]) == 0);
        CHECK(sdc_sampler_from_name(names[i]) == (sdc_sampler)i);
    }
    CHECK(sdc_sampler_from_name("Euler") == SDC_SAMPLER_COUNT);
    CHECK(sdc_sampler_from_name("") == SDC_SAMPLER_COUNT);
    CHECK(sdc_sampler_from_name(NULL) == SDC_SAMPLER_COUNT);
    CHECK(strcmp(sdc_schedule_name(SDC_SCHEDULE_DISCRETE), "discrete") == 0);
    CHECK(strcmp(sdc_schedule_name(SDC_SCHEDULE_KARRAS), "karras") == 0);
    CHECK(sdc_schedule_from_name("karras") == SDC_SCHEDULE_KARRAS);
    CHECK(sdc_schedule_from_name("discrete") == SDC_SCHEDULE_DISCRETE);
    CHECK(sdc_schedule_from_name("exponential") == SDC_SCHEDULE_COUNT);
    CHECK(sdc_sampler_name(SDC_SAMPLER_COUNT) != NULL && sdc_schedule_name(SDC_SCHEDULE_COUNT) != NULL);
    const char *spacings[] = {"default", "linspace", "leading", "trailing"};
    for (int i = 0; i < SDC_SPACING_COUNT; i++) {
        CHECK(strcmp(sdc_spacing_name((sdc_spacing)i), spacings[i]) == 0);
        CHECK(sdc_spacing_from_name(spacings[i]) == (sdc_spacing)i);
    }
    CHECK(sdc_spacing_from_name("Trailing") == SDC_SPACING_COUNT);
    CHECK(sdc_spacing_from_name(NULL) == SDC_SPACING_COUNT);
}

int main(void) {
    sdc_status st = sdc_st_open(t_fixture("sched_ref.safetensors"), &g_ref);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st == SDC_OK) RUN(test_against_diffusers);
    RUN(test_karras_only_where_offered);
    RUN(test_bad_arguments);
    RUN(test_options_refused);
    RUN(test_names);
    sdc_st_close(g_ref);
    return t_summary();
}
