/*
 * Directory parsing (see directory.h). Ids are validated: department and
 * tag ids are positive integers, userids are 1..64 printable characters
 * without spaces or commas (the stored department lists are
 * comma-separated).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "directory.h"

#define MAX_ENTRIES 2000000

void
dir_pairs_free(struct dir_pairs *p)
{
    size_t i;

    for (i = 0; i < p->n; i++) {
        brk_free(p->field[i]);
        brk_free(p->value[i]);
    }
    brk_free(p->field);
    brk_free(p->value);
    memset(p, 0, sizeof(*p));
}

/*
 * Append copies of f and v. BRK_ERR_TOOBIG past 2,000,000 pairs,
 * BRK_ERR_NOMEM; on failure p keeps the pairs it had.
 */
enum brk_err
dir_pairs_add(struct dir_pairs *p, const char *f, const char *v)
{
    char **nf, **nv;
    size_t ncap;

    if (p->n == p->cap) {
        if (p->cap >= MAX_ENTRIES)
            return BRK_ERR_TOOBIG;
        ncap = p->cap ? p->cap * 2 : 64;
        nf = brk_realloc(p->field, ncap * sizeof(*nf));
        if (nf == NULL)
            return BRK_ERR_NOMEM;
        p->field = nf;
        nv = brk_realloc(p->value, ncap * sizeof(*nv));
        if (nv == NULL)
            return BRK_ERR_NOMEM;
        p->value = nv;
        p->cap = ncap;
    }
    p->field[p->n] = brk_strdup(f);
    p->value[p->n] = brk_strdup(v);
    if (p->field[p->n] == NULL || p->value[p->n] == NULL) {
        brk_free(p->field[p->n]);
        brk_free(p->value[p->n]);
        return BRK_ERR_NOMEM;
    }
    p->n++;
    return BRK_OK;
}

/* 1 and the id in *out when v is a JSON integer in 0..4294967295, else 0
 * (*out untouched). */
int
dir_parse_id(const json_t *v, long *out)
{
    json_int_t i;

    if (!json_is_integer(v))
        return 0;
    i = json_integer_value(v);
    if (i < 0 || i > 4294967295LL)
        return 0;
    *out = (long)i;
    return 1;
}

/* 1 when s is 1..64 bytes, none of them a control character, space,
 * comma or DEL (the stored department lists are comma-separated). */
int
dir_is_userid(const char *s)
{
    size_t n = 0;

    for (; *s; s++, n++)
        if ((unsigned char)*s <= ' ' || *s == ',' || *s == 0x7f || n >= 64)
            return 0;
    return n > 0;
}

enum brk_err
dir_parse_departments(const json_t *body, struct dir_pairs *out)
{
    const json_t *arr = json_object_get(body, "department_id"), *d;
    char f[24], v[24];
    long id, parent;
    size_t i;
    enum brk_err err;

    if (!json_is_array(arr))
        return BRK_ERR_UPSTREAM_BAD;
    json_array_foreach(arr, i, d)
    {
        if (!dir_parse_id(json_object_get(d, "id"), &id))
            return BRK_ERR_UPSTREAM_BAD;
        if (!dir_parse_id(json_object_get(d, "parentid"), &parent))
            parent = 0;
        snprintf(f, sizeof(f), "%ld", id);
        snprintf(v, sizeof(v), "%ld", parent);
        err = dir_pairs_add(out, f, v);
        if (err)
            return err;
    }
    return BRK_OK;
}

enum brk_err
dir_merge_user_page(const json_t *body, json_t *users, char **cursor)
{
    const json_t *arr = json_object_get(body, "dept_user"), *u, *c, *cur;
    const char *uid;
    char dept[24], *nv;
    long d;
    size_t i, len;

    if (!json_is_array(arr))
        return BRK_ERR_UPSTREAM_BAD;
    json_array_foreach(arr, i, u)
    {
        /* a third-party app's rows name the member by open_userid only
         * (wecom-protocol §4.4); "userid" is the self-built shape */
        uid = json_string_value(json_object_get(u, "open_userid"));
        if (uid == NULL || !dir_is_userid(uid) ||
            !dir_parse_id(json_object_get(u, "department"), &d))
            return BRK_ERR_UPSTREAM_BAD;
        snprintf(dept, sizeof(dept), "%ld", d);
        cur = json_object_get(users, uid);
        if (cur == NULL) {
            if (json_object_set_new(users, uid, json_string(dept)) != 0)
                return BRK_ERR_NOMEM;
            continue;
        }
        len = json_string_length(cur) + strlen(dept) + 2;
        if (len > 4096)
            return BRK_ERR_UPSTREAM_BAD;
        nv = brk_malloc(len);
        if (nv == NULL)
            return BRK_ERR_NOMEM;
        snprintf(nv, len, "%s,%s", json_string_value(cur), dept);
        if (json_object_set_new(users, uid, json_string(nv)) != 0) {
            brk_free(nv);
            return BRK_ERR_NOMEM;
        }
        brk_free(nv);
    }
    if (json_object_size(users) > MAX_ENTRIES)
        return BRK_ERR_TOOBIG;
    c = json_object_get(body, "next_cursor");
    *cursor = NULL;
    if (json_is_string(c) && json_string_length(c) > 0) {
        if (json_string_length(c) > 512)
            return BRK_ERR_UPSTREAM_BAD;
        *cursor = brk_strdup(json_string_value(c));
        if (*cursor == NULL)
            return BRK_ERR_NOMEM;
    }
    return BRK_OK;
}

enum brk_err
dir_pairs_from_map(const json_t *map, struct dir_pairs *out)
{
    const char *k;
    const json_t *v;
    enum brk_err err;

    json_object_foreach((json_t *)(uintptr_t)map, k, v)
    {
        if (!json_is_string(v))
            return BRK_ERR_INVAL;
        err = dir_pairs_add(out, k, json_string_value(v));
        if (err)
            return err;
    }
    return BRK_OK;
}

/*
 * tag/get -> {"users":[...],"parties":[...]} as compact JSON, written by
 * hand: jansson 2.14's json_dumps ignores a failed append of an object
 * key and can return malformed text when memory runs out. Userids are
 * checked (no control characters), so only '"' and '\\' need escaping.
 * BRK_ERR_UPSTREAM_BAD for a wrong shape, BRK_ERR_NOMEM; *out (owned,
 * brk_free) is written only on success.
 */
enum brk_err
dir_tag_value(const json_t *body, char **out)
{
    const json_t *ul = json_object_get(body, "userlist");
    const json_t *pl = json_object_get(body, "partylist"), *v;
    const char *uid;
    char *text;
    size_t i, cap = 32, o;
    long id = 0;

    if ((ul != NULL && !json_is_array(ul)) ||
        (pl != NULL && !json_is_array(pl)))
        return BRK_ERR_UPSTREAM_BAD;
    json_array_foreach(ul, i, v)
    {
        uid = json_string_value(json_object_get(v, "userid"));
        if (uid == NULL || !dir_is_userid(uid))
            return BRK_ERR_UPSTREAM_BAD;
        cap += 2 * strlen(uid) + 3;
    }
    json_array_foreach(pl, i, v)
    {
        if (!dir_parse_id(v, &id))
            return BRK_ERR_UPSTREAM_BAD;
        cap += 11;
    }
    text = brk_malloc(cap);
    if (text == NULL)
        return BRK_ERR_NOMEM;
    o = (size_t)snprintf(text, cap, "{\"users\":[");
    json_array_foreach(ul, i, v)
    {
        if (i > 0)
            text[o++] = ',';
        text[o++] = '"';
        for (uid = json_string_value(json_object_get(v, "userid")); *uid;
             uid++) {
            if (*uid == '"' || *uid == '\\')
                text[o++] = '\\';
            text[o++] = *uid;
        }
        text[o++] = '"';
    }
    o += (size_t)snprintf(text + o, cap - o, "],\"parties\":[");
    json_array_foreach(pl, i, v)
    {
        (void)dir_parse_id(v, &id);
        o += (size_t)snprintf(text + o, cap - o, "%s%ld", i ? "," : "", id);
    }
    snprintf(text + o, cap - o, "]}");
    *out = text;
    return BRK_OK;
}

enum brk_err
dir_tag_ids(const json_t *body, long **ids, size_t *n)
{
    const json_t *arr = json_object_get(body, "taglist"), *t;
    long *v;
    size_t i;

    if (!json_is_array(arr) || json_array_size(arr) > 100000)
        return BRK_ERR_UPSTREAM_BAD;
    v = brk_calloc(json_array_size(arr) + 1, sizeof(*v));
    if (v == NULL)
        return BRK_ERR_NOMEM;
    json_array_foreach(arr, i, t)
    {
        if (!dir_parse_id(json_object_get(t, "tagid"), &v[i])) {
            brk_free(v);
            return BRK_ERR_UPSTREAM_BAD;
        }
    }
    *ids = v;
    *n = json_array_size(arr);
    return BRK_OK;
}

enum brk_err
dir_admin_list(const json_t *body, char **out)
{
    const json_t *arr = json_object_get(body, "admin"), *a, *uid, *oid, *t;
    json_t *list = NULL;
    char *s = NULL;
    size_t i;
    enum brk_err err = BRK_ERR_UPSTREAM_BAD;

    /* an app authorized by its members has no admin list: WeCom leaves
     * "admin" out of the reply (D:100072), which means none */
    if ((arr != NULL && !json_is_array(arr)) ||
        json_array_size(arr) > DIR_MAX_ADMINS)
        return BRK_ERR_UPSTREAM_BAD;
    list = json_array();
    if (list == NULL)
        return BRK_ERR_NOMEM;
    json_array_foreach(arr, i, a)
    {
        const char *id;
        json_t *row;

        uid = json_object_get(a, "userid");
        oid = json_object_get(a, "open_userid");
        t = json_object_get(a, "auth_type");
        /* third-party rows name the member by userid (the provider-level
         * id); older replies also carry open_userid */
        id = json_is_string(uid) ? json_string_value(uid)
                                 : json_string_value(oid);
        if (id == NULL || !dir_is_userid(id) ||
            (t != NULL && !json_is_integer(t)))
            goto out;
        row = json_pack("{s:s, s:I}", "userid", id, "auth_type",
                        t ? json_integer_value(t) : (json_int_t)0);
        if (row == NULL || json_array_append_new(list, row) != 0) {
            err = BRK_ERR_NOMEM;
            goto out;
        }
    }
    s = json_dumps(list, JSON_COMPACT);
    if (s == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    *out = brk_strdup(s);
    free(s);
    err = *out ? BRK_OK : BRK_ERR_NOMEM;
out:
    json_decref(list);
    return err;
}

/*---- change_contact ----*/

/* 1 when s[0..n) is an id min..4294967295 in decimal without leading
 * zeros (the visible range reads ids that way). */
static int
id_text_ok(const char *s, size_t n, unsigned long long min)
{
    unsigned long long x = 0;
    size_t i;

    if (n == 0 || n > 10 || (s[0] == '0' && n > 1))
        return 0;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        x = x * 10 + (unsigned long long)(s[i] - '0');
    }
    return x >= min && x <= 4294967295ULL;
}

/* 1 when s is "" or items separated by single commas, each an id (ids)
 * or a userid. */
static int
list_ok(const char *s, int ids)
{
    char item[72];
    const char *end;
    size_t n;

    while (*s != '\0') {
        end = strchr(s, ',');
        n = end != NULL ? (size_t)(end - s) : strlen(s);
        if (ids) {
            if (!id_text_ok(s, n, 1))
                return 0;
        } else {
            if (n == 0 || n >= sizeof(item))
                return 0;
            memcpy(item, s, n);
            item[n] = '\0';
            if (!dir_is_userid(item))
                return 0;
        }
        if (end == NULL)
            return 1;
        s = end + 1;
        if (*s == '\0')
            return 0;
    }
    return 1;
}

static const char *
field(const struct wecom_xml *ev, const char *name)
{
    const char *v = wecom_xml_get(ev, name);

    return v != NULL ? v : "";
}

enum brk_err
dir_contact_read(const struct wecom_xml *ev, struct dir_contact *out)
{
    struct dir_contact c;
    const char *t;
    int user_ev, party_ev;

    memset(&c, 0, sizeof(c));
    c.type = t = field(ev, "ChangeType");
    c.user = c.new_user = c.depts = c.party = c.parent = c.tag = "";
    c.add_users = c.del_users = c.add_parties = c.del_parties = "";
    user_ev = strcmp(t, "create_user") == 0 || strcmp(t, "update_user") == 0 ||
              strcmp(t, "delete_user") == 0;
    party_ev = strcmp(t, "create_party") == 0 ||
               strcmp(t, "update_party") == 0 || strcmp(t, "delete_party") == 0;
    if (user_ev) {
        c.user = field(ev, "UserID");
        if (c.user[0] == '\0')
            c.user = field(ev, "OpenUserID");
        c.new_user = field(ev, "NewUserID");
        c.depts = field(ev, "Department");
        if (!dir_is_userid(c.user) ||
            (c.new_user[0] != '\0' && !dir_is_userid(c.new_user)) ||
            !list_ok(c.depts, 1))
            return BRK_ERR_UPSTREAM_BAD;
    } else if (party_ev) {
        c.party = field(ev, "Id");
        c.parent = field(ev, "ParentId");
        if (!id_text_ok(c.party, strlen(c.party), 1) ||
            (c.parent[0] != '\0' && !id_text_ok(c.parent, strlen(c.parent), 0)))
            return BRK_ERR_UPSTREAM_BAD;
    } else if (strcmp(t, "update_tag") == 0) {
        c.tag = field(ev, "TagId");
        c.add_users = field(ev, "AddUserItems");
        c.del_users = field(ev, "DelUserItems");
        c.add_parties = field(ev, "AddPartyItems");
        c.del_parties = field(ev, "DelPartyItems");
        if (!id_text_ok(c.tag, strlen(c.tag), 1) || !list_ok(c.add_users, 0) ||
            !list_ok(c.del_users, 0) || !list_ok(c.add_parties, 1) ||
            !list_ok(c.del_parties, 1))
            return BRK_ERR_UPSTREAM_BAD;
    }
    *out = c;
    return BRK_OK;
}
