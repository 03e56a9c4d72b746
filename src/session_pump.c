/*
 * session_pump.c: a session's two pumps (see session_int.h).
 *
 * Inbound (upstream -> store): upstream messages wait in in.q and go to
 * the store oldest first, in batches of up to PB_IN_BATCH, one batch at a
 * time, so that a batch is stored whole or not at all and, after a store
 * failure (HELD), sent again in order. A message taken from the upstream
 * waits for the end of the loop pass (the core's in_flush check handle;
 * its prepare handle if it came outside the poll phase, so it is always
 * sent before the loop next blocks) unless a whole batch is waiting or it
 * could fill the stored queue (which must pause the upstream at once):
 * one read of the upstream usually brings many messages, and they then
 * cost one append and one wakeup instead of one each. On a shared store,
 * a request parked here reads right behind the append, without waiting
 * for the append's wakeup to come back (waiter_read_behind_append). The
 * upstream is paused while the stored queue is full (queue_max messages or
 * queue_max_bytes bytes), while too much waits for the store, or while
 * the instance holds more than total_queue_max_bytes of messages; nothing
 * is ever dropped. The upstream's close is stored only after every
 * message that came before it.
 *
 * Outbound (store -> upstream): the owner fetches up to PB_OUT_FETCH
 * client messages into out.ring and hands one to the link per WRITEABLE;
 * the store forgets them (ack_out) once the link has written them whole:
 * when it asks for the next one, or before upstream messages (which may
 * answer them) are appended.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "metrics.h"
#include "session_int.h"

static const char *const pb_in_names[] = { "idle", "pushing", "held" };

/* The inbound pump's one state setter. */
static void in_set_state(struct pb_session *s, enum pb_in_state st)
{
	if (s->in.state == st)
		return;
	pb_log_debug("session %.6s: inbound %s -> %s", s->id, pb_in_names[s->in.state],
		     pb_in_names[st]);
	s->in.state = st;
}

/* The outbound pump's one state setter. */
static void out_set_state(struct pb_session *s, enum pb_out_state st)
{
	s->out.state = st;
}

void pump_free(struct pb_session *s)
{
	pb_msgq_free(&s->in.q);
	pb_msgq_free(&s->out.ring);
}

/* ---- acknowledging client messages the link has written ---------------- */

/* Store answer to an acknowledgement of written messages. */
static void pump_out_acked(void *arg, int err)
{
	(void)err;
	session_release(arg);
}

/* Everything handed to the link has left this process: the store may
 * forget it. (A message is never forgotten while it could still be lost
 * here; after a crash it may be written a second time instead.) */
static void pump_out_ack(struct pb_session *s)
{
	struct pb_store *st = s->core->store;

	if (s->out.written <= s->out.acked)
		return;
	s->out.acked = s->out.written;
	session_hold(s);
	if (st->ops->ack_out(st, s->id, s->out.acked, pump_out_acked, s))
		session_release(s);
}

/* Before upstream messages are appended: acknowledge the client messages
 * the link has written whole, which it otherwise does only when it asks
 * for the next one. An upstream's answer to a client message (an echo)
 * may arrive before that; stored first, it would outlive the message's
 * acknowledgement if this instance died in between, and the adopter
 * would write the message again and store a second answer. The store
 * runs the two in the order sent (a session's keys share one Redis
 * connection, on a cluster too). */
static void pump_in_before_append(struct pb_session *s)
{
	const struct pb_link_ops *link = s->core->link;

	if (s->in.q.count && s->up && s->out.written > s->out.acked && link->written &&
	    link->written(s->up))
		pump_out_ack(s);
}

/* ---- inbound: upstream -> store ---------------------------------------- */

void pump_in_update_pause(struct pb_session *s)
{
	int want = s->in.full || s->in.mem_full || s->in.q.count >= PB_IN_WAIT_MAX ||
		   s->in.q.bytes >= s->core->cfg->queue_max_bytes;

	if (s->up && want != s->in.paused) {
		s->in.paused = want;
		s->core->link->pause(s->up, want);
		pb_log_debug("session %.6s: upstream %s", s->id, want ? "paused" : "resumed");
	}
}

/* Store answer to the upstream's close. */
static void pump_in_close_stored(void *arg, int err)
{
	struct pb_session *s = arg;

	if (err == PB_ESTORE && s->state != PB_S_ENDED)
		s->in.close_pending = 1;        /* retried on resync */
	session_release(s);
}

/* Record the upstream's close in the store. */
static void pump_in_store_close(struct pb_session *s)
{
	struct pb_store *st = s->core->store;

	s->in.close_pending = 0;
	session_hold(s);
	if (st->ops->close(st, s->id, s->in.close_code, s->in.close_reason,
			   s->in.close_reason_len, pump_in_close_stored, s)) {
		s->in.close_pending = 1;        /* store unavailable: retried on resync */
		session_release(s);
	}
}

void pump_in_close_if_due(struct pb_session *s)
{
	if (!s->in.q.count && s->in.state != PB_IN_PUSHING && s->in.close_pending &&
	    s->state == PB_S_CLOSED)
		pump_in_store_close(s);
}

void pump_in_close(struct pb_session *s, int code, const char *reason, size_t reason_len)
{
	s->in.close_code = code;
	s->in.close_reason_len = reason_len < sizeof(s->in.close_reason) ?
				 reason_len : sizeof(s->in.close_reason);
	memmove(s->in.close_reason, reason, s->in.close_reason_len);    /* may be itself */
	if (s->in.q.count || s->in.state == PB_IN_PUSHING)
		s->in.close_pending = 1;
	else
		pump_in_store_close(s);
}

/* Store answer to an append of the in.pushing oldest messages. */
static void pump_in_pushed(void *arg, int err, uint64_t seq, size_t depth, size_t bytes)
{
	struct pb_session *s = arg;
	int n = s->in.pushing;

	(void)seq;
	s->in.pushing = 0;
	s->quiet.valid = 0;     /* the store may hold more than a short poll saw */
	if (err == PB_ESTORE || err == PB_ENOMEM) {
		/* Keep them; they are sent again, in order, when the store is
		 * back: nothing is dropped. */
		if (s->in.state != PB_IN_HELD)
			pb_log_warn("session %.6s: store unavailable, holding %zu upstream messages",
				    s->id, s->in.q.count);
		in_set_state(s, PB_IN_HELD);
	} else {
		/* Stored, or refused for good (the session ended meanwhile). */
		size_t stored = 0;

		in_set_state(s, PB_IN_IDLE);
		for (int i = 0; i < n; i++) {
			struct pb_msg *m = pb_msgq_pop(&s->in.q);

			stored += m->len;
			pb_msg_unref(m);
		}
		if (!err) {
			pb_metrics_add(PB_C_MSGS_IN, (uint64_t)n);
			pb_metrics_add(PB_C_BYTES_IN, stored);
			if (s->route) {
				pb_metrics_route_add(s->route_row, PB_RM_MSGS_IN, n);
				pb_metrics_route_add(s->route_row, PB_RM_BYTES_IN, (int64_t)stored);
			}
			s->in.depth = depth;
			s->in.depth_bytes = bytes;
			s->in.full = depth >= s->core->cfg->queue_max ||
				     bytes >= s->core->cfg->queue_max_bytes;
			pb_metrics_observe(PB_H_QUEUE_DEPTH, (double)depth);
		}
	}
	pump_in_update_pause(s);
	core_memory_check(s->core);
	if (!s->in.in_loop)
		pump_in_next(s);
	pump_in_close_if_due(s);
	session_release(s);
}

void pump_in_next(struct pb_session *s)
{
	struct pb_store *st = s->core->store;
	struct pb_msg *batch[PB_IN_BATCH];
	int appended = 0;

	if (s->in.in_loop)
		return;
	s->in.in_loop = 1;
	pump_in_before_append(s);
	while (s->in.state == PB_IN_IDLE && s->in.q.count && s->state != PB_S_ENDED &&
	       s->state != PB_S_CONNECTING) {
		size_t n = s->in.q.count < PB_IN_BATCH ? s->in.q.count : PB_IN_BATCH;

		for (size_t i = 0; i < n; i++)
			batch[i] = pb_msgq_at(&s->in.q, i);
		s->in.pushing = (int)n;
		in_set_state(s, PB_IN_PUSHING);
		session_hold(s);
		if (st->ops->push_in(st, s->id, batch, n, pump_in_pushed, s)) {
			s->in.pushing = 0;
			in_set_state(s, PB_IN_HELD);
			pump_in_update_pause(s);
			session_release(s);
		} else {
			appended = 1;
		}
	}
	s->in.in_loop = 0;
	if (appended)
		waiter_read_behind_append(s);
}

void pump_in_retry(struct pb_session *s)
{
	if (s->in.state == PB_IN_HELD)
		in_set_state(s, PB_IN_IDLE);    /* every failed append has answered */
	pump_in_next(s);
	pump_in_close_if_due(s);
}

void pump_in_take(struct pb_session *s, struct pb_msg *m)
{
	struct pb_core *c = s->core;

	if (pb_msgq_push(&s->in.q, m)) {
		pb_log_error("session %.6s: out of memory, upstream message lost", s->id);
		pb_msg_unref(m);
		return;
	}
	if (!s->in.mem_full && pb_msg_live_bytes() >= c->cfg->total_queue_max_bytes) {
		/* The instance's bound: this upstream waits until clients have
		 * taken enough (core_memory_check). */
		s->in.mem_full = 1;
		if (!c->mem_paused++)
			pb_log_warn("messages held reach --total-queue-max-bytes (%zu): pausing "
				    "upstreams that send more", c->cfg->total_queue_max_bytes);
	}
	pump_in_update_pause(s);
	if (s->in.q.count >= PB_IN_BATCH ||
	    s->in.depth + s->in.q.count >= c->cfg->queue_max ||
	    s->in.depth_bytes + s->in.q.bytes >= c->cfg->queue_max_bytes) {
		pump_in_next(s);
		return;
	}
	if (s->in.listed)
		return;
	/* The first message of this pass: send it (and whatever follows it
	 * in the pass) once the loop has run every callback of the pass. */
	s->in.listed = 1;
	session_hold(s);
	s->in.flush_next = NULL;
	if (c->flush_tail)
		c->flush_tail->in.flush_next = s;
	else
		c->flush_head = s;
	c->flush_tail = s;
	if (!uv_is_active((uv_handle_t *)&c->in_flush)) {
		uv_check_start(&c->in_flush, core_in_flush);
		uv_prepare_start(&c->in_flush_pre, core_in_flush_pre);
	}
}

/* Take the flush list off the core (the sessions keep their refs). */
static struct pb_session *core_flush_take(struct pb_core *c)
{
	struct pb_session *s = c->flush_head;

	c->flush_head = c->flush_tail = NULL;
	uv_check_stop(&c->in_flush);
	uv_prepare_stop(&c->in_flush_pre);
	return s;
}

/* Send what the listed sessions took. */
static void core_flush(struct pb_core *c)
{
	struct pb_session *s = core_flush_take(c), *next;

	/* Sessions listed while this runs (a store answering at once may
	 * lead to more upstream reads only on a later pass) go on a new
	 * list and a new pass. */
	for (; s; s = next) {
		next = s->in.flush_next;
		s->in.listed = 0;
		pump_in_next(s);
		pump_in_close_if_due(s);
		session_release(s);
	}
}

void core_in_flush(uv_check_t *h)
{
	core_flush(h->data);
}

void core_in_flush_pre(uv_prepare_t *h)
{
	core_flush(h->data);
}

void core_in_flush_drop(struct pb_core *c)
{
	struct pb_session *s = core_flush_take(c), *next;

	for (; s; s = next) {
		next = s->in.flush_next;
		s->in.listed = 0;
		session_release(s);
	}
}

void pump_in_memory_resume(struct pb_session *s)
{
	if (s->in.mem_full) {
		s->in.mem_full = 0;
		s->core->mem_paused--;
		pump_in_update_pause(s);
	}
}

void core_memory_check(struct pb_core *c)
{
	if (!c->mem_paused || !c->sessions ||
	    pb_msg_live_bytes() >= c->cfg->total_queue_max_bytes / 4 * 3)
		return;
	pb_log_info("messages held below three quarters of --total-queue-max-bytes: "
		    "resuming %zu upstreams", c->mem_paused);
	core_each(c, pump_in_memory_resume);
}

void pump_in_drained(struct pb_session *s, size_t depth)
{
	s->in.depth = depth;
	if (s->in.full && depth < s->core->cfg->queue_max) {
		s->in.full = 0;
		pump_in_update_pause(s);
	}
	if (s->in.mem_full && !depth)
		/* Its client has taken everything: whatever the other sessions
		 * hold, this one may bring in its next message. */
		pump_in_memory_resume(s);
	core_memory_check(s->core);
}

/* The client acknowledged messages of id: an upstream paused because the
 * queue was full may read again (the next append tells if it still is). */
void core_on_acked(void *arg, const char *id)
{
	struct pb_session *s = session_find(arg, id);

	if (s && s->in.full) {
		s->in.full = 0;
		pump_in_update_pause(s);
	}
	core_memory_check(arg);
}

/* ---- outbound: store -> upstream --------------------------------------- */

static void pump_out_fetched(void *arg, int err, const struct pb_store_batch *b);

void pump_out_fetch(struct pb_session *s)
{
	struct pb_store *st = s->core->store;
	size_t room = PB_OUT_FETCH - s->out.ring.count;

	if (s->state != PB_S_OPEN || !s->up || !s->owned)
		return;
	if (s->out.state == PB_OUT_FETCHING || !room) {
		s->out.refetch = 1;
		return;
	}
	out_set_state(s, PB_OUT_FETCHING);
	s->out.refetch = 0;
	session_hold(s);
	if (st->ops->read_out(st, s->id, s->out.fetched, room, pump_out_fetched, s)) {
		out_set_state(s, PB_OUT_IDLE);
		s->out.refetch = 1;
		session_release(s);
	}
}

/* Store answer to a fetch of outbound messages. */
static void pump_out_fetched(void *arg, int err, const struct pb_store_batch *b)
{
	struct pb_session *s = arg;

	out_set_state(s, PB_OUT_IDLE);
	if (!err && s->state == PB_S_OPEN) {
		for (size_t i = 0; i < b->n && s->out.ring.count < PB_OUT_FETCH; i++) {
			if (b->msgs[i]->seq <= s->out.fetched)
				continue;
			if (pb_msgq_push(&s->out.ring, pb_msg_ref(b->msgs[i]))) {
				pb_msg_unref(b->msgs[i]);
				s->out.refetch = 1;
				break;
			}
			s->out.fetched = b->msgs[i]->seq;
		}
		/* The store holds more than this fetch took (it was capped by
		 * the ring's room): fetch again once the ring drains. */
		if (b->n && b->last_seq > s->out.fetched)
			s->out.refetch = 1;
		if (s->out.ring.count && s->up)
			s->core->link->want_write(s->up);
		/* Nothing left to write means no WRITEABLE to fetch from: a
		 * wakeup that came during this fetch is served now. */
		if (s->out.refetch && !s->out.ring.count)
			pump_out_fetch(s);
	}
	session_release(s);
}

/* Core answer to the delete a PB_MSG_CLOSE started: nobody waits for it. */
static void pump_out_closed(void *req, int err)
{
	(void)req;
	if (err && err != PB_ENOSESSION && err != PB_ECLOSED)
		pb_log_warn("a client's close could not end its session: %s", pb_err_code(err));
}

/* The close marker is next: everything queued before it has left this
 * process, so end the session now (the upstream gets 1000), as a DELETE
 * would. Called from the link's write callback: the link only detaches. */
static void pump_out_close(struct pb_session *s)
{
	s->out.closing = 1;
	session_hold(s);
	pb_core_delete(s->core, s->id, pump_out_closed, NULL);
	session_release(s);
}

struct pb_msg *pump_out_next(struct pb_session *s)
{
	struct pb_msg *m;

	if (s->out.closing)
		return NULL;
	/* The link asks again only once its own buffer is empty. */
	pump_out_ack(s);
	m = pb_msgq_pop(&s->out.ring);
	if (m && m->type == PB_MSG_CLOSE) {
		s->out.written = m->seq;
		pb_msg_unref(m);
		pump_out_close(s);
		return NULL;
	}
	if (m) {
		s->out.written = m->seq;
		pb_metrics_add(PB_C_MSGS_OUT, 1);
		pb_metrics_add(PB_C_BYTES_OUT, m->len);
		if (s->route) {
			pb_metrics_route_add(s->route_row, PB_RM_MSGS_OUT, 1);
			pb_metrics_route_add(s->route_row, PB_RM_BYTES_OUT, (int64_t)m->len);
		}
	}
	if (s->out.ring.count < PB_OUT_FETCH / 2 && s->out.refetch)
		pump_out_fetch(s);
	core_memory_check(s->core);
	return m;
}

void pump_out_drop(struct pb_session *s)
{
	pb_msgq_drop(&s->out.ring, s->out.ring.count);
}

/* New client messages for id's upstream. */
void core_on_outbound(void *arg, const char *id)
{
	struct pb_session *s = session_find(arg, id);

	if (s)
		pump_out_fetch(s);
}
