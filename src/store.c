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

void pb_store_wake_ended(struct pb_store *s, const char *id)
{
	if (s->events.ended)
		s->events.ended(s->events.arg, id);
}

void pb_store_wake_acked(struct pb_store *s, const char *id)
{
	if (s->events.acked)
		s->events.acked(s->events.arg, id);
}

void pb_store_wake_waiter(struct pb_store *s, const char *id, const char *instance,
			  uint64_t token)
{
	if (s->events.waiter)
		s->events.waiter(s->events.arg, id, instance, token);
}

void pb_store_wake_resync(struct pb_store *s)
{
	if (s->events.resync)
		s->events.resync(s->events.arg);
}

void pb_store_wake_health(struct pb_store *s, int up)
{
	if (s->events.health)
		s->events.health(s->events.arg, up);
}

int pb_store_shared(const struct pb_store *s)
{
	return s->shared != NULL;
}

void pb_store_destroy(struct pb_store *s)
{
	if (s)
		s->ops->destroy(s);
}
