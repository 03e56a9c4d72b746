/*
 * test_cluster.c: pollbridge on Redis Cluster under traffic (docs/REDIS.md
 * "Redis Cluster"). It runs under tests/cluster/with_cluster.sh, which
 * starts 3 primaries and 3 replicas and passes PB_TEST_STORE (the
 * redis+cluster:// URL), PB_CLUSTER_PRIMARIES / PB_CLUSTER_REPLICAS (ports),
 * PB_CLUSTER_DIR and PB_CLUSTER_START (how to start a node again); without
 * them it skips. Every case drives 100 sessions through an echo upstream:
 * each sends numbered messages "cI.mK" (with X-Send-Seq, retried after a
 * 503) and short-polls their echoes, one request at a time round-robin.
 * The counts of each case: sends acknowledged (200), echoes received, lost
 * (acknowledged, never echoed), duplicated, reordered (an echo older than
 * one already received), 503s, client errors (anything else), and the
 * longest time one session went without an acknowledged send (the
 * failover time as a client sees it). The cases (PB_CLUSTER_CASES, a
 * space-separated list; default "kill-wait instances", the make check
 * set; tests/cluster/cluster_failover.sh runs each):
 *   kill, kill-wait        kill -9 of a primary (started again 3 s later:
 *                          it rejoins as a replica), without and with
 *                          --store-wait-replicas 1;
 *   failover, failover-wait  CLUSTER FAILOVER on a primary's replica,
 *                          without and with it;
 *   reshard                redis-cli --cluster reshard of 8192 slots from
 *                          the other primaries to one while the traffic
 *                          runs;
 *   addnode                a new node joins (--cluster add-node) and gets
 *                          4096 slots (--cluster reshard), under traffic;
 *   instances              two bridges, the sessions' clients spread over
 *                          both (routes with redial), one killed with
 *                          SIGKILL: its clients move to the other, which
 *                          adopts its sessions.
 * Judged: with --store-wait-replicas 1, CLUSTER FAILOVER and resharding,
 * no acknowledged message lost and no client error; everywhere, no
 * reordered echo, and no duplicate but where docs/REDIS.md says at least
 * once: a kill -9 of a primary (an upstream message's append that ran,
 * but whose reply was lost, is retried) and of an instance (an upstream
 * re-dialled gets the sends not yet confirmed written again); the bridge
 * never dies. Without
 * --store-wait-replicas a kill -9 may lose what the replica had not yet
 * received (asynchronous replication): measured and printed, not judged.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

#define NSESS 100
#define MAXM 1000
#define MAXNODES 16

/* One node of the cluster, as CLUSTER NODES shows it. */
struct cnode {
	char id[48];
	int port;
	int primary;            /* flags hold "master" */
	int failed;             /* flags hold "fail" (or "fail?") */
	char master[48];        /* a replica's primary, else "-" */
	int nslots;             /* slots it serves (primaries) */
};

/* One client session. */
struct sess {
	char id[64];
	int b;                  /* the bridge its client talks to */
	int dead;
	int k;                  /* the message being sent */
	unsigned long long sseq;
	long long after;
	int last_k;             /* the newest echo received */
	int64_t last_ack;
	unsigned char acked[MAXM + 1], recv[MAXM + 1];
};

/* What a run saw. */
struct stats {
	int sent, acked, received, lost, dups, reordered, n503, errors, switches, reopens;
	int64_t max_gap;        /* the longest a session went without an ack */
	int64_t first_503, last_503;
};

static struct sess sess[NSESS];
static int all_ports[MAXNODES], nports;
static char route[128];
static struct h_bridge *bridges[2];
static int nbridges;
/* a node killed, to start again 3 s after the kill (0: none) */
static int killed_port;
static int64_t killed_at;

/* ---- the cluster ---------------------------------------------------------- */

/* The nodes as a live node sees them; their number (0 if none answered). */
static int cl_nodes(struct cnode *nodes)
{
	char out[8192], *line, *save = NULL;
	int n = 0;

	for (int i = 0; i < nports; i++) {
		if (all_ports[i] == killed_port)
			continue;
		if (h_redis_cli(all_ports[i], "CLUSTER NODES", out, sizeof(out)) || !strstr(out, "master"))
			continue;
		for (line = strtok_r(out, "\n", &save); line && n < MAXNODES;
		     line = strtok_r(NULL, "\n", &save)) {
			char addr[64], flags[128], master[48];
			struct cnode *c = &nodes[n];
			char *p, *colon;
			int words = 0;

			if (sscanf(line, "%47s %63s %127s %47s", c->id, addr, flags, master) != 4)
				continue;
			colon = strchr(addr, ':');
			c->port = colon ? atoi(colon + 1) : 0;
			c->primary = strstr(flags, "master") != NULL;
			c->failed = strstr(flags, "fail") != NULL;
			snprintf(c->master, sizeof(c->master), "%s", master);
			c->nslots = 0;
			/* words 9.. are slots: "a-b" or "a" ([..] are migrations) */
			for (p = strtok(line, " "); p; p = strtok(NULL, " ")) {
				int a, b2;

				if (++words < 9 || *p == '[')
					continue;
				if (sscanf(p, "%d-%d", &a, &b2) == 2)
					c->nslots += b2 - a + 1;
				else
					c->nslots++;
			}
			n++;
		}
		return n;
	}
	return 0;
}

/* The port of a serving primary with slots (the first one listed that has
 * a replica), and that replica's port; 0 if none. */
static int pick_primary(int *replica)
{
	struct cnode nodes[MAXNODES];
	int n = cl_nodes(nodes);

	for (int i = 0; i < n; i++) {
		if (!nodes[i].primary || nodes[i].failed || !nodes[i].nslots)
			continue;
		for (int j = 0; j < n; j++)
			if (!nodes[j].primary && !nodes[j].failed &&
			    !strcmp(nodes[j].master, nodes[i].id)) {
				*replica = nodes[j].port;
				return nodes[i].port;
			}
	}
	return 0;
}

/* 1 once (within ms) every node agrees on a full slot map, none is
 * failed, and every primary with slots has an in-sync replica. */
static int cl_healthy(int ms)
{
	int64_t end = h_now_ms() + ms;
	char out[16384];

	do {
		struct cnode nodes[MAXNODES];
		int n = cl_nodes(nodes), ok = n == nports;

		for (int i = 0; ok && i < n; i++) {
			ok = !nodes[i].failed &&
			     !h_redis_cli(nodes[i].port, "CLUSTER INFO", out, sizeof(out)) &&
			     strstr(out, "cluster_state:ok");
			if (ok && nodes[i].primary && nodes[i].nslots)
				ok = !h_redis_cli(nodes[i].port, "WAIT 1 100", out, sizeof(out)) &&
				     atoi(out) >= 1;
		}
		if (ok && n) {
			char args[64];

			snprintf(args, sizeof(args), "--cluster check 127.0.0.1:%d", nodes[0].port);
			ok = !h_redis_cli(nodes[0].port, args, out, sizeof(out)) &&
			     strstr(out, "[OK] All nodes agree") && strstr(out, "[OK] All 16384") &&
			     !strstr(out, "[WARNING]") && !strstr(out, "[ERR]");
		}
		if (ok)
			return 1;
		h_sleep_ms(200);
	} while (h_now_ms() < end);
	return 0;
}

/* The pid of the node on port (INFO server), or -1. */
static pid_t node_pid(int port)
{
	char out[8192], *p;

	if (h_redis_cli(port, "INFO server", out, sizeof(out)))
		return -1;
	p = strstr(out, "process_id:");
	return p ? (pid_t)atoi(p + 11) : -1;
}

/* Start the node of port again (PB_CLUSTER_START), as our child. */
static int node_restart(int port)
{
	char ps[16], path[512];
	char *argv[] = { "sh", path, ps, NULL };
	char out[64];

	snprintf(path, sizeof(path), "%s/start.sh", getenv("PB_CLUSTER_DIR"));
	snprintf(ps, sizeof(ps), "%d", port);
	if (!h_spawn(argv, NULL, 0, NULL, 0))
		return 0;
	for (int i = 0; i < 100; i++) {
		if (!h_redis_cli(port, "PING", out, sizeof(out)) && strstr(out, "PONG"))
			return 1;
		h_sleep_ms(50);
	}
	return 0;
}

/* ---- traffic -------------------------------------------------------------- */

/* A live bridge other than b (for a client whose bridge died), or -1. */
static int other_bridge(int b)
{
	for (int i = 0; i < nbridges; i++)
		if (i != b && h_alive(bridges[i]->proc))
			return i;
	return -1;
}

/* Count a failed request; a refused connection to a dead bridge moves the
 * client to another one (a switch, not an error). */
static void note_failure(struct sess *s, struct stats *st, const char *what,
			 const struct h_resp *r)
{
	if (r->status == 503) {
		st->n503++;
		if (!st->first_503)
			st->first_503 = h_now_ms();
		st->last_503 = h_now_ms();
		return;
	}
	if (r->status == 0 && !h_alive(bridges[s->b]->proc) && other_bridge(s->b) >= 0) {
		s->b = other_bridge(s->b);
		st->switches++;
		return;
	}
	if (st->errors++ < 8)
		tap_diag("  client error: %s of %s answered %ld %.160s", what, s->id, r->status,
			 r->body ? r->body : "");
	if (r->status == 404 || r->status == 410)
		s->dead = 1;
}

/* One send of s's current message. */
static void step_send(int i, struct stats *st)
{
	struct sess *s = &sess[i];
	char url[256], hdr[64], text[32];
	const char *headers[] = { hdr, NULL };
	struct h_resp r;

	if (s->k > MAXM)
		return;
	snprintf(hdr, sizeof(hdr), "X-Send-Seq: %llu", s->sseq);
	snprintf(text, sizeof(text), "c%d.m%d", i, s->k);
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages", bridges[s->b]->base, s->id);
	st->sent++;
	h_http(&r, "POST", url, "text/plain", text, strlen(text), headers);
	if (r.status == 200 && h_json_int(&r, "accepted") >= 0) {
		int64_t now = h_now_ms();

		s->acked[s->k] = 1;
		st->acked++;
		if (s->last_ack && now - s->last_ack > st->max_gap)
			st->max_gap = now - s->last_ack;
		s->last_ack = now;
		s->k++;
		s->sseq++;
	} else if (r.status == 409 && h_json_int(&r, "expected") > 0) {
		/* the store forgot acknowledged sends */
		note_failure(s, st, "send", &r);
		s->sseq = (unsigned long long)h_json_int(&r, "expected");
	} else {
		note_failure(s, st, "send", &r);
	}
	h_resp_free(&r);
}

/* One short poll of s. */
static void step_poll(int i, struct stats *st)
{
	struct sess *s = &sess[i];
	char q[64];
	struct h_resp r;
	json_t *msgs, *m;
	size_t j;

	snprintf(q, sizeof(q), "after=%lld&max=200", s->after);
	h_poll(bridges[s->b], s->id, q, &r);
	if (r.status == 200) {
		msgs = json_object_get(r.json, "messages");
		json_array_foreach(msgs, j, m) {
			const char *d = json_string_value(json_object_get(m, "data"));
			const char *type = json_string_value(json_object_get(m, "type"));
			long long seq = json_integer_value(json_object_get(m, "seq"));
			int c = -1, k = 0;

			if (type && !strcmp(type, "reopen"))
				st->reopens++;
			else if (!d || sscanf(d, "c%d.m%d", &c, &k) != 2 || c != i || k < 1 ||
				 k > MAXM)
				note_failure(s, st, "poll (a foreign message)", &r);
			else {
				st->received++;
				if (s->recv[k])
					st->dups++;
				else if (k < s->last_k)
					st->reordered++;
				s->recv[k] = 1;
				if (k > s->last_k)
					s->last_k = k;
			}
			if (seq > s->after)
				s->after = seq;
		}
	} else {
		note_failure(s, st, "poll", &r);
		if (r.status == 400)
			s->after = 0;
	}
	h_resp_free(&r);
}

/* Create the sessions, spread over the bridges. 1 if all were created. */
static int sessions_create(void)
{
	memset(sess, 0, sizeof(sess));
	for (int i = 0; i < NSESS; i++) {
		sess[i].b = i % nbridges;
		sess[i].k = 1;
		sess[i].sseq = 1;
		if (h_create(bridges[sess[i].b], "echo", sess[i].id, NULL) != 201)
			return 0;
	}
	return 1;
}

/* Traffic for at least ms, and on while done() says 0 (if given);
 * fault() runs once at fault_at ms. Then every session polls until it
 * has the echo of everything acknowledged (15 s at most). */
static void traffic(int ms, int fault_at, void (*fault)(void), int (*done)(void),
		    struct stats *st)
{
	int64_t t0 = h_now_ms(), end;
	int faulted = 0, missing;

	memset(st, 0, sizeof(*st));
	for (int i = 0; i < NSESS; i++)
		sess[i].last_ack = t0;
	while (h_now_ms() - t0 < ms || (done && !done())) {
		if (!faulted && h_now_ms() - t0 >= fault_at) {
			faulted = 1;
			fault();
		}
		for (int i = 0; i < NSESS; i++) {
			if (killed_port && h_now_ms() - killed_at >= 3000) {
				if (!node_restart(killed_port))
					tap_diag("the killed node did not start again");
				killed_port = 0;
			}
			if (sess[i].dead)
				continue;
			step_send(i, st);
			step_poll(i, st);
		}
		if (h_now_ms() - t0 > 120000) {
			tap_diag("traffic: still not done after 120 s");
			break;
		}
	}
	end = h_now_ms() + 15000;
	do {
		missing = 0;
		for (int i = 0; i < NSESS; i++) {
			int want = 0;

			for (int k = 1; k <= MAXM; k++)
				want += sess[i].acked[k] && !sess[i].recv[k];
			if (want && !sess[i].dead) {
				missing += want;
				step_poll(i, st);
			}
		}
		if (missing)
			h_sleep_ms(50);
	} while (missing && h_now_ms() < end);
	for (int i = 0; i < NSESS; i++)
		for (int k = 1; k <= MAXM; k++)
			st->lost += sess[i].acked[k] && !sess[i].recv[k];
}

/* ---- faults --------------------------------------------------------------- */

static int fault_port, fault_replica;   /* chosen before the run */
static struct h_proc *reshard_proc;

/* kill -9 of the chosen primary; started again 3 s later. */
static void fault_kill(void)
{
	pid_t pid = node_pid(fault_port);

	if (pid <= 0 || kill(pid, SIGKILL)) {
		tap_diag("cannot kill the primary on %d", fault_port);
		return;
	}
	killed_port = fault_port;
	killed_at = h_now_ms();
}

/* CLUSTER FAILOVER on the chosen primary's replica. */
static void fault_failover(void)
{
	char out[256];

	h_redis_cli(fault_replica, "CLUSTER FAILOVER", out, sizeof(out));
	if (!strstr(out, "OK"))
		tap_diag("CLUSTER FAILOVER answered %s", out);
}

/* redis-cli --cluster reshard of 8192 slots to the chosen primary, in the
 * background. */
static void fault_reshard(void)
{
	char addr[32], to[48];
	char *argv[] = { "redis-cli", "--cluster", "reshard", addr, "--cluster-from", "all",
			 "--cluster-to", to, "--cluster-slots", "8192", "--cluster-yes", NULL };
	char out[128];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", fault_port);
	h_redis_cli(fault_port, "CLUSTER MYID", out, sizeof(out));
	snprintf(to, sizeof(to), "%.40s", out);
	reshard_proc = h_spawn(argv, NULL, 0, NULL, 0);
	if (!reshard_proc)
		tap_diag("cannot start redis-cli --cluster reshard");
}

/* A new, empty node joins (redis-cli --cluster add-node) and gets 4096
 * slots from the others (--cluster reshard), in the background: a
 * primary the bridge did not know when it started. */
static void fault_addnode(void)
{
	char cmd[2048], path[600];
	int port = h_free_port(), cport = h_free_port();
	char *argv[] = { "sh", "-c", cmd, NULL };

	snprintf(path, sizeof(path), "mkdir -p %s/%d && echo %d >%s/%d/cport",
		 getenv("PB_CLUSTER_DIR"), port, cport, getenv("PB_CLUSTER_DIR"), port);
	if (system(path) || !node_restart(port)) {
		tap_diag("cannot start a new node on %d", port);
		return;
	}
	all_ports[nports++] = port;
	fault_port = port;
	snprintf(cmd, sizeof(cmd),
		 "redis-cli --cluster add-node 127.0.0.1:%d 127.0.0.1:%d || exit 1; "
		 "i=0; until redis-cli --cluster check 127.0.0.1:%d | grep -q 'All nodes agree' && "
		 "redis-cli -p %d CLUSTER INFO | grep -q cluster_state:ok; do "
		 "i=$((i + 1)); [ $i -lt 200 ] || exit 1; sleep 0.1; done; "
		 "redis-cli --cluster reshard 127.0.0.1:%d --cluster-from all --cluster-to "
		 "$(redis-cli -p %d CLUSTER MYID) --cluster-slots 4096 --cluster-yes",
		 port, all_ports[0] == killed_port ? all_ports[1] : all_ports[0], port, port, port,
		 port);
	reshard_proc = h_spawn(argv, NULL, 0, NULL, 0);
	if (!reshard_proc)
		tap_diag("cannot start add-node and reshard");
}

static int reshard_done(void)
{
	return !reshard_proc || !h_alive(reshard_proc);
}

/* kill -9 of the first bridge. */
static void fault_bridge(void)
{
	h_stop(bridges[0]->proc, SIGKILL, 3000);
}

/* ---- cases ---------------------------------------------------------------- */

/* Print the figures of a run. */
static void report(const char *name, const struct stats *st, int64_t ms)
{
	tap_diag("%s: %d sends, %d acknowledged, %d echoes received, %d lost, %d duplicated, "
		 "%d reordered, %d 503s (over %.1f s), %d client errors, %d client switches, "
		 "%d reopens, failover time %.1f s (the longest a session went without an "
		 "acknowledged send), %.1f s of traffic",
		 name, st->sent, st->acked, st->received, st->lost, st->dups, st->reordered,
		 st->n503, st->first_503 ? (double)(st->last_503 - st->first_503) / 1000.0 : 0.0,
		 st->errors, st->switches, st->reopens, (double)st->max_gap / 1000.0,
		 (double)ms / 1000.0);
}

/* One failover case on a fresh bridge: wait says --store-wait-replicas 1. */
static void case_primary(const char *name, void (*fault)(void), int wait)
{
	struct h_bridge b;
	struct stats st;
	int64_t t0;
	int before_replica;

	tap_ok(cl_healthy(30000), "%s: the cluster is healthy first", name);
	fault_port = pick_primary(&fault_replica);
	before_replica = fault_replica;
	tap_ok(fault_port > 0, "%s: primary %d with replica %d", name, fault_port, fault_replica);
	if (h_bridge_start(&b, "--instance-id", "C1", route, "--store-wait-replicas",
			   wait ? "1" : "0", NULL))
		tap_bail("%s: the bridge did not start", name);
	bridges[0] = &b;
	nbridges = 1;
	tap_ok(sessions_create(), "%s: %d sessions created", name, NSESS);
	t0 = h_now_ms();
	traffic(8000, 2000, fault, NULL, &st);
	report(name, &st, h_now_ms() - t0);
	{
		int r2 = 0, p2 = pick_primary(&r2);
		struct cnode nodes[MAXNODES];
		int n = cl_nodes(nodes), promoted = 0;

		(void)p2;
		for (int i = 0; i < n; i++)
			promoted |= nodes[i].port == before_replica && nodes[i].primary;
		tap_ok(promoted, "%s: the replica %d is a primary now", name, before_replica);
	}
	tap_ok(st.acked > 3 * NSESS, "%s: traffic flowed (%d acknowledged)", name, st.acked);
	tap_ok(h_alive(b.proc), "%s: the bridge is alive", name);
	/* an upstream message whose append ran on the killed primary, reached
	 * the replica, but whose reply was lost is appended again by the
	 * owner's retry: at least once (docs/REDIS.md), a copy per session
	 * at most */
	if (fault == fault_kill)
		tap_ok(st.dups <= NSESS, "%s: duplicated echoes only from retried appends (%d)",
		       name, st.dups);
	else
		tap_is_int(st.dups, 0, "%s: no duplicated echo", name);
	tap_is_int(st.reordered, 0, "%s: no reordered echo", name);
	if (wait || fault == fault_failover) {
		tap_is_int(st.lost, 0, "%s: no acknowledged message lost", name);
		tap_is_int(st.errors, 0, "%s: no client error", name);
	} else {
		tap_ok(1, "%s: measured: %d of %d acknowledged messages lost, %d client errors",
		       name, st.lost, st.acked, st.errors);
	}
	for (int i = 0; i < NSESS; i++)
		if (!sess[i].dead)
			h_delete(&b, sess[i].id);
	tap_is_int(h_stop(b.proc, SIGTERM, 10000), 0, "%s: the bridge exits 0", name);
	if (killed_port) {
		node_restart(killed_port);
		killed_port = 0;
	}
}

/* Resharding half the slots to one primary under traffic (addnode: a
 * quarter of them to a new primary). */
static void case_reshard(int addnode)
{
	const char *name = addnode ? "new primary" : "reshard";
	struct h_bridge b;
	struct stats st;
	struct cnode nodes[MAXNODES];
	int64_t t0;
	int n, slots = 0;

	tap_ok(cl_healthy(30000), "%s: the cluster is healthy first", name);
	fault_port = pick_primary(&fault_replica);
	if (h_bridge_start(&b, "--instance-id", "C1", route, NULL))
		tap_bail("%s: the bridge did not start", name);
	bridges[0] = &b;
	nbridges = 1;
	tap_ok(sessions_create(), "%s: %d sessions created", name, NSESS);
	t0 = h_now_ms();
	traffic(3000, 1000, addnode ? fault_addnode : fault_reshard, reshard_done, &st);
	report(name, &st, h_now_ms() - t0);
	tap_is_int(reshard_proc ? h_wait_exit(reshard_proc, 1000) : -1, 0,
		   "%s: redis-cli --cluster reshard succeeded (%.1f s of traffic)", name,
		   (double)(h_now_ms() - t0) / 1000.0);
	n = cl_nodes(nodes);
	for (int i = 0; i < n; i++)
		if (nodes[i].port == fault_port)
			slots = nodes[i].nslots;
	tap_ok(slots >= (addnode ? 4096 : 5461 + 8192 - 2), "%s: the primary %d serves %d slots now",
	       name, fault_port, slots);
	tap_ok(st.acked > 3 * NSESS, "%s: traffic flowed (%d acknowledged)", name, st.acked);
	tap_ok(h_alive(b.proc), "%s: the bridge is alive", name);
	tap_is_int(st.lost, 0, "%s: no acknowledged message lost", name);
	tap_is_int(st.dups, 0, "%s: no duplicated echo", name);
	tap_is_int(st.reordered, 0, "%s: no reordered echo", name);
	tap_is_int(st.errors, 0, "%s: no client error", name);
	tap_is_int(st.n503, 0, "%s: no 503", name);
	for (int i = 0; i < NSESS; i++)
		if (!sess[i].dead)
			h_delete(&b, sess[i].id);
	tap_is_int(h_stop(b.proc, SIGTERM, 10000), 0, "%s: the bridge exits 0", name);
}

/* Two bridges, clients spread over both, the first killed. */
static void case_instances(void)
{
	const char *name = "instances";
	struct h_bridge a, b;
	struct stats st;
	int64_t t0;

	tap_ok(cl_healthy(30000), "%s: the cluster is healthy first", name);
	if (h_bridge_start(&a, "--instance-id", "A", route, NULL) ||
	    h_bridge_start(&b, "--instance-id", "B", route, NULL))
		tap_bail("%s: the bridges did not start", name);
	bridges[0] = &a;
	bridges[1] = &b;
	nbridges = 2;
	tap_ok(sessions_create(), "%s: %d sessions created on A and B", name, NSESS);
	t0 = h_now_ms();
	traffic(12000, 2000, fault_bridge, NULL, &st);
	report(name, &st, h_now_ms() - t0);
	tap_ok(!h_alive(a.proc) && h_alive(b.proc), "%s: A was killed, B is alive", name);
	tap_ok(st.acked > 3 * NSESS, "%s: traffic flowed (%d acknowledged)", name, st.acked);
	tap_is_int(st.reopens, NSESS / 2, "%s: every session A owned got one reopen on B", name);
	/* at the kill, an echo A had not yet stored is lost with A's upstream
	 * connection (the upstream got the message); a send A accepted but
	 * had not confirmed written goes to the new upstream again */
	tap_ok(st.lost <= NSESS / 2, "%s: at most one echo lost per session A owned (%d)", name,
	       st.lost);
	tap_ok(st.dups <= NSESS, "%s: duplicates only at the adoption (%d)", name, st.dups);
	tap_is_int(st.reordered, 0, "%s: no reordered echo", name);
	tap_is_int(st.errors, 0, "%s: no client error", name);
	for (int i = 0; i < NSESS; i++)
		if (!sess[i].dead)
			h_delete(&b, sess[i].id);
	tap_is_int(h_stop(b.proc, SIGTERM, 10000), 0, "%s: B exits 0", name);
}

int main(void)
{
	const char *cases = getenv("PB_CLUSTER_CASES");
	const char *prim = getenv("PB_CLUSTER_PRIMARIES"), *rep = getenv("PB_CLUSTER_REPLICAS");
	char list[512], *w, *save = NULL;
	int echo_port;

	const char *store = getenv("PB_TEST_STORE");

	if (!prim || !rep || !*rep || !getenv("PB_CLUSTER_DIR") || !store ||
	    strncmp(store, "redis+cluster://", 16) != 0) {
		printf("1..0 # SKIP not under tests/cluster/with_cluster.sh\n");
		return 0;
	}
	h_init();
	snprintf(list, sizeof(list), "%s %s", prim, rep);
	for (w = strtok_r(list, " ", &save); w && nports < MAXNODES; w = strtok_r(NULL, " ", &save))
		all_ports[nports++] = atoi(w);
	if (!h_echo_start(&echo_port, NULL))
		tap_bail("cannot start pollbridge-echo");
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/ redial", echo_port);

	snprintf(list, sizeof(list), "%s", cases && *cases ? cases : "kill-wait instances");
	save = NULL;
	for (w = strtok_r(list, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		if (!strcmp(w, "kill"))
			case_primary("kill -9 of a primary", fault_kill, 0);
		else if (!strcmp(w, "kill-wait"))
			case_primary("wait-replicas 1, kill -9 of a primary", fault_kill, 1);
		else if (!strcmp(w, "failover"))
			case_primary("CLUSTER FAILOVER", fault_failover, 0);
		else if (!strcmp(w, "failover-wait"))
			case_primary("wait-replicas 1, CLUSTER FAILOVER", fault_failover, 1);
		else if (!strcmp(w, "reshard"))
			case_reshard(0);
		else if (!strcmp(w, "addnode"))
			case_reshard(1);
		else if (!strcmp(w, "instances"))
			case_instances();
		else
			tap_bail("unknown case %s in PB_CLUSTER_CASES", w);
	}
	return tap_done();
}
