/*
 * test_send.c: sending, POST /v1/sessions/<id>/messages, checked against
 * what the upstream actually received (pollbridge-echo --record FILE):
 * text/plain, application/octet-stream, a Content-Type with parameters, a
 * JSON batch (type defaulting to text) and a form batch, each delivered in
 * order with the right types and echoed back to polls; the order of 200
 * sequential sends both ways; send idempotence with the JSON "seq" and
 * X-Send-Seq (repeat, gap, zero, disagreement, bad numbers, unnumbered
 * sends mixed in); every kind of bad input with its exact status and error
 * code, and all or nothing: a refused request delivers none of its
 * messages; the message and request size limits at their edges; batches
 * larger than --queue-max; 429 queue_full against an upstream that never
 * reads (tests/upstreams/stall.sh); sends to unknown, deleted and
 * upstream-closed sessions. After each group the bridge must still serve.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/harness.h"
#include "tap.h"

#define MAX_MSG		1000	/* --max-message-bytes of the main bridge */
#define BODY_LIMIT	(2 * MAX_MSG + 65536)
#define QUEUE_MAX	5	/* --queue-max of the second bridge */
#define ORDER_N		200
#define REC_WAIT_MS	10000
#define STALL_MSG	(512 * 1024)
#define STALL_TRIES	400

static char rec_path[512];	/* pollbridge-echo --record file */
static size_t rec_off;		/* bytes of it already checked */
static int marker_n;		/* numbers the marker messages */

/* 1 if the n bytes at p are exactly the NUL-terminated string s. */
static int same(const char *p, size_t n, const char *s)
{
	return strlen(s) == n && memcmp(p, s, n) == 0;
}

/* Wait until the record holds, past what was already checked, a message
 * line equal to want[n-1]; then check that the message lines ("text ..."
 * or "binary ...", in the order the upstream got them) up to it are
 * exactly want[0..n-1], and consume them. One check. */
static int rec_expect(const char *what, const char *const *want, size_t n)
{
	int64_t deadline = h_now_ms() + REC_WAIT_MS;
	const char *lines[ORDER_N + 16];
	size_t lens[ORDER_N + 16], nl, i, end, len;
	char *all;
	int found, ok;

	for (;;) {
		all = h_read_file(rec_path);
		len = all ? strlen(all) : 0;
		nl = 0;
		found = 0;
		end = rec_off;
		for (i = rec_off; i < len && !found;) {
			const char *line = all + i, *eol = memchr(line, '\n', len - i);
			size_t ll;

			if (!eol)
				break;	/* a line still being written */
			ll = (size_t)(eol - line);
			i += ll + 1;
			end = i;
			if (strncmp(line, "text ", 5) && strncmp(line, "binary ", 7))
				continue;	/* open, close, disconnect */
			if (nl < sizeof(lines) / sizeof(lines[0])) {
				lines[nl] = line;
				lens[nl] = ll;
			}
			nl++;
			found = same(line, ll, want[n - 1]);
		}
		if (found || h_now_ms() >= deadline)
			break;
		free(all);
		h_sleep_ms(20);
	}
	ok = found && nl == n;
	for (i = 0; ok && i < n; i++)
		ok = same(lines[i], lens[i], want[i]);
	tap_ok(ok, "%s: the upstream got exactly the %zu expected message(s)", what, n);
	if (!ok) {
		tap_diag("%s: %s; %zu message line(s) since the last check", what,
			 found ? "the last one arrived" : "the last one never arrived", nl);
		for (i = 0; i < nl && i < n && i < sizeof(lines) / sizeof(lines[0]); i++)
			if (!same(lines[i], lens[i], want[i]))
				break;
		if (i < nl && i < sizeof(lines) / sizeof(lines[0]))
			tap_diag("  first difference at %zu: got \"%.*s\"", i,
				 (int)(lens[i] > 120 ? 120 : lens[i]), lines[i]);
		if (i < n)
			tap_diag("  wanted \"%.120s\"", want[i]);
	}
	rec_off = end;
	free(all);
	return ok;
}

/* rec_expect for a single line. */
static int rec_expect1(const char *what, const char *line)
{
	const char *want[1] = { line };

	return rec_expect(what, want, 1);
}

/* POST body (content type ct, NULL for none, extra headers hdrs) to the
 * session's messages. Returns the status; r must be freed. */
static long send_raw(struct h_bridge *b, const char *id, const char *ct, const void *body,
		     size_t len, const char *const *hdrs, struct h_resp *r)
{
	char url[256];

	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages", b->base, id);
	h_http(r, "POST", url, ct, body, len, hdrs);
	return r->status;
}

/* POST a JSON body string. */
static long send_json(struct h_bridge *b, const char *id, const char *json,
		      const char *const *hdrs, struct h_resp *r)
{
	return send_raw(b, id, "application/json", json, strlen(json), hdrs, r);
}

/* Integer member key of the answer's JSON, or -1 if absent. */
static long long num(const struct h_resp *r, const char *key)
{
	json_t *v = json_object_get(r->json, key);

	return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

/* String member key of obj, or "?" if absent or not a string. */
static const char *jstr(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : "?";
}

/* Check a 200 answer with "accepted": want and no "send_seq" member. */
static void is_accepted(struct h_resp *r, long long want, const char *what)
{
	tap_is_int(r->status, 200, "%s: 200", what);
	tap_is_int(num(r, "accepted"), want, "%s: accepted %lld", what, want);
	tap_ok(r->json && !json_object_get(r->json, "send_seq"),
	       "%s: no send_seq for an unnumbered send (%s)", what, r->body ? r->body : "");
	h_resp_free(r);
}

/* Check a 200 answer with "accepted": want and "send_seq": seq. */
static void is_accepted_seq(struct h_resp *r, long long want, long long seq, const char *what)
{
	tap_is_int(r->status, 200, "%s: 200", what);
	tap_is_int(num(r, "accepted"), want, "%s: accepted %lld", what, want);
	tap_is_int(num(r, "send_seq"), seq, "%s: send_seq %lld", what, seq);
	h_resp_free(r);
}

/* Check an error answer: exact status and error code. */
static void is_error(struct h_resp *r, long status, const char *code, const char *what)
{
	tap_is_int(r->status, status, "%s: %ld", what, status);
	tap_is_str(h_err(r), code, "%s: error %s", what, code);
	h_resp_free(r);
}

/* Send a fresh marker text on the session and check that it is the only
 * thing the upstream got since the last record check: whatever was refused
 * before it delivered nothing (the session keeps its order). */
static void nothing_delivered(struct h_bridge *b, const char *id, const char *what)
{
	struct h_resp r;
	char text[32], line[64];

	snprintf(text, sizeof(text), "marker-%d", ++marker_n);
	snprintf(line, sizeof(line), "text %zu %s", strlen(text), text);
	if (h_send_text(b, id, text, &r) != 200)
		tap_diag("%s: marker send answered %ld %s", what, r.status, h_err(&r));
	h_resp_free(&r);
	rec_expect1(what, line);
}

/* Send a request that must be refused with status/code, and check that
 * the upstream got nothing of it. */
static void refused(struct h_bridge *b, const char *id, const char *what, const char *ct,
		    const void *body, size_t len, const char *const *hdrs, long status,
		    const char *code)
{
	struct h_resp r;

	send_raw(b, id, ct, body, len, hdrs, &r);
	is_error(&r, status, code, what);
	nothing_delivered(b, id, what);
}

/* Standard base64 of n bytes, malloc'd. */
static char *b64(const unsigned char *p, size_t n)
{
	static const char al[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	if (!out)
		tap_bail("out of memory");
	for (i = 0; i + 2 < n; i += 3) {
		*o++ = al[p[i] >> 2];
		*o++ = al[(p[i] & 3) << 4 | p[i + 1] >> 4];
		*o++ = al[(p[i + 1] & 15) << 2 | p[i + 2] >> 6];
		*o++ = al[p[i + 2] & 63];
	}
	if (n - i == 1) {
		*o++ = al[p[i] >> 2];
		*o++ = al[(p[i] & 3) << 4];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		*o++ = al[p[i] >> 2];
		*o++ = al[(p[i] & 3) << 4 | p[i + 1] >> 4];
		*o++ = al[(p[i + 1] & 15) << 2];
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

/* malloc'd string: prefix, then n copies of c, then suffix. */
static char *filled(const char *prefix, size_t n, char c, const char *suffix)
{
	size_t pl = strlen(prefix), sl = strlen(suffix);
	char *s = malloc(pl + n + sl + 1);

	if (!s)
		tap_bail("out of memory");
	memcpy(s, prefix, pl);
	memset(s + pl, c, n);
	memcpy(s + pl + n, suffix, sl + 1);
	return s;
}

/* Create a session on route or bail out. */
static void create_or_bail(struct h_bridge *b, const char *route, char *id)
{
	struct h_resp r;

	if (h_create(b, route, id, &r) != 201)
		tap_bail("cannot create a session on route %s: %ld %s", route, r.status, h_err(&r));
	h_resp_free(&r);
}

/* Check that the echoes collected in got are seq 1..n with "type:data" as in want. */
static void echoes_are(json_t *got, const char *const *want, size_t n, const char *what)
{
	char have[160];
	size_t i;
	json_t *m;
	int ok = json_array_size(got) == n;

	for (i = 0; ok && i < n; i++) {
		m = json_array_get(got, i);
		snprintf(have, sizeof(have), "%s:%s",
			 jstr(m, "type"),
			 jstr(m, "data"));
		ok = json_integer_value(json_object_get(m, "seq")) == (json_int_t)(i + 1) &&
		     strcmp(have, want[i]) == 0;
		if (!ok)
			tap_diag("%s: echo %zu is seq %lld %s, wanted %s", what, i,
				 (long long)json_integer_value(json_object_get(m, "seq")), have,
				 want[i]);
	}
	tap_ok(ok, "%s: %zu echoes in order, seq 1..%zu, right types and data (got %zu)", what,
	       n, n, json_array_size(got));
}

/* The four body forms, a Content-Type with parameters, and their echoes. */
static void check_forms(struct h_bridge *b)
{
	static const unsigned char bin[] = { 0x00, 0x01, 0x02, 0xff };
	static const char *const want_batch[] = { "text 1 a", "binary 3 000102",
						  "text 12 default-text" };
	static const char *const want_form[] = { "text 3 one", "text 9 two words",
						 "text 2 \xc3\xa9" };
	static const char *const want_echo[] = {
		"text:hello", "binary:AAEC/w==", "text:with-params", "text:json-params",
		"text:a", "binary:AAEC", "text:default-text",
		"text:one", "text:two words", "text:\xc3\xa9", "text:null-type"
	};
	const char *form = "data=one&data=two+words&data=%C3%A9";
	struct h_resp r;
	char id[64];
	json_t *got;

	create_or_bail(b, "rec", id);

	send_raw(b, id, "text/plain", "hello", 5, NULL, &r);
	tap_ok(strstr(r.content_type, "application/json") != NULL, "send answers JSON (%s)",
	       r.content_type);
	is_accepted(&r, 1, "text/plain");
	rec_expect1("text/plain", "text 5 hello");

	send_raw(b, id, "application/octet-stream", bin, sizeof(bin), NULL, &r);
	is_accepted(&r, 1, "application/octet-stream");
	rec_expect1("application/octet-stream", "binary 4 000102ff");

	send_raw(b, id, "text/plain; charset=utf-8", "with-params", 11, NULL, &r);
	is_accepted(&r, 1, "text/plain; charset=utf-8");
	rec_expect1("text/plain; charset=utf-8", "text 11 with-params");

	send_raw(b, id, "application/json; charset=utf-8",
		 "{\"messages\":[{\"data\":\"json-params\"}]}", 37, NULL, &r);
	is_accepted(&r, 1, "application/json; charset=utf-8");
	rec_expect1("application/json; charset=utf-8", "text 11 json-params");

	send_json(b, id, "{\"messages\":[{\"type\":\"text\",\"data\":\"a\"},"
		  "{\"type\":\"binary\",\"data\":\"AAEC\"},{\"data\":\"default-text\"}]}", NULL, &r);
	is_accepted(&r, 3, "JSON batch of 3");
	rec_expect("JSON batch of 3", want_batch, 3);

	send_raw(b, id, "application/x-www-form-urlencoded", form, strlen(form), NULL, &r);
	is_accepted(&r, 3, "form batch of 3");
	rec_expect("form batch of 3", want_form, 3);

	/* null counts as absent: an unnumbered send of a text message */
	send_json(b, id, "{\"seq\":null,\"messages\":[{\"type\":null,\"data\":\"null-type\"}]}",
		  NULL, &r);
	is_accepted(&r, 1, "JSON with seq and type null");
	rec_expect1("JSON with seq and type null", "text 9 null-type");

	got = json_array();
	h_collect(b, id, 0, 11, 10000, got);
	echoes_are(got, want_echo, 11, "four body forms");
	json_decref(got);
	tap_is_int(h_delete(b, id), 204, "forms: session deleted");
	tap_ok(h_still_serving(b, "echo"), "still serving after the body forms");
}

/* 200 sequential sends reach the upstream, and come back, in order. */
static void check_order(struct h_bridge *b)
{
	static char texts[ORDER_N][24], lines[ORDER_N][48];
	const char *want[ORDER_N];
	char id[64], query[64], first_bad[160] = "";
	struct h_resp r;
	uint64_t after = 0;
	size_t i, got = 0, bad = 0, msgs_n;
	int ok = 0, tl;
	int64_t deadline;
	json_t *msgs, *m;

	create_or_bail(b, "rec", id);
	for (i = 0; i < ORDER_N; i++) {
		tl = snprintf(texts[i], sizeof(texts[i]), "m%zu", i + 1);
		snprintf(lines[i], sizeof(lines[i]), "text %d m%zu", tl, i + 1);
		want[i] = lines[i];
		h_send_text(b, id, texts[i], &r);
		ok += r.status == 200 && num(&r, "accepted") == 1;
		h_resp_free(&r);
	}
	tap_is_int(ok, ORDER_N, "order: all %d sends answered 200 accepted 1", ORDER_N);
	rec_expect("order: m1..m200", want, ORDER_N);

	deadline = h_now_ms() + 15000;
	while (got < ORDER_N && h_now_ms() < deadline) {
		snprintf(query, sizeof(query), "after=%llu&wait=1&max=100",
			 (unsigned long long)after);
		if (h_poll(b, id, query, &r) != 200) {
			tap_diag("order: poll answered %ld %s", r.status, h_err(&r));
			h_resp_free(&r);
			break;
		}
		msgs = json_object_get(r.json, "messages");
		msgs_n = json_array_size(msgs);
		for (i = 0; i < msgs_n; i++) {
			const char *data, *type;
			json_int_t seq;

			m = json_array_get(msgs, i);
			seq = json_integer_value(json_object_get(m, "seq"));
			data = json_string_value(json_object_get(m, "data"));
			type = json_string_value(json_object_get(m, "type"));
			if (seq != (json_int_t)after + 1 || got >= ORDER_N || !data || !type ||
			    strcmp(type, "text") || strcmp(data, texts[got])) {
				if (!bad++)
					snprintf(first_bad, sizeof(first_bad),
						 "after %llu got seq %lld %s \"%s\"",
						 (unsigned long long)after, (long long)seq,
						 type ? type : "?", data ? data : "?");
			}
			after = seq > 0 ? (uint64_t)seq : after;
			got++;
		}
		h_resp_free(&r);
	}
	tap_is_int(got, ORDER_N, "order: %d echoes came back", ORDER_N);
	tap_ok(bad == 0, "order: echoes in order with consecutive seqs %s", first_bad);
	tap_is_int(h_delete(b, id), 204, "order: session deleted");
	tap_ok(h_still_serving(b, "echo"), "still serving after the ordered sends");
}

/* Send idempotence: JSON "seq" and X-Send-Seq. */
static void check_seq(struct h_bridge *b)
{
	static const char *const h2[] = { "X-Send-Seq: 2", NULL };
	static const char *const h3[] = { "X-Send-Seq: 3", NULL };
	static const char *const h5[] = { "X-Send-Seq: 5", NULL };
	static const char *const h0[] = { "X-Send-Seq: 0", NULL };
	static const char *const habc[] = { "X-Send-Seq: abc", NULL };
	static const char *const hempty[] = { "X-Send-Seq;", NULL };	/* curl: empty value */
	static const char *const hneg[] = { "X-Send-Seq: -4", NULL };
	static const char *const hbig[] = { "X-Send-Seq: 9007199254740992", NULL };
	static const char *const want[] = {
		"text 2 n1", "text 2 u1", "text 2 n2", "text 3 n3a", "text 3 n3b", "text 2 u2",
		"text 2 n4"
	};
	const char *n1 = "{\"seq\":1,\"messages\":[{\"data\":\"n1\"}]}";
	struct h_resp r;
	char id[64];

	create_or_bail(b, "rec", id);

	send_json(b, id, n1, NULL, &r);
	is_accepted_seq(&r, 1, 1, "JSON seq 1");
	send_json(b, id, n1, NULL, &r);
	is_accepted_seq(&r, 0, 1, "JSON seq 1 repeated");
	h_send_text(b, id, "u1", &r);
	is_accepted(&r, 1, "unnumbered send after seq 1");

	send_raw(b, id, "text/plain", "n3-early", 8, h3, &r);
	tap_is_int(r.status, 409, "X-Send-Seq 3 after 1: 409");
	tap_is_str(h_err(&r), "send_seq_gap", "X-Send-Seq 3 after 1: send_seq_gap");
	tap_is_int(num(&r, "expected"), 2,
		   "X-Send-Seq 3 after 1: expected 2 (the unnumbered send did not count)");
	h_resp_free(&r);

	send_json(b, id, "{\"seq\":0,\"messages\":[{\"data\":\"zero\"}]}", NULL, &r);
	is_error(&r, 400, "bad_request", "JSON seq 0");
	send_raw(b, id, "text/plain", "zero", 4, h0, &r);
	is_error(&r, 400, "bad_request", "X-Send-Seq 0");
	send_json(b, id, "{\"seq\":2,\"messages\":[{\"data\":\"disagree\"}]}", h5, &r);
	is_error(&r, 400, "bad_request", "X-Send-Seq 5 with JSON seq 2");
	send_raw(b, id, "text/plain", "abc", 3, habc, &r);
	is_error(&r, 400, "bad_request", "X-Send-Seq abc");
	send_raw(b, id, "text/plain", "empty", 5, hempty, &r);
	is_error(&r, 400, "bad_request", "empty X-Send-Seq");
	send_raw(b, id, "text/plain", "negative", 8, hneg, &r);
	is_error(&r, 400, "bad_request", "X-Send-Seq -4");
	send_raw(b, id, "text/plain", "too-big", 7, hbig, &r);
	is_error(&r, 400, "bad_request", "X-Send-Seq 2^53");
	send_json(b, id, "{\"seq\":\"2\",\"messages\":[{\"data\":\"string\"}]}", NULL, &r);
	is_error(&r, 400, "bad_request", "JSON seq as a string");

	send_raw(b, id, "text/plain", "n2", 2, h2, &r);
	is_accepted_seq(&r, 1, 2, "X-Send-Seq 2");
	send_raw(b, id, "text/plain", "n2-again", 8, h2, &r);
	is_accepted_seq(&r, 0, 2, "X-Send-Seq 2 repeated (other body)");
	send_json(b, id, n1, NULL, &r);
	is_accepted_seq(&r, 0, 2, "JSON seq 1 again after 2");
	send_json(b, id, "{\"seq\":3,\"messages\":[{\"data\":\"n3a\"},{\"data\":\"n3b\"}]}", h3, &r);
	is_accepted_seq(&r, 2, 3, "X-Send-Seq 3 with JSON seq 3, batch of 2");
	h_send_text(b, id, "u2", &r);
	is_accepted(&r, 1, "unnumbered send after seq 3");
	send_raw(b, id, "text/plain", "n5-early", 8, h5, &r);
	tap_is_int(r.status, 409, "X-Send-Seq 5 after 3: 409");
	tap_is_int(num(&r, "expected"), 4, "X-Send-Seq 5 after 3: expected 4");
	h_resp_free(&r);
	send_json(b, id, "{\"seq\":4,\"messages\":[{\"data\":\"n4\"}]}", NULL, &r);
	is_accepted_seq(&r, 1, 4, "JSON seq 4");

	rec_expect("numbered sends", want, sizeof(want) / sizeof(want[0]));
	nothing_delivered(b, id, "numbered sends: nothing more");
	tap_is_int(h_delete(b, id), 204, "seq: session deleted");
	tap_ok(h_still_serving(b, "echo"), "still serving after the numbered sends");
}

/* Bad bodies and media types: exact status and code, nothing delivered. */
static void check_bad_inputs(struct h_bridge *b)
{
	static const unsigned char bad_utf8[] = { 'o', 'k', 0xff, 0xfe };
	static const char *const bad_json[][2] = {
		{ "lone surrogate \\ud800 in JSON",
		  "{\"messages\":[{\"type\":\"text\",\"data\":\"x\\ud800y\"}]}" },
		{ "malformed JSON", "{\"messages\":[{\"data\":\"x\"}" },
		{ "JSON not an object", "[{\"data\":\"x\"}]" },
		{ "messages not an array", "{\"messages\":{\"data\":\"x\"}}" },
		{ "messages missing", "{\"seq\":null}" },
		{ "unknown type", "{\"messages\":[{\"type\":\"blob\",\"data\":\"x\"}]}" },
		{ "data missing", "{\"messages\":[{\"type\":\"text\"}]}" },
		{ "data not a string", "{\"messages\":[{\"data\":5}]}" },
		{ "duplicate key", "{\"messages\":[{\"data\":\"x\",\"data\":\"y\"}]}" },
		{ "bad base64 in the 2nd message (1st must not go)",
		  "{\"messages\":[{\"type\":\"text\",\"data\":\"first\"},"
		  "{\"type\":\"binary\",\"data\":\"!!!\"}]}" },
		{ "bad text in the 3rd message (1st, 2nd must not go)",
		  "{\"messages\":[{\"data\":\"one\"},{\"type\":\"binary\",\"data\":\"AAEC\"},"
		  "{\"data\":7}]}" },
	};
	const char *form_ff = "data=%FF", *form_2nd = "data=first&data=%FF";
	struct h_resp r;
	char id[64];
	size_t i;

	create_or_bail(b, "rec", id);
	refused(b, id, "invalid UTF-8 in text/plain", "text/plain", bad_utf8, sizeof(bad_utf8),
		NULL, 400, "bad_request");
	refused(b, id, "invalid UTF-8 in a form (%FF)", "application/x-www-form-urlencoded",
		form_ff, strlen(form_ff), NULL, 400, "bad_request");
	refused(b, id, "form whose 2nd data is invalid UTF-8 (1st must not go)",
		"application/x-www-form-urlencoded", form_2nd, strlen(form_2nd), NULL, 400,
		"bad_request");
	for (i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++)
		refused(b, id, bad_json[i][0], "application/json", bad_json[i][1],
			strlen(bad_json[i][1]), NULL, 400, "bad_request");
	refused(b, id, "no Content-Type", NULL, "hello", 5, NULL, 415, "unsupported_media_type");
	refused(b, id, "text/html", "text/html", "<p>hi</p>", 9, NULL, 415,
		"unsupported_media_type");
	refused(b, id, "application/xml", "application/xml", "<a/>", 4, NULL, 415,
		"unsupported_media_type");

	/* the session is still usable after all that */
	h_send_text(b, id, "still-fine", &r);
	is_accepted(&r, 1, "a good send after the bad ones");
	rec_expect1("a good send after the bad ones", "text 10 still-fine");
	tap_is_int(h_delete(b, id), 204, "bad inputs: session deleted");
	tap_ok(h_still_serving(b, "echo"), "still serving after bad inputs");
}

/* --max-message-bytes and the request body limit, at their edges. */
static void check_limits(struct h_bridge *b)
{
	unsigned char bytes[MAX_MSG + 1];
	char *s, *line, *enc, *hex;
	struct h_resp r;
	char id[64];
	size_t i, pad;

	for (i = 0; i < sizeof(bytes); i++)
		bytes[i] = (unsigned char)(i * 7 % 256);
	create_or_bail(b, "rec", id);

	s = filled("", MAX_MSG + 1, 'y', "");
	refused(b, id, "text/plain of max+1 bytes", "text/plain", s, MAX_MSG + 1, NULL, 413,
		"payload_too_large");
	refused(b, id, "octet-stream of max+1 bytes", "application/octet-stream", bytes,
		MAX_MSG + 1, NULL, 413, "payload_too_large");
	free(s);

	s = filled("", MAX_MSG, 'y', "");
	line = filled("text 1000 ", MAX_MSG, 'y', "");
	send_raw(b, id, "text/plain", s, MAX_MSG, NULL, &r);
	is_accepted(&r, 1, "text/plain of exactly max bytes");
	rec_expect1("text/plain of exactly max bytes", line);
	free(s);
	free(line);

	s = filled("{\"messages\":[{\"data\":\"ok\"},{\"data\":\"", MAX_MSG + 1, 'z', "\"}]}");
	refused(b, id, "JSON text of max+1 bytes (2nd of 2)", "application/json", s, strlen(s),
		NULL, 413, "payload_too_large");
	free(s);
	s = filled("data=ok&data=", MAX_MSG + 1, 'z', "");
	refused(b, id, "form text of max+1 bytes (2nd of 2)", "application/x-www-form-urlencoded",
		s, strlen(s), NULL, 413, "payload_too_large");
	free(s);

	enc = b64(bytes, MAX_MSG + 1);
	s = malloc(strlen(enc) + 64);
	if (!s)
		tap_bail("out of memory");
	sprintf(s, "{\"messages\":[{\"type\":\"binary\",\"data\":\"%s\"}]}", enc);
	refused(b, id, "binary base64 decoding to max+1 bytes", "application/json", s, strlen(s),
		NULL, 413, "payload_too_large");
	free(enc);
	enc = b64(bytes, MAX_MSG);
	sprintf(s, "{\"messages\":[{\"type\":\"binary\",\"data\":\"%s\"}]}", enc);
	send_json(b, id, s, NULL, &r);
	is_accepted(&r, 1, "binary base64 decoding to exactly max bytes");
	hex = malloc(2 * MAX_MSG + 32);
	if (!hex)
		tap_bail("out of memory");
	i = (size_t)sprintf(hex, "binary %d ", MAX_MSG);
	for (pad = 0; pad < MAX_MSG; pad++, i += 2)
		sprintf(hex + i, "%02x", bytes[pad]);
	rec_expect1("binary of exactly max bytes", hex);
	free(hex);
	free(enc);
	free(s);

	/* The request body limit: JSON padded with whitespace to exactly the
	 * limit is fine, one byte more is 413. */
	pad = BODY_LIMIT - strlen("{\"messages\":[{\"data\":\"edge\"}]}");
	s = filled("{\"messages\":", pad, ' ', "[{\"data\":\"edge\"}]}");
	send_json(b, id, s, NULL, &r);
	tap_is_int(strlen(s), BODY_LIMIT, "the padded body is %d bytes", BODY_LIMIT);
	is_accepted(&r, 1, "a body of exactly 2*max+64KiB");
	rec_expect1("a body of exactly 2*max+64KiB", "text 4 edge");
	free(s);
	s = filled("{\"messages\":", pad + 1, ' ', "[{\"data\":\"over\"}]}");
	refused(b, id, "a body of 2*max+64KiB+1", "application/json", s, strlen(s), NULL, 413,
		"payload_too_large");
	free(s);
	s = filled("", 4 * BODY_LIMIT, 'q', "");
	refused(b, id, "a text/plain body of 4x the request limit", "text/plain", s,
		4 * BODY_LIMIT, NULL, 413, "payload_too_large");
	free(s);

	tap_is_int(h_delete(b, id), 204, "limits: session deleted");
	tap_ok(h_still_serving(b, "echo"), "still serving after oversized sends");
}

/* Sends to sessions that do not exist, were deleted, or whose upstream
 * closed. */
static void check_session_states(struct h_bridge *b)
{
	static const char *const want_close[] = { "text 4 kept", "text 13 /close 1000 x" };
	struct h_resp r;
	char id[64], other[64];
	int64_t deadline;
	const char *state = NULL;
	json_t *close_obj = NULL, *msgs;
	char *all;

	/* an id of the right shape that was never handed out */
	create_or_bail(b, "rec", id);
	snprintf(other, sizeof(other), "%s", id);
	other[0] = other[0] == 'A' ? 'B' : 'A';
	other[1] = other[1] == 'A' ? 'B' : 'A';
	h_send_text(b, other, "to-nobody", &r);
	is_error(&r, 404, "unknown_session", "send to a never-issued id");
	h_send_text(b, "not-an-id", "to-nobody", &r);
	is_error(&r, 404, "unknown_session", "send to a malformed id");

	/* DELETEd */
	tap_is_int(h_delete(b, id), 204, "deleted: DELETE 204");
	h_send_text(b, id, "after-delete", &r);
	is_error(&r, 410, "session_closed", "send to a DELETEd session");
	send_json(b, id, "{\"messages\":[{\"data\":\"after-delete-json\"}]}", NULL, &r);
	is_error(&r, 410, "session_closed", "JSON send to a DELETEd session");

	/* upstream closed: it echoes "kept" and then closes 1000 "x" */
	create_or_bail(b, "rec", id);
	send_json(b, id, "{\"messages\":[{\"data\":\"kept\"},{\"data\":\"/close 1000 x\"}]}", NULL,
		  &r);
	is_accepted(&r, 2, "upstream close: kept + /close 1000 x");
	deadline = h_now_ms() + 10000;
	while (h_now_ms() < deadline) {
		h_poll(b, id, "after=0&wait=1", &r);
		state = json_string_value(json_object_get(r.json, "state"));
		if (r.status != 200 || (state && !strcmp(state, "closed")))
			break;
		h_resp_free(&r);
		h_sleep_ms(50);
	}
	tap_ok(r.status == 200 && state && !strcmp(state, "closed"),
	       "upstream close: the closed batch arrived (%ld %s)", r.status,
	       r.body ? r.body : "");
	close_obj = json_object_get(r.json, "close");
	tap_is_int(json_integer_value(json_object_get(close_obj, "code")), 1000,
		   "upstream close: code 1000");
	tap_is_str(jstr(close_obj, "reason"), "x",
		   "upstream close: reason x");
	h_resp_free(&r);

	h_send_text(b, id, "after-close", &r);
	is_error(&r, 410, "session_closed", "send after the upstream closed");
	send_raw(b, id, "application/octet-stream", "\x01", 1, NULL, &r);
	is_error(&r, 410, "session_closed", "binary send after the upstream closed");
	h_poll(b, id, "after=0", &r);
	msgs = json_object_get(r.json, "messages");
	tap_ok(r.status == 200 && json_array_size(msgs) == 1 &&
	       !strcmp(jstr(json_array_get(msgs, 0), "data"), "kept"),
	       "upstream close: the buffered echo is still readable (%ld %s)", r.status,
	       r.body ? r.body : "");
	h_resp_free(&r);
	rec_expect("upstream close", want_close, 2);
	h_poll(b, id, "after=1", &r);
	h_resp_free(&r);

	/* none of the refused sends ever reached the upstream */
	create_or_bail(b, "rec", id);
	nothing_delivered(b, id, "sends to dead sessions");
	all = h_read_file(rec_path);
	tap_ok(all && !strstr(all, "to-nobody") && !strstr(all, "after-delete") &&
	       !strstr(all, "after-close"), "no refused send appears anywhere in the record");
	free(all);
	tap_is_int(h_delete(b, id), 204, "states: session deleted");
	tap_ok(h_still_serving(b, "echo"), "still serving after sends to dead sessions");
}

/* --queue-max: batches larger than it, and a full queue behind an
 * upstream that never reads. */
static void check_queue(struct h_bridge *b)
{
	const char *six_json = "{\"messages\":[{\"data\":\"q1\"},{\"data\":\"q2\"},{\"data\":\"q3\"},"
			       "{\"data\":\"q4\"},{\"data\":\"q5\"},{\"data\":\"q6\"}]}";
	const char *six_form = "data=q1&data=q2&data=q3&data=q4&data=q5&data=q6";
	static const char *const want5[] = { "text 2 f1", "text 2 f2", "text 2 f3", "text 2 f4",
					     "text 2 f5" };
	struct h_resp r;
	char id[64], *big;
	int i, accepted = 0;
	long last = 0;
	int64_t deadline;

	create_or_bail(b, "rec", id);
	refused(b, id, "JSON batch of queue-max+1", "application/json", six_json,
		strlen(six_json), NULL, 413, "payload_too_large");
	refused(b, id, "form batch of queue-max+1", "application/x-www-form-urlencoded",
		six_form, strlen(six_form), NULL, 413, "payload_too_large");
	send_json(b, id, "{\"messages\":[{\"data\":\"f1\"},{\"data\":\"f2\"},{\"data\":\"f3\"},"
		  "{\"data\":\"f4\"},{\"data\":\"f5\"}]}", NULL, &r);
	is_accepted(&r, QUEUE_MAX, "JSON batch of exactly queue-max");
	rec_expect("JSON batch of exactly queue-max", want5, QUEUE_MAX);
	tap_is_int(h_delete(b, id), 204, "queue: session deleted");
	tap_ok(h_still_serving(b, "echo"), "still serving after batches over queue-max");

	/* An upstream that never reads: once the socket is full, the send
	 * queue fills and the next send is 429 with Retry-After. */
	create_or_bail(b, "stall", id);
	big = filled("", STALL_MSG, 's', "");
	deadline = h_now_ms() + 25000;
	for (i = 0; i < STALL_TRIES && h_now_ms() < deadline; i++) {
		send_raw(b, id, "text/plain", big, STALL_MSG, NULL, &r);
		last = r.status;
		if (last != 200)
			break;
		accepted++;
		h_resp_free(&r);
	}
	tap_diag("stalled upstream: %d sends of %d KiB accepted before %ld", accepted,
		 STALL_MSG / 1024, last);
	tap_is_int(last, 429, "stalled upstream: a send is eventually refused with 429");
	tap_is_str(h_err(&r), "queue_full", "stalled upstream: error queue_full");
	tap_ok(r.retry_after[0] && strspn(r.retry_after, "0123456789") == strlen(r.retry_after) &&
	       atoi(r.retry_after) >= 1, "stalled upstream: Retry-After in seconds (%s)",
	       r.retry_after);
	tap_ok(accepted >= QUEUE_MAX, "stalled upstream: at least queue-max sends fit first (%d)",
	       accepted);
	h_resp_free(&r);
	/* the refusal does not end the session */
	h_poll(b, id, "after=0", &r);
	tap_ok(r.status == 200 && !strcmp(jstr(r.json, "state"), "open"),
	       "stalled upstream: the session is still open after 429 (%ld %s)", r.status,
	       r.body ? r.body : "");
	h_resp_free(&r);
	free(big);
	tap_is_int(h_delete(b, id), 204, "stalled upstream: DELETE 204");
	tap_ok(h_still_serving(b, "echo"), "still serving after a full send queue");
}

int main(void)
{
	struct h_bridge a, q;
	char rec_route[96], echo_route[96], stall_route[96];
	int rec_port, echo_port, stall_port;

	h_init();
	snprintf(rec_path, sizeof(rec_path), "%s/upstream.rec", h_tmpdir());
	if (!h_echo_start(&rec_port, "--record", rec_path, NULL))
		tap_bail("recording pollbridge-echo did not start");
	if (!h_echo_start(&echo_port, NULL))
		tap_bail("pollbridge-echo did not start");
	if (!h_websocketd_start(&stall_port, "stall.sh", NULL))
		tap_bail("websocketd with stall.sh did not start");
	snprintf(rec_route, sizeof(rec_route), "--route=rec=ws://127.0.0.1:%d/", rec_port);
	snprintf(echo_route, sizeof(echo_route), "--route=echo=ws://127.0.0.1:%d/", echo_port);
	snprintf(stall_route, sizeof(stall_route), "--route=stall=ws://127.0.0.1:%d/", stall_port);
	if (h_bridge_start(&a, rec_route, echo_route, "--max-message-bytes", "1000",
			   "--idle-timeout", "5", "--wait-max", "2", "--connect-timeout", "2",
			   NULL))
		tap_bail("pollbridge did not start");
	if (h_bridge_start(&q, rec_route, echo_route, stall_route, "--queue-max", "5",
			   "--idle-timeout", "5", "--wait-max", "2", "--connect-timeout", "2",
			   NULL))
		tap_bail("pollbridge (--queue-max 5) did not start");

	check_forms(&a);
	check_order(&a);
	check_seq(&a);
	check_bad_inputs(&a);
	check_limits(&a);
	check_session_states(&a);
	check_queue(&q);
	return tap_done();
}
