#define _XOPEN_SOURCE 700 /* nftw */
#include "harness.h"

#include <ftw.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/cpu/cpu_impl.h"
#include "io/safetensors.h"

int t_checks, t_failures;

int t_selected(const char *name) {
    const char *only = getenv("SDC_TEST_ONLY");
    if (!only || !only[0]) return 1;
    for (const char *p = only; *p;) {
        size_t n = strcspn(p, ",");
        for (const char *q = name; n > 0 && *q; q++)
            if (strncmp(q, p, n) == 0) return 1;
        p += n + (p[n] == ',');
    }
    return 0;
}

int t_quick(void) {
    const char *q = getenv("SDC_TEST_QUICK");
    return q && q[0] && strcmp(q, "0") != 0;
}

char *t_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap + 1);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *p = realloc(buf, 2 * cap + 1);
            if (!p) free(buf);
            buf = p;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    if (len) *len = n;
    return buf;
}

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

/* The fixtures' folder: $SDC_FIXTURES, else the absolute path the build
 * compiled in, so that a test binary runs from any working directory. */
const char *t_fixture(const char *name) {
    static char buf[4096];
    const char *dir = getenv("SDC_FIXTURES");
    snprintf(buf, sizeof buf, "%s/%s", dir && dir[0] ? dir : SDC_FIXTURES_DIR, name);
    return buf;
}

static char g_tmp_dir[1024];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    remove(path); /* best effort: a file that will not go is left, the walk goes on */
    return 0;
}

static void remove_tmp_dir(void) {
    if (g_tmp_dir[0] && !getenv("SDC_TEST_KEEP_TMP"))
        nftw(g_tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A folder of this run's own under $SDC_TMP (or /tmp), made on first use
 * and removed at exit (SDC_TEST_KEEP_TMP=1 keeps it): two suites side by
 * side never share a path. */
const char *t_tmp_dir(void) {
    if (!g_tmp_dir[0]) {
        const char *dir = getenv("SDC_TMP");
        snprintf(g_tmp_dir, sizeof g_tmp_dir, "%s/sdc-test-%ld-XXXXXX", dir && dir[0] ? dir : "/tmp",
                 (long)getpid());
        if (!mkdtemp(g_tmp_dir)) {
            perror(g_tmp_dir);
            abort();
        }
        atexit(remove_tmp_dir);
    }
    return g_tmp_dir;
}

const char *t_tmp(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", t_tmp_dir(), name);
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

/* ---- the CPU paths ---------------------------------------------------------- */

static sdc_cpu_isa g_paths[SDC_ISA_NEON + 1];
static int g_npaths = -1;

int t_path_skipped(const char *name) {
    const char *skip = getenv("SDC_TEST_SKIP_PATHS");
    const size_t n = strlen(name);
    for (const char *p = skip; p && *p;) {
        size_t len = strcspn(p, " ,");
        if (len == n && strncmp(p, name, n) == 0) return 1;
        p += len + (p[len] != 0);
    }
    return 0;
}

int t_npaths(void) {
    if (g_npaths < 0) {
        g_npaths = 0;
        for (int i = SDC_ISA_REF; i <= SDC_ISA_NEON; i++)
            if (sdc_cpu_isa_supported((sdc_cpu_isa)i) &&
                !t_path_skipped(sdc_cpu_isa_name((sdc_cpu_isa)i)))
                g_paths[g_npaths++] = (sdc_cpu_isa)i;
        printf("  cpu paths:");
        for (int i = 0; i < g_npaths; i++) printf(" %s", t_path_name(i));
        if (getenv("SDC_TEST_SKIP_PATHS"))
            printf(" (skipped: %s)", getenv("SDC_TEST_SKIP_PATHS"));
        printf("\n");
    }
    return g_npaths;
}

const char *t_path_name(int i) { return sdc_cpu_isa_name(g_paths[i]); }

sdc_backend *t_path_backend(int i, int n_threads) {
    sdc_backend *be = sdc_backend_cpu_create_isa(n_threads, g_paths[i]);
    CHECKF(be != NULL, "cpu path %s: %s", t_path_name(i), sdc_last_error());
    return be;
}

int t_opencl_devices(sdc_device_info *d, int cap) {
    int nd = 0;
    if (sdc_devices(d, cap, &nd) != SDC_OK || nd == 0) {
        printf("  opencl: none (%s)\n", nd == 0 && !sdc_last_error()[0] ? "no devices"
                                                                        : sdc_last_error());
        return 0;
    }
    return nd < cap ? nd : cap;
}
