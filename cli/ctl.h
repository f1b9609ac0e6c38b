/*
 * What brokerctl's command files share: the invocation's state, helpers
 * over the synchronous Redis connection, aligned tables, and the entry
 * point of each command group (one cli/ctl_<group>.c each).
 */
#ifndef CTL_H
#define CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "config.h"

struct keyring;

struct ctl {
    struct config *cfg;
    const char *conf_path;
    const char *redis_url;
    const char *suite;
    int json;
    redisContext *rc;
    struct keyring *kr; /* loaded on first use (ctl_keyring) */
};

/* A command: exit status 0 ok, 1 failure, 2 usage error. */
typedef int ctl_run(struct ctl *c, int argc, char **argv);

/*---- ctl_util.c ----*/

/* Connect c->rc to the Redis of u (sentinel:// included), AUTH and SELECT;
 * 0, or -1 after printing why. */
int ctl_redis_connect(struct ctl *c, const struct config_redis *u,
                      struct timeval tv);

/* Memory for the CLI: brk_malloc & co, exiting with a message when out of
 * memory (a command cannot do anything useful without it). Owned results,
 * free with brk_free. */
void *ctl_xmalloc(size_t n);
char *ctl_xstrdup(const char *s);
/* Load the configuration (-c, default ./broker.conf) once; 0 or 1 after
 * printing why. */
int ctl_load_config(struct ctl *c);
/* The master and index keys of the configuration, loaded once (borrowed,
 * freed at exit), or NULL after printing why. */
struct keyring *ctl_keyring(struct ctl *c);
/* A command's reply (freeReplyObject), or NULL after printing why. */
redisReply *ctl_cmd(struct ctl *c, const char *fmt, ...);
/* The same from an argument vector. */
redisReply *ctl_cmd_argv(struct ctl *c, int argc, const char **argv);
/* HGETALL as a JSON object of strings (new reference) or NULL. */
json_t *ctl_hgetall(struct ctl *c, const char *key);
/* A string member of o, or dflt. */
const char *ctl_str_of(const json_t *o, const char *k, const char *dflt);
/* A string member of o read as a number, or 0. */
long long ctl_num_of(const json_t *o, const char *k);
/* "3m ago (2026-11-29 05:00:00Z)" for people; "-" for 0. */
void ctl_when(long long t, char *buf, size_t len);
/* "2026-11-29 05:00:00Z"; "-" for 0. */
void ctl_utc(long long t, char *buf, size_t len);
/* Print v as compact JSON and a newline. */
void ctl_print_json(json_t *v);
/* "brokerctl: MSG" on stderr; returns 2 (main then prints the command's
 * usage). */
int ctl_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The suites in which corp has a tenant record (honouring --suite); up
 * to max into found (borrowed from the configuration). */
size_t ctl_suites_of(struct ctl *c, const char *corp, const char **found,
                     size_t max);
/* "<prefix>inval" into buf; nonzero if it does not fit. */
int ctl_inval_channel(struct ctl *c, char *buf, size_t len);

/* Write s with control characters and invalid UTF-8 shown as "?". */
void ctl_sanitize(FILE *f, const char *s);
/* Write s (sanitized) padded with spaces to width display columns. */
void ctl_pad(FILE *f, const char *s, size_t width);

/* An aligned table for people: columns as wide as their widest cell in
 * display columns, two spaces apart, the last one not padded. */
struct ctl_table;
/* Owned, free with ctl_table_free. headers: ncols strings (copied). */
struct ctl_table *ctl_table_new(size_t ncols, const char *const *headers);
/* Add a row of ncols strings (copied; NULL prints as "-"). */
void ctl_table_add(struct ctl_table *t, const char *const *cells);
void ctl_table_print(const struct ctl_table *t, FILE *f);
void ctl_table_free(struct ctl_table *t);

/*---- ctl_width.c ----*/

/* Decode one UTF-8 character of s (n > 0 bytes): its length, or 0 for a
 * byte that starts no valid character. */
size_t ctl_utf8_next(const char *s, size_t n, uint32_t *cp);
/* Display columns of one character: 0, 1 or 2 (see ctl_width.c). */
int ctl_char_width(uint32_t cp);
/* Display columns of s, or of its first n bytes, as ctl_sanitize prints
 * it. */
size_t ctl_width(const char *s);
size_t ctl_width_n(const char *s, size_t n);

/*---- command groups ----*/

/* ctl_tenant.c: tenants, tenant show|purge, suite */
int ctl_tenants(struct ctl *c, int argc, char **argv);
int ctl_tenant(struct ctl *c, int argc, char **argv);
int ctl_suite(struct ctl *c, int argc, char **argv);
/* ctl_service.c */
int ctl_service(struct ctl *c, int argc, char **argv);
/* The id of a service by name into id (SERVICE_ID_LEN + 1 bytes); 0, or 1
 * after printing why. */
int ctl_service_id(struct ctl *c, const char *name, char *id);
/* ctl_deliver.c: service deliver, deliveries */
int ctl_service_deliver(struct ctl *c, int argc, char **argv);
int ctl_deliveries(struct ctl *c, int argc, char **argv);
/* The delivery part of `service show` (new reference; null when none). */
json_t *ctl_delivery_json(struct ctl *c, const char *id);
/* Remove a tenant's deliveries for every service: the entries removed,
 * or -1 after printing why. */
long long ctl_deliveries_purge(struct ctl *c, const char *suite,
                               const char *corp);
/* ctl_key.c */
int ctl_key(struct ctl *c, int argc, char **argv);
/* ctl_explain.c */
int ctl_explain(struct ctl *c, int argc, char **argv);
/* ctl_audit.c */
int ctl_audit(struct ctl *c, int argc, char **argv);
/* ctl_scopes.c: never touches Redis */
int ctl_scopes(struct ctl *c, int argc, char **argv);

#endif /* CTL_H */
