#!/bin/sh
# tests/package/run.sh: the Debian package, end to end (TAP). Builds it with
# `dpkg-buildpackage -us -uc -b` in a temporary copy of this tree as it is
# (no git; build-*/ and node_modules left out), runs lintian (no E: line),
# installs it with `dpkg -i`, checks what it installed, runs the installed
# `pollbridge --check-config` on the installed config, starts the installed
# binary (as the pollbridge user) on a free port with that config plus a
# route to the installed pollbridge-echo, does create, send and poll with
# curl, stops it, and `dpkg --purge`s the package (and removes the
# pollbridge user when this script created it). Never through systemd.
#
# Needs root and dpkg-buildpackage, debhelper and lintian (sh contrib/deps.sh
# test). Without them it prints "SKIP: why" and exits 77. It refuses to run
# where a pollbridge package is already installed. PB_KEEP_PACKAGE=1 keeps
# the temporary directory (build log, .deb, lintian output).
set -u
cd "$(dirname "$0")/../.."
top=$(pwd)

n=0
failed=0
# ok DESCRIPTION / notok DESCRIPTION: one TAP line.
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
# check DESCRIPTION COMMAND...: ok when the command succeeds.
check() { d=$1; shift; if "$@"; then ok "$d"; else notok "$d"; fi; }
# diag FILE: a file's lines as TAP comments.
diag() { sed 's/^/# /' "$1"; }

for tool in dpkg-buildpackage dh lintian dpkg curl; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool is missing (sh contrib/deps.sh test installs debhelper, devscripts, lintian)"
		exit 77
	fi
done
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: installing the package needs root"
	exit 77
fi
if dpkg-query -W -f='${Status}' pollbridge 2>/dev/null | grep -q 'installed'; then
	echo "1..1"
	echo "not ok 1 - a pollbridge package is already installed here: not touching it"
	echo "0 passed, 1 failed"
	exit 1
fi

work=$(mktemp -d /tmp/pollbridge-package.XXXXXX)
user_existed=no
getent passwd pollbridge >/dev/null && user_existed=yes
installed=no
pids=

# Stop what was started, purge what was installed, remove the copy.
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	if [ "$installed" = yes ]; then
		dpkg --purge pollbridge >/dev/null 2>&1
	fi
	if [ "$user_existed" = no ] && getent passwd pollbridge >/dev/null; then
		deluser --system --quiet pollbridge >/dev/null 2>&1
		getent group pollbridge >/dev/null && delgroup --system --quiet pollbridge >/dev/null 2>&1
	fi
	if [ "${PB_KEEP_PACKAGE:-0}" = 1 ]; then
		echo "# kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# finish: the plan and the summary line, then exit.
finish() {
	echo "1..$n"
	echo "$((n - failed)) passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
}

# ---- build ----------------------------------------------------------------
mkdir -p "$work/src"
tar -C "$top" --exclude='./build-*' --exclude=./.git --exclude=node_modules \
	--exclude='./pollbridge-*' --exclude=./autom4te.cache -cf - . | tar -C "$work/src" -xf -
version=$(cd "$work/src" && dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
deb=$work/pollbridge_${version}_${arch}.deb
changes=$work/pollbridge_${version}_${arch}.changes
start=$(date +%s)
(cd "$work/src" && DEB_BUILD_OPTIONS="parallel=$(nproc 2>/dev/null || echo 2)" \
	dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1
rc=$?
check "dpkg-buildpackage -us -uc -b (exit $rc, $(($(date +%s) - start)) s)" test "$rc" = 0
if ! [ -f "$deb" ]; then
	notok "built $(basename "$deb")"
	tail -n 40 "$work/build.log" | diag /dev/stdin
	finish
fi
ok "built $(basename "$deb")"

# ---- lintian ----------------------------------------------------------------
lintian --tag-display-limit 0 "$changes" >"$work/lintian.out" 2>&1
diag "$work/lintian.out"
check "lintian: no error on the .deb and the .changes" sh -c "! grep -q '^E:' '$work/lintian.out'"

# ---- install ----------------------------------------------------------------
dpkg -i "$deb" >"$work/install.log" 2>&1
rc=$?
installed=yes
if [ "$rc" != 0 ]; then
	notok "dpkg -i (exit $rc)"
	diag "$work/install.log"
	finish
fi
ok "dpkg -i $(basename "$deb")"
conffiles=$(dpkg-query -W -f='${Conffiles}' pollbridge)
check "conffile /etc/pollbridge/pollbridge.conf" sh -c "echo '$conffiles' | grep -q ' /etc/pollbridge/pollbridge.conf '"
check "conffile /etc/logrotate.d/pollbridge" sh -c "echo '$conffiles' | grep -q ' /etc/logrotate.d/pollbridge '"
check "the pollbridge system user exists" sh -c "getent passwd pollbridge >/dev/null"
check "the config is root:pollbridge 0640" \
	test "$(stat -c '%U:%G %a' /etc/pollbridge/pollbridge.conf)" = "root:pollbridge 640"
check "the packaged config has no route" sh -c "! grep -q '^route' /etc/pollbridge/pollbridge.conf"
unit=/lib/systemd/system/pollbridge.service
check "the unit runs /usr/bin/pollbridge --config /etc/pollbridge/pollbridge.conf" \
	grep -qx 'ExecStart=/usr/bin/pollbridge --config /etc/pollbridge/pollbridge.conf' "$unit"
check "the unit is enabled (multi-user.target.wants)" \
	test -L /etc/systemd/system/multi-user.target.wants/pollbridge.service
check "the manual pages" test -f /usr/share/man/man8/pollbridge.8.gz \
	-a -f /usr/share/man/man1/pollbridge-echo.1.gz
if command -v systemd-analyze >/dev/null 2>&1; then
	systemd-analyze verify "$unit" >"$work/verify.out" 2>&1
	rc=$?
	diag "$work/verify.out"
	check "systemd-analyze verify $unit" test "$rc" = 0
fi
out=$(/usr/bin/pollbridge --config /etc/pollbridge/pollbridge.conf --check-config 2>&1)
check "pollbridge --config /etc/pollbridge/pollbridge.conf --check-config: $out" test "$out" = "config ok"

# ---- smoke test of the installed binaries -----------------------------------
# wait_ready LOG: the port of the "listening on ADDR:PORT" line (10 s).
wait_ready() {
	i=0
	while [ $i -lt 100 ]; do
		p=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$1" | head -n 1)
		[ -n "$p" ] && { echo "$p"; return 0; }
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
# As the service's user where setpriv (util-linux) is there: it must be
# able to read its config.
as_user=
who=root
if command -v setpriv >/dev/null 2>&1; then
	as_user="setpriv --reuid=pollbridge --regid=pollbridge --init-groups --"
	who="the pollbridge user"
fi
/usr/bin/pollbridge-echo --listen 127.0.0.1:0 >"$work/echo.log" 2>&1 &
pids="$pids $!"
eport=$(wait_ready "$work/echo.log") || { notok "pollbridge-echo started"; diag "$work/echo.log"; finish; }
ok "the installed pollbridge-echo listens on $eport"
# shellcheck disable=SC2086
$as_user /usr/bin/pollbridge --config /etc/pollbridge/pollbridge.conf --listen 127.0.0.1:0 \
	--route "echo=ws://127.0.0.1:$eport/" >"$work/bridge.log" 2>&1 &
bpid=$!
pids="$pids $bpid"
bport=$(wait_ready "$work/bridge.log") || { notok "pollbridge started"; diag "$work/bridge.log"; finish; }
ok "the installed pollbridge, as $who, listens on $bport"
b=http://127.0.0.1:$bport
id=$(curl -s -m 10 -X POST "$b/v1/sessions?route=echo" | sed -n 's/.*"session":"\([^"]*\)".*/\1/p')
check "create: a session id" test -n "$id"
sent=$(curl -s -m 10 -H 'Content-Type: text/plain' --data 'hello from the package' \
	"$b/v1/sessions/$id/messages")
check "send: $sent" test "$sent" = '{"accepted":1}'
got=$(curl -s -m 15 "$b/v1/sessions/$id/messages?after=0&wait=5")
check "poll: the echo comes back ($got)" sh -c "echo '$got' | grep -q '\"data\":\"hello from the package\"'"
kill -TERM "$bpid"
wait "$bpid"
rc=$?
check "SIGTERM: drained and exited 0" test "$rc" = 0
# With the config alone (no route anywhere): the demo-route warning.
$as_user /usr/bin/pollbridge --config /etc/pollbridge/pollbridge.conf --listen 127.0.0.1:0 \
	>"$work/demo.log" 2>&1 &
dpid=$!
pids="$pids $dpid"
wait_ready "$work/demo.log" >/dev/null
check "no route configured: it warns and serves the demo route" \
	grep -q 'warn no --route configured: serving the demo route' "$work/demo.log"
kill -TERM "$dpid"
wait "$dpid"

# ---- purge ------------------------------------------------------------------
dpkg --purge pollbridge >"$work/purge.log" 2>&1
rc=$?
installed=no
check "dpkg --purge pollbridge (exit $rc)" test "$rc" = 0
check "nothing left: /etc/pollbridge, the unit, the binary" \
	sh -c "! test -e /etc/pollbridge && ! test -e $unit && ! test -e /usr/bin/pollbridge \
		&& ! test -e /etc/systemd/system/multi-user.target.wants/pollbridge.service"
finish
