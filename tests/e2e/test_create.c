/*
 * test_create.c: session creation, POST /v1/sessions, against the real
 * binary and pollbridge-echo. Covered: the three request forms (JSON body,
 * form body, query string with an empty body) and their media-type
 * variants; the 201 answer (Location path, session id shape, protocol, and
 * the configured wait_max/idle_timeout/max_message_bytes echoed); 50 ids
 * all distinct; the subprotocol the upstream chose and saw (echo's
 * /protocol); the Origin forwarded on the upstream handshake (route's
 * origin=, else the client's, else none); every bad input with its exact
 * status and error code (malformed JSON, bad route or protocols, bad form
 * escapes, wrong media type, oversized body, wrong method, unknown path);
 * upstream failures (refused, HTTP answer instead of a handshake, no
 * answer within --connect-timeout, no acceptable subprotocol); the
 * connect deadline being --connect-timeout exactly, also above
 * libwebsockets' own 5 s (an upstream that never accepts and one that
 * accepts and never answers, tests/upstreams/raw_ws.py); and
 * --max-sessions (503 too_many_sessions, a DELETE, a failed create or an
 * idle expiry frees a slot). Every error has the API's error body and
 * headers, and the daemon still serves after each group of bad inputs.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

#define WAIT_MAX	3
#define IDLE_TIMEOUT	5
#define MAX_MSG		1000
#define BODY_LIMIT	(2 * MAX_MSG + 64 * 1024)
#define N_IDS		50
#define ORIGIN_CONF	"https://configured.example"
#define ORIGIN_CLIENT	"https://client.example"
#define ID_CHARS	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

/* The main bridge (routes echo, origin, dead, self, hole and a 64-character
 * name) and the name of that longest route. */
static struct h_bridge B;
static char long_route[65];

/* POST /v1/sessions<query> with the given body; r is filled. */
static long create_raw(struct h_bridge *b, const char *query, const char *ct, const char *body,
		       size_t len, const char *const *headers, struct h_resp *r)
{
	char url[1024];

	snprintf(url, sizeof(url), "%s/v1/sessions%s", b->base, query ? query : "");
	h_http(r, "POST", url, ct, body, len, headers);
	return r->status;
}

/* 1 if s looks like a session id: at least 22 characters of base64url. */
static int id_shaped(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	return n >= 22 && strspn(s, ID_CHARS) == n;
}

/* Check r is the error answer status/code: the API's error body, JSON
 * content type and Cache-Control: no-store. */
static void is_error(const struct h_resp *r, long status, const char *code, const char *what)
{
	json_t *msg = json_object_get(r->json, "message");

	tap_is_int(r->status, status, "%s: status %ld", what, status);
	tap_is_str(h_err(r), code, "%s: error %s", what, code);
	tap_ok(json_is_object(r->json) && json_object_size(r->json) == 2 && json_is_string(msg) &&
	       json_string_length(msg) > 0,
	       "%s: body is {\"error\",\"message\"} (%s)", what, r->body ? r->body : "");
	tap_ok(strncmp(r->content_type, "application/json", 16) == 0, "%s: Content-Type %s", what,
	       r->content_type);
	tap_ok(strstr(r->cache_control, "no-store") != NULL, "%s: Cache-Control '%s'", what,
	       r->cache_control);
}

/* A create that must fail with status/code. */
static void bad_create(const char *query, const char *ct, const char *body, long status,
		       const char *code, const char *what)
{
	struct h_resp r;

	create_raw(&B, query, ct, body, body ? strlen(body) : 0, NULL, &r);
	is_error(&r, status, code, what);
	h_resp_free(&r);
}

/* Send cmd on a fresh session and return the data of the first message
 * that comes back (malloc'd), or NULL if none did within 5 s. */
static char *ask(struct h_bridge *b, const char *id, const char *cmd)
{
	json_t *got = json_array();
	const char *s;
	char *out = NULL;

	if (got && h_send_text(b, id, cmd, NULL) == 200 && h_collect(b, id, 0, 1, 5000, got) >= 1) {
		s = json_string_value(json_object_get(json_array_get(got, 0), "data"));
		out = s ? strdup(s) : NULL;
	}
	json_decref(got);
	return out;
}

/* Check a 201 answer: headers, id, Location, protocol (NULL for null) and
 * the configured limits; copies the id into id (64 bytes). 1 if it is a
 * usable 201. */
static int is_created(const struct h_resp *r, const char *protocol, char *id, const char *what)
{
	const char *sid = json_string_value(json_object_get(r->json, "session"));
	json_t *proto = json_object_get(r->json, "protocol");
	char loc[128];

	id[0] = '\0';
	if (!tap_is_int(r->status, 201, "%s: 201 (%s)", what, r->body ? r->body : "")) {
		tap_diag("%s: no session, skipping the answer's checks", what);
		return 0;
	}
	snprintf(id, 64, "%s", sid ? sid : "");
	tap_ok(id_shaped(sid), "%s: id '%s' is >= 22 chars of [A-Za-z0-9_-]", what, id);
	snprintf(loc, sizeof(loc), "/v1/sessions/%s", id);
	tap_is_str(r->location, loc, "%s: Location is the session's path", what);
	tap_ok(strncmp(r->content_type, "application/json", 16) == 0, "%s: Content-Type %s", what,
	       r->content_type);
	tap_ok(strstr(r->cache_control, "no-store") != NULL, "%s: Cache-Control '%s'", what,
	       r->cache_control);
	if (protocol)
		tap_is_str(json_string_value(proto), protocol, "%s: protocol", what);
	else
		tap_ok(json_is_null(proto), "%s: protocol is null", what);
	tap_ok(json_is_integer(json_object_get(r->json, "wait_max")) &&
	       json_integer_value(json_object_get(r->json, "wait_max")) == WAIT_MAX,
	       "%s: wait_max %d", what, WAIT_MAX);
	tap_ok(json_is_integer(json_object_get(r->json, "idle_timeout")) &&
	       json_integer_value(json_object_get(r->json, "idle_timeout")) == IDLE_TIMEOUT,
	       "%s: idle_timeout %d", what, IDLE_TIMEOUT);
	tap_ok(json_is_integer(json_object_get(r->json, "max_message_bytes")) &&
	       json_integer_value(json_object_get(r->json, "max_message_bytes")) == MAX_MSG,
	       "%s: max_message_bytes %d", what, MAX_MSG);
	return 1;
}

/* A create that must succeed with protocol (NULL: null), after which the
 * upstream must report seen ("none" when nothing was offered) to
 * /protocol; the session is then deleted. */
static void good_create(const char *query, const char *ct, const char *body,
			const char *protocol, const char *seen, const char *what)
{
	struct h_resp r;
	char id[64], *got;

	create_raw(&B, query, ct, body, body ? strlen(body) : 0, NULL, &r);
	if (is_created(&r, protocol, id, what)) {
		got = ask(&B, id, "/protocol");
		tap_is_str(got, seen, "%s: the upstream saw subprotocol %s", what, seen);
		free(got);
		tap_is_int(h_delete(&B, id), 204, "%s: DELETE", what);
	}
	h_resp_free(&r);
}

/* The three request forms and their accepted variants. */
static void check_forms(void)
{
	struct h_resp r, p;
	char id[64], url[512], body[256];

	/* JSON, then a poll on the Location path proves it names the session. */
	create_raw(&B, NULL, "application/json", "{\"route\":\"echo\"}", 16, NULL, &r);
	if (is_created(&r, NULL, id, "JSON create")) {
		snprintf(url, sizeof(url), "%s%s/messages", B.base, r.location);
		h_http(&p, "GET", url, NULL, NULL, 0, NULL);
		tap_is_int(p.status, 200, "a poll on Location answers 200");
		tap_ok(p.json && json_is_array(json_object_get(p.json, "messages")),
		       "with a messages list (%s)", p.body);
		h_resp_free(&p);
		tap_is_int(h_delete(&B, id), 204, "JSON create: DELETE");
	}
	h_resp_free(&r);

	good_create(NULL, "application/json", "{\"route\":\"echo\",\"protocols\":[\"chat\"]}",
		    "chat", "chat", "JSON with protocols [chat]");
	good_create(NULL, "application/json", "{\"route\":\"echo\",\"protocols\":[]}",
		    NULL, "none", "JSON with protocols []");
	good_create(NULL, "application/json", "{\"route\":\"echo\",\"protocols\":null}",
		    NULL, "none", "JSON with protocols null (absent)");
	good_create(NULL, "application/json",
		    "{\"route\":\"echo\",\"protocols\":[\"x-unknown\",\"echo\"]}",
		    "echo", "echo", "JSON offering [x-unknown, echo]");
	good_create(NULL, "application/json", "{\"route\":\"echo\",\"other\":[1,{}]}",
		    NULL, "none", "JSON with an unknown key");
	good_create(NULL, "application/json; charset=utf-8", "{\"route\":\"echo\"}",
		    NULL, "none", "JSON with a charset parameter");
	good_create(NULL, "Application/JSON", "{\"route\":\"echo\"}",
		    NULL, "none", "JSON media type in mixed case");
	good_create(NULL, "application/x-www-form-urlencoded",
		    "route=echo&protocol=chat&protocol=x", "chat", "chat", "form create");
	good_create(NULL, "application/x-www-form-urlencoded", "route=%65ch%6F", NULL, "none",
		    "form with percent escapes");
	good_create(NULL, "application/x-www-form-urlencoded; charset=utf-8",
		    "protocol=echo&other=1&route=echo", "echo", "echo",
		    "form with route last and an unknown field");
	good_create("?route=echo", NULL, NULL, NULL, "none", "query create, empty body");
	good_create("?route=echo&protocol=chat&protocol=x", NULL, NULL, "chat", "chat",
		    "query create with protocols");
	good_create("?route=echo&foo=bar", "application/json", NULL, NULL, "none",
		    "query create with a JSON Content-Type and an empty body");
	snprintf(body, sizeof(body), "{\"route\":\"%s\"}", long_route);
	good_create(NULL, "application/json", body, NULL, "none",
		    "a configured 64-character route");
}

/* N_IDS creates: every id well formed and distinct. */
static void check_ids(void)
{
	static char ids[N_IDS][64];
	int created = 0, shaped = 0, dups = 0, deleted = 0;

	for (int i = 0; i < N_IDS; i++) {
		if (h_create(&B, "echo", ids[i], NULL) == 201)
			created++;
		shaped += id_shaped(ids[i]);
	}
	for (int i = 0; i < N_IDS; i++)
		for (int k = 0; k < i; k++)
			dups += ids[i][0] && !strcmp(ids[i], ids[k]);
	for (int i = 0; i < N_IDS; i++)
		deleted += ids[i][0] && h_delete(&B, ids[i]) == 204;
	tap_is_int(created, N_IDS, "%d creates answered 201", N_IDS);
	tap_is_int(shaped, N_IDS, "every id is >= 22 chars of [A-Za-z0-9_-]");
	tap_is_int(dups, 0, "no id repeats");
	tap_is_int(deleted, N_IDS, "every session deleted");
}

/* Create on route with an optional client Origin and return what the
 * upstream saw as Origin (malloc'd), or NULL if the create failed. */
static char *origin_seen(const char *route, const char *client_origin)
{
	char hdr[128], body[128], id[64];
	const char *headers[2] = { hdr, NULL };
	struct h_resp r;
	char *seen = NULL;

	snprintf(hdr, sizeof(hdr), "Origin: %s", client_origin ? client_origin : "");
	snprintf(body, sizeof(body), "{\"route\":\"%s\"}", route);
	create_raw(&B, NULL, "application/json", body, strlen(body),
		   client_origin ? headers : NULL, &r);
	snprintf(id, sizeof(id), "%s",
		 r.status == 201 && json_string_value(json_object_get(r.json, "session")) ?
		 json_string_value(json_object_get(r.json, "session")) : "");
	if (!id[0])
		tap_diag("create on %s answered %ld: %s", route, r.status, r.body);
	h_resp_free(&r);
	if (id[0]) {
		seen = ask(&B, id, "/header origin");
		h_delete(&B, id);
	}
	return seen;
}

/* The Origin sent on the upstream handshake. */
static void check_origin(void)
{
	char *s;

	s = origin_seen("origin", ORIGIN_CLIENT);
	tap_is_str(s, ORIGIN_CONF, "route origin= wins over the client's Origin");
	free(s);
	s = origin_seen("origin", NULL);
	tap_is_str(s, ORIGIN_CONF, "route origin= sent when the client has none");
	free(s);
	s = origin_seen("echo", ORIGIN_CLIENT);
	tap_is_str(s, ORIGIN_CLIENT, "no route origin: the client's Origin is forwarded");
	free(s);
	s = origin_seen("echo", NULL);
	tap_is_str(s, "", "neither: no Origin header upstream");
	free(s);
}

/* Malformed JSON bodies, bad routes and bad protocols in JSON. */
static void check_bad_json(void)
{
	static const char *const j = "application/json";
	char body[256];

	bad_create(NULL, j, "{\"route\":\"echo\"", 400, "bad_request", "truncated JSON");
	bad_create(NULL, j, "{\"route\":", 400, "bad_request", "JSON cut after a key");
	bad_create(NULL, j, "{route:echo}", 400, "bad_request", "not JSON");
	bad_create(NULL, j, "\"echo\"", 400, "bad_request", "JSON string, not an object");
	bad_create(NULL, j, "42", 400, "bad_request", "JSON number, not an object");
	bad_create(NULL, j, "null", 400, "bad_request", "JSON null, not an object");
	bad_create(NULL, j, "[\"echo\"]", 400, "bad_request", "JSON array, not an object");
	bad_create(NULL, j, "[{\"route\":\"echo\"}]", 400, "bad_request",
		   "JSON array holding a create");
	bad_create(NULL, j, "{\"route\":\"echo\"} {}", 400, "bad_request",
		   "JSON with trailing data");
	bad_create(NULL, j, "{\"route\":\"\xff\"}", 400, "bad_request", "JSON with invalid UTF-8");
	bad_create(NULL, j, "{\"route\":5}", 400, "bad_request", "route is a number");
	bad_create(NULL, j, "{\"route\":[\"echo\"]}", 400, "bad_request", "route is an array");
	bad_create(NULL, j, "{\"route\":true}", 400, "bad_request", "route is a boolean");
	bad_create(NULL, j, "{\"route\":null}", 400, "bad_request", "route is null");
	bad_create(NULL, j, "{}", 400, "bad_request", "empty object: route missing");
	bad_create(NULL, j, "{\"protocols\":[\"chat\"]}", 400, "bad_request",
		   "JSON without route");
	bad_create(NULL, j, "{\"route\":\"\"}", 400, "bad_request", "JSON empty route");
	bad_create(NULL, j, "{\"route\":\"echo\",\"route\":\"echo\"}", 400, "bad_request",
		   "JSON duplicate route key");
	snprintf(body, sizeof(body), "{\"route\":\"%sx\"}", long_route);
	bad_create(NULL, j, body, 400, "bad_request", "JSON route of 65 characters");
	bad_create(NULL, j, "{\"route\":\"nope\"}", 404, "unknown_route", "JSON unknown route");
	snprintf(body, sizeof(body), "{\"route\":\"%s\"}", long_route);
	body[10] = 'Z';	/* still 64 characters, but not configured */
	bad_create(NULL, j, body, 404, "unknown_route", "JSON unknown 64-character route");

	bad_create(NULL, j, "{\"route\":\"echo\",\"protocols\":[\"a b\"]}", 400, "bad_request",
		   "JSON protocol 'a b'");
	bad_create(NULL, j, "{\"route\":\"echo\",\"protocols\":[\"\"]}", 400, "bad_request",
		   "JSON empty protocol");
	bad_create(NULL, j, "{\"route\":\"echo\",\"protocols\":[\"a,b\"]}", 400, "bad_request",
		   "JSON protocol 'a,b'");
	bad_create(NULL, j, "{\"route\":\"echo\",\"protocols\":[\"chat\",\"chat\"]}", 400,
		   "bad_request", "JSON duplicate protocol");
	bad_create(NULL, j, "{\"route\":\"echo\",\"protocols\":\"chat\"}", 400, "bad_request",
		   "JSON protocols is a string");
	bad_create(NULL, j, "{\"route\":\"echo\",\"protocols\":[5]}", 400, "bad_request",
		   "JSON protocol is a number");
	tap_ok(h_still_serving(&B, "echo"), "still serving after bad JSON creates");
}

/* Bad form bodies and bad query strings with an empty body. */
static void check_bad_form_query(void)
{
	static const char *const f = "application/x-www-form-urlencoded";
	char body[256], query[256];

	bad_create(NULL, f, "route=ec%ZZho", 400, "bad_request", "form: %-escape with non-hex");
	bad_create(NULL, f, "route=echo%4", 400, "bad_request", "form: truncated %-escape");
	bad_create(NULL, f, "route=echo&protocol=ch%", 400, "bad_request",
		   "form: lone % at the end");
	bad_create(NULL, f, "protocol=chat", 400, "bad_request", "form without route");
	bad_create(NULL, f, "route=", 400, "bad_request", "form empty route");
	bad_create(NULL, f, "route=echo&route=echo", 400, "bad_request", "form route twice");
	snprintf(body, sizeof(body), "route=%sx", long_route);
	bad_create(NULL, f, body, 400, "bad_request", "form route of 65 characters");
	bad_create(NULL, f, "route=nope", 404, "unknown_route", "form unknown route");
	bad_create(NULL, f, "route=echo&protocol=a%20b", 400, "bad_request", "form protocol 'a b'");
	bad_create(NULL, f, "route=echo&protocol=", 400, "bad_request", "form empty protocol");
	bad_create(NULL, f, "route=echo&protocol=chat&protocol=chat", 400, "bad_request",
		   "form duplicate protocol");

	bad_create(NULL, NULL, NULL, 400, "bad_request", "empty body and no ?route");
	bad_create(NULL, "application/json", NULL, 400, "bad_request",
		   "empty JSON body and no ?route");
	bad_create("?protocol=chat", NULL, NULL, 400, "bad_request", "query without route");
	bad_create("?route=", NULL, NULL, 400, "bad_request", "query empty route");
	bad_create("?route=echo&route=echo", NULL, NULL, 400, "bad_request", "query route twice");
	snprintf(query, sizeof(query), "?route=%sx", long_route);
	bad_create(query, NULL, NULL, 400, "bad_request", "query route of 65 characters");
	bad_create("?route=nope", NULL, NULL, 404, "unknown_route", "query unknown route");
	bad_create("?route=echo&protocol=a%20b", NULL, NULL, 400, "bad_request",
		   "query protocol 'a b'");
	bad_create("?route=echo&protocol=", NULL, NULL, 400, "bad_request", "query empty protocol");
	bad_create("?route=echo&protocol=chat&protocol=chat", NULL, NULL, 400, "bad_request",
		   "query duplicate protocol");
	tap_ok(h_still_serving(&B, "echo"), "still serving after bad form and query creates");
}

/* Media types, the body size limit, methods and unknown paths. */
static void check_media_size_paths(void)
{
	static const char *const others[] = { "GET", "PUT", "DELETE" };
	char *big = malloc(BODY_LIMIT + 2), url[256], what[64], id[64];
	struct h_resp r;

	bad_create(NULL, "text/plain", "route=echo", 415, "unsupported_media_type",
		   "text/plain body");
	bad_create(NULL, "application/octet-stream", "{\"route\":\"echo\"}", 415,
		   "unsupported_media_type", "octet-stream body");
	bad_create(NULL, "multipart/form-data; boundary=x", "--x--", 415,
		   "unsupported_media_type", "multipart body");
	bad_create(NULL, NULL, "{\"route\":\"echo\"}", 415, "unsupported_media_type",
		   "a body without Content-Type");
	bad_create("?route=echo", "text/plain", "hello", 415, "unsupported_media_type",
		   "?route with a text/plain body");

	/* {"route":"echo","pad":"xxx..."} of exactly the limit, then one more. */
	if (!big)
		tap_bail("out of memory");
	memset(big, 'x', BODY_LIMIT + 1);
	memcpy(big, "{\"route\":\"echo\",\"pad\":\"", 23);
	memcpy(big + BODY_LIMIT - 2, "\"}", 3);
	create_raw(&B, NULL, "application/json", big, BODY_LIMIT, NULL, &r);
	tap_is_int(r.status, 201, "a body of exactly 2*max-message-bytes+64KiB is accepted");
	snprintf(id, sizeof(id), "%s", r.status == 201 ?
		 json_string_value(json_object_get(r.json, "session")) : "");
	if (id[0])
		h_delete(&B, id);
	h_resp_free(&r);
	memcpy(big + BODY_LIMIT - 2, "x\"}", 4);
	create_raw(&B, NULL, "application/json", big, BODY_LIMIT + 1, NULL, &r);
	is_error(&r, 413, "payload_too_large", "a body one byte over the limit");
	h_resp_free(&r);
	free(big);

	snprintf(url, sizeof(url), "%s/v1/sessions", B.base);
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		snprintf(what, sizeof(what), "%s /v1/sessions", others[i]);
		h_http(&r, others[i], url, NULL, NULL, 0, NULL);
		is_error(&r, 405, "method_not_allowed", what);
		tap_ok(strstr(r.allow, "POST") != NULL, "%s: Allow '%s' has POST", what, r.allow);
		h_resp_free(&r);
	}
	snprintf(url, sizeof(url), "%s/v1/sessions?route=echo", B.base);
	h_http(&r, "GET", url, NULL, NULL, 0, NULL);
	is_error(&r, 405, "method_not_allowed", "GET /v1/sessions?route=echo");
	h_resp_free(&r);

	{
		static const char *const paths[][2] = {
			{ "POST", "/v1/session?route=echo" },
			{ "POST", "/v1/sessionsX?route=echo" },
			{ "POST", "/v2/sessions?route=echo" },
			{ "POST", "/sessions?route=echo" },
			{ "GET", "/" },
			{ "GET", "/v1" },
			{ "GET", "/nope" },
			{ "GET", "/v1/sessions/AAAAAAAAAAAAAAAAAAAAAA/bogus" },
		};

		for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
			snprintf(url, sizeof(url), "%s%s", B.base, paths[i][1]);
			snprintf(what, sizeof(what), "%s %s", paths[i][0], paths[i][1]);
			h_http(&r, paths[i][0], url, NULL, NULL, 0, NULL);
			is_error(&r, 404, "not_found", what);
			h_resp_free(&r);
		}
	}
	tap_ok(h_still_serving(&B, "echo"), "still serving after bad media, sizes and paths");
}

/* Upstreams that refuse, answer HTTP, stay silent, or refuse the protocols. */
static void check_upstream_failures(void)
{
	static const char nope[] = "{\"route\":\"echo\",\"protocols\":[\"nope\"]}";
	struct h_resp r;

	create_raw(&B, "?route=dead", NULL, NULL, 0, NULL, &r);
	is_error(&r, 502, "upstream_unreachable", "refused upstream");
	tap_ok(r.seconds < 3.0, "refused upstream: answered at once (%.2f s)", r.seconds);
	h_resp_free(&r);

	create_raw(&B, "?route=self", NULL, NULL, 0, NULL, &r);
	is_error(&r, 502, "upstream_unreachable", "HTTP answer instead of a handshake");
	tap_ok(r.seconds < 3.0, "HTTP answer: not a timeout (%.2f s)", r.seconds);
	h_resp_free(&r);

	create_raw(&B, "?route=hole", NULL, NULL, 0, NULL, &r);
	is_error(&r, 504, "upstream_timeout", "upstream that never answers the handshake");
	tap_ok(r.seconds >= 0.9 && r.seconds < 3.5,
	       "silent upstream: 504 after --connect-timeout 1 (%.2f s)", r.seconds);
	h_resp_free(&r);

	create_raw(&B, "?route=silent", NULL, NULL, 0, NULL, &r);
	is_error(&r, 504, "upstream_timeout", "upstream that accepts and never answers");
	tap_ok(r.seconds >= 0.9 && r.seconds < 2.5,
	       "accepting silent upstream: 504 after --connect-timeout 1 (%.2f s)", r.seconds);
	h_resp_free(&r);

	create_raw(&B, NULL, "application/json", nope, strlen(nope), NULL, &r);
	is_error(&r, 502, "upstream_unreachable", "no offered protocol accepted");
	h_resp_free(&r);
	create_raw(&B, "?route=echo&protocol=nope&protocol=x-other", NULL, NULL, 0, NULL, &r);
	is_error(&r, 502, "upstream_unreachable", "none of two offered protocols accepted");
	h_resp_free(&r);
	good_create(NULL, "application/json", "{\"route\":\"echo\",\"protocols\":[\"nope\",\"chat\"]}",
		    "chat", "chat", "offering [nope, chat] gets chat");
	tap_ok(h_still_serving(&B, "echo"), "still serving after upstream failures");
}

/* Start tests/upstreams/raw_ws.py; its port (its path /silent accepts TCP
 * and never answers the handshake), or 0. */
static int raw_start(void)
{
	const char *dir = getenv("PB_UPSTREAMS") ? getenv("PB_UPSTREAMS") : "tests/upstreams";
	char path[512], rest[32];
	char *argv[] = { "python3", path, NULL };

	snprintf(path, sizeof(path), "%s/raw_ws.py", dir);
	if (!h_spawn(argv, "listening on ", 10000, rest, sizeof(rest)))
		return 0;
	return atoi(rest);
}

/* A create on route in a child process; the parent reads its status and
 * seconds with timed_create_end(). Returns the pipe to read. */
static int timed_create_start(struct h_bridge *b, const char *route, pid_t *pid)
{
	int fds[2];

	if (pipe(fds))
		tap_bail("pipe: cannot");
	fflush(stdout);
	*pid = fork();
	if (*pid < 0)
		tap_bail("fork: cannot");
	if (!*pid) {
		struct h_resp r;
		char line[128];
		int n;

		close(fds[0]);
		h_create(b, route, NULL, &r);
		n = snprintf(line, sizeof(line), "%ld %.3f %s", r.status, r.seconds, h_err(&r));
		_exit(write(fds[1], line, (size_t)n) == n ? 0 : 1);
	}
	close(fds[1]);
	return fds[0];
}

/* Collect a timed_create_start() result: status, seconds and error code. */
static void timed_create_end(int fd, pid_t pid, long *status, double *secs, char *err,
			     size_t errlen)
{
	char line[128], code[64] = "";
	ssize_t n = read(fd, line, sizeof(line) - 1);
	int st;

	close(fd);
	waitpid(pid, &st, 0);
	*status = 0;
	*secs = -1;
	if (n > 0) {
		line[n] = '\0';
		if (sscanf(line, "%ld %lf %63s", status, secs, code) < 2)
			*status = 0;
	}
	snprintf(err, errlen, "%s", code);
}

/* --connect-timeout 7 (above libwebsockets' own 5 s handshake timeout):
 * an upstream that never accepts and one that accepts and never answers
 * both get 504 upstream_timeout at 7 s, not 502 at 5 s. Both run at once. */
static void check_connect_timeout(int hole_port, int silent_port)
{
	char r_hole[64], r_silent[96], err[2][64];
	struct h_bridge b3;
	long status[2];
	double secs[2];
	pid_t pid[2];
	int fd[2];

	snprintf(r_hole, sizeof(r_hole), "hole=ws://127.0.0.1:%d/", hole_port);
	snprintf(r_silent, sizeof(r_silent), "silent=ws://127.0.0.1:%d/silent", silent_port);
	if (!tap_ok(h_bridge_start(&b3, "--connect-timeout", "7", "--route", r_hole, "--route",
				   r_silent, NULL) == 0, "bridge with --connect-timeout 7 started"))
		return;
	fd[0] = timed_create_start(&b3, "hole", &pid[0]);
	fd[1] = timed_create_start(&b3, "silent", &pid[1]);
	for (int i = 0; i < 2; i++) {
		const char *what = i ? "accepting silent upstream" : "never-accepting upstream";

		timed_create_end(fd[i], pid[i], &status[i], &secs[i], err[i], sizeof(err[i]));
		tap_ok(status[i] == 504 && !strcmp(err[i], "upstream_timeout"),
		       "--connect-timeout 7, %s: 504 upstream_timeout (%ld %s)", what, status[i],
		       err[i]);
		tap_ok(secs[i] >= 6.0 && secs[i] <= 8.0, "--connect-timeout 7, %s: after 7 s (%.2f s)",
		       what, secs[i]);
	}
	tap_ok(h_alive(b3.proc), "--connect-timeout 7 bridge still running");
	h_stop(b3.proc, SIGTERM, 6000);
}

/* --max-sessions 3: the 4th is refused; DELETE, a failed create and an
 * idle expiry leave or free a slot. */
static void check_max_sessions(int echo_port, int hole_port)
{
	char r_echo[64], r_dead[64], r_hole[64], ids[4][64], id[64];
	struct h_bridge b2;
	struct h_resp r;

	snprintf(r_echo, sizeof(r_echo), "echo=ws://127.0.0.1:%d/", echo_port);
	snprintf(r_dead, sizeof(r_dead), "dead=ws://127.0.0.1:%d/", h_free_port());
	snprintf(r_hole, sizeof(r_hole), "hole=ws://127.0.0.1:%d/", hole_port);
	if (!tap_ok(h_bridge_start(&b2, "--max-sessions", "3", "--idle-timeout", "2",
				   "--connect-timeout", "1", "--route", r_echo, "--route", r_dead,
				   "--route", r_hole, NULL) == 0, "bridge with --max-sessions 3 started"))
		return;
	/* failed creates first: they must not keep a slot */
	tap_is_int(h_create(&b2, "dead", NULL, NULL), 502, "max-sessions bridge: refused upstream");
	tap_is_int(h_create(&b2, "hole", NULL, NULL), 504, "max-sessions bridge: silent upstream");
	tap_is_int(h_create(&b2, "nope", NULL, NULL), 404, "max-sessions bridge: unknown route");
	for (int i = 0; i < 3; i++)
		tap_is_int(h_create(&b2, "echo", ids[i], NULL), 201,
			   "session %d of 3 created (failed creates hold no slot)", i + 1);
	h_create(&b2, "echo", ids[3], &r);
	is_error(&r, 503, "too_many_sessions", "the 4th session");
	h_resp_free(&r);
	h_create(&b2, "dead", NULL, &r);
	tap_is_int(r.status, 503, "a full instance refuses before dialling (%s)", h_err(&r));
	h_resp_free(&r);
	tap_is_int(h_delete(&b2, ids[0]), 204, "DELETE one session");
	tap_is_int(h_create(&b2, "echo", ids[0], NULL), 201, "then one more fits");
	tap_is_int(h_create(&b2, "echo", id, NULL), 503, "and the next is refused again");
	tap_is_int(h_delete(&b2, ids[1]), 204, "DELETE another");
	tap_ok(h_still_serving(&b2, "echo"), "max-sessions bridge still serving");

	/* Let the sessions idle out (idle-timeout 2): their slots come back. */
	h_sleep_ms(3500);
	for (int i = 0; i < 3; i++)
		tap_is_int(h_create(&b2, "echo", ids[i], NULL), 201,
			   "after the idle timeout: session %d of 3 created", i + 1);
	tap_is_int(h_create(&b2, "echo", id, NULL), 503, "and a 4th is refused");
	for (int i = 0; i < 3; i++)
		h_delete(&b2, ids[i]);
	tap_ok(h_still_serving(&b2, "echo"), "max-sessions bridge still serving at the end");
}

int main(void)
{
	char rec[512], r_echo[64], r_origin[128], r_dead[64], r_self[96], r_hole[64], r_long[128];
	char r_silent[96], listen[64], *text;
	int echo_port = 0, hole_port = 0, self_port = 0, silent_port, started = -1;

	h_init();
	snprintf(rec, sizeof(rec), "%s/echo.rec", h_tmpdir());
	if (!h_echo_start(&echo_port, "--record", rec, NULL))
		tap_bail("pollbridge-echo did not start");
	if (h_blackhole_listen(&hole_port) < 0)
		tap_bail("no blackhole listener");
	silent_port = raw_start();
	if (!silent_port)
		tap_bail("tests/upstreams/raw_ws.py did not start (python3 missing?)");
	snprintf(r_silent, sizeof(r_silent), "silent=ws://127.0.0.1:%d/silent", silent_port);
	memset(long_route, 'r', 64);
	memcpy(long_route, "long-", 5);
	long_route[64] = '\0';
	snprintf(r_echo, sizeof(r_echo), "echo=ws://127.0.0.1:%d/", echo_port);
	snprintf(r_origin, sizeof(r_origin), "origin=ws://127.0.0.1:%d/ origin=" ORIGIN_CONF,
		 echo_port);
	snprintf(r_dead, sizeof(r_dead), "dead=ws://127.0.0.1:%d/", h_free_port());
	snprintf(r_hole, sizeof(r_hole), "hole=ws://127.0.0.1:%d/", hole_port);
	snprintf(r_long, sizeof(r_long), "%s=ws://127.0.0.1:%d/", long_route, echo_port);
	/* The "self" route dials the bridge's own /healthz, so the bridge
	 * listens on a port chosen here (the last --listen wins); retry if
	 * another process took it meanwhile. */
	for (int attempt = 0; attempt < 3 && started; attempt++) {
		self_port = h_free_port();
		snprintf(listen, sizeof(listen), "127.0.0.1:%d", self_port);
		snprintf(r_self, sizeof(r_self), "self=ws://127.0.0.1:%d/healthz", self_port);
		started = h_bridge_start(&B, "--listen", listen, "--wait-max", "3",
					 "--idle-timeout", "5", "--connect-timeout", "1",
					 "--max-message-bytes", "1000", "--route", r_echo,
					 "--route", r_origin, "--route", r_dead, "--route", r_self,
					 "--route", r_hole, "--route", r_long, "--route", r_silent,
					 NULL);
	}
	if (started)
		tap_bail("pollbridge did not start");
	tap_is_int(B.port, self_port, "bridge listens on the chosen port %d", self_port);

	check_forms();
	tap_ok(h_still_serving(&B, "echo"), "still serving after the good creates");
	check_ids();
	check_origin();
	check_bad_json();
	check_bad_form_query();
	check_media_size_paths();
	check_upstream_failures();
	check_max_sessions(echo_port, hole_port);
	check_connect_timeout(hole_port, silent_port);

	/* What the upstream recorded: the handshakes with their protocol. */
	text = h_read_file(rec);
	tap_ok(text && strstr(text, "open chat\n") && strstr(text, "open echo\n") &&
	       strstr(text, "open none\n"), "the upstream recorded chat, echo and no protocol");
	tap_ok(text && strstr(text, "text 9 /protocol\n"), "and received /protocol");
	free(text);
	return tap_done();
}
