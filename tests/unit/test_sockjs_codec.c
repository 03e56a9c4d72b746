/*
 * test_sockjs_codec.c: unit tests for src/sockjs_codec.c, the SockJS wire
 * format: URL shapes (greeting, info, iframe variants, session URLs and
 * what must be 404), the bridge's session id, callback names, the frame
 * quoting (every escaped range, checked code point by code point, and
 * re-parsed with jansson), a[...] and c[...] frames, each transport's
 * framing and prelude, hostile strings through htmlfile and jsonp (script
 * end tags, U+2028/2029, NUL, frame look-alikes), /info, the iframe page
 * and its ETag, and the send bodies of xhr_send and jsonp_send with the
 * SockJS error wording. Random inputs go through every parser at the end:
 * none may crash, and every quoted output must stay valid JSON.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec.h"
#include "error.h"
#include "sockjs_codec.h"
#include "tap.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* A deterministic xorshift64 generator. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

/* The next pseudo-random 64 bits. */
static uint64_t rng_next(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Encode cp as UTF-8 into u; returns the length. */
static size_t utf8(unsigned cp, char *u)
{
	if (cp < 0x80) {
		u[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	u[0] = (char)(0xf0 | (cp >> 18));
	u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	u[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The path s classified. */
static struct pb_sockjs_path path(const char *s)
{
	struct pb_sockjs_path p;

	pb_sockjs_parse_path(s, strlen(s), &p);
	return p;
}

/* URL shapes: what is served and what is 404. */
static void test_paths(void)
{
	static const char *const not_found[] = {
		"/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/", "/iframe.htm", "/iframe",
		"/IFRAME.HTML", "/IFRAME", "/iframe.HTML", "/iframe.xml", "/iframe-/.html",
		"//xhr", "/a./a/xhr", "/a/a./xhr", "/././xhr", "/xhr", "///xhr", "/a/a/XHR",
		"/a/a/xhr//", "/a/a/nope", "/a/a/xhr/x", "/a/b/c/d/e", "info", "/info/x",
		"/a/a/xhr_sendx", "/iframe.html.html/x",
	};
	static const char *const iframes[] = {
		"/iframe.html", "/iframe-a.html", "/iframe-.html", "/iframe-0.1.2.html",
		"/iframe-0.1.2abc-dirty.2144.html", "/iframe.html/",
	};
	static const struct {
		const char *name;
		enum pb_sockjs_transport t;
	} tr[] = {
		{ "xhr", PB_SOCKJS_XHR }, { "xhr_send", PB_SOCKJS_XHR_SEND },
		{ "xhr_streaming", PB_SOCKJS_XHR_STREAMING },
		{ "eventsource", PB_SOCKJS_EVENTSOURCE }, { "htmlfile", PB_SOCKJS_HTMLFILE },
		{ "jsonp", PB_SOCKJS_JSONP }, { "jsonp_send", PB_SOCKJS_JSONP_SEND },
		{ "websocket", PB_SOCKJS_WEBSOCKET },
	};
	struct pb_sockjs_path p;
	char url[128];
	size_t i;

	tap_is_int(path("").kind, PB_SOCKJS_GREETING, "the bare prefix is the greeting");
	tap_is_int(path("/").kind, PB_SOCKJS_GREETING, "prefix/ is the greeting");
	tap_is_int(path("/info").kind, PB_SOCKJS_INFO, "/info");
	tap_is_int(path("/info/").kind, PB_SOCKJS_INFO, "/info/ (one trailing slash)");
	tap_is_int(path("/websocket").kind, PB_SOCKJS_RAW_WEBSOCKET, "/websocket is recognised (404)");
	for (i = 0; i < sizeof(iframes) / sizeof(iframes[0]); i++)
		tap_is_int(path(iframes[i]).kind, PB_SOCKJS_IFRAME, "iframe page %s", iframes[i]);
	for (i = 0; i < sizeof(not_found) / sizeof(not_found[0]); i++)
		tap_is_int(path(not_found[i]).kind, PB_SOCKJS_NOT_FOUND, "404 for '%s'", not_found[i]);
	for (i = 0; i < sizeof(tr) / sizeof(tr[0]); i++) {
		snprintf(url, sizeof(url), "/000/abc/%s", tr[i].name);
		p = path(url);
		tap_ok(p.kind == PB_SOCKJS_SESSION && p.transport == tr[i].t, "%s", url);
	}
	p = path("/abcdefgh_i-j /abcdefg_i-j /xhr/");
	tap_ok(p.kind == PB_SOCKJS_SESSION && p.transport == PB_SOCKJS_XHR &&
	       p.server_len == 13 && !memcmp(p.server, "abcdefgh_i-j ", 13) &&
	       p.session_len == 12 && !memcmp(p.session, "abcdefg_i-j ", 12),
	       "any server/session value, trailing slash: ids point into the path");
	p = path("/_/_/xhr");
	tap_ok(p.kind == PB_SOCKJS_SESSION, "/_/_/xhr");
	tap_ok(pb_sockjs_receiving(PB_SOCKJS_XHR) && pb_sockjs_receiving(PB_SOCKJS_JSONP) &&
	       pb_sockjs_receiving(PB_SOCKJS_HTMLFILE) && !pb_sockjs_receiving(PB_SOCKJS_XHR_SEND) &&
	       !pb_sockjs_receiving(PB_SOCKJS_JSONP_SEND), "receiving transports");
	tap_ok(pb_sockjs_streaming(PB_SOCKJS_XHR_STREAMING) &&
	       pb_sockjs_streaming(PB_SOCKJS_EVENTSOURCE) && pb_sockjs_streaming(PB_SOCKJS_HTMLFILE) &&
	       !pb_sockjs_streaming(PB_SOCKJS_XHR) && !pb_sockjs_streaming(PB_SOCKJS_JSONP),
	       "streaming transports");
	/* A NUL inside the path is just a byte of an id, never the end. */
	pb_sockjs_parse_path("/a/b\0c/xhr", 10, &p);
	tap_ok(p.kind == PB_SOCKJS_SESSION && p.session_len == 3, "NUL inside an id is kept");
}

/* The bridge's id for a client's SockJS session. */
static void test_session_id(void)
{
	char a[PB_ID_LEN + 1], b[PB_ID_LEN + 1], c[PB_ID_LEN + 1], d[PB_ID_LEN + 1];

	tap_is_int(pb_sockjs_session_id("echo", S("sess1"), "127.0.0.1", a), 0, "id derived");
	tap_is_int(strlen(a), PB_ID_LEN, "22 characters");
	tap_is_int(a[PB_ID_LEN - 1], '.', "the last is a dot");
	tap_ok(!pb_session_id_valid(a, strlen(a)), "/v1 refuses it");
	pb_sockjs_session_id("echo", S("sess1"), "127.0.0.1", b);
	tap_is_str(a, b, "deterministic");
	pb_sockjs_session_id("echo", S("sess1"), "127.0.0.2", c);
	tap_ok(strcmp(a, c), "another client address: another session");
	pb_sockjs_session_id("chat", S("sess1"), "127.0.0.1", d);
	tap_ok(strcmp(a, d), "another route: another session");
	pb_sockjs_session_id("echo", S("sess2"), "127.0.0.1", d);
	tap_ok(strcmp(a, d), "another session id: another session");
	/* The NUL separators keep the fields apart. */
	pb_sockjs_session_id("ec", S("hosess1"), "127.0.0.1", d);
	tap_ok(strcmp(a, d), "route/session boundary matters");
	for (size_t i = 0; i < PB_ID_LEN - 1; i++) {
		char ch = a[i];

		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_')) {
			tap_ok(0, "base64url character at %zu", i);
			return;
		}
	}
	tap_ok(1, "base64url characters before the dot");
}

/* htmlfile/jsonp callback names. */
static void test_callbacks(void)
{
	static const char *const good[] = { "callback", "x", "_jp.a1b2c3", "$a.b_c.d9" };
	static const char *const bad[] = {
		"", "a b", "a-b", "alert(1)", "a..b", ".a", "a.", "9a", "a;b", "a\"b", "</script>",
		"a\nb", "a=b", "x.y[0]",
	};
	char longname[PB_SOCKJS_MAX_CALLBACK + 2];
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		tap_ok(pb_sockjs_callback_valid(good[i], strlen(good[i])), "callback '%s' ok", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		tap_ok(!pb_sockjs_callback_valid(bad[i], strlen(bad[i])), "bad callback #%zu refused",
		       i);
	memset(longname, 'a', sizeof(longname));
	tap_ok(pb_sockjs_callback_valid(longname, PB_SOCKJS_MAX_CALLBACK), "longest callback ok");
	tap_ok(!pb_sockjs_callback_valid(longname, PB_SOCKJS_MAX_CALLBACK + 1),
	       "one more byte refused");
	tap_ok(!pb_sockjs_callback_valid("a\0b", 3), "NUL refused");
}

/* s quoted, as a malloc'd string. */
static char *quoted(const char *s, size_t len)
{
	struct pb_buf b;
	char *out;

	pb_buf_init(&b, 0);
	if (pb_sockjs_quote(&b, s, len))
		tap_bail("quote failed");
	out = pb_buf_steal(&b, NULL);
	return out;
}

/* 1 if SockJS wants cp escaped (the protocol's server set). */
static int escapable(unsigned cp)
{
	return cp < 0x20 || (cp >= 0x200c && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) ||
	       (cp >= 0x2060 && cp <= 0x206f) || cp >= 0xfff0;
}

/* The frame quoting, code point by code point. */
static void test_quote(void)
{
	char u[8], want[16], *q;
	unsigned cp;
	int bad_escape = 0, bad_raw = 0, bad_json = 0;
	json_t *j;

	q = quoted(S("hi"));
	tap_is_str(q, "\"hi\"", "plain text");
	free(q);
	q = quoted(S("a\"b\\c/d"));
	tap_is_str(q, "\"a\\\"b\\\\c/d\"", "quote and backslash escaped, slash not");
	free(q);
	q = quoted(S("\b\f\n\r\t"));
	tap_is_str(q, "\"\\b\\f\\n\\r\\t\"", "named control escapes");
	free(q);
	q = quoted(S("\0\x01\x1f"));
	tap_is_str(q, "\"\\u0000\\u0001\\u001f\"", "other controls as lower-case \\u00xx");
	free(q);
	q = quoted(S("\xe2\x80\xa8\xe2\x80\xa9"));
	tap_is_str(q, "\"\\u2028\\u2029\"", "U+2028 and U+2029 escaped");
	free(q);
	q = quoted(S("\xff" "a\xc0\xaf" "b\xed\xa0\x80" "c\xf4\x90\x80\x80"));
	j = json_loads(q, JSON_DECODE_ANY, NULL);
	tap_ok(j && json_is_string(j), "invalid UTF-8 still gives valid JSON: %s", q);
	tap_ok(strstr(q, "\\ufffd") != NULL, "invalid bytes become \\ufffd");
	json_decref(j);
	free(q);
	q = quoted(S("\xc3\xa9\xf0\x9f\x98\x80\xe2\x80\x80"));
	tap_is_str(q, "\"\xc3\xa9\xf0\x9f\x98\x80\xe2\x80\x80\"",
		   "other UTF-8 (U+00E9, U+1F600, U+2000) copied");
	free(q);
	q = quoted(S("a[\"x\"]"));
	tap_is_str(q, "\"a[\\\"x\\\"]\"", "a frame look-alike is just a string");
	free(q);

	/* Every BMP code point but the surrogates: escaped exactly when the
	 * protocol wants it (the spec's "server killer string"), copied raw
	 * otherwise, and jansson reads the character back. */
	for (cp = 0; cp <= 0xffff; cp++) {
		size_t n;
		const char *got;

		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		n = utf8(cp, u);
		q = quoted(u, n);
		got = q + 1;
		if (escapable(cp) && cp != '\b' && cp != '\f' && cp != '\n' && cp != '\r' &&
		    cp != '\t') {
			snprintf(want, sizeof(want), "\\u%04x\"", cp);
			if (strcmp(got, want))
				bad_escape++;
		} else if (!escapable(cp) && cp != '"' && cp != '\\') {
			if (strlen(got) != n + 1 || memcmp(got, u, n))
				bad_raw++;
		}
		j = json_loads(q, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		if (!j || json_string_length(j) != n || memcmp(json_string_value(j), u, n))
			bad_json++;
		json_decref(j);
		free(q);
	}
	tap_is_int(bad_escape, 0, "every escapable code point as \\uxxxx");
	tap_is_int(bad_raw, 0, "every other code point copied");
	tap_is_int(bad_json, 0, "every code point round-trips through jansson");
}

/* Frames and their framing per transport. */
static void test_frames(void)
{
	struct pb_msg *m[3];
	struct pb_buf b, f;
	char *s;

	m[0] = pb_msg_new(PB_MSG_TEXT, S("x"));
	m[1] = pb_msg_new(PB_MSG_BINARY, S("\x01\x02"));
	m[2] = pb_msg_new(PB_MSG_TEXT, S("y\"z"));
	pb_buf_init(&b, 0);
	pb_sockjs_frame_messages(&b, m, 3);
	tap_is_str(b.data, "a[\"x\",\"y\\\"z\"]", "a[...] of the text messages");
	b.len = 0;
	pb_sockjs_frame_messages(&b, m, 0);
	tap_is_str(b.data, "a[]", "empty a[]");
	b.len = 0;
	pb_sockjs_frame_messages(&b, m + 1, 1);
	tap_is_str(b.data, "a[]", "binary skipped");
	b.len = 0;
	pb_sockjs_frame_close(&b, 3000, S("Go away!"));
	tap_is_str(b.data, "c[3000,\"Go away!\"]", "close frame");
	b.len = 0;
	pb_sockjs_frame_close(&b, 2010, S("Another connection still open"));
	tap_is_str(b.data, "c[2010,\"Another connection still open\"]", "2010 frame");
	b.len = 0;
	pb_sockjs_frame_close(&b, 4001, S("a\"b\xe2\x80\xa8"));
	tap_is_str(b.data, "c[4001,\"a\\\"b\\u2028\"]", "close reason quoted");
	b.len = 0;
	pb_sockjs_frame_close(&b, 1000, NULL, 0);
	tap_is_str(b.data, "c[1000,\"\"]", "close without reason");
	pb_msg_unref(m[0]);
	pb_msg_unref(m[1]);
	pb_msg_unref(m[2]);

	b.len = 0;
	pb_sockjs_wrap(&b, PB_SOCKJS_XHR, S("o"), NULL);
	tap_is_str(b.data, "o\n", "xhr: o\\n");
	b.len = 0;
	pb_sockjs_wrap(&b, PB_SOCKJS_XHR_STREAMING, S("h"), NULL);
	tap_is_str(b.data, "h\n", "xhr_streaming: h\\n");
	b.len = 0;
	pb_sockjs_wrap(&b, PB_SOCKJS_EVENTSOURCE, S("o"), NULL);
	tap_is_str(b.data, "data: o\r\n\r\n", "eventsource: data: o");
	b.len = 0;
	pb_sockjs_wrap(&b, PB_SOCKJS_EVENTSOURCE, S("a[\"  \\u0000\\n\\r \"]"), NULL);
	tap_is_str(b.data, "data: a[\"  \\u0000\\n\\r \"]\r\n\r\n",
		   "eventsource: escaped controls pass as they are");
	b.len = 0;
	pb_sockjs_wrap(&b, PB_SOCKJS_EVENTSOURCE, S("a[\"100%25 %\"]\r\n\0"), NULL);
	tap_ok(b.len == strlen("data: a[\"100%2525 %25\"]%0D%0A%00\r\n\r\n") &&
	       !memcmp(b.data, "data: a[\"100%2525 %25\"]%0D%0A%00\r\n\r\n", b.len),
	       "eventsource: %% CR LF NUL percent-encoded (the client decodeURI()s)");
	b.len = 0;
	pb_sockjs_wrap(&b, PB_SOCKJS_HTMLFILE, S("o"), NULL);
	tap_is_str(b.data, "<script>\np(\"o\");\n</script>\r\n", "htmlfile: o");
	b.len = 0;
	pb_sockjs_wrap(&b, PB_SOCKJS_HTMLFILE, S("a[\"x\"]"), NULL);
	tap_is_str(b.data, "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n", "htmlfile: a[\"x\"]");
	b.len = 0;
	pb_sockjs_wrap(&b, PB_SOCKJS_JSONP, S("o"), "callback");
	tap_is_str(b.data, "/**/callback(\"o\");\r\n", "jsonp: o");
	b.len = 0;
	pb_sockjs_wrap(&b, PB_SOCKJS_JSONP, S("c[3000,\"Go away!\"]"), "x");
	tap_is_str(b.data, "/**/x(\"c[3000,\\\"Go away!\\\"]\");\r\n", "jsonp: close");

	/* Hostile messages through the script transports: the frame they make,
	 * wrapped, must not end the script element or the statement, and
	 * must decode (the JS string is also JSON) to the frame, whose
	 * a[...] decodes to the message. */
	static const char *const hostile[] = {
		"</script><script>alert(1)</script>", "</SCRIPT>", "<!--<script>", "\");alert(1);//",
		"a[\"x\"]", "c[3000,\"x\"]\n", "\xe2\x80\xa8\xe2\x80\xa9", "\0nul\0", "'&<>'",
		"\\u003c/script>", "\r\n\r\ndata: a[\"x\"]\r\n\r\n", "%41%%",
	};
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		size_t hl = i == 7 ? 5 : strlen(hostile[i]);
		struct pb_msg *hm = pb_msg_new(PB_MSG_TEXT, hostile[i], hl);
		enum pb_sockjs_transport ts[2] = { PB_SOCKJS_HTMLFILE, PB_SOCKJS_JSONP };

		pb_buf_init(&f, 0);
		pb_sockjs_frame_messages(&f, &hm, 1);
		for (int k = 0; k < 2; k++) {
			const char *start, *end;
			json_t *js, *arr;
			int good = 0;

			b.len = 0;
			pb_sockjs_wrap(&b, ts[k], f.data, f.len, "cb");
			if (ts[k] == PB_SOCKJS_HTMLFILE) {
				start = b.data + strlen("<script>\np(");
				end = b.data + b.len - strlen(");\n</script>\r\n");
			} else {
				start = b.data + strlen("/**/cb(");
				end = b.data + b.len - strlen(");\r\n");
			}
			tap_ok(!memchr(start, '<', (size_t)(end - start)) &&
			       !memchr(start, '\0', (size_t)(end - start)) &&
			       !memchr(start, '\n', (size_t)(end - start)) &&
			       !strstr(b.data, "\xe2\x80\xa8") && !strstr(b.data, "\xe2\x80\xa9"),
			       "%s #%zu: no '<', NUL, newline, U+2028/9 inside the string",
			       k ? "jsonp" : "htmlfile", i);
			js = json_loadb(start, (size_t)(end - start), JSON_DECODE_ANY | JSON_ALLOW_NUL,
					NULL);
			if (js && json_is_string(js) && json_string_length(js) == f.len &&
			    !memcmp(json_string_value(js), f.data, f.len)) {
				arr = json_loadb(json_string_value(js) + 1, f.len - 1, JSON_ALLOW_NUL,
						 NULL);
				good = arr && json_array_size(arr) == 1 &&
				       json_string_length(json_array_get(arr, 0)) == hl &&
				       !memcmp(json_string_value(json_array_get(arr, 0)), hostile[i], hl);
				json_decref(arr);
			}
			json_decref(js);
			tap_ok(good, "%s #%zu decodes to the frame and the message",
			       k ? "jsonp" : "htmlfile", i);
		}
		b.len = 0;
		pb_sockjs_wrap(&b, PB_SOCKJS_EVENTSOURCE, f.data, f.len, NULL);
		s = strstr(b.data, "\r\n");
		tap_ok(s && s == b.data + b.len - 4 && !memchr(b.data, '\0', b.len),
		       "eventsource #%zu: one event, no NUL", i);
		b.len = 0;
		pb_sockjs_wrap(&b, PB_SOCKJS_XHR, f.data, f.len, NULL);
		tap_ok(memchr(b.data, '\n', b.len) == b.data + b.len - 1, "xhr #%zu: one line", i);
		pb_buf_free(&f);
		pb_msg_unref(hm);
	}
	pb_buf_free(&b);
}

/* Preludes, /info and the iframe page. */
static void test_pages(void)
{
	char etag[PB_SOCKJS_ETAG_LEN + 1], etag2[PB_SOCKJS_ETAG_LEN + 1];
	struct pb_buf b;
	json_t *j;
	size_t i;
	int allh = 1;

	pb_buf_init(&b, 0);
	pb_sockjs_prelude(&b, PB_SOCKJS_XHR_STREAMING, NULL);
	for (i = 0; i < 2048; i++)
		allh &= b.data[i] == 'h';
	tap_ok(b.len == 2049 && allh && b.data[2048] == '\n', "xhr_streaming: 2048 h and \\n");
	b.len = 0;
	pb_sockjs_prelude(&b, PB_SOCKJS_EVENTSOURCE, NULL);
	tap_is_str(b.data, "\r\n", "eventsource prelude");
	b.len = 0;
	pb_sockjs_prelude(&b, PB_SOCKJS_XHR, NULL);
	tap_is_int(b.len, 0, "xhr: no prelude");
	b.len = 0;
	pb_sockjs_prelude(&b, PB_SOCKJS_HTMLFILE, "_jp.abc");
	tap_ok(b.len > 1024, "htmlfile prelude past 1 KiB (%zu)", b.len);
	tap_ok(strstr(b.data, "var c = parent._jp.abc;") && strstr(b.data, "c.start();") &&
	       strstr(b.data, "c.message(d)") && strstr(b.data, "c.stop()"),
	       "htmlfile prelude calls the callback's start/message/stop");
	tap_ok(b.len >= 4 && !memcmp(b.data + b.len - 4, "\r\n\r\n", 4), "ends with CRLF CRLF");

	b.len = 0;
	pb_sockjs_info(&b, 0, 4294967295u);
	j = json_loads(b.data, 0, NULL);
	tap_ok(j && json_is_false(json_object_get(j, "websocket")) &&
	       json_is_false(json_object_get(j, "cookie_needed")) &&
	       json_array_size(json_object_get(j, "origins")) == 1 &&
	       !strcmp(json_string_value(json_array_get(json_object_get(j, "origins"), 0)), "*:*") &&
	       json_integer_value(json_object_get(j, "entropy")) == 4294967295LL,
	       "/info: %s", b.data);
	json_decref(j);
	b.len = 0;
	pb_sockjs_info(&b, 1, 0);
	j = json_loads(b.data, 0, NULL);
	tap_ok(j && json_is_true(json_object_get(j, "cookie_needed")), "cookie_needed true");
	json_decref(j);

	b.len = 0;
	tap_is_int(pb_sockjs_iframe(&b, "/static/sockjs.min.js", etag), 0, "iframe page");
	tap_ok(strstr(b.data, "<script src=\"/static/sockjs.min.js\"></script>") &&
	       strstr(b.data, "SockJS.bootstrap_iframe();") && !strncmp(b.data, "<!DOCTYPE html>", 15),
	       "iframe page loads the URL and bootstraps");
	tap_ok(strlen(etag) == 34 && etag[0] == '"' && etag[33] == '"', "ETag quoted: %s", etag);
	b.len = 0;
	pb_sockjs_iframe(&b, "/static/sockjs.min.js", etag2);
	tap_is_str(etag, etag2, "same page, same ETag");
	b.len = 0;
	pb_sockjs_iframe(&b, "http://x/\"><script>alert(1)</script>&", etag2);
	tap_ok(strcmp(etag, etag2), "another URL, another ETag");
	tap_ok(!strstr(b.data, "alert(1)</script>") &&
	       strstr(b.data, "http://x/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;"),
	       "the URL is HTML-escaped");
	pb_buf_free(&b);
}

/* One send body parsed: its status, why and messages. */
struct parsed {
	int r;
	const char *why;
	size_t n;
	char msg[4][64];
	size_t len[4];
};

/* Parse body and keep what the test looks at. */
static struct parsed parse(const char *body, size_t len, int form)
{
	struct pb_send_req req;
	struct parsed p;

	memset(&p, 0, sizeof(p));
	p.r = pb_sockjs_parse_send(body, len, form, 100, 10, &req, &p.why);
	p.n = req.n;
	for (size_t i = 0; i < req.n && i < 4; i++) {
		p.len[i] = req.msgs[i]->len < 63 ? req.msgs[i]->len : 63;
		memcpy(p.msg[i], req.msgs[i]->data, p.len[i]);
	}
	if (p.r && (req.n || req.msgs))
		tap_ok(0, "an error left messages behind");
	pb_send_req_free(&req);
	return p;
}

/* xhr_send and jsonp_send bodies. */
static void test_send_bodies(void)
{
	static const char *const broken[] = {
		"[\"x", "[", "[\"a\"]x", "[\"a\",]", "[,\"a\"]", "[\"a\" \"b\"]", "x", "[\"\\x\"]",
		"[\"\\u12\"]", "[\"a\xff\"]", "[\"a\x01\"]", "]", "[\"a\"]]", "nul",
	};
	static const char *const not_payload[] = {
		"\"abc\"", "[1]", "{}", "[\"a\",1]", "null", "[[\"a\"]]", "[true]", "{\"d\":[\"a\"]}",
		"123",
	};
	struct parsed p;
	size_t i;

	p = parse(S("[\"a\"]"), 0);
	tap_ok(!p.r && p.n == 1 && p.len[0] == 1 && p.msg[0][0] == 'a', "[\"a\"]");
	p = parse(S(" [ \"x\" ,\n\"y\" ]\r\n"), 0);
	tap_ok(!p.r && p.n == 2 && p.msg[1][0] == 'y', "whitespace allowed");
	p = parse(S("[]"), 0);
	tap_ok(!p.r && p.n == 0, "[] is no messages");
	p = parse(S("[\"\\u0000\\n\\r\\\"\\\\\\/\\b\\f\\t\"]"), 0);
	tap_ok(!p.r && p.len[0] == 9 && !memcmp(p.msg[0], "\0\n\r\"\\/\b\f\t", 9), "escapes decoded");
	p = parse(S("[\"\\ud83d\\ude00\"]"), 0);
	tap_ok(!p.r && p.len[0] == 4 && !memcmp(p.msg[0], "\xf0\x9f\x98\x80", 4), "surrogate pair");
	p = parse(S("[\"\\ud800x\", \"\\udc00\", \"\\uD83D\"]"), 0);
	tap_ok(!p.r && p.n == 3 && p.len[0] == 4 && !memcmp(p.msg[0], "\xef\xbf\xbdx", 4) &&
	       p.len[1] == 3 && !memcmp(p.msg[1], "\xef\xbf\xbd", 3) && p.len[2] == 3,
	       "lone surrogates become U+FFFD");
	p = parse(S("[\"\xc3\xa9\xe2\x80\xa8\"]"), 0);
	tap_ok(!p.r && p.len[0] == 5, "raw UTF-8 kept");
	p = parse(S("[\"\\u00e9\\u2028\\uFFFF\"]"), 0);
	tap_ok(!p.r && p.len[0] == 8 && !memcmp(p.msg[0], "\xc3\xa9\xe2\x80\xa8\xef\xbf\xbf", 8),
	       "\\u escapes the client sends decoded");
	p = parse("", 0, 0);
	tap_ok(p.r == PB_EBADREQ && !strcmp(p.why, PB_SOCKJS_PAYLOAD_EXPECTED), "empty: Payload expected.");
	p = parse(NULL, 0, 0);
	tap_ok(p.r == PB_EBADREQ && !strcmp(p.why, PB_SOCKJS_PAYLOAD_EXPECTED), "NULL body");
	for (i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
		p = parse(broken[i], strlen(broken[i]), 0);
		tap_ok(p.r == PB_EBADREQ && p.why && !strcmp(p.why, PB_SOCKJS_BROKEN_JSON),
		       "'%s': Broken JSON encoding. (%s)", broken[i], p.why ? p.why : "-");
	}
	for (i = 0; i < sizeof(not_payload) / sizeof(not_payload[0]); i++) {
		p = parse(not_payload[i], strlen(not_payload[i]), 0);
		tap_ok(p.r == PB_EBADREQ && p.why && !strcmp(p.why, PB_SOCKJS_PAYLOAD_EXPECTED),
		       "'%s': Payload expected. (%s)", not_payload[i], p.why ? p.why : "-");
	}
	{
		char big[200];

		memset(big, 'x', sizeof(big));
		big[0] = '[';
		big[1] = '"';
		big[sizeof(big) - 2] = '"';
		big[sizeof(big) - 1] = ']';
		p = parse(big, sizeof(big), 0);
		tap_ok(p.r == PB_ETOOBIG, "a message past max_msg_bytes: too big");
	}
	p = parse(S("[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\"]"), 0);
	tap_ok(p.r == PB_ETOOBIG, "more than max_msgs: too big");
	p = parse(S("[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\"]"), 0);
	tap_ok(!p.r && p.n == 10, "exactly max_msgs");

	/* jsonp_send: form d= and raw bodies. */
	p = parse(S("d=%5B%22x%22%5D"), 1);
	tap_ok(!p.r && p.n == 1 && p.msg[0][0] == 'x', "form d=");
	p = parse(S("i=abc&d=%5B%22a+b%22%2C%22c%22%5D"), 1);
	tap_ok(!p.r && p.n == 2 && p.len[0] == 3 && !memcmp(p.msg[0], "a b", 3), "form: other fields, '+'");
	p = parse(S("[\"%61bc\"]"), 0);
	tap_ok(!p.r && p.len[0] == 5 && !memcmp(p.msg[0], "%61bc", 5), "raw body: no percent-decoding");
	static const char *const form_empty[] = { "", "d=", "p=p", "&&", "d" };
	for (i = 0; i < sizeof(form_empty) / sizeof(form_empty[0]); i++) {
		p = parse(form_empty[i], strlen(form_empty[i]), 1);
		tap_ok(p.r == PB_EBADREQ && !strcmp(p.why, PB_SOCKJS_PAYLOAD_EXPECTED),
		       "form '%s': Payload expected.", form_empty[i]);
	}
	p = parse(S("d=%5B%22x"), 1);
	tap_ok(p.r == PB_EBADREQ && !strcmp(p.why, PB_SOCKJS_BROKEN_JSON), "form: broken JSON");
	p = parse(S("d=%ZZ"), 1);
	tap_ok(p.r == PB_EBADREQ && !strcmp(p.why, PB_SOCKJS_BROKEN_JSON), "form: bad escape");
}

/* Plain runs are copied eight bytes at a time (pb_json_plain_span): a
 * byte that needs escaping at any offset of a longer string is escaped
 * exactly as when it stands alone (the single code points above), in the
 * frame's JSON and in the HTML-safe string of the script transports. */
static void test_quote_runs(void)
{
	static const char *const specials[] = {
		"\"", "\\", "\n", "\x01", "\x7f", "<", ">", "&", "'", "\xe2\x80\xa8", "\xc3\xa9",
		"\xff",
	};
	int bad_json = 0, bad_html = 0, n = 0;

	for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
		const char *sp = specials[k];
		size_t sl = strlen(sp);
		char *alone = quoted(sp, sl);

		for (size_t pos = 0; pos < 20; pos++) {
			char in[64], want[128];
			struct pb_buf b, f, w;
			struct pb_msg *m;
			const char *start, *end;
			json_t *js;
			size_t len;

			memset(in, 'x', sizeof(in));
			memcpy(in + pos, sp, sl);
			len = 24 + sl;
			snprintf(want, sizeof(want), "\"%.*s%.*s%.*s\"", (int)pos, in, (int)(strlen(alone) - 2),
				 alone + 1, (int)(len - pos - sl), in + pos + sl);
			pb_buf_init(&b, 0);
			if (pb_sockjs_quote(&b, in, len) || pb_buf_append(&b, "", 1) ||
			    strcmp(b.data, want))
				bad_json++;
			pb_buf_free(&b);
			/* the script transports: no raw '<', '>', '&' or quote in
			 * the string, and it decodes to the frame */
			m = pb_msg_new(PB_MSG_TEXT, in, len);
			pb_buf_init(&f, 0);
			pb_buf_init(&w, 0);
			pb_sockjs_frame_messages(&f, &m, 1);
			pb_sockjs_wrap(&w, PB_SOCKJS_JSONP, f.data, f.len, "cb");
			start = w.data + strlen("/**/cb(\"");
			end = w.data + w.len - strlen("\");\r\n");
			js = json_loadb(start - 1, (size_t)(end - start + 2), JSON_DECODE_ANY, NULL);
			for (const char *c = start; c < end; c++)
				if (*c == '<' || *c == '>' || *c == '&' || *c == '\'')
					js = (json_decref(js), NULL);
			if (!js || json_string_length(js) != f.len ||
			    memcmp(json_string_value(js), f.data, f.len))
				bad_html++;
			json_decref(js);
			pb_buf_free(&w);
			pb_buf_free(&f);
			pb_msg_unref(m);
			n++;
		}
		free(alone);
	}
	tap_is_int(bad_json, 0, "%d strings with an escaped byte at offsets 0 to 19: as when alone",
		   n);
	tap_is_int(bad_html, 0, "the same through jsonp: HTML-safe, decode to the frame");
}

/* Random input through every parser and encoder: no crash, quoted output
 * always valid JSON. */
static void test_random(void)
{
	char in[256];
	struct pb_buf b;
	struct pb_send_req req;
	struct pb_sockjs_path p;
	const char *why;
	int bad = 0, i;
	static const char alphabet[] = "[]\"\\u,dD=%&0a9fF/. \x01\xc3\xa9\xed\xa0\x80\xff";

	pb_buf_init(&b, 0);
	for (i = 0; i < 20000; i++) {
		size_t n = rng_next() % sizeof(in), k;
		json_t *j;

		for (k = 0; k < n; k++)
			in[k] = (i & 1) ? (char)rng_next()
					: alphabet[rng_next() % (sizeof(alphabet) - 1)];
		pb_sockjs_parse_send(in, n, i & 2, 64, 8, &req, &why);
		pb_send_req_free(&req);
		pb_sockjs_parse_path(in, n, &p);
		(void)pb_sockjs_callback_valid(in, n);
		b.len = 0;
		pb_sockjs_quote(&b, in, n);
		j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		if (!j)
			bad++;
		json_decref(j);
		b.len = 0;
		pb_sockjs_wrap(&b, (enum pb_sockjs_transport)(rng_next() % 8), in, n, "cb");
		pb_sockjs_frame_close(&b, (int)(rng_next() % 5000), in, n);
	}
	tap_is_int(bad, 0, "20000 random strings quote to valid JSON, parsers survive");
	pb_buf_free(&b);
}

int main(void)
{
	test_paths();
	test_session_id();
	test_callbacks();
	test_quote();
	test_quote_runs();
	test_frames();
	test_pages();
	test_send_bodies();
	test_random();
	return tap_done();
}
