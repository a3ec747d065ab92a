/* What the CPU (and the OS) offer, detected once at run time. */
#ifndef SDC_CPU_FEATURES_H
#define SDC_CPU_FEATURES_H

typedef struct sdc_cpu_features {
    /* x86: CPUID bits, each already masked by the OS state check (XGETBV):
     * the AVX family counts only when the OS saves YMM state, the AVX-512
     * family only when it also saves opmask and ZMM state. */
    int avx, avx2, fma, f16c;
    int avx512f, avx512bw, avx512vl, avx512dq, avx512_bf16;
    /* AMX: CPUID's amx_tile and amx_bf16, counted only when XCR0 enables
     * the tile state (XTILECFG and XTILEDATA); Linux still has to grant it
     * to the process (amx.c) */
    int amx_tile, amx_bf16;
    int amd; /* CPUID's vendor is AuthenticAMD */
    /* Arm: NEON (baseline on AArch64); from AT_HWCAP/AT_HWCAP2 on AArch64
     * Linux: fp16 arithmetic (asimdhp), dot products (asimddp), bf16, SVE */
    int neon, neon_fp16, neon_dotprod, neon_bf16, sve;
} sdc_cpu_features;

/* The features of this machine (computed on first call; thread-safe). */
const sdc_cpu_features *sdc_cpu_features_get(void);

/* "avx2 fma f16c avx512f avx512_bf16" style list of what was found, or
 * "none" (static string). */
const char *sdc_cpu_features_str(void);

#endif
