/*
 * front_req.h: what the HTTP front end (front.c) offers the protocol front
 * doors (engineio.c, sockjs.c). front.c keeps libmicrohttpd, the body and
 * header limits, the hostile-input defences, the access log and the HTTP
 * metrics; a door reads one request through these calls, talks to the
 * session core (session.h) and answers exactly once, possibly from a core
 * callback, or turns the answer into a stream whose bytes it encodes.
 *
 * Only front.c and the doors include this header.
 */
#ifndef PB_FRONT_REQ_H
#define PB_FRONT_REQ_H

#include <stddef.h>
#include <stdint.h>
#include <microhttpd.h>

#include "buf.h"
#include "config.h"
#include "headers.h"
#include "session.h"

struct pb_req;

/* ---- the request --------------------------------------------------------- */

/* libmicrohttpd's connection: NULL once the request waits outside it
 * (pb_req_wait_outside); read headers with pb_req_header then. */
struct MHD_Connection *pb_req_conn(struct pb_req *r);
/* The value of the request header name (the first one), or NULL. Once the
 * request waits outside libmicrohttpd only what pb_req_wait_outside()
 * asked to keep is left (copied when it left). */
const char *pb_req_header(struct pb_req *r, const char *name);
/* What a request waiting outside libmicrohttpd keeps for its answer
 * (pb_req_wait_outside), beyond pb_req_origin and pb_req_client_address. */
enum {
	PB_KEEP_HEADERS = 1,    /* Cookie, Access-Control-Request-Headers */
	PB_KEEP_CREATE = 2,     /* Origin and pb_req_forward_headers' result,
				   for a create started after it left */
};

/* The core call the door is starting (inside its handler) is answered
 * with pb_req_finish(), never with a stream, and the answer is built from
 * the door's own state and what keep (PB_KEEP_* flags, or 0) keeps
 * readable: if it has to wait on plain HTTP, the request may then wait
 * outside libmicrohttpd (--lean-long-polls), keeping only its socket. A
 * GET, or a POST with no body. */
void pb_req_wait_outside(struct pb_req *r, int keep);
/* The same for a poll: the core call is pb_core_poll*() on the session
 * named by pb_req_set_id(), with r as its req. The request then waits in
 * libmicrohttpd while the poll's first read is in flight, and leaves only
 * once that read found nothing (pb_core_poll_parked): on a shared store,
 * most reads under load find messages, and their answers are a
 * millisecond away. */
void pb_req_wait_outside_poll(struct pb_req *r, int keep);
struct pb_core *pb_req_core(struct pb_req *r);
const struct pb_config *pb_req_config(struct pb_req *r);
/* The route whose door the request came in by, looked up by name in the
 * live table: NULL if a reload removed the route since the request came
 * in (answer as for an unknown path). Do not keep it across core calls. */
const struct pb_route *pb_req_route(struct pb_req *r);
const char *pb_req_method(struct pb_req *r);
/* The percent-decoded URL path, without the query. */
const char *pb_req_path(struct pb_req *r);
/* The path after the door's own: "" or "/..." (sockjs), "" (engineio). */
const char *pb_req_subpath(struct pb_req *r);
/* The whole request body (NULL when empty); *len gets its length. */
const char *pb_req_body(struct pb_req *r, size_t *len);
/* An error front.c found before dispatch (the body too large, a NUL in the
 * URL, ...): 0, or a PB_E* code with *msg (may be NULL). The door answers
 * it in its own protocol's error format. Found before the body was read
 * (headers too large: PB_EHEADERS; Content-Length over the limit:
 * PB_ETOOBIG; ambiguous framing: PB_EBADREQ), the door must answer before
 * its handler returns, without a core call, and the connection is then
 * closed; a chunked body over the limit (PB_ETOOBIG) or a NUL in the URL
 * (PB_EBADREQ) come with an ordinary dispatch. */
int pb_req_early_error(struct pb_req *r, const char **msg);
/* The Origin header if --cors-origin allows it, else NULL. */
const char *pb_req_origin(struct pb_req *r);
/* The client's address as text ("127.0.0.1", "::1"), or "" if unknown. */
void pb_req_client_address(struct pb_req *r, char *out, size_t outlen);
/* The request headers that go on the upstream handshake (the configured
 * --forward-header ones and X-Forwarded-For), their values kept in buf. 0,
 * PB_EBADREQ with *why, or PB_ENOMEM. */
int pb_req_forward_headers(struct pb_req *r, struct pb_headers *fh, struct pb_buf *buf,
			   const char **why);
/* Name the session the request is about, for the access log (its first 6
 * characters; the id is masked the same way in the logged path). */
void pb_req_set_id(struct pb_req *r, const char *id);

/* A pointer the door keeps with the request, freed by free_fn (may be
 * NULL) when the request is freed. */
void *pb_req_door_state(struct pb_req *r);
void pb_req_set_door_state(struct pb_req *r, void *p, void (*free_fn)(void *));

/* ---- the core ------------------------------------------------------------ */

/* Call right before every pb_core_* call that takes r as its req: the
 * request is then held by the core until its callback. */
void pb_req_core_begin(struct pb_req *r);
/* First thing in every core callback: 1 if the client went away meanwhile,
 * in which case r has been freed and must not be used. */
int pb_req_gone(struct pb_req *r);

/* ---- answers ------------------------------------------------------------- */

/* Whether r's answers (pb_req_response() bodies of at least
 * --compress-min-bytes, and a pb_req_stream()) are gzipped for a client
 * whose Accept-Encoding takes it: on for every door request, as for /v1
 * polls and streams (never for HEAD). A door whose protocol forbids a
 * content coding on an answer (padding that must reach a buffering proxy
 * as sent) turns it off before answering. */
void pb_req_set_compress(struct pb_req *r, int on);

/* A response with body (taken) and the headers every answer carries:
 * Cache-Control: no-store, Vary: Origin, CORS with credentials for an
 * allowed Origin, Connection: close while draining. The door may add
 * headers before finishing. NULL on allocation failure. */
struct MHD_Response *pb_req_response(struct pb_req *r, struct pb_buf *body, const char *ctype);
/* Answer the request with status and resp (NULL: a 500 with no body).
 * Exactly once per request (a stream started by pb_req_stream() is its
 * answer). From a core callback, after pb_req_gone() said 0. */
void pb_req_finish(struct pb_req *r, unsigned status, struct MHD_Response *resp);

/* ---- streams ------------------------------------------------------------- */

/* How a door encodes a stream (SockJS xhr_streaming, eventsource,
 * htmlfile). front.c owns the content reader, the suspension and the core
 * reads. */
struct pb_stream_ops {
	/* Append the encoding of b (its messages, its close, or nothing: a
	 * heartbeat is due) to out. Set *end to finish the stream once out is
	 * written; the stream also ends after a batch with close.closed or
	 * released set (a newer read took over, or the instance drains), and
	 * after an error. 0 or PB_ENOMEM (the stream ends). Not called for an
	 * empty first read. */
	int (*batch)(struct pb_req *r, struct pb_buf *out, const struct pb_core_batch *b,
		     int *end);
	/* Add headers to the stream's response before it is queued (may be
	 * NULL). */
	void (*headers)(struct pb_req *r, struct MHD_Response *resp);
};

/* Answer with a 200 stream of content type ctype (copied) on session id
 * (at most PB_ID_LEN characters): prelude (taken; may be empty) first,
 * then the encoding of each core read, each handed to the client as soon
 * as it is encoded (nothing is held back to fill a block). The first read
 * does not wait and acknowledges after (PB_AFTER_HANDED for a cursorless
 * protocol); later ones acknowledge nothing, read past the last seq
 * streamed and wait up to heartbeat seconds (0: --sse-heartbeat). flags
 * (PB_POLL_EXCLUSIVE) apply to the first read. If the first read fails,
 * err_cb (NULL: the /v1 error JSON) is called instead, with r alive; it
 * answers (pb_req_finish) or starts a core call (pb_req_core_begin). The
 * response gets the common headers, X-Accel-Buffering: no, and what
 * ops->headers adds. 0 (the stream or err_cb answers, perhaps already),
 * or PB_EBADREQ / PB_ENOMEM: nothing was started, prelude is freed, the
 * door answers. Call it instead of pb_req_finish, not after
 * pb_req_core_begin. */
int pb_req_stream(struct pb_req *r, const char *id, uint64_t after, unsigned heartbeat,
		  unsigned flags, struct pb_buf *prelude, const char *ctype,
		  const struct pb_stream_ops *ops, void (*err_cb)(struct pb_req *r, int err));

#endif
