/*
 * The upstream budget's arithmetic (see budget_window.h): pure functions
 * over the time the caller passes.
 */
#include "budget_window.h"

long long
budget_window_of(long long wall_ms, long long len_ms)
{
    /* floor division: a clock before the epoch still numbers windows */
    if (wall_ms < 0)
        return -((-wall_ms + len_ms - 1) / len_ms);
    return wall_ms / len_ms;
}

long long
budget_window_end(long long window, long long len_ms)
{
    return (window + 1) * len_ms;
}

long
budget_class_limit(long limit, enum budget_class cls)
{
    if (limit < 0)
        return 0;
    return cls == BUDGET_BACKGROUND ? limit / 2 : limit;
}

long
budget_block_max(long limit)
{
    long m = limit / BUDGET_BLOCK_SHARE;

    return m < 1 ? 1 : m;
}

void
budget_lease_init(struct budget_lease *l)
{
    l->window = -1;
    l->left = 0;
    l->block = 1;
    l->granted_ms = -1;
    l->refused_until = 0;
}

int
budget_lease_has(const struct budget_lease *l, long long window)
{
    return l->window == window && l->left > 0;
}

int
budget_lease_low(const struct budget_lease *l, long long window)
{
    return budget_lease_has(l, window) &&
           l->left <= l->block / BUDGET_LOW_SHARE;
}

int
budget_lease_spend(struct budget_lease *l, long long window)
{
    if (l->window != window)
        l->left = 0;
    if (l->left <= 0)
        return 0;
    l->left--;
    return 1;
}

long
budget_lease_want(const struct budget_lease *l, long limit,
                  unsigned long waiting)
{
    long want = l->block, max = budget_block_max(limit);

    if (waiting > (unsigned long)want)
        want = waiting > (unsigned long)max ? max : (long)waiting;
    if (want > max)
        want = max;
    return want < 1 ? 1 : want;
}

void
budget_lease_granted(struct budget_lease *l, long long window, long got,
                     long limit, long long now_ms)
{
    long max = budget_block_max(limit);

    /* one request per lease is under way at a time, so a grant for an
     * older window means the clock stepped back: it is the one to use */
    if (got <= 0)
        return;
    if (window != l->window) {
        l->window = window;
        l->left = 0;
    }
    l->left += got;
    /* how long the previous block lasted says how hot the key is */
    if (l->granted_ms >= 0) {
        if (now_ms - l->granted_ms < BUDGET_HOT_MS)
            l->block = l->block > max / 2 ? max : l->block * 2;
        else if (now_ms - l->granted_ms > BUDGET_QUIET_MS)
            l->block = l->block / 2;
    }
    if (l->block > max)
        l->block = max;
    if (l->block < 1)
        l->block = 1;
    l->granted_ms = now_ms;
}

void
budget_lease_refuse(struct budget_lease *l, long long until)
{
    if (until > l->refused_until)
        l->refused_until = until;
}

int
budget_lease_refused(const struct budget_lease *l, long long wall_ms)
{
    return wall_ms < l->refused_until;
}

int
budget_lease_spent(const struct budget_lease *l, long long window,
                   long long wall_ms)
{
    return budget_lease_refused(l, wall_ms) && !budget_lease_has(l, window);
}

void
budget_lease_drop(struct budget_lease *l)
{
    l->left = 0;
    l->window = -1;
}

void
budget_conc_init(struct budget_conc *c)
{
    c->limit = 0;
    c->ceiling = 0;
    c->since_ms = 0;
}

long
budget_conc_allowed(struct budget_conc *c, long long now_ms)
{
    long long grown;

    if (c->limit == 0)
        return 0;
    grown = now_ms > c->since_ms
                ? (now_ms - c->since_ms) / BUDGET_CONC_RECOVER_MS
                : 0;
    if (grown >= c->ceiling - c->limit) {
        budget_conc_init(c);
        return 0;
    }
    return c->limit + (long)grown;
}

void
budget_conc_lower(struct budget_conc *c, long inflight, long long now_ms)
{
    long base = budget_conc_allowed(c, now_ms);

    if (base == 0)
        base = inflight;
    if (base < 1)
        base = 1;
    c->limit = base / 2 < 1 ? 1 : base / 2;
    c->ceiling = base > c->limit ? base : c->limit + 1;
    c->since_ms = now_ms;
}
