/*
 * Tests for the event declarations (scopes/events.json): every event SPEC
 * §4 and §6b deliver is declared with its permission, capability, subject
 * and secrets; the loader's refusals of the event grammar, each at its
 * file:line:col; the event-only keys refused in endpoint trees; and
 * allocation failures while loading the shipped file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "capability.h"
#include "scope_events.h"
#include "scope_map.h"

static char srcroot[PATH_MAX];
static char tmpdir[PATH_MAX];

static struct scope_map *const sentinel =
    (struct scope_map *)(uintptr_t)0x5ca9e;

/*---- Helpers ----*/

static void
path_of(char *buf, size_t len, const char *base, const char *rel)
{
    if ((size_t)snprintf(buf, len, "%s/%s", base, rel) >= len)
        fail_msg("path too long");
}

static void
write_file(const char *rel, const char *content)
{
    char path[PATH_MAX];
    FILE *f;

    path_of(path, sizeof(path), tmpdir, rel);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(content, f) >= 0);
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

static struct scope_map *
load_shipped(void)
{
    struct brk_errinfo info = {"", 0, -1};
    struct scope_map *m = NULL;
    char dir[PATH_MAX];

    if (srcroot[0] == '\0')
        fail_msg("repository root not found (set BROKER_SRCDIR)");
    path_of(dir, sizeof(dir), srcroot, "scopes");
    if (scope_map_load(dir, &m, &info) != BRK_OK)
        fail_msg("%s", info.msg);
    return m;
}

static const struct scope_event *
event(const struct scope_map *m, const char *name)
{
    const struct scope_event *e = scope_events_lookup(m, name);

    if (e == NULL)
        fail_msg("event %s not declared", name);
    return e;
}

static const struct scope_node *
field(const struct scope_event *e, const char *name)
{
    const struct scope_node *n = scope_node_field(&e->root, name, strlen(name));

    if (n == NULL)
        fail_msg("%s: %s not declared", e->name, name);
    return n;
}

/* "LINE:COL" of the first needle in text. */
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
    snprintf(out, len, "%d:%d", line, col);
}

/* Write content as name; loading it fails with "FILE:L:C: msg" at needle. */
static void
expect_error(const char *name, const char *content, const char *needle,
             const char *msg)
{
    struct brk_errinfo info = {"", 0, -1};
    struct scope_map *m = sentinel;
    char path[PATH_MAX], lc[32], want[PATH_MAX + 256];
    enum brk_err err;

    write_file(name, content);
    path_of(path, sizeof(path), tmpdir, name);
    pos_of(content, needle, lc, sizeof(lc));
    snprintf(want, sizeof(want), "%s:%s: %s", path, lc, msg);
    err = scope_map_load_file(path, &m, &info);
    if (err != BRK_ERR_CONFIG)
        fail_msg("%s: got %s (%s)", name, brk_strerror(err), info.msg);
    assert_ptr_equal(m, sentinel);
    if (strcmp(info.msg, want) != 0)
        fail_msg("got \"%s\", want \"%s\"", info.msg, want);
}

/* A command event named NAME with extra fields and keys. */
#define EV(keys, name, extra)                                                  \
    "{\"events\": [{\n"                                                        \
    "  \"event\": \"" name "\",\n"                                             \
    "  \"scope\": \"contact:base:base\",\n" keys "  \"fields\": {\n"           \
    "    \"SuiteId\": {\"type\": \"string\", \"perm\": \"always\"},\n"         \
    "    \"AuthCorpId\": {\"type\": \"string\", \"perm\": \"always\"},\n"      \
    "    \"InfoType\": {\"type\": \"string\", \"perm\": \"always\"},\n"        \
    "    \"TimeStamp\": {\"type\": \"integer\", \"perm\": \"always\"}" extra   \
    "\n  }\n"                                                                  \
    "}]}\n"

static int
setup(void **state)
{
    static const char *const cands[] = {".", "..", "../..", "../../.."};
    const char *env = getenv("BROKER_SRCDIR");
    char probe[PATH_MAX];
    size_t i;

    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_scope_events.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    if (env != NULL) {
        snprintf(srcroot, sizeof(srcroot), "%s", env);
        return 0;
    }
    for (i = 0; i < nitems(cands); i++) {
        snprintf(probe, sizeof(probe), "%s/scopes/events.json", cands[i]);
        if (access(probe, F_OK) == 0) {
            snprintf(srcroot, sizeof(srcroot), "%s", cands[i]);
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

/*---- The shipped declarations ----*/

static void
test_every_delivered_event_declared(void **state)
{
    static const struct {
        const char *name, *scope;
        unsigned cap;
        const char *subject; /* the field naming it, or NULL */
        enum scope_record kind;
    } want[] = {
        {"create_auth", "always", 0, NULL, 0},
        {"change_auth", "always", 0, NULL, 0},
        {"cancel_auth", "always", 0, NULL, 0},
        {"change_contact/create_user", "contact:base:base", 0, "UserID",
         SCOPE_REC_MEMBER},
        {"change_contact/update_user", "contact:base:base", 0, "UserID",
         SCOPE_REC_MEMBER},
        {"change_contact/delete_user", "contact:base:base", 0, "UserID",
         SCOPE_REC_MEMBER},
        {"change_contact/create_party", "contact:base:base", 0, "Id",
         SCOPE_REC_DEPARTMENT},
        {"change_contact/update_party", "contact:base:base", 0, "Id",
         SCOPE_REC_DEPARTMENT},
        {"change_contact/delete_party", "contact:base:base", 0, "Id",
         SCOPE_REC_DEPARTMENT},
        {"change_contact/update_tag", "contact:base:base", 0, "TagId",
         SCOPE_REC_TAG},
        {"change_external_contact/add_external_contact",
         "externalcontact:base:base", 0, "UserID", SCOPE_REC_FOLLOW_USER},
        {"change_external_contact/edit_external_contact",
         "externalcontact:base:base", 0, "UserID", SCOPE_REC_FOLLOW_USER},
        {"change_external_contact/del_external_contact",
         "externalcontact:base:base", 0, "UserID", SCOPE_REC_FOLLOW_USER},
        {"change_external_contact/del_follow_user", "externalcontact:base:base",
         0, "UserID", SCOPE_REC_FOLLOW_USER},
        {"change_external_contact/add_half_external_contact",
         "externalcontact:base:base", 0, "UserID", SCOPE_REC_FOLLOW_USER},
        {"change_external_contact/transfer_fail", "externalcontact:base:base",
         0, "UserID", SCOPE_REC_FOLLOW_USER},
        {"change_external_chat/create", "externalcontact:base:base", 0,
         "ChatId", SCOPE_REC_CHAT},
        {"change_external_chat/update", "externalcontact:base:base", 0,
         "ChatId", SCOPE_REC_CHAT},
        {"change_external_chat/dismiss", "externalcontact:base:base", 0,
         "ChatId", SCOPE_REC_CHAT},
        {"change_external_tag/create", "externalcontact:base:base", 0, NULL, 0},
        {"change_external_tag/update", "externalcontact:base:base", 0, NULL, 0},
        {"change_external_tag/delete", "externalcontact:base:base", 0, NULL, 0},
        {"change_external_tag/shuffle", "externalcontact:base:base", 0, NULL,
         0},
        {"event/change_app_admin", "always", CAP_MESSAGES, NULL, 0},
        {"text", "always", CAP_MESSAGES, "FromUserName", SCOPE_REC_MEMBER},
    };
    struct scope_map *m = load_shipped();
    const struct scope_event *e;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(want); i++) {
        e = event(m, want[i].name);
        assert_string_equal(scope_perm_name(e->scope), want[i].scope);
        assert_int_equal(e->cap, want[i].cap);
        if (want[i].subject != NULL)
            assert_int_equal(field(e, want[i].subject)->subject, want[i].kind);
    }
    /* the prefix is optional; the data callbacks are data */
    assert_ptr_equal(scope_events_lookup(m, "event:text"),
                     scope_events_lookup(m, "text"));
    assert_int_equal(event(m, "text")->callback, SCOPE_CB_DATA);
    assert_null(scope_events_find(m, SCOPE_CB_COMMAND, "text"));
    /* what the broker keeps for itself is not declared */
    assert_null(scope_events_lookup(m, "suite_ticket"));
    assert_null(scope_events_lookup(m, "reset_permanent_code"));
    assert_true(event(m, "change_external_tag/create")->whole_tenant);
    assert_false(event(m, "change_external_chat/create")->whole_tenant);
    scope_map_free(m);
}

static void
test_shipped_field_tags(void **state)
{
    struct scope_map *m = load_shipped();
    const struct scope_event *u = event(m, "change_contact/create_user");
    const struct scope_event *a = event(m, "create_auth");
    const struct scope_event *x =
        event(m, "change_external_contact/add_external_contact");
    const struct scope_event *c = event(m, "change_external_chat/update");
    const struct scope_event *t = event(m, "change_contact/update_tag");
    const struct scope_node *n;
    size_t i;

    (void)state;
    /* a member's fields as in user/get */
    assert_int_equal(field(u, "Mobile")->perm, SCOPE_PERM_NEVER);
    assert_int_equal(field(u, "Email")->perm, SCOPE_PERM_NEVER);
    assert_int_equal(field(u, "Name")->perm, SCOPE_PERM_NEVER);
    assert_string_equal(scope_perm_name(field(u, "Gender")->perm),
                        "contact:sensitive:gender");
    assert_string_equal(scope_perm_name(field(u, "Avatar")->perm),
                        "contact:sensitive:avatar");
    n = field(u, "DirectLeader");
    assert_string_equal(scope_perm_name(n->perm),
                        "corp_arch:member:direct_leader");
    assert_int_equal(n->separator, ',');
    assert_int_equal(n->items->record, SCOPE_REC_MEMBER);
    n = field(u, "ExtAttr");
    assert_int_equal(n->perm, SCOPE_PERM_NEVER);
    assert_int_equal(n->items->type, SCOPE_T_OBJECT);
    /* the envelope passes whatever the grant */
    for (i = 0; i < u->root.nfields; i++)
        if (strcmp(u->root.fields[i].name, "SuiteId") == 0 ||
            strcmp(u->root.fields[i].name, "ChangeType") == 0)
            assert_int_equal(u->root.fields[i].perm, SCOPE_PERM_ALWAYS);
    assert_int_equal(field(a, "AuthCode")->perm, SCOPE_PERM_NEVER);
    assert_int_equal(field(a, "AuthCorpId")->perm, SCOPE_PERM_ALWAYS);
    assert_int_equal(field(x, "WelcomeCode")->cap, CAP_EXTERNAL_WELCOME);
    assert_int_equal(field(c, "MemChangeList")->items->record,
                     SCOPE_REC_CHAT_MEMBER);
    assert_int_equal(field(c, "JoinScene")->type, SCOPE_T_INTEGER);
    assert_int_equal(field(t, "AddPartyItems")->items->record,
                     SCOPE_REC_DEPARTMENT);
    assert_int_equal(field(t, "AddPartyItems")->items->type, SCOPE_T_INTEGER);
    scope_map_free(m);
}

static void
test_events_sorted_and_unique(void **state)
{
    struct scope_map *m = load_shipped();
    const struct scope_event *p, *e;
    size_t i;

    (void)state;
    assert_true(scope_events_count(m) >= 25);
    for (i = 1; i < scope_events_count(m); i++) {
        p = scope_events_at(m, i - 1);
        e = scope_events_at(m, i);
        assert_true(
            p->callback < e->callback ||
            (p->callback == e->callback && strcmp(p->name, e->name) < 0));
        assert_ptr_equal(scope_events_find(m, e->callback, e->name), e);
    }
    assert_null(scope_events_at(m, scope_events_count(m)));
    assert_null(scope_events_lookup(m, "event:"));
    assert_null(scope_events_lookup(m, NULL));
    assert_int_equal(scope_events_count(NULL), 0);
    assert_string_equal(scope_callback_name(SCOPE_CB_DATA), "data");
    assert_null(scope_callback_name((enum scope_callback)7));
    scope_map_free(m);
}

/*---- Refusals ----*/

static void
test_refusals(void **state)
{
    (void)state;
    expect_error("a.json", EV("  \"bogus\": 1,\n", "x", ""), "\"bogus\"",
                 "unknown key \"bogus\"");
    expect_error("b.json",
                 EV("", "x",
                    ",\n    \"U\": {\"type\": \"string\", \"perm\": "
                    "\"always\", \"bogus\": \"member\"}"),
                 "\"bogus\"", "unknown key \"bogus\"");
    expect_error("c.json",
                 EV("", "x",
                    ",\n    \"U\": {\"type\": \"integer\", \"perm\": "
                    "\"always\", \"subject\": \"member\"}"),
                 "\"U\"", "a member subject must be declared as string");
    expect_error("d.json",
                 EV("", "x",
                    ",\n    \"U\": {\"type\": \"string\", \"perm\": "
                    "\"always\", \"subject\": \"planet\"}"),
                 "\"subject\"", "unknown subject \"planet\"");
    expect_error("e.json",
                 EV("", "x",
                    ",\n    \"L\": {\"type\": \"array\", \"perm\": "
                    "\"always\", \"items\": {\"type\": \"object\", "
                    "\"fields\": {\"U\": {\"type\": \"string\", \"perm\": "
                    "\"always\", \"subject\": \"member\"}}}}"),
                 "\"U\"",
                 "a subject cannot be inside an array: use \"record\" on "
                 "the items");
    expect_error("f.json",
                 EV("", "x",
                    ",\n    \"S\": {\"type\": \"string\", \"perm\": "
                    "\"always\", \"separator\": \",\"}"),
                 "\"S\"", "\"separator\" is for arrays of strings or integers");
    expect_error("g.json",
                 EV("", "x",
                    ",\n    \"S\": {\"type\": \"array\", \"perm\": "
                    "\"always\", \"separator\": \"a\", \"items\": {\"type\": "
                    "\"string\"}}"),
                 "\"separator\"", "a separator is one of , ; |");
    expect_error("h.json",
                 EV("", "x",
                    ",\n    \"B\": {\"type\": \"boolean\", \"perm\": "
                    "\"always\"}"),
                 "\"B\"",
                 "an event field cannot be boolean: WeCom writes 0 or 1 "
                 "(integer)");
    expect_error("i.json",
                 EV("", "x",
                    ",\n    \"AuthCode\": {\"type\": \"string\", \"perm\": "
                    "\"always\"}"),
                 "{\n  \"event\"",
                 "\"AuthCode\" is a secret: declare it \"never\"");
    expect_error("j.json", EV("", "x/y", ""), "{\n  \"event\"",
                 "a command callback declares \"ChangeType\" (string, "
                 "\"always\")");
    expect_error("k.json", EV("", "x y", ""), "\"event\"",
                 "bad event name \"x y\": INFOTYPE[/CHANGETYPE] (data: "
                 "MSGTYPE or event/EVENT)");
    expect_error("l.json", EV("  \"callback\": \"data\",\n", "text/x", ""),
                 "\"event\"",
                 "bad event name \"text/x\": INFOTYPE[/CHANGETYPE] (data: "
                 "MSGTYPE or event/EVENT)");
    expect_error("m.json", EV("  \"capability\": \"fly\",\n", "x", ""),
                 "\"capability\"", "unknown capability \"fly\"");
    expect_error("n.json",
                 EV("  \"whole_tenant\": true,\n", "x",
                    ",\n    \"U\": {\"type\": \"string\", \"perm\": "
                    "\"always\", \"subject\": \"member\"}"),
                 "{\n  \"event\"", "a whole_tenant event has no subject field");
    expect_error("o.json", EV("  \"callback\": \"push\",\n", "x", ""),
                 "\"callback\"", "callback \"push\": command or data");
    expect_error("p.json",
                 EV("", "x",
                    ",\n    \"T\": {\"type\": \"string\", \"perm\": "
                    "\"always\", \"capability\": \"fly\"}"),
                 "\"capability\"", "unknown capability \"fly\"");
    expect_error("q.json",
                 EV("", "x",
                    ",\n    \"O\": {\"type\": \"object\", \"perm\": "
                    "\"always\", \"record\": \"member\", \"id\": \"U\", "
                    "\"fields\": {\"U\": {\"type\": \"string\", \"perm\": "
                    "\"always\"}}}"),
                 "\"O\"",
                 "an event has no object records: its subject fields name "
                 "what it is about");
    expect_error("r.json",
                 "{\"events\": [{\"event\": \"x\", \"scope\": \"never\", "
                 "\"fields\": {}}]}\n",
                 "\"scope\"", "scope \"never\": never delivered");
    expect_error("s.json", "{\"events\": []}\n", "\"events\"",
                 "\"events\" must be a non-empty array");
    /* a missing envelope field: the lifecycle notice must carry the corp */
    expect_error("t.json",
                 "{\"events\": [{\"event\": \"x\", \"scope\": \"always\", "
                 "\"fields\": {\"SuiteId\": {\"type\": \"string\", \"perm\": "
                 "\"always\"}}}]}\n",
                 "{\"event\"",
                 "a command callback declares \"AuthCorpId\" (string, "
                 "\"always\")");
}

/* The keys only events have are unknown keys in an endpoint's tree. */
static void
test_event_keys_refused_in_endpoints(void **state)
{
    static const char ep[] =
        "{\"endpoints\": [{\"path\": \"/cgi-bin/a\", \"method\": \"GET\", "
        "\"scope\": \"always\", \"response\": {\n"
        "\"errcode\": {\"type\": \"integer\", \"perm\": \"always\"},\n"
        "\"errmsg\": {\"type\": \"string\", \"perm\": \"always\"},\n"
        "\"u\": {\"type\": \"string\", \"perm\": \"always\", \"subject\": "
        "\"member\"}}}]}\n";
    static const char cm[] =
        "{\"endpoints\": [{\"path\": \"/cgi-bin/a\", \"method\": \"GET\", "
        "\"scope\": \"always\", \"response\": {\n"
        "\"errcode\": {\"type\": \"integer\", \"perm\": \"always\"},\n"
        "\"errmsg\": {\"type\": \"string\", \"perm\": \"always\"},\n"
        "\"u\": {\"type\": \"array\", \"perm\": \"always\", \"items\": "
        "{\"type\": \"string\", \"record\": \"chat_member\"}}}}]}\n";

    (void)state;
    expect_error("ep.json", ep, "\"subject\"", "unknown key \"subject\"");
    expect_error("cm.json", cm, "\"record\"",
                 "a chat_member record must be an object");
}

/* One event declared in two files: the message names the other file. */
static void
test_duplicate_across_files(void **state)
{
    struct brk_errinfo info = {"", 0, -1};
    struct scope_map *m = sentinel;
    char dir[PATH_MAX];

    (void)state;
    path_of(dir, sizeof(dir), tmpdir, "dup");
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file("dup/a.json", EV("", "x", ""));
    write_file("dup/b.json", EV("", "x", ""));
    assert_int_equal(scope_map_load(dir, &m, &info), BRK_ERR_CONFIG);
    assert_ptr_equal(m, sentinel);
    assert_non_null(strstr(info.msg, "b.json:2:3: duplicate event x (also "
                                     "in "));
    assert_non_null(strstr(info.msg, "dup/a.json)"));
}

/* A file may hold endpoints and events together. */
static void
test_endpoints_and_events_in_one_file(void **state)
{
    static const char both[] =
        "{\"endpoints\": [{\"path\": \"/cgi-bin/a\", \"method\": \"GET\", "
        "\"scope\": \"always\", \"response\": {\n"
        "\"errcode\": {\"type\": \"integer\", \"perm\": \"always\"},\n"
        "\"errmsg\": {\"type\": \"string\", \"perm\": \"always\"}}}],\n"
        "\"events\": [{\"event\": \"y\", \"callback\": \"data\", \"scope\": "
        "\"always\", \"fields\": {\n"
        "\"ToUserName\": {\"type\": \"string\", \"perm\": \"always\"},\n"
        "\"CreateTime\": {\"type\": \"integer\", \"perm\": \"always\"},\n"
        "\"MsgType\": {\"type\": \"string\", \"perm\": \"always\"}}}]}\n";
    struct brk_errinfo info = {"", 0, -1};
    struct scope_map *m = NULL;
    char path[PATH_MAX];

    (void)state;
    write_file("both.json", both);
    path_of(path, sizeof(path), tmpdir, "both.json");
    if (scope_map_load_file(path, &m, &info) != BRK_OK)
        fail_msg("%s", info.msg);
    assert_int_equal(scope_map_count(m), 1);
    assert_int_equal(scope_events_count(m), 1);
    assert_non_null(scope_events_find(m, SCOPE_CB_DATA, "y"));
    scope_map_free(m);
}

/*---- Allocation failures ----*/

static void
test_alloc_failure(void **state)
{
    struct brk_errinfo info = {"", 0, -1};
    struct scope_map *m;
    char path[PATH_MAX];
    unsigned long n;
    enum brk_err err = BRK_ERR_NOMEM;

    (void)state;
    path_of(path, sizeof(path), srcroot, "scopes/events.json");
    for (n = 1; n < 100000; n++) {
        m = sentinel;
        brk_alloc_fail_at(n);
        err = scope_map_load_file(path, &m, &info);
        if (err == BRK_OK) {
            assert_false(brk_alloc_failed());
            brk_alloc_fail_at(0);
            break;
        }
        brk_alloc_fail_at(0);
        if (err != BRK_ERR_NOMEM)
            fail_msg("n=%lu: %s: %s", n, brk_strerror(err), info.msg);
        assert_ptr_equal(m, sentinel);
    }
    assert_int_equal(err, BRK_OK);
    assert_true(n > 50);
    assert_true(scope_events_count(m) >= 25);
    scope_map_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_delivered_event_declared),
        cmocka_unit_test(test_shipped_field_tags),
        cmocka_unit_test(test_events_sorted_and_unique),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_event_keys_refused_in_endpoints),
        cmocka_unit_test(test_duplicate_across_files),
        cmocka_unit_test(test_endpoints_and_events_in_one_file),
        cmocka_unit_test(test_alloc_failure),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
