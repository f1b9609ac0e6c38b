/*
 * The audit trail (see audit.h). Entries are batched: the first entry of
 * a batch activates the flush event, which runs once the callbacks already
 * due in this turn have run (or, when the last batch went less than the
 * window ago, when the window has passed), and sends the whole batch to
 * Redis as one XADD per entry, in order, back to back on the store's
 * connection (a pipeline: no script, whose call costs Redis several times
 * the XADDs themselves), and one write(2) of its JSON lines on an
 * O_APPEND descriptor, so lines of one batch never interleave with
 * another's.
 *
 * Every XADD's reply is judged (a store batch: one deadline for the
 * batch, no timer per entry). An entry Redis refuses (the key's type
 * changed, maxmemory reached) counts as not written. An entry Redis did
 * not answer (the connection lost, the deadline passed, a replica's
 * READONLY), one that could not be queued and every entry made while Redis
 * is away is held, in order, and sent again ahead of newer ones once
 * Redis is back (tried every AUDIT_RETRY_MS), up to AUDIT_HOLD_BYTES;
 * past that, new entries count as not written. An entry Redis applied
 * whose reply was lost is then written twice (both copies carry the same
 * fields). A batch that reaches AUDIT_BATCH_MAX entries or
 * AUDIT_BATCH_BYTES goes at once.
 *
 * A batch sent is a struct sent that owns its entries until every reply
 * is in, so the unanswered ones can be held; one freed audit's batches
 * still in flight are only counted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
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
/* "XADD key MAXLEN ~ maxlen *" in RESP, without the array's count */
#define XADD_HEAD_MAX (KEY_MAX_BYTES + 96)
/* one log line a minute at most for each kind of trouble: an outage
 * under load must not flood the log */
#define WARN_EVERY_MS 60000

/*
 * Entries as a queue keeps them, back to back: each is its string count
 * (one byte) and then every string as its length (4 bytes, host order)
 * and its bytes. n counts the entries.
 */
struct queue {
    struct dynbuf recs;
    size_t n;
};

struct sent;

struct audit {
    struct store *st;
    struct event *flush; /* NULL: every entry goes at once */
    struct event *retry; /* held entries tried again; NULL as flush */
    char key[KEY_MAX_BYTES];
    char maxlen[24];
    char *path; /* NULL: no file */
    int fd;     /* -1 while closed */
    int file_ok;
    long long last_warn_ms;
    struct queue cur;    /* the batch being made */
    struct queue held;   /* not taken by Redis: sent again first */
    struct dynbuf spare; /* a sent batch's buffer, kept for the next */
    struct sent *inflight;
    size_t held_total; /* entries held since Redis last took them all */
    long long refused_warn_ms, hold_warn_ms;
    struct dynbuf lines;
    size_t nlines;
    /* the batching window (0: every loop turn), the last flush, and
     * whether the flush event is set for this batch */
    long window_ms;
    long long last_flush_ms;
    int armed;
    /* one entry's XADD as it is sent, in RESP (the store copies it): the
     * broker writes it, as hiredis's formatting of 30 arguments cost more
     * than the rest of the entry's way to Redis */
    char head[XADD_HEAD_MAX];
    size_t head_len;
    struct dynbuf resp;
};

/* A batch in flight: its entries, of which the first nsent were queued
 * on the store (the rest could not be), until the store's answer. */
struct sent {
    struct audit *a; /* NULL once the audit is freed */
    struct sent *prev, *next;
    struct queue q;
    size_t nsent;
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

/* Whether a rate-limited line is due now (and if so, the next is not). */
static int
warn_due(long long *last_ms)
{
    long long now = brk_mono_ms();

    if (*last_ms != 0 && now - *last_ms < WARN_EVERY_MS)
        return 0;
    *last_ms = now;
    return 1;
}

static void on_flush(evutil_socket_t fd, short what, void *arg);
static void on_retry(evutil_socket_t fd, short what, void *arg);

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

static void
audit_free_events(struct audit *a)
{
    if (a->flush != NULL)
        event_free(a->flush);
    if (a->retry != NULL)
        event_free(a->retry);
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
    a->window_ms = AUDIT_WINDOW_MS;
    dynbuf_init(&a->cur.recs, AUDIT_BATCH_BYTES);
    dynbuf_init(&a->held.recs, AUDIT_HOLD_BYTES);
    dynbuf_init(&a->spare, AUDIT_BATCH_BYTES);
    dynbuf_init(&a->lines, AUDIT_BATCH_BYTES + LINE_MAX_BYTES);
    if ((size_t)snprintf(a->key, sizeof(a->key), "%saudit", key_prefix) >=
        sizeof(a->key)) {
        brk_free(a);
        return BRK_ERR_TOOBIG;
    }
    if (base != NULL) {
        a->flush = event_new(base, -1, 0, on_flush, a);
        a->retry = evtimer_new(base, on_retry, a);
        if (a->flush == NULL || a->retry == NULL) {
            audit_free_events(a);
            brk_free(a);
            return BRK_ERR_NOMEM;
        }
    }
    snprintf(a->maxlen, sizeof(a->maxlen), "%lld", max_len);
    a->head_len = (size_t)snprintf(
        a->head, sizeof(a->head),
        "$4\r\nXADD\r\n$%zu\r\n%s\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n$%zu\r\n%s"
        "\r\n$1\r\n*\r\n",
        strlen(a->key), a->key, strlen(a->maxlen), a->maxlen);
    dynbuf_init(&a->resp, AUDIT_BATCH_BYTES + XADD_HEAD_MAX +
                              (2 * AUDIT_MAX_FIELDS + 1) * 16);
    if (path != NULL && path[0] != '\0') {
        a->path = brk_strdup(path);
        if (a->path == NULL) {
            audit_free_events(a);
            brk_free(a);
            return BRK_ERR_NOMEM;
        }
    }
    err = open_file(a);
    *out = a;
    return err;
}

static void flush_file(struct audit *a, const char *req);

/* What is still batched goes to the file; the store may be gone by now,
 * so what Redis has not taken counts as not written, and the batches in
 * flight are only counted when answered. */
void
audit_free(struct audit *a)
{
    struct sent *s;
    size_t lost;

    if (a == NULL)
        return;
    flush_file(a, NULL);
    lost = a->cur.n + a->held.n;
    count_n("redis", "error", lost);
    if (a->held.n > 0)
        log_error("audit: %zu entr%s held for Redis not written at stop",
                  a->held.n, a->held.n == 1 ? "y" : "ies");
    for (s = a->inflight; s != NULL; s = s->next)
        s->a = NULL;
    audit_free_events(a);
    dynbuf_free(&a->cur.recs);
    dynbuf_free(&a->held.recs);
    dynbuf_free(&a->spare);
    dynbuf_free(&a->resp);
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

/*---- Queues of entries ----*/

/* The size of the entry at off of q (its bytes up to the next). */
static size_t
rec_size(const struct dynbuf *d, size_t off)
{
    size_t o = off + 1, i, nstr = (unsigned char)d->buf[off];
    uint32_t len;

    for (i = 0; i < nstr; i++) {
        memcpy(&len, d->buf + o, sizeof(len));
        o += sizeof(len) + len;
    }
    return o - off;
}

/* The length of "<c><n>\r\n" (RESP's array count or bulk length). */
static size_t
count_len(size_t n)
{
    size_t k = 3;

    do {
        k++;
        n /= 10;
    } while (n > 0);
    return k;
}

/* "<c><n>\r\n" at p: its length. */
static size_t
count_at(char *p, char c, size_t n)
{
    char buf[24];
    size_t i = sizeof(buf);

    buf[--i] = '\n';
    buf[--i] = '\r';
    do {
        buf[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    buf[--i] = c;
    memcpy(p, buf + i, sizeof(buf) - i);
    return sizeof(buf) - i;
}

/*
 * Entry at *off of d as its XADD in RESP, in a->resp (replacing what was
 * there), written after one reservation of its whole size; *off moves past
 * it. BRK_ERR_NOMEM or BRK_ERR_TOOBIG when it does not fit (never: the
 * entry is at most AUDIT_BATCH_BYTES).
 */
static enum brk_err
entry_resp(struct audit *a, const struct dynbuf *d, size_t *off)
{
    size_t o = *off + 1, i, nstr = (unsigned char)d->buf[*off];
    size_t need = count_len(6 + nstr) + a->head_len, w;
    uint32_t len;
    enum brk_err err;
    char *p;

    for (i = 0; i < nstr; i++) {
        memcpy(&len, d->buf + o, sizeof(len));
        o += sizeof(len) + len;
        need += count_len(len) + len + 2;
    }
    dynbuf_reset(&a->resp);
    err = dynbuf_reserve(&a->resp, need);
    if (err)
        return err;
    p = a->resp.buf;
    o = *off + 1;
    w = count_at(p, '*', 6 + nstr);
    memcpy(p + w, a->head, a->head_len);
    w += a->head_len;
    for (i = 0; i < nstr; i++) {
        memcpy(&len, d->buf + o, sizeof(len));
        o += sizeof(len);
        w += count_at(p + w, '$', len);
        memcpy(p + w, d->buf + o, len);
        w += len;
        p[w++] = '\r';
        p[w++] = '\n';
        o += len;
    }
    a->resp.len = w;
    p[w] = '\0';
    *off = o;
    return BRK_OK;
}

/* Hold entries [from, n) of q (their bytes from off on) to send again,
 * after those held already; what does not fit counts as not written.
 * behind: they are only queued behind the held ones, to go with them now
 * (not counted as held). */
static void
hold_from(struct audit *a, const struct queue *q, size_t from, size_t off,
          int behind)
{
    size_t i, size, kept = 0, lost = 0;

    for (i = from; i < q->n; i++, off += size) {
        size = rec_size(&q->recs, off);
        if (lost == 0 && a->held.recs.len + size <= AUDIT_HOLD_BYTES &&
            dynbuf_add(&a->held.recs, q->recs.buf + off, size) == BRK_OK) {
            a->held.n++;
            kept++;
            continue;
        }
        if (lost == 0 && a->held.recs.buf == NULL) {
            /* a failed add emptied the hold (out of memory) */
            lost += a->held.n;
            a->held.n = 0;
        }
        lost++;
    }
    if (!behind) {
        count_n("redis", "held", kept);
        a->held_total += kept;
    }
    count_n("redis", "error", lost);
    if (lost > 0 && warn_due(&a->hold_warn_ms))
        log_error("audit: %zu entr%s not written: Redis is not taking "
                  "entries and %zu are held already (%zu bytes, at most "
                  "%d)",
                  lost, lost == 1 ? "y" : "ies", a->held.n, a->held.recs.len,
                  AUDIT_HOLD_BYTES);
}

/* Entry [from, n) of q: where its bytes begin. */
static size_t
rec_offset(const struct queue *q, size_t from)
{
    size_t i, off = 0;

    for (i = 0; i < from; i++)
        off += rec_size(&q->recs, off);
    return off;
}

static void
arm_retry(struct audit *a)
{
    struct timeval tv = {AUDIT_RETRY_MS / 1000, AUDIT_RETRY_MS % 1000 * 1000};

    if (a->retry != NULL && a->held.n > 0 && !evtimer_pending(a->retry, NULL))
        evtimer_add(a->retry, &tv);
}

/*---- Sending to Redis ----*/

static void
sent_free(struct sent *s)
{
    struct audit *a = s->a;

    if (a != NULL) {
        if (s->prev != NULL)
            s->prev->next = s->next;
        else
            a->inflight = s->next;
        if (s->next != NULL)
            s->next->prev = s->prev;
        /* its buffer serves the next batch */
        if (a->spare.buf == NULL && s->q.recs.cap <= 2 * AUDIT_BATCH_BYTES) {
            dynbuf_reset(&s->q.recs);
            a->spare = s->q.recs;
            a->spare.limit = AUDIT_BATCH_BYTES;
            brk_free(s);
            return;
        }
    }
    dynbuf_free(&s->q.recs);
    brk_free(s);
}

/*
 * A batch's replies: the refused count as not written; the unanswered
 * (always the last ones sent) and those never queued are held, ahead of
 * anything made since (made since, they are behind them in the hold or
 * still batched), and tried again.
 */
static void
on_batch(size_t ok, size_t failed, size_t unanswered, enum brk_err err,
         const char *why, void *arg)
{
    struct sent *s = arg;
    struct audit *a = s->a;
    size_t again = unanswered + (s->q.n - s->nsent);

    count_n("redis", "ok", ok);
    count_n("redis", "error", failed);
    if (a == NULL) {
        count_n("redis", "error", again);
        sent_free(s);
        return;
    }
    if (failed > 0 && warn_due(&a->refused_warn_ms))
        log_error("audit: Redis refused %zu of %zu entr%s (%s); not "
                  "written",
                  failed, s->q.n, s->q.n == 1 ? "y" : "ies",
                  why != NULL ? why : brk_strerror(err));
    if (again > 0) {
        if (a->held_total == 0)
            log_warn("audit: Redis did not take %zu entr%s (%s); holding "
                     "them to send again",
                     again, again == 1 ? "y" : "ies",
                     err != BRK_OK ? brk_strerror(err) : "not queued");
        hold_from(a, &s->q, s->nsent - unanswered,
                  rec_offset(&s->q, s->nsent - unanswered), 0);
        arm_retry(a);
    } else if (a->held.n == 0 && a->held_total > 0) {
        log_info("audit: Redis is taking entries again; the %zu held were "
                 "sent again",
                 a->held_total);
        a->held_total = 0;
    }
    sent_free(s);
}

/* Move q's entries into a new struct sent (q is left empty, with the
 * spare buffer); NULL when out of memory (q unchanged). */
static struct sent *
sent_take(struct audit *a, struct queue *q)
{
    struct sent *s = brk_calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->a = a;
    s->q = *q;
    q->recs = a->spare;
    q->recs.limit = q == &a->held ? AUDIT_HOLD_BYTES : AUDIT_BATCH_BYTES;
    q->n = 0;
    dynbuf_init(&a->spare, AUDIT_BATCH_BYTES);
    s->next = a->inflight;
    if (s->next != NULL)
        s->next->prev = s;
    a->inflight = s;
    return s;
}

/*
 * The held entries and then the batch, as one XADD each, in order, in one
 * store batch: each reply counts its own entry (on_batch). When Redis is
 * away everything is held; when an XADD cannot be queued, none after it
 * is, and those are held with the batch's unanswered ones.
 */
static void
flush_redis(struct audit *a)
{
    struct store_batch *b = NULL;
    struct queue *q = &a->cur;
    struct sent *s;
    size_t off = 0;
    enum brk_err err;

    if (a->held.n > 0) {
        /* behind what is held already, to keep the order */
        if (a->cur.n > 0) {
            hold_from(a, &a->cur, 0, 0, store_is_up(a->st));
            dynbuf_reset(&a->cur.recs);
            a->cur.n = 0;
        }
        q = &a->held;
    }
    if (q->n == 0)
        return;
    if (!store_is_up(a->st) || (s = sent_take(a, q)) == NULL) {
        if (q == &a->cur) {
            if (a->held_total == 0)
                log_warn("audit: Redis is away; holding entries to send "
                         "when it is back");
            hold_from(a, &a->cur, 0, 0, 0);
            dynbuf_reset(&a->cur.recs);
            a->cur.n = 0;
        }
        arm_retry(a);
        return;
    }
    err = store_batch_begin(a->st, on_batch, s, &b);
    while (err == BRK_OK && s->nsent < s->q.n) {
        err = entry_resp(a, &s->q.recs, &off);
        if (!err)
            err = store_batch_add_resp(b, a->resp.buf, a->resp.len);
        if (err == BRK_OK)
            s->nsent++;
    }
    if (b != NULL)
        store_batch_end(b);
    /* nothing queued: no answer comes; all of it is held again */
    if (s->nsent == 0)
        on_batch(0, 0, 0, err, NULL, s);
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
    a->armed = 0;
    a->last_flush_ms = brk_mono_ms();
    flush_redis(a);
    flush_file(a, req);
}

static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush_all(arg, NULL);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush_redis(arg);
}

/*
 * Set the flush for a batch just begun: at the end of this loop turn when
 * the last flush is a window or more ago (an entry now and then goes at
 * once), else when the window since the last flush ends (under load, one
 * batch a window).
 */
static void
arm(struct audit *a)
{
    long long since = brk_mono_ms() - a->last_flush_ms;
    struct timeval tv;

    a->armed = 1;
    if (a->window_ms <= 0 || since < 0 || since >= a->window_ms) {
        event_active(a->flush, EV_TIMEOUT, 0);
        return;
    }
    tv.tv_sec = (time_t)((a->window_ms - since) / 1000);
    tv.tv_usec = (suseconds_t)((a->window_ms - since) % 1000 * 1000);
    event_add(a->flush, &tv);
}

void
audit_set_window(struct audit *a, long window_ms)
{
    if (a == NULL)
        return;
    a->window_ms = window_ms > 0 ? window_ms : 0;
    if (a->flush == NULL || !a->armed)
        return;
    event_del(a->flush);
    arm(a);
}

/* Append the entry (size bytes, as a queue keeps it: struct queue) to the
 * batch, room for it made first; -1 when it cannot be (out of memory: the
 * batch is gone, and counted). */
static int
batch_entry(struct audit *a, const char *const *kv, const uint32_t *kvlen,
            size_t nkv, size_t size)
{
    struct dynbuf *d = &a->cur.recs;
    size_t i, o;

    if (dynbuf_reserve(d, size) != BRK_OK) {
        /* the failed reservation emptied the buffer (dynbuf) */
        count_n("redis", "error", a->cur.n);
        a->cur.n = 0;
        return -1;
    }
    o = d->len;
    d->buf[o++] = (char)(unsigned char)nkv;
    for (i = 0; i < nkv; i++) {
        memcpy(d->buf + o, &kvlen[i], sizeof(kvlen[i]));
        o += sizeof(kvlen[i]);
        memcpy(d->buf + o, kv[i], kvlen[i]);
        o += kvlen[i];
    }
    d->len = o;
    d->buf[o] = '\0';
    a->cur.n++;
    return 0;
}

void
audit_append(struct audit *a, const char *req, const char *const *kv,
             size_t nkv)
{
    char line[LINE_MAX_BYTES];
    uint32_t kvlen[2 * AUDIT_MAX_FIELDS];
    size_t i, size = 1, n = 0, l;

    /* an XADD needs a field: an empty entry would be refused */
    if (nkv == 0 || nkv % 2 != 0 || nkv > 2 * AUDIT_MAX_FIELDS) {
        log_req(LOG_LVL_WARN, req, "audit entry malformed; not written");
        return;
    }
    for (i = 0; i < nkv; i++) {
        l = strlen(kv[i]);
        /* one over the batch's bytes is not batched (below) */
        kvlen[i] = l < UINT32_MAX ? (uint32_t)l : UINT32_MAX;
        size += l + sizeof(uint32_t);
    }
    if (a->path != NULL)
        n = audit_json_line(brk_wall_ms(), kv, nkv, line, sizeof(line));
    /* room for this entry, or the batch goes first */
    if (a->cur.n + a->nlines > 0 &&
        (a->cur.n >= AUDIT_BATCH_MAX ||
         a->cur.recs.len + size > AUDIT_BATCH_BYTES ||
         a->lines.len + n > AUDIT_BATCH_BYTES))
        flush_all(a, req);
    if (size > AUDIT_BATCH_BYTES || batch_entry(a, kv, kvlen, nkv, size) != 0) {
        count_n("redis", "error", 1);
        log_req(LOG_LVL_WARN, req, "audit entry not written to Redis");
    }
    if (a->path != NULL) {
        if (n == 0)
            file_failed(a, req, 1, "entry too large");
        else if (dynbuf_add(&a->lines, line, n) == BRK_OK)
            a->nlines++;
        else {
            /* the failed add emptied the lines (dynbuf) */
            file_failed(a, req, 1 + a->nlines, "out of memory");
            a->nlines = 0;
        }
    }
    if (a->flush == NULL)
        flush_all(a, req);
    else if (a->cur.n + a->nlines > 0 && !a->armed)
        arm(a);
}
