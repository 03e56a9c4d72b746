/*
 * msg.c: reference-counted immutable messages (see msg.h). The header, the
 * headroom and the data are one allocation.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

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
	if (--m->refs == 0)
		free(m);
}
