#!/bin/sh
# Browser test of contrib/js/pollbridge.js: headless Chromium (driven by
# playwright-core) with window.WebSocket deleted, talking to a real
# pollbridge and the bundled echo upstream through tests/browser/server.js
# (which serves the page and proxies /v1/* on one origin, losing a few
# answers on purpose). Prints TAP; exits non-zero on failure.
#
# Installs what it needs when missing: Debian's chromium (as root, with
# apt-get) and playwright-core + acorn (npm, into node_modules/.deps next to
# this script, or $PB_BROWSER_DEPS). When they cannot be installed the test
# is skipped, unless PB_BROWSER_REQUIRED=1. Uses $PB_BIN and $PB_ECHO_BIN
# (set by make check), else the build-plain binaries. PB_KEEP_TMP=1 keeps
# the temp directory (bridge, echo and npm logs).
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
PB_BIN=${PB_BIN:-$top/build-plain/src/pollbridge}
PB_ECHO_BIN=${PB_ECHO_BIN:-$top/build-plain/src/pollbridge-echo}
chromium=${PB_CHROMIUM:-/usr/bin/chromium}
deps=${PB_BROWSER_DEPS:-$here/node_modules/.deps}
# A read-only source tree (make distcheck): keep the npm cache in $TMPDIR.
if [ -z "${PB_BROWSER_DEPS:-}" ] && [ ! -d "$deps" ] && [ ! -w "$here" ]; then
	deps=${TMPDIR:-/tmp}/pollbridge-browser-deps
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pb-browser.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
pids=""

# Stop what this script started: the bridge, the echo upstream, the bridge
# test.js started (its pid is in $tmp/pids) and any Chromium still running on
# this test's private profile.
cleanup() {
	[ -f "$tmp/pids" ] && pids="$pids $(cat "$tmp/pids")"
	for p in $pids; do kill "$p" 2>/dev/null; done
	for d in /proc/[0-9]*; do
		comm=
		{ read -r comm <"$d/comm"; } 2>/dev/null
		case $comm in chrom*) ;; *) continue ;; esac
		cmd=$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null)
		case $cmd in *"--user-data-dir=$tmp/profile"*) kill -9 "${d#/proc/}" 2>/dev/null ;; esac
	done
	for p in $pids; do wait "$p" 2>/dev/null; done
	if [ "${PB_KEEP_TMP:-0}" = 1 ]; then echo "# kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

missing() {
	if [ "${PB_BROWSER_REQUIRED:-0}" = 1 ]; then echo "Bail out! $*"; exit 1; fi
	echo "1..0 # SKIP $*"
	exit 0
}

# Show the tail of a log as TAP comments.
show() { [ -f "$1" ] && tail -n "${2:-20}" "$1" | sed 's/^/# /'; }

# ---- dependencies ----------------------------------------------------------
[ -x "$PB_BIN" ] && [ -x "$PB_ECHO_BIN" ] || missing "pollbridge binaries not built ($PB_BIN)"
command -v node >/dev/null 2>&1 || missing "node is not installed"
if [ ! -x "$chromium" ]; then
	if [ "$chromium" = /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >"$tmp/apt.log" 2>&1 ||
			{ apt-get update >>"$tmp/apt.log" 2>&1 &&
			  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >>"$tmp/apt.log" 2>&1; }
	fi
	[ -x "$chromium" ] || { show "$tmp/apt.log" 5; missing "no $chromium (apt-get install chromium, as root)"; }
fi
. "$here/deps.sh"
browser_deps_install

# ---- the echo upstream and the bridge, on free loopback ports --------------
# Wait for "listening on ADDR:PORT" in a stderr log; print ADDR:PORT.
ready() {
	i=0
	while [ $i -lt 100 ]; do
		a=$(sed -n 's/^.*listening on \([0-9.]*:[0-9]*\).*$/\1/p' "$1" | head -n 1)
		[ -n "$a" ] && { echo "$a"; return 0; }
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

: >"$tmp/echo.log"; : >"$tmp/bridge.log"
"$PB_ECHO_BIN" --listen 127.0.0.1:0 --record "$tmp/echo.rec" 2>"$tmp/echo.log" &
pids="$pids $!"
echo_addr=$(ready "$tmp/echo.log") || { show "$tmp/echo.log"; echo "Bail out! pollbridge-echo did not start"; exit 1; }

"$PB_BIN" --listen 127.0.0.1:0 --route "echo=ws://$echo_addr/" --wait-max 30 --idle-timeout 30 \
	--log-level info 2>"$tmp/bridge.log" &
pids="$pids $!"
bridge_addr=$(ready "$tmp/bridge.log") || { show "$tmp/bridge.log"; echo "Bail out! pollbridge did not start"; exit 1; }
echo "# pollbridge on $bridge_addr, pollbridge-echo on $echo_addr"

# ---- the test --------------------------------------------------------------
mkdir "$tmp/profile"
timeout -k 5 115 node "$here/test.js" --bridge "http://$bridge_addr" --deps "$deps" \
	--chromium "$chromium" --profile "$tmp/profile" --record "$tmp/echo.rec" \
	--pb-bin "$PB_BIN" --echo "$echo_addr" --pids "$tmp/pids"
rc=$?
if [ $rc -ne 0 ]; then
	echo "# bridge log (last lines):"
	show "$tmp/bridge.log" 30
fi
exit $rc
