#!/usr/bin/env bash
# The one prepared run for a lent GPU machine (the device tool; see
# /work/.library/device/METHOD.md): what the OpenCL platform offers, the
# OpenCL tests on it (the SD shapes included), the per-op table against the
# device's measured peak, and, with a model, a 512x512 20-step CFG 7.5 image
# timed with -v.  Everything goes to $OUT (or ./gpu-out); the end of the
# output is a short summary.
#
#   scripts/gpu_run.sh [MODEL]     (MODEL: a .safetensors or diffusers folder)
#
# Nothing here installs anything: the machine must have a C compiler, CMake,
# the -dev packages of .ci/run and an OpenCL ICD loader with the vendor's
# driver registered (/etc/OpenCL/vendors); each missing piece is reported.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
model=${1:-}
summary=()
say() { echo "$*"; summary+=("$*"); }

{ nvidia-smi || true; } >"$out/nvidia-smi.txt" 2>&1
for lib in libOpenCL.so.1 libpng16.so.16 libcjson.so.1 libpcre2-8.so.0; do
  ldconfig -p | grep -q "$lib" || say "missing: $lib"
done
ls /etc/OpenCL/vendors >"$out/icds.txt" 2>&1 || say "no /etc/OpenCL/vendors"
[ -f /usr/include/CL/cl.h ] || say "no CL/cl.h: the backend builds as a stub (carry opencl-headers)"

cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >"$out/cmake.txt" 2>&1 &&
  cmake --build build-gpu -j"$(nproc)" >>"$out/cmake.txt" 2>&1 || {
  say "build failed (tail of $out/cmake.txt):"; tail -20 "$out/cmake.txt"; printf '%s\n' "${summary[@]}"; exit 1; }

./build-gpu/sdc --list-devices | tee "$out/devices.txt"
SDC_TEST_TARGETS=opencl SDC_TEST_FULL=1 ./build-gpu/test_backend_ops >"$out/test_backend_ops.txt" 2>&1
say "test_backend_ops (full tier, OpenCL only): $(tail -1 "$out/test_backend_ops.txt")"
./build-gpu/test_opencl >"$out/test_opencl.txt" 2>&1
say "test_opencl: $(tail -1 "$out/test_opencl.txt")"
./build-gpu/test_pipeline >"$out/test_pipeline.txt" 2>&1
say "test_pipeline: $(grep -E 'opencl .* worst' "$out/test_pipeline.txt" | tr '\n' ' ') $(tail -1 "$out/test_pipeline.txt")"

if [ -n "$model" ]; then
  ./build-gpu/bench_ops --backend opencl --model "$model" --reps 5 >"$out/bench_ops.txt" 2>&1
  say "bench_ops: $(grep -E '^peak|estimate' "$out/bench_ops.txt" | tr '\n' ' ')"
  # attention's two kernels on every shape, for the per-shape choice in cl_ops.c
  for att in flash softmax; do
    for st in unet vae; do
      SDC_CL_ATTENTION=$att ./build-gpu/bench_ops --backend opencl --model "$model" --reps 5 \
        --stage $st --op attention >"$out/attention-$att-$st.txt" 2>&1
    done
  done
  for act in "" --fp16-activations; do
    ./build-gpu/sdc --backend opencl -m "$model" -p "a lighthouse on a cliff at dusk" \
      -W 512 -H 512 --steps 20 --cfg-scale 7.5 -s 42 -o "$out/image$act.png" --overwrite -v \
      >"$out/image$act.txt" 2>&1
    say "image ${act:-fp32 activations}: $(grep -E 'timings|device memory' "$out/image$act.txt" | tr '\n' ' ')"
  done
  SDC_PROFILE=1 ./build-gpu/sdc --backend opencl -m "$model" -p x -W 512 -H 512 --steps 2 \
    -o "$out/profile.png" --overwrite >"$out/profile.txt" 2>&1
fi
echo "== summary"
printf '%s\n' "${summary[@]}"
