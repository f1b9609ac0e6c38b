/*
 * The audit trail (see audit.h). The file is written with one write(2) per
 * entry on an O_APPEND descriptor, so lines from one process never
 * interleave and a crash loses at most the entry being written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#define LINE_MAX_BYTES 16384
#define KEY_MAX_BYTES  256

struct audit {
    struct store *st;
    char key[KEY_MAX_BYTES];
    char maxlen[24];
    char *path; /* NULL: no file */
    int fd;     /* -1 while closed */
    int file_ok;
    long long last_warn_ms;
};

static void
count(const char *sink, const char *result)
{
    char labels[96];

    metrics_inc(METRICS_AUDIT_WRITES,
                metrics_labels(labels, sizeof(labels), "sink", sink, "result",
                               result, NULL));
}

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
audit_new(struct store *st, const char *key_prefix, long long max_len,
          const char *path, struct audit **out)
{
    struct audit *a = brk_calloc(1, sizeof(*a));
    enum brk_err err;

    if (a == NULL)
        return BRK_ERR_NOMEM;
    a->st = st;
    a->fd = -1;
    a->file_ok = 1;
    if ((size_t)snprintf(a->key, sizeof(a->key), "%saudit", key_prefix) >=
        sizeof(a->key)) {
        brk_free(a);
        return BRK_ERR_TOOBIG;
    }
    snprintf(a->maxlen, sizeof(a->maxlen), "%lld", max_len);
    if (path != NULL && path[0] != '\0') {
        a->path = brk_strdup(path);
        if (a->path == NULL) {
            brk_free(a);
            return BRK_ERR_NOMEM;
        }
    }
    err = open_file(a);
    *out = a;
    return err;
}

void
audit_free(struct audit *a)
{
    if (a == NULL)
        return;
    if (a->fd >= 0)
        close(a->fd);
    brk_free(a->path);
    brk_free(a);
}

enum brk_err
audit_reopen(struct audit *a, const char *path)
{
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

static void
on_xadd(enum brk_err err, struct redisReply *r, void *arg)
{
    (void)r;
    (void)arg;
    count("redis", err ? "error" : "ok");
}

static void
write_file(struct audit *a, const char *req, const char *const *kv, size_t nkv)
{
    char line[LINE_MAX_BYTES];
    size_t n = audit_json_line(brk_wall_ms(), kv, nkv, line, sizeof(line));
    ssize_t w;
    long long now;

    if (a->fd < 0 && a->file_ok)
        (void)open_file(a);
    w = n == 0 || a->fd < 0 ? -1 : write(a->fd, line, n);
    if (w == (ssize_t)n) {
        count("file", "ok");
        a->file_ok = 1;
        return;
    }
    count("file", "error");
    a->file_ok = 0;
    now = brk_mono_ms();
    /* one line a minute at most: a full disk must not flood the log */
    if (now - a->last_warn_ms >= 60000 || a->last_warn_ms == 0) {
        a->last_warn_ms = now;
        log_req(LOG_LVL_ERROR, req,
                "audit_file %s: entry not written (%s); the Redis trail "
                "keeps it",
                a->path,
                n == 0  ? "entry too large"
                : w < 0 ? strerror(errno)
                        : "short write");
    }
}

void
audit_append(struct audit *a, const char *req, const char *const *kv,
             size_t nkv)
{
    const char *argv[6 + 2 * AUDIT_MAX_FIELDS];
    int argc = 0;
    size_t i;

    if (nkv % 2 != 0 || nkv > 2 * AUDIT_MAX_FIELDS) {
        log_req(LOG_LVL_WARN, req, "audit entry malformed; not written");
        return;
    }
    argv[argc++] = "XADD";
    argv[argc++] = a->key;
    argv[argc++] = "MAXLEN";
    argv[argc++] = "~";
    argv[argc++] = a->maxlen;
    argv[argc++] = "*";
    for (i = 0; i < nkv; i++)
        argv[argc++] = kv[i];
    if (store_cmd_argv(a->st, on_xadd, NULL, argc, argv, NULL) != BRK_OK) {
        count("redis", "error");
        log_req(LOG_LVL_WARN, req, "audit entry not written to Redis");
    }
    if (a->path != NULL)
        write_file(a, req, kv, nkv);
}
