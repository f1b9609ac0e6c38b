/*
 * Delivery settings and key names (see delivery_def.h).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "codec.h"
#include "delivery_def.h"

/* The events the broker can deliver, and their ChangeTypes
 * (wecom-protocol.md §2.11, §2.14, §2.15). */
static const struct {
    const char *info_type;
    const char *const *changes; /* NULL-terminated; NULL: none */
} known[] = {
    {"create_auth", NULL},
    {"change_auth", NULL},
    {"cancel_auth", NULL},
    {"change_contact",
     (const char *const[]){"create_user", "update_user", "delete_user",
                           "create_party", "update_party", "delete_party",
                           "update_tag", NULL}},
    {"change_external_contact",
     (const char *const[]){"add_external_contact", "edit_external_contact",
                           "del_external_contact", "del_follow_user",
                           "add_half_external_contact", "transfer_fail", NULL}},
    {"change_external_chat",
     (const char *const[]){"create", "update", "dismiss", NULL}},
    {"change_external_tag",
     (const char *const[]){"create", "update", "delete", "shuffle", NULL}},
};

int
delivery_url_ok(const char *url)
{
    const char *host, *end;
    size_t n = strnlen(url, DELIVERY_URL_MAX + 1), i;

    if (n == 0 || n > DELIVERY_URL_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f ||
            url[i] == '\\' || url[i] == '#')
            return 0;
    if (strncasecmp(url, "https://", 8) == 0)
        host = url + 8;
    else if (strncasecmp(url, "http://", 7) == 0)
        host = url + 7;
    else
        return 0;
    end = host + strcspn(host, "/?");
    if (end == host || memchr(host, '@', (size_t)(end - host)) != NULL)
        return 0;
    /* a port, when given, is 1..5 digits */
    if (host[0] != '[') {
        const char *colon = memchr(host, ':', (size_t)(end - host));

        if (colon != NULL) {
            size_t d = (size_t)(end - colon - 1);

            if (d == 0 || d > 5 || colon == host ||
                strspn(colon + 1, "0123456789") < d)
                return 0;
        }
    }
    return 1;
}

int
delivery_event_known(const char *info_type, const char *change_type)
{
    size_t i, k;

    for (i = 0; i < nitems(known); i++) {
        if (strcmp(known[i].info_type, info_type) != 0)
            continue;
        if (change_type == NULL)
            return 1;
        for (k = 0; known[i].changes != NULL && known[i].changes[k] != NULL;
             k++)
            if (strcmp(known[i].changes[k], change_type) == 0)
                return 1;
        return 0;
    }
    return 0;
}

int
delivery_is_lifecycle(const char *info_type)
{
    return strcmp(info_type, "create_auth") == 0 ||
           strcmp(info_type, "change_auth") == 0 ||
           strcmp(info_type, "cancel_auth") == 0;
}

/* Check one item "InfoType" or "InfoType/ChangeType". */
static int
item_ok(const char *item, size_t n)
{
    char buf[128];
    char *slash;

    if (n == 0 || n >= sizeof(buf))
        return 0;
    memcpy(buf, item, n);
    buf[n] = '\0';
    slash = strchr(buf, '/');
    if (slash == NULL)
        return delivery_event_known(buf, NULL);
    *slash = '\0';
    return slash[1] != '\0' && delivery_event_known(buf, slash + 1);
}

enum brk_err
delivery_events_check(const char *list)
{
    const char *p = list, *q, *r;
    size_t n = strnlen(list, DELIVERY_EVENTS_MAX);

    if (n == 0 || n >= DELIVERY_EVENTS_MAX)
        return BRK_ERR_INVAL;
    for (;;) {
        q = strchr(p, ',');
        n = q ? (size_t)(q - p) : strlen(p);
        if (!item_ok(p, n))
            return BRK_ERR_INVAL;
        /* each once */
        for (r = list; r < p;) {
            size_t m = strcspn(r, ",");

            if (m == n && memcmp(r, p, n) == 0)
                return BRK_ERR_INVAL;
            r += m + 1;
        }
        if (q == NULL)
            return BRK_OK;
        p = q + 1;
    }
}

int
delivery_events_match(const char *list, const char *info_type,
                      const char *change_type)
{
    size_t it = strlen(info_type), n;
    const char *p = list;

    if (list[0] == '\0')
        return 1;
    while (*p != '\0') {
        n = strcspn(p, ",");
        if (n == it && memcmp(p, info_type, it) == 0)
            return 1;
        if (change_type != NULL && change_type[0] != '\0' && n > it + 1 &&
            memcmp(p, info_type, it) == 0 && p[it] == '/' &&
            n - it - 1 == strlen(change_type) &&
            memcmp(p + it + 1, change_type, n - it - 1) == 0)
            return 1;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

enum brk_err
delivery_random_alnum(char *out, size_t len)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[64];
    size_t o = 0, i;

    while (o < len) {
        if (RAND_bytes(rnd, (int)sizeof(rnd)) != 1)
            return BRK_ERR_CRYPTO;
        /* 248 = 4 * 62: rejecting the rest keeps every character equally
         * likely */
        for (i = 0; i < sizeof(rnd) && o < len; i++)
            if (rnd[i] < 248)
                out[o++] = alpha[rnd[i] % 62];
    }
    out[len] = '\0';
    brk_wipe(rnd, sizeof(rnd));
    return BRK_OK;
}

enum brk_err
delivery_aes_key_new(char *out)
{
    /* the base64 digits whose value has its two low bits clear */
    static const char last[] = "AEIMQUYcgkosw048";
    char one[2];

    if (delivery_random_alnum(out, DELIVERY_AES_KEY_LEN - 1) != BRK_OK)
        return BRK_ERR_CRYPTO;
    do {
        if (delivery_random_alnum(one, 1) != BRK_OK)
            return BRK_ERR_CRYPTO;
    } while (strchr(last, one[0]) == NULL);
    out[DELIVERY_AES_KEY_LEN - 1] = one[0];
    out[DELIVERY_AES_KEY_LEN] = '\0';
    return BRK_OK;
}

void
delivery_event_id(const char *suite, const char *corp, const char *src_id,
                  const char *info_type, char out[DELIVERY_EVENT_ID_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const char *parts[4] = {suite, corp, src_id, info_type};
    size_t i;
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;

    /* each part with its NUL: "ab"+"c" and "a"+"bc" differ */
    for (i = 0; ok && i < nitems(parts); i++)
        ok = EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + 1) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &n) == 1 && n >= 16;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        /* cannot happen with a working libcrypto; an id that is still
         * stable per event */
        memset(md, 0, sizeof(md));
        n = 16;
        for (i = 0; src_id[i] != '\0'; i++)
            md[i % 16] ^= (unsigned char)src_id[i];
    }
    codec_hex_encode(md, DELIVERY_EVENT_ID_LEN / 2, hex);
    memcpy(out, hex, DELIVERY_EVENT_ID_LEN);
    out[DELIVERY_EVENT_ID_LEN] = '\0';
}

long long
delivery_backoff_ms(int attempts)
{
    long long ms = 1000;

    if (attempts < 1)
        attempts = 1;
    while (--attempts > 0 && ms < 300000)
        ms *= 2;
    return ms > 300000 ? 300000 : ms;
}

static enum brk_err
svc_key(char *out, size_t len, const char *prefix, const char *svc,
        const char *what, const char *member)
{
    char w[KEYS_MAX];
    int n = snprintf(w, sizeof(w), "%s%s%s", what, member ? ":" : "",
                     member ? member : "");

    if (n < 0 || (size_t)n >= sizeof(w))
        return BRK_ERR_TOOBIG;
    return keys_service(out, len, prefix, svc, w);
}

enum brk_err
delivery_keys(struct delivery_keys *k, const char *prefix, const char *svc,
              const char *suite, const char *corp)
{
    char member[DELIVERY_MEMBER_MAX + 1];

    if ((suite == NULL) != (corp == NULL))
        return BRK_ERR_INVAL;
    if (suite == NULL)
        return delivery_keys_member(k, prefix, svc, NULL);
    if (!keys_id_ok(suite) || !keys_id_ok(corp))
        return BRK_ERR_INVAL;
    snprintf(member, sizeof(member), "%s:%s", suite, corp);
    return delivery_keys_member(k, prefix, svc, member);
}

enum brk_err
delivery_keys_member(struct delivery_keys *k, const char *prefix,
                     const char *svc, const char *member)
{
    struct delivery_keys t;
    const char *colon;
    char suite[80];

    memset(&t, 0, sizeof(t));
    if (!keys_id_ok(svc))
        return BRK_ERR_INVAL;
    if (member != NULL) {
        colon = strchr(member, ':');
        if (colon == NULL || (size_t)(colon - member) >= sizeof(suite) ||
            strlen(member) > DELIVERY_MEMBER_MAX)
            return BRK_ERR_INVAL;
        memcpy(suite, member, (size_t)(colon - member));
        suite[colon - member] = '\0';
        if (!keys_id_ok(suite) || !keys_id_ok(colon + 1))
            return BRK_ERR_INVAL;
        memcpy(t.member, member, strlen(member) + 1);
    }
    if (keys_service(t.dlv, sizeof(t.dlv), prefix, svc, "dlv") ||
        keys_service(t.dk, sizeof(t.dk), prefix, svc, "dk") ||
        keys_service(t.ready, sizeof(t.ready), prefix, svc, "dready") ||
        keys_service(t.lease, sizeof(t.lease), prefix, svc, "dlease") ||
        keys_service(t.seq, sizeof(t.seq), prefix, svc, "dseq") ||
        keys_service(t.tenants, sizeof(t.tenants), prefix, svc, "dtenants"))
        return BRK_ERR_TOOBIG;
    if (member != NULL &&
        (svc_key(t.q, sizeof(t.q), prefix, svc, "dq", member) ||
         svc_key(t.qa, sizeof(t.qa), prefix, svc, "dqa", member) ||
         svc_key(t.dead, sizeof(t.dead), prefix, svc, "dd", member)))
        return BRK_ERR_TOOBIG;
    *k = t;
    return BRK_OK;
}

enum brk_err
delivery_seen_key(char *out, size_t len, const char *prefix, const char *svc,
                  const char *event_id)
{
    return svc_key(out, len, prefix, svc, "dseen", event_id);
}

enum brk_err
delivery_dk_context(char *out, size_t len, const char *svc)
{
    int n = snprintf(out, len, "service:%s", svc);

    return n < 0 || (size_t)n >= len ? BRK_ERR_TOOBIG : BRK_OK;
}
