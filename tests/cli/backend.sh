#!/usr/bin/env bash
# --backend, --device, --list-devices, --fp16-activations: usage errors
# (exit 2); OpenCL asked for where there is none: exit 1, a message naming
# OpenCL, no output; auto without OpenCL: the CPU, the same PNG as --backend
# cpu; and on every OpenCL device this machine has (PoCL, rusticl, a GPU):
# a PNG, and -v naming the backend.
. "$(dirname "$0")/common.bash"

tiny=(-m "$FIX/tiny-sd" -p "a red cube" -W 32 -H 40 --steps 2 -s 7)

expect_fail 2 "unknown backend 'cuda'" --backend cuda "${tiny[@]}"
expect_fail 2 "device" --backend cpu --device 0 "${tiny[@]}"
expect_fail 2 "fp16-activations" --backend cpu --fp16-activations "${tiny[@]}"
expect_fail 2 "empty device" --device "" "${tiny[@]}"
CHECKS=$((CHECKS + 1))
"$SDC" --help | grep -q -- "--list-devices" || fail "--help does not mention --list-devices"

# no OpenCL library at all
export SDC_OPENCL_LIB=/nonexistent/libOpenCL.so
expect_fail 1 "opencl" --backend opencl "${tiny[@]}"
expect_fail 1 "opencl" --device 0 "${tiny[@]}"
expect_fail 1 "opencl" --list-devices
if expect_ok "${tiny[@]}" -o auto.png -v && expect_ok "${tiny[@]}" -o cpu.png --backend cpu; then
    CHECKS=$((CHECKS + 1))
    cmp -s "$WORK/auto.png" "$WORK/cpu.png" || fail "auto without OpenCL differs from --backend cpu"
fi
unset SDC_OPENCL_LIB

# a build without the OpenCL headers, or a machine without an OpenCL
# library (e.g. the aarch64 suite under qemu): the errors above are all
# there is to check
why=$("$SDC" --list-devices 2>&1 >/dev/null)
if [ -n "$why" ]; then
    echo "no OpenCL here ($why): the device checks are left out"
    finish
    exit
fi

# a loader with no platforms (an empty vendors folder)
mkdir -p "$WORK/vendors"
OCL_ICD_VENDORS="$WORK/vendors" expect_fail 1 "opencl" --backend opencl "${tiny[@]}"
if OCL_ICD_VENDORS="$WORK/vendors" expect_ok --list-devices; then
    CHECKS=$((CHECKS + 1))
    grep -q "no OpenCL devices" "$WORK/stdout" || fail "--list-devices with no platform: $(cat "$WORK/stdout")"
fi

# the devices this machine has
if expect_ok --list-devices; then
    cp "$WORK/stdout" "$WORK/devices"
    CHECKS=$((CHECKS + 1))
    grep -Eq '^[0-9]+: |^no OpenCL devices$' "$WORK/devices" || fail "--list-devices: $(cat "$WORK/devices")"
    expect_fail 1 "no-such-device|no OpenCL device|matches" --device no-such-device-name "${tiny[@]}"
    # a device named is used under the default auto, a CPU one too
    if expect_ok "${tiny[@]}" --device 0 -o named.png -v; then
        CHECKS=$((CHECKS + 1))
        grep -q "backend opencl" "$WORK/stderr" || fail "--device 0 under auto: not on OpenCL"
    fi
    while IFS= read -r line; do
        idx=${line%%:*}
        case $idx in '' | *[!0-9]*) continue ;; esac
        for f16 in "" --fp16-activations; do
            if expect_ok "${tiny[@]}" --backend opencl --device "$idx" $f16 -o "cl$idx.png" -v; then
                CHECKS=$((CHECKS + 1))
                is_png "$WORK/cl$idx.png" || fail "device $idx $f16: no PNG"
                CHECKS=$((CHECKS + 1))
                grep -q "backend opencl" "$WORK/stderr" || fail "device $idx: -v does not name the backend"
            fi
            rm -f "$WORK/cl$idx.png"
        done
    done < <(grep -E '^[0-9]+:' "$WORK/devices")
fi

finish
