/*
 * log.h: levelled, one-line-per-event logging to stderr.
 *
 * Only the top of the program (main, the front end's request log, the
 * session state setter) logs; library-like modules return errors instead.
 */
#ifndef PB_LOG_H
#define PB_LOG_H

enum pb_log_level {
	PB_LOG_ERROR = 0,
	PB_LOG_WARN = 1,
	PB_LOG_INFO = 2,
	PB_LOG_DEBUG = 3,
};

/* Set the most verbose level that is written. Default: info. */
void pb_log_set_level(enum pb_log_level level);

/* Parse "error", "warn", "info" or "debug". 0 or PB_EBADREQ. */
int pb_log_parse_level(const char *s, enum pb_log_level *out);

/* Whether a message at level would be written. */
int pb_log_enabled(enum pb_log_level level);

/* Send log lines to syslog (LOG_DAEMON, tagged pollbridge) instead of
 * stderr. The ready line still goes to stderr. */
void pb_log_use_syslog(void);

/* on: stderr is the systemd journal (notify.h tells): lines carry the
 * journal's priority prefix ("<4>warn ...") and no time. */
void pb_log_use_journal(int on);

/* Open path (append) as the access log: one line per answered request.
 * 0, or -1 with errno set. */
int pb_log_open_access(const char *path);

/* 1 if an access log is open. */
int pb_log_access_enabled(void);

/* Write one access log line: "<time> <message>\n". */
void pb_log_access(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Write one access log line as formatted, without the time in front (a
 * format with its own time, such as the combined log format): "<message>\n",
 * cut to 4096 bytes, in one write(). */
void pb_log_access_raw(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Write one line: "<time> <level> <message>\n". */
void pb_log(enum pb_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define pb_log_error(...) pb_log(PB_LOG_ERROR, __VA_ARGS__)
#define pb_log_warn(...) pb_log(PB_LOG_WARN, __VA_ARGS__)
#define pb_log_info(...) pb_log(PB_LOG_INFO, __VA_ARGS__)
#define pb_log_debug(...) \
	do { if (pb_log_enabled(PB_LOG_DEBUG)) pb_log(PB_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
