/*
 * wecom-broker: process entry and wiring only. Loads the configuration and
 * keys, starts the embedded Redis when configured so, binds the listeners
 * and runs one libevent loop until SIGTERM/SIGINT, then drains. SIGHUP
 * re-reads the configuration and swaps in what can change at run time.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <hiredis/hiredis.h>

#include "browser.h"
#include "budget.h"
#include "cache.h"
#include "callback.h"
#include "config.h"
#include "delivery.h"
#include "httpd.h"
#include "audit.h"
#include "internal_api.h"
#include "keyring.h"
#include "keys.h"
#include "log.h"
#include "loops.h"
#include "metrics.h"
#include "multipart.h"
#include "redis_embed.h"
#include "sentinel.h"
#include "proxy.h"
#include "scope_map.h"
#include "store.h"
#include "suites.h"
#include "tokens.h"
#include "wecom_api.h"
#include "worker.h"

#define DRAIN_TIMEOUT_MS  10000
#define REDIS_CMD_TIMEOUT 800 /* ms: keeps an ack well inside WeCom's 1 s */
#define REDIS_START_WAIT  30000
/* media/upload's 20 MB file and its framing (proxy.c keeps JSON at 1 MB) */
#define INTERNAL_MAX_BODY MULTIPART_BODY_MAX
/* A replaced keyring is freed this long after the swap: the work that may
 * still hold it (a data-key load: at most three Redis commands, each with
 * its REDIS_CMD_TIMEOUT) is long over by then. */
#define KEYRING_GRACE_MS 60000
#define RETIRED_POLL_MS  1000

/* Something replaced by a reload that work in flight may still use. */
struct retired {
    struct retired *next;
    struct scope_map *scopes; /* freed once no service request is open */
    struct keyring *kr;       /* freed at due_ms */
    long long due_ms;
};

struct daemon {
    struct event_base *base;
    struct config *cfg;
    struct keyring *kr;
    struct redis_embed *embed;
    struct store *st;
    struct store *sub; /* listens for change notices */
    /* redis_min_replica_acks >= 1: events are written and WAITed for on
     * their own connection; INFO replication is polled for readyz */
    struct store *ack_st;
    struct event *replica_timer;
    struct scope_map *scopes;
    struct proxy *proxy;
    struct browser *browser;
    struct event *housekeeping;
    struct suites *suites;
    struct wecom_api *wx;
    struct budget *budget;
    struct audit *audit;
    struct tokens *tok;
    struct worker *worker;
    struct delivery *dlv;
    struct callback *cb;
    struct httpd *http;
    struct internal_api api;
    struct retired *retired;
    struct event *retired_timer;
    struct cache_budget *cache_budget; /* every loop's caches together */
    struct loops *loops;               /* loops 1..workers-1; NULL: none */
    int exit_code;
    int stopping;
};

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: wecom-broker [-c FILE] [-t] [-h] [-V]\n"
            "\n"
            "Receives a WeCom third-party app's callbacks and serves internal\n"
            "services a filtered, WeCom-compatible API.\n"
            "\n"
            "  -c FILE   configuration file (default ./broker.conf)\n"
            "  -t        check the configuration, print \"configuration OK\" "
            "and exit\n"
            "  -h        show this help\n"
            "  -V        print the version\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop after in-flight requests finish;\n"
            "SIGHUP re-reads the configuration: scope maps, master keys,\n"
            "the TLS certificate and log settings take effect at once.\n");
}

static void
on_drained(void *arg)
{
    struct daemon *d = arg;

    event_base_loopexit(d->base, NULL);
}

static void
begin_stop(struct daemon *d, const char *why)
{
    if (d->stopping)
        return;
    d->stopping = 1;
    log_info("stopping: %s", why);
    /* from now on no entry waits for others */
    audit_set_window(d->audit, 0);
    if (d->worker != NULL)
        worker_stop(d->worker);
    delivery_stop(d->dlv);
    loops_stop(d->loops);
    httpd_drain(d->http, DRAIN_TIMEOUT_MS, on_drained, d);
}

/*---- Reload (SIGHUP) ----*/

static void
sweep_retired(struct daemon *d, int all)
{
    struct retired **pp = &d->retired, *r;
    long long now = brk_mono_ms();
    struct timeval tv = {RETIRED_POLL_MS / 1000,
                         (RETIRED_POLL_MS % 1000) * 1000};

    while ((r = *pp) != NULL) {
        /* a request keeps the map it started with until it ends */
        if (r->scopes != NULL && (all || (proxy_inflight(d->proxy) == 0 &&
                                          loops_scopes_idle(d->loops)))) {
            scope_map_free(r->scopes);
            r->scopes = NULL;
            log_debug("reload: freed the replaced scope map");
        }
        if (r->kr != NULL && (all || now >= r->due_ms)) {
            keyring_free(r->kr);
            r->kr = NULL;
            log_debug("reload: freed the replaced keyring");
        }
        if (r->scopes == NULL && r->kr == NULL) {
            *pp = r->next;
            brk_free(r);
        } else {
            pp = &r->next;
        }
    }
    if (d->retired != NULL && !all && d->retired_timer != NULL)
        evtimer_add(d->retired_timer, &tv);
}

static void
on_retired_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sweep_retired(arg, 0);
}

/* Keep sm or kr (consumed) until nothing can be using it any more. */
static void
retire(struct daemon *d, struct scope_map *sm, struct keyring *kr)
{
    struct retired *r = brk_calloc(1, sizeof(*r));

    if (r == NULL) {
        /* leaking beats freeing what a request may still read */
        log_warn("reload: out of memory; a replaced %s stays allocated",
                 sm != NULL ? "scope map" : "keyring");
        return;
    }
    r->scopes = sm;
    r->kr = kr;
    r->due_ms = brk_mono_ms() + KEYRING_GRACE_MS;
    r->next = d->retired;
    d->retired = r;
    if (d->retired_timer == NULL)
        d->retired_timer = evtimer_new(d->base, on_retired_timer, d);
    sweep_retired(d, 0);
}

static int
str_differs(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") != 0;
}

/* Append name to a ", "-separated list in buf. */
static void
list_add(char *buf, size_t len, const char *name)
{
    size_t n = strlen(buf);

    if (n + 1 < len)
        snprintf(buf + n, len - n, "%s%s", n ? ", " : "", name);
}

/* Names of the settings the listeners and the store were built from:
 * changing them needs a restart, so a reload that does is refused. */
static void
fixed_changes(const struct config *a, const struct config *b, char *buf,
              size_t len)
{
    buf[0] = '\0';
    if (str_differs(a->callback_listen, b->callback_listen))
        list_add(buf, len, "callback_listen");
    if (str_differs(a->internal_listen, b->internal_listen))
        list_add(buf, len, "internal_listen");
    if (str_differs(a->redis, b->redis))
        list_add(buf, len, "redis");
    if (a->redis_min_replica_acks != b->redis_min_replica_acks)
        list_add(buf, len, "redis_min_replica_acks");
    if (str_differs(a->state_dir, b->state_dir))
        list_add(buf, len, "state_dir");
    if (str_differs(a->key_prefix, b->key_prefix))
        list_add(buf, len, "key_prefix");
    if ((a->tls_cert_file[0] == '\0') != (b->tls_cert_file[0] == '\0'))
        list_add(buf, len, "TLS on/off (tls_cert_file, tls_key_file)");
}

static int
suite_differs(const struct suite_conf *a, const struct suite_conf *b)
{
    size_t i;

    if (str_differs(a->token, b->token) ||
        str_differs(a->encoding_aes_key, b->encoding_aes_key) ||
        str_differs(a->secret, b->secret) ||
        str_differs(a->provider_corpid, b->provider_corpid) ||
        a->auth_type != b->auth_type ||
        a->nredirect_allow != b->nredirect_allow)
        return 1;
    for (i = 0; i < a->nredirect_allow; i++)
        if (str_differs(a->redirect_allow[i], b->redirect_allow[i]))
            return 1;
    return 0;
}

/* Names of changed settings that the running modules read once: they
 * keep their values until a restart. Never the values: some are secret. */
static void
restart_changes(const struct config *a, const struct config *b, char *buf,
                size_t len)
{
    const struct suite_conf *sa;
    char name[CONFIG_MAX_ID + 16];
    size_t i;

    buf[0] = '\0';
    if (str_differs(a->wecom_api_base, b->wecom_api_base))
        list_add(buf, len, "wecom_api_base");
    if (str_differs(a->public_base_url, b->public_base_url))
        list_add(buf, len, "public_base_url");
    if (str_differs(a->wecom_install_url, b->wecom_install_url))
        list_add(buf, len, "wecom_install_url");
    if (str_differs(a->wecom_oauth_url, b->wecom_oauth_url))
        list_add(buf, len, "wecom_oauth_url");
    if (a->callback_max_skew != b->callback_max_skew)
        list_add(buf, len, "callback_max_skew");
    if (a->upstream_timeout_ms != b->upstream_timeout_ms)
        list_add(buf, len, "upstream_timeout_ms");
    if (a->upstream_max_body != b->upstream_max_body)
        list_add(buf, len, "upstream_max_body");
    if (a->upstream_rate_per_corp != b->upstream_rate_per_corp)
        list_add(buf, len, "upstream_rate_per_corp");
    if (a->upstream_rate_per_corp_hour != b->upstream_rate_per_corp_hour)
        list_add(buf, len, "upstream_rate_per_corp_hour");
    if (a->upstream_rate_per_api != b->upstream_rate_per_api)
        list_add(buf, len, "upstream_rate_per_api");
    if (a->upstream_rate_per_api_hour != b->upstream_rate_per_api_hour)
        list_add(buf, len, "upstream_rate_per_api_hour");
    if (a->audit_max_len != b->audit_max_len)
        list_add(buf, len, "audit_max_len");
    if (a->audit_max_age != b->audit_max_age)
        list_add(buf, len, "audit_max_age");
    if (a->cache_max_age != b->cache_max_age)
        list_add(buf, len, "cache_max_age");
    if (a->cache_max_bytes != b->cache_max_bytes)
        list_add(buf, len, "cache_max_bytes");
    if (a->workers != b->workers)
        list_add(buf, len, "workers");
    if (a->event_claim_idle != b->event_claim_idle)
        list_add(buf, len, "event_claim_idle");
    if (a->event_max_attempts != b->event_max_attempts)
        list_add(buf, len, "event_max_attempts");
    for (i = 0; i < b->nsuites; i++) {
        sa = config_find_suite(a, b->suites[i].suite_id);
        if (sa != NULL && !suite_differs(sa, &b->suites[i]))
            continue;
        snprintf(name, sizeof(name), "[suite %s]", b->suites[i].suite_id);
        list_add(buf, len, name);
    }
    for (i = 0; i < a->nsuites; i++) {
        if (config_find_suite(b, a->suites[i].suite_id) != NULL)
            continue;
        snprintf(name, sizeof(name), "[suite %s] (removed)",
                 a->suites[i].suite_id);
        list_add(buf, len, name);
    }
}

/* "1,2,5": the master key versions of kr. */
static void
key_versions(const struct keyring *kr, char *buf, size_t len)
{
    size_t i, n = keyring_version_count(kr), o = 0;
    int w;

    buf[0] = '\0';
    for (i = 0; i < n && o < len; i++) {
        w = snprintf(buf + o, len - o, "%s%u", i ? "," : "",
                     keyring_version_at(kr, i));
        if (w < 0 || (size_t)w >= len - o) {
            /* too many to list: say so rather than cut a number */
            snprintf(buf, len, "%u..%u (%zu versions)",
                     keyring_version_at(kr, 0), keyring_version_at(kr, n - 1),
                     n);
            return;
        }
        o += (size_t)w;
    }
}

/* The index key keys stored HMACs and is never rotated. */
static int
same_index_key(const struct keyring *a, const struct keyring *b)
{
    static const char probe[] = "wecom-broker reload index key probe";
    char ha[65], hb[65];

    keyring_index_hmac(a, probe, sizeof(probe) - 1, ha);
    keyring_index_hmac(b, probe, sizeof(probe) - 1, hb);
    return strcmp(ha, hb) == 0;
}

/* Scope maps: the new ones, or the old ones kept. 0 when swapped. */
static int
reload_scopes(struct daemon *d, const struct config *nc, char *part, size_t len)
{
    struct brk_errinfo info = {"", 0, -1};
    struct scope_map *sm = NULL, *old = d->scopes;

    if (scope_map_load(nc->scopes_dir, &sm, &info) != BRK_OK) {
        log_error("reload: scopes: %s; the previous scope maps stay in use",
                  info.msg);
        snprintf(part, len, "scopes kept (%zu endpoints)",
                 scope_map_count(old));
        return -1;
    }
    d->scopes = sm;
    proxy_set_scopes(d->proxy, sm);
    delivery_set_scopes(d->dlv, sm);
    loops_set_scopes(d->loops, sm);
    retire(d, old, NULL);
    snprintf(part, len, "scopes %zu endpoints", scope_map_count(sm));
    return 0;
}

/* The master key file, never generated here. 0 when swapped. */
static int
reload_keys(struct daemon *d, const struct config *nc, char *part, size_t len)
{
    struct brk_errinfo info = {"", 0, -1};
    struct keyring *kr = NULL, *old = d->kr;
    unsigned generated = 0, insecure = 0;
    char versions[96];
    size_t i;

    if (keyring_load(nc->master_key_file, nc->index_key_file, 0, &kr,
                     &generated, &insecure, &info) != BRK_OK) {
        log_error("reload: keys: %s; the loaded keys stay in use", info.msg);
        goto kept;
    }
    if (!same_index_key(old, kr)) {
        log_error("reload: keys: %s holds a different index key; it is "
                  "never rotated, so the loaded keys stay in use",
                  nc->index_key_file);
        keyring_free(kr);
        goto kept;
    }
    if (insecure & KEYRING_FILE_MASTER)
        log_warn("%s is readable by group or others; chmod 600 it",
                 nc->master_key_file);
    for (i = 0; i < keyring_version_count(old); i++)
        if (!keyring_has_version(kr, keyring_version_at(old, i)))
            log_warn("reload: master key version %u is gone from %s: data "
                     "keys still wrapped under it no longer unwrap",
                     keyring_version_at(old, i), nc->master_key_file);
    if (keyring_current_version(kr) != keyring_current_version(old))
        log_info("master key version %u is now current: new data keys are "
                 "wrapped under it",
                 keyring_current_version(kr));
    /* every holder reads its pointer at each use; a data-key load already
     * under way finishes with the old keyring, kept for a while */
    d->kr = kr;
    suites_set_keyring(d->suites, kr);
    tokens_set_keyring(d->tok, kr);
    worker_set_keyring(d->worker, kr);
    delivery_set_keyring(d->dlv, kr);
    proxy_set_keyring(d->proxy, kr);
    loops_set_keyring(d->loops, kr);
    callback_set_keyring(d->cb, kr);
    browser_set_keyring(d->browser, kr);
    retire(d, NULL, old);
    key_versions(kr, versions, sizeof(versions));
    snprintf(part, len, "keys versions %s", versions);
    return 0;
kept:
    key_versions(old, versions, sizeof(versions));
    snprintf(part, len, "keys kept (versions %s)", versions);
    return -1;
}

/* A new certificate for new connections. 0 when swapped or off. */
static int
reload_tls(struct daemon *d, const struct config *nc, char *part, size_t len)
{
    struct brk_errinfo info = {"", 0, -1};
    struct httpd_tls *tls = NULL;

    if (nc->tls_cert_file[0] == '\0') {
        snprintf(part, len, "tls off");
        return 0;
    }
    if (httpd_tls_load(nc->tls_cert_file, nc->tls_key_file, &tls, &info) !=
        BRK_OK) {
        log_error("reload: %s; new connections keep the previous "
                  "certificate",
                  info.msg);
        snprintf(part, len, "tls kept");
        return -1;
    }
    if (httpd_set_tls(d->http, "callback", tls) != BRK_OK) {
        snprintf(part, len, "tls kept");
        return -1;
    }
    snprintf(part, len, "tls reloaded");
    return 0;
}

/*
 * Re-read the configuration file. Refused as a whole when it does not
 * parse or when settings the listeners or the store were built from
 * changed; otherwise each reloadable part is swapped in on its own, and a
 * part that fails keeps its previous state. One summary line either way.
 */
static void
reload(struct daemon *d)
{
    struct brk_errinfo info = {"", 0, -1};
    struct config *nc = NULL;
    char msg[512], fixed[256], later[512], scopes[64], keys[160], tls[32];
    int failed = 0;

    if (config_load(d->cfg->path, &nc, &info) != BRK_OK) {
        config_format_error(d->cfg->path, &info, msg, sizeof(msg));
        log_error("reload failed: %s; the running configuration stays", msg);
        goto out;
    }
    fixed_changes(d->cfg, nc, fixed, sizeof(fixed));
    if (fixed[0] != '\0') {
        log_error("reload rejected: %s changed, which needs a restart; the "
                  "running configuration stays",
                  fixed);
        goto out;
    }
    log_init((enum log_level)nc->log_level, nc->log_json);
    failed |= reload_scopes(d, nc, scopes, sizeof(scopes));
    failed |= reload_keys(d, nc, keys, sizeof(keys));
    failed |= reload_tls(d, nc, tls, sizeof(tls));
    /* logrotate moved the file, or the path changed: open it anew */
    if (d->audit != NULL && audit_reopen(d->audit, nc->audit_file) != BRK_OK)
        failed = 1;
    loops_audit_reopen(d->loops, nc->audit_file);
    restart_changes(d->cfg, nc, later, sizeof(later));
    if (failed)
        log_error("reload incomplete: %s, %s, %s (errors above)%s%s", scopes,
                  keys, tls, later[0] ? "; needs a restart: " : "", later);
    else
        /* asked for by the operator: answered whatever log_level says */
        log_emit(LOG_LVL_INFO, NULL, "reload: %s, %s, %s%s%s", scopes, keys,
                 tls, later[0] ? "; needs a restart: " : "", later);
out:
    config_free(nc);
}

/*---- Housekeeping: the ticket-age gauge and the audit trail's age bound ----*/

#define HOUSEKEEPING_S 30

struct ticket_probe {
    struct daemon *d;
    char suite[80];
};

static void
on_ticket_at(enum brk_err err, struct redisReply *r, void *arg)
{
    struct ticket_probe *t = arg;
    char labels[128];
    long long at;

    if (!err) {
        at = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
        metrics_set(
            METRICS_TICKET_AGE,
            metrics_labels(labels, sizeof(labels), "suite", t->suite, NULL),
            at < 0 ? -1.0 : (double)(brk_wall_ms() / 1000 - at));
    }
    brk_free(t);
}

static void
on_trimmed(enum brk_err err, struct redisReply *r, void *arg)
{
    (void)r;
    (void)arg;
    if (err)
        log_debug("audit trim failed: %s", brk_strerror(err));
}

static void
on_housekeeping(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    struct timeval tv = {HOUSEKEEPING_S, 0};
    struct ticket_probe *t;
    char key[KEYS_MAX], minid[40];
    const char *argv[6];
    size_t i;

    (void)fd;
    (void)what;
    evtimer_add(d->housekeeping, &tv);
    if (!store_is_up(d->st) || d->stopping)
        return;
    for (i = 0; i < d->cfg->nsuites; i++) {
        t = brk_calloc(1, sizeof(*t));
        if (t == NULL || keys_suite_ticket(key, sizeof(key), d->cfg->key_prefix,
                                           d->cfg->suites[i].suite_id)) {
            brk_free(t);
            continue;
        }
        t->d = d;
        snprintf(t->suite, sizeof(t->suite), "%s", d->cfg->suites[i].suite_id);
        argv[0] = "HGET";
        argv[1] = key;
        argv[2] = "at";
        if (store_cmd_argv(d->st, on_ticket_at, t, 3, argv, NULL))
            brk_free(t);
    }
    /* the audit trail is bounded by length at every write and by age
     * here: entries older than audit_max_age go */
    snprintf(key, sizeof(key), "%saudit", d->cfg->key_prefix);
    snprintf(minid, sizeof(minid), "%lld-0",
             brk_wall_ms() - d->cfg->audit_max_age * 1000LL);
    argv[0] = "XTRIM";
    argv[1] = key;
    argv[2] = "MINID";
    argv[3] = "~";
    argv[4] = minid;
    if (store_cmd_argv(d->st, on_trimmed, NULL, 5, argv, NULL))
        log_debug("audit trim not sent");
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    int status;
    pid_t pid;

    (void)what;
    switch (sig) {
    case SIGTERM:
    case SIGINT:
        begin_stop(d, sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    case SIGHUP:
        if (d->stopping)
            log_warn("SIGHUP ignored: stopping");
        else
            reload(d);
        break;
    case SIGCHLD:
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (d->embed != NULL && pid == redis_embed_pid(d->embed)) {
                redis_embed_reaped(d->embed);
                log_error("embedded redis-server exited unexpectedly "
                          "(status %d); stopping",
                          WIFEXITED(status) ? WEXITSTATUS(status)
                                            : 128 + WTERMSIG(status));
                d->exit_code = 1;
                begin_stop(d, "embedded Redis gone");
            }
        }
        break;
    default:
        break;
    }
}

#define REPLICA_POLL_MS 1000

static void
on_replica_info(enum brk_err err, struct redisReply *r, void *arg)
{
    struct daemon *d = arg;
    long n = -1;

    if (err == BRK_ERR_SHUTDOWN)
        return;
    if (err || r->type != REDIS_REPLY_STRING ||
        sentinel_info_long(r->str, r->len, "connected_slaves", &n) != BRK_OK)
        n = -1;
    d->api.replicas = n;
    metrics_set(METRICS_REDIS_REPLICAS, NULL, (double)n);
}

/* Once a second: how many replicas the primary has, for readyz. */
static void
on_replica_timer(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    const char *argv[2] = {"INFO", "replication"};
    struct timeval tv = {REPLICA_POLL_MS / 1000,
                         (REPLICA_POLL_MS % 1000) * 1000};

    (void)fd;
    (void)what;
    evtimer_add(d->replica_timer, &tv);
    if (store_cmd_argv(d->st, on_replica_info, d, 2, argv, NULL) != BRK_OK)
        d->api.replicas = -1;
}

static void
on_store_state(int up, void *arg)
{
    struct daemon *d = arg;

    metrics_set(METRICS_REDIS_UP, NULL, up);
    /* a message published while we were away is lost: start clean */
    tokens_drop_cache(d->tok);
    proxy_drop_caches(d->proxy);
    delivery_drop_caches(d->dlv);
    worker_drop_caches(d->worker);
    if (up) {
        metrics_inc(METRICS_REDIS_CONNECTS, NULL);
        suites_store_up(d->suites);
        if (!d->stopping) {
            worker_start(d->worker);
            delivery_start(d->dlv);
        }
    } else {
        suites_store_down(d->suites);
    }
}

/* "<suite> <corpid>": a tenant changed on some instance; or the upstream
 * budget's "budget pause ...". */
static void
on_change_notice(const char *msg, size_t len, void *arg)
{
    struct daemon *d = arg;

    loops_notice(d->tok, d->budget, d->proxy, msg, len);
    delivery_notice(d->dlv, msg, len);
}

static void
on_sub_state(int up, void *arg)
{
    struct daemon *d = arg;

    /* notices sent while we were not listening are lost */
    (void)up;
    tokens_drop_cache(d->tok);
    proxy_drop_caches(d->proxy);
    delivery_drop_caches(d->dlv);
    budget_reset(d->budget);
}

static int
load_keys(struct daemon *d, int embedded)
{
    struct brk_errinfo info = {"", 0, -1};
    unsigned generated = 0, insecure = 0;
    enum brk_err err;

    err = keyring_load(d->cfg->master_key_file, d->cfg->index_key_file,
                       embedded, &d->kr, &generated, &insecure, &info);
    if (err) {
        log_error("keys: %s%s", info.msg,
                  embedded ? ""
                           : " (with an external Redis the key files are "
                             "never generated: every instance must use the "
                             "same files)");
        return -1;
    }
    if (generated & KEYRING_FILE_MASTER)
        log_warn("generated a new master key in %s: back it up; data "
                 "sealed under it is unreadable without it",
                 d->cfg->master_key_file);
    if (generated & KEYRING_FILE_INDEX)
        log_warn("generated a new index key in %s: back it up",
                 d->cfg->index_key_file);
    if (insecure & KEYRING_FILE_MASTER)
        log_warn("%s is readable by group or others; chmod 600 it",
                 d->cfg->master_key_file);
    if (insecure & KEYRING_FILE_INDEX)
        log_warn("%s is readable by group or others; chmod 600 it",
                 d->cfg->index_key_file);
    return 0;
}

/* Stable across restarts, distinct between instances: a restarted broker
 * resumes its own unfinished events at once. */
static void
consumer_name(const struct daemon *d, char *out, size_t len)
{
    char host[64];

    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(out, len, "%s/%s", host, d->cfg->internal_listen);
}

/*
 * An event loop whose epoll backend batches changes: a socket switched
 * from reading to writing and back within one turn (a request read, its
 * reply written) costs one epoll_ctl, or none, instead of one per switch.
 * No descriptor is ever dup()ed into a loop, which the changelist needs.
 * Only with one loop: a batched removal reaches epoll after the close,
 * and with several threads the number may by then name another thread's
 * new socket (harmless to epoll, which refuses it, but a window we do not
 * keep open); the loops of workers = N change their epoll sets at once.
 */
static struct event_base *
loop_new(int batched)
{
    struct event_config *ec = batched ? event_config_new() : NULL;
    struct event_base *base = NULL;

    if (ec != NULL &&
        event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST) == 0)
        base = event_base_new_with_config(ec);
    if (ec != NULL)
        event_config_free(ec);
    return base != NULL ? base : event_base_new();
}

/*
 * workers = N: the internal listener as a SO_REUSEPORT group of N
 * sockets, the first served here (loop 0), the others by loops 1..N-1.
 */
static enum brk_err
start_loops(struct daemon *d, const char *redis_url, const char *channel)
{
    struct loops_opts o;
    int fds[64];
    size_t n = (size_t)d->cfg->workers;
    enum brk_err err;

    if (n > nitems(fds))
        return BRK_ERR_CONFIG;
    err = httpd_bind_group(d->cfg->internal_listen, n, fds);
    if (err)
        return err;
    memset(&o, 0, sizeof(o));
    o.cfg = d->cfg;
    o.redis_url = redis_url;
    o.redis_timeout_ms = REDIS_CMD_TIMEOUT;
    o.channel = channel;
    o.kr = d->kr;
    o.scopes = d->scopes;
    o.cache_budget = d->cache_budget;
    o.max_body = INTERNAL_MAX_BODY;
    o.drain_ms = DRAIN_TIMEOUT_MS;
    err = loops_start(&o, fds + 1, n - 1, &d->loops);
    if (err) {
        close(fds[0]);
        return err;
    }
    err = httpd_listen_fd(d->http, "internal", fds[0], n, INTERNAL_MAX_BODY,
                          internal_api_handle, &d->api);
    if (!err)
        log_info("workers = %zu: the internal listener is served by %zu "
                 "event loops",
                 n, n);
    return err;
}

/* The keys, the scope files and, with no redis configured, the embedded
 * Redis (*url its URL, owned; written only on success). */
static int
start_inputs(struct daemon *d, int embedded, char **url)
{
    struct brk_errinfo info = {"", 0, -1};
    char *u = NULL;
    enum brk_err err;

    if (load_keys(d, embedded) != 0)
        return -1;
    if (scope_map_load(d->cfg->scopes_dir, &d->scopes, &info) != BRK_OK) {
        log_error("scopes: %s", info.msg);
        return -1;
    }
    if (embedded) {
        err = redis_embed_start(d->cfg->state_dir, REDIS_START_WAIT, &d->embed,
                                &u, &info);
        if (err) {
            log_error("embedded Redis: %s", info.msg);
            return -1;
        }
    }
    *url = u;
    return 0;
}

/* The event loop and its main Redis connection. */
static int
start_loop(struct daemon *d, const char *redis_url)
{
    enum brk_err err;

    /* loops post to each other's mailboxes: libevent must lock */
    if (d->cfg->workers > 1 && evthread_use_pthreads() != 0) {
        log_error("cannot make the event loops thread-safe");
        return -1;
    }
    d->base = loop_new(d->cfg->workers == 1);
    if (d->base == NULL) {
        log_error("cannot create the event loop");
        return -1;
    }
    err = store_new(d->base, redis_url, REDIS_CMD_TIMEOUT, &d->st);
    if (err) {
        log_error("redis: bad URL");
        return -1;
    }
    return 0;
}

/* WeCom's side: the suites, the WeCom client, the tokens, the upstream
 * budget every instance shares (its notices on channel), the audit
 * trail. */
static int
start_upstream(struct daemon *d, const char *channel)
{
    struct wecom_api_opts api_opts;
    struct budget_opts budget_opts;
    enum brk_err err;

    err = suites_new(d->cfg, d->kr, d->st, &d->suites);
    if (err)
        return -1;
    api_opts.base = d->cfg->wecom_api_base;
    api_opts.timeout_ms = d->cfg->upstream_timeout_ms;
    api_opts.max_body = (size_t)d->cfg->upstream_max_body;
    /* the shared budget (below) limits WeCom calls, not a per-process
     * bucket */
    api_opts.rate_per_key = 0;
    err = wecom_api_new(d->base, &api_opts, &d->wx);
    if (err) {
        log_error("cannot create the WeCom client: %s", brk_strerror(err));
        return -1;
    }
    err = tokens_new(d->base, d->cfg, d->kr, d->st, d->suites, d->wx, &d->tok);
    if (err)
        return -1;
    memset(&budget_opts, 0, sizeof(budget_opts));
    budget_opts.key_prefix = d->cfg->key_prefix;
    budget_opts.channel = channel;
    budget_opts.per_corp = d->cfg->upstream_rate_per_corp;
    budget_opts.per_corp_hour = d->cfg->upstream_rate_per_corp_hour;
    budget_opts.per_api = d->cfg->upstream_rate_per_api;
    budget_opts.per_api_hour = d->cfg->upstream_rate_per_api_hour;
    err = budget_new(d->base, d->st, &budget_opts, &d->budget);
    if (err)
        return -1;
    /* an unwritable audit_file is no reason to stop: logged, counted, a
     * readyz reason, tried again at the next SIGHUP and write */
    err = audit_new(d->base, d->st, d->cfg->key_prefix, d->cfg->audit_max_len,
                    d->cfg->audit_file, &d->audit);
    if (err && err != BRK_ERR_IO)
        return -1;
    if (d->cfg->audit_file[0] == '\0')
        log_warn("audit_file is not set: the audit trail lasts only "
                 "audit_max_age (%lld s) in Redis",
                 d->cfg->audit_max_age);
    return 0;
}

/* What serves: the service API and its caches' budget, the event workers
 * and delivery, the callbacks (with redis_min_replica_acks, their own
 * Redis connection and the replica poll), the browser flows. */
static int
start_services(struct daemon *d, const char *redis_url)
{
    char consumer[128];
    enum brk_err err;

    err = proxy_new(d->base, d->cfg, d->kr, d->st, d->suites, d->tok, d->wx,
                    &d->proxy);
    if (err)
        return -1;
    proxy_set_budget(d->proxy, d->budget);
    proxy_set_audit(d->proxy, d->audit);
    proxy_set_scopes(d->proxy, d->scopes);
    err = cache_budget_new((unsigned long long)d->cfg->cache_max_bytes,
                           &d->cache_budget);
    if (err)
        return -1;
    proxy_set_cache_budget(d->proxy, d->cache_budget);
    consumer_name(d, consumer, sizeof(consumer));
    err = worker_new(d->base, d->cfg, d->kr, d->st, d->suites, d->tok, d->wx,
                     consumer, &d->worker);
    if (err)
        return -1;
    worker_set_budget(d->worker, d->budget);
    worker_set_cache_budget(d->worker, d->cache_budget);
    worker_set_audit(d->worker, d->audit);
    err = delivery_new(d->base, d->cfg, d->kr, d->st, consumer, &d->dlv);
    if (err)
        return -1;
    delivery_set_audit(d->dlv, d->audit);
    delivery_set_scopes(d->dlv, d->scopes);
    delivery_set_suites(d->dlv, d->suites);
    worker_set_delivery(d->worker, d->dlv);
    err = callback_new(d->cfg, d->kr, d->st, d->suites, &d->cb);
    if (err)
        return -1;
    if (d->cfg->redis_min_replica_acks > 0) {
        struct timeval now = {0, 0};

        err = store_new(d->base, redis_url, REDIS_CMD_TIMEOUT, &d->ack_st);
        if (err)
            return -1;
        callback_set_ack_store(d->cb, d->ack_st,
                               d->cfg->redis_min_replica_acks);
        d->replica_timer = evtimer_new(d->base, on_replica_timer, d);
        if (d->replica_timer == NULL)
            return -1;
        evtimer_add(d->replica_timer, &now);
    }
    d->api.min_replica_acks = d->cfg->redis_min_replica_acks;
    d->api.replicas = -1;
    d->api.ack_st = d->ack_st;
    err = browser_new(d->cfg, d->kr, d->st, d->tok, d->wx, &d->browser);
    if (err)
        return -1;
    callback_set_browser(d->cb, d->browser);
    return 0;
}

/* The change notices on channel, the store's state, and what the internal
 * API reads. */
static int
start_notices(struct daemon *d, const char *redis_url, const char *channel)
{
    if (store_new_subscriber(d->base, redis_url, channel, on_change_notice, d,
                             &d->sub) != BRK_OK)
        return -1;
    store_set_state_cb(d->sub, on_sub_state, d);
    store_set_state_cb(d->st, on_store_state, d);
    d->api.st = d->st;
    d->api.suites = d->suites;
    d->api.proxy = d->proxy;
    d->api.audit = d->audit;
    return 0;
}

/* The listeners: callback_listen (HTTPS with *tls, which it takes) and
 * internal_listen (with workers = N, its group of N event loops). */
static int
start_listeners(struct daemon *d, struct httpd_tls **tls, const char *redis_url,
                const char *channel)
{
    enum brk_err err;

    if (httpd_new(d->base, &d->http) != BRK_OK)
        return -1;
    err = httpd_listen(d->http, "callback", d->cfg->callback_listen,
                       CALLBACK_MAX_BODY, callback_handle, d->cb);
    if (err) {
        log_error("cannot listen on callback_listen %s: %s",
                  d->cfg->callback_listen, strerror(errno));
        return -1;
    }
    if (*tls != NULL) {
        /* the loop has not run yet: no connection was accepted plain */
        err = httpd_set_tls(d->http, "callback", *tls);
        *tls = NULL;
        if (err)
            return -1;
        log_info("callback listener speaks HTTPS (%s)", d->cfg->tls_cert_file);
    }
    if (d->cfg->workers > 1)
        err = start_loops(d, redis_url, channel);
    else
        err = httpd_listen(d->http, "internal", d->cfg->internal_listen,
                           INTERNAL_MAX_BODY, internal_api_handle, &d->api);
    if (err) {
        log_error("cannot listen on internal_listen %s: %s",
                  d->cfg->internal_listen, strerror(errno));
        return -1;
    }
    return 0;
}

/* Everything the loop runs, in order; on failure the caller tears down
 * what was set up. */
static int
start(struct daemon *d)
{
    struct brk_errinfo info = {"", 0, -1};
    struct httpd_tls *tls = NULL;
    char *url = NULL, channel[160];
    const char *redis_url;
    int embedded = d->cfg->redis[0] == '\0';
    int rc = -1;

    /* a certificate that does not load fails the start, before anything
     * else is set up */
    if (d->cfg->tls_cert_file[0] != '\0' &&
        httpd_tls_load(d->cfg->tls_cert_file, d->cfg->tls_key_file, &tls,
                       &info) != BRK_OK) {
        log_error("%s", info.msg);
        goto out;
    }
    if (start_inputs(d, embedded, &url) != 0)
        goto out;
    redis_url = embedded ? url : d->cfg->redis;
    snprintf(channel, sizeof(channel), "%s%s", d->cfg->key_prefix,
             WORKER_INVAL_CHANNEL);
    if (start_loop(d, redis_url) != 0 || start_upstream(d, channel) != 0 ||
        start_services(d, redis_url) != 0 ||
        start_notices(d, redis_url, channel) != 0 ||
        start_listeners(d, &tls, redis_url, channel) != 0)
        goto out;
    rc = 0;
out:
    httpd_tls_free(tls);
    brk_free(url);
    return rc;
}

static void
teardown(struct daemon *d)
{
    /* the other loops first: they borrow the keys, scopes and caches'
     * budget freed below */
    loops_free(d->loops);
    d->loops = NULL;
    /* requests are drained; answer any Redis callback still pending
     * before the state it points at goes away */
    httpd_free(d->http);
    proxy_free(d->proxy);
    browser_free(d->browser);
    if (d->worker != NULL)
        worker_stop(d->worker);
    delivery_stop(d->dlv);
    /* each free answers what is pending on it with BRK_ERR_SHUTDOWN;
     * the order lets every chain unwind into live objects */
    wecom_api_free(d->wx);
    /* after the calls it allowed have ended, before the store answers
     * its own commands */
    budget_free(d->budget);
    store_free(d->sub);
    store_free(d->ack_st);
    store_free(d->st);
    if (d->replica_timer != NULL)
        event_free(d->replica_timer);
    tokens_free(d->tok);
    worker_free(d->worker);
    /* its sends end here; its Redis steps ended with the store */
    delivery_free(d->dlv);
    audit_free(d->audit);
    callback_free(d->cb);
    suites_free(d->suites);
    redis_embed_stop(d->embed);
    /* nothing is in flight any more */
    sweep_retired(d, 1);
    if (d->retired_timer != NULL)
        event_free(d->retired_timer);
    if (d->base != NULL)
        event_base_free(d->base);
    keyring_free(d->kr);
    scope_map_free(d->scopes);
    cache_budget_free(d->cache_budget);
    config_free(d->cfg);
}

/* -t: the scope files and the TLS pair are part of the configuration: a
 * typo in either fails the check, naming the file. */
static int
check_config(const struct config *cfg)
{
    struct brk_errinfo info = {"", 0, -1};
    struct scope_map *sm = NULL;
    struct httpd_tls *tls = NULL;

    if (scope_map_load(cfg->scopes_dir, &sm, &info) != BRK_OK) {
        fprintf(stderr, "%s\n", info.msg);
        return 1;
    }
    scope_map_free(sm);
    if (cfg->tls_cert_file[0] != '\0' &&
        httpd_tls_load(cfg->tls_cert_file, cfg->tls_key_file, &tls, &info) !=
            BRK_OK) {
        fprintf(stderr, "%s\n", info.msg);
        return 1;
    }
    httpd_tls_free(tls);
    if (cfg->audit_file[0] == '\0')
        fprintf(stderr,
                "%s: warning: audit_file is not set: the audit trail lasts "
                "only audit_max_age (%lld s) in Redis; SPEC's 180 days need "
                "audit_file\n",
                cfg->path, cfg->audit_max_age);
    printf("configuration OK\n");
    return 0;
}

int
main(int argc, char **argv)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD};
    struct event *sigev[4] = {NULL, NULL, NULL, NULL};
    struct daemon d;
    struct brk_errinfo info = {"", 0, -1};
    const char *path = "broker.conf";
    char msg[512];
    int ch, check = 0;
    size_t i;

    memset(&d, 0, sizeof(d));
    log_set_ident("wecom-broker");
    while ((ch = getopt(argc, argv, "c:thV")) != -1) {
        switch (ch) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("wecom-broker %s\n", BROKER_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (config_load(path, &d.cfg, &info) != BRK_OK) {
        config_format_error(path, &info, msg, sizeof(msg));
        fprintf(stderr, "%s\n", msg);
        return 1;
    }
    if (check) {
        ch = check_config(d.cfg);
        config_free(d.cfg);
        return ch;
    }
    log_init((enum log_level)d.cfg->log_level, d.cfg->log_json);
    signal(SIGPIPE, SIG_IGN);
    /* until the loop handles it, a hangup must not kill the start */
    signal(SIGHUP, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (start(&d) != 0) {
        teardown(&d);
        return 1;
    }
    for (i = 0; i < nitems(sigs); i++) {
        sigev[i] = evsignal_new(d.base, sigs[i], on_signal, &d);
        if (sigev[i] == NULL || evsignal_add(sigev[i], NULL) != 0) {
            log_error("cannot install signal handlers");
            d.exit_code = 1;
            goto out;
        }
    }
    d.housekeeping = evtimer_new(d.base, on_housekeeping, &d);
    if (d.housekeeping != NULL) {
        struct timeval tv = {1, 0};

        evtimer_add(d.housekeeping, &tv);
    }
    log_info("wecom-broker %s ready to serve (%zu suite(s), redis %s)",
             BROKER_VERSION, d.cfg->nsuites, d.embed ? "embedded" : "external");
    event_base_dispatch(d.base);
    log_info("stopped");
out:
    for (i = 0; i < nitems(sigs); i++)
        if (sigev[i] != NULL)
            event_free(sigev[i]);
    if (d.housekeeping != NULL)
        event_free(d.housekeeping);
    teardown(&d);
    curl_global_cleanup();
    return d.exit_code;
}
