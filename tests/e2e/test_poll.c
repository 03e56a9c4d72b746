/*
 * test_poll.c: receiving, end to end, against the real binary and the
 * bundled echo upstream. Short polls (a fresh session's empty open batch),
 * a /burst's seqs 1..5 with no gaps and no echo of the command, the cursor
 * (a repeated poll returns the same messages, after=N acknowledges <= N, a
 * cursor below freed messages, after beyond the last seq is 400), long
 * polls (an empty batch after `wait`, woken at once by a message, clamped
 * to --wait-max), batch caps (max=, --max-batch, --max-batch-bytes with one
 * message always allowed), what messages carry (binary as standard base64,
 * a fragmented upstream message as one, an empty text, escapes and non-ASCII
 * UTF-8), the single-waiter rule, bad numbers and duplicate or unknown query
 * parameters, bad session ids and paths, PUT/DELETE on /messages. Every
 * poll answer must be JSON with Cache-Control: no-store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "e2e/harness.h"
#include "tap.h"

#define JSON_UTF8	"application/json; charset=utf-8"
#define EMPTY_OPEN	"{\"messages\":[],\"state\":\"open\"}"

/* Answers seen since the last headers_clean() whose Content-Type or
 * Cache-Control broke the contract. */
static int bad_headers;

/* Count (and describe) an answer without the JSON type or no-store. */
static void note_headers(const struct h_resp *r, const char *what)
{
	if (r->status == 0)
		return;	/* no answer at all: the status check reports it */
	if (strcmp(r->content_type, JSON_UTF8) != 0 || strcmp(r->cache_control, "no-store") != 0) {
		bad_headers++;
		tap_diag("%s: Content-Type '%s', Cache-Control '%s'", what, r->content_type,
			 r->cache_control);
	}
}

/* One check that every answer of the group had the right headers. */
static void headers_clean(const char *group)
{
	tap_is_int(bad_headers, 0, "%s: every answer is %s with Cache-Control: no-store", group,
		   JSON_UTF8);
	bad_headers = 0;
}

/* GET /v1/sessions/<id>/messages?query, noting the answer's headers. */
static long get_msgs(struct h_bridge *b, const char *id, const char *query, struct h_resp *r)
{
	h_poll(b, id, query, r);
	note_headers(r, query ? query : "(no query)");
	return r->status;
}

/* Any request on b's path (after the base), noting the answer's headers. */
static long request(struct h_bridge *b, const char *method, const char *path, struct h_resp *r)
{
	char url[512];

	snprintf(url, sizeof(url), "%s%s", b->base, path);
	h_http(r, method, url, method[0] == 'G' ? NULL : "text/plain", NULL, 0, NULL);
	note_headers(r, path);
	return r->status;
}

/* The messages array of an answer (NULL if none). */
static json_t *msgs_of(const struct h_resp *r)
{
	return json_object_get(r->json, "messages");
}

/* Number of messages in an answer, -1 if it has no messages array. */
static long nmsgs(const struct h_resp *r)
{
	json_t *a = msgs_of(r);

	return json_is_array(a) ? (long)json_array_size(a) : -1;
}

/* The state string of an answer, or "" */
static const char *state_of(const struct h_resp *r)
{
	const char *s = json_string_value(json_object_get(r->json, "state"));

	return s ? s : "";
}

/* Field key of message object m as a string (NULL if not a string). */
static const char *mstr(json_t *m, const char *key)
{
	return json_string_value(json_object_get(m, key));
}

/* seq of message object m, -1 if not an integer. */
static long long mseq(json_t *m)
{
	json_t *v = json_object_get(m, "seq");

	return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

/* 1 if j is exactly {"messages":[],"state":"open"} (as JSON). */
static int json_empty_open(json_t *j)
{
	json_t *want = json_loads(EMPTY_OPEN, 0, NULL);
	int eq = j && want && json_equal(j, want);

	json_decref(want);
	return eq;
}

/* 1 if the answer is a 200 with exactly the empty open batch. */
static int is_empty_open(const struct h_resp *r)
{
	return r->status == 200 && json_empty_open(r->json);
}

/* Check an open 200 batch holding exactly the seqs first..first+n-1. */
static void check_batch(const struct h_resp *r, long long first, long n, const char *what)
{
	json_t *m;
	size_t i;
	int seqs_ok = 1;

	tap_is_int(r->status, 200, "%s: 200", what);
	tap_is_str(state_of(r), "open", "%s: state open", what);
	tap_is_int(nmsgs(r), n, "%s: %ld message(s)", what, n);
	json_array_foreach(msgs_of(r), i, m)
		if (mseq(m) != first + (long long)i) {
			seqs_ok = 0;
			tap_diag("%s: message %zu has seq %lld, want %lld", what, i, mseq(m),
				 first + (long long)i);
		}
	tap_ok(seqs_ok, "%s: seqs %lld..%lld in order", what, first, first + n - 1);
}

/* Check an error answer's status and code. */
static void check_error(const struct h_resp *r, long status, const char *code, const char *what)
{
	tap_is_int(r->status, status, "%s: %ld", what, status);
	tap_is_str(h_err(r), code, "%s: %s", what, code);
}

/* Long-poll after `after` (wait=1 each) until a batch holds at least n
 * messages or timeout_ms passes; the size of the last batch. Acknowledges
 * nothing above after, so it works whatever the batch caps. */
static long wait_batch(struct h_bridge *b, const char *id, unsigned long long after, long n,
		       int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	struct h_resp r;
	char q[64];
	long got = 0;

	snprintf(q, sizeof(q), "after=%llu&wait=1", after);
	while (got < n && h_now_ms() < deadline) {
		if (get_msgs(b, id, q, &r) != 200) {
			tap_diag("wait_batch: %s answered %ld %s", q, r.status, h_err(&r));
			h_resp_free(&r);
			break;
		}
		got = nmsgs(&r);
		h_resp_free(&r);
	}
	return got;
}

/* Standard base64 (with padding) of data into out (4*ceil(len/3)+1 bytes). */
static void base64(const unsigned char *data, size_t len, char *out)
{
	static const char al[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;
	unsigned long v;

	for (i = 0; i + 2 < len; i += 3) {
		v = (unsigned long)data[i] << 16 | (unsigned long)data[i + 1] << 8 | data[i + 2];
		*out++ = al[v >> 18 & 63];
		*out++ = al[v >> 12 & 63];
		*out++ = al[v >> 6 & 63];
		*out++ = al[v & 63];
	}
	if (len - i == 1) {
		v = (unsigned long)data[i] << 16;
		*out++ = al[v >> 18 & 63];
		*out++ = al[v >> 12 & 63];
		*out++ = '=';
		*out++ = '=';
	} else if (len - i == 2) {
		v = (unsigned long)data[i] << 16 | (unsigned long)data[i + 1] << 8;
		*out++ = al[v >> 18 & 63];
		*out++ = al[v >> 12 & 63];
		*out++ = al[v >> 6 & 63];
		*out++ = '=';
	}
	*out = '\0';
}

/* Create a session on "echo" or bail out (nothing else can be tested). */
static void must_create(struct h_bridge *b, char *id)
{
	if (h_create(b, "echo", id, NULL) != 201)
		tap_bail("cannot create a session on %s", b->base);
}

/* Send text, checking it was accepted. */
static void send_ok(struct h_bridge *b, const char *id, const char *text, const char *what)
{
	tap_is_int(h_send_text(b, id, text, NULL), 200, "send %s: 200", what);
}

/* ---- background requests (a curl multi handle) ------------------------- */

/* A GET running on a multi handle while the test does other things. */
struct bg {
	CURL *easy;
	char *body;
	size_t len;
	long status;
	int done;
	int64_t done_ms;        /* h_now_ms() when it completed */
	char ctype[128];
};

/* libcurl write callback: accumulate a background answer's body. */
static size_t bg_body(char *p, size_t sz, size_t n, void *arg)
{
	struct bg *q = arg;
	char *nb = realloc(q->body, q->len + sz * n + 1);

	if (!nb)
		return 0;
	memcpy(nb + q->len, p, sz * n);
	q->body = nb;
	q->len += sz * n;
	q->body[q->len] = '\0';
	return sz * n;
}

/* Start GET url on m. */
static void bg_start(CURLM *m, struct bg *q, const char *url)
{
	memset(q, 0, sizeof(*q));
	q->easy = curl_easy_init();
	if (!q->easy)
		tap_bail("curl_easy_init failed");
	curl_easy_setopt(q->easy, CURLOPT_URL, url);
	curl_easy_setopt(q->easy, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(q->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(q->easy, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(q->easy, CURLOPT_WRITEFUNCTION, bg_body);
	curl_easy_setopt(q->easy, CURLOPT_WRITEDATA, q);
	curl_easy_setopt(q->easy, CURLOPT_PRIVATE, q);
	curl_multi_add_handle(m, q->easy);
}

/* Drive m until q is done (any request if q is NULL never counts) or
 * timeout_ms passes. 1 if q is done. */
static int bg_drive(CURLM *m, struct bg *q, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	struct bg *d;
	const char *ct;
	CURLMsg *msg;
	int running, left;

	while (!(q && q->done) && h_now_ms() < deadline) {
		curl_multi_perform(m, &running);
		while ((msg = curl_multi_info_read(m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			d = NULL;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&d);
			if (!d)
				continue;
			d->done = 1;
			d->done_ms = h_now_ms();
			if (msg->data.result == CURLE_OK)
				curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &d->status);
			else
				tap_diag("background request: %s",
					 curl_easy_strerror(msg->data.result));
			ct = NULL;
			curl_easy_getinfo(d->easy, CURLINFO_CONTENT_TYPE, &ct);
			snprintf(d->ctype, sizeof(d->ctype), "%s", ct ? ct : "");
		}
		if (q && q->done)
			break;
		curl_multi_poll(m, NULL, 0, 20, NULL);
	}
	return q && q->done;
}

/* Remove q from m and free it. */
static void bg_free(CURLM *m, struct bg *q)
{
	if (q->easy) {
		curl_multi_remove_handle(m, q->easy);
		curl_easy_cleanup(q->easy);
	}
	free(q->body);
	memset(q, 0, sizeof(*q));
}

/* A background answer parsed as an h_resp-like JSON (new reference). */
static json_t *bg_json(const struct bg *q)
{
	return q->body ? json_loadb(q->body, q->len, 0, NULL) : NULL;
}

/* ---- groups -------------------------------------------------------------- */

/* A fresh session's short poll; a /burst's messages; the cursor. */
static void check_short_and_cursor(struct h_bridge *b)
{
	struct h_resp r, r2;
	json_t *got, *m;
	char id[64], want[24], beyond_msg[256];
	size_t i, n;
	int data_ok = 1;

	must_create(b, id);
	get_msgs(b, id, NULL, &r);
	tap_ok(is_empty_open(&r), "fresh session, no query: %s (got %ld %s)", EMPTY_OPEN,
	       r.status, r.body);
	tap_ok(r.seconds < 2.0, "a short poll answers at once (%.2f s)", r.seconds);
	h_resp_free(&r);
	get_msgs(b, id, "after=0&wait=0", &r);
	tap_ok(is_empty_open(&r), "fresh session, after=0&wait=0: empty open batch");
	tap_ok(r.seconds < 2.0, "wait=0 answers at once (%.2f s)", r.seconds);
	h_resp_free(&r);
	get_msgs(b, id, "after=1", &r);
	check_error(&r, 400, "bad_request", "fresh session, after=1 (nothing handed out)");
	h_resp_free(&r);

	/* /burst 5: the upstream sends "1".."5"; the command is not echoed. */
	send_ok(b, id, "/burst 5", "/burst 5");
	got = json_array();
	n = h_collect(b, id, 0, 5, 5000, got);
	tap_is_int(n, 5, "/burst 5: 5 messages collected");
	json_array_foreach(got, i, m) {
		snprintf(want, sizeof(want), "%zu", i + 1);
		if (mseq(m) != (long long)i + 1 || !mstr(m, "type") ||
		    strcmp(mstr(m, "type"), "text") || !mstr(m, "data") ||
		    strcmp(mstr(m, "data"), want)) {
			data_ok = 0;
			tap_diag("burst message %zu: seq %lld type %s data %s", i, mseq(m),
				 mstr(m, "type"), mstr(m, "data"));
		}
	}
	tap_ok(data_ok && n == 5, "/burst 5: seqs 1..5, type text, data \"1\"..\"5\"");
	json_decref(got);

	/* Give a stray echo of "/burst 5" time to show up, then look. */
	h_sleep_ms(300);
	get_msgs(b, id, "after=0", &r);
	check_batch(&r, 1, 5, "after=0 once the burst is in (no echo of the command)");
	get_msgs(b, id, "after=0", &r2);
	tap_is_str(r2.body, r.body, "after=0 repeated (lost response): the same answer");
	h_resp_free(&r2);
	h_resp_free(&r);

	get_msgs(b, id, "after=0&max=2", &r);
	check_batch(&r, 1, 2, "after=0&max=2");
	h_resp_free(&r);

	get_msgs(b, id, "after=2", &r);
	check_batch(&r, 3, 3, "after=2 acknowledges 1..2");
	get_msgs(b, id, "after=2", &r2);
	tap_is_str(r2.body, r.body, "after=2 repeated: the same answer");
	h_resp_free(&r2);
	h_resp_free(&r);

	get_msgs(b, id, "after=0", &r);
	check_batch(&r, 3, 3, "after=0 below the freed 1..2: what is retained (3..5)");
	h_resp_free(&r);
	get_msgs(b, id, "after=1", &r);
	check_batch(&r, 3, 3, "after=1 below the freed 1..2: 3..5");
	h_resp_free(&r);

	get_msgs(b, id, "after=4&max=5", &r);
	check_batch(&r, 5, 1, "after=4&max=5: only 5");
	h_resp_free(&r);
	get_msgs(b, id, "after=5", &r);
	tap_ok(is_empty_open(&r), "after=5 (the last seq): empty open batch (%s)", r.body);
	h_resp_free(&r);
	get_msgs(b, id, "after=3", &r);
	tap_ok(is_empty_open(&r), "after=3 once all are acknowledged: empty open batch (%s)",
	       r.body);
	h_resp_free(&r);

	get_msgs(b, id, "after=6", &r);
	check_error(&r, 400, "bad_request", "after=6, beyond the last seq 5");
	snprintf(beyond_msg, sizeof(beyond_msg), "%s",
		 json_string_value(json_object_get(r.json, "message")) ?
		 json_string_value(json_object_get(r.json, "message")) : "");
	h_resp_free(&r);
	get_msgs(b, id, "after=9007199254740991", &r);
	check_error(&r, 400, "bad_request", "after=2^53-1, beyond the last seq");
	tap_is_str(json_string_value(json_object_get(r.json, "message")), beyond_msg,
		   "after=2^53-1 is refused as beyond the last seq, not as a bad number");
	h_resp_free(&r);
	get_msgs(b, id, "after=5", &r);
	tap_ok(is_empty_open(&r), "the session still answers after=5 after the 400s");
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "short polls and cursor: still serving");
	headers_clean("short polls and cursor");
}

/* Long polls on a bridge with --wait-max 2. */
static void check_long_polls(struct h_bridge *b)
{
	struct h_resp r;
	char id[64];

	must_create(b, id);
	get_msgs(b, id, "wait=1", &r);
	tap_ok(is_empty_open(&r), "wait=1, nothing queued: empty open batch (%ld %s)", r.status,
	       r.body);
	tap_ok(r.seconds >= 0.9 && r.seconds < 3.0, "wait=1 waited about 1 s (%.2f s)",
	       r.seconds);
	h_resp_free(&r);

	get_msgs(b, id, "after=0&wait=30", &r);
	tap_ok(is_empty_open(&r), "wait=30 with --wait-max 2: empty open batch (%ld %s)",
	       r.status, r.body);
	tap_ok(r.seconds >= 1.8 && r.seconds < 4.0, "wait=30 clamped to about 2 s (%.2f s)",
	       r.seconds);
	h_resp_free(&r);

	/* A long poll with something queued answers at once. */
	send_ok(b, id, "ready", "ready");
	tap_is_int(wait_batch(b, id, 0, 1, 5000), 1, "the echo of 'ready' arrives");
	get_msgs(b, id, "after=0&wait=2", &r);
	check_batch(&r, 1, 1, "wait=2 with a message queued");
	tap_ok(r.seconds < 1.5, "wait=2 with a message queued answers at once (%.2f s)",
	       r.seconds);
	tap_is_str(mstr(json_array_get(msgs_of(&r), 0), "data"), "ready", "with that message");
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "long polls: still serving");
	headers_clean("long polls");
}

/* A long poll woken by a message, and the single-waiter rule, with
 * requests running in the background (bridge with --wait-max 10). */
static void check_waiters(struct h_bridge *b)
{
	struct bg p, a, q;
	char id[64], url[256];
	json_t *j, *m;
	int64_t sent_ms, b_ms;
	CURLM *mh = curl_multi_init();

	if (!mh)
		tap_bail("curl_multi_init failed");

	/* A waiting poll is answered as soon as a message arrives. */
	must_create(b, id);
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=0&wait=8", b->base, id);
	bg_start(mh, &p, url);
	bg_drive(mh, NULL, 500);
	tap_ok(!p.done, "wait=8, nothing queued: still waiting after 0.5 s");
	sent_ms = h_now_ms();
	send_ok(b, id, "wake", "'wake' while a poll waits");
	bg_drive(mh, &p, 9000);
	tap_ok(p.done && p.done_ms - sent_ms < 3000,
	       "the waiting poll is answered within 3 s of the message (%lld ms)",
	       (long long)(p.done_ms - sent_ms));
	tap_is_int(p.status, 200, "woken poll: 200");
	tap_is_str(p.ctype, JSON_UTF8, "woken poll: Content-Type");
	j = bg_json(&p);
	m = json_array_get(json_object_get(j, "messages"), 0);
	tap_is_int(json_array_size(json_object_get(j, "messages")), 1, "woken poll: one message");
	tap_is_int(mseq(m), 1, "woken poll: seq 1");
	tap_is_str(mstr(m, "data"), "wake", "woken poll: data 'wake'");
	tap_is_str(json_string_value(json_object_get(j, "state")), "open", "woken poll: open");
	json_decref(j);
	bg_free(mh, &p);

	/* Single waiter: poll A waits, poll B on the same session completes
	 * A at once with an empty open batch, and B gets the next message. */
	must_create(b, id);
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=0&wait=8", b->base, id);
	bg_start(mh, &a, url);
	bg_drive(mh, NULL, 500);
	tap_ok(!a.done, "poll A (wait=8) is waiting");
	b_ms = h_now_ms();
	bg_start(mh, &q, url);
	bg_drive(mh, &a, 5000);
	tap_ok(a.done, "poll B on the same session: A is answered at once (%lld ms after B)",
	       a.done ? (long long)(a.done_ms - b_ms) : -1LL);
	tap_is_int(a.status, 200, "A: 200");
	tap_is_str(a.ctype, JSON_UTF8, "A: Content-Type");
	j = bg_json(&a);
	tap_ok(json_empty_open(j), "A: %s (got %s)", EMPTY_OPEN, a.body ? a.body : "");
	json_decref(j);
	tap_ok(!q.done, "B is still waiting (nothing queued yet)");
	send_ok(b, id, "next", "'next' while B waits");
	bg_drive(mh, &q, 9000);
	tap_ok(q.done, "B is answered when 'next' arrives");
	tap_is_int(q.status, 200, "B: 200");
	j = bg_json(&q);
	m = json_array_get(json_object_get(j, "messages"), 0);
	tap_is_int(json_array_size(json_object_get(j, "messages")), 1, "B: one message");
	tap_is_int(mseq(m), 1, "B: seq 1");
	tap_is_str(mstr(m, "data"), "next", "B: data 'next'");
	json_decref(j);
	bg_free(mh, &a);
	bg_free(mh, &q);
	curl_multi_cleanup(mh);
	tap_ok(h_still_serving(b, "echo"), "waiters: still serving");
	headers_clean("waiters");
}

/* max= and --max-batch 3: the default, the ceiling (capped, not refused). */
static void check_max_batch(struct h_bridge *b)
{
	struct h_resp r;
	char id[64];

	must_create(b, id);
	send_ok(b, id, "/burst 5", "/burst 5 (--max-batch 3)");
	tap_is_int(wait_batch(b, id, 0, 3, 5000), 3, "--max-batch 3: a full batch of 3 arrives");
	h_sleep_ms(300);	/* let 4 and 5 arrive too, so a missing cap shows */
	get_msgs(b, id, "after=0", &r);
	check_batch(&r, 1, 3, "no max with --max-batch 3: the default is 3");
	h_resp_free(&r);
	get_msgs(b, id, "after=0&max=50", &r);
	check_batch(&r, 1, 3, "max=50 with --max-batch 3: capped to 3, not refused");
	h_resp_free(&r);
	get_msgs(b, id, "after=0&max=9007199254740991", &r);
	check_batch(&r, 1, 3, "max=2^53-1: capped to 3");
	h_resp_free(&r);
	get_msgs(b, id, "after=0&max=2", &r);
	check_batch(&r, 1, 2, "max=2 below the ceiling: 2");
	h_resp_free(&r);
	get_msgs(b, id, "after=0&max=1", &r);
	check_batch(&r, 1, 1, "max=1: 1");
	h_resp_free(&r);
	get_msgs(b, id, "after=3&max=50&wait=2", &r);
	check_batch(&r, 4, 2, "after=3&max=50: the rest, 4..5");
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "--max-batch: still serving");
	headers_clean("--max-batch");
}

/* --max-batch-bytes 10: 6-byte messages come one per batch, and a message
 * over the cap still comes (alone). */
static void check_byte_cap(struct h_bridge *b)
{
	struct h_resp r;
	char id[64], want[64];

	must_create(b, id);
	send_ok(b, id, "msg-01", "msg-01");
	send_ok(b, id, "msg-02", "msg-02");
	send_ok(b, id, "msg-03", "msg-03");
	tap_is_int(wait_batch(b, id, 0, 1, 5000), 1, "--max-batch-bytes 10: a message arrives");
	h_sleep_ms(300);	/* let all three arrive, so a missing cap shows */
	get_msgs(b, id, "after=0", &r);
	check_batch(&r, 1, 1, "after=0, 6-byte messages, byte cap 10: one per batch");
	tap_is_str(mstr(json_array_get(msgs_of(&r), 0), "data"), "msg-01", "it is msg-01");
	h_resp_free(&r);
	get_msgs(b, id, "after=0&max=3", &r);
	check_batch(&r, 1, 1, "max=3 does not lift the byte cap");
	h_resp_free(&r);
	get_msgs(b, id, "after=1&wait=2", &r);
	check_batch(&r, 2, 1, "after=1: one message");
	tap_is_str(mstr(json_array_get(msgs_of(&r), 0), "data"), "msg-02", "it is msg-02");
	h_resp_free(&r);
	get_msgs(b, id, "after=2&wait=2", &r);
	check_batch(&r, 3, 1, "after=2: one message");
	tap_is_str(mstr(json_array_get(msgs_of(&r), 0), "data"), "msg-03", "it is msg-03");
	h_resp_free(&r);

	send_ok(b, id, "/big 50", "/big 50");
	send_ok(b, id, "/big 30", "/big 30");
	tap_is_int(wait_batch(b, id, 3, 1, 5000), 1, "the 50-byte message arrives");
	h_sleep_ms(300);
	get_msgs(b, id, "after=3", &r);
	check_batch(&r, 4, 1, "a 50-byte message over the 10-byte cap still comes, alone");
	memset(want, 'x', 50);
	want[50] = '\0';
	tap_is_str(mstr(json_array_get(msgs_of(&r), 0), "data"), want, "all 50 bytes of it");
	h_resp_free(&r);
	get_msgs(b, id, "after=4&wait=2", &r);
	check_batch(&r, 5, 1, "the next over-cap message comes alone too");
	want[30] = '\0';
	tap_is_str(mstr(json_array_get(msgs_of(&r), 0), "data"), want, "all 30 bytes of it");
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "--max-batch-bytes: still serving");
	headers_clean("--max-batch-bytes");
}

/* What messages carry: binary, fragments, empty text, escapes, UTF-8. */
static void check_content(struct h_bridge *b)
{
	static const char weird[] = "line1\nline2 \"quoted\" back\\slash /solidus "
				    "\x01\x1f\x7f\ttab caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 "
				    "\xe2\x80\xa8 end";
	unsigned char bytes[300];
	char b64[401];
	struct h_resp r;
	json_t *got, *m;
	char id[64];
	size_t i;

	for (i = 0; i < sizeof(bytes); i++)
		bytes[i] = (unsigned char)(i % 256);
	base64(bytes, sizeof(bytes), b64);

	must_create(b, id);
	send_ok(b, id, "/binary 300", "/binary 300");
	send_ok(b, id, "/binary 1", "/binary 1");
	send_ok(b, id, "/binary 2", "/binary 2");
	send_ok(b, id, "/fragments", "/fragments");
	send_ok(b, id, "", "an empty text");
	send_ok(b, id, weird, "text with escapes and UTF-8");
	send_ok(b, id, "last", "last");
	got = json_array();
	tap_is_int(h_collect(b, id, 0, 7, 5000, got), 7, "7 messages arrive");
	json_decref(got);
	h_sleep_ms(300);	/* a fragment delivered as its own message would show */
	get_msgs(b, id, "after=0", &r);
	check_batch(&r, 1, 7, "exactly 7 messages, one per send");

	m = json_array_get(msgs_of(&r), 0);
	tap_is_str(mstr(m, "type"), "binary", "/binary 300: type binary");
	tap_is_str(mstr(m, "data"), b64, "/binary 300: standard base64 of bytes i %% 256");
	m = json_array_get(msgs_of(&r), 1);
	tap_is_str(mstr(m, "type"), "binary", "/binary 1: type binary");
	tap_is_str(mstr(m, "data"), "AA==", "/binary 1: AA== (padded)");
	m = json_array_get(msgs_of(&r), 2);
	tap_is_str(mstr(m, "data"), "AAE=", "/binary 2: AAE= (padded)");
	m = json_array_get(msgs_of(&r), 3);
	tap_is_str(mstr(m, "type"), "text", "/fragments: type text");
	tap_is_str(mstr(m, "data"), "alpha-beta-gamma", "/fragments: one message alpha-beta-gamma");
	m = json_array_get(msgs_of(&r), 4);
	tap_is_str(mstr(m, "type"), "text", "empty text: type text");
	tap_is_str(mstr(m, "data"), "", "empty text: data \"\"");
	m = json_array_get(msgs_of(&r), 5);
	tap_is_str(mstr(m, "type"), "text", "escapes: type text");
	tap_is_str(mstr(m, "data"), weird, "newline, quotes, backslash, controls, UTF-8: exact");
	tap_is_int(json_string_length(json_object_get(m, "data")), strlen(weird),
		   "and exactly as long");
	m = json_array_get(msgs_of(&r), 6);
	tap_is_str(mstr(m, "data"), "last", "the message after them is 'last'");
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "message content: still serving");
	headers_clean("message content");
}

/* Malformed numbers, duplicate and unknown query parameters. */
static void check_bad_numbers(struct h_bridge *b)
{
	static const char *const bad[] = {
		"after=-1", "after=abc", "after=", "after", "after=1.5", "after=+1",
		"after=%2B1", "after=%201", "after=1e0", "after=0x1",
		"after=9007199254740992", "after=18446744073709551617",
		"wait=-1", "wait=x", "wait=", "wait=1.5", "wait=9007199254740992",
		"max=0", "max=-3", "max=", "max=00", "max=9007199254740992",
		"after=0&after=0", "wait=0&wait=0", "max=1&max=1", "after=0&wait=1&after=0",
		NULL,
	};
	struct h_resp r;
	char id[64];
	int i;

	must_create(b, id);
	for (i = 0; bad[i]; i++) {
		get_msgs(b, id, bad[i], &r);
		check_error(&r, 400, "bad_request", bad[i]);
		tap_ok(r.seconds < 2.0, "%s: refused at once (%.2f s)", bad[i], r.seconds);
		h_resp_free(&r);
	}
	get_msgs(b, id, "after=0&foo=bar&_=1234567890&callbackx=f", &r);
	tap_ok(is_empty_open(&r), "unknown query parameters are ignored (%ld %s)", r.status,
	       r.body);
	h_resp_free(&r);
	get_msgs(b, id, "foo=1&foo=2", &r);
	tap_ok(is_empty_open(&r), "an unknown parameter given twice is ignored too (%ld %s)",
	       r.status, r.body);
	h_resp_free(&r);
	get_msgs(b, id, "after=00&wait=0&max=1", &r);
	tap_ok(is_empty_open(&r), "after=00: leading zeros are still decimal (%ld %s)",
	       r.status, r.body);
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "bad numbers: still serving");
	headers_clean("bad numbers");
}

/* Session ids that were never issued or cannot be, other paths, methods. */
static void check_routing(struct h_bridge *b)
{
	struct h_resp r;
	char id[64], path[256], bad[64];

	must_create(b, id);
	snprintf(path, sizeof(path), "/v1/sessions/%s/messages", "AAAAAAAAAAAAAAAAAAAAAA");
	request(b, "GET", path, &r);
	check_error(&r, 404, "unknown_session", "a well-formed id never issued");
	h_resp_free(&r);

	snprintf(bad, sizeof(bad), "%.21s", id);
	snprintf(path, sizeof(path), "/v1/sessions/%s/messages", bad);
	request(b, "GET", path, &r);
	check_error(&r, 404, "unknown_session", "a live id cut to 21 chars");
	h_resp_free(&r);
	snprintf(path, sizeof(path), "/v1/sessions/%sA/messages", id);
	request(b, "GET", path, &r);
	check_error(&r, 404, "unknown_session", "a live id grown to 23 chars");
	h_resp_free(&r);
	snprintf(bad, sizeof(bad), "%s", id);
	bad[10] = '.';
	snprintf(path, sizeof(path), "/v1/sessions/%s/messages", bad);
	request(b, "GET", path, &r);
	check_error(&r, 404, "unknown_session", "22 chars with a '.'");
	h_resp_free(&r);
	snprintf(path, sizeof(path), "/v1/sessions/%.10s%%2F%s/messages", id, id + 11);
	request(b, "GET", path, &r);
	check_error(&r, 404, "unknown_session", "a live id with a char replaced by %2F");
	h_resp_free(&r);
	snprintf(path, sizeof(path), "/v1/sessions/%.19s%%2F/messages", id);
	request(b, "GET", path, &r);
	check_error(&r, 404, "unknown_session", "19 chars and %2F (22 raw chars)");
	h_resp_free(&r);

	snprintf(path, sizeof(path), "/v1/sessions/%s/nothing", id);
	request(b, "GET", path, &r);
	check_error(&r, 404, "not_found", "GET /v1/sessions/<id>/nothing");
	h_resp_free(&r);
	request(b, "POST", path, &r);
	check_error(&r, 404, "not_found", "POST /v1/sessions/<id>/nothing");
	h_resp_free(&r);

	snprintf(path, sizeof(path), "/v1/sessions/%s/messages", id);
	request(b, "PUT", path, &r);
	check_error(&r, 405, "method_not_allowed", "PUT /v1/sessions/<id>/messages");
	tap_ok(strstr(r.allow, "GET") && strstr(r.allow, "POST"),
	       "PUT on /messages: Allow names GET and POST (%s)", r.allow);
	h_resp_free(&r);
	request(b, "DELETE", path, &r);
	check_error(&r, 405, "method_not_allowed", "DELETE /v1/sessions/<id>/messages");
	h_resp_free(&r);

	/* The live session itself was not disturbed by any of that. */
	get_msgs(b, id, "after=0", &r);
	tap_ok(is_empty_open(&r), "the live session still answers (%ld %s)", r.status, r.body);
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "ids and paths: still serving");
	headers_clean("ids and paths");
}

/* Start a bridge to the echo upstream with extra flags, or bail out. */
static void start_bridge(struct h_bridge *b, const char *route, const char *flag,
			 const char *value)
{
	if (h_bridge_start(b, route, "--log-level", "warn", flag, value, NULL))
		tap_bail("pollbridge %s %s did not start", flag, value);
}

int main(void)
{
	struct h_bridge main_b, wait_b, max_b, bytes_b;
	char route[128];
	int port;

	h_init();
	if (!h_echo_start(&port, NULL))
		tap_bail("pollbridge-echo did not start");
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/", port);

	start_bridge(&main_b, route, "--wait-max", "2");
	check_short_and_cursor(&main_b);
	check_long_polls(&main_b);
	check_content(&main_b);
	check_bad_numbers(&main_b);
	check_routing(&main_b);

	start_bridge(&wait_b, route, "--wait-max", "10");
	check_waiters(&wait_b);

	start_bridge(&max_b, route, "--max-batch", "3");
	check_max_batch(&max_b);

	start_bridge(&bytes_b, route, "--max-batch-bytes", "10");
	check_byte_cap(&bytes_b);
	return tap_done();
}
