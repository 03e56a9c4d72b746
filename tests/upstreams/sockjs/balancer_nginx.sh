#!/bin/sh
# balancer.sh through nginx running the shipped contrib/lb/nginx.conf (its
# addresses replaced, nothing else): sockjs-client's xhr-polling in node and
# xhr-streaming in Chromium, the owner SIGKILLed. These are the two paths
# that config treats specially (a receiving POST re-sent to the surviving
# bridge; a stream passed on unbuffered). Prints TAP; skips as balancer.sh.
here=$(cd "$(dirname "$0")" && pwd)
PB_SOCKJS_LB=nginx PB_SOCKJS_LB_CHROMIUM=${PB_SOCKJS_LB_CHROMIUM-xhr-streaming} exec sh "$here/balancer.sh" "$@"
