/*
 * loadgen.c: the peer benchmark's load generator (bench/peers.sh).
 *
 * What this file owns: N long-polling HTTP/1.1 clients on one epoll loop,
 * one keep-alive connection each, speaking pollbridge's /v1 API, the
 * Engine.IO v4 polling protocol or SockJS xhr-polling (pollbridge's door
 * at /sjs), and the figures of one scenario:
 *
 *   -m thru  every client creates its session (POST /v1/sessions?route=R,
 *            the Engine.IO handshake GET, or SockJS's first xhr POST to a
 *            session id of its own), then, once all exist, sends the
 *            text message "go" (the upstream, or the Engine.IO server, then
 *            pushes 64-byte messages) and long-polls one request at a time:
 *            /v1: GET .../messages?after=CURSOR&wait=30&max=64, the cursor
 *            acknowledging everything received; Engine.IO: GET ...&sid=ID;
 *            SockJS: POST /sjs/000/ID/xhr.
 *            After -w seconds of warm-up it counts messages for -d seconds.
 *   -m lat   the same, but the sender paces itself (e.g. 1,000 msgs/s over
 *            all sessions): the latency of each message is the receipt time
 *            (CLOCK_MONOTONIC when its answer has been read) minus the send
 *            time the sender wrote into the message.
 *   -m held  sessions are created and each parks a long poll (wait=30,
 *            re-polled when answered), in steps (-s 1000,5000,9500); after
 *            each step has settled, the RSS, open fds and threads of the
 *            first server pid are sampled (and the baseline before any).
 *
 * Server-side CPU is user+system time from /proc/PID/stat of the -P pids
 * (all threads; pollbridge and its redis-server, or node) over the window;
 * the load side's is this process's (getrusage) and the -U pids' (the C
 * upstream). The -R pids (the store's redis-servers, also among the -P
 * ones) are reported apart: store_cpu and store_us_per_msg (their
 * CPU-microseconds per delivered message). Output: one "key=value ..."
 * line per figure on stdout.
 *
 * Usage: loadgen -p PORT -k pb|eio|sjs -m thru|lat|held [-c CLIENTS] [-d SECS]
 *                [-w SECS] [-s STEPS] [-P PID,PID] [-U PID] [-R PID,PID]
 *                [-r ROUTE]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PIDS	8
#define MAX_STEPS	8
#define BATCH_MAX	64      /* max= of every /v1 poll */
#define POLL_WAIT	30
#define CREATE_INFLIGHT	64      /* sessions being created at once */

enum kind { K_PB, K_EIO, K_SJS };
enum mode { M_THRU, M_LAT, M_HELD };
enum phase { PH_IDLE, PH_CREATE, PH_READY, PH_GO, PH_POLL };

/* One client: one session on one keep-alive connection. */
struct client {
	int fd;
	int connecting;
	int want_out;
	enum phase phase;
	char sid[96];
	uint64_t cursor;
	char *in;
	size_t inlen, incap;
	char out[512];
	size_t outlen;
};

static enum kind kind = K_PB;
static enum mode mode = M_THRU;
static int port;
static const char *route = "up";
static int ep;
static struct client *cl;
static int nclients = 1;
static int created, creating, polling;
static uint64_t msgs, polls, errors, pings, retries;
static int counting;                    /* inside the measured window */
static uint64_t *lat;                   /* latency samples, ns */
static size_t nlat, caplat;
static char *scratch;                   /* de-chunked bodies */
static size_t scratchcap;

/* Nanoseconds of CLOCK_MONOTONIC. */
static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Print a message and exit 1. */
static void die(const char *what, const struct client *c)
{
	fprintf(stderr, "loadgen: %s (client %ld)\n", what, c ? (long)(c - cl) : -1L);
	exit(1);
}

/* CPU seconds (user+system, all threads) of a process, or -1. */
static double proc_cpu(int pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	p = strrchr(buf, ')');
	if (!p)
		return -1;
	/* Fields after the command: state is field 3, utime 14, stime 15;
	 * at step i, p is the space before field i. */
	for (i = 3; i <= 15 && p; i++) {
		p = strchr(p + 1, ' ');
		if (p && i == 14)
			ut = strtoul(p + 1, NULL, 10);
		if (p && i == 15)
			st = strtoul(p + 1, NULL, 10);
	}
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* This process's CPU seconds. */
static double self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Sum of proc_cpu over a pid list. */
static double pids_cpu(const int *pids, int n)
{
	double s = 0;
	int i;

	for (i = 0; i < n; i++) {
		double c = proc_cpu(pids[i]);

		if (c > 0)
			s += c;
	}
	return s;
}

/* VmRSS (KiB) and Threads of a process from /proc/PID/status. */
static void proc_mem(int pid, long *rss_kib, long *threads)
{
	char path[64], line[256];
	FILE *f;

	*rss_kib = *threads = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			*rss_kib = strtol(line + 6, NULL, 10);
		else if (strncmp(line, "Threads:", 8) == 0)
			*threads = strtol(line + 8, NULL, 10);
	}
	fclose(f);
}

/* Open descriptors of a process. */
static long proc_fds(int pid)
{
	char path[64];
	struct dirent *e;
	long n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Register interest in the client's socket events. */
static void watch(struct client *c, int op)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

	if (c->connecting || c->outlen)
		ev.events |= EPOLLOUT;
	c->want_out = (ev.events & EPOLLOUT) != 0;
	if (epoll_ctl(ep, op, c->fd, &ev) < 0)
		die("epoll_ctl", c);
}

/* Write as much of the pending request as the socket takes. */
static void flush_out(struct client *c)
{
	while (c->outlen && !c->connecting) {
		ssize_t w = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			die("send", c);
		}
		memmove(c->out, c->out + w, c->outlen - (size_t)w);
		c->outlen -= (size_t)w;
	}
	if (c->want_out != (c->connecting || c->outlen))
		watch(c, EPOLL_CTL_MOD);
}

/* Open the client's connection (non-blocking). */
static void conn_open(struct client *c)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die("socket (is ulimit -n high enough?)", c);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	c->connecting = 1;
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		c->connecting = 0;
	else if (errno != EINPROGRESS)
		die("connect", c);
	c->inlen = 0;
	watch(c, EPOLL_CTL_ADD);
}

/* Queue one request on the client's connection. */
static void request(struct client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Queue one request on the client's connection. */
static void request(struct client *c, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(c->out + c->outlen, sizeof(c->out) - c->outlen, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(c->out) - c->outlen)
		die("request too long", c);
	c->outlen += (size_t)n;
	flush_out(c);
}

/* Start creating a session. */
static void send_create(struct client *c)
{
	c->phase = PH_CREATE;
	creating++;
	if (kind == K_PB) {
		request(c, "POST /v1/sessions?route=%s HTTP/1.1\r\nHost: b\r\n"
			"Content-Length: 0\r\n\r\n", route);
	} else if (kind == K_SJS) {
		/* SockJS: the client names the session; its first receive opens it */
		snprintf(c->sid, sizeof(c->sid), "lg%ld", (long)(c - cl));
		request(c, "POST /sjs/000/%s/xhr HTTP/1.1\r\nHost: b\r\n"
			"Content-Length: 0\r\n\r\n", c->sid);
	} else {
		request(c, "GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: b\r\n\r\n");
	}
}

/* Tell the sender to start pushing to this session. */
static void send_go(struct client *c)
{
	c->phase = PH_GO;
	if (kind == K_PB)
		request(c, "POST /v1/sessions/%s/messages HTTP/1.1\r\nHost: b\r\n"
			"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\ngo", c->sid);
	else if (kind == K_SJS)
		request(c, "POST /sjs/000/%s/xhr_send HTTP/1.1\r\nHost: b\r\n"
			"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 6\r\n\r\n"
			"[\"go\"]", c->sid);
	else
		request(c, "POST /engine.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\n"
			"Host: b\r\nContent-Type: text/plain;charset=UTF-8\r\n"
			"Content-Length: 3\r\n\r\n4go", c->sid);
}

/* Send the next long poll. */
static void send_poll(struct client *c)
{
	if (c->phase != PH_POLL) {
		c->phase = PH_POLL;
		polling++;
	}
	if (kind == K_PB)
		request(c, "GET /v1/sessions/%s/messages?after=%" PRIu64 "&wait=%d&max=%d "
			"HTTP/1.1\r\nHost: b\r\n\r\n", c->sid, c->cursor, POLL_WAIT, BATCH_MAX);
	else if (kind == K_SJS)
		request(c, "POST /sjs/000/%s/xhr HTTP/1.1\r\nHost: b\r\n"
			"Content-Length: 0\r\n\r\n", c->sid);
	else
		request(c, "GET /engine.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\n"
			"Host: b\r\n\r\n", c->sid);
}

/* Parse up to 20 decimal digits. */
static uint64_t digits(const char *p, const char *end)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 20 && p < end && *p >= '0' && *p <= '9'; i++, p++)
		v = v * 10 + (uint64_t)(*p - '0');
	return v;
}

/* Account one received message sent at ts. */
static void got_message(uint64_t ts, uint64_t now)
{
	msgs += counting;
	if (!counting || mode != M_LAT || !ts)
		return;
	if (nlat == caplat) {
		caplat = caplat ? caplat * 2 : 65536;
		lat = realloc(lat, caplat * sizeof(*lat));
		if (!lat)
			die("out of memory", NULL);
	}
	lat[nlat++] = now > ts ? now - ts : 0;
}

/* Copy a JSON string value that follows key into out. */
static int json_str(const char *body, size_t len, const char *key, char *out, size_t outsz)
{
	const char *p = memmem(body, len, key, strlen(key)), *e;

	if (!p)
		return -1;
	p += strlen(key);
	e = memchr(p, '"', (size_t)(body + len - p));
	if (!e || (size_t)(e - p) >= outsz || e == p)
		return -1;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return 0;
}

/* Handle a /v1 poll answer: count messages, move the cursor. */
static void pb_batch(struct client *c, const char *b, size_t len, uint64_t now)
{
	const char *end = b + len, *p = b;

	for (;;) {
		const char *q = memmem(p, (size_t)(end - p), "\"seq\":", 6), *d;
		uint64_t seq;

		if (!q)
			break;
		seq = digits(q + 6, end);
		if (seq > c->cursor)
			c->cursor = seq;
		d = memmem(q, (size_t)(end - q), "\"data\":\"", 8);
		if (!d)
			break;
		got_message(digits(d + 8, end), now);
		p = d + 8;
	}
	if (memmem(b, len, "\"state\":\"closed\"", 16)) {
		const char *cl = memmem(b, len, "\"close\":", 8);

		fprintf(stderr, "loadgen: %.*s\n", cl ? (int)(end - cl > 80 ? 80 : end - cl) : 0,
			cl ? cl : "");
		die("session closed under load", c);
	}
}

/* Handle an Engine.IO v4 payload: packets joined by 0x1e. Counted: message
 * packets '4' (the send time follows the type byte); pings '2' are counted
 * (no server in this benchmark sends any: 10-minute heartbeats); noops '6'
 * (pollbridge's door answers one after --wait-max, or when a newer poll
 * takes over), pongs and anything else are skipped; a close packet '1' is
 * fatal. */
static void eio_payload(struct client *c, const char *b, size_t len, uint64_t now)
{
	const char *end = b + len, *p = b;

	while (p < end) {
		const char *e = memchr(p, 0x1e, (size_t)(end - p));

		if (!e)
			e = end;
		if (e > p) {
			if (*p == '4')
				got_message(digits(p + 1, e), now);
			else if (*p == '2')
				pings++;
			else if (*p == '1')
				die("engine.io closed the session", c);
		}
		p = e + 1;
	}
}

/* Handle a SockJS xhr answer: one frame. Counted: the strings of an array
 * frame 'a' (each starts with its send time; the bench's messages hold no
 * character JSON escapes); a heartbeat 'h' is counted as a ping; an open
 * frame 'o' is skipped; a close frame 'c' is fatal. */
static void sjs_frame(struct client *c, const char *b, size_t len, uint64_t now)
{
	const char *end = b + len, *p = b + 1;

	if (len < 1)
		die("empty SockJS frame", c);
	if (b[0] == 'h') {
		pings++;
		return;
	}
	if (b[0] == 'c')
		die("the SockJS session was closed", c);
	if (b[0] != 'a')
		return;
	for (;;) {
		const char *q = memchr(p, '"', (size_t)(end - p)), *e;

		if (!q)
			break;
		e = memchr(q + 1, '"', (size_t)(end - q - 1));
		if (!e)
			die("unterminated string in a SockJS frame", c);
		got_message(digits(q + 1, e), now);
		p = e + 1;
	}
}

/* One complete response arrived. */
static void on_response(struct client *c, int status, const char *b, size_t len)
{
	uint64_t now = now_ns();

	switch (c->phase) {
	case PH_CREATE:
		creating--;
		if (status >= 502 && status <= 504 && retries < 100) {
			retries++;      /* an upstream dial that timed out under load */
			send_create(c);
			return;
		}
		if (kind == K_PB ? status != 201 || json_str(b, len, "\"session\":\"", c->sid,
							       sizeof(c->sid)) < 0
		    : kind == K_SJS ? status != 200 || len < 1 || b[0] != 'o'
				 : status != 200 || len < 1 || b[0] != '0' ||
				   json_str(b, len, "\"sid\":\"", c->sid, sizeof(c->sid)) < 0) {
			fprintf(stderr, "loadgen: create answered %d: %.*s\n", status,
				(int)(len > 200 ? 200 : len), b);
			die("cannot create a session", c);
		}
		if (kind == K_EIO) {
			const char *rs = memchr(b, 0x1e, len);

			/* "x" is what bench/upstream.c -e puts in its open packet:
			 * pollbridge's door must answer its own session id. */
			if (strcmp(c->sid, "x") == 0)
				die("the open packet's sid was not rewritten", c);
			/* Packets that came with the open packet (none here). */
			if (rs)
				eio_payload(c, rs + 1, (size_t)(b + len - rs - 1), now);
		}
		created++;
		c->phase = PH_READY;
		if (mode == M_HELD)
			send_poll(c);
		return;
	case PH_GO:
		if (status != (kind == K_SJS ? 204 : 200))
			die("the \"go\" message was refused", c);
		send_poll(c);
		return;
	case PH_POLL:
		polls += counting;
		if (status != 200) {
			errors++;
			fprintf(stderr, "loadgen: poll answered %d: %.*s\n", status,
				(int)(len > 200 ? 200 : len), b);
			if (status == 404 || status == 410 || status == 400)
				die("session lost", c);
		} else if (kind == K_PB) {
			pb_batch(c, b, len, now);
		} else if (kind == K_SJS) {
			sjs_frame(c, b, len, now);
		} else {
			eio_payload(c, b, len, now);
		}
		send_poll(c);
		return;
	default:
		die("unexpected response", c);
	}
}

/* Parse complete responses from the input buffer. */
static void parse_input(struct client *c)
{
	for (;;) {
		char *he = memmem(c->in, c->inlen, "\r\n\r\n", 4), *p, *body;
		size_t head, blen = 0, used;
		int status, chunked = 0;
		long clen = -1;

		if (!he)
			return;
		head = (size_t)(he - c->in) + 4;
		if (c->inlen < 12 || strncmp(c->in, "HTTP/1.", 7) != 0)
			die("not an HTTP response", c);
		status = atoi(c->in + 9);
		*he = '\0';
		p = strcasestr(c->in, "\r\nContent-Length:");
		if (p)
			clen = strtol(p + 17, NULL, 10);
		else if ((p = strcasestr(c->in, "\r\nTransfer-Encoding:")) &&
			 strcasestr(p, "chunked"))
			chunked = 1;
		*he = '\r';
		if (!chunked) {
			if (clen < 0)
				clen = 0;
			if (c->inlen < head + (size_t)clen)
				return;
			body = c->in + head;
			blen = (size_t)clen;
			used = head + (size_t)clen;
		} else {
			size_t off = head;

			for (;;) {
				char *crlf = memmem(c->in + off, c->inlen - off, "\r\n", 2);
				unsigned long sz;

				if (!crlf)
					return;
				sz = strtoul(c->in + off, NULL, 16);
				if (c->inlen < (size_t)(crlf - c->in) + 2 + sz + 2)
					return;
				if (blen + sz + 1 > scratchcap) {
					scratchcap = (blen + sz + 1) * 2;
					scratch = realloc(scratch, scratchcap);
					if (!scratch)
						die("out of memory", c);
				}
				memcpy(scratch + blen, crlf + 2, sz);
				blen += sz;
				off = (size_t)(crlf - c->in) + 2 + sz + 2;
				if (sz == 0)
					break;
			}
			body = scratch;
			used = off;
		}
		on_response(c, status, body, blen);
		memmove(c->in, c->in + used, c->inlen - used);
		c->inlen -= used;
	}
}

/* Read what arrived on a client's connection. */
static void on_readable(struct client *c)
{
	for (;;) {
		ssize_t r;

		if (c->incap - c->inlen < 4096) {
			c->incap = c->incap ? c->incap * 2 : 8192;
			c->in = realloc(c->in, c->incap);
			if (!c->in)
				die("out of memory", c);
		}
		r = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, 0);
		if (r == 0)
			die("the server closed a connection", c);
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			die("recv", c);
		}
		c->inlen += (size_t)r;
	}
	parse_input(c);
}

/* One pass of the event loop, at most timeout_ms. */
static void loop_once(int timeout_ms)
{
	struct epoll_event evs[256];
	int n = epoll_wait(ep, evs, 256, timeout_ms), i;

	for (i = 0; i < n; i++) {
		struct client *c = evs[i].data.ptr;

		if (c->connecting && (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
			int err = 0;
			socklen_t sl = sizeof(err);

			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
			if (err)
				die("connect failed", c);
			c->connecting = 0;
		}
		if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			on_readable(c);
		if (c->outlen || c->want_out)
			flush_out(c);
	}
}

/* Start creating sessions until `upto` exist or are under way. */
static void create_more(int *next, int upto)
{
	while (*next < upto && creating < CREATE_INFLIGHT) {
		struct client *c = &cl[(*next)++];

		conn_open(c);
		send_create(c);
	}
}

/* Run the loop for a while. */
static void run_for(double secs)
{
	uint64_t until = now_ns() + (uint64_t)(secs * 1e9);

	while (now_ns() < until)
		loop_once(5);
}

/* Comparison of two latency samples. */
static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Percentile p (0..100) of the sorted samples, in ms. */
static double pct(double p)
{
	size_t i;

	if (!nlat)
		return -1;
	i = (size_t)(p / 100.0 * (double)nlat);
	if (i >= nlat)
		i = nlat - 1;
	return (double)lat[i] / 1e6;
}

/* Parse a comma-separated list of ints. */
static int int_list(const char *s, int *out, int max)
{
	int n = 0;

	while (*s && n < max) {
		out[n++] = (int)strtol(s, (char **)&s, 10);
		if (*s == ',')
			s++;
		else
			break;
	}
	return n;
}

int main(int argc, char **argv)
{
	int spids[MAX_PIDS], upids[MAX_PIDS], rpids[MAX_PIDS], steps[MAX_STEPS] = { 1000, 5000, 9500 };
	int nsp = 0, nup = 0, nrp = 0, nsteps = 3, opt, next = 0, i;
	double dur = 3, warm = 1;

	while ((opt = getopt(argc, argv, "p:k:m:c:d:w:s:P:U:R:r:")) != -1) {
		switch (opt) {
		case 'p': port = atoi(optarg); break;
		case 'k':
			kind = strcmp(optarg, "eio") == 0 ? K_EIO : strcmp(optarg, "sjs") == 0 ? K_SJS : K_PB;
			break;
		case 'm':
			mode = strcmp(optarg, "lat") == 0 ? M_LAT :
			       strcmp(optarg, "held") == 0 ? M_HELD : M_THRU;
			break;
		case 'c': nclients = atoi(optarg); break;
		case 'd': dur = atof(optarg); break;
		case 'w': warm = atof(optarg); break;
		case 's': nsteps = int_list(optarg, steps, MAX_STEPS); break;
		case 'P': nsp = int_list(optarg, spids, MAX_PIDS); break;
		case 'U': nup = int_list(optarg, upids, MAX_PIDS); break;
		case 'R': nrp = int_list(optarg, rpids, MAX_PIDS); break;
		case 'r': route = optarg; break;
		default:
			fprintf(stderr, "usage: loadgen -p PORT -k pb|eio|sjs -m thru|lat|held [-c N] "
				"[-d S] [-w S] [-s STEPS] [-P PIDS] [-U PIDS] [-R PIDS] [-r ROUTE]\n");
			return 2;
		}
	}
	if (!port || nclients < 1)
		die("need -p PORT and -c >= 1", NULL);
	if (mode == M_HELD)
		nclients = steps[nsteps - 1];
	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(EPOLL_CLOEXEC);
	cl = calloc((size_t)nclients, sizeof(*cl));
	if (!cl)
		die("out of memory", NULL);

	if (mode == M_HELD) {
		long rss0, thr0, fds0 = nsp ? proc_fds(spids[0]) : -1;
		int s;

		proc_mem(nsp ? spids[0] : 0, &rss0, &thr0);
		printf("mode=held sessions=0 rss_kib=%ld fds=%ld threads=%ld\n", rss0, fds0, thr0);
		for (s = 0; s < nsteps; s++) {
			long rss, thr, fds;
			uint64_t t0 = now_ns();

			while (polling < steps[s]) {
				create_more(&next, steps[s]);
				loop_once(5);
				if (now_ns() - t0 > 300000000000ull)
					die("creating sessions took over 300 s", NULL);
			}
			run_for(2.0);   /* let every poll be read and parked */
			proc_mem(spids[0], &rss, &thr);
			fds = proc_fds(spids[0]);
			printf("mode=held sessions=%d rss_kib=%ld fds=%ld threads=%ld "
			       "rss_per_session_kib=%.2f fds_per_session=%.3f create_s=%.2f "
			       "create_retries=%" PRIu64 "\n",
			       steps[s], rss, fds, thr, (double)(rss - rss0) / steps[s],
			       (double)(fds - fds0) / steps[s], (double)(now_ns() - t0) / 1e9,
			       retries);
			fflush(stdout);
		}
		return 0;
	}

	while (created < nclients) {
		create_more(&next, nclients);
		loop_once(5);
	}
	for (i = 0; i < nclients; i++)
		send_go(&cl[i]);
	while (polling < nclients)
		loop_once(5);
	run_for(warm);
	{
		double s0 = pids_cpu(spids, nsp), u0 = pids_cpu(upids, nup), l0 = self_cpu();
		double r0 = pids_cpu(rpids, nrp);
		uint64_t t0 = now_ns();
		double secs, scpu, ucpu, lcpu, rcpu;

		counting = 1;
		run_for(dur);
		counting = 0;
		secs = (double)(now_ns() - t0) / 1e9;
		scpu = pids_cpu(spids, nsp) - s0;
		ucpu = pids_cpu(upids, nup) - u0;
		lcpu = self_cpu() - l0;
		rcpu = pids_cpu(rpids, nrp) - r0;
		printf("mode=%s clients=%d secs=%.2f msgs_per_s=%.0f polls_per_s=%.0f "
		       "msgs_per_poll=%.1f server_cpu=%.3f msgs_per_cpu_s=%.0f "
		       "upstream_cpu=%.3f load_cpu=%.3f errors=%" PRIu64,
		       mode == M_LAT ? "lat" : "thru", nclients, secs, (double)msgs / secs,
		       (double)polls / secs, polls ? (double)msgs / (double)polls : 0.0,
		       scpu / secs, scpu > 0 ? (double)msgs / scpu : 0.0, ucpu / secs,
		       lcpu / secs, errors);
		if (mode == M_LAT) {
			qsort(lat, nlat, sizeof(*lat), cmp_u64);
			printf(" samples=%zu p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f",
			       nlat, pct(50), pct(99), pct(99.9), nlat ? (double)lat[nlat - 1] / 1e6 : -1);
		}
		/* -R: the store's processes (redis-servers, also in -P): their
		 * CPU and CPU-microseconds per delivered message */
		if (nrp)
			printf(" store_cpu=%.3f store_us_per_msg=%.2f", rcpu / secs,
			       msgs ? rcpu * 1e6 / (double)msgs : 0.0);
		printf("\n");
	}
	return 0;
}
