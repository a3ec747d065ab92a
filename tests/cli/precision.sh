#!/usr/bin/env bash
# --precision: fp32 is the default; auto takes bf16 only where it is the
# faster mode on this CPU (AMX tiles that can run, or AVX512_BF16 on AMD),
# else gives fp32's bytes; bf16 on emulated AMX tiles (SDC_AMX=emulate)
# runs on any CPU and says so under -v, while auto never takes the
# emulation; unknown names and bf16 on OpenCL are refused.
. "$(dirname "$0")/common.bash"

run=(-m "$FIX/tiny-sd" -p "a red cube" -W 32 -H 32 --steps 2 -s 7 --overwrite)
expect_ok "${run[@]}" -o fp32.png
expect_ok "${run[@]}" --precision fp32 -o fp32b.png &&
    { CHECKS=$((CHECKS + 1)); cmp -s "$WORK/fp32.png" "$WORK/fp32b.png" || fail "fp32 is not the default"; }
if expect_ok "${run[@]}" --precision auto -v -o auto.png; then
    CHECKS=$((CHECKS + 1))
    if grep -q "bf16 precision" "$WORK/stderr"; then
        grep -Eq "backend cpu-[a-z0-9]+ bf16" "$WORK/stderr" || fail "auto: bf16 but not the CPU's mode"
    else
        cmp -s "$WORK/fp32.png" "$WORK/auto.png" || fail "auto without bf16: not fp32's image"
    fi
fi
if SDC_AMX=emulate expect_ok "${run[@]}" --precision bf16 -v -o bf16.png; then
    CHECKS=$((CHECKS + 1))
    grep -q "bf16-amx-emulated" "$WORK/stderr" || fail "SDC_AMX=emulate: the backend does not say so"
    CHECKS=$((CHECKS + 1))
    is_png "$WORK/bf16.png" || fail "bf16.png is not a PNG"
    CHECKS=$((CHECKS + 1))
    ! cmp -s "$WORK/fp32.png" "$WORK/bf16.png" || fail "bf16 gave fp32's bytes"
fi
if SDC_AMX=emulate expect_ok "${run[@]}" --precision auto -v -o auto2.png; then
    CHECKS=$((CHECKS + 1))
    ! grep -q "emulated" "$WORK/stderr" || fail "auto took the emulation"
fi
expect_fail 2 "unknown precision 'fp16' \(choose fp32, bf16 or auto\)" "${run[@]}" --precision fp16
expect_fail 1 "bf16 is a mode of the CPU backend" "${run[@]}" --precision bf16 --backend opencl
finish
