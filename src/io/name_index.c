#include "io/name_index.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

sdc_status sdc_name_index_init(sdc_name_index *ix, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) {
        if (cap > SIZE_MAX / 4 / sizeof(sdc_name_slot)) return SDC_ERR_NOMEM;
        cap *= 2;
    }
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots) return SDC_ERR_NOMEM;
    ix->cap = cap;
    ix->count = 0;
    return SDC_OK;
}

void sdc_name_index_free(sdc_name_index *ix) {
    free(ix->slots);
    ix->slots = NULL;
    ix->cap = ix->count = 0;
}

int sdc_name_index_put(sdc_name_index *ix, const char *key, size_t value) {
    if (ix->count >= ix->cap / 2) return 0;
    size_t mask = ix->cap - 1;
    for (size_t i = (size_t)fnv1a(key) & mask;; i = (i + 1) & mask) {
        sdc_name_slot *s = &ix->slots[i];
        if (!s->key) {
            s->key = key;
            s->value = value;
            ix->count++;
            return 1;
        }
        if (strcmp(s->key, key) == 0) return 0;
    }
}

int sdc_name_index_get(const sdc_name_index *ix, const char *key, size_t *value) {
    if (!ix->slots) return 0;
    size_t mask = ix->cap - 1;
    for (size_t i = (size_t)fnv1a(key) & mask;; i = (i + 1) & mask) {
        const sdc_name_slot *s = &ix->slots[i];
        if (!s->key) return 0;
        if (strcmp(s->key, key) == 0) {
            *value = s->value;
            return 1;
        }
    }
}
