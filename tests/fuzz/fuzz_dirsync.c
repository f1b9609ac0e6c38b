/*
 * Fuzz the directory sync planner with WeCom's replies. The first byte
 * picks a grant (bit 7 set: the first two lines are the agent and the
 * permissions as JSON) and the answer order (bit 6: newest first); the
 * rest is split on '\n', one line per call answered: "E<code>" is a WeCom
 * error code, anything else the reply body (text that is not JSON is fed
 * as NULL). Once the lines run out every call gets errcode -1.
 *
 * Properties: at most DIRSYNC_MAX_INFLIGHT calls out; only the five
 * planned APIs, never user/list_id or tag/list; a path without token,
 * space or control character, and a body exactly for POST; the sync ends;
 * a completed sync's result is accepted by vrange_build with the grant's
 * privilege, its members' departments ascending and unique; a failed one
 * refuses its result with its failure code.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "broker.h"
#include "dirsync.h"
#include "visible_range.h"

#include "fuzz.h"

static const char *const ds_agents[][2] = {
    {"{\"auth_mode\":0,\"privilege\":{\"level\":1,\"allow_party\":[2]}}",
     "{\"app_permissions\":[\"contact:base:base\"]}"},
    {"{\"auth_mode\":0,\"privilege\":{\"level\":1,\"allow_party\":[3],"
     "\"extra_party\":[8],\"allow_tag\":[10],\"allow_user\":[\"m1\",\"b\"]}}",
     "{\"app_permissions\":[\"contact:base:base\",\"corp_arch:base:base\"]}"},
    {"{\"privilege\":{\"level\":3,\"allow_tag\":[20,10],\"extra_tag\":[10]}}",
     "{\"app_permissions\":[\"contact:edit:all\"]}"},
    {"{\"privilege\":{\"level\":1,\"allow_user\":[\"alice\",\"wo+x/y\"]}}",
     NULL},
    {"{\"auth_mode\":1,\"privilege\":{\"level\":1,\"allow_user\":[\"m9\"]}}",
     "{\"app_permissions\":[\"contact:base:base\"]}"},
    {"{\"auth_mode\":1,\"privilege\":{}}", "{\"app_permissions\":[]}"},
    {"{\"privilege\":{\"allow_party\":[3,2],\"allow_user\":[\"u1\"]}}",
     "{\"app_permissions\":[\"externalcontact:base:base\"]}"},
};

static const char *const ds_apis[] = {"department/simplelist", "tag/get",
                                      "user/simplelist", "user/get",
                                      "user/list_member_auth"};

static json_t *
ds_load(const char *s, size_t n)
{
    return json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
}

static void
ds_check_call(const struct dirsync_call *c)
{
    const char *p, *q;
    size_t i, len;
    int known = 0;

    for (i = 0; i < sizeof(ds_apis) / sizeof(ds_apis[0]); i++)
        known |= strcmp(c->api, ds_apis[i]) == 0;
    FUZZ_CHECK(known);
    FUZZ_CHECK(c->id != 0);
    /* the path is the API's (so never user/list_id or tag/list) */
    q = strchr(c->path_query, '?');
    len = q ? (size_t)(q - c->path_query) : strlen(c->path_query);
    FUZZ_CHECK(len == 9 + strlen(c->api));
    FUZZ_CHECK(strncmp(c->path_query, "/cgi-bin/", 9) == 0);
    FUZZ_CHECK(strncmp(c->path_query + 9, c->api, strlen(c->api)) == 0);
    /* one query, no token parameter (a userid is percent-encoded) */
    q = strchr(c->path_query, '?');
    FUZZ_CHECK(q == NULL || strchr(q + 1, '?') == NULL);
    for (; q != NULL; q = strchr(q + 1, '&'))
        FUZZ_CHECK(strncmp(q + 1, "access_token=", 13) != 0);
    for (p = c->path_query; *p != '\0'; p++)
        FUZZ_CHECK((unsigned char)*p > ' ' && (unsigned char)*p < 0x7f);
    if (strcmp(c->method, "POST") == 0) {
        FUZZ_CHECK(c->body != NULL);
        FUZZ_CHECK(strcmp(c->api, "user/list_member_auth") == 0);
    } else {
        FUZZ_CHECK(strcmp(c->method, "GET") == 0);
        FUZZ_CHECK(c->body == NULL);
    }
}

/* A completed sync's result: well-formed for the resolver. */
static void
ds_check_result(const struct dirsync *ds, const json_t *agent)
{
    struct dir_pairs p = {0};
    json_t *u = NULL, *t = NULL, *parents = json_object();
    struct vrange *vr = NULL;
    const char *k, *s;
    json_t *v;
    unsigned long prev, cur;
    char *end;
    size_t i;
    enum brk_err err;

    err = dirsync_result(ds, &p, &u, &t);
    if (err == BRK_ERR_NOMEM || parents == NULL)
        goto out;
    FUZZ_CHECK(err == BRK_OK);
    for (i = 0; i < p.n; i++)
        json_object_set_new(parents, p.field[i], json_string(p.value[i]));
    FUZZ_CHECK(json_object_size(parents) == p.n);
    json_object_foreach(u, k, v)
    {
        s = json_string_value(v);
        FUZZ_CHECK(s != NULL && *s != '\0');
        for (prev = 0; *s != '\0'; s = end + (*end == ',')) {
            cur = strtoul(s, &end, 10);
            FUZZ_CHECK(end > s && cur > prev);
            prev = cur;
        }
    }
    err = vrange_build(json_object_get(agent, "privilege"), parents, u, t, &vr);
    FUZZ_CHECK(err == BRK_OK || err == BRK_ERR_NOMEM);
    vrange_free(vr);
out:
    dir_pairs_free(&p);
    json_decref(u);
    json_decref(t);
    json_decref(parents);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct dirsync_call out[DIRSYNC_MAX_INFLIGHT], extra;
    struct dirsync *ds = NULL;
    json_t *agent = NULL, *perms = NULL, *body;
    const char *line, *nl;
    char num[24];
    uint8_t sel = fuzz_byte(&in);
    size_t n = 0, i, len;
    unsigned answered = 0;
    long code;
    enum brk_err err;

    if (sel & 0x80) {
        nl = memchr(in.p, '\n', in.n);
        len = nl ? (size_t)(nl - (const char *)in.p) : in.n;
        agent = ds_load((const char *)in.p, len);
        fuzz_take(&in, len + (nl != NULL), &len);
        nl = memchr(in.p, '\n', in.n);
        len = nl ? (size_t)(nl - (const char *)in.p) : in.n;
        perms = ds_load((const char *)in.p, len);
        fuzz_take(&in, len + (nl != NULL), &len);
    } else {
        i = sel % (sizeof(ds_agents) / sizeof(ds_agents[0]));
        agent = json_loads(ds_agents[i][0], 0, NULL);
        perms = ds_agents[i][1] ? json_loads(ds_agents[i][1], 0, NULL) : NULL;
    }
    if (dirsync_new(agent, perms, &ds) != BRK_OK)
        goto out;
    for (;;) {
        while ((err = dirsync_next(ds, &out[n])) == BRK_OK) {
            FUZZ_CHECK(n < DIRSYNC_MAX_INFLIGHT);
            ds_check_call(&out[n]);
            n++;
        }
        FUZZ_CHECK(err == BRK_ERR_NOTFOUND || err == dirsync_status(ds));
        if (n == DIRSYNC_MAX_INFLIGHT)
            FUZZ_CHECK(dirsync_next(ds, &extra) != BRK_OK);
        if (n == 0 || err != BRK_ERR_NOTFOUND)
            break;
        i = (sel & 0x40) ? n - 1 : 0;
        line = (const char *)in.p;
        nl = memchr(in.p, '\n', in.n);
        len = nl ? (size_t)(nl - line) : in.n;
        if (in.n == 0) {
            err = dirsync_error(ds, out[i].id, -1);
        } else if (len > 1 && line[0] == 'E') {
            snprintf(num, sizeof(num), "%.*s", (int)(len - 1), line + 1);
            code = strtol(num, NULL, 10);
            err = dirsync_error(ds, out[i].id, code);
        } else {
            body = ds_load(line, len);
            err = dirsync_reply(ds, out[i].id, body);
            json_decref(body);
        }
        fuzz_take(&in, len + (nl != NULL), &len);
        /* an answered id is not outstanding any more */
        FUZZ_CHECK(dirsync_reply(ds, out[i].id, NULL) == BRK_ERR_NOTFOUND);
        memmove(&out[i], &out[i + 1], (n - i - 1) * sizeof(out[0]));
        n--;
        answered++;
        FUZZ_CHECK(err == dirsync_status(ds));
        if (err)
            break;
    }
    FUZZ_CHECK(dirsync_calls(ds) <= answered + DIRSYNC_MAX_INFLIGHT);
    if (dirsync_done(ds)) {
        FUZZ_CHECK(n == 0);
        ds_check_result(ds, agent);
    } else {
        err = dirsync_status(ds);
        FUZZ_CHECK(err == BRK_ERR_UPSTREAM_BAD || err == BRK_ERR_TOOBIG ||
                   err == BRK_ERR_WECOM || err == BRK_ERR_NOMEM);
        FUZZ_CHECK(dirsync_result(ds, &(struct dir_pairs){0}, &body, &body) ==
                   err);
    }
out:
    dirsync_free(ds);
    json_decref(agent);
    json_decref(perms);
    return 0;
}
