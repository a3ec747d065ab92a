"""Image-to-image and inpainting references: diffusers'
StableDiffusionImg2ImgPipeline and StableDiffusionInpaintPipeline on the tiny
models, and the tiny inpainting model they need.

Writes into outdir:
  tiny-sd-inpaint/             diffusers folder: unet/ a tiny UNet with 9 input
                               channels (latent, mask, masked-image latent), F16;
                               text_encoder, vae, scheduler are links to
                               ../tiny-sd/ (the same weights, as a shared cache
                               would hold them); model_index.json names
                               StableDiffusionInpaintPipeline
  tiny-sd-inpaint.safetensors  the same under the original names (unet F16, vae
                               F32, text encoder F16)
  tiny-taesd-x2/               a tiny TAESD (AutoencoderTiny) with 2 levels, whose 2x
                               matches the tiny VAE's: for the cases decoding and
                               encoding through it (diffusers folder, F16)
  img2img_ref.safetensors
    <input>.pixels  U8 [H, W, C]  the init images and masks given to both
    <case>.latents  F32 [1, 4, h, w]  output_type="latent"
    <case>.image    F32 [1, H, W, 3]  output_type="np"
    __metadata__["cases"]: JSON list of {name, model ("tiny-sd" |
    "tiny-sd-inpaint"), taesd (null or "tiny-taesd-x2": the pipeline's vae is
    that AutoencoderTiny), sampler, schedule, steps, cfg, strength, seed,
    width, height, prompt, negative, init (input name or null: text to
    image), mask (input name or null)}

The inputs go to diffusers as PIL images the way diffusers.utils.load_image
hands them over (mode RGB; a grey init image converted to RGB first); a mask
goes as it is (the mask processor converts it to L).  The models are
run by StableDiffusionImg2ImgPipeline / StableDiffusionInpaintPipeline with
the scheduler classes of the pipeline part.
"""
import json
import os
import shutil

import numpy as np
import torch
from safetensors.torch import save_file

from . import models as M
from .pipeline import NEGATIVE, PROMPT, SEED, _scheduler, _tokenizer

INPAINT_UNET = dict(M.TINY_UNET, in_channels=9)
TAESD_X2 = dict(in_channels=3, out_channels=3, encoder_block_out_channels=(8, 8),
                decoder_block_out_channels=(8, 8), num_encoder_blocks=(1, 1),
                num_decoder_blocks=(1, 1), latent_channels=4)


def _inputs():
    """Deterministic test pictures: smooth gradients with shapes (init
    images) and masks with soft edges, grey levels and a hard rectangle."""
    y, x = np.mgrid[0:32, 0:32].astype(np.float32)
    r = 128 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    g = 255 * (x + y) / 62.0
    b = 255 * ((x - 16) ** 2 + (y - 12) ** 2 < 60)
    init = np.stack([r, g, b], -1).clip(0, 255).round().astype(np.uint8)
    grey = (0.5 * r + 0.5 * g).clip(0, 255).round().astype(np.uint8)[..., None]
    # soft mask: a ramp across x (binarised at 127/128 by the processor) plus a square
    soft = np.clip((x - 8) * 12, 0, 255)
    soft[4:12, 20:28] = 255
    soft[20:28, 2:10] = 120  # below one half: kept
    mask = soft.round().astype(np.uint8)[..., None]
    m = mask[..., 0].astype(np.int32)  # luma ~0.93 m: the edge moves off the grey one's
    rgbmask = np.stack([m, m * 7 // 8, m // 2], -1).astype(np.uint8)
    # a 40x24 pair for resizing to 32x32
    yy, xx = np.mgrid[0:24, 0:40].astype(np.float32)
    wide = np.stack([255 * xx / 39, 255 * yy / 23, 128 + 120 * np.sin((xx + yy) / 4)], -1)
    wide = wide.clip(0, 255).round().astype(np.uint8)
    widemask = (255 * ((xx - 20) ** 2 / 120 + (yy - 12) ** 2 / 40 < 1)).astype(np.uint8)[..., None]
    return {"init": init, "grey": grey, "mask": mask, "rgbmask": rgbmask, "wide": wide,
            "widemask": widemask}


def _pil(a, as_init):
    from PIL import Image
    im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    return im.convert("RGB") if as_init else im


# (name, model, sampler, schedule, steps, cfg, strength, init, mask, width, height)
CASES = [
    ("i2i_euler", "tiny-sd", "euler", "discrete", 4, 7.5, 0.75, "init", None, 32, 32),
    ("i2i_euler_a", "tiny-sd", "euler_a", "discrete", 4, 7.5, 0.5, "init", None, 32, 32),
    # 5 * 0.6 = 2.9999999999999996: two steps, as int() gives in diffusers
    ("i2i_heun", "tiny-sd", "heun", "discrete", 5, 7.5, 0.6, "init", None, 32, 32),
    ("i2i_dpmpp2m_karras", "tiny-sd", "dpm++2m", "karras", 5, 7.5, 0.3, "init", None, 32, 32),
    ("i2i_ddim_full", "tiny-sd", "ddim", "discrete", 4, 7.5, 1.0, "init", None, 32, 32),
    ("i2i_pndm", "tiny-sd", "pndm", "discrete", 5, 7.5, 0.8, "init", None, 32, 32),
    # LMS from a later start keeps the absolute index's order (diffusers)
    ("i2i_lms", "tiny-sd", "lms", "discrete", 4, 7.5, 0.75, "init", None, 32, 32),
    ("i2i_grey_nocfg", "tiny-sd", "euler", "discrete", 4, 1.0, 0.5, "grey", None, 32, 32),
    ("inp9_euler", "tiny-sd-inpaint", "euler", "discrete", 4, 7.5, 1.0, "init", "mask", 32, 32),
    ("inp9_dpmpp2m", "tiny-sd-inpaint", "dpm++2m", "karras", 4, 7.5, 0.75, "init", "mask", 32, 32),
    ("inp9_ddim_nocfg", "tiny-sd-inpaint", "ddim", "discrete", 4, 1.0, 1.0, "init", "rgbmask", 32, 32),
    ("inp9_resize", "tiny-sd-inpaint", "euler_a", "discrete", 4, 7.5, 1.0, "wide", "widemask", 32, 32),
    ("inp4_euler", "tiny-sd", "euler", "discrete", 4, 7.5, 1.0, "init", "mask", 32, 32),
    ("inp4_euler_a", "tiny-sd", "euler_a", "discrete", 4, 7.5, 0.75, "init", "mask", 32, 32),
    ("inp4_pndm", "tiny-sd", "pndm", "discrete", 5, 7.5, 0.8, "init", "mask", 32, 32),
    ("inp4_heun", "tiny-sd", "heun", "discrete", 3, 7.5, 1.0, "init", "mask", 32, 32),
    ("inp4_lms_rgbmask", "tiny-sd", "lms", "discrete", 4, 7.5, 0.75, "init", "rgbmask", 32, 32),
    # through TAESD (its latents without a draw when encoding)
    ("t2i_taesd", "tiny-sd+taesd", "euler", "discrete", 4, 7.5, 1.0, None, None, 32, 32),
    ("i2i_taesd", "tiny-sd+taesd", "euler_a", "discrete", 4, 7.5, 0.6, "init", None, 32, 32),
    ("inp9_taesd", "tiny-sd-inpaint+taesd", "dpm++2m", "karras", 4, 7.5, 0.75, "init", "mask", 32, 32),
    # the ancestral sampler's draws follow the encodings': none through TAESD
    ("inp4_taesd", "tiny-sd+taesd", "euler_a", "discrete", 4, 7.5, 0.75, "init", "mask", 32, 32),
]


def _make_inpaint_model(outdir):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**INPAINT_UNET).eval()
    M.randomise(unet, torch.Generator().manual_seed(21))
    base = os.path.join(outdir, "tiny-sd")
    root = os.path.join(outdir, "tiny-sd-inpaint")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    unet.to(torch.float16).save_pretrained(os.path.join(root, "unet"), safe_serialization=True)
    unet.to(torch.float32)
    for part in ("text_encoder", "vae", "scheduler"):
        os.symlink(os.path.join("..", "tiny-sd", part), os.path.join(root, part))
    M.write_model_index(root)
    with open(os.path.join(root, "model_index.json")) as f:
        index = json.load(f)
    index["_class_name"] = "StableDiffusionInpaintPipeline"
    with open(os.path.join(root, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")

    vae = AutoencoderKL.from_pretrained(os.path.join(base, "vae"), torch_dtype=torch.float32)
    clip = CLIPTextModel.from_pretrained(os.path.join(base, "text_encoder"), torch_dtype=torch.float32)
    ckpt = M.original_layout(unet, vae, clip, unet.config, vae.config)
    M.check_round_trip(ckpt, unet, vae, clip, unet.config, vae.config)
    save_file(ckpt, os.path.join(outdir, "tiny-sd-inpaint.safetensors"))
    return unet


def _make_taesd(outdir):
    from diffusers import AutoencoderTiny
    from .taesd import write_folder

    taesd = AutoencoderTiny(**TAESD_X2).eval()
    M.randomise(taesd, torch.Generator().manual_seed(22))
    write_folder(taesd, os.path.join(outdir, "tiny-taesd-x2"), torch.float16)
    return taesd


def make(outdir):
    from diffusers import (AutoencoderKL, PNDMScheduler, StableDiffusionImg2ImgPipeline,
                           StableDiffusionInpaintPipeline, StableDiffusionPipeline,
                           UNet2DConditionModel)
    import tempfile
    from transformers import CLIPTextModel

    torch.use_deterministic_algorithms(True)
    unet9 = _make_inpaint_model(outdir)
    taesd = _make_taesd(outdir)
    root = os.path.join(outdir, "tiny-sd")
    unet = UNet2DConditionModel.from_pretrained(os.path.join(root, "unet"), torch_dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(os.path.join(root, "vae"), torch_dtype=torch.float32)
    clip = CLIPTextModel.from_pretrained(os.path.join(root, "text_encoder"), torch_dtype=torch.float32)
    base_sched = PNDMScheduler.from_pretrained(os.path.join(root, "scheduler"))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _tokenizer(tmp)

    inputs = _inputs()
    tensors = {f"{k}.pixels": torch.from_numpy(v).contiguous() for k, v in inputs.items()}
    cases = []
    for name, model, sampler, schedule, steps, cfg, strength, init, mask, width, height in CASES:
        sched = _scheduler(sampler, schedule, base_sched.config)
        model, _, tiny = model.partition("+")
        parts = dict(vae=taesd if tiny else vae, text_encoder=clip, tokenizer=tokenizer,
                     unet=unet9 if model == "tiny-sd-inpaint" else unet, scheduler=sched,
                     safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        args = dict(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps,
                    guidance_scale=cfg)
        if init:
            args.update(strength=strength, image=_pil(inputs[init], True))
        if not init:
            pipe = StableDiffusionPipeline(**parts)
            args.update(height=height, width=width)
        elif mask:
            pipe = StableDiffusionInpaintPipeline(**parts)
            args.update(mask_image=_pil(inputs[mask], False), height=height, width=width)
        else:
            pipe = StableDiffusionImg2ImgPipeline(**parts)
            assert inputs[init].shape[:2] == (height, width)
        pipe.set_progress_bar_config(disable=True)
        out = {}
        for kind in ("latent", "np"):
            with torch.no_grad():
                r = pipe(**args, generator=torch.Generator("cpu").manual_seed(SEED), output_type=kind)
            out[kind] = torch.as_tensor(np.asarray(r.images)).float().contiguous()
        tensors[f"{name}.latents"] = out["latent"]
        tensors[f"{name}.image"] = out["np"]
        cases.append(dict(name=name, model=model, taesd="tiny-taesd-x2" if tiny else None,
                          sampler=sampler, schedule=schedule, steps=steps,
                          cfg=cfg, strength=strength, seed=SEED, width=width, height=height,
                          prompt=PROMPT, negative=NEGATIVE, init=init, mask=mask))
        img = out["np"]
        print(f"  {name:20s} latents std {out['latent'].std():.3f}  "
              f"image mean {img.mean():.3f} min {img.min():.3f} max {img.max():.3f}")
    save_file(tensors, os.path.join(outdir, "img2img_ref.safetensors"),
              metadata={"cases": json.dumps(cases), "diffusers": __import__("diffusers").__version__,
                        "torch": torch.__version__})
