/*
 * test_session.c: the session core's state machine, driven directly (no
 * HTTP front end) over a real libwebsockets link to the bundled echo
 * upstream: create (ok, unknown route, refused, handshake timeout, session
 * limit), send and poll, the single-waiter rule, wait deadlines, upstream
 * close -> closed -> ended, DELETE, idle expiry and tombstones, drain.
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "error.h"
#include "session.h"
#include "store_memory.h"
#include "tap.h"
#include "upstream.h"

static uv_loop_t loop;

/* One request's answer. */
struct answer {
	int done, err;
	char id[PB_ID_LEN + 1];
	char protocol[64];
	size_t n;
	char data[8][64];
	uint64_t seqs[8];
	int closed, code;
	char reason[64];
	int released;
	int64_t at_ms;
};

/* Core answer to a create. */
static void on_create(void *req, int err, const char *id, const char *protocol)
{
	struct answer *a = req;

	a->done++;
	a->err = err;
	if (id)
		snprintf(a->id, sizeof(a->id), "%s", id);
	snprintf(a->protocol, sizeof(a->protocol), "%s", protocol ? protocol : "");
}

/* Core answer to a poll. */
static void on_poll(void *req, int err, const struct pb_core_batch *b)
{
	struct answer *a = req;

	a->done++;
	a->err = err;
	a->at_ms = h_now_ms();
	if (err || !b)
		return;
	a->n = b->n;
	for (size_t i = 0; i < b->n && i < 8; i++) {
		snprintf(a->data[i], sizeof(a->data[i]), "%.*s", (int)b->msgs[i]->len,
			 (const char *)b->msgs[i]->data);
		a->seqs[i] = b->msgs[i]->seq;
	}
	a->closed = b->close.closed;
	a->code = b->close.code;
	a->released = b->released;
	snprintf(a->reason, sizeof(a->reason), "%.*s", (int)b->close.reason_len,
		 b->close.reason ? b->close.reason : "");
}

/* Core answer to a send. */
static void on_send(void *req, int err, const struct pb_core_send_result *r)
{
	struct answer *a = req;

	a->done++;
	a->err = err;
	a->n = r ? r->accepted : 0;
}

/* Core answer to a delete. */
static void on_done(void *req, int err)
{
	struct answer *a = req;

	a->done++;
	a->err = err;
}

/* Run the loop until *flag is set or timeout_ms passes. */
static int run_until(const int *flag, int timeout_ms)
{
	int64_t end = h_now_ms() + timeout_ms;

	while (!*flag && h_now_ms() < end)
		uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
	return *flag;
}

/* Run the loop for ms milliseconds. */
static void run_for(int ms)
{
	int never = 0;

	run_until(&never, ms);
}

/* Create a session on route; returns the error. */
static int create(struct pb_core *c, const char *route, const char *proto, struct answer *a)
{
	struct pb_create_req cr = { 0 };

	memset(a, 0, sizeof(*a));
	cr.route = (char *)route;
	if (proto) {
		cr.protocols[0] = (char *)proto;
		cr.nprotocols = 1;
	}
	pb_core_create(c, &cr, "127.0.0.1", NULL, NULL, on_create, a);
	run_until(&a->done, 5000);
	return a->done == 1 ? a->err : -999;
}

/* Send one text message. */
static int send_text(struct pb_core *c, const char *id, const char *text)
{
	struct pb_send_req sr = { 0 };
	struct pb_msg *m = pb_msg_new(PB_MSG_TEXT, text, strlen(text));
	struct answer a = { 0 };

	sr.msgs = &m;
	sr.n = 1;
	pb_core_send(c, id, &sr, on_send, &a);
	pb_msg_unref(m);
	return a.done == 1 ? a.err : -999;
}

/* Start a poll; the answer lands in a. */
static void poll_start(struct pb_core *c, const char *id, uint64_t after, unsigned wait,
		       struct answer *a)
{
	memset(a, 0, sizeof(*a));
	pb_core_poll(c, id, after, wait, 100, on_poll, a);
}

int main(void)
{
	struct pb_config cfg;
	struct pb_upstream_ctx *up;
	struct pb_core *core;
	struct pb_store *store;
	struct pb_store_events ev;
	struct pb_store_limits lim = { .instance = "test" };
	struct answer a, b, d;
	char err[256], spec[128];
	int echo_port, dead_port, hole_port, hole;
	int64_t t0;

	h_init();
	if (!h_echo_start(&echo_port, NULL))
		tap_bail("cannot start pollbridge-echo");
	hole = h_blackhole_listen(&hole_port);
	if (hole < 0)
		tap_bail("cannot make a blackhole listener");
	/* a free port is free only until someone binds it: not the hole's */
	do
		dead_port = h_free_port();
	while (dead_port == hole_port || dead_port == echo_port);

	pb_config_init(&cfg);
	cfg.idle_timeout = 2;
	cfg.connect_timeout = 1;
	cfg.wait_max = 3;
	cfg.max_sessions = 4;
	snprintf(spec, sizeof(spec), "--route=echo=ws://127.0.0.1:%d/", echo_port);
	{
		char r2[128], r3[128];
		char *av[] = { "x", spec, r2, r3 };
		enum pb_config_action act;

		snprintf(r2, sizeof(r2), "--route=dead=ws://127.0.0.1:%d/", dead_port);
		snprintf(r3, sizeof(r3), "--route=hole=ws://127.0.0.1:%d/", hole_port);
		if (pb_config_parse_args(&cfg, 4, av, &act, err, sizeof(err)))
			tap_bail("config: %s", err);
	}
	uv_loop_init(&loop);
	up = pb_upstream_ctx_new(&loop, NULL, err, sizeof(err));
	if (!up)
		tap_bail("upstream ctx: %s", err);
	core = pb_core_new(&loop, &cfg, &pb_upstream_link_ops, up);
	pb_core_store_events(core, &ev);
	lim.queue_max = cfg.queue_max;
	lim.queue_max_bytes = cfg.queue_max_bytes;
	lim.tombstone_secs = cfg.idle_timeout;
	store = pb_store_memory_new(&loop, &ev, &lim);
	pb_core_attach_store(core, store);

	/* Create. */
	tap_is_int(create(core, "nope", NULL, &a), PB_ENOROUTE, "unknown route");
	tap_is_int(create(core, "dead", NULL, &a), PB_EUPSTREAM, "refused upstream: upstream_unreachable");
	t0 = h_now_ms();
	tap_is_int(create(core, "hole", NULL, &a), PB_ETIMEOUT, "silent upstream: upstream_timeout");
	tap_ok(h_now_ms() - t0 >= 900 && h_now_ms() - t0 < 3000,
	       "after the connect timeout (%lld ms)", (long long)(h_now_ms() - t0));
	tap_is_int(pb_core_session_count(core), 0, "failed creates leave no session");
	tap_is_int(create(core, "echo", "chat", &a), 0, "create on echo");
	tap_is_int(strlen(a.id), PB_ID_LEN, "the id has %d characters", PB_ID_LEN);
	tap_is_str(a.protocol, "chat", "the chosen subprotocol is reported");
	tap_is_int(pb_core_session_count(core), 1, "one session held");

	/* Send, then a short poll sees the echo. */
	tap_is_int(send_text(core, a.id, "hello"), 0, "send accepted");
	run_for(200);
	poll_start(core, a.id, 0, 0, &b);
	tap_ok(b.done == 1 && b.err == 0, "short poll answered at once");
	tap_is_int(b.n, 1, "one message");
	tap_is_str(b.data[0], "hello", "the echo");
	tap_is_int(b.seqs[0], 1, "seq 1");

	/* A long poll is answered when a message arrives. */
	poll_start(core, a.id, 1, 3, &b);
	tap_is_int(b.done, 0, "long poll waits");
	send_text(core, a.id, "second");
	run_until(&b.done, 2000);
	tap_is_int(b.n, 1, "woken by the echo");
	tap_is_str(b.data[0], "second", "with the new message");

	/* Single waiter: a newer poll answers the older one at once, empty. */
	poll_start(core, a.id, 2, 3, &b);
	poll_start(core, a.id, 2, 3, &d);
	tap_is_int(b.done, 1, "older poll answered when a newer one arrives");
	tap_is_int(b.n, 0, "with an empty batch");
	tap_ok(!b.closed, "that says open");
	tap_ok(b.released, "and that it was let go (released)");
	tap_is_int(d.done, 0, "newer poll waits");
	send_text(core, a.id, "third");
	run_until(&d.done, 2000);
	tap_is_str(d.data[0], "third", "newer poll gets the message");
	tap_ok(!d.released, "a batch with messages is not released");

	/* Wait deadline. */
	t0 = h_now_ms();
	poll_start(core, a.id, 3, 1, &b);
	run_until(&b.done, 3000);
	tap_ok(b.done == 1 && b.n == 0, "a long poll with nothing to say answers empty");
	tap_ok(b.at_ms - t0 >= 900, "after its wait (%lld ms)", (long long)(b.at_ms - t0));
	t0 = h_now_ms();
	poll_start(core, a.id, 3, 60, &b);
	run_until(&b.done, 5000);
	tap_ok(b.at_ms - t0 >= 2900 && b.at_ms - t0 < 4500,
	       "wait is clamped to wait_max (%lld ms)", (long long)(b.at_ms - t0));

	/* Upstream close: closed batch, then the last acknowledgement ends it. */
	poll_start(core, a.id, 3, 3, &b);
	send_text(core, a.id, "/close 4001 going");
	run_until(&b.done, 2000);
	tap_ok(b.done && b.closed, "a waiting poll learns of the upstream close");
	tap_is_int(b.code, 4001, "close code");
	tap_is_str(b.reason, "going", "close reason");
	tap_is_int(b.n, 0, "the waiting poll had acknowledged everything: empty closed batch");
	poll_start(core, a.id, 3, 0, &b);
	tap_ok(b.err == 0 && b.closed && b.n == 0,
	       "a woken poll does not end the session: the same cursor gets the closed batch again");
	poll_start(core, a.id, 3, 0, &b);
	tap_is_int(b.err, PB_ECLOSED, "and that poll, made on arrival, ended it (410 after it)");
	tap_is_int(send_text(core, a.id, "too late"), PB_ECLOSED, "sends after the end: session_closed");

	/* With messages pending, the close rides on the batch carrying them. */
	create(core, "echo", NULL, &a);
	send_text(core, a.id, "one");
	send_text(core, a.id, "/close 4002 done");
	run_for(300);
	poll_start(core, a.id, 0, 0, &b);
	tap_ok(b.n == 1 && b.closed, "the last messages come with the closed state");
	tap_is_int(b.code, 4002, "and the close code");
	poll_start(core, a.id, 0, 0, &b);
	tap_ok(b.n == 1 && b.closed, "unacknowledged: the same closed batch again");
	poll_start(core, a.id, 1, 0, &b);
	tap_ok(b.err == 0 && b.n == 0 && b.closed, "acknowledging the last message: empty closed batch");
	poll_start(core, a.id, 1, 0, &b);
	tap_is_int(b.err, PB_ECLOSED, "then the session has ended (410)");
	tap_is_int(pb_core_session_count(core), 0, "and is no longer held");

	/* DELETE answers a waiting poll with session_closed. */
	create(core, "echo", NULL, &a);
	poll_start(core, a.id, 0, 3, &b);
	memset(&d, 0, sizeof(d));
	pb_core_delete(core, a.id, on_done, &d);
	tap_ok(d.done == 1 && d.err == 0, "delete succeeds");
	tap_is_int(b.err, PB_ECLOSED, "the waiting poll gets session_closed");
	memset(&d, 0, sizeof(d));
	pb_core_delete(core, a.id, on_done, &d);
	tap_is_int(d.err, PB_ECLOSED, "a second delete: session_closed");
	memset(&d, 0, sizeof(d));
	pb_core_delete(core, "AAAAAAAAAAAAAAAAAAAAAA", on_done, &d);
	tap_is_int(d.err, PB_ENOSESSION, "delete of an unknown id: unknown_session");

	/* The session limit. */
	for (int i = 0; i < 4; i++)
		create(core, "echo", NULL, &a);
	tap_is_int(pb_core_session_count(core), 4, "four sessions");
	tap_is_int(create(core, "echo", NULL, &b), PB_ETOOMANY, "the fifth: too_many_sessions");

	/* Idle expiry (2 s here), the tombstone, then forgotten. */
	run_for(2600);
	tap_is_int(pb_core_session_count(core), 0, "idle sessions expire");
	poll_start(core, a.id, 0, 0, &b);
	tap_is_int(b.err, PB_ECLOSED, "an expired session answers session_closed");
	run_for(2200);
	poll_start(core, a.id, 0, 0, &b);
	tap_is_int(b.err, PB_ENOSESSION, "after the tombstone: unknown_session");

	/* A waiting poll keeps its session alive past the idle timeout. */
	create(core, "echo", NULL, &a);
	for (int i = 0; i < 2; i++) {
		poll_start(core, a.id, 0, 3, &b);
		run_until(&b.done, 4000);
	}
	tap_is_int(pb_core_session_count(core), 1, "a session with polls is not idle");

	/* Drain: waiting polls learn of the close 1001; creates are refused. */
	poll_start(core, a.id, 0, 3, &b);
	pb_core_drain(core);
	tap_ok(b.done == 1 && b.closed, "drain answers the waiting poll with a closed batch");
	tap_is_int(b.code, 1001, "close 1001");
	tap_is_int(create(core, "echo", NULL, &d), PB_EDRAINING, "no new sessions while draining");

	pb_core_free(core);
	pb_store_destroy(store);
	run_for(300);
	pb_upstream_ctx_free(up);
	uv_run(&loop, UV_RUN_DEFAULT);
	tap_is_int(uv_loop_close(&loop), 0, "every handle closed");
	pb_config_free(&cfg);
	close(hole);
	return tap_done();
}
