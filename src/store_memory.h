/*
 * store_memory.h: the embedded, single-instance session store. Everything
 * lives in this process's memory; operations complete before they return.
 */
#ifndef PB_STORE_MEMORY_H
#define PB_STORE_MEMORY_H

#include <uv.h>

#include "store.h"

/* A new memory store on loop (it runs one timer to forget tombstones).
 * events and limits are copied. NULL on allocation failure. Destroy with
 * pb_store_destroy(); the memory is reclaimed once the loop has run the
 * timer's close callback. */
struct pb_store *pb_store_memory_new(uv_loop_t *loop, const struct pb_store_events *events,
				     const struct pb_store_limits *limits);

#endif
