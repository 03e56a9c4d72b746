#!/bin/sh
# test_socketio.sh: unmodified Socket.IO apps through pollbridge's Engine.IO
# door (issue 10), with real third-party code only: socket.io-client 4.x
# and 2.x (npm) with transports: ['polling'] against WebSocket-only chat
# servers behind one pollbridge:
#   /socket.io/ -> tests/upstreams/socketio/server4.js (socket.io 4, EIO 4)
#   /sio2/      -> server2.js (socket.io 2.x, EIO 3)
#   /flask/     -> flask_chat.py (Debian's Flask-SocketIO + eventlet, EIO 4)
# client.js runs the scenarios (rooms, broadcast, acks, binary both ways,
# server disconnect, payload limit, 500 messages each way in order); a v2
# client on the v4-only routes must get an error, not a hang. Prints TAP.
#
# The store is PB_TEST_STORE's (memory, or "redis": a private redis-server);
# tests/e2e/test_socketio_redis.sh runs it on Redis. PB_SIO_DIRECT=1 runs
# the same clients straight at the servers (started with polling allowed)
# without the bridge: that checks the scenarios themselves.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/upstreams/socketio/lib.sh"

LIMIT=100000          # --max-message-bytes of the bridge
need_deps flask
versions
direct=${PB_SIO_DIRECT:-0}
if [ "$direct" = 1 ]; then
	pol="--polling --max-http-buffer $LIMIT"
else
	pol=""
fi

# shellcheck disable=SC2086
spawn_chat s4 server4.js $pol
# shellcheck disable=SC2086
spawn_chat s2 server2.js $pol
# shellcheck disable=SC2086
spawn_chat flask flask_chat.py $pol
chat_port s4; p4=$port
chat_port s2; p2=$port
chat_port flask; pf=$port
echo "# servers: socket.io 4 on $p4, socket.io 2 on $p2, Flask-SocketIO on $pf"

if [ "$direct" = 1 ]; then
	echo "# PB_SIO_DIRECT=1: straight at the servers, no bridge"
	u4=http://127.0.0.1:$p4; u2=http://127.0.0.1:$p2; uf=http://127.0.0.1:$pf
	path4=/socket.io/; path2=/socket.io/; pathf=/socket.io/
	bridge=0
else
	store=
	case ${PB_TEST_STORE:-memory} in
	memory | "") ;;
	redis) start_redis; store="--store redis://127.0.0.1:$redis_port" ;;
	*) store="--store $PB_TEST_STORE" ;;
	esac
	# shellcheck disable=SC2086
	start_bridge bridge $store --max-message-bytes $LIMIT --wait-max 20 --idle-timeout 30 --drain-timeout 2 \
		--route "s4=ws://127.0.0.1:$p4/socket.io/?EIO=4&transport=websocket engineio=/socket.io/" \
		--route "s2=ws://127.0.0.1:$p2/socket.io/?EIO=3&transport=websocket engineio=/sio2/" \
		--route "flask=ws://127.0.0.1:$pf/socket.io/?EIO=4&transport=websocket engineio=/flask/"
	echo "# pollbridge on $bridge_addr (${store:-memory store})"
	u4=http://$bridge_addr; u2=$u4; uf=$u4
	path4=/socket.io/; path2=/sio2/; pathf=/flask/
	bridge=1
fi

# The three servers are independent (and every scenario uses its own rooms
# and tags), so the clients run at once.
t0=$(date +%s)
client_bg v4-socket.io4 --client 4 --url "$u4" --path "$path4" --bridge $bridge --limit $LIMIT
client_bg v4-flask --client 4 --url "$uf" --path "$pathf" --bridge $bridge --limit $LIMIT
client_bg v2-socket.io2 --client 2 --url "$u2" --path "$path2" --bridge $bridge --limit $LIMIT
client_bg v2-on-flask --client 2 --url "$uf" --path "$pathf" --bridge $bridge --scenarios mismatch
client_bg v2-on-socket.io4 --client 2 --url "$u4" --path "$path4" --bridge $bridge --scenarios mismatch
for p in $cpids; do wait "$p"; done
for l in v4-socket.io4 v4-flask v2-socket.io2 v2-on-flask v2-on-socket.io4; do tap_file "$tmp/$l.tap"; done
echo "# clients took $(($(date +%s) - t0)) s"

if [ "$bridge" = 1 ]; then
	kill -0 "$bridge_pid" 2>/dev/null
	check $? "pollbridge is still running"
	kill -TERM "$bridge_pid"
	wait "$bridge_pid"
	check $? "pollbridge exits 0 on SIGTERM (no leak report in sanitizer builds)"
	grep -q "AddressSanitizer\|runtime error:\|LeakSanitizer" "$tmp/bridge.log"
	[ $? -ne 0 ]
	check $? "no sanitizer report in the bridge log"
fi
if [ "$failed" -ne 0 ]; then
	for l in bridge s4 s2 flask; do
		[ -f "$tmp/$l.log" ] && { echo "# --- $l log (last lines):"; show "$tmp/$l.log" 25; }
	done
fi
finish
