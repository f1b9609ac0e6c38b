/*
 * The upstream budget (SPEC §5): WeCom's call limits per (corpid, API)
 * and per API, per minute and per hour, kept across every broker instance
 * in Redis. An instance leases blocks of calls, spends them locally and
 * asks for the next block before one runs out, so the hot path normally
 * makes no Redis call for its budget and waits for none. A 45009 from
 * WeCom pauses that (corpid, API) on every instance; a 45033 lowers that
 * (corpid, API)'s concurrency in this process.
 */
#ifndef BUDGET_H
#define BUDGET_H

#include <stddef.h>

#include "broker.h"

struct event_base;
struct store;
struct budget;

/* Who calls: a service request may use all of a budget; background work
 * (directory sync, event work) at most half of each (corpid, API) one. */
enum budget_class { BUDGET_SERVICE = 0, BUDGET_BACKGROUND, BUDGET__CLASSES };

/* What budget_take decided. */
enum budget_result {
    BUDGET_OK = 0,      /* call WeCom now, then budget_report once */
    BUDGET_SPENT,       /* a minute or hour budget is spent: 45009 */
    BUDGET_PAUSED,      /* WeCom answered 45009 within 60 s: 45009 */
    BUDGET_BUSY,        /* over the concurrency a 45033 left: 45033 */
    BUDGET_UNAVAILABLE, /* Redis unavailable or shutting down: -1, 503 */
    BUDGET__RESULTS
};

/* Called exactly once per accepted budget_take, never from inside it. */
typedef void budget_cb(enum budget_result res, void *arg);

/* Longest API name ("user/get": WeCom's path without /cgi-bin/). */
#define BUDGET_API_MAX 128
/* A change notice starting with this is the budget's (see budget_notice). */
#define BUDGET_NOTICE_PREFIX "budget "
/* How long a 45009 from WeCom pauses its (corpid, API): WeCom's block. */
#define BUDGET_PAUSE_MS 60000

struct budget_opts {
    const char *key_prefix;    /* every Redis key starts with it */
    const char *channel;       /* full name of the change-notice channel */
    long per_corp;             /* calls per minute per (corpid, API) */
    long per_corp_hour;        /* calls per hour per (corpid, API) */
    long per_api;              /* calls per minute per API, all tenants */
    long per_api_hour;         /* calls per hour per API, all tenants */
    unsigned long max_entries; /* (corpid, API) pairs kept; 0: 32768 */
};

/* Create the budget on base over st (both borrowed, must outlive it).
 * Owned: budget_free. */
enum brk_err budget_new(struct event_base *base, struct store *st,
                        const struct budget_opts *opts,
                        struct budget **out) BRK_WUR;
/* Every waiting take gets BUDGET_UNAVAILABLE; NULL is a no-op. */
void budget_free(struct budget *b);

/*
 * Ask for one call of api ("user/get") for corpid. Returns BRK_OK and cb
 * then runs exactly once from the event loop; or BRK_ERR_INVAL (a bad
 * corpid, api or class), BRK_ERR_NOMEM or BRK_ERR_SHUTDOWN, and cb never
 * runs. On BUDGET_OK the caller calls WeCom (or gives up) and then calls
 * budget_report exactly once for that call.
 */
enum brk_err budget_take(struct budget *b, const char *corpid, const char *api,
                         enum budget_class cls, budget_cb *cb,
                         void *arg) BRK_WUR;
/*
 * The end of a call budget_take allowed: wecom_errcode is WeCom's errcode
 * (0 for success), or -1 when WeCom gave none or was not called. 45009
 * pauses (corpid, api) on every instance for BUDGET_PAUSE_MS; 45033 lowers
 * its concurrency here. Cannot fail.
 */
void budget_report(struct budget *b, const char *corpid, const char *api,
                   long wecom_errcode);

/* A message from the change-notice channel starting with
 * BUDGET_NOTICE_PREFIX: another instance's pause. */
void budget_notice(struct budget *b, const char *msg, size_t len);
/* Drop every lease and local refusal (Redis reconnected). */
void budget_reset(struct budget *b);

/* (corpid, API) and API entries kept in this process; cannot fail. */
unsigned long budget_entries(const struct budget *b);

/* The errcode a service gets for res: 0, 45009, 45033 or -1. */
long budget_errcode(enum budget_result res);
/* Stable snake_case name of res, for logs and metric labels. */
const char *budget_result_name(enum budget_result res);

#endif /* BUDGET_H */
