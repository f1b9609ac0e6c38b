/*
 * Integration tests' client of the WeCom simulator's control API
 * (/__mock/...) and small JSON helpers shared by the suites.
 */
#ifndef SIMCLIENT_H
#define SIMCLIENT_H

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
/* o[k] as a string, "" when absent or not a string; borrowed from o. */
const char *h_str(const json_t *o, const char *k);
/* A WeCom TimeStamp strictly above the previous one: callbacks with one
 * content and one second would be deduplicated. */
long h_next_ts(void);

#endif
