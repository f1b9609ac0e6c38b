/*
 * Metrics registry and Prometheus text rendering (see metrics.h). Series
 * live in a fixed-size open-addressing table: no allocation after the
 * first observation of a series, and a hard cap on cardinality. The
 * table names the series; a slot, once used, keeps its name until
 * metrics_reset, so a lookup finds it without the lock. What is added
 * goes into the calling thread's shard (values by slot, its own mutex),
 * so the event loops of a process (workers = N) never take a lock in
 * common on the request path; a new series, a set gauge and a scrape
 * take the table's lock, then the shards' (always in that order). A
 * thread that ends folds its shard into the table.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"

#define MAX_SERIES 4096 /* power of two */
#define LABELS_MAX 192

enum family_type { T_COUNTER, T_GAUGE, T_HISTOGRAM };

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,   0.25,   0.5,   1,    2.5,   5};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

static const struct {
    const char *name;
    enum family_type type;
    const char *help;
} families[METRICS__COUNT] = {
    [METRICS_HTTP_REQUESTS] = {"wecom_broker_http_requests_total", T_COUNTER,
                               "HTTP requests answered, by listener, route "
                               "and status."},
    [METRICS_HTTP_SECONDS] = {"wecom_broker_http_request_duration_seconds",
                              T_HISTOGRAM,
                              "Time from request to reply, by listener and "
                              "route."},
    [METRICS_CALLBACKS] = {"wecom_broker_callbacks_total", T_COUNTER,
                           "Verified WeCom callbacks, by suite, InfoType and "
                           "result (queued, duplicate, stored, stale, "
                           "ignored)."},
    [METRICS_CALLBACK_REJECTIONS] = {"wecom_broker_callback_rejections_total",
                                     T_COUNTER,
                                     "Callbacks refused, by suite and "
                                     "reason."},
    [METRICS_CALLBACK_ACK_SECONDS] = {"wecom_broker_callback_ack_seconds",
                                      T_HISTOGRAM,
                                      "Time to acknowledge a POST callback "
                                      "after making it durable."},
    [METRICS_SUITE_TICKETS] = {"wecom_broker_suite_ticket_updates_total",
                               T_COUNTER,
                               "suite_ticket pushes, by suite and result "
                               "(stored, stale)."},
    [METRICS_REDIS_UP] = {"wecom_broker_redis_up", T_GAUGE,
                          "1 while the Redis connection answers."},
    [METRICS_REDIS_CONNECTS] = {"wecom_broker_redis_connects_total", T_COUNTER,
                                "Redis connections established."},
    [METRICS_REDIS_ERRORS] = {"wecom_broker_redis_errors_total", T_COUNTER,
                              "Redis commands that failed, by kind."},
    [METRICS_INFLIGHT] = {"wecom_broker_http_in_flight", T_GAUGE,
                          "Requests being handled, by listener."},
    [METRICS_TOKEN_REFRESHES] = {"wecom_broker_token_refreshes_total",
                                 T_COUNTER,
                                 "Upstream token fetches, by kind (suite, "
                                 "corp) and result."},
    [METRICS_UPSTREAM_CALLS] = {"wecom_broker_upstream_calls_total", T_COUNTER,
                                "WeCom API calls, by API and result."},
    [METRICS_EVENTS] = {"wecom_broker_events_total", T_COUNTER,
                        "Queued callbacks processed by the workers, by "
                        "suite, InfoType and result."},
    [METRICS_LOST_AUTHORIZATIONS] = {"wecom_broker_lost_authorizations_total",
                                     T_COUNTER,
                                     "AuthCodes that could not be exchanged "
                                     "and had no stored result (40078)."},
    [METRICS_API_REQUESTS] = {"wecom_broker_api_requests_total", T_COUNTER,
                              "Service API replies, by endpoint and "
                              "errcode."},
    [METRICS_FIELDS_STRIPPED] = {"wecom_broker_fields_stripped_total",
                                 T_COUNTER,
                                 "Keys removed from WeCom replies by the "
                                 "filter."},
    [METRICS_RECORDS_DROPPED] = {"wecom_broker_records_dropped_total",
                                 T_COUNTER,
                                 "Records removed from WeCom replies for "
                                 "the visible range."},
    [METRICS_TICKET_AGE] = {"wecom_broker_suite_ticket_age_seconds", T_GAUGE,
                            "Age of each suite's newest suite_ticket (-1: "
                            "none stored; WeCom pushes one every 10 "
                            "minutes)."},
    [METRICS_BUDGET_GRANTS] = {"wecom_broker_budget_grants_total", T_COUNTER,
                               "WeCom calls the shared upstream budget "
                               "allowed, by class (service, background)."},
    [METRICS_BUDGET_REFUSALS] = {"wecom_broker_budget_refusals_total",
                                 T_COUNTER,
                                 "WeCom calls refused before reaching WeCom, "
                                 "by class and reason (corp_minute, "
                                 "corp_hour, api_minute, api_hour, paused, "
                                 "busy, unavailable)."},
    [METRICS_BUDGET_PAUSES] = {"wecom_broker_budget_pauses_total", T_COUNTER,
                               "45009 answers from WeCom, each pausing its "
                               "(tenant, API) on every instance, by API."},
    [METRICS_BUDGET_CONCURRENCY] = {"wecom_broker_budget_concurrency_cuts_"
                                    "total",
                                    T_COUNTER,
                                    "45033 answers from WeCom, each halving "
                                    "the calls its (tenant, API) may have "
                                    "under way here, by API."},
    [METRICS_BUDGET_LEASES] = {"wecom_broker_budget_leases_total", T_COUNTER,
                               "Blocks of calls asked of the shared budget "
                               "in Redis, by scope (corp, api) and result "
                               "(granted, spent, paused, error)."},
    [METRICS_AUDIT_WRITES] = {"wecom_broker_audit_writes_total", T_COUNTER,
                              "Audit entries written, by sink (redis, file) "
                              "and result (ok, error)."},
    [METRICS_REDIS_WAITS] = {"wecom_broker_redis_waits_total", T_COUNTER,
                             "WAITs for replicas before a callback is "
                             "acknowledged, by result (ok, short, error)."},
    [METRICS_REDIS_REPLICAS] = {"wecom_broker_redis_replicas", T_GAUGE,
                                "Replicas connected to the primary (INFO "
                                "replication), polled with "
                                "redis_min_replica_acks set; -1 unknown."},
    [METRICS_DELIVERIES] = {"wecom_broker_deliveries_total", T_COUNTER,
                            "Event delivery attempts to services, by service "
                            "and result (delivered, retry, dead_letter, "
                            "dropped)."},
    [METRICS_DELIVERY_SECONDS] = {"wecom_broker_delivery_seconds", T_HISTOGRAM,
                                  "Time from the event's acknowledgement to "
                                  "WeCom to its receipt by the service, by "
                                  "service."},
    [METRICS_DELIVERY_BACKLOG] = {"wecom_broker_delivery_backlog", T_GAUGE,
                                  "Deliveries queued for a service, dead "
                                  "letters not counted, by service."},
    [METRICS_DELIVERY_TENANT_READS] = {"wecom_broker_delivery_tenant_reads_"
                                       "total",
                                       T_COUNTER,
                                       "Tenants read and decoded for event "
                                       "delivery (the rest of the sends are "
                                       "served from the copies kept), by "
                                       "result (ok, error)."},
    [METRICS_EVENT_TENANT_READS] = {"wecom_broker_event_tenant_reads_total",
                                    T_COUNTER,
                                    "Tenants the event workers decided "
                                    "events with, by result: applied (a "
                                    "member's change applied to the copy "
                                    "kept), current (the copy kept, its "
                                    "generation checked), read (read "
                                    "whole), error."},
    [METRICS_DELIVERY_HEAD_READS] = {"wecom_broker_delivery_head_reads_total",
                                     T_COUNTER,
                                     "Reads of a (service, tenant) queue's "
                                     "next entries for sending, each of up "
                                     "to 16 entries; an acknowledgement "
                                     "that finds the next entry held reads "
                                     "none; by service."},
    [METRICS_WRITES] = {"wecom_broker_writes_total", T_COUNTER,
                        "Service writes, by endpoint, result (refused, "
                        "replayed, forwarded) and errcode."},
};

struct series {
    int used; /* read without the lock: atomic, set last */
    enum metrics_id id;
    char labels[LABELS_MAX];
    double value; /* counter/gauge value, histogram sum */
    unsigned long count;
    unsigned long bucket[NBUCKETS];
};

/* One thread's additions, by slot of the table. */
struct sval {
    double value;
    unsigned long count;
    unsigned long bucket[NBUCKETS];
};

struct shard {
    pthread_mutex_t mu;
    struct shard *next;
    struct sval v[MAX_SERIES];
};

static struct series table[MAX_SERIES];
static unsigned long dropped;
/* guards the table's naming, the set values, dropped and the shard list */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct shard *shards;
static pthread_key_t shard_key;
static pthread_once_t shard_once = PTHREAD_ONCE_INIT;
static int shard_key_ok;
static __thread struct shard *my_shard;

static unsigned
hash(enum metrics_id id, const char *labels)
{
    unsigned h = 2166136261u ^ (unsigned)id;

    for (; *labels; labels++)
        h = (h ^ (unsigned char)*labels) * 16777619u;
    return h;
}

static int
slot_used(const struct series *s)
{
    return __atomic_load_n(&s->used, __ATOMIC_ACQUIRE);
}

/* The slot of (id, labels), without the lock; -1 when not named yet. */
static long
find(enum metrics_id id, const char *labels, unsigned h)
{
    unsigned i, n;
    const struct series *s;

    for (n = 0; n < MAX_SERIES; n++) {
        i = (h + n) & (MAX_SERIES - 1);
        s = &table[i];
        if (!slot_used(s))
            return -1;
        if (s->id == id && strcmp(s->labels, labels) == 0)
            return (long)i;
    }
    return -1;
}

/* The slot of (id, labels), named now if need be; -1 (counted) when the
 * table is full. Called with the lock held. */
static long
lookup_locked(enum metrics_id id, const char *labels, unsigned h)
{
    unsigned i, n;
    struct series *s;

    for (n = 0; n < MAX_SERIES; n++) {
        i = (h + n) & (MAX_SERIES - 1);
        s = &table[i];
        if (!s->used) {
            s->id = id;
            memcpy(s->labels, labels, strlen(labels) + 1);
            __atomic_store_n(&s->used, 1, __ATOMIC_RELEASE);
            return (long)i;
        }
        if (s->id == id && strcmp(s->labels, labels) == 0)
            return (long)i;
    }
    dropped++;
    return -1;
}

/* The slot of a series; -1 when it cannot be stored (counted). */
static long
slot_of(enum metrics_id id, const char *labels)
{
    unsigned h;
    long i;

    if (labels == NULL)
        labels = "";
    if (strlen(labels) >= LABELS_MAX) {
        pthread_mutex_lock(&lock);
        dropped++;
        pthread_mutex_unlock(&lock);
        return -1;
    }
    h = hash(id, labels);
    i = find(id, labels, h);
    if (i >= 0)
        return i;
    pthread_mutex_lock(&lock);
    i = lookup_locked(id, labels, h);
    pthread_mutex_unlock(&lock);
    return i;
}

/* A thread's end: its additions go into the table, its shard away. */
static void
shard_retire(void *arg)
{
    struct shard *sh = arg, **pp;
    size_t i, b;

    pthread_mutex_lock(&lock);
    pthread_mutex_lock(&sh->mu);
    for (i = 0; i < MAX_SERIES; i++) {
        if (!table[i].used)
            continue;
        table[i].value += sh->v[i].value;
        table[i].count += sh->v[i].count;
        for (b = 0; b < NBUCKETS; b++)
            table[i].bucket[b] += sh->v[i].bucket[b];
    }
    for (pp = &shards; *pp != NULL; pp = &(*pp)->next)
        if (*pp == sh) {
            *pp = sh->next;
            break;
        }
    pthread_mutex_unlock(&sh->mu);
    pthread_mutex_unlock(&lock);
    pthread_mutex_destroy(&sh->mu);
    brk_free(sh);
    /* a later destructor of this thread may count again: a new shard */
    my_shard = NULL;
}

static void
shard_key_init(void)
{
    shard_key_ok = pthread_key_create(&shard_key, shard_retire) == 0;
}

/* This thread's shard, made on its first addition; NULL when out of
 * memory (the addition is then counted as dropped). */
static struct shard *
shard_get(void)
{
    struct shard *sh;

    if (my_shard != NULL)
        return my_shard;
    pthread_once(&shard_once, shard_key_init);
    sh = brk_calloc(1, sizeof(*sh));
    if (sh == NULL)
        return NULL;
    if (pthread_mutex_init(&sh->mu, NULL) != 0) {
        brk_free(sh);
        return NULL;
    }
    if (shard_key_ok)
        pthread_setspecific(shard_key, sh);
    pthread_mutex_lock(&lock);
    sh->next = shards;
    shards = sh;
    pthread_mutex_unlock(&lock);
    my_shard = sh;
    return sh;
}

/* The calling thread's additions to slot i, locked; NULL (counted as
 * dropped) without a shard. Unlock with shard_put. */
static struct sval *
shard_slot(long i)
{
    struct shard *sh;

    if (i < 0)
        return NULL;
    sh = shard_get();
    if (sh == NULL) {
        pthread_mutex_lock(&lock);
        dropped++;
        pthread_mutex_unlock(&lock);
        return NULL;
    }
    pthread_mutex_lock(&sh->mu);
    return &sh->v[i];
}

static void
shard_put(void)
{
    pthread_mutex_unlock(&my_shard->mu);
}

void
metrics_add(enum metrics_id id, const char *labels, double v)
{
    struct sval *x = shard_slot(slot_of(id, labels));

    if (x == NULL)
        return;
    x->value += v;
    shard_put();
}

void
metrics_inc(enum metrics_id id, const char *labels)
{
    metrics_add(id, labels, 1);
}

void
metrics_set(enum metrics_id id, const char *labels, double v)
{
    struct shard *sh;
    long i;

    if (labels == NULL)
        labels = "";
    pthread_mutex_lock(&lock);
    if (strlen(labels) >= LABELS_MAX) {
        dropped++;
        pthread_mutex_unlock(&lock);
        return;
    }
    i = lookup_locked(id, labels, hash(id, labels));
    if (i >= 0) {
        /* a set replaces what was added before it, in every thread */
        table[i].value = v;
        for (sh = shards; sh != NULL; sh = sh->next) {
            pthread_mutex_lock(&sh->mu);
            sh->v[i].value = 0;
            pthread_mutex_unlock(&sh->mu);
        }
    }
    pthread_mutex_unlock(&lock);
}

void
metrics_observe(enum metrics_id id, const char *labels, double v)
{
    struct sval *x = shard_slot(slot_of(id, labels));
    size_t i;

    if (x == NULL)
        return;
    x->value += v;
    x->count++;
    for (i = 0; i < NBUCKETS; i++)
        if (v <= buckets[i])
            x->bucket[i]++;
    shard_put();
}

const char *
metrics_labels(char *buf, size_t len, ...)
{
    va_list ap;
    const char *k, *v;
    size_t o = 0, kl;
    int first = 1;

    buf[0] = '\0';
    va_start(ap, len);
    while ((k = va_arg(ap, const char *)) != NULL) {
        v = va_arg(ap, const char *);
        if (v == NULL)
            v = "";
        kl = strlen(k);
        if (o + kl + 4 >= len)
            break;
        /* by hand, not snprintf: several label sets are made per request */
        if (!first)
            buf[o++] = ',';
        memcpy(buf + o, k, kl);
        o += kl;
        buf[o++] = '=';
        buf[o++] = '"';
        first = 0;
        for (; *v && o + 4 < len; v++) {
            if (*v == '"' || *v == '\\') {
                buf[o++] = '\\';
                buf[o++] = *v;
            } else if (*v == '\n') {
                buf[o++] = '\\';
                buf[o++] = 'n';
            } else {
                buf[o++] = *v;
            }
        }
        buf[o++] = '"';
        buf[o] = '\0';
    }
    va_end(ap);
    return buf;
}

static enum brk_err
render_series(struct dynbuf *out, const char *name, const struct series *s)
{
    const char *sep = s->labels[0] ? "," : "";
    enum brk_err err;
    size_t i;

    if (families[s->id].type != T_HISTOGRAM) {
        if (s->labels[0])
            return dynbuf_printf(out, "%s{%s} %.17g\n", name, s->labels,
                                 s->value);
        return dynbuf_printf(out, "%s %.17g\n", name, s->value);
    }
    for (i = 0; i < NBUCKETS; i++) {
        err = dynbuf_printf(out, "%s_bucket{%s%sle=\"%g\"} %lu\n", name,
                            s->labels, sep, buckets[i], s->bucket[i]);
        if (err)
            return err;
    }
    err = dynbuf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %lu\n", name,
                        s->labels, sep, s->count);
    if (!err)
        err = dynbuf_printf(out, "%s_sum%s%s%s %.17g\n%s_count%s%s%s %lu\n",
                            name, s->labels[0] ? "{" : "", s->labels,
                            s->labels[0] ? "}" : "", s->value, name,
                            s->labels[0] ? "{" : "", s->labels,
                            s->labels[0] ? "}" : "", s->count);
    return err;
}

/* Slot i as a scrape sees it: the table's values and every shard's.
 * Called with the lock and every shard's held. */
static void
merged(size_t i, struct series *out)
{
    const struct shard *sh;
    size_t b;

    *out = table[i];
    for (sh = shards; sh != NULL; sh = sh->next) {
        out->value += sh->v[i].value;
        out->count += sh->v[i].count;
        for (b = 0; b < NBUCKETS; b++)
            out->bucket[b] += sh->v[i].bucket[b];
    }
}

static void
shards_lock(int on)
{
    struct shard *sh;

    for (sh = shards; sh != NULL; sh = sh->next) {
        if (on)
            pthread_mutex_lock(&sh->mu);
        else
            pthread_mutex_unlock(&sh->mu);
    }
}

enum brk_err
metrics_render(struct dynbuf *out)
{
    static const char *const tnames[] = {"counter", "gauge", "histogram"};
    struct series s;
    enum brk_err err = BRK_OK;
    size_t f, i;

    pthread_mutex_lock(&lock);
    shards_lock(1);
    for (f = 0; f < METRICS__COUNT && !err; f++) {
        err = dynbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n",
                            families[f].name, families[f].help,
                            families[f].name, tnames[families[f].type]);
        for (i = 0; i < MAX_SERIES && !err; i++) {
            if (!table[i].used || table[i].id != f)
                continue;
            merged(i, &s);
            err = render_series(out, families[f].name, &s);
        }
    }
    shards_lock(0);
    if (!err)
        err = dynbuf_printf(out,
                            "# HELP wecom_broker_metrics_dropped_total "
                            "Observations lost to the series cap.\n"
                            "# TYPE wecom_broker_metrics_dropped_total "
                            "counter\nwecom_broker_metrics_dropped_total "
                            "%lu\n",
                            dropped);
    pthread_mutex_unlock(&lock);
    return err;
}

void
metrics_reset(void)
{
    struct shard *sh;

    pthread_mutex_lock(&lock);
    memset(table, 0, sizeof(table));
    dropped = 0;
    for (sh = shards; sh != NULL; sh = sh->next) {
        pthread_mutex_lock(&sh->mu);
        memset(sh->v, 0, sizeof(sh->v));
        pthread_mutex_unlock(&sh->mu);
    }
    pthread_mutex_unlock(&lock);
}
