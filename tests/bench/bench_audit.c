/*
 * What the audit trail's Redis side costs the broker's CPU: batches of
 * request-shaped entries (audit_append, then the flush that sends the
 * batch as one audit_append script) through the store to an embedded
 * redis-server, all answered. Prints the process's own CPU time per
 * batch (the redis-server child is not counted). Not part of `make test`.
 *
 *   bench_audit [BATCHES [ENTRIES]]
 *
 * Defaults: 20000 batches of 8 entries. One line:
 * "BENCH batches=B entries=E cpu_us_per_batch=C wall_s=W".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "audit.h"
#include "log.h"
#include "metrics.h"
#include "redis_embed.h"
#include "store.h"

static long long
cpu_us(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
           ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static long long
wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One entry the way the service API writes one per request. */
static void
append_request(struct audit *a, long n)
{
    char id[24], at[24];
    const char *kv[] = {"type",     "request",
                        "req",      id,
                        "service",  "bench-service",
                        "suite",    "wwdemo0000suite01",
                        "corpid",   "wwmockcorp0001",
                        "api",      "user/get",
                        "decision", "allowed",
                        "status",   "200",
                        "errcode",  "0",
                        "fields",   "userid,name,department,position",
                        "removed",  "mobile,email,address",
                        "at",       at};

    snprintf(id, sizeof(id), "r%016lx", n);
    snprintf(at, sizeof(at), "%lld", (long long)time(NULL));
    audit_append(a, id, kv, sizeof(kv) / sizeof(kv[0]));
}

/* The stream's length, through a connection of our own. */
static long long
xlen(const char *sock)
{
    redisContext *c = redisConnectUnix(sock);
    redisReply *r;
    long long n = -1;

    if (c == NULL || c->err)
        goto out;
    r = redisCommand(c, "XLEN b:audit");
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        n = r->integer;
    freeReplyObject(r);
out:
    if (c != NULL)
        redisFree(c);
    return n;
}

int
main(int argc, char **argv)
{
    long batches = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
    long entries = argc > 2 ? strtol(argv[2], NULL, 10) : 8;
    char dir[] = "/tmp/bench-audit.XXXXXX";
    struct brk_errinfo info = {"", 0, -1};
    struct redis_embed *re = NULL;
    struct event_base *base = NULL;
    struct store *st = NULL;
    struct audit *a = NULL;
    char *url = NULL;
    long long c0, w0, want, deadline;
    long b, e, n = 0;
    int rc = 1;

    if (batches <= 0 || entries <= 0 || entries > AUDIT_BATCH_MAX)
        return 2;
    log_init(LOG_LVL_ERROR, 0);
    if (mkdtemp(dir) == NULL ||
        redis_embed_start(dir, 30000, &re, &url, &info) != BRK_OK) {
        fprintf(stderr, "bench_audit: no redis-server: %s\n", info.msg);
        goto out;
    }
    base = event_base_new();
    if (base == NULL || store_new(base, url, 5000, &st) != BRK_OK)
        goto out;
    deadline = wall_us() + 10000000;
    while (!store_is_up(st) && wall_us() < deadline)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    if (!store_is_up(st) ||
        audit_new(base, st, "b:", batches * entries + 1, "", &a) != BRK_OK)
        goto out;
    c0 = cpu_us();
    w0 = wall_us();
    for (b = 0; b < batches; b++) {
        /* one loop turn's entries, then the turn ends: the flush runs */
        for (e = 0; e < entries; e++)
            append_request(a, n++);
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    /* every batch answered */
    want = batches * entries;
    deadline = wall_us() + 60000000;
    while (xlen(url + strlen("unix://")) < want && wall_us() < deadline) {
        struct timeval tv = {0, 50000};

        /* the replies, then a look at the stream now and then */
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    if (xlen(url + strlen("unix://")) < want) {
        fprintf(stderr, "bench_audit: entries lost\n");
        goto out;
    }
    printf("BENCH batches=%ld entries=%ld cpu_us_per_batch=%.2f wall_s=%.2f\n",
           batches, entries, (double)(cpu_us() - c0) / (double)batches,
           (double)(wall_us() - w0) / 1e6);
    rc = 0;
out:
    audit_free(a);
    store_free(st);
    if (base != NULL)
        event_base_free(base);
    redis_embed_stop(re);
    brk_free(url);
    return rc;
}
