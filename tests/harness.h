/* A tiny test harness: checks count and report; main returns non-zero if
 * any check failed.  Each test file defines its cases and calls them from
 * main via RUN(case). */
#ifndef SDC_TEST_HARNESS_H
#define SDC_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/weights.h"

extern int t_checks, t_failures;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        t_checks++;                                                                     \
        if (!(cond)) {                                                                  \
            t_failures++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
        }                                                                               \
    } while (0)

#define CHECKF(cond, ...)                                                               \
    do {                                                                                \
        t_checks++;                                                                     \
        if (!(cond)) {                                                                  \
            t_failures++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                               \
            fputc('\n', stderr);                                                        \
        }                                                                               \
    } while (0)

/* Runs one case; prints its result and wall time, flushed (a test killed by
 * ctest's timeout still shows how far it got).  SDC_TEST_ONLY=<sub>[,<sub>...]
 * runs only the cases whose name has one of them (while developing). */
#define RUN(fn)                                                                         \
    do {                                                                                \
        if (!t_selected(#fn)) break;                                                    \
        int before_ = t_failures;                                                       \
        double t0_ = t_seconds();                                                       \
        fn();                                                                           \
        printf("%-48s %-6s %8.2f s\n", #fn, t_failures == before_ ? "ok" : "FAILED",     \
               t_seconds() - t0_);                                                      \
        fflush(stdout);                                                                 \
    } while (0)

/* Whether SDC_TEST_ONLY (unset: every case) selects the case named name. */
int t_selected(const char *name);
/* SDC_TEST_QUICK set and not "0": the suite runs under an emulator (the
 * cross build's ctest), and the slow cases do less of the same work. */
int t_quick(void);

/* The whole file at path, NUL-terminated (its length in *len if len is not
 * NULL), malloc'ed; NULL if it cannot be read. */
char *t_read_file(const char *path, size_t *len);

/* The OpenCL devices (at most cap) into d; with none, prints
 * "  opencl: none (<why>)" and returns 0 (the OpenCL cases are skipped). */
struct sdc_device_info;
int t_opencl_devices(struct sdc_device_info *d, int cap);

/* Monotonic wall clock, seconds. */
double t_seconds(void);

/* Prints "N passed, N failed" (checks) and returns the exit code. */
int t_summary(void);

/* ||a - b||_2 / max(||b||_2, tiny) */
double t_rel_l2(const float *a, const float *b, size_t n);
/* max |a - b| */
double t_max_abs(const float *a, const float *b, size_t n);

/* Deterministic uniform random numbers in [-1, 1) (xorshift). */
void t_rand_seed(uint64_t seed);
float t_randf(void);
void t_rand_fill(float *x, size_t n, float scale);

struct sdc_st_file;
/* The F32 tensor `name` of a reference file with numel elements, or NULL
 * (counted as a failed check naming the tensor). */
const float *t_ref_f32(const struct sdc_st_file *f, const char *name, int64_t numel);

/* $SDC_FIXTURES/name, else tests/fixtures/name by the absolute path of
 * the source tree (static buffer, one at a time) */
const char *t_fixture(const char *name);
/* This run's own temporary folder, made on first use under $SDC_TMP or
 * /tmp and removed with its contents at exit. */
const char *t_tmp_dir(void);
/* t_tmp_dir()/name (static buffer, one at a time) */
const char *t_tmp(const char *name);

/* f rounded to bf16 (nearest even), the 16 bits. */
uint16_t t_bf16_bits(float f);
/* A 1-d weight of n values from src stored as dt (F32, F16, BF16: rounded
 * to nearest even); owns its data: free with t_weight_free. */
sdc_weight t_weight_make(sdc_dtype dt, const float *src, int64_t n);
void t_weight_free(sdc_weight *w);

/* The CPU backend's kernel paths that this build and CPU run: "ref" (the
 * plain C references) first, then generic, avx2, avx512, neon as supported.
 * Every test that checks the fast ops runs each of them, so that a machine
 * exercises all it offers (the first call prints the list). */
#define T_MAX_PATHS 8
struct sdc_backend;
int t_npaths(void);
/* Whether SDC_TEST_SKIP_PATHS (names, space- or comma-separated) leaves the
 * path out: the cross build's suite under an emulator skips "generic", the
 * same portable C that the native suite runs. */
int t_path_skipped(const char *name);
const char *t_path_name(int i);
/* A backend on path i (NULL: a failed check with the message) */
struct sdc_backend *t_path_backend(int i, int n_threads);

#endif
