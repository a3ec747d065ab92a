/* AMX at run time (amx_tile.h): whether the real tiles can be used here,
 * and the portable bf16 packers the AMX kernels use where the CPU has no
 * AVX512_BF16 (the emulation on AVX2 or Arm machines). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/amx_tile.h"
#include "backends/cpu/cpu_features.h"
#include "backends/cpu/cpu_impl.h"

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#define ARCH_REQ_XCOMP_PERM 0x1023 /* asm/prctl.h, Linux 5.16 */
#define XFEATURE_XTILEDATA 18
#endif

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_ready;
static char g_why[160];

static void check(void) {
    const sdc_cpu_features *f = sdc_cpu_features_get();
    g_why[0] = 0;
    if (!f->amx_tile || !f->amx_bf16) return; /* no AMX: nothing to say */
#ifndef SDC_HAVE_AMX
    snprintf(g_why, sizeof g_why, "the CPU has AMX-BF16 but this build has no AMX kernel (the "
                                  "compiler lacks -mamx-tile -mamx-bf16)");
    return;
#else
#if defined(__linux__) && defined(__x86_64__)
    /* Linux gives a process the 8 KiB tile state only on request; until
     * then a tile instruction raises #NM and the process is killed */
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        snprintf(g_why, sizeof g_why, "the OS refused the AMX tile state (arch_prctl "
                                      "ARCH_REQ_XCOMP_PERM: %s)", strerror(errno));
        return;
    }
#endif
    g_ready = 1;
#endif
}

int sdc_amx_hw_ready(char *why, int why_len) {
    pthread_once(&g_once, check);
    if (why && why_len > 0) snprintf(why, (size_t)why_len, "%s", g_ready ? "" : g_why);
    return g_ready;
}

#ifndef SDC_HAVE_AMX /* no gemm_amx.c: sdc_amx_hw_ready() is 0, these are never run */
static void no_amx(void) {
    fprintf(stderr, "sdc: this build has no AMX kernel\n");
    abort();
}
void sdc_gemm_kernel_bf16_amx(int kc2, const uint32_t *a, int64_t rs_a, const uint32_t *b,
                              float *c, int64_t ldc, int mr, int nr) {
    (void)kc2, (void)a, (void)rs_a, (void)b, (void)c, (void)ldc, (void)mr, (void)nr;
    no_amx();
}
void sdc_amx_attention_hw(sdc_backend *be, float *out, const float *q, int q_stride,
                          const float *k, const float *v, int kv_stride, int Sq, int Sk,
                          int heads, int dh, float scale, int causal) {
    (void)be, (void)out, (void)q, (void)q_stride, (void)k, (void)v, (void)kv_stride, (void)Sq;
    (void)Sk, (void)heads, (void)dh, (void)scale, (void)causal;
    no_amx();
}
void sdc_amx_begin_hw(void) { no_amx(); }
void sdc_amx_end_hw(void) { no_amx(); }
double sdc_amx_tdp_loop(long iters) {
    (void)iters;
    no_amx();
    return 0;
}
#endif

/* ---- portable bf16 packers ----------------------------------------------- */

void sdc_bf16_row_f32_generic(uint32_t *dst, const float *src, int kc) {
    for (int k = 0; k + 1 < kc; k += 2) dst[k / 2] = sdc_bf16_pair(src[k], src[k + 1]);
    if (kc & 1) dst[kc / 2] = sdc_bf16_rne(src[kc - 1]);
}

void sdc_bf16_row_f16_generic(uint32_t *dst, const uint16_t *src, int kc) {
    /* f16 -> f32 is exact; then as f32 */
    for (int k = 0; k + 1 < kc; k += 2)
        dst[k / 2] = sdc_bf16_pair(sdc_f16_to_f32(src[k]), sdc_f16_to_f32(src[k + 1]));
    if (kc & 1) dst[kc / 2] = sdc_bf16_rne(sdc_f16_to_f32(src[kc - 1]));
}

void sdc_bf16_pairs_generic(float *panel, int kc, int w) {
    uint32_t *out = (uint32_t *)(void *)panel;
    for (int k = 0; k < kc; k += 2) {
        const float *r0 = panel + (int64_t)k * w, *r1 = r0 + w;
        uint32_t *o = out + (int64_t)(k / 2) * w;
        /* o[j] overlaps r0[j] only when k = 0: each is read before written */
        for (int j = 0; j < w; j++) o[j] = sdc_bf16_pair(r0[j], k + 1 < kc ? r1[j] : 0.0f);
    }
}

void sdc_bf16_panel_rows_generic(uint32_t *dst, int nr, const sdc_weight *w, int64_t ld, int r0,
                                 int rows, int k0, int kc) {
    const int kc2 = (kc + 1) / 2;
    uint32_t row[SDC_GEMM_KC / 2];
    float f[SDC_GEMM_KC];
    for (int j = 0; j < nr; j++) {
        if (j >= rows) {
            for (int k = 0; k < kc2; k++) dst[(int64_t)k * nr + j] = 0;
            continue;
        }
        const int64_t off = (int64_t)(r0 + j) * ld + k0;
        if (w->dtype == SDC_DT_F16) {
            sdc_bf16_row_f16_generic(row, (const uint16_t *)w->data + off, kc);
        } else if (w->dtype == SDC_DT_F32) {
            sdc_bf16_row_f32_generic(row, (const float *)w->data + off, kc);
        } else {
            for (int k = 0; k < kc; k++) f[k] = sdc_weight_get(w, off + k);
            sdc_bf16_row_f32_generic(row, f, kc);
        }
        for (int k = 0; k < kc2; k++) dst[(int64_t)k * nr + j] = row[k];
    }
}

/* ---- the bf16 mode's kernel set on AMX ---------------------------------- */

void sdc_amx_kernels(sdc_cpu_kernels *k, int emulated) {
    k->mr = SDC_AMX_MR, k->nr = SDC_AMX_NR;
    k->kc = SDC_GEMM_KC, k->mc = 7 * SDC_AMX_MR, k->kalign = 32; /* 224 rows <= MC */
    k->bf16_shared = 1; /* A and B converted once per call, not once per tile */
    /* the f32 entries are not the GEMM's in this mode (gemm.c runs
     * gemm_bf16 only): left NULL so that a stray call fails loudly */
    k->gemm = NULL, k->gemm_pf = NULL, k->inplace_a = 0;
    if (!emulated) {
        k->gemm_bf16 = sdc_gemm_kernel_bf16_amx;
        k->bf16_begin = sdc_amx_begin_hw, k->bf16_end = sdc_amx_end_hw;
    } else {
        k->gemm_bf16 = sdc_gemm_kernel_bf16_amx_emul;
        k->bf16_begin = sdc_amx_begin_emul, k->bf16_end = sdc_amx_end_emul;
    }
    if (!k->bf16_pairs || !k->bf16_row_f32 || !k->bf16_row_f16 || !k->bf16_panel_rows) {
        k->bf16_pairs = sdc_bf16_pairs_generic;
        k->bf16_row_f32 = sdc_bf16_row_f32_generic;
        k->bf16_row_f16 = sdc_bf16_row_f16_generic;
        k->bf16_panel_rows = sdc_bf16_panel_rows_generic;
    }
}
