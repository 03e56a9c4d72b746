/*
 * test_redis.c: the Redis client against real redis-server processes: URL
 * parsing; commands, scripts and NOSCRIPT recovery; refusals while down; a
 * command timeout and the reconnect after it; a server killed and started
 * again on the same port (state callbacks, resubscription); subscription
 * reference counts; AUTH and SELECT; garbage from a fake server; a server
 * that never answers; freeing with commands in flight, also from inside a
 * reply callback; a fake server whose poisoned replies (a reply with no
 * command pending, an unknown type byte, huge bulk and array lengths,
 * malformed pub/sub pushes) drop the connection without a crash, fail the
 * pending commands once each, and are followed by a clean reconnect; the
 * Redis store's Lua scripts (codes and arguments by name, all compile;
 * in_bytes exact under every kind of READ_IN trim, a TTL on a list that
 * PUSH_IN or PUSH_OUT creates);
 * redis+sentinel:// URLs; durable scripts and their WAIT (refused without
 * a replica after the WAIT timeout, in order, one WAIT per write, NOSCRIPT
 * inside a WAIT group; answered with a replica); the primary found through
 * sentinels (a dead one and one that does not know the master skipped, a
 * stale answer pointing at a replica refused by ROLE), and followed on a
 * +switch-master. Redis Cluster: the key slot (CRC16, hash tags, the lease
 * buckets), redis+cluster:// URLs, CLUSTER SLOTS replies and MOVED / ASK
 * errors parsed from raw bytes (malformed ones refused), and a live
 * 3-primary cluster: routing to every primary, a sharded subscription, a
 * slot migrated under the client (ASK, MOVED, the subscription following
 * its slot), NOSCRIPT on one node, a killed primary.
 * Every client runs on its own loop, which must close cleanly after
 * pb_redis_free().
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "e2e/harness.h"
#include "error.h"
#include "redis.h"
#include "redis_cluster.h"
#include "store_redis.h"
#include "tap.h"

#define MAX_ARGS 16

static const char *const scripts[] = {
	"return ARGV[1]..KEYS[1]",
	"return redis.call('INCR', KEYS[1])",
};

/* One client on its own loop, and what its callbacks reported. */
struct client {
	uv_loop_t loop;
	struct pb_redis *r;
	int ups, downs, resubs, msgs;
	int free_on_down;       /* pb_redis_free() from on_state(0) */
	char msg_ch[64];
	char msg[64];
	size_t msg_len;
};

/* What one command's callback reported. */
struct res {
	int calls, err, type;
	long long integer;
	char str[512];
	size_t len, elements;
	long long el_int[4];
	int64_t at_ms;
	struct client *free_client;     /* pb_redis_free() it from the callback */
};

/* Run c's loop until cond holds or ms pass. */
#define RUN_UNTIL(c, cond, ms) \
	do { \
		int64_t end_ = h_now_ms() + (ms); \
		while (!(cond) && h_now_ms() < end_) { \
			uv_run(&(c)->loop, UV_RUN_NOWAIT); \
			usleep(1000); \
		} \
	} while (0)

/* on_state: count ups and downs. */
static void on_state(void *arg, int up)
{
	struct client *c = arg;

	if (up)
		c->ups++;
	else
		c->downs++;
	if (!up && c->free_on_down) {
		pb_redis_free(c->r);
		c->r = NULL;
	}
}

/* on_message: count and copy the last message. */
static void on_message(void *arg, const char *ch, size_t chlen, const char *msg, size_t len)
{
	struct client *c = arg;

	c->msgs++;
	snprintf(c->msg_ch, sizeof(c->msg_ch), "%.*s", (int)chlen, ch);
	c->msg_len = len < sizeof(c->msg) ? len : sizeof(c->msg);
	memcpy(c->msg, msg, c->msg_len);
}

/* on_resubscribed: count. */
static void on_resub(void *arg)
{
	struct client *c = arg;

	c->resubs++;
}

/* A command's callback: copy what the reply says. */
static void on_reply(void *arg, int err, struct redisReply *reply)
{
	struct res *res = arg;

	res->calls++;
	res->err = err;
	res->at_ms = h_now_ms();
	res->type = reply ? reply->type : -1;
	if (reply && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS ||
		      reply->type == REDIS_REPLY_ERROR)) {
		res->len = reply->len;
		memcpy(res->str, reply->str, reply->len < sizeof(res->str) ? reply->len
									  : sizeof(res->str) - 1);
		res->str[reply->len < sizeof(res->str) ? reply->len : sizeof(res->str) - 1] = '\0';
	}
	if (reply && reply->type == REDIS_REPLY_INTEGER)
		res->integer = reply->integer;
	if (reply && reply->type == REDIS_REPLY_ARRAY) {
		res->elements = reply->elements;
		for (size_t i = 0; i < reply->elements && i < 4; i++)
			if (reply->element[i]->type == REDIS_REPLY_INTEGER)
				res->el_int[i] = reply->element[i]->integer;
	}
	if (res->free_client) {
		pb_redis_free(res->free_client->r);
		res->free_client->r = NULL;
	}
}

/* Open a client on a fresh loop. */
static void client_open(struct client *c, const char *url, unsigned connect_ms, unsigned cmd_ms)
{
	struct pb_redis_opts o;
	char err[128];

	memset(c, 0, sizeof(*c));
	if (uv_loop_init(&c->loop))
		tap_bail("uv_loop_init failed");
	memset(&o, 0, sizeof(o));
	if (pb_redis_parse_url(url, &o.url, err, sizeof(err)))
		tap_bail("bad test URL %s: %s", url, err);
	o.connect_timeout_ms = connect_ms;
	o.command_timeout_ms = cmd_ms;
	o.scripts = scripts;
	o.nscripts = sizeof(scripts) / sizeof(scripts[0]);
	o.on_state = on_state;
	o.on_message = on_message;
	o.on_resubscribed = on_resub;
	o.arg = c;
	c->r = pb_redis_new(&c->loop, &o);
	if (!c->r)
		tap_bail("pb_redis_new failed");
}

/* Free the client (if not yet), run the loop until nothing is left and
 * close it. Returns uv_loop_close()'s answer. */
static int client_close(struct client *c)
{
	int64_t end = h_now_ms() + 3000;

	pb_redis_free(c->r);
	c->r = NULL;
	while (uv_loop_alive(&c->loop) && h_now_ms() < end) {
		uv_run(&c->loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	return uv_loop_close(&c->loop);
}

/* Send the NULL-terminated command; if accepted, wait for its answer.
 * Returns pb_redis_command()'s answer. */
static int cmd(struct client *c, struct res *res, const char *arg, ...)
{
	const char *argv[MAX_ARGS];
	int argc = 0, rc;
	va_list ap;

	memset(res, 0, sizeof(*res));
	va_start(ap, arg);
	for (; arg && argc < MAX_ARGS; arg = va_arg(ap, const char *))
		argv[argc++] = arg;
	va_end(ap);
	rc = pb_redis_command(c->r, on_reply, res, argc, argv, NULL);
	if (!rc)
		RUN_UNTIL(c, res->calls, 5000);
	return rc;
}

/* Run script with nkeys keys and the NULL-terminated arguments; if
 * accepted, wait for its answer. Returns pb_redis_eval()'s answer. */
static int eval(struct client *c, struct res *res, size_t script, int nkeys, const char *arg, ...)
{
	const char *argv[MAX_ARGS];
	int argc = 0, rc;
	va_list ap;

	memset(res, 0, sizeof(*res));
	va_start(ap, arg);
	for (; arg && argc < MAX_ARGS; arg = va_arg(ap, const char *))
		argv[argc++] = arg;
	va_end(ap);
	rc = pb_redis_eval(c->r, script, nkeys, argc, argv, NULL, on_reply, res);
	if (!rc)
		RUN_UNTIL(c, res->calls, 5000);
	return rc;
}

/* Wait until PUBSUB NUMSUB says channel has want subscribers. */
static int wait_numsub(struct client *c, const char *channel, long long want)
{
	int64_t end = h_now_ms() + 5000;
	struct res res;

	do {
		if (cmd(c, &res, "PUBSUB", "NUMSUB", channel, NULL) == 0 && res.calls == 1 &&
		    res.elements == 2 && res.el_int[1] == want)
			return 1;
		RUN_UNTIL(c, 0, 20);
	} while (h_now_ms() < end);
	return 0;
}

/* Start redis-server on port with extra arguments (NULL-terminated). */
static struct h_proc *redis_start(int port, const char *arg, ...)
{
	char portbuf[16];
	char *argv[32] = {
		"redis-server", "--port", portbuf, "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", (char *)h_tmpdir(), "--enable-debug-command",
		"yes",
	};
	int argc = 13;
	va_list ap;

	va_start(ap, arg);
	for (; arg && argc < 31; arg = va_arg(ap, const char *))
		argv[argc++] = (char *)arg;
	va_end(ap);
	argv[argc] = NULL;
	snprintf(portbuf, sizeof(portbuf), "%d", port);
	return h_spawn(argv, "Ready to accept connections", 10000, NULL, 0);
}

/* ---- URL parsing ---------------------------------------------------- */

static void test_url_sentinel(void);

/* One URL that must parse to the given fields. */
static void url_good(const char *url, const char *host, int port, const char *pw, int db)
{
	struct pb_redis_url u;
	char err[128] = "";
	int rc = pb_redis_parse_url(url, &u, err, sizeof(err));

	tap_ok(rc == 0 && !strcmp(u.host, host) && u.port == port && !strcmp(u.password, pw) &&
	       u.db == db, "url %s -> host %s port %d db %d", url, host, port, db);
	if (rc)
		tap_diag("  error: %s", err);
	else if (strcmp(u.host, host) || u.port != port || strcmp(u.password, pw) || u.db != db)
		tap_diag("  got host %s port %d password '%s' db %d", u.host, u.port, u.password,
			 u.db);
}

/* One URL that must be refused with a reason containing word. */
static void url_bad(const char *url, const char *word)
{
	struct pb_redis_url u;
	char err[128] = "";
	int rc = pb_redis_parse_url(url, &u, err, sizeof(err));

	tap_ok(rc == PB_EBADREQ && err[0] && !strchr(err, '\n') && strstr(err, word),
	       "url %s refused (%s)", url, err);
}

/* One sentinel URL that must parse to n sentinels, the first one
 * host0:port0, the last one hostn:portn, master, password and db. */
static void sen_good(const char *url, size_t n, const char *host0, int port0, const char *hostn,
		     int portn, const char *master, const char *pw, int db)
{
	struct pb_redis_url u;
	char err[128] = "";
	int rc = pb_redis_parse_url(url, &u, err, sizeof(err));
	int ok = rc == 0 && u.nsentinels == n && !strcmp(u.sentinels[0].host, host0) &&
		 u.sentinels[0].port == port0 && !strcmp(u.sentinels[n - 1].host, hostn) &&
		 u.sentinels[n - 1].port == portn && !strcmp(u.master, master) &&
		 !strcmp(u.password, pw) && u.db == db;

	tap_ok(ok, "sentinel url %s -> %zu sentinels, master %s, db %d", url, n, master, db);
	if (rc)
		tap_diag("  error: %s", err);
}

/* redis+sentinel:// URLs. */
static void test_url_sentinel(void)
{
	struct pb_redis_url u;
	char many[512];

	sen_good("redis+sentinel://s1:26379,s2:26380,s3/mymaster", 3, "s1", 26379, "s3", 26379,
		 "mymaster", "", 0);
	sen_good("redis+sentinel://:pw%40x@10.0.0.1/m-1.a_b/3", 1, "10.0.0.1", 26379, "10.0.0.1",
		 26379, "m-1.a_b", "pw@x", 3);
	sen_good("REDIS+SENTINEL://[::1]:5000,[fe80::1]/m", 2, "::1", 5000, "fe80::1", 26379, "m",
		 "", 0);
	tap_ok(pb_redis_parse_url("redis://h:1", &u, NULL, 0) == 0 && u.nsentinels == 0,
	       "a redis:// URL has no sentinels");
	url_bad("redis+sentinel://s1:26379", "MASTER");
	url_bad("redis+sentinel://s1:26379/", "MASTER");
	url_bad("redis+sentinel://s1,,s2/m", "host");
	url_bad("redis+sentinel://s1,s2:0/m", "port");
	url_bad("redis+sentinel://s1/m/x", "database");
	url_bad("redis+sentinel://s1/m!x", "master name");
	url_bad("redis+sentinel://s1//0", "MASTER");
	url_bad("redis+sentinel://user:pw@s1/m", "PASSWORD");
	strcpy(many, "redis+sentinel://");
	for (int i = 0; i < 17; i++)
		strcat(many, i ? ",h" : "h");
	strcat(many, "/m");
	url_bad(many, "16 sentinels");
}

/* Good and bad URLs. */
static void test_url(void)
{
	char longhost[300];

	url_good("redis://127.0.0.1", "127.0.0.1", 6379, "", 0);
	url_good("redis://localhost:6380/2", "localhost", 6380, "", 2);
	url_good("redis://redis.example-1.internal:7000/", "redis.example-1.internal", 7000, "",
		 0);
	url_good("redis://:s3cret@10.0.0.1:7000/5", "10.0.0.1", 7000, "s3cret", 5);
	url_good("redis://:p%40ss%2Fw@h:1/15", "h", 1, "p@ss/w", 15);
	url_good("redis://:@h", "h", 6379, "", 0);
	url_good("redis://[::1]", "::1", 6379, "", 0);
	url_good("redis://[::1]:6390/3", "::1", 6390, "", 3);
	url_good("redis://:pw@[fe80::1:2]:65535/0", "fe80::1:2", 65535, "pw", 0);
	url_good("REDIS://H:6379", "H", 6379, "", 0);

	url_bad("http://127.0.0.1:6379", "redis://");
	url_bad("rediss://127.0.0.1:6379", "redis://");
	url_bad("127.0.0.1:6379", "redis://");
	url_bad("redis://", "host");
	url_bad("redis://:6379", "host");
	url_bad("redis://h:0", "port");
	url_bad("redis://h:65536", "port");
	url_bad("redis://h:99999999999999999999", "port");
	url_bad("redis://h:", "port");
	url_bad("redis://h:abc", "port");
	url_bad("redis://h:63x79/1", "port");
	url_bad("redis://h:-1", "port");
	url_bad("redis://h/x", "database");
	url_bad("redis://h:1/-1", "database");
	url_bad("redis://h:1/1/2", "database");
	url_bad("redis://h:1/99999999999", "database");
	url_bad("redis://h:1/2?x=1", "database");
	url_bad("redis://[::1", "]");
	url_bad("redis://[]:1", "host");
	url_bad("redis://[zz::1]:1", "IPv6");
	url_bad("redis://[::1]x", "after the host");
	url_bad("redis://user:pw@h", "PASSWORD");
	url_bad("redis://:p%4@h", "percent");
	url_bad("redis://:p%00@h", "percent");
	url_bad("redis://h st:1", "host");
	memset(longhost, 'a', sizeof(longhost));
	memcpy(longhost, "redis://", 8);
	longhost[sizeof(longhost) - 1] = '\0';
	url_bad(longhost, "too long");
	test_url_sentinel();
}

/* ---- Redis Cluster: the pure parts -------------------------------------- */

/* The key slot: CRC16-XMODEM's check value, and slots as Redis computes
 * them (CLUSTER KEYSLOT), hash tags included. */
static void test_cluster_slot(void)
{
	static const struct {
		const char *key;
		unsigned slot;
	} v[] = {
		{ "foo", 12182 }, { "123456789", 12739 }, { "{user1000}.following", 3443 },
		{ "user1000", 3443 }, { "foo{}{bar}", 8363 }, { "foo{{bar}}zap", 4015 },
		{ "foo{bar}{zap}", 5061 }, { "{", 4092 }, { "}{a}", 15495 },
		{ "pb:{abc}", 7638 }, { "a{b", 13340 },
	};

	tap_ok(pb_rcl_crc16("123456789", 9) == 0x31C3, "CRC16(\"123456789\") = 0x31C3 (%#x)",
	       pb_rcl_crc16("123456789", 9));
	tap_ok(pb_rcl_crc16("", 0) == 0, "CRC16 of nothing is 0");
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		tap_ok(pb_redis_key_slot(v[i].key, strlen(v[i].key)) == v[i].slot,
		       "slot of %s is %u (%u)", v[i].key, v[i].slot,
		       pb_redis_key_slot(v[i].key, strlen(v[i].key)));
	tap_ok(pb_redis_key_slot("pb:{abc}:m", 10) == pb_redis_key_slot("pb:{abc}", 8),
	       "a session's keys and channel share a slot");
	for (size_t i = 0; i < 16; i++) {
		const char *k = pb_store_redis_bucket(i);
		unsigned s = k ? pb_redis_key_slot(k, strlen(k)) : 99999;

		tap_ok(k && s >= i * 1024 && s < (i + 1) * 1024,
		       "lease bucket %zu (%s) hashes into its slot range (%u)", i, k ? k : "-", s);
	}
	tap_ok(pb_store_redis_bucket(16) == NULL, "16 lease buckets");
}

/* One redis+cluster:// URL that must parse. */
static void cluster_good(const char *url, size_t n, const char *host0, int port0,
			 const char *hostn, int portn, const char *pw)
{
	struct pb_redis_url u;
	char err[128] = "";
	int rc = pb_redis_parse_url(url, &u, err, sizeof(err));

	tap_ok(rc == 0 && u.nseeds == n && !strcmp(u.seeds[0].host, host0) &&
	       u.seeds[0].port == port0 && !strcmp(u.seeds[n - 1].host, hostn) &&
	       u.seeds[n - 1].port == portn && !strcmp(u.password, pw) && u.db == 0 &&
	       u.nsentinels == 0, "cluster url %s -> %zu seeds", url, n);
	if (rc)
		tap_diag("  error: %s", err);
}

/* redis+cluster:// URLs. */
static void test_url_cluster(void)
{
	struct pb_redis_url u;
	char many[512];

	cluster_good("redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002/", 3,
		     "127.0.0.1", 7000, "127.0.0.1", 7002, "");
	cluster_good("redis+cluster://h1", 1, "h1", 6379, "h1", 6379, "");
	cluster_good("redis+cluster://:p%40w@h1:7000,[::1]/0", 2, "h1", 7000, "::1", 6379,
		     "p@w");
	cluster_good("REDIS+CLUSTER://a,b:2/", 2, "a", 6379, "b", 2, "");
	tap_ok(pb_redis_parse_url("redis://h:1", &u, NULL, 0) == 0 && u.nseeds == 0,
	       "a redis:// URL has no seeds");
	url_bad("redis+cluster://h:7000/1", "only database 0");
	url_bad("redis+cluster://h:7000/x", "database");
	url_bad("redis+cluster://", "host");
	url_bad("redis+cluster://a,,b", "host");
	url_bad("redis+cluster://a:0", "port");
	url_bad("redis+cluster://a:1:2", "port");
	url_bad("redis+cluster://u:pw@a", "PASSWORD");
	url_bad("redis+clusters://a", "redis+cluster://");
	strcpy(many, "redis+cluster://");
	for (int i = 0; i < 17; i++)
		strcat(many, i ? ",h" : "h");
	url_bad(many, "16 cluster seed");
}

/* Parse raw RESP bytes into a reply (NULL if incomplete or invalid). */
static redisReply *resp_parse(const char *raw, size_t len)
{
	redisReader *rd = redisReaderCreate();
	void *reply = NULL;

	if (!rd)
		tap_bail("redisReaderCreate failed");
	if (redisReaderFeed(rd, raw, len) != REDIS_OK || redisReaderGetReply(rd, &reply) != REDIS_OK)
		reply = NULL;
	redisReaderFree(rd);
	return reply;
}

/* Parse a CLUSTER SLOTS reply given as RESP; the parser's answer. */
static int slots_parse(const char *raw, struct pb_rcl_map *m, char *err, size_t errlen)
{
	redisReply *rep = resp_parse(raw, strlen(raw));
	int rc;

	if (!rep)
		tap_bail("test RESP does not parse: %s", raw);
	rc = pb_rcl_parse_slots(rep, "10.9.8.7", m, err, errlen);
	freeReplyObject(rep);
	return rc;
}

/* A malformed CLUSTER SLOTS reply: refused with a reason. */
static void slots_bad(const char *raw, const char *what, const char *word)
{
	struct pb_rcl_map *m = malloc(sizeof(*m));
	char err[160] = "";
	int rc;

	if (!m)
		tap_bail("out of memory");
	rc = slots_parse(raw, m, err, sizeof(err));
	tap_ok(rc == -1 && strstr(err, word), "CLUSTER SLOTS %s: refused (%s)", what, err);
	free(m);
}

/* The map from CLUSTER SLOTS, good and bad. */
static void test_cluster_map(void)
{
	/* three primaries, one with two ranges, one announced with an empty
	 * host (the node asked), replicas and Redis 7 metadata ignored */
	static const char good[] =
		"*4\r\n"
		"*4\r\n:0\r\n:5460\r\n"
		"*4\r\n$9\r\n127.0.0.1\r\n:7001\r\n$4\r\nid-a\r\n*0\r\n"
		"*4\r\n$9\r\n127.0.0.1\r\n:7004\r\n$4\r\nid-d\r\n*0\r\n"
		"*3\r\n:5461\r\n:10922\r\n"
		"*3\r\n$0\r\n\r\n:7002\r\n$4\r\nid-b\r\n"
		"*3\r\n:10923\r\n:16000\r\n"
		"*3\r\n$9\r\nredis-3.x\r\n:7003\r\n$4\r\nid-c\r\n"
		"*3\r\n:16001\r\n:16383\r\n"
		"*2\r\n$9\r\n127.0.0.1\r\n:7001\r\n";
	struct pb_rcl_map *m = malloc(sizeof(*m));
	char err[160] = "", raw[16384], *p;
	int rc;

	if (!m)
		tap_bail("out of memory");
	rc = slots_parse(good, m, err, sizeof(err));
	tap_ok(rc == 0 && m->nnodes == 3, "CLUSTER SLOTS: 3 primaries (%d, %zu, %s)", rc,
	       m->nnodes, err);
	tap_ok(rc == 0 && m->slot[0] == 0 && m->slot[5460] == 0 && m->slot[16383] == 0 &&
	       m->slot[5461] == 1 && m->slot[10923] == 2 && m->slot[16000] == 2,
	       "CLUSTER SLOTS: every slot to its primary, two ranges to one");
	tap_ok(rc == 0 && !strcmp(m->nodes[1].host, "10.9.8.7") && m->nodes[1].port == 7002,
	       "CLUSTER SLOTS: an empty host is the node asked (%s)", m->nodes[1].host);
	tap_ok(rc == 0 && !strcmp(m->nodes[2].host, "redis-3.x"), "CLUSTER SLOTS: a host name");
	tap_ok(rc == 0 && pb_rcl_map_missing(m) == 0, "CLUSTER SLOTS: complete");
	rc = slots_parse("*1\r\n*3\r\n:0\r\n:99\r\n*2\r\n$1\r\nh\r\n:1\r\n", m, err, sizeof(err));
	tap_ok(rc == 0 && pb_rcl_map_missing(m) == PB_REDIS_SLOTS - 100,
	       "CLUSTER SLOTS: an incomplete map counts its missing slots");
	rc = slots_parse("*0\r\n", m, err, sizeof(err));
	tap_ok(rc == 0 && m->nnodes == 0 && pb_rcl_map_missing(m) == PB_REDIS_SLOTS,
	       "CLUSTER SLOTS: an empty map");
	free(m);

	slots_bad("+OK\r\n", "a status", "not an array");
	slots_bad("*1\r\n:1\r\n", "an integer entry", "malformed slot range");
	slots_bad("*1\r\n*2\r\n:0\r\n:1\r\n", "two elements", "malformed slot range");
	slots_bad("*1\r\n*3\r\n$1\r\n0\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n", "a string slot",
		  "malformed slot range");
	slots_bad("*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n", "slot 16384",
		  "out of range");
	slots_bad("*1\r\n*3\r\n:-1\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n", "slot -1", "out of range");
	slots_bad("*1\r\n*3\r\n:9\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n", "start after end",
		  "out of range");
	slots_bad("*1\r\n*3\r\n:0\r\n:5\r\n:7\r\n", "an integer primary", "malformed primary");
	slots_bad("*1\r\n*3\r\n:0\r\n:5\r\n*1\r\n$1\r\nh\r\n", "a primary without port",
		  "malformed primary");
	slots_bad("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n$4\r\n7000\r\n", "a string port",
		  "malformed primary");
	slots_bad("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:0\r\n", "port 0", "host or port");
	slots_bad("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:65536\r\n", "port 65536",
		  "host or port");
	slots_bad("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$3\r\nh/x\r\n:1\r\n", "a bad host",
		  "host or port");
	slots_bad("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$3\r\nh\001x\r\n:1\r\n",
		  "a control byte in the host", "host or port");
	slots_bad("*1\r\n*3\r\n:0\r\n:5\r\n*1\r\n*0\r\n", "a nested array as host",
		  "malformed primary");
	/* 129 distinct primaries, one slot each */
	p = raw + sprintf(raw, "*129\r\n");
	for (int i = 0; i < 129; i++)
		p += sprintf(p, "*3\r\n:%d\r\n:%d\r\n*2\r\n$1\r\nh\r\n:%d\r\n", i, i, i + 1);
	slots_bad(raw, "129 primaries", "too many primaries");
}

/* One redirection to parse. */
static void redirect_case(const char *text, int want, int ask, unsigned slot, const char *host,
			  int port)
{
	struct pb_rcl_redirect rd;
	int rc = pb_rcl_parse_redirect(text, strlen(text), "10.0.0.9", &rd);

	tap_ok(rc == want && (want != 1 || (rd.ask == ask && rd.slot == slot &&
					    !strcmp(rd.node.host, host) && rd.node.port == port)),
	       "redirection \"%s\": %d (%d)", text, want, rc);
}

/* MOVED and ASK errors, good and bad. */
static void test_cluster_redirect(void)
{
	redirect_case("MOVED 3999 127.0.0.1:6381", 1, 0, 3999, "127.0.0.1", 6381);
	redirect_case("ASK 16383 redis-2.local:7000", 1, 1, 16383, "redis-2.local", 7000);
	redirect_case("MOVED 0 :6380", 1, 0, 0, "10.0.0.9", 6380);
	redirect_case("MOVED 12 ::1:7000", 1, 0, 12, "::1", 7000);
	redirect_case("ERR unknown command", 0, 0, 0, NULL, 0);
	redirect_case("NOSCRIPT No matching script", 0, 0, 0, NULL, 0);
	redirect_case("MOVEDX 1 h:1", 0, 0, 0, NULL, 0);
	redirect_case("MOVED 16384 h:1", -1, 0, 0, NULL, 0);
	redirect_case("MOVED 99999999999999 h:1", -1, 0, 0, NULL, 0);
	redirect_case("MOVED -1 h:1", -1, 0, 0, NULL, 0);
	redirect_case("MOVED x h:1", -1, 0, 0, NULL, 0);
	redirect_case("MOVED ", -1, 0, 0, NULL, 0);
	redirect_case("MOVED 1", -1, 0, 0, NULL, 0);
	redirect_case("MOVED 1 h", -1, 0, 0, NULL, 0);
	redirect_case("MOVED 1 h:", -1, 0, 0, NULL, 0);
	redirect_case("MOVED 1 h:0", -1, 0, 0, NULL, 0);
	redirect_case("MOVED 1 h:65536", -1, 0, 0, NULL, 0);
	redirect_case("MOVED 1 h:1x", -1, 0, 0, NULL, 0);
	redirect_case("MOVED 1 h:1234567", -1, 0, 0, NULL, 0);
	redirect_case("ASK 1 h h:1", -1, 0, 0, NULL, 0);
	redirect_case("ASK 1 h/x:1", -1, 0, 0, NULL, 0);
}

/* ---- a working server ------------------------------------------------- */

/* 1 if text has a negative number right after '{' (spaces allowed): a
 * hand-copied error code such as "return {-3}". */
static int has_bare_code(const char *text)
{
	for (const char *p = strchr(text, '{'); p; p = strchr(p + 1, '{')) {
		const char *q = p + 1 + strspn(p + 1, " ");

		if (q[0] == '-' && q[1] >= '0' && q[1] <= '9')
			return 1;
	}
	return 0;
}

/* 1 if text, past its first two lines (the E_* codes and the unpacking of
 * the named arguments), indexes ARGV with a number. */
static int has_argv_number(const char *text)
{
	const char *p = strchr(text, '\n');

	p = p ? strchr(p + 1, '\n') : NULL;
	for (p = p ? strstr(p, "ARGV[") : NULL; p; p = strstr(p + 1, "ARGV["))
		if (p[5] >= '0' && p[5] <= '9')
			return 1;
	return 0;
}

/* The Redis store's scripts: error codes by name (their values from
 * error.h), arguments by name, and every one compiles. */
static void test_store_scripts(int port)
{
	static const int codes[] = { PB_EBADREQ, PB_ENOSESSION, PB_ECLOSED, PB_EQFULL,
				     PB_ESEQGAP, PB_ELOST };
	struct client c;
	struct res res;
	char url[64], *text, *probe;
	size_t n = 0, bare = 0, argv = 0, loaded = 0;
	int same = 1;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	client_open(&c, url, 1000, 1000);
	RUN_UNTIL(&c, c.ups, 3000);
	while ((text = pb_store_redis_script(n)) != NULL) {
		bare += has_bare_code(text);
		argv += has_argv_number(text);
		if (cmd(&c, &res, "SCRIPT", "LOAD", text, NULL) == 0 &&
		    res.type == REDIS_REPLY_STRING && res.len == 40)
			loaded++;
		else
			tap_diag("  script %zu does not load: %s", n, res.str);
		free(text);
		n++;
	}
	tap_ok(n >= 13, "the store has its %zu scripts", n);
	tap_is_int((long long)bare, 0, "no script returns a hand-copied error code");
	tap_is_int((long long)argv, 0, "no script body indexes ARGV by number");
	tap_is_int((long long)loaded, (long long)n, "every store script compiles (SCRIPT LOAD)");

	/* the E_* line of the scripts, run: the values of error.h */
	text = pb_store_redis_script(0);
	probe = text ? malloc(strlen(text) + 128) : NULL;
	if (probe) {
		snprintf(probe, strlen(text) + 128, "%.*s\nreturn {E_BADREQ, E_NOSESSION, "
			 "E_CLOSED, E_QFULL}", (int)strcspn(text, "\n"), text);
		cmd(&c, &res, "EVAL", probe, "0", NULL);
		for (size_t i = 0; i < 4; i++)
			same = same && res.elements == 4 && res.el_int[i] == codes[i];
		snprintf(probe, strlen(text) + 128, "%.*s\nreturn {E_SEQGAP, E_LOST}",
			 (int)strcspn(text, "\n"), text);
		cmd(&c, &res, "EVAL", probe, "0", NULL);
		for (size_t i = 0; i < 2; i++)
			same = same && res.elements == 2 && res.el_int[i] == codes[4 + i];
	}
	tap_ok(probe && same, "the scripts' E_* codes are error.h's PB_E* values");
	free(probe);
	free(text);
	tap_is_int(client_close(&c), 0, "script client loop closes");
}

/* Run the store's script number idx (its text, by EVAL) on session
 * "TRIM" with ttl 60 s and the NULL-terminated arguments after it. */
static void store_eval(struct client *c, struct res *res, size_t idx, const char *arg, ...)
{
	const char *argv[MAX_ARGS] = { "EVAL", NULL, "3", "pb:{TRIM}:m", "pb:{TRIM}:i",
				       "pb:{TRIM}:o", "60000", "pb:{TRIM}" };
	char *text = pb_store_redis_script(idx);
	int argc = 8;
	va_list ap;

	memset(res, 0, sizeof(*res));
	argv[1] = text;
	va_start(ap, arg);
	for (; arg && argc < MAX_ARGS; arg = va_arg(ap, const char *))
		argv[argc++] = arg;
	va_end(ap);
	if (text && !pb_redis_command(c->r, on_reply, res, argc, argv, NULL))
		RUN_UNTIL(c, res->calls, 5000);
	free(text);
}

/* A READ_IN of session TRIM: acknowledge through after, read max from
 * from (1 MB budget). Answers the status (-100 if not an array). */
static long long store_read(struct client *c, const char *after, const char *from,
			    const char *max)
{
	struct res res;

	store_eval(c, &res, 2, after, max, "1000000", "5000", from, "0", "0", "0", NULL);
	return res.type == REDIS_REPLY_ARRAY ? res.el_int[0] : -100;
}

/* in_bytes of session TRIM, or -1. */
static long long store_in_bytes(struct client *c)
{
	struct res res;

	cmd(c, &res, "HGET", "pb:{TRIM}:m", "in_bytes", NULL);
	return res.type == REDIS_REPLY_STRING ? strtoll(res.str, NULL, 10) : -1;
}

/* The Redis store's inbound byte count (in_bytes) stays exact whichever
 * way READ_IN trims: through the batch the reads handed out (from its
 * in_hb record, without reading the messages back), partway, after a
 * read that skipped ahead, or with a record of another range (left by
 * anyone, e.g. an older instance); and a list that PUSH_IN re-creates
 * after a full trim gets a TTL even when the keys' TTL refresh (once a
 * second, field tt) is not due. */
static void test_store_trim(int port)
{
	struct client c;
	struct res res;
	char url[64];

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	client_open(&c, url, 1000, 1000);
	RUN_UNTIL(&c, c.ups, 3000);
	cmd(&c, &res, "DEL", "pb:{TRIM}:m", "pb:{TRIM}:i", "pb:{TRIM}:o", NULL);
	/* CREATE, then PUSH_IN of messages of 1 to 6 bytes (21 in all) */
	store_eval(&c, &res, 0, "up", "", "me", "5000", "", NULL);
	tap_is_int(res.el_int[0], 0, "trim: session created");
	store_eval(&c, &res, 1, "me", "ta", "tbb", "tccc", "tdddd", "teeeee", "tffffff", NULL);
	tap_ok(res.el_int[0] == 0 && res.el_int[1] == 6 && res.el_int[2] == 6 &&
	       res.el_int[3] == 21, "trim: push: last seq 6, depth 6, 21 bytes");
	tap_is_int(store_read(&c, "0", "0", "2"), 0, "trim: read 1-2");
	tap_is_int(store_read(&c, "2", "2", "2"), 0, "trim: ack 2 (what was handed), read 3-4");
	tap_is_int(store_in_bytes(&c), 18, "trim: the handed batch's 3 bytes are gone");
	tap_is_int(store_read(&c, "3", "3", "1"), 0, "trim: ack 3 only (partway), read 4");
	tap_is_int(store_in_bytes(&c), 15, "trim: a partial ack counts what it trims");
	tap_is_int(store_read(&c, "3", "4", "1"), 0, "trim: read 5 ahead of the ack");
	tap_is_int(store_read(&c, "5", "5", "1"), 0, "trim: ack 4-5 (both reads), read 6");
	tap_is_int(store_in_bytes(&c), 6, "trim: an ack after a read that skipped ahead");
	cmd(&c, &res, "HSET", "pb:{TRIM}:m", "in_hb", "1 6 999", NULL);
	tap_is_int(store_read(&c, "6", "6", "1"), 0, "trim: ack 6 with a record of seqs 1-6");
	tap_is_int(store_in_bytes(&c), 0, "trim: a record of another range is not used");
	cmd(&c, &res, "EXISTS", "pb:{TRIM}:i", NULL);
	tap_is_int(res.integer, 0, "trim: the emptied list is gone");
	store_eval(&c, &res, 1, "me", "tg", NULL);
	tap_ok(res.el_int[0] == 0 && res.el_int[1] == 7 && res.el_int[2] == 1 &&
	       res.el_int[3] == 1, "trim: push again: seq 7, depth 1, 1 byte");
	cmd(&c, &res, "PTTL", "pb:{TRIM}:i", NULL);
	tap_ok(res.integer > 0 && res.integer <= 60000,
	       "trim: the re-created list has a TTL (%lld ms) before the next refresh", res.integer);
	/* PUSH_OUT (touching before it appends) creates the outbound list */
	store_eval(&c, &res, 3, "0", "100", "100000", "tx", NULL);
	tap_ok(res.el_int[0] == 0 && res.el_int[1] == 1, "trim: a send is queued");
	cmd(&c, &res, "PTTL", "pb:{TRIM}:o", NULL);
	tap_ok(res.integer > 0 && res.integer <= 60000,
	       "trim: the outbound list PUSH_OUT creates has a TTL (%lld ms)", res.integer);
	/* one send of 9,000 messages: more than unpack() takes at once */
	{
		enum { BIG = 9000, FIXED = 11 };
		const char **argv = calloc(BIG + FIXED, sizeof(*argv));
		char *text = pb_store_redis_script(3);
		const char *fixed[FIXED] = { "EVAL", text, "3", "pb:{TRIM}:m", "pb:{TRIM}:i",
					     "pb:{TRIM}:o", "60000", "pb:{TRIM}", "0", "100000",
					     "1000000" };

		memset(&res, 0, sizeof(res));
		if (argv && text) {
			memcpy(argv, fixed, sizeof(fixed));
			for (int i = 0; i < BIG; i++)
				argv[FIXED + i] = "tz";
			if (!pb_redis_command(c.r, on_reply, &res, BIG + FIXED, argv, NULL))
				RUN_UNTIL(&c, res.calls, 5000);
		}
		tap_ok(res.el_int[0] == 0 && res.el_int[1] == BIG,
		       "trim: a send of 9000 messages is queued whole (%lld)", res.el_int[1]);
		cmd(&c, &res, "LLEN", "pb:{TRIM}:o", NULL);
		tap_is_int(res.integer, BIG + 1, "trim: all 9000 are in the outbound list");
		free(argv);
		free(text);
	}
	cmd(&c, &res, "DEL", "pb:{TRIM}:m", "pb:{TRIM}:i", "pb:{TRIM}:o", NULL);
	tap_is_int(client_close(&c), 0, "trim client loop closes");
}

/* Commands, scripts, NOSCRIPT, refusals, pipelining, pub/sub refcounts. */
static void test_basic(int port)
{
	struct client c;
	struct res a, many[100];
	char url[64];
	const char *argv[3];
	size_t lens[3];
	int rc, ok;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	client_open(&c, url, 1000, 1000);
	tap_is_int(pb_redis_ready(c.r), 0, "not ready before the loop ran");
	RUN_UNTIL(&c, c.ups == 1 && c.resubs == 1, 5000);
	tap_is_int(c.ups, 1, "connected: on_state(1) once");
	tap_is_int(c.resubs, 1, "subscriber up: on_resubscribed once");
	tap_is_int(pb_redis_ready(c.r), 1, "ready");

	rc = cmd(&c, &a, "SET", "greeting", "hello", NULL);
	tap_ok(rc == 0 && a.calls == 1 && a.err == 0 && a.type == REDIS_REPLY_STATUS &&
	       !strcmp(a.str, "OK"), "SET answers +OK");
	rc = cmd(&c, &a, "GET", "greeting", NULL);
	tap_ok(rc == 0 && a.calls == 1 && a.type == REDIS_REPLY_STRING && !strcmp(a.str, "hello"),
	       "GET answers the value");

	/* binary-safe arguments */
	argv[0] = "SET";
	argv[1] = "bin";
	argv[2] = "a\0b";
	lens[0] = 3;
	lens[1] = 3;
	lens[2] = 3;
	memset(&a, 0, sizeof(a));
	rc = pb_redis_command(c.r, on_reply, &a, 3, argv, lens);
	RUN_UNTIL(&c, a.calls, 5000);
	rc = rc ? rc : cmd(&c, &a, "STRLEN", "bin", NULL);
	tap_ok(rc == 0 && a.type == REDIS_REPLY_INTEGER && a.integer == 3,
	       "argvlen: a value with a NUL byte keeps its 3 bytes");

	rc = cmd(&c, &a, "NOSUCHCOMMAND", "x", NULL);
	tap_ok(rc == 0 && a.calls == 1 && a.err == 0 && a.type == REDIS_REPLY_ERROR,
	       "an error reply is handed over as a reply (err 0)");

	rc = eval(&c, &a, 0, 1, "key1", "val-", NULL);
	tap_ok(rc == 0 && a.calls == 1 && a.err == 0 && a.type == REDIS_REPLY_STRING &&
	       !strcmp(a.str, "val-key1"), "eval script 0: ARGV[1]..KEYS[1] = %s", a.str);
	rc = eval(&c, &a, 1, 1, "counter", NULL);
	tap_ok(rc == 0 && a.calls == 1 && a.type == REDIS_REPLY_INTEGER && a.integer == 1,
	       "eval script 1: INCR = 1");

	rc = cmd(&c, &a, "SCRIPT", "FLUSH", NULL);
	tap_ok(rc == 0 && a.calls == 1 && !strcmp(a.str, "OK"), "SCRIPT FLUSH");
	rc = eval(&c, &a, 0, 1, "key2", "again-", NULL);
	tap_ok(rc == 0 && a.calls == 1 && a.err == 0 && a.type == REDIS_REPLY_STRING &&
	       !strcmp(a.str, "again-key2"), "after SCRIPT FLUSH eval reloads and retries once");
	RUN_UNTIL(&c, 0, 50);
	tap_is_int(a.calls, 1, "NOSCRIPT recovery: the callback ran exactly once");
	rc = eval(&c, &a, 1, 1, "counter", NULL);
	tap_ok(rc == 0 && a.calls == 1 && a.type == REDIS_REPLY_INTEGER && a.integer == 2,
	       "script 1 also recovers: INCR = 2");

	memset(&a, 0, sizeof(a));
	tap_is_int(pb_redis_eval(c.r, 2, 0, 0, NULL, NULL, on_reply, &a), PB_EBADREQ,
		   "eval of an unknown script refused");
	argv[0] = "k";
	tap_is_int(pb_redis_eval(c.r, 0, 2, 1, argv, NULL, on_reply, &a), PB_EBADREQ,
		   "eval with more keys than arguments refused");
	argv[0] = "SUBSCRIBE";
	argv[1] = "x";
	tap_is_int(pb_redis_command(c.r, on_reply, &a, 2, argv, NULL), PB_EBADREQ,
		   "SUBSCRIBE on the command connection refused");
	argv[0] = "monitor";
	tap_is_int(pb_redis_command(c.r, on_reply, &a, 1, argv, NULL), PB_EBADREQ,
		   "MONITOR refused");
	RUN_UNTIL(&c, 0, 50);
	tap_is_int(a.calls, 0, "refused commands never call back");

	/* 100 pipelined commands: each answered once, in order */
	memset(many, 0, sizeof(many));
	argv[0] = "INCR";
	argv[1] = "pipelined";
	ok = 1;
	for (int i = 0; i < 100; i++)
		ok &= pb_redis_command(c.r, on_reply, &many[i], 2, argv, NULL) == 0;
	RUN_UNTIL(&c, many[99].calls, 5000);
	for (int i = 0; i < 100; i++)
		ok &= many[i].calls == 1 && many[i].err == 0 && many[i].integer == i + 1;
	tap_ok(ok, "100 pipelined INCRs: each callback once, values 1..100");

	/* reference-counted subscriptions */
	tap_is_int(pb_redis_subscribe(c.r, "news"), 0, "subscribe news");
	tap_is_int(pb_redis_subscribe(c.r, "news"), 0, "subscribe news again");
	tap_ok(wait_numsub(&c, "news", 1), "the server has one subscriber on news");
	pb_redis_unsubscribe(c.r, "news");
	rc = cmd(&c, &a, "PUBLISH", "news", "hello", NULL);
	tap_ok(rc == 0 && a.type == REDIS_REPLY_INTEGER && a.integer == 1,
	       "after 2 subscribes and 1 unsubscribe, PUBLISH reaches 1 subscriber");
	RUN_UNTIL(&c, c.msgs == 1, 3000);
	tap_is_int(c.msgs, 1, "on_message once");
	tap_ok(!strcmp(c.msg_ch, "news") && c.msg_len == 5 && !memcmp(c.msg, "hello", 5),
	       "on_message: channel news, payload hello");
	pb_redis_unsubscribe(c.r, "news");
	tap_ok(wait_numsub(&c, "news", 0), "the last unsubscribe reaches the server");
	rc = cmd(&c, &a, "PUBLISH", "news", "unheard", NULL);
	tap_ok(rc == 0 && a.integer == 0, "PUBLISH after it reaches nobody");
	RUN_UNTIL(&c, 0, 200);
	tap_is_int(c.msgs, 1, "no message after the last unsubscribe");

	/* subscribe, unsubscribe, subscribe within one loop pass */
	pb_redis_subscribe(c.r, "churn");
	pb_redis_unsubscribe(c.r, "churn");
	pb_redis_subscribe(c.r, "churn");
	tap_ok(wait_numsub(&c, "churn", 1), "sub/unsub/sub in one pass: subscribed");
	argv[0] = "PUBLISH";
	argv[1] = "churn";
	argv[2] = "x\0y";
	lens[0] = 7;
	lens[1] = 5;
	lens[2] = 3;
	memset(&a, 0, sizeof(a));
	rc = pb_redis_command(c.r, on_reply, &a, 3, argv, lens);
	RUN_UNTIL(&c, a.calls && c.msgs == 2, 3000);
	tap_ok(rc == 0 && a.integer == 1 && c.msgs == 2 && c.msg_len == 3 &&
	       !memcmp(c.msg, "x\0y", 3), "binary payload delivered with its length");
	pb_redis_unsubscribe(c.r, "churn");
	pb_redis_subscribe(c.r, "churn");
	pb_redis_unsubscribe(c.r, "churn");
	tap_ok(wait_numsub(&c, "churn", 0), "unsub/sub/unsub in one pass: unsubscribed");
	tap_is_int(c.msgs, 2, "no stray messages");

	tap_is_int(client_close(&c), 0, "free: the loop closes with no handle left");
	tap_is_int(c.downs, 0, "free does not call on_state");
}

/* A command that outlives command_timeout_ms breaks the connection, which
 * then heals by itself. */
static void test_timeout(int port)
{
	struct client c;
	struct res a, b;
	char url[64];
	const char *argv[] = { "GET", "greeting" };
	const char *sleep2[] = { "DEBUG", "SLEEP", "2" };
	int64_t t0;
	int rc;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	client_open(&c, url, 500, 300);
	RUN_UNTIL(&c, c.ups == 1 && c.resubs == 1, 5000);
	tap_is_int(c.ups, 1, "timeout client up");
	t0 = h_now_ms();
	memset(&a, 0, sizeof(a));
	rc = pb_redis_command(c.r, on_reply, &a, 3, sleep2, NULL);
	RUN_UNTIL(&c, a.calls, 3000);
	tap_ok(rc == 0 && a.calls == 1 && a.err == PB_ESTORE && a.type == -1,
	       "DEBUG SLEEP 2 with a 300 ms timeout: PB_ESTORE, no reply");
	tap_ok(a.at_ms - t0 >= 250 && a.at_ms - t0 < 1000, "it failed after %lld ms",
	       (long long)(a.at_ms - t0));
	tap_is_int(c.downs, 1, "on_state(0) once");
	tap_is_int(pb_redis_ready(c.r), 0, "not ready after the timeout");
	memset(&b, 0, sizeof(b));
	tap_is_int(pb_redis_command(c.r, on_reply, &b, 2, argv, NULL), PB_ESTORE,
		   "a command while down fails at once with PB_ESTORE");
	RUN_UNTIL(&c, c.ups == 2, 8000);
	tap_is_int(c.ups, 2, "reconnected by itself: on_state(1) again");
	rc = cmd(&c, &b, "GET", "greeting", NULL);
	tap_ok(rc == 0 && b.calls == 1 && !strcmp(b.str, "hello"), "commands work again");
	tap_is_int(c.downs, 1, "still exactly one on_state(0)");
	tap_is_int(a.calls, 1, "the timed-out callback ran exactly once");
	tap_is_int(c.resubs, 1, "the idle subscriber connection was not disturbed");
	tap_is_int(client_close(&c), 0, "loop closes");
}

/* A SUBSCRIBE the server does not confirm in time breaks the subscriber
 * connection alone; it resubscribes by itself. */
static void test_sub_timeout(int port)
{
	struct client c;
	struct res a;
	char url[64], portbuf[16];
	char *cli[] = { "redis-cli", "-p", portbuf, "DEBUG", "SLEEP", "1.5", NULL };
	int rc;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	snprintf(portbuf, sizeof(portbuf), "%d", port);
	client_open(&c, url, 500, 300);
	RUN_UNTIL(&c, c.ups == 1 && c.resubs == 1, 5000);
	tap_is_int(c.resubs, 1, "subscriber up");
	if (!h_spawn(cli, NULL, 0, NULL, 0))
		tap_bail("cannot run redis-cli");
	RUN_UNTIL(&c, 0, 300);          /* the server is asleep now */
	tap_is_int(pb_redis_subscribe(c.r, "sleepy"), 0, "subscribe while the server sleeps");
	RUN_UNTIL(&c, c.resubs == 2, 8000);
	tap_is_int(c.resubs, 2, "unconfirmed SUBSCRIBE: subscriber reconnected, resubscribed");
	tap_ok(wait_numsub(&c, "sleepy", 1), "the channel is subscribed");
	rc = cmd(&c, &a, "PUBLISH", "sleepy", "awake", NULL);
	RUN_UNTIL(&c, c.msgs == 1, 3000);
	tap_ok(rc == 0 && a.integer == 1 && c.msgs == 1, "and receives messages");
	tap_is_int(c.ups, 1, "the idle command connection stayed up");
	tap_is_int(c.downs, 0, "no on_state(0)");
	tap_is_int(client_close(&c), 0, "loop closes");
}

/* A host name goes through uv_getaddrinfo. */
static void test_hostname(int port)
{
	struct client c;
	struct res a;
	char url[64];
	int rc;

	snprintf(url, sizeof(url), "redis://localhost:%d", port);
	client_open(&c, url, 1000, 1000);
	RUN_UNTIL(&c, c.ups == 1 && c.resubs == 1, 5000);
	tap_is_int(c.ups, 1, "localhost resolved and connected");
	rc = cmd(&c, &a, "GET", "greeting", NULL);
	tap_ok(rc == 0 && !strcmp(a.str, "hello"), "GET through localhost");
	tap_is_int(client_close(&c), 0, "loop closes");

	client_open(&c, url, 1000, 1000);
	tap_is_int(client_close(&c), 0, "free while resolving: loop closes");
	tap_is_int(c.ups + c.downs + c.resubs, 0, "no callbacks");
}

/* SIGKILL the server, start it again on the same port. */
static void test_restart(struct h_proc **srv, int port)
{
	struct client c, c2;
	struct res a, b;
	char url[64];
	const char *argv[] = { "GET", "greeting" };
	const char *sleep1[] = { "DEBUG", "SLEEP", "0.3" };
	int rc;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/1", port);
	client_open(&c, url, 500, 500);
	RUN_UNTIL(&c, c.ups == 1 && c.resubs == 1, 5000);
	tap_is_int(c.ups, 1, "restart client up");
	pb_redis_subscribe(c.r, "survivor");
	tap_ok(wait_numsub(&c, "survivor", 1), "subscribed to survivor");

	client_open(&c2, url, 500, 500);
	RUN_UNTIL(&c2, c2.ups == 1 && c2.resubs == 1, 5000);
	tap_is_int(c2.ups, 1, "second client up");
	pb_redis_subscribe(c2.r, "survivor");
	memset(&b, 0, sizeof(b));
	tap_is_int(pb_redis_command(c2.r, on_reply, &b, 3, sleep1, NULL), 0,
		   "second client: DEBUG SLEEP 0.3 in flight");
	RUN_UNTIL(&c2, 0, 50);
	c2.free_on_down = 1;

	tap_is_int(h_stop(*srv, SIGKILL, 3000), 128 + SIGKILL, "redis-server killed");
	RUN_UNTIL(&c2, c2.r == NULL && b.calls, 3000);
	tap_ok(c2.downs == 1 && c2.r == NULL, "second client freed itself from on_state(0)");
	tap_ok(b.calls == 1 && b.err == PB_ESTORE, "its command in flight failed once");
	tap_is_int(client_close(&c2), 0, "its loop closes");
	RUN_UNTIL(&c, c.downs == 1, 3000);
	tap_is_int(c.downs, 1, "server gone: on_state(0) once");
	tap_is_int(pb_redis_ready(c.r), 0, "not ready");
	memset(&a, 0, sizeof(a));
	tap_is_int(pb_redis_command(c.r, on_reply, &a, 2, argv, NULL), PB_ESTORE,
		   "command on a down server: PB_ESTORE at once");
	tap_is_int(pb_redis_eval(c.r, 0, 1, 2, argv, NULL, on_reply, &a), PB_ESTORE,
		   "eval on a down server: PB_ESTORE at once");
	RUN_UNTIL(&c, 0, 300);
	tap_is_int(a.calls, 0, "refused commands never call back");
	tap_is_int(c.downs, 1, "still one on_state(0) while reconnecting fails");

	*srv = redis_start(port, NULL);
	if (!*srv)
		tap_bail("cannot restart redis-server on port %d", port);
	RUN_UNTIL(&c, c.ups == 2 && c.resubs == 2, 8000);
	tap_is_int(c.ups, 2, "server back: on_state(1) again");
	tap_is_int(c.resubs, 2, "on_resubscribed after the reconnect");
	tap_is_int(c.downs, 1, "exactly one on_state(0)");
	rc = cmd(&c, &a, "SET", "after", "restart", NULL);
	rc = rc ? rc : cmd(&c, &a, "GET", "after", NULL);
	tap_ok(rc == 0 && a.calls == 1 && !strcmp(a.str, "restart"), "SET/GET work again");
	rc = eval(&c, &a, 0, 1, "k", "v-", NULL);
	tap_ok(rc == 0 && a.calls == 1 && !strcmp(a.str, "v-k"), "scripts reloaded on reconnect");
	rc = cmd(&c, &a, "PUBLISH", "survivor", "still here", NULL);
	tap_ok(rc == 0 && a.integer == 1, "the subscription was restored on the new server");
	RUN_UNTIL(&c, c.msgs == 1, 3000);
	tap_ok(c.msgs == 1 && !strcmp(c.msg_ch, "survivor") && c.msg_len == 10,
	       "PUBLISH after the restart reaches on_message once");
	tap_is_int(client_close(&c), 0, "loop closes");
}

/* pb_redis_free() with commands in flight, from outside and from inside a
 * reply callback. */
static void test_free_inflight(int port)
{
	struct client c;
	struct res rs[6];
	char url[64];
	const char *argv[] = { "GET", "greeting" };
	int ok = 1;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	client_open(&c, url, 1000, 1000);
	RUN_UNTIL(&c, c.ups == 1 && c.resubs == 1, 5000);
	tap_is_int(c.ups, 1, "free client up");
	memset(rs, 0, sizeof(rs));
	for (int i = 0; i < 5; i++)
		ok &= pb_redis_command(c.r, on_reply, &rs[i], 2, argv, NULL) == 0;
	ok &= pb_redis_eval(c.r, 0, 1, 2, argv, NULL, on_reply, &rs[5]) == 0;
	tap_ok(ok, "6 commands accepted");
	pb_redis_free(c.r);
	ok = 1;
	for (int i = 0; i < 6; i++)
		ok &= rs[i].calls == 1 && rs[i].err == PB_ESTORE && rs[i].type == -1;
	tap_ok(ok, "pb_redis_free: each in-flight callback ran once with PB_ESTORE");
	c.r = NULL;
	tap_is_int(client_close(&c), 0, "loop closes after the free");
	ok = 1;
	for (int i = 0; i < 6; i++)
		ok &= rs[i].calls == 1;
	tap_ok(ok, "and none ran again");
	tap_is_int(c.downs, 0, "no on_state(0) for a free");

	/* the first reply's callback frees the client */
	client_open(&c, url, 1000, 1000);
	RUN_UNTIL(&c, c.ups == 1 && c.resubs == 1, 5000);
	pb_redis_subscribe(c.r, "inflight");
	memset(rs, 0, sizeof(rs));
	rs[0].free_client = &c;
	ok = 1;
	for (int i = 0; i < 4; i++)
		ok &= pb_redis_command(c.r, on_reply, &rs[i], 2, argv, NULL) == 0;
	tap_ok(ok, "4 commands accepted");
	RUN_UNTIL(&c, rs[3].calls, 5000);
	tap_ok(rs[0].calls == 1 && rs[0].err == 0 && !strcmp(rs[0].str, "hello"),
	       "first command answered; its callback freed the client");
	ok = 1;
	for (int i = 1; i < 4; i++)
		ok &= rs[i].calls == 1 && rs[i].err == PB_ESTORE;
	tap_ok(ok, "the other three: once each with PB_ESTORE");
	tap_ok(c.r == NULL, "client freed from its own callback");
	tap_is_int(client_close(&c), 0, "loop closes");
	ok = 1;
	for (int i = 0; i < 4; i++)
		ok &= rs[i].calls == 1;
	tap_ok(ok, "no callback ran twice");
}

/* ---- servers that are not there, wrong or broken -------------------- */

/* Nothing listens on the port. */
static void test_down(void)
{
	struct client c;
	struct res a;
	char url[64];
	const char *argv[] = { "PING" };

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", h_free_port());
	client_open(&c, url, 300, 300);
	RUN_UNTIL(&c, 0, 400);
	tap_is_int(c.ups + c.downs + c.resubs, 0, "no server: no state callbacks");
	tap_is_int(pb_redis_ready(c.r), 0, "no server: not ready");
	memset(&a, 0, sizeof(a));
	tap_is_int(pb_redis_command(c.r, on_reply, &a, 1, argv, NULL), PB_ESTORE,
		   "no server: command fails at once with PB_ESTORE");
	tap_is_int(pb_redis_eval(c.r, 0, 0, 1, argv, NULL, on_reply, &a), PB_ESTORE,
		   "no server: eval fails at once with PB_ESTORE");
	tap_is_int(pb_redis_subscribe(c.r, "later"), 0, "subscribe while down only records it");
	pb_redis_unsubscribe(c.r, "later");
	RUN_UNTIL(&c, 0, 50);
	tap_is_int(a.calls, 0, "no callback");
	tap_is_int(client_close(&c), 0, "loop closes while reconnecting");
}

/* AUTH and SELECT, and a wrong password. */
static void test_auth(void)
{
	struct client c;
	struct res a;
	struct h_proc *srv;
	char url[96];
	int port = h_free_port(), rc;

	srv = redis_start(port, "--requirepass", "s3cret", NULL);
	if (!srv)
		tap_bail("cannot start redis-server with a password");
	snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d/3", port);
	client_open(&c, url, 1000, 1000);
	RUN_UNTIL(&c, c.ups == 1 && c.resubs == 1, 5000);
	tap_is_int(c.ups, 1, "password: connected");
	tap_is_int(c.resubs, 1, "password: subscriber connected");
	rc = cmd(&c, &a, "CLIENT", "INFO", NULL);
	tap_ok(rc == 0 && a.calls == 1 && strstr(a.str, " db=3 "), "SELECT 3 was sent");
	rc = cmd(&c, &a, "SET", "k3", "in-db-3", NULL);
	rc = rc ? rc : cmd(&c, &a, "GET", "k3", NULL);
	tap_ok(rc == 0 && !strcmp(a.str, "in-db-3"), "SET/GET in db 3");
	rc = eval(&c, &a, 0, 1, "b", "a", NULL);
	tap_ok(rc == 0 && !strcmp(a.str, "ab"), "eval with a password");
	pb_redis_subscribe(c.r, "secure");
	tap_ok(wait_numsub(&c, "secure", 1), "the subscriber connection authenticated");
	rc = cmd(&c, &a, "PUBLISH", "secure", "psst", NULL);
	RUN_UNTIL(&c, c.msgs == 1, 3000);
	tap_ok(rc == 0 && a.integer == 1 && c.msgs == 1 && !strcmp(c.msg_ch, "secure"),
	       "message received with a password");
	tap_is_int(client_close(&c), 0, "loop closes");

	snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d/3", port);
	client_open(&c, url, 300, 300);
	RUN_UNTIL(&c, 0, 800);
	tap_is_int(c.ups + c.resubs, 0, "wrong password: never up");
	tap_is_int(pb_redis_ready(c.r), 0, "wrong password: not ready");
	tap_is_int(client_close(&c), 0, "loop closes");

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	client_open(&c, url, 300, 300);
	RUN_UNTIL(&c, 0, 500);
	tap_is_int(c.ups + c.resubs, 0, "no password for a protected server: never up");
	tap_is_int(client_close(&c), 0, "loop closes");
	h_stop(srv, SIGTERM, 3000);
}

/* An IPv6 literal in brackets (skipped where ::1 cannot be bound). */
static void test_ipv6(void)
{
	struct client c;
	struct res a;
	struct h_proc *srv;
	char url[64];
	int port = h_free_port(), rc;

	srv = redis_start(port, "--bind", "::1", NULL);
	if (!srv) {
		tap_diag("no redis-server on [::1]: IPv6 checks skipped");
		return;
	}
	snprintf(url, sizeof(url), "redis://[::1]:%d/2", port);
	client_open(&c, url, 1000, 1000);
	RUN_UNTIL(&c, c.ups == 1 && c.resubs == 1, 5000);
	tap_is_int(c.ups, 1, "[::1]: connected");
	rc = cmd(&c, &a, "CLIENT", "INFO", NULL);
	tap_ok(rc == 0 && strstr(a.str, "addr=[::1]:") && strstr(a.str, " db=2 "),
	       "[::1]: over IPv6, db 2");
	tap_is_int(client_close(&c), 0, "loop closes");
	h_stop(srv, SIGTERM, 3000);
}

/* A fake server on the test's loop: answers the first bytes of every
 * connection with an integer, whatever was asked. */
struct fake {
	uv_tcp_t srv;
	struct fake_conn {
		uv_tcp_t h;
		int open, answered;
	} conns[64];
	int accepts;
};

/* Read buffers for the fake server. */
static void fake_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char space[4096];

	*buf = uv_buf_init(space, sizeof(space));
}

/* A fake connection's close callback. */
static void fake_closed(uv_handle_t *h)
{
	struct fake_conn *fc = h->data;

	fc->open = 0;
}

/* A fake write's completion. */
static void fake_written(uv_write_t *w, int status)
{
	free(w);
}

/* Answer the first request with ":42", close on EOF. */
static void fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	static char answer[] = ":42\r\n";
	struct fake_conn *fc = s->data;
	uv_buf_t b = uv_buf_init(answer, sizeof(answer) - 1);
	uv_write_t *w;

	if (n < 0) {
		uv_close((uv_handle_t *)s, fake_closed);
		return;
	}
	if (n == 0 || fc->answered)
		return;
	fc->answered = 1;
	w = malloc(sizeof(*w));
	if (w && uv_write(w, s, &b, 1, fake_written))
		free(w);
}

/* Accept a connection on the fake server. */
static void fake_accept(uv_stream_t *srv, int status)
{
	struct fake *f = srv->data;
	struct fake_conn *fc = NULL;

	for (int i = 0; i < 64 && !fc; i++)
		if (!f->conns[i].open)
			fc = &f->conns[i];
	if (status || !fc)
		return;
	memset(fc, 0, sizeof(*fc));
	uv_tcp_init(srv->loop, &fc->h);
	fc->h.data = fc;
	fc->open = 1;
	if (uv_accept(srv, (uv_stream_t *)&fc->h) == 0) {
		f->accepts++;
		uv_read_start((uv_stream_t *)&fc->h, fake_alloc, fake_read);
	} else {
		uv_close((uv_handle_t *)&fc->h, fake_closed);
	}
}

/* A fake-server close callback that needs nothing. */
static void fake_srv_closed(uv_handle_t *h)
{
}

/* Replies of the wrong type during the handshake: never up, reconnects
 * with backoff, no crash. */
static void test_garbage(void)
{
	struct client c;
	struct fake f;
	struct sockaddr_in sin;
	struct sockaddr_storage ss;
	int namelen = sizeof(ss), port;
	char url[64];
	int64_t t0;

	memset(&f, 0, sizeof(f));
	memset(&c, 0, sizeof(c));
	if (uv_loop_init(&c.loop))
		tap_bail("uv_loop_init failed");
	uv_tcp_init(&c.loop, &f.srv);
	f.srv.data = &f;
	uv_ip4_addr("127.0.0.1", 0, &sin);
	if (uv_tcp_bind(&f.srv, (const struct sockaddr *)&sin, 0) ||
	    uv_listen((uv_stream_t *)&f.srv, 64, fake_accept) ||
	    uv_tcp_getsockname(&f.srv, (struct sockaddr *)&ss, &namelen))
		tap_bail("fake server: cannot listen");
	port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	{
		/* the client shares the fake server's loop */
		struct pb_redis_opts o;

		memset(&o, 0, sizeof(o));
		snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
		pb_redis_parse_url(url, &o.url, NULL, 0);
		o.connect_timeout_ms = 500;
		o.command_timeout_ms = 500;
		o.scripts = scripts;
		o.nscripts = 2;
		o.on_state = on_state;
		o.on_message = on_message;
		o.on_resubscribed = on_resub;
		o.arg = &c;
		c.r = pb_redis_new(&c.loop, &o);
	}
	t0 = h_now_ms();
	RUN_UNTIL(&c, 0, 1200);
	tap_is_int(c.ups + c.resubs, 0, "garbage replies: never up");
	tap_ok(f.accepts >= 4 && f.accepts <= 12,
	       "reconnects with backoff: %d connections in %lld ms", f.accepts,
	       (long long)(h_now_ms() - t0));
	pb_redis_free(c.r);
	c.r = NULL;
	for (int i = 0; i < 64; i++)
		if (f.conns[i].open && !uv_is_closing((uv_handle_t *)&f.conns[i].h))
			uv_close((uv_handle_t *)&f.conns[i].h, fake_closed);
	uv_close((uv_handle_t *)&f.srv, fake_srv_closed);
	tap_is_int(client_close(&c), 0, "loop closes");
}

/* A listener that never accepts: connects complete, nothing answers. */
static void test_blackhole(void)
{
	struct client c;
	char url[64];
	int port, fd = h_blackhole_listen(&port);

	if (fd < 0)
		tap_bail("cannot make a blackhole listener");
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	client_open(&c, url, 200, 200);
	RUN_UNTIL(&c, 0, 700);
	tap_is_int(c.ups + c.resubs, 0, "silent server: never up");
	tap_is_int(pb_redis_ready(c.r), 0, "silent server: not ready");
	tap_is_int(client_close(&c), 0, "loop closes mid-handshake");
	close(fd);
}

/* ---- poisoned replies ---------------------------------------------------- */

/* What a poison server sends in place of a normal answer, once. */
enum poison {
	P_UNSOLICITED,          /* a reply after the last answer: nothing pending */
	P_TYPE_BYTE,            /* an unknown type byte */
	P_HUGE_BULK,            /* $999999999999 */
	P_HUGE_ARRAY,           /* an array of 2^31-1 elements */
	P_SUB_FRAME,            /* a "message" of two elements on the subscriber */
	P_SUB_TYPE,             /* an integer push on the subscriber */
};

/* Write all of s to fd. */
static void put_all(int fd, const char *s)
{
	size_t len = strlen(s);
	ssize_t w;

	while (len && (w = write(fd, s, len)) > 0) {
		s += w;
		len -= (size_t)w;
	}
}

/* Parse one RESP command at the start of buf[0, len): *used, the first
 * and last argument (up to 63 bytes); its argument count, 0 if incomplete,
 * -1 if malformed. */
static int poison_parse(const char *buf, size_t len, size_t *used, char *a0, char *alast)
{
	const char *p = buf, *end = buf + len, *eol;
	long n, l;

	if (!len)
		return 0;
	if (*p != '*')
		return -1;
	if (!(eol = memchr(p, '\n', len)))
		return 0;
	n = strtol(p + 1, NULL, 10);
	p = eol + 1;
	for (long i = 0; i < n; i++) {
		if (p >= end || !(eol = memchr(p, '\n', (size_t)(end - p))))
			return 0;
		l = strtol(p + 1, NULL, 10);
		p = eol + 1;
		if (end - p < l + 2)
			return 0;
		if (i == 0 || i == n - 1)
			snprintf(i ? alast : a0, 64, "%.*s", (int)(l < 63 ? l : 63), p);
		p += l + 2;
	}
	*used = (size_t)(p - buf);
	return (int)n;
}

/* The poison server (a forked child; arg: its enum poison): a valid
 * handshake on every connection; GET answers its key, SUBSCRIBE confirms;
 * the first GET or SUBSCRIBE of "poison" gets the poison instead. Never
 * returns. */
static void poison_run(int lfd, void *arg)
{
	enum poison kind = *(enum poison *)arg;
	static char in[64][8192];
	static size_t inlen[64];
	struct pollfd pfd[65];
	int fds[64], poisoned = 0;

	for (int i = 0; i < 64; i++)
		fds[i] = -1;
	for (;;) {
		pfd[0].fd = lfd;
		pfd[0].events = POLLIN;
		for (int i = 0; i < 64; i++) {
			pfd[i + 1].fd = fds[i];
			pfd[i + 1].events = POLLIN;
		}
		if (poll(pfd, 65, 1000) < 0)
			continue;
		if (pfd[0].revents & POLLIN) {
			int fd = accept(lfd, NULL, NULL), i;

			for (i = 0; fd >= 0 && i < 64 && fds[i] >= 0; i++)
				;
			if (fd >= 0 && i < 64) {
				fds[i] = fd;
				inlen[i] = 0;
			} else if (fd >= 0) {
				close(fd);
			}
		}
		for (int i = 0; i < 64; i++) {
			char a0[64], al[64], out[256];
			size_t used;
			ssize_t n;
			int argc;

			if (fds[i] < 0 || !(pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(fds[i], in[i] + inlen[i], sizeof(in[i]) - inlen[i]);
			if (n <= 0) {
				close(fds[i]);
				fds[i] = -1;
				continue;
			}
			inlen[i] += (size_t)n;
			while ((argc = poison_parse(in[i], inlen[i], &used, a0, al)) > 0) {
				int poison = !poisoned && !strcmp(al, "poison");

				if (!strcasecmp(a0, "PING")) {
					put_all(fds[i], "+PONG\r\n");
				} else if (!strcasecmp(a0, "SCRIPT")) {
					put_all(fds[i], "$40\r\n"
						"0123456789012345678901234567890123456789\r\n");
				} else if (!strcasecmp(a0, "SUBSCRIBE")) {
					snprintf(out, sizeof(out),
						 "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n%s\r\n:1\r\n",
						 strlen(al), al);
					put_all(fds[i], out);
					if (poison && kind == P_SUB_FRAME)
						put_all(fds[i], "*2\r\n$7\r\nmessage\r\n$6\r\npoison\r\n");
					if (poison && kind == P_SUB_TYPE)
						put_all(fds[i], ":1\r\n");
					poisoned |= poison;
				} else if (poison && kind == P_TYPE_BYTE) {
					put_all(fds[i], "?1\r\n");
				} else if (poison && kind == P_HUGE_BULK) {
					put_all(fds[i], "$999999999999\r\nabc");
				} else if (poison && kind == P_HUGE_ARRAY) {
					put_all(fds[i], "*2147483647\r\n:1\r\n");
				} else {
					snprintf(out, sizeof(out), "$%zu\r\n%s\r\n", strlen(al), al);
					put_all(fds[i], out);
					if (poison && kind == P_UNSOLICITED)
						put_all(fds[i], "+OK\r\n");
				}
				if (poison && kind != P_SUB_FRAME && kind != P_SUB_TYPE &&
				    strcasecmp(a0, "SUBSCRIBE"))
					poisoned = 1;
				memmove(in[i], in[i] + used, inlen[i] - used);
				inlen[i] -= used;
			}
			if (argc < 0) {
				close(fds[i]);
				fds[i] = -1;
			}
		}
	}
}

/* Fork a poison server on a free loopback port (*port). */
static pid_t poison_start(enum poison kind, int *port)
{
	int lfd;

	*port = 0;
	lfd = h_listen(port);
	if (lfd < 0)
		tap_bail("poison server: cannot listen");
	return h_fork_server(lfd, poison_run, &kind);
}

/* A poisoned reply drops the connection without a crash: the commands
 * pending on it fail at once, each exactly once; the client reconnects
 * and works again. */
static void test_poison(enum poison kind, const char *name)
{
	struct client c;
	struct res ra, rb, rc2, rd;
	const char *a[] = { "GET", "a" }, *b[] = { "GET", "poison" }, *cc[] = { "GET", "c" };
	char url[64];
	int port, sub = kind == P_SUB_FRAME || kind == P_SUB_TYPE;
	pid_t pid = poison_start(kind, &port);
	int64_t t0;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	client_open(&c, url, 500, 3000);
	RUN_UNTIL(&c, c.ups == 1 && c.resubs == 1, 2000);
	if (!tap_ok(c.ups == 1, "%s: up", name))
		goto out;
	memset(&ra, 0, sizeof(ra));
	memset(&rb, 0, sizeof(rb));
	memset(&rc2, 0, sizeof(rc2));
	t0 = h_now_ms();
	if (sub) {
		pb_redis_subscribe(c.r, "poison");
		RUN_UNTIL(&c, c.resubs == 2, 3000);
		tap_is_int(c.resubs, 2, "%s: the subscriber reconnected and resubscribed", name);
		tap_ok(pb_redis_ready(c.r) && c.downs == 0,
		       "%s: the command connection stayed up", name);
	} else {
		tap_ok(!pb_redis_command(c.r, on_reply, &ra, 2, a, NULL) &&
		       !pb_redis_command(c.r, on_reply, &rb, 2, b, NULL) &&
		       !pb_redis_command(c.r, on_reply, &rc2, 2, cc, NULL),
		       "%s: three commands pipelined", name);
		RUN_UNTIL(&c, c.downs == 1 && rb.calls && rc2.calls, 2000);
		h_sleep_ms(50);
		RUN_UNTIL(&c, 0, 50);
		tap_ok(ra.calls == 1 && ra.err == 0 && !strcmp(ra.str, "a"),
		       "%s: the first command got its answer", name);
		if (kind == P_UNSOLICITED)
			tap_ok(rb.calls == 1 && rb.err == 0 && rc2.calls == 1 && rc2.err == 0,
			       "%s: the others too, before the extra reply", name);
		else
			tap_ok(rb.calls == 1 && rb.err == PB_ESTORE && rc2.calls == 1 &&
			       rc2.err == PB_ESTORE && h_now_ms() - t0 < 1500,
			       "%s: the others failed once each with PB_ESTORE, before their "
			       "timeout (%d/%d calls)", name, rb.calls, rc2.calls);
		tap_is_int(c.downs, 1, "%s: the connection went down once", name);
		RUN_UNTIL(&c, c.ups == 2, 3000);
		tap_is_int(c.ups, 2, "%s: reconnected", name);
	}
	memset(&rd, 0, sizeof(rd));
	tap_ok(c.r && pb_redis_command(c.r, on_reply, &rd, 2, cc, NULL) == 0,
	       "%s: a command after recovery", name);
	RUN_UNTIL(&c, rd.calls, 2000);
	tap_ok(rd.calls == 1 && rd.err == 0 && !strcmp(rd.str, "c"), "%s: answered", name);
out:
	tap_is_int(client_close(&c), 0, "%s: loop closes", name);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* ---- durable scripts (WAIT) ------------------------------------------- */

/* Order in which durable callbacks ran. */
static int wait_order[64], wait_n;

/* A durable eval's callback: on_reply, and note the order. */
static void on_durable(void *arg, int err, struct redisReply *reply)
{
	struct res *res = arg;

	on_reply(arg, err, reply);
	if (wait_n < 64)
		wait_order[wait_n++] = (int)res->el_int[3];
}

/* Send a durable INCR of key (script 1); res->el_int[3] = tag. */
static int durable_incr(struct client *c, struct res *res, const char *key, int tag)
{
	const char *argv[] = { key };

	memset(res, 0, sizeof(*res));
	res->el_int[3] = tag;
	return pb_redis_eval_durable(c->r, 1, 1, 1, argv, NULL, on_durable, res);
}

/* cmdstat_wait calls= of INFO commandstats (short after CONFIG
 * RESETSTAT: it must fit struct res), or -1. */
static long long wait_calls(struct client *c)
{
	struct res res;
	const char *p;

	if (cmd(c, &res, "INFO", "commandstats", NULL) || res.type != REDIS_REPLY_STRING)
		return -1;
	p = strstr(res.str, "cmdstat_wait:calls=");
	return p ? atoll(p + 19) : 0;
}

/* Durable scripts: WAIT without a replica fails them after the timeout,
 * in order, while their effect stays on the primary; with a replica they
 * succeed, one WAIT per write; a NOSCRIPT inside a group is retried. */
static void test_wait(int port)
{
	struct client c;
	struct res d[50], g;
	struct h_proc *rep;
	char url[64], ps[16];
	int64_t t0;
	int all, inorder, rport = h_free_port();
	long long w0, w1;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	snprintf(ps, sizeof(ps), "%d", port);
	client_open(&c, url, 1000, 1000);
	RUN_UNTIL(&c, c.ups, 3000);
	cmd(&c, &g, "DEL", "wk", NULL);

	/* no replica: WAIT 1 answers 0 after 300 ms */
	pb_redis_set_wait(c.r, 1, 300);
	wait_n = 0;
	t0 = h_now_ms();
	for (int i = 0; i < 5; i++)
		durable_incr(&c, &d[i], "wk", i);
	memset(&g, 0, sizeof(g));
	pb_redis_command(c.r, on_reply, &g, 2, (const char *const[]){ "GET", "wk" }, NULL);
	RUN_UNTIL(&c, g.calls && d[4].calls, 3000);
	all = 1;
	for (int i = 0; i < 5; i++)
		all = all && d[i].calls == 1 && d[i].err == PB_ESTORE && d[i].type == -1;
	tap_ok(all, "no replica: every durable script answers PB_ESTORE without a reply");
	tap_ok(d[0].at_ms - t0 >= 250 && d[0].at_ms - t0 < 1500,
	       "no replica: after the WAIT timeout (%lld ms)", (long long)(d[0].at_ms - t0));
	inorder = wait_n == 5;
	for (int i = 0; i < wait_n; i++)
		inorder = inorder && wait_order[i] == i;
	tap_ok(inorder, "no replica: callbacks in the order sent (%d)", wait_n);
	tap_ok(g.calls == 1 && !strcmp(g.str, "5"),
	       "the scripts ran on the primary all the same (GET after them: %s)", g.str);
	tap_is_int(pb_redis_ready(c.r), 1, "a WAIT that times out keeps the connection");

	/* wait_replicas 0: durable is plain */
	pb_redis_set_wait(c.r, 0, 0);
	t0 = h_now_ms();
	durable_incr(&c, &d[0], "wk", 0);
	RUN_UNTIL(&c, d[0].calls, 3000);
	tap_ok(d[0].err == 0 && d[0].integer == 6 && h_now_ms() - t0 < 200,
	       "wait 0: a durable script answers at once (%lld)", d[0].integer);

	/* a replica */
	rep = redis_start(rport, "--replicaof", "127.0.0.1", ps, NULL);
	tap_ok(rep != NULL, "replica started");
	t0 = h_now_ms();
	do {
		cmd(&c, &g, "WAIT", "1", "100", NULL);
	} while (g.integer < 1 && h_now_ms() - t0 < 10000);
	tap_ok(g.integer >= 1, "the replica is in sync");
	pb_redis_set_wait(c.r, 1, 1000);
	cmd(&c, &g, "CONFIG", "RESETSTAT", NULL);
	w0 = 0;
	wait_n = 0;
	for (int i = 0; i < 50; i++)
		durable_incr(&c, &d[i], "wk", i);
	RUN_UNTIL(&c, d[49].calls, 5000);
	w1 = wait_calls(&c);
	all = 1;
	inorder = wait_n == 50;
	for (int i = 0; i < 50; i++) {
		all = all && d[i].calls == 1 && d[i].err == 0 && d[i].integer == 7 + i;
		inorder = inorder && wait_order[i] == i;
	}
	tap_ok(all, "replica: 50 durable scripts answered with their replies (7..56)");
	tap_ok(inorder, "replica: in order");
	tap_ok(w1 - w0 >= 1 && w1 - w0 <= 5, "one WAIT per write, not per script (%lld WAITs)",
	       w1 - w0);

	/* NOSCRIPT inside a group */
	cmd(&c, &g, "SCRIPT", "FLUSH", NULL);
	durable_incr(&c, &d[0], "wk", 0);
	durable_incr(&c, &d[1], "wk", 1);
	RUN_UNTIL(&c, d[0].calls && d[1].calls, 5000);
	tap_ok(d[0].err == 0 && d[0].integer == 57 && d[1].err == 0 && d[1].integer == 58,
	       "NOSCRIPT in a WAIT group: reloaded, retried, answered (%lld, %lld)",
	       d[0].integer, d[1].integer);

	/* the replica goes: back to PB_ESTORE */
	h_stop(rep, SIGKILL, 3000);
	pb_redis_set_wait(c.r, 1, 200);
	durable_incr(&c, &d[0], "wk", 0);
	RUN_UNTIL(&c, d[0].calls, 3000);
	tap_is_int(d[0].err, PB_ESTORE, "replica gone: PB_ESTORE again");
	tap_is_int(client_close(&c), 0, "wait client loop closes");
}

/* ---- sentinel ------------------------------------------------------------ */

/* Start a sentinel on port monitoring name at 127.0.0.1:mport. */
static struct h_proc *sentinel_start(int port, const char *name, int mport)
{
	char path[512], conf[1024];
	char *argv[] = { "redis-server", path, "--sentinel", NULL };

	snprintf(path, sizeof(path), "%s/sentinel-%d.conf", h_tmpdir(), port);
	snprintf(conf, sizeof(conf),
		 "port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\n"
		 "sentinel monitor %s 127.0.0.1 %d 1\n"
		 "sentinel down-after-milliseconds %s 1000\n",
		 port, h_tmpdir(), name, mport, name);
	h_write_file(path, conf);
	return h_spawn(argv, "+monitor master", 10000, NULL, 0);
}

/* The fake sentinel's ports: it names the replica, then (from its second
 * connection on) announces a switch to the primary. */
static int fake_rport, fake_pport;

/* The fake sentinel: each connection gets the replica's address and the
 * subscription confirmed; the second and later ones then a switch. */
static void fake_sentinel(int lfd, void *arg)
{
	char buf[4096], out[512];
	int k = 0;

	(void)arg;
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		size_t have = 0;
		ssize_t n;

		if (fd < 0)
			continue;
		k++;
		while (have < sizeof(buf) - 1 &&
		       (n = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0) {
			have += (size_t)n;
			buf[have] = '\0';
			if (strstr(buf, "+switch-master"))
				break;
		}
		snprintf(out, sizeof(out),
			 "*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%d\r\n"
			 "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n",
			 fake_rport >= 10000 ? 5 : 4, fake_rport);
		put_all(fd, out);
		if (k >= 3) {
			char msg[128];

			usleep(800000);
			snprintf(msg, sizeof(msg), "pbm 127.0.0.1 %d 127.0.0.1 %d", fake_rport,
				 fake_pport);
			snprintf(out, sizeof(out),
				 "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$%zu\r\n%s\r\n",
				 strlen(msg), msg);
			put_all(fd, out);
		}
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		close(fd);
	}
}

/* The primary found through sentinels: a dead one and one that does not
 * know the master are skipped; an answer naming a replica is refused by
 * ROLE and the sentinels asked again; a +switch-master is followed. */
static void test_sentinel(int port)
{
	struct client c;
	struct res g;
	struct h_proc *rep, *s1, *s2;
	char url[256], ps[16];
	int rport = h_free_port(), sp1 = h_free_port(), sp2 = h_free_port(), dead = h_free_port();
	int lfd, fport = 0;
	pid_t fake;
	int64_t t0;

	snprintf(ps, sizeof(ps), "%d", port);
	rep = redis_start(rport, "--replicaof", "127.0.0.1", ps, NULL);
	s1 = sentinel_start(sp1, "other", port);
	s2 = sentinel_start(sp2, "pbm", port);
	tap_ok(rep && s1 && s2, "a replica and two sentinels started");

	snprintf(url, sizeof(url), "redis+sentinel://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/pbm",
		 dead, sp1, sp2);
	t0 = h_now_ms();
	client_open(&c, url, 500, 1000);
	RUN_UNTIL(&c, c.ups && c.resubs, 5000);
	tap_ok(c.ups == 1 && c.resubs == 1, "up through the third sentinel in %lld ms",
	       (long long)(h_now_ms() - t0));
	cmd(&c, &g, "ROLE", NULL);
	tap_ok(g.elements >= 1 && pb_redis_ready(c.r), "connected to the primary");
	cmd(&c, &g, "CONFIG", "GET", "port", NULL);
	eval(&c, &g, 0, 1, "k", "v", NULL);
	tap_ok(g.err == 0 && !strcmp(g.str, "vk"), "scripts loaded on the primary");
	tap_is_int(client_close(&c), 0, "sentinel client loop closes");

	/* a sentinel that names the replica, then switches to the primary */
	fake_rport = rport;
	fake_pport = port;
	lfd = h_listen(&fport);
	fake = h_fork_server(lfd, fake_sentinel, NULL);
	snprintf(url, sizeof(url), "redis+sentinel://127.0.0.1:%d/pbm", fport);
	client_open(&c, url, 500, 1000);
	RUN_UNTIL(&c, 0, 400);
	tap_is_int(c.ups, 0, "a sentinel naming a replica: not up (ROLE says slave)");
	RUN_UNTIL(&c, c.ups, 6000);
	tap_is_int(c.ups, 1, "+switch-master to the primary: up");
	cmd(&c, &g, "ROLE", NULL);
	tap_ok(g.elements >= 3 && pb_redis_ready(c.r), "and on the primary");
	tap_is_int(client_close(&c), 0, "fake sentinel client loop closes");
	kill(fake, SIGKILL);
	waitpid(fake, NULL, 0);
	h_stop(s1, SIGTERM, 3000);
	h_stop(s2, SIGTERM, 3000);
	h_stop(rep, SIGTERM, 3000);
}

/* ---- Redis Cluster: a live one ------------------------------------------ */

/* Run a shell command (printf-style); the first line of its output (no
 * newline) in out. 0 if it exited with 0. */
static int sh(char *out, size_t outlen, const char *fmt, ...)
{
	char cmdline[1024], line[512] = "";
	va_list ap;
	FILE *f;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmdline, sizeof(cmdline), fmt, ap);
	va_end(ap);
	f = popen(cmdline, "r");
	if (!f)
		return -1;
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	while (fgetc(f) != EOF)
		;
	rc = pclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	if (out)
		snprintf(out, outlen, "%s", line);
	return rc;
}

/* 1 if a TCP socket can bind to 127.0.0.1:port now. */
static int port_free(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* A free port for a cluster node: at most 55535, and its cluster bus
 * port (10000 above) free too. */
static int cluster_port(void)
{
	for (int i = 0; i < 500; i++) {
		int p = h_free_port();

		if (p <= 55535 && port_free(p + 10000))
			return p;
	}
	tap_bail("no free port pair for a cluster node");
	return 0;
}

/* Send SPUBLISH channel msg until c has received more than `before`
 * messages (a subscription may take a moment); 1 on success. */
static int publish_until(struct client *c, const char *channel, const char *msg, int before)
{
	int64_t end = h_now_ms() + 8000;
	struct res res;

	while (c->msgs <= before && h_now_ms() < end) {
		cmd(c, &res, "SPUBLISH", channel, msg, NULL);
		RUN_UNTIL(c, c->msgs > before, 100);
	}
	return c->msgs > before;
}

/* Three primaries (no replicas) made a cluster by redis-cli: commands and
 * scripts routed by slot to every primary; a sharded subscription; a slot
 * migrated under the client (ASK while migrating, MOVED after, the
 * subscription moved to the new owner with on_resubscribed); NOSCRIPT on
 * one node; a primary killed (its slots fail with PB_ESTORE, once each,
 * within the command timeout; the others still answer); a clean free. */
static void test_cluster_live(void)
{
	struct h_proc *node[3];
	int port[3], a = -1, b, resubs, msgs;
	char url[128], out[256], ids[3][64], key[32], val[32], cfg[64], rdb[64];
	struct client c;
	struct res res;
	int64_t t0;

	for (int i = 0; i < 3; i++) {
		port[i] = cluster_port();
		/* own files: an earlier test's dump.rdb would make it non-empty */
		snprintf(cfg, sizeof(cfg), "nodes-%d.conf", port[i]);
		snprintf(rdb, sizeof(rdb), "node-%d.rdb", port[i]);
		node[i] = redis_start(port[i], "--cluster-enabled", "yes", "--cluster-config-file",
				      cfg, "--dbfilename", rdb, "--cluster-node-timeout", "10000",
				      NULL);
		if (!node[i])
			tap_bail("cannot start a cluster node");
	}
	if (sh(out, sizeof(out), "redis-cli --cluster create 127.0.0.1:%d 127.0.0.1:%d "
	       "127.0.0.1:%d --cluster-replicas 0 --cluster-yes 2>&1 | grep -c 'All 16384 slots covered'",
	       port[0], port[1], port[2]) || strcmp(out, "1"))
		tap_bail("redis-cli --cluster create failed: %s", out);
	t0 = h_now_ms();
	for (int i = 0; i < 3; i++)
		while (h_now_ms() < t0 + 15000 &&
		       (sh(out, sizeof(out), "redis-cli -p %d cluster info", port[i]) ||
			strcmp(out, "cluster_state:ok")))
			h_sleep_ms(100);
	for (int i = 0; i < 3; i++)
		sh(ids[i], sizeof(ids[i]), "redis-cli -p %d cluster myid", port[i]);

	/* one seed is enough: the map names the other primaries */
	snprintf(url, sizeof(url), "redis+cluster://127.0.0.1:%d/", port[0]);
	client_open(&c, url, 1000, 1000);
	RUN_UNTIL(&c, c.ups, 10000);
	tap_ok(c.ups == 1 && pb_redis_ready(c.r) && pb_redis_is_cluster(c.r),
	       "cluster: ready once every primary is up");
	for (int i = 0; i < 30; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), "v%d", i);
		if (cmd(&c, &res, "SET", key, val, NULL) || res.type != REDIS_REPLY_STATUS)
			break;
		if (cmd(&c, &res, "GET", key, NULL) || strcmp(res.str, val))
			break;
		if (i == 29)
			tap_ok(1, "cluster: 30 keys set and read back");
	}
	if (strcmp(res.str, "v29"))
		tap_ok(0, "cluster: 30 keys set and read back (%s)", res.str);
	for (int i = 0; i < 3; i++) {
		sh(out, sizeof(out), "redis-cli -p %d dbsize", port[i]);
		tap_ok(atoi(out) > 0, "cluster: node %d holds keys (%s)", i, out);
	}
	tap_ok(eval(&c, &res, 1, 1, "ctr{x}", NULL) == 0 && res.integer == 1 &&
	       eval(&c, &res, 1, 1, "ctr{x}", NULL) == 0 && res.integer == 2,
	       "cluster: a script runs on its key's primary");
	tap_ok(eval(&c, &res, 0, 1, "{x}k", "a", NULL) == 0 && !strcmp(res.str, "a{x}k"),
	       "cluster: a script with arguments");

	/* a sharded subscription on slot 7638 ({abc}) */
	tap_ok(pb_redis_subscribe(c.r, "pb:{abc}") == 0, "cluster: subscribe");
	tap_ok(publish_until(&c, "pb:{abc}", "one", 0) && !strcmp(c.msg_ch, "pb:{abc}") &&
	       c.msg_len == 3 && !memcmp(c.msg, "one", 3), "cluster: a sharded message arrives");

	/* migrate slot 7638 from its owner a to b */
	cmd(&c, &res, "SET", "k{abc}", "moved", NULL);
	for (int i = 0; i < 3; i++)
		if (!sh(out, sizeof(out), "redis-cli -p %d get 'k{abc}'", port[i]) &&
		    !strcmp(out, "moved"))
			a = i;
	if (a < 0)
		tap_bail("cannot find the owner of slot 7638");
	b = (a + 1) % 3;
	sh(NULL, 0, "redis-cli -p %d cluster setslot 7638 importing %s", port[b], ids[a]);
	sh(NULL, 0, "redis-cli -p %d cluster setslot 7638 migrating %s", port[a], ids[b]);
	sh(NULL, 0, "redis-cli -p %d migrate 127.0.0.1 %d '' 0 5000 keys 'k{abc}'", port[a],
	   port[b]);
	tap_ok(cmd(&c, &res, "GET", "k{abc}", NULL) == 0 && res.calls == 1 && !res.err &&
	       !strcmp(res.str, "moved"), "cluster: ASK followed while the slot migrates (%s)",
	       res.str);
	resubs = c.resubs;
	msgs = c.msgs;
	for (int i = 0; i < 3; i++)
		sh(NULL, 0, "redis-cli -p %d cluster setslot 7638 node %s", port[(b + i) % 3],
		   ids[b]);
	tap_ok(cmd(&c, &res, "GET", "k{abc}", NULL) == 0 && res.calls == 1 && !res.err &&
	       !strcmp(res.str, "moved"), "cluster: MOVED followed after the migration (%s)",
	       res.str);
	RUN_UNTIL(&c, c.resubs > resubs, 8000);
	tap_ok(c.resubs > resubs, "cluster: the subscription moved with its slot "
	       "(on_resubscribed)");
	tap_ok(publish_until(&c, "pb:{abc}", "two", msgs) && c.msg_len == 3 &&
	       !memcmp(c.msg, "two", 3), "cluster: messages arrive from the new owner");
	sh(out, sizeof(out), "redis-cli -p %d pubsub shardnumsub 'pb:{abc}' | tail -1", port[b]);
	tap_ok(!strcmp(out, "1"), "cluster: subscribed on the new owner (%s)", out);

	/* slot of {def} moved behind the client's back (no command, so no
	 * MOVED): a new subscription goes to the old owner, which refuses it
	 * (MOVED), and is made at the new owner */
	{
		unsigned slot = pb_redis_key_slot("{def}", 5);
		int oa = -1, ob;

		for (int i = 0; i < 3; i++)
			if (!sh(out, sizeof(out), "redis-cli -p %d set 'k{def}' x", port[i]) &&
			    !strcmp(out, "OK"))
				oa = i;
		if (oa < 0)
			tap_bail("cannot find the owner of slot %u", slot);
		ob = (oa + 1) % 3;
		sh(NULL, 0, "redis-cli -p %d cluster setslot %u importing %s", port[ob], slot,
		   ids[oa]);
		sh(NULL, 0, "redis-cli -p %d cluster setslot %u migrating %s", port[oa], slot,
		   ids[ob]);
		sh(NULL, 0, "redis-cli -p %d migrate 127.0.0.1 %d '' 0 5000 keys 'k{def}'",
		   port[oa], port[ob]);
		for (int i = 0; i < 3; i++)
			sh(NULL, 0, "redis-cli -p %d cluster setslot %u node %s", port[(ob + i) % 3],
			   slot, ids[ob]);
		msgs = c.msgs;
		tap_ok(pb_redis_subscribe(c.r, "pb:{def}") == 0, "cluster: subscribe on a stale map");
		tap_ok(publish_until(&c, "pb:{def}", "three", msgs) && c.msg_len == 5 &&
		       !memcmp(c.msg, "three", 5) && !strcmp(c.msg_ch, "pb:{def}"),
		       "cluster: the refused subscription is made at the new owner");
		sh(out, sizeof(out), "redis-cli -p %d pubsub shardnumsub 'pb:{def}' | tail -1",
		   port[ob]);
		tap_ok(!strcmp(out, "1"), "cluster: subscribed once on the new owner (%s)", out);
		pb_redis_unsubscribe(c.r, "pb:{def}");
	}

	/* NOSCRIPT on the new owner: reloaded there */
	sh(NULL, 0, "redis-cli -p %d script flush", port[b]);
	tap_ok(eval(&c, &res, 1, 1, "ctr{abc}", NULL) == 0 && res.calls == 1 && !res.err &&
	       res.integer == 1, "cluster: NOSCRIPT on one node reloads the script there");

	/* kill the third node: its slots fail, the others work */
	{
		int k = 3 - a - b;
		char kk[32] = "", ok[32] = "";
		struct res r1, r2;
		const char *argv[2] = { "GET", kk };
		int64_t t;

		for (int i = 0; i < 200 && (!kk[0] || !ok[0]); i++) {
			char tmp[32];
			int owner = -1;

			snprintf(tmp, sizeof(tmp), "z%d", i);
			/* the owner answers SET, the others MOVED */
			for (int j = 0; j < 3; j++)
				if (!sh(out, sizeof(out), "redis-cli -p %d set %s 1", port[j], tmp) &&
				    !strcmp(out, "OK"))
					owner = j;
			if (owner == k && !kk[0])
				snprintf(kk, sizeof(kk), "%s", tmp);
			else if (owner != k && owner >= 0 && !ok[0])
				snprintf(ok, sizeof(ok), "%s", tmp);
		}
		h_stop(node[k], SIGKILL, 3000);
		node[k] = NULL;
		memset(&r1, 0, sizeof(r1));
		t = h_now_ms();
		if (pb_redis_command(c.r, on_reply, &r1, 2, argv, NULL) == 0)
			RUN_UNTIL(&c, r1.calls, 5000);
		else
			r1.calls = 1, r1.err = PB_ESTORE;
		tap_ok(r1.calls == 1 && r1.err == PB_ESTORE && h_now_ms() - t < 3000,
		       "cluster: a key of a dead primary fails with PB_ESTORE (%d, %d, %lld ms)",
		       r1.calls, r1.err, (long long)(h_now_ms() - t));
		argv[1] = ok;
		memset(&r2, 0, sizeof(r2));
		if (pb_redis_command(c.r, on_reply, &r2, 2, argv, NULL) == 0)
			RUN_UNTIL(&c, r2.calls, 5000);
		tap_ok(r2.calls == 1 && !r2.err && !strcmp(r2.str, "1"),
		       "cluster: a key of a live primary still answers (%d, %d)", r2.calls, r2.err);
		RUN_UNTIL(&c, 0, 300);
		tap_ok(r1.calls == 1 && r2.calls == 1, "cluster: each callback ran once");
	}
	pb_redis_unsubscribe(c.r, "pb:{abc}");
	tap_ok(client_close(&c) == 0, "cluster: the loop closes after pb_redis_free");
	for (int i = 0; i < 3; i++)
		if (node[i])
			h_stop(node[i], SIGTERM, 3000);
}

int main(void)
{
	struct h_proc *srv;
	int port;

	h_init();
	test_url();
	test_url_cluster();
	test_cluster_slot();
	test_cluster_map();
	test_cluster_redirect();

	port = h_free_port();
	srv = redis_start(port, NULL);
	if (!srv)
		tap_bail("cannot start redis-server");
	test_basic(port);
	test_store_scripts(port);
	test_store_trim(port);
	test_timeout(port);
	test_free_inflight(port);
	test_sub_timeout(port);
	test_hostname(port);
	test_wait(port);
	test_sentinel(port);
	test_restart(&srv, port);
	h_stop(srv, SIGTERM, 3000);

	test_down();
	test_auth();
	test_ipv6();
	test_garbage();
	test_blackhole();
	test_poison(P_UNSOLICITED, "unsolicited reply");
	test_poison(P_TYPE_BYTE, "unknown type byte");
	test_poison(P_HUGE_BULK, "huge bulk length");
	test_poison(P_HUGE_ARRAY, "huge array length");
	test_poison(P_SUB_FRAME, "two-element pub/sub message");
	test_poison(P_SUB_TYPE, "integer pub/sub push");
	test_cluster_live();
	return tap_done();
}
