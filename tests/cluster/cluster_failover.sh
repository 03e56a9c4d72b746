#!/bin/sh
# tests/cluster/cluster_failover.sh: the heavy Redis Cluster cases, outside
# make check (which runs test_cluster's CI subset, kill-wait and
# instances, and the whole e2e suite on a cluster). Each case of
# tests/e2e/test_cluster runs here in a fresh 3-primary, 3-replica cluster
# (with_cluster.sh), with 100 sessions exchanging numbered messages with
# an echo upstream:
#   kill           kill -9 of a primary, no --store-wait-replicas: the
#                  loss window is measured and printed, not judged;
#   kill-wait      the same with --store-wait-replicas 1: no acknowledged
#                  message lost, no client error;
#   failover       CLUSTER FAILOVER on a replica (no loss: a manual
#                  failover waits for the replica to catch up);
#   failover-wait  the same with --store-wait-replicas 1;
#   reshard        redis-cli --cluster reshard of 8192 slots to one
#                  primary under traffic: every echo once and in order,
#                  no 503, no client error;
#   addnode        the same with a new node (--cluster add-node) getting
#                  4096 slots: a primary the bridge did not know;
#   instances      two bridges, clients spread over both, one killed.
# Prints each case's figures (sent, acknowledged, received, lost,
# duplicated, reordered, 503s, client errors, failover time) and time,
# then a summary; exit 1 if any failed.
#   usage: tests/cluster/cluster_failover.sh [BUILD_DIR] (default build-plain)
#   env:   CLUSTER_CASES="kill kill-wait ..." (default: all seven)
#          CLUSTER_E2E="test_create ..." (e2e programs to run on a cluster
#          after the cases; default none: make check runs them all)
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

for c in ${CLUSTER_CASES:-kill kill-wait failover failover-wait reshard addnode instances}; do
	PB_CLUSTER_CASES=$c run "cluster-$c" "$here/with_cluster.sh" "$build/tests/e2e/test_cluster"
done
for t in ${CLUSTER_E2E:-}; do
	t=${t#tests/e2e/}
	run "$t-cluster" "$here/with_cluster.sh" "$build/tests/e2e/$t"
done
echo "cluster_failover.sh: $fails failed"
[ "$fails" -eq 0 ]
