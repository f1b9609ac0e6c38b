/*
 * What brokerctl's command files share: the invocation's state and a few
 * helpers over the synchronous Redis connection.
 */
#ifndef CTL_H
#define CTL_H

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "config.h"

struct ctl {
    struct config *cfg;
    const char *conf_path;
    const char *redis_url;
    const char *suite;
    int json;
    redisContext *rc;
};

/* A command's reply (freeReplyObject), or NULL after printing why. */
redisReply *ctl_cmd(struct ctl *c, const char *fmt, ...);
/* HGETALL as a JSON object of strings (new reference) or NULL. */
json_t *ctl_hgetall(struct ctl *c, const char *key);
/* A string member of o, or dflt. */
const char *ctl_str_of(const json_t *o, const char *k, const char *dflt);
/* A string member of o read as a number, or 0. */
long long ctl_num_of(const json_t *o, const char *k);
/* "3m ago (2026-11-29 05:00:00Z)" for people; "-" for 0. */
void ctl_when(long long t, char *buf, size_t len);
/* Print v as compact JSON and a newline. */
void ctl_print_json(json_t *v);

/* `brokerctl service …` */
int ctl_service(struct ctl *c, int argc, char **argv);

#endif /* CTL_H */
