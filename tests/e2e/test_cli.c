/*
 * test_cli.c: the command line of the real binary: --help, --version,
 * --check-config, every kind of bad flag and unparsable route (non-zero
 * exit and exactly one line on stderr), the ready line (and the warning
 * when no route is configured), a listen address
 * already in use, and SIGTERM/SIGINT draining to exit 0 while a poll waits.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

/* Run pollbridge with args to completion; returns the exit code and the
 * captured output (malloc'd) in *out. */
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

/* Number of lines in s. */
static int lines(const char *s)
{
	int n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

/* A bad command line exits 2 with one line naming the problem. */
static void bad(const char *why, const char *want, const char *a1, const char *a2, const char *a3)
{
	char *out;
	int rc = run_cli(&out, a1, a2, a3);

	tap_is_int(rc, 2, "%s: exit 2", why);
	tap_is_int(lines(out), 1, "%s: one line", why);
	tap_ok(out && strstr(out, want), "%s: says '%s' (%.*s)", why, want,
	       out ? (int)strcspn(out, "\n") : 0, out ? out : "");
	free(out);
}

/* Write text to a file in the temp dir; returns its path (static). */
static const char *write_conf(const char *name, const char *text)
{
	static char path[2][600];
	static int k;
	char *p = path[k++ % 2];
	FILE *fp;

	snprintf(p, sizeof(path[0]), "%s/%s", h_tmpdir(), name);
	fp = fopen(p, "w");
	if (!fp)
		tap_bail("cannot write %s", p);
	fputs(text, fp);
	fclose(fp);
	return p;
}

/* --config FILE: good files, errors with line numbers, precedence. */
static void config_file_checks(void)
{
	const char *good = write_conf("good.conf",
				      "# a comment\n\nlisten = 127.0.0.1:0\n"
				      "route = a=ws://127.0.0.1:9/ redial\n"
				      "  wait-max   =  7  \njsonp = yes\ncors-origin = https://x.example\n");
	const char *bad = write_conf("bad.conf", "listen = 127.0.0.1:0\n\n# x\nwait-max = soon\n");
	char *out;
	int rc;

	rc = run_cli(&out, "--config", good, "--check-config");
	tap_is_int(rc, 0, "--config good file --check-config: exit 0");
	tap_ok(out && strcmp(out, "config ok\n") == 0, "prints config ok");
	free(out);
	rc = run_cli(&out, "--check-config", "--config", bad);
	tap_is_int(rc, 1, "--check-config on a broken file: exit 1");
	tap_is_int(lines(out), 1, "one line");
	tap_ok(out && strstr(out, "bad.conf:4:") && strstr(out, "--wait-max"),
	       "names the file, line 4 and the option (%.*s)", out ? (int)strcspn(out, "\n") : 0,
	       out ? out : "");
	free(out);
	rc = run_cli(&out, "--config", write_conf("u.conf", "frobnicate = 1\n"), "--check-config");
	tap_is_int(rc, 1, "unknown option in a file: exit 1");
	tap_ok(out && strstr(out, "u.conf:1:") && strstr(out, "frobnicate"), "says which");
	free(out);
	rc = run_cli(&out, "--config", write_conf("s.conf", "jsonp = maybe\n"), "--check-config");
	tap_is_int(rc, 1, "a switch takes yes or no");
	free(out);
	rc = run_cli(&out, "--config", write_conf("n.conf", "no equals sign\n"), "--check-config");
	tap_ok(rc == 1 && out && strstr(out, "n.conf:1:"), "a line without = is refused");
	free(out);
	rc = run_cli(&out, "--config", "/nonexistent/pollbridge.conf", "--check-config");
	tap_is_int(rc, 1, "a missing file: exit 1");
	tap_ok(out && strstr(out, "/nonexistent/pollbridge.conf"), "naming the file");
	free(out);
	/* Flags override the file's single values and add to its routes. */
	rc = run_cli(&out, "--config", write_conf("d.conf", "route = a=ws://h:1/\n"),
		     "--route=a=ws://h:2/");
	tap_is_int(rc, 2, "a flag's route adds to the file's: a duplicate name is refused");
	free(out);
	rc = run_cli(&out, "--config", write_conf("w.conf", "wait-max = soon\n"), "--wait-max=3");
	tap_is_int(rc, 2, "without --check-config a broken file exits 2 (bad usage)");
	free(out);
}

int main(void)
{
	struct h_bridge b;
	struct h_resp r = { 0 };
	char *out, id[64], url[256];
	int rc, port;

	h_init();
	if (!getenv("PB_BIN"))
		tap_bail("PB_BIN is not set (run through make check)");

	rc = run_cli(&out, "--help", NULL, NULL);
	tap_is_int(rc, 0, "--help exits 0");
	tap_ok(out && strstr(out, "--listen") && strstr(out, "--route") &&
	       strstr(out, "--idle-timeout") && strstr(out, "--queue-max"), "--help lists the options");
	free(out);
	rc = run_cli(&out, "--version", NULL, NULL);
	tap_is_int(rc, 0, "--version exits 0");
	tap_ok(out && strncmp(out, "pollbridge ", 11) == 0, "--version prints the version");
	free(out);
	rc = run_cli(&out, "--check-config", "--route", "a=ws://127.0.0.1:1/x redial");
	tap_is_int(rc, 0, "--check-config on good options exits 0");
	tap_ok(out && strcmp(out, "config ok\n") == 0, "and prints 'config ok'");
	free(out);

	bad("unknown flag", "unknown option", "--frobnicate", NULL, NULL);
	bad("positional argument", "unexpected argument", "hello", NULL, NULL);
	bad("missing value", "needs a value", "--wait-max", NULL, NULL);
	bad("non-numeric value", "--wait-max", "--wait-max", "ten", NULL);
	bad("negative value", "--idle-timeout", "--idle-timeout", "-5", NULL);
	bad("empty value", "--max-batch", "--max-batch=", NULL, NULL);
	bad("zero where at least 1", "--max-sessions", "--max-sessions", "0", NULL);
	bad("bad listen address", "--listen", "--listen", "localhost:80", NULL);
	bad("bad listen port", "--listen", "--listen", "127.0.0.1:99999", NULL);
	bad("route without URL", "--route", "--route", "echo", NULL);
	bad("route with http URL", "ws://", "--route", "echo=http://127.0.0.1:9/", NULL);
	bad("route with bad port", "bad port", "--route", "echo=ws://127.0.0.1:x/", NULL);
	bad("route with unknown option", "unknown option", "--route", "echo=ws://h:1/ bogus", NULL);
	bad("duplicate route", "twice", "--route=e=ws://h:1/", "--route=e=ws://h:2/", NULL);
	bad("bad log level", "--log-level", "--log-level", "loud", NULL);
	bad("unknown store", "--store", "--store", "postgres://x", NULL);
	rc = run_cli(&out, "--check-config", "--route", "x=ftp://y/");
	tap_is_int(rc, 1, "--check-config with a bad route: exit 1");
	tap_is_int(lines(out), 1, "--check-config with a bad route: one line");
	tap_ok(out && strstr(out, "--route"), "--check-config with a bad route: names --route");
	free(out);
	config_file_checks();

	/* The ready line, then a second instance on the same port fails. */
	if (h_bridge_start(&b, NULL))
		tap_bail("pollbridge did not start");
	tap_ok(b.port > 0, "ready line names the port (%d)", b.port);
	/* Started without a route: it says so before serving the demo route. */
	out = h_read_file(b.proc->log_path);
	tap_ok(out && strstr(out, "warn no --route configured: serving the demo route "
				  "echo=ws://127.0.0.1:9001/"),
	       "no route: a warning names the demo route");
	free(out);
	snprintf(url, sizeof(url), "127.0.0.1:%d", b.port);
	rc = run_cli(&out, "--listen", url, NULL);
	tap_ok(rc != 0, "a listen address in use: non-zero exit (%d)", rc);
	tap_is_int(lines(out), 1, "with one line");
	tap_ok(out && strstr(out, "cannot listen"), "that says why (%.*s)",
	       out ? (int)strcspn(out, "\n") : 0, out ? out : "");
	free(out);

	/* SIGTERM while a poll waits (the default route has no upstream here,
	 * so use the echo server). */
	h_stop(b.proc, SIGKILL, 1000);
	if (!h_echo_start(&port, NULL))
		tap_bail("echo did not start");
	snprintf(url, sizeof(url), "--route=echo=ws://127.0.0.1:%d/", port);
	if (h_bridge_start(&b, url, NULL))
		tap_bail("pollbridge did not start");
	tap_is_int(h_create(&b, "echo", id, NULL), 201, "session created");
	{
		pid_t kid = fork();

		if (kid == 0) {
			/* Send SIGTERM while the parent's poll is waiting. */
			usleep(500000);
			kill(b.proc->pid, SIGTERM);
			_exit(0);
		}
		h_poll(&b, id, "wait=20", &r);
		tap_is_int(r.status, 200, "the waiting poll is answered on SIGTERM");
		tap_ok(r.seconds < 5, "at once (%.2f s)", r.seconds);
		if (h_store_shared()) {
			/* Handed over to the other instances: an empty open batch. */
			tap_ok(r.json && !strcmp(json_string_value(json_object_get(r.json, "state")),
						 "open"), "with state open (shared store)");
			tap_ok(r.json && !json_object_get(r.json, "close"), "and no close (shared store)");
		} else {
			tap_ok(r.json && !strcmp(json_string_value(json_object_get(r.json, "state")),
						 "closed"), "with state closed");
			tap_is_int(json_integer_value(json_object_get(json_object_get(r.json, "close"),
								       "code")),
				   1001, "close code 1001");
		}
		h_resp_free(&r);
	}
	tap_is_int(h_wait_exit(b.proc, 6000), 0, "SIGTERM: drained and exited 0");

	if (h_bridge_start(&b, url, NULL))
		tap_bail("pollbridge did not start");
	h_create(&b, "echo", id, NULL);
	tap_is_int(h_stop(b.proc, SIGINT, 6000), 0, "SIGINT with an open session: exit 0");

	/* An address that is not ours to bind (nothing is sent to it). */
	rc = run_cli(&out, "--listen", "192.0.2.1:8080", NULL);
	tap_ok(rc != 0, "an address not on this host: non-zero exit");
	tap_is_int(lines(out), 1, "with one line");
	free(out);
	return tap_done();
}
