/*
 * The internal listener: /healthz, /readyz, /metrics, and the
 * WeCom-compatible service API (proxy.h) for everything else.
 */
#ifndef INTERNAL_API_H
#define INTERNAL_API_H

struct store;
struct suites;
struct proxy;
struct audit;
struct httpd_req;

struct internal_api {
    struct store *st;      /* borrowed */
    struct suites *suites; /* borrowed */
    struct proxy *proxy;   /* borrowed: the service API */
    struct audit *audit;   /* borrowed; NULL: no audit file to watch */
    struct store *ack_st;  /* borrowed; NULL unless min_replica_acks >= 1 */
    long min_replica_acks; /* redis_min_replica_acks */
    long replicas;         /* connected replicas last seen, -1 unknown */
};

/* httpd_handler for the internal listener; arg is a struct internal_api. */
void internal_api_handle(struct httpd_req *r, void *arg);

#endif /* INTERNAL_API_H */
