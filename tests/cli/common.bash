# Shared helpers of the black-box tests of the sdc program (sourced; not a
# test itself: CTest runs tests/cli/*.sh).
#   $1 of the test script: path to sdc.  $SDC_FIXTURES (default: the
#   fixtures beside this file), $SDC_TMP (default /tmp): folders.
set -u

SDC=${1:?usage: $0 path/to/sdc}
FIX=${SDC_FIXTURES:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../fixtures" && pwd)}
WORK=$(mktemp -d "${SDC_TMP:-/tmp}/cli-$(basename "$0" .sh)-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FAILS=0
CHECKS=0
OUT=$WORK/out.png  # the output every failing run must NOT create

fail() {
    echo "FAIL: $*" >&2
    FAILS=$((FAILS + 1))
}

# expect_fail CODE 'extended regex for stderr' ARGS...
# Runs sdc with ARGS (plus -o $OUT unless ARGS name an output); checks the
# exit status is CODE, stderr matches the regex (case-insensitive), and no
# output file appeared.
expect_fail() {
    local code=$1 pattern=$2
    shift 2
    CHECKS=$((CHECKS + 1))
    rm -f "$OUT"
    local rc=0
    (cd "$WORK" && "$SDC" "$@") >"$WORK/stdout" 2>"$WORK/stderr" || rc=$?
    local what="sdc $*"
    if [ "$rc" -ge 128 ]; then
        fail "$what: crashed (status $rc)"
        cat "$WORK/stderr" >&2
    elif [ "$rc" -ne "$code" ]; then
        fail "$what: status $rc, want $code"
        cat "$WORK/stderr" >&2
    fi
    if ! grep -Eqi -- "$pattern" "$WORK/stderr"; then
        fail "$what: stderr does not match /$pattern/:"
        cat "$WORK/stderr" >&2
    fi
    if [ -e "$OUT" ] || [ -e "$WORK/output.png" ]; then
        fail "$what: an output file was written"
    fi
    if ls -A "$WORK" | grep -q '^\.sdc-tmp-'; then
        fail "$what: a temporary file was left behind"
    fi
}

# expect_ok ARGS...: status 0.
expect_ok() {
    CHECKS=$((CHECKS + 1))
    local rc=0
    (cd "$WORK" && "$SDC" "$@") >"$WORK/stdout" 2>"$WORK/stderr" || rc=$?
    if [ "$rc" -ne 0 ]; then
        fail "sdc $*: status $rc"
        cat "$WORK/stderr" >&2
        return 1
    fi
    return 0
}

# is_png FILE: the 8-byte PNG signature and an IEND chunk at the end.
is_png() {
    [ -f "$1" ] || return 1
    [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || return 1
    [ "$(tail -c 8 "$1" | head -c 4)" = "IEND" ]
}

# u64le N: N as 8 little-endian bytes (printf octal escapes).
u64le() {
    local n=$1 i s=""
    for i in 0 1 2 3 4 5 6 7; do
        s="$s\\$(printf '%03o' $(((n >> (8 * i)) & 255)))"
    done
    printf "$s"
}

finish() {
    echo "$((CHECKS - FAILS)) of $CHECKS checks passed"
    [ "$FAILS" -eq 0 ]
}
