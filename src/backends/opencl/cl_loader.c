/* dlopen of the OpenCL ICD loader (cl_loader.h). */
#if SDC_HAVE_OPENCL
#include "backends/opencl/cl_loader.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* Where the loader is looked for, in order (Android keeps it in the vendor
 * partition; Pixel phones name it libOpenCL-pixel.so). */
static const char *const k_default_paths[] = {
    "libOpenCL.so.1",
    "libOpenCL.so",
    "/system/vendor/lib64/libOpenCL.so",
    "/system/lib64/libOpenCL.so",
    "/system/vendor/lib64/libOpenCL-pixel.so",
    "libOpenCL-pixel.so",
};

/* Every library loaded so far, by the path asked for; never unloaded. */
#define MAX_LIBS 4
static struct {
    char path[512];
    sdc_cl_api api;
} g_libs[MAX_LIBS];
static int g_nlibs;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* Fills api from handle; the name of the first missing symbol, or NULL. */
static const char *resolve(void *handle, sdc_cl_api *api) {
    void *sym;
#define SDC_CL_RESOLVE(ret, name, params)                              \
    sym = dlsym(handle, #name);                                        \
    if (!sym) return #name;                                            \
    memcpy(&api->name, &sym, sizeof sym); /* object -> function pointer (POSIX) */
    SDC_CL_FUNCS(SDC_CL_RESOLVE)
#undef SDC_CL_RESOLVE
    return NULL;
}

/* The table of the library at path, loading it if needed (lock held);
 * NULL with *why set. */
static const sdc_cl_api *load_path(const char *path, char *why, size_t why_size) {
    for (int i = 0; i < g_nlibs; i++)
        if (strcmp(g_libs[i].path, path) == 0) return &g_libs[i].api;
    if (g_nlibs == MAX_LIBS || strlen(path) >= sizeof g_libs[0].path) {
        snprintf(why, why_size, "%s: too many OpenCL libraries", path);
        return NULL;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, why_size, "%s", e ? e : path);
        return NULL;
    }
    sdc_cl_api api;
    memset(&api, 0, sizeof api);
    const char *missing = resolve(h, &api);
    if (missing) {
        snprintf(why, why_size, "%s lacks %s (not an OpenCL 1.2 library)", path, missing);
        dlclose(h);
        return NULL;
    }
    snprintf(g_libs[g_nlibs].path, sizeof g_libs[0].path, "%s", path);
    g_libs[g_nlibs].api = api;
    g_libs[g_nlibs].api.path = g_libs[g_nlibs].path;
    return &g_libs[g_nlibs++].api;
}

const sdc_cl_api *sdc_cl_load(void) {
    const char *env = getenv("SDC_OPENCL_LIB");
    char why[600] = "";
    const sdc_cl_api *api = NULL;
    pthread_mutex_lock(&g_lock);
    if (env && env[0]) {
        api = load_path(env, why, sizeof why);
    } else {
        for (size_t i = 0; !api && i < sizeof k_default_paths / sizeof *k_default_paths; i++) {
            char w[600];
            api = load_path(k_default_paths[i], w, sizeof w);
            if (i == 0 && !api) snprintf(why, sizeof why, "%s", w); /* the first reason */
        }
    }
    pthread_mutex_unlock(&g_lock);
    if (!api)
        sdc_fail(SDC_ERR_DEVICE, "no OpenCL library could be loaded (%s%s)", why,
                 env && env[0] ? "; from SDC_OPENCL_LIB" : "; install an OpenCL ICD loader");
    return api;
}

const char *sdc_cl_error_name(cl_int err) {
    switch (err) {
#define E(x) case x: return #x;
        E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE)
        E(CL_COMPILER_NOT_AVAILABLE) E(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY) E(CL_PROFILING_INFO_NOT_AVAILABLE)
        E(CL_MEM_COPY_OVERLAP) E(CL_IMAGE_FORMAT_MISMATCH) E(CL_IMAGE_FORMAT_NOT_SUPPORTED)
        E(CL_BUILD_PROGRAM_FAILURE) E(CL_MAP_FAILURE) E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST) E(CL_COMPILE_PROGRAM_FAILURE)
        E(CL_LINKER_NOT_AVAILABLE) E(CL_LINK_PROGRAM_FAILURE) E(CL_DEVICE_PARTITION_FAILED)
        E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) E(CL_INVALID_VALUE) E(CL_INVALID_DEVICE_TYPE)
        E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT)
        E(CL_INVALID_QUEUE_PROPERTIES) E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_HOST_PTR)
        E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR) E(CL_INVALID_IMAGE_SIZE)
        E(CL_INVALID_SAMPLER) E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS)
        E(CL_INVALID_PROGRAM) E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME)
        E(CL_INVALID_KERNEL_DEFINITION) E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX)
        E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE) E(CL_INVALID_KERNEL_ARGS)
        E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE) E(CL_INVALID_WORK_ITEM_SIZE)
        E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST) E(CL_INVALID_EVENT)
        E(CL_INVALID_OPERATION) E(CL_INVALID_GL_OBJECT) E(CL_INVALID_BUFFER_SIZE)
        E(CL_INVALID_MIP_LEVEL) E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_INVALID_PROPERTY)
        E(CL_INVALID_IMAGE_DESCRIPTOR) E(CL_INVALID_COMPILER_OPTIONS) E(CL_INVALID_LINKER_OPTIONS)
        E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: {
        static _Thread_local char buf[32];
        snprintf(buf, sizeof buf, "CL_ERROR_%d", (int)err);
        return buf;
    }
    }
}
#else
typedef int sdc_cl_loader_unused; /* built without OpenCL: opencl_stub.c */
#endif
