/*
 * test_pump.c: the session core's pumps, driven over a fake link (no
 * sockets, no echo server): the test plays the upstream by calling the
 * handler the core dialled with, and sees what the core does to the link
 * (writes, pauses, closes). The store is the real memory store.
 *
 * Covered: a create answered once the fake handshake completes; the
 * outbound pump delivers a batch far larger than its fetch (300) and 20
 * back-to-back batches without any further send; the inbound pump keeps
 * the upstream's order, pauses the link at --queue-max messages and at
 * --queue-max-bytes bytes and resumes it when the client acknowledges; the
 * upstream's close reaches the client after every message before it; the
 * messages of one read reach the store (and a parked poll) together; the
 * instance's byte bound (--total-queue-max-bytes) refuses sends with
 * buffers_full and pauses the link, and lets go once the client has taken
 * what was held. On a real Redis: a poll whose read is in flight when
 * another instance's poll is announced answers what the read found (its
 * messages, the session's close) and gives way only if it found nothing;
 * a short poll answered without Redis on the owner is not while an append
 * of upstream messages is in flight; a poll counts as parked (what
 * --lean-long-polls waits for) only once its read found nothing.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "error.h"
#include "metrics.h"
#include "session.h"
#include "store.h"
#include "store_memory.h"
#include "store_redis.h"
#include "tap.h"
#include "upstream.h"

/* The fake link: what the core did to it, and the handler to answer with. */
struct fake_up {
	const struct pb_upstream_handler *h;
	void *arg;
	int want_write;
	int paused;
	int pauses;             /* pause(1) calls */
	int closed;
	int close_code;
	int unwritten;          /* 1: part of a message is still in the link */
};

static struct fake_up links[8];
static int nlinks;
static int last_eio;            /* d->eio of the last dial */
/* The loop of the running world: a read of the upstream ends with a pass
 * of it, as in the daemon, where the link reports messages from the loop. */
static uv_loop_t *says_loop;

/* Fake dial: record the handler; the test completes the handshake. */
static struct pb_upstream *fake_dial(void *ctx, const struct pb_upstream_dial *d,
				     const struct pb_upstream_handler *h, void *arg, int *err)
{
	struct fake_up *f;

	(void)ctx;
	last_eio = d->eio;
	if (nlinks == 8) {
		*err = PB_EUPSTREAM;
		return NULL;
	}
	f = &links[nlinks++];
	memset(f, 0, sizeof(*f));
	f->h = h;
	f->arg = arg;
	return (struct pb_upstream *)f;
}

static void fake_want_write(struct pb_upstream *up)
{
	((struct fake_up *)up)->want_write = 1;
}

static void fake_pause(struct pb_upstream *up, int paused)
{
	struct fake_up *f = (struct fake_up *)up;

	f->paused = paused;
	f->pauses += paused;
}

static void fake_close(struct pb_upstream *up, int code, const char *reason)
{
	struct fake_up *f = (struct fake_up *)up;

	(void)reason;
	f->closed = 1;
	f->close_code = code;
}

static int fake_written(struct pb_upstream *up)
{
	return !((struct fake_up *)up)->unwritten;
}

static const struct pb_link_ops fake_ops = {
	.dial = fake_dial,
	.want_write = fake_want_write,
	.pause = fake_pause,
	.close = fake_close,
	.written = fake_written,
};

/* ---- a core over the fake link -------------------------------------------- */

struct world {
	uv_loop_t loop;
	struct pb_config cfg;
	struct pb_core *core;
	struct pb_store *store;
};

/* Start a core with the extra command-line options (NULL-terminated). */
static void world_start(struct world *w, const char *const *opts)
{
	char *argv[16] = { "pollbridge", "--route", "r=ws://127.0.0.1:9/" };
	int argc = 3;
	enum pb_config_action act;
	struct pb_store_events ev;
	struct pb_store_limits lim = { 0 };
	char err[256];

	for (; opts && *opts && argc < 15; opts++)
		argv[argc++] = (char *)*opts;
	uv_loop_init(&w->loop);
	pb_config_init(&w->cfg);
	if (pb_config_parse_args(&w->cfg, argc, argv, &act, err, sizeof(err)))
		tap_bail("config: %s", err);
	w->core = pb_core_new(&w->loop, &w->cfg, &fake_ops, NULL);
	pb_core_store_events(w->core, &ev);
	lim.queue_max = w->cfg.queue_max;
	lim.queue_max_bytes = w->cfg.queue_max_bytes;
	lim.tombstone_secs = w->cfg.idle_timeout;
	w->store = pb_store_memory_new(&w->loop, &ev, &lim);
	pb_core_attach_store(w->core, w->store);
	nlinks = 0;
	says_loop = &w->loop;
}

/* Tear the core down and check nothing is left on the loop. */
static void world_stop(struct world *w)
{
	pb_core_free(w->core);
	pb_store_destroy(w->store);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	tap_is_int(uv_loop_close(&w->loop), 0, "no handle left on the loop");
	pb_config_free(&w->cfg);
}

/* One request's answer. */
struct answer {
	int done, err;
	char id[PB_ID_LEN + 1];
	size_t n, accepted;
	uint64_t last;          /* seq of the last message */
	char first[64], lastd[64];
	int closed, code;
	char reason[64];
	int released;
};

static void on_create(void *req, int err, const char *id, const char *protocol)
{
	struct answer *a = req;

	(void)protocol;
	a->done++;
	a->err = err;
	if (id)
		snprintf(a->id, sizeof(a->id), "%s", id);
}

static void on_poll(void *req, int err, const struct pb_core_batch *b)
{
	struct answer *a = req;

	a->done++;
	a->err = err;
	if (err || !b)
		return;
	a->n = b->n;
	if (b->n) {
		snprintf(a->first, sizeof(a->first), "%.*s", (int)b->msgs[0]->len,
			 (const char *)b->msgs[0]->data);
		snprintf(a->lastd, sizeof(a->lastd), "%.*s", (int)b->msgs[b->n - 1]->len,
			 (const char *)b->msgs[b->n - 1]->data);
		a->last = b->msgs[b->n - 1]->seq;
	}
	a->closed = b->close.closed;
	a->released = b->released;
	a->code = b->close.code;
	snprintf(a->reason, sizeof(a->reason), "%.*s", (int)b->close.reason_len,
		 b->close.reason ? b->close.reason : "");
}

static void on_send(void *req, int err, const struct pb_core_send_result *r)
{
	struct answer *a = req;

	a->done++;
	a->err = err;
	a->accepted = r ? r->accepted : 0;
}

static void on_done_req(void *req, int err)
{
	struct answer *a = req;

	a->done++;
	a->err = err;
}

/* Create a session and complete its fake handshake: its link. */
static struct fake_up *open_session(struct world *w, struct answer *a)
{
	struct pb_create_req cr = { 0 };
	struct fake_up *f;

	memset(a, 0, sizeof(*a));
	cr.route = "r";
	pb_core_create(w->core, &cr, "127.0.0.1", NULL, NULL, on_create, a);
	if (a->done || nlinks == 0)
		tap_bail("the create was answered before its handshake");
	f = &links[nlinks - 1];
	f->h->opened(f->arg, NULL);
	if (a->done != 1 || a->err)
		tap_bail("the create was not answered once the handshake completed");
	return f;
}

/* Send n texts prefix<first>.. as one request; the error. */
static int send_texts(struct world *w, const char *id, const char *prefix, int first, int n,
		      size_t len)
{
	struct pb_send_req sr = { 0 };
	struct answer a = { 0 };
	char text[64];

	sr.msgs = calloc((size_t)n, sizeof(*sr.msgs));
	for (int i = 0; i < n; i++) {
		snprintf(text, sizeof(text), "%s%d", prefix, first + i);
		sr.msgs[i] = pb_msg_new(PB_MSG_TEXT, NULL, len ? len : strlen(text));
		memcpy(sr.msgs[i]->data, text, strlen(text) < sr.msgs[i]->len ?
		       strlen(text) : sr.msgs[i]->len);
	}
	sr.n = (size_t)n;
	pb_core_send(w->core, id, &sr, on_send, &a);
	pb_send_req_free(&sr);
	return a.done == 1 ? a.err : -999;
}

/* Play the link writing while the core wants to: every message it hands
 * over, in order; returns how many matched prefix<1>..prefix<n>. */
static int drain_writes(struct fake_up *f, const char *prefix, int n)
{
	int got = 0, in_order = 1;
	struct pb_msg *m;
	char want[64];

	while (f->want_write) {
		f->want_write = 0;
		while ((m = f->h->next_out(f->arg))) {
			snprintf(want, sizeof(want), "%s%d", prefix, got + 1);
			if (m->len != strlen(want) || memcmp(m->data, want, m->len))
				in_order = 0;
			got++;
			pb_msg_unref(m);
		}
	}
	return in_order && got == n ? got : -got;
}

/* The upstream sends one text of len bytes (text at its start). */
/* One message from the upstream, as one of the messages of a read. */
static void upstream_reads(struct fake_up *f, const char *text, size_t len)
{
	struct pb_msg *m = pb_msg_new(PB_MSG_TEXT, NULL, len ? len : strlen(text));

	memcpy(m->data, text, strlen(text) < m->len ? strlen(text) : m->len);
	f->h->message(f->arg, m);
}

/* The rest of the loop pass after a read (the core sends what it took). */
static void loop_pass(void)
{
	uv_run(says_loop, UV_RUN_NOWAIT);
}

/* One message from the upstream, alone in its read. */
static void upstream_says(struct fake_up *f, const char *text, size_t len)
{
	upstream_reads(f, text, len);
	loop_pass();
}

/* Poll with cursor after (no wait). */
static void poll_now(struct world *w, const char *id, uint64_t after, struct answer *a)
{
	memset(a, 0, sizeof(*a));
	pb_core_poll(w->core, id, after, 0, 1000, on_poll, a);
}

/* ---- the checks ----------------------------------------------------------- */

static void check_outbound(void)
{
	static const char *const opts[] = { NULL };
	struct world w;
	struct answer a;
	struct fake_up *f;
	int ok = 1;

	world_start(&w, opts);
	f = open_session(&w, &a);
	tap_is_int(send_texts(&w, a.id, "b", 1, 300, 0), 0, "outbound: a batch of 300 accepted");
	tap_is_int(drain_writes(f, "b", 300), 300,
		   "outbound: the link gets all 300, in order, with no further send");
	for (int k = 0; k < 20; k++)
		ok &= send_texts(&w, a.id, "c", k * 50 + 1, 50, 0) == 0;
	tap_ok(ok, "outbound: 20 batches of 50 back to back accepted");
	tap_is_int(drain_writes(f, "c", 1000), 1000, "outbound: all 1,000 reach the link, in order");
	world_stop(&w);
}

static void check_inbound(void)
{
	static const char *const opts[] = { "--queue-max", "10", NULL };
	struct world w;
	struct answer a, p;
	struct fake_up *f;
	char text[16];

	world_start(&w, opts);
	f = open_session(&w, &a);
	for (int i = 1; i <= 9; i++) {
		snprintf(text, sizeof(text), "u%d", i);
		upstream_says(f, text, 0);
	}
	tap_ok(!f->paused, "inbound: 9 of --queue-max 10 stored, the link reads on");
	upstream_says(f, "u10", 0);
	tap_ok(f->paused, "inbound: at --queue-max the link is paused");
	poll_now(&w, a.id, 0, &p);
	tap_ok(p.n == 10 && !strcmp(p.first, "u1") && !strcmp(p.lastd, "u10"),
	       "inbound: a poll gets u1..u10 in order");
	tap_ok(f->paused, "inbound: still paused until the client acknowledges");
	poll_now(&w, a.id, 5, &p);
	tap_ok(!f->paused, "inbound: an acknowledgement resumes the link");
	upstream_says(f, "u11", 0);
	f->h->closed(f->arg, 4000, "bye", 3);
	poll_now(&w, a.id, 10, &p);
	tap_ok(p.n == 1 && !strcmp(p.first, "u11") && p.closed && p.code == 4000 &&
	       !strcmp(p.reason, "bye"),
	       "inbound: the close reaches the client after the message before it");
	world_stop(&w);
}

/* The messages of one read go to the store together, at the end of the
 * loop pass: a parked poll gets them in one answer instead of being woken
 * by the first; a batch's worth goes at once; a close read with messages
 * still follows them. */
static void check_coalesce(void)
{
	struct world w;
	struct answer a, p, q;
	struct fake_up *f;
	char text[16];

	world_start(&w, NULL);
	f = open_session(&w, &a);
	memset(&p, 0, sizeof(p));
	pb_core_poll(w.core, a.id, 0, 30, 1000, on_poll, &p);
	upstream_reads(f, "r1", 0);
	upstream_reads(f, "r2", 0);
	upstream_reads(f, "r3", 0);
	tap_ok(!p.done, "coalesce: the messages of a read wait for the end of the loop pass");
	loop_pass();
	tap_ok(p.done == 1 && p.n == 3 && !strcmp(p.first, "r1") && !strcmp(p.lastd, "r3"),
	       "coalesce: the parked poll gets the read's three messages in one answer");
	for (int i = 4; i < 4 + 32; i++) {
		snprintf(text, sizeof(text), "r%d", i);
		upstream_reads(f, text, 0);
	}
	poll_now(&w, a.id, 3, &q);
	tap_ok(q.n == 32 && !strcmp(q.first, "r4") && !strcmp(q.lastd, "r35"),
	       "coalesce: a whole batch (32) goes to the store without waiting");
	upstream_reads(f, "r36", 0);
	f->h->closed(f->arg, 4000, "bye", 3);
	loop_pass();
	poll_now(&w, a.id, 35, &q);
	tap_ok(q.n == 1 && !strcmp(q.first, "r36") && q.closed && q.code == 4000,
	       "coalesce: a close in the same read follows the message before it");
	world_stop(&w);
}

static void check_bytes(void)
{
	static const char *const opts[] = {
		"--max-message-bytes", "1000", "--queue-max-bytes", "1000", NULL
	};
	struct world w;
	struct answer a, p;
	struct fake_up *f;

	world_start(&w, opts);
	f = open_session(&w, &a);
	upstream_says(f, "x1", 400);
	upstream_says(f, "x2", 400);
	tap_ok(!f->paused, "bytes: 800 of --queue-max-bytes 1000 stored, the link reads on");
	upstream_says(f, "x3", 400);
	tap_ok(f->paused, "bytes: past --queue-max-bytes the link is paused");
	poll_now(&w, a.id, 2, &p);
	tap_ok(!f->paused && p.n == 1, "bytes: an acknowledgement resumes it");
	tap_is_int(send_texts(&w, a.id, "s", 1, 3, 400), PB_EQFULL,
		   "bytes: a send of 1200 bytes past --queue-max-bytes is queue_full");
	tap_is_int(send_texts(&w, a.id, "s", 1, 2, 400), 0, "bytes: 800 bytes fit");
	world_stop(&w);
}

static void check_total(void)
{
	static const char *const opts[] = {
		"--max-message-bytes", "1000", "--queue-max-bytes", "2000",
		"--total-queue-max-bytes", "3000", NULL
	};
	struct world w;
	struct answer a, b, p;
	struct fake_up *fa, *fb;
	char text[16];
	uint64_t after = 0;

	world_start(&w, opts);
	fa = open_session(&w, &a);
	fb = open_session(&w, &b);
	for (int i = 1; i <= 3; i++) {
		snprintf(text, sizeof(text), "a%d", i);
		upstream_says(fa, text, 1000);
	}
	tap_ok(fa->paused, "total: at --total-queue-max-bytes the sending link is paused");
	tap_ok(!fb->paused, "total: a link that sent nothing is not");
	tap_is_int(send_texts(&w, b.id, "s", 1, 1, 10), PB_EMEMFULL,
		   "total: a send meanwhile is buffers_full");
	for (int i = 0; i < 3 && !(i && p.n == 0); i++) {
		poll_now(&w, a.id, after, &p);
		after = p.n ? p.last : after;
	}
	poll_now(&w, a.id, after, &p);
	tap_is_int((long long)after, 3, "total: the client takes all three");
	tap_ok(!fa->paused, "total: once it has, the link reads again");
	tap_is_int(send_texts(&w, b.id, "s", 1, 1, 10), 0, "total: sends are accepted again");
	world_stop(&w);
}

/* ---- front-door additions (memory and Redis) ------------------------------ */

static uv_loop_t *door_loop;    /* the loop the door checks run */

/* Create on w's core with cr (handshake completed); the answer in *a. */
static void door_create(struct world *w, struct pb_create_req *cr, struct answer *a)
{
	int before = nlinks;

	memset(a, 0, sizeof(*a));
	cr->route = "r";
	pb_core_create(w->core, cr, "127.0.0.1", NULL, NULL, on_create, a);
	if (!a->done && nlinks > before)
		links[nlinks - 1].h->opened(links[nlinks - 1].arg, NULL);
	for (int i = 0; i < 300 && !a->done; i++)
		uv_run(door_loop, UV_RUN_ONCE);
}

/* Poll with flags, running the loop until answered (or ms passed). */
static void door_poll(struct world *w, const char *id, uint64_t after, unsigned wait,
		      size_t max, unsigned flags, struct answer *a, int run_ms)
{
	int64_t until = h_now_ms() + run_ms;

	memset(a, 0, sizeof(*a));
	pb_core_poll_flags(w->core, id, after, wait, max, flags, on_poll, a);
	while (!a->done && h_now_ms() < until)
		uv_run(door_loop, UV_RUN_NOWAIT), h_sleep_ms(1);
}

/* Run w's loop for ms. */
static void door_run(struct world *w, int ms)
{
	int64_t until = h_now_ms() + ms;

	while (h_now_ms() < until) {
		uv_run(door_loop, UV_RUN_NOWAIT);
		h_sleep_ms(2);
	}
}

/* The EIO= dial path: replaced or appended. */
static void check_eio_path(void)
{
	static const char *const cases[][3] = {
		{ "/socket.io/", "4", "/socket.io/?EIO=4" },
		{ "/socket.io/?transport=websocket", "4", "/socket.io/?transport=websocket&EIO=4" },
		{ "/socket.io/?EIO=4&transport=websocket", "3", "/socket.io/?EIO=3&transport=websocket" },
		{ "/s/?transport=websocket&EIO=4", "3", "/s/?transport=websocket&EIO=3" },
		{ "/s/?XEIO=1&EIOX=2", "4", "/s/?XEIO=1&EIOX=2&EIO=4" },
		{ "/s/?EIO", "4", "/s/?EIO=4" },
		{ "/s/?", "4", "/s/?EIO=4" },
		{ "/s/?a=1&", "4", "/s/?a=1&EIO=4" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = pb_upstream_eio_path(cases[i][0], atoi(cases[i][1]));

		tap_is_str(got, cases[i][2], "EIO path: %s with EIO=%s", cases[i][0], cases[i][1]);
		free(got);
	}
}

/* Fixed ids, the handed mark, exclusive polls, EIO dials and the door
 * metrics on w's store. */
static void check_doors_on(struct world *w, const char *store)
{
	struct pb_create_req cr = { 0 };
	struct answer a, b, p, q;
	struct fake_up *f;
	const char *fixed = "fixedidfixedidfixedid.";
	int64_t g0 = pb_metrics_gauge_value(PB_G_SESSIONS_SOCKJS);
	uint64_t c0 = pb_metrics_counter(PB_C_SESSIONS_CREATED_SOCKJS);

	/* A fixed id (SockJS shape: ends with '.'), then again. */
	cr.door = PB_DOOR_SOCKJS;
	snprintf(cr.fixed_id, sizeof(cr.fixed_id), "%s", fixed);
	door_create(w, &cr, &a);
	tap_is_int(a.err, 0, "%s: a fixed-id create succeeds", store);
	tap_is_str(a.id, fixed, "%s: the session has the fixed id", store);
	tap_is_int(pb_metrics_gauge_value(PB_G_SESSIONS_SOCKJS) - g0, 1,
		   "%s: the sockjs sessions gauge counts it", store);
	tap_is_int((long long)(pb_metrics_counter(PB_C_SESSIONS_CREATED_SOCKJS) - c0), 1,
		   "%s: created{door=sockjs} counts it", store);
	f = &links[nlinks - 1];
	door_create(w, &cr, &b);
	tap_is_int(b.err, PB_EEXIST, "%s: the same fixed id again is session_exists", store);

	/* The handed mark: read 1..3, then PB_AFTER_HANDED acknowledges 3. */
	for (int i = 1; i <= 5; i++) {
		char text[8];

		snprintf(text, sizeof(text), "m%d", i);
		upstream_says(f, text, 0);
	}
	door_run(w, 100);
	door_poll(w, fixed, 0, 0, 3, 0, &p, 2000);
	tap_ok(p.done && p.n == 3 && p.last == 3, "%s: a read hands out 1..3", store);
	door_poll(w, fixed, PB_AFTER_HANDED, 0, 100, 0, &p, 2000);
	tap_ok(p.done && !p.err && p.n == 2 && !strcmp(p.first, "m4") && p.last == 5,
	       "%s: PB_AFTER_HANDED acknowledges 3 and answers 4..5 (n %zu, first %s)", store,
	       p.n, p.first);
	door_poll(w, fixed, 3, 0, 100, 0, &p, 2000);
	tap_is_int(p.err, 0, "%s: 3 was acknowledged, 4..5 not yet: after=3 is fine", store);
	tap_ok(p.n == 2, "%s: 4..5 are still there", store);
	door_poll(w, fixed, PB_AFTER_HANDED, 0, 100, 0, &p, 2000);
	tap_ok(p.done && !p.err && p.n == 0, "%s: then PB_AFTER_HANDED acknowledges 5", store);

	/* Exclusive polls: busy while another waits; fine once it is answered. */
	door_poll(w, fixed, PB_AFTER_HANDED, 10, 100, PB_POLL_EXCLUSIVE, &p, 200);
	tap_ok(!p.done, "%s: an exclusive poll parks", store);
	door_poll(w, fixed, PB_AFTER_HANDED, 10, 100, PB_POLL_EXCLUSIVE, &q, 500);
	tap_ok(q.done && q.err == PB_EBUSY, "%s: a second exclusive poll is busy (err %d)", store,
	       q.err);
	tap_ok(!p.done, "%s: the first keeps waiting", store);
	upstream_says(f, "m6", 0);
	door_run(w, 300);
	tap_ok(p.done && p.n == 1 && !strcmp(p.first, "m6"), "%s: the first gets m6", store);
	door_poll(w, fixed, PB_AFTER_HANDED, 0, 100, PB_POLL_EXCLUSIVE, &q, 2000);
	tap_ok(q.done && !q.err && q.n == 0, "%s: once it was answered an exclusive poll works",
	       store);
	/* A plain poll still releases an older one. */
	door_poll(w, fixed, PB_AFTER_HANDED, 10, 100, 0, &p, 200);
	door_poll(w, fixed, PB_AFTER_HANDED, 10, 100, 0, &q, 200);
	tap_ok(p.done && p.released && !q.done, "%s: without the flag the newer one wins", store);
	upstream_says(f, "m7", 0);
	door_run(w, 300);
	tap_ok(q.done && q.n == 1, "%s: and gets m7", store);

	/* The fixed id after the session ended: the tombstone refuses it. */
	memset(&b, 0, sizeof(b));
	pb_core_delete(w->core, fixed, on_done_req, &b);
	for (int i = 0; i < 300 && !b.done; i++)
		uv_run(&w->loop, UV_RUN_ONCE);
	tap_is_int(b.err, 0, "%s: the fixed-id session is deleted", store);
	door_create(w, &cr, &b);
	tap_is_int(b.err, PB_EEXIST, "%s: its tombstone refuses the fixed id", store);
	tap_is_int(pb_metrics_gauge_value(PB_G_SESSIONS_SOCKJS) - g0, 0,
		   "%s: the sockjs gauge is back", store);

	/* A bad fixed id; an Engine.IO create dials with EIO=. */
	snprintf(cr.fixed_id, sizeof(cr.fixed_id), "%s", "short");
	door_create(w, &cr, &b);
	tap_is_int(b.err, PB_EBADREQ, "%s: a malformed fixed id is bad_request", store);
	memset(&cr, 0, sizeof(cr));
	cr.door = PB_DOOR_ENGINEIO;
	cr.eio = 3;
	door_create(w, &cr, &b);
	tap_ok(!b.err && last_eio == 3, "%s: an Engine.IO create dials with EIO=3", store);
}

static void check_doors_memory(void)
{
	struct world w;

	world_start(&w, NULL);
	door_loop = &w.loop;
	check_doors_on(&w, "memory");
	world_stop(&w);
}

/* A core on the Redis store at port with instance id inst, lease_ms 1000. */
static void world_start_redis(struct world *w, uv_loop_t *loop, int port, const char *inst)
{
	char *argv[] = { "pollbridge", "--route", "r=ws://127.0.0.1:9/ redial", NULL };
	enum pb_config_action act;
	struct pb_store_events ev;
	struct pb_store_limits lim = { 0 };
	char err[256], url[64];

	pb_config_init(&w->cfg);
	if (pb_config_parse_args(&w->cfg, 3, argv, &act, err, sizeof(err)))
		tap_bail("config: %s", err);
	w->core = pb_core_new(loop, &w->cfg, &fake_ops, NULL);
	says_loop = loop;
	pb_core_store_events(w->core, &ev);
	lim.queue_max = w->cfg.queue_max;
	lim.queue_max_bytes = w->cfg.queue_max_bytes;
	lim.tombstone_secs = w->cfg.idle_timeout;
	lim.idle_secs = w->cfg.idle_timeout;
	lim.lease_ms = 1000;
	lim.instance = inst;
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	w->store = pb_store_redis_new(loop, url, &ev, &lim, err, sizeof(err));
	if (!w->store)
		tap_bail("redis store: %s", err);
	pb_core_attach_store(w->core, w->store);
	for (int i = 0; i < 500 && !w->store->ops->healthy(w->store); i++) {
		uv_run(loop, UV_RUN_NOWAIT);
		h_sleep_ms(5);
	}
}

/* The same on Redis, then owner death: an Engine.IO session is closed by
 * its adopter (1011 "bridge instance lost"), a /v1 one re-dialled. */
static void check_doors_redis(void)
{
	struct world w, w2;
	struct pb_create_req cr = { 0 };
	struct answer e, v, p;
	struct h_proc *srv;
	int port, dials;

	srv = h_redis_start(&port, NULL);
	if (!srv) {
		tap_diag("no redis-server: the Redis part is not run");
		return;
	}
	uv_loop_init(&w.loop);
	door_loop = &w.loop;
	nlinks = 0;
	world_start_redis(&w, &w.loop, port, "inst-a");
	tap_ok(w.store->ops->healthy(w.store), "redis: the store is up");
	check_doors_on(&w, "redis");

	/* Owner death. */
	nlinks = 0;
	cr.door = PB_DOOR_ENGINEIO;
	cr.eio = 4;
	door_create(&w, &cr, &e);
	tap_is_int(e.err, 0, "redis: an Engine.IO session");
	upstream_says(&links[nlinks - 1], "40", 0);
	memset(&cr, 0, sizeof(cr));
	door_create(&w, &cr, &v);
	tap_is_int(v.err, 0, "redis: a /v1 session");
	door_run(&w, 200);
	/* Instance A dies: it stops renewing its leases (its core and store go
	 * without releasing anything). */
	pb_core_free(w.core);
	pb_store_destroy(w.store);
	world_start_redis(&w2, &w.loop, port, "inst-b");
	dials = nlinks;
	door_run(&w2, 3500);
	tap_is_int(nlinks - dials, 1, "redis: the adopter re-dials the /v1 session only");
	door_poll(&w2, e.id, 0, 0, 100, 0, &p, 2000);
	tap_ok(p.done && !p.err && p.n == 1 && !strcmp(p.first, "40"),
	       "redis: the Engine.IO session's messages are still there");
	tap_ok(p.closed && p.code == 1011 && !strcmp(p.reason, "bridge instance lost"),
	       "redis: then its close, 1011 bridge instance lost (closed %d code %d '%s')",
	       p.closed, p.code, p.reason);
	door_poll(&w2, v.id, 0, 0, 100, 0, &p, 2000);
	tap_ok(p.done && !p.err && !p.closed, "redis: the /v1 session is open (re-dialled)");
	pb_core_free(w2.core);
	pb_store_destroy(w2.store);
	uv_run(&w.loop, UV_RUN_DEFAULT);
	tap_is_int(uv_loop_close(&w.loop), 0, "redis: no handle left on the loop");
	pb_config_free(&w.cfg);
	pb_config_free(&w2.cfg);
	h_stop(srv, SIGTERM, 3000);
}

/* Another instance announces a poll: a real PUBLISH, through redis-cli. */
static void announce(int port, const char *id)
{
	char args[128], out[64];

	snprintf(args, sizeof(args), "PUBLISH 'pb:{%s}' 'w7 inst-b'", id);
	if (h_redis_cli(port, args, out, sizeof(out)) || atoi(out) != 1)
		tap_diag("PUBLISH reached %d subscribers, not 1", atoi(out));
}

/* A poll that takes that announcement in while its read is in flight:
 * the announcement reached Redis first, so it waits on the subscription
 * before the poll's read is even written. */
static void poll_after_announce(struct world *w, int port, const char *id, uint64_t after,
				unsigned wait, struct answer *a)
{
	announce(port, id);
	door_poll(w, id, after, wait, 100, 0, a, 2000);
}

/* A core on a fresh redis-server (instance inst-a) in w, and one session
 * on it with its fake link: 0, or -1 without redis-server (what: whose
 * checks are not run). */
static int redis_world_open(struct world *w, struct h_proc **srv, int *port, struct answer *a,
			    struct fake_up **f, const char *what)
{
	*srv = h_redis_start(port, NULL);
	if (!*srv) {
		tap_diag("no redis-server: the %s checks are not run", what);
		return -1;
	}
	uv_loop_init(&w->loop);
	door_loop = &w->loop;
	nlinks = 0;
	world_start_redis(w, &w->loop, *port, "inst-a");
	door_create(w, &(struct pb_create_req){ 0 }, a);
	tap_is_int(a->err, 0, "%s: a session on Redis", what);
	*f = &links[nlinks - 1];
	return 0;
}

/* Tear down what redis_world_open made. */
static void redis_world_close(struct world *w, struct h_proc *srv, const char *what)
{
	pb_core_free(w->core);
	pb_store_destroy(w->store);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	tap_is_int(uv_loop_close(&w->loop), 0, "%s: no handle left on the loop", what);
	pb_config_free(&w->cfg);
	h_stop(srv, SIGTERM, 3000);
}

/* The single-waiter rule meets a read in flight: a poll whose read is out
 * when another instance's poll is announced answers what its read found
 * (messages, the session's close, the end it made), and gives way only if
 * it found nothing. Before, it was answered empty and open at once, and
 * a read that ended the session was dropped with its close. */
static void check_waiter_yield(void)
{
	struct world w;
	struct answer a, p;
	struct fake_up *f;
	struct h_proc *srv;
	int port;

	if (redis_world_open(&w, &srv, &port, &a, &f, "yield"))
		return;
	upstream_says(f, "y1", 0);
	upstream_says(f, "y2", 0);
	door_run(&w, 300);

	poll_after_announce(&w, port, a.id, 0, 0, &p);
	tap_ok(p.done && !p.err && !p.released && p.n == 2 && !strcmp(p.lastd, "y2"),
	       "yield: a short poll answers the 2 messages its read found (released %d, %zu)",
	       p.released, p.n);
	poll_after_announce(&w, port, a.id, 2, 0, &p);
	tap_ok(p.done && !p.err && p.released && !p.n && !p.closed,
	       "yield: one that finds nothing gives way (released %d)", p.released);
	door_poll(&w, a.id, 2, 5, 100, 0, &p, 200);
	tap_ok(!p.done, "yield: a long poll parks");
	announce(port, a.id);
	door_run(&w, 200);
	tap_ok(p.done && p.released, "yield: a parked long poll gives way at once");

	f->h->closed(f->arg, 4000, "bye", 3);
	door_run(&w, 300);
	poll_after_announce(&w, port, a.id, 2, 0, &p);
	tap_ok(p.done && !p.err && p.closed && p.code == 4000 && !strcmp(p.reason, "bye"),
	       "yield: the read that ends the session answers its close (closed %d code %d)",
	       p.closed, p.code);
	door_poll(&w, a.id, 2, 0, 100, 0, &p, 2000);
	tap_is_int(p.err, PB_ECLOSED, "yield: then the session has ended");
	redis_world_close(&w, srv, "yield");
}

/* Short polls on the owner answered without Redis (core_read_quiet) stop
 * as soon as an append of upstream messages is in flight: Redis may have
 * run it, and another instance read it, before its answer comes back here.
 * Before, such a poll was answered empty from the note of the last read
 * (test_instances "quiet: the next short poll on E has it", once in CI). */
static void check_quiet_append(void)
{
	struct world w;
	struct answer a, p;
	struct fake_up *f;
	struct h_proc *srv;
	int port;

	if (redis_world_open(&w, &srv, &port, &a, &f, "quiet"))
		return;
	door_poll(&w, a.id, 0, 0, 100, 0, &p, 2000);
	tap_ok(p.done && !p.err && !p.n && !p.closed, "quiet: a short poll finds nothing");
	memset(&p, 0, sizeof(p));
	pb_core_poll_flags(w.core, a.id, 0, 0, 100, 0, on_poll, &p);
	tap_ok(p.done && !p.err && !p.n, "quiet: the next is answered here, at once");

	upstream_reads(f, "q1", 0);
	loop_pass();            /* the append is written, its answer not read */
	door_poll(&w, a.id, 0, 0, 100, 0, &p, 2000);
	tap_ok(p.done && !p.err && p.n == 1 && !strcmp(p.first, "q1"),
	       "quiet: a short poll while the append is in flight reads the store (%zu)", p.n);
	redis_world_close(&w, srv, "quiet");
}

/* pb_core_poll_parked(), which --lean-long-polls waits for before a poll
 * leaves libmicrohttpd: not while the poll's first read is in flight,
 * not for a poll that read found messages for, yes once a read found
 * nothing and the poll waits, and no longer once a message answered it;
 * never for another request. On a real Redis, where reads answer later;
 * the memory store's parks at once. */
static void check_parked(void)
{
	struct world w;
	struct answer a, p, other;
	struct fake_up *f;
	struct h_proc *srv;
	void (*inbound)(void *arg, const char *id);
	int port;

	if (redis_world_open(&w, &srv, &port, &a, &f, "parked"))
		return;
	upstream_says(f, "p1", 0);
	door_run(&w, 100);
	memset(&p, 0, sizeof(p));
	pb_core_poll(w.core, a.id, 0, 5, 100, on_poll, &p);
	tap_ok(!p.done && !pb_core_poll_parked(w.core, a.id, &p),
	       "parked: not while the first read is in flight");
	door_run(&w, 100);
	tap_ok(p.done && p.n == 1 && !pb_core_poll_parked(w.core, a.id, &p),
	       "parked: not a poll its read found a message for (%zu)", p.n);
	memset(&p, 0, sizeof(p));
	pb_core_poll(w.core, a.id, 1, 5, 100, on_poll, &p);
	tap_ok(!pb_core_poll_parked(w.core, a.id, &p), "parked: a waiting poll's read in flight");
	door_run(&w, 150);
	tap_ok(!p.done && pb_core_poll_parked(w.core, a.id, &p),
	       "parked: yes once its read found nothing");
	tap_ok(!pb_core_poll_parked(w.core, a.id, &other) &&
	       !pb_core_poll_parked(w.core, "no-such-session", &p), "parked: only for that request");
	upstream_says(f, "p2", 0);
	door_run(&w, 100);
	tap_ok(p.done && p.n == 1 && !pb_core_poll_parked(w.core, a.id, &p),
	       "parked: no longer once a message answered it");

	/* The parked poll reads behind the append, not after the wakeup the
	 * append publishes: with no wakeup at all, it is answered still. */
	memset(&p, 0, sizeof(p));
	pb_core_poll(w.core, a.id, 2, 5, 100, on_poll, &p);
	door_run(&w, 150);
	tap_ok(!p.done && pb_core_poll_parked(w.core, a.id, &p), "parked: the next poll parks");
	inbound = w.store->events.inbound;
	w.store->events.inbound = NULL;
	upstream_says(f, "p3", 0);
	tap_ok(!p.done, "parked: not answered before the append's answer");
	door_run(&w, 150);
	tap_ok(p.done && !p.err && p.n == 1 && !strcmp(p.first, "p3"),
	       "parked: answered by the read behind the append, without its wakeup (%zu)", p.n);
	memset(&p, 0, sizeof(p));
	pb_core_poll(w.core, a.id, 3, 5, 100, on_poll, &p);
	door_run(&w, 150);
	upstream_says(f, "p4", 0);
	upstream_says(f, "p5", 0);
	door_run(&w, 150);
	tap_ok(p.done == 1 && !p.err && p.n >= 1 && !strcmp(p.first, "p4"),
	       "parked: two appends in a row, answered once, from the first (%zu)", p.n);
	if (p.n == 1)
		door_poll(&w, a.id, p.last, 0, 100, 0, &p, 2000);
	tap_ok(p.done == 1 && !p.err && !strcmp(p.lastd, "p5"), "parked: then the second (%s)",
	       p.lastd);
	w.store->events.inbound = inbound;
	redis_world_close(&w, srv, "parked");

	world_start(&w, NULL);
	door_loop = &w.loop;
	door_create(&w, &(struct pb_create_req){ 0 }, &a);
	memset(&p, 0, sizeof(p));
	pb_core_poll(w.core, a.id, 0, 5, 100, on_poll, &p);
	tap_ok(!p.done && pb_core_poll_parked(w.core, a.id, &p),
	       "parked: on the memory store, as soon as the poll returns");
	world_stop(&w);
}

/* Store answer to a read of the client messages still stored. */
static void on_read_out(void *arg, int err, const struct pb_store_batch *b)
{
	*(int *)arg = err ? -1 : (int)b->n;
}

/* How many client messages of id the store still holds (-1: an error). */
static int out_left(struct world *w, const char *id)
{
	int n = -2;

	if (w->store->ops->read_out(w->store, id, 0, 10, on_read_out, &n))
		return -3;
	for (int i = 0; i < 500 && n == -2; i++) {
		uv_run(door_loop, UV_RUN_NOWAIT);
		h_sleep_ms(2);
	}
	return n;
}

/* A client message the link has taken is acknowledged before the next
 * upstream messages are appended, once the link holds none of it: an
 * echo must never be stored ahead of the acknowledgement of what it
 * echoes (an adopter would write the message again, and the client get
 * two echoes). Until then, and while the link still holds part of it,
 * it stays. On a real redis-server, where the two are pipelined. */
static void check_ack_before_append(void)
{
	struct world w;
	struct answer a;
	struct fake_up *f;
	struct h_proc *srv;
	struct pb_msg *m;
	int port;

	if (redis_world_open(&w, &srv, &port, &a, &f, "ack"))
		return;
	send_texts(&w, a.id, "q", 1, 1, 0);
	for (int i = 0; i < 500 && !f->want_write; i++) {
		uv_run(door_loop, UV_RUN_NOWAIT);
		h_sleep_ms(2);
	}
	/* One WRITEABLE: the link takes q1 and does not ask again yet. */
	f->want_write = 0;
	m = f->h->next_out(f->arg);
	tap_ok(m && m->len == 2 && !memcmp(m->data, "q1", 2), "ack: the link takes q1");
	pb_msg_unref(m);
	door_run(&w, 50);
	tap_is_int(out_left(&w, a.id), 1, "ack: q1 stays stored while the link has not asked again");
	f->unwritten = 1;
	upstream_says(f, "r1", 0);
	door_run(&w, 50);
	tap_is_int(out_left(&w, a.id), 1,
		   "ack: an upstream message does not acknowledge q1 while the link holds part of it");
	f->unwritten = 0;
	upstream_says(f, "r2", 0);
	door_run(&w, 50);
	tap_is_int(out_left(&w, a.id), 0,
		   "ack: written whole, q1 is acknowledged with the next upstream message's append");
	redis_world_close(&w, srv, "ack");
}

int main(void)
{
	h_init();
	check_parked();
	check_ack_before_append();
	check_quiet_append();
	check_waiter_yield();
	check_eio_path();
	check_doors_memory();
	check_doors_redis();
	check_outbound();
	check_inbound();
	check_coalesce();
	check_bytes();
	check_total();
	return tap_done();
}
