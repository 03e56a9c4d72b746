/*
 * engineio.c: the Engine.IO polling front door (routes with engineio=PATH).
 * It owns the HTTP side of the protocol: the handshake, polls and posts of
 * socket.io-client 1.x-4.x (Engine.IO v3 and v4, XHR and JSONP), their
 * query parameters, engine.io's error answers, CORS preflights, and the
 * mapping of each onto the session core: one session (door ENGINEIO, dialled
 * with the client's EIO) per Engine.IO socket, one upstream frame per
 * packet. The byte formats are in eio_codec.c.
 *
 * The rules where the protocol leaves a choice (docs/API.md):
 * - a handshake GET creates the session and waits up to --connect-timeout
 *   for the upstream's open packet, which it answers rewritten (sid = the
 *   session id, upgrades [], maxPayload at most --max-message-bytes) with
 *   whatever followed it;
 * - a GET acknowledges what the previous read handed out (PB_AFTER_HANDED),
 *   waits up to --wait-max and answers a noop ("6") when nothing came; a
 *   newer GET releases an older waiting one, which answers "6" too;
 * - an upstream close reaches the client as a close packet ("1") after the
 *   queued packets, never in the same answer as messages; a client close
 *   packet queues a close marker (PB_MSG_CLOSE) behind the packets before
 *   it, so the upstream gets them all and then 1000;
 * - a v3 client that takes binary payloads (no b64, not JSONP) gets the sid
 *   "<id>.b", so that any instance knows to answer it in binary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "eio_codec.h"
#include "engineio.h"
#include "error.h"
#include "front_req.h"

/* The sid suffix of a v3 session whose client takes binary payloads. */
#define EIO_BINARY_SUFFIX ".b"

/* What a request keeps while the core works for it. */
struct eio_state {
	int version;                    /* 3 or 4 */
	int binary;                     /* v3 binary payloads allowed */
	int jsonp;                      /* j= given: answer ___eio[j](...) */
	char j[PB_EIO_MAX_JSONP_INDEX + 1];
	char id[PB_ID_LEN + 1];
};

/* A query parameter of r (NULL if absent). */
static const char *eio_arg(struct pb_req *r, const char *name)
{
	return MHD_lookup_connection_value(pb_req_conn(r), MHD_GET_ARGUMENT_KIND, name);
}

/* Answer r with body (taken) and content type. */
static void eio_answer(struct pb_req *r, unsigned status, struct pb_buf *body, const char *ctype)
{
	pb_req_finish(r, status, pb_req_response(r, body, ctype));
}

/* Answer engine.io's error JSON {"code":code,"message":...}. */
static void eio_error(struct pb_req *r, unsigned status, int code, const char *message)
{
	struct pb_buf b;

	pb_buf_init(&b, 0);
	if (pb_eio_put_error(&b, code, message)) {
		pb_buf_free(&b);
		pb_req_finish(r, 500, NULL);
		return;
	}
	eio_answer(r, status, &b, "application/json");
}

/* Answer a PB_E* error from the front or the core in engine.io's form: an
 * unknown or ended session is code 1 (400), a refused request code 3 (400),
 * anything else code 3 with the bridge's own status and message (413, 429,
 * 502, 503, 504, 500). */
static void eio_fail(struct pb_req *r, int err)
{
	switch (err) {
	case PB_ENOSESSION:
	case PB_ECLOSED:
	case PB_ELOST:
		eio_error(r, 400, PB_EIO_ERR_SID, NULL);
		return;
	case PB_EBADREQ:
	case PB_EMEDIA:
	case PB_ESEQGAP:
	case PB_EEXIST:
	case PB_EBUSY:
		eio_error(r, 400, PB_EIO_ERR_BADREQ, NULL);
		return;
	default:
		eio_error(r, (unsigned)pb_err_status(err), PB_EIO_ERR_BADREQ, pb_err_message(err));
		return;
	}
}

/* Answer a finished payload: as JSONP, as text, or as a v3 binary payload. */
static void eio_payload(struct pb_req *r, struct eio_state *st, struct pb_buf *p, int binary)
{
	struct pb_buf js;

	if (st->jsonp) {
		pb_buf_init(&js, 0);
		if (pb_eio_put_jsonp(&js, st->j, p->data, p->len)) {
			pb_buf_free(p);
			pb_buf_free(&js);
			pb_req_finish(r, 500, NULL);
			return;
		}
		pb_buf_free(p);
		eio_answer(r, 200, &js, "text/javascript; charset=UTF-8");
		return;
	}
	eio_answer(r, 200, p, binary ? "application/octet-stream" : "text/plain; charset=UTF-8");
}

/* 1 if the batch carries a binary message. */
static int eio_has_binary(const struct pb_core_batch *b, size_t from)
{
	for (size_t i = from; i < b->n; i++)
		if (b->msgs[i]->type == PB_MSG_BINARY)
			return 1;
	return 0;
}

/* Encode into p the packet first (may be NULL), b's messages from index
 * from (b may be NULL), the close packet if the upstream closed, and a noop
 * if nothing else went in. *binary tells if p is a v3 binary payload. 0 or
 * PB_ENOMEM (p is then empty). */
static int eio_build(struct eio_state *st, const struct pb_core_batch *b, size_t from,
		     const struct pb_buf *first, struct pb_buf *p, int *binary)
{
	struct pb_eio_enc e;
	int err = 0;

	*binary = st->version == 3 && st->binary && b && eio_has_binary(b, from);
	pb_buf_init(p, 0);
	pb_eio_enc_init(&e, p, st->version, *binary);
	if (first)
		err = pb_eio_enc_text(&e, first->data, first->len);
	for (size_t i = from; b && !err && i < b->n; i++)
		err = pb_eio_enc_msg(&e, b->msgs[i]);
	if (!err && b && b->close.closed)
		err = pb_eio_enc_text(&e, "1", 1);
	if (!err && e.n == 0)
		err = pb_eio_enc_text(&e, "6", 1);
	if (err)
		pb_buf_free(p);
	return err;
}

/* Encode (as eio_build) and answer. */
static void eio_send_batch(struct pb_req *r, struct eio_state *st, const struct pb_core_batch *b,
			   size_t from, const struct pb_buf *first)
{
	struct pb_buf p;
	int binary;

	if (eio_build(st, b, from, first, &p, &binary)) {
		pb_req_finish(r, 500, NULL);
		return;
	}
	eio_payload(r, st, &p, binary);
}

/* Core callback of a delete nobody waits for. */
static void eio_dropped(void *req, int err)
{
	(void)req;
	(void)err;
}

/* ---- handshake ---------------------------------------------------------- */

/* The largest payload the client may post: the message limit, and never
 * more than the body limit. */
static uint64_t eio_max_payload(const struct pb_config *cfg)
{
	uint64_t body = cfg->max_body_bytes ? cfg->max_body_bytes :
			(uint64_t)cfg->max_message_bytes * 2 + 65536;

	return cfg->max_message_bytes < body ? cfg->max_message_bytes : body;
}

/* Core answer to the handshake's first read: the upstream's open packet. */
static void eio_opened(void *req, int err, const struct pb_core_batch *b)
{
	struct pb_req *r = req;
	struct eio_state *st;
	struct pb_buf open;
	char sid[PB_ID_LEN + sizeof(EIO_BINARY_SUFFIX)];

	if (pb_req_gone(r))
		return;
	st = pb_req_door_state(r);
	if (err) {
		eio_fail(r, err);
		return;
	}
	if (b->n == 0) {
		if (b->close.closed && st->version == 3) {
			/* What a v4-only engine.io does to an EIO=3 WebSocket:
			 * it completes the upgrade, then drops the socket. */
			eio_error(r, 400, PB_EIO_ERR_VERSION, NULL);
		} else if (b->close.closed) {
			eio_error(r, 502, PB_EIO_ERR_BADREQ,
				  "the upstream closed before its open packet");
		} else {
			pb_core_delete(pb_req_core(r), st->id, eio_dropped, NULL);
			eio_error(r, b->released ? 503 : 504, PB_EIO_ERR_BADREQ,
				  b->released ? pb_err_message(PB_EDRAINING) :
				  "no open packet from the upstream in time");
		}
		return;
	}
	snprintf(sid, sizeof(sid), "%s%s", st->id, st->binary ? EIO_BINARY_SUFFIX : "");
	pb_buf_init(&open, 0);
	err = b->msgs[0]->type != PB_MSG_TEXT ? PB_EBADREQ :
	      pb_eio_rewrite_open(b->msgs[0]->data, b->msgs[0]->len, sid,
				  st->version == 4 ? eio_max_payload(pb_req_config(r)) : 0, &open);
	if (err) {
		pb_buf_free(&open);
		if (err != PB_ENOMEM)
			pb_core_delete(pb_req_core(r), st->id, eio_dropped, NULL);
		eio_error(r, err == PB_ENOMEM ? 500 : 502, PB_EIO_ERR_BADREQ,
			  err == PB_ENOMEM ? NULL : "the upstream's first packet is not an "
			  "Engine.IO open packet");
		return;
	}
	eio_send_batch(r, st, b, 1, &open);
	pb_buf_free(&open);
}

/* Core answer to the handshake's create. */
static void eio_created(void *req, int err, const char *id, const char *protocol)
{
	struct pb_req *r = req;
	struct eio_state *st;
	const struct pb_config *cfg;

	(void)protocol;
	if (pb_req_gone(r))
		return;
	st = pb_req_door_state(r);
	if (err) {
		/* A v3 client on a server that only speaks v4 (socket.io 3+
		 * without allowEIO3, Flask-SocketIO 5) is refused at the
		 * upstream's WebSocket handshake; engine.io answers that
		 * client code 5, and so does the bridge. */
		if (err == PB_EUPSTREAM && st->version == 3)
			eio_error(r, 400, PB_EIO_ERR_VERSION, NULL);
		else
			eio_fail(r, err);
		return;
	}
	snprintf(st->id, sizeof(st->id), "%s", id);
	pb_req_set_id(r, st->id);
	cfg = pb_req_config(r);
	pb_req_core_begin(r);
	pb_core_poll(pb_req_core(r), st->id, 0, cfg->connect_timeout, cfg->max_batch,
		     eio_opened, r);
}

/* GET without sid: a new session. */
static void eio_handshake(struct pb_req *r, struct eio_state *st)
{
	const struct pb_route *rt = pb_req_route(r);
	const char *origin, *why = NULL;
	struct pb_create_req cr;
	struct pb_headers fh;
	struct pb_buf fhbuf;
	char addr[64];
	int err;

	if (!rt) {
		eio_error(r, 404, PB_EIO_ERR_BADREQ, pb_err_message(PB_ENOROUTE));
		return;
	}
	memset(&cr, 0, sizeof(cr));
	memset(&fh, 0, sizeof(fh));
	cr.door = PB_DOOR_ENGINEIO;
	cr.eio = st->version;
	err = pb_create_req_set_route(&cr, rt->name, strlen(rt->name), &why);
	origin = MHD_lookup_connection_value(pb_req_conn(r), MHD_HEADER_KIND, "Origin");
	if (!err && origin && !pb_header_value_valid(origin, strlen(origin)))
		err = PB_EBADREQ;
	pb_buf_init(&fhbuf, 65536);
	if (!err)
		err = pb_req_forward_headers(r, &fh, &fhbuf, &why);
	if (err) {
		pb_create_req_free(&cr);
		pb_buf_free(&fhbuf);
		eio_fail(r, err);
		return;
	}
	pb_req_client_address(r, addr, sizeof(addr));
	pb_req_core_begin(r);
	pb_req_wait_outside(r, 0);         /* the rest is answered from st alone */
	pb_core_create(pb_req_core(r), &cr, addr, origin, &fh, eio_created, r);
	pb_create_req_free(&cr);
	pb_buf_free(&fhbuf);
}

/* ---- polls -------------------------------------------------------------- */

/* Core answer to a GET ?sid=. */
static void eio_polled(void *req, int err, const struct pb_core_batch *b)
{
	struct pb_req *r = req;
	struct pb_core_batch nb;
	struct eio_state *st;
	struct pb_buf p;
	int binary;

	if (pb_req_gone(r))
		return;
	if (err) {
		eio_fail(r, err);
		return;
	}
	st = pb_req_door_state(r);
	/* The close packet never shares an answer with messages: the next GET
	 * (which acknowledges them) gets it alone, as engine.io sends its
	 * close only once the write buffer has drained. socket.io-client
	 * handles a payload's packets on later ticks, so a close in the same
	 * answer would overtake them (a server's disconnect would read as a
	 * transport close). */
	nb = *b;
	if (nb.n)
		nb.close.closed = 0;
	/* Released (a newer GET took over, or a drain) or nothing within
	 * --wait-max: a noop, as engine.io answers a poll it lets go. */
	if (eio_build(st, nb.released ? NULL : &nb, 0, NULL, &p, &binary)) {
		pb_req_finish(r, 500, NULL);
		return;
	}
	/* The close packet goes out: the sid is unknown from now on, as in
	 * engine.io (a lost answer makes the client reconnect all the same).
	 * Only now: the batch's messages are borrowed from the session. */
	if (!nb.released && nb.close.closed)
		pb_core_delete(pb_req_core(r), st->id, eio_dropped, NULL);
	eio_payload(r, st, &p, binary);
}

/* ---- posts -------------------------------------------------------------- */

/* Answer a POST whose packets are queued: "ok". */
static void eio_ok(struct pb_req *r)
{
	struct pb_buf ok;

	pb_buf_init(&ok, 0);
	if (pb_buf_puts(&ok, "ok")) {
		pb_req_finish(r, 500, NULL);
		return;
	}
	/* text/html, as engine.io answers (a download dialog otherwise on
	 * some browsers). */
	eio_answer(r, 200, &ok, "text/html");
}

/* Core answer to a POST's send. */
static void eio_sent(void *req, int err, const struct pb_core_send_result *res)
{
	struct pb_req *r = req;

	(void)res;
	if (pb_req_gone(r))
		return;
	if (err) {
		eio_fail(r, err);
		return;
	}
	eio_ok(r);
}

/* 1 if the request's media type is application/octet-stream. */
static int eio_octet_stream(struct pb_req *r)
{
	static const char mt[] = "application/octet-stream";
	const char *ct = MHD_lookup_connection_value(pb_req_conn(r), MHD_HEADER_KIND,
						     "Content-Type");
	size_t n = sizeof(mt) - 1;

	return ct && strncasecmp(ct, mt, n) == 0 && (ct[n] == '\0' || ct[n] == ';' ||
						    ct[n] == ' ');
}

/* POST ?sid=: the client's packets, each one upstream frame. */
static void eio_post(struct pb_req *r, struct eio_state *st)
{
	const struct pb_config *cfg = pb_req_config(r);
	struct pb_send_req sr;
	struct pb_eio_in in;
	struct pb_buf form;
	const char *body, *why = NULL;
	size_t len;
	int binary = eio_octet_stream(r), err;

	body = pb_req_body(r, &len);
	if (binary && (st->version == 4 || st->jsonp)) {
		/* engine.io 6 refuses a binary body for v4. */
		eio_error(r, 400, PB_EIO_ERR_BADREQ, NULL);
		return;
	}
	pb_buf_init(&form, 0);
	if (st->jsonp) {
		err = pb_eio_jsonp_body(body ? body : "", len, &form, &why);
		if (err) {
			pb_buf_free(&form);
			eio_fail(r, err);
			return;
		}
		body = form.data ? form.data : "";
		len = form.len;
	}
	err = pb_eio_decode(st->version, binary, body ? body : "", len, cfg->max_message_bytes,
			    cfg->queue_max ? cfg->queue_max : 1, &in, &why);
	pb_buf_free(&form);
	if (err) {
		eio_fail(r, err);
		return;
	}
	if (in.close) {
		/* The close goes in the queue behind the packets before it (of
		 * this POST and of earlier ones not yet written): the core
		 * closes the upstream with 1000 once they are out. */
		struct pb_msg **m = realloc(in.msgs, (in.n + 1) * sizeof(*m));

		if (m)
			in.msgs = m;
		if (!m || !(m[in.n] = pb_msg_new(PB_MSG_CLOSE, NULL, 0))) {
			pb_eio_in_free(&in);
			eio_fail(r, PB_ENOMEM);
			return;
		}
		in.cap = ++in.n;
	}
	/* Even with nothing to send (a noop): the send checks the session. */
	memset(&sr, 0, sizeof(sr));
	sr.msgs = in.msgs;
	sr.n = in.n;
	pb_req_core_begin(r);
	pb_core_send(pb_req_core(r), st->id, &sr, eio_sent, r);
	pb_eio_in_free(&in);
}

/* ---- dispatch ----------------------------------------------------------- */

/* OPTIONS: the CORS preflight of a POST with a Content-Type (the v3 binary
 * payload), answered as engine.io's XHR transport does. */
static void eio_preflight(struct pb_req *r)
{
	struct MHD_Response *resp;
	struct pb_buf b;

	pb_buf_init(&b, 0);
	resp = pb_req_response(r, &b, NULL);
	if (resp && pb_req_origin(r)) {
		MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
		MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Content-Type");
		MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
	}
	pb_req_finish(r, 200, resp);
}

/* Read the sid into st: "<id>" or, for a v3 binary client, "<id>.b".
 * 0, or -1 if it cannot be a session of this door. */
static int eio_parse_sid(struct eio_state *st, const char *sid)
{
	size_t n = strlen(sid), sl = sizeof(EIO_BINARY_SUFFIX) - 1;

	if (n == PB_ID_LEN + sl && memcmp(sid + PB_ID_LEN, EIO_BINARY_SUFFIX, sl) == 0) {
		if (st->version != 3)
			return -1;
		st->binary = 1;
		n = PB_ID_LEN;
	}
	if (!pb_session_id_valid(sid, n))
		return -1;
	memcpy(st->id, sid, n);
	st->id[n] = '\0';
	return 0;
}

void pb_engineio_handle(struct pb_req *r)
{
	const char *method = pb_req_method(r), *msg = NULL, *v, *sid, *j;
	struct eio_state *st;
	int err = pb_req_early_error(r, &msg);

	if (err) {
		/* Too large a body, a bad URL or headers: found by the front. */
		eio_fail(r, err);
		return;
	}
	if (strcmp(method, "OPTIONS") == 0) {
		eio_preflight(r);
		return;
	}
	v = eio_arg(r, "transport");
	if (!v || strcmp(v, "polling") != 0) {
		/* The bridge serves polling only: no WebSocket through it. */
		eio_error(r, 400, PB_EIO_ERR_TRANSPORT, NULL);
		return;
	}
	v = eio_arg(r, "EIO");
	if (!v || (strcmp(v, "3") != 0 && strcmp(v, "4") != 0)) {
		eio_error(r, 400, PB_EIO_ERR_VERSION, NULL);
		return;
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		pb_req_finish(r, 500, NULL);
		return;
	}
	pb_req_set_door_state(r, st, free);
	st->version = v[0] - '0';
	j = eio_arg(r, "j");
	if (j) {
		st->jsonp = 1;
		snprintf(st->j, sizeof(st->j), "%s", j);
	}
	sid = eio_arg(r, "sid");
	if (!sid || !*sid) {
		if (strcmp(method, "GET") != 0) {
			eio_error(r, 400, PB_EIO_ERR_METHOD, NULL);
			return;
		}
		/* A v3 XHR2 client takes binary payloads unless it asked for
		 * base64; JSONP never does. */
		st->binary = st->version == 3 && !st->jsonp && !eio_arg(r, "b64");
		eio_handshake(r, st);
		return;
	}
	if (eio_parse_sid(st, sid)) {
		eio_error(r, 400, PB_EIO_ERR_SID, NULL);
		return;
	}
	if (st->jsonp)
		st->binary = 0;
	pb_req_set_id(r, st->id);
	if (strcmp(method, "GET") == 0) {
		const struct pb_config *cfg = pb_req_config(r);

		pb_req_core_begin(r);
		pb_req_wait_outside_poll(r, 0);         /* answered from st alone */
		pb_core_poll(pb_req_core(r), st->id, PB_AFTER_HANDED, cfg->wait_max, cfg->max_batch,
			     eio_polled, r);
	} else if (strcmp(method, "POST") == 0) {
		eio_post(r, st);
	} else {
		eio_error(r, 400, PB_EIO_ERR_BADREQ, NULL);
	}
}
