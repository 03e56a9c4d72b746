#!/bin/sh
# The soak test of pollbridge (not part of `make check`).
#
# usage: sh tests/soak/run.sh [--minutes M] [--sessions N] [--store memory|redis]
#                             [--asan|--valgrind] [--build DIR] [--log-dir DIR] [--seed S]
#
#   --minutes M     length of the traffic phase (default 3)
#   --sessions N    sessions kept alive at once (default 500)
#   --store S       memory (default) or redis: a private redis-server on a
#                   free loopback port, started and stopped by the soak
#   --asan          (default) the ASan+UBSan build in build-soak/, configured
#                   and built here if needed (../configure --enable-sanitizers)
#   --valgrind      the plain build (build-plain/) under
#                   valgrind --leak-check=full --error-exitcode=97; valgrind
#                   slows the bridge 20-50x: use fewer sessions (e.g. 50)
#   --build DIR     another build tree (it must hold src/pollbridge and
#                   src/pollbridge-echo)
#   --log-dir DIR   where the bridge's (and valgrind's) logs are kept
#                   (default: a new /tmp/pollbridge-soak.XXXXXX)
#   --seed S        random seed (default: time and pid; printed either way)
#
# Everything runs on loopback: pollbridge-echo, pollbridge (--idle-timeout 10),
# redis-server if asked. It creates N sessions, then for M minutes drives
# mixed traffic with libcurl multi (at most 200 requests in flight): long
# polls with advancing cursors, some cut mid-wait, SSE streams, sends of
# every body form (1 B - 4 KiB text, binary, JSON batches, forms), "/burst 20",
# DELETEs, sessions abandoned to idle out, "/close 1000 bye", and new
# sessions to keep N alive. Every echo of a message it sent must arrive once,
# in order. It prints the bridge's RSS every 10 s, a summary, one TAP line
# per check and "N passed, N failed"; it exits 0 only if every check passed:
# no delivery violation, no error, RSS flat (end <= 1.2 x the value after the
# first minute + 2 MiB), exit status 0 on SIGTERM, and a clean sanitizer log
# (or valgrind: ERROR SUMMARY: 0 errors, definitely lost: 0). ASan runs with
# a 64 MiB quarantine unless ASAN_OPTIONS is set (see below). The output is
# also saved as soak.out in the log dir, with the bridge's log.
set -eu
cd "$(dirname "$0")/../.."
top=$(pwd)

minutes=3
sessions=500
store=memory
mode=asan
build=
logdir=
seed=
while [ $# -gt 0 ]; do
	case $1 in
	--minutes) minutes=$2; shift 2 ;;
	--sessions) sessions=$2; shift 2 ;;
	--store) store=$2; shift 2 ;;
	--asan) mode=asan; shift ;;
	--valgrind) mode=valgrind; shift ;;
	--build) build=$2; shift 2 ;;
	--log-dir) logdir=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	-h|--help) sed -n '2,35p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
done
case $store in
memory|redis) ;;
*) echo "run.sh: --store must be memory or redis" >&2; exit 2 ;;
esac

fail() {
	echo "$1"
	echo "0 passed, 1 failed"
	exit 1
}

if [ -z "$build" ]; then
	if [ $mode = asan ]; then build=$top/build-soak; else build=$top/build-plain; fi
fi
if [ $mode = asan ] && [ ! -f "$build/config.status" ]; then
	mkdir -p "$build"
	(cd "$build" && ../configure -q --enable-sanitizers) || fail "configure failed in $build"
fi
if [ -f "$build/Makefile" ]; then
	if ! (cd "$build" && make -s -j2 src/pollbridge src/pollbridge-echo) >"$build/soak-make.log" 2>&1; then
		tail -n 30 "$build/soak-make.log"
		fail "building pollbridge in $build failed"
	fi
fi
[ -x "$build/src/pollbridge" ] && [ -x "$build/src/pollbridge-echo" ] ||
	fail "no src/pollbridge and src/pollbridge-echo in $build"
if [ $mode = asan ] && ! grep -q 'enable_sanitizers=yes\|fsanitize=address' "$build/config.status" 2>/dev/null &&
	! nm "$build/src/pollbridge" 2>/dev/null | grep -q __asan_init; then
	echo "warning: $build does not look like a sanitizer build"
fi
if [ $mode = valgrind ] && ! command -v valgrind >/dev/null 2>&1; then
	fail "valgrind is not installed (apt-get install valgrind)"
fi
if [ $store = redis ] && ! command -v redis-server >/dev/null 2>&1; then
	fail "redis-server is not installed (apt-get install redis-server)"
fi

mkdir -p "$build/tests/soak"
bin=$build/tests/soak/pollbridge-soak
gcc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -I src -I tests \
	tests/e2e/harness.c tests/tap.c tests/soak/soak.c -o "$bin" -lcurl -ljansson ||
	fail "building the soak test failed"

[ -n "$logdir" ] || logdir=$(mktemp -d /tmp/pollbridge-soak.XXXXXX)
mkdir -p "$logdir"

PB_BIN=$build/src/pollbridge
PB_ECHO_BIN=$build/src/pollbridge-echo
PB_UPSTREAMS=$top/tests/upstreams
PB_TEST_STORE=$store
export PB_BIN PB_ECHO_BIN PB_UPSTREAMS PB_TEST_STORE
unset PB_BRIDGE_WRAPPER
# Leak checking at exit is LeakSanitizer's default on Linux; say it anyway.
# ASan keeps freed memory in a quarantine (256 MiB by default) to catch use
# after free; at this traffic it takes ~100 s to fill, so the bridge's RSS
# would climb through the first minutes whatever the daemon does. 64 MiB fills
# within ~20 s (still ~20 s of use-after-free history) and leaves the RSS
# check measuring the daemon. Set ASAN_OPTIONS yourself to override.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=64}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export ASAN_OPTIONS UBSAN_OPTIONS

set -- --minutes "$minutes" --sessions "$sessions" --log-dir "$logdir"
[ $mode = valgrind ] && set -- "$@" --valgrind
[ -n "$seed" ] && set -- "$@" --seed "$seed"
echo "# soak: $build ($mode), store $store, $minutes min, $sessions sessions; logs in $logdir"
# the output is also kept in $logdir/soak.out
{ "$bin" "$@"; echo $? >"$logdir/soak.status"; } | tee "$logdir/soak.out"
exit "$(cat "$logdir/soak.status" 2>/dev/null || echo 1)"
