/*
 * deliver.c: delivery throughput of pollbridge to ONE long-polling client,
 * memory store against Redis store. See bench/README.md for what the
 * figures mean; bench/run.sh builds and runs this.
 *
 * Each run starts its own processes: pollbridge-echo, a redis-server (Redis
 * runs only; free loopback port, --save '' --appendonly no) and pollbridge
 * (--max-batch 1000, --max-batch-bytes 64 MiB). It creates one session,
 * sends "/burst N" (the echo upstream then sends the text messages "1".."N"
 * as fast as it can) and, on one CURL easy handle (one keep-alive
 * connection), long-polls `wait=5&max=1000&after=<cursor>` one request at a
 * time until all N messages have arrived. The clock runs from just before
 * the /burst request to the answer that carries message N. Every message is
 * checked: seq 1..N, each once, in order, type text, data "<seq>".
 *
 * Runs alternate memory, redis, memory, redis, ... and the summary prints
 * each store's runs and median and the ratio of the medians.
 *
 * Usage: deliver [-n N|memory=N|redis=N]... [-r RUNS] [-s memory|redis|both]
 *                [-- EXTRA BRIDGE ARGS...]
 *   -n N     messages per run for both stores; "-n memory=N" or "-n redis=N"
 *            sets one store's (default: memory 1000000, the most the echo
 *            upstream bursts, about 1 s; redis 1000000, about 2 s: the Redis
 *            store is over 100 times slower, see bench/README.md)
 *   -r RUNS  runs per store (default 3)
 *   -s WHICH stores to run (default both)
 *   anything after "--" is appended to every pollbridge command line
 *            (e.g. -- --queue-max 10000)
 * Environment: PB_BIN, PB_ECHO_BIN (paths of the binaries, as for the e2e
 * tests); PB_BENCH_PAUSE=1 prints the bridge pid and waits 3 s before each
 * burst (time to attach `perf record -p PID`).
 *
 * Exit status: 0 if every run delivered everything correctly, 1 otherwise.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "tap.h"
#include "e2e/harness.h"

#define DEFAULT_N_MEMORY	1000000ul
#define DEFAULT_N_REDIS	1000000ul
#define MAX_N		1000000ul	/* the echo upstream's largest burst */
#define DEFAULT_RUNS	3
#define MAX_RUNS	15
#define POLL_WAIT	5
#define POLL_MAX	1000
#define RUN_TIMEOUT_S	120	/* a run that takes longer is a failure */
#define MAX_EXTRA	16

enum store_kind { ST_MEMORY, ST_REDIS };

static const char *const store_names[] = { "memory", "redis" };

/* The figures of one run. */
struct run {
	enum store_kind store;
	int ok;
	double seconds;         /* /burst sent -> message N received */
	double rate;            /* messages per second */
	unsigned long polls;    /* requests made, empty answers included */
	unsigned long empty;    /* answers with no message */
	long connects;          /* TCP connections curl opened for the polls */
	double bridge_cpu;      /* seconds of CPU (user+sys) during the run */
	double redis_cpu;
	double echo_cpu;
	double client_cpu;
};

/* A growing response body, reused across polls. */
struct body {
	char *p;
	size_t len, cap;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct body *b = userp;
	size_t n = size * nmemb;

	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 65536;
		char *t;

		while (cap < b->len + n + 1)
			cap *= 2;
		t = realloc(b->p, cap);
		if (!t)
			return 0;
		b->p = t;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return n;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime + stime of pid (all its threads) in seconds, from /proc/PID/stat;
 * -1 on error. Resolution: one clock tick (usually 10 ms). */
static double proc_cpu_s(pid_t pid)
{
	char path[64], *text, *p;
	unsigned long long ut, st;
	double v = -1;

	if (pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	text = h_read_file(path);
	if (!text)
		return -1;
	/* field 2 (comm) may hold spaces: fields 3.. follow the last ')' */
	p = strrchr(text, ')');
	if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			&ut, &st) == 2)
		v = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	free(text);
	return v;
}

static double self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void fail(int run_no, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(int run_no, const char *fmt, ...)
{
	va_list ap;

	printf("FAIL run %d: ", run_no);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* Check one poll answer, advancing *cursor over its messages. 0 if fine. */
static int check_batch(int run_no, const struct body *body, uint64_t *cursor, uint64_t n,
		       unsigned long *got)
{
	json_error_t jerr;
	json_t *root, *msgs, *m;
	const char *state, *type, *data;
	char want[32];
	size_t i;
	json_int_t seq;
	int rc = -1;

	root = json_loadb(body->p, body->len, 0, &jerr);
	if (!root) {
		fail(run_no, "poll answer is not JSON (%s): %.200s", jerr.text, body->p);
		return -1;
	}
	msgs = json_object_get(root, "messages");
	if (!json_is_array(msgs)) {
		fail(run_no, "poll answer without a messages array: %.200s", body->p);
		goto out;
	}
	*got = json_array_size(msgs);
	json_array_foreach(msgs, i, m) {
		seq = json_integer_value(json_object_get(m, "seq"));
		type = json_string_value(json_object_get(m, "type"));
		data = json_string_value(json_object_get(m, "data"));
		if (seq != (json_int_t)(*cursor + 1)) {
			fail(run_no, "expected seq %" PRIu64 ", got %" JSON_INTEGER_FORMAT
			     " (after=%" PRIu64 ", message %zu of the batch)",
			     *cursor + 1, seq, *cursor, i);
			goto out;
		}
		snprintf(want, sizeof(want), "%" PRIu64, *cursor + 1);
		if (!type || strcmp(type, "text") || !data || strcmp(data, want)) {
			fail(run_no, "seq %" PRIu64 ": type %s data \"%.40s\", want text \"%s\"",
			     *cursor + 1, type ? type : "(none)", data ? data : "(none)", want);
			goto out;
		}
		if (*cursor + 1 > n) {
			fail(run_no, "more messages than the %" PRIu64 " of the burst", n);
			goto out;
		}
		(*cursor)++;
	}
	state = json_string_value(json_object_get(root, "state"));
	if (!state || strcmp(state, "open")) {
		fail(run_no, "session state \"%s\" after seq %" PRIu64, state ? state : "(none)",
		     *cursor);
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* One run against a fresh set of processes. */
static void do_run(int run_no, enum store_kind store, unsigned long n, char **extra,
		   int nextra, struct run *r)
{
	struct h_proc *echo = NULL, *redis = NULL;
	struct h_bridge b;
	char route[128], store_url[64], id[64], cmd[64], url[512];
	char *args[32] = { 0 };
	double cpu_b0, cpu_b1, cpu_r0 = 0, cpu_r1 = 0, cpu_e0, cpu_e1, cpu_c0, cpu_c1;
	double t0, t1 = 0, deadline;
	struct body body = { 0 };
	struct h_resp resp;
	uint64_t cursor = 0;
	unsigned long got;
	int eport, rport, na = 0;
	long status, nconn;
	CURL *c = NULL;
	CURLcode cc;

	memset(r, 0, sizeof(*r));
	r->store = store;
	memset(&b, 0, sizeof(b));

	echo = h_echo_start(&eport, NULL);
	if (!echo) {
		fail(run_no, "pollbridge-echo did not start");
		return;
	}
	snprintf(route, sizeof(route), "--route=echo=ws://127.0.0.1:%d/", eport);
	args[na++] = route;
	if (store == ST_REDIS) {
		redis = h_redis_start(&rport, "--appendonly", "no", NULL);
		if (!redis) {
			fail(run_no, "redis-server did not start");
			goto out;
		}
		snprintf(store_url, sizeof(store_url), "redis://127.0.0.1:%d", rport);
		args[na++] = "--store";
		args[na++] = store_url;
	}
	args[na++] = "--max-batch";
	args[na++] = "1000";
	args[na++] = "--max-batch-bytes";
	args[na++] = "67108864";
	args[na++] = "--log-level";
	args[na++] = "warn";
	for (int i = 0; i < nextra; i++)
		args[na++] = extra[i];
	args[na] = NULL;
	/* h_bridge_start takes a NULL-terminated list; pass ours in full */
	if (h_bridge_start(&b, args[0], args[1], args[2], args[3], args[4], args[5], args[6],
			   args[7], args[8], args[9], args[10], args[11], args[12], args[13],
			   args[14], args[15], args[16], args[17], args[18], args[19], args[20],
			   args[21], args[22], args[23], args[24], args[25], args[26],
			   (char *)NULL)) {
		fail(run_no, "pollbridge did not start");
		goto out;
	}
	status = h_create(&b, "echo", id, NULL);
	if (status != 201) {
		fail(run_no, "session create answered %ld", status);
		goto out;
	}

	c = curl_easy_init();
	if (!c) {
		fail(run_no, "curl_easy_init failed");
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)(POLL_WAIT + 30));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);

	if (getenv("PB_BENCH_PAUSE") && *getenv("PB_BENCH_PAUSE") == '1') {
		printf("run %d %s: bridge pid %ld%s%ld, echo pid %ld; burst in 3 s\n", run_no,
		       store_names[store], (long)b.proc->pid, redis ? ", redis pid " : "",
		       redis ? (long)redis->pid : 0L, (long)echo->pid);
		fflush(stdout);
		h_sleep_ms(3000);
	}

	cpu_b0 = proc_cpu_s(b.proc->pid);
	cpu_e0 = proc_cpu_s(echo->pid);
	if (redis)
		cpu_r0 = proc_cpu_s(redis->pid);
	cpu_c0 = self_cpu_s();
	snprintf(cmd, sizeof(cmd), "/burst %lu", n);
	t0 = now_s();
	status = h_send_text(&b, id, cmd, &resp);
	h_resp_free(&resp);
	if (status != 200) {
		fail(run_no, "sending \"%s\" answered %ld", cmd, status);
		goto out;
	}

	deadline = t0 + RUN_TIMEOUT_S;
	while (cursor < n) {
		if (now_s() > deadline) {
			fail(run_no, "only %" PRIu64 " of %lu messages after %d s", cursor, n,
			     RUN_TIMEOUT_S);
			goto out;
		}
		snprintf(url, sizeof(url),
			 "%s/v1/sessions/%s/messages?wait=%d&max=%d&after=%" PRIu64, b.base, id,
			 POLL_WAIT, POLL_MAX, cursor);
		curl_easy_setopt(c, CURLOPT_URL, url);
		body.len = 0;
		if (body.p)
			body.p[0] = '\0';
		cc = curl_easy_perform(c);
		r->polls++;
		if (cc != CURLE_OK) {
			fail(run_no, "poll after=%" PRIu64 ": %s", cursor, curl_easy_strerror(cc));
			goto out;
		}
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		if (status != 200) {
			fail(run_no, "poll after=%" PRIu64 " answered %ld: %.200s", cursor, status,
			     body.p ? body.p : "");
			goto out;
		}
		nconn = 0;
		curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &nconn);
		r->connects += nconn;
		if (check_batch(run_no, &body, &cursor, n, &got))
			goto out;
		if (!got)
			r->empty++;
	}
	t1 = now_s();
	cpu_b1 = proc_cpu_s(b.proc->pid);
	cpu_e1 = proc_cpu_s(echo->pid);
	if (redis)
		cpu_r1 = proc_cpu_s(redis->pid);
	cpu_c1 = self_cpu_s();

	r->ok = 1;
	r->seconds = t1 - t0;
	r->rate = (double)n / r->seconds;
	r->bridge_cpu = cpu_b1 - cpu_b0;
	r->echo_cpu = cpu_e1 - cpu_e0;
	r->redis_cpu = cpu_r1 - cpu_r0;
	r->client_cpu = cpu_c1 - cpu_c0;

	/* acknowledge everything, then end the session */
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=%" PRIu64, b.base, id,
		 cursor);
	curl_easy_setopt(c, CURLOPT_URL, url);
	body.len = 0;
	curl_easy_perform(c);
	h_delete(&b, id);
out:
	if (c)
		curl_easy_cleanup(c);
	free(body.p);
	if (b.proc && h_stop(b.proc, SIGTERM, 6000) != 0)
		printf("# run %d: pollbridge did not exit 0 on SIGTERM\n", run_no);
	if (redis)
		h_stop(redis, SIGTERM, 5000);
	h_stop(echo, SIGTERM, 5000);
}

static void print_run(int run_no, const struct run *r, unsigned long n)
{
	char extra[96] = "";

	if (!r->ok) {
		printf("run %d %-6s: FAILED\n", run_no, store_names[r->store]);
		return;
	}
	if (r->store == ST_REDIS)
		snprintf(extra, sizeof(extra), ", redis-server %.2f us/msg",
			 r->redis_cpu * 1e6 / (double)n);
	printf("run %d %-6s: %.0f msg/s (%.3f s), %.0f polls/s, %.1f msg/poll "
	       "(%lu polls, %lu empty, %ld connection%s), CPU: bridge %.2f us/msg%s, "
	       "echo %.2f us/msg, client %.2f us/msg\n",
	       run_no, store_names[r->store], r->rate, r->seconds,
	       (double)r->polls / r->seconds, (double)n / (double)r->polls, r->polls, r->empty,
	       r->connects, r->connects == 1 ? "" : "s", r->bridge_cpu * 1e6 / (double)n, extra,
	       r->echo_cpu * 1e6 / (double)n, r->client_cpu * 1e6 / (double)n);
	fflush(stdout);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Print "store: runs ... msg/s, median M msg/s"; returns the median, 0 if
 * no run succeeded. */
static double summarize(enum store_kind store, const struct run *runs, int nruns)
{
	double rates[MAX_RUNS * 2], med = 0;
	int k = 0;

	printf("%s:%s runs", store_names[store], store == ST_REDIS ? " " : "");
	for (int i = 0; i < nruns; i++) {
		if (runs[i].store != store)
			continue;
		if (runs[i].ok) {
			printf(" %.0f", runs[i].rate);
			rates[k++] = runs[i].rate;
		} else {
			printf(" FAILED");
		}
	}
	if (k) {
		qsort(rates, (size_t)k, sizeof(rates[0]), cmp_double);
		med = k % 2 ? rates[k / 2] : (rates[k / 2 - 1] + rates[k / 2]) / 2;
		printf(" msg/s, median %.0f msg/s\n", med);
	} else {
		printf(", no successful run\n");
	}
	return med;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: deliver [-n N|memory=N|redis=N]... [-r RUNS] [-s memory|redis|both] "
		   "[-- EXTRA POLLBRIDGE ARGS...]\n");
}

/* Parse "-n" values: "N", "memory=N" or "redis=N". 0 if fine. */
static int parse_n(const char *arg, unsigned long nstore[2])
{
	const char *num = arg;
	unsigned long v;
	char *end;
	int which = -1;

	if (!strncmp(arg, "memory=", 7)) {
		which = ST_MEMORY;
		num = arg + 7;
	} else if (!strncmp(arg, "redis=", 6)) {
		which = ST_REDIS;
		num = arg + 6;
	}
	if (*num < '0' || *num > '9')
		return -1;
	errno = 0;
	v = strtoul(num, &end, 10);
	if (errno || *end || v < 1 || v > MAX_N)
		return -1;
	if (which != ST_REDIS)
		nstore[ST_MEMORY] = v;
	if (which != ST_MEMORY)
		nstore[ST_REDIS] = v;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long nstore[2] = { DEFAULT_N_MEMORY, DEFAULT_N_REDIS };
	int nper = DEFAULT_RUNS, want_mem = 1, want_redis = 1, nruns = 0, failures = 0, opt;
	int nextra = 0;
	char **extra = NULL;
	struct run runs[MAX_RUNS * 2];
	double med_mem, med_redis;

	while ((opt = getopt(argc, argv, "n:r:s:h")) != -1) {
		switch (opt) {
		case 'n':
			if (parse_n(optarg, nstore)) {
				fprintf(stderr, "deliver: -n wants N, memory=N or redis=N with N in "
						"1..%lu\n", MAX_N);
				return 2;
			}
			break;
		case 'r':
			nper = atoi(optarg);
			if (nper < 1 || nper > MAX_RUNS) {
				fprintf(stderr, "deliver: -r wants 1..%d\n", MAX_RUNS);
				return 2;
			}
			break;
		case 's':
			want_mem = !strcmp(optarg, "memory") || !strcmp(optarg, "both");
			want_redis = !strcmp(optarg, "redis") || !strcmp(optarg, "both");
			if (!want_mem && !want_redis) {
				usage(stderr);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	extra = argv + optind;
	nextra = argc - optind;
	if (nextra > MAX_EXTRA) {
		fprintf(stderr, "deliver: at most %d extra pollbridge arguments\n", MAX_EXTRA);
		return 2;
	}

	/* the bench picks each bridge's store itself */
	unsetenv("PB_TEST_STORE");
	unsetenv("PB_BRIDGE_WRAPPER");
	h_init();

	printf("deliver: %d run%s per store, one client long-polling wait=%d max=%d on one "
	       "keep-alive connection; bridge --max-batch 1000 --max-batch-bytes 67108864",
	       nper, nper == 1 ? "" : "s", POLL_WAIT, POLL_MAX);
	for (int i = 0; i < nextra; i++)
		printf(" %s", extra[i]);
	printf("\n");
	if (want_mem)
		printf("N (messages per run): memory %lu\n", nstore[ST_MEMORY]);
	if (want_redis)
		printf("N (messages per run): redis  %lu\n", nstore[ST_REDIS]);
	fflush(stdout);

	for (int i = 0; i < nper; i++) {
		if (want_mem) {
			do_run(nruns + 1, ST_MEMORY, nstore[ST_MEMORY], extra, nextra,
			       &runs[nruns]);
			print_run(nruns + 1, &runs[nruns], nstore[ST_MEMORY]);
			failures += !runs[nruns].ok;
			nruns++;
		}
		if (want_redis) {
			do_run(nruns + 1, ST_REDIS, nstore[ST_REDIS], extra, nextra,
			       &runs[nruns]);
			print_run(nruns + 1, &runs[nruns], nstore[ST_REDIS]);
			failures += !runs[nruns].ok;
			nruns++;
		}
	}

	med_mem = want_mem ? summarize(ST_MEMORY, runs, nruns) : 0;
	med_redis = want_redis ? summarize(ST_REDIS, runs, nruns) : 0;
	if (want_mem && want_redis) {
		if (med_mem > 0 && med_redis > 0)
			printf("redis/memory: %.*f\n", med_redis / med_mem < 0.1 ? 3 : 2,
			       med_redis / med_mem);
		else
			printf("redis/memory: n/a\n");
	}
	if (failures)
		printf("FAIL: %d run%s failed\n", failures, failures == 1 ? "" : "s");
	fflush(stdout);
	return failures ? 1 : 0;
}
