/*
 * session.c: the session core (see session.h).
 *
 * Each session this instance holds is a struct pb_session in a map by id.
 * A session has one timer, whose meaning follows the state: the connect
 * deadline while connecting, then either the idle deadline or, while a
 * poll is parked, that poll's wait deadline (a waiting poll keeps its
 * session alive, so the two never run together).
 *
 * With a shared store (Redis) sessions live in the store and any instance
 * answers for any of them. An instance then holds two kinds of session:
 * owned ones, whose upstream WebSocket it holds under a lease it renews,
 * and shadows, sessions owned elsewhere for which a poll waits here. It
 * also adopts the sessions of instances whose lease ran out (died) or that
 * released them (drained).
 *
 * Memory: a session is freed once it has ended here, no store operation
 * still holds it (refs) and its timer's close callback has run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "map.h"
#include "metrics.h"
#include "session.h"

enum pb_session_state {
	PB_S_CONNECTING,
	PB_S_OPEN,
	PB_S_CLOSED,    /* the upstream is gone; buffered messages stay readable */
	PB_S_ENDED,
};

static const char *const pb_state_names[] = { "connecting", "open", "closed", "ended" };

/* Outbound messages fetched from the store at a time. */
#define PB_OUT_FETCH 64
/* Inbound messages waiting for the store before the upstream is paused. */
#define PB_IN_WAIT_MAX 64
/* Upstream messages stored by one append. */
#define PB_IN_BATCH 32
/* Shared stores: how often leases are renewed and orphans looked for. */
#define PB_ADOPT_INTERVAL_MS 1000

struct pb_session {
	struct pb_core *core;
	char id[PB_ID_LEN + 1];
	enum pb_session_state state;
	int owned;              /* this instance holds (or dials) the upstream */
	int adopting;           /* dialling again after an adoption */
	const struct pb_route *route;   /* NULL for a shadow */
	struct pb_upstream *up;
	uv_timer_t timer;
	unsigned refs;          /* 1 for the map + 1 per operation in flight */
	/* While connecting: the creating request. */
	pb_core_create_cb create_cb;
	void *create_req;
	char protocol[PB_MAX_PROTOCOL_LEN + 1];  /* chosen subprotocol, "" for none */
	/* The waiting poll, if any. */
	pb_core_poll_cb poll_cb;
	void *poll_req;
	uint64_t poll_after;
	uint64_t poll_from;     /* answer with seqs past this (>= poll_after) */
	size_t poll_max;
	unsigned poll_wait;
	uint64_t poll_token;    /* announced to the other instances */
	uint64_t stream;        /* the stream that holds the session, 0: none */
	int parked;             /* poll_cb is waiting for a wakeup or its deadline */
	int reading;            /* a read for the waiter is in flight */
	int reread;             /* a wakeup came during that read */
	int stale;              /* a newer poll came during that read */
	/* Inbound: upstream messages not yet stored; one push in flight. */
	struct pb_msgq in;
	int pushing;            /* messages of the append in flight (the oldest of in) */
	int in_push_loop;       /* inside session_push_next() */
	int store_wait;         /* the store failed: retry when it is back */
	int full;               /* the stored inbound queue reached queue_max */
	int paused;             /* upstream reading is paused */
	/* Outbound: fetched from the store, not yet handed to the socket. */
	struct pb_msgq out;
	uint64_t out_fetched;   /* highest out-seq fetched */
	uint64_t out_written;   /* highest out-seq handed to the socket */
	uint64_t out_acked;     /* highest out-seq acknowledged to the store */
	int fetching;
	int refetch;            /* more may be waiting in the store */
	/* The upstream's close, stored once the inbound messages before it are. */
	uint64_t dial_ns;       /* when the upstream dial started */
	char client[48];        /* the creating client's address, if counted */
	int close_pending;
	int close_code;
	char close_reason[124];
	size_t close_reason_len;
};

/* Sessions per client address (--max-sessions-per-client). */
struct pb_client {
	char addr[48];
	size_t sessions;
};

struct pb_core {
	uv_loop_t *loop;
	const struct pb_config *cfg;
	struct pb_upstream_ctx *up;
	struct pb_store *store;
	struct pb_map *sessions;
	struct pb_map *clients; /* address -> struct pb_client */
	size_t owned;           /* owned sessions (the --max-sessions count) */
	uint64_t tokens;        /* poll tokens handed out */
	uv_timer_t adopt_timer; /* shared stores: leases and adoption */
	int adopt_timer_on;
	int draining;
	size_t releasing;       /* drain: releases still in flight */
};

static void session_timer_cb(uv_timer_t *t);
static void session_read_for_waiter(struct pb_session *s);
static void session_fetch_out(struct pb_session *s);
static void session_push_next(struct pb_session *s);
static void session_store_close(struct pb_session *s);
static void core_client_done(struct pb_core *c, const char *addr);

/* ---- lifetime ------------------------------------------------------- */

/* The timer is closed: the session's memory can go. */
static void session_freed(uv_handle_t *h)
{
	free(h->data);
}

/* Take a reference for an operation in flight. */
static struct pb_session *session_hold(struct pb_session *s)
{
	s->refs++;
	return s;
}

/* Drop a reference; the last one closes the timer and frees the session. */
static void session_release(struct pb_session *s)
{
	if (--s->refs)
		return;
	pb_msgq_free(&s->in);
	pb_msgq_free(&s->out);
	uv_close((uv_handle_t *)&s->timer, session_freed);
}

/* The one state setter: logs every transition. */
static void session_set_state(struct pb_session *s, enum pb_session_state st, const char *why)
{
	pb_log_info("session %.6s: %s -> %s (%s)", s->id, pb_state_names[s->state],
		    pb_state_names[st], why);
	s->state = st;
}

/* A new local session (owned or shadow) in the map, watched when the
 * store is shared. NULL on allocation failure. */
static struct pb_session *session_new(struct pb_core *c, const char *id, int owned)
{
	struct pb_session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->core = c;
	s->refs = 1;
	s->owned = owned;
	memcpy(s->id, id, PB_ID_LEN);
	uv_timer_init(c->loop, &s->timer);
	s->timer.data = s;
	if (pb_map_put(c->sessions, s->id, PB_ID_LEN, s)) {
		session_release(s);
		return NULL;
	}
	if (owned) {
		c->owned++;
		pb_metrics_gauge(PB_G_SESSIONS, 1);
	}
	if (c->store->ops->watch)
		c->store->ops->watch(c->store, s->id);
	return s;
}

/* Close the upstream (if any) with code and reason. */
static void session_close_upstream(struct pb_session *s, int code, const char *reason)
{
	if (s->up) {
		pb_upstream_close(s->up, code, reason);
		s->up = NULL;
	}
}

/* Leave the map and drop the map's reference: the session has ended here
 * (which for a shadow or a session moved elsewhere only means this
 * instance no longer holds it). */
static void session_forget(struct pb_session *s, const char *why)
{
	struct pb_core *c = s->core;

	if (s->state == PB_S_ENDED)
		return;
	if (s->owned)
		session_set_state(s, PB_S_ENDED, why);
	else
		s->state = PB_S_ENDED;
	uv_timer_stop(&s->timer);
	session_close_upstream(s, 1000, "");
	pb_map_del(c->sessions, s->id, PB_ID_LEN);
	if (s->client[0]) {
		core_client_done(c, s->client);
		s->client[0] = '\0';
	}
	if (s->owned) {
		c->owned--;
		pb_metrics_gauge(PB_G_SESSIONS, -1);
	}
	if (c->store->ops->unwatch)
		c->store->ops->unwatch(c->store, s->id);
	session_release(s);
}

/* Arm the idle deadline (owned sessions; nothing is waiting). */
static void session_touch(struct pb_session *s)
{
	if (s->owned && (s->state == PB_S_OPEN || s->state == PB_S_CLOSED))
		uv_timer_start(&s->timer, session_timer_cb,
			       (uint64_t)s->core->cfg->idle_timeout * 1000, 0);
}

/* The session for id, if this instance holds it. */
static struct pb_session *session_find(struct pb_core *c, const char *id)
{
	return pb_map_get(c->sessions, id, strlen(id));
}

/* Pause the upstream while the stored queue is full or too much waits for
 * the store; resume otherwise. */
static void session_update_pause(struct pb_session *s)
{
	int want = s->full || s->in.count >= PB_IN_WAIT_MAX;

	if (s->up && want != s->paused) {
		s->paused = want;
		pb_upstream_pause(s->up, want);
		pb_log_debug("session %.6s: upstream %s", s->id, want ? "paused" : "resumed");
	}
}

/* ---- polls ------------------------------------------------------------- */

/* Answer the waiting poll (if any) and forget it. */
static void session_answer_waiter(struct pb_session *s, int err, const struct pb_store_batch *b)
{
	pb_core_poll_cb cb = s->poll_cb;
	void *req = s->poll_req;

	if (!cb)
		return;
	if (s->parked)
		pb_metrics_gauge(PB_G_POLLS_WAITING, -1);
	s->poll_cb = NULL;
	s->poll_req = NULL;
	s->parked = 0;
	session_touch(s);
	cb(req, err, b);
}

/* Release the waiting poll with an empty, open batch (replaced by a newer
 * one, drained): a stream ends on it. */
static void session_answer_empty(struct pb_session *s)
{
	struct pb_store_batch b = { 0 };

	b.released = 1;
	session_answer_waiter(s, 0, &b);
}

/* A shadow with no poll left lingers (still subscribed, so the client's
 * next poll here needs no new subscription) until idle_timeout passes. */
static void session_shadow_done(struct pb_session *s)
{
	if (!s->owned && !s->poll_cb && !s->reading && s->state != PB_S_ENDED)
		uv_timer_start(&s->timer, session_timer_cb,
			       (uint64_t)s->core->cfg->idle_timeout * 1000, 0);
}

/* Store answer to a read for the waiting poll. */
static void session_read_done(void *arg, int err, const struct pb_store_batch *b)
{
	struct pb_session *s = arg;

	/* An error or the end of the session is the last word, whatever
	 * arrived during the read. */
	int final = err || b->ended;

	s->reading = 0;
	if (!s->poll_cb) {
		/* Answered meanwhile (replaced by a newer poll, deleted). */
	} else if (!final && (s->stale || (s->reread && !b->n && !b->close.closed))) {
		/* A newer poll came during the read (its cursor may differ), or a
		 * wakeup came while this read found nothing: read again. */
		session_read_for_waiter(s);
	} else if (final || b->n || b->close.closed || !s->poll_wait) {
		session_answer_waiter(s, err, b);
		if (!err && s->full && b->depth < s->core->cfg->queue_max) {
			s->full = 0;
			session_update_pause(s);
		}
		if (!err && b->ended && s->owned)
			pb_metrics_add(PB_C_END_COMPLETED, 1);
		if (!err && b->ended)
			session_forget(s, "client acknowledged the last message");
		else if (err == PB_ENOSESSION || err == PB_ECLOSED)
			session_forget(s, "ended");
	} else if (!s->parked) {
		s->parked = 1;
		pb_metrics_gauge(PB_G_POLLS_WAITING, 1);
		uv_timer_start(&s->timer, session_timer_cb, (uint64_t)s->poll_wait * 1000, 0);
	}
	session_shadow_done(s);
	session_release(s);
}

/* Read the inbound queue for the waiting poll. */
static void session_read_for_waiter(struct pb_session *s)
{
	struct pb_store *st = s->core->store;
	int r;

	s->reading = 1;
	s->reread = 0;
	s->stale = 0;
	session_hold(s);
	/* Only the read a poll makes on arrival may end the session: a read
	 * woken later answers a poll whose client may be gone. */
	r = st->ops->read_in(st, s->id, s->poll_after, s->poll_from, s->poll_max,
			     s->core->cfg->max_batch_bytes, s->poll_wait, !s->parked,
			     session_read_done, s);
	if (r) {
		s->reading = 0;
		session_answer_waiter(s, r, NULL);
		session_shadow_done(s);
		session_release(s);
	}
}

/* A poll for a session this instance does not hold, answered at once (the
 * store knows whether it never existed or has ended). */
struct pb_poll_direct {
	pb_core_poll_cb cb;
	void *req;
};

/* Store answer to a direct read. */
static void core_poll_direct_done(void *arg, int err, const struct pb_store_batch *b)
{
	struct pb_poll_direct *d = arg;

	d->cb(d->req, err, b);
	free(d);
}

/* Read once and answer, without waiting. */
static void core_poll_direct(struct pb_core *c, const char *id, uint64_t after, uint64_t from,
			     size_t max, pb_core_poll_cb cb, void *req)
{
	struct pb_poll_direct *d = malloc(sizeof(*d));
	int r;

	if (!d) {
		cb(req, PB_ENOMEM, NULL);
		return;
	}
	d->cb = cb;
	d->req = req;
	r = c->store->ops->read_in(c->store, id, after, from, max, c->cfg->max_batch_bytes, 0, 1,
				   core_poll_direct_done, d);
	if (r) {
		free(d);
		cb(req, r, NULL);
	}
}

/* A poll (stream 0) or a stream's read: acknowledge <= after, answer
 * with what lies past from, waiting up to wait seconds. A stream's later
 * reads (first 0) are refused as released once a newer poll or stream has
 * taken the session, even if that happened while the stream was writing. */
static void core_read(struct pb_core *c, const char *id, uint64_t after, uint64_t from,
		      unsigned wait, size_t max, uint64_t stream, int first,
		      pb_core_poll_cb cb, void *req)
{
	struct pb_session *s = session_find(c, id);

	if (stream && !first && s && s->stream != stream) {
		struct pb_store_batch b = { 0 };

		b.released = 1;
		cb(req, 0, &b);
		return;
	}

	if (max > c->cfg->max_batch)
		max = c->cfg->max_batch;
	if (from < after)
		from = after;
	if (c->draining)
		wait = 0;
	if ((s && s->state == PB_S_CONNECTING) ||
	    (!s && (!pb_store_shared(c->store) || !wait))) {
		/* Not handed out yet (or being dialled again after an adoption:
		 * its timer is the connect deadline), unknown here, or nothing
		 * to wait for: answer at once. */
		core_poll_direct(c, id, after, from, max, cb, req);
		return;
	}
	if (!s) {
		/* Owned elsewhere: wait here in a shadow. */
		s = session_new(c, id, 0);
		if (!s) {
			cb(req, PB_ENOMEM, NULL);
			return;
		}
		s->state = PB_S_OPEN;
	}
	/* The single-waiter rule: a newer poll releases the older one, here
	 * at once and on other instances through the store. */
	if (s->poll_cb)
		session_answer_empty(s);
	s->poll_cb = cb;
	s->poll_req = req;
	s->poll_after = after;
	s->poll_from = from;
	s->poll_max = max;
	s->poll_wait = wait;
	s->poll_token = ++c->tokens;
	s->stream = stream;
	if (c->store->ops->announce_waiter)
		c->store->ops->announce_waiter(c->store, s->id, s->poll_token);
	uv_timer_stop(&s->timer);
	if (!s->reading)
		session_read_for_waiter(s);
	else
		s->stale = 1;
}

void pb_core_poll(struct pb_core *c, const char *id, uint64_t after, unsigned wait, size_t max,
		  pb_core_poll_cb cb, void *req)
{
	core_read(c, id, after, after, wait > c->cfg->wait_max ? c->cfg->wait_max : wait, max,
		  0, 0, cb, req);
}

void pb_core_stream_read(struct pb_core *c, const char *id, uint64_t after, uint64_t from,
			 unsigned wait, uint64_t stream, int first, pb_core_poll_cb cb, void *req)
{
	core_read(c, id, after, from, wait, c->cfg->max_batch, stream, first, cb, req);
}

/* ---- inbound: upstream -> store ---------------------------------------- */

/* Store answer to an inbound append of the s->pushing oldest messages. */
static void session_pushed_in(void *arg, int err, uint64_t seq, size_t depth)
{
	struct pb_session *s = arg;
	int n = s->pushing;

	s->pushing = 0;
	if (err == PB_ESTORE || err == PB_ENOMEM) {
		/* Keep them; they are sent again, in order, when the store is
		 * back: nothing is dropped. */
		if (!s->store_wait)
			pb_log_warn("session %.6s: store unavailable, holding %zu upstream messages",
				    s->id, s->in.count);
		s->store_wait = 1;
	} else {
		/* Stored, or refused for good (the session ended meanwhile). */
		for (int i = 0; i < n; i++) {
			struct pb_msg *m = pb_msgq_pop(&s->in);

			if (!err) {
				pb_metrics_add(PB_C_MSGS_IN, 1);
				pb_metrics_add(PB_C_BYTES_IN, m->len);
			}
			pb_msg_unref(m);
		}
		if (!err) {
			s->full = depth >= s->core->cfg->queue_max;
			pb_metrics_observe(PB_H_QUEUE_DEPTH, (double)depth);
		}
	}
	session_update_pause(s);
	if (!s->in_push_loop)
		session_push_next(s);
	if (!s->in.count && !s->pushing && s->close_pending && s->state == PB_S_CLOSED)
		session_store_close(s);
	session_release(s);
}

/* Send waiting upstream messages to the store, oldest first, in batches of
 * up to PB_IN_BATCH, one batch at a time: a batch is stored whole or not
 * at all, and after a failure it is sent again, so the order holds. */
static void session_push_next(struct pb_session *s)
{
	struct pb_store *st = s->core->store;
	struct pb_msg *batch[PB_IN_BATCH];

	if (s->in_push_loop)
		return;
	s->in_push_loop = 1;
	while (!s->pushing && s->in.count && !s->store_wait && s->state != PB_S_ENDED &&
	       s->state != PB_S_CONNECTING) {
		size_t n = s->in.count < PB_IN_BATCH ? s->in.count : PB_IN_BATCH;

		for (size_t i = 0; i < n; i++)
			batch[i] = pb_msgq_at(&s->in, i);
		s->pushing = (int)n;
		session_hold(s);
		if (st->ops->push_in(st, s->id, batch, n, session_pushed_in, s)) {
			s->pushing = 0;
			s->store_wait = 1;
			session_update_pause(s);
			session_release(s);
		}
	}
	s->in_push_loop = 0;
}

/* Queue an upstream message (ownership of m passes here) for the store. */
static void session_take_in(struct pb_session *s, struct pb_msg *m)
{
	if (pb_msgq_push(&s->in, m)) {
		pb_log_error("session %.6s: out of memory, upstream message lost", s->id);
		pb_msg_unref(m);
		return;
	}
	session_update_pause(s);
	session_push_next(s);
}

/* ---- outbound: store -> upstream --------------------------------------- */

/* Store answer to a fetch of outbound messages. */
static void session_fetched_out(void *arg, int err, const struct pb_store_batch *b)
{
	struct pb_session *s = arg;

	s->fetching = 0;
	if (!err && s->state == PB_S_OPEN) {
		for (size_t i = 0; i < b->n && s->out.count < PB_OUT_FETCH; i++) {
			if (b->msgs[i]->seq <= s->out_fetched)
				continue;
			if (pb_msgq_push(&s->out, pb_msg_ref(b->msgs[i]))) {
				pb_msg_unref(b->msgs[i]);
				s->refetch = 1;
				break;
			}
			s->out_fetched = b->msgs[i]->seq;
		}
		if (b->n && b->msgs[b->n - 1]->seq > s->out_fetched)
			s->refetch = 1;
		if (s->out.count && s->up)
			pb_upstream_want_write(s->up);
	}
	session_release(s);
}

/* Fetch what the store holds for the upstream beyond what we have. */
static void session_fetch_out(struct pb_session *s)
{
	struct pb_store *st = s->core->store;
	size_t room = PB_OUT_FETCH - s->out.count;

	if (s->state != PB_S_OPEN || !s->up || !s->owned)
		return;
	if (s->fetching || !room) {
		s->refetch = 1;
		return;
	}
	s->fetching = 1;
	s->refetch = 0;
	session_hold(s);
	if (st->ops->read_out(st, s->id, s->out_fetched, room, session_fetched_out, s)) {
		s->fetching = 0;
		s->refetch = 1;
		session_release(s);
	}
}

/* Store answer to an acknowledgement of written messages. */
static void session_acked_out(void *arg, int err)
{
	session_release(arg);
}

/* ---- upstream events --------------------------------------------------- */

/* Store answer to an upstream close. */
static void session_close_stored(void *arg, int err)
{
	struct pb_session *s = arg;

	if (err == PB_ESTORE && s->state != PB_S_ENDED)
		s->close_pending = 1;   /* retried on resync */
	session_release(s);
}

/* Record the upstream's close in the store. */
static void session_store_close(struct pb_session *s)
{
	struct pb_store *st = s->core->store;

	s->close_pending = 0;
	session_hold(s);
	if (st->ops->close(st, s->id, s->close_code, s->close_reason, s->close_reason_len,
			   session_close_stored, s)) {
		s->close_pending = 1;   /* store unavailable: retried on resync */
		session_release(s);
	}
}

/* The upstream is gone with code and reason: the session is closed. The
 * store learns it after every message that came before the close. */
static void session_mark_closed(struct pb_session *s, int code, const char *reason,
				size_t reason_len, const char *why)
{
	pb_msgq_drop(&s->out, s->out.count);
	session_set_state(s, PB_S_CLOSED, why);
	s->close_code = code;
	s->close_reason_len = reason_len < sizeof(s->close_reason) ?
			      reason_len : sizeof(s->close_reason);
	memcpy(s->close_reason, reason, s->close_reason_len);
	if (s->in.count || s->pushing)
		s->close_pending = 1;
	else
		session_store_close(s);
	if (!s->parked)
		session_touch(s);
}

/* Store answer to a create after the handshake. */
static void session_created(void *arg, int err)
{
	struct pb_session *s = arg;
	pb_core_create_cb cb = s->create_cb;
	void *req = s->create_req;

	s->create_cb = NULL;
	if (s->state != PB_S_CONNECTING || !cb) {
		/* Drained or failed meanwhile; the request was answered then. */
		session_release(s);
		return;
	}
	if (err) {
		cb(req, err, NULL, NULL);
		session_forget(s, "the store refused the session");
		session_release(s);
		return;
	}
	session_set_state(s, PB_S_OPEN, "upstream handshake done");
	pb_metrics_add(PB_C_SESSIONS_CREATED, 1);
	session_touch(s);
	session_push_next(s);
	cb(req, 0, s->id, s->protocol[0] ? s->protocol : NULL);
	session_release(s);
}

/* Upstream handshake done: record the session (or, after an adoption,
 * tell the client the upstream was dialled again), then carry on. */
static void up_opened(void *arg, const char *protocol)
{
	struct pb_session *s = arg;
	struct pb_store *st = s->core->store;
	int r;

	uv_timer_stop(&s->timer);
	pb_metrics_add(PB_C_UPSTREAM_CONNECTS, 1);
	pb_metrics_observe(PB_H_HANDSHAKE_SECONDS,
			   (double)(uv_hrtime() - s->dial_ns) / 1e9);
	snprintf(s->protocol, sizeof(s->protocol), "%s", protocol ? protocol : "");
	if (s->adopting) {
		struct pb_msg *m = pb_msg_new(PB_MSG_REOPEN, NULL, 0);

		s->adopting = 0;
		session_set_state(s, PB_S_OPEN, "upstream dialled again");
		if (m)
			session_take_in(s, m);
		session_touch(s);
		session_fetch_out(s);
		return;
	}
	session_hold(s);
	r = st->ops->create(st, s->id, s->route->name, protocol, session_created, s);
	if (r) {
		pb_core_create_cb cb = s->create_cb;

		s->create_cb = NULL;
		cb(s->create_req, r, NULL, NULL);
		session_forget(s, "store unavailable");
		session_release(s);
	}
}

/* Adoption could not reach the upstream again: close the session. */
static void session_redial_failed(struct pb_session *s, const char *why)
{
	pb_log_info("session %.6s: re-dial of %s failed: %s", s->id, s->route->name, why);
	s->adopting = 0;
	s->up = NULL;
	session_mark_closed(s, 1006, "upstream unreachable after adoption", 35,
			    "re-dial failed");
}

/* The dial failed: answer the creator and drop the session. */
static void up_failed(void *arg, int err, const char *why)
{
	struct pb_session *s = arg;
	pb_core_create_cb cb = s->create_cb;

	pb_metrics_add(PB_C_UPSTREAM_FAILURES, 1);
	if (s->adopting) {
		session_redial_failed(s, why);
		return;
	}
	pb_metrics_add(PB_C_CREATE_FAILED, 1);
	pb_log_info("session %.6s: upstream %s: %s", s->id, s->route->name, why);
	s->up = NULL;
	s->create_cb = NULL;
	if (cb)
		cb(s->create_req, err, NULL, NULL);
	session_forget(s, "upstream unreachable");
}

/* A whole message from the upstream: on to the store. */
static void up_message(void *arg, struct pb_msg *m)
{
	session_take_in(arg, m);
}

/* The upstream closed: the session is closed, its messages stay readable. */
static void up_closed(void *arg, int code, const char *reason, size_t reason_len)
{
	struct pb_session *s = arg;

	s->up = NULL;
	s->paused = 0;
	pb_metrics_add(PB_C_UPSTREAM_CLOSES, 1);
	if (s->state == PB_S_CONNECTING) {
		/* Closed before the store recorded it: the creator learns now. */
		pb_core_create_cb cb = s->create_cb;

		s->create_cb = NULL;
		if (cb)
			cb(s->create_req, PB_EUPSTREAM, NULL, NULL);
		session_forget(s, "upstream closed during the handshake");
		return;
	}
	session_mark_closed(s, code, reason, reason_len, "upstream closed");
}

/* The upstream can take a message: hand over the next fetched one. */
static struct pb_msg *up_next_out(void *arg)
{
	struct pb_session *s = arg;
	struct pb_store *st = s->core->store;
	struct pb_msg *m;

	/* libwebsockets asks again only once its own buffer is empty, so all
	 * handed over so far has left this process: now the store may forget
	 * it. (A message is never forgotten while it could still be lost
	 * here; after a crash it may be written a second time instead.) */
	if (s->out_written > s->out_acked) {
		s->out_acked = s->out_written;
		session_hold(s);
		if (st->ops->ack_out(st, s->id, s->out_acked, session_acked_out, s))
			session_release(s);
	}
	m = pb_msgq_pop(&s->out);
	if (m) {
		s->out_written = m->seq;
		pb_metrics_add(PB_C_MSGS_OUT, 1);
		pb_metrics_add(PB_C_BYTES_OUT, m->len);
	}
	if (s->out.count < PB_OUT_FETCH / 2 && s->refetch)
		session_fetch_out(s);
	return m;
}

static const struct pb_upstream_handler pb_session_upstream = {
	.opened = up_opened,
	.failed = up_failed,
	.message = up_message,
	.closed = up_closed,
	.next_out = up_next_out,
};

/* Dial the session's route with the client's headers (fwd may be NULL).
 * 0 or an error (nothing to undo). */
static int session_dial(struct pb_session *s, const char *protocols, const char *origin,
			const struct pb_upstream_headers *fwd)
{
	struct pb_core *c = s->core;
	struct pb_upstream_dial d = { 0 };
	int r = 0;

	d.route = s->route;
	d.protocols = protocols;
	d.origin = s->route->origin ? s->route->origin : origin;
	d.headers = fwd;
	d.max_message_bytes = c->cfg->max_message_bytes;
	pb_log_debug("session %.6s: dialling %s (%s)", s->id, s->route->name, s->route->url);
	s->dial_ns = uv_hrtime();
	s->up = pb_upstream_dial(c->up, &d, &pb_session_upstream, s, &r);
	if (!s->up)
		return r ? r : PB_EUPSTREAM;
	uv_timer_start(&s->timer, session_timer_cb, (uint64_t)c->cfg->connect_timeout * 1000, 0);
	return 0;
}

/* ---- ending ----------------------------------------------------------- */

/* Store answer to the idle check. */
static void session_idle_checked(void *arg, int err, int ended, uint64_t remaining_ms)
{
	struct pb_session *s = arg;

	if (s->state == PB_S_ENDED) {
		/* Gone meanwhile. */
	} else if (!err && ended) {
		pb_metrics_add(PB_C_END_IDLE, 1);
		session_close_upstream(s, 1001, "idle timeout");
		session_answer_waiter(s, PB_ECLOSED, NULL);
		session_forget(s, "idle timeout");
	} else if (!err) {
		/* A request reached another instance meanwhile. */
		if (!s->parked)
			uv_timer_start(&s->timer, session_timer_cb, remaining_ms ? remaining_ms : 1, 0);
	} else if (err == PB_ENOSESSION || err == PB_ECLOSED) {
		session_answer_waiter(s, PB_ECLOSED, NULL);
		session_forget(s, "ended elsewhere");
	} else {
		session_touch(s);       /* store unavailable: check again later */
	}
	session_release(s);
}

/* The idle deadline passed here: end the session unless a request reached
 * another instance meanwhile (the store knows). */
static void session_idle_expired(struct pb_session *s)
{
	struct pb_store *st = s->core->store;

	session_hold(s);
	if (st->ops->end_if_idle(st, s->id, session_idle_checked, s)) {
		session_touch(s);
		session_release(s);
	}
}

/* The session ended (DELETE here or on another instance): close the
 * upstream with 1000 and let a waiting poll know. */
static void session_end_here(struct pb_session *s, const char *why)
{
	if (s->owned)
		pb_metrics_add(PB_C_END_DELETED, 1);
	session_hold(s);
	session_close_upstream(s, 1000, "");
	session_answer_waiter(s, PB_ECLOSED, NULL);
	session_forget(s, why);
	session_release(s);
}

/* ---- timers ------------------------------------------------------------ */

/* The session's one timer: connect deadline, poll deadline or idle. */
static void session_timer_cb(uv_timer_t *t)
{
	struct pb_session *s = t->data;

	if (s->state == PB_S_CONNECTING && s->adopting) {
		pb_metrics_add(PB_C_UPSTREAM_FAILURES, 1);
		session_close_upstream(s, 1000, "");
		session_redial_failed(s, "handshake timed out");
	} else if (s->state == PB_S_CONNECTING) {
		pb_core_create_cb cb = s->create_cb;

		pb_metrics_add(PB_C_UPSTREAM_FAILURES, 1);
		pb_metrics_add(PB_C_CREATE_FAILED, 1);
		pb_log_info("session %.6s: upstream %s: handshake timed out", s->id, s->route->name);
		s->create_cb = NULL;
		if (cb)
			cb(s->create_req, PB_ETIMEOUT, NULL, NULL);
		session_forget(s, "upstream handshake timed out");
	} else if (s->parked) {
		/* Deadline: one last read, answered whatever it finds. */
		s->poll_wait = 0;
		if (s->reading)
			s->reread = 1;
		else
			session_read_for_waiter(s);
	} else if (s->owned) {
		session_idle_expired(s);
	} else if (!s->poll_cb) {
		session_forget(s, "no poll for a while");
	}
}

/* ---- store wakeups ----------------------------------------------------- */

/* Something changed on the inbound side of id. */
static void core_on_inbound(void *arg, const char *id)
{
	struct pb_session *s = session_find(arg, id);

	if (!s || !s->poll_cb)
		return;
	if (s->reading) {
		s->reread = 1;
		return;
	}
	if (s->parked)
		session_read_for_waiter(s);
}

/* New client messages for id's upstream. */
static void core_on_outbound(void *arg, const char *id)
{
	struct pb_session *s = session_find(arg, id);

	if (s)
		session_fetch_out(s);
}

/* The client acknowledged messages of id: an upstream paused because the
 * queue was full may read again (the next append tells if it still is). */
static void core_on_acked(void *arg, const char *id)
{
	struct pb_session *s = session_find(arg, id);

	if (s && s->full) {
		s->full = 0;
		session_update_pause(s);
	}
}

/* id ended (DELETE, idle, or its last message acknowledged) somewhere:
 * close the upstream; a waiting poll reads once more, which tells it how
 * (the final closed batch, or 410), and then the session is forgotten. */
static void core_on_ended(void *arg, const char *id)
{
	struct pb_session *s = session_find(arg, id);

	if (!s)
		return;
	session_close_upstream(s, 1000, "");
	if (!s->poll_cb)
		session_end_here(s, "ended");
	else if (s->reading)
		s->reread = 1;
	else
		session_read_for_waiter(s);
}

/* A poll on id started on some instance: an older one here gives way. */
static void core_on_waiter(void *arg, const char *id, const char *instance, uint64_t token)
{
	struct pb_core *c = arg;
	struct pb_session *s = session_find(c, id);

	if (!s || strcmp(instance, c->store->limits.instance) == 0)
		return;
	s->stream = 0;          /* a stream here ends at its next read */
	if (!s->poll_cb)
		return;
	session_hold(s);
	session_answer_empty(s);
	session_shadow_done(s);
	session_release(s);
}

/* Call fn on every session this instance holds (safe if fn forgets it). */
static void core_each(struct pb_core *c, void (*fn)(struct pb_session *s))
{
	size_t n = pb_map_count(c->sessions);
	struct pb_session **all;

	if (!n)
		return;
	all = malloc(n * sizeof(*all));
	if (!all)
		return;
	n = pb_map_values(c->sessions, (void **)all, n);
	for (size_t i = 0; i < n; i++)
		session_hold(all[i]);
	for (size_t i = 0; i < n; i++) {
		if (all[i]->state != PB_S_ENDED)
			fn(all[i]);
		session_release(all[i]);
	}
	free(all);
}

/* After missed wakeups: re-read for waiting polls, retry the store. */
static void session_resync(struct pb_session *s)
{
	if (!s->pushing)
		s->store_wait = 0;      /* every failed append has answered */
	session_push_next(s);
	if (!s->in.count && !s->pushing && s->close_pending && s->state == PB_S_CLOSED)
		session_store_close(s);
	if (s->owned)
		session_fetch_out(s);
	if (s->parked && !s->reading)
		session_read_for_waiter(s);
}

/* The store may have missed wakeups (it reconnected). */
static void core_on_resync(void *arg)
{
	core_each(arg, session_resync);
}

/* The store went up or down. */
static void core_on_health(void *arg, int up)
{
	pb_log_warn("store %s", up ? "available again" : "unavailable");
	if (up)
		core_each(arg, session_resync);
}

/* ---- leases and adoption (shared stores) ------------------------------- */

/* Store answer to a lease renewal. */
static void session_renewed(void *arg, int err)
{
	struct pb_session *s = arg;

	if (s->state == PB_S_ENDED) {
		/* Gone meanwhile. */
	} else if (err == PB_ELOST) {
		/* Another instance adopted it (our lease lapsed): let go. */
		pb_metrics_add(PB_C_END_MOVED, 1);
		session_close_upstream(s, 1001, "moved to another instance");
		session_answer_empty(s);
		session_forget(s, "adopted by another instance");
	} else if (err == PB_ENOSESSION || err == PB_ECLOSED) {
		session_end_here(s, "ended elsewhere");
	} else if (!err && s->state == PB_S_OPEN && !s->out.count) {
		/* A wakeup for client messages can be missed (sent before our
		 * subscription took effect, or while it was being restored):
		 * look once a second, so such messages wait a second at most. */
		session_fetch_out(s);
	}
	session_release(s);
}

/* Renew the lease of one owned session. */
static void session_renew(struct pb_session *s)
{
	struct pb_store *st = s->core->store;

	if (!s->owned || (s->state == PB_S_CONNECTING && !s->adopting))
		return;
	session_hold(s);
	if (st->ops->renew(st, s->id, session_renewed, s))
		session_release(s);
}

/* Take over a session whose owner died or drained. */
static void core_adopt(struct pb_core *c, const char *id, const struct pb_store_claim *cl)
{
	const struct pb_route *route = pb_config_route(c->cfg, cl->route);
	struct pb_session *s = session_find(c, id);
	int code = cl->drained ? 1012 : 1006;
	const char *reason = cl->drained ? "instance drained" : "instance lost";

	if (s && s->owned)
		return;
	if (!s) {
		s = session_new(c, id, 1);
		if (!s)
			return;
	} else {
		s->owned = 1;
		c->owned++;
		pb_metrics_gauge(PB_G_SESSIONS, 1);
	}
	pb_metrics_add(PB_C_SESSIONS_ADOPTED, 1);
	s->route = route;
	pb_log_info("session %.6s: adopted from a %s instance", s->id,
		    cl->drained ? "drained" : "lost");
	if (cl->closed) {
		session_set_state(s, PB_S_CLOSED, "adopted after the upstream closed");
		if (!s->parked)
			session_touch(s);
		return;
	}
	s->state = PB_S_OPEN;
	if (route && route->redial) {
		session_set_state(s, PB_S_CONNECTING, "adopted: dialling the upstream again");
		s->adopting = 1;
		/* The client's subprotocols, Origin and forwarded headers
		 * lived only on the instance that created the session. */
		if (session_dial(s, NULL, NULL, NULL) == 0)
			return;
		session_redial_failed(s, "dial failed");
		return;
	}
	session_mark_closed(s, code, reason, strlen(reason),
			    route ? "adopted without redial" : "adopted: route not configured here");
}

/* A claim in flight. */
struct pb_claim_op {
	struct pb_core *c;
	char id[PB_ID_LEN + 1];
};

/* Store answer to a claim. */
static void core_claimed(void *arg, int err, const struct pb_store_claim *cl)
{
	struct pb_claim_op *op = arg;

	if (!err && !op->c->draining && op->c->sessions)
		core_adopt(op->c, op->id, cl);
	free(op);
}

/* Store answer to the orphan scan: claim each one. */
static void core_orphans(void *arg, int err, const char *const *ids, size_t n)
{
	struct pb_core *c = arg;

	for (size_t i = 0; !err && !c->draining && c->sessions && i < n; i++) {
		struct pb_session *s = session_find(c, ids[i]);
		struct pb_claim_op *op;

		if ((s && s->owned) || !pb_session_id_valid(ids[i], strlen(ids[i])))
			continue;
		op = malloc(sizeof(*op));
		if (!op)
			return;
		op->c = c;
		memcpy(op->id, ids[i], PB_ID_LEN + 1);
		if (c->store->ops->claim(c->store, op->id, core_claimed, op))
			free(op);
	}
}

/* Every second: renew our leases, look for orphans to adopt. */
static void core_adopt_tick(uv_timer_t *t)
{
	struct pb_core *c = t->data;

	if (c->draining || !c->store->ops->healthy(c->store))
		return;
	core_each(c, session_renew);
	c->store->ops->orphans(c->store, core_orphans, c);
}

/* ---- requests ---------------------------------------------------------- */

/* The per-client-address session count of addr (created if asked). */
static struct pb_client *core_client(struct pb_core *c, const char *addr, int create)
{
	struct pb_client *cl = pb_map_get(c->clients, addr, strlen(addr));

	if (cl || !create)
		return cl;
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		return NULL;
	snprintf(cl->addr, sizeof(cl->addr), "%s", addr);
	if (pb_map_put(c->clients, cl->addr, strlen(cl->addr), cl)) {
		free(cl);
		return NULL;
	}
	return cl;
}

/* A session of a client address ended here: count it out. */
static void core_client_done(struct pb_core *c, const char *addr)
{
	struct pb_client *cl = addr[0] ? core_client(c, addr, 0) : NULL;

	if (cl && --cl->sessions == 0) {
		pb_map_del(c->clients, cl->addr, strlen(cl->addr));
		free(cl);
	}
}

void pb_core_create(struct pb_core *c, const struct pb_create_req *cr, const char *client_addr,
		    const char *client_origin, const struct pb_upstream_headers *fwd,
		    pb_core_create_cb cb, void *req)
{
	struct pb_client *client = NULL;
	const struct pb_route *route = pb_config_route(c->cfg, cr->route);
	char id[PB_ID_LEN + 1];
	struct pb_session *s;
	struct pb_buf protos;
	int r = 0;

	if (!route) {
		cb(req, PB_ENOROUTE, NULL, NULL);
		return;
	}
	if (c->draining) {
		cb(req, PB_EDRAINING, NULL, NULL);
		return;
	}
	if (c->owned >= c->cfg->max_sessions) {
		cb(req, PB_ETOOMANY, NULL, NULL);
		return;
	}
	if (!c->store->ops->healthy(c->store)) {
		cb(req, PB_ESTORE, NULL, NULL);
		return;
	}
	if (c->cfg->max_sessions_per_client && client_addr && client_addr[0]) {
		client = core_client(c, client_addr, 1);
		if (!client) {
			cb(req, PB_ENOMEM, NULL, NULL);
			return;
		}
		if (client->sessions >= c->cfg->max_sessions_per_client) {
			cb(req, PB_ECLIENTMAX, NULL, NULL);
			return;
		}
	}
	do {
		r = pb_session_id_new(id);
	} while (!r && pb_map_get(c->sessions, id, PB_ID_LEN));
	s = r ? NULL : session_new(c, id, 1);
	if (!s) {
		cb(req, r ? r : PB_ENOMEM, NULL, NULL);
		return;
	}
	s->route = route;
	s->state = PB_S_CONNECTING;
	s->create_cb = cb;
	s->create_req = req;
	if (client) {
		client->sessions++;
		snprintf(s->client, sizeof(s->client), "%s", client->addr);
	}
	pb_buf_init(&protos, 0);
	for (size_t i = 0; i < cr->nprotocols && !r; i++)
		r = pb_buf_printf(&protos, "%s%s", i ? ", " : "", cr->protocols[i]);
	if (!r)
		r = session_dial(s, protos.len ? protos.data : NULL, client_origin, fwd);
	pb_buf_free(&protos);
	if (r) {
		s->create_cb = NULL;
		cb(req, r, NULL, NULL);
		session_forget(s, "upstream unreachable");
	}
}

/* A send in flight: the front's callback. */
struct pb_send_op {
	struct pb_session *s;   /* NULL when this instance does not hold it */
	pb_core_send_cb cb;
	void *req;
};

/* Store answer to a send. */
static void core_send_done(void *arg, int err, const struct pb_store_send_result *r)
{
	struct pb_send_op *op = arg;

	op->cb(op->req, err, r);
	if (op->s)
		session_release(op->s);
	free(op);
}

void pb_core_send(struct pb_core *c, const char *id, const struct pb_send_req *sr,
		  pb_core_send_cb cb, void *req)
{
	struct pb_session *s = session_find(c, id);
	struct pb_send_op *op = malloc(sizeof(*op));
	int r;

	if (!op) {
		cb(req, PB_ENOMEM, NULL);
		return;
	}
	op->s = s ? session_hold(s) : NULL;
	op->cb = cb;
	op->req = req;
	if (s && !s->parked)
		session_touch(s);
	r = c->store->ops->push_out(c->store, id, sr->msgs, sr->n, sr->seq, core_send_done, op);
	if (r) {
		if (op->s)
			session_release(op->s);
		free(op);
		cb(req, r, NULL);
	}
}

/* A delete in flight. */
struct pb_delete_op {
	struct pb_core *c;
	char id[PB_ID_LEN + 1];
	pb_core_done_cb cb;
	void *req;
};

/* Store answer to a delete: end the session here too. */
static void core_delete_done(void *arg, int err)
{
	struct pb_delete_op *op = arg;
	struct pb_session *s = err ? NULL : session_find(op->c, op->id);

	if (s)
		session_end_here(s, "deleted by the client");
	op->cb(op->req, err);
	free(op);
}

void pb_core_delete(struct pb_core *c, const char *id, pb_core_done_cb cb, void *req)
{
	struct pb_delete_op *op = malloc(sizeof(*op));
	int r;

	if (!op) {
		cb(req, PB_ENOMEM);
		return;
	}
	op->c = c;
	snprintf(op->id, sizeof(op->id), "%s", id);
	op->cb = cb;
	op->req = req;
	r = c->store->ops->end(c->store, id, core_delete_done, op);
	if (r) {
		free(op);
		cb(req, r);
	}
}

/* ---- drain ------------------------------------------------------------- */

/* Store answer to a release. */
static void session_released(void *arg, int err)
{
	struct pb_session *s = arg;

	s->core->releasing--;
	session_release(s);
}

/* Drain one session. Single instance: it closes with 1001. Shared store:
 * it is released for another instance to adopt, and its poll answered
 * empty so the client polls again elsewhere. */
static void session_drain(struct pb_session *s)
{
	struct pb_store *st = s->core->store;

	if (s->state == PB_S_CONNECTING && !s->adopting) {
		pb_core_create_cb cb = s->create_cb;

		s->create_cb = NULL;
		if (cb)
			cb(s->create_req, PB_EDRAINING, NULL, NULL);
		session_forget(s, "instance draining");
		return;
	}
	if (!pb_store_shared(st)) {
		if (s->state == PB_S_OPEN) {
			pb_metrics_add(PB_C_END_DRAINED, 1);
			session_close_upstream(s, 1001, "going away");
			session_mark_closed(s, 1001, "instance draining", 17, "instance draining");
		}
		return;
	}
	session_close_upstream(s, 1001, "going away");
	session_answer_empty(s);
	if (s->owned) {
		pb_metrics_add(PB_C_END_MOVED, 1);
		session_hold(s);
		s->core->releasing++;
		if (st->ops->release(st, s->id, session_released, s)) {
			s->core->releasing--;
			session_release(s);
		}
	}
	session_forget(s, "instance draining");
}

void pb_core_drain(struct pb_core *c)
{
	c->draining = 1;
	if (c->adopt_timer_on)
		uv_timer_stop(&c->adopt_timer);
	core_each(c, session_drain);
}

/* ---- the core ---------------------------------------------------------- */

struct pb_core *pb_core_new(uv_loop_t *loop, const struct pb_config *cfg,
			    struct pb_upstream_ctx *up)
{
	struct pb_core *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->sessions = pb_map_new();
	c->clients = pb_map_new();
	if (!c->sessions || !c->clients) {
		pb_map_free(c->sessions);
		pb_map_free(c->clients);
		free(c);
		return NULL;
	}
	c->loop = loop;
	c->cfg = cfg;
	c->up = up;
	uv_timer_init(loop, &c->adopt_timer);
	c->adopt_timer.data = c;
	return c;
}

struct pb_store_events pb_core_store_events(struct pb_core *c)
{
	struct pb_store_events ev = {
		.inbound = core_on_inbound,
		.outbound = core_on_outbound,
		.ended = core_on_ended,
		.acked = core_on_acked,
		.waiter = core_on_waiter,
		.resync = core_on_resync,
		.health = core_on_health,
		.arg = c,
	};

	return ev;
}

void pb_core_attach_store(struct pb_core *c, struct pb_store *store)
{
	c->store = store;
	if (pb_store_shared(store)) {
		uv_timer_start(&c->adopt_timer, core_adopt_tick, PB_ADOPT_INTERVAL_MS,
			       PB_ADOPT_INTERVAL_MS);
		c->adopt_timer_on = 1;
	}
}

/* Answer and forget one session at shutdown. */
static void session_shutdown(struct pb_session *s)
{
	session_answer_empty(s);
	session_forget(s, "shutdown");
}

/* The core's timer is closed: free the core. */
static void core_freed(uv_handle_t *h)
{
	free(h->data);
}

void pb_core_free(struct pb_core *c)
{
	if (!c)
		return;
	c->draining = 1;
	uv_timer_stop(&c->adopt_timer);
	core_each(c, session_shutdown);
	pb_map_free(c->sessions);
	c->sessions = NULL;
	pb_map_free(c->clients);        /* empty: every session counted out */
	c->clients = NULL;
	uv_close((uv_handle_t *)&c->adopt_timer, core_freed);
}

int pb_core_drained(const struct pb_core *c)
{
	return c->draining && c->releasing == 0;
}

size_t pb_core_session_count(const struct pb_core *c)
{
	return c->owned;
}

int pb_core_healthy(const struct pb_core *c)
{
	return c->store && c->store->ops->healthy(c->store);
}
