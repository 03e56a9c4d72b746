/*
 * test_sockjs.c: the SockJS front door (sockjs=PREFIX), end to end: the
 * real binary, relaying to real upstreams (the npm ws echo and
 * close-after-echo servers, and tests/upstreams/raw_ws.py for what a
 * library will not send), checked against the SockJS protocol's cases,
 * written here in our own words. Every request is plain HTTP/1.0 on a
 * socket, so each header and byte is visible, and streams are read as
 * they arrive.
 *
 * Covered, grouped as the protocol's test suite groups them:
 * - base URL: the greeting at PREFIX and PREFIX/, 404 for other paths, 405
 *   with Allow for other methods;
 * - iframe page: every versioned name and a ?t= query, the configured
 *   sockjs-client URL, year-long caching with Expires and a stable ETag,
 *   no Last-Modified, 304 for If-None-Match, 404 for malformed names, and
 *   404 when no --sockjs-url is configured;
 * - /info: JSON with websocket false, cookie_needed false, origins
 *   ["*:*"] and a changing entropy, not cached, CORS echoing an allowed
 *   Origin with credentials (nothing for another), OPTIONS answers
 *   (cacheable, Access-Control-Max-Age, Allow-Methods);
 * - session URLs: any server/session value, 404 for empty ones or dots,
 *   the server id ignored, another client address never reaching the
 *   session (a fresh one instead);
 * - protocol: o, a[...], xhr_send 204, unknown session 404, a second
 *   receiving request c[2010,...], the upstream's close code and reason,
 *   c[3000,"Go away!"] once the session has ended, and a fresh session
 *   after the tombstone expires;
 * - xhr-polling: OPTIONS, headers, CORS with Access-Control-Request-Headers
 *   echoed, "Broken JSON encoding." and "Payload expected." (500), any
 *   content type, the heartbeat "h" when nothing comes;
 * - xhr-streaming: the 2048 'h' prelude, frames as lines, the response
 *   limit (the stream ends past 128 KiB; the next one continues without
 *   loss and without a second "o");
 * - eventsource: prelude, data: frames, escaped controls and '%';
 * - htmlfile: the callback required and validated, the prelude page past
 *   1 KiB, script frames, and "</script>", U+2028/2029, NUL and frame
 *   look-alikes carried safely;
 * - jsonp-polling: /[star][star]/callback("o");, jsonp_send with form and
 *   raw bodies ("ok"), the error cases;
 * - JSESSIONID echoed when the request has one, never invented;
 * - JSON encoding: the characters the server must escape arrive escaped,
 *   the ones the client escapes are decoded;
 * - closing: a stream ends after the close frame, a second stream gets
 *   the close or c[2010] and ends; an upstream binary message gives
 *   c[1003,"binary message"] and closes the upstream; a dial that fails
 *   gives c[1002,...]; a session nobody reads ends by --idle-timeout and
 *   the upstream sees 1000;
 * - the stream heartbeat "h" every 25 s (one eventsource waits for it).
 * After the hostile inputs the bridge must still serve.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "e2e/harness.h"
#include "tap.h"

#define ORIGIN "http://good.example"
#define SOCKJS_URL "/static/sockjs.min.js"
#define NO_CACHE "no-store, no-cache, no-transform, must-revalidate, max-age=0"
#define WAIT_MS 8000

static int port;                /* the main bridge */
static int uniq;                /* session id counter */

/* One HTTP/1.0 exchange, or a stream being read. */
struct xr {
	int fd;
	char *buf;              /* everything read, NUL-terminated */
	size_t len, cap;
	size_t body;            /* offset of the body, 0 until the head is in */
	int status;
	int eof;
};

/* Read what is there within ms; 1 if bytes came, 0 on timeout, -1 at EOF. */
static int xr_read(struct xr *x, int ms)
{
	struct pollfd p = { x->fd, POLLIN, 0 };
	ssize_t n;

	if (x->eof)
		return -1;
	if (poll(&p, 1, ms) <= 0)
		return 0;
	if (x->len + 65536 + 1 > x->cap) {
		x->cap = (x->len + 65536 + 1) * 2;
		x->buf = realloc(x->buf, x->cap);
		if (!x->buf)
			tap_bail("out of memory");
	}
	n = read(x->fd, x->buf + x->len, 65536);
	if (n <= 0) {
		x->eof = 1;
		return -1;
	}
	x->len += (size_t)n;
	x->buf[x->len] = '\0';
	if (!x->body) {
		char *e = strstr(x->buf, "\r\n\r\n");

		if (e) {
			x->body = (size_t)(e - x->buf) + 4;
			x->status = atoi(x->buf + 9);
		}
	}
	return 1;
}

/* Send a request (from src, NULL: 127.0.0.1) and read its head. */
static int xr_open(struct xr *x, const char *method, const char *path, const char *const *hdrs,
		   const char *body, size_t blen, const char *src)
{
	char head[8192];
	size_t n;
	int64_t end = h_now_ms() + WAIT_MS;

	memset(x, 0, sizeof(*x));
	x->fd = h_raw_connect(port, src);
	if (x->fd < 0)
		return -1;
	n = (size_t)snprintf(head, sizeof(head), "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n", method,
			     path);
	for (; hdrs && *hdrs; hdrs++)
		n += (size_t)snprintf(head + n, sizeof(head) - n, "%s\r\n", *hdrs);
	if (body || !strcmp(method, "POST"))
		n += (size_t)snprintf(head + n, sizeof(head) - n, "Content-Length: %zu\r\n", blen);
	n += (size_t)snprintf(head + n, sizeof(head) - n, "\r\n");
	if (h_raw_write(x->fd, head, n) || (blen && h_raw_write(x->fd, body, blen)))
		return -1;
	while (!x->body && h_now_ms() < end)
		if (xr_read(x, 100) < 0)
			break;
	return x->body ? 0 : -1;
}

/* Send a request whose answer comes later (a waiting poll). */
static int xr_send(struct xr *x, const char *method, const char *path)
{
	char head[1024];
	int n;

	memset(x, 0, sizeof(*x));
	x->fd = h_raw_connect(port, NULL);
	if (x->fd < 0)
		return -1;
	n = snprintf(head, sizeof(head), "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n"
		     "Content-Length: 0\r\n\r\n", method, path);
	return h_raw_write(x->fd, head, (size_t)n);
}

/* The body read so far ("" before the head is in; the empty string is
 * a buffer of its own, so that offsets into the prelude stay in bounds
 * for the compiler's checks). */
static const char *xr_body(const struct xr *x)
{
	static const char none[4096];

	return x->body ? x->buf + x->body : none;
}

/* Read until the body (from offset from) holds needle; 1 if it does. */
static int xr_until(struct xr *x, size_t from, const char *needle, int ms)
{
	int64_t end = h_now_ms() + ms;

	for (;;) {
		if (x->body && x->len >= x->body + from && strstr(x->buf + x->body + from, needle))
			return 1;
		if (h_now_ms() >= end || xr_read(x, 50) < 0) {
			return x->body && x->len >= x->body + from &&
			       strstr(x->buf + x->body + from, needle) != NULL;
		}
	}
}

/* Read to the end within ms; 1 if the server ended the response. */
static int xr_end(struct xr *x, int ms)
{
	int64_t end = h_now_ms() + ms;

	while (h_now_ms() < end)
		if (xr_read(x, 50) < 0)
			return 1;
	return 0;
}

/* Free what x holds and close its socket. */
static void xr_close(struct xr *x)
{
	if (x->fd >= 0)
		close(x->fd);
	free(x->buf);
	memset(x, 0, sizeof(*x));
	x->fd = -1;
}

/* The value of header name in x's head (a static copy; "" if absent,
 * NULL-safe for up to 4 at once). */
static const char *hdr(const struct xr *x, const char *name)
{
	static char vals[4][1024];
	static int k;
	char *v = vals[k++ % 4];
	const char *p = x->buf, *end = x->buf + (x->body ? x->body : 0);
	size_t nl = strlen(name);

	v[0] = '\0';
	while (p && p < end) {
		const char *eol = strstr(p, "\r\n");

		if (!eol)
			break;
		if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
			const char *s = p + nl + 1;

			while (*s == ' ')
				s++;
			snprintf(v, 1024, "%.*s", (int)(eol - s), s);
			return v;
		}
		p = eol + 2;
	}
	return v;
}

/* 1 if header name is present. */
static int has_hdr(const struct xr *x, const char *name)
{
	char probe[128];
	const char *p = x->buf, *end = x->buf + (x->body ? x->body : 0);

	snprintf(probe, sizeof(probe), "\r\n%s:", name);
	for (; p && p < end; p++)
		if (!strncasecmp(p, probe, strlen(probe)))
			return 1;
	return 0;
}

/* One whole exchange into x (the caller frees it with xr_close). */
static int xr_req(struct xr *x, const char *method, const char *path, const char *const *hdrs,
		  const char *body, const char *src)
{
	if (xr_open(x, method, path, hdrs, body, body ? strlen(body) : 0, src)) {
		tap_diag("%s %s: no answer", method, path);
		return -1;
	}
	xr_end(x, WAIT_MS);
	return 0;
}

/* Status and body of one exchange, for the short checks. */
static int quick(const char *method, const char *path, const char *body, char *out, size_t outlen)
{
	struct xr x;
	int st;

	if (xr_req(&x, method, path, NULL, body, NULL)) {
		xr_close(&x);
		return 0;
	}
	st = x.status;
	if (out)
		snprintf(out, outlen, "%s", xr_body(&x));
	xr_close(&x);
	return st;
}

/* A fresh session URL base: /PREFIX/000/<unique>. */
static void sess(char *out, size_t len, const char *prefix)
{
	snprintf(out, len, "%s/000/s%d-%d", prefix, (int)getpid(), ++uniq);
}

/* xhr poll url until the bodies seen hold needle; the concatenation. */
static int poll_until(const char *url, const char *needle, char *all, size_t alllen)
{
	char body[65536], path[512];
	int64_t end = h_now_ms() + WAIT_MS;

	snprintf(path, sizeof(path), "%s/xhr", url);
	all[0] = '\0';
	while (h_now_ms() < end) {
		if (quick("POST", path, NULL, body, sizeof(body)) != 200)
			return 0;
		strncat(all, body, alllen - strlen(all) - 1);
		if (strstr(all, needle))
			return 1;
	}
	return 0;
}

/* ---- base URL, iframe, info ----------------------------------------------- */

static void check_greeting(void)
{
	static const char *const nf[] = {
		"/echo/a", "/echo/a.html", "/echo//", "/echo///", "/echo/a/a", "/echo/a/a/",
		"/echo/a/", "/echo/websocket", "/echo/0/0/websocket", "/echo/a/a/nope",
	};
	struct xr x;
	size_t i;

	for (i = 0; i < 2; i++) {
		xr_req(&x, "GET", i ? "/echo/" : "/echo", NULL, NULL, NULL);
		tap_ok(x.status == 200 && !strcmp(xr_body(&x), "Welcome to SockJS!\n") &&
		       !strcmp(hdr(&x, "Content-Type"), "text/plain; charset=UTF-8") &&
		       !has_hdr(&x, "Set-Cookie"), "greeting at %s", i ? "/echo/" : "/echo");
		xr_close(&x);
	}
	for (i = 0; i < sizeof(nf) / sizeof(nf[0]); i++)
		tap_is_int(quick("GET", nf[i], NULL, NULL, 0), 404, "GET %s: 404", nf[i]);
	xr_req(&x, "POST", "/echo", NULL, "", NULL);
	tap_ok(x.status == 405 && !strcmp(hdr(&x, "Allow"), "GET") && !*xr_body(&x),
	       "POST greeting: 405 Allow: GET");
	xr_close(&x);
}

static void check_iframe(int bare_port)
{
	static const char *const ok_urls[] = {
		"/echo/iframe.html", "/echo/iframe-a.html", "/echo/iframe-.html",
		"/echo/iframe-0.1.2.html", "/echo/iframe-0.1.2abc-dirty.2144.html",
		"/echo/iframe-a.html?t=1234", "/echo/iframe-0.1.2.html?t=123414",
	};
	static const char *const bad[] = {
		"/echo/iframe.htm", "/echo/iframe", "/echo/IFRAME.HTML", "/echo/IFRAME",
		"/echo/iframe.HTML", "/echo/iframe.xml", "/echo/iframe-/.html",
	};
	char etag[128], line[160];
	const char *inm[2];
	struct xr x;
	size_t i;

	etag[0] = '\0';
	for (i = 0; i < sizeof(ok_urls) / sizeof(ok_urls[0]); i++) {
		xr_req(&x, "GET", ok_urls[i], NULL, NULL, NULL);
		tap_ok(x.status == 200 && !strcmp(hdr(&x, "Content-Type"), "text/html; charset=UTF-8") &&
		       !strcmp(hdr(&x, "Cache-Control"), "public, max-age=31536000") &&
		       strstr(hdr(&x, "Expires"), "GMT") && *hdr(&x, "ETag") &&
		       !has_hdr(&x, "Last-Modified") && !has_hdr(&x, "Set-Cookie") &&
		       strstr(xr_body(&x), "<script src=\"" SOCKJS_URL "\"></script>") &&
		       strstr(xr_body(&x), "SockJS.bootstrap_iframe()"),
		       "iframe page %s", ok_urls[i]);
		if (!etag[0])
			snprintf(etag, sizeof(etag), "%s", hdr(&x, "ETag"));
		else
			tap_is_str(hdr(&x, "ETag"), etag, "same ETag for %s", ok_urls[i]);
		xr_close(&x);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		tap_is_int(quick("GET", bad[i], NULL, NULL, 0), 404, "GET %s: 404", bad[i]);
	snprintf(line, sizeof(line), "If-None-Match: %s", etag);
	inm[0] = line;
	inm[1] = NULL;
	xr_req(&x, "GET", "/echo/iframe.html", inm, NULL, NULL);
	tap_ok(x.status == 304 && !has_hdr(&x, "Content-Type") && !*xr_body(&x),
	       "If-None-Match: 304, no body, no content type");
	xr_close(&x);
	inm[0] = "If-None-Match: \"other\"";
	xr_req(&x, "GET", "/echo/iframe.html", inm, NULL, NULL);
	tap_is_int(x.status, 200, "another ETag: 200");
	xr_close(&x);
	xr_req(&x, "POST", "/echo/iframe.html", NULL, "", NULL);
	tap_is_int(x.status, 405, "POST iframe: 405");
	xr_close(&x);
	{
		int saved = port;

		port = bare_port;
		tap_is_int(quick("GET", "/echo/iframe.html", NULL, NULL, 0), 404,
			   "no --sockjs-url: no iframe page");
		port = saved;
	}
}

/* The checks on an OPTIONS answer. */
static void check_options_at(const char *path, const char *methods)
{
	static const char *const with_origin[] = { "Origin: " ORIGIN,
						   "Access-Control-Request-Headers: a, b", NULL };
	struct xr x;
	int k;

	for (k = 0; k < 2; k++) {
		xr_req(&x, "OPTIONS", path, k ? with_origin : NULL, NULL, NULL);
		tap_ok(x.status == 204 && strstr(hdr(&x, "Cache-Control"), "public") &&
		       strstr(hdr(&x, "Cache-Control"), "max-age=31536000") &&
		       *hdr(&x, "Expires") &&
		       !strcmp(hdr(&x, "Access-Control-Max-Age"), "31536000") &&
		       !strcmp(hdr(&x, "Access-Control-Allow-Methods"), methods) && !*xr_body(&x),
		       "OPTIONS %s%s: 204, cacheable, %s", path, k ? " with Origin" : "", methods);
		if (k)
			tap_ok(!strcmp(hdr(&x, "Access-Control-Allow-Origin"), ORIGIN) &&
			       !strcmp(hdr(&x, "Access-Control-Allow-Credentials"), "true") &&
			       !strcmp(hdr(&x, "Access-Control-Allow-Headers"), "a, b"),
			       "OPTIONS %s: Origin echoed with credentials, headers granted", path);
		xr_close(&x);
	}
}

static void check_info(void)
{
	static const char *const good[] = { "Origin: " ORIGIN, NULL };
	static const char *const evil[] = { "Origin: http://evil.example", NULL };
	json_t *j1 = NULL, *j2 = NULL;
	struct xr x;

	xr_req(&x, "GET", "/echo/info", good, NULL, NULL);
	tap_ok(x.status == 200 && !strcmp(hdr(&x, "Content-Type"), "application/json; charset=UTF-8") &&
	       !strcmp(hdr(&x, "Cache-Control"), NO_CACHE) && !has_hdr(&x, "Expires") &&
	       !has_hdr(&x, "Last-Modified") && !has_hdr(&x, "Set-Cookie"),
	       "/info: JSON, not cached, no cookie");
	tap_ok(!strcmp(hdr(&x, "Access-Control-Allow-Origin"), ORIGIN) &&
	       !strcmp(hdr(&x, "Access-Control-Allow-Credentials"), "true"),
	       "/info: an allowed Origin is echoed with credentials");
	j1 = json_loads(xr_body(&x), 0, NULL);
	tap_ok(j1 && json_is_false(json_object_get(j1, "websocket")) &&
	       json_is_false(json_object_get(j1, "cookie_needed")) &&
	       json_array_size(json_object_get(j1, "origins")) == 1 &&
	       !strcmp(json_string_value(json_array_get(json_object_get(j1, "origins"), 0)) ?: "",
		       "*:*") &&
	       json_is_integer(json_object_get(j1, "entropy")),
	       "/info: websocket false, cookie_needed false, origins [\"*:*\"], entropy");
	xr_close(&x);
	xr_req(&x, "GET", "/echo/info", evil, NULL, NULL);
	tap_ok(x.status == 200 && !has_hdr(&x, "Access-Control-Allow-Origin"),
	       "/info: an Origin not in --cors-origin gets no CORS headers");
	j2 = json_loads(xr_body(&x), 0, NULL);
	tap_ok(j1 && j2 && json_integer_value(json_object_get(j1, "entropy")) !=
	       json_integer_value(json_object_get(j2, "entropy")), "/info: entropy changes");
	json_decref(j1);
	json_decref(j2);
	xr_close(&x);
	check_options_at("/echo/info", "OPTIONS, GET");
	tap_is_int(quick("POST", "/echo/info", "", NULL, 0), 405, "POST /info: 405");
}

/* ---- sessions --------------------------------------------------------------- */

static void check_session_urls(void)
{
	static const char *const any[] = {
		"/echo/a/a/xhr", "/echo/_/_/xhr", "/echo/1/1/xhr",
		"/echo/abcdefgh_i-j%20/abcdefg_i-j%20/xhr",
	};
	static const char *const bad[] = { "//", "/a./a", "/a/a.", "/./.", "/", "///" };
	char path[256], body[256], url[128], all[1024];
	size_t i;

	for (i = 0; i < sizeof(any) / sizeof(any[0]); i++) {
		tap_is_int(quick("POST", any[i], NULL, body, sizeof(body)), 200, "POST %s", any[i]);
		tap_ok(!strcmp(body, "o\n") || !strcmp(body, "h\n"), "%s: o (or h if reused)", any[i]);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(path, sizeof(path), "/echo%s/xhr", bad[i]);
		tap_is_int(quick("GET", path, NULL, NULL, 0), 404, "GET %s: 404", path);
		tap_is_int(quick("POST", path, NULL, NULL, 0), 404, "POST %s: 404", path);
	}
	/* The server id is ignored. */
	snprintf(url, sizeof(url), "s%d-%d", (int)getpid(), ++uniq);
	snprintf(path, sizeof(path), "/echo/000/%s/xhr", url);
	quick("POST", path, NULL, body, sizeof(body));
	tap_is_str(body, "o\n", "new session: o");
	snprintf(path, sizeof(path), "/echo/000/%s/xhr_send", url);
	tap_is_int(quick("POST", path, "[\"a\"]", body, sizeof(body)), 204, "xhr_send: 204");
	tap_is_str(body, "", "xhr_send: no body");
	snprintf(path, sizeof(path), "/echo/999/%s", url);
	tap_ok(poll_until(path, "a[\"a\"]\n", all, sizeof(all)) && !strcmp(all, "a[\"a\"]\n"),
	       "another server id reaches the same session: %s", all);

	/* Another client address with the same ids: a fresh session. */
	{
		struct xr x;

		snprintf(path, sizeof(path), "/echo/000/%s/xhr_send", url);
		quick("POST", path, "[\"private\"]", NULL, 0);
		h_sleep_ms(300);
		snprintf(path, sizeof(path), "/echo/000/%s/xhr", url);
		if (xr_req(&x, "POST", path, NULL, NULL, "127.0.0.2") == 0)
			tap_is_str(xr_body(&x), "o\n",
				   "another client address: a fresh session, not the messages");
		else
			tap_ok(0, "request from 127.0.0.2");
		xr_close(&x);
		snprintf(path, sizeof(path), "/echo/000/%s", url);
		tap_ok(poll_until(path, "private", all, sizeof(all)),
		       "the first client still gets its message");
	}
}

static void check_protocol(void)
{
	char url[128], path[256], body[256], all[1024];
	struct xr w, x;

	sess(url, sizeof(url), "/echo");
	snprintf(path, sizeof(path), "%s/xhr", url);
	tap_is_int(quick("POST", path, NULL, body, sizeof(body)), 200, "xhr on a new session: 200");
	tap_is_str(body, "o\n", "the open frame");
	snprintf(path, sizeof(path), "%s/xhr_send", url);
	tap_is_int(quick("POST", path, "[\"a\"]", body, sizeof(body)), 204, "xhr_send 204");
	tap_ok(poll_until(url, "a[\"a\"]\n", all, sizeof(all)), "the echo comes back as a[\"a\"]");
	tap_is_int(quick("POST", "/echo/000/bad_session/xhr_send", "[\"a\"]", NULL, 0), 404,
		   "xhr_send to an unknown session: 404");
	xr_req(&x, "POST", "/echo/000/bad_session/jsonp_send",
	       (const char *const[]){ "Content-Type: application/x-www-form-urlencoded", NULL },
	       "d=%5B%22a%22%5D", NULL);
	tap_is_int(x.status, 404, "jsonp_send to an unknown session: 404");
	xr_close(&x);

	/* A second receiving request while one waits. */
	snprintf(path, sizeof(path), "%s/xhr", url);
	xr_send(&w, "POST", path);
	h_sleep_ms(300);
	xr_req(&x, "POST", path, NULL, NULL, NULL);
	tap_ok(x.status == 200 && !strcmp(xr_body(&x), "c[2010,\"Another connection still open\"]\n"),
	       "a second receiving request: c[2010,...] (%s)", xr_body(&x));
	xr_close(&x);
	snprintf(path, sizeof(path), "%s/xhr_streaming", url);
	xr_req(&x, "POST", path, NULL, NULL, NULL);
	tap_ok(x.status == 200 && strstr(xr_body(&x), "\nc[2010,\"Another connection still open\"]\n") &&
	       x.eof, "a second streaming request: prelude, c[2010,...], end");
	xr_close(&x);
	xr_end(&w, WAIT_MS);
	tap_ok(!strcmp(xr_body(&w), "h\n"), "the waiting poll is not disturbed: heartbeat (%s)",
	       xr_body(&w));
	xr_close(&w);
}

/* The upstream closes: its code and reason, then c[3000,"Go away!"]. */
static void check_close(void)
{
	char url[128], path[256], body[256], all[4096];
	int i, n = 0;

	sess(url, sizeof(url), "/bye");
	snprintf(path, sizeof(path), "%s/xhr", url);
	quick("POST", path, NULL, body, sizeof(body));
	tap_is_str(body, "o\n", "close route: o");
	snprintf(path, sizeof(path), "%s/xhr_send", url);
	quick("POST", path, "[\"x\"]", NULL, 0);
	tap_ok(poll_until(url, "c[4001,\"bye\"]\n", all, sizeof(all)) && strstr(all, "a[\"x\"]\n"),
	       "the echo, then the upstream's close code and reason: %s", all);
	/* Until the session has ended the close repeats; then Go away!. */
	snprintf(path, sizeof(path), "%s/xhr", url);
	for (i = 0; i < 4; i++) {
		quick("POST", path, NULL, body, sizeof(body));
		n += !strcmp(body, "c[3000,\"Go away!\"]\n");
		if (strcmp(body, "c[3000,\"Go away!\"]\n") && strcmp(body, "c[4001,\"bye\"]\n"))
			tap_diag("unexpected: %s", body);
	}
	tap_ok(n >= 3, "a closed session keeps answering its close, then c[3000,\"Go away!\"]");
	snprintf(path, sizeof(path), "%s/jsonp?c=x", url);
	quick("GET", path, NULL, body, sizeof(body));
	tap_is_str(body, "/**/x(\"c[3000,\\\"Go away!\\\"]\");\r\n", "jsonp: the close frame");
	/* The tombstone lasts --idle-timeout (4 s); then the ids are free. */
	h_sleep_ms(5500);
	snprintf(path, sizeof(path), "%s/xhr", url);
	quick("POST", path, NULL, body, sizeof(body));
	tap_is_str(body, "o\n", "after the tombstone expired: a fresh session");

	/* Streams end after the close frame; a later one gets it at once. */
	sess(url, sizeof(url), "/goaway");
	{
		struct xr s1, s2;

		snprintf(path, sizeof(path), "%s/xhr_streaming", url);
		xr_open(&s1, "POST", path, NULL, NULL, 0, NULL);
		tap_ok(xr_until(&s1, 0, "\no\n", WAIT_MS), "stream 1: prelude, o");
		snprintf(body, sizeof(body), "%s/xhr_send", url);
		quick("POST", body, "[\"x\"]", NULL, 0);
		tap_ok(xr_until(&s1, 0, "c[3000,\"Go away!\"]\n", WAIT_MS) && xr_end(&s1, WAIT_MS),
		       "stream 1: a[\"x\"], c[3000,\"Go away!\"], then it ends");
		xr_open(&s2, "POST", path, NULL, NULL, 0, NULL);
		tap_ok(xr_until(&s2, 2049, "c[3000,\"Go away!\"]\n", WAIT_MS) && xr_end(&s2, WAIT_MS) &&
		       xr_body(&s2)[2047] == 'h', "stream 2: prelude, the close frame, the end");
		xr_close(&s1);
		xr_close(&s2);
	}
}

static void check_xhr(void)
{
	static const char *const ctypes[] = {
		"text/plain", "T", "application/json", "application/xml", "",
		"application/json; charset=utf-8", "text/xml; charset=utf-8", "text/xml",
	};
	static const char *const cors[] = { "Origin: " ORIGIN,
					    "Access-Control-Request-Headers: a, b, c", NULL };
	char url[128], path[256], body[256], all[4096], ct[128], want[256];
	const char *h[2];
	struct xr x;
	size_t i;

	check_options_at("/echo/abc/abc/xhr", "OPTIONS, POST");
	check_options_at("/echo/abc/abc/xhr_send", "OPTIONS, POST");
	check_options_at("/echo/abc/abc/xhr_streaming", "OPTIONS, POST");
	tap_is_int(quick("GET", "/echo/abc/abc/xhr", NULL, NULL, 0), 405, "GET xhr: 405");
	tap_is_int(quick("GET", "/echo/abc/abc/jsonp_send", NULL, NULL, 0), 405, "GET jsonp_send: 405");
	tap_is_int(quick("POST", "/echo/abc/abc/eventsource", "", NULL, 0), 405, "POST eventsource: 405");

	sess(url, sizeof(url), "/echo");
	snprintf(path, sizeof(path), "%s/xhr", url);
	xr_req(&x, "POST", path, cors, NULL, NULL);
	tap_ok(x.status == 200 && !strcmp(xr_body(&x), "o\n") &&
	       !strcmp(hdr(&x, "Content-Type"), "application/javascript; charset=UTF-8") &&
	       !strcmp(hdr(&x, "Cache-Control"), NO_CACHE) && !has_hdr(&x, "Expires") &&
	       !has_hdr(&x, "Last-Modified") &&
	       !strcmp(hdr(&x, "Access-Control-Allow-Origin"), ORIGIN) &&
	       !strcmp(hdr(&x, "Access-Control-Allow-Credentials"), "true") &&
	       !strcmp(hdr(&x, "Access-Control-Allow-Headers"), "a, b, c"),
	       "xhr: o, content type, not cached, CORS, requested headers granted");
	xr_close(&x);
	snprintf(path, sizeof(path), "%s/xhr_send", url);
	xr_req(&x, "POST", path, cors, "[\"x\"]", NULL);
	tap_ok(x.status == 204 && !*xr_body(&x) &&
	       !strcmp(hdr(&x, "Content-Type"), "text/plain; charset=UTF-8") &&
	       !strcmp(hdr(&x, "Cache-Control"), NO_CACHE) &&
	       !strcmp(hdr(&x, "Access-Control-Allow-Origin"), ORIGIN),
	       "xhr_send: 204, text/plain, not cached, CORS");
	xr_close(&x);
	tap_ok(poll_until(url, "a[\"x\"]\n", all, sizeof(all)), "xhr: a[\"x\"]");
	xr_req(&x, "POST", path, NULL, "[\"x\"]", NULL);
	tap_ok(!has_hdr(&x, "Access-Control-Allow-Origin") &&
	       !has_hdr(&x, "Access-Control-Allow-Headers"), "no Origin: no CORS headers");
	xr_close(&x);
	poll_until(url, "a[\"x\"]\n", all, sizeof(all));

	/* Bad bodies. */
	snprintf(path, sizeof(path), "%s/xhr_send", url);
	tap_is_int(quick("POST", path, "[\"x", body, sizeof(body)), 500, "broken JSON: 500");
	tap_ok(strstr(body, "Broken JSON encoding.") != NULL, "Broken JSON encoding. (%s)", body);
	tap_is_int(quick("POST", path, "", body, sizeof(body)), 500, "empty: 500");
	tap_ok(strstr(body, "Payload expected.") != NULL, "Payload expected. (%s)", body);
	tap_is_int(quick("POST", path, "{\"a\":1}", body, sizeof(body)), 500, "an object: 500");
	tap_ok(strstr(body, "Payload expected.") != NULL, "an object: Payload expected.");
	tap_is_int(quick("POST", path, "[\"a\"]", body, sizeof(body)), 204, "then a good one: 204");
	tap_ok(poll_until(url, "a[\"a\"]\n", all, sizeof(all)), "and its echo");

	/* Any content type. */
	for (i = 0; i < sizeof(ctypes) / sizeof(ctypes[0]); i++) {
		snprintf(ct, sizeof(ct), "Content-Type: %s", ctypes[i]);
		h[0] = ct;
		h[1] = NULL;
		xr_req(&x, "POST", path, h, "[\"a\"]", NULL);
		tap_is_int(x.status, 204, "xhr_send with Content-Type '%s': 204", ctypes[i]);
		xr_close(&x);
	}
	{
		int n = 0;
		char *p;
		int64_t end = h_now_ms() + WAIT_MS;

		snprintf(want, sizeof(want), "%s/xhr", url);
		while (n < 8 && h_now_ms() < end) {
			quick("POST", want, NULL, body, sizeof(body));
			for (p = body; (p = strstr(p, "\"a\"")); p += 3)
				n++;
		}
		tap_is_int(n, 8, "all 8 came back");
	}
	/* The heartbeat: nothing comes within --wait-max (2 s here). */
	snprintf(path, sizeof(path), "%s/xhr", url);
	tap_ok(quick("POST", path, NULL, body, sizeof(body)) == 200 && !strcmp(body, "h\n"),
	       "an idle poll answers h (%s)", body);
}

static void check_xhr_streaming(void)
{
	char url[128], path[256], sendp[256], msg[4200], big[4300];
	struct xr s;
	int i, ok = 1, total = 0;
	size_t off;

	sess(url, sizeof(url), "/echo");
	snprintf(path, sizeof(path), "%s/xhr_streaming", url);
	snprintf(sendp, sizeof(sendp), "%s/xhr_send", url);
	xr_open(&s, "POST", path, (const char *const[]){ "Origin: " ORIGIN, NULL }, NULL, 0, NULL);
	tap_ok(s.status == 200 &&
	       !strcmp(hdr(&s, "Content-Type"), "application/javascript; charset=UTF-8") &&
	       !strcmp(hdr(&s, "Cache-Control"), NO_CACHE) &&
	       !strcmp(hdr(&s, "Access-Control-Allow-Origin"), ORIGIN),
	       "xhr_streaming: 200, content type, not cached, CORS");
	xr_until(&s, 0, "\no\n", WAIT_MS);
	for (i = 0; i < 2048; i++)
		ok &= xr_body(&s)[i] == 'h';
	tap_ok(ok && !strncmp(xr_body(&s) + 2048, "\no\n", 3) && strlen(xr_body(&s)) == 2051,
	       "2048 h, a newline, then o");
	quick("POST", sendp, "[\"x\"]", NULL, 0);
	tap_ok(xr_until(&s, 2051, "a[\"x\"]\n", WAIT_MS), "a[\"x\"] as a line");

	/* The response limit: 128 KiB of frames, then the stream ends. */
	memset(msg, 'x', 4096);
	msg[4096] = '\0';
	snprintf(big, sizeof(big), "[\"%s\"]", msg);
	for (i = 0; i < 40 && !s.eof; i++) {
		quick("POST", sendp, big, NULL, 0);
		xr_read(&s, 200);
	}
	tap_ok(xr_end(&s, WAIT_MS), "the stream ends past the response limit");
	tap_ok(s.len - s.body > 128 * 1024 && s.len - s.body < 128 * 1024 + 2 * 4200 + 2051 + 20 * 4200,
	       "it carried about 128 KiB (%zu bytes)", s.len - s.body);
	for (const char *p = xr_body(&s); (p = strstr(p, msg)); p += 4096)
		total++;
	xr_close(&s);
	/* The next request continues, without another o. */
	xr_open(&s, "POST", path, NULL, NULL, 0, NULL);
	off = 2049;
	while (total < i && xr_read(&s, 2000) > 0) {
		int n = 0;

		for (const char *p = xr_body(&s) + off; (p = strstr(p, msg)); p += 4096)
			n++;
		if (total + n >= i)
			break;
	}
	for (const char *p = xr_body(&s) + 2049; (p = strstr(p, msg)); p += 4096)
		total++;
	tap_is_int(total, i, "every message arrived across both streams");
	tap_ok(!strstr(xr_body(&s), "\no\n"), "no second open frame");
	xr_close(&s);
}

static void check_eventsource(void)
{
	char url[128], path[256], sendp[256];
	struct xr s;

	sess(url, sizeof(url), "/echo");
	snprintf(path, sizeof(path), "%s/eventsource", url);
	snprintf(sendp, sizeof(sendp), "%s/xhr_send", url);
	xr_open(&s, "GET", path, NULL, NULL, 0, NULL);
	tap_ok(s.status == 200 && !strcmp(hdr(&s, "Content-Type"), "text/event-stream; charset=UTF-8") &&
	       !strcmp(hdr(&s, "Cache-Control"), NO_CACHE) && !has_hdr(&s, "Expires"),
	       "eventsource: 200, content type, not cached");
	tap_ok(xr_until(&s, 0, "data: o\r\n\r\n", WAIT_MS) &&
	       !strcmp(xr_body(&s), "\r\ndata: o\r\n\r\n"), "prelude \\r\\n, then data: o");
	quick("POST", sendp, "[\"x\"]", NULL, 0);
	tap_ok(xr_until(&s, 0, "data: a[\"x\"]\r\n\r\n", WAIT_MS), "data: a[\"x\"]");
	quick("POST", sendp, "[\"  \\u0000\\n\\r \"]", NULL, 0);
	tap_ok(xr_until(&s, 0, "data: a[\"  \\u0000\\n\\r \"]\r\n\r\n", WAIT_MS),
	       "controls arrive escaped in one data line");
	quick("POST", sendp, "[\"100% %41\"]", NULL, 0);
	tap_ok(xr_until(&s, 0, "data: a[\"100%25 %2541\"]\r\n\r\n", WAIT_MS),
	       "'%%' percent-encoded (the client decodeURI()s)");
	{
		/* The response limit applies to every streaming transport. */
		char big[4200];
		int i;

		memset(big, 'y', sizeof(big));
		memcpy(big, "[\"", 2);
		memcpy(big + 4096, "\"]", 3);
		for (i = 0; i < 40 && !s.eof; i++) {
			quick("POST", sendp, big, NULL, 0);
			xr_read(&s, 200);
		}
		tap_ok(xr_end(&s, WAIT_MS) && s.len - s.body > 128 * 1024,
		       "eventsource ends past the response limit (%zu bytes)", s.len - s.body);
	}
	xr_close(&s);
}

static void check_htmlfile(void)
{
	static const char *const hostile =
		"[\"</script><script>alert(1)</script>\",\"\xe2\x80\xa8\xe2\x80\xa9\","
		"\"\\u0000\",\"a[\\\"x\\\"]\",\"<!--\"]";
	char url[128], path[256], sendp[256], body[512];
	struct xr s;
	const char *b, *frames;
	size_t at;

	tap_is_int(quick("GET", "/echo/a/a/htmlfile", NULL, body, sizeof(body)), 500,
		   "htmlfile without c: 500");
	tap_ok(strstr(body, "\"callback\" parameter required") != NULL, "\"callback\" parameter required");
	tap_is_int(quick("GET", "/echo/a/a/htmlfile?c=alert(1)", NULL, body, sizeof(body)), 500,
		   "htmlfile with a bad callback: 500");
	tap_ok(strstr(body, "invalid \"callback\" parameter") != NULL, "invalid \"callback\" parameter");

	sess(url, sizeof(url), "/echo");
	snprintf(path, sizeof(path), "%s/htmlfile?c=%%63allback", url);
	snprintf(sendp, sizeof(sendp), "%s/xhr_send", url);
	xr_open(&s, "GET", path, NULL, NULL, 0, NULL);
	tap_ok(s.status == 200 && !strcmp(hdr(&s, "Content-Type"), "text/html; charset=UTF-8") &&
	       !strcmp(hdr(&s, "Cache-Control"), NO_CACHE), "htmlfile: 200, text/html, not cached");
	xr_until(&s, 0, "<script>\np(\"o\");\n</script>\r\n", WAIT_MS);
	b = xr_body(&s);
	frames = strstr(b, "\r\n\r\n");
	tap_ok(frames && frames + 4 - b > 1024 && strstr(b, "parent.callback;") &&
	       !strcmp(frames + 4, "<script>\np(\"o\");\n</script>\r\n"),
	       "prelude page past 1 KiB calling parent.callback, then the o frame");
	at = s.len - s.body;
	quick("POST", sendp, "[\"x\"]", NULL, 0);
	tap_ok(xr_until(&s, at, "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n", WAIT_MS),
	       "a[\"x\"] as a script frame");
	at = s.len - s.body;
	quick("POST", sendp, hostile, NULL, 0);
	xr_until(&s, at, "\\u003c!--", WAIT_MS);
	b = xr_body(&s) + at;
	{
		int n = 0, opens = 0;

		for (const char *p = b; (p = strstr(p, "</script>")); p++)
			n++;
		for (const char *p = b; (p = strstr(p, "<script>\np(\"")); p++)
			opens++;
		tap_ok(n >= 1 && n == opens && !strstr(b, "</script><script>alert") && !strstr(b, "<!--") &&
		       !strstr(b, "\xe2\x80\xa8") && !strstr(b, "\xe2\x80\xa9") &&
		       strstr(b, "\\u003c/script\\u003e") && strstr(b, "\\\\u2028") &&
		       strstr(b, "\\\\u0000") && strstr(b, "a[\\\\\\\"x\\\\\\\"]"),
		       "hostile strings are escaped inside their frames (%d frames)", n);
		tap_ok(memchr(b, '\0', s.len - s.body - at) == NULL, "no raw NUL");
	}
	xr_close(&s);
}

static void check_jsonp(void)
{
	char url[128], path[256], sendp[256], body[512], all[2048];
	static const char *const form[] = { "Content-Type: application/x-www-form-urlencoded", NULL };
	static const char *const plain[] = { "Content-Type: text/plain", NULL };
	struct xr x;

	tap_is_int(quick("GET", "/echo/a/a/jsonp", NULL, body, sizeof(body)), 500, "jsonp without c: 500");
	tap_ok(strstr(body, "\"callback\" parameter required") != NULL, "\"callback\" parameter required");
	sess(url, sizeof(url), "/echo");
	snprintf(path, sizeof(path), "%s/jsonp?c=%%63allback", url);
	snprintf(sendp, sizeof(sendp), "%s/jsonp_send", url);
	xr_req(&x, "GET", path, NULL, NULL, NULL);
	tap_ok(x.status == 200 && !strcmp(hdr(&x, "Content-Type"), "application/javascript; charset=UTF-8") &&
	       !strcmp(hdr(&x, "Cache-Control"), NO_CACHE) &&
	       !strcmp(xr_body(&x), "/**/callback(\"o\");\r\n"), "jsonp: /**/callback(\"o\");");
	xr_close(&x);
	xr_req(&x, "POST", sendp, form, "d=%5B%22x%22%5D", NULL);
	tap_ok(x.status == 200 && !strcmp(xr_body(&x), "ok") &&
	       !strcmp(hdr(&x, "Content-Type"), "text/plain; charset=UTF-8") &&
	       !strcmp(hdr(&x, "Cache-Control"), NO_CACHE), "jsonp_send (form): 200 ok");
	xr_close(&x);
	{
		int64_t end = h_now_ms() + WAIT_MS;

		all[0] = '\0';
		while (!strstr(all, "a[\\\"x\\\"]") && h_now_ms() < end) {
			quick("GET", path, NULL, body, sizeof(body));
			strncat(all, body, sizeof(all) - strlen(all) - 1);
		}
		tap_ok(strstr(all, "/**/callback(\"a[\\\"x\\\"]\");\r\n") != NULL,
		       "jsonp: the echo as /**/callback(\"a[\\\"x\\\"]\");");
	}
	xr_req(&x, "POST", sendp, form, "d=%5B%22x", NULL);
	tap_ok(x.status == 500 && strstr(xr_body(&x), "Broken JSON encoding."), "form: Broken JSON encoding.");
	xr_close(&x);
	static const char *const empties[] = { "", "d=", "p=p" };
	for (size_t i = 0; i < 3; i++) {
		xr_req(&x, "POST", sendp, form, empties[i], NULL);
		tap_ok(x.status == 500 && strstr(xr_body(&x), "Payload expected."),
		       "form '%s': Payload expected.", empties[i]);
		xr_close(&x);
	}
	xr_req(&x, "POST", sendp, form, "d=%5B%22abc%22%5D", NULL);
	tap_is_str(xr_body(&x), "ok", "form d=[\"abc\"]: ok");
	xr_close(&x);
	xr_req(&x, "POST", sendp, plain, "[\"%61bc\"]", NULL);
	tap_is_str(xr_body(&x), "ok", "raw body [\"%%61bc\"]: ok");
	xr_close(&x);
	{
		int64_t end = h_now_ms() + WAIT_MS;

		all[0] = '\0';
		while (!strstr(all, "%61bc") && h_now_ms() < end) {
			quick("GET", path, NULL, body, sizeof(body));
			strncat(all, body, sizeof(all) - strlen(all) - 1);
		}
		tap_ok(strstr(all, "\\\"abc\\\"") && strstr(all, "\\\"%61bc\\\""),
		       "both arrive, the raw one not percent-decoded: %s", all);
	}
}

static void check_cookie(void)
{
	static const char *const jar[] = { "Cookie: a=b; JSESSIONID=abcdef; c=d", NULL };
	static const char *const evil[] = { "Cookie: JSESSIONID=a\"b", NULL };
	char url[128], path[256];
	struct xr x;

	sess(url, sizeof(url), "/echo");
	snprintf(path, sizeof(path), "%s/xhr", url);
	xr_req(&x, "POST", path, NULL, NULL, NULL);
	tap_ok(!has_hdr(&x, "Set-Cookie"), "no JSESSIONID: none invented");
	xr_close(&x);
	xr_req(&x, "POST", path, jar, NULL, NULL);
	tap_is_str(hdr(&x, "Set-Cookie"), "JSESSIONID=abcdef; path=/", "JSESSIONID echoed");
	xr_close(&x);
	snprintf(path, sizeof(path), "%s/eventsource", url);
	xr_open(&x, "GET", path, jar, NULL, 0, NULL);
	tap_is_str(hdr(&x, "Set-Cookie"), "JSESSIONID=abcdef; path=/", "JSESSIONID on a stream");
	xr_close(&x);
	snprintf(path, sizeof(path), "%s/xhr", url);
	xr_req(&x, "POST", path, evil, NULL, NULL);
	tap_ok(!has_hdr(&x, "Set-Cookie"), "a JSESSIONID with a quote is not echoed");
	xr_close(&x);
	xr_req(&x, "GET", "/echo/info", jar, NULL, NULL);
	tap_ok(!has_hdr(&x, "Set-Cookie"), "no cookie on /info");
	xr_close(&x);
}

/* The characters the server must escape, and those the client escapes. */
static void check_json_encoding(void)
{
	char url[128], path[256], *payload, *want, *body, *all;
	size_t pl = 0, wl = 0;
	unsigned cp;
	static const unsigned ranges[][2] = {
		{ 0x200c, 0x200f }, { 0x2028, 0x202f }, { 0x2060, 0x206f }, { 0xfff0, 0xffff },
	};

	payload = malloc(65536);
	want = malloc(65536);
	body = malloc(65536);
	all = malloc(262144);
	sess(url, sizeof(url), "/echo");
	snprintf(path, sizeof(path), "%s/xhr", url);
	quick("POST", path, NULL, body, 65536);
	pl += (size_t)sprintf(payload + pl, "[\"");
	wl += (size_t)sprintf(want + wl, "a[\"");
	for (size_t r = 0; r < 4; r++)
		for (cp = ranges[r][0]; cp <= ranges[r][1]; cp++) {
			payload[pl++] = (char)(0xe0 | (cp >> 12));
			payload[pl++] = (char)(0x80 | ((cp >> 6) & 0x3f));
			payload[pl++] = (char)(0x80 | (cp & 0x3f));
			wl += (size_t)sprintf(want + wl, "\\u%04x", cp);
		}
	pl += (size_t)sprintf(payload + pl, "\"]");
	wl += (size_t)sprintf(want + wl, "\"]\n");
	payload[pl] = '\0';
	snprintf(path, sizeof(path), "%s/xhr_send", url);
	tap_is_int(quick("POST", path, payload, NULL, 0), 204, "the server-escaped characters sent raw");
	poll_until(url, "a[", all, 262144);
	tap_is_str(all, want, "they come back as \\uxxxx escapes");

	/* The client's escapes (controls, surrogate pairs, combining marks)
	 * decoded and re-encoded to the same characters. */
	pl = (size_t)sprintf(payload, "[\"");
	for (cp = 1; cp < 0x20; cp++)
		pl += (size_t)sprintf(payload + pl, "\\u%04x", cp);
	pl += (size_t)sprintf(payload + pl, "\\u0300\\u0333\\u0951\\ufb4e\\ud83d\\ude00\\u00ad\\u2000\"]");
	snprintf(path, sizeof(path), "%s/xhr_send", url);
	tap_is_int(quick("POST", path, payload, NULL, 0), 204, "the client-escaped characters");
	poll_until(url, "a[", all, 262144);
	{
		json_t *sent = json_loads(payload, 0, NULL);
		json_t *got = strlen(all) > 2 ? json_loads(all + 1, JSON_DISABLE_EOF_CHECK, NULL) : NULL;

		tap_ok(sent && got && json_equal(sent, got), "decoded to the same string: %s", all);
		json_decref(sent);
		json_decref(got);
	}
	free(payload);
	free(want);
	free(body);
	free(all);
}

/* An upstream binary message, a failed dial, idle expiry. */
static void check_edges(const char *rec)
{
	char url[128], path[256], body[512], all[2048], *log;
	int64_t end;

	sess(url, sizeof(url), "/raw");
	snprintf(path, sizeof(path), "%s/xhr", url);
	quick("POST", path, NULL, body, sizeof(body));
	tap_is_str(body, "o\n", "raw upstream: o");
	snprintf(path, sizeof(path), "%s/xhr_send", url);
	quick("POST", path, "[\"hello\",\"send bin 8203010203\"]", NULL, 0);
	tap_ok(poll_until(url, "c[1003,\"binary message\"]\n", all, sizeof(all)) &&
	       strstr(all, "a[\"hello\"]\n"),
	       "text first, then an upstream binary message: c[1003,\"binary message\"] (%s)", all);
	end = h_now_ms() + WAIT_MS;
	log = NULL;
	while (h_now_ms() < end) {
		free(log);
		log = h_read_file(rec);
		if (log && strstr(log, "bin close"))
			break;
		h_sleep_ms(100);
	}
	tap_ok(log && strstr(log, "bin close 1003"), "the upstream is closed with 1003");
	free(log);
	snprintf(path, sizeof(path), "%s/xhr", url);
	quick("POST", path, NULL, body, sizeof(body));
	/* Closed (by the core, as if the upstream had closed with 1003): the
	 * session repeats its close frame until a request acknowledges the
	 * close (poll_until may have sent that one already), then it has
	 * ended and answers 3000. */
	tap_ok(strcmp(body, "c[1003,\"binary message\"]\n") == 0 ||
	       strcmp(body, "c[3000,\"Go away!\"]\n") == 0,
	       "then the same close frame again, or 3000 once ended (%s)", body);

	/* A session nobody reads ends by --idle-timeout: upstream 1000 (a SockJS client close() sends nothing, so this is how it closes). */
	sess(url, sizeof(url), "/raw");
	snprintf(path, sizeof(path), "%s/xhr", url);
	quick("POST", path, NULL, body, sizeof(body));
	snprintf(path, sizeof(path), "%s/xhr_send", url);
	quick("POST", path, "[\"send idle 8100\"]", NULL, 0);
	end = h_now_ms() + 15000;
	log = NULL;
	while (h_now_ms() < end) {
		free(log);
		log = h_read_file(rec);
		if (log && strstr(log, "idle close"))
			break;
		h_sleep_ms(200);
	}
	tap_ok(log && strstr(log, "idle close 1000"), "no receiving request: upstream gets 1000");
	free(log);

	sess(url, sizeof(url), "/dead");
	snprintf(path, sizeof(path), "%s/xhr", url);
	tap_is_int(quick("POST", path, NULL, body, sizeof(body)), 200, "a dial that fails: 200");
	tap_is_str(body, "c[1002,\"Cannot connect to upstream\"]\n", "c[1002,...]");
	snprintf(path, sizeof(path), "%s/eventsource", url);
	quick("GET", path, NULL, body, sizeof(body));
	tap_is_str(body, "\r\ndata: c[1002,\"Cannot connect to upstream\"]\r\n\r\n",
		   "eventsource: the same close frame");
}

/* Bad input, then the bridge still serves. */
static void check_hostile(struct h_bridge *b)
{
	char path[4096], body[256];

	memset(path, 'a', sizeof(path));
	memcpy(path, "/echo/000/", 10);
	strcpy(path + 3000, "/xhr");
	tap_is_int(quick("POST", path, NULL, body, sizeof(body)), 200, "a 3000-byte session id");
	tap_is_int(quick("POST", "/echo/000/x/xhr_send", "\xff\xfe[", body, sizeof(body)), 500,
		   "garbage (the body is checked first, as SockJS does): 500");
	tap_ok(strstr(body, "Broken JSON encoding.") != NULL, "Broken JSON encoding.");
	tap_is_int(quick("POST", "/echo/000/x/xhr_send", "[\"\xff\"]", NULL, 0), 500,
		   "invalid UTF-8: 500");
	tap_is_int(quick("GET", "/echo/000/x/jsonp?c=a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g",
			 NULL, NULL, 0), 500, "a callback too long: 500");
	tap_ok(h_still_serving(b, "echo"), "still serving");
}

/* The stream heartbeat: one h after 25 s of nothing. */
static void check_heartbeat(void)
{
	char url[128], path[256];
	struct xr s;

	sess(url, sizeof(url), "/echo");
	snprintf(path, sizeof(path), "%s/eventsource", url);
	xr_open(&s, "GET", path, NULL, NULL, 0, NULL);
	xr_until(&s, 0, "data: o\r\n\r\n", WAIT_MS);
	tap_ok(xr_until(&s, 0, "data: h\r\n\r\n", 30000), "a heartbeat frame within 25 s");
	xr_close(&s);
}

/* ---- --lean-long-polls (HTTP/1.1) -------------------------------------------- */

/* Send one HTTP/1.1 request (headers hdrs, body or none) on a connection
 * of its own to p; the socket, or -1. */
static int send11(int p, const char *method, const char *path, const char *const *hdrs,
		  const char *body)
{
	char head[4096];
	size_t n;
	int fd = h_raw_connect(p, NULL);

	if (fd < 0)
		return -1;
	n = (size_t)snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", method,
			     path);
	for (; hdrs && *hdrs; hdrs++)
		n += (size_t)snprintf(head + n, sizeof(head) - n, "%s\r\n", *hdrs);
	n += (size_t)snprintf(head + n, sizeof(head) - n, "Content-Length: %zu\r\n\r\n%s",
			      body ? strlen(body) : 0, body ? body : "");
	if (h_raw_write(fd, head, n)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Read into x (from fd, taken) one whole answer framed by Content-Length. */
static int read11(struct xr *x, int fd, int ms)
{
	int64_t end = h_now_ms() + ms;

	memset(x, 0, sizeof(*x));
	x->fd = fd;
	while (h_now_ms() < end) {
		if (x->body && x->len >= x->body + (size_t)atol(hdr(x, "Content-Length")))
			return 0;
		if (xr_read(x, 50) < 0)
			break;
	}
	return x->body && x->len >= x->body + (size_t)atol(hdr(x, "Content-Length")) ? 0 : -1;
}

/* x's head without its status line and Date (for comparing two answers). */
static void head_but_date(const struct xr *x, char *out, size_t len)
{
	const char *p = strstr(x->buf, "\r\n"), *end = x->buf + x->body;
	size_t n = 0;

	out[0] = '\0';
	while (p && p + 2 < end) {
		const char *eol = strstr(p + 2, "\r\n");

		if (!eol)
			break;
		if (strncasecmp(p + 2, "Date:", 5) != 0)
			n += (size_t)snprintf(out + n, n < len ? len - n : 0, "%.*s|",
					      (int)(eol - p - 2), p + 2);
		p = eol;
	}
}

/* A SockJS poll that waits on HTTP/1.1 leaves libmicrohttpd: its answer,
 * built after the connection's memory is gone, still echoes JSESSIONID
 * and the requested CORS headers, and equals an immediate one but for
 * Date; a receive that has to create its session (on the Redis store the
 * store's answer comes after the poll left) creates it with the kept
 * headers; JSONP keeps its callback. */
static void check_lean(void)
{
	static const char *const h[] = { "Origin: " ORIGIN, "Access-Control-Request-Headers: x-a, x-b",
					 "Cookie: k=v; JSESSIONID=lean1", NULL };
	char url[128], path[256], send[256], waited[2048], now[2048];
	struct xr x;
	int fd;

	sess(url, sizeof(url), "/echo");
	snprintf(path, sizeof(path), "%s/xhr", url);
	snprintf(send, sizeof(send), "%s/xhr_send", url);
	fd = send11(port, "POST", path, h, NULL);
	tap_ok(fd >= 0 && read11(&x, fd, WAIT_MS) == 0 && x.status == 200 &&
	       !strcmp(xr_body(&x), "o\n") &&
	       !strcmp(hdr(&x, "Set-Cookie"), "JSESSIONID=lean1; path=/") &&
	       !strcmp(hdr(&x, "Access-Control-Allow-Headers"), "x-a, x-b") &&
	       !strcmp(hdr(&x, "Access-Control-Allow-Origin"), ORIGIN),
	       "lean: HTTP/1.1 xhr creates the session: o, JSESSIONID, CORS");
	xr_close(&x);
	/* A receive that waits until a send comes. */
	fd = send11(port, "POST", path, h, NULL);
	h_sleep_ms(300);
	tap_is_int(quick("POST", send, "[\"w\"]", NULL, 0), 204, "lean: a send while it waits");
	tap_ok(fd >= 0 && read11(&x, fd, WAIT_MS) == 0 && x.status == 200 &&
	       !strcmp(xr_body(&x), "a[\"w\"]\n") &&
	       !strcmp(hdr(&x, "Set-Cookie"), "JSESSIONID=lean1; path=/") &&
	       !strcmp(hdr(&x, "Access-Control-Allow-Headers"), "x-a, x-b") &&
	       !strcmp(hdr(&x, "Access-Control-Allow-Origin"), ORIGIN) &&
	       !strcmp(hdr(&x, "Cache-Control"), NO_CACHE),
	       "lean: the waiting xhr gets it with JSESSIONID and CORS");
	head_but_date(&x, waited, sizeof(waited));
	xr_close(&x);
	/* The same answer without waiting. */
	tap_is_int(quick("POST", send, "[\"i\"]", NULL, 0), 204, "lean: a send first");
	h_sleep_ms(300);
	fd = send11(port, "POST", path, h, NULL);
	tap_ok(fd >= 0 && read11(&x, fd, WAIT_MS) == 0 && !strcmp(xr_body(&x), "a[\"i\"]\n"),
	       "lean: then an xhr gets it at once");
	head_but_date(&x, now, sizeof(now));
	xr_close(&x);
	tap_is_str(waited, now, "lean: the waiting answer's headers are the immediate one's");
	/* JSONP. */
	snprintf(path, sizeof(path), "%s/jsonp?c=cb", url);
	fd = send11(port, "GET", path, h, NULL);
	h_sleep_ms(300);
	quick("POST", send, "[\"j\"]", NULL, 0);
	tap_ok(fd >= 0 && read11(&x, fd, WAIT_MS) == 0 &&
	       strstr(xr_body(&x), "cb(\"a[\\\"j\\\"]\");") != NULL &&
	       !strcmp(hdr(&x, "Set-Cookie"), "JSESSIONID=lean1; path=/"),
	       "lean: a waiting jsonp keeps its callback");
	xr_close(&x);
}

/* The RSS per waiting xhr receive (KiB) on a bridge started with route
 * and --lean-long-polls lean, or -1: N sessions, each then with a receive
 * that waits, on HTTP/1.1. */
static double held_rss(const char *route, const char *lean)
{
	enum { N = 300 };
	static int fd[N];
	struct h_bridge b;
	char url[128], path[256];
	long before, during;
	int held = 0, saved = port;

	if (h_bridge_start(&b, route, "--lean-long-polls", lean, "--wait-max", "20",
			   "--log-level", "warn", NULL))
		tap_bail("pollbridge --lean-long-polls %s did not start", lean);
	port = b.port;
	before = h_rss_kib(b.proc->pid);
	for (int i = 0; i < N; i++) {
		sess(url, sizeof(url), "/echo");
		snprintf(path, sizeof(path), "%s/xhr", url);
		fd[i] = -1;
		if (quick("POST", path, NULL, NULL, 0) != 200)
			continue;
		fd[i] = send11(port, "POST", path, NULL, NULL);
		held += fd[i] >= 0;
	}
	h_sleep_ms(500);
	during = h_rss_kib(b.proc->pid);
	tap_is_int(held, N, "memory (%s): %d SockJS sessions with a waiting xhr", lean, N);
	for (int i = 0; i < N; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	tap_is_int(h_stop(b.proc, SIGTERM, 15000), 0, "memory (%s): the bridge exits 0", lean);
	port = saved;
	return h_rss_per(before, during, N, lean, "waiting receives");
}

int main(void)
{
	struct h_bridge b, bare;
	char echo_r[128], bye_r[128], goaway_r[128], raw_r[128], dead_r[128], rec[512];
	char rawpath[512], rest[32];
	int echo_port, bye_port, goaway_port, raw_port, dead_port, dead_fd;
	const char *dir = getenv("PB_UPSTREAMS") ? getenv("PB_UPSTREAMS") : "tests/upstreams";
	char *raw_argv[] = { "python3", rawpath, "--record", rec, NULL };
	struct h_proc *rp;

	h_init();
	if (!h_ws_available()) {
		printf("1..0 # SKIP node or the npm ws package is missing\n");
		return 0;
	}
	if (!h_ws_start(&echo_port, "echo", NULL) ||
	    !h_ws_start(&bye_port, "close-after-echo", "4001", "bye", NULL) ||
	    !h_ws_start(&goaway_port, "close-after-echo", "3000", "Go away!", NULL))
		tap_bail("the npm ws upstreams did not start");
	snprintf(rec, sizeof(rec), "%s/raw.rec", h_tmpdir());
	snprintf(rawpath, sizeof(rawpath), "%s/raw_ws.py", dir);
	rp = h_spawn(raw_argv, "listening on ", 10000, rest, sizeof(rest));
	if (!rp)
		tap_bail("tests/upstreams/raw_ws.py did not start");
	raw_port = atoi(rest);
	dead_port = 0;
	dead_fd = h_listen(&dead_port);
	if (dead_fd < 0)
		tap_bail("no port for the dead upstream");
	close(dead_fd);         /* nothing listens there now: refused */
	snprintf(echo_r, sizeof(echo_r), "--route=echo=ws://127.0.0.1:%d/ sockjs=/echo", echo_port);
	snprintf(bye_r, sizeof(bye_r), "--route=bye=ws://127.0.0.1:%d/ sockjs=/bye", bye_port);
	snprintf(goaway_r, sizeof(goaway_r), "--route=goaway=ws://127.0.0.1:%d/ sockjs=/goaway",
		 goaway_port);
	snprintf(raw_r, sizeof(raw_r), "--route=raw=ws://127.0.0.1:%d/ sockjs=/raw", raw_port);
	snprintf(dead_r, sizeof(dead_r), "--route=dead=ws://127.0.0.1:%d/ sockjs=/dead", dead_port);
	if (h_bridge_start(&b, echo_r, bye_r, goaway_r, raw_r, dead_r, "--wait-max", "2",
			   "--idle-timeout", "4", "--connect-timeout", "2", "--cors-origin", ORIGIN,
			   "--sockjs-url", SOCKJS_URL, NULL))
		tap_bail("pollbridge with sockjs= routes did not start");
	if (h_bridge_start(&bare, echo_r, NULL))
		tap_bail("pollbridge without --sockjs-url did not start");
	port = b.port;

	check_greeting();
	check_iframe(bare.port);
	check_info();
	check_session_urls();
	check_protocol();
	check_xhr();
	check_xhr_streaming();
	check_eventsource();
	check_htmlfile();
	check_jsonp();
	check_cookie();
	check_json_encoding();
	check_close();
	check_edges(rec);
	check_hostile(&b);
	check_heartbeat();
	check_lean();
	/* --lean-long-polls: a SockJS receive that waits gives libmicrohttpd's
	 * connection memory back, as a /v1 poll does (test_lean_polls). */
	h_check_lean_memory(held_rss, echo_r, "waiting SockJS receive");
	(void)errno;
	return tap_done();
}
