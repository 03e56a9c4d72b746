/*
 * redis.c: the asynchronous Redis client (see redis.h). It owns two Redis
 * connections (commands, pub/sub) with their sockets, output buffers and
 * reply parsers, the timers that give them connect and command timeouts
 * and reconnection with backoff, the SHA1s of the Lua scripts and the
 * reference-counted set of subscribed channels.
 *
 * hiredis is used only to parse replies (redisReader); commands are encoded
 * here (resp_format). The socket I/O and the matching of replies
 * to commands are done here, on the libuv loop (a uv_poll_t on a
 * non-blocking socket), because hiredis 0.14's async layer asserts, and so
 * aborts the process, on a reply nobody asked for and on a pub/sub frame
 * of the wrong shape. Here every byte the server sends is checked: a
 * protocol error, a reply with no command pending, a push of the wrong
 * shape on the subscriber connection or a reply larger than RD_MAX_REPLY
 * is logged and drops the connection, which then reconnects with backoff.
 *
 * Every command sent on a connection is a struct rcmd linked on its FIFO in
 * send order. Redis answers in order, so each reply belongs to the head of
 * the FIFO, and one 100 ms tick compares the head's deadline with the
 * clock. While a connection is being set up (resolve, TCP connect, AUTH,
 * SELECT, SCRIPT LOAD, PING) the attempt has one deadline instead. The
 * subscriber connection's SUBSCRIBE and UNSUBSCRIBE confirmations are
 * counted rather than queued, and time out when none has arrived for a
 * command timeout while some are owed.
 *
 * Commands are appended to the connection's output buffer and written when
 * the socket is next writable: one write() per loop pass for all commands
 * issued meanwhile (pipelining).
 *
 * Dropping a connection fails its pending commands at once (each callback
 * runs exactly once), then closes the poll handle; the socket is closed and
 * the reconnection timer started from the handle's close callback.
 *
 * Sentinel (redis+sentinel://): a third connection goes to one sentinel at
 * a time (the next one after each failure). Its handshake is SENTINEL
 * get-master-addr-by-name, then SUBSCRIBE +switch-master in the same
 * pipeline; the answer, and every later +switch-master for our master,
 * sets the primary's address and restarts the data connections towards it
 * at once (their pending commands fail with PB_ESTORE, as on any drop).
 * The data connections wait for a first answer, check ROLE is master in
 * their handshake (a stale answer or a demoted primary re-asks the
 * sentinels), and re-ask the sentinels whenever an attempt fails, so a
 * switch announced while no sentinel was listened to is still found.
 *
 * Cluster (redis+cluster://): the client owns no connection; every call
 * is handed to redis_cluster.c, which keeps one client of this file per
 * primary (opts.cluster_node). Such a node client subscribes with
 * SSUBSCRIBE, one channel per command, and keeps the channels of its
 * SSUBSCRIBEs and SUNSUBSCRIBEs in send order (rconn.pend_*), so that an
 * error answer (MOVED for a slot that moved) is matched to its channel; a
 * sunsubscribe that is not the answer to ours was pushed by the server
 * (the slot moved away). Both drop the channel and tell the cluster
 * client, which subscribes it at the slot's new owner.
 *
 * Durable scripts (pb_redis_eval_durable with wait_replicas): every such
 * EVALSHA joins the connection's open WAIT group; just before the output
 * buffer is written, one WAIT for the group goes behind it. A member's
 * reply is held until WAIT answers, then handed over (or PB_ESTORE if too
 * few replicas acknowledged). WAIT blocks only this connection in Redis,
 * so one WAIT per write keeps the pipeline going.
 *
 * Memory: struct pb_redis stays allocated until pb_redis_free() was called,
 * both poll handles are closed, a pending name resolution has called back
 * and the three timers' close callbacks have run. The tick timer is closed
 * last, once no poll handle is left, so the struct is only ever freed from
 * a libuv close or resolution callback.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include "codec.h"
#include "error.h"
#include "log.h"
#include "map.h"
#include "metrics.h"
#include "redis.h"
#include "redis_cluster.h"

#define RD_TICK_MS 100
#define RD_BACKOFF_MIN_MS 100
#define RD_BACKOFF_MAX_MS 2000
#define RD_DEFAULT_TIMEOUT_MS 1000
#define RD_MAX_INFLIGHT 65536   /* commands awaiting replies per connection */
#define RD_SHA_LEN 40
/* The largest reply (or bulk string) accepted: above the largest poll
 * answer --max-batch-bytes allows (256 MiB plus one 64 MiB message). */
#define RD_MAX_REPLY (512ULL << 20)
#define RD_MAX_ELEMENTS (1 << 24)       /* elements of one array reply */
#define RD_READ_CHUNK 65536             /* bytes read per readable event */

enum rconn_state {
	RS_DOWN,                /* no socket (maybe one closing) */
	RS_RESOLVING,           /* waiting for uv_getaddrinfo */
	RS_CONNECTING,          /* TCP connect in progress */
	RS_HANDSHAKE,           /* AUTH / SELECT / SCRIPT LOAD / PING sent */
	RS_SUBSCRIBING,         /* subscriber: re-SUBSCRIBE sent, not confirmed */
	RS_UP,
};

enum rcmd_kind {
	RC_USER,                /* pb_redis_command() */
	RC_EVAL,                /* pb_redis_eval(): EVALSHA, retried on NOSCRIPT */
	RC_AUTH,
	RC_SELECT,
	RC_LOAD,                /* SCRIPT LOAD during the handshake */
	RC_RELOAD,              /* SCRIPT LOAD after a NOSCRIPT */
	RC_PING,                /* the last handshake step */
	RC_ROLE,                /* sentinel mode: is it the primary? */
	RC_SENADDR,             /* SENTINEL get-master-addr-by-name */
	RC_WAIT,                /* WAIT for the durable scripts before it */
};

enum rconn_role {
	CR_CMD,                 /* commands and scripts */
	CR_SUB,                 /* pub/sub */
	CR_SEN,                 /* a sentinel: the primary's address */
};

struct pb_redis;

/* One Redis connection and its reconnection state. */
struct rconn {
	struct pb_redis *r;
	enum rconn_role role;
	const char *name;       /* "command", "subscriber", "sentinel" */
	char host[256];         /* this attempt's target */
	int port;
	int kick;               /* dropped on purpose: the next attempt at once */
	struct rcmd *open_wait; /* durable scripts not yet followed by WAIT */
	enum rconn_state state;
	int fd;                 /* the socket, -1 if none */
	uv_poll_t poll;
	int open;               /* poll handle set up, its close callback not run */
	int dropping;           /* conn_drop() ran, the handle is closing */
	int events;             /* what the poll handle watches */
	int was_up;             /* it has been up before: a reconnect, not the first */
	redisReader *reader;    /* from TCP connect to close */
	char *obuf;             /* commands not yet written: [ooff, olen) */
	size_t olen, ooff, ocap;
	uint64_t attempt_deadline;
	unsigned backoff_ms;    /* wait before the next attempt */
	uv_timer_t retry;
	uv_getaddrinfo_t gai;
	int gai_pending;
	struct rcmd *head, *tail;       /* awaiting replies, oldest first */
	size_t ncmds;
	/* subscriber only */
	size_t owed;            /* SUBSCRIBE/UNSUBSCRIBE confirmations */
	uint64_t owed_deadline;
	size_t resub_left;      /* confirmations of the re-SUBSCRIBE still due */
	/* cluster node: the SSUBSCRIBEs and SUNSUBSCRIBEs sent, oldest first
	 * (an error reply names no channel; this says whose it is) */
	struct rpend *pend_head, *pend_tail;
};

/* A command awaiting its reply; freed once answered or failed. */
struct rcmd {
	struct rconn *conn;
	struct rcmd *prev, *next;
	enum rcmd_kind kind;
	uint64_t deadline;
	size_t script;          /* RC_EVAL, RC_LOAD, RC_RELOAD */
	pb_redis_cb cb;         /* RC_USER, RC_EVAL */
	void *arg;
	char *evalcmd;          /* RC_EVAL: the formatted EVALSHA, for the retry */
	size_t evallen;
	int retried;
	uint64_t sent_ns;       /* for the store latency metric */
	struct rcmd *wait;      /* durable RC_EVAL: its WAIT group */
	redisReply *held;       /* durable RC_EVAL: the reply, until WAIT answers */
	struct rcmd *hnext;     /* next held member of the same WAIT */
	struct rcmd *held_head; /* RC_WAIT: its members that have replied, */
	struct rcmd *held_last; /* in FIFO order */
};

/* A sharded (un)subscription awaiting its answer. */
struct rpend {
	struct rpend *next;
	int unsub;
	size_t len;
	char name[];
};

/* A subscribed channel; the map's key points into name. */
struct rchan {
	unsigned refs;
	size_t len;
	char name[];
};

struct pb_redis {
	uv_loop_t *loop;
	struct pb_redis_opts opts;
	char (*sha)[RD_SHA_LEN + 1];    /* per script, "" until loaded */
	struct pb_map *chans;           /* name -> struct rchan */
	struct rconn cmd, sub, sen;
	int sentinel;           /* redis+sentinel:// */
	size_t sen_idx;         /* the sentinel tried now */
	int addr_known;         /* the data connections' target is known */
	char addr_host[256];    /* the primary (sentinel) or the server */
	int addr_port;
	uint64_t wait_warned;   /* when too few replicas were last logged */
	uint64_t cluster_warned;        /* when a redirection was last logged */
	struct pb_rcl *cl;      /* redis+cluster://: everything goes there */
	uv_timer_t tick;
	int tick_closing;
	int freeing;
	unsigned busy;          /* open timers + pending name resolutions */
};

static void conn_start(struct rconn *c);
static void conn_fail(struct rconn *c, int warn, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void conn_want(struct rconn *c);
static int el_is_string(const redisReply *reply, size_t i);
static void sentinel_addr_reply(struct rconn *c, const redisReply *reply);

/* ---- URL ------------------------------------------------------------ */

/* Write a one-line reason and return PB_EBADREQ. */
static int url_fail(char *err, size_t errlen, const char *why)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", why);
	return PB_EBADREQ;
}

/* Parse HOST[:PORT] (HOST a name, an IPv4 address or [IPv6]) in [p, end)
 * into nd, the port defaulting to def_port. 0 or PB_EBADREQ. */
static int url_hostport(const char *p, const char *end, int def_port, struct pb_redis_node *nd,
			char *err, size_t errlen)
{
	const char *hs, *he;
	uint64_t v;
	int v6 = 0;

	memset(nd, 0, sizeof(*nd));
	nd->port = def_port;
	if (p < end && *p == '[') {
		hs = p + 1;
		he = memchr(hs, ']', (size_t)(end - hs));
		if (!he)
			return url_fail(err, errlen, "Redis URL: missing ] after the IPv6 address");
		p = he + 1;
		v6 = 1;
	} else {
		hs = p;
		while (p < end && *p != ':')
			p++;
		he = p;
	}
	if (he == hs)
		return url_fail(err, errlen, "Redis URL: empty host");
	if ((size_t)(he - hs) >= sizeof(nd->host))
		return url_fail(err, errlen, "Redis URL: host too long");
	memcpy(nd->host, hs, (size_t)(he - hs));
	if (v6) {
		struct in6_addr a6;

		if (inet_pton(AF_INET6, nd->host, &a6) != 1)
			return url_fail(err, errlen, "Redis URL: bad IPv6 address");
	} else {
		for (const char *h = nd->host; *h; h++)
			if (!(*h >= 'a' && *h <= 'z') && !(*h >= 'A' && *h <= 'Z') &&
			    !(*h >= '0' && *h <= '9') && *h != '.' && *h != '-' && *h != '_')
				return url_fail(err, errlen, "Redis URL: bad character in the host");
	}
	if (p < end && *p == ':') {
		p++;
		if (pb_parse_uint53(p, (size_t)(end - p), &v) || v < 1 || v > 65535)
			return url_fail(err, errlen, "Redis URL: bad port (1-65535)");
		nd->port = (int)v;
	} else if (p < end) {
		return url_fail(err, errlen, "Redis URL: unexpected character after the host");
	}
	return 0;
}

/* Parse the optional database number at p (after a '/'). 0 or PB_EBADREQ. */
static int url_db(const char *p, int *db, char *err, size_t errlen)
{
	uint64_t v;

	if (!*p)
		return 0;
	if (pb_parse_uint53(p, strlen(p), &v) || v > INT_MAX)
		return url_fail(err, errlen, "Redis URL: bad database number");
	*db = (int)v;
	return 0;
}

/* Parse a comma-separated list of HOST[:PORT] in [p, end) into nodes
 * (at most max; *n counts them); what names them in the error. 0 or
 * PB_EBADREQ. */
static int url_nodes(const char *p, const char *end, int def_port, struct pb_redis_node *nodes,
		     size_t *n, size_t max, const char *what, char *err, size_t errlen)
{
	for (;;) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *e = comma ? comma : end;
		char why[96];
		int r;

		if (*n == max) {
			snprintf(why, sizeof(why), "Redis URL: more than %zu %s", max, what);
			return url_fail(err, errlen, why);
		}
		r = url_hostport(p, e, def_port, &nodes[*n], err, errlen);
		if (r)
			return r;
		(*n)++;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

/* Parse the sentinel part of a redis+sentinel:// URL: the comma-separated
 * sentinels in [p, end), then /MASTER[/DB] at end. 0 or PB_EBADREQ. */
static int url_sentinels(const char *p, const char *end, struct pb_redis_url *u, char *err,
			 size_t errlen)
{
	const char *m, *me;
	int r = url_nodes(p, end, 26379, u->sentinels, &u->nsentinels, PB_REDIS_MAX_SENTINELS,
			  "sentinels", err, errlen);

	if (r)
		return r;
	if (*end != '/' || !end[1] || end[1] == '/')
		return url_fail(err, errlen,
				"Redis URL: redis+sentinel:// needs /MASTER-NAME after the sentinels");
	m = end + 1;
	me = m + strcspn(m, "/");
	if ((size_t)(me - m) >= sizeof(u->master))
		return url_fail(err, errlen, "Redis URL: master name too long");
	for (const char *c = m; c < me; c++)
		if (!(*c >= 'a' && *c <= 'z') && !(*c >= 'A' && *c <= 'Z') &&
		    !(*c >= '0' && *c <= '9') && *c != '.' && *c != '-' && *c != '_')
			return url_fail(err, errlen, "Redis URL: bad character in the master name");
	memcpy(u->master, m, (size_t)(me - m));
	return *me ? url_db(me + 1, &u->db, err, errlen) : 0;
}

/* Parse the seed nodes of a redis+cluster:// URL in [p, end), then an
 * optional "/" or "/0" at end (a cluster has only database 0). 0 or
 * PB_EBADREQ. */
static int url_seeds(const char *p, const char *end, struct pb_redis_url *u, char *err,
		     size_t errlen)
{
	int r = url_nodes(p, end, 6379, u->seeds, &u->nseeds, PB_REDIS_MAX_SEEDS,
			  "cluster seed nodes", err, errlen);

	if (r)
		return r;
	if (*end == '/' && url_db(end + 1, &u->db, err, errlen))
		return PB_EBADREQ;
	if (u->db)
		return url_fail(err, errlen,
				"Redis URL: a Redis Cluster has only database 0 (redis+cluster://"
				"HOST:PORT,.../)");
	return 0;
}

int pb_redis_parse_url(const char *url, struct pb_redis_url *out, char *err, size_t errlen)
{
	struct pb_redis_url u;
	struct pb_redis_node nd;
	const char *p, *at, *end;
	int sentinel = 0, cluster = 0, r;

	memset(&u, 0, sizeof(u));
	u.port = 6379;
	if (url && !strncasecmp(url, "redis+sentinel://", 17)) {
		p = url + 17;
		sentinel = 1;
	} else if (url && !strncasecmp(url, "redis+cluster://", 16)) {
		p = url + 16;
		cluster = 1;
	} else if (url && !strncasecmp(url, "redis://", 8)) {
		p = url + 8;
	} else {
		return url_fail(err, errlen,
				"the Redis URL must start with redis://, redis+sentinel:// or "
				"redis+cluster://");
	}
	at = strrchr(p, '@');
	if (at) {
		if (*p != ':')
			return url_fail(err, errlen,
					"Redis URL: expected :PASSWORD@ (user names are not supported)");
		if (pb_percent_decode(p + 1, (size_t)(at - p - 1), u.password,
				      sizeof(u.password)))
			return url_fail(err, errlen,
					"Redis URL: bad percent escape or password too long");
		p = at + 1;
	}
	/* the authority ends at the first '/' outside brackets */
	end = p;
	for (int br = 0; *end && (br || *end != '/'); end++)
		br = *end == '[' ? 1 : *end == ']' ? 0 : br;
	if (sentinel) {
		r = url_sentinels(p, end, &u, err, errlen);
		if (r)
			return r;
	} else if (cluster) {
		r = url_seeds(p, end, &u, err, errlen);
		if (r)
			return r;
	} else {
		r = url_hostport(p, end, 6379, &nd, err, errlen);
		if (r)
			return r;
		memcpy(u.host, nd.host, sizeof(u.host));
		u.port = nd.port;
		if (*end == '/' && url_db(end + 1, &u.db, err, errlen))
			return PB_EBADREQ;
	}
	*out = u;
	return 0;
}

/* ---- commands --------------------------------------------------------- */

/* A new command record for c (not yet linked). NULL on allocation failure. */
static struct rcmd *rcmd_new(struct rconn *c, enum rcmd_kind kind, uint64_t deadline)
{
	struct rcmd *rc = calloc(1, sizeof(*rc));

	if (!rc)
		return NULL;
	rc->conn = c;
	rc->kind = kind;
	rc->deadline = deadline;
	rc->sent_ns = uv_hrtime();
	return rc;
}

/* Free a command record (unlinked). */
static void rcmd_free(struct rcmd *rc)
{
	free(rc->evalcmd);
	if (rc->held)
		freeReplyObject(rc->held);
	free(rc);
}

/* Append rc to its connection's FIFO. */
static void rcmd_link(struct rcmd *rc)
{
	struct rconn *c = rc->conn;

	rc->prev = c->tail;
	rc->next = NULL;
	if (c->tail)
		c->tail->next = rc;
	else
		c->head = rc;
	c->tail = rc;
	c->ncmds++;
}

/* Take rc off its connection's FIFO. */
static void rcmd_unlink(struct rcmd *rc)
{
	struct rconn *c = rc->conn;

	if (rc->prev)
		rc->prev->next = rc->next;
	else
		c->head = rc->next;
	if (rc->next)
		rc->next->prev = rc->prev;
	else
		c->tail = rc->prev;
	rc->prev = rc->next = NULL;
	c->ncmds--;
}

/* Queue an already formatted command on c's output buffer; it is written
 * when the socket is next writable. 0 or PB_E*. */
static int conn_send_formatted(struct rconn *c, const char *cmd, size_t len)
{
	if (!c->open || c->dropping || c->state < RS_HANDSHAKE)
		return PB_ESTORE;
	if (c->ooff && c->ooff == c->olen)
		c->ooff = c->olen = 0;
	if (c->olen + len > c->ocap) {
		size_t want = c->olen - c->ooff + len, cap = c->ocap ? c->ocap : 4096;
		char *nb;

		if (c->ooff) {
			memmove(c->obuf, c->obuf + c->ooff, c->olen - c->ooff);
			c->olen -= c->ooff;
			c->ooff = 0;
		}
		while (cap < want)
			cap *= 2;
		if (cap > c->ocap) {
			nb = realloc(c->obuf, cap);
			if (!nb)
				return PB_ENOMEM;
			c->obuf = nb;
			c->ocap = cap;
		}
	}
	memcpy(c->obuf + c->olen, cmd, len);
	c->olen += len;
	conn_want(c);
	return 0;
}

/* The decimal digits of v at p (no NUL). -> how many. */
static size_t resp_put_len(char *p, size_t v)
{
	char t[20];
	size_t n = 0;

	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		p[i] = t[n - 1 - i];
	return n;
}

/* The number of decimal digits of v. */
static size_t resp_len_digits(size_t v)
{
	size_t n = 1;

	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

/* Encode argc arguments (argvlen NULL: strings) as one RESP command ("*N"
 * then "$len" and the bytes of each, every part ending in CRLF) into a
 * malloc'd buffer *out (the caller frees it). -> its length, or -1
 * without memory. Not
 * hiredis' redisFormatCommandArgv, which prints every length with
 * sprintf: under Redis load that was a twentieth of the process' time. */
static long resp_format(char **out, int argc, const char *const *argv, const size_t *argvlen)
{
	size_t total = 1 + resp_len_digits((size_t)argc) + 2, at;
	char *b;

#define RESP_ARG_LEN(i) (argvlen ? argvlen[i] : strlen(argv[i]))
	for (int i = 0; i < argc; i++)
		total += 1 + resp_len_digits(RESP_ARG_LEN(i)) + 2 + RESP_ARG_LEN(i) + 2;
	if (total > LONG_MAX || !(b = malloc(total)))
		return -1;
	b[0] = '*';
	at = 1 + resp_put_len(b + 1, (size_t)argc);
	b[at++] = '\r';
	b[at++] = '\n';
	for (int i = 0; i < argc; i++) {
		size_t n = RESP_ARG_LEN(i);

		b[at++] = '$';
		at += resp_put_len(b + at, n);
		b[at++] = '\r';
		b[at++] = '\n';
		if (n)
			memcpy(b + at, argv[i], n);
		at += n;
		b[at++] = '\r';
		b[at++] = '\n';
	}
#undef RESP_ARG_LEN
	*out = b;
	return (long)at;
}

/* Format argv and queue it on c. 0 or PB_E*. */
static int conn_send(struct rconn *c, int argc, const char *const *argv, const size_t *argvlen)
{
	char *cmd;
	long len;
	int rc;

	len = resp_format(&cmd, argc, argv, argvlen);
	if (len < 0)
		return PB_ENOMEM;
	rc = conn_send_formatted(c, cmd, (size_t)len);
	free(cmd);
	return rc;
}

/* Send an internal command on c, answered to cmd_reply. 0 or PB_E*. */
static int conn_send_internal(struct rconn *c, enum rcmd_kind kind, uint64_t deadline,
			      size_t script, int argc, const char *const *argv)
{
	struct rcmd *rc = rcmd_new(c, kind, deadline);
	int err;

	if (!rc)
		return PB_ENOMEM;
	rc->script = script;
	err = conn_send(c, argc, argv, NULL);
	if (err) {
		rcmd_free(rc);
		return err;
	}
	rcmd_link(rc);
	return 0;
}

/* The client's clock (loop time, ms). */
static uint64_t now_ms(const struct pb_redis *r)
{
	return uv_now(r->loop);
}

/* ---- WAIT groups -------------------------------------------------------- */

/* WAIT answered (ok: enough replicas) or failed: hand every member its
 * held reply, or PB_ESTORE. The members' callbacks run here. */
static void wait_answer(struct rcmd *w, int ok)
{
	redisReply *rep;
	struct rcmd *m;

	while ((m = w->held_head) != NULL) {
		w->held_head = m->hnext;
		if (!w->held_head)
			w->held_last = NULL;
		rep = m->held;
		m->held = NULL;
		pb_metrics_observe(PB_H_STORE_SECONDS, (double)(uv_hrtime() - m->sent_ns) / 1e9);
		m->cb(m->arg, ok ? 0 : PB_ESTORE, ok ? rep : NULL);
		freeReplyObject(rep);
		rcmd_free(m);
	}
}

/* The WAIT group that durable scripts queued now join: c's open one, made
 * if there is none. NULL on allocation failure. */
static struct rcmd *wait_group(struct rconn *c)
{
	if (!c->open_wait)
		c->open_wait = rcmd_new(c, RC_WAIT, 0);
	return c->open_wait;
}

/* Before c's output is written: put the WAIT of the open group behind the
 * scripts it covers. 0, or -1 if it cannot (c is dropped). */
static int wait_close_group(struct rconn *c)
{
	struct pb_redis *r = c->r;
	struct rcmd *w = c->open_wait;
	char n[16], ms[16];
	const char *argv[] = { "WAIT", n, ms };

	if (!w)
		return 0;
	c->open_wait = NULL;
	snprintf(n, sizeof(n), "%u", r->opts.wait_replicas);
	snprintf(ms, sizeof(ms), "%u", r->opts.wait_timeout_ms);
	w->deadline = now_ms(r) + r->opts.wait_timeout_ms + r->opts.command_timeout_ms;
	w->sent_ns = uv_hrtime();
	rcmd_link(w);
	if (conn_send(c, 3, argv, NULL)) {
		conn_fail(c, 1, "cannot send WAIT");
		return -1;
	}
	return 0;
}

/* The answer to a WAIT: the number of replicas that acknowledged. */
static void wait_reply(struct rcmd *w, const redisReply *reply)
{
	struct pb_redis *r = w->conn->r;
	int ok = reply->type == REDIS_REPLY_INTEGER &&
		 reply->integer >= (long long)r->opts.wait_replicas;

	if (!ok && now_ms(r) >= r->wait_warned + 10000) {
		r->wait_warned = now_ms(r);
		if (reply->type == REDIS_REPLY_INTEGER)
			pb_log_warn("redis: WAIT: %lld of %u replicas acknowledged within %u ms; "
				    "answering store_unavailable", reply->integer,
				    r->opts.wait_replicas, r->opts.wait_timeout_ms);
		else
			pb_log_warn("redis: WAIT refused: %.*s",
				    reply->str ? (int)(reply->len < 160 ? reply->len : 160) : 0,
				    reply->str ? reply->str : "");
	}
	wait_answer(w, ok);
}

/* ---- connection life ---------------------------------------------------- */

/* The one state setter: tells the user when the command connection comes
 * up or goes down, and when the subscriber connection is subscribed again. */
static void conn_set_state(struct rconn *c, enum rconn_state st)
{
	struct pb_redis *r = c->r;
	enum rconn_state old = c->state;

	if (old == st)
		return;
	c->state = st;
	if (st == RS_UP) {
		c->backoff_ms = RD_BACKOFF_MIN_MS;
		if (c->role == CR_CMD && !c->was_up)
			pb_log_info("redis: connected to %s:%d", c->host, c->port);
		else if (c->role == CR_CMD)
			pb_log_info("redis: reconnected to %s:%d", c->host, c->port);
		c->was_up = 1;
	}
	if (r->freeing || c->role == CR_SEN)
		return;
	if (c->role == CR_CMD) {
		if (st == RS_UP && r->opts.on_state)
			r->opts.on_state(r->opts.arg, 1);
		else if (old == RS_UP && r->opts.on_state)
			r->opts.on_state(r->opts.arg, 0);
	} else if (st == RS_UP && r->opts.on_resubscribed) {
		r->opts.on_resubscribed(r->opts.arg);
	}
}

/* Free r once everything asynchronous has finished. Only called from
 * libuv callbacks, never with a connection's callbacks on the stack. */
static void client_release(struct pb_redis *r)
{
	void *vals[64];
	size_t n;

	if (!r->freeing || r->busy)
		return;
	assert(!r->cmd.open && !r->sub.open && !r->sen.open);
	while ((n = pb_map_values(r->chans, vals, 64)) > 0) {
		for (size_t i = 0; i < n; i++) {
			struct rchan *ch = vals[i];

			pb_map_del(r->chans, ch->name, ch->len);
			free(ch);
		}
	}
	pb_map_free(r->chans);
	pb_rcl_release(r->cl);
	free(r->sha);
	free(r);
}

/* The tick timer's close callback. */
static void on_tick_closed(uv_handle_t *h)
{
	struct pb_redis *r = h->data;

	r->busy--;
	client_release(r);
}

/* A retry timer's close callback. */
static void on_retry_closed(uv_handle_t *h)
{
	struct rconn *c = h->data;

	c->r->busy--;
	client_release(c->r);
}

/* While freeing: close the tick once no poll handle is left. */
static void client_maybe_finish(struct pb_redis *r)
{
	if (!r->freeing || r->tick_closing || r->cmd.open || r->sub.open || r->sen.open)
		return;
	r->tick_closing = 1;
	uv_close((uv_handle_t *)&r->tick, on_tick_closed);
}

/* The retry timer: start the next attempt. */
static void conn_on_retry(uv_timer_t *t)
{
	conn_start(t->data);
}

static void sentinel_requery(struct pb_redis *r);

/* Try again after the backoff (which then doubles), or at once after a
 * kick. A failed attempt of a data connection in sentinel mode also asks
 * the sentinels again; a failed sentinel moves on to the next one. */
static void conn_retry_later(struct rconn *c)
{
	struct pb_redis *r = c->r;

	conn_set_state(c, RS_DOWN);
	if (r->freeing)
		return;
	if (c->kick) {
		c->kick = 0;
		uv_timer_start(&c->retry, conn_on_retry, 0, 0);
		return;
	}
	if (c->role == CR_SEN)
		r->sen_idx = (r->sen_idx + 1) % r->opts.url.nsentinels;
	else if (r->sentinel)
		sentinel_requery(r);
	uv_timer_start(&c->retry, conn_on_retry, c->backoff_ms, 0);
	c->backoff_ms = c->backoff_ms * 2 > RD_BACKOFF_MAX_MS ? RD_BACKOFF_MAX_MS
							    : c->backoff_ms * 2;
}

/* Forget c's pending sharded (un)subscriptions. */
static void pend_clear(struct rconn *c)
{
	struct rpend *p;

	while ((p = c->pend_head) != NULL) {
		c->pend_head = p->next;
		free(p);
	}
	c->pend_tail = NULL;
}

/* Remember a sharded (un)subscription just sent. 0 or PB_ENOMEM. */
static int pend_push(struct rconn *c, int unsub, const char *name, size_t len)
{
	struct rpend *p = malloc(sizeof(*p) + len);

	if (!p)
		return PB_ENOMEM;
	p->next = NULL;
	p->unsub = unsub;
	p->len = len;
	memcpy(p->name, name, len);
	if (c->pend_tail)
		c->pend_tail->next = p;
	else
		c->pend_head = p;
	c->pend_tail = p;
	return 0;
}

/* The poll handle of a dropped connection is closed: close the socket,
 * forget the connection's buffers and schedule the next attempt. */
static void conn_on_closed(uv_handle_t *h)
{
	struct rconn *c = h->data;
	struct pb_redis *r = c->r;

	assert(!c->head);
	close(c->fd);
	c->fd = -1;
	if (c->reader)
		redisReaderFree(c->reader);
	c->reader = NULL;
	free(c->obuf);
	c->obuf = NULL;
	c->olen = c->ooff = c->ocap = 0;
	c->open = 0;
	c->dropping = 0;
	c->events = 0;
	c->owed = 0;
	c->resub_left = 0;
	pend_clear(c);
	conn_retry_later(c);
	client_maybe_finish(r);
}

/* Tear c down: it goes down (the user hears of it), every pending command
 * fails with PB_ESTORE (each callback exactly once), and the poll handle
 * closes (conn_on_closed follows). Safe from any callback. */
static void conn_drop(struct rconn *c)
{
	struct rcmd *rc;

	if (!c->open || c->dropping)
		return;
	c->dropping = 1;
	conn_set_state(c, RS_DOWN);
	/* on_state(0) and the callbacks may free the client: the struct
	 * stays allocated until the handle below has closed */
	while ((rc = c->head) != NULL) {
		rcmd_unlink(rc);
		if (rc->kind == RC_USER || rc->kind == RC_EVAL)
			rc->cb(rc->arg, PB_ESTORE, NULL);
		else if (rc->kind == RC_WAIT)
			wait_answer(rc, 0);
		rcmd_free(rc);
	}
	if (c->open_wait) {
		wait_answer(c->open_wait, 0);
		rcmd_free(c->open_wait);
		c->open_wait = NULL;
	}
	uv_close((uv_handle_t *)&c->poll, conn_on_closed);
}

/* Log why c is being dropped (a warning if warn, else at debug level, so
 * that a Redis that is simply down does not fill the log), then drop it. */
static void conn_fail(struct rconn *c, int warn, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	if (!c->open || c->dropping)
		return;
	if (warn || pb_log_enabled(PB_LOG_DEBUG)) {
		va_start(ap, fmt);
		vsnprintf(why, sizeof(why), fmt, ap);
		va_end(ap);
		pb_log(warn ? PB_LOG_WARN : PB_LOG_DEBUG,
		       "redis: %s connection to %s:%d: %s; reconnecting", c->name, c->host,
		       c->port, why);
	}
	conn_drop(c);
}

static void conn_on_poll(uv_poll_t *h, int status, int events);

/* Make the poll handle watch what c needs now: writability while
 * connecting or while output is queued, readability once connected. */
static void conn_want(struct rconn *c)
{
	int want, err;

	if (!c->open || c->dropping)
		return;
	if (c->state == RS_CONNECTING)
		want = UV_WRITABLE;
	else
		want = UV_READABLE | (c->olen > c->ooff ? UV_WRITABLE : 0);
	if (want == c->events)
		return;
	err = uv_poll_start(&c->poll, want, conn_on_poll);
	if (err) {
		conn_fail(c, 1, "cannot poll the socket: %s", uv_strerror(err));
		return;
	}
	c->events = want;
}

/* Send the handshake on a freshly connected socket. The connection only
 * comes up (and the user hears of it) when the final PING is answered. */
static void conn_handshake(struct rconn *c)
{
	struct pb_redis *r = c->r;
	const struct pb_redis_url *u = &r->opts.url;
	uint64_t dl = c->attempt_deadline;
	int err = 0;
	char db[16];

	conn_set_state(c, RS_HANDSHAKE);
	if (c->role == CR_SEN) {
		const char *argv[] = { "SENTINEL", "get-master-addr-by-name", u->master };
		const char *sub[] = { "SUBSCRIBE", "+switch-master" };

		/* the subscription is confirmed after the answer (same pipeline) */
		err = conn_send_internal(c, RC_SENADDR, dl, 0, 3, argv);
		if (!err)
			err = conn_send(c, 2, sub, NULL);
		if (!err) {
			c->owed = 1;
			c->owed_deadline = dl;
			c->resub_left = 1;
		}
		if (err)
			conn_fail(c, 1, "cannot send the handshake: %s", pb_err_code(err));
		return;
	}
	if (u->password[0]) {
		const char *argv[] = { "AUTH", u->password };

		err = conn_send_internal(c, RC_AUTH, dl, 0, 2, argv);
	}
	if (!err && r->sentinel) {
		const char *argv[] = { "ROLE" };

		err = conn_send_internal(c, RC_ROLE, dl, 0, 1, argv);
	}
	if (!err && c->role == CR_CMD && u->db) {
		const char *argv[] = { "SELECT", db };

		snprintf(db, sizeof(db), "%d", u->db);
		err = conn_send_internal(c, RC_SELECT, dl, 0, 2, argv);
	}
	for (size_t i = 0; !err && c->role == CR_CMD && i < r->opts.nscripts; i++) {
		const char *argv[] = { "SCRIPT", "LOAD", r->opts.scripts[i] };

		err = conn_send_internal(c, RC_LOAD, dl, i, 3, argv);
	}
	if (!err) {
		const char *argv[] = { "PING" };

		err = conn_send_internal(c, RC_PING, dl, 0, 1, argv);
	}
	if (err)
		conn_fail(c, 1, "cannot send the handshake: %s", pb_err_code(err));
}

/* The reply object functions of every reader: hiredis' own, except that
 * an array of absurd size is refused before it is allocated. */
static redisReplyObjectFunctions rd_fns;
static void *(*rd_create_array)(const redisReadTask *task, int elements);

/* createArray with a bound: NULL (the reader's out-of-memory error) for
 * more than RD_MAX_ELEMENTS elements. */
static void *rd_bounded_array(const redisReadTask *task, int elements)
{
	if (elements > RD_MAX_ELEMENTS)
		return NULL;
	return rd_create_array(task, elements);
}

/* A reply parser with bounded arrays. NULL on allocation failure. */
static redisReader *reader_new(void)
{
	redisReader *rd = redisReaderCreate();

	if (!rd)
		return NULL;
	if (!rd_create_array) {
		rd_fns = *rd->fn;
		rd_create_array = rd_fns.createArray;
		rd_fns.createArray = rd_bounded_array;
	}
	rd->fn = &rd_fns;
	return rd;
}

/* The non-blocking connect finished (or failed): start the handshake. */
static void conn_on_connected(struct rconn *c)
{
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	if (soerr) {
		conn_fail(c, 0, "connect: %s", strerror(soerr));
		return;
	}
	c->reader = reader_new();
	if (!c->reader) {
		conn_fail(c, 1, "out of memory");
		return;
	}
	conn_handshake(c);
	conn_want(c);
}

/* Open a non-blocking TCP connection to sa. */
static void conn_connect(struct rconn *c, const struct sockaddr *sa, socklen_t salen)
{
	struct pb_redis *r = c->r;
	int fd, one = 1;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		pb_log_debug("redis: socket: %s", strerror(errno));
		conn_retry_later(c);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((connect(fd, sa, salen) < 0 && errno != EINPROGRESS) ||
	    uv_poll_init_socket(r->loop, &c->poll, fd) != 0) {
		pb_log_debug("redis: %s connection: connect: %s", c->name, strerror(errno));
		close(fd);
		conn_retry_later(c);
		return;
	}
	c->poll.data = c;
	c->fd = fd;
	c->open = 1;
	c->events = 0;
	conn_set_state(c, RS_CONNECTING);
	conn_want(c);
}

/* Connect to the numeric address sa (whose port is set here). */
static void conn_connect_addr(struct rconn *c, struct sockaddr_storage *ss)
{
	uint16_t port = htons((uint16_t)c->port);

	if (ss->ss_family == AF_INET) {
		((struct sockaddr_in *)(void *)ss)->sin_port = port;
		conn_connect(c, (struct sockaddr *)ss, sizeof(struct sockaddr_in));
	} else {
		((struct sockaddr_in6 *)(void *)ss)->sin6_port = port;
		conn_connect(c, (struct sockaddr *)ss, sizeof(struct sockaddr_in6));
	}
}

/* uv_getaddrinfo's answer: connect to the first IPv4 address, else the
 * first IPv6 one. */
static void conn_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct rconn *c = req->data;
	struct pb_redis *r = c->r;
	const struct addrinfo *ai, *pick = NULL;
	struct sockaddr_storage ss;

	c->gai_pending = 0;
	r->busy--;
	if (r->freeing) {
		uv_freeaddrinfo(res);
		client_release(r);
		return;
	}
	for (ai = status == 0 ? res : NULL; ai; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET) {
			pick = ai;
			break;
		}
		if (ai->ai_family == AF_INET6 && !pick)
			pick = ai;
	}
	memset(&ss, 0, sizeof(ss));
	if (pick && pick->ai_addrlen <= sizeof(ss))
		memcpy(&ss, pick->ai_addr, pick->ai_addrlen);
	uv_freeaddrinfo(res);
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) {
		pb_log_debug("redis: cannot resolve %s", c->host);
		conn_retry_later(c);
		return;
	}
	c->attempt_deadline = now_ms(r) + r->opts.connect_timeout_ms;
	conn_connect_addr(c, &ss);
}

/* Start a connection attempt: resolve the host unless it is numeric, then
 * connect. */
static void conn_start(struct rconn *c)
{
	struct pb_redis *r = c->r;
	const char *host;
	struct sockaddr_storage ss;
	struct addrinfo hints;

	if (r->freeing || c->open || c->gai_pending)
		return;
	if (c->role == CR_SEN) {
		const struct pb_redis_node *nd = &r->opts.url.sentinels[r->sen_idx];

		memcpy(c->host, nd->host, sizeof(c->host));
		c->port = nd->port;
	} else if (!r->addr_known) {
		return;         /* the sentinel's answer starts it */
	} else {
		memcpy(c->host, r->addr_host, sizeof(c->host));
		c->port = r->addr_port;
	}
	host = c->host;
	c->attempt_deadline = now_ms(r) + r->opts.connect_timeout_ms;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)(void *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
		conn_connect_addr(c, &ss);
		return;
	}
	if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)(void *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
		conn_connect_addr(c, &ss);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	c->gai.data = c;
	if (uv_getaddrinfo(r->loop, &c->gai, conn_on_resolved, host, NULL, &hints)) {
		conn_retry_later(c);
		return;
	}
	c->gai_pending = 1;
	r->busy++;
	conn_set_state(c, RS_RESOLVING);
}

/* ---- replies -------------------------------------------------------------- */

/* 1 if reply is the status text want. */
static int reply_is_status(const redisReply *reply, const char *want)
{
	return reply->type == REDIS_REPLY_STATUS && reply->str && !strcmp(reply->str, want);
}

/* Store a SCRIPT LOAD answer as script i's SHA. 0, or -1 if malformed. */
static int store_sha(struct pb_redis *r, size_t i, const redisReply *reply)
{
	if (reply->type != REDIS_REPLY_STRING || reply->len != RD_SHA_LEN || !reply->str)
		return -1;
	for (size_t k = 0; k < RD_SHA_LEN; k++)
		if (!isxdigit((unsigned char)reply->str[k]))
			return -1;
	memcpy(r->sha[i], reply->str, RD_SHA_LEN);
	r->sha[i][RD_SHA_LEN] = '\0';
	return 0;
}

/* 1 if reply is a NOSCRIPT error. */
static int reply_is_noscript(const redisReply *reply)
{
	return reply->type == REDIS_REPLY_ERROR && reply->str && reply->len >= 8 &&
	       !strncmp(reply->str, "NOSCRIPT", 8);
}

/* After NOSCRIPT: SCRIPT LOAD the script again and resend rc's EVALSHA
 * behind it. 0 if rc is queued again (its callback stays pending). */
static int eval_retry(struct rcmd *rc)
{
	struct rconn *c = rc->conn;
	struct pb_redis *r = c->r;
	uint64_t dl = now_ms(r) + r->opts.command_timeout_ms;
	const char *argv[] = { "SCRIPT", "LOAD", r->opts.scripts[rc->script] };
	struct rcmd *w = NULL;

	/* a durable script's WAIT went out already: the retry needs another */
	if (rc->wait && !(w = wait_group(c)))
		return -1;
	if (conn_send_internal(c, RC_RELOAD, dl, rc->script, 3, argv))
		return -1;
	if (conn_send_formatted(c, rc->evalcmd, rc->evallen))
		return -1;
	rc->wait = w;
	rc->retried = 1;
	rc->deadline = dl;
	rcmd_link(rc);
	return 0;
}

/* sub_resubscribe() for a cluster node: one SSUBSCRIBE per channel of the
 * n in the set (the channels of one SSUBSCRIBE must share a slot). */
static void sub_resubscribe_sharded(struct rconn *c, size_t n)
{
	struct pb_redis *r = c->r;
	void **vals = calloc(n, sizeof(*vals));
	size_t got;
	int err = 0;

	if (!vals) {
		conn_fail(c, 1, "cannot subscribe: %s", pb_err_code(PB_ENOMEM));
		return;
	}
	got = pb_map_values(r->chans, vals, n);
	for (size_t i = 0; i < got && !err; i++) {
		const struct rchan *ch = vals[i];
		const char *argv[] = { "SSUBSCRIBE", ch->name };
		size_t lens[] = { 10, ch->len };

		err = conn_send(c, 2, argv, lens);
		if (!err)
			err = pend_push(c, 0, ch->name, ch->len);
		if (!err)
			c->owed++;
	}
	free(vals);
	if (err) {
		conn_fail(c, 1, "cannot subscribe: %s", pb_err_code(err));
		return;
	}
	c->owed_deadline = now_ms(r) + r->opts.command_timeout_ms;
	c->resub_left = got;
	if (!got)
		conn_set_state(c, RS_UP);
}

/* The subscriber connection answered its PING: subscribe to every channel
 * of the set in one command; up at once if there is none. */
static void sub_resubscribe(struct rconn *c)
{
	struct pb_redis *r = c->r;
	size_t n = pb_map_count(r->chans), got;
	const char **argv;
	size_t *lens;
	void **vals;
	int err = PB_ENOMEM;

	conn_set_state(c, RS_SUBSCRIBING);
	if (!n) {
		conn_set_state(c, RS_UP);
		return;
	}
	if (r->opts.cluster_node) {
		sub_resubscribe_sharded(c, n);
		return;
	}
	argv = calloc(n + 1, sizeof(*argv));
	lens = calloc(n + 1, sizeof(*lens));
	vals = calloc(n, sizeof(*vals));
	if (argv && lens && vals && n < INT_MAX) {
		got = pb_map_values(r->chans, vals, n);
		argv[0] = "SUBSCRIBE";
		lens[0] = 9;
		for (size_t i = 0; i < got; i++) {
			const struct rchan *ch = vals[i];

			argv[i + 1] = ch->name;
			lens[i + 1] = ch->len;
		}
		err = conn_send(c, (int)got + 1, argv, lens);
		if (!err) {
			c->owed += got;
			c->owed_deadline = now_ms(r) + r->opts.command_timeout_ms;
			c->resub_left = got;
		}
	}
	free(argv);
	free(lens);
	free(vals);
	if (err)
		conn_fail(c, 1, "cannot subscribe: %s", pb_err_code(err));
}

/* Handle a handshake reply (AUTH, SELECT, SCRIPT LOAD, PING). */
static void handshake_reply(struct rcmd *rc, const redisReply *reply)
{
	struct rconn *c = rc->conn;
	int ok;

	if (c->dropping || c->state != RS_HANDSHAKE)
		return;
	switch (rc->kind) {
	case RC_AUTH:
	case RC_SELECT:
		ok = reply_is_status(reply, "OK");
		break;
	case RC_LOAD:
		ok = store_sha(c->r, rc->script, reply) == 0;
		break;
	case RC_PING:
		ok = reply_is_status(reply, "PONG");
		break;
	case RC_ROLE:
		ok = reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
		     el_is_string(reply, 0) && !strcmp(reply->element[0]->str, "master");
		if (!ok && reply->type != REDIS_REPLY_ERROR) {
			conn_fail(c, 1, "not the primary (ROLE %.16s); asking the sentinels again",
				  reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
				  el_is_string(reply, 0) ? reply->element[0]->str : "?");
			sentinel_requery(c->r);
			return;
		}
		break;
	case RC_SENADDR:
		sentinel_addr_reply(c, reply);
		return;
	default:
		ok = 0;
		break;
	}
	if (!ok && reply->type == REDIS_REPLY_ERROR)
		conn_fail(c, 1, "handshake refused: %.*s", (int)(reply->len < 160 ? reply->len : 160),
			  reply->str);
	else if (!ok)
		conn_fail(c, 1, "unexpected handshake reply (type %d)", reply->type);
	else if (rc->kind == RC_PING && c->role == CR_SUB)
		sub_resubscribe(c);
	else if (rc->kind == RC_PING)
		conn_set_state(c, RS_UP);
}

/* On a single server (not a node of a cluster client): log, now and then,
 * that a redirection means the server is a Redis Cluster node. */
static void redirect_warn(struct rconn *c, const redisReply *reply)
{
	struct pb_redis *r = c->r;

	if (r->opts.cluster_node || reply->type != REDIS_REPLY_ERROR || !reply->str ||
	    (strncmp(reply->str, "MOVED ", 6) && strncmp(reply->str, "ASK ", 4) &&
	     strncmp(reply->str, "CLUSTERDOWN", 11)) ||
	    (r->cluster_warned && now_ms(r) < r->cluster_warned + 10000))
		return;
	r->cluster_warned = now_ms(r);
	pb_log_error("redis: %s:%d is a Redis Cluster node (it answered %.40s): use a "
		     "redis+cluster://%s:%d/ store URL", c->host, c->port, reply->str, c->host,
		     c->port);
}

/* The reply to rc, the head of its connection's FIFO. 1 if the reply was
 * kept (a durable script's, held until its WAIT answers), else 0: the
 * caller frees it. */
static int cmd_reply(struct rcmd *rc, redisReply *reply)
{
	struct rconn *c = rc->conn;

	rcmd_unlink(rc);
	switch (rc->kind) {
	case RC_EVAL:
		if (!rc->retried && reply_is_noscript(reply) && c->state == RS_UP &&
		    eval_retry(rc) == 0)
			return 0;
		if (rc->wait) {
			rc->held = reply;
			if (rc->wait->held_last)
				rc->wait->held_last->hnext = rc;
			else
				rc->wait->held_head = rc;
			rc->wait->held_last = rc;
			return 1;
		}
		/* fall through */
	case RC_USER:
		redirect_warn(c, reply);
		pb_metrics_observe(PB_H_STORE_SECONDS, (double)(uv_hrtime() - rc->sent_ns) / 1e9);
		rc->cb(rc->arg, 0, reply);
		break;
	case RC_RELOAD:
		/* a failed reload leaves the retry's NOSCRIPT as the answer */
		store_sha(c->r, rc->script, reply);
		break;
	case RC_WAIT:
		wait_reply(rc, reply);
		break;
	default:
		handshake_reply(rc, reply);
		break;
	}
	rcmd_free(rc);
	return 0;
}

/* 1 if element i of the array reply is a string. */
static int el_is_string(const redisReply *reply, size_t i)
{
	return reply->element[i] && reply->element[i]->type == REDIS_REPLY_STRING &&
	       reply->element[i]->str;
}

/* One confirmation owed by the subscriber connection has arrived (subscribe
 * counts towards the re-subscription). */
static void sub_confirmed(struct rconn *c, int subscribe)
{
	if (c->owed)
		c->owed--;
	c->owed_deadline = now_ms(c->r) + c->r->opts.command_timeout_ms;
	if (subscribe && c->resub_left && --c->resub_left == 0)
		conn_set_state(c, RS_UP);
}

/* A cluster node no longer has channel [name, name + len) for us: forget
 * it (a later subscribe starts afresh) and tell the cluster client. */
static void sub_lost(struct rconn *c, const char *name, size_t len)
{
	struct pb_redis *r = c->r;
	struct rchan *ch = pb_map_get(r->chans, name, len);

	if (ch) {
		pb_map_del(r->chans, ch->name, ch->len);
		free(ch);
	}
	pb_log_debug("redis: %s:%d: no subscription to %.*s any more", c->host, c->port,
		     (int)(len < 80 ? len : 80), name);
	if (!r->freeing && r->opts.on_dropped)
		r->opts.on_dropped(r->opts.arg, name, len);
}

/* sub_push() on a cluster node (sharded pub/sub, RESP2 frames): smessage;
 * the answers to our SSUBSCRIBEs and SUNSUBSCRIBEs, in order (c->pend_*),
 * an error being a refusal (MOVED while the map is stale: the channel is
 * dropped and the cluster client told); and a sunsubscribe pushed by the
 * server when a channel's slot moved away (the same). 1 if handled here,
 * 0 for sub_push()'s common checks. */
static int sub_push_sharded(struct rconn *c, const redisReply *reply)
{
	struct pb_redis *r = c->r;
	struct rpend *p = c->pend_head;
	redisReply **el;
	struct rchan *ch;
	int ours;

	if (reply->type == REDIS_REPLY_ERROR) {
		if (!p) {
			conn_fail(c, 1, "an error nobody asked for: %.*s",
				  (int)(reply->len < 120 ? reply->len : 120), reply->str);
			return 1;
		}
		c->pend_head = p->next;
		if (!c->pend_head)
			c->pend_tail = NULL;
		sub_confirmed(c, !p->unsub);
		if (!p->unsub)
			sub_lost(c, p->name, p->len);
		free(p);
		return 1;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 || !el_is_string(reply, 0) ||
	    !el_is_string(reply, 1))
		return 0;
	el = reply->element;
	if (!strcasecmp(el[0]->str, "smessage")) {
		if (!el_is_string(reply, 2)) {
			conn_fail(c, 1, "a pub/sub message whose payload is not a string");
			return 1;
		}
		ch = pb_map_get(r->chans, el[1]->str, el[1]->len);
		if (ch && !r->freeing && r->opts.on_message)
			r->opts.on_message(r->opts.arg, el[1]->str, el[1]->len, el[2]->str,
					   el[2]->len);
		return 1;
	}
	if ((strcasecmp(el[0]->str, "ssubscribe") && strcasecmp(el[0]->str, "sunsubscribe")) ||
	    !el[2] || el[2]->type != REDIS_REPLY_INTEGER)
		return 0;
	ours = p && p->len == el[1]->len && !memcmp(p->name, el[1]->str, p->len) &&
	       p->unsub == !strcasecmp(el[0]->str, "sunsubscribe");
	if (!strcasecmp(el[0]->str, "ssubscribe") && !ours) {
		conn_fail(c, 1, "an ssubscribe confirmation nobody asked for");
		return 1;
	}
	if (ours) {
		c->pend_head = p->next;
		if (!c->pend_head)
			c->pend_tail = NULL;
		sub_confirmed(c, !p->unsub);
		free(p);
		if (!strcasecmp(el[0]->str, "ssubscribe") && !r->freeing && r->opts.on_subscribed)
			r->opts.on_subscribed(r->opts.arg, el[1]->str, el[1]->len);
		return 1;
	}
	/* pushed by the server: this node no longer serves the channel */
	sub_lost(c, el[1]->str, el[1]->len);
	return 1;
}

/* A push on the subscriber connection: a message, or the confirmation of
 * a SUBSCRIBE or UNSUBSCRIBE. Anything else drops the connection. */
static void sub_push(struct rconn *c, const redisReply *reply)
{
	struct pb_redis *r = c->r;
	redisReply **el;
	const char *kind;
	struct rchan *ch;

	if (r->opts.cluster_node && sub_push_sharded(c, reply))
		return;
	if (reply->type != REDIS_REPLY_ARRAY) {
		conn_fail(c, 1, "a reply of type %d where a pub/sub array was expected",
			  reply->type);
		return;
	}
	if (reply->elements != 3 || !el_is_string(reply, 0) || !el_is_string(reply, 1)) {
		conn_fail(c, 1, "a malformed pub/sub frame (%zu elements)", reply->elements);
		return;
	}
	el = reply->element;
	kind = el[0]->str;
	if (!strcasecmp(kind, "message")) {
		if (!el_is_string(reply, 2)) {
			conn_fail(c, 1, "a pub/sub message whose payload is not a string");
			return;
		}
		ch = pb_map_get(r->chans, el[1]->str, el[1]->len);
		if (ch && !r->freeing && r->opts.on_message)
			r->opts.on_message(r->opts.arg, el[1]->str, el[1]->len, el[2]->str,
					   el[2]->len);
		return;
	}
	if ((strcasecmp(kind, "subscribe") && strcasecmp(kind, "unsubscribe")) ||
	    !el[2] || el[2]->type != REDIS_REPLY_INTEGER) {
		conn_fail(c, 1, "an unexpected pub/sub frame \"%.32s\"", kind);
		return;
	}
	if (!c->owed) {
		conn_fail(c, 1, "a %.16s confirmation nobody asked for", kind);
		return;
	}
	c->owed--;
	c->owed_deadline = now_ms(r) + r->opts.command_timeout_ms;
	if (!strcasecmp(kind, "subscribe") && c->resub_left && --c->resub_left == 0)
		conn_set_state(c, RS_UP);
}

/* ---- sentinel ---------------------------------------------------------- */

/* Restart a data connection towards the (new) primary now: drop it if it
 * is open (its pending commands fail with PB_ESTORE), else start it. */
static void conn_kick(struct rconn *c)
{
	struct pb_redis *r = c->r;

	if (c->open) {
		c->kick = 1;
		if (!c->dropping)
			conn_fail(c, c->state == RS_UP, "the primary is now %s:%d", r->addr_host,
				  r->addr_port);
	} else if (!c->gai_pending) {
		uv_timer_stop(&c->retry);
		conn_start(c);
	}
}

/* Ask the sentinels again (a data connection failed, or found a replica):
 * drop the sentinel connection if it has answered; its next attempt
 * starts at once. Nothing if an attempt is in progress or waits. */
static void sentinel_requery(struct pb_redis *r)
{
	struct rconn *c = &r->sen;

	if (r->freeing || !c->open || c->dropping || c->state < RS_SUBSCRIBING)
		return;
	c->kick = 1;
	conn_fail(c, 0, "asking for the primary again");
}

/* A sentinel named the primary: if it moved, point the data connections
 * at it. host is NUL-terminated. */
static void sentinel_set_primary(struct pb_redis *r, const char *host, int port,
				 const char *why)
{
	if (r->addr_known && r->addr_port == port && !strcmp(r->addr_host, host))
		return;
	pb_log_info("redis: %s: the primary of %s is %s:%d", why, r->opts.url.master, host, port);
	snprintf(r->addr_host, sizeof(r->addr_host), "%s", host);
	r->addr_port = port;
	r->addr_known = 1;
	conn_kick(&r->cmd);
	conn_kick(&r->sub);
}

/* Parse a port in [p, p + len). 0 if it is not one. */
static int parse_port(const char *p, size_t len)
{
	uint64_t v;

	return pb_parse_uint53(p, len, &v) || v < 1 || v > 65535 ? 0 : (int)v;
}

/* 1 if [p, p + len) is a plausible host name or address. */
static int host_ok(const char *p, size_t len)
{
	if (!len || len >= 256)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)p[i]) && !strchr(".-_:", p[i]))
			return 0;
	return 1;
}

/* The answer to SENTINEL get-master-addr-by-name: [host, port], or nil
 * when this sentinel does not know the master (try the next one). */
static void sentinel_addr_reply(struct rconn *c, const redisReply *reply)
{
	struct pb_redis *r = c->r;
	char host[256];
	int port;

	if (reply->type == REDIS_REPLY_NIL) {
		conn_fail(c, 1, "this sentinel does not know the master %s", r->opts.url.master);
		return;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		conn_fail(c, 1, "refused: %.*s", (int)(reply->len < 160 ? reply->len : 160),
			  reply->str);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || !el_is_string(reply, 0) ||
	    !el_is_string(reply, 1) || !host_ok(reply->element[0]->str, reply->element[0]->len) ||
	    !(port = parse_port(reply->element[1]->str, reply->element[1]->len))) {
		conn_fail(c, 1, "a malformed answer for the primary's address");
		return;
	}
	memcpy(host, reply->element[0]->str, reply->element[0]->len);
	host[reply->element[0]->len] = '\0';
	conn_set_state(c, RS_SUBSCRIBING);
	sentinel_set_primary(r, host, port, "sentinel");
}

/* A push on the sentinel connection: the confirmation of SUBSCRIBE
 * +switch-master, or a switch: "<master> <old-ip> <old-port> <new-ip>
 * <new-port>". Anything else drops the connection. */
static void sentinel_push(struct rconn *c, const redisReply *reply)
{
	struct pb_redis *r = c->r;
	char buf[600], name[128], oh[256], op[8], nh[256], np[8];
	const redisReply *m;

	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 || !el_is_string(reply, 0) ||
	    !el_is_string(reply, 1)) {
		conn_fail(c, 1, "a malformed pub/sub frame");
		return;
	}
	if (!strcasecmp(reply->element[0]->str, "subscribe")) {
		if (!c->owed) {
			conn_fail(c, 1, "a subscribe confirmation nobody asked for");
			return;
		}
		c->owed--;
		if (c->resub_left && --c->resub_left == 0)
			conn_set_state(c, RS_UP);
		return;
	}
	m = reply->element[2];
	if (strcasecmp(reply->element[0]->str, "message") || !el_is_string(reply, 2) ||
	    m->len >= sizeof(buf)) {
		conn_fail(c, 1, "an unexpected pub/sub frame");
		return;
	}
	memcpy(buf, m->str, m->len);
	buf[m->len] = '\0';
	if (sscanf(buf, "%127s %255s %7s %255s %7s", name, oh, op, nh, np) != 5 ||
	    !host_ok(nh, strlen(nh)) || !parse_port(np, strlen(np))) {
		pb_log_warn("redis: sentinel %s:%d: a malformed +switch-master", c->host, c->port);
		return;
	}
	if (!strcmp(name, r->opts.url.master))
		sentinel_set_primary(r, nh, parse_port(np, strlen(np)), "+switch-master");
}

/* Route one complete reply (owned; freed here): to the oldest pending
 * command, else, on a subscribed subscriber connection, to sub_push. */
static void conn_dispatch(struct rconn *c, redisReply *reply)
{
	if (c->head) {
		if (cmd_reply(c->head, reply))
			return;
	} else if (c->role == CR_SUB && (c->state == RS_SUBSCRIBING || c->state == RS_UP)) {
		sub_push(c, reply);
	} else if (c->role == CR_SEN && (c->state == RS_SUBSCRIBING || c->state == RS_UP)) {
		sentinel_push(c, reply);
	} else {
		conn_fail(c, 1, "a reply (type %d) with no command pending", reply->type);
	}
	freeReplyObject(reply);
}

/* After the parser ran out of complete replies: refuse a partial reply
 * that is already, or announces to be, larger than RD_MAX_REPLY. 0 or -1
 * (c dropped). Relies on hiredis 0.14's reader: while a bulk string is
 * incomplete, the current task has the string type and the cursor is on
 * the length digits. */
static int conn_check_partial(struct rconn *c)
{
	const redisReader *rd = c->reader;
	size_t avail = rd->len - rd->pos;
	unsigned long long n = 0;

	if (avail > RD_MAX_REPLY) {
		conn_fail(c, 1, "a reply larger than %llu bytes", RD_MAX_REPLY);
		return -1;
	}
	if (!avail || rd->ridx < 0 || rd->ridx > 8 ||
	    rd->rstack[rd->ridx].type != REDIS_REPLY_STRING)
		return 0;
	for (size_t i = 0; i < avail && i < 24; i++) {
		char ch = rd->buf[rd->pos + i];

		if (ch < '0' || ch > '9')
			break;
		n = n * 10 + (unsigned long long)(ch - '0');
		if (n > RD_MAX_REPLY) {
			conn_fail(c, 1, "a bulk string longer than %llu bytes announced",
				  RD_MAX_REPLY);
			return -1;
		}
	}
	return 0;
}

/* Read what the socket has, parse it and dispatch every complete reply. */
static void conn_read(struct rconn *c)
{
	char buf[RD_READ_CHUNK];
	void *reply;
	ssize_t n;

	n = read(c->fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		conn_fail(c, 1, "%s", n ? strerror(errno) : "closed by the server");
		return;
	}
	if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
		conn_fail(c, 1, "out of memory");
		return;
	}
	for (;;) {
		reply = NULL;
		if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
			conn_fail(c, 1, "protocol error: %s",
				  c->reader->err == REDIS_ERR_OOM
					  ? "reply too large (or out of memory)"
					  : c->reader->errstr);
			return;
		}
		if (!reply)
			break;
		conn_dispatch(c, reply);
		if (c->dropping || !c->open)
			return;
	}
	conn_check_partial(c);
}

/* Write as much of the output buffer as the socket takes. 0 or -1
 * (c dropped). */
static int conn_flush(struct rconn *c)
{
	ssize_t n;

	if (wait_close_group(c))
		return -1;
	while (c->olen > c->ooff) {
		n = send(c->fd, c->obuf + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0) {
			conn_fail(c, 1, "write: %s", n ? strerror(errno) : "no progress");
			return -1;
		}
		c->ooff += (size_t)n;
	}
	c->ooff = c->olen = 0;
	if (c->ocap > (1u << 20)) {
		free(c->obuf);
		c->obuf = NULL;
		c->ocap = 0;
	}
	return 0;
}

/* The poll handle's callback: connect completion, output, input. */
static void conn_on_poll(uv_poll_t *h, int status, int events)
{
	struct rconn *c = h->data;

	if (c->dropping || !c->open)
		return;
	if (status < 0) {
		conn_fail(c, c->state >= RS_HANDSHAKE, "%s", uv_strerror(status));
		return;
	}
	if (c->state == RS_CONNECTING) {
		conn_on_connected(c);
		return;
	}
	if ((events & UV_WRITABLE) && conn_flush(c))
		return;
	if (events & (UV_READABLE | UV_DISCONNECT))
		conn_read(c);
	conn_want(c);
}

/* Send SUBSCRIBE or UNSUBSCRIBE for one channel if the subscriber
 * connection is live; otherwise the next (re)subscribe takes care of it. */
static void sub_send(struct pb_redis *r, const char *verb, const struct rchan *ch)
{
	struct rconn *c = &r->sub;
	const char *argv[] = { verb, ch->name };
	size_t lens[] = { strlen(verb), ch->len };

	if (c->state != RS_SUBSCRIBING && c->state != RS_UP)
		return;
	if (conn_send(c, 2, argv, lens))
		return;
	if (r->opts.cluster_node &&
	    pend_push(c, !strcmp(verb, "SUNSUBSCRIBE"), ch->name, ch->len)) {
		conn_fail(c, 1, "out of memory");
		return;
	}
	if (!c->owed)
		c->owed_deadline = now_ms(r) + r->opts.command_timeout_ms;
	c->owed++;
}

/* ---- timeouts --------------------------------------------------------- */

/* Check one connection's deadlines; drop it if one has passed. */
static void conn_check(struct rconn *c, uint64_t now)
{
	if (!c->open || c->dropping)
		return;
	if (c->state != RS_UP && now >= c->attempt_deadline)
		conn_fail(c, c->state >= RS_HANDSHAKE, "%s timed out",
			  c->state >= RS_HANDSHAKE ? "the handshake" : "connect");
	else if (c->head && now >= c->head->deadline)
		conn_fail(c, 1, "a command timed out");
	else if (c->owed && now >= c->owed_deadline)
		conn_fail(c, 1, "a subscription confirmation timed out");
}

/* The 100 ms tick. */
static void on_tick(uv_timer_t *t)
{
	struct pb_redis *r = t->data;
	uint64_t now = now_ms(r);

	conn_check(&r->cmd, now);
	conn_check(&r->sub, now);
	conn_check(&r->sen, now);
	if (r->cl)
		pb_rcl_tick(r->cl);
}
/* ---- API ---------------------------------------------------------------- */

/* Set up one connection's fields and retry timer. */
static void conn_init(struct pb_redis *r, struct rconn *c, enum rconn_role role)
{
	static const char *const names[] = { "command", "subscriber", "sentinel" };

	c->r = r;
	c->role = role;
	c->name = names[role];
	c->fd = -1;
	c->state = RS_DOWN;
	c->backoff_ms = RD_BACKOFF_MIN_MS;
	uv_timer_init(r->loop, &c->retry);
	c->retry.data = c;
	r->busy++;
}

struct pb_redis *pb_redis_new(uv_loop_t *loop, const struct pb_redis_opts *opts)
{
	struct pb_redis *r;

	assert(loop && opts);
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->loop = loop;
	r->opts = *opts;
	if (!r->opts.connect_timeout_ms)
		r->opts.connect_timeout_ms = RD_DEFAULT_TIMEOUT_MS;
	if (!r->opts.command_timeout_ms)
		r->opts.command_timeout_ms = RD_DEFAULT_TIMEOUT_MS;
	if (!r->opts.wait_timeout_ms)
		r->opts.wait_timeout_ms = RD_DEFAULT_TIMEOUT_MS;
	r->sentinel = r->opts.url.nsentinels > 0;
	if (!r->sentinel) {
		r->addr_known = 1;
		memcpy(r->addr_host, r->opts.url.host, sizeof(r->addr_host));
		r->addr_port = r->opts.url.port;
	}
	r->sha = calloc(opts->nscripts ? opts->nscripts : 1, sizeof(*r->sha));
	r->chans = pb_map_new();
	if (!r->sha || !r->chans) {
		pb_map_free(r->chans);
		free(r->sha);
		free(r);
		return NULL;
	}
	uv_timer_init(loop, &r->tick);
	r->tick.data = r;
	r->busy++;
	conn_init(r, &r->cmd, CR_CMD);
	conn_init(r, &r->sub, CR_SUB);
	conn_init(r, &r->sen, CR_SEN);
	uv_timer_start(&r->tick, on_tick, RD_TICK_MS, RD_TICK_MS);
	if (r->opts.url.nseeds) {
		/* a cluster client: its own connections stay unused */
		r->cl = pb_rcl_new(loop, &r->opts);
		if (!r->cl) {
			pb_redis_free(r);
			return NULL;
		}
		return r;
	}
	if (r->sentinel)
		conn_start(&r->sen);    /* its answer starts the other two */
	conn_start(&r->cmd);
	conn_start(&r->sub);
	return r;
}

void pb_redis_free(struct pb_redis *r)
{
	if (!r || r->freeing)
		return;
	r->freeing = 1;
	pb_rcl_shutdown(r->cl);
	uv_close((uv_handle_t *)&r->cmd.retry, on_retry_closed);
	uv_close((uv_handle_t *)&r->sub.retry, on_retry_closed);
	uv_close((uv_handle_t *)&r->sen.retry, on_retry_closed);
	if (r->cmd.gai_pending)
		uv_cancel((uv_req_t *)&r->cmd.gai);
	if (r->sub.gai_pending)
		uv_cancel((uv_req_t *)&r->sub.gai);
	if (r->sen.gai_pending)
		uv_cancel((uv_req_t *)&r->sen.gai);
	conn_drop(&r->cmd);
	conn_drop(&r->sub);
	conn_drop(&r->sen);
	client_maybe_finish(r);
}

int pb_redis_ready(const struct pb_redis *r)
{
	if (r->cl)
		return !r->freeing && pb_rcl_ready(r->cl);
	return !r->freeing && r->cmd.state == RS_UP;
}

int pb_redis_is_cluster(const struct pb_redis *r)
{
	return r->cl != NULL;
}

/* 1 if argv[0] would break the one-reply-per-command bookkeeping on
 * the command connection (pub/sub, MONITOR, CLIENT REPLY). */
static int command_refused(int argc, const char *const *argv, const size_t *argvlen)
{
	static const char *const bad[] = {
		"subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe",
		"sunsubscribe", "monitor",
	};
	size_t len = argvlen ? argvlen[0] : strlen(argv[0]);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (len == strlen(bad[i]) && !strncasecmp(argv[0], bad[i], len))
			return 1;
	if (argc > 1 && len == 6 && !strncasecmp(argv[0], "client", 6)) {
		size_t l1 = argvlen ? argvlen[1] : strlen(argv[1]);

		return l1 == 5 && !strncasecmp(argv[1], "reply", 5);
	}
	return 0;
}

/* Common checks before a user command. 0 or the refusal. */
static int command_admissible(const struct pb_redis *r)
{
	if (r->freeing || r->cmd.state != RS_UP || !r->cmd.open || r->cmd.dropping)
		return PB_ESTORE;
	if (r->cmd.ncmds >= RD_MAX_INFLIGHT)
		return PB_EQFULL;
	return 0;
}

int pb_redis_command(struct pb_redis *r, pb_redis_cb cb, void *arg, int argc,
		     const char *const *argv, const size_t *argvlen)
{
	return pb_redis_command_key(r, argc > 1 ? 1 : -1, cb, arg, argc, argv, argvlen);
}

int pb_redis_command_key(struct pb_redis *r, int key, pb_redis_cb cb, void *arg, int argc,
			 const char *const *argv, const size_t *argvlen)
{
	struct rcmd *rc;
	int err;

	assert(r && cb);
	if (r->cl && argc >= 1 && argv && command_refused(argc, argv, argvlen))
		return PB_EBADREQ;
	if (r->cl)
		return r->freeing ? PB_ESTORE
				  : pb_rcl_command(r->cl, key, cb, arg, argc, argv, argvlen);
	err = command_admissible(r);
	if (err)
		return err;
	if (argc < 1 || !argv || command_refused(argc, argv, argvlen))
		return PB_EBADREQ;
	rc = rcmd_new(&r->cmd, RC_USER, now_ms(r) + r->opts.command_timeout_ms);
	if (!rc)
		return PB_ENOMEM;
	rc->cb = cb;
	rc->arg = arg;
	err = conn_send(&r->cmd, argc, argv, argvlen);
	if (err) {
		rcmd_free(rc);
		return err;
	}
	rcmd_link(rc);
	return 0;
}

/* pb_redis_eval() and pb_redis_eval_durable() (durable: join the open
 * WAIT group). */
static int eval_send(struct pb_redis *r, size_t script, int nkeys, int argc,
		     const char *const *argv, const size_t *argvlen, pb_redis_cb cb, void *arg,
		     int durable)
{
	struct rcmd *rc = NULL, *w = NULL;
	const char **av = NULL;
	size_t *lens = NULL;
	char nk[16];
	long len;
	int err;

	assert(r && cb);
	if (r->cl)
		return r->freeing ? PB_ESTORE
				  : pb_rcl_eval(r->cl, script, nkeys, argc, argv, argvlen, cb, arg,
						durable);
	err = command_admissible(r);
	if (err)
		return err;
	if (script >= r->opts.nscripts || nkeys < 0 || argc < nkeys || argc > INT_MAX - 3 ||
	    (argc && !argv) || !r->sha[script][0])
		return PB_EBADREQ;
	err = PB_ENOMEM;
	av = malloc(((size_t)argc + 3) * sizeof(*av));
	lens = malloc(((size_t)argc + 3) * sizeof(*lens));
	rc = rcmd_new(&r->cmd, RC_EVAL, now_ms(r) + r->opts.command_timeout_ms);
	if (durable)
		w = wait_group(&r->cmd);
	if (!av || !lens || !rc || (durable && !w))
		goto out;
	snprintf(nk, sizeof(nk), "%d", nkeys);
	av[0] = "EVALSHA";
	av[1] = r->sha[script];
	av[2] = nk;
	for (int i = 0; i < argc; i++) {
		av[i + 3] = argv[i];
		lens[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
	}
	for (int i = 0; i < 3; i++)
		lens[i] = strlen(av[i]);
	len = resp_format(&rc->evalcmd, argc + 3, av, lens);
	if (len < 0) {
		rc->evalcmd = NULL;
		goto out;
	}
	rc->evallen = (size_t)len;
	rc->script = script;
	rc->cb = cb;
	rc->arg = arg;
	err = conn_send_formatted(&r->cmd, rc->evalcmd, rc->evallen);
	if (err)
		goto out;
	rc->wait = w;
	rcmd_link(rc);
	rc = NULL;
out:
	if (rc)
		rcmd_free(rc);
	free(av);
	free(lens);
	return err;
}

int pb_redis_eval(struct pb_redis *r, size_t script, int nkeys, int argc,
		  const char *const *argv, const size_t *argvlen, pb_redis_cb cb, void *arg)
{
	return eval_send(r, script, nkeys, argc, argv, argvlen, cb, arg, 0);
}

int pb_redis_eval_durable(struct pb_redis *r, size_t script, int nkeys, int argc,
			  const char *const *argv, const size_t *argvlen, pb_redis_cb cb,
			  void *arg)
{
	return eval_send(r, script, nkeys, argc, argv, argvlen, cb, arg,
			 r->opts.wait_replicas > 0);
}

void pb_redis_set_wait(struct pb_redis *r, unsigned replicas, unsigned timeout_ms)
{
	r->opts.wait_replicas = replicas;
	r->opts.wait_timeout_ms = timeout_ms ? timeout_ms : RD_DEFAULT_TIMEOUT_MS;
	if (r->cl)
		pb_rcl_set_wait(r->cl, replicas, r->opts.wait_timeout_ms);
}

int pb_redis_subscribe(struct pb_redis *r, const char *channel)
{
	size_t len = strlen(channel);
	struct rchan *ch;

	if (r->cl)
		return r->freeing ? 0 : pb_rcl_subscribe(r->cl, channel);
	ch = pb_map_get(r->chans, channel, len);

	if (ch) {
		ch->refs++;
		return 0;
	}
	ch = malloc(sizeof(*ch) + len + 1);
	if (!ch)
		return PB_ENOMEM;
	ch->refs = 1;
	ch->len = len;
	memcpy(ch->name, channel, len + 1);
	if (pb_map_put(r->chans, ch->name, len, ch)) {
		free(ch);
		return PB_ENOMEM;
	}
	sub_send(r, r->opts.cluster_node ? "SSUBSCRIBE" : "SUBSCRIBE", ch);
	return 0;
}

void pb_redis_unsubscribe(struct pb_redis *r, const char *channel)
{
	size_t len = strlen(channel);
	struct rchan *ch;

	if (r->cl) {
		if (!r->freeing)
			pb_rcl_unsubscribe(r->cl, channel);
		return;
	}
	ch = pb_map_get(r->chans, channel, len);

	if (!ch || --ch->refs)
		return;
	pb_map_del(r->chans, ch->name, ch->len);
	sub_send(r, r->opts.cluster_node ? "SUNSUBSCRIBE" : "UNSUBSCRIBE", ch);
	free(ch);
}
