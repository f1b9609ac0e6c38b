/*
 * The filter's exact results pinned: a digest of everything a run gives
 * (result code, output bytes, counts, audit names) for every input of
 * the filter's fuzz corpus and for generated replies (the benchmark's
 * 20,000-member user/list and smaller directory and customer replies
 * under several grants and ranges), compared with the digests recorded in
 * tests/unit/filter_golden.txt. The filter's tests check what the output
 * means; this one catches any change in its bytes, so work on the
 * filter's speed can show it changed nothing.
 *
 * A change meant to alter the output records new digests:
 *   FILTER_GOLDEN_WRITE=1 ./build/tests/test_filter_golden
 * rewrites the file (run from the source tree); review its diff.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "broker.h"
#include "filter.h"

#define GOLDEN_FILE   "tests/unit/filter_golden.txt"
#define CORPUS_DIR    "tests/fuzz/corpus/filter"
#define CORPUS_MIN    20
#define INPUT_MAX     (1024 * 1024)
#define GOLDEN_MAX    4096
#define NAME_MAX_LEN  128
#define BENCH_SEED    20240601
#define BENCH_MEMBERS 20000
#define BENCH_CHUNK   16384

static char current[4096];

#define FUZZ_FAIL() fail_msg("fuzz check failed on %s", current)

#define LLVMFuzzerTestOneInput fuzz_one_filter
#include "../fuzz/fuzz_filter.c"
#undef LLVMFuzzerTestOneInput

#include "../../mocks/fixture.c"

/*---- Digests ----*/

struct digest {
    uint64_t h;
};

static void
dg_add(struct digest *d, const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t i;

    for (i = 0; i < n; i++)
        d->h = (d->h ^ s[i]) * 1099511628211ULL;
}

static void
dg_num(struct digest *d, unsigned long long v)
{
    dg_add(d, &v, sizeof(v));
}

static void
dg_str(struct digest *d, const char *s)
{
    if (s == NULL) {
        dg_num(d, ~0ULL);
        return;
    }
    dg_num(d, strlen(s));
    dg_add(d, s, strlen(s));
}

/* Everything one run gave. */
static uint64_t
result_digest(const struct flt_result *r)
{
    struct digest d = {1469598103934665603ULL};

    dg_num(&d, (unsigned long long)r->err);
    dg_num(&d, r->len);
    if (r->len > 0)
        dg_add(&d, r->out, r->len);
    if (r->err == BRK_OK) {
        dg_num(&d, r->stripped);
        dg_num(&d, r->dropped);
        dg_str(&d, r->kept);
        dg_str(&d, r->removed);
    }
    return d.h;
}

/*---- The recorded digests ----*/

struct golden {
    char name[NAME_MAX_LEN];
    uint64_t h;
};

static struct golden known[GOLDEN_MAX];
static size_t nknown;
static int writing;
static struct golden seen[GOLDEN_MAX];
static size_t nseen;

static void
golden_load(void)
{
    FILE *fp;
    char line[512], name[NAME_MAX_LEN];
    unsigned long long h;

    nknown = 0;
    if (writing)
        return;
    fp = fopen(GOLDEN_FILE, "r");
    if (fp == NULL)
        fail_msg("%s: %s", GOLDEN_FILE, strerror(errno));
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%127s %llx", name, &h) != 2 || nknown == GOLDEN_MAX)
            fail_msg("%s: bad line: %s", GOLDEN_FILE, line);
        snprintf(known[nknown].name, NAME_MAX_LEN, "%s", name);
        known[nknown++].h = h;
    }
    fclose(fp);
}

static const struct golden *
golden_find(const char *name)
{
    size_t i;

    for (i = 0; i < nknown; i++)
        if (strcmp(known[i].name, name) == 0)
            return &known[i];
    return NULL;
}

/*
 * Check (or, when writing, record) the digest of name. Returns 1 when it
 * was compared (or recorded), 0 when the file has no digest for it.
 */
static int
golden_check(const char *name, uint64_t h)
{
    const struct golden *g;

    if (writing) {
        assert_true(nseen < GOLDEN_MAX);
        snprintf(seen[nseen].name, NAME_MAX_LEN, "%s", name);
        seen[nseen++].h = h;
        return 1;
    }
    g = golden_find(name);
    if (g == NULL)
        return 0;
    if (g->h != h)
        fail_msg("%s: digest %016llx, recorded %016llx", name,
                 (unsigned long long)h, (unsigned long long)g->h);
    return 1;
}

static int
golden_cmp(const void *a, const void *b)
{
    return strcmp(((const struct golden *)a)->name,
                  ((const struct golden *)b)->name);
}

static void
golden_write(void)
{
    FILE *fp;
    size_t i;

    qsort(seen, nseen, sizeof(seen[0]), golden_cmp);
    fp = fopen(GOLDEN_FILE, "w");
    if (fp == NULL)
        fail_msg("%s: %s", GOLDEN_FILE, strerror(errno));
    fprintf(fp, "# Digests of the filter's results (test_filter_golden.c):"
                " NAME DIGEST.\n");
    for (i = 0; i < nseen; i++)
        fprintf(fp, "%s %016llx\n", seen[i].name,
                (unsigned long long)seen[i].h);
    assert_int_equal(fclose(fp), 0);
}

/*---- The fuzz corpus ----*/

static uint8_t *
read_input(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *buf;
    size_t n;

    if (fp == NULL)
        return NULL;
    buf = malloc(INPUT_MAX + 1);
    if (buf == NULL) {
        fclose(fp);
        return NULL;
    }
    n = fread(buf, 1, INPUT_MAX + 1, fp);
    fclose(fp);
    if (n > INPUT_MAX) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Digest of one corpus input: fed whole, and in the harness's pieces. */
static int
corpus_digest(const uint8_t *data, size_t size, uint64_t *out)
{
    struct flt_case c;
    struct flt_result whole, split;

    if (!flt_decode(data, size, &c))
        return 0;
    flt_run(NULL, &c.ep->root, &c.g, &c.range, c.limp, c.doc, c.dlen, 0,
            &whole);
    flt_run(NULL, &c.ep->root, &c.g, &c.range, c.limp, c.doc, c.dlen, c.rng,
            &split);
    *out = result_digest(&whole);
    if (result_digest(&split) != *out)
        fail_msg("%s: fed in pieces, another result", current);
    flt_result_free(&whole);
    flt_result_free(&split);
    scope_map_free(c.own);
    return 1;
}

static void
test_corpus(void **state)
{
    struct dirent *de;
    struct stat st;
    uint8_t *buf;
    size_t len = 0, compared = 0;
    uint64_t h;
    DIR *d;

    (void)state;
    d = opendir(CORPUS_DIR);
    if (d == NULL)
        fail_msg("%s: %s", CORPUS_DIR, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || strlen(de->d_name) >= NAME_MAX_LEN - 8)
            continue;
        snprintf(current, sizeof(current), "%s/%s", CORPUS_DIR, de->d_name);
        if (stat(current, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        buf = read_input(current, &len);
        if (buf == NULL)
            fail_msg("%s: cannot read", current);
        if (corpus_digest(buf, len, &h)) {
            char name[sizeof(de->d_name) + 8];

            snprintf(name, sizeof(name), "corpus/%s", de->d_name);
            compared += (size_t)golden_check(name, h);
        }
        free(buf);
    }
    closedir(d);
    /* inputs added to the corpus later have no digest yet; most must */
    if (compared < CORPUS_MIN)
        fail_msg("%zu corpus inputs compared (want at least %d)", compared,
                 CORPUS_MIN);
}

/*---- Generated replies ----*/

static uint64_t
fnv64(const char *s, size_t n)
{
    struct digest d = {1469598103934665603ULL};

    dg_add(&d, s, n);
    return d.h;
}

/* About 70% of the ids of each kind in range, by a hash of the id. */
static int
gen_in_range(enum scope_record kind, const char *id, size_t len, void *arg)
{
    (void)arg;
    return (fnv64(id, len) ^ (uint64_t)kind) % 10 < 7;
}

static const struct scope_node *
tree_of(const char *path)
{
    const struct scope_endpoint *e;

    flt_init();
    e = scope_map_find(flt_shipped, path);
    if (e == NULL)
        fail_msg("no %s in the shipped scopes", path);
    return &e->root;
}

/* One run over doc in pieces of chunk bytes (0: whole). */
static void
gen_run(const struct scope_node *root, const struct scope_grant *g,
        filter_range_cb *range, const struct dynbuf *doc, size_t chunk,
        struct flt_result *res)
{
    struct filter *f = NULL;
    size_t off = 0, n;
    enum brk_err err;

    memset(res, 0, sizeof(*res));
    assert_int_equal(filter_new(root, g, range, NULL, NULL, &f), BRK_OK);
    err = BRK_OK;
    while (off < doc->len && err == BRK_OK) {
        n = chunk == 0 || doc->len - off < chunk ? doc->len - off : chunk;
        err = filter_feed(f, doc->buf + off, n);
        off += n;
    }
    if (err == BRK_OK)
        err = filter_finish(f);
    res->err = err;
    res->stripped = filter_stripped(f);
    res->dropped = filter_dropped(f);
    if (err == BRK_OK) {
        assert_int_equal(filter_names(f, &res->kept, &res->removed), BRK_OK);
        assert_int_equal(filter_take_output(f, &res->out, &res->len), BRK_OK);
    }
    filter_free(f);
}

/* The grants the replies are filtered under. */
enum { G_NONE, G_READ, G_ALL, G_COUNT };
static const char *const grant_name[G_COUNT] = {"none", "read", "all"};

static void
grant_make(int which, const char *alias, struct scope_grant *g)
{
    scope_grant_clear(g);
    if (which == G_READ)
        assert_int_equal(scope_grant_add_name(g, alias), BRK_OK);
    else if (which == G_ALL)
        memset(g->bits, 0xff, sizeof(g->bits));
}

/* Check doc through path's tree under each grant, with and without a
 * range, fed whole and in two piece sizes. */
static void
gen_check(const char *name, const char *path, const char *alias,
          const struct dynbuf *doc, int min_ok)
{
    static const size_t chunks[] = {0, BENCH_CHUNK, 1000};
    const struct scope_node *root = tree_of(path);
    struct flt_result r;
    struct scope_grant g;
    char label[NAME_MAX_LEN];
    uint64_t h, first = 0;
    int gi, ranged, ok = 0;
    size_t ci;

    for (gi = 0; gi < G_COUNT; gi++) {
        grant_make(gi, alias, &g);
        for (ranged = 0; ranged < 2; ranged++) {
            for (ci = 0; ci < nitems(chunks); ci++) {
                gen_run(root, &g, ranged ? gen_in_range : NULL, doc, chunks[ci],
                        &r);
                h = result_digest(&r);
                ok += r.err == BRK_OK && ci == 0;
                flt_result_free(&r);
                if (ci == 0)
                    first = h;
                else if (h != first)
                    fail_msg("%s: %zu-byte pieces give another result", name,
                             chunks[ci]);
            }
            snprintf(label, sizeof(label), "gen/%s/%s%s", name, grant_name[gi],
                     ranged ? "/range" : "");
            if (!golden_check(label, first))
                fail_msg("%s: no digest recorded", label);
        }
    }
    /* the replies are well-formed: most runs succeed */
    assert_true(ok >= min_ok);
}

static struct fixture_corp *
gen_corp(long members)
{
    struct fixture_sizes sizes = {400, members, 50, 40, 8};
    struct fixture_corp *c = NULL;

    assert_int_equal(fixture_corp_new(BENCH_SEED, 1, &sizes, &c), BRK_OK);
    return c;
}

static void
test_bench_user_list(void **state)
{
    struct fixture_corp *c = gen_corp(BENCH_MEMBERS);
    struct dynbuf d;

    (void)state;
    dynbuf_init(&d, (size_t)1 << 30);
    assert_int_equal(fixture_render_user_list(c, 1, 1, &d), BRK_OK);
    assert_true(d.len > 20 * 1000 * 1000);
    gen_check("user_list_20000", "/cgi-bin/user/list", "contacts.read", &d,
              2 * G_COUNT);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_directory(void **state)
{
    struct fixture_corp *c = gen_corp(300);
    struct dynbuf d;
    char uid[64];

    (void)state;
    dynbuf_init(&d, (size_t)1 << 26);
    assert_int_equal(fixture_render_department_list(c, 1, &d), BRK_OK);
    gen_check("department_list", "/cgi-bin/department/list", "contacts.read",
              &d, 2 * G_COUNT);
    dynbuf_reset(&d);
    assert_int_equal(fixture_render_tag_list(c, &d), BRK_OK);
    gen_check("tag_list", "/cgi-bin/tag/list", "contacts.read", &d,
              2 * G_COUNT);
    dynbuf_reset(&d);
    assert_int_equal(fixture_render_user_list_id(c, NULL, 1000, &d), BRK_OK);
    gen_check("user_list_id", "/cgi-bin/user/list_id", "contacts.read", &d,
              2 * G_COUNT);
    dynbuf_reset(&d);
    assert_int_equal(fixture_member_userid(c, 7, uid, sizeof(uid)), BRK_OK);
    assert_int_equal(fixture_render_user_get(c, uid, &d), BRK_OK);
    gen_check("user_get", "/cgi-bin/user/get", "contacts.read", &d,
              2 * G_COUNT);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_customers(void **state)
{
    struct fixture_corp *c = gen_corp(300);
    struct dynbuf d;
    char id[128], name[64];
    long i;

    (void)state;
    dynbuf_init(&d, (size_t)1 << 26);
    for (i = 0; i < 4; i++) {
        dynbuf_reset(&d);
        assert_int_equal(fixture_customer_id(c, i, id, sizeof(id)), BRK_OK);
        assert_int_equal(fixture_render_external_get(c, id, &d), BRK_OK);
        snprintf(name, sizeof(name), "external_get_%ld", i);
        gen_check(name, "/cgi-bin/externalcontact/get", "external.customers",
                  &d, 2 * G_COUNT);
    }
    for (i = 0; i < 4; i++) {
        dynbuf_reset(&d);
        assert_int_equal(fixture_chat_id(c, i, id, sizeof(id)), BRK_OK);
        assert_int_equal(fixture_render_groupchat_get(c, id, 1, &d), BRK_OK);
        snprintf(name, sizeof(name), "groupchat_get_%ld", i);
        gen_check(name, "/cgi-bin/externalcontact/groupchat/get",
                  "external.customers", &d, 2 * G_COUNT);
    }
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static int
setup(void **state)
{
    (void)state;
    writing = getenv("FILTER_GOLDEN_WRITE") != NULL;
    golden_load();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    if (writing)
        golden_write();
    scope_map_free(flt_shipped);
    flt_shipped = NULL;
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_bench_user_list),
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_customers),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
