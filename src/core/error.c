#include "core/error.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[1024];

const char *sdc_last_error(void) { return g_msg; }

void sdc_clear_error(void) { g_msg[0] = 0; }

sdc_status sdc_fail(sdc_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return s;
}

sdc_status sdc_fail_context(sdc_status s, const char *fmt, ...) {
    char prefix[512], old[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    snprintf(g_msg, sizeof g_msg, "%.500s: %.520s", prefix, old);
    return s;
}

const char *sdc_status_str(sdc_status s) {
    switch (s) {
    case SDC_OK: return "ok";
    case SDC_ERR_IO: return "I/O error";
    case SDC_ERR_FORMAT: return "format error";
    case SDC_ERR_UNSUPPORTED: return "unsupported";
    case SDC_ERR_NOMEM: return "out of memory";
    case SDC_ERR_INVALID_ARG: return "invalid argument";
    case SDC_ERR_CANCELLED: return "cancelled";
    case SDC_ERR_INTERNAL: return "internal error";
    case SDC_ERR_DEVICE: return "device error";
    }
    return "unknown status";
}

int sdc_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int sdc_add_size(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}
