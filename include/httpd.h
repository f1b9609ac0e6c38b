/*
 * The broker's HTTP/1.1 server: listeners, connections read and written
 * by the server itself (requests parsed by http1.c), request contexts
 * with ids and timing, the only functions that send replies, limits, and
 * draining for a graceful stop.
 */
#ifndef HTTPD_H
#define HTTPD_H

#include <stddef.h>
#include <time.h>

#include "broker.h"

struct event_base;
struct sockaddr;
struct httpd;
struct httpd_conn;
struct httpd_listener;
/* A TLS server context built from a certificate chain and a key. */
struct httpd_tls;

/* Bytes of "Name: value\r\n" lines a handler may add to one reply. */
#define HTTPD_EXTRA_MAX 4096

/* One request, from dispatch to reply. Borrowed by handlers until they
 * call httpd_reply*, after which it is gone (its memory serves the next
 * request of the connection). */
struct httpd_req {
    struct httpd_conn *conn; /* the connection it came on (private) */
    struct httpd_listener *listener;
    char id[17];       /* random hex request id, in logs and headers */
    const char *route; /* metric label set by the handler (static) */
    struct timespec start;
    /* private: set by the server */
    const char *path, *query; /* NUL-terminated, in the connection's buffer */
    const char *body;         /* in the connection's buffer; NULL if empty */
    size_t body_len;
    int method; /* enum http1_method */
    size_t nextra;
    char extra[HTTPD_EXTRA_MAX]; /* headers added by the handler */
};

/* Called for every request on a listener; must reply exactly once, now or
 * later, through httpd_reply or httpd_reply_text. */
typedef void httpd_handler(struct httpd_req *r, void *arg);

/*
 * Connection limits. Every request must arrive whole (headers and body)
 * within HTTPD_REQUEST_DEADLINE_S of its connection being accepted or of
 * the previous reply on it; otherwise the connection is closed. A
 * listener holds at most a share of the process's descriptors (RLIMIT_NOFILE
 * at listen time): the public one half, any other a quarter, the rest kept
 * for Redis, WeCom calls and files; beyond it, new connections wait in the
 * kernel's backlog. The public listener (the one named
 * HTTPD_PUBLIC_LISTENER) also closes, at once, connections from a client
 * address (IPv4, or the /64 of IPv6) that already holds
 * HTTPD_PER_ADDR_MAX, unless the address is a trusted proxy.
 */
#define HTTPD_REQUEST_DEADLINE_S 10
/* A reply the client does not read within this long closes the
 * connection. */
#define HTTPD_WRITE_DEADLINE_S 30
/* After a final reply (Connection: close, a refusal) the server stops
 * sending (FIN; over TLS close_notify first) and reads what the client
 * still sends, thrown away, so that closing does not reset the
 * connection before the reply is read: at most this long (and 1 MiB), or
 * until the client closes (over TLS: its close_notify or FIN). */
#define HTTPD_LINGER_MS       2000
#define HTTPD_PER_ADDR_MAX    64
#define HTTPD_PUBLIC_LISTENER "callback"
/* Descriptors tracked at most (a larger limit is treated as this). */
#define HTTPD_FD_TABLE_MAX (1 << 20)

struct netaddr_list;

enum brk_err httpd_new(struct event_base *base, struct httpd **out) BRK_WUR;
/*
 * Deadlines other than the defaults above (a request, a blocked reply,
 * the linger after a final reply), in milliseconds; 0 keeps one. They
 * apply to deadlines armed from now on. Cannot fail.
 */
void httpd_set_deadlines(struct httpd *h, long request_ms, long write_ms,
                         long linger_ms);
/* Close every listener and connection. A request a handler still holds
 * keeps its context until the handler answers it (the answer goes
 * nowhere), so cancelled work may still call httpd_reply. */
void httpd_free(struct httpd *h);

/*
 * The trusted proxies (trusted_proxies) for every listener of the process:
 * their connections are not capped per address, since they carry many
 * clients. l is borrowed and must outlive the listeners; NULL: none.
 * Cannot fail.
 */
void httpd_set_trusted_proxies(const struct netaddr_list *l);

/*
 * Listen on "host:port" under a name used in logs and metrics ("callback",
 * "internal"). The server's own body limit is set above max_body
 * (4 * max_body + 4 KiB) so oversized requests still reach the handler,
 * which refuses them itself (logged and counted); past that limit the
 * server answers 413 and closes. Returns BRK_ERR_IO when the address
 * cannot be bound.
 */
enum brk_err httpd_listen(struct httpd *h, const char *name,
                          const char *hostport, size_t max_body,
                          httpd_handler *handler, void *arg) BRK_WUR;

/*
 * n listening sockets on "host:port" in one SO_REUSEPORT group, for n
 * event loops serving one listener (workers = N): the kernel spreads new
 * connections over them. Port 0 picks one free port for the whole group.
 * Only processes of the same user can join a group. fds[0..n) owned,
 * each consumed by httpd_listen_fd. BRK_ERR_CONFIG, BRK_ERR_IO (errno).
 */
enum brk_err httpd_bind_group(const char *hostport, size_t n, int *fds) BRK_WUR;
/*
 * Like httpd_listen on a socket of a group of group sockets (fd consumed
 * on every path): the listener's connection cap is its share.
 */
enum brk_err httpd_listen_fd(struct httpd *h, const char *name, int fd,
                             size_t group, size_t max_body,
                             httpd_handler *handler, void *arg) BRK_WUR;

/* Port actually bound (useful with port 0). */
int httpd_listener_port(const struct httpd *h, const char *name);

/*
 * Build a TLS server context from PEM files: cert_file holds the
 * certificate followed by any intermediates, key_file its private key
 * (unencrypted). TLS 1.2 minimum, no compression, no renegotiation, the
 * server's cipher order. BRK_ERR_CONFIG with info->msg naming the file
 * and OpenSSL's reason; BRK_ERR_NOMEM. Owned: httpd_tls_free.
 */
enum brk_err httpd_tls_load(const char *cert_file, const char *key_file,
                            struct httpd_tls **out,
                            struct brk_errinfo *info) BRK_WUR;
void httpd_tls_free(struct httpd_tls *t);

/*
 * Serve the listener called name over TLS with t (consumed on every
 * path), replacing any previous context: connections accepted from now
 * on use t, open ones keep theirs. Once set, the listener never serves
 * plain HTTP. BRK_ERR_NOTFOUND for an unknown listener.
 */
enum brk_err httpd_set_tls(struct httpd *h, const char *name,
                           struct httpd_tls *t) BRK_WUR;

/* Send a reply with body (copied) and free the request context. */
void httpd_reply(struct httpd_req *r, int status, const char *content_type,
                 const char *body, size_t len);
/* httpd_reply without copying: body (brk_malloc'd, or NULL with len 0)
 * is consumed on every path and freed once written. */
void httpd_reply_take(struct httpd_req *r, int status, const char *content_type,
                      char *body, size_t len);
/* httpd_reply with text/plain and a NUL-terminated body. */
void httpd_reply_text(struct httpd_req *r, int status, const char *body);

/* The request path without the query, borrowed. */
const char *httpd_path(const struct httpd_req *r);
/* The raw query string (not decoded) or NULL, borrowed. */
const char *httpd_raw_query(const struct httpd_req *r);
/* "GET", "POST", ... or "OTHER". */
const char *httpd_method(const struct httpd_req *r);
/* Body length, and a pointer to it (borrowed; NULL if empty). */
size_t httpd_body_len(const struct httpd_req *r);
const char *httpd_body(struct httpd_req *r);

/*
 * The value of the first request header named name (ASCII
 * case-insensitive), NUL-terminated and borrowed until the reply; NULL
 * when there is none. httpd_header_next walks every header of that name
 * in order: *pos starts at 0.
 */
const char *httpd_header(const struct httpd_req *r, const char *name);
const char *httpd_header_next(const struct httpd_req *r, const char *name,
                              size_t *pos);

/*
 * Add "name: value" to r's reply. BRK_ERR_INVAL for a name that is not a
 * token or a value with a control byte (CR, LF, NUL...), BRK_ERR_TOOBIG
 * past HTTPD_EXTRA_MAX; nothing is added then. A fixed header of a few
 * bytes cannot fail: its result may be ignored.
 */
enum brk_err httpd_add_header(struct httpd_req *r, const char *name,
                              const char *value);

/* The client's address (the TCP peer) and its length, borrowed; NULL
 * when the socket has no address to speak of. */
const struct sockaddr *httpd_peer(const struct httpd_req *r, size_t *len);

/* Stop accepting, then call done(arg) once no request is in flight and
 * every connection has closed (one lingering after its final reply
 * within the linger deadline), or after timeout_ms. */
void httpd_drain(struct httpd *h, long timeout_ms, void (*done)(void *),
                 void *arg);
/* Requests currently in flight across listeners. */
unsigned httpd_inflight(const struct httpd *h);

#endif /* HTTPD_H */
