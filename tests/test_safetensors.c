/* safetensors reader: hostile files get the right status and a message that
 * names the problem; valid files read back exactly. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "harness.h"
#include "io/safetensors.h"

/* Writes raw bytes to t_tmp(name); returns the path (static buffer). */
static const char *write_raw(const char *name, const void *bytes, size_t n) {
    const char *path = t_tmp(name);
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    if (n) fwrite(bytes, 1, n, fp);
    fclose(fp);
    return path;
}

/* Writes u64 LE header length, the header, `pad` spaces, then data. */
static const char *write_st_pad(const char *name, const char *header, size_t pad, const void *data,
                                size_t ndata) {
    size_t hl = strlen(header) + pad, n = 8 + hl + ndata;
    unsigned char *buf = malloc(n);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, strlen(header));
    memset(buf + 8 + strlen(header), ' ', pad);
    if (ndata) memcpy(buf + 8 + hl, data, ndata);
    const char *path = write_raw(name, buf, n);
    free(buf);
    return path;
}

/* Same with the header padded to a multiple of 8, as real writers do. */
static const char *write_st(const char *name, const char *header, const void *data, size_t ndata) {
    size_t pad = (8 - strlen(header) % 8) % 8;
    return write_st_pad(name, header, pad, data, ndata);
}

/* Opens path expecting failure `want` with a message containing `needle`
 * and the file name. */
static void expect_fail(const char *path, sdc_status want, const char *needle) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    sdc_st_file *f = (sdc_st_file *)1;
    sdc_clear_error();
    sdc_status st = sdc_st_open(p, &f);
    const char *msg = sdc_last_error();
    CHECKF(st == want, "%s: status %s, want %s (%s)", p, sdc_status_str(st), sdc_status_str(want),
           msg);
    CHECK(f == NULL);
    CHECKF(strstr(msg, needle) != NULL, "%s: message '%s' lacks '%s'", p, msg, needle);
    CHECKF(strstr(msg, p) != NULL, "message '%s' lacks the path", msg);
    if (st == SDC_OK) sdc_st_close(f);
}

static const float k_data9[9] = {0};

static void test_missing_empty_garbage(void) {
    expect_fail(t_tmp("does-not-exist.safetensors"), SDC_ERR_IO, "cannot open");
    expect_fail(write_raw("empty.safetensors", "", 0), SDC_ERR_FORMAT, "too small");
    expect_fail(write_raw("seven.safetensors", "1234567", 7), SDC_ERR_FORMAT, "too small");
    const char *garbage = "this is not a safetensors file at all, just text";
    expect_fail(write_raw("garbage.safetensors", garbage, strlen(garbage)), SDC_ERR_FORMAT,
                "header length");
    expect_fail(t_tmp_dir(), SDC_ERR_IO, "not a regular file");
}

static void test_header_length(void) {
    /* a valid file cut in the middle of its header */
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    unsigned char buf[64] = {0};
    buf[0] = (unsigned char)strlen(h);
    memcpy(buf + 8, h, 20);
    expect_fail(write_raw("trunc.safetensors", buf, 28), SDC_ERR_FORMAT, "exceeds the file size");
    /* length larger than the file */
    memset(buf, 0, sizeof buf);
    buf[0] = 0xe8, buf[1] = 0x03; /* 1000 */
    memcpy(buf + 8, "{}", 2);
    expect_fail(write_raw("long.safetensors", buf, 10), SDC_ERR_FORMAT, "exceeds the file size");
    /* 2^63 */
    memset(buf, 0, sizeof buf);
    buf[7] = 0x80;
    memcpy(buf + 8, "{}", 2);
    expect_fail(write_raw("huge.safetensors", buf, 10), SDC_ERR_FORMAT, "exceeds the limit");
    /* all ones */
    memset(buf, 0xff, 8);
    expect_fail(write_raw("ones.safetensors", buf, 10), SDC_ERR_FORMAT, "exceeds the limit");
    /* zero */
    memset(buf, 0, 8);
    expect_fail(write_raw("zero.safetensors", buf, 10), SDC_ERR_FORMAT, "too short");
}

static void test_header_json(void) {
    expect_fail(write_st("notjson.safetensors", "{abc", NULL, 0), SDC_ERR_FORMAT, "not valid JSON");
    expect_fail(write_st("binary.safetensors", "\x01\x02\x03\xff", NULL, 0), SDC_ERR_FORMAT,
                "not valid JSON");
    expect_fail(write_st("trailing.safetensors", "{} xyz", NULL, 0), SDC_ERR_FORMAT, "trailing");
    expect_fail(write_st("array.safetensors", "[1, 2]", NULL, 0), SDC_ERR_FORMAT,
                "not a JSON object");
    expect_fail(write_st("string.safetensors", "\"abc\"", NULL, 0), SDC_ERR_FORMAT,
                "not a JSON object");
    expect_fail(write_st("entry.safetensors", "{\"a\": 5}", NULL, 0), SDC_ERR_FORMAT,
                "tensor 'a': entry is not a JSON object");
    expect_fail(write_st("nodtype.safetensors", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}",
                         k_data9, 4),
                SDC_ERR_FORMAT, "tensor 'a': missing or non-string \"dtype\"");
    expect_fail(write_st("meta.safetensors", "{\"__metadata__\":{\"k\":3}}", NULL, 0),
                SDC_ERR_FORMAT, "\"__metadata__\" entry 'k' is not a string");
    expect_fail(write_st("meta2.safetensors", "{\"__metadata__\":[]}", NULL, 0), SDC_ERR_FORMAT,
                "\"__metadata__\" is not a JSON object");
}

static void test_dtype_shape(void) {
    expect_fail(write_st("dtype.safetensors",
                         "{\"a.weight\":{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                         k_data9, 4),
                SDC_ERR_FORMAT, "tensor 'a.weight': unknown dtype \"Q4_K\"");
    expect_fail(write_st("neg.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,3],\"data_offsets\":[0,4]}}",
                         k_data9, 4),
                SDC_ERR_FORMAT, "tensor 'a': shape dim 0 is not a non-negative integer");
    expect_fail(write_st("frac.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[3,1.5],\"data_offsets\":[0,4]}}",
                         k_data9, 4),
                SDC_ERR_FORMAT, "tensor 'a': shape dim 1 is not a non-negative integer");
    expect_fail(write_st("strdim.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"3\"],\"data_offsets\":[0,4]}}",
                         k_data9, 4),
                SDC_ERR_FORMAT, "shape dim 0 is not a non-negative integer");
    expect_fail(write_st("infdim.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e400],\"data_offsets\":[0,4]}}",
                         k_data9, 4),
                SDC_ERR_FORMAT, "shape dim 0 is not a non-negative integer");
    expect_fail(write_st("noshape.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,4]}}", k_data9,
                         4),
                SDC_ERR_FORMAT, "non-array \"shape\"");
    expect_fail(write_st("ndim.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                         "\"data_offsets\":[0,4]}}",
                         k_data9, 4),
                SDC_ERR_FORMAT, "shape has 9 dims (at most 8)");
    /* product overflows int64 / size_t */
    expect_fail(write_st("ovf1.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                         "\"data_offsets\":[0,4]}}",
                         k_data9, 4),
                SDC_ERR_FORMAT, "shape [4294967296, 4294967296] of F32 is too large");
    expect_fail(write_st("ovf2.safetensors",
                         "{\"a\":{\"dtype\":\"F64\",\"shape\":[1125899906842624,1024],"
                         "\"data_offsets\":[0,4]}}",
                         k_data9, 4),
                SDC_ERR_FORMAT, "too large");
    expect_fail(write_st("ovf3.safetensors",
                         "{\"a\":{\"dtype\":\"U8\",\"shape\":[9007199254740992,9007199254740992,"
                         "9007199254740992],\"data_offsets\":[0,4]}}",
                         k_data9, 4),
                SDC_ERR_FORMAT, "too large");
    /* over 2^53: not exactly representable, rejected as a dim */
    expect_fail(write_st("big.safetensors",
                         "{\"a\":{\"dtype\":\"U8\",\"shape\":[18014398509481984],"
                         "\"data_offsets\":[0,4]}}",
                         k_data9, 4),
                SDC_ERR_FORMAT, "shape dim 0");
}

static void test_offsets(void) {
    expect_fail(write_st("beyond.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[250],\"data_offsets\":[0,1000]}}",
                         k_data9, 36),
                SDC_ERR_FORMAT,
                "tensor 'a': data_offsets [0, 1000] lie outside the data (36 bytes)");
    expect_fail(write_st("reversed.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}",
                         k_data9, 36),
                SDC_ERR_FORMAT, "data_offsets [8, 4]");
    const char *p = write_st("x.safetensors",
                             "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[3,3],"
                             "\"data_offsets\":[0,10]}}",
                             k_data9, 36);
    char want[4200];
    snprintf(want, sizeof want,
             "%s: tensor 'a.weight': data_offsets [0, 10] do not match shape [3, 3] of F32 (36 "
             "bytes)",
             p);
    expect_fail(p, SDC_ERR_FORMAT, want);
    expect_fail(write_st("offs1.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", k_data9,
                         36),
                SDC_ERR_FORMAT, "\"data_offsets\" must be [begin, end]");
    expect_fail(write_st("offs2.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
                         k_data9, 36),
                SDC_ERR_FORMAT, "\"data_offsets\" must be [begin, end]");
    expect_fail(
        write_st("offs3.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", k_data9, 36),
        SDC_ERR_FORMAT, "\"data_offsets\" must be [begin, end]");
    expect_fail(write_st("overlap.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                         k_data9, 36),
                SDC_ERR_FORMAT, "tensors 'a' and 'b' overlap");
    expect_fail(write_st("overlap2.safetensors",
                         "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
                         "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[28,32]},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}",
                         k_data9, 36),
                SDC_ERR_FORMAT, "overlap");
    expect_fail(write_st("dup.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                         k_data9, 36),
                SDC_ERR_FORMAT, "tensor 'a' appears twice");
}

static void put_u16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }

/* A valid file with F32, F16, BF16, I64 and a 0-d tensor, read back. */
static void test_valid(size_t pad, const char *name) {
    /* data: f32 [2,3] at 0..24, f16 [3] at 24..30, bf16 [2] at 30..34,
     * i64 [2] at 34..50, 0-d f32 at 50..54, empty [0,5] at 54..54 */
    unsigned char data[54];
    const float f32v[6] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, -65504.0f};
    memcpy(data, f32v, 24);
    put_u16(data + 24, 0x3c00); /* 1.0 */
    put_u16(data + 26, 0xc000); /* -2.0 */
    put_u16(data + 28, 0x3555); /* 0.333251953125 */
    put_u16(data + 30, 0x3f80); /* bf16 1.0 */
    put_u16(data + 32, 0xc0a0); /* bf16 -5.0 */
    const int64_t i64v[2] = {-7, 1234567890123};
    memcpy(data + 34, i64v, 16);
    const float scalar = 42.5f;
    memcpy(data + 50, &scalar, 4);
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"w32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                    "\"w16\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[24,30]},"
                    "\"wbf\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[30,34]},"
                    "\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[34,50]},"
                    "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[50,54]},"
                    "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[54,54]}}";
    const char *path = write_st_pad(name, h, pad, data, sizeof data);
    sdc_st_file *f = NULL;
    sdc_status st = sdc_st_open(path, &f);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st != SDC_OK) return;
    CHECK(strcmp(sdc_st_path(f), path) == 0);
    CHECK(sdc_st_count(f) == 6);
    CHECK(strcmp(sdc_st_at(f, 0)->name, "w32") == 0);
    CHECK(strcmp(sdc_st_at(f, 5)->name, "empty") == 0);
    CHECK(sdc_st_at(f, 6) == NULL);
    CHECK(sdc_st_find(f, "nope") == NULL);
    CHECK(sdc_st_find(f, "__metadata__") == NULL);
    CHECK(sdc_st_metadata(f, "format") && strcmp(sdc_st_metadata(f, "format"), "pt") == 0);
    CHECK(sdc_st_metadata(f, "other") == NULL);

    const sdc_weight *w = sdc_st_find(f, "w32");
    CHECK(w && w->dtype == SDC_DT_F32 && w->ndim == 2 && w->shape[0] == 2 && w->shape[1] == 3 &&
          w->numel == 6 && w->nbytes == 24);
    if (w) {
        CHECK((uintptr_t)w->data % 4 == 0);
        for (int i = 0; i < 6; i++) CHECK(sdc_weight_get(w, i) == f32v[i]);
        CHECK(((const float *)w->data)[1] == -2.5f);
    }
    w = sdc_st_find(f, "w16");
    CHECK(w && w->dtype == SDC_DT_F16 && w->numel == 3 && w->nbytes == 6);
    if (w) {
        CHECK((uintptr_t)w->data % 2 == 0);
        CHECK(sdc_weight_get(w, 0) == 1.0f);
        CHECK(sdc_weight_get(w, 1) == -2.0f);
        CHECK(sdc_weight_get(w, 2) == 0.333251953125f);
    }
    w = sdc_st_find(f, "wbf");
    CHECK(w && w->dtype == SDC_DT_BF16 && w->numel == 2);
    if (w) {
        CHECK(sdc_weight_get(w, 0) == 1.0f);
        CHECK(sdc_weight_get(w, 1) == -5.0f);
    }
    w = sdc_st_find(f, "ids");
    CHECK(w && w->dtype == SDC_DT_I64 && w->numel == 2 && w->nbytes == 16);
    if (w) {
        CHECK((uintptr_t)w->data % 8 == 0);
        int64_t v[2];
        memcpy(v, w->data, 16);
        CHECK(v[0] == -7 && v[1] == 1234567890123);
    }
    w = sdc_st_find(f, "scalar");
    CHECK(w && w->ndim == 0 && w->numel == 1 && w->nbytes == 4);
    if (w) CHECK(sdc_weight_get(w, 0) == 42.5f);
    w = sdc_st_find(f, "empty");
    CHECK(w && w->ndim == 2 && w->numel == 0 && w->nbytes == 0);
    sdc_st_close(f);
}

static void test_valid_aligned(void) { test_valid(0, "valid.safetensors"); }
/* header length not a multiple of 8: the data is misaligned in the mapping */
static void test_valid_misaligned(void) {
    for (size_t pad = 1; pad < 8; pad++) {
        char name[64];
        snprintf(name, sizeof name, "valid_pad%zu.safetensors", pad);
        test_valid(pad, name);
    }
}

static void test_empty_object(void) {
    sdc_st_file *f = NULL;
    CHECK(sdc_st_open(write_st("nothing.safetensors", "{}", NULL, 0), &f) == SDC_OK);
    if (f) CHECK(sdc_st_count(f) == 0 && sdc_st_find(f, "a") == NULL);
    sdc_st_close(f);
    sdc_st_close(NULL);
}

/* Every prefix of a valid file either opens or fails cleanly. */
static void test_truncations(void) {
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[9],\"data_offsets\":[0,36]}}";
    const char *path = write_st("full.safetensors", h, k_data9, 36);
    FILE *fp = fopen(path, "rb");
    unsigned char buf[256];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    int opened = 0;
    for (size_t len = 0; len <= n; len++) {
        sdc_st_file *f = NULL;
        sdc_status st = sdc_st_open(write_raw("prefix.safetensors", buf, len), &f);
        CHECK(st == SDC_OK || st == SDC_ERR_FORMAT);
        CHECK((st == SDC_OK) == (f != NULL));
        opened += st == SDC_OK;
        sdc_st_close(f);
    }
    CHECK(opened == 1);
}

int main(void) {
    RUN(test_missing_empty_garbage);
    RUN(test_header_length);
    RUN(test_header_json);
    RUN(test_dtype_shape);
    RUN(test_offsets);
    RUN(test_valid_aligned);
    RUN(test_valid_misaligned);
    RUN(test_empty_object);
    RUN(test_truncations);
    return t_summary();
}
