/*
 * Prepares the jq side of the filter benchmark: the same generated
 * 20,000-member user/list reply that bench_filter feeds the filter, its
 * visible range (the same ~70% of the members), a jq program doing the
 * same projection (derived from the scope tree and the grant, so it
 * follows the scope files), and the filter's own output to check jq's
 * against. Not part of `make test`.
 *
 *   bench_jq_prep --scopes DIR OUTDIR
 *
 * Writes OUTDIR/input.json, range.json, project.jq and filter.json, then
 * prints one line: "input BYTES members N in_range M output BYTES".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynbuf.h"
#include "filter.h"
#include "scope_map.h"

/* The fixture generator, compiled in as bench_filter does. */
#include "../../mocks/fixture.c"

/* Must match bench_filter.c: same corp, same sizes, same range rule. */
#define BENCH_SEED    20240601
#define BENCH_MEMBERS 20000
#define BENCH_CHUNK   16384
#define BENCH_GRANT   "contacts.read"

/*---- The visible range: userids whose FNV-1a hash % 10 < 7 ----*/

struct idset {
    char **slot;
    size_t size;
};

static uint64_t
hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    size_t i;

    for (i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static enum brk_err
idset_add(struct idset *s, const char *id)
{
    size_t j = hash_bytes(id, strlen(id)) & (s->size - 1);

    while (s->slot[j] != NULL)
        j = (j + 1) & (s->size - 1);
    s->slot[j] = brk_strdup(id);
    return s->slot[j] ? BRK_OK : BRK_ERR_NOMEM;
}

static int
idset_has(const struct idset *s, const char *id, size_t len)
{
    size_t j = hash_bytes(id, len) & (s->size - 1);

    while (s->slot[j] != NULL) {
        if (strlen(s->slot[j]) == len && memcmp(s->slot[j], id, len) == 0)
            return 1;
        j = (j + 1) & (s->size - 1);
    }
    return 0;
}

static void
idset_free(struct idset *s)
{
    size_t i;

    for (i = 0; s->slot != NULL && i < s->size; i++)
        brk_free(s->slot[i]);
    brk_free(s->slot);
}

static int
in_range(enum scope_record kind, const char *id, size_t len, void *arg)
{
    const struct idset *s = arg;

    if (kind == SCOPE_REC_MEMBER || kind == SCOPE_REC_FOLLOW_USER ||
        kind == SCOPE_REC_CHAT_MEMBER || kind == SCOPE_REC_CHAT)
        return idset_has(s, id, len);
    return 1;
}

/*---- The jq program ----*/

static int
granted(const struct scope_grant *g, int perm)
{
    if (perm == SCOPE_PERM_ALWAYS)
        return 1;
    if (perm == SCOPE_PERM_NEVER)
        return 0;
    return scope_grant_has(g, perm);
}

/* Whether the projection of a value under n is not the value itself. */
static int
needs_work(const struct scope_node *n)
{
    if (n->record != SCOPE_REC_NONE)
        return 1;
    if (n->type == SCOPE_T_OBJECT)
        return 1;
    if (n->type == SCOPE_T_ARRAY)
        return n->items != NULL && needs_work(n->items);
    return 0;
}

/*
 * Append a jq filter projecting one value under node n: records out of
 * range ($R, the range object) are dropped with select, objects keep
 * their granted keys, arrays map their items. Types are not checked: the
 * generated input has the declared types, and the outputs are compared
 * afterwards.
 */
static enum brk_err
gen(struct dynbuf *b, const struct scope_node *n, const struct scope_grant *g)
{
    enum brk_err err = BRK_OK;
    size_t i;
    int first = 1;

    if (n->record != SCOPE_REC_NONE) {
        if (n->record != SCOPE_REC_MEMBER)
            return BRK_ERR_INVAL;
        if (n->type == SCOPE_T_OBJECT)
            err = dynbuf_printf(b, "select($R[.[\"%s\"]] != null) | ",
                                n->record_id);
        else
            err = dynbuf_add_str(b, "select($R[.] != null) | ");
        if (err)
            return err;
    }
    if (n->type == SCOPE_T_ARRAY) {
        if (n->items == NULL || !needs_work(n->items))
            return dynbuf_add_str(b, ".");
        err = dynbuf_add_str(b, "map(");
        if (!err)
            err = gen(b, n->items, g);
        return err ? err : dynbuf_add_str(b, ")");
    }
    if (n->type != SCOPE_T_OBJECT)
        return dynbuf_add_str(b, ".");
    /* the fastest exact form found: with_entries is twice as slow, and
     * {a, b} would invent nulls for absent keys */
    err = dynbuf_add_str(b, ". as $o | reduce (");
    for (i = 0; !err && i < n->nfields; i++) {
        if (!granted(g, n->fields[i].perm))
            continue;
        err =
            dynbuf_printf(b, "%s\"%s\"", first ? "" : ", ", n->fields[i].name);
        first = 0;
    }
    if (!err && first)
        err = dynbuf_add_str(b, "empty");
    if (!err)
        err = dynbuf_add_str(b, ") as $k ({}; if $o | has($k) then "
                                ".[$k] = $o[$k] else . end)");
    for (i = 0; !err && i < n->nfields; i++) {
        const struct scope_node *c = &n->fields[i];

        if (!granted(g, c->perm) || !needs_work(c))
            continue;
        err = dynbuf_printf(b, "\n  | if has(\"%s\") then .[\"%s\"] |= (",
                            c->name, c->name);
        if (!err)
            err = gen(b, c, g);
        if (!err)
            err = dynbuf_add_str(b, ") else . end");
    }
    return err;
}

/*---- Output ----*/

static int
write_file(const char *dir, const char *name, const char *buf, size_t len)
{
    char path[4096];
    FILE *fp;
    int ok;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "w");
    if (fp == NULL) {
        perror(path);
        return -1;
    }
    ok = fwrite(buf, 1, len, fp) == len;
    ok = (fclose(fp) == 0) && ok;
    if (!ok)
        perror(path);
    return ok ? 0 : -1;
}

static enum brk_err
render_range(const struct fixture_corp *corp, struct idset *range,
             struct dynbuf *json, long *visible)
{
    char uid[64];
    enum brk_err err = BRK_OK;
    long i;

    err = dynbuf_add_str(json, "{");
    for (i = 0; !err && i < fixture_corp_member_count(corp); i++) {
        err = fixture_member_userid(corp, i, uid, sizeof(uid));
        if (err || hash_bytes(uid, strlen(uid)) % 10 >= 7)
            continue;
        err = idset_add(range, uid);
        if (!err)
            err = dynbuf_printf(json, "%s\"%s\": 1", *visible ? ", " : "", uid);
        (*visible)++;
    }
    return err ? err : dynbuf_add_str(json, "}\n");
}

static enum brk_err
run_filter(const struct scope_node *tree, const struct scope_grant *g,
           struct idset *range, const struct dynbuf *in, char **out,
           size_t *outlen)
{
    struct filter *f = NULL;
    enum brk_err err;
    size_t off, n;

    err = filter_new(tree, g, in_range, range, NULL, &f);
    for (off = 0; !err && off < in->len; off += n) {
        n = in->len - off < BENCH_CHUNK ? in->len - off : BENCH_CHUNK;
        err = filter_feed(f, in->buf + off, n);
    }
    if (!err)
        err = filter_finish(f);
    if (!err)
        err = filter_take_output(f, out, outlen);
    filter_free(f);
    return err;
}

int
main(int argc, char **argv)
{
    struct fixture_sizes sizes = {400, BENCH_MEMBERS, 50, 10, 2};
    struct fixture_corp *corp = NULL;
    struct scope_map *map = NULL;
    const struct scope_endpoint *e;
    struct scope_grant g;
    struct brk_errinfo info;
    struct idset range = {NULL, 65536};
    struct dynbuf in, rj, prog;
    const char *scopes = NULL, *dir = NULL;
    char *out = NULL;
    size_t outlen = 0;
    long visible = 0;
    int i, rc = 1;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--scopes") == 0 && i + 1 < argc)
            scopes = argv[++i];
        else
            dir = argv[i];
    }
    if (scopes == NULL || dir == NULL) {
        fprintf(stderr, "usage: bench_jq_prep --scopes DIR OUTDIR\n");
        return 2;
    }
    dynbuf_init(&in, (size_t)1 << 30);
    dynbuf_init(&rj, (size_t)1 << 26);
    dynbuf_init(&prog, (size_t)1 << 20);
    range.slot = brk_calloc(range.size, sizeof(*range.slot));
    if (range.slot == NULL)
        goto out;
    if (scope_map_load(scopes, &map, &info) != BRK_OK) {
        fprintf(stderr, "bench_jq_prep: %s\n", info.msg);
        goto out;
    }
    e = scope_map_find(map, "/cgi-bin/user/list");
    if (e == NULL) {
        fprintf(stderr, "bench_jq_prep: no /cgi-bin/user/list in %s\n", scopes);
        goto out;
    }
    scope_grant_clear(&g);
    if (scope_grant_add_name(&g, BENCH_GRANT) != BRK_OK ||
        fixture_corp_new(BENCH_SEED, 1, &sizes, &corp) != BRK_OK ||
        fixture_render_user_list(corp, 1, 1, &in) != BRK_OK ||
        render_range(corp, &range, &rj, &visible) != BRK_OK)
        goto out;
    if (dynbuf_add_str(&prog, "$range[0] as $R\n| ") != BRK_OK ||
        gen(&prog, &e->root, &g) != BRK_OK ||
        dynbuf_add_str(&prog, "\n") != BRK_OK) {
        fprintf(stderr, "bench_jq_prep: cannot express the tree in jq\n");
        goto out;
    }
    if (run_filter(&e->root, &g, &range, &in, &out, &outlen) != BRK_OK) {
        fprintf(stderr, "bench_jq_prep: the filter refused the input\n");
        goto out;
    }
    if (write_file(dir, "input.json", in.buf, in.len) != 0 ||
        write_file(dir, "range.json", rj.buf, rj.len) != 0 ||
        write_file(dir, "project.jq", prog.buf, prog.len) != 0 ||
        write_file(dir, "filter.json", out, outlen) != 0)
        goto out;
    printf("input %zu members %ld in_range %ld output %zu\n", in.len,
           fixture_corp_member_count(corp), visible, outlen);
    rc = 0;
out:
    brk_free(out);
    dynbuf_free(&in);
    dynbuf_free(&rj);
    dynbuf_free(&prog);
    idset_free(&range);
    fixture_corp_free(corp);
    scope_map_free(map);
    return rc;
}
