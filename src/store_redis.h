/*
 * store_redis.h: the shared, durable session store on Redis. Several
 * pollbridge instances on one Redis share every session: any instance
 * answers any request, and the sessions of an instance that drains or dies
 * are adopted by the others. See docs/REDIS.md.
 */
#ifndef PB_STORE_REDIS_H
#define PB_STORE_REDIS_H

#include <stddef.h>
#include <uv.h>

#include "store.h"

/* A Redis store on loop for url (redis://[:PASSWORD@]HOST:PORT[/DB],
 * redis+sentinel://[:PASSWORD@]HOST:PORT,.../MASTER[/DB] or
 * redis+cluster://[:PASSWORD@]HOST:PORT,.../).
 * events and limits are copied (limits->instance is borrowed). It starts
 * connecting at once; until connected it answers PB_ESTORE. NULL on a bad
 * URL or allocation failure, with a one-line reason in err. Destroy with
 * pb_store_destroy(); pending operations then fail with PB_ESTORE. */
struct pb_store *pb_store_redis_new(uv_loop_t *loop, const char *url,
				    const struct pb_store_events *events,
				    const struct pb_store_limits *limits, char *err, size_t errlen);

/* Acknowledge writes that must survive a failover (CREATE, PUSH_IN,
 * PUSH_OUT, CLOSE) only once `replicas` replicas confirmed them (Redis
 * WAIT, at most 1 s; fewer answer PB_ESTORE). 0, the default, waits for
 * none. For --store-wait-replicas; s must be a Redis store. */
void pb_store_redis_wait_replicas(struct pb_store *s, unsigned replicas);

/* The Lua source of the store's script number i, exactly as the store
 * loads it into Redis (the E_* code names and the named arguments, then
 * the body), for tests. Malloc'd: the caller frees it. NULL when i is past
 * the last script (or memory is short). */
char *pb_store_redis_script(size_t i);

/* The key of lease index bucket i on a Redis Cluster (pb:leases:{tag},
 * bucket i's tag hashing into slots [1024 i, 1024 i + 1023]), for tests.
 * NULL when i is past the last bucket. */
const char *pb_store_redis_bucket(size_t i);

#endif
