/*
 * redis.c: the asynchronous Redis client (see redis.h). It owns two hiredis
 * connections (commands, pub/sub), the timers that give them connect and
 * command timeouts and reconnection with backoff, the SHA1s of the Lua
 * scripts and the reference-counted set of subscribed channels.
 *
 * Every command we hand to hiredis carries a struct rcmd as its privdata,
 * linked on its connection's FIFO in send order. Redis answers in order, so
 * the head of the FIFO is always the oldest unanswered command: one 100 ms
 * tick compares its deadline with the clock. While a connection is being
 * set up (resolve, TCP connect, AUTH, SELECT, SCRIPT LOAD, PING) the attempt
 * has one deadline instead. The subscriber connection's SUBSCRIBE and
 * UNSUBSCRIBE confirmations are counted rather than queued, and time out
 * when none has arrived for a command timeout while some are owed.
 *
 * hiredis 0.14 rules this file is built around:
 * - redisAsyncFree() calls every pending callback with a NULL reply (that is
 *   how failed commands get PB_ESTORE), then the event adapter's cleanup,
 *   then frees the context. Requested from inside a reply callback it is
 *   only marked, and done when the callback returns.
 * - The connect callback runs without that protection: freeing the context
 *   from it is a use after free. Nothing reachable from it frees the context
 *   or calls the user; the handshake always ends with a PING so that the
 *   connection only comes up (and the user hears of it) in a reply callback.
 * - The disconnect callback only fires for contexts that got connected, so
 *   it is not used. Instead the libuv adapter's cleanup hook is wrapped: it
 *   runs exactly once for every context, after the last callback, and is
 *   where a connection is known to be gone.
 * - Pub/sub messages are routed by hiredis to the callback of the
 *   SUBSCRIBE that named the channel; all of ours are the same function
 *   with the connection as privdata, so a stale lookup cannot misroute.
 *
 * Memory: struct pb_redis stays allocated until pb_redis_free() was called,
 * both hiredis contexts are gone, a pending name resolution has called back
 * and the three timers' close callbacks have run. The tick timer is closed
 * last, once no context is left, so the struct is only ever freed from a
 * libuv callback and never while hiredis is still on the stack.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>

#include "error.h"
#include "map.h"
#include "metrics.h"
#include "redis.h"

#define RD_TICK_MS 100
#define RD_BACKOFF_MIN_MS 100
#define RD_BACKOFF_MAX_MS 2000
#define RD_DEFAULT_TIMEOUT_MS 1000
#define RD_MAX_INFLIGHT 65536   /* commands awaiting replies per connection */
#define RD_SHA_LEN 40

enum rconn_state {
	RS_DOWN,                /* no usable context (maybe one tearing down) */
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
};

struct pb_redis;

/* One hiredis connection and its reconnection state. */
struct rconn {
	struct pb_redis *r;
	int is_sub;
	enum rconn_state state;
	redisAsyncContext *ac;  /* until the cleanup hook has run */
	int dropping;           /* redisAsyncFree() was requested */
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
};

/* A command given to hiredis; freed in its callback. */
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
	struct rconn cmd, sub;
	uv_timer_t tick;
	int tick_closing;
	int freeing;
	unsigned busy;          /* open timers + pending name resolutions */
};

static void conn_start(struct rconn *c);
static void cmd_on_reply(redisAsyncContext *ac, void *reply, void *priv);
static void sub_on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* ---- URL ------------------------------------------------------------ */

/* Write a one-line reason and return PB_EBADREQ. */
static int url_fail(char *err, size_t errlen, const char *why)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", why);
	return PB_EBADREQ;
}

/* The value of a hex digit, or -1. */
static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decode [s, e) into out (size outlen, NUL-terminated). 0 or -1. */
static int pct_decode(const char *s, const char *e, char *out, size_t outlen)
{
	size_t n = 0;

	while (s < e) {
		int ch = (unsigned char)*s++;

		if (ch == '%') {
			int hi = s < e ? hexval(s[0]) : -1;
			int lo = s + 1 < e ? hexval(s[1]) : -1;

			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -1;
			ch = hi * 16 + lo;
			s += 2;
		}
		if (n + 1 >= outlen)
			return -1;
		out[n++] = (char)ch;
	}
	out[n] = '\0';
	return 0;
}

/* Parse the decimal digits at *p (advanced past them) up to max. -1 if
 * there are none or the value is larger. */
static long parse_num(const char **p, long max)
{
	long v = 0;
	const char *s = *p;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (*s - '0');
		if (v > max)
			return -1;
	}
	*p = s;
	return v;
}

int pb_redis_parse_url(const char *url, struct pb_redis_url *out, char *err, size_t errlen)
{
	struct pb_redis_url u;
	const char *p, *at, *hs, *he;
	long v;

	memset(&u, 0, sizeof(u));
	u.port = 6379;
	if (!url || strncasecmp(url, "redis://", 8))
		return url_fail(err, errlen, "the Redis URL must start with redis://");
	p = url + 8;
	at = strrchr(p, '@');
	if (at) {
		if (*p != ':')
			return url_fail(err, errlen,
					"Redis URL: expected :PASSWORD@ (user names are not supported)");
		if (pct_decode(p + 1, at, u.password, sizeof(u.password)))
			return url_fail(err, errlen,
					"Redis URL: bad percent escape or password too long");
		p = at + 1;
	}
	if (*p == '[') {
		hs = p + 1;
		he = strchr(hs, ']');
		if (!he)
			return url_fail(err, errlen, "Redis URL: missing ] after the IPv6 address");
		p = he + 1;
	} else {
		hs = p;
		while (*p && *p != ':' && *p != '/')
			p++;
		he = p;
	}
	if (he == hs)
		return url_fail(err, errlen, "Redis URL: empty host");
	if ((size_t)(he - hs) >= sizeof(u.host))
		return url_fail(err, errlen, "Redis URL: host too long");
	memcpy(u.host, hs, (size_t)(he - hs));
	if (hs != url + 8 && hs[-1] == '[') {
		struct in6_addr a6;

		if (inet_pton(AF_INET6, u.host, &a6) != 1)
			return url_fail(err, errlen, "Redis URL: bad IPv6 address");
	} else {
		for (const char *h = u.host; *h; h++)
			if (!(*h >= 'a' && *h <= 'z') && !(*h >= 'A' && *h <= 'Z') &&
			    !(*h >= '0' && *h <= '9') && *h != '.' && *h != '-' && *h != '_')
				return url_fail(err, errlen, "Redis URL: bad character in the host");
	}
	if (*p == ':') {
		p++;
		v = parse_num(&p, 65535);
		if (v < 1 || (*p && *p != '/'))
			return url_fail(err, errlen, "Redis URL: bad port (1-65535)");
		u.port = (int)v;
	}
	if (*p == '/') {
		p++;
		if (*p) {
			v = parse_num(&p, INT_MAX);
			if (v < 0 || *p)
				return url_fail(err, errlen, "Redis URL: bad database number");
			u.db = (int)v;
		}
	} else if (*p) {
		return url_fail(err, errlen, "Redis URL: unexpected character after the host");
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
	if (rc->evalcmd)
		redisFreeCommand(rc->evalcmd);
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

/* Send an already formatted command on c's context. 0 or PB_ESTORE. */
static int conn_send_formatted(struct rconn *c, redisCallbackFn *fn, void *priv,
			       const char *cmd, size_t len)
{
	if (!c->ac || c->dropping)
		return PB_ESTORE;
	if (redisAsyncFormattedCommand(c->ac, fn, priv, cmd, len) != REDIS_OK)
		return PB_ESTORE;
	return 0;
}

/* Format argv and send it on c's context (hiredis 0.14's own Argv sender
 * does not check the formatter's allocation failure). 0 or PB_E*. */
static int conn_send(struct rconn *c, redisCallbackFn *fn, void *priv, int argc,
		     const char *const *argv, const size_t *argvlen)
{
	char *cmd;
	int len, rc;

	len = redisFormatCommandArgv(&cmd, argc, (const char **)argv, argvlen);
	if (len < 0)
		return PB_ENOMEM;
	rc = conn_send_formatted(c, fn, priv, cmd, (size_t)len);
	redisFreeCommand(cmd);
	return rc;
}

/* Send an internal command on c, answered to cmd_on_reply. 0 or PB_E*. */
static int conn_send_internal(struct rconn *c, enum rcmd_kind kind, uint64_t deadline,
			      size_t script, int argc, const char *const *argv)
{
	struct rcmd *rc = rcmd_new(c, kind, deadline);
	int err;

	if (!rc)
		return PB_ENOMEM;
	rc->script = script;
	err = conn_send(c, cmd_on_reply, rc, argc, argv, NULL);
	if (err) {
		rcmd_free(rc);
		return err;
	}
	rcmd_link(rc);
	return 0;
}

/* ---- connection life ---------------------------------------------------- */

/* The client's clock (loop time, ms). */
static uint64_t now_ms(const struct pb_redis *r)
{
	return uv_now(r->loop);
}

/* The one state setter: tells the user when the command connection comes
 * up or goes down, and when the subscriber connection is subscribed again. */
static void conn_set_state(struct rconn *c, enum rconn_state st)
{
	struct pb_redis *r = c->r;
	enum rconn_state old = c->state;

	if (old == st)
		return;
	c->state = st;
	if (st == RS_UP)
		c->backoff_ms = RD_BACKOFF_MIN_MS;
	if (r->freeing)
		return;
	if (!c->is_sub) {
		if (st == RS_UP && r->opts.on_state)
			r->opts.on_state(r->opts.arg, 1);
		else if (old == RS_UP && r->opts.on_state)
			r->opts.on_state(r->opts.arg, 0);
	} else if (st == RS_UP && r->opts.on_resubscribed) {
		r->opts.on_resubscribed(r->opts.arg);
	}
}

/* Free r once everything asynchronous has finished. Only called from
 * libuv callbacks, never with hiredis on the stack. */
static void client_release(struct pb_redis *r)
{
	void *vals[64];
	size_t n;

	if (!r->freeing || r->busy)
		return;
	assert(!r->cmd.ac && !r->sub.ac);
	while ((n = pb_map_values(r->chans, vals, 64)) > 0) {
		for (size_t i = 0; i < n; i++) {
			struct rchan *ch = vals[i];

			pb_map_del(r->chans, ch->name, ch->len);
			free(ch);
		}
	}
	pb_map_free(r->chans);
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

/* While freeing: close the tick once no hiredis context is left. */
static void client_maybe_finish(struct pb_redis *r)
{
	if (!r->freeing || r->tick_closing || r->cmd.ac || r->sub.ac)
		return;
	r->tick_closing = 1;
	uv_close((uv_handle_t *)&r->tick, on_tick_closed);
}

/* Tear c's context down (pending callbacks get NULL replies); at once, or
 * when the hiredis callback we are in returns. */
static void conn_drop(struct rconn *c)
{
	if (!c->ac || c->dropping)
		return;
	c->dropping = 1;
	conn_set_state(c, RS_DOWN);
	/* on_state(0) may have freed the client: the context is still ours */
	redisAsyncFree(c->ac);
}

/* The retry timer: start the next attempt. */
static void conn_on_retry(uv_timer_t *t)
{
	conn_start(t->data);
}

/* Try again after the backoff (which then doubles). */
static void conn_retry_later(struct rconn *c)
{
	conn_set_state(c, RS_DOWN);
	if (c->r->freeing)
		return;
	uv_timer_start(&c->retry, conn_on_retry, c->backoff_ms, 0);
	c->backoff_ms = c->backoff_ms * 2 > RD_BACKOFF_MAX_MS ? RD_BACKOFF_MAX_MS
							    : c->backoff_ms * 2;
}

/* The context of c is gone (called from the wrapped adapter cleanup, after
 * every callback of the context has run). */
static void conn_gone(struct rconn *c)
{
	struct pb_redis *r = c->r;

	assert(!c->head);
	c->ac = NULL;
	c->dropping = 0;
	c->owed = 0;
	c->resub_left = 0;
	conn_retry_later(c);
	client_maybe_finish(r);
}

/* hiredis' cleanup hook, wrapped: let the libuv adapter close its poll
 * handle, then treat the connection as gone. */
static void conn_on_cleanup(void *privdata)
{
	redisLibuvEvents *p = privdata;
	struct rconn *c = p->context->data;

	redisLibuvCleanup(p);
	conn_gone(c);
}

/* Send the handshake on a freshly connected context. Runs inside hiredis'
 * connect callback: on failure it only stops, and the attempt deadline
 * drops the connection from the tick. */
static void conn_handshake(struct rconn *c)
{
	struct pb_redis *r = c->r;
	const struct pb_redis_url *u = &r->opts.url;
	uint64_t dl = c->attempt_deadline;
	char db[16];

	conn_set_state(c, RS_HANDSHAKE);
	if (u->password[0]) {
		const char *argv[] = { "AUTH", u->password };

		if (conn_send_internal(c, RC_AUTH, dl, 0, 2, argv))
			return;
	}
	if (!c->is_sub && u->db) {
		const char *argv[] = { "SELECT", db };

		snprintf(db, sizeof(db), "%d", u->db);
		if (conn_send_internal(c, RC_SELECT, dl, 0, 2, argv))
			return;
	}
	for (size_t i = 0; !c->is_sub && i < r->opts.nscripts; i++) {
		const char *argv[] = { "SCRIPT", "LOAD", r->opts.scripts[i] };

		if (conn_send_internal(c, RC_LOAD, dl, i, 3, argv))
			return;
	}
	{
		const char *argv[] = { "PING" };

		conn_send_internal(c, RC_PING, dl, 0, 1, argv);
	}
}

/* hiredis' connect callback. On failure hiredis frees the context right
 * after this returns (the cleanup hook follows). */
static void conn_on_connect(const redisAsyncContext *ac, int status)
{
	struct rconn *c = ac->data;

	if (status != REDIS_OK || c->dropping)
		return;
	conn_handshake(c);
}

/* Open a hiredis context to the numeric address ip. */
static void conn_connect(struct rconn *c, const char *ip)
{
	struct pb_redis *r = c->r;
	redisAsyncContext *ac = redisAsyncConnect(ip, r->opts.url.port);

	if (!ac) {
		conn_retry_later(c);
		return;
	}
	ac->data = c;
	if (ac->err || redisLibuvAttach(ac, r->loop) != REDIS_OK) {
		/* a failed attach leaves its cleanup hook set with no data to
		 * clean: unset it, or redisAsyncFree() dereferences NULL */
		ac->ev.cleanup = NULL;
		redisAsyncFree(ac);
		conn_retry_later(c);
		return;
	}
	ac->ev.cleanup = conn_on_cleanup;
	c->ac = ac;
	conn_set_state(c, RS_CONNECTING);
	redisAsyncSetConnectCallback(ac, conn_on_connect);
}

/* uv_getaddrinfo's answer: connect to the first IPv4 address, else the
 * first IPv6 one (hiredis' own preference). */
static void conn_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct rconn *c = req->data;
	struct pb_redis *r = c->r;
	const struct addrinfo *ai, *pick = NULL;
	char ip[INET6_ADDRSTRLEN] = "";

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
	if (pick && pick->ai_family == AF_INET)
		uv_ip4_name((const struct sockaddr_in *)(const void *)pick->ai_addr, ip, sizeof(ip));
	else if (pick)
		uv_ip6_name((const struct sockaddr_in6 *)(const void *)pick->ai_addr, ip, sizeof(ip));
	uv_freeaddrinfo(res);
	if (!ip[0]) {
		conn_retry_later(c);
		return;
	}
	c->attempt_deadline = now_ms(r) + r->opts.connect_timeout_ms;
	conn_connect(c, ip);
}

/* Start a connection attempt: resolve the host unless it is numeric (a
 * blocking getaddrinfo inside hiredis would stall the loop), then connect. */
static void conn_start(struct rconn *c)
{
	struct pb_redis *r = c->r;
	const char *host = r->opts.url.host;
	struct in6_addr a6;
	struct in_addr a4;
	struct addrinfo hints;

	if (r->freeing || c->ac || c->gai_pending)
		return;
	c->attempt_deadline = now_ms(r) + r->opts.connect_timeout_ms;
	if (inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1) {
		conn_connect(c, host);
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
		if (hexval(reply->str[k]) < 0)
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

	if (conn_send_internal(c, RC_RELOAD, dl, rc->script, 3, argv))
		return -1;
	if (conn_send_formatted(c, cmd_on_reply, rc, rc->evalcmd, rc->evallen))
		return -1;
	rc->retried = 1;
	rc->deadline = dl;
	rcmd_link(rc);
	return 0;
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
		err = conn_send(c, sub_on_reply, c, (int)got + 1, argv, lens);
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
		conn_drop(c);
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
	default:
		ok = 0;
		break;
	}
	if (!ok)
		conn_drop(c);
	else if (rc->kind == RC_PING && c->is_sub)
		sub_resubscribe(c);
	else if (rc->kind == RC_PING)
		conn_set_state(c, RS_UP);
}

/* hiredis' reply callback for every command that carries an rcmd. A NULL
 * reply means the context is being torn down. */
static void cmd_on_reply(redisAsyncContext *ac, void *vreply, void *priv)
{
	struct rcmd *rc = priv;
	struct rconn *c = rc->conn;
	redisReply *reply = vreply;

	rcmd_unlink(rc);
	if (!reply)
		conn_set_state(c, RS_DOWN);
	switch (rc->kind) {
	case RC_EVAL:
		if (reply && !rc->retried && reply_is_noscript(reply) && c->state == RS_UP &&
		    eval_retry(rc) == 0)
			return;
		/* fall through */
	case RC_USER:
		if (reply)
			pb_metrics_observe(PB_H_STORE_SECONDS,
					   (double)(uv_hrtime() - rc->sent_ns) / 1e9);
		rc->cb(rc->arg, reply ? 0 : PB_ESTORE, reply);
		break;
	case RC_RELOAD:
		/* a failed reload leaves the retry's NOSCRIPT as the answer */
		if (reply)
			store_sha(c->r, rc->script, reply);
		break;
	default:
		if (reply)
			handshake_reply(rc, reply);
		break;
	}
	rcmd_free(rc);
}

/* hiredis' callback for the subscriber connection's SUBSCRIBE and
 * UNSUBSCRIBE: confirmations and messages, or NULL on teardown. */
static void sub_on_reply(redisAsyncContext *ac, void *vreply, void *priv)
{
	struct rconn *c = priv;
	struct pb_redis *r = c->r;
	redisReply *reply = vreply, **el;
	const char *kind;
	struct rchan *ch;

	if (!reply) {
		conn_set_state(c, RS_DOWN);
		return;
	}
	if (c->dropping)
		return;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    reply->element[1]->type != REDIS_REPLY_STRING) {
		conn_drop(c);
		return;
	}
	el = reply->element;
	kind = el[0]->str;
	if (!strcasecmp(kind, "message")) {
		if (el[2]->type != REDIS_REPLY_STRING) {
			conn_drop(c);
			return;
		}
		ch = pb_map_get(r->chans, el[1]->str, el[1]->len);
		if (ch && !r->freeing && r->opts.on_message)
			r->opts.on_message(r->opts.arg, el[1]->str, el[1]->len, el[2]->str,
					   el[2]->len);
		return;
	}
	if (strcasecmp(kind, "subscribe") && strcasecmp(kind, "unsubscribe"))
		return;
	if (c->owed) {
		c->owed--;
		c->owed_deadline = now_ms(r) + r->opts.command_timeout_ms;
	}
	if (!strcasecmp(kind, "subscribe") && c->resub_left && --c->resub_left == 0)
		conn_set_state(c, RS_UP);
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
	if (conn_send(c, sub_on_reply, c, 2, argv, lens))
		return;
	if (!c->owed)
		c->owed_deadline = now_ms(r) + r->opts.command_timeout_ms;
	c->owed++;
}

/* ---- timeouts --------------------------------------------------------- */

/* Check one connection's deadlines; drop it if one has passed. */
static void conn_check(struct rconn *c, uint64_t now)
{
	if (!c->ac || c->dropping)
		return;
	if ((c->state != RS_UP && now >= c->attempt_deadline) ||
	    (c->head && now >= c->head->deadline) || (c->owed && now >= c->owed_deadline))
		conn_drop(c);
}

/* The 100 ms tick. */
static void on_tick(uv_timer_t *t)
{
	struct pb_redis *r = t->data;
	uint64_t now = now_ms(r);

	conn_check(&r->cmd, now);
	conn_check(&r->sub, now);
}

/* ---- API ---------------------------------------------------------------- */

/* Set up one connection's fields and retry timer. */
static void conn_init(struct pb_redis *r, struct rconn *c, int is_sub)
{
	c->r = r;
	c->is_sub = is_sub;
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
	conn_init(r, &r->cmd, 0);
	conn_init(r, &r->sub, 1);
	uv_timer_start(&r->tick, on_tick, RD_TICK_MS, RD_TICK_MS);
	conn_start(&r->cmd);
	conn_start(&r->sub);
	return r;
}

void pb_redis_free(struct pb_redis *r)
{
	if (!r || r->freeing)
		return;
	r->freeing = 1;
	uv_close((uv_handle_t *)&r->cmd.retry, on_retry_closed);
	uv_close((uv_handle_t *)&r->sub.retry, on_retry_closed);
	if (r->cmd.gai_pending)
		uv_cancel((uv_req_t *)&r->cmd.gai);
	if (r->sub.gai_pending)
		uv_cancel((uv_req_t *)&r->sub.gai);
	conn_drop(&r->cmd);
	conn_drop(&r->sub);
	client_maybe_finish(r);
}

int pb_redis_ready(const struct pb_redis *r)
{
	return !r->freeing && r->cmd.state == RS_UP;
}

/* 1 if argv[0] would break hiredis' one-reply-per-command bookkeeping on
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
	if (r->freeing || r->cmd.state != RS_UP || !r->cmd.ac || r->cmd.dropping)
		return PB_ESTORE;
	if (r->cmd.ncmds >= RD_MAX_INFLIGHT)
		return PB_EQFULL;
	return 0;
}

int pb_redis_command(struct pb_redis *r, pb_redis_cb cb, void *arg, int argc,
		     const char *const *argv, const size_t *argvlen)
{
	struct rcmd *rc;
	int err;

	assert(r && cb);
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
	err = conn_send(&r->cmd, cmd_on_reply, rc, argc, argv, argvlen);
	if (err) {
		rcmd_free(rc);
		return err;
	}
	rcmd_link(rc);
	return 0;
}

int pb_redis_eval(struct pb_redis *r, size_t script, int nkeys, int argc,
		  const char *const *argv, const size_t *argvlen, pb_redis_cb cb, void *arg)
{
	struct rcmd *rc = NULL;
	const char **av = NULL;
	size_t *lens = NULL;
	char nk[16];
	int err, len;

	assert(r && cb);
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
	if (!av || !lens || !rc)
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
	len = redisFormatCommandArgv(&rc->evalcmd, argc + 3, av, lens);
	if (len < 0) {
		rc->evalcmd = NULL;
		goto out;
	}
	rc->evallen = (size_t)len;
	rc->script = script;
	rc->cb = cb;
	rc->arg = arg;
	err = conn_send_formatted(&r->cmd, cmd_on_reply, rc, rc->evalcmd, rc->evallen);
	if (err)
		goto out;
	rcmd_link(rc);
	rc = NULL;
out:
	if (rc)
		rcmd_free(rc);
	free(av);
	free(lens);
	return err;
}

int pb_redis_subscribe(struct pb_redis *r, const char *channel)
{
	size_t len = strlen(channel);
	struct rchan *ch = pb_map_get(r->chans, channel, len);

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
	sub_send(r, "SUBSCRIBE", ch);
	return 0;
}

void pb_redis_unsubscribe(struct pb_redis *r, const char *channel)
{
	size_t len = strlen(channel);
	struct rchan *ch = pb_map_get(r->chans, channel, len);

	if (!ch || --ch->refs)
		return;
	pb_map_del(r->chans, ch->name, ch->len);
	sub_send(r, "UNSUBSCRIBE", ch);
	free(ch);
}
