/*
 * The embedded Redis: with `redis` empty the broker runs a private
 * redis-server child on a unix socket under state_dir (AOF everysec, no RDB
 * snapshots), and stops it when the broker exits.
 */
#ifndef REDIS_EMBED_H
#define REDIS_EMBED_H

#include <sys/types.h>

#include "broker.h"

struct redis_embed;

/*
 * Lock state_dir (one broker per directory), start redis-server and wait
 * until it answers PING (at most wait_ms). The child dies with the broker
 * even on SIGKILL. *url receives "unix:///…/redis.sock" (owned, brk_free).
 * Returns BRK_ERR_IO (with info) when the directory is locked or the server
 * does not come up. Owned result: redis_embed_stop.
 */
enum brk_err redis_embed_start(const char *state_dir, long wait_ms,
                               struct redis_embed **out, char **url,
                               struct brk_errinfo *info) BRK_WUR;

/* Pid of the child, for SIGCHLD handling. */
pid_t redis_embed_pid(const struct redis_embed *re);

/* Ask the child to shut down (AOF flushed), wait, and release the lock.
 * NULL is a no-op. */
void redis_embed_stop(struct redis_embed *re);

/* Note that the child exited (status from waitpid) so stop does not wait. */
void redis_embed_reaped(struct redis_embed *re);

#endif /* REDIS_EMBED_H */
