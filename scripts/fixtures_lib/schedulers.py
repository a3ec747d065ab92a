"""References for src/sched: torch's CPU randn and diffusers' nine samplers.

rng_ref.safetensors
  randn.<seed>.<n>        torch.randn(n, generator=manual_seed(seed)) (float32)
  seq.<seed>.<a>_<b>_...  successive randn calls of a, b, ... elements on one
                          generator, concatenated (the second-sample cache of
                          the double path and the stream position carry over)
  hash.<seed>.<n>         [1] int64: FNV-1a (64-bit) over the float32 bit
                          patterns (uint32 words) of one randn(n) call, for
                          streams too long to store
  The bits depend on the CPU path torch takes: x86-64 with AVX2 (and AVX-512,
  which runs the AVX2 kernel).

sched_ref.safetensors, for <sampler>.<schedule>.<steps> (schedules each class
offers; steps 1 2 5 20 50; lcm and tcd 1 2 4 5 8), with each class made as a
pipeline makes it, Class.from_config(SD 1.4's scheduler config) with the
class's own defaults; <sampler>.discrete.<spacing>.<steps> the same with
timestep_spacing set (linspace, leading, trailing at 4 and 8 steps, for the
classes that read it); tcd.discrete.eta0.3.<steps> with the pipeline's eta
0.3 (TCD's gamma; the pipeline's default eta is 0):
  timesteps          [len]   scheduler.timesteps, as the UNet receives them (f64)
  sigmas             [len+1] scheduler.sigmas (f64; absent for ddim, pndm)
  init_noise_sigma   [1]
  input_scale        [len]   scale_model_input(ones, t), the factor on x
  final              [1,4,8,8] f32: latents after the whole loop with the fake
                     model below (epsilon prediction)
  final_v            the same with prediction_type v_prediction
The loop is StableDiffusionPipeline's without guidance: latents =
randn([1,4,8,8], generator=manual_seed(SEED)) * init_noise_sigma; for each t:
eps = fake_model(scale_model_input(latents, t), t); latents = step(eps, t,
latents, eta=0 / generator=g as the pipeline passes them).  The denoised
estimate at 5 steps (x0*) is pred_original_sample, LCM's `denoised`.  fake_model is
computed in float64 and rounded to float32, so that C can compute the same:
  eps = 0.5 * x * cos(t / 300) + 0.1 * sin(x + t / 1000)

Needs scipy for LMSDiscreteScheduler (pip install scipy).
"""
import inspect
import math
import os

import torch
from safetensors.torch import save_file

SEED = 1234
SHAPE = (1, 4, 8, 8)
STEPS = [1, 2, 5, 20, 50]

# SD 1.4's scheduler/scheduler_config.json
SD14 = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

RNG_SEEDS = [0, 1, 42, 2**32 + 5, 2**63 - 1, 2**64 - 1]
RNG_SIZES = [1, 3, 15, 16, 17, 31, 64, 1000]
RNG_BIG = 4 * 64 * 64
RNG_BIG_SEEDS = [0, 42]
RNG_SEQS = [[3, 3], [1, 1, 1], [16, 3, 5], [3, 16, 1], [5, 5, 16, 17], [256, 256, 256]]
RNG_HASHED = [(7, 1 << 20), (2**40 + 3, 1 << 20), (99, (1 << 20) + 5)]


def fnv1a64_words(a):
    """FNV-1a over uint32 words: h = (h ^ w) * 0x100000001b3 mod 2^64"""
    h = 0xCBF29CE484222325
    for w in a.view(torch.int32).numpy().astype("uint32").tolist():
        h = ((h ^ w) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _samplers():
    import diffusers as d

    return [
        ("euler", d.EulerDiscreteScheduler, True),
        ("euler_a", d.EulerAncestralDiscreteScheduler, False),
        ("heun", d.HeunDiscreteScheduler, True),
        ("dpm++2m", d.DPMSolverMultistepScheduler, True),
        ("ddim", d.DDIMScheduler, False),
        ("pndm", d.PNDMScheduler, False),
        ("lms", d.LMSDiscreteScheduler, True),
        ("lcm", d.LCMScheduler, False),
        ("tcd", d.TCDScheduler, False),
    ]


CONSISTENCY = ("lcm", "tcd")
CONSISTENCY_STEPS = [1, 2, 4, 5, 8]
SPACINGS = ["linspace", "leading", "trailing"]
SPACING_STEPS = [4, 8]
TCD_ETA = 0.3


def _make(cls, karras, prediction="epsilon", spacing=None):
    kw = {"prediction_type": prediction}
    if spacing is not None:
        kw["timestep_spacing"] = spacing
    if karras:
        kw["use_karras_sigmas"] = True
    if cls.__name__ == "DPMSolverMultistepScheduler":
        kw.update(algorithm_type="dpmsolver++", solver_order=2)
    return cls.from_config(SD14, **kw)


def fake_model(x, t):
    """[1,4,8,8] float32, t as the UNet gets it (float32) -> float32"""
    tt = float(torch.as_tensor(t).float())
    x64 = x.double()
    eps = 0.5 * x64 * math.cos(tt / 300.0) + 0.1 * torch.sin(x64 + tt / 1000.0)
    return eps.float()


def _run(sched, eta=0.0):
    g = torch.Generator("cpu").manual_seed(SEED)
    latents = torch.randn(SHAPE, generator=g, dtype=torch.float32) * sched.init_noise_sigma
    params = set(inspect.signature(sched.step).parameters.keys())
    extra = {}
    if "eta" in params:
        extra["eta"] = eta
    if "generator" in params:
        extra["generator"] = g
    for t in sched.timesteps:
        x_in = sched.scale_model_input(latents, t)
        eps = fake_model(x_in, t)
        latents = sched.step(eps, t, latents, **extra, return_dict=False)[0]
    return latents.float().contiguous()


def _x0_at_middle(name, sched):
    """The loop of _run up to index len // 2; there: latents, the model
    output and the denoised estimate (pred_original_sample where step()
    returns it, else what the class computes internally)."""
    g = torch.Generator("cpu").manual_seed(SEED)
    latents = torch.randn(SHAPE, generator=g, dtype=torch.float32) * sched.init_noise_sigma
    params = set(inspect.signature(sched.step).parameters.keys())
    extra = {k: v for k, v in (("eta", 0.0), ("generator", g)) if k in params}
    mid = len(sched.timesteps) // 2
    for i, t in enumerate(sched.timesteps):
        x_in = sched.scale_model_input(latents, t)
        eps = fake_model(x_in, t)
        if i == mid:
            if name == "dpm++2m":
                x0 = sched.convert_model_output(eps, sample=latents)
            elif name == "lcm":
                x0 = sched.step(eps, t, latents.clone(), **extra).denoised
            elif name in ("pndm", "tcd"):
                a = sched.alphas_cumprod[int(t)]
                if sched.config.prediction_type == "v_prediction":
                    x0 = a ** 0.5 * latents - (1 - a) ** 0.5 * eps
                else:
                    x0 = (latents - (1 - a) ** 0.5 * eps) / a ** 0.5
            else:
                x0 = sched.step(eps, t, latents.clone(), **extra).pred_original_sample
            return latents.contiguous(), eps.contiguous(), i, x0.float().contiguous()
        latents = sched.step(eps, t, latents, **extra, return_dict=False)[0]
    raise AssertionError("no middle step")


def make_rng(outdir):
    out = {}
    for seed in RNG_SEEDS:
        for n in RNG_SIZES + ([RNG_BIG] if seed in RNG_BIG_SEEDS else []):
            g = torch.Generator("cpu").manual_seed(seed)
            out[f"randn.{seed}.{n}"] = torch.randn(n, generator=g, dtype=torch.float32)
        for seq in RNG_SEQS:
            g = torch.Generator("cpu").manual_seed(seed)
            parts = [torch.randn(n, generator=g, dtype=torch.float32) for n in seq]
            out[f"seq.{seed}.{'_'.join(map(str, seq))}"] = torch.cat(parts)
    for seed, n in RNG_HASHED:
        g = torch.Generator("cpu").manual_seed(seed)
        h = fnv1a64_words(torch.randn(n, generator=g, dtype=torch.float32))
        out[f"hash.{seed}.{n}"] = torch.tensor([h - (1 << 64) if h >= 1 << 63 else h], dtype=torch.int64)
    # one metadata key: safetensors writes a map's keys in no fixed order
    save_file(out, os.path.join(outdir, "rng_ref.safetensors"),
              metadata={"made_with": f"torch {torch.__version__}, cpu {torch.backends.cpu.get_cpu_capability()}"})


def _combo(out, key, name, cls, karras, steps, spacing=None, eta=0.0):
    s = _make(cls, karras, spacing=spacing)
    s.set_timesteps(steps, device="cpu")
    ts = s.timesteps
    # diffusers starts at the second match of timesteps[0]; sdc at index 0
    assert int((ts == ts[0]).sum()) == 1, key
    out[key + "timesteps"] = ts.double()
    if name not in ("ddim", "pndm") + CONSISTENCY:
        out[key + "sigmas"] = s.sigmas.double()
    init = float(s.init_noise_sigma)
    out[key + "init_noise_sigma"] = torch.tensor([init], dtype=torch.float64)
    scales = []
    ones = torch.ones(1, dtype=torch.float32)
    for i, t in enumerate(ts):
        if hasattr(s, "_step_index"):
            s._step_index = i  # scale_model_input reads the step index
        scales.append(float(s.scale_model_input(ones, t)[0]))
    out[key + "input_scale"] = torch.tensor(scales, dtype=torch.float64)
    out[key + "final"] = _run(_fresh(cls, karras, steps, "epsilon", spacing), eta)
    out[key + "final_v"] = _run(_fresh(cls, karras, steps, "v_prediction", spacing), eta)
    if steps == 5 and spacing is None and eta == 0.0:
        for pred in ("epsilon", "v_prediction"):
            x, eps, i, x0 = _x0_at_middle(name, _fresh(cls, karras, steps, pred))
            sfx = "" if pred == "epsilon" else "_v"
            out[key + "x0_x" + sfx], out[key + "x0_eps" + sfx] = x, eps
            out[key + "x0_i" + sfx] = torch.tensor([i], dtype=torch.int64)
            out[key + "x0" + sfx] = x0


def make_sched(outdir):
    import diffusers

    out = {}
    for name, cls, has_karras in _samplers():
        for schedule in ["discrete", "karras"] if has_karras else ["discrete"]:
            karras = schedule == "karras"
            for steps in CONSISTENCY_STEPS if name in CONSISTENCY else STEPS:
                _combo(out, f"{name}.{schedule}.{steps}.", name, cls, karras, steps)
        if name in CONSISTENCY:  # their set_timesteps ignores timestep_spacing
            continue
        for spacing in SPACINGS:
            for steps in SPACING_STEPS:
                key = f"{name}.discrete.{spacing}.{steps}."
                _combo(out, key, name, cls, False, steps, spacing=spacing)
    tcd = dict((n, c) for n, c, _ in _samplers())["tcd"]
    for steps in CONSISTENCY_STEPS:
        _combo(out, f"tcd.discrete.eta{TCD_ETA}.{steps}.", "tcd", tcd, False, steps, eta=TCD_ETA)
    save_file(out, os.path.join(outdir, "sched_ref.safetensors"),
              metadata={"made_with": f"diffusers {diffusers.__version__}, torch {torch.__version__}, seed {SEED}"})


def _fresh(cls, karras, steps, prediction, spacing=None):
    s = _make(cls, karras, prediction, spacing)
    s.set_timesteps(steps, device="cpu")
    return s


def make(outdir):
    make_rng(outdir)
    make_sched(outdir)
