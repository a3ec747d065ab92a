/* Program building with an on-disk cache of device binaries.
 * Key: SHA-256 of (cache format, sources, options, platform name+version,
 * device name+version, driver version).  File <dir>/<key hex>.bin:
 *   "SDCCLBIN" | u32 format | u32 0 | u64 length | SHA-256 of payload | payload
 * written to <file>.tmp.<pid> then renamed.  A file that fails any check,
 * or whose binary the driver refuses or cannot build, is deleted and the
 * program built from source (and written again). */
#if SDC_HAVE_OPENCL
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/opencl/cl_impl.h"
#include "backends/opencl/cl_sources.h"

#define CACHE_FORMAT 1u
static const char k_magic[8] = {'S', 'D', 'C', 'C', 'L', 'B', 'I', 'N'};

/* ---- SHA-256 (FIPS 180-4) ----------------------------------------------- */

typedef struct sha256 {
    uint32_t h[8];
    uint8_t buf[64];
    uint64_t len; /* bytes so far */
} sha256;

static const uint32_t k_sha[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha_block(sha256 *s, const uint8_t *p) {
    uint32_t w[64], v[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(v, s->h, sizeof v);
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ror(v[4], 6) ^ ror(v[4], 11) ^ ror(v[4], 25);
        uint32_t ch = (v[4] & v[5]) ^ (~v[4] & v[6]);
        uint32_t t1 = v[7] + S1 + ch + k_sha[i] + w[i];
        uint32_t S0 = ror(v[0], 2) ^ ror(v[0], 13) ^ ror(v[0], 22);
        uint32_t mj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
        memmove(v + 1, v, 7 * sizeof *v);
        v[4] += t1;
        v[0] = t1 + S0 + mj;
    }
    for (int i = 0; i < 8; i++) s->h[i] += v[i];
}

static void sha_init(sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
}

static void sha_update(sha256 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    while (n > 0) {
        size_t used = (size_t)(s->len % 64), take = 64 - used < n ? 64 - used : n;
        memcpy(s->buf + used, p, take);
        s->len += take, p += take, n -= take;
        if (s->len % 64 == 0) sha_block(s, s->buf);
    }
}

static void sha_final(sha256 *s, uint8_t out[32]) {
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80, zero = 0, lenb[8];
    sha_update(s, &pad, 1);
    while (s->len % 64 != 56) sha_update(s, &zero, 1);
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha_update(s, lenb, 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
}

/* a field of the key: its length, then its bytes (no two lists collide) */
static void sha_field(sha256 *s, const char *str) {
    uint64_t n = str ? strlen(str) : 0;
    sha_update(s, &n, sizeof n);
    if (n) sha_update(s, str, (size_t)n);
}

/* SHA-256 of data, for tests that write cache files of their own. */
void sdc_cl_test_sha256(const void *data, size_t n, unsigned char out[32]);
void sdc_cl_test_sha256(const void *data, size_t n, unsigned char out[32]) {
    sha256 s;
    sha_init(&s);
    sha_update(&s, data, n);
    sha_final(&s, out);
}

/* ---- the cache file --------------------------------------------------------- */

static const sdc_cl_source *find_source(const char *name) {
    for (int i = 0; i < sdc_cl_nsources; i++)
        if (strcmp(sdc_cl_sources[i].name, name) == 0) return &sdc_cl_sources[i];
    return NULL;
}

/* mkdir -p; 0 on success */
static int make_dirs(const char *path) {
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return -1;
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* The payload of a valid cache file (malloc'ed, *n bytes), else NULL; a
 * file that exists but fails a check is deleted. */
static unsigned char *cache_read(clb *b, const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char hdr[56], sum[32], *data = NULL;
    uint32_t fmt;
    uint64_t len;
    int ok = fread(hdr, 1, sizeof hdr, f) == sizeof hdr && memcmp(hdr, k_magic, 8) == 0;
    if (ok) {
        memcpy(&fmt, hdr + 8, 4);
        memcpy(&len, hdr + 16, 8);
        ok = fmt == CACHE_FORMAT && len > 0 && len < ((uint64_t)1 << 31);
    }
    if (ok) {
        data = malloc((size_t)len);
        ok = data && fread(data, 1, (size_t)len, f) == len && fgetc(f) == EOF;
    }
    if (ok) {
        sha256 s;
        sha_init(&s);
        sha_update(&s, data, (size_t)len);
        sha_final(&s, sum);
        ok = memcmp(sum, hdr + 24, 32) == 0;
    }
    fclose(f);
    if (!ok) {
        if (b->verbose) fprintf(stderr, "sdc opencl: cache file %s is invalid: deleted\n", path);
        free(data);
        remove(path);
        return NULL;
    }
    *n = (size_t)len;
    return data;
}

static void cache_write(clb *b, const char *path, const unsigned char *data, size_t n) {
    char tmp[1100];
    unsigned char hdr[56];
    uint32_t fmt = CACHE_FORMAT, zero = 0;
    uint64_t len = n;
    sha256 s;
    if (make_dirs(b->cache_dir) != 0) return;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    memcpy(hdr, k_magic, 8);
    memcpy(hdr + 8, &fmt, 4);
    memcpy(hdr + 12, &zero, 4);
    memcpy(hdr + 16, &len, 8);
    sha_init(&s);
    sha_update(&s, data, n);
    sha_final(&s, hdr + 24);
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    int ok = fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr && fwrite(data, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return;
    }
    if (b->verbose) fprintf(stderr, "sdc opencl: cached %s (%zu bytes)\n", path, n);
}

/* ---- building ----------------------------------------------------------------- */

/* The build log, trimmed to fit the failure message. */
static void fail_build(clb *b, cl_program p, const char *src, const char *opts, cl_int err) {
    char log[600] = "";
    size_t n = 0;
    if (b->cl->clGetProgramBuildInfo(p, b->dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, &n) !=
        CL_SUCCESS)
        log[0] = 0;
    log[sizeof log - 1] = 0;
    clb_fail_msg(b, "building %s.cl (%s): %s%s%s", src, opts, sdc_cl_error_name(err),
                 log[0] ? ": " : "", log);
}

cl_program clb_program_build(clb *b, const char *src, const char *opts) {
    const sdc_cl_source *common = find_source("common"), *fam = find_source(src);
    if (!common || !fam) {
        clb_fail_msg(b, "no kernel source %s.cl in this build", src);
        return NULL;
    }
    char full[320];
    snprintf(full, sizeof full, "-cl-std=CL1.2 -DACT_HALF=%d %s", b->act_half, opts);
    const sdc_cl_api *cl = b->cl;
    cl_int err;

    char path[1100] = "";
    if (b->cache_dir[0]) {
        sha256 s;
        uint8_t key[32];
        char fmt[16];
        snprintf(fmt, sizeof fmt, "%u", CACHE_FORMAT);
        sha_init(&s);
        sha_field(&s, fmt);
        sha_field(&s, common->text);
        sha_field(&s, fam->text);
        sha_field(&s, full);
        sha_field(&s, b->info.platform);
        sha_field(&s, b->platform_version);
        sha_field(&s, b->info.name);
        sha_field(&s, b->info.version);
        sha_field(&s, b->info.driver);
        sha_final(&s, key);
        int o = snprintf(path, sizeof path, "%s/", b->cache_dir);
        for (int i = 0; i < 32 && o + 3 < (int)sizeof path; i++)
            o += snprintf(path + o, sizeof path - (size_t)o, "%02x", key[i]);
        snprintf(path + o, sizeof path - (size_t)o, ".bin");

        size_t n = 0;
        unsigned char *bin = cache_read(b, path, &n);
        if (bin) {
            const unsigned char *bins[1] = {bin};
            cl_int st = CL_SUCCESS;
            cl_program p = cl->clCreateProgramWithBinary(b->ctx, 1, &b->dev, &n, bins, &st, &err);
            free(bin);
            if (p && err == CL_SUCCESS && st == CL_SUCCESS &&
                cl->clBuildProgram(p, 1, &b->dev, full, NULL, NULL) == CL_SUCCESS) {
                if (b->verbose) fprintf(stderr, "sdc opencl: %s.cl (%s) from the cache\n", src, opts);
                return p;
            }
            if (p) cl->clReleaseProgram(p);
            if (b->verbose)
                fprintf(stderr, "sdc opencl: cached binary %s refused (%s): rebuilding\n", path,
                        sdc_cl_error_name(err != CL_SUCCESS ? err : st));
            remove(path);
        }
    }

    const char *texts[2] = {common->text, fam->text};
    const size_t lens[2] = {common->size, fam->size};
    cl_program p = cl->clCreateProgramWithSource(b->ctx, 2, texts, lens, &err);
    if (!p) {
        clb_fail(b, "clCreateProgramWithSource", err);
        return NULL;
    }
    err = cl->clBuildProgram(p, 1, &b->dev, full, NULL, NULL);
    if (err != CL_SUCCESS) {
        fail_build(b, p, src, full, err);
        cl->clReleaseProgram(p);
        return NULL;
    }
    if (b->verbose) fprintf(stderr, "sdc opencl: built %s.cl (%s)\n", src, full);
    if (path[0]) {
        size_t n = 0;
        if (cl->clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof n, &n, NULL) == CL_SUCCESS &&
            n > 0) {
            unsigned char *bin = malloc(n);
            unsigned char *bins[1] = {bin};
            if (bin && cl->clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) ==
                           CL_SUCCESS)
                cache_write(b, path, bin, n);
            free(bin);
        }
    }
    return p;
}
#else
typedef int sdc_cl_program_unused; /* built without OpenCL: opencl_stub.c */
#endif
