/* CLIP tokenizer.  The reference is transformers 5.24's CLIPTokenizer (the
 * same class as CLIPTokenizerFast: HF tokenizers 0.23), as diffusers loads
 * it from an SD 1.x tokenizer/ folder:
 *
 *   raw text --split on "<|endoftext|>" (added token, raw match)-->
 *   NFC, \s+ -> " ", lower case --split on "<|startoftext|>" (added token,
 *   matched after normalisation)--> CLIP regex (matches kept, the rest
 *   dropped) --> GPT-2 byte-level regex (isolated) --> bytes as characters
 *   --> BPE with "</w>" on each piece's last character.
 *
 * Then [BOS] tokens[:75] [EOS] and <|endoftext|> padding up to 77; pieces
 * past the 75th token are not looked at.
 *
 * transformers 5 has no Python CLIPTokenizer any more, so ftfy.fix_text and
 * html.unescape never run, installed or not.  Where OpenAI CLIP's own
 * tokenizer (open_clip.SimpleTokenizer) differs, sdc follows transformers:
 * HTML entities stay text ("&amp;" -> "&", "amp", ";"); no ftfy repairs
 * (mojibake such as "cafÃ©", fullwidth forms, ligatures such as "ﬁ", control
 * characters and U+FEFF are tokenised as they are); lower case per character
 * (final Σ -> σ, İ -> i + U+0307); white space is onig's \s (no U+001C..1F);
 * 's is matched after lower-casing, case-sensitively (so not 'ſ);
 * <|startoftext|> and <|endoftext|> inside the text give their ids.
 * tokens.json marks the prompts where the two differ (same_as_open_clip).
 *
 * Unicode data (unicode_tables.c) is probed from the reference: \s, \p{L},
 * \p{N} and lower case as its onig and Rust know them (Unicode 16), NFC
 * only as far as its older tables go.  PCRE2 runs the regexes with those
 * classes spelt out, so the system PCRE2's Unicode version does not matter.
 *
 * Input: at most SDC_TOKENIZER_MAX_BYTES (longer is an error, not cut, so a
 * prompt is never silently changed); ill-formed UTF-8 becomes U+FFFD as
 * Python's decode(errors="replace") does; NUL ends the text.
 *
 * vocab.json and merges.txt are checked as they load: at least one token,
 * ids 0..n-1 each once, <|startoftext|> and <|endoftext|> present, every
 * merge's two tokens and their join in the vocabulary.  A merges.txt with no
 * merges (empty, or only its "#version" line) is valid, as in the
 * reference: every piece is then its characters' tokens, the last with
 * "</w>".  A character whose token is missing becomes <|endoftext|> (the
 * reference's unknown token), one per character. */
#include "text/tokenizer.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <zlib.h>

#include "core/error.h"
#include "text/unicode.h"
#include "text/vocab.h"

#define MAX_FILE_BYTES ((size_t)64 << 20)
/* OpenAI CLIP keeps the first 49152 - 256 - 2 merges of its BPE file. */
#define CLIP_N_MERGES (49152 - 256 - 2)
#define BOS_TEXT "<|startoftext|>"
#define EOS_TEXT "<|endoftext|>"

typedef struct merge_slot {
    uint64_t key; /* left id << 32 | right id; UINT64_MAX when empty */
    int32_t rank, id;
} merge_slot;

struct sdc_tokenizer {
    /* id -> token text (UTF-8, NUL-terminated): text + off[id], len[id] bytes */
    char *text;
    size_t text_len, text_cap;
    uint32_t *off, *len; /* [n_tokens]; len UINT32_MAX while unset */
    int32_t n_tokens;
    int32_t *tok_slot; /* [tok_mask + 1] ids by text hash, -1 empty */
    size_t tok_mask;
    merge_slot *merge_slot; /* [merge_mask + 1], at most half full */
    size_t merge_mask;
    int32_t (*merges)[2]; /* [n_merges] left, right ids by rank */
    int32_t n_merges, merges_cap;
    int32_t byte_id[256], byte_end_id[256]; /* byte's character, without and with </w> */
    int32_t bos, eos, pad, unk;
    pcre2_code *re_clip, *re_bytes;
};

/* ---- byte-level alphabet (GPT-2 / CLIP bytes_to_unicode) ------------------ */

static int byte_is_printable(int b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

/* Printable bytes stand for themselves; the other 68 for U+0100.. in byte
 * order.  order[]: the vocabulary's first 256 entries (printable first). */
static void byte_alphabet(uint32_t cp[256], uint8_t order[256]) {
    int k = 0, extra = 0;
    for (int pass = 1; pass >= 0; pass--) {
        for (int b = 0; b < 256; b++) {
            if (byte_is_printable(b) != pass) continue;
            cp[b] = pass ? (uint32_t)b : 256u + (uint32_t)extra++;
            order[k++] = (uint8_t)b;
        }
    }
}

/* ---- token and merge tables ---------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_SEED 0xcbf29ce484222325ull

static size_t pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p *= 2;
    return p;
}

/* Tables for n_tokens tokens (ids 0..n_tokens-1, each set once by tok_add);
 * the merge tables grow as merges are added. */
static sdc_status tok_init(sdc_tokenizer *t, size_t n_tokens) {
    if (n_tokens == 0 || n_tokens > INT32_MAX / 4)
        return sdc_fail(SDC_ERR_FORMAT, "%zu tokens: out of range", n_tokens);
    t->n_tokens = (int32_t)n_tokens;
    t->off = malloc(n_tokens * sizeof *t->off);
    t->len = malloc(n_tokens * sizeof *t->len);
    t->tok_mask = pow2_at_least(2 * n_tokens) - 1;
    t->tok_slot = malloc((t->tok_mask + 1) * sizeof *t->tok_slot);
    if (!t->off || !t->len || !t->tok_slot)
        return sdc_fail(SDC_ERR_NOMEM, "out of memory (tokenizer tables)");
    for (size_t i = 0; i < n_tokens; i++) t->len[i] = UINT32_MAX;
    for (size_t i = 0; i <= t->tok_mask; i++) t->tok_slot[i] = -1;
    return SDC_OK;
}

/* The id of the token a + b (b may be empty), or -1. */
static int32_t tok_find2(const sdc_tokenizer *t, const char *a, size_t na, const char *b,
                         size_t nb) {
    uint64_t h = fnv1a(fnv1a(FNV_SEED, a, na), b, nb);
    for (size_t i = h & t->tok_mask;; i = (i + 1) & t->tok_mask) {
        int32_t id = t->tok_slot[i];
        if (id < 0) return -1;
        if (t->len[id] == na + nb && memcmp(t->text + t->off[id], a, na) == 0 &&
            memcmp(t->text + t->off[id] + na, b, nb) == 0)
            return id;
    }
}

static int32_t tok_find(const sdc_tokenizer *t, const char *s, size_t n) {
    return tok_find2(t, s, n, "", 0);
}

/* Adds token id with text a + b.  Returns SDC_ERR_FORMAT (message set by the
 * caller from *why) for a bad or repeated id or a repeated text. */
static sdc_status tok_add(sdc_tokenizer *t, int64_t id, const char *a, size_t na, const char *b,
                          size_t nb, const char **why) {
    if (id < 0 || id >= t->n_tokens) {
        *why = "id out of range";
        return SDC_ERR_FORMAT;
    }
    if (t->len[id] != UINT32_MAX) {
        *why = "id used twice";
        return SDC_ERR_FORMAT;
    }
    if (tok_find2(t, a, na, b, nb) >= 0) {
        *why = "token listed twice";
        return SDC_ERR_FORMAT;
    }
    size_t n = na + nb, need;
    if (n >= UINT32_MAX || !sdc_add_size(t->text_len, n + 1, &need) || need > UINT32_MAX) {
        *why = "vocabulary text too large";
        return SDC_ERR_FORMAT;
    }
    if (need > t->text_cap) {
        size_t cap = t->text_cap ? t->text_cap : 1 << 16;
        while (cap < need) cap *= 2;
        char *p = realloc(t->text, cap);
        if (!p) return sdc_fail(SDC_ERR_NOMEM, "out of memory (vocabulary)");
        t->text = p;
        t->text_cap = cap;
    }
    char *dst = t->text + t->text_len;
    memcpy(dst, a, na);
    memcpy(dst + na, b, nb);
    dst[n] = 0;
    t->off[id] = (uint32_t)t->text_len;
    t->len[id] = (uint32_t)n;
    t->text_len = need;
    uint64_t h = fnv1a(FNV_SEED, dst, n);
    size_t i = h & t->tok_mask;
    while (t->tok_slot[i] >= 0) i = (i + 1) & t->tok_mask;
    t->tok_slot[i] = (int32_t)id;
    return SDC_OK;
}

/* The slot of key, or the empty slot where it would go. */
static merge_slot *merge_slot_of(merge_slot *slot, size_t mask, uint64_t key) {
    size_t i = (size_t)((key * 0x9e3779b97f4a7c15ull) >> 20) & mask;
    while (slot[i].key != key && slot[i].key != UINT64_MAX) i = (i + 1) & mask;
    return &slot[i];
}

/* The merge of left + right, or NULL.  A vocabulary without merges has no
 * table at all (merge_slot NULL). */
static const merge_slot *merge_find(const sdc_tokenizer *t, int32_t left, int32_t right) {
    if (!t->merge_slot) return NULL;
    const merge_slot *m = merge_slot_of(t->merge_slot, t->merge_mask,
                                        (uint64_t)(uint32_t)left << 32 | (uint32_t)right);
    return m->key == UINT64_MAX ? NULL : m;
}

/* Room for one more merge: the rank list doubles, the hash table doubles
 * when it would be over half full. */
static sdc_status merge_reserve(sdc_tokenizer *t) {
    if (t->n_merges >= INT32_MAX / 4) return sdc_fail(SDC_ERR_FORMAT, "too many merges");
    if (t->n_merges == t->merges_cap) {
        int32_t cap = t->merges_cap ? 2 * t->merges_cap : 1024;
        int32_t(*m)[2] = realloc(t->merges, (size_t)cap * sizeof *m);
        if (!m) return sdc_fail(SDC_ERR_NOMEM, "out of memory (merges)");
        t->merges = m;
        t->merges_cap = cap;
    }
    size_t size = t->merge_slot ? t->merge_mask + 1 : 0;
    if (2 * ((size_t)t->n_merges + 1) <= size) return SDC_OK;
    size_t nsize = size ? 2 * size : 2048;
    merge_slot *ns = malloc(nsize * sizeof *ns);
    if (!ns) return sdc_fail(SDC_ERR_NOMEM, "out of memory (merges)");
    for (size_t i = 0; i < nsize; i++) ns[i].key = UINT64_MAX;
    for (size_t i = 0; i < size; i++)
        if (t->merge_slot[i].key != UINT64_MAX)
            *merge_slot_of(ns, nsize - 1, t->merge_slot[i].key) = t->merge_slot[i];
    free(t->merge_slot);
    t->merge_slot = ns;
    t->merge_mask = nsize - 1;
    return SDC_OK;
}

/* Adds the merge of rank t->n_merges: left + right -> the token of their
 * concatenated text.  Message: "<where>: ..." */
static sdc_status merge_add(sdc_tokenizer *t, const char *a, size_t na, const char *b, size_t nb,
                            const char *where, size_t line) {
    int32_t l = tok_find(t, a, na), r = tok_find(t, b, nb), m = tok_find2(t, a, na, b, nb);
    const char *miss = l < 0 ? a : r < 0 ? b : NULL;
    size_t nmiss = l < 0 ? na : nb;
    if (miss)
        return sdc_fail(SDC_ERR_FORMAT, "%s:%zu: \"%.*s\" is not in the vocabulary", where, line,
                        (int)(nmiss < 64 ? nmiss : 64), miss);
    if (m < 0)
        return sdc_fail(SDC_ERR_FORMAT, "%s:%zu: the merge \"%.*s%.*s\" is not in the vocabulary",
                        where, line, (int)(na < 64 ? na : 64), a, (int)(nb < 64 ? nb : 64), b);
    sdc_status st = merge_reserve(t);
    if (st != SDC_OK) return st;
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    merge_slot *slot = merge_slot_of(t->merge_slot, t->merge_mask, key);
    if (slot->key == key)
        return sdc_fail(SDC_ERR_FORMAT, "%s:%zu: merge listed twice", where, line);
    *slot = (merge_slot){key, t->n_merges, m};
    t->merges[t->n_merges][0] = l;
    t->merges[t->n_merges][1] = r;
    t->n_merges++;
    return SDC_OK;
}

typedef struct byte_buf {
    char *p;
    size_t len, cap;
} byte_buf;

static sdc_status buf_put(byte_buf *b, const char *s, size_t n) {
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return sdc_fail(SDC_ERR_NOMEM, "out of memory (tokenizer text)");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return SDC_OK;
}

/* ---- regexes --------------------------------------------------------------- */

/* Appends "\x{first}-\x{last}..." for a class body. */
static sdc_status put_ranges(byte_buf *b, const sdc_uni_range *r, size_t n) {
    sdc_status st = SDC_OK;
    for (size_t i = 0; i < n && st == SDC_OK; i++) {
        char x[32];
        int k = r[i].first == r[i].last ? snprintf(x, sizeof x, "\\x{%X}", (unsigned)r[i].first)
                                        : snprintf(x, sizeof x, "\\x{%X}-\\x{%X}",
                                                   (unsigned)r[i].first, (unsigned)r[i].last);
        st = buf_put(b, x, (size_t)k);
    }
    return st;
}

/* Appends pat with \s, \S, \p{L} and \p{N} spelt out as the classes in
 * cls[0..2] (white space, letters, numbers). */
static sdc_status put_pattern(byte_buf *b, const char *pat, const byte_buf cls[3]) {
    static const char *const name[] = {"\\s", "\\S", "\\p{L}", "\\p{N}"};
    sdc_status st = SDC_OK;
    int in_class = 0;
    for (const char *p = pat; *p && st == SDC_OK;) {
        int k = 0;
        while (k < 4 && strncmp(p, name[k], strlen(name[k])) != 0) k++;
        if (k < 4) {
            const byte_buf *c = &cls[k < 2 ? 0 : k - 1];
            assert(!(k == 1 && in_class));
            if (!in_class) st = buf_put(b, k == 1 ? "[^" : "[", k == 1 ? 2 : 1);
            if (st == SDC_OK) st = buf_put(b, c->p, c->len);
            if (st == SDC_OK && !in_class) st = buf_put(b, "]", 1);
            p += strlen(name[k]);
            continue;
        }
        size_t n = *p == '\\' && p[1] ? 2 : 1; /* other escapes pass as they are */
        if (n == 1 && *p == '[') in_class = 1;
        if (n == 1 && *p == ']') in_class = 0;
        st = buf_put(b, p, n);
        p += n;
    }
    return st;
}

/* The reference's two regexes, their classes spelt out from the tables (see
 * unicode.h); both case-sensitive: the reference matches after lower-casing,
 * so 's never matches 'ſ as a caseless match would. */
static sdc_status compile_regexes(sdc_tokenizer *t) {
    /* CLIP's pre-tokeniser */
    static const char clip[] = "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|"
                               "[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";
    /* GPT-2's, inside tokenizers' ByteLevel pre-tokeniser */
    static const char bytes[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
                                "\\s+(?!\\S)|\\s+";
    byte_buf cls[3] = {{0}}, pat = {0};
    sdc_status st = SDC_OK;
    for (size_t i = 0; i < sdc_uni_space_table_count && st == SDC_OK; i++) {
        sdc_uni_range r = {sdc_uni_space_table[i], sdc_uni_space_table[i]};
        st = put_ranges(&cls[0], &r, 1);
    }
    if (st == SDC_OK) st = put_ranges(&cls[1], sdc_uni_letter_table, sdc_uni_letter_table_count);
    if (st == SDC_OK) st = put_ranges(&cls[2], sdc_uni_number_table, sdc_uni_number_table_count);
    const char *src[2] = {clip, bytes};
    pcre2_code **dst[2] = {&t->re_clip, &t->re_bytes};
    for (int i = 0; i < 2 && st == SDC_OK; i++) {
        pat.len = 0;
        st = put_pattern(&pat, src[i], cls);
        if (st != SDC_OK) break;
        int err;
        PCRE2_SIZE at;
        *dst[i] = pcre2_compile((PCRE2_SPTR)pat.p, pat.len, PCRE2_UTF, &err, &at, NULL);
        if (!*dst[i]) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            st = sdc_fail(SDC_ERR_INTERNAL, "tokenizer regex: %s at %zu", (char *)msg, (size_t)at);
        } else {
            pcre2_jit_compile(*dst[i], PCRE2_JIT_COMPLETE); /* optional: else interpreted */
        }
    }
    for (int i = 0; i < 3; i++) free(cls[i].p);
    free(pat.p);
    return st;
}

/* Byte tables, special ids, regexes; where: the vocabulary's name. */
static sdc_status tok_finish(sdc_tokenizer *t, const char *where) {
    t->bos = tok_find(t, BOS_TEXT, strlen(BOS_TEXT));
    t->eos = tok_find(t, EOS_TEXT, strlen(EOS_TEXT));
    if (t->bos < 0 || t->eos < 0)
        return sdc_fail(SDC_ERR_FORMAT, "%s: no %s token", where, t->bos < 0 ? BOS_TEXT : EOS_TEXT);
    t->pad = t->unk = t->eos;
    uint32_t cp[256];
    uint8_t order[256];
    byte_alphabet(cp, order);
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t n = sdc_utf8_encode(cp[b], u);
        int32_t id = tok_find(t, u, n), end = tok_find2(t, u, n, "</w>", 4);
        t->byte_id[b] = id >= 0 ? id : t->unk;
        t->byte_end_id[b] = end >= 0 ? end : t->unk;
    }
    return compile_regexes(t);
}

void sdc_tokenizer_free(sdc_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->off);
    free(t->len);
    free(t->tok_slot);
    free(t->merge_slot);
    free(t->merges);
    pcre2_code_free(t->re_clip);
    pcre2_code_free(t->re_bytes);
    free(t);
}

/* ---- loading ---------------------------------------------------------------- */

/* Reads a whole file (at most MAX_FILE_BYTES) into *out, NUL-terminated;
 * the caller frees *out. */
static sdc_status read_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return sdc_fail(SDC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    sdc_status st = SDC_OK;
    for (;;) {
        if (!buf) {
            st = sdc_fail(SDC_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) st = sdc_fail(SDC_ERR_IO, "%s: read error", path);
            break;
        }
        if (n == cap) {
            if (cap >= MAX_FILE_BYTES) {
                st = sdc_fail(SDC_ERR_FORMAT, "%s: too large (limit %zu bytes)", path,
                              MAX_FILE_BYTES);
                break;
            }
            cap *= 2;
            char *p = realloc(buf, cap + 1);
            if (!p) free(buf);
            buf = p;
        }
    }
    fclose(f);
    if (st != SDC_OK) {
        free(buf);
        return st;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return SDC_OK;
}

static sdc_status load_vocab_json(sdc_tokenizer *t, const char *path, const char *json, size_t n) {
    cJSON *root = cJSON_ParseWithLength(json, n);
    if (!root) return sdc_fail(SDC_ERR_FORMAT, "%s: not valid JSON", path);
    sdc_status st = SDC_OK;
    if (!cJSON_IsObject(root)) {
        st = sdc_fail(SDC_ERR_FORMAT, "%s: expected a JSON object {\"token\": id, ...}", path);
        goto done;
    }
    size_t count = 0;
    for (cJSON *e = root->child; e; e = e->next) count++;
    if (count == 0) {
        st = sdc_fail(SDC_ERR_FORMAT, "%s: no tokens (an empty vocabulary)", path);
        goto done;
    }
    if ((st = tok_init(t, count)) != SDC_OK) {
        sdc_fail_context(st, "%s", path);
        goto done;
    }
    for (cJSON *e = root->child; e; e = e->next) {
        const char *why = "id is not an integer";
        double v = e->valuedouble;
        if (cJSON_IsNumber(e) && v >= -1 && v <= (double)INT32_MAX && v == (double)(int64_t)v)
            st = tok_add(t, (int64_t)v, e->string, strlen(e->string), "", 0, &why);
        else
            st = SDC_ERR_FORMAT;
        if (st == SDC_ERR_FORMAT)
            st = sdc_fail(st, "%s: \"%.64s\": %s (%zu tokens: ids must be 0..%zu, each once)", path,
                          e->string, why, count, count - 1);
        if (st != SDC_OK) goto done;
    }
done:
    cJSON_Delete(root);
    return st;
}

static sdc_status load_merges_txt(sdc_tokenizer *t, const char *path, const char *txt, size_t n) {
    size_t line = 0;
    for (size_t i = 0; i < n;) {
        const char *s = txt + i, *nl = memchr(s, '\n', n - i);
        size_t len = nl ? (size_t)(nl - s) : n - i;
        i += len + (nl ? 1 : 0);
        line++;
        if (len && s[len - 1] == '\r') len--;
        if (line == 1 && len >= 8 && memcmp(s, "#version", 8) == 0) continue;
        const char *sp = memchr(s, ' ', len);
        if (!sp || sp == s || sp == s + len - 1 ||
            memchr(sp + 1, ' ', len - (size_t)(sp - s) - 1) || memchr(s, 0, len))
            return sdc_fail(SDC_ERR_FORMAT, "%s:%zu: expected two tokens separated by one space",
                            path, line);
        size_t na = (size_t)(sp - s);
        sdc_status st = merge_add(t, s, na, sp + 1, len - na - 1, path, line);
        if (st != SDC_OK) return st;
    }
    return SDC_OK;
}

sdc_status sdc_tokenizer_load(const char *vocab_json, const char *merges_txt, sdc_tokenizer **out) {
    if (!vocab_json || !merges_txt || !out)
        return sdc_fail(SDC_ERR_INVALID_ARG, "sdc_tokenizer_load: NULL argument");
    *out = NULL;
    char *vj = NULL, *mt = NULL;
    size_t nvj = 0, nmt = 0;
    sdc_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return sdc_fail(SDC_ERR_NOMEM, "out of memory (tokenizer)");
    sdc_status st = read_file(vocab_json, &vj, &nvj);
    if (st == SDC_OK) st = read_file(merges_txt, &mt, &nmt);
    if (st == SDC_OK) st = load_vocab_json(t, vocab_json, vj, nvj);
    if (st == SDC_OK) st = load_merges_txt(t, merges_txt, mt, nmt);
    if (st == SDC_OK) st = tok_finish(t, vocab_json);
    free(vj);
    free(mt);
    if (st != SDC_OK) {
        sdc_tokenizer_free(t);
        return st;
    }
    *out = t;
    return SDC_OK;
}

/* gunzip of the embedded file; *out is NUL-terminated, freed by the caller. */
static sdc_status gunzip(const unsigned char *gz, size_t n, char **out, size_t *len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return sdc_fail(SDC_ERR_INTERNAL, "zlib: inflateInit2 failed");
    size_t cap = 4 * n + 1, used = 0;
    char *buf = malloc(cap);
    int zr = Z_OK;
    z.next_in = (unsigned char *)gz; /* zlib's API is not const-correct */
    z.avail_in = (uInt)n;
    while (buf && zr == Z_OK) {
        if (cap - used < 2) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
        z.next_out = (unsigned char *)buf + used;
        z.avail_out = (uInt)(cap - used - 1);
        zr = inflate(&z, Z_NO_FLUSH);
        used = cap - 1 - z.avail_out;
    }
    inflateEnd(&z);
    if (!buf) return sdc_fail(SDC_ERR_NOMEM, "out of memory (built-in vocabulary)");
    if (zr != Z_STREAM_END) {
        free(buf);
        return sdc_fail(SDC_ERR_INTERNAL, "built-in vocabulary: zlib error %d", zr);
    }
    buf[used] = 0;
    *out = buf;
    *len = used;
    return SDC_OK;
}

/* OpenAI CLIP's vocabulary: the 256 byte characters, the same with "</w>",
 * the joined merges of lines 1..48894 of the BPE file, then BOS and EOS. */
static sdc_status load_builtin(sdc_tokenizer *t) {
    static const char where[] = "built-in vocabulary";
    char *txt = NULL;
    size_t n = 0;
    sdc_status st = gunzip(sdc_clip_vocab_gz, sdc_clip_vocab_gz_size, &txt, &n);
    if (st != SDC_OK) return st;
    const char **line = malloc(CLIP_N_MERGES * sizeof *line);
    size_t *len = malloc(CLIP_N_MERGES * sizeof *len);
    if (!line || !len) {
        st = sdc_fail(SDC_ERR_NOMEM, "out of memory (%s)", where);
        goto done;
    }
    const char *p = memchr(txt, '\n', n); /* line 0: the file's version header */
    for (int r = 0; r < CLIP_N_MERGES; r++) {
        const char *nl = p ? memchr(p + 1, '\n', n - (size_t)(p + 1 - txt)) : NULL;
        if (!nl) {
            st = sdc_fail(SDC_ERR_INTERNAL, "%s: only %d merges", where, r);
            goto done;
        }
        line[r] = p + 1;
        len[r] = (size_t)(nl - line[r]);
        p = nl;
    }
    if ((st = tok_init(t, 512 + CLIP_N_MERGES + 2)) != SDC_OK) goto done;
    uint32_t cp[256];
    uint8_t order[256];
    byte_alphabet(cp, order);
    const char *why = "";
    for (int k = 0; k < 256 && st == SDC_OK; k++) {
        char u[4];
        size_t nu = sdc_utf8_encode(cp[order[k]], u);
        st = tok_add(t, k, u, nu, "", 0, &why);
        if (st == SDC_OK) st = tok_add(t, 256 + k, u, nu, "</w>", 4, &why);
    }
    for (int r = 0; r < CLIP_N_MERGES && st == SDC_OK; r++) {
        const char *sp = memchr(line[r], ' ', len[r]);
        if (!sp)
            st = SDC_ERR_FORMAT;
        else
            st = tok_add(t, 512 + r, line[r], (size_t)(sp - line[r]), sp + 1,
                         len[r] - (size_t)(sp - line[r]) - 1, &why);
    }
    if (st == SDC_OK) st = tok_add(t, 512 + CLIP_N_MERGES, BOS_TEXT, strlen(BOS_TEXT), "", 0, &why);
    if (st == SDC_OK) st = tok_add(t, 513 + CLIP_N_MERGES, EOS_TEXT, strlen(EOS_TEXT), "", 0, &why);
    if (st == SDC_ERR_FORMAT) st = sdc_fail(SDC_ERR_INTERNAL, "%s: %s", where, why);
    for (int r = 0; r < CLIP_N_MERGES && st == SDC_OK; r++) {
        const char *sp = memchr(line[r], ' ', len[r]);
        size_t na = (size_t)(sp - line[r]);
        st = merge_add(t, line[r], na, sp + 1, len[r] - na - 1, where, (size_t)r + 2);
    }
    if (st == SDC_OK) st = tok_finish(t, where);
done:
    free(line);
    free(len);
    free(txt);
    return st;
}

sdc_status sdc_tokenizer_load_builtin(sdc_tokenizer **out) {
    if (!out) return sdc_fail(SDC_ERR_INVALID_ARG, "sdc_tokenizer_load_builtin: NULL argument");
    *out = NULL;
    sdc_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return sdc_fail(SDC_ERR_NOMEM, "out of memory (tokenizer)");
    sdc_status st = load_builtin(t);
    if (st != SDC_OK) {
        sdc_tokenizer_free(t);
        return st;
    }
    *out = t;
    return SDC_OK;
}

/* ---- saving -------------------------------------------------------------------- */

sdc_status sdc_tokenizer_save(const sdc_tokenizer *t, const char *vocab_json,
                              const char *merges_txt) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return sdc_fail(SDC_ERR_NOMEM, "out of memory (vocab.json)");
    for (int32_t id = 0; id < t->n_tokens; id++) {
        cJSON *v = cJSON_CreateNumber(id);
        if (!v || !cJSON_AddItemToObject(root, t->text + t->off[id], v)) {
            cJSON_Delete(v);
            cJSON_Delete(root);
            return sdc_fail(SDC_ERR_NOMEM, "out of memory (vocab.json)");
        }
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return sdc_fail(SDC_ERR_NOMEM, "out of memory (vocab.json)");
    FILE *f = fopen(vocab_json, "wb");
    int ok = f && fputs(json, f) >= 0;
    if (f && fclose(f) != 0) ok = 0;
    free(json);
    if (!ok) return sdc_fail(SDC_ERR_IO, "%s: cannot write", vocab_json);
    f = fopen(merges_txt, "wb");
    ok = f && fputs("#version: 0.2\n", f) >= 0;
    for (int32_t r = 0; ok && r < t->n_merges; r++)
        ok = fprintf(f, "%s %s\n", t->text + t->off[t->merges[r][0]],
                     t->text + t->off[t->merges[r][1]]) > 0;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) return sdc_fail(SDC_ERR_IO, "%s: cannot write", merges_txt);
    return SDC_OK;
}

/* ---- tokenizing ------------------------------------------------------------------ */

#define MAX_CONTENT (SDC_CLIP_CONTEXT - 2)

/* Token ids as they come; n == limit: full, the rest of the text is not
 * needed.  ids grows (realloc) up to limit when cap is below it; a failed
 * growth sets oom. */
typedef struct tok_out {
    int32_t *ids;
    int n, cap, limit, oom;
} tok_out;

static void emit(tok_out *o, int32_t id) {
    if (o->n >= o->limit) return;
    if (o->n == o->cap) {
        int cap = o->cap < 64 ? 64 : o->cap > o->limit / 2 ? o->limit : 2 * o->cap;
        int32_t *p = realloc(o->ids, (size_t)cap * sizeof *p);
        if (!p) {
            o->oom = 1;
            o->limit = o->n;
            return;
        }
        o->ids = p;
        o->cap = cap;
    }
    o->ids[o->n++] = id;
}

typedef struct bpe_cand {
    int32_t rank, left, right, left_id, right_id, id; /* symbols left, right -> id */
} bpe_cand;

static int cand_less(const bpe_cand *a, const bpe_cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(bpe_cand *h, size_t *n, bpe_cand c) {
    size_t i = (*n)++;
    while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* BPE of one piece: its bytes as characters, "</w>" on the last, then the
 * lowest-ranked adjacent pair merged first (leftmost among equals) until no
 * pair is a merge. */
static sdc_status bpe(const sdc_tokenizer *t, const char *s, size_t n, tok_out *o) {
    if (n == 0 || o->n >= o->limit) return SDC_OK;
    const unsigned char *p = (const unsigned char *)s;
    int32_t *id = malloc(n * sizeof *id), *prev = malloc(n * sizeof *prev),
            *next = malloc(n * sizeof *next);
    bpe_cand *heap = malloc(3 * n * sizeof *heap); /* n-1 pairs + 2 per merge */
    if (!id || !prev || !next || !heap) {
        free(id);
        free(prev);
        free(next);
        free(heap);
        return sdc_fail(SDC_ERR_NOMEM, "out of memory (BPE)");
    }
    size_t nh = 0;
    for (size_t i = 0; i < n; i++) {
        id[i] = i + 1 < n ? t->byte_id[p[i]] : t->byte_end_id[p[i]];
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
#define TRY_PAIR(l, r)                                                                             \
    do {                                                                                           \
        const merge_slot *m_ = merge_find(t, id[l], id[r]);                                        \
        if (m_) heap_push(heap, &nh, (bpe_cand){m_->rank, l, r, id[l], id[r], m_->id});            \
    } while (0)
    for (int32_t i = 0; i + 1 < (int32_t)n; i++) TRY_PAIR(i, i + 1);
    while (nh) {
        bpe_cand c = heap_pop(heap, &nh);
        if (id[c.left] != c.left_id || next[c.left] != c.right || id[c.right] != c.right_id)
            continue; /* stale: a neighbour merged first */
        id[c.left] = c.id;
        id[c.right] = -1;
        next[c.left] = next[c.right];
        if (next[c.left] >= 0) prev[next[c.left]] = c.left;
        if (prev[c.left] >= 0) TRY_PAIR(prev[c.left], c.left);
        if (next[c.left] >= 0) TRY_PAIR(c.left, next[c.left]);
    }
#undef TRY_PAIR
    for (int32_t i = 0; i >= 0; i = next[i]) emit(o, id[i]); /* symbol 0 never dies */
    free(id);
    free(prev);
    free(next);
    free(heap);
    return SDC_OK;
}

static sdc_status match_fail(int rc) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return sdc_fail(SDC_ERR_INTERNAL, "tokenizer regex: %s", (char *)msg);
}

/* Splits with re; keep_gaps: the text between matches becomes pieces too
 * (tokenizers' "isolated"), else it is dropped ("removed", inverted).  Each
 * piece goes to the next stage: the byte-level split after CLIP's, BPE after
 * that. */
static sdc_status split(const sdc_tokenizer *t, const pcre2_code *re, int keep_gaps, const char *s,
                        size_t n, pcre2_match_data *md, tok_out *o) {
    size_t at = 0;
    sdc_status st = SDC_OK;
    while (at < n && st == SDC_OK && o->n < o->limit) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, md, NULL);
        size_t ms = n, me = n;
        if (rc >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            ms = ov[0];
            me = ov[1];
            if (me <= ms) return sdc_fail(SDC_ERR_INTERNAL, "tokenizer regex: empty match");
        } else if (rc != PCRE2_ERROR_NOMATCH) {
            return match_fail(rc);
        }
        if (keep_gaps && ms > at) st = bpe(t, s + at, ms - at, o);
        if (st == SDC_OK && me > ms) {
            if (re == t->re_clip)
                st = split(t, t->re_bytes, 1, s + ms, me - ms, md, o);
            else
                st = bpe(t, s + ms, me - ms, o);
        }
        at = me;
    }
    return st;
}

/* NFC, runs of white space -> " ", lower case; UTF-8 into out (reset). */
static sdc_status normalize(const uint32_t *cp, size_t n, byte_buf *out) {
    sdc_cps nfc = {0};
    sdc_status st = sdc_uni_nfc(cp, n, &nfc);
    out->len = 0;
    for (size_t i = 0; i < nfc.len && st == SDC_OK; i++) {
        char u[8];
        size_t nu;
        if (sdc_uni_is_space(nfc.cp[i])) {
            if (i > 0 && sdc_uni_is_space(nfc.cp[i - 1])) continue;
            u[0] = ' ';
            nu = 1;
        } else {
            uint32_t low[2];
            int k = sdc_uni_lower(nfc.cp[i], low);
            nu = sdc_utf8_encode(low[0], u);
            if (k == 2) nu += sdc_utf8_encode(low[1], u + nu);
        }
        st = buf_put(out, u, nu);
    }
    sdc_cps_free(&nfc);
    return st;
}

/* A segment between raw "<|endoftext|>"s: normalised, split on
 * "<|startoftext|>", the rest pre-tokenised and BPE'd. */
static sdc_status tokenize_segment(const sdc_tokenizer *t, const uint32_t *cp, size_t n,
                                   byte_buf *norm, pcre2_match_data *md, tok_out *o) {
    sdc_status st = normalize(cp, n, norm);
    const size_t nb = strlen(BOS_TEXT);
    const char *s = norm->p;
    size_t left = norm->len;
    while (st == SDC_OK && left > 0 && o->n < o->limit) {
        size_t k = 0;
        while (k + nb <= left && memcmp(s + k, BOS_TEXT, nb) != 0) k++;
        if (k + nb > left) k = left;
        st = split(t, t->re_clip, 0, s, k, md, o);
        if (k == left) break;
        emit(o, t->bos);
        s += k + nb;
        left -= k + nb;
    }
    return st;
}

/* The tokens of text[0..n) into o: raw "<|endoftext|>" is the added
 * token, matched before normalisation; the segments between are
 * tokenize_segment's. */
static sdc_status tokenize_text(const sdc_tokenizer *t, const char *text, size_t n, tok_out *o) {
    static const char eos[] = EOS_TEXT;
    const size_t ne = sizeof eos - 1;
    sdc_cps cps = {0};
    byte_buf norm = {0};
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    sdc_status st = md ? sdc_utf8_decode(text, n, &cps)
                       : sdc_fail(SDC_ERR_NOMEM, "out of memory (regex match data)");
    for (size_t i = 0, start = 0; st == SDC_OK && start <= cps.len && o->n < o->limit; i++) {
        int hit = i + ne <= cps.len;
        for (size_t j = 0; hit && j < ne; j++) hit = cps.cp[i + j] == (unsigned char)eos[j];
        if (!hit && i < cps.len) continue;
        if (i > start) /* an empty one has no tokens (and cps.cp is NULL for "") */
            st = tokenize_segment(t, cps.cp + start, i - start, &norm, md, o);
        if (!hit) break;
        emit(o, t->eos);
        start = i + ne;
        i = start - 1;
    }
    pcre2_match_data_free(md);
    sdc_cps_free(&cps);
    free(norm.p);
    if (st == SDC_OK && o->oom) st = sdc_fail(SDC_ERR_NOMEM, "out of memory (tokens)");
    return st;
}

int sdc_tokenize(const sdc_tokenizer *t, const char *text, int32_t ids[SDC_CLIP_CONTEXT]) {
    if (!t || !ids) {
        sdc_fail(SDC_ERR_INVALID_ARG, "sdc_tokenize: NULL argument");
        return -1;
    }
    if (!text) text = "";
    size_t n = strnlen(text, SDC_TOKENIZER_MAX_BYTES + 1);
    if (n > SDC_TOKENIZER_MAX_BYTES) {
        sdc_fail(SDC_ERR_INVALID_ARG, "prompt longer than %d bytes", SDC_TOKENIZER_MAX_BYTES);
        return -1;
    }
    int32_t content[MAX_CONTENT];
    tok_out o = {content, 0, MAX_CONTENT, MAX_CONTENT, 0};
    if (tokenize_text(t, text, n, &o) != SDC_OK) return -1;
    ids[0] = t->bos;
    memcpy(ids + 1, o.ids, (size_t)o.n * sizeof *ids);
    ids[o.n + 1] = t->eos;
    for (int i = o.n + 2; i < SDC_CLIP_CONTEXT; i++) ids[i] = t->pad;
    return o.n + 2;
}

sdc_status sdc_tokenize_all(const sdc_tokenizer *t, const char *text, size_t len, int32_t **ids,
                            int *n) {
    *ids = NULL;
    *n = 0;
    if (len > SDC_TOKENIZER_MAX_BYTES)
        return sdc_fail(SDC_ERR_INVALID_ARG, "prompt longer than %d bytes",
                        SDC_TOKENIZER_MAX_BYTES);
    /* bounded by the normalised text's bytes (one or more per token) */
    tok_out o = {NULL, 0, 0, INT_MAX, 0};
    sdc_status st = tokenize_text(t, text ? text : "", text ? len : 0, &o);
    if (st != SDC_OK) {
        free(o.ids);
        return st;
    }
    *ids = o.ids;
    *n = o.n;
    return SDC_OK;
}

int32_t sdc_tokenizer_special(const sdc_tokenizer *t, int which) {
    return which == SDC_TOKEN_BOS ? t->bos : which == SDC_TOKEN_EOS ? t->eos : t->pad;
}

int32_t sdc_tokenizer_find(const sdc_tokenizer *t, const char *token) {
    return tok_find(t, token, strlen(token));
}
