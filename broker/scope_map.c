/*
 * Scope maps: the strict loader of the scopes/ JSON files into an
 * immutable map of endpoints (parameters and response trees, children
 * sorted for bsearch); the permission names they use are grant.c's.
 * Errors name the file, line and column of the offending key.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "capability.h"
#include "scope_map.h"
#include "scope_map_int.h"

/*---- Names ----*/

static const char *const type_names[] = {
    [SCOPE_T_STRING] = "string", [SCOPE_T_INTEGER] = "integer",
    [SCOPE_T_NUMBER] = "number", [SCOPE_T_BOOL] = "boolean",
    [SCOPE_T_OBJECT] = "object", [SCOPE_T_ARRAY] = "array",
};

static const char *const record_names[] = {
    [SCOPE_REC_NONE] = NULL,
    [SCOPE_REC_MEMBER] = "member",
    [SCOPE_REC_DEPARTMENT] = "department",
    [SCOPE_REC_TAG] = "tag",
    [SCOPE_REC_FOLLOW_USER] = "follow_user",
    [SCOPE_REC_CHAT_MEMBER] = "chat_member",
    [SCOPE_REC_CUSTOMER] = "customer",
    [SCOPE_REC_CHAT] = "chat",
};

static const char *const kind_names[] = {
    [SCOPE_P_PLAIN] = "plain",
    [SCOPE_P_MEMBER] = "member",
    [SCOPE_P_DEPARTMENT] = "department",
    [SCOPE_P_TAG] = "tag",
    [SCOPE_P_CUSTOMER] = "customer",
    [SCOPE_P_CHAT] = "chat",
    [SCOPE_P_MEMBER_LIST] = "member_list",
};

/* Names as written in scope files: static, or NULL when unknown. */
const char *
scope_type_name(enum scope_type t)
{
    if ((unsigned)t >= nitems(type_names))
        return NULL;
    return type_names[t];
}

const char *
scope_record_name(enum scope_record r)
{
    if ((unsigned)r >= nitems(record_names))
        return NULL;
    return record_names[r];
}

const char *
scope_param_kind_name(enum scope_param_kind k)
{
    if ((unsigned)k >= nitems(kind_names))
        return NULL;
    return kind_names[k];
}

/* Index of s in names[0..n) (NULL entries skipped), or -1. */
static int
name_index(const char *const *names, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (names[i] != NULL && strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

/*---- The map ----*/

struct scope_map {
    struct scope_endpoint *eps; /* sorted by path once loaded */
    size_t n, cap;
    struct scope_event_set *evs; /* scope_events.c's; NULL: none */
};

/* Compare a counted name with a NUL-terminated one, in strcmp order. */
static int
name_cmp(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    int c = memcmp(a, b, alen < blen ? alen : blen);

    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/*
 * The child of obj called name (len bytes, no terminator needed) by binary
 * search, or NULL (also when obj is not an object). Borrowed from obj.
 */
/*
 * The index of the element named name (len bytes) among n elements of
 * stride bytes sorted by name, whose name pointer sits name_off bytes
 * into each (response and body trees share the search); -1 when none.
 */
static long
field_find(const void *base, size_t n, size_t stride, size_t name_off,
           const char *name, size_t len)
{
    size_t lo = 0, hi = n, mid;
    const char *elt;
    int c;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        elt = (const char *)base + mid * stride;
        c = name_cmp(name, len, *(char *const *)(elt + name_off));
        if (c == 0)
            return (long)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

const struct scope_node *
scope_node_field(const struct scope_node *obj, const char *name, size_t len)
{
    long i;

    if (obj == NULL || name == NULL || obj->type != SCOPE_T_OBJECT)
        return NULL;
    i = field_find(obj->fields, obj->nfields, sizeof(obj->fields[0]),
                   offsetof(struct scope_node, name), name, len);
    return i < 0 ? NULL : &obj->fields[i];
}

static void
node_clear(struct scope_node *n)
{
    size_t i;

    if (n == NULL)
        return;
    for (i = 0; i < n->nfields; i++)
        node_clear(&n->fields[i]);
    brk_free(n->fields);
    if (n->items != NULL) {
        node_clear(n->items);
        brk_free(n->items);
    }
    brk_free(n->name);
    brk_free(n->record_id);
    memset(n, 0, sizeof(*n));
}

static void scope_body_clear(struct scope_body *b);

static void
endpoint_clear(struct scope_endpoint *e)
{
    size_t i, j;

    brk_free(e->path);
    brk_free(e->method);
    for (i = 0; i < e->nparams; i++) {
        brk_free(e->params[i].name);
        for (j = 0; j < e->params[i].nenums; j++)
            brk_free(e->params[i].enums[j]);
        brk_free(e->params[i].enums);
    }
    brk_free(e->params);
    node_clear(&e->root);
    scope_body_clear(&e->body);
    brk_free(e->file);
    memset(e, 0, sizeof(*e));
}

/* Free a map and every tree in it; NULL is a no-op. */
void
scope_map_free(struct scope_map *m)
{
    size_t i;

    if (m == NULL)
        return;
    for (i = 0; i < m->n; i++)
        endpoint_clear(&m->eps[i]);
    brk_free(m->eps);
    scope_events_set_free(m->evs);
    brk_free(m);
}

static int
endpoint_cmp(const void *a, const void *b)
{
    const struct scope_endpoint *x = a, *y = b;

    return strcmp(x->path, y->path);
}

static int
path_key_cmp(const void *key, const void *elem)
{
    const struct scope_endpoint *e = elem;

    return strcmp(key, e->path);
}

/* The endpoint declared for path (exact, no query), or NULL. Borrowed. */
const struct scope_endpoint *
scope_map_find(const struct scope_map *m, const char *path)
{
    if (m == NULL || path == NULL || m->n == 0)
        return NULL;
    return bsearch(path, m->eps, m->n, sizeof(m->eps[0]), path_key_cmp);
}

/* Endpoints in m (0 for NULL). */
size_t
scope_map_count(const struct scope_map *m)
{
    return m ? m->n : 0;
}

/* The i-th endpoint in path order, or NULL. Borrowed. */
const struct scope_endpoint *
scope_map_at(const struct scope_map *m, size_t i)
{
    if (m == NULL || i >= m->n)
        return NULL;
    return &m->eps[i];
}

static int
param_key_cmp(const void *key, const void *elem)
{
    const struct scope_param *p = elem;

    return strcmp(key, p->name);
}

/* The parameter of e called name, or NULL. Borrowed. */
const struct scope_param *
scope_endpoint_param(const struct scope_endpoint *e, const char *name)
{
    if (e == NULL || name == NULL || e->nparams == 0)
        return NULL;
    return bsearch(name, e->params, e->nparams, sizeof(e->params[0]),
                   param_key_cmp);
}

/*---- Positions in the source text ----*/

/*
 * jansson keeps no positions for loaded values, so a semantic error is
 * located by walking the (already validated) text along the path of keys
 * and indexes the loader was at.
 */

#define MAX_STEPS 128

struct step {
    const char *key; /* NULL for an array index */
    size_t index;
};

static const char *
skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at an opening quote: just past the closing one, or NULL. */
static const char *
skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* p at a value: just past it, or NULL. */
static const char *
skip_value(const char *p, const char *end)
{
    long depth = 0;

    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p != '{' && *p != '[') {
        while (p < end && strchr(",}] \t\r\n", *p) == NULL)
            p++;
        return p;
    }
    while (p < end) {
        if (*p == '"') {
            p = skip_string(p, end);
            if (p == NULL)
                return NULL;
            continue;
        }
        if (*p == '{' || *p == '[')
            depth++;
        else if ((*p == '}' || *p == ']') && --depth == 0)
            return p + 1;
        p++;
    }
    return NULL;
}

static int
hex4(const char *p, const char *end, unsigned *out)
{
    unsigned v = 0;
    int i;

    if (end - p < 4)
        return -1;
    for (i = 0; i < 4; i++) {
        char c = p[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t
utf8_put(unsigned cp, unsigned char *b)
{
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Does the JSON string at p (its opening quote) decode to want? */
static int
key_is(const char *p, const char *end, const char *want)
{
    static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
    unsigned char b[4];
    unsigned cp, lo;
    size_t w = 0, nb, i;
    const char *e;

    for (p++; p < end && *p != '"';) {
        if (*p != '\\') {
            b[0] = (unsigned char)*p++;
            nb = 1;
        } else if (p + 1 < end && p[1] == 'u') {
            if (hex4(p + 2, end, &cp) != 0)
                return 0;
            p += 6;
            if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' &&
                p[1] == 'u' && hex4(p + 2, end, &lo) == 0 && lo >= 0xDC00 &&
                lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            nb = utf8_put(cp, b);
        } else {
            if (p + 1 >= end || p[1] == '\0' ||
                (e = strchr(esc_in, p[1])) == NULL)
                return 0;
            b[0] = (unsigned char)esc_out[e - esc_in];
            nb = 1;
            p += 2;
        }
        for (i = 0; i < nb; i++, w++)
            if (want[w] == '\0' || (unsigned char)want[w] != b[i])
                return 0;
    }
    return p < end && want[w] == '\0';
}

/*
 * Walk text along steps: the position of the last step's key (a key
 * step) or element (an index step), or NULL when the path is not there.
 */
static const char *
locate(const char *text, size_t len, const struct step *st, size_t n)
{
    const char *p = text, *end = text + len, *key;
    size_t i, k;

    p = skip_ws(p, end);
    for (i = 0; i < n; i++) {
        if (st[i].key == NULL) {
            if (p >= end || *p != '[')
                return NULL;
            p = skip_ws(p + 1, end);
            for (k = 0; k < st[i].index; k++) {
                p = skip_value(p, end);
                if (p == NULL)
                    return NULL;
                p = skip_ws(p, end);
                if (p >= end || *p != ',')
                    return NULL;
                p = skip_ws(p + 1, end);
            }
            if (i + 1 == n)
                return p;
            continue;
        }
        if (p >= end || *p != '{')
            return NULL;
        p = skip_ws(p + 1, end);
        for (;;) {
            if (p >= end || *p != '"')
                return NULL;
            key = p;
            p = skip_string(p, end);
            if (p == NULL)
                return NULL;
            p = skip_ws(p, end);
            if (p >= end || *p != ':')
                return NULL;
            p = skip_ws(p + 1, end);
            if (key_is(key, end, st[i].key))
                break;
            p = skip_value(p, end);
            if (p == NULL)
                return NULL;
            p = skip_ws(p, end);
            if (p >= end || *p != ',')
                return NULL;
            p = skip_ws(p + 1, end);
        }
        if (i + 1 == n)
            return key;
    }
    return p;
}

/* 1-based line and column (in characters, as jansson counts them). */
static void
line_col(const char *text, const char *pos, int *line, int *col)
{
    int l = 1, c = 1;

    for (; text < pos; text++) {
        if (*text == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)*text & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/*---- Loading ----*/

struct loader {
    const char *file; /* for messages */
    const char *text;
    size_t len;
    struct step steps[MAX_STEPS];
    size_t nsteps;
    struct brk_errinfo *info;
    struct scope_map *map;
    int event_tree; /* reading an event's tree (scope_events.c) */
};

static void
push_key(struct loader *ld, const char *key)
{
    if (ld->nsteps < MAX_STEPS) {
        ld->steps[ld->nsteps].key = key;
        ld->steps[ld->nsteps].index = 0;
    }
    ld->nsteps++;
}

static void
push_index(struct loader *ld, size_t index)
{
    if (ld->nsteps < MAX_STEPS) {
        ld->steps[ld->nsteps].key = NULL;
        ld->steps[ld->nsteps].index = index;
    }
    ld->nsteps++;
}

static void
pop(struct loader *ld)
{
    ld->nsteps--;
}

/* "endpoints[3].response.userid", for when the text cannot be walked. */
static void
pointer_path(const struct loader *ld, char *buf, size_t len)
{
    size_t i, o = 0, n = ld->nsteps < MAX_STEPS ? ld->nsteps : MAX_STEPS;
    int w;

    buf[0] = '\0';
    for (i = 0; i < n && o < len; i++) {
        if (ld->steps[i].key != NULL)
            w = snprintf(buf + o, len - o, "%s%s", i ? "." : "",
                         ld->steps[i].key);
        else
            w = snprintf(buf + o, len - o, "[%zu]", ld->steps[i].index);
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

/*
 * Record a content error at the loader's current step: "FILE:LINE:COL:
 * msg" (or "FILE: PATH: msg" when the position cannot be found).
 * Returns BRK_ERR_CONFIG for the caller to pass on.
 */
static enum brk_err ld_fail(struct loader *ld, const char *fmt, ...)
    BRK_PRINTF(2, 3);

static enum brk_err
ld_fail(struct loader *ld, const char *fmt, ...)
{
    char msg[160], where[120];
    const char *pos;
    va_list ap;
    int line, col;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pos = ld->nsteps <= MAX_STEPS
              ? locate(ld->text, ld->len, ld->steps, ld->nsteps)
              : NULL;
    if (pos != NULL) {
        line_col(ld->text, pos, &line, &col);
        brk_errinfo_set(ld->info, line, (long)(pos - ld->text), "%s:%d:%d: %s",
                        ld->file, line, col, msg);
    } else {
        pointer_path(ld, where, sizeof(where));
        brk_errinfo_set(ld->info, 0, -1, "%s: %s: %s", ld->file, where, msg);
    }
    return BRK_ERR_CONFIG;
}

/* The same at key under the current step. */
static enum brk_err ld_fail_at(struct loader *ld, const char *key,
                               const char *fmt, ...) BRK_PRINTF(3, 4);

static enum brk_err
ld_fail_at(struct loader *ld, const char *key, const char *fmt, ...)
{
    char msg[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    push_key(ld, key);
    return ld_fail(ld, "%s", msg);
}

static enum brk_err
nomem(struct brk_errinfo *info)
{
    brk_errinfo_set(info, 0, -1, "out of memory");
    return BRK_ERR_NOMEM;
}

/* Letters, digits and '_', 1..64 bytes: every WeCom key is. */
static int
valid_name(const char *s)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return i > 0 && i <= 64;
}

static int
node_name_cmp(const void *a, const void *b)
{
    const struct scope_node *x = a, *y = b;

    return strcmp(x->name, y->name);
}

static int
param_cmp(const void *a, const void *b)
{
    const struct scope_param *x = a, *y = b;

    return strcmp(x->name, y->name);
}

static int
is_scalar(enum scope_type t)
{
    return t != SCOPE_T_OBJECT && t != SCOPE_T_ARRAY;
}

/* Is there a follow_user record in n or under it? */
static int
has_follow_user(const struct scope_node *n)
{
    size_t i;

    if (n->record == SCOPE_REC_FOLLOW_USER)
        return 1;
    if (n->items != NULL && has_follow_user(n->items))
        return 1;
    for (i = 0; i < n->nfields; i++)
        if (has_follow_user(&n->fields[i]))
            return 1;
    return 0;
}

/* A permission name for a field or an endpoint: its id, or an error. */
static enum brk_err
perm_of(struct loader *ld, const char *key, const char *name, int *out)
{
    int id = scope_perm_id(name);

    if (id >= 0) {
        *out = id;
        return BRK_OK;
    }
    if (scope_is_alias(name))
        return ld_fail_at(ld, key, "\"%s\" is an alias; name one permission",
                          name);
    return ld_fail_at(ld, key, "unknown permission \"%s\"", name);
}

static enum brk_err load_node(struct loader *ld, const json_t *j,
                              struct scope_node *n, int item, int depth);

/* map: {name: node, ...} into n->fields, sorted by name. */
static enum brk_err
load_fields(struct loader *ld, const json_t *map, struct scope_node *n,
            int depth)
{
    const char *k;
    const json_t *v;
    size_t i = 0, count;
    enum brk_err err;

    if (!json_is_object(map))
        return ld_fail(ld, "expected an object of name: field");
    count = json_object_size(map);
    if (count == 0)
        return BRK_OK;
    n->fields = brk_calloc(count, sizeof(n->fields[0]));
    if (n->fields == NULL)
        return nomem(ld->info);
    json_object_foreach((json_t *)(uintptr_t)map, k, v)
    {
        push_key(ld, k);
        if (!valid_name(k))
            return ld_fail(ld, "bad field name \"%s\"", k);
        n->fields[i].name = brk_strdup(k);
        n->nfields = i + 1;
        if (n->fields[i].name == NULL)
            return nomem(ld->info);
        err = load_node(ld, v, &n->fields[i], 0, depth);
        if (err)
            return err;
        pop(ld);
        i++;
    }
    qsort(n->fields, n->nfields, sizeof(n->fields[0]), node_name_cmp);
    return BRK_OK;
}

/* The scalar field an object record reads its id from ("k" or "a.b"). */
static enum brk_err
check_record_id(struct loader *ld, const struct scope_node *n,
                enum scope_record rec, const char *id)
{
    const char *dot = strchr(id, '.');
    const struct scope_node *f;
    enum scope_type want;

    if (dot == NULL) {
        f = scope_node_field(n, id, strlen(id));
    } else {
        if (strchr(dot + 1, '.') != NULL)
            return ld_fail_at(ld, "id",
                              "record id \"%s\": at most two levels (a.b)", id);
        f = scope_node_field(n, id, (size_t)(dot - id));
        if (f != NULL && f->type != SCOPE_T_OBJECT)
            f = NULL;
        f = f ? scope_node_field(f, dot + 1, strlen(dot + 1)) : NULL;
    }
    if (f == NULL)
        return ld_fail_at(ld, "id",
                          "record id \"%s\" is not a declared field of this "
                          "object",
                          id);
    want = rec == SCOPE_REC_DEPARTMENT || rec == SCOPE_REC_TAG ? SCOPE_T_INTEGER
                                                               : SCOPE_T_STRING;
    if (f->type != want)
        return ld_fail_at(ld, "id", "a %s id must be declared as %s",
                          record_names[rec], type_names[want]);
    return BRK_OK;
}

/* The record kind of a node and its checks (after its children). */
static enum brk_err
load_record(struct loader *ld, struct scope_node *n, int item, const char *rec,
            const char *id)
{
    const struct scope_node *t;
    enum brk_err err;
    int r;

    if (rec == NULL) {
        if (id != NULL)
            return ld_fail_at(ld, "id", "\"id\" without \"record\"");
        return BRK_OK;
    }
    r = name_index(record_names, nitems(record_names), rec);
    if (r < 0)
        return ld_fail_at(ld, "record", "unknown record kind \"%s\"", rec);
    if (n->type == SCOPE_T_OBJECT) {
        if (id == NULL)
            return ld_fail_at(ld, "record",
                              "a %s record needs \"id\": the key holding "
                              "its id",
                              rec);
        err = check_record_id(ld, n, (enum scope_record)r, id);
        if (err)
            return err;
        if (r == SCOPE_REC_CHAT_MEMBER) {
            t = scope_node_field(n, "type", 4);
            if (t == NULL || t->type != SCOPE_T_INTEGER)
                return ld_fail_at(ld, "record",
                                  "a chat_member record needs an integer "
                                  "\"type\" field");
        }
        if (r == SCOPE_REC_CUSTOMER && !has_follow_user(n))
            return ld_fail_at(ld, "record",
                              "a customer record needs follow_user records "
                              "inside");
        n->record_id = brk_strdup(id);
        if (n->record_id == NULL)
            return nomem(ld->info);
    } else if (item && is_scalar(n->type)) {
        if (id != NULL)
            return ld_fail_at(ld, "id",
                              "a scalar item is its own id; remove \"id\"");
        if (r == SCOPE_REC_MEMBER || r == SCOPE_REC_FOLLOW_USER) {
            if (n->type != SCOPE_T_STRING)
                return ld_fail_at(ld, "record",
                                  "%s ids are strings; declare the items "
                                  "as string",
                                  rec);
        } else if (r == SCOPE_REC_DEPARTMENT || r == SCOPE_REC_TAG) {
            if (n->type != SCOPE_T_INTEGER)
                return ld_fail_at(ld, "record",
                                  "%s ids are integers; declare the items "
                                  "as integer",
                                  rec);
        } else if (r == SCOPE_REC_CHAT_MEMBER && ld->event_tree) {
            /* an event lists chat members by id alone; the range
             * callback tells a member from a customer */
            if (n->type != SCOPE_T_STRING)
                return ld_fail_at(ld, "record",
                                  "chat_member ids are strings; declare "
                                  "the items as string");
        } else {
            return ld_fail_at(ld, "record", "a %s record must be an object",
                              rec);
        }
    } else {
        return ld_fail_at(ld, "record",
                          n->type == SCOPE_T_ARRAY
                              ? "put \"record\" on the array's \"items\""
                              : "\"record\" belongs on an object or on the "
                                "items of an id array");
    }
    n->record = (enum scope_record)r;
    return BRK_OK;
}

/* Fetch the string under key of the node being read, or fail. */
static enum brk_err
str_key(struct loader *ld, const char *key, const json_t *v, const char **out)
{
    if (!json_is_string(v))
        return ld_fail(ld, "\"%s\" must be a string", key);
    *out = json_string_value(v);
    return BRK_OK;
}

/*
 * One response node. item: an array's element (no name, no "perm": the
 * array's permission governs it). depth: levels below the root.
 */
static enum brk_err
load_node(struct loader *ld, const json_t *j, struct scope_node *n, int item,
          int depth)
{
    const char *k, *tname = NULL, *perm = NULL, *rec = NULL, *id = NULL;
    const char *note = NULL;
    const json_t *v, *items = NULL, *fields = NULL;
    enum brk_err err;
    int t;

    if (!json_is_object(j))
        return ld_fail(ld, "a field is an object: {\"type\": ..., "
                           "\"perm\": ...}");
    if (depth > SCOPE_MAX_DEPTH)
        return ld_fail(ld, "response tree deeper than %d levels",
                       SCOPE_MAX_DEPTH);
    json_object_foreach((json_t *)(uintptr_t)j, k, v)
    {
        push_key(ld, k);
        err = BRK_OK;
        if (strcmp(k, "type") == 0)
            err = str_key(ld, k, v, &tname);
        else if (strcmp(k, "perm") == 0)
            err = str_key(ld, k, v, &perm);
        else if (strcmp(k, "record") == 0)
            err = str_key(ld, k, v, &rec);
        else if (strcmp(k, "id") == 0)
            err = str_key(ld, k, v, &id);
        else if (strcmp(k, "note") == 0)
            err = str_key(ld, k, v, &note);
        else if (strcmp(k, "items") == 0)
            items = v;
        else if (strcmp(k, "fields") == 0)
            fields = v;
        else if (ld->event_tree)
            err = scope_events_node_key(ld, k, v, n);
        else
            err = ld_fail(ld, "unknown key \"%s\"", k);
        if (err)
            return err;
        pop(ld);
    }
    if (tname == NULL)
        return ld_fail(ld, "missing \"type\"");
    t = name_index(type_names, nitems(type_names), tname);
    if (t < 0)
        return ld_fail_at(ld, "type", "unknown type \"%s\"", tname);
    n->type = (enum scope_type)t;
    if (item) {
        if (perm != NULL)
            return ld_fail_at(ld, "perm",
                              "array items have their array's permission; "
                              "remove \"perm\"");
        n->perm = SCOPE_PERM_ALWAYS;
    } else {
        if (perm == NULL)
            return ld_fail(ld, "missing \"perm\"");
        err = perm_of(ld, "perm", perm, &n->perm);
        if (err)
            return err;
    }
    if (n->type == SCOPE_T_ARRAY) {
        if (items == NULL)
            return ld_fail(ld, "an array needs \"items\"");
        n->items = brk_calloc(1, sizeof(*n->items));
        if (n->items == NULL)
            return nomem(ld->info);
        push_key(ld, "items");
        err = load_node(ld, items, n->items, 1, depth + 1);
        if (err)
            return err;
        pop(ld);
    } else if (items != NULL) {
        return ld_fail_at(ld, "items", "\"items\" is only for arrays");
    }
    if (n->type == SCOPE_T_OBJECT) {
        if (fields != NULL) {
            push_key(ld, "fields");
            err = load_fields(ld, fields, n, depth + 1);
            if (err)
                return err;
            pop(ld);
        }
    } else if (fields != NULL) {
        return ld_fail_at(ld, "fields", "\"fields\" is only for objects");
    }
    return load_record(ld, n, item, rec, id);
}

/* "owner_filter.userid_list": one or two valid names joined by '.'. */
static int
valid_param_name(const char *s)
{
    const char *dot = strchr(s, '.');
    char head[65];
    size_t hl;

    if (dot == NULL)
        return valid_name(s);
    hl = (size_t)(dot - s);
    if (hl == 0 || hl >= sizeof(head) || strchr(dot + 1, '.') != NULL)
        return 0;
    memcpy(head, s, hl);
    head[hl] = '\0';
    return valid_name(head) && valid_name(dot + 1);
}

/* The type a subject parameter must have. */
static enum scope_type
kind_type(enum scope_param_kind k)
{
    switch (k) {
    case SCOPE_P_DEPARTMENT:
    case SCOPE_P_TAG:
        return SCOPE_T_INTEGER;
    case SCOPE_P_MEMBER_LIST:
        return SCOPE_T_ARRAY;
    default:
        return SCOPE_T_STRING;
    }
}

static enum brk_err
load_param(struct loader *ld, const char *name, const json_t *j,
           struct scope_param *p, int is_get)
{
    const char *k, *tname = NULL, *subject = NULL, *note = NULL;
    const json_t *v, *req = NULL, *en = NULL, *x;
    enum brk_err err;
    int t, kind = SCOPE_P_PLAIN;
    size_t i;

    if (strcmp(name, "access_token") == 0)
        return ld_fail(ld, "access_token is implicit; do not declare it");
    if (!valid_param_name(name))
        return ld_fail(ld, "bad parameter name \"%s\"", name);
    if (is_get && strchr(name, '.') != NULL)
        return ld_fail(ld, "a GET parameter cannot be nested");
    if (!json_is_object(j))
        return ld_fail(ld, "a parameter is an object: {\"type\": ...}");
    json_object_foreach((json_t *)(uintptr_t)j, k, v)
    {
        push_key(ld, k);
        err = BRK_OK;
        if (strcmp(k, "type") == 0)
            err = str_key(ld, k, v, &tname);
        else if (strcmp(k, "subject") == 0)
            err = str_key(ld, k, v, &subject);
        else if (strcmp(k, "note") == 0)
            err = str_key(ld, k, v, &note);
        else if (strcmp(k, "required") == 0)
            req = v;
        else if (strcmp(k, "enum") == 0)
            en = v;
        else
            err = ld_fail(ld, "unknown key \"%s\"", k);
        if (err == BRK_OK && en == v && !json_is_array(v))
            err = ld_fail(ld, "\"enum\" is an array of strings");
        if (err == BRK_OK && req == v && !json_is_boolean(v))
            err = ld_fail(ld, "\"required\" must be true or false");
        if (err)
            return err;
        pop(ld);
    }
    if (tname == NULL)
        return ld_fail(ld, "missing \"type\"");
    t = name_index(type_names, nitems(type_names), tname);
    if (t < 0 || t == SCOPE_T_OBJECT)
        return ld_fail_at(ld, "type", "bad parameter type \"%s\"", tname);
    if (subject != NULL) {
        kind = name_index(kind_names, nitems(kind_names), subject);
        if (kind <= SCOPE_P_PLAIN)
            return ld_fail_at(ld, "subject", "unknown subject \"%s\"", subject);
        if ((int)kind_type((enum scope_param_kind)kind) != t)
            return ld_fail_at(
                ld, "type", "a %s parameter must be %s", subject,
                type_names[kind_type((enum scope_param_kind)kind)]);
    }
    if (is_get && t == SCOPE_T_ARRAY)
        return ld_fail_at(ld, "type", "a GET parameter cannot be an array");
    p->name = brk_strdup(name);
    if (p->name == NULL)
        return nomem(ld->info);
    p->type = (enum scope_type)t;
    p->kind = (enum scope_param_kind)kind;
    p->required = req != NULL && json_is_true(req);
    if (en == NULL)
        return BRK_OK;
    push_key(ld, "enum");
    if (t != SCOPE_T_STRING || json_array_size(en) == 0 ||
        json_array_size(en) > 64)
        return ld_fail(ld, "an enum is 1..64 strings of a string parameter");
    p->enums = brk_calloc(json_array_size(en), sizeof(*p->enums));
    if (p->enums == NULL)
        return nomem(ld->info);
    json_array_foreach(en, i, x)
    {
        if (!json_is_string(x) || json_string_length(x) == 0 ||
            json_string_length(x) > 64)
            return ld_fail(ld, "an enum value is a string of 1..64 bytes");
        p->enums[i] = brk_strdup(json_string_value(x));
        if (p->enums[i] == NULL)
            return nomem(ld->info);
        p->nenums++;
    }
    pop(ld);
    return BRK_OK;
}

static enum brk_err
load_params(struct loader *ld, const json_t *map, struct scope_endpoint *e,
            int is_get)
{
    const char *k, *dot;
    const json_t *v;
    size_t i, j, count, hl;
    enum brk_err err;

    if (!json_is_object(map))
        return ld_fail(ld, "expected an object of name: parameter");
    count = json_object_size(map);
    if (count == 0)
        return BRK_OK;
    e->params = brk_calloc(count, sizeof(e->params[0]));
    if (e->params == NULL)
        return nomem(ld->info);
    json_object_foreach((json_t *)(uintptr_t)map, k, v)
    {
        push_key(ld, k);
        err = load_param(ld, k, v, &e->params[e->nparams], is_get);
        /* counted either way: what a failed one holds is freed with
         * the endpoint */
        e->nparams++;
        if (err)
            return err;
        pop(ld);
    }
    qsort(e->params, e->nparams, sizeof(e->params[0]), param_cmp);
    /* "a.b" makes "a" an object: "a" cannot also be a value */
    for (i = 0; i < e->nparams; i++) {
        dot = strchr(e->params[i].name, '.');
        if (dot == NULL)
            continue;
        hl = (size_t)(dot - e->params[i].name);
        for (j = 0; j < e->nparams; j++)
            if (strlen(e->params[j].name) == hl &&
                memcmp(e->params[j].name, e->params[i].name, hl) == 0)
                return ld_fail_at(ld, e->params[j].name,
                                  "\"%s\" is both a value and an object",
                                  e->params[j].name);
    }
    return BRK_OK;
}

/* "/cgi-bin/" then segments of [a-z0-9_] joined by single '/'. */
static int
valid_path(const char *s)
{
    static const char pre[] = "/cgi-bin/";
    const char *p;
    size_t seg = 0;

    if (strncmp(s, pre, sizeof(pre) - 1) != 0 || strlen(s) > 200)
        return 0;
    for (p = s + sizeof(pre) - 1; *p != '\0'; p++) {
        if (*p == '/') {
            if (seg == 0)
                return 0;
            seg = 0;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                   *p == '_') {
            seg++;
        } else {
            return 0;
        }
    }
    return seg > 0;
}

static const char *
base_name(const char *path)
{
    const char *s = strrchr(path, '/');

    return s ? s + 1 : path;
}

/* The response: errcode and errmsg must pass whatever the grant. */
static enum brk_err
check_envelope(struct loader *ld, const struct scope_node *root)
{
    static const struct {
        const char *name;
        enum scope_type type;
    } want[] = {{"errcode", SCOPE_T_INTEGER}, {"errmsg", SCOPE_T_STRING}};
    const struct scope_node *f;
    size_t i;

    for (i = 0; i < nitems(want); i++) {
        f = scope_node_field(root, want[i].name, strlen(want[i].name));
        if (f == NULL || f->type != want[i].type ||
            f->perm != SCOPE_PERM_ALWAYS)
            return ld_fail(ld,
                           "the response must declare \"%s\" (%s, "
                           "\"always\")",
                           want[i].name, type_names[want[i].type]);
    }
    return BRK_OK;
}

static enum brk_err load_write(struct loader *ld, const json_t *j,
                               struct scope_endpoint *e);

static enum brk_err
load_endpoint(struct loader *ld, const json_t *j, struct scope_endpoint *e)
{
    const char *k, *path = NULL, *method = NULL, *scope = NULL;
    const char *note = NULL;
    const json_t *v, *params = NULL, *response = NULL;
    struct scope_map *m = ld->map;
    enum brk_err err;
    size_t i;

    if (!json_is_object(j))
        return ld_fail(ld, "an endpoint is an object");
    json_object_foreach((json_t *)(uintptr_t)j, k, v)
    {
        push_key(ld, k);
        err = BRK_OK;
        if (strcmp(k, "path") == 0)
            err = str_key(ld, k, v, &path);
        else if (strcmp(k, "method") == 0)
            err = str_key(ld, k, v, &method);
        else if (strcmp(k, "scope") == 0)
            err = str_key(ld, k, v, &scope);
        else if (strcmp(k, "note") == 0)
            err = str_key(ld, k, v, &note);
        else if (strcmp(k, "params") == 0)
            params = v;
        else if (strcmp(k, "response") == 0)
            response = v;
        else if (strcmp(k, "write") == 0 || strcmp(k, "capability") == 0 ||
                 strcmp(k, "body") == 0 || strcmp(k, "creates") == 0 ||
                 strcmp(k, "multipart") == 0)
            ; /* load_write reads them */
        else
            err = ld_fail(ld, "unknown key \"%s\"", k);
        if (err)
            return err;
        pop(ld);
    }
    if (path == NULL || method == NULL || scope == NULL || response == NULL)
        return ld_fail(ld, "missing \"%s\"",
                       path == NULL     ? "path"
                       : method == NULL ? "method"
                       : scope == NULL  ? "scope"
                                        : "response");
    if (!valid_path(path))
        return ld_fail_at(ld, "path", "bad path \"%s\"", path);
    for (i = 0; i + 1 < m->n; i++)
        if (strcmp(m->eps[i].path, path) == 0)
            return ld_fail_at(ld, "path", "duplicate path %s (also in %s)",
                              path, base_name(m->eps[i].file));
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        return ld_fail_at(ld, "method", "method \"%s\": GET or POST", method);
    err = perm_of(ld, "scope", scope, &e->scope);
    if (err)
        return err;
    if (e->scope == SCOPE_PERM_NEVER)
        return ld_fail_at(ld, "scope", "scope \"never\": never callable");
    e->path = brk_strdup(path);
    e->method = brk_strdup(method);
    e->file = brk_strdup(ld->file);
    if (e->path == NULL || e->method == NULL || e->file == NULL)
        return nomem(ld->info);
    err = load_write(ld, j, e);
    if (err)
        return err;
    if (params != NULL) {
        push_key(ld, "params");
        /* a write's parameters are its query's: its body is declared
         * apart */
        err = load_params(ld, params, e, method[0] == 'G' || e->write);
        if (err)
            return err;
        pop(ld);
    }
    e->root.type = SCOPE_T_OBJECT;
    e->root.perm = SCOPE_PERM_ALWAYS;
    push_key(ld, "response");
    err = load_fields(ld, response, &e->root, 1);
    if (err)
        return err;
    err = check_envelope(ld, &e->root);
    if (err)
        return err;
    pop(ld);
    return BRK_OK;
}

/*---- Write endpoints ----*/

static const char *const subject_names[] = {
    [SCOPE_S_NONE] = NULL,
    [SCOPE_S_MEMBER] = "member",
    [SCOPE_S_DEPARTMENT] = "department",
    [SCOPE_S_CUSTOMER] = "customer",
    [SCOPE_S_CHAT] = "chat",
    [SCOPE_S_CORP_TAG] = "corp_tag",
    [SCOPE_S_CONTACT_WAY] = "contact_way",
    [SCOPE_S_WELCOME_CODE] = "welcome_code",
};

static const char *const creates_names[] = {
    [SCOPE_C_NONE] = NULL,
    [SCOPE_C_CORP_TAG] = "corp_tag",
    [SCOPE_C_CONTACT_WAY] = "contact_way",
};

const char *
scope_subject_name(enum scope_subject sj)
{
    if ((unsigned)sj >= nitems(subject_names))
        return NULL;
    return subject_names[sj];
}

static void
scope_body_clear(struct scope_body *b)
{
    size_t i;

    if (b == NULL)
        return;
    for (i = 0; i < b->nfields; i++)
        scope_body_clear(&b->fields[i]);
    brk_free(b->fields);
    if (b->items != NULL) {
        scope_body_clear(b->items);
        brk_free(b->items);
    }
    for (i = 0; b->enum_s != NULL && i < b->nenum; i++)
        brk_free(b->enum_s[i]);
    brk_free(b->enum_s);
    brk_free(b->enum_i);
    brk_free(b->name);
    memset(b, 0, sizeof(*b));
}

/* The child of a body object called name (len bytes), or NULL. */
const struct scope_body *
scope_body_field(const struct scope_body *obj, const char *name, size_t len)
{
    long i;

    if (obj == NULL || name == NULL || obj->type != SCOPE_T_OBJECT)
        return NULL;
    i = field_find(obj->fields, obj->nfields, sizeof(obj->fields[0]),
                   offsetof(struct scope_body, name), name, len);
    return i < 0 ? NULL : &obj->fields[i];
}

static int
body_name_cmp(const void *a, const void *b)
{
    const struct scope_body *x = a, *y = b;

    return strcmp(x->name, y->name);
}

/* A positive integer limit ("max_len", "max_items"). */
static enum brk_err
limit_of(struct loader *ld, const char *key, const json_t *v, long *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > 1000000)
        return ld_fail_at(ld, key, "\"%s\" must be an integer 1..1000000", key);
    *out = (long)json_integer_value(v);
    return BRK_OK;
}

/* "enum": a non-empty array of distinct values of the node's type. */
static enum brk_err
load_enum(struct loader *ld, const json_t *v, struct scope_body *b)
{
    size_t i, k, n;
    const json_t *e;

    if (b->type != SCOPE_T_STRING && b->type != SCOPE_T_INTEGER)
        return ld_fail_at(ld, "enum", "\"enum\" is for strings and integers");
    n = json_is_array(v) ? json_array_size(v) : 0;
    if (n == 0 || n > SCOPE_ENUM_MAX)
        return ld_fail_at(ld, "enum", "\"enum\" must list 1..%d values",
                          SCOPE_ENUM_MAX);
    if (b->type == SCOPE_T_STRING)
        b->enum_s = brk_calloc(n, sizeof(*b->enum_s));
    else
        b->enum_i = brk_calloc(n, sizeof(*b->enum_i));
    if (b->enum_s == NULL && b->enum_i == NULL)
        return nomem(ld->info);
    json_array_foreach(v, i, e)
    {
        if (b->type == SCOPE_T_STRING ? !json_is_string(e)
                                      : !json_is_integer(e))
            return ld_fail_at(ld, "enum", "enum values must be %ss",
                              type_names[b->type]);
        for (k = 0; k < i; k++)
            if (b->type == SCOPE_T_STRING
                    ? strcmp(b->enum_s[k], json_string_value(e)) == 0
                    : b->enum_i[k] == (long long)json_integer_value(e))
                return ld_fail_at(ld, "enum", "enum value repeated");
        if (b->type == SCOPE_T_STRING) {
            b->enum_s[i] = brk_strdup(json_string_value(e));
            if (b->enum_s[i] == NULL)
                return nomem(ld->info);
        } else {
            b->enum_i[i] = (long long)json_integer_value(e);
        }
        b->nenum = i + 1;
    }
    return BRK_OK;
}

/* "member" or "member_list" ...: the subject and whether it is a list. */
static int
subject_of(const char *s, int *list)
{
    static const char suffix[] = "_list";
    char head[32];
    size_t len = strlen(s), sl = sizeof(suffix) - 1;

    *list = 0;
    if (len > sl && strcmp(s + len - sl, suffix) == 0 &&
        len - sl < sizeof(head)) {
        memcpy(head, s, len - sl);
        head[len - sl] = '\0';
        *list = 1;
        return name_index(subject_names, nitems(subject_names), head);
    }
    return name_index(subject_names, nitems(subject_names), s);
}

static enum brk_err load_body_fields(struct loader *ld, const json_t *map,
                                     struct scope_body *b, int depth);

/* One body node. item: an array's element (no name, never "required"). */
static enum brk_err
load_body_node(struct loader *ld, const json_t *j, struct scope_body *b,
               int item, int depth)
{
    const char *k, *tname = NULL, *subject = NULL, *note = NULL;
    const json_t *v, *items = NULL, *fields = NULL, *en = NULL;
    enum brk_err err;
    int t, sj = SCOPE_S_NONE, list = 0;

    if (!json_is_object(j))
        return ld_fail(ld, "a body key is an object: {\"type\": ...}");
    if (depth > SCOPE_BODY_MAX_DEPTH)
        return ld_fail(ld, "body tree deeper than %d levels",
                       SCOPE_BODY_MAX_DEPTH);
    json_object_foreach((json_t *)(uintptr_t)j, k, v)
    {
        push_key(ld, k);
        err = BRK_OK;
        if (strcmp(k, "type") == 0)
            err = str_key(ld, k, v, &tname);
        else if (strcmp(k, "subject") == 0)
            err = str_key(ld, k, v, &subject);
        else if (strcmp(k, "note") == 0)
            err = str_key(ld, k, v, &note);
        else if (strcmp(k, "items") == 0)
            items = v;
        else if (strcmp(k, "fields") == 0)
            fields = v;
        else if (strcmp(k, "enum") == 0)
            en = v;
        else if (strcmp(k, "required") == 0) {
            if (item)
                err = ld_fail(ld, "array items cannot be \"required\"");
            else if (!json_is_boolean(v))
                err = ld_fail(ld, "\"required\" must be true or false");
            else
                b->required = json_is_true(v);
        } else if (strcmp(k, "max_len") == 0 || strcmp(k, "max_items") == 0) {
            pop(ld);
            err = limit_of(ld, k, v, k[4] == 'l' ? &b->max_len : &b->max_items);
            push_key(ld, k);
        } else
            err = ld_fail(ld, "unknown key \"%s\"", k);
        if (err)
            return err;
        pop(ld);
    }
    if (tname == NULL)
        return ld_fail(ld, "missing \"type\"");
    t = name_index(type_names, nitems(type_names), tname);
    if (t < 0)
        return ld_fail_at(ld, "type", "unknown type \"%s\"", tname);
    b->type = (enum scope_type)t;
    if (b->max_len != 0 && b->type != SCOPE_T_STRING)
        return ld_fail_at(ld, "max_len", "\"max_len\" is for strings");
    if (b->max_items != 0 && b->type != SCOPE_T_ARRAY)
        return ld_fail_at(ld, "max_items", "\"max_items\" is for arrays");
    if (en != NULL) {
        err = load_enum(ld, en, b);
        if (err)
            return err;
    }
    if (subject != NULL) {
        sj = subject_of(subject, &list);
        if (sj <= SCOPE_S_NONE)
            return ld_fail_at(ld, "subject", "unknown subject \"%s\"", subject);
        if (list != (b->type == SCOPE_T_ARRAY))
            return ld_fail_at(ld, "subject",
                              list ? "a list subject is for arrays"
                                   : "an array takes a list subject "
                                     "(\"member_list\")");
    }
    if (b->type == SCOPE_T_ARRAY) {
        if (items == NULL)
            return ld_fail(ld, "an array needs \"items\"");
        b->items = brk_calloc(1, sizeof(*b->items));
        if (b->items == NULL)
            return nomem(ld->info);
        push_key(ld, "items");
        err = load_body_node(ld, items, b->items, 1, depth + 1);
        if (err)
            return err;
        pop(ld);
        if (list) {
            /* the list mark is the items' subject */
            if (b->items->subject != SCOPE_S_NONE ||
                (b->items->type != SCOPE_T_STRING &&
                 b->items->type != SCOPE_T_INTEGER))
                return ld_fail_at(ld, "subject",
                                  "a list subject needs scalar items "
                                  "without a subject of their own");
            b->items->subject = (enum scope_subject)sj;
            sj = SCOPE_S_NONE;
            b->items->required = 0;
        }
    } else if (items != NULL) {
        return ld_fail_at(ld, "items", "\"items\" is only for arrays");
    }
    if (b->type == SCOPE_T_OBJECT) {
        if (fields == NULL)
            return ld_fail(ld, "a body object declares its \"fields\"");
        push_key(ld, "fields");
        err = load_body_fields(ld, fields, b, depth + 1);
        if (err)
            return err;
        pop(ld);
    } else if (fields != NULL) {
        return ld_fail_at(ld, "fields", "\"fields\" is only for objects");
    }
    if (list)
        return BRK_OK;
    if (sj != SCOPE_S_NONE) {
        if (b->type !=
            (sj == SCOPE_S_DEPARTMENT ? SCOPE_T_INTEGER : SCOPE_T_STRING))
            return ld_fail_at(ld, "type", "a %s must be %s", subject,
                              sj == SCOPE_S_DEPARTMENT ? "integer" : "string");
        b->subject = (enum scope_subject)sj;
    }
    return BRK_OK;
}

static enum brk_err
load_body_fields(struct loader *ld, const json_t *map, struct scope_body *b,
                 int depth)
{
    const char *k;
    const json_t *v;
    size_t count;
    enum brk_err err;

    if (!json_is_object(map) || json_object_size(map) == 0)
        return ld_fail(ld, "expected a non-empty object of name: key");
    count = json_object_size(map);
    b->fields = brk_calloc(count, sizeof(b->fields[0]));
    if (b->fields == NULL)
        return nomem(ld->info);
    json_object_foreach((json_t *)(uintptr_t)map, k, v)
    {
        push_key(ld, k);
        if (!valid_name(k))
            return ld_fail(ld, "bad body key \"%s\"", k);
        b->fields[b->nfields].name = brk_strdup(k);
        b->nfields++;
        if (b->fields[b->nfields - 1].name == NULL)
            return nomem(ld->info);
        err = load_body_node(ld, v, &b->fields[b->nfields - 1], 0, depth);
        if (err)
            return err;
        pop(ld);
    }
    qsort(b->fields, b->nfields, sizeof(b->fields[0]), body_name_cmp);
    return BRK_OK;
}

/*
 * The capability of a write: one name, or an array of names of which any
 * one suffices (media/upload serves every writer), into *out.
 */
static enum brk_err
load_capability(struct loader *ld, const json_t *cap, unsigned *out)
{
    const json_t *x;
    unsigned bits = 0, b;
    size_t i;

    if (json_is_string(cap)) {
        b = capability_bit(json_string_value(cap));
        if (capability_name(b) == NULL)
            return ld_fail_at(ld, "capability", "unknown capability \"%s\"",
                              json_string_value(cap));
        *out = b;
        return BRK_OK;
    }
    if (!json_is_array(cap) || json_array_size(cap) == 0)
        return ld_fail_at(ld, "capability",
                          "\"capability\" is a name or an array of names");
    json_array_foreach(cap, i, x)
    {
        b = json_is_string(x) ? capability_bit(json_string_value(x)) : 0;
        if (capability_name(b) == NULL)
            return ld_fail_at(ld, "capability", "unknown capability \"%s\"",
                              json_is_string(x) ? json_string_value(x) : "?");
        if (bits & b)
            return ld_fail_at(ld, "capability", "capability \"%s\" repeated",
                              json_string_value(x));
        bits |= b;
    }
    *out = bits;
    return BRK_OK;
}

/*
 * The write keys of an endpoint object j: "write": true with "capability"
 * (a capability name, or an array of them: any one suffices), "body" (the
 * request body's keys) or "multipart": true (media/upload's one part), and
 * optionally "creates"; none of them on a read.
 */
static enum brk_err
load_write(struct loader *ld, const json_t *j, struct scope_endpoint *e)
{
    const json_t *w = json_object_get(j, "write");
    const json_t *cap = json_object_get(j, "capability");
    const json_t *body = json_object_get(j, "body");
    const json_t *cr = json_object_get(j, "creates");
    const json_t *mp = json_object_get(j, "multipart");
    const char *method = json_string_value(json_object_get(j, "method"));
    enum brk_err err;
    int c;

    if (w != NULL && !json_is_boolean(w))
        return ld_fail_at(ld, "write", "\"write\" must be true or false");
    if (w == NULL || !json_is_true(w)) {
        if (cap != NULL || body != NULL || cr != NULL || mp != NULL)
            return ld_fail_at(ld,
                              cap    ? "capability"
                              : body ? "body"
                              : cr   ? "creates"
                                     : "multipart",
                              "only a write (\"write\": true) declares "
                              "\"capability\", \"body\", \"multipart\" or "
                              "\"creates\"");
        return BRK_OK;
    }
    if (method == NULL || strcmp(method, "POST") != 0)
        return ld_fail_at(ld, "method", "a write is a POST");
    if (mp != NULL && !json_is_true(mp))
        return ld_fail_at(ld, "multipart", "\"multipart\" is true or absent");
    if (cap == NULL || (body == NULL) == (mp == NULL))
        return ld_fail(ld, "a write declares %s",
                       cap == NULL ? "\"capability\""
                                   : "one of \"body\" and \"multipart\"");
    err = load_capability(ld, cap, &e->capability);
    if (err)
        return err;
    e->write = 1;
    if (cr != NULL) {
        c = json_is_string(cr)
                ? name_index(creates_names, nitems(creates_names),
                             json_string_value(cr))
                : -1;
        if (c <= SCOPE_C_NONE)
            return ld_fail_at(ld, "creates",
                              "\"creates\" is \"corp_tag\" or "
                              "\"contact_way\"");
        e->creates = (enum scope_creates)c;
    }
    e->body.type = SCOPE_T_OBJECT;
    if (mp != NULL) {
        e->multipart = 1;
        return BRK_OK;
    }
    push_key(ld, "body");
    err = load_body_fields(ld, body, &e->body, 1);
    if (err)
        return err;
    pop(ld);
    return BRK_OK;
}

static enum brk_err
load_doc(struct loader *ld, const json_t *doc)
{
    const char *k, *note = NULL;
    const json_t *v, *eps = NULL, *ep, *evs = NULL;
    struct scope_map *m = ld->map;
    struct scope_endpoint *grown;
    enum brk_err err;
    size_t i, cap;

    if (!json_is_object(doc))
        return ld_fail(ld, "a scope file is an object");
    json_object_foreach((json_t *)(uintptr_t)doc, k, v)
    {
        push_key(ld, k);
        err = BRK_OK;
        if (strcmp(k, "endpoints") == 0)
            eps = v;
        else if (strcmp(k, "events") == 0)
            evs = v;
        else if (strcmp(k, "note") == 0)
            err = str_key(ld, k, v, &note);
        else
            err = ld_fail(ld, "unknown key \"%s\"", k);
        if (err)
            return err;
        pop(ld);
    }
    if (evs != NULL) {
        push_key(ld, "events");
        err = scope_events_load(ld, evs);
        if (err)
            return err;
        pop(ld);
        if (eps == NULL)
            return BRK_OK;
    }
    if (eps == NULL)
        return ld_fail(ld, "missing \"endpoints\" (or \"events\")");
    push_key(ld, "endpoints");
    if (!json_is_array(eps) || json_array_size(eps) == 0)
        return ld_fail(ld, "\"endpoints\" must be a non-empty array");
    json_array_foreach(eps, i, ep)
    {
        if (m->n == m->cap) {
            cap = m->cap ? m->cap * 2 : 16;
            grown = brk_realloc(m->eps, cap * sizeof(m->eps[0]));
            if (grown == NULL)
                return nomem(ld->info);
            m->eps = grown;
            m->cap = cap;
        }
        memset(&m->eps[m->n], 0, sizeof(m->eps[0]));
        m->n++;
        push_index(ld, i);
        err = load_endpoint(ld, ep, &m->eps[m->n - 1]);
        if (err)
            return err;
        pop(ld);
    }
    pop(ld);
    return BRK_OK;
}

/* Read a whole regular file of at most SCOPE_MAX_FILE bytes. */
static enum brk_err
read_file(const char *path, char **out, size_t *outlen,
          struct brk_errinfo *info)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    ssize_t r;
    enum brk_err err = BRK_ERR_IO;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        brk_errinfo_set(info, 0, -1, "%s: cannot open: %s", path,
                        strerror(errno));
        return BRK_ERR_IO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        brk_errinfo_set(info, 0, -1, "%s: not a regular file", path);
        goto out;
    }
    if (st.st_size > SCOPE_MAX_FILE) {
        brk_errinfo_set(info, 0, -1, "%s: larger than %ld bytes", path,
                        SCOPE_MAX_FILE);
        err = BRK_ERR_TOOBIG;
        goto out;
    }
    buf = brk_malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        err = nomem(info);
        goto out;
    }
    while (got < (size_t)st.st_size) {
        r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            brk_errinfo_set(info, 0, -1, "%s: cannot read: %s", path,
                            r < 0 ? strerror(errno) : "file shrank");
            goto out;
        }
        got += (size_t)r;
    }
    buf[got] = '\0';
    *out = buf;
    *outlen = got;
    buf = NULL;
    err = BRK_OK;
out:
    brk_free(buf);
    close(fd);
    return err;
}

/* Parse path and add its endpoints to m. */
static enum brk_err
load_into(struct scope_map *m, const char *path, struct brk_errinfo *info)
{
    struct loader *ld = NULL;
    json_error_t jerr;
    json_t *doc = NULL;
    char *text = NULL;
    size_t len = 0;
    enum brk_err err;

    err = read_file(path, &text, &len, info);
    if (err)
        goto out;
    /* duplicate keys are refused: the filter would see one value, a
     * reviewer the other */
    doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        /* jansson leaves the text empty on some allocation failures */
        if (json_error_code(&jerr) == json_error_out_of_memory ||
            jerr.text[0] == '\0') {
            err = nomem(info);
        } else {
            brk_errinfo_set(info, jerr.line, (long)jerr.position,
                            "%s:%d:%d: %s", path, jerr.line, jerr.column,
                            jerr.text);
            err = BRK_ERR_CONFIG;
        }
        goto out;
    }
    ld = brk_calloc(1, sizeof(*ld));
    if (ld == NULL) {
        err = nomem(info);
        goto out;
    }
    ld->file = path;
    ld->text = text;
    ld->len = len;
    ld->info = info;
    ld->map = m;
    err = load_doc(ld, doc);
out:
    brk_free(ld);
    json_decref(doc);
    brk_free(text);
    return err;
}

static enum brk_err
finish(struct scope_map *m, struct scope_map **out, struct brk_errinfo *info)
{
    static uint64_t serial;
    uint64_t tree = __atomic_add_fetch(&serial, 1, __ATOMIC_RELAXED);
    size_t i;

    (void)info;
    /* a file of events alone has no endpoint array */
    if (m->n > 1)
        qsort(m->eps, m->n, sizeof(m->eps[0]), endpoint_cmp);
    for (i = 0; i < m->n; i++)
        m->eps[i].root.tree = tree;
    scope_events_set_sort(m->evs);
    *out = m;
    return BRK_OK;
}

/*
 * Load one scope file. Returns BRK_OK; BRK_ERR_CONFIG for content the
 * format refuses ("FILE:LINE:COL: message" in info->msg); BRK_ERR_IO or
 * BRK_ERR_TOOBIG when it cannot be read ("FILE: message");
 * BRK_ERR_NOMEM. Owned result: scope_map_free.
 */
enum brk_err
scope_map_load_file(const char *file, struct scope_map **out,
                    struct brk_errinfo *info)
{
    struct scope_map *m;
    enum brk_err err;

    m = brk_calloc(1, sizeof(*m));
    if (m == NULL)
        return nomem(info);
    err = load_into(m, file, info);
    if (err) {
        scope_map_free(m);
        return err;
    }
    return finish(m, out, info);
}

static int
str_ptr_cmp(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;

    return strcmp(*x, *y);
}

static int
is_scope_file(const char *dir, const char *name)
{
    size_t len = strlen(name);
    char path[4096];
    struct stat st;

    if (name[0] == '.' || len <= 5 || strcmp(name + len - 5, ".json") != 0)
        return 0;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
        sizeof(path))
        return 1; /* let the open report it */
    return stat(path, &st) != 0 || S_ISREG(st.st_mode);
}

/*
 * Load every *.json file of dir (hidden files and subdirectories are
 * skipped), in name order, into one map; a path declared twice, in one
 * file or two, is refused naming both files. A directory without scope
 * files is an error. Returns as scope_map_load_file, and BRK_ERR_IO when
 * dir cannot be read. Owned result: scope_map_free.
 */
enum brk_err
scope_map_load(const char *dir, struct scope_map **out,
               struct brk_errinfo *info)
{
    struct scope_map *m = NULL;
    struct dirent *de;
    char **names = NULL, **grown, *base = NULL, *path = NULL;
    size_t n = 0, cap = 0, i, blen;
    enum brk_err err = BRK_OK;
    DIR *d = NULL;

    base = brk_strdup(dir);
    if (base == NULL) {
        err = nomem(info);
        goto out;
    }
    for (blen = strlen(base); blen > 1 && base[blen - 1] == '/'; blen--)
        base[blen - 1] = '\0';
    d = opendir(base);
    if (d == NULL) {
        brk_errinfo_set(info, 0, -1, "%s: cannot open directory: %s", base,
                        strerror(errno));
        err = BRK_ERR_IO;
        goto out;
    }
    while ((de = readdir(d)) != NULL) {
        if (!is_scope_file(base, de->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            grown = brk_realloc(names, cap * sizeof(*names));
            if (grown == NULL) {
                err = nomem(info);
                goto out;
            }
            names = grown;
        }
        names[n] = brk_strdup(de->d_name);
        if (names[n] == NULL) {
            err = nomem(info);
            goto out;
        }
        n++;
    }
    if (n == 0) {
        brk_errinfo_set(info, 0, -1, "%s: no scope files (*.json)", base);
        err = BRK_ERR_CONFIG;
        goto out;
    }
    qsort(names, n, sizeof(*names), str_ptr_cmp);
    m = brk_calloc(1, sizeof(*m));
    if (m == NULL) {
        err = nomem(info);
        goto out;
    }
    for (i = 0; i < n; i++) {
        blen = strlen(base) + strlen(names[i]) + 2;
        path = brk_malloc(blen);
        if (path == NULL) {
            err = nomem(info);
            goto out;
        }
        snprintf(path, blen, "%s/%s", base, names[i]);
        err = load_into(m, path, info);
        if (err)
            goto out;
        brk_free(path);
        path = NULL;
    }
    err = finish(m, out, info);
    m = NULL;
out:
    scope_map_free(m);
    if (d != NULL)
        closedir(d);
    for (i = 0; i < n; i++)
        brk_free(names[i]);
    brk_free(names);
    brk_free(path);
    brk_free(base);
    return err;
}

/*---- Shared with scope_events.c (scope_map_int.h) ----*/

void
scope_ld_push_key(struct loader *ld, const char *key)
{
    push_key(ld, key);
}

void
scope_ld_push_index(struct loader *ld, size_t index)
{
    push_index(ld, index);
}

void
scope_ld_pop(struct loader *ld)
{
    pop(ld);
}

enum brk_err
scope_ld_fail(struct loader *ld, const char *fmt, ...)
{
    char msg[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return ld_fail(ld, "%s", msg);
}

enum brk_err
scope_ld_nomem(struct loader *ld)
{
    return nomem(ld->info);
}

enum brk_err
scope_ld_str(struct loader *ld, const char *key, const json_t *v,
             const char **out)
{
    return str_key(ld, key, v, out);
}

enum brk_err
scope_ld_perm(struct loader *ld, const char *key, const char *name, int *out)
{
    return perm_of(ld, key, name, out);
}

/* The fields of an event tree into root (an object at level 0), with the
 * event-only node keys allowed. */
enum brk_err
scope_ld_event_fields(struct loader *ld, const json_t *map,
                      struct scope_node *root)
{
    enum brk_err err;

    root->type = SCOPE_T_OBJECT;
    root->perm = SCOPE_PERM_ALWAYS;
    ld->event_tree = 1;
    err = load_fields(ld, map, root, 1);
    ld->event_tree = 0;
    return err;
}

void
scope_ld_node_clear(struct scope_node *n)
{
    node_clear(n);
}

const char *
scope_ld_file(const struct loader *ld)
{
    return ld->file;
}

struct scope_event_set **
scope_ld_events(struct loader *ld)
{
    return &ld->map->evs;
}

const struct scope_event_set *
scope_map_event_set(const struct scope_map *m)
{
    return m != NULL ? m->evs : NULL;
}

int
scope_type_matches(enum scope_type t, const json_t *v)
{
    switch (t) {
    case SCOPE_T_STRING:
        return json_is_string(v);
    case SCOPE_T_INTEGER:
        return json_is_integer(v);
    case SCOPE_T_NUMBER:
        return json_is_number(v);
    case SCOPE_T_BOOL:
        return json_is_boolean(v);
    case SCOPE_T_OBJECT:
        return json_is_object(v);
    case SCOPE_T_ARRAY:
        return json_is_array(v);
    }
    return 0;
}
