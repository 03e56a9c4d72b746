/*
 * test_websocketd.c: pollbridge against an upstream nobody on this project
 * wrote, Debian's websocketd wrapping the scripts in tests/upstreams:
 * - echo.sh: 20 sequential text sends (spaces, UTF-8) come back exactly
 *   once, in order, with consecutive seqs; a JSON batch of 5 likewise.
 * - count.sh 50: "1".."50" arrive as seqs 1..50, then the session reports
 *   "state":"closed". websocketd drops the TCP connection without a close
 *   frame when its program exits (checked by hand with a raw client), so
 *   the close code the bridge must report is 1006 (RFC 6455 7.1.5). Sends
 *   to it are 410 while the last message stays readable; acknowledging it
 *   gives the empty closed batch, and the next poll is 410.
 * - record.sh FILE: "alpha","beta","gamma", a numbered send retried with
 *   the same X-Send-Seq and the next numbered one reach the script exactly
 *   once each, in order; DELETE then makes the script see end of input
 *   ("EOF" in FILE), proving the upstream got a close.
 * - two sessions on the same websocketd route are independent, and ending
 *   one leaves the other working.
 * After each group the bridge must still serve the route "echo"
 * (pollbridge-echo).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/harness.h"
#include "tap.h"

#define WAIT_FILE_MS	5000	/* for lines to show up in record.sh's file */
#define COLLECT_MS	10000	/* for h_collect */

/* The integer member key of object o (0 if absent). */
static json_int_t jint(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* The string member key of object o, or "" if absent. */
static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

/* POST body as content_type to the session's messages, with one optional
 * extra header line. Returns the status; r must be freed. */
static long send_body(struct h_bridge *b, const char *id, const char *content_type,
		      const char *body, const char *header, struct h_resp *r)
{
	const char *hdrs[2] = { header, NULL };
	char url[256];

	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages", b->base, id);
	h_http(r, "POST", url, content_type, body, strlen(body), header ? hdrs : NULL);
	return r->status;
}

/* Check that msgs (a JSON array) holds exactly the n texts want, with seqs
 * first, first+1, ...; every mismatch is reported as a diagnostic. */
static void check_msgs(const json_t *msgs, json_int_t first, const char *const *want, size_t n,
		       const char *what)
{
	size_t i, bad = 0;
	const json_t *m;

	tap_is_int(json_array_size(msgs), n, "%s: %zu messages", what, n);
	for (i = 0; i < json_array_size(msgs) && i < n; i++) {
		m = json_array_get(msgs, i);
		if (jint(m, "seq") == first + (json_int_t)i && !strcmp(jstr(m, "type"), "text") &&
		    !strcmp(jstr(m, "data"), want[i]))
			continue;
		bad++;
		tap_diag("%s: #%zu is seq %lld %s '%s', want seq %lld text '%s'", what, i,
			 (long long)jint(m, "seq"), jstr(m, "type"), jstr(m, "data"),
			 (long long)(first + (json_int_t)i), want[i]);
	}
	tap_is_int(bad, 0, "%s: each exactly once, in order, seqs %lld..%lld", what,
		   (long long)first, (long long)(first + (json_int_t)n - 1));
}

/* A short poll with after=after must be 200, open, with no messages: nothing
 * arrived beyond what was collected. */
static void check_nothing_more(struct h_bridge *b, const char *id, json_int_t after,
			       const char *what)
{
	struct h_resp r;
	char q[64];

	snprintf(q, sizeof(q), "after=%lld", (long long)after);
	tap_is_int(h_poll(b, id, q, &r), 200, "%s: short poll after=%lld is 200", what,
		   (long long)after);
	tap_ok(json_array_size(json_object_get(r.json, "messages")) == 0 &&
	       !strcmp(jstr(r.json, "state"), "open"),
	       "%s: no further message, still open (%s)", what, r.body ? r.body : "");
	h_resp_free(&r);
}

/* Wait up to timeout_ms for the file at path to hold at least n lines;
 * returns its text (malloc'd, may be NULL). */
static char *wait_file_lines(const char *path, int n, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	char *text;
	const char *p;
	int lines;

	for (;;) {
		text = h_read_file(path);
		lines = 0;
		for (p = text; p && *p; p++)
			lines += *p == '\n';
		if (lines >= n || h_now_ms() >= deadline)
			return text;
		free(text);
		h_sleep_ms(50);
	}
}

/* echo.sh: 20 sequential sends and a JSON batch of 5 echo back in order. */
static void group_echo(struct h_bridge *b)
{
	static const char *const texts[20] = {
		"one", "two words", "three little words", "héllo wörld", "日本語 テキスト",
		"emoji 😀 inside", "Ωμέγα", "tab\tinside", "6", "seven 7 seven",
		"ünïcödé ñ", "11", "twelve", "a b c d e f", "κόσμε", "15 fifteen",
		"{\"json\": \"looking\"}", "quote \" and backslash \\", "nineteen", "the last"
	};
	static const char *const batch[5] = { "b1", "b two", "b ∂rei", "b4", "b five 5" };
	static const char batch_json[] =
		"{\"messages\":[{\"type\":\"text\",\"data\":\"b1\"},"
		"{\"type\":\"text\",\"data\":\"b two\"},"
		"{\"type\":\"text\",\"data\":\"b \\u2202rei\"},"
		"{\"data\":\"b4\"},"
		"{\"type\":\"text\",\"data\":\"b five 5\"}]}";
	struct h_resp r;
	char id[64];
	json_t *got;
	size_t i, failed = 0;

	tap_is_int(h_create(b, "wsecho", id, NULL), 201, "echo.sh: session created");
	for (i = 0; i < 20; i++) {
		if (h_send_text(b, id, texts[i], &r) != 200 || jint(r.json, "accepted") != 1) {
			failed++;
			tap_diag("echo.sh: send #%zu '%s' answered %ld %s", i, texts[i], r.status,
				 r.body ? r.body : "");
		}
		h_resp_free(&r);
	}
	tap_is_int(failed, 0, "echo.sh: 20 sequential sends each 200 with accepted 1");

	got = json_array();
	h_collect(b, id, 0, 20, COLLECT_MS, got);
	check_msgs(got, 1, texts, 20, "echo.sh: 20 echoes");
	json_decref(got);
	check_nothing_more(b, id, 20, "echo.sh after 20");

	tap_is_int(send_body(b, id, "application/json", batch_json, NULL, &r), 200,
		   "echo.sh: JSON batch of 5 is 200");
	tap_is_int(jint(r.json, "accepted"), 5, "echo.sh: batch accepted 5 (%s)",
		   r.body ? r.body : "");
	h_resp_free(&r);
	got = json_array();
	h_collect(b, id, 20, 5, COLLECT_MS, got);
	check_msgs(got, 21, batch, 5, "echo.sh: batch of 5");
	json_decref(got);
	check_nothing_more(b, id, 25, "echo.sh after the batch");

	tap_is_int(h_delete(b, id), 204, "echo.sh: DELETE is 204");
	tap_ok(h_still_serving(b, "echo"), "after echo.sh: still serving route echo");
}

/* count.sh 50: 50 numbered messages, then the upstream's close; acking the
 * last message ends the session. */
static void group_count(struct h_bridge *b)
{
	char want_buf[50][4], id[64];
	const char *want[50];
	const json_t *cl, *msgs;
	struct h_resp r;
	int64_t deadline;
	json_t *got;
	int i;

	for (i = 0; i < 50; i++) {
		snprintf(want_buf[i], sizeof(want_buf[i]), "%d", i + 1);
		want[i] = want_buf[i];
	}
	tap_is_int(h_create(b, "count", id, NULL), 201, "count.sh: session created");
	got = json_array();
	h_collect(b, id, 0, 50, COLLECT_MS, got);
	check_msgs(got, 1, want, 50, "count.sh 50");
	json_decref(got);

	/* Poll acknowledging 1..49 until the batch carrying 50 says closed
	 * (the close may land just after the last message). */
	deadline = h_now_ms() + 8000;
	for (;;) {
		h_poll(b, id, "after=49&wait=1", &r);
		if (r.status != 200 || !strcmp(jstr(r.json, "state"), "closed") ||
		    h_now_ms() >= deadline)
			break;
		h_resp_free(&r);
		h_sleep_ms(50);
	}
	tap_is_int(r.status, 200, "count.sh: poll after=49 is 200");
	tap_is_str(jstr(r.json, "state"), "closed", "count.sh: the session reports closed");
	msgs = json_object_get(r.json, "messages");
	tap_ok(json_array_size(msgs) == 1 && jint(json_array_get(msgs, 0), "seq") == 50 &&
	       !strcmp(jstr(json_array_get(msgs, 0), "data"), "50"),
	       "count.sh: the closed batch carries the last message, seq 50 (%s)",
	       r.body ? r.body : "");
	cl = json_object_get(r.json, "close");
	tap_diag("count.sh: close observed: code %lld reason '%s'", (long long)jint(cl, "code"),
		 jstr(cl, "reason"));
	/* websocketd sends no close frame when its program ends: 1006. */
	tap_is_int(jint(cl, "code"), 1006,
		   "count.sh: close code 1006 (websocketd drops TCP without a close frame)");
	tap_ok(json_is_string(json_object_get(cl, "reason")), "count.sh: close has a reason string");
	h_resp_free(&r);

	tap_is_int(h_send_text(b, id, "too late", &r), 410,
		   "count.sh: a send after the upstream closed is 410");
	tap_is_str(h_err(&r), "session_closed", "count.sh: error session_closed");
	h_resp_free(&r);
	tap_is_int(h_poll(b, id, "after=49", &r), 200,
		   "count.sh: the unacknowledged last message is still readable");
	msgs = json_object_get(r.json, "messages");
	tap_ok(json_array_size(msgs) == 1 && jint(json_array_get(msgs, 0), "seq") == 50 &&
	       !strcmp(jstr(r.json, "state"), "closed"),
	       "count.sh: same closed batch again (%s)", r.body ? r.body : "");
	h_resp_free(&r);

	tap_is_int(h_poll(b, id, "after=50", &r), 200, "count.sh: poll acking 50 is 200");
	tap_ok(r.json && json_array_size(json_object_get(r.json, "messages")) == 0 &&
	       json_is_array(json_object_get(r.json, "messages")),
	       "count.sh: acking the last message gives an empty batch (%s)", r.body ? r.body : "");
	tap_is_str(jstr(r.json, "state"), "closed", "count.sh: that batch says closed");
	tap_is_int(jint(json_object_get(r.json, "close"), "code"), 1006,
		   "count.sh: with the same close code 1006");
	h_resp_free(&r);
	tap_is_int(h_poll(b, id, "after=50", &r), 410, "count.sh: the next poll is 410");
	tap_is_str(h_err(&r), "session_closed", "count.sh: error session_closed");
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "after count.sh: still serving route echo");
}

/* record.sh FILE: what was sent reaches the script exactly once, in order;
 * DELETE makes the script see end of input. */
static void group_record(struct h_bridge *b, const char *file)
{
	static const char *const plain[3] = { "alpha", "beta", "gamma" };
	struct h_resp r;
	char id[64], *text;
	size_t i;

	tap_is_int(h_create(b, "record", id, NULL), 201, "record.sh: session created");
	for (i = 0; i < 3; i++) {
		tap_is_int(h_send_text(b, id, plain[i], &r), 200, "record.sh: send '%s' is 200",
			   plain[i]);
		tap_ok(jint(r.json, "accepted") == 1 && !json_object_get(r.json, "send_seq"),
		       "record.sh: accepted 1, no send_seq for an unnumbered send (%s)",
		       r.body ? r.body : "");
		h_resp_free(&r);
	}
	tap_is_int(send_body(b, id, "text/plain", "delta", "X-Send-Seq: 1", &r), 200,
		   "record.sh: numbered send 1 is 200");
	tap_ok(jint(r.json, "accepted") == 1 && jint(r.json, "send_seq") == 1,
	       "record.sh: accepted 1, send_seq 1 (%s)", r.body ? r.body : "");
	h_resp_free(&r);
	tap_is_int(send_body(b, id, "text/plain", "delta", "X-Send-Seq: 1", &r), 200,
		   "record.sh: the retried send 1 is 200");
	tap_ok(json_is_integer(json_object_get(r.json, "accepted")) &&
	       jint(r.json, "accepted") == 0 && jint(r.json, "send_seq") == 1,
	       "record.sh: retry: accepted 0, send_seq 1 (%s)", r.body ? r.body : "");
	h_resp_free(&r);
	tap_is_int(send_body(b, id, "text/plain", "epsilon", "X-Send-Seq: 2", &r), 200,
		   "record.sh: numbered send 2 is 200");
	tap_ok(jint(r.json, "accepted") == 1 && jint(r.json, "send_seq") == 2,
	       "record.sh: accepted 1, send_seq 2 (%s)", r.body ? r.body : "");
	h_resp_free(&r);

	text = wait_file_lines(file, 5, WAIT_FILE_MS);
	free(text);
	h_sleep_ms(500);	/* room for a duplicate to show up */
	text = h_read_file(file);
	tap_is_str(text ? text : "(no file)", "alpha\nbeta\ngamma\ndelta\nepsilon\n",
		   "record.sh: the script got each message exactly once, in order");
	free(text);
	check_nothing_more(b, id, 0, "record.sh");

	tap_is_int(h_delete(b, id), 204, "record.sh: DELETE is 204");
	text = wait_file_lines(file, 6, WAIT_FILE_MS);
	tap_is_str(text ? text : "(no file)", "alpha\nbeta\ngamma\ndelta\nepsilon\nEOF\n",
		   "record.sh: the script saw end of input within %d ms (upstream closed)",
		   WAIT_FILE_MS);
	free(text);
	tap_is_int(h_poll(b, id, NULL, &r), 410, "record.sh: poll after DELETE is 410");
	tap_is_str(h_err(&r), "session_closed", "record.sh: error session_closed");
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "after record.sh: still serving route echo");
}

/* Two sessions on the same websocketd route: messages never cross, and
 * ending one leaves the other working. */
static void group_two_sessions(struct h_bridge *b)
{
	static const char *const want_a[2] = { "from A 1", "from A 2" };
	static const char *const want_b[4] = { "from B 1", "from B 2", "from B 3", "from B 4" };
	char a[64], bid[64];
	struct h_resp r;
	json_t *got;

	tap_is_int(h_create(b, "wsecho", a, NULL), 201, "two sessions: A created");
	tap_is_int(h_create(b, "wsecho", bid, NULL), 201, "two sessions: B created");
	tap_ok(strcmp(a, bid) != 0, "two sessions: distinct ids");
	tap_is_int(h_send_text(b, bid, want_b[0], NULL), 200, "two sessions: send B1");
	tap_is_int(h_send_text(b, a, want_a[0], NULL), 200, "two sessions: send A1");
	tap_is_int(h_send_text(b, bid, want_b[1], NULL), 200, "two sessions: send B2");
	tap_is_int(h_send_text(b, a, want_a[1], NULL), 200, "two sessions: send A2");
	tap_is_int(h_send_text(b, bid, want_b[2], NULL), 200, "two sessions: send B3");

	got = json_array();
	h_collect(b, a, 0, 2, COLLECT_MS, got);
	check_msgs(got, 1, want_a, 2, "two sessions: A");
	json_decref(got);
	got = json_array();
	h_collect(b, bid, 0, 3, COLLECT_MS, got);
	check_msgs(got, 1, want_b, 3, "two sessions: B");
	json_decref(got);
	check_nothing_more(b, a, 2, "two sessions: A");
	check_nothing_more(b, bid, 3, "two sessions: B");

	tap_is_int(h_delete(b, a), 204, "two sessions: DELETE A is 204");
	tap_is_int(h_send_text(b, bid, want_b[3], NULL), 200, "two sessions: send B4 after A ended");
	got = json_array();
	h_collect(b, bid, 3, 1, COLLECT_MS, got);
	check_msgs(got, 4, want_b + 3, 1, "two sessions: B after A ended");
	json_decref(got);
	tap_is_int(h_poll(b, a, NULL, &r), 410, "two sessions: A is 410 after DELETE");
	h_resp_free(&r);
	tap_is_int(h_delete(b, bid), 204, "two sessions: DELETE B is 204");
	tap_ok(h_still_serving(b, "echo"), "after two sessions: still serving route echo");
	tap_ok(h_still_serving(b, "wsecho"), "after two sessions: still serving route wsecho");
}

int main(void)
{
	char r_echo[96], r_wsecho[96], r_count[96], r_record[96], file[512];
	struct h_bridge b;
	int port;

	h_init();
	snprintf(file, sizeof(file), "%s/record.txt", h_tmpdir());

	if (!h_echo_start(&port, NULL))
		tap_bail("pollbridge-echo did not start");
	snprintf(r_echo, sizeof(r_echo), "--route=echo=ws://127.0.0.1:%d/", port);
	if (!h_websocketd_start(&port, "echo.sh", NULL))
		tap_bail("websocketd echo.sh did not start");
	snprintf(r_wsecho, sizeof(r_wsecho), "--route=wsecho=ws://127.0.0.1:%d/", port);
	if (!h_websocketd_start(&port, "count.sh", "50", NULL))
		tap_bail("websocketd count.sh did not start");
	snprintf(r_count, sizeof(r_count), "--route=count=ws://127.0.0.1:%d/", port);
	if (!h_websocketd_start(&port, "record.sh", file, NULL))
		tap_bail("websocketd record.sh did not start");
	snprintf(r_record, sizeof(r_record), "--route=record=ws://127.0.0.1:%d/", port);

	/* idle-timeout 5: the record group leaves its session untouched while
	 * it reads the file, and an idle close would fake the "EOF" line. */
	if (h_bridge_start(&b, r_echo, r_wsecho, r_count, r_record, "--idle-timeout", "5",
			   "--wait-max", "2", "--connect-timeout", "2", NULL))
		tap_bail("pollbridge did not start");
	tap_ok(h_still_serving(&b, "echo"), "serving route echo at start");

	group_echo(&b);
	group_count(&b);
	group_record(&b, file);
	group_two_sessions(&b);
	return tap_done();
}
