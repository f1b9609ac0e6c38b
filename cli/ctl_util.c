/*
 * Helpers every brokerctl command uses: the configuration and key files,
 * synchronous Redis calls that print their own errors, time formats, and
 * tables aligned by display width.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "keyring.h"
#include "keys.h"
#include "sentinel.h"
#include "worker.h"

#include "ctl.h"

/*---- Memory ----*/

static void
out_of_memory(void)
{
    fprintf(stderr, "brokerctl: out of memory\n");
    exit(1);
}

/* brk_malloc or exit(1) with a message. Owned, free with brk_free. */
void *
ctl_xmalloc(size_t n)
{
    void *p = brk_malloc(n ? n : 1);

    if (p == NULL)
        out_of_memory();
    return p;
}

/* brk_strdup or exit(1) with a message. Owned, free with brk_free. */
char *
ctl_xstrdup(const char *s)
{
    char *p = brk_strdup(s);

    if (p == NULL)
        out_of_memory();
    return p;
}

/*---- Configuration and keys ----*/

/* Load the configuration once; 0, or 1 after printing why. */
int
ctl_load_config(struct ctl *c)
{
    struct brk_errinfo info = {"", 0, -1};
    char msg[512];

    if (c->cfg != NULL)
        return 0;
    if (config_load(c->conf_path, &c->cfg, &info) != BRK_OK) {
        config_format_error(c->conf_path, &info, msg, sizeof(msg));
        fprintf(stderr, "brokerctl: %s\n", msg);
        return 1;
    }
    return 0;
}

/* The keyring of the configuration (borrowed; main frees it), or NULL
 * after printing why. Never creates a key file. */
struct keyring *
ctl_keyring(struct ctl *c)
{
    struct brk_errinfo info = {"", 0, -1};

    if (c->kr != NULL)
        return c->kr;
    if (ctl_load_config(c) != 0)
        return NULL;
    if (keyring_load(c->cfg->master_key_file, c->cfg->index_key_file, 0, &c->kr,
                     NULL, NULL, &info) != BRK_OK) {
        fprintf(stderr, "brokerctl: cannot read the key files: %s\n", info.msg);
        return NULL;
    }
    return c->kr;
}

/*---- Redis ----*/

static redisReply *
checked(struct ctl *c, redisReply *r)
{
    if (r == NULL) {
        fprintf(stderr, "brokerctl: Redis: %s\n", c->rc->errstr);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "brokerctl: Redis: %s\n", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Each sentinel gets this long to connect and answer. */
#define CTL_SENTINEL_TIMEOUT_MS 300

/* AUTH on a fresh connection to a data node; 0, or -1 after printing why. */
static int
auth(redisContext *rc, const struct config_redis *u)
{
    redisReply *r;
    int ok;

    if (u->password == NULL)
        return 0;
    r = u->user ? redisCommand(rc, "AUTH %s %s", u->user, u->password)
                : redisCommand(rc, "AUTH %s", u->password);
    ok = r != NULL && r->type != REDIS_REPLY_ERROR;
    if (r != NULL)
        freeReplyObject(r);
    if (!ok)
        fprintf(stderr, "brokerctl: Redis AUTH failed\n");
    return ok ? 0 : -1;
}

/* The primary one sentinel names, connected, authenticated and checked
 * with ROLE; NULL when that sentinel does not lead to one. */
static redisContext *
via_sentinel(const struct config_redis *u, const struct config_redis_node *n,
             struct timeval tv)
{
    struct timeval stv = {0, CTL_SENTINEL_TIMEOUT_MS * 1000};
    char host[SENTINEL_HOST_MAX];
    const char *el[2] = {NULL, NULL};
    size_t len[2] = {0, 0}, i, cnt = 0;
    redisContext *sc, *rc = NULL;
    redisReply *r;
    int port = 0, ok;

    sc = redisConnectWithTimeout(n->host, n->port, stv);
    if (sc == NULL || sc->err)
        goto out;
    redisSetTimeout(sc, stv);
    r = redisCommand(sc, "SENTINEL get-master-addr-by-name %s", u->master);
    if (r != NULL && r->type == REDIS_REPLY_ARRAY) {
        cnt = r->elements;
        for (i = 0; i < cnt && i < 2; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING) {
                el[i] = r->element[i]->str;
                len[i] = r->element[i]->len;
            }
    }
    ok = r != NULL && sentinel_parse_master_addr(cnt, el, len, host,
                                                 sizeof(host), &port) == BRK_OK;
    if (r != NULL)
        freeReplyObject(r);
    if (!ok)
        goto out;
    rc = redisConnectWithTimeout(host, port, tv);
    if (rc == NULL || rc->err || redisSetTimeout(rc, tv) != REDIS_OK ||
        auth(rc, u) != 0)
        goto fail;
    r = redisCommand(rc, "ROLE");
    ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
         r->element[0]->type == REDIS_REPLY_STRING &&
         sentinel_role_is_master(r->element[0]->str, r->element[0]->len);
    if (r != NULL)
        freeReplyObject(r);
    if (ok)
        goto out;
    fprintf(stderr,
            "brokerctl: %s:%d, named by a sentinel, is not the "
            "primary\n",
            host, port);
fail:
    if (rc != NULL)
        redisFree(rc);
    rc = NULL;
out:
    if (sc != NULL)
        redisFree(sc);
    return rc;
}

/*
 * Connect to the Redis of u (sentinel://: the primary the sentinels name,
 * asked in turn, checked with ROLE), authenticate and select its
 * database. 0 with c->rc set, or -1 after printing why (c->rc may then
 * hold a failed context; main frees it).
 */
int
ctl_redis_connect(struct ctl *c, const struct config_redis *u,
                  struct timeval tv)
{
    redisReply *r;
    size_t i;

    if (u->master != NULL) {
        for (i = 0; i < u->nsentinels && c->rc == NULL; i++)
            c->rc = via_sentinel(u, &u->sentinels[i], tv);
        if (c->rc == NULL) {
            fprintf(stderr,
                    "brokerctl: cannot reach Redis: no sentinel named a "
                    "reachable primary for %s\n",
                    u->master);
            return -1;
        }
    } else {
        c->rc = u->unix_path ? redisConnectUnixWithTimeout(u->unix_path, tv)
                             : redisConnectWithTimeout(u->host, u->port, tv);
        if (c->rc == NULL || c->rc->err) {
            fprintf(stderr, "brokerctl: cannot reach Redis (%s)%s\n",
                    c->rc ? c->rc->errstr : "out of memory",
                    c->cfg == NULL || c->cfg->redis[0]
                        ? ""
                        : "; with embedded Redis the broker must be running");
            return -1;
        }
        redisSetTimeout(c->rc, tv);
        if (auth(c->rc, u) != 0)
            return -1;
    }
    if (u->db != 0) {
        r = ctl_cmd(c, "SELECT %ld", u->db);
        if (r == NULL)
            return -1;
        freeReplyObject(r);
    }
    return 0;
}

/* A command's reply (freeReplyObject), or NULL after printing why. */
redisReply *
ctl_cmd(struct ctl *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;

    va_start(ap, fmt);
    r = redisvCommand(c->rc, fmt, ap);
    va_end(ap);
    return checked(c, r);
}

/* The same from argc NUL-terminated strings. */
redisReply *
ctl_cmd_argv(struct ctl *c, int argc, const char **argv)
{
    return checked(c, redisCommandArgv(c->rc, argc, argv, NULL));
}

/* HGETALL as a JSON object of strings (new reference) or NULL. */
json_t *
ctl_hgetall(struct ctl *c, const char *key)
{
    redisReply *r = ctl_cmd(c, "HGETALL %s", key);
    json_t *o;
    size_t i;

    if (r == NULL)
        return NULL;
    o = json_object();
    for (i = 0; i + 1 < r->elements; i += 2)
        json_object_set_new(
            o, r->element[i]->str,
            json_stringn(r->element[i + 1]->str, r->element[i + 1]->len));
    freeReplyObject(r);
    return o;
}

/* A string member of o (borrowed), or dflt. */
const char *
ctl_str_of(const json_t *o, const char *k, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, k));

    return v ? v : dflt;
}

/* A string member of o read as a decimal number, or 0. */
long long
ctl_num_of(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));

    return v ? strtoll(v, NULL, 10) : 0;
}

/* The suites in which corp has a tenant record, honouring --suite. */
size_t
ctl_suites_of(struct ctl *c, const char *corp, const char **found, size_t max)
{
    char key[KEYS_MAX];
    size_t i, n = 0;
    redisReply *r;

    for (i = 0; i < c->cfg->nsuites && n < max; i++) {
        const char *s = c->cfg->suites[i].suite_id;

        if (c->suite != NULL && strcmp(c->suite, s) != 0)
            continue;
        if (keys_tenant(key, sizeof(key), c->cfg->key_prefix, corp, s))
            continue;
        r = ctl_cmd(c, "EXISTS %s", key);
        if (r != NULL && r->integer == 1)
            found[n++] = s;
        if (r != NULL)
            freeReplyObject(r);
    }
    return n;
}

/* "<prefix>inval": where every instance hears of changed tenants. */
int
ctl_inval_channel(struct ctl *c, char *buf, size_t len)
{
    return snprintf(buf, len, "%s%s", c->cfg->key_prefix,
                    WORKER_INVAL_CHANNEL) >= (int)len;
}

/*---- Output ----*/

/* "2026-11-29 05:00:00Z", or "-" for 0. */
void
ctl_utc(long long t, char *buf, size_t len)
{
    struct tm tm;
    time_t tt = (time_t)t;

    if (t <= 0 || gmtime_r(&tt, &tm) == NULL) {
        snprintf(buf, len, "-");
        return;
    }
    strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm);
}

/* "3m ago (2026-11-29 05:00:00Z)" for people; "-" for 0. */
void
ctl_when(long long t, char *buf, size_t len)
{
    long long ago = (long long)time(NULL) - t, d = ago < 0 ? -ago : ago;
    const char *pre = ago < 0 ? "in " : "", *post = ago < 0 ? "" : " ago";
    char abs[32];

    if (t <= 0) {
        snprintf(buf, len, "-");
        return;
    }
    ctl_utc(t, abs, sizeof(abs));
    if (d < 120)
        snprintf(buf, len, "%s%llds%s (%s)", pre, d, post, abs);
    else if (d < 7200)
        snprintf(buf, len, "%s%lldm%s (%s)", pre, d / 60, post, abs);
    else if (d < 172800)
        snprintf(buf, len, "%s%lldh%s (%s)", pre, d / 3600, post, abs);
    else
        snprintf(buf, len, "%s%lldd%s (%s)", pre, d / 86400, post, abs);
}

/* Print v as compact JSON and a newline. */
void
ctl_print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

    printf("%s\n", s ? s : "null");
    free(s); /* jansson's allocator */
}

/* "brokerctl: MSG" on stderr; returns 2. */
int
ctl_usage(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "brokerctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return 2;
}

/* Write s with controls and bytes that are not UTF-8 shown as "?", so a
 * corp name cannot move the cursor or change the terminal. */
void
ctl_sanitize(FILE *f, const char *s)
{
    size_t n = strlen(s), i = 0, len;
    uint32_t cp;

    while (i < n) {
        len = ctl_utf8_next(s + i, n - i, &cp);
        if (len == 0 || cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) {
            fputc('?', f);
            i += len ? len : 1;
            continue;
        }
        fwrite(s + i, 1, len, f);
        i += len;
    }
}

/* Write s padded to width display columns. */
void
ctl_pad(FILE *f, const char *s, size_t width)
{
    size_t w = ctl_width(s);

    ctl_sanitize(f, s);
    for (; w < width; w++)
        fputc(' ', f);
}

struct ctl_table {
    size_t ncols, nrows, cap;
    char **cells; /* (nrows + 1) * ncols: the header row first */
    size_t *widths;
};

/* A table with ncols columns and their headers (copied). Owned, free
 * with ctl_table_free. */
struct ctl_table *
ctl_table_new(size_t ncols, const char *const *headers)
{
    struct ctl_table *t = ctl_xmalloc(sizeof(*t));

    t->ncols = ncols;
    t->nrows = 0;
    t->cap = 16;
    t->cells = ctl_xmalloc(t->cap * ncols * sizeof(*t->cells));
    t->widths = ctl_xmalloc(ncols * sizeof(*t->widths));
    memset(t->widths, 0, ncols * sizeof(*t->widths));
    ctl_table_add(t, headers);
    return t;
}

/* Add a row of ncols cells (copied; NULL is shown as "-"). */
void
ctl_table_add(struct ctl_table *t, const char *const *cells)
{
    char **grown;
    size_t i, w;

    if (t->nrows == t->cap) {
        grown = ctl_xmalloc(2 * t->cap * t->ncols * sizeof(*grown));
        memcpy(grown, t->cells, t->cap * t->ncols * sizeof(*grown));
        brk_free(t->cells);
        t->cells = grown;
        t->cap *= 2;
    }
    for (i = 0; i < t->ncols; i++) {
        const char *s = cells[i] != NULL ? cells[i] : "-";

        t->cells[t->nrows * t->ncols + i] = ctl_xstrdup(s);
        w = ctl_width(s);
        if (w > t->widths[i])
            t->widths[i] = w;
    }
    t->nrows++;
}

/* Print the header and every row, aligned. */
void
ctl_table_print(const struct ctl_table *t, FILE *f)
{
    size_t r, i;

    for (r = 0; r < t->nrows; r++) {
        for (i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];

            if (i + 1 == t->ncols) {
                ctl_sanitize(f, s);
            } else {
                ctl_pad(f, s, t->widths[i]);
                fputs("  ", f);
            }
        }
        fputc('\n', f);
    }
}

/* Free a table; NULL is a no-op. */
void
ctl_table_free(struct ctl_table *t)
{
    size_t i;

    if (t == NULL)
        return;
    for (i = 0; i < t->nrows * t->ncols; i++)
        brk_free(t->cells[i]);
    brk_free(t->cells);
    brk_free(t->widths);
    brk_free(t);
}
