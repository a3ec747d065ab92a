#!/bin/sh
# Runs a timing command the way docs/perf.md's figures were taken:
#   bench/timed.sh COMMAND [ARGS...]
# - under the shared lock /tmp/sdc-bench.lock (one timing run at a time);
# - in a fresh session whose autogroup gets nice -19: with autogroup
#   scheduling (/proc/sys/kernel/sched_autogroup_enabled = 1) a build at
#   `nice -n 15` in another session still takes half the CPU from a timing
#   run at nice 0; this gives the timing run the machine.  Needs root (or
#   CAP_SYS_NICE) for the negative nice; without it the command runs as is.
exec flock /tmp/sdc-bench.lock setsid sh -c '
  echo -19 > /proc/self/autogroup 2>/dev/null ||
    echo "timed.sh: autogroup nice not set (no permission or no autogroup)" >&2
  exec "$@"' sh "$@"
