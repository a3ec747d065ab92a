"""A full-size Stable Diffusion 1.4 stand-in: SD 1.4's real configs, tensor
names, shapes and fp16 dtype, with random weights (never committed).

make(dir) writes:
  dir/sd14-standin/              diffusers folder, fp16: model_index.json, unet/, vae/,
                                 text_encoder/, scheduler/, tokenizer/ (CLIP BPE built from
                                 open_clip's bpe_simple_vocab_16e6, if fixtures_lib.tokens has it)
  dir/sd14-standin.safetensors   the same weights under the original (CompVis) names, fp16
  dir/taesd/                     a TAESD (diffusers AutoencoderTiny) of madebyollin/taesd's
                                 config (64 channels, blocks (1,3,3,3) / (3,3,3,1)), fp16:
                                 config.json, diffusion_pytorch_model.safetensors (make_taesd)
  dir/lcm-lora.safetensors       a random LoRA with LCM-LoRA SD 1.5's key names, ranks and
                                 dtype (make_lcm_lora; alone: make_fixtures.py
                                 --full-size-lora DIR)
  dir/fullsize_ref.safetensors   fp32 references computed by diffusers with exactly those
                                 (fp16-rounded) weights:
      unet_x [2,4,64,64], unet_t [2] (801, 801), unet_ctx [2,77,768] -> unet_out [2,4,64,64]
      vae_z [1,4,64,64] -> vae_decoded [1,3,512,512]   (post_quant_conv + decoder)
      clip_ids I32 [1,77] -> clip_hidden [1,77,768]

Weights ~N(0, 1/sqrt(fan_in)), norm scales ~1+N(0,0.1), biases and shifts
~N(0,0.02), embeddings ~N(0,0.1), so activations stay O(1).

Cost on a 2-core machine: see the report in make(); roughly: building and
writing ~2-3 min, UNet forward (batch 2, 64x64) ~1-2 min, VAE decode at
512x512 ~2-4 min; ~8 GB of RAM at the peak.
"""
import json
import os
import shutil
import time

import torch
from safetensors.torch import save_file

from . import models as tiny

SD14_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=2,
    attention_head_dim=8,
    cross_attention_dim=768,
    norm_num_groups=32,
    norm_eps=1e-5,
    act_fn="silu",
    center_input_sample=False,
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    mid_block_scale_factor=1,
)

SD14_VAE = dict(
    sample_size=512,
    in_channels=3,
    out_channels=3,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    act_fn="silu",
)

# text_encoder/config.json of CompVis/stable-diffusion-v1-4 (openai/clip-vit-large-patch14's
# text tower; its bos/eos ids are the old transformers defaults, unused by last_hidden_state).
SD14_CLIP = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    vocab_size=49408,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=768,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)


@torch.no_grad()
def randomise(model, gen):
    """See the module docstring; every value is rounded to fp16."""
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if "embedding" in name and p.dim() == 2 and "linear" not in name:
            v = 0.1 * torch.randn(p.shape, generator=gen)
        elif p.dim() >= 2:
            v = torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5
        elif "norm" in name and leaf == "weight":
            v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
        else:
            v = 0.02 * torch.randn(p.shape, generator=gen)
        p.copy_(v.half().float())


@torch.no_grad()
def make_taesd(outdir):
    """dir/taesd: AutoencoderTiny's defaults (those of madebyollin/taesd), random fp16 weights."""
    from diffusers import AutoencoderTiny

    from .taesd import write_folder
    taesd = AutoencoderTiny().eval()
    randomise(taesd, torch.Generator().manual_seed(104))
    write_folder(taesd, os.path.join(outdir, "taesd"), torch.float16)


LCM_LORA_RANK = 64
LCM_LORA_ALPHA = 8.0
# the modules latent-consistency/lcm-lora-sdv1-5 updates (kohya-ss names)
LCM_LORA_LEAVES = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
                   "ff.net.2", "conv1", "conv2", "conv_shortcut", "time_emb_proj",
                   "downsamplers.0.conv", "upsamplers.0.conv")


@torch.no_grad()
def make_lcm_lora(outdir):
    """dir/lcm-lora.safetensors: LCM-LoRA SD 1.5's layout (kohya-ss keys
    lora_unet_<path>.lora_down.weight / .lora_up.weight / .alpha, rank 64,
    alpha 8, fp16; 1x1 up factors for the convolutions), random factors whose
    update is ~5% of the weights' size (the image stays an image)."""
    from diffusers import UNet2DConditionModel
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD14_UNET)
    g = torch.Generator().manual_seed(105)
    scale = LCM_LORA_ALPHA / LCM_LORA_RANK
    sd, r = {}, LCM_LORA_RANK
    for name, mod in unet.named_modules():
        if not isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)) or not name.endswith(LCM_LORA_LEAVES):
            continue
        shape = tuple(mod.weight.shape)
        fan_in = 1
        for d in shape[1:]:
            fan_in *= d
        down = torch.randn((r,) + shape[1:], generator=g) / fan_in ** 0.5
        up = torch.randn((shape[0], r) + ((1, 1) if len(shape) == 4 else ()), generator=g)
        up *= 0.05 / (scale * r ** 0.5)
        key = "lora_unet_" + name.replace(".", "_")
        sd[key + ".lora_down.weight"] = down.half()
        sd[key + ".lora_up.weight"] = up.half()
        sd[key + ".alpha"] = torch.tensor(LCM_LORA_ALPHA, dtype=torch.float16)
    save_file(sd, os.path.join(outdir, "lcm-lora.safetensors"))
    n = sum(v.numel() for v in sd.values())
    print(f"   lcm-lora.safetensors: {len(sd) // 3} modules, {n / 1e6:.1f} M parameters")


def _log(t0, what):
    print(f"   [{time.time() - t0:6.1f} s] {what}", flush=True)


def _save_half(state, path):
    save_file({k: v.half().contiguous() for k, v in state.items()}, path, metadata={"format": "pt"})


def _stats(name, t):
    print(f"   {name:>12} {tuple(t.shape)} mean {t.mean():+.3f} std {t.std():.3f} max|.| {t.abs().max():.3f}")


@torch.no_grad()
def make(outdir, references=True):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    t0 = time.time()
    os.makedirs(outdir, exist_ok=True)

    unet = UNet2DConditionModel(**SD14_UNET).eval()
    vae = AutoencoderKL(**SD14_VAE).eval()
    clip = CLIPTextModel(CLIPTextConfig(**SD14_CLIP)).eval()
    randomise(unet, torch.Generator().manual_seed(101))
    randomise(vae, torch.Generator().manual_seed(102))
    randomise(clip, torch.Generator().manual_seed(103))
    _log(t0, "models built")

    # ---- diffusers folder
    root = os.path.join(outdir, "sd14-standin")
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("unet", "vae", "text_encoder", "scheduler", "tokenizer"):
        os.makedirs(os.path.join(root, sub))
    unet.save_config(os.path.join(root, "unet"))
    _save_half(unet.state_dict(), os.path.join(root, "unet", "diffusion_pytorch_model.safetensors"))
    vae.save_config(os.path.join(root, "vae"))
    _save_half(vae.state_dict(), os.path.join(root, "vae", "diffusion_pytorch_model.safetensors"))
    te_cfg = {"architectures": ["CLIPTextModel"], **clip.config.to_diff_dict(), "torch_dtype": "float16"}
    with open(os.path.join(root, "text_encoder", "config.json"), "w") as f:
        json.dump(te_cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    _save_half(tiny.clip_state(clip), os.path.join(root, "text_encoder", "model.safetensors"))
    sched = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.42.1", **tiny.SD14_SCHEDULER,
             "trained_betas": None}
    with open(os.path.join(root, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(sched, f, indent=2)
        f.write("\n")
    from . import models, tokens
    tokens.write_tokenizer_folder(os.path.join(root, "tokenizer"))
    models.write_model_index(root)
    _log(t0, "diffusers folder written")

    # ---- single file, original names, all fp16
    ckpt = tiny.original_layout(unet, vae, clip, unet.config, vae.config, vae_dtype=torch.float16)
    assert infer_diffusers_model_type(ckpt) == "v1"
    tiny.check_round_trip(ckpt, unet, vae, clip, unet.config, vae.config)
    save_file(ckpt, os.path.join(outdir, "sd14-standin.safetensors"))
    del ckpt
    _log(t0, "single file written")
    make_taesd(outdir)
    _log(t0, "TAESD written")
    make_lcm_lora(outdir)
    _log(t0, "LCM-LoRA written")

    if not references:
        return
    # ---- references, fp32
    g = torch.Generator().manual_seed(110)
    ref = {}
    ref["clip_ids"] = torch.tensor([[49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558] + [49407] * 68],
                                   dtype=torch.int32)
    ref["clip_hidden"] = clip(input_ids=ref["clip_ids"].long()).last_hidden_state
    _stats("clip_hidden", ref["clip_hidden"])
    ref["unet_x"] = torch.randn(2, 4, 64, 64, generator=g)
    ref["unet_t"] = torch.tensor([801.0, 801.0])
    ref["unet_ctx"] = torch.randn(2, 77, 768, generator=g)
    ref["unet_out"] = unet(ref["unet_x"], ref["unet_t"], encoder_hidden_states=ref["unet_ctx"]).sample
    _stats("unet_out", ref["unet_out"])
    _log(t0, "UNet reference")
    ref["vae_z"] = torch.randn(1, 4, 64, 64, generator=g)
    ref["vae_decoded"] = vae.decoder(vae.post_quant_conv(ref["vae_z"]))
    _stats("vae_decoded", ref["vae_decoded"])
    _log(t0, "VAE reference")
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(outdir, "fullsize_ref.safetensors"))
