/*
 * Event declarations (scopes/events.json, SPEC §6b): for every WeCom
 * callback the broker may pass on to services, the permission and the
 * capability it needs, and the field tree of its inner XML in the grammar
 * of the endpoint files (scope_map.h), with three keys only events have:
 * "subject" (a field naming the member, department, tag, follow user,
 * customer or chat the event is about), "separator" (an array WeCom
 * writes as one text, "1,2,3") and "capability" (a field only a service
 * holding that capability receives: the WelcomeCode). A field not declared
 * is removed. Loaded with the endpoints by scope_map_load; pure.
 */
#ifndef SCOPE_EVENTS_H
#define SCOPE_EVENTS_H

#include <stddef.h>

#include "broker.h"
#include "scope_map.h"

/* Which callback URL WeCom sends the event to. */
enum scope_callback {
    SCOPE_CB_COMMAND, /* the suite's command callback: InfoType[/ChangeType] */
    SCOPE_CB_DATA,    /* the data callback: MsgType[/Event] */
};

/* Longest event name, "INFOTYPE/CHANGETYPE", with its NUL. */
#define SCOPE_EVENT_NAME_MAX 130

struct scope_event {
    char *name; /* "change_contact/create_user", "text", "event/enter_agent" */
    enum scope_callback callback;
    int scope;              /* permission the effective grant must hold */
    unsigned cap;           /* enum capability bits the service must hold */
    int whole_tenant;       /* no subject: only to services without a range
                               of their own (change_external_tag) */
    struct scope_node root; /* the inner <xml>'s children */
    char *file;             /* file it came from (for messages) */
};

/* Number of declared events, and the i-th sorted by callback then name
 * (borrowed from m, NULL past the end). */
size_t scope_events_count(const struct scope_map *m);
const struct scope_event *scope_events_at(const struct scope_map *m, size_t i);
/* The declaration of name for callback cb, or NULL. Borrowed. */
const struct scope_event *scope_events_find(const struct scope_map *m,
                                            enum scope_callback cb,
                                            const char *name);
/* The declaration for "event:NAME" or "NAME" of either callback (names
 * are unique across both), or NULL. Borrowed. */
const struct scope_event *scope_events_lookup(const struct scope_map *m,
                                              const char *spec);

/* "command" or "data"; static. */
const char *scope_callback_name(enum scope_callback cb);

#endif /* SCOPE_EVENTS_H */
