"""Whole-pipeline references: diffusers' StableDiffusionPipeline on the tiny
model (tests/fixtures/tiny-sd, made by the models part) for every sampler.

Writes outdir/pipeline_ref.safetensors:
  <case>.latents  F32 [1, 4, h, w]   output_type="latent" (final latents,
                                     before the division by scaling_factor)
  <case>.image    F32 [1, H, W, 3]   output_type="np" (after x*0.5+0.5 and
                                     the clamp to [0, 1], before uint8)
  __metadata__["cases"]: JSON list of {name, sampler (sdc's name), schedule
  ("discrete"|"karras"), steps, cfg, seed, width, height, prompt, negative
  (null: none), spacing (null: the class's default, else its
  timestep_spacing)}; the C test runs sdc_generate with exactly these.

The tokenizer is transformers' CLIPTokenizer (slow, as diffusers loads it for
SD 1.x) on vocab.json/merges.txt built in a temporary folder from
open_clip's bpe_simple_vocab_16e6.txt.gz, the vocabulary of OpenAI's CLIP
and of SD 1.x's tokenizer/ folder.
"""
import json
import os
import tempfile

import torch
from safetensors.torch import save_file

PROMPT = "a red cube on a wooden table, studio light"
NEGATIVE = "blurry, low quality"
SEED = 1234

# (name, sampler, schedule, steps, cfg, width, height, negative[, spacing])
CASES = [
    ("euler", "euler", "discrete", 4, 7.5, 32, 32, NEGATIVE),
    ("euler_karras", "euler", "karras", 4, 7.5, 32, 32, NEGATIVE),
    ("euler_a", "euler_a", "discrete", 4, 7.5, 32, 32, NEGATIVE),
    ("heun", "heun", "discrete", 3, 7.5, 32, 32, NEGATIVE),
    ("heun_karras", "heun", "karras", 3, 7.5, 32, 32, NEGATIVE),
    ("dpmpp2m", "dpm++2m", "discrete", 4, 7.5, 32, 32, NEGATIVE),
    ("dpmpp2m_karras", "dpm++2m", "karras", 4, 7.5, 32, 32, NEGATIVE),
    ("ddim", "ddim", "discrete", 4, 7.5, 32, 32, NEGATIVE),
    ("pndm", "pndm", "discrete", 4, 7.5, 32, 32, NEGATIVE),
    ("lms", "lms", "discrete", 4, 7.5, 32, 32, NEGATIVE),
    ("lms_karras", "lms", "karras", 4, 7.5, 32, 32, NEGATIVE),
    # no negative prompt (""), a non-square image (W != H)
    ("euler_a_wide", "euler_a", "discrete", 4, 5.0, 48, 32, None),
    # guidance off: diffusers runs one UNet pass (guidance_scale <= 1)
    ("ddim_nocfg", "ddim", "discrete", 4, 1.0, 32, 32, NEGATIVE),
    # timestep spacing as asked (few-step models): the class's timestep_spacing
    ("euler_trailing", "euler", "discrete", 4, 7.5, 32, 32, NEGATIVE, "trailing"),
    ("ddim_trailing", "ddim", "discrete", 4, 7.5, 32, 32, NEGATIVE, "trailing"),
    ("dpmpp2m_leading", "dpm++2m", "discrete", 4, 7.5, 32, 32, NEGATIVE, "leading"),
    # distilled-model samplers: LCM without guidance (one pass), LCM and TCD with it
    ("lcm_nocfg", "lcm", "discrete", 4, 1.0, 32, 32, NEGATIVE),
    ("lcm", "lcm", "discrete", 2, 1.5, 32, 32, NEGATIVE),
    ("tcd", "tcd", "discrete", 4, 1.5, 32, 32, NEGATIVE),
]


def _scheduler(sampler, schedule, config, spacing=None):
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler,
                           EulerAncestralDiscreteScheduler, EulerDiscreteScheduler,
                           HeunDiscreteScheduler, LCMScheduler, LMSDiscreteScheduler,
                           PNDMScheduler, TCDScheduler)
    cls = {
        "euler": EulerDiscreteScheduler,
        "euler_a": EulerAncestralDiscreteScheduler,
        "heun": HeunDiscreteScheduler,
        "dpm++2m": DPMSolverMultistepScheduler,
        "ddim": DDIMScheduler,
        "pndm": PNDMScheduler,
        "lms": LMSDiscreteScheduler,
        "lcm": LCMScheduler,
        "tcd": TCDScheduler,
    }[sampler]
    extra = {"use_karras_sigmas": True} if schedule == "karras" else {}
    if spacing:
        extra["timestep_spacing"] = spacing
    return cls.from_config(config, **extra)


def _tokenizer(tmp):
    from transformers import CLIPTokenizer
    from . import tokens
    folder = os.path.join(tmp, "tokenizer")
    tokens.write_tokenizer_folder(folder)  # the files the tokenizer fixtures use
    return CLIPTokenizer.from_pretrained(folder)


def tiny_sd(outdir):
    """The tiny model's UNet, VAE, text encoder (float32, eval) and scheduler
    (PNDM, the folder's) from outdir/tiny-sd."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    root = os.path.join(outdir, "tiny-sd")
    unet = UNet2DConditionModel.from_pretrained(os.path.join(root, "unet"), torch_dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(os.path.join(root, "vae"), torch_dtype=torch.float32)
    text_encoder = CLIPTextModel.from_pretrained(os.path.join(root, "text_encoder"),
                                                 torch_dtype=torch.float32).eval()
    return unet, vae, text_encoder, PNDMScheduler.from_pretrained(os.path.join(root, "scheduler"))


def make(outdir):
    from diffusers import StableDiffusionPipeline

    torch.use_deterministic_algorithms(True)
    unet, vae, text_encoder, base_sched = tiny_sd(outdir)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _tokenizer(tmp)

    tensors, cases = {}, []
    for name, sampler, schedule, steps, cfg, width, height, negative, *rest in CASES:
        spacing = rest[0] if rest else None
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                       unet=unet,
                                       scheduler=_scheduler(sampler, schedule, base_sched.config,
                                                            spacing),
                                       safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        out = {}
        for kind in ("latent", "np"):
            with torch.no_grad():
                r = pipe(PROMPT, negative_prompt=negative, height=height, width=width,
                         num_inference_steps=steps, guidance_scale=cfg,
                         generator=torch.Generator("cpu").manual_seed(SEED), output_type=kind)
            out[kind] = torch.as_tensor(r.images).float().contiguous()
        tensors[f"{name}.latents"] = out["latent"]
        tensors[f"{name}.image"] = out["np"]
        cases.append(dict(name=name, sampler=sampler, schedule=schedule, steps=steps, cfg=cfg,
                          seed=SEED, width=width, height=height, prompt=PROMPT,
                          negative=negative, spacing=spacing))
        img = out["np"]
        print(f"  {name:16s} latents std {out['latent'].std():.3f}  "
              f"image mean {img.mean():.3f} min {img.min():.3f} max {img.max():.3f}")
    save_file(tensors, os.path.join(outdir, "pipeline_ref.safetensors"),
              metadata={"cases": json.dumps(cases), "diffusers": __import__("diffusers").__version__,
                        "torch": torch.__version__})
