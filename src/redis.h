/*
 * redis.h: an asynchronous Redis client on the daemon's libuv loop
 * (hiredis 0.14 and its libuv adapter), adding what hiredis lacks: connect
 * and command timeouts, reconnection with backoff, Lua scripts run by SHA
 * (loaded on connect, reloaded on NOSCRIPT), and a subscriber connection
 * whose channels survive reconnects.
 *
 * One pb_redis owns two connections: one for commands, one for pub/sub.
 * With a redis+sentinel:// URL it owns a third, to one sentinel at a time:
 * it asks for the primary's address (SENTINEL get-master-addr-by-name),
 * stays subscribed to +switch-master, and points the two data connections
 * at the primary (each checks ROLE is master before it comes up).
 * With a redis+cluster:// URL it owns no connection itself: redis_cluster.c
 * keeps the slot map and one such client per primary (see redis_cluster.h),
 * and every command goes to the primary owning its routing key's slot.
 * Together with store_redis.c this is the only code that includes hiredis.
 *
 * Callback contract (as hiredis): a command that was accepted (return 0)
 * calls its callback exactly once: with the reply, or with reply NULL and
 * err PB_ESTORE when the connection failed, timed out or was freed. The
 * reply is borrowed for the duration of the callback. A command that was
 * refused (non-zero return) never calls back.
 */
#ifndef PB_REDIS_H
#define PB_REDIS_H

#include <stddef.h>
#include <uv.h>

struct redisReply;
struct pb_redis;

#define PB_REDIS_MAX_SENTINELS 16
#define PB_REDIS_MAX_SEEDS 16
#define PB_REDIS_SLOTS 16384    /* Redis Cluster hash slots */

/* One host and port. */
struct pb_redis_node {
	char host[256];
	int port;
};

/* A parsed redis://[:PASSWORD@]HOST:PORT[/DB],
 * redis+sentinel://[:PASSWORD@]HOST:PORT,HOST:PORT,.../MASTER[/DB] or
 * redis+cluster://[:PASSWORD@]HOST:PORT,HOST:PORT,.../ URL. */
struct pb_redis_url {
	char host[256];         /* redis://: the server */
	int port;               /* default 6379 */
	char password[256];     /* "" for none (of the data nodes, not sentinels) */
	int db;                 /* default 0 */
	/* redis+sentinel:// only (nsentinels 0 otherwise): the sentinels
	 * (port default 26379) and the name of the monitored primary */
	struct pb_redis_node sentinels[PB_REDIS_MAX_SENTINELS];
	size_t nsentinels;
	char master[128];
	/* redis+cluster:// only (nseeds 0 otherwise): the seed nodes (port
	 * default 6379); db is always 0 */
	struct pb_redis_node seeds[PB_REDIS_MAX_SEEDS];
	size_t nseeds;
};

/* Parse url (any form). 0, or PB_EBADREQ with a one-line reason in err. */
int pb_redis_parse_url(const char *url, struct pb_redis_url *out, char *err, size_t errlen);

struct pb_redis_opts {
	struct pb_redis_url url;
	unsigned connect_timeout_ms;    /* per attempt; default 1000 */
	unsigned command_timeout_ms;    /* per command; default 1000 */
	/* Lua sources to load (SCRIPT LOAD) on every (re)connect, before the
	 * command connection counts as up; pb_redis_eval() names them by index.
	 * The array and strings are borrowed for the client's life. */
	const char *const *scripts;
	size_t nscripts;
	/* The command connection went up (1) or down (0). May be NULL. */
	void (*on_state)(void *arg, int up);
	/* A message on a subscribed channel (borrowed bytes). May be NULL. */
	void (*on_message)(void *arg, const char *channel, size_t chlen, const char *msg,
			   size_t len);
	/* The subscriber connection is (re)subscribed to every channel after a
	 * reconnect: messages may have been missed meanwhile. May be NULL. */
	void (*on_resubscribed)(void *arg);
	void *arg;
	/* pb_redis_eval_durable(): WAIT for this many replicas (0: no WAIT),
	 * at most wait_timeout_ms (default 1000) */
	unsigned wait_replicas;
	unsigned wait_timeout_ms;
	/* Set by redis_cluster.c for the client of one cluster node: pub/sub
	 * is sharded (SSUBSCRIBE, one channel per command), redirections are
	 * the caller's business, and the two callbacks below are used. */
	int cluster_node;
	/* cluster_node: a subscription to channel was confirmed. May be NULL. */
	void (*on_subscribed)(void *arg, const char *channel, size_t chlen);
	/* cluster_node: the server ended or refused the subscription to
	 * channel (its slot moved away, or is not the node's); the channel is
	 * forgotten here. May be NULL. */
	void (*on_dropped)(void *arg, const char *channel, size_t chlen);
};

typedef void (*pb_redis_cb)(void *arg, int err, struct redisReply *reply);

/* A client on loop; it starts connecting at once and keeps reconnecting
 * (backoff 100 ms doubling to 2 s) whenever a connection is lost. NULL on
 * allocation failure. */
struct pb_redis *pb_redis_new(uv_loop_t *loop, const struct pb_redis_opts *opts);

/* Fail every pending command (PB_ESTORE), close both connections and the
 * timers; the memory is reclaimed once the loop has run the close
 * callbacks. NULL is ignored. */
void pb_redis_free(struct pb_redis *r);

/* 1 if the command connection is up (connected, authenticated, db
 * selected, scripts loaded). Cluster: every slot has a known primary, and
 * every primary's command connection is up; once ready, the client stays
 * ready while at least one primary is up (see redis_cluster.h). */
int pb_redis_ready(const struct pb_redis *r);

/* Send a command (argv borrowed during the call; argvlen may be NULL for
 * C strings). PB_ESTORE at once if the command connection is not up.
 * key is the index in argv of the key that routes the command to its
 * node in a cluster (-1: any primary); a single server ignores it. */
int pb_redis_command_key(struct pb_redis *r, int key, pb_redis_cb cb, void *arg, int argc,
			 const char *const *argv, const size_t *argvlen);

/* pb_redis_command_key() routed by argv[1] (the first key of most
 * commands), or by no key if argc is 1. */
int pb_redis_command(struct pb_redis *r, pb_redis_cb cb, void *arg, int argc,
		     const char *const *argv, const size_t *argvlen);

/* EVALSHA script number `script` with nkeys keys followed by the other
 * arguments in argv. A NOSCRIPT answer reloads the script and retries
 * once, transparently. Same contract as pb_redis_command(); in a cluster
 * it is routed by its first key (argv[0]), by none if nkeys is 0. */
int pb_redis_eval(struct pb_redis *r, size_t script, int nkeys, int argc,
		  const char *const *argv, const size_t *argvlen, pb_redis_cb cb, void *arg);

/* As pb_redis_eval(), but with wait_replicas set the command is followed
 * in the same pipeline by WAIT (one WAIT covers every durable script sent
 * in the same loop pass), and its callback runs only when WAIT answered:
 * with the script's reply if at least wait_replicas replicas acknowledged
 * it, else with reply NULL and PB_ESTORE (the script ran on the primary,
 * but may be lost in a failover). */
int pb_redis_eval_durable(struct pb_redis *r, size_t script, int nkeys, int argc,
			  const char *const *argv, const size_t *argvlen, pb_redis_cb cb,
			  void *arg);

/* Set wait_replicas and wait_timeout_ms (0: the default, 1000) of a
 * running client; durable scripts sent from now on use them. */
void pb_redis_set_wait(struct pb_redis *r, unsigned replicas, unsigned timeout_ms);

/* Subscribe to / unsubscribe from a channel on the subscriber connection.
 * Channels are remembered and re-subscribed after a reconnect; calls while
 * disconnected only update that set. Reference-counted: n subscribes need
 * n unsubscribes. 0 or PB_ENOMEM. */
int pb_redis_subscribe(struct pb_redis *r, const char *channel);
void pb_redis_unsubscribe(struct pb_redis *r, const char *channel);

/* 1 if the client is a cluster client (redis+cluster:// URL): scripts
 * must then SPUBLISH, and keys of one script share a slot. */
int pb_redis_is_cluster(const struct pb_redis *r);

/* The Redis Cluster hash slot of a key (CRC16-XMODEM of the key, or of
 * its hash tag: the bytes between the first '{' and the next '}', if
 * there is at least one), 0..16383. */
unsigned pb_redis_key_slot(const char *key, size_t len);

#endif
