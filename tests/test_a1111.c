/* AUTOMATIC1111's text encoding against tests/fixtures/a1111_ref.safetensors
 * (scripts/fixtures_lib/a1111.py, a rewrite of A1111's sd_hijack_clip.py and
 * sd_emphasis.py checked against its rules):
 *   - the chunks (token ids, weights, embedding positions) of every prompt
 *     of the parser's fixtures and of long, BREAK, comma-backtrack and
 *     embedding cases: exact;
 *   - the conditioning of emphasis, long, BREAK, CLIP skip, textual
 *     inversion and padded cases on the tiny model: rel L2 <= 1e-5;
 *   - images through diffusers given those encodings, and diffusers' own
 *     clip_skip: latents rel L2 <= 1e-4, image MAE <= 0.5/255 (as
 *     test_pipeline), both model layouts;
 *   - bad input: embeddings of the wrong width, SDXL's, not an embedding, a
 *     missing folder, CLIP skip out of range, weights that overflow. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "io/safetensors.h"
#include "pipeline/pipeline_internal.h"
#include "sdc.h"
#include "text/chunks.h"
#include "text/embeddings.h"
#include "text/prompt.h"
#include "text/tokenizer.h"

#define CTX_TOL 1e-5
#define LATENT_TOL 1e-4
#define FLOAT_MAE_TOL (0.5 / 255.0)
#define D 32 /* the tiny text encoder's width */

static sdc_st_file *g_ref;

static cJSON *meta_json(const char *key) {
    const char *s = sdc_st_metadata(g_ref, key);
    CHECKF(s != NULL, "no metadata %s", key);
    return s ? cJSON_Parse(s) : NULL;
}

static void test_chunks(void) {
    sdc_tokenizer *tok = NULL;
    sdc_embeddings *emb = NULL;
    CHECK(sdc_tokenizer_load_builtin(&tok) == SDC_OK);
    sdc_status st = sdc_embeddings_open(t_fixture("embeddings"), tok, &emb);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    cJSON *cases = meta_json("chunk_cases");
    int n = 0, worst = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        int idx = cJSON_GetObjectItem(c, "index")->valueint;
        char key[64];
        snprintf(key, sizeof key, "chunk.%d.ids", idx);
        const sdc_weight *ri = sdc_st_find(g_ref, key);
        snprintf(key, sizeof key, "chunk.%d.mult", idx);
        const sdc_weight *rm = sdc_st_find(g_ref, key);
        CHECKF(ri && rm, "case %d: no reference", idx);
        if (!ri || !rm) continue;
        sdc_prompt *p = NULL;
        sdc_chunks ch;
        st = sdc_prompt_parse(text, 0, &p);
        if (st == SDC_OK) st = sdc_chunks_make(tok, p, emb, D, &ch);
        CHECKF(st == SDC_OK, "case %d: %s", idx, sdc_last_error());
        sdc_prompt_free(p);
        if (st != SDC_OK) continue;
        const int32_t *ids = ri->data;
        const float *mult = rm->data;
        CHECKF(ch.n * SDC_CLIP_CONTEXT == ri->numel, "case %d \"%.40s\": %d chunks, want %lld",
               idx, text, ch.n, (long long)ri->numel / SDC_CLIP_CONTEXT);
        if (ch.n * SDC_CLIP_CONTEXT == ri->numel) {
            int bad_ids = 0, bad_mult = 0;
            for (int i = 0; i < ch.n * SDC_CLIP_CONTEXT; i++) {
                bad_ids += ch.ids[i] != ids[i];
                bad_mult += ch.mult[i] != mult[i];
            }
            CHECKF(bad_ids == 0 && bad_mult == 0, "case %d \"%.40s\": %d ids, %d weights differ",
                   idx, text, bad_ids, bad_mult);
        }
        const cJSON *fixes = cJSON_GetObjectItem(c, "fixes");
        CHECKF(cJSON_GetArraySize(fixes) == ch.n_fix, "case %d: %d fixes, want %d", idx,
               ch.n_fix, cJSON_GetArraySize(fixes));
        int k = 0;
        const cJSON *f;
        cJSON_ArrayForEach(f, fixes) {
            if (k >= ch.n_fix) break;
            const sdc_chunk_fix *x = &ch.fix[k++];
            CHECKF(x->pos == cJSON_GetArrayItem(f, 0)->valueint &&
                       strcmp(sdc_embeddings_name(emb, x->emb),
                              cJSON_GetArrayItem(f, 1)->valuestring) == 0 &&
                       x->n == cJSON_GetArrayItem(f, 2)->valueint,
                   "case %d: fix %d at %d (%s, %d)", idx, k - 1, x->pos,
                   sdc_embeddings_name(emb, x->emb), x->n);
        }
        if (ch.n > worst) worst = ch.n;
        sdc_chunks_free(&ch);
        n++;
    }
    printf("  %d prompts chunked as A1111 does (up to %d chunks)\n", n, worst);
    CHECK(n >= 50);
    cJSON_Delete(cases);
    sdc_embeddings_free(emb);
    sdc_tokenizer_free(tok);
}

static sdc_gen_params case_params(const cJSON *c) {
    sdc_gen_params p = sdc_gen_params_default();
    p.prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
    p.negative_prompt = cJSON_GetObjectItem(c, "negative")->valuestring;
    p.clip_skip = cJSON_GetObjectItem(c, "clip_skip")->valueint;
    p.prompt_syntax = strcmp(cJSON_GetObjectItem(c, "syntax")->valuestring, "plain") == 0
                          ? SDC_PROMPT_PLAIN
                          : SDC_PROMPT_A1111;
    p.cfg_scale = (float)cJSON_GetObjectItem(c, "cfg")->valuedouble;
    p.steps = cJSON_GetObjectItem(c, "steps")->valueint;
    p.seed = (uint64_t)cJSON_GetObjectItem(c, "seed")->valuedouble;
    p.width = cJSON_GetObjectItem(c, "width")->valueint;
    p.height = cJSON_GetObjectItem(c, "height")->valueint;
    p.sampler = SDC_SAMPLER_EULER;
    p.schedule = SDC_SCHEDULE_DISCRETE;
    p.embeddings_dir = t_fixture("embeddings");
    return p;
}

static void run_cases(sdc_model *m, const char *layout) {
    cJSON *cases = meta_json("cases");
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        sdc_gen_params p = case_params(c);
        p.embeddings_dir = strdup(p.embeddings_dir); /* t_fixture's buffer is reused */
        char key[64];
        snprintf(key, sizeof key, "%s.ctx", name);
        const sdc_weight *rc = sdc_st_find(g_ref, key);
        if (rc) {
            size_t cap = (size_t)rc->numel;
            float *ctx = malloc(cap * sizeof *ctx);
            int S = 0;
            sdc_gen_debug dbg = {.ctx = ctx, .ctx_cap = cap, .ctx_tokens = &S, .text_only = 1};
            sdc_image out;
            sdc_status st = sdc_generate_debug(m, &p, &out, NULL, &dbg);
            CHECKF(st == SDC_OK, "%s/%s: %s", layout, name, sdc_last_error());
            if (st == SDC_OK) {
                CHECKF(2 * S * D == rc->numel, "%s/%s: %d tokens", layout, name, S);
                double e = t_rel_l2(ctx, rc->data, cap);
                printf("  %-9s %-12s conditioning [2, %d, %d] rel L2 %.2e\n", layout, name, S, D,
                       e);
                CHECKF(e <= CTX_TOL, "%s/%s: conditioning rel L2 %.3g", layout, name, e);
            }
            free(ctx);
        }
        if (cJSON_GetObjectItem(c, "pipeline")->valueint) {
            snprintf(key, sizeof key, "%s.latents", name);
            const sdc_weight *rl = sdc_st_find(g_ref, key);
            snprintf(key, sizeof key, "%s.image", name);
            const sdc_weight *ri = sdc_st_find(g_ref, key);
            CHECKF(rl && ri, "%s: no pipeline reference", name);
            if (rl && ri) {
                float *lat = malloc((size_t)rl->numel * sizeof *lat);
                float *img = malloc((size_t)ri->numel * sizeof *img);
                sdc_gen_debug dbg = {.latents = lat, .image = img};
                sdc_image out;
                sdc_status st = sdc_generate_debug(m, &p, &out, NULL, &dbg);
                CHECKF(st == SDC_OK, "%s/%s: %s", layout, name, sdc_last_error());
                if (st == SDC_OK) {
                    double el = t_rel_l2(lat, rl->data, (size_t)rl->numel), ei = 0;
                    const float *r = ri->data;
                    for (int64_t i = 0; i < ri->numel; i++) ei += fabs((double)img[i] - r[i]);
                    ei /= (double)ri->numel;
                    printf("  %-9s %-12s latents rel L2 %.2e  image MAE %.3f/255\n", layout,
                           name, el, ei * 255);
                    CHECKF(el <= LATENT_TOL, "%s/%s: latents rel L2 %.3g", layout, name, el);
                    CHECKF(ei <= FLOAT_MAE_TOL, "%s/%s: image MAE %.3g", layout, name, ei);
                    sdc_image_free(&out);
                }
                free(lat);
                free(img);
            }
        }
        free((char *)p.embeddings_dir);
    }
    cJSON_Delete(cases);
}

static void test_against_reference(void) {
    const char *layouts[2][2] = {{"folder", "tiny-sd"}, {"file", "tiny-sd.safetensors"}};
    for (int l = 0; l < 2; l++) {
        sdc_model *m = NULL;
        sdc_load_params lp = sdc_load_params_default();
        sdc_status st = sdc_model_load(t_fixture(layouts[l][1]), &lp, &m);
        CHECKF(st == SDC_OK, "%s", sdc_last_error());
        if (st != SDC_OK) continue;
        run_cases(m, layouts[l][0]);
        sdc_model_free(m);
    }
}

/* Bad input: a clear message, never a crash. */
static void expect_fail(sdc_model *m, const char *prompt, const char *emb_dir, int clip_skip,
                        sdc_status want, const char *needle) {
    sdc_gen_params p = sdc_gen_params_default();
    p.prompt = prompt;
    p.width = p.height = 32;
    p.steps = 1;
    p.embeddings_dir = emb_dir;
    p.clip_skip = clip_skip;
    sdc_image out;
    sdc_status st = sdc_generate(m, &p, &out, NULL);
    CHECKF(st == want && strstr(sdc_last_error(), needle), "\"%.40s\": status %d, message \"%s\"",
           prompt, (int)st, sdc_last_error());
    if (st == SDC_OK) sdc_image_free(&out);
}

static void test_bad_input(void) {
    sdc_model *m = NULL;
    sdc_load_params lp = sdc_load_params_default();
    sdc_status st = sdc_model_load(t_fixture("tiny-sd"), &lp, &m);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st != SDC_OK) return;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", t_fixture("embeddings"));
    expect_fail(m, "a wide cube", dir, 0, SDC_ERR_FORMAT, "wide.safetensors");
    expect_fail(m, "a wide cube", dir, 0, SDC_ERR_FORMAT, "48 wide");
    expect_fail(m, "sdxl style", dir, 0, SDC_ERR_UNSUPPORTED, "SDXL");
    expect_fail(m, "twokeys", dir, 0, SDC_ERR_FORMAT, "not a textual-inversion embedding");
    expect_fail(m, "x", "/no/such/folder", 0, SDC_ERR_IO, "/no/such/folder");
    expect_fail(m, "x", NULL, 3, SDC_ERR_INVALID_ARG, "clip skip 3");
    expect_fail(m, "x", NULL, -1, SDC_ERR_INVALID_ARG, "clip skip");
    expect_fail(m, "(a:1.2.3)", NULL, 0, SDC_ERR_INVALID_ARG, "prompt");
    /* 1.1^7500 overflows to inf, as Python's floats do */
    char *deep = malloc(7502);
    memset(deep, '(', 7500);
    strcpy(deep + 7500, "a");
    expect_fail(m, deep, NULL, 0, SDC_ERR_INVALID_ARG, "emphasis weight");
    free(deep);
    /* the words of unused bad embeddings are fine; unbalanced brackets parse */
    sdc_gen_params p = sdc_gen_params_default();
    p.prompt = "((a cube [on (a) table";
    p.width = p.height = 32;
    p.steps = 1;
    p.embeddings_dir = dir;
    sdc_image out;
    st = sdc_generate(m, &p, &out, NULL);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st == SDC_OK) sdc_image_free(&out);
    sdc_model_free(m);
}

/* <lora:NAME:W> tags: the same image as the LoRA given in sdc_gen_params;
 * bad tags refused with the tag named. */
static void test_lora_tags(void) {
    sdc_model *m = NULL;
    sdc_load_params lp = sdc_load_params_default();
    sdc_status st = sdc_model_load(t_fixture("tiny-sd"), &lp, &m);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st != SDC_OK) return;
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s", t_fixture("lora"));
    snprintf(path, sizeof path, "%s/kohya.safetensors", dir);
    sdc_gen_params p = sdc_gen_params_default();
    p.width = p.height = 32;
    p.steps = 2;
    p.prompt = "a red cube, (studio light:1.2)";
    p.negative_prompt = "blurry";
    sdc_lora l = {path, 0.5f};
    p.loras = &l;
    p.n_loras = 1;
    sdc_image a, b, c;
    st = sdc_generate(m, &p, &a, NULL);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    p.loras = NULL;
    p.n_loras = 0;
    p.lora_dir = dir;
    p.prompt = "a red <lora:kohya:0.5>cube, (studio light:1.2)";
    sdc_status st2 = sdc_generate(m, &p, &b, NULL);
    CHECKF(st2 == SDC_OK, "%s", sdc_last_error());
    p.prompt = "a red cube, (studio light:1.2)"; /* in the negative prompt it counts too */
    p.negative_prompt = "blurry<lora:kohya:0.5>";
    sdc_status st3 = sdc_generate(m, &p, &c, NULL);
    CHECKF(st3 == SDC_OK, "%s", sdc_last_error());
    if (st == SDC_OK && st2 == SDC_OK && st3 == SDC_OK) {
        CHECK(memcmp(a.data, b.data, 32 * 32 * 3) == 0);
        CHECK(memcmp(a.data, c.data, 32 * 32 * 3) == 0);
    }
    if (st == SDC_OK) sdc_image_free(&a);
    if (st2 == SDC_OK) sdc_image_free(&b);
    if (st3 == SDC_OK) sdc_image_free(&c);
    struct {
        const char *prompt, *dir, *needle;
        sdc_status st;
    } bad[] = {
        {"<lora:kohya:0.5> x", NULL, "no LoRA folder", SDC_ERR_INVALID_ARG},
        {"<lora:nosuch:1> x", dir, "nosuch.safetensors", SDC_ERR_IO},
        {"<lora:kohya:abc> x", dir, "not a number", SDC_ERR_INVALID_ARG},
        {"<lora:kohya:0.5:1> x", dir, "arguments", SDC_ERR_UNSUPPORTED},
        {"<lora:../lora/kohya:1> x", dir, "without folders", SDC_ERR_INVALID_ARG},
        {"<lora::1> x", dir, "without folders", SDC_ERR_INVALID_ARG},
    };
    p.negative_prompt = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p.prompt = bad[i].prompt;
        p.lora_dir = bad[i].dir;
        st = sdc_generate(m, &p, &a, NULL);
        CHECKF(st == bad[i].st && strstr(sdc_last_error(), bad[i].needle),
               "\"%s\": status %d, \"%s\"", bad[i].prompt, (int)st, sdc_last_error());
        if (st == SDC_OK) sdc_image_free(&a);
    }
    /* a kind sdc has no network for is ignored (with a warning) */
    p.prompt = "<hypernet:h:1> a red cube, (studio light:1.2)";
    p.lora_dir = NULL;
    st = sdc_generate(m, &p, &a, NULL);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st == SDC_OK) sdc_image_free(&a);
    sdc_model_free(m);
}

int main(void) {
    sdc_status st = sdc_st_open(t_fixture("a1111_ref.safetensors"), &g_ref);
    CHECKF(st == SDC_OK, "%s", sdc_last_error());
    if (st != SDC_OK) return t_summary();
    RUN(test_chunks);
    RUN(test_against_reference);
    RUN(test_bad_input);
    RUN(test_lora_tags);
    sdc_st_close(g_ref);
    return t_summary();
}
