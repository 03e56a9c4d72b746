#!/bin/sh
# tests/cluster/with_cluster.sh: run a command against a Redis Cluster on
# loopback: 3 primaries and 3 replicas (Debian's redis-server 7,
# cluster-node-timeout 1000 ms so that a failover takes a few seconds,
# no persistence), all in a private temp dir and stopped when the command
# ends. The command gets
#   PB_TEST_STORE=redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/
# so an e2e test program run under it puts every bridge on the cluster
# (make check runs tests/e2e/test_x-cluster.cluster scripts that do
# exactly that), and for its own use:
#   PB_CLUSTER_PRIMARIES  the ports of the primaries, space-separated
#   PB_CLUSTER_REPLICAS   the ports of their replicas, in the same order
#   PB_CLUSTER_DIR        the temp dir (node N in $PB_CLUSTER_DIR/PORT,
#                         its log in $PB_CLUSTER_DIR/PORT/log)
#   PB_CLUSTER_START      "sh DIR/start.sh": with a port appended, runs
#                         that node (again, after a kill) in the foreground
# CLUSTER_PRIMARIES=N (default 3) and CLUSTER_REPLICAS=0|1 (default 1)
# choose another shape (the benchmark runs 1 and 3 primaries without
# replicas). Exits with the command's status; 99 if the cluster did not
# form. Skips ("1..0 # SKIP") without redis-server and redis-cli.
#   usage: with_cluster.sh COMMAND [ARG]...
set -u
[ $# -ge 1 ] || { echo "usage: $0 COMMAND [ARG]..." >&2; exit 2; }
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
	{ echo "1..0 # SKIP redis-server or redis-cli missing"; exit 0; }

nprim=${CLUSTER_PRIMARIES:-3}
nrep=${CLUSTER_REPLICAS:-1}
dir=$(mktemp -d "${TMPDIR:-/tmp}/pb-cluster.XXXXXX") || exit 99
cleanup() {
	# a signal now (the caller stopping us twice) must not cut this short
	trap '' HUP INT PIPE TERM
	# the nodes started here and those the command restarted (start.sh)
	for p in $(cat "$dir/pids" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	# those the command started may not be our children: wait (1 s at
	# most) until each is gone or a zombie
	for p in $(cat "$dir/pids" 2>/dev/null); do
		i=0
		while [ $i -lt 20 ] && ps -o stat= -p "$p" 2>/dev/null | grep -qv Z; do
			sleep 0.05
			i=$((i + 1))
		done
	done
	[ -n "${PB_KEEP_TMP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 99' HUP INT PIPE TERM

# Free loopback ports, n of them, distinct.
free_ports() {
	python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

fail() {
	echo "Bail out! with_cluster.sh: $*"
	for d in "$dir"/*/log; do
		[ -f "$d" ] && { echo "# --- $d"; tail -n 5 "$d" | sed 's/^/# /'; }
	done
	exit 99
}

# `sh $dir/start.sh PORT` runs the node of PORT in the foreground (again,
# after a kill: same dir, same nodes.conf, so it rejoins as what the
# cluster made of it), logging to $dir/PORT/log; its pid goes to
# $dir/pids, whose processes are killed at the end. The tests use it too,
# in the background, so that the node is their child and they reap it.
# Its cluster bus port is another free port, in $dir/PORT/cport (the
# default, PORT + 10000, may be taken or beyond 65535). Replicas always
# may fail over (validity factor 0), a primary that lost its slots to a
# resharding keeps its replica (no migration), and a replica's first
# sync starts at once (diskless, no delay).
cat >"$dir/start.sh" <<EOF
#!/bin/sh
mkdir -p "$dir/\$1"
echo \$\$ >>"$dir/pids"
exec redis-server --port "\$1" --bind 127.0.0.1 --save '' --appendonly no \\
	--dir "$dir/\$1" --daemonize no \\
	--cluster-enabled yes --cluster-config-file nodes.conf \\
	--cluster-port "\$(cat "$dir/\$1/cport")" \\
	--cluster-node-timeout 1000 --cluster-replica-validity-factor 0 \\
	--cluster-allow-replica-migration no --repl-diskless-sync-delay 0 \\
	>>"$dir/\$1/log" 2>&1 </dev/null
EOF

# 0 once every port answers PING (5 s at most).
wait_ping() {
	for p in "$@"; do
		i=0
		until [ "$(redis-cli -p "$p" ping 2>/dev/null)" = PONG ]; do
			i=$((i + 1))
			[ $i -lt 100 ] || return 1
			sleep 0.05
		done
	done
}

n=$((nprim * (1 + nrep)))
all=$(free_ports $((2 * n)))
ports=""
prims=""
reps=""
i=1
while [ $i -le "$n" ]; do
	p=$(echo $all | cut -d' ' -f$i)
	ports="$ports $p"
	if [ $i -le "$nprim" ]; then prims="$prims $p"; else reps="$reps $p"; fi
	mkdir -p "$dir/$p"
	echo $all | cut -d' ' -f$((i + n)) >"$dir/$p/cport"
	i=$((i + 1))
done
prims=$(echo $prims)
reps=$(echo $reps)
for p in $ports; do sh "$dir/start.sh" "$p" & done
wait_ping $ports || fail "a node did not answer PING"

if [ "$nprim" -ge 3 ]; then
	# redis-cli --cluster create (it needs 3 primaries at least): the
	# first nprim nodes become the primaries.
	hosts=""
	for p in $prims $reps; do hosts="$hosts 127.0.0.1:$p"; done
	redis-cli --cluster create $hosts --cluster-replicas "$nrep" --cluster-yes \
		>"$dir/create.log" 2>&1 || fail "redis-cli --cluster create: $(tail -n 3 "$dir/create.log")"
else
	# 1 or 2 primaries: by hand (create refuses fewer than 3), the slots
	# split evenly, every node introduced to the first.
	k=0
	first=""
	for p in $prims; do
		lo=$((16384 * k / nprim))
		hi=$((16384 * (k + 1) / nprim - 1))
		redis-cli -p "$p" cluster addslotsrange "$lo" "$hi" >/dev/null || fail "addslotsrange"
		first=${first:-$p}
		k=$((k + 1))
	done
	for p in $ports; do
		[ "$p" = "$first" ] ||
			redis-cli -p "$p" cluster meet 127.0.0.1 "$first" "$(cat "$dir/$first/cport")" >/dev/null
	done
fi

# Wait (20 s at most) until every node says cluster_state:ok and the
# slots are all assigned, each replica follows a primary in sync, and
# every node knows every other one.
deadline=$(( $(date +%s) + 20 ))
ready() {
	for p in $ports; do
		info=$(redis-cli -p "$p" cluster info 2>/dev/null | tr -d '\r')
		echo "$info" | grep -q '^cluster_state:ok$' || return 1
		echo "$info" | grep -q '^cluster_slots_ok:16384$' || return 1
		echo "$info" | grep -q "^cluster_known_nodes:$n\$" || return 1
	done
	for r in $reps; do
		redis-cli -p "$r" info replication 2>/dev/null | tr -d '\r' |
			grep -q '^master_link_status:up$' || return 1
	done
}
if [ "$nprim" -lt 3 ] && [ -n "$reps" ]; then
	# a hand-made cluster's replicas: replica k of primary k, once it
	# knows that primary
	k=1
	for r in $reps; do
		id=$(redis-cli -p "$(echo $prims | cut -d' ' -f$k)" cluster myid | tr -d '\r')
		until redis-cli -p "$r" cluster replicate "$id" 2>/dev/null | grep -q OK; do
			[ "$(date +%s)" -lt "$deadline" ] || fail "replica $r cannot replicate $id"
			sleep 0.1
		done
		k=$((k % nprim + 1))
	done
fi
until ready; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "the cluster did not reach cluster_state:ok with every slot, node and replica"
	sleep 0.1
done
# PB_CLUSTER_REPLICAS in the order of the primaries they replicate
# (redis-cli pairs them its own way).
if [ -n "$reps" ]; then
	sorted=""
	for pp in $prims; do
		for r in $reps; do
			[ "$(redis-cli -p "$r" info replication | tr -d '\r' | sed -n 's/^master_port://p')" = "$pp" ] &&
				sorted="$sorted $r"
		done
	done
	reps=$(echo $sorted)
fi

url=""
for p in $prims; do url="$url${url:+,}127.0.0.1:$p"; done
PB_TEST_STORE="redis+cluster://$url/"
PB_CLUSTER_PRIMARIES=$prims
PB_CLUSTER_REPLICAS=$reps
PB_CLUSTER_DIR=$dir
PB_CLUSTER_START="sh $dir/start.sh"
export PB_TEST_STORE PB_CLUSTER_PRIMARIES PB_CLUSTER_REPLICAS PB_CLUSTER_DIR PB_CLUSTER_START
"$@"
st=$?
exit $st
