#!/bin/sh
# Browser test of the Engine.IO door (issue 10): the real socket.io-client
# bundles (npm 4.x and 2.x, dist/socket.io.js) in headless Chromium with
# window.WebSocket deleted, polling through pollbridge to WebSocket-only
# socket.io 4 and 2 chat servers (tests/upstreams/socketio): XHR on the
# page's origin and cross-origin (--cors-origin; v4 with withCredentials),
# and JSONP for v2 (forceJSONP). socketio.js drives Chromium; this script
# starts the servers and the bridge. Prints TAP.
#
# Needs Debian's chromium and playwright-core (installed next to run.sh's,
# in node_modules/.deps, or $PB_BROWSER_DEPS) and the npm packages of
# tests/upstreams/node; skips when they are missing, unless
# PB_SIO_REQUIRED=1 or PB_BROWSER_REQUIRED=1. PB_SIO_DIRECT=1 runs the pages
# straight at the servers (polling allowed there), without the bridge.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
[ "${PB_BROWSER_REQUIRED:-0}" = 1 ] && PB_SIO_REQUIRED=1
. "$top/tests/upstreams/socketio/lib.sh"
chromium=${PB_CHROMIUM:-/usr/bin/chromium}
deps=${PB_BROWSER_DEPS:-$here/node_modules/.deps}
if [ -z "${PB_BROWSER_DEPS:-}" ] && [ ! -d "$deps" ] && [ ! -w "$here" ]; then
	deps=${TMPDIR:-/tmp}/pollbridge-browser-deps
fi

# Also stop any Chromium left on this test's private profile.
browser_cleanup() {
	for d in /proc/[0-9]*; do
		comm=
		{ read -r comm <"$d/comm"; } 2>/dev/null
		case $comm in chrom*) ;; *) continue ;; esac
		cmd=$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null)
		case $cmd in *"--user-data-dir=$tmp/profile"*) kill -9 "${d#/proc/}" 2>/dev/null ;; esac
	done
	sio_cleanup
}
trap browser_cleanup EXIT

need_deps
[ -x "$chromium" ] || missing "no $chromium (apt-get install chromium)"
. "$here/deps.sh"
browser_deps_install
versions

page_port=$(free_port)
origin=http://127.0.0.1:$page_port
if [ "${PB_SIO_DIRECT:-0}" = 1 ]; then
	start_chat s4 server4.js --polling --cors "$origin"; p4=$port
	# socket.io 2 at its own path, so that the page's origin can proxy both.
	start_chat s2 server2.js --polling --path /sio2/; p2=$port
	url4=http://127.0.0.1:$p4; url2=http://127.0.0.1:$p2; path4=/socket.io/; path2=/sio2/
	echo "# PB_SIO_DIRECT=1: straight at the servers, no bridge"
else
	start_chat s4 server4.js; p4=$port
	start_chat s2 server2.js; p2=$port
	store=
	[ "${PB_TEST_STORE:-memory}" = redis ] && { start_redis; store="--store redis://127.0.0.1:$redis_port"; }
	# shellcheck disable=SC2086
	start_bridge bridge $store --cors-origin "$origin" --wait-max 20 --drain-timeout 2 \
		--route "s4=ws://127.0.0.1:$p4/socket.io/?EIO=4&transport=websocket engineio=/socket.io/" \
		--route "s2=ws://127.0.0.1:$p2/socket.io/?EIO=3&transport=websocket engineio=/sio2/"
	url4=http://$bridge_addr; url2=$url4; path4=/socket.io/; path2=/sio2/
	echo "# pollbridge on $bridge_addr"
fi

mkdir "$tmp/profile"
timeout -k 5 110 node "$here/socketio.js" --deps "$deps" --chromium "$chromium" --profile "$tmp/profile" \
	--page-port "$page_port" --url4 "$url4" --path4 "$path4" --url2 "$url2" --path2 "$path2"
rc=$?
if [ -n "${bridge_pid:-}" ]; then
	kill -TERM "$bridge_pid"
	wait "$bridge_pid" || { echo "Bail out! pollbridge exited $? on SIGTERM"; rc=1; }
fi
if [ -f "$tmp/bridge.log" ] && grep -q "AddressSanitizer\|runtime error:\|LeakSanitizer" "$tmp/bridge.log"; then
	echo "Bail out! sanitizer report in the bridge log"
	rc=1
fi
if [ $rc -ne 0 ] && [ -f "$tmp/bridge.log" ]; then
	echo "# bridge log (last lines):"
	show "$tmp/bridge.log" 30
fi
exit $rc
