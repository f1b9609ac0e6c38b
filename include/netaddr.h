/*
 * Client addresses: parsing IPv4 and IPv6 addresses and CIDR lists (the
 * trusted_proxies setting), the client of a request behind trusted
 * proxies (X-Forwarded-For, read from the right), and the key under which
 * per-address budgets count a client: its IPv4 address, or the /64 of its
 * IPv6 address, since one host commonly holds a whole /64. Pure: no I/O.
 */
#ifndef NETADDR_H
#define NETADDR_H

#include <stddef.h>

#include <sys/socket.h>

#include "broker.h"

/* Longest budget key, NUL included ("ffff:ffff:ffff:ffff::/64"). */
#define NETADDR_KEY_MAX 64
/* Most entries in a trusted_proxies list. */
#define NETADDR_LIST_MAX 256
/* Most X-Forwarded-For entries looked at. */
#define NETADDR_XFF_MAX 32

/* An address; IPv4-mapped IPv6 addresses are held as IPv4. */
struct netaddr {
    int v6; /* 0: IPv4 in b[0..3] */
    unsigned char b[16];
};

struct netaddr_list;

/* Parse "192.0.2.1" or "2001:db8::1" (no brackets, no zone, no port).
 * BRK_OK with *out, else BRK_ERR_INVAL. */
enum brk_err netaddr_parse(const char *s, struct netaddr *out) BRK_WUR;
/* From a socket address (AF_INET or AF_INET6). BRK_ERR_INVAL for other
 * families. */
enum brk_err netaddr_from_sockaddr(const struct sockaddr *sa, socklen_t len,
                                   struct netaddr *out) BRK_WUR;
/* The budget key of a (see above) into out[NETADDR_KEY_MAX]. Cannot
 * fail. */
void netaddr_key(const struct netaddr *a, char *out);

/*
 * Parse a comma-separated list of addresses and CIDR prefixes
 * ("10.0.0.1, 192.168.0.0/16, ::1, fd00::/8"); white space around entries
 * is ignored, an empty string is an empty list. BRK_ERR_INVAL (info says
 * which entry), BRK_ERR_TOOBIG past NETADDR_LIST_MAX, BRK_ERR_NOMEM.
 * Owned: netaddr_list_free.
 */
enum brk_err netaddr_list_parse(const char *s, struct netaddr_list **out,
                                struct brk_errinfo *info) BRK_WUR;
void netaddr_list_free(struct netaddr_list *l);
/* Nonzero when a falls in one of l's entries (NULL l: never). */
int netaddr_list_has(const struct netaddr_list *l, const struct netaddr *a);
/* Entries in l (0 for NULL). */
size_t netaddr_list_count(const struct netaddr_list *l);

/*
 * The client of a request whose TCP peer is peer: the peer itself unless
 * it is in trusted; then the X-Forwarded-For value xff (the headers'
 * values joined by commas, NULL when none) is read from the right and the
 * first entry that is not a trusted proxy is the client (the leftmost
 * when all are). Entries left of it are never looked at: the client may
 * have sent them. BRK_OK with *out; BRK_ERR_INVAL when an entry that had
 * to be read is not an address, or more than NETADDR_XFF_MAX would be.
 */
enum brk_err netaddr_client(const struct netaddr *peer, const char *xff,
                            const struct netaddr_list *trusted,
                            struct netaddr *out) BRK_WUR;

#endif /* NETADDR_H */
