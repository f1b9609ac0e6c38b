/*
 * Process metrics in the Prometheus text format. Families are a fixed
 * table; label values must come from bounded sets (configured suite ids,
 * known InfoTypes, fixed reasons), never from raw request input.
 */
#ifndef METRICS_H
#define METRICS_H

#include "broker.h"
#include "dynbuf.h"

enum metrics_id {
    METRICS_HTTP_REQUESTS,        /* {listener,route,status} */
    METRICS_HTTP_SECONDS,         /* histogram {listener,route} */
    METRICS_CALLBACKS,            /* {suite,info_type,result} */
    METRICS_CALLBACK_REJECTIONS,  /* {suite,reason} */
    METRICS_CALLBACK_ACK_SECONDS, /* histogram, POST callbacks answered */
    METRICS_SUITE_TICKETS,        /* {suite,result=stored|stale} */
    METRICS_REDIS_UP,             /* gauge */
    METRICS_REDIS_CONNECTS,       /* counter */
    METRICS_REDIS_ERRORS,         /* {kind} */
    METRICS_INFLIGHT,             /* gauge {listener} */
    METRICS_TOKEN_REFRESHES,      /* {kind=suite|corp,result} */
    METRICS_UPSTREAM_CALLS,       /* {api,result} */
    METRICS_EVENTS,               /* {suite,info_type,result} worker outcomes */
    METRICS_LOST_AUTHORIZATIONS,  /* {suite} */
    METRICS_API_REQUESTS,         /* {endpoint,errcode} service API replies */
    METRICS_FIELDS_STRIPPED,      /* counter */
    METRICS_RECORDS_DROPPED,      /* counter */
    METRICS_TICKET_AGE,           /* gauge {suite}: seconds, -1 when none */
    METRICS_BUDGET_GRANTS,        /* {class} upstream calls allowed */
    METRICS_BUDGET_REFUSALS,      /* {class,reason} upstream calls refused */
    METRICS_BUDGET_PAUSES,        /* {api} 45009 from WeCom: paused 60 s */
    METRICS_BUDGET_CONCURRENCY,   /* {api} 45033 from WeCom: fewer at once */
    METRICS_BUDGET_LEASES,        /* {scope,result} blocks asked of Redis */
    METRICS_AUDIT_WRITES,         /* {sink=redis|file,result} audit entries */
    METRICS_REDIS_WAITS,          /* {result=ok|short|error} WAIT before ack */
    METRICS_REDIS_REPLICAS,       /* gauge: connected replicas, -1 unknown */
    METRICS_DELIVERIES,           /* {service,result} event deliveries */
    METRICS_DELIVERY_SECONDS,     /* histogram {service}: ack to receipt */
    METRICS_DELIVERY_BACKLOG,     /* gauge {service}: queued deliveries */
    METRICS_DELIVERY_TENANT_READS, /* {result} tenants read for sending */
    METRICS_DELIVERY_HEAD_READS,   /* {service} reads of next entries */
    METRICS_EVENT_TENANT_READS,    /* {result} tenants for event workers */
    METRICS_WRITES, /* {endpoint,result,errcode} service writes (§5b) */
    METRICS__COUNT
};

/* Add v to a counter series (created on first use). */
void metrics_add(enum metrics_id id, const char *labels, double v);
/* metrics_add(id, labels, 1). */
void metrics_inc(enum metrics_id id, const char *labels);
/* Set a gauge series. */
void metrics_set(enum metrics_id id, const char *labels, double v);
/* Record one observation (seconds) in a histogram series. */
void metrics_observe(enum metrics_id id, const char *labels, double v);
/*
 * Build a label string k1="v1",k2="v2" from NULL-terminated key/value
 * pairs into buf, escaping values. Truncates safely; returns buf.
 */
const char *metrics_labels(char *buf, size_t len, ...);
/* Append every family in the text exposition format. */
enum brk_err metrics_render(struct dynbuf *out) BRK_WUR;
/* Forget every series (tests). */
void metrics_reset(void);

#endif /* METRICS_H */
