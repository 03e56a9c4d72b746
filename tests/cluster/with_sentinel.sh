#!/bin/sh
# tests/cluster/with_sentinel.sh: run a command against a Redis Sentinel
# deployment on loopback: a primary, a replica and three sentinels
# (Debian's redis-server; a sentinel is `redis-server FILE --sentinel`),
# all in a private temp dir and stopped when the command ends. The command
# gets PB_TEST_STORE=redis+sentinel://127.0.0.1:S1,...,127.0.0.1:S3/pbm, so
# an e2e test program run under it puts every bridge on the sentinel
# deployment (make check runs tests/e2e/test_x-sentinel.sentinel scripts
# that do exactly that), and PB_SENTINEL_PRIMARY / PB_SENTINEL_REPLICA /
# PB_SENTINEL_PORTS for its own use. Exits with the command's status.
#   usage: with_sentinel.sh COMMAND [ARG]...
set -u
[ $# -ge 1 ] || { echo "usage: $0 COMMAND [ARG]..." >&2; exit 2; }
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
	{ echo "1..0 # SKIP redis-server or redis-cli missing"; exit 0; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/pb-sentinel.XXXXXX") || exit 99
pids=""
cleanup() {
	for p in $pids; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ -n "${PB_KEEP_TMP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 99' INT TERM

# A loopback port that is free now.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait up to 15 s for `redis-cli -p PORT ARGS...` to print something that
# matches the pattern PAT (grep -E); 0 or 1.
wait_for() {
	port=$1 pat=$2
	shift 2
	i=0
	while [ $i -lt 150 ]; do
		redis-cli -p "$port" "$@" 2>/dev/null | tr -d '\r' | grep -Eq "$pat" && return 0
		sleep 0.1
		i=$((i + 1))
	done
	echo "Bail out! redis on $port: no '$pat' for $*" >&2
	return 1
}

pp=$(free_port)
rp=$(free_port)
mkdir -p "$dir/p" "$dir/r"
redis-server --port "$pp" --bind 127.0.0.1 --save '' --dir "$dir/p" --daemonize no \
	>"$dir/p/log" 2>&1 &
pids="$pids $!"
redis-server --port "$rp" --bind 127.0.0.1 --save '' --dir "$dir/r" --daemonize no \
	--replicaof 127.0.0.1 "$pp" >"$dir/r/log" 2>&1 &
pids="$pids $!"
wait_for "$pp" PONG ping || exit 99
wait_for "$rp" 'master_link_status:up' info replication || exit 99

sps=""
url=""
for i in 1 2 3; do
	sp=$(free_port)
	mkdir -p "$dir/s$i"
	cat >"$dir/s$i/sentinel.conf" <<CONF
port $sp
bind 127.0.0.1
daemonize no
dir $dir/s$i
sentinel monitor pbm 127.0.0.1 $pp 2
sentinel down-after-milliseconds pbm 1000
sentinel failover-timeout pbm 10000
sentinel parallel-syncs pbm 1
CONF
	redis-server "$dir/s$i/sentinel.conf" --sentinel >"$dir/s$i/log" 2>&1 &
	pids="$pids $!"
	sps="$sps $sp"
	url="$url${url:+,}127.0.0.1:$sp"
done
for sp in $sps; do
	wait_for "$sp" "^127.0.0.1$" sentinel get-master-addr-by-name pbm || exit 99
done

PB_TEST_STORE="redis+sentinel://$url/pbm"
PB_SENTINEL_PRIMARY=$pp
PB_SENTINEL_REPLICA=$rp
PB_SENTINEL_PORTS=$(echo $sps)
export PB_TEST_STORE PB_SENTINEL_PRIMARY PB_SENTINEL_REPLICA PB_SENTINEL_PORTS
"$@"
st=$?
exit $st
