/*
 * The body check of a write (SPEC §5b): a service's JSON body against the
 * endpoint's declared body tree (scope_map.h), before WeCom is called.
 * It refuses what WeCom must never see (an undeclared or repeated key,
 * a value of the wrong type, too long, too many items, not one of the
 * allowed values), lists every subject the body names at any depth for
 * the range and ownership checks, and re-serialises the body from the
 * declared keys only: that is what is forwarded. Pure: no I/O.
 */
#ifndef WRITE_CHECK_H
#define WRITE_CHECK_H

#include <stddef.h>

#include "broker.h"
#include "errcodes.h"
#include "scope_map.h"

/* Largest body accepted, in bytes (media/upload is not a JSON body). */
#define WRITE_BODY_MAX (64 * 1024)
/* Most subjects one body may name (add_msg_template: 10,000 customers). */
#define WRITE_SUBJECTS_MAX 20000
/* Most distinct key names recorded for the audit trail. */
#define WRITE_KEYS_MAX 128

struct write_subject {
    enum scope_subject kind;
    char *id; /* owned by the result; a department id in decimal */
};

/* What a body that passed holds. Owned: write_checked_free. */
struct write_checked {
    char *body; /* compact JSON of the declared keys: what is forwarded */
    size_t body_len;
    struct write_subject *subjects; /* in body order */
    size_t nsubjects;
    /* the body's key names, comma-separated in first-seen order, nested
     * ones dotted and array elements marked ("text.content",
     * "attachments[].msgtype"); never a value */
    char *keys;
};

/*
 * Check body (len bytes, not necessarily NUL-terminated) against root, the
 * endpoint's body object. Returns ERRCODE_OK with *out; else the errcode
 * the request is refused with and a one-line errmsg in msg (msglen bytes;
 * it names the key, never a value):
 *   ERRCODE_INVALID_PARAMETER (40035): an undeclared key, a key repeated
 *     in one object, a required key missing;
 *   ERRCODE_INVALID_VALUE (40058): not a JSON object, malformed, larger
 *     than WRITE_BODY_MAX, a value of another type than declared (null
 *     included), a string over max_len characters, an array over
 *     max_items, a value outside enum, more than WRITE_SUBJECTS_MAX
 *     subjects;
 *   ERRCODE_UNAVAILABLE: out of memory.
 * *out is written only on success.
 */
enum errcode write_check(const struct scope_body *root, const char *body,
                         size_t len, struct write_checked **out, char *msg,
                         size_t msglen) BRK_WUR;

void write_checked_free(struct write_checked *w);

/* Nonzero when the body held the key name (as in keys: "tag_filter",
 * "text.content"). */
int write_checked_has_key(const struct write_checked *w, const char *name);

#endif /* WRITE_CHECK_H */
