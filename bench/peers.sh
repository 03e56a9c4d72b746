#!/bin/sh
# bench/peers.sh: the peer benchmark. pollbridge (memory store and Redis
# store) against Engine.IO polling and a bare libmicrohttpd server, and
# pollbridge's own Engine.IO door against its /v1 API, all in one run,
# printed as tables with ratios. See bench/README.md.
#
# Usage: sh bench/peers.sh [-B BUILD_DIR] [--no-make]
#
#   -B BUILD_DIR  the configured build tree whose pollbridge is measured
#                 (default: build-plain next to this script's parent dir);
#                 the bench tools are built into BUILD_DIR/bench-peers
#   --no-make     do not run `make` for src/pollbridge first
# Environment:
#   BENCH_QUICK=1   smoke run (about 3 minutes): 1 repetition, 1 s windows,
#                   held polls at 200/500/1000 sessions instead of
#                   1000/5000/9500
#   BENCH_REPS=N    repetitions (default 3; the table shows medians)
#   BENCH_CC=clang  compiler for the bench tools (default cc)
#   BENCH_SCEN="..." servers, in this order per repetition (default
#                   "memory redis classic classicred eio door doorred sjs
#                   sjsred bare cluster": pollbridge /v1 on each store, the
#                   same with --lean-long-polls no (held polls only), npm
#                   engine.io, pollbridge's Engine.IO door on each store,
#                   its SockJS door (xhr-polling) on each store, bare
#                   libmicrohttpd (short polls, and
#                   the throughput ceiling: every poll answered at once with
#                   64 canned messages; with it the latency floor: the same
#                   message rate crossing the CPUs with nothing done,
#                   bench/floor.c), and pollbridge /v1
#                   on a Redis Cluster of 1 primary, then of 3 primaries, no
#                   replicas (tests/cluster/with_cluster.sh; throughput and
#                   latency only, with the redis-servers' CPU per message)
#   BENCH_PARTS="..." measurements (default "thru lat held short")
#
# Needs: redis-server, redis-cli, python3, node, wrk, taskset, and engine.io installed in
# tests/upstreams/node (contrib/deps.sh bench). Not part of `make check`.
# Raw figures: BUILD_DIR/bench-peers/results.txt.
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
	-h|--help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "peers.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
build=$(cd "$build" && pwd)

if [ "${BENCH_QUICK:-0}" = 1 ]; then
	reps=${BENCH_REPS:-1}; dur=1; warm=0.3; latdur=2; wrkdur=1
	steps=200,500,1000
else
	reps=${BENCH_REPS:-3}; dur=3; warm=1; latdur=10; wrkdur=5
	steps=1000,5000,9500
fi
last_step=${steps##*,}
scen=${BENCH_SCEN:-memory redis classic classicred eio door doorred sjs sjsred bare cluster}
# "cluster" is two servers: 1 primary, then 3
scen=$(echo " $scen " | sed 's/ cluster / cluster1 cluster3 /g')
parts=${BENCH_PARTS:-thru lat held short}

for t in redis-server node wrk; do
	command -v $t >/dev/null 2>&1 || { echo "peers.sh: $t is missing (sh contrib/deps.sh bench)" >&2; exit 2; }
done
[ -d "$top/tests/upstreams/node/node_modules/engine.io" ] ||
	{ echo "peers.sh: npm engine.io missing: cd tests/upstreams/node && npm ci" >&2; exit 2; }
# One descriptor per session for its client and one for its upstream.
ulimit -n 20000 2>/dev/null || echo "peers.sh: warning: ulimit -n 20000 refused (have $(ulimit -n))" >&2

if [ "$do_make" = 1 ]; then
	make -C "$build" -j2 src/pollbridge >/dev/null
fi
[ -x "$build/src/pollbridge" ] || { echo "peers.sh: $build/src/pollbridge is missing" >&2; exit 2; }
out="$build/bench-peers"
rm -rf "$out/logs"
mkdir -p "$out/logs"
make -s -C "$here" -f peers.mk O="$out" CC="${BENCH_CC:-cc}" >/dev/null

# Server side on CPU 0, load generator and upstream on CPU 1.
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
	srv="taskset -c 0"; cli="taskset -c 1"; floor_cpus="-s 0 -c 1"
else
	srv=""; cli=""; floor_cpus="-s 0 -c 0"
	echo "peers.sh: warning: no taskset or a single CPU: nothing is pinned" >&2
fi

results="$out/results.txt"
: >"$results"
pids=""

# Stop every process this script started (by pid).
stop_all() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	pids=""
}
trap 'stop_all' EXIT INT TERM

# Wait until FILE holds a line matching RE; print the port after it.
wait_port() {
	i=0
	while ! grep -q "$2" "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 200 ] || { echo "peers.sh: no ready line in $1:" >&2; cat "$1" >&2; exit 1; }
		sleep 0.05
	done
	grep "$2" "$1" | head -1 | sed 's/.*[: ]\([0-9][0-9]*\)[^0-9]*$/\1/'
}

# A free loopback TCP port (for redis-server).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_upstream RATE [-e]: the C upstream on the load CPU (-e: Engine.IO).
start_upstream() {
	# Emptied here, not only by the redirection below: that one happens in
	# the background child, and wait_port could read the last upstream's
	# ready line first.
	: >"$out/upstream.out"
	# shellcheck disable=SC2086
	$cli "$out/upstream" -r "$1" ${2:-} >"$out/upstream.out" 2>"$out/upstream.err" &
	up_pid=$!; pids="$pids $up_pid"
	up_port=$(wait_port "$out/upstream.out" '^listening')
}

# start_bridge memory|redis|cluster1|cluster3 [ROUTE_OPTS]: pollbridge (and
# its redis-server, or its cluster's) on the server CPU; ROUTE_OPTS follow
# the route's URL (the door: its query and engineio=). Sets spids (every
# server-side pid) and rpids (the redis-servers').
start_bridge() {
	store_arg=""; spids=""; rpids=""
	if [ "$1" = redis ]; then
		rport=$(free_port)
		$srv redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
			>"$out/logs/redis-$tag.log" 2>&1 &
		redis_pid=$!; pids="$pids $redis_pid"
		wait_port "$out/logs/redis-$tag.log" 'Ready to accept' >/dev/null
		store_arg="--store redis://127.0.0.1:$rport"
		spids=",$redis_pid"; rpids=$redis_pid
	elif [ "$1" = cluster1 ] || [ "$1" = cluster3 ]; then
		# with_cluster.sh (pinned: its nodes inherit CPU 0) runs a
		# holder that writes "PID URL NODE-PIDS" and sleeps; stop_all
		# kills the holder and with_cluster.sh, which stops the nodes
		info="$out/logs/cluster-$tag.info"
		rm -f "$info"
		CLUSTER_PRIMARIES=${1#cluster} CLUSTER_REPLICAS=0 $srv sh "$top/tests/cluster/with_cluster.sh" \
			sh -c 'echo "$$ $PB_TEST_STORE $(paste -sd, "$PB_CLUSTER_DIR/pids")" >"$0.tmp" &&
				mv "$0.tmp" "$0" && while :; do sleep 1; done' "$info" \
			>"$out/logs/cluster-$tag.log" 2>&1 &
		pids="$pids $!"
		i=0
		while [ ! -s "$info" ]; do
			i=$((i + 1))
			[ $i -lt 400 ] || { echo "peers.sh: the cluster did not start:" >&2; cat "$out/logs/cluster-$tag.log" >&2; exit 1; }
			sleep 0.05
		done
		read -r holder cl_url rpids <"$info"
		pids="$holder $pids"
		store_arg="--store $cl_url"
		spids=",$rpids"
	fi
	# shellcheck disable=SC2086
	$srv "$build/src/pollbridge" --listen 127.0.0.1:0 --route "up=ws://127.0.0.1:$up_port/${2:-}" \
		--connect-timeout 30 --log-level warn $store_arg ${3:-} >/dev/null 2>"$out/logs/bridge-$tag.err" &
	pb_pid=$!; pids="$pids $pb_pid"
	srv_port=$(wait_port "$out/logs/bridge-$tag.err" 'listening on')
	spids="$pb_pid$spids"
}

# start_eio RATE: the Engine.IO peer on the server CPU.
start_eio() {
	: >"$out/eio.out"       # as in start_upstream
	$srv node "$here/eio_server.js" 0 "$1" >"$out/eio.out" 2>"$out/logs/eio-$tag.err" &
	eio_pid=$!; pids="$pids $eio_pid"
	srv_port=$(wait_port "$out/eio.out" '^listening')
	spids=$eio_pid
}

# start_bare [-b N]: the bare libmicrohttpd server on the server CPU; with
# -b it answers every poll with the same batch of N messages (bench/baremhd.c).
start_bare() {
	: >"$out/baremhd.out"   # as in start_upstream
	$srv "$out/baremhd" "$@" >"$out/baremhd.out" 2>&1 &
	bm_pid=$!; pids="$pids $bm_pid"
	srv_port=$(wait_port "$out/baremhd.out" '^listening')
}

# record NAME REP PREFIX: turn loadgen's key=value line(s) on stdin into rows.
record() {
	awk -v n="$1" -v r="$2" -v p="$3" '{
		pre = p
		for (i = 1; i <= NF; i++) if ($i ~ /^sessions=/) { split($i, a, "="); pre = p a[2] }
		for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[2] != "") print n, r, (pre == "" ? a[1] : pre "." a[1]), a[2] }
	}' >>"$results"
}

# start_server NAME RATE: the upstream (bridges only) and the server.
# Logs go to BUILD/bench-peers/logs/*-NAME-REP-SCENARIO*.
start_server() {
	tag=$1-$rep-$3
	rpids=""
	case "$1" in
	memory|redis|cluster1|cluster3) start_upstream "$2"; start_bridge "$1"; kind=pb; upids=$up_pid ;;
	classic) start_upstream "$2"; start_bridge memory "" "--lean-long-polls no"; kind=pb; upids=$up_pid ;;
	classicred) start_upstream "$2"; start_bridge redis "" "--lean-long-polls no"; kind=pb; upids=$up_pid ;;
	door|doorred)
		start_upstream "$2" -e
		if [ "$1" = door ]; then st=memory; else st=redis; fi
		start_bridge $st '?transport=websocket engineio=/engine.io/'
		kind=eio; upids=$up_pid ;;
	sjs|sjsred)
		start_upstream "$2"
		if [ "$1" = sjs ]; then st=memory; else st=redis; fi
		start_bridge $st ' sockjs=/sjs'
		kind=sjs; upids=$up_pid ;;
	eio) start_eio "$2"; kind=eio; upids="" ;;
	esac
}

# loadgen ARGS: the load generator on the load CPU against the running server.
loadgen() {
	# shellcheck disable=SC2086
	$cli "$out/loadgen" -p "$srv_port" -k "$kind" -P "$spids" ${upids:+-U $upids} ${rpids:+-R $rpids} "$@"
}

# cpu_ticks PIDS: utime + stime (clock ticks) of the comma-separated pids.
cpu_ticks() {
	t=0
	for p in $(echo "$1" | tr ',' ' '); do
		t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo $t
}

# wrk_short URL PIDS: empty short polls with wrk -c64 on the load CPU; prints
# "short.rps=R short.cpu_us=C", C being the server's CPU-microseconds per
# request (the PIDS: pollbridge and its redis-server, or the bare server).
# The rate depends on how much of its core the server gets on a shared
# machine; the CPU per request much less.
wrk_short() {
	t0=$(cpu_ticks "$2")
	w=$($cli wrk -t1 -c64 -d"${wrkdur}s" "$1" 2>&1)
	t1=$(cpu_ticks "$2")
	echo "$w" | awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" '
		/ requests in / { n = $1 }
		/^Requests\/sec:/ { r = $2 }
		END { printf "short.rps=%s short.cpu_us=%.3f\n", r, n ? t * 1e6 / hz / n : 0 }'
}

# has WORD LIST: whether the space-separated LIST holds WORD.
has() {
	case " $2 " in *" $1 "*) return 0 ;; esac
	return 1
}

echo "peers.sh: $reps repetition(s), servers: $scen; parts: $parts; held steps $steps"
echo "peers.sh: load before: $(cat /proc/loadavg)"
rep=1
while [ "$rep" -le "$reps" ]; do
	for name in $scen; do
		echo "  rep $rep: $name" >&2
		if [ $name = bare ]; then
			if has short "$parts"; then
				start_bare
				wrk_short "http://127.0.0.1:$srv_port/v1/sessions/x/messages" "$bm_pid" |
					record bare $rep ""
				stop_all
			fi
			if has thru "$parts"; then
				# the ceiling: polls answered at once with a canned batch
				for c in 1 100; do
					start_bare -b 64
					$cli "$out/loadgen" -p "$srv_port" -k pb -P "$bm_pid" -m thru -c $c \
						-d "$dur" -w "$warm" | record bare $rep thru$c
					stop_all
				done
			fi
			if has lat "$parts"; then
				# the floor: the same rate crossing the CPUs with
				# nothing done (bench/floor.c), as a bridge's
				# messages do (2 hops) and a server's own (1 hop)
				for h in 2 1; do
					"$out/floor" -h $h -r 1000 -d "$latdur" -w "$warm" $floor_cpus |
						record bare $rep floor$h
				done
			fi
			continue
		fi
		case $name in classic|classicred)
			# --lean-long-polls changes only what a waiting poll costs
			has held "$parts" || continue
			start_server $name 0 held
			loadgen -m held -s "$steps" | record $name $rep held
			stop_all
			continue ;;
		esac
		if has thru "$parts"; then
			start_server $name 0 thru1
			loadgen -m thru -c 1 -d "$dur" -w "$warm" | record $name $rep thru1
			stop_all
			start_server $name 0 thru100
			loadgen -m thru -c 100 -d "$dur" -w "$warm" | record $name $rep thru100
			stop_all
		fi
		if has lat "$parts"; then
			start_server $name 1000 lat
			loadgen -m lat -c 100 -d "$latdur" -w "$warm" | record $name $rep lat
			stop_all
		fi
		case $name in cluster*) continue ;; esac
		if has held "$parts"; then
			start_server $name 0 held
			loadgen -m held -s "$steps" | record $name $rep held
			stop_all
		fi
		if has short "$parts" && { [ $name = memory ] || [ $name = redis ]; }; then
			start_server $name 0 short
			sid=$(curl -sf -X POST "http://127.0.0.1:$srv_port/v1/sessions?route=up" |
				sed 's/.*"session":"\([^"]*\)".*/\1/')
			wrk_short "http://127.0.0.1:$srv_port/v1/sessions/$sid/messages" "$spids" |
				record $name $rep ""
			stop_all
		fi
	done
	rep=$((rep + 1))
done
echo "peers.sh: load after: $(cat /proc/loadavg) ($(nproc) CPUs)"

# The table: medians over the repetitions, [min-max] when there are several,
# and pollbridge / Engine.IO (and / bare libmicrohttpd) ratios of the medians.
awk -v steps="$steps" -v last="$last_step" '
function med(n, k,   c, i, j, t, v) {
	c = cnt[n, k]; if (!c) return ""
	for (i = 1; i <= c; i++) v[i] = val[n, k, i]
	for (i = 2; i <= c; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
	lo[n, k] = v[1]; hi[n, k] = v[c]
	return (c % 2) ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
}
function fmt(x) { return x >= 100 ? sprintf("%.0f", x) : x >= 1 ? sprintf("%.2f", x) : sprintf("%.3f", x) }
function cell(n, k,   m) {
	m = med(n, k); if (m == "") return "n/a"
	M[n] = m
	return cnt[n, k] > 1 ? fmt(m) " [" fmt(lo[n, k]) "-" fmt(hi[n, k]) "]" : fmt(m)
}
# One row of a door table: the door on memory (scenario dm) and on Redis
# (dr) beside /v1 on the same store.
function drow(label, k, dm, dr,   a, b, c, d) {
	delete M
	a = cell(dm, k); b = cell("memory", k); c = cell(dr, k); d = cell("redis", k)
	if (a b c d == "n/an/an/an/a") return
	printf "| %-44s | %25s | %25s | %25s | %25s | %9s | %9s |\n", label, a, b, c, d,
		ratio(M[dm], M["memory"]), ratio(M[dr], M["redis"])
}
function crow(label, k,   a, b, c) {
	delete M
	a = cell("redis", k); b = cell("cluster1", k); c = cell("cluster3", k)
	printf "| %-44s | %25s | %25s | %25s | %7s |\n", label, a, b, c, ratio(M["cluster3"], M["cluster1"])
}
# pollbridge'"'"'s own CPU-microseconds per message: (server - store) CPU over
# msgs/s, of the medians
function bridge_us(n,   s, r, m) {
	s = med(n, "thru100.server_cpu"); r = med(n, "thru100.store_cpu"); m = med(n, "thru100.msgs_per_s")
	return (s == "" || r == "" || m + 0 == 0) ? "n/a" : sprintf("%.2f", (s - r) * 1e6 / m)
}
# The bare libmicrohttpd server'"'"'s k, and the stores'"'"' ratio to it (bare
# over pollbridge when k is a cost, pollbridge over bare when a rate).
function bare_rows(k, label, rlabel, cost,   b, m, r) {
	delete M
	b = cell("bare", k)
	m = med("memory", k); r = med("redis", k)
	printf "| %-44s | %25s | %25s | %25s | %7s | %7s |\n", label, b, b, "n/a", "", ""
	printf "| %-44s | %25s | %25s | %25s | %7s | %7s |\n", rlabel,
		cost ? ratio(M["bare"], m) : ratio(m, M["bare"]),
		cost ? ratio(M["bare"], r) : ratio(r, M["bare"]), "n/a", "", ""
}
# The ceiling of a msgs/s row: the bare server answering every poll at once
# with 64 canned messages (no server work behind them), and each server'"'"'s
# share of it; Engine.IO'"'"'s too, so that the ratio a target asks for can be
# checked against what the machine allows.
function ceiling_rows(k, who,   b, m, r, e) {
	delete M
	b = cell("bare", k)
	if (b == "n/a") return
	m = med("memory", k); r = med("redis", k); e = med("eio", k)
	printf "| %-44s | %25s | %25s | %25s | %7s | %7s |\n", "  ceiling: canned answers, " who, b, b, b,
		ratio(M["bare"], e), ""
	printf "| %-44s | %25s | %25s | %25s | %7s | %7s |\n", "  share of the ceiling", ratio(m, M["bare"]),
		ratio(r, M["bare"]), ratio(e, M["bare"]), "", ""
}
# The latency floor of a percentile: messages crossing the CPUs at the
# same rate with nothing done (bench/floor.c), from the load CPU through
# the server CPU and back for the bridges (2 hops), from the server CPU
# for Engine.IO, which makes its messages itself (1 hop).
function floor_row(q,   a, b) {
	delete M
	a = cell("bare", "floor2." q); b = cell("bare", "floor1." q)
	if (a == "n/a" && b == "n/a") return
	printf "| %-44s | %25s | %25s | %25s | %7s | %7s |\n", "  floor: nothing done (2 hops; EIO 1 hop)",
		a, a, b, "", ""
}
function lrow(label, k,   a, b, c, d) {
	delete M
	a = cell("memory", k); b = cell("redis", k); c = cell("classic", k); d = cell("classicred", k)
	printf "| %-44s | %25s | %25s | %25s | %25s | %9s | %9s |\n", label, a, b, c, d,
		ratio(M["memory"], M["classic"]), ratio(M["redis"], M["classicred"])
}
function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "n/a" : sprintf("%.2fx", a / b) }
function row(label, k, keo,   a, b, c) {
	delete M
	a = cell("memory", k); b = cell("redis", k); c = cell("eio", keo == "" ? k : keo)
	printf "| %-44s | %25s | %25s | %25s | %7s | %7s |\n", label, a, b, c,
		ratio(M["memory"], M["eio"]), ratio(M["redis"], M["eio"])
}
{ n = $1; k = $3; have[n] = 1; cnt[n, k]++; val[n, k, cnt[n, k]] = $4 + 0 }
END {
	split(steps, S, ",")
	printf "| %-44s | %25s | %25s | %25s | %7s | %7s |\n", "", "pollbridge memory", "pollbridge Redis",
		"Engine.IO polling", "mem/EIO", "red/EIO"
	printf "|%s|%s|%s|%s|%s|%s|\n", "----------------------------------------------",
		"--------------------------:", "--------------------------:", "--------------------------:", "--------:", "--------:"
	row("msgs/s delivered, 1 client", "thru1.msgs_per_s")
	ceiling_rows("thru1.msgs_per_s", "1 client")
	row("msgs/s delivered, 100 clients", "thru100.msgs_per_s")
	ceiling_rows("thru100.msgs_per_s", "100 clients")
	row("msgs per server CPU-second, 100 clients", "thru100.msgs_per_cpu_s")
	row("server CPU (cores), 100 clients", "thru100.server_cpu")
	row("upstream CPU (cores), 100 clients", "thru100.upstream_cpu")
	row("load generator CPU (cores), 100 clients", "thru100.load_cpu")
	row("p50 ms, 1,000 msgs/s over 100 clients", "lat.p50_ms")
	floor_row("p50_ms")
	row("p99 ms, same", "lat.p99_ms")
	floor_row("p99_ms")
	row("p99.9 ms, same", "lat.p999_ms")
	floor_row("p999_ms")
	for (i = 1; i in S; i++)
		row("RSS KiB per session, " S[i] " held polls", "held" S[i] ".rss_per_session_kib")
	row("fds per session, " last " held polls", "held" last ".fds_per_session")
	row("server threads, " last " held polls", "held" last ".threads")
	row("empty short polls/s (wrk -c64)", "short.rps", "none")
	bare_rows("short.rps", "bare libmicrohttpd req/s (same wrk)", "short polls / bare libmicrohttpd", 0)
	row("server CPU-us per empty short poll", "short.cpu_us", "none")
	bare_rows("short.cpu_us", "bare libmicrohttpd CPU-us per request",
		  "same, by CPU: bare us / pollbridge us", 1)
	# --lean-long-polls no: what a waiting poll costs when it stays suspended
	# in libmicrohttpd
	if (have["classic"] || have["classicred"]) {
		printf "\n| %-44s | %25s | %25s | %25s | %25s | %9s | %9s |\n", "",
			"memory (default: lean)", "Redis (default: lean)", "memory, lean no",
			"Redis, lean no", "mem y/n", "red y/n"
		printf "|%s|%s|%s|%s|%s|%s|%s|\n", "----------------------------------------------",
			"--------------------------:", "--------------------------:", "--------------------------:",
			"--------------------------:", "----------:", "----------:"
		for (i = 1; i in S; i++)
			lrow("RSS KiB per session, " S[i] " held polls", "held" S[i] ".rss_per_session_kib")
		lrow("fds per session, " last " held polls", "held" last ".fds_per_session")
		lrow("server threads, " last " held polls", "held" last ".threads")
	}
	# Redis Cluster (1 and 3 primaries, no replicas) against one Redis,
	# same pinning: every redis-server on the server CPU with pollbridge
	if (have["cluster1"] || have["cluster3"]) {
		printf "\n| %-44s | %25s | %25s | %25s | %7s |\n", "", "Redis, one server",
			"Redis Cluster, 1 primary", "Redis Cluster, 3 primaries", "3p/1p"
		printf "|%s|%s|%s|%s|%s|\n", "----------------------------------------------",
			"--------------------------:", "--------------------------:", "--------------------------:", "--------:"
		crow("msgs/s delivered, 1 client", "thru1.msgs_per_s")
		crow("msgs/s delivered, 100 clients", "thru100.msgs_per_s")
		crow("server CPU (cores), 100 clients", "thru100.server_cpu")
		crow("redis-server CPU (cores), 100 clients", "thru100.store_cpu")
		crow("redis-server CPU-us per message, 100 cl.", "thru100.store_us_per_msg")
		printf "| %-44s | %25s | %25s | %25s | %7s |\n", "pollbridge CPU-us per message, 100 clients",
			bridge_us("redis"), bridge_us("cluster1"), bridge_us("cluster3"), ""
		crow("p50 ms, 1,000 msgs/s over 100 clients", "lat.p50_ms")
		crow("p99 ms, same", "lat.p99_ms")
	}
	# the Engine.IO door of pollbridge against its own /v1 API (target: 0.8x of
	# the msgs/s of /v1, issue 10), then its SockJS door (xhr-polling);
	# same store, same run
	if (have["door"] || have["doorred"])
		door_table("door", "doorred", "Engine.IO door", "door")
	if (have["sjs"] || have["sjsred"])
		door_table("sjs", "sjsred", "SockJS door", "sjs")
}
function door_table(dm, dr, name, short,   i) {
	printf "\n| %-44s | %25s | %25s | %25s | %25s | %9s | %9s |\n", "", name ", memory",
		"/v1, memory", name ", Redis", "/v1, Redis", short "/v1 m", short "/v1 r"
	printf "|%s|%s|%s|%s|%s|%s|%s|\n", "----------------------------------------------",
		"--------------------------:", "--------------------------:", "--------------------------:",
		"--------------------------:", "----------:", "----------:"
	drow("msgs/s delivered, 1 client", "thru1.msgs_per_s", dm, dr)
	drow("msgs/s delivered, 100 clients", "thru100.msgs_per_s", dm, dr)
	drow("msgs per server CPU-second, 100 clients", "thru100.msgs_per_cpu_s", dm, dr)
	drow("msgs per poll, 100 clients", "thru100.msgs_per_poll", dm, dr)
	drow("server CPU (cores), 100 clients", "thru100.server_cpu", dm, dr)
	drow("upstream CPU (cores), 100 clients", "thru100.upstream_cpu", dm, dr)
	drow("load generator CPU (cores), 100 clients", "thru100.load_cpu", dm, dr)
	drow("p50 ms, 1,000 msgs/s over 100 clients", "lat.p50_ms", dm, dr)
	drow("p99 ms, same", "lat.p99_ms", dm, dr)
	drow("p99.9 ms, same", "lat.p999_ms", dm, dr)
	for (i = 1; i in S; i++)
		drow("RSS KiB per session, " S[i] " held polls", "held" S[i] ".rss_per_session_kib", dm, dr)
	drow("fds per session, " last " held polls", "held" last ".fds_per_session", dm, dr)
}' "$results"