/*
 * map.c: chained string hash table (see map.h). FNV-1a hashing; entries
 * are small nodes so that growing never moves a value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "map.h"

struct pb_map_node {
	struct pb_map_node *next;
	const char *key;
	size_t keylen;
	uint64_t hash;
	void *val;
};

struct pb_map {
	struct pb_map_node **buckets;
	size_t nbuckets;        /* power of two */
	size_t count;
};

/* FNV-1a over the key bytes. */
static uint64_t pb_map_hash(const char *key, size_t len)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ULL;
	}
	return h;
}

struct pb_map *pb_map_new(void)
{
	struct pb_map *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->nbuckets = 64;
	m->buckets = calloc(m->nbuckets, sizeof(*m->buckets));
	if (!m->buckets) {
		free(m);
		return NULL;
	}
	return m;
}

void pb_map_free(struct pb_map *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct pb_map_node *n = m->buckets[i], *next;

		for (; n; n = next) {
			next = n->next;
			free(n);
		}
	}
	free(m->buckets);
	free(m);
}

/* Double the bucket array; on allocation failure keep the old one. */
static void pb_map_grow(struct pb_map *m)
{
	size_t nb = m->nbuckets * 2;
	struct pb_map_node **b = calloc(nb, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct pb_map_node *n = m->buckets[i], *next;

		for (; n; n = next) {
			next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = nb;
}

/* The link pointing at key's node (or at the NULL ending its chain). */
static struct pb_map_node **pb_map_find(const struct pb_map *m, const char *key,
					size_t keylen, uint64_t h)
{
	struct pb_map_node **pp = &m->buckets[h & (m->nbuckets - 1)];

	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && (*pp)->keylen == keylen &&
		    memcmp((*pp)->key, key, keylen) == 0)
			break;
	return pp;
}

int pb_map_put(struct pb_map *m, const char *key, size_t keylen, void *val)
{
	uint64_t h = pb_map_hash(key, keylen);
	struct pb_map_node **pp = pb_map_find(m, key, keylen, h), *n;

	if (*pp)
		return PB_EBADREQ;
	n = malloc(sizeof(*n));
	if (!n)
		return PB_ENOMEM;
	n->key = key;
	n->keylen = keylen;
	n->hash = h;
	n->val = val;
	n->next = m->buckets[h & (m->nbuckets - 1)];
	m->buckets[h & (m->nbuckets - 1)] = n;
	if (++m->count > m->nbuckets)
		pb_map_grow(m);
	return 0;
}

void *pb_map_get(const struct pb_map *m, const char *key, size_t keylen)
{
	struct pb_map_node *n = *pb_map_find(m, key, keylen, pb_map_hash(key, keylen));

	return n ? n->val : NULL;
}

void *pb_map_del(struct pb_map *m, const char *key, size_t keylen)
{
	struct pb_map_node **pp = pb_map_find(m, key, keylen, pb_map_hash(key, keylen));
	struct pb_map_node *n = *pp;
	void *val;

	if (!n)
		return NULL;
	*pp = n->next;
	val = n->val;
	free(n);
	m->count--;
	return val;
}

size_t pb_map_count(const struct pb_map *m)
{
	return m->count;
}

size_t pb_map_values(const struct pb_map *m, void **out, size_t max)
{
	size_t k = 0;

	for (size_t i = 0; i < m->nbuckets && k < max; i++)
		for (struct pb_map_node *n = m->buckets[i]; n && k < max; n = n->next)
			out[k++] = n->val;
	return k;
}
