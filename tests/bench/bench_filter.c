/*
 * Filter benchmark: a generated 20,000-member user/list reply through the
 * streaming filter with a contacts.read grant and a visible range of about
 * 70% of the members, against a jansson parse -> filter -> dump baseline
 * doing the same projection, in one run. Prints MB/s (of input), the
 * ratio, and the peak memory of one filter run. Not part of `make test`.
 *
 *   bench_filter [ITERATIONS] [--scopes DIR | --builtin] [--grant NAME]...
 *                [--no-baseline] [--jq]
 *
 * The user/list tree comes from the scope files (DIR, default scopes/ of
 * the working directory) when they are there, else from a built-in tree
 * of the same shape (wecom-protocol §4.1). --jq also times jq doing the
 * same projection (a program generated from the tree).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
        .name = (char *)(uintptr_t)(n), .type = (t), .perm = (p),              \
        .record = SCOPE_REC_NONE                                               \
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
    root_fields[0] =
        (struct scope_node)LEAF("errcode", SCOPE_T_INTEGER, SCOPE_PERM_ALWAYS);
    root_fields[1] =
        (struct scope_node)LEAF("errmsg", SCOPE_T_STRING, SCOPE_PERM_ALWAYS);
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
    s->slot[j] = brk_strdup(id);
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

/* The same projection over a jansson tree: the baseline (member records
 * only, as user/list has no other kind). */
static json_t *
tree_filter(const struct scope_node *n, json_t *v, const struct scope_grant *g,
            struct idset *range)
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
            if (!json_is_string(id) || !idset_has(range, json_string_value(id),
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
    if (n->record == SCOPE_REC_MEMBER &&
        (!json_is_string(v) ||
         !idset_has(range, json_string_value(v), json_string_length(v))))
        return NULL;
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
        brk_free(o);
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

/*---- jq, doing the same projection ----*/

static void
jq_put(struct dynbuf *d, const char *s)
{
    if (dynbuf_add_str(d, s) != BRK_OK)
        exit(6);
}

/* A jq expression for node n's value under grant g (types not checked:
 * the generated corp is well-typed). */
static void
jq_expr(const struct scope_node *n, const struct scope_grant *g,
        struct dynbuf *d)
{
    const struct scope_node *c;
    size_t i;
    int first = 1;

    if (n->type == SCOPE_T_ARRAY && n->items != NULL) {
        jq_put(d, "map(");
        if (n->items->record == SCOPE_REC_MEMBER &&
            n->items->type == SCOPE_T_OBJECT) {
            jq_put(d, "select($vis[.");
            jq_put(d, n->items->record_id);
            jq_put(d, " // \"\"] != null) | ");
        } else if (n->items->record == SCOPE_REC_MEMBER) {
            jq_put(d, "select($vis[.] != null) | ");
        }
        jq_expr(n->items, g, d);
        jq_put(d, ")");
        return;
    }
    if (n->type != SCOPE_T_OBJECT) {
        jq_put(d, ".");
        return;
    }
    jq_put(d, "with_entries(select(.key | IN(");
    for (i = 0; i < n->nfields; i++) {
        c = &n->fields[i];
        if (!perm_granted(g, c->perm))
            continue;
        jq_put(d, first ? "\"" : ", \"");
        jq_put(d, c->name);
        jq_put(d, "\"");
        first = 0;
    }
    jq_put(d, first ? "\"\")))" : ")))");
    for (i = 0; i < n->nfields; i++) {
        c = &n->fields[i];
        if (!perm_granted(g, c->perm) ||
            (c->type != SCOPE_T_OBJECT && c->type != SCOPE_T_ARRAY))
            continue;
        jq_put(d, " | if has(\"");
        jq_put(d, c->name);
        jq_put(d, "\") then .");
        jq_put(d, c->name);
        jq_put(d, " |= (");
        jq_expr(c, g, d);
        jq_put(d, ") else . end");
    }
}

static int
write_file(const char *path, const char *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    int ok;

    if (fp == NULL)
        return 0;
    ok = fwrite(buf, 1, len, fp) == len;
    return fclose(fp) == 0 && ok;
}

/* Seconds jq takes, output to /dev/null; negative if it cannot run. */
static double
run_jq(const char *prog, const char *input, const char *visfile)
{
    double t0 = now();
    int st;
    pid_t pid = fork();

    if (pid == 0) {
        if (freopen("/dev/null", "w", stdout) == NULL)
            _exit(127);
        execlp("jq", "jq", "-c", "--slurpfile", "v", visfile, prog, input,
               (char *)NULL);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) ||
        WEXITSTATUS(st) != 0)
        return -1;
    return now() - t0;
}

static double
time_jq(const struct scope_node *tree, const struct scope_grant *g,
        struct idset *range, const char *in, size_t len)
{
    char dir[] = "/tmp/bench_filter.XXXXXX", input[64], vis[64];
    struct dynbuf prog, v;
    double t = -1;
    size_t i;

    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(input, sizeof(input), "%s/in.json", dir);
    snprintf(vis, sizeof(vis), "%s/vis.json", dir);
    dynbuf_init(&prog, 1 << 20);
    dynbuf_init(&v, 1 << 24);
    jq_put(&v, "{");
    for (i = 0; i < range->size; i++) {
        if (range->slot[i] == NULL)
            continue;
        jq_put(&v, v.len > 1 ? ",\"" : "\"");
        jq_put(&v, range->slot[i]);
        jq_put(&v, "\":1");
    }
    jq_put(&v, "}");
    jq_put(&prog, "$v[0] as $vis | ");
    jq_expr(tree, g, &prog);
    if (write_file(input, in, len) && write_file(vis, v.buf, v.len))
        t = run_jq(prog.buf, input, vis);
    unlink(input);
    unlink(vis);
    rmdir(dir);
    dynbuf_free(&prog);
    dynbuf_free(&v);
    return t;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: bench_filter [ITERATIONS] [--scopes DIR | --builtin] "
            "[--grant NAME]... [--no-baseline] [--jq]\n");
    exit(2);
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
    struct stat st;
    char uid[64], *out, *jout, grants[256] = "";
    size_t outlen = 0, joutlen = 0;
    unsigned long stripped = 0, dropped = 0;
    long i, iters = 10, visible = 0, kb = -1;
    double t0, tf, tj = 0, tq = -1, mb;
    const char *scopes = "scopes";
    int same = 0, baseline = 1, jq = 0, builtin = 0, ngrants = 0;

    scope_grant_clear(&g);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--scopes") == 0 && i + 1 < argc) {
            scopes = argv[++i];
        } else if (strcmp(argv[i], "--builtin") == 0) {
            builtin = 1;
        } else if (strcmp(argv[i], "--grant") == 0 && i + 1 < argc) {
            if (scope_grant_add_name(&g, argv[++i]) != BRK_OK) {
                fprintf(stderr, "unknown permission %s\n", argv[i]);
                return 2;
            }
            snprintf(grants + strlen(grants), sizeof(grants) - strlen(grants),
                     "%s%s", ngrants++ ? "," : "", argv[i]);
        } else if (strcmp(argv[i], "--no-baseline") == 0) {
            baseline = 0;
        } else if (strcmp(argv[i], "--jq") == 0) {
            jq = 1;
        } else if (argv[i][0] >= '1' && argv[i][0] <= '9') {
            iters = strtol(argv[i], NULL, 10);
        } else {
            usage();
        }
    }
    if (ngrants == 0) {
        if (scope_grant_add_name(&g, "contacts.read") != BRK_OK)
            return 1;
        snprintf(grants, sizeof(grants), "contacts.read");
    }
    if (fixture_corp_new(20240601, 1, &sizes, &corp) != BRK_OK)
        return 1;
    dynbuf_init(&in, (size_t)1 << 30);
    if (fixture_render_user_list(corp, 1, 1, &in) != BRK_OK)
        return 1;

    range.size = 65536;
    range.slot = brk_calloc(range.size, sizeof(*range.slot));
    for (i = 0; i < fixture_corp_member_count(corp); i++) {
        if (fixture_member_userid(corp, i, uid, sizeof(uid)) != BRK_OK)
            return 1;
        if (hash_bytes(uid, strlen(uid)) % 10 < 7) {
            idset_add(&range, uid);
            visible++;
        }
    }

    /* the real scope files when they are there */
    if (!builtin && stat(scopes, &st) == 0 && S_ISDIR(st.st_mode)) {
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
        builtin = 1;
        tree = builtin_tree();
    }

    if (baseline)
        kb = peak_kb(tree, &g, &range, in.buf, in.len);
    out = run_filter(tree, &g, &range, in.buf, in.len, &outlen, &stripped,
                     &dropped);
    if (baseline) {
        jout = run_jansson(tree, &g, &range, in.buf, in.len, &joutlen);
        same = same_json(out, outlen, jout, joutlen);
        free(jout);
    }
    brk_free(out);
    t0 = now();
    for (i = 0; i < iters; i++) {
        out = run_filter(tree, &g, &range, in.buf, in.len, &outlen, &stripped,
                         &dropped);
        brk_free(out);
    }
    tf = (now() - t0) / (double)iters;
    if (baseline) {
        t0 = now();
        for (i = 0; i < (iters + 4) / 5; i++) {
            jout = run_jansson(tree, &g, &range, in.buf, in.len, &joutlen);
            free(jout);
        }
        tj = (now() - t0) / (double)((iters + 4) / 5);
    }
    if (jq)
        tq = time_jq(tree, &g, &range, in.buf, in.len);

    mb = (double)in.len / 1e6;
    printf("input: user/list, %ld members (%ld in range), %.2f MB; "
           "tree: %s; grant: %s\n",
           fixture_corp_member_count(corp), visible, mb,
           builtin ? "built-in" : scopes, grants);
    printf("filter:  %8.1f MB/s  %8.2f ms  output %.2f MB  stripped %lu "
           "dropped %lu\n",
           mb / tf, tf * 1e3, (double)outlen / 1e6, stripped, dropped);
    if (baseline) {
        printf("jansson: %8.1f MB/s  %8.2f ms  (parse, filter, dump)  "
               "filter is %.1fx faster; outputs %s\n",
               mb / tj, tj * 1e3, tj / tf, same ? "agree" : "DIFFER");
        printf("peak memory of one filter run: %.2f MB (output %.2f MB)\n",
               (double)kb / 1024.0, (double)outlen / 1e6);
    }
    if (jq && tq > 0)
        printf("jq:      %8.1f MB/s  %8.2f ms  filter is %.1fx faster\n",
               mb / tq, tq * 1e3, tq / tf);
    else if (jq)
        printf("jq: could not run\n");
    printf("target >= 150 MB/s: %s\n", mb / tf >= 150 ? "met" : "NOT MET");

    dynbuf_free(&in);
    fixture_corp_free(corp);
    scope_map_free(map);
    for (i = 0; i < (long)range.size; i++)
        brk_free(range.slot[i]);
    brk_free(range.slot);
    return 0;
}
