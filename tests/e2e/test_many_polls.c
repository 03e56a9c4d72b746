/*
 * test_many_polls.c: 1,000 concurrent long polls on one instance. A parked
 * poll must cost memory, not a thread: the daemon's thread count is the
 * same before, during and after, every poll is answered (those whose
 * session gets a message with it, the others empty at their deadline), and
 * the daemon still serves afterwards. The RSS figures are printed as
 * diagnostics (they are measured, not asserted: the machine is shared).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "e2e/harness.h"
#include "tap.h"

#define N_SESSIONS 1000
#define N_WOKEN 100

/* One parked poll: its handle and what came back. */
struct poll_slot {
	CURL *easy;
	char id[64];
	char url[256];
	char *body;
	size_t len;
	long status;
};

/* libcurl write callback: accumulate the body. */
static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct poll_slot *s = arg;
	char *nb = realloc(s->body, s->len + sz * n + 1);

	if (!nb)
		return 0;
	memcpy(nb + s->len, p, sz * n);
	s->body = nb;
	s->len += sz * n;
	s->body[s->len] = '\0';
	return sz * n;
}

/* Drive the multi handle for ms milliseconds or until nothing runs. */
static int pump(CURLM *m, int ms)
{
	int64_t end = h_now_ms() + ms;
	int running = 1;

	while (running && h_now_ms() < end) {
		curl_multi_perform(m, &running);
		curl_multi_poll(m, NULL, 0, 50, NULL);
	}
	return running;
}

int main(void)
{
	static struct poll_slot slots[N_SESSIONS];
	struct h_bridge b;
	struct h_proc *echo;
	char route[128];
	int port, threads_before, threads_during, threads_after, created = 0, answered = 0;
	int with_message = 0, empty = 0;
	long rss_idle, rss_sessions, rss_polls, rss_after;
	CURLM *m;
	CURLMsg *msg;
	int left;

	h_init();
	echo = h_echo_start(&port, NULL);
	if (!echo)
		tap_bail("pollbridge-echo did not start");
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/", port);
	if (h_bridge_start(&b, route, "--wait-max", "60", "--log-level", "warn", NULL))
		tap_bail("pollbridge did not start");

	rss_idle = h_rss_kib(b.proc->pid);
	threads_before = h_thread_count(b.proc->pid);
	tap_ok(threads_before >= 1, "daemon thread count read (%d)", threads_before);

	for (int i = 0; i < N_SESSIONS; i++)
		created += h_create(&b, "echo", slots[i].id, NULL) == 201;
	tap_is_int(created, N_SESSIONS, "%d sessions created", N_SESSIONS);
	rss_sessions = h_rss_kib(b.proc->pid);

	m = curl_multi_init();
	for (int i = 0; i < N_SESSIONS; i++) {
		struct poll_slot *s = &slots[i];

		snprintf(s->url, sizeof(s->url), "%s/v1/sessions/%s/messages?wait=8", b.base, s->id);
		s->easy = curl_easy_init();
		curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
		curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
		curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
		curl_easy_setopt(s->easy, CURLOPT_NOPROXY, "*");
		curl_easy_setopt(s->easy, CURLOPT_TIMEOUT, 40L);
		curl_multi_add_handle(m, s->easy);
	}
	/* Let every request reach the daemon and park. */
	pump(m, 2500);
	threads_during = h_thread_count(b.proc->pid);
	rss_polls = h_rss_kib(b.proc->pid);
	tap_ok(threads_during <= threads_before,
	       "threads with %d parked polls: %d (before: %d)", N_SESSIONS, threads_during,
	       threads_before);
	tap_ok(h_alive(b.proc), "daemon alive with %d parked polls", N_SESSIONS);

	/* Wake a tenth of them with a message each. */
	for (int i = 0; i < N_WOKEN; i++) {
		struct h_resp r = { 0 };

		h_send_text(&b, slots[i * (N_SESSIONS / N_WOKEN)].id, "wake", &r);
		h_resp_free(&r);
	}
	pump(m, 20000);
	while ((msg = curl_multi_info_read(m, &left))) {
		struct poll_slot *s;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &s->status);
	}
	for (int i = 0; i < N_SESSIONS; i++) {
		struct poll_slot *s = &slots[i];

		if (s->status == 200)
			answered++;
		if (s->body && strstr(s->body, "\"data\":\"wake\""))
			with_message++;
		else if (s->body && strstr(s->body, "\"messages\":[]"))
			empty++;
		curl_multi_remove_handle(m, s->easy);
		curl_easy_cleanup(s->easy);
		free(s->body);
	}
	curl_multi_cleanup(m);
	tap_is_int(answered, N_SESSIONS, "every parked poll answered 200");
	tap_is_int(with_message, N_WOKEN, "the %d woken polls carried their message", N_WOKEN);
	tap_is_int(empty, N_SESSIONS - N_WOKEN, "the others answered empty at their deadline");
	threads_after = h_thread_count(b.proc->pid);
	rss_after = h_rss_kib(b.proc->pid);
	tap_ok(threads_after <= threads_before, "threads afterwards: %d", threads_after);
	tap_ok(h_still_serving(&b, "echo"), "still serving");
	tap_diag("RSS KiB: idle %ld, with %d sessions %ld, with %d parked polls %ld, after %ld",
		 rss_idle, N_SESSIONS, rss_sessions, N_SESSIONS, rss_polls, rss_after);
	tap_diag("per session %.1f KiB, per parked poll %.1f KiB",
		 (double)(rss_sessions - rss_idle) / N_SESSIONS,
		 (double)(rss_polls - rss_sessions) / N_SESSIONS);
	tap_is_int(h_stop(b.proc, SIGTERM, 8000), 0, "drains and exits 0 with %d sessions", N_SESSIONS);
	return tap_done();
}
