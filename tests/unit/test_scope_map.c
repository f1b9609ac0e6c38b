/*
 * Tests for the scope maps: the shipped scopes/ (every SPEC §5 endpoint,
 * sorted trees, the documented records and tags), lookups, the permission
 * table and its aliases, grant bitsets, each refusal of the strict loader
 * with its file:line:col, the data cases under tests/data/scope_map and
 * allocation failures.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "scope_events.h"
#include "capability.h"
#include "scope_map.h"

#define B "contact:base:base"
#define X "externalcontact:base:base"

static char srcroot[PATH_MAX]; /* repository root, "" if not found */
static char tmpdir[PATH_MAX];

/* A map pointer that a failed load must leave alone. */
static struct scope_map *const sentinel =
    (struct scope_map *)(uintptr_t)0x5ca9e;

/*---- Helpers ----*/

static void xsnprintf(char *buf, size_t len, const char *fmt, ...)
    BRK_PRINTF(3, 4);

static void
xsnprintf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len)
        fail_msg("path too long");
}

static void
root_path(char *buf, size_t len, const char *rel)
{
    /* a missing tree is a failure, not a silent pass */
    if (srcroot[0] == '\0')
        fail_msg("repository root not found (set BROKER_SRCDIR)");
    xsnprintf(buf, len, "%s/%s", srcroot, rel);
}

static void
tmp_path(char *buf, size_t len, const char *rel)
{
    xsnprintf(buf, len, "%s/%s", tmpdir, rel);
}

/* Write tmpdir/rel (directories created as needed). */
static void
write_file(const char *rel, const char *content)
{
    char path[PATH_MAX], *slash;
    FILE *f;

    tmp_path(path, sizeof(path), rel);
    for (slash = strchr(path + strlen(tmpdir) + 1, '/'); slash != NULL;
         slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        mkdir(path, 0700);
        *slash = '/';
    }
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(content, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* A fresh, empty subdirectory of tmpdir for one test. */
static void
fresh_dir(const char *rel, char *out, size_t len)
{
    tmp_path(out, len, rel);
    nftw(out, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    assert_int_equal(mkdir(out, 0700), 0);
}

/* "LINE:COL" of the first occurrence of needle in text (1-based). */
static void
pos_of(const char *text, const char *needle, char *out, size_t len)
{
    const char *hit = strstr(text, needle), *p;
    int line = 1, col = 1;

    if (hit == NULL)
        fail_msg("needle %s not in text", needle);
    for (p = text; p < hit; p++) {
        if (*p == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)*p & 0xC0) != 0x80) {
            col++;
        }
    }
    xsnprintf(out, len, "%d:%d", line, col);
}

static struct scope_map *
load_shipped(void)
{
    struct scope_map *m = NULL;
    struct brk_errinfo info;
    char dir[PATH_MAX];

    root_path(dir, sizeof(dir), "scopes");
    if (scope_map_load(dir, &m, &info) != BRK_OK)
        fail_msg("%s", info.msg);
    assert_non_null(m);
    return m;
}

static const struct scope_endpoint *
endpoint(const struct scope_map *m, const char *path)
{
    const struct scope_endpoint *e = scope_map_find(m, path);

    if (e == NULL)
        fail_msg("%s not declared", path);
    return e;
}

/* The node at a dotted path under e's response ("userlist.[].userid"). */
static const struct scope_node *
node_at(const struct scope_endpoint *e, const char *path)
{
    const struct scope_node *n = &e->root;
    char buf[256], *part, *save = NULL;

    xsnprintf(buf, sizeof(buf), "%s", path);
    for (part = strtok_r(buf, ".", &save); part != NULL;
         part = strtok_r(NULL, ".", &save)) {
        if (strcmp(part, "[]") == 0)
            n = n->items;
        else
            n = scope_node_field(n, part, strlen(part));
        if (n == NULL)
            fail_msg("%s: %s not declared (at %s)", e->path, path, part);
    }
    return n;
}

static void
expect_perm(const struct scope_endpoint *e, const char *path, const char *perm)
{
    const struct scope_node *n = node_at(e, path);

    if (strcmp(scope_perm_name(n->perm), perm) != 0)
        fail_msg("%s %s: perm %s, want %s", e->path, path,
                 scope_perm_name(n->perm), perm);
}

static void
expect_record(const struct scope_endpoint *e, const char *path,
              enum scope_record rec, const char *id)
{
    const struct scope_node *n = node_at(e, path);

    if (n->record != rec)
        fail_msg("%s %s: record %s, want %s", e->path, path,
                 scope_record_name(n->record) ? scope_record_name(n->record)
                                              : "none",
                 scope_record_name(rec));
    if (id == NULL)
        assert_null(n->record_id);
    else
        assert_string_equal(n->record_id, id);
}

/* Load tmpdir/rel (a file or a directory) expecting err and msg exactly
 * (msg may be NULL to skip), *out untouched. */
static void
expect_error_msg(const char *rel, enum brk_err want, const char *msg)
{
    struct scope_map *m = sentinel;
    struct brk_errinfo info = {"", 0, -1};
    char path[PATH_MAX];
    struct stat st;
    enum brk_err err;

    tmp_path(path, sizeof(path), rel);
    assert_int_equal(stat(path, &st), 0);
    err = S_ISDIR(st.st_mode) ? scope_map_load(path, &m, &info)
                              : scope_map_load_file(path, &m, &info);
    if (err != want)
        fail_msg("%s: got %s (%s), want %s", rel, brk_strerror(err), info.msg,
                 brk_strerror(want));
    assert_ptr_equal(m, sentinel);
    if (msg != NULL)
        assert_string_equal(info.msg, msg);
}

/* A one-endpoint file whose response has extra (a line of fields). */
#define MINI(extra)                                                            \
    "{\"endpoints\": [{\n"                                                     \
    "  \"path\": \"/cgi-bin/a\",\n"                                            \
    "  \"method\": \"GET\",\n"                                                 \
    "  \"scope\": \"contact:base:base\",\n"                                    \
    "  \"response\": {\n"                                                      \
    "    \"errcode\": {\"type\": \"integer\", \"perm\": \"always\"},\n"        \
    "    \"errmsg\": {\"type\": \"string\", \"perm\": \"always\"},\n"          \
    "    " extra "\n"                                                          \
    "  }\n"                                                                    \
    "}]}\n"

/* Write MINI(extra) to name and expect "FILE:L:C: msg" at needle. */
static void
expect_mini_error(const char *name, const char *content, const char *needle,
                  const char *msg)
{
    char path[PATH_MAX], lc[32], want[PATH_MAX + 256];

    write_file(name, content);
    tmp_path(path, sizeof(path), name);
    pos_of(content, needle, lc, sizeof(lc));
    xsnprintf(want, sizeof(want), "%s:%s: %s", path, lc, msg);
    expect_error_msg(name, BRK_ERR_CONFIG, want);
}

/*---- Setup ----*/

static int
setup(void **state)
{
    static const char *const cands[] = {".", "..", "../..", "../../.."};
    const char *env = getenv("BROKER_SRCDIR");
    char probe[PATH_MAX];
    size_t i;

    (void)state;
    xsnprintf(tmpdir, sizeof(tmpdir), "/tmp/test_scope_map.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    srcroot[0] = '\0';
    if (env != NULL) {
        xsnprintf(srcroot, sizeof(srcroot), "%s", env);
        return 0;
    }
    for (i = 0; i < nitems(cands); i++) {
        xsnprintf(probe, sizeof(probe), "%s/tests/data/scope_map", cands[i]);
        if (access(probe, F_OK) == 0) {
            xsnprintf(srcroot, sizeof(srcroot), "%s", cands[i]);
            break;
        }
    }
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    brk_alloc_fail_at(0);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/*---- Shipped scopes ----*/

static void
test_shipped_scopes_load(void **state)
{
    struct scope_map *m;
    char dir[PATH_MAX], file[PATH_MAX + 64];
    struct brk_errinfo info;
    struct dirent *de;
    size_t files = 0;
    DIR *d;

    (void)state;
    m = load_shipped();
    assert_true(scope_map_count(m) >= 16);
    scope_map_free(m);
    /* each file also loads alone */
    root_path(dir, sizeof(dir), "scopes");
    d = opendir(dir);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);

        if (n <= 5 || strcmp(de->d_name + n - 5, ".json") != 0)
            continue;
        xsnprintf(file, sizeof(file), "%s/%s", dir, de->d_name);
        m = NULL;
        if (scope_map_load_file(file, &m, &info) != BRK_OK)
            fail_msg("%s", info.msg);
        assert_true(scope_map_count(m) + scope_events_count(m) > 0);
        scope_map_free(m);
        files++;
    }
    closedir(d);
    assert_true(files >= 5);
}

static void
test_every_spec_endpoint_present(void **state)
{
    static const struct {
        const char *path, *method, *scope;
    } spec[] = {
        {"/cgi-bin/user/get", "GET", B},
        {"/cgi-bin/user/simplelist", "GET", B},
        {"/cgi-bin/user/list", "GET", B},
        {"/cgi-bin/user/list_id", "POST", "contact:edit:all"},
        {"/cgi-bin/department/list", "GET", B},
        {"/cgi-bin/department/simplelist", "GET", B},
        {"/cgi-bin/department/get", "GET", B},
        {"/cgi-bin/tag/list", "GET", B},
        {"/cgi-bin/tag/get", "GET", B},
        {"/cgi-bin/externalcontact/get_follow_user_list", "GET", X},
        {"/cgi-bin/externalcontact/list", "GET", X},
        {"/cgi-bin/externalcontact/get", "GET", X},
        {"/cgi-bin/externalcontact/batch/get_by_user", "POST", X},
        {"/cgi-bin/externalcontact/groupchat/list", "POST", X},
        {"/cgi-bin/externalcontact/groupchat/get", "POST", X},
        {"/cgi-bin/agent/get", "GET", "always"},
    };
    struct scope_map *m = load_shipped();
    const struct scope_endpoint *e;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(spec); i++) {
        e = endpoint(m, spec[i].path);
        assert_string_equal(e->method, spec[i].method);
        assert_string_equal(scope_perm_name(e->scope), spec[i].scope);
        assert_non_null(e->file);
        assert_int_equal(e->root.type, SCOPE_T_OBJECT);
        assert_null(e->root.name);
        expect_perm(e, "errcode", "always");
        expect_perm(e, "errmsg", "always");
    }
    scope_map_free(m);
}

static void
check_sorted(const struct scope_node *n, const char *where)
{
    size_t i;

    for (i = 0; i < n->nfields; i++) {
        assert_non_null(n->fields[i].name);
        if (i > 0 && strcmp(n->fields[i - 1].name, n->fields[i].name) >= 0)
            fail_msg("%s: %s before %s", where, n->fields[i - 1].name,
                     n->fields[i].name);
        assert_true(n->fields[i].perm >= 0 &&
                    n->fields[i].perm < scope_perm_count());
        check_sorted(&n->fields[i], where);
    }
    if (n->type == SCOPE_T_ARRAY) {
        assert_non_null(n->items);
        assert_null(n->items->name);
        assert_int_equal(n->items->perm, SCOPE_PERM_ALWAYS);
        check_sorted(n->items, where);
    } else {
        assert_null(n->items);
    }
    if (n->type != SCOPE_T_OBJECT)
        assert_int_equal(n->nfields, 0);
}

static void
test_fields_sorted_everywhere(void **state)
{
    struct scope_map *m = load_shipped();
    const struct scope_endpoint *e, *prev = NULL;
    size_t i, k;

    (void)state;
    for (i = 0; i < scope_map_count(m); i++) {
        e = scope_map_at(m, i);
        if (prev != NULL)
            assert_true(strcmp(prev->path, e->path) < 0);
        check_sorted(&e->root, e->path);
        for (k = 1; k < e->nparams; k++)
            assert_true(strcmp(e->params[k - 1].name, e->params[k].name) < 0);
        prev = e;
    }
    assert_null(scope_map_at(m, scope_map_count(m)));
    scope_map_free(m);
}

static void
test_node_field_finds_and_misses(void **state)
{
    struct scope_map *m = load_shipped();
    const struct scope_endpoint *e = endpoint(m, "/cgi-bin/user/get");
    const struct scope_node *n;
    const char buf[] = "useridXYZ";
    size_t i;

    (void)state;
    /* every declared child is found by its own name */
    for (i = 0; i < e->root.nfields; i++) {
        n = scope_node_field(&e->root, e->root.fields[i].name,
                             strlen(e->root.fields[i].name));
        assert_ptr_equal(n, &e->root.fields[i]);
    }
    /* counted names need no terminator */
    n = scope_node_field(&e->root, buf, 6);
    assert_non_null(n);
    assert_string_equal(n->name, "userid");
    /* prefixes, extensions, case, empty: misses */
    assert_null(scope_node_field(&e->root, buf, 5));
    assert_null(scope_node_field(&e->root, buf, 7));
    assert_null(scope_node_field(&e->root, "UserId", 6));
    assert_null(scope_node_field(&e->root, "", 0));
    assert_null(scope_node_field(&e->root, "zzzz", 4));
    assert_null(scope_node_field(&e->root, "a", 1));
    assert_null(scope_node_field(&e->root, "mock_internal_note", 18));
    /* an embedded NUL does not match the shorter name */
    assert_null(scope_node_field(&e->root, "userid\0x", 8));
    /* only objects have fields */
    n = scope_node_field(&e->root, "department", 10);
    assert_non_null(n);
    assert_null(scope_node_field(n, "department", 10));
    assert_null(scope_node_field(NULL, "userid", 6));
    scope_map_free(m);
}

static void
test_map_find_and_params(void **state)
{
    struct scope_map *m = load_shipped();
    const struct scope_endpoint *e;
    const struct scope_param *p;

    (void)state;
    assert_null(scope_map_find(m, "/cgi-bin/user/get?userid=a"));
    assert_null(scope_map_find(m, "/cgi-bin/user/get/"));
    assert_null(scope_map_find(m, "/cgi-bin/user/update"));
    assert_null(scope_map_find(m, "/cgi-bin/gettoken"));
    assert_null(scope_map_find(m, ""));
    assert_null(scope_map_find(NULL, "/cgi-bin/user/get"));
    assert_null(scope_map_find(m, NULL));

    e = endpoint(m, "/cgi-bin/user/get");
    p = scope_endpoint_param(e, "userid");
    assert_non_null(p);
    assert_int_equal(p->kind, SCOPE_P_MEMBER);
    assert_int_equal(p->type, SCOPE_T_STRING);
    assert_true(p->required);
    assert_null(scope_endpoint_param(e, "access_token"));
    assert_null(scope_endpoint_param(e, "user"));

    e = endpoint(m, "/cgi-bin/externalcontact/groupchat/list");
    p = scope_endpoint_param(e, "owner_filter.userid_list");
    assert_non_null(p);
    assert_int_equal(p->kind, SCOPE_P_MEMBER_LIST);
    assert_int_equal(p->type, SCOPE_T_ARRAY);
    assert_null(scope_endpoint_param(e, "owner_filter"));
    p = scope_endpoint_param(e, "status_filter");
    assert_non_null(p);
    assert_int_equal(p->kind, SCOPE_P_PLAIN);
    assert_false(p->required);

    e = endpoint(m, "/cgi-bin/tag/list");
    assert_int_equal(e->nparams, 0);
    assert_null(scope_endpoint_param(e, "tagid"));
    scope_map_free(m);
}

/* SPEC §6: each subject parameter, with its kind, where it is declared. */
static void
test_subject_params(void **state)
{
    static const struct {
        const char *path, *param;
        enum scope_param_kind kind;
        int required;
    } want[] = {
        {"/cgi-bin/user/get", "userid", SCOPE_P_MEMBER, 1},
        {"/cgi-bin/user/simplelist", "department_id", SCOPE_P_DEPARTMENT, 1},
        {"/cgi-bin/user/list", "department_id", SCOPE_P_DEPARTMENT, 1},
        {"/cgi-bin/department/list", "id", SCOPE_P_DEPARTMENT, 0},
        {"/cgi-bin/department/simplelist", "id", SCOPE_P_DEPARTMENT, 0},
        {"/cgi-bin/department/get", "id", SCOPE_P_DEPARTMENT, 1},
        {"/cgi-bin/tag/get", "tagid", SCOPE_P_TAG, 1},
        {"/cgi-bin/externalcontact/list", "userid", SCOPE_P_MEMBER, 1},
        {"/cgi-bin/externalcontact/get", "external_userid", SCOPE_P_CUSTOMER,
         1},
        {"/cgi-bin/externalcontact/batch/get_by_user", "userid_list",
         SCOPE_P_MEMBER_LIST, 1},
        {"/cgi-bin/externalcontact/groupchat/list", "owner_filter.userid_list",
         SCOPE_P_MEMBER_LIST, 1},
        {"/cgi-bin/externalcontact/groupchat/get", "chat_id", SCOPE_P_CHAT, 1},
    };
    struct scope_map *m = load_shipped();
    const struct scope_param *p;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(want); i++) {
        p = scope_endpoint_param(endpoint(m, want[i].path), want[i].param);
        if (p == NULL)
            fail_msg("%s: no %s", want[i].path, want[i].param);
        assert_int_equal(p->kind, want[i].kind);
        assert_int_equal(p->required, want[i].required);
    }
    scope_map_free(m);
}

static void
test_shipped_records(void **state)
{
    struct scope_map *m = load_shipped();

    (void)state;
    expect_record(endpoint(m, "/cgi-bin/user/list"), "userlist.[]",
                  SCOPE_REC_MEMBER, "userid");
    expect_record(endpoint(m, "/cgi-bin/user/simplelist"), "userlist.[]",
                  SCOPE_REC_MEMBER, "userid");
    expect_record(endpoint(m, "/cgi-bin/user/list_id"), "dept_user.[]",
                  SCOPE_REC_MEMBER, "open_userid");
    expect_record(endpoint(m, "/cgi-bin/user/get"), "direct_leader.[]",
                  SCOPE_REC_MEMBER, NULL);
    expect_record(endpoint(m, "/cgi-bin/user/get"), "department.[]",
                  SCOPE_REC_NONE, NULL);
    expect_record(endpoint(m, "/cgi-bin/department/list"), "department.[]",
                  SCOPE_REC_DEPARTMENT, "id");
    expect_record(endpoint(m, "/cgi-bin/department/simplelist"),
                  "department_id.[]", SCOPE_REC_DEPARTMENT, "id");
    expect_record(endpoint(m, "/cgi-bin/department/get"), "department",
                  SCOPE_REC_DEPARTMENT, "id");
    expect_record(endpoint(m, "/cgi-bin/tag/list"), "taglist.[]", SCOPE_REC_TAG,
                  "tagid");
    expect_record(endpoint(m, "/cgi-bin/tag/get"), "userlist.[]",
                  SCOPE_REC_MEMBER, "userid");
    expect_record(endpoint(m, "/cgi-bin/tag/get"), "partylist.[]",
                  SCOPE_REC_DEPARTMENT, NULL);
    expect_record(endpoint(m, "/cgi-bin/externalcontact/get_follow_user_list"),
                  "follow_user.[]", SCOPE_REC_MEMBER, NULL);
    expect_record(endpoint(m, "/cgi-bin/externalcontact/get"), "follow_user.[]",
                  SCOPE_REC_FOLLOW_USER, "userid");
    expect_record(endpoint(m, "/cgi-bin/externalcontact/batch/get_by_user"),
                  "external_contact_list.[]", SCOPE_REC_FOLLOW_USER,
                  "follow_info.userid");
    expect_record(endpoint(m, "/cgi-bin/externalcontact/groupchat/get"),
                  "group_chat", SCOPE_REC_CHAT, "owner");
    expect_record(endpoint(m, "/cgi-bin/externalcontact/groupchat/get"),
                  "group_chat.member_list.[]", SCOPE_REC_CHAT_MEMBER, "userid");
    expect_record(endpoint(m, "/cgi-bin/agent/get"), "allow_userinfos.user.[]",
                  SCOPE_REC_MEMBER, "userid");
    expect_record(endpoint(m, "/cgi-bin/agent/get"), "allow_partys.partyid.[]",
                  SCOPE_REC_DEPARTMENT, NULL);
    expect_record(endpoint(m, "/cgi-bin/agent/get"), "allow_tags.tagid.[]",
                  SCOPE_REC_TAG, NULL);
    scope_map_free(m);
}

/* The legend of wecom-protocol.md §4 applied to the member fields. */
static void
test_member_field_tags(void **state)
{
    static const struct {
        const char *field, *perm;
    } want[] = {
        {"userid", B},
        {"open_userid", B},
        {"name", "never"},
        {"department", B},
        {"order", B},
        {"main_department", B},
        {"status", B},
        {"is_leader_in_dept", "corp_arch:base:base"},
        {"direct_leader", "corp_arch:member:direct_leader"},
        {"position", "never"},
        {"mobile", "never"},
        {"gender", "contact:sensitive:gender"},
        {"email", "never"},
        {"biz_mail", "never"},
        {"avatar", "contact:sensitive:avatar"},
        {"thumb_avatar", "contact:sensitive:avatar"},
        {"telephone", "never"},
        {"alias", "never"},
        {"address", "never"},
        {"extattr", "never"},
        {"qr_code", "contact:sensitive:qrcode"},
        {"external_position", "never"},
        {"external_profile", "never"},
    };
    struct scope_map *m = load_shipped();
    const struct scope_endpoint *get = endpoint(m, "/cgi-bin/user/get");
    const struct scope_endpoint *list = endpoint(m, "/cgi-bin/user/list");
    char path[64];
    size_t i;

    (void)state;
    for (i = 0; i < nitems(want); i++) {
        expect_perm(get, want[i].field, want[i].perm);
        xsnprintf(path, sizeof(path), "userlist.[].%s", want[i].field);
        expect_perm(list, path, want[i].perm);
    }
    /* user/get and one user/list item declare the same fields */
    assert_int_equal(get->root.nfields, nitems(want) + 2);
    assert_int_equal(node_at(list, "userlist.[]")->nfields, nitems(want));
    scope_map_free(m);
}

static void
test_external_field_tags(void **state)
{
    struct scope_map *m = load_shipped();
    const struct scope_endpoint *get =
        endpoint(m, "/cgi-bin/externalcontact/get");
    const struct scope_endpoint *batch =
        endpoint(m, "/cgi-bin/externalcontact/batch/get_by_user");
    const struct scope_endpoint *chat =
        endpoint(m, "/cgi-bin/externalcontact/groupchat/get");

    (void)state;
    expect_perm(get, "external_contact.name", X);
    expect_perm(get, "external_contact.avatar", "never");
    expect_perm(get, "external_contact.gender", "never");
    expect_perm(get, "external_contact.unionid", "never");
    expect_perm(get, "follow_user.[].remark", X);
    expect_perm(get, "follow_user.[].remark_mobiles", "never");
    expect_perm(get, "follow_user.[].tags.[].tag_id", X);
    expect_perm(get, "next_cursor", "always");
    expect_perm(batch, "external_contact_list.[].external_contact.unionid",
                "never");
    expect_perm(batch, "external_contact_list.[].follow_info.remark_mobiles",
                "never");
    expect_perm(batch, "external_contact_list.[].follow_info.tag_id", X);
    expect_perm(chat, "group_chat.member_list.[].unionid", "never");
    expect_perm(chat, "group_chat.member_list.[].type", X);
    scope_map_free(m);
}

/*---- Permissions ----*/

static void
test_perm_table(void **state)
{
    int i, n = scope_perm_count();

    (void)state;
    assert_int_equal(scope_perm_id("always"), SCOPE_PERM_ALWAYS);
    assert_int_equal(scope_perm_id("never"), SCOPE_PERM_NEVER);
    assert_string_equal(scope_perm_name(SCOPE_PERM_ALWAYS), "always");
    assert_string_equal(scope_perm_name(SCOPE_PERM_NEVER), "never");
    assert_true(n > 2 && n <= SCOPE_PERM_MAX);
    for (i = 0; i < n; i++) {
        assert_non_null(scope_perm_name(i));
        assert_int_equal(scope_perm_id(scope_perm_name(i)), i);
    }
    assert_null(scope_perm_name(n));
    assert_null(scope_perm_name(-1));
    assert_int_equal(scope_perm_id("contact:base"), -1);
    assert_int_equal(scope_perm_id("CONTACT:BASE:BASE"), -1);
    assert_int_equal(scope_perm_id("contacts.read"), -1);
    assert_int_equal(scope_perm_id(""), -1);
    assert_int_equal(scope_perm_id(NULL), -1);
}

/* wecom-protocol.md §2.10, every string. */
static const char *const protocol_perms[] = {
    "contact:base:base",
    "contact:base:single_user",
    "contact:edit:all",
    "contact:sensitive:avatar",
    "contact:sensitive:qrcode",
    "contact:sensitive:gender",
    "contact:sensitive:user_name",
    "contact:sensitive:mobile",
    "contact:sensitive:department_name",
    "contact:sensitive:email",
    "contact:sensitive:position",
    "contact:sensitive:telephone",
    "contact:sensitive:address",
    "contact:sensitive:extattr",
    "contact:sensitive:external_profile",
    "contact:sensitive:external_position",
    "contact:sensitive:biz_mail",
    "corp_arch:base:base",
    "corp_arch:member:direct_leader",
    "externalcontact:base:base",
    "externalcontact:contact:tag",
    "externalcontact:contact:group_msg",
    "externalcontact:contact:welcome_msg",
    "externalcontact:contact:qrcode",
    "externalcontact:contact:transfer",
    "externalcontact:contact:resigned",
    "externalcontact:contact:stat",
};

static void
test_protocol_permissions_known(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < nitems(protocol_perms); i++)
        if (scope_perm_id(protocol_perms[i]) < 2)
            fail_msg("%s unknown", protocol_perms[i]);
    assert_int_equal(scope_perm_count(), nitems(protocol_perms) + 2);
}

/* The permissions a name adds to an empty grant, as a list of names. */
static void
expect_expansion(const char *name, const char *const *want, size_t nwant)
{
    struct scope_grant g;
    size_t i, found = 0;
    int id;

    scope_grant_clear(&g);
    assert_int_equal(scope_grant_add_name(&g, name), BRK_OK);
    for (i = 0; i < nwant; i++)
        if (!scope_grant_has(&g, scope_perm_id(want[i])))
            fail_msg("%s lacks %s", name, want[i]);
    for (id = 2; id < SCOPE_PERM_MAX; id++)
        found += scope_grant_has(&g, id) != 0;
    if (found != nwant)
        fail_msg("%s adds %zu permissions, want %zu", name, found, nwant);
    assert_true(scope_grant_has(&g, SCOPE_PERM_ALWAYS));
    assert_false(scope_grant_has(&g, SCOPE_PERM_NEVER));
}

static void
test_alias_contacts_read(void **state)
{
    static const char *const want[] = {"contact:base:base"};

    (void)state;
    assert_true(scope_is_alias("contacts.read"));
    expect_expansion("contacts.read", want, nitems(want));
}

static void
test_alias_member_sensitive(void **state)
{
    const char *want[32];
    size_t i, n = 0;

    (void)state;
    for (i = 0; i < nitems(protocol_perms); i++)
        if (strncmp(protocol_perms[i], "contact:sensitive:", 18) == 0)
            want[n++] = protocol_perms[i];
    assert_int_equal(n, 14);
    assert_true(scope_is_alias("member.sensitive"));
    expect_expansion("member.sensitive", want, n);
}

static void
test_alias_external_customers(void **state)
{
    static const char *const want[] = {"externalcontact:base:base"};

    (void)state;
    assert_true(scope_is_alias("external.customers"));
    expect_expansion("external.customers", want, nitems(want));
}

static void
test_edit_all_implies_base(void **state)
{
    static const char *const want[] = {"contact:edit:all", "contact:base:base"};
    static const char *const single[] = {"contact:sensitive:mobile"};

    (void)state;
    assert_false(scope_is_alias("contact:edit:all"));
    expect_expansion("contact:edit:all", want, nitems(want));
    expect_expansion("contact:sensitive:mobile", single, nitems(single));
}

static void
test_add_name_refuses(void **state)
{
    struct scope_grant g, empty;
    size_t i;
    static const char *const bad[] = {
        "always",
        "never",
        "contacts",
        "contact:base",
        "Contacts.Read",
        "member.sensitive ",
        "",
        "contact:sensitive:*",
    };

    (void)state;
    scope_grant_clear(&g);
    scope_grant_clear(&empty);
    for (i = 0; i < nitems(bad); i++)
        assert_int_equal(scope_grant_add_name(&g, bad[i]), BRK_ERR_NOTFOUND);
    assert_int_equal(scope_grant_add_name(&g, NULL), BRK_ERR_NOTFOUND);
    assert_memory_equal(&g, &empty, sizeof(g));
    assert_false(scope_is_alias("contact:base:base"));
    assert_false(scope_is_alias("never"));
    assert_false(scope_is_alias(NULL));
    assert_false(scope_is_alias(""));
}

static void
test_alias_listing(void **state)
{
    size_t i;

    (void)state;
    assert_int_equal(scope_alias_count(), 3);
    for (i = 0; i < scope_alias_count(); i++) {
        assert_non_null(scope_alias_name(i));
        assert_true(scope_is_alias(scope_alias_name(i)));
        assert_int_equal(scope_perm_id(scope_alias_name(i)), -1);
    }
    assert_null(scope_alias_name(scope_alias_count()));
    assert_string_equal(scope_alias_name(0), "contacts.read");
}

static void
test_grant_bitset_ops(void **state)
{
    struct scope_grant a, b, g;
    int i;

    (void)state;
    scope_grant_clear(&a);
    for (i = 0; i < SCOPE_PERM_MAX; i++)
        assert_int_equal(scope_grant_has(&a, i), i == SCOPE_PERM_ALWAYS);
    /* bits on both words, the edges included */
    scope_grant_add(&a, 2);
    scope_grant_add(&a, 63);
    scope_grant_add(&a, 64);
    scope_grant_add(&a, SCOPE_PERM_MAX - 1);
    assert_true(scope_grant_has(&a, 2));
    assert_true(scope_grant_has(&a, 63));
    assert_true(scope_grant_has(&a, 64));
    assert_true(scope_grant_has(&a, SCOPE_PERM_MAX - 1));
    assert_false(scope_grant_has(&a, 3));
    assert_false(scope_grant_has(&a, 62));
    assert_false(scope_grant_has(&a, 65));
    /* out of range: ignored, never granted */
    scope_grant_add(&a, -1);
    scope_grant_add(&a, SCOPE_PERM_MAX);
    assert_false(scope_grant_has(&a, -1));
    assert_false(scope_grant_has(&a, SCOPE_PERM_MAX));
    assert_false(scope_grant_has(&a, 100000));
    /* NEVER cannot be granted */
    scope_grant_add(&a, SCOPE_PERM_NEVER);
    assert_false(scope_grant_has(&a, SCOPE_PERM_NEVER));
    /* intersection */
    scope_grant_clear(&b);
    scope_grant_add(&b, 63);
    scope_grant_add(&b, 5);
    scope_grant_add(&b, SCOPE_PERM_MAX - 1);
    scope_grant_intersect(&g, &a, &b);
    assert_true(scope_grant_has(&g, 63));
    assert_true(scope_grant_has(&g, SCOPE_PERM_MAX - 1));
    assert_false(scope_grant_has(&g, 2));
    assert_false(scope_grant_has(&g, 64));
    assert_false(scope_grant_has(&g, 5));
    assert_true(scope_grant_has(&g, SCOPE_PERM_ALWAYS));
    /* in place */
    scope_grant_intersect(&a, &a, &b);
    assert_memory_equal(&a, &g, sizeof(a));
    scope_grant_clear(&a);
    scope_grant_intersect(&g, &g, &a);
    for (i = 1; i < SCOPE_PERM_MAX; i++)
        assert_false(scope_grant_has(&g, i));
}

/* Tenant grant ∩ service scopes, as the service API builds it. */
static void
test_grant_tenant_and_service(void **state)
{
    struct scope_grant tenant, service, eff;

    (void)state;
    scope_grant_clear(&tenant);
    scope_grant_clear(&service);
    assert_int_equal(scope_grant_add_name(&tenant, "contact:base:base"),
                     BRK_OK);
    assert_int_equal(scope_grant_add_name(&tenant, "contact:sensitive:avatar"),
                     BRK_OK);
    assert_int_equal(scope_grant_add_name(&tenant, "externalcontact:base:base"),
                     BRK_OK);
    assert_int_equal(scope_grant_add_name(&service, "contacts.read"), BRK_OK);
    assert_int_equal(scope_grant_add_name(&service, "member.sensitive"),
                     BRK_OK);
    scope_grant_intersect(&eff, &tenant, &service);
    assert_true(scope_grant_has(&eff, scope_perm_id("contact:base:base")));
    assert_true(
        scope_grant_has(&eff, scope_perm_id("contact:sensitive:avatar")));
    assert_false(
        scope_grant_has(&eff, scope_perm_id("contact:sensitive:mobile")));
    assert_false(
        scope_grant_has(&eff, scope_perm_id("externalcontact:base:base")));
}

static void
test_names(void **state)
{
    (void)state;
    assert_string_equal(scope_type_name(SCOPE_T_STRING), "string");
    assert_string_equal(scope_type_name(SCOPE_T_INTEGER), "integer");
    assert_string_equal(scope_type_name(SCOPE_T_NUMBER), "number");
    assert_string_equal(scope_type_name(SCOPE_T_BOOL), "boolean");
    assert_string_equal(scope_type_name(SCOPE_T_OBJECT), "object");
    assert_string_equal(scope_type_name(SCOPE_T_ARRAY), "array");
    assert_null(scope_type_name((enum scope_type)99));
    assert_null(scope_record_name(SCOPE_REC_NONE));
    assert_string_equal(scope_record_name(SCOPE_REC_MEMBER), "member");
    assert_string_equal(scope_record_name(SCOPE_REC_CHAT_MEMBER),
                        "chat_member");
    assert_string_equal(scope_record_name(SCOPE_REC_CHAT), "chat");
    assert_null(scope_record_name((enum scope_record)99));
    assert_string_equal(scope_param_kind_name(SCOPE_P_PLAIN), "plain");
    assert_string_equal(scope_param_kind_name(SCOPE_P_MEMBER_LIST),
                        "member_list");
    assert_null(scope_param_kind_name((enum scope_param_kind)99));
}

/*---- Writes ----*/

/* A one-write file whose body is body (a line of keys). */
#define WMINI(ep, body)                                                        \
    "{\"endpoints\": [{\n"                                                     \
    "  \"path\": \"/cgi-bin/w\",\n"                                            \
    "  \"method\": \"POST\",\n"                                                \
    "  \"scope\": \"externalcontact:base:base\",\n"                            \
    "  " ep "\n"                                                               \
    "  \"body\": {" body "},\n"                                                \
    "  \"response\": {\n"                                                      \
    "    \"errcode\": {\"type\": \"integer\", \"perm\": \"always\"},\n"        \
    "    \"errmsg\": {\"type\": \"string\", \"perm\": \"always\"}\n"           \
    "  }\n"                                                                    \
    "}]}\n"

static void
test_write_shipped(void **state)
{
    struct scope_map *m = load_shipped();
    static const char *const writes[] = {
        "/cgi-bin/externalcontact/remark",
        "/cgi-bin/externalcontact/mark_tag",
        "/cgi-bin/externalcontact/add_corp_tag",
        "/cgi-bin/externalcontact/edit_corp_tag",
        "/cgi-bin/externalcontact/del_corp_tag",
        "/cgi-bin/externalcontact/send_welcome_msg",
        "/cgi-bin/externalcontact/add_msg_template",
        "/cgi-bin/externalcontact/add_contact_way",
        "/cgi-bin/externalcontact/get_contact_way",
        "/cgi-bin/externalcontact/update_contact_way",
        "/cgi-bin/externalcontact/del_contact_way"};
    const struct scope_endpoint *e;
    const struct scope_body *b, *att;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(writes); i++) {
        e = endpoint(m, writes[i]);
        assert_true(e->write);
        assert_non_null(capability_name(e->capability));
        assert_true(e->body.nfields > 0);
    }
    e = endpoint(m, "/cgi-bin/externalcontact/get_corp_tag_list");
    assert_false(e->write);
    e = endpoint(m, "/cgi-bin/user/get");
    assert_false(e->write);
    assert_int_equal(e->body.nfields, 0);
    e = endpoint(m, "/cgi-bin/externalcontact/remark");
    assert_int_equal(e->capability, CAP_EXTERNAL_WRITE);
    b = scope_body_field(&e->body, "userid", 6);
    assert_non_null(b);
    assert_true(b->required);
    assert_int_equal(b->subject, SCOPE_S_MEMBER);
    b = scope_body_field(&e->body, "remark", 6);
    assert_int_equal(b->max_len, 20);
    e = endpoint(m, "/cgi-bin/externalcontact/send_welcome_msg");
    assert_int_equal(e->capability, CAP_EXTERNAL_WELCOME);
    att = scope_body_field(&e->body, "attachments", 11);
    assert_int_equal(att->max_items, 9);
    b = scope_body_field(att->items, "msgtype", 7);
    assert_int_equal(b->nenum, 5);
    e = endpoint(m, "/cgi-bin/externalcontact/add_msg_template");
    b = scope_body_field(&e->body, "external_userid", 15);
    assert_int_equal(b->max_items, 10000);
    assert_int_equal(b->subject, SCOPE_S_NONE);
    assert_int_equal(b->items->subject, SCOPE_S_CUSTOMER);
    e = endpoint(m, "/cgi-bin/externalcontact/add_contact_way");
    assert_int_equal(e->creates, SCOPE_C_CONTACT_WAY);
    b = scope_body_field(&e->body, "party", 5);
    assert_int_equal(b->items->subject, SCOPE_S_DEPARTMENT);
    assert_int_equal(b->items->type, SCOPE_T_INTEGER);
    scope_map_free(m);
}

static void
test_write_refusals(void **state)
{
    (void)state;
    expect_mini_error(
        "w_nocap.json",
        WMINI("\"write\": true,", "\"a\": {\"type\": \"string\"}"),
        "{\n  \"path\"", "a write declares \"capability\"");
    expect_mini_error("w_badcap.json",
                      WMINI("\"write\": true, \"capability\": \"external.rw\",",
                            "\"a\": {\"type\": \"string\"}"),
                      "\"capability\"", "unknown capability \"external.rw\"");
    expect_mini_error(
        "w_readbody.json",
        WMINI("\"capability\": \"external.write\",",
              "\"a\": {\"type\": \"string\"}"),
        "\"capability\"",
        "only a write (\"write\": true) declares \"capability\", \"body\", "
        "\"multipart\" or \"creates\"");
    expect_mini_error(
        "w_maxlen.json",
        WMINI("\"write\": true, \"capability\": \"external.write\",",
              "\"a\": {\"type\": \"integer\", \"max_len\": 3}"),
        "\"max_len\"", "\"max_len\" is for strings");
    expect_mini_error(
        "w_subject_type.json",
        WMINI("\"write\": true, \"capability\": \"external.write\",",
              "\"a\": {\"type\": \"string\", \"subject\": \"department\"}"),
        "\"type\": \"string\", \"subject\"", "a department must be integer");
    expect_mini_error(
        "w_list_on_scalar.json",
        WMINI("\"write\": true, \"capability\": \"external.write\",",
              "\"a\": {\"type\": \"string\", \"subject\": \"member_list\"}"),
        "\"subject\"", "a list subject is for arrays");
    expect_mini_error(
        "w_enum_type.json",
        WMINI("\"write\": true, \"capability\": \"external.write\",",
              "\"a\": {\"type\": \"string\", \"enum\": [1]}"),
        "\"enum\"", "enum values must be strings");
    expect_mini_error(
        "w_unknown.json",
        WMINI("\"write\": true, \"capability\": \"external.write\",",
              "\"a\": {\"type\": \"string\", \"perm\": \"always\"}"),
        "\"perm\"", "unknown key \"perm\"");
    expect_mini_error(
        "w_item_required.json",
        WMINI("\"write\": true, \"capability\": \"external.write\",",
              "\"a\": {\"type\": \"array\", \"items\": {\"type\": "
              "\"string\", \"required\": true}}"),
        "\"required\"", "array items cannot be \"required\"");
}

/* media/upload: a multipart write any writer may call, its type an enum */
static void
test_write_media(void **state)
{
    struct scope_map *m = load_shipped();
    const struct scope_endpoint *e = endpoint(m, "/cgi-bin/media/upload");
    const struct scope_param *p;

    (void)state;
    assert_true(e->write);
    assert_true(e->multipart);
    assert_int_equal(e->body.nfields, 0);
    assert_int_equal(e->capability, CAP_EXTERNAL_WRITE | CAP_EXTERNAL_MESSAGE |
                                        CAP_EXTERNAL_WELCOME);
    p = scope_endpoint_param(e, "type");
    assert_non_null(p);
    assert_true(p->required);
    assert_int_equal(p->nenums, 4);
    assert_string_equal(p->enums[0], "image");
    assert_string_equal(p->enums[3], "file");
    assert_int_equal(endpoint(m, "/cgi-bin/externalcontact/remark")->multipart,
                     0);
    scope_map_free(m);
}

/* A one-write file with ep's keys and no body. */
#define WMP(ep)                                                                \
    "{\"endpoints\": [{\n"                                                     \
    "  \"path\": \"/cgi-bin/w\",\n"                                            \
    "  \"method\": \"POST\",\n"                                                \
    "  \"scope\": \"always\",\n"                                               \
    "  " ep "\n"                                                               \
    "  \"response\": {\n"                                                      \
    "    \"errcode\": {\"type\": \"integer\", \"perm\": \"always\"},\n"        \
    "    \"errmsg\": {\"type\": \"string\", \"perm\": \"always\"}\n"           \
    "  }\n"                                                                    \
    "}]}\n"

static void
test_write_media_refusals(void **state)
{
    (void)state;
    expect_mini_error("mp_both.json",
                      WMINI("\"write\": true, \"capability\": "
                            "\"external.write\", \"multipart\": true,",
                            "\"a\": {\"type\": \"string\"}"),
                      "{\n  \"path\"",
                      "a write declares one of \"body\" and \"multipart\"");
    expect_mini_error("mp_neither.json",
                      WMP("\"write\": true, \"capability\": "
                          "\"external.write\","),
                      "{\n  \"path\"",
                      "a write declares one of \"body\" and \"multipart\"");
    expect_mini_error("mp_false.json",
                      WMP("\"write\": true, \"capability\": "
                          "\"external.write\", \"multipart\": false,"),
                      "\"multipart\"", "\"multipart\" is true or absent");
    expect_mini_error("mp_read.json", WMP("\"multipart\": true,"),
                      "\"multipart\"",
                      "only a write (\"write\": true) declares "
                      "\"capability\", \"body\", \"multipart\" or "
                      "\"creates\"");
    expect_mini_error("cap_empty.json",
                      WMP("\"write\": true, \"capability\": [], "
                          "\"multipart\": true,"),
                      "\"capability\"",
                      "\"capability\" is a name or an array of names");
    expect_mini_error("cap_unknown.json",
                      WMP("\"write\": true, \"capability\": "
                          "[\"external.write\", \"external.rw\"], "
                          "\"multipart\": true,"),
                      "\"capability\"", "unknown capability \"external.rw\"");
    expect_mini_error("cap_twice.json",
                      WMP("\"write\": true, \"capability\": "
                          "[\"external.write\", \"external.write\"], "
                          "\"multipart\": true,"),
                      "\"capability\"",
                      "capability \"external.write\" repeated");
    expect_mini_error("enum_int.json",
                      WMP("\"write\": true, \"capability\": "
                          "\"external.write\", \"multipart\": true, "
                          "\"params\": {\"t\": {\"type\": \"integer\", "
                          "\"enum\": [\"a\"]}},"),
                      "\"enum\"",
                      "an enum is 1..64 strings of a string parameter");
    expect_mini_error("enum_obj.json",
                      WMP("\"write\": true, \"capability\": "
                          "\"external.write\", \"multipart\": true, "
                          "\"params\": {\"t\": {\"type\": \"string\", "
                          "\"enum\": \"a\"}},"),
                      "\"enum\"", "\"enum\" is an array of strings");
    expect_mini_error("enum_val.json",
                      WMP("\"write\": true, \"capability\": "
                          "\"external.write\", \"multipart\": true, "
                          "\"params\": {\"t\": {\"type\": \"string\", "
                          "\"enum\": [\"\"]}},"),
                      "\"enum\"", "an enum value is a string of 1..64 bytes");
}

/*---- Refusals, each with its message ----*/

static void
test_unknown_key(void **state)
{
    (void)state;
    expect_mini_error(
        "unknown_key.json",
        MINI("\"userid\": {\"type\": \"string\", \"perm\": \"always\", "
             "\"prem\": \"always\"}"),
        "\"prem\"", "unknown key \"prem\"");
}

static void
test_unknown_endpoint_key(void **state)
{
    static const char text[] =
        "{\"endpoints\": [{\"path\": \"/cgi-bin/a\", \"method\": \"GET\",\n"
        "  \"scopes\": \"contact:base:base\", \"response\": {}}]}\n";

    (void)state;
    expect_mini_error("unknown_ep_key.json", text, "\"scopes\"",
                      "unknown key \"scopes\"");
}

static void
test_unknown_permission(void **state)
{
    (void)state;
    expect_mini_error("unknown_perm.json",
                      MINI("\"userid\": {\"type\": \"string\", \"perm\": "
                           "\"contact:base:bse\"}"),
                      "\"perm\": \"contact:base:bse\"",
                      "unknown permission \"contact:base:bse\"");
}

static void
test_alias_as_field_perm(void **state)
{
    (void)state;
    expect_mini_error("alias_perm.json",
                      MINI("\"avatar\": {\"type\": \"string\", \"perm\": "
                           "\"member.sensitive\"}"),
                      "\"perm\": \"member.sensitive\"",
                      "\"member.sensitive\" is an alias; name one permission");
}

static void
test_bad_json_type(void **state)
{
    (void)state;
    expect_mini_error("perm_number.json",
                      MINI("\"userid\": {\"type\": \"string\", \"perm\": 5}"),
                      "\"perm\": 5", "\"perm\" must be a string");
    expect_mini_error("node_string.json", MINI("\"userid\": \"string\""),
                      "\"userid\"",
                      "a field is an object: {\"type\": ..., \"perm\": "
                      "...}");
    expect_mini_error("unknown_type.json",
                      MINI("\"userid\": {\"type\": \"str\", \"perm\": "
                           "\"always\"}"),
                      "\"type\": \"str\"", "unknown type \"str\"");
}

static void
test_record_without_id(void **state)
{
    (void)state;
    expect_mini_error(
        "record_no_id.json",
        MINI("\"user\": {\"type\": \"object\", \"perm\": \"always\", "
             "\"record\": \"member\", \"fields\": {\"userid\": {\"type\": "
             "\"string\", \"perm\": \"always\"}}}"),
        "\"record\"", "a member record needs \"id\": the key holding its id");
}

static void
test_record_misplaced(void **state)
{
    (void)state;
    expect_mini_error("record_on_array.json",
                      MINI("\"ids\": {\"type\": \"array\", \"perm\": "
                           "\"always\", \"record\": \"member\", \"items\": "
                           "{\"type\": \"string\"}}"),
                      "\"record\"", "put \"record\" on the array's \"items\"");
    expect_mini_error("record_on_field.json",
                      MINI("\"userid\": {\"type\": \"string\", \"perm\": "
                           "\"always\", \"record\": \"member\"}"),
                      "\"record\"",
                      "\"record\" belongs on an object or on the items of an "
                      "id array");
}

static void
test_duplicate_json_key(void **state)
{
    static const char text[] =
        MINI("\"userid\": {\"type\": \"string\", \"perm\": \"always\", "
             "\"perm\": \"never\"}");
    struct scope_map *m = sentinel;
    struct brk_errinfo info;
    char path[PATH_MAX], want[PATH_MAX + 16];

    (void)state;
    write_file("dup_key.json", text);
    tmp_path(path, sizeof(path), "dup_key.json");
    assert_int_equal(scope_map_load_file(path, &m, &info), BRK_ERR_CONFIG);
    assert_ptr_equal(m, sentinel);
    xsnprintf(want, sizeof(want), "%s:8:", path);
    assert_true(strncmp(info.msg, want, strlen(want)) == 0);
    assert_non_null(strstr(info.msg, "duplicate object key"));
    assert_int_equal(info.line, 8);
}

static void
test_syntax_error_line_col(void **state)
{
    static const char text[] =
        MINI("\"userid\": {\"type\": \"string\" \"perm\": \"always\"}");
    struct scope_map *m = sentinel;
    struct brk_errinfo info;
    char path[PATH_MAX], want[PATH_MAX + 16];
    const char *line8;
    int col;

    (void)state;
    write_file("syntax.json", text);
    tmp_path(path, sizeof(path), "syntax.json");
    assert_int_equal(scope_map_load_file(path, &m, &info), BRK_ERR_CONFIG);
    assert_ptr_equal(m, sentinel);
    /* jansson places the error at the end of the unexpected token */
    line8 = strstr(text, "    \"userid\"");
    col = (int)(strstr(line8, "\"perm\"") - line8) + (int)strlen("\"perm\"");
    xsnprintf(want, sizeof(want), "%s:8:%d: ", path, col);
    if (strncmp(info.msg, want, strlen(want)) != 0)
        fail_msg("got %s, want prefix %s", info.msg, want);
    assert_non_null(strstr(info.msg, "expected near '\"perm\"'"));
    assert_int_equal(info.line, 8);
}

static void
test_duplicate_path_two_files(void **state)
{
    static const char a[] = MINI("\"x\": {\"type\": \"string\", \"perm\": "
                                 "\"always\"}");
    char dir[PATH_MAX], lc[32], want[PATH_MAX + 128];

    (void)state;
    fresh_dir("dup", dir, sizeof(dir));
    write_file("dup/a.json", a);
    write_file("dup/b.json", a);
    pos_of(a, "\"path\"", lc, sizeof(lc));
    xsnprintf(want, sizeof(want),
              "%s/b.json:%s: duplicate path /cgi-bin/a (also in a.json)", dir,
              lc);
    expect_error_msg("dup", BRK_ERR_CONFIG, want);
    /* each alone is fine */
    write_file("dup_ok/a.json", a);
    {
        struct scope_map *m = NULL;
        struct brk_errinfo info;
        char path[PATH_MAX];

        tmp_path(path, sizeof(path), "dup_ok");
        assert_int_equal(scope_map_load(path, &m, &info), BRK_OK);
        assert_int_equal(scope_map_count(m), 1);
        scope_map_free(m);
    }
}

static void
test_empty_dir(void **state)
{
    char dir[PATH_MAX], want[PATH_MAX + 64];

    (void)state;
    fresh_dir("empty", dir, sizeof(dir));
    xsnprintf(want, sizeof(want), "%s: no scope files (*.json)", dir);
    expect_error_msg("empty", BRK_ERR_CONFIG, want);
    /* only other files, hidden files and directories: still empty */
    write_file("empty/README.md", "notes\n");
    write_file("empty/.hidden.json", "{}");
    write_file("empty/sub.json/x.json", "{}");
    expect_error_msg("empty", BRK_ERR_CONFIG, want);
}

static void
test_missing_dir_and_file(void **state)
{
    struct scope_map *m = sentinel;
    struct brk_errinfo info;
    char path[PATH_MAX], want[PATH_MAX + 64];

    (void)state;
    tmp_path(path, sizeof(path), "no_such_dir");
    assert_int_equal(scope_map_load(path, &m, &info), BRK_ERR_IO);
    assert_ptr_equal(m, sentinel);
    xsnprintf(want, sizeof(want),
              "%s: cannot open directory: No such file or directory", path);
    assert_string_equal(info.msg, want);
    assert_int_equal(scope_map_load_file(path, &m, &info), BRK_ERR_IO);
    xsnprintf(want, sizeof(want), "%s: cannot open: No such file or directory",
              path);
    assert_string_equal(info.msg, want);
    /* a directory is not a scope file */
    tmp_path(path, sizeof(path), "");
    assert_int_equal(scope_map_load_file(path, &m, &info), BRK_ERR_IO);
    assert_ptr_equal(m, sentinel);
    assert_non_null(strstr(info.msg, "not a regular file"));
}

static void
test_file_too_big(void **state)
{
    struct scope_map *m = sentinel;
    struct brk_errinfo info;
    char path[PATH_MAX];
    FILE *f;

    (void)state;
    tmp_path(path, sizeof(path), "big.json");
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fseek(f, SCOPE_MAX_FILE, SEEK_SET), 0);
    fputc(' ', f);
    fclose(f);
    assert_int_equal(scope_map_load_file(path, &m, &info), BRK_ERR_TOOBIG);
    assert_ptr_equal(m, sentinel);
    assert_non_null(strstr(info.msg, "larger than"));
}

static void
test_trailing_slash_and_order(void **state)
{
    static const char a[] = "{\"endpoints\": [{\"path\": \"/cgi-bin/z\", "
                            "\"method\": \"GET\", \"scope\": \"always\",\n"
                            "\"response\": {\"errcode\": {\"type\": "
                            "\"integer\", \"perm\": \"always\"}, \"errmsg\": "
                            "{\"type\": \"string\", \"perm\": \"always\"}}}]}";
    static const char b[] = "{\"endpoints\": [{\"path\": \"/cgi-bin/a\", "
                            "\"method\": \"POST\", \"scope\": \"always\",\n"
                            "\"response\": {\"errcode\": {\"type\": "
                            "\"integer\", \"perm\": \"always\"}, \"errmsg\": "
                            "{\"type\": \"string\", \"perm\": \"always\"}}}]}";
    struct scope_map *m = NULL;
    struct brk_errinfo info;
    char dir[PATH_MAX], slash[PATH_MAX + 2];

    (void)state;
    fresh_dir("order", dir, sizeof(dir));
    write_file("order/1.json", a);
    write_file("order/2.json", b);
    xsnprintf(slash, sizeof(slash), "%s//", dir);
    if (scope_map_load(slash, &m, &info) != BRK_OK)
        fail_msg("%s", info.msg);
    assert_int_equal(scope_map_count(m), 2);
    /* sorted by path whatever the file order; files named without "//" */
    assert_string_equal(scope_map_at(m, 0)->path, "/cgi-bin/a");
    assert_string_equal(scope_map_at(m, 1)->path, "/cgi-bin/z");
    xsnprintf(slash, sizeof(slash), "%s/2.json", dir);
    assert_string_equal(scope_map_at(m, 0)->file, slash);
    assert_ptr_equal(scope_map_find(m, "/cgi-bin/z"), scope_map_at(m, 1));
    scope_map_free(m);
}

static void
test_free_null(void **state)
{
    (void)state;
    scope_map_free(NULL);
    assert_int_equal(scope_map_count(NULL), 0);
    assert_null(scope_map_at(NULL, 0));
    assert_null(scope_endpoint_param(NULL, "x"));
}

/*---- Data cases ----*/

/* A case dir holds scopes.json or scopes/ and, when invalid, error: a
 * substring the message must contain. A valid case may list its
 * endpoints' paths, one a line, in endpoints. */
static void
run_case(const char *kind_dir, const char *name, int valid, unsigned *count)
{
    struct scope_map *m = NULL;
    struct brk_errinfo info = {"", 0, -1};
    char base[PATH_MAX], path[PATH_MAX + 32], want[512], *nl;
    struct stat st;
    enum brk_err err;
    size_t i;
    FILE *f;

    xsnprintf(base, sizeof(base), "%s/%s", kind_dir, name);
    xsnprintf(path, sizeof(path), "%s/scopes", base);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        err = scope_map_load(path, &m, &info);
    } else {
        xsnprintf(path, sizeof(path), "%s/scopes.json", base);
        err = scope_map_load_file(path, &m, &info);
    }
    if (valid) {
        if (err != BRK_OK)
            fail_msg("%s: %s", name, info.msg);
        xsnprintf(path, sizeof(path), "%s/endpoints", base);
        f = fopen(path, "r");
        for (i = 0; f != NULL && fgets(want, sizeof(want), f) != NULL; i++) {
            nl = strchr(want, '\n');
            if (nl != NULL)
                *nl = '\0';
            if (scope_map_at(m, i) == NULL ||
                strcmp(scope_map_at(m, i)->path, want) != 0)
                fail_msg("%s: endpoint %zu is not %s", name, i, want);
        }
        if (f != NULL) {
            fclose(f);
            assert_int_equal(scope_map_count(m), i);
        }
        scope_map_free(m);
    } else {
        if (err == BRK_OK)
            fail_msg("%s: loaded, want an error", name);
        assert_null(m);
        xsnprintf(path, sizeof(path), "%s/error", base);
        f = fopen(path, "r");
        if (f == NULL || fgets(want, sizeof(want), f) == NULL)
            fail_msg("%s: no error file", name);
        fclose(f);
        nl = strchr(want, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (strstr(info.msg, want) == NULL)
            fail_msg("%s: message \"%s\" lacks \"%s\"", name, info.msg, want);
    }
    (*count)++;
}

static void
run_cases(const char *kind, int valid)
{
    char rel[64], dir[PATH_MAX];
    struct dirent **names = NULL;
    unsigned count = 0;
    int n, i;

    xsnprintf(rel, sizeof(rel), "tests/data/scope_map/%s", kind);
    root_path(dir, sizeof(dir), rel);
    n = scandir(dir, &names, NULL, alphasort);
    assert_true(n >= 0);
    for (i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.')
            run_case(dir, names[i]->d_name, valid, &count);
        free(names[i]);
    }
    free(names);
    print_message("%u %s cases\n", count, kind);
    assert_true(count > 0);
}

static void
test_data_valid_cases(void **state)
{
    (void)state;
    run_cases("valid", 1);
}

static void
test_data_invalid_cases(void **state)
{
    (void)state;
    run_cases("invalid", 0);
}

/*---- Allocation failures ----*/

/*
 * Fail each of the loader's allocations in turn: NOMEM every time, out
 * untouched, no leak (ASan), until the load needs no more. jansson's own
 * allocations are left alone: 2.14 aborts on an assertion in its lexer
 * (lex_scan_string) when one of them fails.
 */
static void
alloc_loop(int dir)
{
    struct scope_map *m;
    struct brk_errinfo info;
    char path[PATH_MAX];
    unsigned long n;
    enum brk_err err = BRK_ERR_NOMEM;

    root_path(path, sizeof(path),
              dir ? "scopes" : "scopes/externalcontact.json");
    for (n = 1; n < 100000; n++) {
        m = sentinel;
        brk_alloc_fail_at(n);
        err = dir ? scope_map_load(path, &m, &info)
                  : scope_map_load_file(path, &m, &info);
        if (err == BRK_OK) {
            /* success only once no allocation had to fail */
            assert_false(brk_alloc_failed());
            brk_alloc_fail_at(0);
            break;
        }
        brk_alloc_fail_at(0);
        if (err != BRK_ERR_NOMEM)
            fail_msg("n=%lu: %s: %s", n, brk_strerror(err), info.msg);
        assert_ptr_equal(m, sentinel);
        assert_string_equal(info.msg, "out of memory");
    }
    assert_int_equal(err, BRK_OK);
    assert_true(n > 50);
    assert_true(scope_map_count(m) >= (dir ? 16u : 6u));
    scope_map_free(m);
}

static void
test_alloc_failure_dir(void **state)
{
    (void)state;
    alloc_loop(1);
}

static void
test_alloc_failure_file(void **state)
{
    (void)state;
    alloc_loop(0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_scopes_load),
        cmocka_unit_test(test_every_spec_endpoint_present),
        cmocka_unit_test(test_fields_sorted_everywhere),
        cmocka_unit_test(test_node_field_finds_and_misses),
        cmocka_unit_test(test_map_find_and_params),
        cmocka_unit_test(test_subject_params),
        cmocka_unit_test(test_shipped_records),
        cmocka_unit_test(test_member_field_tags),
        cmocka_unit_test(test_external_field_tags),
        cmocka_unit_test(test_perm_table),
        cmocka_unit_test(test_protocol_permissions_known),
        cmocka_unit_test(test_alias_contacts_read),
        cmocka_unit_test(test_alias_member_sensitive),
        cmocka_unit_test(test_alias_external_customers),
        cmocka_unit_test(test_edit_all_implies_base),
        cmocka_unit_test(test_add_name_refuses),
        cmocka_unit_test(test_alias_listing),
        cmocka_unit_test(test_grant_bitset_ops),
        cmocka_unit_test(test_grant_tenant_and_service),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_unknown_endpoint_key),
        cmocka_unit_test(test_unknown_permission),
        cmocka_unit_test(test_alias_as_field_perm),
        cmocka_unit_test(test_bad_json_type),
        cmocka_unit_test(test_record_without_id),
        cmocka_unit_test(test_record_misplaced),
        cmocka_unit_test(test_duplicate_json_key),
        cmocka_unit_test(test_syntax_error_line_col),
        cmocka_unit_test(test_duplicate_path_two_files),
        cmocka_unit_test(test_empty_dir),
        cmocka_unit_test(test_missing_dir_and_file),
        cmocka_unit_test(test_file_too_big),
        cmocka_unit_test(test_trailing_slash_and_order),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_data_valid_cases),
        cmocka_unit_test(test_data_invalid_cases),
        cmocka_unit_test(test_alloc_failure_dir),
        cmocka_unit_test(test_alloc_failure_file),
        cmocka_unit_test(test_write_shipped),
        cmocka_unit_test(test_write_refusals),
        cmocka_unit_test(test_write_media),
        cmocka_unit_test(test_write_media_refusals),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
