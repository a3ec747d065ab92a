"""Tiled VAE decoding references: diffusers' AutoencoderKL with
vae.enable_tiling() (tiled_decode) and without it, on the tiny VAE of
tests/fixtures/tiny-sd/vae (made by the models part; config sample_size 16,
two levels, so tile_latent_min_size 8, stride 6, blend 4 pixels, row limit
12 pixels).

Writes outdir/vae_tiled_ref.safetensors:
  a.z      F32 [2, 4, 13, 20]  larger than a tile in both dimensions, not square;
                               the last tile row is 1 latent high (blend clipped
                               to 2 pixels), the last column 2 wide
  a.tiled  F32 [2, 3, 26, 40]  vae.decode(z) with tiling on
  a.whole  F32 [2, 3, 26, 40]  vae.decode(z) with tiling off
  b.z      F32 [1, 4, 8, 14]   as high as a tile (diffusers still splits it into
                               rows at 0 and 6), wider than one
  b.tiled, b.whole  F32 [1, 3, 16, 28]
  __metadata__["tiling"]: JSON {tile_latent_min_size, tile_sample_min_size,
                                  tile_overlap_factor}
"""
import json
import os

import torch
from safetensors.torch import save_file

CASES = [("a", (2, 4, 13, 20)), ("b", (1, 4, 8, 14))]


@torch.no_grad()
def make(outdir):
    from diffusers import AutoencoderKL

    torch.use_deterministic_algorithms(True)
    vae = AutoencoderKL.from_pretrained(os.path.join(outdir, "tiny-sd", "vae"), torch_dtype=torch.float32).eval()
    T = vae.tile_latent_min_size
    assert (T, vae.tile_sample_min_size, vae.tile_overlap_factor) == (8, 16, 0.25)
    g = torch.Generator().manual_seed(12)
    out = {}
    for name, shape in CASES:
        z = torch.randn(*shape, generator=g)
        assert z.shape[-1] > T or z.shape[-2] > T  # diffusers tiles this latent
        vae.enable_tiling()
        tiled = vae.decode(z).sample
        vae.disable_tiling()
        whole = vae.decode(z).sample
        assert tiled.shape == whole.shape == (shape[0], 3, shape[2] * 2, shape[3] * 2)
        rel = ((tiled - whole).norm() / whole.norm()).item()
        print(f"   {name}: z {tuple(z.shape)} -> {tuple(tiled.shape)}, tiled vs whole rel L2 {rel:.3f}")
        out.update({f"{name}.z": z, f"{name}.tiled": tiled.contiguous(), f"{name}.whole": whole.contiguous()})
    # one metadata key: safetensors writes several in a varying order
    meta = {"tiling": json.dumps({"tile_latent_min_size": T, "tile_sample_min_size": vae.tile_sample_min_size,
                                  "tile_overlap_factor": vae.tile_overlap_factor})}
    save_file(out, os.path.join(outdir, "vae_tiled_ref.safetensors"), metadata=meta)
