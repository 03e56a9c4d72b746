/*
 * baremhd.c: the peer benchmark's bare libmicrohttpd server (bench/peers.sh).
 *
 * What this file owns: the ceiling for pollbridge's empty short polls. It
 * runs libmicrohttpd in the same mode as pollbridge's front end (MHD_USE_EPOLL
 * with an external loop, no MHD threads: MHD_run() called whenever MHD's
 * epoll fd is ready or its timeout expires) and answers every request with
 * the same bytes pollbridge sends for an empty poll: 200,
 * application/json; charset=utf-8, {"messages":[],"state":"open"}. The
 * response object is built once and shared, so there is no per-request setup
 * beyond what libmicrohttpd itself does.
 *
 * Usage: baremhd [-p PORT]   prints "listening PORT" once ready; SIGTERM ends.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static const char body[] = "{\"messages\":[],\"state\":\"open\"}";
static struct MHD_Response *resp;
/* -b: the answers of a server with nothing to do but answer (see below). */
static struct MHD_Response *created, *sent, *batch;
static volatile sig_atomic_t stop_flag;

/* Signal handler: ask the loop to stop. */
static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* Answer every request with the shared empty-batch response. */
static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	(void)cls;
	(void)url;
	(void)method;
	(void)version;
	(void)upload;
	/* Answer on the second call, once the whole request has been read:
	 * libmicrohttpd closes the connection after an answer queued earlier. */
	if (!*con_cls) {
		*con_cls = (void *)body;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;       /* ignore any body */
		return MHD_YES;
	}
	if (!batch)
		return MHD_queue_response(conn, MHD_HTTP_OK, resp);
	if (strcmp(method, "POST") == 0 && strcmp(url, "/v1/sessions") == 0)
		return MHD_queue_response(conn, MHD_HTTP_CREATED, created);
	if (strcmp(method, "POST") == 0)
		return MHD_queue_response(conn, MHD_HTTP_OK, sent);
	return MHD_queue_response(conn, MHD_HTTP_OK, batch);
}

/* A response with body text (copied) and pollbridge's content type. */
static struct MHD_Response *json_response(const char *text)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
								 MHD_RESPMEM_MUST_COPY);

	if (r && MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8") !=
	    MHD_YES) {
		MHD_destroy_response(r);
		r = NULL;
	}
	return r;
}

/* -b N: answer as a /v1 server whose every poll finds N messages at once
 * (loadgen -k pb -m thru runs against it unchanged): a session create
 * gets 201 with session "bare", a send 200, anything else the same batch
 * of N 64-byte text messages, shaped as pollbridge's (seq, type, data),
 * built once. What loadgen measures then is the round trip of a poll
 * between the two cores, with no server work behind it: the ceiling of
 * any server's msgs/s at 1 client on this machine. 0 on success. */
static int batch_setup(int n)
{
	size_t cap = 64 + (size_t)n * 128, len;
	char *b = malloc(cap);

	if (!b)
		return -1;
	len = (size_t)snprintf(b, cap, "{\"messages\":[");
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(b + len, cap - len,
					"%s{\"seq\":%d,\"type\":\"text\",\"data\":\"%064d\"}",
					i ? "," : "", 1000001 + i, 0);
	snprintf(b + len, cap - len, "],\"state\":\"open\"}");
	created = json_response("{\"session\":\"bare\",\"protocol\":null}");
	sent = json_response("{\"accepted\":1}");
	batch = json_response(b);
	free(b);
	return created && sent && batch ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	struct epoll_event ev;
	int port = 0, opt, efd;

	while ((opt = getopt(argc, argv, "p:b:")) != -1) {
		if (opt == 'p') {
			port = atoi(optarg);
		} else if (opt == 'b' && atoi(optarg) > 0 && atoi(optarg) <= 1000) {
			if (batch_setup(atoi(optarg))) {
				fprintf(stderr, "baremhd: out of memory\n");
				return 1;
			}
		} else {
			fprintf(stderr, "usage: baremhd [-p PORT] [-b MESSAGES]\n");
			return 2;
		}
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	resp = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
	if (!resp || MHD_add_response_header(resp, "Content-Type",
					     "application/json; charset=utf-8") != MHD_YES)
		return 1;
	d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
			     handler, NULL, MHD_OPTION_CONNECTION_LIMIT, 9000u,
			     MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "baremhd: cannot start\n");
		return 1;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	printf("listening %u\n", info ? (unsigned)info->port : 0u);
	fflush(stdout);
	/* Wait on MHD's epoll fd from an epoll set of our own, as pollbridge's
	 * libuv loop does: an epoll_wait() on MHD's own fd would take its
	 * (edge-triggered) events away from MHD_run(). */
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
	efd = epoll_create1(EPOLL_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.fd = info->epoll_fd;
	if (efd < 0 || epoll_ctl(efd, EPOLL_CTL_ADD, info->epoll_fd, &ev) < 0) {
		perror("baremhd: epoll");
		return 1;
	}
	while (!stop_flag) {
		MHD_UNSIGNED_LONG_LONG to;
		int ms = 1000, n;

		if (MHD_get_timeout(d, &to) == MHD_YES)
			ms = to < 1000 ? (int)to : 1000;
		n = epoll_wait(efd, &ev, 1, ms);
		if (n < 0 && errno != EINTR)
			break;
		MHD_run(d);
	}
	MHD_stop_daemon(d);
	MHD_destroy_response(resp);
	return 0;
}
