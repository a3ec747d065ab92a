"""PyTorch outputs for the reference ops of the CPU backend (tests/test_ops.c).

Writes into outdir:
  ops_ref.safetensors, all F32 (C layouts of backend.h):
    linear.x [5,13] linear.w [7,13] linear.b [7] -> linear.y [5,7]          F.linear
    conv.x [2,3,9,8] conv.w [4,3,3,3] conv.b [4], stride 2, pad 1
                                           -> conv.y [2,4,5,4]                F.conv2d
    gn.x [2,8,5,5] gn.gamma [8] gn.beta [8], 4 groups, eps 1e-6
                                           -> gn.y, gn.y_silu [2,8,5,5]      F.group_norm (+F.silu)
    ln.x [5,12] ln.gamma [12] ln.beta [12], eps 1e-5 -> ln.y [5,12]          F.layer_norm
    att.q/k/v [7,16] (2 heads x dh 8), causal    -> att.y [7,16]             F.scaled_dot_product_attention
    xatt.q [5,8] xatt.k/v [9,8] (2 heads x dh 4) -> xatt.y [5,8]             (not causal)
    geglu.x [3,20] -> geglu.y [3,10]                                          diffusers GEGLU: h * F.gelu(gate)
    act.x [64] -> act.silu act.gelu act.quick_gelu [64]                       x * sigmoid(1.702 x) for quick_gelu
    temb.t [2] = (999, 1) -> temb.y [2,320]                                   diffusers get_timestep_embedding(
                                                                              flip_sin_to_cos=True, shift=0)
    up.x [1,2,3,4] -> up.y [1,2,6,8]                                          F.interpolate(nearest, x2)
"""
import os

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding
from safetensors.torch import save_file


def _heads_first(x, heads):  # [S, heads*dh] -> [1, heads, S, dh]
    S, D = x.shape
    return x.reshape(S, heads, D // heads).permute(1, 0, 2).unsqueeze(0)


def _heads_last(x):  # [1, heads, S, dh] -> [S, heads*dh]
    _, h, S, dh = x.shape
    return x[0].permute(1, 0, 2).reshape(S, h * dh)


def make(outdir):
    g = torch.Generator().manual_seed(1234)

    def rnd(*shape, scale=1.0):
        return (torch.rand(*shape, generator=g) * 2 - 1) * scale

    t = {}
    t["linear.x"], t["linear.w"], t["linear.b"] = rnd(5, 13), rnd(7, 13), rnd(7)
    t["linear.y"] = F.linear(t["linear.x"], t["linear.w"], t["linear.b"])

    t["conv.x"], t["conv.w"], t["conv.b"] = rnd(2, 3, 9, 8), rnd(4, 3, 3, 3), rnd(4)
    t["conv.y"] = F.conv2d(t["conv.x"], t["conv.w"], t["conv.b"], stride=2, padding=1)

    t["gn.x"] = rnd(2, 8, 5, 5, scale=3.0) + 0.5
    t["gn.gamma"], t["gn.beta"] = rnd(8) + 1.0, rnd(8)
    gn = F.group_norm(t["gn.x"], 4, t["gn.gamma"], t["gn.beta"], eps=1e-6)
    t["gn.y"], t["gn.y_silu"] = gn, F.silu(gn)

    t["ln.x"], t["ln.gamma"], t["ln.beta"] = rnd(5, 12, scale=2.0), rnd(12) + 1.0, rnd(12)
    t["ln.y"] = F.layer_norm(t["ln.x"], (12,), t["ln.gamma"], t["ln.beta"], eps=1e-5)

    q, k, v = rnd(7, 16, scale=2.0), rnd(7, 16, scale=2.0), rnd(7, 16)
    y = F.scaled_dot_product_attention(_heads_first(q, 2), _heads_first(k, 2), _heads_first(v, 2),
                                       is_causal=True)
    t["att.q"], t["att.k"], t["att.v"], t["att.y"] = q, k, v, _heads_last(y)

    q, k, v = rnd(5, 8, scale=2.0), rnd(9, 8, scale=2.0), rnd(9, 8)
    y = F.scaled_dot_product_attention(_heads_first(q, 2), _heads_first(k, 2), _heads_first(v, 2))
    t["xatt.q"], t["xatt.k"], t["xatt.v"], t["xatt.y"] = q, k, v, _heads_last(y)

    t["geglu.x"] = rnd(3, 20, scale=4.0)
    h, gate = t["geglu.x"].chunk(2, dim=-1)
    t["geglu.y"] = h * F.gelu(gate)

    t["act.x"] = torch.linspace(-12.0, 12.0, 64)
    t["act.silu"] = F.silu(t["act.x"])
    t["act.gelu"] = F.gelu(t["act.x"])
    t["act.quick_gelu"] = t["act.x"] * torch.sigmoid(1.702 * t["act.x"])

    t["temb.t"] = torch.tensor([999.0, 1.0])
    t["temb.y"] = get_timestep_embedding(t["temb.t"], 320, flip_sin_to_cos=True, downscale_freq_shift=0)

    t["up.x"] = rnd(1, 2, 3, 4)
    t["up.y"] = F.interpolate(t["up.x"], scale_factor=2.0, mode="nearest")

    t = {name: x.float().contiguous() for name, x in t.items()}
    save_file(t, os.path.join(outdir, "ops_ref.safetensors"))
