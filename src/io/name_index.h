/* A string -> index hash table (open addressing, FNV-1a) for tensor names.
 * Keys are borrowed: they must outlive the table. */
#ifndef SDC_IO_NAME_INDEX_H
#define SDC_IO_NAME_INDEX_H

#include <stddef.h>

#include "sdc.h"

typedef struct sdc_name_slot {
    const char *key; /* NULL: empty */
    size_t value;
} sdc_name_slot;

typedef struct sdc_name_index {
    sdc_name_slot *slots; /* cap entries, owned */
    size_t cap;           /* power of two, >= 2 * capacity asked for */
    size_t count;
} sdc_name_index;

/* Room for n keys.  SDC_ERR_NOMEM on failure. */
sdc_status sdc_name_index_init(sdc_name_index *ix, size_t n);
void sdc_name_index_free(sdc_name_index *ix);
/* Adds key -> value.  Returns 1, or 0 if key is already present (the table
 * is unchanged) or the table is full (count reached the n given to init). */
int sdc_name_index_put(sdc_name_index *ix, const char *key, size_t value);
/* Returns 1 and sets *value if key is present, else 0. */
int sdc_name_index_get(const sdc_name_index *ix, const char *key, size_t *value);

#endif
