/*
 * Shared steps of a tenant purge (see purge.h).
 */
#include <string.h>

#include "purge.h"

const char purge_gone_lua[] =
    "local e = redis.call('HGET', KEYS[2], 'event_ts')\n"
    "if e and tonumber(e) > tonumber(ARGV[1]) then return -3 end\n"
    "local g = redis.call('HGET', KEYS[1], 'ts')\n"
    "if not g or tonumber(g) < tonumber(ARGV[1]) then\n"
    "  redis.call('HSET', KEYS[1], 'ts', ARGV[1])\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'suite_id', ARGV[3], 'purged_at', ARGV[2])\n"
    "return 1\n";

/* The tenant's broker tokens are named by hash, outside its keys; the
 * tenant keeps their index, so they go too. */
const char purge_btoks_lua[] =
    "local n = 0\n"
    "for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  n = n + redis.call('UNLINK', ARGV[1] .. 'btok:{' .. h .. '}')\n"
    "end\n"
    "return n\n";

const char purge_report_lua[] = "redis.call('SREM', KEYS[2], ARGV[1])\n"
                                "redis.call('HSET', KEYS[1], 'report', "
                                "ARGV[2])\n"
                                "return 1\n";

const char *const purge_kind_names[PURGE_KINDS] = {
    "data_key", "tenant", "token", "directory", "lock", "other"};

int
purge_kind_of(const char *key)
{
    const char *p = strrchr(key, '}');

    if (p == NULL)
        return 5;
    p = strchr(p + 2, ':'); /* after "}:<suite>" */
    if (p == NULL)
        return 5;
    p++;
    if (strcmp(p, "dk") == 0)
        return 0;
    if (strcmp(p, "tenant") == 0)
        return 1;
    if (strcmp(p, "token") == 0 || strcmp(p, "btoks") == 0 ||
        strncmp(p, "svccur:", 7) == 0)
        return 2;
    if (strncmp(p, "dir:", 4) == 0)
        return 3;
    if (strncmp(p, "lock:", 5) == 0)
        return 4;
    return 5;
}
