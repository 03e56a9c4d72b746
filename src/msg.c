/*
 * msg.c: reference-counted immutable messages and FIFOs of them (see
 * msg.h), and the cache of freed small message blocks. A message's
 * header, headroom and data are one allocation.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "msg.h"

/* Bytes of every live message (one loop thread: a plain counter). */
static size_t pb_live_bytes;

/* Freed blocks of small messages are kept for the next messages instead
 * of going back to malloc: delivering 64-byte messages, malloc and free of
 * one block per message (and glibc consolidating those blocks whenever a
 * large one is freed) took 13% of the bridge's CPU (perf). Blocks come in
 * classes of PB_MSG_CLASS bytes up to PB_MSG_CLASSES of them (a message
 * block is rounded up to its class: at most PB_MSG_CLASS - 1 bytes more
 * than malloc would use), and at most PB_MSG_CACHE_BYTES of free blocks
 * are kept in all. One loop pass can acknowledge thousands of messages and
 * read as many: with room for 2,048 blocks, 65% of the blocks still went
 * back to malloc under load; with 4 MiB, under 2%. Sanitizer builds keep
 * none, so that AddressSanitizer still sees a message used after its last
 * reference. */
#define PB_MSG_CLASS 64
#define PB_MSG_CLASSES 4
#define PB_MSG_CACHE_BYTES (4u << 20)

/* How many messages ahead a walk over cold messages asks for them. */
#define PB_MSG_PREFETCH 8

#if defined(__SANITIZE_ADDRESS__)
#define PB_MSG_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PB_MSG_CACHE 0
#endif
#endif
#ifndef PB_MSG_CACHE
#define PB_MSG_CACHE 1
#endif

/* The free blocks of each class, a stack of pointers: kept apart from the
 * blocks, so that taking one does not wait for a cold block to load (a
 * list threaded through the blocks did, once per message). Each stack has
 * room for the whole byte budget in its class (1 MiB of pointers in all,
 * resident only as far as used). */
#define PB_MSG_STACK(cls) (PB_MSG_CACHE_BYTES / ((cls) * PB_MSG_CLASS))
static void *pb_msg_stack1[PB_MSG_STACK(1)], *pb_msg_stack2[PB_MSG_STACK(2)],
	    *pb_msg_stack3[PB_MSG_STACK(3)], *pb_msg_stack4[PB_MSG_STACK(4)];
static struct {
	void **blocks;
	size_t n;
} pb_msg_cache[PB_MSG_CLASSES] = {
	{ pb_msg_stack1, 0 }, { pb_msg_stack2, 0 }, { pb_msg_stack3, 0 }, { pb_msg_stack4, 0 },
};

/* Bytes of the free blocks kept, all classes. */
static size_t pb_msg_cached_bytes;

/* Bytes before a message's data: the header, rounded, and the headroom. */
#define PB_MSG_FRONT (((sizeof(struct pb_msg) + 15) & ~(size_t)15) + PB_MSG_HEADROOM)

/* The cache class (1-based) of a message of len bytes, 0 for none. */
static size_t msg_class(size_t len)
{
	size_t total = PB_MSG_FRONT + len + 1;

	return PB_MSG_CACHE && total <= PB_MSG_CLASS * PB_MSG_CLASSES ?
	       (total + PB_MSG_CLASS - 1) / PB_MSG_CLASS : 0;
}

size_t pb_msg_live_bytes(void)
{
	return pb_live_bytes;
}

void pb_msg_cache_free(void)
{
	for (size_t i = 0; i < PB_MSG_CLASSES; i++) {
		while (pb_msg_cache[i].n)
			free(pb_msg_cache[i].blocks[--pb_msg_cache[i].n]);
	}
	pb_msg_cached_bytes = 0;
}

struct pb_msg *pb_msg_new(enum pb_msg_type type, const void *data, size_t len)
{
	struct pb_msg *m;
	size_t cls;

	if (len > SIZE_MAX - PB_MSG_FRONT - 1)
		return NULL;
	cls = msg_class(len);
	if (cls && pb_msg_cache[cls - 1].n) {
		size_t k = --pb_msg_cache[cls - 1].n;

		m = pb_msg_cache[cls - 1].blocks[k];
		pb_msg_cached_bytes -= cls * PB_MSG_CLASS;
		/* Messages come in bursts (a read of the upstream): ask for the
		 * block the next one will be written to. */
		if (k) {
			__builtin_prefetch(pb_msg_cache[cls - 1].blocks[k - 1], 1);
			__builtin_prefetch((char *)pb_msg_cache[cls - 1].blocks[k - 1] + 64, 1);
		}
	} else {
		m = malloc(cls ? cls * PB_MSG_CLASS : PB_MSG_FRONT + len + 1);
		if (!m)
			return NULL;
	}
	m->refs = 1;
	m->type = (uint8_t)type;
	m->seq = 0;
	m->len = len;
	m->data = (unsigned char *)m + PB_MSG_FRONT;
	if (data && len)
		memcpy(m->data, data, len);
	m->data[len] = '\0';
	pb_live_bytes += len;
	return m;
}

struct pb_msg *pb_msg_ref(struct pb_msg *m)
{
	assert(m->refs > 0);
	m->refs++;
	return m;
}

void pb_msg_unref(struct pb_msg *m)
{
	if (!m)
		return;
	assert(m->refs > 0);
	if (--m->refs == 0) {
		size_t cls = msg_class(m->len);

		pb_live_bytes -= m->len;
		if (cls && pb_msg_cached_bytes + cls * PB_MSG_CLASS <= PB_MSG_CACHE_BYTES) {
			pb_msg_cache[cls - 1].blocks[pb_msg_cache[cls - 1].n++] = m;
			pb_msg_cached_bytes += cls * PB_MSG_CLASS;
		} else {
			free(m);
		}
	}
}

int pb_msgq_push(struct pb_msgq *q, struct pb_msg *m)
{
	if (q->count == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 8;
		struct pb_msg **slots = malloc(ncap * sizeof(*slots));

		if (!slots)
			return PB_ENOMEM;
		for (size_t i = 0; i < q->count; i++)
			slots[i] = pb_msgq_at(q, i);
		free(q->slots);
		q->slots = slots;
		q->cap = ncap;
		q->head = 0;
	}
	q->slots[(q->head + q->count) & (q->cap - 1)] = m;
	q->count++;
	q->bytes += m->len;
	return 0;
}

struct pb_msg *pb_msgq_at(const struct pb_msgq *q, size_t i)
{
	assert(i < q->count);
	return q->slots[(q->head + i) & (q->cap - 1)];
}

struct pb_msg *pb_msgq_pop(struct pb_msgq *q)
{
	struct pb_msg *m;

	if (!q->count)
		return NULL;
	m = q->slots[q->head];
	q->head = (q->head + 1) & (q->cap - 1);
	q->count--;
	q->bytes -= m->len;
	return m;
}

struct pb_msg *pb_msgq_pop_newest(struct pb_msgq *q)
{
	struct pb_msg *m;

	if (!q->count)
		return NULL;
	q->count--;
	m = q->slots[(q->head + q->count) & (q->cap - 1)];
	q->bytes -= m->len;
	return m;
}

void pb_msgq_drop(struct pb_msgq *q, size_t n)
{
	/* The messages acknowledged are long out of the CPU's caches: ask
	 * for the headers a few messages ahead while this one is freed. */
	for (; n && q->count; n--) {
		if (q->count > PB_MSG_PREFETCH && n > PB_MSG_PREFETCH)
			__builtin_prefetch(q->slots[(q->head + PB_MSG_PREFETCH) & (q->cap - 1)], 1);
		pb_msg_unref(pb_msgq_pop(q));
	}
}

void pb_msgq_free(struct pb_msgq *q)
{
	pb_msgq_drop(q, q->count);
	free(q->slots);
	memset(q, 0, sizeof(*q));
}
