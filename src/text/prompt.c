/* A1111's prompt syntax (prompt.h): extra-network tags, then emphasis as
 * modules/prompt_parser.py parse_prompt_attention does it, token by token
 * in the order of its re_attention alternatives. */
#include "text/prompt.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/unicode.h"

struct sdc_prompt {
    char *text;          /* the prompt with tags cut out, NUL-terminated */
    char *buf;           /* the runs' bytes, back to back */
    sdc_prompt_run *runs;
    int n_runs;
    sdc_prompt_tag *tags;
    int n_tags;
    char *tag_strings;   /* every tag's kind and args, NUL-terminated */
    const char **tag_args;
};

/* ---- characters: Python's Unicode classes --------------------------------- */

/* The code point at s[i..n) and its length; an ill-formed byte is one
 * "character" with code point -1. */
static int32_t dec(const char *s, size_t i, size_t n, size_t *len) {
    const unsigned char *u = (const unsigned char *)s + i;
    size_t r = n - i;
    unsigned c = u[0];
    *len = 1;
    if (c < 0x80) return (int32_t)c;
    int k;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) k = 1, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) k = 2, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) k = 3, cp = c & 0x07, min = 0x10000;
    else return -1;
    if ((size_t)k >= r) return -1;
    for (int j = 1; j <= k; j++) {
        if ((u[j] & 0xc0) != 0x80) return -1;
        cp = (cp << 6) | (u[j] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
    *len = (size_t)k + 1;
    return (int32_t)cp;
}

/* The character that ends at s[e] (exclusive), not starting before lo. */
static int32_t dec_back(const char *s, size_t lo, size_t e, size_t *len) {
    for (size_t k = 2; k <= 4 && k <= e - lo; k++) {
        size_t l;
        int32_t cp = dec(s, e - k, e, &l);
        if (cp >= 0 && l == k) {
            *len = k;
            return cp;
        }
    }
    return dec(s, e - 1, e, len);
}

/* str.isspace() */
static int is_space(int32_t c) {
    if (c < 0) return 0;
    if (c < 0x80) return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
    return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
           c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* The zero of every run of ten Nd digits (Unicode 14, Python 3.11's
 * unicodedata: every Nd code point is zero + 0..9 of one of these). */
static const uint32_t nd_zero[] = {
    0x30, 0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6,
    0xd66, 0xde6, 0xe50, 0xed0, 0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0,
    0x1a80, 0x1a90, 0x1b50, 0x1bb0, 0x1c40, 0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0,
    0xa9f0, 0xaa50, 0xabf0, 0xff10, 0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136,
    0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650, 0x116c0, 0x11730, 0x118e0, 0x11950,
    0x11c50, 0x11d50, 0x11da0, 0x16a60, 0x16ac0, 0x16b50, 0x1d7ce, 0x1d7d8, 0x1d7e2,
    0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0};

/* The value 0..9 of a decimal digit (\d), else -1. */
static int digit(int32_t c) {
    if (c < 0) return -1;
    if (c < 0x80) return c >= '0' && c <= '9' ? c - '0' : -1;
    for (size_t i = 1; i < sizeof nd_zero / sizeof nd_zero[0]; i++)
        if ((uint32_t)c >= nd_zero[i] && (uint32_t)c < nd_zero[i] + 10) return (int)(c - (int32_t)nd_zero[i]);
    return -1;
}

static int in_ranges(const sdc_uni_range *t, size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < t[mid].first) hi = mid;
        else if (c > t[mid].last) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* \w: letters, numbers, underscore */
static int is_word(int32_t c) {
    if (c < 0) return 0;
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    return in_ranges(sdc_uni_letter_table, sdc_uni_letter_table_count, (uint32_t)c) ||
           in_ranges(sdc_uni_number_table, sdc_uni_number_table_count, (uint32_t)c);
}

/* ---- numbers as Python's float() reads them ------------------------------- */

/* float(s[0..n)) for the forms Python accepts (white space around, sign,
 * digits of any script with single "_" between them, ".", exponent, inf,
 * infinity, nan); returns 0 if it would raise ValueError, -1 out of memory. */
static int py_float(const char *s, size_t n, double *out) {
    size_t a = 0, b = n, l;
    int32_t c;
    while (a < b && is_space(c = dec(s, a, b, &l))) a += l;
    while (b > a && is_space(c = dec_back(s, a, b, &l))) b -= l;
    if (a == b) return 0;
    char *t = malloc(b - a + 1);
    if (!t) return -1;
    size_t m = 0;
    int prev_digit = 0;
    for (size_t i = a; i < b; i += l) {
        c = dec(s, i, b, &l);
        int d = digit(c);
        if (d >= 0) {
            t[m++] = (char)('0' + d), prev_digit = 1;
            continue;
        }
        if (c == '_') { /* only between two digits */
            size_t l2;
            if (!prev_digit || i + 1 >= b || digit(dec(s, i + 1, b, &l2)) < 0) goto bad;
            prev_digit = 0;
            continue;
        }
        if (c < 0 || c >= 0x80) goto bad;
        t[m++] = (char)c, prev_digit = 0;
    }
    t[m] = 0;
    /* grammar check: [+-] (inf|infinity|nan | D+[.D*] | .D+) [e[+-]D+] */
    size_t i = 0;
    if (t[i] == '+' || t[i] == '-') i++;
    const char *w = t + i;
    size_t wl = m - i;
    int special = 0;
    {
        static const char *names[] = {"inf", "infinity", "nan"};
        for (int k = 0; k < 3; k++) {
            size_t nl = strlen(names[k]);
            if (wl != nl) continue;
            size_t j = 0;
            while (j < nl && (w[j] | 0x20) == names[k][j]) j++;
            if (j == nl) special = k == 2 ? 2 : 1;
        }
    }
    if (special) {
        int neg = t[0] == '-';
        free(t);
        *out = special == 2 ? (neg ? -NAN : NAN) : (neg ? -INFINITY : INFINITY);
        return 1;
    }
    size_t nd = 0;
    while (t[i] >= '0' && t[i] <= '9') i++, nd++;
    if (t[i] == '.') {
        i++;
        while (t[i] >= '0' && t[i] <= '9') i++, nd++;
    }
    if (nd == 0) goto bad;
    if (t[i] == 'e' || t[i] == 'E') {
        i++;
        if (t[i] == '+' || t[i] == '-') i++;
        size_t ne = 0;
        while (t[i] >= '0' && t[i] <= '9') i++, ne++;
        if (ne == 0) goto bad;
    }
    if (i != m) goto bad;
    *out = strtod(t, NULL); /* correctly rounded (glibc); "C" numeric locale */
    free(t);
    return 1;
bad:
    free(t);
    return 0;
}

/* ---- step 1: extra-network tags ------------------------------------------- */

/* The tag <(\w+):([^>]+)> at s[i] ('<'), if any: its end (past '>') in
 * *end, the ':' in *colon. */
static int tag_at(const char *s, size_t i, size_t n, size_t *colon, size_t *end) {
    size_t j = i + 1, l;
    while (j < n && is_word(dec(s, j, n, &l))) j += l;
    if (j == i + 1 || j >= n || s[j] != ':') return 0;
    const char *gt = memchr(s + j + 1, '>', n - j - 1);
    if (!gt || gt == s + j + 1) return 0;
    *colon = j;
    *end = (size_t)(gt - s) + 1;
    return 1;
}

static sdc_status cut_tags(sdc_prompt *p, const char *s, size_t n) {
    /* First pass: count tags, args and bytes. */
    size_t nt = 0, na = 0, bytes = 0, colon, end;
    for (size_t i = 0; i < n;) {
        if (s[i] == '<' && tag_at(s, i, n, &colon, &end)) {
            nt++;
            na++;
            for (size_t k = colon + 1; k + 1 < end; k++) na += s[k] == ':';
            bytes += end - i; /* kind + NUL + args with NULs for ':' and '>' */
            i = end;
        } else {
            i++;
        }
    }
    size_t o = 0;
    if (nt == 0) {
        memcpy(p->text, s, n);
        p->text[n] = 0;
        return SDC_OK;
    }
    p->tags = calloc(nt, sizeof *p->tags);
    p->tag_args = calloc(na, sizeof *p->tag_args);
    p->tag_strings = malloc(bytes);
    if (!p->tags || !p->tag_args || !p->tag_strings) return sdc_fail(SDC_ERR_NOMEM, "prompt: out of memory");
    size_t ta = 0, ts = 0;
    for (size_t i = 0; i < n;) {
        if (!(s[i] == '<' && tag_at(s, i, n, &colon, &end))) {
            p->text[o++] = s[i++];
            continue;
        }
        sdc_prompt_tag *t = &p->tags[p->n_tags++];
        t->offset = i;
        t->len = end - i;
        char *k = p->tag_strings + ts;
        memcpy(k, s + i + 1, colon - i - 1);
        k[colon - i - 1] = 0;
        ts += colon - i;
        t->kind = k;
        t->args = &p->tag_args[ta];
        for (size_t a = colon + 1;;) { /* Python's args.split(":") */
            size_t b = a;
            while (b < end - 1 && s[b] != ':') b++;
            char *arg = p->tag_strings + ts;
            memcpy(arg, s + a, b - a);
            arg[b - a] = 0;
            ts += b - a + 1;
            p->tag_args[ta++] = arg;
            t->n_args++;
            if (b == end - 1) break;
            a = b + 1;
        }
        t->name = t->args[0];
        t->weight = 1.0;
        t->weight_status = SDC_TAG_WEIGHT_NONE;
        if (t->n_args > 1) {
            int r = py_float(t->args[1], strlen(t->args[1]), &t->weight);
            if (r < 0) return sdc_fail(SDC_ERR_NOMEM, "prompt: out of memory");
            t->weight_status = r ? SDC_TAG_WEIGHT_OK : SDC_TAG_WEIGHT_BAD;
            if (!r) t->weight = 1.0;
        }
        i = end;
    }
    p->text[o] = 0;
    return SDC_OK;
}

/* ---- step 2: emphasis ----------------------------------------------------- */

typedef struct run {
    size_t off, len; /* in buf */
    double w;
} run;

typedef struct parser {
    const char *s; /* the text */
    size_t n;
    char *buf;
    size_t nbuf;
    run *res;
    size_t nres;
    size_t *round, *square; /* stacks of res indexes */
    size_t nround, nsquare;
} parser;

static void push(parser *q, const char *t, size_t len, double w) {
    memcpy(q->buf + q->nbuf, t, len);
    q->res[q->nres++] = (run){q->nbuf, len, w};
    q->nbuf += len;
}

/* res[from..] *= m, in order (A1111's multiply_range) */
static void multiply_range(parser *q, size_t from, double m) {
    for (size_t i = from; i < q->nres; i++) q->res[i].w *= m;
}

/* The length of the \s* run at s[i..e) */
static size_t spaces_fwd(const char *s, size_t i, size_t e) {
    size_t j = i, l;
    while (j < e && is_space(dec(s, j, e, &l))) j += l;
    return j - i;
}

/* A text token s[a..b): re.split(re_break, ...) with a BREAK run between
 * the parts.  \b is judged inside the token (Python splits the token). */
static void text_token(parser *q, size_t a, size_t b) {
    const char *s = q->s;
    size_t pos = a, seg = a;
    for (size_t k = a; k + 5 <= b; k++) {
        if (memcmp(s + k, "BREAK", 5) != 0) continue;
        size_t l;
        if (k > a && is_word(dec_back(s, a, k, &l))) continue;
        if (k + 5 < b && is_word(dec(s, k + 5, b, &l))) continue;
        size_t ms = k; /* the \s* before, not before the search start */
        while (ms > pos) {
            int32_t c = dec_back(s, pos, ms, &l);
            if (!is_space(c)) break;
            ms -= l;
        }
        size_t me = k + 5 + spaces_fwd(s, k + 5, b);
        push(q, s + seg, ms - seg, 1.0);
        push(q, "BREAK", 5, -1.0);
        seg = pos = me;
        k = me - 1;
    }
    push(q, s + seg, b - seg, 1.0);
}

/* ":" \s* ([+-]?[.\d]+) \s* ")" at s[i]: the match's end, the number's
 * span; 0 if it does not match. */
static size_t weight_at(const char *s, size_t i, size_t n, size_t *na, size_t *nb) {
    size_t j = i + 1, l;
    j += spaces_fwd(s, j, n);
    *na = j;
    if (j < n && (s[j] == '+' || s[j] == '-')) j++;
    size_t d0 = j;
    for (;;) {
        if (j < n && s[j] == '.') {
            j++;
            continue;
        }
        if (j < n && digit(dec(s, j, n, &l)) >= 0) {
            j += l;
            continue;
        }
        break;
    }
    if (j == d0) return 0;
    *nb = j;
    j += spaces_fwd(s, j, n);
    if (j >= n || s[j] != ')') return 0;
    return j + 1;
}

static sdc_status emphasis(parser *q) {
    const char *s = q->s;
    size_t n = q->n;
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '\\') {
            if (i + 1 < n && strchr("()[]\\", s[i + 1]) && s[i + 1]) {
                push(q, s + i + 1, 1, 1.0);
                i += 2;
            } else { /* a lone backslash: text[1:] == "" */
                push(q, "", 0, 1.0);
                i += 1;
            }
        } else if (c == '(') {
            q->round[q->nround++] = q->nres;
            i++;
        } else if (c == '[') {
            q->square[q->nsquare++] = q->nres;
            i++;
        } else if (c == ':') {
            size_t na, nb, e = weight_at(s, i, n, &na, &nb);
            if (e && q->nround) {
                double w;
                int r = py_float(s + na, nb - na, &w);
                if (r < 0) return sdc_fail(SDC_ERR_NOMEM, "prompt: out of memory");
                if (!r)
                    return sdc_fail(SDC_ERR_INVALID_ARG,
                                    "prompt: the weight \"%.*s\" at byte %zu is not a number "
                                    "(A1111 fails on it too)", (int)(nb - na < 40 ? nb - na : 40),
                                    s + na, na);
                multiply_range(q, q->round[--q->nround], w);
                i = e;
            } else if (e) { /* no "(" open: the whole match is text */
                text_token(q, i, e);
                i = e;
            } else {
                push(q, ":", 1, 1.0);
                i++;
            }
        } else if (c == ')' && q->nround) {
            multiply_range(q, q->round[--q->nround], 1.1);
            i++;
        } else if (c == ']' && q->nsquare) {
            multiply_range(q, q->square[--q->nsquare], 1 / 1.1);
            i++;
        } else if (c == ')' || c == ']') {
            push(q, s + i, 1, 1.0);
            i++;
        } else {
            size_t e = i;
            while (e < n && !strchr("\\()[]:", s[e])) e++;
            if (e == i) e = i + 1; /* NUL cannot occur: n excludes it */
            text_token(q, i, e);
            i = e;
        }
    }
    for (size_t k = 0; k < q->nround; k++) multiply_range(q, q->round[k], 1.1);
    for (size_t k = 0; k < q->nsquare; k++) multiply_range(q, q->square[k], 1 / 1.1);
    if (q->nres == 0) push(q, "", 0, 1.0);
    /* merge neighbours of equal weight (==: 0 and -0 merge, NaN never) */
    size_t m = 0;
    for (size_t k = 1; k < q->nres; k++) {
        if (q->res[m].w == q->res[k].w)
            q->res[m].len += q->res[k].len;
        else
            q->res[++m] = q->res[k];
    }
    q->nres = m + 1;
    return SDC_OK;
}

/* ---- the handle ----------------------------------------------------------- */

sdc_status sdc_prompt_parse(const char *utf8, int flags, sdc_prompt **out) {
    *out = NULL;
    if (!utf8) utf8 = "";
    size_t n = strnlen(utf8, SDC_PROMPT_MAX_BYTES + 1);
    if (n > SDC_PROMPT_MAX_BYTES)
        return sdc_fail(SDC_ERR_INVALID_ARG, "prompt: longer than %d bytes", SDC_PROMPT_MAX_BYTES);
    if (flags & ~(SDC_PARSE_TAGS | SDC_PARSE_PLAIN))
        return sdc_fail(SDC_ERR_INVALID_ARG, "prompt: unknown flags 0x%x", (unsigned)flags);
    sdc_prompt *p = calloc(1, sizeof *p);
    parser q = {0};
    sdc_status st = SDC_OK;
    if (!p || !(p->text = malloc(n + 1))) goto nomem;
    if (flags & SDC_PARSE_TAGS) {
        if ((st = cut_tags(p, utf8, n)) != SDC_OK) goto fail;
    } else {
        memcpy(p->text, utf8, n + 1);
    }
    q.s = p->text;
    q.n = strlen(p->text);
    /* Every input byte makes at most one run; BREAK's 5 bytes replace at
     * least 5: n bytes and n + 1 runs suffice. */
    q.buf = malloc(q.n + 1);
    q.res = malloc((q.n + 1) * sizeof *q.res);
    q.round = malloc((q.n + 1) * sizeof *q.round);
    q.square = malloc((q.n + 1) * sizeof *q.square);
    if (!q.buf || !q.res || !q.round || !q.square) goto nomem;
    if (flags & SDC_PARSE_PLAIN)
        push(&q, q.s, q.n, 1.0);
    else if ((st = emphasis(&q)) != SDC_OK)
        goto fail;
    p->runs = malloc(q.nres * sizeof *p->runs);
    if (!p->runs) goto nomem;
    for (size_t k = 0; k < q.nres; k++) {
        sdc_prompt_run *r = &p->runs[k];
        r->text = q.buf + q.res[k].off;
        r->len = q.res[k].len;
        r->weight = q.res[k].w;
        r->is_break = r->len == 5 && memcmp(r->text, "BREAK", 5) == 0 && r->weight == -1.0;
    }
    p->n_runs = (int)q.nres;
    p->buf = q.buf;
    free(q.res);
    free(q.round);
    free(q.square);
    *out = p;
    return SDC_OK;
nomem:
    st = sdc_fail(SDC_ERR_NOMEM, "prompt: out of memory");
fail:
    free(q.buf);
    free(q.res);
    free(q.round);
    free(q.square);
    sdc_prompt_free(p);
    return st;
}

int sdc_prompt_runs(const sdc_prompt *p, const sdc_prompt_run **runs) {
    *runs = p->runs;
    return p->n_runs;
}

int sdc_prompt_tags(const sdc_prompt *p, const sdc_prompt_tag **tags) {
    *tags = p->n_tags ? p->tags : NULL;
    return p->n_tags;
}

const char *sdc_prompt_text(const sdc_prompt *p) { return p->text; }

void sdc_prompt_free(sdc_prompt *p) {
    if (!p) return;
    free(p->text);
    free(p->buf);
    free(p->runs);
    free(p->tags);
    free(p->tag_args);
    free(p->tag_strings);
    free(p);
}
