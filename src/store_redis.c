/*
 * store_redis.c: the Redis store (see store.h for the contract and
 * docs/REDIS.md for the key layout and why it is safe). Every operation on
 * a session is one Lua script run atomically on the session's three keys,
 * which share the hash tag {id} (one cluster slot):
 *
 *   pb:{id}:m   hash: state, route, protocol, owner, lease, cursors, seqs
 *   pb:{id}:i   list: inbound messages (upstream -> client), oldest first
 *   pb:{id}:o   list: outbound messages (client -> upstream), oldest first
 *
 * Wakeups travel on the channel pb:{id}; an instance subscribes to the
 * channels of the sessions it holds. The only key outside a session is
 * pb:leases, a sorted set of session ids by lease deadline that instances
 * scan for orphans.
 *
 * On a Redis Cluster (redis+cluster://) the scripts SPUBLISH (sharded
 * pub/sub: pb:{id} hashes to the session's slot), and the lease index is
 * split into RS_BUCKETS sorted sets pb:leases:{tag}, whose tags spread
 * them over the slot space; a session's entry goes to the bucket of its
 * slot, and the orphan scan asks every bucket.
 *
 * Stored messages are one type byte ('t' text, 'b' binary, 'r' reopen)
 * followed by the data. Replies are checked before use: anything of an
 * unexpected shape is PB_ESTORE, never a crash.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "buf.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "store_redis.h"

/* How many orphans one scan may claim. */
#define RS_ORPHANS_PER_SCAN 100

/* The first line of every script: the PB_E* codes a script may answer,
 * as Lua locals filled in from error.h by rs_script_build(), so scripts
 * say `return {E_NOSESSION}` and no code is copied by hand. */
#define RS_CODES_FMT \
	"local E_BADREQ, E_NOSESSION, E_CLOSED, E_QFULL, E_SEQGAP, E_LOST, E_EXIST =" \
	" %d, %d, %d, %d, %d, %d, %d\n"

/* Redis' clock, so instances with skewed clocks agree on leases. */
#define RS_NOW \
	"local t = redis.call('TIME')\n" \
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/* The start of every session script: the clock; touch(), which
 * refreshes the TTL of the session's three keys; and touch_due(tt), for
 * the scripts that run for every message batch (PUSH_IN, READ_IN): they
 * touch at most once a second, recording when in the field 'tt' (tt: its
 * value), so a live session's keys keep at least ttl - 1 s to live. A list
 * that push_all() creates gets its TTL there and then. */
#define RS_PRELUDE RS_NOW \
	"local function touch() for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end end\n" \
	"local function touch_due(tt)\n" \
	"  tt = tonumber(tt)\n" \
	"  return not tt or now < tt or now - tt >= 1000\n" \
	"end\n"

/* push_all(key): RPUSH the stored messages ARGV[first_msg..] to key, in one
 * call per 1000 (unpack() is bounded by Lua's stack), giving a list the
 * script creates its TTL; -> the list's length. */
#define RS_PUSH_ALL \
	"local function push_all(key)\n" \
	"  local len, n = 0, #ARGV - first_msg + 1\n" \
	"  if n < 1 then return redis.call('LLEN', key) end\n" \
	"  for i = first_msg, #ARGV, 1000 do\n" \
	"    len = redis.call('RPUSH', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))\n" \
	"  end\n" \
	"  if len == n then redis.call('PEXPIRE', key, ttl) end\n" \
	"  return len\n" \
	"end\n"

/* Script numbers, in the order of rs_defs[]. */
enum rs_script {
	RS_CREATE, RS_PUSH_IN, RS_READ_IN, RS_PUSH_OUT, RS_READ_OUT, RS_ACK_OUT,
	RS_CLOSE, RS_END, RS_END_IF_IDLE, RS_RENEW, RS_CLAIM, RS_RELEASE, RS_ORPHANS,
	RS_UNHAND, RS_NSCRIPTS
};

/*
 * One script: the names of its arguments and its body. args is the one
 * place a script's argument layout is written: the names of ARGV[1],
 * ARGV[2], ... in order, space-separated; a leading '#' marks a number
 * (unpacked with tonumber()), and a final "..." says the stored messages
 * follow, from ARGV[first_msg] on. rs_script_build() turns it into the
 * script's second line, e.g.
 *
 *   local ttl, chan, upto = ARGV[1], ARGV[2], tonumber(ARGV[3])
 *
 * and the body uses only the names. The C builders push the arguments in
 * the same order (every session script starts with "ttl chan", pushed by
 * rs_args_init()), and rs_eval() checks their count.
 *
 * Session scripts: KEYS = meta, in, out; ttl = the keys' TTL in ms, chan =
 * the session's channel. Replies are arrays whose first element is 0 or an
 * E_* code.
 */
struct rs_script_def {
	const char *args;
	const char *body;
};

static const struct rs_script_def rs_defs[RS_NSCRIPTS] = {
	/* -> {0, lease}; a live session or a tombstone (the meta key) refuses a
	 * create with its id (fixed ids: atomic here). */
	[RS_CREATE] = { "ttl chan route proto owner #lease_ms hs", RS_PRELUDE
	"if redis.call('EXISTS', KEYS[1]) == 1 then return {E_EXIST} end\n"
	"local lease = now + lease_ms\n"
	"redis.call('HSET', KEYS[1], 'st', 'open', 'route', route, 'proto', proto,\n"
	"  'owner', owner, 'lease', lease, 'drained', 0, 'in_last', 0, 'in_first', 1,\n"
	"  'out_last', 0, 'out_first', 1, 'send_seq', 0, 'act', now, 'hs', hs)\n"
	"touch()\n"
	"return {0, lease}\n" },
	/* -> {0, seq of the last, depth, bytes} */
	[RS_PUSH_IN] = { "ttl chan owner ...", RS_PRELUDE RS_PUSH_ALL
	"local m = redis.call('HMGET', KEYS[1], 'st', 'owner', 'in_last', 'in_bytes', 'tt')\n"
	"if not m[1] then return {E_NOSESSION} end\n"
	"if m[1] ~= 'open' then return {E_CLOSED} end\n"
	"if m[2] ~= owner then return {E_LOST} end\n"
	"local add = 0\n"
	"for i = first_msg, #ARGV do add = add + #ARGV[i] - 1 end\n"
	"local depth = push_all(KEYS[2])\n"
	"local seq = (tonumber(m[3]) or 0) + #ARGV - first_msg + 1\n"
	"local bytes = (tonumber(m[4]) or 0) + add\n"
	"if touch_due(m[5]) then\n"
	"  touch()\n"
	"  redis.call('HSET', KEYS[1], 'in_last', seq, 'in_bytes', bytes, 'tt', now)\n"
	"else\n"
	"  redis.call('HSET', KEYS[1], 'in_last', seq, 'in_bytes', bytes)\n"
	"end\n"
	"redis.call('PUBLISH', chan, 'i')\n"
	"return {0, seq, depth, bytes}\n" },
	/* -> {0, last, depth, closed, ended, code, reason, first_seq, acked,
	 * msg...}; handed '1': after is the handed mark (field 'handed', the
	 * highest seq the latest read returned, else where it read from) */
	[RS_READ_IN] = {
	"ttl chan #after #max #max_bytes tomb_ms #from #hold_ms may_end handed", RS_PRELUDE
	"local m = redis.call('HMGET', KEYS[1], 'st', 'in_last', 'in_first', 'code', 'reason',\n"
	"  'handed', 'in_bytes', 'in_hb', 'tt')\n"
	"if not m[1] then return {E_NOSESSION} end\n"
	"if m[1] == 'ended' then return {E_CLOSED} end\n"
	"local last, first = tonumber(m[2]), tonumber(m[3])\n"
	"if handed == '1' then after = tonumber(m[6] or 0) end\n"
	"if from < after then from = after end\n"
	"if after > last then return {E_BADREQ} end\n"
	/* in_hb "A B N": the messages of seqs A to B hold N bytes. A seq's
	 * message never changes, so it stays true whoever wrote it and
	 * whatever ran since; acknowledging exactly what reads handed out
	 * then trims without reading the messages back to count them. */
	"local hb_a, hb_b, hb_n = string.match(m[8] or '', '^(%d+) (%d+) (%d+)$')\n"
	"hb_a, hb_b, hb_n = tonumber(hb_a), tonumber(hb_b), tonumber(hb_n)\n"
	"local set = {}\n"
	"local function put(f, v) set[#set + 1] = f; set[#set + 1] = v end\n"
	"local acked = false\n"
	"if after >= first then\n"
	"  local gone = 0\n"
	"  if hb_a == first and hb_b == after then\n"
	"    gone = hb_n\n"
	"  else\n"
	"    for _, v in ipairs(redis.call('LRANGE', KEYS[2], 0, after - first)) do\n"
	"      gone = gone + #v - 1\n"
	"    end\n"
	"  end\n"
	"  redis.call('LTRIM', KEYS[2], after - first + 1, -1)\n"
	"  first = after + 1\n"
	"  put('in_first', first)\n"
	"  if gone > 0 then put('in_bytes', (tonumber(m[7]) or 0) - gone) end\n"
	"  acked = true\n"
	"end\n"
	"local depth = last - first + 1\n"
	"local skip = 0\n"
	"if from >= first then skip = from - first + 1 end\n"
	"if skip > depth then skip = depth end\n"
	"local msgs = {}\n"
	"if skip < depth then msgs = redis.call('LRANGE', KEYS[2], skip, skip + max - 1) end\n"
	"local n, bytes = 0, 0\n"
	"for i = 1, #msgs do\n"
	"  local l = #msgs[i] - 1\n"
	"  if n > 0 and bytes + l > max_bytes then break end\n"
	"  bytes = bytes + l\n"
	"  n = n + 1\n"
	"end\n"
	"local mark = from\n"
	"if n > 0 then mark = first + skip + n - 1 end\n"
	"if mark > last then mark = last end\n"
	"put('handed', mark)\n"
	/* the bytes of first..mark, when known: this batch, after the
	 * skipped messages if they are in_hb's */
	"if n > 0 and skip == 0 then\n"
	"  put('in_hb', string.format('%d %d %d', first, mark, bytes))\n"
	"elseif n > 0 and hb_a == first and hb_b == first + skip - 1 then\n"
	"  put('in_hb', string.format('%d %d %d', first, mark, hb_n + bytes))\n"
	"end\n"
	"local closed, ended = 0, 0\n"
	"if m[1] == 'closed' and skip + n == depth then closed = 1 end\n"
	"if m[1] == 'closed' and depth == 0 and may_end == '1' then ended = 1 end\n"
	"put('act', now + hold_ms)\n"
	"if ended == 1 then\n"
	"  put('st', 'ended')\n"
	"  redis.call('HSET', KEYS[1], unpack(set))\n"
	"  redis.call('DEL', KEYS[2], KEYS[3])\n"
	"  redis.call('PEXPIRE', KEYS[1], tomb_ms)\n"
	"  redis.call('PUBLISH', chan, 'e')\n"
	"else\n"
	"  if touch_due(m[9]) then touch(); put('tt', now) end\n"
	"  redis.call('HSET', KEYS[1], unpack(set))\n"
	"  if acked then redis.call('PUBLISH', chan, 'a') end\n"
	"end\n"
	"local out = {0, last, depth, closed, ended, tonumber(m[4] or 0), m[5] or '', first + skip,\n"
	"  after}\n"
	"for i = 1, n do out[#out + 1] = msgs[i] end\n"
	"return out\n" },
	/* -> {0, accepted, send_seq} or {E_SEQGAP, send_seq, expected} or
	 * {E_QFULL} */
	[RS_PUSH_OUT] = { "ttl chan #send_seq #queue_max #queue_max_bytes ...", RS_PRELUDE RS_PUSH_ALL
	"local m = redis.call('HMGET', KEYS[1], 'st', 'send_seq', 'out_last', 'out_first',\n"
	"  'out_bytes')\n"
	"if not m[1] then return {E_NOSESSION} end\n"
	"if m[1] ~= 'open' then return {E_CLOSED} end\n"
	"redis.call('HSET', KEYS[1], 'act', now)\n"
	"touch()\n"
	"local cur = tonumber(m[2])\n"
	"if send_seq > 0 and send_seq <= cur then return {0, 0, cur} end\n"
	"if send_seq > 0 and send_seq > cur + 1 then return {E_SEQGAP, cur, cur + 1} end\n"
	"local n = #ARGV - first_msg + 1\n"
	"if tonumber(m[3]) - tonumber(m[4]) + 1 + n > queue_max then return {E_QFULL} end\n"
	"local add = 0\n"
	"for i = first_msg, #ARGV do add = add + #ARGV[i] - 1 end\n"
	"if (tonumber(m[5]) or 0) + add > queue_max_bytes then return {E_QFULL} end\n"
	"if n > 0 then push_all(KEYS[3]) end\n"
	"if n > 0 then redis.call('HINCRBY', KEYS[1], 'out_last', n) end\n"
	"if add > 0 then redis.call('HINCRBY', KEYS[1], 'out_bytes', add) end\n"
	"if send_seq > 0 then redis.call('HSET', KEYS[1], 'send_seq', send_seq); cur = send_seq end\n"
	"if n > 0 then redis.call('PUBLISH', chan, 'o') end\n"
	"return {0, n, cur}\n" },
	/* -> {0, first_seq, last_seq, msg...} */
	[RS_READ_OUT] = { "ttl chan #after #max", RS_PRELUDE
	"local m = redis.call('HMGET', KEYS[1], 'st', 'out_first', 'out_last')\n"
	"if not m[1] then return {E_NOSESSION} end\n"
	"if m[1] == 'ended' then return {E_CLOSED} end\n"
	"local first = tonumber(m[2])\n"
	"local skip = 0\n"
	"if after >= first then skip = after - first + 1 end\n"
	"local msgs = redis.call('LRANGE', KEYS[3], skip, skip + max - 1)\n"
	"local out = {0, first + skip, tonumber(m[3])}\n"
	"for i = 1, #msgs do out[#out + 1] = msgs[i] end\n"
	"return out\n" },
	/* -> {0} */
	[RS_ACK_OUT] = { "ttl chan #upto", RS_PRELUDE
	"local first = redis.call('HGET', KEYS[1], 'out_first')\n"
	"if not first then return {E_NOSESSION} end\n"
	"first = tonumber(first)\n"
	"if upto >= first then\n"
	"  local gone = 0\n"
	"  for _, v in ipairs(redis.call('LRANGE', KEYS[3], 0, upto - first)) do\n"
	"    gone = gone + #v - 1\n"
	"  end\n"
	"  redis.call('LTRIM', KEYS[3], upto - first + 1, -1)\n"
	"  redis.call('HSET', KEYS[1], 'out_first', upto + 1)\n"
	"  if gone > 0 then redis.call('HINCRBY', KEYS[1], 'out_bytes', -gone) end\n"
	"end\n"
	"return {0}\n" },
	/* -> {0} */
	[RS_CLOSE] = { "ttl chan code reason", RS_PRELUDE
	"local m = redis.call('HMGET', KEYS[1], 'st', 'out_last')\n"
	"if not m[1] then return {E_NOSESSION} end\n"
	"if m[1] ~= 'open' then return {E_CLOSED} end\n"
	"redis.call('HSET', KEYS[1], 'st', 'closed', 'code', code, 'reason', reason,\n"
	"  'out_first', tonumber(m[2]) + 1, 'out_bytes', 0)\n"
	"redis.call('DEL', KEYS[3])\n"
	"touch()\n"
	"redis.call('PUBLISH', chan, 'i')\n"
	"return {0}\n" },
	/* -> {0} */
	[RS_END] = { "ttl chan tomb_ms", RS_PRELUDE
	"local st = redis.call('HGET', KEYS[1], 'st')\n"
	"if not st then return {E_NOSESSION} end\n"
	"if st == 'ended' then return {E_CLOSED} end\n"
	"redis.call('HSET', KEYS[1], 'st', 'ended')\n"
	"redis.call('DEL', KEYS[2], KEYS[3])\n"
	"redis.call('PEXPIRE', KEYS[1], tomb_ms)\n"
	"redis.call('PUBLISH', chan, 'e')\n"
	"return {0}\n" },
	/* -> {0, ended, remaining_ms} */
	[RS_END_IF_IDLE] = { "ttl chan tomb_ms #idle_ms", RS_PRELUDE
	"local m = redis.call('HMGET', KEYS[1], 'st', 'act')\n"
	"if not m[1] then return {E_NOSESSION} end\n"
	"if m[1] == 'ended' then return {E_CLOSED} end\n"
	"local left = tonumber(m[2]) + idle_ms - now\n"
	"if left > 0 then return {0, 0, left} end\n"
	"redis.call('HSET', KEYS[1], 'st', 'ended')\n"
	"redis.call('DEL', KEYS[2], KEYS[3])\n"
	"redis.call('PEXPIRE', KEYS[1], tomb_ms)\n"
	"redis.call('PUBLISH', chan, 'e')\n"
	"return {0, 1, 0}\n" },
	/* -> {0, lease, out_last} or {E_LOST} */
	[RS_RENEW] = { "ttl chan owner #lease_ms", RS_PRELUDE
	"local m = redis.call('HMGET', KEYS[1], 'st', 'owner', 'out_last')\n"
	"if not m[1] then return {E_NOSESSION} end\n"
	"if m[1] == 'ended' then return {E_CLOSED} end\n"
	"if m[2] ~= owner then return {E_LOST} end\n"
	"local lease = now + lease_ms\n"
	"redis.call('HSET', KEYS[1], 'lease', lease)\n"
	"touch()\n"
	"return {0, lease, tonumber(m[3]) or 0}\n" },
	/* -> {0, lease, closed, drained, route, handshake} or {E_LOST, lease} */
	[RS_CLAIM] = { "ttl chan owner #lease_ms", RS_PRELUDE
	"local m = redis.call('HMGET', KEYS[1], 'st', 'owner', 'lease', 'drained', 'route', 'hs')\n"
	"if not m[1] then return {E_NOSESSION} end\n"
	"if m[1] == 'ended' then return {E_CLOSED} end\n"
	"if tonumber(m[3]) > now then return {E_LOST, tonumber(m[3])} end\n"
	"local lease = now + lease_ms\n"
	"redis.call('HSET', KEYS[1], 'owner', owner, 'lease', lease, 'drained', 0)\n"
	"touch()\n"
	"local closed = 0\n"
	"if m[1] == 'closed' then closed = 1 end\n"
	"return {0, lease, closed, tonumber(m[4]) or 0, m[5] or '', m[6] or ''}\n" },
	/* -> {0} or {E_LOST} (lease_ms: RENEW's layout, unused) */
	[RS_RELEASE] = { "ttl chan owner #lease_ms", RS_PRELUDE
	"local m = redis.call('HMGET', KEYS[1], 'st', 'owner')\n"
	"if not m[1] then return {E_NOSESSION} end\n"
	"if m[2] ~= owner then return {E_LOST} end\n"
	"redis.call('HSET', KEYS[1], 'lease', 0, 'drained', 1)\n"
	"return {0}\n" },
	/* KEYS = pb:leases -> ids whose lease has run out */
	[RS_ORPHANS] = { "#limit", RS_NOW
	"return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)\n" },
	/* -> {0}: put the handed mark back from was to to, unless moved since */
	[RS_UNHAND] = { "ttl chan #was #to", RS_PRELUDE
	"local h = redis.call('HGET', KEYS[1], 'handed')\n"
	"if not h then return {0} end\n"
	"if tonumber(h) == was and to < was then redis.call('HSET', KEYS[1], 'handed', to) end\n"
	"return {0}\n" },
};

#define RS_LEASES_KEY "pb:leases"

/* Cluster: the lease index buckets. Bucket i's tag hashes into slots
 * [1024 i, 1024 i + 1023] (checked by test_redis), so the buckets spread
 * over the primaries as the slots do; a session (slot s) uses bucket
 * s / 1024. */
#define RS_BUCKETS 16
static const char *const rs_bucket_keys[RS_BUCKETS] = {
	"pb:leases:{18}", "pb:leases:{249}", "pb:leases:{72}", "pb:leases:{223}",
	"pb:leases:{105}", "pb:leases:{2}", "pb:leases:{95}", "pb:leases:{235}",
	"pb:leases:{265}", "pb:leases:{34}", "pb:leases:{413}", "pb:leases:{155}",
	"pb:leases:{273}", "pb:leases:{363}", "pb:leases:{405}", "pb:leases:{48}",
};

struct redis_store {
	struct pb_store base;   /* first: the pb_store we hand out */
	struct pb_redis *r;
	int up;
	int was_up;                     /* the command connection was up once */
	unsigned long long ttl_ms;      /* of a live session's keys */
	unsigned long long tomb_ms;     /* of a tombstone */
	char *scripts[RS_NSCRIPTS];     /* the Lua sources handed to r */
	int argc[RS_NSCRIPTS];          /* how many named arguments each takes */
	int cluster;                    /* redis+cluster://: SPUBLISH, buckets */
	/* An append or close that failed while connected (too few replicas
	 * answered WAIT) is retried by a resync 1 s later: the core retries
	 * held upstream messages only on resync or recovery. Its own
	 * allocation, closed asynchronously after the store is freed. */
	uv_timer_t *retry;
};

/* One operation in flight: which callback to call, and for whom. */
struct rs_op {
	struct redis_store *st;
	char id[PB_ID_LEN + 1];
	union {
		pb_store_done_cb done;
		pb_store_renew_cb renew;
		pb_store_push_cb push;
		pb_store_batch_cb batch;
		pb_store_send_cb send;
		pb_store_idle_cb idle;
		pb_store_claim_cb claim;
		pb_store_ids_cb ids;
	} cb;
	void *arg;
};

/* Arguments of one script call, built in place. */
struct rs_args {
	const char *v[16];
	size_t len[16];
	char num[12][24];
	int n, nums;
	char keys[3][PB_ID_LEN + 16];
	char chan[PB_ID_LEN + 8];
};

/* ---- building scripts and calls ---------------------------------------- */

/* Append the Lua for one named argument, ARGV[i] (spec: its name, with a
 * leading '#' for a number, or "..." for the messages), to the names and
 * values of the unpacking line. */
static int rs_unpack_arg(struct pb_buf *names, struct pb_buf *values, const char *spec,
			 size_t len, int i)
{
	const char *sep = i > 1 ? ", " : "";
	int r;

	if (len == 3 && !memcmp(spec, "...", 3)) {
		r = pb_buf_printf(names, "%sfirst_msg", sep);
		return r ? r : pb_buf_printf(values, "%s%d", sep, i);
	}
	if (spec[0] == '#') {
		r = pb_buf_printf(names, "%s%.*s", sep, (int)len - 1, spec + 1);
		return r ? r : pb_buf_printf(values, "%stonumber(ARGV[%d])", sep, i);
	}
	r = pb_buf_printf(names, "%s%.*s", sep, (int)len, spec);
	return r ? r : pb_buf_printf(values, "%sARGV[%d]", sep, i);
}

/* The Lua source of def: the E_* codes, the line unpacking its named
 * arguments, its body. Malloc'd; NULL on allocation failure. *argc gets
 * the number of named arguments (not counting "..."). */
static char *rs_script_build(const struct rs_script_def *def, int *argc)
{
	struct pb_buf names, values, text;
	const char *p = def->args;
	char *out = NULL;
	int r, n = 0;

	pb_buf_init(&names, 0);
	pb_buf_init(&values, 0);
	pb_buf_init(&text, 0);
	r = pb_buf_printf(&text, RS_CODES_FMT, PB_EBADREQ, PB_ENOSESSION, PB_ECLOSED,
			  PB_EQFULL, PB_ESEQGAP, PB_ELOST, PB_EEXIST);
	while (!r && *p) {
		size_t len = strcspn(p, " ");

		r = rs_unpack_arg(&names, &values, p, len, n + 1);
		if (p[0] != '.')
			n++;
		p += len;
		p += strspn(p, " ");
	}
	if (!r)
		r = pb_buf_printf(&text, "local %s = %s\n%s", names.data, values.data, def->body);
	if (!r) {
		out = pb_buf_steal(&text, NULL);
		*argc = n;
	}
	pb_buf_free(&names);
	pb_buf_free(&values);
	pb_buf_free(&text);
	return out;
}

/* For a cluster: src (malloc'd, freed here) with every PUBLISH of the
 * scripts turned into SPUBLISH. NULL on allocation failure. */
static char *rs_script_sharded(char *src)
{
	static const char from[] = "redis.call('PUBLISH'", to[] = "redis.call('SPUBLISH'";
	struct pb_buf out;
	const char *p = src, *q;
	char *res = NULL;
	int r = 0;

	if (!src)
		return NULL;
	pb_buf_init(&out, 0);
	while (!r && (q = strstr(p, from)) != NULL) {
		r = pb_buf_printf(&out, "%.*s%s", (int)(q - p), p, to);
		p = q + sizeof(from) - 1;
	}
	if (!r)
		r = pb_buf_printf(&out, "%s", p);
	if (!r)
		res = pb_buf_steal(&out, NULL);
	pb_buf_free(&out);
	free(src);
	return res;
}

/* Start the arguments of a session script: three keys, TTL, channel. */
static void rs_args_init(struct rs_args *a, const struct redis_store *st, const char *id,
			 unsigned long long ttl_ms)
{
	static const char suffix[3] = { 'm', 'i', 'o' };

	a->n = 0;
	a->nums = 0;
	for (int i = 0; i < 3; i++) {
		snprintf(a->keys[i], sizeof(a->keys[i]), "pb:{%.*s}:%c", PB_ID_LEN, id, suffix[i]);
		a->v[a->n] = a->keys[i];
		a->len[a->n++] = strlen(a->keys[i]);
	}
	snprintf(a->num[a->nums], sizeof(a->num[0]), "%llu", ttl_ms);
	a->v[a->n] = a->num[a->nums++];
	a->len[a->n] = strlen(a->v[a->n]);
	a->n++;
	snprintf(a->chan, sizeof(a->chan), "pb:{%.*s}", PB_ID_LEN, id);
	a->v[a->n] = a->chan;
	a->len[a->n++] = strlen(a->chan);
	(void)st;
}

/* Append a byte string argument (borrowed until the call). */
static void rs_args_bytes(struct rs_args *a, const void *p, size_t len)
{
	a->v[a->n] = p;
	a->len[a->n++] = len;
}

/* Append a number argument. */
static void rs_args_num(struct rs_args *a, unsigned long long v)
{
	snprintf(a->num[a->nums], sizeof(a->num[0]), "%llu", v);
	rs_args_bytes(a, a->num[a->nums], strlen(a->num[a->nums]));
	a->nums++;
}

/* A new operation record for id. NULL on allocation failure. */
static struct rs_op *rs_op_new(struct redis_store *st, const char *id, void *arg)
{
	struct rs_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->st = st;
	if (id)
		snprintf(op->id, sizeof(op->id), "%.*s", PB_ID_LEN, id);
	op->arg = arg;
	return op;
}

/* Start an operation on session id for arg: its record, and the script's
 * first arguments in a. NULL if the store is down or memory is short. */
static struct rs_op *rs_begin(struct redis_store *st, const char *id, void *arg,
			      struct rs_args *a)
{
	struct rs_op *op = st->up ? rs_op_new(st, id, arg) : NULL;

	if (op)
		rs_args_init(a, st, id, st->ttl_ms);
	return op;
}

/* 1 for the scripts whose effect a client or an upstream is told about
 * and that must survive a failover: with --store-wait-replicas they are
 * acknowledged only after WAIT (see redis.h). */
static int rs_durable(enum rs_script script)
{
	return script == RS_CREATE || script == RS_PUSH_IN || script == RS_PUSH_OUT ||
	       script == RS_CLOSE;
}

/* Run a session script (3 keys) whose named arguments are in a. 0, or an
 * error and op freed. */
static int rs_eval(struct redis_store *st, enum rs_script script, struct rs_args *a,
		   pb_redis_cb cb, struct rs_op *op)
{
	int r;

	assert(a->n == 3 + st->argc[script]);
	r = rs_durable(script) ? pb_redis_eval_durable(st->r, script, 3, a->n, a->v, a->len, cb, op)
			       : pb_redis_eval(st->r, script, 3, a->n, a->v, a->len, cb, op);

	if (r) {
		free(op);
		return PB_ESTORE;
	}
	return 0;
}

/* Fire-and-forget command (lease index upkeep): no callback needed. */
static void rs_ignore(void *arg, int err, struct redisReply *reply)
{
	(void)arg;
	if (err)
		pb_log_debug("redis: lease index update failed");
	(void)reply;
}

/* The lease index key of session id: pb:leases, or on a cluster the
 * bucket of the session's slot. */
static const char *rs_lease_key(const struct redis_store *st, const char *id)
{
	if (!st->cluster)
		return RS_LEASES_KEY;
	return rs_bucket_keys[pb_redis_key_slot(id, strlen(id)) * RS_BUCKETS / PB_REDIS_SLOTS];
}

/* Record (ZADD) or forget (ZREM, score NULL) a lease deadline. */
static void rs_lease_index(struct redis_store *st, const char *id, const long long *score)
{
	char num[24], key[PB_ID_LEN + 1];
	const char *v[4];
	size_t len[4];

	snprintf(key, sizeof(key), "%.*s", PB_ID_LEN, id);
	if (score) {
		snprintf(num, sizeof(num), "%lld", *score);
		v[0] = "ZADD";
		v[1] = rs_lease_key(st, key);
		v[2] = num;
		v[3] = key;
		for (int i = 0; i < 4; i++)
			len[i] = strlen(v[i]);
		pb_redis_command(st->r, rs_ignore, NULL, 4, v, len);
	} else {
		v[0] = "ZREM";
		v[1] = rs_lease_key(st, key);
		v[2] = key;
		for (int i = 0; i < 3; i++)
			len[i] = strlen(v[i]);
		pb_redis_command(st->r, rs_ignore, NULL, 3, v, len);
	}
}

/* ---- reading replies --------------------------------------------------- */

/* The status of a script reply: 0, a PB_E* code, or PB_ESTORE if the
 * reply is not an array starting with an integer of a known code. */
static int rs_status(int err, const redisReply *rep, size_t min_elements)
{
	long long code;

	if (err || !rep) {
		pb_metrics_add(PB_C_STORE_ERRORS, 1);
		return PB_ESTORE;
	}
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER) {
		if (rep->type == REDIS_REPLY_ERROR)
			pb_log_warn("redis: script error: %.*s", (int)rep->len, rep->str);
		pb_metrics_add(PB_C_STORE_ERRORS, 1);
		return PB_ESTORE;
	}
	code = rep->element[0]->integer;
	switch (code) {
	case 0:
		return rep->elements >= min_elements ? 0 : PB_ESTORE;
	case PB_EBADREQ:
	case PB_ENOSESSION:
	case PB_ECLOSED:
	case PB_EQFULL:
	case PB_ESEQGAP:
	case PB_ELOST:
	case PB_EEXIST:
		return (int)code;
	default:
		pb_metrics_add(PB_C_STORE_ERRORS, 1);
		return PB_ESTORE;
	}
}

/* Element i as a non-negative integer, or -1. */
static long long rs_int(const redisReply *rep, size_t i)
{
	if (i >= rep->elements || rep->element[i]->type != REDIS_REPLY_INTEGER ||
	    rep->element[i]->integer < 0)
		return -1;
	return rep->element[i]->integer;
}

/* Element i as a string (NULL if it is not one). */
static const redisReply *rs_str(const redisReply *rep, size_t i)
{
	if (i >= rep->elements || rep->element[i]->type != REDIS_REPLY_STRING)
		return NULL;
	return rep->element[i];
}

/* Decode stored messages from elements [from, elements) into b, numbered
 * from first_seq. 0, or PB_ESTORE/PB_ENOMEM (b is then empty). */
static int rs_decode_msgs(const redisReply *rep, size_t from, long long first_seq,
			  struct pb_store_batch *b)
{
	size_t n = rep->elements > from ? rep->elements - from : 0;

	b->n = 0;
	b->msgs = NULL;
	if (!n)
		return 0;
	if (first_seq < 1)
		return PB_ESTORE;
	b->msgs = calloc(n, sizeof(*b->msgs));
	if (!b->msgs)
		return PB_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const redisReply *e = rs_str(rep, from + i);
		enum pb_msg_type type;

		if (!e || e->len < 1)
			goto bad;
		switch (e->str[0]) {
		case 't':
			type = PB_MSG_TEXT;
			break;
		case 'b':
			type = PB_MSG_BINARY;
			break;
		case 'r':
			type = PB_MSG_REOPEN;
			break;
		case 'c':
			type = PB_MSG_CLOSE;
			break;
		default:
			goto bad;
		}
		b->msgs[i] = pb_msg_new(type, e->str + 1, e->len - 1);
		if (!b->msgs[i])
			goto bad;
		b->msgs[i]->seq = (uint64_t)first_seq + i;
		b->n++;
	}
	return 0;
bad:
	for (size_t i = 0; i < b->n; i++)
		pb_msg_unref(b->msgs[i]);
	free(b->msgs);
	b->msgs = NULL;
	b->n = 0;
	return PB_ESTORE;
}

/* Release what rs_decode_msgs() made. */
static void rs_free_msgs(struct pb_store_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		pb_msg_unref(b->msgs[i]);
	free(b->msgs);
}

/* ---- operations ------------------------------------------------------- */

/* Reply to a script answering just a status. */
static void rs_done_reply(void *arg, int err, struct redisReply *rep)
{
	struct rs_op *op = arg;

	op->cb.done(op->arg, rs_status(err, rep, 1));
	free(op);
}

/* Reply to CREATE ({0, lease}): record the lease in the index. */
static void rs_lease_reply(void *arg, int err, struct redisReply *rep)
{
	struct rs_op *op = arg;
	int r = rs_status(err, rep, 2);
	long long lease = r ? 0 : rs_int(rep, 1);

	if (!r && lease < 0)
		r = PB_ESTORE;
	if (!r)
		rs_lease_index(op->st, op->id, &lease);
	op->cb.done(op->arg, r);
	free(op);
}

static int rs_create(struct pb_store *s, const char *id, const char *route,
		     const char *protocol, const void *handshake, size_t handshake_len,
		     pb_store_done_cb cb, void *arg)
{
	struct redis_store *st = (struct redis_store *)s;
	struct rs_op *op = rs_op_new(st, id, arg);
	struct rs_args a;
	int r;

	if (!op)
		return PB_ENOMEM;
	op->cb.done = cb;
	rs_args_init(&a, st, id, st->ttl_ms);
	rs_args_bytes(&a, route, strlen(route));
	rs_args_bytes(&a, protocol ? protocol : "", protocol ? strlen(protocol) : 0);
	rs_args_bytes(&a, s->limits.instance, strlen(s->limits.instance));
	rs_args_num(&a, s->limits.lease_ms);
	rs_args_bytes(&a, handshake ? handshake : "", handshake ? handshake_len : 0);
	r = rs_eval(st, RS_CREATE, &a, rs_lease_reply, op);
	if (!r) {
		/* Index the lease in the same write as the create, with this
		 * host's clock: an owner killed right after answering the
		 * client (before the reply's exact ZADD leaves) must still be
		 * found by the orphan scan. CLAIM checks the real lease. */
		struct timespec ts;
		long long provisional;

		clock_gettime(CLOCK_REALTIME, &ts);
		provisional = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
			      (long long)s->limits.lease_ms;
		rs_lease_index(st, id, &provisional);
	}
	return r;
}

/* A close callback that frees the handle. */
static void rs_free_handle(uv_handle_t *h)
{
	free(h);
}

/* The retry timer: the core re-sends what it holds. */
static void rs_on_retry(uv_timer_t *t)
{
	struct redis_store *st = t->data;

	if (st->up)
		pb_store_wake_resync(&st->base);
}

/* A write failed while the connection stayed up (WAIT): resync soon. */
static void rs_retry_soon(struct redis_store *st, int r)
{
	if (r == PB_ESTORE && st->up && !uv_is_active((uv_handle_t *)st->retry))
		uv_timer_start(st->retry, rs_on_retry, 1000, 0);
}

/* Reply to CLOSE. */
static void rs_close_reply(void *arg, int err, struct redisReply *rep)
{
	struct rs_op *op = arg;
	int r = rs_status(err, rep, 1);

	rs_retry_soon(op->st, r);
	op->cb.done(op->arg, r);
	free(op);
}

/* Reply to PUSH_IN. */
static void rs_push_in_reply(void *arg, int err, struct redisReply *rep)
{
	struct rs_op *op = arg;
	int r = rs_status(err, rep, 4);
	long long seq = r ? 0 : rs_int(rep, 1), depth = r ? 0 : rs_int(rep, 2),
		  bytes = r ? 0 : rs_int(rep, 3);

	if (!r && (seq < 1 || depth < 0))
		r = PB_ESTORE;
	if (bytes < 0)
		bytes = 0;      /* keys written before byte counts existed */
	rs_retry_soon(op->st, r);
	op->cb.push(op->arg, r, r ? 0 : (uint64_t)seq, r ? 0 : (size_t)depth,
		    r ? 0 : (size_t)bytes);
	free(op);
}

/* The stored form of a message: type byte, then the data (malloc'd). */
static char *rs_encode_msg(const struct pb_msg *m, size_t *len)
{
	char *p = malloc(m->len + 1);

	if (!p)
		return NULL;
	p[0] = m->type == PB_MSG_BINARY ? 'b' : m->type == PB_MSG_REOPEN ? 'r' :
	       m->type == PB_MSG_CLOSE ? 'c' : 't';
	memcpy(p + 1, m->data, m->len);
	*len = m->len + 1;
	return p;
}

/* Run a session script whose arguments a are followed by the stored form
 * of msgs[0..n). 0, or an error and op freed. */
static int rs_eval_msgs(struct redis_store *st, enum rs_script script, struct rs_args *a,
			struct pb_msg *const *msgs, size_t n, pb_redis_cb reply, struct rs_op *op)
{
	size_t argc = (size_t)a->n + n;
	const char **v = calloc(argc, sizeof(*v));
	size_t *len = calloc(argc, sizeof(*len));
	char **payloads = calloc(n ? n : 1, sizeof(*payloads));
	int r = PB_ENOMEM;

	assert(a->n == 3 + st->argc[script]);
	if (!v || !len || !payloads)
		goto out;
	memcpy(v, a->v, (size_t)a->n * sizeof(*v));
	memcpy(len, a->len, (size_t)a->n * sizeof(*len));
	for (size_t i = 0; i < n; i++) {
		payloads[i] = rs_encode_msg(msgs[i], &len[(size_t)a->n + i]);
		if (!payloads[i])
			goto out;
		v[(size_t)a->n + i] = payloads[i];
	}
	r = (rs_durable(script) ? pb_redis_eval_durable : pb_redis_eval)(
		st->r, script, 3, (int)argc, v, len, reply, op) ? PB_ESTORE : 0;
out:
	if (payloads)
		for (size_t i = 0; i < n; i++)
			free(payloads[i]);
	free(payloads);
	free(v);
	free(len);
	if (r)
		free(op);
	return r;
}

static int rs_push_in(struct pb_store *s, const char *id, struct pb_msg *const *msgs, size_t n,
		      pb_store_push_cb cb, void *arg)
{
	struct redis_store *st = (struct redis_store *)s;
	struct rs_args a;
	struct rs_op *op = rs_begin(st, id, arg, &a);

	if (!op)
		return st->up ? PB_ENOMEM : PB_ESTORE;
	op->cb.push = cb;
	rs_args_bytes(&a, s->limits.instance, strlen(s->limits.instance));
	return rs_eval_msgs(st, RS_PUSH_IN, &a, msgs, n, rs_push_in_reply, op);
}

/* Reply to READ_IN. */
static void rs_read_in_reply(void *arg, int err, struct redisReply *rep)
{
	struct rs_op *op = arg;
	struct pb_store_batch b = { 0 };
	const redisReply *reason;
	long long last, depth, closed, ended, code, first, acked;
	int r = rs_status(err, rep, 9);

	if (!r) {
		last = rs_int(rep, 1);
		depth = rs_int(rep, 2);
		closed = rs_int(rep, 3);
		ended = rs_int(rep, 4);
		code = rs_int(rep, 5);
		reason = rs_str(rep, 6);
		first = rs_int(rep, 7);
		acked = rs_int(rep, 8);
		if (last < 0 || depth < 0 || closed < 0 || ended < 0 || code < 0 || !reason ||
		    first < 1 || acked < 0)
			r = PB_ESTORE;
		else
			r = rs_decode_msgs(rep, 9, first, &b);
		if (!r) {
			b.last_seq = (uint64_t)last;
			b.depth = (size_t)depth;
			b.close.closed = closed == 1;
			b.close.code = (int)code;
			b.close.reason = reason->str;
			b.close.reason_len = reason->len;
			b.ended = ended == 1;
			b.acked = (uint64_t)acked;
			if (b.ended)
				rs_lease_index(op->st, op->id, NULL);
		}
	}
	op->cb.batch(op->arg, r, r ? NULL : &b);
	rs_free_msgs(&b);
	free(op);
}

static int rs_read_in(struct pb_store *s, const char *id, uint64_t after, uint64_t from,
		      size_t max, size_t max_bytes, unsigned hold_secs, int may_end,
		      pb_store_batch_cb cb, void *arg)
{
	struct redis_store *st = (struct redis_store *)s;
	struct rs_args a;
	struct rs_op *op = rs_begin(st, id, arg, &a);

	if (!op)
		return st->up ? PB_ENOMEM : PB_ESTORE;
	op->cb.batch = cb;
	/* The handed mark is resolved in the script; a `from` of
	 * PB_STORE_AFTER_HANDED (0 here) reads from after. */
	rs_args_num(&a, after == PB_STORE_AFTER_HANDED ? 0 : after);
	rs_args_num(&a, max);
	rs_args_num(&a, max_bytes);
	rs_args_num(&a, st->tomb_ms);
	rs_args_num(&a, from == PB_STORE_AFTER_HANDED ? 0 : from);
	rs_args_num(&a, (unsigned long long)hold_secs * 1000);
	rs_args_num(&a, may_end ? 1 : 0);
	rs_args_num(&a, after == PB_STORE_AFTER_HANDED ? 1 : 0);
	return rs_eval(st, RS_READ_IN, &a, rs_read_in_reply, op);
}

/* Reply to PUSH_OUT. */
static void rs_push_out_reply(void *arg, int err, struct redisReply *rep)
{
	struct rs_op *op = arg;
	struct pb_store_send_result res = { 0 };
	int r = rs_status(err, rep, 1);

	if (r == 0 || r == PB_ESEQGAP) {
		long long x = rs_int(rep, 1), y = rs_int(rep, 2);

		if (x < 0 || y < 0) {
			r = PB_ESTORE;
		} else if (r == 0) {
			res.accepted = (size_t)x;
			res.send_seq = (uint64_t)y;
		} else {
			res.send_seq = (uint64_t)x;
			res.expected = (uint64_t)y;
		}
	}
	op->cb.send(op->arg, r, &res);
	free(op);
}

static int rs_push_out(struct pb_store *s, const char *id, struct pb_msg *const *msgs,
		       size_t n, uint64_t send_seq, pb_store_send_cb cb, void *arg)
{
	struct redis_store *st = (struct redis_store *)s;
	struct rs_args a;
	struct rs_op *op;

	if (st->up && n > s->limits.queue_max) {
		struct pb_store_send_result res = { 0 };

		cb(arg, PB_EQFULL, &res);
		return 0;
	}
	op = rs_begin(st, id, arg, &a);
	if (!op)
		return st->up ? PB_ENOMEM : PB_ESTORE;
	op->cb.send = cb;
	rs_args_num(&a, send_seq);
	rs_args_num(&a, s->limits.queue_max);
	rs_args_num(&a, s->limits.queue_max_bytes);
	return rs_eval_msgs(st, RS_PUSH_OUT, &a, msgs, n, rs_push_out_reply, op);
}

/* Reply to READ_OUT. */
static void rs_read_out_reply(void *arg, int err, struct redisReply *rep)
{
	struct rs_op *op = arg;
	struct pb_store_batch b = { 0 };
	int r = rs_status(err, rep, 3);
	long long last = r ? 0 : rs_int(rep, 2);

	if (!r && last < 0)
		r = PB_ESTORE;
	if (!r)
		r = rs_decode_msgs(rep, 3, rs_int(rep, 1), &b);
	b.last_seq = (uint64_t)last;
	op->cb.batch(op->arg, r, r ? NULL : &b);
	rs_free_msgs(&b);
	free(op);
}

static int rs_read_out(struct pb_store *s, const char *id, uint64_t after, size_t max,
		       pb_store_batch_cb cb, void *arg)
{
	struct redis_store *st = (struct redis_store *)s;
	struct rs_args a;
	struct rs_op *op = rs_begin(st, id, arg, &a);

	if (!op)
		return st->up ? PB_ENOMEM : PB_ESTORE;
	op->cb.batch = cb;
	rs_args_num(&a, after);
	rs_args_num(&a, max);
	return rs_eval(st, RS_READ_OUT, &a, rs_read_out_reply, op);
}

/* Run a status-only session script with the numbers nums[0..nnums). */
static int rs_simple(struct pb_store *s, enum rs_script script, const char *id,
		     const unsigned long long *nums, int nnums, pb_store_done_cb cb, void *arg,
		     pb_redis_cb reply)
{
	struct redis_store *st = (struct redis_store *)s;
	struct rs_args a;
	struct rs_op *op = rs_begin(st, id, arg, &a);

	if (!op)
		return st->up ? PB_ENOMEM : PB_ESTORE;
	op->cb.done = cb;
	for (int i = 0; i < nnums; i++)
		rs_args_num(&a, nums[i]);
	return rs_eval(st, script, &a, reply ? reply : rs_done_reply, op);
}

static int rs_ack_out(struct pb_store *s, const char *id, uint64_t upto,
		      pb_store_done_cb cb, void *arg)
{
	unsigned long long n = upto;

	return rs_simple(s, RS_ACK_OUT, id, &n, 1, cb, arg, NULL);
}

static int rs_unhand(struct pb_store *s, const char *id, uint64_t was, uint64_t to,
		     pb_store_done_cb cb, void *arg)
{
	unsigned long long n[2] = { was, to };

	return rs_simple(s, RS_UNHAND, id, n, 2, cb, arg, NULL);
}

static int rs_close(struct pb_store *s, const char *id, int code, const char *reason,
		    size_t reason_len, pb_store_done_cb cb, void *arg)
{
	struct redis_store *st = (struct redis_store *)s;
	struct rs_args a;
	struct rs_op *op = rs_begin(st, id, arg, &a);

	if (!op)
		return st->up ? PB_ENOMEM : PB_ESTORE;
	op->cb.done = cb;
	rs_args_num(&a, (unsigned long long)code);
	rs_args_bytes(&a, reason, reason_len);
	return rs_eval(st, RS_CLOSE, &a, rs_close_reply, op);
}

/* Reply to END: the session leaves the lease index. */
static void rs_end_reply(void *arg, int err, struct redisReply *rep)
{
	struct rs_op *op = arg;
	int r = rs_status(err, rep, 1);

	if (!r || r == PB_ECLOSED || r == PB_ENOSESSION)
		rs_lease_index(op->st, op->id, NULL);
	op->cb.done(op->arg, r);
	free(op);
}

static int rs_end(struct pb_store *s, const char *id, pb_store_done_cb cb, void *arg)
{
	struct redis_store *st = (struct redis_store *)s;
	unsigned long long n = st->tomb_ms;

	return rs_simple(s, RS_END, id, &n, 1, cb, arg, rs_end_reply);
}

/* Reply to END_IF_IDLE. */
static void rs_idle_reply(void *arg, int err, struct redisReply *rep)
{
	struct rs_op *op = arg;
	int r = rs_status(err, rep, 3);
	long long ended = r ? 0 : rs_int(rep, 1), left = r ? 0 : rs_int(rep, 2);

	if (!r && (ended < 0 || left < 0))
		r = PB_ESTORE;
	if (!r && ended)
		rs_lease_index(op->st, op->id, NULL);
	op->cb.idle(op->arg, r, r ? 0 : ended == 1, r ? 0 : (uint64_t)left);
	free(op);
}

static int rs_end_if_idle(struct pb_store *s, const char *id, pb_store_idle_cb cb, void *arg)
{
	struct redis_store *st = (struct redis_store *)s;
	struct rs_args a;
	struct rs_op *op = rs_begin(st, id, arg, &a);

	if (!op)
		return st->up ? PB_ENOMEM : PB_ESTORE;
	op->cb.idle = cb;
	rs_args_num(&a, st->tomb_ms);
	rs_args_num(&a, (unsigned long long)s->limits.idle_secs * 1000);
	return rs_eval(st, RS_END_IF_IDLE, &a, rs_idle_reply, op);
}

/* ---- ownership -------------------------------------------------------- */

/* Run RENEW or RELEASE, which take the owner (and RENEW the lease). */
static int rs_owner_script(struct redis_store *st, enum rs_script script, struct rs_op *op,
			   struct rs_args *a, pb_redis_cb reply)
{
	rs_args_bytes(a, st->base.limits.instance, strlen(st->base.limits.instance));
	rs_args_num(a, st->base.limits.lease_ms);
	return rs_eval(st, script, a, reply, op);
}

/* Reply to RENEW ({0, lease, out_last}): record the lease in the index. */
static void rs_renew_reply(void *arg, int err, struct redisReply *rep)
{
	struct rs_op *op = arg;
	int r = rs_status(err, rep, 3);
	long long lease = r ? 0 : rs_int(rep, 1), out_last = r ? 0 : rs_int(rep, 2);

	if (!r && (lease < 0 || out_last < 0))
		r = PB_ESTORE;
	if (!r)
		rs_lease_index(op->st, op->id, &lease);
	op->cb.renew(op->arg, r, r ? 0 : (uint64_t)out_last);
	free(op);
}

static int rs_renew(struct pb_store *s, const char *id, pb_store_renew_cb cb, void *arg)
{
	struct redis_store *st = (struct redis_store *)s;
	struct rs_args a;
	struct rs_op *op = rs_begin(st, id, arg, &a);

	if (!op)
		return st->up ? PB_ENOMEM : PB_ESTORE;
	op->cb.renew = cb;
	return rs_owner_script(st, RS_RENEW, op, &a, rs_renew_reply);
}

/* Reply to RELEASE: the lease index says "expired now". */
static void rs_release_reply(void *arg, int err, struct redisReply *rep)
{
	struct rs_op *op = arg;
	int r = rs_status(err, rep, 1);
	long long zero = 0;

	if (!r)
		rs_lease_index(op->st, op->id, &zero);
	op->cb.done(op->arg, r);
	free(op);
}

static int rs_release(struct pb_store *s, const char *id, pb_store_done_cb cb, void *arg)
{
	struct redis_store *st = (struct redis_store *)s;
	struct rs_args a;
	struct rs_op *op = rs_begin(st, id, arg, &a);

	if (!op)
		return st->up ? PB_ENOMEM : PB_ESTORE;
	op->cb.done = cb;
	return rs_owner_script(st, RS_RELEASE, op, &a, rs_release_reply);
}

/* Reply to CLAIM. */
static void rs_claim_reply(void *arg, int err, struct redisReply *rep)
{
	struct rs_op *op = arg;
	struct pb_store_claim c = { 0 };
	char route[PB_MAX_ROUTE_LEN + 1];
	int r = rs_status(err, rep, 6);

	if (!r) {
		long long lease = rs_int(rep, 1), closed = rs_int(rep, 2),
			  drained = rs_int(rep, 3);
		const redisReply *rt = rs_str(rep, 4), *hs = rs_str(rep, 5);

		if (lease < 0 || closed < 0 || drained < 0 || !rt || rt->len > PB_MAX_ROUTE_LEN ||
		    !hs) {
			r = PB_ESTORE;
		} else {
			memcpy(route, rt->str, rt->len);
			route[rt->len] = '\0';
			c.closed = closed == 1;
			c.drained = drained == 1;
			c.route = route;
			c.handshake = hs->str;
			c.handshake_len = hs->len;
			rs_lease_index(op->st, op->id, &lease);
		}
	} else if (r == PB_ENOSESSION || r == PB_ECLOSED) {
		/* Gone (expired or ended): drop it from the index. */
		rs_lease_index(op->st, op->id, NULL);
	}
	op->cb.claim(op->arg, r, r ? NULL : &c);
	free(op);
}

static int rs_claim(struct pb_store *s, const char *id, pb_store_claim_cb cb, void *arg)
{
	struct redis_store *st = (struct redis_store *)s;
	struct rs_args a;
	struct rs_op *op = rs_begin(st, id, arg, &a);

	if (!op)
		return st->up ? PB_ENOMEM : PB_ESTORE;
	op->cb.claim = cb;
	rs_args_bytes(&a, s->limits.instance, strlen(s->limits.instance));
	rs_args_num(&a, s->limits.lease_ms);
	return rs_eval(st, RS_CLAIM, &a, rs_claim_reply, op);
}

/* One orphan scan: the ids found so far over the buckets still asked. */
struct rs_scan {
	struct rs_op *op;
	unsigned pending;       /* buckets not yet answered */
	unsigned failed;        /* buckets that failed */
	unsigned asked;
	size_t n;
	const char *ids[RS_ORPHANS_PER_SCAN];
	char buf[RS_ORPHANS_PER_SCAN][PB_ID_LEN + 1];
};

/* One bucket less to wait for: the scan answers once every bucket has;
 * with an error only if every bucket failed. */
static void rs_scan_unref(struct rs_scan *sc)
{
	struct rs_op *op = sc->op;

	if (--sc->pending)
		return;
	op->cb.ids(op->arg, sc->failed == sc->asked ? PB_ESTORE : 0, sc->ids, sc->n);
	free(op);
	free(sc);
}

/* Reply to ORPHANS (one bucket): an array of ids. */
static void rs_orphans_reply(void *arg, int err, struct redisReply *rep)
{
	struct rs_scan *sc = arg;

	if (err || !rep || rep->type != REDIS_REPLY_ARRAY)
		sc->failed++;
	for (size_t i = 0; !err && rep && rep->type == REDIS_REPLY_ARRAY && i < rep->elements &&
			   sc->n < RS_ORPHANS_PER_SCAN; i++) {
		const redisReply *e = rs_str(rep, i);

		if (!e || e->len != PB_ID_LEN)
			continue;
		memcpy(sc->buf[sc->n], e->str, PB_ID_LEN);
		sc->buf[sc->n][PB_ID_LEN] = '\0';
		sc->ids[sc->n] = sc->buf[sc->n];
		sc->n++;
	}
	rs_scan_unref(sc);
}

static int rs_orphans(struct pb_store *s, pb_store_ids_cb cb, void *arg)
{
	struct redis_store *st = (struct redis_store *)s;
	unsigned nkeys = st->cluster ? RS_BUCKETS : 1;
	struct rs_scan *sc;
	struct rs_op *op;
	char limit[24];
	const char *v[2] = { RS_LEASES_KEY, limit };      /* KEYS[1], then limit */
	size_t len[2];

	len[1] = (size_t)snprintf(limit, sizeof(limit), "%d", RS_ORPHANS_PER_SCAN);
	if (!st->up)
		return PB_ESTORE;
	op = rs_op_new(st, NULL, arg);
	sc = calloc(1, sizeof(*sc));
	if (!op || !sc) {
		free(op);
		free(sc);
		return PB_ENOMEM;
	}
	op->cb.ids = cb;
	sc->op = op;
	/* one reference held here, so that no answer ends the scan early */
	sc->pending = 1;
	for (unsigned b = 0; b < nkeys; b++) {
		if (st->cluster)
			v[0] = rs_bucket_keys[b];
		len[0] = strlen(v[0]);
		sc->asked++;
		sc->pending++;
		if (pb_redis_eval(st->r, RS_ORPHANS, 1, 2, v, len, rs_orphans_reply, sc)) {
			sc->pending--;
			sc->failed++;
		}
	}
	if (sc->failed == sc->asked) {
		free(op);
		free(sc);
		return PB_ESTORE;
	}
	rs_scan_unref(sc);      /* drops the reference held here */
	return 0;
}

/* ---- wakeups ---------------------------------------------------------- */

static int rs_watch(struct pb_store *s, const char *id)
{
	struct redis_store *st = (struct redis_store *)s;
	char chan[PB_ID_LEN + 8];

	snprintf(chan, sizeof(chan), "pb:{%.*s}", PB_ID_LEN, id);
	return pb_redis_subscribe(st->r, chan);
}

static void rs_unwatch(struct pb_store *s, const char *id)
{
	struct redis_store *st = (struct redis_store *)s;
	char chan[PB_ID_LEN + 8];

	snprintf(chan, sizeof(chan), "pb:{%.*s}", PB_ID_LEN, id);
	pb_redis_unsubscribe(st->r, chan);
}

static int rs_announce_waiter(struct pb_store *s, const char *id, uint64_t token)
{
	struct redis_store *st = (struct redis_store *)s;
	char chan[PB_ID_LEN + 8], msg[160];
	const char *v[3] = { st->cluster ? "SPUBLISH" : "PUBLISH", chan, msg };
	size_t len[3];

	snprintf(chan, sizeof(chan), "pb:{%.*s}", PB_ID_LEN, id);
	snprintf(msg, sizeof(msg), "w%llu %s", (unsigned long long)token, s->limits.instance);
	len[0] = strlen(v[0]);
	len[1] = strlen(chan);
	len[2] = strlen(msg);
	return pb_redis_command(st->r, rs_ignore, NULL, 3, v, len);
}

/* A message on a session channel: turn it into the store's wakeup. */
static void rs_on_message(void *arg, const char *channel, size_t chlen, const char *msg,
			  size_t len)
{
	struct pb_store *s = arg;
	char id[PB_ID_LEN + 1], inst[128];
	unsigned long long token;

	/* "pb:{" id "}" */
	if (chlen != PB_ID_LEN + 5 || memcmp(channel, "pb:{", 4) != 0 ||
	    channel[chlen - 1] != '}' || len < 1)
		return;
	memcpy(id, channel + 4, PB_ID_LEN);
	id[PB_ID_LEN] = '\0';
	switch (msg[0]) {
	case 'i':
		pb_store_wake_inbound(s, id);
		break;
	case 'o':
		pb_store_wake_outbound(s, id);
		break;
	case 'e':
		pb_store_wake_ended(s, id);
		break;
	case 'a':
		pb_store_wake_acked(s, id);
		break;
	case 'w': {
		char tmp[160];

		if (len >= sizeof(tmp))
			return;
		memcpy(tmp, msg, len);
		tmp[len] = '\0';
		if (sscanf(tmp, "w%llu %127s", &token, inst) == 2)
			pb_store_wake_waiter(s, id, inst, token);
		break;
	}
	default:
		break;
	}
}

/* The command connection went up or down. */
static void rs_on_state(void *arg, int up)
{
	struct redis_store *st = arg;

	/* the first connection is not a recovery: no health event (redis.c
	 * logs it), or the core would log "store available again" */
	if (up && !st->was_up) {
		st->up = st->was_up = 1;
		return;
	}
	st->up = up;
	pb_store_wake_health(&st->base, up);
}

/* Subscriptions restored after a reconnect: wakeups may have been lost. */
static void rs_on_resubscribed(void *arg)
{
	pb_store_wake_resync(arg);
}

/* ---- the store --------------------------------------------------------- */

static int rs_healthy(struct pb_store *s)
{
	return ((struct redis_store *)s)->up;
}

static void rs_destroy(struct pb_store *s)
{
	struct redis_store *st = (struct redis_store *)s;

	/* Pending operations still get their callbacks; wakeups stop now. */
	memset(&st->base.events, 0, sizeof(st->base.events));
	pb_redis_free(st->r);
	uv_close((uv_handle_t *)st->retry, rs_free_handle);
	/* a freed client loads no script any more */
	for (int i = 0; i < RS_NSCRIPTS; i++)
		free(st->scripts[i]);
	free(st);
}

static const struct pb_store_ops rs_ops = {
	.name = "redis",
	.destroy = rs_destroy,
	.healthy = rs_healthy,
	.create = rs_create,
	.push_in = rs_push_in,
	.read_in = rs_read_in,
	.push_out = rs_push_out,
	.read_out = rs_read_out,
	.ack_out = rs_ack_out,
	.close = rs_close,
	.end = rs_end,
	.end_if_idle = rs_end_if_idle,
	.unhand = rs_unhand,
};

static const struct pb_store_shared_ops rs_shared_ops = {
	.watch = rs_watch,
	.unwatch = rs_unwatch,
	.announce_waiter = rs_announce_waiter,
	.renew = rs_renew,
	.orphans = rs_orphans,
	.claim = rs_claim,
	.release = rs_release,
};

struct pb_store *pb_store_redis_new(uv_loop_t *loop, const char *url,
				    const struct pb_store_events *events,
				    const struct pb_store_limits *limits, char *err, size_t errlen)
{
	struct redis_store *st = calloc(1, sizeof(*st));
	struct pb_redis_opts o = { 0 };

	if (!st) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (pb_redis_parse_url(url, &o.url, err, errlen))
		goto fail;
	st->cluster = o.url.nseeds > 0;
	for (int i = 0; i < RS_NSCRIPTS; i++) {
		st->scripts[i] = rs_script_build(&rs_defs[i], &st->argc[i]);
		if (st->cluster)
			st->scripts[i] = rs_script_sharded(st->scripts[i]);
		if (!st->scripts[i]) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	st->base.ops = &rs_ops;
	st->base.shared = &rs_shared_ops;
	st->base.events = *events;
	st->base.limits = *limits;
	/* A live session's keys outlive two idle timeouts (its owner ends it
	 * after one); they expire by themselves only if every instance died. */
	st->ttl_ms = (unsigned long long)limits->idle_secs * 2000 + 10000;
	st->tomb_ms = (unsigned long long)limits->tombstone_secs * 1000;
	st->retry = malloc(sizeof(*st->retry));
	if (!st->retry) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	uv_timer_init(loop, st->retry);
	st->retry->data = st;
	o.connect_timeout_ms = 1000;
	o.command_timeout_ms = 1000;
	o.scripts = (const char *const *)st->scripts;
	o.nscripts = RS_NSCRIPTS;
	o.on_state = rs_on_state;
	o.on_message = rs_on_message;
	o.on_resubscribed = rs_on_resubscribed;
	o.arg = st;
	st->r = pb_redis_new(loop, &o);
	if (!st->r) {
		snprintf(err, errlen, "out of memory");
		uv_close((uv_handle_t *)st->retry, rs_free_handle);
		st->retry = NULL;
		goto fail;
	}
	return &st->base;
fail:
	free(st->retry);
	for (int i = 0; i < RS_NSCRIPTS; i++)
		free(st->scripts[i]);
	free(st);
	return NULL;
}

void pb_store_redis_wait_replicas(struct pb_store *s, unsigned replicas)
{
	pb_redis_set_wait(((struct redis_store *)s)->r, replicas, 0);
}

char *pb_store_redis_script(size_t i)
{
	int argc;

	return i < RS_NSCRIPTS ? rs_script_build(&rs_defs[i], &argc) : NULL;
}

const char *pb_store_redis_bucket(size_t i)
{
	return i < RS_BUCKETS ? rs_bucket_keys[i] : NULL;
}
