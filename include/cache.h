/*
 * A small in-process cache: string keys, owned values with a destructor,
 * an age limit per entry, a bound on the number of entries (the oldest
 * goes first), and removal by key or by key prefix. Pure: the caller
 * passes the time.
 */
#ifndef CACHE_H
#define CACHE_H

#include <stddef.h>

#include "broker.h"

struct cache;

/* Frees a value when it leaves the cache. */
typedef void cache_free_fn(void *value);

/* max_entries > 0; max_age_ms: entries older than this are misses. */
enum brk_err cache_new(size_t max_entries, long long max_age_ms,
                       cache_free_fn *free_fn, struct cache **out) BRK_WUR;
void cache_free(struct cache *c);

/* The value for key (borrowed until the next call that changes the
 * cache), or NULL when absent or older than max_age. */
void *cache_get(struct cache *c, const char *key, long long now_ms);
/* Store value (consumed, even on error) under key, replacing any. */
enum brk_err cache_put(struct cache *c, const char *key, void *value,
                       long long now_ms) BRK_WUR;
void cache_remove(struct cache *c, const char *key);
/* Remove every key starting with prefix. */
void cache_remove_prefix(struct cache *c, const char *prefix);
void cache_clear(struct cache *c);
size_t cache_count(const struct cache *c);

#endif /* CACHE_H */
