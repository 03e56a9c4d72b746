/*
 * error.h: the error codes every module returns, and how each maps onto the
 * HTTP status and the machine-readable "error" string of docs/API.md.
 *
 * Functions return 0 on success or a negative PB_E* code. The front end is
 * the only place that turns a code into an HTTP response.
 */
#ifndef PB_ERROR_H
#define PB_ERROR_H

enum pb_err {
	PB_OK = 0,
	PB_EBADREQ = -1,        /* 400 bad_request */
	PB_ENOROUTE = -2,       /* 404 unknown_route */
	PB_ENOSESSION = -3,     /* 404 unknown_session */
	PB_ECLOSED = -4,        /* 410 session_closed */
	PB_EUPSTREAM = -5,      /* 502 upstream_unreachable */
	PB_ETIMEOUT = -6,       /* 504 upstream_timeout */
	PB_ETOOMANY = -7,       /* 503 too_many_sessions */
	PB_ESTORE = -8,         /* 503 store_unavailable */
	PB_ETOOBIG = -9,        /* 413 payload_too_large */
	PB_EMEDIA = -10,        /* 415 unsupported_media_type */
	PB_EQFULL = -11,        /* 429 queue_full */
	PB_ESEQGAP = -12,       /* 409 send_seq_gap */
	PB_ENOMEM = -13,        /* 500 internal_error */
	PB_ENOTFOUND = -14,     /* 404 not_found (no such path) */
	PB_EMETHOD = -15,       /* 405 method_not_allowed */
	PB_EDRAINING = -16,     /* 503 draining (instance is shutting down) */
	PB_ELOST = -17,         /* (internal) another instance owns the session */
	PB_ECLIENTMAX = -18,    /* 429 too_many_client_sessions */
	PB_EHEADERS = -19,      /* 431 headers_too_large */
	PB_EMEMFULL = -20,      /* 503 buffers_full (--total-queue-max-bytes) */
	PB_EEXIST = -21,        /* 409 session_exists (a create with a fixed id) */
	PB_EBUSY = -22,         /* 409 busy (another request already waits) */
};
#define PB_ERR_COUNT 23

/* The HTTP status for err (0 is 200). */
int pb_err_status(int err);

/* The docs/API.md error string for err, e.g. "bad_request" (static storage). */
const char *pb_err_code(int err);

/* A default human-readable message for err. Static storage. */
const char *pb_err_message(int err);

#endif
