/*
 * session_int.h: what the parts of the session core share. Private to
 * session*.c; everyone else uses session.h.
 *
 * The core is split along the machines a session runs, one file each:
 *
 *   session.c          the life cycle (connecting -> open -> closed ->
 *                      ended), the one timer and its deadline kinds,
 *                      creating and dialling, the pb_core_* requests that
 *                      are not reads (create, send, delete), drain;
 *   session_waiter.c   the waiter slot: polls and streams, the
 *                      single-waiter rule, a shadow session's linger;
 *   session_pump.c     the inbound pump (upstream -> store, backpressure by
 *                      count and bytes, the upstream's close stored after
 *                      the messages before it) and the outbound pump
 *                      (store -> upstream);
 *   session_cluster.c  shared stores only: watching a session's wakeups,
 *                      the client's handshake kept for a re-dial, leases,
 *                      the orphan scan, claim and adoption, release on
 *                      drain, and what other instances report.
 *
 * Each machine has an explicit state changed through one setter. The
 * single-instance path never enters session_cluster.c except through its
 * session_cluster_*() hooks, which do nothing without a shared store.
 *
 * Memory: a session is reference-counted (1 for the map, 1 per store
 * operation in flight) and freed once it has ended here, no operation
 * holds it and its timer's close callback has run.
 */
#ifndef PB_SESSION_INT_H
#define PB_SESSION_INT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "map.h"
#include "msg.h"
#include "session.h"
#include "store.h"
#include "upstream.h"

/* Outbound messages fetched from the store at a time. */
#define PB_OUT_FETCH 64
/* Inbound messages waiting for the store before the upstream is paused. */
#define PB_IN_WAIT_MAX 64
/* Upstream messages stored by one append. */
#define PB_IN_BATCH 32
/* Shared stores: how often leases are renewed and orphans looked for. */
#define PB_ADOPT_INTERVAL_MS 1000
/* The leases are renewed in this many slices, one every
 * PB_ADOPT_INTERVAL_MS / PB_RENEW_SLICES. */
#define PB_RENEW_SLICES 10
/* How long an owner answers short polls that found nothing new itself
 * (at most a quarter of --idle-timeout): each read of the store also
 * records the client's activity there. */
#define PB_QUIET_MS 1000

/* The life cycle (session_set_state). */
enum pb_session_state {
	PB_S_CONNECTING,        /* dialling (creating, or re-dialling after adoption) */
	PB_S_OPEN,
	PB_S_CLOSED,            /* the upstream is gone; buffered messages stay readable */
	PB_S_ENDED,             /* gone from this instance */
};

/* What the session's one timer counts down to (session_arm). */
enum pb_deadline {
	PB_DL_NONE,
	PB_DL_CONNECT,          /* a create's upstream handshake: 504 */
	PB_DL_REDIAL,           /* an adopter's re-dial: close 1006 */
	PB_DL_POLL,             /* the parked poll's wait */
	PB_DL_IDLE,             /* owned: no request within idle_timeout */
	PB_DL_LINGER,           /* shadow: no poll here within idle_timeout */
};

/* The waiter slot (waiter_set_state). */
enum pb_waiter_state {
	PB_W_EMPTY,             /* no poll or stream waits here */
	PB_W_ARRIVED,           /* a request arrived; its first read is in flight */
	PB_W_PARKED,            /* it waits for a wakeup or its deadline */
};

/* The inbound pump (in_set_state). */
enum pb_in_state {
	PB_IN_IDLE,             /* nothing on its way to the store */
	PB_IN_PUSHING,          /* one append in flight (in.pushing messages) */
	PB_IN_HELD,             /* the store failed: held until it is back */
};

/* The outbound pump (out_set_state). */
enum pb_out_state {
	PB_OUT_IDLE,
	PB_OUT_FETCHING,        /* a read of the store's outbound queue in flight */
};

/* The poll or stream that holds the session's waiter slot. */
struct pb_waiter {
	enum pb_waiter_state state;
	pb_core_poll_cb cb;             /* set unless EMPTY */
	void *req;
	uint64_t after;                 /* acknowledges <= after */
	uint64_t from;                  /* answers with seqs past this (>= after) */
	size_t max;
	unsigned wait;                  /* seconds; 0 once the deadline passed */
	uint64_t token;                 /* announced to the other instances */
	uint64_t stream;                /* the stream holding the slot, 0: a poll */
	int reading;                    /* a read for the slot is in flight (it may
					   outlive the request it was for) */
	int reread;                     /* a wakeup came during that read */
	int stale;                      /* a newer request came during that read */
	int yield;                      /* another instance's request came during
					   that read: answer what it finds, or give
					   way (core_on_waiter) */
};

/* Upstream -> store. */
struct pb_inpump {
	enum pb_in_state state;
	struct pb_msgq q;               /* upstream messages not yet stored */
	int pushing;                    /* the oldest q messages, in the append in flight */
	int in_loop;                    /* inside pump_in_next() */
	int full;                       /* the stored queue reached queue_max messages
					   or queue_max_bytes bytes */
	int mem_full;                   /* paused for total_queue_max_bytes */
	int paused;                     /* upstream reading is paused */
	/* The stored queue as last seen (an append's answer, a read): only
	 * acknowledgements shrink it meanwhile, so it bounds it from above. */
	size_t depth;
	size_t depth_bytes;
	int listed;                     /* on the core's flush list (holds a ref) */
	struct pb_session *flush_next;  /* the next session on that list */
	/* The upstream's close, stored once the messages before it are. */
	int close_pending;
	int close_code;
	char close_reason[124];
	size_t close_reason_len;
};

/* Store -> upstream. */
struct pb_outpump {
	enum pb_out_state state;
	struct pb_msgq ring;            /* fetched, not yet handed to the socket */
	uint64_t fetched;               /* highest out-seq fetched */
	uint64_t written;               /* highest out-seq handed to the socket */
	uint64_t acked;                 /* highest out-seq acknowledged to the store */
	int refetch;                    /* more may be waiting in the store */
	int closing;                    /* a PB_MSG_CLOSE was reached: the session
					   is being ended, nothing more is written */
};

struct pb_session {
	struct pb_core *core;
	char id[PB_ID_LEN + 1];
	enum pb_session_state state;
	enum pb_deadline deadline;
	int owned;                      /* this instance holds (or dials) the upstream */
	int adopting;                   /* dialling again after an adoption */
	int idle_checking;              /* an END_IF_IDLE is in flight: its own
					   "ended" wakeup is not news */
	const struct pb_route *route;   /* NULL for a shadow */
	enum pb_door door;              /* the front door it came through (set
					   with session_set_door) */
	int eio;                        /* Engine.IO version dialled (0: none) */
	size_t route_row;               /* its per-route metrics row */
	struct pb_upstream *up;
	uv_timer_t timer;
	unsigned refs;                  /* 1 for the map + 1 per operation in flight */
	/* While connecting: the creating request. */
	pb_core_create_cb create_cb;
	void *create_req;
	int creating;                   /* handshake done, the store's create in flight */
	int closed_early;               /* the upstream closed during that create */
	uint64_t dial_ns;               /* when the upstream dial started */
	char protocol[PB_MAX_PROTOCOL_LEN + 1];  /* chosen subprotocol, "" for none */
	char client[48];                /* the creating client's address, if counted */
	char *handshake;                /* the client's part of the dial (shared
					   stores), until the store has recorded it */
	size_t handshake_len;
	struct pb_waiter w;
	struct pb_inpump in;
	struct pb_outpump out;
	/* Shared stores, owner only: the slot's last read found nothing after
	 * quiet.after (and acknowledged up to it), so a plain short poll with
	 * that cursor, soon after, is answered here without the store
	 * (core_read_quiet), unless an append is in flight. Cleared by any
	 * append answered or inbound wakeup. */
	struct {
		int valid;
		uint64_t after;
		uint64_t last_seq;
		uint64_t until;         /* loop time (ms) it may be used before */
	} quiet;
};

/* Sessions per client address (--max-sessions-per-client). */
struct pb_client {
	char addr[48];
	size_t sessions;
};

struct pb_core {
	uv_loop_t *loop;
	const struct pb_config *cfg;
	const struct pb_link_ops *link;
	void *link_ctx;
	struct pb_store *store;
	struct pb_map *sessions;
	struct pb_map *clients;         /* address -> struct pb_client */
	size_t owned;                   /* owned sessions (the --max-sessions count) */
	uint64_t tokens;                /* poll tokens handed out */
	uv_timer_t adopt_timer;         /* shared stores: leases and adoption */
	int adopt_timer_on;
	unsigned renew_tick;            /* adopt timer ticks so far */
	int draining;
	size_t releasing;               /* drain: releases still in flight */
	size_t mem_paused;              /* sessions paused for the instance's byte bound */
	/* Sessions with upstream messages not yet sent to the store: sent at
	 * the end of the loop pass (in_flush), so the messages of one read go
	 * to the store together; or, for messages taken outside the poll phase
	 * (libwebsockets hands out what it buffered from an idle handle),
	 * before the loop next blocks (in_flush_pre). */
	uv_check_t in_flush;
	uv_prepare_t in_flush_pre;
	struct pb_session *flush_head, *flush_tail;
	int handles;                    /* uv handles still to be closed */
};

/* ---- session.c: life cycle ------------------------------------------- */

struct pb_session *session_hold(struct pb_session *s);
void session_release(struct pb_session *s);
void session_set_state(struct pb_session *s, enum pb_session_state st, const char *why);
/* A new local session (owned or shadow) in the map. NULL on failure. */
struct pb_session *session_new(struct pb_core *c, const char *id, int owned);
struct pb_session *session_find(struct pb_core *c, const char *id);
/* Set the session's door, moving it between the door-labelled gauges. */
void session_set_door(struct pb_session *s, enum pb_door door);
/* 1 if id[0..len) can name a session: PB_ID_LEN chars of [A-Za-z0-9_.-]
 * (a minted id, or a fixed id such as SockJS's, which ends with '.'). */
int session_id_ok(const char *id, size_t len);
/* Point the session at route (NULL: none), keeping the per-configuration
 * session counts (pb_route.users) that let a reload free a replaced
 * route table once no session uses it. */
void session_use_route(struct pb_session *s, const struct pb_route *route);
/* Leave the map: the session has ended here (for a shadow or a session
 * moved elsewhere this only means this instance no longer holds it). */
void session_forget(struct pb_session *s, const char *why);
/* Answer the creating request (if it is still waiting) with err. */
void session_answer_creator(struct pb_session *s, int err);
/* Close the upstream (if any) with code and reason. */
void session_close_upstream(struct pb_session *s, int code, const char *reason);
/* Run the timer towards deadline kind dl in ms; PB_DL_NONE stops it. */
void session_arm(struct pb_session *s, enum pb_deadline dl, uint64_t ms);
/* Arm the idle deadline of an owned open or closed session. */
void session_touch(struct pb_session *s);
/* The upstream is gone with code and reason: the session is closed. */
void session_mark_closed(struct pb_session *s, int code, const char *reason,
			 size_t reason_len, const char *why);
/* Ended by DELETE or elsewhere: close the upstream, tell a waiting poll. */
void session_end_here(struct pb_session *s, const char *why);
/* Dial the session's route. 0 or an error (nothing to undo). */
int session_dial(struct pb_session *s, const char *protocols, const char *origin,
		 const struct pb_headers *fwd);
/* Call fn on every session held here (safe if fn forgets it). */
void core_each(struct pb_core *c, void (*fn)(struct pb_session *s));

/* ---- session_waiter.c: the waiter slot ----------------------------------- */

/* Answer the request in the slot (if any) with err and what the store's
 * read found (b, NULL with an error), and empty it. */
void waiter_answer(struct pb_session *s, int err, const struct pb_store_batch *b);
/* Let the request in the slot go with an empty open batch, released set. */
void waiter_release(struct pb_session *s);
/* Read again for the request in the slot (after a wakeup). */
void waiter_wake(struct pb_session *s);
/* The poll deadline passed: one last read, answered whatever it finds. */
void waiter_deadline(struct pb_session *s);
/* An append of upstream messages has just been sent to a shared store: a
 * request parked here reads now, behind it on the same connection. */
void waiter_read_behind_append(struct pb_session *s);
/* A shadow with nothing in its slot lingers for idle_timeout. */
void waiter_linger(struct pb_session *s);
void core_read(struct pb_core *c, const char *id, uint64_t after, uint64_t from,
	       unsigned wait, size_t max, uint64_t stream, int first, unsigned flags,
	       pb_core_poll_cb cb, void *req);
void core_on_inbound(void *arg, const char *id);

/* ---- session_pump.c: the pumps ------------------------------------------- */

/* An upstream message (ownership passes here), on its way to the store:
 * sent with the others of its loop pass, or at once once PB_IN_BATCH wait. */
void pump_in_take(struct pb_session *s, struct pb_msg *m);
/* Send what every session took this loop pass (the in_flush handles). */
void core_in_flush(uv_check_t *h);
void core_in_flush_pre(uv_prepare_t *h);
/* Forget the flush list without sending (shutdown). */
void core_in_flush_drop(struct pb_core *c);
/* Send what waits for the store, oldest first. */
void pump_in_next(struct pb_session *s);
/* Record the upstream's close once the messages before it are stored. */
void pump_in_close(struct pb_session *s, int code, const char *reason, size_t reason_len);
/* Store the upstream's close now if it waits and nothing is before it. */
void pump_in_close_if_due(struct pb_session *s);
/* Retry what the store refused while it was away. */
void pump_in_retry(struct pb_session *s);
/* Pause or resume the upstream as the bounds say. */
void pump_in_update_pause(struct pb_session *s);
/* The stored inbound queue was read down to depth: it may take more. */
void pump_in_drained(struct pb_session *s, size_t depth);
void pump_in_memory_resume(struct pb_session *s);
void core_memory_check(struct pb_core *c);
/* Fetch what the store holds for the upstream beyond what was fetched. */
void pump_out_fetch(struct pb_session *s);
/* The upstream can take a message: the next one, or NULL. */
struct pb_msg *pump_out_next(struct pb_session *s);
/* The upstream is gone: drop what was fetched for it. */
void pump_out_drop(struct pb_session *s);
void pump_free(struct pb_session *s);
void core_on_outbound(void *arg, const char *id);
void core_on_acked(void *arg, const char *id);

/* ---- session_cluster.c: shared stores -------------------------------------- */

/* Deliver (or stop delivering) the session's wakeups here. */
void session_cluster_watch(struct pb_session *s, int on);
/* Tell the other instances a request took this session's waiter slot. */
void session_cluster_announce(struct pb_session *s);
/* Keep the client's part of the dial (and the session's door) for an
 * adopter's re-dial. */
int session_cluster_keep_handshake(struct pb_session *s, const char *protocols,
				   const char *origin, const struct pb_headers *fwd);
/* Drain a session of a shared store: release it for another instance. */
void session_cluster_release(struct pb_session *s);
/* Start or stop the lease and adoption timer. */
void core_cluster_start(struct pb_core *c);
void core_cluster_stop(struct pb_core *c);
void core_on_ended(void *arg, const char *id);
void core_on_waiter(void *arg, const char *id, const char *instance, uint64_t token);
void core_on_resync(void *arg);
void core_on_health(void *arg, int up);

#endif
