#!/usr/bin/env bash
# Output paths are checked before any work: missing or unwritable folders,
# a folder as the output, an existing file without --overwrite (left
# untouched), and anything but a regular file even with --overwrite (FIFOs,
# device nodes, links to them) get status 1 and a clear message.
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

# Only regular files are ever replaced.  An existing output that is a FIFO,
# a device node or a folder, or a symbolic link to one, is refused with or
# without --overwrite, before any work, and stays as it was (rename() over it
# used to replace /dev/full with a PNG).  The nodes are made here, in the
# test's folder: never the real /dev/null or /dev/full.
# is_kind TEST PATH: `test TEST PATH` holds, counted as a check
is_kind() {
    CHECKS=$((CHECKS + 1))
    [ "$1" "$2" ] || fail "$2 is no longer what it was ($(ls -ld "$2" 2>&1))"
}
mkfifo "$WORK/fifo"
run "fifo: is a FIFO.*not a regular file" -o "$WORK/fifo"
run "fifo: is a FIFO.*not a regular file" -o "$WORK/fifo" --overwrite
is_kind -p "$WORK/fifo"
ln -s fifo "$WORK/fifolink"
run "fifolink: is a symbolic link to a FIFO.*not a regular file" -o "$WORK/fifolink" --overwrite
is_kind -L "$WORK/fifolink"
is_kind -p "$WORK/fifo"
ln -s adir "$WORK/dirlink"
run "dirlink: is a symbolic link to a folder" -o "$WORK/dirlink" --overwrite
is_kind -L "$WORK/dirlink"
# every output of a batch is checked: the second is a FIFO -> nothing is made
mkfifo "$WORK/f-2.png"
run "f-2\.png: is a FIFO" -o "$WORK/f.png" -b 2 --overwrite
is_kind -p "$WORK/f-2.png"
CHECKS=$((CHECKS + 1))
[ ! -e "$WORK/f-1.png" ] || fail "batch wrote f-1.png before refusing f-2.png"
# a character device: /dev/null's numbers (1, 3) on a node of our own (root)
if mknod "$WORK/dev" c 1 3 2>/dev/null; then
    run "dev: is a character device.*not a regular file" -o "$WORK/dev"
    run "dev: is a character device.*not a regular file" -o "$WORK/dev" --overwrite
    is_kind -c "$WORK/dev"
    ln -s dev "$WORK/devlink"
    run "devlink: is a symbolic link to a character device" -o "$WORK/devlink" --overwrite
    is_kind -L "$WORK/devlink"
    is_kind -c "$WORK/dev"
else
    echo "note: mknod failed (not root?): the device-node cases are skipped"
fi

# what --overwrite does replace: a symbolic link to a regular file (the
# link, not the file it names) and a dangling link
printf 'precious' >"$WORK/target"
ln -s target "$WORK/filelink"
ln -s no-such-target "$WORK/dangling"
for name in filelink dangling; do
    run "$name.*exists.*--overwrite" -o "$WORK/$name"
    is_kind -L "$WORK/$name"
    if expect_ok -m "$M" -p "a cat" -W 32 -H 32 --steps 1 -s 1 -o "$WORK/$name" --overwrite; then
        CHECKS=$((CHECKS + 1))
        [ ! -L "$WORK/$name" ] && is_png "$WORK/$name" || fail "$name: not replaced by a PNG"
    fi
done
CHECKS=$((CHECKS + 1))
[ "$(cat "$WORK/target")" = "precious" ] && [ ! -e "$WORK/no-such-target" ] ||
    fail "a link's target was written"
CHECKS=$((CHECKS + 1))
! ls -A "$WORK" | grep -q '^\.sdc-tmp-' || fail "a temporary file was left behind"

# a size the model cannot make is a usage error, found before any output
expect_fail 2 "16384x8192.*limit" -m "$M" -p x -W 16384 -H 8192 -o "$OUT" --steps 1

finish
