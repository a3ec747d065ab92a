/* The AMX-BF16 micro-kernel (amx_kernel.h) on real tiles, and the peak
 * loop of bench_peak.  Built with -mamx-tile -mamx-bf16 where the compiler
 * has them (CMakeLists.txt: SDC_HAVE_AMX); run only after
 * sdc_amx_hw_ready() (amx.c).
 *
 * GCC's tile intrinsics are asm statements that declare no memory read
 * (_tile_loadd, and _tile_loadconfig only its first 8 bytes): without the
 * compiler barriers below, the C stores that fill a staging copy or the
 * configuration could be moved past, or dropped before, the load that
 * reads them. */
#include <immintrin.h>

#include "backends/cpu/amx_tile.h"
#include "backends/cpu/cpu_impl.h"

#define BARRIER() __asm__ volatile("" ::: "memory")
#define AMX_FN(x) amx_hw_##x
#define T_CFG(p) do { BARRIER(); _tile_loadconfig(p); BARRIER(); } while (0)
#define T_RELEASE() _tile_release()
#define T_LOAD(t, p, s) do { BARRIER(); _tile_loadd(t, p, s); BARRIER(); } while (0)
#define T_STORE(t, p, s) _tile_stored(t, p, s) /* declares its memory write */
#define T_DP(c, a, b) _tile_dpbf16ps(c, a, b)
#include "backends/cpu/amx_kernel.h"
#include "backends/cpu/amx_attention.h"

void sdc_gemm_kernel_bf16_amx(int kc2, const uint32_t *a, int64_t rs_a, const uint32_t *b,
                              float *c, int64_t ldc, int mr, int nr) {
    amx_hw_kernel(kc2, a, rs_a, b, c, ldc, mr, nr);
}
void sdc_amx_attention_hw(sdc_backend *be, float *out, const float *q, int q_stride,
                          const float *k, const float *v, int kv_stride, int Sq, int Sk,
                          int heads, int dh, float scale, int causal) {
    amx_hw_attention(be, out, q, q_stride, k, v, kv_stride, Sq, Sk, heads, dh, scale, causal);
}
void sdc_amx_begin_hw(void) { amx_hw_begin(); }
void sdc_amx_end_hw(void) { amx_hw_end(); }

double sdc_amx_tdp_loop(long iters) {
    amx_hw_begin();
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    _tile_zero(4); _tile_zero(5); _tile_zero(6); _tile_zero(7);
    for (long i = 0; i < iters; i++) { /* four independent accumulators */
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    amx_hw_end();
    return (double)iters * 4 * 16 * 16 * 32 * 2;
}
