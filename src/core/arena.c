#include "core/arena.h"

#include <stdlib.h>

#include "backends/backend.h"
#include "core/error.h"

#define ARENA_ALIGN 64

static void release(sdc_arena *a) {
    if (a->base && a->be)
        a->be->buffer_free(a->be, (float *)a->base);
    else
        free(a->base);
    a->base = NULL;
    a->size = 0;
}

void sdc_arena_plan(sdc_arena *a) {
    sdc_arena_free(a);
    a->planning = 1;
}

sdc_status sdc_arena_commit(sdc_arena *a, size_t at_least) {
    size_t n = a->peak > at_least ? a->peak : at_least;
    if (n == 0) n = ARENA_ALIGN;
    n = (n + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    release(a);
    if (a->be) {
        float *base = NULL;
        sdc_status st = a->be->buffer_alloc(a->be, n, &base);
        if (st != SDC_OK) return st;
        a->base = (char *)base;
    } else {
        a->base = aligned_alloc(ARENA_ALIGN, n);
        if (!a->base)
            return sdc_fail(SDC_ERR_NOMEM, "cannot allocate %zu MiB of activation memory",
                            n >> 20);
    }
    a->size = n;
    a->top = 0;
    a->planning = 0;
    a->overflow = 0;
    return SDC_OK;
}

void sdc_arena_free(sdc_arena *a) {
    release(a);
    a->size = a->top = a->peak = 0;
    a->planning = 0;
    a->overflow = 0;
}

float *sdc_arena_alloc(sdc_arena *a, size_t n_floats) {
    size_t bytes;
    if (!sdc_mul_size(n_floats, sizeof(float), &bytes) ||
        !sdc_add_size(bytes, ARENA_ALIGN - 1, &bytes)) {
        a->overflow = 1;
        return NULL;
    }
    bytes = bytes / ARENA_ALIGN * ARENA_ALIGN;
    size_t start = a->top, end;
    if (!sdc_add_size(start, bytes, &end)) {
        a->overflow = 1;
        return NULL;
    }
    if (a->planning) {
        a->top = end;
        if (end > a->peak) a->peak = end;
        return NULL;
    }
    if (end > a->size) {
        a->overflow = 1;
        return NULL;
    }
    a->top = end;
    if (end > a->peak) a->peak = end;
    return (float *)(a->base + start);
}
