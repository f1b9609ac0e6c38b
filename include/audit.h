/*
 * The audit trail: every entry goes to the Redis stream <prefix>audit
 * (bounded by audit_max_len, trimmed by age elsewhere) and, with
 * audit_file set, is also appended to that file as one JSON line, which is
 * what keeps the trail for months (SPEC §7). A file that cannot be written
 * is logged, counted and reported (audit_file_ok) while the Redis trail
 * keeps every entry and requests go on being served. Field names and
 * values only, never a personal value: callers pass names and ids.
 */
#ifndef AUDIT_H
#define AUDIT_H

#include <stddef.h>

#include "broker.h"

struct event_base;
struct store;
struct audit;

#define AUDIT_MAX_FIELDS 24 /* name/value pairs per entry */
/*
 * A batch goes to Redis and the file at the end of the event-loop turn
 * that began it when the last batch went AUDIT_WINDOW_MS or more before;
 * under load, once that window since the last batch has passed (one
 * pipeline per window instead of one per turn: Redis's cost per entry is
 * mostly its cost per pipeline); at once when it holds AUDIT_BATCH_MAX
 * entries or AUDIT_BATCH_BYTES. Entries Redis does not take (away, or no
 * answer) are held, in order, and sent again every AUDIT_RETRY_MS, up to
 * AUDIT_HOLD_BYTES of them; an entry Redis refuses outright (a key of
 * another type, maxmemory) is not. So a crash of the broker loses the
 * entries of the last window (at most AUDIT_BATCH_MAX), those in flight
 * and those held; a lost Redis loses nothing until the hold is full.
 */
#define AUDIT_BATCH_MAX   128
#define AUDIT_BATCH_BYTES (256 * 1024)
#define AUDIT_WINDOW_MS   2
#define AUDIT_RETRY_MS    250
#define AUDIT_HOLD_BYTES  (16 * 1024 * 1024)

/* key_prefix and max_len as configured; path "" for no file. The file is
 * opened (created 0600) now. Entries are batched on base as above (NULL:
 * each entry is sent at once; what is held goes with the next). Owned:
 * audit_free, which writes what is still batched to the file but not to
 * Redis (the store may be gone by then: it is never touched; what is
 * batched or held counts as not written, and is logged). BRK_ERR_IO when the
 * file cannot be opened is not fatal: the result is still written to *out and
 * the file is tried again at the next audit_reopen. */
enum brk_err audit_new(struct event_base *base, struct store *st,
                       const char *key_prefix, long long max_len,
                       const char *path, struct audit **out) BRK_WUR;
void audit_free(struct audit *a);

/* Append one entry of nkv/2 name/value pairs ("type" among them) to the
 * batch (copied). Never fails the caller: a Redis or file failure is
 * logged and counted. req is a request id for the log, or NULL. */
void audit_append(struct audit *a, const char *req, const char *const *kv,
                  size_t nkv);

/* The batching window from now on (ms; 0: every batch at the end of
 * its loop turn, as when stopping). A batch already waiting is sent by
 * the new window's rule. NULL is a no-op. */
void audit_set_window(struct audit *a, long window_ms);

/* Close and open the file again (logrotate's SIGHUP), or switch to path
 * (NULL: the same). BRK_ERR_IO when it cannot be opened. */
enum brk_err audit_reopen(struct audit *a, const char *path) BRK_WUR;

/* Nonzero unless a file is configured and its last write or open failed. */
int audit_file_ok(const struct audit *a);

/* One entry as a JSON line {"at":N,"name":"value",...}\n into buf (len
 * bytes): "at" is the entry's own numeric "at" field when it has one, else
 * at_ms in seconds. The length, or 0 when it does not fit or a name
 * repeats. Pure. */
size_t audit_json_line(long long at_ms, const char *const *kv, size_t nkv,
                       char *buf, size_t len);

#endif /* AUDIT_H */
