/*
 * The Redis connection: hiredis async on libevent, with what hiredis 0.14
 * lacks added here — a deadline on every command, a health ping, and
 * reconnection with exponential backoff.
 */
#ifndef STORE_H
#define STORE_H

#include <stddef.h>

#include "broker.h"

struct event_base;
struct redisReply;
struct store;

/*
 * Called exactly once per accepted command. err is BRK_OK with a reply,
 * BRK_ERR_STORE with an error reply (reply->str says why) or with NULL when
 * the connection was lost, or BRK_ERR_TIMEOUT with NULL. The reply is
 * borrowed for the duration of the call.
 */
typedef void store_reply_cb(enum brk_err err, struct redisReply *reply,
                            void *arg);

/* Called when the connection comes up (up = 1) or goes down (up = 0). */
typedef void store_state_cb(int up, void *arg);

/* A message published on a subscribed channel; borrowed for the call. */
typedef void store_message_cb(const char *msg, size_t len, void *arg);

/*
 * Parse url (redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N],
 * see config_redis_parse) and start connecting on base. Commands time out after
 * cmd_timeout_ms. Returns BRK_ERR_CONFIG for a bad URL. Owned result:
 * store_free.
 */
enum brk_err store_new(struct event_base *base, const char *url,
                       long cmd_timeout_ms, struct store **out) BRK_WUR;
/*
 * A connection that only subscribes to channel and calls cb for each
 * message; it resubscribes after every reconnect (messages published
 * while it was down are lost: watch its state to drop caches). Commands
 * cannot be sent on it.
 */
enum brk_err store_new_subscriber(struct event_base *base, const char *url,
                                  const char *channel, store_message_cb *cb,
                                  void *arg, struct store **out) BRK_WUR;
/* Close the connection; pending commands get BRK_ERR_SHUTDOWN. */
void store_free(struct store *s);
/* Register the state callback (one; NULL clears it). */
void store_set_state_cb(struct store *s, store_state_cb *cb, void *arg);
/* Nonzero while connected and answering. */
int store_is_up(const struct store *s);
/* Times the connection has been (re)established. */
unsigned long store_generation(const struct store *s);

/*
 * Send a command. On BRK_OK cb is called exactly once, never before this
 * returns. On any other result (BRK_ERR_STORE: not connected) cb is never
 * called. Arguments are copied. "EVAL script numkeys ..." (script from
 * scripts.h) goes as EVALSHA of the script, and again as EVAL when Redis
 * does not know the digest: the reply is the script's either way.
 */
enum brk_err store_cmd_argv(struct store *s, store_reply_cb *cb, void *arg,
                            int argc, const char **argv,
                            const size_t *argvlen) BRK_WUR;
/*
 * Queue a command whose reply is read and dropped: no callback, no
 * deadline of its own, nothing allocated here beyond hiredis's copy of
 * the command. For a group of commands sent back to back (a pipeline):
 * the caller must follow the group with store_cmd_argv, whose reply comes
 * after theirs (replies come in order on the one connection) and stands
 * for the group: its deadline covers them, and an error reply or a lost
 * connection there is the group's answer. An error reply to one of them
 * alone is not seen. Not for EVAL (BRK_ERR_INVAL: it needs the digest's
 * reply) nor on a subscriber. BRK_ERR_STORE when not connected or hiredis
 * refuses the command; nothing is queued then.
 */
enum brk_err store_cmd_argv_noreply(struct store *s, int argc,
                                    const char **argv,
                                    const size_t *argvlen) BRK_WUR;
/*
 * store_cmd_argv with a deadline of timeout_ms (> 0, else BRK_ERR_INVAL)
 * instead of the connection's: for a reply known to be large (a big
 * tenant's directory). As with any command, passing it drops the
 * connection, and what was sent after it waits for its reply.
 */
enum brk_err store_cmd_argv_timeout(struct store *s, long timeout_ms,
                                    store_reply_cb *cb, void *arg, int argc,
                                    const char **argv,
                                    const size_t *argvlen) BRK_WUR;

#endif /* STORE_H */
