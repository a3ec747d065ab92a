/* TAESD (models/taesd.h) against diffusers' AutoencoderTiny on the tiny
 * random-weight model (scripts/fixtures_lib/taesd.py): decode z [1, 4, 8, 8]
 * -> [1, 3, 64, 64] and encode [1, 3, 64, 64] -> latents [1, 4, 8, 8], run
 * at batch 2 (the reference input twice, each output checked), on every
 * CPU path and every OpenCL device (fp32 and fp16 storage; none: said),
 * from each form of file:
 *   tiny-taesd/               diffusers folder, config.json, BF16
 *   tiny-taesd.safetensors    one file, diffusers names, F16 (config from shapes)
 *   written here: the same weights in F32; madebyollin's two original files
 *   (numbered names, one half each); a decoder-only file.
 * Tolerances, relative L2 error of every output (measured on the ref,
 * generic and avx2 paths and PoCL, 2026-12-07):
 *   CPU paths, OpenCL fp32 storage   1e-4 (the bar of the text-to-image
 *                                    tests; measured at most 1.1e-6)
 *   OpenCL fp16 storage              5e-3 (every activation rounded to 11
 *                                    bits; measured 6.0e-4 decode, 3.5e-4 encode)
 * Hostile files, each a clear failure (status and the name in the message),
 * nothing leaked: a missing tensor, a wrong shape, a 16-latent-channel TAESD
 * (file and config), an empty file, an empty folder, a full VAE, and the
 * absent half asked for. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/backend.h"
#include "backends/opencl/opencl.h"
#include "core/arena.h"
#include "core/error.h"
#include "harness.h"
#include "io/safetensors.h"
#include "models/taesd.h"

#include "vendor_leaks.h"

#define TOL 1e-4
#define FP16_TOL 5e-3
enum { BATCH = 2, ZC = 4, ZH = 8, ZW = 8, IC = 3, IH = 64, IW = 64 };
enum { NZ = ZC * ZH * ZW, NI = IC * IH * IW };

/* ---- backends: the CPU paths, then OpenCL devices at fp32 and fp16 storage ---- */

#define MAX_TARGETS 24
typedef struct target {
    sdc_backend *be;
    char name[160];
    int fp16;
} target;
static target g_t[MAX_TARGETS];
static int g_nt;

static void setup(void) {
    for (int i = 0; i < t_npaths() && g_nt < MAX_TARGETS; i++) {
        sdc_backend *be = t_path_backend(i, 2);
        if (!be) continue;
        g_t[g_nt].be = be;
        snprintf(g_t[g_nt].name, sizeof g_t[g_nt].name, "cpu/%s", t_path_name(i));
        g_nt++;
    }
    sdc_cl_device devs[8];
    LSAN_OFF();
    int n = sdc_opencl_devices(devs, 8);
    LSAN_ON();
    if (n <= 0) {
        printf("  opencl: none (%s): the OpenCL cases are skipped\n",
               n < 0 ? sdc_last_error() : "no device");
        return;
    }
    for (int d = 0; d < n && d < 8; d++)
        for (int fp16 = 0; fp16 < 2 && g_nt < MAX_TARGETS; fp16++) {
            char idx[16];
            snprintf(idx, sizeof idx, "%d", d);
            sdc_cl_options o = {.device = idx, .allow_cpu = 1, .fp16_storage = fp16};
            sdc_backend *be = sdc_backend_opencl_create(&o);
            CHECKF(be != NULL, "opencl %d: %s", d, sdc_last_error());
            if (!be) continue;
            g_t[g_nt].be = be, g_t[g_nt].fp16 = fp16;
            snprintf(g_t[g_nt].name, sizeof g_t[g_nt].name, "opencl/%d %s %s", d, devs[d].name,
                     fp16 ? "fp16" : "fp32");
            printf("  %s\n", g_t[g_nt].name);
            g_nt++;
        }
}

/* ---- references ------------------------------------------------------------------ */

static sdc_st_file *g_ref;
static const float *g_z, *g_decoded, *g_image, *g_latents;
static double g_worst[2][2]; /* [fp16][decode] */

/* One pass at batch 2 on be (arena planned against the null backend, then
 * made by be; the weights prefetched before and released after); returns
 * the worse image's relative L2 error, or -1 after a failed check. */
static double run_pass(const sdc_taesd *m, const target *t, int decode) {
    const size_t nin = decode ? NZ : NI, nout = decode ? NI : NZ;
    const float *in1 = decode ? g_z : g_image, *want = decode ? g_decoded : g_latents;
    float *in = malloc(BATCH * nin * sizeof *in), *got = calloc(BATCH * nout, sizeof *got);
    sdc_backend *be = t->be;
    sdc_arena a = {0};
    double worst = -1;
    if (!in || !got) goto done;
    for (int b = 0; b < BATCH; b++) memcpy(in + b * nin, in1, nin * sizeof *in);
    a.be = be;
    sdc_arena_plan(&a);
    sdc_status st = decode ? sdc_taesd_decode(m, sdc_backend_null(), &a, NULL, BATCH, ZH, ZW, NULL)
                           : sdc_taesd_encode(m, sdc_backend_null(), &a, NULL, BATCH, IH, IW, NULL);
    CHECKF(st == SDC_OK && !a.overflow && a.top == 0, "plan: %s", sdc_last_error());
    const size_t peak = a.peak;
    const sdc_weight *w[256];
    const int part = decode ? SDC_TAESD_DECODER : SDC_TAESD_ENCODER;
    const size_t nw = sdc_taesd_weights(m, part, w, 256);
    CHECK(nw > 0 && nw <= 256);
    st = sdc_arena_commit(&a, 0);
    CHECKF(st == SDC_OK, "%s: %s", t->name, sdc_last_error());
    if (st != SDC_OK) goto done;
    be->weights(be, w, (int)nw, SDC_RES_PREFETCH);
    st = decode ? sdc_taesd_decode(m, be, &a, in, BATCH, ZH, ZW, got)
                : sdc_taesd_encode(m, be, &a, in, BATCH, IH, IW, got);
    if (st == SDC_OK) st = be->sync(be);
    be->weights(be, w, (int)nw, SDC_RES_RELEASE);
    CHECKF(st == SDC_OK, "%s: %s", t->name, sdc_last_error());
    CHECK(!a.overflow && a.top == 0 && a.peak == peak);
    if (st != SDC_OK) goto done;
    worst = 0;
    for (int b = 0; b < BATCH; b++) {
        double e = t_rel_l2(got + b * nout, want, nout);
        worst = e > worst ? e : worst;
    }
done:
    sdc_arena_free(&a);
    free(in), free(got);
    return worst;
}

/* Decode and encode (those the file holds) on every target. */
static void check_model(const char *what, const sdc_taesd *m) {
    const sdc_taesd_config *c = sdc_taesd_cfg(m);
    for (int decode = 0; decode <= 1; decode++) {
        if (!(decode ? c->has_decoder : c->has_encoder)) continue;
        for (int i = 0; i < g_nt; i++) {
            const target *t = &g_t[i];
            double e = run_pass(m, t, decode);
            const double tol = t->fp16 ? FP16_TOL : TOL;
            CHECKF(e >= 0 && e <= tol, "%s %s on %s: rel L2 %.3g (tol %.0e)", what,
                   decode ? "decode" : "encode", t->name, e, tol);
            if (e > g_worst[t->fp16][decode]) g_worst[t->fp16][decode] = e;
            printf("  %-24s %-6s %-40s rel L2 %.2e\n", what, decode ? "decode" : "encode",
                   t->name, e);
        }
    }
}

static sdc_taesd *open_ok(const char *path) {
    sdc_taesd *m = NULL;
    sdc_status st = sdc_taesd_open(path, &m);
    CHECKF(st == SDC_OK && m, "%s: %s", path, sdc_last_error());
    return m;
}

/* The tiny model's config (scripts/fixtures_lib/taesd.py). */
static int tiny_config(const sdc_taesd_config *c, int enc, int dec) {
    static const int eb[4] = {1, 2, 1, 1}, db[4] = {2, 1, 1, 1};
    int ok = c->has_encoder == enc && c->has_decoder == dec && c->latent_channels == 4 &&
             c->scaling_factor == 1.0f && c->shift_factor == 0.0f;
    if (enc)
        ok = ok && c->in_channels == 3 && c->enc_levels == 4 && c->enc_channels == 8 &&
             !memcmp(c->enc_blocks, eb, sizeof eb) && c->enc_factor == 8;
    if (dec)
        ok = ok && c->out_channels == 3 && c->dec_levels == 4 && c->dec_channels == 12 &&
             !memcmp(c->dec_blocks, db, sizeof db) && c->dec_factor == 8;
    return ok;
}

/* ---- safetensors files written here ------------------------------------------------ */

typedef struct entry {
    char name[96];
    sdc_dtype dt;
    int ndim;
    int64_t shape[4];
    const void *data;
    size_t nbytes;
} entry;

#define MAX_ENTRIES 128
typedef struct tensors {
    entry e[MAX_ENTRIES];
    int n;
    void *owned[MAX_ENTRIES]; /* converted data */
    int nowned;
} tensors;

static void tensors_free(tensors *t) {
    for (int i = 0; i < t->nowned; i++) free(t->owned[i]);
    t->n = t->nowned = 0;
}

/* t: the tensors of f, in place (the converted data of t's last use freed) */
static void load_tensors(const sdc_st_file *f, tensors *t) {
    tensors_free(t);
    for (size_t i = 0; i < sdc_st_count(f) && t->n < MAX_ENTRIES; i++) {
        const sdc_weight *w = sdc_st_at(f, i);
        entry *e = &t->e[t->n++];
        snprintf(e->name, sizeof e->name, "%s", w->name);
        e->dt = w->dtype, e->ndim = w->ndim;
        for (int d = 0; d < w->ndim && d < 4; d++) e->shape[d] = w->shape[d];
        e->data = w->data, e->nbytes = w->nbytes;
    }
}

static entry *entry_of(tensors *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->e[i].name, name)) return &t->e[i];
    return NULL;
}

static void drop(tensors *t, const char *name) {
    entry *e = entry_of(t, name);
    CHECKF(e != NULL, "no %s", name);
    if (e) *e = t->e[--t->n];
}

static void *owned(tensors *t, size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    if (p) t->owned[t->nowned++] = p;
    return p;
}

static void to_f32(tensors *t) {
    for (int i = 0; i < t->n; i++) {
        entry *e = &t->e[i];
        int64_t n = 1;
        for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
        sdc_weight w = {.dtype = e->dt, .ndim = e->ndim, .numel = n, .data = e->data};
        float *dst = owned(t, (size_t)n * sizeof(float));
        if (!dst) continue;
        sdc_weight_to_f32(&w, dst);
        e->dt = SDC_DT_F32, e->data = dst, e->nbytes = (size_t)n * sizeof(float);
    }
}

/* Keeps the tensors whose names start with "<side>." under madebyollin's
 * names: "<i + shift>.<rest>" for "<side>.layers.<i>.<rest>". */
static void to_original(tensors *t, const char *side, int shift) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.layers.", side);
    for (int i = 0; i < t->n;) {
        entry *e = &t->e[i];
        if (strncmp(e->name, prefix, strlen(prefix)) != 0) {
            *e = t->e[--t->n];
            continue;
        }
        char *rest = NULL;
        long idx = strtol(e->name + strlen(prefix), &rest, 10);
        char name[96];
        snprintf(name, sizeof name, "%ld%s", idx + shift, rest);
        snprintf(e->name, sizeof e->name, "%s", name);
        i++;
    }
}

static const char *k_dtype[] = {[SDC_DT_F32] = "F32", [SDC_DT_F16] = "F16", [SDC_DT_BF16] = "BF16"};

/* Writes t as a .safetensors file. */
static int write_tensors(const char *path, const tensors *t) {
    size_t cap = 64 + (size_t)t->n * 256, len = 0, off = 0;
    char *h = malloc(cap);
    if (!h) return 0;
    len += (size_t)snprintf(h + len, cap - len, "{");
    for (int i = 0; i < t->n; i++) {
        const entry *e = &t->e[i];
        len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                i ? "," : "", e->name, k_dtype[e->dt]);
        for (int d = 0; d < e->ndim; d++)
            len += (size_t)snprintf(h + len, cap - len, d ? ",%lld" : "%lld",
                                    (long long)e->shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off,
                                off + e->nbytes);
        off += e->nbytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    int ok = f != NULL;
    if (ok) {
        unsigned char n8[8];
        for (int i = 0; i < 8; i++) n8[i] = (unsigned char)((uint64_t)len >> (8 * i));
        ok = fwrite(n8, 1, 8, f) == 8 && fwrite(h, 1, len, f) == len;
        for (int i = 0; ok && i < t->n; i++)
            ok = fwrite(t->e[i].data, 1, t->e[i].nbytes, f) == t->e[i].nbytes;
        ok = fclose(f) == 0 && ok;
    }
    free(h);
    CHECKF(ok, "cannot write %s", path);
    return ok;
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    int ok = f && fputs(text, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    CHECKF(ok, "cannot write %s", path);
    return ok;
}

/* The F16 single file's tensors (the caller frees them and closes *f). */
static int fixture_tensors(sdc_st_file **f, tensors *t) {
    t->n = t->nowned = 0;
    sdc_status st = sdc_st_open(t_fixture("tiny-taesd.safetensors"), f);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st != SDC_OK) return 0;
    load_tensors(*f, t);
    CHECK(t->n == 74);
    return 1;
}

/* ---- cases ------------------------------------------------------------------------- */

static void test_diffusers_folder(void) {
    sdc_taesd *m = open_ok(t_fixture("tiny-taesd"));
    if (!m) return;
    CHECK(tiny_config(sdc_taesd_cfg(m), 1, 1));
    CHECK(!strcmp(sdc_taesd_name(m), "tiny-taesd"));
    const sdc_weight *w[80];
    CHECK(sdc_taesd_weights(m, SDC_TAESD_ENCODER, NULL, 0) == 37);
    CHECK(sdc_taesd_weights(m, SDC_TAESD_DECODER, NULL, 0) == 37);
    CHECK(sdc_taesd_weights(m, SDC_TAESD_ENCODER | SDC_TAESD_DECODER, w, 80) == 74);
    CHECK(w[0]->dtype == SDC_DT_BF16 && w[73] != NULL);
    check_model("folder (bf16)", m);
    sdc_taesd_free(m);
}

static void test_single_file(void) {
    sdc_taesd *m = open_ok(t_fixture("tiny-taesd.safetensors"));
    if (!m) return;
    CHECK(tiny_config(sdc_taesd_cfg(m), 1, 1));
    check_model("file (f16)", m);
    sdc_taesd_free(m);
}

/* F32, madebyollin's two files, a decoder-only file: each against the same
 * references. */
static void test_written_forms(void) {
    sdc_st_file *f = NULL;
    tensors t;
    if (!fixture_tensors(&f, &t)) return;
    to_f32(&t);
    const char *p = t_tmp("taesd-f32.safetensors");
    if (write_tensors(p, &t)) {
        sdc_taesd *m = open_ok(p);
        if (m) {
            CHECK(tiny_config(sdc_taesd_cfg(m), 1, 1));
            check_model("file (f32)", m);
        }
        sdc_taesd_free(m);
    }
    tensors_free(&t);
    static const struct {
        const char *side, *file;
        int shift;
    } halves[] = {{"encoder", "taesd_encoder.safetensors", 0},
                  {"decoder", "taesd_decoder.safetensors", 1}};
    for (int i = 0; i < 2; i++) {
        load_tensors(f, &t);
        to_original(&t, halves[i].side, halves[i].shift);
        CHECK(t.n == 37);
        p = t_tmp(halves[i].file);
        if (!write_tensors(p, &t)) continue;
        sdc_taesd *m = open_ok(p);
        if (!m) continue;
        CHECK(tiny_config(sdc_taesd_cfg(m), i == 0, i == 1));
        check_model(halves[i].file, m);
        /* the half it lacks: a clear failure, before anything runs */
        sdc_arena a = {0};
        sdc_arena_plan(&a);
        sdc_status st = i == 0 ? sdc_taesd_decode(m, sdc_backend_null(), &a, NULL, 1, 8, 8, NULL)
                               : sdc_taesd_encode(m, sdc_backend_null(), &a, NULL, 1, 64, 64, NULL);
        CHECKF(st == SDC_ERR_UNSUPPORTED && strstr(sdc_last_error(), halves[i].file) &&
                   strstr(sdc_last_error(), i == 0 ? "no decoder" : "no encoder"),
               "%s", sdc_last_error());
        CHECK(a.peak == 0);
        CHECK(sdc_taesd_weights(m, i == 0 ? SDC_TAESD_DECODER : SDC_TAESD_ENCODER, NULL, 0) == 0);
        sdc_taesd_free(m);
    }
    /* diffusers names, decoder only */
    load_tensors(f, &t);
    for (int i = 0; i < t.n;)
        if (!strncmp(t.e[i].name, "encoder.", 8)) t.e[i] = t.e[--t.n];
        else i++;
    p = t_tmp("taesd-decoder-only.safetensors");
    if (write_tensors(p, &t)) {
        sdc_taesd *m = open_ok(p);
        if (m) {
            CHECK(tiny_config(sdc_taesd_cfg(m), 0, 1));
            sdc_arena a = {0};
            sdc_arena_plan(&a);
            sdc_status st = sdc_taesd_encode(m, sdc_backend_null(), &a, NULL, 1, 64, 64, NULL);
            CHECKF(st == SDC_ERR_UNSUPPORTED && strstr(sdc_last_error(), "no encoder"), "%s",
                   sdc_last_error());
        }
        sdc_taesd_free(m);
    }
    tensors_free(&t);
    sdc_st_close(f);
}

/* path must fail with status want, the message naming each of the
 * NULL-terminated strings. */
static void expect_failure(const char *what, const char *path, sdc_status want, ...) {
    static char not_null;
    sdc_taesd *m = (sdc_taesd *)(void *)&not_null; /* must come back NULL */
    sdc_status st = sdc_taesd_open(path, &m);
    const char *msg = sdc_last_error();
    CHECKF(st == want && m == NULL, "%s: status %d (want %d): %s", what, st, want, msg);
    va_list ap;
    va_start(ap, want);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;)
        CHECKF(strstr(msg, s) != NULL, "%s: \"%s\" not in the message: %s", what, s, msg);
    va_end(ap);
    printf("  %-22s %s\n", what, msg);
    if (st == SDC_OK) sdc_taesd_free(m);
}

static void test_hostile(void) {
    sdc_st_file *f = NULL;
    tensors t;
    if (!fixture_tensors(&f, &t)) return;
    const char *p = t_tmp("taesd-missing.safetensors");
    drop(&t, "decoder.layers.2.conv.2.weight");
    if (write_tensors(p, &t))
        expect_failure("missing tensor", p, SDC_ERR_FORMAT, "decoder.layers.2.conv.2.weight",
                       "missing", p, NULL);
    load_tensors(f, &t);
    drop(&t, "decoder.layers.13.bias");
    if (write_tensors(p, &t))
        expect_failure("missing bias", p, SDC_ERR_FORMAT, "decoder.layers.13.bias", "missing",
                       NULL);
    load_tensors(f, &t);
    drop(&t, "decoder.layers.8.weight"); /* a level's upsampling conv */
    if (write_tensors(p, &t))
        expect_failure("missing layer", p, SDC_ERR_FORMAT, "decoder.layers.7", NULL);

    load_tensors(f, &t);
    entry *e = entry_of(&t, "encoder.layers.3.conv.0.weight");
    if (e) e->shape[2] = 9, e->shape[3] = 1; /* [8, 8, 9, 1]: the same bytes */
    p = t_tmp("taesd-shape.safetensors");
    if (write_tensors(p, &t))
        expect_failure("wrong shape", p, SDC_ERR_FORMAT, "encoder.layers.3.conv.0.weight",
                       "[8, 8, 9, 1]", "[8, 8, 3, 3]", NULL);
    load_tensors(f, &t);
    e = entry_of(&t, "decoder.layers.5.weight");
    if (e) {
        void *b = owned(&t, e->nbytes + 2 * 12 * 9);
        e->shape[0] = 12, e->shape[1] = 13, e->data = b, e->nbytes += 2 * 12 * 9;
    }
    if (write_tensors(p, &t))
        expect_failure("wrong channels", p, SDC_ERR_FORMAT, "decoder.layers.5.weight",
                       "[12, 13, 3, 3]", NULL);
    load_tensors(f, &t);
    e = entry_of(&t, "decoder.layers.2.conv.0.bias"); /* [12], as a bias of layer 5 would be */
    if (e && t.n < MAX_ENTRIES) {
        t.e[t.n] = *e;
        snprintf(t.e[t.n++].name, sizeof e->name, "decoder.layers.5.bias");
    }
    if (write_tensors(p, &t))
        expect_failure("unexpected bias", p, SDC_ERR_FORMAT, "decoder.layers.5.bias", NULL);
    tensors_free(&t);

    /* 16 latent channels (FLUX/SD3): a decoder's first conv [12, 16, 3, 3] */
    load_tensors(f, &t);
    for (int i = 0; i < t.n;)
        if (!strncmp(t.e[i].name, "encoder.", 8)) t.e[i] = t.e[--t.n];
        else i++;
    e = entry_of(&t, "decoder.layers.0.weight");
    if (e) {
        e->shape[1] = 16, e->nbytes = 2 * 12 * 16 * 9;
        e->data = owned(&t, e->nbytes);
    }
    p = t_tmp("taef1.safetensors");
    if (write_tensors(p, &t))
        expect_failure("16 latent channels", p, SDC_ERR_UNSUPPORTED, "16-channel", "FLUX", NULL);
    tensors_free(&t);
    /* ... and a folder whose config says so */
    char dir[512], cfg[600];
    snprintf(dir, sizeof dir, "%s", t_tmp("taesd3"));
    CHECK(mkdir(dir, 0755) == 0);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    write_text(cfg, "{\"_class_name\": \"AutoencoderTiny\", \"latent_channels\": 16}\n");
    load_tensors(f, &t);
    snprintf(cfg, sizeof cfg, "%s/diffusion_pytorch_model.safetensors", dir);
    write_tensors(cfg, &t);
    expect_failure("16 channels (config)", dir, SDC_ERR_UNSUPPORTED, "16-channel", NULL);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    write_text(cfg, "{\"_class_name\": \"AutoencoderTiny\", \"num_decoder_blocks\": [3, 3]}\n");
    expect_failure("config levels", dir, SDC_ERR_FORMAT, "num_decoder_blocks", NULL);
    write_text(cfg, "{\"_class_name\": \"AutoencoderTiny\", \"act_fn\": \"silu\"}\n");
    expect_failure("config act_fn", dir, SDC_ERR_UNSUPPORTED, "act_fn", NULL);
    /* the default config (64 channels) against the tiny weights */
    write_text(cfg, "{\"_class_name\": \"AutoencoderTiny\"}\n");
    expect_failure("config vs weights", dir, SDC_ERR_FORMAT, "encoder.layers.0.weight",
                   "[8, 3, 3, 3]", "[64, 3, 3, 3]", NULL);
    tensors_free(&t);
    sdc_st_close(f);

    p = t_tmp("empty.safetensors");
    write_text(p, "");
    expect_failure("empty file", p, SDC_ERR_FORMAT, "empty.safetensors", NULL);
    char empty_dir[512];
    snprintf(empty_dir, sizeof empty_dir, "%s", t_tmp("empty-folder"));
    CHECK(mkdir(empty_dir, 0755) == 0);
    expect_failure("empty folder", empty_dir, SDC_ERR_FORMAT, "diffusion_pytorch_model", NULL);
    expect_failure("no such file", t_tmp("absent.safetensors"), SDC_ERR_IO, "absent", NULL);
    expect_failure("full VAE folder", t_fixture("tiny-sd/vae"), SDC_ERR_UNSUPPORTED,
                   "AutoencoderKL", NULL);
    expect_failure("SD checkpoint", t_fixture("tiny-sd.safetensors"), SDC_ERR_UNSUPPORTED,
                   "full VAE", NULL);
    expect_failure("not a TAESD", t_fixture("vae_ref.safetensors"), SDC_ERR_FORMAT,
                   "not a TAESD", NULL);
}

/* Sizes the passes refuse before touching anything. */
static void test_bad_sizes(void) {
    sdc_taesd *m = open_ok(t_fixture("tiny-taesd.safetensors"));
    if (!m) return;
    sdc_arena a = {0};
    sdc_arena_plan(&a);
    sdc_backend *nb = sdc_backend_null();
    CHECK(sdc_taesd_encode(m, nb, &a, NULL, 1, 60, 64, NULL) == SDC_ERR_INVALID_ARG);
    CHECK(sdc_taesd_encode(m, nb, &a, NULL, 0, 64, 64, NULL) == SDC_ERR_INVALID_ARG);
    CHECK(sdc_taesd_decode(m, nb, &a, NULL, 1, 0, 8, NULL) == SDC_ERR_INVALID_ARG);
    CHECK(sdc_taesd_decode(m, nb, &a, NULL, 1, 8, 1 << 20, NULL) == SDC_ERR_INVALID_ARG);
    CHECK(a.peak == 0);
    sdc_taesd_free(m);
}

int main(void) {
    setup();
    sdc_status st = sdc_st_open(t_fixture("taesd_ref.safetensors"), &g_ref);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st == SDC_OK) {
        g_z = t_ref_f32(g_ref, "z", NZ);
        g_decoded = t_ref_f32(g_ref, "decoded", NI);
        g_image = t_ref_f32(g_ref, "image", NI);
        g_latents = t_ref_f32(g_ref, "latents", NZ);
    }
    if (g_z && g_decoded && g_image && g_latents) {
        RUN(test_diffusers_folder);
        RUN(test_single_file);
        RUN(test_written_forms);
    }
    RUN(test_hostile);
    RUN(test_bad_sizes);
    printf("  worst rel L2: fp32 decode %.2e, encode %.2e (tol %.0e); fp16 storage decode "
           "%.2e, encode %.2e (tol %.0e)\n",
           g_worst[0][1], g_worst[0][0], TOL, g_worst[1][1], g_worst[1][0], FP16_TOL);
    for (int i = 0; i < g_nt; i++) g_t[i].be->free(g_t[i].be);
    sdc_st_close(g_ref);
    return t_summary();
}
