/*
 * log.c: levelled logging to stderr or syslog, and the optional access log
 * (see log.h). Each event is formatted into one buffer and written with a
 * single write() so lines never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

static enum pb_log_level pb_log_level = PB_LOG_INFO;
static int pb_log_syslog;
static int pb_log_access_fd = -1;
static const char *const pb_log_names[] = { "error", "warn", "info", "debug" };

void pb_log_set_level(enum pb_log_level level)
{
	pb_log_level = level;
}

int pb_log_parse_level(const char *s, enum pb_log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, pb_log_names[i]) == 0) {
			*out = (enum pb_log_level)i;
			return 0;
		}
	}
	return PB_EBADREQ;
}

void pb_log_use_syslog(void)
{
	openlog("pollbridge", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	pb_log_syslog = 1;
}

int pb_log_open_access(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

	if (fd < 0)
		return -1;
	if (pb_log_access_fd >= 0)
		close(pb_log_access_fd);
	pb_log_access_fd = fd;
	return 0;
}

int pb_log_access_enabled(void)
{
	return pb_log_access_fd >= 0;
}

/* "<UTC time with ms> " into line; returns its length. */
static size_t pb_log_stamp(char *line, size_t size)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, size, "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, size - n, ".%03ldZ ", ts.tv_nsec / 1000000);
	return n;
}

void pb_log_access(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	size_t n;
	int k;

	if (pb_log_access_fd < 0)
		return;
	n = pb_log_stamp(line, sizeof(line));
	va_start(ap, fmt);
	k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	n += k > 0 ? (size_t)k : 0;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(pb_log_access_fd, line, n);
}

int pb_log_enabled(enum pb_log_level level)
{
	return level <= pb_log_level;
}

void pb_log(enum pb_log_level level, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	size_t n;
	int k;

	if (!pb_log_enabled(level))
		return;
	if (pb_log_syslog) {
		static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

		va_start(ap, fmt);
		vsnprintf(line, sizeof(line), fmt, ap);
		va_end(ap);
		syslog(prio[level], "%s", line);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	k = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s ",
		     ts.tv_nsec / 1000000, pb_log_names[level]);
	n += (size_t)k;
	va_start(ap, fmt);
	k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (k < 0)
		k = 0;
	n += (size_t)k;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}
