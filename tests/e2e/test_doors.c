/*
 * test_doors.c: the front end's routing of the compatibility front doors
 * (routes with sockjs=PREFIX and engineio=PATH), independent of what the
 * doors themselves answer: a request counts as having reached a door when
 * /metrics counts one more answer under endpoint="sockjs" / "engineio"
 * and the answer is not the /v1 not_found JSON.
 *
 * Covered: PREFIX, PREFIX/ and everything under PREFIX/ reach the SockJS
 * door, PATH and PATH without its final '/' the Engine.IO door, with every
 * method (GET, HEAD, POST, OPTIONS with an Origin, PUT, DELETE); look-alike
 * paths (/echo2/..., /echox, /socket.io/x, /socket.iox) and a path whose
 * door part is percent-encoded differently do not; /v1 sessions work
 * alongside; an encoded NUL (%00) or a raw NUL byte on a door path gets an
 * answer and the bridge keeps serving; a body over --max-body-bytes on a
 * door path, announced (Content-Length) or chunked, is answered (413 or
 * the door's own error) and the connection then either closes or serves
 * the next request; with --admin-listen the admin listener serves no door.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

/* Sum of the /metrics samples of pollbridge_http_responses_total with
 * endpoint="ep", whatever their code; -1 if /metrics does not answer. */
static long door_count(struct h_bridge *b, const char *ep)
{
	struct h_resp r;
	char url[128], prefix[128];
	long n = -1;

	snprintf(url, sizeof(url), "%s/metrics", b->base);
	snprintf(prefix, sizeof(prefix), "pollbridge_http_responses_total{endpoint=\"%s\",", ep);
	if (h_http(&r, "GET", url, NULL, NULL, 0, NULL) == 0 && r.status == 200) {
		n = 0;
		for (const char *p = r.body; (p = strstr(p, prefix)); p++) {
			const char *sp = strchr(p, ' ');

			if (sp)
				n += atol(sp + 1);
		}
	}
	h_resp_free(&r);
	return n;
}

/* One request to path with method (and an Origin for OPTIONS); 1 if it
 * reached door ep: counted there once and not the /v1 not_found JSON. */
static int reaches(struct h_bridge *b, const char *method, const char *path, const char *ep)
{
	static const char *const origin[] = { "Origin: http://good.example",
					      "Access-Control-Request-Method: POST", NULL };
	struct h_resp r;
	char url[512];
	long before = door_count(b, ep), after;
	int ok;

	snprintf(url, sizeof(url), "%s%s", b->base, path);
	ok = h_http(&r, method, url, strcmp(method, "POST") ? NULL : "text/plain",
		    strcmp(method, "POST") ? NULL : "[\"x\"]", strcmp(method, "POST") ? 0 : 5,
		    strcmp(method, "OPTIONS") ? NULL : origin) == 0 && r.status != 0 &&
	     strcmp(h_err(&r), "not_found") != 0;
	h_resp_free(&r);
	after = door_count(b, ep);
	if (!ok || after != before + 1)
		tap_diag("%s %s: answered %d, %s count %ld -> %ld", method, path, ok, ep, before,
			 after);
	return ok && after == before + 1;
}

/* 1 if a GET of path is the /v1 not_found JSON and reaches no door. */
static int not_a_door(struct h_bridge *b, const char *path)
{
	struct h_resp r;
	char url[512];
	long s = door_count(b, "sockjs"), e = door_count(b, "engineio");
	int ok;

	snprintf(url, sizeof(url), "%s%s", b->base, path);
	ok = h_http(&r, "GET", url, NULL, NULL, 0, NULL) == 0 && r.status == 404 &&
	     strcmp(h_err(&r), "not_found") == 0;
	if (!ok)
		tap_diag("GET %s: %ld %s", path, r.status, r.body ? r.body : "");
	h_resp_free(&r);
	return ok && door_count(b, "sockjs") == s && door_count(b, "engineio") == e;
}

/* Send raw bytes, read one answer; its status (0: none). If the
 * connection stays open, it must serve a GET /healthz next: *sane says
 * whether it did or was closed cleanly. */
static long raw_then_next(struct h_bridge *b, const char *req, size_t len, int *sane)
{
	static const char hz[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	struct h_resp r;
	long status = 0;
	int fd = h_raw_connect(b->port, NULL);

	*sane = 0;
	if (fd < 0)
		return 0;
	h_raw_write(fd, req, len);      /* the bridge may close before all is sent */
	if (h_raw_read(fd, H_RAW_MS, &r) == H_RAW_ANSWER)
		status = r.status;
	h_resp_free(&r);
	if (status && (h_raw_closed(fd, 300) ||
		       (h_raw_write(fd, hz, sizeof(hz) - 1) == 0 &&
			h_raw_read(fd, H_RAW_MS, &r) == H_RAW_ANSWER && r.status == 200) ||
		       h_raw_closed(fd, 0)))
		*sane = 1;
	h_resp_free(&r);
	close(fd);
	return status;
}

int main(void)
{
	struct h_bridge b, adm;
	struct h_resp r;
	char sj[128], eio[128], plain[128], id[64], req[8192], big[5000];
	int echo_port, sane, n;
	long st;

	h_init();
	if (!h_echo_start(&echo_port, NULL))
		tap_bail("cannot start the echo upstream");
	snprintf(sj, sizeof(sj), "--route=echo=ws://127.0.0.1:%d/ sockjs=/echo", echo_port);
	snprintf(eio, sizeof(eio), "--route=chat=ws://127.0.0.1:%d/ engineio=/socket.io/",
		 echo_port);
	snprintf(plain, sizeof(plain), "--route=plain=ws://127.0.0.1:%d/", echo_port);
	if (h_bridge_start(&b, sj, eio, plain, "--max-body-bytes", "1024", "--cors-origin",
			   "http://good.example", NULL))
		tap_bail("cannot start the bridge with door routes");

	/* The SockJS door: the prefix and everything under it, every method. */
	tap_ok(reaches(&b, "GET", "/echo", "sockjs"), "sockjs: GET /echo reaches the door");
	tap_ok(reaches(&b, "GET", "/echo/", "sockjs"), "sockjs: GET /echo/ reaches the door");
	tap_ok(reaches(&b, "GET", "/echo/info", "sockjs"), "sockjs: GET /echo/info reaches the door");
	tap_ok(reaches(&b, "POST", "/echo/000/abcdefgh/xhr_send", "sockjs"),
	       "sockjs: POST .../xhr_send reaches the door");
	tap_ok(reaches(&b, "OPTIONS", "/echo/000/abcdefgh/xhr", "sockjs"),
	       "sockjs: OPTIONS (a preflight) reaches the door, not the /v1 preflight");
	tap_ok(reaches(&b, "HEAD", "/echo/info", "sockjs"), "sockjs: HEAD reaches the door");
	tap_ok(reaches(&b, "PUT", "/echo/info", "sockjs"), "sockjs: PUT reaches the door");
	tap_ok(reaches(&b, "DELETE", "/echo/000/abcdefgh", "sockjs"),
	       "sockjs: DELETE reaches the door");
	tap_ok(reaches(&b, "GET", "/echo/iframe.html?x=/v1/sessions", "sockjs"),
	       "sockjs: the query is not part of the path");

	/* The Engine.IO door: PATH, or PATH without its final '/'. */
	tap_ok(reaches(&b, "GET", "/socket.io/?EIO=4&transport=polling", "engineio"),
	       "engineio: GET /socket.io/?EIO=4 reaches the door");
	tap_ok(reaches(&b, "GET", "/socket.io?EIO=3&transport=polling", "engineio"),
	       "engineio: GET /socket.io (no final '/') reaches the door");
	tap_ok(reaches(&b, "POST", "/socket.io/?EIO=4&transport=polling&sid=x", "engineio"),
	       "engineio: POST reaches the door");
	tap_ok(reaches(&b, "OPTIONS", "/socket.io/?EIO=4", "engineio"),
	       "engineio: OPTIONS reaches the door");

	/* Look-alikes are not doors. */
	tap_ok(not_a_door(&b, "/echo2"), "/echo2 is not the /echo door (not_found)");
	tap_ok(not_a_door(&b, "/echo2/info"), "/echo2/info is not the /echo door");
	tap_ok(not_a_door(&b, "/echox/000/abcdefgh/xhr"), "/echox/... is not the /echo door");
	tap_ok(not_a_door(&b, "/ech"), "/ech is not the /echo door");
	tap_ok(not_a_door(&b, "/socket.io/x"), "/socket.io/x is not the Engine.IO door");
	tap_ok(not_a_door(&b, "/socket.iox"), "/socket.iox is not the Engine.IO door");
	tap_ok(not_a_door(&b, "/socket.io//"), "/socket.io// is not the Engine.IO door");
	tap_ok(not_a_door(&b, "/"), "/ is not a door");

	/* /v1 alongside. */
	tap_is_int(h_create(&b, "plain", id, NULL), 201, "/v1: a session is created alongside");
	tap_is_int(h_send_text(&b, id, "hello", NULL), 200, "/v1: a send is accepted");
	{
		json_t *got = json_array();

		tap_is_int((long)h_collect(&b, id, 0, 1, 5000, got), 1, "/v1: the echo comes back");
		json_decref(got);
	}
	tap_is_int(h_delete(&b, id), 204, "/v1: the session is deleted");

	/* NUL on a door path: answered, never a crash. */
	n = snprintf(req, sizeof(req), "GET /echo/%%00/xhr HTTP/1.1\r\nHost: x\r\n\r\n");
	st = h_raw_request(b.port, NULL, req, (size_t)n, &r);
	h_resp_free(&r);
	tap_ok(st >= 400, "sockjs: /echo/%%00/xhr is answered with an error (%ld)", st);
	n = snprintf(req, sizeof(req), "GET /echo%%00/info HTTP/1.1\r\nHost: x\r\n\r\n");
	st = h_raw_request(b.port, NULL, req, (size_t)n, &r);
	h_resp_free(&r);
	tap_ok(st >= 400, "sockjs: /echo%%00/info is answered with an error (%ld)", st);
	n = snprintf(req, sizeof(req), "GET /socket.io/?EIO=4&sid=%%00 HTTP/1.1\r\nHost: x\r\n\r\n");
	st = h_raw_request(b.port, NULL, req, (size_t)n, &r);
	h_resp_free(&r);
	tap_ok(st >= 400, "engineio: a %%00 in the query is answered with an error (%ld)", st);
	memcpy(req, "GET /echo/i\0fo HTTP/1.1\r\nHost: x\r\n\r\n", 37);
	st = h_raw_request(b.port, NULL, req, 37, &r);
	h_resp_free(&r);
	tap_ok(st == 0 || st >= 400, "sockjs: a raw NUL in the request line is refused (%ld)", st);
	tap_ok(h_still_serving(&b, "plain"), "NUL on door paths: still serving");

	/* A body over --max-body-bytes on a door path. */
	memset(big, 'x', sizeof(big));
	n = snprintf(req, sizeof(req), "POST /echo/000/abcdefgh/xhr_send HTTP/1.1\r\nHost: x\r\n"
		     "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%.*s",
		     sizeof(big), (int)sizeof(big), big);
	st = raw_then_next(&b, req, (size_t)n, &sane);
	tap_ok(st >= 400, "sockjs: an announced body over the limit is answered (%ld)", st);
	tap_ok(sane, "sockjs: the connection then closes or serves the next request");
	n = snprintf(req, sizeof(req), "POST /socket.io/?EIO=4&sid=x HTTP/1.1\r\nHost: x\r\n"
		     "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "%zx\r\n%.*s\r\n0\r\n\r\n", sizeof(big), (int)sizeof(big), big);
	st = raw_then_next(&b, req, (size_t)n, &sane);
	tap_ok(st >= 400, "engineio: a chunked body over the limit is answered (%ld)", st);
	tap_ok(sane, "engineio: the connection then closes or serves the next request");
	tap_ok(h_still_serving(&b, "plain"), "oversized door bodies: still serving");

	/* The admin listener serves no doors. */
	if (h_bridge_start(&adm, sj, plain, "--admin-listen", "127.0.0.1:0", NULL))
		tap_bail("cannot start the bridge with --admin-listen");
	{
		char *log = NULL;
		int aport = -1;

		for (int i = 0; i < 100 && aport < 0; i++) {
			const char *p;

			free(log);
			log = h_read_file(adm.proc->log_path);
			p = log ? strstr(log, "admin listening on ") : NULL;
			if (p && strchr(p, '\n')) {
				const char *colon = NULL;

				for (const char *q = p; *q != '\n'; q++)
					if (*q == ':')
						colon = q;
				aport = colon ? atoi(colon + 1) : -1;
			} else {
				h_sleep_ms(20);
			}
		}
		free(log);
		n = snprintf(req, sizeof(req), "GET /echo/info HTTP/1.1\r\nHost: x\r\n\r\n");
		st = aport > 0 ? h_raw_request(aport, NULL, req, (size_t)n, &r) : 0;
		tap_ok(st == 404 && strcmp(h_err(&r), "not_found") == 0,
		       "admin listener: /echo/info is not_found there (%ld)", st);
		h_resp_free(&r);
		st = h_raw_request(adm.port, NULL, req, (size_t)n, &r);
		tap_ok(st != 0 && strcmp(h_err(&r), "not_found") != 0,
		       "public listener of that bridge: /echo/info reaches the door (%ld)", st);
		h_resp_free(&r);
	}
	tap_ok(h_alive(b.proc) && h_alive(adm.proc), "the bridges are alive");
	return tap_done();
}
