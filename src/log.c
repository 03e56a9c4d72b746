/*
 * log.c: levelled logging to stderr (see log.h). Each event is formatted
 * into one buffer and written with a single write() so lines never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

static enum pb_log_level pb_log_level = PB_LOG_INFO;
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
