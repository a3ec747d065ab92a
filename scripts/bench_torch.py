#!/usr/bin/env python3
"""PyTorch's CPU speed on SD 1.x's two heavy stages, for docs/perf.md.

Loads diffusers' UNet2DConditionModel and AutoencoderKL from a diffusers
folder (the full-size SD 1.4 stand-in) in fp32, or with --dtype bf16 in
bfloat16 (weights and inputs; oneDNN runs it on AMX tiles where the CPU has
them, which is PyTorch's fastest CPU mode), sets the thread count, and
times with wall clock (after one warm-up call each, on a 16x16 latent by
default so that the locked run stays short):
  - one UNet forward: batch 2 (CFG), latent [2, 4, 64, 64], context
    [2, 77, 768], one timestep;
  - one VAE decode: latent [1, 4, 64, 64] -> image [1, 3, 512, 512].
Prints JSON: ms and GFLOP/s at the fixed work counts of ../shared/TARGETS.md
(1606.5 GFLOP per UNet step, 2514.5 GFLOP per VAE decode at 64x64).

  flock /tmp/sdc-bench.lock python3 scripts/bench_torch.py \
      [--model /tmp/fs/sd14-standin] [--threads 2] [--latent 64] [--reps 1]
      [--warmup-latent 16] [--dtype fp32|bf16] [--json FILE]

--latent other than 64 is for a quick check that the script runs; its
GFLOP/s are then not meaningful and are left out.
"""
import argparse
import json
import platform
import sys
import time

UNET_GFLOP = 1606.5  # per UNet call at batch 2, 64x64 latent, 77 tokens
VAE_GFLOP = 2514.5   # per VAE decode of a 64x64 latent


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_has(flag):
    """Whether /proc/cpuinfo lists flag (None where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and flag in line.split() for line in f)
    except OSError:
        return None


def best_of(fn, warm, reps):
    """Wall-clock seconds of the fastest of reps calls of fn, after one call
    of warm (the same network on a smaller input: loads the libraries,
    creates the thread pool and the allocator's caches)."""
    warm()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="/tmp/fs/sd14-standin")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--warmup-latent", type=int, default=16,
                    help="latent size of the warm-up calls (keeps the locked run short)")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                    help="the networks' weights and inputs (bf16: torch.bfloat16)")
    ap.add_argument("--json", help="also write the result to this file")
    args = ap.parse_args()

    import torch
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h = w = args.latent
    full = args.latent == 64

    dt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    unet = UNet2DConditionModel.from_pretrained(args.model, subfolder="unet",
                                                torch_dtype=dt).eval()
    vae = AutoencoderKL.from_pretrained(args.model, subfolder="vae", torch_dtype=dt).eval()
    x = torch.randn(2, unet.config.in_channels, h, w).to(dt)
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim).to(dt)
    t = torch.tensor([500, 500])
    z = torch.randn(1, vae.config.latent_channels, h, w).to(dt)
    wl = args.warmup_latent
    xw = torch.randn(2, unet.config.in_channels, wl, wl).to(dt)
    zw = torch.randn(1, vae.config.latent_channels, wl, wl).to(dt)

    with torch.inference_mode():
        t_unet = best_of(lambda: unet(x, t, encoder_hidden_states=ctx).sample,
                         lambda: unet(xw, t, encoder_hidden_states=ctx).sample, args.reps)
        t_vae = best_of(lambda: vae.decode(z).sample, lambda: vae.decode(zw).sample, args.reps)

    res = {
        "what": f"PyTorch CPU {args.dtype}, diffusers UNet2DConditionModel + AutoencoderKL",
        "dtype": args.dtype,
        "amx_bf16": cpu_has("amx_bf16"),
        "model": args.model,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "cpu": cpu_model(),
        "attn_processor": type(unet.attn_processors[next(iter(unet.attn_processors))]).__name__,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "latent": [h, w],
        "reps": args.reps,
        "warmup_latent": [wl, wl],
        "unet_batch2_ms": round(t_unet * 1e3, 1),
        "vae_decode_ms": round(t_vae * 1e3, 1),
    }
    if full:
        res["unet_gflops"] = round(UNET_GFLOP / t_unet, 1)
        res["vae_gflops"] = round(VAE_GFLOP / t_vae, 1)
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
