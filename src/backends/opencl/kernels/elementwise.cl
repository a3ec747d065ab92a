/* Elementwise and layout ops: one work-item per output element.  Every
 * activation argument is (buffer, element offset).  y may alias x: each
 * item reads its inputs before writing its own output. */

kernel void silu(global act_t *y, uint yo, global act_t *x, uint xo, uint n) {
    const uint i = get_global_id(0);
    if (i < n) STA(y, yo + i, silu1(LDA(x, xo + i)));
}

kernel void gelu(global act_t *y, uint yo, global act_t *x, uint xo, uint n) {
    const uint i = get_global_id(0);
    if (i < n) STA(y, yo + i, gelu1(LDA(x, xo + i)));
}

kernel void quick_gelu(global act_t *y, uint yo, global act_t *x, uint xo, uint n) {
    const uint i = get_global_id(0);
    if (i < n) {
        const float v = LDA(x, xo + i);
        STA(y, yo + i, v / (1.0f + exp(-1.702f * v)));
    }
}

/* torch.relu: NaN stays NaN (fmax would make it 0) */
kernel void relu(global act_t *y, uint yo, global act_t *x, uint xo, uint n) {
    const uint i = get_global_id(0);
    if (i < n) {
        const float v = LDA(x, xo + i);
        STA(y, yo + i, v < 0.0f ? 0.0f : v);
    }
}

kernel void add(global act_t *y, uint yo, global act_t *a, uint ao, global act_t *b, uint bo,
                uint n) {
    const uint i = get_global_id(0);
    if (i < n) STA(y, yo + i, LDA(a, ao + i) + LDA(b, bo + i));
}

/* y = a + s (b - a) */
kernel void lerp(global act_t *y, uint yo, global act_t *a, uint ao, global act_t *b, uint bo,
                 float s, uint n) {
    const uint i = get_global_id(0);
    if (i < n) {
        const float va = LDA(a, ao + i);
        STA(y, yo + i, va + s * (LDA(b, bo + i) - va));
    }
}

/* y = a x + b z  (has_z == 0: y = a x) */
kernel void axpby(global act_t *y, uint yo, float a, global act_t *x, uint xo, float b,
                  global act_t *z, uint zo, int has_z, uint n) {
    const uint i = get_global_id(0);
    if (i < n) {
        float v = a * LDA(x, xo + i);
        if (has_z) v += b * LDA(z, zo + i);
        STA(y, yo + i, v);
    }
}

/* x [rows, 2D] = [h | gate] -> y [rows, D] = h * gelu(gate) */
kernel void geglu(global act_t *y, uint yo, global act_t *x, uint xo, uint D, uint n) {
    const uint i = get_global_id(0);
    if (i < n) {
        const uint r = i / D, d = i - r * D;
        const uint xi = xo + r * 2 * D + d;
        STA(y, yo + i, LDA(x, xi) * gelu1(LDA(x, xi + D)));
    }
}

/* y [NC, 2H, 2W] from x [NC, H, W], nearest */
kernel void upsample2x(global act_t *y, uint yo, global act_t *x, uint xo, uint H, uint W,
                       uint n) {
    const uint i = get_global_id(0);
    if (i < n) {
        const uint W2 = 2 * W, ox = i % W2, r = i / W2, oy = r % (2 * H), nc = r / (2 * H);
        STA(y, yo + i, LDA(x, xo + (nc * H + oy / 2) * W + ox / 2));
    }
}

/* y [NC, H+top+bottom, W+left+right], zeros outside x [NC, H, W] */
kernel void pad2d(global act_t *y, uint yo, global act_t *x, uint xo, uint H, uint W, uint Hp,
                  uint Wp, int top, int left, uint n) {
    const uint i = get_global_id(0);
    if (i < n) {
        const uint ox = i % Wp, r = i / Wp, oy = r % Hp, nc = r / Hp;
        const int iy = (int)oy - top, ix = (int)ox - left;
        float v = 0.0f;
        if (iy >= 0 && iy < (int)H && ix >= 0 && ix < (int)W)
            v = LDA(x, xo + (nc * H + (uint)iy) * W + (uint)ix);
        STA(y, yo + i, v);
    }
}

/* y [N, W, H] = x [N, H, W]^T per matrix, through a 16x16 tile in local
 * memory (reads and writes both along rows); work-group 16x16, dim 2 = n */
kernel void transpose(global act_t *y, uint yo, global act_t *x, uint xo, uint H, uint W) {
    local float t[16][17];
    const uint n = get_global_id(2), lx = get_local_id(0), ly = get_local_id(1);
    const uint j0 = get_group_id(0) * 16, i0 = get_group_id(1) * 16;
    const uint base = n * H * W;
    if (i0 + ly < H && j0 + lx < W) t[ly][lx] = LDA(x, xo + base + (i0 + ly) * W + j0 + lx);
    barrier(CLK_LOCAL_MEM_FENCE);
    /* item (lx, ly) writes y[n, j0 + ly, i0 + lx] = x[n, i0 + lx, j0 + ly] */
    if (j0 + ly < W && i0 + lx < H) STA(y, yo + base + (j0 + ly) * H + i0 + lx, t[lx][ly]);
}

/* y [N, Ca+Cb, HW] = cat(a [N, Ca, HW], b [N, Cb, HW]); sa = Ca*HW, sb = Cb*HW */
kernel void concat(global act_t *y, uint yo, global act_t *a, uint ao, global act_t *b, uint bo,
                   uint sa, uint sb, uint n) {
    const uint i = get_global_id(0);
    if (i < n) {
        const uint img = i / (sa + sb), r = i - img * (sa + sb);
        STA(y, yo + i, r < sa ? LDA(a, ao + img * sa + r) : LDA(b, bo + img * sb + r - sa));
    }
}

/* y[i] = x[i] (a copy between activations that do not overlap) */
kernel void copy(global act_t *y, uint yo, global act_t *x, uint xo, uint n) {
    const uint i = get_global_id(0);
    if (i < n) STA(y, yo + i, LDA(x, xo + i));
}

/* y [n, D] = table[ids[i]] + pos[i]  (ids in a device int buffer) */
kernel void embed(global act_t *y, uint yo, global const int *ids, global const float *table,
                  int table_half, global const float *pos, int pos_half, int has_pos, uint pos0,
                  uint D, uint n) {
    const uint i = get_global_id(0);
    if (i < n) {
        const uint r = i / D, d = i - r * D;
        float v = ldw(table, table_half, (uint)ids[r] * D + d);
        if (has_pos) v += ldw(pos, pos_half, (pos0 + r) * D + d);
        STA(y, yo + i, v);
    }
}

/* one row of the timestep embedding: y [dim] = [cos(t f), sin(t f)],
 * f_i = exp(-ln(10000) i / half), float32 in the reference's order */
kernel void timestep_embed(global act_t *y, uint yo, float t, uint dim) {
    const uint i = get_global_id(0), half_ = dim / 2;
    if (i < half_) {
        float e = -9.210340371976184f * (float)i;
        e = e / (float)half_;
        const float a = t * exp(e);
        STA(y, yo + i, cos(a));
        STA(y, yo + half_ + i, sin(a));
    } else if (i == half_ && (dim & 1)) {
        STA(y, yo + dim - 1, 0.0f);
    }
}
