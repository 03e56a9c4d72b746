/*
 * test_delivery.c: nothing accepted is ever stranded, end to end, against
 * npm `ws` upstreams (faster and ruder than pollbridge-echo). Runs on the
 * memory store and, through test_delivery.redis, on the Redis store.
 *
 * - Sends accepted in large batches reach the upstream without another
 *   send: one JSON batch of 300, and 20 batches of 50 back to back, all
 *   echoed, in order, once, and promptly (the outbound pump must fetch
 *   again whenever the store holds more than it took).
 * - An upstream that sends three messages and closes in the same tick as
 *   its handshake: the create answers 201 every time (50 creates), the
 *   three messages arrive, then the closed batch with its code and reason.
 * - Byte bounds: a session's queues are bounded in bytes as well as in
 *   messages (--queue-max-bytes: a send past it is 429 queue_full with
 *   Retry-After, and nothing of it is queued), and the instance as a whole
 *   (--total-queue-max-bytes: 503 with Retry-After); the hostile case of
 *   150 sends of 1 MiB to a session that is never polled leaves the RSS
 *   bounded; and upstream messages past the session's byte bound pause the
 *   upstream instead of growing: every one still arrives once drained.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/harness.h"
#include "tap.h"

#define WAIT_MS 5000    /* generous bound for what should take milliseconds */

/* Poll from cursor *after, acknowledging as it goes, until n messages have
 * arrived, the session closed or timeout_ms passed. Appends each message
 * object to out; sets *closed to the last batch's close (a new reference,
 * or NULL). Returns the number collected. */
static size_t drain(struct h_bridge *b, const char *id, uint64_t *after, size_t n,
		    int timeout_ms, json_t *out, json_t **closed)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	size_t got = 0, i;
	char query[64];
	struct h_resp r;
	json_t *m;

	if (closed)
		*closed = NULL;
	while (got < n && h_now_ms() < deadline) {
		const char *state;

		snprintf(query, sizeof(query), "after=%llu&wait=1", (unsigned long long)*after);
		if (h_poll(b, id, query, &r) != 200) {
			tap_diag("drain: poll answered %ld %s", r.status, h_err(&r));
			h_resp_free(&r);
			break;
		}
		json_array_foreach(json_object_get(r.json, "messages"), i, m) {
			json_int_t seq = json_integer_value(json_object_get(m, "seq"));

			if (seq > 0 && (uint64_t)seq > *after) {
				*after = (uint64_t)seq;
				json_array_append(out, m);
				got++;
			}
		}
		state = json_string_value(json_object_get(r.json, "state"));
		if (state && !strcmp(state, "closed")) {
			if (closed)
				*closed = json_incref(json_object_get(r.json, "close"));
			h_resp_free(&r);
			break;
		}
		h_resp_free(&r);
	}
	return got;
}

/* 1 if the messages of got are the texts prefix<first>..prefix<first+n-1>
 * in order; else says where it differs. */
static int texts_are(json_t *got, const char *prefix, size_t first, size_t n, const char *what)
{
	char want[64];
	size_t i;

	if (json_array_size(got) != n) {
		tap_diag("%s: %zu messages, want %zu", what, json_array_size(got), n);
		return 0;
	}
	for (i = 0; i < n; i++) {
		const char *d = json_string_value(json_object_get(json_array_get(got, i), "data"));

		snprintf(want, sizeof(want), "%s%zu", prefix, first + i);
		if (!d || strcmp(d, want)) {
			tap_diag("%s: message %zu is '%s', want '%s'", what, i, d ? d : "(none)", want);
			return 0;
		}
	}
	return 1;
}

/* POST a JSON batch of texts prefix<first>..prefix<first+n-1>; the status. */
static long send_batch(struct h_bridge *b, const char *id, const char *prefix, size_t first,
		       size_t n, struct h_resp *r)
{
	json_t *msgs = json_array(), *body;
	char url[256], text[64], *s;
	long st;

	for (size_t i = 0; i < n; i++) {
		snprintf(text, sizeof(text), "%s%zu", prefix, first + i);
		json_array_append_new(msgs, json_pack("{s:s,s:s}", "type", "text", "data", text));
	}
	body = json_pack("{s:o}", "messages", msgs);
	s = json_dumps(body, JSON_COMPACT);
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages", b->base, id);
	st = h_http(r, "POST", url, "application/json", s, strlen(s), NULL) ? 0 : r->status;
	free(s);
	json_decref(body);
	return st;
}

/* Item 1: a batch bigger than the pump's fetch, and many batches back to
 * back, all reach the upstream without a further send. */
static void check_batches(struct h_bridge *b)
{
	struct h_resp r;
	char id[64];
	uint64_t after = 0;
	json_t *got;
	int64_t t0;
	long st;
	int all = 1;

	if (h_create(b, "echo", id, NULL) != 201)
		tap_bail("create on the ws echo route failed");
	st = send_batch(b, id, "b", 1, 300, &r);
	tap_is_int(st, 200, "one JSON batch of 300: 200");
	tap_is_int(json_integer_value(json_object_get(r.json, "accepted")), 300, "...all 300 accepted");
	h_resp_free(&r);
	got = json_array();
	t0 = h_now_ms();
	drain(b, id, &after, 300, 2500, got, NULL);
	tap_ok(texts_are(got, "b", 1, 300, "batch of 300"),
	   "every one of a batch of 300 is echoed, in order, once, with no further send");
	tap_diag("300 echoed in %lld ms", (long long)(h_now_ms() - t0));
	json_decref(got);
	h_delete(b, id);

	if (h_create(b, "echo", id, NULL) != 201)
		tap_bail("create on the ws echo route failed");
	after = 0;
	for (int k = 0; k < 20; k++) {
		st = send_batch(b, id, "c", (size_t)k * 50 + 1, 50, &r);
		all &= st == 200;
		h_resp_free(&r);
	}
	tap_ok(all, "20 JSON batches of 50 back to back: each 200");
	got = json_array();
	t0 = h_now_ms();
	drain(b, id, &after, 1000, 3000, got, NULL);
	tap_ok(texts_are(got, "c", 1, 1000, "20 x 50"),
	   "all 1,000 of 20 x 50 are echoed, in order, once, with no further send");
	tap_diag("1000 echoed in %lld ms", (long long)(h_now_ms() - t0));
	json_decref(got);
	h_delete(b, id);
}

/* Item 3: the upstream sends m1..m3 and closes in the handshake's tick. */
static void check_burst_close(struct h_bridge *b)
{
	int created = 0, delivered = 0, closed_ok = 0;

	for (int i = 0; i < 50; i++) {
		char id[64];
		uint64_t after = 0;
		json_t *got = json_array(), *close = NULL;
		struct h_resp r;
		long st = h_create(b, "burst", id, &r);

		if (st == 201) {
			created++;
			drain(b, id, &after, 4, WAIT_MS, got, &close);
			if (texts_are(got, "m", 1, 3, "burst"))
				delivered++;
			if (!close) {
				/* the three may have come before the close was stored */
				drain(b, id, &after, 1, WAIT_MS, got, &close);
			}
			if (close && json_integer_value(json_object_get(close, "code")) == 1000 &&
			    json_string_value(json_object_get(close, "reason")) &&
			    !strcmp(json_string_value(json_object_get(close, "reason")), "bye"))
				closed_ok++;
			else
				tap_diag("create %d: close %s", i, close ? "wrong" : "missing");
		} else {
			tap_diag("create %d answered %ld %s", i, st, h_err(&r));
		}
		json_decref(close);
		json_decref(got);
		h_resp_free(&r);
	}
	tap_is_int(created, 50, "upstream that talks and hangs up at once: 50 of 50 creates are 201");
	tap_is_int(delivered, 50, "...each delivers m1, m2, m3 in order");
	tap_is_int(closed_ok, 50, "...then the closed batch with {\"code\":1000,\"reason\":\"bye\"}");
}

/* A text of len bytes starting with tag and a space, then filler. */
static char *big_text(const char *tag, size_t len)
{
	char *t = malloc(len + 1);
	size_t n = strlen(tag);

	if (!t)
		tap_bail("out of memory");
	memset(t, 'x', len);
	memcpy(t, tag, n < len ? n : len);
	if (n < len)
		t[n] = ' ';
	t[len] = '\0';
	return t;
}

/* Drain a session whose echoes are big_text(tag) of the numbered tags
 * prefix0..prefix<n-1>: 1 if exactly those arrive, in order, once. */
static int big_echoes_are(struct h_bridge *b, const char *id, const char *prefix, int n,
			  const char *what)
{
	uint64_t after = 0;
	json_t *got = json_array();
	int okay = 1;
	struct h_resp r;
	char query[64];

	drain(b, id, &after, (size_t)n, 4 * WAIT_MS, got, NULL);
	/* acknowledge the last batch too: its messages are freed */
	snprintf(query, sizeof(query), "after=%llu", (unsigned long long)after);
	h_poll(b, id, query, &r);
	h_resp_free(&r);
	if (json_array_size(got) != (size_t)n) {
		tap_diag("%s: %zu echoes, want %d", what, json_array_size(got), n);
		okay = 0;
	}
	for (int i = 0; okay && i < n; i++) {
		const char *d = json_string_value(json_object_get(json_array_get(got, (size_t)i),
								  "data"));
		char tag[32];

		snprintf(tag, sizeof(tag), "%s%d ", prefix, i);
		if (!d || strncmp(d, tag, strlen(tag))) {
			tap_diag("%s: echo %d is not %s", what, i, tag);
			okay = 0;
		}
	}
	json_decref(got);
	return okay;
}

/* What a run of sends got: 200, 429 queue_full (retry_after stays 1 while
 * each of those carried a Retry-After), or anything else. */
struct send_tally {
	int accepted, refused, other, retry_after;
};

/* Send text to id and count the answer in n; an answer that is neither 200
 * nor 429 queue_full is logged as that of send i. */
static void send_tallied(struct h_bridge *b, const char *id, const char *text, int i,
			 struct send_tally *n)
{
	struct h_resp r;
	long st = h_send_text(b, id, text, &r);

	if (st == 200) {
		n->accepted++;
	} else if (st == 429 && !strcmp(h_err(&r), "queue_full")) {
		n->refused++;
		n->retry_after &= r.retry_after[0] != '\0';
	} else {
		n->other++;
		tap_diag("send %d answered %ld %s", i, st, h_err(&r));
	}
	h_resp_free(&r);
}

/* Item 9, the hostile case: 150 sends of 1 MiB to a session that is never
 * polled. Each is accepted or refused with 429 queue_full and Retry-After
 * (an upstream that reads everything takes what the bridge may not keep);
 * the bridge's memory stays bounded. */
static void check_hostile(struct h_bridge *b)
{
	char id[64];
	struct send_tally n = { .retry_after = 1 };
	long rss0, rss1;
	char *t = big_text("hostile", 1 << 20);

	if (h_create(b, "echo", id, NULL) != 201)
		tap_bail("create on the ws echo route failed");
	rss0 = h_rss_kib(b->proc->pid);
	for (int i = 0; i < 150; i++)
		send_tallied(b, id, t, i, &n);
	free(t);
	rss1 = h_rss_kib(b->proc->pid);
	tap_is_int(n.accepted + n.refused, 150, "hostile: 150 x 1 MiB: each 200 or 429 queue_full");
	tap_ok(n.retry_after, "hostile: each 429 carries Retry-After");
	tap_diag("hostile: RSS %ld KiB before, %ld KiB after 150 x 1 MiB (%d accepted, %d refused)",
		 rss0, rss1, n.accepted, n.refused);
	if (!getenv("PB_SANITIZERS") || strcmp(getenv("PB_SANITIZERS"), "yes"))
		tap_ok(rss1 - rss0 < 48 * 1024, "hostile: RSS grew by %ld KiB (< 48 MiB)",
		       rss1 - rss0);
	else
		tap_ok(1, "hostile: RSS not judged under sanitizers (%ld KiB)", rss1 - rss0);
	tap_is_int(h_delete(b, id), 204, "hostile: DELETE");
	tap_ok(h_still_serving(b, "echo"), "hostile: still serving");
}

/* Item 9: a session's outbound queue is bounded in bytes. An upstream that
 * reads nothing for 3 s: sends of 100 kB are accepted until about
 * --queue-max-bytes wait (plus what the sockets hold), then refused with
 * 429 queue_full and Retry-After; once the upstream reads, every accepted
 * message is echoed, in order, once. */
static void check_session_bytes(struct h_bridge *b)
{
	char id[64], tag[32];
	struct send_tally n = { .retry_after = 1 };

	if (h_create(b, "slow", id, NULL) != 201)
		tap_bail("create on the ws slow-echo route failed");
	for (int i = 0; i < 300 && !n.refused; i++) {
		char *t;

		snprintf(tag, sizeof(tag), "s%d", n.accepted);
		t = big_text(tag, 100000);
		send_tallied(b, id, t, i, &n);
		free(t);
	}
	tap_ok(n.refused, "bytes: sends to a stalled upstream are refused 429 queue_full after "
	       "%d x 100 kB (--queue-max-bytes 1000000, --queue-max 1000)", n.accepted);
	tap_ok(n.retry_after, "bytes: with Retry-After");
	tap_is_int(n.other, 0, "bytes: no other answer");
	tap_ok(big_echoes_are(b, id, "s", n.accepted, "bytes"),
	       "bytes: once the upstream reads, every accepted message is echoed in order, once");
	h_delete(b, id);
}

/* Item 9: the instance's bound. Sessions that are never polled fill it;
 * sends are then 503 buffers_full with Retry-After and upstreams pause;
 * once clients poll, everything accepted arrives and sends work again. */
static void check_total_bytes(struct h_bridge *b)
{
	char ids[6][64], tag[32];
	int accepted[6] = { 0 }, busy = 0, retry_after = 1, other = 0, all_back = 1;

	for (int k = 0; k < 6; k++)
		if (h_create(b, "echo", ids[k], NULL) != 201)
			tap_bail("create on the ws echo route failed");
	for (int i = 0; i < 10; i++) {
		for (int k = 0; k < 6; k++) {
			struct h_resp r;
			char *t;
			long st;

			snprintf(tag, sizeof(tag), "t%d", accepted[k]);
			t = big_text(tag, 100000);
			st = h_send_text(b, ids[k], t, &r);
			free(t);
			if (st == 200) {
				accepted[k]++;
			} else if (st == 503 && !strcmp(h_err(&r), "buffers_full")) {
				busy++;
				retry_after &= r.retry_after[0] != '\0';
			} else if (st != 429) {
				other++;
				tap_diag("send answered %ld %s", st, h_err(&r));
			}
			h_resp_free(&r);
		}
		h_sleep_ms(20);
	}
	if (h_store_shared()) {
		/* Redis holds the queues: the bridge's own memory stays low. */
		tap_ok(1, "total: Redis holds the queues (%d answered 503)", busy);
		tap_ok(1, "total: (Retry-After not exercised)");
	} else {
		tap_ok(busy > 0, "total: sends past --total-queue-max-bytes are 503 buffers_full "
		       "(%d)", busy);
		tap_ok(retry_after, "total: with Retry-After");
	}
	tap_is_int(other, 0, "total: no other answer");
	for (int k = 0; k < 6; k++) {
		snprintf(tag, sizeof(tag), "total %d", k);
		all_back &= big_echoes_are(b, ids[k], "t", accepted[k], tag);
	}
	tap_ok(all_back, "total: once polled, every accepted message arrives, in order, once");
	tap_ok(h_still_serving(b, "echo"), "total: sends are accepted again afterwards");
	for (int k = 0; k < 6; k++)
		h_delete(b, ids[k]);
}

int main(void)
{
	struct h_bridge b, t;
	char echo_route[96], burst_route[96], slow_route[96];
	int echo_port, burst_port, slow_port;

	h_init();
	if (!h_ws_available())
		tap_bail("node or the npm ws package is missing (run contrib/deps.sh test)");
	if (!h_ws_start(&echo_port, "echo", NULL) || !h_ws_start(&burst_port, "burst-close", NULL) ||
	    !h_ws_start(&slow_port, "slow-echo", "3000", NULL))
		tap_bail("the ws upstreams did not start");
	snprintf(slow_route, sizeof(slow_route), "--route=slow=ws://127.0.0.1:%d/", slow_port);
	snprintf(echo_route, sizeof(echo_route), "--route=echo=ws://127.0.0.1:%d/", echo_port);
	snprintf(burst_route, sizeof(burst_route), "--route=burst=ws://127.0.0.1:%d/", burst_port);
	if (h_bridge_start(&b, echo_route, burst_route, "--wait-max", "2", NULL))
		tap_bail("pollbridge did not start");
	check_batches(&b);
	check_burst_close(&b);
	check_hostile(&b);
	if (h_bridge_start(&t, echo_route, slow_route, "--wait-max", "2", "--max-message-bytes",
			   "100000", "--queue-max-bytes", "1000000", "--total-queue-max-bytes",
			   "2500000", NULL))
		tap_bail("pollbridge --total-queue-max-bytes did not start");
	check_session_bytes(&t);
	check_total_bytes(&t);
	return tap_done();
}
