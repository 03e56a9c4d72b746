/*
 * upstream.c: the peer benchmark's WebSocket upstream (bench/peers.sh).
 *
 * What this file owns: a minimal RFC 6455 server side on one epoll loop that
 * pushes 64-byte text messages to every session that asked for them. Each
 * message starts with the CLOCK_MONOTONIC send time in nanoseconds (20
 * digits), then a per-connection sequence number, padded with 'x' to 64
 * bytes, so the load generator can measure upstream-send -> client-receipt.
 *
 * A connection starts pushing when it receives the text message "go" and
 * stops on "stop". Pings are answered with pongs, a close frame with a close
 * frame. Two modes:
 *   -r 0     (default) flood: every active connection is written as fast as
 *            its socket takes it (blocks of 64 frames, until EAGAIN);
 *   -r RATE  RATE messages per second in all, spread round-robin over the
 *            active connections, paced by a 1 ms timerfd.
 *
 * With -e it is an Engine.IO v4 server behind its WebSocket transport (what
 * pollbridge's Engine.IO door dials, with ?EIO=4): on connect it sends the
 * open packet (pingInterval and pingTimeout 10 minutes, so no heartbeat runs
 * during a benchmark), every pushed message is a message packet: '4' plus 63
 * bytes, still 64 bytes of frame payload, so frames are the same size in both
 * modes; the control words arrive as message packets ("4go", "4stop"), and a
 * ping packet "2" is answered with the pong "3".
 *
 * Usage: upstream [-p PORT] [-r RATE] [-e]
 * Prints "listening PORT" on stdout once ready. On SIGTERM/SIGINT it prints
 * "upstream sent=N cpu=SECONDS" on stderr and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MSG_BYTES	64
#define FRAME_BYTES	(MSG_BYTES + 2)
#define BLOCK_FRAMES	64
#define IN_CAP		8192
#define WS_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define EIO_OPEN	"0{\"sid\":\"x\",\"upgrades\":[],\"pingInterval\":600000," \
			"\"pingTimeout\":600000,\"maxPayload\":1000000}"

/* One upstream connection (a pollbridge session). */
struct conn {
	int fd;
	int open;               /* handshake done */
	int active;             /* "go" received */
	int want_out;           /* EPOLLOUT registered */
	uint64_t seq;
	size_t inlen;
	unsigned char in[IN_CAP];
	unsigned char *out;     /* bytes not yet written */
	size_t outlen, outcap;
	struct conn *next_active, *prev_active;
	struct conn *next_dead; /* closed, freed after this epoll batch */
	int dead;
};

static int ep;
static volatile sig_atomic_t stop_flag;
static uint64_t total_sent;
static struct conn *active_head;        /* ring of active connections */
static int tick_tag;                    /* epoll tag of the rate timer */
static struct conn *dead_list;          /* closed in this batch, not yet freed */
static int eio;                         /* -e: Engine.IO v4 packets in the frames */

/* Nanoseconds of CLOCK_MONOTONIC. */
static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Signal handler: ask the loop to stop. */
static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* Write v as exactly width decimal digits (zero-padded) at p. */
static void put_digits(unsigned char *p, uint64_t v, int width)
{
	while (width-- > 0) {
		p[width] = (unsigned char)('0' + v % 10);
		v /= 10;
	}
}

/* Write one frame header and a 64-byte timestamped payload at p:
 * "<20-digit ns> <10-digit seq> " then 'x' up to 64 bytes; with -e the
 * payload starts with the message packet type '4' (still 64 bytes). */
static void put_frame(unsigned char *p, struct conn *c, uint64_t ts)
{
	unsigned char *q = p + 2;

	p[0] = 0x81;
	p[1] = MSG_BYTES;
	if (eio)
		*q++ = '4';
	put_digits(q, ts, 20);
	q[20] = ' ';
	put_digits(q + 21, ++c->seq, 10);
	q[31] = ' ';
	memset(q + 32, 'x', (size_t)(p + FRAME_BYTES - (q + 32)));
	total_sent++;
}

/* Append bytes to a connection's pending output. */
static int out_append(struct conn *c, const void *p, size_t n)
{
	if (c->outlen + n > c->outcap) {
		size_t cap = c->outcap ? c->outcap * 2 : 4096;
		unsigned char *q;

		while (cap < c->outlen + n)
			cap *= 2;
		q = realloc(c->out, cap);
		if (!q)
			return -1;
		c->out = q;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, p, n);
	c->outlen += n;
	return 0;
}

/* Append one unmasked text frame (payload under 64 KiB) to the output. */
static int out_text(struct conn *c, const char *pl, size_t n)
{
	unsigned char hdr[4] = { 0x81 };
	size_t hl = 2;

	if (n < 126) {
		hdr[1] = (unsigned char)n;
	} else {
		hdr[1] = 126;
		hdr[2] = (unsigned char)(n >> 8);
		hdr[3] = (unsigned char)n;
		hl = 4;
	}
	return out_append(c, hdr, hl) < 0 ? -1 : out_append(c, pl, n);
}

/* Register or drop interest in EPOLLOUT. */
static void set_out(struct conn *c, int want)
{
	struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };

	if (want == c->want_out)
		return;
	c->want_out = want;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Link a connection into the active ring (idempotent). */
static void activate(struct conn *c)
{
	if (c->active)
		return;
	c->active = 1;
	if (!active_head) {
		c->next_active = c->prev_active = c;
		active_head = c;
	} else {
		c->next_active = active_head;
		c->prev_active = active_head->prev_active;
		active_head->prev_active->next_active = c;
		active_head->prev_active = c;
	}
}

/* Unlink a connection from the active ring. */
static void deactivate(struct conn *c)
{
	if (!c->active)
		return;
	c->active = 0;
	if (c->next_active == c) {
		active_head = NULL;
	} else {
		c->prev_active->next_active = c->next_active;
		c->next_active->prev_active = c->prev_active;
		if (active_head == c)
			active_head = c->next_active;
	}
}

/* Close a connection; its memory is freed after the current epoll batch,
 * which may still name it. */
static void conn_close(struct conn *c)
{
	if (c->dead)
		return;
	deactivate(c);
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->dead = 1;
	c->next_dead = dead_list;
	dead_list = c;
}

/* Free the connections closed during the last epoll batch. */
static void reap_dead(void)
{
	while (dead_list) {
		struct conn *c = dead_list;

		dead_list = c->next_dead;
		free(c->out);
		free(c);
	}
}

/* Write pending output; in flood mode top it up with fresh frames until the
 * socket is full (bounded per call, so one connection cannot starve the
 * rest). Returns -1 if the connection died. */
static int flush_out(struct conn *c, int flood)
{
	unsigned char block[BLOCK_FRAMES * FRAME_BYTES];
	int rounds = 0;

	for (;;) {
		while (c->outlen) {
			ssize_t w = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);

			if (w < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					set_out(c, 1);
					return 0;
				}
				if (errno == EINTR)
					continue;
				return -1;
			}
			memmove(c->out, c->out + w, c->outlen - (size_t)w);
			c->outlen -= (size_t)w;
		}
		if (!flood || !c->active || !c->open || ++rounds > 16)
			break;
		{
			uint64_t ts = now_ns();
			ssize_t w;
			int i;

			for (i = 0; i < BLOCK_FRAMES; i++)
				put_frame(block + i * FRAME_BYTES, c, ts);
			w = send(c->fd, block, sizeof(block), MSG_NOSIGNAL);
			if (w < 0) {
				if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
					return -1;
				w = 0;
			}
			if ((size_t)w < sizeof(block) &&
			    out_append(c, block + w, sizeof(block) - (size_t)w) < 0)
				return -1;
		}
	}
	set_out(c, flood && c->active && c->open);
	return 0;
}

/* Standard base64 of n bytes into out (NUL-terminated). */
static void b64(const unsigned char *in, size_t n, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[(v >> 6) & 63];
		out[o++] = tab[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);

		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
}

/* Answer the opening handshake once the request head is complete.
 * Returns 1 when done, 0 when more bytes are needed, -1 on a bad request. */
static int handshake(struct conn *c)
{
	unsigned char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
	char key[128], src[256], acc[64], resp[256];
	unsigned char sha[20];
	const char *p, *e;
	size_t head, klen;
	int n;

	if (!end)
		return c->inlen >= IN_CAP ? -1 : 0;
	head = (size_t)(end - c->in) + 4;
	c->in[head - 1] = '\0';
	p = strcasestr((char *)c->in, "\r\nSec-WebSocket-Key:");
	if (!p)
		return -1;
	p += 20;
	while (*p == ' ' || *p == '\t')
		p++;
	e = strstr(p, "\r\n");
	if (!e)
		return -1;
	while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	klen = (size_t)(e - p);
	if (klen == 0 || klen >= sizeof(key))
		return -1;
	memcpy(key, p, klen);
	key[klen] = '\0';
	n = snprintf(src, sizeof(src), "%s%s", key, WS_GUID);
	if (gnutls_hash_fast(GNUTLS_DIG_SHA1, src, (size_t)n, sha) < 0)
		return -1;
	b64(sha, sizeof(sha), acc);
	n = snprintf(resp, sizeof(resp),
		     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
	if (out_append(c, resp, (size_t)n) < 0)
		return -1;
	if (eio && out_text(c, EIO_OPEN, sizeof(EIO_OPEN) - 1) < 0)
		return -1;
	memmove(c->in, c->in + head, c->inlen - head);
	c->inlen -= head;
	c->open = 1;
	return 1;
}

/* Handle one complete client frame. Returns -1 to close the connection. */
static int on_frame(struct conn *c, int op, unsigned char *pl, size_t n)
{
	unsigned char hdr[2];

	switch (op) {
	case 1:         /* text: the control words */
		if (eio) {      /* Engine.IO: a ping, or a message packet */
			if (n >= 1 && pl[0] == '2') {
				pl[0] = '3';
				return out_text(c, (char *)pl, n);
			}
			if (n < 1 || pl[0] != '4')
				return 0;
			pl++;
			n--;
		}
		if (n == 2 && memcmp(pl, "go", 2) == 0)
			activate(c);
		else if (n == 4 && memcmp(pl, "stop", 4) == 0)
			deactivate(c);
		return 0;
	case 8:         /* close: echo it, then go */
		hdr[0] = 0x88;
		hdr[1] = (unsigned char)(n > 125 ? 0 : n);
		send(c->fd, hdr, 2, MSG_NOSIGNAL);
		if (n <= 125)
			send(c->fd, pl, n, MSG_NOSIGNAL);
		return -1;
	case 9:         /* ping: pong with the same payload */
		if (n > 125)
			return -1;
		hdr[0] = 0x8a;
		hdr[1] = (unsigned char)n;
		if (out_append(c, hdr, 2) < 0 || out_append(c, pl, n) < 0)
			return -1;
		return 0;
	default:
		return 0;
	}
}

/* Parse every complete masked frame in the input buffer. */
static int parse_frames(struct conn *c)
{
	size_t off = 0;

	for (;;) {
		unsigned char *p = c->in + off;
		size_t avail = c->inlen - off, hl = 2, len, i;
		unsigned char *mask;

		if (avail < 2)
			break;
		len = p[1] & 0x7f;
		if (len == 126) {
			hl = 4;
			if (avail < hl)
				break;
			len = (size_t)p[2] << 8 | p[3];
		} else if (len == 127) {
			return -1;      /* nobody sends us that much */
		}
		if (!(p[1] & 0x80))
			return -1;      /* client frames must be masked */
		if (hl + 4 + len > IN_CAP)
			return -1;
		if (avail < hl + 4 + len)
			break;
		mask = p + hl;
		for (i = 0; i < len; i++)
			p[hl + 4 + i] ^= mask[i & 3];
		if (on_frame(c, p[0] & 0x0f, p + hl + 4, len) < 0)
			return -1;
		off += hl + 4 + len;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	return 0;
}

/* Read what arrived on a connection. Returns -1 if it is finished. */
static int on_readable(struct conn *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, c->in + c->inlen, IN_CAP - c->inlen, 0);

		if (r == 0)
			return -1;
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->inlen += (size_t)r;
		if (!c->open) {
			int h = handshake(c);

			if (h < 0)
				return -1;
			if (h == 0)
				continue;
		}
		if (parse_frames(c) < 0)
			return -1;
		if (c->inlen == IN_CAP)
			return -1;
	}
}

/* Accept every pending connection. */
static void on_accept(int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev;
		struct conn *c;
		int one = 1;

		if (fd < 0)
			return;
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
		}
	}
}

/* Rate mode: send the messages due by now, round-robin. */
static void on_tick(double rate, uint64_t start, uint64_t *due_sent)
{
	uint64_t now = now_ns();
	uint64_t due = (uint64_t)((double)(now - start) * rate / 1e9);
	unsigned char frame[FRAME_BYTES];

	while (*due_sent < due) {
		struct conn *c = active_head;

		if (!c) {
			*due_sent = due;        /* nobody listening: do not build a backlog */
			return;
		}
		active_head = c->next_active;
		put_frame(frame, c, now);
		(*due_sent)++;
		if (out_append(c, frame, sizeof(frame)) < 0 || flush_out(c, 0) < 0)
			conn_close(c);
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct epoll_event ev, evs[256];
	struct rusage ru;
	socklen_t sl = sizeof(sa);
	double rate = 0;
	uint64_t start, due_sent = 0;
	int lfd, tfd = -1, port = 0, opt, one = 1;

	while ((opt = getopt(argc, argv, "p:r:e")) != -1) {
		if (opt == 'e')
			eio = 1;
		else if (opt == 'p')
			port = atoi(optarg);
		else if (opt == 'r')
			rate = atof(optarg);
		else {
			fprintf(stderr, "usage: upstream [-p PORT] [-r RATE] [-e]\n");
			return 2;
		}
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(EPOLL_CLOEXEC);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, 4096) < 0 || getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
		perror("upstream: listen");
		return 1;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	if (rate > 0) {
		struct itimerspec its = { { 0, 1000000 }, { 0, 1000000 } };
		tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		timerfd_settime(tfd, 0, &its, NULL);
		ev.data.ptr = &tick_tag;
		epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	}
	printf("listening %d\n", ntohs(sa.sin_port));
	fflush(stdout);
	start = now_ns();
	while (!stop_flag) {
		int n = epoll_wait(ep, evs, 256, 200), i;

		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (!c) {
				on_accept(lfd);
				continue;
			}
			if ((void *)c == (void *)&tick_tag) {
				uint64_t ticks;

				if (read(tfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
					perror("upstream: timerfd");
				on_tick(rate, start, &due_sent);
				continue;
			}
			if (c->dead)
				continue;
			if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && on_readable(c) < 0) {
				conn_close(c);
				continue;
			}
			if (flush_out(c, rate <= 0) < 0)
				conn_close(c);
		}
		reap_dead();
	}
	getrusage(RUSAGE_SELF, &ru);
	fprintf(stderr, "upstream sent=%" PRIu64 " cpu=%.3f\n", total_sent,
		(double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		(double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	return 0;
}
