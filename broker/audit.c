/*
 * The audit trail (see audit.h). Entries are batched per event-loop turn:
 * the first entry of a batch activates the flush event, which runs once
 * the callbacks already due in this turn have run, and sends the whole
 * batch to Redis as one XADD per entry, in order, back to back on the
 * store's connection (a pipeline: no script, whose call costs Redis
 * several times the XADDs themselves), and one write(2) of its JSON lines
 * on an O_APPEND descriptor, so lines of one batch never interleave with
 * another's. Every XADD's reply is judged (a store batch: one deadline
 * for the batch, no timer per entry): an entry refused (the key's type
 * changed, maxmemory reached midway, a replica's READONLY) or left
 * unanswered by a lost connection counts as not written, the others as
 * written. A batch that reaches AUDIT_BATCH_MAX entries or
 * AUDIT_BATCH_BYTES goes at once. So a crash loses at most the entries of
 * the current loop turn (at most AUDIT_BATCH_MAX), on top of what was in
 * flight to Redis.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "audit.h"
#include "dynbuf.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#define LINE_MAX_BYTES 16384
#define KEY_MAX_BYTES  256
/* the strings of a batch's entries */
#define BATCH_STRS_MAX (AUDIT_BATCH_MAX * 2 * AUDIT_MAX_FIELDS)
/* one entry's command: XADD key MAXLEN ~ maxlen * and its strings */
#define XADD_ARGV_MAX (6 + 2 * AUDIT_MAX_FIELDS)

struct audit {
    struct store *st;
    struct event *flush; /* NULL: every entry goes at once */
    char key[KEY_MAX_BYTES];
    char maxlen[24];
    char *path; /* NULL: no file */
    int fd;     /* -1 while closed */
    int file_ok;
    long long last_warn_ms;
    /* the batch: its strings back to back (NUL-terminated), their
     * offsets, each entry's first string, and its JSON lines for the
     * file */
    struct dynbuf strs;
    size_t offs[BATCH_STRS_MAX];
    size_t noffs;
    size_t first[AUDIT_BATCH_MAX];
    size_t nentries;
    struct dynbuf lines;
    size_t nlines;
    /* one entry's XADD as it is sent (the store copies it) */
    const char *argv[XADD_ARGV_MAX];
    size_t lens[XADD_ARGV_MAX]; /* argv's lengths: the store needs no
                                   strlen of the batch */
    size_t key_len, maxlen_len;
};

static void
count_n(const char *sink, const char *result, size_t n)
{
    char labels[96];

    if (n == 0)
        return;
    metrics_add(METRICS_AUDIT_WRITES,
                metrics_labels(labels, sizeof(labels), "sink", sink, "result",
                               result, NULL),
                (double)n);
}

static void on_flush(evutil_socket_t fd, short what, void *arg);

static enum brk_err
open_file(struct audit *a)
{
    if (a->fd >= 0) {
        close(a->fd);
        a->fd = -1;
    }
    if (a->path == NULL)
        return BRK_OK;
    a->fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (a->fd < 0) {
        log_error("audit_file %s: cannot open: %s; the Redis trail keeps "
                  "every entry meanwhile",
                  a->path, strerror(errno));
        a->file_ok = 0;
        return BRK_ERR_IO;
    }
    a->file_ok = 1;
    return BRK_OK;
}

enum brk_err
audit_new(struct event_base *base, struct store *st, const char *key_prefix,
          long long max_len, const char *path, struct audit **out)
{
    struct audit *a = brk_calloc(1, sizeof(*a));
    enum brk_err err;

    if (a == NULL)
        return BRK_ERR_NOMEM;
    a->st = st;
    a->fd = -1;
    a->file_ok = 1;
    dynbuf_init(&a->strs, AUDIT_BATCH_BYTES + LINE_MAX_BYTES);
    dynbuf_init(&a->lines, AUDIT_BATCH_BYTES + LINE_MAX_BYTES);
    if ((size_t)snprintf(a->key, sizeof(a->key), "%saudit", key_prefix) >=
        sizeof(a->key)) {
        brk_free(a);
        return BRK_ERR_TOOBIG;
    }
    if (base != NULL) {
        a->flush = event_new(base, -1, 0, on_flush, a);
        if (a->flush == NULL) {
            brk_free(a);
            return BRK_ERR_NOMEM;
        }
    }
    snprintf(a->maxlen, sizeof(a->maxlen), "%lld", max_len);
    a->maxlen_len = strlen(a->maxlen);
    a->key_len = strlen(a->key);
    if (path != NULL && path[0] != '\0') {
        a->path = brk_strdup(path);
        if (a->path == NULL) {
            if (a->flush != NULL)
                event_free(a->flush);
            brk_free(a);
            return BRK_ERR_NOMEM;
        }
    }
    err = open_file(a);
    *out = a;
    return err;
}

static void batch_drop_redis(struct audit *a);
static void flush_file(struct audit *a, const char *req);

/* What is still batched goes to the file; the store may be gone by now,
 * so its share counts as not written. */
void
audit_free(struct audit *a)
{
    if (a == NULL)
        return;
    flush_file(a, NULL);
    batch_drop_redis(a);
    if (a->flush != NULL)
        event_free(a->flush);
    dynbuf_free(&a->strs);
    dynbuf_free(&a->lines);
    if (a->fd >= 0)
        close(a->fd);
    brk_free(a->path);
    brk_free(a);
}

enum brk_err
audit_reopen(struct audit *a, const char *path)
{
    /* the lines batched so far belong to the file they were made for */
    flush_file(a, NULL);
    if (path != NULL) {
        char *p = path[0] ? brk_strdup(path) : NULL;

        if (path[0] && p == NULL)
            return BRK_ERR_NOMEM;
        brk_free(a->path);
        a->path = p;
        a->file_ok = 1;
    }
    return open_file(a);
}

int
audit_file_ok(const struct audit *a)
{
    return a->path == NULL || a->file_ok;
}

/* Append s as a JSON string body (no quotes); -1 when it does not fit. */
static int
put_escaped(char *buf, size_t len, size_t *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;

    for (; *p; p++) {
        if (*o + 7 >= len)
            return -1;
        if (*p == '"' || *p == '\\') {
            buf[(*o)++] = '\\';
            buf[(*o)++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            buf[(*o)++] = '\\';
            buf[(*o)++] = 'u';
            buf[(*o)++] = '0';
            buf[(*o)++] = '0';
            buf[(*o)++] = hex[*p >> 4];
            buf[(*o)++] = hex[*p & 15];
        } else {
            buf[(*o)++] = (char)*p;
        }
    }
    return 0;
}

size_t
audit_json_line(long long at_ms, const char *const *kv, size_t nkv, char *buf,
                size_t len)
{
    size_t o = 0, i, k;
    int n;

    const char *at = NULL;

    if (nkv % 2 != 0)
        return 0;
    for (i = 0; i < nkv; i += 2) {
        if (kv[i] == NULL || kv[i + 1] == NULL)
            return 0;
        for (k = 0; k < i; k += 2)
            if (strcmp(kv[k], kv[i]) == 0)
                return 0;
        /* the entry's own time (unix seconds) when it names one */
        if (strcmp(kv[i], "at") == 0 && kv[i + 1][0] != '\0' &&
            strlen(kv[i + 1]) <= 18 &&
            strspn(kv[i + 1], "0123456789") == strlen(kv[i + 1]))
            at = kv[i + 1];
    }
    if (at != NULL)
        n = snprintf(buf, len, "{\"at\":%s", at);
    else
        n = snprintf(buf, len, "{\"at\":%lld.%03lld", at_ms / 1000,
                     at_ms % 1000);
    if (n < 0 || (size_t)n >= len)
        return 0;
    o = (size_t)n;
    for (i = 0; i < nkv; i += 2) {
        /* "at" is written once, first: the entry's own or the line's */
        if (strcmp(kv[i], "at") == 0)
            continue;
        if (o + 4 >= len)
            return 0;
        buf[o++] = ',';
        buf[o++] = '"';
        if (put_escaped(buf, len, &o, kv[i]) != 0 || o + 4 >= len)
            return 0;
        buf[o++] = '"';
        buf[o++] = ':';
        buf[o++] = '"';
        if (put_escaped(buf, len, &o, kv[i + 1]) != 0 || o + 3 >= len)
            return 0;
        buf[o++] = '"';
    }
    buf[o++] = '}';
    buf[o++] = '\n';
    buf[o] = '\0';
    return o;
}

/* A batch's replies, every entry judged on its own: an error reply or
 * none (the connection lost, the deadline passed) is an entry not
 * written. No audit is touched: it may be freed by now. */
static void
on_batch(size_t ok, size_t failed, enum brk_err err, const char *why, void *arg)
{
    (void)arg;
    count_n("redis", "ok", ok);
    count_n("redis", "error", failed);
    if (failed > 0)
        log_warn("audit: %zu of %zu entr%s not written to Redis (%s)", failed,
                 ok + failed, ok + failed == 1 ? "y" : "ies",
                 why != NULL ? why : brk_strerror(err));
}

static void
batch_drop_redis(struct audit *a)
{
    count_n("redis", "error", a->nentries);
    dynbuf_reset(&a->strs);
    a->noffs = 0;
    a->nentries = 0;
}

/* Entry e's XADD into a->argv and a->lens; its argc. */
static int
entry_argv(struct audit *a, size_t e)
{
    size_t i, end = e + 1 < a->nentries ? a->first[e + 1] : a->noffs;
    int argc = 0;

    a->lens[argc] = 4;
    a->argv[argc++] = "XADD";
    a->lens[argc] = a->key_len;
    a->argv[argc++] = a->key;
    a->lens[argc] = 6;
    a->argv[argc++] = "MAXLEN";
    a->lens[argc] = 1;
    a->argv[argc++] = "~";
    a->lens[argc] = a->maxlen_len;
    a->argv[argc++] = a->maxlen;
    a->lens[argc] = 1;
    a->argv[argc++] = "*";
    /* the strings lie back to back, each with its NUL */
    for (i = a->first[e]; i < end; i++) {
        a->lens[argc] =
            (i + 1 < a->noffs ? a->offs[i + 1] : a->strs.len) - a->offs[i] - 1;
        a->argv[argc++] = a->strs.buf + a->offs[i];
    }
    return argc;
}

/* The batch's entries as one XADD each, in order, in one store batch:
 * each reply counts its own entry (on_batch). When one cannot be queued,
 * none after it is: those count as not written here, and the ones
 * already sent are counted by their replies. */
static void
flush_redis(struct audit *a, const char *req)
{
    struct store_batch *b = NULL;
    size_t e = 0, n = a->nentries;
    enum brk_err err;

    if (n == 0)
        return;
    err = store_batch_begin(a->st, on_batch, NULL, &b);
    while (err == BRK_OK && e < n) {
        err = store_batch_add(b, entry_argv(a, e), a->argv, a->lens);
        if (err == BRK_OK)
            e++;
    }
    if (b != NULL)
        store_batch_end(b);
    if (e < n) {
        count_n("redis", "error", n - e);
        log_req(LOG_LVL_WARN, req,
                "audit: %zu of %zu entr%s not written to Redis (%s; the "
                "%zu sent count by their replies)",
                n - e, n, n == 1 ? "y" : "ies", brk_strerror(err), e);
    }
    dynbuf_reset(&a->strs);
    a->noffs = 0;
    a->nentries = 0;
}

static void
file_failed(struct audit *a, const char *req, size_t n, const char *why)
{
    long long now;

    count_n("file", "error", n);
    a->file_ok = 0;
    now = brk_mono_ms();
    /* one line a minute at most: a full disk must not flood the log */
    if (now - a->last_warn_ms >= 60000 || a->last_warn_ms == 0) {
        a->last_warn_ms = now;
        log_req(LOG_LVL_ERROR, req,
                "audit_file %s: %zu entr%s not written (%s); the Redis "
                "trail keeps %s",
                a->path, n, n == 1 ? "y" : "ies", why, n == 1 ? "it" : "them");
    }
}

/* The batch's lines in one write(2). */
static void
flush_file(struct audit *a, const char *req)
{
    size_t n = a->nlines;
    ssize_t w;

    if (n == 0)
        return;
    if (a->fd < 0 && a->file_ok)
        (void)open_file(a);
    w = a->fd < 0 ? -1 : write(a->fd, a->lines.buf, a->lines.len);
    if (w == (ssize_t)a->lines.len) {
        count_n("file", "ok", n);
        a->file_ok = 1;
    } else {
        file_failed(a, req, n, w < 0 ? strerror(errno) : "short write");
    }
    dynbuf_reset(&a->lines);
    a->nlines = 0;
}

static void
flush_all(struct audit *a, const char *req)
{
    if (a->flush != NULL)
        event_del(a->flush);
    flush_redis(a, req);
    flush_file(a, req);
}

static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush_all(arg, NULL);
}

/* Copy s into the batch's strings; -1 when it does not fit. */
static int
batch_str(struct audit *a, const char *s)
{
    if (a->noffs == BATCH_STRS_MAX)
        return -1;
    a->offs[a->noffs] = a->strs.len;
    if (dynbuf_add(&a->strs, s, strlen(s) + 1) != BRK_OK)
        return -1;
    a->noffs++;
    return 0;
}

static int
batch_entry(struct audit *a, const char *const *kv, size_t nkv)
{
    size_t i, noffs = a->noffs, len = a->strs.len;

    if (a->nentries == AUDIT_BATCH_MAX)
        return -1;
    a->first[a->nentries] = noffs;
    for (i = 0; i < nkv; i++)
        if (batch_str(a, kv[i]) != 0)
            goto undo;
    a->nentries++;
    return 0;
undo:
    /* a failed add emptied the buffer (dynbuf): drop the batch's start
     * only when it is intact */
    if (a->strs.len >= len && a->strs.buf != NULL) {
        a->strs.len = len;
        a->strs.buf[len] = '\0';
        a->noffs = noffs;
    } else {
        count_n("redis", "error", a->nentries);
        a->noffs = 0;
        a->nentries = 0;
    }
    return -1;
}

void
audit_append(struct audit *a, const char *req, const char *const *kv,
             size_t nkv)
{
    char line[LINE_MAX_BYTES];
    size_t i, size = 0, n = 0;

    /* an XADD needs a field: an empty entry would be refused */
    if (nkv == 0 || nkv % 2 != 0 || nkv > 2 * AUDIT_MAX_FIELDS) {
        log_req(LOG_LVL_WARN, req, "audit entry malformed; not written");
        return;
    }
    for (i = 0; i < nkv; i++)
        size += strlen(kv[i]) + 1;
    if (a->path != NULL)
        n = audit_json_line(brk_wall_ms(), kv, nkv, line, sizeof(line));
    /* room for this entry, or the batch goes first */
    if (a->nentries > 0 && (a->nentries >= AUDIT_BATCH_MAX ||
                            a->strs.len + size + 24 > AUDIT_BATCH_BYTES ||
                            a->lines.len + n > AUDIT_BATCH_BYTES))
        flush_all(a, req);
    if (batch_entry(a, kv, nkv) != 0) {
        count_n("redis", "error", 1);
        log_req(LOG_LVL_WARN, req, "audit entry not written to Redis");
    }
    if (a->path != NULL) {
        if (n == 0)
            file_failed(a, req, 1, "entry too large");
        else if (dynbuf_add(&a->lines, line, n) == BRK_OK)
            a->nlines++;
        else
            file_failed(a, req, 1 + a->nlines, "out of memory");
    }
    if (a->flush == NULL)
        flush_all(a, req);
    else if (a->nentries + a->nlines > 0)
        event_active(a->flush, EV_TIMEOUT, 0);
}
