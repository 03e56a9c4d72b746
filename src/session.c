/*
 * session.c: the session core (see session.h).
 *
 * Each session this instance holds is a struct pb_session in a map by id.
 * A session has one timer, whose meaning follows the state: the connect
 * deadline while connecting, then either the idle deadline or, while a
 * poll is parked, that poll's wait deadline (a waiting poll keeps its
 * session alive, so the two never run together).
 *
 * Memory: a session is freed once it has ended, no store operation still
 * holds it (refs) and its timer's close callback has run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "map.h"
#include "session.h"

enum pb_session_state {
	PB_S_CONNECTING,
	PB_S_OPEN,
	PB_S_CLOSED,    /* the upstream is gone; buffered messages stay readable */
	PB_S_ENDED,
};

static const char *const pb_state_names[] = { "connecting", "open", "closed", "ended" };

/* Outbound messages fetched from the store, waiting for the socket. */
#define PB_OUT_FETCH 64

struct pb_session {
	struct pb_core *core;
	char id[PB_ID_LEN + 1];
	enum pb_session_state state;
	const struct pb_route *route;
	struct pb_upstream *up;
	uv_timer_t timer;
	unsigned refs;          /* 1 for the map + 1 per store operation in flight */
	/* While connecting: the creating request. */
	pb_core_create_cb create_cb;
	void *create_req;
	int creating;           /* store create in flight */
	char protocol[PB_MAX_PROTOCOL_LEN + 1];  /* chosen subprotocol, "" for none */
	/* The waiting poll, if any. */
	pb_core_poll_cb poll_cb;
	void *poll_req;
	uint64_t poll_after;
	size_t poll_max;
	unsigned poll_wait;
	int parked;             /* poll_cb is waiting for a wakeup or its deadline */
	int reading;            /* a read for the waiter is in flight */
	int reread;             /* a wakeup came during that read */
	/* Outbound: fetched from the store, not yet written. */
	struct pb_msg *out[PB_OUT_FETCH];
	size_t out_head, out_count;
	uint64_t out_fetched;   /* highest out-seq fetched */
	int fetching;
	int refetch;            /* more may be waiting in the store */
	int paused;             /* upstream reading paused: inbound queue full */
};

struct pb_core {
	uv_loop_t *loop;
	const struct pb_config *cfg;
	struct pb_upstream_ctx *up;
	struct pb_store *store;
	struct pb_map *sessions;
	int draining;
};

static void session_timer_cb(uv_timer_t *t);
static void session_answer_waiter(struct pb_session *s, int err, const struct pb_store_batch *b);

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
	for (size_t i = 0; i < s->out_count; i++)
		pb_msg_unref(s->out[(s->out_head + i) % PB_OUT_FETCH]);
	uv_close((uv_handle_t *)&s->timer, session_freed);
}

/* The one state setter: logs every transition. */
static void session_set_state(struct pb_session *s, enum pb_session_state st, const char *why)
{
	pb_log_info("session %.6s: %s -> %s (%s)", s->id, pb_state_names[s->state],
		    pb_state_names[st], why);
	s->state = st;
}

/* Leave the map and drop the map's reference: the session has ended here. */
static void session_forget(struct pb_session *s, const char *why)
{
	if (s->state == PB_S_ENDED)
		return;
	session_set_state(s, PB_S_ENDED, why);
	uv_timer_stop(&s->timer);
	if (s->up) {
		pb_upstream_close(s->up, 1000, "");
		s->up = NULL;
	}
	pb_map_del(s->core->sessions, s->id, PB_ID_LEN);
	session_release(s);
}

/* Arm the idle deadline (nothing is waiting). */
static void session_touch(struct pb_session *s)
{
	if (s->state == PB_S_OPEN || s->state == PB_S_CLOSED)
		uv_timer_start(&s->timer, session_timer_cb,
			       (uint64_t)s->core->cfg->idle_timeout * 1000, 0);
}

/* The session for id, if this instance holds it and it has not ended. */
static struct pb_session *session_find(struct pb_core *c, const char *id)
{
	return pb_map_get(c->sessions, id, strlen(id));
}

/* ---- ending ----------------------------------------------------------- */

/* Store answer to an end issued by the idle timer. */
static void session_idle_ended(void *arg, int err)
{
	session_release(arg);
}

/* No request within idle_timeout: end the session, upstream gets 1001. */
static void session_idle_expired(struct pb_session *s)
{
	if (s->up) {
		pb_upstream_close(s->up, 1001, "idle timeout");
		s->up = NULL;
	}
	session_hold(s);
	if (s->core->store->ops->end(s->core->store, s->id, session_idle_ended, s))
		session_release(s);
	session_forget(s, "idle timeout");
}

/* ---- upstream events --------------------------------------------------- */

/* Store answer to an upstream close. */
static void session_close_stored(void *arg, int err)
{
	session_release(arg);
}

/* Mark the session closed in the store with code and reason. */
static void session_mark_closed(struct pb_session *s, int code, const char *reason,
				size_t reason_len, const char *why)
{
	struct pb_store *st = s->core->store;

	for (; s->out_count; s->out_count--) {
		pb_msg_unref(s->out[s->out_head]);
		s->out_head = (s->out_head + 1) % PB_OUT_FETCH;
	}
	session_set_state(s, PB_S_CLOSED, why);
	session_hold(s);
	if (st->ops->close(st, s->id, code, reason, reason_len, session_close_stored, s))
		session_release(s);
	if (!s->parked)
		session_touch(s);
}

/* Store answer to a create after the handshake. */
static void session_created(void *arg, int err)
{
	struct pb_session *s = arg;
	pb_core_create_cb cb = s->create_cb;
	void *req = s->create_req;

	s->creating = 0;
	s->create_cb = NULL;
	if (s->state != PB_S_CONNECTING) {
		/* Drained or failed meanwhile; the request was answered then. */
		session_release(s);
		return;
	}
	if (err) {
		cb(req, err, NULL, NULL);
		session_forget(s, "store refused the session");
		session_release(s);
		return;
	}
	session_set_state(s, PB_S_OPEN, "upstream handshake done");
	session_touch(s);
	if (s->paused) {
		s->paused = 0;
		pb_upstream_pause(s->up, 0);
	}
	cb(req, 0, s->id, s->protocol[0] ? s->protocol : NULL);
	session_release(s);
}

/* Upstream handshake done: record the session, then answer the creator. */
static void up_opened(void *arg, const char *protocol)
{
	struct pb_session *s = arg;
	struct pb_store *st = s->core->store;
	int r;

	uv_timer_stop(&s->timer);
	snprintf(s->protocol, sizeof(s->protocol), "%s", protocol ? protocol : "");
	s->creating = 1;
	session_hold(s);
	r = st->ops->create(st, s->id, s->route->name, protocol, session_created, s);
	if (!r && s->creating && s->up) {
		/* The answer comes later: hold inbound messages until then. */
		s->paused = 1;
		pb_upstream_pause(s->up, 1);
	}
	if (r) {
		pb_core_create_cb cb = s->create_cb;

		s->creating = 0;
		s->create_cb = NULL;
		cb(s->create_req, r, NULL, NULL);
		session_forget(s, "store unavailable");
		session_release(s);
	}
}

/* The dial failed: answer the creator and drop the session. */
static void up_failed(void *arg, int err, const char *why)
{
	struct pb_session *s = arg;
	pb_core_create_cb cb = s->create_cb;

	pb_log_info("session %.6s: upstream %s: %s", s->id, s->route->name, why);
	s->up = NULL;
	s->create_cb = NULL;
	if (cb)
		cb(s->create_req, err, NULL, NULL);
	session_forget(s, "upstream unreachable");
}

/* Store answer to an inbound append: pause the upstream when full. */
static void session_pushed_in(void *arg, int err, uint64_t seq, size_t depth)
{
	struct pb_session *s = arg;

	if (!err && s->up && !s->paused && depth >= s->core->cfg->queue_max) {
		s->paused = 1;
		pb_upstream_pause(s->up, 1);
		pb_log_debug("session %.6s: inbound queue full, upstream paused", s->id);
	}
	session_release(s);
}

/* A whole message from the upstream: buffer it in the store. */
static void up_message(void *arg, struct pb_msg *m)
{
	struct pb_session *s = arg;
	struct pb_store *st = s->core->store;

	session_hold(s);
	if (st->ops->push_in(st, s->id, m, session_pushed_in, s))
		session_release(s);
	pb_msg_unref(m);
}

/* The upstream closed: the session is closed, its messages stay readable. */
static void up_closed(void *arg, int code, const char *reason, size_t reason_len)
{
	struct pb_session *s = arg;

	s->up = NULL;
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

static void session_fetch_out(struct pb_session *s);

/* The upstream can take a message: hand over the next fetched one. */
static struct pb_msg *up_next_out(void *arg)
{
	struct pb_session *s = arg;
	struct pb_store *st = s->core->store;
	struct pb_msg *m;

	if (!s->out_count) {
		if (s->refetch)
			session_fetch_out(s);
		return NULL;
	}
	m = s->out[s->out_head];
	s->out_head = (s->out_head + 1) % PB_OUT_FETCH;
	s->out_count--;
	/* Handed to the socket: the store may forget it. */
	session_hold(s);
	if (st->ops->ack_out(st, s->id, m->seq, session_close_stored, s))
		session_release(s);
	if (!s->out_count && s->refetch)
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

/* ---- outbound ---------------------------------------------------------- */

/* Store answer to a fetch of outbound messages. */
static void session_fetched_out(void *arg, int err, const struct pb_store_batch *b)
{
	struct pb_session *s = arg;

	s->fetching = 0;
	if (!err && s->state == PB_S_OPEN) {
		for (size_t i = 0; i < b->n && s->out_count < PB_OUT_FETCH; i++) {
			if (b->msgs[i]->seq <= s->out_fetched)
				continue;
			s->out[(s->out_head + s->out_count) % PB_OUT_FETCH] = pb_msg_ref(b->msgs[i]);
			s->out_count++;
			s->out_fetched = b->msgs[i]->seq;
		}
		if (b->n && b->msgs[b->n - 1]->seq > s->out_fetched)
			s->refetch = 1;
		if (s->out_count && s->up)
			pb_upstream_want_write(s->up);
	}
	session_release(s);
}

/* Fetch what the store holds for the upstream beyond what we have. */
static void session_fetch_out(struct pb_session *s)
{
	struct pb_store *st = s->core->store;
	size_t room = PB_OUT_FETCH - s->out_count;

	if (s->state != PB_S_OPEN || !s->up)
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
		session_release(s);
	}
}

/* ---- store wakeups ----------------------------------------------------- */

static void session_read_for_waiter(struct pb_session *s);

/* Store wakeup: something changed on the inbound side of id. */
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

/* Store wakeup: new messages for id's upstream. */
static void core_on_outbound(void *arg, const char *id)
{
	struct pb_session *s = session_find(arg, id);

	if (s)
		session_fetch_out(s);
}

/* ---- polls ------------------------------------------------------------- */

/* Answer the waiting poll (if any) and forget it. */
static void session_answer_waiter(struct pb_session *s, int err, const struct pb_store_batch *b)
{
	pb_core_poll_cb cb = s->poll_cb;
	void *req = s->poll_req;

	if (!cb)
		return;
	s->poll_cb = NULL;
	s->poll_req = NULL;
	s->parked = 0;
	session_touch(s);
	cb(req, err, b);
}

/* Answer the waiting poll with an empty, open batch (replaced, drained). */
static void session_answer_empty(struct pb_session *s)
{
	struct pb_store_batch b = { 0 };

	session_answer_waiter(s, 0, &b);
}

/* Store answer to a read for the waiting poll. */
static void session_read_done(void *arg, int err, const struct pb_store_batch *b)
{
	struct pb_session *s = arg;

	s->reading = 0;
	if (!s->poll_cb) {
		/* Answered meanwhile (replaced by a newer poll, deleted). */
	} else if (s->reread) {
		/* A newer poll or a wakeup came during the read: read again. */
		s->reread = 0;
		session_read_for_waiter(s);
	} else if (err || b->n || b->close.closed || !s->poll_wait) {
		session_answer_waiter(s, err, b);
		if (!err && s->paused && s->up && b->depth < s->core->cfg->queue_max) {
			s->paused = 0;
			pb_upstream_pause(s->up, 0);
		}
		if (!err && b->ended)
			session_forget(s, "client acknowledged the last message");
	} else if (!s->parked) {
		s->parked = 1;
		uv_timer_start(&s->timer, session_timer_cb, (uint64_t)s->poll_wait * 1000, 0);
	}
	session_release(s);
}

/* Read the inbound queue for the waiting poll. */
static void session_read_for_waiter(struct pb_session *s)
{
	struct pb_store *st = s->core->store;
	int r;

	s->reading = 1;
	s->reread = 0;
	session_hold(s);
	r = st->ops->read_in(st, s->id, s->poll_after, s->poll_max,
			     s->core->cfg->max_batch_bytes, session_read_done, s);
	if (r) {
		s->reading = 0;
		session_answer_waiter(s, r, NULL);
		session_release(s);
	}
}

/* A poll for a session this instance does not hold: the store knows
 * whether it never existed or has ended; answer at once. */
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

void pb_core_poll(struct pb_core *c, const char *id, uint64_t after, unsigned wait, size_t max,
		  pb_core_poll_cb cb, void *req)
{
	struct pb_session *s = session_find(c, id);
	int r;

	if (max > c->cfg->max_batch)
		max = c->cfg->max_batch;
	if (wait > c->cfg->wait_max)
		wait = c->cfg->wait_max;
	if (c->draining)
		wait = 0;
	if (!s || s->state == PB_S_CONNECTING) {
		struct pb_poll_direct *d = malloc(sizeof(*d));

		if (!d) {
			cb(req, PB_ENOMEM, NULL);
			return;
		}
		d->cb = cb;
		d->req = req;
		r = c->store->ops->read_in(c->store, id, after, max, c->cfg->max_batch_bytes,
					   core_poll_direct_done, d);
		if (r) {
			free(d);
			cb(req, r, NULL);
		}
		return;
	}
	/* The single-waiter rule: a newer poll releases the older one. */
	if (s->poll_cb)
		session_answer_empty(s);
	s->poll_cb = cb;
	s->poll_req = req;
	s->poll_after = after;
	s->poll_max = max;
	s->poll_wait = wait;
	uv_timer_stop(&s->timer);
	if (!s->reading)
		session_read_for_waiter(s);
	else
		s->reread = 1;
}

/* ---- timers ------------------------------------------------------------ */

/* The session's one timer: connect deadline, poll deadline or idle. */
static void session_timer_cb(uv_timer_t *t)
{
	struct pb_session *s = t->data;

	if (s->state == PB_S_CONNECTING) {
		pb_core_create_cb cb = s->create_cb;

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
	} else {
		session_idle_expired(s);
	}
}

/* ---- requests ---------------------------------------------------------- */

void pb_core_create(struct pb_core *c, const struct pb_create_req *cr, const char *client_origin,
		    pb_core_create_cb cb, void *req)
{
	const struct pb_route *route = pb_config_route(c->cfg, cr->route);
	struct pb_upstream_dial d = { 0 };
	struct pb_buf protos;
	struct pb_session *s;
	int r = 0;

	if (!route) {
		cb(req, PB_ENOROUTE, NULL, NULL);
		return;
	}
	if (c->draining) {
		cb(req, PB_EDRAINING, NULL, NULL);
		return;
	}
	if (pb_map_count(c->sessions) >= c->cfg->max_sessions) {
		cb(req, PB_ETOOMANY, NULL, NULL);
		return;
	}
	if (!c->store->ops->healthy(c->store)) {
		cb(req, PB_ESTORE, NULL, NULL);
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		cb(req, PB_ENOMEM, NULL, NULL);
		return;
	}
	s->core = c;
	s->route = route;
	s->state = PB_S_CONNECTING;
	s->refs = 1;
	s->create_cb = cb;
	s->create_req = req;
	uv_timer_init(c->loop, &s->timer);
	s->timer.data = s;
	do {
		r = pb_session_id_new(s->id);
	} while (!r && pb_map_get(c->sessions, s->id, PB_ID_LEN));
	if (!r)
		r = pb_map_put(c->sessions, s->id, PB_ID_LEN, s);
	if (r) {
		session_release(s);
		cb(req, r, NULL, NULL);
		return;
	}
	pb_buf_init(&protos, 0);
	for (size_t i = 0; i < cr->nprotocols && !r; i++)
		r = pb_buf_printf(&protos, "%s%s", i ? ", " : "", cr->protocols[i]);
	d.route = route;
	d.protocols = protos.len ? protos.data : NULL;
	d.origin = route->origin ? route->origin : client_origin;
	d.max_message_bytes = c->cfg->max_message_bytes;
	if (!r) {
		pb_log_debug("session %.6s: dialling %s (%s)", s->id, route->name, route->url);
		s->up = pb_upstream_dial(c->up, &d, &pb_session_upstream, s, &r);
	}
	pb_buf_free(&protos);
	if (!s->up) {
		s->create_cb = NULL;
		cb(req, r ? r : PB_EUPSTREAM, NULL, NULL);
		session_forget(s, "upstream unreachable");
		return;
	}
	uv_timer_start(&s->timer, session_timer_cb, (uint64_t)c->cfg->connect_timeout * 1000, 0);
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
	pb_core_done_cb cb;
	void *req;
};

/* Store answer to a delete. */
static void core_delete_done(void *arg, int err)
{
	struct pb_delete_op *op = arg;

	op->cb(op->req, err);
	free(op);
}

void pb_core_delete(struct pb_core *c, const char *id, pb_core_done_cb cb, void *req)
{
	struct pb_session *s = session_find(c, id);
	struct pb_delete_op *op = malloc(sizeof(*op));
	int r;

	if (!op) {
		cb(req, PB_ENOMEM);
		return;
	}
	op->cb = cb;
	op->req = req;
	if (s && s->state != PB_S_CONNECTING) {
		if (s->up) {
			pb_upstream_close(s->up, 1000, "");
			s->up = NULL;
		}
		session_answer_waiter(s, PB_ECLOSED, NULL);
		session_forget(s, "deleted by the client");
	}
	r = c->store->ops->end(c->store, id, core_delete_done, op);
	if (r) {
		free(op);
		cb(req, r);
	}
}

/* ---- the core ---------------------------------------------------------- */

void pb_core_drain(struct pb_core *c)
{
	size_t n = pb_map_count(c->sessions);
	struct pb_session **all;

	c->draining = 1;
	if (!n)
		return;
	all = malloc(n * sizeof(*all));
	if (!all)
		return;
	n = pb_map_values(c->sessions, (void **)all, n);
	for (size_t i = 0; i < n; i++)
		session_hold(all[i]);
	for (size_t i = 0; i < n; i++) {
		struct pb_session *s = all[i];

		if (s->state == PB_S_CONNECTING) {
			pb_core_create_cb cb = s->create_cb;

			s->create_cb = NULL;
			if (cb)
				cb(s->create_req, PB_EDRAINING, NULL, NULL);
			session_forget(s, "instance draining");
		} else if (s->state == PB_S_OPEN) {
			if (s->up) {
				pb_upstream_close(s->up, 1001, "going away");
				s->up = NULL;
			}
			session_mark_closed(s, 1001, "instance draining", 17, "instance draining");
		}
		session_release(s);
	}
	free(all);
}

struct pb_core *pb_core_new(uv_loop_t *loop, const struct pb_config *cfg,
			    struct pb_upstream_ctx *up)
{
	struct pb_core *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->sessions = pb_map_new();
	if (!c->sessions) {
		free(c);
		return NULL;
	}
	c->loop = loop;
	c->cfg = cfg;
	c->up = up;
	return c;
}

struct pb_store_events pb_core_store_events(struct pb_core *c)
{
	struct pb_store_events ev = { core_on_inbound, core_on_outbound, c };

	return ev;
}

void pb_core_attach_store(struct pb_core *c, struct pb_store *store)
{
	c->store = store;
}

void pb_core_free(struct pb_core *c)
{
	size_t n;
	struct pb_session **all;

	if (!c)
		return;
	n = pb_map_count(c->sessions);
	all = n ? malloc(n * sizeof(*all)) : NULL;
	if (all) {
		n = pb_map_values(c->sessions, (void **)all, n);
		for (size_t i = 0; i < n; i++) {
			session_answer_empty(all[i]);
			session_forget(all[i], "shutdown");
		}
		free(all);
	}
	pb_map_free(c->sessions);
	free(c);
}

size_t pb_core_session_count(const struct pb_core *c)
{
	return pb_map_count(c->sessions);
}

int pb_core_healthy(const struct pb_core *c)
{
	return c->store && c->store->ops->healthy(c->store);
}
