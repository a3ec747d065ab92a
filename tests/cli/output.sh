#!/usr/bin/env bash
# Output paths are checked before any work: missing or unwritable folders,
# a folder as the output, and an existing file without --overwrite (left
# untouched) get status 1 and a clear message.
. "$(dirname "$0")/common.bash"
M=$FIX/tiny-sd
run() { expect_fail 1 "$1" -m "$M" -p "a cat" -W 32 -H 32 --steps 1 -s 1 "${@:2}"; }

run "no-such-dir" -o "$WORK/no-such-dir/x.png"
: >"$WORK/plainfile"
run "plainfile.*not a folder" -o "$WORK/plainfile/x.png"
mkdir -p "$WORK/adir"
run "adir.*(folder|exists)" -o "$WORK/adir"
run "adir.*folder" -o "$WORK/adir" --overwrite
run "names a folder" -o "$WORK/adir/"
# a folder nobody may create files in, root included (procfs)
run "/proc.*not writable" -o "/proc/sdc-test-$$.png"
CHECKS=$((CHECKS + 1))
[ ! -e "/proc/sdc-test-$$.png" ] || fail "a file appeared in /proc"
if [ "$(id -u)" -ne 0 ]; then  # permission bits bind everyone but root
    mkdir -p "$WORK/ro" && chmod 555 "$WORK/ro"
    run "ro.*not writable" -o "$WORK/ro/x.png"
fi

# an existing file is not replaced, and stays as it was
printf 'precious' >"$WORK/keep.png"
run "keep\.png.*exists.*--overwrite" -o "$WORK/keep.png"
CHECKS=$((CHECKS + 1))
[ "$(cat "$WORK/keep.png")" = "precious" ] || fail "keep.png was modified"
# with batch numbering: the second name exists -> nothing is made
printf 'precious' >"$WORK/b-2.png"
run "b-2\.png.*exists" -o "$WORK/b.png" -b 3
CHECKS=$((CHECKS + 1))
[ ! -e "$WORK/b-1.png" ] && [ ! -e "$WORK/b-3.png" ] || fail "batch wrote files before failing"

# a size the model cannot make is a usage error, found before any output
expect_fail 2 "16384x8192.*limit" -m "$M" -p x -W 16384 -H 8192 -o "$OUT" --steps 1

finish
