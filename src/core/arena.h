/* Activation memory: one block, sized by a planning pass, handed out as a
 * stack.  Model code allocates with sdc_arena_alloc and releases everything
 * above a mark with sdc_arena_reset.
 *
 * Planning: an arena created with sdc_arena_plan() has no memory; alloc
 * returns NULL and only records the high-water mark.  The model runs once
 * against the null backend in this mode, then sdc_arena_commit() allocates
 * the block, and every later pass allocates nothing.
 *
 * The block comes from the arena's backend (be->buffer_alloc: host memory
 * on the CPU, an opaque base on a device; backends/backend.h's address
 * rule), or from the host heap when be is NULL (tests of the CPU backend). */
#ifndef SDC_CORE_ARENA_H
#define SDC_CORE_ARENA_H

#include <stddef.h>

#include "sdc.h"

struct sdc_backend;

typedef struct sdc_arena {
    struct sdc_backend *be; /* owner of the block (NULL: host heap); kept by plan and free */
    char *base;      /* NULL while planning */
    size_t size;     /* bytes of base */
    size_t top;      /* bytes in use */
    size_t peak;     /* high-water mark, bytes */
    int planning;    /* 1: record only */
    int overflow;    /* set if an alloc did not fit (a planning bug) */
} sdc_arena;

void sdc_arena_plan(sdc_arena *a);
/* Allocates max(peak, at_least) bytes from a->be; returns SDC_ERR_NOMEM (or
 * the backend's failure) with the message set. */
sdc_status sdc_arena_commit(sdc_arena *a, size_t at_least);
void sdc_arena_free(sdc_arena *a);

/* n floats, 64-byte aligned.  NULL while planning, or on overflow (and then
 * a->overflow is set; callers check it after a pass). */
float *sdc_arena_alloc(sdc_arena *a, size_t n_floats);
static inline size_t sdc_arena_mark(const sdc_arena *a) { return a->top; }
static inline void sdc_arena_reset(sdc_arena *a, size_t mark) { a->top = mark; }

#endif
