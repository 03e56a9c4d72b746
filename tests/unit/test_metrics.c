/*
 * test_metrics.c: the metrics module: counters, gauges, histograms and
 * HTTP answer counts move as recorded, and the exposition is valid
 * Prometheus text: every family has one HELP and one TYPE line before its
 * samples, samples of a family are contiguous, histogram buckets are
 * cumulative and end with +Inf equal to _count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "tap.h"

/* The value of the sample line that starts with prefix, or -1. */
static double sample(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
			return atof(p + n + 1);
	return -1;
}

/* Count lines starting with prefix. */
static int lines_with(const char *text, const char *prefix)
{
	int k = 0;
	size_t n = strlen(prefix);

	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		k += strncmp(p, prefix, n) == 0;
	return k;
}

/* 1 if, for every "# TYPE name", the samples named name... all follow it
 * before any other TYPE line (families are contiguous). */
static int families_contiguous(const char *text)
{
	char seen[64][96];
	int nseen = 0;
	char cur[96] = "";

	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		char name[96];

		if (strncmp(p, "# TYPE ", 7) == 0) {
			sscanf(p + 7, "%95s", cur);
			for (int i = 0; i < nseen; i++)
				if (strcmp(seen[i], cur) == 0)
					return 0;       /* a family declared twice */
			if (nseen < 64)
				snprintf(seen[nseen++], sizeof(seen[0]), "%s", cur);
			continue;
		}
		if (*p == '#')
			continue;
		sscanf(p, "%95[^{ ]", name);
		if (strncmp(name, cur, strlen(cur)) != 0)
			return 0;               /* a sample outside its family */
	}
	return 1;
}

int main(void)
{
	struct pb_buf b;

	pb_metrics_reset();
	pb_metrics_add(PB_C_SESSIONS_CREATED, 3);
	pb_metrics_add(PB_C_SESSIONS_CREATED_ENGINEIO, 2);
	pb_metrics_gauge(PB_G_SESSIONS_SOCKJS, 1);
	pb_metrics_add(PB_C_END_IDLE, 1);
	pb_metrics_add(PB_C_MSGS_IN, 10);
	pb_metrics_add(PB_C_BYTES_IN, 1234);
	pb_metrics_gauge(PB_G_POLLS_WAITING, 5);
	pb_metrics_gauge(PB_G_POLLS_WAITING, -2);
	pb_metrics_observe(PB_H_QUEUE_DEPTH, 0);
	pb_metrics_observe(PB_H_QUEUE_DEPTH, 5);
	pb_metrics_observe(PB_H_QUEUE_DEPTH, 5000);
	pb_metrics_http(PB_EPM_POLL, 200);
	pb_metrics_http(PB_EPM_POLL, 200);
	pb_metrics_http(PB_EPM_SEND, 413);
	pb_metrics_http(PB_EPM_OTHER, 418);
	tap_is_int(pb_metrics_counter(PB_C_SESSIONS_CREATED), 3, "counter reads back");

	pb_buf_init(&b, 0);
	tap_is_int(pb_metrics_render(&b), 0, "render succeeds");
	tap_ok(b.data && families_contiguous(b.data), "families declared once, samples contiguous");
	tap_is_int(sample(b.data, "pollbridge_sessions_created_total{door=\"v1\"}"), 3,
		   "created counter, door v1");
	tap_is_int(sample(b.data, "pollbridge_sessions_created_total{door=\"engineio\"}"), 2,
		   "created counter, door engineio");
	tap_is_int(sample(b.data, "pollbridge_sessions_created_total{door=\"sockjs\"}"), 0,
		   "created counter, door sockjs");
	tap_is_int(sample(b.data, "pollbridge_sessions{door=\"sockjs\"}"), 1,
		   "sessions gauge, door sockjs");
	tap_is_int(sample(b.data, "pollbridge_sessions{door=\"v1\"}"), 0, "sessions gauge, door v1");
	tap_is_int(lines_with(b.data, "# TYPE pollbridge_sessions gauge"), 1,
		   "one TYPE for the labelled gauge family");
	tap_is_int(sample(b.data, "pollbridge_sessions_ended_total{reason=\"idle\"}"), 1,
		   "ended by idle");
	tap_is_int(sample(b.data, "pollbridge_sessions_ended_total{reason=\"deleted\"}"), 0,
		   "ended by delete is 0");
	tap_is_int(lines_with(b.data, "# TYPE pollbridge_sessions_ended_total counter"), 1,
		   "one TYPE for the labelled family");
	tap_is_int(sample(b.data, "pollbridge_messages_total{direction=\"upstream_to_client\"}"), 10,
		   "messages in");
	tap_is_int(sample(b.data, "pollbridge_message_bytes_total{direction=\"upstream_to_client\"}"),
		   1234, "bytes in");
	tap_is_int(sample(b.data, "pollbridge_polls_waiting"), 3, "gauge goes up and down");
	tap_is_int(sample(b.data, "pollbridge_queue_depth_bucket{le=\"1\"}"), 1, "bucket le=1");
	tap_is_int(sample(b.data, "pollbridge_queue_depth_bucket{le=\"10\"}"), 2,
		   "buckets are cumulative");
	tap_is_int(sample(b.data, "pollbridge_queue_depth_bucket{le=\"10000\"}"), 3, "bucket le=10000");
	tap_is_int(sample(b.data, "pollbridge_queue_depth_bucket{le=\"+Inf\"}"), 3, "+Inf bucket");
	tap_is_int(sample(b.data, "pollbridge_queue_depth_count"), 3, "count equals +Inf");
	tap_is_int(sample(b.data, "pollbridge_queue_depth_sum"), 5005, "sum");
	tap_is_int(sample(b.data, "pollbridge_http_responses_total{endpoint=\"poll\",code=\"200\"}"),
		   2, "HTTP answers by endpoint and code");
	tap_is_int(sample(b.data, "pollbridge_http_responses_total{endpoint=\"send\",code=\"413\"}"),
		   1, "an error code");
	tap_is_int(sample(b.data, "pollbridge_http_responses_total{endpoint=\"other\",code=\"other\"}"),
		   1, "an unexpected code is counted as other");
	tap_is_int(lines_with(b.data, "pollbridge_http_responses_total{endpoint=\"delete\""), 0,
		   "endpoints without answers have no sample");
	tap_ok(strstr(b.data, "# HELP pollbridge_upstream_handshake_seconds ") != NULL,
	       "seconds in the name (base unit)");
	pb_buf_free(&b);
	pb_metrics_reset();
	pb_buf_init(&b, 0);
	pb_metrics_render(&b);
	tap_is_int(sample(b.data, "pollbridge_sessions_created_total{door=\"v1\"}"), 0, "reset");
	pb_buf_free(&b);
	return tap_done();
}
