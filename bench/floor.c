/*
 * floor.c: the latency floor of the machine, for the peer benchmark's
 * latency rows (bench/peers.sh, bench/README.md). It times what any server
 * in the latency test cannot avoid, with nothing else done: messages that
 * cross from the load CPU to the server CPU and back (two hops: the path of
 * a bridge, whose messages come from an upstream on the load CPU), or that
 * start on the server CPU and cross once (one hop: the path of a server
 * that makes its messages itself, as the Engine.IO peer does).
 *
 * Three processes over TCP on 127.0.0.1, like the servers measured:
 *   - the source writes (send time) records at RATE per second, spread
 *     evenly, on the load CPU (2 hops) or the server CPU (1 hop);
 *   - the relay (2 hops only), on the server CPU, waits in epoll_wait,
 *     reads what came and writes it on to the sink, nothing else;
 *   - the sink, on the load CPU, waits in epoll_wait and notes receive
 *     time minus send time (CLOCK_MONOTONIC, shared by the processes).
 *
 * Usage: floor -h HOPS -r RATE -d SECS -w WARM_SECS -s SRV_CPU -c LOAD_CPU
 * Prints: hops=H samples=N p50_ms=.. p99_ms=.. p999_ms=.. max_ms=..
 * Not part of the product build (bench/peers.mk).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct rec {
	uint64_t sent_ns;
	uint64_t seq;
};

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity");
}

/* A listening socket on 127.0.0.1, its port in *port. */
static int listen_any(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4) ||
	    getsockname(fd, (struct sockaddr *)&a, &len))
		die("listen");
	*port = ntohs(a.sin_port);
	return fd;
}

static void nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		die("TCP_NODELAY");
}

static int connect_to(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	nodelay(fd);
	return fd;
}

static int accept_one(int lfd)
{
	int fd = accept(lfd, NULL, NULL);

	if (fd < 0)
		die("accept");
	nodelay(fd);
	return fd;
}

static void write_all(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write");
		p = (const char *)p + w;
		n -= (size_t)w;
	}
}

/* The source: n records at rate per second, then it closes. */
static void source(int fd, uint64_t n, unsigned rate)
{
	uint64_t gap = 1000000000u / rate, next = now_ns();

	for (uint64_t i = 0; i < n; i++) {
		struct timespec t;
		struct rec r;

		next += gap;
		t.tv_sec = (time_t)(next / 1000000000u);
		t.tv_nsec = (long)(next % 1000000000u);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
			;
		r.sent_ns = now_ns();
		r.seq = i;
		write_all(fd, &r, sizeof(r));
	}
	close(fd);
}

/* The relay: what in brings, out gets, until in closes. */
static void relay(int in, int out)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int ep = epoll_create1(EPOLL_CLOEXEC);
	char buf[65536];

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, in, &ev))
		die("epoll");
	for (;;) {
		ssize_t n;

		if (epoll_wait(ep, &ev, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		write_all(out, buf, (size_t)n);
	}
	close(out);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The sink: latencies of the records after the first skip, until in closes;
 * -> how many, sorted, in lat (at most cap). */
static size_t sink(int in, uint64_t skip, uint64_t *lat, size_t cap)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int ep = epoll_create1(EPOLL_CLOEXEC);
	char buf[65536];
	size_t have = 0, n = 0;

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, in, &ev))
		die("epoll");
	for (;;) {
		ssize_t got;
		uint64_t t;

		if (epoll_wait(ep, &ev, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		got = read(in, buf + have, sizeof(buf) - have);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		t = now_ns();
		have += (size_t)got;
		for (size_t off = 0; off + sizeof(struct rec) <= have; off += sizeof(struct rec)) {
			struct rec r;

			memcpy(&r, buf + off, sizeof(r));
			if (r.seq >= skip && n < cap)
				lat[n++] = t - r.sent_ns;
		}
		memmove(buf, buf + have - have % sizeof(struct rec), have % sizeof(struct rec));
		have %= sizeof(struct rec);
	}
	qsort(lat, n, sizeof(*lat), cmp_u64);
	return n;
}

static double pct_ms(const uint64_t *lat, size_t n, double q)
{
	size_t i = (size_t)(q * (double)n);

	if (i >= n)
		i = n - 1;
	return (double)lat[i] / 1e6;
}

int main(int argc, char **argv)
{
	int hops = 2, srv_cpu = 0, load_cpu = 1, opt, lfd, fd, port, rc;
	unsigned rate = 1000;
	double secs = 10, warm = 1;
	uint64_t total, skip, *lat;
	pid_t src, rel = -1;
	size_t n;

	while ((opt = getopt(argc, argv, "h:r:d:w:s:c:")) != -1) {
		switch (opt) {
		case 'h': hops = atoi(optarg); break;
		case 'r': rate = (unsigned)atoi(optarg); break;
		case 'd': secs = atof(optarg); break;
		case 'w': warm = atof(optarg); break;
		case 's': srv_cpu = atoi(optarg); break;
		case 'c': load_cpu = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: floor -h 1|2 -r RATE -d SECS -w WARM -s SRV_CPU -c LOAD_CPU\n");
			return 2;
		}
	}
	if ((hops != 1 && hops != 2) || rate == 0 || rate > 1000000 || secs <= 0 || warm < 0) {
		fprintf(stderr, "floor: -h is 1 or 2, -r 1..1000000, -d > 0, -w >= 0\n");
		return 2;
	}
	skip = (uint64_t)(warm * rate);
	total = skip + (uint64_t)(secs * rate);
	lat = malloc(sizeof(*lat) * (total - skip + 1));
	if (!lat)
		die("malloc");
	signal(SIGPIPE, SIG_IGN);
	lfd = listen_any(&port);

	/* the sink's end first, then the source (through the relay for 2) */
	if (hops == 2) {
		int rport, rlfd = listen_any(&rport);

		rel = fork();
		if (rel < 0)
			die("fork");
		if (rel == 0) {
			int in, out;

			pin(srv_cpu);
			out = connect_to(port);
			in = accept_one(rlfd);
			relay(in, out);
			_exit(0);
		}
		close(rlfd);
		src = fork();
		if (src < 0)
			die("fork");
		if (src == 0) {
			pin(load_cpu);
			source(connect_to(rport), total, rate);
			_exit(0);
		}
	} else {
		src = fork();
		if (src < 0)
			die("fork");
		if (src == 0) {
			pin(srv_cpu);
			source(connect_to(port), total, rate);
			_exit(0);
		}
	}
	pin(load_cpu);
	fd = accept_one(lfd);
	close(lfd);
	n = sink(fd, skip, lat, (size_t)(total - skip + 1));
	waitpid(src, NULL, 0);
	if (rel > 0)
		waitpid(rel, NULL, 0);
	if (n == 0) {
		fprintf(stderr, "floor: no samples\n");
		return 1;
	}
	rc = printf("hops=%d samples=%zu p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n", hops,
		     n, pct_ms(lat, n, 0.50), pct_ms(lat, n, 0.99), pct_ms(lat, n, 0.999),
		     (double)lat[n - 1] / 1e6);
	free(lat);
	return rc < 0;
}
