#!/usr/bin/env bash
# LCM-distilled models (the tiny tiny-sd-lcm, both layouts): a PNG with
# --sampler lcm; -v names the guidance embedding and says the negative
# prompt is unused; another sampler runs with a note that says how such a
# model is meant to run; --help says it too.
. "$(dirname "$0")/common.bash"

for model in "$FIX/tiny-sd-lcm" "$FIX/tiny-sd-lcm.safetensors"; do
    lcm=(-m "$model" -p "a red cube" -W 32 -H 32 -s 7 --overwrite)
    if expect_ok "${lcm[@]}" --sampler lcm --steps 2 --cfg-scale 8 -n "blurry" -v -o a.png; then
        CHECKS=$((CHECKS + 1))
        is_png "$WORK/a.png" || fail "$model: no PNG"
        CHECKS=$((CHECKS + 1))
        grep -q "LCM: guidance embedding 24" "$WORK/stderr" || fail "$model: -v does not name it"
        CHECKS=$((CHECKS + 1))
        grep -q "negative prompt is unused" "$WORK/stderr" || fail "$model: no word on -n"
        CHECKS=$((CHECKS + 1))
        ! grep -q "note:" "$WORK/stderr" || fail "$model: a note with --sampler lcm"
    fi
    if expect_ok "${lcm[@]}" --steps 2 -o b.png; then
        CHECKS=$((CHECKS + 1))
        grep -q "note: .*LCM-distilled model, made for --sampler lcm" "$WORK/stderr" ||
            fail "$model: no note with the default sampler"
    fi
done
CHECKS=$((CHECKS + 1))
"$SDC" --help | grep -q "LCM-distilled" || fail "--help does not mention LCM-distilled models"
finish
