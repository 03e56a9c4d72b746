/*
 * session_waiter.c: a session's waiter slot (see session_int.h): the one
 * poll or stream that waits on it, the single-waiter rule, and the reads
 * that answer it.
 *
 * The slot is EMPTY, ARRIVED (a request came and its first read is in
 * flight: only that read may end the session, since a request woken later
 * may have lost its client) or PARKED (waiting for a wakeup or its
 * deadline). A newer request releases the older one with an empty open
 * batch. Reads for the slot are re-issued when a wakeup or a newer request
 * comes while one is in flight (reread, stale), so an asynchronous store
 * never answers a request with another's cursor.
 *
 * A request for a session this instance does not hold is read once and
 * answered at once, unless the store is shared and it wants to wait: then
 * it waits here in a shadow session, which lingers (still watched) for
 * idle_timeout after its last request.
 *
 * Every answer is a struct pb_core_batch: what the store's read found
 * (core_batch()), or an empty batch with released set, which only the
 * core makes.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "metrics.h"
#include "session_int.h"

static const char *const pb_waiter_names[] = { "empty", "arrived", "parked" };

static void waiter_read(struct pb_session *s);

/* The slot's one state setter; the parked gauge follows it. */
static void waiter_set_state(struct pb_session *s, enum pb_waiter_state st)
{
	if (s->w.state == st)
		return;
	pb_log_debug("session %.6s: waiter %s -> %s", s->id, pb_waiter_names[s->w.state],
		     pb_waiter_names[st]);
	if (s->w.state == PB_W_PARKED)
		pb_metrics_gauge(PB_G_POLLS_WAITING, -1);
	if (st == PB_W_PARKED)
		pb_metrics_gauge(PB_G_POLLS_WAITING, 1);
	s->w.state = st;
}

/* The core's answer (in *out) for what a store's read found: NULL for
 * NULL (an error). */
static const struct pb_core_batch *core_batch(const struct pb_store_batch *b,
					      struct pb_core_batch *out)
{
	if (!b)
		return NULL;
	memset(out, 0, sizeof(*out));
	out->msgs = b->msgs;
	out->n = b->n;
	out->last_seq = b->last_seq;
	out->close = b->close;
	return out;
}

/* Answer the request in the slot (if any) with err and b, and empty it. */
static void waiter_answer_core(struct pb_session *s, int err, const struct pb_core_batch *b)
{
	pb_core_poll_cb cb = s->w.cb;
	void *req = s->w.req;

	if (s->w.state == PB_W_EMPTY)
		return;
	waiter_set_state(s, PB_W_EMPTY);
	s->w.cb = NULL;
	s->w.req = NULL;
	session_touch(s);
	cb(req, err, b);
}

void waiter_answer(struct pb_session *s, int err, const struct pb_store_batch *b)
{
	struct pb_core_batch cb;

	waiter_answer_core(s, err, core_batch(b, &cb));
}

void waiter_release(struct pb_session *s)
{
	struct pb_core_batch b = { 0 };

	b.released = 1;
	waiter_answer_core(s, 0, &b);
}

void waiter_linger(struct pb_session *s)
{
	if (!s->owned && s->w.state == PB_W_EMPTY && !s->w.reading && s->state != PB_S_ENDED)
		session_arm(s, PB_DL_LINGER, (uint64_t)s->core->cfg->idle_timeout * 1000);
}

/* A read for the slot acknowledged b->acked. If the request now in the
 * slot acknowledges PB_AFTER_HANDED, pin that to b->acked for its further
 * reads: the handed mark has moved to what this read returned, which
 * nobody gets if the read is repeated (a newer request came meanwhile) and
 * is no news if the request parks (it returned nothing). */
static void waiter_resolve_handed(struct pb_session *s, const struct pb_store_batch *b)
{
	if (s->w.after != PB_AFTER_HANDED)
		return;
	s->w.after = b->acked;
	if (s->w.from == PB_AFTER_HANDED || s->w.from < s->w.after)
		s->w.from = s->w.after;
}

/* Nobody waits for the answer of an unhand. */
static void waiter_unhanded(void *arg, int err)
{
	(void)arg;
	(void)err;
}

/* A read whose request was let go meanwhile (a newer request elsewhere,
 * a drain, an adoption) returned messages nobody will get: it moved the
 * handed mark past them, so put the mark back, or a front door's next
 * request would acknowledge them unseen. */
static void waiter_unhand(struct pb_session *s, const struct pb_store_batch *b)
{
	struct pb_store *st = s->core->store;
	uint64_t last = b->msgs[b->n - 1]->seq, first = b->msgs[0]->seq;

	st->ops->unhand(st, s->id, last, first - 1, waiter_unhanded, NULL);
}

/* The read that answers the slot's request found nothing after its cursor
 * (and acknowledged up to it) on a session this instance owns, and the
 * request is a plain short poll: note it for core_read_quiet. Any append
 * answered later (the same connection's replies come in order) or inbound
 * wakeup clears it again. */
static void waiter_note_quiet(struct pb_session *s, int err, const struct pb_store_batch *b)
{
	struct pb_core *c = s->core;
	uint64_t ms = (uint64_t)c->cfg->idle_timeout * 1000 / 4;

	s->quiet.valid = 0;
	if (err || b->n || b->close.closed || b->ended || b->last_seq > s->w.after ||
	    !s->owned || s->state != PB_S_OPEN || !pb_store_shared(c->store) || s->w.stream ||
	    s->w.after == PB_AFTER_HANDED || s->w.from != s->w.after)
		return;
	s->quiet.valid = 1;
	s->quiet.after = s->w.after;
	s->quiet.last_seq = b->last_seq;
	s->quiet.until = uv_now(c->loop) + (ms < PB_QUIET_MS ? ms : PB_QUIET_MS);
}

/* Store answer to a read for the slot. */
static void waiter_read_done(void *arg, int err, const struct pb_store_batch *b)
{
	struct pb_session *s = arg;

	/* An error or the end of the session is the last word, whatever
	 * arrived during the read. */
	int final = err || b->ended;

	s->w.reading = 0;
	if (!final && s->w.state != PB_W_EMPTY)
		waiter_resolve_handed(s, b);
	if (s->w.state == PB_W_EMPTY) {
		/* Answered meanwhile (replaced by a newer request, deleted). */
		if (!err && b->n)
			waiter_unhand(s, b);
	} else if (!final && s->w.yield && (s->w.stale || (!b->n && !b->close.closed))) {
		/* A request on another instance came during the read, and the
		 * read found nothing for the request in the slot: it gives way.
		 * What a read for an older request returned was handed out to
		 * nobody (as above). */
		if (!err && b->n)
			waiter_unhand(s, b);
		waiter_release(s);
	} else if (!final && (s->w.stale || (s->w.reread && !b->n && !b->close.closed))) {
		/* A newer request came during the read (its cursor may differ),
		 * or a wakeup came while this read found nothing: read again. */
		waiter_read(s);
	} else if (final || b->n || b->close.closed || !s->w.wait) {
		waiter_note_quiet(s, err, b);
		waiter_answer(s, err, b);
		if (!err)
			pump_in_drained(s, b->depth);
		if (!err && b->ended && s->owned)
			pb_metrics_add(PB_C_END_COMPLETED, 1);
		if (!err && b->ended)
			session_forget(s, "client acknowledged the last message");
		else if (err == PB_ENOSESSION || err == PB_ECLOSED)
			session_forget(s, "ended");
	} else if (s->w.state == PB_W_ARRIVED) {
		waiter_set_state(s, PB_W_PARKED);
		session_arm(s, PB_DL_POLL, (uint64_t)s->w.wait * 1000);
	}
	waiter_linger(s);
	session_release(s);
}

/* Read the inbound queue for the request in the slot. */
static void waiter_read(struct pb_session *s)
{
	struct pb_store *st = s->core->store;
	int r;

	s->w.reading = 1;
	s->w.reread = 0;
	s->w.stale = 0;
	session_hold(s);
	/* Only the read a request makes on arrival may end the session: a
	 * read woken later answers a request whose client may be gone. */
	r = st->ops->read_in(st, s->id, s->w.after, s->w.from, s->w.max,
			     s->core->cfg->max_batch_bytes, s->w.wait, s->w.state == PB_W_ARRIVED,
			     waiter_read_done, s);
	if (r) {
		s->w.reading = 0;
		waiter_answer(s, r, NULL);
		waiter_linger(s);
		session_release(s);
	}
}

void waiter_wake(struct pb_session *s)
{
	if (s->w.state == PB_W_EMPTY)
		return;
	if (s->w.reading)
		s->w.reread = 1;
	else
		waiter_read(s);
}

/* The store runs a connection's commands in order, so this read finds
 * what the append brought: the answer comes one round trip after the
 * upstream's frame instead of two (the append's wakeup, then a read).
 * The wakeup still comes, and finds the read in flight (it asks for a
 * re-read only if the read finds nothing) or the slot answered. A read
 * that overtakes the append (a cluster redirection) finds nothing and
 * the request stays parked for the wakeup, as before. */
void waiter_read_behind_append(struct pb_session *s)
{
	if (s->w.state == PB_W_PARKED && !s->w.reading && pb_store_shared(s->core->store))
		waiter_read(s);
}

void waiter_deadline(struct pb_session *s)
{
	if (s->w.state != PB_W_PARKED)
		return;
	s->w.wait = 0;
	waiter_wake(s);
}

/* A request for a session this instance does not hold, answered at once
 * (the store knows whether it never existed or has ended). */
struct pb_read_direct {
	pb_core_poll_cb cb;
	void *req;
};

/* Store answer to a direct read. */
static void core_read_direct_done(void *arg, int err, const struct pb_store_batch *b)
{
	struct pb_read_direct *d = arg;
	struct pb_core_batch cb;

	d->cb(d->req, err, core_batch(b, &cb));
	free(d);
}

/* Read once and answer, without waiting. */
static void core_read_direct(struct pb_core *c, const char *id, uint64_t after, uint64_t from,
			     size_t max, pb_core_poll_cb cb, void *req)
{
	struct pb_read_direct *d = malloc(sizeof(*d));
	int r;

	if (!d) {
		cb(req, PB_ENOMEM, NULL);
		return;
	}
	d->cb = cb;
	d->req = req;
	r = c->store->ops->read_in(c->store, id, after, from, max, c->cfg->max_batch_bytes, 0, 1,
				   core_read_direct_done, d);
	if (r) {
		free(d);
		cb(req, r, NULL);
	}
}

/* A plain short poll (no wait, no stream, no flags) on a session this
 * instance owns, at the cursor where the slot's last read found nothing,
 * a moment ago, with no append of upstream messages in flight: the store
 * would answer the same (empty and open), so answer it here. (An append
 * in flight may already be in the store, where another instance can read
 * it before its answer comes back here: the store is asked.) Nothing depends on it: an empty answer leaves the
 * client's cursor where it was, and the store is asked again at least
 * every PB_QUIET_MS (which also records the client's activity there).
 * 1 if answered. */
static int core_read_quiet(struct pb_core *c, struct pb_session *s, uint64_t after,
			   uint64_t from, pb_core_poll_cb cb, void *req)
{
	struct pb_core_batch b = { 0 };

	if (!s->quiet.valid || s->quiet.after != after || from != after || !s->owned ||
	    s->state != PB_S_OPEN || c->draining || s->w.state != PB_W_EMPTY || s->w.reading ||
	    s->in.state == PB_IN_PUSHING || uv_now(c->loop) >= s->quiet.until)
		return 0;
	b.last_seq = s->quiet.last_seq;
	session_touch(s);
	cb(req, 0, &b);
	return 1;
}

void core_read(struct pb_core *c, const char *id, uint64_t after, uint64_t from,
	       unsigned wait, size_t max, uint64_t stream, int first, unsigned flags,
	       pb_core_poll_cb cb, void *req)
{
	struct pb_session *s = session_find(c, id);

	if (stream && !first && s && s->w.stream != stream) {
		/* A newer request took the slot, perhaps while this stream was
		 * writing: it ends. */
		struct pb_core_batch b = { 0 };

		b.released = 1;
		cb(req, 0, &b);
		return;
	}
	if ((flags & PB_POLL_EXCLUSIVE) && (!stream || first) && s &&
	    s->w.state != PB_W_EMPTY) {
		/* Another request waits here and keeps the slot. (Across
		 * instances the newest still wins: see session.h.) */
		cb(req, PB_EBUSY, NULL);
		return;
	}
	if (s && !wait && !stream && !flags && core_read_quiet(c, s, after, from, cb, req))
		return;
	if (max > c->cfg->max_batch)
		max = c->cfg->max_batch;
	/* PB_AFTER_HANDED is resolved by the store; from stays as given. */
	if (from < after && after != PB_AFTER_HANDED)
		from = after;
	if (c->draining)
		wait = 0;
	if ((s && s->state == PB_S_CONNECTING) ||
	    (!s && (!pb_store_shared(c->store) || !wait))) {
		/* Not handed out yet (or being dialled again after an adoption),
		 * unknown here, or nothing to wait for: answer at once. */
		core_read_direct(c, id, after, from, max, cb, req);
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
	/* The single-waiter rule: a newer request releases the older one,
	 * here at once and on other instances through the store. */
	waiter_release(s);
	s->w.cb = cb;
	s->w.req = req;
	s->w.after = after;
	s->w.from = from;
	s->w.max = max;
	s->w.wait = wait;
	s->w.token = ++c->tokens;
	s->w.stream = stream;
	s->w.yield = 0;         /* newer than any announcement seen so far */
	waiter_set_state(s, PB_W_ARRIVED);
	session_cluster_announce(s);
	session_arm(s, PB_DL_NONE, 0);
	if (!s->w.reading)
		waiter_read(s);
	else
		s->w.stale = 1;
}

void pb_core_poll_flags(struct pb_core *c, const char *id, uint64_t after, unsigned wait,
			size_t max, unsigned flags, pb_core_poll_cb cb, void *req)
{
	core_read(c, id, after, after, wait > c->cfg->wait_max ? c->cfg->wait_max : wait, max,
		  0, 0, flags, cb, req);
}

void pb_core_poll(struct pb_core *c, const char *id, uint64_t after, unsigned wait, size_t max,
		  pb_core_poll_cb cb, void *req)
{
	pb_core_poll_flags(c, id, after, wait, max, 0, cb, req);
}

int pb_core_poll_parked(struct pb_core *c, const char *id, const void *req)
{
	const struct pb_session *s = session_find(c, id);

	return s && s->w.state == PB_W_PARKED && s->w.req == req && !s->w.stream;
}

void pb_core_stream_read_flags(struct pb_core *c, const char *id, uint64_t after, uint64_t from,
			       unsigned wait, uint64_t stream, int first, unsigned flags,
			       pb_core_poll_cb cb, void *req)
{
	core_read(c, id, after, from, wait, c->cfg->max_batch, stream, first, flags, cb, req);
}

void pb_core_stream_read(struct pb_core *c, const char *id, uint64_t after, uint64_t from,
			 unsigned wait, uint64_t stream, int first, pb_core_poll_cb cb, void *req)
{
	pb_core_stream_read_flags(c, id, after, from, wait, stream, first, 0, cb, req);
}

/* Something changed on the inbound side of id: a parked request reads. */
void core_on_inbound(void *arg, const char *id)
{
	struct pb_session *s = session_find(arg, id);

	if (s)
		s->quiet.valid = 0;
	if (!s || s->w.state == PB_W_EMPTY)
		return;
	if (s->w.reading)
		s->w.reread = 1;
	else if (s->w.state == PB_W_PARKED)
		waiter_read(s);
}
