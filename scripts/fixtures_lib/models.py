"""Tiny random-weight SD 1.x models in both on-disk layouts, plus per-network
reference outputs.

Writes into outdir:
  tiny-sd/                 diffusers folder (no tokenizer/: sdc falls back to
                           its built-in vocabulary).  unet, vae in F32,
                           text_encoder in BF16.
  tiny-sd.safetensors      the same weights under the original (CompVis/ldm)
                           names; unet and text encoder F16, vae F32.
  clip_ref.safetensors     ids I32 [2,77], last_hidden_state F32 [2,77,32]
  unet_ref.safetensors     x [2,4,16,16], ctx [2,77,32],
                           t [2] (equal, as in CFG) -> out [2,4,16,16],
                           t_mixed [2] (different)  -> out_mixed [2,4,16,16]
  vae_ref.safetensors      z [1,4,8,8] -> decoded [1,3,16,16] (post_quant_conv + decoder),
                           image [1,3,16,16] -> moments [1,8,8,8] (encoder + quant_conv,
                           mean then logvar, unclamped)

Every weight is a value exactly representable in bf16 and fp16, so the three
storage dtypes hold identical numbers and one fp32 reference serves all.
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file

TINY_UNET = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=2,
    attention_head_dim=8,
    cross_attention_dim=32,
    norm_num_groups=32,
)

TINY_VAE = dict(
    sample_size=16,
    in_channels=3,
    out_channels=3,
    block_out_channels=(32, 64),
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=32,
)

TINY_CLIP = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    vocab_size=49408,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=32,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=1,
)

# SD 1.4's scheduler/scheduler_config.json (clip_sample is a DDIM leftover
# PNDMScheduler ignores, kept as in the real file).
SD14_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    steps_offset=1,
    set_alpha_to_one=False,
    skip_prk_steps=True,
    clip_sample=False,
)

PROMPTS = ["a photograph of an astronaut riding a horse", ""]


# ---------------------------------------------------------------- weights

def representable(t):
    """Rounds to 4 significant bits (so the committed files compress well),
    then to bf16, then zeroes what fp16 cannot hold exactly."""
    m, e = torch.frexp(t)
    t = torch.ldexp(torch.round(m * 16) / 16, e)
    b = t.to(torch.bfloat16).to(torch.float32)
    h = b.to(torch.float16).to(torch.float32)
    return torch.where(h == b, b, torch.zeros_like(b))


@torch.no_grad()
def randomise(model, gen, gain=1.0):
    """Random weights, biases and norm parameters (no identities), sized so
    activations stay O(1): matrices ~N(0, gain/sqrt(fan_in)), norm scales
    ~1+N(0,0.2), shifts and biases ~N(0,0.1), embeddings ~N(0,0.5)."""
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        is_norm = "norm" in name or "layer_norm" in name
        if "embedding" in name and p.dim() == 2 and "linear" not in name:
            v = torch.randn(p.shape, generator=gen) * 0.5
        elif p.dim() >= 2:
            fan_in = p[0].numel()
            v = torch.randn(p.shape, generator=gen) * (gain / fan_in ** 0.5)
        elif is_norm and leaf == "weight":
            v = 1.0 + 0.2 * torch.randn(p.shape, generator=gen)
        else:
            v = 0.1 * torch.randn(p.shape, generator=gen)
        p.copy_(representable(v))


# ---------------------------------------------------- diffusers -> original

def _resnet_unet(s):
    for a, b in (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                 ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"),
                 ("conv_shortcut", "skip_connection")):
        s = s.replace(a + ".", b + ".")
    return s


def unet_to_ldm(name, cfg):
    """One diffusers UNet2DConditionModel key -> its CompVis name (without
    the model.diffusion_model. prefix)."""
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    stem, leaf = name.rsplit(".", 1)
    if stem in fixed:
        return f"{fixed[stem]}.{leaf}"
    per = cfg["layers_per_block"] + 1  # ldm blocks per level (resnets + sampler)
    p = name.split(".")
    if p[0] == "down_blocks":
        i = int(p[1])
        if p[2] == "downsamplers":  # down_blocks.i.downsamplers.0.conv.X
            return f"input_blocks.{per * (i + 1)}.0.op.{p[-1]}"
        j = int(p[3])
        rest = ".".join(p[4:])
        k = per * i + j + 1
        if p[2] == "resnets":
            return _resnet_unet(f"input_blocks.{k}.0.{rest}")
        return f"input_blocks.{k}.1.{rest}"
    if p[0] == "mid_block":
        j = int(p[2])
        rest = ".".join(p[3:])
        if p[1] == "resnets":
            return _resnet_unet(f"middle_block.{2 * j}.{rest}")
        return f"middle_block.1.{rest}"
    if p[0] == "up_blocks":
        i = int(p[1])
        if p[2] == "upsamplers":  # after the attention when the block has one
            has_attn = cfg["up_block_types"][i].startswith("CrossAttn")
            return f"output_blocks.{per * i + per - 1}.{2 if has_attn else 1}.conv.{p[-1]}"
        j = int(p[3])
        rest = ".".join(p[4:])
        k = per * i + j
        if p[2] == "resnets":
            return _resnet_unet(f"output_blocks.{k}.0.{rest}")
        return f"output_blocks.{k}.1.{rest}"
    raise KeyError(name)


def vae_to_ldm(name, tensor, cfg):
    """One diffusers AutoencoderKL key and tensor -> CompVis name and tensor
    (without the first_stage_model. prefix).  The mid-block attention keeps
    1x1-conv weights [C, C, 1, 1] in the original layout."""
    n_up = len(cfg["up_block_types"])
    p = name.split(".")
    if p[0] in ("quant_conv", "post_quant_conv") or p[1] in ("conv_in", "conv_out"):
        return name, tensor
    if p[1] == "conv_norm_out":
        return f"{p[0]}.norm_out.{p[-1]}", tensor
    side = p[0]
    if p[1] == "mid_block":
        j = int(p[3])
        if p[2] == "resnets":
            rest = ".".join(p[4:]).replace("conv_shortcut.", "nin_shortcut.")
            return f"{side}.mid.block_{j + 1}.{rest}", tensor
        stem = ".".join(p[4:-1])
        attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}[stem]
        if tensor.dim() == 2:
            tensor = tensor[:, :, None, None]
        return f"{side}.mid.attn_1.{attn}.{p[-1]}", tensor
    if p[1] == "down_blocks":
        i = int(p[2])
        if p[3] == "downsamplers":
            return f"encoder.down.{i}.downsample.conv.{p[-1]}", tensor
        rest = ".".join(p[5:]).replace("conv_shortcut.", "nin_shortcut.")
        return f"encoder.down.{i}.block.{p[4]}.{rest}", tensor
    if p[1] == "up_blocks":
        b = n_up - 1 - int(p[2])  # ldm numbers decoder levels from the bottom
        if p[3] == "upsamplers":
            return f"decoder.up.{b}.upsample.conv.{p[-1]}", tensor
        rest = ".".join(p[5:]).replace("conv_shortcut.", "nin_shortcut.")
        return f"decoder.up.{b}.block.{p[4]}.{rest}", tensor
    raise KeyError(name)


def clip_state(clip):
    """CLIPTextModel's weights under the names real checkpoints use
    (text_model.*; transformers 5 drops that level in state_dict())."""
    return {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in clip.state_dict().items()}


def original_layout(unet, vae, clip, unet_cfg, vae_cfg, unet_dtype=torch.float16,
                    vae_dtype=torch.float32, clip_dtype=torch.float16):
    """The single-file checkpoint dict (by default unet F16, vae F32, text
    encoder F16)."""
    out = {}
    for k, v in unet.state_dict().items():
        out["model.diffusion_model." + unet_to_ldm(k, unet_cfg)] = v.to(unet_dtype).contiguous()
    for k, v in vae.state_dict().items():
        n, t = vae_to_ldm(k, v, vae_cfg)
        out["first_stage_model." + n] = t.to(vae_dtype).contiguous()
    for k, v in clip_state(clip).items():
        out["cond_stage_model.transformer." + k] = v.to(clip_dtype).contiguous()
    n = clip.config.max_position_embeddings
    out["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(n, dtype=torch.int64)[None]
    return out


def check_round_trip(ckpt, unet, vae, clip, unet_cfg, vae_cfg):
    """diffusers' own single-file converters must give back every tensor."""
    from diffusers.loaders import single_file_utils as sfu

    f32 = {k: v.float() if v.is_floating_point() else v for k, v in ckpt.items()}
    pairs = [
        (sfu.convert_ldm_unet_checkpoint(f32, dict(unet_cfg)), unet.state_dict()),
        (sfu.convert_ldm_vae_checkpoint(f32, dict(vae_cfg)), vae.state_dict()),
        (sfu.convert_ldm_clip_checkpoint(f32), clip_state(clip)),
    ]
    for got, want in pairs:
        got = {k: v for k, v in got.items() if not k.endswith("position_ids")}
        assert set(got) == set(want), sorted(set(got) ^ set(want))[:10]
        for k in want:
            assert torch.equal(got[k].float(), want[k].float()), k


# ------------------------------------------------------------------- make

def _ids(prompts, n=77):
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer()
    rows = []
    for p in prompts:
        ids = [49406] + tok.encode(p)[: n - 2] + [49407]
        rows.append(ids + [49407] * (n - len(ids)))  # SD 1.x pads with <|endoftext|>
    return torch.tensor(rows, dtype=torch.int64)


def _stats(name, t):
    print(f"   {name:>18} {tuple(t.shape)} mean {t.mean():+.3f} std {t.std():.3f} max|.| {t.abs().max():.3f}")


@torch.no_grad()
def write_model_index(root):
    """model_index.json of an SD 1.x diffusers folder (no safety checker)."""
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    with open(os.path.join(root, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def make(outdir):
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)

    unet = UNet2DConditionModel(**TINY_UNET).eval()
    vae = AutoencoderKL(**TINY_VAE).eval()
    clip = CLIPTextModel(CLIPTextConfig(**TINY_CLIP)).eval()
    randomise(unet, torch.Generator().manual_seed(1))
    randomise(vae, torch.Generator().manual_seed(2))
    randomise(clip, torch.Generator().manual_seed(3))

    # ---- diffusers folder
    root = os.path.join(outdir, "tiny-sd")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    unet.save_pretrained(os.path.join(root, "unet"), safe_serialization=True)
    vae.save_pretrained(os.path.join(root, "vae"), safe_serialization=True)
    te = os.path.join(root, "text_encoder")
    os.makedirs(te)
    te_cfg = {"architectures": ["CLIPTextModel"], **clip.config.to_diff_dict(), "torch_dtype": "bfloat16"}
    with open(os.path.join(te, "config.json"), "w") as f:
        json.dump(te_cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in clip_state(clip).items()},
              os.path.join(te, "model.safetensors"), metadata={"format": "pt"})
    os.makedirs(os.path.join(root, "scheduler"))
    sched = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.42.1", **SD14_SCHEDULER,
             "trained_betas": None}
    with open(os.path.join(root, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(sched, f, indent=2)
        f.write("\n")
    PNDMScheduler.from_pretrained(os.path.join(root, "scheduler"))  # must load
    write_model_index(root)

    # ---- single file, original names
    ckpt = original_layout(unet, vae, clip, unet.config, vae.config)
    check_round_trip(ckpt, unet, vae, clip, unet.config, vae.config)
    save_file(ckpt, os.path.join(outdir, "tiny-sd.safetensors"))

    # ---- references (fp32, default attention processors)
    ids = _ids(PROMPTS)
    hidden = clip(input_ids=ids).last_hidden_state
    _stats("clip hidden", hidden)
    save_file({"ids": ids.to(torch.int32).contiguous(), "last_hidden_state": hidden.contiguous()},
              os.path.join(outdir, "clip_ref.safetensors"))

    g = torch.Generator().manual_seed(10)
    x = torch.randn(2, 4, 16, 16, generator=g)
    ctx = torch.randn(2, 77, 32, generator=g)
    t = torch.tensor([801.0, 801.0])
    t_mixed = torch.tensor([999.0, 1.0])
    out = unet(x, t, encoder_hidden_states=ctx).sample
    out_mixed = unet(x, t_mixed, encoder_hidden_states=ctx).sample
    _stats("unet out", out)
    _stats("unet out_mixed", out_mixed)
    save_file({"x": x, "t": t, "ctx": ctx, "out": out.contiguous(), "t_mixed": t_mixed,
               "out_mixed": out_mixed.contiguous()}, os.path.join(outdir, "unet_ref.safetensors"))

    g = torch.Generator().manual_seed(11)
    z = torch.randn(1, 4, 8, 8, generator=g)
    image = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    decoded = vae.decoder(vae.post_quant_conv(z))
    assert torch.equal(decoded, vae.decode(z).sample)
    moments = vae.quant_conv(vae.encoder(image))
    _stats("vae decoded", decoded)
    _stats("vae moments", moments)
    save_file({"z": z, "decoded": decoded.contiguous(), "image": image, "moments": moments.contiguous()},
              os.path.join(outdir, "vae_ref.safetensors"))
