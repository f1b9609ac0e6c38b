/*
 * The pure parts of the browser OAuth flows (SPEC §4b): the broker's state
 * (a random id bound by a MAC to its flow and suite), the return-URL check
 * against a suite's redirect_allow prefixes, and the caller's own state.
 * No I/O.
 */
#ifndef OAUTH_H
#define OAUTH_H

#include <stddef.h>

#include "broker.h"

#define OAUTH_ID_LEN  32 /* random id, [A-Za-z0-9] */
#define OAUTH_MAC_LEN 32 /* hex chars of the MAC kept in the state */
/* id + 32 hex chars of MAC: WeCom allows 128 of [A-Za-z0-9] */
#define OAUTH_STATE_LEN (OAUTH_ID_LEN + OAUTH_MAC_LEN)
/* Longest return URL oauth_return_allowed accepts. */
#define OAUTH_RETURN_MAX 2048
/* Longest caller state oauth_caller_state_ok accepts. */
#define OAUTH_CALLER_STATE_MAX 128

struct keyring;

/*
 * A fresh state for (flow, suite): an id of OAUTH_ID_LEN chars of
 * [A-Za-z0-9] (RAND_bytes, no modulo bias) followed by the first
 * OAUTH_MAC_LEN hex chars of HMAC(index key, "oauth-state", flow, suite,
 * id). out gets the state (OAUTH_STATE_LEN + 1 bytes), id_out the id
 * (OAUTH_ID_LEN + 1 bytes; the Redis key part). Returns BRK_OK or
 * BRK_ERR_CRYPTO when the RNG fails; the outputs are written only on
 * success. Allocates nothing.
 */
enum brk_err oauth_state_new(const struct keyring *kr, const char *flow,
                             const char *suite, char *out,
                             char *id_out) BRK_WUR;

/*
 * Check a state's shape (exactly OAUTH_STATE_LEN chars of [A-Za-z0-9]) and
 * its MAC (constant time) for (flow, suite); on success copy its id into
 * id_out (OAUTH_ID_LEN + 1 bytes). Returns BRK_OK, or BRK_ERR_INVAL for a
 * NULL, forged, truncated, extended or foreign (other flow or suite) state;
 * id_out is then untouched.
 */
enum brk_err oauth_state_check(const struct keyring *kr, const char *flow,
                               const char *suite, const char *state,
                               char *id_out) BRK_WUR;

/*
 * 1 when url is allowed by one of the n prefixes in allow (NULL or
 * malformed entries never match), else 0. Same scheme (http or https, any
 * case), same host (any case, exact), same port (explicit or the default),
 * and a path starting with the entry's at a '/' boundary. Refused: anything
 * over OAUTH_RETURN_MAX, characters outside RFC 3986 (controls, spaces,
 * backslashes, non-ASCII...), userinfo, '%' in the authority, missing
 * hosts, trailing dots, IPv6 literals other than the entry's, a query or
 * fragment without a path, dot or empty path segments, %2F and %5C in the
 * path, malformed escapes, and a query or fragment naming a parameter the
 * broker appends (code, corpid, state, installed; decoded, any case). See
 * oauth.c for the details.
 */
int oauth_return_allowed(const char *url, char *const *allow, size_t n);

/*
 * 1 when s is acceptable as a caller's optional state: NULL, or at most
 * OAUTH_CALLER_STATE_MAX chars of [A-Za-z0-9_.-] (it goes back to the
 * caller in a URL). 0 otherwise.
 */
int oauth_caller_state_ok(const char *s);

#endif /* OAUTH_H */
