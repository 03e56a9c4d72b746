/*
 * map.h: a string-keyed hash table (chained, power-of-two buckets, grows
 * at load 1). Keys are borrowed: the caller keeps each key alive, usually
 * inside the value, until the entry is removed. Values are never freed here.
 */
#ifndef PB_MAP_H
#define PB_MAP_H

#include <stddef.h>

struct pb_map;

/* A new empty map, or NULL. */
struct pb_map *pb_map_new(void);

/* Free the map (not the keys or values). NULL is ignored. */
void pb_map_free(struct pb_map *m);

/* Insert key -> val. 0, PB_ENOMEM, or PB_EBADREQ if key is present. */
int pb_map_put(struct pb_map *m, const char *key, size_t keylen, void *val);

/* The value for key, or NULL. */
void *pb_map_get(const struct pb_map *m, const char *key, size_t keylen);

/* Remove key; returns its value, or NULL if absent. */
void *pb_map_del(struct pb_map *m, const char *key, size_t keylen);

/* Number of entries. */
size_t pb_map_count(const struct pb_map *m);

/* Copy up to max values into out (in no particular order); returns how
 * many were copied. For walks that may modify the map. */
size_t pb_map_values(const struct pb_map *m, void **out, size_t max);

#endif
