/*
 * Fuzz the browser-facing checks of the OAuth flows and the decoders under
 * them. The first byte picks a redirect_allow list, a flow and a suite and
 * a position; the rest is split on '\n' into
 *
 *   STATE '\n' RETURN_URL '\n' CALLER_STATE '\n' QUERY '\n' CODEC_BYTES
 *
 * - oauth_state_check on STATE; on a state made from STATE's bytes with
 *   the right MAC (must pass, and fail for the other flow and suite and
 *   with any one character changed); on a fresh oauth_state_new state;
 * - oauth_return_allowed on RETURN_URL: an allowed URL has none of the
 *   refused shapes, and a list allows it exactly when one of its entries
 *   alone does;
 * - oauth_caller_state_ok on CALLER_STATE against its one-line rule;
 * - query_parse on QUERY against codec_pct_decode of each part;
 * - codec_pct_decode and codec_b64_decode on CODEC_BYTES, with their
 *   encoders round-tripping what they accept.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker.h"
#include "codec.h"
#include "keyring.h"
#include "oauth.h"
#include "query.h"

#include "fuzz.h"

static struct keyring *oa_kr;

/* redirect_allow lists: the oauth tests' (malformed entries included),
 * the example configuration's, an IPv6 literal, and none. */
static const char *const oa_text0[] = {
    "https://allowed.example/app", "https://root.example/",
    "http://plain.example:8080/",  "http://plain80.example:80/",
    "https://slash.example/dir/",  "http://[::1]:9000/cb",
    "https://127.0.0.1:8443/",     "https://nopath.example",
    "https://user@bad1.example/",  "https://bad2.example/?q=1",
    "https://bad3.example/#f",     "javascript://bad4.example/",
    "https://bad5.example./",
};
static const char *const oa_text1[] = {"https://app.example.com/return/",
                                       "http://localhost:3000/cb"};
static const char *const oa_text2[] = {"http://[::1]:9000/cb"};

static const struct {
    const char *const *text;
    size_t n;
} oa_text[4] = {
    {oa_text0, nitems(oa_text0)},
    {oa_text1, nitems(oa_text1)},
    {oa_text2, nitems(oa_text2)},
    {NULL, 0},
};

/* The lists as oauth_return_allowed takes them (char *const *). */
static char *oa_lists[4][nitems(oa_text0)];

static const char *const oa_flows[2] = {"install", "oauth"};
static const char *const oa_suites[2] = {"wwsuite0001", "wwsuite0002"};

static void
oa_init(void)
{
    static const char master[] =
        "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
    static const char index[] =
        "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    char mpath[256], ipath[256];

    size_t i, j;

    if (oa_kr != NULL)
        return;
    for (i = 0; i < 4; i++)
        for (j = 0; j < oa_text[i].n; j++)
            FUZZ_CHECK((oa_lists[i][j] = brk_strdup(oa_text[i].text[j])) !=
                       NULL);
    FUZZ_CHECK(fuzz_write_file("oauth", "master.key", (const uint8_t *)master,
                               strlen(master), mpath, sizeof(mpath)) == 0);
    FUZZ_CHECK(fuzz_write_file("oauth", "index.key", (const uint8_t *)index,
                               strlen(index), ipath, sizeof(ipath)) == 0);
    FUZZ_CHECK(keyring_load(mpath, ipath, 0, &oa_kr, NULL, NULL, NULL) ==
               BRK_OK);
}

static int
oa_is_alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9');
}

/* The MAC part of a state, as oauth.c computes it. */
static void
oa_mac(const char *flow, const char *suite, const char *id,
       char mac[OAUTH_MAC_LEN + 1])
{
    const char *parts[4] = {"oauth-state", flow, suite, id};
    char full[65];

    keyring_index_hmac_parts(oa_kr, parts, 4, full);
    memcpy(mac, full, OAUTH_MAC_LEN);
    mac[OAUTH_MAC_LEN] = '\0';
}

static void
oa_states(const char *given, int fi, int si, uint8_t pos)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "abcdefghijklmnopqrstuvwxyz0123456789";
    const char *flow = oa_flows[fi], *suite = oa_suites[si];
    char id[OAUTH_ID_LEN + 1], state[OAUTH_STATE_LEN + 1], mac[33];
    char got[OAUTH_ID_LEN + 1], fresh[OAUTH_STATE_LEN + 1];
    size_t glen = strlen(given), i, p;
    enum brk_err err;

    /* the given text as it is */
    memset(got, 'x', sizeof(got));
    err = oauth_state_check(oa_kr, flow, suite, given, got);
    if (err == BRK_OK) {
        FUZZ_CHECK(glen == OAUTH_STATE_LEN);
        memcpy(id, given, OAUTH_ID_LEN);
        id[OAUTH_ID_LEN] = '\0';
        oa_mac(flow, suite, id, mac);
        FUZZ_CHECK(memcmp(mac, given + OAUTH_ID_LEN, OAUTH_MAC_LEN) == 0);
        FUZZ_CHECK(strcmp(got, id) == 0);
    } else {
        FUZZ_CHECK(err == BRK_ERR_INVAL && got[0] == 'x');
    }
    /* a correctly made state from the given bytes */
    for (i = 0; i < OAUTH_ID_LEN; i++)
        id[i] = alpha[(i < glen ? (size_t)(unsigned char)given[i] : i) % 62];
    id[OAUTH_ID_LEN] = '\0';
    oa_mac(flow, suite, id, mac);
    memcpy(state, id, OAUTH_ID_LEN);
    memcpy(state + OAUTH_ID_LEN, mac, OAUTH_MAC_LEN + 1);
    FUZZ_CHECK(oauth_state_check(oa_kr, flow, suite, state, got) == BRK_OK);
    FUZZ_CHECK(strcmp(got, id) == 0);
    FUZZ_CHECK(oauth_state_check(oa_kr, oa_flows[!fi], suite, state, got) !=
               BRK_OK);
    FUZZ_CHECK(oauth_state_check(oa_kr, flow, oa_suites[!si], state, got) !=
               BRK_OK);
    /* one character changed */
    p = pos % OAUTH_STATE_LEN;
    state[p] = alpha[(strchr(alpha, state[p]) - alpha + 1 + pos) % 62];
    if (state[p] != (p < OAUTH_ID_LEN ? id[p] : mac[p - OAUTH_ID_LEN]))
        FUZZ_CHECK(oauth_state_check(oa_kr, flow, suite, state, got) != BRK_OK);
    /* extended and truncated */
    state[p] = p < OAUTH_ID_LEN ? id[p] : mac[p - OAUTH_ID_LEN];
    FUZZ_CHECK(oauth_state_check(oa_kr, flow, suite, state, got) == BRK_OK);
    state[OAUTH_STATE_LEN - 1] = '\0';
    FUZZ_CHECK(oauth_state_check(oa_kr, flow, suite, state, got) != BRK_OK);
    /* a fresh one */
    FUZZ_CHECK(oauth_state_new(oa_kr, flow, suite, fresh, got) == BRK_OK);
    FUZZ_CHECK(strlen(fresh) == OAUTH_STATE_LEN);
    for (i = 0; i < OAUTH_STATE_LEN; i++)
        FUZZ_CHECK(oa_is_alnum((unsigned char)fresh[i]));
    FUZZ_CHECK(oauth_state_check(oa_kr, flow, suite, fresh, id) == BRK_OK);
    FUZZ_CHECK(strcmp(id, got) == 0);
}

/* RFC 3986 characters: unreserved, reserved and '%'. */
static int
oa_uri_char(unsigned char c)
{
    return oa_is_alnum(c) ||
           (c != '\0' && strchr("-._~:/?#[]@!$&'()*+,;=%", c) != NULL);
}

/* needle within the first len bytes of s, or NULL */
static const char *
oa_find(const char *s, size_t len, const char *needle)
{
    size_t nl = strlen(needle), i;

    for (i = 0; i + nl <= len; i++)
        if (memcmp(s + i, needle, nl) == 0)
            return s + i;
    return NULL;
}

static void
oa_return(const char *url, size_t li)
{
    char *const *allow = oa_lists[li];
    size_t n = oa_text[li].n, i, alen, plen;
    const char *auth;
    int ok, any = 0;

    ok = oauth_return_allowed(url, allow, n);
    FUZZ_CHECK(ok == 0 || ok == 1);
    for (i = 0; i < n; i++)
        any |= oauth_return_allowed(url, &allow[i], 1);
    FUZZ_CHECK(ok == any);
    if (!ok)
        return;
    FUZZ_CHECK(strlen(url) <= OAUTH_RETURN_MAX);
    for (i = 0; url[i] != '\0'; i++)
        FUZZ_CHECK(oa_uri_char((unsigned char)url[i]));
    if (strncasecmp(url, "https://", 8) == 0)
        auth = url + 8;
    else if (strncasecmp(url, "http://", 7) == 0)
        auth = url + 7;
    else
        auth = NULL;
    FUZZ_CHECK(auth != NULL);
    alen = strcspn(auth, "/?#");
    FUZZ_CHECK(alen > 0);
    FUZZ_CHECK(memchr(auth, '@', alen) == NULL);
    FUZZ_CHECK(memchr(auth, '%', alen) == NULL);
    FUZZ_CHECK(auth[alen - 1] != '.');
    /* dot segments never pass (in the path; the query may hold anything) */
    plen = strcspn(auth + alen, "?#");
    FUZZ_CHECK(oa_find(auth + alen, plen, "/../") == NULL);
    FUZZ_CHECK(oa_find(auth + alen, plen, "/./") == NULL);
}

static void
oa_caller_state(const char *s)
{
    size_t i, len = strlen(s);
    int want = len <= OAUTH_CALLER_STATE_MAX;

    for (i = 0; i < len && want; i++)
        if (!oa_is_alnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' &&
            s[i] != '.')
            want = 0;
    FUZZ_CHECK(oauth_caller_state_ok(s) == want);
    FUZZ_CHECK(oauth_caller_state_ok(NULL) == 1);
}

/* query_parse against decoding each '&'-separated part by hand. */
static void
oa_query(const char *raw)
{
    struct query *q = NULL;
    const char *p = raw, *amp, *eq;
    char *buf;
    size_t i = 0, seg, nlen, outlen;
    enum brk_err err;

    err = query_parse(raw, 16, &q);
    if (err != BRK_OK) {
        FUZZ_CHECK(q == NULL);
        return;
    }
    buf = brk_malloc(strlen(raw) + 1);
    FUZZ_CHECK(buf != NULL);
    for (i = 0; i < q->n; i++) {
        FUZZ_CHECK(q->params[i].name != NULL && q->params[i].value != NULL);
        FUZZ_CHECK(strlen(q->params[i].value) == q->params[i].value_len);
        FUZZ_CHECK(query_count(q, q->params[i].name) >= 1);
        FUZZ_CHECK(query_get(q, q->params[i].name) != NULL);
    }
    /* each non-empty part gave one parameter, in order */
    i = 0;
    while (*p != '\0') {
        amp = strchr(p, '&');
        seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg > 0) {
            FUZZ_CHECK(i < q->n);
            eq = memchr(p, '=', seg);
            nlen = eq ? (size_t)(eq - p) : seg;
            FUZZ_CHECK(codec_pct_decode(p, nlen, buf, &outlen) == BRK_OK);
            FUZZ_CHECK(strcmp(buf, q->params[i].name) == 0);
            if (eq != NULL) {
                FUZZ_CHECK(codec_pct_decode(eq + 1, seg - nlen - 1, buf,
                                            &outlen) == BRK_OK);
                FUZZ_CHECK(outlen == q->params[i].value_len &&
                           strcmp(buf, q->params[i].value) == 0);
            }
            i++;
        }
        p += seg;
        if (*p == '&')
            p++;
    }
    FUZZ_CHECK(i == q->n);
    brk_free(buf);
    query_free(q);
}

static void
oa_codecs(const uint8_t *data, size_t n)
{
    char *pct = NULL, *enc = NULL, *again = NULL;
    unsigned char *raw = NULL, *raw2 = NULL;
    size_t outlen = 0, len2 = 0, cap = n / 4 * 3 + 3;

    pct = brk_malloc(n + 1);
    raw = brk_malloc(cap);
    FUZZ_CHECK(pct != NULL && raw != NULL);
    if (codec_pct_decode((const char *)data, n, pct, &outlen) == BRK_OK) {
        FUZZ_CHECK(outlen <= n && pct[outlen] == '\0');
        FUZZ_CHECK(strlen(pct) == outlen);
        enc = brk_malloc(3 * outlen + 1);
        again = brk_malloc(3 * outlen + 1);
        FUZZ_CHECK(enc != NULL && again != NULL);
        codec_pct_encode(pct, enc);
        FUZZ_CHECK(codec_pct_decode(enc, strlen(enc), again, &len2) == BRK_OK);
        FUZZ_CHECK(len2 == outlen && memcmp(again, pct, outlen) == 0);
        brk_free(enc);
        brk_free(again);
        enc = again = NULL;
    }
    if (codec_b64_decode((const char *)data, n, raw, cap, &outlen) == BRK_OK) {
        FUZZ_CHECK(n % 4 == 0 && outlen <= n / 4 * 3);
        enc = brk_malloc(CODEC_B64_ENC_SIZE(outlen));
        raw2 = brk_malloc(outlen + 3);
        FUZZ_CHECK(enc != NULL && raw2 != NULL);
        codec_b64_encode(raw, outlen, enc);
        FUZZ_CHECK(strlen(enc) == n);
        FUZZ_CHECK(codec_b64_decode(enc, n, raw2, outlen + 3, &len2) == BRK_OK);
        FUZZ_CHECK(len2 == outlen && memcmp(raw2, raw, outlen) == 0);
        /* too small an output buffer is refused, never overrun */
        if (outlen > 0)
            FUZZ_CHECK(codec_b64_decode((const char *)data, n, raw2, outlen - 1,
                                        &len2) != BRK_OK);
    }
    brk_free(enc);
    brk_free(raw2);
    brk_free(raw);
    brk_free(pct);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    char *state, *url, *caller, *query;
    const uint8_t *rest;
    uint8_t sel, pos;
    size_t restlen;

    oa_init();
    sel = fuzz_byte(&in);
    pos = fuzz_byte(&in);
    state = fuzz_field(&in, '\n', NULL);
    url = fuzz_field(&in, '\n', NULL);
    caller = fuzz_field(&in, '\n', NULL);
    query = fuzz_field(&in, '\n', NULL);
    rest = fuzz_take(&in, in.n, &restlen);
    if (state != NULL && url != NULL && caller != NULL && query != NULL) {
        oa_states(state, sel & 1, (sel >> 1) & 1, pos);
        oa_return(url, (sel >> 2) & 3);
        oa_caller_state(caller);
        oa_query(query);
        oa_codecs(rest, restlen);
    }
    brk_free(query);
    brk_free(caller);
    brk_free(url);
    brk_free(state);
    return 0;
}
