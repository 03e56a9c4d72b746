#!/bin/sh
# Install the Debian 12 packages pollbridge needs: "build" for building and
# running it, "test" for the test suite as well (redis-server, websocketd,
# clang, valgrind, openssl for the TLS test's certificates, debhelper and
# lintian for the Debian package's test), "bench" for the peer benchmark
# (bench/peers.sh: the test packages plus wrk and the npm engine.io peer).
# Run as root.
set -e
what=${1:-build}
build_pkgs="build-essential autoconf automake libtool pkg-config curl
  libmicrohttpd-dev libgnutls28-dev libwebsockets-dev libwebsockets-evlib-uv libuv1-dev
  libjansson-dev libhiredis-dev libcurl4-openssl-dev zlib1g-dev"
test_pkgs="redis-server websocketd clang libclang-rt-14-dev valgrind python3 openssl
  prometheus python3-flask-socketio python3-eventlet nginx haproxy
  debhelper lintian"
case "$what" in
build) pkgs=$build_pkgs ;;
test)
	# The browser client's test runs headless Chromium through node
	# (playwright-core from npm); Debian's node only if there is none.
	pkgs="$build_pkgs $test_pkgs chromium"
	command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
	command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
	;;
bench)
	pkgs="$build_pkgs $test_pkgs wrk util-linux"
	command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
	command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
	;;
*) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
if [ "$what" = test ] || [ "$what" = bench ]; then
	# npm ws upstreams for the end-to-end tests (tests/upstreams/node).
	here=$(cd "$(dirname "$0")/.." && pwd)
	(cd "$here/tests/upstreams/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
