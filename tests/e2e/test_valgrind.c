/*
 * test_valgrind.c: the real daemon under valgrind (memcheck) through one
 * mixed workload that walks every path a session can take: creates in all
 * three forms and every create failure, sends in all four forms and the bad
 * ones, short, long, timed-out and replaced polls, an upstream close, a
 * message over the limit (1009), DELETE, idle expiry, and a drain with a
 * poll waiting. Then: exit 0, no memcheck error, nothing definitely or
 * indirectly lost. Skipped in the sanitizer build (valgrind cannot run an
 * ASan binary) and where valgrind is missing.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

/* POST a body with a content type; returns the status. */
static long post(struct h_bridge *b, const char *path, const char *ctype, const char *body)
{
	struct h_resp r = { 0 };
	char url[512];
	long st;

	snprintf(url, sizeof(url), "%s%s", b->base, path);
	h_http(&r, "POST", url, ctype, body, strlen(body), NULL);
	st = r.status;
	h_resp_free(&r);
	return st;
}

/* A poll; returns the status and whether the batch said closed. */
static long poll_state(struct h_bridge *b, const char *id, const char *q, int *closed)
{
	struct h_resp r = { 0 };
	long st = h_poll(b, id, q, &r);
	const char *state = r.json ? json_string_value(json_object_get(r.json, "state")) : NULL;

	*closed = state && strcmp(state, "closed") == 0;
	h_resp_free(&r);
	return st;
}

int main(void)
{
	struct h_bridge b;
	char vlog[600], wrapper[1024], route[128], dead[128], id[64], id2[64], path[160];
	char *log;
	int port, closed;
	long st;

	h_init();
	if (getenv("PB_SANITIZERS") && strcmp(getenv("PB_SANITIZERS"), "yes") == 0) {
		printf("1..0 # SKIP sanitizer build: valgrind cannot run an ASan binary\n");
		return 0;
	}
	if (system("valgrind --version >/dev/null 2>&1") != 0) {
		printf("1..0 # SKIP valgrind is not installed\n");
		return 0;
	}
	snprintf(vlog, sizeof(vlog), "%s/valgrind.log", h_tmpdir());
	snprintf(wrapper, sizeof(wrapper),
		 "valgrind -q --error-exitcode=97 --leak-check=full "
		 "--show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect "
		 "--log-file=%s", vlog);
	setenv("PB_BRIDGE_WRAPPER", wrapper, 1);
	if (!h_echo_start(&port, NULL))
		tap_bail("pollbridge-echo did not start");
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/", port);
	snprintf(dead, sizeof(dead), "--route=dead=ws://127.0.0.1:%d/", h_free_port());
	if (h_bridge_start(&b, route, dead, "--idle-timeout", "1", "--wait-max", "2",
			   "--max-message-bytes", "1000", NULL))
		tap_bail("pollbridge under valgrind did not start");
	unsetenv("PB_BRIDGE_WRAPPER");

	/* Creates: three forms, then the failures. */
	tap_is_int(h_create(&b, "echo", id, NULL), 201, "create (JSON)");
	tap_is_int(post(&b, "/v1/sessions", "application/x-www-form-urlencoded",
			"route=echo&protocol=chat"), 201, "create (form)");
	tap_is_int(post(&b, "/v1/sessions?route=echo", NULL, ""), 201, "create (query)");
	tap_is_int(post(&b, "/v1/sessions", "application/json", "{\"route\":\"nope\"}"), 404,
		   "unknown route");
	tap_is_int(post(&b, "/v1/sessions", "application/json", "{\"route\":\"dead\"}"), 502,
		   "refused upstream");
	tap_is_int(post(&b, "/v1/sessions", "application/json", "{\"route\":"), 400, "bad JSON");
	tap_is_int(post(&b, "/v1/sessions", "text/plain", "x"), 415, "bad media type");

	/* Sends in every form, and bad ones. */
	snprintf(path, sizeof(path), "/v1/sessions/%s/messages", id);
	tap_is_int(post(&b, path, "text/plain", "hello"), 200, "send text");
	tap_is_int(post(&b, path, "application/octet-stream", "\x01\x02"), 200, "send binary");
	tap_is_int(post(&b, path, "application/json",
			"{\"messages\":[{\"data\":\"a\"},{\"type\":\"binary\",\"data\":\"AAE=\"}],\"seq\":1}"),
		   200, "send batch");
	tap_is_int(post(&b, path, "application/json", "{\"messages\":[{\"data\":\"a\"}],\"seq\":1}"),
		   200, "repeated seq");
	tap_is_int(post(&b, path, "application/json", "{\"messages\":[],\"seq\":5}"), 409, "seq gap");
	tap_is_int(post(&b, path, "application/x-www-form-urlencoded", "data=x&data=y"), 200,
		   "send form");
	tap_is_int(post(&b, path, "text/plain", "\xff"), 400, "invalid UTF-8");
	tap_is_int(post(&b, path, "application/json", "{\"messages\":[{\"data\":1}]}"), 400,
		   "bad batch");

	/* Polls: short, long woken, long timed out, replaced, bad cursor. */
	{
		json_t *got = json_array();

		tap_is_int(h_collect(&b, id, 0, 6, 8000, got), 6, "six echoes (a repeat is not sent twice)");
		json_decref(got);
	}
	tap_is_int(poll_state(&b, id, "after=6", &closed), 200, "acknowledging poll");
	tap_is_int(poll_state(&b, id, "after=6&wait=1", &closed), 200, "timed-out long poll");
	tap_is_int(poll_state(&b, id, "after=99", &closed), 400, "cursor beyond the last seq");
	{
		pid_t kid = fork();

		if (kid == 0) {
			struct h_resp r = { 0 };

			usleep(300000);
			_exit(h_poll(&b, id, "after=6", &r) == 200 ? 0 : 1);
		}
		tap_is_int(poll_state(&b, id, "after=6&wait=2", &closed), 200,
			   "a poll replaced by a newer one");
		waitpid(kid, NULL, 0);
	}

	/* Upstream close, then the end; 1009; DELETE; idle expiry. */
	/* The close must wake a waiting poll (a poll that arrives after it
	 * would end the session at once): ask for it once the poll waits. */
	{
		pid_t kid = fork();
		int ws;

		if (kid == 0) {
			usleep(1000000);
			_exit(post(&b, path, "text/plain", "/close 4000 bye") == 200 ? 0 : 1);
		}
		st = poll_state(&b, id, "after=6&wait=5", &closed);
		tap_ok(st == 200 && closed, "closed batch, waking the waiting poll");
		waitpid(kid, &ws, 0);
		tap_ok(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "ask upstream to close");
	}
	tap_ok(poll_state(&b, id, "after=6", &closed) == 200 && closed,
	       "a repeated poll gets the closed batch again (the woken one may have been lost)");
	tap_is_int(poll_state(&b, id, "after=6", &closed), 410, "ended");
	h_create(&b, "echo", id2, NULL);
	snprintf(path, sizeof(path), "/v1/sessions/%s/messages", id2);
	post(&b, path, "text/plain", "/big 2000");
	st = poll_state(&b, id2, "wait=2", &closed);
	tap_ok(st == 200 && closed, "oversize upstream message closes the session");
	h_create(&b, "echo", id2, NULL);
	tap_is_int(h_delete(&b, id2), 204, "delete");
	h_create(&b, "echo", id2, NULL);
	h_sleep_ms(1800);
	tap_is_int(poll_state(&b, id2, NULL, &closed), 410, "idle session expired");

	/* Drain with a poll waiting. */
	h_create(&b, "echo", id, NULL);
	{
		pid_t kid = fork();

		if (kid == 0) {
			usleep(500000);
			kill(b.proc->pid, SIGTERM);
			_exit(0);
		}
		st = poll_state(&b, id, "wait=2", &closed);
		tap_ok(st == 200 && closed == !h_store_shared(), "drain answers the waiting poll");
		waitpid(kid, NULL, 0);
	}
	tap_is_int(h_wait_exit(b.proc, 30000), 0, "exit 0 under valgrind (97 would mean errors)");
	log = h_read_file(vlog);
	tap_ok(log != NULL, "valgrind log written");
	tap_ok(log && !strstr(log, "definitely lost") && !strstr(log, "indirectly lost"),
	       "nothing lost");
	tap_ok(log && !strstr(log, "Invalid ") && !strstr(log, "uninitialised"),
	       "no invalid access, no uninitialised use");
	if (log && *log)
		tap_diag("valgrind said: %.400s", log);
	free(log);
	return tap_done();
}
