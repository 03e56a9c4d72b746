#!/bin/sh
# SockJS sessions across instances: two pollbridge instances on one Redis
# behind HAProxy (round-robin, no stickiness), sockjs-client 1.6.1 in node
# (xhr-polling) and in headless Chromium (xhr-streaming, eventsource,
# jsonp-polling), the owner SIGKILLed mid-session (see balancer.js). Prints
# TAP. PB_SOCKJS_LB=nginx puts nginx with contrib/lb/nginx.conf in front
# instead (balancer_nginx.sh). Uses $PB_BIN
# and $PB_UPSTREAMS (set by make check), else the build-plain binary.
# Skips when haproxy, redis-server or the npm packages are missing, unless
# PB_BALANCER_REQUIRED=1. PB_KEEP_TMP=1 keeps the logs.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
PB_BIN=${PB_BIN:-$top/build-plain/src/pollbridge}
PB_UPSTREAMS=${PB_UPSTREAMS:-$top/tests/upstreams}
chromium=${PB_CHROMIUM:-/usr/bin/chromium}
# playwright-core as tests/browser/sockjs.sh installs it (the streaming
# transports run in Chromium: see balancer.js); without it those are skipped.
deps=${PB_BROWSER_DEPS:-$top/tests/browser/node_modules/.deps}
[ -d "$deps" ] || deps=${TMPDIR:-/tmp}/pollbridge-browser-deps
# Wait for an install another browser script is making into that cache.
if [ -d "$deps" ] && command -v flock >/dev/null 2>&1 && exec 9>"$deps/.install.lock"; then
	flock 9
	exec 9>&-
fi

missing() {
	if [ "${PB_BALANCER_REQUIRED:-0}" = 1 ]; then echo "Bail out! $*"; exit 1; fi
	echo "1..0 # SKIP $*"
	exit 0
}
[ -x "$PB_BIN" ] || missing "pollbridge not built ($PB_BIN)"
command -v node >/dev/null 2>&1 || missing "node is not installed"
lb=${PB_SOCKJS_LB:-haproxy}
case $lb in
haproxy) lb_bin=$(command -v haproxy) || missing "haproxy is not installed (apt-get install haproxy)" ;;
nginx) lb_bin=$(command -v nginx || echo /usr/sbin/nginx); [ -x "$lb_bin" ] || missing "nginx is not installed (apt-get install nginx)" ;;
*) echo "Bail out! PB_SOCKJS_LB must be haproxy or nginx"; exit 1 ;;
esac
command -v redis-server >/dev/null 2>&1 || missing "redis-server is not installed"
command -v ss >/dev/null 2>&1 || missing "ss (iproute2) is not installed"
[ -f "$PB_UPSTREAMS/node/node_modules/sockjs-client/package.json" ] ||
	missing "npm sockjs-client not installed in $PB_UPSTREAMS/node (contrib/deps.sh test)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pb-sockjs-lb.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
node_pid=""
cleanup() {
	[ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null
	if [ "${PB_KEEP_TMP:-0}" = 1 ]; then echo "# kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

timeout -k 5 150 node "$here/balancer.js" --pb-bin "$PB_BIN" --upstreams "$PB_UPSTREAMS" --tmp "$tmp" \
	--deps "$deps" --chromium "$chromium" --lb "$lb" --nginx "$lb_bin" &
node_pid=$!
wait $node_pid
rc=$?
node_pid=""
exit $rc
