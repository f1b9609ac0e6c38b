/*
 * Event declarations: the "events" array of a scope file, read with the
 * endpoints' tree parser (scope_map.c) plus the keys only events have,
 * then checked as a whole: WeCom's envelope declared "always", secrets
 * declared "never", subjects where they can name the event.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "capability.h"
#include "scope_events.h"
#include "scope_map_int.h"

struct scope_event_set {
    struct scope_event *ev; /* sorted by (callback, name) once loaded */
    size_t n, cap;
};

static const char *const callback_names[] = {
    [SCOPE_CB_COMMAND] = "command",
    [SCOPE_CB_DATA] = "data",
};

/* The subjects an event field may name, with the type its value has. */
static const struct {
    const char *name;
    enum scope_record kind;
    enum scope_type type;
} subjects[] = {
    {"member", SCOPE_REC_MEMBER, SCOPE_T_STRING},
    {"department", SCOPE_REC_DEPARTMENT, SCOPE_T_INTEGER},
    {"tag", SCOPE_REC_TAG, SCOPE_T_INTEGER},
    {"follow_user", SCOPE_REC_FOLLOW_USER, SCOPE_T_STRING},
    {"customer", SCOPE_REC_CUSTOMER, SCOPE_T_STRING},
    {"chat", SCOPE_REC_CHAT, SCOPE_T_STRING},
};

/* Elements that carry a secret: declared, they must be "never". */
static const char *const secret_fields[] = {"AuthCode", "SuiteTicket",
                                            "PermanentCode"};

/* WeCom's envelope: declared in every event of its callback, "always". */
struct envelope_field {
    const char *name;
    enum scope_type type;
    int when; /* 0 always, 1 only with a '/' in the name, 2 never with */
};

static const struct envelope_field command_envelope[] = {
    {"SuiteId", SCOPE_T_STRING, 0},    {"AuthCorpId", SCOPE_T_STRING, 0},
    {"InfoType", SCOPE_T_STRING, 0},   {"TimeStamp", SCOPE_T_INTEGER, 0},
    {"ChangeType", SCOPE_T_STRING, 1},
};

static const struct envelope_field data_envelope[] = {
    {"ToUserName", SCOPE_T_STRING, 0},
    {"CreateTime", SCOPE_T_INTEGER, 0},
    {"MsgType", SCOPE_T_STRING, 0},
    {"Event", SCOPE_T_STRING, 1},
};

const char *
scope_callback_name(enum scope_callback cb)
{
    if ((unsigned)cb >= nitems(callback_names))
        return NULL;
    return callback_names[cb];
}

/*---- The set ----*/

static void
event_clear(struct scope_event *e)
{
    brk_free(e->name);
    brk_free(e->file);
    scope_ld_node_clear(&e->root);
    memset(e, 0, sizeof(*e));
}

void
scope_events_set_free(struct scope_event_set *s)
{
    size_t i;

    if (s == NULL)
        return;
    for (i = 0; i < s->n; i++)
        event_clear(&s->ev[i]);
    brk_free(s->ev);
    brk_free(s);
}

static int
event_cmp(const void *a, const void *b)
{
    const struct scope_event *x = a, *y = b;

    if (x->callback != y->callback)
        return x->callback < y->callback ? -1 : 1;
    return strcmp(x->name, y->name);
}

void
scope_events_set_sort(struct scope_event_set *s)
{
    if (s != NULL && s->n > 1)
        qsort(s->ev, s->n, sizeof(s->ev[0]), event_cmp);
}

/* Events in m (0 for NULL or none). */
size_t
scope_events_count(const struct scope_map *m)
{
    const struct scope_event_set *s = scope_map_event_set(m);

    return s != NULL ? s->n : 0;
}

/* The i-th event, or NULL. Borrowed from m. */
const struct scope_event *
scope_events_at(const struct scope_map *m, size_t i)
{
    const struct scope_event_set *s = scope_map_event_set(m);

    if (s == NULL || i >= s->n)
        return NULL;
    return &s->ev[i];
}

/* The event cb declares as name, or NULL. Borrowed from m. */
const struct scope_event *
scope_events_find(const struct scope_map *m, enum scope_callback cb,
                  const char *name)
{
    const struct scope_event_set *s = scope_map_event_set(m);
    struct scope_event key;

    if (s == NULL || s->n == 0 || name == NULL)
        return NULL;
    memset(&key, 0, sizeof(key));
    key.callback = cb;
    key.name = (char *)(uintptr_t)name;
    return bsearch(&key, s->ev, s->n, sizeof(s->ev[0]), event_cmp);
}

/* "event:NAME" or "NAME", either callback. Borrowed from m. */
const struct scope_event *
scope_events_lookup(const struct scope_map *m, const char *spec)
{
    const struct scope_event *e;

    if (spec == NULL)
        return NULL;
    if (strncmp(spec, "event:", 6) == 0)
        spec += 6;
    e = scope_events_find(m, SCOPE_CB_COMMAND, spec);
    return e != NULL ? e : scope_events_find(m, SCOPE_CB_DATA, spec);
}

/*---- Node keys only events have ----*/

enum brk_err
scope_events_node_key(struct loader *ld, const char *key, const json_t *v,
                      struct scope_node *n)
{
    const char *s = NULL;
    enum brk_err err;
    size_t i;

    if (strcmp(key, "subject") != 0 && strcmp(key, "separator") != 0 &&
        strcmp(key, "capability") != 0)
        return scope_ld_fail(ld, "unknown key \"%s\"", key);
    err = scope_ld_str(ld, key, v, &s);
    if (err)
        return err;
    if (strcmp(key, "subject") == 0) {
        for (i = 0; i < nitems(subjects); i++)
            if (strcmp(subjects[i].name, s) == 0)
                n->subject = subjects[i].kind;
        if (n->subject == SCOPE_REC_NONE)
            return scope_ld_fail(ld, "unknown subject \"%s\"", s);
    } else if (strcmp(key, "separator") == 0) {
        /* one punctuation byte: it can never be part of an id */
        if (strlen(s) != 1 || strchr(",;|", s[0]) == NULL)
            return scope_ld_fail(ld, "a separator is one of , ; |");
        n->separator = s[0];
    } else {
        n->cap = capability_bit(s);
        if (n->cap == 0)
            return scope_ld_fail(ld, "unknown capability \"%s\"", s);
    }
    return BRK_OK;
}

/*---- Checks over a loaded event ----*/

static enum scope_type
subject_type(enum scope_record kind)
{
    size_t i;

    for (i = 0; i < nitems(subjects); i++)
        if (subjects[i].kind == kind)
            return subjects[i].type;
    return SCOPE_T_STRING;
}

static int
is_scalar(enum scope_type t)
{
    return t != SCOPE_T_OBJECT && t != SCOPE_T_ARRAY;
}

/*
 * One node of an event tree (its step already pushed). in_array: inside
 * an array's elements, where a value cannot name the whole event.
 * *nsubj counts subject fields.
 */
static enum brk_err
check_node(struct loader *ld, const struct scope_node *n, int in_array,
           size_t *nsubj)
{
    const struct scope_node *c;
    enum brk_err err;
    size_t i;

    if (n->type == SCOPE_T_BOOL)
        return scope_ld_fail(ld, "an event field cannot be boolean: WeCom "
                                 "writes 0 or 1 (integer)");
    if (n->name == NULL && (n->subject != SCOPE_REC_NONE || n->cap != 0))
        return scope_ld_fail(ld, "array items take no \"subject\" or "
                                 "\"capability\"; put them on a named field");
    if (n->subject != SCOPE_REC_NONE) {
        if (in_array)
            return scope_ld_fail(ld, "a subject cannot be inside an array: "
                                     "use \"record\" on the items");
        if (n->type != subject_type(n->subject))
            return scope_ld_fail(ld, "a %s subject must be declared as %s",
                                 scope_record_name(n->subject),
                                 scope_type_name(subject_type(n->subject)));
        (*nsubj)++;
    }
    if (n->separator != 0 &&
        (n->type != SCOPE_T_ARRAY || !is_scalar(n->items->type)))
        return scope_ld_fail(ld, "\"separator\" is for arrays of strings or "
                                 "integers");
    if (n->type == SCOPE_T_OBJECT && n->record != SCOPE_REC_NONE)
        return scope_ld_fail(ld, "an event has no object records: its "
                                 "subject fields name what it is about");
    if (n->type == SCOPE_T_ARRAY) {
        if (n->items->type == SCOPE_T_ARRAY)
            return scope_ld_fail(ld, "an event array cannot hold arrays");
        scope_ld_push_key(ld, "items");
        err = check_node(ld, n->items, 1, nsubj);
        if (err)
            return err;
        scope_ld_pop(ld);
    }
    for (i = 0; i < n->nfields; i++) {
        c = &n->fields[i];
        scope_ld_push_key(ld, "fields");
        scope_ld_push_key(ld, c->name);
        err = check_node(ld, c, in_array, nsubj);
        if (err)
            return err;
        scope_ld_pop(ld);
        scope_ld_pop(ld);
    }
    return BRK_OK;
}

/* The envelope of the event's callback, declared "always". */
static enum brk_err
check_envelope(struct loader *ld, const struct scope_event *e)
{
    const struct envelope_field *env;
    const struct scope_node *f;
    size_t i, n;
    int has_slash = strchr(e->name, '/') != NULL;

    env = e->callback == SCOPE_CB_DATA ? data_envelope : command_envelope;
    n = e->callback == SCOPE_CB_DATA ? nitems(data_envelope)
                                     : nitems(command_envelope);
    for (i = 0; i < n; i++) {
        f = scope_node_field(&e->root, env[i].name, strlen(env[i].name));
        if (env[i].when == 1 && !has_slash) {
            if (f != NULL)
                return scope_ld_fail(ld,
                                     "\"%s\" is declared but the event "
                                     "name has no /%s",
                                     env[i].name, env[i].name);
            continue;
        }
        if (f == NULL || f->type != env[i].type || f->perm != SCOPE_PERM_ALWAYS)
            return scope_ld_fail(ld,
                                 "a %s callback declares \"%s\" (%s, "
                                 "\"always\")",
                                 callback_names[e->callback], env[i].name,
                                 scope_type_name(env[i].type));
    }
    for (i = 0; i < nitems(secret_fields); i++) {
        f = scope_node_field(&e->root, secret_fields[i],
                             strlen(secret_fields[i]));
        if (f != NULL && f->perm != SCOPE_PERM_NEVER)
            return scope_ld_fail(ld, "\"%s\" is a secret: declare it \"never\"",
                                 secret_fields[i]);
    }
    return BRK_OK;
}

/* "INFOTYPE" or "INFOTYPE/CHANGETYPE": segments of [A-Za-z0-9_], 1..64. */
static int
valid_event_name(const char *s, enum scope_callback cb)
{
    const char *slash = strchr(s, '/');
    size_t seg = 0;
    const char *p;

    for (p = s; *p != '\0'; p++) {
        if (*p == '/') {
            if (seg == 0 || p != slash)
                return 0;
            seg = 0;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                   (*p >= '0' && *p <= '9') || *p == '_') {
            if (++seg > 64)
                return 0;
        } else {
            return 0;
        }
    }
    if (seg == 0)
        return 0;
    /* a data callback's second part is the Event of MsgType "event" */
    return cb != SCOPE_CB_DATA || slash == NULL || strncmp(s, "event/", 6) == 0;
}

static enum brk_err
load_event(struct loader *ld, const json_t *j, struct scope_event *e,
           const struct scope_event_set *set)
{
    const char *k, *name = NULL, *cb = "command", *scope = NULL, *cap = NULL;
    const char *note = NULL;
    const json_t *v, *fields = NULL, *whole = NULL;
    enum brk_err err;
    size_t i, nsubj = 0;

    if (!json_is_object(j))
        return scope_ld_fail(ld, "an event is an object");
    json_object_foreach((json_t *)(uintptr_t)j, k, v)
    {
        scope_ld_push_key(ld, k);
        err = BRK_OK;
        if (strcmp(k, "event") == 0)
            err = scope_ld_str(ld, k, v, &name);
        else if (strcmp(k, "callback") == 0)
            err = scope_ld_str(ld, k, v, &cb);
        else if (strcmp(k, "scope") == 0)
            err = scope_ld_str(ld, k, v, &scope);
        else if (strcmp(k, "capability") == 0)
            err = scope_ld_str(ld, k, v, &cap);
        else if (strcmp(k, "note") == 0)
            err = scope_ld_str(ld, k, v, &note);
        else if (strcmp(k, "whole_tenant") == 0)
            whole = v;
        else if (strcmp(k, "fields") == 0)
            fields = v;
        else
            err = scope_ld_fail(ld, "unknown key \"%s\"", k);
        if (err == BRK_OK && whole == v && !json_is_boolean(v))
            err = scope_ld_fail(ld, "\"whole_tenant\" must be true or false");
        if (err)
            return err;
        scope_ld_pop(ld);
    }
    if (name == NULL || scope == NULL || fields == NULL)
        return scope_ld_fail(ld, "missing \"%s\"",
                             name == NULL    ? "event"
                             : scope == NULL ? "scope"
                                             : "fields");
    if (strcmp(cb, "command") == 0) {
        e->callback = SCOPE_CB_COMMAND;
    } else if (strcmp(cb, "data") == 0) {
        e->callback = SCOPE_CB_DATA;
    } else {
        scope_ld_push_key(ld, "callback");
        return scope_ld_fail(ld, "callback \"%s\": command or data", cb);
    }
    if (!valid_event_name(name, e->callback) ||
        strlen(name) >= SCOPE_EVENT_NAME_MAX) {
        scope_ld_push_key(ld, "event");
        return scope_ld_fail(ld,
                             "bad event name \"%s\": INFOTYPE[/CHANGETYPE] "
                             "(data: MSGTYPE or event/EVENT)",
                             name);
    }
    for (i = 0; i + 1 < set->n; i++)
        if (strcmp(set->ev[i].name, name) == 0) {
            scope_ld_push_key(ld, "event");
            return scope_ld_fail(ld, "duplicate event %s (also in %s)", name,
                                 set->ev[i].file);
        }
    scope_ld_push_key(ld, "scope");
    err = scope_ld_perm(ld, "scope", scope, &e->scope);
    if (err)
        return err;
    if (e->scope == SCOPE_PERM_NEVER)
        return scope_ld_fail(ld, "scope \"never\": never delivered");
    scope_ld_pop(ld);
    if (cap != NULL) {
        e->cap = capability_bit(cap);
        if (e->cap == 0) {
            scope_ld_push_key(ld, "capability");
            return scope_ld_fail(ld, "unknown capability \"%s\"", cap);
        }
    }
    e->whole_tenant = whole != NULL && json_is_true(whole);
    e->name = brk_strdup(name);
    e->file = brk_strdup(scope_ld_file(ld));
    if (e->name == NULL || e->file == NULL)
        return scope_ld_nomem(ld);
    scope_ld_push_key(ld, "fields");
    err = scope_ld_event_fields(ld, fields, &e->root);
    if (err)
        return err;
    scope_ld_pop(ld);
    for (i = 0; i < e->root.nfields; i++) {
        scope_ld_push_key(ld, "fields");
        scope_ld_push_key(ld, e->root.fields[i].name);
        err = check_node(ld, &e->root.fields[i], 0, &nsubj);
        if (err)
            return err;
        scope_ld_pop(ld);
        scope_ld_pop(ld);
    }
    if (e->whole_tenant && nsubj > 0)
        return scope_ld_fail(ld, "a whole_tenant event has no subject field");
    return check_envelope(ld, e);
}

/* The "events" array of one file into the map's set (its step pushed). */
enum brk_err
scope_events_load(struct loader *ld, const json_t *arr)
{
    struct scope_event_set **slot = scope_ld_events(ld), *s;
    struct scope_event *grown;
    const json_t *ev;
    enum brk_err err;
    size_t i, cap;

    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return scope_ld_fail(ld, "\"events\" must be a non-empty array");
    if (*slot == NULL) {
        *slot = brk_calloc(1, sizeof(**slot));
        if (*slot == NULL)
            return scope_ld_nomem(ld);
    }
    s = *slot;
    json_array_foreach(arr, i, ev)
    {
        if (s->n == s->cap) {
            cap = s->cap ? s->cap * 2 : 16;
            grown = brk_realloc(s->ev, cap * sizeof(s->ev[0]));
            if (grown == NULL)
                return scope_ld_nomem(ld);
            s->ev = grown;
            s->cap = cap;
        }
        /* counted before it is read: a failure frees what was built */
        memset(&s->ev[s->n], 0, sizeof(s->ev[0]));
        s->n++;
        scope_ld_push_index(ld, i);
        err = load_event(ld, ev, &s->ev[s->n - 1], s);
        if (err)
            return err;
        scope_ld_pop(ld);
    }
    return BRK_OK;
}
