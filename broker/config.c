/*
 * The broker.conf loader (see config.h). libinih splits "key = value"
 * lines; our own line reader in front of it counts lines, refuses long,
 * indented and malformed lines, and tracks sections, because inih's
 * handler gets no line number and truncates long section names.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "dynbuf.h"
#include "log.h"
#include "netaddr.h"
#include "sentinel.h"

/*---- The option table ----*/

enum opt_type {
    OPT_LISTEN,     /* host:port */
    OPT_REDIS,      /* "" or a redis URL */
    OPT_PATH,       /* non-empty path, made absolute */
    OPT_PATH_OPT,   /* path or "" */
    OPT_BASE_URL,   /* http(s) URL without query; trailing '/' dropped */
    OPT_URL,        /* http(s) URL without query */
    OPT_PREFIX,     /* Redis key prefix */
    OPT_LONG,       /* long within [min, max] */
    OPT_LLONG,      /* long long within [min, max] */
    OPT_INT,        /* int within [min, max] */
    OPT_LOG_LEVEL,  /* error|warn|info|debug */
    OPT_LOG_FORMAT, /* json|text */
    OPT_SECRET,     /* any non-empty text without control characters */
    OPT_AES_KEY,    /* 43 characters of [A-Za-z0-9] */
    OPT_ID_OPT,     /* [A-Za-z0-9_-]{1,64} or "" (unset) */
    OPT_URL_LIST,   /* comma-separated http(s) URL prefixes */
    OPT_ADDR_LIST,  /* comma-separated addresses and CIDR prefixes, or "" */
};

#define OPT_F_FORMS    0x1 /* may also be given as NAME_file or NAME_env */
#define OPT_F_SECRET   0x2 /* never echoed, wiped when freed */
#define OPT_F_REQUIRED 0x4 /* no default: the section must set it */

struct opt {
    const char *name;
    enum opt_type type;
    int flags;
    size_t off; /* of the field in struct config or struct suite_conf */
    long long min, max;
    const char *def; /* parsed like a value from the file; NULL: none */
};

#define B(f) offsetof(struct config, f)
#define S(f) offsetof(struct suite_conf, f)

/* [broker]; defaults as SPEC §3. */
static const struct opt broker_opts[] = {
    {"callback_listen", OPT_LISTEN, 0, B(callback_listen), 0, 0,
     "0.0.0.0:8080"},
    {"internal_listen", OPT_LISTEN, 0, B(internal_listen), 0, 0,
     "127.0.0.1:8081"},
    {"redis", OPT_REDIS, OPT_F_FORMS | OPT_F_SECRET, B(redis), 0, 0, ""},
    {"state_dir", OPT_PATH, 0, B(state_dir), 0, 0, "./var"},
    {"scopes_dir", OPT_PATH, 0, B(scopes_dir), 0, 0, "./scopes"},
    {"wecom_api_base", OPT_BASE_URL, 0, B(wecom_api_base), 0, 0,
     "https://qyapi.weixin.qq.com"},
    {"public_base_url", OPT_BASE_URL, 0, B(public_base_url), 0, 0,
     "https://broker.example.com"},
    {"wecom_install_url", OPT_URL, 0, B(wecom_install_url), 0, 0,
     "https://open.work.weixin.qq.com/3rdapp/install"},
    {"wecom_oauth_url", OPT_URL, 0, B(wecom_oauth_url), 0, 0,
     "https://open.weixin.qq.com/connect/oauth2/authorize"},
    {"master_key_file", OPT_PATH, 0, B(master_key_file), 0, 0,
     "./var/master.key"},
    {"index_key_file", OPT_PATH, 0, B(index_key_file), 0, 0, "./var/index.key"},
    {"callback_max_skew", OPT_LONG, 0, B(callback_max_skew), 1, 86400, "300"},
    {"key_prefix", OPT_PREFIX, 0, B(key_prefix), 0, 0, "wb:"},
    {"upstream_timeout_ms", OPT_LONG, 0, B(upstream_timeout_ms), 100, 600000,
     "5000"},
    {"upstream_max_body", OPT_LLONG, 0, B(upstream_max_body), 1024,
     1024LL * 1024 * 1024, "67108864"},
    /* calls per window, shared by every instance (budget.c); WeCom allows
     * 10,000/min and 150,000/h per corp and API, 40,000/min and
     * 1,200,000/h per provider address and API */
    {"upstream_rate_per_corp", OPT_LONG, 0, B(upstream_rate_per_corp), 1,
     1000000, "9000"},
    {"upstream_rate_per_corp_hour", OPT_LONG, 0, B(upstream_rate_per_corp_hour),
     1, 100000000, "140000"},
    {"upstream_rate_per_api", OPT_LONG, 0, B(upstream_rate_per_api), 1,
     10000000, "36000"},
    {"upstream_rate_per_api_hour", OPT_LONG, 0, B(upstream_rate_per_api_hour),
     1, 1000000000, "1100000"},
    {"audit_max_len", OPT_LLONG, 0, B(audit_max_len), 1000, 1000000000LL,
     "1000000"},
    {"audit_max_age", OPT_LLONG, 0, B(audit_max_age), 60, 10LL * 365 * 86400,
     "86400"},
    {"cache_max_age", OPT_LONG, 0, B(cache_max_age), 0, 3600, "5"},
    /* every in-process cache of every loop together (cache.h) */
    {"cache_max_bytes", OPT_LLONG, 0, B(cache_max_bytes), 1048576,
     1024LL * 1024 * 1024 * 1024, "268435456"},
    {"workers", OPT_LONG, 0, B(workers), 1, 64, "1"},
    {"event_claim_idle", OPT_LONG, 0, B(event_claim_idle), 1, 86400, "60"},
    {"event_max_attempts", OPT_LONG, 0, B(event_max_attempts), 1, 1000, "10"},
    {"event_concurrency", OPT_LONG, 0, B(event_concurrency), 1, 4096, "32"},
    {"redis_min_replica_acks", OPT_LONG, 0, B(redis_min_replica_acks), 0, 16,
     "0"},
    /* then the delivery is dead-lettered for that service (SPEC §6b) */
    {"delivery_max_age", OPT_LONG, 0, B(delivery_max_age), 1, 30L * 86400,
     "86400"},
    {"tls_cert_file", OPT_PATH_OPT, 0, B(tls_cert_file), 0, 0, ""},
    {"audit_file", OPT_PATH_OPT, 0, B(audit_file), 0, 0, ""},
    {"tls_key_file", OPT_PATH_OPT, 0, B(tls_key_file), 0, 0, ""},
    {"log_level", OPT_LOG_LEVEL, 0, B(log_level), 0, 0, "info"},
    {"log_format", OPT_LOG_FORMAT, 0, B(log_json), 0, 0, "json"},
    {"trusted_proxies", OPT_ADDR_LIST, 0, B(trusted_proxies), 0, 0, ""},
};

/* [suite ID]. */
static const struct opt suite_opts[] = {
    {"token", OPT_SECRET, OPT_F_FORMS | OPT_F_SECRET | OPT_F_REQUIRED, S(token),
     0, 0, NULL},
    {"encoding_aes_key", OPT_AES_KEY,
     OPT_F_FORMS | OPT_F_SECRET | OPT_F_REQUIRED, S(encoding_aes_key), 0, 0,
     NULL},
    {"secret", OPT_SECRET, OPT_F_FORMS | OPT_F_SECRET | OPT_F_REQUIRED,
     S(secret), 0, 0, NULL},
    {"provider_corpid", OPT_ID_OPT, 0, S(provider_corpid), 0, 0, NULL},
    {"auth_type", OPT_INT, 0, S(auth_type), 0, 1, "0"},
    {"redirect_allow", OPT_URL_LIST, 0, S(redirect_allow), 0, 0, ""},
};

enum form { FORM_INLINE, FORM_FILE, FORM_ENV, FORM__COUNT };

static const char *const form_suffix[FORM__COUNT] = {"", "_file", "_env"};

enum section_kind { SEC_NONE, SEC_BROKER, SEC_SUITE };

/* Everything one config_load call needs while inih drives it. */
struct load_ctx {
    struct config *cfg;
    struct brk_errinfo *info;
    enum brk_err err; /* first error; stops the reader */
    const char *buf;  /* the whole file */
    size_t len, pos;
    int lineno;
    enum section_kind kind;
    int broker_line;
    size_t suites_cap;
    /* line where each key was set in each form, 0 if not set */
    int seen_broker[nitems(broker_opts)][FORM__COUNT];
    int seen_suite[nitems(suite_opts)][FORM__COUNT];
};

static enum brk_err fail(struct load_ctx *ctx, enum brk_err err, int line,
                         const char *fmt, ...) BRK_PRINTF(4, 5);

/*
 * Record an error and return it. Only the first one counts: later ones
 * are consequences, and the reader stops at the first.
 */
static enum brk_err
fail(struct load_ctx *ctx, enum brk_err err, int line, const char *fmt, ...)
{
    char msg[sizeof(((struct brk_errinfo *)NULL)->msg)];
    va_list ap;

    if (ctx->err != BRK_OK)
        return ctx->err;
    ctx->err = err;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    brk_errinfo_set(ctx->info, line, -1, "%s", msg);
    return err;
}

static enum brk_err
fail_nomem(struct load_ctx *ctx)
{
    return fail(ctx, BRK_ERR_NOMEM, 0, "out of memory");
}

/*---- Small validators ----*/

static int
is_id_char(int c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-';
}

/* [A-Za-z0-9_-]{1,CONFIG_MAX_ID}: suite ids and corp ids. */
static int
is_valid_id(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > CONFIG_MAX_ID)
        return 0;
    for (i = 0; i < n; i++)
        if (!is_id_char(s[i]))
            return 0;
    return 1;
}

/* Key names are echoed in messages only when they look like keys. */
static int
is_key_name(const char *s)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return i > 0 && i <= 64;
}

static int
has_ctl(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static int
is_host_chars(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > 253)
        return 0;
    for (i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-' ||
              s[i] == '_'))
            return 0;
    return 1;
}

/*
 * Split "host[:port]" or "[v6][:port]" of length n. The host (brackets
 * removed) goes to host[hostlen] when host is not NULL.
 */
static enum brk_err
split_hostport(const char *s, size_t n, int need_port, int allow_zero,
               char *host, size_t hostlen, int *port)
{
    char v6[INET6_ADDRSTRLEN];
    unsigned char addr[16];
    const char *h, *rb, *colon, *ps = NULL;
    size_t hl, pl = 0, i;
    long pv = 0;

    if (n == 0)
        return BRK_ERR_INVAL;
    if (s[0] == '[') {
        rb = memchr(s, ']', n);
        if (rb == NULL)
            return BRK_ERR_INVAL;
        h = s + 1;
        hl = (size_t)(rb - h);
        if (hl == 0 || hl >= sizeof(v6))
            return BRK_ERR_INVAL;
        memcpy(v6, h, hl);
        v6[hl] = '\0';
        if (inet_pton(AF_INET6, v6, addr) != 1)
            return BRK_ERR_INVAL;
        if (rb + 1 < s + n) {
            if (rb[1] != ':')
                return BRK_ERR_INVAL;
            ps = rb + 2;
            pl = (size_t)(s + n - ps);
        }
    } else {
        colon = memchr(s, ':', n);
        h = s;
        hl = colon != NULL ? (size_t)(colon - s) : n;
        if (!is_host_chars(h, hl))
            return BRK_ERR_INVAL;
        if (colon != NULL) {
            ps = colon + 1;
            pl = n - hl - 1;
        }
    }
    if (ps == NULL && need_port)
        return BRK_ERR_INVAL;
    if (ps != NULL) {
        if (pl == 0 || pl > 5)
            return BRK_ERR_INVAL;
        for (i = 0; i < pl; i++) {
            if (!isdigit((unsigned char)ps[i]))
                return BRK_ERR_INVAL;
            pv = pv * 10 + (ps[i] - '0');
        }
        if (pv > 65535 || (pv == 0 && !allow_zero))
            return BRK_ERR_INVAL;
    }
    if (host != NULL) {
        if (hl >= hostlen)
            return BRK_ERR_INVAL;
        memcpy(host, h, hl);
        host[hl] = '\0';
    }
    if (port != NULL)
        *port = (int)pv;
    return BRK_OK;
}

/*
 * Check an absolute http(s) URL: a host, no userinfo, no backslash, no
 * fragment, no query unless allowed, printable ASCII only. NULL when
 * fine, else why not (a fixed string: the value is never echoed).
 */
static const char *
url_problem(const char *s, int allow_query)
{
    const char *a, *end;
    size_t i;

    if (strncmp(s, "http://", 7) == 0)
        a = s + 7;
    else if (strncmp(s, "https://", 8) == 0)
        a = s + 8;
    else
        return "must start with http:// or https://";
    for (i = 0; s[i] != '\0'; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return "must hold printable ASCII only (no spaces)";
        if (s[i] == '\\')
            return "must not contain a backslash";
        if (s[i] == '#')
            return "must not contain a fragment ('#')";
        if (s[i] == '?' && !allow_query)
            return "must not contain a query ('?')";
    }
    end = a + strcspn(a, "/?");
    if (memchr(a, '@', (size_t)(end - a)) != NULL)
        return "must not contain userinfo ('user@')";
    if (split_hostport(a, (size_t)(end - a), 0, 0, NULL, 0, NULL) != BRK_OK)
        return "needs a valid host and optional port 1-65535";
    return NULL;
}

/* strtoll with the checks it lacks: 0 ok, -1 not a number, -2 range. */
static int
parse_ll(const char *s, long long *out)
{
    char *end = NULL;
    long long v;

    if (!(isdigit((unsigned char)s[0]) ||
          (s[0] == '-' && isdigit((unsigned char)s[1]))))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno == ERANGE)
        return -2;
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

/*---- Exported helpers ----*/

/*
 * Split a listen address "host:port" or "[v6]:port" (host copied into
 * host[hostlen] without brackets, *port set). Port must be 1..65535, or 0
 * when allow_zero. Returns BRK_OK or BRK_ERR_INVAL (bad syntax, bad port,
 * host too long for hostlen); outputs are written only on success.
 */
enum brk_err
config_parse_listen(const char *s, char *host, size_t hostlen, int *port,
                    int allow_zero)
{
    if (s == NULL || host == NULL || port == NULL)
        return BRK_ERR_INVAL;
    return split_hostport(s, strlen(s), 1, allow_zero, host, hostlen, port);
}

/*
 * Release the strings config_redis_parse stored in r, wiping the
 * password; r is zeroed. NULL is a no-op. Cannot fail.
 */
void
config_redis_clear(struct config_redis *r)
{
    size_t i;

    if (r == NULL)
        return;
    brk_free(r->host);
    brk_free(r->unix_path);
    brk_free(r->user);
    brk_free_secret_str(r->password);
    brk_free(r->master);
    for (i = 0; i < r->nsentinels; i++)
        brk_free(r->sentinels[i].host);
    brk_free(r->sentinels);
    memset(r, 0, sizeof(*r));
}

/* Digits only, within 0..max. */
static int
parse_db(const char *s, size_t n, long max, long *out)
{
    long v = 0;
    size_t i;

    if (n == 0 || n > 9)
        return -1;
    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/*
 * The optional "[user]:password@" at p (before end, the authority's end)
 * of a redis:// or sentinel:// URL into r->user and r->password (owned).
 * One '@' only (the store splits at the first), a non-empty password, user
 * < 128 and password < 256 bytes. *after is where the host starts. BRK_OK,
 * BRK_ERR_INVAL or BRK_ERR_NOMEM (r as it was, nothing owned added).
 */
enum brk_err
config_redis_userinfo(const char *p, const char *end, struct config_redis *r,
                      const char **after)
{
    const char *at = memchr(p, '@', (size_t)(end - p)), *colon;
    char *user = NULL;

    if (at == NULL) {
        *after = p;
        return BRK_OK;
    }
    colon = memchr(p, ':', (size_t)(at - p));
    if (colon == NULL || at == colon + 1 || (size_t)(colon - p) >= 128 ||
        (size_t)(at - colon - 1) >= 256 ||
        memchr(at + 1, '@', (size_t)(end - at - 1)) != NULL)
        return BRK_ERR_INVAL;
    if (colon > p && (user = brk_strndup(p, (size_t)(colon - p))) == NULL)
        return BRK_ERR_NOMEM;
    r->password = brk_strndup(colon + 1, (size_t)(at - colon - 1));
    if (r->password == NULL) {
        brk_free(user);
        return BRK_ERR_NOMEM;
    }
    r->user = user;
    *after = at + 1;
    return BRK_OK;
}

/*
 * Split a non-empty redis value, in the grammar the store accepts:
 * "redis://[[user]:password@]host[:port][/db]" (port 6379 by default,
 * no IPv6 literal, no '@' or '/' in the password) or
 * "unix:///absolute/path[?db=N]"; db is 0..CONFIG_REDIS_MAX_DB. Returns
 * BRK_OK, BRK_ERR_INVAL or BRK_ERR_NOMEM. On success the caller owns the
 * strings in *out and releases them with config_redis_clear(); *out is
 * untouched on error.
 */
enum brk_err
config_redis_parse(const char *url, struct config_redis *out)
{
    struct config_redis r;
    char host[256];
    const char *p, *end, *q;
    size_t n;
    enum brk_err err = BRK_ERR_INVAL;

    memset(&r, 0, sizeof(r));
    if (url == NULL || has_ctl(url))
        goto out;
    if (strncmp(url, "unix://", 7) == 0) {
        p = url + 7;
        q = strchr(p, '?');
        n = q != NULL ? (size_t)(q - p) : strlen(p);
        /* sun_path holds 108 bytes with the NUL */
        if (p[0] != '/' || n < 2 || n > 107)
            goto out;
        if (q != NULL &&
            (strncmp(q, "?db=", 4) != 0 ||
             parse_db(q + 4, strlen(q + 4), CONFIG_REDIS_MAX_DB, &r.db) != 0))
            goto out;
        r.unix_path = brk_strndup(p, n);
        err = r.unix_path != NULL ? BRK_OK : BRK_ERR_NOMEM;
        goto out;
    }
    if (strncmp(url, "sentinel://", 11) == 0)
        return sentinel_url_parse(url, out);
    if (strncmp(url, "redis://", 8) != 0)
        goto out;
    p = url + 8;
    end = p + strcspn(p, "/");
    err = config_redis_userinfo(p, end, &r, &p);
    if (err)
        goto out;
    err = BRK_ERR_INVAL;
    if (p < end && *p == '[')
        goto out;
    if (split_hostport(p, (size_t)(end - p), 0, 0, host, sizeof(host),
                       &r.port) != BRK_OK)
        goto out;
    if (memchr(p, ':', (size_t)(end - p)) == NULL)
        r.port = 6379;
    if (*end == '/' && end[1] != '\0' &&
        parse_db(end + 1, strlen(end + 1), CONFIG_REDIS_MAX_DB, &r.db) != 0)
        goto out;
    r.host = brk_strdup(host);
    if (r.host == NULL) {
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

/*---- Files and paths ----*/

/*
 * Read a whole file into d (which carries the size limit). Returns
 * BRK_ERR_IO with *eno set, BRK_ERR_INVAL for a non-regular file when
 * want_regular, BRK_ERR_TOOBIG or BRK_ERR_NOMEM.
 */
static enum brk_err
read_file(const char *path, int want_regular, struct dynbuf *d, int *eno)
{
    char chunk[4096];
    struct stat st;
    ssize_t n;
    int fd;
    enum brk_err err = BRK_OK;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        *eno = errno;
        return BRK_ERR_IO;
    }
    if (want_regular && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        err = BRK_ERR_INVAL;
        goto out;
    }
    for (;;) {
        n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *eno = errno;
            err = BRK_ERR_IO;
            break;
        }
        if (n == 0)
            break;
        err = dynbuf_add(d, chunk, (size_t)n);
        if (err)
            break;
    }
out:
    brk_wipe(chunk, sizeof(chunk));
    close(fd);
    return err;
}

/*
 * Make v absolute against dir: "./x" and "x" become "DIR/x". Returns
 * BRK_ERR_NOMEM or BRK_ERR_TOOBIG (longer than PATH_MAX).
 */
static enum brk_err
path_resolve(const char *dir, const char *v, char **out)
{
    size_t dl, vl, o;
    char *p;

    if (v[0] == '/') {
        if (strlen(v) >= PATH_MAX)
            return BRK_ERR_TOOBIG;
        p = brk_strdup(v);
        if (p == NULL)
            return BRK_ERR_NOMEM;
        *out = p;
        return BRK_OK;
    }
    while (v[0] == '.' && v[1] == '/') {
        v += 2;
        while (v[0] == '/')
            v++;
    }
    if (strcmp(v, ".") == 0)
        v = "";
    dl = strlen(dir);
    vl = strlen(v);
    if (dl + 1 + vl >= PATH_MAX)
        return BRK_ERR_TOOBIG;
    p = brk_malloc(dl + vl + 2);
    if (p == NULL)
        return BRK_ERR_NOMEM;
    memcpy(p, dir, dl);
    o = dl;
    if (vl > 0 && (dl == 0 || dir[dl - 1] != '/'))
        p[o++] = '/';
    memcpy(p + o, v, vl);
    p[o + vl] = '\0';
    *out = p;
    return BRK_OK;
}

/* realpath() of the directory holding path. */
static enum brk_err
dir_of(const char *path, char **out, int *eno)
{
    char buf[PATH_MAX];
    char *d = NULL, *rp;
    const char *slash = strrchr(path, '/');
    enum brk_err err = BRK_OK;

    if (slash == NULL)
        d = brk_strdup(".");
    else if (slash == path)
        d = brk_strdup("/");
    else
        d = brk_strndup(path, (size_t)(slash - path));
    if (d == NULL)
        return BRK_ERR_NOMEM;
    rp = realpath(d, buf);
    if (rp == NULL) {
        *eno = errno;
        err = BRK_ERR_IO;
        goto out;
    }
    *out = brk_strdup(buf);
    if (*out == NULL)
        err = BRK_ERR_NOMEM;
out:
    brk_free(d);
    return err;
}

/*
 * The content of a KEY_file secret, one trailing "\n" or "\r\n" removed.
 * Errors are recorded in ctx; *out is owned (brk_free_secret_str).
 */
static enum brk_err
read_secret_file(struct load_ctx *ctx, const char *key, const char *rel,
                 int line, char **out)
{
    struct dynbuf d;
    char *path = NULL, *s = NULL;
    char ebuf[128];
    size_t n = 0, cap = 0;
    int eno = 0;
    enum brk_err err;

    dynbuf_init_secret(&d, CONFIG_MAX_SECRET_FILE);
    err = path_resolve(ctx->cfg->dir, rel, &path);
    if (err == BRK_ERR_NOMEM) {
        fail_nomem(ctx);
        goto out;
    }
    if (err) {
        fail(ctx, BRK_ERR_CONFIG, line, "%s: path too long", key);
        goto out;
    }
    err = read_file(path, 1, &d, &eno);
    if (err == BRK_ERR_IO) {
        fail(ctx, BRK_ERR_CONFIG, line, "%s: cannot read %s: %s", key, path,
             strerror_r(eno, ebuf, sizeof(ebuf)));
        goto out;
    }
    if (err == BRK_ERR_INVAL) {
        fail(ctx, BRK_ERR_CONFIG, line, "%s: %s is not a regular file", key,
             path);
        goto out;
    }
    if (err == BRK_ERR_TOOBIG) {
        fail(ctx, BRK_ERR_CONFIG, line, "%s: %s is larger than %d bytes", key,
             path, CONFIG_MAX_SECRET_FILE);
        goto out;
    }
    if (err == BRK_OK)
        err = dynbuf_take(&d, &s, &n);
    if (err) {
        fail_nomem(ctx);
        goto out;
    }
    cap = n;
    if (n > 0 && s[n - 1] == '\n') {
        n--;
        if (n > 0 && s[n - 1] == '\r')
            n--;
    }
    s[n] = '\0';
    if (n == 0 || memchr(s, '\0', n) != NULL) {
        fail(ctx, BRK_ERR_CONFIG, line, "%s: %s is empty or holds a NUL byte",
             key, path);
        goto out;
    }
    *out = s;
    s = NULL;
out:
    brk_free_secret(s, cap);
    dynbuf_free(&d);
    brk_free(path);
    return ctx->err;
}

/*---- Setting values ----*/

static void
free_list(char **list)
{
    size_t i;

    if (list == NULL)
        return;
    for (i = 0; list[i] != NULL; i++)
        brk_free(list[i]);
    brk_free(list);
}

/* Split a redirect_allow value into sc->redirect_allow. */
static enum brk_err
set_url_list(struct load_ctx *ctx, struct suite_conf *sc, const char *key,
             const char *v, int line)
{
    char **list = NULL, **nl;
    char *item = NULL;
    const char *p = v, *e, *why;
    size_t n = 0, len;

    list = brk_calloc(1, sizeof(*list));
    if (list == NULL) {
        fail_nomem(ctx);
        goto out;
    }
    /* an empty value is an empty list; otherwise no entry may be empty */
    while (*v != '\0') {
        e = strchr(p, ',');
        if (e == NULL)
            e = p + strlen(p);
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        len = (size_t)(e - p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 0) {
            fail(ctx, BRK_ERR_CONFIG, line, "%s: entry %zu is empty", key,
                 n + 1);
            goto out;
        }
        item = brk_strndup(p, len);
        if (item == NULL) {
            fail_nomem(ctx);
            goto out;
        }
        why = url_problem(item, 0);
        if (why != NULL) {
            fail(ctx, BRK_ERR_CONFIG, line, "%s: entry %zu %s", key, n + 1,
                 why);
            goto out;
        }
        nl = brk_realloc(list, (n + 2) * sizeof(*list));
        if (nl == NULL) {
            fail_nomem(ctx);
            goto out;
        }
        list = nl;
        list[n++] = item;
        list[n] = NULL;
        item = NULL;
        if (*e == '\0')
            break;
        p = e + 1;
    }
    free_list(sc->redirect_allow);
    sc->redirect_allow = list;
    sc->nredirect_allow = n;
    list = NULL;
out:
    brk_free(item);
    free_list(list);
    return ctx->err;
}

static int
opt_is_str(const struct opt *o)
{
    switch (o->type) {
    case OPT_LONG:
    case OPT_LLONG:
    case OPT_INT:
    case OPT_LOG_LEVEL:
    case OPT_LOG_FORMAT:
    case OPT_URL_LIST:
        return 0;
    default:
        return 1;
    }
}

static int
opt_allows_empty(const struct opt *o)
{
    return o->type == OPT_REDIS || o->type == OPT_PATH_OPT ||
           o->type == OPT_ID_OPT || o->type == OPT_URL_LIST ||
           o->type == OPT_ADDR_LIST;
}

/* Replace a string field with a copy of v (n bytes). */
static enum brk_err
store_str(struct load_ctx *ctx, const struct opt *o, char *base, const char *v,
          size_t n)
{
    char **field = (char **)(void *)(base + o->off);
    char *copy = brk_strndup(v, n);

    if (copy == NULL)
        return fail_nomem(ctx);
    if (o->flags & OPT_F_SECRET)
        brk_free_secret_str(*field);
    else
        brk_free(*field);
    *field = copy;
    return BRK_OK;
}

/* trusted_proxies: checked as netaddr parses it, kept as written. */
static enum brk_err
set_addr_list(struct load_ctx *ctx, const struct opt *o, char *base,
              const char *key, const char *v, size_t n, int line)
{
    struct brk_errinfo why = {"", 0, -1};
    struct netaddr_list *l = NULL;
    char *copy = brk_strndup(v, n);
    enum brk_err err;

    if (copy == NULL)
        return fail_nomem(ctx);
    err = netaddr_list_parse(copy, &l, &why);
    brk_free(copy);
    netaddr_list_free(l);
    if (err == BRK_ERR_NOMEM)
        return fail_nomem(ctx);
    if (err)
        return fail(ctx, BRK_ERR_CONFIG, line, "%s: %s", key, why.msg);
    return store_str(ctx, o, base, v, n);
}

static enum brk_err
set_number(struct load_ctx *ctx, const struct opt *o, char *base,
           const char *key, const char *v, int line)
{
    long long n = 0;
    int r = parse_ll(v, &n);

    if (r == 0 && (n < o->min || n > o->max))
        r = -2;
    if (r != 0)
        return fail(ctx, BRK_ERR_CONFIG, line, "%s: %s (allowed %lld..%lld)",
                    key, r == -1 ? "not an integer" : "out of range", o->min,
                    o->max);
    if (o->type == OPT_LONG)
        *(long *)(void *)(base + o->off) = (long)n;
    else if (o->type == OPT_LLONG)
        *(long long *)(void *)(base + o->off) = n;
    else
        *(int *)(void *)(base + o->off) = (int)n;
    return BRK_OK;
}

static enum brk_err
set_secret(struct load_ctx *ctx, const struct opt *o, char *base,
           const char *key, const char *v, int line)
{
    size_t n = strlen(v), i;

    if (n > CONFIG_MAX_SECRET_FILE || has_ctl(v))
        return fail(
            ctx, BRK_ERR_CONFIG, line,
            "%s: value longer than %d bytes or holding a control character",
            key, CONFIG_MAX_SECRET_FILE);
    if (o->type == OPT_AES_KEY) {
        if (n != 43)
            return fail(ctx, BRK_ERR_CONFIG, line,
                        "%s: must be exactly 43 characters of [A-Za-z0-9] "
                        "(got %zu)",
                        key, n);
        for (i = 0; i < n; i++) {
            if (!isalnum((unsigned char)v[i]))
                return fail(ctx, BRK_ERR_CONFIG, line,
                            "%s: must be exactly 43 characters of [A-Za-z0-9] "
                            "(character %zu is not)",
                            key, i + 1);
        }
    }
    if (o->type == OPT_REDIS && n > 0) {
        struct config_redis r;
        enum brk_err err = config_redis_parse(v, &r);

        if (err == BRK_ERR_NOMEM)
            return fail_nomem(ctx);
        if (err)
            return fail(ctx, BRK_ERR_CONFIG, line,
                        "%s: expected redis://[[user]:password@]host[:port]"
                        "[/db], unix:///path[?db=N] or sentinel://"
                        "[[user]:password@]host[:port][,host[:port]...]"
                        "/MASTER[/db]",
                        key);
        config_redis_clear(&r);
    }
    return store_str(ctx, o, base, v, n);
}

/*
 * Validate v for option o and store it in base (a struct config or
 * struct suite_conf). key is the name as written, for messages.
 */
static enum brk_err
set_value(struct load_ctx *ctx, const struct opt *o, char *base,
          const char *key, const char *v, int line)
{
    char host[256];
    const char *why;
    char *path = NULL;
    size_t n = strlen(v), i;
    enum log_level lvl;
    int port;
    enum brk_err err;

    if (n == 0 && !opt_allows_empty(o))
        return fail(ctx, BRK_ERR_CONFIG, line, "%s: empty value", key);
    switch (o->type) {
    case OPT_LISTEN:
        if (config_parse_listen(v, host, sizeof(host), &port, 0) != BRK_OK)
            return fail(ctx, BRK_ERR_CONFIG, line,
                        "%s: expected host:port or [ipv6]:port, port 1-65535",
                        key);
        return store_str(ctx, o, base, v, n);
    case OPT_PATH:
    case OPT_PATH_OPT:
        if (n == 0)
            return store_str(ctx, o, base, "", 0);
        err = path_resolve(ctx->cfg->dir, v, &path);
        if (err == BRK_ERR_NOMEM)
            return fail_nomem(ctx);
        if (err)
            return fail(ctx, BRK_ERR_CONFIG, line, "%s: path too long", key);
        err = store_str(ctx, o, base, path, strlen(path));
        brk_free(path);
        return err;
    case OPT_BASE_URL:
    case OPT_URL:
        why = url_problem(v, 0);
        if (why != NULL)
            return fail(ctx, BRK_ERR_CONFIG, line, "%s: %s", key, why);
        /* callers append "/path": keep "https://host", not "https://host/" */
        while (o->type == OPT_BASE_URL && n > 0 && v[n - 1] == '/')
            n--;
        return store_str(ctx, o, base, v, n);
    case OPT_PREFIX:
        for (i = 0; i < n; i++)
            if (v[i] <= ' ' || v[i] >= 0x7f || v[i] == '{' || v[i] == '}')
                break;
        if (i < n || n > 64)
            return fail(
                ctx, BRK_ERR_CONFIG, line,
                "%s: must be 1-64 printable characters without spaces or "
                "braces",
                key);
        return store_str(ctx, o, base, v, n);
    case OPT_LONG:
    case OPT_LLONG:
    case OPT_INT:
        return set_number(ctx, o, base, key, v, line);
    case OPT_LOG_LEVEL:
        if (log_level_parse(v, &lvl) != BRK_OK)
            return fail(ctx, BRK_ERR_CONFIG, line,
                        "%s: must be error, warn, info or debug", key);
        *(int *)(void *)(base + o->off) = (int)lvl;
        return BRK_OK;
    case OPT_LOG_FORMAT:
        if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0)
            return fail(ctx, BRK_ERR_CONFIG, line, "%s: must be json or text",
                        key);
        *(int *)(void *)(base + o->off) = strcmp(v, "json") == 0;
        return BRK_OK;
    case OPT_REDIS:
    case OPT_SECRET:
    case OPT_AES_KEY:
        return set_secret(ctx, o, base, key, v, line);
    case OPT_ID_OPT:
        if (n > 0 && !is_valid_id(v, n))
            return fail(ctx, BRK_ERR_CONFIG, line,
                        "%s: must be 1-%d characters of [A-Za-z0-9_-]", key,
                        CONFIG_MAX_ID);
        return n > 0 ? store_str(ctx, o, base, v, n) : BRK_OK;
    case OPT_URL_LIST:
        return set_url_list(ctx, (struct suite_conf *)(void *)base, key, v,
                            line);
    case OPT_ADDR_LIST:
        return set_addr_list(ctx, o, base, key, v, n, line);
    }
    return BRK_OK;
}

/*---- Sections ----*/

static char *
suite_base(struct load_ctx *ctx)
{
    return (char *)(void *)&ctx->cfg->suites[ctx->cfg->nsuites - 1];
}

/* Apply defaults to the suite section that just ended; check required. */
static enum brk_err
finish_suite(struct load_ctx *ctx)
{
    struct suite_conf *sc = &ctx->cfg->suites[ctx->cfg->nsuites - 1];
    const struct opt *o;
    size_t i;

    for (i = 0; i < nitems(suite_opts) && ctx->err == BRK_OK; i++) {
        o = &suite_opts[i];
        if (ctx->seen_suite[i][FORM_INLINE] || ctx->seen_suite[i][FORM_FILE] ||
            ctx->seen_suite[i][FORM_ENV])
            continue;
        if (o->flags & OPT_F_REQUIRED)
            fail(ctx, BRK_ERR_CONFIG, sc->line,
                 "[suite %s]: missing %s (or %s_file, %s_env)", sc->suite_id,
                 o->name, o->name, o->name);
        else if (o->def != NULL)
            set_value(ctx, o, suite_base(ctx), o->name, o->def, 0);
    }
    return ctx->err;
}

static enum brk_err
start_suite(struct load_ctx *ctx, const char *id, size_t idlen)
{
    struct config *cfg = ctx->cfg;
    struct suite_conf *ns;
    size_t i, cap;

    for (i = 0; i < cfg->nsuites; i++) {
        if (strlen(cfg->suites[i].suite_id) == idlen &&
            memcmp(cfg->suites[i].suite_id, id, idlen) == 0)
            return fail(ctx, BRK_ERR_CONFIG, ctx->lineno,
                        "duplicate section [suite %s] (first on line %d)",
                        cfg->suites[i].suite_id, cfg->suites[i].line);
    }
    if (cfg->nsuites == ctx->suites_cap) {
        cap = ctx->suites_cap ? ctx->suites_cap * 2 : 4;
        ns = brk_realloc(cfg->suites, cap * sizeof(*ns));
        if (ns == NULL)
            return fail_nomem(ctx);
        cfg->suites = ns;
        ctx->suites_cap = cap;
    }
    ns = &cfg->suites[cfg->nsuites];
    memset(ns, 0, sizeof(*ns));
    ns->suite_id = brk_strndup(id, idlen);
    if (ns->suite_id == NULL)
        return fail_nomem(ctx);
    ns->line = ctx->lineno;
    cfg->nsuites++;
    memset(ctx->seen_suite, 0, sizeof(ctx->seen_suite));
    ctx->kind = SEC_SUITE;
    return BRK_OK;
}

/* A "[...]" line: end the previous section and start the named one. */
static enum brk_err
section_header(struct load_ctx *ctx, const char *p, size_t len)
{
    const char *rb = memchr(p, ']', len), *in, *id, *rest;
    size_t inl, idl, restl;

    if (rb == NULL)
        return fail(ctx, BRK_ERR_CONFIG, ctx->lineno,
                    "section header without ']'");
    rest = rb + 1;
    restl = len - (size_t)(rest - p);
    while (restl > 0 && (*rest == ' ' || *rest == '\t')) {
        rest++;
        restl--;
    }
    if (restl > 0 && *rest != ';' && *rest != '#')
        return fail(ctx, BRK_ERR_CONFIG, ctx->lineno, "text after ']'");
    in = p + 1;
    inl = (size_t)(rb - in);
    while (inl > 0 && (*in == ' ' || *in == '\t')) {
        in++;
        inl--;
    }
    while (inl > 0 && (in[inl - 1] == ' ' || in[inl - 1] == '\t'))
        inl--;
    if (ctx->kind == SEC_SUITE && finish_suite(ctx) != BRK_OK)
        return ctx->err;
    if (inl == 6 && memcmp(in, "broker", 6) == 0) {
        if (ctx->broker_line != 0)
            return fail(ctx, BRK_ERR_CONFIG, ctx->lineno,
                        "duplicate section [broker] (first on line %d)",
                        ctx->broker_line);
        ctx->broker_line = ctx->lineno;
        ctx->kind = SEC_BROKER;
        return BRK_OK;
    }
    if (inl >= 5 && memcmp(in, "suite", 5) == 0 &&
        (inl == 5 || in[5] == ' ' || in[5] == '\t')) {
        id = in + 5;
        idl = inl - 5;
        while (idl > 0 && (*id == ' ' || *id == '\t')) {
            id++;
            idl--;
        }
        if (!is_valid_id(id, idl))
            return fail(
                ctx, BRK_ERR_CONFIG, ctx->lineno,
                "bad section [suite ID]: the ID must be 1-%d characters of "
                "[A-Za-z0-9_-]",
                CONFIG_MAX_ID);
        return start_suite(ctx, id, idl);
    }
    return fail(ctx, BRK_ERR_CONFIG, ctx->lineno,
                "unknown section [%.*s] (expected [broker] or [suite ID])",
                (int)(inl > 40 ? 40 : inl), in);
}

/*---- Lines ----*/

/*
 * Check one line (terminator and BOM removed) before inih sees it, so
 * that inih never has to guess: no control characters, no indented
 * content (inih would read it as a new key, or glue it to the previous
 * value if multiline were on), and "key = value" lines use '=' before
 * any ':' or inline comment.
 */
static enum brk_err
check_line(struct load_ctx *ctx, const char *p, size_t len)
{
    size_t i;
    int was_space = 0;

    for (i = 0; i < len; i++) {
        if (((unsigned char)p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
            return fail(ctx, BRK_ERR_CONFIG, ctx->lineno,
                        "control character in line (column %zu)", i + 1);
    }
    for (i = 0; i < len && (p[i] == ' ' || p[i] == '\t'); i++)
        ;
    if (i == len || p[i] == ';' || p[i] == '#')
        return BRK_OK;
    if (i > 0)
        return fail(ctx, BRK_ERR_CONFIG, ctx->lineno,
                    "indented line: continuation lines are not supported");
    if (p[0] == '[') {
        return section_header(ctx, p, len);
    }
    /* inih's split: the first '=' or ':' not inside an inline comment */
    for (i = 0; i < len; i++) {
        if (p[i] == '=' || p[i] == ':' || (was_space && p[i] == ';'))
            break;
        was_space = p[i] == ' ' || p[i] == '\t';
    }
    if (i == len || p[i] != '=')
        return fail(ctx, BRK_ERR_CONFIG, ctx->lineno, "expected 'key = value'");
    if (ctx->kind == SEC_NONE)
        return fail(ctx, BRK_ERR_CONFIG, ctx->lineno,
                    "key before any section ([broker] or [suite ID])");
    return BRK_OK;
}

/*
 * The ini_reader: hand inih one line at a time from the file buffer.
 * Stops (returns NULL) at the end or at the first error, and then wipes
 * inih's line buffer, which may have held an inline secret.
 */
static char *
read_line(char *str, int num, void *stream)
{
    struct load_ctx *ctx = stream;
    const char *p, *nl;
    size_t len;

    if (ctx->err != BRK_OK || ctx->pos >= ctx->len)
        goto stop;
    p = ctx->buf + ctx->pos;
    nl = memchr(p, '\n', ctx->len - ctx->pos);
    len = nl != NULL ? (size_t)(nl - p) : ctx->len - ctx->pos;
    ctx->pos += len + (nl != NULL);
    ctx->lineno++;
    if (len > 0 && p[len - 1] == '\r')
        len--;
    if (ctx->lineno == 1 && len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
        p += 3;
        len -= 3;
    }
    /* inih's buffer is sized for CONFIG_MAX_LINE + "\n" + NUL */
    if (len > CONFIG_MAX_LINE || num < 2 || len > (size_t)num - 2) {
        fail(ctx, BRK_ERR_CONFIG, ctx->lineno, "line too long (max %d bytes)",
             CONFIG_MAX_LINE);
        goto stop;
    }
    check_line(ctx, p, len);
    if (ctx->err != BRK_OK)
        goto stop;
    memcpy(str, p, len);
    str[len] = '\n';
    str[len + 1] = '\0';
    return str;
stop:
    if (num > 0)
        brk_wipe(str, (size_t)num);
    return NULL;
}

/* Find key in the current section's table: option index and form. */
static int
find_opt(const struct opt *opts, size_t nopts, const char *key, enum form *form)
{
    size_t i, nl;
    int f;

    for (i = 0; i < nopts; i++) {
        nl = strlen(opts[i].name);
        if (strncmp(key, opts[i].name, nl) != 0)
            continue;
        for (f = 0; f < FORM__COUNT; f++) {
            if (f != FORM_INLINE && !(opts[i].flags & OPT_F_FORMS))
                break;
            if (strcmp(key + nl, form_suffix[f]) == 0) {
                *form = (enum form)f;
                return (int)i;
            }
        }
    }
    return -1;
}

static int
is_env_name(const char *s)
{
    size_t i;

    if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (i = 1; s[i] != '\0'; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return i <= 128;
}

static enum brk_err
handle_pair(struct load_ctx *ctx, const char *key, const char *value)
{
    const struct opt *opts = suite_opts;
    size_t nopts = nitems(suite_opts);
    int(*seen)[FORM__COUNT] = ctx->seen_suite;
    const struct opt *o;
    char *owned = NULL;
    const char *v = value, *env;
    enum form form = FORM_INLINE;
    int idx, f, line = ctx->lineno;
    char *base;

    if (ctx->kind == SEC_NONE)
        return fail(ctx, BRK_ERR_CONFIG, line, "key before any section");
    if (ctx->kind == SEC_BROKER) {
        opts = broker_opts;
        nopts = nitems(broker_opts);
        seen = ctx->seen_broker;
        base = (char *)(void *)ctx->cfg;
    } else {
        base = suite_base(ctx);
    }
    idx = find_opt(opts, nopts, key, &form);
    if (idx < 0 && !is_key_name(key))
        return fail(ctx, BRK_ERR_CONFIG, line, "invalid key name");
    if (idx < 0 && ctx->kind == SEC_BROKER)
        return fail(ctx, BRK_ERR_CONFIG, line, "unknown key '%s' in [broker]",
                    key);
    if (idx < 0)
        return fail(ctx, BRK_ERR_CONFIG, line, "unknown key '%s' in [suite %s]",
                    key, ctx->cfg->suites[ctx->cfg->nsuites - 1].suite_id);
    o = &opts[idx];
    if (seen[idx][form])
        return fail(ctx, BRK_ERR_CONFIG, line,
                    "duplicate key '%s' (first set on line %d)", key,
                    seen[idx][form]);
    for (f = 0; f < FORM__COUNT; f++) {
        if (seen[idx][f])
            return fail(ctx, BRK_ERR_CONFIG, line,
                        "%s: %s%s already set on line %d (use only one of %s, "
                        "%s_file, %s_env)",
                        key, o->name, form_suffix[f], seen[idx][f], o->name,
                        o->name, o->name);
    }
    seen[idx][form] = line;
    if (form != FORM_INLINE && *value == '\0')
        return fail(ctx, BRK_ERR_CONFIG, line, "%s: empty value", key);
    if (form == FORM_FILE) {
        read_secret_file(ctx, key, value, line, &owned);
        v = owned;
    } else if (form == FORM_ENV) {
        env = is_env_name(value) ? getenv(value) : NULL;
        if (!is_env_name(value))
            fail(ctx, BRK_ERR_CONFIG, line,
                 "%s: not an environment variable name", key);
        else if (env == NULL || *env == '\0')
            fail(ctx, BRK_ERR_CONFIG, line, "%s: environment variable %s is %s",
                 key, value, env == NULL ? "not set" : "empty");
        v = env;
    }
    if (ctx->err == BRK_OK)
        set_value(ctx, o, base, key, v, line);
    brk_free_secret_str(owned);
    return ctx->err;
}

/* The ini_handler. inih's section name is ignored: see read_line. */
static int
on_pair(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *ctx = user;

    (void)section;
    if (ctx->err == BRK_OK)
        handle_pair(ctx, name, value);
    return ctx->err == BRK_OK;
}

/*---- Loading ----*/

/* After the last line: suites present, [broker] defaults, TLS pair. */
static enum brk_err
finish(struct load_ctx *ctx)
{
    struct config *cfg = ctx->cfg;
    const char *set;
    size_t i;
    int line = 0;

    if (ctx->kind == SEC_SUITE)
        finish_suite(ctx);
    if (ctx->err == BRK_OK && cfg->nsuites == 0)
        fail(ctx, BRK_ERR_CONFIG, 0, "no [suite ...] section");
    for (i = 0; i < nitems(broker_opts) && ctx->err == BRK_OK; i++) {
        if (!ctx->seen_broker[i][FORM_INLINE] &&
            !ctx->seen_broker[i][FORM_FILE] && !ctx->seen_broker[i][FORM_ENV])
            set_value(ctx, &broker_opts[i], (char *)(void *)cfg,
                      broker_opts[i].name, broker_opts[i].def, 0);
    }
    if (ctx->err != BRK_OK ||
        (cfg->tls_cert_file[0] == '\0') == (cfg->tls_key_file[0] == '\0'))
        return ctx->err;
    /* point at the one that is set */
    set = cfg->tls_cert_file[0] != '\0' ? "tls_cert_file" : "tls_key_file";
    for (i = 0; i < nitems(broker_opts); i++)
        if (strcmp(broker_opts[i].name, set) == 0)
            line = ctx->seen_broker[i][FORM_INLINE];
    return fail(ctx, BRK_ERR_CONFIG, line,
                "tls_cert_file and tls_key_file must be set together");
}

/* Process-wide inih settings; set on every load since anyone may change
 * them. The heap buffer (not the stack) holds one line of up to
 * CONFIG_MAX_LINE bytes plus "\r\n" and NUL, and never grows. */
static void
ini_setup(void)
{
    static char start_prefixes[] = ";#";
    static char inline_prefixes[] = ";";

    ini_allow_multiline = false;
    ini_allow_bom = false; /* read_line strips it */
    ini_start_comment_prefixes = start_prefixes;
    ini_allow_inline_comments = true;
    ini_inline_comment_prefixes = inline_prefixes;
    ini_use_stack = false;
    ini_max_line = CONFIG_MAX_LINE + 3;
    ini_initial_alloc = CONFIG_MAX_LINE + 3;
    ini_allow_realloc = false;
    ini_stop_on_first_error = false; /* read_line stops, and wipes */
    ini_allow_no_value = false;
}

/*
 * Load and validate the configuration file at path. Returns BRK_OK,
 * BRK_ERR_IO when the file (or its directory) cannot be read,
 * BRK_ERR_CONFIG when it is rejected, or BRK_ERR_NOMEM; on error info
 * (may be NULL) holds the line (0 when none) and the message, without the
 * "FILE:LINE: " prefix (see config_format_error) and never a secret. On
 * success *out is owned by the caller: free it with config_free(). Not
 * thread-safe: it sets libinih's process-wide options on every call.
 */
enum brk_err
config_load(const char *path, struct config **out, struct brk_errinfo *info)
{
    struct load_ctx *ctx = NULL;
    struct config *cfg = NULL;
    struct dynbuf file;
    char ebuf[128];
    int eno = 0, r;
    enum brk_err err;

    if (info != NULL) {
        info->msg[0] = '\0';
        info->line = 0;
        info->offset = -1;
    }
    dynbuf_init_secret(&file, CONFIG_MAX_FILE);
    err = read_file(path, 0, &file, &eno);
    if (err == BRK_ERR_IO) {
        brk_errinfo_set(info, 0, -1, "cannot read: %s",
                        strerror_r(eno, ebuf, sizeof(ebuf)));
        goto out;
    }
    if (err == BRK_ERR_TOOBIG) {
        err = BRK_ERR_CONFIG;
        brk_errinfo_set(info, 0, -1, "file larger than %ld bytes",
                        CONFIG_MAX_FILE);
        goto out;
    }
    if (err)
        goto nomem;
    ctx = brk_calloc(1, sizeof(*ctx));
    cfg = brk_calloc(1, sizeof(*cfg));
    if (ctx == NULL || cfg == NULL)
        goto nomem;
    cfg->path = brk_strdup(path);
    if (cfg->path == NULL)
        goto nomem;
    err = dir_of(path, &cfg->dir, &eno);
    if (err == BRK_ERR_IO) {
        brk_errinfo_set(info, 0, -1, "cannot resolve its directory: %s",
                        strerror_r(eno, ebuf, sizeof(ebuf)));
        goto out;
    }
    if (err)
        goto nomem;

    ctx->cfg = cfg;
    ctx->info = info;
    ctx->buf = file.buf != NULL ? file.buf : "";
    ctx->len = file.len;
    ini_setup();
    r = ini_parse_stream(read_line, ctx, on_pair, ctx);
    if (ctx->err == BRK_OK && r == -2)
        fail_nomem(ctx);
    else if (ctx->err == BRK_OK && r != 0)
        fail(ctx, BRK_ERR_CONFIG, r, "syntax error");
    if (ctx->err == BRK_OK)
        finish(ctx);
    err = ctx->err;
    goto out;
nomem:
    err = BRK_ERR_NOMEM;
    brk_errinfo_set(info, 0, -1, "out of memory");
out:
    dynbuf_free(&file);
    brk_free(ctx);
    if (err != BRK_OK)
        config_free(cfg);
    else
        *out = cfg;
    return err;
}

static void
free_fields(const struct opt *opts, size_t nopts, char *base)
{
    size_t i;
    char **field;

    for (i = 0; i < nopts; i++) {
        if (!opt_is_str(&opts[i]))
            continue;
        field = (char **)(void *)(base + opts[i].off);
        if (opts[i].flags & OPT_F_SECRET)
            brk_free_secret_str(*field);
        else
            brk_free(*field);
        *field = NULL;
    }
}

/*
 * Free a configuration from config_load, wiping the secrets (suite
 * token, encoding_aes_key, secret and the redis value). NULL is a no-op.
 */
void
config_free(struct config *cfg)
{
    struct suite_conf *sc;
    size_t i;

    if (cfg == NULL)
        return;
    for (i = 0; i < cfg->nsuites; i++) {
        sc = &cfg->suites[i];
        free_fields(suite_opts, nitems(suite_opts), (char *)(void *)sc);
        free_list(sc->redirect_allow);
        brk_free(sc->suite_id);
    }
    brk_free(cfg->suites);
    free_fields(broker_opts, nitems(broker_opts), (char *)(void *)cfg);
    brk_free(cfg->path);
    brk_free(cfg->dir);
    brk_free(cfg);
}

/*
 * Write "FILE:LINE: message" (or "FILE: message" when info->line is 0)
 * into buf[len], truncating. Cannot fail.
 */
void
config_format_error(const char *path, const struct brk_errinfo *info, char *buf,
                    size_t len)
{
    if (buf == NULL || len == 0)
        return;
    if (info->line > 0)
        snprintf(buf, len, "%s:%d: %s", path, info->line, info->msg);
    else
        snprintf(buf, len, "%s: %s", path, info->msg);
}

/*
 * The [suite ID] section for suite_id, borrowed from cfg (valid until
 * config_free), or NULL when there is none.
 */
const struct suite_conf *
config_find_suite(const struct config *cfg, const char *suite_id)
{
    size_t i;

    if (cfg == NULL || suite_id == NULL)
        return NULL;
    for (i = 0; i < cfg->nsuites; i++)
        if (strcmp(cfg->suites[i].suite_id, suite_id) == 0)
            return &cfg->suites[i];
    return NULL;
}
