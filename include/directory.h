/*
 * A tenant's directory as the broker keeps it in Redis (department
 * parents, each member's departments, each tag's members and departments),
 * built from WeCom's list responses. Pure: JSON in, field/value pairs out.
 */
#ifndef DIRECTORY_H
#define DIRECTORY_H

#include <stddef.h>

#include <jansson.h>

#include "broker.h"
#include "wecom_xml.h"

/* Field/value pairs ready for HSET. */
struct dir_pairs {
    char **field;
    char **value;
    size_t n;
    size_t cap;
};

void dir_pairs_free(struct dir_pairs *p); /* frees the contents */
/* Append copies of field and value. */
enum brk_err dir_pairs_add(struct dir_pairs *p, const char *field,
                           const char *value) BRK_WUR;

/* The validators every directory reply goes through: an id is a JSON
 * integer in 0..4294967295; a userid is 1..64 bytes without control
 * characters, spaces or commas. */
int dir_parse_id(const json_t *v, long *out);
int dir_is_userid(const char *s);

/*
 * department/simplelist {"department_id":[{"id","parentid",...}]} -> pairs
 * id -> parentid (root's parent is "0"). BRK_ERR_UPSTREAM_BAD when the shape
 * is wrong.
 */
enum brk_err dir_parse_departments(const json_t *body,
                                   struct dir_pairs *out) BRK_WUR;

/*
 * Merge one page of user/list_id in its third-party shape
 * {"dept_user":[{"open_userid","department"}]} into the object users
 * (open_userid -> "d1,d2"); a row without an open_userid is refused.
 * Returns the next cursor through *cursor (owned, NULL when done).
 */
enum brk_err dir_merge_user_page(const json_t *body, json_t *users,
                                 char **cursor) BRK_WUR;
/* Pairs from an object of string values. */
enum brk_err dir_pairs_from_map(const json_t *map,
                                struct dir_pairs *out) BRK_WUR;

/*
 * tag/get {"userlist":[{"userid"}],"partylist":[ids]} -> the stored value
 * {"users":[...],"parties":[...]} as compact JSON (owned, brk_free).
 */
enum brk_err dir_tag_value(const json_t *body, char **out) BRK_WUR;

/* Ids of tag/list {"taglist":[{"tagid"}]} (owned array of longs). */
enum brk_err dir_tag_ids(const json_t *body, long **ids, size_t *n) BRK_WUR;

/* Admins one app may have, at most. */
#define DIR_MAX_ADMINS 1000

/*
 * agent/get_admin_list {"admin":[{"userid","auth_type"}]} -> the stored
 * value [{"userid","auth_type"}] as compact JSON (owned, brk_free). A row
 * names its admin by userid, else by open_userid (the older reply);
 * auth_type may be absent (0). No "admin" at all (an app authorized by
 * its members) is no admins: "[]". BRK_ERR_UPSTREAM_BAD for a reply of
 * another shape.
 */
enum brk_err dir_admin_list(const json_t *body, char **out) BRK_WUR;

/*
 * What a change_contact event (wecom-protocol §2.14) changes in the
 * directory. Every string is borrowed from the event; "" when absent.
 */
struct dir_contact {
    const char *type;     /* ChangeType */
    const char *user;     /* UserID, or OpenUserID when it has none */
    const char *new_user; /* NewUserID */
    const char *depts;    /* Department: "d1,d2" */
    const char *party;    /* Id */
    const char *parent;   /* ParentId */
    const char *tag;      /* TagId */
    const char *add_users, *del_users, *add_parties, *del_parties;
};

/*
 * Read change_contact event ev into *out (written only on success).
 * Which fields a third-party app receives is not documented, so a member
 * is named by UserID, else by OpenUserID. BRK_ERR_UPSTREAM_BAD when the
 * event lacks the id its ChangeType needs (a member without either id, a
 * department without Id, update_tag without TagId) or holds a malformed
 * one: userids as dir_is_userid, ids and comma-separated id lists in
 * decimal without leading zeros, 1..4294967295 (a ParentId may be 0).
 * A ChangeType the directory does not keep reads as that type alone.
 */
enum brk_err dir_contact_read(const struct wecom_xml *ev,
                              struct dir_contact *out) BRK_WUR;

#endif /* DIRECTORY_H */
