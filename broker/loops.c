/*
 * The extra event-loop threads of `workers = N` (see loops.h). A loop is
 * built whole by the main thread before its thread starts, runs only on
 * its thread, and is freed by the main thread after it has joined, so no
 * part of it is ever touched by two threads. What the main thread has to
 * say arrives through the mailbox: a set of flags and values under the
 * loops' mutex, and an event made active from the main thread.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "audit.h"
#include "budget.h"
#include "config.h"
#include "httpd.h"
#include "internal_api.h"
#include "log.h"
#include "loops.h"
#include "proxy.h"
#include "store.h"
#include "suites.h"
#include "tokens.h"
#include "wecom_api.h"

/* What the mailbox carries. */
#define MAIL_KEYRING 0x1
#define MAIL_SCOPES  0x2
#define MAIL_REOPEN  0x4
#define MAIL_STOP    0x8

struct loops;

struct loop {
    struct loops *ls;
    unsigned id;
    pthread_t thread;
    int started;
    struct event_base *base;
    struct store *st;
    struct store *sub;
    struct suites *suites;
    struct wecom_api *wx;
    struct tokens *tok;
    struct budget *budget;
    struct audit *audit;
    struct proxy *proxy;
    struct httpd *http;
    struct internal_api api;
    struct event *mailbox;
    unsigned mail; /* MAIL_*, under ls->lock */
    /* the scope map generation this loop serves (atomic) */
    unsigned long scopes_gen;
};

struct loops {
    const struct config *cfg;
    long drain_ms;
    pthread_mutex_t lock;
    /* the latest values for the mailbox, under lock */
    const struct keyring *kr;
    const struct scope_map *scopes;
    unsigned long scopes_gen; /* also read atomically */
    char *audit_path;
    struct loop *loops;
    size_t n;
};

/*---- Change notices ----*/

/* Whatever the loop: the budget's pause, or a tenant or service change
 * (see loops.h). Cannot fail. */
void
loops_notice(struct tokens *tok, struct budget *b, struct proxy *p,
             const char *msg, size_t len)
{
    char suite[80], corp[80];
    const char *sp = memchr(msg, ' ', len);
    size_t blen = strlen(BUDGET_NOTICE_PREFIX);

    if (len >= blen && memcmp(msg, BUDGET_NOTICE_PREFIX, blen) == 0) {
        budget_notice(b, msg, len);
        return;
    }
    if (sp == NULL || (size_t)(sp - msg) >= sizeof(suite) ||
        len - (size_t)(sp - msg) - 1 >= sizeof(corp))
        return;
    memcpy(suite, msg, (size_t)(sp - msg));
    suite[sp - msg] = '\0';
    memcpy(corp, sp + 1, len - (size_t)(sp - msg) - 1);
    corp[len - (size_t)(sp - msg) - 1] = '\0';
    tokens_forget_tenant(tok, suite, corp);
    proxy_notice(p, msg, len);
}

static void
on_notice(const char *msg, size_t len, void *arg)
{
    struct loop *lp = arg;

    loops_notice(lp->tok, lp->budget, lp->proxy, msg, len);
}

/* Notices sent while this loop was not listening are lost: start clean. */
static void
on_sub_state(int up, void *arg)
{
    struct loop *lp = arg;

    (void)up;
    tokens_drop_cache(lp->tok);
    proxy_drop_caches(lp->proxy);
    budget_reset(lp->budget);
}

static void
on_store_state(int up, void *arg)
{
    struct loop *lp = arg;

    tokens_drop_cache(lp->tok);
    proxy_drop_caches(lp->proxy);
    if (up)
        suites_store_up(lp->suites);
    else
        suites_store_down(lp->suites);
}

/*---- The mailbox ----*/

static void
on_drained(void *arg)
{
    struct loop *lp = arg;

    event_base_loopexit(lp->base, NULL);
}

static void
on_mail(evutil_socket_t fd, short what, void *arg)
{
    struct loop *lp = arg;
    struct loops *ls = lp->ls;
    const struct keyring *kr;
    const struct scope_map *scopes;
    unsigned long gen;
    char *path = NULL;
    unsigned mail;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&ls->lock);
    mail = lp->mail;
    lp->mail = 0;
    kr = ls->kr;
    scopes = ls->scopes;
    gen = ls->scopes_gen;
    if ((mail & MAIL_REOPEN) && ls->audit_path != NULL)
        path = brk_strdup(ls->audit_path);
    pthread_mutex_unlock(&ls->lock);

    if (mail & MAIL_KEYRING) {
        suites_set_keyring(lp->suites, kr);
        tokens_set_keyring(lp->tok, kr);
        proxy_set_keyring(lp->proxy, kr);
    }
    if (mail & MAIL_SCOPES) {
        proxy_set_scopes(lp->proxy, scopes);
        /* from now on its requests start with the new map */
        __atomic_store_n(&lp->scopes_gen, gen, __ATOMIC_RELEASE);
    }
    if (mail & MAIL_REOPEN) {
        if (path == NULL)
            log_error("loop %u: out of memory reopening audit_file", lp->id);
        else if (audit_reopen(lp->audit, path) != BRK_OK)
            log_error("loop %u: audit_file %s not reopened", lp->id, path);
        brk_free(path);
    }
    if (mail & MAIL_STOP) {
        audit_set_window(lp->audit, 0);
        httpd_drain(lp->http, ls->drain_ms, on_drained, lp);
    }
}

/* Post mail to every loop. */
static void
post(struct loops *ls, unsigned mail)
{
    size_t i;

    for (i = 0; i < ls->n; i++)
        ls->loops[i].mail |= mail;
    for (i = 0; i < ls->n; i++)
        if (ls->loops[i].mailbox != NULL)
            event_active(ls->loops[i].mailbox, EV_READ, 0);
}

/*---- Building, running, freeing ----*/

static void
loop_free(struct loop *lp)
{
    /* the order of the main loop's teardown: every chain unwinds into
     * live objects */
    httpd_free(lp->http);
    proxy_free(lp->proxy);
    wecom_api_free(lp->wx);
    budget_free(lp->budget);
    store_free(lp->sub);
    store_free(lp->st);
    tokens_free(lp->tok);
    audit_free(lp->audit);
    suites_free(lp->suites);
    if (lp->mailbox != NULL)
        event_free(lp->mailbox);
    if (lp->base != NULL)
        event_base_free(lp->base);
    memset(lp, 0, sizeof(*lp));
}

/* Build loop lp serving fd (consumed). */
static enum brk_err
loop_build(struct loops *ls, struct loop *lp, const struct loops_opts *o,
           int fd)
{
    const struct config *cfg = o->cfg;
    struct wecom_api_opts api_opts;
    struct budget_opts budget_opts;
    enum brk_err err = BRK_ERR_NOMEM;

    lp->ls = ls;
    /* no batched epoll changes with several threads: see main.c */
    lp->base = event_base_new();
    if (lp->base == NULL)
        goto fail;
    lp->mailbox = event_new(lp->base, -1, 0, on_mail, lp);
    if (lp->mailbox == NULL)
        goto fail;
    err = store_new(lp->base, o->redis_url, o->redis_timeout_ms, &lp->st);
    if (!err)
        err = suites_new(cfg, o->kr, lp->st, &lp->suites);
    if (err)
        goto fail;
    memset(&api_opts, 0, sizeof(api_opts));
    api_opts.base = cfg->wecom_api_base;
    api_opts.timeout_ms = cfg->upstream_timeout_ms;
    api_opts.max_body = (size_t)cfg->upstream_max_body;
    api_opts.rate_per_key = 0;
    err = wecom_api_new(lp->base, &api_opts, &lp->wx);
    if (!err)
        err = tokens_new(lp->base, cfg, o->kr, lp->st, lp->suites, lp->wx,
                         &lp->tok);
    if (err)
        goto fail;
    memset(&budget_opts, 0, sizeof(budget_opts));
    budget_opts.key_prefix = cfg->key_prefix;
    budget_opts.channel = o->channel;
    budget_opts.per_corp = cfg->upstream_rate_per_corp;
    budget_opts.per_corp_hour = cfg->upstream_rate_per_corp_hour;
    budget_opts.per_api = cfg->upstream_rate_per_api;
    budget_opts.per_api_hour = cfg->upstream_rate_per_api_hour;
    err = budget_new(lp->base, lp->st, &budget_opts, &lp->budget);
    if (err)
        goto fail;
    /* an unwritable file is logged and retried, as on the main loop */
    err = audit_new(lp->base, lp->st, cfg->key_prefix, cfg->audit_max_len,
                    cfg->audit_file, &lp->audit);
    if (err && err != BRK_ERR_IO)
        goto fail;
    err = proxy_new(lp->base, cfg, o->kr, lp->st, lp->suites, lp->tok, lp->wx,
                    &lp->proxy);
    if (err)
        goto fail;
    proxy_set_budget(lp->proxy, lp->budget);
    proxy_set_audit(lp->proxy, lp->audit);
    proxy_set_scopes(lp->proxy, o->scopes);
    proxy_set_cache_budget(lp->proxy, o->cache_budget);
    err = store_new_subscriber(lp->base, o->redis_url, o->channel, on_notice,
                               lp, &lp->sub);
    if (err)
        goto fail;
    store_set_state_cb(lp->sub, on_sub_state, lp);
    store_set_state_cb(lp->st, on_store_state, lp);
    lp->api.st = lp->st;
    lp->api.suites = lp->suites;
    lp->api.proxy = lp->proxy;
    lp->api.audit = lp->audit;
    err = httpd_new(lp->base, &lp->http);
    if (err)
        goto fail;
    err = httpd_listen_fd(lp->http, "internal", fd, ls->n + 1, o->max_body,
                          internal_api_handle, &lp->api);
    fd = -1;
    if (err)
        goto fail;
    return BRK_OK;
fail:
    if (fd >= 0)
        close(fd);
    loop_free(lp);
    return err ? err : BRK_ERR_NOMEM;
}

static void *
loop_run(void *arg)
{
    struct loop *lp = arg;

    log_debug("loop %u: serving", lp->id);
    event_base_dispatch(lp->base);
    log_debug("loop %u: stopped", lp->id);
    return NULL;
}

/*
 * Start the loops (see loops.h). The main thread must have called
 * evthread_use_pthreads() before making any event_base.
 */
enum brk_err
loops_start(const struct loops_opts *o, const int *fds, size_t n,
            struct loops **out)
{
    struct loops *ls = NULL;
    enum brk_err err = BRK_ERR_NOMEM;
    size_t i, next = 0; /* fds[next..n) not yet consumed */

    ls = brk_calloc(1, sizeof(*ls));
    if (ls == NULL)
        goto fail;
    ls->loops = brk_calloc(n ? n : 1, sizeof(*ls->loops));
    if (ls->loops == NULL)
        goto fail;
    pthread_mutex_init(&ls->lock, NULL);
    ls->cfg = o->cfg;
    ls->drain_ms = o->drain_ms;
    ls->kr = o->kr;
    ls->scopes = o->scopes;
    ls->n = n;
    for (i = 0; i < n; i++) {
        next = i + 1;
        err = loop_build(ls, &ls->loops[i], o, fds[i]);
        if (err)
            goto fail;
        ls->loops[i].id = (unsigned)i + 1;
    }
    for (i = 0; i < n; i++) {
        if (pthread_create(&ls->loops[i].thread, NULL, loop_run,
                           &ls->loops[i]) != 0) {
            log_error("cannot start event loop %zu", i + 1);
            err = BRK_ERR_IO;
            goto fail;
        }
        ls->loops[i].started = 1;
    }
    *out = ls;
    return BRK_OK;
fail:
    for (i = next; i < n; i++)
        close(fds[i]);
    /* the loops that run stop; the rest were never started */
    if (ls != NULL && ls->loops != NULL)
        loops_free(ls);
    else if (ls != NULL)
        brk_free(ls);
    return err;
}

void
loops_stop(struct loops *l)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    post(l, MAIL_STOP);
    pthread_mutex_unlock(&l->lock);
}

void
loops_free(struct loops *l)
{
    size_t i;

    if (l == NULL)
        return;
    loops_stop(l);
    for (i = 0; i < l->n; i++)
        if (l->loops[i].started)
            pthread_join(l->loops[i].thread, NULL);
    /* every thread is gone: what they held is the main thread's now */
    for (i = 0; i < l->n; i++)
        if (l->loops[i].base != NULL)
            loop_free(&l->loops[i]);
    pthread_mutex_destroy(&l->lock);
    brk_free(l->audit_path);
    brk_free(l->loops);
    brk_free(l);
}

void
loops_set_keyring(struct loops *l, const struct keyring *kr)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    l->kr = kr;
    post(l, MAIL_KEYRING);
    pthread_mutex_unlock(&l->lock);
}

void
loops_set_scopes(struct loops *l, const struct scope_map *m)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    l->scopes = m;
    __atomic_add_fetch(&l->scopes_gen, 1, __ATOMIC_RELEASE);
    post(l, MAIL_SCOPES);
    pthread_mutex_unlock(&l->lock);
}

int
loops_scopes_idle(const struct loops *l)
{
    unsigned long gen;
    size_t i;

    if (l == NULL)
        return 1;
    gen = __atomic_load_n(&l->scopes_gen, __ATOMIC_ACQUIRE);
    for (i = 0; i < l->n; i++) {
        /* switched first, then nothing open: what was open with an
         * older map has ended */
        if (__atomic_load_n(&l->loops[i].scopes_gen, __ATOMIC_ACQUIRE) != gen ||
            proxy_inflight(l->loops[i].proxy) != 0)
            return 0;
    }
    return 1;
}

void
loops_audit_reopen(struct loops *l, const char *path)
{
    char *p;

    if (l == NULL)
        return;
    p = brk_strdup(path != NULL ? path : "");
    pthread_mutex_lock(&l->lock);
    if (p == NULL) {
        pthread_mutex_unlock(&l->lock);
        log_error("reload: out of memory; the loops keep their audit_file");
        return;
    }
    brk_free(l->audit_path);
    l->audit_path = p;
    post(l, MAIL_REOPEN);
    pthread_mutex_unlock(&l->lock);
}
