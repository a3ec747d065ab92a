#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/safetensors.h"

int t_checks, t_failures;

double t_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int t_summary(void) {
    printf("%d passed, %d failed\n", t_checks - t_failures, t_failures);
    return t_failures ? 1 : 0;
}

double t_rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (den < 1e-30) den = 1e-30;
    return sqrt(num / den);
}

double t_max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

static uint64_t g_state = 0x9e3779b97f4a7c15ull;

void t_rand_seed(uint64_t seed) { g_state = seed ? seed : 0x9e3779b97f4a7c15ull; }

float t_randf(void) {
    g_state ^= g_state << 13;
    g_state ^= g_state >> 7;
    g_state ^= g_state << 17;
    return (float)((g_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

void t_rand_fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = t_randf() * scale;
}

const char *t_fixture(const char *name) {
    static char buf[4096];
    const char *dir = getenv("SDC_FIXTURES");
    snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "tests/fixtures", name);
    return buf;
}

const char *t_tmp(const char *name) {
    static char buf[4096];
    const char *dir = getenv("SDC_TMP");
    snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "/tmp", name);
    return buf;
}

const float *t_ref_f32(const sdc_st_file *f, const char *name, int64_t numel) {
    const sdc_weight *w = f ? sdc_st_find(f, name) : NULL;
    int ok = w && w->dtype == SDC_DT_F32 && w->numel == numel;
    CHECKF(ok, "reference tensor %s (F32, %lld elements)", name, (long long)numel);
    return ok ? w->data : NULL;
}

uint16_t t_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

sdc_weight t_weight_make(sdc_dtype dt, const float *src, int64_t n) {
    sdc_weight w;
    memset(&w, 0, sizeof w);
    w.name = "test";
    w.dtype = dt;
    w.ndim = 1;
    w.shape[0] = n;
    w.numel = n;
    w.nbytes = (size_t)n * sdc_dtype_size(dt);
    void *d = malloc(w.nbytes ? w.nbytes : 1);
    if (!d) abort();
    for (int64_t i = 0; i < n; i++) {
        if (dt == SDC_DT_F32) ((float *)d)[i] = src[i];
        else if (dt == SDC_DT_F16) ((uint16_t *)d)[i] = sdc_f32_to_f16(src[i]);
        else ((uint16_t *)d)[i] = t_bf16_bits(src[i]);
    }
    w.data = d;
    return w;
}

void t_weight_free(sdc_weight *w) { free((void *)w->data); }
