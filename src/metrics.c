/*
 * metrics.c: counters, gauges and histograms, and their Prometheus text
 * exposition (see metrics.h). Every metric is described once in a table
 * (name, help, labels), so the exposition and the enums cannot drift: the
 * plain counters, gauges and histograms, the per-route figures, and the
 * process metrics computed at scrape time from /proc/self.
 */
#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "metrics.h"

struct pb_counter_desc {
	const char *name;       /* family name */
	const char *help;
	const char *label;      /* "key=\"value\"" or NULL */
};

static const struct pb_counter_desc pb_counters[PB_C_COUNT] = {
	[PB_C_SESSIONS_CREATED] = { "pollbridge_sessions_created_total",
		"Sessions created on this instance, by front door.", "door=\"v1\"" },
	[PB_C_SESSIONS_CREATED_ENGINEIO] = { "pollbridge_sessions_created_total", NULL,
		"door=\"engineio\"" },
	[PB_C_SESSIONS_CREATED_SOCKJS] = { "pollbridge_sessions_created_total", NULL,
		"door=\"sockjs\"" },
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
	const char *help;               /* NULL: same family as the gauge before */
	const char *label;              /* "key=\"value\"" or NULL */
};

static const struct pb_gauge_desc pb_gauges[PB_G_COUNT] = {
	[PB_G_SESSIONS] = { "pollbridge_sessions", "Sessions this instance owns, by front door.",
		"door=\"v1\"" },
	[PB_G_SESSIONS_ENGINEIO] = { "pollbridge_sessions", NULL, "door=\"engineio\"" },
	[PB_G_SESSIONS_SOCKJS] = { "pollbridge_sessions", NULL, "door=\"sockjs\"" },
	[PB_G_POLLS_WAITING] = { "pollbridge_polls_waiting", "Long polls parked right now.", NULL },
	[PB_G_STREAMS_OPEN] = { "pollbridge_streams_open", "Open Server-Sent Event streams.", NULL },
	[PB_G_HTTP_IN_FLIGHT] = { "pollbridge_http_requests_in_flight",
		"HTTP requests received and not yet answered.", NULL },
};

#define PB_MAX_BUCKETS 12
#define PB_MAX_SERIES 6         /* label values of one histogram */

static const char *const pb_duration_kinds[PB_DK_COUNT] = {
	[PB_DK_CREATE] = "create", [PB_DK_SEND] = "send", [PB_DK_POLL] = "poll",
	[PB_DK_STREAM] = "stream", [PB_DK_DELETE] = "delete", [PB_DK_OTHER] = "other",
};

struct pb_hist_desc {
	const char *name;
	const char *help;
	double bounds[PB_MAX_BUCKETS];
	int nbounds;
	const char *label;              /* label name, or NULL: one series */
	const char *const *values;      /* its values */
	int nvalues;
};

static const struct pb_hist_desc pb_hists[PB_H_COUNT] = {
	[PB_H_QUEUE_DEPTH] = { "pollbridge_queue_depth",
		"Messages waiting for the client after each append to the store.",
		{ 1, 10, 100, 1000, 10000, 100000 }, 6, NULL, NULL, 0 },
	[PB_H_HANDSHAKE_SECONDS] = { "pollbridge_upstream_handshake_seconds",
		"Time to complete the upstream WebSocket handshake.",
		{ 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10 }, 9, NULL, NULL, 0 },
	[PB_H_STORE_SECONDS] = { "pollbridge_store_operation_seconds",
		"Round trip of one store operation (Redis store).",
		{ 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1 }, 9, NULL, NULL, 0 },
	[PB_H_HTTP_SECONDS] = { "pollbridge_http_request_duration_seconds",
		"Time from a request's headers to its answer being queued (a poll's or "
		"stream's wait included), by endpoint kind.",
		{ 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 10, 30 }, 12, "endpoint",
		pb_duration_kinds, PB_DK_COUNT },
};

/* The per-route families: one row per enum pb_route_metric. */
struct pb_route_desc {
	const char *name;
	const char *help;               /* NULL: same family as the row before */
	const char *type;
	const char *label;              /* extra label, or NULL */
};

static const struct pb_route_desc pb_route_descs[PB_RM_COUNT] = {
	[PB_RM_SESSIONS] = { "pollbridge_route_sessions",
		"Sessions this instance owns, by route.", "gauge", NULL },
	[PB_RM_MSGS_IN] = { "pollbridge_route_messages_total",
		"Messages through the bridge, by route and direction.", "counter",
		"direction=\"upstream_to_client\"" },
	[PB_RM_MSGS_OUT] = { "pollbridge_route_messages_total", NULL, "counter",
		"direction=\"client_to_upstream\"" },
	[PB_RM_BYTES_IN] = { "pollbridge_route_message_bytes_total",
		"Message payload bytes through the bridge, by route and direction.", "counter",
		"direction=\"upstream_to_client\"" },
	[PB_RM_BYTES_OUT] = { "pollbridge_route_message_bytes_total", NULL, "counter",
		"direction=\"client_to_upstream\"" },
};

/* What one scrape reads from /proc/self (-1: could not be read). */
struct pb_proc_snap {
	double cpu_seconds, start_time, vsize, rss, open_fds, max_fds;
};

/* The process metrics of the Prometheus client libraries' conventions
 * (names, types and HELP texts as client_golang's process collector). */
struct pb_proc_desc {
	const char *name;
	const char *help;
	const char *type;
	size_t offset;                  /* into struct pb_proc_snap */
};

#define PB_SNAP(f) offsetof(struct pb_proc_snap, f)

static const struct pb_proc_desc pb_procs[] = {
	{ "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
	  "counter", PB_SNAP(cpu_seconds) },
	{ "process_open_fds", "Number of open file descriptors.", "gauge", PB_SNAP(open_fds) },
	{ "process_max_fds", "Maximum number of open file descriptors.", "gauge",
	  PB_SNAP(max_fds) },
	{ "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge",
	  PB_SNAP(vsize) },
	{ "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
	  PB_SNAP(rss) },
	{ "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
	  "gauge", PB_SNAP(start_time) },
};

static const char *const pb_endpoint_names[PB_EPM_COUNT] = {
	"create", "poll", "send", "delete", "events", "healthz", "metrics", "livez", "readyz",
	"engineio", "sockjs", "other"
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
	} hists[PB_H_COUNT][PB_MAX_SERIES];
	uint64_t http[PB_EPM_COUNT][PB_NSTATUS + 1];     /* last: any other */
	/* Route names (malloc'd), and their figures; the last row, past
	 * nroutes, is "_other". */
	char *route_names[PB_METRICS_MAX_ROUTES];
	size_t nroutes;
	int64_t routes[PB_METRICS_MAX_ROUTES + 1][PB_RM_COUNT];
} pb_m;

void pb_metrics_add(enum pb_counter c, uint64_t n)
{
	pb_m.counters[c] += n;
}

void pb_metrics_gauge(enum pb_gauge g, int64_t d)
{
	pb_m.gauges[g] += d;
}

void pb_metrics_observe_kind(enum pb_histogram h, unsigned label, double v)
{
	const struct pb_hist_desc *d = &pb_hists[h];

	if (label >= (unsigned)(d->nvalues ? d->nvalues : 1))
		return;
	/* Only the first bucket that holds v counts it (the exposition adds
	 * them up): one increment per observation, not one per bucket. */
	for (int i = 0; i < d->nbounds; i++)
		if (v <= d->bounds[i]) {
			pb_m.hists[h][label].buckets[i]++;
			break;
		}
	pb_m.hists[h][label].count++;
	pb_m.hists[h][label].sum += v;
}

void pb_metrics_observe(enum pb_histogram h, double v)
{
	pb_metrics_observe_kind(h, 0, v);
}

/* The row of route name: found, else added while there is room, else the
 * shared "_other" row. */
static size_t pb_metrics_route_row(const char *name)
{
	size_t i;

	for (i = 0; i < pb_m.nroutes; i++)
		if (strcmp(pb_m.route_names[i], name) == 0)
			return i;
	if (i < PB_METRICS_MAX_ROUTES) {
		pb_m.route_names[i] = strdup(name);
		if (pb_m.route_names[i]) {
			pb_m.nroutes++;
			return i;
		}
	}
	return PB_METRICS_MAX_ROUTES;
}

size_t pb_metrics_route_declare(const char *name)
{
	return pb_metrics_route_row(name ? name : "");
}

void pb_metrics_route_add(size_t row, enum pb_route_metric m, int64_t n)
{
	if (row > PB_METRICS_MAX_ROUTES)
		row = PB_METRICS_MAX_ROUTES;
	pb_m.routes[row][m] += n;
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

int64_t pb_metrics_gauge_value(enum pb_gauge g)
{
	return pb_m.gauges[g];
}

void pb_metrics_reset(void)
{
	for (size_t i = 0; i < pb_m.nroutes; i++)
		free(pb_m.route_names[i]);
	memset(&pb_m, 0, sizeof(pb_m));
}

/* Append "# HELP" and "# TYPE" lines. */
static int pb_metrics_head(struct pb_buf *out, const char *name, const char *help,
			   const char *type)
{
	return pb_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Append one histogram series: its buckets (as cumulative counts, from the
 * per-bucket counts kept), +Inf, sum and count, with label="value" when
 * value is not NULL. */
static int pb_metrics_hist_series(struct pb_buf *out, const struct pb_hist_desc *d,
				  const char *value, const uint64_t *buckets, uint64_t count,
				  double sum)
{
	char in[64] = "", own[64] = "";        /* inside le's braces; on their own */
	uint64_t below = 0;
	int r = 0;

	if (value) {
		snprintf(in, sizeof(in), "%s=\"%s\",", d->label, value);
		snprintf(own, sizeof(own), "{%s=\"%s\"}", d->label, value);
	}
	for (int i = 0; i < d->nbounds && !r; i++) {
		below += buckets[i];
		r = pb_buf_printf(out, "%s_bucket{%sle=\"%g\"} %llu\n", d->name, in, d->bounds[i],
				  (unsigned long long)below);
	}
	if (!r)
		r = pb_buf_printf(out, "%s_bucket{%sle=\"+Inf\"} %llu\n%s_sum%s %.9g\n"
				  "%s_count%s %llu\n", d->name, in, (unsigned long long)count,
				  d->name, own, sum, d->name, own, (unsigned long long)count);
	return r;
}

/* Append s as a label value: backslash, double quote and newline escaped. */
static int pb_metrics_label_value(struct pb_buf *out, const char *s)
{
	int r = 0;

	for (; *s && !r; s++) {
		if (*s == '\\' || *s == '"')
			r = pb_buf_printf(out, "\\%c", *s);
		else if (*s == '\n')
			r = pb_buf_puts(out, "\\n");
		else
			r = pb_buf_append(out, s, 1);
	}
	return r;
}

/* Append the per-route families: every known route, and "_other" once the
 * table of names is full. */
static int pb_metrics_render_routes(struct pb_buf *out)
{
	size_t rows = pb_m.nroutes + (pb_m.nroutes == PB_METRICS_MAX_ROUTES);
	int r = 0;

	for (int m = 0; m < PB_RM_COUNT && !r; m++) {
		const struct pb_route_desc *d = &pb_route_descs[m];

		if (d->help)
			r = pb_metrics_head(out, d->name, d->help, d->type);
		for (size_t i = 0; i < rows && !r; i++) {
			size_t row = i < pb_m.nroutes ? i : PB_METRICS_MAX_ROUTES;

			r = pb_buf_printf(out, "%s{route=\"", d->name);
			r = r ? r : pb_metrics_label_value(out, i < pb_m.nroutes ?
							   pb_m.route_names[i] : "_other");
			r = r ? r : pb_buf_printf(out, "\"%s%s} %lld\n", d->label ? "," : "",
						  d->label ? d->label : "",
						  (long long)pb_m.routes[row][m]);
		}
	}
	return r;
}

/* The system's boot time (btime of /proc/stat), read once; 0 if unknown. */
static double pb_metrics_boot_time(void)
{
	static double btime = -1;
	char line[256];
	FILE *fp;

	if (btime >= 0)
		return btime;
	btime = 0;
	fp = fopen("/proc/stat", "r");
	if (!fp)
		return btime;
	while (fgets(line, sizeof(line), fp))
		if (strncmp(line, "btime ", 6) == 0) {
			btime = strtod(line + 6, NULL);
			break;
		}
	fclose(fp);
	return btime;
}

/* Fill snap from /proc/self/stat, /proc/self/fd and RLIMIT_NOFILE; what
 * cannot be read stays -1. */
static void pb_metrics_proc_read(struct pb_proc_snap *snap)
{
	char buf[1024], *p;
	unsigned long long utime, stime, start, vsize;
	long long rss;
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	struct rlimit rl;
	FILE *fp;
	DIR *dir;
	size_t n = 0;

	snap->cpu_seconds = snap->start_time = snap->vsize = snap->rss = -1;
	snap->open_fds = snap->max_fds = -1;
	fp = fopen("/proc/self/stat", "r");
	if (fp) {
		n = fread(buf, 1, sizeof(buf) - 1, fp);
		fclose(fp);
	}
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields are
	 * counted from the last ')'. After it come field 3 (state) onwards;
	 * utime and stime are 14 and 15, starttime 22, vsize 23, rss 24. */
	p = strrchr(buf, ')');
	if (p && tck > 0 &&
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
		   "%*d %*d %*d %llu %llu %lld", &utime, &stime, &start, &vsize, &rss) == 5) {
		snap->cpu_seconds = (double)(utime + stime) / (double)tck;
		snap->start_time = pb_metrics_boot_time() + (double)start / (double)tck;
		snap->vsize = (double)vsize;
		snap->rss = (double)rss * (double)page;
	}
	dir = opendir("/proc/self/fd");
	if (dir) {
		struct dirent *de;

		n = 0;
		while ((de = readdir(dir)))
			if (de->d_name[0] != '.')
				n++;
		closedir(dir);
		snap->open_fds = (double)(n ? n - 1 : 0);      /* not the directory's own */
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		snap->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur;
}

/* Append the process_* metrics, read now; a figure that cannot be read is
 * left out with its family. */
static int pb_metrics_render_process(struct pb_buf *out)
{
	struct pb_proc_snap snap;
	int r = 0;

	pb_metrics_proc_read(&snap);
	for (size_t i = 0; i < sizeof(pb_procs) / sizeof(pb_procs[0]) && !r; i++) {
		double v = *(const double *)((const char *)&snap + pb_procs[i].offset);

		if (v < 0)
			continue;
		r = pb_metrics_head(out, pb_procs[i].name, pb_procs[i].help, pb_procs[i].type);
		if (!r)
			r = pb_buf_printf(out, "%s %.15g\n", pb_procs[i].name, v);
	}
	return r;
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
		const struct pb_gauge_desc *d = &pb_gauges[g];

		if (d->help)
			r = pb_metrics_head(out, d->name, d->help, "gauge");
		if (!r)
			r = pb_buf_printf(out, "%s%s%s%s %lld\n", d->name, d->label ? "{" : "",
					  d->label ? d->label : "", d->label ? "}" : "",
					  (long long)pb_m.gauges[g]);
	}
	for (int h = 0; h < PB_H_COUNT && !r; h++) {
		const struct pb_hist_desc *d = &pb_hists[h];

		r = pb_metrics_head(out, d->name, d->help, "histogram");
		for (int k = 0; k < (d->nvalues ? d->nvalues : 1) && !r; k++)
			r = pb_metrics_hist_series(out, d, d->label ? d->values[k] : NULL,
						   &pb_m.hists[h][k].buckets[0], pb_m.hists[h][k].count,
						   pb_m.hists[h][k].sum);
	}
	if (!r)
		r = pb_metrics_render_routes(out);
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
	if (!r)
		r = pb_metrics_head(out, "pollbridge_build_info",
				    "Build information about pollbridge; the value is always 1.",
				    "gauge");
	if (!r)
		r = pb_buf_printf(out, "pollbridge_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	if (!r)
		r = pb_metrics_render_process(out);
	return r;
}
