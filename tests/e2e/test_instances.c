/*
 * test_instances.c: several real pollbridge processes sharing one Redis
 * (docs/REDIS.md, docs/API.md "Instances, drain and failure"). The program
 * starts its own redis-server and passes --store to every bridge itself,
 * whatever PB_TEST_STORE says. It covers:
 * - cross-instance sessions: created on A, sent to on B, long-polled on C;
 *   a poll waiting on C woken by a send through A; DELETE on B ends it for
 *   every instance (a poll waiting on C answered 410, then 410 on A and C,
 *   the upstream got close 1000);
 * - the single-waiter rule across instances (owner/shadow in both
 *   directions, shadow/shadow): the older waiting poll is answered at once,
 *   empty and open, and the newer one gets the next message;
 * - 50 sessions created round-robin on A/B/C exchanging 100 numbered
 *   messages each through random instances: every echo exactly once, in
 *   order, with seqs 1..100, and the upstream saw every message once;
 * - an owner killed with SIGKILL: with `redial` the buffered messages stay
 *   readable on another instance, then a "reopen" message, sends accepted
 *   before the kill reach the re-dialled upstream (at least once), new
 *   sends are echoed; without `redial` the session closes with 1006 after
 *   its buffered messages;
 * - an owner drained with SIGTERM: exit 0, buffered messages readable
 *   elsewhere, then close 1012 (no redial) or "reopen" (redial);
 * - an owner killed while the re-dial of its `redial` route hangs (the
 *   port accepts TCP, never a handshake) and clients keep polling: the
 *   adopter still gives up after --connect-timeout and closes with 1006;
 *   and one whose re-dial is refused (the port closes every connection
 *   before the handshake): closed with 1006, the adopter survives;
 * - with --idle-timeout 2 (a second Redis and two bridges): long polls
 *   waiting on a non-owner instance keep the session alive; Redis' DBSIZE
 *   returns to its baseline once every session was deleted, closed and
 *   acknowledged, or idled out.
 * The echo servers' --record files tell what reached the upstreams.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

/* The 50-session exchange. */
#define N_SESS 50
#define N_MSGS 100
#define MM_WORKERS 5
/* The idle timeout of the bridges of the DBSIZE group, seconds. */
#define SHORT_IDLE 2

/* Everything the groups share: the bridges, their routes, record files. */
struct world {
	struct h_bridge a, b, c;
	struct h_bridge *all[3];
	char store[64];
	int redis_port;
	char r_echo[96], r_del[96], r_mm[96], r_kr[112], r_kn[96], r_kh[112], r_kc[112];
	char rec_del[512], rec_mm[512], rec_kr[512], rec_kn[512];
	struct h_proc *echo_kh;	/* the upstream of route kh (redial) */
	int kh_port;
	struct h_proc *echo_kc;	/* the upstream of route kc (redial) */
	int kc_port;
};

/* What a background poll (bg_poll) saw. */
struct bg_result {
	long status;
	long n;
	double seconds;
	long long seq;		/* of the first message, -1 if none */
	char state[16];
	char err[32];
	char data[64];		/* of the first message */
};

/* What gather() collected. */
struct seen {
	json_t *msgs;		/* every new message object, in order */
	int closed;
	long long code;
	char reason[64];
	long bad_status;	/* the non-200 status that stopped it, else 0 */
	char bad_err[32];
	int64_t reopen_at;	/* h_now_ms() when a reopen was first seen, else 0 */
	int stop_at_reopen;	/* set by the caller: gather() stops at a reopen */
};

/* ---- answers ------------------------------------------------------------ */

/* The "state" of a poll answer, or "" if none. */
static const char *state_of(const struct h_resp *r)
{
	const char *s = json_string_value(json_object_get(r->json, "state"));

	return s ? s : "";
}

/* The close code of a poll answer, or -1 if it has none. */
static long long close_code(const struct h_resp *r)
{
	json_t *c = json_object_get(json_object_get(r->json, "close"), "code");

	return json_is_integer(c) ? (long long)json_integer_value(c) : -1;
}

/* Number of messages in a poll answer, or -1 if it has no such array. */
static long nmsgs(const struct h_resp *r)
{
	json_t *m = json_object_get(r->json, "messages");

	return json_is_array(m) ? (long)json_array_size(m) : -1;
}

/* Message i of a poll answer (borrowed), or NULL. */
static json_t *msg_at(const struct h_resp *r, size_t i)
{
	return json_array_get(json_object_get(r->json, "messages"), i);
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

/* POST a JSON body; returns the status. */
static long send_json(struct h_bridge *b, const char *id, const char *json, struct h_resp *r)
{
	char url[256];

	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages", b->base, id);
	h_http(r, "POST", url, "application/json", json, strlen(json), NULL);
	return r->status;
}

/* Send text (numbered seq, 0 for none) and expect 200; the check is named
 * by what. */
static int send_ok(struct h_bridge *b, const char *id, const char *text, unsigned long long seq,
		   const char *what)
{
	struct h_resp r;
	long st = send_seq(b, id, text, seq, &r);
	int ok = st == 200 && h_json_int(&r, "accepted") == 1;

	if (!ok)
		tap_diag("%s: send '%s' answered %ld %s", what, text, st, r.body ? r.body : "");
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
		h_sleep_ms(30);
	}
}

/* Poll b (long polls of 1 s, the cursor advancing from after) until the
 * message whose data is stop_data has been seen (NULL: never), a reopen
 * if sv->stop_at_reopen, the closed batch, or timeout_ms. Everything new
 * goes to sv. Returns the cursor. */
static unsigned long long gather(struct h_bridge *b, const char *id, unsigned long long after,
				 const char *stop_data, int timeout_ms, struct seen *sv)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	struct h_resp r;
	json_t *m;
	size_t i;
	int stop = 0;

	while (!stop && h_now_ms() < deadline) {
		if (poll_q(b, id, after, "&wait=1", &r) != 200) {
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
			if (!strcmp(m_type(m), "reopen") && !sv->reopen_at) {
				sv->reopen_at = h_now_ms();
				stop |= sv->stop_at_reopen;
			}
			if (stop_data && !strcmp(m_data(m), stop_data))
				stop = 1;
		}
		if (!strcmp(state_of(&r), "closed")) {
			const char *why = json_string_value(
				json_object_get(json_object_get(r.json, "close"), "reason"));

			sv->closed = 1;
			sv->code = close_code(&r);
			snprintf(sv->reason, sizeof(sv->reason), "%s", why ? why : "(none)");
			stop = 1;
		}
		h_resp_free(&r);
	}
	return after;
}

/* Index of the first message of sv with data d (type text) from index
 * from on, or -1. */
static long find_data(const struct seen *sv, const char *d, size_t from)
{
	for (size_t i = from; i < json_array_size(sv->msgs); i++) {
		json_t *m = json_array_get(sv->msgs, i);

		if (!strcmp(m_type(m), "text") && !strcmp(m_data(m), d))
			return (long)i;
	}
	return -1;
}

/* Index of the first reopen message of sv, or -1. */
static long reopen_index(const struct seen *sv)
{
	size_t i;
	json_t *m;

	json_array_foreach(sv->msgs, i, m)
		if (!strcmp(m_type(m), "reopen"))
			return (long)i;
	return -1;
}

/* How many messages of sv have type t and (if d is not NULL) data d. */
static int count_msgs(const struct seen *sv, const char *t, const char *d)
{
	int n = 0;
	size_t i;
	json_t *m;

	json_array_foreach(sv->msgs, i, m)
		n += !strcmp(m_type(m), t) && (!d || !strcmp(m_data(m), d));
	return n;
}

/* 1 if the seqs of sv's messages run first, first+1, ... without a gap. */
static int seqs_contiguous(const struct seen *sv, long long first)
{
	size_t i;
	json_t *m;

	json_array_foreach(sv->msgs, i, m) {
		if (m_seq(m) != first + (long long)i) {
			tap_diag("message %zu has seq %lld, expected %lld", i, m_seq(m),
				 first + (long long)i);
			return 0;
		}
	}
	return 1;
}

/* Print sv's messages as diagnostics (on failure). */
static void dump_seen(const char *what, const struct seen *sv)
{
	size_t i;
	json_t *m;

	tap_diag("%s: %zu messages, closed %d code %lld reason '%s', stopped by %ld %s", what,
		 json_array_size(sv->msgs), sv->closed, sv->code, sv->reason, sv->bad_status,
		 sv->bad_err);
	json_array_foreach(sv->msgs, i, m)
		tap_diag("  seq %lld %s %s", m_seq(m), m_type(m), m_data(m));
}

/* Print what each live bridge logged about session id (its log lines that
 * name the id's first 6 characters), for a failed check. */
static void dump_logs(struct world *w, const char *id)
{
	for (int i = 0; i < 3; i++) {
		char *text, *line, *eol;

		if (!w->all[i]->proc || !(text = h_read_file(w->all[i]->proc->log_path)))
			continue;
		tap_diag("bridge %c on session %.6s:", 'A' + i, id);
		for (line = text; (eol = strchr(line, '\n')); line = eol + 1) {
			*eol = '\0';
			if (strlen(id) >= 6 && memmem(line, strlen(line), id, 6))
				tap_diag("  %s", line);
		}
		free(text);
	}
}

/* ---- background requests ------------------------------------------------- */

/* Fork a child that polls b with query and reports on a pipe; *fd gets
 * the read end. Returns the child's pid. */
static pid_t bg_poll(struct h_bridge *b, const char *id, const char *query, int *fd)
{
	struct bg_result res;
	struct h_resp r;
	json_t *m;
	int p[2];
	pid_t pid;

	if (pipe(p))
		tap_bail("pipe failed");
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		tap_bail("fork failed");
	if (pid) {
		close(p[1]);
		*fd = p[0];
		return pid;
	}
	close(p[0]);
	memset(&res, 0, sizeof(res));
	res.status = h_poll(b, id, query, &r);
	res.n = nmsgs(&r);
	res.seconds = r.seconds;
	m = msg_at(&r, 0);
	res.seq = m ? m_seq(m) : -1;
	snprintf(res.state, sizeof(res.state), "%s", state_of(&r));
	snprintf(res.err, sizeof(res.err), "%s", h_err(&r));
	snprintf(res.data, sizeof(res.data), "%s", m ? m_data(m) : "");
	h_resp_free(&r);
	_exit(write(p[1], &res, sizeof(res)) == (ssize_t)sizeof(res) ? 0 : 1);
}

/* Collect a bg_poll child's report (status -1 if it has none). */
static void bg_wait(pid_t pid, int fd, struct bg_result *res)
{
	int st;

	memset(res, 0, sizeof(*res));
	if (read(fd, res, sizeof(*res)) != (ssize_t)sizeof(*res))
		res->status = -1;
	close(fd);
	waitpid(pid, &st, 0);
}

/* Fork a child that, after delay_ms, sends text through b (text not NULL)
 * or DELETEs the session; it exits 0 on 200 (send) or 204 (DELETE). */
static pid_t later(int delay_ms, struct h_bridge *b, const char *id, const char *text)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		tap_bail("fork failed");
	if (pid)
		return pid;
	h_sleep_ms(delay_ms);
	if (text)
		_exit(h_send_text(b, id, text, NULL) == 200 ? 0 : 1);
	_exit(h_delete(b, id) == 204 ? 0 : 1);
}

/* Wait for a child of later(); its exit code, or -1. */
static int reap(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

/* ---- records and Redis ---------------------------------------------------- */

/* Number of lines of the record file at path equal to line. */
static int record_lines(const char *path, const char *line)
{
	char *s = h_read_file(path), *p, *eol;
	size_t n = strlen(line);
	int count = 0;

	for (p = s; p && *p; p = eol ? eol + 1 : p + strlen(p)) {
		eol = strchr(p, '\n');
		if ((size_t)((eol ? eol : p + strlen(p)) - p) == n && !strncmp(p, line, n))
			count++;
	}
	free(s);
	return count;
}

/* Number of record lines for the text message t ("text LEN t"). */
static int record_text(const char *path, const char *t)
{
	char line[256];

	snprintf(line, sizeof(line), "text %zu %s", strlen(t), t);
	return record_lines(path, line);
}

/* Number of lines of the record file that start with prefix. */
static int record_prefix(const char *path, const char *prefix)
{
	char *s = h_read_file(path), *p;
	size_t n = strlen(prefix);
	int count = 0;

	for (p = s; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
		count += !strncmp(p, prefix, n);
	free(s);
	return count;
}

/* Wait up to timeout_ms for at least want lines starting with prefix. */
static int wait_prefix(const char *path, const char *prefix, int want, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	int n;

	while ((n = record_prefix(path, prefix)) < want && h_now_ms() < deadline)
		h_sleep_ms(50);
	return n;
}

/* Wait up to timeout_ms for the text message t to be recorded at least once. */
static int wait_text(const char *path, const char *t, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	int n;

	while ((n = record_text(path, t)) < 1 && h_now_ms() < deadline)
		h_sleep_ms(50);
	return n;
}

/* Run redis-cli against the Redis on port with the arguments args; the
 * number on its first output line, or -1. */
static long redis_num(int port, const char *args)
{
	char cmd[256], line[256], *end;
	FILE *f;
	long v = -1;

	snprintf(cmd, sizeof(cmd), "redis-cli -h 127.0.0.1 -p %d %s 2>&1", port, args);
	fflush(stdout);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	if (fgets(line, sizeof(line), f)) {
		v = strtol(line, &end, 10);
		if (end == line)
			v = -1;
	}
	pclose(f);
	return v;
}

/* Print the keys of the Redis on port as diagnostics (on failure). */
static void redis_dump_keys(int port)
{
	char cmd[256], line[256];
	FILE *f;
	int n = 0;

	snprintf(cmd, sizeof(cmd), "redis-cli -h 127.0.0.1 -p %d --scan 2>&1", port);
	fflush(stdout);
	f = popen(cmd, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f) && n++ < 40) {
		line[strcspn(line, "\n")] = '\0';
		tap_diag("  key %s", line);
	}
	pclose(f);
}

/* Path of the record file named name in the temp dir, into buf. */
static const char *rec_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s.rec", h_tmpdir(), name);
	return buf;
}

/* Start an echo server recording to path; its port. */
static int echo_rec(const char *path)
{
	int port;

	if (!h_echo_start(&port, "--record", path, NULL))
		tap_bail("pollbridge-echo --record did not start");
	return port;
}

/* Start a bridge on the world's Redis, named inst, with every route. */
static void start_bridge(struct world *w, struct h_bridge *b, const char *inst)
{
	if (h_bridge_start(b, "--store", w->store, "--instance-id", inst, w->r_echo, w->r_del,
			   w->r_mm, w->r_kr, w->r_kn, w->r_kh, w->r_kc, "--wait-max", "3",
			   "--idle-timeout", "10",
			   "--connect-timeout", "2", NULL))
		tap_bail("pollbridge %s did not start", inst);
}

/* ---- groups ---------------------------------------------------------------- */

/* Create on A, send on B, long-poll on C; a poll waiting on C woken by a
 * send through A; DELETE on B ends it everywhere. */
static void check_cross(struct world *w)
{
	struct bg_result res;
	struct h_resp r;
	char id[64];
	pid_t kid, pp;
	int fd;

	tap_is_int(h_create(&w->a, "del", id, NULL), 201, "cross: create on A");
	tap_is_int(send_seq(&w->b, id, "x1", 0, &r), 200, "cross: send x1 on B");
	tap_is_int(h_json_int(&r, "accepted"), 1, "cross: accepted 1");
	h_resp_free(&r);
	tap_is_int(poll_q(&w->c, id, 0, "&wait=3", &r), 200, "cross: long poll on C");
	tap_is_int(nmsgs(&r), 1, "cross: C got one message");
	tap_is_int(m_seq(msg_at(&r, 0)), 1, "cross: with seq 1");
	tap_is_str(m_data(msg_at(&r, 0)), "x1", "cross: the echo of x1");
	tap_is_str(state_of(&r), "open", "cross: state open");
	h_resp_free(&r);

	/* a poll parked on C, the message sent through A */
	pp = bg_poll(&w->c, id, "after=1&wait=3", &fd);
	kid = later(600, &w->a, id, "x2");
	bg_wait(pp, fd, &res);
	tap_is_int(reap(kid), 0, "cross: send x2 on A answered 200");
	tap_is_int(res.status, 200, "cross: the poll waiting on C answered");
	tap_is_int(res.n, 1, "cross: with one message");
	tap_is_int(res.seq, 2, "cross: seq 2");
	tap_is_str(res.data, "x2", "cross: the echo of x2");
	tap_ok(res.seconds >= 0.4 && res.seconds < 2.5,
	       "cross: woken by the send, not its deadline (%.2f s)", res.seconds);

	/* DELETE on B while a poll waits on C */
	pp = bg_poll(&w->c, id, "after=2&wait=3", &fd);
	kid = later(600, &w->b, id, NULL);
	bg_wait(pp, fd, &res);
	tap_is_int(reap(kid), 0, "cross: DELETE on B answered 204");
	tap_is_int(res.status, 410, "cross: the poll waiting on C answered 410");
	tap_is_str(res.err, "session_closed", "cross: session_closed");
	tap_ok(res.seconds < 2.5, "cross: at the DELETE, not its deadline (%.2f s)", res.seconds);
	tap_is_int(poll_q(&w->a, id, 2, "", &r), 410, "cross: then a poll on A answers 410");
	tap_is_str(h_err(&r), "session_closed", "cross: session_closed on A");
	h_resp_free(&r);
	tap_is_int(poll_q(&w->c, id, 2, "&wait=2", &r), 410, "cross: a poll on C answers 410");
	tap_ok(r.seconds < 1.5, "cross: at once (%.2f s)", r.seconds);
	h_resp_free(&r);
	tap_is_int(send_seq(&w->c, id, "x3", 0, &r), 410, "cross: a send on C answers 410");
	h_resp_free(&r);
	tap_is_int(h_delete(&w->a, id), 410, "cross: DELETE again on A answers 410");
	tap_is_int(wait_prefix(w->rec_del, "close 1000", 1, 3000), 1,
		   "cross: the upstream got close 1000 once");
	tap_is_int(record_text(w->rec_del, "x1") + record_text(w->rec_del, "x2"), 2,
		   "cross: the upstream got x1 and x2 once each");
	tap_is_int(record_text(w->rec_del, "x3"), 0, "cross: and never x3");
}

/* An older poll waiting on older answered at once (empty, open) when a
 * newer poll starts on newer; the newer one gets the next message, sent
 * through via. after is the session's last seq. */
static void check_waiter_pair(struct h_bridge *older, struct h_bridge *newer,
			      struct h_bridge *via, const char *id, unsigned after,
			      const char *text, const char *what)
{
	struct bg_result r1, r2;
	char q[64];
	pid_t p1, p2, kid;
	int fd1, fd2;

	snprintf(q, sizeof(q), "after=%u&wait=3", after);
	p1 = bg_poll(older, id, q, &fd1);
	h_sleep_ms(600);
	p2 = bg_poll(newer, id, q, &fd2);
	kid = later(800, via, id, text);
	bg_wait(p1, fd1, &r1);
	bg_wait(p2, fd2, &r2);
	tap_is_int(reap(kid), 0, "waiter %s: the send answered 200", what);
	tap_is_int(r1.status, 200, "waiter %s: the older poll answered 200", what);
	tap_is_int(r1.n, 0, "waiter %s: empty", what);
	tap_is_str(r1.state, "open", "waiter %s: open", what);
	tap_ok(r1.seconds >= 0.4 && r1.seconds < 1.9,
	       "waiter %s: when the newer poll started, not at its deadline (%.2f s)", what,
	       r1.seconds);
	tap_is_int(r2.status, 200, "waiter %s: the newer poll answered 200", what);
	tap_is_int(r2.n, 1, "waiter %s: with one message", what);
	tap_is_int(r2.seq, after + 1, "waiter %s: the next seq", what);
	tap_is_str(r2.data, text, "waiter %s: the next message", what);
	tap_ok(r2.seconds >= 0.5 && r2.seconds < 2.5, "waiter %s: woken by the send (%.2f s)",
	       what, r2.seconds);
}

/* The single-waiter rule across instances: owner then shadow, shadow then
 * owner, shadow then shadow. */
static void check_single_waiter(struct world *w)
{
	char id[64];

	tap_is_int(h_create(&w->a, "echo", id, NULL), 201, "waiter: create on A");
	check_waiter_pair(&w->a, &w->b, &w->c, id, 0, "w1", "A then B");
	check_waiter_pair(&w->b, &w->a, &w->c, id, 1, "w2", "B then A");
	check_waiter_pair(&w->b, &w->c, &w->a, id, 2, "w3", "B then C");
	tap_is_int(h_delete(&w->b, id), 204, "waiter: DELETE");
}

/* One session of the exchange. */
struct mm_sess {
	char id[64];
	unsigned long long cursor;	/* highest seq received */
	int bad;			/* out-of-order, missing or wrong messages */
};

/* A random bridge of the world. */
static struct h_bridge *any_bridge(struct world *w)
{
	return w->all[rand() % 3];
}

/* Read what session i has (one poll through a random instance, wait
 * seconds) and check it continues the sequence. Counts into *got. */
static void mm_poll(struct world *w, struct mm_sess *s, int i, unsigned wait, long *got,
		    long *errors)
{
	char q[96], want[64];
	struct h_resp r;
	json_t *m;
	size_t k;

	snprintf(q, sizeof(q), "after=%llu&wait=%u&max=100", s->cursor, wait);
	if (h_poll(any_bridge(w), s->id, q, &r) != 200) {
		if ((*errors)++ < 5)
			tap_diag("mm: poll of session %d answered %ld %s", i, r.status, h_err(&r));
		h_resp_free(&r);
		return;
	}
	json_array_foreach(json_object_get(r.json, "messages"), k, m) {
		snprintf(want, sizeof(want), "s%d-m%lld", i, m_seq(m));
		if (m_seq(m) != (long long)s->cursor + 1 || strcmp(m_type(m), "text") ||
		    strcmp(m_data(m), want)) {
			if (s->bad++ < 3)
				tap_diag("mm: session %d after %llu got seq %lld %s '%s'", i,
					 s->cursor, m_seq(m), m_type(m), m_data(m));
			if (m_seq(m) <= (long long)s->cursor)
				continue;
		}
		s->cursor = (unsigned long long)m_seq(m);
		(*got)++;
	}
	if (strcmp(state_of(&r), "open") && s->bad++ < 3)
		tap_diag("mm: session %d state %s", i, state_of(&r));
	h_resp_free(&r);
}

/* What one worker of the exchange counted. */
struct mm_tally {
	long got;		/* echoes received */
	long bad;		/* out of order, missing, duplicated or wrong */
	long errors;		/* polls not answered 200 */
	long send_fail;		/* sends never answered 200 in 5 tries */
	long retries;
	long seq_bad;		/* 200 without accepted 1 or the right send_seq */
	long extra;		/* something after seq 100, or not open */
};

/* One worker of the exchange: sessions first, first+step, ... each get
 * their 100 messages, sent and polled through random instances. */
static void mm_work(struct world *w, struct mm_sess *s, int first, int step,
		    struct mm_tally *t)
{
	int64_t deadline;
	struct h_resp r;
	char text[64];
	int i, k, a, left;

	for (k = 1; k <= N_MSGS; k++) {
		for (i = first; i < N_SESS; i += step) {
			snprintf(text, sizeof(text), "s%d-m%d", i, k);
			for (a = 0; a < 5; a++) {
				long st = send_seq(any_bridge(w), s[i].id, text,
						   (unsigned long long)k, &r);

				if (st == 200) {
					/* a retry may find it accepted already (0) */
					if (h_json_int(&r, "send_seq") != k ||
					    (a == 0 && h_json_int(&r, "accepted") != 1))
						t->seq_bad++;
					h_resp_free(&r);
					break;
				}
				if (t->retries++ < 5)
					tap_diag("mm: send %s answered %ld %s (retrying)", text, st,
						 h_err(&r));
				h_resp_free(&r);
			}
			t->send_fail += a == 5;
		}
		if (k % 10 == 0)
			for (i = first; i < N_SESS; i += step)
				mm_poll(w, &s[i], i, 0, &t->got, &t->errors);
	}
	deadline = h_now_ms() + 20000;
	do {
		left = 0;
		for (i = first; i < N_SESS; i += step) {
			if (s[i].cursor < N_MSGS) {
				mm_poll(w, &s[i], i, 1, &t->got, &t->errors);
				left += s[i].cursor < N_MSGS;
			}
		}
	} while (left && h_now_ms() < deadline);
	for (i = first; i < N_SESS; i += step) {
		t->bad += s[i].bad;
		/* nothing after the 100th */
		if (poll_q(any_bridge(w), s[i].id, N_MSGS, "", &r) != 200 || nmsgs(&r) != 0 ||
		    strcmp(state_of(&r), "open"))
			t->extra++;
		h_resp_free(&r);
	}
}

/* 50 sessions, 100 numbered messages each way, through random instances,
 * by 5 concurrent worker processes. */
static void check_many(struct world *w)
{
	static struct mm_sess s[N_SESS];
	static int rec[N_SESS][N_MSGS + 1];
	struct h_bridge *creators[3] = { &w->a, &w->b, &w->c };
	struct mm_tally sum = { 0 }, t;
	char *file, *p;
	long wrong = 0, dup = 0, missing = 0, lines = 0;
	int64_t t0 = h_now_ms();
	int created = 0, i, k, sidx, midx, deleted = 0, reports = 0;
	int fds[MM_WORKERS];
	pid_t pids[MM_WORKERS];

	for (i = 0; i < N_SESS; i++)
		created += h_create(creators[i % 3], "mm", s[i].id, NULL) == 201;
	if (!tap_is_int(created, N_SESS, "mm: %d sessions created round-robin on A/B/C", N_SESS))
		return;
	for (i = 0; i < MM_WORKERS; i++) {
		int pfd[2];

		if (pipe(pfd))
			tap_bail("pipe failed");
		fflush(stdout);
		pids[i] = fork();
		if (pids[i] < 0)
			tap_bail("fork failed");
		if (pids[i] == 0) {
			close(pfd[0]);
			srand((unsigned)getpid());
			memset(&t, 0, sizeof(t));
			mm_work(w, s, i, MM_WORKERS, &t);
			_exit(write(pfd[1], &t, sizeof(t)) == (ssize_t)sizeof(t) ? 0 : 1);
		}
		close(pfd[1]);
		fds[i] = pfd[0];
	}
	for (i = 0; i < MM_WORKERS; i++) {
		if (read(fds[i], &t, sizeof(t)) == (ssize_t)sizeof(t)) {
			reports++;
			sum.got += t.got;
			sum.bad += t.bad;
			sum.errors += t.errors;
			sum.send_fail += t.send_fail;
			sum.retries += t.retries;
			sum.seq_bad += t.seq_bad;
			sum.extra += t.extra;
		}
		close(fds[i]);
		waitpid(pids[i], NULL, 0);
	}
	tap_is_int(reports, MM_WORKERS, "mm: every worker reported");
	tap_is_int(sum.send_fail, 0, "mm: every send answered 200 (within 5 tries; %ld retries)",
		   sum.retries);
	tap_is_int(sum.seq_bad, 0, "mm: every send answered accepted 1 and its send_seq");
	tap_is_int(sum.got, (long)N_SESS * N_MSGS, "mm: every echo received (%ld)", sum.got);
	tap_is_int(sum.bad, 0, "mm: each in order, seqs 1..100, the right data, no duplicate");
	tap_is_int(sum.errors, 0, "mm: every poll answered 200");
	tap_is_int(sum.extra, 0, "mm: nothing after seq 100 in any session, all open");
	for (i = 0; i < N_SESS; i++)
		deleted += h_delete(any_bridge(w), s[i].id) == 204;
	tap_is_int(deleted, N_SESS, "mm: every session DELETEd (204)");
	tap_diag("mm: %d sessions x %d messages each way took %.1f s", N_SESS, N_MSGS,
		 (double)(h_now_ms() - t0) / 1000.0);

	/* the upstream saw each message exactly once */
	wait_prefix(w->rec_mm, "text ", created * N_MSGS, 5000);
	file = h_read_file(w->rec_mm);
	for (p = file; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p)) {
		int len;

		if (strncmp(p, "text ", 5))
			continue;
		lines++;
		if (sscanf(p, "text %d s%d-m%d", &len, &sidx, &midx) != 3 || sidx < 0 ||
		    sidx >= N_SESS || midx < 1 || midx > N_MSGS) {
			wrong++;
			continue;
		}
		rec[sidx][midx]++;
	}
	free(file);
	for (i = 0; i < N_SESS; i++) {
		for (k = 1; k <= N_MSGS && s[i].id[0]; k++) {
			if (rec[i][k] > 1 && dup++ < 3)
				tap_diag("mm: upstream got s%d-m%d %d times", i, k, rec[i][k]);
			if (rec[i][k] == 0 && missing++ < 3)
				tap_diag("mm: upstream never got s%d-m%d", i, k);
		}
	}
	tap_is_int(lines, (long)created * N_MSGS, "mm: the upstream recorded %d messages",
		   created * N_MSGS);
	tap_is_int(missing, 0, "mm: none missing upstream");
	tap_is_int(dup, 0, "mm: none twice upstream");
	tap_is_int(wrong, 0, "mm: nothing unexpected upstream");
	tap_is_int(wait_prefix(w->rec_mm, "close 1000", created, 5000), created,
		   "mm: every upstream got close 1000 at the DELETE");
}

/* SIGKILL the owner: with redial, buffered messages then "reopen", sends
 * accepted before the kill reach the new upstream; without, 1006. */
static void check_kill(struct world *w)
{
	struct seen s1 = { 0 }, s2 = { 0 };
	char id1[64], id2[64], text[32], batch[1024];
	unsigned long long cur;
	int64_t killed_at;
	struct h_resp r;
	long p_after;
	int i, sent_p = 0, q_missing = 0, q_dup = 0, p_dup = 0, p_missing = 0, in_order = 1;
	int q_seen = 0;

	s1.msgs = json_array();
	s2.msgs = json_array();
	tap_is_int(h_create(&w->a, "kr", id1, NULL), 201, "kill: create (redial) on A");
	tap_is_int(h_create(&w->a, "kn", id2, NULL), 201, "kill: create (no redial) on A");
	for (i = 1; i <= 5; i++) {
		snprintf(text, sizeof(text), "k%d", i);
		send_ok(&w->a, id1, text, (unsigned long long)i, "kill");
		send_ok(&w->a, id2, text, 0, "kill");
	}
	tap_is_int(wait_visible(&w->c, id1, 5, 5000), 5, "kill: 5 echoes buffered (redial)");
	tap_is_int(wait_visible(&w->c, id2, 5, 5000), 5, "kill: 5 echoes buffered (no redial)");

	/* q1..q20 race the kill; p1..p10 are accepted while A is stopped */
	strcpy(batch, "{\"seq\":6,\"messages\":[");
	for (i = 1; i <= 20; i++)
		snprintf(batch + strlen(batch), sizeof(batch) - strlen(batch),
			 "%s{\"data\":\"q%d\"}", i > 1 ? "," : "", i);
	strcat(batch, "]}");
	tap_is_int(send_json(&w->b, id1, batch, &r), 200, "kill: batch q1..q20 accepted on B");
	tap_is_int(h_json_int(&r, "accepted"), 20, "kill: 20 messages");
	h_resp_free(&r);
	kill(w->a.proc->pid, SIGSTOP);
	for (i = 1; i <= 10; i++) {
		snprintf(text, sizeof(text), "p%d", i);
		sent_p += send_ok(&w->b, id1, text, (unsigned long long)(6 + i), "kill");
	}
	tap_is_int(sent_p, 10, "kill: p1..p10 accepted on B while A is stopped");
	tap_is_int(h_stop(w->a.proc, SIGKILL, 3000), 128 + SIGKILL, "kill: A killed (SIGKILL)");
	killed_at = h_now_ms();

	/* redial: the buffered echoes, then reopen, then the pending sends */
	cur = gather(&w->b, id1, 0, "p10", 15000, &s1);
	tap_ok(json_array_size(s1.msgs) >= 5, "kill: B answers after the kill");
	for (i = 0; i < 5; i++) {
		json_t *m = json_array_get(s1.msgs, (size_t)i);

		snprintf(text, sizeof(text), "k%d", i + 1);
		if (!m || m_seq(m) != i + 1 || strcmp(m_data(m), text))
			in_order = 0;
	}
	tap_ok(in_order, "kill: the 5 unacknowledged echoes first, seqs 1..5, nothing lost");
	tap_ok(seqs_contiguous(&s1, 1), "kill: seqs gap-free across the adoption");
	tap_is_int(count_msgs(&s1, "reopen", NULL), 1, "kill: exactly one reopen message");
	tap_ok(s1.reopen_at && s1.reopen_at - killed_at < 12000,
	       "kill: reopen within ~10 s of the kill (%.1f s)",
	       s1.reopen_at ? (double)(s1.reopen_at - killed_at) / 1000.0 : -1.0);
	tap_ok(!s1.closed, "kill: the session stays open");
	/* p1..p10 in order after the reopen */
	p_after = reopen_index(&s1);
	for (i = 1; i <= 10 && p_after >= 0; i++) {
		snprintf(text, sizeof(text), "p%d", i);
		p_after = find_data(&s1, text, (size_t)p_after + 1);
	}
	tap_ok(reopen_index(&s1) >= 0 && p_after >= 0,
	       "kill: the echoes of p1..p10 after the reopen, in order");
	if (!in_order || p_after < 0 || count_msgs(&s1, "reopen", NULL) != 1)
		dump_seen("kill (redial)", &s1);
	for (i = 1; i <= 20; i++) {
		snprintf(text, sizeof(text), "q%d", i);
		q_seen += find_data(&s1, text, 0) >= 0;
	}
	tap_diag("kill: %d of q1..q20 echoed back to the client (not guaranteed)", q_seen);

	/* the adopter's upstream takes new sends */
	tap_ok(send_ok(&w->b, id1, "after-kill", 17, "kill"), "kill: a send on B after the reopen");
	gather(&w->c, id1, cur, "after-kill", 5000, &s1);
	tap_ok(find_data(&s1, "after-kill", 0) >= 0, "kill: echoed by the re-dialled upstream");
	tap_is_int(json_array_size(s1.msgs) ? m_seq(json_array_get(s1.msgs,
								  json_array_size(s1.msgs) - 1))
					    : -1,
		   (long long)cur + 1, "kill: with the next seq");

	/* what the upstream saw */
	wait_text(w->rec_kr, "p10", 3000);
	for (i = 1; i <= 20; i++) {
		int n;

		snprintf(text, sizeof(text), "q%d", i);
		n = record_text(w->rec_kr, text);
		q_missing += n == 0;
		if (n > 1 && q_dup++ < 5)
			tap_diag("kill: the upstream got %s %d times (at least once: allowed)", text, n);
	}
	for (i = 1; i <= 10; i++) {
		int n;

		snprintf(text, sizeof(text), "p%d", i);
		n = record_text(w->rec_kr, text);
		p_missing += n == 0;
		if (n > 1 && p_dup++ < 5)
			tap_diag("kill: the upstream got %s %d times (at least once: allowed)", text, n);
	}
	tap_is_int(q_missing, 0, "kill: q1..q20 (accepted before the kill) reached the upstream");
	tap_is_int(p_missing, 0, "kill: p1..p10 (accepted, never written by A) reached it");
	tap_diag("kill: duplicates upstream: %d of q, %d of p", q_dup, p_dup);
	tap_is_int(record_prefix(w->rec_kr, "open"), 2, "kill: the upstream was dialled again");
	tap_is_int(record_text(w->rec_kr, "after-kill"), 1, "kill: it got after-kill once");

	/* no redial: the buffered echoes, then closed 1006 */
	gather(&w->b, id2, 0, NULL, 15000, &s2);
	tap_is_int(json_array_size(s2.msgs), 5, "kill (no redial): the 5 buffered echoes");
	tap_ok(seqs_contiguous(&s2, 1), "kill (no redial): seqs 1..5");
	tap_is_str(json_array_size(s2.msgs) ? m_data(json_array_get(s2.msgs, 4)) : "", "k5",
		   "kill (no redial): the last is k5");
	tap_ok(s2.closed, "kill (no redial): then state closed");
	tap_is_int(s2.code, 1006, "kill (no redial): close code 1006");
	tap_ok(h_now_ms() - killed_at < 15000, "kill (no redial): within ~10 s (%.1f s)",
	       (double)(h_now_ms() - killed_at) / 1000.0);
	if (!s2.closed || s2.code != 1006)
		dump_seen("kill (no redial)", &s2);
	tap_is_int(poll_q(&w->c, id2, 5, "", &r), 200, "kill (no redial): acknowledging all");
	if (!tap_is_str(state_of(&r), "closed", "kill (no redial): answers the closed batch"))
		dump_logs(w, id2);
	h_resp_free(&r);
	tap_is_int(poll_q(&w->b, id2, 5, "", &r), 410, "kill (no redial): then 410");
	h_resp_free(&r);
	tap_is_int(record_prefix(w->rec_kn, "open"), 1,
		   "kill (no redial): its upstream was never dialled again");
	tap_is_int(h_delete(&w->c, id1), 204, "kill: DELETE the redialled session");
	tap_is_int(wait_prefix(w->rec_kr, "close 1000", 1, 3000), 1,
		   "kill: the re-dialled upstream got close 1000");
	json_decref(s1.msgs);
	json_decref(s2.msgs);
}

/* SIGTERM the owner: exit 0, buffered messages readable elsewhere, then
 * 1012 (no redial) or reopen (redial). */
static void check_drain(struct world *w)
{
	struct seen s3 = { 0 }, s4 = { 0 };
	struct h_bridge d;
	char id3[64], id4[64], text[32];
	unsigned long long cur;
	struct h_resp r;
	int64_t t0;
	long st;
	int i, rc;

	s3.msgs = json_array();
	s4.msgs = json_array();
	start_bridge(w, &d, "D");
	tap_is_int(h_create(&d, "kn", id3, NULL), 201, "drain: create (no redial) on D");
	tap_is_int(h_create(&d, "kr", id4, NULL), 201, "drain: create (redial) on D");
	for (i = 1; i <= 3; i++) {
		snprintf(text, sizeof(text), "d%d", i);
		send_ok(&d, id3, text, 0, "drain");
		send_ok(&d, id4, text, 0, "drain");
	}
	tap_is_int(wait_visible(&w->b, id3, 3, 5000), 3, "drain: 3 echoes buffered (no redial)");
	tap_is_int(wait_visible(&w->b, id4, 3, 5000), 3, "drain: 3 echoes buffered (redial)");
	t0 = h_now_ms();
	rc = h_stop(d.proc, SIGTERM, 8000);
	tap_is_int(rc, 0, "drain: D exits 0 on SIGTERM");

	gather(&w->b, id3, 0, NULL, 12000, &s3);
	tap_is_int(json_array_size(s3.msgs), 3, "drain (no redial): the 3 buffered echoes");
	tap_ok(seqs_contiguous(&s3, 1), "drain (no redial): seqs 1..3");
	tap_ok(find_data(&s3, "d1", 0) == 0 && find_data(&s3, "d3", 0) == 2,
	       "drain (no redial): d1..d3");
	tap_ok(s3.closed, "drain (no redial): then state closed");
	tap_is_int(s3.code, 1012, "drain (no redial): close code 1012");
	tap_ok(h_now_ms() - t0 < 10000, "drain (no redial): within 10 s (%.1f s)",
	       (double)(h_now_ms() - t0) / 1000.0);
	if (!s3.closed || s3.code != 1012)
		dump_seen("drain (no redial)", &s3);

	s4.stop_at_reopen = 1;
	cur = gather(&w->c, id4, 0, NULL, 12000, &s4);
	tap_ok(s4.reopen_at != 0, "drain (redial): a reopen message (%.1f s after SIGTERM)",
	       s4.reopen_at ? (double)(s4.reopen_at - t0) / 1000.0 : -1.0);
	tap_ok(json_array_size(s4.msgs) >= 4 && find_data(&s4, "d1", 0) == 0 &&
	       find_data(&s4, "d3", 0) == 2 &&
	       !strcmp(m_type(json_array_get(s4.msgs, 3)), "reopen"),
	       "drain (redial): d1..d3 still readable, then the reopen");
	tap_ok(seqs_contiguous(&s4, 1), "drain (redial): seqs gap-free");
	tap_ok(!s4.closed, "drain (redial): still open");
	if (!s4.reopen_at)
		dump_seen("drain (redial)", &s4);
	tap_ok(send_ok(&w->b, id4, "after-drain", 0, "drain"),
	       "drain (redial): a send after the reopen");
	gather(&w->b, id4, cur, "after-drain", 5000, &s4);
	tap_ok(find_data(&s4, "after-drain", 0) >= 0, "drain (redial): echoed");
	tap_ok(record_prefix(w->rec_kr, "close 1001") >= 1,
	       "drain: D closed its upstream with 1001");
	tap_is_int(h_delete(&w->c, id4), 204, "drain: DELETE the redialled session");
	/* acknowledging the last message ends it (unless gather() did already) */
	st = poll_q(&w->c, id3, 3, "", &r);
	tap_ok(st == 410 || (st == 200 && !strcmp(state_of(&r), "closed") && nmsgs(&r) == 0),
	       "drain (no redial): acknowledged to the end (%ld %s)", st, state_of(&r));
	h_resp_free(&r);
	tap_is_int(h_delete(&w->c, id3), 410, "drain (no redial): then it has ended (410)");
	json_decref(s3.msgs);
	json_decref(s4.msgs);
}

/* The owner dies and the re-dial of a `redial` route hangs (the upstream
 * accepts TCP but never answers the handshake): while clients keep
 * polling the buffered message, the adopter must still give up after
 * --connect-timeout and close the session with 1006. */
static void check_redial_hangs(struct world *w)
{
	struct h_bridge k;
	struct h_resp r;
	char id[64];
	int64_t killed_at, closed_at = 0;
	long long code = -1;
	long polls = 0, bad = 0, reopen = 0, del;
	int fd, i = 0;

	start_bridge(w, &k, "K");
	tap_is_int(h_create(&k, "kh", id, NULL), 201, "redial hangs: create on K");
	tap_ok(send_ok(&k, id, "h1", 0, "redial hangs"), "redial hangs: h1 accepted");
	tap_is_int(wait_visible(&w->b, id, 1, 5000), 1, "redial hangs: its echo is stored");
	/* K stopped, so it never sees its upstream go; the port then hangs */
	kill(k.proc->pid, SIGSTOP);
	h_stop(w->echo_kh, SIGKILL, 3000);
	fd = h_listen(&w->kh_port);	/* never accepts */
	tap_ok(fd >= 0, "redial hangs: the upstream's port now never answers a handshake");
	tap_is_int(h_stop(k.proc, SIGKILL, 3000), 128 + SIGKILL, "redial hangs: K killed");
	killed_at = h_now_ms();
	while (!closed_at && h_now_ms() - killed_at < 15000) {
		long st = poll_q(w->all[1 + i++ % 2], id, 0, "", &r);

		polls++;
		if (st != 200) {
			bad++;
		} else {
			reopen += nmsgs(&r) > 1;
			if (!strcmp(state_of(&r), "closed")) {
				closed_at = h_now_ms();
				code = close_code(&r);
			}
		}
		h_resp_free(&r);
		h_sleep_ms(100);
	}
	tap_is_int(bad, 0, "redial hangs: %ld polls answered 200", polls);
	tap_is_int(reopen, 0, "redial hangs: no reopen, only h1");
	tap_ok(closed_at && closed_at - killed_at < 12000,
	       "redial hangs: closed within adoption + --connect-timeout 2 s (%s %.1f s)",
	       closed_at ? "after" : "not after",
	       (double)((closed_at ? closed_at : h_now_ms()) - killed_at) / 1000.0);
	tap_is_int(code, 1006, "redial hangs: with close code 1006");
	/* DELETE while the handshake still hangs, then let the port go */
	del = h_delete(&w->b, id);
	tap_ok(del == 204 || del == 410, "redial hangs: DELETE answered (%ld)", del);
	if (fd >= 0)
		close(fd);
}

/* The closer (a forked child): accept every connection on lfd and close
 * it at once, without a byte. Never returns. */
static void close_all(int lfd, void *arg)
{
	int c;

	(void)arg;
	for (;;) {
		c = accept(lfd, NULL, NULL);
		if (c >= 0)
			close(c);
	}
}

/* Fork a child that accepts every connection on 127.0.0.1:port and closes
 * it at once (a port forwarder with no backend). It dies with this
 * process. Returns its pid, or -1. */
static pid_t closer_start(int port)
{
	int fd = h_listen(&port);

	if (fd < 0)
		return -1;
	return h_fork_server(fd, close_all, NULL);
}

/* The owner dies and the upstream of a `redial` route now closes every
 * connection before answering the handshake: the adopter's re-dial fails,
 * the session closes with 1006 after its buffered message, and the
 * adopter keeps running. Nobody polls the session during the re-dial. */
static void check_redial_refused(struct world *w)
{
	struct seen sv = { 0 };
	struct h_bridge k, *via;
	struct h_resp r;
	char id[64];
	int64_t killed_at;
	pid_t closer;

	sv.msgs = json_array();
	start_bridge(w, &k, "L");
	tap_is_int(h_create(&k, "kc", id, NULL), 201, "redial refused: create on L");
	tap_ok(send_ok(&k, id, "c1", 0, "redial refused"), "redial refused: c1 accepted");
	tap_is_int(wait_visible(&w->b, id, 1, 5000), 1, "redial refused: its echo is stored");
	kill(k.proc->pid, SIGSTOP);
	h_stop(w->echo_kc, SIGKILL, 3000);
	closer = closer_start(w->kc_port);
	tap_ok(closer > 0, "redial refused: the upstream's port now closes every connection");
	tap_is_int(h_stop(k.proc, SIGKILL, 3000), 128 + SIGKILL, "redial refused: L killed");
	killed_at = h_now_ms();
	/* adoption (about 6 s) plus --connect-timeout 2 s, without a poll */
	h_sleep_ms(10000);
	tap_ok(h_alive(w->b.proc) && h_alive(w->c.proc),
	       "redial refused: B and C survive the failed re-dial");
	/* carry on with a survivor, if one is left */
	via = h_alive(w->b.proc) ? &w->b : h_alive(w->c.proc) ? &w->c : NULL;
	if (!via)
		goto out;
	gather(via, id, 0, NULL, 4000, &sv);
	tap_ok(sv.closed, "redial refused: the session is closed (%.1f s after the kill)",
	       (double)(h_now_ms() - killed_at) / 1000.0);
	tap_is_int(sv.code, 1006, "redial refused: close code 1006");
	tap_ok(json_array_size(sv.msgs) == 1 && find_data(&sv, "c1", 0) == 0,
	       "redial refused: c1 still readable, no reopen");
	if (!sv.closed || json_array_size(sv.msgs) != 1)
		dump_seen("redial refused", &sv);
	/* the same upstream for a new session: refused, not a crash */
	h_create(via, "kc", NULL, &r);
	tap_is_int(r.status, 502, "redial refused: a create on that route answers 502");
	tap_is_str(h_err(&r), "upstream_unreachable", "redial refused: upstream_unreachable");
	h_resp_free(&r);
	h_sleep_ms(500);
	tap_ok(h_alive(via->proc), "redial refused: the bridge survives that create");
out:
	if (closer > 0) {
		kill(closer, SIGKILL);
		waitpid(closer, NULL, 0);
	}
	json_decref(sv.msgs);
}

/* A long poll waiting on another instance keeps the session alive (docs/API.md:
 * "a waiting poll ... keeps its session alive for as long as it is open"),
 * also when it waits longer than --idle-timeout (2 s; wait 3 s). */
static void check_keepalive_across(struct h_bridge *owner, struct h_bridge *other)
{
	struct h_resp r;
	char id[64];
	int i;

	tap_is_int(h_create(owner, "echo", id, NULL), 201, "keepalive: create on E");
	for (i = 1; i <= 2; i++) {
		long st = poll_q(other, id, 0, "&wait=3", &r);

		tap_ok(st == 200 && !strcmp(state_of(&r), "open") && nmsgs(&r) == 0 &&
		       r.seconds >= 2.5,
		       "keepalive: long poll %d on F: 200, open, empty after its 3 s (got %ld %s%s "
		       "after %.2f s)", i, st, state_of(&r), h_err(&r), r.seconds);
		h_resp_free(&r);
	}
	tap_ok(send_ok(other, id, "alive", 0, "keepalive"), "keepalive: a send is still accepted");
	tap_is_int(h_delete(owner, id), 204, "keepalive: DELETE on E (204: it never ended)");
}

/* Scripts Redis has run so far (INFO commandstats), or -1. */
static long redis_script_calls(int port)
{
	char args[96];

	snprintf(args, sizeof(args), "INFO commandstats | sed -n 's/^cmdstat_evalsha:calls=\\([0-9]*\\).*/\\1/p'");
	return redis_num(port, args);
}

/* Short polls on the owner that find nothing new are answered without
 * Redis for a moment (docs/REDIS.md, "Short polls on the owner"), and
 * nothing goes stale: a message stored is in the owner's next answer, the
 * session stays alive past --idle-timeout (2 s) while only short polls
 * come, and a DELETE elsewhere ends it at once. */
static void check_quiet(struct h_bridge *owner, struct h_bridge *other, int port)
{
	struct h_resp r;
	char id[64];
	long before, after, bad = 0;
	int i, fresh = 0;
	int64_t until;

	tap_is_int(h_create(owner, "echo", id, NULL), 201, "quiet: create on E");
	tap_is_int(poll_q(owner, id, 0, "", &r), 200, "quiet: a first short poll on E");
	h_resp_free(&r);
	before = redis_script_calls(port);
	for (i = 0; i < 50; i++) {
		if (poll_q(owner, id, 0, "", &r) != 200 || nmsgs(&r) != 0 ||
		    strcmp(state_of(&r), "open") != 0)
			bad++;
		h_resp_free(&r);
	}
	after = redis_script_calls(port);
	tap_ok(bad == 0, "quiet: 50 short polls on E: 200, open, empty (%ld not)", bad);
	tap_ok(before >= 0 && after - before < 25,
	       "quiet: they ran fewer than 25 Redis scripts (%ld)", after - before);

	/* Once F can read the echo, E's next short poll has it too. */
	send_ok(other, id, "q1", 0, "quiet");
	tap_is_int(wait_visible(other, id, 1, 3000), 1, "quiet: the echo of q1 is visible on F");
	if (poll_q(owner, id, 0, "", &r) == 200 && nmsgs(&r) == 1)
		fresh = !strcmp(m_data(msg_at(&r, 0)), "q1");
	h_resp_free(&r);
	tap_ok(fresh, "quiet: the next short poll on E has it");

	/* Only short polls on E for 3 s: the session outlives --idle-timeout 2. */
	until = h_now_ms() + 3000;
	bad = 0;
	while (h_now_ms() < until) {
		if (poll_q(owner, id, 1, "", &r) != 200 || strcmp(state_of(&r), "open") != 0)
			bad++;
		h_resp_free(&r);
		h_sleep_ms(100);
	}
	tap_ok(bad == 0, "quiet: short polls on E for 3 s keep it open (%ld not)", bad);
	tap_ok(send_ok(other, id, "q2", 0, "quiet"), "quiet: a send on F is still accepted");

	/* DELETE on F: E answers 410 within a moment. */
	tap_is_int(wait_visible(owner, id, 1, 3000), 1, "quiet: q2 visible on E");
	tap_is_int(poll_q(owner, id, 2, "", &r), 200, "quiet: E's cursor at 2");
	h_resp_free(&r);
	tap_is_int(h_delete(other, id), 204, "quiet: DELETE on F");
	until = h_now_ms() + 1000;
	for (;;) {
		long st = poll_q(owner, id, 2, "", &r);

		h_resp_free(&r);
		if (st == 410 || h_now_ms() > until) {
			tap_is_int(st, 410, "quiet: E answers 410 soon after");
			break;
		}
		h_sleep_ms(20);
	}
}

/* Redis' DBSIZE returns to its baseline once every session has ended and
 * its tombstone expired. */
static void check_dbsize(int echo_port)
{
	struct h_bridge e, f;
	struct h_resp r;
	char store[64], route[96], ida[64], idb[64], idc[64], idd[64], ide[64];
	struct h_proc *rp;
	long base, peak, now = -1;
	int port, i;
	int64_t t0, deadline;
	json_t *got;

	rp = h_redis_start(&port, NULL);
	if (!rp)
		tap_bail("the second redis-server did not start");
	snprintf(store, sizeof(store), "redis://127.0.0.1:%d", port);
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/", echo_port);
	base = redis_num(port, "DBSIZE");
	tap_ok(base >= 0, "dbsize: baseline measured (%ld)", base);
	if (h_bridge_start(&e, "--store", store, "--instance-id", "E", route, "--idle-timeout",
			   "2", "--wait-max", "3", NULL) ||
	    h_bridge_start(&f, "--store", store, "--instance-id", "F", route, "--idle-timeout",
			   "2", "--wait-max", "3", NULL))
		tap_bail("the --idle-timeout 2 bridges did not start");
	check_keepalive_across(&e, &f);
	check_quiet(&e, &f, port);

	/* a: DELETEd through the other instance */
	tap_is_int(h_create(&e, "echo", ida, NULL), 201, "dbsize: create a");
	send_ok(&f, ida, "a1", 1, "dbsize");
	tap_is_int(wait_visible(&f, ida, 1, 3000), 1, "dbsize: a echoed");
	tap_is_int(h_delete(&f, ida), 204, "dbsize: a DELETEd on F");
	/* b: polled through the other instance, then abandoned */
	tap_is_int(h_create(&e, "echo", idb, NULL), 201, "dbsize: create b");
	send_ok(&e, idb, "b1", 0, "dbsize");
	got = json_array();
	tap_is_int(h_collect(&f, idb, 0, 1, 3000, got), 1, "dbsize: b polled on F");
	json_decref(got);
	/* c: the upstream closes, the client acknowledges everything */
	tap_is_int(h_create(&f, "echo", idc, NULL), 201, "dbsize: create c");
	send_ok(&e, idc, "c1", 0, "dbsize");
	send_ok(&e, idc, "/close 4000 bye", 0, "dbsize");
	for (i = 0; i < 50; i++) {
		long st = poll_q(&e, idc, 0, "", &r);
		int closed = st == 200 && !strcmp(state_of(&r), "closed");

		h_resp_free(&r);
		if (closed)
			break;
		h_sleep_ms(50);
	}
	tap_is_int(poll_q(&e, idc, 1, "", &r), 200, "dbsize: c acknowledged to the end");
	tap_is_str(state_of(&r), "closed", "dbsize: c closed");
	h_resp_free(&r);
	/* d: the upstream closes, nothing acknowledged: it idles out */
	tap_is_int(h_create(&f, "echo", idd, NULL), 201, "dbsize: create d");
	send_ok(&f, idd, "d1", 0, "dbsize");
	send_ok(&f, idd, "/close 4001 later", 0, "dbsize");
	/* e: messages both ways left unread: it idles out */
	tap_is_int(h_create(&e, "echo", ide, NULL), 201, "dbsize: create e");
	for (i = 1; i <= 3; i++)
		send_ok(&f, ide, "e-unread", 0, "dbsize");
	tap_is_int(wait_visible(&e, ide, 3, 3000), 3, "dbsize: e has 3 unread echoes");

	peak = redis_num(port, "DBSIZE");
	tap_ok(peak > base, "dbsize: sessions add keys (%ld > %ld)", peak, base);
	t0 = h_now_ms();
	deadline = t0 + SHORT_IDLE * 2 * 1000 + 8000;
	while (h_now_ms() < deadline) {
		now = redis_num(port, "DBSIZE");
		if (now == base)
			break;
		h_sleep_ms(200);
	}
	tap_is_int(now, base, "dbsize: back to the baseline once all ended (%.1f s)",
		   (double)(h_now_ms() - t0) / 1000.0);
	if (now != base)
		redis_dump_keys(port);
	tap_is_int(h_poll(&e, idb, "after=0", &r), 404, "dbsize: b is long gone (404)");
	h_resp_free(&r);
	tap_ok(h_still_serving(&e, "echo") && h_still_serving(&f, "echo"),
	       "dbsize: both bridges still serving");
	tap_is_int(h_stop(e.proc, SIGTERM, 8000), 0, "dbsize: E exits 0");
	tap_is_int(h_stop(f.proc, SIGTERM, 8000), 0, "dbsize: F exits 0");
}

/* The handshake an upstream saw on connection i of the npm ws record file
 * path (a JSON object, new reference), or NULL. */
static json_t *ws_handshake(const char *path, int i)
{
	char *text = h_read_file(path), *line, *save = NULL;
	json_t *found = NULL;

	for (line = text ? strtok_r(text, "\n", &save) : NULL; line && !found;
	     line = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(line, 0, NULL);

		if (j && json_object_get(j, "headers") && i-- == 0)
			found = json_incref(j);
		json_decref(j);
	}
	free(text);
	return found;
}

/* Header name of handshake h, or "". */
static const char *hs_header(json_t *h, const char *name)
{
	const char *v = json_string_value(json_object_get(json_object_get(h, "headers"), name));

	return v ? v : "";
}

/* An adopted session re-dials with the creating client's handshake: the
 * forwarded headers, X-Forwarded-For, Origin and the offered subprotocols
 * (an npm ws upstream records what it receives). */
static void check_handshake_redial(struct world *w)
{
	static const char *const names[] = {
		"cookie", "authorization", "user-agent", "origin", "x-forwarded-for",
		"sec-websocket-protocol",
	};
	const char *hdrs[] = {
		"Cookie: sid=abc; theme=dark", "Authorization: Bearer t0k3n",
		"User-Agent: legacy-browser/1.0", "Origin: http://app.example",
		"X-Forwarded-For: 198.51.100.7", NULL,
	};
	char rec[512], route[128], url[256], id[64];
	const char *body = "{\"route\":\"hs\",\"protocols\":[\"chat\",\"v2\"]}";
	struct h_bridge d, e;
	json_t *h1 = NULL, *h2 = NULL;
	struct seen sv = { 0 };
	struct h_resp r;
	int port, same = 1, rport;
	char store[64];

	if (!h_ws_available()) {
		tap_ok(0, "handshake: node and the npm ws package (contrib/deps.sh test)");
		return;
	}
	rec_path(rec, sizeof(rec), "hs");
	if (!h_ws_start(&port, "record", rec, NULL))
		tap_bail("ws record upstream did not start");
	snprintf(route, sizeof(route), "--route=hs=ws://127.0.0.1:%d/ redial", port);
	/* a Redis of their own: A, B and C know no route hs and would adopt it
	 * only to close it */
	if (!h_redis_start(&rport, NULL))
		tap_bail("redis-server did not start");
	snprintf(store, sizeof(store), "redis://127.0.0.1:%d", rport);
	(void)w;
	if (h_bridge_start(&d, "--store", store, "--instance-id", "D", route, "--wait-max", "3",
			   NULL) ||
	    h_bridge_start(&e, "--store", store, "--instance-id", "E", route, "--wait-max", "3",
			   NULL))
		tap_bail("bridges D and E did not start");
	snprintf(url, sizeof(url), "%s/v1/sessions", d.base);
	h_http(&r, "POST", url, "application/json", body, strlen(body), hdrs);
	tap_is_int(r.status, 201, "handshake: create with headers and two subprotocols on D");
	snprintf(id, sizeof(id), "%s",
		 json_string_value(json_object_get(r.json, "session")) ?
		 json_string_value(json_object_get(r.json, "session")) : "");
	h_resp_free(&r);
	tap_is_int(h_stop(d.proc, SIGKILL, 3000), 128 + SIGKILL, "handshake: D killed (SIGKILL)");
	sv.msgs = json_array();
	sv.stop_at_reopen = 1;
	gather(&e, id, 0, NULL, 15000, &sv);
	if (!tap_ok(reopen_index(&sv) >= 0, "handshake: E adopted the session and re-dialled (reopen)"))
		dump_seen("handshake", &sv);
	/* the upstream writes its record just after its 101: it may lag */
	h1 = ws_handshake(rec, 0);
	for (int64_t t = h_now_ms(); !(h2 = ws_handshake(rec, 1)) && h_now_ms() - t < 3000;)
		h_sleep_ms(50);
	tap_ok(h1 && h2, "handshake: the upstream saw two handshakes");
	for (size_t i = 0; h1 && h2 && i < sizeof(names) / sizeof(names[0]); i++) {
		if (!*hs_header(h1, names[i]) || strcmp(hs_header(h1, names[i]), hs_header(h2, names[i]))) {
			tap_diag("handshake: %s was '%s', after the re-dial '%s'", names[i],
				 hs_header(h1, names[i]), hs_header(h2, names[i]));
			same = 0;
		}
	}
	tap_ok(h1 && h2 && same, "handshake: the re-dial sends the same Cookie, Authorization, User-Agent, "
	       "Origin, X-Forwarded-For and subprotocols");
	tap_ok(h1 && strstr(hs_header(h1, "x-forwarded-for"), "198.51.100.7, 127.0.0.1"),
	       "handshake: X-Forwarded-For carries the client's chain");
	json_decref(h1);
	json_decref(h2);
	json_decref(sv.msgs);
	h_delete(&e, id);
	h_stop(e.proc, SIGTERM, 5000);
}

int main(void)
{
	static struct world w;
	int echo_port;

	/* This program chooses its stores itself. */
	unsetenv("PB_TEST_STORE");
	h_init();
	srand((unsigned)getpid());
	if (!h_redis_start(&w.redis_port, NULL))
		tap_bail("redis-server did not start");
	snprintf(w.store, sizeof(w.store), "redis://127.0.0.1:%d", w.redis_port);
	if (!h_echo_start(&echo_port, NULL))
		tap_bail("pollbridge-echo did not start");
	snprintf(w.r_echo, sizeof(w.r_echo), "--route=echo=ws://127.0.0.1:%d/", echo_port);
	snprintf(w.r_del, sizeof(w.r_del), "--route=del=ws://127.0.0.1:%d/",
		 echo_rec(rec_path(w.rec_del, sizeof(w.rec_del), "del")));
	snprintf(w.r_mm, sizeof(w.r_mm), "--route=mm=ws://127.0.0.1:%d/",
		 echo_rec(rec_path(w.rec_mm, sizeof(w.rec_mm), "mm")));
	snprintf(w.r_kr, sizeof(w.r_kr), "--route=kr=ws://127.0.0.1:%d/ redial",
		 echo_rec(rec_path(w.rec_kr, sizeof(w.rec_kr), "kr")));
	snprintf(w.r_kn, sizeof(w.r_kn), "--route=kn=ws://127.0.0.1:%d/",
		 echo_rec(rec_path(w.rec_kn, sizeof(w.rec_kn), "kn")));
	w.echo_kh = h_echo_start(&w.kh_port, NULL);
	if (!w.echo_kh)
		tap_bail("pollbridge-echo for route kh did not start");
	snprintf(w.r_kh, sizeof(w.r_kh), "--route=kh=ws://127.0.0.1:%d/ redial", w.kh_port);
	w.echo_kc = h_echo_start(&w.kc_port, NULL);
	if (!w.echo_kc)
		tap_bail("pollbridge-echo for route kc did not start");
	snprintf(w.r_kc, sizeof(w.r_kc), "--route=kc=ws://127.0.0.1:%d/ redial", w.kc_port);
	start_bridge(&w, &w.a, "A");
	start_bridge(&w, &w.b, "B");
	start_bridge(&w, &w.c, "C");
	w.all[0] = &w.a;
	w.all[1] = &w.b;
	w.all[2] = &w.c;

	check_cross(&w);
	tap_ok(h_still_serving(&w.c, "echo"), "cross: C still serving");
	check_single_waiter(&w);
	check_many(&w);
	tap_ok(h_still_serving(&w.a, "echo") && h_still_serving(&w.b, "echo") &&
	       h_still_serving(&w.c, "echo"), "mm: A, B and C still serving");
	check_kill(&w);
	tap_ok(h_still_serving(&w.b, "echo") && h_still_serving(&w.c, "echo"),
	       "kill: B and C still serving");
	check_drain(&w);
	tap_ok(h_still_serving(&w.b, "echo") && h_still_serving(&w.c, "echo"),
	       "drain: B and C still serving");
	check_redial_hangs(&w);
	tap_ok(h_still_serving(&w.b, "echo") && h_still_serving(&w.c, "echo"),
	       "redial hangs: B and C still serving");
	check_redial_refused(&w);
	tap_ok(h_still_serving(&w.b, "echo") && h_still_serving(&w.c, "echo"),
	       "redial refused: B and C still serving");
	check_handshake_redial(&w);
	check_dbsize(echo_port);
	return tap_done();
}
