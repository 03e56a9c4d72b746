/*
 * tap.h: a tiny Test Anything Protocol emitter for the test programs.
 *
 * Each check prints "ok N - name" or "not ok N - name" (with the failing
 * expression's location as a "#" diagnostic); tap_done() prints the plan and
 * returns the exit status. automake's tap-driver.sh counts every check.
 */
#ifndef PB_TAP_H
#define PB_TAP_H

#include <stdint.h>

/* Record one check. Returns cond so callers can chain follow-up checks. */
int tap_ok_at(int cond, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
#define tap_ok(cond, ...) tap_ok_at(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* Equality checks that print both values when they differ. */
int tap_is_int_at(long long got, long long want, const char *file, int line,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define tap_is_int(got, want, ...) \
	tap_is_int_at((long long)(got), (long long)(want), __FILE__, __LINE__, __VA_ARGS__)
int tap_is_str_at(const char *got, const char *want, const char *file, int line,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define tap_is_str(got, want, ...) \
	tap_is_str_at((got), (want), __FILE__, __LINE__, __VA_ARGS__)

/* A "# ..." diagnostic line (figures, context). */
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Abort the whole program with "Bail out!" (harness failure, not a check). */
void tap_bail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Print the plan "1..N"; returns 0 if every check passed, else 1. */
int tap_done(void);

/* Number of failed checks so far. */
int tap_failures(void);

#endif
