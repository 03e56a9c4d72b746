/*
 * test_compress.c: compression both ways, end to end.
 *
 * HTTP answers (--compress-min-bytes): a poll answer is gzipped for a
 * client whose Accept-Encoding takes gzip (q-values, "*", q=0), only from
 * the threshold up, never with --compress-min-bytes 0 nor for HEAD; Vary:
 * Accept-Encoding on every compressible answer; Content-Length is the
 * compressed size; JSONP answers too. An event stream is gzipped with a
 * flush per write: each event (and each heartbeat) is read here through
 * zlib the moment it arrives, and the stream's end carries a valid gzip
 * trailer.
 *
 * Upstream permessage-deflate (route option `deflate`), against npm ws
 * with perMessageDeflate: the negotiated Sec-WebSocket-Extensions as the
 * upstream saw it, a route without `deflate` that offers nothing, large
 * (200 KB) and small messages both ways with the bytes on the upstream's
 * socket, and the bridge's memory per session with 200 sessions on each.
 *
 * --check-config and --help for both.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <zlib.h>

#include "e2e/harness.h"
#include "tap.h"

/* Room for a chat-sized JSON message. */
#define MSG_LEN 256

/* ---- gunzip --------------------------------------------------------------- */

/* An incremental gunzip of one member. */
struct gunzip {
	z_stream zs;
	char *out;
	size_t len, cap;
	int end;        /* the trailer was read and checked */
	int err;
};

/* Start an incremental gunzip. */
static void gz_init(struct gunzip *g)
{
	memset(g, 0, sizeof(*g));
	if (inflateInit2(&g->zs, 15 + 16) != Z_OK)
		tap_bail("inflateInit2");
}

/* Inflate in[0..n) onto g->out (NUL-terminated). */
static void gz_feed(struct gunzip *g, const void *in, size_t n)
{
	g->zs.next_in = (Bytef *)(uintptr_t)in;
	g->zs.avail_in = (uInt)n;
	while (!g->end && !g->err) {
		int zr;

		if (g->cap - g->len < 4097) {
			g->cap = g->cap ? g->cap * 2 : 65536;
			g->out = realloc(g->out, g->cap);
			if (!g->out)
				tap_bail("out of memory");
		}
		g->zs.next_out = (Bytef *)g->out + g->len;
		g->zs.avail_out = 4096;
		zr = inflate(&g->zs, Z_SYNC_FLUSH);
		g->len += 4096 - g->zs.avail_out;
		g->out[g->len] = '\0';
		if (zr == Z_STREAM_END)
			g->end = 1;
		else if (zr == Z_BUF_ERROR)
			break;
		else if (zr != Z_OK)
			g->err = 1;
		else if (g->zs.avail_in == 0 && g->zs.avail_out != 0)
			break;
	}
}

/* Release a gunzip. */
static void gz_free(struct gunzip *g)
{
	inflateEnd(&g->zs);
	free(g->out);
	memset(g, 0, sizeof(*g));
}

/* The answer of an open session with nothing new. */
#define EMPTY_OPEN "{\"messages\":[],\"state\":\"open\"}"

/* ---- HTTP with the headers that matter here -------------------------------- */

struct got {
	long status;
	char *body;             /* the bytes as they came (malloc'd) */
	size_t len;
	char encoding[128];     /* Content-Encoding */
	char vary[256];         /* every Vary value, joined with ", " */
	long long clen;         /* Content-Length, -1 if absent */
};

/* curl body callback: append to the struct got. */
static size_t got_body(char *p, size_t sz, size_t n, void *arg)
{
	struct got *g = arg;
	char *nb = realloc(g->body, g->len + sz * n + 1);

	if (!nb)
		return 0;
	g->body = nb;
	memcpy(g->body + g->len, p, sz * n);
	g->len += sz * n;
	g->body[g->len] = '\0';
	return sz * n;
}

/* The value of header line p[0..n) if it is name's, trimmed, into out. */
static int got_header_value(const char *p, size_t n, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name), vl;
	const char *v;

	if (n <= nl || strncasecmp(p, name, nl) != 0 || p[nl] != ':')
		return 0;
	v = p + nl + 1;
	vl = n - nl - 1;
	while (vl && (*v == ' ' || *v == '\t')) {
		v++;
		vl--;
	}
	while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
		vl--;
	snprintf(out, cap, "%.*s", (int)vl, v);
	return 1;
}

/* curl header callback: note Content-Encoding, Vary and Content-Length. */
static size_t got_header(char *p, size_t sz, size_t n, void *arg)
{
	struct got *g = arg;
	char v[128];

	if (got_header_value(p, sz * n, "Content-Encoding", v, sizeof(v)))
		snprintf(g->encoding, sizeof(g->encoding), "%s", v);
	if (got_header_value(p, sz * n, "Vary", v, sizeof(v))) {
		size_t l = strlen(g->vary);

		snprintf(g->vary + l, sizeof(g->vary) - l, "%s%s", l ? ", " : "", v);
	}
	if (got_header_value(p, sz * n, "Content-Length", v, sizeof(v)))
		g->clen = atoll(v);
	return sz * n;
}

/* GET (or HEAD) url with Accept-Encoding ae (NULL: none) into g; curl
 * does not decode anything. Returns the status. */
static long get_raw(const char *method, const char *url, const char *ae, struct got *g)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hl = NULL;
	char h[256];

	memset(g, 0, sizeof(*g));
	g->clen = -1;
	if (!c)
		tap_bail("curl_easy_init");
	if (ae) {
		snprintf(h, sizeof(h), "Accept-Encoding: %s", ae);
		hl = curl_slist_append(hl, h);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, got_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, g);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, got_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, g);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &g->status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	if (!g->body) {
		g->body = strdup("");
		if (!g->body)
			tap_bail("out of memory");
	}
	return g->status;
}

/* Free what g holds. */
static void got_free(struct got *g)
{
	free(g->body);
	memset(g, 0, sizeof(*g));
}

/* 1 if g's Vary names Accept-Encoding. */
static int varies(const struct got *g)
{
	return strcasestr(g->vary, "Accept-Encoding") != NULL;
}

/* Gunzip g's whole body into *out (malloc'd); 0 if it is one valid member. */
static int gunzip_body(const struct got *g, char **out, size_t *len)
{
	struct gunzip z;
	int r;

	gz_init(&z);
	gz_feed(&z, g->body, g->len);
	r = z.end && !z.err && z.zs.avail_in == 0 ? 0 : -1;
	*out = z.out ? z.out : strdup("");
	*len = z.len;
	z.out = NULL;
	gz_free(&z);
	return r;
}

/* ---- A: HTTP answers -------------------------------------------------------- */

/* A typical chat message of about 120 bytes: JSON, as an application sends. */
static void chat_msg(char *out, size_t cap, int i)
{
	snprintf(out, cap, "{\"type\":\"chat\",\"room\":\"lobby\",\"user\":\"user%02d\",\"text\":"
		 "\"message %d: see you at the meeting this afternoon\",\"ts\":%d}",
		 i % 17, i, 1700000000 + i);
}

/* A session on route with n chat messages echoed back and waiting. */
static int session_with(struct h_bridge *b, const char *route, int n, char *id)
{
	char m[MSG_LEN];
	json_t *got = json_array();
	size_t k;

	if (h_create(b, route, id, NULL) != 201)
		return -1;
	for (int i = 1; i <= n; i++) {
		chat_msg(m, sizeof(m), i);
		if (h_send_text(b, id, m, NULL) != 200)
			return -1;
	}
	k = h_collect(b, id, 0, (size_t)n, 5000, got);
	json_decref(got);
	return k == (size_t)n ? 0 : -1;
}

/* An Accept-Encoding value and whether the answer must be gzipped. */
static void check_accept(struct h_bridge *b, const char *url, const char *ae, int want_gz,
			 const struct got *plain)
{
	struct got g;
	char *in = NULL;
	size_t inlen = 0;

	get_raw("GET", url, ae, &g);
	tap_is_int(g.status, 200, "Accept-Encoding '%s': 200", ae ? ae : "(none)");
	tap_ok(varies(&g), "Accept-Encoding '%s': Vary: Accept-Encoding (%s)", ae ? ae : "(none)",
	       g.vary);
	if (want_gz) {
		tap_is_str(g.encoding, "gzip", "Accept-Encoding '%s': Content-Encoding gzip",
			   ae ? ae : "(none)");
		tap_is_int(g.clen, (long long)g.len, "Accept-Encoding '%s': Content-Length is "
			   "the compressed size", ae ? ae : "(none)");
		tap_ok(gunzip_body(&g, &in, &inlen) == 0 && inlen == plain->len &&
		       memcmp(in, plain->body, inlen) == 0,
		       "Accept-Encoding '%s': inflates to the plain answer (%zu -> %zu bytes)",
		       ae ? ae : "(none)", plain->len, g.len);
		free(in);
	} else {
		tap_is_str(g.encoding, "", "Accept-Encoding '%s': not compressed", ae ? ae : "(none)");
		tap_ok(g.len == plain->len && memcmp(g.body, plain->body, g.len) == 0,
		       "Accept-Encoding '%s': the plain answer", ae ? ae : "(none)");
	}
	got_free(&g);
}

/* Poll answers: by header, q-values, threshold, JSONP, HEAD. */
static void check_poll(struct h_bridge *b)
{
	char id[64], url[512];
	struct got plain, g;
	char *in = NULL;
	size_t inlen = 0;

	if (session_with(b, "echo", 20, id)) {
		tap_ok(0, "a session with 20 messages");
		return;
	}
	/* after=0 acknowledges nothing: every GET sees the same batch. */
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=0", b->base, id);
	get_raw("GET", url, NULL, &plain);
	tap_ok(plain.status == 200 && plain.len > 2000, "plain poll: 200, %zu bytes", plain.len);
	tap_is_str(plain.encoding, "", "plain poll: no Content-Encoding");
	tap_ok(varies(&plain), "plain poll: Vary: Accept-Encoding all the same");

	check_accept(b, url, "gzip", 1, &plain);
	check_accept(b, url, "gzip, deflate, br", 1, &plain);
	check_accept(b, url, "x-gzip", 1, &plain);
	check_accept(b, url, "br;q=1.0, gzip;q=0.5", 1, &plain);
	check_accept(b, url, "*", 1, &plain);
	check_accept(b, url, "identity;q=1, *;q=0.1", 1, &plain);
	check_accept(b, url, "gzip;q=0", 0, &plain);
	check_accept(b, url, "gzip; q=0.000", 0, &plain);
	check_accept(b, url, "*;q=0", 0, &plain);
	check_accept(b, url, "*, gzip;q=0", 0, &plain);
	check_accept(b, url, "deflate, br", 0, &plain);
	check_accept(b, url, "identity", 0, &plain);
	check_accept(b, url, "gzip;q=2", 0, &plain);
	got_free(&plain);

	/* Below the threshold (one message, ~200 bytes): plain, but Vary. */
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=0&max=1", b->base, id);
	get_raw("GET", url, "gzip", &g);
	tap_ok(g.status == 200 && g.len < 1024, "small poll: 200, %zu bytes", g.len);
	tap_is_str(g.encoding, "", "small poll under --compress-min-bytes: not compressed");
	tap_ok(varies(&g), "small poll: Vary: Accept-Encoding");
	got_free(&g);

	/* HEAD: never compressed; its Content-Length is the plain body's. */
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=0", b->base, id);
	get_raw("GET", url, NULL, &plain);
	get_raw("HEAD", url, "gzip", &g);
	tap_is_int(g.status, 200, "HEAD poll: 200");
	tap_is_str(g.encoding, "", "HEAD poll with gzip: not compressed");
	tap_is_int(g.clen, (long long)plain.len, "HEAD poll: Content-Length of the plain body");
	got_free(&g);
	got_free(&plain);

	/* JSONP: the script is gzipped too. */
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=0&callback=cb.got", b->base,
		 id);
	get_raw("GET", url, "gzip", &g);
	tap_is_int(g.status, 200, "JSONP poll: 200");
	tap_is_str(g.encoding, "gzip", "JSONP poll: Content-Encoding gzip");
	tap_ok(varies(&g), "JSONP poll: Vary: Accept-Encoding");
	tap_ok(gunzip_body(&g, &in, &inlen) == 0 && strncmp(in, "/**/cb.got({\"messages\":[", 24) == 0 &&
	       strstr(in, "message 20: see you") != NULL,
	       "JSONP poll: inflates to the callback with every message");
	free(in);
	got_free(&g);
	h_delete(b, id);
}

/* --compress-min-bytes 0 disables, 1 compresses even the smallest. */
static void check_threshold_flags(const char *echo_route)
{
	struct h_bridge b0, b1;
	char id[64], url[512];
	struct got g;

	if (h_bridge_start(&b0, echo_route, "--compress-min-bytes", "0", NULL) ||
	    h_bridge_start(&b1, echo_route, "--compress-min-bytes", "1", NULL)) {
		tap_ok(0, "bridges with --compress-min-bytes 0 and 1 start");
		return;
	}
	if (session_with(&b0, "echo", 20, id) == 0) {
		snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=0", b0.base, id);
		get_raw("GET", url, "gzip", &g);
		tap_ok(g.status == 200 && g.len > 2000, "--compress-min-bytes 0: 200, %zu bytes",
		       g.len);
		tap_is_str(g.encoding, "", "--compress-min-bytes 0: not compressed");
		tap_ok(!varies(&g), "--compress-min-bytes 0: no Vary: Accept-Encoding");
		got_free(&g);
		/* The empty answer is one shared response: its headers are
		 * still the ones its own answer would have. */
		snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=20", b0.base, id);
		get_raw("GET", url, "gzip", &g);
		tap_ok(g.status == 200 && g.body && !strcmp(g.body, EMPTY_OPEN) && !varies(&g),
		       "--compress-min-bytes 0: an empty answer, without Vary");
		got_free(&g);
	}
	if (session_with(&b1, "echo", 1, id) == 0) {
		snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=0", b1.base, id);
		get_raw("GET", url, "gzip", &g);
		tap_ok(g.status == 200 && g.len < 200, "--compress-min-bytes 1: a %zu-byte answer",
		       g.len);
		tap_is_str(g.encoding, "gzip", "--compress-min-bytes 1: a small answer is gzipped");
		got_free(&g);
		snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=1", b1.base, id);
		for (int i = 0; i < 2; i++) {
			get_raw("GET", url, NULL, &g);
			tap_ok(g.status == 200 && g.body && !strcmp(g.body, EMPTY_OPEN) &&
			       varies(&g) && !g.encoding[0] && g.clen == (long long)strlen(EMPTY_OPEN),
			       "--compress-min-bytes 1: empty answer %d without gzip: plain, Vary", i + 1);
			got_free(&g);
		}
		get_raw("GET", url, "gzip", &g);
		tap_is_str(g.encoding, "gzip",
			   "--compress-min-bytes 1: the empty answer to a gzip client is gzipped");
		got_free(&g);
	}
	h_stop(b0.proc, SIGTERM, 5000);
	h_stop(b1.proc, SIGTERM, 5000);
}

/* ---- A: the event stream ---------------------------------------------------- */

/* A raw event stream: de-chunks what arrives and inflates it. */
struct stream {
	int fd;
	char head[4096];
	size_t hlen;
	int in_body;
	int gzip;               /* Content-Encoding: gzip */
	int vary;
	/* chunked decoding */
	char line[64];
	size_t llen;
	size_t chunk_left;
	int chunk_crlf;         /* the CRLF after a chunk's data is due */
	int last_chunk;
	struct gunzip z;
	char *plain;            /* the text, when not compressed */
	size_t plen;
};

/* Feed one body byte range through zlib (or as is). */
static void st_data(struct stream *s, const char *p, size_t n)
{
	if (s->gzip) {
		gz_feed(&s->z, p, n);
		return;
	}
	s->plain = realloc(s->plain, s->plen + n + 1);
	if (!s->plain)
		tap_bail("out of memory");
	memcpy(s->plain + s->plen, p, n);
	s->plen += n;
	s->plain[s->plen] = '\0';
}

/* De-chunk body bytes. */
static void st_chunked(struct stream *s, const char *p, size_t n)
{
	while (n && !s->last_chunk) {
		if (s->chunk_left) {
			size_t k = n < s->chunk_left ? n : s->chunk_left;

			st_data(s, p, k);
			s->chunk_left -= k;
			p += k;
			n -= k;
			if (!s->chunk_left)
				s->chunk_crlf = 2;
			continue;
		}
		if (s->chunk_crlf) {
			s->chunk_crlf--;
			p++;
			n--;
			continue;
		}
		if (*p == '\n') {
			s->line[s->llen] = '\0';
			s->chunk_left = strtoul(s->line, NULL, 16);
			s->llen = 0;
			if (!s->chunk_left)
				s->last_chunk = 1;
		} else if (*p != '\r' && s->llen < sizeof(s->line) - 1) {
			s->line[s->llen++] = *p;
		}
		p++;
		n--;
	}
}

/* The text decoded so far. */
static const char *st_text(const struct stream *s)
{
	if (s->gzip)
		return s->z.out ? s->z.out : "";
	return s->plain ? s->plain : "";
}

/* Read what arrives within ms; 1 once needle is in the decoded text, -1 at
 * EOF. */
static int st_wait(struct stream *s, const char *needle, int ms)
{
	int64_t end = h_now_ms() + ms;

	while (h_now_ms() < end) {
		char buf[8192];
		ssize_t n;
		fd_set rf;
		struct timeval tv = { 0, 50000 };

		if (s->in_body && strstr(st_text(s), needle))
			return 1;
		FD_ZERO(&rf);
		FD_SET(s->fd, &rf);
		if (select(s->fd + 1, &rf, NULL, NULL, &tv) <= 0)
			continue;
		n = read(s->fd, buf, sizeof(buf));
		if (n <= 0)
			return s->in_body && strstr(st_text(s), needle) ? 1 : -1;
		if (!s->in_body) {
			char *e;
			size_t k = (size_t)n < sizeof(s->head) - 1 - s->hlen ? (size_t)n :
				   sizeof(s->head) - 1 - s->hlen;

			memcpy(s->head + s->hlen, buf, k);
			s->hlen += k;
			s->head[s->hlen] = '\0';
			e = strstr(s->head, "\r\n\r\n");
			if (!e)
				continue;
			s->in_body = 1;
			s->gzip = strcasestr(s->head, "\r\nContent-Encoding: gzip\r\n") != NULL;
			s->vary = strcasestr(s->head, "Accept-Encoding") != NULL;
			if (s->gzip)
				gz_init(&s->z);
			/* What followed the headers in this read. */
			{
				size_t hl = (size_t)(e + 4 - s->head);
				size_t old = s->hlen - k;

				if (hl > old)
					st_chunked(s, buf + (hl - old), (size_t)n - (hl - old));
			}
			continue;
		}
		st_chunked(s, buf, (size_t)n);
	}
	return s->in_body && strstr(st_text(s), needle) ? 1 : 0;
}

/* Open /events of id with Accept-Encoding ae (NULL: none). */
static int st_open(struct stream *s, struct h_bridge *b, const char *id, const char *ae)
{
	char req[512];
	int n;

	memset(s, 0, sizeof(*s));
	s->fd = h_raw_connect(b->port, NULL);
	if (s->fd < 0)
		return -1;
	n = snprintf(req, sizeof(req), "GET /v1/sessions/%s/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		     "%s%s%s\r\n", id, ae ? "Accept-Encoding: " : "", ae ? ae : "", ae ? "\r\n" : "");
	return h_raw_write(s->fd, req, (size_t)n);
}

/* Release a stream. */
static void st_close(struct stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->gzip)
		gz_free(&s->z);
	free(s->plain);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
}

/* SSE through zlib: every event readable as it arrives, heartbeats too,
 * the trailer at the end; without the header, plain text. */
static void check_sse(const char *echo_route)
{
	struct h_bridge b;
	struct stream s;
	char id[64], m[MSG_LEN], want[64];
	int each = 1;
	int64_t t0;

	if (h_bridge_start(&b, echo_route, "--sse-heartbeat", "1", NULL)) {
		tap_ok(0, "bridge for the stream checks starts");
		return;
	}
	if (h_create(&b, "echo", id, NULL) != 201 || st_open(&s, &b, id, "gzip")) {
		tap_ok(0, "session and stream");
		return;
	}
	tap_is_int(st_wait(&s, "retry: 2000", 3000), 1, "gzip stream: the prelude inflates");
	tap_ok(s.gzip, "gzip stream: Content-Encoding gzip");
	tap_ok(s.vary, "gzip stream: Vary: Accept-Encoding");
	for (int i = 1; i <= 8; i++) {
		chat_msg(m, sizeof(m), i);
		snprintf(want, sizeof(want), "message %d: see you", i);
		h_send_text(&b, id, m, NULL);
		t0 = h_now_ms();
		/* Within the heartbeat (1 s): the event itself pushed it out. */
		if (st_wait(&s, want, 900) != 1) {
			each = 0;
			tap_diag("event %d not readable after %lld ms", i,
				 (long long)(h_now_ms() - t0));
		}
	}
	tap_ok(each, "gzip stream: each of 8 events inflates as soon as it arrives");
	{
		size_t before = s.z.len;

		/* Nothing else happens for 2.5 s: only heartbeats arrive. */
		st_wait(&s, "\x01never", 2500);
		tap_ok(s.z.len > before && strstr(st_text(&s) + before, ":\n\n") != NULL,
		       "gzip stream: heartbeats inflate as they come (%zu bytes)", s.z.len - before);
	}
	tap_ok(!s.z.err && !s.z.end, "gzip stream: valid deflate data, member still open");
	/* The echo upstream closes on request: the close event ends the stream. */
	h_send_text(&b, id, "/close 4001 bye", NULL);
	tap_is_int(st_wait(&s, "event: close", 3000), 1, "gzip stream: the close event inflates");
	st_wait(&s, "\x01never", 1500);   /* read to the end */
	tap_ok(s.last_chunk && s.z.end && !s.z.err,
	       "gzip stream: ends with the last chunk and a valid gzip trailer");
	st_close(&s);

	/* gzip;q=0 and no header: plain text. */
	if (h_create(&b, "echo", id, NULL) == 201 && st_open(&s, &b, id, "gzip;q=0") == 0) {
		chat_msg(m, sizeof(m), 99);
		h_send_text(&b, id, m, NULL);
		tap_is_int(st_wait(&s, "message 99: see you", 3000), 1,
			   "stream with gzip;q=0: plain events");
		tap_ok(!s.gzip, "stream with gzip;q=0: no Content-Encoding");
		st_close(&s);
		h_delete(&b, id);
	}
	h_stop(b.proc, SIGTERM, 5000);
}

/* ---- B: upstream permessage-deflate ----------------------------------------- */

/* The JSON lines of the ws upstream's --wire file. */
static json_t *wire_lines(const char *path)
{
	char *text = h_read_file(path), *p, *nl;
	json_t *a = json_array();

	for (p = text; p && *p; p = nl + 1) {
		json_t *o;

		nl = strchr(p, '\n');
		if (!nl)
			break;
		*nl = '\0';
		o = json_loads(p, 0, NULL);
		if (o)
			json_array_append_new(a, o);
	}
	free(text);
	return a;
}

/* A compressible text of n bytes (JSON-ish, repetitive like real data). */
static char *big_text(size_t n)
{
	char *t = malloc(n + 1);
	size_t k = 0;
	int i = 0;

	if (!t)
		tap_bail("out of memory");
	while (k < n) {
		char item[128];
		int l = snprintf(item, sizeof(item), "{\"id\":%d,\"name\":\"item %d\",\"ok\":true},",
				 i, i % 100);

		memcpy(t + k, item, (size_t)l < n - k ? (size_t)l : n - k);
		k += (size_t)l < n - k ? (size_t)l : n - k;
		i++;
	}
	t[n] = '\0';
	return t;
}

/* Send a small and a 200 KB message on route and get both back; returns
 * the upstream's wire lines for the connection (from its --wire file). */
static void deflate_exchange(struct h_bridge *b, const char *route, const char *wire,
			     int deflate)
{
	char id[64];
	char *big = big_text(200000);
	json_t *got = json_array(), *lines, *l;
	size_t k, i;
	long long read_small = -1, read_big = -1, read = -1, written = -1;

	unlink(wire);
	if (h_create(b, route, id, NULL) != 201) {
		tap_ok(0, "%s: create", route);
		goto out;
	}
	tap_is_int(h_send_text(b, id, "hi", NULL), 200, "%s: small message sent", route);
	tap_is_int(h_send_text(b, id, big, NULL), 200, "%s: 200 KB message sent", route);
	k = h_collect(b, id, 0, 2, 10000, got);
	tap_is_int(k, 2, "%s: both echoed back", route);
	if (k == 2) {
		const char *d0 = json_string_value(json_object_get(json_array_get(got, 0), "data"));
		const char *d1 = json_string_value(json_object_get(json_array_get(got, 1), "data"));

		tap_ok(d0 && strcmp(d0, "hi") == 0, "%s: the small message, intact", route);
		tap_ok(d1 && strlen(d1) == 200000 && strcmp(d1, big) == 0,
		       "%s: the 200 KB message, intact", route);
	}
	{
		struct h_resp ack;

		h_poll(b, id, "after=2", &ack);
		h_resp_free(&ack);
	}
	h_delete(b, id);
	/* The upstream logs the close: wait for it. */
	for (int t = 0; t < 50; t++) {
		if (h_count_in_file(wire, "\"closed\"") > 0)
			break;
		h_sleep_ms(100);
	}
	lines = wire_lines(wire);
	json_array_foreach(lines, i, l) {
		json_t *len = json_object_get(l, "len");

		if (i == 0) {
			const char *offer = json_string_value(json_object_get(l, "offer"));
			const char *acc = json_string_value(json_object_get(l, "accepted"));

			if (deflate) {
				tap_ok(offer && strstr(offer, "permessage-deflate"),
				       "%s: the bridge offered permessage-deflate (%s)", route,
				       offer ? offer : "none");
				tap_ok(acc && strncmp(acc, "permessage-deflate", 18) == 0,
				       "%s: negotiated Sec-WebSocket-Extensions: %s", route,
				       acc ? acc : "none");
			} else {
				tap_ok(!offer, "%s: no Sec-WebSocket-Extensions offered", route);
				tap_ok(!acc, "%s: nothing negotiated", route);
			}
		}
		if (len && json_integer_value(len) == 2)
			read_small = json_integer_value(json_object_get(l, "read"));
		if (len && json_integer_value(len) == 200000)
			read_big = json_integer_value(json_object_get(l, "read"));
		if (json_object_get(l, "closed")) {
			read = json_integer_value(json_object_get(l, "read"));
			written = json_integer_value(json_object_get(l, "written"));
		}
	}
	tap_ok(read_small > 0 && read_big > 0 && read > 0 && written > 0,
	       "%s: the upstream saw both messages and the close", route);
	/* Whole connection, handshake and close included. */
	if (deflate) {
		tap_ok(read < 20000, "%s: bridge -> upstream, both messages in %lld bytes on the "
		       "wire", route, read);
		tap_ok(written < 20000, "%s: upstream -> bridge, both echoes in %lld bytes", route,
		       written);
	} else {
		tap_ok(read > 200000, "%s: bridge -> upstream, %lld bytes (uncompressed)", route,
		       read);
		tap_ok(written > 200000, "%s: upstream -> bridge, %lld bytes (uncompressed)", route,
		       written);
	}
	json_decref(lines);
out:
	json_decref(got);
	free(big);
}

/* Resident KiB of a bridge holding n sessions on route, each of which has
 * sent and received one message (so both zlib streams exist). */
static long rss_with_sessions(struct h_bridge *b, const char *route, int n, long *base)
{
	char ids[200][64];
	json_t *got;
	int ok = 1;

	*base = h_rss_kib(b->proc->pid);
	for (int i = 0; i < n && ok; i++) {
		char m[MSG_LEN];

		chat_msg(m, sizeof(m), i);
		ok = h_create(b, route, ids[i], NULL) == 201 &&
		     h_send_text(b, ids[i], m, NULL) == 200;
	}
	for (int i = 0; i < n && ok; i++) {
		got = json_array();
		ok = h_collect(b, ids[i], 0, 1, 5000, got) == 1;
		json_decref(got);
	}
	tap_ok(ok, "%s: %d sessions, one message each way", route, n);
	return h_rss_kib(b->proc->pid);
}

/* Route option deflate against npm ws with perMessageDeflate. */
static void check_deflate(void)
{
	struct h_bridge b, bd, bn;
	char wire[600], rd[128], rn[128];
	int port;
	long base_d, base_n, rss_d, rss_n;

	if (!h_ws_available()) {
		tap_ok(1, "# SKIP node or npm ws missing: no permessage-deflate checks");
		return;
	}
	snprintf(wire, sizeof(wire), "%s/wire.jsonl", h_tmpdir());
	if (!h_ws_start(&port, "echo", "--deflate", "--wire", wire, NULL)) {
		tap_ok(0, "ws upstream with perMessageDeflate starts");
		return;
	}
	snprintf(rd, sizeof(rd), "--route=d=ws://127.0.0.1:%d/ deflate", port);
	snprintf(rn, sizeof(rn), "--route=n=ws://127.0.0.1:%d/", port);
	if (h_bridge_start(&b, rd, rn, NULL)) {
		tap_ok(0, "bridge with a deflate route starts");
		return;
	}
	deflate_exchange(&b, "d", wire, 1);
	deflate_exchange(&b, "n", wire, 0);
	tap_ok(h_still_serving(&b, "d"), "deflate route still serving");
	h_stop(b.proc, SIGTERM, 5000);

	/* Memory: one bridge per route, 200 sessions each. */
	unlink(wire);
	if (h_bridge_start(&bd, rd, NULL) || h_bridge_start(&bn, rn, NULL)) {
		tap_ok(0, "bridges for the memory figure start");
		return;
	}
	rss_d = rss_with_sessions(&bd, "d", 200, &base_d);
	rss_n = rss_with_sessions(&bn, "n", 200, &base_n);
	tap_diag("RSS with 200 sessions: deflate %ld KiB (from %ld), plain %ld KiB (from %ld)",
		 rss_d, base_d, rss_n, base_n);
	tap_diag("per session: deflate %.1f KiB, plain %.1f KiB, permessage-deflate costs %.1f KiB",
		 (rss_d - base_d) / 200.0, (rss_n - base_n) / 200.0,
		 ((rss_d - base_d) - (rss_n - base_n)) / 200.0);
	tap_ok(rss_d > 0 && rss_n > 0 && (rss_d - base_d) / 200 < 1024,
	       "deflate: under 1 MiB per session (%.1f KiB)", (rss_d - base_d) / 200.0);
	h_stop(bd.proc, SIGTERM, 5000);
	h_stop(bn.proc, SIGTERM, 5000);
}

/* ---- C: the command line ---------------------------------------------------- */

/* Run the binary with up to three arguments; its exit code and output. */
static int run_cli(char **out, const char *a1, const char *a2, const char *a3)
{
	char *argv[5] = { getenv("PB_BIN"), (char *)a1, (char *)a2, (char *)a3, NULL };
	struct h_proc *p = h_spawn(argv, NULL, 0, NULL, 0);
	int rc;

	if (!p) {
		*out = NULL;
		return -1;
	}
	rc = h_wait_exit(p, 10000);
	*out = h_read_file(p->log_path);
	return rc;
}

/* --check-config and --help cover --compress-min-bytes and deflate. */
static void check_cli(void)
{
	static const struct {
		const char *a1, *a2, *a3, *want;
		int rc;
	} cases[] = {
		{ "--check-config", "--compress-min-bytes", "2048", "config ok", 0 },
		{ "--check-config", "--compress-min-bytes", "0", "config ok", 0 },
		{ "--check-config", "--compress-min-bytes", "1073741824", "config ok", 0 },
		{ "--check-config", "--compress-min-bytes", "1073741825", "--compress-min-bytes", 1 },
		{ "--check-config", "--compress-min-bytes", "-1", "--compress-min-bytes", 1 },
		{ "--check-config", "--compress-min-bytes", "1k", "--compress-min-bytes", 1 },
		{ "--check-config", "--compress-min-bytes", "", "--compress-min-bytes", 1 },
		{ "--check-config", "--route", "x=ws://h/ deflate", "config ok", 0 },
		{ "--check-config", "--route", "x=wss://h/ redial deflate insecure", "config ok", 0 },
		{ "--check-config", "--route", "x=ws://h/ deflate=yes", "unknown option 'deflate=yes'", 1 },
		{ "--check-config", "--route", "x=ws://h/ deflat", "unknown option 'deflat'", 1 },
	};
	char *out;
	int rc;

	/* --check-config exits 1 on a bad configuration. */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rc = run_cli(&out, cases[i].a1, cases[i].a2, cases[i].a3);
		tap_is_int(rc, cases[i].rc, "%s %s '%s': exit %d", cases[i].a1, cases[i].a2,
			   cases[i].a3, cases[i].rc);
		tap_ok(out && strstr(out, cases[i].want), "%s %s '%s': says '%s' (%.*s)",
		       cases[i].a1, cases[i].a2, cases[i].a3, cases[i].want,
		       out ? (int)strcspn(out, "\n") : 0, out ? out : "");
		free(out);
	}
	rc = run_cli(&out, "--help", NULL, NULL);
	tap_ok(rc == 0 && out && strstr(out, "--compress-min-bytes N") &&
	       strstr(out, "insecure, deflate"), "--help names --compress-min-bytes and deflate");
	free(out);
}

int main(void)
{
	struct h_bridge b;
	char echo_route[96];
	int echo_port;

	h_init();
	check_cli();
	if (!h_echo_start(&echo_port, NULL))
		tap_bail("pollbridge-echo did not start");
	snprintf(echo_route, sizeof(echo_route), "--route=echo=ws://127.0.0.1:%d/", echo_port);
	if (h_bridge_start(&b, echo_route, "--jsonp", NULL))
		tap_bail("pollbridge did not start");
	check_poll(&b);
	h_stop(b.proc, SIGTERM, 5000);
	check_threshold_flags(echo_route);
	check_sse(echo_route);
	check_deflate();
	return tap_done();
}
