/*
 * notify.c: systemd readiness notifications and journal detection (see
 * notify.h). Owns nothing but a short-lived socket per message: the daemon
 * notifies a handful of times a minute, so no descriptor is kept open.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "notify.h"

#ifndef HAVE_SYSTEMD
/* Send state as one datagram to the AF_UNIX socket path names ('@' first:
 * an abstract name). 1, or -1. */
static int notify_datagram(const char *path, const char *state)
{
	struct sockaddr_un sa;
	size_t plen = strlen(path);
	socklen_t salen;
	ssize_t n;
	int fd;

	if (plen < 2 || plen >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@'))
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, plen);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	/* An abstract name is exactly plen bytes long, no terminator. */
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + (path[0] == '/'));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	do
		n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	while (n < 0 && errno == EINTR);
	close(fd);
	return n == (ssize_t)strlen(state) ? 1 : -1;
}
#endif

int pb_notify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");

	if (!path || !*path)
		return 0;
#ifdef HAVE_SYSTEMD
	{
		int r = sd_notify(0, state);

		return r > 0 ? 1 : r == 0 ? 0 : -1;
	}
#else
	return notify_datagram(path, state);
#endif
}

int pb_notify_sendf(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return pb_notify_send(msg);
}

int pb_notify_ready(const char *status)
{
	return pb_notify_sendf("READY=1\nSTATUS=%s", status);
}

int pb_notify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return pb_notify_sendf("RELOADING=1\nMONOTONIC_USEC=%llu",
			       (unsigned long long)ts.tv_sec * 1000000ULL +
				       (unsigned long long)ts.tv_nsec / 1000);
}

int pb_notify_stopping(void)
{
	return pb_notify_send("STOPPING=1");
}

int pb_notify_stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st))
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}
