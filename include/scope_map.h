/*
 * Scope maps: for each WeCom endpoint the service API serves, the scope it
 * requires, its request parameters (and which are range-checked subjects),
 * and the response's field tree — every field tagged with the permission
 * that allows it. Loaded from the *.json files of scopes/ (data, not
 * code) into an immutable map. Pure: no I/O beyond reading the files.
 *
 * The response tree drives the streaming filter: a key the tree does not
 * declare is removed (allow-list), a key whose permission the effective
 * grant lacks is removed, and objects marked as records are dropped when
 * their id is outside the visible range. Permission names and grants are
 * grant.h's.
 */
#ifndef SCOPE_MAP_H
#define SCOPE_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "grant.h"

/*---- Response trees ----*/

enum scope_type {
    SCOPE_T_STRING,
    SCOPE_T_INTEGER, /* a JSON number without fraction or exponent */
    SCOPE_T_NUMBER,  /* any JSON number */
    SCOPE_T_BOOL,
    SCOPE_T_OBJECT,
    SCOPE_T_ARRAY,
};

/*
 * What an object stands for, when the visible range decides whether it
 * may be returned. A record's id is read from the key named by
 * scope_node.record_id.
 */
enum scope_record {
    SCOPE_REC_NONE = 0,
    SCOPE_REC_MEMBER,      /* id: a userid */
    SCOPE_REC_DEPARTMENT,  /* id: a department id (integer) */
    SCOPE_REC_TAG,         /* id: a tag id (integer) */
    SCOPE_REC_FOLLOW_USER, /* a customer's follow user; id: a userid */
    SCOPE_REC_CHAT_MEMBER, /* a group-chat member; id: a userid; only
                              internal members (type 1) are range-checked */
    SCOPE_REC_CUSTOMER,    /* in range when any follow user is */
    SCOPE_REC_CHAT,        /* id: the owner's userid */
};

struct scope_node {
    char *name; /* key in the parent object; NULL for items */
    enum scope_type type;
    int perm;                  /* permission id, SCOPE_PERM_ALWAYS/NEVER */
    struct scope_node *fields; /* object: children sorted by name (strcmp) */
    size_t nfields;
    struct scope_node *items; /* array: the element node */
    enum scope_record record; /* object: SCOPE_REC_NONE or a record kind */
    char *record_id;          /* object record: key holding its id */
    /* event trees only (scope_events.h); zero in endpoint trees */
    enum scope_record subject; /* a scalar naming the event's subject */
    char separator;            /* array written as one text, e.g. "1,2,3" */
    unsigned cap;              /* enum capability bits the field needs */
    /* endpoint roots: a number no other map this process loads has, so a
     * filter may keep what it learned of the tree from one document to the
     * next while it is the same; 0 elsewhere (nothing is kept) */
    uint64_t tree;
};

/* Nonzero when the JSON value v (jansson's) is of type t; an array's
 * items are the caller's to check. */
struct json_t;
int scope_type_matches(enum scope_type t, const struct json_t *v);

/* The child of an object node named name (len bytes), or NULL. */
const struct scope_node *scope_node_field(const struct scope_node *obj,
                                          const char *name, size_t len);

/*---- Endpoints ----*/

enum scope_param_kind {
    SCOPE_P_PLAIN,       /* a parameter with no range meaning */
    SCOPE_P_MEMBER,      /* userid */
    SCOPE_P_DEPARTMENT,  /* department_id, id */
    SCOPE_P_TAG,         /* tagid */
    SCOPE_P_CUSTOMER,    /* external_userid */
    SCOPE_P_CHAT,        /* chat_id */
    SCOPE_P_MEMBER_LIST, /* userid_list, owner_filter.userid_list */
};

/* One declared request parameter (query for GET, body key for POST; a
 * nested body key is written "owner_filter.userid_list"). */
struct scope_param {
    char *name;
    enum scope_type type;
    enum scope_param_kind kind;
    int required;
    /* "enum": the allowed string values (a write's query: another is
     * 40058); none when nenums is 0 */
    char **enums;
    size_t nenums;
};

/*---- Write bodies (SPEC §5b) ----*/

/*
 * What a value of a write body names. The checker (write_check.h) reports
 * every subject found, at any depth; the service API decides each against
 * the range or the record it belongs to before WeCom is called.
 */
enum scope_subject {
    SCOPE_S_NONE = 0,
    SCOPE_S_MEMBER,       /* a userid (string) */
    SCOPE_S_DEPARTMENT,   /* a department id (integer) */
    SCOPE_S_CUSTOMER,     /* an external_userid (string) */
    SCOPE_S_CHAT,         /* a chat_id (string) */
    SCOPE_S_CORP_TAG,     /* a corp tag or tag group id this service made */
    SCOPE_S_CONTACT_WAY,  /* a contact way config_id this service made */
    SCOPE_S_WELCOME_CODE, /* a WelcomeCode delivered to this service */
};

/* The body's limits of one key (WeCom's, where it sets them). */
struct scope_body {
    char *name; /* key in the parent object; NULL for items and the root */
    enum scope_type type;
    int required;
    long max_len;   /* strings: most characters (UTF-8); 0: no limit */
    long max_items; /* arrays: most elements; 0: no limit */
    enum scope_subject subject; /* scalars only (a list mark is on items) */
    char **enum_s;              /* strings: the allowed values, or NULL */
    long long *enum_i;          /* integers: the allowed values, or NULL */
    size_t nenum;
    struct scope_body *fields; /* object: children sorted by name */
    size_t nfields;
    struct scope_body *items; /* array: the element */
};

/* The child of a body object called name (len bytes), or NULL. */
const struct scope_body *scope_body_field(const struct scope_body *obj,
                                          const char *name, size_t len);

/* What a write's reply creates, recorded as this service's. */
enum scope_creates {
    SCOPE_C_NONE = 0,
    SCOPE_C_CORP_TAG,    /* tag_group.group_id, tag_group.tag[].id */
    SCOPE_C_CONTACT_WAY, /* config_id */
};

struct scope_endpoint {
    char *path;   /* "/cgi-bin/user/get" */
    char *method; /* "GET" or "POST" */
    int scope;    /* permission the endpoint needs at all */
    struct scope_param *params;
    size_t nparams;
    struct scope_node root; /* the response object */
    char *file;             /* file it came from (for messages) */
    /* writes ("write": true): the capabilities ops must have granted
     * (enum capability bits: any one of them suffices), the request body,
     * what the reply creates; params of a write are query parameters.
     * multipart: the body is media/upload's one "media" part
     * (multipart.h), not JSON, and body is empty */
    int write;
    unsigned capability;
    int multipart;
    struct scope_body body;
    enum scope_creates creates;
};

struct scope_map;

/*
 * Load every *.json file of dir (sorted by name). Strict: unknown keys,
 * unknown permission names, bad types, duplicate paths (across files) are
 * errors with the file and position in info->msg ("FILE:LINE:COL: msg").
 * Owned result: scope_map_free.
 */
enum brk_err scope_map_load(const char *dir, struct scope_map **out,
                            struct brk_errinfo *info) BRK_WUR;
/* Load one file (lint, tests). */
enum brk_err scope_map_load_file(const char *file, struct scope_map **out,
                                 struct brk_errinfo *info) BRK_WUR;
void scope_map_free(struct scope_map *m);

/* The endpoint for path (no query), or NULL. Borrowed. */
const struct scope_endpoint *scope_map_find(const struct scope_map *m,
                                            const char *path);
/* Number of endpoints, and the i-th (sorted by path). Borrowed. */
size_t scope_map_count(const struct scope_map *m);
const struct scope_endpoint *scope_map_at(const struct scope_map *m, size_t i);
/* The declared parameter called name, or NULL. */
const struct scope_param *scope_endpoint_param(const struct scope_endpoint *e,
                                               const char *name);

/*---- Limits and names ----*/

/* Deepest response tree accepted (the root object is level 0); the
 * filter's default nesting limit (32) stays above it. */
#define SCOPE_MAX_DEPTH 24
/* Largest scope file accepted, in bytes. */
#define SCOPE_MAX_FILE (4L * 1024 * 1024)

/* The spelling used in scope files ("string", "integer", "number",
 * "boolean", "object", "array"); static, or NULL. */
const char *scope_type_name(enum scope_type t);
/* "member", "department", ... as in scope files; NULL for SCOPE_REC_NONE. */
const char *scope_record_name(enum scope_record r);
/* "member", "department", "customer", "chat", "corp_tag", "contact_way",
 * "welcome_code" as in scope files; NULL for SCOPE_S_NONE. */
const char *scope_subject_name(enum scope_subject s);
/* Deepest body tree accepted (the root object is level 0). */
#define SCOPE_BODY_MAX_DEPTH 8
/* Most values one enum may list. */
#define SCOPE_ENUM_MAX 64
/* "plain", "member", "department", "tag", "customer", "chat",
 * "member_list"; static, or NULL. */
const char *scope_param_kind_name(enum scope_param_kind k);

#endif /* SCOPE_MAP_H */
