/*
 * OAuth state and return-URL checks (see oauth.h). Pure: the state's id
 * comes from RAND_bytes and its MAC from the keyring's index key; nothing
 * here does I/O or allocates.
 */
#include <assert.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "codec.h"
#include "keyring.h"
#include "oauth.h"

static const char id_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz0123456789";

/* Bytes at or above this are rejected so that b % 62 is uniform. */
#define ID_BYTE_LIMIT (256 - 256 % 62)
/* Refills of the random buffer before giving up: each byte is rejected
 * with probability 8/256, so this is never reached with a working RNG. */
#define ID_MAX_REFILLS 64

/*---- State --------------------------------------------------------------*/

static int
is_alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9');
}

/* The MAC part of a state: the first OAUTH_MAC_LEN hex chars. */
static void
state_mac(const struct keyring *kr, const char *flow, const char *suite,
          const char *id, char mac[OAUTH_MAC_LEN + 1])
{
    const char *parts[4];
    char full[65];

    parts[0] = "oauth-state";
    parts[1] = flow;
    parts[2] = suite;
    parts[3] = id;
    keyring_index_hmac_parts(kr, parts, nitems(parts), full);
    memcpy(mac, full, OAUTH_MAC_LEN);
    mac[OAUTH_MAC_LEN] = '\0';
    OPENSSL_cleanse(full, sizeof(full));
}

/*
 * A fresh state for (flow, suite) into out (OAUTH_STATE_LEN + 1 bytes) and
 * its id into id_out (OAUTH_ID_LEN + 1 bytes). The id maps random bytes
 * to [A-Za-z0-9] by rejection, without modulo bias. Returns BRK_OK or
 * BRK_ERR_CRYPTO (RNG failure); outputs are written only on success.
 * Allocates nothing.
 */
enum brk_err
oauth_state_new(const struct keyring *kr, const char *flow, const char *suite,
                char *out, char *id_out)
{
    unsigned char rnd[64];
    char id[OAUTH_ID_LEN + 1], mac[OAUTH_MAC_LEN + 1];
    size_t n = 0, i = sizeof(rnd);
    int refills = 0;
    enum brk_err err = BRK_OK;

    assert(kr != NULL && flow != NULL && suite != NULL && out != NULL &&
           id_out != NULL);
    while (n < OAUTH_ID_LEN) {
        if (i == sizeof(rnd)) {
            if (refills++ == ID_MAX_REFILLS ||
                RAND_bytes(rnd, (int)sizeof(rnd)) != 1) {
                err = BRK_ERR_CRYPTO;
                goto out;
            }
            i = 0;
        }
        if (rnd[i] < ID_BYTE_LIMIT)
            id[n++] = id_alpha[rnd[i] % 62];
        i++;
    }
    id[OAUTH_ID_LEN] = '\0';
    state_mac(kr, flow, suite, id, mac);
    memcpy(out, id, OAUTH_ID_LEN);
    memcpy(out + OAUTH_ID_LEN, mac, OAUTH_MAC_LEN + 1);
    memcpy(id_out, id, OAUTH_ID_LEN + 1);
out:
    OPENSSL_cleanse(rnd, sizeof(rnd));
    return err;
}

/*
 * Check state's shape and MAC for (flow, suite) and copy its id into
 * id_out (OAUTH_ID_LEN + 1 bytes). Returns BRK_OK or BRK_ERR_INVAL (NULL,
 * wrong length or alphabet, MAC mismatch); id_out is written only on
 * success. The MAC comparison is constant time; the shape is public.
 */
enum brk_err
oauth_state_check(const struct keyring *kr, const char *flow, const char *suite,
                  const char *state, char *id_out)
{
    char id[OAUTH_ID_LEN + 1], mac[OAUTH_MAC_LEN + 1];
    size_t i;

    assert(kr != NULL && flow != NULL && suite != NULL && id_out != NULL);
    if (state == NULL || strnlen(state, OAUTH_STATE_LEN + 1) != OAUTH_STATE_LEN)
        return BRK_ERR_INVAL;
    for (i = 0; i < OAUTH_STATE_LEN; i++)
        if (!is_alnum((unsigned char)state[i]))
            return BRK_ERR_INVAL;
    memcpy(id, state, OAUTH_ID_LEN);
    id[OAUTH_ID_LEN] = '\0';
    state_mac(kr, flow, suite, id, mac);
    if (CRYPTO_memcmp(mac, state + OAUTH_ID_LEN, OAUTH_MAC_LEN) != 0)
        return BRK_ERR_INVAL;
    memcpy(id_out, id, OAUTH_ID_LEN + 1);
    return BRK_OK;
}

/*---- Return URLs --------------------------------------------------------*/

/* One parsed http(s) URL; pointers borrow the checked string. */
struct url_view {
    int https;
    const char *host;
    size_t hostlen;
    long port;
    const char *path; /* "/" when the URL has none */
    size_t pathlen;
    const char *rest; /* "?..." or "#..." or "" */
};

/*
 * The characters RFC 3986 allows in a URI: unreserved, reserved and '%'.
 * Everything else (controls, space, '"', '<', '>', '\\', '^', '`', '{',
 * '|', '}', DEL and every non-ASCII byte) is refused outright, so no two
 * parsers (ours, the browser's, the application's) can disagree on them.
 */
static int
uri_char_ok(unsigned char c)
{
    return is_alnum(c) ||
           (c != '\0' && strchr("-._~:/?#[]@!$&'()*+,;=%", c) != NULL);
}

static int
is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
}

static int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* A host name: [A-Za-z0-9_-] labels joined by single dots, none empty, so
 * no leading or trailing dot ("allowed.example." is refused, not folded). */
static int
host_name_ok(const char *h, size_t n)
{
    size_t i, label = 0;

    if (n == 0)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];

        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if (is_alnum(c) || c == '-' || c == '_') {
            label++;
        } else {
            return 0;
        }
    }
    return label > 0;
}

/* An IPv6 literal with its brackets: hex digits, ':' and '.' (an embedded
 * IPv4) inside, at least one ':'. Zone ids need '%' and are refused. */
static int
host_v6_ok(const char *h, size_t n)
{
    size_t i;
    int colon = 0;

    if (n < 4 || h[0] != '[' || h[n - 1] != ']')
        return 0;
    for (i = 1; i + 1 < n; i++) {
        if (h[i] == ':')
            colon = 1;
        else if (!is_hex((unsigned char)h[i]) && h[i] != '.')
            return 0;
    }
    return colon;
}

/* Decimal 1..65535, 1 to 5 digits. */
static int
port_parse(const char *p, size_t n, long *out)
{
    long v = 0;
    size_t i;

    if (n == 0 || n > 5)
        return -1;
    for (i = 0; i < n; i++) {
        if (!is_digit((unsigned char)p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *out = v;
    return 0;
}

/* "%XX" with two hex digits at every '%' of s. */
static int
escapes_ok(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s == '%' &&
            (!is_hex((unsigned char)s[1]) || !is_hex((unsigned char)s[2])))
            return 0;
    return 1;
}

/* s[0..2] is "%xx" spelling hex value hi/lo, in either case. */
static int
is_escape(const char *s, char hi, char lo)
{
    return s[0] == '%' && s[1] == hi &&
           (s[2] == lo || s[2] == (char)(lo - 'a' + 'A'));
}

/* A segment that a browser or server resolves as "." or "..", also when
 * spelled with %2e. */
static int
is_dot_segment(const char *s, size_t n)
{
    size_t i = 0, dots = 0;

    while (i < n) {
        if (s[i] == '.') {
            i++;
        } else if (n - i >= 3 && is_escape(s + i, '2', 'e')) {
            i += 3;
        } else {
            return 0;
        }
        dots++;
    }
    return dots == 1 || dots == 2;
}

/*
 * A path that means the same to every reader: segments neither empty
 * (except the last: "/app/") nor dot segments, no encoded '/' or '\\'
 * that a server might decode into a separator, no brackets.
 */
static int
path_ok(const char *p, size_t n)
{
    size_t i, start = 1;

    if (n == 0 || p[0] != '/')
        return 0;
    for (i = 1; i <= n; i++) {
        if (i < n && (p[i] == '[' || p[i] == ']'))
            return 0;
        /* escapes are whole here: hex digits never end a path */
        if (i < n && p[i] == '%' &&
            (is_escape(p + i, '2', 'f') || is_escape(p + i, '5', 'c')))
            return 0;
        if (i == n || p[i] == '/') {
            if (i == start && i < n)
                return 0;
            if (is_dot_segment(p + start, i - start))
                return 0;
            start = i + 1;
        }
    }
    return 1;
}

/*
 * Parse u into v. Returns 0, or -1 for anything outside the strict shape
 * scheme "://" host [":" port] [path [query] [fragment]].
 */
static int
url_parse(const char *u, struct url_view *v)
{
    const char *p, *a, *e, *colon = NULL, *q;
    size_t len, i;

    if (u == NULL)
        return -1;
    len = strnlen(u, OAUTH_RETURN_MAX + 1);
    if (len == 0 || len > OAUTH_RETURN_MAX)
        return -1;
    for (i = 0; i < len; i++)
        if (!uri_char_ok((unsigned char)u[i]))
            return -1;
    if (!escapes_ok(u))
        return -1;
    memset(v, 0, sizeof(*v));
    if (strncasecmp(u, "https://", 8) == 0) {
        v->https = 1;
        p = u + 8;
    } else if (strncasecmp(u, "http://", 7) == 0) {
        p = u + 7;
    } else {
        return -1;
    }
    /* the authority ends where WHATWG ends it for special schemes; '\\'
     * would end it too but was refused above */
    a = p;
    e = p + strcspn(p, "/?#");
    if (e == a || memchr(a, '@', (size_t)(e - a)) != NULL ||
        memchr(a, '%', (size_t)(e - a)) != NULL)
        return -1;
    if (*a == '[') {
        q = memchr(a, ']', (size_t)(e - a));
        if (q == NULL)
            return -1;
        v->host = a;
        v->hostlen = (size_t)(q + 1 - a);
        if (!host_v6_ok(v->host, v->hostlen))
            return -1;
        if (q + 1 < e) {
            if (q[1] != ':')
                return -1;
            colon = q + 1;
        }
    } else {
        colon = memchr(a, ':', (size_t)(e - a));
        v->host = a;
        v->hostlen = (size_t)((colon ? colon : e) - a);
        if (!host_name_ok(v->host, v->hostlen))
            return -1;
    }
    v->port = v->https ? 443 : 80;
    if (colon != NULL &&
        port_parse(colon + 1, (size_t)(e - colon - 1), &v->port) != 0)
        return -1;
    /* a query or fragment right after the authority is where naive parsers
     * and browsers disagree most ("https://a.example?@evil"): want a path */
    if (*e == '?' || *e == '#')
        return -1;
    if (*e == '\0') {
        v->path = "/";
        v->pathlen = 1;
        v->rest = e;
        return 0;
    }
    v->path = e;
    v->pathlen = strcspn(e, "?#");
    v->rest = e + v->pathlen;
    if (!path_ok(v->path, v->pathlen))
        return -1;
    /* brackets belong to the host only */
    if (strpbrk(v->rest, "[]") != NULL)
        return -1;
    return 0;
}

/*
 * Nonzero when rest (a URL's query and fragment) names, as a parameter,
 * one of the names the broker appends to return URLs (code, corpid,
 * state, installed): the caller could not tell them from the broker's.
 * Every part between '?', '&' and '#' is a candidate, its name (up to
 * '=') percent-decoded and compared in any case; a fragment may hold a
 * client-side query too.
 */
static int
presets_broker_names(const char *rest)
{
    static const char *const names[] = {"code", "corpid", "state", "installed"};
    char name[16];
    const char *p = rest, *e;
    size_t n, i, k;

    while (*p != '\0') {
        p++; /* the separator */
        e = p + strcspn(p, "?&#");
        n = strcspn(p, "=?&#");
        /* escapes were checked well-formed; longer names match none */
        for (i = 0, k = 0; i < n && k < sizeof(name) - 1; k++) {
            if (p[i] == '%' && i + 2 < n && is_hex((unsigned char)p[i + 1]) &&
                is_hex((unsigned char)p[i + 2])) {
                name[k] = (char)(codec_hex_val((unsigned char)p[i + 1]) * 16 +
                                 codec_hex_val((unsigned char)p[i + 2]));
                i += 3;
            } else {
                name[k] = p[i++];
            }
        }
        name[k] = '\0';
        if (i == n)
            for (i = 0; i < nitems(names); i++)
                if (strcasecmp(name, names[i]) == 0)
                    return 1;
        p = e;
    }
    return 0;
}

/* The path of an entry allows the path of a URL: entry "/app" allows
 * "/app" and "/app/...", entry "/app/" (or "/") anything below it. */
static int
path_allows(const struct url_view *entry, const struct url_view *v)
{
    const char *ep = entry->path, *cp = v->path;
    size_t el = entry->pathlen, cl = v->pathlen;

    if (cl < el || memcmp(ep, cp, el) != 0)
        return 0;
    return ep[el - 1] == '/' || cl == el || cp[el] == '/';
}

/*
 * 1 when url is allowed by one of allow[0..n): same scheme, host, port and
 * a path under the entry's (see oauth.h and the helpers above for what is
 * refused). Entries that do not parse, or carry a query or fragment, never
 * match. The fragment and query are checked for characters only, after
 * the path has been split off, so they cannot help a path pass.
 */
int
oauth_return_allowed(const char *url, char *const *allow, size_t n)
{
    struct url_view v, e;
    size_t i;

    if (url_parse(url, &v) != 0 || presets_broker_names(v.rest))
        return 0;
    for (i = 0; allow != NULL && i < n; i++) {
        if (url_parse(allow[i], &e) != 0 || *e.rest != '\0')
            continue;
        if (e.https == v.https && e.port == v.port && e.hostlen == v.hostlen &&
            strncasecmp(e.host, v.host, v.hostlen) == 0 && path_allows(&e, &v))
            return 1;
    }
    return 0;
}

/*---- Caller state -------------------------------------------------------*/

/*
 * 1 when s is NULL or at most OAUTH_CALLER_STATE_MAX chars of
 * [A-Za-z0-9_.-], else 0. Cannot fail.
 */
int
oauth_caller_state_ok(const char *s)
{
    size_t i;

    if (s == NULL)
        return 1;
    for (i = 0; s[i] != '\0'; i++) {
        if (i == OAUTH_CALLER_STATE_MAX)
            return 0;
        if (!is_alnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' &&
            s[i] != '.')
            return 0;
    }
    return 1;
}
