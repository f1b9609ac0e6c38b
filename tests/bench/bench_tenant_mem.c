/*
 * What one cached tenant costs the broker's heap: the record the service
 * API keeps per tenant in its tenants cache (record_tenant_decode: the
 * grant, the stored directory as JSON objects and the visible range built
 * from it), for directories of several sizes, and how long decoding it
 * takes (what a request pays when the entry has expired). The directory
 * is shaped like the simulator's: a random department tree, members in
 * one to three departments, the whole corp in range. Not part of
 * `make test`; scripts/bench-scale.sh prints its lines.
 *
 *   bench_tenant_mem [MEMBERS:DEPARTMENTS ...]
 *
 * Default sizes: 20:3 110:7 200:13 100000:5000. One line per size:
 * "BENCH members=M departments=D heap_bytes=B per_member=P decode_ms=T".
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "record.h"

#define MAX_DEPARTMENTS 100000
#define MAX_MEMBERS     1000000

static const char *const PRIV =
    "{\"level\":1,\"allow_party\":[1],\"allow_user\":[],\"allow_tag\":[],"
    "\"extra_party\":[],\"extra_user\":[],\"extra_tag\":[]}";
static const char *const PERMS =
    "[{\"name\":\"contact:base:base\",\"expires_at\":0}]";

static unsigned long long Rng = 0x9e3779b97f4a7c15ULL;

static long
below(long n)
{
    Rng ^= Rng << 13;
    Rng ^= Rng >> 7;
    Rng ^= Rng << 17;
    return (long)(Rng % (unsigned long long)n);
}

static long long
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static size_t
heap_used(void)
{
    struct mallinfo2 m = mallinfo2();

    return m.uordblks + m.hblkhd;
}

/* A string reply (owned by its array: freeReplyObject frees both). */
static redisReply *
str_reply(const char *s)
{
    redisReply *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->type = REDIS_REPLY_STRING;
    r->len = strlen(s);
    r->str = malloc(r->len + 1);
    if (r->str == NULL) {
        free(r);
        return NULL;
    }
    memcpy(r->str, s, r->len + 1);
    return r;
}

static redisReply *
array_reply(size_t n)
{
    redisReply *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = n ? calloc(n, sizeof(*r->element)) : NULL;
    if (n && r->element == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

/* The four HGETALL replies of a tenant of m members in d departments, as
 * the tenant load hands them to record_tenant_decode; NULL when out of
 * memory. */
static redisReply *
tenant_reply(long m, long d)
{
    redisReply *r = array_reply(4), *h;
    char a[32], b[64];
    long i, k, n;
    int bad = r == NULL;

    if (!bad) {
        h = r->element[0] = array_reply(6);
        bad = h == NULL;
        if (!bad) {
            h->element[0] = str_reply("status");
            h->element[1] = str_reply("active");
            h->element[2] = str_reply("permissions");
            h->element[3] = str_reply(PERMS);
            h->element[4] = str_reply("privilege");
            h->element[5] = str_reply(PRIV);
        }
    }
    if (!bad) {
        h = r->element[1] = array_reply((size_t)d * 2);
        for (i = 0; h != NULL && i < d; i++) {
            snprintf(a, sizeof(a), "%ld", i + 1);
            snprintf(b, sizeof(b), "%ld", i == 0 ? 0 : 1 + below(i));
            h->element[2 * i] = str_reply(a);
            h->element[2 * i + 1] = str_reply(b);
        }
        bad = h == NULL;
    }
    if (!bad) {
        h = r->element[2] = array_reply((size_t)m * 2);
        for (i = 0; h != NULL && i < m; i++) {
            size_t o = 0;

            n = below(10) < 7 ? 1 : below(10) < 9 ? 2 : 3;
            for (k = 0; k < n; k++)
                o += (size_t)snprintf(b + o, sizeof(b) - o, "%s%ld",
                                      k ? "," : "", 1 + below(d));
            snprintf(a, sizeof(a), "u%05ld", i + 1);
            h->element[2 * i] = str_reply(a);
            h->element[2 * i + 1] = str_reply(b);
        }
        bad = h == NULL;
    }
    if (!bad)
        bad = (r->element[3] = array_reply(0)) == NULL;
    if (bad && r != NULL) {
        freeReplyObject(r);
        r = NULL;
    }
    return r;
}

static int
measure(long m, long d)
{
    struct record_tenant *t = NULL;
    redisReply *r = tenant_reply(m, d);
    size_t before, after;
    long long t0, t1;
    enum brk_err err;

    if (r == NULL) {
        fprintf(stderr, "bench_tenant_mem: out of memory\n");
        return 1;
    }
    malloc_trim(0);
    before = heap_used();
    t0 = now_us();
    err = record_tenant_decode(r, (long long)time(NULL), &t);
    t1 = now_us();
    after = heap_used();
    freeReplyObject(r);
    if (err) {
        fprintf(stderr, "bench_tenant_mem: decode: %s\n", brk_strerror(err));
        return 1;
    }
    printf("BENCH members=%ld departments=%ld heap_bytes=%zu per_member=%.0f "
           "decode_ms=%.1f\n",
           m, d, after - before, (double)(after - before) / (double)m,
           (double)(t1 - t0) / 1000.0);
    record_tenant_unref(t);
    return 0;
}

int
main(int argc, char **argv)
{
    static const char *const dflt[] = {"20:3", "110:7", "200:13",
                                       "100000:5000"};
    const char *const *sizes = (const char *const *)argv + 1;
    int i, n = argc - 1, rc = 0;

    json_set_alloc_funcs(brk_malloc, brk_free);
    if (n == 0) {
        sizes = dflt;
        n = (int)(sizeof(dflt) / sizeof(dflt[0]));
    }
    for (i = 0; i < n && rc == 0; i++) {
        char *end;
        long m = strtol(sizes[i], &end, 10), d;

        d = *end == ':' ? strtol(end + 1, &end, 10) : 0;
        if (*end != '\0' || m < 1 || m > MAX_MEMBERS || d < 1 ||
            d > MAX_DEPARTMENTS) {
            fprintf(stderr, "usage: bench_tenant_mem [MEMBERS:DEPARTMENTS "
                            "...]\n");
            return 2;
        }
        rc = measure(m, d);
    }
    return rc;
}
