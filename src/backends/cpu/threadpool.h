/* A small pthread pool with a parallel-for.
 *
 * The pool has n threads in all: the calling thread (thread 0) plus n-1
 * workers.  sdc_parallel_for hands out task indices 0..n_tasks-1 dynamically
 * (an atomic counter) and returns when every task has run.  One
 * parallel_for at a time per pool; a task must not call parallel_for on the
 * same pool (it would run inline in the caller, as thread 0's work). */
#ifndef SDC_CPU_THREADPOOL_H
#define SDC_CPU_THREADPOOL_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct sdc_threadpool sdc_threadpool;

/* fn(ctx, task, thread): thread in [0, size) identifies per-thread scratch. */
typedef void (*sdc_task_fn)(void *ctx, int64_t task, int thread);

/* n_threads >= 1.  Returns NULL if memory or thread creation fails.  Owned
 * by the caller; sdc_threadpool_free joins the workers. */
sdc_threadpool *sdc_threadpool_create(int n_threads);
void sdc_threadpool_free(sdc_threadpool *p); /* NULL allowed */
int sdc_threadpool_size(const sdc_threadpool *p);
/* How long a thread polls for the next job, or for the end of one, before
 * it sleeps on a condition variable (microseconds; 0: never polls). */
void sdc_threadpool_set_spin(sdc_threadpool *p, int us);

/* While *stop is non-zero, the tasks not yet started are skipped: an op in
 * flight ends within about one task's time, its output undefined (how a
 * cancelled generation stops mid-op).  stop NULL: never. */
void sdc_threadpool_set_stop(sdc_threadpool *p, const atomic_int *stop);

void sdc_parallel_for(sdc_threadpool *p, int64_t n_tasks, sdc_task_fn fn, void *ctx);

#endif
