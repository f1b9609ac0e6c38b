/*
 * The event workers' tenants: the tenants whose events were worked last,
 * kept decoded, so a stream of one tenant's directory events does not
 * read and decode its whole directory for each (see worker.c for the
 * engine). The chains:
 *   worker_load_tenant -> tenant_load_start (a copy in hand: one HMGET
 *     of its generation; moved or none: the whole tenant) -> on_loaded ->
 *     the job's next step
 *   contact_apply's reply -> worker_tenant_apply: record_tenant_apply on
 *     the copy at the generation before the change, which becomes the
 *     job's tenant; else the copy is dropped and worker_load_tenant reads
 *     the tenant
 * A copy is changed in place only while no job or delivery holds it, so a
 * tenant handed to delivery_route never changes under it. Kept in a
 * cache.h cache: WTEN_MAX tenants, counted against cache_max_bytes with
 * the service API's caches; a Redis reconnect forgets them all
 * (worker_tenants_clear).
 */

#include "cache.h"
#include "tenant_load.h"
#include "worker_int.h"

#define WTEN_MAX 32
/* A copy is revalidated on every use; the age only lets an idle one go. */
#define WTEN_MAX_AGE_MS (3600LL * 1000)

struct worker_tenants {
    struct cache *c; /* "suite corp" -> struct record_tenant (a reference) */
    unsigned long epoch; /* cleared this many times */
};

/* A load in flight; a clear meanwhile means its result is not kept. */
struct wload {
    struct job *j;
    unsigned long epoch;
};

static void
wten_free(void *v)
{
    record_tenant_unref(v);
}

static size_t
wten_size(const void *v)
{
    return record_tenant_bytes(v);
}

enum brk_err
worker_tenants_new(struct worker_tenants **out)
{
    struct worker_tenants *c = brk_calloc(1, sizeof(*c));

    if (c == NULL)
        return BRK_ERR_NOMEM;
    if (cache_new(WTEN_MAX, WTEN_MAX_AGE_MS, wten_free, &c->c) != BRK_OK) {
        brk_free(c);
        return BRK_ERR_NOMEM;
    }
    *out = c;
    return BRK_OK;
}

void
worker_tenants_set_budget(struct worker_tenants *c, struct cache_budget *b)
{
    cache_set_budget(c->c, b, wten_size);
}

void
worker_tenants_clear(struct worker_tenants *c)
{
    if (c == NULL)
        return;
    cache_clear(c->c);
    c->epoch++;
}

void
worker_tenants_free(struct worker_tenants *c)
{
    if (c == NULL)
        return;
    cache_free(c->c);
    brk_free(c);
}

/* The cache key of the job's tenant; 0, or -1 when too long to keep. */
static int
wten_key(const struct job *j, char *out, size_t len)
{
    int n = snprintf(out, len, "%s %s", worker_suite_id(j), j->corp);

    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static struct record_tenant *
wten_find(struct worker_tenants *c, const struct job *j)
{
    char key[2 * RECORD_ID_MAX + 2];

    if (wten_key(j, key, sizeof(key)))
        return NULL;
    return cache_get(c->c, key, brk_mono_ms());
}

static void
wten_drop(struct worker_tenants *c, const struct job *j)
{
    char key[2 * RECORD_ID_MAX + 2];

    if (!wten_key(j, key, sizeof(key)))
        cache_remove(c->c, key);
}

/* Keep t (a reference is taken) as the copy of the job's tenant; none
 * kept when t is NULL or not active, or past the byte budget. */
static void
wten_keep(struct worker_tenants *c, const struct job *j,
          struct record_tenant *t)
{
    char key[2 * RECORD_ID_MAX + 2];

    if (wten_key(j, key, sizeof(key)))
        return;
    if (t == NULL || !t->active || t->gen == 0) {
        cache_remove(c->c, key);
        return;
    }
    /* refused past the budget: only a copy not kept */
    if (cache_put(c->c, key, record_tenant_ref(t), brk_mono_ms()) != BRK_OK)
        log_debug("the tenant of corp %s is not kept: past the cache budget",
                  j->corp);
}

static void
count_read(const char *result)
{
    char labels[64];

    metrics_inc(METRICS_EVENT_TENANT_READS,
                metrics_labels(labels, sizeof(labels), "result", result, NULL));
}

static void
on_loaded(enum brk_err err, struct record_tenant *t, int renewed, void *arg)
{
    struct wload *l = arg;
    struct job *j = l->j;
    struct worker_tenants *c = j->w->tens;
    job_step *next = j->after_tenant;

    if (l->epoch == c->epoch && !err)
        wten_keep(c, j, t);
    brk_free(l);
    if (j->w->stopping && err == BRK_ERR_SHUTDOWN) {
        worker_job_end(j);
        return;
    }
    count_read(err ? "error" : renewed ? "current" : "read");
    j->after_tenant = NULL;
    record_tenant_unref(j->ten);
    j->ten = NULL;
    if (err == BRK_ERR_INVAL || err == BRK_ERR_TOOBIG) {
        worker_job_fail(j, err, 0, "the tenant's record does not decode: %s",
                        brk_strerror(err));
        return;
    }
    if (err) {
        worker_job_fail(j, err, 0, "the tenant is not read: %s",
                        brk_strerror(err));
        return;
    }
    j->ten = t; /* the callee's reference; NULL: no tenant */
    j->ten_loaded = 1;
    next(j);
}

/*
 * Read the tenant (grant, privilege, directory) into j->ten as it is now:
 * the copy kept when its generation is still the stored one, else read
 * whole. Then next(j).
 */
void
worker_load_tenant(struct job *j, job_step *next)
{
    struct worker_tenants *c = j->w->tens;
    struct record_tenant *copy = wten_find(c, j);
    struct wload *l;
    enum brk_err err;

    l = brk_calloc(1, sizeof(*l));
    if (l == NULL) {
        worker_job_fail(j, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    l->j = j;
    l->epoch = c->epoch;
    j->after_tenant = next;
    err = tenant_load_start(j->w->st, worker_prefix(j), worker_suite_id(j),
                            j->corp, copy, on_loaded, l);
    if (err) {
        brk_free(l);
        j->after_tenant = NULL;
        worker_job_fail(j, err, 0, "the tenant is not read: %s",
                        brk_strerror(err));
    }
}

/*
 * contact_apply answered r: apply it to the copy kept, which becomes
 * j->ten. 0 when it did; -1 when there is no such copy (any copy of the
 * tenant is dropped: it is of the generation before).
 */
int
worker_tenant_apply(struct job *j, const struct redisReply *r)
{
    struct worker_tenants *c = j->w->tens;
    struct record_tenant *t = wten_find(c, j);
    enum brk_err err;

    if (t == NULL)
        return -1;
    err = record_tenant_apply(t, r, worker_wall_s());
    if (err) {
        if (err != BRK_ERR_NOTFOUND)
            log_warn("event %s: the change of corp %s is not applied to the "
                     "tenant kept (%s); it is read again",
                     j->id, j->corp, brk_strerror(err));
        wten_drop(c, j);
        return -1;
    }
    count_read("applied");
    record_tenant_unref(j->ten);
    j->ten = record_tenant_ref(t);
    j->ten_loaded = 1;
    return 0;
}

size_t
worker_tenants_count(const struct worker_tenants *c)
{
    return c ? cache_count(c->c) : 0;
}
