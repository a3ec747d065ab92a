#!/usr/bin/env bash
# Runs every libFuzzer harness for SECONDS each; builds nothing.
#   fuzz/run.sh SECONDS [BUILD] [-- LIBFUZZER-OPTIONS...]
# BUILD: the SDC_FUZZ build folder (default build-fuzz; see README "Fuzzing").
# Each harness starts from its seed corpus fuzz/corpus/<name>/ (read only)
# and BUILD/fuzz-work/corpus/<name>/, where the inputs it finds are kept
# from run to run; crash, leak and timeout inputs go to
# BUILD/fuzz-work/artifacts/; logs to BUILD/fuzz-work/<name>.log.  Scratch
# files go to a temporary folder (in /dev/shm where it can), removed after.
# Prints per harness its executions, coverage and result; exits 1 if any
# harness found a crash, leak, timeout or failed property.
set -uo pipefail
usage() { echo "usage: fuzz/run.sh SECONDS [BUILD] [-- LIBFUZZER-OPTIONS...]" >&2; exit 2; }
[ $# -ge 1 ] && [[ $1 =~ ^[0-9]+$ ]] || usage
secs=$1
shift
build=build-fuzz
if [ $# -ge 1 ] && [ "$1" != -- ]; then build=$1; shift; fi
if [ $# -ge 1 ]; then [ "$1" = -- ] || usage; shift; fi
extra=("$@")

src=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" 2>/dev/null && pwd) || { echo "fuzz/run.sh: no build folder ${build}" >&2; exit 2; }
work=$build/fuzz-work
mkdir -p "$work/artifacts"
shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || shm=$work
scratch=$(mktemp -d "$shm/sdc-fuzz-run.XXXXXX") || exit 2
trap 'rm -rf "$scratch"' EXIT

export TMPDIR=$scratch
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

status=0
names=()
for bin in "$build"/fuzz/fuzz_*; do
  [ -x "$bin" ] && [ -f "$bin" ] && names+=("$(basename "$bin" | sed 's/^fuzz_//')")
done
if [ ${#names[@]} -eq 0 ]; then
  echo "fuzz/run.sh: no harnesses in $build/fuzz (cmake --build $build --target fuzzers)" >&2
  exit 2
fi

printf '%-12s %10s %8s %8s %8s  %s\n' harness execs exec/s cov corpus result
for name in "${names[@]}"; do
  corpus=$work/corpus/$name
  log=$work/$name.log
  mkdir -p "$corpus"
  dict=()
  [ -f "$src/$name.dict" ] && dict=(-dict="$src/$name.dict")
  seeds=()
  [ -d "$src/corpus/$name" ] && seeds=("$src/corpus/$name")
  t0=$(date +%s)
  # the outer timeout only guards against a hang libFuzzer cannot see
  timeout --signal=KILL $((secs + 300)) "$build/fuzz/fuzz_$name" \
    -max_total_time="$secs" -timeout=25 -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix="$work/artifacts/$name-" "${extra[@]}" "$corpus" "${seeds[@]}" \
    > "$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # -fork=N prints no final stats: its last status line then
  [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
  [ -n "$speed" ] || speed=$(grep -o 'exec/s:\? [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  units=$(ls "$corpus" | wc -l)
  if [ $rc -eq 0 ]; then
    result="ok ($(( $(date +%s) - t0 )) s)"
  else
    status=1
    art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    result="FAILED (exit $rc)${art:+: $art}"
  fi
  printf '%-12s %10s %8s %8s %8s  %s\n' "$name" "${execs:--}" "${speed:--}" "${cov:--}" \
    "$units" "$result"
  if [ $rc -ne 0 ]; then
    echo "---- $log (last 40 lines)"
    tail -40 "$log"
    echo "----"
  fi
done
exit $status
