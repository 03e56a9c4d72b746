#!/bin/sh
# fuzz.sh: what `make fuzz` runs. Each libFuzzer target in turn: first its
# saved crash inputs (regressions/TARGET/) one by one, then fuzzing for
# SECONDS from its seed corpus (corpus/TARGET/), the regressions and what
# earlier runs found. Stops at the first crash, leak, timeout or property
# violation, naming the target and the input; otherwise prints one PASS line
# per target with libFuzzer's figures (runs, exec/s, cov:, ft:).
#
# Usage: fuzz.sh SECONDS SRCDIR BINDIR TARGET...
#   SRCDIR: tests/fuzz of the source tree (corpus/, regressions/, *.dict)
#   BINDIR: tests/fuzz of the build tree (the targets). Written there:
#   work/TARGET/ (inputs libFuzzer adds; kept, so the next run goes on from
#   them), artifacts/TARGET/ (crash inputs) and logs/TARGET.log.
set -u
if [ $# -lt 4 ]; then
	echo "usage: $0 SECONDS SRCDIR BINDIR TARGET..." >&2
	exit 2
fi
secs=$1 src=$2 bin=$3
shift 3
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export UBSAN_OPTIONS

# fail TARGET INPUT LOG: report a failure and stop.
fail() {
	echo "FAIL: $1: input $2"
	same=$(for f in "$src/corpus/$1"/* "$src/regressions/$1"/*; do
		[ -f "$f" ] && [ "$f" != "$2" ] && cmp -s "$f" "$2" && echo "$f"
	done | head -n 1)
	[ -n "$same" ] && echo "  (the same bytes as $same)"
	[ -f "$2" ] && echo "  hex: $(od -An -tx1 -v "$2" | head -c 600 | tr -s ' \n' ' ')"
	echo "  log: $3"
	grep -E '^(==[0-9]+==ERROR|SUMMARY|.*property violated|.*runtime error)' "$3" | head -n 5 | sed 's/^/  /'
	grep -E '^ *#[0-9]+ 0x' "$3" | head -n 8 | sed 's/^ */    /'
	echo "  reproduce: $bin/$1 $2"
	exit 1
}

for t in "$@"; do
	work=$bin/work/$t
	art=$bin/artifacts/$t
	log=$bin/logs/$t.log
	mkdir -p "$work" "$art" "$bin/logs"
	: > "$log"
	if [ ! -x "$bin/$t" ]; then
		echo "FAIL: $t: $bin/$t was not built"
		exit 1
	fi
	# Saved crash inputs, each run once, so a failing one is named.
	for f in "$src/regressions/$t"/*; do
		[ -f "$f" ] || continue
		if ! "$bin/$t" "$f" >> "$log" 2>&1; then
			fail "$t" "$f" "$log"
		fi
	done
	dict=
	[ -f "$src/$t.dict" ] && dict=-dict=$src/$t.dict
	# New inputs go to the first directory only: work/, never the source tree.
	# shellcheck disable=SC2086
	"$bin/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$art/" $dict \
		"$work" "$src/corpus/$t" "$src/regressions/$t" >> "$log" 2>&1
	rc=$?
	if [ "$rc" -ne 0 ]; then
		input=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)
		fail "$t" "${input:-(none written, exit status $rc)}" "$log"
	fi
	last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -n 1)
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(echo "$last" | sed -n 's/.*\(cov: [0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.*\(ft: [0-9]*\).*/\1/p')
	corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
	echo "PASS: $t: ${runs:-?} runs in ${secs}s, ${rate:-?} exec/s, $cov $ft, corpus ${corp:-?} inputs"
done
