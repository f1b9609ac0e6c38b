/*
 * Integration-test harness: a private redis-server on a unix socket, the
 * real broker binary on loopback ports, HTTP through libcurl, Redis through
 * hiredis. Everything lives in a temporary directory removed at the end.
 */
#ifndef HARNESS_H
#define HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#define H_SUITE    "wwtestsuite00001"
#define H_TOKEN    "QDG6eK3hXn2Ls8bVtEo"
#define H_AESKEY   "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2A"
#define H_SECRET   "s3cr3t-suite-secret-value-0001"
#define H_PROVIDER "wwtestprovider01"
#define H_MASTER_HEX                                                           \
    "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
#define H_INDEX_HEX                                                            \
    "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

struct harness {
    char dir[256];
    char redis_sock[320];
    char conf[320];
    char log[320];
    pid_t redis_pid;
    pid_t broker_pid;
    int cb_port;
    int int_port;
};

/* Make the temp dir and start redis-server; 0 on success. */
int h_setup(struct harness *h);
/* Stop everything and remove the temp dir. */
void h_teardown(struct harness *h);
/* (Re)start or stop only the redis-server. */
int h_redis_start(struct harness *h);
void h_redis_stop(struct harness *h);
/* Write broker.conf; embedded nonzero leaves `redis` empty. extra is
 * appended to [broker] (may be NULL). */
int h_write_conf(struct harness *h, int embedded, const char *extra);
/* Same, to another file path and fresh ports (a second instance). */
int h_write_conf_to(struct harness *h, const char *path, int embedded,
                    const char *extra);
/* Start another broker with conf; returns its pid (0 on failure) without
 * waiting for readiness; its stderr goes to logpath. */
pid_t h_spawn_broker(const char *conf, const char *logpath);
/* How many times slower the broker runs than natively (WB_TEST_SLOW,
 * 1..100, default 1: set under valgrind); deadlines that wait on the
 * broker may scale by it. */
long h_slow(void);
/* Start bin/wecom-broker -c conf and wait until /readyz says ready. */
int h_broker_start(struct harness *h);
/* Send sig and wait for exit; returns the exit status or -1. */
int h_broker_stop(struct harness *h, int sig);

/* HTTP request; *body owned (free), may be NULL. Returns status or -1. */
long h_http(const char *method, const char *url, const char *data, size_t len,
            char **body);
/* h_http over https:// with the server's certificate checked against the
 * PEM file cainfo (name and chain); cainfo NULL checks nothing. Returns
 * -1 when the handshake or the check fails. */
long h_https(const char *method, const char *url, const char *data, size_t len,
             const char *cainfo, char **body);
/* "https://127.0.0.1:PORT" + path for the callback listener. */
char *h_cb_url_tls(const struct harness *h, const char *path_and_query);
/* A loopback TCP port free right now. */
int h_free_port(void);
/* Size of a file (0 when missing): an offset for h_log_wait. */
size_t h_file_size(const char *path);
/* Poll until needle appears in the file past byte from, or ms pass;
 * returns 1 when it did. */
int h_log_wait(const char *path, size_t from, const char *needle, long ms);

/* "http://127.0.0.1:PORT" + path for the callback / internal listener. */
char *h_cb_url(const struct harness *h, const char *path_and_query);
char *h_int_url(const struct harness *h, const char *path_and_query);

/* A synchronous Redis connection to the test server (redisFree it). */
redisContext *h_redis(const struct harness *h);
/* A Redis command (hiredis format) on a fresh connection: an integer
 * reply's value, an array reply's length, else -1. */
long long h_redis_int(const struct harness *h, const char *fmt, ...);
/* Every key and its DUMP, sorted, as one string (free). */
char *h_snapshot(const struct harness *h);
/* Run a program, capture stdout and stderr into *out (free; may be NULL);
 * returns the exit status. argv[0] is a path relative to the repository root.
 */
int h_run(const char *const argv[], char **out);
/* Read the whole file (free). */
char *h_slurp(const char *path);
/* Poll until fn(arg) is nonzero or ms pass; returns the last result. */
int h_wait(int (*fn)(void *), void *arg, long ms);
/* Milliseconds since an arbitrary start. */
long h_now_ms(void);

/* Start argv (argv[0] relative to the repository root) in the background,
 * stdout and stderr appended to logpath; returns its pid or 0. */
pid_t h_spawn(const char *const argv[], const char *logpath);
/* Send sig to pid and reap it (SIGKILL after 30 s); returns the exit
 * status, 128 + signal, or -1. */
int h_stop(pid_t pid, int sig);
/* Start bin/mock-wecom serve on 127.0.0.1, port 0, with extra arguments
 * (NULL-terminated, may be NULL); its port file and log go under dir.
 * Waits until it answers; returns its pid and *port, or 0. */
pid_t h_mock_start(const char *dir, const char *const extra[], int *port);

/* GET url without following redirects (a '#fragment' is not sent); *body
 * (free, may be NULL) and *location (free; NULL when the reply has no
 * Location header). Returns the status or -1. */
long h_http_loc(const char *url, char **body, char **location);

/* (Re)start redis-server like h_redis_start but with AOF on (appendfsync
 * everysec, as the embedded Redis runs), loading the AOF an earlier such
 * run (or CONFIG SET appendonly yes) left in the same directory: a
 * SIGKILL of the server then loses nothing it answered. */
int h_redis_start_aof(struct harness *h);

/* A TCP relay on 127.0.0.1 run by threads of the test process: each
 * connection to its port is forwarded to 127.0.0.1:target. It can record
 * the bytes both ways (to find what a client sent and received) and
 * trickle the replies to requests whose first line contains a string. */
struct h_relay;
/* Start it; its port into *port. NULL on failure. */
struct h_relay *h_relay_start(int target, int *port);
/* Stop it: close every connection, join the threads, free. */
void h_relay_stop(struct h_relay *r);
/* The next count replies to requests whose first line contains match
 * arrive bytes at a time every interval_ms (count 0 turns it off). */
void h_relay_trickle(struct h_relay *r, const char *match, int count,
                     size_t bytes, long interval_ms);
/* Start (on nonzero) or stop recording. */
void h_relay_record(struct h_relay *r, int on);
/* Everything recorded so far, both directions (free). */
char *h_relay_recorded(struct h_relay *r);

#endif /* HARNESS_H */
