/*
 * The extra event-loop threads of `workers = N`: loops 1..N-1, each a
 * thread serving the internal listener (the service API, /readyz,
 * /metrics) on its own socket of a SO_REUSEPORT group, with its own Redis
 * connections (commands, and change notices to drop its caches), WeCom
 * client, token fetcher, budget leases, audit batch and service API
 * caches. Loop 0 is the main thread, which keeps everything else: the
 * callback listener and the browser routes, the event workers, signals,
 * reloads and housekeeping. The main thread talks to a loop only through
 * its mailbox (event_active from another thread, which needs
 * evthread_use_pthreads before any event_base is made).
 */
#ifndef LOOPS_H
#define LOOPS_H

#include <stddef.h>

#include "broker.h"

struct cache_budget;
struct config;
struct keyring;
struct scope_map;
struct budget;
struct proxy;
struct tokens;
struct loops;

/* Everything borrowed must outlive the loops. */
struct loops_opts {
    const struct config *cfg;
    const char *redis_url; /* the store's URL (embedded or configured) */
    long redis_timeout_ms;
    const char *channel; /* the change notices' channel */
    const struct keyring *kr;
    const struct scope_map *scopes;
    struct cache_budget *cache_budget; /* shared by every loop's caches */
    size_t max_body;                   /* the internal listener's */
    long drain_ms;                     /* a stop waits this long at most */
};

/*
 * Start n loops, loop i serving the listening socket fds[i] (consumed on
 * every path). Returns BRK_OK with *out (owned: loops_free),
 * BRK_ERR_NOMEM, BRK_ERR_IO (a thread could not start), or what building
 * a loop's parts returned; nothing runs then.
 */
enum brk_err loops_start(const struct loops_opts *o, const int *fds, size_t n,
                         struct loops **out) BRK_WUR;
/* Tell every loop to drain its listener and stop (returns at once). */
void loops_stop(struct loops *l);
/* Stop if not yet, wait for every thread, free. NULL is a no-op. */
void loops_free(struct loops *l);

/* Reload: each loop takes kr, or m, from its next turn (borrowed: keep
 * the previous one alive; see loops_scopes_idle). */
void loops_set_keyring(struct loops *l, const struct keyring *kr);
void loops_set_scopes(struct loops *l, const struct scope_map *m);
/* Nonzero once every loop serves the latest scope map and has no
 * service request open: a replaced map may go. Any thread. */
int loops_scopes_idle(const struct loops *l);
/* Each loop reopens its audit file at path ("" none); a failure is
 * logged by the loop. */
void loops_audit_reopen(struct loops *l, const char *path);

/* A change notice on the channel, for one loop's parts: a tenant's
 * "<suite> <corpid>", a service's "svc <id>" or the budget's pause.
 * Borrowed; what the main loop does with its own. */
void loops_notice(struct tokens *tok, struct budget *b, struct proxy *p,
                  const char *msg, size_t len);

#endif /* LOOPS_H */
