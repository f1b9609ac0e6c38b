/*
 * Fuzz the streaming filter: scope tree, effective grant, visible range,
 * limits, chunking and the document all come from the input.
 *
 *   SEL GRANT(16) RANGE LIMITS CHUNK [LEN(2) TREE(LEN)] DOCUMENT
 *
 * SEL bit 7 clear: the endpoint SEL % count of the shipped scopes/
 * (FUZZ_SCOPES_DIR overrides the directory); set: TREE is a scope file
 * (loaded with scope_map_load_file through a memfd) and SEL & 0x7f picks
 * its endpoint. GRANT is the permission bit set as is. RANGE 0: no range
 * callback; 1: nothing in range; else a hash of kind and id decides.
 * LIMITS bit 0 set: small limits from its other bits. CHUNK seeds the
 * sizes the document is fed in.
 *
 * Properties: fed whole and fed in chunks, the filter gives the same
 * result, output, counts and names, and so does one filter reused from
 * input to input (filter_reset, default limits), whatever tree, grant
 * and range it read before and wherever that ended; a successful output
 * is one JSON
 * object, without repeated keys, holding only keys the tree declares and
 * the grant allows, each of its declared type, and no record whose id the
 * range refuses.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <jansson.h>

#include "broker.h"
#include "filter.h"
#include "scope_map.h"

#include "fuzz.h"

#define FLT_SCOPES_DEFAULT "scopes"

static struct scope_map *flt_shipped;
static int flt_memfd = -1;

static void
flt_init(void)
{
    struct brk_errinfo info = {"", 0, -1};
    const char *dir = getenv("FUZZ_SCOPES_DIR");

    if (flt_shipped != NULL)
        return;
    if (dir == NULL)
        dir = FLT_SCOPES_DEFAULT;
    if (scope_map_load(dir, &flt_shipped, &info) != BRK_OK) {
        fprintf(stderr,
                "fuzz_filter: %s: %s (run from the source tree or "
                "set FUZZ_SCOPES_DIR)\n",
                dir, info.msg);
        abort();
    }
    flt_memfd = memfd_create("fuzz-filter-scope", MFD_CLOEXEC);
    FUZZ_CHECK(flt_memfd >= 0);
}

/* Load a scope file held in memory; NULL when it is refused. */
static struct scope_map *
flt_load_tree(const uint8_t *p, size_t len)
{
    struct scope_map *m = NULL;
    char path[64];
    size_t off = 0;
    ssize_t w;

    if (ftruncate(flt_memfd, 0) != 0)
        return NULL;
    while (off < len) {
        w = pwrite(flt_memfd, p + off, len - off, (off_t)off);
        if (w <= 0)
            return NULL;
        off += (size_t)w;
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", flt_memfd);
    if (scope_map_load_file(path, &m, NULL) != BRK_OK)
        return NULL;
    return m;
}

/* The range: 0 none in range, else a hash of (kind, id, seed). */
struct flt_range {
    int mode;
    uint8_t seed;
};

/* Department and tag ids by value, so "-0" and "0" agree. */
static int
flt_range_ok(const struct flt_range *r, enum scope_record kind, const char *id,
             size_t len)
{
    char buf[32];
    long long v;
    uint32_t h;

    if (r->mode == 1)
        return 0;
    if ((kind == SCOPE_REC_DEPARTMENT || kind == SCOPE_REC_TAG) &&
        len < sizeof(buf)) {
        memcpy(buf, id, len);
        buf[len] = '\0';
        v = strtoll(buf, NULL, 10);
        h = fuzz_hash(&v, sizeof(v));
    } else {
        h = fuzz_hash(id, len);
    }
    h ^= (uint32_t)kind * 0x9e3779b9u;
    return ((h >> 3) + r->seed) % 4 != 0;
}

static int
flt_in_range(enum scope_record kind, const char *id, size_t len, void *arg)
{
    return flt_range_ok(arg, kind, id, len);
}

/* One run of the filter over doc in chunks (sizes from *rng; 0: whole). */
struct flt_result {
    enum brk_err err;
    char *out, *kept, *removed;
    size_t len;
    unsigned long stripped, dropped;
};

static void
flt_result_free(struct flt_result *r)
{
    brk_free(r->out);
    brk_free(r->kept);
    brk_free(r->removed);
}

/* The filter reused from input to input (default limits only). */
static struct filter *flt_reused;

/* On reuse (not NULL) instead of a new filter: reset, names borrowed and
 * the output taken or copied as rng says; left for the next input. */
static void
flt_run(struct filter *reuse, const struct scope_node *root,
        const struct scope_grant *g, struct flt_range *range,
        const struct filter_limits *lim, const uint8_t *doc, size_t len,
        uint32_t rng, struct flt_result *res)
{
    struct filter *f = reuse;
    size_t off = 0, n;
    enum brk_err err;
    const char *k, *r, *o;
    int take = (rng & 0x100) != 0;

    memset(res, 0, sizeof(*res));
    if (reuse != NULL)
        err = filter_reset(f, root, g, range->mode == 0 ? NULL : flt_in_range,
                           range);
    else
        err = filter_new(root, g, range->mode == 0 ? NULL : flt_in_range, range,
                         lim, &f);
    if (err) {
        res->err = err;
        return;
    }
    while (off < len && err == BRK_OK) {
        n = len - off;
        if (rng != 0) {
            /* xorshift32: sizes of 1..64 bytes, now and then 1 */
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            n = (rng & 7) == 0 ? 1 : 1 + (rng >> 8) % 64;
            if (n > len - off)
                n = len - off;
        }
        err = filter_feed(f, (const char *)doc + off, n);
        off += n;
    }
    if (err == BRK_OK) {
        /* an empty feed changes nothing */
        err = filter_feed(f, (const char *)doc, 0);
    }
    if (err == BRK_OK)
        err = filter_finish(f);
    else
        FUZZ_CHECK(filter_finish(f) == err);
    res->err = err;
    res->stripped = filter_stripped(f);
    res->dropped = filter_dropped(f);
    if (err == BRK_OK && reuse == NULL) {
        FUZZ_CHECK(filter_names(f, &res->kept, &res->removed) == BRK_OK);
        FUZZ_CHECK(filter_take_output(f, &res->out, &res->len) == BRK_OK);
    } else if (err == BRK_OK) {
        FUZZ_CHECK(filter_names_get(f, &k, &r) == BRK_OK);
        res->kept = brk_strdup(k);
        res->removed = brk_strdup(r);
        FUZZ_CHECK(res->kept != NULL && res->removed != NULL);
        if (take) {
            FUZZ_CHECK(filter_take_output(f, &res->out, &res->len) == BRK_OK);
        } else {
            FUZZ_CHECK(filter_output(f, &o, &res->len) == BRK_OK);
            res->out = brk_malloc(res->len + 1);
            FUZZ_CHECK(res->out != NULL);
            memcpy(res->out, o, res->len + 1);
        }
    }
    if (reuse == NULL)
        filter_free(f);
}

static int
flt_allowed(const struct scope_grant *g, int perm)
{
    if (perm == SCOPE_PERM_ALWAYS)
        return 1;
    return perm != SCOPE_PERM_NEVER && scope_grant_has(g, perm);
}

/* Text of an id as the range callback saw it (integers by value). */
static int
flt_id_ok(const struct flt_range *r, enum scope_record kind, json_t *id)
{
    char buf[32];

    if (json_is_string(id))
        return flt_range_ok(r, kind, json_string_value(id),
                            json_string_length(id));
    if (json_is_integer(id)) {
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(id));
        return flt_range_ok(r, kind, buf, strlen(buf));
    }
    return 1; /* a mistyped id never reaches the output's check */
}

static void flt_check_value(json_t *v, const struct scope_node *n,
                            const struct scope_grant *g,
                            const struct flt_range *r);

/* An object record that was written: its id, when written, is in range. */
static void
flt_check_record(json_t *obj, const struct scope_node *n,
                 const struct flt_range *r)
{
    const char *dot;
    char first[128];
    json_t *id;
    size_t l;

    if (r->mode == 0 || n->record == SCOPE_REC_NONE ||
        n->record == SCOPE_REC_CUSTOMER || n->record == SCOPE_REC_CHAT_MEMBER ||
        n->record_id == NULL)
        return;
    dot = strchr(n->record_id, '.');
    if (dot == NULL) {
        id = json_object_get(obj, n->record_id);
    } else {
        l = (size_t)(dot - n->record_id);
        if (l >= sizeof(first))
            return;
        memcpy(first, n->record_id, l);
        first[l] = '\0';
        id = json_object_get(json_object_get(obj, first), dot + 1);
    }
    if (id != NULL)
        FUZZ_CHECK(flt_id_ok(r, n->record, id));
}

static void
flt_check_value(json_t *v, const struct scope_node *n,
                const struct scope_grant *g, const struct flt_range *r)
{
    const struct scope_node *c;
    const char *key;
    json_t *item;
    size_t i;

    switch (n->type) {
    case SCOPE_T_STRING:
        FUZZ_CHECK(json_is_string(v));
        break;
    case SCOPE_T_INTEGER:
        FUZZ_CHECK(json_is_integer(v));
        break;
    case SCOPE_T_NUMBER:
        FUZZ_CHECK(json_is_number(v));
        break;
    case SCOPE_T_BOOL:
        FUZZ_CHECK(json_is_boolean(v));
        break;
    case SCOPE_T_OBJECT:
        FUZZ_CHECK(json_is_object(v));
        json_object_foreach(v, key, item)
        {
            c = scope_node_field(n, key, strlen(key));
            FUZZ_CHECK(c != NULL);
            FUZZ_CHECK(flt_allowed(g, c->perm));
            flt_check_value(item, c, g, r);
        }
        flt_check_record(v, n, r);
        return;
    case SCOPE_T_ARRAY:
        FUZZ_CHECK(json_is_array(v));
        json_array_foreach(v, i, item) flt_check_value(item, n->items, g, r);
        return;
    }
    /* a scalar array item marked as a record is an id itself */
    if (n->record != SCOPE_REC_NONE && r->mode != 0)
        FUZZ_CHECK(flt_id_ok(r, n->record, v));
}

/* The output of a successful run against the tree, grant and range. */
static void
flt_check_output(const struct flt_result *res, const struct scope_node *root,
                 const struct scope_grant *g, const struct flt_range *r)
{
    json_error_t jerr;
    json_t *v;

    v = json_loadb(res->out, res->len, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL) {
        /* numbers are copied as written: jansson cannot hold every one */
        if (json_error_code(&jerr) == json_error_numeric_overflow)
            return;
        fprintf(stderr, "output is not JSON: %s at %d: %.*s\n", jerr.text,
                jerr.position, (int)(res->len > 400 ? 400 : res->len),
                res->out);
        FUZZ_CHECK(v != NULL);
    }
    FUZZ_CHECK(json_is_object(v));
    flt_check_value(v, root, g, r);
    json_decref(v);
}

static int
flt_str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* One decoded input: the endpoint, grant, range, limits, chunk seed and
 * document. */
struct flt_case {
    struct scope_map *own; /* the input's scope file, or NULL */
    const struct scope_endpoint *ep;
    struct scope_grant g;
    struct flt_range range;
    struct filter_limits lim, *limp;
    uint32_t rng;
    const uint8_t *doc; /* borrowed from the input */
    size_t dlen;
};

/* Decode an input (layout above); 0 when it names no endpoint. A case
 * decoded is released with scope_map_free(c->own). */
static int
flt_decode(const uint8_t *data, size_t size, struct flt_case *c)
{
    struct fuzz_in in = {data, size};
    const struct scope_map *map;
    const uint8_t *gb, *tree;
    uint8_t sel, lb;
    size_t n, tlen, i;

    flt_init();
    memset(c, 0, sizeof(*c));
    map = flt_shipped;
    sel = fuzz_byte(&in);
    gb = fuzz_take(&in, 16, &n);
    if (n != 16)
        return 0;
    scope_grant_clear(&c->g);
    for (i = 0; i < 16; i++)
        c->g.bits[i / 8] |= (uint64_t)gb[i] << (8 * (i % 8));
    c->range.mode = fuzz_byte(&in);
    c->range.seed = (uint8_t)(c->range.mode >> 2);
    c->range.mode = c->range.mode < 2 ? c->range.mode : 2;
    lb = fuzz_byte(&in);
    if (lb & 1) {
        c->lim.max_depth = 1 + ((lb >> 1) & 7);
        c->lim.max_output = (size_t)16 << ((lb >> 4) & 7);
        c->lim.max_record = (size_t)8 << ((lb >> 5) & 7);
        c->limp = &c->lim;
    }
    c->rng = 0x9e3779b9u * (1u + fuzz_byte(&in));
    if (sel & 0x80) {
        tlen = (size_t)fuzz_byte(&in) << 8;
        tlen |= fuzz_byte(&in);
        tree = fuzz_take(&in, tlen, &tlen);
        c->own = flt_load_tree(tree, tlen);
        if (c->own == NULL)
            return 0;
        map = c->own;
    }
    if (scope_map_count(map) == 0) {
        scope_map_free(c->own);
        c->own = NULL;
        return 0;
    }
    c->ep = scope_map_at(map, (sel & 0x7f) % scope_map_count(map));
    c->doc = fuzz_take(&in, in.n, &c->dlen);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct flt_case c;
    struct flt_result whole, split;

    if (!flt_decode(data, size, &c))
        return 0;
    flt_run(NULL, &c.ep->root, &c.g, &c.range, c.limp, c.doc, c.dlen, 0,
            &whole);
    flt_run(NULL, &c.ep->root, &c.g, &c.range, c.limp, c.doc, c.dlen, c.rng,
            &split);
    FUZZ_CHECK(whole.err == split.err);
    FUZZ_CHECK(whole.len == split.len);
    FUZZ_CHECK(whole.len == 0 || memcmp(whole.out, split.out, whole.len) == 0);
    if (whole.err == BRK_OK) {
        FUZZ_CHECK(whole.stripped == split.stripped);
        FUZZ_CHECK(whole.dropped == split.dropped);
        FUZZ_CHECK(flt_str_eq(whole.kept, split.kept));
        FUZZ_CHECK(flt_str_eq(whole.removed, split.removed));
        flt_check_output(&whole, &c.ep->root, &c.g, &c.range);
    }
    flt_result_free(&split);
    if (c.limp == NULL &&
        (flt_reused != NULL || filter_new(&c.ep->root, &c.g, NULL, NULL, NULL,
                                          &flt_reused) == BRK_OK)) {
        flt_run(flt_reused, &c.ep->root, &c.g, &c.range, NULL, c.doc, c.dlen,
                c.rng, &split);
        FUZZ_CHECK(whole.err == split.err);
        FUZZ_CHECK(whole.len == split.len);
        FUZZ_CHECK(whole.len == 0 ||
                   memcmp(whole.out, split.out, whole.len) == 0);
        FUZZ_CHECK(flt_str_eq(whole.kept, split.kept));
        FUZZ_CHECK(flt_str_eq(whole.removed, split.removed));
        /* where an error stops depends on the pieces: counts then too */
        FUZZ_CHECK(whole.err != BRK_OK || whole.stripped == split.stripped);
        FUZZ_CHECK(whole.err != BRK_OK || whole.dropped == split.dropped);
        flt_result_free(&split);
    }
    flt_result_free(&whole);
    scope_map_free(c.own);
    return 0;
}
