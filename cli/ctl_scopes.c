/*
 * brokerctl scopes lint|list: the scope files seen from the outside.
 * Never touches Redis: lint needs no configuration at all when given a
 * path.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "capability.h"
#include "scope_events.h"
#include "scope_map.h"

#include "ctl.h"

/* The file of the i-th declaration: endpoints first, then events. */
static const char *
decl_file(const struct scope_map *m, size_t i)
{
    size_t ne = scope_map_count(m);

    return i < ne ? scope_map_at(m, i)->file : scope_events_at(m, i - ne)->file;
}

/* Distinct files the endpoints and events came from. */
static size_t
count_files(const struct scope_map *m)
{
    size_t i, k, n = 0, all = scope_map_count(m) + scope_events_count(m);

    for (i = 0; i < all; i++) {
        for (k = 0; k < i; k++)
            if (strcmp(decl_file(m, k), decl_file(m, i)) == 0)
                break;
        n += k == i;
    }
    return n;
}

/* A directory of scope files, or one file. */
static enum brk_err
load_scopes(const char *path, struct scope_map **m, struct brk_errinfo *info)
{
    struct stat st;

    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        return scope_map_load_file(path, m, info);
    return scope_map_load(path, m, info);
}

static int
scopes_lint(struct ctl *c, const char *path)
{
    struct brk_errinfo info = {"", 0, -1};
    struct scope_map *m = NULL;
    json_t *o;

    if (load_scopes(path, &m, &info) != BRK_OK) {
        if (c->json) {
            o = json_pack("{s:b, s:s, s:s}", "ok", 0, "path", path, "error",
                          info.msg);
            ctl_print_json(o);
            json_decref(o);
        } else {
            fprintf(stderr, "%s\n", info.msg);
        }
        return 1;
    }
    if (c->json) {
        o = json_pack("{s:b, s:s, s:I, s:I, s:I}", "ok", 1, "path", path,
                      "endpoints", (json_int_t)scope_map_count(m), "events",
                      (json_int_t)scope_events_count(m), "files",
                      (json_int_t)count_files(m));
        ctl_print_json(o);
        json_decref(o);
    } else {
        printf("scopes OK: %zu endpoint%s and %zu event%s in %zu file%s "
               "(%s)\n",
               scope_map_count(m), scope_map_count(m) == 1 ? "" : "s",
               scope_events_count(m), scope_events_count(m) == 1 ? "" : "s",
               count_files(m), count_files(m) == 1 ? "" : "s", path);
    }
    scope_map_free(m);
    return 0;
}

/* "userid*(member), cursor": * marks a required parameter. */
static void
params_summary(const struct scope_endpoint *e, char *buf, size_t len)
{
    size_t i, o = 0;
    int w;

    buf[0] = '\0';
    for (i = 0; i < e->nparams && o < len; i++) {
        const struct scope_param *p = &e->params[i];

        w = snprintf(
            buf + o, len - o, "%s%s%s%s%s%s", i ? ", " : "", p->name,
            p->required ? "*" : "", p->kind != SCOPE_P_PLAIN ? "(" : "",
            p->kind != SCOPE_P_PLAIN ? scope_param_kind_name(p->kind) : "",
            p->kind != SCOPE_P_PLAIN ? ")" : "");
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

/* The subject fields of an event tree: "UserID(member)", and into arr. */
static void
subjects_summary(const struct scope_node *n, const char *prefix, char *buf,
                 size_t len, size_t *o, json_t *arr)
{
    char path[256];
    size_t i;
    int w;

    for (i = 0; i < n->nfields; i++) {
        const struct scope_node *f = &n->fields[i];

        snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "",
                 f->name);
        if (f->subject != SCOPE_REC_NONE) {
            if (*o < len) {
                w = snprintf(buf + *o, len - *o, "%s%s(%s)", *o ? ", " : "",
                             path, scope_record_name(f->subject));
                *o += w > 0 ? (size_t)w : 0;
            }
            json_array_append_new(
                arr, json_pack("{s:s, s:s}", "field", path, "subject",
                               scope_record_name(f->subject)));
        }
        if (f->type == SCOPE_T_OBJECT)
            subjects_summary(f, path, buf, len, o, arr);
    }
}

/* The events of m: into the table t, or as objects appended to arr. */
static void
list_events(const struct scope_map *m, struct ctl_table *t, json_t *arr)
{
    char subj[256], cap[CAPABILITY_LIST_MAX], name[SCOPE_EVENT_NAME_MAX + 8];
    const struct scope_event *e;
    json_t *subjects;
    size_t i, o;

    for (i = 0; i < scope_events_count(m); i++) {
        e = scope_events_at(m, i);
        o = 0;
        subj[0] = '\0';
        subjects = json_array();
        subjects_summary(&e->root, "", subj, sizeof(subj), &o, subjects);
        capability_format(e->cap, cap, sizeof(cap));
        snprintf(name, sizeof(name), "event:%s", e->name);
        if (t != NULL) {
            const char *row[5];

            row[0] = name;
            row[1] = scope_callback_name(e->callback);
            row[2] = scope_perm_name(e->scope);
            row[3] = cap[0] ? cap : "-";
            row[4] = e->whole_tenant ? "none: only services without a "
                                       "range of their own"
                     : subj[0]       ? subj
                                     : "none";
            ctl_table_add(t, row);
            json_decref(subjects);
            continue;
        }
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:s, s:s, s:s?, s:o, s:b, s:s}", "path",
                           name, "event", e->name, "callback",
                           scope_callback_name(e->callback), "scope",
                           scope_perm_name(e->scope), "capability",
                           cap[0] ? cap : NULL, "subjects", subjects,
                           "whole_tenant", e->whole_tenant, "file", e->file));
    }
}

/* A write's body keys, top level: "userid*(member), remark". */
static void
body_summary(const struct scope_endpoint *e, char *buf, size_t len)
{
    size_t i, o = 0;
    int w;

    buf[0] = '\0';
    for (i = 0; i < e->body.nfields && o < len; i++) {
        const struct scope_body *b = &e->body.fields[i];
        enum scope_subject sj =
            b->items != NULL ? b->items->subject : b->subject;

        w = snprintf(buf + o, len - o, "%s%s%s%s%s%s%s", i ? ", " : "", b->name,
                     b->required ? "*" : "", sj != SCOPE_S_NONE ? "(" : "",
                     sj != SCOPE_S_NONE ? scope_subject_name(sj) : "",
                     sj != SCOPE_S_NONE && b->items != NULL ? "_list" : "",
                     sj != SCOPE_S_NONE ? ")" : "");
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

/* The declared body keys of a write, top level, as JSON. */
static json_t *
body_json(const struct scope_endpoint *e)
{
    json_t *a = json_array();
    size_t i;

    for (i = 0; a != NULL && i < e->body.nfields; i++) {
        const struct scope_body *b = &e->body.fields[i];
        enum scope_subject sj =
            b->items != NULL ? b->items->subject : b->subject;

        json_array_append_new(
            a, json_pack("{s:s, s:s, s:s?, s:b}", "name", b->name, "type",
                         scope_type_name(b->type), "subject",
                         scope_subject_name(sj), "required", b->required));
    }
    return a;
}

/* "a" for one capability, "any of a, b, c" for several. */
static void
any_of(unsigned caps, char *buf, size_t len)
{
    char names[CAPABILITY_LIST_MAX];
    const char *p;
    size_t o;

    capability_format(caps, names, sizeof(names));
    if (strchr(names, ',') == NULL) {
        snprintf(buf, len, "%s", names);
        return;
    }
    o = (size_t)snprintf(buf, len, "any of ");
    for (p = names; *p != '\0' && o + 3 < len; p++) {
        buf[o++] = *p;
        if (*p == ',')
            buf[o++] = ' ';
    }
    buf[o < len ? o : len - 1] = '\0';
}

static int
scopes_list(struct ctl *c)
{
    struct brk_errinfo info = {"", 0, -1};
    struct scope_map *m = NULL;
    struct ctl_table *t = NULL;
    json_t *arr, *o, *ps;
    char params[512], cap[CAPABILITY_LIST_MAX + 16];
    size_t i, k;
    static const char *const heads[] = {
        "PATH", "METHOD", "SCOPE",
        "PARAMETERS (* required, (subject) range-checked)",
        "WRITE (capability)"};

    if (ctl_load_config(c) != 0)
        return 1;
    if (scope_map_load(c->cfg->scopes_dir, &m, &info) != BRK_OK) {
        fprintf(stderr, "%s\n", info.msg);
        return 1;
    }
    arr = json_array();
    if (!c->json)
        t = ctl_table_new(5, heads);
    for (i = 0; i < scope_map_count(m); i++) {
        const struct scope_endpoint *e = scope_map_at(m, i);

        if (!c->json) {
            const char *row[5];

            /* a write's parameters are its body's keys */
            if (e->multipart) {
                params_summary(e, params, sizeof(params) - 32);
                snprintf(params + strlen(params), 32,
                         "; body: multipart media*");
            } else if (e->write) {
                body_summary(e, params, sizeof(params));
            } else {
                params_summary(e, params, sizeof(params));
            }
            any_of(e->capability, cap, sizeof(cap));
            row[0] = e->path;
            row[1] = e->method;
            row[2] = scope_perm_name(e->scope);
            row[3] = params;
            row[4] = e->write ? cap : "-";
            ctl_table_add(t, row);
            continue;
        }
        ps = json_array();
        for (k = 0; k < e->nparams; k++)
            json_array_append_new(
                ps,
                json_pack("{s:s, s:s, s:s, s:b}", "name", e->params[k].name,
                          "type", scope_type_name(e->params[k].type), "subject",
                          scope_param_kind_name(e->params[k].kind), "required",
                          e->params[k].required));
        /* "capability": one name, or several comma-separated of which
         * any one suffices */
        o = json_pack(
            "{s:s, s:s, s:s, s:s, s:o, s:b, s:s?, s:o?, s:b}", "path", e->path,
            "method", e->method, "scope", scope_perm_name(e->scope), "file",
            e->file, "params", ps, "write", e->write, "capability",
            e->write ? capability_format(e->capability, cap, sizeof(cap))
                     : NULL,
            "body", e->write ? body_json(e) : NULL, "multipart", e->multipart);
        json_array_append_new(arr, o);
    }
    if (c->json) {
        list_events(m, NULL, arr);
        ctl_print_json(arr);
    } else {
        ctl_table_print(t, stdout);
        if (scope_events_count(m) > 0) {
            static const char *const eheads[] = {"EVENT", "CALLBACK", "SCOPE",
                                                 "CAPABILITY",
                                                 "SUBJECTS (range-checked)"};

            ctl_table_free(t);
            t = ctl_table_new(5, eheads);
            list_events(m, t, NULL);
            printf("\n");
            ctl_table_print(t, stdout);
        }
    }
    ctl_table_free(t);
    json_decref(arr);
    scope_map_free(m);
    return 0;
}

/* scopes lint [DIR|FILE] | scopes list: never touches Redis. Exit
 * status as every command. */
int
ctl_scopes(struct ctl *c, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "lint") == 0 && argc <= 2) {
        if (argc == 2)
            return scopes_lint(c, argv[1]);
        if (ctl_load_config(c) != 0)
            return 1;
        return scopes_lint(c, c->cfg->scopes_dir);
    }
    if (argc == 1 && strcmp(argv[0], "list") == 0)
        return scopes_list(c);
    return ctl_usage("scopes takes lint [DIR|FILE] or list");
}
