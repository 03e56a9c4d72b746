#!/bin/sh
# bench/run.sh: build and run the delivery benchmark (bench/deliver.c).
#
# Usage: sh bench/run.sh [-B BUILD_DIR] [--no-make] [DELIVER ARGS...]
#
#   -B BUILD_DIR  the configured build tree whose binaries are measured
#                 (default: build-plain next to this script's parent dir)
#   --no-make     do not run `make` for src/pollbridge and src/pollbridge-echo
#                 first (use the binaries as they are)
#   DELIVER ARGS  passed to deliver as they are:
#                   -n N          messages per run, both stores (default: memory
#                                 1000000, redis 1000000); -n memory=N or
#                                 -n redis=N sets one store's
#                   -r RUNS       runs per store (default 3)
#                   -s memory|redis|both   stores to run (default both)
#                   -- ARGS...    extra pollbridge arguments for every run
#                                 (e.g. -- --queue-max 10000)
#
# Examples:
#   sh bench/run.sh                      # 3 x memory, 3 x redis, alternating
#   sh bench/run.sh -n 200000            # the same N for both stores (~90 s)
#   sh bench/run.sh -n redis=50000 -r 1 -s redis
#   PB_BENCH_PAUSE=1 sh bench/run.sh -r 1 -s redis   # time to attach perf
#
# The deliver binary is built with gcc into BUILD_DIR/bench/deliver, linking
# tests/e2e/harness.c and tests/tap.c from the source tree, libcurl and
# jansson. Needs redis-server on PATH for the Redis runs. Not part of
# `make check`. Exit status: deliver's (0 if every run was correct).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
build="$top/build-plain"
do_make=1

while [ $# -gt 0 ]; do
	case "$1" in
	-B) build=$2; shift 2 ;;
	-B*) build=${1#-B}; shift ;;
	--no-make) do_make=0; shift ;;
	-h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) break ;;
	esac
done
build=$(cd "$build" && pwd)

if [ "$do_make" = 1 ]; then
	make -C "$build" -j2 src/pollbridge src/pollbridge-echo >/dev/null
fi
for b in src/pollbridge src/pollbridge-echo; do
	[ -x "$build/$b" ] || { echo "run.sh: $build/$b is missing (build first)" >&2; exit 2; }
done

cflags=$(pkg-config --cflags libcurl jansson 2>/dev/null || true)
libs=$(pkg-config --libs libcurl jansson 2>/dev/null || echo "-lcurl -ljansson")
mkdir -p "$build/bench"
# shellcheck disable=SC2086
gcc -std=c11 -O2 -g -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE \
	-I"$top/tests" -I"$top/src" $cflags \
	-o "$build/bench/deliver" \
	"$top/bench/deliver.c" "$top/tests/e2e/harness.c" "$top/tests/tap.c" \
	$libs

PB_BIN="$build/src/pollbridge" PB_ECHO_BIN="$build/src/pollbridge-echo" \
	exec "$build/bench/deliver" "$@"
