/*
 * metrics.h: the daemon's counters, gauges and histograms, and their
 * Prometheus text exposition for GET /metrics.
 *
 * A leaf module every other may call: one process-wide set of metrics,
 * updated on the single event-loop thread (no locks). Names follow
 * Prometheus conventions: pollbridge_..._total for counters, base units
 * (seconds, bytes).
 */
#ifndef PB_METRICS_H
#define PB_METRICS_H

#include <stdint.h>

#include "buf.h"

/* Counters of one family (same name, different labels) are consecutive:
 * the exposition groups a family's samples under one HELP/TYPE. */
enum pb_counter {
	/* sessions created, by door (label door=, in enum pb_door's order:
	 * PB_C_SESSIONS_CREATED + door) */
	PB_C_SESSIONS_CREATED,          /* door="v1" */
	PB_C_SESSIONS_CREATED_ENGINEIO,
	PB_C_SESSIONS_CREATED_SOCKJS,
	PB_C_SESSIONS_ADOPTED,
	/* sessions ended here, by reason */
	PB_C_END_COMPLETED,     /* the client acknowledged the last message */
	PB_C_END_DELETED,
	PB_C_END_IDLE,
	PB_C_END_DRAINED,       /* memory store: closed by a drain */
	PB_C_END_MOVED,         /* shared store: handed to another instance */
	PB_C_CREATE_FAILED,     /* upstream unreachable or timed out */
	/* messages and bytes, by direction */
	PB_C_MSGS_IN,           /* upstream -> client, stored */
	PB_C_MSGS_OUT,          /* client -> upstream, written */
	PB_C_BYTES_IN,
	PB_C_BYTES_OUT,
	PB_C_UPSTREAM_CONNECTS,
	PB_C_UPSTREAM_FAILURES,
	PB_C_UPSTREAM_CLOSES,   /* upstream closed by itself */
	PB_C_STORE_ERRORS,
	PB_C_COUNT
};

/* Gauges of one family are consecutive, as counters. */
enum pb_gauge {
	/* owned by this instance, by door (PB_G_SESSIONS + enum pb_door) */
	PB_G_SESSIONS,          /* door="v1" */
	PB_G_SESSIONS_ENGINEIO,
	PB_G_SESSIONS_SOCKJS,
	PB_G_POLLS_WAITING,
	PB_G_STREAMS_OPEN,
	PB_G_HTTP_IN_FLIGHT,
	PB_G_COUNT
};

enum pb_histogram {
	PB_H_QUEUE_DEPTH,       /* inbound queue depth after each stored message */
	PB_H_HANDSHAKE_SECONDS, /* upstream WebSocket handshake */
	PB_H_STORE_SECONDS,     /* store operation round trip (Redis) */
	PB_H_HTTP_SECONDS,      /* request headers in to answer queued, by kind */
	PB_H_COUNT
};

/* The endpoint kinds of the request-duration histogram (its label values). */
enum pb_duration_kind {
	PB_DK_CREATE, PB_DK_SEND, PB_DK_POLL, PB_DK_STREAM, PB_DK_DELETE, PB_DK_OTHER,
	PB_DK_COUNT
};

/* Per-route figures (label route="NAME"). */
enum pb_route_metric {
	PB_RM_SESSIONS,         /* gauge: owned sessions of the route */
	PB_RM_MSGS_IN,          /* counters, as PB_C_MSGS_IN ... PB_C_BYTES_OUT */
	PB_RM_MSGS_OUT,
	PB_RM_BYTES_IN,
	PB_RM_BYTES_OUT,
	PB_RM_COUNT
};

/* Route names kept apart; the figures of any further name are added up
 * under route="_other", so the exposition stays bounded. */
#define PB_METRICS_MAX_ROUTES 256

/* The endpoints HTTP answers are counted by. */
enum pb_endpoint_metric {
	PB_EPM_CREATE, PB_EPM_POLL, PB_EPM_SEND, PB_EPM_DELETE, PB_EPM_EVENTS,
	PB_EPM_HEALTHZ, PB_EPM_METRICS, PB_EPM_LIVEZ, PB_EPM_READYZ,
	PB_EPM_ENGINEIO, PB_EPM_SOCKJS,         /* every request of a front door */
	PB_EPM_OTHER, PB_EPM_COUNT
};

/* Add n to a counter. */
void pb_metrics_add(enum pb_counter c, uint64_t n);

/* Add d (may be negative) to a gauge. */
void pb_metrics_gauge(enum pb_gauge g, int64_t d);

/* Record one observation in a histogram. */
void pb_metrics_observe(enum pb_histogram h, double v);

/* Record one observation of a labelled histogram (PB_H_HTTP_SECONDS: label
 * is an enum pb_duration_kind). */
void pb_metrics_observe_kind(enum pb_histogram h, unsigned label, double v);

/* Make route name known, so that its series are exposed (at 0) before any
 * traffic, and return its row for pb_metrics_route_add(). Call with every
 * configured route at start and after a reload; names stay known (counters
 * never go back), rows never change. */
size_t pb_metrics_route_declare(const char *name);

/* Add n (may be negative for PB_RM_SESSIONS) to a per-route figure; row is
 * what pb_metrics_route_declare() returned for the route (O(1): it is on
 * the per-message path). */
void pb_metrics_route_add(size_t row, enum pb_route_metric m, int64_t n);

/* Count one HTTP answer. */
void pb_metrics_http(enum pb_endpoint_metric ep, unsigned status);

/* A counter's current value (for tests). */
uint64_t pb_metrics_counter(enum pb_counter c);

/* A gauge's current value (the systemd STATUS= line). */
int64_t pb_metrics_gauge_value(enum pb_gauge g);

/* Append the whole exposition (text format 0.0.4) to out: the tables'
 * metrics, pollbridge_build_info and the process_* metrics read from
 * /proc/self at this moment. 0 or the pb_buf error. */
int pb_metrics_render(struct pb_buf *out);

/* Reset everything to zero (tests). */
void pb_metrics_reset(void);

#endif
