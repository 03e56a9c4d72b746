/*
 * test_hostile.c: hostile HTTP against the front end, over raw sockets
 * where libcurl would hide what is checked: request smuggling through an
 * ambiguous body length (Content-Length with Transfer-Encoding, two
 * Content-Lengths, odd codings: 400 or 501 with the error JSON, the
 * connection closed, and the bytes after it never read as a request);
 * slowloris (20 connections trickling header bytes under --max-connections
 * 20 are closed after --header-timeout and /healthz answers meanwhile; a
 * body slower than --min-body-rate is cut; slow but in-bound requests and
 * long polls are served); a 256 KiB header that the client can read a 431
 * for (lingering close instead of a reset); an encoded NUL in the path or
 * query, or a raw NUL byte in the request line (400); a malformed id on a
 * JSONP poll (wrapped, 200); and 431
 * counted under its own code in /metrics.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

static char echo_route[96];	/* --route=echo=ws://127.0.0.1:PORT/ */

/* Number of messages a short poll of id sees after 0, -1 on error. */
static long messages_seen(struct h_bridge *b, const char *id)
{
	struct h_resp r;
	json_t *m;
	long n = -1;

	if (h_poll(b, id, "after=0", &r) == 200) {
		m = json_object_get(r.json, "messages");
		n = json_is_array(m) ? (long)json_array_size(m) : -1;
	}
	h_resp_free(&r);
	return n;
}

/* ---- request smuggling ------------------------------------------------------ */

/* One ambiguous request: its framing headers, and the status wanted. */
struct smuggle_case {
	const char *what;
	const char *framing;	/* header lines, each ending in \r\n */
	long status;
	const char *code;
};

/* Send, on one connection, an ambiguous POST carrying a smuggled POST to
 * id's messages, then a victim's GET with Cookie and Authorization. The
 * answer must be status with the error JSON and Connection: close; the
 * connection must end there; and no message may reach the session. */
static void smuggle(struct h_bridge *b, const char *id, const struct smuggle_case *c)
{
	char req[2048], victim[512];
	struct h_resp r;
	int fd, res, n;

	snprintf(victim, sizeof(victim), "GET /v1/sessions/%s/messages?after=0 HTTP/1.1\r\n"
		 "Host: 127.0.0.1\r\nCookie: victim=secret-cookie\r\n"
		 "Authorization: Bearer victim-token\r\n\r\n", id);
	/* "0\r\n\r\n" is the body both ways: 5 bytes, or an empty chunked one.
	 * What follows is a request that swallows the victim's as its body. */
	n = snprintf(req, sizeof(req), "POST /v1/sessions/%s/messages HTTP/1.1\r\n"
		     "Host: 127.0.0.1\r\nContent-Type: text/plain\r\n%s\r\n0\r\n\r\n"
		     "POST /v1/sessions/%s/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		     "Content-Type: text/plain\r\nContent-Length: 100\r\n\r\n%s",
		     id, c->framing, id, victim);
	fd = h_raw_connect(b->port, NULL);
	if (fd < 0 || h_raw_write(fd, req, (size_t)n))
		tap_bail("smuggling: cannot talk to the bridge");
	res = h_raw_read(fd, H_RAW_MS, &r);
	tap_ok(res == H_RAW_ANSWER && r.status == c->status, "smuggling, %s: %ld (got %ld %s)",
	       c->what, c->status, r.status, r.body ? r.body : "");
	tap_is_str(h_err(&r), c->code, "smuggling, %s: error %s", c->what, c->code);
	tap_ok(!strcasecmp(r.connection, "close"), "smuggling, %s: Connection: close (\"%s\")",
	       c->what, r.connection);
	h_resp_free(&r);
	res = h_raw_read(fd, 2000, &r);
	tap_is_int(res, H_RAW_CLOSED,
		   "smuggling, %s: the connection is closed, nothing more answered", c->what);
	h_resp_free(&r);
	close(fd);
	h_sleep_ms(300);
	tap_is_int(messages_seen(b, id), 0, "smuggling, %s: nothing reached the session", c->what);
}

/* A request with the given framing headers and body on a fresh connection:
 * the status and error wanted (code NULL: libmicrohttpd answers by itself,
 * not in JSON), and the connection closed after it. */
static void bad_framing(struct h_bridge *b, const char *what, const char *framing,
			const char *body, long status, const char *code)
{
	char req[1024];
	struct h_resp r;
	int fd, res, n;

	n = snprintf(req, sizeof(req), "POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		     "Content-Type: application/json\r\n%s\r\n%s", framing, body);
	fd = h_raw_connect(b->port, NULL);
	if (fd < 0 || h_raw_write(fd, req, (size_t)n))
		tap_bail("framing: cannot talk to the bridge");
	res = h_raw_read(fd, H_RAW_MS, &r);
	tap_ok(res == H_RAW_ANSWER && r.status == status, "framing, %s: %ld (got %ld %s)", what,
	       status, r.status, r.body ? r.body : "");
	if (code)
		tap_is_str(h_err(&r), code, "framing, %s: error %s", what, code);
	h_resp_free(&r);
	tap_ok(h_raw_closed(fd, 2000), "framing, %s: the connection is closed", what);
	close(fd);
}

/* Request smuggling and the other framing errors of RFC 9112 section 6. */
static void check_smuggling(void)
{
	static const struct smuggle_case cases[] = {
		{ "CL + TE chunked", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
		  400, "bad_request" },
		{ "TE Chunked + CL", "Transfer-Encoding: Chunked\r\nContent-Length: 5\r\n",
		  400, "bad_request" },
		{ "CL + TE chunked, identity",
		  "Content-Length: 5\r\nTransfer-Encoding: chunked, identity\r\n",
		  400, "bad_request" },
		{ "two Content-Lengths", "Content-Length: 5\r\nContent-Length: 300\r\n",
		  400, "bad_request" },
		{ "two equal Content-Lengths", "Content-Length: 5\r\nContent-Length: 5\r\n",
		  400, "bad_request" },
		{ "two Transfer-Encodings",
		  "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
		  400, "bad_request" },
	};
	static const char body[] = "{\"route\":\"echo\"}";
	struct h_bridge b;
	char id[64], framing[64];

	if (h_bridge_start(&b, echo_route, NULL))
		tap_bail("pollbridge did not start");
	if (h_create(&b, "echo", id, NULL) != 201)
		tap_bail("smuggling: create failed");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		smuggle(&b, id, &cases[i]);

	/* libmicrohttpd 0.9.75 refuses a Content-Length that is not a number
	 * itself (an HTML 400, then close) before the front end sees it. */
	snprintf(framing, sizeof(framing), "Content-Length: +%zu\r\n", sizeof(body) - 1);
	bad_framing(&b, "Content-Length with a sign", framing, body, 400, NULL);
	snprintf(framing, sizeof(framing), "Content-Length: %zux\r\n", sizeof(body) - 1);
	bad_framing(&b, "Content-Length with garbage", framing, body, 400, NULL);
	snprintf(framing, sizeof(framing), "Content-Length: %zu, %zu\r\n", sizeof(body) - 1,
		 sizeof(body) - 1);
	bad_framing(&b, "Content-Length as a list", framing, body, 400, NULL);
	snprintf(framing, sizeof(framing), "Content-Length: -1\r\n");
	bad_framing(&b, "a negative Content-Length", framing, body, 400, NULL);
	bad_framing(&b, "TE identity", "Transfer-Encoding: identity\r\n", body, 400, "bad_request");
	bad_framing(&b, "TE chunked, identity", "Transfer-Encoding: chunked, identity\r\n",
		    "10\r\n{\"route\":\"echo\"}\r\n0\r\n\r\n", 400, "bad_request");
	bad_framing(&b, "TE gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n",
		    "0\r\n\r\n", 501, "not_implemented");
	bad_framing(&b, "TE chunked twice", "Transfer-Encoding: chunked, chunked\r\n",
		    "0\r\n\r\n", 400, "bad_request");

	/* Plain chunked and plain Content-Length bodies still work. */
	{
		char req[512];
		struct h_resp r;
		int fd;

		fd = h_raw_connect(b.port, NULL);
		snprintf(req, sizeof(req), "POST /v1/sessions/%s/messages HTTP/1.1\r\n"
			 "Host: 127.0.0.1\r\nContent-Type: text/plain\r\n"
			 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", id);
		if (fd < 0 || h_raw_write(fd, req, strlen(req)))
			tap_bail("framing: cannot talk to the bridge");
		h_raw_read(fd, H_RAW_MS, &r);
		tap_is_int(r.status, 200, "framing: a chunked send on a keep-alive connection");
		h_resp_free(&r);
		/* h_raw_read keeps one answer: the next request after it */
		snprintf(req, sizeof(req), "POST /v1/sessions/%s/messages HTTP/1.1\r\n"
			 "Host: 127.0.0.1\r\nContent-Type: text/plain\r\n"
			 "Content-Length: 5\r\n\r\nworld", id);
		if (h_raw_write(fd, req, strlen(req)))
			tap_bail("framing: the keep-alive connection was closed");
		h_raw_read(fd, H_RAW_MS, &r);
		tap_ok(r.status == 200, "framing: then a Content-Length send on the same one (%ld %s)",
		       r.status, r.body ? r.body : "");
		h_resp_free(&r);
		close(fd);
	}
	tap_ok(h_still_serving(&b, "echo"), "smuggling: still serving");
	h_stop(b.proc, SIGTERM, 5000);
}

/* ---- slowloris ------------------------------------------------------------------- */

#define SLOW_N 20

/* 20 connections trickling header bytes fill --max-connections 20; they
 * are closed after --header-timeout 2, and /healthz waiting behind them
 * is answered; in-bound slow requests and long polls are served. */
static void check_slowloris(void)
{
	static const char slow_req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
				       "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
	static const char hz[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	struct h_bridge b;
	struct h_resp r;
	int fds[SLOW_N], hfd = -1, nclosed = 0, i, early = 0, res;
	int64_t t0, closed_at[SLOW_N], hz_at = -1, now;
	size_t pos = 0;
	char id[64], req[512];

	if (h_bridge_start(&b, echo_route, "--max-connections", "20", "--connection-timeout", "3",
			   "--header-timeout", "2", "--min-body-rate", "1000", "--wait-max", "4",
			   NULL))
		tap_bail("pollbridge --header-timeout 2 did not start");
	for (i = 0; i < SLOW_N; i++) {
		fds[i] = h_raw_connect(b.port, NULL);
		closed_at[i] = -1;
		if (fds[i] < 0)
			tap_bail("slowloris: connection %d failed", i);
	}
	t0 = h_now_ms();
	/* One byte per connection every 0.5 s, for up to 8 s. */
	while ((now = h_now_ms()) - t0 < 8000 && (nclosed < SLOW_N || hz_at < 0)) {
		for (i = 0; i < SLOW_N; i++) {
			if (closed_at[i] >= 0)
				continue;
			if (h_raw_closed(fds[i], 0) ||
			    (pos % 5 == 0 &&
			     send(fds[i], slow_req + pos / 5 % (sizeof(slow_req) - 1), 1,
				  MSG_NOSIGNAL) < 0)) {
				closed_at[i] = h_now_ms() - t0;
				nclosed++;
			}
		}
		pos++;
		if (hfd < 0 && now - t0 >= 500) {
			hfd = h_raw_connect(b.port, NULL);
			if (hfd < 0 || h_raw_write(hfd, hz, sizeof(hz) - 1))
				tap_bail("slowloris: the /healthz connection failed");
		}
		if (hfd >= 0 && hz_at < 0) {
			struct pollfd pfd = { .fd = hfd, .events = POLLIN };

			if (poll(&pfd, 1, 0) > 0) {
				h_raw_read(hfd, 1000, &r);
				tap_is_int(r.status, 200, "slowloris: /healthz is answered");
				h_resp_free(&r);
				hz_at = h_now_ms() - t0;
			}
		}
		h_sleep_ms(100);
	}
	for (i = 0; i < SLOW_N; i++) {
		if (closed_at[i] >= 0 && closed_at[i] < 1500)
			early++;
		close(fds[i]);
	}
	if (hfd >= 0)
		close(hfd);
	tap_is_int(nclosed, SLOW_N, "slowloris: all 20 trickling connections are closed");
	tap_is_int(early, 0, "slowloris: none before about 2 s");
	{
		int64_t last = 0;

		for (i = 0; i < SLOW_N; i++)
			if (closed_at[i] > last)
				last = closed_at[i];
		tap_ok(nclosed == SLOW_N && last < 4000,
		       "slowloris: all closed within 4 s (last at %lld ms)", (long long)last);
	}
	tap_ok(hz_at >= 0 && hz_at < 4500, "slowloris: /healthz answered within 4.5 s (%lld ms)",
	       (long long)hz_at);

	/* A request whose headers take 1.2 s (under 2) is served. */
	hfd = h_raw_connect(b.port, NULL);
	for (i = 0; hfd >= 0 && i < 4; i++) {
		h_raw_write(hfd, hz + i * 10, i < 3 ? 10 : sizeof(hz) - 1 - 30);
		h_sleep_ms(i < 3 ? 400 : 0);
	}
	res = hfd >= 0 ? h_raw_read(hfd, H_RAW_MS, &r) : H_RAW_CLOSED;
	tap_ok(res == H_RAW_ANSWER && r.status == 200,
	       "slowloris: headers sent over 1.2 s are served (%ld)", r.status);
	h_resp_free(&r);
	/* The keep-alive connection is then closed after --header-timeout. */
	tap_ok(h_raw_closed(hfd, 4000), "slowloris: the idle keep-alive connection is then closed");
	close(hfd);

	if (h_create(&b, "echo", id, NULL) != 201)
		tap_bail("slowloris: create failed");
	/* A body at 200 B/s (under --min-body-rate 1000) is cut after about
	 * 2 s plus one second per 1000 bytes. */
	hfd = h_raw_connect(b.port, NULL);
	snprintf(req, sizeof(req), "POST /v1/sessions/%s/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		 "Content-Type: text/plain\r\nContent-Length: 2000\r\n\r\n", id);
	if (hfd < 0 || h_raw_write(hfd, req, strlen(req)))
		tap_bail("slowloris: cannot talk to the bridge");
	t0 = h_now_ms();
	for (i = 0; i < 20; i++) {
		char part[100];

		memset(part, 'b', sizeof(part));
		if (h_raw_write(hfd, part, sizeof(part)))
			break;
		h_sleep_ms(500);
	}
	now = h_now_ms() - t0;
	tap_ok(i < 20 && now >= 1800 && now < 5000,
	       "slowloris: a body at 200 B/s is cut after about 2.5 s (%lld ms, %d parts)",
	       (long long)now, i);
	close(hfd);
	/* A body at a good rate, starting 1.5 s after its headers, is served. */
	hfd = h_raw_connect(b.port, NULL);
	snprintf(req, sizeof(req), "POST /v1/sessions/%s/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		 "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n", id);
	if (hfd < 0 || h_raw_write(hfd, req, strlen(req)))
		tap_bail("slowloris: cannot talk to the bridge");
	h_sleep_ms(1500);
	h_raw_write(hfd, "fast!", 5);
	res = h_raw_read(hfd, H_RAW_MS, &r);
	tap_ok(res == H_RAW_ANSWER && r.status == 200,
	       "slowloris: a body within the bound is served (%ld)", r.status);
	h_resp_free(&r);
	close(hfd);
	/* A long poll that waits 4 s (past --header-timeout) is not cut. */
	{
		json_t *got = json_array();

		tap_is_int(h_collect(&b, id, 0, 1, 3000, got), 1, "slowloris: the body came back");
		json_decref(got);
	}
	h_poll(&b, id, "after=1&wait=4", &r);
	tap_ok(r.status == 200 && r.seconds >= 3.5, "slowloris: a 4 s long poll is answered (%ld, "
	       "%.2f s)", r.status, r.seconds);
	h_resp_free(&r);
	tap_ok(h_still_serving(&b, "echo"), "slowloris: still serving");
	h_stop(b.proc, SIGTERM, 5000);
}

/* ---- oversized headers ------------------------------------------------------------- */

struct big_writer {
	int fd;
	const char *data;
	size_t len;
	int failed;
};

/* Thread: write the whole oversized request, as a client that sends first
 * and reads after. */
static void *big_write(void *arg)
{
	struct big_writer *w = arg;

	w->failed = h_raw_write(w->fd, w->data, w->len);
	return NULL;
}

/* A 256 KiB header: the client writes it all, then reads a complete 431. */
static void check_big_header(void)
{
	struct h_bridge b;
	struct big_writer w;
	struct h_resp r;
	pthread_t th;
	size_t n = 256 * 1024, hl;
	char *req = malloc(n + 128), url[128], hdr[5000];
	const char *hdrs[] = { hdr, NULL };
	double before;
	int res;

	if (!req)
		tap_bail("out of memory");
	if (h_bridge_start(&b, echo_route, "--max-header-bytes", "4096", NULL))
		tap_bail("pollbridge did not start");
	hl = (size_t)snprintf(req, 128, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ");
	memset(req + hl, 'x', n);
	memcpy(req + hl + n, "\r\n\r\n", 4);
	for (int round = 0; round < 3; round++) {
		int sndbuf = 16384;

		/* A small send buffer, so that the request cannot all sit in
		 * socket buffers when the bridge stops reading. */
		w.fd = h_raw_connect_opt(b.port, NULL, SO_SNDBUF, sndbuf);
		w.data = req;
		w.len = hl + n + 4;
		w.failed = 0;
		if (w.fd < 0 || pthread_create(&th, NULL, big_write, &w))
			tap_bail("big header: cannot start the writer");
		pthread_join(th, NULL);
		res = h_raw_read(w.fd, H_RAW_MS, &r);
		tap_ok(!w.failed, "big header %d: the client's write completes (no EPIPE or reset)",
		       round + 1);
		tap_ok(res == H_RAW_ANSWER && r.status == 431,
		       "big header %d: the client reads a complete HTTP 431 (%s, %ld; write %s)",
		       round + 1, res == H_RAW_ANSWER ? "answer" : res == H_RAW_CLOSED ? "closed/reset" :
		       "timeout", r.status, w.failed ? "failed" : "complete");
		h_resp_free(&r);
		close(w.fd);
	}
	free(req);

	/* The front's own 431 (over --max-header-bytes, within MHD's pool) is
	 * counted under code 431. */
	before = h_metric(&b, "pollbridge_http_responses_total{endpoint=\"healthz\",code=\"431\"}");
	memset(hdr, 'h', sizeof(hdr) - 1);
	hdr[sizeof(hdr) - 1] = '\0';
	memcpy(hdr, "X-Pad: ", 7);
	snprintf(url, sizeof(url), "%s/healthz", b.base);
	h_http(&r, "GET", url, NULL, NULL, 0, hdrs);
	tap_is_int(r.status, 431, "metrics: a 5000-byte header on /healthz: 431");
	h_resp_free(&r);
	tap_ok(h_metric(&b, "pollbridge_http_responses_total{endpoint=\"healthz\",code=\"431\"}") ==
	       (before < 0 ? 0 : before) + 1, "metrics: counted as code=\"431\"");
	tap_ok(h_still_serving(&b, "echo"), "big header: still serving");
	h_stop(b.proc, SIGTERM, 5000);
}

/* ---- NUL in the URL and JSONP ------------------------------------------------------- */

/* A request that must be a 400 bad_request; frees nothing of the caller's. */
static void check_nul_400(const char *method, const char *url, const char *what)
{
	struct h_resp r;

	h_http(&r, method, url, NULL, NULL, 0, NULL);
	tap_is_int(r.status, 400, "NUL: %s: 400", what);
	tap_is_str(h_err(&r), "bad_request", "NUL: %s: bad_request", what);
	h_resp_free(&r);
}

/* %00 anywhere in the path or query is a 400; a malformed id on a JSONP
 * poll is wrapped like every other JSONP error. */
static void check_nul_jsonp(void)
{
	struct h_bridge b;
	struct h_resp r;
	char id[64], url[256];

	if (h_bridge_start(&b, echo_route, "--jsonp", NULL))
		tap_bail("pollbridge did not start");
	if (h_create(&b, "echo", id, NULL) != 201)
		tap_bail("NUL: create failed");
	snprintf(url, sizeof(url), "%s/v1/sessions/%s%%00/messages", b.base, id);
	check_nul_400("DELETE", url, "DELETE <id>%00/messages");
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages%%00xx", b.base, id);
	check_nul_400("GET", url, "GET .../messages%00xx");
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=0%%00junk", b.base, id);
	check_nul_400("GET", url, "after=0%00junk");
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after%%00x=0", b.base, id);
	check_nul_400("GET", url, "%00 in a query key");
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?wait=0&x=a%%00b", b.base, id);
	check_nul_400("GET", url, "%00 in an unused query value");
	snprintf(url, sizeof(url), "%s/v1/sessions?route=echo%%00x", b.base);
	check_nul_400("POST", url, "%00 in a route name");
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/events?after=0%%00", b.base, id);
	check_nul_400("GET", url, "%00 in a stream's cursor");
	tap_is_int(messages_seen(&b, id), 0, "NUL: the session is still there");

	/* A raw NUL byte in the request line ends MHD's C strings too. */
	{
		char req[512];
		struct h_resp r2;
		int fd, n;

		n = snprintf(req, sizeof(req), "DELETE /v1/sessions/%s_/messages HTTP/1.1\r\n"
			     "Host: 127.0.0.1\r\nConnection: close\r\n\r\n", id);
		*strchr(req, '_') = '\0';
		fd = h_raw_connect(b.port, NULL);
		if (fd < 0 || h_raw_write(fd, req, (size_t)n))
			tap_bail("NUL: cannot talk to the bridge");
		h_raw_read(fd, H_RAW_MS, &r2);
		tap_is_int(r2.status, 400, "NUL: a raw NUL byte after the id of a DELETE: 400");
		tap_is_str(h_err(&r2), "bad_request", "NUL: a raw NUL byte: bad_request");
		h_resp_free(&r2);
		close(fd);
		n = snprintf(req, sizeof(req), "GET /v1/sessions/%s/messages?after=0_x HTTP/1.1\r\n"
			     "Host: 127.0.0.1\r\nConnection: close\r\n\r\n", id);
		*strchr(req, '_') = '\0';
		fd = h_raw_connect(b.port, NULL);
		if (fd < 0 || h_raw_write(fd, req, (size_t)n))
			tap_bail("NUL: cannot talk to the bridge");
		h_raw_read(fd, H_RAW_MS, &r2);
		tap_is_int(r2.status, 400, "NUL: a raw NUL byte in a query value: 400");
		h_resp_free(&r2);
		close(fd);
		tap_is_int(messages_seen(&b, id), 0, "NUL: the session is still there");
	}

	snprintf(url, sizeof(url), "%s/v1/sessions/bad!id/messages?callback=cb", b.base);
	h_http(&r, "GET", url, NULL, NULL, 0, NULL);
	tap_is_int(r.status, 200, "JSONP: a malformed id: 200 (wrapped)");
	tap_ok(r.body && !strncmp(r.body, "/**/cb(", 7) && strstr(r.body, "unknown_session"),
	       "JSONP: a malformed id: cb({\"error\":\"unknown_session\",...}) (%s)",
	       r.body ? r.body : "");
	h_resp_free(&r);
	snprintf(url, sizeof(url), "%s/v1/sessions/AAAAAAAAAAAAAAAAAAAAAA/messages?callback=cb",
		 b.base);
	h_http(&r, "GET", url, NULL, NULL, 0, NULL);
	tap_ok(r.status == 200 && r.body && strstr(r.body, "unknown_session"),
	       "JSONP: an unknown well-formed id is wrapped too (%ld)", r.status);
	h_resp_free(&r);
	tap_is_int(h_delete(&b, id), 204, "NUL: the session is deleted by a plain DELETE");
	h_stop(b.proc, SIGTERM, 5000);
}

int main(void)
{
	int echo_port;

	h_init();
	signal(SIGPIPE, SIG_IGN);
	if (!h_echo_start(&echo_port, NULL))
		tap_bail("pollbridge-echo did not start");
	snprintf(echo_route, sizeof(echo_route), "--route=echo=ws://127.0.0.1:%d/", echo_port);
	check_smuggling();
	check_nul_jsonp();
	check_big_header();
	check_slowloris();
	return tap_done();
}
