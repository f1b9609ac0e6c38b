/*
 * Redis Sentinel, the pure half: the `sentinel://` URL, and the replies a
 * Sentinel client reads (SENTINEL get-master-addr-by-name, ROLE, a
 * +switch-master message, a field of INFO). No I/O: store.c and brokerctl
 * talk to the servers and hand the replies here as strings.
 */
#ifndef SENTINEL_H
#define SENTINEL_H

#include <stddef.h>

#include "broker.h"

struct config_redis;

/* Most sentinels a URL may name. */
#define SENTINEL_MAX_NODES 16
/* Longest master name: [A-Za-z0-9._-]{1,64}. */
#define SENTINEL_MAX_NAME 64
/* Port of a sentinel the URL names without one. */
#define SENTINEL_DEFAULT_PORT 26379
/* Room for a host name or address a sentinel names, with its NUL. */
#define SENTINEL_HOST_MAX 256

/*
 * Parse "sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER
 * [/db]" into out (master, sentinels, nsentinels, db, user, password; host
 * and unix_path stay NULL). The password is for the data nodes (see
 * README). Returns BRK_OK, BRK_ERR_INVAL or BRK_ERR_NOMEM; on success the
 * caller releases *out with config_redis_clear(), on error *out is
 * untouched.
 */
enum brk_err sentinel_url_parse(const char *url,
                                struct config_redis *out) BRK_WUR;

/*
 * The reply to SENTINEL get-master-addr-by-name: n array elements, each a
 * string el[i] of len[i] bytes (NULL when not a string). Exactly two
 * strings, a host (name or address, no control or space characters,
 * shorter than hostlen) and a port 1..65535, are accepted; the host goes to
 * host, the port to *port. Returns BRK_ERR_INVAL for anything else
 * (including a nil reply: the sentinel does not know the master).
 */
enum brk_err sentinel_parse_master_addr(size_t n, const char *const *el,
                                        const size_t *len, char *host,
                                        size_t hostlen, int *port) BRK_WUR;

/* Nonzero when the first element of a ROLE reply (s, len bytes) says the
 * server is a master; s may be NULL (not a string). */
int sentinel_role_is_master(const char *s, size_t len);

/*
 * A +switch-master message, "NAME OLDHOST OLDPORT NEWHOST NEWPORT". Returns
 * BRK_OK with the new address in host/port when it names master,
 * BRK_ERR_NOTFOUND when it names another master, BRK_ERR_INVAL when it
 * does not parse.
 */
enum brk_err sentinel_parse_switch(const char *msg, size_t len,
                                   const char *master, char *host,
                                   size_t hostlen, int *port) BRK_WUR;

/*
 * The value of "name:N" in an INFO reply (lines ending in \r\n) as a
 * number 0..2^31-1. Returns BRK_OK, BRK_ERR_NOTFOUND or BRK_ERR_INVAL (a
 * value that is not such a number).
 */
enum brk_err sentinel_info_long(const char *info, size_t len, const char *name,
                                long *out) BRK_WUR;

#endif /* SENTINEL_H */
