#!/usr/bin/env bash
# --low-memory: the same PNG, byte for byte, as the default mode (both
# layouts, guidance on and off); -v ends with one line of stage timings
# (text encoding, seconds per step, VAE decode, total, peak RSS); the option
# is in the help.
. "$(dirname "$0")/common.bash"

timing_line='^sdc: timings: text [0-9.]+ s, [0-9.]+ s/step \([0-9]+ steps, [0-9.]+ s; sampling stage [0-9.]+ s\), decode [0-9.]+ s, total [0-9.]+ s, peak RSS [0-9]+ MiB \([0-9.]+ GB\)$'

for model in tiny-sd tiny-sd.safetensors; do
    for cfg in 7.5 1; do
        args=(-m "$FIX/$model" -p "a red cube" -n "blurry" -W 32 -H 40 --steps 3 -s 11
              --cfg-scale "$cfg" --sampler euler_a)
        if expect_ok "${args[@]}" -o d.png -v && expect_ok "${args[@]}" -o l.png --low-memory -v; then
            CHECKS=$((CHECKS + 1))
            cmp -s "$WORK/d.png" "$WORK/l.png" || fail "$model cfg $cfg: --low-memory changes the image"
            CHECKS=$((CHECKS + 1))
            grep -q "low-memory mode" "$WORK/stderr" || fail "-v does not report low-memory mode"
            CHECKS=$((CHECKS + 1))
            tail -n 1 "$WORK/stderr" | grep -Eq "$timing_line" ||
                fail "-v does not end with the timing line: $(tail -n 1 "$WORK/stderr")"
        fi
        rm -f "$WORK/d.png" "$WORK/l.png"
    done
done

# without -v: no timing line
if expect_ok -m "$FIX/tiny-sd" -p "a red cube" -W 32 -H 32 --steps 1 -s 1 --low-memory -o q.png; then
    CHECKS=$((CHECKS + 1))
    grep -q "timings:" "$WORK/stderr" && fail "timing line printed without -v"
fi

CHECKS=$((CHECKS + 1))
"$SDC" --help | grep -q -- "--low-memory" || fail "--help does not mention --low-memory"
expect_fail 2 "low-memory" --low-memory=1 -m "$FIX/tiny-sd" -p x

finish
