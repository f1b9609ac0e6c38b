/*
 * In-process cache (see cache.h): open hashing with chains, plus a FIFO
 * list by insertion time for eviction.
 */
#include <string.h>

#include "cache.h"

struct centry {
    char *key;
    void *value;
    long long at;
    unsigned hash;
    struct centry *chain;         /* bucket chain */
    struct centry *older, *newer; /* insertion order */
};

struct cache {
    struct centry **buckets;
    size_t nbuckets;
    size_t count;
    size_t max;
    long long max_age;
    cache_free_fn *free_fn;
    struct centry *oldest, *newest;
};

static unsigned
hash_of(const char *s)
{
    unsigned h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

enum brk_err
cache_new(size_t max_entries, long long max_age_ms, cache_free_fn *free_fn,
          struct cache **out)
{
    struct cache *c;
    size_t n = 16;

    if (max_entries == 0)
        return BRK_ERR_INVAL;
    while (n < max_entries && n < (1u << 20))
        n *= 2;
    c = brk_calloc(1, sizeof(*c));
    if (c == NULL)
        return BRK_ERR_NOMEM;
    c->buckets = brk_calloc(n, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        brk_free(c);
        return BRK_ERR_NOMEM;
    }
    c->nbuckets = n;
    c->max = max_entries;
    c->max_age = max_age_ms;
    c->free_fn = free_fn;
    *out = c;
    return BRK_OK;
}

static void
unlink_entry(struct cache *c, struct centry *e)
{
    struct centry **p = &c->buckets[e->hash & (c->nbuckets - 1)];

    while (*p != e)
        p = &(*p)->chain;
    *p = e->chain;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    c->count--;
    if (c->free_fn != NULL)
        c->free_fn(e->value);
    brk_free(e->key);
    brk_free(e);
}

static struct centry *
find(const struct cache *c, const char *key, unsigned h)
{
    struct centry *e;

    for (e = c->buckets[h & (c->nbuckets - 1)]; e != NULL; e = e->chain)
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

void *
cache_get(struct cache *c, const char *key, long long now_ms)
{
    struct centry *e = find(c, key, hash_of(key));

    if (e == NULL)
        return NULL;
    if (now_ms - e->at > c->max_age || now_ms < e->at) {
        unlink_entry(c, e);
        return NULL;
    }
    return e->value;
}

enum brk_err
cache_put(struct cache *c, const char *key, void *value, long long now_ms)
{
    unsigned h = hash_of(key);
    struct centry *e = find(c, key, h);

    if (e != NULL)
        unlink_entry(c, e);
    while (c->count >= c->max && c->oldest != NULL)
        unlink_entry(c, c->oldest);
    e = brk_calloc(1, sizeof(*e));
    if (e != NULL)
        e->key = brk_strdup(key);
    if (e == NULL || e->key == NULL) {
        brk_free(e);
        if (c->free_fn != NULL)
            c->free_fn(value);
        return BRK_ERR_NOMEM;
    }
    e->value = value;
    e->at = now_ms;
    e->hash = h;
    e->chain = c->buckets[h & (c->nbuckets - 1)];
    c->buckets[h & (c->nbuckets - 1)] = e;
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
    c->count++;
    return BRK_OK;
}

void
cache_remove(struct cache *c, const char *key)
{
    struct centry *e = find(c, key, hash_of(key));

    if (e != NULL)
        unlink_entry(c, e);
}

void
cache_remove_prefix(struct cache *c, const char *prefix)
{
    struct centry *e = c->oldest, *next;
    size_t n = strlen(prefix);

    for (; e != NULL; e = next) {
        next = e->newer;
        if (strncmp(e->key, prefix, n) == 0)
            unlink_entry(c, e);
    }
}

void
cache_clear(struct cache *c)
{
    while (c->oldest != NULL)
        unlink_entry(c, c->oldest);
}

size_t
cache_count(const struct cache *c)
{
    return c->count;
}

void
cache_free(struct cache *c)
{
    if (c == NULL)
        return;
    cache_clear(c);
    brk_free(c->buckets);
    brk_free(c);
}
