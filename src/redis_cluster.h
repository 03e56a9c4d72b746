/*
 * redis_cluster.h: Redis Cluster support for the Redis client (redis.h):
 * the slot map, routing by key slot, redirections, and sharded pub/sub
 * across primaries. Only redis.c and the unit tests include it.
 *
 * A cluster client (struct pb_rcl) holds one ordinary single-node client
 * (struct pb_redis with opts.cluster_node set) per primary, all on the
 * caller's loop, each with its own handshake, scripts, pipelining,
 * timeouts, reconnection and WAIT groups. The map comes from CLUSTER SLOTS
 * asked of any node that is up (at first the seeds, one at a time); it is
 * refreshed on MOVED, when a node's connection goes down, when the server
 * ends a sharded subscription, and every few seconds.
 *
 * Commands: routed by their key's slot; MOVED updates the slot and resends
 * (at most a few hops), ASK sends ASKING then the command to the named
 * node once, TRYAGAIN, CLUSTERDOWN and a node not up yet wait and retry
 * until the command deadline. A command lost with its connection is not
 * retried (it may have run): it fails with PB_ESTORE, as on one server.
 *
 * Readiness: not ready until every slot has a known primary and every
 * primary's command connection is up; from then on ready while the map is
 * complete and at least one primary is up, so that a primary's failover
 * fails only the commands of its slots (with PB_ESTORE, after waiting up
 * to the command timeout), not those of every session.
 */
#ifndef PB_REDIS_CLUSTER_H
#define PB_REDIS_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "redis.h"

struct redisReply;

#define PB_RCL_MAX_NODES 128    /* primaries a map may name */
#define PB_RCL_NO_NODE 0xFF

/* CRC16-XMODEM (polynomial 0x1021, initial value 0), as Redis Cluster. */
unsigned pb_rcl_crc16(const void *p, size_t len);

/* A slot map as parsed from CLUSTER SLOTS: the primaries, and for each
 * slot the index of its primary or PB_RCL_NO_NODE. */
struct pb_rcl_map {
	struct pb_redis_node nodes[PB_RCL_MAX_NODES];
	size_t nnodes;
	uint8_t slot[PB_REDIS_SLOTS];
};

/* Parse a CLUSTER SLOTS reply into m. A primary announced with an empty
 * or "?" host is taken to be at asked_host (the node that answered).
 * 0, or -1 with a one-line reason in err for a malformed reply (a slot
 * out of range, a bad host or port, too many primaries). */
int pb_rcl_parse_slots(const struct redisReply *rep, const char *asked_host,
		       struct pb_rcl_map *m, char *err, size_t errlen);

/* How many slots of m have no primary. */
size_t pb_rcl_map_missing(const struct pb_rcl_map *m);

/* A MOVED or ASK error: "MOVED <slot> <host>:<port>" (an empty host
 * means asked_host). */
struct pb_rcl_redirect {
	int ask;                /* ASK, else MOVED */
	unsigned slot;
	struct pb_redis_node node;
};

/* Parse the error text [s, s + len). 1 if it is a well-formed MOVED or
 * ASK, 0 if it is neither, -1 if it is one but malformed. */
int pb_rcl_parse_redirect(const char *s, size_t len, const char *asked_host,
			  struct pb_rcl_redirect *out);

/* The cluster client (redis.c's struct pb_redis delegates to it). */
struct pb_rcl;

/* A cluster client on loop for opts (opts->url.nseeds > 0; opts is
 * copied, its scripts borrowed); its user callbacks get opts->arg. NULL
 * on allocation failure. It starts asking the seeds at once. */
struct pb_rcl *pb_rcl_new(uv_loop_t *loop, const struct pb_redis_opts *opts);

/* Fail every pending command (PB_ESTORE) and free the node clients; no
 * user callback runs afterwards. The struct itself stays until
 * pb_rcl_release(). */
void pb_rcl_shutdown(struct pb_rcl *cl);
void pb_rcl_release(struct pb_rcl *cl);

/* Every RD_TICK_MS (redis.c's tick): retries, the map refresh, dropping
 * nodes that are no longer primaries. */
void pb_rcl_tick(struct pb_rcl *cl);

int pb_rcl_ready(const struct pb_rcl *cl);
int pb_rcl_command(struct pb_rcl *cl, int key, pb_redis_cb cb, void *arg, int argc,
		   const char *const *argv, const size_t *argvlen);
int pb_rcl_eval(struct pb_rcl *cl, size_t script, int nkeys, int argc, const char *const *argv,
		const size_t *argvlen, pb_redis_cb cb, void *arg, int durable);
void pb_rcl_set_wait(struct pb_rcl *cl, unsigned replicas, unsigned timeout_ms);
int pb_rcl_subscribe(struct pb_rcl *cl, const char *channel);
void pb_rcl_unsubscribe(struct pb_rcl *cl, const char *channel);

#endif
