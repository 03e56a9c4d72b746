/*
 * tcp_read.c: bytes read off a TCP socket (see tcp_read.h). Apart from
 * the rest of the front end because the kernel's struct tcp_info, which
 * has the received count (Linux 4.1 and later), cannot share a file with
 * glibc's older one that <microhttpd.h> brings in.
 */
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/tcp.h>

#include "tcp_read.h"

uint64_t pb_tcp_bytes_read(int fd)
{
	struct tcp_info ti = { 0 };
	socklen_t len = sizeof(ti);
	int queued = 0;

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) ||
	    len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received) ||
	    ioctl(fd, FIONREAD, &queued) || queued < 0 || ti.tcpi_bytes_received < (uint64_t)queued)
		return UINT64_MAX;
	return ti.tcpi_bytes_received - (uint64_t)queued;
}
