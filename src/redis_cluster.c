/*
 * redis_cluster.c: Redis Cluster for the Redis client (see
 * redis_cluster.h): the key slot (CRC16), parsing of CLUSTER SLOTS and of
 * MOVED / ASK errors, and the cluster client: its node table and slot map,
 * the routing, redirection and retry of commands, and the home of every
 * sharded subscription.
 *
 * Nodes live in a fixed table (index < CL_NODES, so a slot's owner fits a
 * byte). A node is a single-node client of redis.c; the map refers to
 * nodes by index. Nodes leave the table only from the tick (pruning), or
 * at shutdown, never from inside one of their own callbacks.
 *
 * Each command is copied (struct rcl_cmd) so that it can be sent again
 * after a redirection or a wait. A command that cannot be sent now (its
 * slot has no node that is up, TRYAGAIN, CLUSTERDOWN) is parked and tried
 * again at each tick until its deadline, then fails with PB_ESTORE.
 *
 * Sharded channels: each subscribed channel (struct rcl_chan) remembers
 * the node it is subscribed on. Whenever the map changes, a node goes, or
 * a node ends a subscription (its slot moved away), the channel is moved
 * to the owner of its slot; once the new node confirms it, the user hears
 * on_resubscribed (wakeups may have been missed meanwhile).
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>

#include "error.h"
#include "log.h"
#include "map.h"
#include "redis_cluster.h"

#define CL_NODES 254                /* the node table; 0xFF means none */
#define CL_MAX_HOPS 5               /* redirections followed per command */
#define CL_REFRESH_MIN_MS 200       /* between two wanted map refreshes */
#define CL_REFRESH_EVERY_MS 5000    /* a refresh at least this often */
#define CL_REFRESH_DOWN_MS 500      /* ... and this often while a primary is down */
#define CL_MAX_PARKED 65536
#define CL_WARN_EVERY_MS 10000

/* ---- pure parts ---------------------------------------------------------- */

unsigned pb_rcl_crc16(const void *p, size_t len)
{
	const unsigned char *b = p;
	unsigned crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (unsigned)b[i] << 8;
		for (int k = 0; k < 8; k++)
			crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
	}
	return crc;
}

unsigned pb_redis_key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open) {
		size_t rest = len - (size_t)(open + 1 - key);
		const char *close = memchr(open + 1, '}', rest);

		if (close && close > open + 1) {
			key = open + 1;
			len = (size_t)(close - key);
		}
	}
	return pb_rcl_crc16(key, len) & (PB_REDIS_SLOTS - 1);
}

/* 1 if [p, p + len) is a plausible host name or address. */
static int cl_host_ok(const char *p, size_t len)
{
	if (!len || len >= sizeof(((struct pb_redis_node *)0)->host))
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
		      (p[i] >= '0' && p[i] <= '9') || strchr(".-_:", p[i])) || !p[i])
			return 0;
	return 1;
}

/* Set nd from host [h, h + hlen) (empty or "?": asked_host) and port. 0 or -1. */
static int cl_node_set(struct pb_redis_node *nd, const char *h, size_t hlen, long long port,
		       const char *asked_host)
{
	if (!hlen || (hlen == 1 && h[0] == '?')) {
		h = asked_host ? asked_host : "";
		hlen = strlen(h);
	}
	if (!cl_host_ok(h, hlen) || port < 1 || port > 65535)
		return -1;
	memcpy(nd->host, h, hlen);
	nd->host[hlen] = '\0';
	nd->port = (int)port;
	return 0;
}

/* Write a reason and return -1. */
static int cl_bad(char *err, size_t errlen, const char *why, size_t i)
{
	if (err && errlen)
		snprintf(err, errlen, "CLUSTER SLOTS: %s (entry %zu)", why, i);
	return -1;
}

int pb_rcl_parse_slots(const redisReply *rep, const char *asked_host, struct pb_rcl_map *m,
		       char *err, size_t errlen)
{
	memset(m->slot, PB_RCL_NO_NODE, sizeof(m->slot));
	m->nnodes = 0;
	if (!rep || rep->type != REDIS_REPLY_ARRAY)
		return cl_bad(err, errlen, "not an array", 0);
	for (size_t i = 0; i < rep->elements; i++) {
		const redisReply *e = rep->element[i], *p;
		struct pb_redis_node nd;
		long long lo, hi;
		size_t k;

		if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 3 || !e->element[0] ||
		    !e->element[1] || !e->element[2] ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER)
			return cl_bad(err, errlen, "malformed slot range", i);
		lo = e->element[0]->integer;
		hi = e->element[1]->integer;
		if (lo < 0 || hi >= PB_REDIS_SLOTS || lo > hi)
			return cl_bad(err, errlen, "slot out of range", i);
		p = e->element[2];
		if (p->type != REDIS_REPLY_ARRAY || p->elements < 2 || !p->element[0] ||
		    !p->element[1] || p->element[1]->type != REDIS_REPLY_INTEGER ||
		    (p->element[0]->type != REDIS_REPLY_STRING &&
		     p->element[0]->type != REDIS_REPLY_NIL))
			return cl_bad(err, errlen, "malformed primary", i);
		if (cl_node_set(&nd, p->element[0]->type == REDIS_REPLY_STRING ? p->element[0]->str
										 : "",
				p->element[0]->type == REDIS_REPLY_STRING ? p->element[0]->len : 0,
				p->element[1]->integer, asked_host))
			return cl_bad(err, errlen, "bad primary host or port", i);
		for (k = 0; k < m->nnodes; k++)
			if (m->nodes[k].port == nd.port && !strcmp(m->nodes[k].host, nd.host))
				break;
		if (k == m->nnodes) {
			if (m->nnodes == PB_RCL_MAX_NODES)
				return cl_bad(err, errlen, "too many primaries", i);
			m->nodes[m->nnodes++] = nd;
		}
		for (long long s = lo; s <= hi; s++)
			m->slot[s] = (uint8_t)k;
	}
	return 0;
}

size_t pb_rcl_map_missing(const struct pb_rcl_map *m)
{
	size_t n = 0;

	for (size_t s = 0; s < PB_REDIS_SLOTS; s++)
		n += m->slot[s] == PB_RCL_NO_NODE;
	return n;
}

int pb_rcl_parse_redirect(const char *s, size_t len, const char *asked_host,
			  struct pb_rcl_redirect *out)
{
	const char *p, *end = s + len, *colon = NULL;
	unsigned long slot = 0;
	long long port = 0;
	size_t digits = 0;

	memset(out, 0, sizeof(*out));
	if (len >= 6 && !memcmp(s, "MOVED ", 6)) {
		p = s + 6;
	} else if (len >= 4 && !memcmp(s, "ASK ", 4)) {
		p = s + 4;
		out->ask = 1;
	} else {
		return 0;
	}
	for (; p < end && *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
		slot = slot * 10 + (unsigned long)(*p - '0');
	if (!digits || slot >= PB_REDIS_SLOTS || p >= end || *p != ' ')
		return -1;
	p++;
	for (const char *q = p; q < end; q++)
		if (*q == ':')
			colon = q;
	if (!colon || colon + 1 >= end || end - colon > 6)
		return -1;
	for (const char *q = colon + 1; q < end; q++) {
		if (*q < '0' || *q > '9')
			return -1;
		port = port * 10 + (*q - '0');
	}
	out->slot = (unsigned)slot;
	return cl_node_set(&out->node, p, (size_t)(colon - p), port, asked_host) ? -1 : 1;
}

/* ---- the cluster client --------------------------------------------------- */

enum rcl_kind { RK_CMD, RK_EVAL, RK_DURABLE };

struct pb_rcl;

/* One node: a single-node client. */
struct rcl_node {
	struct pb_rcl *cl;
	struct pb_redis *r;
	struct pb_redis_node addr;
	int idx;                /* in cl->nodes */
	int up;                 /* its command connection is up */
	int primary;            /* a primary in the current map (or named by MOVED) */
	uint64_t born;
};

/* A command, copied so that it can be sent again. */
struct rcl_cmd {
	struct pb_rcl *cl;
	struct rcl_cmd *prev, *next;    /* on the parked list */
	int parked;
	pb_redis_cb cb;
	void *arg;
	enum rcl_kind kind;
	size_t script;
	int nkeys;
	int keyed;
	unsigned slot;
	uint64_t deadline;
	int hops;
	int ask;                        /* send ASKING first, to asknode */
	struct pb_redis_node asknode;
	struct pb_redis_node sent_to;   /* for a redirection with no host */
	int argc;
	const char **argv;
	size_t *lens;
};

/* A subscribed channel. */
struct rcl_chan {
	unsigned refs;
	int holder;             /* node index it is subscribed on, -1 none */
	int held_once;          /* it was subscribed somewhere before */
	int moved;              /* re-homed: a confirmation means resync */
	unsigned slot;
	size_t len;
	char name[];
};

struct pb_rcl {
	uv_loop_t *loop;
	struct pb_redis_opts opts;
	struct rcl_node *nodes[CL_NODES];
	uint8_t slot[PB_REDIS_SLOTS];   /* node index or PB_RCL_NO_NODE */
	struct pb_map *chans;
	struct rcl_cmd *park_head, *park_tail;
	size_t nparked;
	int ready;
	int refresh_wanted, refresh_inflight;
	char refresh_host[256];
	uint64_t last_refresh;
	size_t seed_idx, rr;
	int reconcile_wanted, prune_wanted, resync_due;
	uint64_t warned;
	int shutdown;
};

static uint64_t cl_now(const struct pb_rcl *cl)
{
	return uv_now(cl->loop);
}

/* A rate-limited warning. */
static void cl_warn(struct pb_rcl *cl, const char *fmt, const char *what)
{
	if (cl_now(cl) < cl->warned + CL_WARN_EVERY_MS && cl->warned)
		return;
	cl->warned = cl_now(cl);
	pb_log_warn(fmt, what);
}

static void cl_update_ready(struct pb_rcl *cl);

static void node_on_state(void *arg, int up)
{
	struct rcl_node *n = arg;
	struct pb_rcl *cl = n->cl;

	if (cl->shutdown)
		return;
	n->up = up;
	if (!up)
		cl->refresh_wanted = 1;
	cl_update_ready(cl);
}

static void node_on_message(void *arg, const char *channel, size_t chlen, const char *msg,
			    size_t len)
{
	struct rcl_node *n = arg;
	struct pb_rcl *cl = n->cl;

	if (!cl->shutdown && cl->opts.on_message && pb_map_get(cl->chans, channel, chlen))
		cl->opts.on_message(cl->opts.arg, channel, chlen, msg, len);
}

static void node_on_resubscribed(void *arg)
{
	struct rcl_node *n = arg;

	if (!n->cl->shutdown && n->cl->opts.on_resubscribed)
		n->cl->opts.on_resubscribed(n->cl->opts.arg);
}

static void node_on_subscribed(void *arg, const char *channel, size_t chlen)
{
	struct rcl_node *n = arg;
	struct rcl_chan *ch = pb_map_get(n->cl->chans, channel, chlen);

	if (ch && ch->moved && ch->holder == n->idx) {
		ch->moved = 0;
		n->cl->resync_due = 1;
	}
}

static void node_on_dropped(void *arg, const char *channel, size_t chlen)
{
	struct rcl_node *n = arg;
	struct pb_rcl *cl = n->cl;
	struct rcl_chan *ch;

	if (cl->shutdown)
		return;
	cl->refresh_wanted = 1;
	cl->reconcile_wanted = 1;
	ch = pb_map_get(cl->chans, channel, chlen);
	if (ch && ch->holder == n->idx) {
		ch->holder = -1;
		ch->moved = 1;
	}
}

/* The node at nd, made (connecting at once) if create and there is none.
 * NULL if there is none (or the table is full, or memory is short). */
static struct rcl_node *node_get(struct pb_rcl *cl, const struct pb_redis_node *nd, int create)
{
	struct pb_redis_opts o;
	struct rcl_node *n;
	int free_idx = -1;

	for (int i = 0; i < CL_NODES; i++) {
		n = cl->nodes[i];
		if (n && n->addr.port == nd->port && !strcmp(n->addr.host, nd->host))
			return n;
		if (!n && free_idx < 0)
			free_idx = i;
	}
	if (!create || cl->shutdown)
		return NULL;
	if (free_idx < 0) {
		cl_warn(cl, "redis: cluster: more than %s nodes; ignoring the others", "254");
		return NULL;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->cl = cl;
	n->addr = *nd;
	n->idx = free_idx;
	n->born = cl_now(cl);
	o = cl->opts;
	memset(&o.url, 0, sizeof(o.url));
	memcpy(o.url.host, nd->host, sizeof(o.url.host));
	o.url.port = nd->port;
	memcpy(o.url.password, cl->opts.url.password, sizeof(o.url.password));
	o.cluster_node = 1;
	o.on_state = node_on_state;
	o.on_message = node_on_message;
	o.on_resubscribed = node_on_resubscribed;
	o.on_subscribed = node_on_subscribed;
	o.on_dropped = node_on_dropped;
	o.arg = n;
	n->r = pb_redis_new(cl->loop, &o);
	if (!n->r) {
		free(n);
		return NULL;
	}
	cl->nodes[free_idx] = n;
	pb_log_debug("redis: cluster: connecting to node %s:%d", nd->host, nd->port);
	return n;
}

/* Take node i out of the table and free its client (its pending
 * commands fail with PB_ESTORE now). Not from the node's own callbacks. */
static void node_drop(struct pb_rcl *cl, int i)
{
	struct rcl_node *n = cl->nodes[i];
	void **vals;
	size_t nch;

	if (!n)
		return;
	cl->nodes[i] = NULL;
	for (size_t s = 0; s < PB_REDIS_SLOTS; s++)
		if (cl->slot[s] == i)
			cl->slot[s] = PB_RCL_NO_NODE;
	nch = cl->chans ? pb_map_count(cl->chans) : 0;
	vals = nch ? calloc(nch, sizeof(*vals)) : NULL;
	if (vals) {
		nch = pb_map_values(cl->chans, vals, nch);
		for (size_t k = 0; k < nch; k++) {
			struct rcl_chan *ch = vals[k];

			if (ch->holder == i) {
				ch->holder = -1;
				ch->moved = 1;
			}
		}
		free(vals);
	}
	cl->reconcile_wanted = 1;
	pb_log_debug("redis: cluster: closing node %s:%d", n->addr.host, n->addr.port);
	pb_redis_free(n->r);
	free(n);
}

/* Ready: every slot known and every primary up, or, once ready, the map
 * complete and some primary up. Tells the user of a change. */
static void cl_update_ready(struct pb_rcl *cl)
{
	int complete = 1, all = 1, any = 0, primaries = 0, ready;

	if (cl->shutdown)
		return;
	for (size_t s = 0; s < PB_REDIS_SLOTS && complete; s++)
		complete = cl->slot[s] != PB_RCL_NO_NODE;
	for (int i = 0; i < CL_NODES; i++) {
		const struct rcl_node *n = cl->nodes[i];

		if (!n || !n->primary)
			continue;
		primaries++;
		if (n->up)
			any = 1;
		else
			all = 0;
	}
	ready = complete && primaries && (all || (cl->ready && any));
	if (ready == cl->ready)
		return;
	cl->ready = ready;
	if (ready)
		pb_log_info("redis: cluster: ready (%d primaries)", primaries);
	else
		pb_log_warn("redis: cluster: not ready (%s)",
			    !complete ? "slots without a primary" : "no primary reachable");
	if (cl->opts.on_state)
		cl->opts.on_state(cl->opts.arg, ready);
}

/* ---- channels ------------------------------------------------------------- */

/* Subscribe ch on the owner of its slot (moving it there if it is held
 * elsewhere). */
static void chan_home(struct pb_rcl *cl, struct rcl_chan *ch)
{
	int owner = cl->slot[ch->slot];
	struct rcl_node *n = owner == PB_RCL_NO_NODE ? NULL : cl->nodes[owner];

	if (!n || owner == ch->holder)
		return;
	if (ch->holder >= 0 && cl->nodes[ch->holder])
		pb_redis_unsubscribe(cl->nodes[ch->holder]->r, ch->name);
	ch->holder = -1;
	if (pb_redis_subscribe(n->r, ch->name))
		return;
	ch->holder = owner;
	if (ch->held_once)
		ch->moved = 1;
	ch->held_once = 1;
}

/* Move every channel to the owner of its slot. */
static void chan_home_all(struct pb_rcl *cl)
{
	size_t nch = pb_map_count(cl->chans);
	void **vals = nch ? calloc(nch, sizeof(*vals)) : NULL;

	cl->reconcile_wanted = 0;
	if (nch && !vals) {
		cl->reconcile_wanted = 1;
		return;
	}
	nch = nch ? pb_map_values(cl->chans, vals, nch) : 0;
	for (size_t k = 0; k < nch; k++)
		chan_home(cl, vals[k]);
	free(vals);
}

int pb_rcl_subscribe(struct pb_rcl *cl, const char *channel)
{
	size_t len = strlen(channel);
	struct rcl_chan *ch = pb_map_get(cl->chans, channel, len);

	if (ch) {
		ch->refs++;
		return 0;
	}
	ch = calloc(1, sizeof(*ch) + len + 1);
	if (!ch)
		return PB_ENOMEM;
	ch->refs = 1;
	ch->holder = -1;
	ch->len = len;
	ch->slot = pb_redis_key_slot(channel, len);
	memcpy(ch->name, channel, len + 1);
	if (pb_map_put(cl->chans, ch->name, len, ch)) {
		free(ch);
		return PB_ENOMEM;
	}
	chan_home(cl, ch);
	return 0;
}

void pb_rcl_unsubscribe(struct pb_rcl *cl, const char *channel)
{
	size_t len = strlen(channel);
	struct rcl_chan *ch = pb_map_get(cl->chans, channel, len);

	if (!ch || --ch->refs)
		return;
	pb_map_del(cl->chans, ch->name, ch->len);
	if (ch->holder >= 0 && cl->nodes[ch->holder])
		pb_redis_unsubscribe(cl->nodes[ch->holder]->r, ch->name);
	free(ch);
}

/* ---- the map ---------------------------------------------------------------- */

/* Install a parsed map: its primaries become nodes (made if new), the
 * others are pruned at the next tick, channels move to their owners. */
static void map_apply(struct pb_rcl *cl, const struct pb_rcl_map *m)
{
	uint8_t idx[PB_RCL_MAX_NODES];
	int changed = 0, was[CL_NODES], newset = 0;

	for (int i = 0; i < CL_NODES; i++) {
		was[i] = cl->nodes[i] && cl->nodes[i]->primary;
		if (cl->nodes[i])
			cl->nodes[i]->primary = 0;
	}
	for (size_t k = 0; k < m->nnodes; k++) {
		struct rcl_node *n = node_get(cl, &m->nodes[k], 1);

		idx[k] = n ? (uint8_t)n->idx : PB_RCL_NO_NODE;
		if (n)
			n->primary = 1;
	}
	for (size_t s = 0; s < PB_REDIS_SLOTS; s++) {
		uint8_t v = m->slot[s] == PB_RCL_NO_NODE ? PB_RCL_NO_NODE : idx[m->slot[s]];

		changed |= cl->slot[s] != v;
		cl->slot[s] = v;
	}
	for (int i = 0; i < CL_NODES; i++)
		newset |= was[i] != (cl->nodes[i] && cl->nodes[i]->primary);
	if (changed)
		pb_log(newset ? PB_LOG_INFO : PB_LOG_DEBUG,
		       "redis: cluster: slot map from %s: %zu primaries, %zu slots without one",
		       cl->refresh_host, m->nnodes, pb_rcl_map_missing(m));
	if (pb_rcl_map_missing(m))
		cl_warn(cl, "redis: cluster: %s: slots without a primary (cluster not "
			"created yet, or failing)", cl->refresh_host);
	cl->refresh_wanted = 0;
	cl->prune_wanted = 1;
	chan_home_all(cl);
	cl_update_ready(cl);
}

/* The answer to CLUSTER SLOTS. */
static void refresh_reply(void *arg, int err, struct redisReply *rep)
{
	struct pb_rcl *cl = arg;
	struct pb_rcl_map *m;
	char why[160];

	cl->refresh_inflight = 0;
	if (cl->shutdown)
		return;
	if (err || !rep) {
		cl->refresh_wanted = 1;
		return;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		snprintf(why, sizeof(why), "%.*s", (int)(rep->len < 120 ? rep->len : 120),
			 rep->str ? rep->str : "");
		cl_warn(cl, "redis: cluster: CLUSTER SLOTS refused: %s (is it a cluster node? "
			"for one server use redis://)", why);
		cl->refresh_wanted = 1;
		return;
	}
	m = malloc(sizeof(*m));
	if (!m) {
		cl->refresh_wanted = 1;
		return;
	}
	if (pb_rcl_parse_slots(rep, cl->refresh_host, m, why, sizeof(why))) {
		cl_warn(cl, "redis: cluster: a malformed slot map: %s", why);
		cl->refresh_wanted = 1;
	} else {
		map_apply(cl, m);
	}
	free(m);
}

/* Ask a node that is up for the map; with none up, start on the next
 * seed (one new seed per connect timeout). */
static void refresh_start(struct pb_rcl *cl)
{
	const char *argv[] = { "CLUSTER", "SLOTS" };
	struct rcl_node *n = NULL;
	uint64_t now = cl_now(cl);
	int young = 0;

	cl->last_refresh = now;
	for (int k = 0; k < CL_NODES && !n; k++) {
		struct rcl_node *c = cl->nodes[(cl->rr + (size_t)k) % CL_NODES];

		if (c && c->up && pb_redis_ready(c->r))
			n = c;
		else if (c && !c->up && now < c->born + cl->opts.connect_timeout_ms + 500)
			young = 1;
	}
	cl->rr++;
	if (!n) {
		if (!young) {
			n = node_get(cl, &cl->opts.url.seeds[cl->seed_idx % cl->opts.url.nseeds], 1);
			cl->seed_idx++;
			if (n)
				n->born = now;
		}
		return;
	}
	snprintf(cl->refresh_host, sizeof(cl->refresh_host), "%s", n->addr.host);
	cl->refresh_inflight = 1;
	if (pb_redis_command_key(n->r, -1, refresh_reply, cl, 2, argv, NULL))
		cl->refresh_inflight = 0;
}

/* ---- commands ----------------------------------------------------------------- */

/* Copy a command. NULL on allocation failure. */
static struct rcl_cmd *cmd_new(struct pb_rcl *cl, int argc, const char *const *argv,
			       const size_t *argvlen, pb_redis_cb cb, void *arg)
{
	size_t bytes = 0, head;
	struct rcl_cmd *cc;
	char *p;

	for (int i = 0; i < argc; i++) {
		size_t l = argvlen ? argvlen[i] : strlen(argv[i]);

		if (l > SIZE_MAX / 2 - bytes)
			return NULL;
		bytes += l + 1;
	}
	head = sizeof(*cc) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
	cc = calloc(1, head + bytes);
	if (!cc)
		return NULL;
	cc->cl = cl;
	cc->cb = cb;
	cc->arg = arg;
	cc->argc = argc;
	cc->lens = (size_t *)(void *)(cc + 1);
	cc->argv = (const char **)(void *)(cc->lens + argc);
	p = (char *)(cc->argv + argc);
	for (int i = 0; i < argc; i++) {
		cc->lens[i] = argvlen ? argvlen[i] : strlen(argv[i]);
		memcpy(p, argv[i], cc->lens[i]);
		p[cc->lens[i]] = '\0';
		cc->argv[i] = p;
		p += cc->lens[i] + 1;
	}
	cc->deadline = cl_now(cl) + cl->opts.command_timeout_ms;
	return cc;
}

static void park_unlink(struct rcl_cmd *cc)
{
	struct pb_rcl *cl = cc->cl;

	if (!cc->parked)
		return;
	if (cc->prev)
		cc->prev->next = cc->next;
	else
		cl->park_head = cc->next;
	if (cc->next)
		cc->next->prev = cc->prev;
	else
		cl->park_tail = cc->prev;
	cc->prev = cc->next = NULL;
	cc->parked = 0;
	cl->nparked--;
}

/* Answer cc (exactly once) and free it. */
static void cmd_finish(struct rcl_cmd *cc, int err, struct redisReply *reply)
{
	park_unlink(cc);
	cc->cb(cc->arg, err, reply);
	free(cc);
}

/* Try cc again at a later tick. 0, or PB_EQFULL. */
static int cmd_park(struct rcl_cmd *cc)
{
	struct pb_rcl *cl = cc->cl;

	if (cc->parked)
		return 0;
	if (cl->nparked >= CL_MAX_PARKED)
		return PB_EQFULL;
	cc->prev = cl->park_tail;
	cc->next = NULL;
	if (cl->park_tail)
		cl->park_tail->next = cc;
	else
		cl->park_head = cc;
	cl->park_tail = cc;
	cc->parked = 1;
	cl->nparked++;
	return 0;
}

static void cmd_reply(void *arg, int err, struct redisReply *reply);

/* The node cc goes to now, or NULL. */
static struct rcl_node *cmd_target(struct pb_rcl *cl, struct rcl_cmd *cc)
{
	if (cc->ask)
		return node_get(cl, &cc->asknode, 1);
	if (cc->keyed)
		return cl->slot[cc->slot] == PB_RCL_NO_NODE ? NULL : cl->nodes[cl->slot[cc->slot]];
	for (int k = 0; k < CL_NODES; k++) {
		struct rcl_node *n = cl->nodes[(cl->rr + (size_t)k) % CL_NODES];

		if (n && n->primary && n->up) {
			cl->rr++;
			return n;
		}
	}
	return NULL;
}

/* Send cc to its node, or park it if that node is not up. 0 (sent or
 * parked: its callback will run), or the refusal (cc untouched). */
static int cmd_route(struct rcl_cmd *cc)
{
	struct pb_rcl *cl = cc->cl;
	struct rcl_node *n;
	int err;

	if (cl->shutdown)
		return PB_ESTORE;
	n = cmd_target(cl, cc);
	if (!n || !pb_redis_ready(n->r)) {
		if (cl_now(cl) >= cc->deadline)
			return PB_ESTORE;
		return cmd_park(cc);
	}
	if (cc->ask) {
		const char *asking[] = { "ASKING" };

		if (pb_redis_command_key(n->r, -1, cmd_reply, NULL, 1, asking, NULL))
			return cmd_park(cc);
	}
	park_unlink(cc);
	cc->sent_to = n->addr;
	switch (cc->kind) {
	case RK_CMD:
		err = pb_redis_command_key(n->r, -1, cmd_reply, cc, cc->argc, cc->argv, cc->lens);
		break;
	case RK_EVAL:
		err = pb_redis_eval(n->r, cc->script, cc->nkeys, cc->argc, cc->argv, cc->lens,
				    cmd_reply, cc);
		break;
	default:
		err = pb_redis_eval_durable(n->r, cc->script, cc->nkeys, cc->argc, cc->argv,
					    cc->lens, cmd_reply, cc);
		break;
	}
	if (err == PB_ESTORE && cl_now(cl) < cc->deadline)
		return cmd_park(cc);
	if (!err)
		cc->ask = 0;
	return err;
}

/* 1 if the error reply starts with word. */
static int reply_starts(const redisReply *reply, const char *word)
{
	size_t l = strlen(word);

	return reply->len >= l && !memcmp(reply->str, word, l);
}

/* A node answered cc (or failed it): follow a redirection, wait on
 * TRYAGAIN / CLUSTERDOWN, else hand the answer over. The ASKING that goes
 * before an asked command also lands here, with arg NULL. */
static void cmd_reply(void *arg, int err, struct redisReply *reply)
{
	struct rcl_cmd *cc = arg;
	struct pb_rcl *cl;
	struct pb_rcl_redirect rd;
	int r;

	if (!cc)
		return;
	cl = cc->cl;
	if (err || !reply || cl->shutdown) {
		cmd_finish(cc, err ? err : PB_ESTORE, NULL);
		return;
	}
	if (reply->type != REDIS_REPLY_ERROR || !reply->str) {
		cmd_finish(cc, 0, reply);
		return;
	}
	r = pb_rcl_parse_redirect(reply->str, reply->len, cc->sent_to.host, &rd);
	if (r == 1 && cc->hops < CL_MAX_HOPS) {
		cc->hops++;
		if (rd.ask) {
			cc->ask = 1;
			cc->asknode = rd.node;
		} else {
			struct rcl_node *n = node_get(cl, &rd.node, 1);

			cc->ask = 0;
			if (n) {
				n->primary = 1;
				cl->slot[rd.slot] = (uint8_t)n->idx;
			}
			cl->refresh_wanted = 1;
			cl->reconcile_wanted = 1;
		}
		if (cmd_route(cc))
			cmd_finish(cc, PB_ESTORE, NULL);
		return;
	}
	if (r == -1) {
		cl_warn(cl, "redis: cluster: a malformed redirection from %s", cc->sent_to.host);
		cl->refresh_wanted = 1;
	} else if ((reply_starts(reply, "TRYAGAIN") || reply_starts(reply, "CLUSTERDOWN")) &&
		   cl_now(cl) < cc->deadline && cmd_park(cc) == 0) {
		if (reply_starts(reply, "CLUSTERDOWN"))
			cl->refresh_wanted = 1;
		return;
	}
	cmd_finish(cc, 0, reply);
}

/* Submit a new command; 0, or the refusal (no callback). */
static int cmd_submit(struct rcl_cmd *cc)
{
	int err = cmd_route(cc);

	if (err) {
		park_unlink(cc);
		free(cc);
	}
	return err;
}

int pb_rcl_command(struct pb_rcl *cl, int key, pb_redis_cb cb, void *arg, int argc,
		   const char *const *argv, const size_t *argvlen)
{
	struct rcl_cmd *cc;

	if (cl->shutdown || !cl->ready)
		return PB_ESTORE;
	if (argc < 1 || !argv || key >= argc)
		return PB_EBADREQ;
	cc = cmd_new(cl, argc, argv, argvlen, cb, arg);
	if (!cc)
		return PB_ENOMEM;
	cc->kind = RK_CMD;
	cc->keyed = key >= 0;
	if (cc->keyed)
		cc->slot = pb_redis_key_slot(cc->argv[key], cc->lens[key]);
	return cmd_submit(cc);
}

int pb_rcl_eval(struct pb_rcl *cl, size_t script, int nkeys, int argc, const char *const *argv,
		const size_t *argvlen, pb_redis_cb cb, void *arg, int durable)
{
	struct rcl_cmd *cc;

	if (cl->shutdown || !cl->ready)
		return PB_ESTORE;
	if (script >= cl->opts.nscripts || nkeys < 0 || argc < nkeys || argc > INT_MAX - 3 ||
	    (argc && !argv))
		return PB_EBADREQ;
	cc = cmd_new(cl, argc, argv, argvlen, cb, arg);
	if (!cc)
		return PB_ENOMEM;
	cc->kind = durable ? RK_DURABLE : RK_EVAL;
	cc->script = script;
	cc->nkeys = nkeys;
	cc->keyed = nkeys > 0;
	if (cc->keyed)
		cc->slot = pb_redis_key_slot(cc->argv[0], cc->lens[0]);
	return cmd_submit(cc);
}

void pb_rcl_set_wait(struct pb_rcl *cl, unsigned replicas, unsigned timeout_ms)
{
	cl->opts.wait_replicas = replicas;
	cl->opts.wait_timeout_ms = timeout_ms;
	for (int i = 0; i < CL_NODES; i++)
		if (cl->nodes[i])
			pb_redis_set_wait(cl->nodes[i]->r, replicas, timeout_ms);
}

/* ---- life ----------------------------------------------------------------------- */

/* Send the parked commands again (or fail those past their deadline). */
static void retry_parked(struct pb_rcl *cl)
{
	struct rcl_cmd *list = cl->park_head, *cc;
	uint64_t now = cl_now(cl);

	/* take the whole list: commands parked again join a fresh one */
	cl->park_head = cl->park_tail = NULL;
	cl->nparked = 0;
	for (cc = list; cc; cc = cc->next)
		cc->parked = 0;
	while ((cc = list) != NULL) {
		list = cc->next;
		cc->prev = cc->next = NULL;
		if (cl->shutdown || now >= cc->deadline || cmd_route(cc))
			cmd_finish(cc, PB_ESTORE, NULL);
	}
}

/* Drop the nodes that the map no longer names (only once it names some). */
static void prune(struct pb_rcl *cl)
{
	int primaries = 0;

	cl->prune_wanted = 0;
	for (int i = 0; i < CL_NODES; i++)
		primaries += cl->nodes[i] && cl->nodes[i]->primary;
	for (int i = 0; primaries && i < CL_NODES && !cl->shutdown; i++)
		if (cl->nodes[i] && !cl->nodes[i]->primary)
			node_drop(cl, i);
	cl_update_ready(cl);
}

/* 1 if a primary of the map is not connected (a failover may be on). */
static int primary_down(const struct pb_rcl *cl)
{
	for (int i = 0; i < CL_NODES; i++)
		if (cl->nodes[i] && cl->nodes[i]->primary && !cl->nodes[i]->up)
			return 1;
	return 0;
}

void pb_rcl_tick(struct pb_rcl *cl)
{
	uint64_t now = cl_now(cl);

	if (cl->shutdown)
		return;
	if (cl->prune_wanted)
		prune(cl);
	if (!cl->shutdown && !cl->refresh_inflight &&
	    ((cl->refresh_wanted && now >= cl->last_refresh + CL_REFRESH_MIN_MS) ||
	     now >= cl->last_refresh + (primary_down(cl) ? CL_REFRESH_DOWN_MS
							  : CL_REFRESH_EVERY_MS)))
		refresh_start(cl);
	if (!cl->shutdown && cl->reconcile_wanted && !cl->refresh_wanted && !cl->refresh_inflight)
		chan_home_all(cl);
	if (!cl->shutdown && cl->park_head)
		retry_parked(cl);
	if (!cl->shutdown && cl->resync_due) {
		cl->resync_due = 0;
		if (cl->opts.on_resubscribed)
			cl->opts.on_resubscribed(cl->opts.arg);
	}
}

int pb_rcl_ready(const struct pb_rcl *cl)
{
	return !cl->shutdown && cl->ready;
}

struct pb_rcl *pb_rcl_new(uv_loop_t *loop, const struct pb_redis_opts *opts)
{
	struct pb_rcl *cl = calloc(1, sizeof(*cl));

	if (!cl)
		return NULL;
	cl->loop = loop;
	cl->opts = *opts;
	memset(cl->slot, PB_RCL_NO_NODE, sizeof(cl->slot));
	cl->chans = pb_map_new();
	if (!cl->chans || !opts->url.nseeds) {
		pb_map_free(cl->chans);
		free(cl);
		return NULL;
	}
	/* the first seed at once; the tick asks it for the map once it is up */
	cl->refresh_wanted = 1;
	refresh_start(cl);
	return cl;
}

void pb_rcl_shutdown(struct pb_rcl *cl)
{
	void *vals[64];
	size_t n;

	if (!cl || cl->shutdown)
		return;
	cl->shutdown = 1;
	for (int i = 0; i < CL_NODES; i++)
		node_drop(cl, i);
	while (cl->park_head)
		cmd_finish(cl->park_head, PB_ESTORE, NULL);
	while ((n = pb_map_values(cl->chans, vals, 64)) > 0) {
		for (size_t i = 0; i < n; i++) {
			struct rcl_chan *ch = vals[i];

			pb_map_del(cl->chans, ch->name, ch->len);
			free(ch);
		}
	}
}

void pb_rcl_release(struct pb_rcl *cl)
{
	if (!cl)
		return;
	pb_map_free(cl->chans);
	free(cl);
}
