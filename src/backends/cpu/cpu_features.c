#include "backends/cpu/cpu_features.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define SDC_X86_CPUID 1
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#define SDC_ARM_HWCAP 1
#endif

static sdc_cpu_features g_feat;
static char g_str[128];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#ifdef SDC_X86_CPUID
static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (uint64_t)edx << 32 | eax;
}
#endif

static void append(const char *name, int on) {
    if (!on) return;
    size_t len = strlen(g_str);
    snprintf(g_str + len, sizeof g_str - len, "%s%s", len ? " " : "", name);
}

static void detect(void) {
    sdc_cpu_features *f = &g_feat;
    memset(f, 0, sizeof *f);
#ifdef SDC_X86_CPUID
    unsigned a, b, c, d;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (__get_cpuid(0, &a, &b, &c, &d)) /* "Auth" "enti" "cAMD" in ebx, edx, ecx */
        f->amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;
    if (max_leaf >= 1 && __get_cpuid(1, &a, &b, &c, &d)) {
        int osxsave = (c >> 27) & 1;
        uint64_t xcr0 = osxsave ? xgetbv0() : 0;
        int os_avx = (xcr0 & 0x6) == 0x6;             /* XMM | YMM */
        int os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0; /* opmask | ZMM_Hi256 | Hi16_ZMM */
        int os_amx = (xcr0 & 0x60000) == 0x60000;        /* XTILECFG | XTILEDATA */
        f->avx = os_avx && ((c >> 28) & 1);
        f->fma = f->avx && ((c >> 12) & 1);
        f->f16c = f->avx && ((c >> 29) & 1);
        if (max_leaf >= 7) {
            __cpuid_count(7, 0, a, b, c, d);
            unsigned max_sub = a;
            f->avx2 = f->avx && ((b >> 5) & 1);
            f->avx512f = os_avx512 && ((b >> 16) & 1);
            f->avx512dq = f->avx512f && ((b >> 17) & 1);
            f->avx512bw = f->avx512f && ((b >> 30) & 1);
            f->avx512vl = f->avx512f && ((b >> 31) & 1);
            f->amx_bf16 = os_amx && ((d >> 22) & 1);
            f->amx_tile = os_amx && ((d >> 24) & 1);
            if (max_sub >= 1) {
                __cpuid_count(7, 1, a, b, c, d);
                f->avx512_bf16 = f->avx512f && ((a >> 5) & 1);
            }
        }
    }
#ifdef SDC_EMULATE_AVX512 /* a test build: the avx512 kernels run through SIMDe on AVX2 */
    f->avx512f = f->avx512bw = f->avx512vl = f->avx512dq = f->avx2 && f->fma && f->f16c;
    f->avx512_bf16 = 0;
#endif
#endif
#if defined(__ARM_NEON) || defined(__aarch64__)
    f->neon = 1;
#endif
#ifdef SDC_ARM_HWCAP
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    f->neon_fp16 = (hw & HWCAP_ASIMDHP) != 0;
    f->neon_dotprod = (hw & HWCAP_ASIMDDP) != 0;
    f->sve = (hw & HWCAP_SVE) != 0;
    f->neon_bf16 = (hw2 & HWCAP2_BF16) != 0;
#endif
    g_str[0] = 0;
    append("avx2", f->avx2);
    append("fma", f->fma);
    append("f16c", f->f16c);
#ifdef SDC_EMULATE_AVX512
    append("avx512f(emulated)", f->avx512f);
#else
    append("avx512f", f->avx512f);
#endif
    append("avx512_bf16", f->avx512_bf16);
    append("amx_bf16", f->amx_tile && f->amx_bf16);
    append("neon", f->neon);
    append("asimdhp", f->neon_fp16);
    append("asimddp", f->neon_dotprod);
    append("bf16", f->neon_bf16);
    append("sve", f->sve);
    if (!g_str[0]) snprintf(g_str, sizeof g_str, "none");
}

const sdc_cpu_features *sdc_cpu_features_get(void) {
    pthread_once(&g_once, detect);
    return &g_feat;
}

const char *sdc_cpu_features_str(void) {
    pthread_once(&g_once, detect);
    return g_str;
}
