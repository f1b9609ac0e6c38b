/*
 * The Lua scripts (see scripts.h), grouped by the module that runs them.
 * Every script declares the keys it touches in KEYS, except where its
 * comment says otherwise.
 */
#include <stdio.h>

#include <openssl/evp.h>

#include "keys.h"
#include "scripts.h"

/* The server's clock in ms, as a string ZADD takes without rounding. */
#define LUA_NOW                                                                \
    "local t = redis.call('TIME')\n"                                           \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"  \
    "local function ms(x) return string.format('%.0f', x) end\n"

/* Raises tenant hash k's generation (KEYS_TENANT_GEN) by one: every script
 * that writes a tenant's status, grant, privilege or directory runs it in
 * the same step. A hash without one starts at the server's clock in us,
 * so a tenant purged and installed again never repeats a generation a
 * cache may still hold. */
#define LUA_TENANT_GEN_BUMP(k)                                                 \
    "if redis.call('HINCRBY', " k ", '" KEYS_TENANT_GEN "', 1) == 1 then\n"    \
    "  local tg = redis.call('TIME')\n"                                        \
    "  redis.call('HSET', " k ", '" KEYS_TENANT_GEN "', string.format('%.0f'," \
    " tonumber(tg[1]) * 1000000 + tonumber(tg[2])))\n"                         \
    "end\n"

/*
 * The event queues (evqueue.c): a suite's event stream and per-tenant queues,
 * leased to one instance at a time. Time is Redis's own (TIME), so instances
 * with skewed clocks agree on leases and backoffs.
 */

/* Appends an event unless its seen marker exists.
 * KEYS: seen marker, stream (the suite's events, or the tenant's queue),
 *       ready zset, seq hash. ARGV: marker ttl (s), corp ('' = the suite
 *       stream), field/value pairs. Returns 0 when seen before, else 1; a
 *       tenant's queue gets its seq counted and the tenant made ready. */
static const char evq_push_lua[] =
    LUA_NOW "if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then\n"
            "  return 0\n"
            "end\n"
            "redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))\n"
            "if ARGV[2] ~= '' then\n"
            "  redis.call('HINCRBY', KEYS[4], ARGV[2], 1)\n"
            "  redis.call('ZADD', KEYS[3], 'NX', ms(now), ARGV[2])\n"
            "end\n"
            "return 1\n";

/* Moves an entry of the suite stream to the tenant's queue.
 * KEYS: events stream, attempts hash, tenant queue, ready zset, seq hash.
 * ARGV: group, entry id, corp, field/value pairs. Returns 1. */
static const char evq_handover_lua[] =
    LUA_NOW "redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4))\n"
            "redis.call('HINCRBY', KEYS[5], ARGV[3], 1)\n"
            "redis.call('ZADD', KEYS[4], 'NX', ms(now), ARGV[3])\n"
            "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
            "redis.call('XDEL', KEYS[1], ARGV[2])\n"
            "redis.call('HDEL', KEYS[2], ARGV[2])\n"
            "return 1\n";

/* Leases up to ARGV[3] ready tenants to this instance.
 * KEYS: ready zset, lease hash, seq hash. ARGV: lease ms, me, max.
 * Returns {corp, seq, previous holder ('' = none)} flattened, per tenant. */
static const char evq_claim_lua[] =
    LUA_NOW "local c = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms(now),"
            " 'LIMIT', 0, tonumber(ARGV[3]))\n"
            "local out = {}\n"
            "for _, corp in ipairs(c) do\n"
            "  local prev = redis.call('HGET', KEYS[2], corp) or ''\n"
            "  redis.call('ZADD', KEYS[1], ms(now + tonumber(ARGV[1])), corp)\n"
            "  redis.call('HSET', KEYS[2], corp, ARGV[2])\n"
            "  out[#out + 1] = corp\n"
            "  out[#out + 1] = redis.call('HGET', KEYS[3], corp) or '0'\n"
            "  out[#out + 1] = prev\n"
            "end\n"
            "return out\n";

/* Gives back every lease of mine except the tenants named.
 * KEYS: ready zset, lease hash. ARGV: me, corps to keep... Returns the
 * count given back (made ready now). */
static const char evq_reclaim_lua[] =
    LUA_NOW "local keep = {}\n"
            "for i = 2, #ARGV do keep[ARGV[i]] = true end\n"
            "local h = redis.call('HGETALL', KEYS[2])\n"
            "local n = 0\n"
            "for i = 1, #h, 2 do\n"
            "  if h[i + 1] == ARGV[1] and not keep[h[i]] then\n"
            "    redis.call('HDEL', KEYS[2], h[i])\n"
            "    redis.call('ZADD', KEYS[1], ms(now), h[i])\n"
            "    n = n + 1\n"
            "  end\n"
            "end\n"
            "return n\n";

/* Extends my lease of a tenant.
 * KEYS: ready zset, lease hash. ARGV: corp, me, lease ms. Returns 0 when
 * the lease is not mine, else 1. */
static const char evq_refresh_lua[] = LUA_NOW
    "if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end\n"
    "redis.call('ZADD', KEYS[1], 'XX', ms(now + tonumber(ARGV[3])),"
    " ARGV[1])\n"
    "return 1\n";

/* Ends my lease; an emptied queue whose seq is unchanged is
 * dropped, else the tenant is ready again.
 * KEYS: ready zset, lease hash, seq hash, queue, queue attempts.
 * ARGV: corp, seq seen at claim, me. Returns 0 (not mine), 1 (dropped) or
 * 2 (ready again). */
static const char evq_release_lua[] = LUA_NOW
    "if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[3] then return 0 end\n"
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "local s = redis.call('HGET', KEYS[3], ARGV[1]) or '0'\n"
    "if s == ARGV[2] and redis.call('XLEN', KEYS[4]) == 0 then\n"
    "  redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "  redis.call('HDEL', KEYS[3], ARGV[1])\n"
    "  redis.call('DEL', KEYS[4], KEYS[5])\n"
    "  return 1\n"
    "end\n"
    "redis.call('ZADD', KEYS[1], ms(now), ARGV[1])\n"
    "return 2\n";

/* Ends my lease and makes the tenant ready after a delay.
 * KEYS: ready zset, lease hash. ARGV: corp, me, delay ms. Returns 0 when
 * the lease is not mine, else 1. */
static const char evq_backoff_lua[] = LUA_NOW
    "if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end\n"
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "redis.call('ZADD', KEYS[1], ms(now + tonumber(ARGV[3])), ARGV[1])\n"
    "return 1\n";

/* Drops a handled entry of a tenant's queue.
 * KEYS: queue, queue attempts. ARGV: entry id. Returns 1. */
static const char evq_tenant_ack_lua[] =
    "redis.call('XDEL', KEYS[1], ARGV[1])\n"
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "return 1\n";

/* Moves an entry of a tenant's queue to the dead letters.
 * KEYS: queue, queue attempts, dead stream. ARGV: entry id, reason,
 * attempts, corp. Returns 1. */
static const char evq_tenant_dead_lua[] =
    "local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])\n"
    "local f = {}\n"
    "if e[1] then f = e[1][2] end\n"
    "redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'id',"
    " ARGV[1], 'reason', ARGV[2], 'attempts', ARGV[3], 'corp', ARGV[4],"
    " unpack(f))\n"
    "redis.call('XDEL', KEYS[1], ARGV[1])\n"
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "return 1\n";

/*---- The suite's event stream read by consumer group (worker.c) ----*/

/* Acknowledges and drops a handled entry.
 * KEYS: stream, attempts hash. ARGV: group, entry id. Returns 1. */
static const char stream_ack_lua[] =
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "redis.call('HDEL', KEYS[2], ARGV[2])\n"
    "return 1\n";

/* Moves an entry to the dead letters and acknowledges it.
 * KEYS: stream, attempts hash, dead stream. ARGV: group, entry id, reason,
 * attempts. Returns 1. */
static const char stream_dead_lua[] =
    "local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])\n"
    "local f = {}\n"
    "if e[1] then f = e[1][2] end\n"
    "redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'id',"
    " ARGV[2], 'reason', ARGV[3], 'attempts', ARGV[4], unpack(f))\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "redis.call('HDEL', KEYS[2], ARGV[2])\n"
    "return 1\n";

/*---- Suite tickets and access tokens (callback.c, tokens.c) ----*/

/* Keeps the newest suite ticket by WeCom's TimeStamp:
 * an older or equal one never overwrites, whichever instance it reaches.
 * KEYS: ticket hash. ARGV: ts, sealed ticket, received at, ttl (s).
 * Returns 1 when stored, 0 when older. */
static const char suite_ticket_store_lua[] =
    "local cur = redis.call('HGET', KEYS[1], 'ts')\n"
    "if cur and tonumber(cur) >= tonumber(ARGV[1]) then\n"
    "  return 0\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'ts', ARGV[1], 'ticket', ARGV[2],"
    " 'at', ARGV[3])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "return 1\n";

/* Stores a fetched token only while the fetch lock is
 * still held under our fence, and frees the lock.
 * KEYS: token hash, lock. ARGV: fence, sealed token, expiry (ms epoch),
 * fingerprint. Returns 1 when stored, 0 when the lock was lost. */
static const char access_token_store_lua[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'tok', ARGV[2], 'exp', ARGV[3],"
    " 'fp', ARGV[4])\n"
    "redis.call('PEXPIREAT', KEYS[1], ARGV[3])\n"
    "redis.call('DEL', KEYS[2])\n"
    "return 1\n";

/* Frees the fetch lock if it is still ours.
 * KEYS: lock. ARGV: fence. Returns 1 when freed, else 0. */
static const char token_lock_release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

/* Drops the stored token if it is the one WeCom
 * refused (by fingerprint), not a newer one.
 * KEYS: token hash. ARGV: fingerprint. Returns 1 when dropped, else 0. */
static const char access_token_reject_lua[] =
    "if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

/*---- Call budgets (budget.c) ----*/

/* Grants up to ARGV[1] calls of minute hash KEYS[1] and hour
 * hash KEYS[2] unless KEYS[3] (a pause) exists: never past ARGV[2] a
 * minute and ARGV[3] an hour, nor, for background work (ARGV[4] = 1),
 * past ARGV[5] and ARGV[6] of it; ARGV[7], ARGV[8]: the windows' ttl (ms);
 * ARGV[9]: the pause assumed for a pause without ttl (ms). Returns
 * {granted, why, pause_ms}: why 0 granted, 1 the minute or 2 the hour is
 * spent, 3 paused for pause_ms. */
static const char budget_lease_lua[] =
    "local p = redis.call('PTTL', KEYS[3])\n"
    "if p == -1 then p = tonumber(ARGV[9]) end\n"
    "if p > 0 then return {0, 3, p} end\n"
    "local want = tonumber(ARGV[1])\n"
    "local bg = ARGV[4] == '1'\n"
    "local m = redis.call('HMGET', KEYS[1], 'all', 'bg')\n"
    "local h = redis.call('HMGET', KEYS[2], 'all', 'bg')\n"
    "local rm = tonumber(ARGV[2]) - (tonumber(m[1]) or 0)\n"
    "local rh = tonumber(ARGV[3]) - (tonumber(h[1]) or 0)\n"
    "if bg then\n"
    "  rm = math.min(rm, tonumber(ARGV[5]) - (tonumber(m[2]) or 0))\n"
    "  rh = math.min(rh, tonumber(ARGV[6]) - (tonumber(h[2]) or 0))\n"
    "end\n"
    "if rh <= 0 then return {0, 2, 0} end\n"
    "if rm <= 0 then return {0, 1, 0} end\n"
    "local g = math.min(want, rm, rh)\n"
    "redis.call('HINCRBY', KEYS[1], 'all', g)\n"
    "redis.call('HINCRBY', KEYS[2], 'all', g)\n"
    "if bg then\n"
    "  redis.call('HINCRBY', KEYS[1], 'bg', g)\n"
    "  redis.call('HINCRBY', KEYS[2], 'bg', g)\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[7])\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[8])\n"
    "return {g, 0, 0}\n";

/* Pauses a budget and says so.
 * KEYS: pause key. ARGV: ms, channel, message. Returns 1. */
static const char budget_pause_lua[] =
    "redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])\n"
    "redis.call('PUBLISH', ARGV[2], ARGV[3])\n"
    "return 1\n";

/*---- A tenant's lifecycle and directory (worker.c) ----*/

/* Replaces the live directory with the staged one
 * and records the grant, in one step, so readers never see half of either.
 * KEYS: live users, parties, tags; staged users, parties, tags; tenant.
 * ARGV: the tenant's field/value pairs. Returns -1 when the tenant is
 * gone (the directory is replaced all the same), else 1. */
static const char directory_activate_lua[] =
    "for i = 1, 3 do\n"
    "  if redis.call('EXISTS', KEYS[i + 3]) == 1 then\n"
    "    redis.call('RENAME', KEYS[i + 3], KEYS[i])\n"
    "  else\n"
    "    redis.call('DEL', KEYS[i])\n"
    "  end\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[7]) == 0 then return -1 end\n"
    "redis.call('HSET', KEYS[7], unpack(ARGV))\n" LUA_TENANT_GEN_BUMP(
        "KEYS[7]") "return 1\n";

/* Records that a tenant whose install was lost
 * must be installed again, unless it exists. One slot: the caller reads
 * the suite's lost counter first (it only grows, so reading it apart
 * changes nothing) and adds the tenant to the global index after a 1 (an
 * index entry is a listing, added again when the event is retried).
 * KEYS: tenant. ARGV: now, event ts. Returns 1 when marked, else 0. */
static const char tenant_reinstall_mark_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'status', 'reinstall_required',"
    " 'updated_at', ARGV[1], 'event_ts', ARGV[2])\n" LUA_TENANT_GEN_BUMP(
        "KEYS[1]") "return 1\n";

/* The status and event_ts of the tenant, and the
 * cancel marker's TimeStamp, in one round trip (the marker is tagged into
 * the tenant's slot, keys_gone).
 * KEYS: tenant, cancel marker. Returns {status or '', event_ts or '0',
 * marker ts or '-1'}. */
static const char tenant_state_read_lua[] =
    "local s = redis.call('HMGET', KEYS[1], 'status', 'event_ts')\n"
    "local g = redis.call('HGET', KEYS[2], 'ts')\n"
    "return {s[1] or '', s[2] or '0', g or '-1'}\n";

/* Records an install (create_auth) or a new permanent
 * code (reset, ARGV[5] = 1), in the order of WeCom's TimeStamps. The
 * marker shares the tenant's slot, so the ordering against a cancel stays
 * atomic; the global index is the caller's next step after a 1 (a listing:
 * a retried event adds it again, and `brokerctl tenants` skips a member
 * whose record is gone).
 * KEYS: tenant, cancel marker. ARGV: event ts, sealed code, corp name,
 * now, reset, (unused), suite, corp. Returns -2 when cancelled at or
 * after ts, -3 when a newer event installed it, -4 for a reset of no
 * tenant, else 1. */
static const char tenant_install_lua[] =
    "local g = redis.call('HGET', KEYS[2], 'ts')\n"
    "if g and tonumber(g) >= tonumber(ARGV[1]) then return -2 end\n"
    "local e = redis.call('HGET', KEYS[1], 'event_ts')\n"
    "if e and tonumber(e) > tonumber(ARGV[1]) then return -3 end\n"
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "if ARGV[5] == '1' then\n"
    "  if not st or st == 'reinstall_required' then return -4 end\n"
    "  redis.call('HSET', KEYS[1], 'pcode', ARGV[2], 'updated_at', ARGV[4])\n"
    "  return 1\n"
    "end\n"
    "if not st or st == 'reinstall_required' then\n"
    "  redis.call('HSET', KEYS[1], 'status', "
    "'installing')\n" LUA_TENANT_GEN_BUMP(
        "KEYS[1]") "end\n"
                   "redis.call('HSETNX', KEYS[1], 'authorized_at', ARGV[4])\n"
                   "redis.call('HSET', KEYS[1], 'pcode', ARGV[2], 'corp_name', "
                   "ARGV[3],"
                   " 'updated_at', ARGV[4], 'event_ts', ARGV[1], 'suite_id', "
                   "ARGV[7],"
                   " 'corpid', ARGV[8])\n"
                   "return 1\n";

/* Counts an install whose exchange was lost, unless
 * the exchange is still pending.
 * KEYS: lost counter, pending exchange. ARGV: now. Returns 1 when
 * counted, else 0. */
static const char tenant_lost_count_lua[] =
    "if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end\n"
    "redis.call('HINCRBY', KEYS[1], 'count', 1)\n"
    "redis.call('HSET', KEYS[1], 'last_at', ARGV[1])\n"
    "return 1\n";

/* Applies one change_contact to the directory. A tag's
 * value is written by hand, like dir_tag_value writes it: cjson encodes an
 * empty list as an object, which the visible range refuses.
 * KEYS: parties, users, tags, tenant. ARGV: change type, userid, new
 * userid, user's departments, party id, party's parent, tag id, users
 * added, users removed, parties added, parties removed, now. Returns
 * {kind, generation before, generation after, then for kind 1 a userid
 * and its stored departments ("": not in the directory) per member
 * written}: kind 0 for an unknown type (nothing written), 1 when only
 * members changed, 2 when a department or a tag did. So a reader holding
 * the tenant at the generation before can apply the same change instead
 * of reading the directory again (record_tenant_apply). */
static const char contact_apply_lua[] =
    "local t = ARGV[1]\n"
    "local g0 = redis.call('HGET', KEYS[4], '" KEYS_TENANT_GEN "') or ''\n"
    "local kind, out = 1, {}\n"
    "if t == 'create_user' or t == 'update_user' then\n"
    "  local uid = ARGV[2]\n"
    "  if ARGV[3] ~= '' and ARGV[3] ~= uid then\n"
    "    local old = redis.call('HGET', KEYS[2], uid)\n"
    "    redis.call('HDEL', KEYS[2], uid)\n"
    "    out = {uid, ''}\n"
    "    uid = ARGV[3]\n"
    "    if old and ARGV[4] == '' then redis.call('HSET', KEYS[2], uid, old)"
    " end\n"
    "  end\n"
    "  if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], uid, ARGV[4]) end\n"
    "  table.insert(out, uid)\n"
    "  table.insert(out, redis.call('HGET', KEYS[2], uid) or '')\n"
    "elseif t == 'delete_user' then\n"
    "  redis.call('HDEL', KEYS[2], ARGV[2])\n"
    "  out = {ARGV[2], ''}\n"
    "elseif t == 'create_party' or t == 'update_party' then\n"
    "  kind = 2\n"
    "  if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], ARGV[5], ARGV[6])\n"
    "  elseif t == 'create_party' then"
    " redis.call('HSET', KEYS[1], ARGV[5], '1') end\n"
    "elseif t == 'delete_party' then\n"
    "  kind = 2\n"
    "  redis.call('HDEL', KEYS[1], ARGV[5])\n"
    "elseif t == 'update_tag' then\n"
    "  kind = 2\n"
    "  local cur = redis.call('HGET', KEYS[3], ARGV[7])\n"
    "  local v = {users = {}, parties = {}}\n"
    "  if cur then v = cjson.decode(cur) end\n"
    "  local function edit(list, add, del, quote)\n"
    "    local gone, seen, res = {}, {}, {}\n"
    "    for x in string.gmatch(del, '[^,]+') do gone[x] = true end\n"
    "    local function put(x)\n"
    "      if not gone[x] and not seen[x] then\n"
    "        seen[x] = true\n"
    "        table.insert(res, quote and cjson.encode(x) or x)\n"
    "      end\n"
    "    end\n"
    "    if type(list) == 'table' then\n"
    "      for _, x in ipairs(list) do put(tostring(x)) end\n"
    "    end\n"
    "    for x in string.gmatch(add, '[^,]+') do put(x) end\n"
    "    return '[' .. table.concat(res, ',') .. ']'\n"
    "  end\n"
    "  redis.call('HSET', KEYS[3], ARGV[7], '{\"users\":' ..\n"
    "    edit(v.users, ARGV[8], ARGV[9], true) .. ',\"parties\":' ..\n"
    "    edit(v.parties, ARGV[10], ARGV[11], false) .. '}')\n"
    "else\n"
    "  return {0, g0, g0}\n"
    "end\n"
    "redis.call('HSET', KEYS[4], 'updated_at', ARGV[12])\n" LUA_TENANT_GEN_BUMP(
        "KEYS[4]") "local res = {kind, g0,"
                   " redis.call('HGET', KEYS[4], '" KEYS_TENANT_GEN "')}\n"
                   "for _, x in ipairs(out) do table.insert(res, x) end\n"
                   "return res\n";

/* Stores the admin list only while the tenant
 * exists, so a purge is never undone.
 * KEYS: tenant. ARGV: admins JSON, now. Returns -1 without a tenant,
 * else 1. */
static const char tenant_admins_store_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end\n"
    "redis.call('HSET', KEYS[1], 'admins', ARGV[1], 'admins_at', ARGV[2])\n"
    "return 1\n";

/*
 * The purge of a tenant, shared by the workers (cancel_auth) and brokerctl
 * (tenant purge) so the two cannot drift apart (purge.h).
 */

/* Sets the cancel marker unless a newer event installed
 * the tenant (one slot: keys_gone tags the marker into the tenant's).
 * KEYS: cancel marker, tenant. ARGV: event ts, now, suite. Returns -3
 * when the tenant was installed by an event newer than ts, else 1. */
static const char purge_mark_gone_lua[] =
    "local e = redis.call('HGET', KEYS[2], 'event_ts')\n"
    "if e and tonumber(e) > tonumber(ARGV[1]) then return -3 end\n"
    "local g = redis.call('HGET', KEYS[1], 'ts')\n"
    "if not g or tonumber(g) < tonumber(ARGV[1]) then\n"
    "  redis.call('HSET', KEYS[1], 'ts', ARGV[1])\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'suite_id', ARGV[3], 'purged_at', ARGV[2])\n"
    "return 1\n";

/* Unlinks the tenant's broker tokens, which are
 * named by hash outside its keys (so not declared in KEYS).
 * KEYS: the tenant's token index. ARGV: key prefix. Returns the count
 * removed. */
static const char purge_broker_tokens_lua[] =
    "local n = 0\n"
    "for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  n = n + redis.call('UNLINK', ARGV[1] .. 'btok:{' .. h .. '}')\n"
    "end\n"
    "return n\n";

/* Ends a purge: keeps the report. The caller has removed the index
 * entry before (its own step in the index's slot): a purge interrupted
 * between the two has no report yet and is run again.
 * KEYS: cancel marker. ARGV: report JSON. Returns 1. */
static const char purge_report_lua[] =
    "redis.call('HSET', KEYS[1], 'report', ARGV[1])\n"
    "return 1\n";

/*---- The service API (proxy.c) ----*/

/* Returns the current token of (service, corp), or
 * (ARGV[7] = 1) makes the fresh nonce current: the token itself is never
 * stored, only derived from the stored nonce. One slot, the tenant's: the
 * token's own record (btok:{hash}, its own slot) and the service's token
 * index are written by the caller between a first call that found no
 * current token (ARGV[7] = 0, writes nothing) and the second, so a
 * current nonce always has its record; if another caller minted
 * meanwhile, the second call returns that token and the caller's record
 * expires unused.
 * KEYS: current token, tenant's token index. ARGV: now, nonce, ttl, reuse
 * margin, service gen, token hash, write. Returns {nonce, iat, exp}, or
 * {} when ARGV[7] = 0 and there is no current token to reuse. */
static const char service_token_mint_lua[] =
    "local c = redis.call('HMGET', KEYS[1], 'nonce', 'iat', 'exp', 'gen')\n"
    "local now = tonumber(ARGV[1])\n"
    "if c[1] and c[4] == ARGV[5] and tonumber(c[3]) - now >"
    " tonumber(ARGV[4]) then\n"
    "  return {c[1], c[2], c[3]}\n"
    "end\n"
    "if ARGV[7] ~= '1' then return {} end\n"
    "local exp = now + tonumber(ARGV[3])\n"
    "redis.call('HSET', KEYS[1], 'nonce', ARGV[2], 'iat', ARGV[1],"
    " 'exp', exp, 'gen', ARGV[5])\n"
    "redis.call('EXPIREAT', KEYS[1], exp)\n"
    "redis.call('SADD', KEYS[2], ARGV[6])\n"
    "return {ARGV[2], ARGV[1], tostring(exp)}\n";

/* Reads and deletes a broker OAuth code (once).
 * KEYS: code. Returns the record or nil. */
static const char oauth_code_take_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v then redis.call('DEL', KEYS[1]) end\n"
    "return v\n";

/* Reads a member's user_ticket and its fields.
 * KEYS: ticket, detail. ARGV: now. Returns {0}: never issued; {1}:
 * expired; {2, sealed fields, userid}. */
static const char member_ticket_read_lua[] =
    "local t = redis.call('HMGET', KEYS[1], 'exp', 'userid')\n"
    "if not t[1] then return {0} end\n"
    "if tonumber(t[1]) <= tonumber(ARGV[1]) then return {1} end\n"
    "local d = redis.call('GET', KEYS[2])\n"
    "if not d then return {1} end\n"
    "return {2, d, t[2] or ''}\n";

/*---- The browser flows (browser.c) ----*/

/* Saves an OAuth state. Live states are counted per
 * client address (KEYS[3]) and per suite (KEYS[2], a bound on memory).
 * KEYS: state, suite's live states, address's live states. ARGV: now,
 * ttl, suite cap, state id, address cap, field/value pairs. Returns -1
 * when the address holds its share, 0 when the suite is full, 1 when
 * saved. The state names its address's set so that taking it frees the
 * place. */
static const char browser_state_save_lua[] =
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])\n"
    "if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[5]) then return -1 end\n"
    "if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV, 6))\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
    "local exp = tonumber(ARGV[1]) + tonumber(ARGV[2])\n"
    "redis.call('ZADD', KEYS[2], exp, ARGV[4])\n"
    "redis.call('ZADD', KEYS[3], exp, ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[3], ARGV[2])\n"
    "return 1\n";

/* Takes an OAuth state once: read and delete
 * together, and free its places. The address's set is named by the state
 * (same hash tag as KEYS, not declared). With a budget (ARGV[3] set), a
 * client that has spent it gets -1 and the state is left alone; an
 * install state taken spends one.
 * KEYS: state, suite's live states, install budget counter. ARGV: state
 * id, address set prefix, budget cap ('' = none), budget window (s).
 * Returns -1 or the state's HGETALL (empty when unknown). */
static const char browser_state_take_lua[] =
    "if ARGV[3] ~= '' and tonumber(redis.call('GET', KEYS[3]) or '0') >="
    " tonumber(ARGV[3]) then\n"
    "  return -1\n"
    "end\n"
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "for i = 1, #h - 1, 2 do\n"
    "  if h[i] == 'client' and string.match(h[i + 1], '^%x+$') then\n"
    "    redis.call('ZREM', ARGV[2] .. h[i + 1], ARGV[1])\n"
    "  end\n"
    "  if ARGV[3] ~= '' and h[i] == 'flow' and h[i + 1] == 'install' and\n"
    "     redis.call('INCR', KEYS[3]) == 1 then\n"
    "    redis.call('EXPIRE', KEYS[3], ARGV[4])\n"
    "  end\n"
    "end\n"
    "return h\n";

/* The AuthCode joins the durable path of create_auth:
 * sealed under the suite's key in its event stream, deduplicated like
 * callbacks. KEYS: seen marker, events stream. ARGV: marker ttl (s),
 * field/value pairs. Returns 0 when seen before, else 1. */
static const char authcode_enqueue_lua[] =
    "if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then\n"
    "  return 0\n"
    "end\n"
    "redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))\n"
    "return 1\n";

/* Stores a member's identity (and consented fields)
 * under a broker code while the tenant is active.
 * KEYS: code, ticket, detail, tenant. ARGV: sealed record, code ttl,
 * user_ticket ('' = none), sealed fields, userid, ticket exp, ticket ttl,
 * detail ttl. Returns 0 when the tenant is not active, else 1. */
static const char member_login_store_lua[] =
    "if redis.call('HGET', KEYS[4], 'status') ~= 'active' then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n"
    "if ARGV[3] ~= '' then\n"
    "  redis.call('HSET', KEYS[2], 'userid', ARGV[5], 'exp', ARGV[6])\n"
    "  redis.call('EXPIRE', KEYS[2], ARGV[7])\n"
    "  if ARGV[4] ~= '' then\n"
    "    redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[8])\n"
    "  end\n"
    "end\n"
    "return 1\n";

/*---- brokerctl (cli/), which simply EVALs ----*/

/* Replaces a wrapped key only if it still holds what was read,
 * keeping its expiry (Redis before 6.0 has no KEEPTTL).
 * KEYS: key. ARGV: value read, new value. Returns 1 when replaced, else
 * 0. */
static const char key_swap_lua[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "local ttl = redis.call('PTTL', KEYS[1])\n"
    "redis.call('SET', KEYS[1], ARGV[2])\n"
    "if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end\n"
    "return 1\n";

/* Writes a new service's record, the first of three steps in three slots
 * (brokerctl service add): the record under its fresh random id, which
 * nothing names yet; then SETNX of the name (taken: the record is
 * deleted); then the id into the service index. A step that fails leaves
 * at worst an unnamed record or a named service missing from `service
 * list` — never a name pointing at nothing.
 * KEYS: service. ARGV: id, name, salt, hash, scopes, suite, corps,
 * parties, now, capabilities, and optionally the write rate per minute
 * ("": none). Returns 0 when the id exists, else 1. */
static const char service_add_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'name', ARGV[2], 'salt', ARGV[3],"
    " 'hash', ARGV[4], 'scopes', ARGV[5], 'suite', ARGV[6], 'corps',"
    " ARGV[7], 'parties', ARGV[8], 'gen', '0', 'created_at', ARGV[9],"
    " 'updated_at', ARGV[9], 'capabilities', ARGV[10])\n"
    "if ARGV[11] and ARGV[11] ~= '' then\n"
    "  redis.call('HSET', KEYS[1], 'write_rate', ARGV[11])\n"
    "end\n"
    "return 1\n";

/* Ends every token of a service; with ARGV[2] set, installs
 * a new secret (rotate), else marks the service revoked, and says so. The
 * channel is no key, so it comes in ARGV.
 * KEYS: service, service's token index. ARGV: now, salt ('' = revoke),
 * hash, key prefix, message, change channel. Returns -1 without a
 * service, -2 when revoked already, else 1. */
static const char service_end_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end\n"
    "if redis.call('HEXISTS', KEYS[1], 'revoked_at') == 1 then return -2 end\n"
    "for _, h in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
    "  redis.call('DEL', ARGV[4] .. 'btok:{' .. h .. '}')\n"
    "end\n"
    "redis.call('DEL', KEYS[2])\n"
    "if ARGV[2] ~= '' then\n"
    "  redis.call('HSET', KEYS[1], 'salt', ARGV[2], 'hash', ARGV[3],"
    " 'updated_at', ARGV[1])\n"
    "  redis.call('HINCRBY', KEYS[1], 'gen', 1)\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], 'revoked_at', ARGV[1],"
    " 'updated_at', ARGV[1])\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[6], ARGV[5])\n"
    "return 1\n";

/* Whether the tenant's record or data key is left (the global index
 * entry is asked apart: another slot).
 * KEYS: tenant, data key. Returns the count of what exists. */
static const char tenant_exists_lua[] =
    "return redis.call('EXISTS', KEYS[1], KEYS[2])\n";

/*---- Event delivery to services (delivery*.c, brokerctl) ----*/

/*
 * Every key of these is a service's (delivery_def.h), under its hash
 * tag. A tenant is named in them by the member "<suite>:<corp>". Leases,
 * claims and backoffs of a service's queues run the evq_* scripts above
 * with the service's keys.
 */

/* Stores a service's delivery setting.
 * KEYS: service, delivery. ARGV: op ('set', 'rotate', 'off'), url,
 * events, suite, sealed token, sealed key (both '' = none offered), now
 * ms, now s. 'set' keeps the stored token and key, or stores those
 * offered when there are none; 'rotate' stores those offered; a setting
 * turned on counts events from now. Returns -1 (no service), -2
 * (revoked), -3 (no delivery to rotate or stop), -4 (nothing offered for
 * a key that must be stored), 1 (done, the key kept) or 2 (done, the key
 * offered stored). */
static const char dlv_set_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end\n"
    "if redis.call('HEXISTS', KEYS[1], 'revoked_at') == 1 then return -2 "
    "end\n"
    "local has = redis.call('HEXISTS', KEYS[2], 'token') == 1\n"
    "if ARGV[1] == 'off' then\n"
    "  if not has then return -3 end\n"
    "  redis.call('HSET', KEYS[2], 'on', '0', 'updated_at', ARGV[8])\n"
    "  return 1\n"
    "end\n"
    "if ARGV[1] == 'rotate' and not has then return -3 end\n"
    "local store = ARGV[1] == 'rotate' or not has\n"
    "if store and ARGV[5] == '' then return -4 end\n"
    "if ARGV[1] == 'set' then\n"
    "  if redis.call('HGET', KEYS[2], 'on') ~= '1' then\n"
    "    redis.call('HSET', KEYS[2], 'since_ms', ARGV[7], 'on', '1')\n"
    "  end\n"
    "  redis.call('HSET', KEYS[2], 'url', ARGV[2], 'events', ARGV[3],"
    " 'suite', ARGV[4])\n"
    "end\n"
    "if store then\n"
    "  redis.call('HSET', KEYS[2], 'token', ARGV[5], 'key', ARGV[6])\n"
    "  redis.call('HINCRBY', KEYS[2], 'gen', 1)\n"
    "end\n"
    "redis.call('HSET', KEYS[2], 'updated_at', ARGV[8])\n"
    "if store then return 2 end\n"
    "return 1\n";

/* Reads a service and its delivery setting in one step.
 * KEYS: service, delivery. Returns {HGETALL service, HGETALL delivery}. */
static const char dlv_read_lua[] = "return {redis.call('HGETALL', KEYS[1]),"
                                   " redis.call('HGETALL', KEYS[2])}\n";

/* Queues one event for a service, once, if its delivery is on and was
 * stored before the event was acknowledged. An entry with a field 'prio'
 * (a WelcomeCode) is also noted in the attempts hash as 'p:<entry id>' ->
 * acknowledged at, for dlv_head to take first, and makes an idle queue
 * (not leased: none or waiting out a backoff) ready now.
 * KEYS: delivery, seen marker, queue, ready zset, seq hash, tenants set,
 * queue attempts, lease hash.
 * ARGV: marker ttl (s), member, acknowledged at (ms), field/value pairs.
 * Returns -1 (delivery off or newer than the event), 0 (queued before) or
 * 1. */
static const char dlv_push_lua[] =
    LUA_NOW "if redis.call('HGET', KEYS[1], 'on') ~= '1' or"
            " tonumber(redis.call('HGET', KEYS[1], 'since_ms') or 'x') == nil"
            " or tonumber(redis.call('HGET', KEYS[1], 'since_ms')) >"
            " tonumber(ARGV[3]) then return -1 end\n"
            "if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then"
            " return 0 end\n"
            "local id = redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4))\n"
            "redis.call('HINCRBY', KEYS[5], ARGV[2], 1)\n"
            "redis.call('ZADD', KEYS[4], 'NX', ms(now), ARGV[2])\n"
            "redis.call('SADD', KEYS[6], ARGV[2])\n"
            "for i = 4, #ARGV - 1, 2 do\n"
            "  if ARGV[i] == 'prio' then\n"
            "    redis.call('HSET', KEYS[7], 'p:' .. id, ARGV[3])\n"
            "    if redis.call('HEXISTS', KEYS[8], ARGV[2]) == 0 then\n"
            "      redis.call('ZADD', KEYS[4], ms(now), ARGV[2])\n"
            "    end\n"
            "  end\n"
            "end\n"
            "return 1\n";

/* Acknowledges the entry just handled (when one is named) and says which
 * entries of a (service, tenant) queue are sent next: the oldest priority
 * entry still queued and inside its window, else the queue from its head.
 * Priority notes of entries gone or past their window are dropped (such
 * an entry is then sent in its place in the queue). When the head is the
 * entry the caller holds next, nothing is read: the caller goes on with
 * the entries it holds (entries leave a queue only through its lease
 * holder or all at once, so the head names what follows it).
 * KEYS: queue, queue attempts. ARGV: window (ms), entries read at most,
 * entry id to acknowledge ('' none), entry id held next ('' none).
 * Returns {0} (go on with the entries held) or {1, entries} as XRANGE
 * returns them: one priority entry, or up to ARGV[2] from the head, none
 * when the queue is empty. */
static const char dlv_head_lua[] = LUA_NOW
    "if ARGV[3] ~= '' then\n"
    "  redis.call('XDEL', KEYS[1], ARGV[3])\n"
    "  redis.call('HDEL', KEYS[2], ARGV[3], 'p:' .. ARGV[3])\n"
    "end\n"
    "local function older(a, b)\n"
    "  local am, as = string.match(a, '^(%d+)-(%d+)$')\n"
    "  local bm, bs = string.match(b, '^(%d+)-(%d+)$')\n"
    "  if #am ~= #bm then return #am < #bm end\n"
    "  if am ~= bm then return am < bm end\n"
    "  return tonumber(as) < tonumber(bs)\n"
    "end\n"
    "local h = redis.call('HGETALL', KEYS[2])\n"
    "local best\n"
    "for i = 1, #h - 1, 2 do\n"
    "  if string.sub(h[i], 1, 2) == 'p:' then\n"
    "    local id = string.sub(h[i], 3)\n"
    "    local ok = string.match(id, '^%d+-%d+$') and"
    " tonumber(h[i + 1]) and"
    " now - tonumber(h[i + 1]) <= tonumber(ARGV[1]) and"
    " #redis.call('XRANGE', KEYS[1], id, id) == 1\n"
    "    if not ok then redis.call('HDEL', KEYS[2], h[i])\n"
    "    elseif not best or older(id, best) then best = id end\n"
    "  end\n"
    "end\n"
    "if best then return {1, redis.call('XRANGE', KEYS[1], best, best)} end\n"
    "local n = math.max(1, math.min(tonumber(ARGV[2]) or 1, 100))\n"
    "if ARGV[4] ~= '' then\n"
    "  local e = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)\n"
    "  if e[1] and e[1][1] == ARGV[4] then return {0} end\n"
    "end\n"
    "return {1, redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n)}\n";

/* Ends my lease of a (service, tenant) queue; an emptied queue whose seq
 * is unchanged is dropped (and the tenant forgotten when it has no dead
 * letters either), else it is ready again.
 * KEYS: ready zset, lease hash, seq hash, queue, queue attempts, dead
 * stream, tenants set. ARGV: member, seq seen at claim, me. Returns 0
 * (not mine), 1 (dropped) or 2 (ready again). */
static const char dlv_release_lua[] = LUA_NOW
    "if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[3] then return 0 end\n"
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "local s = redis.call('HGET', KEYS[3], ARGV[1]) or '0'\n"
    "if s == ARGV[2] and redis.call('XLEN', KEYS[4]) == 0 then\n"
    "  redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "  redis.call('HDEL', KEYS[3], ARGV[1])\n"
    "  redis.call('DEL', KEYS[4], KEYS[5])\n"
    "  if redis.call('EXISTS', KEYS[6]) == 0 then\n"
    "    redis.call('SREM', KEYS[7], ARGV[1])\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    "redis.call('ZADD', KEYS[1], ms(now), ARGV[1])\n"
    "return 2\n";

/* Moves the head of a (service, tenant) queue to its dead letters.
 * KEYS: queue, queue attempts, dead stream. ARGV: entry id, reason,
 * attempts. Returns 1. */
static const char dlv_dead_lua[] =
    "local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])\n"
    "if e[1] then\n"
    "  redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'id',"
    " ARGV[1], 'reason', ARGV[2], 'attempts', ARGV[3], unpack(e[1][2]))\n"
    "end\n"
    "redis.call('XDEL', KEYS[1], ARGV[1])\n"
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "return 1\n";

/* Queues a tenant's dead letters again, after what is queued, their age
 * counted from now.
 * KEYS: dead stream, queue, ready zset, seq hash, tenants set. ARGV:
 * member, now (ms). Returns the number queued. */
static const char dlv_retry_lua[] =
    LUA_NOW "local d = redis.call('XRANGE', KEYS[1], '-', '+')\n"
            "for _, e in ipairs(d) do\n"
            "  local f, out = e[2], {}\n"
            "  for i = 1, #f, 2 do\n"
            "    local k = f[i]\n"
            "    if k ~= 'id' and k ~= 'reason' and k ~= 'attempts' then\n"
            "      if k == 'at' then f[i + 1] = ARGV[2] end\n"
            "      out[#out + 1] = k\n"
            "      out[#out + 1] = f[i + 1]\n"
            "    end\n"
            "  end\n"
            "  redis.call('XADD', KEYS[2], '*', unpack(out))\n"
            "  redis.call('HINCRBY', KEYS[4], ARGV[1], 1)\n"
            "end\n"
            "redis.call('DEL', KEYS[1])\n"
            "if #d > 0 then\n"
            "  redis.call('ZADD', KEYS[3], 'NX', ms(now), ARGV[1])\n"
            "  redis.call('SADD', KEYS[5], ARGV[1])\n"
            "end\n"
            "return #d\n";

/* Removes a tenant's pending deliveries and dead letters for a service
 * (a purge).
 * KEYS: queue, queue attempts, dead stream, ready zset, lease hash, seq
 * hash, tenants set. ARGV: member. Returns the entries removed. */
static const char dlv_purge_lua[] =
    "local n = redis.call('XLEN', KEYS[1]) + redis.call('XLEN', KEYS[3])\n"
    "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])\n"
    "redis.call('ZREM', KEYS[4], ARGV[1])\n"
    "redis.call('HDEL', KEYS[5], ARGV[1])\n"
    "redis.call('HDEL', KEYS[6], ARGV[1])\n"
    "redis.call('SREM', KEYS[7], ARGV[1])\n"
    "return n\n";

/*---- Writes (write_store.c) ----*/

/* Adds follow users to customers in a tenant's customer index, each
 * customer's value being its follow users' userids joined by spaces (at
 * most 4096 bytes: a follow user past it is not added, so that customer
 * is out of range for that member's services — closed, not open).
 * KEYS: the index hash. ARGV: pairs of external_userid, userid. Returns
 * the number of pairs added. */
static const char custidx_add_lua[] =
    "local n = 0\n"
    "for i = 1, #ARGV - 1, 2 do\n"
    "  local c, u = ARGV[i], ARGV[i + 1]\n"
    "  local v = redis.call('HGET', KEYS[1], c)\n"
    "  if not v then\n"
    "    redis.call('HSET', KEYS[1], c, u)\n"
    "    n = n + 1\n"
    "  else\n"
    "    local found = false\n"
    "    for w in string.gmatch(v, '%S+') do\n"
    "      if w == u then found = true break end\n"
    "    end\n"
    "    if not found and #v + #u + 1 <= 4096 then\n"
    "      redis.call('HSET', KEYS[1], c, v .. ' ' .. u)\n"
    "      n = n + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return n\n";

/* Removes follow users from customers (a userid '' removes the customer).
 * KEYS: the index hash. ARGV: pairs of external_userid, userid. Returns
 * the number of pairs that changed something. */
static const char custidx_del_lua[] =
    "local n = 0\n"
    "for i = 1, #ARGV - 1, 2 do\n"
    "  local c, u = ARGV[i], ARGV[i + 1]\n"
    "  local v = redis.call('HGET', KEYS[1], c)\n"
    "  if v then\n"
    "    local keep = {}\n"
    "    for w in string.gmatch(v, '%S+') do\n"
    "      if u ~= '' and w ~= u then keep[#keep + 1] = w end\n"
    "    end\n"
    "    if #keep == 0 then redis.call('HDEL', KEYS[1], c)\n"
    "    else redis.call('HSET', KEYS[1], c, table.concat(keep, ' ')) end\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

/* Records which service a WelcomeCode (by its hash) was delivered to.
 * KEYS: the code's key. ARGV: service id, WeCom's push time (ms), time to
 * live (ms). Returns 1. */
static const char welcome_record_lua[] =
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], 'svc', ARGV[1], 'at', ARGV[2])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "return 1\n";

/* Takes a WelcomeCode for a service, once. KEYS: the code's key. ARGV:
 * service id, now (ms), window (ms). Returns 0 when taken now, 41050
 * when unknown, another service's or past the window, 41051 when used. */
static const char welcome_take_lua[] =
    "local v = redis.call('HMGET', KEYS[1], 'svc', 'at', 'used')\n"
    "if not v[1] or v[1] ~= ARGV[1] or not v[2] then return 41050 end\n"
    "if tonumber(ARGV[2]) - tonumber(v[2]) > tonumber(ARGV[3]) then\n"
    "  return 41050\n"
    "end\n"
    "if v[3] then return 41051 end\n"
    "redis.call('HSET', KEYS[1], 'used', ARGV[2])\n"
    "return 0\n";

/* Starts an idempotent write. KEYS: the key's record. ARGV: SHA-256 of
 * the body, time to live while pending (s: short, so a write whose broker
 * died does not hold its key for a day). Returns {'new'} (recorded as pending),
 * {'conflict'} (another body), {'pending'} (the same body is under way)
 * or {'done', reply}. */
static const char idem_begin_lua[] =
    "local v = redis.call('HMGET', KEYS[1], 'sha', 'reply')\n"
    "if not v[1] then\n"
    "  redis.call('HSET', KEYS[1], 'sha', ARGV[1])\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
    "  return {'new'}\n"
    "end\n"
    "if v[1] ~= ARGV[1] then return {'conflict'} end\n"
    "if not v[2] then return {'pending'} end\n"
    "return {'done', v[2]}\n";

/* Ends an idempotent write: stores its reply for ARGV[3] seconds, or with
 * ARGV[2] '' forgets the key (the write may be tried again). KEYS: the
 * key's record. ARGV: SHA-256 of the body, reply, time to live (s).
 * Returns 1 when it was the body's. */
static const char idem_finish_lua[] =
    "if redis.call('HGET', KEYS[1], 'sha') ~= ARGV[1] then return 0 end\n"
    "if ARGV[2] == '' then redis.call('DEL', KEYS[1])\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], 'reply', ARGV[2])\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
    "end\n"
    "return 1\n";

/* Counts a service's write in its current minute. KEYS: the minute's
 * counter. ARGV: the limit. Returns 1 when within it, else 0 (and the
 * write is not counted). */
static const char write_rate_lua[] =
    "local n = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if n >= tonumber(ARGV[1]) then return 0 end\n"
    "redis.call('INCR', KEYS[1])\n"
    "redis.call('EXPIRE', KEYS[1], 120)\n"
    "return 1\n";

static const struct {
    const char *name;
    const char *text;
} scripts[SCRIPT_COUNT] = {
    [SCRIPT_EVQ_PUSH] = {"evq_push", evq_push_lua},
    [SCRIPT_EVQ_HANDOVER] = {"evq_handover", evq_handover_lua},
    [SCRIPT_EVQ_CLAIM] = {"evq_claim", evq_claim_lua},
    [SCRIPT_EVQ_RECLAIM] = {"evq_reclaim", evq_reclaim_lua},
    [SCRIPT_EVQ_REFRESH] = {"evq_refresh", evq_refresh_lua},
    [SCRIPT_EVQ_RELEASE] = {"evq_release", evq_release_lua},
    [SCRIPT_EVQ_BACKOFF] = {"evq_backoff", evq_backoff_lua},
    [SCRIPT_EVQ_TENANT_ACK] = {"evq_tenant_ack", evq_tenant_ack_lua},
    [SCRIPT_EVQ_TENANT_DEAD] = {"evq_tenant_dead", evq_tenant_dead_lua},
    [SCRIPT_STREAM_ACK] = {"stream_ack", stream_ack_lua},
    [SCRIPT_STREAM_DEAD] = {"stream_dead", stream_dead_lua},
    [SCRIPT_SUITE_TICKET_STORE] = {"suite_ticket_store",
                                   suite_ticket_store_lua},
    [SCRIPT_ACCESS_TOKEN_STORE] = {"access_token_store",
                                   access_token_store_lua},
    [SCRIPT_TOKEN_LOCK_RELEASE] = {"token_lock_release",
                                   token_lock_release_lua},
    [SCRIPT_ACCESS_TOKEN_REJECT] = {"access_token_reject",
                                    access_token_reject_lua},
    [SCRIPT_BUDGET_LEASE] = {"budget_lease", budget_lease_lua},
    [SCRIPT_BUDGET_PAUSE] = {"budget_pause", budget_pause_lua},
    [SCRIPT_DIRECTORY_ACTIVATE] = {"directory_activate",
                                   directory_activate_lua},
    [SCRIPT_TENANT_REINSTALL_MARK] = {"tenant_reinstall_mark",
                                      tenant_reinstall_mark_lua},
    [SCRIPT_TENANT_STATE_READ] = {"tenant_state_read", tenant_state_read_lua},
    [SCRIPT_TENANT_INSTALL] = {"tenant_install", tenant_install_lua},
    [SCRIPT_TENANT_LOST_COUNT] = {"tenant_lost_count", tenant_lost_count_lua},
    [SCRIPT_CONTACT_APPLY] = {"contact_apply", contact_apply_lua},
    [SCRIPT_TENANT_ADMINS_STORE] = {"tenant_admins_store",
                                    tenant_admins_store_lua},
    [SCRIPT_PURGE_MARK_GONE] = {"purge_mark_gone", purge_mark_gone_lua},
    [SCRIPT_PURGE_BROKER_TOKENS] = {"purge_broker_tokens",
                                    purge_broker_tokens_lua},
    [SCRIPT_PURGE_REPORT] = {"purge_report", purge_report_lua},
    [SCRIPT_SERVICE_TOKEN_MINT] = {"service_token_mint",
                                   service_token_mint_lua},
    [SCRIPT_OAUTH_CODE_TAKE] = {"oauth_code_take", oauth_code_take_lua},
    [SCRIPT_MEMBER_TICKET_READ] = {"member_ticket_read",
                                   member_ticket_read_lua},
    [SCRIPT_BROWSER_STATE_SAVE] = {"browser_state_save",
                                   browser_state_save_lua},
    [SCRIPT_BROWSER_STATE_TAKE] = {"browser_state_take",
                                   browser_state_take_lua},
    [SCRIPT_AUTHCODE_ENQUEUE] = {"authcode_enqueue", authcode_enqueue_lua},
    [SCRIPT_MEMBER_LOGIN_STORE] = {"member_login_store",
                                   member_login_store_lua},
    [SCRIPT_KEY_SWAP] = {"key_swap", key_swap_lua},
    [SCRIPT_SERVICE_ADD] = {"service_add", service_add_lua},
    [SCRIPT_SERVICE_END] = {"service_end", service_end_lua},
    [SCRIPT_TENANT_EXISTS] = {"tenant_exists", tenant_exists_lua},
    [SCRIPT_DLV_SET] = {"dlv_set", dlv_set_lua},
    [SCRIPT_DLV_READ] = {"dlv_read", dlv_read_lua},
    [SCRIPT_DLV_PUSH] = {"dlv_push", dlv_push_lua},
    [SCRIPT_DLV_HEAD] = {"dlv_head", dlv_head_lua},
    [SCRIPT_DLV_RELEASE] = {"dlv_release", dlv_release_lua},
    [SCRIPT_DLV_DEAD] = {"dlv_dead", dlv_dead_lua},
    [SCRIPT_DLV_RETRY] = {"dlv_retry", dlv_retry_lua},
    [SCRIPT_DLV_PURGE] = {"dlv_purge", dlv_purge_lua},
    [SCRIPT_CUSTIDX_ADD] = {"custidx_add", custidx_add_lua},
    [SCRIPT_CUSTIDX_DEL] = {"custidx_del", custidx_del_lua},
    [SCRIPT_WELCOME_RECORD] = {"welcome_record", welcome_record_lua},
    [SCRIPT_WELCOME_TAKE] = {"welcome_take", welcome_take_lua},
    [SCRIPT_IDEM_BEGIN] = {"idem_begin", idem_begin_lua},
    [SCRIPT_IDEM_FINISH] = {"idem_finish", idem_finish_lua},
    [SCRIPT_WRITE_RATE] = {"write_rate", write_rate_lua},
};

const char *
scripts_text(enum script_id id)
{
    return (unsigned)id < SCRIPT_COUNT ? scripts[id].text : NULL;
}

const char *
scripts_name(enum script_id id)
{
    return (unsigned)id < SCRIPT_COUNT ? scripts[id].name : NULL;
}

/* The digest Redis gives the script (SCRIPT LOAD, EVALSHA). Returns
 * BRK_ERR_CRYPTO when OpenSSL cannot compute it. */
enum brk_err
scripts_sha1(const char *text, size_t len, char out[SCRIPTS_SHA1_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;

    if (EVP_Digest(text, len, md, &n, EVP_sha1(), NULL) != 1 ||
        n * 2 != SCRIPTS_SHA1_HEX)
        return BRK_ERR_CRYPTO;
    for (i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return BRK_OK;
}
