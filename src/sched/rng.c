/* PyTorch's CPU generator (CPUGeneratorImpl) and its torch.randn kernel.
 *
 * Engine: MT19937 seeded with the low 32 bits of the seed (at::mt19937), so
 * seeds 5 and 2^32+5 give the same stream, as in torch.
 * random() = one 32-bit draw; random64() = (draw1 << 32) | draw2.
 *
 * randn of n float32 elements (ATen normal_kernel):
 *   n >= 16: u[i] = (random() & 0xFFFFFF) * 2^-24 for all i, then per block
 *            of 16, for j < 8 (Box-Muller, AVX2 NormalFill16):
 *              r     = sqrt(-2 * log(1 - u[j]))
 *              theta = (float)(2*pi) * u[j+8]
 *              out[j] = r * cos(theta),  out[j+8] = r * sin(theta)
 *            with float log/sincos as below.  If n % 16 != 0, 16 fresh
 *            uniforms fill out[n-16 .. n-1] and that block is redone.
 *   n < 16:  one double Box-Muller per element (at::normal_distribution<double>):
 *              u1, u2 = (random64() & (2^53-1)) * 2^-53
 *              r = sqrt(-2 * log1p(-u2)),  theta = 2*pi*u1
 *              returns r*cos(theta) and caches r*sin(theta) for the next
 *            call; the cache lives in the generator and survives between
 *            randn calls until the next seed.
 * Checked bit for bit against torch 2.15 on x86-64 with AVX2/AVX-512 (the
 * torch build for CPUs without AVX2 uses libm logf/cosf/sinf instead). */
#include "sched/rng.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define MT_N 624
#define MT_M 397

static const double PI_D = 3.141592653589793238462643383279502884;

void sdc_rng_seed(sdc_rng *r, uint64_t seed) {
    r->mt[0] = (uint32_t)(seed & 0xffffffffu);
    for (int j = 1; j < MT_N; j++)
        r->mt[j] = 1812433253u * (r->mt[j - 1] ^ (r->mt[j - 1] >> 30)) + (uint32_t)j;
    r->index = MT_N; /* regenerate on the first draw */
    r->has_next_double = 0;
    r->next_double = 0.0;
}

static void mt_twist(sdc_rng *r) {
    uint32_t *s = r->mt;
    for (int i = 0; i < MT_N; i++) {
        uint32_t y = (s[i] & 0x80000000u) | (s[(i + 1) % MT_N] & 0x7fffffffu);
        s[i] = s[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    r->index = 0;
}

uint32_t sdc_rng_u32(sdc_rng *r) {
    if (r->index >= MT_N) mt_twist(r);
    uint32_t y = r->mt[r->index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint64_t sdc_rng_u64(sdc_rng *r) {
    uint64_t hi = sdc_rng_u32(r);
    uint64_t lo = sdc_rng_u32(r);
    return (hi << 32) | lo;
}

/* [0, 1) with 24 random bits (at::uniform_real_distribution<float>) */
static float uniform_f32(sdc_rng *r) {
    return (float)(sdc_rng_u32(r) & 0xffffffu) * (1.0f / 16777216.0f);
}

/* [0, 1) with 53 random bits (at::uniform_real_distribution<double>) */
static double uniform_f64(sdc_rng *r) {
    return (double)(sdc_rng_u64(r) & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* ---- float Box-Muller, as ATen's AVX2 NormalFill16 computes it ----------
 * The normal kernel is dispatched to the AVX2 build even on AVX-512 CPUs
 * (ATen registers AVX-512 only for kernels that opt in), so torch uses the
 * Cephes-style log and sincos of avx_mathfun (Pommier), lane by lane.  These
 * scalar versions perform the same float operations in the same order, and
 * fuse a multiply and an add exactly where GCC fused them in torch's AVX2
 * build (read from libtorch_cpu.so's NormalFill16<float> disassembly), so
 * they give the same bits. */

#define F(c) ((float)(c)) /* the vector constants are double literals cast to float */

static float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* ln(x) for x > 0: x = m * 2^e with m in [sqrt(1/2), sqrt(2)),
 * ln(x) = (m-1) + P(m-1)*(m-1)^3 - (m-1)^2/2 + e*ln2, ln2 split in q2 + q1. */
static float cephes_logf(float x) {
    if (!(x > 0.0f)) return NAN;
    if (x < bits_to_f32(0x00800000u)) x = bits_to_f32(0x00800000u); /* no denormals */
    uint32_t u = f32_to_bits(x);
    float e = (float)((int32_t)(u >> 23) - 0x7f);
    e = e + 1.0f;
    x = bits_to_f32((u & ~0x7f800000u) | f32_to_bits(0.5f)); /* [0.5, 1) */
    float tmp = 0.0f;
    if (x < F(0.707106781186547524)) { /* m = 2x: e -= 1, x = (x - 1) + x */
        tmp = x;
        e = e - 1.0f;
    }
    x = x - 1.0f;
    x = x + tmp;
    float z = x * x;
    float y = F(7.0376836292E-2);
    y = fmaf(y, x, F(-1.1514610310E-1));
    y = fmaf(y, x, F(1.1676998740E-1));
    y = fmaf(y, x, F(-1.2420140846E-1));
    y = fmaf(y, x, F(1.4249322787E-1));
    y = fmaf(y, x, F(-1.6668057665E-1));
    y = fmaf(y, x, F(2.0000714765E-1));
    y = fmaf(y, x, F(-2.4999993993E-1));
    y = fmaf(y, x, F(3.3333331174E-1));
    y = y * x;
    y = fmaf(y, z, e * F(-2.12194440e-4));
    y = fmaf(-z, 0.5f, y);
    x = x + y;
    x = fmaf(e, F(0.693359375), x);
    return x;
}

/* sin and cos of x >= 0 (|x| < 8192): reduce by multiples of pi/4 (j even),
 * x - j*pi/4 with pi/4 split in DP1 + DP2 + DP3, then the Cephes polynomials
 * on [-pi/4, pi/4]; j selects polynomial and signs. */
static void cephes_sincosf(float x, float *s, float *c) {
    uint32_t sign_sin = f32_to_bits(x) & 0x80000000u;
    x = fabsf(x);
    float y = x * F(1.27323954473516);
    int32_t j = (int32_t)y; /* truncation, as cvttps */
    j = (j + 1) & ~1;
    y = (float)j;
    uint32_t swap_sin = (uint32_t)(j & 4) << 29;
    int poly_sin_first = (j & 2) == 0; /* sin from the sine polynomial */
    x = fmaf(y, F(-0.78515625), x);
    x = fmaf(y, F(-2.4187564849853515625e-4), x);
    x = fmaf(y, F(-3.77489497744594108e-8), x);
    uint32_t sign_cos = (uint32_t)(~(j - 2) & 4) << 29;
    sign_sin ^= swap_sin;

    float z = x * x;
    float yc = fmaf(F(2.443315711809948E-005), z, F(-1.388731625493765E-003));
    yc = fmaf(yc, z, F(4.166664568298827E-002));
    yc = z * yc;
    yc = fmaf(z, yc, -(z * 0.5f));
    yc = yc + 1.0f;

    float ys = fmaf(F(-1.9515295891E-4), z, F(8.3321608736E-3));
    ys = fmaf(ys, z, F(-1.6666654611E-1));
    ys = z * ys;
    ys = fmaf(x, ys, x);

    /* blend as the vector code does: masked parts are +0 and are added */
    float ysin2 = poly_sin_first ? ys : 0.0f;
    float ysin1 = poly_sin_first ? 0.0f : yc;
    float vs = ysin1 + ysin2;
    float vc = (yc - ysin1) + (ys - ysin2);
    *s = bits_to_f32(f32_to_bits(vs) ^ sign_sin);
    *c = bits_to_f32(f32_to_bits(vc) ^ sign_cos);
}

/* Box-Muller in place on 16 uniforms: pairs (j, j+8). */
static void normal_fill_16(float *d) {
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j]; /* (0, 1] */
        float u2 = d[j + 8];
        float radius = sqrtf(-2.0f * cephes_logf(u1));
        float theta = F(2.0 * PI_D) * u2;
        float sn, cs;
        cephes_sincosf(theta, &sn, &cs);
        /* torch writes fma(x, std, mean) with std 1, mean 0: -0 becomes +0 */
        d[j] = radius * cs + 0.0f;
        d[j + 8] = radius * sn + 0.0f;
    }
}

static double normal_f64(sdc_rng *r) {
    if (r->has_next_double) {
        r->has_next_double = 0;
        return r->next_double + 0.0;
    }
    double u1 = uniform_f64(r);
    double u2 = uniform_f64(r);
    double radius = sqrt(-2.0 * log1p(-u2));
    double theta = 2.0 * PI_D * u1;
    r->next_double = radius * sin(theta);
    r->has_next_double = 1;
    return radius * cos(theta) + 0.0; /* x * std + mean, std 1, mean 0 */
}

void sdc_rng_randn(sdc_rng *r, float *out, int64_t n) {
    if (n <= 0) return;
    if (n < 16) {
        for (int64_t i = 0; i < n; i++) out[i] = (float)normal_f64(r);
        return;
    }
    for (int64_t i = 0; i < n; i++) out[i] = uniform_f32(r);
    for (int64_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out + i);
    if (n % 16 != 0) {
        float *tail = out + n - 16;
        for (int i = 0; i < 16; i++) tail[i] = uniform_f32(r);
        normal_fill_16(tail);
    }
}
