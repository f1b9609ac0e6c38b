/*
 * What the audit trail's Redis side costs the broker's CPU: batches of
 * request-shaped entries (audit_append, then the flush that sends the
 * batch) through the store to an embedded redis-server, all answered.
 * Prints the process's own CPU time per batch (the redis-server child is
 * not counted), then what Redis spent: its INFO commandstats for XADD,
 * EVALSHA and EVAL (an XADD run inside a script is counted both in XADD
 * and in the script's own time) and its own CPU time per entry (INFO cpu:
 * reading, parsing and replying included). Not part of `make test`.
 *
 *   bench_audit [BATCHES [ENTRIES | LO-HI]]
 *
 * Defaults: 20000 batches of 8 entries; LO-HI makes batches of LO, LO+1,
 * .. HI entries in turn. Two lines:
 * "BENCH batches=B entries=E cpu_us_per_batch=C wall_s=W" and
 * "REDIS xadd=N/U evalsha=N/U eval=N/U cmd_us_per_entry=X
 * cpu_us_per_entry=Y" (N calls taking U µs in all; X: the µs of the
 * commands the broker sent, per entry).
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

struct redis_stats {
    long long calls[3], usec[3]; /* xadd, evalsha, eval */
    double cpu_s;                /* used_cpu_sys + used_cpu_user */
};

static const char *const Cmds[3] = {"xadd", "evalsha", "eval"};

/* A number after needle in text; 0 when absent. */
static double
info_num(const char *text, const char *needle)
{
    const char *p = strstr(text, needle);

    return p != NULL ? strtod(p + strlen(needle), NULL) : 0;
}

/* Redis's command statistics and CPU time so far; -1 on failure. With
 * reset, its command statistics are zeroed first. */
static int
redis_stats(const char *sock, int reset, struct redis_stats *st)
{
    redisContext *c = redisConnectUnix(sock);
    redisReply *r = NULL;
    char needle[64];
    int i, rc = -1;

    if (c == NULL || c->err)
        goto out;
    if (reset) {
        r = redisCommand(c, "CONFIG RESETSTAT");
        freeReplyObject(r);
    }
    r = redisCommand(c, "INFO all");
    if (r == NULL || r->type != REDIS_REPLY_STRING)
        goto out;
    for (i = 0; i < 3; i++) {
        snprintf(needle, sizeof(needle), "cmdstat_%s:calls=", Cmds[i]);
        st->calls[i] = (long long)info_num(r->str, needle);
        snprintf(needle, sizeof(needle), "cmdstat_%s:", Cmds[i]);
        /* usec= follows calls= on the same line */
        st->usec[i] = strstr(r->str, needle) != NULL
                          ? (long long)info_num(strstr(r->str, needle), "usec=")
                          : 0;
    }
    st->cpu_s =
        info_num(r->str, "used_cpu_sys:") + info_num(r->str, "used_cpu_user:");
    rc = 0;
out:
    freeReplyObject(r);
    if (c != NULL)
        redisFree(c);
    return rc;
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
    char *end = NULL;
    long lo = argc > 2 ? strtol(argv[2], &end, 10) : 8, hi = lo;
    char dir[] = "/tmp/bench-audit.XXXXXX";
    struct brk_errinfo info = {"", 0, -1};
    struct redis_embed *re = NULL;
    struct event_base *base = NULL;
    struct store *st = NULL;
    struct audit *a = NULL;
    char *url = NULL;
    struct redis_stats r0, r1;
    const char *sock;
    long long c0, w0, want, deadline, cmd_us;
    long b, e, n = 0;
    int rc = 1;

    if (end != NULL && *end == '-')
        hi = strtol(end + 1, NULL, 10);
    if (batches <= 0 || lo <= 0 || hi < lo || hi > AUDIT_BATCH_MAX)
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
        audit_new(base, st, "b:", batches * hi + 1, "", &a) != BRK_OK)
        goto out;
    sock = url + strlen("unix://");
    if (redis_stats(sock, 1, &r0) != 0)
        goto out;
    c0 = cpu_us();
    w0 = wall_us();
    for (b = 0; b < batches; b++) {
        /* one loop turn's entries, then the turn ends: the flush runs */
        for (e = lo + b % (hi - lo + 1); e > 0; e--)
            append_request(a, n++);
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    /* every batch answered */
    want = n;
    deadline = wall_us() + 60000000;
    while (xlen(sock) < want && wall_us() < deadline) {
        struct timeval tv = {0, 50000};

        /* the replies, then a look at the stream now and then */
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    if (xlen(sock) < want) {
        fprintf(stderr, "bench_audit: entries lost\n");
        goto out;
    }
    printf("BENCH batches=%ld entries=%ld cpu_us_per_batch=%.2f wall_s=%.2f\n",
           batches, n, (double)(cpu_us() - c0) / (double)batches,
           (double)(wall_us() - w0) / 1e6);
    if (redis_stats(sock, 0, &r1) != 0)
        goto out;
    /* what the broker sent: the scripts (their XADDs inside them), or
     * the XADDs themselves when no script ran */
    cmd_us = r1.usec[1] + r1.usec[2];
    if (r1.calls[1] + r1.calls[2] == 0)
        cmd_us = r1.usec[0];
    printf("REDIS xadd=%lld/%lld evalsha=%lld/%lld eval=%lld/%lld "
           "cmd_us_per_entry=%.2f cpu_us_per_entry=%.2f\n",
           r1.calls[0], r1.usec[0], r1.calls[1], r1.usec[1], r1.calls[2],
           r1.usec[2], (double)cmd_us / (double)n,
           (r1.cpu_s - r0.cpu_s) * 1e6 / (double)n);
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
