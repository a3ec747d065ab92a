/* The OpenCL backend: every op of backends/backend.h as OpenCL C 1.2 kernels
 * (no cl_khr_fp16, no subgroups needed), on one in-order queue of one device.
 * The OpenCL library is loaded at run time (cl_loader.h): without one, these
 * fail cleanly and sdc runs on the CPU.  Activation blocks are reserved host
 * address ranges (never touched) mapped to device buffers; weights are
 * uploaded on first use (F16 kept as half, F32 as float, BF16 widened) and
 * freed on SDC_RES_RELEASE.  Compiled programs are cached on disk. */
#ifndef SDC_BACKENDS_OPENCL_OPENCL_H
#define SDC_BACKENDS_OPENCL_OPENCL_H

#include <stdint.h>

#include "backends/backend.h"

typedef struct sdc_cl_options {
    const char *device;    /* NULL or "": the first GPU device; "N": index N in
                              sdc_opencl_devices' order; otherwise a case-insensitive
                              substring of the device name */
    int allow_cpu;         /* 1: a CPU OpenCL device may be chosen (tests, PoCL); 0: only
                              GPUs/accelerators */
    int fp16_storage;      /* 1: activations stored as half in device memory (element i at
                              byte 2i); 0: fp32 */
    const char *cache_dir; /* NULL: $SDC_CL_CACHE, else $XDG_CACHE_HOME/sdc/cl, else
                              $HOME/.cache/sdc/cl; "0" or "off": no cache */
    int verbose;           /* 1: log device choice, builds, cache hits to stderr */
} sdc_cl_options;

typedef struct sdc_cl_device {
    int index;          /* in the order of sdc_opencl_devices */
    char platform[128]; /* CL_PLATFORM_NAME */
    char name[128];     /* CL_DEVICE_NAME */
    char version[64];   /* CL_DEVICE_VERSION */
    char driver[64];    /* CL_DRIVER_VERSION */
    int is_gpu, is_cpu; /* CL_DEVICE_TYPE_GPU / _CPU (an accelerator is neither) */
    uint64_t global_mem, max_alloc; /* bytes */
    int compute_units;
    int fp16;           /* cl_khr_fp16 advertised */
} sdc_cl_device;

/* Every device of every platform, platforms in the ICD loader's order (a
 * platform with no devices, like Mesa's clover without hardware, is
 * skipped).  Writes min(count, cap) entries to out (out may be NULL when
 * cap is 0) and returns the count (0 is fine), or -1 with
 * sdc_fail(SDC_ERR_DEVICE, ...) when no OpenCL library can be loaded. */
int sdc_opencl_devices(sdc_cl_device *out, int cap);

/* A backend on the device opt chooses (opt NULL: all defaults).  NULL with
 * sdc_fail(SDC_ERR_DEVICE or SDC_ERR_NOMEM, ...) if there is no such device
 * or it cannot be set up.  The caller frees it with be->free(be). */
sdc_backend *sdc_backend_opencl_create(const sdc_cl_options *opt);

/* The device's fp32 multiply-add rate (GFLOP/s) and copy bandwidth (GB/s),
 * measured now with long FMA chains and a large copy (cl_peak.c): the
 * yardstick of bench_ops' "% of peak".  be: an OpenCL backend (or a
 * profiler around one). */
sdc_status sdc_opencl_peak(sdc_backend *be, double *gflops, double *gbps);

#endif
