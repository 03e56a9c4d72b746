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
 * instance's byte bound (--total-queue-max-bytes) refuses sends with
 * buffers_full and pauses the link, and lets go once the client has taken
 * what was held.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "session.h"
#include "store.h"
#include "store_memory.h"
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
};

static struct fake_up links[8];
static int nlinks;

/* Fake dial: record the handler; the test completes the handshake. */
static struct pb_upstream *fake_dial(void *ctx, const struct pb_upstream_dial *d,
				     const struct pb_upstream_handler *h, void *arg, int *err)
{
	struct fake_up *f;

	(void)ctx;
	(void)d;
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

static const struct pb_link_ops fake_ops = {
	.dial = fake_dial,
	.want_write = fake_want_write,
	.pause = fake_pause,
	.close = fake_close,
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
static void upstream_says(struct fake_up *f, const char *text, size_t len)
{
	struct pb_msg *m = pb_msg_new(PB_MSG_TEXT, NULL, len ? len : strlen(text));

	memcpy(m->data, text, strlen(text) < m->len ? strlen(text) : m->len);
	f->h->message(f->arg, m);
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

int main(void)
{
	check_outbound();
	check_inbound();
	check_bytes();
	check_total();
	return tap_done();
}
