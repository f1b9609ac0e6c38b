/*
 * A generated WeCom enterprise for the simulator and the benchmarks: pure
 * and deterministic from (seed, corp index, sizes), no I/O. Each
 * fixture_render_* writes one complete WeCom JSON reply into a dynbuf.
 */
#ifndef FIXTURE_H
#define FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "dynbuf.h"

/* Upper bounds accepted by fixture_corp_new, per corp. */
#define FIXTURE_MAX_DEPARTMENTS 100000
#define FIXTURE_MAX_MEMBERS     1000000
#define FIXTURE_MAX_TAGS        10000
#define FIXTURE_MAX_CUSTOMERS   1000000
#define FIXTURE_MAX_CHATS       100000
/* Highest corp index: corpids run wwmockcorp0001..wwmockcorp99999. */
#define FIXTURE_MAX_CORPS 99999

/* The agent id of the suite's app in every generated corp. */
#define FIXTURE_AGENTID 1000002L

/* Expiry (unix seconds) of the default app permissions: far future. */
#define FIXTURE_PERM_EXPIRY 4102444800L

/* auth_info.agent[].auth_mode: the corp's admin installed the app, or its
 * members authorized it one by one (wecom-protocol §2.7). */
#define FIXTURE_AUTH_ADMIN  0
#define FIXTURE_AUTH_MEMBER 1

/* Upper bounds of the grant lists fixture_corp_set_* accept. */
#define FIXTURE_MAX_AUTH_MEMBERS 100000
#define FIXTURE_MAX_APP_TAGS     1000
#define FIXTURE_MAX_ADMINS       100

/* WeCom's refusals (wecom-protocol §5.2) that fixture_check answers. */
#define FIXTURE_E_FORBIDDEN 48002L /* API not allowed by the grant */
#define FIXTURE_E_RANGE     60011L /* record outside the visible range */
#define FIXTURE_E_TOO_WIDE                                                     \
    81017L /* groupchat/list unfiltered, range > 1000                          \
            */

struct fixture_sizes {
    long departments; /* >= 3: ids 1 (root), 2 and 3 are always present */
    long members;     /* >= 3 */
    long tags;        /* >= 1: tag 1 is in the default visible range */
    long customers;   /* >= 0 */
    long chats;       /* >= 0 */
};

/* The defaults: small, so tests are fast. */
#define FIXTURE_SIZES_DEFAULT                                                  \
    {                                                                          \
        12, 40, 4, 20, 5                                                       \
    }

/*
 * The app's visible range in a corp (wecom-protocol §3). Arrays are owned
 * by the corp once set; NULL with a zero count is an empty list.
 */
struct fixture_privilege {
    long level;
    long *allow_party;
    size_t nallow_party;
    char **allow_user;
    size_t nallow_user;
    long *allow_tag;
    size_t nallow_tag;
    long *extra_party;
    size_t nextra_party;
    char **extra_user;
    size_t nextra_user;
    long *extra_tag;
    size_t nextra_tag;
};

struct fixture_corp;

/*
 * Generate corp number index (1..FIXTURE_MAX_CORPS; corpid
 * "wwmockcorp%04d", five digits from 10000 on) from seed
 * and sizes. Default grant: level 1, allow_party [2], allow_user [one
 * member outside department 2's subtree], allow_tag [1]; permissions
 * contact:base:base and externalcontact:base:base; auth_mode 0; no
 * app-created tags; one app admin, u00001 with auth_type 1. A new corp
 * renders leaky (see fixture_corp_set_strict). Returns BRK_OK,
 * BRK_ERR_INVAL for sizes outside the bounds or index < 1, BRK_ERR_NOMEM.
 * *out is owned: free with fixture_corp_free.
 */
enum brk_err fixture_corp_new(uint64_t seed, long index,
                              const struct fixture_sizes *sizes,
                              struct fixture_corp **out) BRK_WUR;
/* Free a corp; NULL is a no-op. */
void fixture_corp_free(struct fixture_corp *c);

/* The corpid and the short name (borrowed, live as long as c). */
const char *fixture_corp_id(const struct fixture_corp *c);
const char *fixture_corp_name(const struct fixture_corp *c);
/* Counts of generated records. */
long fixture_corp_member_count(const struct fixture_corp *c);
long fixture_corp_customer_count(const struct fixture_corp *c);
long fixture_corp_chat_count(const struct fixture_corp *c);
/* Index (0-based) of the member with this userid, or -1. */
long fixture_member_index(const struct fixture_corp *c, const char *userid);
/* Write the userid / external_userid / chat_id of record i (0-based) into
 * buf; BRK_ERR_INVAL when i is out of range or cap is too small. */
enum brk_err fixture_member_userid(const struct fixture_corp *c, long i,
                                   char *buf, size_t cap) BRK_WUR;
enum brk_err fixture_customer_id(const struct fixture_corp *c, long i,
                                 char *buf, size_t cap) BRK_WUR;
enum brk_err fixture_chat_id(const struct fixture_corp *c, long i, char *buf,
                             size_t cap) BRK_WUR;

/* The current visible range, borrowed until the next set. */
const struct fixture_privilege *
fixture_corp_privilege(const struct fixture_corp *c);
/* Replace the visible range with a deep copy of p. BRK_ERR_NOMEM leaves the
 * old range in place. */
enum brk_err
fixture_corp_set_privilege(struct fixture_corp *c,
                           const struct fixture_privilege *p) BRK_WUR;
/* Replace the app permissions with copies of names[0..n), each expiring at
 * expire_time (unix seconds). BRK_ERR_NOMEM leaves the old set. */
enum brk_err fixture_corp_set_permissions(struct fixture_corp *c,
                                          const char *const *names, size_t n,
                                          long expire_time) BRK_WUR;

/* Replace the privilege level and keep the contacts permission in step:
 * level 1, 3 or 4 replaces whichever of contact:base:base,
 * contact:edit:all and contact:base:single_user the corp holds with the
 * one the level stands for (wecom-protocol §3.1); other levels change the
 * level only. BRK_ERR_NOMEM leaves both unchanged. */
enum brk_err fixture_corp_set_level(struct fixture_corp *c, long level) BRK_WUR;
/* Whether the corp granted the app permission name (e.g.
 * "contact:edit:all"). */
int fixture_corp_has_permission(const struct fixture_corp *c, const char *name);

/*
 * How the app was authorized: mode FIXTURE_AUTH_ADMIN or
 * FIXTURE_AUTH_MEMBER, and for member authorization the members who
 * authorized it (userids[0..n), n <= FIXTURE_MAX_AUTH_MEMBERS; repeats are
 * kept once). In member authorization those members are the whole visible
 * range: the six lists are still rendered but not applied, and the app
 * sees one department, 1. BRK_ERR_INVAL for another mode or an unknown
 * userid, BRK_ERR_NOMEM; the old state stays on error.
 */
enum brk_err fixture_corp_set_auth_mode(struct fixture_corp *c, long mode,
                                        const char *const *userids,
                                        size_t n) BRK_WUR;
long fixture_corp_auth_mode(const struct fixture_corp *c);
/* The tags the app created itself (tag/list shows only these; tag/get
 * allows them outside the range). BRK_ERR_INVAL for an unknown tagid or n
 * over FIXTURE_MAX_APP_TAGS, BRK_ERR_NOMEM; the old set stays on error. */
enum brk_err fixture_corp_set_app_tags(struct fixture_corp *c,
                                       const long *tagids, size_t n) BRK_WUR;
/* The app's admins (agent/get_admin_list): userids[i] with auth_types[i]
 * (0 message permission, 1 management permission). BRK_ERR_INVAL for an
 * unknown userid, another auth_type or n over FIXTURE_MAX_ADMINS,
 * BRK_ERR_NOMEM; the old list stays on error. */
enum brk_err fixture_corp_set_admins(struct fixture_corp *c,
                                     const char *const *userids,
                                     const long *auth_types, size_t n) BRK_WUR;

/*
 * Strict (nonzero) or leaky (0) replies. Strict follows WeCom for a
 * third-party app: fixture_check refuses what the grant does not allow,
 * lists hold only records in the visible range, and records have the
 * third-party shape (fixture.c, "Third-party shapes"). Leaky answers every
 * call with every record in the self-built shape, every field filled.
 * Cannot fail.
 */
void fixture_corp_set_strict(struct fixture_corp *c, int strict);
int fixture_corp_is_strict(const struct fixture_corp *c);
/* Members in the visible range. */
long fixture_corp_visible_members(const struct fixture_corp *c);

/* The data APIs fixture_check judges. */
enum fixture_api {
    FIXTURE_API_USER_GET,          /* id: userid */
    FIXTURE_API_USER_SIMPLELIST,   /* num: department_id */
    FIXTURE_API_USER_LIST,         /* num: department_id */
    FIXTURE_API_USER_LIST_ID,      /* - */
    FIXTURE_API_USER_MEMBER_AUTH,  /* - */
    FIXTURE_API_DEPARTMENT_LIST,   /* num: id, 0 when not given */
    FIXTURE_API_DEPARTMENT_SIMPLE, /* num: id, 0 when not given */
    FIXTURE_API_DEPARTMENT_GET,    /* num: id */
    FIXTURE_API_TAG_LIST,          /* - */
    FIXTURE_API_TAG_GET,           /* num: tagid */
    FIXTURE_API_FOLLOW_USERS,      /* - */
    FIXTURE_API_EXTERNAL_LIST,     /* id: userid */
    FIXTURE_API_EXTERNAL_GET,      /* id: external_userid */
    FIXTURE_API_EXTERNAL_BATCH,    /* ids: userid_list */
    FIXTURE_API_GROUPCHAT_LIST,    /* ids: owner_filter.userid_list */
    FIXTURE_API_GROUPCHAT_GET,     /* id: chat_id */
};

/* The record parameters of a call (borrowed; unused ones NULL/0). */
struct fixture_args {
    const char *id;
    long num;
    const char *const *ids;
    size_t nids;
};

/*
 * WeCom's errcode for the call under the corp's grant, 0 when WeCom would
 * answer it (always 0 for a leaky corp): FIXTURE_E_FORBIDDEN when the app
 * lacks the API's permission, FIXTURE_E_RANGE for a record outside the
 * visible range, FIXTURE_E_TOO_WIDE for an unfiltered groupchat/list over
 * a range of more than 1000 members. Records that do not exist are left to
 * the renderers (they answer BRK_ERR_NOTFOUND). Cannot fail.
 */
long fixture_check(const struct fixture_corp *c, enum fixture_api api,
                   const struct fixture_args *a);

/*
 * Renderers. Each appends one complete reply (errcode 0, errmsg "ok", and a
 * "mock_internal_note" no scope file declares, also inside nested records)
 * to out. They return BRK_OK, BRK_ERR_NOTFOUND when the named record does
 * not exist, BRK_ERR_INVAL for a malformed parameter (bad cursor, limit out
 * of range), or dynbuf's BRK_ERR_NOMEM / BRK_ERR_TOOBIG (out is then freed).
 * On an error other than a dynbuf one, out is unchanged. A strict corp's
 * renderers hold the records of the visible range only, in the
 * third-party shapes; they do not refuse (fixture_check does).
 */

/* service/get_permanent_code v1: corp token, permanent code, full corp
 * info, agent with privilege, installer, edition, state (may be NULL).
 * dealer_corp_info and register_code_info are left out: WeCom sends them
 * only for installs through a dealer or a registration code. */
enum brk_err fixture_render_permanent_code(
    const struct fixture_corp *c, const char *access_token, long expires_in,
    const char *permanent_code, const char *state, struct dynbuf *out) BRK_WUR;
/* service/v2/get_permanent_code: permanent_code, auth_corp_info{corpid,
 * corp_name}, auth_user_info, state. */
enum brk_err fixture_render_permanent_code_v2(const struct fixture_corp *c,
                                              const char *permanent_code,
                                              const char *state,
                                              struct dynbuf *out) BRK_WUR;
/* service/get_auth_info: corp info, agent with the current privilege,
 * edition. */
enum brk_err fixture_render_auth_info(const struct fixture_corp *c,
                                      struct dynbuf *out) BRK_WUR;
/* agent/get_permissions. */
enum brk_err fixture_render_permissions(const struct fixture_corp *c,
                                        struct dynbuf *out) BRK_WUR;
/* agent/get?agentid; NOTFOUND unless agentid is FIXTURE_AGENTID. */
enum brk_err fixture_render_agent_get(const struct fixture_corp *c,
                                      long agentid, struct dynbuf *out) BRK_WUR;

/* agent/get_admin_list: {"admin":[{userid, open_userid, auth_type}]};
 * no "admin" for a strict corp authorized by member. */
enum brk_err fixture_render_admin_list(const struct fixture_corp *c,
                                       struct dynbuf *out) BRK_WUR;

/* user/get?userid. */
enum brk_err fixture_render_user_get(const struct fixture_corp *c,
                                     const char *userid,
                                     struct dynbuf *out) BRK_WUR;
/* The member's whole record in the self-built shape whatever the mode,
 * for the OAuth identity calls that pick fields from it. */
enum brk_err fixture_render_user_record(const struct fixture_corp *c,
                                        const char *userid,
                                        struct dynbuf *out) BRK_WUR;
/* user/simplelist and user/list: members of department_id, or (leaky only:
 * third-party apps lost fetch_child) of its whole subtree when fetch_child
 * is nonzero. */
enum brk_err fixture_render_user_simplelist(const struct fixture_corp *c,
                                            long department_id, int fetch_child,
                                            struct dynbuf *out) BRK_WUR;
enum brk_err fixture_render_user_list(const struct fixture_corp *c,
                                      long department_id, int fetch_child,
                                      struct dynbuf *out) BRK_WUR;
/* user/list_id: one row per (member, department) from cursor (NULL or ""
 * = start), at most limit (1..10000) rows; next_cursor "" when done.
 * Strict rows name the member by open_userid only. */
enum brk_err fixture_render_user_list_id(const struct fixture_corp *c,
                                         const char *cursor, long limit,
                                         struct dynbuf *out) BRK_WUR;
/* user/list_member_auth: the members who authorized the app, from cursor,
 * at most limit (1..10000) rows of {"open_userid"} (or {"userid"} when
 * userid_rows, the other reading of an unconfirmed shape) in
 * member_auth_list; leaky: every member, with both ids. */
enum brk_err fixture_render_member_auth(const struct fixture_corp *c,
                                        const char *cursor, long limit,
                                        int userid_rows,
                                        struct dynbuf *out) BRK_WUR;
/* department/list and department/simplelist: the subtree of id, or every
 * department when id is 0; strict: of the range's departments (all of them
 * with corp_arch:base:base or contacts edit), named by their id. */
enum brk_err fixture_render_department_list(const struct fixture_corp *c,
                                            long id,
                                            struct dynbuf *out) BRK_WUR;
enum brk_err fixture_render_department_simplelist(const struct fixture_corp *c,
                                                  long id,
                                                  struct dynbuf *out) BRK_WUR;
/* department/get?id. */
enum brk_err fixture_render_department_get(const struct fixture_corp *c,
                                           long id, struct dynbuf *out) BRK_WUR;
/* tag/list and tag/get?tagid; strict: the tags the app created, and
 * userlist without names holding members in the range. */
enum brk_err fixture_render_tag_list(const struct fixture_corp *c,
                                     struct dynbuf *out) BRK_WUR;
enum brk_err fixture_render_tag_get(const struct fixture_corp *c, long tagid,
                                    struct dynbuf *out) BRK_WUR;
/* externalcontact/get_follow_user_list: members following a customer
 * (strict: in the range). Strict customers have no avatar or unionid and
 * gender 0, strict follow users and chat owners are in the range. */
enum brk_err fixture_render_follow_user_list(const struct fixture_corp *c,
                                             struct dynbuf *out) BRK_WUR;
/* externalcontact/list?userid: NOTFOUND for an unknown member; a member
 * without customers also gives NOTFOUND (WeCom answers 84061). */
enum brk_err fixture_render_external_list(const struct fixture_corp *c,
                                          const char *userid,
                                          struct dynbuf *out) BRK_WUR;
/* externalcontact/get?external_userid (the cursor is accepted; there are
 * never more than 500 follow users, so next_cursor is ""). */
enum brk_err fixture_render_external_get(const struct fixture_corp *c,
                                         const char *external_userid,
                                         struct dynbuf *out) BRK_WUR;
/* externalcontact/batch/get_by_user: pairs (customer, follow user) whose
 * follow user is in userids[0..n) (unknown ids are skipped), from cursor,
 * at most limit (1..100). Strict: WeCom answers per member, so members
 * outside the range give no pairs; fixture_check refuses (60011) only a
 * list with no member in the range. */
enum brk_err fixture_render_external_batch(const struct fixture_corp *c,
                                           const char *const *userids, size_t n,
                                           const char *cursor, long limit,
                                           struct dynbuf *out) BRK_WUR;
/* externalcontact/groupchat/list: status_filter 0 = all, else chats with
 * that status; owners[0..n) filters by owner when n > 0; limit 1..1000. */
enum brk_err fixture_render_groupchat_list(const struct fixture_corp *c,
                                           long status_filter,
                                           const char *const *owners, size_t n,
                                           const char *cursor, long limit,
                                           struct dynbuf *out) BRK_WUR;
/* externalcontact/groupchat/get: member names only when need_name. */
enum brk_err fixture_render_groupchat_get(const struct fixture_corp *c,
                                          const char *chat_id, int need_name,
                                          struct dynbuf *out) BRK_WUR;

/*---- Writes (serve_write.c) ----*/

/* 1 when userid is a member in the app's visible range (always for a
 * leaky corp), 0 outside it, -1 when no such member. */
int fixture_member_visible(const struct fixture_corp *c, const char *userid);
/* The same for a department id. */
int fixture_department_visible(const struct fixture_corp *c, long id);
/* 1 when the member userid follows the customer ext, 0 when not, -1 when
 * no such customer. */
int fixture_customer_follower(const struct fixture_corp *c, const char *ext,
                              const char *userid);
/* 1 when id is one of the corp tags the corp's admin made (not the app). */
int fixture_corp_tag_known(const struct fixture_corp *c, const char *id);

#endif /* FIXTURE_H */
