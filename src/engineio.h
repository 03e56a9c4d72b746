/*
 * engineio.h: the Engine.IO polling front door (routes with engineio=PATH):
 * socket.io-client 1.x-4.x polling sessions (Engine.IO protocol v3 and v4,
 * XHR and JSONP) relayed over one upstream WebSocket each.
 */
#ifndef PB_ENGINEIO_H
#define PB_ENGINEIO_H

struct pb_req;

/* Answer one request that came in by an engineio= door. */
void pb_engineio_handle(struct pb_req *r);

#endif
