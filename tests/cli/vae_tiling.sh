#!/usr/bin/env bash
# --vae-tiling auto|on|off: bad values get status 2 and a message naming the
# option and the choices, with no output file; the option is in the help;
# on the tiny model (VAE tile 8 latents) a 32x32 image is tiled with "on"
# (a different PNG), decoded whole with "auto" (the same PNG as "off"), and
# --low-memory keeps the tiled PNG byte for byte.
. "$(dirname "$0")/common.bash"
M=$FIX/tiny-sd

CHECKS=$((CHECKS + 1))
"$SDC" --help | grep -q -- "--vae-tiling MODE" || fail "--help does not mention --vae-tiling"

expect_fail 2 "--vae-tiling: unknown mode 'sometimes' \(choose auto, on or off\)" \
    -m "$M" -p x -o "$OUT" --vae-tiling sometimes
expect_fail 2 "--vae-tiling: unknown mode 'ON'"   -m "$M" -p x -o "$OUT" --vae-tiling ON
expect_fail 2 "--vae-tiling: unknown mode '1'"    -m "$M" -p x -o "$OUT" --vae-tiling=1
expect_fail 2 "--vae-tiling: unknown mode ''"     -m "$M" -p x -o "$OUT" --vae-tiling ""
expect_fail 2 "--vae-tiling needs a value"        -m "$M" -p x -o "$OUT" --vae-tiling

args=(-m "$M" -p "a red cube" -W 32 -H 32 --steps 2 -s 5)
if expect_ok "${args[@]}" -o on.png --vae-tiling on -v &&
    expect_ok "${args[@]}" -o off.png --vae-tiling=off &&
    expect_ok "${args[@]}" -o auto.png &&
    expect_ok "${args[@]}" -o low.png --vae-tiling on --low-memory; then
    CHECKS=$((CHECKS + 1))
    cmp -s "$WORK/on.png" "$WORK/off.png" && fail "--vae-tiling on did not change the image"
    CHECKS=$((CHECKS + 1))
    cmp -s "$WORK/auto.png" "$WORK/off.png" || fail "--vae-tiling auto tiled a 32x32 image"
    CHECKS=$((CHECKS + 1))
    cmp -s "$WORK/on.png" "$WORK/low.png" || fail "--low-memory changes the tiled image"
fi

finish
