/*
 * Tests for the metrics registry: every rendered line is checked against
 * the Prometheus text format by a small parser, and the counters, gauges,
 * histograms, label escaping and cardinality bounds are checked by value.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "dynbuf.h"
#include "metrics.h"

#define RENDER_LIMIT (1u << 24)
#define SERIES_CAP   4096
#define LABELS_CAP   192 /* label strings this long are refused */
#define DROPPED      "wecom_broker_metrics_dropped_total"

static const struct {
    const char *name;
    const char *type;
} expected_families[] = {
    {"wecom_broker_http_requests_total", "counter"},
    {"wecom_broker_http_request_duration_seconds", "histogram"},
    {"wecom_broker_callbacks_total", "counter"},
    {"wecom_broker_callback_rejections_total", "counter"},
    {"wecom_broker_callback_ack_seconds", "histogram"},
    {"wecom_broker_suite_ticket_updates_total", "counter"},
    {"wecom_broker_redis_up", "gauge"},
    {"wecom_broker_redis_connects_total", "counter"},
    {"wecom_broker_redis_errors_total", "counter"},
    {"wecom_broker_http_in_flight", "gauge"},
    {"wecom_broker_budget_grants_total", "counter"},
    {"wecom_broker_budget_refusals_total", "counter"},
    {"wecom_broker_budget_pauses_total", "counter"},
    {"wecom_broker_budget_concurrency_cuts_total", "counter"},
    {"wecom_broker_budget_leases_total", "counter"},
    {DROPPED, "counter"},
};

/*---- A Prometheus text-format checker ----*/

#define MAX_TYPED 48

struct exposition {
    char typed[MAX_TYPED][96];
    char types[MAX_TYPED][16];
    int helped[MAX_TYPED];
    size_t ntyped;
    size_t nsamples;
};

static int
is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           c == ':';
}

static int
is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* Length of the metric or label name at p (0 when there is none). */
static size_t
name_len(const char *p, const char *end, int metric)
{
    size_t n = 0;

    if (p >= end || !is_name_start(p[0]) || (!metric && p[0] == ':'))
        return 0;
    while (p + n < end && is_name_char(p[n]) && (metric || p[n] != ':'))
        n++;
    return n;
}

/*
 * Check {k="v",...} at p; returns the byte after '}' or NULL. Only the
 * escapes \\, \" and \n may appear inside values.
 */
static const char *
check_labels(const char *p, const char *end)
{
    size_t n;

    if (p >= end || *p != '{')
        return NULL;
    p++;
    for (;;) {
        n = name_len(p, end, 0);
        if (n == 0)
            return NULL;
        p += n;
        if (end - p < 2 || p[0] != '=' || p[1] != '"')
            return NULL;
        p += 2;
        while (p < end && *p != '"') {
            if (*p == '\\') {
                if (end - p < 2 || (p[1] != '\\' && p[1] != '"' && p[1] != 'n'))
                    return NULL;
                p++;
            } else if ((unsigned char)*p < 0x20) {
                return NULL;
            }
            p++;
        }
        if (p >= end)
            return NULL;
        p++;
        if (p < end && *p == '}')
            return p + 1;
        if (p >= end || *p != ',')
            return NULL;
        p++;
    }
}

static int
is_histogram_part(const struct exposition *e, const char *name, size_t n,
                  size_t i)
{
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    size_t k, fl = strlen(e->typed[i]);

    if (strcmp(e->types[i], "histogram") != 0 || n <= fl ||
        memcmp(name, e->typed[i], fl) != 0)
        return 0;
    for (k = 0; k < nitems(sfx); k++)
        if (n - fl == strlen(sfx[k]) && memcmp(name + fl, sfx[k], n - fl) == 0)
            return 1;
    return 0;
}

/* The index of the TYPE'd family a sample name belongs to, or -1. */
static int
family_of(const struct exposition *e, const char *name, size_t n)
{
    size_t i;

    for (i = 0; i < e->ntyped; i++) {
        if (strlen(e->typed[i]) == n && memcmp(e->typed[i], name, n) == 0 &&
            strcmp(e->types[i], "histogram") != 0)
            return (int)i;
        if (is_histogram_part(e, name, n, i))
            return (int)i;
    }
    return -1;
}

static int
find_typed(const struct exposition *e, const char *name, size_t n)
{
    size_t i;

    for (i = 0; i < e->ntyped; i++)
        if (strlen(e->typed[i]) == n && memcmp(e->typed[i], name, n) == 0)
            return (int)i;
    return -1;
}

/* "# HELP name text" or "# TYPE name type"; 0 when well formed. */
static int
check_comment(struct exposition *e, const char *p, const char *end)
{
    size_t n;
    const char *name;
    int i;

    if (end - p > 7 && memcmp(p, "# HELP ", 7) == 0) {
        name = p + 7;
        n = name_len(name, end, 1);
        if (n == 0 || name + n >= end || name[n] != ' ' || name + n + 1 >= end)
            return -1;
        /* HELP precedes TYPE in our output; remember it for the family */
        if (e->ntyped == MAX_TYPED || n >= sizeof(e->typed[0]))
            return -1;
        if (find_typed(e, name, n) >= 0)
            return -1;
        memcpy(e->typed[e->ntyped], name, n);
        e->typed[e->ntyped][n] = '\0';
        e->types[e->ntyped][0] = '\0';
        e->helped[e->ntyped] = 1;
        e->ntyped++;
        return 0;
    }
    if (end - p > 7 && memcmp(p, "# TYPE ", 7) == 0) {
        name = p + 7;
        n = name_len(name, end, 1);
        if (n == 0 || name + n >= end || name[n] != ' ')
            return -1;
        i = find_typed(e, name, n);
        if (i < 0 || e->types[i][0] != '\0')
            return -1;
        p = name + n + 1;
        if ((size_t)(end - p) >= sizeof(e->types[0]))
            return -1;
        memcpy(e->types[i], p, (size_t)(end - p));
        e->types[i][end - p] = '\0';
        if (strcmp(e->types[i], "counter") != 0 &&
            strcmp(e->types[i], "gauge") != 0 &&
            strcmp(e->types[i], "histogram") != 0)
            return -1;
        return 0;
    }
    return -1;
}

/* "name value" or "name{labels} value"; 0 when well formed. */
static int
check_sample(struct exposition *e, const char *p, const char *end)
{
    size_t n = name_len(p, end, 1);
    const char *q;
    char num[64], *numend;

    if (n == 0 || family_of(e, p, n) < 0)
        return -1;
    q = p + n;
    if (q < end && *q == '{') {
        q = check_labels(q, end);
        if (q == NULL)
            return -1;
    }
    if (q >= end || *q != ' ')
        return -1;
    q++;
    if (q >= end || (size_t)(end - q) >= sizeof(num))
        return -1;
    memcpy(num, q, (size_t)(end - q));
    num[end - q] = '\0';
    if (num[0] == ' ')
        return -1;
    strtod(num, &numend);
    if (numend == num || *numend != '\0')
        return -1;
    e->nsamples++;
    return 0;
}

/* Check every line of text; print the first bad one. */
static void
check_exposition(const char *text, size_t len, struct exposition *e)
{
    const char *p = text, *end = text + len, *nl;
    int bad;

    memset(e, 0, sizeof(*e));
    assert_true(len > 0);
    assert_int_equal(text[len - 1], '\n');
    assert_int_equal(strlen(text), len);
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        assert_non_null(nl);
        bad = p[0] == '#' ? check_comment(e, p, nl) : check_sample(e, p, nl);
        if (bad)
            print_error("bad exposition line: \"%.*s\"\n", (int)(nl - p), p);
        assert_int_equal(bad, 0);
        p = nl + 1;
    }
}

/*---- Helpers ----*/

static char *
render(size_t *lenp)
{
    struct dynbuf d;
    char *out = NULL;
    size_t len = 0;
    struct exposition e;

    dynbuf_init(&d, RENDER_LIMIT);
    assert_int_equal(metrics_render(&d), BRK_OK);
    assert_int_equal(dynbuf_take(&d, &out, &len), BRK_OK);
    check_exposition(out, len, &e);
    if (lenp != NULL)
        *lenp = len;
    return out;
}

/*
 * The value of the sample whose "name{labels}" or "name" is exactly key;
 * fails the test when it is absent.
 */
static double
sample_value(const char *text, const char *key)
{
    size_t kl = strlen(key);
    const char *p = text;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
            return strtod(p + kl + 1, NULL);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    print_error("no sample \"%s\" in:\n%s\n", key, text);
    fail();
    return 0;
}

static int
has_sample(const char *text, const char *prefix)
{
    size_t kl = strlen(prefix);
    const char *p = text;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, prefix, kl) == 0)
            return 1;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return 0;
}

static size_t
count_lines_with(const char *text, const char *prefix)
{
    size_t kl = strlen(prefix), c = 0;
    const char *p = text;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, prefix, kl) == 0)
            c++;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return c;
}

static double
dropped(void)
{
    char *out = render(NULL);
    double v = sample_value(out, DROPPED);

    brk_free(out);
    return v;
}

static int
reset(void **state)
{
    (void)state;
    metrics_reset();
    return 0;
}

/*---- Rendering ----*/

static void
test_render_every_family(void **state)
{
    char *out = render(NULL);
    char line[160];
    size_t i;

    (void)state;
    for (i = 0; i < nitems(expected_families); i++) {
        snprintf(line, sizeof(line), "# HELP %s ", expected_families[i].name);
        assert_int_equal(count_lines_with(out, line), 1);
        snprintf(line, sizeof(line), "# TYPE %s %s\n",
                 expected_families[i].name, expected_families[i].type);
        assert_non_null(strstr(out, line));
    }
    /* nothing observed yet: only the drop counter has a sample */
    assert_int_equal(sample_value(out, DROPPED), 0);
    assert_false(has_sample(out, "wecom_broker_redis_up"));
    brk_free(out);
}

static void
test_render_checker_rejects_garbage(void **state)
{
    static const char *const bad[] = {
        "wecom_broker_redis_up\n",
        "wecom_broker_redis_up 1x\n",
        "wecom_broker_redis_up  1\n",
        "wecom_broker_redis_up{a=\"1\"\n",
        "wecom_broker_redis_up{a=1} 1\n",
        "wecom_broker_redis_up{a=\"\\t\"} 1\n",
        "wecom_broker_redis_up{a=\"x\",} 1\n",
        "unknown_family 1\n",
        "# TYPE wecom_broker_redis_up gauge\n",
    };
    static const char typed[] = "# HELP wecom_broker_redis_up h\n"
                                "# TYPE wecom_broker_redis_up gauge\n";
    struct exposition e;
    char text[256];
    const char *p, *nl;
    size_t i;
    int bad_line;

    (void)state;
    /* the checker itself must be able to fail */
    for (i = 0; i < nitems(bad); i++) {
        snprintf(text, sizeof(text), "%s%s", i + 1 < nitems(bad) ? typed : "",
                 bad[i]);
        memset(&e, 0, sizeof(e));
        bad_line = 0;
        for (p = text; *p != '\0'; p = nl + 1) {
            nl = strchr(p, '\n');
            if (p[0] == '#' ? check_comment(&e, p, nl)
                            : check_sample(&e, p, nl))
                bad_line = 1;
        }
        if (!bad_line)
            print_error("checker accepted \"%s\"\n", bad[i]);
        assert_true(bad_line);
    }
}

static void
test_render_too_small_buffer(void **state)
{
    struct dynbuf d;

    (void)state;
    metrics_inc(METRICS_REDIS_CONNECTS, NULL);
    dynbuf_init(&d, 100);
    assert_int_equal(metrics_render(&d), BRK_ERR_TOOBIG);
    assert_null(d.buf);
    assert_int_equal(d.len, 0);
}

static void
test_render_appends(void **state)
{
    struct dynbuf d;

    (void)state;
    dynbuf_init(&d, RENDER_LIMIT);
    assert_int_equal(dynbuf_add_str(&d, "prefix\n"), BRK_OK);
    assert_int_equal(metrics_render(&d), BRK_OK);
    assert_memory_equal(d.buf, "prefix\n# HELP ", 14);
    dynbuf_free(&d);
}

static void
test_render_alloc_failures(void **state)
{
    char lab[128];
    struct dynbuf d;
    enum brk_err err;
    unsigned long n;
    int failed;

    (void)state;
    metrics_labels(lab, sizeof(lab), "listener", "public", "route", "callback",
                   NULL);
    metrics_observe(METRICS_HTTP_SECONDS, lab, 0.02);
    metrics_inc(METRICS_REDIS_CONNECTS, NULL);
    for (n = 1;; n++) {
        dynbuf_init(&d, RENDER_LIMIT);
        brk_alloc_fail_at(n);
        err = metrics_render(&d);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (!failed) {
            assert_int_equal(err, BRK_OK);
            dynbuf_free(&d);
            break;
        }
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(d.buf);
        assert_true(n < 1000);
    }
    assert_true(n > 1);
}

/*---- Counters and gauges ----*/

static void
test_counter_without_labels(void **state)
{
    char *out;

    (void)state;
    metrics_inc(METRICS_REDIS_CONNECTS, NULL);
    metrics_inc(METRICS_REDIS_CONNECTS, NULL);
    metrics_inc(METRICS_REDIS_CONNECTS, "");
    out = render(NULL);
    assert_int_equal(sample_value(out, "wecom_broker_redis_connects_total"), 3);
    /* NULL and "" are the same series */
    assert_int_equal(count_lines_with(out, "wecom_broker_redis_connects_total"),
                     1);
    brk_free(out);
    metrics_add(METRICS_REDIS_CONNECTS, NULL, 2.5);
    out = render(NULL);
    assert_true(sample_value(out, "wecom_broker_redis_connects_total") == 5.5);
    brk_free(out);
}

static void
test_counter_with_labels(void **state)
{
    char ok[128], bad[128];
    char *out;

    (void)state;
    metrics_labels(ok, sizeof(ok), "listener", "public", "route", "callback",
                   "status", "200", NULL);
    metrics_labels(bad, sizeof(bad), "listener", "public", "route", "callback",
                   "status", "403", NULL);
    assert_string_equal(
        ok, "listener=\"public\",route=\"callback\",status=\"200\"");
    metrics_inc(METRICS_HTTP_REQUESTS, ok);
    metrics_inc(METRICS_HTTP_REQUESTS, ok);
    metrics_inc(METRICS_HTTP_REQUESTS, bad);
    out = render(NULL);
    assert_int_equal(
        sample_value(out,
                     "wecom_broker_http_requests_total{listener=\"public\","
                     "route=\"callback\",status=\"200\"}"),
        2);
    assert_int_equal(
        sample_value(out,
                     "wecom_broker_http_requests_total{listener=\"public\","
                     "route=\"callback\",status=\"403\"}"),
        1);
    assert_int_equal(count_lines_with(out, "wecom_broker_http_requests_total{"),
                     2);
    brk_free(out);
}

static void
test_same_labels_other_family(void **state)
{
    char *out;

    (void)state;
    metrics_inc(METRICS_CALLBACK_REJECTIONS, "suite=\"ww1\",reason=\"sig\"");
    metrics_add(METRICS_SUITE_TICKETS, "suite=\"ww1\",reason=\"sig\"", 4);
    out = render(NULL);
    assert_int_equal(
        sample_value(out, "wecom_broker_callback_rejections_total{suite="
                          "\"ww1\",reason=\"sig\"}"),
        1);
    assert_int_equal(
        sample_value(out, "wecom_broker_suite_ticket_updates_total{suite="
                          "\"ww1\",reason=\"sig\"}"),
        4);
    brk_free(out);
}

static void
test_gauge_set(void **state)
{
    char *out;

    (void)state;
    metrics_set(METRICS_REDIS_UP, NULL, 1);
    metrics_set(METRICS_REDIS_UP, NULL, 0);
    metrics_add(METRICS_INFLIGHT, "listener=\"public\"", 1);
    metrics_add(METRICS_INFLIGHT, "listener=\"public\"", 1);
    metrics_add(METRICS_INFLIGHT, "listener=\"public\"", -1);
    out = render(NULL);
    assert_int_equal(sample_value(out, "wecom_broker_redis_up"), 0);
    assert_int_equal(
        sample_value(out, "wecom_broker_http_in_flight{listener=\"public\"}"),
        1);
    brk_free(out);
}

static void
test_reset_forgets(void **state)
{
    char *out;

    (void)state;
    metrics_inc(METRICS_REDIS_ERRORS, "kind=\"timeout\"");
    metrics_inc(METRICS_REDIS_ERRORS, NULL);
    metrics_reset();
    out = render(NULL);
    assert_false(has_sample(out, "wecom_broker_redis_errors_total"));
    assert_int_equal(sample_value(out, DROPPED), 0);
    brk_free(out);
}

/*---- Labels ----*/

static void
test_labels_escape(void **state)
{
    char lab[128];
    char *out;

    (void)state;
    metrics_labels(lab, sizeof(lab), "kind", "a\"b\\c\nd", NULL);
    assert_string_equal(lab, "kind=\"a\\\"b\\\\c\\nd\"");
    metrics_inc(METRICS_REDIS_ERRORS, lab);
    out = render(NULL);
    assert_int_equal(
        sample_value(
            out, "wecom_broker_redis_errors_total{kind=\"a\\\"b\\\\c\\nd\"}"),
        1);
    brk_free(out);
}

static void
test_labels_empty_and_null_value(void **state)
{
    char lab[64];

    (void)state;
    metrics_labels(lab, sizeof(lab), NULL);
    assert_string_equal(lab, "");
    metrics_labels(lab, sizeof(lab), "a", "", "b", NULL, NULL);
    assert_string_equal(lab, "a=\"\",b=\"\"");
}

static void
test_labels_truncate_safely(void **state)
{
    char lab[40], braced[64];
    const char *end;
    size_t len;

    (void)state;
    for (len = 1; len <= sizeof(lab); len++) {
        memset(lab, 'Z', sizeof(lab));
        metrics_labels(lab, len, "listener", "public\"\\\"\\\"\\\"\\", "route",
                       "callback", NULL);
        /* terminated inside the given size, untouched after it */
        assert_non_null(memchr(lab, '\0', len));
        if (len < sizeof(lab))
            assert_int_equal(lab[len], 'Z');
        if (lab[0] == '\0')
            continue;
        /* whatever fits is still a well-formed label set */
        snprintf(braced, sizeof(braced), "{%s}", lab);
        end = check_labels(braced, braced + strlen(braced));
        if (end == NULL || *end != '\0')
            print_error("len %zu: bad label set \"%s\"\n", len, lab);
        assert_non_null(end);
        assert_int_equal(*end, '\0');
    }
    /* with room enough, both pairs are there in full */
    metrics_labels(braced, sizeof(braced), "listener", "public\"\\\"\\\"\\\"\\",
                   "route", "callback", NULL);
    assert_string_equal(braced,
                        "listener=\"public\\\"\\\\\\\"\\\\\\\"\\\\\\\"\\\\\","
                        "route=\"callback\"");
}

static void
test_label_string_too_long_dropped(void **state)
{
    char lab[LABELS_CAP + 16];
    char *out;

    (void)state;
    /* k="xxx...x" of exactly LABELS_CAP characters */
    memset(lab, 'x', sizeof(lab));
    memcpy(lab, "k=\"", 3);
    lab[LABELS_CAP - 1] = '"';
    lab[LABELS_CAP] = '\0';
    assert_int_equal(strlen(lab), LABELS_CAP);
    metrics_inc(METRICS_REDIS_ERRORS, lab);
    metrics_set(METRICS_REDIS_UP, lab, 1);
    metrics_observe(METRICS_HTTP_SECONDS, lab, 0.1);
    out = render(NULL);
    assert_int_equal(sample_value(out, DROPPED), 3);
    assert_false(has_sample(out, "wecom_broker_redis_errors_total"));
    assert_false(has_sample(out, "wecom_broker_redis_up"));
    assert_false(has_sample(out, "wecom_broker_http_request_duration"));
    brk_free(out);
}

static void
test_label_string_longest_kept(void **state)
{
    char lab[LABELS_CAP];
    char *out;

    (void)state;
    memset(lab, 'x', sizeof(lab));
    memcpy(lab, "k=\"", 3);
    lab[LABELS_CAP - 2] = '"';
    lab[LABELS_CAP - 1] = '\0';
    metrics_inc(METRICS_REDIS_ERRORS, lab);
    out = render(NULL);
    assert_int_equal(sample_value(out, DROPPED), 0);
    assert_int_equal(count_lines_with(out, "wecom_broker_redis_errors_total{"),
                     1);
    brk_free(out);
}

/*---- Histograms ----*/

/* Bucket counts of a histogram series, in rendered order. */
static size_t
bucket_counts(const char *text, const char *name, const char *labels,
              double *le, double *count, size_t max)
{
    char prefix[256];
    size_t pl, n = 0;
    const char *p = text, *q;
    char *e;

    snprintf(prefix, sizeof(prefix), "%s_bucket{%s%sle=\"", name, labels,
             labels[0] ? "," : "");
    pl = strlen(prefix);
    while (p != NULL && *p != '\0') {
        if (strncmp(p, prefix, pl) == 0) {
            assert_true(n < max);
            q = p + pl;
            if (strncmp(q, "+Inf\"", 5) == 0) {
                le[n] = INFINITY;
                q += 5;
            } else {
                le[n] = strtod(q, &e);
                assert_ptr_not_equal(e, q);
                assert_int_equal(*e, '"');
                q = e + 1;
            }
            assert_int_equal(q[0], '}');
            assert_int_equal(q[1], ' ');
            count[n++] = strtod(q + 2, NULL);
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return n;
}

static void
test_histogram_cumulative(void **state)
{
    static const double obs[] = {0.0005, 0.003, 0.003, 0.005, 0.2, 3, 100};
    static const char name[] = "wecom_broker_http_request_duration_seconds";
    char lab[128], key[256];
    double le[32], count[32], sum = 0;
    size_t i, j, n;
    unsigned below;
    char *out;

    (void)state;
    metrics_labels(lab, sizeof(lab), "listener", "public", "route", "callback",
                   NULL);
    for (i = 0; i < nitems(obs); i++) {
        metrics_observe(METRICS_HTTP_SECONDS, lab, obs[i]);
        sum += obs[i];
    }
    out = render(NULL);
    n = bucket_counts(out, name, lab, le, count, nitems(le));
    assert_true(n >= 2);
    for (i = 0; i < n; i++) {
        /* bounds increase, counts never decrease */
        if (i > 0) {
            assert_true(le[i] > le[i - 1]);
            assert_true(count[i] >= count[i - 1]);
        }
        /* each bucket counts the observations <= its bound */
        below = 0;
        for (j = 0; j < nitems(obs); j++)
            if (obs[j] <= le[i])
                below++;
        if (count[i] != below)
            print_error("le=%g: got %g, want %u\n", le[i], count[i], below);
        assert_true(count[i] == below);
    }
    assert_true(isinf(le[n - 1]));
    snprintf(key, sizeof(key), "%s_count{%s}", name, lab);
    assert_true(sample_value(out, key) == count[n - 1]);
    assert_true(sample_value(out, key) == nitems(obs));
    snprintf(key, sizeof(key), "%s_sum{%s}", name, lab);
    assert_true(fabs(sample_value(out, key) - sum) < 1e-9);
    brk_free(out);
}

static void
test_histogram_bucket_boundary(void **state)
{
    static const char name[] = "wecom_broker_callback_ack_seconds";
    double le[32], count[32];
    size_t i, n;
    char *out;

    (void)state;
    /* 0.005 lies exactly on a bound and belongs to that bucket */
    metrics_observe(METRICS_CALLBACK_ACK_SECONDS, NULL, 0.005);
    out = render(NULL);
    n = bucket_counts(out, name, "", le, count, nitems(le));
    assert_true(n >= 2);
    for (i = 0; i < n; i++)
        assert_true(count[i] == (le[i] >= 0.005 ? 1 : 0));
    assert_true(sample_value(out, "wecom_broker_callback_ack_seconds_count") ==
                1);
    assert_true(sample_value(out, "wecom_broker_callback_ack_seconds_sum") ==
                0.005);
    brk_free(out);
}

static void
test_histogram_series_apart(void **state)
{
    static const char name[] = "wecom_broker_http_request_duration_seconds";
    double le[32], count[32];
    size_t n;
    char *out;

    (void)state;
    metrics_observe(METRICS_HTTP_SECONDS, "route=\"a\"", 0.001);
    metrics_observe(METRICS_HTTP_SECONDS, "route=\"b\"", 10);
    metrics_observe(METRICS_HTTP_SECONDS, "route=\"b\"", 20);
    out = render(NULL);
    n = bucket_counts(out, name, "route=\"a\"", le, count, nitems(le));
    assert_true(n >= 2 && count[0] == 1 && count[n - 1] == 1);
    n = bucket_counts(out, name, "route=\"b\"", le, count, nitems(le));
    assert_true(n >= 2 && count[n - 2] == 0 && count[n - 1] == 2);
    assert_true(sample_value(out, "wecom_broker_http_request_duration_seconds"
                                  "_sum{route=\"b\"}") == 30);
    brk_free(out);
}

/*---- Cardinality ----*/

static void
test_series_cap(void **state)
{
    char lab[64];
    size_t i, len;
    char *out;

    (void)state;
    for (i = 0; i < SERIES_CAP; i++) {
        snprintf(lab, sizeof(lab), "kind=\"k%zu\"", i);
        metrics_inc(METRICS_REDIS_ERRORS, lab);
    }
    assert_true(dropped() == 0);
    /* the table is full: new series are counted, not stored */
    for (i = 0; i < 10; i++) {
        snprintf(lab, sizeof(lab), "kind=\"extra%zu\"", i);
        metrics_inc(METRICS_REDIS_ERRORS, lab);
    }
    metrics_set(METRICS_REDIS_UP, NULL, 1);
    metrics_observe(METRICS_HTTP_SECONDS, NULL, 0.1);
    /* same labels as a stored series, other family: still a new series */
    metrics_inc(METRICS_CALLBACKS, "kind=\"k7\"");
    assert_true(dropped() == 13);
    /* existing series still count */
    metrics_inc(METRICS_REDIS_ERRORS, "kind=\"k4095\"");
    metrics_inc(METRICS_REDIS_ERRORS, "kind=\"k0\"");
    out = render(&len);
    assert_int_equal(count_lines_with(out, "wecom_broker_redis_errors_total{"),
                     SERIES_CAP);
    assert_int_equal(
        sample_value(out, "wecom_broker_redis_errors_total{kind=\"k4095\"}"),
        2);
    assert_int_equal(
        sample_value(out, "wecom_broker_redis_errors_total{kind=\"k0\"}"), 2);
    assert_false(
        has_sample(out, "wecom_broker_redis_errors_total{kind=\"extra"));
    assert_false(has_sample(out, "wecom_broker_redis_up"));
    assert_false(has_sample(out, "wecom_broker_callbacks_total"));
    assert_int_equal(
        sample_value(out, "wecom_broker_redis_errors_total{kind=\"k7\"}"), 1);
    assert_int_equal(sample_value(out, DROPPED), 13);
    brk_free(out);
}

static void
test_reset_after_cap(void **state)
{
    char lab[64];
    size_t i;
    char *out;

    (void)state;
    for (i = 0; i < SERIES_CAP + 5; i++) {
        snprintf(lab, sizeof(lab), "kind=\"k%zu\"", i);
        metrics_inc(METRICS_REDIS_ERRORS, lab);
    }
    metrics_reset();
    metrics_set(METRICS_REDIS_UP, NULL, 1);
    out = render(NULL);
    assert_int_equal(sample_value(out, "wecom_broker_redis_up"), 1);
    assert_int_equal(sample_value(out, DROPPED), 0);
    assert_false(has_sample(out, "wecom_broker_redis_errors_total"));
    brk_free(out);
}

/*---- Threads (workers = N): each counts into its own shard ----*/

#define THREADS    4
#define PER_THREAD 50000

static void *
count_many(void *arg)
{
    int i;

    (void)arg;
    for (i = 0; i < PER_THREAD; i++) {
        metrics_inc(METRICS_REDIS_ERRORS, "kind=\"shared\"");
        metrics_observe(METRICS_HTTP_SECONDS, "route=\"t\"", 0.002);
    }
    return NULL;
}

static void
test_threads_add_up(void **state)
{
    pthread_t t[THREADS];
    double last = 0, v;
    char *out;
    int i, done = 0;

    (void)state;
    for (i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, count_many, NULL), 0);
    /* scrapes while they count: every one parses, and never goes down */
    for (i = 0; i < 50; i++) {
        out = render(NULL);
        if (has_sample(out, "wecom_broker_redis_errors_total{")) {
            v = sample_value(out, "wecom_broker_redis_errors_total"
                                  "{kind=\"shared\"}");
            assert_true(v >= last);
            last = v;
        }
        brk_free(out);
    }
    for (i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    done = THREADS * PER_THREAD;
    out = render(NULL);
    assert_true(
        sample_value(out, "wecom_broker_redis_errors_total{kind=\"shared\"}") ==
        done);
    assert_true(sample_value(out, "wecom_broker_http_request_duration_seconds"
                                  "_count{route=\"t\"}") == done);
    assert_true(sample_value(out,
                             "wecom_broker_http_request_duration_seconds"
                             "_bucket{route=\"t\",le=\"0.0025\"}") == done);
    assert_true(sample_value(out, "wecom_broker_http_request_duration_seconds"
                                  "_bucket{route=\"t\",le=\"0.001\"}") == 0);
    assert_true(
        fabs(sample_value(out, "wecom_broker_http_request_duration_seconds"
                               "_sum{route=\"t\"}") -
             done * 0.002) < 1e-6);
    assert_int_equal(sample_value(out, DROPPED), 0);
    brk_free(out);
}

static void *
count_ten_and_end(void *arg)
{
    int i;

    (void)arg;
    for (i = 0; i < 10; i++)
        metrics_inc(METRICS_REDIS_CONNECTS, NULL);
    metrics_add(METRICS_INFLIGHT, "listener=\"x\"", 3);
    return NULL;
}

static void
test_thread_end_keeps_counts(void **state)
{
    pthread_t t;
    char *out;

    (void)state;
    assert_int_equal(pthread_create(&t, NULL, count_ten_and_end, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    metrics_inc(METRICS_REDIS_CONNECTS, NULL);
    out = render(NULL);
    assert_true(sample_value(out, "wecom_broker_redis_connects_total") == 11);
    assert_true(sample_value(out, "wecom_broker_http_in_flight"
                                  "{listener=\"x\"}") == 3);
    brk_free(out);
    /* a second thread's shard after the first was folded */
    assert_int_equal(pthread_create(&t, NULL, count_ten_and_end, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    out = render(NULL);
    assert_true(sample_value(out, "wecom_broker_redis_connects_total") == 21);
    assert_true(sample_value(out, "wecom_broker_http_in_flight"
                                  "{listener=\"x\"}") == 6);
    brk_free(out);
}

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int step;
};

static void
gate_wait(struct gate *g, int step)
{
    pthread_mutex_lock(&g->mu);
    while (g->step < step)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void
gate_open(struct gate *g, int step)
{
    pthread_mutex_lock(&g->mu);
    g->step = step;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* adds 4, lets the main thread set, then adds 1, staying alive between */
static void *
add_around_set(void *arg)
{
    struct gate *g = arg;

    metrics_add(METRICS_INFLIGHT, "listener=\"g\"", 4);
    gate_open(g, 1);
    gate_wait(g, 2);
    metrics_add(METRICS_INFLIGHT, "listener=\"g\"", 1);
    gate_open(g, 3);
    return NULL;
}

static void
test_set_replaces_other_threads_adds(void **state)
{
    struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    pthread_t t;
    char *out;

    (void)state;
    assert_int_equal(pthread_create(&t, NULL, add_around_set, &g), 0);
    gate_wait(&g, 1);
    metrics_add(METRICS_INFLIGHT, "listener=\"g\"", 2);
    out = render(NULL);
    assert_true(sample_value(out, "wecom_broker_http_in_flight"
                                  "{listener=\"g\"}") == 6);
    brk_free(out);
    metrics_set(METRICS_INFLIGHT, "listener=\"g\"", 10);
    gate_open(&g, 2);
    gate_wait(&g, 3);
    assert_int_equal(pthread_join(t, NULL), 0);
    out = render(NULL);
    assert_true(sample_value(out, "wecom_broker_http_in_flight"
                                  "{listener=\"g\"}") == 11);
    brk_free(out);
}

/* the cap is the process's, whichever thread names a series */
static void *
fill_table(void *arg)
{
    char lab[64];
    size_t i;

    (void)arg;
    for (i = 0; i < SERIES_CAP; i++) {
        snprintf(lab, sizeof(lab), "kind=\"k%zu\"", i);
        metrics_inc(METRICS_REDIS_ERRORS, lab);
    }
    return NULL;
}

static void
test_cap_across_threads(void **state)
{
    pthread_t t;
    char *out;

    (void)state;
    assert_int_equal(pthread_create(&t, NULL, fill_table, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    metrics_inc(METRICS_REDIS_ERRORS, "kind=\"k5\"");
    metrics_inc(METRICS_REDIS_ERRORS, "kind=\"new\"");
    out = render(NULL);
    assert_int_equal(count_lines_with(out, "wecom_broker_redis_errors_total{"),
                     SERIES_CAP);
    assert_true(
        sample_value(out, "wecom_broker_redis_errors_total{kind=\"k5\"}") == 2);
    assert_int_equal(sample_value(out, DROPPED), 1);
    brk_free(out);
}

#define T(f) cmocka_unit_test_setup(f, reset)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_render_every_family),
        T(test_render_checker_rejects_garbage),
        T(test_render_too_small_buffer),
        T(test_render_appends),
        T(test_render_alloc_failures),
        T(test_counter_without_labels),
        T(test_counter_with_labels),
        T(test_same_labels_other_family),
        T(test_gauge_set),
        T(test_reset_forgets),
        T(test_labels_escape),
        T(test_labels_empty_and_null_value),
        T(test_labels_truncate_safely),
        T(test_label_string_too_long_dropped),
        T(test_label_string_longest_kept),
        T(test_histogram_cumulative),
        T(test_histogram_bucket_boundary),
        T(test_histogram_series_apart),
        T(test_series_cap),
        T(test_reset_after_cap),
        T(test_threads_add_up),
        T(test_thread_end_keeps_counts),
        T(test_set_replaces_other_threads_adds),
        T(test_cap_across_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
