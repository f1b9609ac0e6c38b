/*
 * The directory sync planner: which WeCom calls build a tenant's directory
 * under the grant the tenant gave, in what order, and the directory their
 * replies add up to. Pure: the caller makes the calls and feeds the
 * replies back; no Redis, no network, no clock.
 *
 * The plan, by grant:
 *  - contacts read-only or edit, admin-authorized (auth_mode 0):
 *    department/simplelist and tag/get for each tag of the range first;
 *    then user/simplelist for each department in the subtrees of the
 *    range's departments and the tags' departments; then user/get for
 *    each member named by the range or a tag and not seen in a department.
 *  - member-authorized (auth_mode 1): user/list_member_auth pages, then
 *    user/get as above when the grant has contacts permission.
 *  - no contacts permission: no calls; the directory is the range's
 *    departments (parent unknown, stored as "0").
 * Never user/list_id (needs contacts edit authorization; the read-only
 * path covers edit too) and never tag/list (a third-party app sees only
 * the tags it created).
 */
#ifndef DIRSYNC_H
#define DIRSYNC_H

#include <stddef.h>

#include <jansson.h>

#include "broker.h"
#include "directory.h"

#define DIRSYNC_MAX_INFLIGHT     8       /* calls outstanding at once */
#define DIRSYNC_MAX_DEPARTMENTS  100000  /* department/simplelist rows */
#define DIRSYNC_MAX_MEMBERS      1000000 /* members, and named members */
#define DIRSYNC_MAX_TAGS         100000  /* tags in the range */
#define DIRSYNC_MAX_MEMBER_DEPTS 1000    /* departments of one member */
#define DIRSYNC_PAGE_LIMIT       1000    /* list_member_auth page size */
#define DIRSYNC_MAX_PAGES        2000    /* list_member_auth pages */
#define DIRSYNC_CURSOR_MAX       512     /* next_cursor bytes */

struct dirsync;

/* One WeCom call to make. Every string is borrowed from the planner and
 * valid until dirsync_reply or dirsync_error for this id (or
 * dirsync_free). */
struct dirsync_call {
    unsigned id;            /* nonzero, unique within one sync */
    const char *api;        /* "user/simplelist": logs, metrics, budget */
    const char *method;     /* "GET" or "POST" */
    const char *path_query; /* "/cgi-bin/user/simplelist?department_id=7";
                               no token: append it with '&' when the path
                               has a '?', else with '?' */
    const char *body;       /* JSON request body, or NULL */
};

/* Plan the sync for one agent of get_auth_info and its permissions. */
enum brk_err dirsync_new(const json_t *agent, const json_t *permissions,
                         struct dirsync **out) BRK_WUR;
/* The next call that may start now; BRK_ERR_NOTFOUND when none may. */
enum brk_err dirsync_next(struct dirsync *ds, struct dirsync_call *call);
/* Feed the reply (errcode 0) of call id. */
enum brk_err dirsync_reply(struct dirsync *ds, unsigned id, const json_t *body);
/* Feed WeCom's final errcode for call id; BRK_OK when tolerated. */
enum brk_err dirsync_error(struct dirsync *ds, unsigned id, long errcode);
/* Nonzero when every call is answered and nothing failed. */
int dirsync_done(const struct dirsync *ds);
/* BRK_OK while the sync may still complete, else why it failed. */
enum brk_err dirsync_status(const struct dirsync *ds);
/* "contacts", "member_auth" or "range_only": which plan applies. */
const char *dirsync_plan(const struct dirsync *ds);
/* Calls handed out so far. */
unsigned dirsync_calls(const struct dirsync *ds);
/* The directory of a completed sync, ready for staging. */
enum brk_err dirsync_result(const struct dirsync *ds, struct dir_pairs *parents,
                            json_t **users, json_t **tags) BRK_WUR;
void dirsync_free(struct dirsync *ds);

#endif /* DIRSYNC_H */
