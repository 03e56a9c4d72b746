/*
 * test_lean_polls.c: --lean-long-polls (yes by default). A /v1 poll that
 * has to wait on plain HTTP leaves libmicrohttpd and keeps only its socket (front.c,
 * "waiting polls outside libmicrohttpd"); these checks hold it to being
 * the same poll to a client: the answer has the headers and body an
 * immediate one has (CORS, JSONP, gzip included), it carries a message
 * that arrives while it waits, and the connection serves the next request
 * afterwards. What it must not take, it leaves to libmicrohttpd: a request
 * pipelined behind it is answered in order, HTTP/1.0 and Connection:
 * close polls still work. A client gone while its poll waits costs
 * nothing; a drain answers the waiting polls (their sessions close with
 * 1001, or are left to another instance on a shared store) and closes
 * their connections; their sockets still count toward --max-connections.
 * And it is worth it: the RSS per waiting poll is printed
 * and held below half of what libmicrohttpd's connection memory alone
 * costs (--max-header-bytes 16 KiB + 4 KiB), and a third of what it
 * costs with --lean-long-polls no, except under the sanitizers.
 * The whole run but the memory check is made again under valgrind.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

/* A raw keep-alive connection and the bytes read past the last answer. */
struct rconn {
	int fd;
	char buf[256 * 1024];
	size_t len;
};

/* One answer: its status line and headers (without Date), and body. */
struct ans {
	int status;
	char head[4096];
	char body[8192];
	size_t body_len;
	int closed;             /* the connection ended after (or instead of) it */
};

static int rc_open(struct rconn *c, int port)
{
	c->len = 0;
	c->fd = h_raw_connect(port, NULL);
	return c->fd;
}

static void rc_send(struct rconn *c, const char *req)
{
	if (h_raw_write(c->fd, req, strlen(req)))
		tap_diag("write failed");
}

/* Read bytes into c->buf for up to ms; 0 on data, -1 on EOF/error/timeout. */
static int rc_fill(struct rconn *c, int ms)
{
	struct pollfd p = { c->fd, POLLIN, 0 };
	ssize_t n;

	if (poll(&p, 1, ms) <= 0)
		return -1;
	n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len - 1);
	if (n <= 0)
		return -1;
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	return 0;
}

/* Read one answer within ms. 1 if a whole one came. */
static int rc_answer(struct rconn *c, int ms, struct ans *a)
{
	int64_t until = h_now_ms() + ms;
	char *end, *cl, *line, *save;
	size_t hlen, blen, used;

	memset(a, 0, sizeof(*a));
	for (;;) {
		end = strstr(c->buf, "\r\n\r\n");
		if (end) {
			hlen = (size_t)(end - c->buf) + 4;
			cl = strcasestr(c->buf, "\r\nContent-Length:");
			blen = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
			if (c->len >= hlen + blen)
				break;
		}
		if (h_now_ms() >= until || rc_fill(c, (int)(until - h_now_ms()))) {
			a->closed = 1;
			return 0;
		}
	}
	*end = '\0';
	a->status = atoi(c->buf + 9);
	/* the header lines but Date, one per line */
	for (line = strtok_r(c->buf, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
		if (strncasecmp(line, "Date:", 5) == 0)
			continue;
		strncat(a->head, line, sizeof(a->head) - strlen(a->head) - 2);
		strcat(a->head, "\n");
	}
	a->body_len = blen < sizeof(a->body) - 1 ? blen : sizeof(a->body) - 1;
	memcpy(a->body, c->buf + hlen, a->body_len);
	a->body[a->body_len] = '\0';
	used = hlen + blen;
	memmove(c->buf, c->buf + used, c->len - used);
	c->len -= used;
	c->buf[c->len] = '\0';
	return 1;
}

/* Whether the connection is closed within ms with nothing more to read. */
static int rc_closed(struct rconn *c, int ms)
{
	return c->len == 0 && h_raw_closed(c->fd, ms);
}

static void rc_close(struct rconn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static char req_buf[2048];

/* A GET of the messages of id with query q and extra header lines. */
static const char *get(const char *id, const char *q, const char *version, const char *extra)
{
	snprintf(req_buf, sizeof(req_buf),
		 "GET /v1/sessions/%s/messages?%s %s\r\nHost: x\r\n%s\r\n", id, q, version,
		 extra ? extra : "");
	return req_buf;
}

/* Send text on id from a fresh connection (libcurl). */
static int send_text(struct h_bridge *b, const char *id, const char *text)
{
	struct h_resp r;
	long st = h_send_text(b, id, text, &r);

	h_resp_free(&r);
	return st == 200;
}

/* After ms, send text on id (a child process: the test waits on a poll). */
static pid_t send_later(struct h_bridge *b, const char *id, const char *text, int ms)
{
	pid_t pid = fork();

	if (pid == 0) {
		h_sleep_ms(ms);
		_exit(send_text(b, id, text) ? 0 : 1);
	}
	return pid;
}

static int reap(pid_t pid)
{
	int st = 0;

	waitpid(pid, &st, 0);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* The waiting answer is the immediate one, header for header. */
static void check_same_answer(struct h_bridge *b, const char *id)
{
	struct rconn c;
	struct ans now, later;
	const char *origin = "Origin: http://a.example\r\n";

	tap_ok(rc_open(&c, b->port) >= 0, "same: connect");
	rc_send(&c, get(id, "wait=0", "HTTP/1.1", origin));
	tap_ok(rc_answer(&c, H_RAW_MS, &now) && now.status == 200, "same: a short poll: 200");
	rc_send(&c, get(id, "wait=1", "HTTP/1.1", origin));
	tap_ok(rc_answer(&c, 5000, &later) && later.status == 200,
	       "same: a long poll waits out its second: 200");
	tap_is_str(later.head, now.head, "same: the same status line and headers (Date aside)");
	tap_is_str(later.body, now.body, "same: the same body");
	tap_ok(strstr(later.head, "Access-Control-Allow-Origin: http://a.example") != NULL,
	       "same: with the CORS headers");
	rc_send(&c, get(id, "wait=0", "HTTP/1.1", NULL));
	tap_ok(rc_answer(&c, H_RAW_MS, &now) && now.status == 200,
	       "same: the connection serves the next request");

	/* JSONP: the same, as a script. */
	rc_send(&c, get(id, "wait=1&callback=cb", "HTTP/1.1", NULL));
	tap_ok(rc_answer(&c, 5000, &later) && later.status == 200 &&
	       !strcmp(later.body, "/**/cb({\"messages\":[],\"state\":\"open\"});") &&
	       strstr(later.head, "Content-Type: application/javascript") != NULL,
	       "same: a JSONP long poll answers the script (%s)", later.body);
	rc_close(&c);
}

/* A message that comes while the poll waits is its answer; then the next
 * poll on the connection waits again and is answered again. */
static void check_message(struct h_bridge *b, const char *id)
{
	struct rconn c;
	struct ans a;
	pid_t pid;
	char big[1500 + 1];
	int64_t t0;

	rc_open(&c, b->port);
	pid = send_later(b, id, "m1", 300);
	t0 = h_now_ms();
	rc_send(&c, get(id, "wait=5", "HTTP/1.1", NULL));
	tap_ok(rc_answer(&c, 8000, &a) && a.status == 200 && strstr(a.body, "\"m1\"") != NULL,
	       "message: the waiting poll answers the echo of m1 (%s)", a.body);
	tap_ok(h_now_ms() - t0 < 4000, "message: before its wait is out");
	tap_ok(reap(pid), "message: the send was accepted");
	/* gzip: a batch above --compress-min-bytes (1024) */
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	pid = send_later(b, id, big, 300);
	rc_send(&c, get(id, "after=1&wait=5", "HTTP/1.1", "Accept-Encoding: gzip\r\n"));
	tap_ok(rc_answer(&c, 8000, &a) && a.status == 200 &&
	       strstr(a.head, "Content-Encoding: gzip") != NULL && a.body_len > 0 &&
	       a.body_len < 500, "message: gzipped as an immediate answer would be (%zu bytes)",
	       a.body_len);
	tap_ok(reap(pid), "message: the big send was accepted");
	rc_send(&c, get(id, "after=2&wait=0", "HTTP/1.1", NULL));
	tap_ok(rc_answer(&c, H_RAW_MS, &a) && a.status == 200 &&
	       strstr(a.body, "\"messages\":[]") != NULL,
	       "message: the connection goes on; the cursor acknowledged both");
	rc_close(&c);
}

/* What may not leave libmicrohttpd is served by it as before. */
static void check_left_alone(struct h_bridge *b, const char *id)
{
	struct rconn c;
	struct ans a, a2;
	char two[2048];
	int64_t t0;

	/* A request pipelined behind a long poll: both answered, in order. */
	rc_open(&c, b->port);
	snprintf(two, sizeof(two), "%s", get(id, "after=2&wait=1", "HTTP/1.1", NULL));
	strncat(two, get(id, "after=2&wait=0&max=1", "HTTP/1.1", NULL),
		sizeof(two) - strlen(two) - 1);
	t0 = h_now_ms();
	rc_send(&c, two);
	tap_ok(rc_answer(&c, 5000, &a) && a.status == 200 && h_now_ms() - t0 >= 800,
	       "pipelined: the long poll is answered at its deadline");
	tap_ok(rc_answer(&c, 5000, &a2) && a2.status == 200,
	       "pipelined: then the request behind it");
	rc_close(&c);

	/* HTTP/1.0 */
	rc_open(&c, b->port);
	rc_send(&c, get(id, "after=2&wait=1", "HTTP/1.0", NULL));
	tap_ok(rc_answer(&c, 5000, &a) && a.status == 200 &&
	       strstr(a.body, "\"state\":\"open\"") != NULL, "HTTP/1.0: a long poll is answered");
	tap_ok(rc_closed(&c, 3000), "HTTP/1.0: then the connection closes");
	rc_close(&c);

	/* Connection: close */
	rc_open(&c, b->port);
	rc_send(&c, get(id, "after=2&wait=1", "HTTP/1.1", "Connection: close\r\n"));
	tap_ok(rc_answer(&c, 5000, &a) && a.status == 200,
	       "Connection: close: a long poll is answered");
	tap_ok(rc_closed(&c, 3000), "Connection: close: then the connection closes");
	rc_close(&c);
}

/* A client that leaves while its poll waits: the answer finds no one,
 * and the session and the bridge go on. */
static void check_gone(struct h_bridge *b, const char *id)
{
	struct rconn c;
	struct ans a;

	for (int i = 0; i < 20; i++) {
		rc_open(&c, b->port);
		rc_send(&c, get(id, "after=2&wait=5", "HTTP/1.1", NULL));
		h_sleep_ms(20);
		rc_close(&c);
	}
	tap_ok(send_text(b, id, "after-gone"), "gone: a send after 20 clients left their polls");
	rc_open(&c, b->port);
	rc_send(&c, get(id, "after=2&wait=5", "HTTP/1.1", NULL));
	tap_ok(rc_answer(&c, 8000, &a) && a.status == 200 &&
	       strstr(a.body, "after-gone") != NULL, "gone: the next poll has its echo");
	rc_close(&c);
}

/* Many waiting polls on b: the RSS per poll (KiB), or -1. */
static double held_rss(struct h_bridge *b, const char *what)
{
	enum { N = 400 };
	static struct rconn c[N];
	char id[64];
	long before, during;
	int created = 0;

	before = h_rss_kib(b->proc->pid);
	for (int i = 0; i < N; i++) {
		c[i].fd = -1;
		if (h_create(b, "echo", id, NULL) != 201)
			continue;
		created++;
		rc_open(&c[i], b->port);
		rc_send(&c[i], get(id, "wait=20", "HTTP/1.1", NULL));
	}
	h_sleep_ms(500);
	during = h_rss_kib(b->proc->pid);
	tap_is_int(created, N, "memory (%s): %d sessions", what, N);
	tap_diag("memory (%s): RSS %ld KiB before, %ld KiB with %d waiting polls: %.2f KiB each "
		 "(sessions and upstream links included)", what, before, during, N,
		 (double)(during - before) / N);
	for (int i = 0; i < N; i++) {
		if (c[i].fd < 0)
			continue;
		rc_close(&c[i]);
	}
	return before > 0 && during > 0 ? (double)(during - before) / N : -1;
}

/* The memory per waiting poll, and against --lean-long-polls no. */
static void check_memory(struct h_bridge *b, const char *route)
{
	struct h_bridge classic;
	double lean = held_rss(b, "yes"), suspended;

	if (getenv("PB_SANITIZERS") && strcmp(getenv("PB_SANITIZERS"), "yes") == 0) {
		/* AddressSanitizer's redzones and quarantine are most of it */
		tap_diag("memory: the bounds are not checked in a sanitizer build");
		return;
	}
	tap_ok(lean > 0 && lean < 10.0,
	       "memory: under 10 KiB per waiting poll (libmicrohttpd's pool alone is 20)");
	if (h_bridge_start(&classic, route, "--lean-long-polls", "no", "--wait-max", "20",
			   "--log-level", "warn", NULL))
		tap_bail("pollbridge --lean-long-polls no did not start");
	suspended = held_rss(&classic, "no");
	tap_ok(suspended > 3 * lean, "memory: --lean-long-polls no keeps them in libmicrohttpd "
	       "(%.1f KiB each)", suspended);
	tap_is_int(h_stop(classic.proc, SIGTERM, 10000), 0, "memory: that bridge exits 0");
}

/* Drain (SIGTERM): a waiting poll is answered with its session's close
 * and its connection closed. */
static void check_drain(struct h_bridge *b, const char *id)
{
	struct rconn c;
	struct ans a;

	rc_open(&c, b->port);
	rc_send(&c, get(id, "after=3&wait=20", "HTTP/1.1", NULL));
	h_sleep_ms(300);
	kill(b->proc->pid, SIGTERM);
	tap_ok(rc_answer(&c, 8000, &a) && a.status == 200,
	       "drain: the waiting poll is answered (%d)", a.status);
	if (h_store_shared())
		/* the session stays in the store for another instance */
		tap_ok(strstr(a.body, "\"state\":\"open\"") != NULL,
		       "drain: empty and open, the session is left to another instance (%s)",
		       a.body);
	else
		tap_ok(strstr(a.body, "\"state\":\"closed\"") != NULL &&
		       strstr(a.body, "1001") != NULL,
		       "drain: with the session's close, 1001 (%s)", a.body);
	tap_ok(rc_closed(&c, 3000), "drain: and its connection closed");
	rc_close(&c);
	tap_is_int(h_wait_exit(b->proc, 20000), 0, "drain: the bridge exits 0");
}

/* Waiting polls outside libmicrohttpd still count toward
 * --max-connections 5: a sixth connection is not served until one of the
 * five closes (after their polls are answered, they are keep-alive
 * connections in libmicrohttpd again). */
static void check_limit(const char *route)
{
	struct h_bridge b;
	struct rconn c[5], six;
	struct ans a;
	char id[64];
	int parked = 0, answered = 0;

	if (h_bridge_start(&b, route, "--lean-long-polls", "yes", "--max-connections", "5",
			   "--log-level", "warn", NULL))
		tap_bail("pollbridge --max-connections 5 did not start");
	tap_is_int(h_create(&b, "echo", id, NULL), 201, "limit: a session");
	for (int i = 0; i < 5; i++) {
		parked += rc_open(&c[i], b.port) >= 0;
		rc_send(&c[i], get(id, "wait=2", "HTTP/1.1", NULL));
	}
	tap_is_int(parked, 5, "limit: 5 connections, each with a waiting poll");
	h_sleep_ms(300);
	rc_open(&six, b.port);
	rc_send(&six, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
	tap_ok(!rc_answer(&six, 1000, &a), "limit: a sixth connection is not served");
	six.len = 0;
	for (int i = 0; i < 5; i++)
		answered += rc_answer(&c[i], 5000, &a) && a.status == 200;
	tap_is_int(answered, 5, "limit: the 5 polls are answered at their deadline");
	tap_ok(!rc_answer(&six, 500, &a), "limit: still not, their connections are open");
	six.len = 0;
	rc_close(&c[0]);
	tap_ok(rc_answer(&six, 3000, &a) && a.status == 200,
	       "limit: served once one of them closes (%d)", a.status);
	for (int i = 1; i < 5; i++)
		rc_close(&c[i]);
	rc_close(&six);
	tap_is_int(h_stop(b.proc, SIGTERM, 10000), 0, "limit: the bridge exits 0");
}

/* Every check on a bridge started with wrapper (NULL: none). */
static void run(const char *route, const char *wrapper)
{
	struct h_bridge b;
	char id[64];

	if (wrapper)
		setenv("PB_BRIDGE_WRAPPER", wrapper, 1);
	if (h_bridge_start(&b, route, "--lean-long-polls", "yes", "--jsonp", "--cors-origin",
			   "http://a.example", "--wait-max", "20", "--log-level", "warn", NULL))
		tap_bail("pollbridge did not start");
	unsetenv("PB_BRIDGE_WRAPPER");
	tap_is_int(h_create(&b, "echo", id, NULL), 201, "a session");
	check_same_answer(&b, id);
	check_message(&b, id);
	check_left_alone(&b, id);
	check_gone(&b, id);
	if (!wrapper)
		check_memory(&b, route);
	tap_ok(h_alive(b.proc), "the bridge is alive");
	check_drain(&b, id);
}

int main(void)
{
	char route[128], vlog[600], wrapper[1024], *log;
	int port;

	h_init();
	if (!h_echo_start(&port, NULL))
		tap_bail("pollbridge-echo did not start");
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/", port);
	run(route, NULL);
	check_limit(route);
	/* Once more under valgrind (memcheck), on the memory store: the drain
	 * check's exit 0 is also valgrind's verdict (97 on an error or a
	 * leak). Not in a sanitizer build, nor without valgrind. */
	if ((getenv("PB_SANITIZERS") && strcmp(getenv("PB_SANITIZERS"), "yes") == 0) ||
	    h_store() || system("valgrind --version >/dev/null 2>&1") != 0)
		return tap_done();
	snprintf(vlog, sizeof(vlog), "%s/valgrind.log", h_tmpdir());
	snprintf(wrapper, sizeof(wrapper),
		 "valgrind -q --error-exitcode=97 --leak-check=full "
		 "--show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect "
		 "--log-file=%s", vlog);
	run(route, wrapper);
	log = h_read_file(vlog);
	tap_ok(log && !log[0], "valgrind: nothing reported");
	if (log && log[0])
		tap_diag("%.2000s", log);
	free(log);
	return tap_done();
}
