/*
 * msg.h: one WebSocket message, allocated once and shared by reference.
 *
 * A message is immutable once created (only the headroom in front of the
 * data, which belongs to whoever writes it to a socket, may be scribbled on).
 * The store, the poll encoder and the upstream writer each hold a reference;
 * the last pb_msg_unref() frees it. Single-threaded: references are plain
 * counters, every user lives on the same event loop.
 */
#ifndef PB_MSG_H
#define PB_MSG_H

#include <stddef.h>
#include <stdint.h>

/* Bytes reserved in front of every message's data, so the upstream link can
 * write a WebSocket frame header in place (it checks LWS_PRE fits). */
#define PB_MSG_HEADROOM 16

enum pb_msg_type {
	PB_MSG_TEXT = 0,
	PB_MSG_BINARY = 1,
	PB_MSG_REOPEN = 2,      /* the upstream was dialled again; no data */
};

struct pb_msg {
	uint32_t refs;
	uint8_t type;           /* enum pb_msg_type */
	uint64_t seq;           /* assigned by the store; 0 until then */
	size_t len;
	unsigned char *data;    /* points into this allocation, after headroom */
};

/* A new message of len bytes copied from data (data may be NULL to leave
 * the bytes for the caller to fill in). One reference, owned by the caller.
 * NULL on allocation failure. */
struct pb_msg *pb_msg_new(enum pb_msg_type type, const void *data, size_t len);

/* Take another reference. Returns m. */
struct pb_msg *pb_msg_ref(struct pb_msg *m);

/* Drop a reference; frees m when it was the last. NULL is ignored. */
void pb_msg_unref(struct pb_msg *m);

#endif
