/*
 * The scope files from the outside: `brokerctl scopes lint` and `scopes
 * list` (no Redis, no config needed for lint DIR) and `wecom-broker -t`
 * refusing a broken scopes_dir with the file, line and column.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"

static struct harness H;
static char repo_scopes[PATH_MAX + 16]; /* absolute path of ./scopes */
static char bad_dir[PATH_MAX];          /* a scopes dir with one broken file */
static char bad_file[PATH_MAX + 16];

#define BAD_JSON                                                               \
    "{\"endpoints\": [{\n"                                                     \
    "  \"path\": \"/cgi-bin/user/get\",\n"                                     \
    "  \"method\": \"GET\",\n"                                                 \
    "  \"scope\": \"contact:base:base\",\n"                                    \
    "  \"response\": {\n"                                                      \
    "    \"errcode\": {\"type\": \"integer\", \"perm\": \"always\"},\n"        \
    "    \"errmsg\": {\"type\": \"string\", \"perm\": \"always\"},\n"          \
    "    \"mobile\": {\"type\": \"string\", \"perm\": \"contact:mobile\"}\n"   \
    "  }\n"                                                                    \
    "}]}\n"

static int
setup(void **state)
{
    char cwd[PATH_MAX];
    FILE *f;
    int n;

    (void)state;
    if (h_setup(&H) != 0 || getcwd(cwd, sizeof(cwd)) == NULL)
        return -1;
    snprintf(repo_scopes, sizeof(repo_scopes), "%s/scopes", cwd);
    n = snprintf(bad_dir, sizeof(bad_dir), "%s/badscopes", H.dir);
    if (n < 0 || (size_t)n >= sizeof(bad_dir))
        return -1;
    snprintf(bad_file, sizeof(bad_file), "%s/a.json", bad_dir);
    if (mkdir(bad_dir, 0700) != 0)
        return -1;
    f = fopen(bad_file, "w");
    if (f == NULL)
        return -1;
    fputs(BAD_JSON, f);
    return fclose(f) == 0 ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    h_teardown(&H);
    return 0;
}

/* Where BAD_JSON's error is: the "perm" key on line 8. */
static void
bad_message(char *buf, size_t len)
{
    snprintf(buf, len, "%s:8:34: unknown permission \"contact:mobile\"",
             bad_file);
}

static void
write_conf_with_scopes(const char *dir)
{
    char extra[PATH_MAX + 32];

    snprintf(extra, sizeof(extra), "scopes_dir = %s", dir);
    assert_int_equal(h_write_conf(&H, 0, extra), 0);
}

/*---- brokerctl scopes lint ----*/

static void
test_lint_shipped_scopes(void **state)
{
    const char *argv[] = {"bin/brokerctl", "scopes", "lint", "scopes", NULL};
    char *out;

    (void)state;
    assert_int_equal(h_run(argv, &out), 0);
    assert_non_null(strstr(out, "scopes OK: "));
    assert_non_null(strstr(out, " endpoints and "));
    free(out);
}

/* A mistake in an event is reported at its position, like an endpoint's. */
static void
test_lint_broken_event(void **state)
{
    static const char text[] =
        "{\"events\": [{\"event\": \"x\", \"scope\": \"always\",\n"
        " \"fields\": {\"SuiteId\": {\"type\": \"string\", \"perm\": "
        "\"always\", \"subject\": \"planet\"}}}]}\n";
    char path[PATH_MAX], want[PATH_MAX + 64], *out;
    const char *argv[] = {"bin/brokerctl", "scopes", "lint", path, NULL};
    FILE *f;

    (void)state;
    snprintf(path, sizeof(path), "%s/events-bad.json", H.dir);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(h_run(argv, &out), 1);
    snprintf(want, sizeof(want), "%s:2:61: unknown subject \"planet\"", path);
    if (strstr(out, want) == NULL)
        fail_msg("got \"%s\", want \"%s\"", out, want);
    free(out);
}

/* No config file and a Redis that does not exist: lint never looks. */
static void
test_lint_needs_no_config_or_redis(void **state)
{
    const char *argv[] = {"bin/brokerctl",
                          "-c",
                          "/nonexistent/broker.conf",
                          "--redis",
                          "unix:///nonexistent/redis.sock",
                          "scopes",
                          "lint",
                          "scopes",
                          NULL};
    char *out;

    (void)state;
    assert_int_equal(h_run(argv, &out), 0);
    assert_non_null(strstr(out, "scopes OK: "));
    free(out);
}

static void
test_lint_broken_dir_names_file(void **state)
{
    const char *argv[] = {"bin/brokerctl", "scopes", "lint", bad_dir, NULL};
    char want[PATH_MAX + 128], *out;

    (void)state;
    bad_message(want, sizeof(want));
    assert_int_equal(h_run(argv, &out), 1);
    if (strstr(out, want) == NULL)
        fail_msg("got \"%s\", want \"%s\"", out, want);
    free(out);
}

static void
test_lint_one_file(void **state)
{
    char good[PATH_MAX + 32], want[PATH_MAX + 128], *out;
    const char *ok[] = {"bin/brokerctl", "scopes", "lint", good, NULL};
    const char *bad[] = {"bin/brokerctl", "scopes", "lint", bad_file, NULL};

    (void)state;
    snprintf(good, sizeof(good), "%s/contacts.json", repo_scopes);
    assert_int_equal(h_run(ok, &out), 0);
    assert_non_null(strstr(out, "scopes OK: "));
    free(out);
    bad_message(want, sizeof(want));
    assert_int_equal(h_run(bad, &out), 1);
    assert_non_null(strstr(out, want));
    free(out);
}

static void
test_lint_json(void **state)
{
    const char *ok[] = {"bin/brokerctl", "--json", "scopes",
                        "lint",          "scopes", NULL};
    const char *bad[] = {"bin/brokerctl", "scopes", "lint",
                         bad_dir,         "--json", NULL};
    char want[PATH_MAX + 128], *out;
    json_error_t jerr;
    json_t *j;

    (void)state;
    assert_int_equal(h_run(ok, &out), 0);
    j = json_loads(out, 0, &jerr);
    assert_non_null(j);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_true(json_integer_value(json_object_get(j, "endpoints")) >= 16);
    assert_true(json_integer_value(json_object_get(j, "events")) >= 25);
    assert_true(json_integer_value(json_object_get(j, "files")) >= 6);
    json_decref(j);
    free(out);

    assert_int_equal(h_run(bad, &out), 1);
    j = json_loads(out, 0, &jerr);
    assert_non_null(j);
    assert_true(json_is_false(json_object_get(j, "ok")));
    bad_message(want, sizeof(want));
    assert_string_equal(json_string_value(json_object_get(j, "error")), want);
    json_decref(j);
    free(out);
}

static void
test_lint_missing_and_empty_dir(void **state)
{
    char empty[PATH_MAX + 16], missing[PATH_MAX + 16], *out;
    const char *a[] = {"bin/brokerctl", "scopes", "lint", empty, NULL};
    const char *b[] = {"bin/brokerctl", "scopes", "lint", missing, NULL};

    (void)state;
    snprintf(empty, sizeof(empty), "%s/emptyscopes", H.dir);
    snprintf(missing, sizeof(missing), "%s/nothere", H.dir);
    assert_int_equal(mkdir(empty, 0700), 0);
    assert_int_equal(h_run(a, &out), 1);
    assert_non_null(strstr(out, "no scope files (*.json)"));
    free(out);
    assert_int_equal(h_run(b, &out), 1);
    assert_non_null(strstr(out, "cannot open directory"));
    free(out);
}

/* Without DIR, lint reads scopes_dir from the configuration. */
static void
test_lint_default_from_config(void **state)
{
    const char *argv[] = {"bin/brokerctl", "-c",   H.conf,
                          "scopes",        "lint", NULL};
    char want[PATH_MAX + 128], *out;

    (void)state;
    write_conf_with_scopes(repo_scopes);
    assert_int_equal(h_run(argv, &out), 0);
    assert_non_null(strstr(out, repo_scopes));
    free(out);
    write_conf_with_scopes(bad_dir);
    assert_int_equal(h_run(argv, &out), 1);
    bad_message(want, sizeof(want));
    assert_non_null(strstr(out, want));
    free(out);
}

static void
test_usage_errors(void **state)
{
    const char *a[] = {"bin/brokerctl", "scopes", "frob", NULL};
    const char *b[] = {"bin/brokerctl", "scopes", NULL};
    const char *c[] = {"bin/brokerctl", "scopes", "lint", "x", "y", NULL};
    char *out;

    (void)state;
    assert_int_equal(h_run(a, &out), 2);
    assert_non_null(strstr(out, "usage: brokerctl scopes"));
    free(out);
    assert_int_equal(h_run(b, &out), 2);
    free(out);
    assert_int_equal(h_run(c, &out), 2);
    free(out);
}

/*---- brokerctl scopes list ----*/

static void
test_list_table_and_json(void **state)
{
    const char *table[] = {"bin/brokerctl", "-c",   H.conf,
                           "scopes",        "list", NULL};
    const char *js[] = {"bin/brokerctl", "-c",   H.conf, "--json",
                        "scopes",        "list", NULL};
    json_error_t jerr;
    json_t *j, *e, *found = NULL;
    size_t i;
    char *out;

    (void)state;
    write_conf_with_scopes(repo_scopes);
    assert_int_equal(h_run(table, &out), 0);
    assert_non_null(strstr(out, "PATH"));
    assert_non_null(strstr(out, "/cgi-bin/user/get "));
    assert_non_null(strstr(out, "userid*(member)"));
    assert_non_null(strstr(out, "/cgi-bin/externalcontact/groupchat/get"));
    assert_non_null(strstr(out, "\nEVENT "));
    assert_non_null(strstr(out, "event:change_contact/create_user "));
    assert_non_null(strstr(out, "UserID(member)"));
    assert_non_null(strstr(out, "event:text "));
    assert_non_null(strstr(out, " messages "));
    free(out);

    assert_int_equal(h_run(js, &out), 0);
    j = json_loads(out, 0, &jerr);
    assert_non_null(j);
    assert_true(json_array_size(j) >= 16);
    json_array_foreach(j, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "path")),
                   "/cgi-bin/externalcontact/batch/get_by_user") == 0)
            found = e;
    }
    assert_non_null(found);
    assert_string_equal(json_string_value(json_object_get(found, "method")),
                        "POST");
    /* the events follow the endpoints */
    found = NULL;
    json_array_foreach(j, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "path")),
                   "event:change_external_contact/add_external_contact") == 0)
            found = e;
    }
    assert_non_null(found);
    assert_string_equal(json_string_value(json_object_get(found, "scope")),
                        "externalcontact:base:base");
    assert_string_equal(json_string_value(json_object_get(found, "callback")),
                        "command");
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(json_object_get(found, "subjects"), 0), "subject")),
        "follow_user");
    assert_string_equal(json_string_value(json_object_get(found, "scope")),
                        "externalcontact:base:base");
    json_decref(j);
    free(out);
}

static void
test_list_broken_dir(void **state)
{
    const char *argv[] = {"bin/brokerctl", "-c",   H.conf,
                          "scopes",        "list", NULL};
    char want[PATH_MAX + 128], *out;

    (void)state;
    write_conf_with_scopes(bad_dir);
    assert_int_equal(h_run(argv, &out), 1);
    bad_message(want, sizeof(want));
    assert_non_null(strstr(out, want));
    free(out);
}

/*---- wecom-broker -t ----*/

static void
test_check_mode_loads_scopes(void **state)
{
    const char *argv[] = {"bin/wecom-broker", "-c", H.conf, "-t", NULL};
    char *out;

    (void)state;
    write_conf_with_scopes(repo_scopes);
    assert_int_equal(h_run(argv, &out), 0);
    assert_non_null(strstr(out, "configuration OK\n"));
    free(out);
}

static void
test_check_mode_broken_scopes(void **state)
{
    const char *argv[] = {"bin/wecom-broker", "-c", H.conf, "-t", NULL};
    char want[PATH_MAX + 128], *out;

    (void)state;
    write_conf_with_scopes(bad_dir);
    assert_int_equal(h_run(argv, &out), 1);
    bad_message(want, sizeof(want));
    if (strstr(out, want) == NULL)
        fail_msg("got \"%s\", want \"%s\"", out, want);
    assert_null(strstr(out, "configuration OK"));
    free(out);
}

static void
test_check_mode_missing_scopes_dir(void **state)
{
    const char *argv[] = {"bin/wecom-broker", "-c", H.conf, "-t", NULL};
    char dir[PATH_MAX + 16], *out;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/no-scopes-here", H.dir);
    write_conf_with_scopes(dir);
    assert_int_equal(h_run(argv, &out), 1);
    assert_non_null(strstr(out, dir));
    assert_non_null(strstr(out, "cannot open directory"));
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lint_shipped_scopes),
        cmocka_unit_test(test_lint_broken_event),
        cmocka_unit_test(test_lint_needs_no_config_or_redis),
        cmocka_unit_test(test_lint_broken_dir_names_file),
        cmocka_unit_test(test_lint_one_file),
        cmocka_unit_test(test_lint_json),
        cmocka_unit_test(test_lint_missing_and_empty_dir),
        cmocka_unit_test(test_lint_default_from_config),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_list_table_and_json),
        cmocka_unit_test(test_list_broken_dir),
        cmocka_unit_test(test_check_mode_loads_scopes),
        cmocka_unit_test(test_check_mode_broken_scopes),
        cmocka_unit_test(test_check_mode_missing_scopes_dir),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
