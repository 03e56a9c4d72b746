/*
 * test_admin.c: the operator's endpoints (issue 13): /livez and /readyz
 * (normal, while draining, during a Redis outage), the --admin-listen
 * split, the metrics an operator scrapes (build info, process metrics,
 * per-route figures, the request-duration histogram), a real parser's
 * verdict on the exposition (promtool check metrics), and the access log
 * in the combined log format.
 */
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "e2e/harness.h"
#include "tap.h"

/* GET (or method) base+path; returns the status, r filled (free it). */
static long get(const char *base, const char *method, const char *path, struct h_resp *r)
{
	char url[256];

	snprintf(url, sizeof(url), "%s%s", base, path);
	h_http(r, method, url, NULL, NULL, 0, NULL);
	return r->status;
}

/* The status of method base+path, nothing kept. */
static long status_of(const char *base, const char *method, const char *path)
{
	struct h_resp r = { 0 };
	long s = get(base, method, path, &r);

	h_resp_free(&r);
	return s;
}

/* The "reason" of a JSON answer, or "". */
static const char *reason_of(const struct h_resp *r)
{
	const char *s = r->json ? json_string_value(json_object_get(r->json, "reason")) : NULL;

	return s ? s : "";
}

/* The admin port from the bridge's "admin listening on ADDR:PORT" line. */
static int admin_port(struct h_bridge *b)
{
	for (int i = 0; i < 100; i++) {
		char *log = h_read_file(b->proc->log_path);
		const char *p = log ? strstr(log, "admin listening on ") : NULL;
		int port = -1;

		if (p) {
			const char *colon = strchr(p, '\n');

			for (const char *q = p; q < (colon ? colon : p + strlen(p)); q++)
				if (*q == ':')
					port = atoi(q + 1);
		}
		free(log);
		if (port > 0)
			return port;
		h_sleep_ms(20);
	}
	return -1;
}

/* A view of b whose base is the admin listener (for h_metric). */
static struct h_bridge admin_view(struct h_bridge *b, int port)
{
	struct h_bridge a = *b;

	a.port = port;
	snprintf(a.base, sizeof(a.base), "http://127.0.0.1:%d", port);
	return a;
}

/* Without --admin-listen: every operations endpoint on the public port. */
static void check_public_ops(const char *route)
{
	struct h_bridge b;
	struct h_resp r = { 0 };

	if (h_bridge_start(&b, route, NULL))
		tap_bail("bridge did not start");
	tap_is_int(get(b.base, "GET", "/livez", &r), 200, "public: /livez 200");
	tap_is_str(r.json ? json_string_value(json_object_get(r.json, "status")) : "", "ok",
		   "public: /livez says ok");
	h_resp_free(&r);
	tap_is_int(get(b.base, "GET", "/readyz", &r), 200, "public: /readyz 200");
	tap_is_str(r.json ? json_string_value(json_object_get(r.json, "status")) : "", "ok",
		   "public: /readyz says ok");
	h_resp_free(&r);
	tap_is_int(status_of(b.base, "GET", "/healthz"), 200, "public: /healthz 200");
	tap_is_int(status_of(b.base, "GET", "/metrics"), 200, "public: /metrics 200");
	tap_is_int(status_of(b.base, "HEAD", "/readyz"), 200, "public: HEAD /readyz 200");
	tap_is_int(status_of(b.base, "HEAD", "/livez"), 200, "public: HEAD /livez 200");
	tap_is_int(get(b.base, "POST", "/livez", &r), 405, "public: POST /livez 405");
	tap_is_str(r.allow, "GET", "public: Allow: GET");
	h_resp_free(&r);
	tap_ok(h_metric(&b, "pollbridge_http_responses_total{endpoint=\"livez\",code=\"200\"}") >= 1,
	       "public: /livez answers are counted under endpoint=\"livez\"");
	h_stop(b.proc, SIGTERM, 5000);
}

/* Run promtool check metrics on text; 0 if it found nothing to say. */
static int promtool_check(const char *text, char *out, size_t outlen)
{
	char path[600], cmd[1400];
	FILE *fp;
	size_t n;
	int rc;

	snprintf(path, sizeof(path), "%s/scrape.txt", h_tmpdir());
	fp = fopen(path, "w");
	if (!fp)
		return -1;
	fputs(text, fp);
	fclose(fp);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
	fp = popen(cmd, "r");
	if (!fp)
		return -1;
	n = fread(out, 1, outlen - 1, fp);
	out[n] = '\0';
	rc = pclose(fp);
	return rc == 0 && n == 0 ? 0 : 1;
}

/* Count the lines of text matching the extended regex re. */
static int count_matches(const char *text, const char *re)
{
	regex_t rx;
	int n = 0;

	if (regcomp(&rx, re, REG_EXTENDED | REG_NOSUB))
		return -1;
	for (const char *p = text; p && *p;) {
		const char *e = strchr(p, '\n');
		char line[2048];
		size_t len = e ? (size_t)(e - p) : strlen(p);

		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		memcpy(line, p, len);
		line[len] = '\0';
		n += regexec(&rx, line, 0, NULL, 0) == 0;
		p = e ? e + 1 : NULL;
	}
	regfree(&rx);
	return n;
}

/* The admin split, the metrics and the combined access log. */
static void check_admin(int echo_port)
{
	struct h_bridge b, a;
	struct h_resp r = { 0 };
	char r1[128], r2[128], alog[600], id1[64], id2[64], out[4096], *log;
	json_t *got = json_array();
	int port;
	double v, now = (double)time(NULL);

	snprintf(r1, sizeof(r1), "--route=one=ws://127.0.0.1:%d/", echo_port);
	snprintf(r2, sizeof(r2), "--route=two=ws://127.0.0.1:%d/", echo_port);
	snprintf(alog, sizeof(alog), "%s/access.log", h_tmpdir());
	if (h_bridge_start(&b, r1, r2, "--admin-listen", "127.0.0.1:0", "--access-log", alog,
			   "--access-log-format", "combined", NULL))
		tap_bail("bridge with --admin-listen did not start");
	port = admin_port(&b);
	tap_ok(port > 0 && port != b.port, "admin ready line \"admin listening on\" (port %d)", port);
	if (port <= 0)
		return;
	a = admin_view(&b, port);

	/* The split. */
	tap_is_int(get(b.base, "GET", "/metrics", &r), 404, "split: public /metrics 404");
	tap_is_str(h_err(&r), "not_found", "split: public /metrics not_found");
	h_resp_free(&r);
	tap_is_int(status_of(b.base, "GET", "/livez"), 404, "split: public /livez 404");
	tap_is_int(status_of(b.base, "GET", "/readyz"), 404, "split: public /readyz 404");
	tap_is_int(status_of(b.base, "GET", "/healthz"), 404, "split: public /healthz 404");
	tap_is_int(status_of(a.base, "GET", "/metrics"), 200, "split: admin /metrics 200");
	tap_is_int(status_of(a.base, "GET", "/livez"), 200, "split: admin /livez 200");
	tap_is_int(status_of(a.base, "GET", "/readyz"), 200, "split: admin /readyz 200");
	tap_is_int(status_of(a.base, "GET", "/healthz"), 200, "split: admin /healthz 200");
	tap_is_int(status_of(a.base, "HEAD", "/readyz"), 200, "split: admin HEAD /readyz 200");
	tap_is_int(status_of(a.base, "POST", "/v1/sessions"), 404,
		   "split: the admin listener serves no API");

	/* Traffic on two routes. */
	tap_is_int(h_create(&b, "one", id1, NULL), 201, "route one: session");
	tap_is_int(h_create(&b, "two", id2, NULL), 201, "route two: session");
	for (int i = 0; i < 3; i++)
		h_send_text(&b, id1, "abcd", NULL);
	h_send_text(&b, id2, "xy", NULL);
	tap_is_int(h_collect(&b, id1, 0, 3, 5000, got), 3, "route one: three echoes");
	tap_is_int(h_collect(&b, id2, 0, 1, 5000, got), 1, "route two: one echo");
	json_decref(got);

	/* Build and process metrics. */
	get(a.base, "GET", "/metrics", &r);
	tap_ok(r.body && strstr(r.body, "pollbridge_build_info{version=\"" PACKAGE_VERSION "\"} 1\n"),
	       "pollbridge_build_info{version=\"%s\"} 1", PACKAGE_VERSION);
	tap_ok(r.body && strstr(r.body, "# TYPE process_cpu_seconds_total counter"),
	       "process_cpu_seconds_total is a counter");
	tap_ok(promtool_check(r.body ? r.body : "", out, sizeof(out)) == 0,
	       "promtool check metrics: no errors, no lint warnings");
	if (out[0])
		tap_diag("promtool: %s", out);
	h_resp_free(&r);
	tap_ok(h_metric(&a, "process_resident_memory_bytes") > 1024 * 1024,
	       "process_resident_memory_bytes > 1 MiB");
	tap_ok(h_metric(&a, "process_virtual_memory_bytes") >=
	       h_metric(&a, "process_resident_memory_bytes"), "virtual >= resident");
	tap_ok(h_metric(&a, "process_open_fds") >= 5, "process_open_fds >= 5 (listeners, loop)");
	tap_ok(h_metric(&a, "process_max_fds") >= h_metric(&a, "process_open_fds"),
	       "process_max_fds >= process_open_fds");
	tap_ok(h_metric(&a, "process_cpu_seconds_total") >= 0, "process_cpu_seconds_total");
	v = h_metric(&a, "process_start_time_seconds");
	tap_ok(v > now - 120 && v <= now + 2, "process_start_time_seconds is now (%.0f vs %.0f)",
	       v, now);

	/* Per-route figures. */
	tap_is_int(h_metric(&a, "pollbridge_route_sessions{route=\"one\"}"), 1, "route one: 1 session");
	tap_is_int(h_metric(&a, "pollbridge_route_sessions{route=\"two\"}"), 1, "route two: 1 session");
	tap_is_int(h_metric(&a, "pollbridge_route_messages_total{route=\"one\",direction=\"client_to_upstream\"}"),
		   3, "route one: 3 messages upstream");
	tap_is_int(h_metric(&a, "pollbridge_route_messages_total{route=\"two\",direction=\"client_to_upstream\"}"),
		   1, "route two: 1 message upstream");
	tap_is_int(h_metric(&a, "pollbridge_route_messages_total{route=\"one\",direction=\"upstream_to_client\"}"),
		   3, "route one: 3 messages back");
	tap_is_int(h_metric(&a, "pollbridge_route_message_bytes_total{route=\"one\",direction=\"upstream_to_client\"}"),
		   12, "route one: 12 bytes back");
	tap_is_int(h_metric(&a, "pollbridge_route_message_bytes_total{route=\"two\",direction=\"client_to_upstream\"}"),
		   2, "route two: 2 bytes upstream");
	tap_is_int(h_delete(&b, id1), 204, "route one: delete");
	tap_is_int(h_metric(&a, "pollbridge_route_sessions{route=\"one\"}"), 0,
		   "route one: gauge back to 0");
	tap_is_int(h_metric(&a, "pollbridge_route_sessions{route=\"two\"}"), 1,
		   "route two: still 1");

	/* The request-duration histogram. */
	tap_is_int(h_metric(&a, "pollbridge_http_request_duration_seconds_count{endpoint=\"create\"}"),
		   2, "histogram: two creates");
	tap_is_int(h_metric(&a, "pollbridge_http_request_duration_seconds_count{endpoint=\"send\"}"),
		   4, "histogram: four sends");
	tap_is_int(h_metric(&a, "pollbridge_http_request_duration_seconds_count{endpoint=\"delete\"}"),
		   1, "histogram: one delete");
	tap_ok(h_metric(&a, "pollbridge_http_request_duration_seconds_count{endpoint=\"poll\"}") >= 2,
	       "histogram: the polls");
	tap_is_int(h_metric(&a, "pollbridge_http_request_duration_seconds_bucket{endpoint=\"send\",le=\"+Inf\"}"),
		   4, "histogram: +Inf bucket = count");
	tap_ok(h_metric(&a, "pollbridge_http_request_duration_seconds_sum{endpoint=\"create\"}") > 0,
	       "histogram: a sum");
	tap_is_int(h_metric(&a, "pollbridge_http_request_duration_seconds_count{endpoint=\"stream\"}"),
		   0, "histogram: no stream yet");

	/* promtool again, after the traffic. */
	get(a.base, "GET", "/metrics", &r);
	tap_ok(promtool_check(r.body ? r.body : "", out, sizeof(out)) == 0,
	       "promtool check metrics after traffic: clean");
	if (out[0])
		tap_diag("promtool: %s", out);
	h_resp_free(&r);

	/* The combined log format. */
	{
		const char *ua[] = { "User-Agent: probe \"q\"", "Referer: http://x.example/p", NULL };
		char url[256];

		snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages", b.base, id2);
		h_http(&r, "GET", url, NULL, NULL, 0, ua);
		h_resp_free(&r);
	}
	h_stop(b.proc, SIGTERM, 5000);
	log = h_read_file(alog);
	tap_ok(log != NULL, "access log written");
	/* HOST - USER [dd/Mon/yyyy:HH:MM:SS +0000] "REQUEST" STATUS BYTES "REF" "UA" */
#define COMBINED "^([0-9.]+) - ([A-Za-z0-9_-]{6}|-) \\[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:" \
		 "[0-9]{2}:[0-9]{2}:[0-9]{2} \\+0000\\] \"([A-Z]+) ([^ \"]+) HTTP/1\\.[01]\" " \
		 "[0-9]{3} ([0-9]+|-) \"([^\"]*)\" \"([^\"]*)\"$"
	tap_ok(count_matches(log, COMBINED) > 10, "combined: lines parse (%d)",
	       count_matches(log, COMBINED));
	tap_is_int(count_matches(log, ".") - count_matches(log, COMBINED), 0,
		   "combined: every line parses");
	{
		char re[256];

		snprintf(re, sizeof(re), "^127\\.0\\.0\\.1 - %.6s \\[.*\\] \"GET /v1/sessions/%.6s\\.\\.\\./"
			 "messages HTTP/1\\.1\" 200 [0-9]+ \"http://x\\.example/p\" \"probe \\\\x22q\\\\x22\"$",
			 id2, id2);
		tap_is_int(count_matches(log, re), 1,
			   "combined: session prefix as user, id cut in the path, referer, escaped agent");
		tap_ok(!strstr(log, id2), "combined: the whole session id is never logged");
		tap_ok(count_matches(log, "^127\\.0\\.0\\.1 - - .*\"POST /v1/sessions HTTP/1\\.1\" 400") == 0 &&
		       count_matches(log, "\"GET /metrics HTTP/1\\.1\" 200 [0-9]+ ") >= 1,
		       "combined: the admin scrapes are logged with their size");
	}
	free(log);
}

/* Open a raw connection and read the answer to one GET path on it. */
static long raw_get(int fd, const char *path, struct h_resp *r)
{
	char req[256];

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
	if (h_raw_write(fd, req, strlen(req)))
		return 0;
	return h_raw_read(fd, H_RAW_MS, r) == H_RAW_ANSWER ? r->status : 0;
}

/* 1 once the bridge's log holds s (within timeout_ms). */
static int log_waits_for(struct h_bridge *b, const char *s, int timeout_ms)
{
	int64_t t0 = h_now_ms();

	do {
		char *log = h_read_file(b->proc->log_path);
		int found = log && strstr(log, s);

		free(log);
		if (found)
			return 1;
		h_sleep_ms(5);
	} while (h_now_ms() - t0 < timeout_ms);
	return 0;
}

/* /readyz turns 503 from the first moment of a drain while /livez stays
 * 200, on the admin listener and on the public one (for connections it
 * already had: it stops accepting). An unfinished request body keeps the
 * drain busy. */
static void check_drain(const char *route)
{
	struct h_bridge b, a;
	struct h_resp r = { 0 };
	int port, busy, pub1, pub2;
	static const char partial[] = "POST /v1/sessions HTTP/1.1\r\nHost: x\r\n"
				      "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{";

	if (h_bridge_start(&b, route, "--admin-listen", "127.0.0.1:0", "--drain-timeout", "4",
			   "--header-timeout", "30", "--min-body-rate", "1", NULL))
		tap_bail("bridge did not start");
	port = admin_port(&b);
	if (port <= 0) {
		tap_ok(0, "drain: admin port");
		return;
	}
	a = admin_view(&b, port);
	b.base[0] = '\0';       /* the public port is only used raw below */
	tap_is_int(status_of(a.base, "GET", "/readyz"), 200, "drain: /readyz 200 before");
	busy = h_raw_connect(b.port, NULL);
	h_raw_write(busy, partial, sizeof(partial) - 1);
	pub1 = h_raw_connect(b.port, NULL);
	pub2 = h_raw_connect(b.port, NULL);
	tap_is_int(raw_get(pub1, "/metrics", &r), 404, "drain: public keep-alive connection works");
	h_resp_free(&r);
	h_sleep_ms(100);
	kill(b.proc->pid, SIGTERM);
	tap_ok(log_waits_for(&b, "draining", 3000), "drain: started");
	/* The very first answer after the drain began. */
	tap_is_int(get(a.base, "GET", "/readyz", &r), 503, "drain: admin /readyz 503 at once");
	tap_is_str(reason_of(&r), "draining", "drain: reason draining");
	tap_is_str(r.json ? json_string_value(json_object_get(r.json, "status")) : "", "unavailable",
		   "drain: status unavailable");
	h_resp_free(&r);
	tap_is_int(status_of(a.base, "GET", "/healthz"), 503, "drain: /healthz (alias) 503");
	tap_is_int(status_of(a.base, "GET", "/livez"), 200, "drain: admin /livez 200");
	tap_is_int(status_of(a.base, "GET", "/metrics"), 200, "drain: admin /metrics 200");
	tap_is_int(raw_get(pub2, "/livez", &r), 404,
		   "drain: the public listener still answers a connection it had");
	tap_is_str(r.connection, "close", "drain: with Connection: close");
	h_resp_free(&r);
	h_sleep_ms(1000);
	tap_ok(h_alive(b.proc), "drain: still draining (the unfinished body keeps it busy)");
	tap_is_int(get(a.base, "GET", "/readyz", &r), 503, "drain: admin /readyz still 503 later");
	tap_is_str(reason_of(&r), "draining", "drain: still reason draining");
	h_resp_free(&r);
	tap_is_int(status_of(a.base, "GET", "/livez"), 200, "drain: admin /livez still 200 later");
	tap_is_int(h_wait_exit(b.proc, 8000), 0, "drain: exits 0 after the drain timeout");
	close(busy);
	close(pub1);
	close(pub2);
}

/* The same on the public listener without --admin-listen: a connection
 * opened before the drain gets /readyz 503 with Connection: close. */
static void check_drain_public(const char *route)
{
	struct h_bridge b;
	struct h_resp r = { 0 };
	int busy, c1, c2;
	static const char partial[] = "POST /v1/sessions HTTP/1.1\r\nHost: x\r\n"
				      "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{";

	if (h_bridge_start(&b, route, "--drain-timeout", "3", "--header-timeout", "30",
			   "--min-body-rate", "1", NULL))
		tap_bail("bridge did not start");
	busy = h_raw_connect(b.port, NULL);
	h_raw_write(busy, partial, sizeof(partial) - 1);
	c1 = h_raw_connect(b.port, NULL);
	c2 = h_raw_connect(b.port, NULL);
	tap_is_int(raw_get(c1, "/readyz", &r), 200, "public drain: /readyz 200 before");
	tap_ok(strcmp(r.connection, "close") != 0, "public drain: keep-alive before");
	h_resp_free(&r);
	kill(b.proc->pid, SIGTERM);
	tap_ok(log_waits_for(&b, "draining", 3000), "public drain: started");
	tap_is_int(raw_get(c1, "/readyz", &r), 503, "public drain: /readyz 503");
	tap_is_str(reason_of(&r), "draining", "public drain: reason draining");
	tap_is_str(r.connection, "close", "public drain: Connection: close");
	h_resp_free(&r);
	tap_is_int(raw_get(c2, "/livez", &r), 200, "public drain: /livez 200");
	tap_is_str(r.connection, "close", "public drain: Connection: close");
	h_resp_free(&r);
	tap_is_int(h_wait_exit(b.proc, 8000), 0, "public drain: exits 0");
	close(busy);
	close(c1);
	close(c2);
}

/* Redis goes away: /readyz 503 reason store (within about 2 s), /livez
 * stays 200 (a liveness probe must not restart the instance). */
static void check_store_outage(const char *route)
{
	struct h_bridge b, a;
	struct h_resp r = { 0 };
	struct h_proc *redis;
	char store[64];
	int rport, port;
	long st = 0;
	int64_t t0;

	redis = h_redis_start(&rport, NULL);
	if (!redis)
		tap_bail("redis-server did not start");
	snprintf(store, sizeof(store), "redis://127.0.0.1:%d", rport);
	if (h_bridge_start(&b, route, "--store", store, "--admin-listen", "127.0.0.1:0", NULL))
		tap_bail("bridge did not start");
	port = admin_port(&b);
	a = admin_view(&b, port);
	tap_is_int(status_of(a.base, "GET", "/readyz"), 200, "outage: /readyz 200 with Redis up");
	h_stop(redis, SIGKILL, 2000);
	t0 = h_now_ms();
	while (h_now_ms() - t0 < 5000) {
		h_resp_free(&r);
		st = get(a.base, "GET", "/readyz", &r);
		if (st == 503)
			break;
		h_sleep_ms(100);
	}
	tap_is_int(st, 503, "outage: /readyz 503 (%.1f s)", (double)(h_now_ms() - t0) / 1000);
	tap_is_str(reason_of(&r), "store", "outage: reason store");
	h_resp_free(&r);
	tap_is_int(status_of(a.base, "GET", "/healthz"), 503, "outage: /healthz 503");
	tap_is_int(status_of(a.base, "GET", "/livez"), 200, "outage: /livez 200");
	tap_is_int(status_of(a.base, "GET", "/metrics"), 200, "outage: /metrics 200");
	h_stop(b.proc, SIGTERM, 5000);
}

/* --admin-listen is checked like --listen and must differ from it. */
static void check_config(void)
{
	char *argv[6] = { getenv("PB_BIN"), "--check-config", "--admin-listen", NULL, NULL, NULL };
	static const char *const bad[] = { "127.0.0.1", "localhost:9", "127.0.0.1:99999" };
	struct h_proc *p;
	char *out;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		argv[3] = (char *)bad[i];
		p = h_spawn(argv, NULL, 0, NULL, 0);
		tap_is_int(p ? h_wait_exit(p, 5000) : -1, 1, "config: --admin-listen %s refused",
			   bad[i]);
		out = p ? h_read_file(p->log_path) : NULL;
		tap_ok(out && strstr(out, "--admin-listen"), "config: the error names the flag");
		free(out);
	}
	argv[3] = "127.0.0.1:8080";
	argv[4] = "--listen=127.0.0.1:8080";
	p = h_spawn(argv, NULL, 0, NULL, 0);
	tap_is_int(p ? h_wait_exit(p, 5000) : -1, 1, "config: same as --listen refused");
	out = p ? h_read_file(p->log_path) : NULL;
	tap_ok(out && strstr(out, "must differ from --listen"), "config: says it must differ");
	free(out);
	argv[3] = "[::1]:9100";
	argv[4] = "--access-log-format=combined";
	p = h_spawn(argv, NULL, 0, NULL, 0);
	tap_is_int(p ? h_wait_exit(p, 5000) : -1, 0, "config: [::1]:9100 and combined accepted");
	argv[3] = "127.0.0.1:9100";
	argv[4] = "--access-log-format=apache";
	p = h_spawn(argv, NULL, 0, NULL, 0);
	tap_is_int(p ? h_wait_exit(p, 5000) : -1, 1, "config: --access-log-format apache refused");
}

int main(void)
{
	char route[128];
	int port;

	h_init();
	if (!getenv("PB_BIN"))
		setenv("PB_BIN", "src/pollbridge", 1);
	if (!h_echo_start(&port, NULL))
		tap_bail("echo did not start");
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/", port);
	check_config();
	check_public_ops(route);
	check_admin(port);
	check_drain(route);
	check_drain_public(route);
	if (h_store_shared())
		check_store_outage(route);
	return tap_done();
}
