#!/usr/bin/env bash
# SDC_PROFILE=1: the same PNG as without it; stderr holds the per-op table
# with rows for the three stages, the UNet's ops counted once per step and
# CFG pass (the compute ops' calls a multiple of the step count), and a total per stage.
. "$(dirname "$0")/common.bash"

args=(-m "$FIX/tiny-sd" -p "a red cube" -n "blurry" -W 32 -H 32 --steps 3 -s 5)
if expect_ok "${args[@]}" -o plain.png && SDC_PROFILE=1 expect_ok "${args[@]}" -o prof.png; then
    CHECKS=$((CHECKS + 1))
    cmp -s "$WORK/plain.png" "$WORK/prof.png" || fail "SDC_PROFILE changes the image"
    CHECKS=$((CHECKS + 1))
    grep -q '^profile (SDC_PROFILE)' "$WORK/stderr" || fail "no profile header"
    for stage in text unet vae; do
        CHECKS=$((CHECKS + 1))
        grep -Eq "^$stage +\(all ops\) +[0-9.]+$" "$WORK/stderr" || fail "no total for $stage"
    done
    for row in "text +linear" "text +attention +Sq77 Sk77 .* causal" "unet +conv2d" \
               "unet +attention" "unet +linear" "vae +conv2d +N1 "; do
        CHECKS=$((CHECKS + 1))
        grep -Eq "^$row" "$WORK/stderr" || fail "no profile row matching '$row'"
    done
    # the UNet's compute rows: calls a multiple of the 3 steps; every such row
    # has its calls column (the first whole number followed by a decimal),
    # and there are rows of all six ops, so that a change of the table's
    # shape fails here instead of leaving nothing to check
    CHECKS=$((CHECKS + 1))
    res=$(awk '$1 == "unet" && $2 ~ /^(linear|conv2d|attention|group_norm|layer_norm|geglu)$/ && $0 !~ /\(all/ {
                 seen[$2] = 1; c = ""
                 for (i = 4; i <= NF; i++) if ($i ~ /^[0-9]+$/ && $(i+1) ~ /^[0-9.]+$/) { c = $i; break }
                 if (c == "") print "no calls column: " $0
                 else if (c % 3) print "calls not a multiple of the steps: " $0
               }
               END { n = 0; for (k in seen) n++; if (n != 6) print "rows of " n " of the 6 ops" }' \
            "$WORK/stderr")
    [ -z "$res" ] || fail "UNet profile rows: $res"
fi
SDC_PROFILE=0 expect_ok "${args[@]}" -o off.png && {
    CHECKS=$((CHECKS + 1))
    grep -q 'profile' "$WORK/stderr" && fail "SDC_PROFILE=0 still profiles"
}

finish
