/*
 * tap.c: TAP output for the test programs (see tap.h). Output is flushed
 * after every line so a crash still leaves the checks made so far.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

static int tap_count;
static int tap_failed;

/* Print "ok N - " or "not ok N - " followed by the formatted name. */
static void tap_line(int cond, const char *fmt, va_list ap)
{
	tap_count++;
	if (!cond)
		tap_failed++;
	printf("%sok %d - ", cond ? "" : "not ", tap_count);
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
}

int tap_ok_at(int cond, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_line(cond, fmt, ap);
	va_end(ap);
	if (!cond)
		tap_diag("  failed at %s:%d", file, line);
	return cond;
}

int tap_is_int_at(long long got, long long want, const char *file, int line,
		  const char *fmt, ...)
{
	va_list ap;
	int cond = got == want;

	va_start(ap, fmt);
	tap_line(cond, fmt, ap);
	va_end(ap);
	if (!cond)
		tap_diag("  failed at %s:%d: got %lld, want %lld", file, line, got, want);
	return cond;
}

int tap_is_str_at(const char *got, const char *want, const char *file, int line,
		  const char *fmt, ...)
{
	va_list ap;
	int cond = got && want ? strcmp(got, want) == 0 : got == want;

	va_start(ap, fmt);
	tap_line(cond, fmt, ap);
	va_end(ap);
	if (!cond)
		tap_diag("  failed at %s:%d: got \"%s\", want \"%s\"", file, line,
			 got ? got : "(null)", want ? want : "(null)");
	return cond;
}

void tap_diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

void tap_bail(const char *fmt, ...)
{
	va_list ap;

	printf("Bail out! ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(1);
}

int tap_done(void)
{
	printf("1..%d\n", tap_count);
	fflush(stdout);
	return tap_failed ? 1 : 0;
}

int tap_failures(void)
{
	return tap_failed;
}
