/*
 * heap_trim.h: gives the memory that glibc's heap holds free back to the
 * kernel after a burst, so that the process's RSS follows what it holds.
 */
#ifndef PB_HEAP_TRIM_H
#define PB_HEAP_TRIM_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Free heap bytes that must have come since the lowest level seen after
 * the last trim before the next trim runs. */
#define PB_HEAP_TRIM_GROWTH ((size_t)1 << 20)
/* A change of the resident set that makes the next checks read the heap. */
#define PB_HEAP_TRIM_RSS_STEP ((size_t)256 << 10)
/* The heap is read at least this often (ms) even if the RSS holds still. */
#define PB_HEAP_TRIM_READ_MS 30000

struct pb_heap_trim {
	uv_timer_t timer;
	size_t low_free;        /* lowest free-heap figure seen since the last trim */
	size_t rss;             /* resident bytes at the last check */
	int rss_moved;          /* the last check saw the RSS move by a step */
	uint64_t read_at;       /* uv_now() when the heap was last read */
	unsigned long reads;    /* heap reads (mallinfo2), for the tests */
	unsigned long trims;    /* trims run */
};

/* Start checking once a second on loop (the timer does not keep the loop
 * alive). */
void pb_heap_trim_start(struct pb_heap_trim *t, uv_loop_t *loop);

/* Bytes free in the heap (0 without glibc's mallinfo2). Walks the heap's
 * free lists: from microseconds to milliseconds on a fragmented heap. */
size_t pb_heap_free_bytes(void);

/* Check now, as the timer does; returns 1 if it trimmed. */
int pb_heap_trim_check(struct pb_heap_trim *t);

/* Close the timer (uv_close: t must live until the loop ran once more). */
void pb_heap_trim_stop(struct pb_heap_trim *t);

#endif
