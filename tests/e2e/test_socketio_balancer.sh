#!/bin/sh
# test_socketio_balancer.sh: no sticky sessions for Socket.IO (issue 10).
# Two pollbridge instances share a private redis-server and sit behind a
# round-robin balancer without stickiness (Debian's nginx running the
# shipped contrib/lb/nginx.conf, or HAProxy with PB_SIO_BALANCER=haproxy and
# a generated config), started on loopback. A
# real socket.io-client 4 chat (transports: ['polling']) runs through the
# balancer to a WebSocket-only socket.io 4 server, and its requests land on
# both instances; then the instance that owns the session (the owner field
# in Redis) is SIGKILLed: the client must reconnect by itself (a new
# session; the survivor closes the old one) and the chat go on. The same
# runs for socket.io-client 2 and a socket.io 2 server. Prints TAP; skips
# when a piece is missing (PB_SIO_REQUIRED=1: fail instead).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/upstreams/socketio/lib.sh"

need_deps none
command -v redis-cli >/dev/null 2>&1 || missing "redis-cli is not installed"
balancer=${PB_SIO_BALANCER:-nginx}
case $balancer in
nginx) nginx=$(command -v nginx || echo /usr/sbin/nginx); [ -x "$nginx" ] || missing "nginx is not installed" ;;
haproxy) haproxy=$(command -v haproxy || echo /usr/sbin/haproxy); [ -x "$haproxy" ] || missing "haproxy is not installed" ;;
*) missing "PB_SIO_BALANCER must be nginx or haproxy" ;;
esac
versions

start_redis
start_chat s4 server4.js; p4=$port
start_chat s2 server2.js; p2=$port

# Start instance ID; sets $bridge_addr and $bridge_pid.
instance() {
	start_bridge "$1" --store "redis://127.0.0.1:$redis_port" --instance-id "$1" \
		--wait-max 10 --idle-timeout 30 --drain-timeout 2 \
		--route "s4=ws://127.0.0.1:$p4/socket.io/?EIO=4&transport=websocket engineio=/socket.io/" \
		--route "s2=ws://127.0.0.1:$p2/socket.io/?EIO=3&transport=websocket engineio=/sio2/"
}

# One round: start two fresh instances and the balancer, run client.js
# failover with client version $1 on door path $2.
round() {
	v=$1
	dpath=$2
	instance "pbA$v"
	a=$bridge_addr
	pa=$bridge_pid
	instance "pbB$v"
	b=$bridge_addr
	pb=$bridge_pid
	lb_port=$(free_port)
	log=$tmp/lb$v.access
	if [ "$balancer" = nginx ]; then
		mkdir -p "$tmp/nginx$v"
		# contrib/lb/nginx.conf as shipped, only its addresses replaced:
		# the Engine.IO door needs nothing of its own there (polls are
		# GETs, sends POSTs).
		sh "$top/tests/upstreams/nginx_conf.sh" "$lb_port" "$a" "$b" "$tmp/nginx$v" \
			"$log" "$tmp/nginx$v/error.log" >"$tmp/nginx$v.conf" 2>"$tmp/nginx$v.log"
		check $? "contrib/lb/nginx.conf still has the listen and server lines this test replaces (v$v)" ||
			show "$tmp/nginx$v.log"
		"$nginx" -p "$tmp/nginx$v" -c "$tmp/nginx$v.conf" >"$tmp/nginx$v.log" 2>&1 &
	else
		cat >"$tmp/haproxy$v.cfg" <<EOF
global
	maxconn 512
defaults
	mode http
	timeout connect 2s
	timeout client 60s
	timeout server 60s
	retries 3
	option redispatch 1
	log stdout format raw local0
	option httplog
frontend fe
	bind 127.0.0.1:$lb_port
	default_backend bridges
	log-format "%si:%sp \"%r\" %ST"
backend bridges
	balance roundrobin
	server a $a
	server b $b
EOF
		"$haproxy" -db -f "$tmp/haproxy$v.cfg" >"$log" 2>&1 &
	fi
	lb_pid=$!
	pids="$pids $lb_pid"
	i=0
	while [ $i -lt 50 ] && ! node -e 'const s=require("net").connect(+process.argv[1],"127.0.0.1",()=>process.exit(0));s.on("error",()=>process.exit(1))' "$lb_port"; do
		sleep 0.1; i=$((i + 1))
	done
	kill -0 "$lb_pid" 2>/dev/null
	check $? "$balancer (round robin, no stickiness) in front of two instances on Redis (v$v client)" ||
		show "$tmp/nginx$v.log"
	echo "# $balancer on 127.0.0.1:$lb_port -> pbA$v $a, pbB$v $b"
	client_bg failover-v$v --client "$v" --url "http://127.0.0.1:$lb_port" --path "$dpath" \
		--scenarios failover --redis-port "$redis_port" --kill "pbA$v=$pa,pbB$v=$pb"
	wait "$!"
	tap_file "$tmp/failover-v$v.tap"
	# The first session's requests went to both instances (the balancer log
	# names the instance that answered each request).
	sid=$(sed -n 's/^# failover-v[0-9]: SIGKILL .* owner of \(.*\)$/\1/p' "$tmp/failover-v$v.tap")
	n=0
	if [ -n "$sid" ] && [ -f "$log" ]; then
		n=$(grep -F "sid=$sid" "$log" | grep -o -e "$a" -e "$b" | sort -u | wc -l)
	fi
	[ "$n" -eq 2 ]
	check $? "requests of one session landed on both instances (v$v)"
	survivor=$pb
	kill -0 "$pa" 2>/dev/null && survivor=$pa
	kill -0 "$survivor" 2>/dev/null
	check $? "the other instance is still running (v$v)"
	kill -TERM "$survivor"
	wait "$survivor"
	check $? "and exits 0 on SIGTERM (v$v)"
	kill "$lb_pid" 2>/dev/null
}

round 4 /socket.io/
round 2 /sio2/
cat "$tmp"/pbA*.log "$tmp"/pbB*.log | grep -q "AddressSanitizer\|runtime error:\|LeakSanitizer"
[ $? -ne 0 ]
check $? "no sanitizer report in the bridge logs"
if [ "$failed" -ne 0 ]; then
	for l in pbA4 pbB4 pbA2 pbB2 s4 s2; do
		[ -f "$tmp/$l.log" ] && { echo "# --- $l log (last lines):"; show "$tmp/$l.log" 15; }
	done
fi
finish
