/*
 * Integration tests' client of the broker's HTTP side as a service (or a
 * browser) sees it: one reply with its status, body, JSON, Location and
 * the broker's filter headers, and the errcode assertion the suites share.
 */
#ifndef SVCCLIENT_H
#define SVCCLIENT_H

#include <stddef.h>

#include <curl/curl.h>
#include <jansson.h>

struct sc_resp {
    long status; /* -1 when no reply came */
    char *body;  /* NUL-terminated, NULL when empty; owned */
    size_t len;
    char *loc;              /* the Location header, NULL when none; owned */
    long stripped, dropped; /* X-Broker-Stripped / -Dropped, -1 when absent */
    json_t *json;           /* the body parsed, NULL when not JSON; owned */
};

/* An empty reply (status -1). */
void sc_resp_init(struct sc_resp *r);
/* Free what r holds and empty it. */
void sc_resp_free(struct sc_resp *r);
/* Parse r->body into r->json (after a transfer of sc_easy's handle). */
void sc_resp_parse(struct sc_resp *r);
/* A handle for METHOD url (a '#fragment' is not sent, redirects are not
 * followed) with body (blen bytes; NULL: none) from the local address src
 * (NULL: any), writing into r, which is emptied first. The caller performs
 * and cleans it up (or sc_perform). */
CURL *sc_easy(struct sc_resp *r, const char *method, const char *url,
              const char *body, size_t blen, const char *src);
/* After c's transfer (a multi handle's, say): r->status from c, the body
 * parsed; c is left to the caller. */
void sc_resp_done(CURL *c, struct sc_resp *r);
/* Perform c, set r->status, clean c up and parse the body. */
void sc_perform(CURL *c, struct sc_resp *r);
/* One request to url from src with one extra header hdr (both may be
 * NULL); r filled (sc_resp_free it). */
void sc_fetch(struct sc_resp *r, const char *method, const char *url,
              const char *body, const char *src, const char *hdr);
/* One request to http://127.0.0.1:PORT + the formatted path and query. */
void sc_call(struct sc_resp *r, int port, const char *method, const char *body,
             const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The reply's errcode, -9999 when it has none. */
long sc_ecode(const struct sc_resp *r);

/* Assert HTTP status and errcode, printing the reply when they differ. */
#define SC_EXPECT(r, st, code)                                                 \
    do {                                                                       \
        if ((r)->status != (st) || sc_ecode(r) != (code))                      \
            fprintf(stderr, "# %s:%d: want %d/%ld, got %ld: %.300s\n",         \
                    __FILE__, __LINE__, (int)(st), (long)(code), (r)->status,  \
                    (r)->body ? (r)->body : "(no body)");                      \
        assert_int_equal((r)->status, (st));                                   \
        assert_int_equal(sc_ecode(r), (code));                                 \
    } while (0)

#endif
