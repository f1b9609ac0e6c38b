/*
 * The visible-range resolver (see visible_range.h): resolves a privilege
 * object over the stored directory into open-addressing hash sets of
 * visible members and departments and a sorted array of tags. It keeps
 * the department tree, each visible member's departments and each
 * visible tag's contents, which is what vrange_narrow needs.
 *
 * Input rules; anything else is BRK_ERR_INVAL (fail closed):
 *  - ids in the privilege lists and in a tag's "parties" are JSON integers
 *    in 0..4294967295; numeric strings, reals and negatives are refused;
 *  - ids in parents (keys and values) and in a member's "d1,d2" are
 *    decimal digits with no sign, space or leading zero ("0" itself is
 *    allowed), so that two spellings never name one department;
 *  - userids are strings of 1..256 bytes without NUL;
 *  - a privilege list that is missing or null is empty, a tag's missing
 *    or null "users"/"parties" is empty, a NULL parents, users or tags
 *    is an empty part of the directory; unknown keys are ignored;
 *  - every entry of parents, users and tags is checked, not only those
 *    the privilege reaches.
 * A parent of "0" means "no parent" (WeCom's root 1 sits under 0), so 0 is
 * never an ancestor: allow_party [0] sees department 0 alone, not the corp.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "visible_range.h"

#define VR_MAX_ENTRIES 2000000  /* members, departments, directory entries */
#define VR_MAX_LINKS   16000000 /* member-department and tag references */
#define VR_USERID_MAX  256
#define VR_NONE        UINT32_MAX /* a removed member in a remap table */

/* Open-addressing set of department or tag ids. */
struct vr_idset {
    uint64_t *slot; /* id + 1, 0 when empty */
    size_t cap;     /* a power of two, at least twice n */
    size_t n;
};

/* A member named by the privilege or a visible tag: visible whatever its
 * departments. */
#define VRM_LISTED 1u
/* A member no longer visible after vrange_set_member: kept in the table
 * (indices stay valid) until the next repack, answered as absent. */
#define VRM_GONE 2u

struct vr_member {
    uint32_t name_off; /* into arena */
    uint32_t name_len;
    uint32_t dept_off; /* into dept */
    uint32_t dept_n;
    uint32_t hash;
    uint32_t flags; /* VRM_* */
};

/* Visible members: names in one arena, an index table over them. */
struct vr_members {
    char *arena;
    size_t arena_len, arena_cap;
    struct vr_member *ent;
    size_t n, cap;
    uint32_t *slot; /* entry index + 1, 0 when empty */
    size_t slot_cap;
    uint32_t *dept; /* each member's departments, back to back */
    size_t ndept, dept_cap;
    size_t dept_used; /* of ndept, still some member's */
    size_t gone;      /* entries marked VRM_GONE */
};

struct vr_tag {
    uint32_t id;
    uint32_t ref_off; /* users_n member indices, then parties_n ids */
    uint32_t users_n;
    uint32_t parties_n;
};

struct vr_tags {
    struct vr_tag *t; /* sorted by id */
    size_t n;
    uint32_t *ref;
    size_t nref, ref_cap;
};

/* The whole department tree (not only the visible part), as CSR. */
struct vr_tree {
    uint32_t *id;    /* sorted department ids */
    uint32_t *start; /* n + 1 offsets into child */
    uint32_t *child; /* indices into id */
    size_t n, nchild;
};

struct vrange {
    struct vr_members mem;
    struct vr_idset dept;
    struct vr_tags tags;
    struct vr_tree tree;
    int narrowed; /* vrange_narrow ran: members are not set one by one */
};

struct vr_vec {
    uint32_t *v;
    size_t n, cap;
};

/*---- Helpers ----*/

/*
 * Grow the array p of *cap elements of size elem to hold need, doubling;
 * *np is the array, moved or not. BRK_ERR_TOOBIG past max elements.
 */
static enum brk_err
reserve(void *p, size_t *cap, size_t need, size_t elem, size_t max, void **np)
{
    size_t ncap;
    void *q;

    *np = p;
    if (need <= *cap)
        return BRK_OK;
    if (need > max)
        return BRK_ERR_TOOBIG;
    ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    if (ncap > max)
        ncap = max;
    q = brk_realloc(p, ncap * elem);
    if (q == NULL)
        return BRK_ERR_NOMEM;
    *np = q;
    *cap = ncap;
    return BRK_OK;
}

static enum brk_err
vec_push(struct vr_vec *v, uint32_t x)
{
    void *np;
    enum brk_err err;

    err = reserve(v->v, &v->cap, v->n + 1, sizeof(*v->v), VR_MAX_LINKS, &np);
    if (err)
        return err;
    v->v = np;
    v->v[v->n++] = x;
    return BRK_OK;
}

/* FNV-1a, folded to 32 bits. */
static uint32_t
hash_str(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return (uint32_t)(h ^ (h >> 32));
}

/* The murmur3 finalizer: consecutive ids spread over the table. */
static size_t
hash_id(uint32_t id)
{
    uint64_t x = id;

    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return (size_t)x;
}

/* A power of two at least twice n: probes stay short. */
static size_t
table_cap(size_t n)
{
    size_t cap = 16;

    while (cap < n * 2)
        cap *= 2;
    return cap;
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

/* Sort v and drop repeats; returns the new length. */
static size_t
sort_unique(uint32_t *v, size_t n)
{
    size_t i, k = 0;

    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_u32);
    for (i = 1; i < n; i++)
        if (v[i] != v[k])
            v[++k] = v[i];
    return k + 1;
}

/* Canonical decimal 0..4294967295: no sign, space or leading zero. */
static int
parse_id(const char *s, size_t len, uint32_t *out)
{
    uint64_t x = 0;
    size_t i;

    if (len == 0 || len > 10 || (s[0] == '0' && len > 1))
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (x > UINT32_MAX)
        return 0;
    *out = (uint32_t)x;
    return 1;
}

/* A JSON integer id; numeric strings are a wrong type. */
static int
json_id(const json_t *j, uint32_t *out)
{
    json_int_t x;

    if (!json_is_integer(j))
        return 0;
    x = json_integer_value(j);
    if (x < 0 || x > (json_int_t)UINT32_MAX)
        return 0;
    *out = (uint32_t)x;
    return 1;
}

static int
userid_ok(const char *s, size_t len)
{
    return len > 0 && len <= VR_USERID_MAX && memchr(s, '\0', len) == NULL;
}

/*---- Id sets ----*/

static enum brk_err
idset_init(struct vr_idset *s, size_t n)
{
    size_t cap = table_cap(n);

    s->slot = brk_calloc(cap, sizeof(*s->slot));
    if (s->slot == NULL)
        return BRK_ERR_NOMEM;
    s->cap = cap;
    s->n = 0;
    return BRK_OK;
}

/* The set was sized by idset_init for every id added: it never fills. */
static void
idset_add(struct vr_idset *s, uint32_t id)
{
    size_t mask = s->cap - 1, i = hash_id(id) & mask;
    uint64_t k = (uint64_t)id + 1;

    for (; s->slot[i] != 0; i = (i + 1) & mask)
        if (s->slot[i] == k)
            return;
    assert(s->n + 1 < s->cap);
    s->slot[i] = k;
    s->n++;
}

static int
idset_has(const struct vr_idset *s, uint32_t id)
{
    size_t mask, i;
    uint64_t k = (uint64_t)id + 1;

    if (s->cap == 0)
        return 0;
    mask = s->cap - 1;
    for (i = hash_id(id) & mask; s->slot[i] != 0; i = (i + 1) & mask)
        if (s->slot[i] == k)
            return 1;
    return 0;
}

/*---- Members ----*/

static void
members_free(struct vr_members *m)
{
    brk_free(m->arena);
    brk_free(m->ent);
    brk_free(m->slot);
    brk_free(m->dept);
    memset(m, 0, sizeof(*m));
}

static size_t
member_find(const struct vr_members *m, const char *s, size_t len, uint32_t h)
{
    const struct vr_member *e;
    size_t mask, i;

    if (m->slot_cap == 0)
        return SIZE_MAX;
    mask = m->slot_cap - 1;
    for (i = h & mask; m->slot[i] != 0; i = (i + 1) & mask) {
        e = &m->ent[m->slot[i] - 1];
        if (e->hash == h && e->name_len == len &&
            memcmp(m->arena + e->name_off, s, len) == 0)
            return m->slot[i] - 1;
    }
    return SIZE_MAX;
}

static void
slot_put(uint32_t *slot, size_t cap, uint32_t h, size_t idx)
{
    size_t mask = cap - 1, i = h & mask;

    while (slot[i] != 0)
        i = (i + 1) & mask;
    slot[i] = (uint32_t)idx + 1;
}

static enum brk_err
members_rehash(struct vr_members *m, size_t cap)
{
    uint32_t *ns = brk_calloc(cap, sizeof(*ns));
    size_t i;

    if (ns == NULL)
        return BRK_ERR_NOMEM;
    for (i = 0; i < m->n; i++)
        slot_put(ns, cap, m->ent[i].hash, i);
    brk_free(m->slot);
    m->slot = ns;
    m->slot_cap = cap;
    return BRK_OK;
}

/* Add a member not yet present (hash h), with no departments. */
static enum brk_err
member_insert(struct vr_members *m, const char *s, size_t len, uint32_t h,
              size_t *idx)
{
    struct vr_member *e;
    void *np;
    enum brk_err err;

    if (m->n >= VR_MAX_ENTRIES)
        return BRK_ERR_TOOBIG;
    if ((m->n + 1) * 2 > m->slot_cap) {
        err = members_rehash(m, table_cap(m->n + 1));
        if (err)
            return err;
    }
    err = reserve(m->ent, &m->cap, m->n + 1, sizeof(*m->ent), VR_MAX_ENTRIES,
                  &np);
    if (err)
        return err;
    m->ent = np;
    err = reserve(m->arena, &m->arena_cap, m->arena_len + len, 1, UINT32_MAX,
                  &np);
    if (err)
        return err;
    m->arena = np;
    memcpy(m->arena + m->arena_len, s, len);
    e = &m->ent[m->n];
    e->name_off = (uint32_t)m->arena_len;
    e->name_len = (uint32_t)len;
    e->dept_off = 0;
    e->dept_n = 0;
    e->hash = h;
    e->flags = 0;
    m->arena_len += len;
    slot_put(m->slot, m->slot_cap, h, m->n);
    *idx = m->n++;
    return BRK_OK;
}

/* Find or add a member; *idx is its index. */
static enum brk_err
member_add(struct vr_members *m, const char *s, size_t len, size_t *idx)
{
    uint32_t h = hash_str(s, len);
    size_t i = member_find(m, s, len, h);

    if (i != SIZE_MAX) {
        *idx = i;
        return BRK_OK;
    }
    return member_insert(m, s, len, h, idx);
}

/*
 * Copy into dst, sized exactly, the members of src whose remap[i] is not
 * VR_NONE (all of them when remap is NULL), in order; remap[i] becomes
 * the new index. dst is empty on entry and freed by the caller.
 */
static enum brk_err
members_copy(struct vr_members *dst, const struct vr_members *src,
             uint32_t *remap)
{
    const struct vr_member *e;
    struct vr_member *d;
    size_t i, n = 0, arena = 0, ndept = 0;

    for (i = 0; i < src->n; i++) {
        if (remap != NULL && remap[i] == VR_NONE)
            continue;
        n++;
        arena += src->ent[i].name_len;
        ndept += src->ent[i].dept_n;
    }
    dst->arena = brk_malloc(arena);
    dst->ent = brk_malloc(n * sizeof(*dst->ent));
    dst->dept = brk_malloc(ndept * sizeof(*dst->dept));
    dst->slot = brk_calloc(table_cap(n), sizeof(*dst->slot));
    if (dst->arena == NULL || dst->ent == NULL || dst->dept == NULL ||
        dst->slot == NULL)
        return BRK_ERR_NOMEM;
    dst->arena_cap = arena;
    dst->cap = n;
    dst->dept_cap = ndept;
    dst->slot_cap = table_cap(n);
    for (i = 0; i < src->n; i++) {
        if (remap != NULL && remap[i] == VR_NONE)
            continue;
        e = &src->ent[i];
        d = &dst->ent[dst->n];
        memcpy(dst->arena + dst->arena_len, src->arena + e->name_off,
               e->name_len);
        /* src->dept is NULL when no member has a department. */
        if (e->dept_n > 0)
            memcpy(dst->dept + dst->ndept, src->dept + e->dept_off,
                   e->dept_n * sizeof(*dst->dept));
        d->name_off = (uint32_t)dst->arena_len;
        d->name_len = e->name_len;
        d->dept_off = (uint32_t)dst->ndept;
        d->dept_n = e->dept_n;
        d->hash = e->hash;
        d->flags = e->flags;
        dst->arena_len += e->name_len;
        dst->ndept += e->dept_n;
        slot_put(dst->slot, dst->slot_cap, d->hash, dst->n);
        if (remap != NULL)
            remap[i] = (uint32_t)dst->n;
        dst->n++;
    }
    dst->dept_used = dst->ndept;
    return BRK_OK;
}

/* Add each userid of a privilege list (an array or NULL). */
static enum brk_err
members_add_list(struct vr_members *m, const json_t *arr)
{
    const json_t *x;
    size_t i, idx;
    enum brk_err err;

    json_array_foreach(arr, i, x)
    {
        if (!json_is_string(x) ||
            !userid_ok(json_string_value(x), json_string_length(x)))
            return BRK_ERR_INVAL;
        err = member_add(m, json_string_value(x), json_string_length(x), &idx);
        if (err)
            return err;
        m->ent[idx].flags |= VRM_LISTED;
    }
    return BRK_OK;
}

/*---- Department tree ----*/

static void
tree_free(struct vr_tree *t)
{
    brk_free(t->id);
    brk_free(t->start);
    brk_free(t->child);
    memset(t, 0, sizeof(*t));
}

static size_t
tree_find(const struct vr_tree *t, uint32_t id)
{
    size_t lo = 0, hi = t->n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (t->id[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n && t->id[lo] == id ? lo : SIZE_MAX;
}

/*
 * Build the children adjacency of parents (an object or NULL) into t,
 * which the caller frees on any result. Departments named only as a
 * parent are nodes too; self-parents and parent 0 add no edge.
 */
static enum brk_err
tree_build(struct vr_tree *t, const json_t *parents)
{
    json_t *obj = (json_t *)(uintptr_t)parents;
    const json_t *val;
    uint32_t *ec = NULL, *ep = NULL, *all = NULL, *fill = NULL;
    size_t n = 0, nall = 0, i = 0, k, p;
    void *it;
    enum brk_err err = BRK_ERR_NOMEM;

    if (parents != NULL)
        n = json_object_size(parents);
    if (n > VR_MAX_ENTRIES)
        return BRK_ERR_TOOBIG;
    ec = brk_malloc(n * sizeof(*ec));
    ep = brk_malloc(n * sizeof(*ep));
    all = brk_malloc(2 * n * sizeof(*all));
    if (ec == NULL || ep == NULL || all == NULL)
        goto out;
    err = BRK_ERR_INVAL;
    for (it = n ? json_object_iter(obj) : NULL; it != NULL;
         it = json_object_iter_next(obj, it)) {
        val = json_object_iter_value(it);
        if (!parse_id(json_object_iter_key(it), json_object_iter_key_len(it),
                      &ec[i]) ||
            !json_is_string(val) ||
            !parse_id(json_string_value(val), json_string_length(val), &ep[i]))
            goto out;
        all[nall++] = ec[i];
        /* A parent equal to the child marks "no edge". */
        if (ep[i] == 0)
            ep[i] = ec[i];
        if (ep[i] != ec[i])
            all[nall++] = ep[i];
        i++;
    }
    nall = sort_unique(all, nall);
    err = BRK_ERR_TOOBIG;
    if (nall > VR_MAX_ENTRIES)
        goto out;
    err = BRK_ERR_NOMEM;
    t->id = brk_malloc(nall * sizeof(*t->id));
    t->start = brk_calloc(nall + 1, sizeof(*t->start));
    fill = brk_malloc(nall * sizeof(*fill));
    if (t->id == NULL || t->start == NULL || fill == NULL)
        goto out;
    memcpy(t->id, all, nall * sizeof(*t->id));
    t->n = nall;
    for (k = 0; k < n; k++) {
        if (ep[k] == ec[k])
            continue;
        t->start[tree_find(t, ep[k]) + 1]++;
        t->nchild++;
    }
    for (k = 0; k < nall; k++)
        t->start[k + 1] += t->start[k];
    t->child = brk_malloc(t->nchild * sizeof(*t->child));
    if (t->child == NULL)
        goto out;
    memcpy(fill, t->start, nall * sizeof(*fill));
    for (k = 0; k < n; k++) {
        if (ep[k] == ec[k])
            continue;
        p = tree_find(t, ep[k]);
        t->child[fill[p]++] = (uint32_t)tree_find(t, ec[k]);
    }
    err = BRK_OK;
out:
    brk_free(ec);
    brk_free(ep);
    brk_free(all);
    brk_free(fill);
    return err;
}

/*
 * The union of the subtrees of roots (sorted, unique) as a new set in
 * *out. Iterative, each department visited once, so cycles end. A root
 * missing from the tree is a subtree of one department.
 */
static enum brk_err
subtree_set(const struct vr_tree *t, const uint32_t *roots, size_t nroots,
            struct vr_idset *out)
{
    struct vr_idset s = {0};
    unsigned char *seen = NULL;
    uint32_t *stack = NULL, x, c;
    size_t i, k, sp, idx, count = 0, extra = 0;
    enum brk_err err = BRK_ERR_NOMEM;

    seen = brk_calloc(t->n, 1);
    stack = brk_malloc(t->n * sizeof(*stack));
    if (seen == NULL || stack == NULL)
        goto out;
    for (i = 0; i < nroots; i++) {
        idx = tree_find(t, roots[i]);
        if (idx == SIZE_MAX) {
            extra++;
            continue;
        }
        if (seen[idx])
            continue;
        seen[idx] = 1;
        sp = 0;
        stack[sp++] = (uint32_t)idx;
        while (sp > 0) {
            x = stack[--sp];
            count++;
            for (k = t->start[x]; k < t->start[x + 1]; k++) {
                c = t->child[k];
                if (!seen[c]) {
                    seen[c] = 1;
                    stack[sp++] = c;
                }
            }
        }
    }
    err = BRK_ERR_TOOBIG;
    if (count + extra > VR_MAX_ENTRIES)
        goto out;
    err = idset_init(&s, count + extra);
    if (err)
        goto out;
    for (i = 0; i < t->n; i++)
        if (seen[i])
            idset_add(&s, t->id[i]);
    for (i = 0; i < nroots; i++)
        if (tree_find(t, roots[i]) == SIZE_MAX)
            idset_add(&s, roots[i]);
    *out = s;
    s.slot = NULL;
out:
    brk_free(s.slot);
    brk_free(seen);
    brk_free(stack);
    return err;
}

/*---- Tags ----*/

static void
tags_free(struct vr_tags *tg)
{
    brk_free(tg->t);
    brk_free(tg->ref);
    memset(tg, 0, sizeof(*tg));
}

static struct vr_tag *
tag_find(const struct vr_tags *tg, uint32_t id)
{
    size_t lo = 0, hi = tg->n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (tg->t[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < tg->n && tg->t[lo].id == id ? &tg->t[lo] : NULL;
}

/* The visible tags of allow_tag and extra_tag (arrays or NULL). */
static enum brk_err
tags_init(struct vr_tags *tg, const json_t *allow, const json_t *extra)
{
    const json_t *lists[2] = {allow, extra}, *x;
    uint32_t *ids = NULL;
    size_t n = json_array_size(allow) + json_array_size(extra), k = 0, i, l;
    enum brk_err err = BRK_ERR_NOMEM;

    ids = brk_malloc(n * sizeof(*ids));
    if (ids == NULL)
        goto out;
    err = BRK_ERR_INVAL;
    for (l = 0; l < 2; l++)
        json_array_foreach(lists[l], i, x)
        {
            if (!json_id(x, &ids[k++]))
                goto out;
        }
    n = sort_unique(ids, k);
    err = BRK_ERR_NOMEM;
    tg->t = brk_calloc(n, sizeof(*tg->t));
    if (tg->t == NULL)
        goto out;
    for (i = 0; i < n; i++)
        tg->t[i].id = ids[i];
    tg->n = n;
    err = BRK_OK;
out:
    brk_free(ids);
    return err;
}

/*
 * A tag's stored value, an object or that object as a JSON string. jansson
 * reports most of its own allocation failures as syntax errors, so an
 * out-of-memory while parsing the string may come back as BRK_ERR_INVAL
 * (still failing closed).
 */
static enum brk_err
tag_value(const json_t *val, json_t **loaded, const json_t **users,
          const json_t **parties)
{
    const json_t *o = val;
    json_error_t jerr;

    if (json_is_string(val)) {
        *loaded = json_loadb(json_string_value(val), json_string_length(val),
                             JSON_REJECT_DUPLICATES, &jerr);
        if (*loaded == NULL)
            return json_error_code(&jerr) == json_error_out_of_memory
                       ? BRK_ERR_NOMEM
                       : BRK_ERR_INVAL;
        o = *loaded;
    }
    if (!json_is_object(o))
        return BRK_ERR_INVAL;
    *users = json_object_get(o, "users");
    *parties = json_object_get(o, "parties");
    if (json_is_null(*users))
        *users = NULL;
    if (json_is_null(*parties))
        *parties = NULL;
    if ((*users != NULL && !json_is_array(*users)) ||
        (*parties != NULL && !json_is_array(*parties)))
        return BRK_ERR_INVAL;
    return BRK_OK;
}

/*
 * Check one entry of the tags map; when the tag is visible, make its
 * users visible members, add its parties to roots and remember both.
 */
static enum brk_err
tag_entry(struct vrange *v, struct vr_vec *roots, const char *key, size_t klen,
          const json_t *val)
{
    json_t *loaded = NULL;
    const json_t *users = NULL, *parties = NULL, *x;
    struct vr_tags *tg = &v->tags;
    struct vr_tag *t;
    uint32_t id, pid;
    size_t i, idx, nu, np;
    void *p;
    enum brk_err err = BRK_ERR_INVAL;

    if (!parse_id(key, klen, &id))
        goto out;
    err = tag_value(val, &loaded, &users, &parties);
    if (err)
        goto out;
    err = BRK_ERR_INVAL;
    json_array_foreach(users, i, x)
    {
        if (!json_is_string(x) ||
            !userid_ok(json_string_value(x), json_string_length(x)))
            goto out;
    }
    json_array_foreach(parties, i, x)
    {
        if (!json_id(x, &pid))
            goto out;
    }
    err = BRK_OK;
    t = tag_find(tg, id);
    if (t == NULL)
        goto out;
    nu = json_array_size(users);
    np = json_array_size(parties);
    err = reserve(tg->ref, &tg->ref_cap, tg->nref + nu + np, sizeof(*tg->ref),
                  VR_MAX_LINKS, &p);
    if (err)
        goto out;
    tg->ref = p;
    t->ref_off = (uint32_t)tg->nref;
    t->users_n = (uint32_t)nu;
    t->parties_n = (uint32_t)np;
    json_array_foreach(users, i, x)
    {
        err = member_add(&v->mem, json_string_value(x), json_string_length(x),
                         &idx);
        if (err)
            goto out;
        v->mem.ent[idx].flags |= VRM_LISTED;
        tg->ref[tg->nref++] = (uint32_t)idx;
    }
    json_array_foreach(parties, i, x)
    {
        if (!json_id(x, &pid)) {
            err = BRK_ERR_INVAL;
            goto out;
        }
        tg->ref[tg->nref++] = pid;
        err = vec_push(roots, pid);
        if (err)
            goto out;
    }
out:
    json_decref(loaded);
    return err;
}

static enum brk_err
tags_pass(struct vrange *v, struct vr_vec *roots, const json_t *tags)
{
    json_t *obj = (json_t *)(uintptr_t)tags;
    void *it;
    enum brk_err err;

    if (tags == NULL)
        return BRK_OK;
    if (json_object_size(tags) > VR_MAX_ENTRIES)
        return BRK_ERR_TOOBIG;
    for (it = json_object_iter(obj); it != NULL;
         it = json_object_iter_next(obj, it)) {
        err =
            tag_entry(v, roots, json_object_iter_key(it),
                      json_object_iter_key_len(it), json_object_iter_value(it));
        if (err)
            return err;
    }
    return BRK_OK;
}

/* A tag's references; ref stays NULL while no tag has any. */
static const uint32_t *
tag_refs(const struct vr_tags *tg, const struct vr_tag *t)
{
    return t->users_n + t->parties_n > 0 ? tg->ref + t->ref_off : NULL;
}

/* Whether member i of v stays when v is narrowed to the subtrees a: one
 * of its departments is in them (a gone member has none). */
static int
member_under(const struct vrange *v, size_t i, const struct vr_idset *a)
{
    const struct vr_member *e = &v->mem.ent[i];
    size_t j;

    for (j = 0; j < e->dept_n; j++)
        if (idset_has(a, v->mem.dept[e->dept_off + j]))
            return 1;
    return 0;
}

/* Whether a visible department stays: it is in the subtrees a. */
static int
dept_under(const struct vrange *v, uint32_t id, const struct vr_idset *a)
{
    return idset_has(&v->dept, id) && idset_has(a, id);
}

/* A tag stays when all its users and parties do. */
static int
tag_under(const struct vrange *v, const struct vr_tag *t,
          const struct vr_idset *a)
{
    const uint32_t *r = tag_refs(&v->tags, t);
    size_t j;

    for (j = 0; j < t->users_n; j++)
        if (!member_under(v, r[j], a))
            return 0;
    for (j = 0; j < t->parties_n; j++)
        if (!dept_under(v, r[t->users_n + j], a))
            return 0;
    return 1;
}

/* The tags of v kept by narrowing to a, with member indices remapped;
 * none when none. */
static enum brk_err
tags_narrow(struct vr_tags *dst, const struct vrange *v, const uint32_t *remap,
            const struct vr_idset *a, int none)
{
    const struct vr_tags *src = &v->tags;
    const struct vr_tag *t;
    struct vr_tag *d;
    const uint32_t *r;
    size_t i, j, n = 0, nref = 0;

    for (i = 0; i < src->n && !none; i++) {
        if (tag_under(v, &src->t[i], a)) {
            n++;
            nref += src->t[i].users_n + src->t[i].parties_n;
        }
    }
    dst->t = brk_malloc(n * sizeof(*dst->t));
    dst->ref = brk_malloc(nref * sizeof(*dst->ref));
    if (dst->t == NULL || dst->ref == NULL)
        return BRK_ERR_NOMEM;
    dst->ref_cap = nref;
    for (i = 0; i < src->n && !none; i++) {
        t = &src->t[i];
        if (!tag_under(v, t, a))
            continue;
        d = &dst->t[dst->n++];
        *d = *t;
        d->ref_off = (uint32_t)dst->nref;
        r = tag_refs(src, t);
        for (j = 0; j < t->users_n; j++)
            dst->ref[dst->nref++] = remap[r[j]];
        for (j = 0; j < t->parties_n; j++)
            dst->ref[dst->nref++] = r[t->users_n + j];
    }
    return BRK_OK;
}

/*
 * The subtrees of parties (n of them) in v's whole tree, into *a (owned
 * slot array). BRK_ERR_TOOBIG, BRK_ERR_INVAL for an id outside
 * 0..4294967295, BRK_ERR_NOMEM.
 */
static enum brk_err
parties_subtrees(const struct vrange *v, const long *parties, size_t n,
                 struct vr_idset *a)
{
    uint32_t *roots;
    size_t i, nroots;
    enum brk_err err;

    if (n > VR_MAX_ENTRIES)
        return BRK_ERR_TOOBIG;
    for (i = 0; i < n; i++)
        if (parties[i] < 0 || (unsigned long)parties[i] > UINT32_MAX)
            return BRK_ERR_INVAL;
    roots = brk_malloc((n ? n : 1) * sizeof(*roots));
    if (roots == NULL)
        return BRK_ERR_NOMEM;
    for (i = 0; i < n; i++)
        roots[i] = (uint32_t)parties[i];
    nroots = sort_unique(roots, n);
    err = subtree_set(&v->tree, roots, nroots, a);
    brk_free(roots);
    return err;
}

/*---- Build ----*/

/* One privilege list: an array, or NULL when missing or null. */
static enum brk_err
priv_list(const json_t *priv, const char *key, const json_t **out)
{
    const json_t *a = json_object_get(priv, key);

    *out = NULL;
    if (a == NULL || json_is_null(a))
        return BRK_OK;
    if (!json_is_array(a))
        return BRK_ERR_INVAL;
    if (json_array_size(a) > VR_MAX_ENTRIES)
        return BRK_ERR_TOOBIG;
    *out = a;
    return BRK_OK;
}

static enum brk_err
roots_add_list(struct vr_vec *roots, const json_t *arr)
{
    const json_t *x;
    uint32_t id;
    size_t i;
    enum brk_err err;

    json_array_foreach(arr, i, x)
    {
        if (!json_id(x, &id))
            return BRK_ERR_INVAL;
        err = vec_push(roots, id);
        if (err)
            return err;
    }
    return BRK_OK;
}

/* Append the departments of "d1,d2,..." to m->dept; *vis when any is
 * visible. */
static enum brk_err
parse_depts(struct vr_members *m, const struct vr_idset *dept, const char *s,
            size_t len, int *vis)
{
    const char *end = s + len, *comma;
    uint32_t d;
    void *np;
    enum brk_err err;

    *vis = 0;
    for (;;) {
        comma = memchr(s, ',', (size_t)(end - s));
        if (comma == NULL)
            comma = end;
        if (!parse_id(s, (size_t)(comma - s), &d))
            return BRK_ERR_INVAL;
        err = reserve(m->dept, &m->dept_cap, m->ndept + 1, sizeof(*m->dept),
                      VR_MAX_LINKS, &np);
        if (err)
            return err;
        m->dept = np;
        m->dept[m->ndept++] = d;
        if (idset_has(dept, d))
            *vis = 1;
        if (comma == end)
            return BRK_OK;
        s = comma + 1;
    }
}

/*
 * Walk the users: a member already visible (listed by the privilege or a
 * tag) gets its departments; another becomes visible when one of its
 * departments is.
 */
static enum brk_err
users_pass(struct vrange *v, const struct vrange_entry *users, size_t n)
{
    struct vr_members *m = &v->mem;
    size_t i, mark, idx;
    uint32_t h;
    int vis;
    enum brk_err err;

    if (n > VR_MAX_ENTRIES)
        return BRK_ERR_TOOBIG;
    for (i = 0; i < n; i++) {
        const struct vrange_entry *u = &users[i];

        if (u->key == NULL || u->val == NULL || !userid_ok(u->key, u->klen))
            return BRK_ERR_INVAL;
        mark = m->ndept;
        err = parse_depts(m, &v->dept, u->val, u->vlen, &vis);
        if (err)
            return err;
        h = hash_str(u->key, u->klen);
        idx = member_find(m, u->key, u->klen, h);
        if (idx == SIZE_MAX && !vis) {
            m->ndept = mark;
            continue;
        }
        if (idx == SIZE_MAX) {
            err = member_insert(m, u->key, u->klen, h, &idx);
            if (err)
                return err;
        }
        m->ent[idx].dept_off = (uint32_t)mark;
        m->ent[idx].dept_n = (uint32_t)(m->ndept - mark);
    }
    return BRK_OK;
}

/* The users map as entries borrowing its strings (*out owned, brk_free;
 * NULL when empty). BRK_ERR_INVAL for a value that is not a string. */
static enum brk_err
users_entries(const json_t *users, struct vrange_entry **out, size_t *n)
{
    json_t *obj = (json_t *)(uintptr_t)users;
    struct vrange_entry *e = NULL;
    const json_t *val;
    size_t k = 0, cnt = json_object_size(users);
    void *it;

    *out = NULL;
    *n = 0;
    if (users == NULL || cnt == 0)
        return BRK_OK;
    if (cnt > VR_MAX_ENTRIES)
        return BRK_ERR_TOOBIG;
    e = brk_malloc(cnt * sizeof(*e));
    if (e == NULL)
        return BRK_ERR_NOMEM;
    for (it = json_object_iter(obj); it != NULL && k < cnt;
         it = json_object_iter_next(obj, it)) {
        val = json_object_iter_value(it);
        if (!json_is_string(val)) {
            brk_free(e);
            return BRK_ERR_INVAL;
        }
        e[k].key = json_object_iter_key(it);
        e[k].klen = json_object_iter_key_len(it);
        e[k].val = json_string_value(val);
        e[k].vlen = json_string_length(val);
        k++;
    }
    *out = e;
    *n = k;
    return BRK_OK;
}

/*
 * Resolve a privilege object over a directory (see visible_range.h and
 * the input rules at the top of this file). Returns BRK_OK,
 * BRK_ERR_INVAL on malformed input, BRK_ERR_TOOBIG past 2,000,000
 * members, departments or directory entries (or 16,000,000 member
 * departments or tag references), or BRK_ERR_NOMEM. All inputs are
 * borrowed; *out is written only on success, owned, free with
 * vrange_free.
 */
enum brk_err
vrange_build_entries(const json_t *privilege, const json_t *parents,
                     const struct vrange_entry *users, size_t nusers,
                     const json_t *tags, struct vrange **out)
{
    static const char *const names[6] = {"allow_party", "extra_party",
                                         "allow_user",  "extra_user",
                                         "allow_tag",   "extra_tag"};
    const json_t *lists[6];
    struct vrange *v = NULL;
    struct vr_vec roots = {0};
    struct vr_members packed = {0};
    size_t i;
    enum brk_err err = BRK_ERR_INVAL;

    if (!json_is_object(privilege) ||
        (parents != NULL && !json_is_object(parents)) ||
        (users == NULL && nusers > 0) ||
        (tags != NULL && !json_is_object(tags)))
        goto out;
    for (i = 0; i < nitems(names); i++) {
        err = priv_list(privilege, names[i], &lists[i]);
        if (err)
            goto out;
    }
    err = BRK_ERR_NOMEM;
    v = brk_calloc(1, sizeof(*v));
    if (v == NULL)
        goto out;
    err = roots_add_list(&roots, lists[0]);
    if (!err)
        err = roots_add_list(&roots, lists[1]);
    if (!err)
        err = members_add_list(&v->mem, lists[2]);
    if (!err)
        err = members_add_list(&v->mem, lists[3]);
    if (!err)
        err = tags_init(&v->tags, lists[4], lists[5]);
    if (!err)
        err = tree_build(&v->tree, parents);
    if (!err)
        err = tags_pass(v, &roots, tags);
    if (err)
        goto out;
    roots.n = sort_unique(roots.v, roots.n);
    err = subtree_set(&v->tree, roots.v, roots.n, &v->dept);
    if (err)
        goto out;
    err = users_pass(v, users, nusers);
    if (err)
        goto out;
    /* Growth left slack; keep the cached copy exact. */
    err = members_copy(&packed, &v->mem, NULL);
    if (err)
        goto out;
    members_free(&v->mem);
    v->mem = packed;
    memset(&packed, 0, sizeof(packed));
    *out = v;
    v = NULL;
out:
    brk_free(roots.v);
    members_free(&packed);
    vrange_free(v);
    return err;
}

/* See visible_range.h: the users map as entries, then the same build. */
enum brk_err
vrange_build(const json_t *privilege, const json_t *parents,
             const json_t *users, const json_t *tags, struct vrange **out)
{
    struct vrange_entry *e = NULL;
    size_t n = 0;
    enum brk_err err;

    if (users != NULL && !json_is_object(users))
        return BRK_ERR_INVAL;
    err = users_entries(users, &e, &n);
    if (!err)
        err = vrange_build_entries(privilege, parents, e, n, tags, out);
    brk_free(e);
    return err;
}

/* A copy of n elements of size sz at p into *out (NULL when n is 0). */
static int
dup_array(const void *p, size_t n, size_t sz, void *out)
{
    void *q = NULL;

    if (n > 0) {
        q = brk_malloc(n * sz);
        if (q == NULL)
            return -1;
        memcpy(q, p, n * sz);
    }
    memcpy(out, &q, sizeof(q));
    return 0;
}

/* See visible_range.h. */
enum brk_err
vrange_copy(const struct vrange *v, struct vrange **out)
{
    struct vrange *c;
    int bad = 0;

    if (v == NULL)
        return BRK_ERR_INVAL;
    c = brk_calloc(1, sizeof(*c));
    if (c == NULL)
        return BRK_ERR_NOMEM;
    *c = *v;
    c->mem.arena = NULL;
    c->mem.ent = NULL;
    c->mem.slot = NULL;
    c->mem.dept = NULL;
    c->dept.slot = NULL;
    c->tags.t = NULL;
    c->tags.ref = NULL;
    c->tree.id = NULL;
    c->tree.start = NULL;
    c->tree.child = NULL;
    /* capacities become the lengths copied */
    bad |= dup_array(v->mem.arena, v->mem.arena_len, 1, &c->mem.arena);
    c->mem.arena_cap = v->mem.arena_len;
    bad |= dup_array(v->mem.ent, v->mem.n, sizeof(*v->mem.ent), &c->mem.ent);
    c->mem.cap = v->mem.n;
    bad |= dup_array(v->mem.slot, v->mem.slot_cap, sizeof(*v->mem.slot),
                     &c->mem.slot);
    bad |= dup_array(v->mem.dept, v->mem.ndept, sizeof(*v->mem.dept),
                     &c->mem.dept);
    c->mem.dept_cap = v->mem.ndept;
    bad |= dup_array(v->dept.slot, v->dept.cap, sizeof(*v->dept.slot),
                     &c->dept.slot);
    bad |= dup_array(v->tags.t, v->tags.n, sizeof(*v->tags.t), &c->tags.t);
    bad |= dup_array(v->tags.ref, v->tags.nref, sizeof(*v->tags.ref),
                     &c->tags.ref);
    c->tags.ref_cap = v->tags.nref;
    bad |= dup_array(v->tree.id, v->tree.n, sizeof(*v->tree.id), &c->tree.id);
    bad |= dup_array(v->tree.start, v->tree.n + 1, sizeof(*v->tree.start),
                     &c->tree.start);
    bad |= dup_array(v->tree.child, v->tree.nchild, sizeof(*v->tree.child),
                     &c->tree.child);
    if (bad) {
        vrange_free(c);
        return BRK_ERR_NOMEM;
    }
    *out = c;
    return BRK_OK;
}

/*---- One member changed ----*/

/* Members set one by one leave gone entries and unused department
 * slots behind; past these the table is packed again. */
#define VR_SLACK_MIN 4096

/*
 * Pack v's members: drop the gone ones and the unused department slots,
 * renumbering the tags' member references. On failure v is unchanged.
 */
static enum brk_err
members_repack(struct vrange *v)
{
    struct vr_members nm = {0};
    uint32_t *remap;
    size_t i, j;
    struct vr_tag *t;
    enum brk_err err = BRK_ERR_NOMEM;

    remap = brk_malloc((v->mem.n ? v->mem.n : 1) * sizeof(*remap));
    if (remap == NULL)
        return err;
    for (i = 0; i < v->mem.n; i++)
        remap[i] = v->mem.ent[i].flags & VRM_GONE ? VR_NONE : 0;
    err = members_copy(&nm, &v->mem, remap);
    if (err) {
        members_free(&nm);
        brk_free(remap);
        return err;
    }
    /* a tag's users are listed members, never gone */
    for (i = 0; i < v->tags.n; i++) {
        t = &v->tags.t[i];
        for (j = 0; j < t->users_n; j++)
            v->tags.ref[t->ref_off + j] = remap[v->tags.ref[t->ref_off + j]];
    }
    members_free(&v->mem);
    v->mem = nm;
    brk_free(remap);
    return BRK_OK;
}

/*
 * Parse "d1,d2,..." (len bytes) into a new array *out of *n ids; *vis
 * when one of them is a visible department. BRK_ERR_INVAL when an id does
 * not parse.
 */
static enum brk_err
depts_parse(const struct vrange *v, const char *s, size_t len, uint32_t **out,
            size_t *n, int *vis)
{
    const char *end = s + len, *comma;
    uint32_t *ids;
    size_t k = 1, i;

    for (i = 0; i < len; i++)
        k += s[i] == ',';
    if (k > VR_MAX_ENTRIES)
        return BRK_ERR_TOOBIG;
    ids = brk_malloc(k * sizeof(*ids));
    if (ids == NULL)
        return BRK_ERR_NOMEM;
    *vis = 0;
    for (i = 0;; i++) {
        comma = memchr(s, ',', (size_t)(end - s));
        if (comma == NULL)
            comma = end;
        if (!parse_id(s, (size_t)(comma - s), &ids[i])) {
            brk_free(ids);
            return BRK_ERR_INVAL;
        }
        if (idset_has(&v->dept, ids[i]))
            *vis = 1;
        if (comma == end)
            break;
        s = comma + 1;
    }
    *out = ids;
    *n = i + 1;
    return BRK_OK;
}

/*
 * The member userid now has departments depts, or has left the directory
 * (depts NULL): v answers as vrange_build over the directory so changed
 * would (see visible_range.h). Each step that can fail comes before the
 * first change, so on failure v is unchanged.
 */
enum brk_err
vrange_set_member(struct vrange *v, const char *userid, size_t len,
                  const char *depts, size_t dlen)
{
    struct vr_members *m;
    struct vr_member *e;
    uint32_t *ids = NULL, h;
    size_t n = 0, idx;
    void *np;
    int vis = 0;
    enum brk_err err;

    if (v == NULL || v->narrowed || userid == NULL || !userid_ok(userid, len) ||
        (depts != NULL && dlen == 0))
        return BRK_ERR_INVAL;
    m = &v->mem;
    if (depts != NULL) {
        err = depts_parse(v, depts, dlen, &ids, &n, &vis);
        if (err)
            return err;
    }
    h = hash_str(userid, len);
    idx = member_find(m, userid, len, h);
    if (idx == SIZE_MAX && !vis) {
        brk_free(ids);
        return BRK_OK; /* not visible before, nor now */
    }
    err = reserve(m->dept, &m->dept_cap, m->ndept + n, sizeof(*m->dept),
                  VR_MAX_LINKS, &np);
    if (err)
        goto out;
    m->dept = np;
    if (idx == SIZE_MAX) {
        err = member_insert(m, userid, len, h, &idx);
        if (err)
            goto out;
    }
    e = &m->ent[idx];
    m->dept_used -= e->dept_n;
    if ((e->flags & VRM_LISTED) || vis) {
        if (e->flags & VRM_GONE)
            m->gone--;
        e->flags &= ~VRM_GONE;
        if (n > 0)
            memcpy(m->dept + m->ndept, ids, n * sizeof(*ids));
        e->dept_off = (uint32_t)m->ndept;
        e->dept_n = (uint32_t)n;
        m->ndept += n;
        m->dept_used += n;
    } else {
        if (!(e->flags & VRM_GONE))
            m->gone++;
        e->flags |= VRM_GONE;
        e->dept_off = 0;
        e->dept_n = 0;
    }
    /* the change is made; packing is housekeeping that may wait */
    if ((m->gone > VR_SLACK_MIN && m->gone * 2 > m->n) ||
        (m->ndept - m->dept_used > VR_SLACK_MIN &&
         m->ndept - m->dept_used > m->dept_used))
        (void)members_repack(v);
    err = BRK_OK;
out:
    brk_free(ids);
    return err;
}

/*---- Narrow and queries ----*/

/*
 * Keep only the members with a department in the subtrees of parties,
 * the departments in those subtrees, and the tags whose users and
 * parties all remain; n == 0 leaves nothing, tags included. parties is
 * borrowed. Returns BRK_OK, BRK_ERR_INVAL for an id outside
 * 0..4294967295, BRK_ERR_TOOBIG or BRK_ERR_NOMEM; on failure v is
 * unchanged.
 */
enum brk_err
vrange_narrow(struct vrange *v, const long *parties, size_t n)
{
    struct vr_idset a = {0}, nd = {0};
    struct vr_members nm = {0};
    struct vr_tags nt = {0};
    uint32_t *remap = NULL;
    size_t i, count = 0;
    enum brk_err err;

    assert(v != NULL && (parties != NULL || n == 0));
    err = parties_subtrees(v, parties, n, &a);
    if (err)
        goto out;
    err = BRK_ERR_NOMEM;
    remap = brk_malloc((v->mem.n ? v->mem.n : 1) * sizeof(*remap));
    if (remap == NULL)
        goto out;
    for (i = 0; i < v->mem.n; i++)
        remap[i] = member_under(v, i, &a) ? 0 : VR_NONE;
    err = members_copy(&nm, &v->mem, remap);
    if (err)
        goto out;
    for (i = 0; i < v->dept.cap; i++)
        if (v->dept.slot[i] != 0 &&
            idset_has(&a, (uint32_t)(v->dept.slot[i] - 1)))
            count++;
    err = idset_init(&nd, count);
    if (err)
        goto out;
    for (i = 0; i < v->dept.cap; i++)
        if (v->dept.slot[i] != 0 &&
            idset_has(&a, (uint32_t)(v->dept.slot[i] - 1)))
            idset_add(&nd, (uint32_t)(v->dept.slot[i] - 1));
    err = tags_narrow(&nt, v, remap, &a, n == 0);
    if (err)
        goto out;
    members_free(&v->mem);
    v->mem = nm;
    memset(&nm, 0, sizeof(nm));
    brk_free(v->dept.slot);
    v->dept = nd;
    nd.slot = NULL;
    tags_free(&v->tags);
    v->tags = nt;
    memset(&nt, 0, sizeof(nt));
    v->narrowed = 1;
out:
    brk_free(remap);
    brk_free(a.slot);
    brk_free(nd.slot);
    members_free(&nm);
    tags_free(&nt);
    return err;
}

/*---- Narrowed without a copy ----*/

struct vrange_view {
    const struct vrange *v;
    struct vr_idset a; /* the subtrees of the parties, whole tree */
    int none;          /* no parties: nothing is seen */
};

/* See visible_range.h: the subtrees only; each answer is vrange_narrow's
 * rule (member_under, dept_under, tag_under) asked of v. */
enum brk_err
vrange_view_new(const struct vrange *v, const long *parties, size_t n,
                struct vrange_view **out)
{
    struct vrange_view *w;
    enum brk_err err;

    if (v == NULL || v->narrowed || (parties == NULL && n > 0))
        return BRK_ERR_INVAL;
    w = brk_calloc(1, sizeof(*w));
    if (w == NULL)
        return BRK_ERR_NOMEM;
    w->v = v;
    w->none = n == 0;
    err = parties_subtrees(v, parties, n, &w->a);
    if (err) {
        vrange_view_free(w);
        return err;
    }
    *out = w;
    return BRK_OK;
}

void
vrange_view_free(struct vrange_view *w)
{
    if (w == NULL)
        return;
    brk_free(w->a.slot);
    brk_free(w);
}

int
vrange_view_has_member(const struct vrange_view *w, const char *userid,
                       size_t len)
{
    size_t i;

    if (w == NULL || userid == NULL || len == 0)
        return 0;
    i = member_find(&w->v->mem, userid, len, hash_str(userid, len));
    return i != SIZE_MAX && !(w->v->mem.ent[i].flags & VRM_GONE) &&
           member_under(w->v, i, &w->a);
}

int
vrange_view_has_department(const struct vrange_view *w, long id)
{
    if (w == NULL || id < 0 || (unsigned long)id > UINT32_MAX)
        return 0;
    return dept_under(w->v, (uint32_t)id, &w->a);
}

int
vrange_view_has_tag(const struct vrange_view *w, long id)
{
    const struct vr_tag *t;

    if (w == NULL || w->none || id < 0 || (unsigned long)id > UINT32_MAX)
        return 0;
    t = tag_find(&w->v->tags, (uint32_t)id);
    return t != NULL && tag_under(w->v, t, &w->a);
}

/*
 * Whether the len bytes at userid name a visible member (no NUL needed).
 * NULL v or userid answers 0. Cannot fail.
 */
int
vrange_has_member(const struct vrange *v, const char *userid, size_t len)
{
    size_t i;

    if (v == NULL || userid == NULL || len == 0)
        return 0;
    i = member_find(&v->mem, userid, len, hash_str(userid, len));
    return i != SIZE_MAX && !(v->mem.ent[i].flags & VRM_GONE);
}

/* Whether department id is visible; NULL v answers 0. Cannot fail. */
int
vrange_has_department(const struct vrange *v, long id)
{
    if (v == NULL || id < 0 || (unsigned long)id > UINT32_MAX)
        return 0;
    return idset_has(&v->dept, (uint32_t)id);
}

/* Whether tag id is visible; NULL v answers 0. Cannot fail. */
int
vrange_has_tag(const struct vrange *v, long id)
{
    if (v == NULL || id < 0 || (unsigned long)id > UINT32_MAX)
        return 0;
    return tag_find(&v->tags, (uint32_t)id) != NULL;
}

/* See visible_range.h. */
enum brk_err
vrange_top_departments(const struct vrange *v, long **out, size_t *n)
{
    const struct vr_tree *t = &v->tree;
    unsigned char *covered = NULL;
    uint32_t *tops = NULL, id;
    long *res = NULL;
    size_t i, k, c, idx, count = 0;
    enum brk_err err = BRK_ERR_NOMEM;

    covered = brk_calloc(t->n ? t->n : 1, 1);
    tops = brk_malloc((v->dept.n ? v->dept.n : 1) * sizeof(*tops));
    if (covered == NULL || tops == NULL)
        goto out;
    /* a child is covered when it and its parent are both visible */
    for (i = 0; i < t->n; i++) {
        if (!idset_has(&v->dept, t->id[i]))
            continue;
        for (k = t->start[i]; k < t->start[i + 1]; k++) {
            c = t->child[k];
            if (c != i && idset_has(&v->dept, t->id[c]))
                covered[c] = 1;
        }
    }
    for (i = 0; i < v->dept.cap; i++) {
        if (v->dept.slot[i] == 0)
            continue;
        id = (uint32_t)(v->dept.slot[i] - 1);
        idx = tree_find(t, id);
        if (idx == SIZE_MAX || !covered[idx])
            tops[count++] = id;
    }
    count = sort_unique(tops, count);
    if (count > 0) {
        res = brk_malloc(count * sizeof(*res));
        if (res == NULL)
            goto out;
        for (i = 0; i < count; i++)
            res[i] = (long)tops[i];
    }
    *out = res;
    *n = count;
    err = BRK_OK;
out:
    brk_free(covered);
    brk_free(tops);
    return err;
}

/* The number of visible members. Cannot fail. */
size_t
vrange_members(const struct vrange *v)
{
    return v ? v->mem.n - v->mem.gone : 0;
}

/* The number of visible departments. Cannot fail. */
size_t
vrange_departments(const struct vrange *v)
{
    return v ? v->dept.n : 0;
}

/* Bytes held by v, allocator overhead aside. Cannot fail. */
size_t
vrange_memory(const struct vrange *v)
{
    if (v == NULL)
        return 0;
    return sizeof(*v) + v->mem.arena_cap + v->mem.cap * sizeof(*v->mem.ent) +
           v->mem.slot_cap * sizeof(*v->mem.slot) +
           v->mem.dept_cap * sizeof(*v->mem.dept) +
           v->dept.cap * sizeof(*v->dept.slot) +
           v->tags.n * sizeof(*v->tags.t) +
           v->tags.ref_cap * sizeof(*v->tags.ref) +
           v->tree.n * sizeof(*v->tree.id) +
           (v->tree.n + 1) * sizeof(*v->tree.start) +
           v->tree.nchild * sizeof(*v->tree.child);
}

/* Free v; NULL is a no-op. */
void
vrange_free(struct vrange *v)
{
    if (v == NULL)
        return;
    members_free(&v->mem);
    brk_free(v->dept.slot);
    tags_free(&v->tags);
    tree_free(&v->tree);
    brk_free(v);
}
