/*
 * Integration tests' side of WeCom for tenant work: signed, encrypted
 * callbacks to a broker, installs through the simulator, and brokerctl's
 * view of a tenant. One client per test program (tc_init).
 */
#ifndef TENANTCLIENT_H
#define TENANTCLIENT_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#include "harness.h"

/* Use harness h (its callback listener and config) and the simulator on
 * mock_port; the suites' token and key are H_TOKEN and H_AESKEY. */
void tc_init(struct harness *h, int mock_port);
void tc_done(void);
/* Send callbacks to another broker's callback port from now on (0: the
 * harness's own). */
void tc_target(int cb_port);

/* Encrypt and POST an event (npairs name/value pairs) as WeCom would;
 * asserts `success`. */
void tc_post_event(const char *suite, const char *const *kv, size_t npairs);
/* The same as a data callback of corp (receiveid the corpid) to
 * /wecom/suite/SUITE/data; asserts `success`. */
void tc_post_data(const char *suite, const char *corp, const char *const *kv,
                  size_t npairs);
/* A fresh suite_ticket from the simulator, pushed to the broker; the
 * ticket (static, valid until the next call). */
const char *tc_push_ticket(const char *suite);
/* The simulator mints an AuthCode for corp; create_auth is pushed. */
void tc_install(const char *suite, const char *corp, long ts);
/* An event naming corp (AuthCorpId), with one optional extra field. */
void tc_corp_event(const char *suite, const char *type, const char *corp,
                   long ts, const char *k1, const char *v1);
/* brokerctl -c CONF --json [--suite S] A1 [A2 [A3]], parsed (NULL when it
 * fails). */
json_t *tc_ctl_json(const char *a1, const char *a2, const char *a3,
                    const char *suite);
/* brokerctl -c CONF --json ARGS... (NULL-terminated); the exit status
 * into *rc; stdout parsed (owned), NULL when not JSON. A failure other
 * than of `tenant ...` is printed. */
json_t *tc_ctl(int *rc, ...);
/* brokerctl service add NAME --scopes SCOPES [OPT VAL] (opt may be NULL);
 * asserts success; the service secret (owned). */
char *tc_svc_add(const char *name, const char *scopes, const char *opt,
                 const char *val);
/* gettoken for corp with secret on port (0: the harness's internal
 * listener); asserts errcode 0; the access token (owned). */
char *tc_token_for(int port, const char *secret, const char *corp);
/* user/get of userid in corp for the service with secret (a fresh token
 * through gettoken): the reply's errcode, asserting HTTP 200. */
long tc_user_get_errcode(const char *secret, const char *corp,
                         const char *userid);
/* field of suite in `brokerctl suite`, -1 when absent. */
long tc_suite_field(const char *suite, const char *field);
/* Requests the simulator received on path; with corp, only those whose
 * body names it as auth_corpid. */
size_t tc_mock_count(const char *path, const char *corp);
/* Clear the simulator's faults: a cmocka setup or teardown. */
int tc_clear_faults(void **state);
/* The simulator leaky (every record, every field) or strict again, as
 * cmocka setup and teardown: for a test that needs WeCom to send what the
 * broker must remove. */
int tc_sim_leaky(void **state);
int tc_sim_strict(void **state);
/* The value of the first /metrics line starting with series (name and
 * labels, as printed), 0 when absent. */
long tc_metric(const char *series);

/* Every key and every string Redis holds (values of every type, zset
 * scores, stream fields), one per line (owned): to look for a secret
 * stored in the clear. An unexpected Redis type fails the test. */
char *tc_redis_text(void);

/* The tenant's status per `brokerctl tenant show`, "" when none (free). */
char *tc_status(const char *suite, const char *corp);
/* Poll until the tenant's status is status, failing the test after ms. */
void tc_wait_status(const char *suite, const char *corp, const char *status,
                    long ms);

/*
 * The members a tenant's directory must hold, worked out independently of
 * the broker from the simulator's own replies (its corp token, the
 * department tree, the tags' members and departments, each department's
 * members, the named members) and the privilege the broker stored (as
 * `brokerctl tenant show` prints it). Returns the count, -1 on failure.
 */
long tc_expected_members(const char *suite, const char *corp);

/*
 * A world for grant-shape tests: harness h, the simulator (10 corps of 60
 * members in 15 departments, strict), a broker on it (claim idle 3 s, 3
 * attempts), a suite ticket pushed and a service "reader" allowed
 * contacts.read, whose secret goes to secret. 0, or -1.
 */
int tc_world_start(struct harness *h, pid_t *mock, int *mock_port,
                   char *secret, size_t len);
/* tc_world_start with the simulator's arguments (NULL-terminated, its
 * --suite included) and broker.conf lines after wecom_api_base. */
int tc_world_start_with(struct harness *h, const char *const *mock_args,
                        const char *conf, pid_t *mock, int *mock_port,
                        char *secret, size_t len);
void tc_world_stop(struct harness *h, pid_t mock);

#endif
