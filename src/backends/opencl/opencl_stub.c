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
#else
typedef int sdc_opencl_stub_unused; /* the real backend: opencl.c */
#endif
