/* The CLIP tokenizer against transformers' CLIPTokenizer (tests/fixtures/
 * tokens.json, from scripts/fixtures_lib/tokens.py): exact ids for every
 * prompt, with the built-in vocabulary and with vocab.json/merges.txt files;
 * every code point in a short context (hashed per block); errors. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "text/tokenizer.h"
#include "text/vocab.h"

static void write_all(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECKF(f != NULL, "cannot write %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static cJSON *g_fix; /* tokens.json */

/* The prompt of a case; the caller frees it. */
static char *case_text(const cJSON *c) {
    const cJSON *hex = cJSON_GetObjectItem(c, "hex"), *rep = cJSON_GetObjectItem(c, "repeat");
    if (cJSON_IsString(hex)) {
        size_t n = strlen(hex->valuestring) / 2;
        char *s = malloc(n + 1);
        for (size_t i = 0; i < n; i++) {
            unsigned v;
            sscanf(hex->valuestring + 2 * i, "%2x", &v);
            s[i] = (char)v;
        }
        s[n] = 0;
        return s;
    }
    if (cJSON_IsArray(rep)) {
        const char *unit = cJSON_GetArrayItem(rep, 0)->valuestring;
        size_t k = (size_t)cJSON_GetArrayItem(rep, 1)->valuedouble, nu = strlen(unit);
        char *s = malloc(nu * k + 1);
        for (size_t i = 0; i < k; i++) memcpy(s + i * nu, unit, nu);
        s[nu * k] = 0;
        return s;
    }
    const char *t = cJSON_GetObjectItem(c, "text")->valuestring;
    char *s = malloc(strlen(t) + 1);
    strcpy(s, t);
    return s;
}

static const char *case_name(const cJSON *c) {
    static char buf[64];
    const cJSON *t = cJSON_GetObjectItem(c, "text"), *r = cJSON_GetObjectItem(c, "repeat");
    if (cJSON_IsString(t))
        snprintf(buf, sizeof buf, "\"%.40s\"", t->valuestring);
    else
        snprintf(buf, sizeof buf, "\"%.20s\" x %d", cJSON_GetArrayItem(r, 0)->valuestring,
                 cJSON_GetArrayItem(r, 1)->valueint);
    return buf;
}

/* Every case: ids and count exactly as the reference's. */
static void check_cases(const sdc_tokenizer *t, const char *which) {
    const cJSON *cases = cJSON_GetObjectItem(g_fix, "cases");
    int n_cases = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next, n_cases++) {
        char *text = case_text(c);
        int32_t ids[SDC_CLIP_CONTEXT];
        int n = sdc_tokenize(t, text, ids);
        int want_n = cJSON_GetObjectItem(c, "n")->valueint;
        const cJSON *want = cJSON_GetObjectItem(c, "ids");
        CHECKF(n == want_n, "%s: %s: %d tokens, reference %d (%s)", which, case_name(c), n, want_n,
               n < 0 ? sdc_last_error() : "");
        int first_diff = -1;
        for (int i = 0; i < SDC_CLIP_CONTEXT && n >= 0; i++)
            if (ids[i] != cJSON_GetArrayItem(want, i)->valueint) {
                first_diff = i;
                break;
            }
        CHECKF(first_diff < 0, "%s: %s: ids differ from position %d: %d, reference %d", which,
               case_name(c), first_diff, first_diff >= 0 ? ids[first_diff] : 0,
               first_diff >= 0 ? cJSON_GetArrayItem(want, first_diff)->valueint : 0);
        free(text);
    }
    CHECK(n_cases >= 40);
}

static sdc_tokenizer *g_builtin;

static void test_builtin_matches_reference(void) {
    CHECKF(sdc_tokenizer_load_builtin(&g_builtin) == SDC_OK, "%s", sdc_last_error());
    if (g_builtin) check_cases(g_builtin, "built-in");
}

/* HF-format files written from the built-in vocabulary, read back. */
static void test_files_match_reference(void) {
    if (!g_builtin) return;
    char vocab[4096], merges[4096];
    snprintf(vocab, sizeof vocab, "%s", t_tmp("tok_vocab.json"));
    snprintf(merges, sizeof merges, "%s", t_tmp("tok_merges.txt"));
    CHECKF(sdc_tokenizer_save(g_builtin, vocab, merges) == SDC_OK, "%s", sdc_last_error());
    sdc_tokenizer *t = NULL;
    CHECKF(sdc_tokenizer_load(vocab, merges, &t) == SDC_OK, "%s", sdc_last_error());
    if (t) check_cases(t, "files");
    sdc_tokenizer_free(t);
    size_t n = 0;
    char *m = t_read_file(merges, &n);
    CHECK(m && strncmp(m, "#version: 0.2\ni n\nt h\n", 22) == 0);
    free(m);
    remove(vocab);
    remove(merges);
}

/* "x" + chr(c) + "!" for every scalar value but NUL, FNV-1a 64 of the ids per block:
 * covers white space, lower case, NFC singletons and the regex classes of
 * every code point. */
static void test_every_code_point(void) {
    if (!g_builtin) return;
    const cJSON *cp = cJSON_GetObjectItem(g_fix, "codepoints");
    const cJSON *blocks = cJSON_GetObjectItem(cp, "blocks");
    int block = cJSON_GetObjectItem(cp, "block")->valueint, n_bad = 0;
    CHECK(cJSON_GetArraySize(blocks) == 0x110000 / block);
    for (int b = 0; b < cJSON_GetArraySize(blocks); b++) {
        uint64_t h = 0xcbf29ce484222325ull;
        for (uint32_t c = (uint32_t)b * (uint32_t)block; c < (uint32_t)(b + 1) * (uint32_t)block;
             c++) {
            if (c == 0 || (c >= 0xD800 && c < 0xE000)) continue; /* as the fixture */
            char text[8] = "x";
            size_t k = 1;
            if (c < 0x80)
                text[k++] = (char)c;
            else if (c < 0x800) {
                text[k++] = (char)(0xC0 | c >> 6);
                text[k++] = (char)(0x80 | (c & 0x3F));
            } else if (c < 0x10000) {
                text[k++] = (char)(0xE0 | c >> 12);
                text[k++] = (char)(0x80 | (c >> 6 & 0x3F));
                text[k++] = (char)(0x80 | (c & 0x3F));
            } else {
                text[k++] = (char)(0xF0 | c >> 18);
                text[k++] = (char)(0x80 | (c >> 12 & 0x3F));
                text[k++] = (char)(0x80 | (c >> 6 & 0x3F));
                text[k++] = (char)(0x80 | (c & 0x3F));
            }
            text[k++] = '!';
            text[k] = 0;
            int32_t ids[SDC_CLIP_CONTEXT];
            if (sdc_tokenize(g_builtin, text, ids) < 0) memset(ids, 0xFF, sizeof ids);
            for (int i = 0; i < SDC_CLIP_CONTEXT; i++)
                for (int j = 0; j < 4; j++)
                    h = (h ^ ((uint32_t)ids[i] >> (8 * j) & 0xFF)) * 0x100000001b3ull;
        }
        char got[17];
        snprintf(got, sizeof got, "%016llx", (unsigned long long)h);
        const char *want = cJSON_GetArrayItem(blocks, b)->valuestring;
        if (strcmp(got, want) != 0 && n_bad++ < 10)
            fprintf(stderr, "code points U+%04X..U+%04X: tokens differ from the reference\n",
                    b * block, (b + 1) * block - 1);
    }
    CHECKF(n_bad == 0, "%d blocks of %d code points differ", n_bad, block);
}

static void test_limits(void) {
    if (!g_builtin) return;
    int32_t ids[SDC_CLIP_CONTEXT], empty[SDC_CLIP_CONTEXT];
    CHECK(sdc_tokenize(g_builtin, "", empty) == 2);
    CHECK(sdc_tokenize(g_builtin, NULL, ids) == 2 && memcmp(ids, empty, sizeof ids) == 0);
    CHECK(empty[0] == 49406 && empty[1] == 49407 && empty[76] == 49407);
    size_t n = SDC_TOKENIZER_MAX_BYTES + 1;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = 0;
    CHECK(sdc_tokenize(g_builtin, big, ids) == -1);
    CHECK(strstr(sdc_last_error(), "65536") != NULL);
    big[n - 1] = 0; /* exactly at the limit */
    CHECK(sdc_tokenize(g_builtin, big, ids) == 77);
    free(big);
    CHECK(sdc_tokenize(NULL, "a", ids) == -1);
}

/* vocab.json and merges.txt with one defect each. */
static void expect_load_error(const char *vocab_text, const char *merges_text, sdc_status want,
                              const char *msg_part) {
    char vocab[4096], merges[4096];
    snprintf(vocab, sizeof vocab, "%s", t_tmp("tok_bad_vocab.json"));
    snprintf(merges, sizeof merges, "%s", t_tmp("tok_bad_merges.txt"));
    write_all(vocab, vocab_text);
    write_all(merges, merges_text);
    sdc_tokenizer *t = (sdc_tokenizer *)&t;
    sdc_status s = sdc_tokenizer_load(vocab, merges, &t);
    CHECKF(s == want && t == NULL, "vocab %s / merges %s: status %s, want %s", vocab_text,
           merges_text, sdc_status_str(s), sdc_status_str(want));
    CHECKF(strstr(sdc_last_error(), msg_part) != NULL, "message \"%s\" lacks \"%s\"",
           sdc_last_error(), msg_part);
    if (s == SDC_OK) sdc_tokenizer_free(t);
    remove(vocab);
    remove(merges);
}

/* Tokenizes text with t; the ids before the padding must be want[0..n). */
static void expect_ids(const sdc_tokenizer *t, const char *what, const char *text,
                       const int32_t *want, int n) {
    int32_t ids[SDC_CLIP_CONTEXT];
    int got = sdc_tokenize(t, text, ids);
    int same = got == n;
    for (int i = 0; same && i < n; i++) same = ids[i] == want[i];
    for (int i = n; same && i < SDC_CLIP_CONTEXT; i++) same = ids[i] == want[n - 1];
    CHECKF(same, "%s: \"%s\": %d tokens [%d %d %d %d %d ...], want %d", what, text, got,
           ids[0], ids[1], ids[2], ids[3], ids[4], n);
}

/* A vocabulary without merges: an empty merges.txt, one holding only the
 * version line (with and without its newline).  The reference (transformers'
 * CLIPTokenizer = HF tokenizers' BPE with end_of_word_suffix "</w>", unk
 * <|endoftext|>, fuse_unk false) then gives every piece as its characters,
 * the last one with "</w>", and the unknown token for each character that
 * is not in the vocabulary (BPE::merge_word with no merges to apply).  The
 * ids below follow from that rule; there is no fixture of it. */
static void test_no_merges(void) {
    const char *vocab_text = "{\"a\": 0, \"b\": 1, \"a</w>\": 2, \"b</w>\": 3, \"c\": 4, "
                             "\"!</w>\": 5, \"<|startoftext|>\": 6, \"<|endoftext|>\": 7}";
    const char *merges_text[3] = {"", "#version: 0.2\n", "#version: 0.2"};
    char vocab[4096], merges[4096];
    snprintf(vocab, sizeof vocab, "%s", t_tmp("tok_nomerge_vocab.json"));
    snprintf(merges, sizeof merges, "%s", t_tmp("tok_nomerge_merges.txt"));
    write_all(vocab, vocab_text);
    for (int k = 0; k < 3; k++) {
        write_all(merges, merges_text[k]);
        sdc_tokenizer *t = NULL;
        sdc_status st = sdc_tokenizer_load(vocab, merges, &t);
        CHECKF(st == SDC_OK && t, "merges.txt \"%s\": %s", merges_text[k], sdc_last_error());
        if (!t) continue;
        const char *what = k == 0 ? "empty merges.txt" : "merges.txt with only #version";
        expect_ids(t, what, "", (const int32_t[]){6, 7}, 2);
        expect_ids(t, what, "a", (const int32_t[]){6, 2, 7}, 3);
        expect_ids(t, what, "ab", (const int32_t[]){6, 0, 3, 7}, 4);
        expect_ids(t, what, "AB ba!", (const int32_t[]){6, 0, 3, 1, 2, 5, 7}, 7);
        expect_ids(t, what, "cab", (const int32_t[]){6, 4, 0, 3, 7}, 5);
        /* "c</w>", "x", "y", "z</w>" and "\xc3", "\xa9</w>" (é) are unknown: one
         * <|endoftext|> each, not fused */
        expect_ids(t, what, "ac", (const int32_t[]){6, 0, 7, 7}, 4);
        expect_ids(t, what, "xyz", (const int32_t[]){6, 7, 7, 7, 7}, 5);
        expect_ids(t, what, "\xc3\xa9" "a", (const int32_t[]){6, 7, 7, 2, 7}, 5);
        /* long prompts are cut at 75 tokens as ever */
        char many[200];
        memset(many, 'a', 150);
        many[150] = 0;
        int32_t ids[SDC_CLIP_CONTEXT];
        CHECK(sdc_tokenize(t, many, ids) == 77 && ids[1] == 0 && ids[75] == 0 && ids[76] == 7);
        sdc_tokenizer_free(t);
    }
    remove(vocab);
    remove(merges);
}

static void test_load_errors(void) {
    const char *ok_vocab =
        "{\"a\": 0, \"b\": 1, \"ab\": 2, \"<|startoftext|>\": 3, \"<|endoftext|>\": 4}";
    const char *ok_merges = "#version: 0.2\na b\n";
    sdc_tokenizer *t = NULL;
    /* the good pair loads */
    write_all(t_tmp("tok_ok_vocab.json"), ok_vocab);
    write_all(t_tmp("tok_ok_merges.txt"), ok_merges);
    char vocab[4096];
    snprintf(vocab, sizeof vocab, "%s", t_tmp("tok_ok_vocab.json"));
    CHECKF(sdc_tokenizer_load(vocab, t_tmp("tok_ok_merges.txt"), &t) == SDC_OK, "%s",
           sdc_last_error());
    sdc_tokenizer_free(t);
    /* missing files */
    t = (sdc_tokenizer *)&t;
    CHECK(sdc_tokenizer_load(t_tmp("no_such_vocab.json"), vocab, &t) == SDC_ERR_IO && !t);
    CHECK(strstr(sdc_last_error(), "no_such_vocab.json") != NULL);
    CHECK(sdc_tokenizer_load(vocab, t_tmp("no_such_merges.txt"), &t) == SDC_ERR_IO && !t);
    CHECK(strstr(sdc_last_error(), "no_such_merges.txt") != NULL);
    CHECK(sdc_tokenizer_load(NULL, vocab, &t) == SDC_ERR_INVALID_ARG);
    remove(vocab);
    remove(t_tmp("tok_ok_merges.txt"));
    /* malformed vocab.json */
    expect_load_error("{\"a\": 0,", ok_merges, SDC_ERR_FORMAT,
                      "tok_bad_vocab.json: not valid JSON");
    expect_load_error("", ok_merges, SDC_ERR_FORMAT, "not valid JSON");
    expect_load_error("[1, 2]", ok_merges, SDC_ERR_FORMAT, "JSON object");
    expect_load_error("{\"a\": 0, \"b\": \"1\"}", ok_merges, SDC_ERR_FORMAT, "not an integer");
    expect_load_error("{\"a\": 0, \"b\": 1.5}", ok_merges, SDC_ERR_FORMAT, "not an integer");
    expect_load_error("{\"a\": 0, \"b\": 1e300}", ok_merges, SDC_ERR_FORMAT, "not an integer");
    expect_load_error("{\"a\": 0, \"b\": 7}", ok_merges, SDC_ERR_FORMAT, "out of range");
    expect_load_error("{\"a\": 0, \"b\": -1}", ok_merges, SDC_ERR_FORMAT, "out of range");
    expect_load_error("{\"a\": 0, \"b\": 0}", ok_merges, SDC_ERR_FORMAT, "id used twice");
    expect_load_error("{\"a\": 0, \"a\": 1}", ok_merges, SDC_ERR_FORMAT, "token listed twice");
    expect_load_error("{\"a\": 0, \"b\": 1, \"ab\": 2, \"<|endoftext|>\": 3}", ok_merges,
                      SDC_ERR_FORMAT, "no <|startoftext|>");
    expect_load_error("{\"a\": 0, \"b\": 1, \"ab\": 2, \"<|startoftext|>\": 3}", ok_merges,
                      SDC_ERR_FORMAT, "no <|endoftext|>");
    /* no tokens at all: with merges (which then name unknown tokens) and without */
    expect_load_error("{}", ok_merges, SDC_ERR_FORMAT, "tok_bad_vocab.json: no tokens");
    expect_load_error("{}", "", SDC_ERR_FORMAT, "tok_bad_vocab.json: no tokens");
    expect_load_error("{\"a\": 0, \"b\": 1}", "", SDC_ERR_FORMAT, "no <|startoftext|>");
    /* malformed merges.txt */
    expect_load_error(ok_vocab, "#version: 0.2\nab\n", SDC_ERR_FORMAT,
                      "tok_bad_merges.txt:2: expected two tokens");
    expect_load_error(ok_vocab, "a b c\n", SDC_ERR_FORMAT, ":1: expected two tokens");
    expect_load_error(ok_vocab, "a  b\n", SDC_ERR_FORMAT, ":1: expected two tokens");
    expect_load_error(ok_vocab, "a b\n\na b\n", SDC_ERR_FORMAT, ":2: expected two tokens");
    expect_load_error(ok_vocab, "a x\n", SDC_ERR_FORMAT, ":1: \"x\" is not in the vocabulary");
    expect_load_error(ok_vocab, "b a\n", SDC_ERR_FORMAT, "merge \"ba\" is not in the vocabulary");
    expect_load_error(ok_vocab, "a b\na b\n", SDC_ERR_FORMAT, ":2: merge listed twice");
    /* very long lines: the message quotes at most 64 bytes of a token */
    size_t n_long = 200000;
    char *long_line = malloc(n_long + 8);
    memset(long_line, 'a', n_long);
    memcpy(long_line + n_long, " b\n", 4);
    expect_load_error(ok_vocab, long_line, SDC_ERR_FORMAT, ":1: \"aaaa");
    CHECKF(strlen(sdc_last_error()) < 512, "message of %zu bytes", strlen(sdc_last_error()));
    memcpy(long_line + n_long, "\n", 2); /* one 200000-byte "token": no space */
    expect_load_error(ok_vocab, long_line, SDC_ERR_FORMAT, ":1: expected two tokens");
    free(long_line);
}

/* Long lines that are valid: a 60000-byte token in vocab.json and a
 * 60000-byte line in merges.txt load (lines have no length limit; the files
 * have 64 MiB). */
static void test_long_token(void) {
    size_t n = 60000;
    char *word = malloc(n + 1);
    memset(word, 'a', n);
    word[n] = 0;
    size_t cap = 2 * n + 256;
    char *vocab_text = malloc(cap), *merges_text = malloc(cap);
    snprintf(vocab_text, cap,
             "{\"a\": 0, \"%.*s\": 1, \"%s</w>\": 2, \"a</w>\": 3, \"<|startoftext|>\": 4, "
             "\"<|endoftext|>\": 5}",
             (int)(n - 1), word, word);
    /* a^59999 + a</w> -> a^60000</w>; no merges lead from letters to a^59999,
     * so a 60000-letter word stays letters (cut at 75) */
    snprintf(merges_text, cap, "#version: 0.2\n%.*s a</w>\n", (int)(n - 1), word);
    char vocab[4096], merges[4096];
    snprintf(vocab, sizeof vocab, "%s", t_tmp("tok_long_vocab.json"));
    snprintf(merges, sizeof merges, "%s", t_tmp("tok_long_merges.txt"));
    write_all(vocab, vocab_text);
    write_all(merges, merges_text);
    sdc_tokenizer *t = NULL;
    CHECKF(sdc_tokenizer_load(vocab, merges, &t) == SDC_OK, "%s", sdc_last_error());
    if (t) {
        int32_t ids[SDC_CLIP_CONTEXT];
        CHECK(sdc_tokenize(t, word, ids) == 77 && ids[1] == 0 && ids[75] == 0);
    }
    sdc_tokenizer_free(t);
    remove(vocab);
    remove(merges);
    free(word);
    free(vocab_text);
    free(merges_text);
}

int main(void) {
    size_t n = 0;
    char *json = t_read_file(t_fixture("tokens.json"), &n);
    CHECKF(json != NULL, "cannot read %s", t_fixture("tokens.json"));
    g_fix = json ? cJSON_ParseWithLength(json, n) : NULL;
    free(json);
    CHECK(g_fix != NULL);
    if (g_fix) {
        RUN(test_builtin_matches_reference);
        RUN(test_files_match_reference);
        RUN(test_every_code_point);
        RUN(test_limits);
    }
    RUN(test_load_errors);
    RUN(test_no_merges);
    RUN(test_long_token);
    sdc_tokenizer_free(g_builtin);
    cJSON_Delete(g_fix);
    return t_summary();
}
