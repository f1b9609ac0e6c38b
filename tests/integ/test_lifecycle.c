/*
 * Tenant lifecycle end to end: real redis-server, the WeCom simulator and
 * the broker over loopback. Installs, grant changes, cancellation and
 * purge, ordering, lost authorizations, upstream faults, crash safety,
 * and token refresh single-flight across two token managers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "config.h"
#include "harness.h"
#include "simclient.h"
#include "tenantclient.h"
#include "keyring.h"
#include "log.h"
#include "store.h"
#include "suites.h"
#include "tokens.h"
#include "wecom_api.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define S1    H_SUITE
#define S2    "wwtestsuite00002"
#define SEC2  "second-suite-secret-0002"
#define CORP1 "wwmockcorp0001"
#define CORP2 "wwmockcorp0002"
#define CORP3 "wwmockcorp0003"
#define CORP4 "wwmockcorp0004"

static struct harness H;
static pid_t Mock;
static int MockPort;
static char Tickets[8][600];
static int NTickets;

/*---- helpers ----*/

/* A fresh suite ticket pushed, remembered to look for leaks of it. */
static void
push_ticket(const char *suite)
{
    const char *t = tc_push_ticket(suite);

    if (NTickets < 8)
        snprintf(Tickets[NTickets++], sizeof(Tickets[0]), "%s", t);
}

static const char *metric_wanted;

static int
metric_positive(void *arg)
{
    (void)arg;
    return tc_metric(metric_wanted) > 0;
}

static void
wait_metric(const char *series)
{
    metric_wanted = series;
    if (!h_wait(metric_positive, NULL, 30000)) {
        fprintf(stderr, "# metric never appeared: %s\n", series);
        fail();
    }
}

/*---- fixtures ----*/

static int
setup(void **state)
{
    const char *extra[] = {"--suite",   S1 ":" H_SECRET, "--suite",
                           S2 ":" SEC2, "--corps",       "6",
                           NULL};
    char broker[512];
    FILE *f;

    (void)state;
    if (h_setup(&H) != 0)
        return -1;
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    tc_init(&H, MockPort);
    snprintf(broker, sizeof(broker),
             "wecom_api_base = http://127.0.0.1:%d\n"
             "event_claim_idle = 3\n"
             "event_max_attempts = 4\n"
             "upstream_timeout_ms = 1000\n",
             MockPort);
    if (h_write_conf(&H, 0, broker) != 0)
        return -1;
    f = fopen(H.conf, "a");
    if (f == NULL)
        return -1;
    fprintf(f, "\n[suite " S2 "]\ntoken = " H_TOKEN
               "\nencoding_aes_key = " H_AESKEY "\nsecret = " SEC2 "\n");
    fclose(f);
    return h_broker_start(&H);
}

static int
teardown(void **state)
{
    (void)state;
    tc_done();
    if (Mock > 0)
        h_stop(Mock, SIGTERM);
    h_teardown(&H);
    return 0;
}

/*---- install, change, secrets ----*/

static void
test_install_flow(void **state)
{
    json_t *t, *perms, *vis, *p;
    size_t i;
    int base = 0;

    (void)state;
    push_ticket(S1);
    tc_install(S1, CORP1, (long)time(NULL));
    tc_wait_status(S1, CORP1, "active", 30000);
    t = tc_ctl_json("tenant", "show", CORP1, S1);
    assert_non_null(t);
    assert_int_equal(json_integer_value(json_object_get(t, "level")), 1);
    vis = json_object_get(t, "visible");
    assert_int_equal(json_array_size(json_object_get(vis, "parties")), 1);
    assert_int_equal(
        json_integer_value(json_array_get(json_object_get(vis, "parties"), 0)),
        2);
    assert_int_equal(json_array_size(json_object_get(vis, "tags")), 1);
    assert_int_equal(json_array_size(json_object_get(vis, "users")), 1);
    perms = json_object_get(t, "permissions");
    json_array_foreach(
        perms, i, p) if (strcmp(json_string_value(json_object_get(p, "name")),
                                "contact:base:base") == 0) base = 1;
    assert_true(base);
    assert_true(json_is_object(json_object_get(t, "privilege")));
    /* the members of the range, not the whole corp (40) */
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(t, "directory"), "users")),
                     tc_expected_members(S1, CORP1));
    assert_true(json_integer_value(json_object_get(
                    json_object_get(t, "directory"), "users")) < 40);
    /* department 2's subtree and the tag's departments, not all 12 */
    assert_true(json_integer_value(json_object_get(
                    json_object_get(t, "directory"), "departments")) >= 1);
    assert_true(json_integer_value(json_object_get(
                    json_object_get(t, "directory"), "departments")) < 12);
    assert_string_equal(json_string_value(json_object_get(t, "corp_name")),
                        json_string_value(json_object_get(t, "corp_name")));
    json_decref(t);
    /* and it is listed */
    t = tc_ctl_json("tenants", NULL, NULL, NULL);
    assert_true(json_array_size(t) >= 1);
    json_decref(t);
}

static int
parties_are_3(void *arg)
{
    json_t *t = tc_ctl_json("tenant", "show", CORP1, S1);
    json_t *p = json_object_get(json_object_get(t, "visible"), "parties");
    int ok = json_array_size(p) == 1 &&
             json_integer_value(json_array_get(p, 0)) == 3 &&
             json_array_size(
                 json_object_get(json_object_get(t, "visible"), "users")) == 0;

    (void)arg;
    json_decref(t);
    return ok;
}

static void
test_change_auth_narrows(void **state)
{
    char *out = NULL;
    redisContext *sub = h_redis(&H);
    redisReply *r;
    struct timeval tv = {20, 0};

    (void)state;
    /* every instance learns of the new grant through this channel */
    assert_non_null(sub);
    r = redisCommand(sub, "SUBSCRIBE wb:inval");
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(h_sim(MockPort, "POST", "/__mock/privilege",
                           "{\"corpid\":\"" CORP1 "\",\"allow_party\":[3],"
                           "\"allow_user\":[],\"allow_tag\":[]}",
                           &out),
                     200);
    free(out);
    tc_corp_event(S1, "change_auth", CORP1, (long)time(NULL), NULL, NULL);
    assert_true(h_wait(parties_are_3, NULL, 30000));
    redisSetTimeout(sub, tv);
    assert_int_equal(redisGetReply(sub, (void **)&r), REDIS_OK);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    assert_string_equal(r->element[2]->str, S1 " " CORP1);
    freeReplyObject(r);
    redisFree(sub);
}

static void
test_secrets_never_in_plaintext(void **state)
{
    json_t *reqs = h_sim_json(MockPort, "GET",
                              "/__mock/requests?path=/cgi-bin/service/"
                              "get_corp_token",
                              NULL);
    const char *pcode = json_string_value(json_object_get(
        json_object_get(json_array_get(reqs, 0), "body"), "permanent_code"));
    char *text, *log, *url, *metrics = NULL;
    int i;

    (void)state;
    assert_non_null(pcode);
    assert_true(strlen(pcode) >= 16);
    text = tc_redis_text();
    log = h_slurp(H.log);
    url = h_int_url(&H, "/metrics");
    assert_int_equal(h_http("GET", url, NULL, 0, &metrics), 200);
    assert_null(strstr(text, pcode));
    assert_null(strstr(log, pcode));
    assert_null(strstr(metrics, pcode));
    assert_null(strstr(text, H_SECRET));
    assert_null(strstr(log, H_SECRET));
    assert_null(strstr(text, H_AESKEY));
    assert_null(strstr(log, H_AESKEY));
    for (i = 0; i < NTickets; i++) {
        assert_null(strstr(text, Tickets[i]));
        assert_null(strstr(log, Tickets[i]));
    }
    free(text);
    free(log);
    free(url);
    free(metrics);
    json_decref(reqs);
}

/*---- cancel and purge ----*/

static long Cancel_ts;

static void
test_cancel_purges_only_that_suite(void **state)
{
    char *text, *line, *save = NULL;
    json_t *t;

    (void)state;
    push_ticket(S2);
    tc_install(S2, CORP1, (long)time(NULL));
    tc_wait_status(S2, CORP1, "active", 30000);
    Cancel_ts = (long)time(NULL);
    tc_corp_event(S1, "cancel_auth", CORP1, Cancel_ts, NULL, NULL);
    tc_wait_status(S1, CORP1, "cancelled", 30000);
    t = tc_ctl_json("tenant", "show", CORP1, S1);
    assert_non_null(json_object_get(t, "deletion_report"));
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(t, "deletion_report"), "data_key")),
                     1);
    assert_true(json_integer_value(json_object_get(
                    json_object_get(t, "deletion_report"), "directory")) >= 1);
    json_decref(t);
    /* nothing of (S1, CORP1) left: only S2's installation and the audit
     * trail may name the corp */
    text = tc_redis_text();
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strstr(line, CORP1) == NULL)
            continue;
        if (strstr(line, "{" CORP1 "}:" S2 ":") != NULL ||
            strcmp(line, S2 " " CORP1) == 0 || strcmp(line, CORP1) == 0 ||
            strstr(line, "wb:audit") != NULL)
            continue;
        fprintf(stderr, "# left behind: %s\n", line);
        fail();
    }
    free(text);
    /* the other suite's installation is untouched */
    tc_wait_status(S2, CORP1, "active", 30000);
}

static void
test_late_create_auth_stays_cancelled_newer_reinstalls(void **state)
{
    (void)state;
    tc_install(S1, CORP1, Cancel_ts - 100);
    wait_metric("wecom_broker_events_total{suite=\"" S1
                "\",info_type=\"create_auth\",result=\"stale_dropped\"}");
    tc_wait_status(S1, CORP1, "cancelled", 30000);
    tc_install(S1, CORP1, Cancel_ts + 1);
    tc_wait_status(S1, CORP1, "active", 30000);
}

/*---- crash safety and faults ----*/

static int
exchange_attempted_twice(void *arg)
{
    (void)arg;
    return tc_mock_count("/cgi-bin/service/get_permanent_code", NULL) >= 2;
}

static void
test_crash_while_retrying_then_recovers_once(void **state)
{
    char *out = NULL;
    size_t before, after;

    (void)state;
    before = tc_mock_count("/cgi-bin/service/get_permanent_code", NULL);
    assert_int_equal(
        h_sim(MockPort, "POST", "/__mock/faults",
              "{\"path\":\"/cgi-bin/service/get_permanent_code\","
              "\"count\":1000,\"status\":502,\"body\":\"nonjson\"}",
              &out),
        200);
    free(out);
    h_sim(MockPort, "DELETE", "/__mock/requests", NULL, &out);
    free(out);
    tc_install(S1, CORP2, (long)time(NULL));
    assert_true(h_wait(exchange_attempted_twice, NULL, 30000));
    assert_int_equal(h_broker_stop(&H, SIGKILL), 128 + SIGKILL);
    h_sim(MockPort, "DELETE", "/__mock/faults", NULL, &out);
    free(out);
    after = tc_mock_count("/cgi-bin/service/get_permanent_code", NULL);
    assert_int_equal(h_broker_start(&H), 0);
    tc_wait_status(S1, CORP2, "active", 30000);
    /* exactly one more exchange: the one that worked */
    assert_int_equal(tc_mock_count("/cgi-bin/service/get_permanent_code", NULL),
                     after + 1);
    (void)before;
}

static int
lost_recorded(void *arg)
{
    (void)arg;
    return tc_suite_field(S1, "lost_authorizations") >= 1;
}

static void
test_dropped_reply_lost_then_reinstall_required(void **state)
{
    char *out = NULL;

    (void)state;
    assert_int_equal(h_sim(MockPort, "POST", "/__mock/faults",
                           "{\"path\":\"/cgi-bin/service/get_permanent_code\","
                           "\"count\":1,\"drop_reply\":true}",
                           &out),
                     200);
    free(out);
    tc_install(S1, CORP3, (long)time(NULL));
    assert_true(h_wait(lost_recorded, NULL, 30000));
    tc_corp_event(S1, "change_contact", CORP3, (long)time(NULL), "ChangeType",
                  "delete_user");
    tc_wait_status(S1, CORP3, "reinstall_required", 30000);
}

static int
dead_lettered(void *arg)
{
    (void)arg;
    return tc_suite_field(S1, "dead_letters") >= 1;
}

static void
test_upstream_faults_retry_then_dead_letter(void **state)
{
    static const char *const faults[] = {
        "{\"path\":\"/cgi-bin/service/get_auth_info\",\"delay_ms\":1500}",
        "{\"path\":\"/cgi-bin/service/get_auth_info\",\"status\":503,"
        "\"body\":\"nonjson\"}",
        "{\"path\":\"/cgi-bin/service/get_auth_info\",\"body\":\"malformed\"}",
        "{\"path\":\"/cgi-bin/service/get_auth_info\",\"errcode\":40084}",
    };
    char *out = NULL, *log;
    json_t *t;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(faults); i++) {
        assert_int_equal(
            h_sim(MockPort, "POST", "/__mock/faults", faults[i], &out), 200);
        free(out);
    }
    tc_install(S1, CORP4, (long)time(NULL));
    assert_true(h_wait(dead_lettered, NULL, 60000));
    /* never active with a half-read grant */
    t = tc_ctl_json("tenant", "show", CORP4, S1);
    assert_non_null(t);
    assert_string_equal(json_string_value(json_object_get(t, "status")),
                        "installing");
    json_decref(t);
    log = h_slurp(H.log);
    assert_non_null(strstr(log, "get_auth_info: upstream_timeout"));
    assert_non_null(strstr(log, "get_auth_info: upstream_malformed"));
    assert_non_null(strstr(log, "(errcode 40084)"));
    assert_non_null(strstr(log, "dead-lettered after 4 attempt(s)"));
    free(log);
}

/*---- token refresh single-flight across two managers ----*/

struct side {
    struct store *st;
    struct suites *suites;
    struct wecom_api *api;
    struct tokens *tok;
    char *token;
    int done;
    int stage;
};

static struct side Sides[2];
static struct event_base *Base;

static void
on_tok(enum brk_err err, const char *token, long errcode, void *arg)
{
    struct side *s = arg;

    (void)errcode;
    assert_int_equal(err, BRK_OK);
    free(s->token);
    s->token = strdup(token);
    s->done = 1;
}

static void
run_until(int (*cond)(void))
{
    long end = h_now_ms() + 20000;

    while (!cond() && h_now_ms() < end)
        event_base_loop(Base, EVLOOP_ONCE);
    assert_true(cond());
}

static int
both_done(void)
{
    return Sides[0].done && Sides[1].done;
}

static int
both_ready(void)
{
    return store_is_up(Sides[0].st) && store_is_up(Sides[1].st) &&
           suites_keys_ready(Sides[0].suites) &&
           suites_keys_ready(Sides[1].suites);
}

static void
test_token_refresh_single_flight(void **state)
{
    struct config *cfg = NULL;
    struct keyring *kr = NULL;
    struct brk_errinfo info;
    struct wecom_api_opts o;
    char url[400], *out = NULL;
    size_t before, i;
    int k;

    (void)state;
    log_init(LOG_LVL_WARN, 0);
    assert_int_equal(config_load(H.conf, &cfg, &info), BRK_OK);
    assert_int_equal(keyring_load(cfg->master_key_file, cfg->index_key_file, 0,
                                  &kr, NULL, NULL, &info),
                     BRK_OK);
    Base = event_base_new();
    snprintf(url, sizeof(url), "unix://%s", H.redis_sock);
    memset(&o, 0, sizeof(o));
    o.base = cfg->wecom_api_base;
    o.timeout_ms = 5000;
    o.max_body = 1 << 20;
    for (k = 0; k < 2; k++) {
        memset(&Sides[k], 0, sizeof(Sides[k]));
        assert_int_equal(store_new(Base, url, 2000, &Sides[k].st), BRK_OK);
        assert_int_equal(suites_new(cfg, kr, Sides[k].st, &Sides[k].suites),
                         BRK_OK);
        assert_int_equal(wecom_api_new(Base, &o, &Sides[k].api), BRK_OK);
        assert_int_equal(tokens_new(Base, cfg, kr, Sides[k].st, Sides[k].suites,
                                    Sides[k].api, &Sides[k].tok),
                         BRK_OK);
    }
    /* wait for both connections, then load the suites' keys */
    while (!(store_is_up(Sides[0].st) && store_is_up(Sides[1].st)))
        event_base_loop(Base, EVLOOP_ONCE);
    for (k = 0; k < 2; k++)
        suites_store_up(Sides[k].suites);
    run_until(both_ready);
    /* both get the stored token */
    for (k = 0; k < 2; k++)
        assert_int_equal(
            tokens_corp(Sides[k].tok, S1, CORP2, on_tok, &Sides[k]), BRK_OK);
    run_until(both_done);
    assert_string_equal(Sides[0].token, Sides[1].token);
    /* WeCom invalidates it; both instances see it fail at once */
    assert_int_equal(h_sim(MockPort, "POST", "/__mock/invalidate",
                           "{\"corpid\":\"" CORP2 "\"}", &out),
                     200);
    free(out);
    before = tc_mock_count("/cgi-bin/service/get_corp_token", NULL);
    for (k = 0; k < 2; k++) {
        tokens_corp_rejected(Sides[k].tok, S1, CORP2, Sides[k].token);
        Sides[k].done = 0;
    }
    for (k = 0; k < 2; k++)
        assert_int_equal(
            tokens_corp(Sides[k].tok, S1, CORP2, on_tok, &Sides[k]), BRK_OK);
    run_until(both_done);
    assert_string_equal(Sides[0].token, Sides[1].token);
    assert_int_equal(tc_mock_count("/cgi-bin/service/get_corp_token", NULL),
                     before + 1);
    /* the corp token itself is never stored or logged in plaintext */
    {
        char *text = tc_redis_text(), *log = h_slurp(H.log);

        assert_true(strlen(Sides[0].token) >= 16);
        assert_null(strstr(text, Sides[0].token));
        assert_null(strstr(log, Sides[0].token));
        free(text);
        free(log);
    }
    for (i = 0; i < 2; i++) {
        wecom_api_free(Sides[i].api);
        store_free(Sides[i].st);
        tokens_free(Sides[i].tok);
        suites_free(Sides[i].suites);
        free(Sides[i].token);
    }
    event_base_free(Base);
    keyring_free(kr);
    config_free(cfg);
}

/* Last: a clean stop (under the sanitizers, a leak fails this). */
static void
test_broker_stops_cleanly(void **state)
{
    (void)state;
    assert_int_equal(h_broker_stop(&H, SIGTERM), 0);
    assert_int_equal(h_stop(Mock, SIGTERM), 0);
    Mock = 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_install_flow, tc_sim_leaky,
                                        tc_sim_strict),
        cmocka_unit_test(test_change_auth_narrows),
        cmocka_unit_test(test_secrets_never_in_plaintext),
        cmocka_unit_test(test_cancel_purges_only_that_suite),
        cmocka_unit_test(
            test_late_create_auth_stays_cancelled_newer_reinstalls),
        cmocka_unit_test_teardown(test_crash_while_retrying_then_recovers_once,
                                  tc_clear_faults),
        cmocka_unit_test(test_token_refresh_single_flight),
        cmocka_unit_test_teardown(
            test_dropped_reply_lost_then_reinstall_required, tc_clear_faults),
        cmocka_unit_test_teardown(test_upstream_faults_retry_then_dead_letter,
                                  tc_clear_faults),
        cmocka_unit_test(test_broker_stops_cleanly),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
