/*
 * Tests for the in-process cache: values are freed exactly once whenever
 * they leave (replace, expiry, eviction, removal, clear, free, a failed
 * put), the age limit is inclusive, a clock going backwards is a miss, the
 * oldest entry goes first, and the entry count stays bounded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "cache.h"

/*---- Helpers ----*/

/* A value that counts how often the cache destroyed it. */
struct val {
    int freed;
};

static long destroyed; /* destructor calls since the last reset */

static void
val_free(void *v)
{
    ((struct val *)v)->freed++;
    destroyed++;
}

/* Heap string values: the destructor really frees them. */
static void
str_free(void *v)
{
    destroyed++;
    brk_free(v);
}

static int
reset(void **state)
{
    (void)state;
    destroyed = 0;
    brk_alloc_fail_at(0);
    return 0;
}

static struct cache *
new_cache(size_t max, long long max_age, cache_free_fn *fn)
{
    struct cache *c = NULL;

    assert_int_equal(cache_new(max, max_age, fn, &c), BRK_OK);
    assert_non_null(c);
    assert_int_equal(cache_count(c), 0);
    return c;
}

static void
put_ok(struct cache *c, const char *key, void *value, long long now)
{
    assert_int_equal(cache_put(c, key, value, now), BRK_OK);
}

/*---- Creation ----*/

static void
test_new_zero_entries_inval(void **state)
{
    struct cache *c = (struct cache *)&destroyed; /* sentinel */

    (void)state;
    assert_int_equal(cache_new(0, 1000, val_free, &c), BRK_ERR_INVAL);
    assert_ptr_equal(c, (struct cache *)&destroyed);
}

static void
test_new_alloc_failures(void **state)
{
    struct cache *c;
    enum brk_err err;
    unsigned long n;
    int failed;

    (void)state;
    for (n = 1;; n++) {
        c = NULL;
        brk_alloc_fail_at(n);
        err = cache_new(100, 1000, val_free, &c);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (!failed) {
            assert_int_equal(err, BRK_OK);
            break;
        }
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(c);
        assert_true(n < 100);
    }
    assert_true(n > 1);
    assert_non_null(c);
    cache_free(c);
}

static void
test_free_null(void **state)
{
    (void)state;
    cache_free(NULL);
}

static void
test_huge_max_entries(void **state)
{
    struct cache *c = new_cache(SIZE_MAX, 1000, val_free);
    struct val a = {0};

    (void)state;
    put_ok(c, "a", &a, 0);
    assert_ptr_equal(cache_get(c, "a", 0), &a);
    cache_free(c);
    assert_int_equal(a.freed, 1);
}

/*---- Get and put ----*/

static void
test_get_empty(void **state)
{
    struct cache *c = new_cache(4, 1000, val_free);

    (void)state;
    assert_null(cache_get(c, "a", 0));
    assert_null(cache_get(c, "", 0));
    assert_int_equal(cache_count(c), 0);
    cache_free(c);
    assert_int_equal(destroyed, 0);
}

static void
test_put_get(void **state)
{
    struct cache *c = new_cache(4, 1000, val_free);
    struct val a = {0}, b = {0};

    (void)state;
    put_ok(c, "a", &a, 10);
    put_ok(c, "b", &b, 10);
    assert_int_equal(cache_count(c), 2);
    assert_ptr_equal(cache_get(c, "a", 10), &a);
    assert_ptr_equal(cache_get(c, "b", 20), &b);
    assert_null(cache_get(c, "c", 20));
    /* a get does not consume */
    assert_ptr_equal(cache_get(c, "a", 20), &a);
    assert_int_equal(destroyed, 0);
    cache_free(c);
    assert_int_equal(a.freed, 1);
    assert_int_equal(b.freed, 1);
    assert_int_equal(destroyed, 2);
}

static void
test_key_is_copied(void **state)
{
    struct cache *c = new_cache(4, 1000, val_free);
    struct val a = {0};
    char key[8] = "key";

    (void)state;
    put_ok(c, key, &a, 0);
    key[0] = 'X';
    assert_ptr_equal(cache_get(c, "key", 0), &a);
    assert_null(cache_get(c, key, 0));
    cache_free(c);
    assert_int_equal(a.freed, 1);
}

static void
test_keys_are_exact(void **state)
{
    struct cache *c = new_cache(8, 1000, val_free);
    struct val a = {0}, ab = {0}, empty = {0};

    (void)state;
    put_ok(c, "a", &a, 0);
    put_ok(c, "ab", &ab, 0);
    put_ok(c, "", &empty, 0);
    assert_ptr_equal(cache_get(c, "a", 0), &a);
    assert_ptr_equal(cache_get(c, "ab", 0), &ab);
    assert_ptr_equal(cache_get(c, "", 0), &empty);
    assert_null(cache_get(c, "A", 0));
    assert_null(cache_get(c, "abc", 0));
    cache_free(c);
    assert_int_equal(destroyed, 3);
}

static void
test_replace_frees_old_once(void **state)
{
    struct cache *c = new_cache(4, 1000, val_free);
    struct val v1 = {0}, v2 = {0}, v3 = {0};

    (void)state;
    put_ok(c, "k", &v1, 0);
    put_ok(c, "k", &v2, 1);
    assert_int_equal(v1.freed, 1);
    assert_int_equal(v2.freed, 0);
    assert_int_equal(cache_count(c), 1);
    assert_ptr_equal(cache_get(c, "k", 1), &v2);
    put_ok(c, "k", &v3, 2);
    assert_int_equal(v1.freed, 1);
    assert_int_equal(v2.freed, 1);
    assert_int_equal(cache_count(c), 1);
    assert_ptr_equal(cache_get(c, "k", 2), &v3);
    cache_free(c);
    assert_int_equal(v3.freed, 1);
    assert_int_equal(destroyed, 3);
}

static void
test_replace_resets_age(void **state)
{
    struct cache *c = new_cache(4, 100, val_free);
    struct val v1 = {0}, v2 = {0};

    (void)state;
    put_ok(c, "k", &v1, 0);
    put_ok(c, "k", &v2, 90);
    assert_ptr_equal(cache_get(c, "k", 190), &v2);
    assert_null(cache_get(c, "k", 191));
    assert_int_equal(v2.freed, 1);
    cache_free(c);
    assert_int_equal(destroyed, 2);
}

static void
test_replace_when_full_evicts_nothing(void **state)
{
    struct cache *c = new_cache(2, 1000, val_free);
    struct val a1 = {0}, a2 = {0}, b = {0};

    (void)state;
    put_ok(c, "a", &a1, 0);
    put_ok(c, "b", &b, 0);
    put_ok(c, "a", &a2, 1);
    assert_int_equal(cache_count(c), 2);
    assert_int_equal(a1.freed, 1);
    assert_int_equal(b.freed, 0);
    assert_ptr_equal(cache_get(c, "b", 1), &b);
    assert_ptr_equal(cache_get(c, "a", 1), &a2);
    cache_free(c);
    assert_int_equal(destroyed, 3);
}

static void
test_no_destructor(void **state)
{
    struct cache *c = new_cache(1, 10, NULL);
    struct val a = {0}, b = {0};

    (void)state;
    put_ok(c, "a", &a, 0);
    put_ok(c, "b", &b, 0); /* evicts a */
    assert_null(cache_get(c, "a", 0));
    assert_ptr_equal(cache_get(c, "b", 0), &b);
    assert_null(cache_get(c, "b", 11));
    cache_free(c);
    assert_int_equal(a.freed + b.freed, 0);
}

/*---- Age ----*/

static void
test_age_exactly_max_is_kept(void **state)
{
    struct cache *c = new_cache(4, 500, val_free);
    struct val a = {0};

    (void)state;
    put_ok(c, "a", &a, 1000);
    assert_ptr_equal(cache_get(c, "a", 1000), &a);
    assert_ptr_equal(cache_get(c, "a", 1500), &a);
    assert_int_equal(a.freed, 0);
    assert_int_equal(cache_count(c), 1);
    cache_free(c);
    assert_int_equal(a.freed, 1);
}

static void
test_age_one_over_max_misses(void **state)
{
    struct cache *c = new_cache(4, 500, val_free);
    struct val a = {0};

    (void)state;
    put_ok(c, "a", &a, 1000);
    assert_null(cache_get(c, "a", 1501));
    assert_int_equal(a.freed, 1);
    assert_int_equal(cache_count(c), 0);
    /* gone for good, even at a time it would have been fresh */
    assert_null(cache_get(c, "a", 1000));
    cache_free(c);
    assert_int_equal(a.freed, 1);
    assert_int_equal(destroyed, 1);
}

static void
test_age_zero_max(void **state)
{
    struct cache *c = new_cache(4, 0, val_free);
    struct val a = {0};

    (void)state;
    put_ok(c, "a", &a, 7);
    assert_ptr_equal(cache_get(c, "a", 7), &a);
    assert_null(cache_get(c, "a", 8));
    assert_int_equal(a.freed, 1);
    cache_free(c);
    assert_int_equal(destroyed, 1);
}

static void
test_clock_backwards_misses(void **state)
{
    struct cache *c = new_cache(4, 500, val_free);
    struct val a = {0};

    (void)state;
    put_ok(c, "a", &a, 1000);
    assert_null(cache_get(c, "a", 999));
    assert_int_equal(a.freed, 1);
    assert_int_equal(cache_count(c), 0);
    cache_free(c);
    assert_int_equal(destroyed, 1);
}

static void
test_expiry_leaves_others(void **state)
{
    struct cache *c = new_cache(4, 100, val_free);
    struct val old = {0}, young = {0};

    (void)state;
    put_ok(c, "old", &old, 0);
    put_ok(c, "young", &young, 50);
    assert_null(cache_get(c, "old", 120));
    assert_ptr_equal(cache_get(c, "young", 120), &young);
    assert_int_equal(old.freed, 1);
    assert_int_equal(young.freed, 0);
    assert_int_equal(cache_count(c), 1);
    cache_free(c);
    assert_int_equal(destroyed, 2);
}

/*---- Eviction ----*/

static void
test_evicts_oldest_when_full(void **state)
{
    struct cache *c = new_cache(3, 1000, val_free);
    struct val a = {0}, b = {0}, cc = {0}, d = {0};

    (void)state;
    put_ok(c, "a", &a, 0);
    put_ok(c, "b", &b, 1);
    put_ok(c, "c", &cc, 2);
    assert_int_equal(cache_count(c), 3);
    assert_int_equal(destroyed, 0);
    put_ok(c, "d", &d, 3);
    assert_int_equal(cache_count(c), 3);
    assert_int_equal(a.freed, 1);
    assert_int_equal(destroyed, 1);
    assert_null(cache_get(c, "a", 3));
    assert_ptr_equal(cache_get(c, "b", 3), &b);
    assert_ptr_equal(cache_get(c, "c", 3), &cc);
    assert_ptr_equal(cache_get(c, "d", 3), &d);
    cache_free(c);
    assert_int_equal(a.freed + b.freed + cc.freed + d.freed, 4);
    assert_int_equal(destroyed, 4);
}

static void
test_replace_makes_entry_newest(void **state)
{
    struct cache *c = new_cache(3, 1000, val_free);
    struct val a = {0}, b1 = {0}, b2 = {0}, cc = {0}, d = {0}, e = {0};

    (void)state;
    put_ok(c, "a", &a, 0);
    put_ok(c, "b", &b1, 0);
    put_ok(c, "c", &cc, 0);
    put_ok(c, "b", &b2, 1); /* order now a, c, b */
    put_ok(c, "d", &d, 2);  /* evicts a */
    assert_int_equal(a.freed, 1);
    put_ok(c, "e", &e, 3); /* evicts c, not b */
    assert_int_equal(cc.freed, 1);
    assert_int_equal(b2.freed, 0);
    assert_ptr_equal(cache_get(c, "b", 3), &b2);
    assert_ptr_equal(cache_get(c, "d", 3), &d);
    assert_ptr_equal(cache_get(c, "e", 3), &e);
    cache_free(c);
    assert_int_equal(destroyed, 6);
}

static void
test_max_one_entry(void **state)
{
    struct cache *c = new_cache(1, 1000, val_free);
    struct val a = {0}, b = {0};

    (void)state;
    put_ok(c, "a", &a, 0);
    put_ok(c, "b", &b, 0);
    assert_int_equal(cache_count(c), 1);
    assert_int_equal(a.freed, 1);
    assert_null(cache_get(c, "a", 0));
    assert_ptr_equal(cache_get(c, "b", 0), &b);
    cache_free(c);
    assert_int_equal(b.freed, 1);
}

static struct val many[100000];

static void
test_many_keys_stay_bounded(void **state)
{
    struct cache *c = new_cache(1000, 1000000, val_free);
    char key[32];
    size_t i;

    (void)state;
    memset(many, 0, sizeof(many));
    for (i = 0; i < nitems(many); i++) {
        snprintf(key, sizeof(key), "key:%zu", i);
        put_ok(c, key, &many[i], (long long)i);
        assert_true(cache_count(c) <= 1000);
    }
    assert_int_equal(cache_count(c), 1000);
    assert_int_equal(destroyed, nitems(many) - 1000);
    for (i = 0; i < nitems(many); i++) {
        snprintf(key, sizeof(key), "key:%zu", i);
        if (i < nitems(many) - 1000) {
            assert_int_equal(many[i].freed, 1);
            assert_null(cache_get(c, key, 100000));
        } else {
            assert_int_equal(many[i].freed, 0);
            assert_ptr_equal(cache_get(c, key, 100000), &many[i]);
        }
    }
    cache_free(c);
    for (i = 0; i < nitems(many); i++)
        assert_int_equal(many[i].freed, 1);
    assert_int_equal(destroyed, nitems(many));
}

/*---- Removal ----*/

static void
test_remove(void **state)
{
    struct cache *c = new_cache(4, 1000, val_free);
    struct val a = {0}, b = {0};

    (void)state;
    put_ok(c, "a", &a, 0);
    put_ok(c, "b", &b, 0);
    cache_remove(c, "a");
    assert_int_equal(a.freed, 1);
    assert_int_equal(cache_count(c), 1);
    assert_null(cache_get(c, "a", 0));
    assert_ptr_equal(cache_get(c, "b", 0), &b);
    cache_remove(c, "a"); /* already gone */
    cache_remove(c, "zzz");
    assert_int_equal(a.freed, 1);
    assert_int_equal(cache_count(c), 1);
    cache_free(c);
    assert_int_equal(destroyed, 2);
}

static void
test_remove_then_put_again(void **state)
{
    struct cache *c = new_cache(2, 1000, val_free);
    struct val a1 = {0}, a2 = {0};

    (void)state;
    put_ok(c, "a", &a1, 0);
    cache_remove(c, "a");
    put_ok(c, "a", &a2, 0);
    assert_ptr_equal(cache_get(c, "a", 0), &a2);
    assert_int_equal(cache_count(c), 1);
    cache_free(c);
    assert_int_equal(a1.freed, 1);
    assert_int_equal(a2.freed, 1);
}

static void
test_remove_many_in_shared_buckets(void **state)
{
    /* 64 entries in 64 buckets: chains are certain to form */
    struct cache *c = new_cache(64, 1000, val_free);
    struct val v[64];
    char key[16];
    size_t i;

    (void)state;
    memset(v, 0, sizeof(v));
    for (i = 0; i < 64; i++) {
        snprintf(key, sizeof(key), "k%zu", i);
        put_ok(c, key, &v[i], 0);
    }
    for (i = 0; i < 64; i += 2) {
        snprintf(key, sizeof(key), "k%zu", i);
        cache_remove(c, key);
    }
    assert_int_equal(cache_count(c), 32);
    for (i = 0; i < 64; i++) {
        snprintf(key, sizeof(key), "k%zu", i);
        if (i % 2 == 0) {
            assert_int_equal(v[i].freed, 1);
            assert_null(cache_get(c, key, 0));
        } else {
            assert_int_equal(v[i].freed, 0);
            assert_ptr_equal(cache_get(c, key, 0), &v[i]);
        }
    }
    cache_free(c);
    for (i = 0; i < 64; i++)
        assert_int_equal(v[i].freed, 1);
}

static void
test_remove_prefix_only_matching(void **state)
{
    static const char *const keys[] = {
        "grant:c1:svc",   "svc:c1",  "grant:c1:",     "grant:c10:svc",
        "grant:c1:other", "grant:c", "xgrant:c1:svc", "GRANT:c1:svc",
    };
    static const int match[] = {1, 0, 1, 0, 1, 0, 0, 0};
    struct cache *c = new_cache(16, 1000, val_free);
    struct val v[nitems(keys)];
    size_t i;

    (void)state;
    memset(v, 0, sizeof(v));
    for (i = 0; i < nitems(keys); i++)
        put_ok(c, keys[i], &v[i], 0);
    cache_remove_prefix(c, "grant:c1:");
    assert_int_equal(cache_count(c), nitems(keys) - 3);
    assert_int_equal(destroyed, 3);
    for (i = 0; i < nitems(keys); i++) {
        assert_int_equal(v[i].freed, match[i]);
        if (match[i])
            assert_null(cache_get(c, keys[i], 0));
        else
            assert_ptr_equal(cache_get(c, keys[i], 0), &v[i]);
    }
    cache_free(c);
    for (i = 0; i < nitems(keys); i++)
        assert_int_equal(v[i].freed, 1);
}

static void
test_remove_prefix_no_match(void **state)
{
    struct cache *c = new_cache(4, 1000, val_free);
    struct val a = {0}, b = {0};

    (void)state;
    put_ok(c, "abc", &a, 0);
    put_ok(c, "abd", &b, 0);
    cache_remove_prefix(c, "abcd"); /* longer than a key */
    cache_remove_prefix(c, "b");
    assert_int_equal(cache_count(c), 2);
    assert_int_equal(destroyed, 0);
    cache_remove_prefix(c, "abc"); /* a whole key is its own prefix */
    assert_int_equal(a.freed, 1);
    assert_int_equal(b.freed, 0);
    assert_int_equal(cache_count(c), 1);
    cache_free(c);
    assert_int_equal(destroyed, 2);
}

static void
test_remove_prefix_empty_removes_all(void **state)
{
    struct cache *c = new_cache(4, 1000, val_free);
    struct val a = {0}, b = {0};

    (void)state;
    put_ok(c, "a", &a, 0);
    put_ok(c, "b", &b, 0);
    cache_remove_prefix(c, "");
    assert_int_equal(cache_count(c), 0);
    assert_int_equal(a.freed, 1);
    assert_int_equal(b.freed, 1);
    cache_free(c);
    assert_int_equal(destroyed, 2);
}

static void
test_remove_prefix_on_empty(void **state)
{
    struct cache *c = new_cache(4, 1000, val_free);

    (void)state;
    cache_remove_prefix(c, "a");
    assert_int_equal(cache_count(c), 0);
    cache_free(c);
    assert_int_equal(destroyed, 0);
}

static void
test_clear(void **state)
{
    struct cache *c = new_cache(4, 1000, val_free);
    struct val a = {0}, b = {0}, d = {0};

    (void)state;
    put_ok(c, "a", &a, 0);
    put_ok(c, "b", &b, 0);
    cache_clear(c);
    assert_int_equal(cache_count(c), 0);
    assert_int_equal(a.freed, 1);
    assert_int_equal(b.freed, 1);
    assert_null(cache_get(c, "a", 0));
    cache_clear(c); /* again, on empty */
    assert_int_equal(destroyed, 2);
    /* still usable */
    put_ok(c, "a", &d, 0);
    assert_ptr_equal(cache_get(c, "a", 0), &d);
    cache_free(c);
    assert_int_equal(d.freed, 1);
    assert_int_equal(destroyed, 3);
}

static void
test_count(void **state)
{
    struct cache *c = new_cache(3, 10, val_free);
    struct val v[5];

    (void)state;
    memset(v, 0, sizeof(v));
    assert_int_equal(cache_count(c), 0);
    put_ok(c, "a", &v[0], 0);
    assert_int_equal(cache_count(c), 1);
    put_ok(c, "b", &v[1], 0);
    assert_int_equal(cache_count(c), 2);
    put_ok(c, "b", &v[2], 0);
    assert_int_equal(cache_count(c), 2);
    put_ok(c, "c", &v[3], 0);
    put_ok(c, "d", &v[4], 0);
    assert_int_equal(cache_count(c), 3);
    cache_remove(c, "d");
    assert_int_equal(cache_count(c), 2);
    assert_null(cache_get(c, "c", 11)); /* expired */
    assert_int_equal(cache_count(c), 1);
    cache_free(c);
    assert_int_equal(destroyed, 5);
}

/*---- Allocation failures ----*/

/*
 * Fill a cache of two with "old" and "keep", arm the nth allocation to
 * fail, then put a heap value under key. Whatever happens, the value is
 * consumed: on failure it is freed at once and the key is absent.
 */
static void
check_put_alloc_failures(const char *key)
{
    struct cache *c;
    enum brk_err err;
    unsigned long n;
    long before;
    char *v;
    int failed;

    for (n = 1;; n++) {
        c = new_cache(2, 1000, str_free);
        v = brk_strdup("old");
        assert_non_null(v);
        put_ok(c, "old", v, 0);
        v = brk_strdup("keep");
        assert_non_null(v);
        put_ok(c, "keep", v, 1);
        v = brk_strdup("new");
        assert_non_null(v);
        before = destroyed;

        brk_alloc_fail_at(n);
        err = cache_put(c, key, v, 2);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);

        if (!failed) {
            assert_int_equal(err, BRK_OK);
            /* the first value under "old" went (replaced or evicted) */
            assert_int_equal(destroyed - before, 1);
            assert_string_equal(cache_get(c, key, 2), "new");
            assert_string_equal(cache_get(c, "keep", 2), "keep");
            assert_int_equal(cache_count(c), 2);
            cache_free(c);
            assert_int_equal(destroyed - before, 3);
            break;
        }
        assert_int_equal(err, BRK_ERR_NOMEM);
        /* the consumed value was destroyed exactly once */
        assert_int_equal(destroyed - before, 2);
        assert_null(cache_get(c, key, 2));
        assert_null(cache_get(c, "old", 2));
        assert_string_equal(cache_get(c, "keep", 2), "keep");
        assert_int_equal(cache_count(c), 1);
        cache_free(c);
        assert_int_equal(destroyed - before, 3);
        assert_true(n < 100);
    }
    assert_true(n > 1);
}

static void
test_put_new_key_alloc_failures(void **state)
{
    (void)state;
    check_put_alloc_failures("new");
}

static void
test_put_replace_alloc_failures(void **state)
{
    (void)state;
    check_put_alloc_failures("old");
}

static void
test_put_failure_keeps_cache_usable(void **state)
{
    struct cache *c = new_cache(4, 1000, str_free);
    char *v = brk_strdup("v");

    (void)state;
    assert_non_null(v);
    brk_alloc_fail_at(1);
    assert_int_equal(cache_put(c, "k", v, 0), BRK_ERR_NOMEM);
    brk_alloc_fail_at(0);
    assert_int_equal(destroyed, 1);
    assert_int_equal(cache_count(c), 0);
    v = brk_strdup("w");
    assert_non_null(v);
    assert_int_equal(cache_put(c, "k", v, 0), BRK_OK);
    assert_string_equal(cache_get(c, "k", 0), "w");
    cache_free(c);
    assert_int_equal(destroyed, 2);
}

static void
test_get_age(void **state)
{
    struct cache *c = NULL;
    struct val v = {0};
    long long age = -1;

    (void)state;
    assert_int_equal(cache_new(4, 100, val_free, &c), BRK_OK);
    assert_int_equal(cache_put(c, "k", &v, 1000), BRK_OK);
    assert_ptr_equal(cache_get_age(c, "k", 1040, &age), &v);
    assert_int_equal(age, 40);
    /* a miss leaves age alone */
    age = -1;
    assert_null(cache_get_age(c, "other", 1040, &age));
    assert_int_equal(age, -1);
    /* past max_age: a miss, and the entry goes */
    assert_null(cache_get_age(c, "k", 1101, &age));
    assert_int_equal(age, -1);
    assert_int_equal(v.freed, 1);
    cache_free(c);
}

/*---- Byte budget ----*/

/* Values whose size is what they say. */
struct sized {
    size_t bytes;
    int freed;
};

static size_t
sized_size(const void *v)
{
    return ((const struct sized *)v)->bytes;
}

static void
sized_free(void *v)
{
    ((struct sized *)v)->freed++;
    destroyed++;
}

/* What an entry of key with a value of n bytes costs, measured. */
static size_t
entry_cost(const char *key, size_t n)
{
    struct cache_budget *b = NULL;
    struct cache *c = NULL;
    struct sized v = {n, 0};
    size_t cost;

    assert_int_equal(cache_budget_new(1 << 30, &b), BRK_OK);
    assert_int_equal(cache_new(10, 1000, sized_free, &c), BRK_OK);
    cache_set_budget(c, b, sized_size);
    assert_int_equal(cache_put(c, key, &v, 0), BRK_OK);
    cost = (size_t)cache_budget_used(b);
    cache_free(c);
    assert_int_equal(cache_budget_used(b), 0);
    cache_budget_free(b);
    return cost;
}

static void
test_budget_shared_by_caches(void **state)
{
    struct cache_budget *b = NULL;
    struct cache *c1 = NULL, *c2 = NULL;
    struct sized v[6];
    size_t cost = entry_cost("k0", 1000);
    int i;

    (void)state;
    memset(v, 0, sizeof(v));
    for (i = 0; i < 6; i++)
        v[i].bytes = 1000;
    assert_true(cost >= 1000 + 3);
    /* room for three entries in all */
    assert_int_equal(cache_budget_new(3 * cost, &b), BRK_OK);
    assert_int_equal(cache_new(100, 1000, sized_free, &c1), BRK_OK);
    assert_int_equal(cache_new(100, 1000, sized_free, &c2), BRK_OK);
    cache_set_budget(c1, b, sized_size);
    cache_set_budget(c2, b, sized_size);
    assert_int_equal(cache_put(c1, "k0", &v[0], 0), BRK_OK);
    assert_int_equal(cache_put(c1, "k1", &v[1], 0), BRK_OK);
    assert_int_equal(cache_put(c1, "k2", &v[2], 0), BRK_OK);
    assert_int_equal(cache_budget_used(b), 3 * cost);
    /* c2 holds nothing it could let go of: refused, c1 untouched */
    assert_int_equal(cache_put(c2, "k3", &v[3], 1), BRK_ERR_TOOBIG);
    assert_int_equal(v[3].freed, 1);
    assert_int_equal(cache_count(c1), 3);
    assert_int_equal(cache_count(c2), 0);
    /* c1 past the budget: its own oldest goes */
    assert_int_equal(cache_put(c1, "k4", &v[4], 2), BRK_OK);
    assert_int_equal(v[0].freed, 1);
    assert_int_equal(v[1].freed + v[2].freed, 0);
    assert_int_equal(cache_budget_used(b), 3 * cost);
    /* removal gives the bytes back, to any cache */
    cache_remove(c1, "k1");
    assert_int_equal(cache_put(c2, "k5", &v[5], 3), BRK_OK);
    assert_int_equal(cache_budget_used(b), 3 * cost);
    assert_int_equal(cache_count(c2), 1);
    cache_free(c1);
    cache_free(c2);
    assert_int_equal(cache_budget_used(b), 0);
    cache_budget_free(b);
}

static void
test_budget_value_larger_than_all(void **state)
{
    struct cache_budget *b = NULL;
    struct cache *c = NULL;
    struct sized big = {1 << 20, 0}, small = {10, 0};

    (void)state;
    assert_int_equal(cache_budget_new(4096, &b), BRK_OK);
    assert_int_equal(cache_new(10, 1000, sized_free, &c), BRK_OK);
    cache_set_budget(c, b, sized_size);
    assert_int_equal(cache_put(c, "small", &small, 0), BRK_OK);
    assert_int_equal(cache_put(c, "big", &big, 0), BRK_ERR_TOOBIG);
    assert_int_equal(big.freed, 1);
    assert_null(cache_get(c, "big", 0));
    assert_true(cache_budget_used(b) <= 4096);
    cache_free(c);
    assert_int_equal(cache_budget_used(b), 0);
    cache_budget_free(b);
}

static void
test_budget_expired_go_first(void **state)
{
    struct cache_budget *b = NULL;
    struct cache *c = NULL;
    struct sized v[3];
    size_t cost = entry_cost("a", 100);

    (void)state;
    memset(v, 0, sizeof(v));
    v[0].bytes = v[1].bytes = v[2].bytes = 100;
    assert_int_equal(cache_budget_new(2 * cost, &b), BRK_OK);
    assert_int_equal(cache_new(10, 50, sized_free, &c), BRK_OK);
    cache_set_budget(c, b, sized_size);
    assert_int_equal(cache_put(c, "a", &v[0], 0), BRK_OK);
    assert_int_equal(cache_put(c, "b", &v[1], 40), BRK_OK);
    /* at 60, "a" has expired: it goes, "b" stays */
    assert_int_equal(cache_put(c, "c", &v[2], 60), BRK_OK);
    assert_int_equal(v[0].freed, 1);
    assert_int_equal(v[1].freed, 0);
    assert_non_null(cache_get(c, "b", 60));
    /* a cache nobody reads lets go of what expired */
    cache_expire(c, 200);
    assert_int_equal(cache_count(c), 0);
    assert_int_equal(cache_budget_used(b), 0);
    cache_free(c);
    cache_budget_free(b);
}

#define RACE_THREADS 4
#define RACE_PUTS    20000

struct race {
    struct cache_budget *b;
    int id;
    unsigned long long max;
    int over; /* the budget was seen passed */
};

static size_t
fixed_size(const void *v)
{
    (void)v;
    return 200;
}

static void *
race_run(void *arg)
{
    struct race *r = arg;
    struct cache *c = NULL;
    char key[32];
    int i;

    if (cache_new(1000, 1000000, NULL, &c) != BRK_OK)
        return NULL;
    cache_set_budget(c, r->b, fixed_size);
    for (i = 0; i < RACE_PUTS; i++) {
        snprintf(key, sizeof(key), "t%d-%d", r->id, i % 300);
        if (cache_put(c, key, NULL, i) != BRK_OK &&
            cache_budget_used(r->b) + 200 <= r->max / 2)
            r->over = 1; /* refused with room to spare */
        if (cache_budget_used(r->b) > r->max)
            r->over = 1;
        if (i % 97 == 0)
            cache_remove(c, key);
    }
    cache_free(c);
    return NULL;
}

/* Caches on several threads under one budget never pass it together,
 * and give every byte back. */
static void
test_budget_across_threads(void **state)
{
    struct cache_budget *b = NULL;
    struct race r[RACE_THREADS];
    pthread_t t[RACE_THREADS];
    int i;

    (void)state;
    assert_int_equal(cache_budget_new(64 * 1024, &b), BRK_OK);
    for (i = 0; i < RACE_THREADS; i++) {
        r[i].b = b;
        r[i].id = i;
        r[i].max = 64 * 1024;
        r[i].over = 0;
        assert_int_equal(pthread_create(&t[i], NULL, race_run, &r[i]), 0);
    }
    for (i = 0; i < RACE_THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].over, 0);
    }
    assert_int_equal(cache_budget_used(b), 0);
    cache_budget_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_new_zero_entries_inval, reset),
        cmocka_unit_test_setup(test_new_alloc_failures, reset),
        cmocka_unit_test_setup(test_free_null, reset),
        cmocka_unit_test_setup(test_huge_max_entries, reset),
        cmocka_unit_test_setup(test_get_empty, reset),
        cmocka_unit_test_setup(test_put_get, reset),
        cmocka_unit_test_setup(test_key_is_copied, reset),
        cmocka_unit_test_setup(test_keys_are_exact, reset),
        cmocka_unit_test_setup(test_replace_frees_old_once, reset),
        cmocka_unit_test_setup(test_replace_resets_age, reset),
        cmocka_unit_test_setup(test_replace_when_full_evicts_nothing, reset),
        cmocka_unit_test_setup(test_no_destructor, reset),
        cmocka_unit_test_setup(test_age_exactly_max_is_kept, reset),
        cmocka_unit_test_setup(test_age_one_over_max_misses, reset),
        cmocka_unit_test_setup(test_age_zero_max, reset),
        cmocka_unit_test_setup(test_clock_backwards_misses, reset),
        cmocka_unit_test_setup(test_expiry_leaves_others, reset),
        cmocka_unit_test_setup(test_evicts_oldest_when_full, reset),
        cmocka_unit_test_setup(test_replace_makes_entry_newest, reset),
        cmocka_unit_test_setup(test_max_one_entry, reset),
        cmocka_unit_test_setup(test_many_keys_stay_bounded, reset),
        cmocka_unit_test_setup(test_remove, reset),
        cmocka_unit_test_setup(test_remove_then_put_again, reset),
        cmocka_unit_test_setup(test_remove_many_in_shared_buckets, reset),
        cmocka_unit_test_setup(test_remove_prefix_only_matching, reset),
        cmocka_unit_test_setup(test_remove_prefix_no_match, reset),
        cmocka_unit_test_setup(test_remove_prefix_empty_removes_all, reset),
        cmocka_unit_test_setup(test_remove_prefix_on_empty, reset),
        cmocka_unit_test_setup(test_clear, reset),
        cmocka_unit_test_setup(test_count, reset),
        cmocka_unit_test_setup(test_put_new_key_alloc_failures, reset),
        cmocka_unit_test_setup(test_put_replace_alloc_failures, reset),
        cmocka_unit_test_setup(test_put_failure_keeps_cache_usable, reset),
        cmocka_unit_test_setup(test_get_age, reset),
        cmocka_unit_test_setup(test_budget_shared_by_caches, reset),
        cmocka_unit_test_setup(test_budget_value_larger_than_all, reset),
        cmocka_unit_test_setup(test_budget_expired_go_first, reset),
        cmocka_unit_test_setup(test_budget_across_threads, reset),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
