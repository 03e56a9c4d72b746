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
	PB_MSG_CLOSE = 3,       /* outbound only: close the upstream with 1000
				   and end the session once every message queued
				   before it is written; no data */
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

/* Free the blocks of freed small messages kept for reuse (at exit, so
 * that nothing is left allocated). */
void pb_msg_cache_free(void);

/* Bytes of message data held by this process: every message created and
 * not yet freed, wherever it is (a queue, a request, a socket's writer).
 * What --total-queue-max-bytes bounds. */
size_t pb_msg_live_bytes(void);

/* A FIFO of message references that grows by doubling. Zero-initialised
 * it is empty. */
struct pb_msgq {
	struct pb_msg **slots;
	size_t cap;             /* a power of two, or 0 */
	size_t head;
	size_t count;
	size_t bytes;           /* sum of the queued messages' len */
};

/* Append m; the queue takes over the caller's reference. 0 or PB_ENOMEM
 * (then the reference is still the caller's). */
int pb_msgq_push(struct pb_msgq *q, struct pb_msg *m);

/* The i-th oldest message (borrowed), i < count. */
struct pb_msg *pb_msgq_at(const struct pb_msgq *q, size_t i);

/* Remove the oldest message and return its reference (NULL if empty). */
struct pb_msg *pb_msgq_pop(struct pb_msgq *q);

/* Remove the newest message and return its reference (NULL if empty): the
 * undo of a push. */
struct pb_msg *pb_msgq_pop_newest(struct pb_msgq *q);

/* Drop the n oldest messages (their references). */
void pb_msgq_drop(struct pb_msgq *q, size_t n);

/* Drop every message and the storage; the queue is empty afterwards. */
void pb_msgq_free(struct pb_msgq *q);

#endif
