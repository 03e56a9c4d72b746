/*
 * test_engineio.c: the Engine.IO polling door, end to end at the protocol
 * level: HTTP requests as socket.io-client sends them (captured: see
 * notes/eio-captures.md) through a real bridge to real, WebSocket-only
 * Engine.IO and Socket.IO servers (tests/upstreams/socketio/eio_upstream.js:
 * engine.io 6.6 with allowEIO3, socket.io 2.5, socket.io 4.8). Runs on the
 * memory store and, through test_engineio.redis, on the Redis store.
 *
 * - v4: handshake (open packet rewritten: sid, upgrades [], maxPayload
 *   lowered to the bridge's; pings passed through), poll and post of text
 *   and binary, server pings answered by the client, a noop after an empty
 *   wait, close from the upstream ("1" then the sid is unknown) and from the
 *   client (the upstream sees the packets before it, then the close).
 * - v3: the string payload with UTF-16 lengths and b4<base64> (b64=1), the
 *   XHR2 binary payload both ways (sid "<id>.b"), JSONP polling and d= posts
 *   with every awkward character round-tripping, client pings, the "40" a
 *   socket.io 2 server sends by itself, and a v3 client refused by a v4-only
 *   socket.io 4 server with code 5.
 * - Errors as engine.io answers them: unknown and malformed sid, bad EIO,
 *   other transports, a handshake POST, a body over the limit.
 * - Overlapping GETs: the older answers "6" at once, the newer gets the data.
 * - Headers: the Cookie and X-Forwarded-For reach the upstream on the
 *   handshake; CORS with credentials and the preflight.
 * - Every message exactly once and in order, 300 each way.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

#define ORIGIN "http://app.example"

/* The bridge under test and its door paths. */
static struct h_bridge B;
static char rec_path[512];

/* ---- helpers ------------------------------------------------------------ */

/* Start eio_upstream.js in mode with extra args; returns its port or bails. */
static int upstream_start(const char *mode, const char *a1, const char *a2, const char *a3,
			  const char *a4)
{
	char path[600], rest[32];
	char *argv[] = { "node", path, (char *)mode, (char *)a1, (char *)a2, (char *)a3,
			 (char *)a4, NULL };
	const char *up = getenv("PB_UPSTREAMS");

	snprintf(path, sizeof(path), "%s/socketio/eio_upstream.js", up ? up : "tests/upstreams");
	if (!h_spawn(argv, "listening on ", 10000, rest, sizeof(rest)))
		tap_bail("eio_upstream.js %s did not start", mode);
	return atoi(rest);
}

/* A request to the door at door (e.g. "/engine.io/") with query q. */
static long eio_req(struct h_resp *r, const char *method, const char *door, const char *q,
		    const char *ctype, const void *body, size_t len, const char *const *hdrs)
{
	char url[1024];

	snprintf(url, sizeof(url), "%s%s?%s", B.base, door, q);
	memset(r, 0, sizeof(*r));
	if (h_http(r, method, url, ctype, body, len, hdrs))
		return 0;
	return r->status;
}

/* GET. */
static long eio_get(struct h_resp *r, const char *door, const char *q)
{
	return eio_req(r, "GET", door, q, NULL, NULL, 0, NULL);
}

/* POST a text payload. */
static long eio_post(struct h_resp *r, const char *door, const char *q, const void *p, size_t n)
{
	return eio_req(r, "POST", door, q, "text/plain;charset=UTF-8", p, n, NULL);
}

/* Copy the sid out of an open packet in body into sid (64 bytes). */
static int open_sid(const char *body, char *sid)
{
	const char *s = strstr(body, "\"sid\":\"");
	size_t n;

	if (!s)
		return -1;
	s += 7;
	n = strcspn(s, "\"\\");
	if (n == 0 || n >= 64)
		return -1;
	memcpy(sid, s, n);
	sid[n] = '\0';
	return 0;
}

/* A v4 handshake at door; the sid into sid. Returns the status. */
static long v4_open(const char *door, char *sid, struct h_resp *out)
{
	struct h_resp r;
	long st = eio_get(&r, door, "EIO=4&transport=polling&t=Pa1");

	if (st != 200 || open_sid(r.body, sid))
		sid[0] = '\0';
	if (out)
		*out = r;
	else
		h_resp_free(&r);
	return st;
}

/* Packets of a v4 payload (split on 0x1e) into pk (malloc'd copies). */
static size_t v4_split(const char *p, size_t len, char **pk, size_t max)
{
	size_t n = 0, i = 0;

	while (n < max && i <= len) {
		const char *sep = memchr(p + i, 0x1e, len - i);
		size_t l = sep ? (size_t)(sep - (p + i)) : len - i;

		pk[n] = strndup(p + i, l);
		n++;
		if (!sep)
			break;
		i += l + 1;
	}
	return n;
}

/* UTF-16 units of one UTF-8 character starting with lead byte c. */
static size_t units_of(unsigned char c, size_t *bytes)
{
	*bytes = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
	return *bytes == 4 ? 2 : 1;
}

/* UTF-16 units of the UTF-8 text s. */
static size_t utf16_units(const char *s)
{
	size_t u = 0, b;

	for (; *s; s += b)
		u += units_of((unsigned char)*s, &b);
	return u;
}

/* Append the v3 framing of packet pkt ("<units>:<pkt>") to out at *o. */
static void v3_pack(char *out, size_t cap, size_t *o, const char *pkt)
{
	*o += (size_t)snprintf(out + *o, cap - *o, "%zu:%s", utf16_units(pkt), pkt);
}

/* Packets of a v3 string payload; returns the count, or (size_t)-1 if the
 * lengths do not add up. An independent reading of "<len>:<packet>". */
static size_t v3_split(const char *p, size_t len, char **pk, size_t max)
{
	size_t n = 0, i = 0;

	while (i < len && n < max) {
		size_t want = 0, j, units = 0, b;

		while (i < len && p[i] >= '0' && p[i] <= '9')
			want = want * 10 + (size_t)(p[i++] - '0');
		if (i >= len || p[i] != ':')
			return (size_t)-1;
		i++;
		for (j = i; units < want && j < len; j += b)
			units += units_of((unsigned char)p[j], &b);
		if (units != want || j > len)
			return (size_t)-1;
		pk[n++] = strndup(p + i, j - i);
		i = j;
	}
	return n;
}

/* Free n packets. */
static void free_pk(char **pk, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(pk[i]);
}

/* GET at door with q until want packets other than noops came (or 5 s or
 * an error); version 3 or 4 string payloads. Returns the count in pk. */
static size_t collect(int version, const char *door, const char *q, char **pk, size_t want)
{
	int64_t end = h_now_ms() + 5000;
	size_t n = 0;

	while (n < want && h_now_ms() < end) {
		struct h_resp r;
		char *tmp[64];
		size_t k;

		if (eio_get(&r, door, q) != 200) {
			h_resp_free(&r);
			break;
		}
		k = version == 4 ? v4_split(r.body, r.len, tmp, 64) : v3_split(r.body, r.len, tmp, 64);
		h_resp_free(&r);
		if (k == (size_t)-1)
			break;
		for (size_t i = 0; i < k; i++) {
			if (strcmp(tmp[i], "6") != 0 && n < want)
				pk[n++] = tmp[i];
			else
				free(tmp[i]);
		}
	}
	return n;
}

/* Wait up to ms for the record file to hold needle; 1 if it does. */
static int rec_wait(const char *needle, int ms)
{
	int64_t end = h_now_ms() + ms;

	do {
		if (h_count_in_file(rec_path, needle) > 0)
			return 1;
		h_sleep_ms(50);
	} while (h_now_ms() < end);
	return 0;
}

/* Send a raw request (Connection: close) and read everything until EOF into
 * a malloc'd string (NULL on failure). */
static char *raw_exchange(const char *req)
{
	int fd = h_raw_connect(B.port, NULL);
	size_t cap = 65536, len = 0;
	char *buf;
	ssize_t n;

	if (fd < 0)
		return NULL;
	buf = malloc(cap);
	if (h_raw_write(fd, req, strlen(req))) {
		close(fd);
		free(buf);
		return NULL;
	}
	while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(fd);
	return buf;
}

/* 1 if an engine.io error JSON with code and status came back. */
static int is_eio_error(const struct h_resp *r, long status, int code)
{
	json_t *c = r->json ? json_object_get(r->json, "code") : NULL;

	return r->status == status && json_is_integer(c) && json_integer_value(c) == code &&
	       json_is_string(json_object_get(r->json, "message"));
}

/* ---- v4 ----------------------------------------------------------------- */

/* Handshake, text and binary both ways, the noop of an empty wait. */
static void check_v4_basics(void)
{
	struct h_resp r;
	char sid[64], q[256], *pk[8];
	size_t n;

	tap_is_int(v4_open("/engine.io/", sid, &r), 200, "v4 handshake answers 200");
	tap_ok(strstr(r.content_type, "text/plain") != NULL, "as text/plain (%s)", r.content_type);
	tap_ok(r.body[0] == '0' && strlen(sid) == 22, "an open packet with a 22-char sid (%s)", r.body);
	tap_ok(strstr(r.body, "\"upgrades\":[]") && strstr(r.body, "\"pingInterval\":60000") &&
	       strstr(r.body, "\"pingTimeout\":20000") && strstr(r.body, "\"maxPayload\":65536"),
	       "upgrades [], pings passed through, maxPayload lowered to the bridge's");
	h_resp_free(&r);

	snprintf(q, sizeof(q), "EIO=4&transport=polling&t=Pa2&sid=%s", sid);
	{
		static const char four[] = "4hello\x1e" "4w\xc3\xb6rld \xf0\x9f\x98\x80\x1e" "bAQID\x1e"
					   "4binary 300";

		tap_is_int(eio_post(&r, "/engine.io/", q, four, sizeof(four) - 1), 200,
			   "v4 POST of four packets");
	}
	tap_ok(!strcmp(r.body, "ok") && strstr(r.content_type, "text/html"), "answers ok as text/html");
	h_resp_free(&r);
	n = collect(4, "/engine.io/", q, pk, 4);
	tap_ok(n == 4 && !strcmp(pk[0], "4hello") &&
	       !strcmp(pk[1], "4w\xc3\xb6rld \xf0\x9f\x98\x80") && !strcmp(pk[2], "bAQID") &&
	       !strncmp(pk[3], "bAAECAwQFBgc", 12) && strlen(pk[3]) == 401,
	       "echoed in order: text, text, binary as b<base64>, 300 bytes of binary (%zu)", n);
	free_pk(pk, n);

	tap_ok(rec_wait("{\"t\":\"binary\",\"d\":\"AQID\"}", 3000),
	       "the binary packet reached the upstream as a binary frame");

	{
		int64_t t0 = h_now_ms();

		eio_get(&r, "/engine.io/", q);
		tap_ok(!strcmp(r.body, "6") && h_now_ms() - t0 >= 1500,
		       "an empty wait answers a noop after --wait-max (%s)", r.body);
		h_resp_free(&r);
	}
	/* Noop and pong packets from the client are fine. */
	tap_is_int(eio_post(&r, "/engine.io/", q, "6", 1), 200, "a client noop is accepted");
	h_resp_free(&r);
	tap_is_int(eio_req(&r, "POST", "/engine.io/", q, "application/octet-stream", "\x04\x01", 2,
			   NULL), 400, "a v4 binary body is refused, as engine.io does");
	h_resp_free(&r);
	snprintf(q, sizeof(q), "EIO=4&transport=polling&sid=%s", sid);
	eio_post(&r, "/engine.io/", q, "1", 1);
	h_resp_free(&r);
}

/* Server pings: the client answers with pongs; the session lives on. */
static void check_v4_ping(void)
{
	struct h_resp r;
	char sid[64], q[256];
	int pings = 0;
	int64_t end;

	tap_is_int(v4_open("/ping/", sid, &r), 200, "handshake on a 300 ms ping upstream");
	tap_ok(strstr(r.body, "\"pingInterval\":300") != NULL, "its pingInterval passes through");
	h_resp_free(&r);
	snprintf(q, sizeof(q), "EIO=4&transport=polling&sid=%s", sid);
	end = h_now_ms() + 2500;
	while (h_now_ms() < end) {
		if (eio_get(&r, "/ping/", q) != 200) {
			h_resp_free(&r);
			break;
		}
		if (!strcmp(r.body, "2")) {
			struct h_resp p;

			pings++;
			eio_post(&p, "/ping/", q, "3", 1);
			h_resp_free(&p);
		}
		h_resp_free(&r);
	}
	tap_ok(pings >= 4, "the server's pings arrive and pongs go back (%d pings)", pings);
	eio_post(&r, "/ping/", q, "4still", 6);
	h_resp_free(&r);
	eio_get(&r, "/ping/", q);
	tap_ok(strstr(r.body, "4still") != NULL, "the session is alive after the pings");
	h_resp_free(&r);
}

/* Close from the upstream and from the client. */
static void check_v4_close(void)
{
	struct h_resp r;
	char sid[64], q[256];
	int nclosed;

	v4_open("/engine.io/", sid, NULL);
	snprintf(q, sizeof(q), "EIO=4&transport=polling&sid=%s", sid);
	eio_post(&r, "/engine.io/", q, "4before\x1e" "4bye", 12);
	h_resp_free(&r);
	{
		char *pk[4];
		size_t n = collect(4, "/engine.io/", q, pk, 2);

		tap_ok(n == 2 && !strcmp(pk[0], "4before") && !strcmp(pk[1], "1"),
		       "an upstream close: the queued packets, then a close packet");
		free_pk(pk, n);
	}
	eio_get(&r, "/engine.io/", q);
	tap_ok(is_eio_error(&r, 400, 1), "then the sid is unknown: %s", r.body);
	h_resp_free(&r);

	v4_open("/engine.io/", sid, NULL);
	snprintf(q, sizeof(q), "EIO=4&transport=polling&sid=%s", sid);
	/* As socket.io-client closes: its last packets, then "1" alone once
	 * they were answered. */
	eio_post(&r, "/engine.io/", q, "4last words", 11);
	h_resp_free(&r);
	tap_ok(rec_wait("last words", 3000), "the client's last packet reached the upstream");
	nclosed = h_count_in_file(rec_path, "\"closed\":\"transport close\"");
	tap_is_int(eio_post(&r, "/engine.io/", q, "1\x1e" "4ignored", 10), 200,
		   "a client close packet is answered ok");
	h_resp_free(&r);
	for (int i = 0; i < 60 && h_count_in_file(rec_path, "\"closed\":\"transport close\"") == nclosed; i++)
		h_sleep_ms(50);
	tap_is_int(h_count_in_file(rec_path, "\"closed\":\"transport close\""), nclosed + 1,
		   "the upstream's WebSocket was closed (engine.io: transport close)");
	tap_is_int(h_count_in_file(rec_path, "ignored"), 0, "nothing after the close packet");
	eio_get(&r, "/engine.io/", q);
	tap_ok(is_eio_error(&r, 400, 1), "the sid is unknown after a client close");
	h_resp_free(&r);

	/* Packets and the close in one POST: the upstream gets every packet
	 * before its WebSocket closes (the close waits in the queue). engine.io
	 * may report "transport error" here rather than "transport close": it
	 * is still echoing those packets when the close frame arrives. */
	v4_open("/engine.io/", sid, NULL);
	snprintf(q, sizeof(q), "EIO=4&transport=polling&sid=%s", sid);
	{
		char body[2048];
		size_t len = 0;

		for (int i = 1; i <= 50; i++)
			len += (size_t)snprintf(body + len, sizeof(body) - len, "4flush-%02d\x1e", i);
		len += (size_t)snprintf(body + len, sizeof(body) - len, "1");
		nclosed = h_count_in_file(rec_path, "\"closed\":");
		tap_is_int(eio_post(&r, "/engine.io/", q, body, len), 200,
			   "50 packets and a close packet in one POST: ok");
		h_resp_free(&r);
	}
	for (int i = 0; i < 60 && h_count_in_file(rec_path, "\"closed\":") == nclosed; i++)
		h_sleep_ms(50);
	tap_is_int(h_count_in_file(rec_path, "flush-"), 50,
		   "all 50 packets before the close reached the upstream");
	tap_ok(rec_wait("flush-50", 100), "the last of them too");
	tap_is_int(h_count_in_file(rec_path, "\"closed\":"), nclosed + 1,
		   "then the upstream's WebSocket was closed");
}

/* ---- v3 ----------------------------------------------------------------- */

/* b64=1: the string payload, UTF-16 lengths, b4<base64>, client pings. */
static void check_v3_string(void)
{
	struct h_resp r;
	char sid[64], q[256], *pk[8];
	size_t n;
	/* 42["m","é😀"]: 13 bytes more than characters... length 12 units. */
	static const char post[] = "6:b4AQID1:210:4w\xc3\xb6rld \xf0\x9f\x98\x80!";

	tap_is_int(eio_get(&r, "/engine.io/", "EIO=3&transport=polling&t=Q8-dKST&b64=1"), 200,
		   "v3 handshake with b64=1");
	n = v3_split(r.body, r.len, pk, 8);
	tap_ok(n >= 1 && n != (size_t)-1 && pk[0][0] == '0' && !open_sid(pk[0], sid) &&
	       strlen(sid) == 22 && strstr(pk[0], "\"upgrades\":[]"),
	       "a string payload with the open packet: %s", r.body);
	if (n != (size_t)-1)
		free_pk(pk, n);
	h_resp_free(&r);

	snprintf(q, sizeof(q), "EIO=3&transport=polling&t=Q8-dKSm&b64=1&sid=%s", sid);
	tap_is_int(eio_post(&r, "/engine.io/", q, post, sizeof(post) - 1), 200,
		   "v3 POST: b4<base64>, a ping, text with a 4-byte character");
	h_resp_free(&r);
	n = collect(3, "/engine.io/", q, pk, 3);
	tap_ok(n == 3 && !strcmp(pk[0], "b4AQID") && !strcmp(pk[1], "3") &&
	       !strcmp(pk[2], "4w\xc3\xb6rld \xf0\x9f\x98\x80!"),
	       "echoed as b4<base64>, the pong, the text with UTF-16 lengths");
	free_pk(pk, n);
	tap_ok(rec_wait("{\"t\":\"binary\",\"d\":\"AQID\"}", 3000),
	       "the upstream got a binary frame (engine.io read the 0x04 type byte)");
	eio_get(&r, "/engine.io/", q);
	tap_ok(!strcmp(r.body, "1:6"), "an empty wait answers 1:6 (%s)", r.body);
	h_resp_free(&r);
	tap_is_int(eio_post(&r, "/engine.io/", q, "99:4x", 5), 400, "a bad length is 400");
	tap_ok(is_eio_error(&r, 400, 3), "code 3: %s", r.body);
	h_resp_free(&r);
	eio_post(&r, "/engine.io/", q, "1:1", 3);
	h_resp_free(&r);
}

/* Find the start of the JS string in a JSONP answer ___eio[j]("...");
 * parse it with jansson into out (malloc'd); returns its length or -1. */
static long jsonp_unwrap(const struct h_resp *r, const char *j, char **out)
{
	char head[32];
	size_t hl = (size_t)snprintf(head, sizeof(head), "___eio[%s](", j);
	json_t *s;
	long n;

	*out = NULL;
	if (r->len < hl + 2 || memcmp(r->body, head, hl) || memcmp(r->body + r->len - 2, ");", 2))
		return -1;
	s = json_loadb(r->body + hl, r->len - hl - 2, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (!json_is_string(s)) {
		json_decref(s);
		return -1;
	}
	n = (long)json_string_length(s);
	*out = malloc((size_t)n + 1);
	memcpy(*out, json_string_value(s), (size_t)n + 1);
	json_decref(s);
	return n;
}

/* Append s url-encoded (every byte but unreserved ones) to out. */
static void urlenc(char *out, size_t cap, const char *s, size_t n)
{
	size_t o = strlen(out);

	for (size_t i = 0; i < n && o + 4 < cap; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, cap - o, "%%%02X", c);
	}
	out[o] = '\0';
}

/* JSONP polling: answers wrapped, d= posts unescaped, everything round-trips. */
static void check_v3_jsonp(void)
{
	/* The message text: quotes, backslashes, a newline, "\n" as two
	 * characters, U+2028/2029, </script>, a 4-byte character. */
	static const char text[] = "4q\"uo'te \\ back\nline \\n lit \xe2\x80\xa8\xe2\x80\xa9 "
				   "</script> \xf0\x9f\x98\x80 end";
	char sid[64], q[256], esc[512], form[2048], pay[512], *s, *pk[8];
	struct h_resp r;
	size_t n, o = 0;
	long sl;

	tap_is_int(eio_get(&r, "/engine.io/", "EIO=3&transport=polling&t=x&b64=1&j=0"), 200,
		   "v3 JSONP handshake");
	tap_ok(strstr(r.content_type, "javascript") != NULL, "as JavaScript (%s)", r.content_type);
	sl = jsonp_unwrap(&r, "0", &s);
	tap_ok(sl > 0 && (n = v3_split(s, (size_t)sl, pk, 8)) >= 1 && n != (size_t)-1 &&
	       !open_sid(pk[0], sid), "___eio[0](\"<payload>\") with the open packet: %s", r.body);
	if (sl > 0 && n != (size_t)-1)
		free_pk(pk, n);
	free(s);
	h_resp_free(&r);

	/* The payload as the client builds it, then its escaping: "\n" (two
	 * characters) becomes "\\\n"... as engine.io-client 3 does: first
	 * backslash-n -> backslash + newline, then newline -> backslash-n. */
	snprintf(pay, sizeof(pay), "%zu:%s", utf16_units(text), text);
	for (size_t i = 0; pay[i]; i++) {
		if (pay[i] == '\\' && pay[i + 1] == 'n') {
			esc[o++] = '\\';
			esc[o++] = '\\';
			esc[o++] = 'n';
			i++;
		} else if (pay[i] == '\n') {
			esc[o++] = '\\';
			esc[o++] = 'n';
		} else {
			esc[o++] = pay[i];
		}
	}
	esc[o] = '\0';
	strcpy(form, "d=");
	urlenc(form, sizeof(form), esc, o);
	snprintf(q, sizeof(q), "EIO=3&transport=polling&t=y&j=0&sid=%s", sid);
	tap_is_int(eio_req(&r, "POST", "/engine.io/", q, "application/x-www-form-urlencoded", form,
			   strlen(form), NULL), 200, "a JSONP d= post");
	h_resp_free(&r);
	eio_get(&r, "/engine.io/", q);
	sl = jsonp_unwrap(&r, "0", &s);
	n = sl > 0 ? v3_split(s, (size_t)sl, pk, 8) : (size_t)-1;
	tap_ok(n == 1 && !strcmp(pk[0], text),
	       "quotes, backslashes, newlines, U+2028/9, </script> round-trip through JSONP both ways");
	tap_ok(!strstr(r.body, "</script>") && !strstr(r.body, "\xe2\x80\xa8"),
	       "the answer holds no </script> and no raw U+2028");
	if (n != (size_t)-1)
		free_pk(pk, n);
	free(s);
	h_resp_free(&r);
	eio_post(&r, "/engine.io/", q, "1:1", 3);
	h_resp_free(&r);
}

/* The XHR2 binary payload, both ways. */
static void check_v3_binary(void)
{
	static const unsigned char post[] = { 0, 3, 0xff, '4', 'h', 'i', 1, 4, 0xff, 4, 1, 2, 3,
					      0, 2, 0xff, '4', 'x' };
	static const unsigned char want[] = { 0, 3, 0xff, '4', 'h', 'i', 1, 4, 0xff, 4, 1, 2, 3,
					      0, 2, 0xff, '4', 'x' };
	const char *hdr[] = { "Origin: " ORIGIN, NULL };
	struct h_resp r;
	char sid[64], q[256], *pk[4];
	size_t n;

	tap_is_int(eio_get(&r, "/engine.io/", "EIO=3&transport=polling&t=z"), 200,
		   "v3 handshake without b64 (an XHR2 client)");
	n = v3_split(r.body, r.len, pk, 4);
	tap_ok(n >= 1 && n != (size_t)-1 && !open_sid(pk[0], sid) && strlen(sid) == 24 &&
	       !strcmp(sid + 22, ".b"), "its sid marks binary payloads: %s", sid);
	if (n != (size_t)-1)
		free_pk(pk, n);
	h_resp_free(&r);
	snprintf(q, sizeof(q), "EIO=3&transport=polling&t=z1&sid=%s", sid);
	tap_is_int(eio_req(&r, "POST", "/engine.io/", q, "application/octet-stream", post,
			   sizeof(post), hdr), 200, "a binary payload POST");
	h_resp_free(&r);
	h_sleep_ms(500);        /* all three echoes queued: one batch */
	eio_get(&r, "/engine.io/", q);
	tap_ok(!strcmp(r.content_type, "application/octet-stream") && r.len == sizeof(want) &&
	       !memcmp(r.body, want, sizeof(want)),
	       "echoed as a binary payload (%s, %zu bytes)", r.content_type, r.len);
	h_resp_free(&r);
	eio_post(&r, "/engine.io/", q, "3:4ab", 5);
	h_resp_free(&r);
	eio_get(&r, "/engine.io/", q);
	tap_ok(!strcmp(r.body, "3:4ab") && strstr(r.content_type, "text/plain"),
	       "a batch without binary is a string payload (%s)", r.body);
	h_resp_free(&r);
	eio_post(&r, "/engine.io/", q, "1:1", 3);
	h_resp_free(&r);
}

/* A socket.io 2 server sends 40 by itself; socket.io 4 refuses v3. */
static void check_v3_socketio(void)
{
	struct h_resp r;
	char sid[64], q[256], *pk[8];
	size_t n;
	int got40 = 0;

	tap_is_int(eio_get(&r, "/socket.io/", "EIO=3&transport=polling&t=a&b64=1"), 200,
		   "v3 handshake through a socket.io 2.5 server");
	n = v3_split(r.body, r.len, pk, 8);
	if (n != (size_t)-1 && n >= 1) {
		open_sid(pk[0], sid);
		got40 = n >= 2 && !strcmp(pk[1], "40");
		free_pk(pk, n);
	}
	h_resp_free(&r);
	if (!got40) {
		snprintf(q, sizeof(q), "EIO=3&transport=polling&b64=1&sid=%s", sid);
		eio_get(&r, "/socket.io/", q);
		got40 = strstr(r.body, "2:40") != NULL;
		h_resp_free(&r);
	}
	tap_ok(got40, "the server's own 40 arrives");
	snprintf(q, sizeof(q), "EIO=3&transport=polling&b64=1&sid=%s", sid);
	{
		char body[128];
		size_t o = 0;

		v3_pack(body, sizeof(body), &o, "420[\"echo\",\"h\xc3\xa9\"]");
		eio_post(&r, "/socket.io/", q, body, o);
		h_resp_free(&r);
		n = collect(3, "/socket.io/", q, pk, 2);
		tap_ok(n == 2 && !strcmp(pk[0], "42[\"echo\",\"h\xc3\xa9\"]") &&
		       !strcmp(pk[1], "430[\"ok\"]"), "a socket.io event echoed and acknowledged");
		free_pk(pk, n);
	}
	eio_post(&r, "/socket.io/", q, "1:2", 3);
	h_resp_free(&r);
	eio_get(&r, "/socket.io/", q);
	tap_ok(!strcmp(r.body, "1:3"), "a client ping gets the server's pong (%s)", r.body);
	h_resp_free(&r);
	eio_post(&r, "/socket.io/", q, "1:1", 3);
	h_resp_free(&r);

	tap_is_int(eio_get(&r, "/sio4/", "EIO=3&transport=polling&b64=1"), 400,
		   "a v3 client on a v4-only socket.io 4 server");
	tap_ok(is_eio_error(&r, 400, 5), "is told code 5, at once: %s", r.body);
	h_resp_free(&r);
	tap_is_int(v4_open("/sio4/", sid, &r), 200, "a v4 client on it is served");
	h_resp_free(&r);
}

/* ---- errors, overlap, headers ------------------------------------------- */

/* engine.io's error answers. */
static void check_errors(void)
{
	struct h_resp r;
	size_t bigl = 300000;
	char *big = malloc(bigl);

	eio_get(&r, "/engine.io/", "EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAAAA");
	tap_ok(is_eio_error(&r, 400, 1) && !strcmp(r.body, "{\"code\":1,\"message\":\"Session ID unknown\"}"),
	       "an unknown sid: %s", r.body);
	h_resp_free(&r);
	eio_get(&r, "/engine.io/", "EIO=4&transport=polling&sid=nope");
	tap_ok(is_eio_error(&r, 400, 1), "a malformed sid: %s", r.body);
	h_resp_free(&r);
	eio_post(&r, "/engine.io/", "EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAAAA", "4x", 2);
	tap_ok(is_eio_error(&r, 400, 1), "a POST to an unknown sid: %s", r.body);
	h_resp_free(&r);
	eio_get(&r, "/engine.io/", "EIO=5&transport=polling");
	tap_ok(is_eio_error(&r, 400, 5), "EIO=5: %s", r.body);
	h_resp_free(&r);
	eio_get(&r, "/engine.io/", "transport=polling");
	tap_ok(is_eio_error(&r, 400, 5), "no EIO: %s", r.body);
	h_resp_free(&r);
	eio_get(&r, "/engine.io/", "EIO=4&transport=websocket");
	tap_ok(is_eio_error(&r, 400, 0), "transport=websocket: %s", r.body);
	h_resp_free(&r);
	eio_post(&r, "/engine.io/", "EIO=4&transport=polling", "4x", 2);
	tap_ok(is_eio_error(&r, 400, 2), "a handshake POST: %s", r.body);
	h_resp_free(&r);
	memset(big, '4', bigl);
	eio_post(&r, "/engine.io/", "EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAAAA", big, bigl);
	free(big);
	tap_ok(r.status == 413 && r.json && json_integer_value(json_object_get(r.json, "code")) == 3,
	       "a body over the limit: %ld %s", r.status, r.body);
	h_resp_free(&r);
	tap_ok(h_still_serving(&B, "echo"), "the bridge still serves");
}

/* Two GETs at once: the older answers a noop at once, the newer gets it. */
static void check_overlap(void)
{
	struct h_resp a, b, r;
	char sid[64], req[512], q[256];
	int fa, fb;
	int64_t t0;

	v4_open("/engine.io/", sid, NULL);
	snprintf(req, sizeof(req), "GET /engine.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\n"
		 "Host: x\r\nConnection: close\r\n\r\n", sid);
	fa = h_raw_connect(B.port, NULL);
	h_raw_write(fa, req, strlen(req));
	h_sleep_ms(300);
	t0 = h_now_ms();
	fb = h_raw_connect(B.port, NULL);
	h_raw_write(fb, req, strlen(req));
	tap_is_int(h_raw_read(fa, 1500, &a), H_RAW_ANSWER, "the older GET is answered at once");
	tap_ok(a.status == 200 && !strcmp(a.body, "6") && h_now_ms() - t0 < 1500,
	       "with a noop (%ld %s)", a.status, a.body);
	snprintf(q, sizeof(q), "EIO=4&transport=polling&sid=%s", sid);
	eio_post(&r, "/engine.io/", q, "4for the newer", 14);
	h_resp_free(&r);
	tap_is_int(h_raw_read(fb, 3000, &b), H_RAW_ANSWER, "the newer GET");
	tap_ok(b.status == 200 && !strcmp(b.body, "4for the newer"), "gets the data (%s)", b.body);
	h_resp_free(&a);
	h_resp_free(&b);
	close(fa);
	close(fb);
	eio_post(&r, "/engine.io/", q, "1", 1);
	h_resp_free(&r);
}

/* Forwarded headers, CORS and the preflight. */
static void check_headers(void)
{
	const char *hdr[] = { "Cookie: io=old; app=s3cr3t", "Origin: " ORIGIN, NULL };
	struct h_resp r;
	char sid[64], q[256], req[512], *raw;

	tap_is_int(eio_req(&r, "GET", "/engine.io/", "EIO=4&transport=polling", NULL, NULL, 0, hdr),
		   200, "a handshake with a Cookie and an Origin");
	open_sid(r.body, sid);
	h_resp_free(&r);
	snprintf(q, sizeof(q), "EIO=4&transport=polling&sid=%s", sid);
	eio_post(&r, "/engine.io/", q, "4headers", 8);
	h_resp_free(&r);
	eio_get(&r, "/engine.io/", q);
	tap_ok(strstr(r.body, "app=s3cr3t") && strstr(r.body, "127.0.0.1") &&
	       strstr(r.body, ORIGIN) && strstr(r.body, "\"eio\":4"),
	       "the upstream saw the Cookie, X-Forwarded-For, the Origin and EIO=4: %s", r.body);
	h_resp_free(&r);
	eio_post(&r, "/engine.io/", q, "1", 1);
	h_resp_free(&r);

	snprintf(req, sizeof(req), "GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"
		 "Origin: " ORIGIN "\r\nConnection: close\r\n\r\n");
	raw = raw_exchange(req);
	tap_ok(raw && strcasestr(raw, "Access-Control-Allow-Origin: " ORIGIN) &&
	       strcasestr(raw, "Access-Control-Allow-Credentials: true"),
	       "CORS with credentials for an allowed origin");
	if (raw && open_sid(strstr(raw, "\r\n\r\n"), sid) == 0) {
		snprintf(q, sizeof(q), "EIO=4&transport=polling&sid=%s", sid);
		eio_post(&r, "/engine.io/", q, "1", 1);
		h_resp_free(&r);
	}
	free(raw);
	snprintf(req, sizeof(req), "OPTIONS /engine.io/?EIO=3&transport=polling&sid=x HTTP/1.1\r\n"
		 "Host: x\r\nOrigin: " ORIGIN "\r\nAccess-Control-Request-Method: POST\r\n"
		 "Access-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n");
	raw = raw_exchange(req);
	tap_ok(raw && !strncmp(raw, "HTTP/1.1 200", 12) &&
	       strcasestr(raw, "Access-Control-Allow-Headers: Content-Type") &&
	       strcasestr(raw, "Access-Control-Allow-Origin: " ORIGIN),
	       "the preflight of a binary POST is answered");
	free(raw);
}

/* 300 messages each way, each exactly once and in order. */
static void check_order(void)
{
	struct h_resp r;
	char sid[64], q[256], body[4096], want[32];
	size_t next = 1, o, i;
	int dup = 0, bad = 0, sent = 0;
	int64_t end;

	v4_open("/engine.io/", sid, NULL);
	snprintf(q, sizeof(q), "EIO=4&transport=polling&sid=%s", sid);
	eio_post(&r, "/engine.io/", q, "4push 300", 9);
	h_resp_free(&r);
	end = h_now_ms() + 15000;
	while (next <= 300 && h_now_ms() < end) {
		char *pk[400];
		size_t n;

		if (eio_get(&r, "/engine.io/", q) != 200) {
			h_resp_free(&r);
			break;
		}
		n = v4_split(r.body, r.len, pk, 400);
		for (i = 0; i < n; i++) {
			if (!strcmp(pk[i], "6"))
				continue;
			snprintf(want, sizeof(want), "4m%zu", next);
			if (!strcmp(pk[i], want))
				next++;
			else if (pk[i][0] == '4' && pk[i][1] == 'm' && (size_t)atoi(pk[i] + 2) < next)
				dup++;
			else
				bad++;
		}
		free_pk(pk, n);
		h_resp_free(&r);
	}
	tap_ok(next == 301 && dup == 0 && bad == 0,
	       "300 upstream messages, once each, in order (next %zu, dup %d, bad %d)", next, dup,
	       bad);

	/* 300 up, in POSTs of 7 packets. */
	for (int k = 1; k <= 300;) {
		o = 0;
		for (int j = 0; j < 7 && k <= 300; j++, k++)
			o += (size_t)snprintf(body + o, sizeof(body) - o, "%s4c%d", j ? "\x1e" : "", k);
		if (eio_post(&r, "/engine.io/", q, body, o) == 200)
			sent++;
		h_resp_free(&r);
	}
	tap_ok(rec_wait("\"c300\"", 10000), "the last of 300 client messages arrived");
	{
		char *txt = h_read_file(rec_path), *p = txt;
		int k = 1, ooo = 0;

		while (p && (p = strstr(p, "\"d\":\"c")) != NULL) {
			int v = atoi(p + 6);

			if (v == k)
				k++;
			else
				ooo++;
			p += 6;
		}
		tap_ok(k == 301 && ooo == 0, "300 client messages, once each, in order (%d, %d bad; %d POSTs)",
		       k - 1, ooo, sent);
		free(txt);
	}
	eio_post(&r, "/engine.io/", q, "1", 1);
	h_resp_free(&r);
}

/* maxPayload: their smaller one is kept. */
static void check_their_max_payload(void)
{
	struct h_resp r;
	char sid[64];

	tap_is_int(v4_open("/small/", sid, &r), 200, "handshake with a 1000-byte server");
	tap_ok(strstr(r.body, "\"maxPayload\":1000}") != NULL, "their smaller maxPayload is kept: %s",
	       r.body);
	h_resp_free(&r);
}

/* Polls waiting on a bridge started with route and lean ("yes" or "no"
 * for --lean-long-polls): N handshakes, then on N connections of their
 * own a GET that waits. The RSS per waiting poll (KiB), or -1. */
static double held_rss(const char *route, const char *lean)
{
	enum { N = 300 };
	static int fd[N];
	struct h_bridge saved = B;
	char sid[64], req[256];
	long before, during;
	int held = 0;

	if (h_bridge_start(&B, route, "--lean-long-polls", lean, "--wait-max", "20",
			   "--log-level", "warn", NULL))
		tap_bail("pollbridge --lean-long-polls %s did not start", lean);
	before = h_rss_kib(B.proc->pid);
	for (int i = 0; i < N; i++) {
		fd[i] = -1;
		if (v4_open("/engine.io/", sid, NULL) != 200 || !sid[0])
			continue;
		fd[i] = h_raw_connect(B.port, NULL);
		snprintf(req, sizeof(req), "GET /engine.io/?EIO=4&transport=polling&sid=%s "
			 "HTTP/1.1\r\nHost: t\r\n\r\n", sid);
		if (fd[i] >= 0 && h_raw_write(fd[i], req, strlen(req)) == 0)
			held++;
	}
	h_sleep_ms(500);
	during = h_rss_kib(B.proc->pid);
	tap_is_int(held, N, "memory (%s): %d Engine.IO sessions with a waiting GET", lean, N);
	for (int i = 0; i < N; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	tap_is_int(h_stop(B.proc, SIGTERM, 15000), 0, "memory (%s): the bridge exits 0", lean);
	B = saved;
	return h_rss_per(before, during, N, lean, "waiting GETs");
}

int main(void)
{
	char r_eio[256], r_ping[256], r_sio2[256], r_sio4[256], r_small[256], r_echo[128];
	int p_eio, p_ping, p_sio2, p_sio4, p_small, p_echo;

	h_init();
	if (!h_ws_available())
		tap_bail("node or the npm packages are missing (run contrib/deps.sh test)");
	snprintf(rec_path, sizeof(rec_path), "%s/record.jsonl", h_tmpdir());
	p_eio = upstream_start("engine", "--ping", "60000", "--record", rec_path);
	p_ping = upstream_start("engine", "--ping", "300", NULL, NULL);
	p_small = upstream_start("engine", "--max-payload", "1000", NULL, NULL);
	p_sio2 = upstream_start("sio2", "--ping", "60000", NULL, NULL);
	p_sio4 = upstream_start("sio4", NULL, NULL, NULL, NULL);
	if (!h_ws_start(&p_echo, "echo", NULL))
		tap_bail("the ws echo upstream did not start");
	snprintf(r_eio, sizeof(r_eio), "--route=eio=ws://127.0.0.1:%d/engine.io/?EIO=4&"
		 "transport=websocket engineio=/engine.io/", p_eio);
	snprintf(r_ping, sizeof(r_ping), "--route=ping=ws://127.0.0.1:%d/engine.io/?"
		 "transport=websocket engineio=/ping/", p_ping);
	snprintf(r_small, sizeof(r_small), "--route=small=ws://127.0.0.1:%d/engine.io/?"
		 "transport=websocket engineio=/small/", p_small);
	snprintf(r_sio2, sizeof(r_sio2), "--route=sio2=ws://127.0.0.1:%d/socket.io/?EIO=3&"
		 "transport=websocket engineio=/socket.io/", p_sio2);
	snprintf(r_sio4, sizeof(r_sio4), "--route=sio4=ws://127.0.0.1:%d/socket.io/?EIO=4&"
		 "transport=websocket engineio=/sio4/", p_sio4);
	snprintf(r_echo, sizeof(r_echo), "--route=echo=ws://127.0.0.1:%d/", p_echo);
	if (h_bridge_start(&B, r_eio, r_ping, r_small, r_sio2, r_sio4, r_echo, "--wait-max", "2",
			   "--max-message-bytes", "65536", "--cors-origin", ORIGIN, NULL))
		tap_bail("pollbridge did not start");

	check_v4_basics();
	check_v4_ping();
	check_v4_close();
	check_their_max_payload();
	check_v3_string();
	check_v3_jsonp();
	check_v3_binary();
	check_v3_socketio();
	check_errors();
	check_overlap();
	check_headers();
	check_order();
	/* With sanitizers a leak or an error makes this non-zero. */
	tap_is_int(h_stop(B.proc, SIGTERM, 15000), 0, "the bridge drains and exits 0");
	/* --lean-long-polls: an Engine.IO GET that waits gives libmicrohttpd's
	 * connection memory back, as a /v1 poll does (test_lean_polls). */
	h_check_lean_memory(held_rss, r_eio, "waiting Engine.IO GET");
	return tap_done();
}
