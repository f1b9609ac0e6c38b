/*
 * Capability names and their stored form (see capability.h).
 */
#include <string.h>

#include "capability.h"

static const struct {
    unsigned bit;
    const char *name;
} caps[] = {
    {CAP_EXTERNAL_WRITE, "external.write"},
    {CAP_EXTERNAL_WELCOME, "external.welcome"},
    {CAP_EXTERNAL_MESSAGE, "external.message"},
    {CAP_MESSAGES, "messages"},
};

#define NCAPS (sizeof(caps) / sizeof(caps[0]))

static unsigned
bit_of(const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < NCAPS; i++)
        if (strlen(caps[i].name) == len && memcmp(caps[i].name, name, len) == 0)
            return caps[i].bit;
    return 0;
}

unsigned
capability_bit(const char *name)
{
    return name != NULL ? bit_of(name, strlen(name)) : 0;
}

const char *
capability_name(unsigned bit)
{
    size_t i;

    for (i = 0; i < NCAPS; i++)
        if (caps[i].bit == bit)
            return caps[i].name;
    return NULL;
}

enum brk_err
capability_parse(const char *s, unsigned *out)
{
    unsigned set = 0, bit;
    const char *p, *comma;
    size_t len;

    if (s == NULL || strlen(s) >= CAPABILITY_LIST_MAX)
        return BRK_ERR_INVAL;
    if (s[0] == '\0') {
        *out = 0;
        return BRK_OK;
    }
    for (p = s;; p = comma + 1) {
        comma = strchr(p, ',');
        len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        bit = bit_of(p, len);
        if (bit == 0 || (set & bit) != 0)
            return BRK_ERR_INVAL;
        set |= bit;
        if (comma == NULL)
            break;
    }
    *out = set;
    return BRK_OK;
}

char *
capability_format(unsigned caps_set, char *buf, size_t size)
{
    size_t i, used = 0, len;

    if (size == 0)
        return buf;
    buf[0] = '\0';
    for (i = 0; i < NCAPS; i++) {
        if ((caps_set & caps[i].bit) == 0)
            continue;
        len = strlen(caps[i].name);
        if (used + (used > 0) + len + 1 > size)
            break;
        if (used > 0)
            buf[used++] = ',';
        memcpy(buf + used, caps[i].name, len + 1);
        used += len;
    }
    return buf;
}
