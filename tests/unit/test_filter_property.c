/*
 * Property test of the streaming filter: random scope trees, responses,
 * grants and visible ranges from a fixed-seed xorshift generator, each
 * response fed in random pieces (some a byte at a time) and compared with
 * a reference model written separately on jansson from the rules in
 * filter.h: same output (as JSON, keys in order), same counts, same
 * verdict on malformed input. The output is also checked on its own: no
 * key outside the grant, no record outside the range. Every case is also
 * run on a reused filter (filter_reset) that read the case before it with
 * the same depth limit, whatever tree, grant and range that had, wherever
 * it stopped (an error, a body left half read) and whether its output was
 * taken or not: its result must be the new filter's, byte for byte, with
 * the same counts, names and errcode.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "filter.h"

#ifndef CASES
#define CASES 100000
#endif
#ifndef SEED
#define SEED 0x9E3779B97F4A7C15ULL
#endif
#define CASES_PER_TREE 8
#define BYTEWISE_EVERY 97 /* every Nth case is also fed a byte at a time */
#define NPERM          6  /* permission ids 2..5 used by generated trees */

/*---- Random numbers ----*/

struct rng {
    uint64_t s;
};

static uint64_t
rnd(struct rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1DULL;
}

static unsigned
below(struct rng *r, unsigned n)
{
    return (unsigned)(rnd(r) % n);
}

static int
chance(struct rng *r, unsigned percent)
{
    return below(r, 1000) < percent * 10;
}

/* Per mille. */
static int
chance_pm(struct rng *r, unsigned permille)
{
    return below(r, 1000) < permille;
}

/*---- Scope trees ----*/

static const char *const names[] = {
    "a",    "b",    "c", "d",     "id",       "userid", "type", "name",
    "list", "info", "x", "value", "\xc3\xa9", "q\"t",   "k_1",  "owner",
};

static const char *const id_names[] = {"id", "userid", "owner", "uid"};

static struct scope_node
mk_leaf(const char *name, enum scope_type t, int perm)
{
    struct scope_node n;

    memset(&n, 0, sizeof(n));
    n.name = (char *)(uintptr_t)name;
    n.type = t;
    n.perm = perm;
    return n;
}

static int
rnd_perm(struct rng *r)
{
    unsigned v = below(r, 100);

    if (v < 30)
        return SCOPE_PERM_ALWAYS;
    if (v < 35)
        return SCOPE_PERM_NEVER;
    return 2 + (int)below(r, NPERM - 2);
}

static int
name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct scope_node *)a)->name,
                  ((const struct scope_node *)b)->name);
}

static struct scope_node *
node_dup(struct scope_node n)
{
    struct scope_node *p = brk_malloc(sizeof(*p));

    assert_non_null(p);
    *p = n;
    return p;
}

static void gen_fields(struct rng *r, struct scope_node *o, int depth);

static enum scope_type
rnd_scalar_type(struct rng *r)
{
    static const enum scope_type t[] = {SCOPE_T_STRING, SCOPE_T_STRING,
                                        SCOPE_T_INTEGER, SCOPE_T_NUMBER,
                                        SCOPE_T_BOOL};

    return t[below(r, nitems(t))];
}

/* An array item node. */
static struct scope_node
gen_item(struct rng *r, int depth)
{
    struct scope_node n;
    unsigned v = below(r, 100);

    if (depth < 4 && v < 45) {
        n = mk_leaf(NULL, SCOPE_T_OBJECT, SCOPE_PERM_ALWAYS);
        gen_fields(r, &n, depth + 1);
    } else if (depth < 4 && v < 52) {
        n = mk_leaf(NULL, SCOPE_T_ARRAY, SCOPE_PERM_ALWAYS);
        n.items = node_dup(gen_item(r, depth + 1));
    } else {
        n = mk_leaf(NULL, rnd_scalar_type(r), SCOPE_PERM_ALWAYS);
        if (n.type == SCOPE_T_STRING && chance(r, 30))
            n.record = chance(r, 50) ? SCOPE_REC_MEMBER : SCOPE_REC_FOLLOW_USER;
        else if (n.type == SCOPE_T_INTEGER && chance(r, 40))
            n.record = chance(r, 50) ? SCOPE_REC_DEPARTMENT : SCOPE_REC_TAG;
    }
    if (chance(r, 8))
        n.perm = rnd_perm(r);
    return n;
}

static struct scope_node
gen_field(struct rng *r, const char *name, int depth)
{
    struct scope_node n;
    unsigned v = below(r, 100);

    if (depth < 4 && v < 20) {
        n = mk_leaf(name, SCOPE_T_OBJECT, rnd_perm(r));
        gen_fields(r, &n, depth + 1);
    } else if (depth < 4 && v < 40) {
        n = mk_leaf(name, SCOPE_T_ARRAY, rnd_perm(r));
        n.items = node_dup(gen_item(r, depth + 1));
    } else {
        n = mk_leaf(name, rnd_scalar_type(r), rnd_perm(r));
    }
    n.name = (char *)(uintptr_t)name;
    return n;
}

static struct scope_node *
field_named(struct scope_node *o, const char *name)
{
    size_t i;

    for (i = 0; i < o->nfields; i++)
        if (strcmp(o->fields[i].name, name) == 0)
            return &o->fields[i];
    return NULL;
}

static void node_free(struct scope_node *n);

/* Put (or replace) field name in o. */
static struct scope_node *
set_field(struct scope_node *o, struct scope_node f)
{
    struct scope_node *old = field_named(o, f.name), *grown;

    if (old != NULL) {
        node_free(old);
        *old = f;
        return old;
    }
    grown = brk_realloc(o->fields, (o->nfields + 1) * sizeof(*grown));
    assert_non_null(grown);
    o->fields = grown;
    o->fields[o->nfields] = f;
    return &o->fields[o->nfields++];
}

/* A follow user record, an object or an id list item. */
static struct scope_node
gen_follow_user(struct rng *r, int as_object)
{
    struct scope_node n;

    if (!as_object) {
        n = mk_leaf(NULL, SCOPE_T_STRING, SCOPE_PERM_ALWAYS);
        n.record = SCOPE_REC_FOLLOW_USER;
        return n;
    }
    n = mk_leaf(NULL, SCOPE_T_OBJECT, SCOPE_PERM_ALWAYS);
    set_field(&n, mk_leaf("userid", SCOPE_T_STRING, rnd_perm(r)));
    if (chance(r, 50))
        set_field(&n, mk_leaf("name", SCOPE_T_STRING, rnd_perm(r)));
    n.record = SCOPE_REC_FOLLOW_USER;
    n.record_id = brk_strdup("userid");
    assert_non_null(n.record_id);
    return n;
}

/* Make object o a record of a random kind, adding what it needs. */
static void
make_record(struct rng *r, struct scope_node *o)
{
    static const enum scope_record kinds[] = {
        SCOPE_REC_MEMBER,      SCOPE_REC_DEPARTMENT,  SCOPE_REC_TAG,
        SCOPE_REC_FOLLOW_USER, SCOPE_REC_CHAT_MEMBER, SCOPE_REC_CUSTOMER,
        SCOPE_REC_CHAT,
    };
    enum scope_record k = kinds[below(r, nitems(kinds))];
    enum scope_type idt = k == SCOPE_REC_DEPARTMENT || k == SCOPE_REC_TAG
                              ? SCOPE_T_INTEGER
                              : SCOPE_T_STRING;
    const char *a, *b;
    struct scope_node *f, holder, arr;
    char buf[64];

    o->record = k;
    if (k == SCOPE_REC_CUSTOMER) {
        if (chance(r, 60)) {
            arr = mk_leaf("list", SCOPE_T_ARRAY, rnd_perm(r));
            arr.items = node_dup(gen_follow_user(r, chance(r, 60)));
            set_field(o, arr);
        } else {
            holder = mk_leaf("info", SCOPE_T_OBJECT, rnd_perm(r));
            f = set_field(&holder, gen_follow_user(r, 1));
            f->name = (char *)(uintptr_t) "x";
            f->perm = rnd_perm(r);
            set_field(o, holder);
        }
        return;
    }
    a = id_names[below(r, nitems(id_names))];
    if (chance(r, 75)) {
        f = set_field(o, mk_leaf(a, idt, rnd_perm(r)));
        /* now and then declared with another type than its kind's */
        if (chance(r, 5))
            f->type = rnd_scalar_type(r);
        o->record_id = brk_strdup(a);
    } else {
        b = id_names[below(r, nitems(id_names))];
        holder = mk_leaf(a, SCOPE_T_OBJECT, rnd_perm(r));
        set_field(&holder, mk_leaf(b, idt, rnd_perm(r)));
        if (chance(r, 40))
            set_field(&holder, mk_leaf("c", SCOPE_T_STRING, rnd_perm(r)));
        set_field(o, holder);
        snprintf(buf, sizeof(buf), "%s.%s", a, b);
        o->record_id = brk_strdup(buf);
    }
    assert_non_null(o->record_id);
    if (k == SCOPE_REC_CHAT_MEMBER && strcmp(a, "type") != 0)
        set_field(o, mk_leaf("type", SCOPE_T_INTEGER, rnd_perm(r)));
}

static void
sort_tree(struct scope_node *n)
{
    size_t i;

    if (n->nfields > 1)
        qsort(n->fields, n->nfields, sizeof(n->fields[0]), name_cmp);
    for (i = 0; i < n->nfields; i++)
        sort_tree(&n->fields[i]);
    if (n->items != NULL)
        sort_tree(n->items);
}

static void
gen_fields(struct rng *r, struct scope_node *o, int depth)
{
    unsigned nf = depth == 0 ? 4 + below(r, 9) : 1 + below(r, 6), i;
    const char *nm;

    for (i = 0; i < nf; i++) {
        nm = names[below(r, nitems(names))];
        if (field_named(o, nm) != NULL)
            continue;
        set_field(o, gen_field(r, nm, depth));
    }
    if (depth > 0 && chance(r, o->name == NULL ? 55 : 25))
        make_record(r, o);
}

static struct scope_node *
gen_tree(struct rng *r)
{
    struct scope_node *root =
        node_dup(mk_leaf(NULL, SCOPE_T_OBJECT, SCOPE_PERM_ALWAYS));

    gen_fields(r, root, 0);
    sort_tree(root);
    return root;
}

static void
node_free(struct scope_node *n)
{
    size_t i;

    for (i = 0; i < n->nfields; i++)
        node_free(&n->fields[i]);
    brk_free(n->fields);
    if (n->items != NULL) {
        node_free(n->items);
        brk_free(n->items);
    }
    brk_free(n->record_id);
    memset(n, 0, sizeof(*n));
}

static void
tree_free(struct scope_node *root)
{
    node_free(root);
    brk_free(root);
}

/* A compact picture of a tree for failure messages. */
static void
tree_print(const struct scope_node *n, char *buf, size_t cap, size_t *len)
{
    static const char tc[] = "sinbOA";
    size_t i;
    int w;

#define OUT(...)                                                               \
    do {                                                                       \
        w = snprintf(buf + *len, cap - *len, __VA_ARGS__);                     \
        if (w > 0 && (size_t)w < cap - *len)                                   \
            *len += (size_t)w;                                                 \
    } while (0)
    OUT("%s%c@%d", n->name ? n->name : "", tc[n->type], n->perm);
    if (n->record)
        OUT("!%d(%s)", n->record, n->record_id ? n->record_id : "");
    if (n->type == SCOPE_T_OBJECT) {
        OUT("{");
        for (i = 0; i < n->nfields; i++) {
            if (i)
                OUT(" ");
            tree_print(&n->fields[i], buf, cap, len);
        }
        OUT("}");
    } else if (n->items != NULL) {
        OUT("[");
        tree_print(n->items, buf, cap, len);
        OUT("]");
    }
#undef OUT
}

/*---- Responses ----*/

struct text {
    char *p;
    size_t len, cap;
};

static void
put(struct text *t, const char *s, size_t n)
{
    char *grown;

    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        grown = brk_realloc(t->p, t->cap);
        assert_non_null(grown);
        t->p = grown;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void
puts_(struct text *t, const char *s)
{
    put(t, s, strlen(s));
}

static void
ws(struct rng *r, struct text *t)
{
    static const char *const w[] = {" ", "\n", "\t", "\r\n", "  "};

    if (chance(r, 4))
        puts_(t, w[below(r, nitems(w))]);
}

/* A key (decoded bytes) as JSON text, some characters as \u escapes. */
static void
put_key(struct rng *r, struct text *t, const char *k)
{
    char esc[16];
    const unsigned char *p = (const unsigned char *)k;
    int escape_all = chance(r, 3);

    put(t, "\"", 1);
    while (*p) {
        if (*p == '"') {
            puts_(t, chance(r, 50) ? "\\\"" : "\\u0022");
            p++;
            continue;
        }
        if (*p < 0x80 && (escape_all || chance(r, 8))) {
            snprintf(esc, sizeof(esc), chance(r, 50) ? "\\u%04x" : "\\u%04X",
                     *p);
            puts_(t, esc);
            p++;
        } else if (*p == 0xc3 && p[1] == 0xa9 && chance(r, 50)) {
            puts_(t, "\\u00e9");
            p += 2;
        } else {
            put(t, (const char *)p, 1);
            p++;
        }
    }
    put(t, "\"", 1);
}

static const char *const strings[] = {
    "\"\"",
    "\"a\"",
    "\"hello world\"",
    "\"\\n\\t\\r\\b\\f\"",
    "\"q\\\"uote\"",
    "\"back\\\\slash\"",
    "\"\\/sl\\/ash\"",
    "\"\\u00e9t\\u00C9\"",
    "\"\xc3\xa9t\xc3\xa9\"",
    "\"\xe4\xb8\xad\xe6\x96\x87\"",
    "\"\\u4e2d\"",
    "\"\\ud83d\\ude00\"",
    "\"\xf0\x9f\x98\x80\"",
    "\"\\u0001\\u001f\"",
    "\"a\\u0000b\"",
    "\"\x7f\"",
    "\"2\"",
};

/* Invalid strings: each makes the whole body malformed. */
static const char *const bad_strings[] = {
    "\"\\ud800\"",  "\"\\udc00x\"",         "\"\\ud800\\u0041\"",
    "\"\xff\"",     "\"\xc0\x80\"",         "\"\xed\xa0\x80\"",
    "\"\xe4\xb8\"", "\"\xf4\x90\x80\x80\"", "\"a\tb\"",
    "\"\\x\"",
};

static const char *const numbers[] = {
    "0",       "-0",  "7",        "-12", "3.5", "1e3", "1E+3",
    "-2.5e-3", "0.0", "12345678", "2",   "1",   "2.0", "-7E2",
};

static const char *const id_strings[] = {
    "\"u1\"",
    "\"u2\"",
    "\"u3\"",
    "\"u4\"",
    "\"u5\"",
    "\"u\\u0036\"",
    "\"\xe7\x94\xa8\xe6\x88\xb7\"",
};

static const char *const id_numbers[] = {"1", "2", "3", "4", "5", "-0", "6"};

static void gen_json(struct rng *r, struct text *t, int depth, int budget);

static void
gen_scalar(struct rng *r, struct text *t)
{
    switch (below(r, 6)) {
    case 0:
        puts_(t, "null");
        break;
    case 1:
        puts_(t, chance(r, 50) ? "true" : "false");
        break;
    case 2:
        puts_(t, numbers[below(r, nitems(numbers))]);
        break;
    case 3:
        puts_(t, id_numbers[below(r, nitems(id_numbers))]);
        break;
    case 4:
        puts_(t, id_strings[below(r, nitems(id_strings))]);
        break;
    default:
        puts_(t, strings[below(r, nitems(strings))]);
    }
}

/* Any JSON, nesting at most budget more levels. */
static void
gen_json(struct rng *r, struct text *t, int depth, int budget)
{
    unsigned n, i;

    if (budget <= 0 || chance(r, 55)) {
        gen_scalar(r, t);
        return;
    }
    n = below(r, 4);
    if (chance(r, 50)) {
        puts_(t, "[");
        for (i = 0; i < n; i++) {
            if (i)
                puts_(t, ",");
            ws(r, t);
            gen_json(r, t, depth + 1, budget - 1);
        }
        puts_(t, "]");
        return;
    }
    puts_(t, "{");
    for (i = 0; i < n; i++) {
        if (i)
            puts_(t, ",");
        /* distinct keys: "r0", "r1"... */
        put_key(r, t, (const char *[]){"r0", "r1", "r2", "r3"}[i]);
        puts_(t, ":");
        gen_json(r, t, depth + 1, budget - 1);
    }
    puts_(t, "}");
}

/* Nested arrays exactly n deep. */
static void
gen_deep(struct text *t, int n)
{
    int i;

    for (i = 0; i < n; i++)
        puts_(t, "[");
    for (i = 0; i < n; i++)
        puts_(t, "]");
}

struct genctx {
    struct rng *r;
    int max_depth;
    int bad; /* 1 once something malformed was written */
};

static void gen_value(struct genctx *g, struct text *t,
                      const struct scope_node *n, int depth);

static void
gen_object(struct genctx *g, struct text *t, const struct scope_node *n,
           int depth)
{
    struct rng *r = g->r;
    const char *keys[24];
    const struct scope_node *knode[24];
    size_t nk = 0, i, j;
    const char *tmp;
    const struct scope_node *tn;
    static const char *const unknown[] = {"zz", "extra", "Name", "a b",
                                          "\xe4\xb8\xad"};

    for (i = 0; n != NULL && i < n->nfields && nk < 20; i++) {
        if (chance(r, 75)) {
            keys[nk] = n->fields[i].name;
            knode[nk++] = &n->fields[i];
        }
    }
    if (chance(r, 20)) {
        tmp = unknown[below(r, nitems(unknown))];
        for (j = 0; j < nk && strcmp(keys[j], tmp) != 0; j++)
            ;
        if (j == nk &&
            (n == NULL ||
             field_named((struct scope_node *)(uintptr_t)n, tmp) == NULL)) {
            keys[nk] = tmp;
            knode[nk++] = NULL;
        }
    }
    /* shuffle */
    for (i = nk; i > 1; i--) {
        j = below(r, (unsigned)i);
        tmp = keys[i - 1];
        keys[i - 1] = keys[j];
        keys[j] = tmp;
        tn = knode[i - 1];
        knode[i - 1] = knode[j];
        knode[j] = tn;
    }
    /* now and then a key twice */
    if (nk > 0 && nk < 24 && chance_pm(r, 3)) {
        j = below(r, (unsigned)nk);
        keys[nk] = keys[j];
        knode[nk++] = knode[j];
        g->bad = 1;
    }
    puts_(t, "{");
    ws(r, t);
    for (i = 0; i < nk; i++) {
        if (i) {
            puts_(t, ",");
            ws(r, t);
        }
        put_key(r, t, keys[i]);
        ws(r, t);
        puts_(t, ":");
        ws(r, t);
        gen_value(g, t, knode[i], depth + 1);
        ws(r, t);
    }
    /* nesting near the limit, where nothing is declared */
    if (chance(r, 3)) {
        if (nk > 0)
            puts_(t, ",");
        put_key(r, t, "deep_unknown");
        puts_(t, ":");
        i = (size_t)(g->max_depth - depth) + below(r, 3);
        if (i > 1)
            i -= 1;
        gen_deep(t, (int)i);
    }
    puts_(t, "}");
}

static void
gen_value(struct genctx *g, struct text *t, const struct scope_node *n,
          int depth)
{
    struct rng *r = g->r;
    unsigned i, cnt;

    if (chance_pm(r, 2)) {
        puts_(t, bad_strings[below(r, nitems(bad_strings))]);
        g->bad = 1;
        return;
    }
    if (n == NULL || chance(r, 10)) {
        gen_json(r, t, depth, 3);
        return;
    }
    /* a chat member's "type": external only as the integer 2 */
    if (n->name != NULL && strcmp(n->name, "type") == 0 && chance(r, 50)) {
        puts_(t, (const char *[]){"2", "2", "1", "\"2\"", "2.0",
                                  "2e0"}[below(r, 6)]);
        return;
    }
    switch (n->type) {
    case SCOPE_T_STRING:
        if (chance(r, 55))
            puts_(t, id_strings[below(r, nitems(id_strings))]);
        else
            puts_(t, strings[below(r, nitems(strings))]);
        break;
    case SCOPE_T_INTEGER:
        if (chance(r, 60))
            puts_(t, id_numbers[below(r, nitems(id_numbers))]);
        else
            puts_(t, numbers[below(r, nitems(numbers))]);
        break;
    case SCOPE_T_NUMBER:
        puts_(t, numbers[below(r, nitems(numbers))]);
        break;
    case SCOPE_T_BOOL:
        puts_(t, chance(r, 50) ? "true" : "false");
        break;
    case SCOPE_T_OBJECT:
        gen_object(g, t, n, depth);
        break;
    case SCOPE_T_ARRAY:
        cnt = below(r, 6);
        puts_(t, "[");
        for (i = 0; i < cnt; i++) {
            if (i)
                puts_(t, ",");
            ws(r, t);
            gen_value(g, t, n->items, depth + 1);
        }
        puts_(t, "]");
        break;
    }
}

/* Break the text a little: the model decides what became of it. */
static void
mutate(struct rng *r, struct text *t)
{
    static const char set[] = "{}[],:\"\\a1 \x80\xff\x01";
    size_t pos;
    char c;

    if (t->len == 0)
        return;
    pos = below(r, (unsigned)t->len);
    c = set[below(r, sizeof(set) - 1)];
    switch (below(r, 5)) {
    case 0:
        t->len = pos;
        t->p[pos] = '\0';
        break;
    case 1:
        memmove(t->p + pos, t->p + pos + 1, t->len - pos);
        t->len--;
        break;
    case 2:
        put(t, " ", 1);
        memmove(t->p + pos + 1, t->p + pos, t->len - pos - 1);
        t->p[pos] = c;
        break;
    case 3:
        t->p[pos] = c;
        break;
    default:
        puts_(t, chance(r, 50) ? " x" : "{}");
    }
}

/*---- The visible range ----*/

static uint64_t range_seed;

static uint64_t
mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static int
range_str(int kind, const char *s, size_t len)
{
    uint64_t h = range_seed ^ (uint64_t)kind;
    size_t i;

    for (i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return (mix(h) & 3) != 0;
}

static int
range_num(int kind, long long v)
{
    return (mix(range_seed ^ ((uint64_t)kind << 40) ^ (uint64_t)v) & 3) != 0;
}

/* The filter's callback: ids as text. */
static int
filter_range(enum scope_record kind, const char *id, size_t len, void *arg)
{
    char buf[64];

    (void)arg;
    if (kind == SCOPE_REC_DEPARTMENT || kind == SCOPE_REC_TAG) {
        if (len == 0 || len >= sizeof(buf))
            return 0;
        memcpy(buf, id, len);
        buf[len] = '\0';
        return range_num((int)kind, strtoll(buf, NULL, 10));
    }
    return range_str((int)kind, id, len);
}

/*---- The reference model ----*/

/* What the model decided, to show the generator reaches every rule. */
static struct {
    unsigned long kept[8], dropped[8], external, two_level, too_deep,
        not_object, bad_json;
} seen;

struct model {
    const struct scope_grant *g;
    int ranged; /* records are checked */
    unsigned long stripped, dropped;
};

static const struct scope_node *
m_field(const struct scope_node *n, const char *key)
{
    size_t i;

    if (n == NULL || n->type != SCOPE_T_OBJECT)
        return NULL;
    for (i = 0; i < n->nfields; i++)
        if (strcmp(n->fields[i].name, key) == 0)
            return &n->fields[i];
    return NULL;
}

static int
m_granted(const struct model *m, int perm)
{
    if (perm == SCOPE_PERM_ALWAYS)
        return 1;
    if (perm == SCOPE_PERM_NEVER)
        return 0;
    return (m->g->bits[perm / 64] >> (perm % 64)) & 1;
}

static int
m_typed(enum scope_type t, const json_t *v)
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

static int
m_scalar_type(enum scope_type t)
{
    return t != SCOPE_T_OBJECT && t != SCOPE_T_ARRAY;
}

/* A value used as the id of a record of that kind: valid and in range? */
static int
m_id_in_range(int kind, const json_t *v)
{
    if (kind == SCOPE_REC_DEPARTMENT || kind == SCOPE_REC_TAG)
        return json_is_integer(v) &&
               range_num(kind, (long long)json_integer_value(v));
    return json_is_string(v) &&
           range_str(kind, json_string_value(v), json_string_length(v));
}

/* The id of record object v by node n's record_id ("a" or "a.b"). */
static const json_t *
m_record_id(const struct scope_node *n, const json_t *v)
{
    char head[64];
    const char *dot;
    const json_t *a;

    if (n->record_id == NULL)
        return NULL;
    dot = strchr(n->record_id, '.');
    if (dot == NULL)
        return json_object_get(v, n->record_id);
    snprintf(head, sizeof(head), "%.*s", (int)(dot - n->record_id),
             n->record_id);
    a = json_object_get(v, head);
    return json_is_object(a) ? json_object_get(a, dot + 1) : NULL;
}

static int m_follow_in(const struct scope_node *n, const json_t *v);

/* Any follow user in range in object v of node n (not in a nested
 * customer)? Keys need only be declared, whatever the grant. */
static int
m_follow_in_object(const struct scope_node *n, const json_t *v)
{
    const char *k;
    json_t *x;

    json_object_foreach((json_t *)(uintptr_t)v, k, x)
    {
        if (m_follow_in(m_field(n, k), x))
            return 1;
    }
    return 0;
}

static int
m_follow_in(const struct scope_node *n, const json_t *v)
{
    size_t i;
    json_t *x;
    const struct scope_node *it;

    if (n == NULL)
        return 0;
    if (n->type == SCOPE_T_OBJECT && json_is_object(v)) {
        if (n->record == SCOPE_REC_CUSTOMER)
            return 0;
        if (n->record == SCOPE_REC_FOLLOW_USER &&
            m_id_in_range(SCOPE_REC_FOLLOW_USER, m_record_id(n, v)))
            return 1;
        return m_follow_in_object(n, v);
    }
    if (n->type == SCOPE_T_ARRAY && json_is_array(v)) {
        it = n->items;
        json_array_foreach((json_t *)(uintptr_t)v, i, x)
        {
            if (it == NULL)
                continue;
            if (m_scalar_type(it->type) &&
                it->record == SCOPE_REC_FOLLOW_USER &&
                m_id_in_range(SCOPE_REC_FOLLOW_USER, x))
                return 1;
            if (m_follow_in(it, x))
                return 1;
        }
    }
    return 0;
}

/* Is record object v (node n) in range? */
static int
m_record_verdict(const struct scope_node *n, const json_t *v)
{
    const json_t *type;

    switch (n->record) {
    case SCOPE_REC_CUSTOMER:
        return m_follow_in_object(n, v);
    case SCOPE_REC_CHAT_MEMBER:
        type = json_object_get(v, "type");
        if (json_is_integer(type) && json_integer_value(type) == 2) {
            seen.external++;
            return 1;
        }
        break;
    default:
        break;
    }
    if (n->record_id != NULL && strchr(n->record_id, '.') != NULL)
        seen.two_level++;
    return m_id_in_range(n->record, m_record_id(n, v));
}

static int
m_record_kept(const struct scope_node *n, const json_t *v)
{
    int kept = m_record_verdict(n, v);

    if (kept)
        seen.kept[n->record]++;
    else
        seen.dropped[n->record]++;
    return kept;
}

static json_t *m_filter(struct model *m, const struct scope_node *n,
                        const json_t *v);

/*
 * One element (an object member or an array item) under declared node n
 * (or NULL): the filtered value, or NULL when it is removed (counted).
 */
static json_t *
m_element(struct model *m, const struct scope_node *n, const json_t *v,
          int item)
{
    if (n == NULL || !m_granted(m, n->perm) || !m_typed(n->type, v)) {
        m->stripped++;
        return NULL;
    }
    /* records: objects, and scalar items of id lists */
    if (m->ranged && n->record != SCOPE_REC_NONE &&
        (n->type == SCOPE_T_OBJECT || (item && m_scalar_type(n->type)))) {
        if (n->type == SCOPE_T_OBJECT ? !m_record_kept(n, v)
                                      : !m_id_in_range(n->record, v)) {
            if (n->type != SCOPE_T_OBJECT)
                seen.dropped[0]++;
            m->dropped++;
            return NULL;
        }
    }
    return m_filter(m, n, v);
}

static json_t *
m_filter(struct model *m, const struct scope_node *n, const json_t *v)
{
    const char *k;
    json_t *x, *y, *out;
    size_t i;

    if (json_is_object(v)) {
        out = json_object();
        json_object_foreach((json_t *)(uintptr_t)v, k, x)
        {
            y = m_element(m, m_field(n, k), x, 0);
            if (y != NULL)
                json_object_set_new(out, k, y);
        }
        return out;
    }
    if (json_is_array(v)) {
        out = json_array();
        json_array_foreach((json_t *)(uintptr_t)v, i, x)
        {
            y = m_element(m, n->items, x, 1);
            if (y != NULL)
                json_array_append_new(out, y);
        }
        return out;
    }
    return json_deep_copy(v);
}

static size_t
m_depth(const json_t *v)
{
    const char *k;
    json_t *x;
    size_t i, d, best = 0;

    if (json_is_object(v)) {
        json_object_foreach((json_t *)(uintptr_t)v, k, x)
        {
            d = m_depth(x);
            if (d > best)
                best = d;
        }
        return best + 1;
    }
    if (json_is_array(v)) {
        json_array_foreach((json_t *)(uintptr_t)v, i, x)
        {
            d = m_depth(x);
            if (d > best)
                best = d;
        }
        return best + 1;
    }
    return 0;
}

/*
 * The model: NULL for a body the filter must refuse, else the expected
 * output (new reference) and counts.
 */
static json_t *
model_run(struct model *m, const struct scope_node *root, const char *in,
          size_t len, size_t max_depth, json_t **parsed)
{
    json_error_t err;
    json_t *doc, *out;

    *parsed = NULL;
    doc = json_loadb(in, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (doc == NULL) {
        /* a number jansson cannot hold (from merging two by mutation):
         * the filter copies it as written; no verdict here */
        if (json_error_code(&err) == json_error_numeric_overflow)
            *parsed = json_null();
        seen.bad_json++;
        return NULL;
    }
    if (!json_is_object(doc) || m_depth(doc) > max_depth) {
        if (json_is_object(doc))
            seen.too_deep++;
        else
            seen.not_object++;
        json_decref(doc);
        return NULL;
    }
    out = m_filter(m, root, doc);
    *parsed = doc;
    return out;
}

/*---- Independent checks of an output ----*/

/* Every key of out is declared and granted, with its declared type; every
 * record id visible in out is in range. Returns a reason, or NULL. */
static const char *
check_output(const struct model *m, const struct scope_node *n,
             const json_t *out)
{
    const char *k, *why;
    const json_t *id, *type;
    const struct scope_node *c, *tn;
    json_t *x;
    size_t i;

    if (json_is_object(out)) {
        if (m->ranged && n->record != SCOPE_REC_NONE &&
            n->record != SCOPE_REC_CUSTOMER) {
            id = m_record_id(n, out);
            if (id != NULL && !m_id_in_range(n->record, id)) {
                type = json_object_get(out, "type");
                tn = m_field(n, "type");
                if (n->record != SCOPE_REC_CHAT_MEMBER)
                    return "record out of range";
                if (!(json_is_integer(type) && json_integer_value(type) == 2) &&
                    tn != NULL && m_granted(m, tn->perm) &&
                    tn->type == SCOPE_T_INTEGER)
                    return "chat member out of range, not external";
            }
        }
        json_object_foreach((json_t *)(uintptr_t)out, k, x)
        {
            c = m_field(n, k);
            if (c == NULL)
                return "undeclared key in output";
            if (!m_granted(m, c->perm))
                return "ungranted key in output";
            if (!m_typed(c->type, x))
                return "wrong type in output";
            why = check_output(m, c, x);
            if (why != NULL)
                return why;
        }
        return NULL;
    }
    if (json_is_array(out)) {
        json_array_foreach((json_t *)(uintptr_t)out, i, x)
        {
            c = n->items;
            if (c == NULL || !m_granted(m, c->perm) || !m_typed(c->type, x))
                return "item not allowed in output";
            if (m->ranged && c->record != SCOPE_REC_NONE &&
                m_scalar_type(c->type) && !m_id_in_range(c->record, x))
                return "id item out of range";
            why = check_output(m, c, x);
            if (why != NULL)
                return why;
        }
    }
    return NULL;
}

/* Is out an order-keeping part of in? */
static int
ordered_subset(const json_t *out, const json_t *in)
{
    const char *k;
    json_t *v;
    void *it;
    size_t i, j;

    if (json_is_object(out)) {
        if (!json_is_object(in))
            return 0;
        it = json_object_iter((json_t *)(uintptr_t)in);
        json_object_foreach((json_t *)(uintptr_t)out, k, v)
        {
            while (it != NULL && strcmp(json_object_iter_key(it), k) != 0)
                it = json_object_iter_next((json_t *)(uintptr_t)in, it);
            if (it == NULL || !ordered_subset(v, json_object_iter_value(it)))
                return 0;
            it = json_object_iter_next((json_t *)(uintptr_t)in, it);
        }
        return 1;
    }
    if (json_is_array(out)) {
        if (!json_is_array(in))
            return 0;
        j = 0;
        json_array_foreach((json_t *)(uintptr_t)out, i, v)
        {
            while (j < json_array_size(in) &&
                   !ordered_subset(v, json_array_get(in, j)))
                j++;
            if (j == json_array_size(in))
                return 0;
            j++;
        }
        return 1;
    }
    return json_equal(out, in);
}

/*---- Running one case ----*/

struct result {
    enum brk_err err;
    char *out;
    size_t len;
    unsigned long stripped, dropped;
    char *kept, *removed; /* filter_names' after a finish (may be NULL) */
    long errcode;         /* filter_errcode's, -12345 for none */
};

static void
result_free(struct result *res)
{
    brk_free(res->out);
    brk_free(res->kept);
    brk_free(res->removed);
    res->out = res->kept = res->removed = NULL;
}

/* Filters reused from case to case, one per depth limit (see one_case). */
static struct filter *reused[33];

/*
 * mode 0: whole; 1: a byte at a time; 2: random pieces. On reuse (not
 * NULL) instead of a new filter, reset, left to the next run; its output
 * is taken when take is set, else copied from where it lies, and its names
 * are filter_names_get's.
 */
static struct result
run_on(struct filter *reuse, int take, const struct scope_node *root,
       const struct scope_grant *g, filter_range_cb *cb,
       const struct filter_limits *lim, const char *in, size_t len, int mode,
       struct rng *r)
{
    struct result res;
    struct filter *f = reuse;
    size_t off = 0, n;
    const char *k, *rm, *o;

    memset(&res, 0, sizeof(res));
    if (reuse != NULL)
        assert_int_equal(filter_reset(f, root, g, cb, NULL), BRK_OK);
    else
        assert_int_equal(filter_new(root, g, cb, NULL, lim, &f), BRK_OK);
    while (off < len && res.err == BRK_OK) {
        if (mode == 0)
            n = len;
        else if (mode == 1)
            n = 1;
        else
            n = 1 + below(r, chance(r, 50) ? 8 : 200);
        if (n > len - off)
            n = len - off;
        res.err = filter_feed(f, in + off, n);
        off += n;
    }
    if (res.err == BRK_OK)
        res.err = filter_finish(f);
    if (res.err == BRK_OK) {
        if (reuse == NULL) {
            assert_int_equal(filter_names(f, &res.kept, &res.removed), BRK_OK);
        } else {
            assert_int_equal(filter_names_get(f, &k, &rm), BRK_OK);
            res.kept = brk_strdup(k);
            res.removed = brk_strdup(rm);
        }
    }
    if (res.err == BRK_OK && (reuse == NULL || take)) {
        res.err = filter_take_output(f, &res.out, &res.len);
    } else if (res.err == BRK_OK) {
        res.err = filter_output(f, &o, &res.len);
        res.out = brk_malloc(res.len + 1);
        assert_non_null(res.out);
        memcpy(res.out, o, res.len + 1);
    }
    res.stripped = filter_stripped(f);
    res.dropped = filter_dropped(f);
    if (!filter_errcode(f, &res.errcode))
        res.errcode = -12345;
    if (reuse == NULL)
        filter_free(f);
    return res;
}

static struct result
run_filter(const struct scope_node *root, const struct scope_grant *g,
           filter_range_cb *cb, const struct filter_limits *lim, const char *in,
           size_t len, int mode, struct rng *r)
{
    return run_on(NULL, 0, root, g, cb, lim, in, len, mode, r);
}

static int
same_str(const char *a, const char *b)
{
    return (a == NULL) == (b == NULL) && (a == NULL || strcmp(a, b) == 0);
}

struct stats {
    unsigned long cases, errors, bytewise, with_dropped, with_stripped,
        records_kept, outputs_checked, tooBig_checked, skipped, bytes;
};

static void
report_failure(unsigned long idx, const struct scope_node *root,
               const struct scope_grant *g, size_t max_depth, const char *in,
               size_t len, const char *what, const char *want, const char *got,
               unsigned long ms, unsigned long md, const struct result *res)
{
    static char tree[16384];
    size_t tl = 0;

    tree_print(root, tree, sizeof(tree), &tl);
    fail_msg("case %lu: %s\ntree  %s\ngrant %llx depth %zu range %llx\n"
             "input (%zu) %.*s\nmodel  %s (stripped %lu dropped %lu)\n"
             "filter %s (%s, stripped %lu dropped %lu)",
             idx, what, tree, (unsigned long long)g->bits[0], max_depth,
             (unsigned long long)range_seed, len, (int)len, in,
             want ? want : "(error)", ms, md, got ? got : "(none)",
             brk_strerror(res->err), res->stripped, res->dropped);
}

/*
 * The case once more on the reused filter for its depth limit: the same
 * result as res (the new filter's). Every fifth case then leaves that
 * filter half-way through its body, for the next case to reset.
 */
static void
check_reused(unsigned long idx, const struct scope_node *root,
             const struct scope_grant *g, filter_range_cb *cb,
             const struct filter_limits *lim, const char *in, size_t len,
             int mode, const struct result *res)
{
    struct filter **slot = &reused[lim->max_depth];
    struct result again;
    enum brk_err err;

    if (*slot == NULL)
        assert_int_equal(filter_new(root, g, cb, NULL, lim, slot), BRK_OK);
    again = run_on(*slot, (int)(idx & 1), root, g, cb, lim, in, len,
                   mode == 1 ? 1 : 0, NULL);
    if (again.err != res->err || again.len != res->len ||
        (res->out != NULL &&
         (again.out == NULL || memcmp(again.out, res->out, res->len) != 0)) ||
        again.stripped != res->stripped || again.dropped != res->dropped ||
        again.errcode != res->errcode || !same_str(again.kept, res->kept) ||
        !same_str(again.removed, res->removed))
        report_failure(idx, root, g, lim->max_depth, in, len,
                       "a reused filter differs from a new one", res->out,
                       again.out, res->stripped, res->dropped, &again);
    result_free(&again);
    if (idx % 5 == 0) {
        assert_int_equal(filter_reset(*slot, root, g, cb, NULL), BRK_OK);
        err = filter_feed(*slot, in, len / 2);
        (void)err;
    }
}

static void
one_case(unsigned long idx, struct rng *r, const struct scope_node *root,
         struct stats *st)
{
    struct scope_grant g;
    struct filter_limits lim = {32, 0, 0};
    struct text t = {NULL, 0, 0};
    struct genctx gc;
    struct model m;
    struct result res, res2;
    json_t *want, *got = NULL, *parsed;
    char *ws_ = NULL, *gs = NULL;
    const char *why;
    filter_range_cb *cb;
    int p, mode;

    memset(&res, 0, sizeof(res));
    memset(&g, 0, sizeof(g));
    for (p = 2; p < NPERM; p++)
        if (chance(r, 60))
            g.bits[0] |= (uint64_t)1 << p;
    if (chance(r, 10))
        g.bits[0] |= (uint64_t)1 << SCOPE_PERM_NEVER;
    range_seed = rnd(r);
    cb = chance(r, 93) ? filter_range : NULL;
    if (chance(r, 35))
        lim.max_depth = 2 + below(r, 7);

    gc.r = r;
    gc.max_depth = (int)lim.max_depth;
    gc.bad = 0;
    if (chance_pm(r, 8)) {
        gen_json(r, &t, 0, 2);
        if (t.len > 0 && t.p[0] == '{')
            t.len = 0;
        if (t.len == 0)
            puts_(&t, "[{}]");
    } else {
        ws(r, &t);
        gen_value(&gc, &t, root, 1);
        ws(r, &t);
    }
    if (chance(r, 5))
        mutate(r, &t);
    if (t.p == NULL)
        puts_(&t, "");

    memset(&m, 0, sizeof(m));
    m.g = &g;
    m.ranged = cb != NULL;
    want = model_run(&m, root, t.p, t.len, lim.max_depth, &parsed);
    if (want == NULL && parsed != NULL) {
        st->skipped++;
        goto out;
    }

    mode = idx % BYTEWISE_EVERY == 0 ? 1 : chance(r, 50) ? 0 : 2;
    if (mode == 1)
        st->bytewise++;
    res = run_filter(root, &g, cb, &lim, t.p, t.len, mode, r);
    check_reused(idx, root, &g, cb, &lim, t.p, t.len, mode, &res);
    st->cases++;
    st->bytes += t.len;
    if (want == NULL) {
        st->errors++;
        if (res.err != BRK_ERR_UPSTREAM_BAD)
            report_failure(idx, root, &g, lim.max_depth, t.p, t.len,
                           "the model refuses the body, the filter not", NULL,
                           res.out, 0, 0, &res);
        goto out;
    }
    if (res.err != BRK_OK)
        report_failure(idx, root, &g, lim.max_depth, t.p, t.len,
                       "the filter failed", "(valid)", NULL, m.stripped,
                       m.dropped, &res);
    got = json_loadb(res.out, res.len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                     NULL);
    ws_ = json_dumps(want, JSON_COMPACT | JSON_ENSURE_ASCII);
    gs = got ? json_dumps(got, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    if (got == NULL || !json_equal(want, got) || strcmp(ws_, gs) != 0)
        report_failure(idx, root, &g, lim.max_depth, t.p, t.len,
                       "outputs differ", ws_, res.out, m.stripped, m.dropped,
                       &res);
    if (res.stripped != m.stripped || res.dropped != m.dropped)
        report_failure(idx, root, &g, lim.max_depth, t.p, t.len,
                       "counts differ", ws_, gs, m.stripped, m.dropped, &res);
    why = check_output(&m, root, got);
    if (why != NULL)
        report_failure(idx, root, &g, lim.max_depth, t.p, t.len, why, ws_, gs,
                       m.stripped, m.dropped, &res);
    if (!ordered_subset(got, parsed))
        report_failure(idx, root, &g, lim.max_depth, t.p, t.len,
                       "output not an ordered part of the input", ws_, gs,
                       m.stripped, m.dropped, &res);
    st->outputs_checked++;
    if (res.dropped > 0)
        st->with_dropped++;
    if (res.stripped > 0)
        st->with_stripped++;
    /* the output limit is exact */
    if (idx % 50 == 1) {
        lim.max_output = res.len;
        res2 = run_filter(root, &g, cb, &lim, t.p, t.len, 2, r);
        if (res2.err != BRK_OK || res2.len != res.len ||
            memcmp(res2.out, res.out, res.len) != 0)
            report_failure(idx, root, &g, lim.max_depth, t.p, t.len,
                           "max_output = output length fails", ws_, gs,
                           m.stripped, m.dropped, &res2);
        result_free(&res2);
        lim.max_output = res.len - 1;
        res2 = run_filter(root, &g, cb, &lim, t.p, t.len, 2, r);
        if (res2.err != BRK_ERR_TOOBIG)
            report_failure(idx, root, &g, lim.max_depth, t.p, t.len,
                           "max_output one short is not too_big", ws_, gs,
                           m.stripped, m.dropped, &res2);
        result_free(&res2);
        st->tooBig_checked++;
    }
out:
    free(ws_);
    free(gs);
    json_decref(got);
    json_decref(want);
    json_decref(parsed);
    result_free(&res);
    brk_free(t.p);
}

/*---- Tests ----*/

/* The model itself on cases worked out by hand. */
static void
test_model_by_hand(void **state)
{
    struct scope_node uf[2], item, f[3], root;
    struct scope_grant g;
    struct model m;
    json_t *out, *parsed;
    char *s;
    const char *in = "{\"n\":1.5,\"list\":[{\"userid\":\"u3\",\"mobile\":"
                     "\"x\"},{\"mobile\":\"y\",\"userid\":\"u1\",\"z\":1}],"
                     "\"errcode\":0}";

    (void)state;
    uf[0] = mk_leaf("mobile", SCOPE_T_STRING, 3);
    uf[1] = mk_leaf("userid", SCOPE_T_STRING, 2);
    item = mk_leaf(NULL, SCOPE_T_OBJECT, SCOPE_PERM_ALWAYS);
    item.fields = uf;
    item.nfields = 2;
    item.record = SCOPE_REC_MEMBER;
    item.record_id = (char *)(uintptr_t) "userid";
    f[0] = mk_leaf("errcode", SCOPE_T_INTEGER, SCOPE_PERM_ALWAYS);
    f[1] = mk_leaf("list", SCOPE_T_ARRAY, 2);
    f[1].items = &item;
    f[2] = mk_leaf("n", SCOPE_T_INTEGER, 2);
    root = mk_leaf(NULL, SCOPE_T_OBJECT, SCOPE_PERM_ALWAYS);
    root.fields = f;
    root.nfields = 3;
    memset(&g, 0, sizeof(g));
    g.bits[0] = 1u << 2;
    /* a range with u1 in and u3 out */
    for (range_seed = 1; !range_str(SCOPE_REC_MEMBER, "u1", 2) ||
                         range_str(SCOPE_REC_MEMBER, "u3", 2);
         range_seed++)
        ;
    memset(&m, 0, sizeof(m));
    m.g = &g;
    m.ranged = 1;
    out = model_run(&m, &root, in, strlen(in), 32, &parsed);
    assert_non_null(out);
    s = json_dumps(out, JSON_COMPACT);
    assert_string_equal(s, "{\"list\":[{\"userid\":\"u1\"}],\"errcode\":0}");
    assert_int_equal(m.stripped, 3); /* n, mobile, z */
    assert_int_equal(m.dropped, 1);
    free(s);
    json_decref(out);
    json_decref(parsed);
    /* without a range nothing is dropped */
    memset(&m, 0, sizeof(m));
    m.g = &g;
    out = model_run(&m, &root, in, strlen(in), 32, &parsed);
    s = json_dumps(out, JSON_COMPACT);
    assert_string_equal(s, "{\"list\":[{\"userid\":\"u3\"},{\"userid\":"
                           "\"u1\"}],\"errcode\":0}");
    assert_int_equal(m.stripped, 4);
    assert_int_equal(m.dropped, 0);
    free(s);
    json_decref(out);
    json_decref(parsed);
    /* refused: a repeated key, too deep, not an object, a lone surrogate */
    assert_null(model_run(&m, &root, "{\"n\":1,\"n\":2}", 13, 32, &parsed));
    assert_null(model_run(&m, &root, "{\"a\":[[1]]}", 11, 2, &parsed));
    out = model_run(&m, &root, "{\"a\":[[1]]}", 11, 3, &parsed);
    assert_non_null(out);
    json_decref(out);
    json_decref(parsed);
    assert_null(model_run(&m, &root, "[{}]", 4, 32, &parsed));
    assert_null(model_run(&m, &root, "{\"a\":\"\\ud800\"}", 14, 32, &parsed));
}

static void
test_random_cases(void **state)
{
    struct rng r = {SEED};
    struct scope_node *root = NULL;
    struct stats st;
    unsigned long i;

    (void)state;
    memset(&st, 0, sizeof(st));
    /* CASES compared with the model (a few are not comparable) */
    for (i = 0; st.cases < CASES; i++) {
        if (i % CASES_PER_TREE == 0) {
            if (root != NULL)
                tree_free(root);
            root = gen_tree(&r);
        }
        one_case(i, &r, root, &st);
    }
    tree_free(root);
    for (i = 0; i < nitems(reused); i++)
        filter_free(reused[i]);
    print_message("%lu cases: %lu refused (%lu malformed or repeated keys, "
                  "%lu too deep, %lu not an object), %lu outputs checked "
                  "(%lu with stripped keys, %lu with dropped records), %lu "
                  "fed a byte at a time, %lu output limits checked, %lu "
                  "numbers beyond jansson not compared\n",
                  st.cases, st.errors, seen.bad_json, seen.too_deep,
                  seen.not_object, st.outputs_checked, st.with_stripped,
                  st.with_dropped, st.bytewise, st.tooBig_checked, st.skipped);
    print_message("input bytes: %lu in all, %lu on average\n", st.bytes,
                  st.bytes / st.cases);
    print_message("records kept/dropped: member %lu/%lu department %lu/%lu "
                  "tag %lu/%lu follow_user %lu/%lu chat_member %lu/%lu "
                  "(%lu external) customer %lu/%lu chat %lu/%lu; id items "
                  "dropped %lu; two-level ids %lu\n",
                  seen.kept[1], seen.dropped[1], seen.kept[2], seen.dropped[2],
                  seen.kept[3], seen.dropped[3], seen.kept[4], seen.dropped[4],
                  seen.kept[5], seen.dropped[5], seen.external, seen.kept[6],
                  seen.dropped[6], seen.kept[7], seen.dropped[7],
                  seen.dropped[0], seen.two_level);
    /* the generator must keep reaching every kind of case */
    assert_true(st.cases >= CASES);
    assert_true(st.skipped < st.cases / 1000);
    assert_true(st.errors >= st.cases / 50);
    assert_true(st.with_dropped >= st.cases / 20);
    assert_true(st.with_stripped >= st.cases / 5);
    assert_true(st.bytewise >= 1000);
    for (i = 1; i < 8; i++)
        assert_true(seen.kept[i] >= 100 && seen.dropped[i] >= 100);
    assert_true(seen.external >= 100 && seen.two_level >= 100);
    assert_true(seen.too_deep >= 100 && seen.not_object >= 100);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_by_hand),
        cmocka_unit_test(test_random_cases),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
