/*
 * Redis Sentinel end to end: a primary, a replica and three sentinels on
 * loopback (down-after-milliseconds 1000, quorum 2), the broker on
 * `redis = sentinel://...` with redis_min_replica_acks = 1, the WeCom
 * simulator upstream. The primary is SIGKILLed under callback and service
 * load: every acknowledged callback is processed afterwards, none is
 * acknowledged while no replica can confirm it, the service API answers
 * within 3 s of the +switch-master this test sees, and nothing is written
 * to the old primary once it is back as a replica. Then hostile sentinels
 * (garbage, one naming a replica) and no sentinel at all.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "harness.h"
#include "simclient.h"
#include "store.h"
#include "svcclient.h"
#include "tenantclient.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define S1     H_SUITE
#define CORP1  "wwmockcorp0001"
#define MEMBER "u00003"
#define MASTER "wbmaster"

static struct harness H;
static struct wecom_crypto *C;
static pid_t Mock;
static int MockPort;
static char *Reader_secret, *Reader_tok;

/* the data nodes: 0 starts as the primary, 1 as its replica */
struct node {
    int port;
    pid_t pid;
    char sock[320];
    char dir[320];
};
static struct node N[2];
static int SPort[3];
static pid_t SPid[3];

/*---- Processes ----*/

static pid_t
spawn_redis(const char *const *argv, const char *log)
{
    pid_t pid = fork();

    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

        dup2(fd, 1);
        dup2(fd, 2);
        execvp("redis-server", (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    return pid > 0 ? pid : 0;
}

static void
reap(pid_t *pid, int sig)
{
    if (*pid > 0) {
        kill(*pid, sig);
        waitpid(*pid, NULL, 0);
        *pid = 0;
    }
}

/* A synchronous connection to 127.0.0.1:port (redisFree), NULL when it
 * does not answer. */
static redisContext *
tcp(int port)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

    if (c == NULL || c->err) {
        if (c != NULL)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

/* INFO section of the server at port (free), NULL when it does not
 * answer. */
static char *
info(int port, const char *section)
{
    redisContext *c = tcp(port);
    redisReply *r;
    char *s = NULL;

    if (c == NULL)
        return NULL;
    r = redisCommand(c, "INFO %s", section);
    if (r != NULL && r->type == REDIS_REPLY_STRING)
        s = strdup(r->str);
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return s;
}

static int
info_has(int port, const char *section, const char *needle)
{
    char *s = info(port, section);
    int ok = s != NULL && strstr(s, needle) != NULL;

    free(s);
    return ok;
}

/* Start data node i; a replica of port replica_of when it is not 0. */
static void
node_start(int i, int replica_of)
{
    char port[16], log[400], master[16];
    const char *argv[20];
    int n = 0;

    snprintf(port, sizeof(port), "%d", N[i].port);
    snprintf(master, sizeof(master), "%d", replica_of);
    snprintf(log, sizeof(log), "%s/node%d.log", H.dir, i);
    mkdir(N[i].dir, 0700);
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--unixsocket";
    argv[n++] = N[i].sock;
    argv[n++] = "--unixsocketperm";
    argv[n++] = "700";
    argv[n++] = "--dir";
    argv[n++] = N[i].dir;
    argv[n++] = "--save";
    argv[n++] = "";
    /* a replica back after the kill syncs at once, not after 5 s */
    argv[n++] = "--repl-diskless-sync-delay";
    argv[n++] = "0";
    if (replica_of != 0) {
        argv[n++] = "--replicaof";
        argv[n++] = "127.0.0.1";
        argv[n++] = master;
    }
    argv[n] = NULL;
    N[i].pid = spawn_redis(argv, log);
    assert_true(N[i].pid > 0);
}

static int
node_answers(void *arg)
{
    return info_has(*(int *)arg, "server", "redis_version");
}

static int
replica_linked(void *arg)
{
    return info_has(*(int *)arg, "replication", "master_link_status:up");
}

static void
sentinel_start(int k, int master_port)
{
    char conf[400], log[400];
    const char *argv[4];
    FILE *f;

    snprintf(conf, sizeof(conf), "%s/sentinel%d.conf", H.dir, k);
    snprintf(log, sizeof(log), "%s/sentinel%d.log", H.dir, k);
    f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f,
            "port %d\n"
            "bind 127.0.0.1\n"
            "dir %s\n"
            "sentinel monitor " MASTER " 127.0.0.1 %d 2\n"
            "sentinel down-after-milliseconds " MASTER " 1000\n"
            "sentinel failover-timeout " MASTER " 4000\n"
            "sentinel parallel-syncs " MASTER " 1\n",
            SPort[k], H.dir, master_port);
    fclose(f);
    argv[0] = "redis-server";
    argv[1] = conf;
    argv[2] = "--sentinel";
    argv[3] = NULL;
    SPid[k] = spawn_redis(argv, log);
    assert_true(SPid[k] > 0);
}

/* Every sentinel knows the replica and the two other sentinels. */
static int
sentinels_settled(void *arg)
{
    int k, ok = 1;

    (void)arg;
    for (k = 0; k < 3 && ok; k++) {
        redisContext *c = tcp(SPort[k]);
        redisReply *r;
        size_t i;
        int slaves = -1, others = -1;

        if (c == NULL)
            return 0;
        r = redisCommand(c, "SENTINEL master " MASTER);
        for (i = 0;
             r != NULL && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements;
             i += 2) {
            if (strcmp(r->element[i]->str, "num-slaves") == 0)
                slaves = (int)strtol(r->element[i + 1]->str, NULL, 10);
            if (strcmp(r->element[i]->str, "num-other-sentinels") == 0)
                others = (int)strtol(r->element[i + 1]->str, NULL, 10);
        }
        ok = slaves == 1 && others == 2;
        if (r != NULL)
            freeReplyObject(r);
        redisFree(c);
    }
    return ok;
}

/*---- A sentinel of our own: the same bytes to every request ----*/

struct fake {
    pid_t pid;
    int port;
    char count[400]; /* one byte appended per connection */
};

static void
fake_start(struct fake *f, const char *reply, const char *name)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    f->port = ntohs(a.sin_port);
    snprintf(f->count, sizeof(f->count), "%s/%s.count", H.dir, name);
    f->pid = fork();
    if (f->pid == 0) {
        for (;;) {
            int c = accept(fd, NULL, NULL), cf;
            char buf[4096];

            if (c < 0)
                continue;
            cf = open(f->count, O_WRONLY | O_CREAT | O_APPEND, 0600);
            if (cf >= 0) {
                if (write(cf, "x", 1) != 1)
                    _exit(1);
                close(cf);
            }
            while (read(c, buf, sizeof(buf)) > 0)
                if (write(c, reply, strlen(reply)) < 0)
                    break;
            close(c);
        }
    }
    close(fd);
    assert_true(f->pid > 0);
}

/*---- Watching the sentinels as an operator would ----*/

static volatile long Switch_ms;  /* when +switch-master arrived */
static volatile int Watch_ready; /* subscribed */
static char Switch_msg[256];
static redisContext *Watch;
static pthread_t Watch_thread;

static void *
watch_run(void *arg)
{
    redisReply *r = NULL;

    (void)arg;
    while (redisGetReply(Watch, (void **)&r) == REDIS_OK) {
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[0]->type == REDIS_REPLY_STRING) {
            if (strcmp(r->element[0]->str, "subscribe") == 0) {
                Watch_ready = 1;
            } else if (strcmp(r->element[0]->str, "message") == 0 &&
                       Switch_ms == 0) {
                snprintf(Switch_msg, sizeof(Switch_msg), "%s",
                         r->element[2]->str);
                Switch_ms = h_now_ms();
            }
        }
        freeReplyObject(r);
        r = NULL;
    }
    return NULL;
}

static int
watch_ready(void *arg)
{
    (void)arg;
    return Watch_ready;
}

/*---- Fixtures ----*/

/* broker.conf as the harness writes it, with our redis line. */
static void
write_conf(const char *path, const char *url)
{
    char extra[512], *s, *line, *end, *out;
    size_t n;
    FILE *f;

    snprintf(extra, sizeof(extra),
             "wecom_api_base = http://127.0.0.1:%d\n"
             "event_claim_idle = 3\n"
             "event_max_attempts = 12\n"
             "upstream_timeout_ms = 2000\n"
             "upstream_rate_per_corp = 1000000\n"
             "redis_min_replica_acks = 1\n",
             MockPort);
    assert_int_equal(h_write_conf_to(&H, path, 0, extra), 0);
    s = h_slurp(path);
    assert_non_null(s);
    line = strstr(s, "\nredis = ");
    assert_non_null(line);
    end = strchr(line + 1, '\n');
    n = strlen(s) + strlen(url) + 16;
    out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%.*s\nredis = %s%s", (int)(line - s), s, url, end);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(out, f);
    fclose(f);
    free(out);
    free(s);
}

static int
setup(void **state)
{
    const char *extra[] = {"--suite", S1 ":" H_SECRET, "--corps",
                           "2",       "--quiet",       NULL};
    char url[256];
    int i;

    (void)state;
    if (h_setup(&H) != 0)
        return -1;
    /* our own nodes replace the harness's server; h_redis() reaches the
     * current primary through its unix socket */
    h_redis_stop(&H);
    for (i = 0; i < 2; i++) {
        N[i].port = h_free_port();
        snprintf(N[i].sock, sizeof(N[i].sock), "%s/node%d.sock", H.dir, i);
        snprintf(N[i].dir, sizeof(N[i].dir), "%s/node%d", H.dir, i);
    }
    for (i = 0; i < 3; i++)
        SPort[i] = h_free_port();
    node_start(0, 0);
    if (!h_wait(node_answers, &N[0].port, 10000))
        return -1;
    node_start(1, N[0].port);
    if (!h_wait(replica_linked, &N[1].port, 10000))
        return -1;
    snprintf(H.redis_sock, sizeof(H.redis_sock), "%s", N[0].sock);
    for (i = 0; i < 3; i++)
        sentinel_start(i, N[0].port);
    if (!h_wait(sentinels_settled, NULL, 30000)) {
        fprintf(stderr, "# the sentinels did not find each other\n");
        return -1;
    }
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    tc_init(&H, MockPort);
    if (wecom_crypto_new(H_TOKEN, H_AESKEY, &C) != BRK_OK)
        return -1;
    snprintf(url, sizeof(url),
             "sentinel://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/" MASTER,
             SPort[0], SPort[1], SPort[2]);
    write_conf(H.conf, url);
    if (h_broker_start(&H) != 0)
        return -1;
    tc_push_ticket(S1);
    tc_install(S1, CORP1, h_next_ts());
    tc_wait_status(S1, CORP1, "active", 30000);
    Reader_secret = tc_svc_add("reader", "contacts.read", NULL, NULL);
    Reader_tok = tc_token_for(H.int_port, Reader_secret, CORP1);
    return 0;
}

static int
teardown(void **state)
{
    int i;

    (void)state;
    wecom_crypto_free(C);
    tc_done();
    if (H.broker_pid > 0)
        h_broker_stop(&H, SIGKILL);
    if (Mock > 0)
        h_stop(Mock, SIGTERM);
    for (i = 0; i < 3; i++)
        reap(&SPid[i], SIGKILL);
    for (i = 0; i < 2; i++)
        reap(&N[i].pid, SIGKILL);
    if (Watch != NULL) {
        /* the sentinel is gone: the watcher's read fails and it ends */
        pthread_join(Watch_thread, NULL);
        redisFree(Watch);
    }
    free(Reader_secret);
    free(Reader_tok);
    H.redis_pid = 0;
    h_teardown(&H);
    return 0;
}

/*---- Load: signed callbacks and user/get ----*/

enum { SLOTS = 6 };

struct slot {
    CURL *e;
    struct sc_resp r;
    int busy, cb, marker;
    long t0, next;
    char *env;
};

struct load {
    CURLM *m;
    struct slot s[SLOTS];
    int nmarkers;
    char acked[1 << 16];
    long kill_ms, restart_ms; /* the primary killed; restarted as replica */
    long svc_back, cb_back;   /* first success after the switch */
    int svc_ok, svc_503, cb_ok, cb_503, odd;
    int acked_unconfirmable; /* acked between the kill and the restart */
    int svc_late;            /* failures after the service came back */
};

static void
build_event(const char *const *kv, size_t npairs, char **env, size_t *envlen,
            char **pq)
{
    const char *k[12], *v[12], *ek[] = {"ToUserName", "Encrypt"}, *evv[2];
    char *xml, *enc, sig[WECOM_CRYPTO_SIG_SIZE], ts[24], nonce[32];
    static unsigned seq;
    size_t len, i;

    for (i = 0; i < npairs; i++) {
        k[i] = kv[2 * i];
        v[i] = kv[2 * i + 1];
    }
    assert_int_equal(wecom_xml_build(k, v, npairs, &xml, &len), BRK_OK);
    assert_int_equal(wecom_crypto_encrypt(C, xml, len, S1, &enc), BRK_OK);
    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    snprintf(nonce, sizeof(nonce), "s%u", ++seq);
    assert_int_equal(wecom_crypto_sign(C, ts, nonce, enc, sig), BRK_OK);
    evv[0] = S1;
    evv[1] = enc;
    assert_int_equal(wecom_xml_build(ek, evv, 2, env, envlen), BRK_OK);
    *pq = malloc(512);
    assert_non_null(*pq);
    snprintf(*pq, 512,
             "/wecom/suite/%s/callback?msg_signature=%s&timestamp=%s"
             "&nonce=%s",
             S1, sig, ts, nonce);
    brk_free(enc);
    brk_free(xml);
}

static void
slot_start(struct load *L, struct slot *s)
{
    char url[600], *pq, uid[32], tsb[24];
    const char *kv[14];
    size_t len;

    sc_resp_init(&s->r);
    s->t0 = h_now_ms();
    if (s->cb) {
        assert_true(L->nmarkers < (int)sizeof(L->acked));
        s->marker = L->nmarkers++;
        snprintf(uid, sizeof(uid), "wmsent-%06d", s->marker);
        snprintf(tsb, sizeof(tsb), "%ld", (long)time(NULL));
        kv[0] = "SuiteId";
        kv[1] = S1;
        kv[2] = "InfoType";
        kv[3] = "change_external_contact";
        kv[4] = "TimeStamp";
        kv[5] = tsb;
        kv[6] = "AuthCorpId";
        kv[7] = CORP1;
        kv[8] = "ChangeType";
        kv[9] = "add_external_contact";
        kv[10] = "UserID";
        kv[11] = MEMBER;
        kv[12] = "ExternalUserID";
        kv[13] = uid;
        build_event(kv, 7, &s->env, &len, &pq);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", H.cb_port, pq);
        free(pq);
        s->e = sc_easy(&s->r, "POST", url, s->env, len, NULL);
    } else {
        snprintf(url, sizeof(url),
                 "http://127.0.0.1:%d/cgi-bin/user/get?access_token=%s"
                 "&userid=%s",
                 H.int_port, Reader_tok, MEMBER);
        s->e = sc_easy(&s->r, "GET", url, NULL, 0, NULL);
    }
    curl_easy_setopt(s->e, CURLOPT_PRIVATE, s);
    curl_multi_add_handle(L->m, s->e);
    s->busy = 1;
}

static void
slot_done(struct load *L, struct slot *s)
{
    long t1 = h_now_ms();

    sc_resp_done(s->e, &s->r);
    curl_multi_remove_handle(L->m, s->e);
    curl_easy_cleanup(s->e);
    if (s->cb) {
        if (s->r.status == 200 && s->r.body != NULL &&
            strcmp(s->r.body, "success") == 0) {
            L->cb_ok++;
            L->acked[s->marker] = 1;
            /* nothing can confirm an event from the kill until the old
             * primary is back as a replica */
            if (L->kill_ms > 0 && s->t0 >= L->kill_ms &&
                (L->restart_ms == 0 || t1 <= L->restart_ms))
                L->acked_unconfirmable++;
            if (Switch_ms > 0 && L->restart_ms > 0 && L->cb_back == 0)
                L->cb_back = t1;
        } else if (s->r.status == 503) {
            L->cb_503++;
        } else {
            L->odd++;
            fprintf(stderr, "# callback: %ld %.100s\n", s->r.status,
                    s->r.body ? s->r.body : "");
        }
        brk_free(s->env);
        s->env = NULL;
    } else {
        if (s->r.status == 200 && sc_ecode(&s->r) == 0 &&
            strcmp(h_str(s->r.json, "userid"), MEMBER) == 0) {
            L->svc_ok++;
            if (Switch_ms > 0 && s->t0 >= Switch_ms && L->svc_back == 0)
                L->svc_back = t1;
        } else if (s->r.status == 503 && sc_ecode(&s->r) == -1) {
            L->svc_503++;
            if (L->svc_back > 0 && s->t0 > L->svc_back + 200)
                L->svc_late++;
        } else {
            L->odd++;
            fprintf(stderr, "# service: %ld %.100s\n", s->r.status,
                    s->r.body ? s->r.body : "");
        }
        /* fail closed: never data without the store */
        if (s->r.status != 200)
            assert_null(strstr(s->r.body ? s->r.body : "", MEMBER));
    }
    sc_resp_free(&s->r);
    s->busy = 0;
    s->next = t1 + 20;
}

static void
load_pump(struct load *L, int start)
{
    CURLMsg *msg;
    int running, left, i;
    long now = h_now_ms();

    for (i = 0; start && i < SLOTS; i++)
        if (!L->s[i].busy && L->s[i].next <= now)
            slot_start(L, &L->s[i]);
    curl_multi_perform(L->m, &running);
    while ((msg = curl_multi_info_read(L->m, &left)) != NULL) {
        struct slot *s = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        slot_done(L, s);
    }
    curl_multi_poll(L->m, NULL, 0, 5, NULL);
}

/* Values of field in the audit stream of the current primary, counted. */
static json_t *
audit_values(const char *field)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    json_t *seen = json_object();
    size_t i, j;

    if (c == NULL)
        return seen;
    r = redisCommand(c, "XRANGE wb:audit - +");
    for (i = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && i < r->elements;
         i++) {
        redisReply *f = r->element[i]->element[1];

        for (j = 0; j + 1 < f->elements; j += 2)
            if (strcmp(f->element[j]->str, field) == 0)
                json_object_set_new(seen, f->element[j + 1]->str,
                                    json_integer(1));
    }
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return seen;
}

struct markers {
    const struct load *L;
    int missing;
};

static int
all_processed(void *arg)
{
    struct markers *k = arg;
    json_t *seen = audit_values("ExternalUserID");
    char uid[32];
    int i;

    k->missing = 0;
    for (i = 0; i < k->L->nmarkers; i++) {
        snprintf(uid, sizeof(uid), "wmsent-%06d", i);
        if (k->L->acked[i] && json_object_get(seen, uid) == NULL)
            k->missing++;
    }
    json_decref(seen);
    return k->missing == 0;
}

static int
readyz_says(const char *needle)
{
    char *url = h_int_url(&H, "/readyz"), *body = NULL;
    long st = h_http("GET", url, NULL, 0, &body);
    int ok = st == 503 && body != NULL && strstr(body, needle) != NULL;

    free(url);
    free(body);
    return ok;
}

/* A field "name=N" of one line of INFO commandstats, summed over all. */
static long
commandstats_sum(const char *stats, const char *name)
{
    const char *p = stats;
    long sum = 0;

    while ((p = strstr(p, name)) != NULL) {
        p += strlen(name);
        sum += strtol(p, NULL, 10);
    }
    return sum;
}

/*---- The failover ----*/

static void
test_primary_killed_under_load(void **state)
{
    struct load *L = calloc(1, sizeof(*L));
    struct markers k;
    long end, ms, replicas_reason_ms = 0;
    int i, acked = 0, saw_reason = 0;
    char *stats, *errs;

    (void)state;
    assert_non_null(L);
    /* the test's own view of the failover: +switch-master on a sentinel */
    Watch = tcp(SPort[1]);
    assert_non_null(Watch);
    {
        struct timeval forever = {0, 0};

        redisSetTimeout(Watch, forever);
    }
    redisAppendCommand(Watch, "SUBSCRIBE +switch-master");
    assert_int_equal(pthread_create(&Watch_thread, NULL, watch_run, NULL), 0);
    assert_true(h_wait(watch_ready, NULL, 5000));

    L->m = curl_multi_init();
    for (i = 0; i < SLOTS; i++)
        L->s[i].cb = i % 2;
    ms = h_now_ms();
    end = ms + 60000;
    while (h_now_ms() < end) {
        long now = h_now_ms();

        if (L->kill_ms == 0 && now - ms >= 1500) {
            reap(&N[0].pid, SIGKILL);
            L->kill_ms = h_now_ms();
        } else if (Switch_ms > 0 && L->restart_ms == 0) {
            /* until a replica is back, nothing can be acknowledged, and
             * readyz says why */
            if (!saw_reason &&
                readyz_says("redis replicas 0 < redis_min_replica_acks 1")) {
                saw_reason = 1;
                replicas_reason_ms = h_now_ms();
            }
            if (L->svc_back > 0 && saw_reason && now - L->svc_back >= 1000) {
                snprintf(H.redis_sock, sizeof(H.redis_sock), "%s", N[1].sock);
                L->restart_ms = h_now_ms();
                /* the old primary comes back as a replica of the new */
                node_start(0, N[1].port);
            }
        } else if (L->cb_back > 0 && now - L->cb_back >= 2000) {
            break;
        }
        load_pump(L, 1);
    }
    for (;;) {
        int busy = 0;

        for (i = 0; i < SLOTS; i++)
            busy |= L->s[i].busy;
        if (!busy)
            break;
        load_pump(L, 0);
    }
    curl_multi_cleanup(L->m);
    for (i = 0; i < L->nmarkers; i++)
        acked += L->acked[i];
    fprintf(stderr,
            "# primary SIGKILLed; +switch-master after %ld ms (%s)\n"
            "# service API: first good answer %ld ms after +switch-master; "
            "%d ok, %d 503\n"
            "# readyz named the missing replica %ld ms after +switch-master\n"
            "# callbacks: %d acked, %d 503, first ack %ld ms after the old "
            "primary restarted as a replica; %d acked with no replica\n",
            Switch_ms - L->kill_ms, Switch_msg, L->svc_back - Switch_ms,
            L->svc_ok, L->svc_503, replicas_reason_ms - Switch_ms, L->cb_ok,
            L->cb_503, L->cb_back - L->restart_ms, L->acked_unconfirmable);
    assert_true(Switch_ms > 0);
    assert_non_null(strstr(Switch_msg, MASTER " 127.0.0.1"));
    assert_true(L->svc_back > 0);
    assert_true(L->svc_back - Switch_ms <= 3000);
    assert_int_equal(L->svc_late, 0);
    assert_true(saw_reason);
    assert_true(L->cb_back > 0);
    assert_int_equal(L->odd, 0);
    assert_int_equal(L->acked_unconfirmable, 0);
    assert_int_equal(acked, L->cb_ok);
    assert_true(L->cb_503 > 10);

    /* no acknowledged callback lost */
    k.L = L;
    ms = h_now_ms();
    if (!h_wait(all_processed, &k, 30000)) {
        fprintf(stderr, "# %d acknowledged callbacks never processed\n",
                k.missing);
        fail();
    }
    fprintf(stderr,
            "# all %d acknowledged callbacks processed (%ld ms after the "
            "load)\n",
            acked, h_now_ms() - ms);

    /* the old primary, back as a replica, got no client write: no script
     * ran there, nothing was refused READONLY */
    assert_true(h_wait(replica_linked, &N[0].port, 10000));
    stats = info(N[0].port, "commandstats");
    errs = info(N[0].port, "errorstats");
    assert_non_null(stats);
    assert_non_null(errs);
    assert_null(strstr(stats, "cmdstat_evalsha:"));
    assert_null(strstr(stats, "cmdstat_eval:"));
    assert_int_equal(commandstats_sum(stats, "rejected_calls="), 0);
    assert_null(strstr(errs, "READONLY"));
    free(stats);
    free(errs);
    free(L);
    {
        char *log = h_slurp(H.log);

        assert_non_null(log);
        assert_non_null(strstr(log, "sentinel: " MASTER " switched to"));
        free(log);
    }
}

/*---- Hostile sentinels, and none at all ----*/

static struct event_base *Base;

struct up_wait {
    struct store *s;
};

static int
store_up(void *arg)
{
    struct up_wait *w = arg;

    event_base_loop(Base, EVLOOP_NONBLOCK);
    return store_is_up(w->s);
}

struct port_reply {
    int done;
    long long port;
};

static void
on_port(enum brk_err err, struct redisReply *r, void *arg)
{
    struct port_reply *p = arg;

    if (!err && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
        p->port = strtoll(r->element[1]->str, NULL, 10);
    p->done = 1;
}

static int
port_done(void *arg)
{
    event_base_loop(Base, EVLOOP_NONBLOCK);
    return ((struct port_reply *)arg)->done;
}

/* The node the primary is now: the one whose ROLE says master. */
static int
primary_port(void)
{
    int i;

    for (i = 0; i < 2; i++)
        if (info_has(N[i].port, "replication", "role:master"))
            return N[i].port;
    return 0;
}

static void
test_garbage_and_replica_skipped(void **state)
{
    struct fake garbage, liar;
    char reply[128], url[256];
    struct up_wait w;
    struct port_reply p = {0, 0};
    const char *argv[3] = {"CONFIG", "GET", "port"};
    int primary = primary_port(), replica;
    char *count;

    (void)state;
    assert_true(primary != 0);
    replica = primary == N[0].port ? N[1].port : N[0].port;
    fake_start(&garbage, "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n99999\r\n", "garbage");
    snprintf(reply, sizeof(reply), "*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%d\r\n",
             replica >= 10000 ? 5 : 4, replica);
    fake_start(&liar, reply, "liar");
    /* asked in order: garbage, then one naming the replica, then a real
     * sentinel */
    snprintf(url, sizeof(url),
             "sentinel://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/" MASTER,
             garbage.port, liar.port, SPort[2]);
    Base = event_base_new();
    assert_int_equal(store_new(Base, url, 1000, &w.s), BRK_OK);
    assert_true(h_wait(store_up, &w, 10000));
    assert_int_equal(store_cmd_argv(w.s, on_port, &p, 3, argv, NULL), BRK_OK);
    assert_true(h_wait(port_done, &p, 5000));
    assert_int_equal(p.port, primary);
    /* both liars were asked and not believed */
    count = h_slurp(garbage.count);
    assert_non_null(count);
    free(count);
    count = h_slurp(liar.count);
    assert_non_null(count);
    free(count);
    store_free(w.s);
    event_base_free(Base);
    reap(&garbage.pid, SIGKILL);
    reap(&liar.pid, SIGKILL);
}

static void
test_no_sentinel_fails_closed(void **state)
{
    char conf[400], log[400], url[600], *body = NULL, *env, *pq;
    const char *kv[] = {"SuiteId",   S1,  "InfoType",   "change_auth",
                        "TimeStamp", "1", "AuthCorpId", CORP1};
    struct sc_resp r;
    pid_t pid;
    int cb = H.cb_port, ip = H.int_port, port, cbport;
    size_t len;
    long st;

    (void)state;
    /* nothing listens there */
    snprintf(url, sizeof(url), "sentinel://127.0.0.1:%d,127.0.0.1:%d/" MASTER,
             h_free_port(), h_free_port());
    snprintf(conf, sizeof(conf), "%s/broker-none.conf", H.dir);
    snprintf(log, sizeof(log), "%s/broker-none.log", H.dir);
    write_conf(conf, url);
    port = H.int_port;
    cbport = H.cb_port;
    pid = h_spawn_broker(conf, log);
    assert_true(pid > 0);
    assert_true(
        h_log_wait(log, 0, "no sentinel named a usable primary", 10000));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", port);
    st = h_http("GET", url, NULL, 0, &body);
    assert_int_equal(st, 503);
    assert_non_null(strstr(body, "redis unavailable"));
    free(body);
    sc_call(&r, port, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok, MEMBER);
    SC_EXPECT(&r, 503, -1);
    sc_resp_free(&r);
    build_event(kv, 4, &env, &len, &pq);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", cbport, pq);
    st = h_http("POST", url, env, len, &body);
    assert_int_equal(st, 503);
    assert_null(strstr(body ? body : "", "success"));
    free(body);
    free(pq);
    brk_free(env);
    assert_int_equal(h_stop(pid, SIGTERM), 0);
    H.cb_port = cb;
    H.int_port = ip;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_primary_killed_under_load),
        cmocka_unit_test(test_garbage_and_replica_skipped),
        cmocka_unit_test(test_no_sentinel_fails_closed),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
