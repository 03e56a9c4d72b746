/*
 * notify.h: the systemd service notification protocol (sd_notify(3)):
 * READY=1, RELOADING=1, STOPPING=1 and STATUS= datagrams to the socket
 * named by $NOTIFY_SOCKET, and whether stderr is the journal.
 *
 * With libsystemd (configure found it: HAVE_SYSTEMD) the messages go
 * through sd_notify(); without it this module speaks the protocol itself
 * (one AF_UNIX datagram per message; a name starting with '@' is an
 * abstract socket). Without $NOTIFY_SOCKET every call does nothing.
 */
#ifndef PB_NOTIFY_H
#define PB_NOTIFY_H

#include <stddef.h>

/* Send one notification (newline-separated KEY=VALUE assignments) to the
 * service manager. 1 if it was sent, 0 if there is no $NOTIFY_SOCKET, or
 * -1 if sending failed (the daemon carries on; there is no error code
 * for it because nothing answers a client with it). */
int pb_notify_send(const char *state);

/* printf-style pb_notify_send(). */
int pb_notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* READY=1 with a STATUS= line. */
int pb_notify_ready(const char *status);

/* RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC now), as
 * Type=notify-reload expects. */
int pb_notify_reloading(void);

/* STOPPING=1. */
int pb_notify_stopping(void);

/* 1 if stderr is connected to the systemd journal: $JOURNAL_STREAM holds
 * "DEV:INO" and matches stderr's device and inode. */
int pb_notify_stderr_is_journal(void);

#endif
