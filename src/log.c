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
static int pb_log_journal;      /* stderr is the systemd journal */

static void pb_log_journal_line(enum pb_log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

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

/* Write one line to fd with a single write(): the RFC 3339 UTC time with
 * milliseconds ("2024-05-01T12:00:00.123Z"), the level name unless it is
 * NULL, the message and a newline, cut to 1024 bytes. */
static void pb_log_line(int fd, const char *level, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
static void pb_log_line(int fd, const char *level, const char *fmt, va_list ap)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int k;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %s%s", ts.tv_nsec / 1000000,
			      level ? level : "", level ? " " : "");
	k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	n += k > 0 ? (size_t)k : 0;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(fd, line, n);
}

void pb_log_access(const char *fmt, ...)
{
	va_list ap;

	if (pb_log_access_fd < 0)
		return;
	va_start(ap, fmt);
	pb_log_line(pb_log_access_fd, NULL, fmt, ap);
	va_end(ap);
}

void pb_log_access_raw(const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	size_t n;
	int k;

	if (pb_log_access_fd < 0)
		return;
	va_start(ap, fmt);
	k = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	n = k > 0 ? (size_t)k : 0;
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
	va_list ap;

	if (!pb_log_enabled(level))
		return;
	va_start(ap, fmt);
	if (pb_log_syslog) {
		static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
		char line[1024];

		vsnprintf(line, sizeof(line), fmt, ap);
		syslog(prio[level], "%s", line);
	} else if (pb_log_journal) {
		pb_log_journal_line(level, fmt, ap);
	} else {
		pb_log_line(STDERR_FILENO, pb_log_names[level], fmt, ap);
	}
	va_end(ap);
}

void pb_log_use_journal(int on)
{
	pb_log_journal = on;
}

/* Write one line to stderr for the journal: the sd-daemon(3) priority
 * prefix ("<3>" error ... "<7>" debug) so that levels survive, the level
 * name and the message; no time (the journal stamps every line). */
static void pb_log_journal_line(enum pb_log_level level, const char *fmt, va_list ap)
{
	static const int prio[] = { 3, 4, 6, 7 };       /* SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG */
	char line[1024];
	size_t n;
	int k;

	n = (size_t)snprintf(line, sizeof(line), "<%d>%s ", prio[level], pb_log_names[level]);
	k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	n += k > 0 ? (size_t)k : 0;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}
