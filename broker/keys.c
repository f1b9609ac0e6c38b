/*
 * Redis key names (see keys.h).
 */
#include <stdarg.h>
#include <stdio.h>

#include "keys.h"

static enum brk_err fmt(char *out, size_t len, const char *f, ...)
    BRK_PRINTF(3, 4);

static enum brk_err
fmt(char *out, size_t len, const char *f, ...)
{
    va_list ap;
    int n;

    va_start(ap, f);
    n = vsnprintf(out, len, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len)
        return BRK_ERR_TOOBIG;
    return BRK_OK;
}

enum brk_err
keys_suite_dk(char *out, size_t len, const char *prefix, const char *suite)
{
    return fmt(out, len, "%s{%s}:dk", prefix, suite);
}

enum brk_err
keys_suite_ticket(char *out, size_t len, const char *prefix, const char *suite)
{
    return fmt(out, len, "%s{%s}:ticket", prefix, suite);
}

enum brk_err
keys_suite_events(char *out, size_t len, const char *prefix, const char *suite)
{
    return fmt(out, len, "%s{%s}:events", prefix, suite);
}

enum brk_err
keys_suite_seen(char *out, size_t len, const char *prefix, const char *suite,
                const char *hmac)
{
    return fmt(out, len, "%s{%s}:seen:%s", prefix, suite, hmac);
}

enum brk_err
keys_tenant(char *out, size_t len, const char *prefix, const char *corpid,
            const char *suite)
{
    return fmt(out, len, "%s{%s}:%s:tenant", prefix, corpid, suite);
}

enum brk_err
keys_suite(char *out, size_t len, const char *prefix, const char *suite,
           const char *what)
{
    return fmt(out, len, "%s{%s}:%s", prefix, suite, what);
}

enum brk_err
keys_tenant_sub(char *out, size_t len, const char *prefix, const char *corpid,
                const char *suite, const char *what)
{
    return fmt(out, len, "%s{%s}:%s:%s", prefix, corpid, suite, what);
}

enum brk_err
keys_tenant_pattern(char *out, size_t len, const char *prefix,
                    const char *corpid, const char *suite)
{
    return fmt(out, len, "%s{%s}:%s:*", prefix, corpid, suite);
}

enum brk_err
keys_gone(char *out, size_t len, const char *prefix, const char *hmac)
{
    return fmt(out, len, "%s{%s}:gone", prefix, hmac);
}

enum brk_err
keys_tenants(char *out, size_t len, const char *prefix)
{
    return fmt(out, len, "%stenants", prefix);
}

enum brk_err
keys_seal_ctx(char *out, size_t len, const char *key, const char *field)
{
    return fmt(out, len, "%s#%s", key, field);
}

int
keys_id_ok(const char *s)
{
    size_t n = 0;

    if (s == NULL)
        return 0;
    for (; *s != '\0'; s++, n++) {
        if (n >= 64)
            return 0;
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return 0;
    }
    return n > 0;
}

enum brk_err
keys_service(char *out, size_t len, const char *prefix, const char *id,
             const char *what)
{
    if (what == NULL)
        return fmt(out, len, "%ssvc:{%s}", prefix, id);
    return fmt(out, len, "%ssvc:{%s}:%s", prefix, id, what);
}

enum brk_err
keys_service_name(char *out, size_t len, const char *prefix, const char *name)
{
    return fmt(out, len, "%ssvcname:%s", prefix, name);
}

enum brk_err
keys_services(char *out, size_t len, const char *prefix)
{
    return fmt(out, len, "%sservices", prefix);
}

enum brk_err
keys_btoken(char *out, size_t len, const char *prefix, const char *hash)
{
    return fmt(out, len, "%sbtok:{%s}", prefix, hash);
}

enum brk_err
keys_budget_corp(char *out, size_t len, const char *prefix, const char *corpid,
                 const char *api, const char *what)
{
    return fmt(out, len, "%s{%s}:budget:%s:%s", prefix, corpid, api, what);
}

enum brk_err
keys_budget_pattern(char *out, size_t len, const char *prefix,
                    const char *corpid)
{
    return fmt(out, len, "%s{%s}:budget:*", prefix, corpid);
}

enum brk_err
keys_budget_api(char *out, size_t len, const char *prefix, const char *api,
                const char *what)
{
    return fmt(out, len, "%s{api:%s}:budget:%s", prefix, api, what);
}
