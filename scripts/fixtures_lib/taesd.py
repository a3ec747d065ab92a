"""A tiny random-weight TAESD (diffusers' AutoencoderTiny) in both forms sdc
reads, plus references.

Writes into outdir:
  tiny-taesd/                  diffusers folder: config.json and
                               diffusion_pytorch_model.safetensors, BF16
  tiny-taesd.safetensors       the same weights in one file under the same
                               names (encoder.layers.*, decoder.layers.*), F16
  taesd_ref.safetensors        z [1,4,8,8] -> decoded [1,3,64,64]   (vae.decode(z).sample)
                               image [1,3,64,64] -> latents [1,4,8,8]  (vae.encode(image).latents)

The model has the real one's structure (4 levels: 8 pixels per latent; the
clamp, ReLU blocks, nearest upsampling, bias-free stride-2 and upsampling
convs) with fewer channels and blocks (encoder 8 channels, blocks (1, 2, 1, 1);
decoder 12 channels, blocks (2, 1, 1, 1)), so the committed files stay
small.  Weights are exact in fp16 and bf16 (models.representable), so the
three storage dtypes hold the same numbers and one fp32 reference serves
all.  z is drawn with std 2.5 so that the decoder's tanh(z/3)*3 clamp is
well inside its non-linear range.
"""
import os
import shutil

import torch
from safetensors.torch import save_file

from .models import randomise

TINY_TAESD = dict(
    in_channels=3,
    out_channels=3,
    encoder_block_out_channels=(8, 8, 8, 8),
    decoder_block_out_channels=(12, 12, 12, 12),
    num_encoder_blocks=(1, 2, 1, 1),
    num_decoder_blocks=(2, 1, 1, 1),
    latent_channels=4,
)


def _stats(name, t):
    print(f"  {name:>8} {tuple(t.shape)} mean {t.mean():+.3f} std {t.std():.3f} max|.| {t.abs().max():.3f}")


def write_folder(model, root, dtype):
    """A diffusers AutoencoderTiny folder: config.json + weights in dtype."""
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    model.save_config(root)
    save_file({k: v.to(dtype).contiguous() for k, v in model.state_dict().items()},
              os.path.join(root, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})


@torch.no_grad()
def make(outdir):
    from diffusers import AutoencoderTiny

    torch.use_deterministic_algorithms(True)
    vae = AutoencoderTiny(**TINY_TAESD).eval()
    randomise(vae, torch.Generator().manual_seed(21))

    root = os.path.join(outdir, "tiny-taesd")
    write_folder(vae, root, torch.bfloat16)
    loaded = AutoencoderTiny.from_pretrained(root).state_dict()  # loads, and holds the same numbers
    assert all(torch.equal(loaded[k], v) for k, v in vae.state_dict().items())
    save_file({k: v.half().contiguous() for k, v in vae.state_dict().items()},
              os.path.join(outdir, "tiny-taesd.safetensors"))

    g = torch.Generator().manual_seed(22)
    z = torch.randn(1, 4, 8, 8, generator=g) * 2.5
    image = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    decoded = vae.decode(z / vae.config.scaling_factor).sample
    latents = vae.encode(image).latents
    _stats("decoded", decoded)
    _stats("latents", latents)
    save_file({"z": z, "decoded": decoded.contiguous(), "image": image, "latents": latents.contiguous()},
              os.path.join(outdir, "taesd_ref.safetensors"))
