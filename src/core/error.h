/* Thread-local error message and status helpers. */
#ifndef SDC_CORE_ERROR_H
#define SDC_CORE_ERROR_H

#include "sdc.h"

#if defined(__GNUC__)
#define SDC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SDC_PRINTF(a, b)
#endif

/* Sets the calling thread's message (printf-style) and returns s, so that a
 * failure reads: return sdc_fail(SDC_ERR_FORMAT, "%s: bad header", path); */
sdc_status sdc_fail(sdc_status s, const char *fmt, ...) SDC_PRINTF(2, 3);
/* Prefixes the current message: "context: <old message>"; returns s. */
sdc_status sdc_fail_context(sdc_status s, const char *fmt, ...) SDC_PRINTF(2, 3);
void sdc_clear_error(void);

/* Checked size arithmetic: return 0 on overflow, 1 otherwise. */
int sdc_mul_size(size_t a, size_t b, size_t *out);
int sdc_add_size(size_t a, size_t b, size_t *out);

#endif
