/* The OpenCL API of a build without the OpenCL headers: says so. */
#if !SDC_HAVE_OPENCL
#include "backends/opencl/opencl.h"
#include "core/error.h"

#define NO_OPENCL "this sdc was built without OpenCL (install opencl-headers)"

int sdc_opencl_devices(sdc_cl_device *out, int cap) {
    (void)out, (void)cap;
    sdc_fail(SDC_ERR_DEVICE, NO_OPENCL);
    return -1;
}

sdc_backend *sdc_backend_opencl_create(const sdc_cl_options *opt) {
    (void)opt;
    sdc_fail(SDC_ERR_DEVICE, NO_OPENCL);
    return NULL;
}

/* test_opencl.c links against it; never called without a device */
void sdc_cl_test_sha256(const void *data, size_t n, unsigned char out[32]);
void sdc_cl_test_sha256(const void *data, size_t n, unsigned char out[32]) {
    (void)data, (void)n;
    for (int i = 0; i < 32; i++) out[i] = 0;
}
#else
typedef int sdc_opencl_stub_unused; /* the real backend: opencl.c */
#endif
