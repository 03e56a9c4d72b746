#!/bin/sh
# The whole test suite, as CI runs it: install what the tests need, then
# build and run `make check` three times, each in its own build directory:
# plain (gcc), with ASan+UBSan (gcc), and with clang. Every build uses
# -Wall -Wextra -Werror. Then every libFuzzer target runs for a few
# seconds (PB_FUZZ_SECONDS, default 5; 0 skips), and the Debian package is
# built, installed, smoke-tested and purged (PB_PACKAGE=0 skips it). The
# e2e suite on a Redis Cluster (CLUSTER_E2E_TESTS) runs in the builds named
# in PB_CLUSTER_BUILDS (default "sanitizers"; "" for none); the
# cluster failover cases (CLUSTER_TESTS) run in every build.
# Ends with "N passed, N failed" and exits non-zero if anything failed. Set
# PB_SKIP_DEPS=1 to skip the apt-get step, and PB_BUILDS="plain" (or any of
# "plain sanitizers clang") to run some builds only.
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
if [ "${PB_SKIP_DEPS:-0}" != 1 ]; then
	sh contrib/deps.sh test || { echo "installing the test dependencies failed"; echo "0 passed, 1 failed"; exit 1; }
fi
./autogen.sh >/dev/null 2>&1 || { echo "autogen.sh failed"; echo "0 passed, 1 failed"; exit 1; }
# The builds happen in build-*/ directories, which needs an unconfigured tree.
if [ -f config.status ]; then
	echo "note: cleaning the in-tree build (make distclean) to build out of tree"
	make -s distclean >/dev/null 2>&1 || rm -f config.status
fi
jobs=$(nproc 2>/dev/null || echo 2)
passed=0
failed=0
for build in ${PB_BUILDS:-plain sanitizers clang}; do
	dir="$top/build-$build"
	rm -rf "$dir"
	mkdir -p "$dir"
	cflags="-O2 -g"
	# The suites that drive third-party clients (browser, sockjs-client,
	# socket.io-client) exercise the same C as the plain build and take
	# minutes: the clang build, there for the second compiler, skips them.
	peers=""
	case $build in
	sanitizers) flags="--enable-sanitizers" ;;
	# DWARF 4: valgrind 3.19 cannot read clang 14's default DWARF 5.
	clang) flags="CC=clang" cflags="-O2 -g -gdwarf-4"
	       peers="BROWSER_TESTS= SOCKJS_TESTS= SOCKETIO_TESTS=" ;;
	*) flags="" ;;
	esac
	# the whole e2e suite on a Redis Cluster (a few minutes): under the
	# sanitizers, where the cluster client is checked the most
	cluster=""
	case " ${PB_CLUSTER_BUILDS-sanitizers} " in
	*" $build "*) ;;
	*) cluster="CLUSTER_E2E_TESTS=" ;;
	esac
	echo "=== $build build"
	if ! (cd "$dir" && "$top/configure" -q $flags CFLAGS="$cflags" >configure.out 2>&1 && make -s -j"$jobs" >make.out 2>&1); then
		echo "$build: build failed:"
		tail -n 30 "$dir/configure.out" "$dir/make.out" 2>/dev/null
		failed=$((failed + 1))
		continue
	fi
	(cd "$dir" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		make -s -j"$jobs" check $peers $cluster >check.out 2>&1)
	grep -aE '^(PASS|FAIL|ERROR|XPASS|SKIP|XFAIL):' "$dir/check.out" | grep -v '^PASS' || true
	p=$(sed -n 's/^# PASS: *//p' "$dir/check.out" | tail -n 1)
	f=$(sed -n 's/^# FAIL: *//p' "$dir/check.out" | tail -n 1)
	e=$(sed -n 's/^# ERROR: *//p' "$dir/check.out" | tail -n 1)
	x=$(sed -n 's/^# XPASS: *//p' "$dir/check.out" | tail -n 1)
	if [ -z "$p" ]; then
		echo "$build: make check produced no summary:"
		tail -n 40 "$dir/check.out"
		failed=$((failed + 1))
		continue
	fi
	bad=$(( ${f:-0} + ${e:-0} + ${x:-0} ))
	echo "$build: $p passed, $bad failed"
	if [ "$bad" -gt 0 ]; then
		for log in $(find "$dir/tests" -name '*.log' ! -name 'test-suite.log'); do
			if grep -aqE '^(not ok|Bail out!)' "$log" || grep -q '^ERROR' "${log%.log}.trs" 2>/dev/null; then
				echo "--- $log"
				grep -aE '^(not ok|Bail out!|#)' "$log" | head -n 40
			fi
		done
	fi
	passed=$((passed + p))
	failed=$((failed + bad))
done
# The libFuzzer targets, briefly (tests/fuzz/run.sh: clang, its own build
# directory); PB_FUZZ_SECONDS=0 skips them.
if [ "${PB_FUZZ_SECONDS:-5}" != 0 ]; then
	echo "=== fuzz targets, ${PB_FUZZ_SECONDS:-5} s each"
	FUZZ_SECONDS=${PB_FUZZ_SECONDS:-5} sh tests/fuzz/run.sh >"$top/build-fuzz.out" 2>&1
	grep -E '^(PASS|FAIL|NOT RUN):' "$top/build-fuzz.out" | sed 's/^/  /'
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$top/build-fuzz.out" | tail -n 1)
	if [ -n "$line" ]; then
		p=${line%% passed*}
		f=${line#*passed, }
		f=${f%% failed*}
		echo "fuzz: $p passed, $f failed"
		passed=$((passed + p))
		failed=$((failed + f))
	else
		echo "fuzz: no result:"
		tail -n 30 "$top/build-fuzz.out"
		failed=$((failed + 1))
	fi
fi
# The Debian package (tests/package/run.sh, about a minute): built in a
# copy of the tree, checked by lintian, installed, smoke-tested, purged.
# Without its tools (or root) it is skipped, which CI (CI=true) counts as a
# failure; PB_PACKAGE=0 skips it.
if [ "${PB_PACKAGE:-1}" != 0 ]; then
	echo "=== Debian package"
	sh tests/package/run.sh >"$top/build-package.out" 2>&1
	rc=$?
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$top/build-package.out" | tail -n 1)
	if [ "$rc" = 77 ]; then
		echo "SKIP: package: $(sed -n 's/^SKIP: //p' "$top/build-package.out" | head -n 1)"
		if [ "${CI:-}" = true ]; then
			echo "package: skipped in CI, counted as failed"
			failed=$((failed + 1))
		fi
	elif [ -n "$line" ]; then
		grep -E '^not ok' "$top/build-package.out" | sed 's/^/  /'
		p=${line%% passed*}
		f=${line#*passed, }
		f=${f%% failed*}
		echo "package: $p passed, $f failed"
		passed=$((passed + p))
		failed=$((failed + f))
	else
		echo "package: no result:"
		tail -n 30 "$top/build-package.out"
		failed=$((failed + 1))
	fi
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
