#!/bin/sh
# tests/cluster/wait_latency.sh: what --store-wait-replicas 1 costs. A
# Redis primary with one replica on loopback; pollbridge on it with and
# without the option; for each:
#   send latency   wrk -c1 / -c16 POSTing a text message to one session
#                  (PUSH_OUT, then WAIT): mean latency and requests/s;
#   message latency  bench/loadgen -m lat -c 100 (upstream -> client,
#                  1,000 msgs/s: PUSH_IN, then WAIT): p50/p99;
#   throughput     bench/loadgen -m thru -c 100 (messages/s).
# Needs redis-server, wrk, python3 and a built tree. Not part of make check.
#   usage: tests/cluster/wait_latency.sh [BUILD_DIR] (default build-plain)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$top/build-plain}" && pwd)
out="$build/bench-wait"
mkdir -p "$out"
make -s -C "$top/bench" O="$out" >/dev/null
dur=${WAIT_BENCH_SECS:-5}

pids=""
stop_all() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=""; }
trap stop_all EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { i=0; while ! grep -q "$2" "$1" 2>/dev/null; do i=$((i+1)); [ $i -lt 200 ] || { cat "$1" >&2; exit 1; }; sleep 0.05; done; grep "$2" "$1" | head -1 | sed 's/.*[: ]\([0-9][0-9]*\)[^0-9]*$/\1/'; }

pp=$(free_port); rp=$(free_port)
mkdir -p "$out/p" "$out/r"
redis-server --port "$pp" --bind 127.0.0.1 --save '' --dir "$out/p" >"$out/p.log" 2>&1 & pids="$pids $!"
redis-server --port "$rp" --bind 127.0.0.1 --save '' --dir "$out/r" --replicaof 127.0.0.1 "$pp" >"$out/r.log" 2>&1 & pids="$pids $!"
wait_line "$out/r.log" 'MASTER <-> REPLICA sync: Finished' >/dev/null

cat >"$out/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "hello"
wrk.headers["Content-Type"] = "text/plain"
LUA

for w in 0 1; do
	"$out/upstream" -r 1000 >"$out/up.out" 2>/dev/null & up=$!; pids="$pids $up"
	upp=$(wait_line "$out/up.out" '^listening')
	redis-cli -p "$pp" FLUSHALL >/dev/null
	"$build/src/pollbridge" --listen 127.0.0.1:0 --route "up=ws://127.0.0.1:$upp/" \
		--store "redis://127.0.0.1:$pp" --store-wait-replicas "$w" --log-level warn \
		--queue-max 1000000 --queue-max-bytes 0 >/dev/null 2>"$out/bridge.err" & pb=$!; pids="$pids $pb"
	port=$(wait_line "$out/bridge.err" 'listening on')
	id=$(curl -s -X POST "http://127.0.0.1:$port/v1/sessions?route=up" | sed 's/.*"session":"\([^"]*\)".*/\1/')
	url="http://127.0.0.1:$port/v1/sessions/$id/messages"
	for c in 1 16; do
		wrk -t1 -c$c -d${dur}s -s "$out/post.lua" "$url" >"$out/wrk.txt" 2>&1
		lat=$(awk '/Latency/ { print $2; exit }' "$out/wrk.txt")
		rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out/wrk.txt")
		! grep -q 'Non-2xx' "$out/wrk.txt" || { echo "wrk: errors" >&2; cat "$out/wrk.txt" >&2; exit 1; }
		echo "wait=$w sends c=$c: mean latency $lat, $rps sends/s"
	done
	echo "wait=$w lat: $("$out/loadgen" -p "$port" -k pb -m lat -c 100 -d "$dur" -w 1 -r up 2>&1 | tr '\n' ' ')"
	kill "$pb" "$up"; wait "$pb" "$up" 2>/dev/null || true
	# throughput: a flooding upstream
	"$out/upstream" -r 0 >"$out/up.out" 2>/dev/null & up=$!; pids="$pids $up"
	upp=$(wait_line "$out/up.out" '^listening')
	redis-cli -p "$pp" FLUSHALL >/dev/null
	"$build/src/pollbridge" --listen 127.0.0.1:0 --route "up=ws://127.0.0.1:$upp/" \
		--store "redis://127.0.0.1:$pp" --store-wait-replicas "$w" --log-level warn \
		>/dev/null 2>"$out/bridge.err" & pb=$!; pids="$pids $pb"
	port=$(wait_line "$out/bridge.err" 'listening on')
	echo "wait=$w thru: $("$out/loadgen" -p "$port" -k pb -m thru -c 100 -d "$dur" -w 1 -r up 2>&1 | tr '\n' ' ')"
	kill "$pb" "$up"; wait "$pb" "$up" 2>/dev/null || true
done
