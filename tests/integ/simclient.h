/*
 * Integration tests' client of the WeCom simulator's control API
 * (/__mock/...) and small JSON helpers shared by the suites.
 */
#ifndef SIMCLIENT_H
#define SIMCLIENT_H

#include <stddef.h>

#include <jansson.h>

/* METHOD http://127.0.0.1:PORT/PATH with BODY (may be NULL); the reply
 * body into *out (caller frees); returns the HTTP status or -1. */
long h_sim(int port, const char *method, const char *path, const char *body,
           char **out);
/* As h_sim, asserting 200 and a JSON reply; caller owns the result. */
json_t *h_sim_json(int port, const char *method, const char *path,
                   const char *body);
/* As h_sim, asserting 200. */
void h_sim_ok(int port, const char *method, const char *path, const char *body);
/* METHOD http://127.0.0.1:PORT + the formatted path; the reply body into
 * *out (caller frees); returns the HTTP status or -1. */
long h_rawf(int port, const char *method, const char *body, char **out,
            const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The same for a reply that must be JSON without duplicate keys (the test
 * fails otherwise); the HTTP status into *status (may be NULL); caller
 * owns the result. */
json_t *h_jcall(int port, const char *method, const char *body, long *status,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* j's errcode, failing the test when it has none. */
long h_errcode(const json_t *j);
/* j[key], failing the test when it is not a string; borrowed from j. */
const char *h_need_str(const json_t *j, const char *key);
/* Copy src into dst (cap bytes), failing the test when it does not fit. */
void h_copy_str(char *dst, size_t cap, const char *src);
/* o[k] as a string, "" when absent or not a string; borrowed from o. */
const char *h_str(const json_t *o, const char *k);
/* A WeCom TimeStamp strictly above the previous one: callbacks with one
 * content and one second would be deduplicated. */
long h_next_ts(void);

#endif
