/*
 * The directory sync planner (see dirsync.h): a state machine over the
 * grant, fed WeCom's replies. Its phases run in order, each handing out
 * up to DIRSYNC_MAX_INFLIGHT calls at once, and the next phase starts when
 * every call of the current one is answered, because it needs their
 * answers: the department subtrees are final only once the tags (their
 * partylists) are in, and "not seen in a department" is known only once
 * every department is listed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dirsync.h"
#include "errcodes.h"

/* Bound on range departments plus tag departments (before dedup). */
#define DS_MAX_ROOTS 1000000
#define DS_PATH_MAX  256
/* {"cursor":"<cursor, each byte escaped at worst>","limit":N} */
#define DS_BODY_MAX (2 * DIRSYNC_CURSOR_MAX + 64)

enum ds_plan { DS_CONTACTS, DS_MEMBER_AUTH, DS_RANGE_ONLY };

enum ds_phase {
    PH_TREE,    /* department/simplelist and tag/get */
    PH_MEMBERS, /* user/simplelist per planned department */
    PH_PAGES,   /* user/list_member_auth, one page at a time */
    PH_NAMED,   /* user/get per named member not seen */
    PH_DONE
};

enum ds_kind { K_FREE = 0, K_TREE, K_TAG, K_DEPT_USERS, K_PAGE, K_USER };

struct ds_slot {
    enum ds_kind kind;
    unsigned id;
    long num;        /* K_TAG: tag id; K_DEPT_USERS: department id */
    const char *uid; /* K_USER: borrowed from ds->named's keys */
    char path[DS_PATH_MAX];
    char body[DS_BODY_MAX];
};

struct ds_dept {
    uint32_t id, parent;
    unsigned char keep; /* in a planned subtree */
    unsigned char gone; /* deleted since the tree was read */
};

struct dirsync {
    enum ds_plan plan;
    enum ds_phase phase;
    enum brk_err fail; /* BRK_OK while the sync may complete */
    int contacts;      /* the grant reads contacts */
    unsigned next_id, ncalls, inflight;
    struct ds_slot slot[DIRSYNC_MAX_INFLIGHT];

    uint32_t *roots; /* range departments, then the tags' departments */
    size_t nroots, roots_cap;
    uint32_t *tagids; /* the range's tags, sorted, unique */
    size_t ntags, tag_i;
    int tree_asked;

    struct ds_dept *dept; /* department/simplelist, sorted by id */
    size_t ndept;
    uint32_t *planned; /* kept departments, ascending */
    size_t nplanned, planned_i;

    json_t *named;      /* userid -> null: range and tag members */
    const char **queue; /* named members to user/get (keys of named) */
    size_t nqueue, queue_i;

    char *cursor;    /* the next page's cursor; NULL for the first */
    json_t *cursors; /* every cursor seen, to refuse a loop */
    unsigned pages;
    int page_asked, last_page;

    json_t *users; /* userid -> "d1,d2" */
    json_t *tags;  /* tag id -> {"users":[...],"parties":[...]} as text */
};

/*---- Small helpers ----*/

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static size_t
sort_unique(uint32_t *v, size_t n)
{
    size_t i, o = 0;

    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_u32);
    for (i = 1; i < n; i++)
        if (v[i] != v[o])
            v[++o] = v[i];
    return o + 1;
}

/* A department or tag id: a JSON integer 1..4294967295. */
static int
pos_id(const json_t *v, uint32_t *out)
{
    long id;

    if (!dir_parse_id(v, &id) || id == 0)
        return 0;
    *out = (uint32_t)id;
    return 1;
}

/* The userid in v, or NULL when v is not a valid userid string (an
 * embedded NUL counts as invalid). */
static const char *
userid_of(const json_t *v)
{
    const char *s = json_string_value(v);

    if (s == NULL || strlen(s) != json_string_length(v) || !dir_is_userid(s))
        return NULL;
    return s;
}

static enum brk_err
u32_push(uint32_t **v, size_t *n, size_t *cap, uint32_t x, size_t max)
{
    uint32_t *nv;
    size_t ncap;

    if (*n >= max)
        return BRK_ERR_TOOBIG;
    if (*n == *cap) {
        ncap = *cap ? *cap * 2 : 16;
        nv = brk_realloc(*v, ncap * sizeof(*nv));
        if (nv == NULL)
            return BRK_ERR_NOMEM;
        *v = nv;
        *cap = ncap;
    }
    (*v)[(*n)++] = x;
    return BRK_OK;
}

static struct ds_dept *
dept_find(const struct dirsync *ds, uint32_t id)
{
    size_t lo = 0, hi = ds->ndept, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (ds->dept[mid].id == id)
            return &ds->dept[mid];
        if (ds->dept[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int
dept_planned(const struct dirsync *ds, uint32_t id)
{
    const struct ds_dept *d = dept_find(ds, id);

    return d != NULL && d->keep;
}

/* Add userid to the named members (the range's or a tag's). */
static enum brk_err
named_add(struct dirsync *ds, const char *uid)
{
    if (json_object_get(ds->named, uid) != NULL)
        return BRK_OK;
    if (json_object_size(ds->named) >= DIRSYNC_MAX_MEMBERS)
        return BRK_ERR_TOOBIG;
    return json_object_set_new(ds->named, uid, json_null()) ? BRK_ERR_NOMEM
                                                            : BRK_OK;
}

/*
 * Merge departments ids[0..n) (sorted, unique, n >= 1) into the member's
 * entry "d1,d2" of ds->users (kept sorted and unique).
 */
static enum brk_err
member_merge(struct dirsync *ds, const char *uid, const uint32_t *ids, size_t n)
{
    uint32_t *all = NULL;
    const json_t *cur = json_object_get(ds->users, uid);
    const char *s = cur ? json_string_value(cur) : "";
    char *text = NULL, *end;
    size_t na = 0, i, off = 0, cap, nold = 0;
    unsigned long v;
    enum brk_err err = BRK_ERR_NOMEM;

    if (cur == NULL && json_object_size(ds->users) >= DIRSYNC_MAX_MEMBERS)
        return BRK_ERR_TOOBIG;
    for (i = 0; s[i] != '\0'; i++)
        nold += s[i] == ',';
    all = brk_malloc((nold + 1 + n) * sizeof(*all));
    if (all == NULL)
        goto out;
    /* the stored text is ours: digits separated by commas */
    for (; *s != '\0'; s = end) {
        v = strtoul(s, &end, 10);
        all[na++] = (uint32_t)v;
        if (*end == ',')
            end++;
    }
    i = na;
    memcpy(all + na, ids, n * sizeof(*ids));
    na = sort_unique(all, na + n);
    err = BRK_ERR_UPSTREAM_BAD;
    if (na > DIRSYNC_MAX_MEMBER_DEPTS)
        goto out;
    err = BRK_OK;
    if (cur != NULL && na == i)
        goto out; /* nothing new */
    err = BRK_ERR_NOMEM;
    cap = na * 11 + 1;
    text = brk_malloc(cap);
    if (text == NULL)
        goto out;
    for (i = 0; i < na; i++)
        off += (size_t)snprintf(text + off, cap - off, "%s%lu", i ? "," : "",
                                (unsigned long)all[i]);
    if (json_object_set_new(ds->users, uid, json_string(text)) != 0)
        goto out;
    err = BRK_OK;
out:
    brk_free(text);
    brk_free(all);
    return err;
}

/*
 * The department ids of a member row's "department" array into ids
 * (capacity DIRSYNC_MAX_MEMBER_DEPTS), sorted and unique; only planned
 * ones when planned_only. BRK_ERR_UPSTREAM_BAD when the array is missing,
 * too long or holds a bad id.
 */
static enum brk_err
row_depts(const struct dirsync *ds, const json_t *row, int planned_only,
          uint32_t *ids, size_t *n)
{
    const json_t *arr = json_object_get(row, "department"), *v;
    size_t i, k = 0;
    uint32_t id;

    if (!json_is_array(arr) || json_array_size(arr) > DIRSYNC_MAX_MEMBER_DEPTS)
        return BRK_ERR_UPSTREAM_BAD;
    json_array_foreach(arr, i, v)
    {
        if (!pos_id(v, &id))
            return BRK_ERR_UPSTREAM_BAD;
        /* a department outside the plan is not trusted: dropped */
        if (!planned_only || dept_planned(ds, id))
            ids[k++] = id;
    }
    *n = sort_unique(ids, k);
    return BRK_OK;
}

/*---- Reading the grant ----*/

/* The ids of privilege[name] (missing or null: none) onto *v. */
static enum brk_err
grant_ids(const json_t *priv, const char *name, uint32_t **v, size_t *n,
          size_t *cap, size_t max)
{
    const json_t *arr = json_object_get(priv, name), *x;
    size_t i;
    uint32_t id;
    enum brk_err err;

    if (arr == NULL || json_is_null(arr))
        return BRK_OK;
    if (!json_is_array(arr))
        return BRK_ERR_UPSTREAM_BAD;
    json_array_foreach(arr, i, x)
    {
        if (!pos_id(x, &id))
            return BRK_ERR_UPSTREAM_BAD;
        err = u32_push(v, n, cap, id, max);
        if (err)
            return err;
    }
    return BRK_OK;
}

static enum brk_err
grant_users(struct dirsync *ds, const json_t *priv, const char *name)
{
    const json_t *arr = json_object_get(priv, name), *x;
    const char *uid;
    size_t i;
    enum brk_err err;

    if (arr == NULL || json_is_null(arr))
        return BRK_OK;
    if (!json_is_array(arr))
        return BRK_ERR_UPSTREAM_BAD;
    json_array_foreach(arr, i, x)
    {
        uid = userid_of(x);
        if (uid == NULL)
            return BRK_ERR_UPSTREAM_BAD;
        err = named_add(ds, uid);
        if (err)
            return err;
    }
    return BRK_OK;
}

/*
 * Whether the grant reads contacts: app_permissions of the
 * agent/get_permissions reply names contact:base:base (read-only) or
 * contact:edit:all (edit); without that list, privilege.level 1, 2 or 3
 * (the levels that read the whole directory) says so.
 */
static enum brk_err
grant_contacts(const json_t *perms, const json_t *priv, int *out)
{
    const json_t *arr =
        perms ? json_object_get(perms, "app_permissions") : NULL;
    const json_t *v;
    const char *s;
    json_int_t level;
    size_t i;

    if (perms != NULL && !json_is_object(perms))
        return BRK_ERR_UPSTREAM_BAD;
    if (arr == NULL || json_is_null(arr)) {
        v = json_object_get(priv, "level");
        if (v != NULL && !json_is_integer(v))
            return BRK_ERR_UPSTREAM_BAD;
        level = json_integer_value(v);
        *out = level >= 1 && level <= 3;
        return BRK_OK;
    }
    if (!json_is_array(arr))
        return BRK_ERR_UPSTREAM_BAD;
    *out = 0;
    json_array_foreach(arr, i, v)
    {
        s = json_string_value(v);
        if (s == NULL)
            return BRK_ERR_UPSTREAM_BAD;
        if (strcmp(s, "contact:base:base") == 0 ||
            strcmp(s, "contact:edit:all") == 0)
            *out = 1;
    }
    return BRK_OK;
}

/* No contacts permission: the range's departments, parents unknown. */
static enum brk_err
plan_range_only(struct dirsync *ds)
{
    size_t i, n = sort_unique(ds->roots, ds->nroots);

    ds->dept = brk_calloc(n + 1, sizeof(*ds->dept));
    if (ds->dept == NULL)
        return BRK_ERR_NOMEM;
    for (i = 0; i < n; i++) {
        ds->dept[i].id = ds->roots[i];
        ds->dept[i].keep = 1;
    }
    ds->ndept = n;
    return BRK_OK;
}

/*
 * Plan the sync for agent (auth_info.agent[0] of get_auth_info: privilege,
 * auth_mode) and permissions (the agent/get_permissions reply; NULL: judge
 * by privilege.level). Both borrowed, not kept. Returns
 * BRK_ERR_UPSTREAM_BAD when either is malformed (a list of the wrong type,
 * an id that is not an integer 1..4294967295, a bad userid, an auth_mode
 * other than 0 or 1), BRK_ERR_TOOBIG past DIRSYNC_MAX_DEPARTMENTS range
 * departments, DIRSYNC_MAX_TAGS tags or DIRSYNC_MAX_MEMBERS members,
 * BRK_ERR_NOMEM. *out is written only on success: owned, dirsync_free.
 */
enum brk_err
dirsync_new(const json_t *agent, const json_t *permissions,
            struct dirsync **out)
{
    struct dirsync *ds = NULL;
    const json_t *priv = json_object_get(agent, "privilege");
    const json_t *mode = json_object_get(agent, "auth_mode");
    size_t tcap = 0;
    enum brk_err err = BRK_ERR_UPSTREAM_BAD;

    if (!json_is_object(agent) || !json_is_object(priv) ||
        (mode != NULL && !json_is_integer(mode)) ||
        json_integer_value(mode) < 0 || json_integer_value(mode) > 1)
        goto out;
    err = BRK_ERR_NOMEM;
    ds = brk_calloc(1, sizeof(*ds));
    if (ds == NULL)
        goto out;
    ds->named = json_object();
    ds->cursors = json_object();
    ds->users = json_object();
    ds->tags = json_object();
    if (ds->named == NULL || ds->cursors == NULL || ds->users == NULL ||
        ds->tags == NULL)
        goto out;
    err = grant_contacts(permissions, priv, &ds->contacts);
    if (!err)
        err = grant_ids(priv, "allow_party", &ds->roots, &ds->nroots,
                        &ds->roots_cap, DIRSYNC_MAX_DEPARTMENTS);
    if (!err)
        err = grant_ids(priv, "extra_party", &ds->roots, &ds->nroots,
                        &ds->roots_cap, DIRSYNC_MAX_DEPARTMENTS);
    if (!err)
        err = grant_ids(priv, "allow_tag", &ds->tagids, &ds->ntags, &tcap,
                        DIRSYNC_MAX_TAGS);
    if (!err)
        err = grant_ids(priv, "extra_tag", &ds->tagids, &ds->ntags, &tcap,
                        DIRSYNC_MAX_TAGS);
    if (!err)
        err = grant_users(ds, priv, "allow_user");
    if (!err)
        err = grant_users(ds, priv, "extra_user");
    if (err)
        goto out;
    ds->ntags = sort_unique(ds->tagids, ds->ntags);
    if (json_integer_value(mode) == 1) {
        ds->plan = DS_MEMBER_AUTH;
        ds->phase = PH_PAGES;
    } else if (ds->contacts) {
        ds->plan = DS_CONTACTS;
        ds->phase = PH_TREE;
    } else {
        ds->plan = DS_RANGE_ONLY;
        ds->phase = PH_DONE;
        err = plan_range_only(ds);
        if (err)
            goto out;
    }
    *out = ds;
    ds = NULL;
    err = BRK_OK;
out:
    dirsync_free(ds);
    return err;
}

/*---- Handing out calls ----*/

static struct ds_slot *
slot_free(struct dirsync *ds)
{
    size_t i;

    for (i = 0; i < nitems(ds->slot); i++)
        if (ds->slot[i].kind == K_FREE)
            return &ds->slot[i];
    return NULL;
}

static struct ds_slot *
slot_find(struct dirsync *ds, unsigned id)
{
    size_t i;

    for (i = 0; i < nitems(ds->slot); i++)
        if (ds->slot[i].kind != K_FREE && ds->slot[i].id == id)
            return &ds->slot[i];
    return NULL;
}

/* The list_member_auth body; the cursor was checked to be printable
 * ASCII when it was stored. */
static void
page_body(const struct dirsync *ds, char *buf, size_t cap)
{
    const char *c;
    size_t o = 0;

    if (ds->cursor == NULL) {
        snprintf(buf, cap, "{\"limit\":%d}", DIRSYNC_PAGE_LIMIT);
        return;
    }
    o = (size_t)snprintf(buf, cap, "{\"cursor\":\"");
    for (c = ds->cursor; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\')
            buf[o++] = '\\';
        buf[o++] = *c;
    }
    snprintf(buf + o, cap - o, "\",\"limit\":%d}", DIRSYNC_PAGE_LIMIT);
}

/*
 * The next call that may start now into *call (its strings borrowed until
 * dirsync_reply or dirsync_error for call->id). BRK_ERR_NOTFOUND when
 * none may start until a reply arrives, or when all is done; the sync's
 * failure code once it has failed. Allocates nothing.
 */
enum brk_err
dirsync_next(struct dirsync *ds, struct dirsync_call *call)
{
    struct ds_slot *s;
    char enc[3 * 64 + 1];

    if (ds->fail)
        return ds->fail;
    s = ds->inflight < DIRSYNC_MAX_INFLIGHT ? slot_free(ds) : NULL;
    if (s == NULL)
        return BRK_ERR_NOTFOUND;
    s->body[0] = '\0';
    switch (ds->phase) {
    case PH_TREE:
        if (!ds->tree_asked) {
            ds->tree_asked = 1;
            s->kind = K_TREE;
            snprintf(s->path, sizeof(s->path),
                     "/cgi-bin/department/simplelist");
        } else if (ds->tag_i < ds->ntags) {
            s->kind = K_TAG;
            s->num = ds->tagids[ds->tag_i++];
            snprintf(s->path, sizeof(s->path), "/cgi-bin/tag/get?tagid=%ld",
                     s->num);
        } else {
            return BRK_ERR_NOTFOUND;
        }
        break;
    case PH_MEMBERS:
        if (ds->planned_i >= ds->nplanned)
            return BRK_ERR_NOTFOUND;
        s->kind = K_DEPT_USERS;
        s->num = ds->planned[ds->planned_i++];
        snprintf(s->path, sizeof(s->path),
                 "/cgi-bin/user/simplelist?department_id=%ld", s->num);
        break;
    case PH_PAGES:
        if (ds->page_asked || ds->last_page)
            return BRK_ERR_NOTFOUND;
        ds->page_asked = 1;
        s->kind = K_PAGE;
        snprintf(s->path, sizeof(s->path), "/cgi-bin/user/list_member_auth");
        page_body(ds, s->body, sizeof(s->body));
        break;
    case PH_NAMED:
        if (ds->queue_i >= ds->nqueue)
            return BRK_ERR_NOTFOUND;
        s->kind = K_USER;
        s->uid = ds->queue[ds->queue_i++];
        codec_pct_encode(s->uid, enc);
        snprintf(s->path, sizeof(s->path), "/cgi-bin/user/get?userid=%s", enc);
        break;
    default:
        return BRK_ERR_NOTFOUND;
    }
    s->id = ++ds->next_id;
    ds->ncalls++;
    ds->inflight++;
    call->id = s->id;
    call->path_query = s->path;
    call->body = s->kind == K_PAGE ? s->body : NULL;
    call->method = s->kind == K_PAGE ? "POST" : "GET";
    switch (s->kind) {
    case K_TREE:
        call->api = "department/simplelist";
        break;
    case K_TAG:
        call->api = "tag/get";
        break;
    case K_DEPT_USERS:
        call->api = "user/simplelist";
        break;
    case K_PAGE:
        call->api = "user/list_member_auth";
        break;
    default:
        call->api = "user/get";
        break;
    }
    return BRK_OK;
}

/*---- Phase changes ----*/

static int
cmp_parent(const void *a, const void *b, void *arg)
{
    const struct ds_dept *d = arg;
    uint32_t x = d[*(const uint32_t *)a].parent;
    uint32_t y = d[*(const uint32_t *)b].parent;

    return x < y ? -1 : x > y;
}

/* Mark the subtrees of the roots (range and tag departments) in the
 * tree; cycles are harmless (each department is visited once). */
static enum brk_err
plan_subtrees(struct dirsync *ds)
{
    uint32_t *byparent = NULL, *stack = NULL;
    struct ds_dept *d = ds->dept, *r;
    size_t i, n = ds->ndept, top = 0, lo, hi, mid, k = 0;
    uint32_t cur;
    enum brk_err err = BRK_ERR_NOMEM;

    byparent = brk_calloc(n + 1, sizeof(*byparent));
    stack = brk_calloc(n + 1, sizeof(*stack));
    ds->planned = brk_calloc(n + 1, sizeof(*ds->planned));
    if (byparent == NULL || stack == NULL || ds->planned == NULL)
        goto out;
    for (i = 0; i < n; i++)
        byparent[i] = (uint32_t)i;
    qsort_r(byparent, n, sizeof(*byparent), cmp_parent, d);
    ds->nroots = sort_unique(ds->roots, ds->nroots);
    for (i = 0; i < ds->nroots; i++) {
        /* a range department the tree lacks does not exist (any more) */
        r = dept_find(ds, ds->roots[i]);
        if (r != NULL && !r->keep) {
            r->keep = 1;
            stack[top++] = (uint32_t)(r - d);
        }
    }
    while (top > 0) {
        cur = d[stack[--top]].id;
        lo = 0;
        hi = n;
        while (lo < hi) {
            mid = lo + (hi - lo) / 2;
            if (d[byparent[mid]].parent < cur)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < n && d[byparent[lo]].parent == cur; lo++)
            if (!d[byparent[lo]].keep) {
                d[byparent[lo]].keep = 1;
                stack[top++] = byparent[lo];
            }
    }
    for (i = 0; i < n; i++)
        if (d[i].keep)
            ds->planned[k++] = d[i].id;
    ds->nplanned = k;
    err = BRK_OK;
out:
    brk_free(byparent);
    brk_free(stack);
    return err;
}

/* The named members not seen yet, in the order they were named. */
static enum brk_err
plan_named(struct dirsync *ds)
{
    const char *key;
    json_t *v;

    if (!ds->contacts)
        return BRK_OK;
    ds->queue = brk_calloc(json_object_size(ds->named) + 1, sizeof(*ds->queue));
    if (ds->queue == NULL)
        return BRK_ERR_NOMEM;
    json_object_foreach(ds->named, key, v)
    {
        if (json_object_get(ds->users, key) == NULL)
            ds->queue[ds->nqueue++] = key;
    }
    return BRK_OK;
}

/* Start the next phase once every call of this one is answered. */
static enum brk_err
advance(struct dirsync *ds)
{
    enum brk_err err;

    while (ds->inflight == 0) {
        switch (ds->phase) {
        case PH_TREE:
            if (!ds->tree_asked || ds->tag_i < ds->ntags)
                return BRK_OK;
            err = plan_subtrees(ds);
            if (err)
                return err;
            ds->phase = PH_MEMBERS;
            break;
        case PH_MEMBERS:
            if (ds->planned_i < ds->nplanned)
                return BRK_OK;
            err = plan_named(ds);
            if (err)
                return err;
            ds->phase = PH_NAMED;
            break;
        case PH_PAGES:
            if (!ds->last_page)
                return BRK_OK;
            err = plan_named(ds);
            if (err)
                return err;
            ds->phase = PH_NAMED;
            break;
        case PH_NAMED:
            if (ds->queue_i < ds->nqueue)
                return BRK_OK;
            ds->phase = PH_DONE;
            break;
        default:
            return BRK_OK;
        }
    }
    return BRK_OK;
}

/*---- Replies ----*/

static int
cmp_dept(const void *a, const void *b)
{
    const struct ds_dept *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

/* department/simplelist {"department_id":[{"id","parentid"}]}. */
static enum brk_err
on_tree(struct dirsync *ds, const json_t *body)
{
    const json_t *arr = json_object_get(body, "department_id"), *row, *p;
    size_t i, n;
    long parent;

    if (!json_is_array(arr))
        return BRK_ERR_UPSTREAM_BAD;
    n = json_array_size(arr);
    if (n > DIRSYNC_MAX_DEPARTMENTS)
        return BRK_ERR_TOOBIG;
    ds->dept = brk_calloc(n + 1, sizeof(*ds->dept));
    if (ds->dept == NULL)
        return BRK_ERR_NOMEM;
    json_array_foreach(arr, i, row)
    {
        p = json_object_get(row, "parentid");
        parent = 0;
        if (!pos_id(json_object_get(row, "id"), &ds->dept[i].id) ||
            (p != NULL && !dir_parse_id(p, &parent)))
            return BRK_ERR_UPSTREAM_BAD;
        ds->dept[i].parent = (uint32_t)parent;
    }
    ds->ndept = n;
    qsort(ds->dept, n, sizeof(*ds->dept), cmp_dept);
    for (i = 1; i < n; i++)
        if (ds->dept[i].id == ds->dept[i - 1].id)
            return BRK_ERR_UPSTREAM_BAD;
    return BRK_OK;
}

/* tag/get {"userlist":[{"userid"}],"partylist":[ids]}. */
static enum brk_err
on_tag(struct dirsync *ds, long tagid, const json_t *body)
{
    const json_t *ul = json_object_get(body, "userlist");
    const json_t *pl = json_object_get(body, "partylist"), *v;
    const char *uid;
    char key[24], *value = NULL;
    size_t i;
    uint32_t id;
    enum brk_err err;

    if (!json_is_array(ul) || !json_is_array(pl))
        return BRK_ERR_UPSTREAM_BAD;
    if (json_array_size(ul) > DIRSYNC_MAX_MEMBERS ||
        json_array_size(pl) > DIRSYNC_MAX_DEPARTMENTS)
        return BRK_ERR_TOOBIG;
    json_array_foreach(ul, i, v)
    {
        uid = userid_of(json_object_get(v, "userid"));
        if (uid == NULL)
            return BRK_ERR_UPSTREAM_BAD;
        err = named_add(ds, uid);
        if (err)
            return err;
    }
    json_array_foreach(pl, i, v)
    {
        if (!pos_id(v, &id))
            return BRK_ERR_UPSTREAM_BAD;
        err =
            u32_push(&ds->roots, &ds->nroots, &ds->roots_cap, id, DS_MAX_ROOTS);
        if (err)
            return err;
    }
    err = dir_tag_value(body, &value);
    if (err)
        return err;
    snprintf(key, sizeof(key), "%ld", tagid);
    if (json_object_set_new(ds->tags, key, json_string(value)) != 0)
        err = BRK_ERR_NOMEM;
    brk_free(value);
    return err;
}

/* user/simplelist {"userlist":[{"userid","department":[ids]}]}: each
 * member with its planned departments. */
static enum brk_err
on_dept_users(struct dirsync *ds, const json_t *body)
{
    const json_t *arr = json_object_get(body, "userlist"), *row;
    uint32_t ids[DIRSYNC_MAX_MEMBER_DEPTS];
    const char *uid;
    size_t i, n;
    enum brk_err err;

    if (!json_is_array(arr))
        return BRK_ERR_UPSTREAM_BAD;
    json_array_foreach(arr, i, row)
    {
        uid = userid_of(json_object_get(row, "userid"));
        if (uid == NULL)
            return BRK_ERR_UPSTREAM_BAD;
        err = row_depts(ds, row, 1, ids, &n);
        if (!err && n > 0)
            err = member_merge(ds, uid, ids, n);
        if (err)
            return err;
    }
    return BRK_OK;
}

/* The cursor of a page: NULL when done; BRK_ERR_UPSTREAM_BAD when not a
 * string of printable ASCII up to DIRSYNC_CURSOR_MAX bytes. */
static enum brk_err
page_cursor(const json_t *body, const char **out)
{
    const json_t *c = json_object_get(body, "next_cursor");
    const char *s;
    size_t i, n;

    *out = NULL;
    if (c == NULL || json_is_null(c))
        return BRK_OK;
    s = json_string_value(c);
    n = json_string_length(c);
    if (s == NULL || n > DIRSYNC_CURSOR_MAX)
        return BRK_ERR_UPSTREAM_BAD;
    for (i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] >= 0x7f)
            return BRK_ERR_UPSTREAM_BAD;
    *out = n > 0 ? s : NULL;
    return BRK_OK;
}

/*
 * user/list_member_auth {"member_auth_list":[{"userid"|"open_userid"}],
 * "next_cursor"} (shape UNCONFIRMED): a row is keyed by its userid when
 * it has one, else by its open_userid; member-authorized members report
 * department 1.
 */
static enum brk_err
on_page(struct dirsync *ds, const json_t *body)
{
    static const uint32_t root = 1;
    const json_t *arr = json_object_get(body, "member_auth_list"), *row, *u;
    const char *uid, *next;
    char *copy;
    size_t i;
    enum brk_err err;

    if (!json_is_array(arr))
        return BRK_ERR_UPSTREAM_BAD;
    err = page_cursor(body, &next);
    if (err)
        return err;
    json_array_foreach(arr, i, row)
    {
        u = json_object_get(row, "userid");
        if (u == NULL || json_is_null(u))
            u = json_object_get(row, "open_userid");
        uid = userid_of(u);
        if (uid == NULL)
            return BRK_ERR_UPSTREAM_BAD;
        err = member_merge(ds, uid, &root, 1);
        if (err)
            return err;
    }
    ds->pages++;
    ds->page_asked = 0;
    if (next == NULL) {
        ds->last_page = 1;
        return BRK_OK;
    }
    /* a cursor seen before would page forever */
    if (json_object_get(ds->cursors, next) != NULL)
        return BRK_ERR_UPSTREAM_BAD;
    if (ds->pages >= DIRSYNC_MAX_PAGES)
        return BRK_ERR_TOOBIG;
    copy = brk_strdup(next);
    if (copy == NULL ||
        json_object_set_new(ds->cursors, next, json_null()) != 0) {
        brk_free(copy);
        return BRK_ERR_NOMEM;
    }
    brk_free(ds->cursor);
    ds->cursor = copy;
    return BRK_OK;
}

/* user/get {"department":[ids]}: a named member with the departments
 * WeCom reports (none: the member stays out of the users map and is
 * visible through the range alone). */
static enum brk_err
on_user(struct dirsync *ds, const char *uid, const json_t *body)
{
    uint32_t ids[DIRSYNC_MAX_MEMBER_DEPTS];
    size_t n;
    enum brk_err err;

    err = row_depts(ds, body, 0, ids, &n);
    if (!err && n > 0)
        err = member_merge(ds, uid, ids, n);
    return err;
}

/*
 * Feed the reply body (errcode 0, borrowed) of call id. BRK_ERR_NOTFOUND
 * for an id not outstanding (nothing changes); else the call is answered
 * and the result is BRK_OK, or the sync fails with BRK_ERR_UPSTREAM_BAD
 * (a reply of the wrong shape), BRK_ERR_TOOBIG (past a bound),
 * BRK_ERR_NOMEM, or the earlier failure code when it had already failed.
 */
enum brk_err
dirsync_reply(struct dirsync *ds, unsigned id, const json_t *body)
{
    struct ds_slot *s = slot_find(ds, id);
    enum ds_kind kind;
    enum brk_err err;

    if (s == NULL)
        return BRK_ERR_NOTFOUND;
    kind = s->kind;
    s->kind = K_FREE;
    ds->inflight--;
    if (ds->fail)
        return ds->fail;
    err = BRK_ERR_UPSTREAM_BAD;
    if (json_is_object(body)) {
        switch (kind) {
        case K_TREE:
            err = on_tree(ds, body);
            break;
        case K_TAG:
            err = on_tag(ds, s->num, body);
            break;
        case K_DEPT_USERS:
            err = on_dept_users(ds, body);
            break;
        case K_PAGE:
            err = on_page(ds, body);
            break;
        default:
            err = on_user(ds, s->uid, body);
            break;
        }
    }
    if (!err)
        err = advance(ds);
    ds->fail = err;
    return err;
}

/*
 * Feed WeCom's final errcode (retries are the caller's business) for call
 * id. Tolerated, BRK_OK, because each means the record went away between
 * get_auth_info and the call, which leaves the rest of the directory
 * whole (a change_contact or change_auth event follows such changes):
 *  - user/get: 60111 (userid not found: the member left or was deleted)
 *    and 60011 (no privilege: the member left the range);
 *  - user/simplelist: 60003 and 60123 (department not found: deleted
 *    after the tree was read; it leaves the result's parents);
 *  - tag/get: 40068 (invalid tagid: the tag was deleted; no entry).
 * Anything else fails the sync with BRK_ERR_WECOM (a department the app
 * may not list would leave its members out). BRK_ERR_NOTFOUND for an id
 * not outstanding; the earlier failure code once the sync has failed.
 */
enum brk_err
dirsync_error(struct dirsync *ds, unsigned id, long errcode)
{
    struct ds_slot *s = slot_find(ds, id);
    struct ds_dept *d;
    enum ds_kind kind;
    int ok = 0;
    enum brk_err err;

    if (s == NULL)
        return BRK_ERR_NOTFOUND;
    kind = s->kind;
    s->kind = K_FREE;
    ds->inflight--;
    if (ds->fail)
        return ds->fail;
    switch (kind) {
    case K_USER:
        ok = errcode == WECOM_ERR_USER_NOT_FOUND ||
             errcode == WECOM_ERR_NO_PRIVILEGE;
        break;
    case K_DEPT_USERS:
        ok = errcode == WECOM_ERR_DEPT_NOT_FOUND ||
             errcode == WECOM_ERR_DEPT_NOT_FOUND_ID;
        d = dept_find(ds, (uint32_t)s->num);
        if (ok && d != NULL)
            d->gone = 1;
        break;
    case K_TAG:
        ok = errcode == WECOM_ERR_INVALID_TAGID;
        break;
    default:
        break;
    }
    err = ok ? advance(ds) : BRK_ERR_WECOM;
    ds->fail = err;
    return err;
}

/*---- Results ----*/

/* Nonzero when every call is answered and nothing failed. Cannot fail. */
int
dirsync_done(const struct dirsync *ds)
{
    return ds->fail == BRK_OK && ds->phase == PH_DONE;
}

/* BRK_OK while the sync may still complete, else why it failed. */
enum brk_err
dirsync_status(const struct dirsync *ds)
{
    return ds->fail;
}

/* The plan's name (static string). Cannot fail. */
const char *
dirsync_plan(const struct dirsync *ds)
{
    switch (ds->plan) {
    case DS_CONTACTS:
        return "contacts";
    case DS_MEMBER_AUTH:
        return "member_auth";
    default:
        return "range_only";
    }
}

/* Calls handed out by dirsync_next so far. Cannot fail. */
unsigned
dirsync_calls(const struct dirsync *ds)
{
    return ds->ncalls;
}

/*
 * The directory of a completed sync: parents gets department id ->
 * parent id pairs (the planned departments, ascending; *parents must be
 * empty, free with dir_pairs_free), users a new reference to the object
 * userid -> "d1,d2", tags a new reference to the object tag id -> the
 * text {"users":[...],"parties":[...]} (dir_tag_value's). The planner no
 * longer changes either object. Written only on success. The failure
 * code of a failed sync; BRK_ERR_INVAL before it is done; BRK_ERR_NOMEM.
 */
enum brk_err
dirsync_result(const struct dirsync *ds, struct dir_pairs *parents,
               json_t **users, json_t **tags)
{
    struct dir_pairs p = {0};
    char f[16], v[16];
    size_t i;
    enum brk_err err = BRK_OK;

    if (ds->fail)
        return ds->fail;
    if (ds->phase != PH_DONE)
        return BRK_ERR_INVAL;
    for (i = 0; i < ds->ndept && !err; i++) {
        if (!ds->dept[i].keep || ds->dept[i].gone)
            continue;
        snprintf(f, sizeof(f), "%lu", (unsigned long)ds->dept[i].id);
        snprintf(v, sizeof(v), "%lu", (unsigned long)ds->dept[i].parent);
        err = dir_pairs_add(&p, f, v);
    }
    if (err) {
        dir_pairs_free(&p);
        return err;
    }
    *parents = p;
    *users = json_incref(ds->users);
    *tags = json_incref(ds->tags);
    return BRK_OK;
}

/* Free the planner and everything it lent; NULL is a no-op. */
void
dirsync_free(struct dirsync *ds)
{
    if (ds == NULL)
        return;
    brk_free(ds->roots);
    brk_free(ds->tagids);
    brk_free(ds->dept);
    brk_free(ds->planned);
    brk_free(ds->queue);
    brk_free(ds->cursor);
    json_decref(ds->named);
    json_decref(ds->cursors);
    json_decref(ds->users);
    json_decref(ds->tags);
    brk_free(ds);
}
