/*
 * Tests for the streaming filter: every rule of filter.h on small trees
 * built by hand, hostile and malformed bodies, the limits, every split of
 * the input and allocation failures; then one test per case directory of
 * tests/data/filter (or $FILTER_DATA): a scope file or an endpoint of
 * scopes/, a grant, a visible range, the input, and the expected output
 * with its counts or the expected error.
 *
 * Every run with the default limits is repeated on one filter shared by
 * all tests and reset for each (filter_reset): whatever tree, grant and
 * range it read last (trees are freed and built again, so a new tree may
 * lie where a freed one was), wherever that stopped (an error, a limit, a
 * finish), and whether its output was taken or left, it must give the
 * new filter's output, error, counts, names and errcode.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "filter.h"
#include "scope_map.h"

/* Permission ids for trees built by hand (any ids below the maximum). */
#define P_BASE 2
#define P_SENS 3
#define P_EXT  4

#define DATA_DIR_DEFAULT "tests/data/filter"

/*---- Trees built by hand ----*/

static struct scope_node
leaf(const char *name, enum scope_type t, int perm)
{
    struct scope_node n;

    memset(&n, 0, sizeof(n));
    n.name = (char *)(uintptr_t)name;
    n.type = t;
    n.perm = perm;
    return n;
}

/* A scalar array item that is a record id. */
static struct scope_node
id_item(enum scope_type t, enum scope_record rec)
{
    struct scope_node n = leaf(NULL, t, SCOPE_PERM_ALWAYS);

    n.record = rec;
    return n;
}

static int
node_cmp(const void *a, const void *b)
{
    return strcmp(((const struct scope_node *)a)->name,
                  ((const struct scope_node *)b)->name);
}

static struct scope_node
object_n(const char *name, int perm, enum scope_record rec, const char *rid,
         size_t n, const struct scope_node *fs)
{
    struct scope_node o = leaf(name, SCOPE_T_OBJECT, perm);

    if (n > 0) {
        o.fields = brk_calloc(n, sizeof(*fs));
        assert_non_null(o.fields);
        memcpy(o.fields, fs, n * sizeof(*fs));
        qsort(o.fields, n, sizeof(*fs), node_cmp);
    }
    o.nfields = n;
    o.record = rec;
    o.record_id = (char *)(uintptr_t)rid;
    return o;
}

static struct scope_node
array(const char *name, int perm, struct scope_node item)
{
    struct scope_node a = leaf(name, SCOPE_T_ARRAY, perm);

    a.items = brk_malloc(sizeof(*a.items));
    assert_non_null(a.items);
    *a.items = item;
    a.items->name = NULL;
    return a;
}

#define NODES(...)                                                             \
    sizeof((struct scope_node[]){__VA_ARGS__}) / sizeof(struct scope_node),    \
        (struct scope_node[])                                                  \
    {                                                                          \
        __VA_ARGS__                                                            \
    }
#define OBJ(name, perm, ...)                                                   \
    object_n(name, perm, SCOPE_REC_NONE, NULL, NODES(__VA_ARGS__))
#define REC(name, perm, rec, rid, ...)                                         \
    object_n(name, perm, rec, rid, NODES(__VA_ARGS__))
#define EMPTY(name, perm) object_n(name, perm, SCOPE_REC_NONE, NULL, 0, NULL)

static struct scope_node *
root_new(size_t n, const struct scope_node *fs)
{
    struct scope_node *r = brk_malloc(sizeof(*r));

    assert_non_null(r);
    *r = object_n(NULL, SCOPE_PERM_ALWAYS, SCOPE_REC_NONE, NULL, n, fs);
    return r;
}
#define ROOT(...) root_new(NODES(__VA_ARGS__))

static void
node_clear(struct scope_node *n)
{
    size_t i;

    for (i = 0; i < n->nfields; i++)
        node_clear(&n->fields[i]);
    brk_free(n->fields);
    if (n->items != NULL)
        node_clear(n->items);
    brk_free(n->items);
}

static void
root_free(struct scope_node *r)
{
    node_clear(r);
    brk_free(r);
}

#define ERRCODE leaf("errcode", SCOPE_T_INTEGER, SCOPE_PERM_ALWAYS)
#define ERRMSG  leaf("errmsg", SCOPE_T_STRING, SCOPE_PERM_ALWAYS)

/* Plain fields of every type, nested objects and arrays. */
static struct scope_node *
basic_tree(void)
{
    return ROOT(
        ERRCODE, ERRMSG, leaf("name", SCOPE_T_STRING, P_BASE),
        leaf("mobile", SCOPE_T_STRING, P_SENS),
        leaf("secret", SCOPE_T_STRING, SCOPE_PERM_NEVER),
        leaf("count", SCOPE_T_INTEGER, P_BASE),
        leaf("score", SCOPE_T_NUMBER, P_BASE),
        leaf("flag", SCOPE_T_BOOL, P_BASE),
        OBJ("info", P_BASE, leaf("a", SCOPE_T_STRING, P_BASE),
            leaf("b", SCOPE_T_STRING, P_SENS),
            OBJ("deep", P_BASE, leaf("x", SCOPE_T_INTEGER, P_BASE))),
        array("tags", P_BASE, leaf(NULL, SCOPE_T_STRING, SCOPE_PERM_ALWAYS)),
        array("items", P_BASE,
              OBJ(NULL, SCOPE_PERM_ALWAYS, leaf("k", SCOPE_T_STRING, P_BASE),
                  leaf("v", SCOPE_T_INTEGER, P_SENS))));
}

/* Every kind of record. */
static struct scope_node *
record_tree(void)
{
    return ROOT(
        ERRCODE, ERRMSG, leaf("name", SCOPE_T_STRING, P_BASE),
        leaf("count", SCOPE_T_INTEGER, P_BASE),
        array("userlist", P_BASE,
              REC(NULL, SCOPE_PERM_ALWAYS, SCOPE_REC_MEMBER, "userid",
                  leaf("userid", SCOPE_T_STRING, P_BASE),
                  leaf("name", SCOPE_T_STRING, P_BASE),
                  leaf("mobile", SCOPE_T_STRING, P_SENS),
                  array("department", P_BASE,
                        id_item(SCOPE_T_INTEGER, SCOPE_REC_DEPARTMENT)))),
        array("department", P_BASE,
              REC(NULL, SCOPE_PERM_ALWAYS, SCOPE_REC_DEPARTMENT, "id",
                  leaf("id", SCOPE_T_INTEGER, P_BASE),
                  leaf("name", SCOPE_T_STRING, P_BASE))),
        REC("leader", P_BASE, SCOPE_REC_MEMBER, "userid",
            leaf("userid", SCOPE_T_STRING, P_BASE)),
        array("user_ids", P_BASE, id_item(SCOPE_T_STRING, SCOPE_REC_MEMBER)),
        array("dept_ids", P_BASE,
              id_item(SCOPE_T_INTEGER, SCOPE_REC_DEPARTMENT)),
        array("taglist", P_BASE,
              REC(NULL, SCOPE_PERM_ALWAYS, SCOPE_REC_TAG, "tagid",
                  leaf("tagid", SCOPE_T_INTEGER, P_BASE))),
        array("rows", P_BASE,
              REC(NULL, SCOPE_PERM_ALWAYS, SCOPE_REC_MEMBER, "info.userid",
                  OBJ("info", P_SENS, leaf("userid", SCOPE_T_STRING, P_BASE)),
                  leaf("n", SCOPE_T_INTEGER, P_BASE))),
        array("members", P_BASE,
              REC(NULL, SCOPE_PERM_ALWAYS, SCOPE_REC_CHAT_MEMBER, "userid",
                  leaf("userid", SCOPE_T_STRING, P_BASE),
                  leaf("type", SCOPE_T_INTEGER, P_BASE),
                  leaf("name", SCOPE_T_STRING, P_BASE))),
        array("customers", P_BASE,
              REC(NULL, SCOPE_PERM_ALWAYS, SCOPE_REC_CUSTOMER, NULL,
                  OBJ("external_contact", P_BASE,
                      leaf("name", SCOPE_T_STRING, P_BASE)),
                  array("follow_user", P_EXT,
                        REC(NULL, SCOPE_PERM_ALWAYS, SCOPE_REC_FOLLOW_USER,
                            "userid", leaf("userid", SCOPE_T_STRING, P_BASE),
                            leaf("remark", SCOPE_T_STRING, P_BASE))),
                  array("follow_ids", P_BASE,
                        id_item(SCOPE_T_STRING, SCOPE_REC_FOLLOW_USER)))),
        REC("chat", P_BASE, SCOPE_REC_CHAT, "owner",
            leaf("owner", SCOPE_T_STRING, P_BASE),
            leaf("name", SCOPE_T_STRING, P_BASE)));
}

static struct scope_grant
grant_of(int n, ...)
{
    struct scope_grant g;
    va_list ap;
    int i, p;

    memset(&g, 0, sizeof(g));
    va_start(ap, n);
    for (i = 0; i < n; i++) {
        p = va_arg(ap, int);
        g.bits[p / 64] |= (uint64_t)1 << (p % 64);
    }
    va_end(ap);
    return g;
}

/*---- The range: strings "in..." and even numbers ----*/

struct range_log {
    int n;
    enum scope_record kind[64];
    char id[64][64];
};

static struct range_log rlog;

/* Was in_range asked about this kind and id? */
static int
asked(enum scope_record kind, const char *id)
{
    int i;

    for (i = 0; i < rlog.n; i++)
        if (rlog.kind[i] == kind && strcmp(rlog.id[i], id) == 0)
            return 1;
    return 0;
}

static int
test_range(enum scope_record kind, const char *id, size_t len, void *arg)
{
    char buf[64];
    long long v;

    (void)arg;
    snprintf(buf, sizeof(buf), "%.*s", (int)len, id);
    if (rlog.n < 64 && !asked(kind, buf)) {
        rlog.kind[rlog.n] = kind;
        snprintf(rlog.id[rlog.n], sizeof(rlog.id[0]), "%s", buf);
        rlog.n++;
    }
    if (kind == SCOPE_REC_DEPARTMENT || kind == SCOPE_REC_TAG) {
        if (len >= sizeof(buf))
            return 0;
        memcpy(buf, id, len);
        buf[len] = '\0';
        v = strtoll(buf, NULL, 10);
        return v % 2 == 0;
    }
    return len >= 2 && memcmp(id, "in", 2) == 0;
}

/*---- Running the filter ----*/

struct run {
    enum brk_err err;
    char *out;
    size_t len;
    unsigned long stripped, dropped;
};

static filter_range_cb *cur_cb = test_range;
static const struct filter_limits *cur_limits;

/* The filter every test shares (default limits), and whether run_split
 * repeats its runs on it (not while allocations are made to fail). */
static struct filter *shared;
static int shared_check = 1;
static unsigned long shared_runs;

/* What a run ends with besides its output. */
struct run_more {
    char *kept, *removed; /* the names, after a finish */
    long errcode;         /* -12345: none */
};

/*
 * Feed in as pieces: chunk 0 whole; otherwise chunk bytes at a time, or,
 * when split is nonzero, the two pieces [0, split) and [split, len). On
 * reuse (not NULL) instead of a new filter, reset, not freed; its output is
 * taken or copied from where it lies every other run.
 */
static struct run
run_on(struct filter *reuse, const struct scope_node *root,
       const struct scope_grant *g, filter_range_cb *cb, void *arg,
       const struct filter_limits *lim, const char *in, size_t len,
       size_t chunk, size_t split, struct run_more *more)
{
    struct run r;
    struct filter *f = reuse;
    size_t off = 0, n;
    const char *k, *rm, *o;

    memset(&r, 0, sizeof(r));
    if (more != NULL)
        memset(more, 0, sizeof(*more));
    if (reuse != NULL)
        r.err = filter_reset(f, root, g, cb, arg);
    else
        r.err = filter_new(root, g, cb, arg, lim, &f);
    if (r.err != BRK_OK) {
        if (reuse == NULL)
            assert_null(f);
        return r;
    }
    while (off < len && r.err == BRK_OK) {
        if (split != 0)
            n = off == 0 ? split : len - off;
        else
            n = chunk == 0 || len - off < chunk ? len - off : chunk;
        r.err = filter_feed(f, in + off, n);
        off += n;
    }
    if (r.err == BRK_OK)
        r.err = filter_finish(f);
    if (r.err == BRK_OK && more != NULL) {
        if (reuse == NULL) {
            assert_int_equal(filter_names(f, &more->kept, &more->removed),
                             BRK_OK);
        } else {
            assert_int_equal(filter_names_get(f, &k, &rm), BRK_OK);
            more->kept = brk_strdup(k);
            more->removed = brk_strdup(rm);
        }
    }
    if (r.err == BRK_OK && (reuse == NULL || shared_runs++ % 2 == 0)) {
        r.err = filter_take_output(f, &r.out, &r.len);
    } else if (r.err == BRK_OK) {
        r.err = filter_output(f, &o, &r.len);
        if (r.err == BRK_OK) {
            r.out = brk_malloc(r.len + 1);
            assert_non_null(r.out);
            memcpy(r.out, o, r.len + 1);
        }
    }
    r.stripped = filter_stripped(f);
    r.dropped = filter_dropped(f);
    if (more != NULL && !filter_errcode(f, &more->errcode))
        more->errcode = -12345;
    if (reuse == NULL)
        filter_free(f);
    if (r.err == BRK_OK) {
        assert_non_null(r.out);
        assert_int_equal(r.out[r.len], '\0');
    }
    return r;
}

static int
same_str(const char *a, const char *b)
{
    return (a == NULL) == (b == NULL) && (a == NULL || strcmp(a, b) == 0);
}

/* The run once more on the shared filter, which must agree with fresh
 * (a new filter's run) in everything. */
static void
check_shared(const struct scope_node *root, const struct scope_grant *g,
             filter_range_cb *cb, void *arg, const char *in, size_t len,
             size_t chunk, size_t split, const struct run *fresh,
             const struct run_more *fm)
{
    struct run r;
    struct run_more m;

    if (shared == NULL)
        assert_int_equal(filter_new(root, g, cb, arg, NULL, &shared), BRK_OK);
    r = run_on(shared, root, g, cb, arg, NULL, in, len, chunk, split, &m);
    if (r.err != fresh->err || r.len != fresh->len ||
        (fresh->out != NULL && memcmp(r.out, fresh->out, r.len) != 0) ||
        r.stripped != fresh->stripped || r.dropped != fresh->dropped ||
        m.errcode != fm->errcode || !same_str(m.kept, fm->kept) ||
        !same_str(m.removed, fm->removed))
        fail_msg("input %.*s: a reused filter gives %s %s (stripped %lu "
                 "dropped %lu names %s / %s errcode %ld), a new one %s %s "
                 "(stripped %lu dropped %lu names %s / %s errcode %ld)",
                 (int)len, in, brk_strerror(r.err), r.out ? r.out : "-",
                 r.stripped, r.dropped, m.kept ? m.kept : "-",
                 m.removed ? m.removed : "-", m.errcode,
                 brk_strerror(fresh->err), fresh->out ? fresh->out : "-",
                 fresh->stripped, fresh->dropped, fm->kept ? fm->kept : "-",
                 fm->removed ? fm->removed : "-", fm->errcode);
    brk_free(r.out);
    brk_free(m.kept);
    brk_free(m.removed);
}

static struct run
run_split(const struct scope_node *root, const struct scope_grant *g,
          const char *in, size_t len, size_t chunk, size_t split)
{
    struct run r;
    struct run_more m;
    int check = shared_check && cur_limits == NULL;

    r = run_on(NULL, root, g, cur_cb, NULL, cur_limits, in, len, chunk, split,
               check ? &m : NULL);
    if (check) {
        check_shared(root, g, cur_cb, NULL, in, len, chunk, split, &r, &m);
        brk_free(m.kept);
        brk_free(m.removed);
    }
    return r;
}

static struct run
run1(const struct scope_node *root, const struct scope_grant *g, const char *in)
{
    return run_split(root, g, in, strlen(in), 0, 0);
}

/*
 * in must filter to want with these counts, fed whole, a byte at a time,
 * and in every two-piece split.
 */
static void
expect_out(const struct scope_node *root, const struct scope_grant *g,
           const char *in, const char *want, unsigned long stripped,
           unsigned long dropped)
{
    size_t len = strlen(in), i;
    struct run r;

    for (i = 0; i <= len + 1; i++) {
        /* i = 0: whole; 1..len-1: split at i; len: 1-byte chunks */
        if (i == len + 1)
            r = run_split(root, g, in, len, 1, 0);
        else if (i == 0 || i >= len)
            r = run_split(root, g, in, len, 0, 0);
        else
            r = run_split(root, g, in, len, 0, i);
        if (r.err != BRK_OK)
            fail_msg("input %s: %s (piece %zu)", in, brk_strerror(r.err), i);
        if (strcmp(r.out, want) != 0)
            fail_msg("input  %s\nwant   %s\ngot    %s (piece %zu)", in, want,
                     r.out, i);
        if (r.stripped != stripped || r.dropped != dropped)
            fail_msg("input %s: stripped %lu dropped %lu, want %lu %lu", in,
                     r.stripped, r.dropped, stripped, dropped);
        brk_free(r.out);
    }
}

/* in (len bytes, may hold NUL) must fail with err, whole and bytewise. */
static void
expect_err_n(const struct scope_node *root, const struct scope_grant *g,
             const char *in, size_t len, enum brk_err err)
{
    struct run r;
    int pass;

    for (pass = 0; pass < 2; pass++) {
        r = run_split(root, g, in, len, pass == 0 ? 0 : 1, 0);
        if (r.err != err)
            fail_msg("input %.*s: %s, want %s (pass %d)", (int)len, in,
                     brk_strerror(r.err), brk_strerror(err), pass);
        brk_free(r.out);
    }
}

static void
expect_err(const struct scope_node *root, const struct scope_grant *g,
           const char *in, enum brk_err err)
{
    expect_err_n(root, g, in, strlen(in), err);
}

static int
reset(void **state)
{
    (void)state;
    cur_cb = test_range;
    cur_limits = NULL;
    shared_check = 1;
    memset(&rlog, 0, sizeof(rlog));
    brk_alloc_fail_at(0);
    return 0;
}

/*---- Construction and the API contract ----*/

static void
test_new_rejects_null(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(0);
    struct filter *f = (struct filter *)&g;

    (void)state;
    assert_int_equal(filter_new(NULL, &g, NULL, NULL, NULL, &f), BRK_ERR_INVAL);
    assert_int_equal(filter_new(root, NULL, NULL, NULL, NULL, &f),
                     BRK_ERR_INVAL);
    assert_ptr_equal(f, (struct filter *)&g);
    filter_free(NULL);
    assert_int_equal(filter_stripped(NULL), 0);
    assert_int_equal(filter_dropped(NULL), 0);
    root_free(root);
}

static void
test_call_order(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    struct filter *f = NULL;
    char *out = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(filter_new(root, &g, NULL, NULL, NULL, &f), BRK_OK);
    assert_int_equal(filter_feed(f, "{\"name\":\"a\"", 11), BRK_OK);
    assert_int_equal(filter_take_output(f, &out, &len), BRK_ERR_INVAL);
    assert_int_equal(filter_feed(f, "", 0), BRK_OK);
    assert_int_equal(filter_feed(f, "}", 1), BRK_OK);
    assert_int_equal(filter_finish(f), BRK_OK);
    assert_int_equal(filter_finish(f), BRK_ERR_INVAL);
    assert_int_equal(filter_feed(f, " ", 1), BRK_ERR_INVAL);
    assert_int_equal(filter_take_output(f, &out, &len), BRK_OK);
    assert_string_equal(out, "{\"name\":\"a\"}");
    assert_int_equal(len, 12);
    brk_free(out);
    out = NULL;
    assert_int_equal(filter_take_output(f, &out, &len), BRK_ERR_INVAL);
    assert_null(out);
    filter_free(f);
    root_free(root);
}

static void
test_errors_are_sticky(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    struct filter *f = NULL;
    char *out = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(filter_new(root, &g, NULL, NULL, NULL, &f), BRK_OK);
    assert_int_equal(filter_feed(f, "{\"name\":1,\"name\":2", 18),
                     BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(filter_feed(f, "}", 1), BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(filter_finish(f), BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(filter_take_output(f, &out, &len), BRK_ERR_UPSTREAM_BAD);
    assert_null(out);
    filter_free(f);
    root_free(root);
}

/* The top-level errcode as read, whatever is written, split anywhere. */
static long
errcode_of(const struct scope_node *root, const struct scope_grant *g,
           const char *doc, size_t cut, int *seen)
{
    struct filter *f = NULL;
    long code = 12345;

    assert_int_equal(filter_new(root, g, NULL, NULL, NULL, &f), BRK_OK);
    assert_int_equal(filter_feed(f, doc, cut), BRK_OK);
    assert_int_equal(filter_feed(f, doc + cut, strlen(doc) - cut), BRK_OK);
    assert_int_equal(filter_finish(f), BRK_OK);
    *seen = filter_errcode(f, &code);
    filter_free(f);
    return code;
}

static void
test_errcode(void **state)
{
    static const struct {
        const char *doc;
        int seen;
        long code;
    } cases[] = {
        {"{\"errcode\":0,\"errmsg\":\"ok\"}", 1, 0},
        {"{\"errmsg\":\"x\",\"errcode\": 42001 }", 1, 42001},
        {"{\"errcode\":-1}", 1, -1},
        {"{\"err\\u0063ode\":60011}", 1, 60011},
        {"{\"errmsg\":\"ok\"}", 0, 0},
        /* not an integer, not at the top, too large: not WeCom's */
        {"{\"errcode\":\"40014\"}", 0, 0},
        {"{\"errcode\":4.0e4}", 0, 0},
        {"{\"errcode\":{\"errcode\":1}}", 0, 0},
        {"{\"info\":{\"errcode\":45009},\"tags\":[]}", 0, 0},
        {"{\"errcode\":99999999999999999999}", 0, 0},
        {"{\"errcode\":[1],\"count\":2}", 0, 0},
        {"{\"errcodes\":1}", 0, 0},
    };
    struct scope_node *root = basic_tree();
    struct scope_grant none = grant_of(0), all = grant_of(2, P_BASE, P_SENS);
    size_t i, cut, n;
    int seen;
    long code;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        n = strlen(cases[i].doc);
        for (cut = 0; cut <= n; cut++) {
            code = errcode_of(root, cut % 2 ? &none : &all, cases[i].doc, cut,
                              &seen);
            if (seen != cases[i].seen || (seen && code != cases[i].code) ||
                (!seen && code != 12345))
                fail_msg("%s cut at %zu: seen %d code %ld", cases[i].doc, cut,
                         seen, code);
        }
    }
    assert_int_equal(filter_errcode(NULL, &code), 0);
    root_free(root);
}

/* One string is read whole even when removed: with small output limits
 * it may still be 16 MiB, not a byte more, fed whole or in pieces. */
static void
test_token_limit(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    static const char head[] = "{\"secret\":\"", tail[] = "\",\"name\":\"a\"}";
    struct filter_limits lim = {0, 1024, 1024};
    size_t big = (size_t)16 * 1024 * 1024, n, off, piece, k;
    struct filter *f;
    enum brk_err err;
    char *doc;
    int extra, split;

    (void)state;
    doc = malloc(big + 64);
    assert_non_null(doc);
    for (extra = 0; extra <= 1; extra++)
        for (split = 0; split <= 1; split++) {
            n = strlen(head);
            memcpy(doc, head, n);
            memset(doc + n, 'x', big + (size_t)extra);
            n += big + (size_t)extra;
            memcpy(doc + n, tail, strlen(tail));
            n += strlen(tail);
            f = NULL;
            assert_int_equal(filter_new(root, &g, NULL, NULL, &lim, &f),
                             BRK_OK);
            err = BRK_OK;
            piece = split ? 65536 : n;
            for (off = 0; off < n && err == BRK_OK; off += k) {
                k = n - off < piece ? n - off : piece;
                err = filter_feed(f, doc + off, k);
            }
            if (err == BRK_OK)
                err = filter_finish(f);
            assert_int_equal(err, extra ? BRK_ERR_TOOBIG : BRK_OK);
            filter_free(f);
        }
    free(doc);
    root_free(root);
}

/*---- Keys and types ----*/

static void
test_declared_keys_pass(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(2, P_BASE, P_SENS);

    (void)state;
    expect_out(root, &g,
               "{\"errcode\":0,\"errmsg\":\"ok\",\"name\":\"n\",\"mobile\":"
               "\"1\",\"count\":3,\"score\":2.5,\"flag\":true,\"info\":{\"a\":"
               "\"x\",\"b\":\"y\",\"deep\":{\"x\":1}},\"tags\":[\"t\"],"
               "\"items\":[{\"k\":\"a\",\"v\":1}]}",
               "{\"errcode\":0,\"errmsg\":\"ok\",\"name\":\"n\",\"mobile\":"
               "\"1\",\"count\":3,\"score\":2.5,\"flag\":true,\"info\":{\"a\":"
               "\"x\",\"b\":\"y\",\"deep\":{\"x\":1}},\"tags\":[\"t\"],"
               "\"items\":[{\"k\":\"a\",\"v\":1}]}",
               0, 0);
    root_free(root);
}

static void
test_whitespace_is_not_copied(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g,
               " \r\n\t{ \"name\" :\n\"n\" , \"tags\" : [ \"a\" , \"b\" ] ,"
               "\"info\":{ } } \n",
               "{\"name\":\"n\",\"tags\":[\"a\",\"b\"],\"info\":{}}", 0, 0);
    root_free(root);
}

static void
test_unknown_keys_removed(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g,
               "{\"errcode\":0,\"extra\":{\"a\":[1,{\"b\":2}]},\"errmsg\":"
               "\"ok\",\"other\":1,\"Name\":\"x\",\"name \":\"y\"}",
               "{\"errcode\":0,\"errmsg\":\"ok\"}", 4, 0);
    root_free(root);
}

static void
test_never_removed_whatever_the_grant(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(3, SCOPE_PERM_NEVER, P_BASE, P_SENS);

    (void)state;
    expect_out(root, &g, "{\"secret\":\"s\",\"name\":\"n\"}",
               "{\"name\":\"n\"}", 1, 0);
    root_free(root);
}

static void
test_ungranted_removed(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant base = grant_of(1, P_BASE);
    struct scope_grant both = grant_of(2, P_BASE, P_SENS);
    struct scope_grant none = grant_of(0);

    (void)state;
    expect_out(root, &base, "{\"mobile\":\"1\",\"name\":\"n\"}",
               "{\"name\":\"n\"}", 1, 0);
    expect_out(root, &both, "{\"mobile\":\"1\",\"name\":\"n\"}",
               "{\"mobile\":\"1\",\"name\":\"n\"}", 0, 0);
    /* "always" needs no grant at all */
    expect_out(root, &none,
               "{\"errcode\":0,\"name\":\"n\",\"errmsg\":\"ok\",\"info\":"
               "{\"a\":\"x\"}}",
               "{\"errcode\":0,\"errmsg\":\"ok\"}", 2, 0);
    root_free(root);
}

static void
test_removed_subtree_counts_once(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(0);

    (void)state;
    expect_out(root, &g,
               "{\"info\":{\"a\":\"x\",\"b\":\"y\",\"zz\":[1,2,{\"q\":1}]},"
               "\"tags\":[1,\"a\",null],\"unknown\":{\"a\":{\"b\":[{}]}}}",
               "{}", 3, 0);
    root_free(root);
}

static void
test_wrong_types_removed(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g,
               "{\"name\":1,\"count\":\"1\",\"flag\":1,\"info\":[],\"tags\":"
               "{},\"score\":true,\"errmsg\":false,\"errcode\":\"0\"}",
               "{}", 8, 0);
    expect_out(root, &g, "{\"info\":{\"deep\":[{\"x\":1}],\"a\":\"k\"}}",
               "{\"info\":{\"a\":\"k\"}}", 1, 0);
    root_free(root);
}

static void
test_null_is_a_wrong_type(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g,
               "{\"name\":null,\"count\":null,\"info\":null,\"tags\":null,"
               "\"flag\":null,\"score\":null,\"errcode\":null}",
               "{}", 7, 0);
    root_free(root);
}

static void
test_null_each_counted(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g,
               "{\"name\":null,\"count\":null,\"info\":null,\"tags\":[null,"
               "\"a\",null],\"flag\":null,\"score\":null,\"errcode\":null}",
               "{\"tags\":[\"a\"]}", 8, 0);
    root_free(root);
}

static void
test_integer_versus_number(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g, "{\"count\":1.0}", "{}", 1, 0);
    expect_out(root, &g, "{\"count\":1e2}", "{}", 1, 0);
    expect_out(root, &g, "{\"count\":1E2}", "{}", 1, 0);
    expect_out(root, &g, "{\"count\":-0}", "{\"count\":-0}", 0, 0);
    expect_out(root, &g, "{\"count\":-12}", "{\"count\":-12}", 0, 0);
    /* copied as written, however large */
    expect_out(root, &g, "{\"count\":123456789012345678901234567890}",
               "{\"count\":123456789012345678901234567890}", 0, 0);
    expect_out(
        root, &g, "{\"score\":1.50,\"info\":{\"deep\":{\"x\":7}},\"tags\":[]}",
        "{\"score\":1.50,\"info\":{\"deep\":{\"x\":7}},\"tags\":[]}", 0, 0);
    root_free(root);
}

static void
test_numbers_copied_as_written(void **state)
{
    static const char *const forms[] = {
        "0",        "-0",    "7",    "-7",
        "0.0",      "-0.0",  "1.50", "1e5",
        "1E5",      "1e+5",  "1E-5", "-1.25e-300",
        "12.5E+07", "1e400", "0e0",  "9007199254740993",
    };
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    char in[128], want[128];
    size_t i;

    (void)state;
    for (i = 0; i < nitems(forms); i++) {
        snprintf(in, sizeof(in), "{\"score\": %s }", forms[i]);
        snprintf(want, sizeof(want), "{\"score\":%s}", forms[i]);
        expect_out(root, &g, in, want, 0, 0);
    }
    root_free(root);
}

static void
test_booleans(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g, "{\"flag\":false}", "{\"flag\":false}", 0, 0);
    expect_out(root, &g, "{\"flag\":true}", "{\"flag\":true}", 0, 0);
    expect_out(root, &g, "{\"flag\":\"true\"}", "{}", 1, 0);
    root_free(root);
}

static void
test_nested_objects(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g,
               "{\"info\":{\"a\":\"x\",\"b\":\"y\",\"z\":1,\"deep\":{\"x\":1,"
               "\"y\":2}}}",
               "{\"info\":{\"a\":\"x\",\"deep\":{\"x\":1}}}", 3, 0);
    expect_out(root, &g, "{\"info\":{\"b\":\"y\",\"a\":\"x\"},\"name\":\"n\"}",
               "{\"info\":{\"a\":\"x\"},\"name\":\"n\"}", 1, 0);
    root_free(root);
}

static void
test_arrays(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g, "{\"tags\":[\"a\",1,null,\"b\",[],{},true]}",
               "{\"tags\":[\"a\",\"b\"]}", 5, 0);
    expect_out(root, &g, "{\"tags\":[1,\"a\"]}", "{\"tags\":[\"a\"]}", 1, 0);
    expect_out(root, &g,
               "{\"items\":[{\"k\":\"a\",\"v\":1,\"w\":2},{},{\"k\":\"b\"},"
               "\"s\",[{\"k\":\"c\"}]]}",
               "{\"items\":[{\"k\":\"a\"},{},{\"k\":\"b\"}]}", 4, 0);
    root_free(root);
}

static void
test_empty_containers_kept(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g, "{}", "{}", 0, 0);
    expect_out(root, &g, "{\"info\":{},\"tags\":[],\"items\":[{}]}",
               "{\"info\":{},\"tags\":[],\"items\":[{}]}", 0, 0);
    expect_out(root, &g, "{\"info\":{\"q\":1}}", "{\"info\":{}}", 1, 0);
    root_free(root);
}

static void
test_escaped_key_is_the_same_key(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g,
               "{\"userlist\":[{\"\\u0075serid\":\"in1\",\"n\\u0061me\":"
               "\"x\"}],\"\\u006e\\u0061\\u006d\\u0065\":\"n\"}",
               "{\"userlist\":[{\"userid\":\"in1\",\"name\":\"x\"}],\"name\":"
               "\"n\"}",
               0, 0);
    expect_out(root, &g, "{\"userlist\":[{\"\\u0075serid\":\"out\"}]}",
               "{\"userlist\":[]}", 0, 1);
    root_free(root);
}

static void
test_strings_reencoded(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g,
               "{\"name\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u4e2d"
               "\\ud83d\\ude00\\u001f\\u007f\\u0041/\"}",
               "{\"name\":\"\\\"\\\\/\\u0008\\u000c\\u000a\\u000d\\u0009"
               "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\\u001f\x7f"
               "A/\"}",
               0, 0);
    /* raw UTF-8 stays as it is */
    expect_out(root, &g, "{\"name\":\"\xe4\xb8\xad\xf0\x9f\x98\x80\xc3\xa9\"}",
               "{\"name\":\"\xe4\xb8\xad\xf0\x9f\x98\x80\xc3\xa9\"}", 0, 0);
    /* NUL is fine inside a value */
    expect_out(root, &g, "{\"name\":\"a\\u0000b\"}", "{\"name\":\"a\\u0000b\"}",
               0, 0);
    root_free(root);
}

/*---- Repeated keys ----*/

static void
test_repeated_key(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_err(root, &g, "{\"name\":\"a\",\"name\":\"b\"}",
               BRK_ERR_UPSTREAM_BAD);
    expect_err(root, &g, "{\"name\":\"a\",\"count\":1,\"name\":\"a\"}",
               BRK_ERR_UPSTREAM_BAD);
    /* a key removed for the grant, then again */
    expect_err(root, &g, "{\"mobile\":\"1\",\"mobile\":\"2\"}",
               BRK_ERR_UPSTREAM_BAD);
    /* spelled differently, the same key */
    expect_err(root, &g, "{\"name\":\"a\",\"n\\u0061me\":\"b\"}",
               BRK_ERR_UPSTREAM_BAD);
    expect_err(root, &g,
               "{\"items\":[{\"k\":\"a\"},{\"k\":\"b\",\"k\":\"c\"}]}",
               BRK_ERR_UPSTREAM_BAD);
    expect_err(root, &g, "{\"info\":{\"deep\":{\"x\":1,\"x\":1}}}",
               BRK_ERR_UPSTREAM_BAD);
    root_free(root);
}

static void
test_repeated_key_in_removed_subtree(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_err(root, &g, "{\"unknown\":{\"x\":1,\"x\":2}}",
               BRK_ERR_UPSTREAM_BAD);
    expect_err(root, &g, "{\"zz\":[{\"a\":{\"b\":1,\"c\":2,\"b\":3}}]}",
               BRK_ERR_UPSTREAM_BAD);
    expect_err(root, &g, "{\"x\":1,\"x\":2}", BRK_ERR_UPSTREAM_BAD);
    /* ungranted subtree */
    expect_err(root, &g, "{\"info\":{\"b\":1,\"b\":2}}", BRK_ERR_UPSTREAM_BAD);
    /* wrong-typed subtree */
    expect_err(root, &g, "{\"tags\":{\"a\":1,\"a\":2}}", BRK_ERR_UPSTREAM_BAD);
    root_free(root);
}

static void
test_repeated_key_in_dropped_record(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_err(root, &g,
               "{\"userlist\":[{\"userid\":\"out\",\"name\":\"a\",\"name\":"
               "\"b\"}]}",
               BRK_ERR_UPSTREAM_BAD);
    expect_err(root, &g,
               "{\"userlist\":[{\"userid\":\"out\",\"userid\":\"in\"}]}",
               BRK_ERR_UPSTREAM_BAD);
    root_free(root);
}

/* A big object: the key set grows its index and stays exact (and
 * linear: 100,000 keys compared pairwise would take minutes). */
static void
test_many_keys(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    char *in = brk_malloc(2000000), *p;
    size_t i, n = 100000;
    struct run r;

    (void)state;
    assert_non_null(in);
    p = in;
    *p++ = '{';
    for (i = 0; i < n; i++)
        p += snprintf(p, 32, "%s\"k%zu\":%zu", i ? "," : "", i, i);
    memcpy(p, ",\"name\":\"n\"}", 13);
    r = run1(root, &g, in);
    assert_int_equal(r.err, BRK_OK);
    assert_string_equal(r.out, "{\"name\":\"n\"}");
    assert_int_equal(r.stripped, n);
    brk_free(r.out);
    /* the same with one key repeated at the very end */
    memcpy(p, ",\"k12345\":1}", 13);
    r = run1(root, &g, in);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    memcpy(p, ",\"k0\":1}", 9);
    r = run1(root, &g, in);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    brk_free(in);
    root_free(root);
}

/* Over 64 declared fields: the generic key set handles declared keys. */
static void
test_many_declared_fields(void **state)
{
    struct scope_node fs[70];
    char names[70][8];
    struct scope_node *root;
    struct scope_grant g = grant_of(1, P_BASE);
    size_t i;

    (void)state;
    for (i = 0; i < 70; i++) {
        snprintf(names[i], sizeof(names[i]), "f%02zu", i);
        fs[i] = leaf(names[i], SCOPE_T_INTEGER, P_BASE);
    }
    root = root_new(70, fs);
    expect_out(root, &g, "{\"f00\":1,\"f69\":2,\"f64\":3,\"x\":1}",
               "{\"f00\":1,\"f69\":2,\"f64\":3}", 1, 0);
    expect_err(root, &g, "{\"f00\":1,\"f69\":2,\"f00\":3}",
               BRK_ERR_UPSTREAM_BAD);
    expect_err(root, &g, "{\"f68\":1,\"f01\":2,\"f68\":3}",
               BRK_ERR_UPSTREAM_BAD);
    root_free(root);
}

/*---- Records ----*/

static void
test_record_id_first_or_last(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g, "{\"userlist\":[{\"userid\":\"in1\",\"name\":\"a\"}]}",
               "{\"userlist\":[{\"userid\":\"in1\",\"name\":\"a\"}]}", 0, 0);
    expect_out(root, &g,
               "{\"userlist\":[{\"name\":\"a\",\"mobile\":\"m\",\"userid\":"
               "\"in1\"}]}",
               "{\"userlist\":[{\"name\":\"a\",\"userid\":\"in1\"}]}", 1, 0);
    expect_out(root, &g,
               "{\"userlist\":[{\"userid\":\"out1\",\"name\":\"a\",\"mobile\":"
               "\"m\"}]}",
               "{\"userlist\":[]}", 0, 1);
    expect_out(root, &g,
               "{\"userlist\":[{\"name\":\"a\",\"mobile\":\"m\",\"junk\":1,"
               "\"userid\":\"out1\"}]}",
               "{\"userlist\":[]}", 0, 1);
    assert_true(asked(SCOPE_REC_MEMBER, "in1"));
    assert_true(asked(SCOPE_REC_MEMBER, "out1"));
    root_free(root);
}

static void
test_record_id_missing_or_mistyped(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g, "{\"userlist\":[{\"name\":\"a\",\"mobile\":\"m\"}]}",
               "{\"userlist\":[]}", 0, 1);
    expect_out(root, &g, "{\"userlist\":[{}]}", "{\"userlist\":[]}", 0, 1);
    expect_out(root, &g, "{\"userlist\":[{\"userid\":1,\"name\":\"a\"}]}",
               "{\"userlist\":[]}", 0, 1);
    expect_out(root, &g, "{\"userlist\":[{\"userid\":null}]}",
               "{\"userlist\":[]}", 0, 1);
    expect_out(root, &g, "{\"userlist\":[{\"userid\":[\"in1\"]}]}",
               "{\"userlist\":[]}", 0, 1);
    expect_out(root, &g, "{\"userlist\":[{\"userid\":{\"a\":\"in1\"}}]}",
               "{\"userlist\":[]}", 0, 1);
    /* not an object at all: a wrong type, not a record */
    expect_out(root, &g, "{\"userlist\":[\"in1\",7]}", "{\"userlist\":[]}", 2,
               0);
    root_free(root);
}

static void
test_dropped_records_leave_no_commas(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g,
               "{\"userlist\":[{\"userid\":\"out1\"},{\"userid\":\"in2\"},"
               "{\"userid\":\"out3\"},{\"name\":\"x\",\"userid\":\"in4\"},"
               "{\"name\":\"y\",\"userid\":\"out5\"}]}",
               "{\"userlist\":[{\"userid\":\"in2\"},{\"name\":\"x\",\"userid\":"
               "\"in4\"}]}",
               0, 3);
    expect_out(root, &g,
               "{\"leader\":{\"userid\":\"out\"},\"name\":\"n\",\"count\":1}",
               "{\"name\":\"n\",\"count\":1}", 0, 1);
    expect_out(root, &g,
               "{\"name\":\"n\",\"leader\":{\"userid\":\"out\"},\"count\":1}",
               "{\"name\":\"n\",\"count\":1}", 0, 1);
    expect_out(root, &g,
               "{\"name\":\"n\",\"count\":1,\"leader\":{\"x\":1,\"userid\":"
               "\"out\"}}",
               "{\"name\":\"n\",\"count\":1}", 0, 1);
    expect_out(root, &g, "{\"leader\":{\"userid\":\"in\"}}",
               "{\"leader\":{\"userid\":\"in\"}}", 0, 0);
    root_free(root);
}

static void
test_nested_records(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    /* inside a kept record they count */
    expect_out(root, &g,
               "{\"userlist\":[{\"userid\":\"in1\",\"department\":[2,3,4],"
               "\"mobile\":\"m\"}]}",
               "{\"userlist\":[{\"userid\":\"in1\",\"department\":[2,4]}]}", 1,
               1);
    expect_out(root, &g,
               "{\"userlist\":[{\"department\":[3,2,5],\"x\":1,\"userid\":"
               "\"in1\"}]}",
               "{\"userlist\":[{\"department\":[2],\"userid\":\"in1\"}]}", 1,
               2);
    /* inside a dropped one nothing counts but the record */
    expect_out(root, &g,
               "{\"userlist\":[{\"department\":[2,3],\"mobile\":\"x\","
               "\"userid\":\"out\"}]}",
               "{\"userlist\":[]}", 0, 1);
    root_free(root);
}

static void
test_department_and_tag_records(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g,
               "{\"department\":[{\"id\":2,\"name\":\"a\"},{\"id\":3},{\"id\":"
               "\"2\"},{\"id\":2.0},{\"name\":\"b\",\"id\":12}],\"taglist\":"
               "[{\"tagid\":4},{\"tagid\":5}]}",
               "{\"department\":[{\"id\":2,\"name\":\"a\"},{\"name\":\"b\","
               "\"id\":12}],\"taglist\":[{\"tagid\":4}]}",
               0, 4);
    assert_true(asked(SCOPE_REC_DEPARTMENT, "2"));
    assert_true(asked(SCOPE_REC_DEPARTMENT, "3"));
    assert_true(asked(SCOPE_REC_DEPARTMENT, "12"));
    assert_false(asked(SCOPE_REC_DEPARTMENT, "2.0"));
    assert_true(asked(SCOPE_REC_TAG, "4"));
    assert_true(asked(SCOPE_REC_TAG, "5"));
    root_free(root);
}

static void
test_id_lists(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g,
               "{\"user_ids\":[\"in1\",\"out2\",3,null,\"in3\"],\"dept_ids\":"
               "[1,2,\"2\",2.5,4,-0]}",
               "{\"user_ids\":[\"in1\",\"in3\"],\"dept_ids\":[2,4,-0]}", 4, 2);
    expect_out(root, &g, "{\"user_ids\":[\"out\",\"in\"]}",
               "{\"user_ids\":[\"in\"]}", 0, 1);
    assert_true(asked(SCOPE_REC_MEMBER, "out2"));
    assert_true(asked(SCOPE_REC_DEPARTMENT, "-0"));
    root_free(root);
}

static void
test_two_level_record_id(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant base = grant_of(1, P_BASE);
    struct scope_grant both = grant_of(2, P_BASE, P_SENS);
    const char *in = "{\"rows\":[{\"n\":1,\"info\":{\"userid\":\"in1\"}},"
                     "{\"info\":{\"userid\":\"out\"},\"n\":2},{\"n\":3},"
                     "{\"info\":\"in1\",\"n\":4},{\"info\":{\"x\":\"in1\"}},"
                     "{\"userid\":\"in1\"},{\"info\":{\"userid\":5}}]}";

    (void)state;
    /* info is not granted: still the record's id */
    expect_out(root, &base, in, "{\"rows\":[{\"n\":1}]}", 1, 6);
    expect_out(root, &both, in,
               "{\"rows\":[{\"n\":1,\"info\":{\"userid\":\"in1\"}}]}", 0, 6);
    root_free(root);
}

static void
test_chat_members(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(
        root, &g,
        "{\"members\":[{\"userid\":\"out1\",\"type\":2,\"name\":\"x\"},"
        "{\"type\":2,\"userid\":\"out2\"},{\"userid\":\"out3\",\"type\":1},"
        "{\"userid\":\"in4\",\"type\":1},{\"userid\":\"out5\",\"type\":\"2\"},"
        "{\"userid\":\"out6\",\"type\":2.0},{\"type\":2},{\"type\":1},"
        "{\"userid\":7,\"type\":2},{\"type\":1,\"userid\":\"in8\"}]}",
        "{\"members\":[{\"userid\":\"out1\",\"type\":2,\"name\":\"x\"},"
        "{\"type\":2,\"userid\":\"out2\"},{\"userid\":\"in4\",\"type\":1},"
        "{\"type\":2},{\"type\":2},{\"type\":1,\"userid\":\"in8\"}]}",
        1, 4);
    assert_true(asked(SCOPE_REC_CHAT_MEMBER, "out1"));
    root_free(root);
}

static void
test_customers(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant ext = grant_of(2, P_BASE, P_EXT);
    struct scope_grant base = grant_of(1, P_BASE);
    const char *in =
        "{\"customers\":["
        "{\"external_contact\":{\"name\":\"c1\"},\"follow_user\":[{\"userid\":"
        "\"out1\"},{\"userid\":\"in2\",\"remark\":\"r\"}]},"
        "{\"external_contact\":{\"name\":\"c2\"},\"follow_user\":[{\"userid\":"
        "\"out3\"}]},"
        "{\"follow_ids\":[\"out4\",\"in5\"],\"external_contact\":{\"name\":"
        "\"c3\"}},"
        "{\"external_contact\":{\"name\":\"c4\"}}]}";

    (void)state;
    expect_out(root, &ext, in,
               "{\"customers\":["
               "{\"external_contact\":{\"name\":\"c1\"},\"follow_user\":[{"
               "\"userid\":\"in2\",\"remark\":\"r\"}]},"
               "{\"follow_ids\":[\"in5\"],\"external_contact\":{\"name\":"
               "\"c3\"}}]}",
               0, 4);
    assert_true(asked(SCOPE_REC_FOLLOW_USER, "in2"));
    assert_true(asked(SCOPE_REC_FOLLOW_USER, "out4"));
    assert_false(asked(SCOPE_REC_MEMBER, "in2"));
    /* follow_user not granted: still what decides the customer */
    expect_out(root, &base, in,
               "{\"customers\":["
               "{\"external_contact\":{\"name\":\"c1\"}},"
               "{\"follow_ids\":[\"in5\"],\"external_contact\":{\"name\":"
               "\"c3\"}}]}",
               1, 3);
    root_free(root);
}

static void
test_chat_record(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g, "{\"chat\":{\"owner\":\"in1\",\"name\":\"x\"}}",
               "{\"chat\":{\"owner\":\"in1\",\"name\":\"x\"}}", 0, 0);
    expect_out(root, &g, "{\"chat\":{\"name\":\"x\",\"owner\":\"out\"}}", "{}",
               0, 1);
    assert_true(asked(SCOPE_REC_CHAT, "in1"));
    root_free(root);
}

static void
test_no_range_callback_keeps_records(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(2, P_BASE, P_EXT);

    (void)state;
    cur_cb = NULL;
    expect_out(root, &g,
               "{\"userlist\":[{\"userid\":\"out\"},{\"name\":\"x\"}],"
               "\"user_ids\":[\"out\",1],\"customers\":[{}]}",
               "{\"userlist\":[{\"userid\":\"out\"},{\"name\":\"x\"}],"
               "\"user_ids\":[\"out\"],\"customers\":[{}]}",
               1, 0);
    assert_int_equal(rlog.n, 0);
    root_free(root);
}

/*---- Malformed bodies ----*/

static void
test_malformed_json(void **state)
{
    static const char *const bad[] = {
        "",
        "   ",
        "{",
        "{\"name\":",
        "{\"name\":\"a\"",
        "{\"name\":\"a",
        "{\"name\":\"a\"}x",
        "{\"name\":\"a\"},",
        "{} {}",
        "{}{}",
        "{}\"",
        "{} \"abc",
        "{}\n\"x\"",
        "{}\"x\" ",
        "{}1",
        "{} t",
        "{}\x01",
        "{\"name\":\"\\x\"}",
        "{\"name\":\"\\u12\"}",
        "{\"name\":\"\\u12g4\"}",
        "{\"name\":'a'}",
        "{name:1}",
        "{\"name\":\"a\",}",
        "{\"tags\":[\"a\",]}",
        "{\"tags\":[,]}",
        "{\"flag\":tru}",
        "{\"flag\":True}",
        "{\"count\":01}",
        "{\"count\":1.}",
        "{\"count\":.5}",
        "{\"count\":+1}",
        "{\"count\":-}",
        "{\"count\":NaN}",
        "{\"count\":Infinity}",
        "{\"count\":1e}",
        "{\"count\":0x10}",
        "/*c*/{}",
        "{}//",
        "\xef\xbb\xbf{}",
        "{\"name\":\"a\tb\"}",
        "{\"name\":\"a\nb\"}",
        "{\"name\" \"a\"}",
        "{\"name\":\"a\" \"count\":1}",
        "{\"tags\":[\"a\" \"b\"]}",
        "{\"info\":{\"a\":\"x\"}",
        "{\"tags\":[}",
        "{\"tags\":]}",
        "{]",
        "}",
    };
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    size_t i;

    (void)state;
    for (i = 0; i < nitems(bad); i++)
        expect_err(root, &g, bad[i], BRK_ERR_UPSTREAM_BAD);
    root_free(root);
}

static void
test_truncated_anywhere(void **state)
{
    const char *in = "{\"name\":\"n\\u00e9\",\"info\":{\"deep\":{\"x\":12}},"
                     "\"tags\":[\"a\",\"b\"],\"score\":-1.5e3,\"flag\":true}";
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    size_t n, len = strlen(in);

    (void)state;
    for (n = 0; n < len; n++)
        expect_err_n(root, &g, in, n, BRK_ERR_UPSTREAM_BAD);
    expect_out(root, &g, in,
               "{\"name\":\"n\xc3\xa9\",\"info\":{\"deep\":{\"x\":12}},"
               "\"tags\":[\"a\",\"b\"],\"score\":-1.5e3,\"flag\":true}",
               0, 0);
    root_free(root);
}

static void
test_bad_utf8(void **state)
{
    static const char *const bad[] = {
        "\xff",
        "\xfe",
        "\x80",
        "\xbf",
        "\xc0\x80",
        "\xc1\xbf",
        "\xe0\x80\x80",
        "\xe0\x9f\xbf",
        "\xed\xa0\x80",
        "\xed\xbf\xbf",
        "\xf0\x80\x80\x80",
        "\xf0\x8f\xbf\xbf",
        "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80",
        "\xf8\x88\x80\x80\x80",
        "\xe4\xb8",
        "\xc3",
        "\xf0\x9f\x98",
        "\xc3\x28",
        "\xe4\x28\xad",
        "a\xc3",
    };
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    char in[64];
    size_t i;

    (void)state;
    for (i = 0; i < nitems(bad); i++) {
        /* written, removed, and as a key */
        snprintf(in, sizeof(in), "{\"name\":\"%s\"}", bad[i]);
        expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
        snprintf(in, sizeof(in), "{\"zz\":[\"%s\"]}", bad[i]);
        expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
        snprintf(in, sizeof(in), "{\"zz\":{\"%s\":1}}", bad[i]);
        expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
    }
    /* the edges that are valid */
    expect_out(root, &g,
               "{\"name\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80"
               "\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"}",
               "{\"name\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80"
               "\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"}",
               0, 0);
    root_free(root);
}

static void
test_bad_surrogate_escapes(void **state)
{
    static const char *const bad[] = {
        "\\ud800",        "\\udbff",  "\\udc00",     "\\udfff",
        "\\ud800\\u0041", "\\ud800x", "\\ud800\\n",  "\\ud83d\\ud83d",
        "a\\udc00b",      "\\uD800",  "\\ud800\\\\", "\\ud800\\uDBFF",
    };
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    char in[64];
    size_t i;

    (void)state;
    for (i = 0; i < nitems(bad); i++) {
        snprintf(in, sizeof(in), "{\"name\":\"%s\"}", bad[i]);
        expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
        snprintf(in, sizeof(in), "{\"zz\":\"%s\"}", bad[i]);
        expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
    }
    /* an escaped backslash before "ud800" is not an escape */
    expect_out(root, &g, "{\"name\":\"\\\\ud800\\\\\\\\udc00\"}",
               "{\"name\":\"\\\\ud800\\\\\\\\udc00\"}", 0, 0);
    expect_out(root, &g, "{\"name\":\"\\uD83D\\uDE00\"}",
               "{\"name\":\"\xf0\x9f\x98\x80\"}", 0, 0);
    root_free(root);
}

static void
test_nul_in_key(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_err(root, &g, "{\"name\\u0000\":\"a\"}", BRK_ERR_UPSTREAM_BAD);
    expect_err(root, &g, "{\"zz\":{\"\\u0000\":1}}", BRK_ERR_UPSTREAM_BAD);
    expect_err_n(root, &g, "{\"na\0me\":1}", 11, BRK_ERR_UPSTREAM_BAD);
    expect_err_n(root, &g, "{\"name\":\"a\0\"}", 13, BRK_ERR_UPSTREAM_BAD);
    root_free(root);
}

/* Keys of one length that differ in a single byte, at every place, are
 * distinct keys; the same key again is a repeat. Undeclared keys, in
 * objects small enough to be searched linearly and large enough to be
 * indexed. */
static void
test_keys_differing_in_one_byte(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    static const size_t fill[] = {0, 14, 15, 40};
    const size_t cap = 16384;
    char *in = brk_malloc(cap), *p, *end;
    size_t len, pos, fi, i;
    struct run r;

    (void)state;
    assert_non_null(in);
    end = in + cap;
    for (len = 1; len <= 20; len++) {
        for (fi = 0; fi < nitems(fill); fi++) {
            /* {"zz":{FILL..., "aaa", "baa", "aba", "aab", ...}} */
            p = in;
            p += snprintf(p, (size_t)(end - p), "{\"zz\":{");
            for (i = 0; i < fill[fi]; i++)
                p += snprintf(p, (size_t)(end - p), "\"f%zu\":0,", i);
            p += snprintf(p, (size_t)(end - p), "\"%.*s\":1", (int)len,
                          "aaaaaaaaaaaaaaaaaaaaaaaa");
            for (pos = 0; pos < len; pos++) {
                p += snprintf(p, (size_t)(end - p), ",\"");
                for (i = 0; i < len; i++)
                    *p++ = i == pos ? 'b' : 'a';
                p += snprintf(p, (size_t)(end - p), "\":1");
            }
            snprintf(p, (size_t)(end - p), "}}");
            r = run1(root, &g, in);
            if (r.err != BRK_OK)
                fail_msg("length %zu, %zu more keys: %s", len, fill[fi],
                         brk_strerror(r.err));
            assert_string_equal(r.out, "{}");
            brk_free(r.out);
            /* the last of them once more */
            p += snprintf(p, (size_t)(end - p), ",\"");
            for (i = 0; i < len; i++)
                *p++ = i == len - 1 ? 'b' : 'a';
            snprintf(p, (size_t)(end - p), "\":2}}");
            r = run1(root, &g, in);
            if (r.err != BRK_ERR_UPSTREAM_BAD)
                fail_msg("length %zu, %zu more keys: repeat not refused", len,
                         fill[fi]);
        }
    }
    brk_free(in);
    root_free(root);
}

/* A key that differs from a declared name in one byte is not that field,
 * also when objects of one kind have taught the filter which key comes
 * next. */
static void
test_near_miss_of_declared_name(void **state)
{
    static const char base[] = "abcdefghijklmnop";
    char name[32], other[32], in[256], want[128];
    struct scope_node *root;
    struct scope_grant g = grant_of(1, P_BASE);
    size_t len, pos;

    (void)state;
    for (len = 1; len < sizeof(base); len++) {
        memcpy(name, base, len);
        name[len] = '\0';
        root = ROOT(array("items", P_BASE,
                          OBJ(NULL, SCOPE_PERM_ALWAYS,
                              leaf(name, SCOPE_T_INTEGER, P_BASE),
                              leaf("z", SCOPE_T_INTEGER, P_BASE))));
        for (pos = 0; pos < len; pos++) {
            memcpy(other, name, len + 1);
            other[pos] = 'Z';
            snprintf(in, sizeof(in),
                     "{\"items\":[{\"%s\":1,\"z\":2},{\"%s\":1,\"z\":2},"
                     "{\"%s\":3,\"z\":4}]}",
                     name, name, other);
            snprintf(want, sizeof(want),
                     "{\"items\":[{\"%s\":1,\"z\":2},{\"%s\":1,\"z\":2},"
                     "{\"z\":4}]}",
                     name, name);
            expect_out(root, &g, in, want, 1, 0);
        }
        root_free(root);
    }
}

/* NUL anywhere in a key, short or long, declared level or removed. */
static void
test_nul_anywhere_in_key(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    char in[256], key[128];
    size_t len, pos, i, k;

    (void)state;
    for (len = 1; len <= 20; len++) {
        for (pos = 0; pos < len; pos++) {
            for (i = k = 0; i < len; i++)
                k += (size_t)snprintf(key + k, sizeof(key) - k, "%s",
                                      i == pos ? "\\u0000" : "k");
            snprintf(in, sizeof(in), "{\"%s\":1}", key);
            expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
            snprintf(in, sizeof(in), "{\"zz\":{\"%s\":1}}", key);
            expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
        }
    }
    root_free(root);
}

/* UTF-8 three-byte forms: each lead with continuation bytes at and
 * around the edges, in written and removed strings and in keys, against
 * the rule (no overlong forms, no surrogates). */
static void
test_three_byte_utf8_edges(void **state)
{
    static const unsigned char second[] = {0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc0};
    static const unsigned char third[] = {0x41, 0x80, 0xbf, 0xc0};
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    char in[128], want[128], s[16];
    unsigned lead;
    size_t i, j;
    int valid;

    (void)state;
    for (lead = 0xe0; lead <= 0xef; lead++) {
        for (i = 0; i < nitems(second); i++) {
            for (j = 0; j < nitems(third); j++) {
                valid = second[i] >= (lead == 0xe0 ? 0xa0 : 0x80) &&
                        second[i] <= (lead == 0xed ? 0x9f : 0xbf) &&
                        third[j] >= 0x80 && third[j] <= 0xbf;
                /* after eight ASCII bytes, then alone */
                snprintf(s, sizeof(s), "abcdefgh%c%c%cx", (char)lead,
                         (char)second[i], (char)third[j]);
                snprintf(in, sizeof(in), "{\"name\":\"%s\"}", s);
                if (valid) {
                    snprintf(want, sizeof(want), "{\"name\":\"%s\"}", s);
                    expect_out(root, &g, in, want, 0, 0);
                } else {
                    expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
                }
                snprintf(in, sizeof(in), "{\"zz\":\"%s\",\"z%s\":1}", s + 8,
                         s + 8);
                if (valid)
                    expect_out(root, &g, in, "{}", 2, 0);
                else
                    expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
            }
        }
        /* cut short at the end of the string */
        snprintf(in, sizeof(in), "{\"name\":\"ab%c\\u0041\"}", (char)lead);
        expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
        snprintf(in, sizeof(in), "{\"zz\":\"%c\x80\"}", (char)lead);
        expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
    }
    root_free(root);
}

/* A non-ASCII byte at any place of a short or long string, written,
 * removed or a key: checked wherever it falls among the words read. */
static void
test_utf8_checked_at_every_place(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    char str[64], in[160], want[160];
    size_t len, pos, i, k;

    (void)state;
    for (len = 1; len <= 20; len++) {
        for (pos = 0; pos < len; pos++) {
            /* a lone continuation byte: refused */
            for (i = 0; i < len; i++)
                str[i] = i == pos ? '\x80' : 's';
            str[len] = '\0';
            snprintf(in, sizeof(in), "{\"name\":\"%s\"}", str);
            expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
            snprintf(in, sizeof(in), "{\"zz\":[\"%s\"]}", str);
            expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
            snprintf(in, sizeof(in), "{\"%s\":1}", str);
            expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
            /* a two-byte character there: kept as is */
            for (i = k = 0; i < len; i++) {
                if (i == pos) {
                    str[k++] = '\xc3';
                    str[k++] = '\xa9';
                } else {
                    str[k++] = 's';
                }
            }
            str[k] = '\0';
            snprintf(in, sizeof(in), "{\"name\":\"%s\",\"zz\":\"%s\"}", str,
                     str);
            snprintf(want, sizeof(want), "{\"name\":\"%s\"}", str);
            expect_out(root, &g, in, want, 1, 0);
        }
    }
    root_free(root);
}

/* Characters that need escaping, at any place of a written string: the
 * writer copies eight plain bytes at once and must stop at each. */
static void
test_escapes_at_every_place(void **state)
{
    static const struct {
        const char *in, *out;
    } sp[] = {
        {"\\\"", "\\\""},
        {"\\\\", "\\\\"},
        {"\\u0001", "\\u0001"},
        {"\\u001f", "\\u001f"},
        {"\\n", "\\u000a"},
        {"\\u0020", " "},
        {"\x7f", "\x7f"},
        {"\\/", "/"},
        {"!", "!"},
        {"\\u005d", "]"},
        {"\\u005b", "["},
        {"\\u0021", "!"},
        {"#", "#"},
        {"\\u0000", "\\u0000"},
    };
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    char in[256], want[256], a[128], b[128];
    size_t len, pos, si, i, ka, kb;

    (void)state;
    for (si = 0; si < nitems(sp); si++) {
        for (len = 1; len <= 20; len++) {
            for (pos = 0; pos < len; pos++) {
                for (i = ka = kb = 0; i < len; i++) {
                    ka += (size_t)snprintf(a + ka, sizeof(a) - ka, "%s",
                                           i == pos ? sp[si].in : "w");
                    kb += (size_t)snprintf(b + kb, sizeof(b) - kb, "%s",
                                           i == pos ? sp[si].out : "w");
                }
                snprintf(in, sizeof(in), "{\"name\":\"%s\"}", a);
                snprintf(want, sizeof(want), "{\"name\":\"%s\"}", b);
                expect_out(root, &g, in, want, 0, 0);
            }
        }
    }
    root_free(root);
}

/* Declared names are written escaped when they need it. */
static void
test_declared_names_escaped(void **state)
{
    struct scope_node *root =
        ROOT(leaf("q\"uote", SCOPE_T_INTEGER, P_BASE),
             leaf("tab\t", SCOPE_T_INTEGER, P_BASE),
             leaf("b\\s", SCOPE_T_INTEGER, P_BASE),
             leaf("\xc3\xa9t\xc3\xa9", SCOPE_T_INTEGER, P_BASE),
             leaf("plain", SCOPE_T_INTEGER, P_BASE));
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(root, &g,
               "{\"q\\\"uote\":1,\"tab\\t\":2,\"b\\\\s\":3,"
               "\"\xc3\xa9t\xc3\xa9\":4,\"plain\":5}",
               "{\"q\\\"uote\":1,\"tab\\u0009\":2,\"b\\\\s\":3,"
               "\"\xc3\xa9t\xc3\xa9\":4,\"plain\":5}",
               0, 0);
    root_free(root);
}

/* The audit's names: written and removed declared keys by name, once;
 * undeclared keys cut to 47 bytes, anything but printable ASCII (and the
 * comma) as '?'. */
static void
test_names_for_the_audit(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    struct filter *f = NULL;
    char *kept = NULL, *removed = NULL;
    static const char in[] =
        "{\"name\":\"a\",\"mobile\":\"1\",\"a,b\":1,\"x y\":2,"
        "\"\xc3\xa9\":3,\"t\\u0001\":4,\"a,b\":0,"
        "\"0123456789012345678901234567890123456789012345678901234\":5,"
        "\"zz\":{\"inner\":1},\"items\":[{\"k\":\"k\",\"q\":1}],"
        "\"name2\":1,\"mobile\":\"2\"}";
    static const char in2[] =
        "{\"name\":\"a\",\"mobile\":\"1\",\"a,b\":1,\"x y\":2,"
        "\"\xc3\xa9\":3,\"t\\u0001\":4,"
        "\"0123456789012345678901234567890123456789012345678901234\":5,"
        "\"zz\":{\"inner\":1},\"items\":[{\"k\":\"k\",\"q\":1}],"
        "\"name2\":1}";

    (void)state;
    /* a repeated key is refused before any name counts */
    assert_int_equal(filter_new(root, &g, NULL, NULL, NULL, &f), BRK_OK);
    assert_int_equal(filter_feed(f, in, strlen(in)), BRK_ERR_UPSTREAM_BAD);
    filter_free(f);
    assert_int_equal(filter_new(root, &g, NULL, NULL, NULL, &f), BRK_OK);
    assert_int_equal(filter_feed(f, in2, strlen(in2)), BRK_OK);
    assert_int_equal(filter_finish(f), BRK_OK);
    assert_int_equal(filter_names(f, &kept, &removed), BRK_OK);
    assert_string_equal(kept, "name,items,k");
    assert_string_equal(removed,
                        "mobile,a?b,x?y,??,t?,"
                        "01234567890123456789012345678901234567890123456,"
                        "zz,q,name2");
    brk_free(kept);
    brk_free(removed);
    filter_free(f);
    root_free(root);
}

static void
test_top_level_must_be_object(void **state)
{
    static const char *const bad[] = {
        "[]", "[{}]", "[{\"name\":\"a\"}]", "1", "\"s\"", "null", "true",
    };
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    size_t i;

    (void)state;
    for (i = 0; i < nitems(bad); i++)
        expect_err(root, &g, bad[i], BRK_ERR_UPSTREAM_BAD);
    root_free(root);
}

/*---- Limits ----*/

static void
test_depth_limit_exact(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    struct filter_limits lim = {3, 0, 0};
    struct filter_limits one = {1, 0, 0};

    (void)state;
    cur_limits = &lim;
    expect_out(root, &g, "{\"info\":{\"deep\":{\"x\":1}}}",
               "{\"info\":{\"deep\":{\"x\":1}}}", 0, 0);
    expect_err(root, &g, "{\"info\":{\"deep\":{\"x\":[]}}}",
               BRK_ERR_UPSTREAM_BAD);
    /* removed subtrees are counted too */
    expect_out(root, &g, "{\"a\":{\"b\":{}}}", "{}", 1, 0);
    expect_err(root, &g, "{\"a\":{\"b\":{\"c\":[]}}}", BRK_ERR_UPSTREAM_BAD);
    expect_err(root, &g, "{\"a\":[[[1]]]}", BRK_ERR_UPSTREAM_BAD);
    cur_limits = &one;
    expect_out(root, &g, "{\"name\":\"n\"}", "{\"name\":\"n\"}", 0, 0);
    expect_err(root, &g, "{\"tags\":[]}", BRK_ERR_UPSTREAM_BAD);
    root_free(root);
}

static void
test_default_depth_limit(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    char in[256];
    size_t i, d;

    (void)state;
    for (d = 31; d <= 33; d++) {
        /* the root object plus d - 1 nested arrays */
        i = 0;
        in[i++] = '{';
        memcpy(in + i, "\"zz\":", 5);
        i += 5;
        memset(in + i, '[', d - 1);
        i += d - 1;
        memset(in + i, ']', d - 1);
        i += d - 1;
        in[i++] = '}';
        in[i] = '\0';
        if (d <= 32)
            expect_out(root, &g, in, "{}", 1, 0);
        else
            expect_err(root, &g, in, BRK_ERR_UPSTREAM_BAD);
    }
    root_free(root);
}

static void
test_max_output_exact(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    const char *in = "{\"name\":\"abcdef\",\"junk\":\"zzzzzzzzzzzzzzzzzzzz\","
                     "\"count\":12}";
    const char *want = "{\"name\":\"abcdef\",\"count\":12}";
    /* the dropped record is written before it is cut back out */
    const char *in2 = "{\"name\":\"abc\",\"userlist\":[{\"name\":"
                      "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\"userid\":"
                      "\"out\"}]}";
    const char *want2 = "{\"name\":\"abc\",\"userlist\":[]}";
    struct filter_limits lim = {0, 0, 0};

    (void)state;
    cur_limits = &lim;
    lim.max_output = strlen(want);
    expect_out(root, &g, in, want, 1, 0);
    lim.max_output = strlen(want) - 1;
    expect_err(root, &g, in, BRK_ERR_TOOBIG);
    lim.max_output = strlen(want2);
    expect_out(root, &g, in2, want2, 0, 1);
    lim.max_output = strlen(want2) - 1;
    expect_err(root, &g, in2, BRK_ERR_TOOBIG);
    root_free(root);
}

static void
test_max_record_exact(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    /* held until the id: `{"name":"abcdefghij"` is 20 bytes; a second
     * record also holds its comma: `,{"name":"abcdefghijk"` is 22 */
    const char *in = "{\"userlist\":[{\"name\":\"abcdefghij\",\"userid\":"
                     "\"in1\"},{\"name\":\"abcdefghijk\",\"userid\":\"out\"}]}";
    const char *want = "{\"userlist\":[{\"name\":\"abcdefghij\",\"userid\":"
                       "\"in1\"}]}";
    struct filter_limits lim = {0, 0, 0};

    (void)state;
    cur_limits = &lim;
    lim.max_record = 22;
    expect_out(root, &g, in, want, 0, 1);
    lim.max_record = 21;
    expect_err(root, &g, in, BRK_ERR_TOOBIG);
    lim.max_record = 20;
    expect_err(root, &g, in, BRK_ERR_TOOBIG);
    /* a record decided at once holds nothing */
    lim.max_record = 2;
    expect_out(root, &g,
               "{\"userlist\":[{\"userid\":\"in1\",\"name\":\"abcdefghij\"}]}",
               "{\"userlist\":[{\"userid\":\"in1\",\"name\":\"abcdefghij\"}]}",
               0, 0);
    root_free(root);
}

/*---- Splits and allocation failures ----*/

static const char rich_doc[] =
    "{\"errcode\":0,\"errmsg\":\"ok\",\"name\":\"\\u4e2d\xe6\x96\x87\\n\","
    "\"userlist\":[{\"name\":\"a\\\"b\",\"userid\":\"in1\",\"department\":"
    "[1,2,3,4],\"mobile\":\"138\"},{\"userid\":\"out2\",\"x\":{\"y\":[1,2]}},"
    "{\"\\u0075serid\":\"in3\"}],\"members\":[{\"type\":2,\"userid\":\"out\"},"
    "{\"userid\":\"out\",\"type\":1}],\"rows\":[{\"n\":-0.5e-3,\"info\":{"
    "\"userid\":\"in9\"}},{\"n\":1}],\"customers\":[{\"follow_ids\":[\"out\","
    "\"in\"],\"external_contact\":{\"name\":\"\xf0\x9f\x98\x80\"}}],"
    "\"count\":123456789012345678901234567890,\"junk\":[true,false,null,{}]}";

static void
test_every_split_same_output(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);

    (void)state;
    expect_out(
        root, &g, rich_doc,
        "{\"errcode\":0,\"errmsg\":\"ok\",\"name\":\"\xe4\xb8\xad\xe6\x96\x87"
        "\\u000a\",\"userlist\":[{\"name\":\"a\\\"b\",\"userid\":\"in1\","
        "\"department\":[2,4]},{\"userid\":\"in3\"}],\"members\":[{\"type\":2,"
        "\"userid\":\"out\"}],\"rows\":[{}],\"customers\":[{\"follow_ids\":"
        "[\"in\"],\"external_contact\":{\"name\":\"\xf0\x9f\x98\x80\"}}],"
        "\"count\":123456789012345678901234567890}",
        4, 6);
    root_free(root);
}

/* A long string split across chunks makes the tokenizer buffer; many keys
 * grow the key index; escapes use the tokenizer's decode buffer. */
static char *
alloc_doc(void)
{
    char *d = brk_malloc(20000), *p;
    int i;

    assert_non_null(d);
    p = d;
    p += snprintf(p, 64, "{\"name\":\"");
    for (i = 0; i < 5000; i++)
        *p++ = (char)('a' + i % 26);
    p += snprintf(p, 64, "\\u00e9\",\"zz\":{");
    for (i = 0; i < 40; i++)
        p += snprintf(p, 64, "%s\"k%d\\n\":[%d]", i ? "," : "", i, i);
    p += snprintf(p, 200,
                  "},\"userlist\":[{\"name\":\"x\",\"userid\":\"in1\"},"
                  "{\"userid\":\"out\"}],\"count\":42}");
    return d;
}

static void
test_alloc_failure_loop(void **state)
{
    struct scope_node *root = record_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    char *doc = alloc_doc(), *want;
    struct run ref, r;
    unsigned long n;
    size_t chunk;
    int failed;

    (void)state;
    ref = run_split(root, &g, doc, strlen(doc), 0, 0);
    assert_int_equal(ref.err, BRK_OK);
    want = ref.out;
    /* the shared filter's run would take allocations of the count */
    shared_check = 0;
    for (chunk = 1; chunk <= 4096; chunk *= 64) {
        for (n = 1;; n++) {
            brk_alloc_fail_at(n);
            r = run_split(root, &g, doc, strlen(doc), chunk, 0);
            failed = brk_alloc_failed();
            brk_alloc_fail_at(0);
            if (!failed) {
                assert_int_equal(r.err, BRK_OK);
                assert_string_equal(r.out, want);
                brk_free(r.out);
                break;
            }
            if (r.err != BRK_ERR_NOMEM)
                fail_msg("chunk %zu fail at %lu: %s", chunk, n,
                         brk_strerror(r.err));
            assert_null(r.out);
            assert_true(n < 100000);
        }
        assert_true(n > 3);
    }
    brk_free(want);
    brk_free(doc);
    root_free(root);
}

static void
test_alloc_failure_in_new(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    struct filter *f;
    enum brk_err err;
    unsigned long n;
    int failed;

    (void)state;
    for (n = 1;; n++) {
        f = NULL;
        brk_alloc_fail_at(n);
        err = filter_new(root, &g, NULL, NULL, NULL, &f);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (!failed) {
            assert_int_equal(err, BRK_OK);
            break;
        }
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(f);
    }
    assert_true(n > 2);
    filter_free(f);
    root_free(root);
}

/*---- Reuse ----*/

/* A filter's whole result: output, counts, names, errcode. */
static void
result_text(struct filter *f, enum brk_err err, char *buf, size_t cap)
{
    const char *out = "-", *k = "-", *r = "-";
    size_t len = 1;
    long code = -12345;

    if (err == BRK_OK)
        err = filter_finish(f);
    if (err == BRK_OK)
        assert_int_equal(filter_names_get(f, &k, &r), BRK_OK);
    if (err == BRK_OK)
        err = filter_output(f, &out, &len);
    (void)filter_errcode(f, &code);
    snprintf(buf, cap, "%s %.*s s%lu d%lu [%s] [%s] %ld", brk_strerror(err),
             (int)len, out, filter_stripped(f), filter_dropped(f), k, r, code);
}

/* doc through a new filter and through f reset for the same (root, g):
 * the same result, returned (static). */
static const char *
expect_as_new(struct filter *f, const struct scope_node *root,
              const struct scope_grant *g, const char *doc)
{
    struct filter *n = NULL;
    static char got[1024];
    char want[1024];

    assert_int_equal(filter_new(root, g, test_range, NULL, NULL, &n), BRK_OK);
    result_text(n, filter_feed(n, doc, strlen(doc)), want, sizeof(want));
    filter_free(n);
    assert_int_equal(filter_reset(f, root, g, test_range, NULL), BRK_OK);
    result_text(f, filter_feed(f, doc, strlen(doc)), got, sizeof(got));
    assert_string_equal(got, want);
    return got;
}

/*
 * A tree rebuilt where the last one lay: the same node addresses, other
 * names, order and permissions. What a filter remembers by node (the
 * next-key guess, a name's text, the names noted for the audit) must not
 * survive a reset, or "b" is taken for the field that was "b" before.
 */
/* root as a map's endpoint root (tree: its serial) over n fields, which
 * the caller fills in place */
static void
flat_root(struct scope_node *root, struct scope_node *fields, size_t n,
          uint64_t tree)
{
    memset(root, 0, sizeof(*root));
    root->tree = tree;
    root->type = SCOPE_T_OBJECT;
    root->perm = SCOPE_PERM_ALWAYS;
    root->fields = fields;
    root->nfields = n;
}

static void
same_addresses(uint64_t tree1, uint64_t tree2)
{
    static struct scope_node fields[4], root;
    struct scope_grant g = grant_of(1, P_BASE);
    struct filter *f = NULL;
    char got[1024];

    flat_root(&root, fields, 3, tree1);
    fields[0] = leaf("a", SCOPE_T_STRING, P_BASE);
    fields[1] = leaf("b", SCOPE_T_STRING, P_BASE);
    fields[2] = leaf("c", SCOPE_T_INTEGER, P_BASE);
    assert_int_equal(filter_new(&root, &g, test_range, NULL, NULL, &f), BRK_OK);
    result_text(f, filter_feed(f, "{\"a\":\"x\",\"b\":\"y\",\"c\":1}", 23), got,
                sizeof(got));
    assert_string_equal(got,
                        "ok {\"a\":\"x\",\"b\":\"y\",\"c\":1} s0 d0 [a,b,c] "
                        "[] -12345");

    root.tree = tree2;
    root.nfields = 4;
    fields[0] = leaf("aa", SCOPE_T_STRING, P_BASE);
    fields[1] = leaf("ab", SCOPE_T_STRING, P_SENS);
    fields[2] = leaf("b", SCOPE_T_INTEGER, P_BASE);
    fields[3] = leaf("c", SCOPE_T_STRING, P_BASE);
    assert_string_equal(
        expect_as_new(f, &root, &g,
                      "{\"aa\":\"x\",\"b\":2,\"c\":\"z\",\"ab\":\"s\"}"),
        "ok {\"aa\":\"x\",\"b\":2,\"c\":\"z\"} s1 d0 "
        "[aa,b,c] [ab] -12345");
    filter_free(f);
}

/* Trees built by hand (tree 0: nothing is kept from one document to the
 * next), and a map's trees, whose serial changes with the map */
static void
test_reset_same_addresses(void **state)
{
    (void)state;
    same_addresses(0, 0);
    same_addresses(7, 8);
}

/*
 * The text of the names is given again for the same noted lists on the
 * same tree, and only then: a repeated document, one that differs only by
 * an undeclared key, and the same node renamed under a new serial.
 */
static void
test_names_text_reused_only_for_the_same_lists(void **state)
{
    static struct scope_node fields[2], root;
    struct scope_grant g = grant_of(1, P_BASE);
    struct filter *f = NULL;
    int i;

    (void)state;
    flat_root(&root, fields, 2, 42);
    fields[0] = leaf("a", SCOPE_T_STRING, P_BASE);
    fields[1] = leaf("s", SCOPE_T_STRING, P_SENS);
    assert_int_equal(filter_new(&root, &g, test_range, NULL, NULL, &f), BRK_OK);
    for (i = 0; i < 2; i++)
        assert_string_equal(
            expect_as_new(f, &root, &g, "{\"a\":\"x\",\"u\":1}"),
            "ok {\"a\":\"x\"} s1 d0 [a] [u] -12345");
    assert_string_equal(expect_as_new(f, &root, &g, "{\"a\":\"x\",\"v\":1}"),
                        "ok {\"a\":\"x\"} s1 d0 [a] [v] -12345");
    assert_string_equal(
        expect_as_new(f, &root, &g, "{\"s\":\"y\",\"a\":\"x\"}"),
        "ok {\"a\":\"x\"} s1 d0 [a] [s] -12345");
    assert_string_equal(
        expect_as_new(f, &root, &g, "{\"a\":\"x\",\"s\":\"y\"}"),
        "ok {\"a\":\"x\"} s1 d0 [a] [s] -12345");
    /* the same node, another name, the next map */
    root.tree = 43;
    fields[0] = leaf("b", SCOPE_T_STRING, P_BASE);
    assert_string_equal(
        expect_as_new(f, &root, &g, "{\"b\":\"x\",\"s\":\"y\"}"),
        "ok {\"b\":\"x\"} s1 d0 [b] [s] -12345");
    filter_free(f);
}

/*
 * Fields far enough apart to share a slot of the filter's per-node caches
 * (130 fields: the first and the 129th), kept in every item: each is named
 * once, wherever the other came between.
 */
static void
test_names_once_when_nodes_share_a_slot(void **state)
{
    static char names[130][8];
    struct scope_node fs[130], *root;
    struct scope_grant g = grant_of(1, P_BASE);
    struct filter *f = NULL;
    const char *k, *r;
    size_t i;

    (void)state;
    for (i = 0; i < 130; i++) {
        snprintf(names[i], sizeof(names[i]), "f%03zu", i);
        fs[i] = leaf(names[i], SCOPE_T_INTEGER, P_BASE);
    }
    root = ROOT(array("items", P_BASE,
                      object_n(NULL, P_BASE, SCOPE_REC_NONE, NULL, 130, fs)));
    assert_int_equal(filter_new(root, &g, test_range, NULL, NULL, &f), BRK_OK);
    for (i = 0; i < 2; i++) {
        const char *doc = "{\"items\":[{\"f000\":1,\"f128\":2},"
                          "{\"f128\":3,\"f000\":4},{\"f000\":5}]}";

        assert_int_equal(filter_reset(f, root, &g, test_range, NULL), BRK_OK);
        assert_int_equal(filter_feed(f, doc, strlen(doc)), BRK_OK);
        assert_int_equal(filter_finish(f), BRK_OK);
        assert_int_equal(filter_names_get(f, &k, &r), BRK_OK);
        assert_string_equal(k, "items,f000,f128");
        assert_string_equal(r, "");
    }
    filter_free(f);
    root_free(root);
}

/*
 * On one tree (the same serial) what is learned of the tree is kept from
 * one document to the next, and nothing of a document: a name removed or
 * kept in every document is named in every one, and only there.
 */
static void
test_reset_same_tree_names_each_document(void **state)
{
    static struct scope_node fields[3], root;
    struct scope_grant g = grant_of(1, P_BASE);
    struct filter *f = NULL;
    int i;

    (void)state;
    flat_root(&root, fields, 3, 42);
    fields[0] = leaf("a", SCOPE_T_STRING, P_BASE);
    fields[1] = leaf("b", SCOPE_T_INTEGER, P_BASE);
    fields[2] = leaf("s", SCOPE_T_STRING, P_SENS);
    assert_int_equal(filter_new(&root, &g, test_range, NULL, NULL, &f), BRK_OK);
    for (i = 0; i < 3; i++) {
        assert_string_equal(
            expect_as_new(f, &root, &g, "{\"a\":\"x\",\"s\":\"y\",\"u\":1}"),
            "ok {\"a\":\"x\"} s2 d0 [a] [s,u] -12345");
        assert_string_equal(expect_as_new(f, &root, &g, "{\"b\":1}"),
                            "ok {\"b\":1} s0 d0 [b] [] -12345");
    }
    filter_free(f);
}

/* After an error midway (malformed, a repeated key, too deep, too big) or
 * a body left half read, for one grant and range, the next document for
 * another grant comes out as from a new filter. */
static void
test_reset_after_error_midway(void **state)
{
    static const char *const first[] = {
        "{\"name\":\"a\",\"mobile\":\"m\",\"info\":{\"a\":1,",
        "{\"name\":\"a\",\"name\":\"b\"}",
        "{\"errcode\":40001,\"info\":{\"deep\":{\"x\":[[[[[[[[[[[[[[[[[[[[[[["
        "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}}",
        "{\"items\":[{\"k\":\"\\ud800\"}]}",
        "{\"errcode\":0,\"name\":\"a\",\"tags\":[\"t1\",\"t2\"],\"mobile\":\"1",
        "[1]",
    };
    struct scope_node *basic = basic_tree(), *rec = record_tree();
    struct scope_grant g1 = grant_of(2, P_BASE, P_SENS),
                       g2 = grant_of(1, P_BASE);
    struct filter *f = NULL;
    enum brk_err err;
    size_t i;

    (void)state;
    assert_int_equal(filter_new(basic, &g1, test_range, NULL, NULL, &f),
                     BRK_OK);
    for (i = 0; i < nitems(first); i++) {
        assert_int_equal(filter_reset(f, basic, &g1, test_range, NULL), BRK_OK);
        /* an error or not: it stops there */
        err = filter_feed(f, first[i], strlen(first[i]));
        assert_true(err == BRK_OK || err == BRK_ERR_UPSTREAM_BAD);
        expect_as_new(f, rec, &g2,
                      "{\"errcode\":0,\"name\":\"n\",\"userlist\":[{\"userid\":"
                      "\"in1\",\"mobile\":\"m\",\"name\":\"x\"},{\"userid\":"
                      "\"out\"}],\"dept_ids\":[1,2,3]}");
        expect_as_new(f, basic, &g2,
                      "{\"errcode\":7,\"name\":\"n\",\"mobile\":\"m\","
                      "\"info\":{\"b\":\"s\",\"deep\":{\"x\":1}},\"zz\":1}");
    }
    filter_free(f);
    root_free(basic);
    root_free(rec);
}

/* A cleared filter refuses everything until it is reset with a tree. */
static void
test_cleared_refuses(void **state)
{
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    struct filter *f = NULL;
    const char *o;
    char *out = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(filter_new(root, &g, NULL, NULL, NULL, &f), BRK_OK);
    assert_int_equal(filter_feed(f, "{\"name\":\"a\"}", 12), BRK_OK);
    assert_int_equal(filter_finish(f), BRK_OK);
    filter_clear(f);
    filter_clear(f);
    filter_clear(NULL);
    assert_int_equal(filter_output(f, &o, &len), BRK_ERR_INVAL);
    assert_int_equal(filter_take_output(f, &out, &len), BRK_ERR_INVAL);
    assert_int_equal(filter_feed(f, "{}", 2), BRK_ERR_INVAL);
    assert_int_equal(filter_finish(f), BRK_ERR_INVAL);
    assert_int_equal(filter_stripped(f), 0);
    assert_int_equal(filter_reset(f, NULL, &g, NULL, NULL), BRK_ERR_INVAL);
    assert_int_equal(filter_feed(f, "{}", 2), BRK_ERR_INVAL);
    assert_int_equal(filter_reset(f, root, NULL, NULL, NULL), BRK_ERR_INVAL);
    assert_int_equal(filter_feed(f, "{}", 2), BRK_ERR_INVAL);
    assert_int_equal(filter_reset(NULL, root, &g, NULL, NULL), BRK_ERR_INVAL);
    assert_null(out);
    assert_int_equal(filter_reset(f, root, &g, NULL, NULL), BRK_OK);
    assert_int_equal(filter_feed(f, "{\"name\":\"b\"}", 12), BRK_OK);
    assert_int_equal(filter_finish(f), BRK_OK);
    assert_int_equal(filter_output(f, &o, &len), BRK_OK);
    assert_string_equal(o, "{\"name\":\"b\"}");
    /* borrowed, then taken: the borrowed view is gone with it */
    assert_int_equal(filter_take_output(f, &out, &len), BRK_OK);
    assert_int_equal(filter_output(f, &o, &len), BRK_ERR_INVAL);
    brk_free(out);
    filter_free(f);
    root_free(root);
}

/* A reset filter that kept its buffers filters a user/get-sized reply
 * without a single allocation; one whose output grew past 64 KiB has let
 * it go and needs one again. */
static void
test_reset_keeps_buffers(void **state)
{
    static const char doc[] =
        "{\"errcode\":0,\"errmsg\":\"ok\",\"name\":\"n\",\"mobile\":\"m\","
        "\"info\":{\"a\":\"x\",\"b\":\"y\",\"deep\":{\"x\":1},\"q\":2},"
        "\"tags\":[\"a\",\"b\\u00e9\"],\"items\":[{\"k\":\"k1\",\"v\":1},"
        "{\"k\":\"k2\",\"v\":2}],\"zz\":{\"a\":[1,2,3]}}";
    struct scope_node *root = basic_tree();
    struct scope_grant g = grant_of(1, P_BASE);
    struct filter *f = NULL;
    const char *o, *k, *r;
    char *big;
    size_t len, i, n = 100 * 1024;
    int failed;

    (void)state;
    assert_int_equal(filter_new(root, &g, NULL, NULL, NULL, &f), BRK_OK);
    for (i = 0; i < 2; i++) {
        brk_alloc_fail_at(i == 0 ? 0 : 1);
        assert_int_equal(filter_reset(f, root, &g, NULL, NULL), BRK_OK);
        assert_int_equal(filter_feed(f, doc, 60), BRK_OK);
        assert_int_equal(filter_feed(f, doc + 60, strlen(doc) - 60), BRK_OK);
        assert_int_equal(filter_finish(f), BRK_OK);
        assert_int_equal(filter_names_get(f, &k, &r), BRK_OK);
        assert_int_equal(filter_output(f, &o, &len), BRK_OK);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        assert_false(failed);
        assert_string_equal(k,
                            "errcode,errmsg,name,info,a,deep,x,tags,items,k");
        assert_string_equal(r, "mobile,b,v,q,zz");
        assert_string_equal(o,
                            "{\"errcode\":0,\"errmsg\":\"ok\",\"name\":\"n\","
                            "\"info\":{\"a\":\"x\",\"deep\":{\"x\":1}},"
                            "\"tags\":[\"a\",\"b\xc3\xa9\"],\"items\":"
                            "[{\"k\":\"k1\"},{\"k\":\"k2\"}]}");
    }

    /* a 100 KiB output left in the filter */
    big = brk_malloc(n + 32);
    assert_non_null(big);
    memcpy(big, "{\"name\":\"", 9);
    memset(big + 9, 'x', n);
    memcpy(big + 9 + n, "\"}", 3);
    assert_int_equal(filter_reset(f, root, &g, NULL, NULL), BRK_OK);
    assert_int_equal(filter_feed(f, big, strlen(big)), BRK_OK);
    assert_int_equal(filter_finish(f), BRK_OK);
    brk_free(big);
    assert_int_equal(filter_reset(f, root, &g, NULL, NULL), BRK_OK);
    brk_alloc_fail_at(1);
    assert_int_equal(filter_feed(f, doc, strlen(doc)), BRK_ERR_NOMEM);
    brk_alloc_fail_at(0);
    expect_as_new(f, root, &g, doc);
    filter_free(f);
    root_free(root);
}

/*---- Data cases ----*/

struct dcase {
    char *name;
    char *dir;
};

static const char *data_dir;
static const char *src_root = ".";
static struct dcase *cases;
static size_t ncases;
static int data_dir_ok;

/* Read dir/name into a NUL-terminated buffer (brk_free), or NULL. */
static char *
slurp(const char *dir, const char *name, size_t *len)
{
    char path[PATH_MAX];
    FILE *fp;
    char *buf = NULL;
    long sz;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    if (fseek(fp, 0, SEEK_END) == 0 && (sz = ftell(fp)) >= 0 &&
        fseek(fp, 0, SEEK_SET) == 0) {
        buf = brk_malloc((size_t)sz + 1);
        if (buf != NULL && fread(buf, 1, (size_t)sz, fp) != (size_t)sz) {
            brk_free(buf);
            buf = NULL;
        }
        if (buf != NULL) {
            buf[sz] = '\0';
            if (len != NULL)
                *len = (size_t)sz;
        }
    }
    fclose(fp);
    return buf;
}

static int
exists(const char *dir, const char *name)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* The visible range of a case: ids of members, departments, tags. */
struct case_range {
    json_t *members, *departments, *tags;
};

static int
in_ids(const json_t *list, const char *id, size_t len, int numeric)
{
    size_t i;
    json_t *v;
    char buf[64];
    long long want;

    if (numeric) {
        if (len >= sizeof(buf))
            return 0;
        memcpy(buf, id, len);
        buf[len] = '\0';
        want = strtoll(buf, NULL, 10);
    }
    json_array_foreach(list, i, v)
    {
        if (numeric && json_is_integer(v) && json_integer_value(v) == want)
            return 1;
        if (!numeric && json_is_string(v) && json_string_length(v) == len &&
            memcmp(json_string_value(v), id, len) == 0)
            return 1;
    }
    return 0;
}

/* Follow users, chat members and chat owners are members. */
static int
case_in_range(enum scope_record kind, const char *id, size_t len, void *arg)
{
    const struct case_range *r = arg;

    switch (kind) {
    case SCOPE_REC_DEPARTMENT:
        return in_ids(r->departments, id, len, 1);
    case SCOPE_REC_TAG:
        return in_ids(r->tags, id, len, 1);
    default:
        return in_ids(r->members, id, len, 0);
    }
}

/* Is out an order-keeping part of in (keys and elements in order)? */
static int
ordered_subset(const json_t *out, const json_t *in)
{
    const char *k;
    json_t *v, *iv;
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
            if (it == NULL)
                return 0;
            iv = json_object_iter_value(it);
            if (!ordered_subset(v, iv))
                return 0;
            it = json_object_iter_next((json_t *)(uintptr_t)in, it);
        }
        return 1;
    }
    if (json_is_array(out)) {
        if (!json_is_array(in))
            return 0;
        j = 0;
        json_array_foreach(out, i, v)
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

static void
load_grant(const char *dir, struct scope_grant *g)
{
    char *text = slurp(dir, "grant", NULL), *line, *save = NULL, *e;

    assert_non_null(text);
    memset(g, 0, sizeof(*g));
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        while (*line == ' ' || *line == '\t')
            line++;
        e = line + strlen(line);
        while (e > line && (e[-1] == ' ' || e[-1] == '\r' || e[-1] == '\t'))
            *--e = '\0';
        if (*line == '\0' || *line == '#')
            continue;
        if (scope_grant_add_name(g, line) != BRK_OK)
            fail_msg("%s/grant: unknown permission %s", dir, line);
    }
    brk_free(text);
}

static void
load_limits(const char *dir, struct filter_limits *lim)
{
    char *text = slurp(dir, "limits", NULL), *line, *save = NULL, *end;
    char name[32];
    unsigned long long v;

    memset(lim, 0, sizeof(*lim));
    if (text == NULL)
        return;
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (sscanf(line, "%31s", name) != 1 || name[0] == '#')
            continue;
        errno = 0;
        v = strtoull(line + strlen(name), &end, 10);
        if (errno != 0)
            fail_msg("%s/limits: bad line %s", dir, line);
        if (strcmp(name, "max_depth") == 0)
            lim->max_depth = (size_t)v;
        else if (strcmp(name, "max_output") == 0)
            lim->max_output = (size_t)v;
        else if (strcmp(name, "max_record") == 0)
            lim->max_record = (size_t)v;
        else
            fail_msg("%s/limits: unknown limit %s", dir, name);
    }
    brk_free(text);
}

static const char *
trim(char *s)
{
    char *e = s + strlen(s);

    while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' '))
        *--e = '\0';
    while (*s == ' ')
        s++;
    return s;
}

static void
test_data_case(void **state)
{
    const struct dcase *c = *state;
    struct scope_map *map = NULL;
    struct brk_errinfo info;
    const struct scope_endpoint *ep = NULL;
    struct scope_grant g;
    struct filter_limits lim;
    struct case_range range;
    json_t *rj, *want_j = NULL, *got_j = NULL, *in_j = NULL;
    json_error_t jerr;
    char *input, *endpoint, *errname, *expected, *counts;
    char *want_s = NULL, *got_s = NULL, path[PATH_MAX];
    unsigned long ws = 0, wd = 0;
    size_t inlen = 0, chunk;
    struct run r;

    memset(&info, 0, sizeof(info));
    if (exists(c->dir, "scope.json")) {
        snprintf(path, sizeof(path), "%s/scope.json", c->dir);
        if (scope_map_load_file(path, &map, &info) != BRK_OK)
            fail_msg("%s: %s", c->name, info.msg);
        assert_int_equal(scope_map_count(map), 1);
        ep = scope_map_at(map, 0);
    } else {
        endpoint = slurp(c->dir, "endpoint", NULL);
        if (endpoint == NULL)
            fail_msg("%s: neither scope.json nor endpoint", c->name);
        snprintf(path, sizeof(path), "%s/scopes", src_root);
        if (scope_map_load(path, &map, &info) != BRK_OK)
            fail_msg("%s: scopes: %s", c->name, info.msg);
        ep = scope_map_find(map, trim(endpoint));
        if (ep == NULL)
            fail_msg("%s: no endpoint %s in scopes/", c->name, trim(endpoint));
        brk_free(endpoint);
    }
    load_grant(c->dir, &g);
    load_limits(c->dir, &lim);
    {
        char *rtext = slurp(c->dir, "range", NULL);

        assert_non_null(rtext);
        rj = json_loads(rtext, JSON_REJECT_DUPLICATES, &jerr);
        brk_free(rtext);
        if (rj == NULL)
            fail_msg("%s/range: %s", c->name, jerr.text);
    }
    range.members = json_object_get(rj, "members");
    range.departments = json_object_get(rj, "departments");
    range.tags = json_object_get(rj, "tags");
    if (!json_is_array(range.members) || !json_is_array(range.departments) ||
        !json_is_array(range.tags) || json_object_size(rj) != 3)
        fail_msg("%s/range: want {\"members\":[],\"departments\":[],"
                 "\"tags\":[]}",
                 c->name);
    input = slurp(c->dir, "input.json", &inlen);
    assert_non_null(input);
    errname = slurp(c->dir, "error", NULL);
    expected = slurp(c->dir, "expected.json", NULL);
    counts = slurp(c->dir, "counts", NULL);
    if ((errname == NULL) == (expected == NULL))
        fail_msg("%s: want either error or expected.json", c->name);

    for (chunk = 0; chunk <= 7; chunk += 7) {
        struct filter *f = NULL;
        size_t off = 0, n;

        memset(&r, 0, sizeof(r));
        assert_int_equal(
            filter_new(&ep->root, &g, case_in_range, &range, &lim, &f), BRK_OK);
        while (off < inlen && r.err == BRK_OK) {
            n = chunk == 0 || inlen - off < chunk ? inlen - off : chunk;
            r.err = filter_feed(f, input + off, n);
            off += n;
        }
        if (r.err == BRK_OK)
            r.err = filter_finish(f);
        if (r.err == BRK_OK)
            r.err = filter_take_output(f, &r.out, &r.len);
        r.stripped = filter_stripped(f);
        r.dropped = filter_dropped(f);
        if (lim.max_depth == 0 && lim.max_output == 0 && lim.max_record == 0) {
            struct run_more fm;
            char *k = NULL, *rm = NULL;

            memset(&fm, 0, sizeof(fm));
            if (!filter_errcode(f, &fm.errcode))
                fm.errcode = -12345;
            if (r.err == BRK_OK) {
                assert_int_equal(filter_names(f, &k, &rm), BRK_OK);
                fm.kept = k;
                fm.removed = rm;
            }
            check_shared(&ep->root, &g, case_in_range, &range, input, inlen,
                         chunk, 0, &r, &fm);
            brk_free(k);
            brk_free(rm);
        }
        filter_free(f);
        if (errname != NULL) {
            if (strcmp(brk_strerror(r.err), trim(errname)) != 0)
                fail_msg("%s: got %s, want %s", c->name, brk_strerror(r.err),
                         trim(errname));
            continue;
        }
        if (r.err != BRK_OK)
            fail_msg("%s: %s", c->name, brk_strerror(r.err));
        if (counts == NULL ||
            sscanf(counts, "stripped %lu dropped %lu", &ws, &wd) != 2)
            fail_msg("%s/counts: want \"stripped N\\ndropped M\"", c->name);
        want_j = json_loads(expected, JSON_REJECT_DUPLICATES, &jerr);
        if (want_j == NULL)
            fail_msg("%s/expected.json: %s", c->name, jerr.text);
        got_j = json_loadb(r.out, r.len, JSON_REJECT_DUPLICATES, &jerr);
        if (got_j == NULL)
            fail_msg("%s: output is not JSON (%s): %s", c->name, jerr.text,
                     r.out);
        want_s = json_dumps(want_j, JSON_COMPACT | JSON_ENSURE_ASCII);
        got_s = json_dumps(got_j, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (!json_equal(want_j, got_j) || strcmp(want_s, got_s) != 0)
            fail_msg("%s:\nwant %s\ngot  %s", c->name, want_s, got_s);
        in_j = json_loadb(input, inlen, JSON_REJECT_DUPLICATES, NULL);
        if (in_j == NULL || !ordered_subset(got_j, in_j))
            fail_msg("%s: output keys or elements out of input order", c->name);
        if (r.stripped != ws || r.dropped != wd)
            fail_msg("%s: stripped %lu dropped %lu, want %lu %lu", c->name,
                     r.stripped, r.dropped, ws, wd);
        free(want_s);
        free(got_s);
        json_decref(want_j);
        json_decref(got_j);
        json_decref(in_j);
        brk_free(r.out);
    }
    json_decref(rj);
    brk_free(input);
    brk_free(errname);
    brk_free(expected);
    brk_free(counts);
    scope_map_free(map);
}

static void
test_data_dir_present(void **state)
{
    (void)state;
    if (!data_dir_ok)
        fail_msg("data directory %s is missing or unreadable", data_dir);
    if (ncases == 0)
        fail_msg("no cases in %s", data_dir);
}

static int
case_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dcase *)a)->name,
                  ((const struct dcase *)b)->name);
}

static void
collect_cases(void)
{
    char path[PATH_MAX];
    struct dirent *de;
    struct stat st;
    DIR *d;
    size_t cap = 0;
    struct dcase *grown;

    d = opendir(data_dir);
    if (d == NULL)
        return;
    data_dir_ok = 1;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", data_dir, de->d_name);
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        if (ncases == cap) {
            cap = cap ? cap * 2 : 32;
            grown = brk_realloc(cases, cap * sizeof(*cases));
            if (grown == NULL)
                abort();
            cases = grown;
        }
        cases[ncases].name = brk_strdup(de->d_name);
        cases[ncases].dir = brk_strdup(path);
        if (cases[ncases].name == NULL || cases[ncases].dir == NULL)
            abort();
        ncases++;
    }
    closedir(d);
    if (ncases > 0)
        qsort(cases, ncases, sizeof(*cases), case_cmp);
}

#define T(f) cmocka_unit_test_setup(f, reset)

static const struct CMUnitTest api_tests[] = {
    T(test_new_rejects_null),
    T(test_reset_same_addresses),
    T(test_reset_same_tree_names_each_document),
    T(test_names_once_when_nodes_share_a_slot),
    T(test_names_text_reused_only_for_the_same_lists),
    T(test_reset_after_error_midway),
    T(test_cleared_refuses),
    T(test_reset_keeps_buffers),
    T(test_call_order),
    T(test_errcode),
    T(test_token_limit),
    T(test_errors_are_sticky),
    T(test_declared_keys_pass),
    T(test_whitespace_is_not_copied),
    T(test_unknown_keys_removed),
    T(test_never_removed_whatever_the_grant),
    T(test_ungranted_removed),
    T(test_removed_subtree_counts_once),
    T(test_wrong_types_removed),
    T(test_null_is_a_wrong_type),
    T(test_null_each_counted),
    T(test_integer_versus_number),
    T(test_numbers_copied_as_written),
    T(test_booleans),
    T(test_nested_objects),
    T(test_arrays),
    T(test_empty_containers_kept),
    T(test_escaped_key_is_the_same_key),
    T(test_strings_reencoded),
    T(test_repeated_key),
    T(test_repeated_key_in_removed_subtree),
    T(test_repeated_key_in_dropped_record),
    T(test_many_keys),
    T(test_many_declared_fields),
    T(test_record_id_first_or_last),
    T(test_record_id_missing_or_mistyped),
    T(test_dropped_records_leave_no_commas),
    T(test_nested_records),
    T(test_department_and_tag_records),
    T(test_id_lists),
    T(test_two_level_record_id),
    T(test_chat_members),
    T(test_customers),
    T(test_chat_record),
    T(test_no_range_callback_keeps_records),
    T(test_malformed_json),
    T(test_truncated_anywhere),
    T(test_bad_utf8),
    T(test_bad_surrogate_escapes),
    T(test_nul_in_key),
    T(test_keys_differing_in_one_byte),
    T(test_near_miss_of_declared_name),
    T(test_nul_anywhere_in_key),
    T(test_three_byte_utf8_edges),
    T(test_utf8_checked_at_every_place),
    T(test_escapes_at_every_place),
    T(test_declared_names_escaped),
    T(test_names_for_the_audit),
    T(test_top_level_must_be_object),
    T(test_depth_limit_exact),
    T(test_default_depth_limit),
    T(test_max_output_exact),
    T(test_max_record_exact),
    T(test_every_split_same_output),
    T(test_alloc_failure_loop),
    T(test_alloc_failure_in_new),
    T(test_data_dir_present),
};

int
main(void)
{
    static char dirbuf[PATH_MAX];
    struct CMUnitTest *all;
    const char *env = getenv("FILTER_DATA");
    const char *root = getenv("BROKER_SRCDIR");
    size_t i, n;
    int rc;

    if (root != NULL && root[0] != '\0')
        src_root = root;
    if (env != NULL && env[0] != '\0') {
        data_dir = env;
    } else {
        snprintf(dirbuf, sizeof(dirbuf), "%s/%s", src_root, DATA_DIR_DEFAULT);
        data_dir = dirbuf;
    }
    collect_cases();

    /* the fixed tests, then one test per case directory */
    n = nitems(api_tests) + ncases;
    all = brk_calloc(n, sizeof(*all));
    if (all == NULL)
        abort();
    memcpy(all, api_tests, sizeof(api_tests));
    for (i = 0; i < ncases; i++) {
        all[nitems(api_tests) + i].name = cases[i].name;
        all[nitems(api_tests) + i].test_func = test_data_case;
        all[nitems(api_tests) + i].setup_func = reset;
        all[nitems(api_tests) + i].initial_state = &cases[i];
    }
    rc = _cmocka_run_group_tests("filter", all, n, NULL, NULL);
    filter_free(shared);
    for (i = 0; i < ncases; i++) {
        brk_free(cases[i].dir);
        brk_free(cases[i].name);
    }
    brk_free(cases);
    brk_free(all);
    return rc;
}
