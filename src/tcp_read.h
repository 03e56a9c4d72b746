/*
 * tcp_read.h: how many bytes a process has read off a TCP socket, from
 * the kernel's own counts. The front end uses it to tell whether
 * libmicrohttpd holds bytes it has read but not yet parsed.
 */
#ifndef PB_TCP_READ_H
#define PB_TCP_READ_H

#include <stdint.h>

/* The bytes read off the connected TCP socket fd so far (the bytes it has
 * received less those still queued for reading), or UINT64_MAX if the
 * kernel does not tell. */
uint64_t pb_tcp_bytes_read(int fd);

#endif
