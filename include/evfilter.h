/*
 * The event filter (SPEC §6b): one decrypted WeCom callback and one
 * service's effective grant in, whether the service receives it and the
 * inner XML it receives out. The rules decidable from the event and the
 * service live here: the event must be declared (scopes/events.json), the
 * effective grant must hold its permission and the service its capability,
 * its subject must be in the service's range, a whole-tenant event
 * (change_external_tag) goes only to services without a range of their
 * own; fields the grant does not allow, fields not declared and secrets
 * (AuthCode) are removed, the WelcomeCode only reaches an external.welcome
 * service, and a command event always carries AuthCorpId. Fail closed: a
 * document that does not parse, a repeated element, or a value of another
 * type than declared is an error, never passed through. Pure: no I/O; the
 * range is the caller's callback.
 */
#ifndef EVFILTER_H
#define EVFILTER_H

#include <stddef.h>

#include "broker.h"
#include "grant.h"
#include "scope_events.h"
#include "scope_map.h"

/* Bounds of the input: bytes, element nesting (<xml> is 1), elements. */
#define EVFILTER_MAX_BYTES    65536
#define EVFILTER_MAX_DEPTH    8
#define EVFILTER_MAX_ELEMENTS 512

/* Whether the service receives the event, and the first reason not. */
enum evfilter_reason {
    EVFILTER_DELIVER = 0,
    EVFILTER_UNDECLARED,   /* no declaration of this event: no one gets it */
    EVFILTER_PERMISSION,   /* the effective grant lacks the event's scope */
    EVFILTER_CAPABILITY,   /* the service lacks the event's capability */
    EVFILTER_NARROWED,     /* a whole-tenant event, and the service has a
                              range of its own */
    EVFILTER_OUT_OF_RANGE, /* a subject outside the service's range */
};

/*
 * Is id (a userid, department or tag id in decimal, external_userid or
 * chat_id, as WeCom wrote it) of kind in the service's range? 1 yes, 0
 * no, negative when it cannot tell (the filter then fails with
 * BRK_ERR_STORE). Kinds: SCOPE_REC_MEMBER, _DEPARTMENT, _TAG,
 * _FOLLOW_USER (a member), _CUSTOMER (any follow user in range), _CHAT (its
 * owner in range; asked only when own_range is set) and _CHAT_MEMBER (an
 * internal member in range, or a customer: not range-checked). For a
 * deletion, answer from the range before it.
 */
typedef int evfilter_range_fn(void *arg, enum scope_record kind,
                              const char *id);

/* What the filter needs to know of the service, borrowed for the call. */
struct evfilter_ask {
    enum scope_callback callback; /* the URL WeCom sent the event to */
    const char *corpid; /* the tenant: a command event without AuthCorpId
                           gets it, one naming another corp is refused;
                           may be NULL when the event names the corp */
    const struct scope_grant *tenant;  /* unexpired permissions; NULL: none */
    const struct scope_grant *service; /* the service's scopes; NULL: none */
    unsigned caps;                     /* enum capability bits */
    int own_range;                     /* the service has --parties */
    evfilter_range_fn *in_range;       /* NULL: nothing is in range */
    void *arg;
    struct brk_errinfo *info; /* why an input was refused; may be NULL */
};

/* A subject field the event carried. */
struct evfilter_subject {
    enum scope_record kind;
    const char *field; /* "UserID": borrowed from the scope map */
    char *id;          /* owned */
    int checked;       /* asked of the range (chats only when own_range) */
};

struct evfilter_result {
    enum evfilter_reason reason;
    enum grant_field perm;           /* the event's permission, for the audit */
    const struct scope_event *event; /* borrowed from the map; NULL when
                                        undeclared */
    /* "change_contact/create_user" as the event names itself ("" when it
     * names nothing readable): counted when undeclared */
    char name[SCOPE_EVENT_NAME_MAX];
    /* delivered only (else NULL): WeCom's "<xml>...</xml>" with strings as
     * CDATA; owned and secret (evfilter_result_free wipes it) */
    char *xml;
    size_t xml_len;
    /* delivered only (else NULL): field names kept and removed,
     * comma-separated ("ExtAttr[].Name" below the top), no values; owned */
    char *kept;
    char *removed;
    struct evfilter_subject *subjects; /* in document order; owned */
    size_t nsubjects;
    size_t dropped;   /* list items removed for range */
    int welcome_code; /* the event carried a WelcomeCode (kept or not) */
};

/*
 * Filter the decrypted inner XML xml[0..len) of one callback for the
 * service ask describes, against the declarations of m. Returns BRK_OK
 * with *out filled (free with evfilter_result_free) whether or not the
 * service receives it; BRK_ERR_TOOBIG past the bounds above;
 * BRK_ERR_WX_PARSE_XML for a document that does not parse or repeats an
 * element; BRK_ERR_INVAL for a value of another type than declared, or a
 * corp other than ask->corpid; BRK_ERR_STORE when the range cannot tell;
 * BRK_ERR_NOMEM. *out is written only on success.
 */
enum brk_err evfilter_apply(const struct scope_map *m, const char *xml,
                            size_t len, const struct evfilter_ask *ask,
                            struct evfilter_result *out) BRK_WUR;

/* Free what a result owns (not r itself); wipes the XML. NULL is a
 * no-op. */
void evfilter_result_free(struct evfilter_result *r);

/*
 * The event-level rules alone (permission, capability, whole tenant), in
 * the order evfilter_apply checks them: what brokerctl explain shows.
 * *perm (may be NULL) gets grant_field's word on the event's scope.
 */
enum evfilter_reason evfilter_decide(const struct scope_event *ev,
                                     const struct evfilter_ask *ask,
                                     enum grant_field *perm);

/* Whether a declared field reaches the service: its permission by
 * grant_field (into *perm, may be NULL) and its capability. */
int evfilter_field_kept(const struct scope_node *n,
                        const struct evfilter_ask *ask, enum grant_field *perm);

/* "deliver", "undeclared", "permission", "capability", "narrowed",
 * "out_of_range": static, for logs and metric labels. */
const char *evfilter_reason_name(enum evfilter_reason r);

#endif /* EVFILTER_H */
