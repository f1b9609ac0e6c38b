/*
 * Redis through hiredis async on libevent (see store.h). hiredis 0.14 has
 * no command timeouts and no reconnect, so every command carries its own
 * evtimer (a batch's commands share one) and a lost connection is
 * re-dialled from a backoff timer. An EVAL is sent as EVALSHA of its
 * script, loaded when the connection comes up, and sent again as EVAL when
 * Redis answers NOSCRIPT (a restart or a failover empties its script
 * cache). The digests of scripts.c's scripts are computed once per store,
 * and the EVALSHA is formatted once: the EVAL of a NOSCRIPT answer is
 * spliced from it.
 *
 * With a sentinel:// URL the address to dial comes from the sentinels
 * (the Sentinel client protocol: ask each in turn, check ROLE on what it
 * names), and is asked again whenever the connection is lost, a write is
 * answered READONLY, ROLE stops saying master, or a sentinel publishes
 * +switch-master for our master. A command is never retried elsewhere:
 * its caller gets the error and fails closed.
 */
#include <stdio.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "config.h"
#include "log.h"
#include "scripts.h"
#include "sentinel.h"
#include "store.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define PING_EVERY_MS  1000
/* With sentinels a primary comes back at another address, not after a
 * long outage: re-ask at least this often */
#define BACKOFF_MAX_SENTINEL_MS 1000
/* connect + answer of one sentinel; the next one is asked after it */
#define SENTINEL_TIMEOUT_MS 300
/* before the +switch-master subscription is tried on the next sentinel */
#define WATCH_RETRY_MS 500

struct store_cmd {
    struct store *s;
    store_reply_cb *cb; /* NULL once the caller has been answered */
    void *arg;
    struct event *timer;
    /* an EVAL sent as EVALSHA, until its reply: the EVALSHA as sent
     * (owned), where its arguments after the digest start, and the script
     * for a NOSCRIPT answer (one of scripts.c's, else a copy in
     * script_own) */
    char *evalsha;
    size_t evalsha_len, tail;
    const char *script;
    size_t script_len;
    char *script_own;
};

/* A script of scripts.c's: its length and digest, computed on first use. */
struct store_script {
    size_t len;
    char sha[SCRIPTS_SHA1_HEX + 1]; /* "" until computed */
};

struct store {
    struct event_base *base;
    struct config_redis url;
    long timeout_ms;
    redisAsyncContext *ac; /* NULL while disconnected */
    int up;
    int ping_in_flight;
    int freeing;
    unsigned long generation;
    long backoff_ms;
    struct event *retry_timer;
    struct event *ping_timer;
    store_state_cb *state_cb;
    void *state_arg;
    char *sub_channel; /* subscriber connections only */
    store_message_cb *sub_cb;
    void *sub_arg;
    /* sentinel:// only */
    char node_host[SENTINEL_HOST_MAX]; /* the primary a sentinel named */
    int node_port;
    redisAsyncContext *disc; /* asking a sentinel; NULL when not */
    size_t disc_next;        /* the sentinel to ask next */
    size_t disc_left;        /* sentinels still to ask in this round */
    struct event *disc_timer;
    redisAsyncContext *watch; /* SUBSCRIBEd to +switch-master; or NULL */
    size_t watch_next;
    struct event *watch_timer;
    struct store_script scripts[SCRIPT_COUNT];
};

static void store_connect(struct store *s);
static void store_drop(struct store *s, const char *why);
static enum brk_err send_eval_again(struct store_cmd *c);

/*---- Commands ----*/

static void
cmd_free(struct store_cmd *c)
{
    if (c->timer != NULL)
        event_free(c->timer);
    brk_free(c->evalsha);
    brk_free(c->script_own);
    brk_free(c);
}

/* An error a replica gives a write, directly or from inside a script. */
static int
is_readonly(const char *msg)
{
    return msg != NULL && (strncmp(msg, "READONLY", 8) == 0 ||
                           strstr(msg, "READONLY You can't write") != NULL);
}

/* hiredis calls this exactly once per command: with a reply, or NULL when
 * the context is torn down. */
static void
on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct store_cmd *c = privdata;
    redisReply *reply = r;
    store_reply_cb *cb = c->cb;
    enum brk_err err;

    if (cb != NULL && reply != NULL && reply->type == REDIS_REPLY_ERROR &&
        c->evalsha != NULL && strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
        c->s->ac != NULL && send_eval_again(c) == BRK_OK) {
        /* not loaded (yet, or any more): the script itself went, which
         * loads it; the command's deadline still runs */
        return;
    }
    c->cb = NULL;
    if (cb != NULL) {
        if (reply == NULL)
            err = c->s->freeing ? BRK_ERR_SHUTDOWN : BRK_ERR_STORE;
        else if (reply->type == REDIS_REPLY_ERROR)
            err = BRK_ERR_STORE;
        else
            err = BRK_OK;
        cb(err, reply, c->arg);
    }
    /* a write reached a replica (a failover we have not heard of yet):
     * the caller got the error; find the primary again */
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR &&
        is_readonly(reply->str) && c->s->ac == ac && !c->s->freeing)
        store_drop(c->s, "a write was answered READONLY");
    cmd_free(c);
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct store_cmd *c = arg;
    struct store *s = c->s;
    store_reply_cb *cb = c->cb;

    (void)fd;
    (void)what;
    if (cb == NULL)
        return;
    c->cb = NULL;
    cb(BRK_ERR_TIMEOUT, NULL, c->arg);
    /* replies come in order, so a stuck reply blocks every later one:
     * start over on a fresh connection */
    store_drop(s, "command timed out");
}

/* The decimal digits of n. */
static size_t
digits(size_t n)
{
    size_t d = 1;

    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

/* The bytes of a RESP bulk string of len bytes. */
static size_t
bulk_size(size_t len)
{
    return 1 + digits(len) + 2 + len + 2;
}

/* Write kind ('*' or '$'), n and CRLF at p; returns the end. */
static char *
put_len(char *p, char kind, size_t n)
{
    size_t d = digits(n), i;

    *p++ = kind;
    for (i = d; i > 0; i--) {
        p[i - 1] = (char)('0' + n % 10);
        n /= 10;
    }
    p += d;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* Write s (len bytes) as a RESP bulk string at p; returns the end. */
static char *
put_bulk(char *p, const char *s, size_t len)
{
    p = put_len(p, '$', len);
    memcpy(p, s, len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/*
 * The script text (given: its length; NULL: NUL-terminated): its length
 * into *len, its digest into sha, and whether it is one of scripts.c's,
 * found by its address (*known 1: static, so c may keep the pointer).
 * Theirs are measured and digested once per store; any other text each
 * time. Returns BRK_ERR_CRYPTO when OpenSSL cannot compute a digest.
 */
static enum brk_err
script_digest(struct store *s, const char *text, const size_t *given,
              size_t *len, char sha[SCRIPTS_SHA1_HEX + 1], int *known)
{
    struct store_script *sc;
    size_t n;
    int i;

    for (i = 0; i < SCRIPT_COUNT; i++) {
        if (text != scripts_text((enum script_id)i))
            continue;
        sc = &s->scripts[i];
        if (sc->sha[0] == '\0') {
            sc->len = strlen(text);
            if (scripts_sha1(text, sc->len, sc->sha) != BRK_OK) {
                sc->sha[0] = '\0';
                return BRK_ERR_CRYPTO;
            }
        }
        /* a part of it is some other text */
        if (given != NULL && *given != sc->len)
            break;
        memcpy(sha, sc->sha, sizeof(sc->sha));
        *len = sc->len;
        *known = 1;
        return BRK_OK;
    }
    n = given != NULL ? *given : strlen(text);
    if (scripts_sha1(text, n, sha) != BRK_OK)
        return BRK_ERR_CRYPTO;
    *len = n;
    *known = 0;
    return BRK_OK;
}

/*
 * Send "EVAL script numkeys ..." as "EVALSHA digest numkeys ...",
 * formatted once, here; c keeps it and the script for a NOSCRIPT answer.
 * Returns BRK_ERR_NOMEM, BRK_ERR_CRYPTO (no digest) or BRK_ERR_STORE,
 * else BRK_OK.
 */
static enum brk_err
send_evalsha(struct store *s, struct store_cmd *c, int argc, const char **argv,
             const size_t *argvlen)
{
    char sha[SCRIPTS_SHA1_HEX + 1];
    size_t size;
    enum brk_err err;
    int known = 0, i;
    char *p;

    err = script_digest(s, argv[1], argvlen ? &argvlen[1] : NULL,
                        &c->script_len, sha, &known);
    if (err)
        return err;
    if (known) {
        c->script = argv[1];
    } else {
        /* the caller's text is borrowed for this call only */
        c->script_own = brk_malloc(c->script_len + 1);
        if (c->script_own == NULL)
            return BRK_ERR_NOMEM;
        memcpy(c->script_own, argv[1], c->script_len);
        c->script_own[c->script_len] = '\0';
        c->script = c->script_own;
    }
    size = 1 + digits((size_t)argc) + 2 + bulk_size(7) +
           bulk_size(SCRIPTS_SHA1_HEX);
    for (i = 2; i < argc; i++)
        size += bulk_size(argvlen ? argvlen[i] : strlen(argv[i]));
    c->evalsha = brk_malloc(size);
    if (c->evalsha == NULL)
        return BRK_ERR_NOMEM;
    p = put_len(c->evalsha, '*', (size_t)argc);
    p = put_bulk(p, "EVALSHA", 7);
    p = put_bulk(p, sha, SCRIPTS_SHA1_HEX);
    c->tail = (size_t)(p - c->evalsha);
    for (i = 2; i < argc; i++)
        p = put_bulk(p, argv[i], argvlen ? argvlen[i] : strlen(argv[i]));
    c->evalsha_len = (size_t)(p - c->evalsha);
    return redisAsyncFormattedCommand(s->ac, on_reply, c, c->evalsha,
                                      c->evalsha_len) == REDIS_OK
               ? BRK_OK
               : BRK_ERR_STORE;
}

/*
 * Redis answered c's EVALSHA with NOSCRIPT: send the command again as
 * EVAL of its script (which loads it), the arguments copied from the
 * EVALSHA as sent. c keeps neither afterwards: a second NOSCRIPT is the
 * caller's answer. Returns BRK_ERR_NOMEM or BRK_ERR_STORE, else BRK_OK.
 */
static enum brk_err
send_eval_again(struct store_cmd *c)
{
    const char *nl = memchr(c->evalsha, '\n', c->evalsha_len);
    size_t count = (size_t)(nl - c->evalsha) + 1; /* "*argc\r\n" */
    size_t rest = c->evalsha_len - c->tail;
    size_t size = count + bulk_size(4) + bulk_size(c->script_len) + rest;
    char *eval = brk_malloc(size), *p;
    enum brk_err err = BRK_ERR_NOMEM;

    if (eval != NULL) {
        memcpy(eval, c->evalsha, count);
        p = put_bulk(eval + count, "EVAL", 4);
        p = put_bulk(p, c->script, c->script_len);
        memcpy(p, c->evalsha + c->tail, rest);
        err = redisAsyncFormattedCommand(c->s->ac, on_reply, c, eval, size) ==
                      REDIS_OK
                  ? BRK_OK
                  : BRK_ERR_STORE;
        brk_free(eval);
    }
    brk_free(c->evalsha);
    brk_free(c->script_own);
    c->evalsha = NULL;
    c->script_own = NULL;
    c->script = NULL;
    return err;
}

static int
is_eval(int argc, const char **argv, const size_t *argvlen)
{
    return argc >= 3 && (argvlen == NULL || argvlen[0] == 4) &&
           strncmp(argv[0], "EVAL", 5) == 0;
}

static enum brk_err
send_cmd(struct store *s, long timeout_ms, store_reply_cb *cb, void *arg,
         int argc, const char **argv, const size_t *argvlen)
{
    struct store_cmd *c;
    struct timeval tv;
    enum brk_err err;

    if (s->ac == NULL)
        return BRK_ERR_STORE;
    c = brk_calloc(1, sizeof(*c));
    if (c == NULL)
        return BRK_ERR_NOMEM;
    c->s = s;
    c->cb = cb;
    c->arg = arg;
    c->timer = evtimer_new(s->base, on_timeout, c);
    if (c->timer == NULL) {
        brk_free(c);
        return BRK_ERR_NOMEM;
    }
    if (is_eval(argc, argv, argvlen))
        err = send_evalsha(s, c, argc, argv, argvlen);
    else
        err = redisAsyncCommandArgv(s->ac, on_reply, c, argc, argv, argvlen) ==
                      REDIS_OK
                  ? BRK_OK
                  : BRK_ERR_STORE;
    if (err) {
        cmd_free(c);
        return err;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(c->timer, &tv);
    return BRK_OK;
}

/*
 * Send a command (see store.h). Returns BRK_OK (cb will be called once),
 * BRK_ERR_STORE when not connected, BRK_ERR_NOMEM.
 */
enum brk_err
store_cmd_argv(struct store *s, store_reply_cb *cb, void *arg, int argc,
               const char **argv, const size_t *argvlen)
{
    if (s->sub_channel != NULL)
        return BRK_ERR_INVAL;
    if (!s->up)
        return BRK_ERR_STORE;
    return send_cmd(s, s->timeout_ms, cb, arg, argc, argv, argvlen);
}

/*---- Batches ----*/

/* A batch (see store.h): hiredis holds it as every queued command's
 * privdata and calls on_batch_reply once per command, with its reply or
 * with NULL when the context is torn down, so the counts always reach
 * queued. */
struct store_batch {
    struct store *s;
    redisAsyncContext *ac; /* the connection its commands went on */
    store_batch_cb *cb;
    void *arg;
    struct event *timer;
    size_t queued, ok, failed, unanswered;
    int ended, timed_out;
    enum brk_err err; /* the first failure's */
    char why[STORE_WHY_MAX];
};

/* Answer the caller once every command is answered and no more can come. */
static void
batch_settle(struct store_batch *b)
{
    if (!b->ended || b->ok + b->failed + b->unanswered < b->queued)
        return;
    b->cb(b->ok, b->failed, b->unanswered,
          b->failed + b->unanswered ? b->err : BRK_OK,
          b->why[0] ? b->why : NULL, b->arg);
    event_free(b->timer);
    brk_free(b);
}

static void
on_batch_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct store_batch *b = privdata;
    struct store *s = b->s;
    redisReply *reply = r;
    int readonly = reply != NULL && reply->type == REDIS_REPLY_ERROR &&
                   is_readonly(reply->str);

    /* once one is unanswered, every later one is counted so too, whatever
     * comes: the unanswered stay the batch's last commands */
    if (b->unanswered == 0 && reply != NULL && !readonly) {
        if (reply->type != REDIS_REPLY_ERROR) {
            b->ok++;
            batch_settle(b);
            return;
        }
        b->failed++;
    } else {
        b->unanswered++;
    }
    if (b->failed + b->unanswered == 1) {
        if (reply != NULL)
            b->err = BRK_ERR_STORE;
        else
            b->err = b->timed_out ? BRK_ERR_TIMEOUT
                     : s->freeing ? BRK_ERR_SHUTDOWN
                                  : BRK_ERR_STORE;
        if (reply != NULL && reply->str != NULL)
            snprintf(b->why, sizeof(b->why), "%s", reply->str);
    }
    /* as on_reply: a replica refused a write; find the primary again.
     * Whatever of the batch is still unanswered then stays so. */
    if (readonly && s->ac == ac && !s->freeing)
        store_drop(s, "a write was answered READONLY");
    batch_settle(b);
}

static void
on_batch_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct store_batch *b = arg;
    struct store *s = b->s;

    (void)fd;
    (void)what;
    if (b->ok + b->failed + b->unanswered == b->queued) {
        batch_settle(b);
        return;
    }
    /* replies come in order: a stuck one blocks every later one. Dropping
     * the connection answers each pending command with NULL (counted as
     * failed), which settles the batch. Unanswered commands always sit on
     * the current connection: a connection torn down answers its own. */
    b->timed_out = 1;
    if (s->ac == b->ac)
        store_drop(s, "a batch timed out");
}

enum brk_err
store_batch_begin(struct store *s, store_batch_cb *cb, void *arg,
                  struct store_batch **out)
{
    struct store_batch *b;

    if (s->sub_channel != NULL)
        return BRK_ERR_INVAL;
    if (!s->up || s->ac == NULL)
        return BRK_ERR_STORE;
    b = brk_calloc(1, sizeof(*b));
    if (b == NULL)
        return BRK_ERR_NOMEM;
    b->timer = evtimer_new(s->base, on_batch_timeout, b);
    if (b->timer == NULL) {
        brk_free(b);
        return BRK_ERR_NOMEM;
    }
    b->s = s;
    b->ac = s->ac;
    b->cb = cb;
    b->arg = arg;
    *out = b;
    return BRK_OK;
}

/* Whether a RESP command ("*N\r\n$L\r\nNAME\r\n...") is an EVAL. */
static int
resp_is_eval(const char *cmd, size_t len)
{
    const char *nl = memchr(cmd, '\n', len);
    size_t at = nl != NULL ? (size_t)(nl + 1 - cmd) : len;

    return len - at >= 10 && memcmp(cmd + at, "$4\r\nEVAL\r\n", 10) == 0;
}

enum brk_err
store_batch_add_resp(struct store_batch *b, const char *cmd, size_t len)
{
    if (b->ended || len == 0 || cmd[0] != '*' || resp_is_eval(cmd, len))
        return BRK_ERR_INVAL;
    if (b->s->ac == NULL || b->s->ac != b->ac)
        return BRK_ERR_STORE;
    if (redisAsyncFormattedCommand(b->ac, on_batch_reply, b, cmd, len) !=
        REDIS_OK)
        return BRK_ERR_STORE;
    b->queued++;
    return BRK_OK;
}

void
store_batch_end(struct store_batch *b)
{
    long ms = b->s->timeout_ms;
    struct timeval tv;

    if (b->queued == 0) {
        event_free(b->timer);
        brk_free(b);
        return;
    }
    b->ended = 1;
    /* answered already (ended in a later turn than it was sent): the
     * caller is answered from the loop, not from here */
    if (b->ok + b->failed + b->unanswered == b->queued)
        ms = 0;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(b->timer, &tv);
}

/* store_cmd_argv with a deadline of its own (see store.h). */
enum brk_err
store_cmd_argv_timeout(struct store *s, long timeout_ms, store_reply_cb *cb,
                       void *arg, int argc, const char **argv,
                       const size_t *argvlen)
{
    if (s->sub_channel != NULL || timeout_ms <= 0)
        return BRK_ERR_INVAL;
    if (!s->up)
        return BRK_ERR_STORE;
    return send_cmd(s, timeout_ms, cb, arg, argc, argv, argvlen);
}

/*---- Connection state ----*/

static void
set_up(struct store *s, int up)
{
    if (s->up == up)
        return;
    s->up = up;
    if (up)
        s->generation++;
    if (s->state_cb != NULL)
        s->state_cb(up, s->state_arg);
}

static void
schedule_retry(struct store *s)
{
    struct timeval tv;

    if (s->freeing)
        return;
    tv.tv_sec = s->backoff_ms / 1000;
    tv.tv_usec = (s->backoff_ms % 1000) * 1000;
    evtimer_add(s->retry_timer, &tv);
    log_debug("redis: reconnecting in %ld ms", s->backoff_ms);
    s->backoff_ms *= 2;
    if (s->backoff_ms > BACKOFF_MAX_MS)
        s->backoff_ms = BACKOFF_MAX_MS;
    if (s->url.master != NULL && s->backoff_ms > BACKOFF_MAX_SENTINEL_MS)
        s->backoff_ms = BACKOFF_MAX_SENTINEL_MS;
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    struct store *s = ac->data;

    if (s->ac != ac)
        return;
    s->ac = NULL;
    s->ping_in_flight = 0;
    if (s->up)
        log_warn("redis: connection lost (%s)",
                 status == REDIS_OK ? "closed" : ac->errstr);
    set_up(s, 0);
    schedule_retry(s);
}

/* Tear the connection down; hiredis answers every pending command with
 * NULL and the backoff timer dials again. */
static void
store_drop(struct store *s, const char *why)
{
    redisAsyncContext *ac = s->ac;

    if (ac == NULL)
        return;
    log_warn("redis: dropping connection: %s", why);
    redisAsyncFree(ac);
    if (s->ac == ac) { /* never connected: no disconnect callback ran */
        s->ac = NULL;
        s->ping_in_flight = 0;
        set_up(s, 0);
        schedule_retry(s);
    }
}

static void
on_script_loaded(enum brk_err err, struct redisReply *reply, void *arg)
{
    (void)arg;
    /* not fatal: an EVALSHA that finds no script is sent again as EVAL */
    if (err)
        log_warn("redis: SCRIPT LOAD failed: %s",
                 reply && reply->str ? reply->str : brk_strerror(err));
}

/* Queue every script's SCRIPT LOAD ahead of the handshake PING, so the
 * connection is up only once they are in. */
static void
load_scripts(struct store *s)
{
    const char *argv[3] = {"SCRIPT", "LOAD", NULL};
    int i;

    for (i = 0; i < SCRIPT_COUNT; i++) {
        argv[2] = scripts_text((enum script_id)i);
        if (send_cmd(s, s->timeout_ms, on_script_loaded, s, 3, argv, NULL) !=
            BRK_OK)
            return;
    }
}

/* A ROLE reply that says master. */
static int
reply_is_master(const redisReply *reply)
{
    const redisReply *e;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements < 1)
        return 0;
    e = reply->element[0];
    return (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) &&
           sentinel_role_is_master(e->str, e->len);
}

static void
on_handshake(enum brk_err err, struct redisReply *reply, void *arg)
{
    struct store *s = arg;

    s->ping_in_flight = 0;
    if (err) {
        log_warn("redis: not ready: %s",
                 reply && reply->str ? reply->str : brk_strerror(err));
        /* e.g. LOADING, or a wrong password: try again later */
        if (err == BRK_ERR_STORE && reply != NULL)
            store_drop(s, "handshake refused");
        return;
    }
    /* with sentinels the handshake and the health check are ROLE: a
     * primary demoted under us is left at once */
    if (s->url.master != NULL && !reply_is_master(reply)) {
        store_drop(s, "the node is not the primary (ROLE)");
        return;
    }
    if (!s->up)
        log_info("redis: connected");
    s->backoff_ms = BACKOFF_MIN_MS;
    set_up(s, 1);
}

static void
on_auth(enum brk_err err, struct redisReply *reply, void *arg)
{
    (void)arg;
    if (err)
        log_error("redis: AUTH/SELECT failed: %s",
                  reply && reply->str ? reply->str : brk_strerror(err));
}

/* hiredis calls this for the SUBSCRIBE confirmation and for every message,
 * with the same privdata; NULL when the connection goes away. */
static void
on_sub_message(redisAsyncContext *ac, void *r, void *privdata)
{
    struct store *s = privdata;
    redisReply *reply = r;

    (void)ac;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != 3 || reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(reply->element[0]->str, "subscribe") == 0) {
        if (!s->up)
            log_info("redis: subscribed to %s", s->sub_channel);
        s->backoff_ms = BACKOFF_MIN_MS;
        set_up(s, 1);
    } else if (strcmp(reply->element[0]->str, "message") == 0 &&
               reply->element[2]->type == REDIS_REPLY_STRING &&
               s->sub_cb != NULL) {
        s->sub_cb(reply->element[2]->str, reply->element[2]->len, s->sub_arg);
    }
}

/* The connection is to the server to use: subscribe, or load the scripts
 * and send the handshake that makes it up. */
static void
start_session(struct store *s)
{
    const char *ping[] = {"PING"};
    const char *role[] = {"ROLE"};

    if (s->sub_channel != NULL) {
        /* a subscribed connection runs no other command, PING included */
        if (redisAsyncCommand(s->ac, on_sub_message, s, "SUBSCRIBE %s",
                              s->sub_channel) != REDIS_OK)
            store_drop(s, "cannot subscribe");
        return;
    }
    load_scripts(s);
    s->ping_in_flight = 1;
    if (send_cmd(s, s->timeout_ms, on_handshake, s, 1,
                 s->url.master ? role : ping, NULL) != BRK_OK) {
        s->ping_in_flight = 0;
        store_drop(s, "out of memory");
    }
}

/* The first ROLE on a node a sentinel named: nothing else is sent to it
 * unless it is the primary. */
static void
on_first_role(enum brk_err err, struct redisReply *reply, void *arg)
{
    struct store *s = arg;

    if (err == BRK_ERR_SHUTDOWN || (err && reply == NULL))
        return; /* the connection is gone or going: its own path retries */
    if (err || !reply_is_master(reply)) {
        log_warn("redis: %s:%d is not the primary (%s); asking the "
                 "sentinels again",
                 s->node_host, s->node_port,
                 err && reply->str ? reply->str
                 : reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
                         reply->element[0]->str != NULL
                     ? reply->element[0]->str
                     : "no role");
        store_drop(s, "not the primary");
        return;
    }
    start_session(s);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
    struct store *s = ac->data;
    const char *role[] = {"ROLE"};

    if (s->ac != ac)
        return;
    if (status != REDIS_OK) {
        log_debug("redis: connect failed: %s", ac->errstr);
        /* hiredis frees the context after this returns */
        s->ac = NULL;
        schedule_retry(s);
        return;
    }
    if (s->url.master != NULL) {
        if (send_cmd(s, s->timeout_ms, on_first_role, s, 1, role, NULL) !=
            BRK_OK)
            store_drop(s, "out of memory");
        return;
    }
    start_session(s);
}

/* Dial the data node: the URL's, or the one a sentinel named. */
static void
dial(struct store *s)
{
    redisAsyncContext *ac;
    char db[16];
    const char *argv[3];
    int argc = 0;

    if (s->url.unix_path != NULL)
        ac = redisAsyncConnectUnix(s->url.unix_path);
    else if (s->url.master != NULL)
        ac = redisAsyncConnect(s->node_host, s->node_port);
    else
        ac = redisAsyncConnect(s->url.host, s->url.port);
    if (ac == NULL || ac->err) {
        log_debug("redis: connect: %s", ac ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        schedule_retry(s);
        return;
    }
    ac->data = s;
    s->ac = ac;
    if (redisLibeventAttach(ac, s->base) != REDIS_OK) {
        redisAsyncFree(ac);
        s->ac = NULL;
        schedule_retry(s);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* queued now, sent first once the socket is writable */
    if (s->url.password != NULL) {
        argv[argc++] = "AUTH";
        if (s->url.user != NULL)
            argv[argc++] = s->url.user;
        argv[argc++] = s->url.password;
        if (send_cmd(s, s->timeout_ms, on_auth, s, argc, argv, NULL) != BRK_OK)
            goto fail;
    }
    if (s->url.db != 0) {
        snprintf(db, sizeof(db), "%ld", s->url.db);
        argv[0] = "SELECT";
        argv[1] = db;
        if (send_cmd(s, s->timeout_ms, on_auth, s, 2, argv, NULL) != BRK_OK)
            goto fail;
    }
    return;
fail:
    store_drop(s, "out of memory");
}

/*---- Sentinels ----*/

static void discover_next(struct store *s);

/* Stop asking the current sentinel. Not from inside its connect callback
 * (hiredis frees that context itself). */
static void
disc_close(struct store *s)
{
    redisAsyncContext *ac = s->disc;

    evtimer_del(s->disc_timer);
    if (ac == NULL)
        return;
    s->disc = NULL;
    redisAsyncFree(ac);
}

/* The answer of one sentinel (NULL: its connection went away). */
static void
on_disc_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct store *s = privdata;
    redisReply *reply = r;
    const char *el[2] = {NULL, NULL};
    size_t len[2] = {0, 0}, i, n = 0;
    char host[SENTINEL_HOST_MAX];
    int port = 0;

    if (s->disc != ac)
        return; /* closed by us, or by a timeout */
    if (reply == NULL) {
        /* hiredis is tearing the context down: it frees it */
        s->disc = NULL;
        evtimer_del(s->disc_timer);
        discover_next(s);
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY) {
        n = reply->elements;
        for (i = 0; i < n && i < 2; i++) {
            if (reply->element[i]->type == REDIS_REPLY_STRING) {
                el[i] = reply->element[i]->str;
                len[i] = reply->element[i]->len;
            }
        }
    }
    disc_close(s); /* freed once this callback returns */
    if (sentinel_parse_master_addr(n, el, len, host, sizeof(host), &port) !=
        BRK_OK) {
        log_warn("redis: a sentinel gave no usable address for %s (%s)",
                 s->url.master,
                 reply->type == REDIS_REPLY_ERROR && reply->str ? reply->str
                 : reply->type == REDIS_REPLY_NIL ? "unknown master"
                                                  : "unexpected reply");
        discover_next(s);
        return;
    }
    if (strcmp(host, s->node_host) != 0 || port != s->node_port)
        log_info("redis: the sentinels name %s:%d as the primary of %s", host,
                 port, s->url.master);
    snprintf(s->node_host, sizeof(s->node_host), "%s", host);
    s->node_port = port;
    dial(s);
}

static void
on_disc_connect(const redisAsyncContext *ac, int status)
{
    struct store *s = ac->data;

    if (s->disc != ac || status == REDIS_OK)
        return;
    log_debug("redis: sentinel unreachable: %s", ac->errstr);
    /* hiredis frees the context after this returns */
    s->disc = NULL;
    evtimer_del(s->disc_timer);
    discover_next(s);
}

static void
on_disc_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct store *s = arg;

    (void)fd;
    (void)what;
    log_debug("redis: a sentinel did not answer in %d ms", SENTINEL_TIMEOUT_MS);
    disc_close(s);
    discover_next(s);
}

/* Ask the next sentinel of this round, or give up until the backoff timer
 * starts another round. */
static void
discover_next(struct store *s)
{
    const struct config_redis_node *node;
    struct timeval tv = {0, SENTINEL_TIMEOUT_MS * 1000};
    redisAsyncContext *ac;

    if (s->freeing)
        return;
    while (s->disc_left > 0) {
        s->disc_left--;
        node = &s->url.sentinels[s->disc_next++ % s->url.nsentinels];
        ac = redisAsyncConnect(node->host, node->port);
        if (ac == NULL || ac->err) {
            if (ac != NULL)
                redisAsyncFree(ac);
            continue;
        }
        ac->data = s;
        if (redisLibeventAttach(ac, s->base) != REDIS_OK ||
            redisAsyncCommand(ac, on_disc_reply, s,
                              "SENTINEL get-master-addr-by-name %s",
                              s->url.master) != REDIS_OK) {
            redisAsyncFree(ac);
            continue;
        }
        redisAsyncSetConnectCallback(ac, on_disc_connect);
        s->disc = ac;
        evtimer_add(s->disc_timer, &tv);
        return;
    }
    log_warn("redis: no sentinel named a usable primary for %s", s->url.master);
    schedule_retry(s);
}

/* A failover a sentinel announced for our master: find it now rather than
 * after the backoff. */
static void
on_switch(struct store *s, const char *host, int port)
{
    struct timeval now = {0, 0};

    log_info("redis: sentinel: %s switched to %s:%d", s->url.master, host,
             port);
    if (s->ac != NULL && strcmp(host, s->node_host) == 0 &&
        port == s->node_port)
        return;
    s->backoff_ms = BACKOFF_MIN_MS;
    if (s->ac != NULL)
        store_drop(s, "failover announced by a sentinel");
    if (s->ac == NULL && s->disc == NULL) {
        evtimer_del(s->retry_timer);
        evtimer_add(s->retry_timer, &now);
    }
}

static void watch_retry(struct store *s);

/* The +switch-master subscription: its confirmation and its messages;
 * NULL when the connection goes away. */
static void
on_watch_msg(redisAsyncContext *ac, void *r, void *privdata)
{
    struct store *s = privdata;
    redisReply *reply = r;
    char host[SENTINEL_HOST_MAX];
    int port = 0;

    if (s->watch != ac || reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != 3 || reply->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(reply->element[0]->str, "message") != 0 ||
        reply->element[2]->type != REDIS_REPLY_STRING)
        return;
    if (sentinel_parse_switch(reply->element[2]->str, reply->element[2]->len,
                              s->url.master, host, sizeof(host),
                              &port) == BRK_OK)
        on_switch(s, host, port);
}

static void
on_watch_connect(const redisAsyncContext *ac, int status)
{
    struct store *s = ac->data;

    if (s->watch != ac || status == REDIS_OK)
        return;
    s->watch = NULL; /* hiredis frees it */
    watch_retry(s);
}

static void
on_watch_disconnect(const redisAsyncContext *ac, int status)
{
    struct store *s = ac->data;

    (void)status;
    if (s->watch != ac)
        return;
    s->watch = NULL;
    watch_retry(s);
}

static void
watch_start(struct store *s)
{
    const struct config_redis_node *node;
    redisAsyncContext *ac;

    node = &s->url.sentinels[s->watch_next++ % s->url.nsentinels];
    ac = redisAsyncConnect(node->host, node->port);
    if (ac == NULL || ac->err) {
        if (ac != NULL)
            redisAsyncFree(ac);
        watch_retry(s);
        return;
    }
    ac->data = s;
    if (redisLibeventAttach(ac, s->base) != REDIS_OK ||
        redisAsyncCommand(ac, on_watch_msg, s, "SUBSCRIBE +switch-master") !=
            REDIS_OK) {
        redisAsyncFree(ac);
        watch_retry(s);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_watch_connect);
    redisAsyncSetDisconnectCallback(ac, on_watch_disconnect);
    s->watch = ac;
}

static void
watch_retry(struct store *s)
{
    struct timeval tv = {WATCH_RETRY_MS / 1000, (WATCH_RETRY_MS % 1000) * 1000};

    if (!s->freeing)
        evtimer_add(s->watch_timer, &tv);
}

static void
on_watch_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    watch_start(arg);
}

/*---- Dialling ----*/

static void
store_connect(struct store *s)
{
    if (s->url.master == NULL) {
        dial(s);
        return;
    }
    if (s->disc != NULL)
        return; /* a round is under way */
    s->disc_left = s->url.nsentinels;
    discover_next(s);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    store_connect(arg);
}

static void
on_ping_timer(evutil_socket_t fd, short what, void *arg)
{
    struct store *s = arg;
    const char *ping[] = {"PING"};
    const char *role[] = {"ROLE"};
    struct timeval tv = {PING_EVERY_MS / 1000, (PING_EVERY_MS % 1000) * 1000};

    (void)fd;
    (void)what;
    /* a health check, so a Redis that stopped answering is noticed even
     * when no request is in flight */
    if (s->up && !s->ping_in_flight && s->sub_channel == NULL) {
        s->ping_in_flight = 1;
        if (send_cmd(s, s->timeout_ms, on_handshake, s, 1,
                     s->url.master ? role : ping, NULL) != BRK_OK)
            s->ping_in_flight = 0;
    }
    evtimer_add(s->ping_timer, &tv);
}

/*
 * Create the connection manager and start dialling (see store.h).
 * Returns BRK_ERR_CONFIG for a bad URL, BRK_ERR_NOMEM. Owned: store_free.
 */
enum brk_err
store_new(struct event_base *base, const char *url, long cmd_timeout_ms,
          struct store **out)
{
    struct store *s = NULL;
    struct timeval tv = {PING_EVERY_MS / 1000, (PING_EVERY_MS % 1000) * 1000};
    enum brk_err err;

    s = brk_calloc(1, sizeof(*s));
    if (s == NULL)
        return BRK_ERR_NOMEM;
    err = config_redis_parse(url, &s->url);
    if (err) {
        brk_free(s);
        return err == BRK_ERR_NOMEM ? err : BRK_ERR_CONFIG;
    }
    s->base = base;
    s->timeout_ms = cmd_timeout_ms > 0 ? cmd_timeout_ms : 1000;
    s->backoff_ms = BACKOFF_MIN_MS;
    s->retry_timer = evtimer_new(base, on_retry, s);
    s->ping_timer = evtimer_new(base, on_ping_timer, s);
    if (s->retry_timer == NULL || s->ping_timer == NULL) {
        err = BRK_ERR_NOMEM;
        goto fail;
    }
    if (s->url.master != NULL) {
        s->disc_timer = evtimer_new(base, on_disc_timeout, s);
        s->watch_timer = evtimer_new(base, on_watch_timer, s);
        if (s->disc_timer == NULL || s->watch_timer == NULL) {
            err = BRK_ERR_NOMEM;
            goto fail;
        }
        watch_start(s);
    }
    evtimer_add(s->ping_timer, &tv);
    store_connect(s);
    *out = s;
    return BRK_OK;
fail:
    if (s->retry_timer)
        event_free(s->retry_timer);
    if (s->ping_timer)
        event_free(s->ping_timer);
    if (s->disc_timer)
        event_free(s->disc_timer);
    if (s->watch_timer)
        event_free(s->watch_timer);
    config_redis_clear(&s->url);
    brk_free(s);
    return err;
}

/*
 * A connection that only listens on channel (see store.h). Returns what
 * store_new returns. Owned: store_free.
 */
enum brk_err
store_new_subscriber(struct event_base *base, const char *url,
                     const char *channel, store_message_cb *cb, void *arg,
                     struct store **out)
{
    char *ch = brk_strdup(channel);
    struct store *s = NULL;
    enum brk_err err;

    if (ch == NULL)
        return BRK_ERR_NOMEM;
    err = store_new(base, url, 1000, &s);
    if (err) {
        brk_free(ch);
        return err;
    }
    s->sub_channel = ch;
    s->sub_cb = cb;
    s->sub_arg = arg;
    *out = s;
    return BRK_OK;
}

/* Disconnect and free; pending commands get BRK_ERR_SHUTDOWN. */
void
store_free(struct store *s)
{
    if (s == NULL)
        return;
    s->freeing = 1;
    s->state_cb = NULL;
    if (s->ac != NULL) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        redisAsyncFree(ac);
    }
    if (s->disc_timer != NULL)
        disc_close(s);
    if (s->watch != NULL) {
        redisAsyncContext *ac = s->watch;
        s->watch = NULL;
        redisAsyncFree(ac);
    }
    event_free(s->retry_timer);
    event_free(s->ping_timer);
    if (s->disc_timer != NULL)
        event_free(s->disc_timer);
    if (s->watch_timer != NULL)
        event_free(s->watch_timer);
    config_redis_clear(&s->url);
    brk_free(s->sub_channel);
    brk_free(s);
}

void
store_set_state_cb(struct store *s, store_state_cb *cb, void *arg)
{
    s->state_cb = cb;
    s->state_arg = arg;
}

int
store_is_up(const struct store *s)
{
    return s->up;
}

unsigned long
store_generation(const struct store *s)
{
    return s->generation;
}
