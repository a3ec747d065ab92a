#include "progress.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_interrupted;
static sdc_model *volatile g_model; /* whose generation a signal cancels */

static void on_signal(int sig) {
    (void)sig;
    g_interrupted = 1;
    sdc_model *m = g_model;
    if (m) sdc_model_cancel(m, 1); /* one atomic store: async-signal-safe */
    static const char msg[] = "\nsdc: interrupted; stopping (again to quit now)\n";
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
}

void interrupt_cancels(sdc_model *m) {
    g_model = m;
    if (m && g_interrupted) sdc_model_cancel(m, 1); /* a signal before m was set */
}

void interrupt_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* the second signal gets the default action */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A blocked mask is inherited through exec: a launcher (a CI runner,
     * a supervisor) that blocks SIGINT would leave the signal pending
     * while every step runs.  The caller's thread takes them from here on
     * (the worker threads start later, with this mask). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int interrupted(void) { return g_interrupted != 0; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void progress_init(progress *p, int image, int n_images) {
    memset(p, 0, sizeof *p);
    p->tty = isatty(STDERR_FILENO);
    p->label_image = n_images > 1 ? image : 0;
    p->n_images = n_images;
    p->stage = SDC_STAGE_COUNT;
    p->last = p->stage_start = now_s();
}

void progress_done(progress *p) {
    if (p->open_line) fputc('\n', stderr);
    p->open_line = 0;
    fflush(stderr);
}

static const char *stage_name(sdc_stage s) {
    switch (s) {
    case SDC_STAGE_LOAD: return "load";
    case SDC_STAGE_TEXT: return "text";
    case SDC_STAGE_SAMPLE: return "sample";
    case SDC_STAGE_DECODE: return "decode";
    case SDC_STAGE_ENCODE: return "encode";
    case SDC_STAGE_COUNT: break;
    }
    return "?";
}

/* "1h02m", "3m05s", "12s" */
static void format_eta(double s, char *out, size_t n) {
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(out, n, "%lds", t);
}

int progress_cb(void *user, sdc_stage stage, int step, int total) {
    progress *p = user;
    double t = now_s();
    if (stage != p->stage) {
        progress_done(p);
        p->stage = stage;
        p->stage_start = p->last; /* the stage began when the previous one ended */
    }
    p->last = t;
    if (total < 1) total = 1;
    double per = (t - p->stage_start) / (step > 0 ? step : 1);
    char eta[32], img[32] = "";
    format_eta(per * (total - step), eta, sizeof eta);
    if (p->label_image) snprintf(img, sizeof img, "image %d/%d ", p->label_image, p->n_images);
    const char *rate = per >= 1.0 || per == 0.0 ? "s/it" : "it/s";
    double rv = per >= 1.0 || per == 0.0 ? per : 1.0 / per;

    if (p->tty) {
        enum { BAR = 24 };
        char bar[BAR + 1];
        int fill = (int)((long)step * BAR / total);
        for (int i = 0; i < BAR; i++) bar[i] = i < fill ? '#' : '.';
        bar[BAR] = 0;
        fprintf(stderr, "\r\033[K%s%-6s [%s] %d/%d  %.2f %s  ETA %s", img, stage_name(stage),
                bar, step, total, rv, rate, eta);
        p->open_line = 1;
        if (step >= total) progress_done(p);
    } else {
        fprintf(stderr, "sdc: %s%s %d/%d %.2f %s ETA %s\n", img, stage_name(stage), step, total,
                rv, rate, eta);
    }
    fflush(stderr);
    return interrupted();
}
