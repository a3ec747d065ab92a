/* Functions of the op contract that every backend shares (backend.h). */
#include "backends/backend.h"

void sdc_backend_set_host_pages(sdc_backend *be,
                                void (*fn)(void *ctx, const sdc_weight *w, sdc_residency r),
                                void *ctx) {
    for (sdc_backend *b = be; b; ) {
        b->host_pages = fn;
        b->host_pages_ctx = ctx;
        sdc_backend *in = sdc_backend_profile_inner(b);
        b = in == b ? NULL : in;
    }
}
