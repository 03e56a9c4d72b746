/*
 * heap_trim.h: gives the memory that glibc's heap holds free back to the
 * kernel after a burst, so that the process's RSS follows what it holds.
 */
#ifndef PB_HEAP_TRIM_H
#define PB_HEAP_TRIM_H

#include <stddef.h>

#include <uv.h>

/* Free heap bytes that must have come since the lowest level seen after
 * the last trim before the next trim runs. */
#define PB_HEAP_TRIM_GROWTH (1u << 20)

struct pb_heap_trim {
	uv_timer_t timer;
	size_t low_free;        /* lowest free-heap figure seen since the last trim */
	unsigned long trims;    /* trims run, for the tests and the debug log */
};

/* Start checking once a second on loop (the timer does not keep the loop
 * alive). */
void pb_heap_trim_start(struct pb_heap_trim *t, uv_loop_t *loop);

/* Bytes free in the heap (0 without glibc's mallinfo2). */
size_t pb_heap_free_bytes(void);

/* Check now, as the timer does; returns 1 if it trimmed. */
int pb_heap_trim_check(struct pb_heap_trim *t);

/* Close the timer (uv_close: t must live until the loop ran once more). */
void pb_heap_trim_stop(struct pb_heap_trim *t);

#endif
