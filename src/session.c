/*
 * session.c: the session core's life cycle and its requests (see session.h
 * for the contract and session_int.h for how the core is split).
 *
 * Each session this instance holds is a struct pb_session in a map by id.
 * Its life: CONNECTING (the upstream is being dialled) -> OPEN -> CLOSED
 * (the upstream is gone, buffered messages stay readable) -> ENDED (gone
 * from this instance), always through session_set_state(), which logs.
 *
 * A session has one timer; session_arm() says what it counts down to:
 * the create's or a re-dial's handshake, the parked poll's wait, the idle
 * deadline (owned sessions), or a shadow's linger. A waiting poll keeps
 * its session alive, so the poll and idle deadlines never run together.
 *
 * With one instance (memory store) a session is always owned here. With a
 * shared store (Redis) it may also be a shadow (owned elsewhere, a poll
 * waits here) or adopted from an instance that died or drained; all of
 * that is session_cluster.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "map.h"
#include "metrics.h"
#include "session_int.h"

static const char *const pb_state_names[] = { "connecting", "open", "closed", "ended" };

static void session_timer_cb(uv_timer_t *t);
static void core_client_done(struct pb_core *c, const char *addr);

/* ---- lifetime ------------------------------------------------------- */

/* The timer is closed: the session's memory can go. */
static void session_freed(uv_handle_t *h)
{
	free(h->data);
}

struct pb_session *session_hold(struct pb_session *s)
{
	s->refs++;
	return s;
}

void session_release(struct pb_session *s)
{
	if (--s->refs)
		return;
	session_use_route(s, NULL);
	pump_free(s);
	free(s->handshake);
	uv_close((uv_handle_t *)&s->timer, session_freed);
}

void session_set_state(struct pb_session *s, enum pb_session_state st, const char *why)
{
	if (s->owned)
		pb_log_info("session %.6s: %s -> %s (%s)", s->id, pb_state_names[s->state],
			    pb_state_names[st], why);
	else
		pb_log_debug("session %.6s (shadow): %s -> %s (%s)", s->id,
			     pb_state_names[s->state], pb_state_names[st], why);
	s->state = st;
}

struct pb_session *session_new(struct pb_core *c, const char *id, int owned)
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
	session_cluster_watch(s, 1);
	return s;
}

void session_use_route(struct pb_session *s, const struct pb_route *route)
{
	if (s->route && s->route->users)
		(*s->route->users)--;
	s->route = route;
	if (route && route->users)
		(*route->users)++;
	if (route)
		s->route_row = pb_metrics_route_declare(route->name);
}

struct pb_session *session_find(struct pb_core *c, const char *id)
{
	return pb_map_get(c->sessions, id, strlen(id));
}

void session_set_door(struct pb_session *s, enum pb_door door)
{
	if ((unsigned)door >= PB_DOOR_COUNT)
		door = PB_DOOR_V1;
	if (s->owned && s->state != PB_S_ENDED && door != s->door) {
		pb_metrics_gauge((enum pb_gauge)(PB_G_SESSIONS + s->door), -1);
		pb_metrics_gauge((enum pb_gauge)(PB_G_SESSIONS + door), 1);
	}
	s->door = door;
}

int session_id_ok(const char *id, size_t len)
{
	if (len != PB_ID_LEN)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = id[i];

		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
			return 0;
	}
	return 1;
}

void session_close_upstream(struct pb_session *s, int code, const char *reason)
{
	if (s->up) {
		s->core->link->close(s->up, code, reason);
		s->up = NULL;
	}
}

void session_forget(struct pb_session *s, const char *why)
{
	struct pb_core *c = s->core;

	if (s->state == PB_S_ENDED)
		return;
	session_set_state(s, PB_S_ENDED, why);
	session_arm(s, PB_DL_NONE, 0);
	session_close_upstream(s, 1000, "");
	pb_map_del(c->sessions, s->id, PB_ID_LEN);
	if (s->client[0]) {
		core_client_done(c, s->client);
		s->client[0] = '\0';
	}
	if (s->owned) {
		c->owned--;
		pb_metrics_gauge((enum pb_gauge)(PB_G_SESSIONS + s->door), -1);
		if (s->route)
			pb_metrics_route_add(s->route_row, PB_RM_SESSIONS, -1);
	}
	if (s->in.mem_full) {
		s->in.mem_full = 0;
		c->mem_paused--;
	}
	session_cluster_watch(s, 0);
	session_release(s);
	core_memory_check(c);
}

/* A create that cannot complete: answer its request with err (if it is
 * still waiting) and forget the session, which no client ever saw. */
static void session_fail_create(struct pb_session *s, int err, const char *why)
{
	pb_core_create_cb cb = s->create_cb;

	s->create_cb = NULL;
	if (cb)
		cb(s->create_req, err, NULL, NULL);
	session_forget(s, why);
}

void session_arm(struct pb_session *s, enum pb_deadline dl, uint64_t ms)
{
	s->deadline = dl;
	if (dl == PB_DL_NONE)
		uv_timer_stop(&s->timer);
	else
		uv_timer_start(&s->timer, session_timer_cb, ms, 0);
}

void session_touch(struct pb_session *s)
{
	if (s->owned && (s->state == PB_S_OPEN || s->state == PB_S_CLOSED))
		session_arm(s, PB_DL_IDLE, (uint64_t)s->core->cfg->idle_timeout * 1000);
}

void core_each(struct pb_core *c, void (*fn)(struct pb_session *s))
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

/* ---- closing and ending ---------------------------------------------- */

void session_mark_closed(struct pb_session *s, int code, const char *reason,
			 size_t reason_len, const char *why)
{
	session_set_state(s, PB_S_CLOSED, why);
	pump_out_drop(s);
	pump_in_close(s, code, reason, reason_len);
	if (s->w.state != PB_W_PARKED)
		session_touch(s);
}

void session_end_here(struct pb_session *s, const char *why)
{
	if (s->owned)
		pb_metrics_add(PB_C_END_DELETED, 1);
	session_hold(s);
	session_close_upstream(s, 1000, "");
	waiter_answer(s, PB_ECLOSED, NULL);
	session_forget(s, why);
	session_release(s);
}

/* Store answer to the idle check. */
static void session_idle_checked(void *arg, int err, int ended, uint64_t remaining_ms)
{
	struct pb_session *s = arg;

	s->idle_checking = 0;
	if (s->state == PB_S_ENDED) {
		/* Gone meanwhile. */
	} else if (!err && ended) {
		pb_metrics_add(PB_C_END_IDLE, 1);
		/* A SockJS client's close() sends nothing: the idle end is how
		 * it closes, so the upstream gets 1000 as for a client close. */
		if (s->door == PB_DOOR_SOCKJS)
			session_close_upstream(s, 1000, "client closed or went away");
		else
			session_close_upstream(s, 1001, "idle timeout");
		waiter_answer(s, PB_ECLOSED, NULL);
		session_forget(s, "idle timeout");
	} else if (!err) {
		/* A request reached another instance meanwhile. */
		if (s->w.state != PB_W_PARKED)
			session_arm(s, PB_DL_IDLE, remaining_ms ? remaining_ms : 1);
	} else if (err == PB_ENOSESSION || err == PB_ECLOSED) {
		waiter_answer(s, PB_ECLOSED, NULL);
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
	s->idle_checking = 1;
	if (st->ops->end_if_idle(st, s->id, session_idle_checked, s)) {
		s->idle_checking = 0;
		session_touch(s);
		session_release(s);
	}
}

/* An adopter could not reach the upstream again: close the session. */
static void session_redial_failed(struct pb_session *s, const char *why)
{
	pb_log_info("session %.6s: re-dial of %s failed: %s", s->id, s->route->name, why);
	s->adopting = 0;
	s->up = NULL;
	session_mark_closed(s, 1006, "upstream unreachable after adoption", 35,
			    "re-dial failed");
}

/* The session's one timer: what it counted down to has come. */
static void session_timer_cb(uv_timer_t *t)
{
	struct pb_session *s = t->data;
	enum pb_deadline dl = s->deadline;

	s->deadline = PB_DL_NONE;
	switch (dl) {
	case PB_DL_CONNECT:
		pb_metrics_add(PB_C_UPSTREAM_FAILURES, 1);
		pb_metrics_add(PB_C_CREATE_FAILED, 1);
		pb_log_info("session %.6s: upstream %s: handshake timed out", s->id, s->route->name);
		session_fail_create(s, PB_ETIMEOUT, "upstream handshake timed out");
		break;
	case PB_DL_REDIAL:
		pb_metrics_add(PB_C_UPSTREAM_FAILURES, 1);
		session_close_upstream(s, 1000, "");
		session_redial_failed(s, "handshake timed out");
		break;
	case PB_DL_POLL:
		waiter_deadline(s);
		break;
	case PB_DL_IDLE:
		session_idle_expired(s);
		break;
	case PB_DL_LINGER:
		if (s->w.state == PB_W_EMPTY)
			session_forget(s, "no poll for a while");
		break;
	case PB_DL_NONE:
		break;
	}
}

/* ---- the upstream link ------------------------------------------------ */

/* Store answer to a create after the handshake. */
static void session_created(void *arg, int err)
{
	struct pb_session *s = arg;
	pb_core_create_cb cb = s->create_cb;
	void *req = s->create_req;

	s->creating = 0;
	if (s->state != PB_S_CONNECTING || !cb) {
		/* Drained or failed meanwhile; the request was answered then. */
		session_release(s);
		return;
	}
	if (err) {
		session_fail_create(s, err, "the store refused the session");
		session_release(s);
		return;
	}
	s->create_cb = NULL;
	session_set_state(s, PB_S_OPEN, "upstream handshake done");
	pb_metrics_add((enum pb_counter)(PB_C_SESSIONS_CREATED + s->door), 1);
	session_touch(s);
	pump_in_next(s);
	if (s->closed_early) {
		/* The upstream spoke and hung up while the store recorded the
		 * session: its messages are on their way to the store, and the
		 * close follows them. */
		s->closed_early = 0;
		session_mark_closed(s, s->in.close_code, s->in.close_reason, s->in.close_reason_len,
				    "upstream closed");
	}
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

	session_arm(s, PB_DL_NONE, 0);
	pb_metrics_add(PB_C_UPSTREAM_CONNECTS, 1);
	pb_metrics_observe(PB_H_HANDSHAKE_SECONDS,
			   (double)(uv_hrtime() - s->dial_ns) / 1e9);
	snprintf(s->protocol, sizeof(s->protocol), "%s", protocol ? protocol : "");
	if (s->adopting) {
		struct pb_msg *m = pb_msg_new(PB_MSG_REOPEN, NULL, 0);

		s->adopting = 0;
		session_set_state(s, PB_S_OPEN, "upstream dialled again");
		if (m)
			pump_in_take(s, m);
		session_touch(s);
		pump_out_fetch(s);
		return;
	}
	session_hold(s);
	s->creating = 1;
	r = st->ops->create(st, s->id, s->route->name, protocol, s->handshake, s->handshake_len,
			    session_created, s);
	free(s->handshake);
	s->handshake = NULL;
	if (r) {
		s->creating = 0;
		session_fail_create(s, r, "store unavailable");
		session_release(s);
	}
}

/* The dial failed: answer the creator and drop the session. */
static void up_failed(void *arg, int err, const char *why)
{
	struct pb_session *s = arg;

	pb_metrics_add(PB_C_UPSTREAM_FAILURES, 1);
	s->up = NULL;
	if (s->adopting) {
		session_redial_failed(s, why);
		return;
	}
	pb_metrics_add(PB_C_CREATE_FAILED, 1);
	pb_log_info("session %.6s: upstream %s: %s", s->id, s->route->name, why);
	session_fail_create(s, err, "upstream unreachable");
}

static void up_closed(void *arg, int code, const char *reason, size_t reason_len);

/* A whole message from the upstream: on to the store. SockJS carries text
 * only: a binary message closes the upstream with 1003 and the session as
 * if the upstream had closed with 1003 "binary message" (docs/API.md). */
static void up_message(void *arg, struct pb_msg *m)
{
	struct pb_session *s = arg;

	if (s->door == PB_DOOR_SOCKJS && m->type == PB_MSG_BINARY) {
		pb_msg_unref(m);
		pb_log_info("session %.6s: binary message from the upstream of a SockJS session: "
			    "closing it with 1003", s->id);
		session_close_upstream(s, 1003, "binary messages are not supported");
		up_closed(s, 1003, "binary message", 14);
		return;
	}
	pump_in_take(s, m);
}

/* The upstream closed: the session is closed, its messages stay readable. */
static void up_closed(void *arg, int code, const char *reason, size_t reason_len)
{
	struct pb_session *s = arg;

	s->up = NULL;
	s->in.paused = 0;
	pb_metrics_add(PB_C_UPSTREAM_CLOSES, 1);
	if (s->state == PB_S_CONNECTING && s->creating) {
		/* The handshake succeeded; the session is being recorded. Keep
		 * the close for after that (session_created). */
		s->closed_early = 1;
		s->in.close_code = code;
		s->in.close_reason_len = reason_len < sizeof(s->in.close_reason) ?
					 reason_len : sizeof(s->in.close_reason);
		memcpy(s->in.close_reason, reason, s->in.close_reason_len);
		return;
	}
	if (s->state == PB_S_CONNECTING) {
		/* Closed before the store recorded it: the creator learns now. */
		session_fail_create(s, PB_EUPSTREAM, "upstream closed during the handshake");
		return;
	}
	session_mark_closed(s, code, reason, reason_len, "upstream closed");
}

/* The upstream can take a message: hand over the next fetched one. */
static struct pb_msg *up_next_out(void *arg)
{
	return pump_out_next(arg);
}

static const struct pb_upstream_handler pb_session_upstream = {
	.opened = up_opened,
	.failed = up_failed,
	.message = up_message,
	.closed = up_closed,
	.next_out = up_next_out,
};

int session_dial(struct pb_session *s, const char *protocols, const char *origin,
		 const struct pb_headers *fwd)
{
	struct pb_core *c = s->core;
	struct pb_upstream_dial d = { 0 };
	int r = 0;

	d.route = s->route;
	d.protocols = protocols;
	d.origin = s->route->origin ? s->route->origin : origin;
	d.headers = fwd;
	d.max_message_bytes = c->cfg->max_message_bytes;
	d.eio = s->eio;
	pb_log_debug("session %.6s: dialling %s (%s)", s->id, s->route->name, s->route->url);
	s->dial_ns = uv_hrtime();
	s->up = c->link->dial(c->link_ctx, &d, &pb_session_upstream, s, &r);
	if (!s->up)
		return r ? r : PB_EUPSTREAM;
	session_arm(s, s->adopting ? PB_DL_REDIAL : PB_DL_CONNECT,
		    (uint64_t)c->cfg->connect_timeout * 1000);
	return 0;
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
		    const char *client_origin, const struct pb_headers *fwd,
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
	if ((cr->eio && cr->eio != 3 && cr->eio != 4) ||
	    (cr->fixed_id[0] && !session_id_ok(cr->fixed_id, strlen(cr->fixed_id)))) {
		cb(req, PB_EBADREQ, NULL, NULL);
		return;
	}
	if (cr->fixed_id[0] && session_find(c, cr->fixed_id)) {
		/* Live here (or a shadow of one owned elsewhere). */
		cb(req, PB_EEXIST, NULL, NULL);
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
	if (cr->fixed_id[0]) {
		memcpy(id, cr->fixed_id, PB_ID_LEN + 1);
	} else {
		do {
			r = pb_session_id_new(id);
		} while (!r && pb_map_get(c->sessions, id, PB_ID_LEN));
	}
	s = r ? NULL : session_new(c, id, 1);
	if (!s) {
		cb(req, r ? r : PB_ENOMEM, NULL, NULL);
		return;
	}
	session_set_door(s, cr->door);
	s->eio = cr->eio;
	session_use_route(s, route);
	pb_metrics_route_add(s->route_row, PB_RM_SESSIONS, 1);
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
		r = session_cluster_keep_handshake(s, protos.len ? protos.data : NULL,
						   client_origin, fwd);
	if (!r)
		r = session_dial(s, protos.len ? protos.data : NULL, client_origin, fwd);
	pb_buf_free(&protos);
	if (r)
		session_fail_create(s, r, "upstream unreachable");
}

/* A send in flight: the front's callback. */
struct pb_send_op {
	struct pb_session *s;   /* NULL when this instance does not hold it */
	pb_core_send_cb cb;
	void *req;
};

/* Store answer to a send, passed on as the core's own result. */
static void core_send_done(void *arg, int err, const struct pb_store_send_result *r)
{
	struct pb_send_op *op = arg;
	struct pb_core_send_result res = { 0 };

	if (r) {
		res.accepted = r->accepted;
		res.send_seq = r->send_seq;
		res.expected = r->expected;
	}
	op->cb(op->req, err, r ? &res : NULL);
	if (op->s)
		session_release(op->s);
	free(op);
}

void pb_core_send(struct pb_core *c, const char *id, const struct pb_send_req *sr,
		  pb_core_send_cb cb, void *req)
{
	struct pb_session *s = session_find(c, id);
	struct pb_send_op *op;
	int r;

	if (pb_msg_live_bytes() > c->cfg->total_queue_max_bytes) {
		/* The instance's bound (the request's own messages count). */
		cb(req, PB_EMEMFULL, NULL);
		return;
	}
	op = malloc(sizeof(*op));
	if (!op) {
		cb(req, PB_ENOMEM, NULL);
		return;
	}
	op->s = s ? session_hold(s) : NULL;
	op->cb = cb;
	op->req = req;
	if (s && s->w.state != PB_W_PARKED)
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

/* Drain one session. A create still dialling is refused. Single instance:
 * an open session closes with 1001. Shared store: session_cluster.c
 * releases it for another instance to adopt. */
static void session_drain(struct pb_session *s)
{
	if (s->state == PB_S_CONNECTING && !s->adopting) {
		session_fail_create(s, PB_EDRAINING, "instance draining");
		return;
	}
	if (pb_store_shared(s->core->store)) {
		session_cluster_release(s);
		return;
	}
	if (s->state == PB_S_OPEN) {
		pb_metrics_add(PB_C_END_DRAINED, 1);
		session_close_upstream(s, 1001, "going away");
		session_mark_closed(s, 1001, "instance draining", 17, "instance draining");
	}
}

void pb_core_drain(struct pb_core *c)
{
	c->draining = 1;
	core_cluster_stop(c);
	core_each(c, session_drain);
}

/* ---- the core ---------------------------------------------------------- */

struct pb_core *pb_core_new(uv_loop_t *loop, const struct pb_config *cfg,
			    const struct pb_link_ops *link, void *link_ctx)
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
	c->link = link;
	c->link_ctx = link_ctx;
	uv_timer_init(loop, &c->adopt_timer);
	c->adopt_timer.data = c;
	uv_check_init(loop, &c->in_flush);
	c->in_flush.data = c;
	uv_prepare_init(loop, &c->in_flush_pre);
	c->in_flush_pre.data = c;
	c->handles = 3;
	return c;
}

void pb_core_store_events(struct pb_core *c, struct pb_store_events *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->inbound = core_on_inbound;
	ev->outbound = core_on_outbound;
	ev->ended = core_on_ended;
	ev->acked = core_on_acked;
	ev->waiter = core_on_waiter;
	ev->resync = core_on_resync;
	ev->health = core_on_health;
	ev->arg = c;
}

void pb_core_attach_store(struct pb_core *c, struct pb_store *store)
{
	c->store = store;
	core_cluster_start(c);
}

/* Answer and forget one session at shutdown. */
static void session_shutdown(struct pb_session *s)
{
	waiter_release(s);
	session_forget(s, "shutdown");
}

/* One of the core's handles is closed: free the core after the last. */
static void core_freed(uv_handle_t *h)
{
	struct pb_core *c = h->data;

	if (!--c->handles)
		free(c);
}

void pb_core_free(struct pb_core *c)
{
	if (!c)
		return;
	c->draining = 1;
	core_cluster_stop(c);
	core_in_flush_drop(c);
	core_each(c, session_shutdown);
	pb_map_free(c->sessions);
	c->sessions = NULL;
	pb_map_free(c->clients);        /* empty: every session counted out */
	c->clients = NULL;
	uv_close((uv_handle_t *)&c->adopt_timer, core_freed);
	uv_close((uv_handle_t *)&c->in_flush, core_freed);
	uv_close((uv_handle_t *)&c->in_flush_pre, core_freed);
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
