/*
 * Stored records, decoded in one place (see record.h). Every decoder
 * checks the whole record before it hands anything out: a field that is
 * missing, does not parse, or parses to another shape refuses the record,
 * and so does running out of memory on the way. Fields a decoder does not
 * know are ignored, so a newer brokerctl may add some.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "capability.h"
#include "keys.h"
#include "record.h"
#include "visible_range.h"

/*---- Helpers ----*/

enum brk_err
record_parse_uint(const char *s, long long max, long long *out)
{
    long long v = 0;
    size_t i;

    if (s == NULL || s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
        return BRK_ERR_INVAL;
    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (max - (s[i] - '0')) / 10)
            return BRK_ERR_INVAL;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return BRK_OK;
}

/* Nonzero when r is a hash as HGETALL returns it: pairs of strings. */
static int
is_hash(const struct redisReply *r)
{
    size_t i;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0)
        return 0;
    for (i = 0; i < r->elements; i++)
        if (r->element[i] == NULL || r->element[i]->type != REDIS_REPLY_STRING)
            return 0;
    return 1;
}

/*
 * The value of field in hash r, or NULL when absent. *bad is set when the
 * value holds a NUL byte (it could not be used as the string it names).
 */
static const char *
hash_get(const struct redisReply *r, const char *field, int *bad)
{
    const struct redisReply *v;
    size_t i;

    for (i = 0; i + 1 < r->elements; i += 2) {
        if (strcmp(r->element[i]->str, field) != 0)
            continue;
        v = r->element[i + 1];
        if (strlen(v->str) != v->len)
            *bad = 1;
        return v->str;
    }
    return NULL;
}

static int
is_hex(const char *s, size_t n)
{
    size_t i;

    if (strlen(s) != n)
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* Copy an id (keys_id_ok) into out[RECORD_ID_MAX + 1]; nonzero if it is
 * none. */
static int
copy_id(char *out, const char *s)
{
    if (!keys_id_ok(s) || strlen(s) > RECORD_ID_MAX)
        return -1;
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

/* Copy s into out[cap] whole; nonzero when it does not fit. */
static int
copy_str(char *out, size_t cap, const char *s)
{
    size_t n = strlen(s);

    if (n >= cap)
        return -1;
    memcpy(out, s, n + 1);
    return 0;
}

/*---- A strict reader for the JSON the broker writes itself ----*/

/*
 * The stored corps, parties, permissions and OAuth codes are read here
 * rather than with jansson: jansson 2.14 drops bytes of a string when an
 * allocation fails while it lexes (and still succeeds), and a corpid one
 * letter short would leave a service unnarrowed. This reader allocates
 * nothing and accepts only what the encoders write: no escapes, no
 * control characters, integers without fractions or exponents.
 */
struct jread {
    const char *p, *end;
};

static void
jr_ws(struct jread *j)
{
    while (j->p < j->end &&
           (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* Consume c (after white space); nonzero when it is not next. */
static int
jr_char(struct jread *j, char c)
{
    jr_ws(j);
    if (j->p >= j->end || *j->p != c)
        return -1;
    j->p++;
    return 0;
}

/* Nonzero when c is next (after white space); nothing consumed. */
static int
jr_peek(struct jread *j, char c)
{
    jr_ws(j);
    return j->p < j->end && *j->p == c;
}

/* A string without escapes or control characters into out[cap]. */
static int
jr_string(struct jread *j, char *out, size_t cap)
{
    size_t n = 0;

    if (jr_char(j, '"'))
        return -1;
    for (; j->p < j->end && *j->p != '"'; j->p++) {
        if ((unsigned char)*j->p < 0x20 || *j->p == '\\' || n + 1 >= cap)
            return -1;
        out[n++] = *j->p;
    }
    if (j->p >= j->end)
        return -1;
    j->p++;
    out[n] = '\0';
    return 0;
}

/* An integer in 0..max (JSON: no sign, no leading zero). */
static int
jr_uint(struct jread *j, long long max, long long *out)
{
    char digits[24];
    size_t n = 0;

    jr_ws(j);
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (n + 1 >= sizeof(digits))
            return -1;
        digits[n++] = *j->p++;
    }
    digits[n] = '\0';
    /* "1.5", "1e3" and "-1" stop at a character no list allows here */
    return record_parse_uint(digits, max, out) == BRK_OK ? 0 : -1;
}

/* Nothing but white space left. */
static int
jr_done(struct jread *j)
{
    jr_ws(j);
    return j->p == j->end ? 0 : -1;
}

/*
 * Consume open (after white space) and count the elements of the array or
 * object it starts (commas at its own depth, plus one), for sizing; the
 * elements are read afterwards. Nonzero when open is not next.
 */
static int
jr_open(struct jread *j, char open, size_t *count)
{
    const char *p;
    size_t n = 1;
    int depth = 0, in_str = 0;

    jr_ws(j);
    if (j->p >= j->end || *j->p != open)
        return -1;
    for (p = j->p; p < j->end; p++) {
        if (in_str) {
            in_str = *p != '"';
            continue;
        }
        if (*p == '"')
            in_str = 1;
        else if (*p == '[' || *p == '{')
            depth++;
        else if ((*p == ']' || *p == '}') && --depth == 0)
            break;
        else if (*p == ',' && depth == 1)
            n++;
    }
    j->p++;
    *count = n;
    return 0;
}

/*---- Services ----*/

struct record_service *
record_service_ref(struct record_service *s)
{
    s->refs++;
    return s;
}

void
record_service_unref(struct record_service *s)
{
    size_t i;

    if (s == NULL || --s->refs > 0)
        return;
    for (i = 0; i < s->nparties; i++)
        brk_free(s->parties[i].ids);
    brk_free(s->parties);
    brk_free(s->corps);
    brk_wipe(s->hash, sizeof(s->hash));
    brk_free(s);
}

/* The comma-separated scope names into g: every one known, at least one. */
static enum brk_err
scopes_decode(const char *s, struct scope_grant *g)
{
    char name[128];
    const char *p = s, *comma;
    size_t n, count = 0;

    scope_grant_clear(g);
    for (;;) {
        comma = strchr(p, ',');
        n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == 0 || n >= sizeof(name))
            return BRK_ERR_INVAL;
        memcpy(name, p, n);
        name[n] = '\0';
        if (scope_grant_add_name(g, name) != BRK_OK)
            return BRK_ERR_INVAL;
        count++;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return count > 0 ? BRK_OK : BRK_ERR_INVAL;
}

/* corps: a non-empty array of corpids. */
static enum brk_err
corps_decode(const char *text, struct record_service *s)
{
    struct jread j = {text, text + strlen(text)};
    size_t cap;

    if (jr_open(&j, '[', &cap) || jr_peek(&j, ']'))
        return BRK_ERR_INVAL;
    s->corps = brk_calloc(cap, sizeof(*s->corps));
    if (s->corps == NULL)
        return BRK_ERR_NOMEM;
    do {
        if (s->ncorps == cap ||
            jr_string(&j, s->corps[s->ncorps], sizeof(s->corps[0])) ||
            !keys_id_ok(s->corps[s->ncorps]))
            return BRK_ERR_INVAL;
        s->ncorps++;
    } while (jr_char(&j, ',') == 0);
    if (jr_char(&j, ']') || jr_done(&j))
        return BRK_ERR_INVAL;
    return BRK_OK;
}

/* parties: a non-empty object corpid -> array of department ids; one
 * spelling per corp. */
static enum brk_err
parties_decode(const char *text, struct record_service *s)
{
    struct jread j = {text, text + strlen(text)};
    struct record_parties *p;
    size_t cap, idcap, k;
    long long id;

    if (jr_open(&j, '{', &cap) || jr_peek(&j, '}'))
        return BRK_ERR_INVAL;
    s->parties = brk_calloc(cap, sizeof(*s->parties));
    if (s->parties == NULL)
        return BRK_ERR_NOMEM;
    do {
        if (s->nparties == cap)
            return BRK_ERR_INVAL;
        p = &s->parties[s->nparties];
        if (jr_string(&j, p->corp, sizeof(p->corp)) || !keys_id_ok(p->corp) ||
            jr_char(&j, ':') || jr_open(&j, '[', &idcap))
            return BRK_ERR_INVAL;
        /* two spellings of one corp would leave one of them unnarrowed */
        for (k = 0; k < s->nparties; k++)
            if (strcasecmp(s->parties[k].corp, p->corp) == 0)
                return BRK_ERR_INVAL;
        s->nparties++;
        p->ids = brk_calloc(idcap, sizeof(*p->ids));
        if (p->ids == NULL)
            return BRK_ERR_NOMEM;
        if (!jr_peek(&j, ']'))
            do {
                if (p->n == idcap || jr_uint(&j, UINT32_MAX, &id))
                    return BRK_ERR_INVAL;
                p->ids[p->n++] = (long)id;
            } while (jr_char(&j, ',') == 0);
        if (jr_char(&j, ']'))
            return BRK_ERR_INVAL;
    } while (jr_char(&j, ',') == 0);
    if (jr_char(&j, '}') || jr_done(&j))
        return BRK_ERR_INVAL;
    return BRK_OK;
}

/*
 * Decode a service's delivery setting (see record.h). Returns BRK_OK,
 * BRK_ERR_NOTFOUND or BRK_ERR_INVAL; *out only on success.
 */
enum brk_err
record_delivery_decode(const struct redisReply *r, struct record_delivery *out)
{
    static const char *const fields[] = {"url",   "events",   "suite",
                                         "on",    "since_ms", "gen",
                                         "token", "key",      "updated_at"};
    const char *v[nitems(fields)];
    struct record_delivery d;
    long long since, gen, upd;
    size_t i;
    int bad = 0;

    if (!is_hash(r))
        return BRK_ERR_INVAL;
    if (r->elements == 0)
        return BRK_ERR_NOTFOUND;
    /* exactly these fields: one this code does not know could be meant
     * to narrow what is delivered */
    if (r->elements != 2 * nitems(fields))
        return BRK_ERR_INVAL;
    for (i = 0; i < nitems(fields); i++) {
        v[i] = hash_get(r, fields[i], &bad);
        /* with the count above, every field found means none repeats */
        if (v[i] == NULL || bad)
            return BRK_ERR_INVAL;
    }
    memset(&d, 0, sizeof(d));
    if (!delivery_url_ok(v[0]) || copy_str(d.url, sizeof(d.url), v[0]) ||
        (v[1][0] != '\0' && delivery_events_check(v[1]) != BRK_OK) ||
        copy_str(d.events, sizeof(d.events), v[1]) ||
        (v[2][0] != '\0' && copy_id(d.suite, v[2])) ||
        (strcmp(v[3], "0") != 0 && strcmp(v[3], "1") != 0) ||
        record_parse_uint(v[4], LLONG_MAX, &since) != BRK_OK ||
        record_parse_uint(v[5], LONG_MAX, &gen) != BRK_OK || gen < 1 ||
        record_parse_uint(v[8], LLONG_MAX, &upd) != BRK_OK)
        return BRK_ERR_INVAL;
    for (i = 6; i <= 7; i++)
        if (strncmp(v[i], "s1.", 3) != 0 ||
            copy_str(i == 6 ? d.token : d.key, RECORD_SEALED_MAX + 1, v[i]))
            return BRK_ERR_INVAL;
    d.on = v[3][0] == '1';
    d.since_ms = since;
    d.gen = (long)gen;
    *out = d;
    return BRK_OK;
}

/*
 * Decode a service (see record.h). Returns BRK_OK, BRK_ERR_NOTFOUND,
 * BRK_ERR_INVAL or BRK_ERR_NOMEM; *out (one reference) only on success.
 */
enum brk_err
record_service_decode(const char *id, const struct redisReply *r,
                      struct record_service **out)
{
    struct record_service *s = NULL;
    const char *name, *salt, *hash, *scopes, *gen, *suite, *corps, *parties;
    const char *caps, *wrate;
    long long g, wr = 0;
    enum brk_err err = BRK_ERR_INVAL;
    int bad = 0;

    if (!is_hash(r))
        return BRK_ERR_INVAL;
    if (r->elements == 0)
        return BRK_ERR_NOTFOUND;
    name = hash_get(r, "name", &bad);
    salt = hash_get(r, "salt", &bad);
    hash = hash_get(r, "hash", &bad);
    scopes = hash_get(r, "scopes", &bad);
    gen = hash_get(r, "gen", &bad);
    suite = hash_get(r, "suite", &bad);
    corps = hash_get(r, "corps", &bad);
    parties = hash_get(r, "parties", &bad);
    caps = hash_get(r, "capabilities", &bad);
    wrate = hash_get(r, "write_rate", &bad);
    /* a rate that does not parse refuses the service, never unlimits it */
    if (wrate != NULL &&
        (record_parse_uint(wrate, 1000000, &wr) != BRK_OK || wr == 0))
        return BRK_ERR_INVAL;
    if (bad || name == NULL || salt == NULL || hash == NULL || scopes == NULL ||
        gen == NULL || id == NULL || !is_hex(id, SERVICE_ID_LEN) ||
        !service_name_ok(name) || !is_hex(salt, SERVICE_SALT_LEN) ||
        !is_hex(hash, SERVICE_HASH_LEN) ||
        record_parse_uint(gen, LONG_MAX, &g) != BRK_OK)
        return BRK_ERR_INVAL;
    s = brk_calloc(1, sizeof(*s));
    if (s == NULL)
        return BRK_ERR_NOMEM;
    s->refs = 1;
    memcpy(s->id, id, SERVICE_ID_LEN + 1);
    memcpy(s->name, name, strlen(name) + 1);
    memcpy(s->salt, salt, SERVICE_SALT_LEN + 1);
    memcpy(s->hash, hash, SERVICE_HASH_LEN + 1);
    s->gen = (long)g;
    s->revoked = hash_get(r, "revoked_at", &bad) != NULL;
    if (suite != NULL && suite[0] != '\0' && copy_id(s->suite, suite))
        goto out;
    err = scopes_decode(scopes, &s->grant);
    if (err)
        goto out;
    /* absent: a service stored before capabilities existed has none */
    s->write_rate = (long)wr;
    err = capability_parse(caps != NULL ? caps : "", &s->caps);
    if (err)
        goto out;
    s->any_corp = corps == NULL || corps[0] == '\0';
    if (!s->any_corp) {
        err = corps_decode(corps, s);
        if (err)
            goto out;
    }
    if (parties != NULL && parties[0] != '\0') {
        err = parties_decode(parties, s);
        if (err)
            goto out;
    }
    *out = s;
    s = NULL;
    err = BRK_OK;
out:
    record_service_unref(s);
    return err;
}

int
record_service_allows_corp(const struct record_service *s, const char *corp)
{
    size_t i;

    if (s->any_corp)
        return 1;
    for (i = 0; i < s->ncorps; i++)
        if (strcmp(s->corps[i], corp) == 0)
            return 1;
    return 0;
}

/*
 * The service's departments in corp (see record.h). Returns BRK_OK with
 * *out (NULL: none there), or BRK_ERR_INVAL when they name corp in other
 * letter cases only: an entry meant for this corp that would not narrow
 * it.
 */
enum brk_err
record_service_parties(const struct record_service *s, const char *corp,
                       const struct record_parties **out)
{
    size_t i;

    for (i = 0; i < s->nparties; i++) {
        if (strcmp(s->parties[i].corp, corp) == 0) {
            *out = &s->parties[i];
            return BRK_OK;
        }
        if (strcasecmp(s->parties[i].corp, corp) == 0)
            return BRK_ERR_INVAL;
    }
    *out = NULL;
    return BRK_OK;
}

/* Owned JSON text of v (consumed), as brk_malloc memory. */
static enum brk_err
dump_owned(json_t *v, char **out)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    char *d = s ? brk_strdup(s) : NULL;

    free(s); /* jansson's allocator */
    json_decref(v);
    if (d == NULL)
        return BRK_ERR_NOMEM;
    *out = d;
    return BRK_OK;
}

/*
 * The stored corps of a service (see record.h). Returns BRK_OK,
 * BRK_ERR_INVAL or BRK_ERR_NOMEM; *out owned (brk_free).
 */
enum brk_err
record_corps_encode(const char *const *corps, size_t n, char **out)
{
    json_t *a;
    size_t i;

    if (n == 0)
        return BRK_ERR_INVAL;
    for (i = 0; i < n; i++)
        if (!keys_id_ok(corps[i]))
            return BRK_ERR_INVAL;
    a = json_array();
    for (i = 0; a != NULL && i < n; i++)
        if (json_array_append_new(a, json_string(corps[i])) != 0) {
            json_decref(a);
            a = NULL;
        }
    return dump_owned(a, out);
}

/*
 * The stored parties of a service (see record.h). Returns BRK_OK,
 * BRK_ERR_INVAL or BRK_ERR_NOMEM; *out owned (brk_free).
 */
enum brk_err
record_parties_encode(const struct record_parties *p, size_t n, char **out)
{
    json_t *o, *list;
    size_t i, k;

    if (n == 0)
        return BRK_ERR_INVAL;
    for (i = 0; i < n; i++) {
        if (!keys_id_ok(p[i].corp))
            return BRK_ERR_INVAL;
        for (k = 0; k < p[i].n; k++)
            if (p[i].ids[k] < 0 || (unsigned long)p[i].ids[k] > UINT32_MAX)
                return BRK_ERR_INVAL;
        for (k = 0; k < i; k++)
            if (strcasecmp(p[k].corp, p[i].corp) == 0)
                return BRK_ERR_INVAL;
    }
    o = json_object();
    for (i = 0; o != NULL && i < n; i++) {
        list = json_array();
        for (k = 0; list != NULL && k < p[i].n; k++)
            if (json_array_append_new(list, json_integer(p[i].ids[k])) != 0) {
                json_decref(list);
                list = NULL;
            }
        if (list == NULL || json_object_set_new(o, p[i].corp, list) != 0) {
            json_decref(o);
            o = NULL;
        }
    }
    return dump_owned(o, out);
}

/*---- Broker tokens ----*/

/*
 * Decode a broker token (see record.h). Returns BRK_OK, BRK_ERR_NOTFOUND
 * or BRK_ERR_INVAL; *out written only on success.
 */
enum brk_err
record_token_decode(const struct redisReply *r, struct record_token *out)
{
    struct record_token t;
    const char *svc, *gen, *suite, *corp, *exp;
    long long g, e;
    int bad = 0;

    if (!is_hash(r))
        return BRK_ERR_INVAL;
    if (r->elements == 0)
        return BRK_ERR_NOTFOUND;
    svc = hash_get(r, "svc", &bad);
    gen = hash_get(r, "gen", &bad);
    suite = hash_get(r, "suite", &bad);
    corp = hash_get(r, "corp", &bad);
    exp = hash_get(r, "exp", &bad);
    if (bad || svc == NULL || gen == NULL || suite == NULL || corp == NULL ||
        exp == NULL || !is_hex(svc, SERVICE_ID_LEN) ||
        record_parse_uint(gen, LONG_MAX, &g) != BRK_OK ||
        record_parse_uint(exp, INT64_MAX / 1000, &e) != BRK_OK ||
        copy_id(t.suite, suite) || copy_id(t.corp, corp))
        return BRK_ERR_INVAL;
    memcpy(t.svc, svc, SERVICE_ID_LEN + 1);
    t.gen = (long)g;
    t.exp = e;
    *out = t;
    return BRK_OK;
}

/*---- Tenants ----*/

struct record_tenant *
record_tenant_ref(struct record_tenant *t)
{
    t->refs++;
    return t;
}

void
record_tenant_unref(struct record_tenant *t)
{
    if (t == NULL || --t->refs > 0)
        return;
    vrange_free(t->range);
    brk_free(t);
}

/* The unexpired permissions of [{"name","expires_at"}] into g, and the
 * first expiry after now_s into *until (0: none). */
static enum brk_err
grant_decode(const char *text, long long now_s, struct scope_grant *g,
             long long *until)
{
    struct jread j = {text, text + strlen(text)};
    char key[16], name[160];
    long long exp = 0;
    int have_name, have_exp, id;

    scope_grant_clear(g);
    *until = 0;
    if (jr_char(&j, '['))
        return BRK_ERR_INVAL;
    if (jr_peek(&j, ']'))
        goto end;
    do {
        if (jr_char(&j, '{'))
            return BRK_ERR_INVAL;
        have_name = have_exp = 0;
        do {
            if (jr_string(&j, key, sizeof(key)) || jr_char(&j, ':'))
                return BRK_ERR_INVAL;
            if (strcmp(key, "name") == 0 && !have_name) {
                if (jr_string(&j, name, sizeof(name)))
                    return BRK_ERR_INVAL;
                have_name = 1;
            } else if (strcmp(key, "expires_at") == 0 && !have_exp) {
                if (jr_uint(&j, INT64_MAX, &exp))
                    return BRK_ERR_INVAL;
                have_exp = 1;
            } else {
                return BRK_ERR_INVAL;
            }
        } while (jr_char(&j, ',') == 0);
        if (jr_char(&j, '}') || !have_name || !have_exp)
            return BRK_ERR_INVAL;
        if (exp != 0 && exp <= now_s)
            continue;
        if (exp != 0 && (*until == 0 || exp < *until))
            *until = exp;
        /* a permission WeCom has and this broker does not know grants
         * nothing */
        id = scope_perm_id(name);
        if (id > SCOPE_PERM_NEVER)
            scope_grant_add(g, id);
    } while (jr_char(&j, ',') == 0);
end:
    if (jr_char(&j, ']') || jr_done(&j))
        return BRK_ERR_INVAL;
    return BRK_OK;
}

/* A hash of strings as a JSON object of strings (new reference). */
static enum brk_err
hash_object(const struct redisReply *r, json_t **out)
{
    json_t *o, *v;
    size_t i;

    if (!is_hash(r))
        return BRK_ERR_INVAL;
    o = json_object();
    if (o == NULL)
        return BRK_ERR_NOMEM;
    for (i = 0; i + 1 < r->elements; i += 2) {
        if (strlen(r->element[i]->str) != r->element[i]->len) {
            json_decref(o);
            return BRK_ERR_INVAL;
        }
        /* the values' shapes are the range resolver's to check */
        v = json_stringn_nocheck(r->element[i + 1]->str,
                                 r->element[i + 1]->len);
        if (v == NULL || json_object_set_new(o, r->element[i]->str, v) != 0) {
            json_decref(o);
            return BRK_ERR_NOMEM;
        }
    }
    *out = o;
    return BRK_OK;
}

/* Bytes t holds, roughly (see record.h). */
size_t
record_tenant_bytes(const struct record_tenant *t)
{
    size_t n = sizeof(*t);

    if (t->range != NULL)
        n += vrange_memory(t->range);
    return n;
}

/* A generation: 1 to 20 decimal digits, no sign, within 64 bits. Returns
 * BRK_OK with *out, else BRK_ERR_INVAL. */
static enum brk_err
gen_parse(const char *s, unsigned long long *out)
{
    unsigned long long v = 0;
    size_t i, n = strlen(s);

    if (n == 0 || n > 20)
        return BRK_ERR_INVAL;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' ||
            v > (ULLONG_MAX - (unsigned)(s[i] - '0')) / 10)
            return BRK_ERR_INVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return BRK_OK;
}

/* Current when the stored generation and status are t's and none of t's
 * permissions has expired since it was decoded (see record.h). */
int
record_tenant_current(const struct record_tenant *t, const struct redisReply *r,
                      long long now_s)
{
    const struct redisReply *g, *s;
    unsigned long long v;

    if (t == NULL || t->gen == 0 || r == NULL || r->type != REDIS_REPLY_ARRAY ||
        r->elements != 2)
        return 0;
    g = r->element[0];
    s = r->element[1];
    if (g->type != REDIS_REPLY_STRING || s->type != REDIS_REPLY_STRING ||
        strlen(g->str) != g->len || gen_parse(g->str, &v) || v != t->gen ||
        strlen(s->str) != s->len || strcmp(s->str, t->status) != 0)
        return 0;
    return t->grant_until_s == 0 || now_s < t->grant_until_s;
}

/*
 * The visible range of privilege (WeCom's object, whose values the range
 * resolver checks) over the directory hashes of r (parents, users, tags):
 * the members straight from the reply, the rest as JSON for the
 * resolver, none of it kept.
 */
static enum brk_err
tenant_range(const char *priv, const struct redisReply *r, struct vrange **out)
{
    const struct redisReply *u = r->element[2];
    struct vrange_entry *users = NULL;
    json_t *p = NULL, *parents = NULL, *tags = NULL;
    json_error_t jerr;
    size_t i, n = 0;
    enum brk_err err;

    p = json_loads(priv, JSON_REJECT_DUPLICATES, &jerr);
    if (p == NULL || !json_is_object(p)) {
        err = p == NULL && json_error_code(&jerr) == json_error_out_of_memory
                  ? BRK_ERR_NOMEM
                  : BRK_ERR_INVAL;
        goto out;
    }
    err = hash_object(r->element[1], &parents);
    if (!err)
        err = hash_object(r->element[3], &tags);
    if (!err && !is_hash(u))
        err = BRK_ERR_INVAL;
    if (err)
        goto out;
    if (u->elements > 0) {
        users = brk_malloc(u->elements / 2 * sizeof(*users));
        if (users == NULL) {
            err = BRK_ERR_NOMEM;
            goto out;
        }
    }
    for (i = 0; i + 1 < u->elements; i += 2) {
        users[n].key = u->element[i]->str;
        users[n].klen = u->element[i]->len;
        users[n].val = u->element[i + 1]->str;
        users[n].vlen = u->element[i + 1]->len;
        n++;
    }
    err = vrange_build_entries(p, parents, users, n, tags, out);
out:
    brk_free(users);
    json_decref(p);
    json_decref(parents);
    json_decref(tags);
    return err;
}

/*
 * Decode a tenant (see record.h). Returns BRK_OK, BRK_ERR_NOTFOUND,
 * BRK_ERR_INVAL, BRK_ERR_TOOBIG or BRK_ERR_NOMEM; *out (one reference)
 * only on success.
 */
enum brk_err
record_tenant_decode(const struct redisReply *r, long long now_s,
                     struct record_tenant **out)
{
    struct record_tenant *t = NULL;
    const struct redisReply *h;
    const char *status, *perms, *priv, *gen;
    unsigned long long g = 0;
    enum brk_err err = BRK_ERR_INVAL;
    int bad = 0;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
        !is_hash(r->element[0]))
        return BRK_ERR_INVAL;
    h = r->element[0];
    if (h->elements == 0)
        return BRK_ERR_NOTFOUND;
    status = hash_get(h, "status", &bad);
    perms = hash_get(h, "permissions", &bad);
    priv = hash_get(h, "privilege", &bad);
    gen = hash_get(h, KEYS_TENANT_GEN, &bad);
    if (bad || status == NULL || status[0] == '\0' ||
        (gen != NULL && gen_parse(gen, &g)))
        return BRK_ERR_INVAL;
    t = brk_calloc(1, sizeof(*t));
    if (t == NULL)
        return BRK_ERR_NOMEM;
    t->refs = 1;
    t->gen = g;
    if (copy_str(t->status, sizeof(t->status), status))
        goto out;
    t->active = strcmp(status, "active") == 0;
    if (t->active) {
        if (perms == NULL || priv == NULL)
            goto out;
        err = grant_decode(perms, now_s, &t->grant, &t->grant_until_s);
        if (!err)
            err = tenant_range(priv, r, &t->range);
        if (err)
            goto out;
    }
    *out = t;
    t = NULL;
    err = BRK_OK;
out:
    record_tenant_unref(t);
    return err;
}

/* One member written by contact_apply: its departments set in the range,
 * or the member gone from the directory. */
static enum brk_err
tenant_apply_member(struct record_tenant *t, const struct redisReply *uid,
                    const struct redisReply *depts)
{
    if (uid->type != REDIS_REPLY_STRING || depts->type != REDIS_REPLY_STRING)
        return BRK_ERR_INVAL;
    return vrange_set_member(t->range, uid->str, uid->len,
                             depts->len ? depts->str : NULL, depts->len);
}

/* See record.h. */
enum brk_err
record_tenant_apply(struct record_tenant *t, const struct redisReply *r,
                    long long now_s)
{
    const struct redisReply *g0, *g1;
    unsigned long long before, after;
    size_t i;
    enum brk_err err;

    if (t == NULL || r == NULL || r->type != REDIS_REPLY_ARRAY ||
        r->elements < 3 || r->elements % 2 == 0 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
        return BRK_ERR_INVAL;
    g0 = r->element[1];
    g1 = r->element[2];
    if (g0->type != REDIS_REPLY_STRING || g1->type != REDIS_REPLY_STRING ||
        strlen(g0->str) != g0->len || strlen(g1->str) != g1->len)
        return BRK_ERR_INVAL;
    /* only a copy no one else holds, exactly the one the change was made
     * to, still granted, and only for members' changes */
    if (r->element[0]->integer != 1 || t->refs != 1 || !t->active ||
        t->range == NULL || t->gen == 0 || gen_parse(g0->str, &before) ||
        before != t->gen || gen_parse(g1->str, &after) || after <= before ||
        (t->grant_until_s != 0 && now_s >= t->grant_until_s))
        return BRK_ERR_NOTFOUND;
    for (i = 3; i + 1 < r->elements; i += 2) {
        err = tenant_apply_member(t, r->element[i], r->element[i + 1]);
        if (err)
            return err;
    }
    t->gen = after;
    return BRK_OK;
}

/*---- Browser flows ----*/

/*
 * Decode a state (see record.h). Returns BRK_OK, BRK_ERR_NOTFOUND or
 * BRK_ERR_INVAL; *out written only on success.
 */
enum brk_err
record_state_decode(const struct redisReply *r, struct record_state *out)
{
    const char *flow, *ret, *cs, *scope;
    int bad = 0, oauth;

    if (!is_hash(r))
        return BRK_ERR_INVAL;
    if (r->elements == 0)
        return BRK_ERR_NOTFOUND;
    flow = hash_get(r, "flow", &bad);
    ret = hash_get(r, "return", &bad);
    cs = hash_get(r, "cstate", &bad);
    scope = hash_get(r, "scope", &bad);
    if (bad || flow == NULL || ret == NULL)
        return BRK_ERR_INVAL;
    oauth = strcmp(flow, "oauth") == 0;
    if (!oauth && strcmp(flow, "install") != 0)
        return BRK_ERR_INVAL;
    if (oauth && (ret[0] == '\0' || cs == NULL || scope == NULL ||
                  (strcmp(scope, "snsapi_base") != 0 &&
                   strcmp(scope, "snsapi_privateinfo") != 0)))
        return BRK_ERR_INVAL;
    if (copy_str(out->ret, sizeof(out->ret), ret) ||
        copy_str(out->cstate, sizeof(out->cstate), oauth ? cs : "") ||
        copy_str(out->scope, sizeof(out->scope), oauth ? scope : ""))
        return BRK_ERR_INVAL;
    memcpy(out->flow, flow, strlen(flow) + 1);
    return BRK_OK;
}

/*
 * The stored JSON of an OAuth code (see record.h). Returns BRK_OK,
 * BRK_ERR_INVAL or BRK_ERR_NOMEM; *out owned (brk_free_secret_str).
 */
enum brk_err
record_oauth_code_encode(const struct record_oauth_code *c, char **out)
{
    json_t *o;
    size_t tl = strlen(c->user_ticket);

    if ((c->userid[0] == '\0' && c->openid[0] == '\0') ||
        (tl != 0 && tl != SERVICE_TOKEN_LEN) || c->expires_in < 0)
        return BRK_ERR_INVAL;
    o = json_pack("{s:s, s:s, s:s, s:I}", "userid", c->userid, "openid",
                  c->openid, "user_ticket", c->user_ticket, "expires_in",
                  (json_int_t)c->expires_in);
    return dump_owned(o, out);
}

/*
 * Decode the stored JSON of an OAuth code (see record.h). Returns BRK_OK
 * or BRK_ERR_INVAL; *out written only on success.
 */
enum brk_err
record_oauth_code_decode(const char *json, size_t len,
                         struct record_oauth_code *out)
{
    struct record_oauth_code c;
    struct jread j = {json, json + len};
    char key[16];
    int seen = 0, bit;
    enum brk_err err = BRK_ERR_INVAL;
    size_t tl;

    memset(&c, 0, sizeof(c));
    if (memchr(json, '\0', len) != NULL || jr_char(&j, '{'))
        goto out;
    do {
        if (jr_string(&j, key, sizeof(key)) || jr_char(&j, ':'))
            goto out;
        if (strcmp(key, "userid") == 0) {
            bit = 1;
            if (jr_string(&j, c.userid, sizeof(c.userid)))
                goto out;
        } else if (strcmp(key, "openid") == 0) {
            bit = 2;
            if (jr_string(&j, c.openid, sizeof(c.openid)))
                goto out;
        } else if (strcmp(key, "user_ticket") == 0) {
            bit = 4;
            if (jr_string(&j, c.user_ticket, sizeof(c.user_ticket)))
                goto out;
        } else if (strcmp(key, "expires_in") == 0) {
            bit = 8;
            if (jr_uint(&j, INT64_MAX, &c.expires_in))
                goto out;
        } else {
            goto out;
        }
        if (seen & bit)
            goto out;
        seen |= bit;
    } while (jr_char(&j, ',') == 0);
    if (jr_char(&j, '}') || jr_done(&j) || seen != 15)
        goto out;
    tl = strlen(c.user_ticket);
    if ((c.userid[0] == '\0' && c.openid[0] == '\0') ||
        (tl != 0 && tl != SERVICE_TOKEN_LEN))
        goto out;
    *out = c;
    err = BRK_OK;
out:
    brk_wipe(&c, sizeof(c));
    return err;
}

enum brk_err
record_effective_view(const struct record_service *s,
                      const struct record_tenant *t, const char *corp,
                      struct vrange_view **owned)
{
    const struct record_parties *mine = NULL;
    struct vrange_view *w = NULL;
    enum brk_err err;

    if (s == NULL || t == NULL || t->range == NULL || owned == NULL)
        return BRK_ERR_INVAL;
    err = record_service_parties(s, corp, &mine);
    if (!err && mine != NULL)
        err = vrange_view_new(t->range, mine->ids, mine->n, &w);
    if (err)
        return err;
    *owned = w;
    return BRK_OK;
}

enum brk_err
record_effective_range(const struct record_service *s,
                       const struct record_tenant *t, const char *corp,
                       struct vrange **owned, const struct vrange **range)
{
    const struct record_parties *mine = NULL;
    struct vrange *v = NULL;
    enum brk_err err;

    if (s == NULL || t == NULL || t->range == NULL || owned == NULL ||
        range == NULL)
        return BRK_ERR_INVAL;
    err = record_service_parties(s, corp, &mine);
    if (err)
        return err;
    if (mine == NULL) {
        *owned = NULL;
        *range = t->range;
        return BRK_OK;
    }
    err = vrange_copy(t->range, &v);
    if (!err)
        err = vrange_narrow(v, mine->ids, mine->n);
    if (err) {
        vrange_free(v);
        return err;
    }
    *owned = v;
    *range = v;
    return BRK_OK;
}
