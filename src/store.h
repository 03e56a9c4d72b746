/*
 * store.h: the session store interface. The session core buffers every
 * message through it, in both directions, and never knows which
 * implementation it has: "memory" (store_memory.c, one instance) or, later,
 * Redis (shared by many instances).
 *
 * What the store owns, per session id: the route and chosen subprotocol;
 * the inbound queue (upstream -> client) with its seq numbers and the
 * client's cursor; the outbound queue (client -> upstream); the state
 * (open, closed by the upstream with a code and reason, ended) and, once
 * ended, a tombstone that answers "session_closed" for idle_timeout.
 *
 * Calling convention (hiredis-like): every operation takes a callback and
 * an opaque arg. If the operation returns 0 the callback is called exactly
 * once, possibly before the operation returns (the memory store always
 * completes at once); if it returns an error, the callback is never
 * called. Anything passed to a callback by pointer is borrowed for the
 * duration of the callback only.
 *
 * Wakeups: the store calls the events it was created with whenever a
 * session's inbound side changes (new message, close, end) or its outbound
 * queue grows, so the core can answer a waiting poll or feed the upstream.
 * A shared store (Redis) also reports sessions ended and polls started on
 * other instances, and the ownership operations (leases, orphans, claim,
 * release) that let instances adopt each other's sessions.
 */
#ifndef PB_STORE_H
#define PB_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "msg.h"

struct pb_store;

/* What one read of a queue found. */
struct pb_store_batch {
	struct pb_msg **msgs;           /* borrowed references, seq ascending */
	size_t n;
	uint64_t last_seq;              /* highest seq handed out so far */
	size_t depth;                   /* messages still queued after the read */
	struct pb_close_info close;     /* closed only when the upstream closed
					   and this batch reaches last_seq */
	int ended;                      /* this read acknowledged the last message
					   of a closed session: it has now ended */
	uint64_t acked;                 /* read_in: the `after` this read
					   acknowledged (STORE_AFTER_HANDED
					   resolved to the handed mark) */
};

/* read_in's after: acknowledge up to the session's handed mark, the
 * highest seq the latest read_in of the session returned (or, if it
 * returned nothing, what it acknowledged or read past). Every read_in
 * updates the mark. Same value as PB_AFTER_HANDED (session.h). */
#define PB_STORE_AFTER_HANDED UINT64_MAX

/* What a send accepted. */
struct pb_store_send_result {
	size_t accepted;                /* messages now queued (0 for a repeat) */
	uint64_t send_seq;              /* highest request seq accepted, 0: none */
	uint64_t expected;              /* with PB_ESEQGAP: the next expected seq */
};

typedef void (*pb_store_done_cb)(void *arg, int err);
/* Answer to a lease renewal: on success, out_last is the highest client
 * message seq the store holds for the upstream. */
typedef void (*pb_store_renew_cb)(void *arg, int err, uint64_t out_last);
typedef void (*pb_store_push_cb)(void *arg, int err, uint64_t seq, size_t depth, size_t bytes);
typedef void (*pb_store_batch_cb)(void *arg, int err, const struct pb_store_batch *b);
typedef void (*pb_store_send_cb)(void *arg, int err, const struct pb_store_send_result *r);

/* What an adopting instance learns of a session it claimed. */
struct pb_store_claim {
	int closed;                     /* the upstream had closed already */
	int drained;                    /* the old owner drained (else: died) */
	const char *route;              /* borrowed */
	const void *handshake;          /* borrowed: what create() was given */
	size_t handshake_len;
};

typedef void (*pb_store_idle_cb)(void *arg, int err, int ended, uint64_t remaining_ms);
typedef void (*pb_store_claim_cb)(void *arg, int err, const struct pb_store_claim *c);
typedef void (*pb_store_ids_cb)(void *arg, int err, const char *const *ids, size_t n);

/* Wakeups raised by the store; id is borrowed. */
struct pb_store_events {
	void (*inbound)(void *arg, const char *id);     /* re-read for waiting polls */
	void (*outbound)(void *arg, const char *id);    /* new messages for the upstream */
	void (*ended)(void *arg, const char *id);       /* ended elsewhere (shared stores) */
	void (*acked)(void *arg, const char *id);       /* the client acknowledged messages */
	/* a poll started on instance `instance` with `token` (shared stores) */
	void (*waiter)(void *arg, const char *id, const char *instance, uint64_t token);
	void (*resync)(void *arg);                      /* wakeups may have been missed */
	void (*health)(void *arg, int up);              /* the store went up or down */
	void *arg;
};

/* Limits and identity the store works with. */
struct pb_store_limits {
	size_t queue_max;               /* messages per session and direction */
	size_t queue_max_bytes;         /* message bytes per session and direction */
	unsigned tombstone_secs;        /* how long an ended session answers 410 */
	unsigned idle_secs;             /* a live session's idle timeout */
	unsigned lease_ms;              /* how long an owner's lease lasts */
	const char *instance;           /* this instance's id (borrowed) */
};

struct pb_store_ops {
	const char *name;
	void (*destroy)(struct pb_store *s);
	/* 1 if the store can currently serve requests. */
	int (*healthy)(struct pb_store *s);
	/* Record a new open session. handshake (handshake_len bytes, may be
	 * NULL) is what the upstream dial sent on the client's behalf, opaque
	 * to the store: a shared store keeps it for an adopting instance's
	 * re-dial (pb_store_claim), a single-instance store may drop it.
	 * PB_EEXIST (atomically) if a live session or a tombstone has id. */
	int (*create)(struct pb_store *s, const char *id, const char *route,
		      const char *protocol, const void *handshake, size_t handshake_len,
		      pb_store_done_cb cb, void *arg);
	/* Append n upstream messages, in order, all or nothing (the store
	 * takes references and may set their seqs); cb gets the seq of the
	 * last one and the inbound queue's depth and bytes. PB_ENOSESSION,
	 * PB_ECLOSED. The inbound queue is not capped here: the messages have
	 * already arrived, so the core pauses the upstream instead. */
	int (*push_in)(struct pb_store *s, const char *id, struct pb_msg *const *msgs, size_t n,
		       pb_store_push_cb cb, void *arg);
	/* Acknowledge every inbound message <= after, then read up to max
	 * messages (at least one if any) and about max_bytes with seq > from
	 * (from < after counts as after; a stream reads ahead of what the
	 * client acknowledged). hold_secs: the reader will wait that long for
	 * more, and counts as client activity until then (a poll parked on
	 * one instance keeps the session alive for its owner on another).
	 * may_end: whether acknowledging the last message of a closed session
	 * ends it now (a poll woken by the close may have lost its client: its
	 * answer must not be the only one). after PB_STORE_AFTER_HANDED: the
	 * handed mark; from PB_STORE_AFTER_HANDED: the same as after.
	 * PB_EBADREQ if after > last seq; PB_ENOSESSION; PB_ECLOSED once
	 * ended. */
	int (*read_in)(struct pb_store *s, const char *id, uint64_t after, uint64_t from,
		       size_t max, size_t max_bytes, unsigned hold_secs, int may_end,
		       pb_store_batch_cb cb, void *arg);
	/* Append client messages for the upstream, all or nothing (takes a
	 * reference to each). send_seq 0: unnumbered. PB_EQFULL past
	 * queue_max messages or queue_max_bytes bytes, PB_ESEQGAP,
	 * PB_ENOSESSION, PB_ECLOSED (also once the upstream has closed). */
	int (*push_out)(struct pb_store *s, const char *id, struct pb_msg *const *msgs,
			size_t n, uint64_t send_seq, pb_store_send_cb cb, void *arg);
	/* Read up to max outbound messages with out-seq > after (the owner's
	 * write position); msgs[i]->seq is the out-seq. */
	int (*read_out)(struct pb_store *s, const char *id, uint64_t after, size_t max,
			pb_store_batch_cb cb, void *arg);
	/* The owner has written every outbound message <= upto: free them. */
	int (*ack_out)(struct pb_store *s, const char *id, uint64_t upto,
		       pb_store_done_cb cb, void *arg);
	/* The upstream closed with code and reason: no more inbound messages,
	 * outbound ones are dropped; what is queued inbound stays readable. */
	int (*close)(struct pb_store *s, const char *id, int code, const char *reason,
		     size_t reason_len, pb_store_done_cb cb, void *arg);
	/* End the session now (DELETE, idle timeout): free both queues and leave
	 * a tombstone. PB_ENOSESSION, PB_ECLOSED if it had already ended. */
	int (*end)(struct pb_store *s, const char *id, pb_store_done_cb cb, void *arg);
	/* The owner's idle timer fired: end the session unless a request
	 * reached it (on any instance) within idle_secs; else report how long
	 * until it would be idle. */
	int (*end_if_idle)(struct pb_store *s, const char *id, pb_store_idle_cb cb, void *arg);
	/* A read whose answer nobody got (its request was let go meanwhile)
	 * had moved the handed mark to `was`: put it back to `to` (what that
	 * read acknowledged), unless another read has moved it since. */
	int (*unhand)(struct pb_store *s, const char *id, uint64_t was, uint64_t to,
		      pb_store_done_cb cb, void *arg);
};

/* What only a store shared by several instances offers: wakeups across
 * instances, leases, and adoption. The session core's cluster part
 * (session_cluster.c) is its only user. */
struct pb_store_shared_ops {
	/* Deliver this session's wakeups to this instance, or stop. */
	int (*watch)(struct pb_store *s, const char *id);
	void (*unwatch)(struct pb_store *s, const char *id);
	/* Tell every instance a poll with token started here. */
	int (*announce_waiter)(struct pb_store *s, const char *id, uint64_t token);
	/* Extend this instance's lease on the session. PB_ELOST if another
	 * instance owns it now; PB_ENOSESSION/PB_ECLOSED if it is gone. The
	 * answer says how far the client messages go, so that an owner can
	 * tell it missed a wakeup without reading them. */
	int (*renew)(struct pb_store *s, const char *id, pb_store_renew_cb cb, void *arg);
	/* Sessions whose owner's lease has run out. */
	int (*orphans)(struct pb_store *s, pb_store_ids_cb cb, void *arg);
	/* Become the owner of an orphan. PB_ELOST if its lease is live (someone
	 * else claimed it first). */
	int (*claim)(struct pb_store *s, const char *id, pb_store_claim_cb cb, void *arg);
	/* Give up ownership on drain so another instance adopts at once. */
	int (*release)(struct pb_store *s, const char *id, pb_store_done_cb cb, void *arg);
};

/* A store: its operations and the events it raises. Implementations embed
 * this as their first member. */
struct pb_store {
	const struct pb_store_ops *ops;
	const struct pb_store_shared_ops *shared;       /* NULL: one instance */
	struct pb_store_events events;
	struct pb_store_limits limits;
};

/* Raise the wakeups (for implementations); absent handlers are skipped. */
void pb_store_wake_inbound(struct pb_store *s, const char *id);
void pb_store_wake_outbound(struct pb_store *s, const char *id);
void pb_store_wake_ended(struct pb_store *s, const char *id);
void pb_store_wake_acked(struct pb_store *s, const char *id);
void pb_store_wake_waiter(struct pb_store *s, const char *id, const char *instance,
			  uint64_t token);
void pb_store_wake_resync(struct pb_store *s);
void pb_store_wake_health(struct pb_store *s, int up);

/* 1 if the store is shared between instances (it has shared ops). */
int pb_store_shared(const struct pb_store *s);

/* Destroy a store; NULL is ignored. */
void pb_store_destroy(struct pb_store *s);

#endif
