/*
 * test_close.c: how sessions end, against the real binary and the bundled
 * echo upstream. Upstream close (a waiting long poll woken with the closed
 * batch and its code and reason; pending messages: earlier batches "open",
 * the one carrying the last messages "closed"; acknowledging the last
 * message ends the session, then 410 for polls, sends and DELETE), an
 * upstream that vanishes without a close frame (1006), an upstream message
 * over --max-message-bytes (1009 to the client and the upstream), DELETE (204 with an empty
 * body, close 1000 upstream, a waiting poll answered 410, then 410 for
 * everything; a closed but unacknowledged session still deletable; unknown
 * ids 404), close frames, codes and bad UTF-8 exactly as a raw upstream
 * (tests/upstreams/raw_ws.py) sends them (RFC 6455 section 7.4: invalid
 * codes 1002 both ways, an empty close 1005, bad UTF-8 1007 both ways),
 * a rude raw upstream (frames split at every byte, 200 frames in one TCP
 * segment, frames in the handshake's own segment), the idle timeout (upstream gets 1001, 410 then 404 once the
 * tombstone expires; waiting polls and sends keep a session alive), and
 * drain on SIGTERM (the waiting poll gets closed 1001, upstream gets 1001,
 * no new sessions, exit 0). The echo servers' --record files tell what
 * reached the upstream; every group that leaves a bridge running ends with
 * the still-serving check.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

/* A well-formed id (22 base64url characters) that was never handed out. */
#define UNKNOWN_ID "AAAAAAAAAAAAAAAAAAAAAA"

/* What a forked child does after its delay (see later()). */
struct act {
	struct h_bridge *b;
	const char *id;
	const char *text;	/* send this text; NULL: DELETE the session */
	pid_t kill_pid;		/* if not 0: send SIGTERM to it instead */
};

/* The "state" of a poll answer, or "" if none. */
static const char *state_of(const struct h_resp *r)
{
	const char *s = json_string_value(json_object_get(r->json, "state"));

	return s ? s : "";
}

/* The close code of a poll answer, or -1 if it has none. */
static long long close_code(const struct h_resp *r)
{
	json_t *c = json_object_get(json_object_get(r->json, "close"), "code");

	return json_is_integer(c) ? (long long)json_integer_value(c) : -1;
}

/* The close reason of a poll answer, or "(none)" if it has none. */
static const char *close_reason(const struct h_resp *r)
{
	const char *s = json_string_value(json_object_get(json_object_get(r->json, "close"),
							  "reason"));

	return s ? s : "(none)";
}

/* Number of messages in a poll answer, or -1 if it has no such array. */
static long nmsgs(const struct h_resp *r)
{
	json_t *m = json_object_get(r->json, "messages");

	return json_is_array(m) ? (long)json_array_size(m) : -1;
}

/* The seq of message i of a poll answer, or -1. */
static long long msg_seq(const struct h_resp *r, size_t i)
{
	json_t *s = json_object_get(json_array_get(json_object_get(r->json, "messages"), i), "seq");

	return json_is_integer(s) ? (long long)json_integer_value(s) : -1;
}

/* The data of message i of a poll answer, or "(none)". */
static const char *msg_data(const struct h_resp *r, size_t i)
{
	const char *s = json_string_value(json_object_get(
		json_array_get(json_object_get(r->json, "messages"), i), "data"));

	return s ? s : "(none)";
}

/* Poll with "after=<after>" plus extra (may be ""); returns the status. */
static long poll_after(struct h_bridge *b, const char *id, unsigned after, const char *extra,
		       struct h_resp *r)
{
	char q[96];

	snprintf(q, sizeof(q), "after=%u%s", after, extra);
	return h_poll(b, id, q, r);
}

/* Short-poll with after until the answer says closed or timeout_ms passes;
 * r holds the last answer (to be freed). Returns its status. */
static long wait_closed(struct h_bridge *b, const char *id, unsigned after, int timeout_ms,
			struct h_resp *r)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	for (;;) {
		if (poll_after(b, id, after, "", r) != 200 || !strcmp(state_of(r), "closed") ||
		    h_now_ms() > deadline)
			return r->status;
		h_resp_free(r);
		h_sleep_ms(50);
	}
}

/* POST a JSON body to the session's messages; returns the status. */
static long send_json(struct h_bridge *b, const char *id, const char *json, struct h_resp *r)
{
	char url[256];

	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages", b->base, id);
	h_http(r, "POST", url, "application/json", json, strlen(json), NULL);
	return r->status;
}

/* DELETE the session, keeping the answer in r; returns the status. */
static long delete_resp(struct h_bridge *b, const char *id, struct h_resp *r)
{
	char url[256];

	snprintf(url, sizeof(url), "%s/v1/sessions/%s", b->base, id);
	h_http(r, "DELETE", url, NULL, NULL, 0, NULL);
	return r->status;
}

/* Lines of the record file at path that start with prefix. */
static int record_count(const char *path, const char *prefix)
{
	char *s = h_read_file(path), *p;
	size_t n = strlen(prefix);
	int count = 0;

	for (p = s; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
		count += !strncmp(p, prefix, n);
	free(s);
	return count;
}

/* Wait up to timeout_ms for at least want such lines; returns the count. */
static int wait_record(const char *path, const char *prefix, int want, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	int n;

	while ((n = record_count(path, prefix)) < want && h_now_ms() < deadline)
		h_sleep_ms(50);
	return n;
}

/* Fork a child that does what a says after delay_ms and exits 0 if it worked:
 * a send answered 200, a DELETE answered 204 with an empty body, a kill
 * delivered. The parent's request runs meanwhile; reap() the child. */
static pid_t later(int delay_ms, const struct act *a)
{
	struct h_resp r;
	pid_t pid;
	int ok;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		tap_bail("fork: cannot");
	if (pid)
		return pid;
	h_sleep_ms(delay_ms);
	if (a->kill_pid)
		_exit(kill(a->kill_pid, SIGTERM) ? 1 : 0);
	if (a->text) {
		ok = h_send_text(a->b, a->id, a->text, NULL) == 200;
	} else {
		ok = delete_resp(a->b, a->id, &r) == 204 && r.len == 0;
		h_resp_free(&r);
	}
	_exit(ok ? 0 : 1);
}

/* Wait for a child from later(); its exit code, or -1. */
static int reap(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

/* Path of the record file named name in the temp dir, written into buf. */
static const char *rec_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s.rec", h_tmpdir(), name);
	return buf;
}

/* Start an echo server recording to path; bails out if it cannot. */
static int echo_rec(const char *path)
{
	int port;

	if (!h_echo_start(&port, "--record", path, NULL))
		tap_bail("pollbridge-echo --record %s did not start", path);
	return port;
}

/* Create a session on route, send text and see it echoed as seq 1. */
static void open_with_one(struct h_bridge *b, const char *route, char *id, const char *text)
{
	struct h_resp r;

	tap_is_int(h_create(b, route, id, NULL), 201, "%s: session created", route);
	tap_is_int(h_send_text(b, id, text, NULL), 200, "%s: send '%s'", route, text);
	tap_is_int(h_poll(b, id, "after=0&wait=3", &r), 200, "%s: poll for the echo", route);
	tap_ok(nmsgs(&r) == 1 && msg_seq(&r, 0) == 1 && !strcmp(msg_data(&r, 0), text),
	       "%s: echo is seq 1 '%s' (%s)", route, text, r.body);
	h_resp_free(&r);
}

/* Upstream closes: woken long poll, pending messages, ack, then 410. */
static void check_upstream_close(struct h_bridge *b)
{
	struct act a = { b, NULL, "/close 4000 bye now", 0 };
	struct h_resp r;
	char id[64];
	pid_t kid;
	int i;

	/* A long poll waiting when the upstream closes is woken by it. */
	open_with_one(b, "echo", id, "hello");
	a.id = id;
	kid = later(500, &a);
	tap_is_int(poll_after(b, id, 1, "&wait=5", &r), 200, "close: waiting poll answered 200");
	tap_ok(r.seconds >= 0.4 && r.seconds < 4.0,
	       "close: woken by the close, not the wait's end (%.2f s)", r.seconds);
	tap_is_int(nmsgs(&r), 0, "close: no messages in it");
	tap_is_str(state_of(&r), "closed", "close: state closed");
	tap_is_int(close_code(&r), 4000, "close: code 4000");
	tap_is_str(close_reason(&r), "bye now", "close: reason 'bye now'");
	h_resp_free(&r);
	tap_is_int(reap(kid), 0, "close: the /close send was accepted");
	/* That poll was woken by the close: its client might be gone, so its
	 * answer does not end the session; the next poll with the same
	 * cursor gets the closed batch again, and that one ends it. */
	tap_is_int(poll_after(b, id, 1, "", &r), 200, "close: a repeated poll is answered again");
	tap_is_str(state_of(&r), "closed", "close: with the closed batch");
	tap_is_int(close_code(&r), 4000, "close: and the same code");
	h_resp_free(&r);
	tap_is_int(poll_after(b, id, 1, "", &r), 410, "close: then the session has ended (410)");
	tap_is_str(h_err(&r), "session_closed", "close: session_closed");
	h_resp_free(&r);
	tap_is_int(delete_resp(b, id, &r), 410, "close: DELETE after the end is 410");
	tap_is_str(h_err(&r), "session_closed", "close: DELETE says session_closed");
	h_resp_free(&r);

	/* Messages pending when the close arrives: one request, both commands. */
	tap_is_int(h_create(b, "echo", id, NULL), 201, "pending: session created");
	tap_is_int(send_json(b, id, "{\"messages\":[{\"type\":\"text\",\"data\":\"/burst 3\"},"
			     "{\"type\":\"text\",\"data\":\"/close 4001 x\"}]}", &r), 200,
		   "pending: JSON batch /burst 3 + /close 4001 x sent");
	tap_is_int(json_integer_value(json_object_get(r.json, "accepted")), 2,
		   "pending: accepted 2");
	h_resp_free(&r);
	tap_is_int(wait_closed(b, id, 0, 5000, &r), 200, "pending: poll after=0 answered");
	tap_is_str(state_of(&r), "closed", "pending: the upstream close arrived");
	tap_ok(nmsgs(&r) == 3 && msg_seq(&r, 0) == 1 && msg_seq(&r, 2) == 3 &&
	       !strcmp(msg_data(&r, 0), "1") && !strcmp(msg_data(&r, 1), "2") &&
	       !strcmp(msg_data(&r, 2), "3"), "pending: all three burst messages kept (%s)", r.body);
	tap_is_int(close_code(&r), 4001, "pending: code 4001 with the last messages");
	h_resp_free(&r);
	tap_is_int(h_send_text(b, id, "too late", &r), 410,
		   "pending: a send after the upstream closed is 410");
	tap_is_str(h_err(&r), "session_closed", "pending: session_closed");
	h_resp_free(&r);
	for (i = 0; i < 2; i++) {
		tap_is_int(poll_after(b, id, (unsigned)i, "&max=1", &r), 200,
			   "pending: after=%d&max=1", i);
		tap_ok(nmsgs(&r) == 1 && msg_seq(&r, 0) == i + 1, "pending: carries seq %d (%s)",
		       i + 1, r.body);
		tap_is_str(state_of(&r), "open", "pending: an earlier batch says open");
		tap_ok(!json_object_get(r.json, "close"), "pending: and has no close object");
		h_resp_free(&r);
	}
	for (i = 0; i < 2; i++) {
		tap_is_int(poll_after(b, id, 2, "", &r), 200, "pending: after=2 (try %d)", i + 1);
		tap_ok(nmsgs(&r) == 1 && msg_seq(&r, 0) == 3 && !strcmp(msg_data(&r, 0), "3"),
		       "pending: the last message, seq 3 (%s)", r.body);
		tap_is_str(state_of(&r), "closed", "pending: its batch says closed");
		tap_is_int(close_code(&r), 4001, "pending: code 4001");
		tap_is_str(close_reason(&r), "x", "pending: reason 'x'");
		h_resp_free(&r);
	}
	tap_is_int(poll_after(b, id, 3, "", &r), 200, "pending: after=3 acknowledges the last");
	tap_ok(nmsgs(&r) == 0, "pending: the empty batch (%s)", r.body);
	tap_is_str(state_of(&r), "closed", "pending: closed");
	tap_is_int(close_code(&r), 4001, "pending: code 4001 again");
	tap_is_str(close_reason(&r), "x", "pending: reason 'x' again");
	h_resp_free(&r);
	tap_is_int(poll_after(b, id, 3, "", &r), 410, "pending: the next poll is 410");
	tap_is_str(h_err(&r), "session_closed", "pending: session_closed");
	h_resp_free(&r);
	tap_is_int(h_send_text(b, id, "x", &r), 410, "pending: send after the end is 410");
	h_resp_free(&r);
	tap_is_int(delete_resp(b, id, &r), 410, "pending: DELETE then is 410");
	tap_is_str(h_err(&r), "session_closed", "pending: DELETE says session_closed");
	h_resp_free(&r);

	/* The upstream vanishes without a close frame: 1006. */
	open_with_one(b, "echo", id, "hi");
	tap_is_int(h_send_text(b, id, "/drop", NULL), 200, "drop: /drop sent");
	tap_is_int(wait_closed(b, id, 1, 5000, &r), 200, "drop: poll answered");
	tap_is_str(state_of(&r), "closed", "drop: state closed");
	tap_is_int(close_code(&r), 1006, "drop: close code 1006");
	tap_is_int(nmsgs(&r), 0, "drop: no messages");
	h_resp_free(&r);
	tap_is_int(poll_after(b, id, 1, "", &r), 410, "drop: then 410");
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "upstream close: still serving");
}

/* One case of check_raw_close(): what the raw upstream sends, what the
 * client must see, and what the upstream must get back. */
struct raw_case {
	const char *tag;
	const char *cmd;        /* "send" (hex bytes) or "cut" */
	const char *hex;
	long long code;         /* the client's close code */
	const char *reason;     /* the client's close reason, NULL: not checked */
	const char *back;       /* the upstream's record line after the tag */
};

/* Start tests/upstreams/raw_ws.py recording to rec; its port, or 0. */
static int raw_start(const char *rec)
{
	const char *dir = getenv("PB_UPSTREAMS") ? getenv("PB_UPSTREAMS") : "tests/upstreams";
	char path[512], rest[32];
	char *argv[] = { "python3", path, "--record", (char *)rec, NULL };

	snprintf(path, sizeof(path), "%s/raw_ws.py", dir);
	if (!h_spawn(argv, "listening on ", 10000, rest, sizeof(rest)))
		return 0;
	return atoi(rest);
}

/* Close codes, close frames and bad UTF-8 exactly as a raw upstream sends
 * them (RFC 6455 section 7.4): valid codes pass through, codes that may not
 * be sent are a protocol error (1002 both ways), an empty close is 1005,
 * bad UTF-8 is 1007 both ways, a vanished upstream 1006. */
static void check_raw_close(struct h_bridge *b, const char *rec)
{
	static const struct raw_case cases[] = {
		{ "c65535", "send", "8802ffff", 1002, "invalid close code", "close 1002" },
		{ "c0", "send", "88020000", 1002, NULL, "close 1002" },
		{ "c999", "send", "880203e7", 1002, NULL, "close 1002" },
		{ "c1004", "send", "880203ec", 1002, NULL, "close 1002" },
		{ "c1005", "send", "880203ed", 1002, NULL, "close 1002" },
		{ "c1006", "send", "880203ee", 1002, NULL, "close 1002" },
		{ "c1015", "send", "880203f7", 1002, NULL, "close 1002" },
		{ "c1016", "send", "880203f8", 1002, NULL, "close 1002" },
		{ "c2999", "send", "88020bb7", 1002, NULL, "close 1002" },
		{ "c5000", "send", "88021388", 1002, "invalid close code", "close 1002" },
		{ "c1011", "send", "880203f3", 1011, "", "close 1011" },
		/* IANA registered 1012-1014 after RFC 6455; libwebsockets 4.1
		 * turns them into 1002 before the bridge sees them. */
		{ "c1012", "send", "880203f4", 1002, NULL, "close 1002" },
		{ "c1014", "send", "880203f6", 1002, NULL, "close 1002" },
		{ "c3000", "send", "88020bb8", 3000, "", "close 3000" },
		{ "c4999", "send", "880513876f6b21", 4999, "ok!", "close 4999 ok!" },
		{ "c1000", "send", "880503e8627965", 1000, "bye", "close 1000 bye" },
		{ "empty", "send", "8800", 1005, "", "close none" },
		{ "onebyte", "send", "880103", 1002, "close frame of one byte", "close 1002" },
		{ "badtext", "send", "8102c328", 1007, "text message not UTF-8", "close 1007" },
		{ "badfrag", "send", "0101ce8001ff", 1007, "text message not UTF-8", "close 1007" },
		{ "badreason", "send", "880303e8ff", 1007, "close reason not UTF-8", "close 1007" },
		{ "cut", "cut", NULL, 1006, "", "cut" },
	};
	struct h_resp r;
	char id[64], cmd[128], line[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct raw_case *c = &cases[i];

		if (c->hex)
			snprintf(cmd, sizeof(cmd), "%s %s %s", c->cmd, c->tag, c->hex);
		else
			snprintf(cmd, sizeof(cmd), "%s %s", c->cmd, c->tag);
		if (h_create(b, "raw", id, NULL) != 201 || h_send_text(b, id, cmd, NULL) != 200) {
			tap_ok(0, "raw %s: session created and '%s' sent", c->tag, cmd);
			continue;
		}
		tap_is_int(wait_closed(b, id, 0, 5000, &r), 200, "raw %s: poll answered", c->tag);
		tap_ok(!strcmp(state_of(&r), "closed") && nmsgs(&r) == 0 &&
		       close_code(&r) == c->code && (!c->reason ||
						       !strcmp(close_reason(&r), c->reason)),
		       "raw %s: closed %lld '%s' (%s)", c->tag, c->code,
		       c->reason ? c->reason : "*", r.body);
		h_resp_free(&r);
		snprintf(line, sizeof(line), "%s %s", c->tag, c->back);
		tap_is_int(wait_record(rec, line, 1, 3000), 1, "raw %s: the upstream got '%s'",
			   c->tag, c->back);
	}

	/* A text message in two fragments that split a character is fine. */
	tap_is_int(h_create(b, "raw", id, NULL), 201, "raw frag: session created");
	tap_is_int(h_send_text(b, id, "send frag 0101ce8001bb880503e8627965", NULL), 200,
		   "raw frag: sent");
	tap_is_int(wait_closed(b, id, 0, 5000, &r), 200, "raw frag: poll answered");
	tap_ok(nmsgs(&r) == 1 && !strcmp(msg_data(&r, 0), "\xce\xbb") && close_code(&r) == 1000,
	       "raw frag: one message U+03BB, then closed 1000 (%s)", r.body);
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "raw close codes: still serving");
}

/* Append the hex of an unmasked server frame (FIN, opcode op) of data[0..n). */
static void hex_frame(char *out, size_t cap, int fin, int op, const char *data, size_t n)
{
	size_t at = strlen(out);

	if (n < 126)
		at += (size_t)snprintf(out + at, cap - at, "%02x%02x", (fin ? 0x80 : 0) | op,
				       (unsigned)n);
	else
		at += (size_t)snprintf(out + at, cap - at, "%02x7e%04x", (fin ? 0x80 : 0) | op,
				       (unsigned)n);
	for (size_t i = 0; i < n && at + 3 < cap; i++)
		at += (size_t)snprintf(out + at, cap - at, "%02x", (unsigned char)data[i]);
}

/* Every message of a session until it is closed (polling on from after=0):
 * their data joined by ',' into out, the last answer in r (to be freed).
 * Returns the number of messages, -1 if a poll failed or it never closed. */
static long all_until_closed(struct h_bridge *b, const char *id, char *out, size_t cap,
			     struct h_resp *r)
{
	int64_t deadline = h_now_ms() + 8000;
	unsigned after = 0;
	long n = 0;

	out[0] = '\0';
	for (;;) {
		long k;

		if (poll_after(b, id, after, "", r) != 200)
			return -1;
		k = nmsgs(r);
		for (long i = 0; i < k; i++) {
			size_t at = strlen(out);

			snprintf(out + at, cap - at, "%s%s", n ? "," : "", msg_data(r, (size_t)i));
			n++;
			after = (unsigned)msg_seq(r, (size_t)i);
		}
		if (!strcmp(state_of(r), "closed") && k == 0)
			return n;
		if (h_now_ms() > deadline)
			return -1;
		h_resp_free(r);
		if (k == 0)
			h_sleep_ms(50);
	}
}

/* A rude upstream: frames split at every byte (one TCP segment each), 200
 * frames in one segment, and frames in the handshake's own segment (route
 * rawe: its 101 response carries "e1", "e2" and a close 1000 "bye"). */
static void check_raw_rude(struct h_bridge *b)
{
	static char hex[8192], cmd[8300], got[4096], want[4096];
	char x300[301], id[64], num[8];
	struct h_resp r;

	memset(x300, 'x', 300);
	x300[300] = '\0';
	hex[0] = '\0';
	hex_frame(hex, sizeof(hex), 1, 0x1, "abc", 3);
	hex_frame(hex, sizeof(hex), 0, 0x1, "d\xce", 2);    /* a character split */
	hex_frame(hex, sizeof(hex), 1, 0x9, "p", 1);         /* a ping in between */
	hex_frame(hex, sizeof(hex), 1, 0x0, "\xbb" "f", 2);
	hex_frame(hex, sizeof(hex), 1, 0x1, x300, 300);      /* a 16-bit length */
	hex_frame(hex, sizeof(hex), 1, 0x8, "\x0f\xa0" "end", 5);
	snprintf(cmd, sizeof(cmd), "split bytewise %s", hex);
	tap_is_int(h_create(b, "raw", id, NULL), 201, "rude bytewise: session created");
	tap_is_int(h_send_text(b, id, cmd, NULL), 200, "rude bytewise: sent");
	snprintf(want, sizeof(want), "abc,d\xce\xbb""f,%s", x300);
	tap_is_int(all_until_closed(b, id, got, sizeof(got), &r), 3,
		   "rude bytewise: three messages");
	tap_is_str(got, want, "rude bytewise: abc, d\u03bbf and 300 x");
	tap_ok(close_code(&r) == 4000 && !strcmp(close_reason(&r), "end"),
	       "rude bytewise: then closed 4000 'end' (%s)", r.body);
	h_resp_free(&r);

	hex[0] = '\0';
	want[0] = '\0';
	for (int i = 1; i <= 200; i++) {
		snprintf(num, sizeof(num), "%d", i);
		hex_frame(hex, sizeof(hex), 1, 0x1, num, strlen(num));
		snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%s", i > 1 ? "," : "",
			 num);
	}
	hex_frame(hex, sizeof(hex), 1, 0x8, "\x03\xe8", 2);
	snprintf(cmd, sizeof(cmd), "send many %s", hex);
	tap_is_int(h_create(b, "raw", id, NULL), 201, "rude many: session created");
	tap_is_int(h_send_text(b, id, cmd, NULL), 200, "rude many: sent");
	tap_is_int(all_until_closed(b, id, got, sizeof(got), &r), 200,
		   "rude many: 200 frames of one segment are 200 messages");
	tap_is_str(got, want, "rude many: 1..200 in order");
	tap_is_int(close_code(&r), 1000, "rude many: then closed 1000");
	h_resp_free(&r);

	tap_is_int(h_create(b, "rawe", id, NULL), 201, "rude eager: session created");
	tap_is_int(all_until_closed(b, id, got, sizeof(got), &r), 2,
		   "rude eager: two messages from the handshake's segment");
	tap_is_str(got, "e1,e2", "rude eager: e1, e2");
	tap_ok(close_code(&r) == 1000 && !strcmp(close_reason(&r), "bye"),
	       "rude eager: then closed 1000 'bye' (%s)", r.body);
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "rude upstream: still serving");
}

/* DELETE: 204, upstream close 1000, waiting poll 410, then 410, and 404. */
static void check_delete(struct h_bridge *b, const char *rec)
{
	struct act a = { b, NULL, NULL, 0 };
	struct h_resp r;
	char id[64];
	pid_t kid;

	open_with_one(b, "del", id, "x1");
	tap_is_int(delete_resp(b, id, &r), 204, "delete: 204");
	tap_ok(r.len == 0, "delete: empty body (%zu bytes)", r.len);
	h_resp_free(&r);
	tap_is_int(wait_record(rec, "disconnect", 1, 3000), 1, "delete: upstream disconnected");
	tap_is_int(record_count(rec, "close 1000"), 1, "delete: upstream got close 1000 first");
	tap_is_int(poll_after(b, id, 1, "", &r), 410, "delete: poll is 410");
	tap_is_str(h_err(&r), "session_closed", "delete: session_closed");
	h_resp_free(&r);
	tap_is_int(h_send_text(b, id, "after", &r), 410, "delete: send is 410");
	tap_is_str(h_err(&r), "session_closed", "delete: send says session_closed");
	h_resp_free(&r);
	tap_is_int(delete_resp(b, id, &r), 410, "delete: a second DELETE is 410");
	tap_is_str(h_err(&r), "session_closed", "delete: second DELETE says session_closed");
	h_resp_free(&r);

	/* A long poll waiting when the session is deleted. */
	open_with_one(b, "del", id, "x2");
	a.id = id;
	kid = later(500, &a);
	tap_is_int(poll_after(b, id, 1, "&wait=5", &r), 410, "delete: the waiting poll is 410");
	tap_is_str(h_err(&r), "session_closed", "delete: waiting poll says session_closed");
	tap_ok(r.seconds >= 0.4 && r.seconds < 4.0, "delete: answered at the DELETE (%.2f s)",
	       r.seconds);
	h_resp_free(&r);
	tap_is_int(reap(kid), 0, "delete: the concurrent DELETE was 204 with an empty body");
	tap_is_int(wait_record(rec, "disconnect", 2, 3000), 2, "delete: that upstream disconnected");
	tap_is_int(record_count(rec, "close 1000"), 2, "delete: and got close 1000 too");

	/* The upstream closed, its messages unacknowledged: not ended yet. */
	tap_is_int(h_create(b, "del", id, NULL), 201, "delete: third session created");
	tap_is_int(send_json(b, id, "{\"messages\":[{\"data\":\"/burst 2\"},"
			     "{\"data\":\"/close 4002 y\"}]}", &r), 200,
		   "delete: /burst 2 + /close 4002 y sent");
	h_resp_free(&r);
	tap_is_int(wait_closed(b, id, 0, 5000, &r), 200, "delete: poll answered");
	tap_is_str(state_of(&r), "closed", "delete: upstream closed");
	tap_is_int(nmsgs(&r), 2, "delete: two messages unacknowledged");
	h_resp_free(&r);
	tap_is_int(delete_resp(b, id, &r), 204, "delete: closed but unacknowledged: 204");
	h_resp_free(&r);
	tap_is_int(poll_after(b, id, 0, "", &r), 410, "delete: then polls are 410");
	h_resp_free(&r);

	tap_is_int(delete_resp(b, UNKNOWN_ID, &r), 404, "delete: unknown id is 404");
	tap_is_str(h_err(&r), "unknown_session", "delete: unknown_session");
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "delete: still serving");
}

/* An upstream message over --max-message-bytes 100 closes with 1009. */
static void check_too_big(struct h_bridge *b, const char *rec)
{
	struct h_resp r;
	char id[64], hundred[101];

	memset(hundred, 'x', 100);
	hundred[100] = '\0';
	tap_is_int(h_create(b, "big", id, NULL), 201, "big: session created");
	tap_is_int(h_send_text(b, id, "/big 100", NULL), 200, "big: /big 100 sent");
	tap_is_int(h_poll(b, id, "after=0&wait=3", &r), 200, "big: poll");
	tap_ok(nmsgs(&r) == 1 && !strcmp(msg_data(&r, 0), hundred),
	       "big: a message of exactly the limit is delivered (%.60s...)", r.body);
	tap_is_str(state_of(&r), "open", "big: still open");
	h_resp_free(&r);
	tap_is_int(h_send_text(b, id, "/big 200", NULL), 200, "big: /big 200 sent");
	tap_is_int(wait_closed(b, id, 1, 5000, &r), 200, "big: poll answered");
	tap_is_str(state_of(&r), "closed", "big: closed by the oversized message");
	tap_is_int(close_code(&r), 1009, "big: close code 1009");
	tap_is_int(nmsgs(&r), 0, "big: the oversized message is not delivered");
	h_resp_free(&r);
	tap_is_int(wait_record(rec, "disconnect", 1, 3000), 1, "big: upstream disconnected");
	tap_is_int(record_count(rec, "close 1009"), 1, "big: upstream got close 1009 first");
	tap_is_int(poll_after(b, id, 1, "", &r), 410, "big: then 410");
	h_resp_free(&r);
	tap_ok(h_still_serving(b, "echo"), "big: still serving");

	/* Over the limit in the middle of a frame, with the rest of it already
	 * read by libwebsockets (larger than its receive buffer): the daemon
	 * must close the session, not write past that buffer. */
	tap_is_int(h_create(b, "big", id, NULL), 201, "big: another session");
	tap_is_int(h_send_text(b, id, "/big 12000", NULL), 200, "big: /big 12000 sent");
	tap_is_int(wait_closed(b, id, 0, 5000, &r), 200, "big: 12000 bytes: poll answered");
	tap_is_int(close_code(&r), 1009, "big: 12000 bytes: close code 1009");
	h_resp_free(&r);
	tap_ok(h_alive(b->proc) && h_still_serving(b, "echo"), "big: 12000 bytes: still serving");
}

/* --idle-timeout 1: idle sessions end (1001, 410, then 404); polls and
 * sends keep a session alive. */
static void check_idle(struct h_bridge *b, const char *rec)
{
	struct h_resp r;
	char id[64], err[64];
	json_t *got;
	int64_t t0, t;
	long last = 0;
	int i, ok;

	tap_is_int(h_create(b, "idle", id, &r), 201, "idle: session created");
	t0 = h_now_ms();
	tap_is_int(json_integer_value(json_object_get(r.json, "idle_timeout")), 1,
		   "idle: idle_timeout 1 in the create answer");
	h_resp_free(&r);
	/* Polling would be activity: watch the upstream's side instead. */
	tap_is_int(wait_record(rec, "disconnect", 1, 6000), 1, "idle: upstream disconnected");
	t = h_now_ms() - t0;
	tap_ok(t >= 900, "idle: not before the timeout (%lld ms)", (long long)t);
	tap_is_int(h_poll(b, id, "after=0", &r), 410, "idle: poll after it is 410");
	tap_is_str(h_err(&r), "session_closed", "idle: session_closed");
	h_resp_free(&r);
	tap_is_int(record_count(rec, "close 1001"), 1, "idle: upstream got close 1001");
	t0 = h_now_ms();
	err[0] = '\0';
	while (h_now_ms() - t0 < 4000) {
		last = h_poll(b, id, "after=0", &r);
		snprintf(err, sizeof(err), "%s", h_err(&r));
		h_resp_free(&r);
		if (last != 410)
			break;
		h_sleep_ms(200);
	}
	tap_is_int(last, 404, "idle: the tombstone expires: 410 until 404 (%lld ms)",
		   (long long)(h_now_ms() - t0));
	tap_is_str(err, "unknown_session", "idle: then unknown_session");

	/* Back-to-back long polls keep a session alive past the timeout. */
	tap_is_int(h_create(b, "idle", id, NULL), 201, "keepalive: session created");
	t0 = h_now_ms();
	ok = 1;
	for (i = 0; h_now_ms() - t0 < 4000; i++) {
		h_poll(b, id, "after=0&wait=3", &r);
		if (r.status != 200 || strcmp(state_of(&r), "open") || nmsgs(&r) != 0 ||
		    r.seconds < 2.0) {
			tap_diag("keepalive poll %d: %ld after %.2f s: %s", i, r.status, r.seconds,
				 r.body);
			ok = 0;
		}
		h_resp_free(&r);
		if (!ok)
			break;
	}
	tap_ok(ok && i >= 2, "keepalive: %d long polls of 3 s each, all open and empty", i);
	/* Sends every 0.5 s count as activity too. */
	ok = 1;
	for (i = 0; i < 5; i++) {
		h_sleep_ms(500);
		if (h_send_text(b, id, "tick", NULL) != 200)
			ok = 0;
	}
	tap_ok(ok, "keepalive: five sends 0.5 s apart all accepted");
	got = json_array();
	tap_is_int(h_collect(b, id, 0, 5, 5000, got), 5, "keepalive: the five echoes");
	json_decref(got);
	tap_is_int(h_poll(b, id, "after=5", &r), 200, "keepalive: session still there");
	tap_is_str(state_of(&r), "open", "keepalive: still open");
	h_resp_free(&r);
	tap_is_int(record_count(rec, "disconnect"), 1, "keepalive: its upstream never closed");
	tap_is_int(h_delete(b, id), 204, "keepalive: DELETE 204");
	tap_ok(h_still_serving(b, "echo"), "idle: still serving");
}

/* SIGTERM while a poll waits: closed 1001 (memory store) or handed over
 * (shared store), upstream 1001, exit 0. */
static void check_drain(struct h_bridge *b, const char *rec)
{
	struct act a = { b, NULL, NULL, b->proc->pid };
	struct h_resp r;
	char id[64], *log;
	pid_t kid;
	long st;

	open_with_one(b, "drain", id, "d");
	kid = later(500, &a);
	tap_is_int(poll_after(b, id, 1, "&wait=5", &r), 200, "drain: waiting poll answered");
	tap_ok(r.seconds >= 0.4 && r.seconds < 4.0, "drain: at the SIGTERM (%.2f s)", r.seconds);
	if (h_store_shared()) {
		/* Shared store: the session is handed over, not closed; the
		 * poll is answered empty so the client polls again elsewhere. */
		tap_is_str(state_of(&r), "open", "drain (shared store): state open");
		tap_is_int(nmsgs(&r), 0, "drain (shared store): empty batch");
		tap_ok(r.json && !json_object_get(r.json, "close"), "drain (shared store): no close");
	} else {
		tap_is_str(state_of(&r), "closed", "drain: state closed");
		tap_is_int(close_code(&r), 1001, "drain: close code 1001");
		tap_is_str(close_reason(&r), "instance draining", "drain: reason 'instance draining'");
	}
	h_resp_free(&r);
	tap_is_int(reap(kid), 0, "drain: SIGTERM delivered");
	st = h_create(b, "echo", NULL, &r);
	tap_ok(st == 0 || (st == 503 && !strcmp(h_err(&r), "draining")),
	       "drain: a create during drain is refused (%ld %s)", st, h_err(&r));
	tap_ok(r.seconds < 5.0, "drain: without hanging (%.2f s)", r.seconds);
	h_resp_free(&r);
	tap_is_int(h_wait_exit(b->proc, 6000), 0, "drain: exit 0 within 6 s");
	tap_is_int(wait_record(rec, "disconnect", 1, 3000), 1, "drain: upstream disconnected");
	tap_is_int(record_count(rec, "close 1001"), 1, "drain: upstream got close 1001 first");
	log = h_read_file(b->proc->log_path);
	tap_ok(log && strstr(log, "open -> closed"), "log has an 'open -> closed' transition");
	free(log);
}

int main(void)
{
	struct h_bridge b1, b2, b3;
	char del_rec[512], big_rec[512], idle_rec[512], drain_rec[512], raw_rec[512];
	char r_echo[96], r_del[96], r_drain[96], r_big[96], r_idle[96], r_raw[96], r_rawe[160];
	int echo_port, raw_port;

	h_init();
	if (!h_echo_start(&echo_port, NULL))
		tap_bail("pollbridge-echo did not start");
	snprintf(r_echo, sizeof(r_echo), "--route=echo=ws://127.0.0.1:%d/", echo_port);
	snprintf(r_del, sizeof(r_del), "--route=del=ws://127.0.0.1:%d/",
		 echo_rec(rec_path(del_rec, sizeof(del_rec), "del")));
	snprintf(r_drain, sizeof(r_drain), "--route=drain=ws://127.0.0.1:%d/",
		 echo_rec(rec_path(drain_rec, sizeof(drain_rec), "drain")));
	snprintf(r_big, sizeof(r_big), "--route=big=ws://127.0.0.1:%d/",
		 echo_rec(rec_path(big_rec, sizeof(big_rec), "big")));
	snprintf(r_idle, sizeof(r_idle), "--route=idle=ws://127.0.0.1:%d/",
		 echo_rec(rec_path(idle_rec, sizeof(idle_rec), "idle")));

	raw_port = raw_start(rec_path(raw_rec, sizeof(raw_rec), "raw"));
	if (!raw_port)
		tap_bail("tests/upstreams/raw_ws.py did not start (python3 missing?)");
	snprintf(r_raw, sizeof(r_raw), "--route=raw=ws://127.0.0.1:%d/", raw_port);
	/* The 101 response followed by "e1", "e2" and close 1000 "bye". */
	snprintf(r_rawe, sizeof(r_rawe), "--route=rawe=ws://127.0.0.1:%d/eager/"
		 "81026531" "81026532" "880503e8627965", raw_port);

	if (h_bridge_start(&b1, r_echo, r_del, r_drain, r_raw, r_rawe, "--wait-max", "5",
			   "--connect-timeout", "2", NULL))
		tap_bail("pollbridge did not start");
	check_upstream_close(&b1);
	check_raw_close(&b1, raw_rec);
	check_raw_rude(&b1);
	check_delete(&b1, del_rec);

	if (h_bridge_start(&b2, r_echo, r_big, "--max-message-bytes", "100", "--wait-max", "3",
			   NULL))
		tap_bail("pollbridge --max-message-bytes 100 did not start");
	check_too_big(&b2, big_rec);
	h_stop(b2.proc, SIGTERM, 6000);

	if (h_bridge_start(&b3, r_echo, r_idle, "--idle-timeout", "1", "--wait-max", "3", NULL))
		tap_bail("pollbridge --idle-timeout 1 did not start");
	check_idle(&b3, idle_rec);
	h_stop(b3.proc, SIGTERM, 6000);

	check_drain(&b1, drain_rec);
	return tap_done();
}
