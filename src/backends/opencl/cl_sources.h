/* The kernel sources, embedded at build time (cmake/opencl.cmake) from
 * src/backends/opencl/kernels/<name>.cl; text NUL-terminated. */
#ifndef SDC_BACKENDS_OPENCL_CL_SOURCES_H
#define SDC_BACKENDS_OPENCL_CL_SOURCES_H

#include <stddef.h>

typedef struct sdc_cl_source {
    const char *name; /* the file name without .cl */
    const char *text;
    size_t size;      /* bytes, without the NUL */
} sdc_cl_source;

extern const sdc_cl_source sdc_cl_sources[];
extern const int sdc_cl_nsources;

#endif
