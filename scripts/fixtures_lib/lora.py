"""LoRA references: diffusers' load_lora_weights on the tiny model
(tests/fixtures/tiny-sd, made by the models part), text to image.

Writes
  outdir/lora/kohya.safetensors   a kohya-ss LoRA with the real key naming:
      lora_unet_<path '.'->'_'>.lora_down.weight / .lora_up.weight / .alpha for
      the attention projections (to_q/k/v, to_out.0), proj_in/out, ff.net.0.proj,
      ff.net.2, the ResNets' conv1/conv2 (LoCon: down [r, in, 3, 3], up
      [out, r, 1, 1]) and time_emb_proj; lora_te_text_model_encoder_layers_N_...
      for q/k/v/out_proj, fc1, fc2.  Rank 4, alphas 3 and 8 (scales 0.75 and 2).
  outdir/lora/peft.safetensors    a PEFT LoRA made with peft's LoraConfig on the
      tiny UNet and text encoder (r 4, lora_alpha 8) and saved by
      StableDiffusionPipeline.save_lora_weights with the adapter metadata.
  outdir/lora_ref.safetensors
      <case>.latents      F32 [1, 4, h, w]  final latents (output_type="latent")
      <case>.image        F32 [1, H, W, 3]  output_type="np"
                          (the merged text encoder weights rounded to bf16: what
                          sdc makes of the folder, whose text encoder is bf16)
      <case>.f16.latents / .f16.image       the same with the merged UNet and
                          text encoder weights rounded to fp16 (what sdc makes of
                          the single-file model, whose weights are fp16)
      __metadata__["cases"]: JSON list of {name, loras: [[file, weight], ...],
                          and the pipeline fields (pipeline.py's)}.
The weights are applied as diffusers documents: load_lora_weights, then
set_adapters(names, adapter_weights=[...]).  Every module's merged weight is
checked against W + w * alpha / r * up @ down computed here, so the
references are the key naming's meaning, not just diffusers' output.
"""
import json
import os
import tempfile

import torch
from safetensors.torch import save_file

from . import pipeline as pl

RANK = 4
SEED = 1234
# (name, [(file, weight), ...])
CASES = [
    ("kohya_0.5", [("kohya", 0.5)]),
    ("kohya_1", [("kohya", 1.0)]),
    ("peft_0.5", [("peft", 0.5)]),
    ("peft_1", [("peft", 1.0)]),
    ("both", [("kohya", 0.7), ("peft", -0.6)]),
]

UNET_LEAVES = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q",
               "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "proj_in", "proj_out",
               "ff.net.0.proj", "ff.net.2", "conv1", "conv2", "time_emb_proj")
TE_LEAVES = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def _targets(model, leaves):
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and n.endswith(leaves)]


def _factors(mod, gen, amp):
    """Random (down, up) for a Linear or Conv2d, the update about amp times the
    weight's own size."""
    w = mod.weight.detach()
    if isinstance(mod, torch.nn.Conv2d):
        down = torch.randn((RANK,) + tuple(w.shape[1:]), generator=gen)
        up = torch.randn((w.shape[0], RANK, 1, 1), generator=gen)
    else:
        down = torch.randn((RANK, w.shape[1]), generator=gen)
        up = torch.randn((w.shape[0], RANK), generator=gen)
    fan_in = down[0].numel()
    down = down / fan_in ** 0.5
    up = up * (amp * float(w.std()) * fan_in ** 0.5 / RANK ** 0.5)
    return down.float().contiguous(), up.float().contiguous()


def make_kohya(unet, te, path):
    gen = torch.Generator().manual_seed(11)
    sd, deltas = {}, {}
    for comp, model, leaves, pre in (("unet", unet, UNET_LEAVES, "lora_unet_"),
                                     ("text_encoder", te, TE_LEAVES, "lora_te_")):
        for i, (name, mod) in enumerate(_targets(model, leaves)):
            down, up = _factors(mod, gen, 0.3)
            # scales 0.75 and 2.  diffusers 0.42 matches a per-module alpha to
            # the attention processors' and the text encoder's modules by a name
            # they do not have (its alpha_pattern keeps "...processor.to_v_lora.
            # down.weight"), so those take the file's most common alpha: they get
            # that one here; sdc reads every module's own alpha, as kohya-ss means
            alpha = 8.0 if i % 3 == 0 and comp == "unet" and ".attn" not in name else 3.0
            # kohya-ss names the text encoder's modules from transformers'
            # CLIPTextModel as it was (text_model.encoder...; transformers 5
            # dropped the text_model level, diffusers maps it back)
            real = name if comp == "unet" or name.startswith("text_model.") else "text_model." + name
            key = pre + real.replace(".", "_")
            sd[key + ".lora_down.weight"] = down
            sd[key + ".lora_up.weight"] = up
            sd[key + ".alpha"] = torch.tensor(alpha)
            deltas[f"{comp}.{name}"] = (up.flatten(1) @ down.flatten(1)) * (alpha / RANK)
    save_file(sd, path)
    return deltas


def make_peft(unet, te, path):
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    gen = torch.Generator().manual_seed(12)
    configs = {
        "unet": LoraConfig(r=RANK, lora_alpha=8, init_lora_weights=False,
                           target_modules=["to_q", "to_k", "to_v", "to_out.0", "proj_in",
                                           "ff.net.2"]),
        "text_encoder": LoraConfig(r=RANK, lora_alpha=8, init_lora_weights=False,
                                   target_modules=["q_proj", "v_proj", "fc1"]),
    }
    layers, deltas = {}, {}
    for comp, model in (("unet", unet), ("text_encoder", te)):
        model.add_adapter(configs[comp], adapter_name="peft_fixture")
        for name, mod in model.named_modules():
            if hasattr(mod, "lora_A") and "peft_fixture" in mod.lora_A:
                base = mod.base_layer
                down, up = _factors(base, gen, 0.3)
                with torch.no_grad():
                    mod.lora_A["peft_fixture"].weight.copy_(down)
                    mod.lora_B["peft_fixture"].weight.copy_(up)
                deltas[f"{comp}.{name}"] = (up.flatten(1) @ down.flatten(1)) * (8 / RANK)
        layers[comp] = get_peft_model_state_dict(model, adapter_name="peft_fixture")
    with tempfile.TemporaryDirectory() as tmp:
        StableDiffusionPipeline.save_lora_weights(
            tmp, unet_lora_layers=layers["unet"], text_encoder_lora_layers=layers["text_encoder"],
            unet_lora_adapter_metadata=configs["unet"].to_dict(),
            text_encoder_lora_adapter_metadata=configs["text_encoder"].to_dict(),
            weight_name="peft.safetensors")
        os.replace(os.path.join(tmp, "peft.safetensors"), path)
    return deltas


def _check_fused(pipe, base, loras, deltas):
    """The fused weights are W + sum w * delta for every module (the key
    naming means what the fixture meant)."""
    for comp, model in (("unet", pipe.unet), ("text_encoder", pipe.text_encoder)):
        sd = model.state_dict()
        for name, w0 in base[comp].items():
            want = w0.clone()
            mod = name[:-len(".weight")]
            for file, weight in loras:
                d = deltas[file].get(f"{comp}.{mod}")
                if d is not None:
                    want += weight * d.reshape(w0.shape)
            got = sd.get(name, sd.get(name.replace(".weight", ".base_layer.weight")))
            err = float((got - want).abs().max())
            assert err <= 1e-5 * (1 + float(want.abs().max())), (comp, name, err)


def make(outdir):
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.use_deterministic_algorithms(True)
    root = os.path.join(outdir, "tiny-sd")
    ldir = os.path.join(outdir, "lora")
    os.makedirs(ldir, exist_ok=True)

    def load():
        unet = UNet2DConditionModel.from_pretrained(os.path.join(root, "unet"), torch_dtype=torch.float32)
        te = CLIPTextModel.from_pretrained(os.path.join(root, "text_encoder"), torch_dtype=torch.float32)
        return unet, te

    unet, te = load()
    deltas = {"kohya": make_kohya(unet, te, os.path.join(ldir, "kohya.safetensors")),
              "peft": make_peft(unet, te, os.path.join(ldir, "peft.safetensors"))}
    vae = AutoencoderKL.from_pretrained(os.path.join(root, "vae"), torch_dtype=torch.float32)
    base_sched = PNDMScheduler.from_pretrained(os.path.join(root, "scheduler"))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = pl._tokenizer(tmp)

    tensors, cases = {}, []
    sampler, schedule, steps, cfg, width, height = "euler", "discrete", 4, 7.5, 32, 32
    for name, loras in CASES:
        unet, te = load()
        base = {"unet": {k: v.clone() for k, v in unet.state_dict().items() if k.endswith("weight")},
                "text_encoder": {k: v.clone() for k, v in te.state_dict().items()
                                 if k.endswith("weight")}}
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tokenizer, unet=unet,
                                       scheduler=pl._scheduler(sampler, schedule, base_sched.config),
                                       safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        for file, _ in loras:
            pipe.load_lora_weights(ldir, weight_name=f"{file}.safetensors", adapter_name=file)
        pipe.set_adapters([f for f, _ in loras], adapter_weights=[w for _, w in loras])
        pipe.fuse_lora(components=["unet", "text_encoder"], lora_scale=1.0)
        _check_fused(pipe, base, loras, deltas)
        params = list(pipe.unet.parameters()) + list(pipe.text_encoder.parameters())
        fused = [p.detach().clone() for p in params]
        for suffix in ("", ".f16"):
            # the fused weights as sdc holds them: merged in f32 and rounded once
            # to the file's dtype (the folder's text encoder is bf16; the single
            # file's UNet and text encoder fp16).  The unmerged weights are
            # those dtypes' values already, so rounding them changes nothing.
            with torch.no_grad():
                for p, f in zip(params, fused):
                    p.copy_(f)
                for model in ((pipe.unet, pipe.text_encoder) if suffix else (pipe.text_encoder,)):
                    for p in model.parameters():
                        p.copy_(p.to(torch.float16 if suffix else torch.bfloat16).float())
            out = {}
            for kind in ("latent", "np"):
                with torch.no_grad():
                    r = pipe(pl.PROMPT, negative_prompt=pl.NEGATIVE, height=height, width=width,
                             num_inference_steps=steps, guidance_scale=cfg,
                             generator=torch.Generator("cpu").manual_seed(SEED), output_type=kind)
                out[kind] = torch.as_tensor(r.images).float().contiguous()
            tensors[f"{name}{suffix}.latents"] = out["latent"]
            tensors[f"{name}{suffix}.image"] = out["np"]
            img = out["np"]
            print(f"  {name + suffix:16s} latents std {out['latent'].std():.3f}  "
                  f"image mean {img.mean():.3f} min {img.min():.3f} max {img.max():.3f}")
        cases.append(dict(name=name, loras=[[f"lora/{f}.safetensors", w] for f, w in loras],
                          sampler=sampler, schedule=schedule, steps=steps, cfg=cfg, seed=SEED,
                          width=width, height=height, prompt=pl.PROMPT, negative=pl.NEGATIVE,
                          spacing=None))
    save_file(tensors, os.path.join(outdir, "lora_ref.safetensors"),
              metadata={"cases": json.dumps(cases), "diffusers": __import__("diffusers").__version__,
                        "torch": torch.__version__})
