#include "core/weights.h"

#include <string.h>

size_t sdc_dtype_size(sdc_dtype dt) {
    switch (dt) {
    case SDC_DT_F64: case SDC_DT_I64: return 8;
    case SDC_DT_F32: case SDC_DT_I32: return 4;
    case SDC_DT_F16: case SDC_DT_BF16: case SDC_DT_I16: return 2;
    case SDC_DT_I8: case SDC_DT_U8: case SDC_DT_BOOL: return 1;
    default: return 0;
    }
}

const char *sdc_dtype_name(sdc_dtype dt) {
    static const char *names[SDC_DT_COUNT] = {"F32", "F16", "BF16", "F64", "I64",
                                              "I32", "I16", "I8",   "U8",  "BOOL"};
    return (unsigned)dt < SDC_DT_COUNT ? names[dt] : "?";
}

float sdc_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 112) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t sdc_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0));
    if (absx >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* overflow to inf */
    if (absx < 0x38800000) { /* subnormal or zero in f16 */
        if (absx < 0x33000000) return (uint16_t)sign;
        uint32_t man = (absx & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(absx >> 23); /* value / 2^-24, in units of man */
        uint32_t r = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((absx >> 13) - (112u << 10));
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

float sdc_bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float sdc_weight_get(const sdc_weight *w, int64_t i) {
    switch (w->dtype) {
    case SDC_DT_F32: { float v; memcpy(&v, (const char *)w->data + 4 * i, 4); return v; }
    case SDC_DT_F16: { uint16_t v; memcpy(&v, (const char *)w->data + 2 * i, 2); return sdc_f16_to_f32(v); }
    case SDC_DT_BF16: { uint16_t v; memcpy(&v, (const char *)w->data + 2 * i, 2); return sdc_bf16_to_f32(v); }
    default: return 0.0f;
    }
}

void sdc_weight_to_f32(const sdc_weight *w, float *dst) {
    if (w->dtype == SDC_DT_F32) {
        memcpy(dst, w->data, (size_t)w->numel * 4);
        return;
    }
    for (int64_t i = 0; i < w->numel; i++) dst[i] = sdc_weight_get(w, i);
}
