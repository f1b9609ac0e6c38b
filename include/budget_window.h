/*
 * The upstream budget's arithmetic, without I/O: fixed windows, the
 * background class's half, leases of calls taken from a shared window,
 * when to ask for the next block and its size, and the concurrency a
 * 45033 leaves. The
 * caller passes the time; budget.c keeps the shared counters in Redis.
 */
#ifndef BUDGET_WINDOW_H
#define BUDGET_WINDOW_H

#include "broker.h"
#include "budget.h"

#define BUDGET_MINUTE_MS 60000LL
#define BUDGET_HOUR_MS   3600000LL

/* A block is at most this fraction (1/N) of a minute's budget, so the
 * calls instances hold unspent when a window ends stay small. */
#define BUDGET_BLOCK_SHARE 100
/* A lease spent within this many ms asks for twice the block next time;
 * one that lasted longer than BUDGET_QUIET_MS asks for half. */
#define BUDGET_HOT_MS   1000LL
#define BUDGET_QUIET_MS 10000LL
/* The next block is asked for ahead once no more than 1/N of the block
 * is left, so takes go on from what is left while Redis answers. */
#define BUDGET_LOW_SHARE 4
/* After a 45033 the allowed concurrency grows by one every this many
 * ms, until it is back where the 45033 came: then it is unlimited. */
#define BUDGET_CONC_RECOVER_MS 5000LL

/* The window of length len_ms holding wall_ms (windows start at the
 * epoch, so every instance numbers them alike). */
long long budget_window_of(long long wall_ms, long long len_ms);
/* The wall-clock ms at which window ends. */
long long budget_window_end(long long window, long long len_ms);
/* What cls may use of a (corpid, API) limit: all of it for services,
 * half (rounded down) for background work. */
long budget_class_limit(long limit, enum budget_class cls);
/* The largest block leased from a minute budget of limit: 1..limit. */
long budget_block_max(long limit);

/* Calls one instance holds of one shared minute window. */
struct budget_lease {
    long long window;        /* minute window of the units; -1: none */
    long left;               /* units leased and not yet spent */
    long block;              /* units the next request asks for, >= 1 */
    long long granted_ms;    /* monotonic ms of the last grant; -1: none */
    long long refused_until; /* wall ms; the budget is spent until then */
};

void budget_lease_init(struct budget_lease *l);
/* Spend one unit of window; 1 when there was one. Units of any other
 * window are dropped: a lease never outlives its window. */
int budget_lease_spend(struct budget_lease *l, long long window);
/* Nonzero when a unit of window is at hand. */
int budget_lease_has(const struct budget_lease *l, long long window);
/* Nonzero when units of window are at hand but no more than
 * 1/BUDGET_LOW_SHARE of the block: time to ask for the next one. */
int budget_lease_low(const struct budget_lease *l, long long window);
/* Units to ask for: the block, raised to the waiting calls (0 when
 * asking ahead), never over budget_block_max(limit). */
long budget_lease_want(const struct budget_lease *l, long limit,
                       unsigned long waiting);
/* got units (>= 0) were granted for window at now_ms (monotonic): add
 * them (a grant for another window replaces what is held) and size the
 * next block from how long the previous lease lasted. */
void budget_lease_granted(struct budget_lease *l, long long window, long got,
                          long limit, long long now_ms);
/* The shared budget is spent until wall ms until. */
void budget_lease_refuse(struct budget_lease *l, long long until);
/* Nonzero while a refusal holds at wall_ms. */
int budget_lease_refused(const struct budget_lease *l, long long wall_ms);
/* Nonzero when a take in window at wall_ms is refused as spent: a
 * refusal holds and no unit of window is at hand (units granted were
 * within the limit, so they are spent first). */
int budget_lease_spent(const struct budget_lease *l, long long window,
                       long long wall_ms);
/* Forget the units held (they stay counted as spent in Redis). */
void budget_lease_drop(struct budget_lease *l);

/* Concurrency allowed to one (corpid, API) in this process. */
struct budget_conc {
    long limit;         /* 0: unlimited */
    long ceiling;       /* back to unlimited when recovery reaches it */
    long long since_ms; /* monotonic ms of the last 45033 */
};

void budget_conc_init(struct budget_conc *c);
/* Calls allowed at once at now_ms; 0 means unlimited. */
long budget_conc_allowed(struct budget_conc *c, long long now_ms);
/* WeCom answered 45033 with inflight calls (>= 1) under way: halve
 * what was allowed (or inflight when unlimited), never below 1. */
void budget_conc_lower(struct budget_conc *c, long inflight, long long now_ms);

#endif /* BUDGET_WINDOW_H */
