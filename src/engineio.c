/*
 * engineio.c: placeholder until the door is built; answers 404 to everything.
 */
#include "engineio.h"

#include "error.h"
#include "front_req.h"

void pb_engineio_handle(struct pb_req *r)
{
	struct pb_buf b;

	pb_buf_init(&b, 0);
	pb_req_finish(r, 404, pb_req_response(r, &b, NULL));
}
