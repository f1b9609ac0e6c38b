/*
 * Internals of the service API shared by its sources: proxy.c (routing,
 * replies, the upstream call, lifetime), proxy_records.c (services,
 * tenants, ranges and their caches), proxy_gettoken.c, proxy_params.c
 * (parameter checks) and proxy_oauth.c (member OAuth, service side).
 * Included only by those files; everything else goes through proxy.h.
 */
#ifndef BROKER_PROXY_INT_H
#define BROKER_PROXY_INT_H

#include <stddef.h>

#include <jansson.h>

#include "dynbuf.h"
#include "errcodes.h"
#include "filter.h"
#include "grant.h"
#include "httpd.h"
#include "keyring.h"
#include "proxy.h"
#include "query.h"
#include "record.h"
#include "scope_map.h"
#include "visible_range.h"

/* Filters a loop keeps for its next requests: what a burst of concurrent
 * data calls needs (about 32 KB each while idle, 1 MB at most a loop). */
#define PROXY_IDLE_FILTERS 32
/* Bytes of a request's own storage for its upstream query and its copy of
 * the corp token: what most need, so neither allocates (longer ones move
 * to the heap). WeCom's tokens are up to 512 bytes. */
#define PREQ_QS_INLINE    256
#define PREQ_TOKEN_INLINE 513
/* Their bounds: the query as forwarded, a corp token (tokens.c: 2048). */
#define PROXY_QS_MAX    (64 * 1024)
#define PROXY_TOKEN_MAX 4096

/* A narrowed range shared by the cache and requests in flight. */
struct range_ref {
    int refs;
    struct vrange *v;
};

struct proxy {
    struct event_base *base;
    const struct config *cfg;
    const struct keyring *kr;
    struct store *st;
    struct suites *suites;
    struct tokens *tok;
    struct wecom_api *api;
    struct budget *budget; /* NULL: every WeCom call is refused */
    struct audit *audit;   /* NULL: no audit trail (tests) */
    const struct scope_map *scopes;
    struct cache *tokens;       /* token hash -> record_token */
    struct cache *services;     /* id -> record_service */
    struct cache *tenants;      /* "suite corp" -> record_tenant */
    struct cache *ranges;       /* "suite corp svc" -> vrange (narrowed) */
    struct tload *loads;        /* tenant loads under way */
    struct prefresh *refreshes; /* token and service reads ahead of expiry */
    struct event *expire;       /* drops expired cache entries */
    /* filters requests gave back, cleared, for the next ones (owned) */
    struct filter *idle_filters[PROXY_IDLE_FILTERS];
    size_t nidle_filters;
    unsigned inflight; /* atomic: read from other threads */
    /* bumped by every change notice and reconnect: a record read before
     * the latest one may serve the request that read it, but is not
     * cached, so a revoked service or token never serves again */
    unsigned long gen;
};

struct tload;
struct prefresh;

struct preq {
    struct proxy *p;
    unsigned long gen; /* p->gen when the request arrived */
    struct httpd_req *r;
    const struct scope_map *scopes;
    struct query *q;
    json_t *body;
    char path[256];
    int post;
    int oauth; /* 1 getuserinfo, 2 getuserdetail */
    unsigned char tdk[KEYRING_KEY_LEN];
    /* who */
    struct record_service *svc;
    struct record_tenant *ten;
    const struct vrange *range;
    struct range_ref *narrowed; /* holds range alive when narrowed */
    struct record_token tr;
    char token_hash[65];
    /* what */
    const struct scope_endpoint *ep;
    struct scope_grant grant;
    enum grant_refusal why;
    /* the query WeCom is called with (declared parameters, as checked),
     * in upstream_qs_first while it fits */
    struct dynbuf upstream_qs;
    char upstream_qs_first[PREQ_QS_INLINE];
    char *upstream_body;
    /* a body that is not JSON (media/upload): its length and its
     * "Content-Type: ..." line; upstream_len 0 for JSON */
    size_t upstream_len;
    char upstream_ctype[128];
    /* the corp token of the call under way (secret, wiped when freed);
     * told back to the token manager if WeCom refuses it */
    struct dynbuf corp_token;
    char corp_token_first[PREQ_TOKEN_INLINE];
    int retried;
    int budget_held;       /* a call the budget allowed, not yet reported */
    struct filter *filter; /* owned: from proxy_filter_get, given back */
    /* a customer or chat subject: in range only if the reply shows a
     * record of this kind in range (a follow user, the chat's owner) */
    enum scope_record must_see;
    int seen;
    struct pwrite *wr; /* a write's state (proxy_write.c); NULL else */
    /* gettoken */
    size_t suite_i;
    const char *secret;
    size_t secret_len;
};

/* One step of a request's chain: it continues or replies. */
typedef void preq_step(struct preq *q);

/*---- Replies (proxy.c): each ends the request and frees q ----*/

void proxy_reply_error(struct preq *q, enum errcode e, const char *fmt, ...)
    BRK_PRINTF(3, 4);
void proxy_reply_unusable(struct preq *q, const char *what, enum brk_err err);
void proxy_reply_filtered(struct preq *q);
/* what a reply records besides: the request counter, the audit entry */
void proxy_count_request(struct preq *q, long errcode);
void proxy_audit(struct preq *q, long errcode, unsigned long stripped,
                 unsigned long dropped);
void proxy_preq_free(struct preq *q);
/* The upstream call (budget, corp token, WeCom, filter), replying. */
void proxy_start_upstream(struct preq *q);
/* q->filter for root with q's grant and in_range (arg q): an idle one of
 * q's loop, reset, or a new one. Returns BRK_OK, BRK_ERR_NOMEM, or
 * BRK_ERR_INVAL for a NULL root. q->filter must be NULL. */
enum brk_err proxy_filter_get(struct preq *q, const struct scope_node *root,
                              filter_range_cb *in_range) BRK_WUR;
/* Give f (owned, may be NULL) back to p: cleared and kept idle, or freed
 * when PROXY_IDLE_FILTERS are. Cannot fail. */
void proxy_filter_put(struct proxy *p, struct filter *f);
/* Append the percent-encoding of s to d (codec_pct_encode's, a piece at a
 * time: no buffer of 3 * strlen(s)); the pieces are wiped when d is
 * secret. Returns BRK_OK, BRK_ERR_TOOBIG or BRK_ERR_NOMEM (d then
 * emptied, as any failed append). */
enum brk_err proxy_pct_append(struct dynbuf *d, const char *s) BRK_WUR;

/*---- Records and caches (proxy_records.c) ----*/

/* the caches' destructors */
void proxy_svc_unref(void *v);
void proxy_tenant_unref(void *v);
void proxy_range_unref(void *v);
/* and what their values hold, for the byte budget (cache.h) */
size_t proxy_svc_size(const void *v);
size_t proxy_tenant_size(const void *v);
size_t proxy_range_size(const void *v);
void proxy_load_service(struct preq *q, const char *id, preq_step *next);
/* A cached token (by hash) or service past 3/4 of its cache_max_age is read
 * again in the background, so that requests keep finding it cached and
 * never wait for Redis when it would have expired; one read per key at a
 * time. Cannot fail (a read not started leaves the entry to expire). */
void proxy_refresh_token(struct proxy *p, const char *hash, long long age_ms);
/* Once nothing of p may be answered any more (proxy_free): reads still
 * under way drop their result. */
void proxy_records_orphan(struct proxy *p);
void proxy_load_tenant(struct preq *q, preq_step *next);
enum grant_refusal proxy_decide(struct preq *q, long token_gen, int need);
enum brk_err proxy_effective_range(struct preq *q);

/*---- gettoken (proxy_gettoken.c) ----*/

void proxy_gettoken(struct preq *q);

/*---- Parameter checks (proxy_params.c) ----*/

/* They never reply: ERRCODE_OK, or the errcode to refuse the request
 * with and its errmsg in msg (msglen bytes). */
enum errcode proxy_check_query(struct preq *q, char *msg, size_t msglen);
enum errcode proxy_check_body(struct preq *q, char *msg, size_t msglen);

/*---- Writes (proxy_write.c) ----*/

struct pwrite;

/* A write endpoint's request once its service and tenant are loaded: the
 * rest of the chain of SPEC §5b; replies exactly once. */
void proxy_write_tenant(struct preq *q);
/* A filtered reply about to be sent (out, len): a write's creators and
 * idempotent reply are stored; a customer read feeds the customer index.
 * Sends nothing to the service; cannot fail. */
void proxy_write_replied(struct preq *q, const char *out, size_t len);
/* The write's audit fields (body key names, body SHA-256; media/upload:
 * the media's content type, size and SHA-256) appended to kv at n;
 * returns the new n (at most 6 more). */
size_t proxy_write_audit(const struct preq *q, const char **kv, size_t n);
/* Frees q->wr, releasing an idempotency key left pending. */
void proxy_write_free(struct preq *q);

/*---- media/upload (proxy_media.c) ----*/

/* The body forwarded for a media/upload and what the audit says of it. */
struct proxy_media {
    char *body; /* owned: the multipart body the broker built */
    size_t len;
    char ctype_line[128]; /* "Content-Type: multipart/form-data; ..." */
    char part_ctype[128]; /* the media's content type */
    size_t size;          /* the media's bytes */
    char sha[65];         /* SHA-256 of the media, hex */
};

/* The request's body and type checked (multipart.h) and the forwarded body
 * built into *out; ERRCODE_OK, or the errcode and msg to refuse with.
 * *out is written only on success. */
enum errcode proxy_media_build(struct preq *q, struct proxy_media *out,
                               char *msg, size_t msglen);

/*---- Member OAuth, service side (proxy_oauth.c) ----*/

void proxy_oauth_service(struct preq *q);
/* frees the fields tree built on first use; cannot fail */
void proxy_oauth_free(void);

#endif
