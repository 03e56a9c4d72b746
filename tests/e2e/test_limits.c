/*
 * test_limits.c: the limits an operator sets against greedy or broken
 * clients, each on a bridge of its own, with exact statuses and error JSON:
 * --max-sessions-per-client (429 too_many_client_sessions with Retry-After,
 * counted by the connecting address whatever X-Forwarded-For says, freed by
 * DELETE and by idle expiry, never taken by failed creates: 404, 502, 504,
 * 400) next to --max-sessions (503 too_many_sessions); --max-body-bytes
 * (413 payload_too_large at 101 of 100 bytes, with or without a
 * Content-Length, and a 10 MB Content-Length refused before its body is
 * read); --max-header-bytes (431, and every request at or under the limit
 * answered); --max-connections (a 6th connection gets no answer until one
 * of the 5 held ones closes); --connection-timeout (slowloris and idle
 * keep-alive connections closed, waiting long polls not cut); --queue-max
 * against an upstream that floods 200 messages (the upstream is paused,
 * nothing is dropped, RSS stays flat) and one that never reads (429
 * queue_full with Retry-After); --access-log (one line per request, session
 * ids by their first 6 characters only); --log-syslog; and the /metrics
 * counters for idle expiry and per-client refusals. After each group a
 * session created before it must still echo, and the bridge must still
 * serve. Raw sockets (optionally from 127.0.0.2, .3, ...: other client
 * addresses) are used where libcurl would hide what is checked.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

#define FLOOD_N		200	/* messages of the upstream's /burst */
#define QUEUE_MAX	5	/* --queue-max of the flood bridge */
#define STALL_MSG	(512 * 1024)
#define STALL_TRIES	400
#define UNKNOWN_ID	"AAAAAAAAAAAAAAAAAAAAAA"

static char echo_route[96];	/* --route=echo=ws://127.0.0.1:PORT/ */
static char stall_route[96];	/* --route=stall=... (websocketd, stall.sh) */

/* A session that lives through a group: its id and the highest seq seen. */
struct witness {
	char id[64];
	unsigned long long after;
	int n;			/* numbers its messages */
};

/* POST /v1/sessions {"route":route} from the client address src; on 201
 * the id goes to id (64 bytes). Returns the status; r is freed by the
 * caller. */
static long create_from(struct h_bridge *b, const char *src, const char *route, char *id,
			struct h_resp *r)
{
	char req[512], body[128];
	const char *sid;

	snprintf(body, sizeof(body), "{\"route\":\"%s\"}", route);
	snprintf(req, sizeof(req), "POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		 "Content-Type: application/json\r\nContent-Length: %zu\r\n"
		 "Connection: close\r\n\r\n%s", strlen(body), body);
	h_raw_request(b->port, src, req, strlen(req), r);
	sid = json_string_value(json_object_get(r->json, "session"));
	if (id)
		snprintf(id, 64, "%s", r->status == 201 && sid ? sid : "");
	return r->status;
}

/* ---- checks --------------------------------------------------------------- */

/* Check an error answer: the status, exactly {"error":code,"message":...},
 * and (retry) a Retry-After in whole seconds. Frees r. */
static void check_error(struct h_resp *r, long status, const char *code, int retry,
			const char *what)
{
	const char *ra = r->retry_after;

	tap_is_int(r->status, status, "%s: %ld", what, status);
	tap_is_str(h_err(r), code, "%s: error %s", what, code);
	tap_ok(json_object_size(r->json) == 2 &&
	       json_is_string(json_object_get(r->json, "message")),
	       "%s: the error JSON is {error, message} (%s)", what, r->body ? r->body : "");
	if (retry)
		tap_ok(ra[0] && strspn(ra, "0123456789") == strlen(ra) && atoi(ra) >= 1,
		       "%s: Retry-After in seconds (\"%s\")", what, ra);
	h_resp_free(r);
}

/* Create a session on route or bail out (the group needs it). */
static void must_create(struct h_bridge *b, const char *route, char *id)
{
	long st = h_create(b, route, id, NULL);

	if (st != 201)
		tap_bail("create on route %s answered %ld", route, st);
}

/* Create the group's witness session from client address src (NULL:
 * 127.0.0.1). */
static void witness_start(struct h_bridge *b, const char *src, struct witness *w)
{
	struct h_resp r;
	long st;

	memset(w, 0, sizeof(*w));
	st = create_from(b, src, "echo", w->id, &r);
	h_resp_free(&r);
	if (st != 201)
		tap_bail("witness session: create answered %ld", st);
}

/* 1 if the witness still echoes a fresh message; acknowledges what it saw. */
static int witness_echoes(struct h_bridge *b, struct witness *w)
{
	char text[64];
	json_t *got = json_array(), *m;
	const char *data;
	long st;
	int ok = 0;

	snprintf(text, sizeof(text), "witness-%d", ++w->n);
	st = h_send_text(b, w->id, text, NULL);
	if (st != 200) {
		tap_diag("witness %.6s: send answered %ld", w->id, st);
	} else if (h_collect(b, w->id, w->after, 1, 5000, got) == 1) {
		m = json_array_get(got, 0);
		data = json_string_value(json_object_get(m, "data"));
		ok = data && strcmp(data, text) == 0;
		w->after = (unsigned long long)json_integer_value(json_object_get(m, "seq"));
	}
	if (!ok)
		tap_diag("witness %.6s: \"%s\" did not come back", w->id, text);
	json_decref(got);
	return ok;
}

/* A short poll of the witness: activity that keeps it from idling out. */
static void witness_touch(struct h_bridge *b, struct witness *w)
{
	struct h_resp r;
	char query[64];

	snprintf(query, sizeof(query), "after=%llu", w->after);
	if (h_poll(b, w->id, query, &r) != 200)
		tap_diag("witness %.6s: poll answered %ld %s", w->id, r.status, h_err(&r));
	h_resp_free(&r);
}

/* The end of every group: the witness still echoes, the bridge still
 * serves; then the witness is deleted. */
static void group_end(struct h_bridge *b, struct witness *w, const char *group)
{
	tap_ok(witness_echoes(b, w), "%s: a session created before the group still echoes", group);
	tap_ok(h_still_serving(b, "echo"), "%s: still serving", group);
	tap_is_int(h_delete(b, w->id), 204, "%s: the witness is deleted", group);
}

/* POST a body of content type ct to a session's messages; r freed by the
 * caller. Returns the status. */
static long send_body(struct h_bridge *b, const char *id, const char *ct, const char *body,
		      size_t len, struct h_resp *r)
{
	char url[256];

	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages", b->base, id);
	h_http(r, "POST", url, ct, body, len, NULL);
	return r->status;
}

/* A malloc'd string of n copies of c. */
static char *filled(size_t n, char c)
{
	char *s = malloc(n + 1);

	if (!s)
		tap_bail("out of memory");
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* Number of messages of a poll answer, -1 if it has no messages array. */
static long nmsgs(const struct h_resp *r)
{
	json_t *m = json_object_get(r->json, "messages");

	return json_is_array(m) ? (long)json_array_size(m) : -1;
}

/* 1 if r is exactly {"messages":[],"state":"open"}. */
static int empty_open(const struct h_resp *r)
{
	const char *st = json_string_value(json_object_get(r->json, "state"));

	return r->status == 200 && nmsgs(r) == 0 && st && !strcmp(st, "open") &&
	       json_object_size(r->json) == 2;
}

/* ---- --max-sessions-per-client -------------------------------------------- */

/* Per-client session limit: refusals, DELETE, failed creates, idle expiry,
 * and the metrics that count them. */
static void check_per_client(void)
{
	struct h_bridge b;
	struct h_resp r;
	struct witness w;
	char refused_route[96], hole_route[96], url[128], a[64], c[64], d[2][64], e[2][64];
	const char *xff[] = { "X-Forwarded-For: 10.9.8.7", NULL };
	int hole_port, hole_fd, n429 = 0, i, expired = 0;
	double idle0, v;
	int64_t t0;

	hole_fd = h_blackhole_listen(&hole_port);
	if (hole_fd < 0)
		tap_bail("cannot make a listening socket that never accepts");
	snprintf(refused_route, sizeof(refused_route), "--route=refused=ws://127.0.0.1:%d/",
		 h_free_port());
	snprintf(hole_route, sizeof(hole_route), "--route=hole=ws://127.0.0.1:%d/", hole_port);
	if (h_bridge_start(&b, echo_route, refused_route, hole_route,
			   "--max-sessions-per-client", "2", "--idle-timeout", "2",
			   "--wait-max", "2", "--connect-timeout", "1", NULL))
		tap_bail("pollbridge --max-sessions-per-client 2 did not start");
	snprintf(url, sizeof(url), "%s/v1/sessions", b.base);
	witness_start(&b, "127.0.0.2", &w);

	tap_is_int(h_create(&b, "echo", a, NULL), 201, "per-client: 1st create from 127.0.0.1");
	tap_is_int(h_create(&b, "echo", c, NULL), 201, "per-client: 2nd create from 127.0.0.1");
	h_create(&b, "echo", NULL, &r);
	check_error(&r, 429, "too_many_client_sessions", 1, "per-client: 3rd create");
	n429++;
	h_http(&r, "POST", url, "application/json", "{\"route\":\"echo\"}", 16, xff);
	check_error(&r, 429, "too_many_client_sessions", 0,
		    "per-client: a 3rd create claiming X-Forwarded-For 10.9.8.7");
	n429++;
	/* another address has an allowance of its own */
	tap_is_int(create_from(&b, "127.0.0.3", "echo", e[0], &r), 201,
		   "per-client: 127.0.0.3 may still create");
	h_resp_free(&r);
	tap_is_int(h_delete(&b, e[0]), 204, "per-client: 127.0.0.3's session deleted");

	/* DELETE frees a slot, for one more session only */
	tap_is_int(h_delete(&b, a), 204, "per-client: DELETE one of the two");
	tap_is_int(h_create(&b, "echo", a, NULL), 201, "per-client: after the DELETE one more fits");
	h_create(&b, "echo", NULL, &r);
	check_error(&r, 429, "too_many_client_sessions", 1, "per-client: and only one");
	n429++;
	tap_is_int(h_delete(&b, a), 204, "per-client: delete (a)");
	tap_is_int(h_delete(&b, c), 204, "per-client: delete (c)");
	witness_touch(&b, &w);	/* --idle-timeout is 2 s */

	/* failed creates take no slot */
	for (i = 0; i < 3; i++) {
		h_create(&b, "nosuch", NULL, &r);
		check_error(&r, 404, "unknown_route", 0, "per-client: unknown route");
		h_create(&b, "refused", NULL, &r);
		check_error(&r, 502, "upstream_unreachable", 0, "per-client: refused upstream");
	}
	h_create(&b, "hole", NULL, &r);
	check_error(&r, 504, "upstream_timeout", 0, "per-client: upstream that never answers");
	h_http(&r, "POST", url, "application/x-www-form-urlencoded", "protocol=chat", 13, NULL);
	check_error(&r, 400, "bad_request", 0, "per-client: create without a route");
	witness_touch(&b, &w);
	tap_is_int(h_create(&b, "echo", d[0], NULL), 201,
		   "per-client: after 8 failed creates, the 1st create fits");
	tap_is_int(h_create(&b, "echo", d[1], NULL), 201, "per-client: and the 2nd");
	t0 = h_now_ms();
	h_create(&b, "echo", NULL, &r);
	check_error(&r, 429, "too_many_client_sessions", 1, "per-client: the 3rd does not");
	n429++;

	/* idle expiry frees the slots; the witness is kept busy meanwhile */
	idle0 = h_metric(&b, "pollbridge_sessions_ended_total{reason=\"idle\"}");
	tap_is_int(idle0, 0, "metrics: no idle expiry yet");
	while (h_now_ms() - t0 < 10000) {
		v = h_metric(&b, "pollbridge_sessions_ended_total{reason=\"idle\"}");
		if (v >= idle0 + 2) {
			expired = 1;
			break;
		}
		h_poll(&b, w.id, "wait=1", &r);	/* a waiting poll is activity */
		if (r.status != 200)
			tap_diag("per-client: witness poll answered %ld", r.status);
		h_resp_free(&r);
	}
	tap_ok(expired, "per-client: both idle sessions expired (%.1f s)",
	       (double)(h_now_ms() - t0) / 1000);
	tap_ok(h_now_ms() - t0 >= 1500, "per-client: not before the idle timeout");
	h_poll(&b, d[0], NULL, &r);
	check_error(&r, 410, "session_closed", 0, "per-client: an expired session");
	tap_is_int(h_create(&b, "echo", e[0], NULL), 201, "per-client: idle expiry freed a slot");
	tap_is_int(h_create(&b, "echo", e[1], NULL), 201, "per-client: and the other");
	h_create(&b, "echo", NULL, &r);
	check_error(&r, 429, "too_many_client_sessions", 1, "per-client: and no third");
	n429++;
	tap_is_int(h_metric(&b, "pollbridge_sessions_ended_total{reason=\"idle\"}"), idle0 + 2,
		   "metrics: sessions_ended_total{reason=\"idle\"} went up by 2");
	tap_is_int(h_metric(&b, "pollbridge_http_responses_total{endpoint=\"create\",code=\"429\"}"),
		   n429, "metrics: every per-client refusal counted as create 429");
	tap_is_int(h_delete(&b, e[0]), 204, "per-client: delete (e0)");
	tap_is_int(h_delete(&b, e[1]), 204, "per-client: delete (e1)");
	group_end(&b, &w, "per-client");
	h_stop(b.proc, SIGTERM, 5000);
	close(hole_fd);
}

/* --max-sessions next to --max-sessions-per-client. */
static void check_max_sessions(void)
{
	struct h_bridge b;
	struct h_resp r;
	struct witness w;
	char a[64], c[64];

	if (h_bridge_start(&b, echo_route, "--max-sessions", "2", "--max-sessions-per-client", "1",
			   NULL))
		tap_bail("pollbridge --max-sessions 2 did not start");
	witness_start(&b, "127.0.0.2", &w);
	create_from(&b, "127.0.0.2", "echo", NULL, &r);
	check_error(&r, 429, "too_many_client_sessions", 1, "max-sessions: 2nd from 127.0.0.2");
	tap_is_int(h_create(&b, "echo", a, NULL), 201, "max-sessions: 2nd session (127.0.0.1)");
	create_from(&b, "127.0.0.3", "echo", NULL, &r);
	check_error(&r, 503, "too_many_sessions", 1, "max-sessions: 3rd session (127.0.0.3)");
	tap_is_int(h_delete(&b, a), 204, "max-sessions: delete one");
	tap_is_int(create_from(&b, "127.0.0.3", "echo", c, &r), 201,
		   "max-sessions: then 127.0.0.3 fits");
	h_resp_free(&r);
	create_from(&b, "127.0.0.4", "echo", NULL, &r);
	check_error(&r, 503, "too_many_sessions", 1, "max-sessions: full again (127.0.0.4)");
	tap_is_int(h_metric(&b, "pollbridge_http_responses_total{endpoint=\"create\",code=\"503\"}"), 2,
		   "metrics: the two refusals counted as create 503");
	tap_is_int(h_delete(&b, c), 204, "max-sessions: delete (c)");
	group_end(&b, &w, "max-sessions");
	h_stop(b.proc, SIGTERM, 5000);
}

/* ---- --max-body-bytes -------------------------------------------------------- */

/* A chunked POST of len bytes of body to path; the answer goes to r. */
static long chunked_post(struct h_bridge *b, const char *path, const char *ct, const char *body,
			 size_t len, struct h_resp *r)
{
	size_t cap = len + 512;
	char *req = malloc(cap);
	int n;
	long st;

	if (!req)
		tap_bail("out of memory");
	n = snprintf(req, cap, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\n"
		     "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%zx\r\n", path, ct, len);
	memcpy(req + n, body, len);
	n += (int)len;
	n += snprintf(req + n, cap - (size_t)n, "\r\n0\r\n\r\n");
	st = h_raw_request(b->port, NULL, req, (size_t)n, r);
	free(req);
	return st;
}

/* Request bodies over --max-body-bytes 100, at it, and a huge
 * Content-Length with no body behind it. */
static void check_body_limit(void)
{
	struct h_bridge b;
	struct h_resp r;
	struct witness w;
	char id[64], path[128], url[128], req[512], json[128];
	char *b100 = filled(100, 'x'), *b101 = filled(101, 'y');
	json_t *got = json_array();
	const char *data;
	int fd, res;

	if (h_bridge_start(&b, echo_route, "--max-body-bytes", "100", NULL))
		tap_bail("pollbridge --max-body-bytes 100 did not start");
	witness_start(&b, NULL, &w);
	must_create(&b, "echo", id);
	snprintf(path, sizeof(path), "/v1/sessions/%s/messages", id);

	send_body(&b, id, "text/plain", b101, 101, &r);
	check_error(&r, 413, "payload_too_large", 0, "body: 101-byte text body");
	/* a JSON batch of exactly 101 bytes: {"messages":[{"data":"..."}]} */
	snprintf(json, sizeof(json), "{\"messages\":[{\"data\":\"%.*s\"}]}", 101 - 26, b101);
	tap_is_int(strlen(json), 101, "body: the JSON body is 101 bytes");
	send_body(&b, id, "application/json", json, strlen(json), &r);
	check_error(&r, 413, "payload_too_large", 0, "body: 101-byte JSON body");
	chunked_post(&b, path, "text/plain", b101, 101, &r);
	check_error(&r, 413, "payload_too_large", 0, "body: 101 bytes chunked (no Content-Length)");
	snprintf(url, sizeof(url), "%s/v1/sessions", b.base);
	snprintf(json, sizeof(json), "{\"route\":\"echo\",\"protocols\":[\"%.*s\"]}", 101 - 33,
		 b101);
	tap_is_int(strlen(json), 101, "body: the create body is 101 bytes");
	h_http(&r, "POST", url, "application/json", json, strlen(json), NULL);
	check_error(&r, 413, "payload_too_large", 0, "body: 101-byte create body");

	send_body(&b, id, "text/plain", b100, 100, &r);
	tap_is_int(r.status, 200, "body: exactly 100 bytes is accepted");
	tap_is_int(json_integer_value(json_object_get(r.json, "accepted")), 1,
		   "body: accepted 1 (%s)", r.body ? r.body : "");
	h_resp_free(&r);
	b100[0] = 'z';
	chunked_post(&b, path, "text/plain", b100, 100, &r);
	tap_is_int(r.status, 200, "body: exactly 100 bytes chunked is accepted (%s)",
		   r.body ? r.body : "");
	h_resp_free(&r);
	tap_is_int(h_collect(&b, id, 0, 2, 5000, got), 2, "body: both echoed");
	data = json_string_value(json_object_get(json_array_get(got, 0), "data"));
	b100[0] = 'x';
	tap_ok(data && strcmp(data, b100) == 0 &&
	       json_integer_value(json_object_get(json_array_get(got, 0), "seq")) == 1,
	       "body: seq 1 is the 100-byte message (nothing refused was forwarded)");
	data = json_string_value(json_object_get(json_array_get(got, 1), "data"));
	b100[0] = 'z';
	tap_ok(data && strcmp(data, b100) == 0, "body: seq 2 is the chunked one");
	json_decref(got);
	h_poll(&b, id, "after=2&wait=1", &r);
	tap_ok(empty_open(&r), "body: nothing else reached the upstream (%s)", r.body ? r.body : "");
	h_resp_free(&r);

	/* 10 MB announced, 3 bytes sent: answered at once, not after a body */
	fd = h_raw_connect(b.port, NULL);
	snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		 "Content-Type: text/plain\r\nContent-Length: 10485760\r\n\r\nabc", path);
	if (fd < 0 || h_raw_write(fd, req, strlen(req)))
		tap_bail("raw connection to the bridge failed");
	res = h_raw_read(fd, H_RAW_MS, &r);
	tap_is_int(res, H_RAW_ANSWER, "body: a 10 MB Content-Length is answered without its body");
	tap_ok(r.seconds < 3, "body: within 3 s (%.2f s)", r.seconds);
	check_error(&r, 413, "payload_too_large", 0, "body: 10 MB Content-Length");
	res = h_raw_read(fd, 3000, &r);
	tap_is_int(res, H_RAW_CLOSED,
		   "body: then the connection is closed (the body is not awaited)");
	h_resp_free(&r);
	close(fd);

	tap_is_int(h_delete(&b, id), 204, "body: delete");
	group_end(&b, &w, "body");
	h_stop(b.proc, SIGTERM, 5000);
	free(b100);
	free(b101);
}

/* ---- --max-header-bytes ------------------------------------------------------- */

/* A GET of path with one X-Pad header making the request exactly total
 * bytes (request line and headers); malloc'd. */
static char *padded_get(const char *path, size_t total)
{
	char head[256], *req;
	size_t hl, pad;

	hl = (size_t)snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ",
			      path);
	pad = total - hl - 4;	/* "\r\n\r\n" */
	req = malloc(total + 1);
	if (!req)
		tap_bail("out of memory");
	memcpy(req, head, hl);
	memset(req + hl, 'p', pad);
	memcpy(req + hl + pad, "\r\n\r\n", 5);
	return req;
}

/* padded_get() with lines extra header lines ("X-L00: v" ...) before the
 * pad, still exactly total bytes; malloc'd. */
static char *lined_get(const char *path, size_t total, int lines)
{
	char head[2048], *req;
	size_t hl, pad;
	int i;

	hl = (size_t)snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", path);
	for (i = 0; i < lines && hl < sizeof(head) - 16; i++)
		hl += (size_t)snprintf(head + hl, sizeof(head) - hl, "X-L%02d: v\r\n", i);
	hl += (size_t)snprintf(head + hl, sizeof(head) - hl, "X-Pad: ");
	pad = total - hl - 4;	/* "\r\n\r\n" */
	req = malloc(total + 1);
	if (!req)
		tap_bail("out of memory");
	memcpy(req, head, hl);
	memset(req + hl, 'p', pad);
	memcpy(req + hl + pad, "\r\n\r\n", 5);
	return req;
}

/* Oversized headers get 431 (libmicrohttpd's own answer, not JSON); every
 * request within the limit is served. */
static void check_header_limit(void)
{
	struct h_bridge b;
	struct h_resp r;
	struct witness w;
	char url[256], hdr[8300], unanswered[512] = "", refused[512] = "";
	char *big = filled(8192, 'h'), *req, *longurl;
	const char *hdrs[] = { hdr, NULL };
	size_t total;
	long st;

	if (h_bridge_start(&b, echo_route, "--max-header-bytes", "4096", NULL))
		tap_bail("pollbridge --max-header-bytes 4096 did not start");
	witness_start(&b, NULL, &w);

	snprintf(hdr, sizeof(hdr), "X-Pad: %s", big);
	snprintf(url, sizeof(url), "%s/healthz", b.base);
	h_http(&r, "GET", url, NULL, NULL, 0, hdrs);
	tap_is_int(r.status, 431, "headers: an 8 KiB header on /healthz: 431");
	h_resp_free(&r);
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages", b.base, w.id);
	h_http(&r, "GET", url, NULL, NULL, 0, hdrs);
	tap_is_int(r.status, 431, "headers: an 8 KiB header on a poll: 431");
	h_resp_free(&r);
	hdr[7 + 2048] = '\0';
	h_http(&r, "GET", url, NULL, NULL, 0, hdrs);
	tap_ok(empty_open(&r), "headers: a 2 KiB header is served (%ld %s)", r.status,
	       r.body ? r.body : "");
	h_resp_free(&r);

	/* Request line and headers of 3072 .. 4080 bytes: all within 4096. */
	for (total = 3072; total <= 4080; total += 48) {
		req = padded_get("/healthz", total);
		st = h_raw_request(b.port, NULL, req, total, &r);
		h_resp_free(&r);
		free(req);
		if (st == 0 && strlen(unanswered) < sizeof(unanswered) - 16)
			snprintf(unanswered + strlen(unanswered),
				 sizeof(unanswered) - strlen(unanswered), " %zu", total);
		if (st != 200 && strlen(refused) < sizeof(refused) - 24)
			snprintf(refused + strlen(refused), sizeof(refused) - strlen(refused),
				 " %zu:%ld", total, st);
	}
	tap_ok(!unanswered[0], "headers: every request of 3072..4080 bytes gets an HTTP answer%s%s",
	       unanswered[0] ? "; none for sizes" : "", unanswered);
	tap_ok(!refused[0], "headers: every request of 3072..4080 bytes (under 4096) is served%s%s",
	       refused[0] ? "; size:status" : "", refused);

	/* docs/API.md: a request of exactly --max-header-bytes may carry about
	 * 60 header lines (libmicrohttpd's records share the buffer). */
	snprintf(url, sizeof(url), "/v1/sessions/%s/messages", w.id);
	req = lined_get(url, 4096, 50);
	st = h_raw_request(b.port, NULL, req, 4096, &r);
	tap_is_int(st, 200, "headers: a 4096-byte poll with 52 header lines is served");
	h_resp_free(&r);
	free(req);

	longurl = malloc(8300);
	if (!longurl)
		tap_bail("out of memory");
	snprintf(longurl, 8300, "%s/healthz?pad=%s", b.base, big);
	h_http(&r, "GET", longurl, NULL, NULL, 0, NULL);
	tap_ok(r.status == 431 || r.status == 414,
	       "headers: an 8 KiB request line is refused (%ld)", r.status);
	h_resp_free(&r);
	free(longurl);
	group_end(&b, &w, "headers");
	h_stop(b.proc, SIGTERM, 5000);
	free(big);
}

/* ---- --max-connections ----------------------------------------------------------- */

/* GET /healthz on an open keep-alive connection; the status, 0 if none. */
static long keepalive_get(int fd, int timeout_ms)
{
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	struct h_resp r = { 0 };
	long st = 0;

	if (h_raw_write(fd, req, sizeof(req) - 1) == 0 &&
	    h_raw_read(fd, timeout_ms, &r) == H_RAW_ANSWER)
		st = r.status;
	h_resp_free(&r);
	return st;
}

/* Five held connections fill --max-connections 5; a sixth gets nothing
 * until one of them closes. */
static void check_max_connections(void)
{
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	struct h_bridge b;
	struct h_resp r;
	struct witness w;
	int fds[5], fd6, i, ok = 1, res = H_RAW_CLOSED;

	if (h_bridge_start(&b, echo_route, "--max-connections", "5", NULL))
		tap_bail("pollbridge --max-connections 5 did not start");
	witness_start(&b, NULL, &w);
	for (i = 0; i < 5; i++) {
		fds[i] = h_raw_connect(b.port, NULL);
		if (fds[i] < 0 || keepalive_get(fds[i], H_RAW_MS) != 200) {
			tap_diag("connections: held connection %d was not served", i + 1);
			ok = 0;
		}
	}
	tap_ok(ok, "connections: 5 keep-alive connections served and held open");
	fd6 = h_raw_connect(b.port, NULL);
	if (fd6 >= 0 && h_raw_write(fd6, req, sizeof(req) - 1) == 0) {
		res = h_raw_read(fd6, 1500, &r);
		h_resp_free(&r);
	}
	tap_ok(res != H_RAW_ANSWER, "connections: a 6th connection gets no answer (%s)",
	       fd6 < 0 ? "refused" : res == H_RAW_CLOSED ? "closed" :
	       res == H_RAW_TIMEOUT ? "left waiting" : "answered");
	if (fd6 >= 0)
		close(fd6);
	close(fds[0]);
	/* raw, so a bridge that never answers costs H_RAW_MS, not curl's 40 s */
	h_raw_request(b.port, NULL, req, sizeof(req) - 1, &r);
	tap_is_int(r.status, 200,
		   "connections: once one of the 5 closes, a new connection is served within %d s",
		   H_RAW_MS / 1000);
	h_resp_free(&r);
	tap_is_int(keepalive_get(fds[1], H_RAW_MS), 200,
		   "connections: the held keep-alive connections still serve");
	for (i = 1; i < 5; i++)
		close(fds[i]);
	group_end(&b, &w, "connections");
	h_stop(b.proc, SIGTERM, 5000);
}

/* ---- --connection-timeout ------------------------------------------------------------ */

/* Slow or idle connections are closed after --connection-timeout 2;
 * waiting long polls are not idle. */
static void check_connection_timeout(void)
{
	struct h_bridge b;
	struct h_resp r;
	struct witness w;
	char req[256];
	const char *data;
	int fd, res;
	int64_t t0;

	if (h_bridge_start(&b, echo_route, "--connection-timeout", "2", "--wait-max", "3", NULL))
		tap_bail("pollbridge --connection-timeout 2 did not start");
	witness_start(&b, NULL, &w);

	/* slowloris: half a request line, then nothing */
	fd = h_raw_connect(b.port, NULL);
	if (fd < 0 || h_raw_write(fd, "GET /heal", 9))
		tap_bail("raw connection to the bridge failed");
	res = h_raw_read(fd, 8000, &r);
	tap_is_int(res, H_RAW_CLOSED, "timeout: half a request line: closed without an answer");
	tap_ok(r.seconds >= 1 && r.seconds < 6, "timeout: after about 2 s (%.2f s)", r.seconds);
	h_resp_free(&r);
	close(fd);

	/* an idle keep-alive connection */
	fd = h_raw_connect(b.port, NULL);
	tap_is_int(fd >= 0 ? keepalive_get(fd, H_RAW_MS) : 0, 200, "timeout: a keep-alive request");
	res = h_raw_read(fd, 8000, &r);
	tap_is_int(res, H_RAW_CLOSED, "timeout: the idle keep-alive connection is then closed");
	tap_ok(r.seconds >= 1 && r.seconds < 6, "timeout: after about 2 s (%.2f s)", r.seconds);
	h_resp_free(&r);
	if (fd >= 0)
		close(fd);

	/* long polls that wait longer than the connection timeout */
	h_poll(&b, w.id, "after=0&wait=3", &r);
	tap_ok(empty_open(&r), "timeout: a 3 s long poll is answered, not cut (%ld %s)", r.status,
	       r.body ? r.body : "");
	tap_ok(r.seconds >= 2.5, "timeout: it waited its 3 s (%.2f s)", r.seconds);
	h_resp_free(&r);
	fd = h_raw_connect(b.port, NULL);
	snprintf(req, sizeof(req), "GET /v1/sessions/%s/messages?after=0&wait=3 HTTP/1.1\r\n"
		 "Host: 127.0.0.1\r\n\r\n", w.id);
	if (fd < 0 || h_raw_write(fd, req, strlen(req)))
		tap_bail("raw connection to the bridge failed");
	t0 = h_now_ms();
	h_sleep_ms(2500);
	tap_is_int(h_send_text(&b, w.id, "late", NULL), 200, "timeout: a send 2.5 s into a poll");
	res = h_raw_read(fd, H_RAW_MS, &r);
	data = json_string_value(json_object_get(json_array_get(json_object_get(r.json, "messages"),
							       0), "data"));
	tap_ok(res == H_RAW_ANSWER && r.status == 200 && data && !strcmp(data, "late"),
	       "timeout: the poll waiting 2.5 s gets the message (%ld %s)", r.status,
	       r.body ? r.body : "");
	tap_ok(h_now_ms() - t0 >= 2400, "timeout: it had waited past the connection timeout");
	w.after = (unsigned long long)json_integer_value(
		json_object_get(json_array_get(json_object_get(r.json, "messages"), 0), "seq"));
	h_resp_free(&r);
	close(fd);
	group_end(&b, &w, "timeout");
	h_stop(b.proc, SIGTERM, 5000);
}

/* ---- --queue-max --------------------------------------------------------------------- */

/* An upstream flooding a client that does not poll is paused; a slow
 * poller still gets every message, in order. */
static void check_flood(struct h_bridge *b)
{
	struct h_resp r;
	char id[64], query[96], want[24];
	unsigned long long cursor = 0;
	long n, stored, big_batch = 0, bad = 0, polls = 0;
	long rss0, rss1, rss2;
	json_t *m;
	size_t i;
	const char *data;
	int64_t deadline;

	must_create(b, "echo", id);
	rss0 = h_rss_kib(b->proc->pid);
	tap_is_int(h_send_text(b, id, "/burst 200", NULL), 200, "flood: /burst 200 sent");
	h_sleep_ms(1500);
	rss1 = h_rss_kib(b->proc->pid);
	h_poll(b, id, "after=0", &r);
	stored = nmsgs(&r);
	h_resp_free(&r);
	tap_diag("flood: %ld of %d messages buffered while the client does not poll", stored,
		 FLOOD_N);
	/* With Redis the appends are asynchronous: what the upstream sent
	 * before the first answer (up to the 64 messages that may wait for
	 * the store, README) is stored too before the pause takes hold. */
	tap_ok(stored >= 1 && stored <= (h_store_shared() ? QUEUE_MAX + 64 : QUEUE_MAX),
	       "flood: the upstream is paused near --queue-max %d (%ld buffered)", QUEUE_MAX,
	       stored);
	tap_ok(rss0 > 0 && rss1 > 0 && rss1 - rss0 < 50 * 1024,
	       "flood: RSS stays bounded (%ld -> %ld KiB)", rss0, rss1);

	deadline = h_now_ms() + 30000;
	while (cursor < FLOOD_N && h_now_ms() < deadline) {
		snprintf(query, sizeof(query), "after=%llu&max=3&wait=1", cursor);
		if (h_poll(b, id, query, &r) != 200) {
			tap_diag("flood: poll after %llu answered %ld %s", cursor, r.status, h_err(&r));
			h_resp_free(&r);
			break;
		}
		polls++;
		n = nmsgs(&r);
		if (n > 3)
			big_batch++;
		json_array_foreach(json_object_get(r.json, "messages"), i, m) {
			snprintf(want, sizeof(want), "%llu", cursor + 1);
			data = json_string_value(json_object_get(m, "data"));
			if ((unsigned long long)json_integer_value(json_object_get(m, "seq")) !=
			    cursor + 1 || !data || strcmp(data, want)) {
				if (bad++ < 3)
					tap_diag("flood: after %llu got %s", cursor,
						 r.body ? r.body : "");
				break;
			}
			cursor++;
		}
		h_resp_free(&r);
		h_sleep_ms(20);
	}
	rss2 = h_rss_kib(b->proc->pid);
	tap_is_int(cursor, FLOOD_N, "flood: all %d messages arrived (%ld polls)", FLOOD_N, polls);
	tap_is_int(bad, 0, "flood: seqs 1..%d in order, none missing, data intact", FLOOD_N);
	tap_is_int(big_batch, 0, "flood: no batch above max=3");
	tap_ok(rss2 > 0 && rss2 - rss0 < 50 * 1024, "flood: RSS after draining (%ld KiB)", rss2);
	h_poll(b, id, "after=200&wait=1", &r);
	tap_ok(empty_open(&r), "flood: nothing after seq 200 (%s)", r.body ? r.body : "");
	h_resp_free(&r);
	tap_is_int(h_send_text(b, id, "after-flood", NULL), 200, "flood: the session still sends");
	h_poll(b, id, "after=200&wait=2", &r);
	data = json_string_value(json_object_get(json_array_get(json_object_get(r.json, "messages"),
							       0), "data"));
	tap_ok(data && !strcmp(data, "after-flood") &&
	       json_integer_value(json_object_get(json_array_get(json_object_get(r.json, "messages"),
								 0), "seq")) == FLOOD_N + 1,
	       "flood: and echoes as seq 201 (%s)", r.body ? r.body : "");
	h_resp_free(&r);
	tap_is_int(h_delete(b, id), 204, "flood: delete");
}

/* Sends to a session whose upstream never reads: 429 queue_full. */
static void check_queue_full(struct h_bridge *b)
{
	struct h_resp r;
	char id[64], *big = filled(STALL_MSG, 's');
	int i, accepted = 0;
	int64_t deadline = h_now_ms() + 25000;

	must_create(b, "stall", id);
	memset(&r, 0, sizeof(r));
	for (i = 0; i < STALL_TRIES && h_now_ms() < deadline; i++) {
		send_body(b, id, "text/plain", big, STALL_MSG, &r);
		if (r.status != 200)
			break;
		accepted++;
		h_resp_free(&r);
	}
	tap_diag("queue: %d sends of %d KiB accepted before %ld", accepted, STALL_MSG / 1024,
		 r.status);
	tap_ok(accepted >= QUEUE_MAX, "queue: at least --queue-max sends fit first (%d)", accepted);
	check_error(&r, 429, "queue_full", 1, "queue: send to a full queue");
	h_poll(b, id, "after=0", &r);
	tap_ok(empty_open(&r), "queue: the session is still open (%ld %s)", r.status,
	       r.body ? r.body : "");
	h_resp_free(&r);
	tap_is_int(h_delete(b, id), 204, "queue: delete");
	free(big);
}

/* --queue-max 5 both ways. */
static void check_queue_max(void)
{
	struct h_bridge b;
	struct witness w;

	if (h_bridge_start(&b, echo_route, stall_route, "--queue-max", "5", "--wait-max", "2",
			   NULL))
		tap_bail("pollbridge --queue-max 5 did not start");
	witness_start(&b, NULL, &w);
	check_flood(&b);
	check_queue_full(&b);
	group_end(&b, &w, "queue");
	h_stop(b.proc, SIGTERM, 5000);
}

/* ---- logs ------------------------------------------------------------------------------ */

/* Number of lines of text that hold every one of the words (space-
 * separated tokens) w1, w2, w3 (NULL: any). */
static int lines_with(const char *text, const char *w1, const char *w2, const char *w3)
{
	const char *want[3] = { w1, w2, w3 };
	const char *line, *eol, *p, *q;
	int n = 0, k, found;

	for (line = text; line && *line; line = eol ? eol + 1 : NULL) {
		eol = strchr(line, '\n');
		found = 1;
		for (k = 0; k < 3 && found; k++) {
			if (!want[k])
				continue;
			found = 0;
			for (p = line; p < (eol ? eol : line + strlen(line)) && !found; p = q + 1) {
				q = p + strcspn(p, " \n");
				found = (size_t)(q - p) == strlen(want[k]) &&
					!strncmp(p, want[k], (size_t)(q - p));
				if (!*q || *q == '\n')
					break;
			}
		}
		n += found;
	}
	return n;
}

/* Number of lines in s. */
static int count_lines(const char *s)
{
	int n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

/* --access-log: one line per request, sessions by 6 characters only. */
static void check_access_log(void)
{
	struct h_bridge b;
	struct h_resp r;
	struct witness w;
	char path[512], arg[600], id[64], id6[8], w6[8], url[128];
	char *all, *mine;
	size_t off;
	int fails = tap_failures();

	snprintf(path, sizeof(path), "%s/access.log", h_tmpdir());
	snprintf(arg, sizeof(arg), "--access-log=%s", path);
	if (h_bridge_start(&b, echo_route, arg, NULL))
		tap_bail("pollbridge --access-log did not start");
	witness_start(&b, NULL, &w);
	all = h_read_file(path);
	off = all ? strlen(all) : 0;
	free(all);

	must_create(&b, "echo", id);
	tap_is_int(h_send_text(&b, id, "hi", NULL), 200, "access log: send");
	h_poll(&b, id, "after=0", &r);
	tap_is_int(r.status, 200, "access log: poll");
	h_resp_free(&r);
	h_poll(&b, UNKNOWN_ID, NULL, &r);
	tap_is_int(r.status, 404, "access log: poll of an unknown session");
	h_resp_free(&r);
	snprintf(url, sizeof(url), "%s/v1/nope", b.base);
	h_http(&r, "GET", url, NULL, NULL, 0, NULL);
	tap_is_int(r.status, 404, "access log: unknown path");
	h_resp_free(&r);

	all = h_read_file(path);
	mine = all && strlen(all) >= off ? all + off : "";
	snprintf(id6, sizeof(id6), "%.6s", id);
	snprintf(w6, sizeof(w6), "%.6s", w.id);
	tap_is_int(count_lines(mine), 5, "access log: one line per request");
	tap_is_int(lines_with(mine, "create", id6, "201"), 1, "access log: create %s 201", id6);
	tap_is_int(lines_with(mine, "send", id6, "200"), 1, "access log: send %s 200", id6);
	tap_is_int(lines_with(mine, "poll", id6, "200"), 1, "access log: poll %s 200", id6);
	tap_is_int(lines_with(mine, "poll", "AAAAAA", "404"), 1,
		   "access log: poll AAAAAA 404 (unknown session)");
	tap_is_int(lines_with(mine, "404", NULL, NULL), 2, "access log: two 404 lines");
	tap_is_int(lines_with(all ? all : "", "create", w6, "201"), 1,
		   "access log: the witness's create, by %s", w6);
	tap_ok(all && !strstr(all, id) && !strstr(all, w.id) && !strstr(all, UNKNOWN_ID),
	       "access log: no full session id anywhere in the file");
	if (tap_failures() > fails)
		tap_diag("access log:\n%s", all ? all : "(none)");
	free(all);
	tap_is_int(h_delete(&b, id), 204, "access log: delete");
	group_end(&b, &w, "access log");
	all = h_read_file(path);
	tap_ok(all && !strstr(all, id) && !strstr(all, w.id), "access log: still no full id");
	free(all);
	h_stop(b.proc, SIGTERM, 5000);
}

/* --log-syslog: the bridge starts and serves; its logs leave stderr. */
static void check_syslog(void)
{
	struct h_bridge b;
	struct witness w;
	char *log;

	if (h_bridge_start(&b, echo_route, "--log-syslog", NULL)) {
		tap_ok(0, "syslog: pollbridge --log-syslog starts");
		return;
	}
	tap_ok(1, "syslog: pollbridge --log-syslog starts");
	witness_start(&b, NULL, &w);
	group_end(&b, &w, "syslog");
	log = h_read_file(b.proc->log_path);
	tap_ok(log && strstr(log, "listening on "), "syslog: the ready line is still on stderr");
	tap_ok(log && !strstr(log, " info "), "syslog: info lines are not on stderr");
	free(log);
	tap_is_int(h_stop(b.proc, SIGTERM, 5000), 0, "syslog: SIGTERM exits 0");
}

int main(void)
{
	int echo_port, stall_port;

	h_init();
	if (!h_echo_start(&echo_port, NULL))
		tap_bail("pollbridge-echo did not start");
	if (!h_websocketd_start(&stall_port, "stall.sh", NULL))
		tap_bail("websocketd with stall.sh did not start");
	snprintf(echo_route, sizeof(echo_route), "--route=echo=ws://127.0.0.1:%d/", echo_port);
	snprintf(stall_route, sizeof(stall_route), "--route=stall=ws://127.0.0.1:%d/", stall_port);

	check_per_client();
	check_max_sessions();
	check_body_limit();
	check_header_limit();
	check_max_connections();
	check_connection_timeout();
	check_queue_max();
	check_access_log();
	check_syslog();
	return tap_done();
}
