/*
 * metrics.c: counters, gauges and histograms, and their Prometheus text
 * exposition (see metrics.h). Every metric is described once in a table
 * (name, help, labels), so the exposition and the enums cannot drift.
 */
#include <stdio.h>
#include <string.h>

#include "metrics.h"

struct pb_counter_desc {
	const char *name;       /* family name */
	const char *help;
	const char *label;      /* "key=\"value\"" or NULL */
};

static const struct pb_counter_desc pb_counters[PB_C_COUNT] = {
	[PB_C_SESSIONS_CREATED] = { "pollbridge_sessions_created_total",
		"Sessions created on this instance.", NULL },
	[PB_C_SESSIONS_ADOPTED] = { "pollbridge_sessions_adopted_total",
		"Sessions adopted from a drained or lost instance (Redis store).", NULL },
	[PB_C_END_COMPLETED] = { "pollbridge_sessions_ended_total",
		"Sessions that ended on this instance, by reason.", "reason=\"completed\"" },
	[PB_C_END_DELETED] = { "pollbridge_sessions_ended_total", NULL, "reason=\"deleted\"" },
	[PB_C_END_IDLE] = { "pollbridge_sessions_ended_total", NULL, "reason=\"idle\"" },
	[PB_C_END_DRAINED] = { "pollbridge_sessions_ended_total", NULL, "reason=\"drained\"" },
	[PB_C_END_MOVED] = { "pollbridge_sessions_ended_total", NULL, "reason=\"moved\"" },
	[PB_C_CREATE_FAILED] = { "pollbridge_sessions_ended_total", NULL,
		"reason=\"create_failed\"" },
	[PB_C_MSGS_IN] = { "pollbridge_messages_total",
		"Messages through the bridge, by direction.", "direction=\"upstream_to_client\"" },
	[PB_C_MSGS_OUT] = { "pollbridge_messages_total", NULL,
		"direction=\"client_to_upstream\"" },
	[PB_C_BYTES_IN] = { "pollbridge_message_bytes_total",
		"Message payload bytes through the bridge, by direction.",
		"direction=\"upstream_to_client\"" },
	[PB_C_BYTES_OUT] = { "pollbridge_message_bytes_total", NULL,
		"direction=\"client_to_upstream\"" },
	[PB_C_UPSTREAM_CONNECTS] = { "pollbridge_upstream_connects_total",
		"Upstream WebSocket handshakes completed.", NULL },
	[PB_C_UPSTREAM_FAILURES] = { "pollbridge_upstream_failures_total",
		"Upstream dials that failed or timed out.", NULL },
	[PB_C_UPSTREAM_CLOSES] = { "pollbridge_upstream_closes_total",
		"Upstream connections the upstream closed (or lost).", NULL },
	[PB_C_STORE_ERRORS] = { "pollbridge_store_errors_total",
		"Store operations that failed (unreachable, timed out, malformed reply).", NULL },
};

struct pb_gauge_desc {
	const char *name;
	const char *help;
};

static const struct pb_gauge_desc pb_gauges[PB_G_COUNT] = {
	[PB_G_SESSIONS] = { "pollbridge_sessions", "Sessions this instance owns." },
	[PB_G_POLLS_WAITING] = { "pollbridge_polls_waiting", "Long polls parked right now." },
	[PB_G_STREAMS_OPEN] = { "pollbridge_streams_open", "Open Server-Sent Event streams." },
	[PB_G_HTTP_IN_FLIGHT] = { "pollbridge_http_requests_in_flight",
		"HTTP requests received and not yet answered." },
};

#define PB_MAX_BUCKETS 12

struct pb_hist_desc {
	const char *name;
	const char *help;
	double bounds[PB_MAX_BUCKETS];
	int nbounds;
};

static const struct pb_hist_desc pb_hists[PB_H_COUNT] = {
	[PB_H_QUEUE_DEPTH] = { "pollbridge_queue_depth",
		"Messages waiting for the client after each message stored.",
		{ 1, 10, 100, 1000, 10000, 100000 }, 6 },
	[PB_H_HANDSHAKE_SECONDS] = { "pollbridge_upstream_handshake_seconds",
		"Time to complete the upstream WebSocket handshake.",
		{ 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10 }, 9 },
	[PB_H_STORE_SECONDS] = { "pollbridge_store_operation_seconds",
		"Round trip of one store operation (Redis store).",
		{ 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1 }, 9 },
};

static const char *const pb_endpoint_names[PB_EPM_COUNT] = {
	"create", "poll", "send", "delete", "events", "healthz", "metrics", "other"
};

/* HTTP status classes counted exactly: every status the API answers. */
static const unsigned pb_statuses[] = {
	200, 201, 204, 400, 404, 405, 409, 410, 413, 414, 415, 429, 431, 500, 501, 502, 503,
	504
};
#define PB_NSTATUS (sizeof(pb_statuses) / sizeof(pb_statuses[0]))

static struct {
	uint64_t counters[PB_C_COUNT];
	int64_t gauges[PB_G_COUNT];
	struct {
		uint64_t buckets[PB_MAX_BUCKETS];
		uint64_t count;
		double sum;
	} hists[PB_H_COUNT];
	uint64_t http[PB_EPM_COUNT][PB_NSTATUS + 1];     /* last: any other */
} pb_m;

void pb_metrics_add(enum pb_counter c, uint64_t n)
{
	pb_m.counters[c] += n;
}

void pb_metrics_gauge(enum pb_gauge g, int64_t d)
{
	pb_m.gauges[g] += d;
}

void pb_metrics_observe(enum pb_histogram h, double v)
{
	const struct pb_hist_desc *d = &pb_hists[h];

	for (int i = 0; i < d->nbounds; i++)
		if (v <= d->bounds[i])
			pb_m.hists[h].buckets[i]++;
	pb_m.hists[h].count++;
	pb_m.hists[h].sum += v;
}

void pb_metrics_http(enum pb_endpoint_metric ep, unsigned status)
{
	size_t i;

	for (i = 0; i < PB_NSTATUS && pb_statuses[i] != status; i++)
		;
	pb_m.http[ep][i]++;
}

uint64_t pb_metrics_counter(enum pb_counter c)
{
	return pb_m.counters[c];
}

void pb_metrics_reset(void)
{
	memset(&pb_m, 0, sizeof(pb_m));
}

/* Append "# HELP" and "# TYPE" lines. */
static int pb_metrics_head(struct pb_buf *out, const char *name, const char *help,
			   const char *type)
{
	return pb_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int pb_metrics_render(struct pb_buf *out)
{
	int r = 0;

	for (int c = 0; c < PB_C_COUNT && !r; c++) {
		const struct pb_counter_desc *d = &pb_counters[c];

		if (d->help)
			r = pb_metrics_head(out, d->name, d->help, "counter");
		if (!r && d->label)
			r = pb_buf_printf(out, "%s{%s} %llu\n", d->name, d->label,
					  (unsigned long long)pb_m.counters[c]);
		else if (!r)
			r = pb_buf_printf(out, "%s %llu\n", d->name,
					  (unsigned long long)pb_m.counters[c]);
	}
	for (int g = 0; g < PB_G_COUNT && !r; g++) {
		r = pb_metrics_head(out, pb_gauges[g].name, pb_gauges[g].help, "gauge");
		if (!r)
			r = pb_buf_printf(out, "%s %lld\n", pb_gauges[g].name,
					  (long long)pb_m.gauges[g]);
	}
	for (int h = 0; h < PB_H_COUNT && !r; h++) {
		const struct pb_hist_desc *d = &pb_hists[h];

		r = pb_metrics_head(out, d->name, d->help, "histogram");
		for (int i = 0; i < d->nbounds && !r; i++)
			r = pb_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", d->name, d->bounds[i],
					  (unsigned long long)pb_m.hists[h].buckets[i]);
		if (!r)
			r = pb_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n"
					  "%s_count %llu\n", d->name,
					  (unsigned long long)pb_m.hists[h].count, d->name,
					  pb_m.hists[h].sum, d->name,
					  (unsigned long long)pb_m.hists[h].count);
	}
	if (!r)
		r = pb_metrics_head(out, "pollbridge_http_responses_total",
				    "HTTP answers, by endpoint and status code.", "counter");
	for (int ep = 0; ep < PB_EPM_COUNT && !r; ep++)
		for (size_t i = 0; i <= PB_NSTATUS && !r; i++) {
			char code[8];

			if (!pb_m.http[ep][i])
				continue;
			if (i < PB_NSTATUS)
				snprintf(code, sizeof(code), "%u", pb_statuses[i]);
			else
				snprintf(code, sizeof(code), "other");
			r = pb_buf_printf(out,
					  "pollbridge_http_responses_total{endpoint=\"%s\",code=\"%s\"} %llu\n",
					  pb_endpoint_names[ep], code,
					  (unsigned long long)pb_m.http[ep][i]);
		}
	return r;
}
