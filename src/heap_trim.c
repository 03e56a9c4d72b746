/*
 * heap_trim.c: gives free heap memory back to the kernel after a burst.
 *
 * Memory freed with free() stays in glibc's heap, resident, until it is
 * reused; glibc returns only the top of the heap by itself. A burst leaves
 * such memory behind: while 64 sessions are created at once, 64
 * connections each hold libmicrohttpd's pool (--max-header-bytes + 4 KiB),
 * freed when their polls wait outside libmicrohttpd (docs/ARCHITECTURE.md),
 * and the process keeps that megabyte resident for good.
 *
 * Once a second the timer reads how many heap bytes are free
 * (mallinfo2().fordblks; memory mmap()ed by malloc is not included: free()
 * unmaps it). When that figure has grown by PB_HEAP_TRIM_GROWTH since the
 * lowest figure seen after the last trim, malloc_trim(0) hands the free
 * pages back (madvise(MADV_DONTNEED): the chunks stay in the free lists,
 * so fordblks does not drop, and a later malloc() of them faults in fresh
 * zeroed pages). Under a steady load freed memory is reused before the
 * next check and the figure does not grow, so no trim runs; a trim walks
 * the free lists, which takes microseconds for a few megabytes.
 *
 * Only glibc has these calls; elsewhere (configure found no mallinfo2 or malloc_trim)
 * the checks do nothing.
 */
#include "heap_trim.h"

#include <stdint.h>

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

int pb_heap_trim_check(struct pb_heap_trim *t)
{
	size_t free_now = pb_heap_free_bytes();

	if (free_now < t->low_free)
		t->low_free = free_now;
	if (free_now - t->low_free < PB_HEAP_TRIM_GROWTH)
		return 0;
#ifdef PB_HEAP_TRIM
	uint64_t t0 = uv_hrtime();

	malloc_trim(0);
	t->trims++;
	pb_log_debug("heap: gave back free pages of %zu KiB free heap in %.3f ms", free_now >> 10,
		     (double)(uv_hrtime() - t0) / 1e6);
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
	t->trims = 0;
	uv_unref((uv_handle_t *)&t->timer);
	uv_timer_start(&t->timer, heap_trim_tick, 1000, 1000);
}

void pb_heap_trim_stop(struct pb_heap_trim *t)
{
	uv_close((uv_handle_t *)&t->timer, NULL);
}
