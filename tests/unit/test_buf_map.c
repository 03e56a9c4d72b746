/*
 * test_buf_map.c: unit tests for src/buf.c (appends, decimal and printf
 * output, the size limit, steal, NUL termination) and src/map.c (put, get,
 * del, duplicates, keys given as pointer + length, growth to thousands of
 * entries, pb_map_values), the latter also against a simple reference
 * model driven by a deterministic pseudo-random sequence of operations,
 * and src/msg.c's messages across the reuse of freed small blocks (every
 * length to 300 bytes, thousands alive at once, references, live bytes).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "map.h"
#include "msg.h"
#include "tap.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* A deterministic xorshift64 generator, so failures are reproducible. */
struct rng {
	uint64_t s;
};

/* The next pseudo-random 64 bits from r. */
static uint64_t rng_next(struct rng *r)
{
	r->s ^= r->s << 13;
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return r->s;
}

/* Leave freed non-zero chunks behind, so uninitialised allocations are not zero. */
static void dirty_heap(void)
{
	static const size_t sizes[] = { 16, 32, 64, 128, 256, 512, 1024 };
	void *p[sizeof(sizes) / sizeof(sizes[0])];

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		p[i] = malloc(sizes[i]);
		if (!p[i])
			tap_bail("out of memory");
		memset(p[i], 'x', sizes[i]);
	}
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		free(p[i]);
}

/* Check b holds exactly want[0..n) followed by a NUL. */
static void buf_is(const struct pb_buf *b, const char *want, size_t n, const char *name)
{
	tap_is_int(b->len, n, "%s: len", name);
	if (!tap_ok(b->data != NULL, "%s: data allocated", name))
		return;
	tap_ok(b->len == n && memcmp(b->data, want, n) == 0, "%s: bytes", name);
	tap_is_int(b->data[b->len], '\0', "%s: NUL-terminated", name);
	tap_ok(b->cap >= b->len + 1, "%s: cap %zu >= len + 1", name, b->cap);
}

/* Append, puts and NUL handling without a limit. */
static void test_buf_append(void)
{
	struct pb_buf b;

	pb_buf_init(&b, 0);
	tap_ok(b.data == NULL && b.len == 0 && b.cap == 0 && b.limit == 0, "init: empty");
	tap_is_int(pb_buf_append(&b, S("abc")), 0, "append abc");
	buf_is(&b, S("abc"), "append abc");
	tap_is_int(pb_buf_append(&b, S("de")), 0, "append de");
	buf_is(&b, S("abcde"), "append de");
	tap_is_int(pb_buf_append(&b, "ignored", 0), 0, "append 0 bytes");
	buf_is(&b, S("abcde"), "append 0 bytes");
	tap_is_int(pb_buf_append(&b, S("\0x\0")), 0, "append embedded NULs");
	buf_is(&b, "abcde\0x\0", 8, "append embedded NULs");
	tap_is_int(pb_buf_puts(&b, "fg"), 0, "puts fg");
	buf_is(&b, "abcde\0x\0fg", 10, "puts fg");
	tap_is_int(pb_buf_puts(&b, ""), 0, "puts empty");
	buf_is(&b, "abcde\0x\0fg", 10, "puts empty");
	pb_buf_free(&b);
	tap_ok(b.data == NULL && b.len == 0 && b.cap == 0, "free: empty");

	/* Reusable after free; an empty first append still gives a C string. */
	dirty_heap();
	tap_is_int(pb_buf_append(&b, "", 0), 0, "append 0 bytes to a fresh buffer");
	buf_is(&b, "", 0, "append 0 bytes to a fresh buffer");
	tap_is_str(b.data, "", "fresh buffer after empty append reads as \"\"");
	tap_is_int(pb_buf_puts(&b, "again"), 0, "reuse after free");
	tap_is_str(b.data, "again", "reuse after free: content");
	pb_buf_free(&b);

	/* Growth far past the first allocation, one byte at a time. */
	{
		size_t n = 100000;
		int ok = 1;

		for (size_t i = 0; i < n; i++)
			if (pb_buf_append(&b, &"0123456789"[i % 10], 1) != 0)
				ok = 0;
		tap_ok(ok, "100000 one-byte appends succeed");
		tap_is_int(b.len, n, "100000 one-byte appends: len");
		for (size_t i = 0; ok && i < n; i++)
			if (b.data[i] != (char)('0' + i % 10))
				ok = 0;
		tap_ok(ok, "100000 one-byte appends: content");
		tap_is_int(b.data[n], '\0', "100000 one-byte appends: NUL-terminated");
		tap_ok(b.cap >= n + 1 && b.cap <= 4 * (n + 1), "cap %zu grows geometrically", b.cap);
		pb_buf_free(&b);
	}

	/* A large single append. */
	{
		size_t n = 1 << 20;
		char *big = malloc(n);

		if (!big)
			tap_bail("out of memory");
		for (size_t i = 0; i < n; i++)
			big[i] = (char)(i * 7);
		tap_is_int(pb_buf_append(&b, big, n), 0, "append 1 MiB");
		tap_ok(b.len == n && memcmp(b.data, big, n) == 0 && b.data[n] == '\0',
		       "append 1 MiB: content and NUL");
		free(big);
		pb_buf_free(&b);
	}
}

/* put_u64 against snprintf, including 0 and UINT64_MAX. */
static void test_buf_u64(void)
{
	static const uint64_t fixed[] = {
		0, 1, 9, 10, 99, 100, 1234567890, 4294967295ULL, 4294967296ULL,
		9007199254740991ULL, 9999999999999999999ULL, 10000000000000000000ULL,
		UINT64_MAX - 1, UINT64_MAX,
	};
	struct rng rng = { 0x2545f4914f6cdd1dULL };
	struct pb_buf b;
	char want[32];
	int ok = 1;

	pb_buf_init(&b, 0);
	tap_is_int(pb_buf_put_u64(&b, 0), 0, "put_u64 0");
	tap_is_str(b.data, "0", "put_u64 0: \"0\"");
	tap_is_int(b.len, 1, "put_u64 0: len 1");
	pb_buf_free(&b);
	tap_is_int(pb_buf_put_u64(&b, UINT64_MAX), 0, "put_u64 UINT64_MAX");
	tap_is_str(b.data, "18446744073709551615", "put_u64 UINT64_MAX: digits");
	tap_is_int(b.len, 20, "put_u64 UINT64_MAX: len 20");
	pb_buf_free(&b);

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		snprintf(want, sizeof(want), "%" PRIu64, fixed[i]);
		pb_buf_puts(&b, "<");
		tap_is_int(pb_buf_put_u64(&b, fixed[i]), 0, "put_u64 %s: ok", want);
		pb_buf_puts(&b, ">");
		tap_ok(b.len == strlen(want) + 2 && b.data[0] == '<' &&
		       memcmp(b.data + 1, want, strlen(want)) == 0 && b.data[b.len - 1] == '>',
		       "put_u64 %s: appended between others", want);
		pb_buf_free(&b);
	}
	for (int i = 0; i < 10000; i++) {
		uint64_t v = rng_next(&rng) >> (rng_next(&rng) % 64);

		snprintf(want, sizeof(want), "%" PRIu64, v);
		if (pb_buf_put_u64(&b, v) != 0 || strcmp(b.data, want) != 0) {
			if (ok)
				tap_diag("  put_u64 %s gave %s", want, b.data ? b.data : "(null)");
			ok = 0;
		}
		pb_buf_free(&b);
	}
	tap_ok(ok, "put_u64 matches snprintf for 10000 values");
}

/* printf output, appending, and outputs longer than the first allocation. */
static void test_buf_printf(void)
{
	struct pb_buf b;
	char want[1000];

	pb_buf_init(&b, 0);
	tap_is_int(pb_buf_printf(&b, "%s-%d-%c", "ab", -42, 'z'), 0, "printf");
	tap_is_str(b.data, "ab--42-z", "printf: content");
	tap_is_int(b.len, 8, "printf: len");
	tap_is_int(pb_buf_printf(&b, "[%05u]", 7u), 0, "printf appends");
	tap_is_str(b.data, "ab--42-z[00007]", "printf appends: content");
	tap_is_int(b.len, 15, "printf appends: len");
	tap_is_int(pb_buf_printf(&b, "%s", ""), 0, "printf empty output");
	tap_is_int(b.len, 15, "printf empty output: len unchanged");
	tap_is_int(b.data[15], '\0', "printf empty output: NUL-terminated");
	pb_buf_free(&b);

	dirty_heap();
	tap_is_int(pb_buf_printf(&b, "%s", ""), 0, "printf empty output to a fresh buffer");
	tap_ok(b.data != NULL && b.len == 0 && b.data[0] == '\0',
	       "printf empty output to a fresh buffer: \"\"");
	pb_buf_free(&b);

	snprintf(want, sizeof(want), "x%0900dy", 12345);
	tap_is_int(pb_buf_puts(&b, "x"), 0, "printf growth: prefix");
	tap_is_int(pb_buf_printf(&b, "%0900dy", 12345), 0, "printf growth past 256 bytes");
	tap_is_str(b.data, want, "printf growth: content");
	tap_is_int(b.len, 902, "printf growth: len");
	pb_buf_free(&b);

	/* A printf whose output holds a NUL byte keeps the length it reports. */
	tap_is_int(pb_buf_printf(&b, "a%cb", 0), 0, "printf with %%c NUL");
	tap_ok(b.len == 3 && memcmp(b.data, "a\0b", 4) == 0, "printf with %%c NUL: 3 bytes + NUL");
	pb_buf_free(&b);
}

/* Appends that would pass the limit fail with PB_ETOOBIG and change nothing. */
static void test_buf_limit(void)
{
	struct pb_buf b;
	char *before;
	size_t cap;

	pb_buf_init(&b, 5);
	tap_is_int(b.limit, 5, "init: limit");
	tap_is_int(pb_buf_append(&b, S("abcdef")), PB_ETOOBIG, "limit 5: 6 bytes refused");
	tap_ok(b.len == 0, "limit 5: 6 bytes refused: still empty");
	tap_is_int(pb_buf_append(&b, S("abc")), 0, "limit 5: 3 bytes");
	tap_is_int(pb_buf_append(&b, S("def")), PB_ETOOBIG, "limit 5: 3 more refused");
	buf_is(&b, S("abc"), "after refused append");
	tap_is_int(pb_buf_append(&b, S("de")), 0, "limit 5: exactly to the limit");
	buf_is(&b, S("abcde"), "at the limit");
	tap_is_int(pb_buf_append(&b, "", 0), 0, "limit 5: 0 bytes at the limit");
	before = b.data;
	cap = b.cap;
	tap_is_int(pb_buf_append(&b, S("f")), PB_ETOOBIG, "append past the limit");
	tap_is_int(pb_buf_puts(&b, "f"), PB_ETOOBIG, "puts past the limit");
	tap_is_int(pb_buf_put_u64(&b, 0), PB_ETOOBIG, "put_u64 past the limit");
	tap_is_int(pb_buf_printf(&b, "%d", 1), PB_ETOOBIG, "printf past the limit");
	tap_is_int(pb_buf_reserve(&b, 1), PB_ETOOBIG, "reserve past the limit");
	tap_is_int(pb_buf_reserve(&b, 0), 0, "reserve 0 at the limit");
	buf_is(&b, S("abcde"), "after refused appends at the limit");
	tap_ok(b.data == before && b.cap == cap, "refused appends do not reallocate");
	pb_buf_free(&b);
	tap_is_int(b.limit, 5, "free keeps the limit");
	tap_is_int(pb_buf_puts(&b, "123456"), PB_ETOOBIG, "limit still enforced after free");
	pb_buf_free(&b);

	/* Each appender at the boundary: fits exactly, or one byte too many. */
	pb_buf_init(&b, 20);
	tap_is_int(pb_buf_put_u64(&b, UINT64_MAX), 0, "put_u64 of 20 digits in limit 20");
	tap_is_int(b.len, 20, "put_u64 of 20 digits: len");
	pb_buf_free(&b);
	pb_buf_init(&b, 19);
	tap_is_int(pb_buf_put_u64(&b, UINT64_MAX), PB_ETOOBIG, "put_u64 of 20 digits in limit 19");
	tap_ok(b.len == 0 && (b.data == NULL || b.data[0] == '\0'),
	       "put_u64 refused: buffer unchanged");
	pb_buf_free(&b);

	pb_buf_init(&b, 10);
	pb_buf_puts(&b, "12345");
	tap_is_int(pb_buf_printf(&b, "%s-%d", "ab", 123), PB_ETOOBIG, "printf of 6 after 5 in limit 10");
	buf_is(&b, S("12345"), "printf refused: buffer unchanged");
	tap_is_int(pb_buf_printf(&b, "%s-%d", "ab", 12), 0, "printf of 5 after 5 in limit 10");
	buf_is(&b, S("12345ab-12"), "printf to the limit");
	pb_buf_free(&b);

	pb_buf_init(&b, 4);
	pb_buf_puts(&b, "ab");
	tap_is_int(pb_buf_puts(&b, "cde"), PB_ETOOBIG, "puts of 3 after 2 in limit 4");
	buf_is(&b, S("ab"), "puts refused: buffer unchanged");
	pb_buf_free(&b);

	/* Sizes that would overflow size_t are refused even without a limit. */
	pb_buf_init(&b, 0);
	pb_buf_puts(&b, "xy");
	tap_is_int(pb_buf_reserve(&b, SIZE_MAX), PB_ETOOBIG, "reserve SIZE_MAX");
	tap_is_int(pb_buf_reserve(&b, SIZE_MAX - 2), PB_ETOOBIG, "reserve SIZE_MAX - len");
	tap_is_int(pb_buf_append(&b, "z", SIZE_MAX), PB_ETOOBIG, "append SIZE_MAX bytes");
	buf_is(&b, S("xy"), "overflowing sizes: buffer unchanged");
	pb_buf_free(&b);
}

/* steal hands over the storage; an empty buffer yields an allocated "". */
static void test_buf_steal(void)
{
	struct pb_buf b;
	size_t len = 99;
	char *p;

	/* Never appended to. */
	dirty_heap();
	pb_buf_init(&b, 0);
	p = pb_buf_steal(&b, &len);
	if (tap_ok(p != NULL, "steal of a fresh buffer: not NULL"))
		tap_is_str(p, "", "steal of a fresh buffer: \"\"");
	tap_is_int(len, 0, "steal of a fresh buffer: len 0");
	tap_ok(b.data == NULL && b.len == 0 && b.cap == 0, "steal of a fresh buffer: buffer empty");
	free(p);

	/* Emptied by pb_buf_free, with a limit. */
	dirty_heap();
	pb_buf_init(&b, 3);
	pb_buf_puts(&b, "abc");
	pb_buf_free(&b);
	len = 99;
	p = pb_buf_steal(&b, &len);
	if (tap_ok(p != NULL, "steal after free: not NULL"))
		tap_is_str(p, "", "steal after free: \"\"");
	tap_is_int(len, 0, "steal after free: len 0");
	tap_ok(b.data == NULL && b.len == 0 && b.cap == 0, "steal after free: buffer empty");
	free(p);

	/* Storage reserved but nothing written yet. */
	dirty_heap();
	pb_buf_init(&b, 0);
	tap_is_int(pb_buf_reserve(&b, 100), 0, "reserve 100 on a fresh buffer");
	tap_ok(b.data != NULL && b.len == 0 && b.data[0] == '\0',
	       "reserve on a fresh buffer: data reads as \"\"");
	p = pb_buf_steal(&b, NULL);
	if (tap_ok(p != NULL, "steal after reserve (len NULL): not NULL"))
		tap_is_str(p, "", "steal after reserve: \"\"");
	free(p);

	/* With data, and reuse afterwards. */
	pb_buf_init(&b, 8);
	pb_buf_append(&b, S("a\0bc"));
	len = 0;
	p = pb_buf_steal(&b, &len);
	tap_is_int(len, 4, "steal with data: len");
	tap_ok(p && memcmp(p, "a\0bc", 5) == 0, "steal with data: bytes and NUL");
	tap_ok(b.data == NULL && b.len == 0 && b.cap == 0, "steal with data: buffer empty");
	tap_is_int(b.limit, 8, "steal keeps the limit");
	free(p);
	tap_is_int(pb_buf_puts(&b, "12345678"), 0, "reuse after steal, to the limit");
	tap_is_int(pb_buf_puts(&b, "9"), PB_ETOOBIG, "reuse after steal: limit enforced");
	tap_is_str(b.data, "12345678", "reuse after steal: content");
	pb_buf_free(&b);
}

/* put, get, del, duplicates and prefixes on a small map. */
static void test_map_basic(void)
{
	struct pb_map *m = pb_map_new();
	int va = 1, vb = 2, vc = 3, vd = 4;
	void *out[8];

	if (!m)
		tap_bail("pb_map_new failed");
	tap_is_int(pb_map_count(m), 0, "new map: empty");
	tap_ok(pb_map_get(m, S("a")) == NULL, "new map: get misses");
	tap_ok(pb_map_del(m, S("a")) == NULL, "new map: del misses");
	tap_is_int(pb_map_values(m, out, 8), 0, "new map: no values");

	tap_is_int(pb_map_put(m, S("abc"), &va), 0, "put abc");
	tap_is_int(pb_map_put(m, S("ab"), &vb), 0, "put ab (prefix of abc)");
	tap_is_int(pb_map_put(m, S("abcd"), &vc), 0, "put abcd (abc is its prefix)");
	tap_is_int(pb_map_put(m, S("a"), &vd), 0, "put a");
	tap_is_int(pb_map_count(m), 4, "count 4");
	tap_ok(pb_map_get(m, S("abc")) == &va, "get abc");
	tap_ok(pb_map_get(m, S("ab")) == &vb, "get ab");
	tap_ok(pb_map_get(m, S("abcd")) == &vc, "get abcd");
	tap_ok(pb_map_get(m, S("a")) == &vd, "get a");
	tap_ok(pb_map_get(m, S("abcde")) == NULL, "get abcde misses");
	tap_ok(pb_map_get(m, S("b")) == NULL, "get b misses");
	tap_ok(pb_map_get(m, S("")) == NULL, "get empty key misses");
	tap_ok(pb_map_get(m, S("ABC")) == NULL, "keys are case-sensitive");

	tap_is_int(pb_map_put(m, S("abc"), &vd), PB_EBADREQ, "duplicate put refused");
	tap_ok(pb_map_get(m, S("abc")) == &va, "duplicate put keeps the old value");
	tap_is_int(pb_map_count(m), 4, "duplicate put: count unchanged");

	tap_ok(pb_map_del(m, S("abcx")) == NULL, "del of a missing key");
	tap_ok(pb_map_del(m, S("abcd")) == &vc, "del abcd returns its value");
	tap_ok(pb_map_del(m, S("abcd")) == NULL, "del abcd again misses");
	tap_is_int(pb_map_count(m), 3, "count 3 after del");
	tap_ok(pb_map_get(m, S("abcd")) == NULL, "abcd gone");
	tap_ok(pb_map_get(m, S("abc")) == &va && pb_map_get(m, S("ab")) == &vb,
	       "the prefixes of a deleted key stay");
	tap_ok(pb_map_del(m, S("a")) == &vd, "del a");
	tap_ok(pb_map_get(m, S("ab")) == &vb, "ab stays after del a");
	tap_is_int(pb_map_put(m, S("abcd"), &vd), 0, "put after del");
	tap_ok(pb_map_get(m, S("abcd")) == &vd, "put after del: new value");

	{
		size_t n = pb_map_values(m, out, 8);
		int seen_a = 0, seen_b = 0, seen_d = 0;

		tap_is_int(n, 3, "values: 3");
		for (size_t i = 0; i < n; i++) {
			seen_a += out[i] == &va;
			seen_b += out[i] == &vb;
			seen_d += out[i] == &vd;
		}
		tap_ok(seen_a == 1 && seen_b == 1 && seen_d == 1, "values: each once");
		tap_is_int(pb_map_values(m, out, 2), 2, "values with max 2");
		tap_is_int(pb_map_values(m, out, 0), 0, "values with max 0");
	}

	/* The empty key and keys with NUL bytes are ordinary keys. */
	tap_is_int(pb_map_put(m, "", 0, &va), 0, "put the empty key");
	tap_ok(pb_map_get(m, "", 0) == &va, "get the empty key");
	tap_is_int(pb_map_put(m, S("x\0y"), &vb), 0, "put x\\0y");
	tap_is_int(pb_map_put(m, S("x\0z"), &vc), 0, "put x\\0z");
	tap_is_int(pb_map_put(m, S("x"), &vd), 0, "put x");
	tap_ok(pb_map_get(m, S("x\0y")) == &vb && pb_map_get(m, S("x\0z")) == &vc &&
	       pb_map_get(m, S("x")) == &vd, "keys differing after a NUL are distinct");
	tap_ok(pb_map_del(m, "", 0) == &va, "del the empty key");
	tap_is_int(pb_map_count(m), 6, "count 6");
	pb_map_free(m);
	pb_map_free(NULL);
	tap_ok(1, "pb_map_free(NULL) is harmless");
}

/* Keys given as pointer + length inside a larger, non-terminated buffer. */
static void test_map_keylen(void)
{
	/* No NUL after any key: the map must use keylen, never strlen. */
	static const char text[24] = { 's', 'e', 's', 's', 'i', 'o', 'n', 'X', 'Y', 'Z',
				       's', 'e', 's', 's', 'i', 'o', 'n', 'X', 'Y', 'Z',
				       'a', 'b', 'a', 'b' };
	char *heap = malloc(7);
	struct pb_map *m = pb_map_new();
	int v1 = 1, v2 = 2, v3 = 3;

	if (!m || !heap)
		tap_bail("out of memory");
	memcpy(heap, "session", 7);     /* exactly 7 bytes: no room for a NUL */
	tap_is_int(pb_map_put(m, text, 7, &v1), 0, "put text[0..7) \"session\"");
	tap_is_int(pb_map_put(m, text, 8, &v2), 0, "put text[0..8) \"sessionX\"");
	tap_ok(pb_map_get(m, heap, 7) == &v1, "get \"session\" from an unterminated heap copy");
	tap_ok(pb_map_get(m, text + 10, 7) == &v1, "get \"session\" at another offset");
	tap_ok(pb_map_get(m, text + 10, 8) == &v2, "get \"sessionX\" at another offset");
	tap_ok(pb_map_get(m, text, 9) == NULL, "get \"sessionXY\" misses");
	tap_ok(pb_map_get(m, text, 6) == NULL, "get \"sessio\" misses");
	tap_is_int(pb_map_put(m, text + 10, 7, &v3), PB_EBADREQ,
		   "put of an equal key at another address is a duplicate");
	tap_is_int(pb_map_put(m, text + 20, 2, &v3), 0, "put \"ab\"");
	tap_ok(pb_map_get(m, text + 22, 2) == &v3, "get \"ab\" from its second copy");
	tap_ok(pb_map_del(m, heap, 7) == &v1, "del \"session\" through the heap copy");
	tap_ok(pb_map_get(m, text, 8) == &v2, "\"sessionX\" stays");
	tap_is_int(pb_map_count(m), 2, "count 2");
	free(heap);
	pb_map_free(m);
}

#define NKEYS 20000

/* Growth to NKEYS entries; every key stays findable through resizes and dels. */
static void test_map_growth(void)
{
	static char keys[NKEYS][16];
	static int vals[NKEYS];
	static unsigned char seen[NKEYS];
	struct pb_map *m = pb_map_new();
	void **out = malloc(NKEYS * sizeof(*out));
	size_t n;
	int ok;

	if (!m || !out)
		tap_bail("out of memory");
	ok = 1;
	for (int i = 0; i < NKEYS; i++) {
		snprintf(keys[i], sizeof(keys[i]), "key-%d", i);
		vals[i] = i;
		if (pb_map_put(m, keys[i], strlen(keys[i]), &vals[i]) != 0)
			ok = 0;
		/* Spot-check the early keys while the table is being resized. */
		if ((i & (i + 1)) == 0)
			for (int j = 0; j <= i; j++)
				if (pb_map_get(m, keys[j], strlen(keys[j])) != &vals[j])
					ok = 0;
	}
	tap_ok(ok, "%d puts succeed, early keys findable across resizes", NKEYS);
	tap_is_int(pb_map_count(m), NKEYS, "count %d", NKEYS);
	ok = 1;
	for (int i = 0; i < NKEYS; i++)
		if (pb_map_get(m, keys[i], strlen(keys[i])) != &vals[i])
			ok = 0;
	tap_ok(ok, "all %d keys findable", NKEYS);
	tap_ok(pb_map_get(m, S("key-20000")) == NULL && pb_map_get(m, S("key-")) == NULL &&
	       pb_map_get(m, S("key-01")) == NULL, "near-miss keys are absent");
	ok = 1;
	for (int i = 0; i < NKEYS; i += 97)
		if (pb_map_put(m, keys[i], strlen(keys[i]), &vals[0]) != PB_EBADREQ)
			ok = 0;
	tap_ok(ok, "duplicates refused in a big map");

	n = pb_map_values(m, out, NKEYS);
	tap_is_int(n, NKEYS, "values: %d", NKEYS);
	memset(seen, 0, sizeof(seen));
	ok = 1;
	for (size_t i = 0; i < n; i++) {
		int *v = out[i];

		if (v < vals || v >= vals + NKEYS || seen[v - vals]++)
			ok = 0;
	}
	tap_ok(ok, "values: each value exactly once");
	tap_is_int(pb_map_values(m, out, 10), 10, "values with max 10");

	ok = 1;
	for (int i = 1; i < NKEYS; i += 2)
		if (pb_map_del(m, keys[i], strlen(keys[i])) != &vals[i])
			ok = 0;
	tap_ok(ok, "del of every odd key returns its value");
	tap_is_int(pb_map_count(m), NKEYS / 2, "count after dels");
	ok = 1;
	for (int i = 0; i < NKEYS; i++) {
		void *want = i % 2 ? NULL : &vals[i];

		if (pb_map_get(m, keys[i], strlen(keys[i])) != want)
			ok = 0;
	}
	tap_ok(ok, "even keys stay, odd keys are gone");
	n = pb_map_values(m, out, NKEYS);
	tap_is_int(n, NKEYS / 2, "values after dels");
	ok = 1;
	for (size_t i = 0; i < n; i++)
		if ((*(int *)out[i]) % 2 != 0)
			ok = 0;
	tap_ok(ok, "values after dels: only even ones");
	ok = 1;
	for (int i = 0; i < NKEYS; i++)
		if (pb_map_del(m, keys[i], strlen(keys[i])) != (i % 2 ? NULL : &vals[i]))
			ok = 0;
	tap_ok(ok, "del of everything");
	tap_is_int(pb_map_count(m), 0, "empty again");
	tap_is_int(pb_map_values(m, out, NKEYS), 0, "no values when empty");
	free(out);
	pb_map_free(m);
}

#define MODEL_KEYS 3000

/* Random put/get/del against an array model, checking every answer. */
static void test_map_model(void)
{
	static char keys[MODEL_KEYS][12];
	static int vals[MODEL_KEYS];
	static int present[MODEL_KEYS];
	struct rng rng = { 0x9e3779b97f4a7c15ULL };
	struct pb_map *m = pb_map_new();
	size_t count = 0;
	int bad = 0;

	if (!m)
		tap_bail("pb_map_new failed");
	for (int i = 0; i < MODEL_KEYS; i++)
		snprintf(keys[i], sizeof(keys[i]), "%x", (unsigned)i * 2654435761u);
	for (int step = 0; step < 200000 && !bad; step++) {
		uint64_t x = rng_next(&rng);
		int k = (int)(x % MODEL_KEYS), op = (int)((x >> 32) % 3), r;
		size_t kl = strlen(keys[k]);
		void *got;

		switch (op) {
		case 0:
			r = pb_map_put(m, keys[k], kl, &vals[k]);
			if (r != (present[k] ? PB_EBADREQ : 0))
				bad = 1;
			if (!present[k]) {
				present[k] = 1;
				count++;
			}
			break;
		case 1:
			got = pb_map_get(m, keys[k], kl);
			if (got != (present[k] ? &vals[k] : NULL))
				bad = 1;
			break;
		default:
			got = pb_map_del(m, keys[k], kl);
			if (got != (present[k] ? &vals[k] : NULL))
				bad = 1;
			if (present[k]) {
				present[k] = 0;
				count--;
			}
			break;
		}
		if (pb_map_count(m) != count)
			bad = 1;
		if (bad)
			tap_diag("  mismatch at step %d (op %d, key %s)", step, op, keys[k]);
	}
	tap_ok(!bad, "200000 random operations agree with the model");
	tap_is_int(pb_map_count(m), count, "final count agrees with the model");
	pb_map_free(m);
}

/* Fill len bytes of m with a pattern of tag. */
static void msg_fill(struct pb_msg *m, unsigned tag)
{
	for (size_t i = 0; i < m->len; i++)
		m->data[i] = (unsigned char)(tag * 31 + i);
}

/* 1 if m holds len bytes of tag's pattern, NUL-terminated, with the
 * headroom in front inside its block. */
static int msg_holds(const struct pb_msg *m, size_t len, unsigned tag)
{
	if (m->len != len || m->data[len] != '\0' ||
	    m->data < (const unsigned char *)(m + 1) + PB_MSG_HEADROOM)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (m->data[i] != (unsigned char)(tag * 31 + i))
			return 0;
	return 1;
}

#define MSG_MANY 3000

static void test_msg_reuse(void)
{
	static struct pb_msg *ms[MSG_MANY];
	size_t base = pb_msg_live_bytes(), sum = 0;
	struct pb_msg *m, *m2;
	int ok = 1;

	/* every length through every block class and beyond it */
	for (size_t len = 0; len <= 300; len++) {
		m = pb_msg_new(PB_MSG_TEXT, NULL, len);
		msg_fill(m, (unsigned)len);
		ok &= msg_holds(m, len, (unsigned)len) && m->refs == 1 && m->seq == 0;
		ms[len] = m;
		sum += len;
	}
	tap_ok(ok, "msg: lengths 0..300 hold their bytes, NUL-terminated, after the headroom");
	tap_is_int((long long)(pb_msg_live_bytes() - base), (long long)sum,
		   "msg: live bytes count them");
	for (size_t len = 0; len <= 300; len++)
		pb_msg_unref(ms[len]);
	tap_is_int((long long)(pb_msg_live_bytes() - base), 0, "msg: and none once freed");

	/* thousands alive at once, twice over: no two share a block */
	for (int round = 0; round < 2; round++) {
		ok = 1;
		for (unsigned i = 0; i < MSG_MANY; i++) {
			ms[i] = pb_msg_new(i % 2 ? PB_MSG_BINARY : PB_MSG_TEXT, NULL, i % 211);
			msg_fill(ms[i], i);
		}
		for (unsigned i = 0; i < MSG_MANY; i++)
			ok &= msg_holds(ms[i], i % 211, i) && ms[i]->type == (i % 2 ? PB_MSG_BINARY :
										     PB_MSG_TEXT);
		for (unsigned i = 0; i < MSG_MANY; i++)
			pb_msg_unref(ms[i]);
		tap_ok(ok, "msg: %d messages alive at once keep their own bytes (round %d)",
		       MSG_MANY, round + 1);
	}
	tap_is_int((long long)(pb_msg_live_bytes() - base), 0, "msg: none live after both rounds");

	/* a reference keeps the block; the last one lets it go */
	m = pb_msg_new(PB_MSG_TEXT, "hello", 5);
	pb_msg_ref(m);
	pb_msg_unref(m);
	m2 = pb_msg_new(PB_MSG_TEXT, "other", 5);
	tap_ok(m2 != m && m->refs == 1 && !memcmp(m->data, "hello", 6),
	       "msg: a referenced message is not reused");
	pb_msg_unref(m);
	pb_msg_unref(m2);
	pb_msg_cache_free();
	m = pb_msg_new(PB_MSG_TEXT, "again", 5);
	tap_ok(m && !memcmp(m->data, "again", 6), "msg: messages after the cache was freed");
	pb_msg_unref(m);
	pb_msg_cache_free();
}

int main(void)
{
	test_buf_append();
	test_buf_u64();
	test_buf_printf();
	test_buf_limit();
	test_buf_steal();
	test_map_basic();
	test_map_keylen();
	test_map_growth();
	test_map_model();
	test_msg_reuse();
	return tap_done();
}
