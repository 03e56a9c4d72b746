#!/bin/sh
# tests/cluster/failover.sh: the heavy Redis Sentinel cases, outside make
# check (it runs test_sentinel's CI subset and two e2e programs on
# Sentinel). Here:
#   1. tests/e2e/test_sentinel with PB_FAILOVER_FULL=1: SENTINEL FAILOVER
#      and kill -9 of the primary under traffic (20 sessions, 9 s each),
#      without --store-wait-replicas (loss measured and printed) and with it
#      (no acknowledged message lost, no client error: asserted);
#   2. more of the e2e suite on a Sentinel deployment (with_sentinel.sh).
# Prints the TAP of each and a summary; exit 1 if any failed.
#   usage: tests/cluster/failover.sh [BUILD_DIR] (default build-plain)
#   env:   FAILOVER_E2E="test_create test_delivery ..." (the e2e programs)
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

PB_FAILOVER_FULL=1 run test_sentinel-full "$build/tests/e2e/test_sentinel"
for t in ${FAILOVER_E2E:-test_create test_delivery test_close test_limits}; do
	t=${t#tests/e2e/}
	run "$t-sentinel" "$here/with_sentinel.sh" "$build/tests/e2e/$t"
done
echo "failover.sh: $fails failed"
[ "$fails" -eq 0 ]
