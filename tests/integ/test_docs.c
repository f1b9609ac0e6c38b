/*
 * The documentation keeps up with the code: every configuration key the
 * loader knows (its option tables in broker/config.c, read as text) has
 * a row in the README's configuration reference with its default, a line
 * in broker.conf.example, and a mention in wecom-broker(8). A key added
 * without them fails here, naming the key and the document.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MAX_KEYS 128

struct key {
    char name[64];
    char def[128]; /* "" when none or empty */
    int broker;    /* [broker] (else [suite]) */
};

static struct key Keys[MAX_KEYS];
static size_t NKeys;
static char *Readme, *Example, *Man, *Source;

/* The keys of the option table that starts at the text table. */
static void
read_table(const char *table, int broker)
{
    const char *p = strstr(Source, table), *end, *q;
    struct key *k;
    size_t n;

    assert_non_null(p);
    end = strstr(p, "\n};");
    assert_non_null(end);
    for (q = strstr(p, "{\""); q != NULL && q < end; q = strstr(q, "{\"")) {
        const char *name = q + 2, *close = strchr(name, '"'), *entry_end, *last;

        assert_non_null(close);
        assert_true(NKeys < MAX_KEYS);
        k = &Keys[NKeys++];
        n = (size_t)(close - name);
        assert_true(n < sizeof(k->name));
        memcpy(k->name, name, n);
        k->name[n] = '\0';
        k->broker = broker;
        /* the default is the entry's last string, before its "}," */
        entry_end = strstr(close, "},");
        assert_non_null(entry_end);
        last = entry_end;
        while (last > close && *last != '"')
            last--;
        k->def[0] = '\0';
        if (last > close && last[-1] != '{') {
            const char *open = last - 1;

            while (open > close && *open != '"')
                open--;
            if (open > close && strncmp(entry_end - 4, "NULL", 4) != 0) {
                n = (size_t)(last - open - 1);
                assert_true(n < sizeof(k->def));
                memcpy(k->def, open + 1, n);
                k->def[n] = '\0';
            }
        }
        q = entry_end;
    }
}

static int
setup(void **state)
{
    (void)state;
    Readme = h_slurp("README.md");
    Example = h_slurp("broker.conf.example");
    Man = h_slurp("man/wecom-broker.8");
    Source = h_slurp("broker/config.c");
    if (Readme == NULL || Example == NULL || Man == NULL || Source == NULL)
        return -1;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    free(Readme);
    free(Example);
    free(Man);
    free(Source);
    return 0;
}

/* The README row of a key: the line starting "| `KEY` |", or NULL. */
static const char *
readme_row(const char *name, char *line, size_t cap)
{
    char want[96];
    const char *p, *eol;

    snprintf(want, sizeof(want), "\n| `%s` |", name);
    p = strstr(Readme, want);
    if (p == NULL)
        return NULL;
    p++;
    eol = strchr(p, '\n');
    snprintf(line, cap, "%.*s", eol ? (int)(eol - p) : (int)strlen(p), p);
    return line;
}

/* Nonzero when the example sets the key ("KEY =" at a line start, or in
 * a comment "; KEY ="). */
static int
example_has(const char *name)
{
    char want[96];

    snprintf(want, sizeof(want), "\n%s =", name);
    if (strstr(Example, want) != NULL)
        return 1;
    snprintf(want, sizeof(want), "; %s =", name);
    return strstr(Example, want) != NULL;
}

static void
test_tables_read(void **state)
{
    size_t i, broker = 0;

    (void)state;
    read_table("broker_opts[] = {", 1);
    read_table("suite_opts[] = {", 0);
    for (i = 0; i < NKeys; i++)
        broker += Keys[i].broker;
    /* the reader itself: the tables hold at least what SPEC §3 names */
    assert_true(broker >= 30);
    assert_true(NKeys - broker >= 6);
    for (i = 0; i < NKeys; i++)
        if (strcmp(Keys[i].name, "callback_max_skew") == 0)
            assert_string_equal(Keys[i].def, "300");
}

static void
test_every_key_documented(void **state)
{
    char line[1024], want[160];
    const char *row;
    size_t i;
    int bad = 0;

    (void)state;
    if (NKeys == 0) {
        read_table("broker_opts[] = {", 1);
        read_table("suite_opts[] = {", 0);
    }
    for (i = 0; i < NKeys; i++) {
        const struct key *k = &Keys[i];

        row = readme_row(k->name, line, sizeof(line));
        if (row == NULL) {
            fprintf(stderr,
                    "# %s: no row in README's configuration "
                    "reference\n",
                    k->name);
            bad = 1;
        } else if (k->broker && k->def[0] != '\0') {
            snprintf(want, sizeof(want), "| `%s` |", k->def);
            if (strstr(row, want) == NULL) {
                fprintf(stderr,
                        "# %s: README's row does not give the "
                        "default `%s`: %s\n",
                        k->name, k->def, row);
                bad = 1;
            }
        }
        if (!example_has(k->name)) {
            fprintf(stderr, "# %s: not in broker.conf.example\n", k->name);
            bad = 1;
        }
        if (k->broker && strstr(Man, k->name) == NULL) {
            fprintf(stderr, "# %s: not in man/wecom-broker.8\n", k->name);
            bad = 1;
        }
    }
    assert_false(bad);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_read),
        cmocka_unit_test(test_every_key_documented),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
