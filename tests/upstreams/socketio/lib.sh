# lib.sh: shell helpers of the Socket.IO tests (tests/e2e/test_socketio.sh,
# tests/e2e/test_socketio_balancer.sh, tests/browser/socketio.sh), sourced
# after they set $top (the source tree). Owns: finding the third-party
# pieces (node, the npm packages, Debian's Python with Flask-SocketIO and
# eventlet, redis-server), a private temp dir with cleanup of every process
# started through it, starting the chat servers, pollbridge and redis-server
# on free loopback ports, and TAP numbering of the checks.
#
# Environment: PB_BIN (pollbridge; default build-plain's), PB_NODE_MODULES
# (default tests/upstreams/node/node_modules), PB_PYTHON (default
# /usr/bin/python3, Debian's, where python3-flask-socketio lives),
# PB_SIO_REQUIRED=1 (a missing dependency fails instead of skipping),
# PB_KEEP_TMP=1 (keep the temp dir with every log).

sio=$top/tests/upstreams/socketio
PB_BIN=${PB_BIN:-$top/build-plain/src/pollbridge}
nm=${PB_NODE_MODULES:-$top/tests/upstreams/node/node_modules}
python=${PB_PYTHON:-/usr/bin/python3}
export PB_NODE_MODULES="$nm"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pb-sio.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
pids=""
count=0
failed=0

# Stop every process started here (by pid) and remove the temp dir.
sio_cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	for p in $pids; do wait "$p" 2>/dev/null; done
	if [ "${PB_KEEP_TMP:-0}" = 1 ]; then echo "# kept $tmp"; else rm -rf "$tmp"; fi
}
trap sio_cleanup EXIT
trap 'exit 1' INT TERM HUP

# Skip the whole test (or bail out when PB_SIO_REQUIRED=1).
missing() {
	if [ "${PB_SIO_REQUIRED:-0}" = 1 ]; then echo "Bail out! $*"; exit 1; fi
	echo "1..0 # SKIP $*"
	exit 0
}

# The tail of a log as TAP comments.
show() { [ -f "$1" ] && tail -n "${2:-20}" "$1" | sed 's/^/# /'; }

# One TAP check: check CONDITION-EXIT-STATUS DESCRIPTION.
check() {
	count=$((count + 1))
	if [ "$1" -eq 0 ]; then echo "ok $count - $2"; else echo "not ok $count - $2"; failed=$((failed + 1)); fi
}

# Print the unnumbered "ok - " / "not ok - " lines of file $1 numbered on
# from $count (comments as they are), and advance $count and $failed (a
# "not ok ... # TODO" is an expected failure, not counted).
tap_file() {
	awk -v n="$count" -v nf="$tmp/tap.n" '
		/^ok - / { n++; sub(/^ok - /, "ok " n " - "); print; next }
		/^not ok - / { n++; if ($0 !~ /# TODO/) f++; sub(/^not ok - /, "not ok " n " - "); print; next }
		/^# / { print; next }
		{ print "# " $0 }
		END { print n, f + 0 > nf }' "$1"
	read -r count f <"$tmp/tap.n"
	failed=$((failed + f))
}

# The plan, at the end; the exit status says whether everything passed.
finish() {
	echo "1..$count"
	[ "$failed" -eq 0 ]
	exit $?
}

# A loopback TCP port that was free a moment ago.
free_port() {
	node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();})'
}

# Wait until a line of log $1 matches sed regex $2 (with one \(group\)),
# 10 s at most; print the group.
wait_line() {
	i=0
	while [ $i -lt 100 ]; do
		v=$(sed -n "s/$2/\\1/p" "$1" 2>/dev/null | head -n 1)
		[ -n "$v" ] && { echo "$v"; return 0; }
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# Check for the third-party pieces; skip when one is missing. $1: "flask"
# when Flask-SocketIO is needed too.
need_deps() {
	[ "${PB_SIO_DIRECT:-0}" = 1 ] || [ -x "$PB_BIN" ] || missing "pollbridge not built ($PB_BIN)"
	command -v node >/dev/null 2>&1 || missing "node is not installed"
	for p in socket.io socket.io-v2 socket.io-client socket.io-client-v2; do
		[ -f "$nm/$p/package.json" ] || missing "npm package $p missing in $nm (contrib/deps.sh test)"
	done
	if [ "${1:-}" = flask ]; then
		"$python" -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec("flask_socketio") and u.find_spec("eventlet")))' >/dev/null 2>&1 ||
			missing "$python lacks flask_socketio or eventlet (python3-flask-socketio, python3-eventlet)"
	fi
}

# Versions of what is tested, as TAP comments.
versions() {
	echo "# npm: $(node -e 'const v=[];for(const p of process.argv.slice(1)){try{v.push(p+"@"+require(process.env.PB_NODE_MODULES+"/"+p+"/package.json").version)}catch(e){v.push(p+"@missing")}}console.log(v.join(" ")+"; node "+process.version)' \
		socket.io socket.io-v2 socket.io-client socket.io-client-v2 engine.io)"
	if command -v dpkg-query >/dev/null 2>&1; then
		echo "# debian: $(dpkg-query -W -f '${Package}=${Version} ' python3-flask-socketio python3-socketio \
			python3-engineio python3-eventlet redis-server nginx haproxy chromium 2>/dev/null)"
	fi
}

# Start a chat server: spawn_chat NAME server4.js|server2.js|flask_chat.py
# [ARGS...] (its log is $tmp/NAME.log); chat_port NAME then waits for it
# and sets $port. start_chat does both.
spawn_chat() {
	name=$1
	script=$2
	shift 2
	case $script in
	*.py) "$python" "$sio/$script" "$@" >"$tmp/$name.log" 2>&1 & ;;
	*) node "$sio/$script" "$@" >"$tmp/$name.log" 2>&1 & ;;
	esac
	pids="$pids $!"
}
chat_port() {
	port=$(wait_line "$tmp/$1.log" '^port \([0-9]*\)$') ||
		{ show "$tmp/$1.log"; echo "Bail out! chat server $1 did not start"; exit 1; }
}
start_chat() {
	spawn_chat "$@"
	chat_port "$1"
}

# Start a private redis-server; sets $redis_port.
start_redis() {
	command -v redis-server >/dev/null 2>&1 || missing "redis-server is not installed"
	redis_port=$(free_port)
	redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
		--daemonize no >"$tmp/redis.log" 2>&1 &
	pids="$pids $!"
	wait_line "$tmp/redis.log" '.*\(Ready to accept connections\).*' >/dev/null ||
		{ show "$tmp/redis.log"; echo "Bail out! redis-server did not start"; exit 1; }
}

# Start pollbridge with NAME and the remaining arguments, on 127.0.0.1:0;
# sets $bridge_addr and $bridge_pid. The log is $tmp/NAME.log.
start_bridge() {
	name=$1
	shift
	"$PB_BIN" --listen 127.0.0.1:0 --log-level info "$@" 2>"$tmp/$name.log" &
	bridge_pid=$!
	pids="$pids $bridge_pid"
	bridge_addr=$(wait_line "$tmp/$name.log" '^.*listening on \([0-9.]*:[0-9]*\).*$') ||
		{ show "$tmp/$name.log"; echo "Bail out! pollbridge did not start"; exit 1; }
}

# Run client.js with a label and arguments into $tmp/LABEL.tap, in the
# background; its pid is added to $cpids (wait for them, then tap_file).
cpids=
client_bg() {
	label=$1
	shift
	timeout -k 5 100 node "$sio/client.js" --label "$label" "$@" >"$tmp/$label.tap" 2>&1 &
	pids="$pids $!"
	cpids="$cpids $!"
}
