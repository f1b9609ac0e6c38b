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

/* The agent id of the suite's app in every generated corp. */
#define FIXTURE_AGENTID 1000002L

/* Expiry (unix seconds) of the default app permissions: far future. */
#define FIXTURE_PERM_EXPIRY 4102444800L

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
 * Generate corp number index (1-based; corpid "wwmockcorp%04d") from seed
 * and sizes. Default range: allow_party [2], allow_user [one member outside
 * department 2's subtree], allow_tag [1]; default permissions
 * contact:base:base and externalcontact:base:base. Returns BRK_OK,
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

/*
 * Renderers. Each appends one complete reply (errcode 0, errmsg "ok", and a
 * "mock_internal_note" no scope file declares, also inside nested records)
 * to out. They return BRK_OK, BRK_ERR_NOTFOUND when the named record does
 * not exist, BRK_ERR_INVAL for a malformed parameter (bad cursor, limit out
 * of range), or dynbuf's BRK_ERR_NOMEM / BRK_ERR_TOOBIG (out is then freed).
 * On an error other than a dynbuf one, out is unchanged.
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

/* user/get?userid. */
enum brk_err fixture_render_user_get(const struct fixture_corp *c,
                                     const char *userid,
                                     struct dynbuf *out) BRK_WUR;
/* user/simplelist and user/list: members of department_id, or of its whole
 * subtree when fetch_child is nonzero. */
enum brk_err fixture_render_user_simplelist(const struct fixture_corp *c,
                                            long department_id, int fetch_child,
                                            struct dynbuf *out) BRK_WUR;
enum brk_err fixture_render_user_list(const struct fixture_corp *c,
                                      long department_id, int fetch_child,
                                      struct dynbuf *out) BRK_WUR;
/* user/list_id: one row per (member, department) from cursor (NULL or ""
 * = start), at most limit (1..10000) rows; next_cursor "" when done. */
enum brk_err fixture_render_user_list_id(const struct fixture_corp *c,
                                         const char *cursor, long limit,
                                         struct dynbuf *out) BRK_WUR;
/* department/list and department/simplelist: the subtree of id, or every
 * department when id is 0. */
enum brk_err fixture_render_department_list(const struct fixture_corp *c,
                                            long id,
                                            struct dynbuf *out) BRK_WUR;
enum brk_err fixture_render_department_simplelist(const struct fixture_corp *c,
                                                  long id,
                                                  struct dynbuf *out) BRK_WUR;
/* department/get?id. */
enum brk_err fixture_render_department_get(const struct fixture_corp *c,
                                           long id, struct dynbuf *out) BRK_WUR;
/* tag/list and tag/get?tagid. */
enum brk_err fixture_render_tag_list(const struct fixture_corp *c,
                                     struct dynbuf *out) BRK_WUR;
enum brk_err fixture_render_tag_get(const struct fixture_corp *c, long tagid,
                                    struct dynbuf *out) BRK_WUR;
/* externalcontact/get_follow_user_list: members following a customer. */
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
 * at most limit (1..100). */
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

#endif /* FIXTURE_H */
