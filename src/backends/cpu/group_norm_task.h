/* GroupNorm's task, one per (image, group), written once for the ISA files
 * that include it (ops_avx2.c, ops_neon.c) after defining:
 *   stats_d(x, n, &mean, &var)   mean and biased variance of x[0..n) in double
 *   norm_span(y, x, n, mean, a, b, silu)
 *                                y = (x - mean) * a + b, then silu if asked
 * One statistics pass, then one normalise pass; with an add [N, C] (the
 * timestep embedding) the group's statistics of x + a[c] come from each
 * channel's, shifted by a[c] and merged. */
#ifndef SDC_GROUP_NORM_TASK_H
#define SDC_GROUP_NORM_TASK_H

typedef struct gn_ctx {
    float *y;
    const float *x, *add; /* add [N, C] or NULL */
    int C, HW, G, silu;
    const sdc_weight *gamma, *beta;
    float eps;
} gn_ctx;

static void gn_task(void *p, int64_t task, int thread) {
    (void)thread;
    const gn_ctx *g = p;
    int n = (int)(task / g->G), grp = (int)(task % g->G), cg = g->C / g->G;
    int64_t base = ((int64_t)n * g->C + (int64_t)grp * cg) * g->HW, cnt = (int64_t)cg * g->HW;
    const float *a = g->add ? g->add + (int64_t)n * g->C + (int64_t)grp * cg : NULL;
    double mean = 0.0, var = 0.0;
    /* one statistics pass, then one normalise pass */
    if (!a) {
        stats_d(g->x + base, cnt, &mean, &var);
    } else { /* x + a[c]: each channel's statistics, shifted by a[c], merged (Chan et al.) */
        double m2 = 0.0;
        for (int cc = 0; cc < cg; cc++) {
            double mc, vc;
            stats_d(g->x + base + (int64_t)cc * g->HW, g->HW, &mc, &vc);
            const double n0 = (double)cc * g->HW, n1 = g->HW, d = mc + a[cc] - mean;
            mean += d * n1 / (n0 + n1);
            m2 += vc * n1 + d * d * n0 * n1 / (n0 + n1);
        }
        var = m2 / (double)cnt;
    }
    float rstd = (float)(1.0 / sqrt(var + g->eps));
    for (int cc = 0; cc < cg; cc++) {
        int c = grp * cg + cc;
        float ga = g->gamma ? sdc_wget(g->gamma, c) : 1.0f;
        float be = g->beta ? sdc_wget(g->beta, c) : 0.0f;
        int64_t off = base + (int64_t)cc * g->HW;
        /* x + a - mean as x - (mean - a) */
        norm_span(g->y + off, g->x + off, g->HW, (float)(mean - (a ? a[cc] : 0.0f)), rstd * ga,
                  be, g->silu);
    }
}

#endif
