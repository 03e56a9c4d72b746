/*
 * front.c: the HTTP front end (see front.h). This is the only file that
 * includes <microhttpd.h>.
 *
 * libmicrohttpd runs in external epoll mode: its epoll fd is watched by a
 * uv_poll_t, its timeouts by a uv_timer_t, and MHD_run() is called from
 * either. Connections are accepted here and given to it
 * (MHD_add_connection), so that --max-connections counts them all. A
 * request that cannot be answered inside the access handler (a long poll,
 * an upstream handshake) is suspended and resumed when the core calls back;
 * the handler then queues the response prepared for it. A /v1 poll or a
 * door's poll that waits on plain HTTP leaves libmicrohttpd instead and
 * answers on its own socket ("waiting polls outside libmicrohttpd"
 * below).
 *
 * Front doors. A path under a route's engineio= or sockjs= door is routed
 * to engineio.c / sockjs.c (after the operations endpoints, before /v1)
 * once its body is in; they read the request and answer through the
 * pb_req_* calls of front_req.h, which this file implements. Streams (the
 * /v1 event stream, the doors' streaming transports) share one engine,
 * pb_req_stream(): this file owns the content reader, the suspension and
 * the core reads, the caller's pb_stream_ops encode each batch.
 *
 * A struct pb_req lives from the first handler call to MHD's completion
 * callback. If the connection dies while the core still holds the request
 * (it cannot while suspended, but shutdown is shutdown), the request is
 * orphaned and freed when the core's callback arrives.
 *
 * Hostile clients. Each connection has a struct pb_conn (MHD's socket
 * context) that a 250 ms tick checks: the request line and headers must be
 * complete within --header-timeout of the connection's accept or of the
 * previous answer, and the body must keep up with --min-body-rate after a
 * grace of --header-timeout; a connection that falls behind is shut down
 * (MHD's own --connection-timeout only measures silence). Ambiguous message
 * framing (RFC 9112 section 6.3) and a NUL in the URL (%00 or raw) are refused
 * before anything is dispatched. A connection closed while the client may
 * still be sending (an early error answer, unread bytes) lingers: a dup of
 * its socket is half-closed and read and discarded for a while, so the
 * client reads the answer instead of a reset.
 *
 * TLS. The public front's certificate chain and key are gnutls objects
 * handed out by a certificate callback (MHD_OPTION_HTTPS_CERT_CALLBACK)
 * rather than given to libmicrohttpd at start, so pb_front_set_tls can
 * swap them on SIGHUP: new handshakes get the new pair, established
 * connections keep their session. The replaced pair is kept until the
 * next swap or the front's end, for a handshake that already picked it.
 * gnutls's callback has no user pointer: one TLS front per process.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "buf.h"
#include "codec.h"
#include "compress.h"
#include "engineio.h"
#include "error.h"
#include "front.h"
#include "front_req.h"
#include "log.h"
#include "metrics.h"
#include "sockjs.h"
#include "tcp_read.h"

/* One client connection (MHD's socket context): the state the slow-client
 * tick checks, and what the current request's raw URL showed. */
enum front_phase {
	PH_HEAD,                /* waiting for a request line and headers */
	PH_BODY,                /* headers in, reading the body */
	PH_BUSY,                /* dispatched or answered: no deadline */
};

struct pb_conn {
	struct pb_front *f;
	struct MHD_Connection *conn;
	struct pb_conn *prev, *next;
	enum front_phase phase;
	uint64_t since_ms;      /* start of the phase */
	uint64_t body_bytes;    /* body bytes read in PH_BODY */
	int nul;                /* the current request's raw URL holds %00 */
	uintptr_t uri_at;       /* where MHD had the raw URL (compared, never read) */
	size_t uri_len;         /* its length up to the first NUL */
	int linger;             /* answered early: linger when it closes */
	int cut;                /* shut down for slowness (or handed off): no linger */
	/* --lean-long-polls: the bytes of the connection's finished requests
	 * as received (request line, headers, body), from the bytes already
	 * read off the socket when libmicrohttpd took it (front_hand_off). */
	uint64_t done_bytes;
};

/* A closed connection's socket (a dup) read and discarded until the client
 * closes, LINGER_BYTES were read or LINGER_MS passed. */
struct front_linger {
	struct pb_front *f;     /* NULL once the front is freed */
	struct front_linger *prev, *next;
	uv_poll_t poll;
	int fd;
	size_t discarded;
	uint64_t until_ms;
};

#define TICK_MS 250
#define LINGER_MS 2000
#define LINGER_BYTES (1024 * 1024)
#define LINGER_MAX 256          /* lingering sockets at once; more close at once */

/* libmicrohttpd's per-connection memory pool is --max-header-bytes plus
 * this: room beside the request line and headers for its parsed header
 * records (64 bytes per header line in 0.9.75) and the answer's status
 * line and headers. 4 KiB lets a request at the limit carry about 60
 * header lines. libmicrohttpd 0.9.75 zeroes the whole pool after every
 * request of a keep-alive connection, so each client connection keeps all
 * of it resident: it is the largest part of an idle session's memory. */
#define FRONT_POOL_SLACK 4096

/* One certificate chain and its private key, as gnutls uses them. */
struct front_cred {
	gnutls_pcert_st *chain;
	unsigned nchain;
	gnutls_privkey_t key;
};

struct pb_front {
	uv_loop_t *loop;
	const struct pb_config *cfg;
	struct pb_core *core;
	struct MHD_Daemon *mhd;
	int listen_fd;
	uv_poll_t accept;       /* listen_fd: connections are accepted here */
	int accepting;          /* accept is started */
	int accept_closed;      /* accept is closed (drain) */
	unsigned limit;         /* client connections at once */
	size_t nconns;          /* connections libmicrohttpd holds */
	uv_poll_t poll;
	uv_timer_t timer;
	uv_timer_t tick;        /* slow-client deadlines and lingering sockets */
	struct pb_conn *conns;  /* every open connection */
	struct front_linger *lingers;
	size_t nlingers;
	int stopping;           /* MHD_stop_daemon() runs: no lingering */
	int handles_open;       /* uv handles still to be closed */
	size_t active;
	size_t body_limit;
	int draining;
	int admin;              /* the --admin-listen front: health and metrics only */
	int in_run;             /* inside MHD_run() */
	int kicked;             /* a connection was resumed: run again soon */
	uint64_t streams;       /* event streams started (their tokens) */
	char address[80];
	char mhd_error[160];    /* libmicrohttpd's first error line, for start failures */
	struct front_cred *cred;        /* served to new TLS handshakes */
	struct front_cred *old_cred;    /* the one it replaced */
	/* The empty open poll answer, built once and shared by every such
	 * answer (libmicrohttpd counts its users): [1] with Vary:
	 * Accept-Encoding. Rebuilt after a reload (front_empty_answer). */
	struct MHD_Response *empty_open[2];
	/* --lean-long-polls: waiting polls whose connection left
	 * libmicrohttpd, and answered ones whose socket goes back to it on the
	 * next run (front_give_back). */
	struct pb_req *handed;
	struct pb_req *backs;
	size_t nhanded;         /* sockets held outside libmicrohttpd (both lists) */
	struct pb_req *later;   /* polls waiting for their first read (pb_req.later) */
	uv_check_t late;        /* runs front_late_cb while later is not empty */
	int hand_note;          /* the next "internal error" log line is a hand-off */
};

/* The TLS front whose credentials the certificate callback hands out. */
static struct pb_front *front_tls;

enum pb_endpoint {
	EP_NONE,
	EP_HEALTHZ,
	EP_CREATE,
	EP_POLL,
	EP_SEND,
	EP_DELETE,
	EP_EVENTS,
	EP_PREFLIGHT,
	EP_METRICS,
	EP_LIVEZ,
	EP_READYZ,
	EP_ENGINEIO,            /* a route's engineio= door */
	EP_SOCKJS,              /* a route's sockjs= door */
};

struct pb_req {
	struct pb_front *f;
	struct MHD_Connection *conn;
	struct pb_conn *pc;     /* the connection's state, or NULL */
	enum pb_endpoint ep;
	char id[PB_ID_LEN + 1];
	struct pb_buf body;
	int early_err;          /* an error known before the body is read */
	const char *early_msg;
	int discard;            /* a door's body overflowed: read and drop the rest */
	int dispatched;
	int in_handler;         /* the core answered inside the handler */
	int suspended;
	int in_core;            /* the core holds this request */
	int orphan;             /* the connection went away meanwhile */
	uint64_t send_seq;      /* the request's X-Send-Seq / JSON seq, 0: none */
	struct MHD_Response *resp;
	int resp_shared;        /* resp is the front's: never destroyed here */
	unsigned status;
	uint64_t started_ms;
	uint64_t started_ns;    /* uv_hrtime() at the headers: the duration histogram */
	/* The request line, in MHD's connection memory until the request
	 * completes (read only inside the handler): the access log. */
	const char *url, *method, *version;
	long long resp_len;     /* the answer's body bytes, -1: unknown (a stream) */
	const char *origin;     /* the Origin header, if CORS allows it */
	const char *accept_encoding;    /* the first Accept-Encoding, or NULL */
	char *jsonp;            /* the JSONP callback name (owned), or NULL */
	/* A door's request: its route's name (looked up again on use, since a
	 * reload may replace the table), where the subpath starts in url,
	 * and the door's own state. */
	char *route_name;
	size_t sub_off;
	void *door_state;
	void (*door_free)(void *);
	/* A stream (pb_req_stream(): /v1 events and the doors' streams): the
	 * pending bytes and position, and how to go on. */
	struct pb_buf st;
	size_t st_off;
	const struct pb_stream_ops *st_ops;     /* NULL: not a stream */
	void (*st_err)(struct pb_req *r, int err);
	char *st_ctype;
	unsigned st_heartbeat;  /* 0: --sse-heartbeat, read at each read */
	uint64_t st_after;      /* the first read's acknowledgement */
	uint64_t st_from;       /* highest seq put on the stream */
	uint64_t st_acked;      /* where the stream began (the client's cursor) */
	uint64_t st_token;      /* names this stream to the core */
	int st_reading;         /* a core read for the stream is in flight */
	int st_waiting;         /* suspended in the content reader */
	int st_done;            /* end the stream once st is drained */
	int st_open;            /* counted in the open streams gauge */
	/* gzip (src/compress.c), decided in the handler (front_gzip_decide):
	 * the answer depends on Accept-Encoding (Vary), the client takes
	 * gzip; a stream's compressor, and how much of st it has made. */
	int gz_vary;
	int gz_ok;
	struct pb_gzip *gz;
	size_t gz_len;
	/* --lean-long-polls (front_hand_off): a waiting poll whose
	 * connection left libmicrohttpd keeps its socket here and writes its
	 * own answer; the strings the answer and its log read are copied into
	 * kept, since libmicrohttpd's connection memory is gone. */
	int handed;
	int hand_fd;
	int hand_keep;          /* the connection goes back to libmicrohttpd */
	/* A poll (poll_late: a /v1 one, or pb_req_wait_outside_poll) whose
	 * first read was in flight when its handler returned waits in
	 * libmicrohttpd on f->later until that read parks it (front_late_cb),
	 * then leaves at the handler's next call (leave). */
	int poll_late;
	int later;
	int leave;
	struct pb_req *lprev, *lnext;
	unsigned wait;          /* a poll's wait (front_poll) */
	size_t header_size;     /* the request line and headers as received */
	const char *resp_body;  /* resp's body (front_response; owned by resp) */
	size_t resp_body_len;
	int wait_outside;       /* a door's request may (pb_req_wait_outside) */
	int keep;               /* ... keeping PB_KEEP_* when it leaves */
	char *kept;
	const char *referer, *user_agent, *addr;        /* in kept, or NULL */
	const char *origin_raw, *cookie, *acrh; /* a door's (in kept, or NULL) */
	/* PB_KEEP_CREATE: the forwarded headers as they were when the connection
	 * left (front_keep_forward): n pairs "name\0value\0" in fwd. */
	char *fwd;
	size_t fwd_n;
	struct pb_req *hprev, *hnext;   /* f->handed, or f->backs (hnext) */
	struct front_out *out;  /* the rest of the answer, while it is written */
};

/* The part of a handed-off poll's answer the socket did not take at once. */
struct front_out {
	uv_poll_t poll;
	struct pb_req *r;       /* NULL once the front is freed */
	char *data;
	size_t len, off;
};

static void front_kick(struct pb_front *f);
static void front_hand_answer(struct pb_req *r);
static void front_tick_start(struct pb_front *f);
static void front_accept_start(struct pb_front *f);
static void front_handle_closed(uv_handle_t *h);
static void front_later_drop(struct pb_req *r);

/* ---- responses ---------------------------------------------------------- */

/* Add the headers every answer carries: type, no caching, CORS. */
static void front_common_headers(struct pb_req *r, struct MHD_Response *resp,
				 const char *ctype)
{
	const struct pb_config *cfg = r->f->cfg;

	if (ctype)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (r->f->draining)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	if (cfg->ncors_origins)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Origin");
	if (r->origin) {
		MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->origin);
		MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
		MHD_add_response_header(resp, "Access-Control-Expose-Headers",
					"Location, Retry-After");
	}
}

/* Note that r's answer may be gzipped (Vary: Accept-Encoding), and
 * whether the client takes gzip. Inside the handler; never for HEAD, nor
 * with --compress-min-bytes 0. */
static void front_gzip_decide(struct pb_req *r)
{
	r->gz_vary = r->gz_ok = 0;
	if (!r->f->cfg->compress_min_bytes || strcmp(r->method, "HEAD") == 0)
		return;
	r->gz_vary = 1;
	r->gz_ok = pb_gzip_accepts(r->accept_encoding);
}

/* Add the content coding headers of a compressible answer. */
static void front_gzip_headers(struct pb_req *r, struct MHD_Response *resp, int gzipped)
{
	if (r->gz_vary)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
	if (gzipped)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
}

/* A gzipped stream: compress what was encoded into out since the last
 * call (out[gz_len..]), flushed so that the client can inflate every event
 * in it at once; once the stream is done, end the gzip member. 0, or an
 * error: the stream must end. */
static int front_gzip_stream(struct pb_req *r, struct pb_buf *out, int done)
{
	struct pb_buf z;
	int e = 0;

	if (!r->gz || pb_gzip_finished(r->gz) || (out->len == r->gz_len && !done))
		return 0;
	pb_buf_init(&z, 0);
	e = pb_gzip_write(r->gz, &z, out->data ? out->data + r->gz_len : NULL,
			  out->len - r->gz_len, done ? PB_GZIP_FINISH : PB_GZIP_SYNC);
	out->len = r->gz_len;
	if (!e)
		e = pb_buf_append(out, z.data, z.len);
	pb_buf_free(&z);
	r->gz_len = out->len;
	return e;
}

/* Build a response with the headers every answer carries, gzipped when
 * the client takes it and it is at least --compress-min-bytes. */
static struct MHD_Response *front_response(struct pb_req *r, struct pb_buf *body,
					   const char *ctype)
{
	struct MHD_Response *resp;
	size_t len;
	int gz = r->gz_ok && pb_gzip_worth(body->len, r->f->cfg->compress_min_bytes) &&
		 pb_gzip_body(body) == 0;
	char *data = pb_buf_steal(body, &len);

	if (!data)
		return NULL;
	resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(data);
		return NULL;
	}
	r->resp_body = data;
	r->resp_body_len = len;
	r->resp_len = (long long)len;
	front_common_headers(r, resp, ctype);
	front_gzip_headers(r, resp, gz);
	return resp;
}

/* Let go of r's prepared response (a shared one stays with the front). */
static void front_resp_drop(struct pb_req *r)
{
	if (r->resp && !r->resp_shared)
		MHD_destroy_response(r->resp);
	r->resp = NULL;
	r->resp_shared = 0;
}

/* Free a request whose connection and core are both done with it. */
static void front_req_free(struct pb_req *r)
{
	front_later_drop(r);
	front_resp_drop(r);
	pb_buf_free(&r->body);
	pb_buf_free(&r->st);
	pb_gzip_free(r->gz);
	free(r->jsonp);
	free(r->kept);
	free(r->fwd);
	free(r->route_name);
	free(r->st_ctype);
	if (r->door_free)
		r->door_free(r->door_state);
	if (r->st_open)
		pb_metrics_gauge(PB_G_STREAMS_OPEN, -1);
	pb_metrics_gauge(PB_G_HTTP_IN_FLIGHT, -1);
	r->f->active--;
	free(r);
}

/* Hand a finished response to the request: queue it now if we are inside
 * the handler, else resume the connection so the handler runs again. */
static void front_set_response(struct pb_req *r, unsigned status, struct MHD_Response *resp)
{
	r->in_core = 0;
	front_later_drop(r);
	if (r->orphan) {
		if (resp)
			MHD_destroy_response(resp);
		front_req_free(r);
		return;
	}
	front_resp_drop(r);
	r->resp = resp;
	r->status = status;
	if (r->handed) {
		front_hand_answer(r);
		return;
	}
	if (r->suspended) {
		r->suspended = 0;
		MHD_resume_connection(r->conn);
		/* Resumed connections are processed by the next MHD_run(); never
		 * re-enter it from here (we may be inside it). */
		front_kick(r->f);
	}
}

/* The body of the empty answer of an open session's poll. */
static const char front_empty_body[] = "{\"messages\":[],\"state\":\"open\"}";

/* Whether r's empty open answer can be the front's shared one: not for a
 * JSONP callback, CORS headers, a draining front (Connection: close) or
 * a gzipped body, which make an answer of its own. */
static int front_empty_shareable(const struct pb_req *r)
{
	return !r->jsonp && !r->origin && !r->f->draining &&
	       !(r->gz_ok && pb_gzip_worth(sizeof(front_empty_body) - 1,
					   r->f->cfg->compress_min_bytes));
}

/* The shared empty open answer with r's headers (built on first use, with
 * the headers front_response would give it), or NULL without memory. It
 * is looked up when queued, so a reload may drop it at any time. */
static struct MHD_Response *front_empty_answer(struct pb_req *r)
{
	struct MHD_Response **slot = &r->f->empty_open[r->gz_vary ? 1 : 0];

	if (!*slot) {
		*slot = MHD_create_response_from_buffer(sizeof(front_empty_body) - 1,
							(void *)front_empty_body,
							MHD_RESPMEM_PERSISTENT);
		if (!*slot)
			return NULL;
		front_common_headers(r, *slot, "application/json; charset=utf-8");
		front_gzip_headers(r, *slot, 0);
	}
	r->resp_len = (long long)(sizeof(front_empty_body) - 1);
	return *slot;
}

/* Answer r with the shared empty open answer (front_empty_shareable). */
static void front_set_empty(struct pb_req *r)
{
	if (r->orphan) {
		r->in_core = 0;
		front_req_free(r);
		return;
	}
	if (r->handed) {
		r->in_core = 0;
		front_resp_drop(r);
		r->resp_shared = 1;
		r->status = 200;
		front_hand_answer(r);
		return;
	}
	front_set_response(r, 200, NULL);
	r->resp_shared = 1;
}

/* Drop the shared answers (a reload may change their headers). A request
 * holds none of them until it is queued, and libmicrohttpd keeps its own
 * reference to a queued one. */
static void front_empty_reset(struct pb_front *f)
{
	for (size_t i = 0; i < 2; i++) {
		if (f->empty_open[i])
			MHD_destroy_response(f->empty_open[i]);
		f->empty_open[i] = NULL;
	}
}

/* Answer with a JSON body (taken from body). A JSONP request gets it as
 * the argument of its callback, always with status 200 (a script tag
 * cannot read a status). */
static void front_json(struct pb_req *r, unsigned status, struct pb_buf *body)
{
	struct pb_buf js;

	if (!r->jsonp) {
		front_set_response(r, status, front_response(r, body,
							     "application/json; charset=utf-8"));
		return;
	}
	pb_buf_init(&js, 0);
	if (pb_buf_printf(&js, "/**/%s(", r->jsonp) ||
	    pb_buf_append(&js, body->data ? body->data : "", body->len) ||
	    pb_buf_puts(&js, ");")) {
		pb_buf_free(&js);
		pb_buf_free(body);
		front_set_response(r, 500, NULL);
		return;
	}
	pb_buf_free(body);
	front_set_response(r, 200, front_response(r, &js,
						  "application/javascript; charset=utf-8"));
}

/* Answer with body, unless building it failed (e != 0): then a 500. */
static void front_json_built(struct pb_req *r, unsigned status, struct pb_buf *body, int e)
{
	if (e) {
		pb_buf_free(body);
		front_set_response(r, 500, NULL);
		return;
	}
	front_json(r, status, body);
}

/* Answer with the error JSON of docs/API.md for err; msg may be NULL. */
static void front_error(struct pb_req *r, int err, const char *msg)
{
	struct pb_buf b;
	struct MHD_Response *resp;

	pb_buf_init(&b, 0);
	if (pb_codec_encode_error(&b, pb_err_code(err), msg ? msg : pb_err_message(err))) {
		front_json_built(r, 500, &b, PB_ENOMEM);
		return;
	}
	if (r->jsonp) {
		/* A script tag cannot read a status: the error is the argument. */
		front_json(r, (unsigned)pb_err_status(err), &b);
		return;
	}
	resp = front_response(r, &b, "application/json; charset=utf-8");
	if (resp && (err == PB_EQFULL || err == PB_ETOOMANY || err == PB_ESTORE ||
		     err == PB_EDRAINING || err == PB_ECLIENTMAX || err == PB_EMEMFULL))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	if (resp && err == PB_EMETHOD) {
		const char *allow = r->ep == EP_CREATE ? "POST" :
				    r->ep == EP_DELETE ? "DELETE" :
				    r->ep == EP_HEALTHZ || r->ep == EP_EVENTS ||
				    r->ep == EP_METRICS || r->ep == EP_LIVEZ ||
				    r->ep == EP_READYZ ? "GET" : "GET, POST";

		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	}
	front_set_response(r, (unsigned)pb_err_status(err), resp);
}

/* ---- request parsing ---------------------------------------------------- */

/* The media type of the request, lowercased, without parameters. */
static void front_media_type(struct pb_req *r, char *out, size_t outlen)
{
	const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_TYPE);
	size_t n = 0;

	out[0] = '\0';
	if (!ct)
		return;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	for (; ct[n] && ct[n] != ';' && ct[n] != ' ' && ct[n] != '\t' && n + 1 < outlen; n++)
		out[n] = (char)(ct[n] >= 'A' && ct[n] <= 'Z' ? ct[n] + 32 : ct[n]);
	out[n] = '\0';
}

/* Query parameters the API reads, collected in one pass. */
struct front_query {
	const char *after, *wait, *max, *route, *callback;
	int has_after, has_wait, has_max, has_route, has_callback;
	int dup;                        /* a parameter given twice */
	const char *protocols[PB_MAX_PROTOCOLS + 1];
	size_t nprotocols;
};

/* MHD iterator over query arguments. */
static enum MHD_Result front_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				       const char *value)
{
	struct front_query *q = cls;
	const char **slot = NULL;
	int *has = NULL;

	if (strcmp(key, "after") == 0) {
		slot = &q->after;
		has = &q->has_after;
	} else if (strcmp(key, "wait") == 0) {
		slot = &q->wait;
		has = &q->has_wait;
	} else if (strcmp(key, "max") == 0) {
		slot = &q->max;
		has = &q->has_max;
	} else if (strcmp(key, "route") == 0) {
		slot = &q->route;
		has = &q->has_route;
	} else if (strcmp(key, "callback") == 0) {
		slot = &q->callback;
		has = &q->has_callback;
	} else if (strcmp(key, "protocol") == 0) {
		if (q->nprotocols <= PB_MAX_PROTOCOLS)
			q->protocols[q->nprotocols++] = value ? value : "";
		return MHD_YES;
	}
	if (!slot)
		return MHD_YES;
	if (*has)
		q->dup = 1;
	*has = 1;
	*slot = value ? value : "";
	return MHD_YES;
}

/* Parse an optional API number from the query. 0 (value or dflt) or
 * PB_EBADREQ. */
static int front_number(int has, const char *s, uint64_t dflt, uint64_t *out)
{
	if (!has) {
		*out = dflt;
		return 0;
	}
	return pb_parse_uint53(s, strlen(s), out);
}

/* ---- endpoints ---------------------------------------------------------- */

/* Core answer to a create. */
static void front_created(void *arg, int err, const char *id, const char *protocol)
{
	struct pb_req *r = arg;
	const struct pb_config *cfg = r->f->cfg;
	struct MHD_Response *resp;
	struct pb_buf b;
	char loc[64];
	int e;

	if (err) {
		front_error(r, err, NULL);
		return;
	}
	memcpy(r->id, id, PB_ID_LEN);   /* for the logs (first 6 characters) */
	pb_buf_init(&b, 0);
	e = pb_buf_puts(&b, "{\"session\":");
	e = e ? e : pb_json_put_string(&b, id, strlen(id));
	e = e ? e : pb_buf_puts(&b, ",\"protocol\":");
	e = e ? e : protocol ? pb_json_put_string(&b, protocol, strlen(protocol)) :
			       pb_buf_puts(&b, "null");
	e = e ? e : pb_buf_printf(&b, ",\"wait_max\":%u,\"idle_timeout\":%u,"
				  "\"max_message_bytes\":%zu}",
				  cfg->wait_max, cfg->idle_timeout, cfg->max_message_bytes);
	if (e) {
		front_json_built(r, 500, &b, e);
		return;
	}
	resp = front_response(r, &b, "application/json; charset=utf-8");
	snprintf(loc, sizeof(loc), "/v1/sessions/%s", id);
	if (resp)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, loc);
	front_set_response(r, 201, resp);
}

/* Every value of one request header, joined as HTTP joins a repeated field. */
struct front_hdr_join {
	const char *name;
	const char *sep;        /* ", ", or "; " for Cookie */
	struct pb_buf *buf;
	int found;
	int err;
};

/* MHD header iterator: append the values of j->name to j->buf. */
static enum MHD_Result front_hdr_collect(void *cls, enum MHD_ValueKind kind, const char *key,
					 const char *value)
{
	struct front_hdr_join *j = cls;

	(void)kind;
	if (j->err || strcasecmp(key, j->name) != 0)
		return MHD_YES;
	if (j->found)
		j->err = pb_buf_puts(j->buf, j->sep);
	if (!j->err && value)
		j->err = pb_buf_puts(j->buf, value);
	j->found = 1;
	return MHD_YES;
}

/* The client's address as text ("127.0.0.1", "::1"), or "" if unknown. */
static void front_client_address(struct pb_req *r, char *out, size_t outlen)
{
	const union MHD_ConnectionInfo *ci;
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;

	out[0] = '\0';
	if (!r->conn) {
		/* Handed off: the copy made then, if any. */
		snprintf(out, outlen, "%s", r->addr ? r->addr : "");
		return;
	}
	ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (!ci || !ci->client_addr)
		return;
	if (ci->client_addr->sa_family == AF_INET) {
		memcpy(&s4, ci->client_addr, sizeof(s4));
		inet_ntop(AF_INET, &s4.sin_addr, out, (socklen_t)outlen);
	} else if (ci->client_addr->sa_family == AF_INET6) {
		memcpy(&s6, ci->client_addr, sizeof(s6));
		inet_ntop(AF_INET6, &s6.sin6_addr, out, (socklen_t)outlen);
	}
}

/* Gather a create's headers for the upstream handshake: the configured
 * ones the client sent, and X-Forwarded-For with the client's address
 * appended to the client's own value. The values live in buf. 0,
 * PB_EBADREQ with *why (a value with CR, LF or another control
 * character: it must never reach the upstream), or PB_ENOMEM. */
static int front_forward_headers(struct pb_req *r, struct pb_headers *fh,
				 struct pb_buf *buf, const char **why)
{
	const struct pb_config *cfg = r->f->cfg;
	size_t off[PB_MAX_HEADERS];
	struct front_hdr_join j = { .buf = buf };
	char addr[INET6_ADDRSTRLEN];

	fh->n = 0;
	for (size_t i = 0; i <= cfg->nforward_headers; i++) {
		int xff = i == cfg->nforward_headers;
		size_t start = buf->len;

		j.name = xff ? "X-Forwarded-For" : cfg->forward_headers[i];
		j.sep = strcasecmp(j.name, "Cookie") == 0 ? "; " : ", ";
		j.found = 0;
		MHD_get_connection_values(r->conn, MHD_HEADER_KIND, front_hdr_collect, &j);
		if (!j.err && buf->len > start &&
		    !pb_header_value_valid(buf->data + start, buf->len - start)) {
			*why = "a forwarded request header holds a control character";
			return PB_EBADREQ;
		}
		if (xff) {
			front_client_address(r, addr, sizeof(addr));
			if (addr[0] && !j.err && buf->len > start)
				j.err = pb_buf_puts(buf, ", ");
			if (addr[0] && !j.err)
				j.err = pb_buf_puts(buf, addr);
			j.found = buf->len > start;
		}
		if (!j.err && j.found)
			j.err = pb_buf_append(buf, "", 1);
		if (j.err)
			return j.err;
		if (!j.found)
			continue;
		fh->name[fh->n] = j.name;
		off[fh->n++] = start;
	}
	/* Only now: the buffer no longer moves. */
	for (size_t i = 0; i < fh->n; i++)
		fh->value[i] = buf->data + off[i];
	return 0;
}

/* POST /v1/sessions: JSON, form, or query string with an empty body. */
static void front_create(struct pb_req *r)
{
	struct pb_create_req cr = { 0 };
	struct pb_headers fh;
	struct front_query q = { 0 };
	struct pb_buf fhbuf;
	const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
	const char *why = NULL;
	char mt[64], addr[INET6_ADDRSTRLEN];
	int err = 0;

	front_client_address(r, addr, sizeof(addr));

	if (r->body.len == 0) {
		MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, front_query_arg, &q);
		if (!q.has_route) {
			front_error(r, PB_EBADREQ, "a route is required (JSON, form or ?route=)");
			return;
		}
		if (q.dup) {
			front_error(r, PB_EBADREQ, "route is given twice");
			return;
		}
		err = pb_create_req_set_route(&cr, q.route, strlen(q.route), &why);
		for (size_t i = 0; !err && i < q.nprotocols; i++)
			err = pb_create_req_add_protocol(&cr, q.protocols[i], strlen(q.protocols[i]),
							 &why);
	} else {
		front_media_type(r, mt, sizeof(mt));
		if (strcmp(mt, "application/json") == 0)
			err = pb_codec_parse_create_json(r->body.data, r->body.len, &cr, &why);
		else if (strcmp(mt, "application/x-www-form-urlencoded") == 0)
			err = pb_codec_parse_create_form(r->body.data, r->body.len, &cr, &why);
		else
			err = PB_EMEDIA;
	}
	pb_buf_init(&fhbuf, 65536);
	if (!err && origin && !pb_header_value_valid(origin, strlen(origin))) {
		/* It goes on the upstream handshake too. */
		why = "the Origin header holds a control character";
		err = PB_EBADREQ;
	}
	if (!err)
		err = front_forward_headers(r, &fh, &fhbuf, &why);
	if (err) {
		pb_create_req_free(&cr);
		pb_buf_free(&fhbuf);
		front_error(r, err, why);
		return;
	}
	r->in_core = 1;
	pb_core_create(r->f->core, &cr, addr, origin, &fh, front_created, r);
	pb_create_req_free(&cr);
	pb_buf_free(&fhbuf);
}

/* Core answer to a poll. */
static void front_polled(void *arg, int err, const struct pb_core_batch *b)
{
	struct pb_req *r = arg;
	struct pb_buf out;

	if (err) {
		front_error(r, err, err == PB_EBADREQ ?
			    "after is beyond the last message handed out" : NULL);
		return;
	}
	if (!b->n && !b->close.closed && front_empty_shareable(r)) {
		front_set_empty(r);
		return;
	}
	pb_buf_init(&out, 0);
	front_json_built(r, 200, &out, pb_codec_encode_batch(&out, b->msgs, b->n, &b->close));
}

/* GET /v1/sessions/<id>/messages?after=&wait=&max= */
static void front_poll(struct pb_req *r)
{
	const struct pb_config *cfg = r->f->cfg;
	struct front_query q = { 0 };
	uint64_t after, wait, max;

	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, front_query_arg, &q);
	if (q.has_callback) {
		/* Checked first, and refused as plain JSON: a bad callback
		 * cannot be wrapped. */
		if (!cfg->jsonp) {
			front_error(r, PB_EBADREQ, "JSONP is not enabled on this bridge (--jsonp)");
			return;
		}
		if (!pb_jsonp_callback_valid(q.callback, strlen(q.callback))) {
			front_error(r, PB_EBADREQ, "callback must be a JavaScript identifier path");
			return;
		}
		r->jsonp = strdup(q.callback);
		if (!r->jsonp) {
			front_error(r, PB_ENOMEM, NULL);
			return;
		}
	}
	if (r->early_err) {
		/* A malformed id: wrapped like every other JSONP error. */
		front_error(r, r->early_err, r->early_msg);
		return;
	}
	if (q.dup) {
		front_error(r, PB_EBADREQ, "a query parameter is given twice");
		return;
	}
	if (front_number(q.has_after, q.after, 0, &after)) {
		front_error(r, PB_EBADREQ, "after must be a whole number");
		return;
	}
	if (front_number(q.has_wait, q.wait, 0, &wait)) {
		front_error(r, PB_EBADREQ, "wait must be a whole number of seconds");
		return;
	}
	if (front_number(q.has_max, q.max, cfg->max_batch, &max) || max == 0) {
		front_error(r, PB_EBADREQ, "max must be a whole number of at least 1");
		return;
	}
	r->in_core = 1;
	r->poll_late = 1;
	r->wait = wait > cfg->wait_max ? cfg->wait_max : (unsigned)wait;
	pb_core_poll(r->f->core, r->id, after, r->wait,
		     max > cfg->max_batch ? cfg->max_batch : (size_t)max, front_polled, r);
}

/* ---- the doors' request API (front_req.h) ------------------------------- */

struct MHD_Connection *pb_req_conn(struct pb_req *r)
{
	return r->conn;
}

const char *pb_req_header(struct pb_req *r, const char *name)
{
	if (r->conn)
		return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
	if (strcasecmp(name, "Origin") == 0)
		return r->origin_raw;
	if (strcasecmp(name, "Cookie") == 0)
		return r->cookie;
	if (strcasecmp(name, "Access-Control-Request-Headers") == 0)
		return r->acrh;
	return NULL;
}

void pb_req_wait_outside(struct pb_req *r, int keep)
{
	r->wait_outside = 1;
	r->keep = keep;
}

void pb_req_wait_outside_poll(struct pb_req *r, int keep)
{
	pb_req_wait_outside(r, keep);
	r->poll_late = 1;
}

struct pb_core *pb_req_core(struct pb_req *r)
{
	return r->f->core;
}

const struct pb_config *pb_req_config(struct pb_req *r)
{
	return r->f->cfg;
}

const struct pb_route *pb_req_route(struct pb_req *r)
{
	/* By name in the live table: a reload may have replaced it since. */
	return r->route_name ? pb_config_route(r->f->cfg, r->route_name) : NULL;
}

const char *pb_req_method(struct pb_req *r)
{
	return r->method ? r->method : "";
}

const char *pb_req_path(struct pb_req *r)
{
	return r->url ? r->url : "";
}

const char *pb_req_subpath(struct pb_req *r)
{
	const char *p = pb_req_path(r);

	return r->sub_off <= strlen(p) ? p + r->sub_off : "";
}

const char *pb_req_body(struct pb_req *r, size_t *len)
{
	*len = r->body.len;
	return r->body.len ? r->body.data : NULL;
}

int pb_req_early_error(struct pb_req *r, const char **msg)
{
	if (msg)
		*msg = r->early_err ? r->early_msg : NULL;
	return r->early_err;
}

const char *pb_req_origin(struct pb_req *r)
{
	return r->origin;
}

void pb_req_client_address(struct pb_req *r, char *out, size_t outlen)
{
	if (!outlen)
		return;
	front_client_address(r, out, outlen);   /* the kept copy once handed off */
}

int pb_req_forward_headers(struct pb_req *r, struct pb_headers *fh, struct pb_buf *buf,
			   const char **why)
{
	const char *p = r->fwd;
	size_t off[PB_MAX_HEADERS];

	if (r->conn)
		return front_forward_headers(r, fh, buf, why);
	/* Handed off (PB_KEEP_CREATE): what front_keep_forward kept. */
	fh->n = 0;
	for (size_t i = 0; p && i < r->fwd_n && i < PB_MAX_HEADERS; i++) {
		size_t nlen = strlen(p), vlen = strlen(p + nlen + 1);

		fh->name[fh->n] = p;    /* in r->fwd, which outlives the call */
		off[fh->n++] = buf->len;
		if (pb_buf_append(buf, p + nlen + 1, vlen + 1))
			return PB_ENOMEM;
		p += nlen + 1 + vlen + 1;
	}
	for (size_t i = 0; i < fh->n; i++)
		fh->value[i] = buf->data + off[i];
	return 0;
}

/* PB_KEEP_CREATE: keep the forwarded headers (front_forward_headers) for a
 * create after r's connection has left libmicrohttpd. 0, or -1 (without
 * memory, or headers a create would refuse: r then stays). */
static int front_keep_forward(struct pb_req *r)
{
	struct pb_headers fh;
	struct pb_buf b, out;
	const char *why = NULL;
	size_t len;

	pb_buf_init(&b, 65536);
	pb_buf_init(&out, 0);
	if (front_forward_headers(r, &fh, &b, &why)) {
		pb_buf_free(&b);
		return -1;
	}
	for (size_t i = 0; i < fh.n; i++)
		if (pb_buf_append(&out, fh.name[i], strlen(fh.name[i]) + 1) ||
		    pb_buf_append(&out, fh.value[i], strlen(fh.value[i]) + 1)) {
			pb_buf_free(&b);
			pb_buf_free(&out);
			return -1;
		}
	pb_buf_free(&b);
	r->fwd_n = fh.n;
	r->fwd = fh.n ? pb_buf_steal(&out, &len) : NULL;
	pb_buf_free(&out);
	return fh.n && !r->fwd ? -1 : 0;
}

void pb_req_set_id(struct pb_req *r, const char *id)
{
	snprintf(r->id, sizeof(r->id), "%s", id ? id : "");
}

void *pb_req_door_state(struct pb_req *r)
{
	return r->door_state;
}

void pb_req_set_door_state(struct pb_req *r, void *p, void (*free_fn)(void *))
{
	if (r->door_free && r->door_state != p)
		r->door_free(r->door_state);
	r->door_state = p;
	r->door_free = free_fn;
}

void pb_req_core_begin(struct pb_req *r)
{
	r->in_core = 1;
}

int pb_req_gone(struct pb_req *r)
{
	if (!r->orphan)
		return 0;
	r->in_core = 0;
	front_req_free(r);
	return 1;
}

struct MHD_Response *pb_req_response(struct pb_req *r, struct pb_buf *body, const char *ctype)
{
	return front_response(r, body, ctype);
}

void pb_req_set_compress(struct pb_req *r, int on)
{
	r->gz_vary = r->gz_ok = 0;
	if (on)
		front_gzip_decide(r);
}

void pb_req_finish(struct pb_req *r, unsigned status, struct MHD_Response *resp)
{
	if (!resp) {
		/* A bare 500; with no memory even for that, the connection
		 * closes. */
		status = 500;
		resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		r->resp_len = 0;
	}
	front_set_response(r, status, resp);
}

/* ---- streams ------------------------------------------------------------- */

static void front_stream_more(void *arg, int err, const struct pb_core_batch *b);

/* One core read for the stream r. */
static void front_stream_call(struct pb_req *r, uint64_t after, uint64_t from, unsigned wait,
			      int first, unsigned flags, pb_core_poll_cb cb)
{
	r->in_core = 1;
	pb_core_stream_read_flags(r->f->core, r->id, after, from, wait, r->st_token, first, flags,
				  cb, r);
}

/* Hand a batch to the stream's encoder. The stream ends after a close, a
 * release, an encoding failure, or when the encoder says so. */
static void front_stream_batch(struct pb_req *r, const struct pb_core_batch *b)
{
	int end = 0;

	if (b->n)
		r->st_from = b->msgs[b->n - 1]->seq;
	if (r->st_ops->batch(r, &r->st, b, &end))
		end = 1;
	if (end || b->close.closed || b->released)
		r->st_done = 1;
}

/* Ask the core for what follows on the stream (a long wait: the heartbeat). */
static void front_stream_read(struct pb_req *r)
{
	unsigned hb = r->st_heartbeat ? r->st_heartbeat : r->f->cfg->sse_heartbeat;

	r->st_reading = 1;
	front_stream_call(r, 0, r->st_from, hb, 0, 0, front_stream_more);
}

/* Let a stream suspended in its content reader run again (on the next
 * MHD_run(), never from inside this call). */
static void front_stream_wake(struct pb_req *r)
{
	if (!r->st_waiting)
		return;
	r->st_waiting = 0;
	MHD_resume_connection(r->conn);
	front_kick(r->f);
}

/* libmicrohttpd wants more of the stream: hand over what is pending, or
 * suspend the connection until the core has more. Nothing is held back:
 * what a read encoded goes out as soon as libmicrohttpd can write it. */
static ssize_t front_stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct pb_req *r = cls;
	size_t n;

	(void)pos;
	if (r->st_off == r->st.len && !r->st_done && !r->st_reading)
		front_stream_read(r);   /* may answer at once */
	if (front_gzip_stream(r, &r->st, r->st_done))
		return MHD_CONTENT_READER_END_WITH_ERROR;
	if (r->st_off < r->st.len) {
		n = r->st.len - r->st_off;
		if (n > max)
			n = max;
		memcpy(buf, r->st.data + r->st_off, n);
		r->st_off += n;
		if (r->st_off == r->st.len)
			r->st.len = r->st_off = r->gz_len = 0;
		return (ssize_t)n;
	}
	if (r->st_done)
		return MHD_CONTENT_READER_END_OF_STREAM;
	r->st_waiting = 1;
	MHD_suspend_connection(r->conn);
	if (!r->st_reading)
		/* The core answered at once with nothing to write: read again
		 * on the next run rather than wait for a callback that has
		 * already come. */
		front_stream_wake(r);
	return 0;
}

/* Core answer to a later stream read. */
static void front_stream_more(void *arg, int err, const struct pb_core_batch *b)
{
	struct pb_req *r = arg;

	r->st_reading = 0;
	r->in_core = 0;
	if (r->orphan) {
		front_req_free(r);
		return;
	}
	if (err)
		r->st_done = 1;
	else
		front_stream_batch(r, b);
	front_stream_wake(r);
}

/* Core answer to the stream's first read: an error answers instead of the
 * stream (the door's err_cb, or the /v1 error JSON); otherwise the stream
 * starts with the prelude and what the first read found. */
static void front_stream_first(void *arg, int err, const struct pb_core_batch *b)
{
	struct pb_req *r = arg;
	struct MHD_Response *resp;

	r->in_core = 0;
	if (r->orphan) {
		front_req_free(r);
		return;
	}
	if (err) {
		pb_buf_free(&r->st);
		r->st_ops = NULL;
		if (r->st_err)
			r->st_err(r, err);
		else
			front_error(r, err, NULL);
		return;
	}
	if (r->st_after == PB_AFTER_HANDED)
		/* Everything handed out before is acknowledged: the stream
		 * goes on from what this read found. */
		r->st_from = b->n ? b->msgs[0]->seq - 1 : b->last_seq;
	else if (r->st_from > b->last_seq)
		r->st_from = b->last_seq;
	r->st_acked = r->st_from;
	if (b->n || b->close.closed)
		front_stream_batch(r, b);
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, front_stream_reader,
						 r, NULL);
	if (resp) {
		r->resp_len = -1;
		front_common_headers(r, resp, r->st_ctype);
		if (r->gz_ok)
			r->gz = pb_gzip_new();  /* NULL: the stream goes uncompressed */
		front_gzip_headers(r, resp, r->gz != NULL);
		MHD_add_response_header(resp, "X-Accel-Buffering", "no");
		if (r->st_ops->headers)
			r->st_ops->headers(r, resp);
		r->st_open = 1;
		pb_metrics_gauge(PB_G_STREAMS_OPEN, 1);
	}
	front_set_response(r, 200, resp);
}

int pb_req_stream(struct pb_req *r, const char *id, uint64_t after, unsigned heartbeat,
		  unsigned flags, struct pb_buf *prelude, const char *ctype,
		  const struct pb_stream_ops *ops, void (*err_cb)(struct pb_req *r, int err))
{
	size_t idlen = id ? strlen(id) : 0;

	if (!idlen || idlen > PB_ID_LEN || !ops || !ops->batch || !ctype) {
		pb_buf_free(prelude);
		return PB_EBADREQ;
	}
	free(r->st_ctype);      /* a door may start again after err_cb */
	r->st_ctype = strdup(ctype);
	if (!r->st_ctype) {
		pb_buf_free(prelude);
		return PB_ENOMEM;
	}
	memcpy(r->id, id, idlen + 1);
	pb_buf_free(&r->st);
	r->st = *prelude;       /* taken */
	pb_buf_init(prelude, 0);
	r->st_off = 0;
	r->st_ops = ops;
	r->st_err = err_cb;
	r->st_heartbeat = heartbeat;
	r->st_after = after;
	r->st_from = after;     /* PB_AFTER_HANDED: the same as after */
	r->st_token = ++r->f->streams;
	/* The first read does not wait: the answer's head goes out now. */
	front_stream_call(r, after, r->st_from, 0, 1, flags, front_stream_first);
	return 0;
}

/* ---- Server-Sent Events (/v1 events) -------------------------------------- */

/* How long a client waits before reopening a stream that ended because its
 * window filled (the SSE retry field, milliseconds). */
#define PB_SSE_WINDOW_RETRY_MS "100"

/* Unacknowledged messages one stream may carry before it ends: half the
 * queue, so the upstream keeps flowing while the client reconnects. */
static uint64_t front_sse_window(const struct pb_config *cfg)
{
	return cfg->queue_max > 1 ? cfg->queue_max / 2 : 1;
}

/* The /v1 encoding of a batch: one event per message, the close event
 * (which ends the stream), or a heartbeat comment when there is nothing. */
static int front_sse_batch(struct pb_req *r, struct pb_buf *out, const struct pb_core_batch *b,
			   int *end)
{
	int e = 0;

	for (size_t i = 0; i < b->n && !e; i++)
		e = pb_codec_put_sse_message(out, b->msgs[i]);
	if (!e && b->close.closed) {
		e = pb_codec_put_sse_close(out, &b->close);
		*end = 1;
	} else if (!e && r->st_from - r->st_acked >= front_sse_window(r->f->cfg)) {
		/* A stream never acknowledges: end it once it carries half the
		 * queue unacknowledged, with a short reconnection delay, so the
		 * client comes back with Last-Event-ID (which acknowledges)
		 * before the upstream has to pause. */
		e = pb_buf_puts(out, "retry: " PB_SSE_WINDOW_RETRY_MS "\n: window full, "
				"reconnect with Last-Event-ID\n\n");
		*end = 1;
	} else if (!e && b->released) {
		/* A newer poll or stream took over, or the instance drains. */
		*end = 1;
	} else if (!e && !b->n) {
		e = pb_buf_puts(out, ":\n\n");
	}
	return e;
}

static const struct pb_stream_ops front_sse_ops = { front_sse_batch, NULL };

/* The /v1 answer when the stream's first read fails. */
static void front_sse_error(struct pb_req *r, int err)
{
	front_error(r, err, err == PB_EBADREQ ?
		    "the cursor is beyond the last message handed out" : NULL);
}

/* GET /v1/sessions/<id>/events: the cursor is Last-Event-ID, else ?after=,
 * else 0; it acknowledges like a poll's. */
static void front_events(struct pb_req *r)
{
	const char *last = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
	struct front_query q = { 0 };
	struct pb_buf prelude;
	uint64_t cursor;
	char id[PB_ID_LEN + 1];
	int e;

	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, front_query_arg, &q);
	if (q.dup) {
		front_error(r, PB_EBADREQ, "a query parameter is given twice");
		return;
	}
	if (last ? pb_parse_uint53(last, strlen(last), &cursor) :
		   front_number(q.has_after, q.after, 0, &cursor)) {
		front_error(r, PB_EBADREQ, "the cursor (Last-Event-ID or after) must be a whole number");
		return;
	}
	pb_buf_init(&prelude, 0);
	if (pb_buf_puts(&prelude, "retry: 2000\n\n")) {
		pb_buf_free(&prelude);
		front_error(r, PB_ENOMEM, NULL);
		return;
	}
	memcpy(id, r->id, sizeof(id));
	e = pb_req_stream(r, id, cursor, 0, 0, &prelude, "text/event-stream; charset=utf-8",
			  &front_sse_ops, front_sse_error);
	if (e)
		front_error(r, e, NULL);
}

/* OPTIONS: a CORS preflight. Allowed origins learn what they may send;
 * others get no CORS headers (the browser then refuses). */
static void front_preflight(struct pb_req *r)
{
	struct pb_buf b;
	struct MHD_Response *resp;

	pb_buf_init(&b, 0);
	resp = front_response(r, &b, NULL);
	if (resp && r->origin) {
		MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, DELETE");
		MHD_add_response_header(resp, "Access-Control-Allow-Headers",
					"Content-Type, X-Send-Seq, Last-Event-ID, Authorization");
		MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
	}
	front_set_response(r, 204, resp);
}

/* Core answer to a send. */
static void front_sent(void *arg, int err, const struct pb_core_send_result *res)
{
	struct pb_req *r = arg;
	struct pb_buf b;
	int e;

	pb_buf_init(&b, 0);
	if (err == PB_ESEQGAP && res) {
		e = pb_buf_puts(&b, "{\"error\":\"send_seq_gap\",\"message\":");
		e = e ? e : pb_json_put_string(&b, "the send sequence number skips ahead", 36);
		e = e ? e : pb_buf_printf(&b, ",\"expected\":%llu}",
					  (unsigned long long)res->expected);
		front_json_built(r, 409, &b, e);
		return;
	}
	if (err) {
		front_error(r, err, NULL);
		return;
	}
	e = pb_buf_printf(&b, "{\"accepted\":%zu", res->accepted);
	if (!e && r->send_seq)
		e = pb_buf_printf(&b, ",\"send_seq\":%llu", (unsigned long long)res->send_seq);
	e = e ? e : pb_buf_puts(&b, "}");
	front_json_built(r, 200, &b, e);
}

/* POST /v1/sessions/<id>/messages in any of the four body forms. */
static void front_send(struct pb_req *r)
{
	const struct pb_config *cfg = r->f->cfg;
	struct pb_send_req sr = { 0 };
	const char *hseq = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Send-Seq");
	const char *why = NULL;
	uint64_t seq = 0;
	char mt[64];
	int err = 0;

	if (hseq && (pb_parse_uint53(hseq, strlen(hseq), &seq) || seq == 0)) {
		front_error(r, PB_EBADREQ, "X-Send-Seq must be a whole number of at least 1");
		return;
	}
	front_media_type(r, mt, sizeof(mt));
	if (strcmp(mt, "text/plain") == 0 || strcmp(mt, "application/octet-stream") == 0) {
		int text = mt[0] == 't';

		if (r->body.len > cfg->max_message_bytes)
			err = PB_ETOOBIG;
		else if (text && !pb_utf8_valid(r->body.data, r->body.len))
			err = PB_EBADREQ, why = "text must be valid UTF-8";
		else if (!(sr.msgs = malloc(sizeof(*sr.msgs))))
			err = PB_ENOMEM;
		else if (!(sr.msgs[0] = pb_msg_new(text ? PB_MSG_TEXT : PB_MSG_BINARY,
						   r->body.data, r->body.len)))
			err = PB_ENOMEM;
		else
			sr.n = 1;
	} else if (strcmp(mt, "application/json") == 0) {
		err = pb_codec_parse_send_json(r->body.data, r->body.len, cfg->max_message_bytes,
					       cfg->queue_max, &sr, &why);
	} else if (strcmp(mt, "application/x-www-form-urlencoded") == 0) {
		err = pb_codec_parse_send_form(r->body.data, r->body.len, cfg->max_message_bytes,
					       cfg->queue_max, &sr, &why);
	} else {
		err = PB_EMEDIA;
		why = "send text/plain, application/octet-stream, application/json or a form";
	}
	if (!err && hseq && sr.seq && sr.seq != seq)
		err = PB_EBADREQ, why = "X-Send-Seq and the JSON seq disagree";
	if (err) {
		pb_send_req_free(&sr);
		front_error(r, err, why);
		return;
	}
	if (hseq)
		sr.seq = seq;
	r->send_seq = sr.seq;
	r->in_core = 1;
	pb_core_send(r->f->core, r->id, &sr, front_sent, r);
	pb_send_req_free(&sr);
}

/* Core answer to a delete. */
static void front_deleted(void *arg, int err)
{
	struct pb_req *r = arg;
	struct pb_buf b;

	if (err) {
		front_error(r, err, NULL);
		return;
	}
	pb_buf_init(&b, 0);
	front_set_response(r, 204, front_response(r, &b, NULL));
}

/* GET /metrics: the Prometheus text exposition. */
static void front_metrics(struct pb_req *r)
{
	struct pb_buf b;

	pb_buf_init(&b, 0);
	if (pb_metrics_render(&b)) {
		pb_buf_free(&b);
		front_error(r, PB_ENOMEM, NULL);
		return;
	}
	front_set_response(r, 200, front_response(r, &b, "text/plain; version=0.0.4; charset=utf-8"));
}

/* GET /livez: the loop answers, so the process serves (draining or not,
 * store or not). */
static void front_livez(struct pb_req *r)
{
	struct pb_buf b;

	pb_buf_init(&b, 0);
	front_json_built(r, 200, &b, pb_buf_puts(&b, "{\"status\":\"ok\"}"));
}

/* GET /readyz (and its alias /healthz): 200 only while this instance takes
 * new work, i.e. it is not draining and its store is usable. */
static void front_readyz(struct pb_req *r)
{
	struct pb_buf b;
	const char *body = "{\"status\":\"ok\"}";
	unsigned status = 503;

	if (r->f->draining)
		body = "{\"status\":\"unavailable\",\"reason\":\"draining\"}";
	else if (!pb_core_healthy(r->f->core))
		/* "store" kept from /healthz's first answer. */
		body = "{\"status\":\"unavailable\",\"reason\":\"store\",\"store\":\"unreachable\"}";
	else
		status = 200;
	pb_buf_init(&b, 0);
	front_json_built(r, status, &b, pb_buf_puts(&b, body));
}

/* The operations endpoint at url (/healthz, /livez, /readyz, /metrics),
 * or EP_NONE. */
static enum pb_endpoint front_ops_endpoint(const char *url)
{
	return strcmp(url, "/healthz") == 0 ? EP_HEALTHZ :
	       strcmp(url, "/livez") == 0 ? EP_LIVEZ :
	       strcmp(url, "/readyz") == 0 ? EP_READYZ :
	       strcmp(url, "/metrics") == 0 ? EP_METRICS : EP_NONE;
}

/* 1 if url comes in by a route's door: the endpoint, the route (by name)
 * and where the subpath starts are set. An engineio= PATH takes the URL
 * path PATH or PATH without its final '/'; a sockjs= PREFIX takes PREFIX
 * and everything under PREFIX + "/". */
static int front_door(struct pb_req *r, const char *url)
{
	const struct pb_config *cfg = r->f->cfg;
	size_t ulen = strlen(url);

	for (size_t i = 0; i < cfg->nroutes; i++) {
		const struct pb_route *rt = &cfg->routes[i];
		const char *door = rt->engineio ? rt->engineio : rt->sockjs;
		size_t n = door ? strlen(door) : 0;

		if (!n)
			continue;
		if (rt->engineio) {
			if (!(ulen == n && memcmp(url, door, n) == 0) &&
			    !(n > 1 && door[n - 1] == '/' && ulen == n - 1 &&
			      memcmp(url, door, n - 1) == 0))
				continue;
			r->ep = EP_ENGINEIO;
			r->sub_off = ulen;
		} else {
			if (strncmp(url, door, n) != 0 || (url[n] != '\0' && url[n] != '/'))
				continue;
			r->ep = EP_SOCKJS;
			r->sub_off = n;
		}
		r->route_name = strdup(rt->name);
		if (!r->route_name)
			r->early_err = PB_ENOMEM;
		return 1;
	}
	return 0;
}

/* Map the path and method onto an endpoint; errors go to early_err. */
static void front_route(struct pb_req *r, const char *url, const char *method)
{
	static const char prefix[] = "/v1/sessions";
	const size_t plen = sizeof(prefix) - 1;
	const char *rest;
	size_t idlen;
	int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	int post = strcmp(method, "POST") == 0;
	int options = strcmp(method, "OPTIONS") == 0;
	enum pb_endpoint ops = front_ops_endpoint(url);

	/* With --admin-listen the operations endpoints live there only, and
	 * the admin listener serves nothing else. */
	if (ops != EP_NONE && r->f->cfg->admin_host && !r->f->admin) {
		r->early_err = PB_ENOTFOUND;
		return;
	}
	if (ops != EP_NONE) {
		r->ep = options ? EP_PREFLIGHT : ops;
		if (!get && !options)
			r->early_err = PB_EMETHOD;
		return;
	}
	/* Doors answer every method themselves; never on the admin listener. */
	if (!r->f->admin && front_door(r, url))
		return;
	if (r->f->admin || strncmp(url, prefix, plen) != 0 ||
	    (url[plen] != '\0' && url[plen] != '/')) {
		r->early_err = PB_ENOTFOUND;
		return;
	}
	rest = url + plen;
	if (rest[0] == '\0' || (rest[0] == '/' && rest[1] == '\0')) {
		r->ep = options ? EP_PREFLIGHT : EP_CREATE;
		if (!post && !options)
			r->early_err = PB_EMETHOD;
		return;
	}
	rest++;
	/* The path is already percent-decoded, so an id may hold a '/': take
	 * the id as everything before the known suffix, and let the id check
	 * refuse it (API: a malformed id is an unknown session). */
	idlen = strlen(rest);
	if (idlen >= 9 && strcmp(rest + idlen - 9, "/messages") == 0) {
		idlen -= 9;
		r->ep = post ? EP_SEND : EP_POLL;
		if (!post && !get && !options)
			r->early_err = PB_EMETHOD;
	} else if (idlen >= 7 && strcmp(rest + idlen - 7, "/events") == 0) {
		idlen -= 7;
		r->ep = EP_EVENTS;
		if (!get && !options)
			r->early_err = PB_EMETHOD;
	} else if (!strchr(rest, '/')) {
		r->ep = EP_DELETE;
		if (strcmp(method, "DELETE") != 0 && !options)
			r->early_err = PB_EMETHOD;
	} else {
		r->early_err = PB_ENOTFOUND;
		return;
	}
	if (options) {
		r->ep = EP_PREFLIGHT;
		return;
	}
	if (!r->early_err) {
		/* An id of the wrong shape can never have been handed out. */
		if (!pb_session_id_valid(rest, idlen))
			r->early_err = PB_ENOSESSION;
		else
			memcpy(r->id, rest, PB_ID_LEN);
	}
}

/* 1 if r came in by a door. */
static int front_is_door(const struct pb_req *r)
{
	return r->ep == EP_ENGINEIO || r->ep == EP_SOCKJS;
}

/* Hand r to its door (early_err included: the door answers it). */
static void front_door_dispatch(struct pb_req *r)
{
	if (r->ep == EP_ENGINEIO)
		pb_engineio_handle(r);
	else
		pb_sockjs_handle(r);
}

/* Run the endpoint once the whole body is in. */
static void front_dispatch(struct pb_req *r)
{
	/* Polls (JSONP too), event streams and the doors' answers may be
	 * gzipped; a door can turn it off (pb_req_set_compress). */
	if (front_is_door(r) || r->ep == EP_POLL || r->ep == EP_EVENTS)
		front_gzip_decide(r);
	if (front_is_door(r)) {
		front_door_dispatch(r);
		return;
	}
	/* A poll's unknown-id answer waits for its ?callback= (JSONP). */
	if (r->early_err && !(r->ep == EP_POLL && r->early_err == PB_ENOSESSION)) {
		front_error(r, r->early_err, r->early_msg);
		return;
	}
	switch (r->ep) {
	case EP_HEALTHZ:
	case EP_READYZ:
		front_readyz(r);
		break;
	case EP_LIVEZ:
		front_livez(r);
		break;
	case EP_CREATE:
		front_create(r);
		break;
	case EP_POLL:
		front_poll(r);
		break;
	case EP_SEND:
		front_send(r);
		break;
	case EP_DELETE:
		r->in_core = 1;
		pb_core_delete(r->f->core, r->id, front_deleted, r);
		break;
	case EP_EVENTS:
		front_events(r);
		break;
	case EP_PREFLIGHT:
		front_preflight(r);
		break;
	case EP_METRICS:
		front_metrics(r);
		break;
	case EP_ENGINEIO:
	case EP_SOCKJS:
	case EP_NONE:
		front_error(r, PB_ENOTFOUND, NULL);
		break;
	}
}

/* The metrics label of an endpoint. */
static enum pb_endpoint_metric front_endpoint_metric(enum pb_endpoint ep)
{
	switch (ep) {
	case EP_CREATE:
		return PB_EPM_CREATE;
	case EP_POLL:
		return PB_EPM_POLL;
	case EP_SEND:
		return PB_EPM_SEND;
	case EP_DELETE:
		return PB_EPM_DELETE;
	case EP_EVENTS:
		return PB_EPM_EVENTS;
	case EP_HEALTHZ:
		return PB_EPM_HEALTHZ;
	case EP_METRICS:
		return PB_EPM_METRICS;
	case EP_LIVEZ:
		return PB_EPM_LIVEZ;
	case EP_READYZ:
		return PB_EPM_READYZ;
	case EP_ENGINEIO:
		return PB_EPM_ENGINEIO;
	case EP_SOCKJS:
		return PB_EPM_SOCKJS;
	default:
		return PB_EPM_OTHER;
	}
}

/* The request-duration histogram's kind of a request: a door's by what it
 * answered with (a stream or not). */
static enum pb_duration_kind front_duration_kind(const struct pb_req *r)
{
	if (front_is_door(r))
		return r->st_ops ? PB_DK_STREAM : PB_DK_OTHER;
	switch (r->ep) {
	case EP_CREATE:
		return PB_DK_CREATE;
	case EP_SEND:
		return PB_DK_SEND;
	case EP_POLL:
		return PB_DK_POLL;
	case EP_EVENTS:
		return PB_DK_STREAM;
	case EP_DELETE:
		return PB_DK_DELETE;
	default:
		return PB_DK_OTHER;
	}
}

/* Append s to out (NUL-terminated, at most cap bytes with the NUL) for a
 * quoted field of the combined log: bytes outside printable ASCII, '"' and
 * '\\' as \\xHH (nginx's escaping); a session id (id, PB_ID_LEN long) as
 * its first 6 characters and "...", since an id is a capability. */
static void front_log_field(char *out, size_t cap, const char *s, const char *id)
{
	size_t n = 0, idlen = id ? strlen(id) : 0;

	for (; s && *s && n + 10 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (idlen && strncmp(s, id, idlen) == 0) {
			n += (size_t)snprintf(out + n, cap - n, "%.6s...", id);
			s += idlen - 1;
		} else if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
			n += (size_t)snprintf(out + n, cap - n, "\\x%02X", c);
		} else {
			out[n++] = (char)c;
		}
	}
	out[n] = '\0';
}

/* Write the request's access log line in the combined log format:
 * HOST - USER [dd/Mon/yyyy:HH:MM:SS +0000] "METHOD PATH VERSION" STATUS BYTES
 * "REFERER" "USER-AGENT", with the session id's first 6 characters as USER
 * and the path without its query. */
static void front_log_combined(struct pb_req *r, const char *addr)
{
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
					    "Aug", "Sep", "Oct", "Nov", "Dec" };
	char method[32], path[512], version[32], ref[512], ua[512], bytes[24];
	const char *h;
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	front_log_field(method, sizeof(method), r->method, NULL);
	front_log_field(path, sizeof(path), r->url, r->id);
	front_log_field(version, sizeof(version), r->version, NULL);
	h = r->conn ? MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Referer") :
		      r->referer;
	front_log_field(ref, sizeof(ref), h ? h : "-", NULL);
	h = r->conn ? MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "User-Agent") :
		      r->user_agent;
	front_log_field(ua, sizeof(ua), h ? h : "-", NULL);
	if (r->resp_len < 0)
		snprintf(bytes, sizeof(bytes), "-");
	else
		snprintf(bytes, sizeof(bytes), "%lld",
			 r->method && !strcmp(r->method, "HEAD") ? 0 : r->resp_len);
	pb_log_access_raw("%s - %.6s [%02d/%s/%04d:%02d:%02d:%02d +0000] \"%s %s %s\" %u %s "
			  "\"%s\" \"%s\"", addr[0] ? addr : "-", r->id[0] ? r->id : "-",
			  tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
			  tm.tm_min, tm.tm_sec, method[0] ? method : "-", path[0] ? path : "-",
			  version[0] ? version : "HTTP/1.1", r->status, bytes, ref, ua);
}

/* Count r's answer (r->status) in the metrics and write its log lines. */
static void front_note_answer(struct pb_req *r)
{
	pb_metrics_http(front_endpoint_metric(r->ep), r->status);
	/* Headers in to answer queued: a waiting poll's wait and a stream's
	 * first read are included, a stream's later events are not. */
	pb_metrics_observe_kind(PB_H_HTTP_SECONDS, front_duration_kind(r),
				(double)(uv_hrtime() - r->started_ns) / 1e9);
	if (pb_log_enabled(PB_LOG_DEBUG) || pb_log_access_enabled()) {
		/* Sessions by the first 6 characters of their id: the id is a
		 * capability and never goes to a log whole. */
		static const char *const names[PB_EPM_COUNT] = {
			"create", "poll", "send", "delete", "events", "healthz", "metrics", "livez",
			"readyz", "engineio", "sockjs", "-"
		};
		const char *name = names[front_endpoint_metric(r->ep)];
		unsigned long long ms = uv_now(r->f->loop) - r->started_ms;
		char addr[INET6_ADDRSTRLEN];

		pb_log_debug("http %u %s %.6s %llums", r->status, name, r->id, ms);
		if (pb_log_access_enabled()) {
			front_client_address(r, addr, sizeof(addr));
			if (r->f->cfg->access_log_combined)
				front_log_combined(r, addr);
			else
				pb_log_access("%s %s %.6s %u %llums", addr[0] ? addr : "-", name,
					      r->id[0] ? r->id : "-", r->status, ms);
		}
	}
}

/* Queue the prepared response; MHD_NO closes the connection. */
static enum MHD_Result front_queue(struct pb_req *r)
{
	enum MHD_Result ret;

	if (r->resp_shared)
		r->resp = front_empty_answer(r);
	if (!r->resp)
		return MHD_NO;
	ret = MHD_queue_response(r->conn, r->status, r->resp);
	front_note_answer(r);
	front_resp_drop(r);
	return ret;
}

/* MHD iterator: add up the size of the request's header lines. */
static enum MHD_Result front_count_header(void *cls, enum MHD_ValueKind kind, const char *key,
					  const char *value)
{
	size_t *n = cls;

	*n += strlen(key) + (value ? strlen(value) : 0) + 4;
	return MHD_YES;
}

/* What one pass over a request's headers finds: the framing headers (RFC
 * 9112 section 6), the first Origin and Accept-Encoding, and the headers'
 * size. */
struct front_headers {
	const char *cl, *te;    /* the last Content-Length, Transfer-Encoding */
	int ncl, nte;           /* how many of each */
	const char *origin;     /* the first Origin, or NULL */
	const char *accept_encoding;    /* the first Accept-Encoding, or NULL */
	size_t bytes;           /* names and values, about as sent */
};

/* MHD header iterator: fill a struct front_headers. */
static enum MHD_Result front_scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
					 const char *value)
{
	struct front_headers *h = cls;

	(void)kind;
	h->bytes += strlen(key) + (value ? strlen(value) : 0) + 4;
	switch (key[0] | 0x20) {        /* the first letter, lower case */
	case 'c':
		if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
			h->ncl++;
			h->cl = value ? value : "";
		}
		break;
	case 't':
		if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
			h->nte++;
			h->te = value ? value : "";
		}
		break;
	case 'o':
		if (!h->origin && strcasecmp(key, MHD_HTTP_HEADER_ORIGIN) == 0)
			h->origin = value;
		break;
	case 'a':
		if (!h->accept_encoding &&
		    strcasecmp(key, MHD_HTTP_HEADER_ACCEPT_ENCODING) == 0)
			h->accept_encoding = value;
		break;
	}
	return MHD_YES;
}

/* The size of the request line and headers, about as sent, given the
 * headers' own (h->bytes). */
static size_t front_header_bytes(struct MHD_Connection *conn, const char *url,
				 const struct front_headers *h)
{
	size_t n = strlen(url) + 16 + h->bytes;

	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, front_count_header, &n);
	return n;
}

/* 1 if the request line's target held a raw NUL byte. libmicrohttpd
 * 0.9.75 ends the target in place one byte before the version it hands
 * the handler, so a target whose C string stops short of that held a NUL.
 * Only addresses are compared; an unrelated version pointer (farther than
 * the connection's memory pool) is ignored. */
static int front_raw_nul(const struct pb_front *f, const struct pb_conn *pc,
			 const char *version)
{
	uintptr_t v = (uintptr_t)version;

	return pc->uri_at && v > pc->uri_at + pc->uri_len + 1 &&
	       v - pc->uri_at <= f->cfg->max_header_bytes + FRONT_POOL_SLACK;
}

/* 1 if s[0..len) is "chunked", whatever the case. */
static int front_is_chunked(const char *s, size_t len)
{
	return len == 7 && strncasecmp(s, "chunked", 7) == 0;
}

/* Check that the request's body length is unambiguous (RFC 9112 section
 * 6.3): one Content-Length of digits only, or one Transfer-Encoding whose
 * only coding is chunked, never both. 0, or the status to answer (400, or
 * 501 for a coding other than chunked before a final chunked) with *why. */
static unsigned front_framing_check(const struct front_headers *h, const char *version,
				    const char **why)
{
	const char *p, *e, *last = NULL;
	size_t lastlen = 0, ncodings = 0;

	if (h->ncl > 1)
		return *why = "Content-Length is given more than once", 400;
	if (h->ncl && (!h->cl[0] || strspn(h->cl, "0123456789") != strlen(h->cl)))
		return *why = "Content-Length must be digits only", 400;
	if (!h->nte)
		return 0;
	if (h->nte > 1)
		return *why = "Transfer-Encoding is given more than once", 400;
	if (h->ncl)
		return *why = "Content-Length and Transfer-Encoding together", 400;
	if (strcmp(version, MHD_HTTP_VERSION_1_1) != 0)
		return *why = "Transfer-Encoding needs HTTP/1.1", 400;
	for (p = h->te; *p; p = *e ? e + 1 : e) {
		size_t n;

		while (*p == ' ' || *p == '\t')
			p++;
		e = strchr(p, ',');
		if (!e)
			e = p + strlen(p);
		n = (size_t)(e - p);
		while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (!n)
			continue;       /* an empty list element */
		if (ncodings++ && front_is_chunked(last, lastlen))
			return *why = "chunked must be the only and final transfer coding", 400;
		last = p;
		lastlen = n;
	}
	if (!last || !front_is_chunked(last, lastlen))
		return *why = "the final transfer coding must be chunked", 400;
	if (ncodings > 1)
		return *why = "only the chunked transfer coding is supported", 501;
	return 0;
}

/* Answer in the first handler call, before any body is read: the error
 * JSON for err (or, with status 501, not_implemented), optionally closing
 * the connection. The connection lingers so the client reads the answer. */
static enum MHD_Result front_answer_early(struct pb_req *r, int err, unsigned status,
					  const char *msg, int close_conn)
{
	struct pb_buf b;

	r->dispatched = 1;
	r->in_handler = 1;
	if (front_is_door(r)) {
		/* The door answers in its own format, at once (it must not
		 * start a core call: the body is not read). */
		r->early_err = err;
		r->early_msg = msg;
		front_door_dispatch(r);
		if (!r->resp && !r->in_core)
			front_error(r, err, msg);
	} else if (status == 501) {
		pb_buf_init(&b, 0);
		front_json_built(r, 501, &b, pb_codec_encode_error(&b, "not_implemented", msg));
	} else {
		front_error(r, err, msg);
	}
	r->in_handler = 0;
	if (r->resp && close_conn && !r->f->draining)
		MHD_add_response_header(r->resp, MHD_HTTP_HEADER_CONNECTION, "close");
	if (r->pc) {
		r->pc->phase = PH_BUSY;
		r->pc->linger = 1;
	}
	return front_queue(r);
}

/* ---- accepting connections ---------------------------------------------- */

/* The listening socket is read here rather than by libmicrohttpd
 * (MHD_USE_NO_LISTEN_SOCKET; each connection goes to it with
 * MHD_add_connection), so that --max-connections counts every client
 * connection: those libmicrohttpd holds and the sockets of waiting polls
 * that left it (--lean-long-polls). At the limit the listening socket is
 * not read until one closes, as libmicrohttpd would do. */
static void front_accept_cb(uv_poll_t *p, int status, int events);

/* Read the listening socket again if there is room (and it is open). */
static void front_accept_start(struct pb_front *f)
{
	if (f->accepting || f->accept_closed || f->stopping ||
	    f->nconns + f->nhanded >= f->limit)
		return;
	f->accepting = 1;
	uv_poll_start(&f->accept, UV_READABLE, front_accept_cb);
}

static void front_accept_stop(struct pb_front *f)
{
	if (!f->accepting)
		return;
	f->accepting = 0;
	uv_poll_stop(&f->accept);
}

/* The listening socket is readable: take what is there, up to the limit
 * (a few at a time, so that a flood of connections still lets the loop
 * serve the others). Out of descriptors, it waits for the next tick. */
static void front_accept_cb(uv_poll_t *p, int status, int events)
{
	struct pb_front *f = p->data;
	int took = 0;

	(void)events;
	if (status < 0)
		return;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		int fd;

		if (f->nconns + f->nhanded >= f->limit) {
			front_accept_stop(f);
			break;
		}
		fd = accept4(f->listen_fd, (struct sockaddr *)&sa, &len,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				pb_log_warn("accept: %s; accepting again in %d ms", strerror(errno),
					    TICK_MS);
				front_accept_stop(f);
				front_tick_start(f);
			}
			break;
		}
		/* It closes the socket itself if it cannot take it. */
		(void)MHD_add_connection(f->mhd, fd, (struct sockaddr *)&sa, len);
		took = 1;
	}
	if (took)
		front_kick(f);
}

/* ---- --lean-long-polls: waiting polls outside libmicrohttpd ------------- */

/* libmicrohttpd 0.9.75 keeps a connection's whole memory pool
 * (--max-header-bytes + FRONT_POOL_SLACK) resident while a request is
 * suspended. With --lean-long-polls, a /v1 poll or a door's poll
 * (front_may_hand_off) that has to wait gives its connection up instead:
 * the handler keeps a duplicate of the socket
 * and returns MHD_NO, which (with MHD_USE_TURBO, so without a shutdown of
 * the socket) makes libmicrohttpd close its descriptor and free the
 * connection without writing anything. The answer is then written here
 * on the duplicate, with the headers libmicrohttpd would have given it,
 * and the socket goes back to libmicrohttpd (MHD_add_connection) for the
 * connection's next request. A waiting poll costs its struct pb_req.
 *
 * Only what is safe to take: plain HTTP/1.1 GET, no body, no
 * "Connection: close", and nothing of a later request in libmicrohttpd's
 * buffer, which would be lost with it (a pipelined request). That last
 * one is checked against the kernel's count of bytes read off the socket
 * (tcp_read.c): it must be the sum of the connection's requests so
 * far as libmicrohttpd parsed them. */

/* The bytes read off conn's socket so far, or UINT64_MAX if unknown. */
static uint64_t front_consumed(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

	return ci && ci->connect_fd >= 0 ? pb_tcp_bytes_read(ci->connect_fd) : UINT64_MAX;
}

/* Whether the comma-separated header value v holds the token "close". */
static int front_has_close(const char *v)
{
	while (v && *v) {
		size_t n;

		v += strspn(v, " \t,");
		n = strcspn(v, " \t,");
		if (n == 5 && strncasecmp(v, "close", 5) == 0)
			return 1;
		v += n;
	}
	return 0;
}

/* Copy what r's answer and its log read from libmicrohttpd's memory
 * (origin, request line, referer, user agent, client address) into one
 * allocation, r->kept. 0, or -1 without memory. */
static int front_keep(struct pb_req *r)
{
	char addr[INET6_ADDRSTRLEN];
	const char *in[10], **out[10] = { &r->origin, &r->url, &r->method, &r->version,
					  &r->referer, &r->user_agent, &r->addr, &r->cookie,
					  &r->acrh, &r->origin_raw };
	size_t total = 0;
	char *p;
	int combined = pb_log_access_enabled() && r->f->cfg->access_log_combined;

	front_client_address(r, addr, sizeof(addr));
	in[0] = r->origin;
	in[1] = r->url;
	in[2] = r->method;
	in[3] = r->version;
	in[4] = combined ? MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Referer") : NULL;
	in[5] = combined ? MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "User-Agent") :
		NULL;
	in[6] = addr;
	in[7] = r->keep & PB_KEEP_HEADERS ?
		MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Cookie") : NULL;
	in[8] = r->keep & PB_KEEP_HEADERS ?
		MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
					    "Access-Control-Request-Headers") : NULL;
	in[9] = r->keep & PB_KEEP_CREATE ?
		MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin") : NULL;
	if (r->keep & PB_KEEP_CREATE && front_keep_forward(r))
		return -1;
	for (size_t i = 0; i < 10; i++)
		total += in[i] ? strlen(in[i]) + 1 : 0;
	p = r->kept = malloc(total);
	if (!p) {
		free(r->fwd);
		r->fwd = NULL;
		return -1;
	}
	for (size_t i = 0; i < 10; i++) {
		if (!in[i]) {
			*out[i] = NULL;
			continue;
		}
		*out[i] = strcpy(p, in[i]);
		p += strlen(in[i]) + 1;
	}
	r->accept_encoding = NULL;      /* read in the handler only */
	return 0;
}

/* Whether r is a request whose answer is built without its connection,
 * so that it may wait outside libmicrohttpd: a /v1 poll that waits, or a
 * door's request whose door said so (pb_req_wait_outside: Engine.IO
 * polls, SockJS's polling receives), a GET or a POST without a body. */
static int front_may_hand_off(const struct pb_req *r)
{
	if (r->wait_outside)
		return strcmp(r->method, "GET") == 0 || strcmp(r->method, "POST") == 0;
	return r->ep == EP_POLL && r->wait && strcmp(r->method, "GET") == 0;
}

/* Whether r is of the kind that may wait outside libmicrohttpd (see
 * above), all but the count of bytes read, which front_hand_off checks
 * when it takes the connection. */
static int front_may_leave(const struct pb_req *r)
{
	const struct pb_front *f = r->f;

	return f->cfg->lean_long_polls && !f->admin && !f->cred && !f->draining &&
	       front_may_hand_off(r) && r->pc && !r->pc->cut && !r->pc->body_bytes &&
	       !r->body.len && strcmp(r->version, MHD_HTTP_VERSION_1_1) == 0 &&
	       !front_has_close(MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
							    MHD_HTTP_HEADER_CONNECTION));
}

/* Take r's connection from libmicrohttpd if r may wait outside it (see
 * above). 1 if taken: the handler then returns MHD_NO. */
static int front_hand_off(struct pb_req *r)
{
	struct pb_front *f = r->f;
	const union MHD_ConnectionInfo *ci;
	int fd;

	if (!front_may_leave(r))
		return 0;
	ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci || ci->connect_fd < 0 || !r->header_size || r->pc->done_bytes == UINT64_MAX ||
	    pb_tcp_bytes_read(ci->connect_fd) != r->pc->done_bytes + r->header_size)
		return 0;
	/* The duplicate first: once front_keep has run, r's strings are in
	 * r->kept and there is no going back. */
	fd = fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	if (front_keep(r)) {
		close(fd);      /* nothing was copied: r is as it was */
		return 0;
	}
	r->handed = 1;
	r->hand_fd = fd;
	f->hand_note = 1;       /* libmicrohttpd logs the MHD_NO: not an error */
	r->pc->cut = 1;         /* no lingering close: it would shut the socket down */
	r->hprev = NULL;
	r->hnext = f->handed;
	if (f->handed)
		f->handed->hprev = r;
	f->handed = r;
	f->nhanded++;
	return 1;
}

/* r, in the handler, waits for the core: its connection leaves
 * libmicrohttpd if it may (front_hand_off), else it is suspended there. */
static enum MHD_Result front_wait(struct pb_req *r)
{
	if (front_hand_off(r))
		/* libmicrohttpd closes its descriptor and frees the connection
		 * (front_completed); the socket goes on in r's. */
		return MHD_NO;
	MHD_suspend_connection(r->conn);
	r->suspended = 1;
	return MHD_YES;
}

/*
 * A poll (pb_req.poll_late) whose first read is still in flight when its
 * handler returns (a shared store answers reads later) is suspended in libmicrohttpd and
 * leaves it only if that read parks it: under load most such reads find
 * messages, and a hand-off (a dup, two TCP_INFO reads, a close and an
 * MHD_add_connection) for an answer a millisecond away costs more than it
 * saves. f->later holds these polls; front_late_cb, after each loop
 * pass's I/O, resumes those that parked, and their handler's next call
 * hands them off (front_wait).
 */
static void front_late_cb(uv_check_t *h)
{
	struct pb_front *f = h->data;
	struct pb_req *r, *next;
	int resumed = 0;

	for (r = f->later; r; r = next) {
		next = r->lnext;
		if (!pb_core_poll_parked(f->core, r->id, r))
			continue;
		front_later_drop(r);
		r->leave = 1;
		r->suspended = 0;
		MHD_resume_connection(r->conn);
		resumed = 1;
	}
	if (resumed)
		front_kick(f);
}

/* Suspend r, in the handler, until its first read parks it or answers. */
static void front_later_add(struct pb_req *r)
{
	struct pb_front *f = r->f;

	MHD_suspend_connection(r->conn);
	r->suspended = 1;
	r->later = 1;
	r->lprev = NULL;
	r->lnext = f->later;
	if (f->later)
		f->later->lprev = r;
	f->later = r;
	if (!uv_is_active((uv_handle_t *)&f->late))
		uv_check_start(&f->late, front_late_cb);
}

/* Take r off f->later, if it is there (answered, orphaned or freed). */
static void front_later_drop(struct pb_req *r)
{
	struct pb_front *f = r->f;

	if (!r->later)
		return;
	r->later = 0;
	if (r->lprev)
		r->lprev->lnext = r->lnext;
	else
		f->later = r->lnext;
	if (r->lnext)
		r->lnext->lprev = r->lprev;
	r->lprev = r->lnext = NULL;
	if (!f->later)
		uv_check_stop(&f->late);
}

/* r's answer is written (keep: the connection goes on) or failed: the
 * socket goes back to libmicrohttpd on the next run, or is closed. */
static void front_hand_end(struct pb_req *r, int keep)
{
	struct pb_front *f = r->f;

	if (r->hprev)
		r->hprev->hnext = r->hnext;
	else
		f->handed = r->hnext;
	if (r->hnext)
		r->hnext->hprev = r->hprev;
	r->handed = 0;
	if (keep && f->mhd && !f->stopping) {
		r->hnext = f->backs;
		f->backs = r;
		front_kick(f);
		return;
	}
	close(r->hand_fd);
	f->nhanded--;
	front_req_free(r);
	front_accept_start(f);
}

/* Give the sockets of the answered handed-off polls back to
 * libmicrohttpd (outside MHD_run(): never from inside it). */
static void front_give_back(struct pb_front *f)
{
	struct pb_req *r;

	while ((r = f->backs)) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);

		f->backs = r->hnext;
		f->nhanded--;
		if (getpeername(r->hand_fd, (struct sockaddr *)&sa, &len) == 0)
			/* It closes the socket itself if it cannot take it. */
			(void)MHD_add_connection(f->mhd, r->hand_fd, (struct sockaddr *)&sa, len);
		else
			close(r->hand_fd);
		front_req_free(r);
	}
	front_accept_start(f);
}

static void front_out_closed(uv_handle_t *h)
{
	struct front_out *o = h->data;

	free(o->data);
	free(o);
}

/* The rest of a handed-off answer, as the socket takes it. */
static void front_out_cb(uv_poll_t *p, int status, int events)
{
	struct front_out *o = p->data;
	struct pb_req *r = o->r;
	ssize_t n = 0;

	(void)events;
	if (status == 0) {
		n = send(r->hand_fd, o->data + o->off, o->len - o->off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n > 0)
			o->off += (size_t)n;
		if (n >= 0 && o->off < o->len)
			return;
	}
	r->out = NULL;
	uv_close((uv_handle_t *)&o->poll, front_out_closed);
	front_hand_end(r, status == 0 && n >= 0 && r->hand_keep);
}

/* Write a handed-off poll's answer: what the socket takes now, the rest
 * when it can (front_out_cb). Takes data (len bytes, malloc'd). */
static void front_hand_write(struct pb_req *r, char *data, size_t len)
{
	struct front_out *o;
	ssize_t n = send(r->hand_fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n == (ssize_t)len || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
				  errno != EINTR)) {
		free(data);
		front_hand_end(r, n == (ssize_t)len && r->hand_keep);
		return;
	}
	o = calloc(1, sizeof(*o));
	if (!o || uv_poll_init(r->f->loop, &o->poll, r->hand_fd)) {
		free(o);
		free(data);
		front_hand_end(r, 0);
		return;
	}
	o->r = r;
	o->data = data;
	o->len = len;
	o->off = n > 0 ? (size_t)n : 0;
	o->poll.data = o;
	r->out = o;
	uv_poll_start(&o->poll, UV_WRITABLE, front_out_cb);
}

/* MHD iterator: a response header line into the answer being built. */
struct front_head_out {
	struct pb_buf *b;
	int close;              /* the answer says Connection: close */
	int err;
};

static enum MHD_Result front_head_put(void *cls, enum MHD_ValueKind kind, const char *key,
				      const char *value)
{
	struct front_head_out *o = cls;

	(void)kind;
	if (strcasecmp(key, MHD_HTTP_HEADER_CONNECTION) == 0 && front_has_close(value))
		o->close = 1;
	o->err |= pb_buf_printf(o->b, "%s: %s\r\n", key, value ? value : "");
	return MHD_YES;
}

/* Answer a handed-off poll with its prepared response (r->status,
 * r->resp or the shared empty one) as libmicrohttpd would write it: the
 * status line, Date, the response's headers, Content-Length, the body.
 * Without a response (no memory), the connection is closed, as
 * front_queue's MHD_NO does. */
static void front_hand_answer(struct pb_req *r)
{
	struct MHD_Response *resp = r->resp_shared ? front_empty_answer(r) : r->resp;
	const char *body = r->resp_shared ? front_empty_body : r->resp_body;
	size_t blen = r->resp_shared ? sizeof(front_empty_body) - 1 : r->resp_body_len;
	const char *reason = MHD_get_reason_phrase_for(r->status);
	struct pb_buf out;
	struct front_head_out ho = { &out, 0, 0 };
	char date[64], *data;
	time_t now = time(NULL);
	struct tm tm;
	size_t len;

	if (!resp) {
		front_resp_drop(r);
		front_hand_end(r, 0);
		return;
	}
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	pb_buf_init(&out, 0);
	ho.err |= pb_buf_printf(&out, "HTTP/1.1 %u %s\r\nDate: %s\r\n", r->status,
				reason && *reason ? reason : "Unknown", date);
	MHD_get_response_headers(resp, front_head_put, &ho);
	ho.err |= pb_buf_printf(&out, "Content-Length: %zu\r\n\r\n", blen);
	if (blen)
		ho.err |= pb_buf_append(&out, body, blen);
	front_note_answer(r);
	front_resp_drop(r);
	data = ho.err ? NULL : pb_buf_steal(&out, &len);
	pb_buf_free(&out);
	if (!data) {
		front_hand_end(r, 0);
		return;
	}
	r->hand_keep = !ho.close && !r->f->draining;
	front_hand_write(r, data, len);
}

/* The front ends: every handed-off poll's socket is closed; one the core
 * still holds is freed when its answer comes (orphan). */
static void front_hand_stop(struct pb_front *f)
{
	struct pb_req *r;

	while ((r = f->backs)) {
		f->backs = r->hnext;
		f->nhanded--;
		close(r->hand_fd);
		front_req_free(r);
	}
	while ((r = f->handed)) {
		f->handed = r->hnext;
		f->nhanded--;
		r->handed = 0;
		close(r->hand_fd);
		if (r->out) {
			r->out->r = NULL;
			uv_close((uv_handle_t *)&r->out->poll, front_out_closed);
			r->out = NULL;
		}
		if (r->in_core)
			r->orphan = 1;
		else
			front_req_free(r);
	}
}

/* The libmicrohttpd access handler: accumulate the body, dispatch once,
 * suspend until the core answers, then queue the answer. */
static enum MHD_Result front_handler(void *cls, struct MHD_Connection *conn, const char *url,
				     const char *method, const char *version,
				     const char *upload_data, size_t *upload_data_size,
				     void **con_cls)
{
	struct pb_front *f = cls;
	struct pb_req *r = *con_cls;

	if (!r) {
		const union MHD_ConnectionInfo *ci;
		struct front_headers h = { 0 };
		const char *why = NULL;
		unsigned bad;

		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		r->f = f;
		r->conn = conn;
		r->started_ms = uv_now(f->loop);
		r->started_ns = uv_hrtime();
		r->url = url;
		r->method = method;
		r->version = version;
		pb_buf_init(&r->body, f->body_limit);
		f->active++;
		pb_metrics_gauge(PB_G_HTTP_IN_FLIGHT, 1);
		*con_cls = r;
		ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
		r->header_size = ci ? ci->header_size : 0;
		ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		r->pc = ci ? ci->socket_context : NULL;
		if (r->pc) {
			/* The headers are in; the body's clock starts. */
			r->pc->phase = PH_BODY;
			r->pc->since_ms = r->started_ms;
			r->pc->body_bytes = 0;
		}
		/* One pass over the headers for what every request needs. */
		MHD_get_connection_values(conn, MHD_HEADER_KIND, front_scan_header, &h);
		r->origin = h.origin;
		r->accept_encoding = h.accept_encoding;
		if (!pb_config_cors_allowed(f->cfg, r->origin))
			r->origin = NULL;
		/* First, so that a door answers the errors below itself. */
		front_route(r, url, method);
		/* An ambiguous length would let the rest of the body be read as
		 * the next request on this connection: answer and close. */
		bad = front_framing_check(&h, version, &why);
		if (bad)
			return front_answer_early(r, PB_EBADREQ, bad, why, 1);
		if (r->pc && (r->pc->nul || front_raw_nul(f, r->pc, version))) {
			/* The decoded path or a value would end early. */
			r->early_err = PB_EBADREQ;
			r->early_msg = "the URL holds a NUL byte (%00)";
		}
		if (front_header_bytes(conn, url, &h) > f->cfg->max_header_bytes)
			return front_answer_early(r, PB_EHEADERS, 0, NULL, 0);
		/* One Content-Length, digits only (checked above); more than 15
		 * are past any limit. */
		if (h.cl && (strlen(h.cl) > 15 || strtoull(h.cl, NULL, 10) > f->body_limit))
			/* Refuse before reading a body we would not keep. */
			return front_answer_early(r, PB_ETOOBIG, 0, "the request body is too large", 1);
		return MHD_YES;
	}
	r->url = url;           /* the same request, the same values */
	r->method = method;
	r->version = version;
	if (*upload_data_size) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (r->pc)
			r->pc->body_bytes += n;
		if (r->dispatched || r->discard)
			return MHD_YES;         /* answered early; discard */
		if (pb_buf_append(&r->body, upload_data, n)) {
			if (front_is_door(r)) {
				/* The door answers it once the body has gone
				 * by (pb_req_early_error()). */
				r->early_err = PB_ETOOBIG;
				r->early_msg = "the request body is too large";
				r->discard = 1;
				pb_buf_free(&r->body);
				return MHD_YES;
			}
			/* libmicrohttpd takes no answer in the middle of a body
			 * (a chunked one, whose size was unknown): keep the 413
			 * and discard the rest; it goes out on the final call. */
			r->dispatched = 1;
			r->in_handler = 1;
			front_error(r, PB_ETOOBIG, "the request body is too large");
			r->in_handler = 0;
			pb_buf_free(&r->body);
		}
		return MHD_YES;
	}
	if (r->pc)
		r->pc->phase = PH_BUSY;         /* the whole request is in */
	if (r->resp || r->resp_shared)
		return front_queue(r);
	if (r->leave) {
		/* Resumed by front_late_cb: its poll parked. */
		r->leave = 0;
		return front_wait(r);
	}
	if (r->dispatched)
		return MHD_YES;
	r->dispatched = 1;
	r->in_handler = 1;
	front_dispatch(r);
	r->in_handler = 0;
	if (r->resp || !r->in_core)
		return front_queue(r);
	if (r->poll_late && front_may_leave(r) && !pb_core_poll_parked(f->core, r->id, r)) {
		front_later_add(r);
		return MHD_YES;
	}
	return front_wait(r);
}

/* MHD completion callback: the connection is done with the request. */
static void front_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			    enum MHD_RequestTerminationCode toe)
{
	struct pb_req *r = *con_cls;

	if (!r)
		return;
	*con_cls = NULL;
	if (r->handed) {
		r->conn = NULL;
		r->pc = NULL;
		return;
	}
	if (r->pc) {
		r->pc->done_bytes += r->header_size + r->pc->body_bytes;
		/* A keep-alive connection's next request starts its clock now. */
		r->pc->phase = PH_HEAD;
		r->pc->since_ms = uv_now(r->f->loop);
	}
	if (r->in_core) {
		front_later_drop(r);
		r->orphan = 1;
		r->conn = NULL;
		return;
	}
	front_req_free(r);
}

/* ---- driving libmicrohttpd from the loop --------------------------------- */

static void front_tick_cb(uv_timer_t *t);

/* Make sure the slow-client tick runs. */
static void front_tick_start(struct pb_front *f)
{
	if (!uv_is_active((uv_handle_t *)&f->tick))
		uv_timer_start(&f->tick, front_tick_cb, TICK_MS, TICK_MS);
}

/* A lingering socket's poll handle is closed: free it. */
static void front_linger_closed(uv_handle_t *h)
{
	struct front_linger *l = h->data;

	close(l->fd);
	free(l);
}

/* Stop lingering: unlink and close the socket (a reset now costs nothing
 * the client still wanted). */
static void front_linger_end(struct front_linger *l)
{
	struct pb_front *f = l->f;

	if (f) {
		if (l->prev)
			l->prev->next = l->next;
		else
			f->lingers = l->next;
		if (l->next)
			l->next->prev = l->prev;
		f->nlingers--;
		l->f = NULL;
	}
	uv_close((uv_handle_t *)&l->poll, front_linger_closed);
}

/* A lingering socket is readable: discard what came, end on EOF, error or
 * the byte bound. */
static void front_linger_cb(uv_poll_t *p, int status, int events)
{
	struct front_linger *l = p->data;
	char buf[16384];
	ssize_t n;

	(void)events;
	if (!l->f)
		return;
	for (;;) {
		n = recv(l->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			l->discarded += (size_t)n;
			if (l->discarded < LINGER_BYTES)
				continue;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && status == 0) {
			return;
		}
		front_linger_end(l);
		return;
	}
}

/* MHD is about to close pc's socket while the client may still be sending:
 * keep a duplicate, half-close it (the answer is complete) and discard
 * what arrives, so that closing does not reset the connection under an
 * answer the client has not read yet. */
static void front_linger_start(struct pb_front *f, struct pb_conn *pc)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(pc->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct front_linger *l;
	int fd, pending = 0;

	if (!ci || ci->connect_fd < 0 || f->nlingers >= LINGER_MAX)
		return;
	if (!pc->linger && (ioctl(ci->connect_fd, FIONREAD, &pending) || pending <= 0))
		return;         /* nothing unread: a plain close is clean */
	l = calloc(1, sizeof(*l));
	fd = l ? fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0) : -1;
	if (fd < 0 || uv_poll_init(f->loop, &l->poll, fd)) {
		if (fd >= 0)
			close(fd);
		free(l);
		return;
	}
	shutdown(fd, SHUT_WR);
	l->f = f;
	l->fd = fd;
	l->until_ms = uv_now(f->loop) + LINGER_MS;
	l->poll.data = l;
	l->next = f->lingers;
	if (f->lingers)
		f->lingers->prev = l;
	f->lingers = l;
	f->nlingers++;
	uv_poll_start(&l->poll, UV_READABLE | UV_DISCONNECT, front_linger_cb);
	front_tick_start(f);
}

/* Shut down a connection that is too slow; MHD sees the end on its next
 * run and closes it. */
static void front_cut(struct pb_conn *pc)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(pc->conn, MHD_CONNECTION_INFO_CONNECTION_FD);

	pc->cut = 1;
	if (ci && ci->connect_fd >= 0)
		shutdown(ci->connect_fd, SHUT_RDWR);
	pb_log_debug("http: closing a connection too slow to send its %s",
		     pc->phase == PH_HEAD ? "request headers" : "request body");
	front_kick(pc->f);
}

/* The slow-client tick: cut connections past their header or body
 * deadline, end lingering sockets past theirs; stop when nothing is left. */
static void front_tick_cb(uv_timer_t *t)
{
	struct pb_front *f = t->data;
	const struct pb_config *cfg = f->cfg;
	uint64_t now = uv_now(f->loop), head_ms = (uint64_t)cfg->header_timeout * 1000;
	struct front_linger *l, *ln;

	for (struct pb_conn *pc = f->conns; pc; pc = pc->next) {
		uint64_t deadline;

		if (pc->cut || pc->phase == PH_BUSY)
			continue;
		deadline = pc->since_ms + head_ms;
		if (pc->phase == PH_BODY)
			/* One more second per --min-body-rate bytes received. */
			deadline += pc->body_bytes * 1000 / cfg->min_body_rate;
		if (now >= deadline)
			front_cut(pc);
	}
	for (l = f->lingers; l; l = ln) {
		ln = l->next;
		if (now >= l->until_ms)
			front_linger_end(l);
	}
	front_accept_start(f);  /* after running out of descriptors */
	if (!f->conns && !f->lingers && (f->accepting || f->accept_closed))
		uv_timer_stop(&f->tick);
}

/* MHD connection notification: track the connection for the slow-client
 * tick and count it under --max-connections; on close, linger if the
 * client may still be sending, and accept again if that freed a slot. */
static void front_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
			     enum MHD_ConnectionNotificationCode toe)
{
	struct pb_front *f = cls;
	struct pb_conn *pc = *socket_ctx;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		f->nconns++;
		pc = calloc(1, sizeof(*pc));
		if (!pc)
			return;         /* served without deadlines */
		pc->f = f;
		pc->conn = conn;
		pc->phase = PH_HEAD;
		pc->since_ms = uv_now(f->loop);
		if (f->cfg->lean_long_polls)
			pc->done_bytes = front_consumed(conn);
		pc->next = f->conns;
		if (f->conns)
			f->conns->prev = pc;
		f->conns = pc;
		*socket_ctx = pc;
		front_tick_start(f);
		return;
	}
	if (toe != MHD_CONNECTION_NOTIFY_CLOSED)
		return;
	f->nconns--;
	front_accept_start(f);
	front_kick(f);
	if (!pc)
		return;
	if (!pc->cut && !f->stopping)
		front_linger_start(f, pc);
	if (pc->prev)
		pc->prev->next = pc->next;
	else
		f->conns = pc->next;
	if (pc->next)
		pc->next->prev = pc->prev;
	*socket_ctx = NULL;
	free(pc);
}

/* MHD URI log callback: the raw request line's target, before MHD decodes
 * it in place. Note an encoded NUL (the decoded path or value would end
 * there) and start the request's state afresh. */
static void *front_uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct pb_conn *pc = ci ? ci->socket_context : NULL;

	(void)cls;
	if (pc) {
		pc->nul = strstr(uri, "%00") != NULL;
		pc->uri_at = (uintptr_t)uri;
		pc->uri_len = strlen(uri);
		pc->linger = 0;
	}
	return NULL;
}

static void front_timer_cb(uv_timer_t *t);

/* Run MHD, then re-arm the timer from its next timeout. */
static void front_run(struct pb_front *f)
{
	MHD_UNSIGNED_LONG_LONG to;

	if (!f->mhd)
		return;
	front_give_back(f);
	f->in_run = 1;
	f->kicked = 0;
	MHD_run(f->mhd);
	f->in_run = 0;
	if (f->kicked)
		uv_timer_start(&f->timer, front_timer_cb, 0, 0);
	else if (MHD_get_timeout(f->mhd, &to) == MHD_YES)
		uv_timer_start(&f->timer, front_timer_cb, to, 0);
	else
		uv_timer_stop(&f->timer);
}

/* Ask for an MHD_run() on the next loop pass. */
static void front_kick(struct pb_front *f)
{
	f->kicked = 1;
	if (!f->in_run)
		uv_timer_start(&f->timer, front_timer_cb, 0, 0);
}

/* MHD's epoll fd is readable. */
static void front_poll_cb(uv_poll_t *p, int status, int events)
{
	front_run(p->data);
}

/* An MHD timeout (or a deferred run after a resume) is due. */
static void front_timer_cb(uv_timer_t *t)
{
	front_run(t->data);
}

/* Route libmicrohttpd's error log into ours; keep the first line (the
 * specific one) for a start failure's reason. */
static void front_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct pb_front *f = cls;
	char line[512];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	if (f->hand_note && strstr(line, "Application reported internal error")) {
		f->hand_note = 0;       /* front_hand_off's MHD_NO */
		return;
	}
	pb_log_debug("mhd: %s", line);
	if (!f->mhd_error[0])
		/* Cut to fit, on purpose (the precision says so to gcc). */
		snprintf(f->mhd_error, sizeof(f->mhd_error), "%.*s", (int)sizeof(f->mhd_error) - 1,
			 line);
}

/* Create, bind and listen on lhost:lport. The fd, or -1 with err set. */
static int front_listen(const char *lhost, int lport, char *addr, size_t addrlen,
			char *err, size_t errlen)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	int fd, one = 1, v6 = strchr(lhost, ':') != NULL;
	char host[INET6_ADDRSTRLEN];

	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)lport);
		inet_pton(AF_INET6, lhost, &s6->sin6_addr);
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)lport);
		inet_pton(AF_INET, lhost, &s4->sin_addr);
		sl = sizeof(*s4);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (v6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 1024)) {
		snprintf(err, errlen, "cannot listen on %s:%d: %s", lhost,
			 lport, strerror(errno));
		close(fd);
		return -1;
	}
	sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(addr, addrlen, "[%s]:%d", host, ntohs(s6->sin6_port));
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(addr, addrlen, "%s:%d", host, ntohs(s4->sin_port));
	}
	return fd;
}

/* Most certificates a --tls-cert chain may hold. */
#define FRONT_CHAIN_MAX 16

/* Free a credential pair (NULL is ignored). */
static void front_cred_free(struct front_cred *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->nchain; i++)
		gnutls_pcert_deinit(&c->chain[i]);
	free(c->chain);
	if (c->key)
		gnutls_privkey_deinit(c->key);
	free(c);
}

/* 0 if key is the private half of pub, negative if not. */
static int front_same_key(gnutls_privkey_t key, gnutls_pubkey_t pub)
{
	gnutls_pubkey_t mine;
	gnutls_datum_t a = { NULL, 0 }, b = { NULL, 0 };
	int rc = gnutls_pubkey_init(&mine);

	if (rc < 0)
		return rc;
	rc = gnutls_pubkey_import_privkey(mine, key, 0, 0);
	if (rc >= 0)
		rc = gnutls_pubkey_export2(mine, GNUTLS_X509_FMT_DER, &a);
	if (rc >= 0)
		rc = gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &b);
	if (rc >= 0 && (a.size != b.size || memcmp(a.data, b.data, a.size)))
		rc = -1;
	gnutls_free(a.data);
	gnutls_free(b.data);
	gnutls_pubkey_deinit(mine);
	return rc;
}

/* Parse a PEM chain and key into a credential pair whose key matches the
 * first certificate. NULL with err set on failure. */
static struct front_cred *front_cred_load(const char *cert_pem, const char *key_pem, char *err,
					  size_t errlen)
{
	struct front_cred *c = calloc(1, sizeof(*c));
	gnutls_datum_t cd = { (unsigned char *)cert_pem, 0 };
	gnutls_datum_t kd = { (unsigned char *)key_pem, 0 };
	unsigned n = FRONT_CHAIN_MAX;
	int rc;

	if (!c || !(c->chain = calloc(FRONT_CHAIN_MAX, sizeof(*c->chain)))) {
		free(c);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	cd.size = (unsigned)strlen(cert_pem);
	kd.size = (unsigned)strlen(key_pem);
	rc = gnutls_pcert_list_import_x509_raw(c->chain, &n, &cd, GNUTLS_X509_FMT_PEM, 0);
	if (rc < 0) {
		snprintf(err, errlen, "certificate: %s", gnutls_strerror(rc));
		front_cred_free(c);
		return NULL;
	}
	c->nchain = n;
	rc = gnutls_privkey_init(&c->key);
	if (rc >= 0)
		rc = gnutls_privkey_import_x509_raw(c->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
	if (rc < 0) {
		snprintf(err, errlen, "private key: %s", gnutls_strerror(rc));
		front_cred_free(c);
		return NULL;
	}
	/* The key must belong to the first certificate. */
	rc = front_same_key(c->key, c->chain[0].pubkey);
	if (rc < 0) {
		snprintf(err, errlen, "the private key does not match the certificate");
		front_cred_free(c);
		return NULL;
	}
	return c;
}

/* gnutls's certificate callback: the live chain and key of the TLS front. */
static int front_cert_cb(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
			 const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
			 gnutls_pcert_st **pcert, unsigned int *pcert_length,
			 gnutls_privkey_t *pkey)
{
	(void)session;
	(void)req_ca_dn;
	(void)nreqs;
	(void)pk_algos;
	(void)pk_algos_length;
	if (!front_tls || !front_tls->cred)
		return -1;
	*pcert = front_tls->cred->chain;
	*pcert_length = front_tls->cred->nchain;
	*pkey = front_tls->cred->key;
	return 0;
}

/* Free f's credentials and stop handing them out. */
static void front_tls_end(struct pb_front *f)
{
	if (front_tls == f)
		front_tls = NULL;
	front_cred_free(f->cred);
	front_cred_free(f->old_cred);
	f->cred = NULL;
	f->old_cred = NULL;
}

int pb_front_set_tls(struct pb_front *f, const char *cert_pem, const char *key_pem, char *err,
		     size_t errlen)
{
	struct front_cred *c;

	if (!f || !f->cred) {
		snprintf(err, errlen, "this front end does not serve HTTPS");
		return PB_EBADREQ;
	}
	c = front_cred_load(cert_pem, key_pem, err, errlen);
	if (!c)
		return PB_EBADREQ;
	front_cred_free(f->old_cred);
	f->old_cred = f->cred;
	f->cred = c;
	return 0;
}

/* The listener's bounds: a few scrapers and probes, GET only. */
#define ADMIN_CONNECTIONS 32
#define ADMIN_TIMEOUT 30
#define ADMIN_POOL (16 * 1024)

/* Start a front end on loop: the public one (cfg's --listen, TLS if
 * configured), or with admin the --admin-listen one (plain HTTP, small
 * limits, the operations endpoints only). NULL with err set on failure. */
static struct pb_front *front_start(uv_loop_t *loop, const struct pb_config *cfg,
				    struct pb_core *core, int admin, char *err, size_t errlen)
{
	struct pb_front *f = calloc(1, sizeof(*f));
	const char *lhost = admin ? cfg->admin_host : cfg->listen_host;
	int lport = admin ? cfg->admin_port : cfg->listen_port;
	struct MHD_OptionItem tls[2] = { { MHD_OPTION_END, 0, NULL } };
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
			 MHD_USE_NO_LISTEN_SOCKET;
	const union MHD_DaemonInfo *info;
	unsigned limit;

	if (!f) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	f->loop = loop;
	f->cfg = cfg;
	f->core = core;
	f->admin = admin;
	/* Room for a maximal message as base64 inside a JSON batch. */
	f->body_limit = cfg->max_body_bytes ? cfg->max_body_bytes :
			cfg->max_message_bytes * 2 + 65536;
	if (admin)
		f->body_limit = 4096;   /* nothing there takes a body */
	if (cfg->lean_long_polls && !admin && !cfg->tls_cert_pem)
		/* Closes without shutdown(), so a handed-off poll's duplicate
		 * of the socket stays usable (front_hand_off). */
		flags |= MHD_USE_TURBO;
	if (cfg->tls_cert_pem && !admin) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
		    MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES) {
			snprintf(err, errlen, "--tls-cert: this libmicrohttpd was built without TLS");
			free(f);
			return NULL;
		}
		if (front_tls) {
			snprintf(err, errlen, "--tls-cert: one HTTPS front end per process");
			free(f);
			return NULL;
		}
		f->cred = front_cred_load(cfg->tls_cert_pem, cfg->tls_key_pem, f->mhd_error,
					  sizeof(f->mhd_error));
		if (!f->cred) {
			snprintf(err, errlen, "--tls-cert %s / --tls-key %s: %s", cfg->tls_cert,
				 cfg->tls_key, f->mhd_error);
			free(f);
			return NULL;
		}
		f->mhd_error[0] = '\0';
		front_tls = f;
		/* Handshakes ask front_cert_cb, so SIGHUP can swap the pair. */
		flags |= MHD_USE_TLS;
		tls[0] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_CERT_CALLBACK, 0,
						  (void *)front_cert_cb };
		tls[1] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
	}
	f->listen_fd = front_listen(lhost, lport, f->address, sizeof(f->address), err, errlen);
	if (f->listen_fd < 0) {
		front_tls_end(f);
		free(f);
		return NULL;
	}
	/* Half the descriptors for clients, half for their upstreams. */
	limit = (unsigned)(sysconf(_SC_OPEN_MAX) > 256 ? (sysconf(_SC_OPEN_MAX) - 64) / 2 : 64);
	if (admin)
		limit = ADMIN_CONNECTIONS;
	else if (cfg->max_connections)
		limit = (unsigned)cfg->max_connections;
	f->mhd = MHD_start_daemon(flags | (strchr(lhost, ':') ? MHD_USE_IPv6 : 0),
				  0, NULL, NULL, front_handler, f,
				  MHD_OPTION_EXTERNAL_LOGGER, front_mhd_log, f,
				  MHD_OPTION_ARRAY, tls,
				  MHD_OPTION_NOTIFY_COMPLETED, front_completed, f,
				  MHD_OPTION_NOTIFY_CONNECTION, front_connection, f,
				  MHD_OPTION_URI_LOG_CALLBACK, front_uri_log, f,
				  MHD_OPTION_CONNECTION_LIMIT, limit,
				  MHD_OPTION_CONNECTION_TIMEOUT,
				  admin ? ADMIN_TIMEOUT : cfg->connection_timeout,
				  /* Request line and headers live in this pool, beside
				   * MHD's header records and the answer's headers
				   * (FRONT_POOL_SLACK); bodies and answers do not. */
				  MHD_OPTION_CONNECTION_MEMORY_LIMIT,
				  admin ? (size_t)ADMIN_POOL : cfg->max_header_bytes + FRONT_POOL_SLACK,
				  MHD_OPTION_END);
	if (!f->mhd && cfg->tls_cert_pem && !admin) {
		snprintf(err, errlen, "--tls-cert %s / --tls-key %s: %s", cfg->tls_cert, cfg->tls_key,
			 f->mhd_error[0] ? f->mhd_error : "libmicrohttpd cannot use them");
		close(f->listen_fd);
		front_tls_end(f);
		free(f);
		return NULL;
	}
	if (!f->mhd) {
		snprintf(err, errlen, "libmicrohttpd failed to start on %s", f->address);
		close(f->listen_fd);
		front_tls_end(f);
		free(f);
		return NULL;
	}
	f->limit = limit;
	info = MHD_get_daemon_info(f->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	uv_poll_init(loop, &f->accept, f->listen_fd);
	f->accept.data = f;
	uv_poll_init(loop, &f->poll, info->epoll_fd);
	uv_timer_init(loop, &f->timer);
	uv_timer_init(loop, &f->tick);
	uv_check_init(loop, &f->late);
	f->poll.data = f;
	f->timer.data = f;
	f->tick.data = f;
	f->late.data = f;
	f->handles_open = 5;
	uv_poll_start(&f->poll, UV_READABLE, front_poll_cb);
	front_accept_start(f);
	front_run(f);
	return f;
}

struct pb_front *pb_front_new(uv_loop_t *loop, const struct pb_config *cfg, struct pb_core *core,
			      char *err, size_t errlen)
{
	return front_start(loop, cfg, core, 0, err, errlen);
}

struct pb_front *pb_front_new_admin(uv_loop_t *loop, const struct pb_config *cfg,
				    struct pb_core *core, char *err, size_t errlen)
{
	return front_start(loop, cfg, core, 1, err, errlen);
}

const char *pb_front_address(const struct pb_front *f)
{
	return f->address;
}

/* Stop accepting for good: close the listening socket. */
static void front_accept_close(struct pb_front *f)
{
	if (f->accept_closed)
		return;
	front_accept_stop(f);
	f->accept_closed = 1;
	uv_close((uv_handle_t *)&f->accept, front_handle_closed);
	close(f->listen_fd);    /* after uv_close: out of the loop's epoll set */
	f->listen_fd = -1;
}

void pb_front_drain(struct pb_front *f)
{
	if (f->draining)
		return;
	f->draining = 1;
	if (f->admin)
		return;         /* probes and scrapes are answered to the end */
	front_accept_close(f);
}

size_t pb_front_active(const struct pb_front *f)
{
	return f->active;
}

void pb_front_reconfigured(struct pb_front *f)
{
	front_empty_reset(f);
	f->body_limit = f->cfg->max_body_bytes ? f->cfg->max_body_bytes :
			f->cfg->max_message_bytes * 2 + 65536;
}

/* One of the front's handles is closed; the last one frees the front. */
static void front_handle_closed(uv_handle_t *h)
{
	struct pb_front *f = h->data;

	if (--f->handles_open == 0)
		free(f);
}

void pb_front_free(struct pb_front *f)
{
	if (!f)
		return;
	f->stopping = 1;
	while (f->later)
		front_later_drop(f->later);
	front_hand_stop(f);
	MHD_stop_daemon(f->mhd);
	f->mhd = NULL;
	front_empty_reset(f);
	front_tls_end(f);       /* no handshake runs any more */
	front_accept_close(f);
	while (f->lingers)
		front_linger_end(f->lingers);
	uv_close((uv_handle_t *)&f->poll, front_handle_closed);
	uv_close((uv_handle_t *)&f->timer, front_handle_closed);
	uv_close((uv_handle_t *)&f->tick, front_handle_closed);
	uv_close((uv_handle_t *)&f->late, front_handle_closed);
}
