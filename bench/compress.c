/*
 * compress.c: what gzip (--compress-min-bytes) costs and saves, per message:
 * bytes on the wire and the bridge's CPU, for a poll answer carrying a
 * batch of 64 typical JSON chat messages (100 to 200 bytes each), with and
 * without Accept-Encoding: gzip; and the bytes per message of an event
 * stream that carries the same 64 messages one event at a time (each
 * flushed on its own, as a chat delivers them). See bench/README.md;
 * bench/compress.sh builds and runs this.
 *
 * One bridge (memory store, defaults: --compress-min-bytes 1024) with
 * pollbridge-echo; one session holding the 64 messages, which the client
 * polls with after=0&max=64 (acknowledging nothing, so every answer is the
 * same batch) K times per round on one keep-alive connection. Rounds
 * alternate plain and gzip. Wire bytes are the answer's status line,
 * headers and body as received (libcurl decodes nothing); CPU is the
 * bridge's user+system time over the round (/proc/PID/stat, 10 ms ticks)
 * divided by K x 64.
 *
 * Usage: compress [-k POLLS] [-r ROUNDS] [-- EXTRA BRIDGE ARGS...]
 *   -k POLLS   polls per round (default 20000)
 *   -r ROUNDS  rounds per mode (default 3)
 * Environment: PB_BIN, PB_ECHO_BIN as for the e2e tests.
 * Exit status: 0 if every answer was a correct 64-message batch.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "tap.h"
#include "e2e/harness.h"

#define BATCH 64
#define MAX_EXTRA 16

/* What one poll returned. */
struct sink {
	size_t body, head;
	int gzip;
	char *keep;             /* the first body, to check it */
	size_t keep_len;
	int keeping;
};

/* CPU seconds (user+system) of pid, -1 on error. */
static double proc_cpu_s(pid_t pid)
{
	char path[64], *text, *p;
	unsigned long long ut, st;
	double v = -1;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	text = h_read_file(path);
	if (!text)
		return -1;
	p = strrchr(text, ')');
	if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
			&st) == 2)
		v = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	free(text);
	return v;
}

/* Monotonic seconds. */
static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* curl body callback: count (and keep the first answer). */
static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct sink *s = arg;

	s->body += sz * n;
	if (s->keeping) {
		char *k = realloc(s->keep, s->keep_len + sz * n + 1);

		if (!k)
			return 0;
		memcpy(k + s->keep_len, p, sz * n);
		s->keep = k;
		s->keep_len += sz * n;
		s->keep[s->keep_len] = '\0';
	}
	return sz * n;
}

/* curl header callback: count, and note Content-Encoding: gzip. */
static size_t on_head(char *p, size_t sz, size_t n, void *arg)
{
	struct sink *s = arg;

	s->head += sz * n;
	if (sz * n >= 22 && strncasecmp(p, "Content-Encoding: gzip", 22) == 0)
		s->gzip = 1;
	return sz * n;
}

/* A chat message of 100 to 200 bytes, varied like real ones. */
static void chat_msg(char *out, size_t cap, int i)
{
	static const char *const users[] = { "alice", "bob", "carol", "dave", "erin", "frank" };
	static const char *const texts[] = {
		"ok",
		"see you at the meeting this afternoon",
		"did anyone look at the build failure on main? it started after lunch",
		"lol",
		"I pushed the fix, can someone review the pull request before the release tonight?",
		"thanks!",
	};

	snprintf(out, cap, "{\"type\":\"message\",\"room\":\"general\",\"id\":\"m%06d\","
		 "\"user\":\"%s\",\"client\":\"web\",\"text\":\"%s\",\"ts\":%d}",
		 i * 7919 % 1000000, users[i % 6], texts[(i * 5) % 6], 1700000000 + i * 13);
}

/* Poll k times; add up bytes; 0 if every answer was the 64-message batch. */
static int poll_round(CURL *c, const char *url, int gzip, int k, struct sink *tot)
{
	struct curl_slist *hl = NULL;
	int ok = 1;

	if (gzip)
		hl = curl_slist_append(hl, "Accept-Encoding: gzip");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	for (int i = 0; i < k && ok; i++) {
		struct sink s = { 0 };
		long status = 0;

		s.keeping = i == 0;
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
		curl_easy_setopt(c, CURLOPT_HEADERDATA, &s);
		if (curl_easy_perform(c) != CURLE_OK)
			ok = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		if (status != 200 || s.gzip != gzip)
			ok = 0;
		if (i == 0 && !gzip) {
			json_t *j = json_loads(s.keep ? s.keep : "", 0, NULL);

			if (json_array_size(json_object_get(j, "messages")) != BATCH)
				ok = 0;
			json_decref(j);
		}
		tot->body += s.body;
		tot->head += s.head;
		free(s.keep);
	}
	curl_slist_free_all(hl);
	return ok ? 0 : -1;
}

/* An event stream's raw bytes until n "id: " events would have arrived. */
struct ev_sink {
	size_t bytes;
};

/* curl body callback of the stream. */
static size_t on_ev(char *p, size_t sz, size_t n, void *arg)
{
	((struct ev_sink *)arg)->bytes += sz * n;
	return sz * n;
}

/* Bytes on the wire of an event stream carrying the 64 messages, each sent
 * (and so flushed) on its own; returns the body bytes, -1 on failure. */
static long stream_bytes(struct h_bridge *b, int gzip, int *ok)
{
	CURLM *m = curl_multi_init();
	CURL *c = curl_easy_init();
	struct curl_slist *hl = NULL;
	struct ev_sink s = { 0 };
	char id[64], url[256], msg[256];
	int running = 1;
	size_t last = 0;

	*ok = 0;
	if (h_create(b, "echo", id, NULL) != 201)
		return -1;
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/events", b->base, id);
	if (gzip)
		hl = curl_slist_append(hl, "Accept-Encoding: gzip");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_ev);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	curl_multi_add_handle(m, c);
	for (int i = 0; i <= BATCH && running; i++) {
		double until = now_s() + 2;

		/* Let what was sent arrive (on its own: no later event pushes
		 * it out) before the next message goes. */
		do {
			curl_multi_perform(m, &running);
			curl_multi_poll(m, NULL, 0, 10, NULL);
		} while (now_s() < until && running && s.bytes == last);
		if (s.bytes == last) {
			printf("FAIL stream %s: event %d did not arrive\n", gzip ? "gzip" : "plain", i);
			break;
		}
		last = s.bytes;
		if (i < BATCH) {
			chat_msg(msg, sizeof(msg), i + 1);
			h_send_text(b, id, msg, NULL);
		} else {
			*ok = 1;
		}
	}
	curl_multi_remove_handle(m, c);
	curl_easy_cleanup(c);
	curl_multi_cleanup(m);
	curl_slist_free_all(hl);
	h_delete(b, id);
	return (long)s.bytes;
}

int main(int argc, char **argv)
{
	int k = 20000, rounds = 3, nextra = 0, fail = 0, echo_port, sok;
	char *extra[MAX_EXTRA + 1], route[96], id[64], url[256], msg[256];
	double cpu[2] = { 0, 0 }, secs[2] = { 0, 0 };
	struct sink tot[2] = { { 0 }, { 0 } };
	size_t raw = 0;
	long sb[2];
	struct h_bridge b;
	CURL *c;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-k") == 0 && i + 1 < argc) {
			k = atoi(argv[++i]);
		} else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
			rounds = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--") == 0) {
			while (++i < argc && nextra < MAX_EXTRA)
				extra[nextra++] = argv[i];
		} else {
			fprintf(stderr, "usage: compress [-k POLLS] [-r ROUNDS] [-- BRIDGE ARGS]\n");
			return 2;
		}
	}
	extra[nextra] = NULL;
	if (k < 1 || rounds < 1)
		return 2;
	h_init();
	if (!h_echo_start(&echo_port, NULL))
		tap_bail("pollbridge-echo did not start");
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/", echo_port);
	if (h_bridge_start(&b, route, "--log-level", "warn", nextra > 0 ? extra[0] : NULL,
			   nextra > 1 ? extra[1] : NULL, nextra > 2 ? extra[2] : NULL,
			   nextra > 3 ? extra[3] : NULL, NULL))
		tap_bail("pollbridge did not start");
	if (h_create(&b, "echo", id, NULL) != 201)
		tap_bail("create failed");
	for (int i = 1; i <= BATCH; i++) {
		chat_msg(msg, sizeof(msg), i);
		raw += strlen(msg);
		if (h_send_text(&b, id, msg, NULL) != 200)
			tap_bail("send failed");
	}
	{
		json_t *got = json_array();

		if (h_collect(&b, id, 0, BATCH, 10000, got) != BATCH)
			tap_bail("the 64 messages did not come back");
		json_decref(got);
	}
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=0&max=%d", b.base, id, BATCH);
	c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_head);
	/* Warm up both paths. */
	{
		struct sink w = { 0 };

		poll_round(c, url, 0, 200, &w);
		poll_round(c, url, 1, 200, &w);
	}
	for (int round = 0; round < rounds; round++)
		for (int gz = 0; gz < 2; gz++) {
			double c0 = proc_cpu_s(b.proc->pid), t0 = now_s();

			if (poll_round(c, url, gz, k, &tot[gz])) {
				printf("FAIL round %d %s: a wrong answer\n", round + 1,
				       gz ? "gzip" : "plain");
				fail = 1;
			}
			secs[gz] += now_s() - t0;
			cpu[gz] += proc_cpu_s(b.proc->pid) - c0;
		}
	curl_easy_cleanup(c);
	sb[0] = stream_bytes(&b, 0, &sok);
	fail |= !sok;
	sb[1] = stream_bytes(&b, 1, &sok);
	fail |= !sok;

	printf("batch: %d JSON chat messages, %zu bytes of message text (%.0f bytes each)\n",
	       BATCH, raw, (double)raw / BATCH);
	printf("polls: %d per round, %d rounds per mode, after=0&max=%d (one keep-alive "
	       "connection)\n", k, rounds, BATCH);
	for (int gz = 0; gz < 2; gz++) {
		double polls = (double)k * rounds, msgs = polls * BATCH;

		printf("%-5s poll: %6.0f bytes/answer (%5.0f body + %3.0f headers), %6.1f bytes/msg "
		       "on the wire, bridge CPU %.2f us/msg (%.1f us/answer), %.0f answers/s\n",
		       gz ? "gzip" : "plain", (double)(tot[gz].body + tot[gz].head) / polls,
		       (double)tot[gz].body / polls, (double)tot[gz].head / polls,
		       (double)(tot[gz].body + tot[gz].head) / msgs, cpu[gz] / msgs * 1e6,
		       cpu[gz] / polls * 1e6, polls / secs[gz]);
	}
	printf("gzip/plain: wire bytes %.3f, bridge CPU %.2f\n",
	       (double)(tot[1].body + tot[1].head) / (double)(tot[0].body + tot[0].head),
	       cpu[1] / cpu[0]);
	printf("stream: 64 events sent one at a time, each flushed: plain %.1f bytes/msg, "
	       "gzip %.1f bytes/msg (body; ratio %.3f)\n", (double)sb[0] / BATCH,
	       (double)sb[1] / BATCH, (double)sb[1] / (double)sb[0]);
	h_stop(b.proc, SIGTERM, 5000);
	return fail;
}
