#!/usr/bin/env python3
"""Makes sdc's test fixtures from the reference implementation.

Run by developers, never by CI (needs PyPI torch, diffusers, transformers,
safetensors, open-clip-torch, scipy; made with torch 2.15.0, diffusers 0.42.1,
transformers 5.24.0).  Everything it writes under tests/fixtures/ is
committed; re-running it with the same package versions gives the same files.

  python3 scripts/make_fixtures.py                 # all committed fixtures
  python3 scripts/make_fixtures.py --only tokens   # one part
  python3 scripts/make_fixtures.py --full-size DIR # the full-size SD 1.4
                                                   # stand-in (never committed)
  python3 scripts/make_fixtures.py --full-size-lora DIR  # only its LCM-LoRA

Parts run in dependency order: models (the tiny random-weight models in both
layouts and per-component references) before vae_tiling (tiled VAE decoding
on the tiny VAE), pipeline and img2img (image to image, inpainting and TAESD
through the pipelines; it also makes the tiny inpainting model), lcm (a tiny
LCM-distilled UNet and its references).
"""
import argparse
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
PARTS = ["tokens", "schedulers", "ops", "models", "vae_tiling", "pipeline", "lora", "img2img", "images", "taesd", "prompts",
         "lcm", "a1111"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=PARTS, action="append", help="make only this part (repeatable)")
    ap.add_argument("--out", default=FIXTURES, help="fixture folder (default tests/fixtures)")
    ap.add_argument("--full-size", metavar="DIR", help="write the full-size SD 1.4 stand-in to DIR instead")
    ap.add_argument("--full-size-lora", metavar="DIR",
                    help="write only the stand-in's random LCM-LoRA (DIR/lcm-lora.safetensors)")
    args = ap.parse_args()
    sys.path.insert(0, HERE)
    import torch
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.full_size_lora:
        importlib.import_module("fixtures_lib.fullsize").make_lcm_lora(args.full_size_lora)
        return
    if args.full_size:
        importlib.import_module("fixtures_lib.fullsize").make(args.full_size)
        return
    os.makedirs(args.out, exist_ok=True)
    for part in args.only or PARTS:
        print(f"== {part}", flush=True)
        importlib.import_module(f"fixtures_lib.{part}").make(args.out)


if __name__ == "__main__":
    main()
