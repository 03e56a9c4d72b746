/*
 * session.h: the session core. It owns the session state machine
 * (connecting -> open -> closed -> ended), the single-waiter rule, long
 * poll and idle deadlines, and the glue between the store (buffers and
 * cursors) and the upstream link (one WebSocket per session).
 *
 * It includes neither libmicrohttpd nor libwebsockets: the front end calls
 * the request functions below and gets exactly one callback per request,
 * possibly before the function returns (the memory store answers at once).
 * Pointers passed to those callbacks are borrowed for the call only. The
 * answers are the core's own types (struct pb_core_batch, struct
 * pb_core_send_result), so the front end needs neither store.h nor
 * upstream.h; only main.c, which wires a core to its store and link,
 * includes those.
 */
#ifndef PB_SESSION_H
#define PB_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "codec.h"
#include "config.h"
#include "headers.h"
#include "msg.h"

struct pb_core;
struct pb_link_ops;             /* upstream.h */
struct pb_store;                /* store.h */
struct pb_store_events;         /* store.h */

/* What a poll or a stream read answers with (err 0). */
struct pb_core_batch {
	struct pb_msg **msgs;           /* borrowed references, seq ascending */
	size_t n;
	uint64_t last_seq;              /* highest seq handed out so far */
	struct pb_close_info close;     /* closed once the upstream has closed and
					   this batch reaches last_seq */
	int released;                   /* empty: the request was let go (a newer
					   poll or stream took the session's
					   waiter slot, or the instance drains) */
};

/* What a send accepted (err 0), or where it should have started
 * (PB_ESEQGAP). */
struct pb_core_send_result {
	size_t accepted;                /* messages now queued (0 for a repeat) */
	uint64_t send_seq;              /* highest request seq accepted, 0: none */
	uint64_t expected;              /* with PB_ESEQGAP: the next expected seq */
};

typedef void (*pb_core_create_cb)(void *req, int err, const char *id, const char *protocol);
/* b is set when err is 0 (else do not use it). */
typedef void (*pb_core_poll_cb)(void *req, int err, const struct pb_core_batch *b);
/* r is set when err is 0 or PB_ESEQGAP (else it may be NULL). */
typedef void (*pb_core_send_cb)(void *req, int err, const struct pb_core_send_result *r);
typedef void (*pb_core_done_cb)(void *req, int err);

/* A core on loop with cfg (borrowed for the core's life) that dials its
 * upstreams through link (&pb_upstream_link_ops with a struct
 * pb_upstream_ctx as link_ctx, or a test's fake). It has no store until
 * pb_core_attach_store(). NULL on allocation failure. */
struct pb_core *pb_core_new(uv_loop_t *loop, const struct pb_config *cfg,
			    const struct pb_link_ops *link, void *link_ctx);

/* Fill ev with the wakeups a store created for this core must raise. */
void pb_core_store_events(struct pb_core *c, struct pb_store_events *ev);

/* Use store (borrowed; it must outlive the core's sessions). */
void pb_core_attach_store(struct pb_core *c, struct pb_store *store);

/* Free the core. Call after pb_core_drain() has let every session end;
 * the loop must run afterwards to close the remaining timers. */
void pb_core_free(struct pb_core *c);

/* Create a session on cr's route, offering cr's subprotocols, sending
 * client_origin (may be NULL) unless the route configures an origin, and
 * the request headers fwd (may be NULL; borrowed during the call, the
 * upstream link copies them). Answers once the upstream handshake is done
 * or failed (connect timeout). With a shared store the subprotocol offer,
 * client_origin, fwd and cr->door are stored with the session, so that an
 * instance adopting it re-dials with the same handshake (an Engine.IO
 * session is closed instead: 1011 "bridge instance lost").
 *
 * cr->door labels the session's metrics; cr->eio (3 or 4) dials the
 * route's URL with the query parameter EIO=<eio> (replacing one the URL
 * has); cr->fixed_id (not "") is the session's id: PB_EBADREQ if it is not
 * PB_ID_LEN chars of [A-Za-z0-9_.-], PB_EEXIST if a live session or a
 * tombstone has it (known here at once; else the store refuses it
 * atomically after the upstream handshake, and the upstream is closed).
 * The instance and per-client limits apply to every door. */
void pb_core_create(struct pb_core *c, const struct pb_create_req *cr, const char *client_addr,
		    const char *client_origin, const struct pb_headers *fwd,
		    pb_core_create_cb cb, void *req);

/* As `after` of a poll or stream read: acknowledge everything that earlier
 * reads of this session handed out (the store keeps a per-session "handed"
 * mark: what the latest read returned, poll or stream, on any instance),
 * for doors whose clients have no cursor (Engine.IO, SockJS). A read whose
 * answer the core discards (a newer request took the slot meanwhile) does
 * not count: the newer request acknowledges only what the discarded read
 * itself acknowledged. */
#define PB_AFTER_HANDED UINT64_MAX

/* Flag of pb_core_poll_flags() / pb_core_stream_read_flags(): if another
 * poll or stream already waits on the session on this instance, answer
 * PB_EBUSY at once instead of releasing the older one (a stream checks on
 * its first read only). Across instances the /v1 rule stays: the newest
 * request wins and an older one waiting on another instance is answered
 * `released`. */
#define PB_POLL_EXCLUSIVE 1u

/* Acknowledge <= after and answer with what is queued above it, waiting up
 * to wait seconds (clamped to wait_max) for something to arrive. max is
 * capped at max_batch. A newer poll on the session answers an older
 * waiting one at once with an empty batch (released set). */
void pb_core_poll(struct pb_core *c, const char *id, uint64_t after, unsigned wait, size_t max,
		  pb_core_poll_cb cb, void *req);

/* pb_core_poll() with flags (0 or PB_POLL_EXCLUSIVE; PB_EBUSY). */
void pb_core_poll_flags(struct pb_core *c, const char *id, uint64_t after, unsigned wait,
			size_t max, unsigned flags, pb_core_poll_cb cb, void *req);

/* Whether the poll req (pb_core_poll's req) is parked on id: its first
 * read came back with nothing for it and it now waits for messages or its
 * deadline. A front end that holds a waiting request more cheaply than one
 * being answered moves it then (front.c, --lean-long-polls). */
int pb_core_poll_parked(struct pb_core *c, const char *id, const void *req);

/* One read of a stream (Server-Sent Events): like a poll, but answers
 * with what lies past from (the last seq already streamed) while only
 * acknowledging <= after (the client's cursor, 0 after the first read),
 * and waits up to wait seconds (not clamped: a stream's heartbeat).
 * stream is a non-zero token naming the stream, first says whether this is
 * its first read. A batch with released set means a newer poll or stream
 * took over (perhaps while this one was writing), or the instance is
 * draining: the stream should end. */
void pb_core_stream_read(struct pb_core *c, const char *id, uint64_t after, uint64_t from,
			 unsigned wait, uint64_t stream, int first, pb_core_poll_cb cb, void *req);

/* pb_core_stream_read() with flags (0 or PB_POLL_EXCLUSIVE, checked on the
 * first read only; PB_EBUSY). */
void pb_core_stream_read_flags(struct pb_core *c, const char *id, uint64_t after, uint64_t from,
			       unsigned wait, uint64_t stream, int first, unsigned flags,
			       pb_core_poll_cb cb, void *req);

/* Queue sr's messages (references are taken; sr stays the caller's) for the
 * upstream, in order, all or nothing. */
void pb_core_send(struct pb_core *c, const char *id, const struct pb_send_req *sr,
		  pb_core_send_cb cb, void *req);

/* End a session now (DELETE): the upstream gets close 1000. */
void pb_core_delete(struct pb_core *c, const char *id, pb_core_done_cb cb, void *req);

/* Drain: refuse new sessions and close every upstream with 1001. With a
 * single-instance store the sessions are marked closed (1001), which
 * answers their waiting polls; with a shared store they are released for
 * another instance to adopt and waiting polls are answered empty. */
void pb_core_drain(struct pb_core *c);

/* 1 once a drain has handed over everything it had to (the shared
 * store's releases have been answered). */
int pb_core_drained(const struct pb_core *c);

/* Number of sessions this instance owns (connecting, open or closed). */
size_t pb_core_session_count(const struct pb_core *c);

/* 1 if the store can serve requests. */
int pb_core_healthy(const struct pb_core *c);

#endif
