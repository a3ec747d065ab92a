/* sdc_gemm_pack_rows on PR_L x PR_L register blocks, written once for the
 * ISAs whose files include it (gemm_avx2.c: 8 lanes, gemm_neon.c: 4) after
 * defining:
 *   PR_FN                     the function's name
 *   PR_L, PR_VEC              lanes and the vector type
 *   PR_LOAD(src_f32, w, off)  PR_L values of a row from element off, as f32
 *   PR_ZERO()                 a zero vector
 *   PR_TRANSPOSE(r)           r[i] = row i -> r[j] = column j
 *   PR_MASK_T, PR_MASK(g)     what stores the first g lanes
 *   PR_STORE(d, v, m)         those lanes of v to d
 * A block of PR_L rows' next PR_L values is loaded (widened), transposed
 * and stored as PR_L k-rows of the panel; the last kc % PR_L columns one
 * value at a time.  (gemm_avx512.c's form covers its tails with masked
 * loads instead.) */
void PR_FN(float *dst, int wp, const float *src_f32, const sdc_weight *w, int64_t ld, int r0,
           int rows, int k0, int kc) {
    const int panels = (rows + wp - 1) / wp;
    for (int p = 0; p < panels; p++)
        for (int j0 = 0; j0 < wp; j0 += PR_L) {
            const int g = wp - j0 < PR_L ? wp - j0 : PR_L; /* columns of the panel in this group */
            int n = rows - p * wp - j0;                    /* rows of the source in this group */
            n = n < 0 ? 0 : n > g ? g : n;
            const PR_MASK_T m = PR_MASK(g);
            float *d = dst + (int64_t)p * kc * wp + j0;
            const int64_t off = (int64_t)(r0 + p * wp + j0) * ld + k0;
            int k = 0;
            for (; k + PR_L <= kc; k += PR_L) {
                PR_VEC r[PR_L];
                for (int j = 0; j < PR_L; j++)
                    r[j] = j < n ? PR_LOAD(src_f32, w, off + j * ld + k) : PR_ZERO();
                PR_TRANSPOSE(r);
                for (int i = 0; i < PR_L; i++) PR_STORE(d + (int64_t)(k + i) * wp, r[i], m);
            }
            for (; k < kc; k++)
                for (int j = 0; j < g; j++)
                    d[(int64_t)k * wp + j] = j >= n    ? 0.0f
                                             : src_f32 ? src_f32[off + j * ld + k]
                                                       : sdc_wget(w, off + j * ld + k);
        }
}
