/*
 * test_ops.c: what an operator relies on: /metrics (Prometheus text, the
 * counters move with traffic), upstream keepalives (an upstream that stops
 * answering pings, a real process under SIGSTOP, is closed and the client
 * sees 1006), SIGHUP reloads without stopping, and --ping-interval 0 turns
 * keepalives off.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/harness.h"
#include "tap.h"

/* /metrics: format and counters that follow the traffic. */
static void check_metrics(struct h_bridge *b)
{
	struct h_resp r = { 0 };
	char url[128], id[64];
	json_t *got = json_array();

	snprintf(url, sizeof(url), "%s/metrics", b->base);
	tap_ok(h_http(&r, "GET", url, NULL, NULL, 0, NULL) == 0 && r.status == 200, "GET /metrics 200");
	tap_ok(strncmp(r.content_type, "text/plain", 10) == 0 && strstr(r.content_type, "0.0.4"),
	       "text exposition format 0.0.4 (%s)", r.content_type);
	tap_ok(r.body && strstr(r.body, "# TYPE pollbridge_sessions_created_total counter"),
	       "HELP/TYPE lines");
	h_resp_free(&r);
	tap_is_int(h_metric(b, "pollbridge_sessions_created_total{door=\"v1\"}"), 0, "no session yet");
	tap_is_int(h_metric(b, "pollbridge_sessions{door=\"v1\"}"), 0, "gauge 0");

	h_create(b, "echo", id, NULL);
	for (int i = 0; i < 3; i++)
		h_send_text(b, id, "abcd", NULL);
	tap_is_int(h_collect(b, id, 0, 3, 5000, got), 3, "three echoes");
	json_decref(got);
	tap_is_int(h_metric(b, "pollbridge_sessions_created_total{door=\"v1\"}"), 1, "created counts the session");
	tap_is_int(h_metric(b, "pollbridge_sessions{door=\"v1\"}"), 1, "sessions gauge 1");
	tap_is_int(h_metric(b, "pollbridge_messages_total{direction=\"client_to_upstream\"}"), 3,
		   "three messages written upstream");
	tap_is_int(h_metric(b, "pollbridge_messages_total{direction=\"upstream_to_client\"}"), 3,
		   "three messages stored for the client");
	tap_is_int(h_metric(b, "pollbridge_message_bytes_total{direction=\"upstream_to_client\"}"), 12,
		   "their bytes");
	tap_is_int(h_metric(b, "pollbridge_upstream_connects_total"), 1, "one upstream connect");
	tap_is_int(h_metric(b, "pollbridge_upstream_handshake_seconds_count"), 1, "one handshake timed");
	tap_is_int(h_metric(b, "pollbridge_http_responses_total{endpoint=\"create\",code=\"201\"}"), 1,
		   "HTTP answers by endpoint and code");
	tap_is_int(h_metric(b, "pollbridge_http_responses_total{endpoint=\"send\",code=\"200\"}"), 3,
		   "three sends answered 200");
	h_poll(b, "AAAAAAAAAAAAAAAAAAAAAA", NULL, &r);
	h_resp_free(&r);
	tap_is_int(h_metric(b, "pollbridge_http_responses_total{endpoint=\"poll\",code=\"404\"}"), 1,
		   "errors are counted by code");
	tap_is_int(h_delete(b, id), 204, "delete");
	tap_is_int(h_metric(b, "pollbridge_sessions_ended_total{reason=\"deleted\"}"), 1,
		   "ended by delete");
	tap_is_int(h_metric(b, "pollbridge_sessions{door=\"v1\"}"), 0, "gauge back to 0");
	tap_is_int(h_metric(b, "pollbridge_polls_waiting"), 0, "no poll waiting");
}

/* An upstream that stops answering pings is closed; the client sees 1006. */
static void check_keepalive(void)
{
	struct h_bridge b;
	struct h_resp r = { 0 };
	struct h_proc *echo;
	char route[128], id[64];
	int port, closed = 0;
	long code = -1;
	int64_t t0;

	echo = h_echo_start(&port, NULL);
	if (!echo)
		tap_bail("echo did not start");
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/", port);
	if (h_bridge_start(&b, route, "--ping-interval", "1", "--wait-max", "2", NULL))
		tap_bail("bridge did not start");
	tap_is_int(h_create(&b, "echo", id, NULL), 201, "keepalive: session created");
	h_sleep_ms(2500);
	h_poll(&b, id, NULL, &r);
	tap_ok(r.json && !strcmp(json_string_value(json_object_get(r.json, "state")), "open"),
	       "keepalive: a live upstream answers pings and stays open");
	h_resp_free(&r);
	kill(echo->pid, SIGSTOP);
	t0 = h_now_ms();
	while (!closed && h_now_ms() - t0 < 8000) {
		h_poll(&b, id, "wait=2", &r);
		if (r.json && !strcmp(json_string_value(json_object_get(r.json, "state")), "closed")) {
			closed = 1;
			code = (long)json_integer_value(json_object_get(json_object_get(r.json, "close"),
									 "code"));
		}
		h_resp_free(&r);
	}
	kill(echo->pid, SIGCONT);
	tap_ok(closed, "keepalive: a stopped upstream is closed (%.1f s)",
	       (double)(h_now_ms() - t0) / 1000);
	tap_is_int(code, 1006, "keepalive: the client sees 1006");
	tap_ok(h_now_ms() - t0 < 6000, "keepalive: within about two ping intervals");
	h_stop(b.proc, SIGTERM, 5000);
}

int main(void)
{
	struct h_bridge b;
	char route[128], *log;
	int port;

	h_init();
	if (!h_echo_start(&port, NULL))
		tap_bail("echo did not start");
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/", port);
	if (h_bridge_start(&b, route, NULL))
		tap_bail("bridge did not start");
	check_metrics(&b);

	kill(b.proc->pid, SIGHUP);
	h_sleep_ms(300);
	tap_ok(h_alive(b.proc), "SIGHUP does not stop the daemon");
	log = h_read_file(b.proc->log_path);
	tap_ok(log && strstr(log, "reloaded configuration from the command line"),
	       "it reloads (without --config: the command line) and says so in the log");
	free(log);
	tap_ok(h_still_serving(&b, "echo"), "still serving after SIGHUP");
	tap_is_int(h_stop(b.proc, SIGTERM, 5000), 0, "exit 0");

	check_keepalive();
	return tap_done();
}
