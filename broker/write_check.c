/*
 * The body check of a write (see write_check.h): the body is small and
 * bounded, so it is parsed into a tree (duplicate keys refused by the
 * parser), walked against the declared tree, and the forwarded body is
 * built from the declared keys as they are checked.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "dynbuf.h"
#include "write_check.h"

struct walk {
    struct write_checked *w;
    size_t cap_subjects;
    char *names[WRITE_KEYS_MAX];
    size_t nnames;
    enum errcode code;
    char *msg;
    size_t msglen;
};

static int
fail(struct walk *k, enum errcode e, const char *what, const char *path)
{
    k->code = e;
    snprintf(k->msg, k->msglen, "%s%s%s", what, path[0] ? ": " : "", path);
    return -1;
}

static int
nomem(struct walk *k)
{
    return fail(k, ERRCODE_UNAVAILABLE, "out of memory", "");
}

/* Remember a key name once, in first-seen order (bounded). */
static int
note_name(struct walk *k, const char *path)
{
    size_t i;

    for (i = 0; i < k->nnames; i++)
        if (strcmp(k->names[i], path) == 0)
            return 0;
    if (k->nnames == WRITE_KEYS_MAX)
        return 0;
    k->names[k->nnames] = brk_strdup(path);
    if (k->names[k->nnames] == NULL)
        return nomem(k);
    k->nnames++;
    return 0;
}

static int
add_subject(struct walk *k, enum scope_subject kind, const char *id,
            const char *path)
{
    struct write_checked *w = k->w;
    struct write_subject *grown;
    size_t cap;

    if (w->nsubjects == WRITE_SUBJECTS_MAX)
        return fail(k, ERRCODE_INVALID_VALUE, "invalid parameter: too many ids",
                    path);
    if (w->nsubjects == k->cap_subjects) {
        cap = k->cap_subjects ? k->cap_subjects * 2 : 8;
        grown = brk_realloc(w->subjects, cap * sizeof(*grown));
        if (grown == NULL)
            return nomem(k);
        w->subjects = grown;
        k->cap_subjects = cap;
    }
    w->subjects[w->nsubjects].kind = kind;
    w->subjects[w->nsubjects].id = brk_strdup(id);
    if (w->subjects[w->nsubjects].id == NULL)
        return nomem(k);
    w->nsubjects++;
    return 0;
}

/* Characters (UTF-8 code points) of a string jansson validated. */
static size_t
chars(const char *s, size_t len)
{
    size_t i, n = 0;

    for (i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

static int
enum_ok(const struct scope_body *d, const json_t *v)
{
    size_t i;

    if (d->nenum == 0)
        return 1;
    for (i = 0; i < d->nenum; i++)
        if (d->enum_s != NULL
                ? strcmp(d->enum_s[i], json_string_value(v)) == 0
                : d->enum_i[i] == (long long)json_integer_value(v))
            return 1;
    return 0;
}

/*
 * Check v against d at path ("a.b", "a[].b"); *out the value to forward
 * (a new reference). 0, or -1 with k->code and k->msg set.
 */
static int
walk_value(struct walk *k, const struct scope_body *d, json_t *v,
           const char *path, json_t **out)
{
    char sub[512], num[32];
    const struct scope_body *f;
    const char *key;
    json_t *e, *o, *c;
    size_t i;

    if (!scope_type_matches(d->type, v))
        return fail(k, ERRCODE_INVALID_VALUE, "invalid parameter: wrong type",
                    path);
    switch (d->type) {
    case SCOPE_T_OBJECT:
        o = json_object();
        if (o == NULL)
            return nomem(k);
        json_object_foreach(v, key, e)
        {
            snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "", key);
            f = scope_body_field(d, key, strlen(key));
            if (f == NULL || strlen(sub) >= sizeof(sub) - 1) {
                json_decref(o);
                return fail(k, ERRCODE_INVALID_PARAMETER,
                            "invalid parameter: undeclared key", sub);
            }
            if (note_name(k, sub) || walk_value(k, f, e, sub, &c)) {
                json_decref(o);
                return -1;
            }
            if (json_object_set_new(o, key, c) != 0) {
                json_decref(o);
                return nomem(k);
            }
        }
        for (i = 0; i < d->nfields; i++)
            if (d->fields[i].required &&
                json_object_get(v, d->fields[i].name) == NULL) {
                json_decref(o);
                snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "",
                         d->fields[i].name);
                return fail(k, ERRCODE_INVALID_PARAMETER,
                            "invalid parameter: missing", sub);
            }
        *out = o;
        return 0;
    case SCOPE_T_ARRAY:
        if (d->max_items && json_array_size(v) > (size_t)d->max_items)
            return fail(k, ERRCODE_INVALID_VALUE,
                        "invalid parameter: too many items", path);
        o = json_array();
        if (o == NULL)
            return nomem(k);
        snprintf(sub, sizeof(sub), "%s[]", path);
        json_array_foreach(v, i, e)
        {
            if (walk_value(k, d->items, e, sub, &c)) {
                json_decref(o);
                return -1;
            }
            if (json_array_append_new(o, c) != 0) {
                json_decref(o);
                return nomem(k);
            }
        }
        *out = o;
        return 0;
    case SCOPE_T_STRING:
        if (d->max_len && chars(json_string_value(v), json_string_length(v)) >
                              (size_t)d->max_len)
            return fail(k, ERRCODE_INVALID_VALUE,
                        "invalid parameter: value too long", path);
        /* an id with a NUL inside could name another record than checked */
        if (d->subject != SCOPE_S_NONE &&
            strlen(json_string_value(v)) != json_string_length(v))
            return fail(k, ERRCODE_INVALID_VALUE, "invalid parameter", path);
        break;
    default:
        break;
    }
    if (!enum_ok(d, v))
        return fail(k, ERRCODE_INVALID_VALUE,
                    "invalid parameter: value not allowed", path);
    if (d->subject != SCOPE_S_NONE) {
        if (json_is_integer(v))
            snprintf(num, sizeof(num), "%lld",
                     (long long)json_integer_value(v));
        if (add_subject(k, d->subject,
                        json_is_integer(v) ? num : json_string_value(v), path))
            return -1;
    }
    *out = json_incref(v);
    return 0;
}

/*
 * The forwarded body, written here rather than by jansson's encoder,
 * which can drop part of a key when one of its allocations fails and
 * still return the text. Strings are valid UTF-8 (the parser checked);
 * quotes, backslashes and control characters are escaped.
 */
static enum brk_err
emit(struct dynbuf *d, const json_t *v)
{
    const unsigned char *p;
    const char *key;
    const json_t *e;
    enum brk_err err = BRK_OK;
    size_t i, n, run;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        err = dynbuf_add(d, "{", 1);
        i = 0;
        json_object_foreach((json_t *)(uintptr_t)v, key, e)
        {
            if (!err && i++ > 0)
                err = dynbuf_add(d, ",", 1);
            if (!err) {
                json_t *k = json_string(key);

                err = k != NULL ? emit(d, k) : BRK_ERR_NOMEM;
                json_decref(k);
            }
            if (!err)
                err = dynbuf_add(d, ":", 1);
            if (!err)
                err = emit(d, e);
        }
        return err ? err : dynbuf_add(d, "}", 1);
    case JSON_ARRAY:
        err = dynbuf_add(d, "[", 1);
        json_array_foreach(v, i, e)
        {
            if (!err && i > 0)
                err = dynbuf_add(d, ",", 1);
            if (!err)
                err = emit(d, e);
        }
        return err ? err : dynbuf_add(d, "]", 1);
    case JSON_STRING:
        p = (const unsigned char *)json_string_value(v);
        n = json_string_length(v);
        err = dynbuf_add(d, "\"", 1);
        for (i = 0; !err && i < n; i += run) {
            for (run = 0; i + run < n && p[i + run] >= 0x20 &&
                          p[i + run] != '"' && p[i + run] != '\\';
                 run++)
                ;
            if (run > 0) {
                err = dynbuf_add(d, p + i, run);
                continue;
            }
            err = dynbuf_printf(d, "\\u%04x", p[i]);
            run = 1;
        }
        return err ? err : dynbuf_add(d, "\"", 1);
    case JSON_INTEGER:
        return dynbuf_printf(d, "%lld", (long long)json_integer_value(v));
    case JSON_REAL:
        return dynbuf_printf(d, "%.17g", json_real_value(v));
    case JSON_TRUE:
        return dynbuf_add(d, "true", 4);
    case JSON_FALSE:
        return dynbuf_add(d, "false", 5);
    default:
        return dynbuf_add(d, "null", 4);
    }
}

void
write_checked_free(struct write_checked *w)
{
    size_t i;

    if (w == NULL)
        return;
    for (i = 0; i < w->nsubjects; i++)
        brk_free(w->subjects[i].id);
    brk_free(w->subjects);
    if (w->body != NULL)
        brk_free_secret(w->body, w->body_len);
    brk_free(w->keys);
    brk_free(w);
}

static int
join_names(struct walk *k)
{
    size_t i, n = 1, o = 0;

    for (i = 0; i < k->nnames; i++)
        n += strlen(k->names[i]) + 1;
    k->w->keys = brk_malloc(n);
    if (k->w->keys == NULL)
        return nomem(k);
    k->w->keys[0] = '\0';
    for (i = 0; i < k->nnames; i++) {
        if (i > 0)
            k->w->keys[o++] = ',';
        memcpy(k->w->keys + o, k->names[i], strlen(k->names[i]) + 1);
        o += strlen(k->names[i]);
    }
    return 0;
}

enum errcode
write_check(const struct scope_body *root, const char *body, size_t len,
            struct write_checked **out, char *msg, size_t msglen)
{
    struct walk k;
    json_error_t jerr;
    json_t *doc = NULL, *fwd = NULL;
    struct dynbuf db;
    size_t i;

    memset(&k, 0, sizeof(k));
    k.msg = msg;
    k.msglen = msglen;
    k.code = ERRCODE_OK;
    if (root == NULL || root->type != SCOPE_T_OBJECT) {
        fail(&k, ERRCODE_API_FORBIDDEN, "api forbidden: no body declared", "");
        goto out;
    }
    if (len > WRITE_BODY_MAX) {
        fail(&k, ERRCODE_INVALID_VALUE, "invalid parameter: body too large",
             "");
        goto out;
    }
    doc = body != NULL && len > 0
              ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr)
              : NULL;
    if (doc == NULL) {
        if (body != NULL && len > 0 &&
            json_error_code(&jerr) == json_error_duplicate_key)
            fail(&k, ERRCODE_INVALID_PARAMETER,
                 "invalid parameter: repeated key", "");
        else if (body != NULL && len > 0 &&
                 json_error_code(&jerr) == json_error_out_of_memory)
            nomem(&k);
        else
            fail(&k, ERRCODE_INVALID_VALUE,
                 "invalid parameter: malformed JSON body", "");
        goto out;
    }
    if (!json_is_object(doc)) {
        fail(&k, ERRCODE_INVALID_VALUE,
             "invalid parameter: the body is not a JSON object", "");
        goto out;
    }
    k.w = brk_calloc(1, sizeof(*k.w));
    if (k.w == NULL) {
        nomem(&k);
        goto out;
    }
    if (walk_value(&k, root, doc, "", &fwd) || join_names(&k))
        goto out;
    dynbuf_init_secret(&db, 2 * WRITE_BODY_MAX);
    if (emit(&db, fwd) != BRK_OK ||
        dynbuf_take(&db, &k.w->body, &k.w->body_len) != BRK_OK) {
        dynbuf_free(&db);
        nomem(&k);
        goto out;
    }
    *out = k.w;
    k.w = NULL;
out:
    for (i = 0; i < k.nnames; i++)
        brk_free(k.names[i]);
    write_checked_free(k.w);
    json_decref(fwd);
    json_decref(doc);
    return k.code;
}

int
write_checked_has_key(const struct write_checked *w, const char *name)
{
    size_t n = name != NULL ? strlen(name) : 0;
    const char *p;

    if (w == NULL || w->keys == NULL || n == 0)
        return 0;
    for (p = w->keys; (p = strstr(p, name)) != NULL; p += n)
        if ((p == w->keys || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}
