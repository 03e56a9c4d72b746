/*
 * test_sse.c: Server-Sent Events, JSONP and CORS, end to end against the
 * real binary and the bundled echo upstream.
 *
 * Streams (GET /v1/sessions/<id>/events) are read incrementally through a
 * libcurl multi handle whose write callback splits the body into SSE lines
 * and events, so a test can read a few events, do other requests, and read
 * on. Covered: the content type and headers, the leading "retry: 2000";
 * one event per message with "id: <seq>", "event: text|binary" and one data
 * line holding exactly the JSON object a poll returns; multi-line, empty and
 * SSE-lookalike messages intact in one data line; the cursor (Last-Event-ID,
 * else ?after=, else 0): a reconnect with Last-Event-ID: 3 after 5 events
 * gives 4, 5 and then new ones, never 1-3 and no gap, ?after= the same, the
 * header winning over ?after=, a stale cursor below freed messages, cursors
 * beyond the last seq and malformed ones (400); the stream does not
 * acknowledge (a poll with after=0 still returns everything) and a newer
 * poll or stream ends it, also while it is busy writing a backlog into a
 * socket the client reads slowly (and never the newer one); the heartbeat
 * comment ":" every --sse-heartbeat seconds, and an open stream keeps its
 * session alive past --idle-timeout;
 * the close event (no id, the upstream's code and reason) ending the stream;
 * SIGTERM while a stream is open (memory store: close event 1001; shared
 * store: the stream just ends); a retried numbered send (X-Send-Seq or
 * JSON "seq") reaches the stream once.
 *
 * JSONP (--jsonp): the exact wrapping (an empty comment, then
 * NAME(<json>);) as application/javascript, errors wrapped with status 200, U+2028/U+2029
 * escaped, valid and invalid callback names (plain 400 JSON), and any
 * callback without --jsonp refused. CORS (--cors-origin): the echoed origin
 * with credentials and exposed headers on 201/200/204/4xx answers and on
 * the event stream, nothing for unlisted or absent origins, Vary: Origin
 * exactly when origins are configured, preflights (204 with the allowed
 * methods and headers), and --cors-origin '*' echoing any origin. After
 * every group of bad input the bridge must still serve.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "e2e/harness.h"
#include "tap.h"

/* A well-formed id (22 base64url characters) that was never handed out. */
#define UNKNOWN_ID	"AAAAAAAAAAAAAAAAAAAAAA"
#define GOOD_ORIGIN	"http://good.example"
#define OTHER_ORIGIN	"http://other.example:8080"
#define EVIL_ORIGIN	"http://evil.example"
#define ANY_ORIGIN	"http://anything.test:1234"
#define JSON_UTF8	"application/json; charset=utf-8"
#define ALLOW_METHODS	"GET, POST, DELETE"
#define ALLOW_HEADERS	"Content-Type, X-Send-Seq, Last-Event-ID, Authorization"
#define EXPOSE_HEADERS	"Location, Retry-After"
#define MAX_EVENTS	64
#define XFER_TIMEOUT_S	30L	/* no transfer of this test may hang longer */
#define WAIT_MS		5000	/* generous bound for anything that should be quick */
#define BIG_N		20	/* messages that fill a stream's socket */
#define BIG_LEN		300000	/* bytes each */
/* How long a busy stream may take to end: what it had already written
 * (megabytes, through a 4 KiB receive window) is read first, which took
 * more than 8 s under a sanitizer build on a loaded 2-core machine. */
#define BUSY_WAIT_MS	30000

/* One dispatched SSE event: the fields of a block that had data or event. */
struct ev {
	char id[32];		/* the id: field ("" if none) */
	int has_id;
	char type[32];		/* the event: field ("" if none) */
	char *data;		/* the data: lines joined by '\n' (malloc'd) */
	int ndata;		/* data: lines in the block */
	int other;		/* lines of any other field */
};

/* One HTTP transfer on its own curl multi handle: an event stream read
 * bit by bit, or an ordinary request run to its end. */
struct xfer {
	CURLM *m;
	CURL *c;
	struct curl_slist *hl;
	long status;
	int got_headers;	/* the final header block is complete */
	char *hdrs;		/* raw header lines of the final answer */
	size_t hlen;
	char *body;		/* raw body, NUL-terminated */
	size_t blen;
	size_t parsed;		/* bytes of body already split into lines */
	struct ev cur;		/* the block being read */
	int cur_any;		/* cur has a data: or event: line */
	struct ev evs[MAX_EVENTS];
	int nev;
	int ncomments;		/* comment lines */
	int bad_comments;	/* comment lines other than exactly ":" */
	int64_t first_comment_ms, last_comment_ms;
	int nretry;		/* retry: lines */
	long retry;
	int oom;
	int slow;		/* a small receive buffer: a slow reader */
	int done;
	CURLcode result;
	int64_t start_ms, done_ms;
	json_t *json;		/* the body, once done, if it is JSON */
};

/* Append n bytes to a growing NUL-terminated buffer; -1 if out of memory. */
static int grow_append(char **buf, size_t *len, const char *p, size_t n)
{
	char *t = realloc(*buf, *len + n + 1);

	if (!t)
		return -1;
	memcpy(t + *len, p, n);
	*len += n;
	t[*len] = '\0';
	*buf = t;
	return 0;
}

/* Reset the block being read. */
static void ev_reset(struct ev *e)
{
	free(e->data);
	memset(e, 0, sizeof(*e));
}

/* Handle one SSE line (without its terminator). */
static void sse_line(struct xfer *x, char *line, size_t len)
{
	char *colon, *val;
	size_t vlen;

	if (len == 0) {
		/* A blank line dispatches the block if it carried an event. */
		if (x->cur_any && x->nev < MAX_EVENTS) {
			x->evs[x->nev++] = x->cur;
			memset(&x->cur, 0, sizeof(x->cur));
		}
		ev_reset(&x->cur);
		x->cur_any = 0;
		return;
	}
	if (line[0] == ':') {
		x->last_comment_ms = h_now_ms();
		if (!x->ncomments++)
			x->first_comment_ms = x->last_comment_ms;
		if (len != 1)
			x->bad_comments++;
		return;
	}
	colon = memchr(line, ':', len);
	val = colon ? colon + 1 : line + len;
	vlen = colon ? len - (size_t)(val - line) : 0;
	if (vlen && *val == ' ')
		val++, vlen--;
	if (colon)
		*colon = '\0';
	else
		line[len] = '\0';
	if (!strcmp(line, "id")) {
		snprintf(x->cur.id, sizeof(x->cur.id), "%.*s", (int)vlen, val);
		x->cur.has_id = 1;
	} else if (!strcmp(line, "event")) {
		snprintf(x->cur.type, sizeof(x->cur.type), "%.*s", (int)vlen, val);
		x->cur_any = 1;
	} else if (!strcmp(line, "data")) {
		size_t dl = x->cur.data ? strlen(x->cur.data) : 0;

		if ((x->cur.ndata && grow_append(&x->cur.data, &dl, "\n", 1)) ||
		    grow_append(&x->cur.data, &dl, val, vlen))
			x->oom = 1;
		x->cur.ndata++;
		x->cur_any = 1;
	} else if (!strcmp(line, "retry")) {
		x->nretry++;
		x->retry = strtol(val, NULL, 10);
	} else {
		x->cur.other++;
	}
}

/* libcurl write callback: keep the raw body and split complete lines. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct xfer *x = userp;
	size_t n = size * nmemb;
	char *nl;

	if (grow_append(&x->body, &x->blen, data, n)) {
		x->oom = 1;
		return 0;
	}
	while (x->parsed < x->blen &&
	       (nl = memchr(x->body + x->parsed, '\n', x->blen - x->parsed))) {
		size_t start = x->parsed, len = (size_t)(nl - (x->body + start));
		char *line = malloc(len + 1);

		if (!line) {
			x->oom = 1;
			return 0;
		}
		memcpy(line, x->body + start, len);
		line[len] = '\0';
		sse_line(x, line, len);
		free(line);
		x->parsed = start + len + 1;
	}
	return n;
}

/* libcurl header callback: keep the final answer's header lines. */
static size_t on_header(char *line, size_t size, size_t nmemb, void *userp)
{
	struct xfer *x = userp;
	size_t n = size * nmemb;

	if (n >= 5 && !strncmp(line, "HTTP/", 5)) {
		free(x->hdrs);
		x->hdrs = NULL;
		x->hlen = 0;
		x->got_headers = 0;
	} else if (n <= 2 && (line[0] == '\r' || line[0] == '\n')) {
		curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &x->status);
		if (x->status >= 200)
			x->got_headers = 1;
		return n;
	}
	if (grow_append(&x->hdrs, &x->hlen, line, n))
		x->oom = 1;
	return n;
}

/* Set by a test to make the next transfers slow readers (see xfer_slow). */
static int slow_readers;

/* libcurl socket option callback: a slow reader gets a small receive
 * buffer, so a bridge writing a backlog to it is soon blocked. */
static int xfer_sockopt(void *userp, curl_socket_t fd, curlsocktype purpose)
{
	struct xfer *x = userp;
	int size = 4096;

	if (x->slow && purpose == CURLSOCKTYPE_IPCXN)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	return CURL_SOCKOPT_OK;
}

/* Start a request (method, url, optional body with content type ct, extra
 * header lines) on its own multi handle; drive it with xfer_pump. */
static void xfer_start(struct xfer *x, const char *method, const char *url, const char *ct,
		       const char *body, const char *const *headers)
{
	char line[256];

	memset(x, 0, sizeof(*x));
	x->start_ms = h_now_ms();
	x->slow = slow_readers;
	x->m = curl_multi_init();
	x->c = curl_easy_init();
	if (!x->m || !x->c)
		tap_bail("curl init failed");
	if (ct) {
		snprintf(line, sizeof(line), "Content-Type: %s", ct);
		x->hl = curl_slist_append(x->hl, line);
	}
	x->hl = curl_slist_append(x->hl, "Expect:");
	for (; headers && *headers; headers++)
		x->hl = curl_slist_append(x->hl, *headers);
	curl_easy_setopt(x->c, CURLOPT_URL, url);
	curl_easy_setopt(x->c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(x->c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->c, CURLOPT_TIMEOUT, XFER_TIMEOUT_S);
	curl_easy_setopt(x->c, CURLOPT_HTTPHEADER, x->hl);
	curl_easy_setopt(x->c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(x->c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(x->c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(x->c, CURLOPT_SOCKOPTFUNCTION, xfer_sockopt);
	curl_easy_setopt(x->c, CURLOPT_SOCKOPTDATA, x);
	if (body) {
		curl_easy_setopt(x->c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
		curl_easy_setopt(x->c, CURLOPT_COPYPOSTFIELDS, body);
	}
	if (strcmp(method, body ? "POST" : "GET"))
		curl_easy_setopt(x->c, CURLOPT_CUSTOMREQUEST, method);
	curl_multi_add_handle(x->m, x->c);
}

/* Drive the transfer for up to ms milliseconds. 1 once it has finished. */
static int xfer_pump(struct xfer *x, int ms)
{
	int running = 0, left, nfds;
	CURLMsg *msg;

	if (x->done)
		return 1;
	curl_multi_perform(x->m, &running);
	if (running && ms > 0) {
		curl_multi_poll(x->m, NULL, 0, ms, &nfds);
		curl_multi_perform(x->m, &running);
	}
	while ((msg = curl_multi_info_read(x->m, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		x->done = 1;
		x->result = msg->data.result;
		x->done_ms = h_now_ms();
		curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &x->status);
		if (x->blen && x->body[0] == '{')
			x->json = json_loadb(x->body, x->blen, 0, NULL);
	}
	return x->done;
}

/* Pump until the final headers are in (or the transfer ended). The
 * status, 0 if none within timeout_ms. */
static long xfer_headers(struct xfer *x, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	while (!x->got_headers && !xfer_pump(x, 50) && h_now_ms() < deadline)
		;
	return x->got_headers || x->done ? x->status : 0;
}

/* Pump until n events have been dispatched, the transfer ended or
 * timeout_ms passed. 1 if the n events are there. */
static int xfer_events(struct xfer *x, int n, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	while (x->nev < n && !xfer_pump(x, 50) && h_now_ms() < deadline)
		;
	return x->nev >= n;
}

/* Pump for ms milliseconds whatever happens (to see that nothing comes). */
static void xfer_idle(struct xfer *x, int ms)
{
	int64_t deadline = h_now_ms() + ms;

	while (!xfer_pump(x, 50) && h_now_ms() < deadline)
		;
}

/* Pump until the transfer ends or timeout_ms passes. 1 if it ended. */
static int xfer_finish(struct xfer *x, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	while (!xfer_pump(x, 50) && h_now_ms() < deadline)
		;
	return x->done;
}

/* Abort (if still running) and free everything the transfer holds. */
static void xfer_free(struct xfer *x)
{
	if (x->m && x->c)
		curl_multi_remove_handle(x->m, x->c);
	if (x->c)
		curl_easy_cleanup(x->c);
	if (x->m)
		curl_multi_cleanup(x->m);
	curl_slist_free_all(x->hl);
	for (int i = 0; i < x->nev; i++)
		free(x->evs[i].data);
	ev_reset(&x->cur);
	free(x->hdrs);
	free(x->body);
	json_decref(x->json);
	memset(x, 0, sizeof(*x));
}

/* Run a whole request; the status (0 if it did not end within WAIT_MS). */
static long xfer_req(struct xfer *x, const char *method, const char *url, const char *ct,
		     const char *body, const char *const *headers)
{
	xfer_start(x, method, url, ct, body, headers);
	if (!xfer_finish(x, WAIT_MS))
		tap_diag("%s %s did not end within %d ms", method, url, WAIT_MS);
	return x->done ? x->status : 0;
}

/* How many times header name occurs in the answer; out gets the first
 * value, trimmed ("" if none). */
static int xhdr(const struct xfer *x, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	const char *p = x->hdrs, *eol;
	int count = 0;

	out[0] = '\0';
	for (; p && *p; p = eol ? eol + 1 : NULL) {
		size_t len;

		eol = strchr(p, '\n');
		len = eol ? (size_t)(eol - p) : strlen(p);
		if (len <= nl || p[nl] != ':' || strncasecmp(p, name, nl))
			continue;
		if (!count++) {
			const char *v = p + nl + 1;
			size_t vl = len - nl - 1;

			while (vl && (*v == ' ' || *v == '\t'))
				v++, vl--;
			while (vl && (v[vl - 1] == '\r' || v[vl - 1] == ' ' || v[vl - 1] == '\t'))
				vl--;
			snprintf(out, outlen, "%.*s", (int)vl, v);
		}
	}
	return count;
}

/* The events of a stream as "id:type,..." ("-" for no id), into buf. */
static const char *summary(const struct xfer *x, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int i = 0; i < x->nev && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s:%s", i ? "," : "",
					x->evs[i].has_id ? x->evs[i].id : "-", x->evs[i].type);
	return buf;
}

/* The "data" member of event i's JSON, or NULL (not JSON, no string). */
static char *ev_text(const struct xfer *x, int i)
{
	json_t *j;
	char *s = NULL;
	const char *v;

	if (i >= x->nev || !x->evs[i].data)
		return NULL;
	j = json_loads(x->evs[i].data, 0, NULL);
	v = json_string_value(json_object_get(j, "data"));
	if (v)
		s = strdup(v);
	json_decref(j);
	return s;
}

/* Check event i's one data line is exactly want. */
static void ev_is(const struct xfer *x, int i, const char *want, const char *what)
{
	tap_is_int(i < x->nev ? x->evs[i].ndata : -1, 1, "%s: one data line", what);
	tap_is_str(i < x->nev && x->evs[i].data ? x->evs[i].data : "(none)", want, "%s: data",
		   what);
}

/* Open GET /v1/sessions/<id>/events[?query] with an optional Origin and
 * Last-Event-ID ("" sends the header empty); wait for the headers. */
static long sse_open(struct xfer *x, struct h_bridge *b, const char *id, const char *query,
		     const char *last_id, const char *origin)
{
	char url[512], lh[128], oh[128];
	const char *hdrs[3] = { NULL, NULL, NULL };
	int n = 0;

	snprintf(url, sizeof(url), "%s/v1/sessions/%s/events%s%s", b->base, id,
		 query ? "?" : "", query ? query : "");
	if (last_id) {
		if (*last_id)
			snprintf(lh, sizeof(lh), "Last-Event-ID: %s", last_id);
		else
			snprintf(lh, sizeof(lh), "Last-Event-ID;");
		hdrs[n++] = lh;
	}
	if (origin) {
		snprintf(oh, sizeof(oh), "Origin: %s", origin);
		hdrs[n++] = oh;
	}
	xfer_start(x, "GET", url, NULL, NULL, hdrs);
	return xfer_headers(x, WAIT_MS);
}

/* Open a stream that must be refused: check status and error code, and
 * that the answer is plain JSON. */
static void sse_refused(struct h_bridge *b, const char *id, const char *query,
			const char *last_id, long status, const char *code, const char *what)
{
	struct xfer x;
	char ct[128];

	sse_open(&x, b, id, query, last_id, NULL);
	xfer_finish(&x, WAIT_MS);
	tap_is_int(x.status, status, "%s: %ld", what, status);
	tap_is_str(json_string_value(json_object_get(x.json, "error")) ?
		   json_string_value(json_object_get(x.json, "error")) : "", code,
		   "%s: error %s", what, code);
	xhdr(&x, "Content-Type", ct, sizeof(ct));
	tap_is_str(ct, JSON_UTF8, "%s: a JSON answer, not a stream", what);
	xfer_free(&x);
}

/* POST a body to the session's messages with extra headers. The status. */
static long post(struct h_bridge *b, const char *id, const char *ct, const char *body,
		 size_t len, const char *const *hdrs, struct h_resp *r)
{
	char url[256];

	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages", b->base, id);
	h_http(r, "POST", url, ct, body, len, hdrs);
	return r->status;
}

/* Send text, expecting 200 (a diagnostic otherwise). */
static void send_ok(struct h_bridge *b, const char *id, const char *text)
{
	struct h_resp r;

	if (h_send_text(b, id, text, &r) != 200)
		tap_diag("send '%s' answered %ld %s", text, r.status, h_err(&r));
	h_resp_free(&r);
}

/* The seqs of a poll answer as "1,2,3", into buf. */
static const char *seqs_of(const struct h_resp *r, char *buf, size_t len)
{
	json_t *msgs = json_object_get(r->json, "messages"), *m;
	size_t i, off = 0;

	buf[0] = '\0';
	json_array_foreach(msgs, i, m)
		if (off < len)
			off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? "," : "",
						(long long)json_integer_value(json_object_get(m, "seq")));
	return buf;
}

/* The "state" of a poll answer, or "". */
static const char *state_of(const struct h_resp *r)
{
	const char *s = json_string_value(json_object_get(r->json, "state"));

	return s ? s : "";
}

/* Create a session on route echo (bails out if that fails). */
static void create(struct h_bridge *b, char *id)
{
	if (h_create(b, "echo", id, NULL) != 201)
		tap_bail("cannot create a session on %s", b->base);
}

/* Wait (polls with after=0, so nothing is acknowledged) until the session
 * holds n messages. */
static void wait_msgs(struct h_bridge *b, const char *id, size_t n, const char *what)
{
	json_t *got = json_array();

	if (h_collect(b, id, 0, n, WAIT_MS, got) != n)
		tap_diag("%s: the upstream did not echo %zu messages", what, n);
	json_decref(got);
}

/* ---- streams ------------------------------------------------------------ */

/* Headers, the retry line, text and binary events with the exact JSON of
 * a poll, awkward messages intact, no acknowledgement, a poll ends it. */
static void check_events(struct h_bridge *b)
{
	static const unsigned char bin[4] = { 0, 1, 2, 0xff };
	static const char *const odd[] = {
		"line1\nline2\r\nline3\r",
		"",
		"x\n\nid: 99\nevent: close\ndata: {}\n\n",
	};
	struct xfer s;
	struct h_resp r;
	char id[64], buf[512], hv[128];
	json_t *polled = NULL, *ev;
	size_t i;

	create(b, id);
	send_ok(b, id, "hello");
	post(b, id, "application/octet-stream", (const char *)bin, sizeof(bin), NULL, &r);
	h_resp_free(&r);
	wait_msgs(b, id, 2, "events");
	if (h_poll(b, id, "after=0", &r) == 200)
		polled = json_incref(json_object_get(r.json, "messages"));
	h_resp_free(&r);

	tap_is_int(sse_open(&s, b, id, NULL, NULL, NULL), 200, "events: 200");
	xhdr(&s, "Content-Type", hv, sizeof(hv));
	tap_ok(!strncmp(hv, "text/event-stream", 17) && (hv[17] == '\0' || hv[17] == ';'),
	       "events: Content-Type text/event-stream (%s)", hv);
	xhdr(&s, "Cache-Control", hv, sizeof(hv));
	tap_is_str(hv, "no-store", "events: Cache-Control: no-store");
	tap_is_int(xhdr(&s, "Content-Length", hv, sizeof(hv)), 0, "events: no Content-Length");
	/* Vary: Origin (origins configured), then Vary: Accept-Encoding (a
	 * stream may be gzipped, tests/e2e/test_compress.c). */
	tap_is_int(xhdr(&s, "Vary", hv, sizeof(hv)), 2, "events: two Vary headers");
	tap_is_str(hv, "Origin", "events: Vary: Origin (origins configured)");
	tap_is_int(xhdr(&s, "Access-Control-Allow-Origin", hv, sizeof(hv)), 0,
		   "events: no CORS headers without an Origin");
	xfer_events(&s, 2, WAIT_MS);
	tap_ok(s.blen >= 13 && !strncmp(s.body, "retry: 2000\n\n", 13),
	       "events: the stream starts with \"retry: 2000\" and a blank line");
	tap_is_int(s.nretry, 1, "events: one retry line");
	tap_is_int(s.retry, 2000, "events: retry 2000");
	tap_is_str(summary(&s, buf, sizeof(buf)), "1:text,2:binary",
		   "events: ids 1, 2 as text, binary");
	ev_is(&s, 0, "{\"seq\":1,\"type\":\"text\",\"data\":\"hello\"}", "events: text event");
	ev_is(&s, 1, "{\"seq\":2,\"type\":\"binary\",\"data\":\"AAEC/w==\"}", "events: binary event");
	tap_ok(strstr(s.body, "id: 1\nevent: text\ndata: {\"seq\":1,\"type\":\"text\","
			      "\"data\":\"hello\"}\n\n") != NULL,
	       "events: the exact text of the first event");
	for (i = 0; i < 2; i++) {
		ev = i < (size_t)s.nev ? json_loads(s.evs[i].data, 0, NULL) : NULL;
		tap_ok(ev && json_equal(ev, json_array_get(polled, i)),
		       "events: event %zu is the JSON object a poll returns", i + 1);
		json_decref(ev);
	}
	json_decref(polled);

	/* Messages that would break a naive stream arrive intact. */
	for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
		send_ok(b, id, odd[i]);
	xfer_events(&s, 5, WAIT_MS);
	tap_is_str(summary(&s, buf, sizeof(buf)), "1:text,2:binary,3:text,4:text,5:text",
		   "events: three more events, ids 3..5, no fake event from the payload");
	for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		char *t = ev_text(&s, (int)i + 2);

		tap_is_int((int)i + 2 < s.nev ? s.evs[i + 2].ndata : -1, 1,
			   "events: message %zu in one data line", i + 3);
		tap_is_str(t ? t : "(none)", odd[i], "events: message %zu intact", i + 3);
		free(t);
	}
	ev_is(&s, 3, "{\"seq\":4,\"type\":\"text\",\"data\":\"\"}", "events: empty message");
	tap_ok(!memchr(s.body, '\r', s.blen), "events: no raw CR on the stream");
	tap_is_int(s.bad_comments, 0, "events: comment lines are exactly \":\"");
	tap_ok(!s.done, "events: the stream is still open");

	/* The stream acknowledged nothing; a newer poll ends it. */
	tap_is_int(h_poll(b, id, "after=0", &r), 200, "no ack: poll after=0 200");
	tap_is_str(seqs_of(&r, buf, sizeof(buf)), "1,2,3,4,5",
		   "no ack: the poll still returns 1..5");
	tap_is_str(state_of(&r), "open", "no ack: state open");
	h_resp_free(&r);
	tap_ok(xfer_finish(&s, WAIT_MS), "newer poll: the stream ends");
	tap_is_int(s.result, CURLE_OK, "newer poll: the stream ends cleanly (%s)",
		   curl_easy_strerror(s.result));
	tap_is_str(summary(&s, buf, sizeof(buf)), "1:text,2:binary,3:text,4:text,5:text",
		   "newer poll: no further event, no close event");
	xfer_free(&s);
	tap_is_int(h_delete(b, id), 204, "events: DELETE 204");
}

/* Last-Event-ID and ?after=: reconnects, stale and bad cursors. */
static void check_cursor(struct h_bridge *b)
{
	static const char *const bad[] = { "x", "-1", "", "+3", "3x", "0x3", "9007199254740992" };
	struct xfer s1, s2, s3;
	struct h_resp r;
	char id[64], buf[512], text[16], url[256];
	int i;

	create(b, id);
	for (i = 1; i <= 5; i++) {
		snprintf(text, sizeof(text), "m%d", i);
		send_ok(b, id, text);
	}
	wait_msgs(b, id, 5, "cursor");
	tap_is_int(sse_open(&s1, b, id, NULL, NULL, NULL), 200, "cursor: first stream 200");
	xfer_events(&s1, 5, WAIT_MS);
	tap_is_str(summary(&s1, buf, sizeof(buf)), "1:text,2:text,3:text,4:text,5:text",
		   "cursor: first stream gets 1..5");

	/* Reconnect as a browser would after reading 3. */
	tap_is_int(sse_open(&s2, b, id, NULL, "3", NULL), 200, "Last-Event-ID 3: 200");
	xfer_events(&s2, 2, WAIT_MS);
	tap_is_str(summary(&s2, buf, sizeof(buf)), "4:text,5:text",
		   "Last-Event-ID 3: 4 and 5 first, not 1..3");
	tap_ok(xfer_finish(&s1, WAIT_MS), "Last-Event-ID 3: the older stream ended");
	tap_is_int(s1.result, CURLE_OK, "Last-Event-ID 3: the older stream ended cleanly");
	tap_is_int(s1.nev, 5, "Last-Event-ID 3: the older stream got nothing more");
	xfer_free(&s1);
	send_ok(b, id, "m6");
	send_ok(b, id, "m7");
	xfer_events(&s2, 4, WAIT_MS);
	xfer_idle(&s2, 300);
	tap_is_str(summary(&s2, buf, sizeof(buf)), "4:text,5:text,6:text,7:text",
		   "Last-Event-ID 3: then 6 and 7, no repeat, no gap");
	for (i = 0; i < 4; i++) {
		char *t = ev_text(&s2, i);

		snprintf(text, sizeof(text), "m%d", i + 4);
		tap_is_str(t ? t : "(none)", text, "Last-Event-ID 3: event %d carries %s", i + 4,
			   text);
		free(t);
	}

	/* The reconnect acknowledged 1..3: a stale cursor gets what is left. */
	tap_is_int(sse_open(&s3, b, id, NULL, "1", NULL), 200, "stale Last-Event-ID 1: 200");
	xfer_events(&s3, 4, WAIT_MS);
	xfer_idle(&s3, 300);
	tap_is_str(summary(&s3, buf, sizeof(buf)), "4:text,5:text,6:text,7:text",
		   "stale Last-Event-ID 1: what is retained, 4..7");
	tap_ok(xfer_finish(&s2, WAIT_MS), "stale Last-Event-ID 1: the older stream ended");
	xfer_free(&s2);

	/* ?after= works the same; Last-Event-ID wins over it. */
	tap_is_int(sse_open(&s1, b, id, "after=5", NULL, NULL), 200, "after=5: 200");
	xfer_events(&s1, 2, WAIT_MS);
	xfer_idle(&s1, 300);
	tap_is_str(summary(&s1, buf, sizeof(buf)), "6:text,7:text", "after=5: 6 and 7");
	tap_ok(xfer_finish(&s3, WAIT_MS), "after=5: the older stream ended");
	xfer_free(&s3);
	tap_is_int(sse_open(&s2, b, id, "after=2", "6", NULL), 200,
		   "Last-Event-ID 6 and after=2: 200");
	xfer_events(&s2, 1, WAIT_MS);
	xfer_idle(&s2, 300);
	tap_is_str(summary(&s2, buf, sizeof(buf)), "7:text",
		   "Last-Event-ID 6 and after=2: the header wins, only 7");
	xfer_free(&s1);
	tap_is_int(sse_open(&s3, b, id, NULL, "7", NULL), 200, "Last-Event-ID 7 (the last): 200");
	xfer_idle(&s3, 1500);
	tap_is_int(s3.nev, 0, "Last-Event-ID 7: no event");
	tap_ok(!s3.done, "Last-Event-ID 7: the stream stays open");
	tap_ok(s3.blen >= 13 && !strncmp(s3.body, "retry: 2000\n\n", 13),
	       "Last-Event-ID 7: the retry line still comes first");
	xfer_free(&s3);
	xfer_free(&s2);

	/* Cursors beyond the last seq, and malformed ones. */
	sse_refused(b, id, NULL, "8", 400, "bad_request", "Last-Event-ID 8 (beyond 7)");
	sse_refused(b, id, "after=8", NULL, 400, "bad_request", "after=8 (beyond 7)");
	for (i = 0; i < (int)(sizeof(bad) / sizeof(bad[0])); i++) {
		snprintf(buf, sizeof(buf), "Last-Event-ID \"%s\"", bad[i]);
		sse_refused(b, id, NULL, bad[i], 400, "bad_request", buf);
	}
	sse_refused(b, id, "after=2", "x", 400, "bad_request",
		    "Last-Event-ID \"x\" with a good after=2");
	sse_refused(b, id, "after=x", NULL, 400, "bad_request", "after=x");
	sse_refused(b, id, "after=", NULL, 400, "bad_request", "after= (empty)");
	sse_refused(b, id, "after=1&after=2", NULL, 400, "bad_request", "after twice");
	sse_refused(b, UNKNOWN_ID, NULL, NULL, 404, "unknown_session", "unknown session");
	sse_refused(b, "abc", NULL, NULL, 404, "unknown_session", "malformed session id");
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/events", b->base, id);
	h_http(&r, "POST", url, "text/plain", "x", 1, NULL);
	tap_is_int(r.status, 405, "POST /events: 405");
	tap_is_str(h_err(&r), "method_not_allowed", "POST /events: method_not_allowed");
	tap_is_str(r.allow, "GET", "POST /events: Allow: GET");
	h_resp_free(&r);

	/* The session survived all that; Last-Event-ID 7 acknowledged 1..7, so
	 * a stale cursor now gets only what came since. */
	send_ok(b, id, "m8");
	tap_is_int(sse_open(&s1, b, id, NULL, "6", NULL), 200, "after bad cursors: 200");
	xfer_events(&s1, 1, WAIT_MS);
	xfer_idle(&s1, 300);
	tap_is_str(summary(&s1, buf, sizeof(buf)), "8:text",
		   "after bad cursors: stale Last-Event-ID 6 gets only 8 (7 was acknowledged)");
	xfer_free(&s1);
	tap_is_int(h_poll(b, id, "after=0", &r), 200, "cursor: poll after=0 200");
	tap_is_str(seqs_of(&r, buf, sizeof(buf)), "8",
		   "cursor: 8 is still there, the streams never acknowledged it");
	h_resp_free(&r);
	tap_is_int(h_delete(b, id), 204, "cursor: DELETE 204");
	tap_ok(h_still_serving(b, "echo"), "cursor: still serving");
}

/* A retried numbered send reaches the stream once. */
static void check_idempotent(struct h_bridge *b)
{
	static const char *const seq1[] = { "X-Send-Seq: 1", NULL };
	static const char *const seq2[] = { "X-Send-Seq: 2", NULL };
	struct xfer s;
	struct h_resp r;
	char id[64], buf[256];
	const char *j2 = "{\"seq\":2,\"messages\":[{\"data\":\"b\"}]}";

	create(b, id);
	tap_is_int(sse_open(&s, b, id, NULL, NULL, NULL), 200, "idempotent: stream 200");
	post(b, id, "text/plain", "a", 1, seq1, &r);
	tap_is_str(r.body, "{\"accepted\":1,\"send_seq\":1}", "idempotent: seq 1 accepted");
	h_resp_free(&r);
	post(b, id, "text/plain", "a", 1, seq1, &r);
	tap_is_str(r.body, "{\"accepted\":0,\"send_seq\":1}", "idempotent: seq 1 again: 0");
	h_resp_free(&r);
	post(b, id, "application/json", j2, strlen(j2), NULL, &r);
	tap_is_str(r.body, "{\"accepted\":1,\"send_seq\":2}", "idempotent: JSON seq 2 accepted");
	h_resp_free(&r);
	post(b, id, "application/json", j2, strlen(j2), seq2, &r);
	tap_is_str(r.body, "{\"accepted\":0,\"send_seq\":2}",
		   "idempotent: JSON seq 2 again (with the header): 0");
	h_resp_free(&r);
	post(b, id, "text/plain", "a", 1, seq1, &r);
	tap_is_str(r.body, "{\"accepted\":0,\"send_seq\":2}", "idempotent: seq 1 a third time: 0");
	h_resp_free(&r);
	send_ok(b, id, "end");
	xfer_events(&s, 3, WAIT_MS);
	xfer_idle(&s, 500);
	tap_is_str(summary(&s, buf, sizeof(buf)), "1:text,2:text,3:text",
		   "idempotent: three events on the stream, none twice");
	ev_is(&s, 0, "{\"seq\":1,\"type\":\"text\",\"data\":\"a\"}", "idempotent: event 1");
	ev_is(&s, 1, "{\"seq\":2,\"type\":\"text\",\"data\":\"b\"}", "idempotent: event 2");
	ev_is(&s, 2, "{\"seq\":3,\"type\":\"text\",\"data\":\"end\"}", "idempotent: event 3");
	xfer_free(&s);
	tap_is_int(h_delete(b, id), 204, "idempotent: DELETE 204");
}

/* The close event: no id, the upstream's code and reason; the stream ends.
 * A cursor that acknowledges the last message ends the session. */
static void check_close(struct h_bridge *b)
{
	static const char close_data[] =
		"{\"type\":\"close\",\"code\":4001,\"reason\":\"bye \\\"x\\\"\"}";
	struct xfer s;
	struct h_resp r;
	char id[64], buf[256];

	create(b, id);
	tap_is_int(sse_open(&s, b, id, NULL, NULL, NULL), 200, "close: stream 200");
	send_ok(b, id, "pre");
	send_ok(b, id, "/close 4001 bye \"x\"");
	tap_ok(xfer_finish(&s, WAIT_MS), "close: the stream ends after the close event");
	tap_is_int(s.result, CURLE_OK, "close: ends cleanly (%s)", curl_easy_strerror(s.result));
	tap_is_str(summary(&s, buf, sizeof(buf)), "1:text,-:close",
		   "close: the message, then a close event without id");
	ev_is(&s, 1, close_data, "close: close event");
	tap_ok(s.blen >= 2 && !strcmp(s.body + s.blen - 2, "\n\n") && s.parsed == s.blen,
	       "close: nothing after the close event");
	xfer_free(&s);

	/* Nothing was acknowledged: a new stream from 0 sees it all again. */
	tap_is_int(sse_open(&s, b, id, NULL, NULL, NULL), 200, "close: stream from 0 again 200");
	xfer_finish(&s, WAIT_MS);
	tap_is_str(summary(&s, buf, sizeof(buf)), "1:text,-:close",
		   "close: from 0 the message and the close event again");
	ev_is(&s, 0, "{\"seq\":1,\"type\":\"text\",\"data\":\"pre\"}", "close: replayed message");
	xfer_free(&s);

	/* Last-Event-ID: 1 acknowledges the last message. */
	tap_is_int(sse_open(&s, b, id, NULL, "1", NULL), 200, "close: Last-Event-ID 1 200");
	tap_ok(xfer_finish(&s, WAIT_MS), "close: Last-Event-ID 1 ends");
	tap_is_str(summary(&s, buf, sizeof(buf)), "-:close",
		   "close: Last-Event-ID 1: only the close event");
	ev_is(&s, 0, close_data, "close: Last-Event-ID 1 close event");
	xfer_free(&s);
	tap_is_int(h_poll(b, id, "after=1", &r), 410, "close: the session has then ended (410)");
	tap_is_str(h_err(&r), "session_closed", "close: session_closed");
	h_resp_free(&r);
	sse_refused(b, id, NULL, NULL, 410, "session_closed", "close: a stream on the ended session");
}

/* Queue BIG_N messages of BIG_LEN bytes from the upstream and give the
 * bridge time to push what it can into the stream's socket (a slow reader's,
 * not read meanwhile): the stream is then blocked on writing, with no read
 * of its own waiting in the bridge. */
static void fill_stream(struct h_bridge *b, const char *id, struct xfer *s)
{
	char cmd[32];

	xfer_pump(s, 10);
	snprintf(cmd, sizeof(cmd), "/big %d", BIG_LEN);
	for (int i = 0; i < BIG_N; i++)
		send_ok(b, id, cmd);
	h_sleep_ms(1500);
}

/* A newer poll or stream ends an older stream even while the older one is
 * busy writing (not waiting in the core for more). */
static void check_busy_stream(struct h_bridge *b)
{
	struct xfer s1, s2;
	struct h_resp r;
	char id[64], q[64];
	int64_t t;

	create(b, id);
	slow_readers = 1;
	tap_is_int(sse_open(&s1, b, id, NULL, NULL, NULL), 200, "busy stream: 200");
	fill_stream(b, id, &s1);
	tap_is_int(h_poll(b, id, "after=0", &r), 200, "busy stream: a poll meanwhile 200");
	tap_ok(json_array_size(json_object_get(r.json, "messages")) >= 1,
	       "busy stream: the poll gets messages");
	h_resp_free(&r);
	t = h_now_ms();
	xfer_finish(&s1, BUSY_WAIT_MS);
	tap_ok(s1.done, "busy stream: the newer poll ended the stream too (%d of %d events read, "
	       "%s after %lld ms)", s1.nev, BIG_N, s1.done ? "ended" : "still open",
	       (long long)(h_now_ms() - t));
	xfer_free(&s1);

	/* The same with a newer stream that has caught up (its cursor is the
	 * last seq): the older must end, not the newer. */
	snprintf(q, sizeof(q), "after=%d", BIG_N);
	tap_is_int(sse_open(&s1, b, id, q, NULL, NULL), 200, "busy stream 2: 200");
	fill_stream(b, id, &s1);
	slow_readers = 0;
	snprintf(q, sizeof(q), "%d", 2 * BIG_N);
	tap_is_int(sse_open(&s2, b, id, NULL, q, NULL), 200,
		   "busy stream 2: a newer stream from Last-Event-ID %d 200", 2 * BIG_N);
	t = h_now_ms();
	while (h_now_ms() - t < BUSY_WAIT_MS && !s1.done && !s2.done) {
		xfer_pump(&s1, 20);
		xfer_pump(&s2, 20);
	}
	xfer_idle(&s2, 1500);
	tap_ok(s1.done, "busy stream 2: the older stream ended (%d events read)", s1.nev);
	tap_ok(!s2.done, "busy stream 2: the newer stream is still open");
	tap_is_int(s2.nev, 0, "busy stream 2: the newer stream has nothing to send");
	xfer_free(&s1);
	xfer_free(&s2);
	tap_is_int(h_delete(b, id), 204, "busy stream: DELETE 204");
}

/* Heartbeat comments while idle; an open stream keeps its session alive
 * (the bridge runs with --idle-timeout 2 --sse-heartbeat 1). */
static void check_heartbeat(struct h_bridge *b)
{
	struct xfer s;
	struct h_resp r;
	char id[64], buf[64];
	int64_t opened;

	create(b, id);
	tap_is_int(sse_open(&s, b, id, NULL, NULL, NULL), 200, "heartbeat: stream 200");
	opened = s.start_ms;
	while (!s.ncomments && !xfer_pump(&s, 50) && h_now_ms() - opened < 4000)
		;
	tap_ok(s.ncomments >= 1 && s.first_comment_ms - opened <= 3000,
	       "heartbeat: a comment within 3 s (%d after %lld ms)", s.ncomments,
	       (long long)(s.ncomments ? s.first_comment_ms - opened : -1));
	xfer_idle(&s, (int)(4000 - (h_now_ms() - opened)));
	tap_ok(s.ncomments >= 2 && s.ncomments <= 8,
	       "heartbeat: about one comment a second (%d in %lld ms)", s.ncomments,
	       (long long)(h_now_ms() - opened));
	tap_is_int(s.bad_comments, 0, "heartbeat: each comment line is exactly \":\"");
	tap_is_int(s.nev, 0, "heartbeat: no events");
	tap_ok(!s.done, "heartbeat: the stream is still open after 4 s");
	/* Poll between two heartbeats, while the stream waits in the bridge
	 * (see check_busy_stream for a poll that lands between two reads). */
	while (!s.done && h_now_ms() - s.last_comment_ms < 300)
		xfer_pump(&s, 20);
	if (h_now_ms() - s.last_comment_ms > 600) {
		int n = s.ncomments;

		while (!s.done && s.ncomments == n && h_now_ms() - opened < 8000)
			xfer_pump(&s, 20);
		xfer_idle(&s, 300);
	}
	tap_is_int(h_poll(b, id, "after=0", &r), 200,
		   "heartbeat: the session outlived --idle-timeout 2 thanks to the stream");
	tap_is_str(r.body, "{\"messages\":[],\"state\":\"open\"}", "heartbeat: empty and open");
	h_resp_free(&r);
	tap_ok(xfer_finish(&s, WAIT_MS), "heartbeat: the poll ended the stream");
	tap_is_str(summary(&s, buf, sizeof(buf)), "", "heartbeat: without any event");
	xfer_free(&s);
	tap_is_int(h_delete(b, id), 204, "heartbeat: DELETE 204");
}

/* SIGTERM while a stream is open: memory store, a close event 1001 and the
 * end; shared store, just the end. The bridge exits 0. */
static void check_sigterm(struct h_bridge *b)
{
	struct xfer s;
	char id[64], buf[256];

	create(b, id);
	send_ok(b, id, "before");
	wait_msgs(b, id, 1, "sigterm");
	tap_is_int(sse_open(&s, b, id, NULL, NULL, NULL), 200, "sigterm: stream 200");
	xfer_events(&s, 1, WAIT_MS);
	tap_ok(kill(b->proc->pid, SIGTERM) == 0, "sigterm: signal sent");
	tap_ok(xfer_finish(&s, 6000), "sigterm: the stream ends");
	tap_is_int(s.result, CURLE_OK, "sigterm: ends cleanly (%s)", curl_easy_strerror(s.result));
	if (h_store_shared()) {
		tap_is_str(summary(&s, buf, sizeof(buf)), "1:text",
			   "sigterm (shared store): no close event, the session is handed over");
	} else {
		tap_is_str(summary(&s, buf, sizeof(buf)), "1:text,-:close",
			   "sigterm: the message, then a close event");
		ev_is(&s, 1, "{\"type\":\"close\",\"code\":1001,\"reason\":\"instance draining\"}",
		      "sigterm: close 1001");
	}
	xfer_free(&s);
	tap_is_int(h_wait_exit(b->proc, 6000), 0, "sigterm: the bridge exits 0");
}

/* ---- JSONP -------------------------------------------------------------- */


/* A stream never acknowledges, so one that is never reopened by the page
 * would stall once --queue-max messages are unacknowledged. It ends instead
 * when half the queue is unacknowledged, with a short retry; reopened with
 * Last-Event-ID (as EventSource does by itself) it carries on: 300
 * messages through --queue-max 20 arrive in order, once each. */
static void check_window(struct h_bridge *b)
{
	char id[64], last[32] = "0";
	int next = 1, streams = 0, in_order = 1, ended_with_retry = 1, bounded = 1;
	int64_t deadline = h_now_ms() + 20000;

	create(b, id);
	while (next <= 300 && h_now_ms() < deadline && streams < 100) {
		struct xfer x;

		memset(&x, 0, sizeof(x));
		if (sse_open(&x, b, id, NULL, last, NULL) != 200) {
			tap_diag("window: stream %d answered %ld", streams, x.status);
			xfer_free(&x);
			break;
		}
		streams++;
		if (!xfer_finish(&x, WAIT_MS)) {
			/* the last stream stays open: its window is not full */
			if (next - 1 + x.nev < 300) {
				tap_diag("window: stream %d did not end after %d events (next %d)",
					 streams, x.nev, next);
				ended_with_retry = 0;
			}
		} else if (x.retry != 100 || x.nretry != 2) {
			ended_with_retry = 0;
		}
		/* Redis may overshoot --queue-max by a batch in flight (README) */
		if (x.nev > 20 + (h_store_shared() ? 64 : 0))
			bounded = 0;
		for (int i = 0; i < x.nev; i++) {
			char *t = ev_text(&x, i), want[16];

			snprintf(want, sizeof(want), "%d", next);
			if (!t || strcmp(t, want) || atoi(x.evs[i].id) != next) {
				tap_diag("window: event %d of stream %d is '%s' id %s, want %d", i,
					 streams, t ? t : "(none)", x.evs[i].id, next);
				in_order = 0;
			}
			free(t);
			next++;
			snprintf(last, sizeof(last), "%s", x.evs[i].id);
		}
		xfer_free(&x);
		if (!ended_with_retry || !in_order)
			break;
	}
	tap_is_int(next - 1, 300, "window: 300 messages through --queue-max 20 on reopened streams");
	tap_ok(in_order, "window: in order, each once");
	tap_ok(ended_with_retry, "window: each stream ends by itself with retry: 100 once its window fills");
	tap_ok(bounded, "window: no stream carries more than the queue");
	tap_diag("window: %d streams", streams);
	h_delete(b, id);
}

/* Split a JSONP body (an empty comment, then NAME(<json>);): 1 if it has
 * that shape for NAME, with the argument parsed into *arg (a new reference). */
static int jsonp_unwrap(const struct h_resp *r, const char *name, json_t **arg)
{
	char prefix[200];
	size_t pl;

	*arg = NULL;
	pl = (size_t)snprintf(prefix, sizeof(prefix), "/**/%s(", name);
	if (r->len < pl + 2 || strncmp(r->body, prefix, pl) || strcmp(r->body + r->len - 2, ");"))
		return 0;
	*arg = json_loadb(r->body + pl, r->len - pl - 2, 0, NULL);
	return *arg != NULL;
}

/* --jsonp: wrapping, errors with 200, escapes, callback names. */
static void check_jsonp(struct h_bridge *b)
{
	static const char *const good[] = { "a", "a.b_c$1", "jQuery123_456", "$", "_x.$y.z9" };
	static const char *const bad[] = {
		"1a", "a..b", "a.", ".a", "a%28b%29", "%3Cscript%3E", "a-b", "a%20b", "",
		"a%3Balert(1)",
	};
	struct h_resp r;
	char id[64], q[512], name[200], what[300];
	json_t *arg;
	size_t i;

	create(b, id);
	send_ok(b, id, "hi");
	wait_msgs(b, id, 1, "jsonp");
	tap_is_int(h_poll(b, id, "after=0&callback=cb", &r), 200, "jsonp: 200");
	tap_ok(!strncmp(r.content_type, "application/javascript", 22),
	       "jsonp: application/javascript (%s)", r.content_type);
	tap_is_str(r.body, "/**/cb({\"messages\":[{\"seq\":1,\"type\":\"text\",\"data\":\"hi\"}],"
			   "\"state\":\"open\"});", "jsonp: the exact wrapped body");
	tap_is_str(r.cache_control, "no-store", "jsonp: Cache-Control: no-store");
	h_resp_free(&r);

	/* U+2028 and U+2029 end a line in JavaScript: they must be escaped. */
	send_ok(b, id, "a\xe2\x80\xa8" "b\xe2\x80\xa9" "c");
	wait_msgs(b, id, 2, "jsonp");
	tap_is_int(h_poll(b, id, "after=1&callback=cb", &r), 200, "jsonp U+2028: 200");
	tap_is_str(r.body, "/**/cb({\"messages\":[{\"seq\":2,\"type\":\"text\","
			   "\"data\":\"a\\u2028b\\u2029c\"}],\"state\":\"open\"});",
		   "jsonp U+2028: escaped as \\u2028 and \\u2029");
	tap_ok(!strstr(r.body, "\xe2\x80\xa8") && !strstr(r.body, "\xe2\x80\xa9"),
	       "jsonp U+2028: no raw line separator in the script");
	h_resp_free(&r);

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(q, sizeof(q), "after=1&callback=%s", good[i]);
		h_poll(b, id, q, &r);
		tap_is_int(r.status, 200, "callback \"%s\": 200", good[i]);
		tap_ok(jsonp_unwrap(&r, good[i], &arg) &&
		       json_array_size(json_object_get(arg, "messages")) == 1,
		       "callback \"%s\": wrapped batch", good[i]);
		json_decref(arg);
		h_resp_free(&r);
	}
	memset(name, 'a', 128);
	name[128] = '\0';
	snprintf(q, sizeof(q), "after=1&callback=%s", name);
	h_poll(b, id, q, &r);
	tap_is_int(r.status, 200, "callback of 128 characters: 200");
	tap_ok(jsonp_unwrap(&r, name, &arg), "callback of 128 characters: wrapped");
	json_decref(arg);
	h_resp_free(&r);

	/* Errors are wrapped too, with status 200. */
	h_poll(b, UNKNOWN_ID, "callback=cb", &r);
	tap_is_int(r.status, 200, "jsonp unknown session: status 200");
	tap_ok(jsonp_unwrap(&r, "cb", &arg), "jsonp unknown session: wrapped (%.80s)", r.body);
	tap_is_str(json_string_value(json_object_get(arg, "error")) ?
		   json_string_value(json_object_get(arg, "error")) : "", "unknown_session",
		   "jsonp unknown session: error unknown_session in the argument");
	tap_ok(json_is_string(json_object_get(arg, "message")), "jsonp unknown session: message");
	json_decref(arg);
	h_resp_free(&r);
	h_poll(b, id, "after=9&callback=cb", &r);
	tap_is_int(r.status, 200, "jsonp after beyond: status 200");
	tap_ok(jsonp_unwrap(&r, "cb", &arg) &&
	       !strcmp(json_string_value(json_object_get(arg, "error")) ?
		       json_string_value(json_object_get(arg, "error")) : "", "bad_request"),
	       "jsonp after beyond: wrapped bad_request");
	json_decref(arg);
	h_resp_free(&r);
	h_poll(b, id, "after=x&callback=cb", &r);
	tap_is_int(r.status, 200, "jsonp after=x: status 200");
	tap_ok(jsonp_unwrap(&r, "cb", &arg) &&
	       !strcmp(json_string_value(json_object_get(arg, "error")) ?
		       json_string_value(json_object_get(arg, "error")) : "", "bad_request"),
	       "jsonp after=x: wrapped bad_request");
	json_decref(arg);
	h_resp_free(&r);

	/* Invalid names are a plain 400: they cannot be wrapped. */
	name[128] = 'a';
	name[129] = '\0';
	for (i = 0; i <= sizeof(bad) / sizeof(bad[0]); i++) {
		const char *cb = i < sizeof(bad) / sizeof(bad[0]) ? bad[i] : name;

		snprintf(q, sizeof(q), "after=1&callback=%s", cb);
		snprintf(what, sizeof(what), "callback \"%.20s%s\"", cb, strlen(cb) > 20 ? "..." : "");
		h_poll(b, id, q, &r);
		tap_is_int(r.status, 400, "%s: 400", what);
		tap_is_str(r.content_type, JSON_UTF8, "%s: plain JSON", what);
		tap_is_str(h_err(&r), "bad_request", "%s: bad_request", what);
		h_resp_free(&r);
	}
	tap_is_int(h_poll(b, id, "after=1", &r), 200, "jsonp: the session still answers");
	tap_is_str(seqs_of(&r, q, sizeof(q)), "2", "jsonp: with its message 2");
	h_resp_free(&r);
	tap_is_int(h_delete(b, id), 204, "jsonp: DELETE 204");
	tap_ok(h_still_serving(b, "echo"), "jsonp: still serving");
}

/* Without --jsonp any callback is a plain 400. */
static void check_no_jsonp(struct h_bridge *b)
{
	struct h_resp r;
	char id[64];

	create(b, id);
	h_poll(b, id, "after=0&callback=cb", &r);
	tap_is_int(r.status, 400, "no --jsonp: callback 400");
	tap_is_str(r.content_type, JSON_UTF8, "no --jsonp: plain JSON");
	tap_is_str(h_err(&r), "bad_request", "no --jsonp: bad_request");
	h_resp_free(&r);
	h_poll(b, UNKNOWN_ID, "callback=cb", &r);
	tap_is_int(r.status, 400, "no --jsonp: callback on an unknown session 400");
	tap_is_str(h_err(&r), "bad_request", "no --jsonp: unknown session bad_request");
	h_resp_free(&r);
	tap_is_int(h_poll(b, id, "after=0", &r), 200, "no --jsonp: without callback 200");
	tap_is_str(r.content_type, JSON_UTF8, "no --jsonp: JSON");
	h_resp_free(&r);
	tap_is_int(h_delete(b, id), 204, "no --jsonp: DELETE 204");
	tap_ok(h_still_serving(b, "echo"), "no --jsonp: still serving");
}

/* ---- CORS --------------------------------------------------------------- */

/* Check an answer's CORS headers: origin NULL means none at all; vary
 * says whether "Vary: Origin" must be there (else: no Vary but the
 * Accept-Encoding of answers that may be gzipped, polls and streams). */
static void cors_is(const struct xfer *x, const char *origin, int vary, const char *what)
{
	char v[256];

	if (origin) {
		tap_is_int(xhdr(x, "Access-Control-Allow-Origin", v, sizeof(v)), 1,
			   "%s: one Access-Control-Allow-Origin", what);
		tap_is_str(v, origin, "%s: the origin echoed", what);
		xhdr(x, "Access-Control-Allow-Credentials", v, sizeof(v));
		tap_is_str(v, "true", "%s: Access-Control-Allow-Credentials: true", what);
		xhdr(x, "Access-Control-Expose-Headers", v, sizeof(v));
		tap_is_str(v, EXPOSE_HEADERS, "%s: Access-Control-Expose-Headers", what);
	} else {
		tap_is_int(xhdr(x, "Access-Control-Allow-Origin", v, sizeof(v)) +
			   xhdr(x, "Access-Control-Allow-Credentials", v, sizeof(v)) +
			   xhdr(x, "Access-Control-Expose-Headers", v, sizeof(v)) +
			   xhdr(x, "Access-Control-Allow-Methods", v, sizeof(v)) +
			   xhdr(x, "Access-Control-Allow-Headers", v, sizeof(v)), 0,
			   "%s: no CORS headers", what);
	}
	if (vary) {
		xhdr(x, "Vary", v, sizeof(v));
		tap_is_str(v, "Origin", "%s: Vary: Origin", what);
	} else {
		int n = xhdr(x, "Vary", v, sizeof(v));

		tap_ok(n == 0 || (n == 1 && strcmp(v, "Accept-Encoding") == 0),
		       "%s: no Vary: Origin (%d Vary, %s)", what, n, v);
	}
}

/* A request with an optional Origin; status checked, CORS checked. */
static void cors_req(struct h_bridge *b, const char *method, const char *path, const char *ct,
		     const char *body, const char *origin, long status, const char *want_origin,
		     int vary, const char *what)
{
	struct xfer x;
	char url[256], oh[128];
	const char *hdrs[2] = { oh, NULL };

	snprintf(url, sizeof(url), "%s%s", b->base, path);
	snprintf(oh, sizeof(oh), "Origin: %s", origin ? origin : "");
	if (!origin)
		hdrs[0] = NULL;
	tap_is_int(xfer_req(&x, method, url, ct, body, hdrs), status, "%s: %ld", what, status);
	cors_is(&x, want_origin, vary, what);
	xfer_free(&x);
}

/* A preflight OPTIONS on path: allowed origins learn methods and headers. */
static void preflight(struct h_bridge *b, const char *path, const char *origin, int allowed,
		      int vary, const char *what)
{
	static const char *const extra[] = {
		"Access-Control-Request-Method: POST",
		"Access-Control-Request-Headers: content-type, x-send-seq",
	};
	struct xfer x;
	char url[256], oh[128], v[256];
	const char *hdrs[4] = { extra[0], extra[1], NULL, NULL };

	snprintf(url, sizeof(url), "%s%s", b->base, path);
	if (origin) {
		snprintf(oh, sizeof(oh), "Origin: %s", origin);
		hdrs[2] = oh;
	}
	tap_is_int(xfer_req(&x, "OPTIONS", url, NULL, NULL, hdrs), 204, "%s: 204", what);
	tap_is_int((long)x.blen, 0, "%s: empty body", what);
	if (allowed) {
		xhdr(&x, "Access-Control-Allow-Origin", v, sizeof(v));
		tap_is_str(v, origin, "%s: origin echoed", what);
		xhdr(&x, "Access-Control-Allow-Credentials", v, sizeof(v));
		tap_is_str(v, "true", "%s: credentials allowed", what);
		xhdr(&x, "Access-Control-Allow-Methods", v, sizeof(v));
		tap_is_str(v, ALLOW_METHODS, "%s: Access-Control-Allow-Methods", what);
		xhdr(&x, "Access-Control-Allow-Headers", v, sizeof(v));
		tap_is_str(v, ALLOW_HEADERS, "%s: Access-Control-Allow-Headers", what);
		if (vary) {
			xhdr(&x, "Vary", v, sizeof(v));
			tap_is_str(v, "Origin", "%s: Vary: Origin", what);
		}
	} else {
		cors_is(&x, NULL, vary, what);
	}
	xfer_free(&x);
}

/* CORS on the bridge with GOOD_ORIGIN and OTHER_ORIGIN listed. */
static void check_cors(struct h_bridge *b)
{
	static const char *const unlisted[] = {
		EVIL_ORIGIN, "http://good.example.evil", "http://good.example/",
		"https://good.example", "null",
	};
	struct xfer x;
	char id[64], path[128], what[128];
	const char *body = "{\"route\":\"echo\"}";
	size_t i;

	/* The session is created through CORS too. */
	snprintf(path, sizeof(path), "%s/v1/sessions", b->base);
	{
		const char *hdrs[] = { "Origin: " GOOD_ORIGIN, NULL };

		tap_is_int(xfer_req(&x, "POST", path, "application/json", body, hdrs), 201,
			   "cors create: 201");
		cors_is(&x, GOOD_ORIGIN, 1, "cors create");
		snprintf(id, sizeof(id), "%s",
			 json_string_value(json_object_get(x.json, "session")) ?
			 json_string_value(json_object_get(x.json, "session")) : "");
		xfer_free(&x);
	}
	if (!id[0])
		tap_bail("cors: no session");
	snprintf(path, sizeof(path), "/v1/sessions/%s/messages", id);
	cors_req(b, "POST", path, "text/plain", "c1", OTHER_ORIGIN, 200, OTHER_ORIGIN, 1,
		 "cors send (second listed origin)");
	wait_msgs(b, id, 1, "cors");
	cors_req(b, "GET", path, NULL, NULL, GOOD_ORIGIN, 200, GOOD_ORIGIN, 1, "cors poll");
	for (i = 0; i < sizeof(unlisted) / sizeof(unlisted[0]); i++) {
		snprintf(what, sizeof(what), "cors poll from unlisted %s", unlisted[i]);
		cors_req(b, "GET", path, NULL, NULL, unlisted[i], 200, NULL, 1, what);
	}
	cors_req(b, "GET", path, NULL, NULL, NULL, 200, NULL, 1, "cors poll without Origin");
	cors_req(b, "GET", "/v1/sessions/" UNKNOWN_ID "/messages", NULL, NULL, GOOD_ORIGIN, 404,
		 GOOD_ORIGIN, 1, "cors 404");
	snprintf(path, sizeof(path), "/v1/sessions/%s/messages?after=x", id);
	cors_req(b, "GET", path, NULL, NULL, GOOD_ORIGIN, 400, GOOD_ORIGIN, 1, "cors 400");
	snprintf(path, sizeof(path), "/v1/sessions/%s/messages", id);
	cors_req(b, "POST", path, "image/png", "x", GOOD_ORIGIN, 415, GOOD_ORIGIN, 1, "cors 415");
	cors_req(b, "GET", "/healthz", NULL, NULL, GOOD_ORIGIN, 200, GOOD_ORIGIN, 1, "cors healthz");

	/* The event stream. */
	tap_is_int(sse_open(&x, b, id, NULL, NULL, GOOD_ORIGIN), 200, "cors stream: 200");
	cors_is(&x, GOOD_ORIGIN, 1, "cors stream");
	xfer_events(&x, 1, WAIT_MS);
	tap_is_int(x.nev, 1, "cors stream: the event arrives");
	xfer_free(&x);
	tap_is_int(sse_open(&x, b, id, NULL, NULL, EVIL_ORIGIN), 200, "cors stream unlisted: 200");
	cors_is(&x, NULL, 1, "cors stream unlisted");
	xfer_free(&x);

	/* Preflights on every API path. */
	preflight(b, "/v1/sessions", GOOD_ORIGIN, 1, 1, "preflight create");
	snprintf(path, sizeof(path), "/v1/sessions/%s/messages", id);
	preflight(b, path, GOOD_ORIGIN, 1, 1, "preflight messages");
	preflight(b, path, OTHER_ORIGIN, 1, 1, "preflight messages (second origin)");
	preflight(b, path, EVIL_ORIGIN, 0, 1, "preflight messages unlisted");
	preflight(b, path, NULL, 0, 1, "preflight messages without Origin");
	snprintf(path, sizeof(path), "/v1/sessions/%s/events", id);
	preflight(b, path, GOOD_ORIGIN, 1, 1, "preflight events");
	snprintf(path, sizeof(path), "/v1/sessions/%s", id);
	preflight(b, path, GOOD_ORIGIN, 1, 1, "preflight session");
	cors_req(b, "DELETE", path, NULL, NULL, GOOD_ORIGIN, 204, GOOD_ORIGIN, 1, "cors DELETE");
	cors_req(b, "DELETE", path, NULL, NULL, GOOD_ORIGIN, 410, GOOD_ORIGIN, 1, "cors 410");
	tap_ok(h_still_serving(b, "echo"), "cors: still serving");
}

/* No --cors-origin: no CORS headers and no Vary, whatever the Origin. */
static void check_no_cors(struct h_bridge *b)
{
	struct xfer x;
	char id[64], path[128];

	create(b, id);
	snprintf(path, sizeof(path), "/v1/sessions/%s/messages", id);
	cors_req(b, "POST", path, "text/plain", "n1", GOOD_ORIGIN, 200, NULL, 0, "no cors send");
	cors_req(b, "GET", path, NULL, NULL, GOOD_ORIGIN, 200, NULL, 0, "no cors poll");
	cors_req(b, "GET", path, NULL, NULL, NULL, 200, NULL, 0, "no cors poll without Origin");
	cors_req(b, "GET", "/v1/sessions/" UNKNOWN_ID "/messages", NULL, NULL, GOOD_ORIGIN, 404,
		 NULL, 0, "no cors 404");
	tap_is_int(sse_open(&x, b, id, NULL, NULL, GOOD_ORIGIN), 200, "no cors stream: 200");
	cors_is(&x, NULL, 0, "no cors stream");
	xfer_free(&x);
	preflight(b, path, GOOD_ORIGIN, 0, 0, "no cors preflight");
	tap_is_int(h_delete(b, id), 204, "no cors: DELETE 204");
}

/* --cors-origin '*': any origin is echoed (never a literal "*"). */
static void check_cors_any(struct h_bridge *b)
{
	char id[64], path[128];

	create(b, id);
	snprintf(path, sizeof(path), "/v1/sessions/%s/messages", id);
	cors_req(b, "GET", path, NULL, NULL, ANY_ORIGIN, 200, ANY_ORIGIN, 1, "cors * poll");
	cors_req(b, "GET", path, NULL, NULL, EVIL_ORIGIN, 200, EVIL_ORIGIN, 1,
		 "cors * poll (another origin)");
	cors_req(b, "GET", path, NULL, NULL, NULL, 200, NULL, 1, "cors * poll without Origin");
	preflight(b, path, ANY_ORIGIN, 1, 1, "cors * preflight");
	tap_is_int(h_delete(b, id), 204, "cors *: DELETE 204");
}

int main(void)
{
	struct h_bridge a, plain, any, win;
	char route[96], push_route[96];
	int echo_port, push_port;

	h_init();
	if (!h_echo_start(&echo_port, NULL))
		tap_bail("pollbridge-echo did not start");
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/", echo_port);
	/* --queue-max-bytes: the busy-stream check stores 20 x 300 kB;
	 * --idle-timeout 30: that check reads what a busy stream had already
	 * written (megabytes, slowly) while its session has no client
	 * attached, which took over 10 s under the sanitizers */
	if (h_bridge_start(&a, route, "--sse-heartbeat", "1", "--wait-max", "3", "--idle-timeout",
			   "30", "--connect-timeout", "2", "--jsonp", "--cors-origin", GOOD_ORIGIN,
			   "--cors-origin", OTHER_ORIGIN, "--queue-max-bytes", "16000000", NULL))
		tap_bail("pollbridge --jsonp --cors-origin did not start");
	if (h_bridge_start(&plain, route, "--sse-heartbeat", "1", "--wait-max", "3",
			   "--idle-timeout", "2", "--connect-timeout", "2", NULL))
		tap_bail("pollbridge --idle-timeout 2 did not start");
	if (h_bridge_start(&any, route, "--wait-max", "3", "--connect-timeout", "2",
			   "--cors-origin", "*", NULL))
		tap_bail("pollbridge --cors-origin '*' did not start");
	if (!h_ws_start(&push_port, "push", "300", NULL))
		tap_bail("the npm ws upstream did not start (contrib/deps.sh test installs it)");
	snprintf(push_route, sizeof(push_route), "--route=echo=ws://127.0.0.1:%d/", push_port);
	if (h_bridge_start(&win, push_route, "--queue-max", "20", "--sse-heartbeat", "1", NULL))
		tap_bail("pollbridge --queue-max 20 did not start");

	check_events(&a);
	check_cursor(&a);
	check_idempotent(&a);
	check_close(&a);
	check_busy_stream(&a);
	check_jsonp(&a);
	check_cors(&a);
	check_no_jsonp(&plain);
	check_heartbeat(&plain);
	check_no_cors(&plain);
	check_cors_any(&any);
	check_sigterm(&any);
	check_window(&win);
	return tap_done();
}
