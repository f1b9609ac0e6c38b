/*
 * Client addresses (see netaddr.h), on inet_pton/inet_ntop. Parsing is
 * strict: no ports, brackets, zones or leading zeros beyond what
 * inet_pton itself accepts, and prefix lengths are plain decimals.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "netaddr.h"

struct netaddr_entry {
    struct netaddr a;
    int bits;
};

struct netaddr_list {
    size_t n;
    struct netaddr_entry e[];
};

/* An IPv6 address that holds an IPv4 one (::ffff:a.b.c.d) becomes it. */
static void
normalise(struct netaddr *a)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0,    0,
                                             0, 0, 0, 0, 0xff, 0xff};

    if (a->v6 && memcmp(a->b, mapped, sizeof(mapped)) == 0) {
        memmove(a->b, a->b + 12, 4);
        memset(a->b + 4, 0, 12);
        a->v6 = 0;
    }
}

enum brk_err
netaddr_parse(const char *s, struct netaddr *out)
{
    struct netaddr a;

    if (s == NULL || strlen(s) >= INET6_ADDRSTRLEN)
        return BRK_ERR_INVAL;
    memset(&a, 0, sizeof(a));
    if (inet_pton(AF_INET, s, a.b) == 1) {
        a.v6 = 0;
    } else if (inet_pton(AF_INET6, s, a.b) == 1) {
        a.v6 = 1;
        normalise(&a);
    } else {
        return BRK_ERR_INVAL;
    }
    *out = a;
    return BRK_OK;
}

enum brk_err
netaddr_from_sockaddr(const struct sockaddr *sa, socklen_t len,
                      struct netaddr *out)
{
    struct netaddr a;

    memset(&a, 0, sizeof(a));
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        memcpy(a.b, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
               4);
    } else if (sa->sa_family == AF_INET6 &&
               len >= sizeof(struct sockaddr_in6)) {
        memcpy(a.b, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
               16);
        a.v6 = 1;
        normalise(&a);
    } else {
        return BRK_ERR_INVAL;
    }
    *out = a;
    return BRK_OK;
}

void
netaddr_key(const struct netaddr *a, char *out)
{
    unsigned char b[16];
    char text[INET6_ADDRSTRLEN];

    if (!a->v6) {
        if (inet_ntop(AF_INET, a->b, out, NETADDR_KEY_MAX) == NULL)
            snprintf(out, NETADDR_KEY_MAX, "?");
        return;
    }
    memcpy(b, a->b, 8);
    memset(b + 8, 0, 8);
    if (inet_ntop(AF_INET6, b, text, sizeof(text)) == NULL)
        snprintf(text, sizeof(text), "?");
    snprintf(out, NETADDR_KEY_MAX, "%s/64", text);
}

/* Nonzero when the first bits of a and p agree (same family). */
static int
prefix_match(const struct netaddr *a, const struct netaddr_entry *p)
{
    int full = p->bits / 8, rest = p->bits % 8;
    unsigned char mask;

    if (a->v6 != p->a.v6 || memcmp(a->b, p->a.b, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    mask = (unsigned char)(0xff << (8 - rest));
    return (a->b[full] & mask) == (p->a.b[full] & mask);
}

/* Parse one "ADDR" or "ADDR/BITS" entry of len bytes. */
static enum brk_err
entry_parse(const char *s, size_t len, struct netaddr_entry *out)
{
    char buf[INET6_ADDRSTRLEN + 8], *slash;
    long bits;
    size_t i;

    if (len == 0 || len >= sizeof(buf))
        return BRK_ERR_INVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    slash = strchr(buf, '/');
    if (slash != NULL)
        *slash++ = '\0';
    if (netaddr_parse(buf, &out->a) != BRK_OK)
        return BRK_ERR_INVAL;
    out->bits = out->a.v6 ? 128 : 32;
    if (slash == NULL)
        return BRK_OK;
    /* a mapped prefix would count its bits from the IPv6 form */
    if (strchr(buf, ':') != NULL && !out->a.v6)
        return BRK_ERR_INVAL;
    if (slash[0] == '\0' || strlen(slash) > 3 ||
        (slash[0] == '0' && slash[1] != '\0'))
        return BRK_ERR_INVAL;
    for (bits = 0, i = 0; slash[i] != '\0'; i++) {
        if (slash[i] < '0' || slash[i] > '9')
            return BRK_ERR_INVAL;
        bits = bits * 10 + (slash[i] - '0');
    }
    if (bits > out->bits)
        return BRK_ERR_INVAL;
    out->bits = (int)bits;
    return BRK_OK;
}

static int
is_space(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Parse a list (see netaddr.h). Returns BRK_OK, BRK_ERR_INVAL,
 * BRK_ERR_TOOBIG or BRK_ERR_NOMEM; *out owned (netaddr_list_free).
 */
enum brk_err
netaddr_list_parse(const char *s, struct netaddr_list **out,
                   struct brk_errinfo *info)
{
    struct netaddr_list *l;
    const char *p = s, *end;
    size_t n = 1, len, i;

    for (i = 0; s[i] != '\0'; i++)
        n += s[i] == ',';
    if (n > NETADDR_LIST_MAX) {
        brk_errinfo_set(info, 0, -1, "more than %d entries", NETADDR_LIST_MAX);
        return BRK_ERR_TOOBIG;
    }
    l = brk_calloc(1, sizeof(*l) + n * sizeof(l->e[0]));
    if (l == NULL)
        return BRK_ERR_NOMEM;
    while (*p != '\0') {
        while (is_space(*p))
            p++;
        end = p + strcspn(p, ",");
        len = (size_t)(end - p);
        while (len > 0 && is_space(p[len - 1]))
            len--;
        /* an empty list is fine, an empty entry in one is a typo */
        if ((len > 0 || *end == ',' || l->n > 0) &&
            entry_parse(p, len, &l->e[l->n]) != BRK_OK) {
            brk_errinfo_set(info, 0, -1,
                            "\"%.*s\" is not an address or address/bits",
                            (int)(len > 64 ? 64 : len), p);
            brk_free(l);
            return BRK_ERR_INVAL;
        }
        if (len > 0)
            l->n++;
        p = *end == ',' ? end + 1 : end;
        if (*end == ',' && *p == '\0') {
            brk_errinfo_set(info, 0, -1, "a trailing comma");
            brk_free(l);
            return BRK_ERR_INVAL;
        }
    }
    *out = l;
    return BRK_OK;
}

void
netaddr_list_free(struct netaddr_list *l)
{
    brk_free(l);
}

int
netaddr_list_has(const struct netaddr_list *l, const struct netaddr *a)
{
    size_t i;

    for (i = 0; l != NULL && i < l->n; i++)
        if (prefix_match(a, &l->e[i]))
            return 1;
    return 0;
}

size_t
netaddr_list_count(const struct netaddr_list *l)
{
    return l != NULL ? l->n : 0;
}

/*
 * The client behind trusted proxies (see netaddr.h). Returns BRK_OK or
 * BRK_ERR_INVAL; *out written only on success.
 */
enum brk_err
netaddr_client(const struct netaddr *peer, const char *xff,
               const struct netaddr_list *trusted, struct netaddr *out)
{
    struct netaddr cur = *peer, a;
    char entry[INET6_ADDRSTRLEN + 1];
    const char *end, *start;
    size_t len, seen = 0;

    if (!netaddr_list_has(trusted, peer) || xff == NULL) {
        *out = cur;
        return BRK_OK;
    }
    end = xff + strlen(xff);
    if (end == xff)
        return BRK_ERR_INVAL;
    while (end > xff) {
        start = end;
        while (start > xff && start[-1] != ',')
            start--;
        while (start < end && is_space(*start))
            start++;
        len = (size_t)(end - start);
        while (len > 0 && is_space(start[len - 1]))
            len--;
        if (++seen > NETADDR_XFF_MAX || len == 0 || len >= sizeof(entry))
            return BRK_ERR_INVAL;
        memcpy(entry, start, len);
        entry[len] = '\0';
        if (netaddr_parse(entry, &a) != BRK_OK)
            return BRK_ERR_INVAL;
        cur = a;
        if (!netaddr_list_has(trusted, &a))
            break;
        while (end > xff && end[-1] != ',')
            end--;
        if (end > xff)
            end--; /* the comma */
    }
    *out = cur;
    return BRK_OK;
}
