/*
 * Redis Sentinel, the pure half (see sentinel.h): the URL and the replies
 * of the Sentinel client protocol, checked as hostile input — a sentinel
 * is another server on the network, and what it names is where every
 * write goes next.
 */
#include <ctype.h>
#include <string.h>

#include "config.h"
#include "sentinel.h"

/* Characters of a host name or address a sentinel may name: letters,
 * digits, '.', '-', '_' and ':' (an IPv6 address, which sentinels print
 * without brackets). */
static int
host_ok(const char *s, size_t n, int allow_colon)
{
    size_t i;

    if (n == 0 || n >= SENTINEL_HOST_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-' ||
              s[i] == '_' || (allow_colon && s[i] == ':')))
            return 0;
    return 1;
}

/* Digits only, 1..65535. */
static int
port_ok(const char *s, size_t n, int *out)
{
    long v = 0;
    size_t i;

    if (n == 0 || n > 5)
        return 0;
    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return 0;
    *out = (int)v;
    return 1;
}

static int
name_ok(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > SENTINEL_MAX_NAME)
        return 0;
    for (i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-' ||
              s[i] == '_'))
            return 0;
    return 1;
}

/* "host[:port]" of length n into node (port 26379 when not given). */
static enum brk_err
parse_node(const char *s, size_t n, struct config_redis_node *node)
{
    const char *colon = memchr(s, ':', n);
    size_t hl = colon != NULL ? (size_t)(colon - s) : n;
    int port = SENTINEL_DEFAULT_PORT;

    if (!host_ok(s, hl, 0))
        return BRK_ERR_INVAL;
    if (colon != NULL && !port_ok(colon + 1, n - hl - 1, &port))
        return BRK_ERR_INVAL;
    node->host = brk_strndup(s, hl);
    if (node->host == NULL)
        return BRK_ERR_NOMEM;
    node->port = port;
    return BRK_OK;
}

/* Digits only, 0..CONFIG_REDIS_MAX_DB. */
static int
db_ok(const char *s, long *out)
{
    size_t n = strlen(s), i;
    long v = 0;

    if (n == 0 || n > 9)
        return 0;
    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v > CONFIG_REDIS_MAX_DB)
        return 0;
    *out = v;
    return 1;
}

/*
 * Parse a sentinel:// URL (see sentinel.h). Returns BRK_OK, BRK_ERR_INVAL
 * or BRK_ERR_NOMEM; *out written only on success.
 */
enum brk_err
sentinel_url_parse(const char *url, struct config_redis *out)
{
    struct config_redis r;
    const char *p, *end, *name, *slash, *c;
    enum brk_err err = BRK_ERR_INVAL;

    memset(&r, 0, sizeof(r));
    if (url == NULL || strncmp(url, "sentinel://", 11) != 0)
        goto out;
    for (c = url; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            goto out;
    p = url + 11;
    end = p + strcspn(p, "/");
    if (*end != '/')
        goto out; /* the master's name is required */
    /* the same userinfo rules as redis:// */
    err = config_redis_userinfo(p, end, &r, &p);
    if (err)
        goto out;
    err = BRK_ERR_INVAL;
    r.sentinels = brk_calloc(SENTINEL_MAX_NODES, sizeof(*r.sentinels));
    if (r.sentinels == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma != NULL ? comma : end;

        if (r.nsentinels == SENTINEL_MAX_NODES)
            goto out;
        err = parse_node(p, (size_t)(stop - p), &r.sentinels[r.nsentinels]);
        if (err)
            goto out;
        r.nsentinels++;
        err = BRK_ERR_INVAL;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    name = end + 1;
    slash = strchr(name, '/');
    if (!name_ok(name, slash != NULL ? (size_t)(slash - name) : strlen(name)))
        goto out;
    if (slash != NULL && !db_ok(slash + 1, &r.db))
        goto out;
    r.master = brk_strndup(name, slash != NULL ? (size_t)(slash - name)
                                               : strlen(name));
    if (r.master == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    err = BRK_OK;
out:
    if (err != BRK_OK)
        config_redis_clear(&r);
    else
        *out = r;
    return err;
}

/*
 * Check a get-master-addr-by-name reply (see sentinel.h). Returns BRK_OK
 * with host and *port written, else BRK_ERR_INVAL and nothing written.
 */
enum brk_err
sentinel_parse_master_addr(size_t n, const char *const *el, const size_t *len,
                           char *host, size_t hostlen, int *port)
{
    int p;

    if (n != 2 || el == NULL || len == NULL || el[0] == NULL || el[1] == NULL ||
        hostlen == 0)
        return BRK_ERR_INVAL;
    /* a NUL inside the string would cut the name short */
    if (memchr(el[0], '\0', len[0]) != NULL || !host_ok(el[0], len[0], 1) ||
        len[0] >= hostlen || !port_ok(el[1], len[1], &p))
        return BRK_ERR_INVAL;
    memcpy(host, el[0], len[0]);
    host[len[0]] = '\0';
    *port = p;
    return BRK_OK;
}

int
sentinel_role_is_master(const char *s, size_t len)
{
    return s != NULL && len == 6 && memcmp(s, "master", 6) == 0;
}

/* The next space-separated word of [*p, end): its start and length. */
static int
next_word(const char **p, const char *end, const char **w, size_t *n)
{
    const char *s = *p, *e;

    if (s >= end)
        return 0;
    e = memchr(s, ' ', (size_t)(end - s));
    if (e == NULL)
        e = end;
    *w = s;
    *n = (size_t)(e - s);
    *p = e < end ? e + 1 : end;
    return *n > 0;
}

/*
 * Parse a +switch-master message (see sentinel.h). Returns BRK_OK (host
 * and *port written), BRK_ERR_NOTFOUND or BRK_ERR_INVAL.
 */
enum brk_err
sentinel_parse_switch(const char *msg, size_t len, const char *master,
                      char *host, size_t hostlen, int *port)
{
    const char *p, *end, *w[5];
    size_t n[5];
    int i, old, nport;

    if (msg == NULL || master == NULL || hostlen == 0)
        return BRK_ERR_INVAL;
    p = msg;
    end = msg + len;
    for (i = 0; i < 5; i++)
        if (!next_word(&p, end, &w[i], &n[i]))
            return BRK_ERR_INVAL;
    if (w[4] + n[4] != end || !name_ok(w[0], n[0]) || !host_ok(w[1], n[1], 1) ||
        !port_ok(w[2], n[2], &old) || !host_ok(w[3], n[3], 1) ||
        n[3] >= hostlen || !port_ok(w[4], n[4], &nport))
        return BRK_ERR_INVAL;
    if (strlen(master) != n[0] || memcmp(master, w[0], n[0]) != 0)
        return BRK_ERR_NOTFOUND;
    memcpy(host, w[3], n[3]);
    host[n[3]] = '\0';
    *port = nport;
    return BRK_OK;
}

/*
 * Find "name:N\r\n" at the start of a line of info (see sentinel.h).
 * Returns BRK_OK (*out written), BRK_ERR_NOTFOUND or BRK_ERR_INVAL.
 */
enum brk_err
sentinel_info_long(const char *info, size_t len, const char *name, long *out)
{
    size_t nl = name != NULL ? strlen(name) : 0, i;
    const char *p, *end, *eol, *v;
    long long x = 0;

    if (info == NULL || nl == 0)
        return BRK_ERR_INVAL;
    p = info;
    end = info + len;
    while (p < end) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > nl && memcmp(p, name, nl) == 0 &&
            p[nl] == ':') {
            v = p + nl + 1;
            if (eol > v && eol[-1] == '\r')
                eol--;
            if (eol == v || eol - v > 10)
                return BRK_ERR_INVAL;
            for (i = 0; v + i < eol; i++) {
                if (!isdigit((unsigned char)v[i]))
                    return BRK_ERR_INVAL;
                x = x * 10 + (v[i] - '0');
            }
            if (x > 2147483647LL)
                return BRK_ERR_INVAL;
            *out = (long)x;
            return BRK_OK;
        }
        p = eol + 1;
    }
    return BRK_ERR_NOTFOUND;
}
