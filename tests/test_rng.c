/* sdc_rng against torch: every sample bit for bit.
 * Reference: tests/fixtures/rng_ref.safetensors (scripts/fixtures_lib/schedulers.py):
 *   randn.<seed>.<n>        one torch.randn(n) call after manual_seed(seed)
 *   seq.<seed>.<a>_<b>_...  successive calls on one generator, concatenated
 *   hash.<seed>.<n>         FNV-1a 64 of the bits of one long randn(n) call */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "io/safetensors.h"
#include "sched/rng.h"

static sdc_st_file *g_ref;

/* "randn.<seed>.<n>" or "seq.<seed>.<a>_<b>..." -> seed and the call sizes */
static int parse_name(const char *name, uint64_t *seed, int64_t *sizes, int max_sizes) {
    const char *p = strchr(name, '.');
    if (!p) return 0;
    char *end;
    *seed = strtoull(p + 1, &end, 10);
    if (*end != '.') return 0;
    int k = 0;
    p = end + 1;
    while (*p && k < max_sizes) {
        sizes[k++] = strtoll(p, &end, 10);
        if (end == p) return 0;
        p = *end == '_' ? end + 1 : end;
    }
    return *p ? 0 : k;
}

static void test_against_torch(void) {
    int n_randn = 0, n_seq = 0;
    int64_t n_samples = 0;
    for (size_t i = 0; i < sdc_st_count(g_ref); i++) {
        const sdc_weight *w = sdc_st_at(g_ref, i);
        int is_seq = strncmp(w->name, "seq.", 4) == 0;
        if (!is_seq && strncmp(w->name, "randn.", 6) != 0) continue;
        uint64_t seed;
        int64_t sizes[16], total = 0;
        int k = parse_name(w->name, &seed, sizes, 16);
        CHECKF(k > 0, "bad fixture name %s", w->name);
        for (int j = 0; j < k; j++) total += sizes[j];
        CHECKF(w->dtype == SDC_DT_F32 && w->numel == total, "%s: dtype/size", w->name);
        if (k <= 0 || w->dtype != SDC_DT_F32 || w->numel != total) continue;

        float *out = malloc(sizeof(float) * (size_t)total);
        sdc_rng r;
        sdc_rng_seed(&r, seed);
        int64_t at = 0;
        for (int j = 0; j < k; j++) {
            sdc_rng_randn(&r, out + at, sizes[j]);
            at += sizes[j];
        }
        const float *ref = w->data;
        int64_t first_bad = -1;
        for (int64_t e = 0; e < total && first_bad < 0; e++)
            if (memcmp(&out[e], &ref[e], sizeof(float)) != 0) first_bad = e;
        CHECKF(first_bad < 0, "%s: element %" PRId64 " is %.9g, torch %.9g", w->name, first_bad,
               first_bad < 0 ? 0.0 : out[first_bad], first_bad < 0 ? 0.0 : ref[first_bad]);
        free(out);
        n_samples += total;
        if (is_seq)
            n_seq++;
        else
            n_randn++;
    }
    printf("  %d single calls, %d call sequences, %" PRId64 " samples compared bit for bit\n", n_randn,
           n_seq, n_samples);
    CHECK(n_randn >= 40 && n_seq >= 30);
}

static uint64_t fnv1a64_words(const float *x, int64_t n) {
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (int64_t i = 0; i < n; i++) {
        uint32_t w;
        memcpy(&w, &x[i], sizeof w);
        h = (h ^ w) * UINT64_C(0x100000001b3);
    }
    return h;
}

/* Long streams: rare lanes of the float Box-Muller (about 1 in 10^5) show a
 * wrong rounding step that the stored samples may not reach. */
static void test_long_streams(void) {
    int n_hash = 0;
    for (size_t i = 0; i < sdc_st_count(g_ref); i++) {
        const sdc_weight *w = sdc_st_at(g_ref, i);
        if (strncmp(w->name, "hash.", 5) != 0) continue;
        uint64_t seed;
        int64_t n;
        int ok = parse_name(w->name, &seed, &n, 1) == 1 && n > 0 && n <= (1 << 24) &&
                 w->dtype == SDC_DT_I64 && w->numel == 1;
        CHECKF(ok, "bad fixture entry %s", w->name);
        if (!ok) continue;
        float *x = malloc(sizeof(float) * (size_t)n);
        sdc_rng r;
        sdc_rng_seed(&r, seed);
        sdc_rng_randn(&r, x, n);
        int64_t want;
        memcpy(&want, w->data, sizeof want);
        CHECKF(fnv1a64_words(x, n) == (uint64_t)want, "%s: the stream differs from torch's", w->name);
        free(x);
        n_hash++;
    }
    CHECK(n_hash >= 3);
}

/* The C++ standard fixes std::mt19937's 10000th output for the default seed
 * 5489 at 4123659995; torch's engine is the same generator. */
static void test_mt19937_known_value(void) {
    sdc_rng r;
    sdc_rng_seed(&r, 5489);
    uint32_t v = 0;
    for (int i = 0; i < 10000; i++) v = sdc_rng_u32(&r);
    CHECKF(v == 4123659995u, "got %u", v);
    sdc_rng_seed(&r, 5489);
    uint64_t hi = sdc_rng_u32(&r), lo = sdc_rng_u32(&r);
    sdc_rng_seed(&r, 5489);
    CHECK(sdc_rng_u64(&r) == ((hi << 32) | lo));
}

/* torch keeps the low 32 bits of the seed; re-seeding drops the cached sample. */
static void test_seed_semantics(void) {
    sdc_rng a, b;
    float x[20], y[20];
    sdc_rng_seed(&a, 5);
    sdc_rng_seed(&b, (UINT64_C(1) << 32) + 5);
    sdc_rng_randn(&a, x, 20);
    sdc_rng_randn(&b, y, 20);
    CHECK(memcmp(x, y, sizeof x) == 0);

    sdc_rng_seed(&a, 7);
    sdc_rng_randn(&a, x, 1); /* leaves a cached second sample */
    CHECK(a.has_next_double);
    sdc_rng_seed(&a, 7);
    CHECK(!a.has_next_double);
    sdc_rng_randn(&a, y, 1);
    CHECK(memcmp(x, y, sizeof(float)) == 0);

    sdc_rng_randn(&a, x, 0); /* no samples, no change */
    CHECK(a.has_next_double);
}

static void test_distribution(void) {
    enum { N = 1 << 16 };
    float *x = malloc(sizeof(float) * N);
    sdc_rng r;
    sdc_rng_seed(&r, 2024);
    sdc_rng_randn(&r, x, N);
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) m += x[i];
    m /= N;
    for (int i = 0; i < N; i++) v += (x[i] - m) * (x[i] - m);
    v /= N;
    CHECKF(m > -0.02 && m < 0.02 && v > 0.97 && v < 1.03, "mean %g var %g", m, v);
    free(x);
}

int main(void) {
    sdc_status st = sdc_st_open(t_fixture("rng_ref.safetensors"), &g_ref);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st == SDC_OK) RUN(test_against_torch);
    if (st == SDC_OK) RUN(test_long_streams);
    RUN(test_mt19937_known_value);
    RUN(test_seed_semantics);
    RUN(test_distribution);
    sdc_st_close(g_ref);
    return t_summary();
}
