/* libFuzzer harness: AUTOMATIC1111's prompt syntax and chunked encoding
 * input (text/prompt.c, text/chunks.c, text/embeddings.c).
 *
 * Input: the prompt (a NUL inside ends it).  It is parsed with its tags cut
 * out, then laid into chunks with the built-in vocabulary and a folder of
 * three embeddings made at start ("cat" with 2 vectors, "a b" with 3, and
 * "wide" of the wrong width, which must be refused, never read past).
 * Properties: the parse fails only with a message; chunks are 77 tokens
 * each, BOS first and EOS last, every id below 49408; fixes start inside
 * their chunk after its BOS and have 1..75 vectors; the wrong-width
 * embedding is never used (a prompt naming it fails with a message). */
#include "fuzz_util.h"

#include <stdint.h>
#include <string.h>

#include "text/chunks.h"
#include "text/embeddings.h"
#include "text/prompt.h"
#include "text/tokenizer.h"

#define D 32
#define VOCAB 49408

static sdc_tokenizer *g_tok;
static char g_emb_dir[4096];

/* A .safetensors file with one F32 tensor "emb_params" [rows, cols] of 0.5. */
static void write_embedding(const char *rel, int rows, int cols) {
    char header[160];
    int hn = snprintf(header, sizeof header,
                      "{\"emb_params\":{\"dtype\":\"F32\",\"shape\":[%d,%d],"
                      "\"data_offsets\":[0,%d]}}",
                      rows, cols, rows * cols * 4);
    size_t n = 8 + (size_t)hn + (size_t)rows * cols * 4;
    uint8_t *buf = calloc(1, n);
    uint64_t len = (uint64_t)hn;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(len >> (8 * i));
    memcpy(buf + 8, header, (size_t)hn);
    float half = 0.5f;
    for (int i = 0; i < rows * cols; i++) memcpy(buf + 8 + hn + 4 * i, &half, 4);
    fz_write(rel, buf, n, 0);
    free(buf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (sdc_tokenizer_load_builtin(&g_tok) != SDC_OK) {
        fprintf(stderr, "fuzz: built-in vocabulary: %s\n", sdc_last_error());
        exit(2);
    }
    fz_mkdir("emb");
    write_embedding("emb/cat.safetensors", 2, D);
    write_embedding("emb/a b.safetensors", 3, D);
    write_embedding("emb/wide.safetensors", 1, D + 16);
    fz_path(g_emb_dir, "emb");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    sdc_prompt *p = NULL;
    sdc_status st = sdc_prompt_parse(text, SDC_PARSE_TAGS, &p);
    fz_report("parse", st, sdc_last_error());
    if (st != SDC_OK) {
        FZ_ASSERT(p == NULL && *sdc_last_error() != 0, "failed parse (%d) without a message",
                  (int)st);
        free(text);
        return 0;
    }
    sdc_embeddings *emb = NULL;
    st = sdc_embeddings_open(g_emb_dir, g_tok, &emb);
    FZ_ASSERT(st == SDC_OK && sdc_embeddings_count(emb) == 3, "embeddings: %s", sdc_last_error());
    sdc_chunks c;
    st = sdc_chunks_make(g_tok, p, emb, D, &c);
    fz_report("chunks", st, sdc_last_error());
    if (st == SDC_OK) {
        FZ_ASSERT(c.n >= 1, "%d chunks", c.n);
        for (int k = 0; k < c.n; k++) {
            const int32_t *ids = c.ids + (size_t)k * SDC_CLIP_CONTEXT;
            FZ_ASSERT(ids[0] == 49406 && ids[SDC_CLIP_CONTEXT - 1] == 49407,
                      "chunk %d: BOS %d, EOS %d", k, ids[0], ids[SDC_CLIP_CONTEXT - 1]);
        }
        for (int i = 0; i < c.n * SDC_CLIP_CONTEXT; i++) {
            FZ_ASSERT(c.ids[i] >= 0 && c.ids[i] < VOCAB, "id %d at %d", c.ids[i], i);
        }
        for (int j = 0; j < c.n_fix; j++) {
            const sdc_chunk_fix *f = &c.fix[j];
            FZ_ASSERT(f->pos / SDC_CLIP_CONTEXT < c.n && f->pos % SDC_CLIP_CONTEXT >= 1 &&
                          f->n >= 1 && f->n <= SDC_CHUNK_TOKENS && f->vec,
                      "fix %d at %d, %d vectors", j, f->pos, f->n);
            FZ_ASSERT(strcmp(sdc_embeddings_name(emb, f->emb), "wide") != 0,
                      "the wrong-width embedding was used");
        }
        sdc_chunks_free(&c);
    } else {
        FZ_ASSERT(*sdc_last_error() != 0, "failure (%d) without a message", (int)st);
    }
    sdc_embeddings_free(emb);
    sdc_prompt_free(p);
    free(text);
    return 0;
}
