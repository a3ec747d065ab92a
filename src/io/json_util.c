#include "io/json_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int sdc_json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= 0.0 && v <= SDC_JSON_MAX_EXACT) || v != floor(v)) return 0;
    *out = (uint64_t)v;
    return 1;
}

static int is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

sdc_status sdc_json_parse(const char *buf, size_t len, const char *what, cJSON **out) {
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!root) {
        size_t at = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0;
        return sdc_fail(SDC_ERR_FORMAT, "%s: not valid JSON (error near byte %zu)", what, at);
    }
    for (const char *p = end; p < buf + len; p++) {
        if (!is_json_space(*p) && *p != 0) {
            cJSON_Delete(root);
            return sdc_fail(SDC_ERR_FORMAT, "%s: not valid JSON (trailing data at byte %zu)", what,
                            (size_t)(p - buf));
        }
    }
    *out = root;
    return SDC_OK;
}

sdc_status sdc_json_read_file(const char *path, size_t max_bytes, cJSON **out) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return sdc_fail(SDC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(max_bytes + 1);
    if (!buf) {
        fclose(fp);
        return sdc_fail(SDC_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, max_bytes + 1, fp);
    int err = ferror(fp);
    fclose(fp);
    sdc_status st;
    if (err) {
        st = sdc_fail(SDC_ERR_IO, "%s: read error", path);
    } else if (n > max_bytes) {
        st = sdc_fail(SDC_ERR_FORMAT, "%s: larger than %zu bytes", path, max_bytes);
    } else {
        st = sdc_json_parse(buf, n, path, out);
    }
    free(buf);
    return st;
}

sdc_status sdc_json_opt_int(const cJSON *obj, const char *key, int lo, int hi, const char *what,
                            int *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) return SDC_OK;
    double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    if (!(v >= lo && v <= hi) || v != floor(v))
        return sdc_fail(SDC_ERR_FORMAT, "%s: \"%s\" must be an integer in [%d, %d]", what, key, lo,
                        hi);
    *out = (int)v;
    return SDC_OK;
}

sdc_status sdc_json_opt_double(const cJSON *obj, const char *key, double lo, double hi,
                               const char *what, double *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) return SDC_OK;
    double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    if (!(v >= lo && v <= hi))
        return sdc_fail(SDC_ERR_FORMAT, "%s: \"%s\" must be a number in [%g, %g]", what, key, lo,
                        hi);
    *out = v;
    return SDC_OK;
}

sdc_status sdc_json_opt_bool(const cJSON *obj, const char *key, const char *what, int *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) return SDC_OK;
    if (!cJSON_IsBool(it))
        return sdc_fail(SDC_ERR_FORMAT, "%s: \"%s\" must be true or false", what, key);
    *out = cJSON_IsTrue(it) ? 1 : 0;
    return SDC_OK;
}

const char *sdc_json_opt_string(const cJSON *obj, const char *key, int *bad) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) return NULL;
    if (!cJSON_IsString(it) || !it->valuestring) {
        *bad = 1;
        return NULL;
    }
    return it->valuestring;
}
