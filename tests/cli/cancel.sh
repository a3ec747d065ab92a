#!/usr/bin/env bash
# SIGTERM and SIGINT in the middle of a long step: sdc stops within about a
# second (it does not wait for the step to end), exit 130, no output file,
# no temporary file.  The tiny model at 384x384 (a 192x192 latent: 36864
# tokens of self-attention) takes tens of seconds per step here, so the
# signal lands mid-step.
. "$(dirname "$0")/common.bash"

# How long sdc may take to stop: about one second natively; the bound leaves
# room for a loaded CI machine (the suite runs two tests at once), and grows
# with the slowdown of a sanitizer build or an emulator (the aarch64 suite
# under qemu-user runs ~30x slower).
limit=4
case "$SDC" in *-emulated) limit=90 ;; esac
"$SDC" --version 2>/dev/null | grep -q "sanitizers on" && limit=12

# cancel_mid_step SIGNAL NAME: starts a 384x384 run, sends SIGNAL once the
# first step has been running for a second, and checks how it ended.
cancel_mid_step() {
    local sig=$1 name=$2
    CHECKS=$((CHECKS + 1))
    (cd "$WORK" && exec "$SDC" -m "$FIX/tiny-sd" -p x -W 384 -H 384 --steps 3 -s 1 \
        -o "$name") >"$WORK/stdout" 2>"$WORK/stderr" &
    local pid=$! i
    # the text stage's last line: sampling starts next (as background jobs
    # of a script ignore SIGINT until sdc installs its handler, the signal
    # must come after that, which precedes loading)
    for i in $(seq 6000); do
        grep -q "text 2/2" "$WORK/stderr" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    if grep -q "sample 1/" "$WORK/stderr"; then
        fail "$sig: the first step ended within a second; the test needs a longer one"
    fi
    local t0 t1
    t0=$(date +%s%N)
    kill "-$sig" "$pid"
    for i in $(seq $((limit * 50 + 100))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.02
    done
    t1=$(date +%s%N)
    if kill -0 "$pid" 2>/dev/null; then
        fail "$sig: still running $(((t1 - t0) / 1000000)) ms after the signal"
        kill -KILL "$pid"
    fi
    local rc=0
    wait "$pid" || rc=$?
    local ms=$(((t1 - t0) / 1000000))
    echo "$sig: stopped $ms ms after the signal (limit ${limit} s), status $rc"
    [ "$ms" -le $((limit * 1000)) ] || fail "$sig: took $ms ms to stop (limit ${limit} s)"
    [ "$rc" -eq 130 ] || fail "$sig: status $rc, want 130: $(tail -3 "$WORK/stderr")"
    grep -qi "interrupted" "$WORK/stderr" || fail "$sig: no message"
    [ ! -e "$WORK/$name" ] || fail "$sig: $name written"
    if ls -A "$WORK" | grep -q '^\.sdc-tmp-'; then fail "$sig: temporary file left"; fi
}

cancel_mid_step TERM term.png
cancel_mid_step INT int.png

finish
