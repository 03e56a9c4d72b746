#!/bin/sh
# test_socketio.sh on the Redis store (a private redis-server).
PB_TEST_STORE=redis exec sh "$(dirname "$0")/test_socketio.sh" "$@"
