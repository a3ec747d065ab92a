#!/usr/bin/env python3
"""PSNR (dB) of one 8-bit image against another of the same size, over all
RGB channels: 10 log10(255^2 / MSE); inf when they are equal.

  python3 scripts/psnr.py reference.png other.png
"""
import math
import sys

import numpy as np
from PIL import Image


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    a, b = (np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) for p in sys.argv[1:])
    if a.shape != b.shape:
        print(f"sizes differ: {a.shape} and {b.shape}", file=sys.stderr)
        return 1
    mse = float(np.mean((a - b) ** 2))
    psnr = math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
    print(f"PSNR {psnr:.2f} dB (MSE {mse:.4f}, max abs {int(np.max(np.abs(a - b)))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
