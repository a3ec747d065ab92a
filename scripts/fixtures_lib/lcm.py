"""LCM-distilled UNets (time_cond_proj_dim: the guidance-scale embedding added
to the timestep's, e.g. SimianLuo/LCM_Dreamshaper_v7): a tiny such model and
references from diffusers.

Writes into outdir:
  tiny-sd-lcm/              diffusers folder: unet/ the tiny UNet of the models
                            part with time_cond_proj_dim 24 (F32); text_encoder,
                            vae and scheduler are links to ../tiny-sd's;
                            model_index.json names LatentConsistencyModelPipeline
  tiny-sd-lcm.safetensors   the same under the original names (unet F16, vae
                            F32, text encoder F16).  cond_proj keeps its
                            diffusers name under model.diffusion_model., as
                            diffusers' scripts/convert_diffusers_to_original_
                            stable_diffusion.py writes it (it renames only
                            what it knows); diffusers' own single-file loader
                            drops that tensor (checked below), so the folder's
                            references stand for both layouts
  lcm_ref.safetensors
    unet.x [2,4,16,16], unet.ctx [2,77,32], unet.t [2] (different),
    unet.wemb [2,24]: get_guidance_scale_embedding([7.0, 0.5], 24)
                            -> unet.out [2,4,16,16]; unet.out_nocond: the
                            same with timestep_cond None (nothing added)
    <case>.latents F32 [1,4,h,w], <case>.image F32 [1,H,W,3]: whole pipelines
                            (as pipeline.py's), __metadata__["cases"] as there
                            plus "pipeline": "lcm" (LatentConsistencyModel-
                            Pipeline, which has no negative prompt) or "sd"
                            (StableDiffusionPipeline with LCMScheduler: CFG
                            off for such a UNet, the negative prompt unused)
"""
import json
import os
import shutil
import tempfile

import torch
from safetensors.torch import save_file

from . import models as M
from .pipeline import PROMPT, NEGATIVE, SEED, _tokenizer

COND_DIM = 24  # not C0 (32): a transposed cond_proj cannot pass
LCM_UNET = dict(M.TINY_UNET, time_cond_proj_dim=COND_DIM)

# (name, pipeline, steps, cfg, width, height, negative)
CASES = [
    ("lcm4_cfg8", "lcm", 4, 8.0, 32, 32, None),
    ("lcm2_cfg1.5", "lcm", 2, 1.5, 32, 32, None),
    ("lcm3_cfg1_wide", "lcm", 3, 1.0, 48, 32, None),
    # StableDiffusionPipeline: the same as "lcm" (no CFG, negative unused)
    ("sd_lcm4_cfg8", "sd", 4, 8.0, 32, 32, NEGATIVE),
]


class _Without:
    """A module's state_dict without some keys (for models.original_layout)."""

    def __init__(self, module, drop):
        self.module, self.drop = module, drop

    def state_dict(self):
        return {k: v for k, v in self.module.state_dict().items() if k not in self.drop}


def _make_model(outdir):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**LCM_UNET).eval()
    M.randomise(unet, torch.Generator().manual_seed(31))
    assert tuple(unet.time_embedding.cond_proj.weight.shape) == (32, COND_DIM)
    assert unet.time_embedding.cond_proj.bias is None

    root = os.path.join(outdir, "tiny-sd-lcm")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    unet.save_pretrained(os.path.join(root, "unet"), safe_serialization=True)
    for part in ("text_encoder", "vae", "scheduler"):
        os.symlink(os.path.join("..", "tiny-sd", part), os.path.join(root, part))
    M.write_model_index(root)
    with open(os.path.join(root, "model_index.json")) as f:
        index = json.load(f)
    index["_class_name"] = "LatentConsistencyModelPipeline"
    with open(os.path.join(root, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")

    base = os.path.join(outdir, "tiny-sd")
    vae = AutoencoderKL.from_pretrained(os.path.join(base, "vae"), torch_dtype=torch.float32)
    clip = CLIPTextModel.from_pretrained(os.path.join(base, "text_encoder"), torch_dtype=torch.float32)
    key = "time_embedding.cond_proj.weight"
    plain = _Without(unet, {key})
    ckpt = M.original_layout(plain, vae, clip, unet.config, vae.config)
    M.check_round_trip(ckpt, plain, vae, clip, unet.config, vae.config)
    ckpt["model.diffusion_model." + key] = unet.state_dict()[key].to(torch.float16).contiguous()
    got = sfu.convert_ldm_unet_checkpoint({k: v.float() for k, v in ckpt.items()
                                           if v.is_floating_point()}, dict(unet.config))
    assert key not in got, "diffusers' single-file loader now maps cond_proj: revisit the docstring"
    save_file(ckpt, os.path.join(outdir, "tiny-sd-lcm.safetensors"))
    return unet, vae, clip


def _guidance_embedding(pipe, w, dim):
    return pipe.get_guidance_scale_embedding(torch.tensor(w), embedding_dim=dim)


def make(outdir):
    from diffusers import (LatentConsistencyModelPipeline, LCMScheduler, PNDMScheduler,
                           StableDiffusionPipeline)

    torch.use_deterministic_algorithms(True)
    unet, vae, clip = _make_model(outdir)
    base_sched = PNDMScheduler.from_pretrained(os.path.join(outdir, "tiny-sd", "scheduler"))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _tokenizer(tmp)

    def pipeline(kind):
        sched = LCMScheduler.from_config(base_sched.config)
        common = dict(vae=vae, text_encoder=clip, tokenizer=tokenizer, unet=unet, scheduler=sched,
                      safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe = (LatentConsistencyModelPipeline if kind == "lcm" else StableDiffusionPipeline)(**common)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    tensors = {}
    # ---- the UNet alone, with and without the guidance embedding
    g = torch.Generator().manual_seed(30)
    x = torch.randn(2, 4, 16, 16, generator=g)
    ctx = torch.randn(2, 77, 32, generator=g)
    t = torch.tensor([999.0, 259.0])
    wemb = _guidance_embedding(pipeline("lcm"), [7.0, 0.5], COND_DIM)
    sd_wemb = StableDiffusionPipeline.get_guidance_scale_embedding(None, torch.tensor([7.0, 0.5]),
                                                                   embedding_dim=COND_DIM)
    assert torch.equal(wemb, sd_wemb)
    with torch.no_grad():
        out = unet(x, t, encoder_hidden_states=ctx, timestep_cond=wemb).sample
        out_nocond = unet(x, t, encoder_hidden_states=ctx).sample
    M._stats("unet out", out)
    M._stats("unet out_nocond", out_nocond)
    print(f"   guidance embedding moves the output by rel L2 "
          f"{((out - out_nocond).norm() / out.norm()).item():.3f}")
    tensors.update({"unet.x": x, "unet.ctx": ctx, "unet.t": t, "unet.wemb": wemb.contiguous(),
                    "unet.out": out.contiguous(), "unet.out_nocond": out_nocond.contiguous()})

    # ---- whole pipelines
    cases, finals = [], {}
    for name, kind, steps, cfg, width, height, negative in CASES:
        pipe = pipeline(kind)
        extra = {"negative_prompt": negative} if kind == "sd" else {}
        out = {}
        for output in ("latent", "np"):
            with torch.no_grad():
                r = pipe(PROMPT, height=height, width=width, num_inference_steps=steps,
                         guidance_scale=cfg, generator=torch.Generator("cpu").manual_seed(SEED),
                         output_type=output, **extra)
            out[output] = torch.as_tensor(r.images).float().contiguous()
        tensors[f"{name}.latents"] = out["latent"]
        tensors[f"{name}.image"] = out["np"]
        finals[name] = out["latent"]
        cases.append(dict(name=name, pipeline=kind, model="tiny-sd-lcm", sampler="lcm",
                          schedule="discrete", steps=steps, cfg=cfg, seed=SEED, width=width,
                          height=height, prompt=PROMPT, negative=negative, spacing=None))
        img = out["np"]
        print(f"  {name:16s} latents std {out['latent'].std():.3f}  "
              f"image mean {img.mean():.3f} min {img.min():.3f} max {img.max():.3f}")
    # the two pipelines agree (the SD one ignores its negative prompt here)
    d = (finals["sd_lcm4_cfg8"] - finals["lcm4_cfg8"]).norm() / finals["lcm4_cfg8"].norm()
    print(f"   StableDiffusionPipeline vs LatentConsistencyModelPipeline: rel L2 {d.item():.2e}")
    assert d < 1e-6
    save_file(tensors, os.path.join(outdir, "lcm_ref.safetensors"),
              metadata={"cases": json.dumps(cases), "diffusers": __import__("diffusers").__version__,
                        "torch": torch.__version__, "time_cond_proj_dim": str(COND_DIM)})
