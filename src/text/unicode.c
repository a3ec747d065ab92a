#include "text/unicode.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void sdc_cps_free(sdc_cps *v) {
    free(v->cp);
    v->cp = NULL;
    v->len = v->cap = 0;
}

static sdc_status cps_reserve(sdc_cps *v, size_t extra) {
    size_t need;
    if (!sdc_add_size(v->len, extra, &need)) return sdc_fail(SDC_ERR_NOMEM, "text too long");
    if (need <= v->cap) return SDC_OK;
    size_t cap = v->cap ? v->cap : 64, bytes;
    while (cap < need) {
        if (!sdc_mul_size(cap, 2, &cap)) return sdc_fail(SDC_ERR_NOMEM, "text too long");
    }
    if (!sdc_mul_size(cap, sizeof *v->cp, &bytes)) return sdc_fail(SDC_ERR_NOMEM, "text too long");
    uint32_t *p = realloc(v->cp, bytes);
    if (!p) return sdc_fail(SDC_ERR_NOMEM, "out of memory (text buffer)");
    v->cp = p;
    v->cap = cap;
    return SDC_OK;
}

static sdc_status cps_push(sdc_cps *v, uint32_t cp) {
    if (v->len == v->cap) {
        sdc_status s = cps_reserve(v, 1);
        if (s != SDC_OK) return s;
    }
    v->cp[v->len++] = cp;
    return SDC_OK;
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* Unicode 14, table 3-7 (well-formed UTF-8); a maximal subpart of an
 * ill-formed sequence becomes one U+FFFD, as Python's decoder does. */
sdc_status sdc_utf8_decode(const char *s, size_t n, sdc_cps *out) {
    const unsigned char *p = (const unsigned char *)s;
    sdc_status st = cps_reserve(out, n);
    if (st != SDC_OK) return st;
    size_t i = 0;
    while (i < n) {
        unsigned b = p[i];
        if (b < 0x80) {
            out->cp[out->len++] = b;
            i++;
            continue;
        }
        int len;
        unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
        uint32_t cp;
        if (b >= 0xC2 && b <= 0xDF) {
            len = 2;
            cp = b & 0x1F;
        } else if (b >= 0xE0 && b <= 0xEF) {
            len = 3;
            cp = b & 0x0F;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            len = 4;
            cp = b & 0x07;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        } else {
            out->cp[out->len++] = 0xFFFD;
            i++;
            continue;
        }
        int k = 1;
        for (; k < len && i + (size_t)k < n; k++) {
            unsigned c = p[i + (size_t)k];
            unsigned l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
            if (c < l || c > h) break;
            cp = cp << 6 | (c & 0x3F);
        }
        out->cp[out->len++] = k == len ? cp : 0xFFFD;
        i += (size_t)k;
    }
    return SDC_OK;
}

size_t sdc_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- table look-ups ------------------------------------------------------ */

static const sdc_uni_map *map_find(const sdc_uni_map *t, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t[mid].cp < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && t[lo].cp == cp ? &t[lo] : NULL;
}

int sdc_uni_is_space(uint32_t cp) {
    for (size_t i = 0; i < sdc_uni_space_table_count && sdc_uni_space_table[i] <= cp; i++)
        if (sdc_uni_space_table[i] == cp) return 1;
    return 0;
}

int sdc_uni_ccc(uint32_t cp) {
    size_t lo = 0, hi = sdc_uni_ccc_table_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sdc_uni_ccc_table[mid].last < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < sdc_uni_ccc_table_count && sdc_uni_ccc_table[lo].first <= cp
               ? sdc_uni_ccc_table[lo].ccc
               : 0;
}

int sdc_uni_lower(uint32_t cp, uint32_t out[2]) {
    const sdc_uni_map *m = map_find(sdc_uni_lower_table, sdc_uni_lower_table_count, cp);
    if (!m) {
        out[0] = cp;
        return 1;
    }
    out[0] = m->a;
    out[1] = m->b;
    return m->b ? 2 : 1;
}

/* ---- NFC (UAX #15) ------------------------------------------------------- */

/* Hangul syllables, algorithmic (Unicode 14, section 3.12). */
enum {
    H_SBASE = 0xAC00,
    H_LBASE = 0x1100,
    H_VBASE = 0x1161,
    H_TBASE = 0x11A7,
    H_LCOUNT = 19,
    H_VCOUNT = 21,
    H_TCOUNT = 28,
    H_NCOUNT = H_VCOUNT * H_TCOUNT,
    H_SCOUNT = H_LCOUNT * H_NCOUNT
};

static sdc_status decompose(uint32_t cp, sdc_cps *out, int depth) {
    if (depth > 8)
        return sdc_fail(SDC_ERR_INTERNAL, "decomposition too deep at U+%04X", (unsigned)cp);
    if (cp >= H_SBASE && cp < H_SBASE + H_SCOUNT) {
        uint32_t s = cp - H_SBASE, t = s % H_TCOUNT;
        sdc_status st = cps_push(out, H_LBASE + s / H_NCOUNT);
        if (st == SDC_OK) st = cps_push(out, H_VBASE + s % H_NCOUNT / H_TCOUNT);
        if (st == SDC_OK && t) st = cps_push(out, H_TBASE + t);
        return st;
    }
    const sdc_uni_map *m = map_find(sdc_uni_decomp_table, sdc_uni_decomp_table_count, cp);
    if (!m) return cps_push(out, cp);
    sdc_status st = decompose(m->a, out, depth + 1);
    if (st == SDC_OK && m->b) st = decompose(m->b, out, depth + 1);
    return st;
}

/* Stable sort of cp[0..n) by combining class (canonical ordering). */
static void sort_by_ccc(uint32_t *cp, size_t n, uint32_t *tmp) {
    if (n < 16) {
        for (size_t i = 1; i < n; i++) {
            uint32_t c = cp[i];
            int k = sdc_uni_ccc(c);
            size_t j = i;
            while (j > 0 && sdc_uni_ccc(cp[j - 1]) > k) {
                cp[j] = cp[j - 1];
                j--;
            }
            cp[j] = c;
        }
        return;
    }
    size_t h = n / 2;
    sort_by_ccc(cp, h, tmp);
    sort_by_ccc(cp + h, n - h, tmp);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = sdc_uni_ccc(cp[j]) < sdc_uni_ccc(cp[i]) ? cp[j++] : cp[i++];
    while (i < h) tmp[k++] = cp[i++];
    while (j < n) tmp[k++] = cp[j++];
    memcpy(cp, tmp, n * sizeof *cp);
}

/* The primary composite of a + b, or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= H_LBASE && a < H_LBASE + H_LCOUNT && b >= H_VBASE && b < H_VBASE + H_VCOUNT)
        return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
    if (a >= H_SBASE && a < H_SBASE + H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 && b > H_TBASE &&
        b < H_TBASE + H_TCOUNT)
        return a + (b - H_TBASE);
    size_t lo = 0, hi = sdc_uni_comp_table_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const sdc_uni_map *m = &sdc_uni_comp_table[mid];
        if (m->cp < a || (m->cp == a && m->a < b))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < sdc_uni_comp_table_count && sdc_uni_comp_table[lo].cp == a &&
        sdc_uni_comp_table[lo].a == b)
        return sdc_uni_comp_table[lo].b;
    return 0;
}

sdc_status sdc_uni_nfc(const uint32_t *in, size_t n, sdc_cps *out) {
    sdc_cps d = {0}, tmp = {0};
    sdc_status st = SDC_OK;
    for (size_t i = 0; i < n && st == SDC_OK; i++) st = decompose(in[i], &d, 0);
    if (st == SDC_OK) st = cps_reserve(&tmp, d.len);
    if (st == SDC_OK) st = cps_reserve(out, d.len);
    if (st != SDC_OK) goto done;
    /* canonical ordering of each run of non-starters */
    for (size_t i = 0; i < d.len;) {
        if (sdc_uni_ccc(d.cp[i]) == 0) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < d.len && sdc_uni_ccc(d.cp[j]) != 0) j++;
        sort_by_ccc(d.cp + i, j - i, tmp.cp);
        i = j;
    }
    /* canonical composition: c joins the last starter unless blocked by a
     * character in between with class 0 or >= class(c) */
    size_t starter = SIZE_MAX;
    int last_ccc = 0;
    for (size_t i = 0; i < d.len; i++) {
        uint32_t c = d.cp[i];
        int k = sdc_uni_ccc(c);
        if (starter != SIZE_MAX) {
            int adjacent = out->len - 1 == starter;
            if (adjacent || (last_ccc != 0 && last_ccc < k)) {
                uint32_t comp = compose_pair(out->cp[starter], c);
                if (comp) {
                    out->cp[starter] = comp;
                    continue;
                }
            }
        }
        if (k == 0) starter = out->len;
        out->cp[out->len++] = c;
        last_ccc = k;
    }
done:
    sdc_cps_free(&d);
    sdc_cps_free(&tmp);
    return st;
}
