/*
 * store_memory.c: the memory store (see store.h for the contract). Per
 * session it keeps two FIFOs of message references, the client cursor
 * trimming the inbound one and the owner's write position trimming the
 * outbound one. Ended sessions shrink to a tombstone on a FIFO list (every
 * tombstone lives equally long, so the oldest is always at the head) that
 * one timer walks.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "map.h"
#include "store_memory.h"

enum mem_state { MEM_OPEN, MEM_CLOSED, MEM_ENDED };

struct mem_session {
	char id[PB_ID_LEN + 1];
	enum mem_state state;
	char *route;
	char *protocol;
	int close_code;
	char *close_reason;
	size_t close_reason_len;
	struct pb_msgq in;     /* holds seqs in_last - in.count + 1 .. in_last */
	uint64_t in_last;
	struct pb_msgq out;    /* holds out-seqs out_last - out.count + 1 .. out_last */
	uint64_t out_last;
	uint64_t send_seq;
	uint64_t handed;        /* the handed mark (PB_STORE_AFTER_HANDED) */
	uint64_t forget_at;     /* tombstones: loop time (ms) to forget it */
	struct mem_session *tomb_next;
};

struct mem_store {
	struct pb_store base;   /* first: the pb_store we hand out */
	uv_loop_t *loop;
	uv_timer_t sweep;
	struct pb_map *sessions;
	struct mem_session *tomb_head, *tomb_tail;
};

/* Free what a live session holds besides its tombstone identity. */
static void mem_session_strip(struct mem_session *ms)
{
	pb_msgq_free(&ms->in);
	pb_msgq_free(&ms->out);
	free(ms->route);
	free(ms->protocol);
	free(ms->close_reason);
	ms->route = ms->protocol = ms->close_reason = NULL;
}

/* Look a session up by id. */
static struct mem_session *mem_find(struct mem_store *st, const char *id)
{
	return pb_map_get(st->sessions, id, strlen(id));
}

/* The session for id if it is live (open or closed); else the error. */
static int mem_live(struct mem_store *st, const char *id, struct mem_session **out)
{
	struct mem_session *ms = mem_find(st, id);

	if (!ms)
		return PB_ENOSESSION;
	if (ms->state == MEM_ENDED)
		return PB_ECLOSED;
	*out = ms;
	return 0;
}

/* Forget every tombstone whose time has come; re-arm for the next one. */
static void mem_sweep(uv_timer_t *t)
{
	struct mem_store *st = t->data;
	uint64_t now = uv_now(st->loop);

	while (st->tomb_head && st->tomb_head->forget_at <= now) {
		struct mem_session *ms = st->tomb_head;

		st->tomb_head = ms->tomb_next;
		if (!st->tomb_head)
			st->tomb_tail = NULL;
		pb_map_del(st->sessions, ms->id, strlen(ms->id));
		free(ms);
	}
	if (st->tomb_head)
		uv_timer_start(&st->sweep, mem_sweep, st->tomb_head->forget_at - now, 0);
}

/* Turn a live session into a tombstone. */
static void mem_bury(struct mem_store *st, struct mem_session *ms)
{
	mem_session_strip(ms);
	ms->state = MEM_ENDED;
	ms->forget_at = uv_now(st->loop) + (uint64_t)st->base.limits.tombstone_secs * 1000;
	ms->tomb_next = NULL;
	if (st->tomb_tail)
		st->tomb_tail->tomb_next = ms;
	else
		st->tomb_head = ms;
	st->tomb_tail = ms;
	if (!uv_is_active((uv_handle_t *)&st->sweep))
		uv_timer_start(&st->sweep, mem_sweep,
			       (uint64_t)st->base.limits.tombstone_secs * 1000, 0);
}

/* strdup that copes with NULL. */
static char *mem_strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* The handshake is not kept: with one instance nobody adopts a session.
 * An id that is live or a tombstone is refused (a fixed id's create). */
static int mem_create(struct pb_store *s, const char *id, const char *route,
		      const char *protocol, const void *handshake, size_t handshake_len,
		      pb_store_done_cb cb, void *arg)
{
	struct mem_store *st = (struct mem_store *)s;
	struct mem_session *ms;
	int r;

	(void)handshake;
	(void)handshake_len;
	if (mem_find(st, id)) {
		cb(arg, PB_EEXIST);
		return 0;
	}
	ms = calloc(1, sizeof(*ms));
	if (!ms)
		return PB_ENOMEM;
	memcpy(ms->id, id, PB_ID_LEN);
	ms->state = MEM_OPEN;
	ms->route = mem_strdup(route);
	ms->protocol = mem_strdup(protocol);
	if ((route && !ms->route) || (protocol && !ms->protocol)) {
		mem_session_strip(ms);
		free(ms);
		return PB_ENOMEM;
	}
	r = pb_map_put(st->sessions, ms->id, strlen(ms->id), ms);
	if (r) {
		mem_session_strip(ms);
		free(ms);
		return r;
	}
	cb(arg, 0);
	return 0;
}

static int mem_push_in(struct pb_store *s, const char *id, struct pb_msg *const *msgs, size_t n,
		       pb_store_push_cb cb, void *arg)
{
	struct mem_store *st = (struct mem_store *)s;
	struct mem_session *ms;
	int r = mem_live(st, id, &ms);
	size_t i;

	if (!r && ms->state == MEM_CLOSED)
		r = PB_ECLOSED;
	for (i = 0; !r && i < n; i++) {
		r = pb_msgq_push(&ms->in, pb_msg_ref(msgs[i]));
		if (r) {
			/* All or nothing: take back what this call queued. */
			pb_msg_unref(msgs[i]);
			while (i--)
				pb_msg_unref(pb_msgq_pop_newest(&ms->in));
			break;
		}
	}
	if (r) {
		cb(arg, r, 0, 0, 0);
		return 0;
	}
	for (i = 0; i < n; i++)
		msgs[i]->seq = ++ms->in_last;
	cb(arg, 0, ms->in_last, ms->in.count, ms->in.bytes);
	if (n)
		pb_store_wake_inbound(s, id);
	return 0;
}

static int mem_read_in(struct pb_store *s, const char *id, uint64_t after, uint64_t from,
		       size_t max, size_t max_bytes, unsigned hold_secs, int may_end,
		       pb_store_batch_cb cb, void *arg)
{
	struct mem_store *st = (struct mem_store *)s;
	struct pb_store_batch b = { 0 };
	struct mem_session *ms;
	uint64_t first;
	size_t n = 0, bytes = 0, skip;
	int r = mem_live(st, id, &ms), ended, acked = 0;

	if (!r && after == PB_STORE_AFTER_HANDED)
		after = ms->handed;
	if (from == PB_STORE_AFTER_HANDED || from < after)
		from = after;
	if (!r && after > ms->in_last)
		r = PB_EBADREQ;
	if (r) {
		cb(arg, r, NULL);
		return 0;
	}
	/* Acknowledge: everything <= after may go. */
	first = ms->in_last - ms->in.count + 1;
	if (after >= first) {
		pb_msgq_drop(&ms->in, (size_t)(after - first + 1));
		acked = 1;
	}
	/* Read from past `from` (a stream reads ahead of the cursor). */
	first = ms->in_last - ms->in.count + 1;
	skip = from >= first ? (size_t)(from - first + 1) : 0;
	if (skip > ms->in.count)
		skip = ms->in.count;
	while (skip + n < ms->in.count && n < max) {
		size_t len = pb_msgq_at(&ms->in, skip + n)->len;

		if (n > 0 && bytes + len > max_bytes)
			break;
		bytes += len;
		n++;
	}
	if (n) {
		b.msgs = malloc(n * sizeof(*b.msgs));
		if (!b.msgs)
			return PB_ENOMEM;
		for (size_t i = 0; i < n; i++)
			b.msgs[i] = pb_msgq_at(&ms->in, skip + i);
	}
	b.n = n;
	b.last_seq = ms->in_last;
	b.depth = ms->in.count;
	b.acked = after;
	/* The handed mark: what this read returned, else where it read from. */
	ms->handed = n ? b.msgs[n - 1]->seq : (from < ms->in_last ? from : ms->in_last);
	if (ms->state == MEM_CLOSED && skip + n == ms->in.count) {
		b.close.closed = 1;
		b.close.code = ms->close_code;
		b.close.reason = ms->close_reason ? ms->close_reason : "";
		b.close.reason_len = ms->close_reason_len;
	}
	ended = may_end && ms->state == MEM_CLOSED && ms->in.count == 0;
	b.ended = ended;
	cb(arg, 0, &b);
	free(b.msgs);
	if (acked && !ended)
		pb_store_wake_acked(s, id);
	if (ended) {
		/* The callback may not end it (it is the store's to end), but be
		 * safe against a re-entrant end. */
		ms = mem_find(st, id);
		if (ms && ms->state == MEM_CLOSED)
			mem_bury(st, ms);
	}
	return 0;
}

static int mem_push_out(struct pb_store *s, const char *id, struct pb_msg *const *msgs,
			size_t n, uint64_t send_seq, pb_store_send_cb cb, void *arg)
{
	size_t bytes = 0;
	struct mem_store *st = (struct mem_store *)s;
	struct pb_store_send_result res = { 0 };
	struct mem_session *ms;
	int r = mem_live(st, id, &ms);

	if (!r && ms->state == MEM_CLOSED)
		r = PB_ECLOSED;
	if (r) {
		cb(arg, r, &res);
		return 0;
	}
	if (send_seq && send_seq <= ms->send_seq) {
		res.send_seq = ms->send_seq;
		cb(arg, 0, &res);
		return 0;
	}
	if (send_seq && send_seq > ms->send_seq + 1) {
		res.send_seq = ms->send_seq;
		res.expected = ms->send_seq + 1;
		cb(arg, PB_ESEQGAP, &res);
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		bytes += msgs[i]->len;
	if (n > s->limits.queue_max || ms->out.count > s->limits.queue_max - n ||
	    bytes > s->limits.queue_max_bytes || ms->out.bytes > s->limits.queue_max_bytes - bytes) {
		cb(arg, PB_EQFULL, &res);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (pb_msgq_push(&ms->out, pb_msg_ref(msgs[i]))) {
			/* Undo the part of the batch already queued. */
			pb_msg_unref(msgs[i]);
			while (i--)
				pb_msg_unref(pb_msgq_pop_newest(&ms->out));
			return PB_ENOMEM;
		}
	}
	for (size_t i = 0; i < n; i++)
		msgs[i]->seq = ++ms->out_last;
	if (send_seq)
		ms->send_seq = send_seq;
	res.accepted = n;
	res.send_seq = ms->send_seq;
	cb(arg, 0, &res);
	if (n)
		pb_store_wake_outbound(s, id);
	return 0;
}

static int mem_read_out(struct pb_store *s, const char *id, uint64_t after, size_t max,
			pb_store_batch_cb cb, void *arg)
{
	struct mem_store *st = (struct mem_store *)s;
	struct pb_store_batch b = { 0 };
	struct mem_session *ms;
	uint64_t first;
	size_t skip = 0, n;
	int r = mem_live(st, id, &ms);

	if (r) {
		cb(arg, r, NULL);
		return 0;
	}
	first = ms->out_last - ms->out.count + 1;
	if (after >= first)
		skip = after - first + 1 > ms->out.count ? ms->out.count : (size_t)(after - first + 1);
	n = ms->out.count - skip;
	if (n > max)
		n = max;
	if (n) {
		b.msgs = malloc(n * sizeof(*b.msgs));
		if (!b.msgs)
			return PB_ENOMEM;
		for (size_t i = 0; i < n; i++)
			b.msgs[i] = pb_msgq_at(&ms->out, skip + i);
	}
	b.n = n;
	b.last_seq = ms->out_last;
	b.depth = ms->out.count;
	cb(arg, 0, &b);
	free(b.msgs);
	return 0;
}

static int mem_ack_out(struct pb_store *s, const char *id, uint64_t upto,
		       pb_store_done_cb cb, void *arg)
{
	struct mem_store *st = (struct mem_store *)s;
	struct mem_session *ms;
	uint64_t first;
	int r = mem_live(st, id, &ms);

	if (!r) {
		first = ms->out_last - ms->out.count + 1;
		if (upto >= first)
			pb_msgq_drop(&ms->out, (size_t)(upto - first + 1));
	}
	cb(arg, r);
	return 0;
}

static int mem_unhand(struct pb_store *s, const char *id, uint64_t was, uint64_t to,
		      pb_store_done_cb cb, void *arg)
{
	struct mem_store *st = (struct mem_store *)s;
	struct mem_session *ms;
	int r = mem_live(st, id, &ms);

	if (!r && ms->handed == was && to < was)
		ms->handed = to;
	cb(arg, r);
	return 0;
}

static int mem_close(struct pb_store *s, const char *id, int code, const char *reason,
		     size_t reason_len, pb_store_done_cb cb, void *arg)
{
	struct mem_store *st = (struct mem_store *)s;
	struct mem_session *ms;
	int r = mem_live(st, id, &ms);

	if (r || ms->state == MEM_CLOSED) {
		cb(arg, r ? r : PB_ECLOSED);
		return 0;
	}
	ms->close_reason = malloc(reason_len + 1);
	if (!ms->close_reason)
		return PB_ENOMEM;
	if (reason_len)
		memcpy(ms->close_reason, reason, reason_len);
	ms->close_reason[reason_len] = '\0';
	ms->close_reason_len = reason_len;
	ms->close_code = code;
	ms->state = MEM_CLOSED;
	pb_msgq_free(&ms->out);
	cb(arg, 0);
	pb_store_wake_inbound(s, id);
	return 0;
}

static int mem_end(struct pb_store *s, const char *id, pb_store_done_cb cb, void *arg)
{
	struct mem_store *st = (struct mem_store *)s;
	struct mem_session *ms;
	int r = mem_live(st, id, &ms);

	if (r) {
		cb(arg, r);
		return 0;
	}
	mem_bury(st, ms);
	cb(arg, 0);
	pb_store_wake_inbound(s, id);
	return 0;
}

/* One instance sees every request, so its idle timer is exact: end. */
static int mem_end_if_idle(struct pb_store *s, const char *id, pb_store_idle_cb cb, void *arg)
{
	struct mem_store *st = (struct mem_store *)s;
	struct mem_session *ms;
	int r = mem_live(st, id, &ms);

	if (!r) {
		mem_bury(st, ms);
		cb(arg, 0, 1, 0);
		pb_store_wake_inbound(s, id);
		return 0;
	}
	cb(arg, r, 0, 0);
	return 0;
}

static int mem_healthy(struct pb_store *s)
{
	return 1;
}

/* The sweep timer is closed: now the store's memory can go. */
static void mem_closed(uv_handle_t *h)
{
	free(h->data);
}

static void mem_destroy(struct pb_store *s)
{
	struct mem_store *st = (struct mem_store *)s;
	size_t n = pb_map_count(st->sessions);
	void **all = n ? malloc(n * sizeof(*all)) : NULL;

	if (all) {
		n = pb_map_values(st->sessions, all, n);
		for (size_t i = 0; i < n; i++) {
			mem_session_strip(all[i]);
			free(all[i]);
		}
		free(all);
	}
	pb_map_free(st->sessions);
	st->sessions = NULL;
	uv_close((uv_handle_t *)&st->sweep, mem_closed);
}

static const struct pb_store_ops mem_ops = {
	.name = "memory",
	.destroy = mem_destroy,
	.healthy = mem_healthy,
	.create = mem_create,
	.push_in = mem_push_in,
	.read_in = mem_read_in,
	.push_out = mem_push_out,
	.read_out = mem_read_out,
	.ack_out = mem_ack_out,
	.close = mem_close,
	.end = mem_end,
	.end_if_idle = mem_end_if_idle,
	.unhand = mem_unhand,
};

struct pb_store *pb_store_memory_new(uv_loop_t *loop, const struct pb_store_events *events,
				     const struct pb_store_limits *limits)
{
	struct mem_store *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->sessions = pb_map_new();
	if (!st->sessions) {
		free(st);
		return NULL;
	}
	st->base.ops = &mem_ops;
	st->base.events = *events;
	st->base.limits = *limits;
	st->loop = loop;
	uv_timer_init(loop, &st->sweep);
	st->sweep.data = st;
	return &st->base;
}
