# tests/cluster/lib.sh: what the heavy failover scripts (failover.sh,
# cluster_failover.sh) share; sourced after they set `here`. Takes the
# build dir from $1 (default build-plain), exports the binaries the e2e
# programs need, builds them, and defines
#   run NAME COMMAND [ARG]...
# which runs one case with its output in $out/NAME.log, prints its figures
# (the '# ...' lines naming acknowledged, lost or reshard) and its failed
# checks, and counts it in $fails if it exited non-zero or failed a check.
top=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$top/build-plain}" && pwd) || exit 2
PB_BIN=$build/src/pollbridge
PB_ECHO_BIN=$build/src/pollbridge-echo
PB_UPSTREAMS=$top/tests/upstreams
export PB_BIN PB_ECHO_BIN PB_UPSTREAMS
make -s -C "$build" check TESTS= >/dev/null 2>&1 || exit 2
fails=0
out=$build/tests/cluster
mkdir -p "$out"

run() {
	name=$1
	shift
	start=$(date +%s)
	"$@" >"$out/$name.log" 2>&1
	st=$?
	bad=$(grep -ac '^not ok' "$out/$name.log")
	grep -aE '^# .*(acknowledged|lost|reshard)' "$out/$name.log" | grep -av 'client error:'
	grep -a '^not ok' "$out/$name.log"
	echo "$name: exit $st, $bad failed checks, $(( $(date +%s) - start )) s (log: $out/$name.log)"
	[ "$st" -eq 0 ] && [ "$bad" -eq 0 ] || fails=$((fails + 1))
}
