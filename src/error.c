/*
 * error.c: the table from PB_E* codes to HTTP status, API error string and
 * default message. One table, so the mapping cannot drift between modules.
 */
#include "error.h"

struct pb_err_row {
	int status;
	const char *code;
	const char *message;
};

static const struct pb_err_row pb_err_table[PB_ERR_COUNT] = {
	[0] = { 200, "ok", "ok" },
	[1] = { 400, "bad_request", "the request is malformed" },
	[2] = { 404, "unknown_route", "no such route is configured" },
	[3] = { 404, "unknown_session", "no such session" },
	[4] = { 410, "session_closed", "the session has ended" },
	[5] = { 502, "upstream_unreachable", "the upstream WebSocket could not be reached" },
	[6] = { 504, "upstream_timeout", "the upstream WebSocket handshake timed out" },
	[7] = { 503, "too_many_sessions", "this instance holds the most sessions it may" },
	[8] = { 503, "store_unavailable", "the session store is unavailable" },
	[9] = { 413, "payload_too_large", "the message or request body is too large" },
	[10] = { 415, "unsupported_media_type", "unsupported Content-Type" },
	[11] = { 429, "queue_full", "the session's send queue is full; retry later" },
	[12] = { 409, "send_seq_gap", "the send sequence number skips ahead" },
	[13] = { 500, "internal_error", "out of memory or internal error" },
	[14] = { 404, "not_found", "no such resource" },
	[15] = { 405, "method_not_allowed", "method not allowed on this resource" },
	[16] = { 503, "draining", "this instance is shutting down" },
	[17] = { 500, "internal_error", "the session moved to another instance" },
	[18] = { 429, "too_many_client_sessions",
		 "this client address holds the most sessions it may" },
	[19] = { 431, "headers_too_large", "the request line and headers are too large" },
	[20] = { 503, "buffers_full",
		 "this instance holds the most message bytes it may; retry later" },
	[21] = { 409, "session_exists", "a session with this id exists or has just ended" },
	[22] = { 409, "busy", "another request is already waiting on this session" },
};

/* The row for err, or the internal error row for an unknown code. */
static const struct pb_err_row *pb_err_row(int err)
{
	int i = -err;

	if (i < 0 || i >= PB_ERR_COUNT)
		i = -PB_ENOMEM;
	return &pb_err_table[i];
}

int pb_err_status(int err)
{
	return pb_err_row(err)->status;
}

const char *pb_err_code(int err)
{
	return pb_err_row(err)->code;
}

const char *pb_err_message(int err)
{
	return pb_err_row(err)->message;
}
