#!/bin/sh
# run.sh: the whole fuzzing run from a clean tree: regenerate the build
# system, configure a clang build with --enable-fuzzing in build-fuzz/
# (-O1 -g; the whole build is sanitized and coverage-instrumented), build,
# and `make fuzz` with FUZZ_SECONDS (default 10) per target. The Debian
# packages it needs: sh contrib/deps.sh test (clang, libclang-rt-14-dev).
# Ends with "N passed, N failed", one count per target (a target not
# reached after an earlier one failed counts as failed) and exits non-zero
# if any failed.
set -u
cd "$(dirname "$0")/../.."
top=$(pwd)
targets=$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c; done)
total=$(echo "$targets" | wc -w)

# finish PASSED: print the summary and exit.
finish() {
	echo "$1 passed, $((total - $1)) failed"
	[ "$1" -eq "$total" ]
	exit
}

./autogen.sh >/dev/null 2>&1 || { echo "autogen.sh failed"; finish 0; }
# The build happens in build-fuzz/, which needs an unconfigured tree.
if [ -f config.status ]; then
	echo "note: cleaning the in-tree build (make distclean) to build out of tree"
	make -s distclean >/dev/null 2>&1 || rm -f config.status
fi
dir=$top/build-fuzz
rm -rf "$dir"
mkdir -p "$dir"
jobs=$(nproc 2>/dev/null || echo 2)
echo "=== fuzz build"
if ! (cd "$dir" && "$top/configure" -q --enable-fuzzing CC=clang CFLAGS="-O1 -g" \
	>configure.out 2>&1 && make -s -j"$jobs" >make.out 2>&1); then
	echo "fuzz build failed:"
	tail -n 30 "$dir/configure.out" "$dir/make.out" 2>/dev/null
	finish 0
fi
echo "=== make fuzz FUZZ_SECONDS=${FUZZ_SECONDS:-10}"
(cd "$dir" && make -s fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-10}") 2>&1 | tee "$dir/fuzz.out"
passed=0
for t in $targets; do
	if grep -q "^PASS: $t:" "$dir/fuzz.out"; then
		passed=$((passed + 1))
	elif ! grep -q "^FAIL: $t:" "$dir/fuzz.out"; then
		echo "NOT RUN: $t"
	fi
done
finish "$passed"
