/*
 * test_reload.c: running pollbridge like nginx (issue 13): SIGHUP reloads
 * the --config file under traffic (a waiting long poll and an open stream
 * survive, every message arrives once and in order, live sessions keep
 * their upstream while new sessions use the new route table, a new limit
 * and log level apply, a fixed option is "needs a restart"); an invalid
 * file at reload keeps the old configuration and logs FILE:LINE; SIGUSR1
 * reopens a renamed access log; the systemd notify sequence on a
 * NOTIFY_SOCKET datagram socket; --drain-timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

/* Messages the sender child pushes through the streamed session. */
#define N_STREAM 300

/* A growing buffer of what a raw connection has received. */
struct rawbuf {
	char *data;
	size_t len;
};

/* Read what fd has for up to ms (less once it is idle after data). 0 if
 * the connection is still open, -1 if it ended. */
static int raw_pump(int fd, struct rawbuf *rb, int ms)
{
	int64_t until = h_now_ms() + ms;

	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		int64_t left = until - h_now_ms();
		char tmp[16384];
		ssize_t n;

		if (left <= 0)
			return 0;
		if (poll(&p, 1, (int)left) <= 0)
			return 0;
		n = read(fd, tmp, sizeof(tmp));
		if (n <= 0)
			return -1;
		rb->data = realloc(rb->data, rb->len + (size_t)n + 1);
		if (!rb->data)
			tap_bail("out of memory");
		memcpy(rb->data + rb->len, tmp, (size_t)n);
		rb->len += (size_t)n;
		rb->data[rb->len] = '\0';
	}
}

/* Open GET path on a raw connection to b. The fd. */
static int raw_get(struct h_bridge *b, const char *path)
{
	char req[512];
	int fd = h_raw_connect(b->port, NULL);

	if (fd < 0)
		tap_bail("cannot connect to the bridge");
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
	if (h_raw_write(fd, req, strlen(req)))
		tap_bail("cannot write a request");
	return fd;
}

/* Create a session on route; bail out if that fails. */
static void must_create(struct h_bridge *b, const char *route, char *id)
{
	long st = h_create(b, route, id, NULL);

	if (st != 201)
		tap_bail("create on route %s: %ld", route, st);
}

/* Send every "s-1".."s-N" message on session id, one after another;
 * exits 0 if all were accepted. Runs in a child process. */
static void sender(struct h_bridge *b, const char *id)
{
	char text[32];

	for (int i = 1; i <= N_STREAM; i++) {
		snprintf(text, sizeof(text), "s-%d", i);
		if (h_send_text(b, id, text, NULL) != 200)
			_exit(1);
	}
	_exit(0);
}

/* Messages s-1..s-N each exactly once, in order, in the stream's bytes.
 * Returns how many were found in place; *dups counts repeats. */
static int stream_in_order(const struct rawbuf *rb, int *dups)
{
	const char *at = rb->data ? rb->data : "";
	int found = 0;

	*dups = 0;
	for (int i = 1; i <= N_STREAM; i++) {
		char needle[40];
		const char *p;

		snprintf(needle, sizeof(needle), "\"s-%d\"", i);
		p = strstr(at, needle);
		if (!p)
			break;
		if (strstr(p + 1, needle))
			(*dups)++;
		found++;
		at = p + strlen(needle);
	}
	return found;
}

/* The number of messages of a poll answer. */
static size_t nmsgs(const struct h_resp *r)
{
	return r->json ? json_array_size(json_object_get(r->json, "messages")) : 0;
}

/* Reload under traffic, an invalid reload, and the access log reopen. */
static void check_reload(void)
{
	char cfg[512], text[1024], rec1[512], rec2[512], alog[512], alog1[512];
	char s1[64], s2[64], s3[64], s4[64], path[256], url[256];
	struct h_bridge b;
	struct h_resp r = { 0 };
	struct rawbuf sse = { 0 }, pollb = { 0 };
	int p1, p2, fd_sse, fd_poll, st, dups, found;
	pid_t kid;
	json_t *got;

	snprintf(rec1, sizeof(rec1), "%s/echo1.rec", h_tmpdir());
	snprintf(rec2, sizeof(rec2), "%s/echo2.rec", h_tmpdir());
	snprintf(cfg, sizeof(cfg), "%s/pollbridge.conf", h_tmpdir());
	snprintf(alog, sizeof(alog), "%s/access.log", h_tmpdir());
	snprintf(alog1, sizeof(alog1), "%s/access.log.1", h_tmpdir());
	if (!h_echo_start(&p1, "--record", rec1, NULL) || !h_echo_start(&p2, "--record", rec2, NULL))
		tap_bail("echo did not start");
	snprintf(text, sizeof(text),
		 "# first configuration\nroute = A=ws://127.0.0.1:%d/\nmax-batch = 100\n"
		 "log-level = info\naccess-log = %s\n", p1, alog);
	h_write_file(cfg, text);
	if (h_bridge_start(&b, "--config", cfg, NULL))
		tap_bail("bridge did not start");

	/* Traffic: a session with a waiting long poll, a streamed session
	 * with messages flowing through it. */
	must_create(&b, "A", s1);
	must_create(&b, "A", s2);
	snprintf(path, sizeof(path), "/v1/sessions/%s/events", s2);
	fd_sse = raw_get(&b, path);
	raw_pump(fd_sse, &sse, 300);
	tap_ok(sse.data && strstr(sse.data, "200") && strstr(sse.data, "text/event-stream"),
	       "stream open before the reload");
	snprintf(path, sizeof(path), "/v1/sessions/%s/messages?after=0&wait=20", s1);
	fd_poll = raw_get(&b, path);
	h_sleep_ms(200);
	kid = fork();
	if (kid < 0)
		tap_bail("fork failed");
	if (kid == 0)
		sender(&b, s2);
	h_sleep_ms(150);

	/* The new file: A moves to the second echo, B appears, a smaller
	 * batch, debug logs, and one option that needs a restart. */
	snprintf(text, sizeof(text),
		 "route = A=ws://127.0.0.1:%d/\nroute = B=ws://127.0.0.1:%d/\nmax-batch = 2\n"
		 "log-level = debug\naccess-log = %s\nmax-connections = 77\n", p2, p1, alog);
	h_write_file(cfg, text);
	kill(b.proc->pid, SIGHUP);
	tap_is_int(h_wait_log(&b, "reloaded configuration from ", 1, 5000), 1,
		   "SIGHUP: 'reloaded configuration from FILE' logged");
	snprintf(text, sizeof(text), "reloaded configuration from %s (2 routes)", cfg);
	tap_is_int(h_count_in_file(b.proc->log_path, text), 1, "with the file and 2 routes");
	tap_is_int(h_count_in_file(b.proc->log_path, "warn reload: --max-connections needs a restart"),
		   1, "a fixed option: 'needs a restart'");
	waitpid(kid, &st, 0);
	tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "%d sends during the reload all accepted", N_STREAM);

	/* The stream carried every message once, in order. */
	for (int i = 0; i < 100 && stream_in_order(&sse, &dups) < N_STREAM; i++)
		if (raw_pump(fd_sse, &sse, 100) < 0)
			break;
	found = stream_in_order(&sse, &dups);
	tap_is_int(found, N_STREAM, "the stream open across the reload got %d of %d messages in order",
		   found, N_STREAM);
	tap_is_int(dups, 0, "none twice");
	tap_ok(!h_raw_closed(fd_sse, 50), "the stream is still open");
	tap_is_int(h_count_in_file(rec1, "text 5 s-300"), 1, "the streamed session kept its upstream");
	tap_is_int(h_count_in_file(rec2, " s-"), 0, "nothing of it reached the new URL");

	/* The long poll that waited through the reload gets the message. */
	tap_is_int(h_send_text(&b, s1, "p-1", NULL), 200, "send on the polled session");
	tap_is_int(h_raw_read(fd_poll, 5000, &r), H_RAW_ANSWER, "the waiting poll was answered");
	tap_is_int(r.status, 200, "200");
	tap_ok(r.body && strstr(r.body, "\"p-1\""), "with the echo of p-1 from the old upstream");
	h_resp_free(&r);
	tap_is_int(h_count_in_file(rec1, "text 3 p-1"), 1, "p-1 went to the first echo");
	tap_is_int(h_count_in_file(rec2, "p-1"), 0, "and not to the second");

	/* New sessions use the new table. */
	must_create(&b, "A", s3);
	tap_is_int(h_send_text(&b, s3, "n-1", NULL), 200, "a new session on A");
	got = json_array();
	tap_is_int(h_collect(&b, s3, 0, 1, 5000, got), 1, "echoed");
	json_decref(got);
	tap_is_int(h_count_in_file(rec2, "text 3 n-1"), 1, "by the new URL (second echo)");
	tap_is_int(h_count_in_file(rec1, "n-1"), 0, "not the old one");
	tap_is_int(h_create(&b, "B", s4, NULL), 201, "route B added");
	tap_ok(h_still_serving(&b, "B"), "route B works");

	/* The new limit: --max-batch 2. */
	for (int i = 0; i < 5; i++) {
		snprintf(text, sizeof(text), "b-%d", i);
		h_send_text(&b, s3, text, NULL);
	}
	got = json_array();
	h_collect(&b, s3, 1, 5, 5000, got);
	json_decref(got);
	tap_is_int(h_poll(&b, s3, "after=1", &r), 200, "poll after the reload");
	tap_is_int(nmsgs(&r), 2, "--max-batch 2 applies (%zu messages of 5)", nmsgs(&r));
	h_resp_free(&r);
	tap_ok(h_count_in_file(b.proc->log_path, " debug ") > 0, "--log-level debug applies");

	/* An invalid file: the old configuration keeps serving. */
	snprintf(text, sizeof(text),
		 "route = A=ws://127.0.0.1:%d/\nroute = C=ws://127.0.0.1:%d/\nmax-batch = lots\n",
		 p1, p1);
	h_write_file(cfg, text);
	kill(b.proc->pid, SIGHUP);
	tap_is_int(h_wait_log(&b, "reload failed: ", 1, 5000), 1, "invalid file: 'reload failed'");
	snprintf(text, sizeof(text), "%s:3: --max-batch lots", cfg);
	tap_is_int(h_count_in_file(b.proc->log_path, text), 1, "with FILE:LINE and the reason");
	tap_ok(h_alive(b.proc), "the daemon runs on");
	tap_is_int(h_create(&b, "C", s4, NULL), 404, "the invalid file's new route is not there");
	tap_ok(h_still_serving(&b, "B"), "the old configuration serves (B)");
	tap_is_int(h_poll(&b, s3, "after=1", &r), 200, "poll");
	tap_is_int(nmsgs(&r), 2, "--max-batch is still 2");
	h_resp_free(&r);

	/* SIGUSR1: the access log is reopened after a rename. */
	tap_ok(h_count_in_file(alog, "\n") > 0, "access log written");
	st = h_count_in_file(alog, "healthz");
	if (rename(alog, alog1))
		tap_bail("rename: %s", strerror(errno));
	kill(b.proc->pid, SIGUSR1);
	tap_is_int(h_wait_log(&b, "reopened the access log", 1, 5000), 1, "SIGUSR1 logged");
	snprintf(url, sizeof(url), "%s/healthz", b.base);
	h_http(&r, "GET", url, NULL, NULL, 0, NULL);
	h_resp_free(&r);
	h_sleep_ms(100);
	tap_is_int(h_count_in_file(alog, "healthz"), 1, "the new file gets the new lines");
	tap_is_int(h_count_in_file(alog1, "healthz"), st, "the renamed one does not");

	/* Once no session uses the first route table, a reload frees it. */
	close(fd_sse);
	close(fd_poll);
	tap_is_int(h_delete(&b, s1), 204, "delete the first table's polled session");
	tap_is_int(h_delete(&b, s2), 204, "and its streamed one");
	h_sleep_ms(300);
	snprintf(text, sizeof(text), "route = A=ws://127.0.0.1:%d/\nroute = B=ws://127.0.0.1:%d/\n"
		 "max-batch = 2\nlog-level = debug\naccess-log = %s\n", p2, p1, alog);
	h_write_file(cfg, text);
	kill(b.proc->pid, SIGHUP);
	tap_is_int(h_wait_log(&b, "reloaded configuration from ", 2, 5000), 2, "a third reload");
	tap_is_int(h_count_in_file(b.proc->log_path, "freed a replaced route table (1 routes)"), 1,
		   "frees the first table, which no session uses any more");
	tap_ok(h_still_serving(&b, "A") && h_still_serving(&b, "B"), "A and B serve");
	free(sse.data);
	free(pollb.data);
	tap_is_int(h_stop(b.proc, SIGTERM, 10000), 0, "exit 0");
}

/* The systemd notify protocol on a datagram socket: a path, or (abstract)
 * a name in the abstract namespace given as "@NAME". */
static void check_notify(int abstract)
{
	char sock[256], cfg[512], text[256], seq[2048] = "";
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct h_bridge b;
	int fd, port, statuses = 0;
	int64_t until;

	snprintf(sock, sizeof(sock), "%s/notify.sock", h_tmpdir());
	snprintf(cfg, sizeof(cfg), "%s/notify.conf", h_tmpdir());
	if (abstract)
		snprintf(sock, sizeof(sock), "@pollbridge-test-%ld", (long)getpid());
	if (strlen(sock) >= sizeof(sa.sun_path))
		tap_bail("temp dir too long for a socket path: %s", sock);
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	if (abstract)
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa,
			   abstract ? (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(sock))
				    : (socklen_t)sizeof(sa)))
		tap_bail("cannot bind %s", sock);
	if (!h_echo_start(&port, NULL))
		tap_bail("echo did not start");
	snprintf(text, sizeof(text), "route = echo=ws://127.0.0.1:%d/\n", port);
	h_write_file(cfg, text);
	setenv("NOTIFY_SOCKET", sock, 1);
	if (h_bridge_start(&b, "--config", cfg, NULL))
		tap_bail("bridge did not start");
	unsetenv("NOTIFY_SOCKET");
	h_sleep_ms(200);
	kill(b.proc->pid, SIGHUP);
	h_wait_log(&b, "reloaded configuration", 1, 5000);
	h_sleep_ms(200);
	kill(b.proc->pid, SIGTERM);
	h_wait_exit(b.proc, 10000);

	/* Every datagram, as "A|B|..." of their first lines. */
	until = h_now_ms() + 1000;
	while (h_now_ms() < until) {
		struct pollfd p = { fd, POLLIN, 0 };
		char msg[1024];
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = recv(fd, msg, sizeof(msg) - 1, 0);
		if (n <= 0)
			break;
		msg[n] = '\0';
		if (strstr(msg, "STATUS="))
			statuses++;
		if (!strncmp(msg, "STATUS=", 7))
			continue;       /* the periodic one, if it came */
		msg[strcspn(msg, "\n")] = '\0';
		if (strlen(seq) + strlen(msg) + 2 < sizeof(seq)) {
			strcat(seq, seq[0] ? "|" : "");
			strcat(seq, msg);
		}
	}
	close(fd);
	tap_is_str(seq, "READY=1|RELOADING=1|READY=1|STOPPING=1",
		   "NOTIFY_SOCKET=%s got READY=1, RELOADING=1, READY=1, STOPPING=1 in order",
		   abstract ? "@NAME" : "PATH");
	tap_ok(statuses >= 1, "and STATUS= lines (%d)", statuses);
}

/* Logs to the journal keep their levels: with JOURNAL_STREAM naming
 * stderr's device and inode, every line starts with "<N>". The bridge is
 * spawned here (not through the harness) to know its stderr's inode. */
static void check_journal(void)
{
	char logp[512], env[64], route[128], *log;
	int port, fd, status = 0;
	struct stat st;
	pid_t pid;

	if (!h_echo_start(&port, NULL))
		tap_bail("echo did not start");
	snprintf(route, sizeof(route), "echo=ws://127.0.0.1:%d/", port);
	snprintf(logp, sizeof(logp), "%s/journal.log", h_tmpdir());
	fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || fstat(fd, &st))
		tap_bail("cannot create %s", logp);
	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	pid = fork();
	if (pid < 0)
		tap_bail("fork failed");
	if (pid == 0) {
		const char *bin = getenv("PB_BIN") ? getenv("PB_BIN") : "src/pollbridge";

		dup2(fd, STDERR_FILENO);
		dup2(fd, STDOUT_FILENO);
		setenv("JOURNAL_STREAM", env, 1);
		execl(bin, bin, "--listen", "127.0.0.1:0", "--route", route, "--log-level", "debug",
		      (char *)NULL);
		_exit(127);
	}
	close(fd);
	for (int i = 0; i < 100 && h_count_in_file(logp, "listening on ") == 0; i++)
		h_sleep_ms(50);
	kill(pid, SIGHUP);
	h_sleep_ms(300);
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "journal run: exit 0");
	log = h_read_file(logp);
	tap_ok(log && strstr(log, "\n<6>info route echo -> "), "info lines carry <6>");
	tap_ok(log && strstr(log, "<6>info reloaded configuration"), "the reload line too");
	tap_ok(log && strstr(log, "<7>debug "), "debug lines carry <7>");
	tap_ok(log && !strstr(log, "Z info "), "no timestamps (the journal adds its own)");
	tap_ok(log && strstr(log, "listening on "), "the ready line is unchanged");
	free(log);
}

/* --drain-timeout: an upstream that never answers the close is given up
 * after the configured time. */
static void check_drain_timeout(void)
{
	struct h_bridge b;
	char route[128], id[64];
	int port, rc;
	int64_t t0;

	if (!h_ws_available() || !h_ws_start(&port, "slow-echo", "60000", NULL)) {
		tap_ok(1, "# SKIP node ws upstream not available for --drain-timeout");
		return;
	}
	snprintf(route, sizeof(route), "echo=ws://127.0.0.1:%d/", port);
	if (h_bridge_start(&b, "--route", route, "--drain-timeout", "1", NULL))
		tap_bail("bridge with --drain-timeout 1 did not start");
	must_create(&b, "echo", id);
	t0 = h_now_ms();
	rc = h_stop(b.proc, SIGTERM, 10000);
	tap_is_int(rc, 0, "--drain-timeout 1: exit 0");
	tap_ok(h_now_ms() - t0 >= 900 && h_now_ms() - t0 < 3000,
	       "after about 1 s (%lld ms) with an upstream that never answers the close",
	       (long long)(h_now_ms() - t0));
	tap_ok(h_count_in_file(b.proc->log_path, "drain timeout") == 1, "'drain timeout' logged");
}

int main(void)
{
	h_init();
	check_reload();
	check_notify(0);
	check_notify(1);
	check_journal();
	check_drain_timeout();
	return tap_done();
}
