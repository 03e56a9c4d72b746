/*
 * reload.h: SIGHUP. Re-read the command line and its --config file into a
 * new configuration, validate it as at start (TLS files included), and
 * apply it in place of the live one without dropping a connection or a
 * session.
 *
 * Every module holds a pointer to the one live struct pb_config, so the
 * new configuration is swapped in there, on the loop thread, between
 * requests. Sessions hold pointers into the route table they were created
 * with: a replaced table is kept (retired) until no session uses it
 * (pb_route.users, kept by the session core), so live sessions keep their
 * upstream and new sessions use the new table.
 */
#ifndef PB_RELOAD_H
#define PB_RELOAD_H

#include "config.h"
#include "front.h"
#include "store.h"
#include "upstream.h"

struct pb_reload;

/* Reloads of cfg (the live configuration, which stays the caller's), made
 * from argc/argv (borrowed for the daemon's life); fallback_route is the
 * route used when none is configured (NULL: none). Starts counting the
 * sessions of cfg's routes. NULL on allocation failure. */
struct pb_reload *pb_reload_new(struct pb_config *cfg, int argc, char **argv,
				const char *fallback_route);

/* The modules whose derived state a reload updates (each may be NULL). */
void pb_reload_attach(struct pb_reload *rl, struct pb_front *front, struct pb_store *store,
		      struct pb_upstream_ctx *up);

/* Re-read and apply. 0 applied (options that need a restart are logged
 * and keep their values); PB_EBADREQ when the new configuration is
 * invalid (logged with its FILE:LINE; the old one stays); PB_ENOMEM. */
int pb_reload_run(struct pb_reload *rl);

/* Free the retired route tables that no session uses any more. */
void pb_reload_collect(struct pb_reload *rl);

/* Retired route tables still kept for live sessions. */
size_t pb_reload_retired(const struct pb_reload *rl);

/* Free every retired table (after the session core is gone) and rl; the
 * live configuration is left to the caller. NULL is ignored. */
void pb_reload_free(struct pb_reload *rl);

#endif
