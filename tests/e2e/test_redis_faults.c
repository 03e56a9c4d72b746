/*
 * test_redis_faults.c: pollbridge when Redis itself fails (docs/REDIS.md
 * "What a client can rely on", docs/API.md "Operations"). The program runs its
 * own redis-servers (each in its own directory, on a port it can reuse)
 * and passes --store to every bridge itself. It covers:
 * - Redis down at startup: the bridge still prints its ready line, answers
 *   /healthz 503 {"status":"unavailable"} and every request 503
 *   store_unavailable at once; once Redis starts, /healthz turns 200 and
 *   sessions work;
 * - Redis killed (SIGKILL) mid-stream and restarted with appendonly on the
 *   same port and directory: 503 store_unavailable at once and /healthz 503
 *   within 2 s during the outage; afterwards unacknowledged messages are
 *   still there with their seqs, sends accepted before the kill reach the
 *   upstream, numbered sends keep their de-duplication, an upstream burst
 *   that was flowing at the kill arrives complete with gap-free seqs, and
 *   new sends are echoed with the next seqs;
 * - Redis paused (SIGSTOP ~3 s): requests answer 503 within ~2 s (the 1 s
 *   command timeout), never hang; after SIGCONT the daemon recovers, and a
 *   numbered send retried after its 503 reaches the upstream exactly once;
 *   Redis dropping the bridge's connections (CLIENT KILL) loses no wakeup,
 *   and SCRIPT FLUSH is survived (NOSCRIPT, reload, retry);
 * - fake Redis servers (forked children): one that answers garbage, one
 *   that passes the handshake and then answers every command with replies
 *   of the wrong shape, one that sends a reply nobody asked for, one that
 *   sends a malformed pub/sub frame, one that sends a reply with no command
 *   pending right after the handshake, one that pushes malformed frames on
 *   the subscriber connection, one that answers commands with an unknown
 *   protocol type byte, one that announces an enormous bulk string. The
 *   bridge must stay alive, answer /healthz and refuse requests with 503,
 *   log why it dropped the connection, drain cleanly, and recover once a
 *   real Redis listens on the port instead;
 * - startup: the first connection to Redis is not logged as the store
 *   being "available again" (only a reconnection is).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

/* A well-formed id (22 base64url characters) that was never handed out. */
#define UNKNOWN_ID "AAAAAAAAAAAAAAAAAAAAAA"
/* The burst the upstream sends while Redis is killed. */
#define BURST 3000

/* How a fake Redis behaves. */
enum fake_mode {
	FAKE_GARBAGE,		/* garbage from the first byte, per connection */
	FAKE_WRONG,		/* a valid handshake, then replies of the wrong shape
				 * and odd pub/sub messages */
	FAKE_EXTRA,		/* a valid handshake, then two replies per command */
	FAKE_SUBBAD,		/* a malformed frame before every subscribe confirmation */
	FAKE_UNSOLICITED,	/* a valid handshake, then a reply nobody asked for on
				 * the command connection, then wrong replies */
	FAKE_SUBPUSH,		/* a malformed push on the subscriber connection right
				 * after its handshake */
	FAKE_BADBYTE,		/* commands answered with an unknown type byte */
	FAKE_HUGEBULK,		/* commands answered with $999999999999 */
};

/* What gather() collected. */
struct seen {
	json_t *msgs;		/* every new message object, in order */
	int closed;
	long bad_status;	/* the non-200 status that stopped it, else 0 */
	char bad_err[32];
};

/* ---- answers ------------------------------------------------------------ */

/* The "state" of a poll answer, or "" if none. */
static const char *state_of(const struct h_resp *r)
{
	const char *s = json_string_value(json_object_get(r->json, "state"));

	return s ? s : "";
}

/* Number of messages in a poll answer, or -1 if it has no such array. */
static long nmsgs(const struct h_resp *r)
{
	json_t *m = json_object_get(r->json, "messages");

	return json_is_array(m) ? (long)json_array_size(m) : -1;
}

/* The seq of a message object, or -1. */
static long long m_seq(const json_t *m)
{
	json_t *s = json_object_get(m, "seq");

	return json_is_integer(s) ? (long long)json_integer_value(s) : -1;
}

/* The type of a message object, or "(none)". */
static const char *m_type(const json_t *m)
{
	const char *s = json_string_value(json_object_get(m, "type"));

	return s ? s : "(none)";
}

/* The data of a message object, or "(none)". */
static const char *m_data(const json_t *m)
{
	const char *s = json_string_value(json_object_get(m, "data"));

	return s ? s : "(none)";
}

/* A string member of a JSON answer, or "". */
static const char *j_str(const struct h_resp *r, const char *key)
{
	const char *s = json_string_value(json_object_get(r->json, key));

	return s ? s : "";
}

/* ---- requests ----------------------------------------------------------- */

/* POST text with X-Send-Seq: seq (none if seq is 0); returns the status. */
static long send_seq(struct h_bridge *b, const char *id, const char *text, unsigned long long seq,
		     struct h_resp *r)
{
	char url[256], hdr[64];
	const char *headers[] = { hdr, NULL };

	snprintf(hdr, sizeof(hdr), "X-Send-Seq: %llu", seq);
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages", b->base, id);
	h_http(r, "POST", url, "text/plain", text, strlen(text), seq ? headers : NULL);
	return r->status;
}

/* Send text numbered seq and expect 200 accepted 1; diagnoses otherwise. */
static int send_ok(struct h_bridge *b, const char *id, const char *text, unsigned long long seq)
{
	struct h_resp r;
	long st = send_seq(b, id, text, seq, &r);
	int ok = st == 200 && h_json_int(&r, "accepted") == 1;

	if (!ok)
		tap_diag("send '%s' (seq %llu) answered %ld %s", text, seq, st, r.body ? r.body : "");
	h_resp_free(&r);
	return ok;
}

/* Poll with the query "after=<after><extra>"; returns the status. */
static long poll_q(struct h_bridge *b, const char *id, unsigned long long after, const char *extra,
		   struct h_resp *r)
{
	char q[128];

	snprintf(q, sizeof(q), "after=%llu%s", after, extra);
	return h_poll(b, id, q, r);
}

/* GET /healthz; returns the status. */
static long healthz(struct h_bridge *b, struct h_resp *r)
{
	char url[128];

	snprintf(url, sizeof(url), "%s/healthz", b->base);
	h_http(r, "GET", url, NULL, NULL, 0, NULL);
	return r->status;
}

/* Poll /healthz until it answers want or timeout_ms passes; the time it
 * took in ms, or -1. */
static long wait_health(struct h_bridge *b, long want, int timeout_ms)
{
	int64_t t0 = h_now_ms();
	struct h_resp r;
	long st;

	for (;;) {
		st = healthz(b, &r);
		h_resp_free(&r);
		if (st == want)
			return (long)(h_now_ms() - t0);
		if (h_now_ms() - t0 > timeout_ms)
			return -1;
		h_sleep_ms(50);
	}
}

/* DELETE the session; returns the status, r keeps the answer. */
static long delete_resp(struct h_bridge *b, const char *id, struct h_resp *r)
{
	char url[256];

	snprintf(url, sizeof(url), "%s/v1/sessions/%s", b->base, id);
	h_http(r, "DELETE", url, NULL, NULL, 0, NULL);
	return r->status;
}

/* A request answered 503 store_unavailable within max_s seconds; the
 * checks are named by what. Frees r. */
static void is_store_503(struct h_resp *r, double max_s, const char *what)
{
	tap_is_int(r->status, 503, "%s: 503", what);
	tap_is_str(h_err(r), "store_unavailable", "%s: store_unavailable", what);
	tap_ok(r->seconds < max_s, "%s: within %.1f s (%.2f s)", what, max_s, r->seconds);
	h_resp_free(r);
}

/* Every kind of request against a bridge whose store is unreachable:
 * 503 store_unavailable within max_s; what names the checks. id is a
 * session to poll and send to (UNKNOWN_ID if none). */
static void all_store_503(struct h_bridge *b, const char *id, unsigned long long after,
			  double max_s, const char *what)
{
	struct h_resp r;
	char w[96];

	healthz(b, &r);
	snprintf(w, sizeof(w), "%s: /healthz", what);
	tap_is_int(r.status, 503, "%s 503", w);
	tap_is_str(j_str(&r, "status"), "unavailable", "%s says unavailable", w);
	tap_ok(r.seconds < max_s, "%s within %.1f s (%.2f s)", w, max_s, r.seconds);
	h_resp_free(&r);
	h_create(b, "echo", NULL, &r);
	snprintf(w, sizeof(w), "%s: create", what);
	is_store_503(&r, max_s, w);
	poll_q(b, id, after, "", &r);
	snprintf(w, sizeof(w), "%s: short poll", what);
	is_store_503(&r, max_s, w);
	poll_q(b, id, after, "&wait=2", &r);
	snprintf(w, sizeof(w), "%s: long poll", what);
	is_store_503(&r, max_s, w);
	send_seq(b, id, "lost?", 0, &r);
	snprintf(w, sizeof(w), "%s: send", what);
	is_store_503(&r, max_s, w);
}

/* Short-poll after=0 until at least n messages are visible (nothing is
 * acknowledged) or timeout_ms passes; the number visible. */
static long wait_visible(struct h_bridge *b, const char *id, long n, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	struct h_resp r;
	long got = -1;

	for (;;) {
		if (poll_q(b, id, 0, "", &r) == 200)
			got = nmsgs(&r);
		h_resp_free(&r);
		if (got >= n || h_now_ms() > deadline)
			return got;
		h_sleep_ms(20);
	}
}

/* Poll b (long polls of 1 s, the cursor advancing from after, max 100)
 * until sv holds n messages, one with data stop_data arrived (NULL:
 * none), the closed batch, or timeout_ms. Everything new goes to sv.
 * Returns the cursor. */
static unsigned long long gather(struct h_bridge *b, const char *id, unsigned long long after,
				 size_t n, const char *stop_data, int timeout_ms, struct seen *sv)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	struct h_resp r;
	json_t *m;
	size_t i;
	int stop = 0;

	while (!stop && json_array_size(sv->msgs) < n && h_now_ms() < deadline) {
		if (poll_q(b, id, after, "&wait=1&max=100", &r) != 200) {
			sv->bad_status = r.status;
			snprintf(sv->bad_err, sizeof(sv->bad_err), "%s", h_err(&r));
			h_resp_free(&r);
			break;
		}
		json_array_foreach(json_object_get(r.json, "messages"), i, m) {
			if (m_seq(m) <= (long long)after)
				continue;
			after = (unsigned long long)m_seq(m);
			json_array_append(sv->msgs, m);
			stop |= stop_data && !strcmp(m_data(m), stop_data);
		}
		sv->closed = !strcmp(state_of(&r), "closed");
		h_resp_free(&r);
		if (sv->closed)
			break;
	}
	return after;
}

/* 1 if message i of sv has seq and text data d. */
static int msg_is(const struct seen *sv, size_t i, long long seq, const char *d)
{
	json_t *m = json_array_get(sv->msgs, i);

	if (m && m_seq(m) == seq && !strcmp(m_type(m), "text") && !strcmp(m_data(m), d))
		return 1;
	tap_diag("message %zu: seq %lld %s '%s', expected seq %lld '%s'", i, m ? m_seq(m) : -1,
		 m ? m_type(m) : "-", m ? m_data(m) : "-", seq, d);
	return 0;
}

/* ---- records ------------------------------------------------------------ */

/* Number of record lines for the text message t ("text LEN t"). */
static int record_text(const char *path, const char *t)
{
	char line[256], *s = h_read_file(path), *p, *eol;
	size_t n;
	int count = 0;

	snprintf(line, sizeof(line), "text %zu %s", strlen(t), t);
	n = strlen(line);
	for (p = s; p && *p; p = eol ? eol + 1 : p + strlen(p)) {
		eol = strchr(p, '\n');
		if ((size_t)((eol ? eol : p + strlen(p)) - p) == n && !strncmp(p, line, n))
			count++;
	}
	free(s);
	return count;
}

/* Wait up to timeout_ms for the text message t to be recorded. */
static int wait_text(const char *path, const char *t, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	int n;

	while ((n = record_text(path, t)) < 1 && h_now_ms() < deadline)
		h_sleep_ms(50);
	return n;
}

/* ---- Redis ------------------------------------------------------------------ */

/* Start redis-server on port with its files in the temp dir's
 * subdirectory sub; aof turns on appendonly with fsync always. */
static struct h_proc *redis_on(int port, const char *sub, int aof)
{
	char *aof_args[] = { "--appendonly", "yes", "--appendfsync", "always", NULL };
	char dir[512];

	snprintf(dir, sizeof(dir), "%s/%s", h_tmpdir(), sub);
	if (mkdir(dir, 0755) && errno != EEXIST)
		tap_bail("mkdir %s: %s", dir, strerror(errno));
	return h_redis_at(port, dir, aof ? aof_args : NULL);
}

/* ---- fake Redis --------------------------------------------------------------- */

/* One client connection of a fake Redis. */
struct fake_conn {
	int fd;
	unsigned n;		/* its number, from 0 */
	int saw_script;		/* sent SCRIPT: the command connection */
	size_t len;
	char in[1 << 16];
};

/* Write all of s to fd (errors ignored: the peer may be gone). */
static void put(int fd, const char *s, size_t len)
{
	ssize_t w;

	while (len) {
		w = write(fd, s, len);
		if (w <= 0)
			return;
		s += w;
		len -= (size_t)w;
	}
}

/* Write a C string to fd. */
static void puts_fd(int fd, const char *s)
{
	put(fd, s, strlen(s));
}

/* Parse one RESP command (an array of bulk strings) at the start of
 * c->in: its argument count (up to 8 kept in argv/lens), and *used the
 * bytes it took; 0 if incomplete, -1 if malformed. */
static int parse_cmd(const struct fake_conn *c, const char **argv, size_t *lens, size_t *used)
{
	const char *p = c->in, *end = c->in + c->len, *eol;
	long n, len;
	int i;

	if (c->len < 4 || *p != '*')
		return c->len && *p != '*' ? -1 : 0;
	eol = memchr(p, '\r', (size_t)(end - p));
	if (!eol || eol + 1 >= end)
		return 0;
	n = strtol(p + 1, NULL, 10);
	if (n < 1 || n > 1000000)
		return -1;
	p = eol + 2;
	for (i = 0; i < n; i++) {
		if (p >= end)
			return 0;
		if (*p != '$')
			return -1;
		eol = memchr(p, '\r', (size_t)(end - p));
		if (!eol || eol + 1 >= end)
			return 0;
		len = strtol(p + 1, NULL, 10);
		if (len < 0)
			return -1;
		p = eol + 2;
		if (end - p < len + 2)
			return 0;
		if (i < 8) {
			argv[i] = p;
			lens[i] = (size_t)len;
		}
		p += len + 2;
	}
	*used = (size_t)(p - c->in);
	return (int)n;
}

/* 1 if the argument a (length len) is the word w, ignoring case. */
static int word_is(const char *a, size_t len, const char *w)
{
	return len == strlen(w) && !strncasecmp(a, w, len);
}

/* Replies that no pollbridge script may take as a valid answer: wrong
 * types, too few elements, negative numbers, unknown codes, nesting,
 * errors (NOSCRIPT makes the client reload and retry). */
static const char *const wrong_replies[] = {
	"*1\r\n:-99\r\n",
	"*2\r\n$1\r\nx\r\n:1\r\n",
	":0\r\n",
	"$3\r\nfoo\r\n",
	"+OK\r\n",
	"*3\r\n:0\r\n:-5\r\n:-1\r\n",
	"*8\r\n:0\r\n$1\r\n1\r\n:1\r\n:0\r\n:0\r\n:0\r\n$0\r\n\r\n:1\r\n",
	"*-1\r\n",
	"$-1\r\n",
	"*2\r\n*1\r\n:0\r\n:1\r\n",
	"-ERR fake failure\r\n",
	"-NOSCRIPT No matching script\r\n",
	"*x\r\n",
	"$-5\r\n",
};

/* Garbage a FAKE_GARBAGE server greets connection n with ("" closes at
 * once, NULL says nothing at all). */
static const char *garbage_for(unsigned n)
{
	static const char *const g[] = {
		"+OK\r\n$-5\r\n:abc\r\n*x\r\n",
		":abc\r\n",
		"*x\r\n",
		"-ERR fake\r\n",
		"\x00\xff\xfe garbage\r\n\r\n",
		"%7\r\n",
		"",
		NULL,
	};

	return g[n % (sizeof(g) / sizeof(g[0]))];
}

/* Answer one parsed command on c as mode says. */
static void fake_answer(struct fake_conn *c, enum fake_mode mode, const char **argv,
			const size_t *lens, int argc, unsigned *replies)
{
	char buf[512];
	int i;

	if (word_is(argv[0], lens[0], "PING")) {
		/* malformed pushes for the subscriber (it sends no SCRIPT) */
		static const char *const bad_push[] = {
			":1\r\n",
			"*2\r\n$7\r\nmessage\r\n$1\r\nx\r\n",
			"*3\r\n$7\r\nmessage\r\n:5\r\n$1\r\nx\r\n",
			"*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n*0\r\n",
			"$5\r\nhello\r\n",
			"*3\r\n$4\r\npong\r\n$1\r\nx\r\n:1\r\n",
		};

		puts_fd(c->fd, "+PONG\r\n");
		if (mode == FAKE_UNSOLICITED && c->saw_script)
			puts_fd(c->fd, "+OK\r\n");
		if (mode == FAKE_SUBPUSH && !c->saw_script)
			puts_fd(c->fd, bad_push[c->n % (sizeof(bad_push) / sizeof(bad_push[0]))]);
	} else if (word_is(argv[0], lens[0], "AUTH") || word_is(argv[0], lens[0], "SELECT")) {
		puts_fd(c->fd, "+OK\r\n");
	} else if (word_is(argv[0], lens[0], "SCRIPT")) {
		static unsigned shas;

		c->saw_script = 1;
		snprintf(buf, sizeof(buf), "$40\r\n%040u\r\n", ++shas);
		puts_fd(c->fd, buf);
	} else if (word_is(argv[0], lens[0], "SUBSCRIBE") ||
		   word_is(argv[0], lens[0], "UNSUBSCRIBE")) {
		int sub = word_is(argv[0], lens[0], "SUBSCRIBE");

		for (i = 1; i < argc && i < 8; i++) {
			if (mode == FAKE_SUBBAD && sub)
				puts_fd(c->fd, "*1\r\n:1\r\n");
			snprintf(buf, sizeof(buf), "*3\r\n$%d\r\n%s\r\n$%zu\r\n%.*s\r\n:%d\r\n",
				 sub ? 9 : 11, sub ? "subscribe" : "unsubscribe", lens[i],
				 (int)(lens[i] < 200 ? lens[i] : 200), argv[i], sub);
			puts_fd(c->fd, buf);
			if (mode != FAKE_WRONG || !sub || lens[i] > 200)
				continue;
			/* messages on the channel: odd wakeups, then a payload that
			 * is not a string (which the subscriber must refuse) */
			snprintf(buf, sizeof(buf),
				 "*3\r\n$7\r\nmessage\r\n$%zu\r\n%.*s\r\n$3\r\nw 5\r\n"
				 "*3\r\n$7\r\nmessage\r\n$%zu\r\n%.*s\r\n$1\r\nz\r\n"
				 "*3\r\n$7\r\nmessage\r\n$%zu\r\n%.*s\r\n:7\r\n",
				 lens[i], (int)lens[i], argv[i], lens[i], (int)lens[i], argv[i],
				 lens[i], (int)lens[i], argv[i]);
			puts_fd(c->fd, buf);
		}
	} else if (mode == FAKE_BADBYTE) {
		puts_fd(c->fd, "?1\r\n");
	} else if (mode == FAKE_HUGEBULK) {
		puts_fd(c->fd, "$999999999999\r\nabc");
	} else {
		puts_fd(c->fd, wrong_replies[(*replies)++ % (sizeof(wrong_replies) /
							       sizeof(wrong_replies[0]))]);
		if (mode == FAKE_EXTRA)
			puts_fd(c->fd, "+OK\r\n");
	}
}

/* The fake Redis (in the forked child; arg: its enum fake_mode): serve
 * connections on lfd until the parent goes away. Never returns. */
static void fake_run(int lfd, void *arg)
{
	enum fake_mode mode = *(enum fake_mode *)arg;
	static struct fake_conn conns[32];
	struct pollfd pfd[33];
	unsigned nconn = 0, replies = 0;
	const char *argv[8];
	size_t lens[8], used;
	int i, n, argc;

	for (i = 0; i < 32; i++)
		conns[i].fd = -1;
	for (;;) {
		pfd[0].fd = lfd;
		pfd[0].events = POLLIN;
		for (i = 0; i < 32; i++) {
			pfd[i + 1].fd = conns[i].fd;
			pfd[i + 1].events = POLLIN;
		}
		if (poll(pfd, 33, 1000) < 0 && errno != EINTR)
			_exit(1);
		if (pfd[0].revents & POLLIN) {
			int fd = accept(lfd, NULL, NULL);
			const char *g;

			for (i = 0; fd >= 0 && i < 32 && conns[i].fd >= 0; i++)
				;
			if (fd >= 0 && i == 32) {
				close(fd);
			} else if (fd >= 0) {
				conns[i].fd = fd;
				conns[i].n = nconn++;
				conns[i].len = 0;
				conns[i].saw_script = 0;
				g = mode == FAKE_GARBAGE ? garbage_for(conns[i].n) : NULL;
				if (g && !*g) {
					close(fd);
					conns[i].fd = -1;
				} else if (g) {
					put(fd, g, conns[i].n % 8 == 4 ? 16 : strlen(g));
				}
			}
		}
		for (i = 0; i < 32; i++) {
			struct fake_conn *c = &conns[i];

			if (c->fd < 0 || !(pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = (int)read(c->fd, c->in + c->len, sizeof(c->in) - c->len);
			if (n <= 0 || (c->len += (size_t)n) == sizeof(c->in)) {
				close(c->fd);
				c->fd = -1;
				continue;
			}
			if (mode == FAKE_GARBAGE) {
				c->len = 0;
				continue;
			}
			while ((argc = parse_cmd(c, argv, lens, &used)) > 0) {
				fake_answer(c, mode, argv, lens, argc, &replies);
				memmove(c->in, c->in + used, c->len - used);
				c->len -= used;
			}
			if (argc < 0) {
				close(c->fd);
				c->fd = -1;
			}
		}
	}
}

/* Fork a fake Redis listening on a free loopback port (*port); it dies
 * with this process. Returns its pid. */
static pid_t fake_start(enum fake_mode mode, int *port)
{
	int lfd;

	/* h_listen's SO_REUSEADDR: the connections it leaves in TIME_WAIT must
	 * not keep the real Redis that follows from binding the port */
	*port = 0;
	lfd = h_listen(port);
	if (lfd < 0)
		tap_bail("fake redis: cannot listen: %s", strerror(errno));
	return h_fork_server(lfd, fake_run, &mode);
}

/* Stop a fake Redis. */
static void fake_stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* ---- groups ---------------------------------------------------------------- */

/* 1 if the log of b contains s. */
static int log_has(const struct h_bridge *b, const char *s)
{
	char *log = h_read_file(b->proc->log_path);
	int has = log && strstr(log, s) != NULL;

	free(log);
	return has;
}

/* Redis down when the bridge starts, then started on that port. */
static void check_down_at_start(const char *r_echo)
{
	struct h_bridge g;
	struct h_proc *rp;
	char store[64];
	int64_t t0;
	long ms;
	int port = h_free_port(), started;

	snprintf(store, sizeof(store), "redis://127.0.0.1:%d", port);
	t0 = h_now_ms();
	started = h_bridge_start(&g, "--store", store, "--instance-id", "G", r_echo, "--wait-max",
				 "2", NULL) == 0;
	if (!tap_ok(started, "down: the bridge starts with Redis down"))
		return;
	tap_ok(h_now_ms() - t0 < 5000, "down: ready line within 5 s (%.1f s)",
	       (double)(h_now_ms() - t0) / 1000.0);
	all_store_503(&g, UNKNOWN_ID, 0, 3.0, "down");
	{
		struct h_resp r;

		delete_resp(&g, UNKNOWN_ID, &r);
		is_store_503(&r, 3.0, "down: DELETE");
	}
	tap_ok(h_alive(g.proc), "down: still running");
	rp = redis_on(port, "late", 0);
	if (!tap_ok(rp != NULL, "down: Redis started on that port"))
		return;
	ms = wait_health(&g, 200, 8000);
	tap_ok(ms >= 0, "down: /healthz 200 within 8 s of Redis starting (%ld ms)", ms);
	tap_ok(!log_has(&g, "available again"),
	       "down: the first connection is not logged as \"store available again\"");
	tap_ok(log_has(&g, "redis: connected to"), "down: the first connection is logged");
	tap_ok(h_still_serving(&g, "echo"), "down: creates and echoes work then");
	tap_is_int(h_stop(g.proc, SIGTERM, 8000), 0, "down: exits 0 on SIGTERM");
	h_stop(rp, SIGTERM, 5000);
}

/* Redis killed mid-stream, restarted with its AOF on the same port. */
static void check_kill_restart(const char *r_echo, const char *r_rk, const char *rec_rk)
{
	struct seen sa = { 0 }, sb = { 0 };
	struct h_bridge h1, h2;
	struct h_proc *rp;
	struct h_resp r;
	char store[64], ida[64], idb[64], text[32];
	unsigned long long cur;
	int64_t t_kill;
	long ms, n, dups = 0, missing = 0, disorder = 0, prev = 0;
	int port = h_free_port(), i, ok;
	static unsigned char seen_n[BURST + 1];
	size_t k;
	json_t *m;

	sa.msgs = json_array();
	sb.msgs = json_array();
	rp = redis_on(port, "aof", 1);
	if (!rp)
		tap_bail("redis-server --appendonly yes did not start");
	snprintf(store, sizeof(store), "redis://127.0.0.1:%d", port);
	if (h_bridge_start(&h1, "--store", store, "--instance-id", "H1", r_echo, r_rk,
			   "--wait-max", "2", "--queue-max", "5000", "--idle-timeout", "30", NULL) ||
	    h_bridge_start(&h2, "--store", store, "--instance-id", "H2", r_echo, r_rk,
			   "--wait-max", "2", "--queue-max", "5000", "--idle-timeout", "30", NULL))
		tap_bail("the bridges on the AOF Redis did not start");
	tap_ok(!log_has(&h1, "available again") && !log_has(&h2, "available again"),
	       "kill: startup does not log \"store available again\"");

	/* a: five echoes, two acknowledged */
	tap_is_int(h_create(&h1, "rk", ida, NULL), 201, "kill: create a on H1");
	for (ok = 1, i = 1; i <= 5; i++) {
		snprintf(text, sizeof(text), "m%d", i);
		ok &= send_ok(&h2, ida, text, (unsigned long long)i);
	}
	tap_ok(ok, "kill: m1..m5 accepted on H2 (X-Send-Seq 1..5)");
	tap_is_int(wait_visible(&h2, ida, 5, 5000), 5, "kill: their 5 echoes are stored");
	tap_is_int(poll_q(&h2, ida, 2, "", &r), 200, "kill: seqs 1..2 acknowledged");
	tap_is_int(nmsgs(&r), 3, "kill: 3 left unacknowledged");
	tap_is_int(m_seq(json_array_get(json_object_get(r.json, "messages"), 0)), 3,
		   "kill: the first is seq 3");
	h_resp_free(&r);

	/* b: a burst flowing from the upstream when Redis dies */
	tap_is_int(h_create(&h1, "echo", idb, NULL), 201, "kill: create b on H1");
	snprintf(text, sizeof(text), "/burst %d", BURST);
	tap_ok(send_ok(&h1, idb, text, 0), "kill: b asks its upstream for a burst of %d", BURST);
	for (i = 0; i < 200; i++) {
		n = -1;
		if (poll_q(&h2, idb, 0, "&max=1", &r) == 200)
			n = nmsgs(&r);
		h_resp_free(&r);
		if (n > 0)
			break;
		h_sleep_ms(5);
	}
	tap_ok(n > 0, "kill: the burst is being stored");

	/* n1..n3 accepted while the owner is stopped: never written before the kill */
	kill(h1.proc->pid, SIGSTOP);
	for (ok = 1, i = 1; i <= 3; i++) {
		snprintf(text, sizeof(text), "n%d", i);
		ok &= send_ok(&h2, ida, text, (unsigned long long)(5 + i));
	}
	tap_ok(ok, "kill: n1..n3 accepted on H2 while the owner H1 is stopped");
	/* only H1 stays: no other instance may adopt its sessions meanwhile */
	h_stop(h2.proc, SIGKILL, 3000);
	tap_is_int(h_stop(rp, SIGKILL, 3000), 128 + SIGKILL, "kill: Redis killed (SIGKILL)");
	t_kill = h_now_ms();
	kill(h1.proc->pid, SIGCONT);

	ms = wait_health(&h1, 503, 5000);
	tap_ok(ms >= 0 && h_now_ms() - t_kill < 2500, "kill: /healthz 503 within 2 s (%.2f s)",
	       (double)(h_now_ms() - t_kill) / 1000.0);
	all_store_503(&h1, ida, 2, 3.0, "kill outage");
	send_seq(&h1, ida, "z1", 9, &r);
	is_store_503(&r, 3.0, "kill outage: numbered send z1");
	/* stay down a while: the client backs off and retries meanwhile */
	while (h_now_ms() - t_kill < 1500)
		h_sleep_ms(50);
	poll_q(&h1, ida, 2, "&wait=1", &r);
	is_store_503(&r, 3.0, "kill outage: a long poll 1.5 s in");
	tap_diag("kill: Redis was down for %.1f s", (double)(h_now_ms() - t_kill) / 1000.0);

	rp = redis_on(port, "aof", 1);
	if (!tap_ok(rp != NULL, "kill: Redis restarted on the same port and directory"))
		goto out;
	ms = wait_health(&h1, 200, 10000);
	tap_ok(ms >= 0, "kill: /healthz 200 again (%ld ms after the restart)", ms);

	/* a: the unacknowledged echoes, then n1..n3 echoed */
	json_array_clear(sa.msgs);
	cur = gather(&h1, ida, 2, 6, NULL, 10000, &sa);
	tap_is_int(json_array_size(sa.msgs), 6, "kill: a has 6 messages after seq 2");
	tap_ok(msg_is(&sa, 0, 3, "m3") && msg_is(&sa, 1, 4, "m4") && msg_is(&sa, 2, 5, "m5"),
	       "kill: m3..m5 still there with seqs 3..5");
	tap_ok(msg_is(&sa, 3, 6, "n1") && msg_is(&sa, 4, 7, "n2") && msg_is(&sa, 5, 8, "n3"),
	       "kill: n1..n3 (accepted before the kill) echoed with seqs 6..8");
	tap_is_int(send_seq(&h1, ida, "n3", 8, &r), 200, "kill: n3 resent with X-Send-Seq 8");
	tap_is_int(h_json_int(&r, "accepted"), 0, "kill: acknowledged, not queued again");
	tap_is_int(h_json_int(&r, "send_seq"), 8, "kill: send_seq 8 survived the restart");
	h_resp_free(&r);
	tap_is_int(send_seq(&h1, ida, "z1", 10, &r), 409, "kill: X-Send-Seq 10 skips 9");
	tap_is_int(h_json_int(&r, "expected"), 9, "kill: expected 9");
	h_resp_free(&r);
	tap_ok(send_ok(&h1, ida, "z1", 9), "kill: z1 (X-Send-Seq 9) accepted");
	json_array_clear(sa.msgs);
	gather(&h1, ida, cur, 1, NULL, 5000, &sa);
	tap_ok(msg_is(&sa, 0, 9, "z1"), "kill: z1 echoed with the next seq, 9");
	wait_text(rec_rk, "z1", 3000);
	for (ok = 1, i = 1; i <= 5; i++) {
		snprintf(text, sizeof(text), "m%d", i);
		ok &= record_text(rec_rk, text) == 1;
	}
	tap_ok(ok, "kill: the upstream got m1..m5 once each");
	for (ok = 1, i = 1; i <= 3; i++) {
		snprintf(text, sizeof(text), "n%d", i);
		n = record_text(rec_rk, text);
		ok &= n >= 1;
		if (n > 1)
			tap_diag("kill: the upstream got %s %ld times (at least once: allowed)", text, n);
	}
	tap_ok(ok, "kill: the upstream got n1..n3 (at least once)");
	tap_is_int(record_text(rec_rk, "z1"), 1, "kill: and z1 once (the 503 one never went)");

	/* b: the whole burst, gap-free */
	snprintf(text, sizeof(text), "%d", BURST);
	gather(&h1, idb, 0, (size_t)-1, text, 20000, &sb);
	json_array_foreach(sb.msgs, k, m) {
		char *end;

		n = strtol(m_data(m), &end, 10);
		if (*end || n < 1 || n > BURST || n < prev) {
			if (disorder++ < 3)
				tap_diag("kill: burst message seq %lld is '%s' after %ld", m_seq(m),
					 m_data(m), prev);
			continue;
		}
		if (seen_n[n]++ && dups++ < 3)
			tap_diag("kill: burst message %ld stored twice (seq %lld)", n, m_seq(m));
		prev = n;
	}
	for (i = 1; i <= BURST; i++)
		missing += !seen_n[i];
	tap_is_int(missing, 0, "kill: every burst message arrived (%zu stored)",
		   json_array_size(sb.msgs));
	tap_is_int(disorder, 0, "kill: in order");
	tap_ok(json_array_size(sb.msgs) >= BURST &&
	       m_seq(json_array_get(sb.msgs, json_array_size(sb.msgs) - 1)) ==
	       (long long)json_array_size(sb.msgs),
	       "kill: seqs 1..N gap-free");
	tap_diag("kill: burst duplicates (a retried append whose reply was lost): %ld", dups);
	tap_diag("kill: H1 held upstream messages in memory during the outage: %s",
		 h_count_in_file(h1.proc->log_path, "holding") ? "yes" : "no (the burst was done)");
	tap_is_int(h_delete(&h1, idb), 204, "kill: DELETE b");
	tap_ok(h_still_serving(&h1, "echo"), "kill: H1 still serving");
	tap_ok(log_has(&h1, "store available again"),
	       "kill: the reconnection is logged as \"store available again\"");
	tap_is_int(h_stop(h1.proc, SIGTERM, 8000), 0, "kill: H1 exits 0");
out:
	json_decref(sa.msgs);
	json_decref(sb.msgs);
	h_stop(rp, SIGTERM, 5000);
}

/* Run redis-cli against the Redis on port with the arguments args; its
 * first output line (without the newline) into line, "" if none. */
static void redis_line(int port, const char *args, char *line, size_t len)
{
	char cmd[512];
	FILE *f;

	line[0] = '\0';
	snprintf(cmd, sizeof(cmd), "redis-cli -h 127.0.0.1 -p %d %s 2>&1", port, args);
	fflush(stdout);
	f = popen(cmd, "r");
	if (!f)
		return;
	if (!fgets(line, (int)len, f))
		line[0] = '\0';
	line[strcspn(line, "\n")] = '\0';
	pclose(f);
}

/* The number redis-cli prints first for args, or -1. */
static long redis_num(int port, const char *args)
{
	char line[256], *end;
	long v;

	redis_line(port, args, line, sizeof(line));
	v = strtol(line, &end, 10);
	return end == line ? -1 : v;
}

/* Redis drops the bridge's connections by itself (no restart): with the
 * pub/sub connection killed just before a send, the wakeups ('o' for the
 * owner, 'i' for the waiting poll) may be lost, and the re-subscription
 * must make up for them; after SCRIPT FLUSH every script answers NOSCRIPT
 * once and is reloaded transparently. A client message stored with no
 * wakeup at all (as if its PUBLISH were lost) is found by the owner's next
 * lease renewal. The session's last seq is 3 and its last X-Send-Seq 3. */
static void check_lost_wakeups(struct h_bridge *b, int port, const char *id, const char *rec)
{
	struct seen s = { 0 };
	struct h_resp r;
	char line[256], eval[320];
	pid_t kid;
	int st;

	s.msgs = json_array();
	fflush(stdout);
	kid = fork();
	if (kid < 0)
		tap_bail("fork failed");
	if (kid == 0) {
		long killed;

		h_sleep_ms(400);
		killed = redis_num(port, "CLIENT KILL TYPE pubsub");
		_exit(killed >= 1 && send_ok(b, id, "p4", 4) ? 0 : 1);
	}
	tap_is_int(poll_q(b, id, 3, "&wait=3", &r), 200, "wakeups: long poll answered");
	tap_is_int(nmsgs(&r), 1, "wakeups: with one message");
	tap_is_str(nmsgs(&r) == 1 ? m_data(json_array_get(json_object_get(r.json, "messages"), 0))
				  : "", "p4", "wakeups: the echo of p4");
	tap_ok(r.seconds < 2.5,
	       "wakeups: promptly although the pub/sub connection was killed (%.2f s)", r.seconds);
	h_resp_free(&r);
	tap_ok(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "wakeups: pub/sub connection killed (CLIENT KILL TYPE pubsub), p4 accepted");

	tap_is_int(redis_num(port, "CLIENT KILL TYPE normal"), 1,
		   "wakeups: the command connection killed too");
	tap_ok(wait_health(b, 200, 5000) >= 0, "wakeups: /healthz 200 again");
	redis_line(port, "SCRIPT FLUSH", line, sizeof(line));
	tap_is_str(line, "OK", "wakeups: SCRIPT FLUSH");
	tap_ok(send_ok(b, id, "p5", 5), "wakeups: a send after SCRIPT FLUSH (NOSCRIPT, reloaded)");
	gather(b, id, 4, 1, NULL, 5000, &s);
	tap_ok(msg_is(&s, 0, 5, "p5"), "wakeups: echoed with seq 5");
	wait_text(rec, "p5", 3000);
	tap_is_int(record_text(rec, "p4") + record_text(rec, "p5"), 2,
		   "wakeups: the upstream got p4 and p5 once each");

	/* What PUSH_OUT does, without its PUBLISH. */
	snprintf(eval, sizeof(eval), "EVAL \"redis.call('RPUSH', KEYS[2], ARGV[1]); "
		 "redis.call('HINCRBY', KEYS[1], 'out_last', 1); "
		 "return redis.call('HINCRBY', KEYS[1], 'out_bytes', 2)\" 2 pb:{%.22s}:m pb:{%.22s}:o tp6",
		 id, id);
	redis_line(port, eval, line, sizeof(line));
	tap_ok(atoi(line) > 0, "wakeups: a client message p6 stored with no wakeup (%s)", line);
	gather(b, id, 5, 2, NULL, 4000, &s);
	tap_ok(msg_is(&s, 1, 6, "p6"), "wakeups: found by the lease renewal, echoed with seq 6");
	wait_text(rec, "p6", 3000);
	tap_is_int(record_text(rec, "p6"), 1, "wakeups: the upstream got p6 once");
	json_decref(s.msgs);
}

/* Redis paused for ~3 s: 503 within ~2 s, never a hang; then recovery. */
static void check_pause(const char *r_echo, const char *r_rk, const char *rec_rk)
{
	struct seen s = { 0 };
	struct h_bridge b;
	struct h_proc *rp;
	struct h_resp r;
	char store[64], id[64];
	int64_t t_stop;
	long ms, st;
	int port = h_free_port(), accepted;

	s.msgs = json_array();
	rp = redis_on(port, "pause", 0);
	if (!rp)
		tap_bail("redis-server for the pause did not start");
	snprintf(store, sizeof(store), "redis://127.0.0.1:%d", port);
	if (h_bridge_start(&b, "--store", store, "--instance-id", "P", r_echo, r_rk, "--wait-max",
			   "2", NULL))
		tap_bail("the bridge for the pause did not start");
	tap_is_int(h_create(&b, "rk", id, NULL), 201, "pause: create");
	tap_ok(send_ok(&b, id, "p1", 1), "pause: p1 accepted");
	gather(&b, id, 0, 1, NULL, 5000, &s);
	tap_ok(msg_is(&s, 0, 1, "p1"), "pause: p1 echoed with seq 1");

	kill(rp->pid, SIGSTOP);
	t_stop = h_now_ms();
	st = send_seq(&b, id, "p2", 2, &r);
	tap_is_int(st, 503, "pause: a send during the pause answers 503");
	tap_is_str(h_err(&r), "store_unavailable", "pause: store_unavailable");
	tap_ok(r.seconds < 2.5, "pause: within ~2 s (%.2f s)", r.seconds);
	h_resp_free(&r);
	poll_q(&b, id, 1, "", &r);
	is_store_503(&r, 2.5, "pause: short poll");
	poll_q(&b, id, 1, "&wait=2", &r);
	is_store_503(&r, 2.5, "pause: long poll");
	h_create(&b, "rk", NULL, &r);
	is_store_503(&r, 3.0, "pause: create");
	ms = wait_health(&b, 503, 3000);
	tap_ok(ms >= 0 && h_now_ms() - t_stop < 3000, "pause: /healthz 503 (%.2f s into the pause)",
	       (double)(h_now_ms() - t_stop) / 1000.0);
	tap_ok(h_alive(b.proc), "pause: still running");
	while (h_now_ms() - t_stop < 3000)
		h_sleep_ms(50);
	kill(rp->pid, SIGCONT);

	ms = wait_health(&b, 200, 8000);
	tap_ok(ms >= 0, "pause: /healthz 200 again after SIGCONT (%ld ms)", ms);
	/* the 503 send may have run when Redis woke up: the retry is safe */
	st = send_seq(&b, id, "p2", 2, &r);
	accepted = (int)h_json_int(&r, "accepted");
	tap_is_int(st, 200, "pause: p2 retried with X-Send-Seq 2");
	tap_ok(accepted == 0 || accepted == 1, "pause: accepted %d", accepted);
	tap_is_int(h_json_int(&r, "send_seq"), 2, "pause: send_seq 2");
	h_resp_free(&r);
	tap_diag("pause: the send answered 503 during the pause %s",
		 accepted ? "had not run" : "had run when Redis woke up");
	tap_ok(send_ok(&b, id, "p3", 3), "pause: p3 accepted");
	json_array_clear(s.msgs);
	gather(&b, id, 1, 2, NULL, 5000, &s);
	tap_is_int(json_array_size(s.msgs), 2, "pause: two echoes after seq 1");
	tap_ok(msg_is(&s, 0, 2, "p2") && msg_is(&s, 1, 3, "p3"),
	       "pause: p2 and p3 with seqs 2 and 3");
	wait_text(rec_rk, "p3", 3000);
	tap_is_int(record_text(rec_rk, "p2"), 1, "pause: the upstream got p2 exactly once");
	tap_is_int(record_text(rec_rk, "p3"), 1, "pause: and p3 once");
	check_lost_wakeups(&b, port, id, rec_rk);
	tap_is_int(h_delete(&b, id), 204, "pause: DELETE");
	tap_ok(h_still_serving(&b, "echo"), "pause: still serving");
	tap_is_int(h_stop(b.proc, SIGTERM, 8000), 0, "pause: exits 0");
	h_stop(rp, SIGTERM, 5000);
	json_decref(s.msgs);
}

/* One request of a fake-Redis round into r: /healthz (kind 0), create
 * (1), poll (2), send (3). 0 if there was no answer because the bridge
 * died meanwhile (r is then freed). */
static int fake_request(struct h_bridge *b, int kind, struct h_resp *r)
{
	if (kind == 0)
		healthz(b, r);
	else if (kind == 1)
		h_create(b, "echo", NULL, r);
	else if (kind == 2)
		poll_q(b, UNKNOWN_ID, 0, "", r);
	else
		send_seq(b, UNKNOWN_ID, "x", 1, r);
	/* no answer at all: a crash, if the process is gone a moment later */
	if (r->status || h_wait_exit(b->proc, 500) == -2)
		return 1;
	h_resp_free(r);
	return 0;
}

/* A bridge pointed at a fake Redis of the given mode stays alive and
 * answers for ~3 s, refusing sessions with 503, and logs `logged` (unless
 * NULL) as the reason it dropped the connection; once a real Redis listens
 * on the port instead, the bridge recovers. */
static void check_fake(enum fake_mode mode, const char *name, const char *r_echo,
		       const char *logged)
{
	struct h_proc *rp;
	struct h_bridge b;
	struct h_resp r;
	char store[64], inst[32];
	int64_t t0;
	long h200 = 0, h503 = 0, hother = 0, slow = 0, created = 0, refused[4] = { 0 };
	long made[4] = { 0 }, rc;
	int port, kind;
	pid_t fake = fake_start(mode, &port);

	snprintf(store, sizeof(store), "redis://127.0.0.1:%d", port);
	snprintf(inst, sizeof(inst), "fake-%s", name);
	if (!tap_ok(h_bridge_start(&b, "--store", store, "--instance-id", inst, r_echo,
				   "--wait-max", "2", NULL) == 0,
		    "fake %s: the bridge starts", name)) {
		fake_stop(fake);
		return;
	}
	t0 = h_now_ms();
	while (h_now_ms() - t0 < 3500 && h_alive(b.proc)) {
		for (kind = 0; kind < 4; kind++) {
			if (!fake_request(&b, kind, &r))
				break;
			made[kind]++;
			slow += r.seconds >= 3.0;
			if (kind == 0) {
				h200 += r.status == 200;
				h503 += r.status == 503 &&
					!strcmp(j_str(&r, "status"), "unavailable");
				hother += r.status != 200 && r.status != 503;
			} else {
				created += r.status == 201;
				refused[kind] += r.status == 503 &&
						 !strcmp(h_err(&r), "store_unavailable");
			}
			h_resp_free(&r);
		}
		h_sleep_ms(100);
	}
	tap_ok(h_alive(b.proc), "fake %s: the bridge is still running after %.1f s", name,
	       (double)(h_now_ms() - t0) / 1000.0);
	if (!h_alive(b.proc)) {
		char *log = h_read_file(b.proc->log_path), *p;
		size_t len = log ? strlen(log) : 0;

		while (len && log[len - 1] == '\n')
			log[--len] = '\0';
		p = log ? strrchr(log, '\n') : NULL;
		tap_diag("fake %s: the bridge died (%s %d); its last log line: %s", name,
			 WIFSIGNALED(b.proc->status) ? "signal" : "exit status",
			 WIFSIGNALED(b.proc->status) ? WTERMSIG(b.proc->status)
						     : WEXITSTATUS(b.proc->status),
			 p ? p + 1 : log ? log : "(none)");
		free(log);
	}
	tap_ok(made[3] >= 3, "fake %s: %ld complete rounds of requests", name, made[3]);
	if (mode == FAKE_GARBAGE)
		tap_is_int(h503, made[0], "fake %s: /healthz always 503 unavailable", name);
	else
		tap_is_int(hother, 0, "fake %s: /healthz always 200 or 503 (%ld/%ld)", name, h200,
			   h503);
	tap_is_int(created, 0, "fake %s: no session created on garbage", name);
	tap_is_int(refused[1], made[1], "fake %s: creates answer 503 store_unavailable", name);
	tap_is_int(refused[2], made[2], "fake %s: polls answer 503 store_unavailable", name);
	tap_is_int(refused[3], made[3], "fake %s: sends answer 503 store_unavailable", name);
	tap_is_int(slow, 0, "fake %s: every answer within 3 s", name);
	if (logged)
		tap_ok(log_has(&b, logged), "fake %s: the log says \"%s\"", name, logged);
	/* the real Redis comes back on that port */
	fake_stop(fake);
	rp = redis_on(port, name, 0);
	if (tap_ok(rp != NULL, "fake %s: a real Redis started on the port", name)) {
		long ms = wait_health(&b, 200, 8000);

		tap_ok(ms >= 0, "fake %s: /healthz 200 within 8 s of the real Redis (%ld ms)",
		       name, ms);
		tap_ok(h_still_serving(&b, "echo"), "fake %s: creates and echoes work then", name);
	}
	rc = h_stop(b.proc, SIGTERM, 8000);
	tap_is_int(rc, 0, "fake %s: exits 0 on SIGTERM", name);
	if (rp)
		h_stop(rp, SIGTERM, 5000);
}

int main(void)
{
	char r_echo[96], r_rk[96], rec_rk[512];
	int echo_port, rk_port;

	/* This program chooses its stores itself. */
	unsetenv("PB_TEST_STORE");
	h_init();
	if (!h_echo_start(&echo_port, NULL))
		tap_bail("pollbridge-echo did not start");
	snprintf(rec_rk, sizeof(rec_rk), "%s/rk.rec", h_tmpdir());
	if (!h_echo_start(&rk_port, "--record", rec_rk, NULL))
		tap_bail("pollbridge-echo --record did not start");
	snprintf(r_echo, sizeof(r_echo), "--route=echo=ws://127.0.0.1:%d/", echo_port);
	snprintf(r_rk, sizeof(r_rk), "--route=rk=ws://127.0.0.1:%d/", rk_port);

	check_down_at_start(r_echo);
	check_kill_restart(r_echo, r_rk, rec_rk);
	check_pause(r_echo, r_rk, rec_rk);
	check_fake(FAKE_GARBAGE, "garbage", r_echo, "protocol error");
	check_fake(FAKE_WRONG, "wrong-replies", r_echo, NULL);
	/* hiredis 0.14's async layer asserts on these two; the client reads
	 * replies itself and drops the connection instead */
	check_fake(FAKE_EXTRA, "unsolicited-reply", r_echo, "with no command pending");
	check_fake(FAKE_SUBBAD, "bad-pubsub-frame", r_echo, NULL);
	check_fake(FAKE_UNSOLICITED, "reply-after-handshake", r_echo, "with no command pending");
	check_fake(FAKE_SUBPUSH, "bad-subscriber-push", r_echo, "subscriber connection");
	check_fake(FAKE_BADBYTE, "bad-type-byte", r_echo, "protocol error");
	check_fake(FAKE_HUGEBULK, "huge-bulk", r_echo, "longer than");
	return tap_done();
}
