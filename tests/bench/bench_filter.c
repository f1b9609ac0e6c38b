/*
 * Filter benchmark: a generated 20,000-member user/list reply through the
 * streaming filter with a contacts.read grant and a visible range of about
 * 70% of the members, against a jansson parse -> filter -> dump baseline
 * doing the same projection, in one run. Prints MB/s (of input), the
 * ratio, and the peak memory of one filter run. Not part of `make test`.
 *
 *   bench_filter [ITERATIONS] [--scopes DIR] [--no-baseline]
 *
 * With --scopes the user/list tree comes from the scope files; otherwise
 * a built-in tree of the same shape (wecom-protocol §4.1) is used.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "filter.h"
#include "scope_map.h"

#include "../../mocks/fixture.c"

#define MEMBERS 20000
#define CHUNK   16384

/*---- The tree ----*/

#define LEAF(n, t, p)                                                          \
    {                                                                          \
        (char *)(uintptr_t)(n), (t), (p), NULL, 0, NULL, SCOPE_REC_NONE, NULL  \
    }

static struct scope_node int_item = LEAF(NULL, SCOPE_T_INTEGER, 0);
static struct scope_node str_item = LEAF(NULL, SCOPE_T_STRING, 0);
static struct scope_node leader_item = LEAF(NULL, SCOPE_T_STRING, 0);
static struct scope_node member_fields[23];
static struct scope_node member_item;
static struct scope_node root_fields[3];
static struct scope_node root;

static int
perm(const char *name)
{
    int id = scope_perm_id(name);

    if (id < 0) {
        fprintf(stderr, "unknown permission %s\n", name);
        exit(1);
    }
    return id;
}

static int
node_cmp(const void *a, const void *b)
{
    return strcmp(((const struct scope_node *)a)->name,
                  ((const struct scope_node *)b)->name);
}

/* user/list as wecom-protocol §4.1 documents the member object. */
static const struct scope_node *
builtin_tree(void)
{
    static const struct {
        const char *name;
        enum scope_type type;
        const char *perm;
    } spec[] = {
        {"userid", SCOPE_T_STRING, "contact:base:base"},
        {"open_userid", SCOPE_T_STRING, "contact:base:base"},
        {"name", SCOPE_T_STRING, "contact:sensitive:user_name"},
        {"department", SCOPE_T_ARRAY, "contact:base:base"},
        {"order", SCOPE_T_ARRAY, "contact:base:base"},
        {"main_department", SCOPE_T_INTEGER, "contact:base:base"},
        {"status", SCOPE_T_INTEGER, "contact:base:base"},
        {"is_leader_in_dept", SCOPE_T_ARRAY, "corp_arch:base:base"},
        {"direct_leader", SCOPE_T_ARRAY, "corp_arch:member:direct_leader"},
        {"position", SCOPE_T_STRING, "contact:sensitive:position"},
        {"mobile", SCOPE_T_STRING, "contact:sensitive:mobile"},
        {"gender", SCOPE_T_STRING, "contact:sensitive:gender"},
        {"email", SCOPE_T_STRING, "contact:sensitive:email"},
        {"biz_mail", SCOPE_T_STRING, "contact:sensitive:biz_mail"},
        {"avatar", SCOPE_T_STRING, "contact:sensitive:avatar"},
        {"thumb_avatar", SCOPE_T_STRING, "contact:sensitive:avatar"},
        {"telephone", SCOPE_T_STRING, "contact:sensitive:telephone"},
        {"alias", SCOPE_T_STRING, "contact:sensitive:user_name"},
        {"address", SCOPE_T_STRING, "contact:sensitive:address"},
        {"extattr", SCOPE_T_OBJECT, "contact:sensitive:extattr"},
        {"qr_code", SCOPE_T_STRING, "contact:sensitive:qrcode"},
        {"external_position", SCOPE_T_STRING,
         "contact:sensitive:external_position"},
        {"external_profile", SCOPE_T_OBJECT,
         "contact:sensitive:external_profile"},
    };
    size_t i;

    for (i = 0; i < nitems(spec); i++) {
        struct scope_node *n = &member_fields[i];

        memset(n, 0, sizeof(*n));
        n->name = (char *)(uintptr_t)spec[i].name;
        n->type = spec[i].type;
        n->perm = perm(spec[i].perm);
        if (strcmp(spec[i].name, "department") == 0 ||
            strcmp(spec[i].name, "order") == 0 ||
            strcmp(spec[i].name, "is_leader_in_dept") == 0)
            n->items = &int_item;
        else if (strcmp(spec[i].name, "direct_leader") == 0)
            n->items = &leader_item;
    }
    qsort(member_fields, nitems(spec), sizeof(member_fields[0]), node_cmp);
    (void)str_item;
    memset(&member_item, 0, sizeof(member_item));
    member_item.type = SCOPE_T_OBJECT;
    member_item.perm = SCOPE_PERM_ALWAYS;
    member_item.fields = member_fields;
    member_item.nfields = nitems(spec);
    member_item.record = SCOPE_REC_MEMBER;
    member_item.record_id = (char *)(uintptr_t) "userid";
    root_fields[0] = (struct scope_node)LEAF("errcode", SCOPE_T_INTEGER,
                                             SCOPE_PERM_ALWAYS);
    root_fields[1] = (struct scope_node)LEAF("errmsg", SCOPE_T_STRING,
                                             SCOPE_PERM_ALWAYS);
    root_fields[2] = (struct scope_node)LEAF("userlist", SCOPE_T_ARRAY,
                                             perm("contact:base:base"));
    root_fields[2].items = &member_item;
    root.type = SCOPE_T_OBJECT;
    root.perm = SCOPE_PERM_ALWAYS;
    root.fields = root_fields;
    root.nfields = 3;
    return &root;
}

/*---- The visible range: a hash set of userids ----*/

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

static void
idset_add(struct idset *s, const char *id)
{
    size_t j = hash_bytes(id, strlen(id)) & (s->size - 1);

    while (s->slot[j] != NULL)
        j = (j + 1) & (s->size - 1);
    s->slot[j] = strdup(id);
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

static int
in_range(enum scope_record kind, const char *id, size_t len, void *arg)
{
    const struct idset *s = arg;

    if (kind == SCOPE_REC_MEMBER || kind == SCOPE_REC_FOLLOW_USER ||
        kind == SCOPE_REC_CHAT_MEMBER || kind == SCOPE_REC_CHAT)
        return idset_has(s, id, len);
    return 1;
}

/*---- Runs ----*/

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *
run_filter(const struct scope_node *tree, const struct scope_grant *g,
           struct idset *range, const char *in, size_t len, size_t *outlen,
           unsigned long *stripped, unsigned long *dropped)
{
    struct filter *f = NULL;
    char *out = NULL;
    size_t off, n;

    if (filter_new(tree, g, in_range, range, NULL, &f) != BRK_OK)
        exit(2);
    for (off = 0; off < len; off += n) {
        n = len - off < CHUNK ? len - off : CHUNK;
        if (filter_feed(f, in + off, n) != BRK_OK)
            exit(3);
    }
    if (filter_finish(f) != BRK_OK || filter_take_output(f, &out, outlen))
        exit(4);
    *stripped = filter_stripped(f);
    *dropped = filter_dropped(f);
    filter_free(f);
    return out;
}

static int
perm_granted(const struct scope_grant *g, int p)
{
    if (p == SCOPE_PERM_ALWAYS)
        return 1;
    if (p == SCOPE_PERM_NEVER)
        return 0;
    return scope_grant_has(g, p);
}

/* The same projection over a jansson tree: the baseline. */
static json_t *
tree_filter(const struct scope_node *n, json_t *v,
            const struct scope_grant *g, struct idset *range)
{
    const char *k;
    json_t *x, *out, *id;
    size_t i;
    const struct scope_node *c;

    if (n->type == SCOPE_T_OBJECT) {
        if (!json_is_object(v))
            return NULL;
        if (n->record == SCOPE_REC_MEMBER) {
            id = json_object_get(v, n->record_id);
            if (!json_is_string(id) ||
                !idset_has(range, json_string_value(id),
                           json_string_length(id)))
                return NULL;
        }
        out = json_object();
        json_object_foreach(v, k, x)
        {
            json_t *y;

            c = scope_node_field(n, k, strlen(k));
            if (c == NULL || !perm_granted(g, c->perm))
                continue;
            y = tree_filter(c, x, g, range);
            if (y != NULL)
                json_object_set_new(out, k, y);
        }
        return out;
    }
    if (n->type == SCOPE_T_ARRAY) {
        if (!json_is_array(v))
            return NULL;
        out = json_array();
        json_array_foreach(v, i, x)
        {
            json_t *y = n->items ? tree_filter(n->items, x, g, range) : NULL;

            if (y != NULL)
                json_array_append_new(out, y);
        }
        return out;
    }
    if ((n->type == SCOPE_T_STRING && json_is_string(v)) ||
        (n->type == SCOPE_T_INTEGER && json_is_integer(v)) ||
        (n->type == SCOPE_T_NUMBER && json_is_number(v)) ||
        (n->type == SCOPE_T_BOOL && json_is_boolean(v)))
        return json_incref(v);
    return NULL;
}

static char *
run_jansson(const struct scope_node *tree, const struct scope_grant *g,
            struct idset *range, const char *in, size_t len, size_t *outlen)
{
    json_error_t e;
    json_t *doc = json_loadb(in, len, JSON_REJECT_DUPLICATES, &e), *o;
    char *s;

    if (doc == NULL)
        exit(5);
    o = tree_filter(tree, doc, g, range);
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    *outlen = strlen(s);
    json_decref(o);
    json_decref(doc);
    return s;
}

/* Equal as JSON, keys in the same order. */
static int
same_json(const char *a, size_t alen, const char *b, size_t blen)
{
    json_t *x = json_loadb(a, alen, JSON_REJECT_DUPLICATES, NULL);
    json_t *y = json_loadb(b, blen, JSON_REJECT_DUPLICATES, NULL);
    char *sx = x ? json_dumps(x, JSON_COMPACT) : NULL;
    char *sy = y ? json_dumps(y, JSON_COMPACT) : NULL;
    int same = sx != NULL && sy != NULL && strcmp(sx, sy) == 0;

    free(sx);
    free(sy);
    json_decref(x);
    json_decref(y);
    return same;
}

static long
status_kb(const char *field)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t fl = strlen(field);

    if (fp == NULL)
        return -1;
    while (fgets(line, sizeof(line), fp) != NULL)
        if (strncmp(line, field, fl) == 0 && line[fl] == ':')
            v = strtol(line + fl + 1, NULL, 10);
    fclose(fp);
    return v;
}

/* Peak resident growth (KiB) of one filter run, in a fresh child. */
static long
peak_kb(const struct scope_node *tree, const struct scope_grant *g,
        struct idset *range, const char *in, size_t len)
{
    int fd[2], st;
    long kb = -1;
    pid_t pid;

    if (pipe(fd) != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        FILE *cr = fopen("/proc/self/clear_refs", "w");
        long base, peak;
        size_t ol;
        unsigned long s, d;
        char *o;

        /* reset the high-water mark to the current resident size */
        if (cr != NULL) {
            fputs("5", cr);
            fclose(cr);
        }
        base = status_kb("VmRSS");
        o = run_filter(tree, g, range, in, len, &ol, &s, &d);
        peak = status_kb("VmHWM");
        free(o);
        peak -= base;
        if (write(fd[1], &peak, sizeof(peak)) != sizeof(peak))
            _exit(1);
        _exit(0);
    }
    close(fd[1]);
    if (pid > 0 && read(fd[0], &kb, sizeof(kb)) != sizeof(kb))
        kb = -1;
    close(fd[0]);
    if (pid > 0)
        waitpid(pid, &st, 0);
    return kb;
}

int
main(int argc, char **argv)
{
    struct fixture_sizes sizes = {400, MEMBERS, 50, 10, 2};
    struct fixture_corp *corp = NULL;
    struct scope_map *map = NULL;
    const struct scope_node *tree;
    struct scope_grant g;
    struct brk_errinfo info;
    struct idset range;
    struct dynbuf in;
    char uid[64], *out, *jout;
    size_t outlen = 0, joutlen = 0;
    unsigned long stripped = 0, dropped = 0;
    long i, iters = 10, visible = 0, kb;
    double t0, tf, tj, mb;
    int same = 0;
    const char *scopes = NULL;
    int baseline = 1;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--scopes") == 0 && i + 1 < argc)
            scopes = argv[++i];
        else if (strcmp(argv[i], "--no-baseline") == 0)
            baseline = 0;
        else
            iters = strtol(argv[i], NULL, 10);
    }
    if (iters < 1)
        iters = 1;
    if (fixture_corp_new(20240601, 1, &sizes, &corp) != BRK_OK)
        return 1;
    dynbuf_init(&in, (size_t)1 << 30);
    if (fixture_render_user_list(corp, 1, 1, &in) != BRK_OK)
        return 1;

    range.size = 65536;
    range.slot = calloc(range.size, sizeof(*range.slot));
    for (i = 0; i < fixture_corp_member_count(corp); i++) {
        if (fixture_member_userid(corp, i, uid, sizeof(uid)) != BRK_OK)
            return 1;
        if (hash_bytes(uid, strlen(uid)) % 10 < 7) {
            idset_add(&range, uid);
            visible++;
        }
    }

    scope_grant_clear(&g);
    if (scope_grant_add_name(&g, "contacts.read") != BRK_OK)
        return 1;
    tree = NULL;
    if (scopes != NULL) {
        const struct scope_endpoint *e;

        if (scope_map_load(scopes, &map, &info) != BRK_OK) {
            fprintf(stderr, "%s\n", info.msg);
            return 1;
        }
        e = scope_map_find(map, "/cgi-bin/user/list");
        if (e == NULL) {
            fprintf(stderr, "no /cgi-bin/user/list in %s\n", scopes);
            return 1;
        }
        tree = &e->root;
    } else {
        tree = builtin_tree();
    }

    kb = baseline ? peak_kb(tree, &g, &range, in.buf, in.len) : -1;

    out = run_filter(tree, &g, &range, in.buf, in.len, &outlen, &stripped,
                     &dropped);
    if (baseline) {
        jout = run_jansson(tree, &g, &range, in.buf, in.len, &joutlen);
        same = same_json(out, outlen, jout, joutlen);
        free(jout);
    }
    free(out);
    t0 = now();
    for (i = 0; i < iters; i++) {
        out = run_filter(tree, &g, &range, in.buf, in.len, &outlen,
                         &stripped, &dropped);
        free(out);
    }
    tf = (now() - t0) / (double)iters;

    tj = 0;
    if (baseline) {
        t0 = now();
        for (i = 0; i < (iters + 4) / 5; i++) {
            jout = run_jansson(tree, &g, &range, in.buf, in.len, &joutlen);
            free(jout);
        }
        tj = (now() - t0) / (double)((iters + 4) / 5);
    }

    mb = (double)in.len / 1e6;
    printf("input: user/list, %ld members (%ld in range), %.2f MB; "
           "tree: %s; grant: contacts.read\n",
           fixture_corp_member_count(corp), visible, mb,
           scopes ? scopes : "built-in");
    printf("filter:  %8.1f MB/s  %7.2f ms  output %.2f MB  stripped %lu "
           "dropped %lu\n",
           mb / tf, tf * 1e3, (double)outlen / 1e6, stripped, dropped);
    if (baseline) {
        printf("jansson: %8.1f MB/s  %7.2f ms  output %.2f MB (parse, "
               "filter, dump)\n",
               mb / tj, tj * 1e3, (double)joutlen / 1e6);
        printf("ratio filter/jansson: %.1fx; outputs %s\n", tj / tf,
               same ? "agree" : "DIFFER");
        printf("peak memory of one filter run: %.2f MB (output %.2f MB)\n",
               (double)kb / 1024.0, (double)outlen / 1e6);
    }
    printf("target >= 150 MB/s: %s\n", mb / tf >= 150 ? "met" : "NOT MET");

    dynbuf_free(&in);
    fixture_corp_free(corp);
    scope_map_free(map);
    for (i = 0; i < (long)range.size; i++)
        free(range.slot[i]);
    free(range.slot);
    return 0;
}
