/*
 * heap_trim.c: gives free heap memory back to the kernel after a burst.
 *
 * Memory freed with free() stays in glibc's heap, resident, until it is
 * reused; glibc returns only the top of the heap by itself. A burst leaves
 * such memory behind: while 64 sessions are created at once, 64
 * connections each hold libmicrohttpd's pool (--max-header-bytes + 4 KiB),
 * freed when their polls wait outside libmicrohttpd (docs/ARCHITECTURE.md),
 * and the process would keep that megabyte resident for good.
 *
 * When the free heap (mallinfo2().fordblks; memory malloc mmap()ed is not
 * in it: free() unmaps that) has grown by PB_HEAP_TRIM_GROWTH since the
 * lowest figure seen after the last trim, malloc_trim(0) hands its free
 * pages back (madvise(MADV_DONTNEED): the chunks stay in the free lists,
 * so the figure does not drop, and a later malloc() of them faults in
 * fresh pages). Under a steady load freed memory is reused and the figure
 * does not grow, so no trim runs.
 *
 * Reading the figure walks every free chunk: 0.15 ms at 9,500 sessions,
 * over 1 ms after thousands of them ended, 24 ms for 100,000 scattered
 * free chunks; a trim walks them too. So the timer reads the RSS once a
 * second (/proc/self/statm, a few microseconds) and the heap only while
 * the RSS moves by PB_HEAP_TRIM_RSS_STEP, one second after it stops (a
 * burst's end), and every PB_HEAP_TRIM_READ_MS (memory freed without any
 * growth, as when sessions end). A process at rest reads its heap twice a
 * minute.
 *
 * Only glibc has these calls; elsewhere (configure found no mallinfo2 or
 * malloc_trim) the checks do nothing.
 */
#include "heap_trim.h"

#include <stdio.h>
#include <unistd.h>

#if defined(HAVE_MALLINFO2) && defined(HAVE_MALLOC_TRIM)
#define PB_HEAP_TRIM 1
#include <malloc.h>
#endif

#include "log.h"

size_t pb_heap_free_bytes(void)
{
#ifdef PB_HEAP_TRIM
	return mallinfo2().fordblks;
#else
	return 0;
#endif
}

/* The resident set in bytes, or 0 if /proc cannot tell. */
static size_t rss_bytes(void)
{
	unsigned long size, resident;
	FILE *f = fopen("/proc/self/statm", "r");
	int n;

	if (!f)
		return 0;
	n = fscanf(f, "%lu %lu", &size, &resident);
	fclose(f);
	return n == 2 ? (size_t)resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

/* Whether this check should read the heap; notes the RSS. */
static int heap_worth_reading(struct pb_heap_trim *t)
{
	size_t rss = rss_bytes();
	size_t moved = rss > t->rss ? rss - t->rss : t->rss - rss;
	int was_moving = t->rss_moved;

	t->rss = rss;
	t->rss_moved = moved >= PB_HEAP_TRIM_RSS_STEP;
	return t->rss_moved || was_moving ||
	       uv_now(t->timer.loop) - t->read_at >= PB_HEAP_TRIM_READ_MS;
}

int pb_heap_trim_check(struct pb_heap_trim *t)
{
	size_t free_now;

	if (!heap_worth_reading(t))
		return 0;
	free_now = pb_heap_free_bytes();
	t->read_at = uv_now(t->timer.loop);
	t->reads++;
	if (free_now < t->low_free)
		t->low_free = free_now;
	if (free_now - t->low_free < PB_HEAP_TRIM_GROWTH)
		return 0;
#ifdef PB_HEAP_TRIM
	uint64_t t0 = uv_hrtime();

	malloc_trim(0);
	t->trims++;
	pb_log_debug("heap: gave back the free pages of %zu KiB free heap in %.3f ms",
		     free_now >> 10, (double)(uv_hrtime() - t0) / 1e6);
#endif
	t->low_free = free_now;
	return 1;
}

static void heap_trim_tick(uv_timer_t *timer)
{
	pb_heap_trim_check(timer->data);
}

void pb_heap_trim_start(struct pb_heap_trim *t, uv_loop_t *loop)
{
	uv_timer_init(loop, &t->timer);        /* cannot fail */
	t->timer.data = t;
	t->low_free = pb_heap_free_bytes();
	t->rss = rss_bytes();
	t->rss_moved = 0;
	t->read_at = uv_now(loop);
	t->reads = t->trims = 0;
	uv_unref((uv_handle_t *)&t->timer);
	uv_timer_start(&t->timer, heap_trim_tick, 1000, 1000);
}

void pb_heap_trim_stop(struct pb_heap_trim *t)
{
	uv_close((uv_handle_t *)&t->timer, NULL);
}
