/*
 * A small in-process cache: string keys, owned values with a destructor,
 * an age limit per entry, a bound on the number of entries (the oldest
 * goes first), and removal by key or by key prefix. Pure: the caller
 * passes the time. A cache belongs to one thread; a byte budget
 * (cache_budget) may be shared by caches on several threads.
 */
#ifndef CACHE_H
#define CACHE_H

#include <stddef.h>

#include "broker.h"

struct cache;
struct cache_budget;

/* Frees a value when it leaves the cache. */
typedef void cache_free_fn(void *value);
/* Bytes a value holds (approximately), for a budget. */
typedef size_t cache_size_fn(const void *value);

/* A bound in bytes on the entries of every cache counted against it,
 * safe to share between threads. max_bytes > 0. Owned:
 * cache_budget_free, after every cache using it. */
enum brk_err cache_budget_new(unsigned long long max_bytes,
                              struct cache_budget **out) BRK_WUR;
void cache_budget_free(struct cache_budget *b);
/* Bytes held now under b (any thread). */
unsigned long long cache_budget_used(const struct cache_budget *b);

/* max_entries > 0; max_age_ms: entries older than this are misses. */
enum brk_err cache_new(size_t max_entries, long long max_age_ms,
                       cache_free_fn *free_fn, struct cache **out) BRK_WUR;
void cache_free(struct cache *c);

/* Count c's entries (key, bookkeeping and size_fn of the value; NULL:
 * none) against b (borrowed: outlives c), before c's first put. A put
 * that would pass the budget drops entries of c that have expired, then
 * c's oldest; one that still does not fit is refused (BRK_ERR_TOOBIG).
 * Cannot fail. */
void cache_set_budget(struct cache *c, struct cache_budget *b,
                      cache_size_fn *size_fn);
/* Drop every entry older than max_age, returning its bytes to the
 * budget; a cache that is never read still lets go. Cannot fail. */
void cache_expire(struct cache *c, long long now_ms);

/* The value for key (borrowed until the next call that changes the
 * cache), or NULL when absent or older than max_age. */
void *cache_get(struct cache *c, const char *key, long long now_ms);
/* cache_get, and the entry's age in ms into *age_ms on a hit. */
void *cache_get_age(struct cache *c, const char *key, long long now_ms,
                    long long *age_ms);
/* Store value (consumed, even on error) under key, replacing any. */
enum brk_err cache_put(struct cache *c, const char *key, void *value,
                       long long now_ms) BRK_WUR;
void cache_remove(struct cache *c, const char *key);
/* Remove every key starting with prefix. */
void cache_remove_prefix(struct cache *c, const char *prefix);
void cache_clear(struct cache *c);
size_t cache_count(const struct cache *c);

#endif /* CACHE_H */
