/*
 * store.c: the few helpers shared by every store implementation (see
 * store.h); the operations themselves live in store_<name>.c.
 */
#include <stddef.h>

#include "store.h"

void pb_store_wake_inbound(struct pb_store *s, const char *id)
{
	if (s->events.inbound)
		s->events.inbound(s->events.arg, id);
}

void pb_store_wake_outbound(struct pb_store *s, const char *id)
{
	if (s->events.outbound)
		s->events.outbound(s->events.arg, id);
}

void pb_store_destroy(struct pb_store *s)
{
	if (s)
		s->ops->destroy(s);
}
