#!/usr/bin/env python3
"""A/B of bench_ops binaries on a noisy machine: the binaries run in turn,
ROUNDS times, on one op of one stage; per shape the minimum ms over the
rounds is kept (a neighbour's load only ever adds time), and the step's
total is count x min summed over the shapes.  Run a binary twice (A/A) to
see the noise floor.

  scripts/ab_ops.py --rounds 3 --stage unet --op conv2d OLD/bench_ops NEW/bench_ops
Extra arguments for bench_ops after `--` (e.g. -- --model PATH)."""
import argparse
import re
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stage", default="unet", choices=["text", "unet", "vae"])
    ap.add_argument("--op", required=True)
    ap.add_argument("bins", nargs="+")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    pat = re.compile(r"^(\S+)\s+(.*?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s")
    best = [dict() for _ in args.bins]
    count = {}
    for _ in range(args.rounds):
        for i, b in enumerate(args.bins):
            cmd = [b, "--stage", args.stage, "--op", args.op, "--reps", "1"] + extra
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{' '.join(cmd)}: exit {out.returncode}\n{out.stderr}")
            for line in out.stdout.splitlines():
                m = pat.match(line)
                if m and m.group(1) == args.op:
                    key, c, ms = m.group(2), int(m.group(3)), float(m.group(4))
                    count[key] = c
                    best[i][key] = min(best[i].get(key, float("inf")), ms)
    total = [0.0] * len(args.bins)
    for key, c in count.items():
        row = [best[i].get(key, float("nan")) for i in range(len(args.bins))]
        for i, v in enumerate(row):
            total[i] += c * v
        rel = f"  {row[-1] / row[0] - 1:+.1%}" if len(row) > 1 and row[0] > 0 else ""
        print(f"{key:45s} {c:3d} " + " ".join(f"{v:9.2f}" for v in row) + rel)
    print("per call of the stage, count x min ms: " + " ".join(f"{t:.1f}" for t in total))


if __name__ == "__main__":
    main()
