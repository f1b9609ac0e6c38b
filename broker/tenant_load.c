/*
 * Reading a tenant for the caches (see tenant_load.h).
 *
 *   tenant_load_start -> [a copy: HMGET gen status -> on_check
 *                          -> current: the copy | full_start]
 *                      | full_start: HGETALL x4, HGET gen -> on_part x5
 *                          -> same generation: decode | again | give up
 */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "keys.h"
#include "log.h"
#include "record.h"
#include "store.h"
#include "tenant_load.h"

#define PARTS 4 /* the tenant hash, dir:parents, dir:users, dir:tags */

struct tl;

/* One command's callback argument. */
struct tl_cmd {
    struct tl *l;
    int i; /* 0..PARTS-1: a hash; PARTS: the generation after them */
};

struct tl {
    struct store *st;
    char keys[PARTS][KEYS_MAX];
    struct record_tenant *copy; /* one reference, or NULL */
    tenant_load_cb *cb;
    void *arg;
    int tries, pending;
    enum brk_err err;             /* the first failure of this round */
    redisReply *part[PARTS];      /* owned copies (reply_dup: brk_free) */
    unsigned long long gen_after; /* 0: none stored */
    int gen_after_bad;
    struct tl_cmd cmd[PARTS + 1];
};

/*---- Keeping replies past their callback ----*/

/*
 * A copy of r (a reply of depth <= 1: an HGETALL) in one allocation: the
 * reply, its element pointers, its elements, then every string, so a
 * directory of many thousand fields costs one malloc and one free, not
 * two per field. Free with brk_free. NULL: out of memory, or deeper.
 */
static redisReply *
reply_dup(const redisReply *r)
{
    size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    size_t head, bytes, i;
    redisReply *c, *e;
    char *p;

    head = sizeof(*c) + n * (sizeof(*c->element) + sizeof(*c));
    bytes = r->str != NULL ? r->len + 1 : 0;
    for (i = 0; i < n; i++) {
        if (r->element[i]->type == REDIS_REPLY_ARRAY)
            return NULL;
        if (r->element[i]->str != NULL)
            bytes += r->element[i]->len + 1;
    }
    c = brk_malloc(head + bytes);
    if (c == NULL)
        return NULL;
    memset(c, 0, head);
    c->type = r->type;
    c->integer = r->integer;
    c->elements = n;
    c->element = n > 0 ? (redisReply **)(c + 1) : NULL;
    e = (redisReply *)((char *)(c + 1) + n * sizeof(*c->element));
    p = (char *)c + head;
    if (r->str != NULL) {
        memcpy(p, r->str, r->len);
        p[r->len] = '\0';
        c->str = p;
        c->len = r->len;
        p += r->len + 1;
    }
    for (i = 0; i < n; i++) {
        const redisReply *s = r->element[i];

        c->element[i] = &e[i];
        e[i].type = s->type;
        e[i].integer = s->integer;
        if (s->str != NULL) {
            memcpy(p, s->str, s->len);
            p[s->len] = '\0';
            e[i].str = p;
            e[i].len = s->len;
            p += s->len + 1;
        }
    }
    return c;
}

/*---- The generation ----*/

/* A generation's text: BRK_OK with *out, BRK_ERR_INVAL. */
static enum brk_err
gen_of(const char *s, size_t len, unsigned long long *out)
{
    unsigned long long v = 0;
    size_t i;

    if (len == 0 || len > 20 || strlen(s) != len)
        return BRK_ERR_INVAL;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' ||
            v > (~0ULL - (unsigned)(s[i] - '0')) / 10)
            return BRK_ERR_INVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return BRK_OK;
}

/* The generation in a tenant hash reply (0: none); -1 when malformed. */
static int
hash_gen(const redisReply *h, unsigned long long *out)
{
    size_t i;

    *out = 0;
    for (i = 0; i + 1 < h->elements; i += 2)
        if (h->element[i]->str != NULL &&
            strcmp(h->element[i]->str, KEYS_TENANT_GEN) == 0)
            return h->element[i + 1]->str == NULL ||
                           gen_of(h->element[i + 1]->str,
                                  h->element[i + 1]->len, out)
                       ? -1
                       : 0;
    return 0;
}

/*---- The load ----*/

static void
parts_free(struct tl *l)
{
    int i;

    for (i = 0; i < PARTS; i++) {
        brk_free(l->part[i]);
        l->part[i] = NULL;
    }
}

static void
finish(struct tl *l, enum brk_err err, struct record_tenant *t, int renewed)
{
    tenant_load_cb *cb = l->cb;
    void *arg = l->arg;

    parts_free(l);
    record_tenant_unref(l->copy);
    brk_free(l);
    cb(err, t, renewed, arg);
}

static void on_part(enum brk_err err, struct redisReply *r, void *arg);

/* Send the four HGETALLs and the generation after them. Returns BRK_OK
 * when at least one was sent (the rest counted as failed), else the
 * error. */
static enum brk_err
full_start(struct tl *l)
{
    const char *argv[3];
    enum brk_err err = BRK_OK;
    int i;

    l->tries++;
    l->pending = 0;
    l->err = BRK_OK;
    l->gen_after = 0;
    l->gen_after_bad = 0;
    for (i = 0; i <= PARTS; i++) {
        argv[0] = i < PARTS ? "HGETALL" : "HGET";
        argv[1] = l->keys[i < PARTS ? i : 0];
        argv[2] = KEYS_TENANT_GEN;
        l->cmd[i].l = l;
        l->cmd[i].i = i;
        err = store_cmd_argv_timeout(l->st, TENANT_LOAD_TIMEOUT_MS, on_part,
                                     &l->cmd[i], i < PARTS ? 2 : 3, argv, NULL);
        if (err)
            break;
        l->pending++;
    }
    if (err && l->pending > 0) {
        l->err = err;
        return BRK_OK;
    }
    return err;
}

/* All five answered: decode, or read again, or give up. */
static void
full_done(struct tl *l)
{
    redisReply arr;
    struct record_tenant *t = NULL;
    unsigned long long before;
    enum brk_err err = l->err;

    if (err) {
        finish(l, err, NULL, 0);
        return;
    }
    if (l->part[0]->type != REDIS_REPLY_ARRAY ||
        hash_gen(l->part[0], &before) || l->gen_after_bad) {
        finish(l, BRK_ERR_INVAL, NULL, 0);
        return;
    }
    if (before != l->gen_after) {
        parts_free(l);
        if (l->tries >= TENANT_LOAD_TRIES) {
            log_warn("tenant %s: changed during each of %d reads; not served",
                     l->keys[0], l->tries);
            finish(l, BRK_ERR_STORE, NULL, 0);
            return;
        }
        err = full_start(l);
        if (err)
            finish(l, err, NULL, 0);
        return;
    }
    memset(&arr, 0, sizeof(arr));
    arr.type = REDIS_REPLY_ARRAY;
    arr.elements = PARTS;
    arr.element = l->part;
    err = record_tenant_decode(&arr, brk_wall_ms() / 1000, &t);
    if (err == BRK_ERR_NOTFOUND)
        err = BRK_OK;
    finish(l, err, err ? NULL : t, 0);
}

static void
on_part(enum brk_err err, struct redisReply *r, void *arg)
{
    struct tl_cmd *c = arg;
    struct tl *l = c->l;

    if (err && !l->err)
        l->err = err;
    if (!err && !l->err) {
        if (c->i < PARTS) {
            l->part[c->i] = reply_dup(r);
            if (l->part[c->i] == NULL)
                l->err = BRK_ERR_NOMEM;
        } else if (r->type == REDIS_REPLY_STRING) {
            l->gen_after_bad = gen_of(r->str, r->len, &l->gen_after) != BRK_OK;
        } else if (r->type != REDIS_REPLY_NIL) {
            l->gen_after_bad = 1;
        }
    }
    if (--l->pending == 0)
        full_done(l);
}

static void
on_check(enum brk_err err, struct redisReply *r, void *arg)
{
    struct tl *l = arg;

    if (err) {
        finish(l, err, NULL, 0);
        return;
    }
    if (record_tenant_current(l->copy, r, brk_wall_ms() / 1000)) {
        finish(l, BRK_OK, record_tenant_ref(l->copy), 1);
        return;
    }
    err = full_start(l);
    if (err)
        finish(l, err, NULL, 0);
}

/* Start a load (see tenant_load.h). */
enum brk_err
tenant_load_start(struct store *st, const char *prefix, const char *suite,
                  const char *corp, struct record_tenant *copy,
                  tenant_load_cb *cb, void *arg)
{
    static const char *const sub[PARTS] = {NULL, "dir:parents", "dir:users",
                                           "dir:tags"};
    struct tl *l = brk_calloc(1, sizeof(*l));
    const char *argv[4];
    enum brk_err err = BRK_OK;
    int i;

    if (l == NULL)
        return BRK_ERR_NOMEM;
    for (i = 0; i < PARTS && !err; i++)
        err = i == 0 ? keys_tenant(l->keys[0], KEYS_MAX, prefix, corp, suite)
                     : keys_tenant_sub(l->keys[i], KEYS_MAX, prefix, corp,
                                       suite, sub[i]);
    if (err) {
        brk_free(l);
        return BRK_ERR_TOOBIG;
    }
    l->st = st;
    l->cb = cb;
    l->arg = arg;
    if (copy != NULL && copy->gen != 0) {
        l->copy = record_tenant_ref(copy);
        argv[0] = "HMGET";
        argv[1] = l->keys[0];
        argv[2] = KEYS_TENANT_GEN;
        argv[3] = "status";
        err = store_cmd_argv(st, on_check, l, 4, argv, NULL);
    } else {
        err = full_start(l);
    }
    if (err) {
        record_tenant_unref(l->copy);
        brk_free(l);
    }
    return err;
}
