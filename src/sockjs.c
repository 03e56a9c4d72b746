/*
 * sockjs.c: the SockJS front door (routes with sockjs=PREFIX). It owns the
 * protocol's request handling: which method and path does what, the CORS,
 * caching and cookie headers SockJS wants, mapping a client's SockJS
 * session onto a bridge session, and turning core answers into frames.
 * The bytes themselves come from sockjs_codec.c; the HTTP machinery
 * (bodies, limits, suspension, streams) is front.c's (front_req.h).
 *
 * Rules, as documented in docs/API.md:
 * - A SockJS session is the bridge session whose id pb_sockjs_session_id()
 *   derives from the route, the client's session id and the client's
 *   address; the first receiving request on an unknown one creates it
 *   (door SOCKJS, that fixed id) and answers "o" once the upstream is
 *   open. A create that loses a race (PB_EEXIST) reads the session instead.
 * - Receiving requests acknowledge what the previous one carried
 *   (PB_AFTER_HANDED) and are exclusive on an instance (PB_POLL_EXCLUSIVE:
 *   a second one gets c[2010,"Another connection still open"]).
 * - Polling answers carry one frame: a[...], else the close, else "h"
 *   after PB_SOCKJS_HEARTBEAT seconds. Streams carry frames until
 *   PB_SOCKJS_RESPONSE_LIMIT bytes, a close, or a newer request.
 * - The upstream's close reaches the client as c[code,"reason"]; once the
 *   session has ended (the close was read), c[3000,"Go away!"] until its
 *   tombstone expires. An upstream binary message cannot be expressed:
 *   the client gets c[1003,"binary message"] after the text before it and
 *   the session is ended (the core closes the upstream with 1000: it has
 *   no call to close with another code).
 * - No client request says "closed": a session nobody reads ends by the
 *   core's --idle-timeout (the upstream then gets 1001 "idle timeout").
 */
#include "sockjs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "error.h"
#include "front_req.h"
#include "sockjs_codec.h"

#define CT_TEXT "text/plain; charset=UTF-8"
#define CT_JS "application/javascript; charset=UTF-8"
#define CT_JSON "application/json; charset=UTF-8"
#define CT_HTML "text/html; charset=UTF-8"
#define CT_EVENTS "text/event-stream; charset=UTF-8"
#define NO_CACHE "no-store, no-cache, no-transform, must-revalidate, max-age=0"
#define ANOTHER_CONNECTION "Another connection still open"
#define GO_AWAY "Go away!"
/* Longest JSESSIONID value echoed back. */
#define MAX_JSESSIONID 128
/* Creates retried after losing a race to another instance's create. */
#define MAX_CREATE_TRIES 2

/* What the door keeps with one request. */
struct sj_req {
	enum pb_sockjs_transport t;
	char id[PB_ID_LEN + 1];
	char callback[PB_SOCKJS_MAX_CALLBACK + 1];
	size_t sent;            /* frame bytes a stream has carried */
	int tries;              /* creates tried */
	int created;            /* this request created the session */
};

/* The door state of r. */
static struct sj_req *sj_of(struct pb_req *r)
{
	return pb_req_door_state(r);
}

/* Replace the common Cache-Control: no-store with SockJS's no-cache set. */
static void sj_no_cache(struct MHD_Response *resp)
{
	MHD_del_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, NO_CACHE);
}

/* Make resp cacheable for a year (OPTIONS answers, the iframe page). */
static void sj_cache_for(struct MHD_Response *resp)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	char v[64];
	time_t t = time(NULL) + PB_SOCKJS_CACHE_SECS;
	struct tm tm;

	MHD_del_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	snprintf(v, sizeof(v), "public, max-age=%d", PB_SOCKJS_CACHE_SECS);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, v);
	if (gmtime_r(&t, &tm)) {
		snprintf(v, sizeof(v), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
			 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
			 tm.tm_min, tm.tm_sec);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_EXPIRES, v);
	}
}

/* For an allowed Origin, grant the headers a preflight asked about. */
static void sj_cors_headers(struct pb_req *r, struct MHD_Response *resp)
{
	const char *h = pb_req_header(r, "Access-Control-Request-Headers");

	if (pb_req_origin(r) && h && *h && pb_header_value_valid(h, strlen(h)))
		MHD_add_response_header(resp, "Access-Control-Allow-Headers", h);
}

/* 1 if v[0..len) is a cookie value we may echo (RFC 6265 cookie-octets). */
static int cookie_value_ok(const char *v, size_t len)
{
	if (len == 0 || len > MAX_JSESSIONID)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\')
			return 0;
	}
	return 1;
}

/* Session URLs echo a JSESSIONID cookie the request carries (for
 * balancers that stick on it); the door never invents one. */
static void sj_cookie(struct pb_req *r, struct MHD_Response *resp)
{
	const char *c = pb_req_header(r, "Cookie");
	char v[MAX_JSESSIONID + 32];

	while (c && *c) {
		size_t n;

		while (*c == ' ' || *c == '\t' || *c == ';')
			c++;
		n = strcspn(c, ";");
		if (n > 11 && !strncmp(c, "JSESSIONID=", 11)) {
			size_t vl = n - 11;

			while (vl && (c[11 + vl - 1] == ' ' || c[11 + vl - 1] == '\t'))
				vl--;
			if (cookie_value_ok(c + 11, vl)) {
				snprintf(v, sizeof(v), "JSESSIONID=%.*s; path=/", (int)vl, c + 11);
				MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, v);
			}
			return;
		}
		c += n;
	}
}

/* The headers of every answer on a session URL. */
static void sj_session_headers(struct pb_req *r, struct MHD_Response *resp)
{
	sj_no_cache(resp);
	sj_cors_headers(r, resp);
	sj_cookie(r, resp);
}

/* Answer with body (taken) as ctype; session URLs get their headers. */
static void sj_answer(struct pb_req *r, unsigned status, struct pb_buf *body, const char *ctype,
		      int session)
{
	struct MHD_Response *resp = pb_req_response(r, body, ctype);

	if (resp && session)
		sj_session_headers(r, resp);
	/* A script answer (jsonp) must not be sniffed as anything else. */
	if (resp && ctype && strcmp(ctype, CT_JS) == 0)
		MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	pb_req_finish(r, status, resp);
}

/* Answer with a short text (SockJS's error messages are plain text). */
static void sj_text(struct pb_req *r, unsigned status, const char *text, int session)
{
	struct pb_buf b;

	pb_buf_init(&b, 0);
	if (text && pb_buf_puts(&b, text)) {
		pb_buf_free(&b);
		pb_req_finish(r, 500, NULL);
		return;
	}
	sj_answer(r, status, &b, text && *text ? CT_TEXT : NULL, session);
}

/* 405 with the methods the path takes. */
static void sj_not_allowed(struct pb_req *r, const char *allow)
{
	struct pb_buf b;
	struct MHD_Response *resp;

	pb_buf_init(&b, 0);
	resp = pb_req_response(r, &b, NULL);
	if (resp)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	pb_req_finish(r, 405, resp);
}

/* OPTIONS on info and the xhr transports: a cacheable CORS preflight. */
static void sj_options(struct pb_req *r, const char *methods, int session)
{
	struct pb_buf b;
	struct MHD_Response *resp;
	char age[16];

	pb_buf_init(&b, 0);
	resp = pb_req_response(r, &b, NULL);
	if (resp) {
		sj_cache_for(resp);
		snprintf(age, sizeof(age), "%d", PB_SOCKJS_CACHE_SECS);
		MHD_add_response_header(resp, "Access-Control-Allow-Methods", methods);
		MHD_add_response_header(resp, "Access-Control-Max-Age", age);
		sj_cors_headers(r, resp);
		if (session)
			sj_cookie(r, resp);
	}
	pb_req_finish(r, 204, resp);
}

/* An internal failure or a refused request, in SockJS's plain style. */
static void sj_fail(struct pb_req *r, int err)
{
	int status = pb_err_status(err);

	sj_text(r, status >= 400 ? (unsigned)status : 500, pb_err_message(err), 1);
}

/* ---- static pages ---------------------------------------------------------- */

/* GET PREFIX/info. */
static void sj_info(struct pb_req *r)
{
	struct pb_buf b;
	uint32_t entropy = 0;

	if (gnutls_rnd(GNUTLS_RND_NONCE, &entropy, sizeof(entropy)) < 0)
		entropy = (uint32_t)time(NULL) ^ (uint32_t)(uintptr_t)r;
	pb_buf_init(&b, 0);
	if (pb_sockjs_info(&b, 0, entropy)) {
		pb_buf_free(&b);
		pb_req_finish(r, 500, NULL);
		return;
	}
	{
		struct MHD_Response *resp = pb_req_response(r, &b, CT_JSON);

		if (resp) {
			sj_no_cache(resp);
			sj_cors_headers(r, resp);
		}
		pb_req_finish(r, 200, resp);
	}
}

/* GET PREFIX/iframe*.html: the page, or 304 for a matching If-None-Match. */
static void sj_iframe(struct pb_req *r)
{
	const char *url = pb_req_config(r)->sockjs_url;
	const char *inm = MHD_lookup_connection_value(pb_req_conn(r), MHD_HEADER_KIND,
						      MHD_HTTP_HEADER_IF_NONE_MATCH);
	char etag[PB_SOCKJS_ETAG_LEN + 1];
	struct MHD_Response *resp;
	struct pb_buf b;

	if (!url) {
		/* Nothing is loaded from a third party by default. */
		sj_text(r, 404, "No --sockjs-url is configured: the iframe transports are off.\n", 0);
		return;
	}
	pb_buf_init(&b, 0);
	if (pb_sockjs_iframe(&b, url, etag)) {
		pb_buf_free(&b);
		pb_req_finish(r, 500, NULL);
		return;
	}
	if (inm && !strcmp(inm, etag)) {
		pb_buf_free(&b);
		resp = pb_req_response(r, &b, NULL);
		if (resp) {
			sj_cache_for(resp);
			MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
		}
		pb_req_finish(r, 304, resp);
		return;
	}
	resp = pb_req_response(r, &b, CT_HTML);
	if (resp) {
		sj_cache_for(resp);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
	}
	pb_req_finish(r, 200, resp);
}

/* ---- sending ---------------------------------------------------------------- */

/* 1 if the request's body is a form (jsonp_send from a form post). */
static int sj_is_form(struct pb_req *r)
{
	const char *ct = MHD_lookup_connection_value(pb_req_conn(r), MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_TYPE);
	static const char form[] = "application/x-www-form-urlencoded";

	if (!ct)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return !strncasecmp(ct, form, sizeof(form) - 1) &&
	       (ct[sizeof(form) - 1] == '\0' || ct[sizeof(form) - 1] == ';' ||
		ct[sizeof(form) - 1] == ' ' || ct[sizeof(form) - 1] == '\t');
}

/* Core answer to xhr_send / jsonp_send. */
static void sj_sent(void *req, int err, const struct pb_core_send_result *res)
{
	struct pb_req *r = req;
	struct sj_req *s;

	(void)res;
	if (pb_req_gone(r))
		return;
	s = sj_of(r);
	if (err == PB_ECLOSED)
		err = 0;        /* the session closed: its close frame tells the client */
	if (err == PB_ENOSESSION) {
		sj_text(r, 404, NULL, 1);
	} else if (err) {
		sj_fail(r, err);
	} else if (s->t == PB_SOCKJS_JSONP_SEND) {
		sj_text(r, 200, "ok", 1);
	} else {
		struct pb_buf b;
		struct MHD_Response *resp;

		pb_buf_init(&b, 0);
		resp = pb_req_response(r, &b, CT_TEXT);
		if (resp)
			sj_session_headers(r, resp);
		pb_req_finish(r, 204, resp);
	}
}

/* xhr_send / jsonp_send: parse and queue the messages. */
static void sj_send(struct pb_req *r, struct sj_req *s)
{
	const struct pb_config *cfg = pb_req_config(r);
	struct pb_send_req sr;
	const char *body, *why = NULL;
	size_t len;
	int e;

	body = pb_req_body(r, &len);
	e = pb_sockjs_parse_send(body, len, s->t == PB_SOCKJS_JSONP_SEND && sj_is_form(r),
				 cfg->max_message_bytes, cfg->queue_max, &sr, &why);
	if (e == PB_EBADREQ) {
		sj_text(r, 500, why, 1);
		return;
	}
	if (e) {
		sj_fail(r, e);
		return;
	}
	pb_req_core_begin(r);
	pb_core_send(pb_req_core(r), s->id, &sr, sj_sent, r);
	pb_send_req_free(&sr);
}

/* ---- receiving -------------------------------------------------------------- */

static void sj_receive(struct pb_req *r);

/* A fire-and-forget end of a session (an upstream binary message). */
static void sj_ended(void *req, int err)
{
	(void)err;
	free(req);
}

/* End session id now: what it got cannot be expressed in SockJS. The
 * request may be answered before the end is, so the callback gets a token
 * of its own (id itself need only last the call: the core copies it). */
static void sj_end_session(struct pb_req *r, const char *id)
{
	void *token = malloc(1);

	if (token)
		pb_core_delete(pb_req_core(r), id, sj_ended, token);
}

/* Append frame f (a NUL-terminated frame or f[0..len)) framed for s. */
static int sj_put(struct pb_buf *out, const struct sj_req *s, const char *f, size_t len)
{
	return pb_sockjs_wrap(out, s->t, f, len, s->callback);
}

/* Append a close frame framed for s. */
static int sj_put_close(struct pb_buf *out, const struct sj_req *s, int code, const char *reason,
			size_t reason_len)
{
	struct pb_buf f;
	int e;

	pb_buf_init(&f, 0);
	e = pb_sockjs_frame_close(&f, code, reason, reason_len);
	if (!e)
		e = sj_put(out, s, f.data, f.len);
	pb_buf_free(&f);
	return e;
}

/* Append the frames for batch b: the text messages (up to an upstream
 * binary one, which closes the session with 1003), then the close. A
 * jsonp answer carries one frame, so it stops after the first one (xhr
 * and the streams take several lines). *closing is set when the session
 * must end (binary). Nothing is appended for a batch with nothing to say. */
static int sj_put_batch(struct pb_buf *out, const struct sj_req *s, const struct pb_core_batch *b,
			int *closing)
{
	size_t k, texts = 0;
	int e = 0, one = s->t == PB_SOCKJS_JSONP, frames = 0;

	for (k = 0; k < b->n && b->msgs[k]->type != PB_MSG_BINARY; k++)
		texts += b->msgs[k]->type == PB_MSG_TEXT;
	/* The session ends even if this answer has no room for the close
	 * (jsonp after text): the next request then gets c[3000,...]. */
	*closing = k < b->n;
	if (texts) {
		struct pb_buf f;

		pb_buf_init(&f, 0);
		e = pb_sockjs_frame_messages(&f, b->msgs, k);
		if (!e)
			e = sj_put(out, s, f.data, f.len);
		pb_buf_free(&f);
		frames++;
	}
	if (e || (one && frames))
		return e;
	if (k < b->n)
		return sj_put_close(out, s, 1003, "binary message", 14);
	if (b->close.closed)
		return sj_put_close(out, s, b->close.code, b->close.reason, b->close.reason_len);
	return 0;
}

/* The content type of a receiving transport. */
static const char *sj_ctype(enum pb_sockjs_transport t)
{
	switch (t) {
	case PB_SOCKJS_EVENTSOURCE: return CT_EVENTS;
	case PB_SOCKJS_HTMLFILE: return CT_HTML;
	default: return CT_JS;
	}
}

/* The answer to a receiving request that cannot read the session: the
 * close frame err stands for (after the prelude of a stream). */
static void sj_close_answer(struct pb_req *r, struct sj_req *s, int code, const char *reason)
{
	struct pb_buf b;

	pb_buf_init(&b, 0);
	if (pb_sockjs_prelude(&b, s->t, s->callback) ||
	    sj_put_close(&b, s, code, reason, strlen(reason))) {
		pb_buf_free(&b);
		pb_req_finish(r, 500, NULL);
		return;
	}
	sj_answer(r, 200, &b, sj_ctype(s->t), 1);
}

/* Answer a receiving request whose session could not be read or made. */
static void sj_receive_error(struct pb_req *r, struct sj_req *s, int err)
{
	switch (err) {
	case PB_EBUSY:
		sj_close_answer(r, s, 2010, ANOTHER_CONNECTION);
		break;
	case PB_ECLOSED:
		sj_close_answer(r, s, 3000, GO_AWAY);
		break;
	case PB_EUPSTREAM:
	case PB_ETIMEOUT:
		sj_close_answer(r, s, 1002, "Cannot connect to upstream");
		break;
	case PB_ETOOMANY:
	case PB_ECLIENTMAX:
	case PB_EMEMFULL:
	case PB_EDRAINING:
	case PB_ESTORE:
		sj_close_answer(r, s, 1013, pb_err_message(err));
		break;
	default:
		sj_fail(r, err);
		break;
	}
}

/* Core answer to a create on behalf of a receiving request. */
static void sj_created(void *req, int err, const char *id, const char *protocol);

/* Create the session (the first receiving request on it). */
static void sj_create(struct pb_req *r, struct sj_req *s)
{
	const struct pb_route *route = pb_req_route(r);
	const char *origin = pb_req_header(r, "Origin");
	struct pb_create_req cr;
	struct pb_headers fh;
	struct pb_buf fhbuf;
	const char *why = NULL;
	char addr[64];
	int e;

	if (!route) {
		sj_text(r, 404, NULL, 1);
		return;
	}
	if (origin && !pb_header_value_valid(origin, strlen(origin)))
		origin = NULL;
	memset(&cr, 0, sizeof(cr));
	pb_buf_init(&fhbuf, 65536);
	e = pb_create_req_set_route(&cr, route->name, strlen(route->name), &why);
	if (!e)
		e = pb_req_forward_headers(r, &fh, &fhbuf, &why);
	if (e) {
		pb_create_req_free(&cr);
		pb_buf_free(&fhbuf);
		if (e == PB_EBADREQ)
			sj_text(r, 400, why, 1);
		else
			sj_fail(r, e);
		return;
	}
	cr.door = PB_DOOR_SOCKJS;
	memcpy(cr.fixed_id, s->id, sizeof(cr.fixed_id));
	pb_req_client_address(r, addr, sizeof(addr));
	s->tries++;
	pb_req_core_begin(r);
	pb_core_create(pb_req_core(r), &cr, addr, origin, &fh, sj_created, r);
	pb_create_req_free(&cr);
	pb_buf_free(&fhbuf);
}

/* Core answer to a polling read (xhr, jsonp). */
static void sj_polled(void *req, int err, const struct pb_core_batch *b)
{
	struct pb_req *r = req;
	struct sj_req *s;
	struct pb_buf out;
	int e, closing = 0;

	if (pb_req_gone(r))
		return;
	s = sj_of(r);
	if (err == PB_ENOSESSION && s->tries < MAX_CREATE_TRIES) {
		sj_create(r, s);
		return;
	}
	if (err) {
		sj_receive_error(r, s, err);
		return;
	}
	pb_buf_init(&out, 0);
	e = sj_put_batch(&out, s, b, &closing);
	if (!e && out.len == 0)
		e = sj_put(&out, s, "h", 1);    /* the heartbeat: nothing came */
	if (e) {
		pb_buf_free(&out);
		pb_req_finish(r, 500, NULL);
		return;
	}
	if (closing)
		sj_end_session(r, s->id);
	sj_answer(r, 200, &out, CT_JS, 1);
}

/* Encode one read of a stream. */
static int sj_stream_batch(struct pb_req *r, struct pb_buf *out, const struct pb_core_batch *b,
			   int *end)
{
	struct sj_req *s = sj_of(r);
	size_t before = out->len;
	int e, closing = 0;

	if (b->released) {
		*end = 1;       /* a newer request took over, or the instance drains */
		return 0;
	}
	e = sj_put_batch(out, s, b, &closing);
	if (!e && out->len == before && !b->n && !b->close.closed)
		e = sj_put(out, s, "h", 1);
	if (e)
		return e;
	s->sent += out->len - before;
	if (closing) {
		sj_end_session(r, s->id);
		*end = 1;
	}
	if (s->sent >= PB_SOCKJS_RESPONSE_LIMIT)
		*end = 1;       /* the client opens the next one */
	return 0;
}

/* The headers of a stream's response. */
static void sj_stream_headers(struct pb_req *r, struct MHD_Response *resp)
{
	sj_session_headers(r, resp);
}

static const struct pb_stream_ops sj_stream_ops = { sj_stream_batch, sj_stream_headers };

/* The stream's first read failed. */
static void sj_stream_err(struct pb_req *r, int err)
{
	struct sj_req *s = sj_of(r);

	if (err == PB_ENOSESSION && s->tries < MAX_CREATE_TRIES)
		sj_create(r, s);
	else
		sj_receive_error(r, s, err);
}

/* Start the stream of a streaming transport (after "o" if this request
 * created the session). */
static void sj_stream(struct pb_req *r, struct sj_req *s)
{
	struct pb_buf prelude;
	int e;

	pb_buf_init(&prelude, 0);
	e = pb_sockjs_prelude(&prelude, s->t, s->callback);
	if (!e && s->created) {
		size_t before = prelude.len;

		e = sj_put(&prelude, s, "o", 1);
		s->sent += prelude.len - before;
	}
	if (e) {
		pb_buf_free(&prelude);
		pb_req_finish(r, 500, NULL);
		return;
	}
	/* The streams' preludes are padding meant to get bytes past buffering
	 * proxies and old browsers' thresholds: gzip would shrink them to
	 * nothing (sockjs-node never compresses either). */
	pb_req_set_compress(r, 0);
	e = pb_req_stream(r, s->id, PB_AFTER_HANDED, PB_SOCKJS_HEARTBEAT, PB_POLL_EXCLUSIVE,
			  &prelude, sj_ctype(s->t), &sj_stream_ops, sj_stream_err);
	if (e)
		sj_fail(r, e);
}

/* Core answer to the create: "o", or the stream that starts with it. */
static void sj_created(void *req, int err, const char *id, const char *protocol)
{
	struct pb_req *r = req;
	struct sj_req *s;

	(void)id;
	(void)protocol;
	if (pb_req_gone(r))
		return;
	s = sj_of(r);
	if (err == PB_EEXIST) {
		/* Another request (perhaps on another instance) created it
		 * meanwhile: read it. */
		sj_receive(r);
		return;
	}
	if (err) {
		sj_receive_error(r, s, err);
		return;
	}
	s->created = 1;
	if (pb_sockjs_streaming(s->t)) {
		sj_stream(r, s);
	} else {
		struct pb_buf out;

		pb_buf_init(&out, 0);
		if (sj_put(&out, s, "o", 1)) {
			pb_buf_free(&out);
			pb_req_finish(r, 500, NULL);
			return;
		}
		sj_answer(r, 200, &out, CT_JS, 1);
	}
}

/* A receiving request: read the session (creating it if unknown). */
static void sj_receive(struct pb_req *r)
{
	struct sj_req *s = sj_of(r);
	const struct pb_config *cfg = pb_req_config(r);
	unsigned wait = cfg->wait_max < PB_SOCKJS_HEARTBEAT ? cfg->wait_max : PB_SOCKJS_HEARTBEAT;

	if (pb_sockjs_streaming(s->t)) {
		sj_stream(r, s);
		return;
	}
	pb_req_core_begin(r);
	/* Answered with a response (sj_answer), never a stream; an unknown
	 * session is created from the kept headers (sj_create). */
	pb_req_wait_outside_poll(r, PB_KEEP_HEADERS | PB_KEEP_CREATE);
	pb_core_poll_flags(pb_req_core(r), s->id, PB_AFTER_HANDED, wait, cfg->max_batch,
			   PB_POLL_EXCLUSIVE, sj_polled, r);
}

/* ---- dispatch --------------------------------------------------------------- */

/* The callback of an htmlfile/jsonp request into s; 0, or answered. */
static int sj_callback(struct pb_req *r, struct sj_req *s)
{
	struct MHD_Connection *conn = pb_req_conn(r);
	const char *cb = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "c");

	if (!cb)
		cb = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "callback");
	if (!cb) {
		sj_text(r, 500, "\"callback\" parameter required", 1);
		return -1;
	}
	if (!pb_sockjs_callback_valid(cb, strlen(cb))) {
		sj_text(r, 500, "invalid \"callback\" parameter", 1);
		return -1;
	}
	snprintf(s->callback, sizeof(s->callback), "%s", cb);
	return 0;
}

/* The methods each transport takes, for 405's Allow. */
static const char *sj_allowed(enum pb_sockjs_transport t)
{
	switch (t) {
	case PB_SOCKJS_XHR:
	case PB_SOCKJS_XHR_SEND:
	case PB_SOCKJS_XHR_STREAMING:
		return "OPTIONS, POST";
	case PB_SOCKJS_JSONP_SEND:
		return "POST";
	default:
		return "GET";
	}
}

/* A request on PREFIX/<server>/<session>/<transport>. */
static void sj_session(struct pb_req *r, const struct pb_sockjs_path *p)
{
	const char *method = pb_req_method(r);
	const char *allow = sj_allowed(p->transport);
	const struct pb_route *route = pb_req_route(r);
	struct sj_req *s;
	char addr[64];

	if (p->transport == PB_SOCKJS_WEBSOCKET) {
		sj_text(r, 404, NULL, 0);       /* pollbridge offers no websocket */
		return;
	}
	if (!strcmp(method, "OPTIONS") && !strcmp(allow, "OPTIONS, POST")) {
		sj_options(r, allow, 1);
		return;
	}
	if (strcmp(method, !strcmp(allow, "GET") ? "GET" : "POST")) {
		sj_not_allowed(r, allow);
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		pb_req_finish(r, 500, NULL);
		return;
	}
	pb_req_set_door_state(r, s, free);
	s->t = p->transport;
	if ((s->t == PB_SOCKJS_HTMLFILE || s->t == PB_SOCKJS_JSONP) && sj_callback(r, s))
		return;
	pb_req_client_address(r, addr, sizeof(addr));
	if (pb_sockjs_session_id(route->name, p->session, p->session_len, addr, s->id)) {
		pb_req_finish(r, 500, NULL);
		return;
	}
	pb_req_set_id(r, s->id);
	if (pb_sockjs_receiving(s->t))
		sj_receive(r);
	else
		sj_send(r, s);
}

void pb_sockjs_handle(struct pb_req *r)
{
	const char *method = pb_req_method(r);
	const char *sub = pb_req_subpath(r);
	const char *msg = NULL;
	struct pb_sockjs_path p;
	int err = pb_req_early_error(r, &msg);

	if (err) {
		/* Found before the body was read: answer now, no core call. */
		sj_text(r, (unsigned)pb_err_status(err), msg ? msg : pb_err_message(err), 0);
		return;
	}
	if (!pb_req_route(r)) {
		sj_text(r, 404, NULL, 0);
		return;
	}
	pb_sockjs_parse_path(sub, strlen(sub), &p);
	switch (p.kind) {
	case PB_SOCKJS_GREETING:
		if (strcmp(method, "GET"))
			sj_not_allowed(r, "GET");
		else
			sj_text(r, 200, "Welcome to SockJS!\n", 0);
		break;
	case PB_SOCKJS_INFO:
		if (!strcmp(method, "OPTIONS"))
			sj_options(r, "OPTIONS, GET", 0);
		else if (!strcmp(method, "GET"))
			sj_info(r);
		else
			sj_not_allowed(r, "OPTIONS, GET");
		break;
	case PB_SOCKJS_IFRAME:
		if (strcmp(method, "GET"))
			sj_not_allowed(r, "GET");
		else
			sj_iframe(r);
		break;
	case PB_SOCKJS_SESSION:
		sj_session(r, &p);
		break;
	default:
		sj_text(r, 404, NULL, 0);
		break;
	}
}
