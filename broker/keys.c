/*
 * Redis key names (see keys.h).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

/* CRC16-CCITT (XMODEM), as Redis Cluster maps keys to slots. */
static unsigned
crc16(const char *buf, size_t len)
{
    unsigned crc = 0;
    size_t i;
    int b;

    for (i = 0; i < len; i++) {
        crc ^= (unsigned)(unsigned char)buf[i] << 8;
        for (b = 0; b < 8; b++)
            crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff
                               : (crc << 1) & 0xffff;
    }
    return crc;
}

#define SLOTS        16384
#define SLOT_TAG_MAX (1u << 20)

/* For each slot the smallest n whose tag "s<hex of n>" falls in it; every
 * slot has one below SLOT_TAG_MAX. Built once: a search per call cost
 * thousands of CRCs. */
static uint32_t SlotFirst[SLOTS];
static pthread_once_t SlotOnce = PTHREAD_ONCE_INIT;

static size_t
slot_tag_text(char *tag, uint32_t n)
{
    static const char hex[] = "0123456789abcdef";
    char rev[8];
    size_t k = 0, i = 0;

    do {
        rev[k++] = hex[n & 15];
        n >>= 4;
    } while (n != 0);
    tag[i++] = 's';
    while (k > 0)
        tag[i++] = rev[--k];
    tag[i] = '\0';
    return i;
}

static void
slot_table_build(void)
{
    char tag[16];
    size_t filled = 0, len;
    uint32_t n;
    unsigned s;

    for (s = 0; s < SLOTS; s++)
        SlotFirst[s] = UINT32_MAX;
    for (n = 0; n < SLOT_TAG_MAX && filled < SLOTS; n++) {
        len = slot_tag_text(tag, n);
        s = crc16(tag, len) & (SLOTS - 1);
        if (SlotFirst[s] == UINT32_MAX) {
            SlotFirst[s] = n;
            filled++;
        }
    }
}

enum brk_err
keys_slot_tag(char *out, size_t len, const char *id)
{
    unsigned want = crc16(id, strlen(id)) & (SLOTS - 1);
    char tag[16];

    /* the same tag on every instance: the first in the slot */
    pthread_once(&SlotOnce, slot_table_build);
    if (SlotFirst[want] == UINT32_MAX)
        return BRK_ERR_INVAL;
    slot_tag_text(tag, SlotFirst[want]);
    return fmt(out, len, "%s", tag);
}

enum brk_err
keys_gone(char *out, size_t len, const char *prefix, const char *corpid,
          const char *hmac)
{
    char tag[16];
    enum brk_err err = keys_slot_tag(tag, sizeof(tag), corpid);

    if (err)
        return err;
    return fmt(out, len, "%s{%s}:gone:%s", prefix, tag, hmac);
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
