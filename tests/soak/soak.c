/*
 * soak.c: the soak test of pollbridge (not part of `make check`; run it with
 * tests/soak/run.sh, which builds it and says how to use it).
 *
 * It starts pollbridge-echo and pollbridge (the ASan+UBSan build, or a plain
 * build under valgrind through PB_BRIDGE_WRAPPER), creates N sessions, and
 * for M minutes drives mixed traffic through one libcurl multi handle with a
 * bounded number of requests in flight:
 *   - long polls with advancing cursors (wait 1-5 s, sometimes a small max=),
 *     some aborted mid-wait by removing the easy handle (a client that goes
 *     away);
 *   - Server-Sent Events streams for a few sessions, cut after a few seconds
 *     and resumed with Last-Event-ID (or ?after=);
 *   - sends: text/plain (1 B - 4 KiB of valid UTF-8, quotes, newlines and
 *     multi-byte characters included), application/octet-stream (random
 *     bytes), JSON batches (text and base64 binary), form posts, most of them
 *     numbered with X-Send-Seq (or "seq" in the JSON) and retried on a
 *     transport error, some unnumbered; "/burst 20" commands;
 *   - session ends of every kind: DELETE (then a poll must see 410), sessions
 *     abandoned without DELETE (they must idle out: later 410 or 404), and
 *     "/close 1000 bye" so the upstream closes (the closed batch or SSE close
 *     event must carry 1000/"bye" after every echo, then a poll acknowledging
 *     the last message ends the session, then 410);
 *   - new sessions created to keep about N alive.
 * Per session it keeps the list of echoes it expects, in order, and checks
 * every message received: seqs strictly consecutive from the cursor (no
 * duplicate, no gap), content equal to the next expected echo. An echo that
 * never comes, comes twice or out of order is a violation, unless its session
 * was deliberately abandoned or deleted before it came. One allowance: when
 * the client cut a long poll that may still be waiting at the bridge, the
 * closed batch can go to that dead poll and end the session (docs/API.md: a poll
 * acknowledging the last message gets the empty closed batch and ends it), so
 * a 410 instead of the closed batch is then counted, not an error. After
 * the traffic phase it stops sending, collects what is still due, deletes the
 * sessions left, and SIGTERMs the bridge.
 *
 * Every 10 s it prints the bridge's RSS. At the end: a summary, then one TAP
 * line per check and "N passed, N failed"; exit status 0 only if all passed.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "e2e/harness.h"
#include "tap.h"

#define MAX_INFLIGHT	200	/* requests in flight, all kinds */
#define RECV_SLOTS	160	/* of which polls and streams at most */
#define MAX_CREATING	32	/* session creates in flight */
#define IDLE_TIMEOUT	10	/* --idle-timeout of the bridge */
#define SSE_HEARTBEAT	3	/* --sse-heartbeat of the bridge */
#define ABANDON_CHECK_MS ((IDLE_TIMEOUT * 2 + 6) * 1000)	/* then it must be gone */
#define SAMPLE_MS	10000	/* RSS sampling period */
#define MAX_NOTES	60	/* error/violation lines printed in detail */
#define RESP_MAX	(8u << 20)
#define HIST		12	/* request history kept per session */

/* Rates of session ends during the traffic phase, per second and per 500
 * live sessions (a session lives about three minutes on average). */
#define RATE_DELETE	1.0
#define RATE_ABANDON	0.7
#define RATE_CLOSE	1.0

/* ---- small utilities ---------------------------------------------------- */

static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Uniform in [lo, hi]. */
static uint32_t rnd_range(uint32_t lo, uint32_t hi)
{
	return lo + (uint32_t)(rnd() % ((uint64_t)hi - lo + 1));
}

static int chance(double p)
{
	return (double)(rnd() >> 11) / 9007199254740992.0 < p;
}

struct dbuf {
	char *p;
	size_t len, cap;
};

static int dbuf_add(struct dbuf *b, const void *d, size_t n)
{
	char *t;
	size_t cap;

	if (b->len + n + 1 > b->cap) {
		cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		t = realloc(b->p, cap);
		if (!t)
			return -1;
		b->p = t;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static void dbuf_free(struct dbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const unsigned char *in, size_t n)
{
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;
	uint32_t v;

	if (!out)
		return NULL;
	for (i = 0; i + 2 < n; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*o++ = b64chars[v >> 18];
		*o++ = b64chars[(v >> 12) & 63];
		*o++ = b64chars[(v >> 6) & 63];
		*o++ = b64chars[v & 63];
	}
	if (n - i == 1) {
		v = (uint32_t)in[i] << 16;
		*o++ = b64chars[v >> 18];
		*o++ = b64chars[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		*o++ = b64chars[v >> 18];
		*o++ = b64chars[(v >> 12) & 63];
		*o++ = b64chars[(v >> 6) & 63];
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

static int b64_val(char c)
{
	const char *p = c ? strchr(b64chars, c) : NULL;

	return p ? (int)(p - b64chars) : -1;
}

/* Strict standard base64 (padded); NULL if malformed. */
static unsigned char *b64_decode(const char *in, size_t n, size_t *outlen)
{
	unsigned char *out, *o;
	size_t i;
	int a, b, c, d;

	if (n % 4)
		return NULL;
	out = malloc(n / 4 * 3 + 1);
	if (!out)
		return NULL;
	o = out;
	for (i = 0; i < n; i += 4) {
		a = b64_val(in[i]);
		b = b64_val(in[i + 1]);
		c = in[i + 2] == '=' && i + 4 == n ? -2 : b64_val(in[i + 2]);
		d = in[i + 3] == '=' && i + 4 == n ? -2 : b64_val(in[i + 3]);
		if (a < 0 || b < 0 || c == -1 || d == -1 || (c == -2 && d != -2)) {
			free(out);
			return NULL;
		}
		*o++ = (unsigned char)(a << 2 | b >> 4);
		if (c >= 0)
			*o++ = (unsigned char)((b & 15) << 4 | c >> 2);
		if (d >= 0)
			*o++ = (unsigned char)((c & 3) << 6 | d);
	}
	*outlen = (size_t)(o - out);
	return out;
}

/* ---- state -------------------------------------------------------------- */

enum kind { K_CREATE, K_POLL, K_SSE, K_SEND, K_DELETE, K_CHECK, K_N };
static const char *const kind_names[K_N] = { "create", "poll", "sse", "send", "delete",
					     "check" };

enum send_kind { SK_TEXT, SK_BINARY, SK_JSON, SK_FORM, SK_BURST, SK_CLOSE, SK_N };
static const char *const sk_names[SK_N] = { "text", "binary", "json", "form", "burst",
					    "close" };

enum sstate {
	S_CREATING,	/* POST /v1/sessions in flight */
	S_ACTIVE,
	S_CLOSING,	/* "/close 1000 bye" accepted, the close not seen yet */
	S_CLOSED,	/* the close seen; polling until the session answers 410 */
	S_DELETING,	/* DELETE in flight */
	S_DELETED,	/* 204 seen; a check poll must answer 410 */
	S_ABANDONED,	/* left without DELETE; a check poll must answer 410/404 */
	S_DONE,
	S_LOST		/* ended without being asked to (an error) */
};
static const char *const st_names[] = { "creating", "active",  "closing", "closed", "deleting",
					"deleted",  "abandoned", "done",  "lost" };

/* One echo the soak expects, in order. */
struct exp {
	struct exp *next;
	unsigned send_id;	/* which send request queued it */
	int optional;		/* its send's fate is unknown: may or may not come */
	int binary;
	size_t len;
	unsigned char data[];
};

struct op;

struct sess {
	unsigned idx;
	char id[64];
	enum sstate st;
	int sse;		/* receives through event streams */
	int exempt;		/* abandoned/deleted: echoes still due are not violations */
	int final_delete;	/* the drain's DELETE */
	uint64_t cursor;	/* highest seq received */
	struct exp *head, *tail;
	size_t nexp;		/* non-optional entries in the list */
	uint64_t next_seq;	/* X-Send-Seq of the next new numbered send */
	unsigned send_ids;
	struct op *recv, *send, *ctl;
	int64_t next_send_at, next_recv_at, last_req_at, check_at;
	int want_close;
	int end_polls;
	int close_sent;		/* the close command went out */
	int missed_close;	/* the closed batch may have gone to a cut poll */
	int64_t dead_recv_until;	/* a cut poll may still wait at the bridge */
	int64_t last_cut;	/* a receive was cut after the close was asked */
	unsigned sse_streams;
	char hist[HIST][120];	/* the last requests, for error reports */
	unsigned nhist;
};

struct op {
	enum kind kind;
	struct sess *s;
	CURL *e;
	struct curl_slist *hdrs;
	const char *method;
	char url[512];
	char req_ctype[64];
	char extra_hdr[96];
	char *req;
	size_t req_len;
	struct dbuf resp;
	char ctype[128];
	char retry_after[32];
	int64_t started, abort_at;
	int wait;		/* a poll's wait, seconds */
	/* sends */
	enum send_kind sk;
	uint64_t seq;		/* X-Send-Seq, 0 for an unnumbered send */
	unsigned send_id;
	int nmsgs;		/* messages it carries (echoes expected) */
	size_t nbytes;
	int tries;
	int relaunched;		/* a retry owns a new easy handle */
	int nbin;		/* binary messages among them */
	/* event streams */
	size_t sse_off;
	char sse_event[32];
	char sse_id[32];
	struct dbuf sse_data;
	int sse_has_data, sse_closed, sse_bad_type;
	/* checks */
	int check_abandoned;
};

static struct {
	unsigned long req[K_N];
	unsigned long sends[SK_N];
	unsigned long polls_aborted, sse_aborted, sends_aborted, sse_heartbeats, sse_events;
	unsigned long sent_text, sent_binary, sent_bytes, expected_echoes;
	unsigned long received, matched, burst_received;
	unsigned long created, create_failed, deleted, abandoned, closed_upstream,
		closed_ended, final_deleted, abandoned_checked, deleted_checked;
	unsigned long queue_full, send_retries, unnumbered_lost, closed_missed, not_due;
	/* violations */
	unsigned long v_dup, v_gap, v_unexpected, v_skipped, v_missing_close, v_missing_end,
		v_rejected_echo, v_reopen, v_after_close;
	/* errors */
	unsigned long e_transport, e_status, e_unexpected_end, e_close, e_abandon_alive,
		e_tombstone, e_sse, e_json, e_accepted, e_never_ended;
} st;

static struct {
	int minutes, nsessions;
	int valgrind;
	const char *log_dir;
	CURLM *multi;
	struct h_bridge b;
	struct h_proc *echo;
	struct sess **sess;
	size_t nsess, capsess;
	int inflight, recv_inflight, creating;
	int draining;		/* traffic phase over */
	int sse_ok;
	int notes;
	int64_t t0;
} g;

static unsigned long violations(void)
{
	return st.v_dup + st.v_gap + st.v_unexpected + st.v_skipped + st.v_missing_close +
	       st.v_missing_end + st.v_rejected_echo + st.v_reopen + st.v_after_close;
}

static unsigned long errors(void)
{
	return st.e_transport + st.e_status + st.e_unexpected_end + st.e_close +
	       st.e_abandon_alive + st.e_tombstone + st.e_sse + st.e_json + st.e_accepted +
	       st.e_never_ended;
}

/* A detailed line about an error or a violation (the first MAX_NOTES). */
static void note(const struct sess *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void note(const struct sess *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (++g.notes > MAX_NOTES) {
		if (g.notes == MAX_NOTES + 1)
			tap_diag("(further errors and violations are only counted)");
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	tap_diag("t=%.1fs session %s [%s, cursor %" PRIu64 "]: %s",
		 (double)(h_now_ms() - g.t0) / 1000.0, s && s->id[0] ? s->id : "-",
		 s ? st_names[s->st] : "-", s ? s->cursor : 0, line);
	if (!s)
		return;
	tap_diag("  its last requests:");
	for (unsigned i = s->nhist > HIST ? s->nhist - HIST : 0; i < s->nhist; i++)
		tap_diag("    %s", s->hist[i % HIST]);
}

/* Remember one step of a session's life (for error reports). */
static void hist(struct sess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hist(struct sess *s, const char *fmt, ...)
{
	char *line = s->hist[s->nhist++ % HIST];
	int n;
	va_list ap;

	n = snprintf(line, sizeof(s->hist[0]), "t=%.3fs ", (double)(h_now_ms() - g.t0) / 1000.0);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(s->hist[0]) - (size_t)n, fmt, ap);
	va_end(ap);
}

/* ---- expected echoes ---------------------------------------------------- */

static struct exp *exp_push(struct sess *s, unsigned send_id, int binary, const void *d,
			    size_t len)
{
	struct exp *e = malloc(sizeof(*e) + len + 1);

	if (!e)
		tap_bail("out of memory");
	e->next = NULL;
	e->send_id = send_id;
	e->optional = 0;
	e->binary = binary;
	e->len = len;
	memcpy(e->data, d, len);
	e->data[len] = 0;
	if (s->tail)
		s->tail->next = e;
	else
		s->head = e;
	s->tail = e;
	s->nexp++;
	return e;
}

/* Drop the entries of one send (it was refused); how many were there. */
static int exp_drop_send(struct sess *s, unsigned send_id)
{
	struct exp **pp = &s->head, *e;
	int n = 0;

	s->tail = NULL;
	while ((e = *pp)) {
		if (e->send_id == send_id) {
			*pp = e->next;
			if (!e->optional)
				s->nexp--;
			free(e);
			n++;
			continue;
		}
		s->tail = e;
		pp = &e->next;
	}
	return n;
}

/* Mark the entries of one send optional (fate unknown). */
static void exp_optional_send(struct sess *s, unsigned send_id)
{
	for (struct exp *e = s->head; e; e = e->next)
		if (e->send_id == send_id && !e->optional) {
			e->optional = 1;
			s->nexp--;
		}
}

static void exp_pop(struct sess *s)
{
	struct exp *e = s->head;

	s->head = e->next;
	if (!s->head)
		s->tail = NULL;
	if (!e->optional)
		s->nexp--;
	free(e);
}

static void exp_clear(struct sess *s)
{
	st.not_due += s->nexp;
	while (s->head)
		exp_pop(s);
}

/* A short printable excerpt of a message, for notes. */
static const char *excerpt(const unsigned char *d, size_t len, int binary, char *buf,
			   size_t bl)
{
	size_t i, o = 0;

	if (binary) {
		snprintf(buf, bl, "<%zu binary bytes>", len);
		return buf;
	}
	for (i = 0; i < len && o + 5 < bl && i < 40; i++)
		buf[o++] = d[i] >= 0x20 && d[i] < 0x7f ? (char)d[i] : '.';
	snprintf(buf + o, bl - o, "%s(%zu B)", i < len ? "..." : "", len);
	return buf;
}

/* One message received on a session, by poll or stream. */
static void on_message(struct sess *s, uint64_t seq, const char *type, const unsigned char *d,
		       size_t len, int binary)
{
	struct exp *e;
	size_t k = 0, opt = 0;
	char b1[80], b2[80];

	st.received++;
	if (seq <= s->cursor) {
		st.v_dup++;
		note(s, "VIOLATION duplicate: seq %" PRIu64 " again (%s)", seq,
		     excerpt(d, len, binary, b1, sizeof(b1)));
		return;
	}
	if (seq != s->cursor + 1) {
		st.v_gap++;
		note(s, "VIOLATION gap: seq %" PRIu64 " follows %" PRIu64, seq, s->cursor);
	}
	s->cursor = seq;
	if (s->st == S_CLOSED) {
		st.v_after_close++;
		note(s, "VIOLATION message seq %" PRIu64 " after the close", seq);
		return;
	}
	if (!strcmp(type, "reopen")) {
		st.v_reopen++;
		note(s, "VIOLATION reopen at seq %" PRIu64 " (one instance, nothing to re-dial)",
		     seq);
		return;
	}
	for (e = s->head; e; e = e->next, k++) {
		if (e->binary == binary && e->len == len && !memcmp(e->data, d, len))
			break;
		if (e->optional)
			opt++;
	}
	if (!e) {
		st.v_unexpected++;
		note(s, "VIOLATION unexpected message seq %" PRIu64 " %s %s; next expected %s",
		     seq, type, excerpt(d, len, binary, b1, sizeof(b1)),
		     s->head ? excerpt(s->head->data, s->head->len, s->head->binary, b2,
				       sizeof(b2)) : "none");
		return;
	}
	if (k > opt) {
		st.v_skipped += k - opt;
		note(s, "VIOLATION %zu expected echo(es) skipped before seq %" PRIu64
		     " (first skipped: %s)", k - opt, seq,
		     excerpt(s->head->data, s->head->len, s->head->binary, b1, sizeof(b1)));
	}
	while (k--)
		exp_pop(s);
	exp_pop(s);
	st.matched++;
	if (!binary && len <= 2 && d[0] >= '0' && d[0] <= '9')
		st.burst_received++;
}

/* The upstream's close reached this session (closed batch or close event). */
static void on_closed(struct sess *s, long code, const char *reason)
{
	char b1[80];

	/* the close command's answer may come after the close it caused */
	if (s->st == S_ACTIVE && s->send && s->send->sk == SK_CLOSE)
		s->st = S_CLOSING;
	switch (s->st) {
	case S_CLOSING:
		if (code != 1000 || strcmp(reason, "bye")) {
			st.e_close++;
			note(s, "ERROR close %ld \"%s\", want 1000 \"bye\"", code, reason);
		}
		if (s->nexp) {
			st.v_missing_close += s->nexp;
			note(s, "VIOLATION closed with %zu echo(es) still due (first: %s)", s->nexp,
			     excerpt(s->head->data, s->head->len, s->head->binary, b1,
				     sizeof(b1)));
		}
		exp_clear(s);
		s->st = S_CLOSED;
		s->end_polls = 0;
		st.closed_upstream++;
		break;
	case S_ACTIVE:
		st.e_unexpected_end++;
		note(s, "ERROR upstream closed by itself: %ld \"%s\"", code, reason);
		exp_clear(s);
		s->exempt = 1;
		s->st = S_CLOSED;
		s->end_polls = 0;
		break;
	default:
		break;
	}
}

/* ---- requests ----------------------------------------------------------- */

static size_t on_resp_body(char *d, size_t size, size_t nmemb, void *u);
static size_t on_resp_header(char *d, size_t size, size_t nmemb, void *u);

static struct op *op_new(enum kind kind, struct sess *s, const char *method)
{
	struct op *o = calloc(1, sizeof(*o));

	if (!o)
		tap_bail("out of memory");
	o->kind = kind;
	o->s = s;
	o->method = method;
	return o;
}

/* Start (or restart) the transfer o describes. */
static void op_launch(struct op *o)
{
	CURL *e = curl_easy_init();
	char line[160];
	int64_t now = h_now_ms();

	if (!e)
		tap_bail("curl_easy_init failed");
	dbuf_free(&o->resp);
	o->ctype[0] = o->retry_after[0] = '\0';
	curl_slist_free_all(o->hdrs);
	o->hdrs = curl_slist_append(NULL, "Expect:");
	if (o->req_ctype[0]) {
		snprintf(line, sizeof(line), "Content-Type: %s", o->req_ctype);
		o->hdrs = curl_slist_append(o->hdrs, line);
	} else if (!strcmp(o->method, "POST")) {
		o->hdrs = curl_slist_append(o->hdrs, "Content-Type:");
	}
	if (o->extra_hdr[0])
		o->hdrs = curl_slist_append(o->hdrs, o->extra_hdr);
	if (!o->hdrs)
		tap_bail("out of memory");
	curl_easy_setopt(e, CURLOPT_URL, o->url);
	curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PRIVATE, o);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, o->hdrs);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_resp_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, o);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_resp_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, o);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 20L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, g.valgrind ? 120L : 40L);
	if (!strcmp(o->method, "POST")) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->req_len);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->req ? o->req : "");
	} else if (strcmp(o->method, "GET")) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
	}
	o->e = e;
	o->started = now;
	o->sse_off = 0;
	dbuf_free(&o->sse_data);
	o->sse_has_data = 0;
	o->sse_event[0] = o->sse_id[0] = '\0';
	if (o->s)
		hist(o->s, "%s %s%s%s%s", o->method, o->url + strlen(g.b.base),
		     o->kind == K_SEND ? " " : "", o->kind == K_SEND ? sk_names[o->sk] : "",
		     o->extra_hdr[0] ? " [header]" : "");
	if (curl_multi_add_handle(g.multi, e) != CURLM_OK)
		tap_bail("curl_multi_add_handle failed");
	g.inflight++;
	if (o->kind == K_POLL || o->kind == K_SSE)
		g.recv_inflight++;
	st.req[o->kind]++;
	if (o->s)
		o->s->last_req_at = now;
}

/* Detach and free an op whose transfer is over (or is being cut). */
static void op_free(struct op *o)
{
	struct sess *s = o->s;

	if (o->e) {
		curl_multi_remove_handle(g.multi, o->e);
		curl_easy_cleanup(o->e);
		g.inflight--;
		if (o->kind == K_POLL || o->kind == K_SSE)
			g.recv_inflight--;
	}
	if (s) {
		if (s->recv == o)
			s->recv = NULL;
		if (s->send == o)
			s->send = NULL;
		if (s->ctl == o)
			s->ctl = NULL;
	}
	if (o->kind == K_CREATE)
		g.creating--;
	curl_slist_free_all(o->hdrs);
	free(o->req);
	dbuf_free(&o->resp);
	dbuf_free(&o->sse_data);
	free(o);
}

/* The client goes away mid-request. */
static void op_abort(struct op *o)
{
	if (o->s) {
		hist(o->s, "%s %s cut by the client after %lld ms", kind_names[o->kind],
		     o->url + strlen(g.b.base), (long long)(h_now_ms() - o->started));
		/* The bridge may not notice at once that a waiting poll's client
		 * went away: until the poll's wait runs out (or a newer poll
		 * replaces it) it can answer the dead poll, with the closed batch
		 * too, and a poll that acknowledges everything ends the session. */
		if (o->kind == K_POLL || o->kind == K_SSE) {
			if (o->s->close_sent || o->s->st == S_CLOSING)
				o->s->missed_close = 1;
			o->s->last_cut = h_now_ms();
			o->s->dead_recv_until = h_now_ms() + 1000 +
				(o->kind == K_POLL ? o->wait * 1000 : SSE_HEARTBEAT * 2000);
		}
	}
	if (o->kind == K_POLL)
		st.polls_aborted++;
	else if (o->kind == K_SSE)
		st.sse_aborted++;
	else if (o->kind == K_SEND)
		st.sends_aborted++;
	op_free(o);
}

static size_t on_resp_header(char *d, size_t size, size_t nmemb, void *u)
{
	struct op *o = u;
	size_t n = size * nmemb, l;
	char *dst = NULL;
	size_t dl = 0, skip = 0;

	if (n > 13 && !strncasecmp(d, "Content-Type:", 13)) {
		dst = o->ctype, dl = sizeof(o->ctype), skip = 13;
	} else if (n > 12 && !strncasecmp(d, "Retry-After:", 12)) {
		dst = o->retry_after, dl = sizeof(o->retry_after), skip = 12;
	}
	if (dst) {
		d += skip;
		l = n - skip;
		while (l && (*d == ' ' || *d == '\t'))
			d++, l--;
		while (l && (d[l - 1] == '\r' || d[l - 1] == '\n' || d[l - 1] == ' '))
			l--;
		if (l >= dl)
			l = dl - 1;
		memcpy(dst, d, l);
		dst[l] = '\0';
	}
	return n;
}

/* A JSON message object (from a poll batch or an SSE data line). 0 if it
 * was well formed. */
static int take_message(struct sess *s, json_t *m)
{
	json_t *jseq = json_object_get(m, "seq"), *jdata = json_object_get(m, "data");
	const char *type = json_string_value(json_object_get(m, "type"));
	unsigned char *bin;
	size_t len;

	if (!json_is_integer(jseq) || json_integer_value(jseq) <= 0 || !type)
		return -1;
	if (!strcmp(type, "text")) {
		if (!json_is_string(jdata))
			return -1;
		on_message(s, (uint64_t)json_integer_value(jseq), type,
			   (const unsigned char *)json_string_value(jdata),
			   json_string_length(jdata), 0);
	} else if (!strcmp(type, "binary")) {
		if (!json_is_string(jdata))
			return -1;
		bin = b64_decode(json_string_value(jdata), json_string_length(jdata), &len);
		if (!bin)
			return -1;
		on_message(s, (uint64_t)json_integer_value(jseq), type, bin, len, 1);
		free(bin);
	} else if (!strcmp(type, "reopen")) {
		on_message(s, (uint64_t)json_integer_value(jseq), type, NULL, 0, 0);
	} else {
		return -1;
	}
	return 0;
}

/* One complete SSE event. */
static void sse_dispatch(struct op *o)
{
	struct sess *s = o->s;
	json_t *j;
	const char *type;
	char *end;

	if (!o->sse_has_data) {
		o->sse_event[0] = o->sse_id[0] = '\0';
		return;
	}
	st.sse_events++;
	j = json_loadb(o->sse_data.p, o->sse_data.len, 0, NULL);
	type = json_string_value(json_object_get(j, "type"));
	if (!j || !type) {
		st.e_sse++;
		note(s, "ERROR SSE data is not a message object: %.200s", o->sse_data.p);
	} else if (!strcmp(o->sse_event, "close")) {
		if (strcmp(type, "close") || o->sse_id[0]) {
			st.e_sse++;
			note(s, "ERROR SSE close event malformed: %.200s", o->sse_data.p);
		}
		o->sse_closed = 1;
		on_closed(s, (long)json_integer_value(json_object_get(j, "code")),
			  json_string_value(json_object_get(j, "reason")) ?
			  json_string_value(json_object_get(j, "reason")) : "");
	} else {
		if (strcmp(type, o->sse_event) ||
		    strtoull(o->sse_id, &end, 10) !=
		    (unsigned long long)json_integer_value(json_object_get(j, "seq")) ||
		    !o->sse_id[0] || *end) {
			st.e_sse++;
			note(s, "ERROR SSE event \"%s\" id \"%s\" does not match its data %.200s",
			     o->sse_event, o->sse_id, o->sse_data.p);
		}
		if (take_message(s, j)) {
			st.e_sse++;
			note(s, "ERROR SSE message malformed: %.200s", o->sse_data.p);
		}
	}
	json_decref(j);
	o->sse_data.len = 0;
	o->sse_has_data = 0;
	o->sse_event[0] = o->sse_id[0] = '\0';
}

/* Parse what arrived of an event stream, line by line. */
static void sse_parse(struct op *o)
{
	char *p, *nl, *line;
	size_t l;

	while (o->sse_off < o->resp.len &&
	       (nl = memchr(o->resp.p + o->sse_off, '\n', o->resp.len - o->sse_off))) {
		line = o->resp.p + o->sse_off;
		l = (size_t)(nl - line);
		o->sse_off += l + 1;
		if (l && line[l - 1] == '\r')
			l--;
		line[l] = '\0';
		if (!l) {
			sse_dispatch(o);
		} else if (line[0] == ':') {
			st.sse_heartbeats++;
		} else if (!strncmp(line, "data:", 5)) {
			p = line + 5 + (line[5] == ' ');
			if (o->sse_has_data)
				dbuf_add(&o->sse_data, "\n", 1);
			dbuf_add(&o->sse_data, p, strlen(p));
			o->sse_has_data = 1;
		} else if (!strncmp(line, "event:", 6)) {
			snprintf(o->sse_event, sizeof(o->sse_event), "%s",
				 line + 6 + (line[6] == ' '));
		} else if (!strncmp(line, "id:", 3)) {
			snprintf(o->sse_id, sizeof(o->sse_id), "%s", line + 3 + (line[3] == ' '));
		} else if (strncmp(line, "retry:", 6)) {
			st.e_sse++;
			note(o->s, "ERROR SSE line with no known field: %.100s", line);
		}
	}
	if (o->sse_off == o->resp.len) {
		o->resp.len = o->sse_off = 0;
	} else if (o->sse_off > 65536) {
		memmove(o->resp.p, o->resp.p + o->sse_off, o->resp.len - o->sse_off);
		o->resp.len -= o->sse_off;
		o->sse_off = 0;
	}
}

static size_t on_resp_body(char *d, size_t size, size_t nmemb, void *u)
{
	struct op *o = u;
	size_t n = size * nmemb;
	long code = 0;

	if (o->resp.len + n > RESP_MAX)
		return 0;
	if (dbuf_add(&o->resp, d, n))
		return 0;
	if (o->kind == K_SSE) {
		curl_easy_getinfo(o->e, CURLINFO_RESPONSE_CODE, &code);
		if (code == 200 && !strncmp(o->ctype, "text/event-stream", 17))
			sse_parse(o);
	}
	return n;
}

/* ---- building requests -------------------------------------------------- */

static void session_url(char *buf, size_t len, const struct sess *s, const char *suffix)
{
	snprintf(buf, len, "%s/v1/sessions/%s%s", g.b.base, s->id, suffix);
}

static struct sess *sess_new(void)
{
	struct sess *s = calloc(1, sizeof(*s));

	if (!s)
		tap_bail("out of memory");
	if (g.nsess == g.capsess) {
		g.capsess = g.capsess ? g.capsess * 2 : 1024;
		g.sess = realloc(g.sess, g.capsess * sizeof(*g.sess));
		if (!g.sess)
			tap_bail("out of memory");
	}
	s->idx = (unsigned)g.nsess;
	g.sess[g.nsess++] = s;
	s->next_seq = 1;
	return s;
}

static void start_create(void)
{
	struct sess *s = sess_new();
	struct op *o = op_new(K_CREATE, s, "POST");
	static const char *const protos[] = { "", "chat", "echo" };
	const char *proto = protos[rnd_range(0, 2)];
	char body[128];

	s->st = S_CREATING;
	switch (rnd_range(0, 2)) {
	case 0:
		snprintf(o->url, sizeof(o->url), "%s/v1/sessions", g.b.base);
		snprintf(o->req_ctype, sizeof(o->req_ctype), "application/json");
		if (*proto)
			snprintf(body, sizeof(body), "{\"route\":\"echo\",\"protocols\":[\"%s\"]}",
				 proto);
		else
			snprintf(body, sizeof(body), "{\"route\":\"echo\"}");
		break;
	case 1:
		snprintf(o->url, sizeof(o->url), "%s/v1/sessions", g.b.base);
		snprintf(o->req_ctype, sizeof(o->req_ctype), "application/x-www-form-urlencoded");
		snprintf(body, sizeof(body), "route=echo%s%s", *proto ? "&protocol=" : "", proto);
		break;
	default:
		snprintf(o->url, sizeof(o->url), "%s/v1/sessions?route=echo%s%s", g.b.base,
			 *proto ? "&protocol=" : "", proto);
		body[0] = '\0';
		break;
	}
	o->req = strdup(body);
	o->req_len = strlen(body);
	s->ctl = o;
	g.creating++;
	op_launch(o);
}

static void start_poll(struct sess *s, int64_t now)
{
	struct op *o = op_new(K_POLL, s, "GET");
	int wait = (int)rnd_range(1, 5);
	char q[96];

	if (g.draining || s->st == S_CLOSED)
		wait = 1;
	if (chance(0.2))
		snprintf(q, sizeof(q), "/messages?after=%" PRIu64 "&wait=%d&max=%u", s->cursor,
			 wait, rnd_range(1, 10));
	else
		snprintf(q, sizeof(q), "/messages?after=%" PRIu64 "&wait=%d", s->cursor, wait);
	session_url(o->url, sizeof(o->url), s, q);
	o->wait = wait;
	/* a client that gives up mid-wait */
	if (!g.draining && s->st == S_ACTIVE && chance(0.08))
		o->abort_at = now + rnd_range(100, (uint32_t)wait * 1000 - 50);
	s->recv = o;
	op_launch(o);
}

static void start_sse(struct sess *s, int64_t now)
{
	struct op *o = op_new(K_SSE, s, "GET");

	if (chance(0.5) || !s->cursor) {
		session_url(o->url, sizeof(o->url), s, "/events");
		snprintf(o->extra_hdr, sizeof(o->extra_hdr), "Last-Event-ID: %" PRIu64, s->cursor);
	} else {
		char q[64];

		snprintf(q, sizeof(q), "/events?after=%" PRIu64, s->cursor);
		session_url(o->url, sizeof(o->url), s, q);
	}
	o->abort_at = now + rnd_range(2000, 10000);
	s->sse_streams++;
	s->recv = o;
	op_launch(o);
}

/* Random valid UTF-8 text of exactly len bytes that is not a command. */
static void fill_text(char *p, size_t len, const struct sess *s, unsigned n)
{
	static const char *const multi[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };
	size_t i = 0, m;
	int k;

	if (len >= 24)
		i = (size_t)snprintf(p, len, "m%u.%u ", s->idx, n);
	while (i < len) {
		if (chance(0.03)) {
			const char *mb = multi[rnd_range(0, 2)];

			m = strlen(mb);
			if (i + m <= len) {
				memcpy(p + i, mb, m);
				i += m;
				continue;
			}
		}
		k = (int)rnd_range(0, 99);
		p[i++] = k < 2 ? '\n' : k < 3 ? '"' : k < 4 ? '\\' : k < 5 ? '\t' :
			 (char)rnd_range(0x20, 0x7e);
	}
	if (p[0] == '/' || p[0] == '\n')
		p[0] = 'x';
	p[len] = '\0';
}

static size_t rand_size(size_t max)
{
	return chance(0.3) ? rnd_range(1, 64) : rnd_range(65, (uint32_t)max);
}

static void start_send(struct sess *s)
{
	struct op *o = op_new(K_SEND, s, "POST");
	unsigned id = ++s->send_ids;
	int numbered = chance(0.8), k = (int)rnd_range(0, 99), i, n;
	size_t len;
	char *text;
	unsigned char *bin;

	o->send_id = id;
	session_url(o->url, sizeof(o->url), s, "/messages");
	if (s->want_close)
		o->sk = SK_CLOSE;
	else
		o->sk = k < 62 ? SK_TEXT : k < 77 ? SK_BINARY : k < 87 ? SK_JSON :
			k < 95 ? SK_FORM : SK_BURST;
	switch (o->sk) {
	case SK_TEXT:
		len = rand_size(4096);
		text = malloc(len + 1);
		if (!text)
			tap_bail("out of memory");
		fill_text(text, len, s, id);
		o->req = text;
		o->req_len = len;
		snprintf(o->req_ctype, sizeof(o->req_ctype), "text/plain");
		exp_push(s, id, 0, text, len);
		o->nmsgs = 1;
		o->nbytes = len;
		break;
	case SK_BINARY:
		len = rand_size(4096);
		bin = malloc(len);
		if (!bin)
			tap_bail("out of memory");
		for (size_t j = 0; j < len; j++)
			bin[j] = (unsigned char)rnd();
		o->req = (char *)bin;
		o->req_len = len;
		snprintf(o->req_ctype, sizeof(o->req_ctype), "application/octet-stream");
		exp_push(s, id, 1, bin, len);
		o->nmsgs = 1;
		o->nbytes = len;
		break;
	case SK_JSON: {
		json_t *root = json_object(), *arr = json_array(), *m;

		n = (int)rnd_range(1, 5);
		for (i = 0; i < n; i++) {
			len = rand_size(1024);
			if (chance(0.5)) {
				text = malloc(len + 1);
				if (!text)
					tap_bail("out of memory");
				fill_text(text, len, s, id * 8 + (unsigned)i);
				m = json_pack("{s:s,s:s%}", "type", "text", "data", text, len);
				exp_push(s, id, 0, text, len);
				free(text);
			} else {
				bin = malloc(len);
				if (!bin)
					tap_bail("out of memory");
				for (size_t j = 0; j < len; j++)
					bin[j] = (unsigned char)rnd();
				text = b64_encode(bin, len);
				m = json_pack("{s:s,s:s}", "type", "binary", "data", text);
				exp_push(s, id, 1, bin, len);
				o->nbin++;
				free(text);
				free(bin);
			}
			if (!m || json_array_append_new(arr, m))
				tap_bail("json_pack failed");
			o->nbytes += len;
		}
		json_object_set_new(root, "messages", arr);
		o->nmsgs = n;
		/* the number in the body instead of the header, sometimes */
		if (numbered && chance(0.5)) {
			json_object_set_new(root, "seq", json_integer((json_int_t)s->next_seq));
			o->seq = s->next_seq;
			numbered = 0;
		}
		o->req = json_dumps(root, JSON_COMPACT);
		json_decref(root);
		if (!o->req)
			tap_bail("json_dumps failed");
		o->req_len = strlen(o->req);
		snprintf(o->req_ctype, sizeof(o->req_ctype), "application/json");
		break;
	}
	case SK_FORM: {
		struct dbuf b = { 0 };
		char *esc;

		n = (int)rnd_range(1, 3);
		for (i = 0; i < n; i++) {
			len = rand_size(512);
			text = malloc(len + 1);
			if (!text)
				tap_bail("out of memory");
			fill_text(text, len, s, id * 8 + (unsigned)i);
			esc = curl_easy_escape(NULL, text, (int)len);
			if (!esc)
				tap_bail("curl_easy_escape failed");
			dbuf_add(&b, i ? "&data=" : "data=", i ? 6 : 5);
			dbuf_add(&b, esc, strlen(esc));
			curl_free(esc);
			exp_push(s, id, 0, text, len);
			free(text);
			o->nbytes += len;
		}
		o->req = b.p;
		o->req_len = b.len;
		o->nmsgs = n;
		snprintf(o->req_ctype, sizeof(o->req_ctype), "application/x-www-form-urlencoded");
		break;
	}
	case SK_BURST:
		o->req = strdup("/burst 20");
		o->req_len = strlen(o->req);
		snprintf(o->req_ctype, sizeof(o->req_ctype), "text/plain");
		for (i = 1; i <= 20; i++) {
			char num[8];

			snprintf(num, sizeof(num), "%d", i);
			exp_push(s, id, 0, num, strlen(num));
		}
		o->nmsgs = 1;	/* one message to the upstream; 20 come back */
		break;
	case SK_CLOSE:
		s->close_sent = 1;
		if (h_now_ms() < s->dead_recv_until)
			s->missed_close = 1;
		o->req = strdup("/close 1000 bye");
		o->req_len = strlen(o->req);
		snprintf(o->req_ctype, sizeof(o->req_ctype), "text/plain");
		o->nmsgs = 1;
		break;
	default:
		break;
	}
	if (numbered) {
		o->seq = s->next_seq;
		snprintf(o->extra_hdr, sizeof(o->extra_hdr), "X-Send-Seq: %" PRIu64, o->seq);
	}
	if (o->seq)
		s->next_seq++;
	st.sends[o->sk]++;
	s->send = o;
	op_launch(o);
}

static void start_delete(struct sess *s, int final)
{
	struct op *o = op_new(K_DELETE, s, "DELETE");

	session_url(o->url, sizeof(o->url), s, "");
	s->st = S_DELETING;
	s->final_delete = final;
	if (!final)
		s->exempt = 1;
	s->ctl = o;
	op_launch(o);
}

static void start_check(struct sess *s)
{
	struct op *o = op_new(K_CHECK, s, "GET");

	session_url(o->url, sizeof(o->url), s, "/messages");
	o->check_abandoned = s->st == S_ABANDONED;
	s->ctl = o;
	op_launch(o);
}

/* ---- answers ------------------------------------------------------------ */

static const char *err_code(json_t *j)
{
	const char *e = json_string_value(json_object_get(j, "error"));

	return e ? e : "";
}

/* A session answered 410/404 where it should be alive. */
static void lost(struct sess *s, const struct op *o, long status, json_t *j)
{
	st.e_unexpected_end++;
	note(s, "ERROR %s %s answered %ld %s: the session ended unasked", kind_names[o->kind],
	     o->url + strlen(g.b.base), status, err_code(j));
	exp_clear(s);
	s->exempt = 1;
	s->st = S_LOST;
}

static void done_create(struct op *o, CURLcode cc, long status, json_t *j)
{
	struct sess *s = o->s;
	const char *id = json_string_value(json_object_get(j, "session"));
	int64_t now = h_now_ms();

	if (cc == CURLE_OK && status == 201 && id && strlen(id) < sizeof(s->id)) {
		snprintf(s->id, sizeof(s->id), "%s", id);
		s->st = S_ACTIVE;
		s->sse = g.sse_ok && chance(0.05);
		s->next_recv_at = now;
		s->next_send_at = now + rnd_range(0, 1000);
		s->last_req_at = now;
		st.created++;
		return;
	}
	st.create_failed++;
	if (cc != CURLE_OK)
		st.e_transport++;
	else
		st.e_status++;
	note(NULL, "ERROR create answered %ld %s %s", status,
	     cc != CURLE_OK ? curl_easy_strerror(cc) : err_code(j), o->resp.p ? o->resp.p : "");
	s->st = S_DONE;
}

static void done_send(struct op *o, CURLcode cc, long status, json_t *j)
{
	struct sess *s = o->s;
	int64_t now = h_now_ms();
	json_t *acc = json_object_get(j, "accepted");
	int n;

	s->next_send_at = now + rnd_range(300, 4000);
	if (cc != CURLE_OK) {
		st.e_transport++;
		note(s, "ERROR send (%s, %d message(s), try %d): %s", sk_names[o->sk], o->nmsgs,
		     o->tries + 1, curl_easy_strerror(cc));
		if (o->seq && o->tries < 3 && (s->st == S_ACTIVE || s->st == S_CLOSING)) {
			/* numbered: the retry cannot be forwarded twice */
			curl_multi_remove_handle(g.multi, o->e);
			curl_easy_cleanup(o->e);
			o->e = NULL;
			g.inflight--;
			o->tries++;
			o->relaunched = 1;
			st.send_retries++;
			op_launch(o);
			return;
		}
		exp_optional_send(s, o->send_id);
		st.unnumbered_lost++;
		return;
	}
	if (status == 200) {
		if (!json_is_integer(acc) ||
		    (json_integer_value(acc) != o->nmsgs &&
		     !(o->tries && json_integer_value(acc) == 0))) {
			st.e_accepted++;
			note(s, "ERROR send (%s) of %d message(s) answered %s", sk_names[o->sk],
			     o->nmsgs, o->resp.p);
		}
		if (o->sk == SK_CLOSE) {
			if (s->st == S_ACTIVE)
				s->st = S_CLOSING;
		} else if (o->sk != SK_BURST) {
			if (o->sk == SK_BINARY) {
				st.sent_binary++;
			} else {
				st.sent_text += (unsigned long)(o->nmsgs - o->nbin);
				st.sent_binary += (unsigned long)o->nbin;
			}
			st.sent_bytes += o->nbytes;
		}
		st.expected_echoes += o->sk == SK_BURST ? 20 : o->sk == SK_CLOSE ? 0 :
				      (unsigned long)o->nmsgs;
		return;
	}
	n = exp_drop_send(s, o->send_id);
	if (n < (o->sk == SK_BURST ? 20 : o->sk == SK_CLOSE ? 0 : o->nmsgs)) {
		st.v_rejected_echo++;
		note(s, "VIOLATION send answered %ld %s but its echo already came", status,
		     err_code(j));
	}
	if (o->seq && o->seq == s->next_seq - 1)
		s->next_seq--;	/* refused: the number was not used */
	if (status == 429) {
		st.queue_full++;
		s->next_send_at = now + 1000 * (o->retry_after[0] ? atoi(o->retry_after) : 1);
		return;
	}
	if (status == 410 && (s->st == S_ACTIVE || s->st == S_CLOSING)) {
		lost(s, o, status, j);
		return;
	}
	if (status == 410 || status == 404) {
		if (s->st == S_DELETING || s->st == S_DELETED || s->st == S_CLOSED)
			return;	/* raced with our own DELETE, or after the close */
	}
	st.e_status++;
	note(s, "ERROR send (%s) answered %ld %s", sk_names[o->sk], status,
	     o->resp.p ? o->resp.p : "");
}

static void done_poll(struct op *o, CURLcode cc, long status, json_t *j)
{
	struct sess *s = o->s;
	json_t *msgs, *m, *close;
	const char *state;
	size_t i;
	int64_t now = h_now_ms();

	s->next_recv_at = now + (chance(0.1) ? rnd_range(0, 300) : 0);
	if (cc != CURLE_OK) {
		st.e_transport++;
		note(s, "ERROR poll %s: %s", o->url + strlen(g.b.base), curl_easy_strerror(cc));
		s->next_recv_at = now + 200;
		return;
	}
	if (status == 200) {
		msgs = json_object_get(j, "messages");
		state = json_string_value(json_object_get(j, "state"));
		if (!json_is_array(msgs) || !state) {
			st.e_json++;
			note(s, "ERROR poll answered %.200s", o->resp.p);
			return;
		}
		json_array_foreach(msgs, i, m) {
			if (take_message(s, m)) {
				st.e_json++;
				note(s, "ERROR malformed message in %.200s", o->resp.p);
			}
		}
		if (!strcmp(state, "closed")) {
			close = json_object_get(j, "close");
			if (s->st == S_CLOSED) {
				if (++s->end_polls > 4) {
					st.e_never_ended++;
					note(s, "ERROR still answering closed batches after %d polls "
					     "acknowledging everything", s->end_polls);
					s->st = S_DONE;
				}
			} else {
				on_closed(s, (long)json_integer_value(json_object_get(close, "code")),
					  json_string_value(json_object_get(close, "reason")) ?
					  json_string_value(json_object_get(close, "reason")) : "");
			}
		} else if (s->st == S_CLOSED) {
			st.e_status++;
			note(s, "ERROR batch says open after the close");
		}
		return;
	}
	if (status == 410) {
		if (s->st == S_CLOSED) {
			if (s->end_polls == 0 && s->head) {
				/* cannot happen: exp cleared at the close */
			}
			st.closed_ended++;
			s->st = S_DONE;
			return;
		}
		if ((s->st == S_CLOSING || s->st == S_ACTIVE) && s->missed_close) {
			/* the cut poll may have carried the closed batch that ended it */
			st.closed_missed++;
			if (st.closed_missed <= 2) {
				tap_diag("session %s: 410 where the closed batch was due; it went "
					 "to a poll this client had cut (counted, not an error):",
					 s->id);
				for (unsigned i = s->nhist > HIST ? s->nhist - HIST : 0;
				     i < s->nhist; i++)
					tap_diag("    %s", s->hist[i % HIST]);
			}
			exp_clear(s);
			s->exempt = 1;
			s->st = S_DONE;
			return;
		}
		if (s->st == S_ACTIVE || s->st == S_CLOSING) {
			lost(s, o, status, j);
			return;
		}
		return;	/* deleting/deleted: our own DELETE ended it */
	}
	if ((s->st == S_DELETING || s->st == S_DELETED) && status == 404)
		return;
	if (s->st == S_ACTIVE && status == 404) {
		lost(s, o, status, j);
		return;
	}
	st.e_status++;
	note(s, "ERROR poll %s answered %ld %.200s", o->url + strlen(g.b.base), status,
	     o->resp.p ? o->resp.p : "");
}

static void done_sse(struct op *o, CURLcode cc, long status, json_t *j)
{
	struct sess *s = o->s;
	int64_t now = h_now_ms();

	s->next_recv_at = now;
	if (cc != CURLE_OK) {
		st.e_transport++;
		note(s, "ERROR event stream %s: %s", o->url + strlen(g.b.base),
		     curl_easy_strerror(cc));
		return;
	}
	if (status == 200) {
		if (strncmp(o->ctype, "text/event-stream", 17)) {
			st.e_sse++;
			note(s, "ERROR event stream answered Content-Type %s", o->ctype);
			s->sse = 0;
			return;
		}
		if (!o->sse_closed && (s->st == S_ACTIVE || s->st == S_CLOSING)) {
			st.e_sse++;
			note(s, "ERROR event stream ended without a close event");
		}
		return;
	}
	if (status == 410 && (s->st == S_ACTIVE || s->st == S_CLOSING)) {
		lost(s, o, status, j);
		return;
	}
	if ((status == 410 || status == 404) && s->st != S_ACTIVE && s->st != S_CLOSING)
		return;
	st.e_status++;
	note(s, "ERROR event stream answered %ld %.200s", status, o->resp.p ? o->resp.p : "");
}

static void done_delete(struct op *o, CURLcode cc, long status, json_t *j)
{
	struct sess *s = o->s;

	if (cc == CURLE_OK && status == 204) {
		s->st = S_DELETED;
		s->check_at = h_now_ms() + rnd_range(0, 2000);
		if (s->final_delete)
			st.final_deleted++;
		else
			st.deleted++;
		return;
	}
	if (cc != CURLE_OK)
		st.e_transport++;
	else
		st.e_status++;
	note(s, "ERROR DELETE answered %ld %s %s", status,
	     cc != CURLE_OK ? curl_easy_strerror(cc) : err_code(j), o->resp.p ? o->resp.p : "");
	s->st = S_DONE;
}

static void done_check(struct op *o, CURLcode cc, long status, json_t *j)
{
	struct sess *s = o->s;

	s->st = S_DONE;
	if (cc != CURLE_OK) {
		st.e_transport++;
		note(s, "ERROR check poll: %s", curl_easy_strerror(cc));
		return;
	}
	if (o->check_abandoned) {
		st.abandoned_checked++;
		if (status != 410 && status != 404) {
			st.e_abandon_alive++;
			note(s, "ERROR abandoned %.1f s ago, a poll still answers %ld %.200s",
			     (double)ABANDON_CHECK_MS / 1000.0, status, o->resp.p ? o->resp.p : "");
		}
		return;
	}
	st.deleted_checked++;
	if (status != 410) {
		st.e_tombstone++;
		note(s, "ERROR deleted, then a poll answered %ld %s (want 410)", status,
		     err_code(j));
	}
}

/* Everything that finished in the multi handle. */
static void reap_done(void)
{
	CURLMsg *m;
	CURLcode cc;
	int left;
	struct op *o;
	long status;
	json_t *j;

	while ((m = curl_multi_info_read(g.multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		/* m does not survive curl_multi_remove_handle: copy what it says */
		cc = m->data.result;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&o);
		status = 0;
		curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
		o->relaunched = 0;
		if (o->s && (o->kind == K_POLL || o->kind == K_SSE) && cc == CURLE_OK &&
		    o->started > o->s->last_cut)
			o->s->dead_recv_until = 0;
		if (o->s)
			hist(o->s, "  %s answered %ld after %lld ms: %.60s", kind_names[o->kind],
			     status, (long long)(h_now_ms() - o->started),
			     o->kind == K_SSE ? "(stream)" : o->resp.p ? o->resp.p : "");
		j = o->kind != K_SSE && o->resp.len && o->resp.p[0] == '{' ?
		    json_loadb(o->resp.p, o->resp.len, 0, NULL) : NULL;
		if (o->kind == K_SSE && status != 200 && o->resp.len && o->resp.p[0] == '{')
			j = json_loadb(o->resp.p, o->resp.len, 0, NULL);
		switch (o->kind) {
		case K_CREATE:
			done_create(o, cc, status, j);
			break;
		case K_SEND:
			done_send(o, cc, status, j);
			break;
		case K_POLL:
			done_poll(o, cc, status, j);
			break;
		case K_SSE:
			done_sse(o, cc, status, j);
			break;
		case K_DELETE:
			done_delete(o, cc, status, j);
			break;
		case K_CHECK:
			done_check(o, cc, status, j);
			break;
		default:
			break;
		}
		json_decref(j);
		/* a retried send owns a new handle now */
		if (o->relaunched)
			continue;
		op_free(o);
	}
}

/* ---- scheduling --------------------------------------------------------- */

static int live_count(void)
{
	int n = 0;

	for (size_t i = 0; i < g.nsess; i++) {
		enum sstate t = g.sess[i]->st;

		n += t == S_CREATING || t == S_ACTIVE || t == S_CLOSING;
	}
	return n;
}

static int cmp_last_req(const void *a, const void *b)
{
	const struct sess *x = *(struct sess *const *)a, *y = *(struct sess *const *)b;

	return x->last_req_at < y->last_req_at ? -1 : x->last_req_at > y->last_req_at;
}

/* A random active session (no close asked), or NULL. */
static struct sess *pick_active(void)
{
	struct sess *s;

	for (int tries = 0; tries < 64 && g.nsess; tries++) {
		s = g.sess[rnd() % g.nsess];
		if (s->st == S_ACTIVE && !s->want_close)
			return s;
	}
	return NULL;
}

static void abandon(struct sess *s, int64_t now)
{
	if (s->recv)
		op_abort(s->recv);
	if (s->send)
		op_abort(s->send);
	exp_clear(s);
	s->exempt = 1;
	s->st = S_ABANDONED;
	s->check_at = now + ABANDON_CHECK_MS;
	st.abandoned++;
}

/* Session ends at random, at the configured rates. */
static void lifecycle(int64_t now, double dt)
{
	struct sess *s;

	dt *= (double)g.nsessions / 500.0;
	if (chance(RATE_DELETE * dt) && (s = pick_active()) && !s->ctl)
		start_delete(s, 0);
	if (chance(RATE_ABANDON * dt) && (s = pick_active()) && !s->ctl)
		abandon(s, now);
	if (chance(RATE_CLOSE * dt) && (s = pick_active())) {
		s->want_close = 1;
		if (s->next_send_at > now)
			s->next_send_at = now;
	}
}

static void schedule(int64_t now)
{
	static struct sess **cand;
	static size_t capcand;
	size_t n = 0, i;
	struct sess *s;

	if (capcand < g.nsess) {
		capcand = g.capsess;
		cand = realloc(cand, capcand * sizeof(*cand));
		if (!cand)
			tap_bail("out of memory");
	}
	/* cut the polls and streams whose client "goes away" now */
	for (i = 0; i < g.nsess; i++) {
		s = g.sess[i];
		if (s->recv && s->recv->abort_at && now >= s->recv->abort_at)
			op_abort(s->recv);
	}
	/* receives: the longest-untouched sessions first */
	for (i = 0; i < g.nsess; i++) {
		s = g.sess[i];
		if ((s->st == S_ACTIVE || s->st == S_CLOSING || s->st == S_CLOSED) && !s->recv &&
		    s->next_recv_at <= now)
			cand[n++] = s;
	}
	qsort(cand, n, sizeof(*cand), cmp_last_req);
	for (i = 0; i < n && g.inflight < MAX_INFLIGHT && g.recv_inflight < RECV_SLOTS; i++) {
		s = cand[i];
		if (s->sse && s->st == S_ACTIVE && !g.draining)
			start_sse(s, now);
		else
			start_poll(s, now);
	}
	/* checks of ended sessions */
	for (i = 0; i < g.nsess && g.inflight < MAX_INFLIGHT; i++) {
		s = g.sess[i];
		if ((s->st == S_DELETED || s->st == S_ABANDONED) && !s->ctl && now >= s->check_at)
			start_check(s);
	}
	if (g.draining) {
		/* everything echoed: the session is done, DELETE it */
		for (i = 0; i < g.nsess && g.inflight < MAX_INFLIGHT; i++) {
			s = g.sess[i];
			if (s->st == S_ACTIVE && !s->send && !s->ctl && !s->head)
				start_delete(s, 1);
		}
		return;
	}
	/* sends */
	n = 0;
	for (i = 0; i < g.nsess; i++) {
		s = g.sess[i];
		if (s->st == S_ACTIVE && !s->send && s->next_send_at <= now)
			cand[n++] = s;
	}
	qsort(cand, n, sizeof(*cand), cmp_last_req);
	for (i = 0; i < n && g.inflight < MAX_INFLIGHT; i++)
		start_send(cand[i]);
	/* keep about N sessions alive */
	for (int live = live_count(); live < g.nsessions && g.creating < MAX_CREATING &&
	     g.inflight < MAX_INFLIGHT; live++)
		start_create();
}

/* Stream to the sessions about to be drained: cut them, poll instead. */
static void stop_streams(void)
{
	for (size_t i = 0; i < g.nsess; i++) {
		struct sess *s = g.sess[i];

		if (s->recv && s->recv->kind == K_SSE)
			op_abort(s->recv);
		s->sse = 0;
	}
}

/* Nothing in flight and nothing still to do. */
static int drain_finished(void)
{
	if (g.inflight)
		return 0;
	for (size_t i = 0; i < g.nsess; i++) {
		enum sstate t = g.sess[i]->st;

		if (t != S_DONE && t != S_LOST)
			return 0;
	}
	return 1;
}

/* ---- startup probes ----------------------------------------------------- */

static size_t probe_body(char *d, size_t size, size_t nmemb, void *u)
{
	struct dbuf *b = u;

	dbuf_add(b, d, size * nmemb);
	return size * nmemb;
}

/* Does GET /events answer 200 text/event-stream with the message? */
static int probe_sse(void)
{
	char id[64], url[256];
	struct dbuf body = { 0 };
	CURL *e;
	long code = 0;
	char *ct = NULL;
	int ok;

	if (h_create(&g.b, "echo", id, NULL) != 201)
		tap_bail("cannot create a session for the SSE probe");
	if (h_send_text(&g.b, id, "sse-probe", NULL) != 200)
		tap_bail("cannot send for the SSE probe");
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/events", g.b.base, id);
	e = curl_easy_init();
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, g.valgrind ? 8000L : 1500L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, probe_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
	curl_easy_perform(e);	/* the stream never ends by itself: a timeout */
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct);
	ok = code == 200 && ct && !strncmp(ct, "text/event-stream", 17) && body.p &&
	     strstr(body.p, "\"data\":\"sse-probe\"");
	if (!ok)
		tap_diag("SSE probe: %ld %s %.200s", code, ct ? ct : "", body.p ? body.p : "");
	curl_easy_cleanup(e);
	dbuf_free(&body);
	if (h_delete(&g.b, id) != 204)
		tap_diag("SSE probe: DELETE did not answer 204");
	return ok;
}

/* ---- logs --------------------------------------------------------------- */

static void copy_log(const char *src, const char *name)
{
	char dst[1024];
	char *text;
	FILE *f;

	if (!g.log_dir || !src)
		return;
	text = h_read_file(src);
	if (!text)
		return;
	snprintf(dst, sizeof(dst), "%s/%s", g.log_dir, name);
	f = fopen(dst, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	free(text);
}

/* Print up to max lines of text from the line holding at. */
static void show_from(const char *text, const char *at, int max)
{
	const char *bol = at, *eol;

	while (bol > text && bol[-1] != '\n')
		bol--;
	for (int i = 0; i < max && *bol; i++) {
		eol = strchr(bol, '\n');
		tap_diag("  | %.*s", (int)(eol ? eol - bol : (long)strlen(bol)), bol);
		if (!eol)
			break;
		bol = eol + 1;
	}
}

/* ---- main --------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: soak [--minutes M] [--sessions N] [--valgrind] [--log-dir DIR] "
		"[--seed S]\n(the store is PB_TEST_STORE's; see tests/soak/run.sh)\n");
	exit(2);
}

static void progress(int64_t now, long rss, unsigned long *last_req, int64_t *last_t)
{
	unsigned long req = 0;

	for (int k = 0; k < K_N; k++)
		req += st.req[k];
	tap_diag("t=%4llds rss=%7ld KiB live=%4d in-flight=%3d requests=%lu (%.0f/s) "
		 "sent=%lu received=%lu violations=%lu errors=%lu",
		 (long long)((now - g.t0) / 1000), rss, live_count(), g.inflight, req,
		 (double)(req - *last_req) * 1000.0 / (double)(now - *last_t > 0 ? now - *last_t : 1),
		 st.sent_text + st.sent_binary, st.received, violations(), errors());
	*last_req = req;
	*last_t = now;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "minutes", required_argument, NULL, 'm' },
		{ "sessions", required_argument, NULL, 'n' },
		{ "valgrind", no_argument, NULL, 'v' },
		{ "log-dir", required_argument, NULL, 'l' },
		{ "seed", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 }
	};
	char route[128], idle[16], hb[16], vlog[600], wrapper[1024];
	int opt, port, running, code, npass = 0, nfail = 0;
	int64_t now, last_tick, t_end, next_sample, last_t, drain_deadline;
	long rss, rss_1min = -1, rss_end = -1, rss_max = 0, rss_after;
	unsigned long last_req = 0, total_req = 0;
	unsigned long long seed = 0;
	const char *store;
	char *log, *at;
	int ok, bridge_alive, echo_alive, log_clean, flat;

	g.minutes = 3;
	g.nsessions = 500;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			g.minutes = atoi(optarg);
			break;
		case 'n':
			g.nsessions = atoi(optarg);
			break;
		case 'v':
			g.valgrind = 1;
			break;
		case 'l':
			g.log_dir = optarg;
			break;
		case 's':
			seed = strtoull(optarg, NULL, 10);
			break;
		default:
			usage();
		}
	}
	if (g.minutes < 1 || g.nsessions < 1 || optind != argc)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!seed)
		seed = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 16);
	rng = seed ? seed : 1;

	h_init();
	/* the harness's 300 s watchdog is for unit-sized tests */
	alarm((unsigned)(g.minutes * 60 + (g.valgrind ? 900 : 400)));
	store = h_store();
	tap_diag("soak: %d minute(s), %d sessions, store %s, %s, seed %llu", g.minutes,
		 g.nsessions, store ? store : "memory", g.valgrind ? "valgrind" : "sanitizer build",
		 seed);

	g.echo = h_echo_start(&port, NULL);
	if (!g.echo)
		tap_bail("pollbridge-echo did not start");
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/", port);
	snprintf(idle, sizeof(idle), "%d", IDLE_TIMEOUT);
	snprintf(hb, sizeof(hb), "%d", SSE_HEARTBEAT);
	vlog[0] = '\0';
	if (g.valgrind) {
		snprintf(vlog, sizeof(vlog), "%s/valgrind.log", h_tmpdir());
		snprintf(wrapper, sizeof(wrapper),
			 "valgrind --leak-check=full --error-exitcode=97 --log-file=%s", vlog);
		setenv("PB_BRIDGE_WRAPPER", wrapper, 1);
	}
	if (h_bridge_start(&g.b, route, "--idle-timeout", idle, "--sse-heartbeat", hb,
			   "--max-sessions", "20000", NULL))
		tap_bail("pollbridge did not start");
	unsetenv("PB_BRIDGE_WRAPPER");
	tap_diag("bridge pid %ld on %s, log %s", (long)g.b.proc->pid, g.b.base,
		 g.b.proc->log_path);

	g.sse_ok = probe_sse();
	ok = tap_ok(g.sse_ok, "GET /events answers 200 text/event-stream with the message");
	ok ? npass++ : nfail++;

	g.multi = curl_multi_init();
	if (!g.multi)
		tap_bail("curl_multi_init failed");
	curl_multi_setopt(g.multi, CURLMOPT_MAXCONNECTS, (long)MAX_INFLIGHT + 56);

	g.t0 = now = h_now_ms();
	last_tick = last_t = now;
	t_end = now + (int64_t)g.minutes * 60000;
	next_sample = now + SAMPLE_MS;
	bridge_alive = 1;
	while (now < t_end) {
		curl_multi_perform(g.multi, &running);
		reap_done();
		now = h_now_ms();
		lifecycle(now, (double)(now - last_tick) / 1000.0);
		last_tick = now;
		schedule(now);
		if (now >= next_sample) {
			rss = h_rss_kib(g.b.proc->pid);
			if (rss > rss_max)
				rss_max = rss;
			if (rss_1min < 0 && now - g.t0 >= 60000 - 500)
				rss_1min = rss;
			progress(now, rss, &last_req, &last_t);
			next_sample += SAMPLE_MS;
			if (!h_alive(g.b.proc)) {
				bridge_alive = 0;
				tap_diag("the bridge died");
				break;
			}
		}
		curl_multi_poll(g.multi, NULL, 0, 10, NULL);
		now = h_now_ms();
	}
	rss_end = h_rss_kib(g.b.proc->pid);
	if (rss_end > rss_max)
		rss_max = rss_end;
	if (rss_1min < 0)
		rss_1min = rss_end;
	tap_diag("traffic phase over at t=%llds: rss %ld KiB; collecting what is due, "
		 "then deleting every session left", (long long)((now - g.t0) / 1000), rss_end);

	/* drain: no new sends or sessions; collect every echo still due */
	g.draining = 1;
	stop_streams();
	drain_deadline = now + (g.valgrind ? 180000 : ABANDON_CHECK_MS + 20000);
	while (bridge_alive && now < drain_deadline && !drain_finished()) {
		curl_multi_perform(g.multi, &running);
		reap_done();
		now = h_now_ms();
		schedule(now);
		curl_multi_poll(g.multi, NULL, 0, 10, NULL);
		now = h_now_ms();
	}
	/* whatever is still in flight is cut */
	for (size_t i = 0; i < g.nsess; i++) {
		struct sess *s = g.sess[i];

		if (s->recv)
			op_abort(s->recv);
		if (s->send)
			op_abort(s->send);
		if (s->ctl)
			op_free(s->ctl);
		if (!s->exempt && s->nexp) {
			st.v_missing_end += s->nexp;
			note(s, "VIOLATION %zu echo(es) never came", s->nexp);
		} else if (s->nexp) {
			st.not_due += s->nexp;
		}
		if (s->st != S_DONE && s->st != S_LOST)
			tap_diag("session %s still %s at the end of the drain", s->id,
				 st_names[s->st]);
	}
	rss_after = h_rss_kib(g.b.proc->pid);
	bridge_alive = bridge_alive && h_alive(g.b.proc);
	echo_alive = h_alive(g.echo);

	/* stop: SIGTERM must drain and exit 0 */
	code = h_stop(g.b.proc, SIGTERM, g.valgrind ? 120000 : 30000);
	h_stop(g.echo, SIGTERM, 5000);
	copy_log(g.b.proc->log_path, "pollbridge.log");
	copy_log(g.echo->log_path, "pollbridge-echo.log");
	if (g.valgrind)
		copy_log(vlog, "valgrind.log");

	/* ---- summary ---- */
	for (int k = 0; k < K_N; k++)
		total_req += st.req[k];
	tap_diag("==== summary (%d min, %d sessions, store %s, %s, seed %llu)", g.minutes,
		 g.nsessions, store ? store : "memory", g.valgrind ? "valgrind" : "ASan+UBSan",
		 seed);
	tap_diag("requests: %lu = create %lu, poll %lu (%lu aborted mid-wait), sse %lu "
		 "(%lu cut by the client), send %lu (%lu aborted), delete %lu, check %lu",
		 total_req, st.req[K_CREATE], st.req[K_POLL], st.polls_aborted, st.req[K_SSE],
		 st.sse_aborted, st.req[K_SEND], st.sends_aborted, st.req[K_DELETE],
		 st.req[K_CHECK]);
	tap_diag("sends by kind: text %lu, binary %lu, json batch %lu, form %lu, burst %lu, "
		 "close %lu; retried %lu, 429 queue_full %lu", st.sends[SK_TEXT],
		 st.sends[SK_BINARY], st.sends[SK_JSON], st.sends[SK_FORM], st.sends[SK_BURST],
		 st.sends[SK_CLOSE], st.send_retries, st.queue_full);
	tap_diag("messages: sent %lu (%lu text/json/form, %lu octet-stream; %lu bytes), "
		 "echoes expected %lu, received %lu (matched %lu, of which burst %lu), not due "
		 "(session deleted, abandoned or closed first) %lu; SSE events %lu, heartbeats %lu",
		 st.sent_text + st.sent_binary, st.sent_text, st.sent_binary, st.sent_bytes,
		 st.expected_echoes, st.received, st.matched, st.burst_received, st.not_due,
		 st.sse_events, st.sse_heartbeats);
	tap_diag("sessions: created %lu (failed %lu), deleted %lu mid-run + %lu at the end "
		 "(410 after DELETE checked %lu), abandoned %lu (gone after idle checked %lu), "
		 "closed by upstream %lu (ended by the acknowledging poll %lu; %lu more whose "
		 "closed batch went to a poll the client had cut)",
		 st.created, st.create_failed, st.deleted, st.final_deleted, st.deleted_checked,
		 st.abandoned, st.abandoned_checked, st.closed_upstream, st.closed_ended,
		 st.closed_missed);
	tap_diag("violations: %lu (duplicate %lu, seq gap %lu, unexpected %lu, skipped %lu, "
		 "missing at close %lu, missing at end %lu, echo of a refused send %lu, "
		 "reopen %lu, after close %lu)",
		 violations(), st.v_dup, st.v_gap, st.v_unexpected, st.v_skipped,
		 st.v_missing_close, st.v_missing_end, st.v_rejected_echo, st.v_reopen,
		 st.v_after_close);
	tap_diag("errors: %lu (transport %lu, status %lu, session ended unasked %lu, close "
		 "code %lu, abandoned still alive %lu, no 410 after DELETE %lu, SSE %lu, JSON %lu, "
		 "accepted count %lu, closed never ended %lu)",
		 errors(), st.e_transport, st.e_status, st.e_unexpected_end, st.e_close,
		 st.e_abandon_alive, st.e_tombstone, st.e_sse, st.e_json, st.e_accepted,
		 st.e_never_ended);
	flat = rss_end >= 0 && rss_1min >= 0 &&
	       (double)rss_end <= 1.2 * (double)rss_1min + 2048.0;
	tap_diag("rss: after the first minute %ld KiB, at the end %ld KiB, max %ld KiB, after "
		 "the drain %ld KiB; flat: %s (limit %.0f KiB)", rss_1min, rss_end, rss_max,
		 rss_after, flat ? "yes" : "no", 1.2 * (double)rss_1min + 2048.0);
	tap_diag("bridge exit status on SIGTERM: %d", code);
	if (g.log_dir)
		tap_diag("logs copied to %s", g.log_dir);

	/* ---- checks ---- */
	ok = tap_ok(bridge_alive && echo_alive, "bridge and echo upstream alive through %d min",
		    g.minutes);
	ok ? npass++ : nfail++;
	ok = tap_ok(st.created >= (unsigned long)g.nsessions && st.matched > 0 &&
		    st.closed_upstream && st.deleted && st.abandoned && st.polls_aborted &&
		    (!g.sse_ok || st.sse_events), "the traffic covered every kind");
	ok ? npass++ : nfail++;
	ok = tap_ok(violations() == 0, "no delivery violations (%lu)", violations());
	ok ? npass++ : nfail++;
	ok = tap_ok(errors() == 0, "no errors (%lu)", errors());
	ok ? npass++ : nfail++;
	ok = tap_ok(flat, "RSS flat: %ld KiB at the end <= 1.2 x %ld KiB + 2 MiB", rss_end,
		    rss_1min);
	ok ? npass++ : nfail++;
	ok = tap_ok(code == 0, "SIGTERM: the bridge exited 0 (got %d)", code);
	ok ? npass++ : nfail++;
	log = h_read_file(g.valgrind ? vlog : g.b.proc->log_path);
	log_clean = log != NULL;
	if (log && !g.valgrind) {
		static const char *const bad[] = { "ERROR: AddressSanitizer", "runtime error:",
						   "LeakSanitizer", NULL };

		for (int i = 0; bad[i]; i++) {
			if ((at = strstr(log, bad[i]))) {
				log_clean = 0;
				tap_diag("bridge log has \"%s\":", bad[i]);
				show_from(log, at, 80);
			}
		}
		ok = tap_ok(log_clean, "bridge log: no AddressSanitizer, UBSan or leak report");
	} else {
		if (log && (!strstr(log, "ERROR SUMMARY: 0 errors") ||
			    !(strstr(log, "definitely lost: 0 bytes") ||
			      strstr(log, "no leaks are possible")))) {
			log_clean = 0;
			at = strstr(log, "HEAP SUMMARY");
			show_from(log, at ? at : log, 120);
		}
		ok = tap_ok(log_clean && code != 97,
			    "valgrind: ERROR SUMMARY: 0 errors, definitely lost: 0");
	}
	ok ? npass++ : nfail++;
	free(log);
	curl_multi_cleanup(g.multi);
	printf("1..%d\n", npass + nfail);
	printf("%d passed, %d failed\n", npass, nfail);
	return nfail ? 1 : 0;
}
