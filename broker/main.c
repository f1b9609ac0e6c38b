/*
 * wecom-broker: process entry and wiring only. Loads the configuration and
 * keys, starts the embedded Redis when configured so, binds the listeners
 * and runs one libevent loop until SIGTERM/SIGINT, then drains.
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

#include "callback.h"
#include "config.h"
#include "httpd.h"
#include "internal_api.h"
#include "keyring.h"
#include "log.h"
#include "metrics.h"
#include "redis_embed.h"
#include "proxy.h"
#include "scope_map.h"
#include "store.h"
#include "suites.h"
#include "tokens.h"
#include "wecom_api.h"
#include "worker.h"

#define DRAIN_TIMEOUT_MS   10000
#define REDIS_CMD_TIMEOUT  800 /* ms: keeps an ack well inside WeCom's 1 s */
#define REDIS_START_WAIT   30000
#define INTERNAL_MAX_BODY  (1024 * 1024)

struct daemon {
    struct event_base *base;
    struct config *cfg;
    struct keyring *kr;
    struct redis_embed *embed;
    struct store *st;
    struct store *sub;       /* listens for change notices */
    struct scope_map *scopes;
    struct proxy *proxy;
    struct suites *suites;
    struct wecom_api *wx;
    struct tokens *tok;
    struct worker *worker;
    struct callback *cb;
    struct httpd *http;
    struct internal_api api;
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
            "Signals: SIGTERM/SIGINT stop after in-flight requests finish.\n");
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
    if (d->worker != NULL)
        worker_stop(d->worker);
    httpd_drain(d->http, DRAIN_TIMEOUT_MS, on_drained, d);
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
        log_warn("SIGHUP: configuration reload is not supported yet; "
                 "restart to apply changes");
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

static void
on_store_state(int up, void *arg)
{
    struct daemon *d = arg;

    metrics_set(METRICS_REDIS_UP, NULL, up);
    /* a message published while we were away is lost: start clean */
    tokens_drop_cache(d->tok);
    proxy_drop_caches(d->proxy);
    if (up) {
        metrics_inc(METRICS_REDIS_CONNECTS, NULL);
        suites_store_up(d->suites);
        if (!d->stopping)
            worker_start(d->worker);
    } else {
        suites_store_down(d->suites);
    }
}

/* "<suite> <corpid>": a tenant changed on some instance. */
static void
on_change_notice(const char *msg, size_t len, void *arg)
{
    struct daemon *d = arg;
    char suite[80], corp[80];
    const char *sp = memchr(msg, ' ', len);

    if (sp == NULL || (size_t)(sp - msg) >= sizeof(suite) ||
        len - (size_t)(sp - msg) - 1 >= sizeof(corp))
        return;
    memcpy(suite, msg, (size_t)(sp - msg));
    suite[sp - msg] = '\0';
    memcpy(corp, sp + 1, len - (size_t)(sp - msg) - 1);
    corp[len - (size_t)(sp - msg) - 1] = '\0';
    tokens_forget_tenant(d->tok, suite, corp);
    proxy_notice(d->proxy, msg, len);
}

static void
on_sub_state(int up, void *arg)
{
    struct daemon *d = arg;

    /* notices sent while we were not listening are lost */
    (void)up;
    tokens_drop_cache(d->tok);
    proxy_drop_caches(d->proxy);
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

static int
start(struct daemon *d)
{
    struct brk_errinfo info = {"", 0, -1};
    struct wecom_api_opts api_opts;
    char *url = NULL, consumer[128], channel[160];
    int embedded = d->cfg->redis[0] == '\0';
    enum brk_err err;
    int rc = -1;

    if (load_keys(d, embedded) != 0)
        goto out;
    if (scope_map_load(d->cfg->scopes_dir, &d->scopes, &info) != BRK_OK) {
        log_error("scopes: %s", info.msg);
        goto out;
    }
    if (embedded) {
        err = redis_embed_start(d->cfg->state_dir, REDIS_START_WAIT,
                                &d->embed, &url, &info);
        if (err) {
            log_error("embedded Redis: %s", info.msg);
            goto out;
        }
    }
    d->base = event_base_new();
    if (d->base == NULL) {
        log_error("cannot create the event loop");
        goto out;
    }
    err = store_new(d->base, embedded ? url : d->cfg->redis,
                    REDIS_CMD_TIMEOUT, &d->st);
    if (err) {
        log_error("redis: bad URL");
        goto out;
    }
    err = suites_new(d->cfg, d->kr, d->st, &d->suites);
    if (err)
        goto out;
    api_opts.base = d->cfg->wecom_api_base;
    api_opts.timeout_ms = d->cfg->upstream_timeout_ms;
    api_opts.max_body = (size_t)d->cfg->upstream_max_body;
    api_opts.rate_per_key = d->cfg->upstream_rate_per_corp;
    err = wecom_api_new(d->base, &api_opts, &d->wx);
    if (err) {
        log_error("cannot create the WeCom client: %s", brk_strerror(err));
        goto out;
    }
    err = tokens_new(d->base, d->cfg, d->kr, d->st, d->suites, d->wx,
                     &d->tok);
    if (err)
        goto out;
    err = proxy_new(d->base, d->cfg, d->kr, d->st, d->suites, d->tok,
                    d->wx, &d->proxy);
    if (err)
        goto out;
    proxy_set_scopes(d->proxy, d->scopes);
    consumer_name(d, consumer, sizeof(consumer));
    err = worker_new(d->base, d->cfg, d->kr, d->st, d->suites, d->tok,
                     d->wx, consumer, &d->worker);
    if (err)
        goto out;
    err = callback_new(d->cfg, d->kr, d->st, d->suites, &d->cb);
    if (err)
        goto out;
    snprintf(channel, sizeof(channel), "%s%s", d->cfg->key_prefix,
             WORKER_INVAL_CHANNEL);
    err = store_new_subscriber(d->base, embedded ? url : d->cfg->redis,
                               channel, on_change_notice, d, &d->sub);
    if (err)
        goto out;
    store_set_state_cb(d->sub, on_sub_state, d);
    store_set_state_cb(d->st, on_store_state, d);
    d->api.st = d->st;
    d->api.suites = d->suites;
    d->api.proxy = d->proxy;
    if (httpd_new(d->base, &d->http) != BRK_OK)
        goto out;
    err = httpd_listen(d->http, "callback", d->cfg->callback_listen,
                       CALLBACK_MAX_BODY, callback_handle, d->cb);
    if (err) {
        log_error("cannot listen on callback_listen %s: %s",
                  d->cfg->callback_listen, strerror(errno));
        goto out;
    }
    err = httpd_listen(d->http, "internal", d->cfg->internal_listen,
                       INTERNAL_MAX_BODY, internal_api_handle, &d->api);
    if (err) {
        log_error("cannot listen on internal_listen %s: %s",
                  d->cfg->internal_listen, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    brk_free(url);
    return rc;
}

static void
teardown(struct daemon *d)
{
    /* requests are drained; answer any Redis callback still pending
     * before the state it points at goes away */
    httpd_free(d->http);
    proxy_free(d->proxy);
    if (d->worker != NULL)
        worker_stop(d->worker);
    /* each free answers what is pending on it with BRK_ERR_SHUTDOWN;
     * the order lets every chain unwind into live objects */
    wecom_api_free(d->wx);
    store_free(d->sub);
    store_free(d->st);
    tokens_free(d->tok);
    worker_free(d->worker);
    callback_free(d->cb);
    suites_free(d->suites);
    redis_embed_stop(d->embed);
    if (d->base != NULL)
        event_base_free(d->base);
    keyring_free(d->kr);
    scope_map_free(d->scopes);
    config_free(d->cfg);
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
        struct scope_map *sm = NULL;

        /* the scope files are part of the configuration: a typo in one
         * must fail the check, with its file, line and column */
        if (scope_map_load(d.cfg->scopes_dir, &sm, &info) != BRK_OK) {
            fprintf(stderr, "%s\n", info.msg);
            config_free(d.cfg);
            return 1;
        }
        scope_map_free(sm);
        printf("configuration OK\n");
        config_free(d.cfg);
        return 0;
    }
    log_init((enum log_level)d.cfg->log_level, d.cfg->log_json);
    signal(SIGPIPE, SIG_IGN);
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
    log_info("wecom-broker %s ready to serve (%zu suite(s), redis %s)",
             BROKER_VERSION, d.cfg->nsuites,
             d.embed ? "embedded" : "external");
    event_base_dispatch(d.base);
    log_info("stopped");
out:
    for (i = 0; i < nitems(sigs); i++)
        if (sigev[i] != NULL)
            event_free(sigev[i]);
    teardown(&d);
    curl_global_cleanup();
    return d.exit_code;
}
