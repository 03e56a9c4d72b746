/*
 * send_check.h: the checks fuzz_send_json.c and fuzz_send_form.c share. Both
 * send parsers take the same limits and promise the same things of their
 * result (codec.h), so one input is parsed several times: with no limits,
 * with the daemon's defaults, with none at all allowed, and with limits set
 * exactly at and just below what the unlimited parse produced. That checks,
 * beyond memory safety, that a result respects its limits, that a failure
 * leaves the request empty, and that the limits are exact (the unlimited
 * result is accepted at its own size and refused one below it).
 */
#ifndef PB_FUZZ_SEND_CHECK_H
#define PB_FUZZ_SEND_CHECK_H

#include <stdint.h>
#include <string.h>

#include "codec.h"
#include "error.h"
#include "fuzz.h"

typedef int (*send_parser)(const char *body, size_t len, size_t max_msg_bytes,
			   size_t max_msgs, struct pb_send_req *req, const char **why);

/* Parse body with the given limits into req and check the result's shape;
 * returns the parser's result. */
static inline int send_parse(send_parser parse, const char *body, size_t len,
			     size_t max_bytes, size_t max_msgs, struct pb_send_req *req)
{
	const char *why = NULL;
	size_t i;
	int r;

	memset(req, 0xa5, sizeof(*req));        /* the parser must reset it */
	r = parse(body, len, max_bytes, max_msgs, req, &why);
	if (r) {
		FUZZ_CHECK(r == PB_EBADREQ || r == PB_ETOOBIG || r == PB_ENOMEM);
		FUZZ_CHECK(why != NULL && why[0] != '\0');
		FUZZ_CHECK(req->msgs == NULL && req->n == 0 && req->seq == 0);
		return r;
	}
	FUZZ_CHECK(req->n <= max_msgs);
	FUZZ_CHECK(req->n == 0 || req->msgs != NULL);
	FUZZ_CHECK(req->seq <= PB_NUM_MAX);
	for (i = 0; i < req->n; i++) {
		const struct pb_msg *m = req->msgs[i];

		FUZZ_CHECK(m != NULL && m->refs == 1 && m->seq == 0);
		FUZZ_CHECK(m->len <= max_bytes);
		FUZZ_CHECK(m->data[m->len] == '\0');
		FUZZ_CHECK(m->type == PB_MSG_TEXT || m->type == PB_MSG_BINARY);
		if (m->type == PB_MSG_TEXT)
			FUZZ_CHECK(pb_utf8_valid(m->data, m->len));
	}
	return 0;
}

/* 1 if a and b hold the same sequence number and messages. */
static inline int send_same(const struct pb_send_req *a, const struct pb_send_req *b)
{
	size_t i;

	if (a->n != b->n || a->seq != b->seq)
		return 0;
	for (i = 0; i < a->n; i++) {
		const struct pb_msg *x = a->msgs[i], *y = b->msgs[i];

		if (x->type != y->type || x->len != y->len ||
		    (x->len && memcmp(x->data, y->data, x->len)))
			return 0;
	}
	return 1;
}

/* Run every check on data[0..size) with parser parse; returns the
 * unlimited result, which the caller owns in *out (empty on failure). */
static inline int send_check_all(send_parser parse, const uint8_t *data, size_t size,
				 struct pb_send_req *out)
{
	/* An empty request body reaches the parser as (NULL, 0). */
	const char *body = size ? (const char *)data : NULL;
	struct pb_send_req loose, req;
	size_t i, longest = 0;
	int r;

	r = send_parse(parse, body, size, SIZE_MAX, SIZE_MAX, &loose);
	/* The daemon's defaults (--max-message-bytes, --queue-max). */
	if (send_parse(parse, body, size, 1024 * 1024, 1000, &req) == 0) {
		FUZZ_CHECK(r == 0 && send_same(&loose, &req));
		pb_send_req_free(&req);
	}
	if (send_parse(parse, body, size, 0, 0, &req) == 0) {
		FUZZ_CHECK(r == 0 && send_same(&loose, &req));
		pb_send_req_free(&req);
	}
	if (r) {
		*out = loose;
		return r;
	}
	for (i = 0; i < loose.n; i++)
		if (loose.msgs[i]->len > longest)
			longest = loose.msgs[i]->len;
	/* Exactly at the limits: the same request. */
	FUZZ_CHECK(send_parse(parse, body, size, longest, loose.n, &req) == 0);
	FUZZ_CHECK(send_same(&loose, &req));
	pb_send_req_free(&req);
	/* One message fewer allowed: too many. */
	if (loose.n)
		FUZZ_CHECK(send_parse(parse, body, size, longest, loose.n - 1, &req) == PB_ETOOBIG);
	/* One byte fewer allowed: the longest message is too large. */
	if (longest)
		FUZZ_CHECK(send_parse(parse, body, size, longest - 1, loose.n, &req) == PB_ETOOBIG);
	*out = loose;
	return 0;
}

#endif
