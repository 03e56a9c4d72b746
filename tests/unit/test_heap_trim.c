/*
 * test_heap_trim.c: unit tests for src/heap_trim.c: no trim while the free
 * heap has not grown; no heap read while the RSS holds still; a trim once
 * a burst's memory was freed (4 MiB in 2 KiB blocks, small live blocks
 * among them so that glibc cannot shrink the heap from its top by itself),
 * which gives its pages back (RSS falls by at least half of it); no second
 * trim for the same free memory; a trim again after a reuse of it that a
 * check saw; the timer on a real loop closes cleanly. Under a sanitizer's allocator glibc's heap figures
 * do not move: skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "heap_trim.h"
#include "tap.h"

#define NBLOCKS 2048
#define BLOCK 2048

#define KEEP_EVERY 32     /* a live small block after every 32 blocks */

static char *blocks[NBLOCKS];
static char *keepers[NBLOCKS / KEEP_EVERY];

/* Resident set of this process in KiB (/proc/self/statm), or -1. */
static long rss_kib(void)
{
	long pages = -1, resident = -1;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = -1;
	fclose(f);
	return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Allocate and touch every block (the burst); the first time, a small
 * block that stays (as a session outlives its connection's buffer) after
 * every KEEP_EVERY of them, so that the heap cannot shrink from its top. */
static void burst_alloc(void)
{
	for (int i = 0; i < NBLOCKS; i++) {
		blocks[i] = malloc(BLOCK);
		if (!blocks[i])
			tap_bail("out of memory");
		memset(blocks[i], 0x5a, BLOCK);
		if (i % KEEP_EVERY == KEEP_EVERY - 1 && !keepers[i / KEEP_EVERY] &&
		    !(keepers[i / KEEP_EVERY] = malloc(64)))
			tap_bail("out of memory");
	}
}

static void burst_free(void)
{
	for (int i = 0; i < NBLOCKS; i++) {
		free(blocks[i]);
		blocks[i] = NULL;
	}
}

static void check_trim(void)
{
	struct pb_heap_trim t;
	uv_loop_t loop;
	unsigned long reads;
	long before, after;

	uv_loop_init(&loop);
	pb_heap_trim_start(&t, &loop);
	tap_is_int(pb_heap_trim_check(&t), 0, "nothing freed: no trim");
	tap_is_int(t.reads, 0, "the RSS held still: the heap was not read");

	burst_alloc();
	tap_is_int(pb_heap_trim_check(&t), 0, "memory in use: no trim");
	tap_is_int(t.reads, 1, "the RSS grew: the heap was read");
	burst_free();
	before = rss_kib();
	tap_is_int(pb_heap_trim_check(&t), 1, "4 MiB freed (the RSS still, a check after it moved): trimmed");
	after = rss_kib();
	tap_ok(before > 0 && after > 0 && before - after >= NBLOCKS * BLOCK / 1024 / 2,
	       "the trim gave the pages back (RSS %ld -> %ld KiB)", before, after);
	tap_is_int(t.trims, 1, "one trim counted");
	tap_is_int(pb_heap_trim_check(&t), 0, "the same free memory: no second trim");
	tap_is_int(pb_heap_trim_check(&t), 0, "nor on the next check");
	reads = t.reads;
	tap_is_int(pb_heap_trim_check(&t), 0, "at rest: no trim");
	tap_is_int(t.reads, reads, "at rest (the RSS still since two checks): the heap was not read");

	burst_alloc();          /* reuses the free blocks: pages come back */
	tap_is_int(pb_heap_trim_check(&t), 0, "reused: no trim");
	burst_free();
	tap_is_int(pb_heap_trim_check(&t), 1, "freed again after a check saw the reuse: trimmed");
	tap_is_int(t.trims, 2, "two trims counted");
	for (int i = 0; i < NBLOCKS / KEEP_EVERY; i++)
		free(keepers[i]);

	pb_heap_trim_stop(&t);
	tap_is_int(uv_run(&loop, UV_RUN_DEFAULT), 0, "the timer closes and the loop ends");
	tap_is_int(uv_loop_close(&loop), 0, "no handle left on the loop");
}

int main(void)
{
	/* A sanitizer's allocator does not use glibc's heap, whose free
	 * figure heap_trim.c reads (nor does a libc without mallinfo2):
	 * check that the figure moves when 64 KiB below a live block is freed. */
	size_t free0 = pb_heap_free_bytes();
	/* volatile: else clang drops the malloc/free pair altogether */
	char *volatile p = malloc(1 << 16), *volatile guard = malloc(64);

	if (!p || !guard)
		tap_bail("out of memory");
	memset(p, 1, 1 << 16);
	free(p);
	if (pb_heap_free_bytes() < free0 + (1 << 15)) {
		free(guard);
		tap_ok(1, "# SKIP the heap's free figure does not move (a sanitizer's allocator?)");
		return tap_done();
	}
	free(guard);
	check_trim();
	return tap_done();
}
