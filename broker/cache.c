/*
 * In-process cache (see cache.h): open hashing with chains, plus a FIFO
 * list by insertion time for eviction. The byte budget is one atomic
 * counter: a put reserves its bytes with a compare-and-swap, so caches on
 * several threads together never pass it.
 */
#include <string.h>

#include "cache.h"

struct cache_budget {
    unsigned long long max;
    unsigned long long used; /* atomic */
};

struct centry {
    char *key;
    void *value;
    long long at;
    size_t cost; /* bytes counted against the budget */
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
    struct cache_budget *budget; /* NULL: entries are not counted */
    cache_size_fn *size_fn;
};

enum brk_err
cache_budget_new(unsigned long long max_bytes, struct cache_budget **out)
{
    struct cache_budget *b;

    if (max_bytes == 0)
        return BRK_ERR_INVAL;
    b = brk_calloc(1, sizeof(*b));
    if (b == NULL)
        return BRK_ERR_NOMEM;
    b->max = max_bytes;
    *out = b;
    return BRK_OK;
}

void
cache_budget_free(struct cache_budget *b)
{
    brk_free(b);
}

unsigned long long
cache_budget_used(const struct cache_budget *b)
{
    return __atomic_load_n(&b->used, __ATOMIC_RELAXED);
}

/* Take n bytes if they fit; 0 when taken. */
static int
budget_take(struct cache_budget *b, size_t n)
{
    unsigned long long cur = __atomic_load_n(&b->used, __ATOMIC_RELAXED);

    do {
        if (n > b->max || cur > b->max - n)
            return -1;
    } while (!__atomic_compare_exchange_n(&b->used, &cur, cur + n, 1,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return 0;
}

static void
budget_give(struct cache_budget *b, size_t n)
{
    __atomic_fetch_sub(&b->used, (unsigned long long)n, __ATOMIC_RELAXED);
}

void
cache_set_budget(struct cache *c, struct cache_budget *b,
                 cache_size_fn *size_fn)
{
    c->budget = b;
    c->size_fn = size_fn;
}

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
    if (c->budget != NULL)
        budget_give(c->budget, e->cost);
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

static int
expired(const struct cache *c, const struct centry *e, long long now_ms)
{
    return now_ms - e->at > c->max_age || now_ms < e->at;
}

void *
cache_get(struct cache *c, const char *key, long long now_ms)
{
    struct centry *e = find(c, key, hash_of(key));

    if (e == NULL)
        return NULL;
    if (expired(c, e, now_ms)) {
        unlink_entry(c, e);
        return NULL;
    }
    return e->value;
}

void
cache_expire(struct cache *c, long long now_ms)
{
    struct centry *e = c->oldest, *next;

    /* insertion order is age order, but a clock step may have put an
     * entry "in the future": look at every one */
    for (; e != NULL; e = next) {
        next = e->newer;
        if (expired(c, e, now_ms))
            unlink_entry(c, e);
    }
}

/* Room in the budget for cost bytes: the expired go first, then the
 * oldest. 0 when reserved. */
static int
make_room(struct cache *c, size_t cost, long long now_ms)
{
    if (budget_take(c->budget, cost) == 0)
        return 0;
    while (c->oldest != NULL && expired(c, c->oldest, now_ms))
        unlink_entry(c, c->oldest);
    while (budget_take(c->budget, cost) != 0) {
        if (c->oldest == NULL)
            return -1;
        unlink_entry(c, c->oldest);
    }
    return 0;
}

void *
cache_get_age(struct cache *c, const char *key, long long now_ms,
              long long *age_ms)
{
    struct centry *e = find(c, key, hash_of(key));

    if (e == NULL)
        return NULL;
    if (expired(c, e, now_ms)) {
        unlink_entry(c, e);
        return NULL;
    }
    *age_ms = now_ms - e->at;
    return e->value;
}

enum brk_err
cache_put(struct cache *c, const char *key, void *value, long long now_ms)
{
    unsigned h = hash_of(key);
    struct centry *e = find(c, key, h);
    size_t cost = 0;

    if (e != NULL)
        unlink_entry(c, e);
    while (c->count >= c->max && c->oldest != NULL)
        unlink_entry(c, c->oldest);
    if (c->budget != NULL) {
        cost = sizeof(*e) + strlen(key) + 1 +
               (c->size_fn != NULL ? c->size_fn(value) : 0);
        if (make_room(c, cost, now_ms) != 0) {
            if (c->free_fn != NULL)
                c->free_fn(value);
            return BRK_ERR_TOOBIG;
        }
    }
    e = brk_calloc(1, sizeof(*e));
    if (e != NULL)
        e->key = brk_strdup(key);
    if (e == NULL || e->key == NULL) {
        if (e != NULL)
            brk_free(e->key);
        brk_free(e);
        if (c->budget != NULL)
            budget_give(c->budget, cost);
        if (c->free_fn != NULL)
            c->free_fn(value);
        return BRK_ERR_NOMEM;
    }
    e->value = value;
    e->cost = cost;
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
