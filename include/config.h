/*
 * broker.conf: an INI file read with libinih into an immutable
 * struct config. Every key, default and bound lives in one table in
 * config.c; see SPEC §3 and broker.conf.example for the key reference.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>

#include "broker.h"

/* Longest accepted line, terminator excluded; longer lines are refused. */
#define CONFIG_MAX_LINE 65536
/* Largest accepted configuration file. */
#define CONFIG_MAX_FILE (4L * 1024 * 1024)
/* Largest accepted KEY_file secret. */
#define CONFIG_MAX_SECRET_FILE 65536
/* Longest suite id in a [suite ID] header. */
#define CONFIG_MAX_ID 64

/* One [suite ID] section: a third-party app. */
struct suite_conf {
    char *suite_id;         /* from the section name "suite ID" */
    char *token;            /* secret */
    char *encoding_aes_key; /* secret, exactly 43 chars of [A-Za-z0-9] */
    char *secret;           /* secret (suite_secret) */
    char *provider_corpid;  /* may be NULL */
    int auth_type;          /* 0 or 1 */
    char **redirect_allow;  /* NULL-terminated URL prefixes, may be empty */
    size_t nredirect_allow;
    int line; /* line of the section header, for messages */
};

struct config {
    char *path; /* the file as given */
    char *dir;  /* its directory (realpath); relative paths resolve here */
    /* "host:port" validated; IPv6 as [::1]:8080 */
    char *callback_listen, *internal_listen;
    /* secret: "" = embedded, redis://[[user]:pw@]host[:port][/db],
     * unix:///path[?db=N] or sentinel://[[user]:pw@]h[:p][,h[:p]...]/NAME
     * [/db] */
    char *redis;
    /* absolute after load; the tls pair may both be "" */
    char *state_dir, *scopes_dir, *master_key_file, *index_key_file,
        *tls_cert_file, *tls_key_file;
    /* "" or absolute: where the audit trail is also appended */
    char *audit_file;
    /* http:// or https://; the two base URLs carry no trailing '/' */
    char *wecom_api_base, *public_base_url, *wecom_install_url,
        *wecom_oauth_url;
    char *key_prefix; /* non-empty, printable, no spaces/braces */
    /* comma-separated addresses and CIDR prefixes whose X-Forwarded-For
     * names the client on the browser routes; "" for none */
    char *trusted_proxies;
    long callback_max_skew, upstream_timeout_ms, cache_max_age,
        event_claim_idle, event_max_attempts;
    long event_concurrency; /* tenants worked on at once per instance */
    /* replicas that must confirm an event (WAIT) before WeCom gets
     * `success`; 0 = off */
    long redis_min_replica_acks;
    long delivery_max_age; /* seconds an event delivery is retried */
    /* the shared upstream budget (budget.h): calls per minute and per
     * hour per (corpid, API), and per API over every tenant */
    long upstream_rate_per_corp, upstream_rate_per_corp_hour,
        upstream_rate_per_api, upstream_rate_per_api_hour;
    long long upstream_max_body, audit_max_len, audit_max_age;
    long long cache_max_bytes; /* every in-process cache together */
    long workers;              /* event-loop threads serving the listeners */
    int log_level;             /* enum log_level from log.h */
    int log_json;              /* log_format json=1, text=0 */
    struct suite_conf *suites;
    size_t nsuites;
};

/* Highest database number accepted in a `redis` value. */
#define CONFIG_REDIS_MAX_DB 1000

/* A sentinel of a `sentinel://` value. */
struct config_redis_node {
    char *host;
    int port;
};

/* A parsed `redis` value (see config_redis_parse). */
struct config_redis {
    char *host;      /* TCP host name or IPv4 address, NULL for unix */
    int port;        /* TCP port (6379 when not given), 0 for unix */
    char *unix_path; /* socket path, NULL for TCP */
    long db;         /* database number, 0 when not given */
    char *user;      /* ACL user; NULL when none */
    char *password;  /* secret; NULL when none */
    /* sentinel:// only (host and unix_path NULL): the name the sentinels
     * know the primary by, and the sentinels to ask */
    char *master;
    struct config_redis_node *sentinels;
    size_t nsentinels;
};

/*
 * Load and validate a configuration file. Not thread-safe: libinih's
 * settings are process-wide and set by every call.
 */
enum brk_err config_load(const char *path, struct config **out,
                         struct brk_errinfo *info) BRK_WUR;
/* Free a configuration, wiping its secrets; NULL is a no-op. */
void config_free(struct config *cfg);
/* "FILE:LINE: message", or "FILE: message" when info->line is 0. */
void config_format_error(const char *path, const struct brk_errinfo *info,
                         char *buf, size_t len);
/* The suite with that id (borrowed) or NULL. */
const struct suite_conf *config_find_suite(const struct config *cfg,
                                           const char *suite_id);
/* Split "host:port" or "[v6]:port"; port 1..65535, 0 only if allow_zero. */
enum brk_err config_parse_listen(const char *s, char *host, size_t hostlen,
                                 int *port, int allow_zero) BRK_WUR;
/* Split a non-empty `redis` value into its parts. */
enum brk_err config_redis_parse(const char *url,
                                struct config_redis *out) BRK_WUR;
/* The "[user]:password@" of a redis:// or sentinel:// authority (p up
 * to end) into r; *after where the host starts (see config.c). */
enum brk_err config_redis_userinfo(const char *p, const char *end,
                                   struct config_redis *r,
                                   const char **after) BRK_WUR;
/* Release what config_redis_parse filled in, wiping the password. */
void config_redis_clear(struct config_redis *r);

#endif /* CONFIG_H */
