/*
 * front.h: the HTTP front end. It owns the listening socket and
 * libmicrohttpd (driven from the daemon's libuv loop in external epoll
 * mode), routes /v1/... requests, parses and bounds their inputs, hands
 * them to the session core, parks waiting polls (suspended, or outside
 * libmicrohttpd with only their socket: --lean-long-polls) and
 * encodes the answers. Requests under a route's engineio= or sockjs= path
 * go to that front door (engineio.c, sockjs.c) through front_req.h, with
 * the same limits, defences, access log and metrics. It knows nothing of
 * WebSockets or stores.
 */
#ifndef PB_FRONT_H
#define PB_FRONT_H

#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "session.h"

struct pb_front;

/* Bind cfg's listen address and start serving on loop. NULL on failure
 * with a one-line reason in err. */
struct pb_front *pb_front_new(uv_loop_t *loop, const struct pb_config *cfg, struct pb_core *core,
			      char *err, size_t errlen);

/* Start the --admin-listen front end (cfg->admin_host must be set): plain
 * HTTP on its own libmicrohttpd daemon on the same loop, small limits,
 * serving only /metrics, /livez, /readyz and /healthz (404 for anything
 * else). Drain it and free it like the public one; draining it only turns
 * /readyz to 503, it keeps accepting until it is freed. NULL on failure
 * with a one-line reason in err. */
struct pb_front *pb_front_new_admin(uv_loop_t *loop, const struct pb_config *cfg,
				    struct pb_core *core, char *err, size_t errlen);

/* The address and port actually bound ("127.0.0.1:8080", "[::1]:8080"). */
const char *pb_front_address(const struct pb_front *f);

/* Stop accepting connections; answers from now on close their connection. */
void pb_front_drain(struct pb_front *f);

/* Requests received and not yet completed (parked polls included). */
size_t pb_front_active(const struct pb_front *f);

/* The configuration the front was given changed in place (SIGHUP): take
 * up what it derived from it at start (the body limit). Options that
 * libmicrohttpd fixed at start are not re-read (src/reload.c says so). */
void pb_front_reconfigured(struct pb_front *f);

/* Serve new HTTPS handshakes of f (the public front, started with
 * --tls-cert) with the PEM chain cert_pem and key key_pem (copied).
 * Connections already established keep their session. On failure (bad
 * PEM, a key that does not match the first certificate, f without TLS
 * or no memory) the running pair stays and err says why: PB_EBADREQ. */
int pb_front_set_tls(struct pb_front *f, const char *cert_pem, const char *key_pem, char *err,
		     size_t errlen);

/* Stop libmicrohttpd and close the loop handles; the memory is reclaimed
 * once the loop has run their close callbacks. NULL is ignored. */
void pb_front_free(struct pb_front *f);

#endif
