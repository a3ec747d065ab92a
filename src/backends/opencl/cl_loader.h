/* The OpenCL entry points sdc uses, loaded at run time (dlopen) so that the
 * binary runs where no OpenCL library exists.  OpenCL 1.2 host API only. */
#ifndef SDC_BACKENDS_OPENCL_CL_LOADER_H
#define SDC_BACKENDS_OPENCL_CL_LOADER_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "sdc.h"

/* X(return type, name, (parameter types)) for every function used */
#define SDC_CL_FUNCS(X)                                                                      \
    X(cl_int, clGetPlatformIDs, (cl_uint, cl_platform_id *, cl_uint *))                      \
    X(cl_int, clGetPlatformInfo, (cl_platform_id, cl_platform_info, size_t, void *, size_t *)) \
    X(cl_int, clGetDeviceIDs, (cl_platform_id, cl_device_type, cl_uint, cl_device_id *, cl_uint *)) \
    X(cl_int, clGetDeviceInfo, (cl_device_id, cl_device_info, size_t, void *, size_t *))     \
    X(cl_context, clCreateContext,                                                           \
      (const cl_context_properties *, cl_uint, const cl_device_id *,                         \
       void(CL_CALLBACK *)(const char *, const void *, size_t, void *), void *, cl_int *))   \
    X(cl_int, clReleaseContext, (cl_context))                                                \
    X(cl_command_queue, clCreateCommandQueue,                                                \
      (cl_context, cl_device_id, cl_command_queue_properties, cl_int *))                     \
    X(cl_int, clReleaseCommandQueue, (cl_command_queue))                                     \
    X(cl_mem, clCreateBuffer, (cl_context, cl_mem_flags, size_t, void *, cl_int *))          \
    X(cl_int, clReleaseMemObject, (cl_mem))                                                  \
    X(cl_program, clCreateProgramWithSource,                                                 \
      (cl_context, cl_uint, const char **, const size_t *, cl_int *))                        \
    X(cl_program, clCreateProgramWithBinary,                                                 \
      (cl_context, cl_uint, const cl_device_id *, const size_t *, const unsigned char **,    \
       cl_int *, cl_int *))                                                                  \
    X(cl_int, clBuildProgram,                                                                \
      (cl_program, cl_uint, const cl_device_id *, const char *,                              \
       void(CL_CALLBACK *)(cl_program, void *), void *))                                     \
    X(cl_int, clGetProgramInfo, (cl_program, cl_program_info, size_t, void *, size_t *))     \
    X(cl_int, clGetProgramBuildInfo,                                                         \
      (cl_program, cl_device_id, cl_program_build_info, size_t, void *, size_t *))           \
    X(cl_int, clReleaseProgram, (cl_program))                                                \
    X(cl_kernel, clCreateKernel, (cl_program, const char *, cl_int *))                       \
    X(cl_int, clReleaseKernel, (cl_kernel))                                                  \
    X(cl_int, clSetKernelArg, (cl_kernel, cl_uint, size_t, const void *))                    \
    X(cl_int, clEnqueueNDRangeKernel,                                                        \
      (cl_command_queue, cl_kernel, cl_uint, const size_t *, const size_t *, const size_t *, \
       cl_uint, const cl_event *, cl_event *))                                               \
    X(cl_int, clEnqueueWriteBuffer,                                                          \
      (cl_command_queue, cl_mem, cl_bool, size_t, size_t, const void *, cl_uint,             \
       const cl_event *, cl_event *))                                                        \
    X(cl_int, clEnqueueReadBuffer,                                                           \
      (cl_command_queue, cl_mem, cl_bool, size_t, size_t, void *, cl_uint, const cl_event *, \
       cl_event *))                                                                          \
    X(cl_int, clEnqueueCopyBuffer,                                                           \
      (cl_command_queue, cl_mem, cl_mem, size_t, size_t, size_t, cl_uint, const cl_event *,  \
       cl_event *))                                                                          \
    X(cl_int, clEnqueueFillBuffer,                                                           \
      (cl_command_queue, cl_mem, const void *, size_t, size_t, size_t, cl_uint,              \
       const cl_event *, cl_event *))                                                        \
    X(cl_int, clFlush, (cl_command_queue))                                                   \
    X(cl_int, clFinish, (cl_command_queue))

typedef struct sdc_cl_api {
#define SDC_CL_FIELD(ret, name, params) ret(CL_API_CALL *name) params;
    SDC_CL_FUNCS(SDC_CL_FIELD)
#undef SDC_CL_FIELD
    const char *path; /* the library that was loaded */
} sdc_cl_api;

/* The entry points of the OpenCL library: $SDC_OPENCL_LIB if set, else the
 * first of libOpenCL.so.1, libOpenCL.so and the Android paths that loads.
 * A library stays loaded for the life of the process (ICD loaders do not
 * survive being unloaded); the table is static.  NULL with
 * sdc_fail(SDC_ERR_DEVICE, ...) if none loads or one lacks an entry point. */
const sdc_cl_api *sdc_cl_load(void);

/* "CL_OUT_OF_RESOURCES" for -5, etc.; "CL_ERROR_<n>" (static buffer) else. */
const char *sdc_cl_error_name(cl_int err);

#endif
