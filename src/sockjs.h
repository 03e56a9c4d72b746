/*
 * sockjs.h: the SockJS front door (routes with sockjs=PREFIX): sockjs-client
 * 1.x sessions over every non-WebSocket transport, relayed to a plain
 * WebSocket upstream (one SockJS message, one text frame).
 */
#ifndef PB_SOCKJS_H
#define PB_SOCKJS_H

struct pb_req;

/* Answer one request that came in by a sockjs= door. */
void pb_sockjs_handle(struct pb_req *r);

#endif
