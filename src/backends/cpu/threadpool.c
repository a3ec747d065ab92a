#include "backends/cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* A job's start and end are handed over by spinning first, then by the
 * condition variables: a worker that has run out of tasks polls for the
 * next job for up to spin_us before it sleeps, and the caller polls for
 * the workers' end as long.  A futex wake-up cost ~30 us per
 * parallel_for in a VM (measured 34 ms per 512x512 UNet step at ~1100
 * calls per step), and the woken worker started late into each job. */
#define SPIN_US_DEFAULT 200 /* 0 where there are more threads than online CPUs */
/* Between checks the polling thread yields its CPU (sched_yield): with
 * another process's threads on the same cores (two 2-thread runs on 2
 * cores), a poller that kept its CPU held off the very thread it waited
 * for (a tiny-model test 1.29 s polling, 0.48 s sleeping, 0.37 s alone;
 * yielding: 0.47 s), and alone the yield returns at once. */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

struct sdc_threadpool {
    int n;              /* threads including the caller */
    pthread_t *workers; /* [n - 1] */
    int started;        /* workers successfully created */
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_ullong generation; /* bumped for each job (written under mu) */
    atomic_int busy;          /* workers still in the current job (written under mu) */
    int quit;
    int spin_us;              /* polling before sleeping (above) */
    atomic_int in_job;   /* a parallel_for is running: nested calls run inline */
    const atomic_int *stop; /* non-zero: skip the tasks not yet started (or NULL) */
    /* the current job */
    sdc_task_fn fn;
    void *ctx;
    int64_t n_tasks;
    atomic_llong next;
};

typedef struct worker_arg {
    sdc_threadpool *p;
    int id;
} worker_arg;

static int stopped(const sdc_threadpool *p) {
    return p && p->stop && atomic_load_explicit(p->stop, memory_order_relaxed);
}

static void run_tasks(sdc_threadpool *p, int thread) {
    for (;;) {
        int64_t t = atomic_fetch_add(&p->next, 1);
        if (t >= p->n_tasks || stopped(p)) break;
        p->fn(p->ctx, t, thread);
    }
}

void sdc_threadpool_set_stop(sdc_threadpool *p, const atomic_int *stop) {
    if (p) p->stop = stop;
}

/* Polls until *v != old (generation) or *n == 0 (busy), at most us. */
static void spin_while_gen(atomic_ullong *v, uint64_t old, int us) {
    if (us <= 0) return;
    double t0 = now_us();
    for (int i = 1; atomic_load_explicit(v, memory_order_acquire) == old; i++) {
        CPU_RELAX();
        if ((i & 63) == 0) {
            if (now_us() - t0 > us) return;
            sched_yield(); /* a thread waiting for this CPU (ours or not) runs */
        }
    }
}

static void spin_while_busy(atomic_int *n, int us) {
    if (us <= 0) return;
    double t0 = now_us();
    for (int i = 1; atomic_load_explicit(n, memory_order_acquire) > 0; i++) {
        CPU_RELAX();
        if ((i & 63) == 0) {
            if (now_us() - t0 > us) return;
            sched_yield();
        }
    }
}

static void *worker_main(void *argp) {
    worker_arg *arg = argp;
    sdc_threadpool *p = arg->p;
    int id = arg->id;
    free(arg);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (!p->quit && p->generation == seen) {
            pthread_mutex_unlock(&p->mu);
            spin_while_gen(&p->generation, seen, p->spin_us);
            pthread_mutex_lock(&p->mu);
        }
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_tasks(p, id);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

sdc_threadpool *sdc_threadpool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    sdc_threadpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    /* polling only pays with a core per thread: oversubscribed, a
     * polling thread takes the time of one that has work (4 threads on
     * this 2-core machine, UNet passes: 5.54 s without polling, 5.79 s
     * with it) */
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    p->spin_us = cpus > 0 && n_threads > cpus ? 0 : SPIN_US_DEFAULT;
    const char *env = getenv("SDC_SPIN_US"); /* for measuring: 0 = sleep at once */
    if (env && *env) {
        long us = strtol(env, NULL, 10);
        p->spin_us = us < 0 ? 0 : us > 100000 ? 100000 : (int)us;
    }
    atomic_init(&p->generation, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->in_job, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) goto fail;
        for (int i = 1; i < n_threads; i++) {
            worker_arg *arg = malloc(sizeof *arg);
            if (!arg) goto fail;
            arg->p = p;
            arg->id = i;
            if (pthread_create(&p->workers[i - 1], NULL, worker_main, arg) != 0) {
                free(arg);
                goto fail;
            }
            p->started++;
        }
    }
    return p;
fail:
    sdc_threadpool_free(p);
    return NULL;
}

void sdc_threadpool_free(sdc_threadpool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

int sdc_threadpool_size(const sdc_threadpool *p) { return p ? p->n : 1; }

void sdc_threadpool_set_spin(sdc_threadpool *p, int us) {
    if (p) p->spin_us = us < 0 ? 0 : us;
}

void sdc_parallel_for(sdc_threadpool *p, int64_t n_tasks, sdc_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (!p || p->n == 1 || n_tasks == 1 || atomic_load(&p->in_job)) {
        for (int64_t t = 0; t < n_tasks && !stopped(p); t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->in_job, 1);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    p->busy = p->started;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    run_tasks(p, 0);

    spin_while_busy(&p->busy, p->spin_us);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0) pthread_cond_wait(&p->done, &p->mu);
    atomic_store(&p->in_job, 0);
    pthread_mutex_unlock(&p->mu);
}
