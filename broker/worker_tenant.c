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
 * tenant handed to delivery_route never changes under it. Bounded:
 * WTEN_MAX tenants and about WTEN_MAX_BYTES, least recently used out
 * first; a Redis reconnect forgets them all (worker_tenants_clear).
 */

#include "tenant_load.h"
#include "worker_int.h"

#define WTEN_MAX       32
#define WTEN_MAX_BYTES ((size_t)256 << 20)
#define WTEN_ID_MAX    (RECORD_ID_MAX + 1)

struct wten {
    struct wten *prev, *next;
    char suite[WTEN_ID_MAX], corp[WTEN_ID_MAX];
    struct record_tenant *t; /* one reference */
    size_t bytes;
};

struct worker_tenants {
    struct wten *head, *tail; /* most recently used first */
    size_t n, bytes;
    unsigned long epoch; /* cleared this many times */
};

/* A load in flight; a clear meanwhile means its result is not kept. */
struct wload {
    struct job *j;
    unsigned long epoch;
};

enum brk_err
worker_tenants_new(struct worker_tenants **out)
{
    struct worker_tenants *c = brk_calloc(1, sizeof(*c));

    if (c == NULL)
        return BRK_ERR_NOMEM;
    *out = c;
    return BRK_OK;
}

static void
wten_unlink(struct worker_tenants *c, struct wten *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void
wten_drop(struct worker_tenants *c, struct wten *e)
{
    wten_unlink(c, e);
    c->n--;
    c->bytes -= e->bytes;
    record_tenant_unref(e->t);
    brk_free(e);
}

void
worker_tenants_clear(struct worker_tenants *c)
{
    if (c == NULL)
        return;
    while (c->head != NULL)
        wten_drop(c, c->head);
    c->epoch++;
}

void
worker_tenants_free(struct worker_tenants *c)
{
    worker_tenants_clear(c);
    brk_free(c);
}

static struct wten *
wten_find(struct worker_tenants *c, const char *suite, const char *corp)
{
    struct wten *e;

    for (e = c->head; e != NULL; e = e->next)
        if (strcmp(e->corp, corp) == 0 && strcmp(e->suite, suite) == 0)
            return e;
    return NULL;
}

static void
wten_touch(struct worker_tenants *c, struct wten *e)
{
    if (c->head == e)
        return;
    wten_unlink(c, e);
    e->next = c->head;
    if (c->head != NULL)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
}

/* Keep t (a reference is taken) as the copy of (suite, corp); none kept
 * when t is NULL, not active, or alone past the byte bound. */
static void
wten_keep(struct worker_tenants *c, const char *suite, const char *corp,
          struct record_tenant *t)
{
    struct wten *e = wten_find(c, suite, corp);
    size_t bytes;

    if (e != NULL)
        wten_drop(c, e);
    if (t == NULL || !t->active || t->gen == 0 ||
        strlen(suite) >= sizeof(e->suite) || strlen(corp) >= sizeof(e->corp))
        return;
    bytes = record_tenant_bytes(t);
    if (bytes > WTEN_MAX_BYTES)
        return;
    e = brk_calloc(1, sizeof(*e));
    if (e == NULL)
        return; /* only a copy not kept */
    snprintf(e->suite, sizeof(e->suite), "%s", suite);
    snprintf(e->corp, sizeof(e->corp), "%s", corp);
    e->t = record_tenant_ref(t);
    e->bytes = bytes;
    e->next = c->head;
    if (c->head != NULL)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
    c->n++;
    c->bytes += bytes;
    while (c->tail != NULL && c->tail != e &&
           (c->n > WTEN_MAX || c->bytes > WTEN_MAX_BYTES))
        wten_drop(c, c->tail);
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
        wten_keep(c, worker_suite_id(j), j->corp, t);
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
    struct wten *e = wten_find(c, worker_suite_id(j), j->corp);
    struct wload *l;
    enum brk_err err;

    l = brk_calloc(1, sizeof(*l));
    if (l == NULL) {
        worker_job_fail(j, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    l->j = j;
    l->epoch = c->epoch;
    if (e != NULL)
        wten_touch(c, e);
    j->after_tenant = next;
    err = tenant_load_start(j->w->st, worker_prefix(j), worker_suite_id(j),
                            j->corp, e ? e->t : NULL, on_loaded, l);
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
    struct wten *e = wten_find(c, worker_suite_id(j), j->corp);
    enum brk_err err;

    if (e == NULL)
        return -1;
    err = record_tenant_apply(e->t, r, worker_wall_s());
    if (err) {
        if (err != BRK_ERR_NOTFOUND)
            log_warn("event %s: the change of corp %s is not applied to the "
                     "tenant kept (%s); it is read again",
                     j->id, j->corp, brk_strerror(err));
        wten_drop(c, e);
        return -1;
    }
    wten_touch(c, e);
    count_read("applied");
    record_tenant_unref(j->ten);
    j->ten = record_tenant_ref(e->t);
    j->ten_loaded = 1;
    return 0;
}

size_t
worker_tenants_count(const struct worker_tenants *c)
{
    return c ? c->n : 0;
}
