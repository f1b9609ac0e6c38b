/*
 * brokerctl: the operator's view of the broker's Redis. Commands grow with
 * the product; each prints for people, or JSON with --json.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "config.h"
#include "keys.h"

struct ctl {
    struct config *cfg;
    const char *conf_path;
    const char *redis_url;
    int json;
    redisContext *rc;
};

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: brokerctl [-c FILE | --redis URL] [--json] COMMAND\n"
            "\n"
            "Inspect the broker's store.\n"
            "\n"
            "  -c FILE       broker configuration (default ./broker.conf);\n"
            "                gives the Redis address, key prefix and suites\n"
            "  --redis URL   Redis to use instead of the configured one\n"
            "  --json        print JSON for scripts\n"
            "\n"
            "Commands:\n"
            "  suite         per suite: suite_ticket age, events waiting\n"
            "  help          this text\n"
            "\n"
            "Exit status: 0 ok, 1 failure, 2 usage error.\n");
}

static int
connect_redis(struct ctl *c)
{
    struct config_redis u;
    struct timeval tv = {3, 0};
    char url[600];
    redisReply *r;

    if (c->redis_url != NULL)
        snprintf(url, sizeof(url), "%s", c->redis_url);
    else if (c->cfg->redis[0] != '\0')
        snprintf(url, sizeof(url), "%s", c->cfg->redis);
    else
        snprintf(url, sizeof(url), "unix://%s/redis.sock",
                 c->cfg->state_dir);
    if (config_redis_parse(url, &u) != BRK_OK) {
        fprintf(stderr, "brokerctl: bad Redis URL\n");
        return -1;
    }
    c->rc = u.unix_path ? redisConnectUnixWithTimeout(u.unix_path, tv)
                        : redisConnectWithTimeout(u.host, u.port, tv);
    if (c->rc == NULL || c->rc->err) {
        config_redis_clear(&u);
        fprintf(stderr, "brokerctl: cannot reach Redis (%s)%s\n",
                c->rc ? c->rc->errstr : "out of memory",
                c->cfg->redis[0] ? ""
                                 : "; with embedded Redis the broker must "
                                   "be running");
        return -1;
    }
    redisSetTimeout(c->rc, tv);
    if (u.password != NULL) {
        r = u.user ? redisCommand(c->rc, "AUTH %s %s", u.user, u.password)
                      : redisCommand(c->rc, "AUTH %s", u.password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "brokerctl: Redis AUTH failed\n");
            if (r)
                freeReplyObject(r);
            config_redis_clear(&u);
            return -1;
        }
        freeReplyObject(r);
    }
    if (u.db != 0)
        freeReplyObject(redisCommand(c->rc, "SELECT %ld", u.db));
    config_redis_clear(&u);
    return 0;
}

static int
cmd_suite(struct ctl *c)
{
    json_t *arr = json_array();
    char key[KEYS_MAX], ev[KEYS_MAX], *s;
    redisReply *r;
    long long ts, queued;
    size_t i;
    long now = (long)time(NULL);

    if (!c->json)
        printf("%-32s %-22s %s\n", "SUITE", "TICKET", "EVENTS QUEUED");
    for (i = 0; i < c->cfg->nsuites; i++) {
        const char *id = c->cfg->suites[i].suite_id;
        char age[64];

        if (keys_suite_ticket(key, sizeof(key), c->cfg->key_prefix, id) ||
            keys_suite_events(ev, sizeof(ev), c->cfg->key_prefix, id))
            return 1;
        r = redisCommand(c->rc, "HGET %s at", key);
        if (r == NULL) {
            fprintf(stderr, "brokerctl: Redis: %s\n", c->rc->errstr);
            return 1;
        }
        ts = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
        freeReplyObject(r);
        r = redisCommand(c->rc, "XLEN %s", ev);
        queued = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        if (r)
            freeReplyObject(r);
        if (c->json) {
            json_array_append_new(
                arr, json_pack("{s:s, s:o, s:I}", "suite_id", id,
                               "ticket_received_at",
                               ts < 0 ? json_null() : json_integer(ts),
                               "events_queued", (json_int_t)queued));
            continue;
        }
        if (ts < 0)
            snprintf(age, sizeof(age), "none (expired or never)");
        else
            snprintf(age, sizeof(age), "%llds ago", (long long)(now - ts));
        printf("%-32s %-22s %lld\n", id, age, queued);
    }
    if (c->json) {
        s = json_dumps(arr, JSON_COMPACT);
        printf("%s\n", s ? s : "[]");
        free(s);
    }
    json_decref(arr);
    return 0;
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"redis", required_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ctl c;
    struct brk_errinfo info = {"", 0, -1};
    char msg[512];
    int ch, rc = 1;

    memset(&c, 0, sizeof(c));
    c.conf_path = "broker.conf";
    while ((ch = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': c.conf_path = optarg; break;
        case 'r': c.redis_url = optarg; break;
        case 'j': c.json = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[optind], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[optind], "suite") != 0) {
        fprintf(stderr, "brokerctl: unknown command %s\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    for (optind++; optind < argc; optind++) {
        if (strcmp(argv[optind], "--json") == 0) {
            c.json = 1;
        } else {
            fprintf(stderr, "brokerctl: unexpected argument %s\n",
                    argv[optind]);
            return 2;
        }
    }
    if (config_load(c.conf_path, &c.cfg, &info) != BRK_OK) {
        config_format_error(c.conf_path, &info, msg, sizeof(msg));
        fprintf(stderr, "brokerctl: %s\n", msg);
        return 1;
    }
    if (connect_redis(&c) == 0)
        rc = cmd_suite(&c);
    if (c.rc != NULL)
        redisFree(c.rc);
    config_free(c.cfg);
    return rc;
}
