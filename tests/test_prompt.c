/* A1111's prompt syntax against the Python rewrite of its parsers
 * (tests/fixtures/prompts_ref.json, scripts/fixtures_lib/prompts.py):
 * every prompt's runs (bytes, weight within 1e-12 relative, BREAK marks),
 * tags and tag-free text, with and without SDC_PARSE_TAGS; the plain mode;
 * hostile input (length cap, deep nesting, overflowing weights, invalid
 * UTF-8, stray bytes). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "text/prompt.h"

/* Tolerance of a weight: the C side multiplies in A1111's order, so the
 * doubles are equal; 1e-12 relative leaves room for a libm strtod. */
#define W_TOL 1e-12

static cJSON *g_fix;

static char *case_text(const cJSON *c) {
    const cJSON *rep = cJSON_GetObjectItem(c, "repeat");
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

static int weight_eq(double got, double want) {
    if (isnan(want)) return isnan(got);
    if (isinf(want) || want == 0) return got == want;
    return fabs(got - want) <= W_TOL * fabs(want);
}

/* runs of p against the JSON [[text, "weight"]] (null: parsing fails) */
static void check_runs(const char *name, sdc_status st, const sdc_prompt *p, const cJSON *want) {
    if (cJSON_IsNull(want)) {
        CHECKF(st == SDC_ERR_INVALID_ARG, "%s: A1111 fails, sdc gave %d", name, (int)st);
        return;
    }
    CHECKF(st == SDC_OK, "%s: %s", name, sdc_last_error());
    if (st != SDC_OK) return;
    const sdc_prompt_run *r;
    int n = sdc_prompt_runs(p, &r), nw = cJSON_GetArraySize(want);
    CHECKF(n == nw, "%s: %d runs, want %d", name, n, nw);
    for (int i = 0; i < n && i < nw; i++) {
        const cJSON *w = cJSON_GetArrayItem(want, i);
        const char *wt = cJSON_GetArrayItem(w, 0)->valuestring;
        double ww = strtod(cJSON_GetArrayItem(w, 1)->valuestring, NULL);
        CHECKF(r[i].len == strlen(wt) && memcmp(r[i].text, wt, r[i].len) == 0,
               "%s: run %d \"%.*s\", want \"%s\"", name, i, (int)(r[i].len < 60 ? r[i].len : 60),
               r[i].text, wt);
        CHECKF(weight_eq(r[i].weight, ww), "%s: run %d weight %.17g, want %.17g", name, i,
               r[i].weight, ww);
        int brk = strcmp(wt, "BREAK") == 0 && ww == -1.0;
        CHECKF(r[i].is_break == brk, "%s: run %d is_break %d", name, i, r[i].is_break);
    }
}

static void test_matches_reference(void) {
    const cJSON *cases = cJSON_GetObjectItem(g_fix, "cases"), *c;
    int count = 0;
    cJSON_ArrayForEach(c, cases) {
        char *text = case_text(c), name[80];
        snprintf(name, sizeof name, "case %d \"%.40s\"", count, text);
        count++;
        /* attention only */
        sdc_prompt *p = NULL;
        sdc_status st = sdc_prompt_parse(text, 0, &p);
        check_runs(name, st, p, cJSON_GetObjectItem(c, "runs"));
        if (p) {
            const sdc_prompt_tag *tg;
            CHECK(sdc_prompt_tags(p, &tg) == 0 && tg == NULL);
            CHECK(strcmp(sdc_prompt_text(p), text) == 0);
        }
        sdc_prompt_free(p);
        /* tags, then attention */
        p = NULL;
        st = sdc_prompt_parse(text, SDC_PARSE_TAGS, &p);
        check_runs(name, st, p, cJSON_GetObjectItem(c, "tag_runs"));
        if (p) {
            CHECKF(strcmp(sdc_prompt_text(p), cJSON_GetObjectItem(c, "stripped")->valuestring) == 0,
                   "%s: text \"%s\"", name, sdc_prompt_text(p));
            const cJSON *wt = cJSON_GetObjectItem(c, "tags");
            const sdc_prompt_tag *tg;
            int nt = sdc_prompt_tags(p, &tg), nwt = cJSON_GetArraySize(wt);
            CHECKF(nt == nwt, "%s: %d tags, want %d", name, nt, nwt);
            for (int i = 0; i < nt && i < nwt; i++) {
                const cJSON *w = cJSON_GetArrayItem(wt, i), *args = cJSON_GetObjectItem(w, "args");
                CHECKF(strcmp(tg[i].kind, cJSON_GetObjectItem(w, "kind")->valuestring) == 0,
                       "%s: tag %d kind %s", name, i, tg[i].kind);
                CHECKF(tg[i].n_args == cJSON_GetArraySize(args), "%s: tag %d: %d args", name, i,
                       tg[i].n_args);
                for (int a = 0; a < tg[i].n_args && a < cJSON_GetArraySize(args); a++)
                    CHECKF(strcmp(tg[i].args[a], cJSON_GetArrayItem(args, a)->valuestring) == 0,
                           "%s: tag %d arg %d \"%s\"", name, i, a, tg[i].args[a]);
                CHECK(tg[i].name == tg[i].args[0]);
                const cJSON *ok = cJSON_GetObjectItem(w, "weight_ok");
                int ws = cJSON_IsNull(ok) ? SDC_TAG_WEIGHT_NONE
                         : cJSON_IsTrue(ok) ? SDC_TAG_WEIGHT_OK : SDC_TAG_WEIGHT_BAD;
                CHECKF(tg[i].weight_status == ws, "%s: tag %d weight_status %d, want %d", name, i,
                       tg[i].weight_status, ws);
                double ww = strtod(cJSON_GetObjectItem(w, "weight")->valuestring, NULL);
                CHECKF(weight_eq(tg[i].weight, ww), "%s: tag %d weight %.17g, want %.17g", name,
                       i, tg[i].weight, ww);
                /* the tag's bytes in the input */
                CHECK(tg[i].offset + tg[i].len <= strlen(text) && text[tg[i].offset] == '<' &&
                      text[tg[i].offset + tg[i].len - 1] == '>');
            }
        }
        sdc_prompt_free(p);
        free(text);
    }
    printf("  %d reference prompts\n", count);
    CHECK(count >= 60);
}

static void test_plain(void) {
    const char *s = "a (b:1.5) [c] BREAK d \\( <lora:x:0.5> e";
    sdc_prompt *p = NULL;
    CHECK(sdc_prompt_parse(s, SDC_PARSE_PLAIN, &p) == SDC_OK);
    const sdc_prompt_run *r;
    CHECK(sdc_prompt_runs(p, &r) == 1);
    CHECK(r[0].len == strlen(s) && memcmp(r[0].text, s, r[0].len) == 0 && r[0].weight == 1.0 &&
          !r[0].is_break);
    sdc_prompt_free(p);
    CHECK(sdc_prompt_parse(s, SDC_PARSE_PLAIN | SDC_PARSE_TAGS, &p) == SDC_OK);
    const char *want = "a (b:1.5) [c] BREAK d \\(  e";
    CHECK(sdc_prompt_runs(p, &r) == 1);
    CHECK(r[0].len == strlen(want) && memcmp(r[0].text, want, r[0].len) == 0);
    const sdc_prompt_tag *tg;
    CHECK(sdc_prompt_tags(p, &tg) == 1 && strcmp(tg[0].name, "x") == 0 && tg[0].weight == 0.5);
    sdc_prompt_free(p);
    CHECK(sdc_prompt_parse("", SDC_PARSE_PLAIN, &p) == SDC_OK);
    CHECK(sdc_prompt_runs(p, &r) == 1 && r[0].len == 0 && r[0].weight == 1.0);
    sdc_prompt_free(p);
}

static void test_hostile(void) {
    sdc_prompt *p = NULL;
    const sdc_prompt_run *r;
    /* NULL is "" */
    CHECK(sdc_prompt_parse(NULL, 0, &p) == SDC_OK && sdc_prompt_runs(p, &r) == 1 && r[0].len == 0);
    sdc_prompt_free(p);
    CHECK(sdc_prompt_parse("a", 0x100, &p) == SDC_ERR_INVALID_ARG && p == NULL);
    /* the cap: 64 KiB passes, one byte more does not */
    char *big = malloc(SDC_PROMPT_MAX_BYTES + 2);
    memset(big, 'a', SDC_PROMPT_MAX_BYTES + 1);
    big[SDC_PROMPT_MAX_BYTES + 1] = 0;
    CHECK(sdc_prompt_parse(big, 0, &p) == SDC_ERR_INVALID_ARG && p == NULL);
    CHECK(strstr(sdc_last_error(), "longer than") != NULL);
    big[SDC_PROMPT_MAX_BYTES] = 0;
    CHECK(sdc_prompt_parse(big, SDC_PARSE_TAGS, &p) == SDC_OK);
    CHECK(sdc_prompt_runs(p, &r) == 1 && r[0].len == SDC_PROMPT_MAX_BYTES);
    sdc_prompt_free(p);
    /* the worst case for time: 32768 brackets open over 32768 runs */
    for (int i = 0; i < SDC_PROMPT_MAX_BYTES; i += 2) big[i] = '(', big[i + 1] = 'a';
    double t0 = t_seconds();
    CHECK(sdc_prompt_parse(big, 0, &p) == SDC_OK);
    printf("  64 KiB of \"(a\": %.2f s\n", t_seconds() - t0);
    int n = sdc_prompt_runs(p, &r);
    CHECK(n >= 1 && r[0].weight == 1.1 && isinf(r[n - 1].weight) && r[n - 1].weight > 0);
    sdc_prompt_free(p);
    /* deep nesting, no recursion: weights overflow to inf (round); under
     * "[" they fall into the subnormals and stop at 5 * 2^-1074, which
     * times 1/1.1 rounds back to itself (Python: 1.0 times 1 / 1.1, 40000
     * times, is 2.5e-323); inf * 0 is NaN */
    memset(big, '(', 40000);
    strcpy(big + 40000, "a");
    CHECK(sdc_prompt_parse(big, 0, &p) == SDC_OK && sdc_prompt_runs(p, &r) == 1 && isinf(r[0].weight));
    sdc_prompt_free(p);
    memset(big, '[', 40000);
    CHECK(sdc_prompt_parse(big, 0, &p) == SDC_OK && sdc_prompt_runs(p, &r) == 1 &&
          r[0].weight == 2.5e-323);
    sdc_prompt_free(p);
    memset(big, '(', 10000);
    big[10000] = 'a';
    memset(big + 10001, ')', 9999);
    strcpy(big + 20000, ":0)");
    CHECK(sdc_prompt_parse(big, 0, &p) == SDC_OK && sdc_prompt_runs(p, &r) == 1 && isnan(r[0].weight));
    sdc_prompt_free(p);
    /* invalid UTF-8 and every byte value pass through byte for byte */
    const char bad[] = "\xff(\xc3\x41:1.5)\xe2\x82 BREAK \xf0\x9f\x98";
    CHECK(sdc_prompt_parse(bad, SDC_PARSE_TAGS, &p) == SDC_OK);
    n = sdc_prompt_runs(p, &r);
    CHECK(n == 5);
    if (n == 5) {
        CHECK(r[0].len == 1 && r[0].text[0] == '\xff' && r[0].weight == 1.0);
        CHECK(r[1].len == 2 && memcmp(r[1].text, "\xc3\x41", 2) == 0 && r[1].weight == 1.5);
        CHECK(r[2].len == 2 && memcmp(r[2].text, "\xe2\x82", 2) == 0);
        CHECK(r[3].is_break);
        CHECK(r[4].len == 3 && memcmp(r[4].text, "\xf0\x9f\x98", 3) == 0);
    }
    sdc_prompt_free(p);
    for (int b = 1; b < 256; b++) {
        char s[4] = {'x', (char)b, 'y', 0};
        CHECK(sdc_prompt_parse(s, SDC_PARSE_TAGS, &p) == SDC_OK);
        n = sdc_prompt_runs(p, &r);
        size_t tot = 0;
        for (int i = 0; i < n; i++) tot += r[i].len;
        /* "\\" vanishes before "y", "(" and "[" open (stray ")" "]" are text) */
        CHECK(tot == (strchr("\\([", b) ? 2u : 3u));
        sdc_prompt_free(p);
    }
    /* a weight A1111 matches but cannot read */
    CHECK(sdc_prompt_parse("(a:1.2.3)", 0, &p) == SDC_ERR_INVALID_ARG && p == NULL);
    CHECK(strstr(sdc_last_error(), "1.2.3") != NULL);
    /* many tags; a tag with a huge name */
    for (int i = 0; i + 8 <= SDC_PROMPT_MAX_BYTES; i += 8) memcpy(big + i, "<lora:n>", 8);
    big[SDC_PROMPT_MAX_BYTES] = 0;
    CHECK(sdc_prompt_parse(big, SDC_PARSE_TAGS, &p) == SDC_OK);
    const sdc_prompt_tag *tg;
    CHECK(sdc_prompt_tags(p, &tg) == SDC_PROMPT_MAX_BYTES / 8 && strcmp(sdc_prompt_text(p), "") == 0);
    sdc_prompt_free(p);
    memset(big, 'n', SDC_PROMPT_MAX_BYTES);
    memcpy(big, "<lora:", 6);
    big[SDC_PROMPT_MAX_BYTES - 1] = '>';
    CHECK(sdc_prompt_parse(big, SDC_PARSE_TAGS, &p) == SDC_OK);
    CHECK(sdc_prompt_tags(p, &tg) == 1 && strlen(tg[0].name) == SDC_PROMPT_MAX_BYTES - 7);
    sdc_prompt_free(p);
    free(big);
}

int main(void) {
    size_t n = 0;
    char *json = t_read_file(t_fixture("prompts_ref.json"), &n);
    CHECKF(json != NULL, "cannot read %s", t_fixture("prompts_ref.json"));
    g_fix = json ? cJSON_ParseWithLength(json, n) : NULL;
    free(json);
    CHECK(g_fix != NULL);
    if (g_fix) RUN(test_matches_reference);
    RUN(test_plain);
    RUN(test_hostile);
    cJSON_Delete(g_fix);
    return t_summary();
}
