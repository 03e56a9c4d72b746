/*
 * msg.c: reference-counted immutable messages and FIFOs of them (see
 * msg.h). A message's header, headroom and data are one allocation.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "msg.h"

/* Bytes of every live message (one loop thread: a plain counter). */
static size_t pb_live_bytes;

size_t pb_msg_live_bytes(void)
{
	return pb_live_bytes;
}

struct pb_msg *pb_msg_new(enum pb_msg_type type, const void *data, size_t len)
{
	struct pb_msg *m;
	size_t hdr = (sizeof(*m) + 15) & ~(size_t)15;

	if (len > SIZE_MAX - hdr - PB_MSG_HEADROOM - 1)
		return NULL;
	m = malloc(hdr + PB_MSG_HEADROOM + len + 1);
	if (!m)
		return NULL;
	m->refs = 1;
	m->type = (uint8_t)type;
	m->seq = 0;
	m->len = len;
	m->data = (unsigned char *)m + hdr + PB_MSG_HEADROOM;
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
		pb_live_bytes -= m->len;
		free(m);
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
	for (; n && q->count; n--)
		pb_msg_unref(pb_msgq_pop(q));
}

void pb_msgq_free(struct pb_msgq *q)
{
	pb_msgq_drop(q, q->count);
	free(q->slots);
	memset(q, 0, sizeof(*q));
}
