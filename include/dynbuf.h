/*
 * A growable byte buffer with a hard limit set at init. A failed append
 * frees the contents, so callers need only check the result. A buffer
 * may start in storage its caller provides (dynbuf_init_inline): bytes
 * that fit there cost no allocation.
 */
#ifndef DYNBUF_H
#define DYNBUF_H

#include <stddef.h>

#include "broker.h"

struct dynbuf {
    char *buf; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
    size_t limit; /* appends that would pass it fail with BRK_ERR_TOOBIG */
    int secret;   /* wipe on free and on growth */
    /* the caller's storage the buffer starts in (dynbuf_init_inline), or
     * NULL; borrowed, buf points there until the bytes outgrow it */
    char *first;
    size_t first_cap;
};

/* Initialise an empty buffer that may hold up to limit bytes. */
void dynbuf_init(struct dynbuf *d, size_t limit);
/* Same, for contents that must be wiped when released. */
void dynbuf_init_secret(struct dynbuf *d, size_t limit);
/*
 * Initialise an empty buffer that may hold up to limit bytes, starting in
 * first (first_cap bytes, at least 1; borrowed: it must stay valid as long
 * as d is used, e.g. an array beside d in the same struct or frame).
 * Beyond first_cap - 1 bytes the contents move to the heap. Such a buffer
 * is never NULL: freed or taken, it is first again, empty.
 */
void dynbuf_init_inline(struct dynbuf *d, char *first, size_t first_cap,
                        size_t limit);
/* Same, for contents that must be wiped when released (first included). */
void dynbuf_init_inline_secret(struct dynbuf *d, char *first, size_t first_cap,
                               size_t limit);
/* Release the contents; the buffer is empty and reusable. */
void dynbuf_free(struct dynbuf *d);
/* Append bytes; BRK_ERR_TOOBIG or BRK_ERR_NOMEM free the contents. */
enum brk_err dynbuf_add(struct dynbuf *d, const void *p, size_t n) BRK_WUR;
enum brk_err dynbuf_add_str(struct dynbuf *d, const char *s) BRK_WUR;
/* Room for n more bytes after len (and the NUL), for the caller to write
 * at buf + len and then set len and the NUL; errors as dynbuf_add. */
enum brk_err dynbuf_reserve(struct dynbuf *d, size_t n) BRK_WUR;
enum brk_err dynbuf_printf(struct dynbuf *d, const char *fmt, ...)
    BRK_PRINTF(2, 3) BRK_WUR;
/* Drop the contents but keep the allocation. */
void dynbuf_reset(struct dynbuf *d);
/*
 * Move the bytes out: *out is owned by the caller (brk_free), NUL-terminated,
 * *len (may be NULL) its length; the buffer is empty afterwards. Bytes in
 * a buffer's first storage are copied out (BRK_ERR_NOMEM frees them).
 */
enum brk_err dynbuf_take(struct dynbuf *d, char **out, size_t *len) BRK_WUR;

#endif /* DYNBUF_H */
