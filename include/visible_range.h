/*
 * A tenant's visible range, resolved over its directory into a compact
 * in-memory form that answers "may this member / department / tag be
 * seen?" quickly, and can be cached. Pure: built from the JSON the broker
 * keeps in Redis, no I/O.
 *
 * visible members: allow_user ∪ extra_user, members of any department in
 *   the subtree of allow_party ∪ extra_party, members of allow_tag ∪
 *   extra_tag, and members of any department in the subtree of those
 *   tags' departments.
 * visible departments: the subtrees of allow_party ∪ extra_party and of
 *   the departments of allow_tag ∪ extra_tag.
 * visible tags: allow_tag ∪ extra_tag.
 * A service's own range narrows it: only members and departments also
 * inside the subtrees of the service's departments remain; tags remain
 * only when every member and department of the tag is still visible.
 */
#ifndef VISIBLE_RANGE_H
#define VISIBLE_RANGE_H

#include <stddef.h>

#include <jansson.h>

#include "broker.h"

struct vrange;

/*
 * privilege: WeCom's privilege object (allow_party, allow_user,
 * allow_tag, extra_*; missing lists are empty). parents: object
 * "dept id" -> "parent id" (strings). users: object userid ->
 * "d1,d2,..." (the member's departments). tags: object "tag id" ->
 * {"users":[userid...],"parties":[id...]} (an object, or that JSON as a
 * string). All borrowed. Cycles in parents are tolerated (each department
 * visited once). Returns BRK_ERR_INVAL for malformed input (a wrong type
 * anywhere: fail closed). Owned: vrange_free.
 */
enum brk_err vrange_build(const json_t *privilege, const json_t *parents,
                          const json_t *users, const json_t *tags,
                          struct vrange **out) BRK_WUR;

/* One member of the users map: userid -> "d1,d2,..." (borrowed bytes, no
 * NUL needed). */
struct vrange_entry {
    const char *key;
    size_t klen;
    const char *val;
    size_t vlen;
};

/*
 * vrange_build with the users map given as nusers entries (users NULL
 * when nusers is 0), so a directory read from Redis is resolved without
 * becoming JSON first. The same rules and errors.
 */
enum brk_err vrange_build_entries(const json_t *privilege,
                                  const json_t *parents,
                                  const struct vrange_entry *users,
                                  size_t nusers, const json_t *tags,
                                  struct vrange **out) BRK_WUR;

/* A copy of v answering everything as v does (owned: vrange_free), e.g.
 * to narrow for a service. BRK_ERR_INVAL for NULL, BRK_ERR_NOMEM. */
enum brk_err vrange_copy(const struct vrange *v, struct vrange **out) BRK_WUR;

/*
 * The member userid (len bytes) now has the departments depts
 * ("d1,d2,...", dlen > 0 bytes) in the directory, or has left it (depts
 * NULL). Afterwards v answers every question as vrange_build over the
 * directory so changed would: departments and tags are not changed by a
 * member's change, so only this member's visibility can move. Not for a
 * narrowed range (BRK_ERR_INVAL). BRK_ERR_INVAL for a userid or a list
 * that would not build, BRK_ERR_TOOBIG, BRK_ERR_NOMEM; on failure v is
 * unchanged.
 */
enum brk_err vrange_set_member(struct vrange *v, const char *userid, size_t len,
                               const char *depts, size_t dlen) BRK_WUR;

/* Narrow to the subtrees of parties (a service's own range). n == 0
 * leaves everything out. */
enum brk_err vrange_narrow(struct vrange *v, const long *parties,
                           size_t n) BRK_WUR;

/*
 * A range narrowed to the subtrees of parties without copying it: the
 * view answers every question as vrange_narrow(v, parties, n) would,
 * from v (borrowed; the view must not outlive it, and v may change only
 * through vrange_set_member meanwhile). Costs the subtrees, not the
 * members: for deciding one event per service. BRK_ERR_INVAL (NULL or
 * narrowed v, an id outside 0..4294967295), BRK_ERR_TOOBIG,
 * BRK_ERR_NOMEM. Owned: vrange_view_free.
 */
struct vrange_view;
enum brk_err vrange_view_new(const struct vrange *v, const long *parties,
                             size_t n, struct vrange_view **out) BRK_WUR;
int vrange_view_has_member(const struct vrange_view *w, const char *userid,
                           size_t len);
int vrange_view_has_department(const struct vrange_view *w, long id);
int vrange_view_has_tag(const struct vrange_view *w, long id);
void vrange_view_free(struct vrange_view *w);

int vrange_has_member(const struct vrange *v, const char *userid, size_t len);
int vrange_has_department(const struct vrange *v, long id);
int vrange_has_tag(const struct vrange *v, long id);
/*
 * The visible departments whose parent is not visible: the tops of the
 * range, each visible subtree named by its top once (a department in a
 * cycle of parents has a visible parent and is never a top). Ascending
 * into *out (owned, brk_free; NULL when *n is 0). BRK_ERR_NOMEM.
 */
enum brk_err vrange_top_departments(const struct vrange *v, long **out,
                                    size_t *n) BRK_WUR;
/* Counts, for brokerctl and metrics. */
size_t vrange_members(const struct vrange *v);
size_t vrange_departments(const struct vrange *v);
/* Approximate bytes held (cache accounting). */
size_t vrange_memory(const struct vrange *v);
void vrange_free(struct vrange *v);

#endif /* VISIBLE_RANGE_H */
