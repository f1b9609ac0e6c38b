/*
 * Asynchronous WeCom HTTP client on an event_base: JSON control-plane calls
 * and streamed data-path calls, each bounded in time and size, with a token
 * bucket per tenant. Requires curl_global_init() by the program.
 */
#ifndef WECOM_API_H
#define WECOM_API_H

#include <stddef.h>

#include <jansson.h>

#include "broker.h"

struct event_base;
struct wecom_api;

struct wecom_api_opts {
    const char *base;  /* e.g. "https://qyapi.weixin.qq.com" (no query);
                          NULL: a client for wecom_api_post only */
    long timeout_ms;   /* connect + total, per call; > 0 */
    size_t max_body;   /* larger bodies: BRK_ERR_UPSTREAM_TOOBIG; > 0 */
    long rate_per_key; /* calls/s per rate key (burst = rate); 0: none */
    unsigned long rate_max_keys; /* rate keys tracked; 0: 65536 */
};

/* Result of a call; everything in it is borrowed for the callback only. */
struct wecom_api_result {
    enum brk_err err;
    long http_status;   /* 0 when no response */
    long errcode;       /* WeCom's errcode; 0 when absent */
    const char *errmsg; /* WeCom's errmsg for BRK_ERR_WECOM, else NULL */
    json_t *body;       /* the object for BRK_OK / BRK_ERR_WECOM, else NULL */
    double seconds;     /* duration of the transfer */
};

typedef void wecom_api_cb(const struct wecom_api_result *res, void *arg);

/*
 * Data path: called for each body chunk in order. Return 0 to continue;
 * a BRK_ERR_* value to abort with it; anything else aborts with
 * BRK_ERR_UPSTREAM_BAD.
 */
typedef int wecom_api_chunk_cb(const char *data, size_t len, void *arg);

/* Create a client on base; owned, free with wecom_api_free. */
enum brk_err wecom_api_new(struct event_base *base,
                           const struct wecom_api_opts *opts,
                           struct wecom_api **out) BRK_WUR;

/* Abort every call (callbacks get BRK_ERR_SHUTDOWN) and free; NULL ok. */
void wecom_api_free(struct wecom_api *api);

/* Start a JSON call; cb runs exactly once, never before this returns. */
enum brk_err wecom_api_call(struct wecom_api *api, const char *method,
                            const char *path_query, const char *json_body,
                            const char *rate_key, wecom_api_cb *cb,
                            void *arg) BRK_WUR;

/* Start a streamed call; done runs exactly once with body NULL. */
enum brk_err wecom_api_stream(struct wecom_api *api, const char *method,
                              const char *path_query, const char *json_body,
                              const char *rate_key, wecom_api_chunk_cb *on_data,
                              wecom_api_cb *done, void *arg) BRK_WUR;

/* A streamed POST of a body that is not JSON (len bytes, copied), sent
 * under content_type, a whole "Content-Type: ..." line (copied); otherwise as
 * wecom_api_stream. */
enum brk_err wecom_api_stream_body(struct wecom_api *api,
                                   const char *path_query,
                                   const char *content_type, const char *body,
                                   size_t len, const char *rate_key,
                                   wecom_api_chunk_cb *on_data,
                                   wecom_api_cb *done, void *arg) BRK_WUR;
/*
 * A POST to an absolute URL that is not WeCom's (a service's event
 * receiver): the body as given, the reply kept raw, never parsed, at most
 * max_reply bytes. Redirects are not followed.
 */
struct wecom_api_post {
    const char *url;            /* http:// or https://, printable ASCII */
    const char *content_type;   /* e.g. "text/xml" */
    const char *const *headers; /* "Name: value" lines (copied) */
    size_t nheaders;
    const char *body; /* copied */
    size_t len;
    size_t max_reply; /* > 0 */
};

/* The reply: status 0 when none; body borrowed for the call (NUL
 * terminated; "" when none). err: BRK_OK for any complete HTTP reply,
 * BRK_ERR_UPSTREAM_TIMEOUT, BRK_ERR_UPSTREAM_TOOBIG (a longer reply),
 * BRK_ERR_UPSTREAM (connect, TLS, reset), BRK_ERR_UPSTREAM_BAD,
 * BRK_ERR_NOMEM, BRK_ERR_SHUTDOWN. */
typedef void wecom_api_post_cb(enum brk_err err, long status, const char *body,
                               size_t len, double seconds, void *arg);

/* Start a POST; cb runs exactly once, never before this returns. Returns
 * BRK_ERR_INVAL for a bad URL or options (cb never runs), BRK_ERR_NOMEM,
 * BRK_ERR_SHUTDOWN. */
enum brk_err wecom_api_post(struct wecom_api *api,
                            const struct wecom_api_post *p,
                            wecom_api_post_cb *cb, void *arg) BRK_WUR;

/* Calls accepted whose callback has not run yet. */
unsigned wecom_api_inflight(const struct wecom_api *api);

#endif /* WECOM_API_H */
