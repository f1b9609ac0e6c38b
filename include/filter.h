/*
 * The streaming allow-list filter. It parses WeCom's JSON body as it
 * arrives (jsontok.h) and writes only what the scope tree declares and the
 * effective grant allows, dropping records outside the visible range.
 * It never builds a tree of the whole response; the output is held until
 * the input is complete, so a malformed tail still becomes an error.
 * Pure: no I/O.
 *
 * Semantics:
 * - A key the tree does not declare is removed (counted in stripped).
 * - A key whose permission the grant lacks (or SCOPE_PERM_NEVER) is
 *   removed (counted once, whatever it held).
 * - A value of another type than the one declared is removed (counted).
 *   SCOPE_T_INTEGER accepts numbers without '.', 'e' or 'E';
 *   SCOPE_T_NUMBER any number; null is a wrong type everywhere.
 * - A record (scope_node.record) out of range is removed whole (counted
 *   in dropped, one per element; nothing inside it counts as stripped).
 *   Object records read their id from record_id (which may be a two-level
 *   path "a.b"); a record whose id is missing or mistyped is dropped.
 *   Scalar array items marked as records are ids themselves. A chat member
 *   whose "type" is 2 (an external contact) is kept without a range check.
 *   A customer record is in range when any of its follow users is: the
 *   filter asks in_range for SCOPE_REC_FOLLOW_USER ids found in it.
 * - Malformed JSON, a key repeated within one object, nesting deeper than
 *   the limit, or a top level that is not an object: BRK_ERR_UPSTREAM_BAD.
 *   Output over max_output, one record over max_record, or one string or
 *   number longer than max_output + max_record (16 MiB at least, kept or
 *   removed: it is read whole): BRK_ERR_TOOBIG.
 * - Numbers are copied as written; strings are re-encoded (escapes in the
 *   input, \u in keys included, are decoded before keys are compared).
 */
#ifndef FILTER_H
#define FILTER_H

#include <stddef.h>

#include "broker.h"
#include "scope_map.h"

/* 1 if the id of a record of that kind is in the visible range, else 0.
 * Department and tag ids are passed as their decimal text. */
typedef int filter_range_cb(enum scope_record kind, const char *id, size_t len,
                            void *arg);

struct filter_limits {
    size_t max_depth;  /* default 32 */
    size_t max_output; /* default 64 MiB */
    size_t max_record; /* bytes buffered for one undecided record;
                          default 4 MiB */
};

struct filter;

/*
 * root and grant are borrowed and must outlive the filter; in_range may be
 * NULL (every record in range). limits may be NULL. Owned: filter_free.
 */
enum brk_err filter_new(const struct scope_node *root,
                        const struct scope_grant *grant,
                        filter_range_cb *in_range, void *arg,
                        const struct filter_limits *limits,
                        struct filter **out) BRK_WUR;
/* Feed the next chunk (any split, down to one byte). After an error every
 * later call returns the same error. */
enum brk_err filter_feed(struct filter *f, const char *buf, size_t len) BRK_WUR;
/* The input is complete: check it ended well. */
enum brk_err filter_finish(struct filter *f) BRK_WUR;
/* After a successful finish: move the output out (owned, brk_free). */
enum brk_err filter_take_output(struct filter *f, char **out,
                                size_t *len) BRK_WUR;
/* After a successful finish: the output where it lies (borrowed until the
 * filter is taken from, cleared, reset or freed). */
enum brk_err filter_output(struct filter *f, const char **out,
                           size_t *len) BRK_WUR;
/* WeCom's errcode: 1 with *code when the top-level object held an
 * integer "errcode" (read from the input, written out or not), else 0
 * with *code untouched. */
int filter_errcode(const struct filter *f, long *code);
/* Keys removed and records dropped so far. */
unsigned long filter_stripped(const struct filter *f);
unsigned long filter_dropped(const struct filter *f);
/* Names of the keys written and removed (each once, comma-separated),
 * for the audit trail: never a value. Owned results, brk_free. */
enum brk_err filter_names(const struct filter *f, char **kept,
                          char **removed) BRK_WUR;
/* The same, borrowed (no copy; valid until the next call, or the filter
 * is cleared, reset or freed). */
enum brk_err filter_names_get(struct filter *f, const char **kept,
                              const char **removed) BRK_WUR;

/*
 * Reuse. filter_clear forgets everything of the document read (output not
 * taken, counts, names, errcode, error, the tree, grant and callback) and
 * keeps the buffers, up to 64 KiB each, for the next one; a cleared filter
 * refuses every call with BRK_ERR_INVAL until filter_reset gives it a tree
 * (borrowed as in filter_new; BRK_ERR_INVAL for a NULL root or grant).
 * A reset filter reads a document exactly as filter_new's would with the
 * same limits, and allocates nothing until it outgrows what it kept.
 */
void filter_clear(struct filter *f);
enum brk_err filter_reset(struct filter *f, const struct scope_node *root,
                          const struct scope_grant *grant,
                          filter_range_cb *in_range, void *arg) BRK_WUR;
void filter_free(struct filter *f);

#endif /* FILTER_H */
