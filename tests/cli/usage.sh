#!/usr/bin/env bash
# The command line: help, version, and every kind of bad argument gets
# status 2, a message naming the problem, and no output file.
. "$(dirname "$0")/common.bash"
M=$FIX/tiny-sd

# --help / --version
CHECKS=$((CHECKS + 1))
"$SDC" --help >"$WORK/help" 2>&1 || fail "--help: status $?"
grep -q -- "--model" "$WORK/help" && grep -q -- "--negative-prompt" "$WORK/help" &&
    grep -q -- "--batch-count" "$WORK/help" || fail "--help does not list the options"
CHECKS=$((CHECKS + 1))
"$SDC" -h >/dev/null 2>&1 || fail "-h: status $?"
CHECKS=$((CHECKS + 1))
"$SDC" --version >"$WORK/version" 2>&1 || fail "--version: status $?"
grep -q "^sdc 0\.1\.0" "$WORK/version" || fail "--version: $(cat "$WORK/version")"
[ "$(wc -l <"$WORK/version")" -ge 2 ] || fail "--version lacks the build line"

# options
expect_fail 2 "unknown option '--frobnicate'"  -m "$M" -p x -o "$OUT" --frobnicate
expect_fail 2 "unknown option '-Z'"             -m "$M" -p x -o "$OUT" -Z
expect_fail 2 "unexpected argument 'stray'"     -m "$M" -p x -o "$OUT" stray
expect_fail 2 "no model"                        -p x -o "$OUT"
expect_fail 2 "no prompt"                       -m "$M" -o "$OUT"
expect_fail 2 "--steps needs a value"           -m "$M" -p x -o "$OUT" --steps
expect_fail 2 "--prompt needs a value"              -m "$M" -o "$OUT" -p
expect_fail 2 "--overwrite takes no value"      -m "$M" -p x -o "$OUT" --overwrite=yes
# numbers
expect_fail 2 "steps.*0.*out of range"          -m "$M" -p x -o "$OUT" --steps 0
expect_fail 2 "steps.*out of range"             -m "$M" -p x -o "$OUT" --steps=1001
expect_fail 2 "steps.*-3.*out of range"         -m "$M" -p x -o "$OUT" --steps -3
expect_fail 2 "steps.*'abc'.*not a"             -m "$M" -p x -o "$OUT" --steps abc
expect_fail 2 "steps.*'12x'.*not a"             -m "$M" -p x -o "$OUT" --steps 12x
expect_fail 2 "steps.*not a"                    -m "$M" -p x -o "$OUT" --steps ""
expect_fail 2 "steps.*not a"                    -m "$M" -p x -o "$OUT" --steps " 5"
expect_fail 2 "steps.*out of range"             -m "$M" -p x -o "$OUT" --steps 99999999999999999999
expect_fail 2 "width.*33.*multiple of 8"        -m "$M" -p x -o "$OUT" -W 33
expect_fail 2 "height.*100.*multiple of 8"      -m "$M" -p x -o "$OUT" --height 100
expect_fail 2 "width.*0.*out of range"          -m "$M" -p x -o "$OUT" --width 0
expect_fail 2 "height.*out of range"            -m "$M" -p x -o "$OUT" -H 1048576
expect_fail 2 "cfg-scale.*out of range"         -m "$M" -p x -o "$OUT" --cfg-scale nan
expect_fail 2 "cfg-scale.*out of range"         -m "$M" -p x -o "$OUT" --cfg-scale -1
expect_fail 2 "cfg-scale.*out of range"         -m "$M" -p x -o "$OUT" --cfg-scale 1e40
expect_fail 2 "cfg-scale.*not a number"         -m "$M" -p x -o "$OUT" --cfg-scale 7,5
expect_fail 2 "seed.*not a seed"                -m "$M" -p x -o "$OUT" -s -2
expect_fail 2 "seed.*not a"                     -m "$M" -p x -o "$OUT" --seed 0x10
expect_fail 2 "seed.*out of range"              -m "$M" -p x -o "$OUT" --seed 18446744073709551616
expect_fail 2 "batch-count.*out of range"       -m "$M" -p x -o "$OUT" -b 0
expect_fail 2 "threads.*out of range"           -m "$M" -p x -o "$OUT" -t -1
# names
expect_fail 2 "unknown sampler 'k_euler'"       -m "$M" -p x -o "$OUT" --sampler k_euler
expect_fail 2 "unknown spacing 'even'"         -m "$M" -p x -o "$OUT" --timestep-spacing even
expect_fail 2 "spacing trailing is not offered with karras" -m "$M" -p x -o "$OUT" -W 32 -H 32 \
    --steps 2 --sampler euler --scheduler karras --timestep-spacing trailing
expect_fail 2 "unknown scheduler 'exponential'" -m "$M" -p x -o "$OUT" --scheduler exponential
expect_fail 2 "karras.*ddim.*discrete"          -m "$M" -p x -o "$OUT" --sampler ddim --scheduler karras
expect_fail 2 "output.*empty"                   -m "$M" -p x -o ""

finish
