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

static long
vraw(int port, const char *method, const char *body, char **out,
     const char *fmt, va_list ap)
{
    char pq[4096], url[4200];

    vsnprintf(pq, sizeof(pq), fmt, ap);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, pq);
    return h_http(method, url, body, body ? strlen(body) : 0, out);
}

long
h_rawf(int port, const char *method, const char *body, char **out,
       const char *fmt, ...)
{
    va_list ap;
    long st;

    va_start(ap, fmt);
    st = vraw(port, method, body, out, fmt, ap);
    va_end(ap);
    return st;
}

json_t *
h_jcall(int port, const char *method, const char *body, long *status,
        const char *fmt, ...)
{
    json_error_t err;
    va_list ap;
    char *out = NULL;
    json_t *j;
    long st;

    va_start(ap, fmt);
    st = vraw(port, method, body, &out, fmt, ap);
    va_end(ap);
    if (status != NULL)
        *status = st;
    j = json_loads(out ? out : "", JSON_REJECT_DUPLICATES, &err);
    if (j == NULL)
        fail_msg("not JSON (HTTP %ld): %.200s", st, out ? out : "");
    free(out);
    return j;
}

long
h_errcode(const json_t *j)
{
    const json_t *e = json_object_get(j, "errcode");

    assert_true(json_is_integer(e));
    return (long)json_integer_value(e);
}

const char *
h_need_str(const json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));

    if (s == NULL)
        fail_msg("no string member %s", key);
    return s;
}

void
h_copy_str(char *dst, size_t cap, const char *src)
{
    assert_true(strlen(src) < cap);
    memcpy(dst, src, strlen(src) + 1);
}
