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
 * A batch: commands sent back to back on the connection (a pipeline: one
 * write) whose replies are only judged, each as ok or failed, and counted
 * for one callback. Per command nothing is allocated here beyond
 * hiredis's copy of it and its place in hiredis's reply queue; per batch
 * one struct and one deadline (the connection's command timeout, from
 * store_batch_end). For writes whose replies say nothing but "done" (the
 * audit's XADDs).
 *
 * Called exactly once per batch that queued a command, once every one of
 * them has its answer: ok commands answered with anything but an error
 * reply; failed ones refused with an error reply (a command Redis will
 * refuse again: a key of another type, maxmemory); unanswered ones never
 * answered (the connection lost, the deadline passed, the store freed) or
 * answered READONLY (a replica: the primary moved). The unanswered are
 * always the batch's last commands: from the first one on, every later
 * command counts so, whatever its reply, so a caller that sends those
 * again keeps their order (a command that was applied but whose reply was
 * lost may then be applied twice). err is BRK_OK when all are ok, else
 * what the first failure was: BRK_ERR_STORE (an error reply, or the
 * connection lost), BRK_ERR_TIMEOUT or BRK_ERR_SHUTDOWN; why is that
 * first error reply's text (cut at STORE_WHY_MAX - 1 bytes), or NULL when
 * it was none; borrowed for the call.
 */
struct store_batch;
#define STORE_WHY_MAX 128
typedef void store_batch_cb(size_t ok, size_t failed, size_t unanswered,
                            enum brk_err err, const char *why, void *arg);

/*
 * Start a batch. BRK_ERR_STORE when not connected, BRK_ERR_INVAL on a
 * subscriber, BRK_ERR_NOMEM; *out only on BRK_OK. The batch is the
 * caller's until store_batch_end, which must follow in the same event-loop
 * turn (nothing is sent before the loop runs).
 */
enum brk_err store_batch_begin(struct store *s, store_batch_cb *cb, void *arg,
                               struct store_batch **out) BRK_WUR;
/*
 * Queue one command of the batch, already in RESP (an array of bulk
 * strings, as hiredis would format it; copied): the caller writes it, as
 * formatting many arguments is what hiredis spends most on, and vouches
 * for the framing. BRK_ERR_STORE when the connection is gone or hiredis
 * refuses it, BRK_ERR_INVAL when it is not an array, for EVAL (its
 * NOSCRIPT answer needs a command of its own) or after store_batch_end
 * (in the same turn: once answered, the batch is freed): nothing is
 * queued then, and no reply of it is counted; what was queued before
 * still is, and the batch can still be ended. Replies come in order, so a
 * command sent after the batch is answered after every command of it.
 */
enum brk_err store_batch_add_resp(struct store_batch *b, const char *cmd,
                                  size_t len) BRK_WUR;
/*
 * No more commands; the batch's deadline starts. With one or more queued,
 * cb is called exactly once, never before this returns; the batch is then
 * the store's (freed after cb). With none queued the batch is freed here
 * and cb is never called. Passing the deadline drops the connection, as
 * for any command: every command still unanswered counts as failed.
 */
void store_batch_end(struct store_batch *b);
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
