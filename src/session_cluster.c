/*
 * session_cluster.c: what the session core does only with a store shared
 * by several instances (see session_int.h): it watches the wakeups of the
 * sessions it holds, keeps the creating client's handshake with the
 * session, renews its leases every PB_ADOPT_INTERVAL_MS, scans for orphans
 * (sessions whose owner's lease ran out) and adopts them through CLAIM,
 * releases its sessions on drain, and reacts to what other instances
 * report: a session ended elsewhere, a poll that started elsewhere (the
 * single-waiter rule across instances), missed wakeups after a reconnect.
 *
 * An adopted session re-dials its upstream when its route says `redial`
 * (the client gets a reopen message) and is closed otherwise: 1012 when
 * the old owner drained, 1006 when it died. An Engine.IO session is never
 * re-dialled (the upstream's Socket.IO state died with the old link): it
 * is closed with 1011 "bridge instance lost" (1012 "instance drained" after
 * a drain), so its pollers get the close and the client's own
 * reconnection starts a fresh session. Every hook below does nothing with
 * a single-instance store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "session_int.h"

void session_cluster_watch(struct pb_session *s, int on)
{
	struct pb_store *st = s->core->store;

	if (!st->shared)
		return;
	if (on)
		st->shared->watch(st, s->id);
	else
		st->shared->unwatch(st, s->id);
}

void session_cluster_announce(struct pb_session *s)
{
	struct pb_store *st = s->core->store;

	if (st->shared)
		st->shared->announce_waiter(st, s->id, s->w.token);
}

/* ---- the client's handshake, kept for a re-dial ------------------------ */

/* With a shared store the client's part of the upstream dial (offered
 * subprotocols, Origin, forwarded headers with X-Forwarded-For) is stored
 * with the session, so that an instance adopting it re-dials with the same
 * handshake. It is bounded by what one request may carry
 * (--max-header-bytes). Encoding: one field after another, each
 * "<decimal length>:<bytes>": protocols, origin, then the name and value of
 * each header; an absent string is an empty field. A session of another
 * door than /v1 starts with one letter naming it ('e' Engine.IO, 's'
 * SockJS); a /v1 session's handshake has none, as before doors existed, so
 * old and new instances read each other's /v1 sessions. */

/* The door letters of the kept handshake, by enum pb_door (0: none). */
static const char pb_door_letters[PB_DOOR_COUNT] = { 0, 'e', 's' };

/* Append one field. */
static int handshake_put(struct pb_buf *b, const char *v)
{
	size_t n = v ? strlen(v) : 0;

	if (pb_buf_printf(b, "%zu:", n) || (n && pb_buf_append(b, v, n)))
		return PB_ENOMEM;
	return 0;
}

int session_cluster_keep_handshake(struct pb_session *s, const char *protocols,
				   const char *origin, const struct pb_headers *fwd)
{
	struct pb_buf b;
	int r;

	if (!pb_store_shared(s->core->store))
		return 0;       /* nobody will adopt the session */
	pb_buf_init(&b, 0);
	r = pb_door_letters[s->door] ? pb_buf_append(&b, &pb_door_letters[s->door], 1) : 0;
	if (!r)
		r = handshake_put(&b, protocols);
	if (!r)
		r = handshake_put(&b, origin);
	for (size_t i = 0; fwd && i < fwd->n && !r; i++) {
		r = handshake_put(&b, fwd->name[i]);
		if (!r)
			r = handshake_put(&b, fwd->value[i]);
	}
	if (r) {
		pb_buf_free(&b);
		return r;
	}
	s->handshake = pb_buf_steal(&b, &s->handshake_len);
	return s->handshake ? 0 : PB_ENOMEM;
}

/* A decoded handshake: strings in mem (owned), NUL-terminated. */
struct pb_handshake {
	enum pb_door door;
	char *mem;
	const char *protocols;          /* NULL: none */
	const char *origin;             /* NULL: none */
	struct pb_headers headers;
};

/* Take the next field of [*p, end) into *out (a NUL-terminated copy at
 * *w). 0, or -1 if the bytes are not a field. */
static int handshake_take(const char **p, const char *end, char **w, const char **out)
{
	size_t n = 0;
	const char *q = *p;

	while (q < end && *q >= '0' && *q <= '9' && n <= (size_t)(end - q))
		n = n * 10 + (size_t)(*q++ - '0');
	if (q == *p || q >= end || *q != ':' || n > (size_t)(end - q - 1))
		return -1;
	q++;
	memcpy(*w, q, n);
	(*w)[n] = '\0';
	*out = *w;
	*w += n + 1;
	*p = q + n;
	return 0;
}

/* Decode what session_keep_handshake() made (as a store returned it).
 * 0, PB_ENOMEM, or PB_ESTORE if it is malformed. */
static int handshake_decode(const void *data, size_t len, struct pb_handshake *h)
{
	const char *p = data, *end = p + len;
	char *w;

	memset(h, 0, sizeof(*h));
	for (int d = 1; len && d < PB_DOOR_COUNT; d++)
		if (*p == pb_door_letters[d]) {
			h->door = (enum pb_door)d;
			p++;
			len--;
		}
	if (!len)
		return 0;       /* stored by an older version: nothing to send */
	h->mem = malloc(len + 1);
	if (!h->mem)
		return PB_ENOMEM;
	w = h->mem;
	if (handshake_take(&p, end, &w, &h->protocols) ||
	    handshake_take(&p, end, &w, &h->origin))
		goto bad;
	while (p < end) {
		if (h->headers.n == PB_MAX_HEADERS ||
		    handshake_take(&p, end, &w, &h->headers.name[h->headers.n]) ||
		    handshake_take(&p, end, &w, &h->headers.value[h->headers.n]))
			goto bad;
		h->headers.n++;
	}
	if (!*h->protocols)
		h->protocols = NULL;
	if (!*h->origin)
		h->origin = NULL;
	return 0;
bad:
	free(h->mem);
	h->mem = NULL;
	h->protocols = h->origin = NULL;
	h->headers.n = 0;
	return PB_ESTORE;
}

/* ---- leases and adoption ----------------------------------------------- */

/* Store answer to a lease renewal. */
static void session_renewed(void *arg, int err, uint64_t out_last)
{
	struct pb_session *s = arg;

	if (s->state == PB_S_ENDED) {
		/* Gone meanwhile. */
	} else if (err == PB_ELOST) {
		/* Another instance adopted it (our lease lapsed): let go. */
		pb_metrics_add(PB_C_END_MOVED, 1);
		session_close_upstream(s, 1001, "moved to another instance");
		waiter_release(s);
		session_forget(s, "adopted by another instance");
	} else if (err == PB_ENOSESSION || err == PB_ECLOSED) {
		session_end_here(s, "ended elsewhere");
	} else if (!err && s->state == PB_S_OPEN && !s->out.ring.count &&
		   out_last > s->out.fetched) {
		/* A wakeup for client messages can be missed (sent before our
		 * subscription took effect, or while it was being restored):
		 * the renewal says whether some are waiting, so such messages
		 * wait a second at most. */
		pump_out_fetch(s);
	}
	session_release(s);
}

/* Renew the lease of one owned session, if it is in this tick's slice. */
static void session_renew(struct pb_session *s)
{
	struct pb_store *st = s->core->store;

	if (!s->owned || (s->state == PB_S_CONNECTING && !s->adopting) ||
	    (unsigned char)s->id[0] % PB_RENEW_SLICES != s->core->renew_tick % PB_RENEW_SLICES)
		return;
	session_hold(s);
	if (st->shared->renew(st, s->id, session_renewed, s))
		session_release(s);
}

/* Take over a session whose owner died or drained. */
static void core_adopt(struct pb_core *c, const char *id, const struct pb_store_claim *cl)
{
	const struct pb_route *route = pb_config_route(c->cfg, cl->route);
	struct pb_session *s = session_find(c, id);
	int code = cl->drained ? 1012 : 1006;
	const char *reason = cl->drained ? "instance drained" : "instance lost";
	struct pb_handshake hs;
	int r, hs_err;

	if (s && s->owned)
		return;
	/* The handshake first: it names the door. */
	hs_err = handshake_decode(cl->handshake, cl->handshake_len, &hs);
	if (!s) {
		s = session_new(c, id, 1);
		if (!s) {
			free(hs.mem);
			return;
		}
	} else {
		s->owned = 1;
		c->owned++;
		pb_metrics_gauge((enum pb_gauge)(PB_G_SESSIONS + s->door), 1);
	}
	session_set_door(s, hs.door);
	pb_metrics_add(PB_C_SESSIONS_ADOPTED, 1);
	session_use_route(s, route);
	if (route)
		pb_metrics_route_add(s->route_row, PB_RM_SESSIONS, 1);
	pb_log_info("session %.6s: adopted from a %s instance", s->id,
		    cl->drained ? "drained" : "lost");
	if (cl->closed) {
		session_set_state(s, PB_S_CLOSED, "adopted after the upstream closed");
		if (s->w.state != PB_W_PARKED)
			session_touch(s);
		free(hs.mem);
		return;
	}
	session_set_state(s, PB_S_OPEN, "adopted");
	if (s->door == PB_DOOR_ENGINEIO) {
		/* Never re-dialled: the upstream's Socket.IO state is gone. */
		if (!cl->drained) {
			code = 1011;
			reason = "bridge instance lost";
		}
		session_mark_closed(s, code, reason, strlen(reason), "adopted: Engine.IO session");
		free(hs.mem);
		return;
	}
	if (!route || !route->redial) {
		session_mark_closed(s, code, reason, strlen(reason),
				    route ? "adopted without redial" :
					    "adopted: route not configured here");
		free(hs.mem);
		return;
	}
	session_set_state(s, PB_S_CONNECTING, "adopted: dialling the upstream again");
	s->adopting = 1;
	/* The same handshake as the creating client's dial. */
	if (hs_err)
		pb_log_warn("session %.6s: stored handshake unusable, re-dialling without it", s->id);
	r = session_dial(s, hs.protocols, hs.origin, hs.headers.n ? &hs.headers : NULL);
	free(hs.mem);
	if (r) {
		s->adopting = 0;
		session_mark_closed(s, 1006, "upstream unreachable after adoption", 35,
				    "re-dial failed");
	}
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

		if ((s && s->owned) || !session_id_ok(ids[i], strlen(ids[i])))
			continue;
		op = malloc(sizeof(*op));
		if (!op)
			return;
		op->c = c;
		memcpy(op->id, ids[i], PB_ID_LEN + 1);
		if (c->store->shared->claim(c->store, op->id, core_claimed, op))
			free(op);
	}
}

/* Every PB_ADOPT_INTERVAL_MS / PB_RENEW_SLICES: renew the leases of one
 * slice of our sessions (by the first character of their id), so that
 * each is renewed once per interval and the renewals of thousands of
 * sessions do not reach Redis in one burst (which delays every other
 * command behind them); once per interval, look for orphans to adopt. */
static void core_adopt_tick(uv_timer_t *t)
{
	struct pb_core *c = t->data;

	c->renew_tick++;
	if (c->draining || !c->store->ops->healthy(c->store))
		return;
	core_each(c, session_renew);
	if (c->renew_tick % PB_RENEW_SLICES == 0)
		c->store->shared->orphans(c->store, core_orphans, c);
}

void core_cluster_start(struct pb_core *c)
{
	if (!pb_store_shared(c->store))
		return;
	uv_timer_start(&c->adopt_timer, core_adopt_tick, PB_ADOPT_INTERVAL_MS / PB_RENEW_SLICES,
		       PB_ADOPT_INTERVAL_MS / PB_RENEW_SLICES);
	c->adopt_timer_on = 1;
}

void core_cluster_stop(struct pb_core *c)
{
	if (c->adopt_timer_on)
		uv_timer_stop(&c->adopt_timer);
	c->adopt_timer_on = 0;
}

/* ---- drain --------------------------------------------------------------- */

/* Store answer to a release. */
static void session_released(void *arg, int err)
{
	struct pb_session *s = arg;

	(void)err;
	s->core->releasing--;
	session_release(s);
}

void session_cluster_release(struct pb_session *s)
{
	struct pb_store *st = s->core->store;

	session_close_upstream(s, 1001, "going away");
	waiter_release(s);
	if (s->owned) {
		pb_metrics_add(PB_C_END_MOVED, 1);
		session_hold(s);
		s->core->releasing++;
		if (st->shared->release(st, s->id, session_released, s)) {
			s->core->releasing--;
			session_release(s);
		}
	}
	session_forget(s, "instance draining");
}

/* ---- what other instances report ----------------------------------------- */

/* id ended (DELETE, idle, or its last message acknowledged) somewhere:
 * close the upstream; a waiting poll reads once more, which tells it how
 * (the final closed batch, or 410), and then the session is forgotten. */
void core_on_ended(void *arg, const char *id)
{
	struct pb_session *s = session_find(arg, id);

	/* An idle check of ours may have published it: its answer, which may
	 * come after this wakeup, says how the session ended. A session still
	 * being created (not adopted) is not recorded yet: the news is about
	 * an earlier session with its id (a fixed id), and its create will
	 * learn from the store. */
	if (!s || s->idle_checking || (s->state == PB_S_CONNECTING && !s->adopting))
		return;
	session_close_upstream(s, 1000, "");
	if (s->w.state == PB_W_EMPTY)
		session_end_here(s, "ended");
	else
		waiter_wake(s);
}

/* A poll on id started on some instance: an older one here gives way.
 * One whose read is in flight gives way when the read is answered
 * (waiter_read_done): that read may be the one that ends the session, or
 * return what a short poll came for, and the news may be older than the
 * request (an announcement is not ordered with this instance's requests). */
void core_on_waiter(void *arg, const char *id, const char *instance, uint64_t token)
{
	struct pb_core *c = arg;
	struct pb_session *s = session_find(c, id);

	(void)token;
	if (!s || strcmp(instance, c->store->limits.instance) == 0)
		return;
	s->w.stream = 0;        /* a stream here ends at its next read */
	if (s->w.state == PB_W_EMPTY)
		return;
	if (s->w.reading) {
		s->w.yield = 1;
		return;
	}
	session_hold(s);
	waiter_release(s);
	waiter_linger(s);
	session_release(s);
}

/* After missed wakeups: retry the store, fetch, re-read for waiting polls. */
static void session_resync(struct pb_session *s)
{
	pump_in_retry(s);
	if (s->owned)
		pump_out_fetch(s);
	if (s->w.state == PB_W_PARKED && !s->w.reading)
		waiter_wake(s);
}

/* The store may have missed wakeups (it reconnected). */
void core_on_resync(void *arg)
{
	core_each(arg, session_resync);
}

/* The store went up or down. */
void core_on_health(void *arg, int up)
{
	pb_log_warn("store %s", up ? "available again" : "unavailable");
	if (up)
		core_each(arg, session_resync);
}
