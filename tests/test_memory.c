/* Memory: page residency of mapped weights (io sdc_st_advise,
 * sdc_model_files_advise*), the memory-saving block variants of the models
 * (sdc_resnet_fwd_consume, sdc_upsample2x_in_place: the same bits as the
 * plain ops, less scratch), and low-memory mode (sdc_load_params.low_memory)
 * giving the same latents and image, bit for bit, as the default on the
 * tiny model in both layouts.
 *
 * Residency is read from /proc/self/statm (resident pages); the released
 * tensor is 16 MiB so that the drop dwarfs unrelated noise (the check
 * allows 4 MiB). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "core/arena.h"
#include "harness.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "models/blocks.h"
#include "models/models.h"
#include "pipeline/pipeline_internal.h"
#include "sdc.h"

/* ---- residency ----------------------------------------------------------- */

/* Resident bytes of this process, or -1. */
static long long resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    long long size = 0, res = -1;
    if (fscanf(f, "%lld %lld", &size, &res) != 2) res = -1;
    fclose(f);
    return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

/* Writes a safetensors file: "big" F32 [n] (big[i] = i % 1000) at the start
 * of the data, "pad" U8 [1] after it, and "half" F16 [5] (all 1.0) at an
 * odd offset, which sdc_st_open copies to the heap. */
static int write_file(const char *path, size_t n) {
    char hdr[512];
    size_t big = n * 4;
    int len = snprintf(hdr, sizeof hdr,
                       "{\"big\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":[0,%zu]},"
                       "\"pad\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%zu,%zu]},"
                       "\"half\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[%zu,%zu]}}",
                       n, big, big, big + 1, big + 1, big + 11);
    while (len % 8) hdr[len++] = ' '; /* data starts 8-aligned */
    hdr[len] = 0;
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    unsigned char l8[8];
    for (int i = 0; i < 8; i++) l8[i] = (unsigned char)((uint64_t)len >> (8 * i));
    int ok = fwrite(l8, 1, 8, f) == 8 && fwrite(hdr, 1, (size_t)len, f) == (size_t)len;
    float *buf = malloc(big);
    if (!buf) ok = 0;
    for (size_t i = 0; ok && i < n; i++) buf[i] = (float)(i % 1000);
    ok = ok && fwrite(buf, 4, n, f) == n;
    unsigned char tail[11] = {7, 0, 60, 0, 60, 0, 60, 0, 60, 0, 60}; /* pad, then 5 x 1.0 f16 */
    ok = ok && fwrite(tail, 1, sizeof tail, f) == sizeof tail;
    free(buf);
    return fclose(f) == 0 && ok;
}

static double sum_f32(const sdc_weight *w) {
    const volatile float *p = w->data;
    double s = 0;
    for (int64_t i = 0; i < w->numel; i++) s += p[i];
    return s;
}

static void test_advise(void) {
    const size_t n = (size_t)4 << 20; /* 16 MiB of F32 */
    const char *path = t_tmp("memory_advise.safetensors");
    CHECK(write_file(path, n));
    sdc_st_file *f = NULL;
    CHECK(sdc_st_open(path, &f) == SDC_OK);
    if (!f) return;
    const sdc_weight *big = sdc_st_find(f, "big"), *half = sdc_st_find(f, "half");
    CHECK(big && half && big->numel == (int64_t)n);
    if (!big || !half) goto out;
    double want = 0;
    for (size_t i = 0; i < n; i++) want += (double)(i % 1000);

    CHECK(sum_f32(big) == want);
    long long r0 = resident_bytes();
    CHECK(sdc_st_advise(f, big->data, big->nbytes, SDC_PAGES_RELEASE) == 1);
    long long r1 = resident_bytes();
    CHECKF(r0 > 0 && r1 > 0 && r0 - r1 >= (long long)big->nbytes - (4 << 20),
           "release: resident %lld -> %lld bytes, want a drop of about %zu", r0, r1, big->nbytes);
    /* released pages read back from the file */
    CHECK(sum_f32(big) == want);
    long long r2 = resident_bytes();
    CHECKF(r2 - r1 >= (long long)big->nbytes - (4 << 20), "reading back: %lld -> %lld", r1, r2);
    CHECK(sdc_st_advise(f, big->data, big->nbytes, SDC_PAGES_RELEASE) == 1);
    long long r3 = resident_bytes();
    CHECK(sdc_st_advise(f, big->data, big->nbytes, SDC_PAGES_PREFETCH) == 1);
    long long r4 = resident_bytes();
    CHECKF(r4 - r3 >= (long long)big->nbytes - (4 << 20), "prefetch: %lld -> %lld", r3, r4);
    CHECK(sum_f32(big) == want);

    /* "half" sits at an odd offset: a heap copy, which advice leaves alone */
    CHECK(sdc_st_advise(f, half->data, half->nbytes, SDC_PAGES_RELEASE) == 0);
    CHECK(sdc_weight_get(half, 4) == 1.0f);
    /* outside the mapping, or running past its end: nothing */
    float local[4] = {0};
    CHECK(sdc_st_advise(f, local, sizeof local, SDC_PAGES_RELEASE) == 0);
    CHECK(sdc_st_advise(f, big->data, (size_t)1 << 40, SDC_PAGES_RELEASE) == 0);
    CHECK(sdc_st_advise(f, big->data, 0, SDC_PAGES_RELEASE) == 0);
    CHECK(sdc_st_advise(NULL, big->data, 4, SDC_PAGES_RELEASE) == 0);
out:
    sdc_st_close(f);
    remove(path);
}

/* The model-files level: every tensor of a prefix released, values intact. */
static void test_advise_model_files(void) {
    sdc_model_files *mf = NULL;
    CHECK(sdc_model_files_open(t_fixture("tiny-sd.safetensors"), &mf) == SDC_OK);
    if (!mf) return;
    size_t count = sdc_model_files_count(mf);
    double *before = calloc(count, sizeof *before);
    CHECK(before != NULL);
    for (size_t i = 0; before && i < count; i++) {
        const sdc_weight *w = sdc_model_files_get(mf, sdc_model_files_key(mf, i));
        for (int64_t j = 0; j < w->numel; j++) before[i] += sdc_weight_get(w, j);
    }
    sdc_model_files_advise_prefix(mf, "unet.", SDC_PAGES_RELEASE);
    sdc_model_files_advise_prefix(mf, "", SDC_PAGES_RELEASE);
    sdc_model_files_advise_prefix(mf, "vae.", SDC_PAGES_PREFETCH);
    sdc_model_files_advise(mf, NULL, SDC_PAGES_RELEASE);
    int same = 1;
    for (size_t i = 0; before && i < count; i++) {
        const sdc_weight *w = sdc_model_files_get(mf, sdc_model_files_key(mf, i));
        sdc_model_files_advise(mf, w, SDC_PAGES_RELEASE);
        double s = 0;
        for (int64_t j = 0; j < w->numel; j++) s += sdc_weight_get(w, j);
        same &= s == before[i];
    }
    CHECK(same);
    free(before);
    sdc_model_files_close(mf);
}

/* ---- block variants -------------------------------------------------------- */

/* An F32 weight over caller-owned data. */
static sdc_weight f32w(const float *data, int ndim, const int64_t *shape) {
    sdc_weight w;
    memset(&w, 0, sizeof w);
    w.name = "test";
    w.dtype = SDC_DT_F32;
    w.ndim = ndim;
    w.numel = 1;
    for (int d = 0; d < ndim; d++) w.shape[d] = shape[d], w.numel *= shape[d];
    w.data = data;
    w.nbytes = (size_t)w.numel * 4;
    return w;
}

static float *rand_buf(size_t n, float scale) {
    float *p = malloc(n * sizeof *p);
    if (p) t_rand_fill(p, n, scale);
    return p;
}

/* sdc_resnet_fwd_consume == sdc_resnet_fwd, bit for bit, with and without a
 * time embedding, and it plans less scratch. */
static void check_consume(sdc_backend *be, int N, int in, int out, int H, int W, int temb_dim) {
    enum { G = 4 };
    size_t HW = (size_t)H * W;
    float *g1 = rand_buf((size_t)in, 1), *b1 = rand_buf((size_t)in, 0.5f);
    float *g2 = rand_buf((size_t)out, 1), *b2 = rand_buf((size_t)out, 0.5f);
    float *c1 = rand_buf((size_t)out * in * 9, 0.2f), *c1b = rand_buf((size_t)out, 0.1f);
    float *c2 = rand_buf((size_t)out * out * 9, 0.2f), *c2b = rand_buf((size_t)out, 0.1f);
    float *sc = rand_buf((size_t)out * in, 0.3f), *scb = rand_buf((size_t)out, 0.1f);
    float *tw = rand_buf((size_t)out * (temb_dim ? temb_dim : 1), 0.3f);
    float *tb = rand_buf((size_t)out, 0.1f);
    float *temb = rand_buf((size_t)N * (temb_dim ? temb_dim : 1), 1);
    float *x = rand_buf((size_t)N * in * HW, 2);
    float *y0 = malloc((size_t)N * out * HW * 4), *y1 = malloc((size_t)N * out * HW * 4);
    CHECK(g1 && b1 && g2 && b2 && c1 && c1b && c2 && c2b && sc && scb && tw && tb && temb && x &&
          y0 && y1);
    if (!(g1 && b1 && g2 && b2 && c1 && c1b && c2 && c2b && sc && scb && tw && tb && temb && x &&
          y0 && y1))
        goto out;

    int64_t sin[1] = {in}, sout[1] = {out}, s1[4] = {out, in, 3, 3}, s2[4] = {out, out, 3, 3};
    int64_t ss[4] = {out, in, 1, 1}, st[2] = {out, temb_dim};
    sdc_weight wg1 = f32w(g1, 1, sin), wb1 = f32w(b1, 1, sin), wg2 = f32w(g2, 1, sout),
               wb2 = f32w(b2, 1, sout), wc1 = f32w(c1, 4, s1), wc1b = f32w(c1b, 1, sout),
               wc2 = f32w(c2, 4, s2), wc2b = f32w(c2b, 1, sout), wsc = f32w(sc, 4, ss),
               wscb = f32w(scb, 1, sout), wtw = f32w(tw, 2, st), wtb = f32w(tb, 1, sout);
    sdc_resnet_w r;
    memset(&r, 0, sizeof r);
    r.in = in, r.out = out, r.groups = G, r.eps = 1e-5f;
    r.norm1 = (sdc_norm_w){&wg1, &wb1, in};
    r.norm2 = (sdc_norm_w){&wg2, &wb2, out};
    r.conv1 = (sdc_conv_w){&wc1, &wc1b, in, out, 3};
    r.conv2 = (sdc_conv_w){&wc2, &wc2b, out, out, 3};
    r.shortcut = (sdc_conv_w){&wsc, &wscb, in, out, 1};
    if (temb_dim) r.temb = (sdc_linear_w){&wtw, &wtb, temb_dim, out};

    size_t nx = (size_t)N * in * HW, ny = (size_t)N * out * HW;
    size_t peak[2];
    for (int v = 0; v < 2; v++) {
        sdc_arena a = {0};
        sdc_arena_plan(&a);
        float *dx = sdc_arena_alloc(&a, nx), *dy = sdc_arena_alloc(&a, ny);
        float *dt = sdc_arena_alloc(&a, (size_t)N * (temb_dim ? temb_dim : 1));
        if (v)
            sdc_resnet_fwd_consume(&r, sdc_backend_null(), &a, dy, dx, N, H, W, dt);
        else
            sdc_resnet_fwd(&r, sdc_backend_null(), &a, dy, dx, N, H, W, dt);
        peak[v] = a.peak;
        CHECK(sdc_arena_commit(&a, 0) == SDC_OK);
        dx = sdc_arena_alloc(&a, nx), dy = sdc_arena_alloc(&a, ny);
        dt = sdc_arena_alloc(&a, (size_t)N * (temb_dim ? temb_dim : 1));
        be->copy_in(be, dx, x, (int64_t)nx);
        be->copy_in(be, dt, temb, (int64_t)N * (temb_dim ? temb_dim : 1));
        if (v)
            sdc_resnet_fwd_consume(&r, be, &a, dy, dx, N, H, W, temb_dim ? dt : NULL);
        else
            sdc_resnet_fwd(&r, be, &a, dy, dx, N, H, W, temb_dim ? dt : NULL);
        CHECK(!a.overflow);
        be->copy_out(be, v ? y1 : y0, dy, (int64_t)ny);
        sdc_arena_free(&a);
    }
    CHECKF(memcmp(y0, y1, ny * 4) == 0, "consume differs: N %d, %d -> %d, %dx%d, temb %d (max %g)",
           N, in, out, H, W, temb_dim, t_max_abs(y1, y0, ny));
    CHECKF(peak[1] + nx * 4 <= peak[0], "consume plans %zu bytes, plain %zu", peak[1], peak[0]);
out:
    free(g1), free(b1), free(g2), free(b2), free(c1), free(c1b), free(c2), free(c2b);
    free(sc), free(scb), free(tw), free(tb), free(temb), free(x), free(y0), free(y1);
}

static void test_resnet_consume(void) {
    for (int p = 0; p < t_npaths(); p++) {
        sdc_backend *be = t_path_backend(p, 2);
        if (!be) return;
        check_consume(be, 1, 8, 4, 9, 7, 0);   /* VAE-like: in > out */
        check_consume(be, 2, 12, 8, 8, 8, 16); /* UNet up-block-like, with temb */
        check_consume(be, 1, 4, 16, 5, 6, 0);  /* in < out */
        check_consume(be, 2, 96, 64, 16, 16, 32);
        be->free(be);
    }
}

/* sdc_upsample2x_in_place == upsample2x, for plane counts that take every
 * path (plane 0 alone, one group, several groups). */
static void test_upsample_in_place(void) {
    sdc_backend *be = sdc_backend_cpu_create(2, 0);
    CHECK(be != NULL);
    if (!be) return;
    static const int shapes[][4] = {{1, 1, 3, 5}, {1, 2, 4, 4}, {1, 3, 2, 7},
                                    {2, 5, 6, 3}, {1, 64, 9, 8}, {2, 37, 5, 5}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], C = shapes[s][1], H = shapes[s][2], W = shapes[s][3];
        size_t n = (size_t)N * C * H * W;
        float *x = rand_buf(n, 1), *want = malloc(4 * n * 4), *got = malloc(4 * n * 4);
        CHECK(x && want && got);
        if (x && want && got) {
            be->upsample2x(be, want, x, N, C, H, W);
            sdc_arena a = {0};
            sdc_arena_plan(&a);
            float *lo = sdc_arena_alloc(&a, 16); /* something below */
            size_t off = sdc_arena_mark(&a);
            float *d = sdc_arena_alloc(&a, n);
            float *u = sdc_upsample2x_in_place(sdc_backend_null(), &a, d, off, N, C, H, W);
            size_t planned = a.peak;
            CHECK(u == NULL && sdc_arena_mark(&a) == off + ((4 * n * 4 + 63) / 64) * 64);
            CHECK(sdc_arena_commit(&a, 0) == SDC_OK);
            lo = sdc_arena_alloc(&a, 16);
            off = sdc_arena_mark(&a);
            d = sdc_arena_alloc(&a, n);
            be->copy_in(be, d, x, (int64_t)n);
            u = sdc_upsample2x_in_place(be, &a, d, off, N, C, H, W);
            CHECK(u == d && !a.overflow && a.peak <= planned && lo);
            if (u) be->copy_out(be, got, u, (int64_t)(4 * n));
            CHECKF(u && memcmp(got, want, 4 * n * 4) == 0, "in-place upsample differs: %dx%dx%dx%d",
                   N, C, H, W);
            sdc_arena_free(&a);
        }
        free(x), free(want), free(got);
    }
    be->free(be);
}

/* ---- low-memory mode ------------------------------------------------------- */

typedef struct step_log {
    int calls;
    const sdc_model *m;
    size_t at_step[8]; /* bytes released by the end of sample step i+1 */
} step_log;

static int on_progress(void *user, sdc_stage stage, int step, int total) {
    (void)total;
    step_log *l = user;
    l->calls++;
    if (stage == SDC_STAGE_SAMPLE && step >= 1 && step <= 8)
        l->at_step[step - 1] = sdc_model_released_bytes(l->m);
    return 0;
}

/* Bytes of the UNet's weights (canonical names "unet.") in a model. */
static size_t unet_bytes(const char *path) {
    sdc_model_files *mf = NULL;
    size_t n = 0;
    if (sdc_model_files_open(path, &mf) != SDC_OK) return 0;
    for (size_t i = 0; i < sdc_model_files_count(mf); i++)
        if (strncmp(sdc_model_files_key(mf, i), "unet.", 5) == 0)
            n += sdc_model_files_get(mf, sdc_model_files_key(mf, i))->nbytes;
    sdc_model_files_close(mf);
    return n;
}

/* Two images in a row per model (the second reads released pages back):
 * the same images, and the mode does what it is for: within every step
 * the UNet's blocks release their weights (all but the cross-attention's
 * keys and values, made once per image), where the default mode releases
 * nothing until the stage ends. */
static void test_low_memory_same_image(void) {
    static const char *models[] = {"tiny-sd", "tiny-sd.safetensors"};
    static const sdc_sampler samplers[] = {SDC_SAMPLER_DPMPP_2M, SDC_SAMPLER_EULER_A};
    for (int mi = 0; mi < 2; mi++) {
        sdc_model *m[2] = {NULL, NULL};
        for (int low = 0; low < 2; low++) {
            sdc_load_params lp = sdc_load_params_default();
            CHECK(lp.low_memory == 0);
            lp.n_threads = 2;
            lp.low_memory = low;
            CHECKF(sdc_model_load(t_fixture(models[mi]), &lp, &m[low]) == SDC_OK, "%s",
                   sdc_last_error());
        }
        if (!m[0] || !m[1]) goto next;
        int C = sdc_model_latent_channels(m[0]), f = sdc_model_vae_scale(m[0]);
        const size_t ub = unet_bytes(t_fixture(models[mi]));
        for (int rep = 0; rep < 2; rep++) {
            for (size_t si = 0; si < 2; si++) {
                sdc_gen_params gp = sdc_gen_params_default();
                gp.prompt = "a lighthouse at dawn";
                gp.negative_prompt = rep ? "fog" : NULL;
                gp.width = 32, gp.height = 24 + 8 * rep;
                gp.steps = 3;
                gp.seed = 1234 + rep;
                gp.sampler = samplers[si];
                gp.schedule = SDC_SCHEDULE_DISCRETE;
                size_t nl = (size_t)C * (gp.height / f) * (gp.width / f);
                size_t ni = (size_t)gp.height * gp.width * 3;
                float *lat[2] = {malloc(nl * 4), malloc(nl * 4)};
                float *img[2] = {malloc(ni * 4), malloc(ni * 4)};
                sdc_image out[2] = {{0}, {0}};
                step_log log[2] = {{0, m[0], {0}}, {0, m[1], {0}}};
                for (int low = 0; low < 2 && lat[low] && img[low]; low++) {
                    sdc_gen_debug dbg = {.latents = lat[low], .image = img[low]};
                    gp.progress = on_progress;
                    gp.progress_user = &log[low];
                    CHECKF(sdc_generate_debug(m[low], &gp, &out[low], NULL, &dbg) == SDC_OK, "%s",
                           sdc_last_error());
                }
                CHECKF(out[0].data && out[1].data && memcmp(out[0].data, out[1].data, ni) == 0,
                       "%s, %s: low-memory image differs", models[mi],
                       sdc_sampler_name(samplers[si]));
                CHECK(out[0].data && memcmp(lat[0], lat[1], nl * 4) == 0);
                CHECK(out[0].data && memcmp(img[0], img[1], ni * 4) == 0);
                CHECK(log[0].calls == log[1].calls && log[0].calls > 0);
                for (int i = 1; i < gp.steps; i++) {
                    size_t rel[2] = {log[0].at_step[i] - log[0].at_step[i - 1],
                                     log[1].at_step[i] - log[1].at_step[i - 1]};
                    CHECKF(rel[0] == 0 && rel[1] >= ub * 9 / 10 && rel[1] <= ub,
                           "%s step %d: released %zu bytes (default), %zu (low-memory); the "
                           "UNet has %zu",
                           models[mi], i + 1, rel[0], rel[1], ub);
                    if (rep == 0 && si == 0 && i == 1)
                        printf("  %-20s a step releases %zu of the UNet's %zu bytes (default: "
                               "%zu)\n",
                               models[mi], rel[1], ub, rel[0]);
                }
                sdc_image_free(&out[0]), sdc_image_free(&out[1]);
                free(lat[0]), free(lat[1]), free(img[0]), free(img[1]);
            }
        }
    next:
        sdc_model_free(m[0]);
        sdc_model_free(m[1]);
    }
}

int main(void) {
    t_rand_seed(20240611);
    RUN(test_advise);
    RUN(test_advise_model_files);
    RUN(test_resnet_consume);
    RUN(test_upsample_in_place);
    RUN(test_low_memory_same_image);
    return t_summary();
}
