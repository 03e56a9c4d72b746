#!/bin/sh
# Quick start: install the build dependencies, build pollbridge, start the
# bundled demo echo upstream and run pollbridge in the foreground on its
# defaults (127.0.0.1:8080, memory store, route "echo" -> the demo upstream).
set -e
cd "$(dirname "$0")/.."
sh contrib/deps.sh build
[ -x configure ] || ./autogen.sh >/dev/null
[ -f Makefile ] || ./configure -q
make -s -j"$(nproc)" src/pollbridge src/pollbridge-echo
./src/pollbridge-echo &
echo_pid=$!
trap 'kill $echo_pid 2>/dev/null' EXIT INT TERM
cat <<'TRY'

pollbridge is starting on http://127.0.0.1:8080 (Ctrl-C to stop). In another shell:

  id=$(curl -s -X POST 'http://127.0.0.1:8080/v1/sessions?route=echo' | sed 's/.*"session":"\([^"]*\)".*/\1/')
  curl -s -H 'Content-Type: text/plain' --data 'hello' http://127.0.0.1:8080/v1/sessions/$id/messages
  curl -s "http://127.0.0.1:8080/v1/sessions/$id/messages?after=0&wait=10"
  curl -s -X DELETE http://127.0.0.1:8080/v1/sessions/$id

TRY
./src/pollbridge
