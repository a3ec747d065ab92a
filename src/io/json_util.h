/* Small helpers over cJSON for untrusted JSON (safetensors headers,
 * diffusers config.json files). */
#ifndef SDC_IO_JSON_UTIL_H
#define SDC_IO_JSON_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sdc.h"

/* Largest integer a JSON number (a double in cJSON) holds exactly: 2^53. */
#define SDC_JSON_MAX_EXACT 9007199254740992.0

/* 1 and *out if item is a number that is a non-negative integer <= 2^53,
 * else 0 (not a number, negative, fractional, too large, inf, nan). */
int sdc_json_uint(const cJSON *item, uint64_t *out);

/* Parses buf[0, len) as one JSON value followed only by whitespace.
 * On success *out is owned by the caller (cJSON_Delete).  On failure sets
 * a message "what: ..." and returns SDC_ERR_FORMAT or SDC_ERR_NOMEM. */
sdc_status sdc_json_parse(const char *buf, size_t len, const char *what, cJSON **out);

/* Reads and parses a JSON file of at most max_bytes.  SDC_ERR_IO if it
 * cannot be read, SDC_ERR_FORMAT if too large or not JSON.  *out owned by
 * the caller. */
sdc_status sdc_json_read_file(const char *path, size_t max_bytes, cJSON **out);

/* Optional members of a config object.  Absent or JSON null: *out is left
 * unchanged and SDC_OK returned.  Present with the wrong type or outside
 * [lo, hi]: SDC_ERR_FORMAT "what: key ...". */
sdc_status sdc_json_opt_int(const cJSON *obj, const char *key, int lo, int hi, const char *what,
                            int *out);
sdc_status sdc_json_opt_double(const cJSON *obj, const char *key, double lo, double hi,
                               const char *what, double *out);
sdc_status sdc_json_opt_bool(const cJSON *obj, const char *key, const char *what, int *out);
/* Absent or null: NULL.  Present and not a string: NULL, with *bad set. */
const char *sdc_json_opt_string(const cJSON *obj, const char *key, int *bad);

#endif
