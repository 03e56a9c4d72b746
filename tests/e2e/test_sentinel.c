/*
 * test_sentinel.c: pollbridge on Redis Sentinel (docs/REDIS.md "Redis
 * Sentinel"), with its own deployment on loopback: a primary, a replica
 * and three sentinels (quorum 2, down-after 1 s), each a Debian
 * redis-server. It covers:
 * - --check-config with a redis+sentinel:// URL, and a first connection
 *   through the sentinels: create, send, echo, DELETE;
 * - failover under traffic while 20 sessions send numbered messages
 *   (X-Send-Seq) to an echo upstream and poll their echoes: by SENTINEL
 *   FAILOVER and by kill -9 of the primary (the killed node is started
 *   again 3 s later and becomes a replica), with --store-wait-replicas 1
 *   and, with PB_FAILOVER_FULL=1 (tests/cluster/failover.sh), first
 *   without it. Each run counts the sends acknowledged (200),
 *   the acknowledged ones whose echo never came (lost), the 503s, client
 *   errors (anything but 200 and 503) and how long sends were refused.
 *   The bridge must follow every switch, and with --store-wait-replicas 1
 *   no acknowledged message may be lost and no client see an error.
 *   Without it losses are reported (diagnostics), not judged: Redis
 *   replication is asynchronous, which is what the option is for;
 * - --store-wait-replicas 1 with the replica stopped (SIGSTOP): a send
 *   answers 503 store_unavailable after the 1 s WAIT (the script ran, so
 *   the upstream still gets it), the upstream's answers are held in the
 *   owner's memory, and once the replica is back (SIGCONT) they are stored
 *   and delivered without any reconnection (at least once: an append whose
 *   WAIT failed ran on the primary all the same, so a retry may store its
 *   messages again).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

#define NSESS 20
#define MAXM 3000
#define MASTER "pbm"

/* One node of the deployment. */
struct node {
	int port;
	char dir[512];
	struct h_proc *proc;
};

static struct node nodes[2];            /* the two data nodes */
static int sen_ports[3];
static char store_url[256];
static char route[96];

/* One client session of the traffic. */
struct sess {
	char id[64];
	int dead;                       /* 404/410: the session is gone */
	int k;                          /* the message being sent */
	unsigned long long sseq;        /* its X-Send-Seq */
	long long after;
	unsigned char acked[MAXM + 1], recv[MAXM + 1];
};

/* What one traffic run saw. */
struct stats {
	int acked, lost, n503, errors, dups, gaps;
	int64_t last_ack, max_gap;      /* the longest time without an ack */
};

static struct sess sess[NSESS];
/* kill -9: the node killed (-1: none to restart) and the primary it was */
static int killed_node = -1, killed_primary;

/* Wait up to ms for redis-cli -p port args to print needle. 1 if it did. */
static int wait_cli(int port, const char *args, const char *needle, int ms)
{
	char out[8192];
	int64_t end = h_now_ms() + ms;

	do {
		if (h_redis_cli(port, args, out, sizeof(out)) == 0 && strstr(out, needle))
			return 1;
		h_sleep_ms(100);
	} while (h_now_ms() < end);
	return 0;
}

/* The port of the primary the sentinels name, or -1. */
static int sentinel_primary(void)
{
	char out[256];
	int port;

	if (h_redis_cli(sen_ports[0], "SENTINEL get-master-addr-by-name " MASTER, out, sizeof(out)))
		return -1;
	return sscanf(out, "127.0.0.1\n%d", &port) == 1 ? port : -1;
}

/* The node index of a port. */
static int node_of(int port)
{
	return nodes[0].port == port ? 0 : nodes[1].port == port ? 1 : -1;
}

/* Start data node i (again); replica of port `of` unless of is 0. */
static int node_start(int i, int of)
{
	char ofs[16];
	char *extra[] = { "--replicaof", "127.0.0.1", ofs, NULL };

	snprintf(ofs, sizeof(ofs), "%d", of);
	nodes[i].proc = h_redis_at(nodes[i].port, nodes[i].dir, of ? extra : NULL);
	return nodes[i].proc != NULL;
}

/* Wait until the primary at pport has an in-sync replica and every
 * sentinel knows the replica and the other two sentinels. */
static int deployment_ready(int pport)
{
	char args[64];
	int ok = wait_cli(pport, "WAIT 1 200", "1", 20000);

	for (int i = 0; ok && i < 3; i++) {
		snprintf(args, sizeof(args), "SENTINEL master %s", MASTER);
		ok = wait_cli(sen_ports[i], args, "num-other-sentinels\n2", 20000) &&
		     wait_cli(sen_ports[i], args, "num-slaves\n1", 20000);
	}
	/* the replica the sentinels know must be up (not s_down) */
	for (int i = 0; ok && i < 3; i++) {
		snprintf(args, sizeof(args), "SENTINEL replicas %s", MASTER);
		ok = wait_cli(sen_ports[i], args, "flags\nslave\n", 20000);
	}
	return ok;
}

/* Start the deployment: node 0 primary, node 1 its replica, 3 sentinels. */
static void deployment_start(void)
{
	char path[600], conf[1024];
	int len = 0;

	for (int i = 0; i < 2; i++) {
		nodes[i].port = h_free_port();
		snprintf(nodes[i].dir, sizeof(nodes[i].dir), "%s/node%d", h_tmpdir(), i);
		snprintf(path, sizeof(path), "mkdir -p %s", nodes[i].dir);
		if (system(path))
			tap_bail("mkdir failed");
	}
	if (!node_start(0, 0) || !node_start(1, nodes[0].port))
		tap_bail("cannot start the data nodes");
	for (int i = 0; i < 3; i++) {
		char *argv[] = { "redis-server", path, "--sentinel", NULL };

		sen_ports[i] = h_free_port();
		snprintf(path, sizeof(path), "%s/sentinel%d.conf", h_tmpdir(), i);
		snprintf(conf, sizeof(conf),
			 "port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\n"
			 "sentinel monitor %s 127.0.0.1 %d 2\n"
			 "sentinel down-after-milliseconds %s 1000\n"
			 "sentinel failover-timeout %s 10000\n",
			 sen_ports[i], h_tmpdir(), MASTER, nodes[0].port, MASTER, MASTER);
		h_write_file(path, conf);
		if (!h_spawn(argv, "+monitor master", 10000, NULL, 0))
			tap_bail("cannot start sentinel %d", i);
		len += snprintf(store_url + len, sizeof(store_url) - (size_t)len, "%s127.0.0.1:%d",
				len ? "," : "redis+sentinel://", sen_ports[i]);
	}
	snprintf(store_url + len, sizeof(store_url) - (size_t)len, "/%s", MASTER);
	if (!deployment_ready(nodes[0].port))
		tap_bail("the sentinel deployment did not settle");
}

/* ---- traffic ------------------------------------------------------------ */

/* Count a 503. */
static void note_503(struct stats *st)
{
	st->n503++;
}

/* Count a client error (diagnosed for the first few). */
static void note_error(struct stats *st, const char *what, const struct h_resp *r)
{
	if (st->errors++ < 5)
		tap_diag("  client error: %s answered %ld %.120s", what, r->status,
			 r->body ? r->body : "");
}

/* One send of s's current message. */
static void step_send(struct h_bridge *b, struct sess *s, struct stats *st)
{
	char url[256], hdr[64], text[32];
	const char *headers[] = { hdr, NULL };
	struct h_resp r;

	if (s->k > MAXM)
		return;
	snprintf(hdr, sizeof(hdr), "X-Send-Seq: %llu", s->sseq);
	snprintf(text, sizeof(text), "m%d", s->k);
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages", b->base, s->id);
	h_http(&r, "POST", url, "text/plain", text, strlen(text), headers);
	if (r.status == 200 && h_json_int(&r, "accepted") >= 0) {
		s->acked[s->k] = 1;
		st->acked++;
		if (st->last_ack && h_now_ms() - st->last_ack > st->max_gap)
			st->max_gap = h_now_ms() - st->last_ack;
		st->last_ack = h_now_ms();
		s->k++;
		s->sseq++;
	} else if (r.status == 503) {
		note_503(st);
	} else if (r.status == 409 && h_json_int(&r, "expected") > 0) {
		/* the store forgot acknowledged sends: go on from where it is */
		st->gaps++;
		note_error(st, "send", &r);
		s->sseq = (unsigned long long)h_json_int(&r, "expected");
	} else {
		note_error(st, "send", &r);
		if (r.status == 404 || r.status == 410)
			s->dead = 1;
	}
	h_resp_free(&r);
}

/* One short poll of s. */
static void step_poll(struct h_bridge *b, struct sess *s, struct stats *st)
{
	char q[64];
	struct h_resp r;
	json_t *msgs, *m;
	size_t i;

	snprintf(q, sizeof(q), "after=%lld&max=200", s->after);
	h_poll(b, s->id, q, &r);
	if (r.status == 200) {
		msgs = json_object_get(r.json, "messages");
		json_array_foreach(msgs, i, m) {
			const char *d = json_string_value(json_object_get(m, "data"));
			long long seq = json_integer_value(json_object_get(m, "seq"));
			int k = d && d[0] == 'm' ? atoi(d + 1) : 0;

			if (k >= 1 && k <= MAXM) {
				if (s->recv[k])
					st->dups++;
				s->recv[k] = 1;
			}
			if (seq > s->after)
				s->after = seq;
		}
	} else if (r.status == 503) {
		note_503(st);
	} else {
		note_error(st, "poll", &r);
		if (r.status == 404 || r.status == 410)
			s->dead = 1;
		else if (r.status == 400)
			s->after = 0;   /* the store forgot messages it had handed out */
	}
	h_resp_free(&r);
}

/* Create the sessions on b. */
static int sessions_create(struct h_bridge *b)
{
	memset(sess, 0, sizeof(sess));
	for (int i = 0; i < NSESS; i++) {
		if (h_create(b, "echo", sess[i].id, NULL) != 201)
			return 0;
		sess[i].k = 1;
		sess[i].sseq = 1;
	}
	return 1;
}

/* Traffic on b for ms; fault() runs once at fault_at ms. Then every
 * session polls until it has the echo of everything acknowledged (10 s at
 * most). Fills st. */
static void traffic(struct h_bridge *b, int ms, int fault_at, void (*fault)(void),
		    struct stats *st)
{
	int64_t t0 = h_now_ms(), end;
	int faulted = 0, missing;

	memset(st, 0, sizeof(*st));
	while (h_now_ms() - t0 < ms) {
		if (!faulted && h_now_ms() - t0 >= fault_at) {
			faulted = 1;
			fault();
		}
		for (int i = 0; i < NSESS; i++) {
			/* a killed node comes back 3 s later, as a replica of
			 * the new primary once the sentinels have named one */
			if (killed_node >= 0 && h_now_ms() - t0 >= fault_at + 3000) {
				int p = sentinel_primary();

				if (p > 0 && p != killed_primary) {
					if (!node_start(killed_node, p))
						tap_diag("the killed node did not restart");
					killed_node = -1;
				}
			}
			if (sess[i].dead)
				continue;
			step_send(b, &sess[i], st);
			step_poll(b, &sess[i], st);
		}
	}
	end = h_now_ms() + 5000;
	do {
		missing = 0;
		for (int i = 0; i < NSESS; i++) {
			int want = 0;

			for (int k = 1; k <= MAXM; k++)
				want += sess[i].acked[k] && !sess[i].recv[k];
			if (want && !sess[i].dead) {
				missing += want;
				step_poll(b, &sess[i], st);
			}
		}
		if (missing)
			h_sleep_ms(50);
	} while (missing && h_now_ms() < end);
	for (int i = 0; i < NSESS; i++)
		for (int k = 1; k <= MAXM; k++)
			st->lost += sess[i].acked[k] && !sess[i].recv[k];
}

/* ---- faults ------------------------------------------------------------- */


/* SENTINEL FAILOVER. */
static void fault_failover(void)
{
	char out[256];

	h_redis_cli(sen_ports[0], "SENTINEL FAILOVER " MASTER, out, sizeof(out));
	if (!strstr(out, "OK"))
		tap_diag("SENTINEL FAILOVER answered %s", out);
}

/* kill -9 of the primary. */
static void fault_kill(void)
{
	killed_primary = sentinel_primary();
	killed_node = node_of(killed_primary);
	if (killed_node < 0) {
		tap_diag("no primary to kill");
		return;
	}
	h_stop(nodes[killed_node].proc, SIGKILL, 3000);
}

/* Run one failover under traffic on b and report. */
static void run_case(struct h_bridge *b, const char *name, void (*fault)(void), int durable,
		     int *switches, int ms)
{
	struct stats st;
	int before = sentinel_primary(), after, n;

	tap_ok(sessions_create(b), "%s: %d sessions created", name, NSESS);
	traffic(b, ms, 1500, fault, &st);
	after = sentinel_primary();
	tap_ok(after > 0 && after != before, "%s: the sentinels moved the primary (%d -> %d)",
	       name, before, after);
	n = h_wait_log(b, "the primary of " MASTER " is", *switches + 1, 5000);
	tap_ok(n > *switches, "%s: the bridge followed the switch", name);
	*switches = n;
	tap_diag("%s: %d sends acknowledged, %d lost, %d 503s, %lld ms at most without an "
		 "acknowledged send, %d client errors (%d seq gaps), %d duplicates", name, st.acked,
		 st.lost, st.n503, (long long)st.max_gap, st.errors, st.gaps, st.dups);
	tap_ok(st.acked > 200, "%s: traffic flowed (%d acknowledged)", name, st.acked);
	if (durable) {
		tap_is_int(st.lost, 0, "%s: no acknowledged message lost", name);
		tap_is_int(st.errors, 0, "%s: no client error", name);
	} else {
		tap_ok(1, "%s: measured: %d of %d acknowledged messages lost, %d client errors",
		       name, st.lost, st.acked, st.errors);
	}
	for (int i = 0; i < NSESS; i++)
		if (!sess[i].dead)
			h_delete(b, sess[i].id);
	if (killed_node >= 0) {
		tap_ok(node_start(killed_node, after), "%s: the killed node restarted", name);
		killed_node = -1;
	}
	tap_ok(deployment_ready(after), "%s: the deployment has an in-sync replica again", name);
}

/* WAIT with the replica stopped: 503, then held inbound messages are
 * stored once it is back. */
static void test_replica_stopped(struct h_bridge *b)
{
	struct h_resp r;
	char id[64];
	int p = sentinel_primary(), rep = node_of(p) == 0 ? 1 : 0;
	json_t *got = json_array();
	int64_t t0;
	size_t n;

	tap_is_int(h_create(b, "echo", id, NULL), 201, "replica stopped: session created first");
	kill(nodes[rep].proc->pid, SIGSTOP);
	t0 = h_now_ms();
	h_send_text(b, id, "/burst 5", &r);
	tap_is_int(r.status, 503, "replica stopped: a send answers 503 (%.2f s)", r.seconds);
	tap_ok(r.seconds > 0.8 && r.seconds < 3, "replica stopped: after the WAIT timeout");
	h_resp_free(&r);
	h_sleep_ms(2500 - (int)(h_now_ms() - t0));
	kill(nodes[rep].proc->pid, SIGCONT);
	n = h_collect(b, id, 0, 5, 8000, got);
	/* at least once: an append that ran but failed its WAIT is stored
	 * again by the retry (docs/REDIS.md) */
	tap_ok(n >= 5, "replica back: the upstream's 5 held answers are delivered (%zu messages, "
	       "%lld ms after SIGCONT)", n, (long long)(h_now_ms() - t0 - 2500));
	json_decref(got);
	h_delete(b, id);
}

int main(void)
{
	struct h_bridge b, bw;
	struct h_proc *echo;
	struct h_resp r;
	char id[64], out[256], cmd[600];
	int echo_port, switches = 0;
	const char *fe = getenv("PB_FAILOVER_FULL");
	int full = fe && *fe && strcmp(fe, "0") != 0, ms = full ? 9000 : 6000;

	h_init();
	deployment_start();
	echo = h_echo_start(&echo_port, NULL);
	if (!echo)
		tap_bail("cannot start pollbridge-echo");
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/", echo_port);

	snprintf(cmd, sizeof(cmd), "%s --check-config --store '%s' --store-wait-replicas 1",
		 getenv("PB_BIN") ? getenv("PB_BIN") : "src/pollbridge", store_url);
	{
		FILE *f = popen(cmd, "r");
		size_t n = f ? fread(out, 1, sizeof(out) - 1, f) : 0;

		out[n] = '\0';
		tap_ok(f && pclose(f) == 0 && strstr(out, "config ok"),
		       "--check-config accepts %s", store_url);
	}

	if (h_bridge_start(&b, "--store", store_url, "--instance-id", "S1", route, NULL))
		tap_bail("the bridge did not start on sentinel");
	tap_ok(h_wait_log(&b, "the primary of " MASTER " is 127.0.0.1", 1, 5000) == 1,
	       "the bridge asked the sentinels for the primary");
	switches = 1;
	tap_is_int(h_create(&b, "echo", id, NULL), 201, "create on sentinel");
	tap_is_int(h_send_text(&b, id, "hello", &r), 200, "send");
	h_resp_free(&r);
	{
		json_t *got = json_array();

		tap_is_int((long long)h_collect(&b, id, 0, 1, 5000, got), 1, "echo arrives");
		json_decref(got);
	}
	tap_is_int(h_delete(&b, id), 204, "DELETE");

	if (full) {
		run_case(&b, "SENTINEL FAILOVER", fault_failover, 0, &switches, ms);
		run_case(&b, "kill -9 of the primary", fault_kill, 0, &switches, ms);
	}
	tap_is_int(h_stop(b.proc, SIGTERM, 10000), 0, "bridge exits 0");

	if (h_bridge_start(&bw, "--store", store_url, "--instance-id", "S2",
			   "--store-wait-replicas", "1", route, NULL))
		tap_bail("the bridge did not start with --store-wait-replicas 1");
	switches = h_wait_log(&bw, "the primary of " MASTER " is", 1, 5000);
	run_case(&bw, "wait-replicas 1, SENTINEL FAILOVER", fault_failover, 1, &switches, ms);
	run_case(&bw, "wait-replicas 1, kill -9 of the primary", fault_kill, 1, &switches, ms);
	test_replica_stopped(&bw);
	tap_is_int(h_stop(bw.proc, SIGTERM, 10000), 0, "bridge with WAIT exits 0");
	return tap_done();
}
