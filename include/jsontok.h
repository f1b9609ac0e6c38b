/*
 * A strict, incremental JSON tokenizer (RFC 8259), pull style: bytes go in
 * as they arrive, in pieces of any size; out comes one token per call, in
 * document order, with the grammar checked as it goes. Pure: no I/O.
 *
 * What it refuses (JSONTOK_ERROR, then again on every call):
 * - anything but the four whitespace bytes of RFC 8259 between tokens (no
 *   vertical tab, form feed or byte-order mark; no comments);
 * - a number outside the RFC grammar (a leading zero before a digit, a
 *   missing fraction or exponent digit, '+' before it, a lone '-');
 * - a literal other than true, false and null;
 * - in a string: a byte below 0x20, an escape other than \" \\ \/ \b \f
 *   \n \r \t and \u with four hex digits; a high surrogate escape not
 *   followed at once by a low one, a low one alone;
 * - a token where the grammar does not allow it (a missing or extra comma
 *   or colon, a key that is not a string, a closing bracket that does not
 *   match), nesting deeper than max_depth;
 * - anything but whitespace after the first complete value;
 * - a string or number longer than max_token bytes as written
 *   (BRK_ERR_TOOBIG), whole in one piece or not, as soon as its
 *   max_token + 1st byte is seen (nothing after it is judged): a token cut
 *   by a piece's end is the only thing ever buffered, and where the pieces
 *   end never changes the result.
 * UTF-8 is not checked: strings are handed out as decoded bytes, which may
 * include NUL (from \u0000); the caller judges them.
 *
 * A token that lies whole in the current piece is handed out in place
 * (strings without escapes, numbers) and costs no copy. A number ends at
 * the first byte that cannot continue it, as in the grammar: "1x" gives
 * the number 1 and then an error.
 */
#ifndef JSONTOK_H
#define JSONTOK_H

#include <stddef.h>

#include "broker.h"

enum jsontok_type {
    JSONTOK_ERROR = -1, /* see jsontok_error */
    JSONTOK_MORE = 0,   /* the piece is used up: give the next one */
    JSONTOK_NULL,
    JSONTOK_TRUE,
    JSONTOK_FALSE,
    JSONTOK_INTEGER, /* a number without fraction or exponent */
    JSONTOK_REAL,
    JSONTOK_STRING,
    JSONTOK_KEY,
    JSONTOK_OBJ_START,
    JSONTOK_OBJ_END,
    JSONTOK_ARR_START,
    JSONTOK_ARR_END,
};

struct jsontok;

/*
 * A tokenizer for one document. max_depth bounds the nesting, max_token
 * the bytes of a string or number as written (both at least 1). Returns BRK_OK,
 * BRK_ERR_INVAL, BRK_ERR_NOMEM. Owned result: jsontok_free.
 */
enum brk_err jsontok_new(size_t max_depth, size_t max_token,
                         struct jsontok **out) BRK_WUR;

/*
 * Make t ready for a new document, as jsontok_new with the same limits
 * would: nothing of the documents before (pending token, depth, error)
 * remains; its buffers are kept for reuse, up to 64 KiB each. Cannot fail.
 */
void jsontok_reset(struct jsontok *t);

/* The next piece of the document, borrowed until jsontok_next has
 * returned JSONTOK_MORE or JSONTOK_ERROR. Call after JSONTOK_MORE (or
 * first); len 0 is allowed. */
void jsontok_input(struct jsontok *t, const char *buf, size_t len);

/*
 * The next token. For strings, keys and numbers *s and *len are its text
 * (strings decoded, without quotes), valid until the next call; for the
 * rest they are left alone. JSONTOK_MORE when the piece is used up,
 * JSONTOK_ERROR when the document is malformed (or a buffer could not be
 * had: see jsontok_error).
 */
enum jsontok_type jsontok_next(struct jsontok *t, const char **s, size_t *len);

/* 1 once the top-level value is complete (only whitespace may follow). */
int jsontok_done(const struct jsontok *t);

/* The document ended: BRK_OK when the top-level value was complete and
 * nothing is pending, else BRK_ERR_UPSTREAM_BAD (or the earlier error). */
enum brk_err jsontok_finish(struct jsontok *t);

/* Why JSONTOK_ERROR: BRK_ERR_UPSTREAM_BAD, BRK_ERR_TOOBIG, BRK_ERR_NOMEM;
 * BRK_OK before any error. */
enum brk_err jsontok_error(const struct jsontok *t);

/* NULL is a no-op. */
void jsontok_free(struct jsontok *t);

#endif
