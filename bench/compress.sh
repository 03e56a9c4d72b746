#!/bin/sh
# bench/compress.sh: build and run the compression benchmark (bench/compress.c):
# bytes on the wire and bridge CPU per message for a poll answer of 64 JSON
# chat messages, with and without Accept-Encoding: gzip, and the bytes per
# message of an event stream flushed per event. See bench/README.md.
#
# Usage: sh bench/compress.sh [-B BUILD_DIR] [--no-make] [COMPRESS ARGS...]
#
#   -B BUILD_DIR  the configured build tree whose binaries are measured
#                 (default: build-plain next to this script's parent dir)
#   --no-make     do not run `make` for src/pollbridge and src/pollbridge-echo
#   COMPRESS ARGS passed to compress as they are:
#                   -k POLLS      polls per round (default 20000)
#                   -r ROUNDS     rounds per mode, plain and gzip alternating
#                                 (default 3)
#                   -- ARGS...    extra pollbridge arguments (at most 4)
#
# Not part of `make check`. Exit status: compress's (0 if every answer was
# right).
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
	-h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) break ;;
	esac
done
build=$(cd "$build" && pwd)

if [ "$do_make" = 1 ]; then
	make -C "$build" -j2 src/pollbridge src/pollbridge-echo >/dev/null
fi
for b in src/pollbridge src/pollbridge-echo; do
	[ -x "$build/$b" ] || { echo "compress.sh: $build/$b is missing (build first)" >&2; exit 2; }
done

cflags=$(pkg-config --cflags libcurl jansson 2>/dev/null || true)
libs=$(pkg-config --libs libcurl jansson 2>/dev/null || echo "-lcurl -ljansson")
mkdir -p "$build/bench"
# shellcheck disable=SC2086
gcc -std=c11 -O2 -g -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE \
	-I"$top/tests" -I"$top/src" $cflags \
	-o "$build/bench/compress" \
	"$top/bench/compress.c" "$top/tests/e2e/harness.c" "$top/tests/tap.c" \
	$libs

PB_BIN="$build/src/pollbridge" PB_ECHO_BIN="$build/src/pollbridge-echo" \
	exec "$build/bench/compress" "$@"
