/*
 * Internal listener routes (see internal_api.h). Replies are JSON in
 * WeCom's errcode/errmsg shape except the operational endpoints, which
 * follow their own conventions (plain "ok", Prometheus text).
 */
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "dynbuf.h"
#include "httpd.h"
#include "internal_api.h"
#include "metrics.h"
#include "proxy.h"
#include "store.h"
#include "suites.h"

static void
json_reply(struct httpd_req *r, int status, const char *body)
{
    httpd_reply(r, status, "application/json; charset=utf-8", body,
                strlen(body));
}

static void
readyz(struct httpd_req *r, const struct internal_api *api)
{
    struct dynbuf d;
    const char *reasons[5];
    size_t n = 0, i;
    char *body = NULL, replicas[96];

    if (!store_is_up(api->st) ||
        (api->ack_st != NULL && !store_is_up(api->ack_st)))
        reasons[n++] = "redis unavailable";
    else if (!suites_keys_ready(api->suites))
        reasons[n++] = "suite data keys not loaded";
    if (api->min_replica_acks > 0 && api->replicas < api->min_replica_acks) {
        if (api->replicas < 0)
            snprintf(replicas, sizeof(replicas),
                     "redis replicas unknown, redis_min_replica_acks %ld",
                     api->min_replica_acks);
        else
            snprintf(replicas, sizeof(replicas),
                     "redis replicas %ld < redis_min_replica_acks %ld",
                     api->replicas, api->min_replica_acks);
        reasons[n++] = replicas;
    }
    if (api->audit != NULL && !audit_file_ok(api->audit))
        reasons[n++] = "audit_file not writable";
    dynbuf_init(&d, 4096);
    if (dynbuf_printf(&d, "{\"ready\":%s,\"reasons\":[", n ? "false" : "true"))
        goto fail;
    for (i = 0; i < n; i++)
        if (dynbuf_printf(&d, "%s\"%s\"", i ? "," : "", reasons[i]))
            goto fail;
    if (dynbuf_add_str(&d, "]}") || dynbuf_take(&d, &body, NULL))
        goto fail;
    json_reply(r, n ? 503 : 200, body);
    brk_free(body);
    return;
fail:
    json_reply(r, 503, "{\"ready\":false,\"reasons\":[\"out of memory\"]}");
}

static void
metrics(struct httpd_req *r, const struct internal_api *api)
{
    struct dynbuf d;
    char *body = NULL;
    size_t len = 0;

    metrics_set(METRICS_REDIS_UP, NULL, store_is_up(api->st) ? 1 : 0);
    dynbuf_init(&d, 8 * 1024 * 1024);
    if (metrics_render(&d) || dynbuf_take(&d, &body, &len)) {
        httpd_reply_text(r, 500, "metrics unavailable\n");
        return;
    }
    httpd_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
    brk_free(body);
}

void
internal_api_handle(struct httpd_req *r, void *arg)
{
    const struct internal_api *api = arg;
    const char *path = httpd_path(r);
    const char *method = httpd_method(r);
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    if (strcmp(path, "/healthz") == 0 && get) {
        r->route = "healthz";
        httpd_reply_text(r, 200, "ok");
    } else if (strcmp(path, "/readyz") == 0 && get) {
        r->route = "readyz";
        readyz(r, api);
    } else if (strcmp(path, "/metrics") == 0 && get) {
        r->route = "metrics";
        metrics(r, api);
    } else {
        proxy_handle(r, api->proxy);
    }
}
