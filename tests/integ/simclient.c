/*
 * Integration tests' client of the WeCom simulator's control API.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"
#include "simclient.h"

long
h_sim(int port, const char *method, const char *path, const char *body,
      char **out)
{
    char url[1024];

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    return h_http(method, url, body, body ? strlen(body) : 0, out);
}

json_t *
h_sim_json(int port, const char *method, const char *path, const char *body)
{
    char *out = NULL;
    json_error_t e;
    json_t *v;

    assert_int_equal(h_sim(port, method, path, body, &out), 200);
    v = json_loads(out, 0, &e);
    if (v == NULL)
        fprintf(stderr, "# %s: not JSON: %.200s\n", path, out);
    free(out);
    assert_non_null(v);
    return v;
}

void
h_sim_ok(int port, const char *method, const char *path, const char *body)
{
    char *out = NULL;
    long st = h_sim(port, method, path, body, &out);

    if (st != 200)
        fprintf(stderr, "# %s %s: %ld %s\n", method, path, st, out);
    assert_int_equal(st, 200);
    free(out);
}

const char *
h_str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));

    return s ? s : "";
}

long
h_next_ts(void)
{
    static long last;
    long now = (long)time(NULL);

    last = now > last ? now : last + 1;
    return last;
}
