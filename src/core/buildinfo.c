/* sdc_build_info(): how this build was made and what the CPU offers. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "backends/cpu/cpu_features.h"
#include "sdc.h"

#ifndef SDC_BUILD_TYPE
#define SDC_BUILD_TYPE "unknown"
#endif
#ifndef SDC_BUILD_CC
#define SDC_BUILD_CC "unknown compiler"
#endif
#ifndef SDC_BUILD_SANITIZE
#define SDC_BUILD_SANITIZE 0
#endif

/* the per-ISA kernel files compiled into this build */
#if defined(SDC_HAVE_X86)
#define SDC_BUILD_ISAS "avx2 avx512"
#elif defined(__aarch64__)
#define SDC_BUILD_ISAS "neon"
#else
#define SDC_BUILD_ISAS "generic"
#endif

static char g_info[512];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void make_info(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(g_info, sizeof g_info,
             "sdc %s (%s, %s, sanitizers %s) kernels: ref generic %s; cpu: %s; threads: %ld",
             SDC_VERSION, SDC_BUILD_TYPE, SDC_BUILD_CC, SDC_BUILD_SANITIZE ? "on" : "off",
             SDC_BUILD_ISAS, sdc_cpu_features_str(), n > 0 ? n : 1);
}

const char *sdc_build_info(void) {
    pthread_once(&g_once, make_info);
    return g_info;
}
