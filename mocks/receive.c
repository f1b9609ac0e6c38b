/*
 * mock-wecom receive (see receive.h). One POST is one delivery:
 *   query msg_signature, timestamp, nonce (each exactly once);
 *   body <xml><ToUserName/><Encrypt/><AgentID/></xml>;
 *   signature = SHA-1 of the sorted token, timestamp, nonce, Encrypt;
 *   Encrypt decrypted with the EncodingAESKey, its receiveid the suite.
 * A verified event is printed (its X-Broker-Event-Id, then the decrypted
 * XML on one line) and answered `success`; anything else is answered
 * 400/403 with the reason, printed on stderr, and never `success`.
 */
#include <errno.h>
#include <netinet/in.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "broker.h"
#include "query.h"
#include "receive.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define RCV_MAX_BODY 65536

struct receiver {
    struct event_base *base;
    struct wecom_crypto *crypto;
    const char *suite;
    long count; /* stop after this many events; 0: never */
    int raw;    /* also print the query and the Encrypt as received */
    long got;
};

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: mock-wecom receive --token T --aes-key K --suite S\n"
            "                          [--port P] [--port-file FILE]\n"
            "                          [--count N] [--raw]\n"
            "\n"
            "A service's event receiver: listens on 127.0.0.1:P (0 picks a\n"
            "port, the default), verifies each POST as WeCom's callback\n"
            "rules say (msg_signature over the sorted token, timestamp,\n"
            "nonce and Encrypt; AES-256-CBC with the EncodingAESKey; the\n"
            "receiveid must be S), prints the X-Broker-Event-Id and the\n"
            "decrypted XML of each, and answers `success`. Anything that\n"
            "fails a check is answered 400 or 403 with the reason.\n"
            "--raw also prints, before each event, the query (\"query ...\")\n"
            "and the Encrypt text (\"encrypt ...\") as received.\n"
            "T and K are what `brokerctl service deliver` printed. Exits 0\n"
            "after N events (--count) or on SIGTERM/SIGINT, 1 on a runtime\n"
            "failure, 2 on usage errors.\n");
}

static void
refuse(struct evhttp_request *req, int status, const char *why)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);

    fprintf(stderr, "mock-wecom receive: refused: %s\n", why);
    evbuffer_add_printf(b, "%s\n", why);
    evhttp_send_reply(req, status, status == 403 ? "Forbidden" : "Bad Request",
                      NULL);
}

/* One line: XML text with newlines folded, so each event is two lines. */
static void
print_event(const char *id, const char *msg, size_t len)
{
    size_t i;

    printf("event %s\n", id != NULL ? id : "-");
    for (i = 0; i < len; i++)
        putchar(msg[i] == '\n' || msg[i] == '\r' ? ' ' : msg[i]);
    putchar('\n');
    fflush(stdout);
}

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct receiver *r = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    struct query *q = NULL;
    struct wecom_xml *x = NULL;
    struct brk_errinfo info;
    const char *sig, *ts, *nonce, *enc,
        *names[] = {"msg_signature", "timestamp", "nonce"};
    const char *accepted[1];
    char *body = NULL, *msg = NULL, *rid = NULL;
    size_t len = evbuffer_get_length(in), msglen = 0, which, i;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        refuse(req, 400, "POST only");
        goto out;
    }
    if (query_parse(evhttp_uri_get_query(uri), 16, &q) != BRK_OK) {
        refuse(req, 400, "malformed query");
        goto out;
    }
    for (i = 0; i < 3; i++)
        if (query_count(q, names[i]) != 1) {
            refuse(req, 400, "msg_signature, timestamp, nonce: once each");
            goto out;
        }
    sig = query_get(q, "msg_signature");
    ts = query_get(q, "timestamp");
    nonce = query_get(q, "nonce");
    body = len > 0 && len <= RCV_MAX_BODY ? brk_malloc(len) : NULL;
    if (body == NULL || evbuffer_copyout(in, body, len) != (ev_ssize_t)len ||
        wecom_xml_parse(body, len, NULL, &x, &info) != BRK_OK ||
        (enc = wecom_xml_get(x, "Encrypt")) == NULL) {
        refuse(req, 400, "body: no <xml> with an Encrypt");
        goto out;
    }
    if (wecom_crypto_verify(r->crypto, sig, ts, nonce, enc) != BRK_OK) {
        refuse(req, 403, "bad msg_signature");
        goto out;
    }
    if (wecom_crypto_decrypt(r->crypto, enc, strlen(enc), &msg, &msglen,
                             &rid) != BRK_OK) {
        refuse(req, 400, "Encrypt does not decrypt with this key");
        goto out;
    }
    accepted[0] = r->suite;
    if (wecom_crypto_check_receiveid(rid, accepted, 1, &which) != BRK_OK) {
        refuse(req, 403, "receiveid is not the suite");
        goto out;
    }
    if (r->raw)
        printf("query %s\nencrypt %s\n", evhttp_uri_get_query(uri), enc);
    print_event(evhttp_find_header(evhttp_request_get_input_headers(req),
                                   "X-Broker-Event-Id"),
                msg, msglen);
    evbuffer_add(evhttp_request_get_output_buffer(req), "success", 7);
    evhttp_send_reply(req, 200, "OK", NULL);
    if (r->count > 0 && ++r->got >= r->count)
        event_base_loopexit(r->base, NULL);
out:
    if (msg != NULL)
        brk_free_secret(msg, msglen);
    brk_free(rid);
    wecom_xml_free(x);
    brk_free(body);
    query_free(q);
}

static void
on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopexit(arg, NULL);
}

static int
parse_long(const char *s, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Entry point of `mock-wecom receive`. */
int
receive_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"token", required_argument, NULL, 't'},
        {"aes-key", required_argument, NULL, 'k'},
        {"suite", required_argument, NULL, 's'},
        {"port", required_argument, NULL, 'p'},
        {"port-file", required_argument, NULL, 'P'},
        {"count", required_argument, NULL, 'n'},
        {"raw", no_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct receiver r = {0};
    const char *token = NULL, *key = NULL, *port_file = NULL;
    struct evhttp *http = NULL;
    struct evhttp_bound_socket *bs;
    struct event *sigs[2] = {NULL, NULL};
    struct sockaddr_storage ss;
    ev_socklen_t sl = sizeof(ss);
    long port = 0;
    int c, rc = 1, bound;
    size_t i;
    FILE *f;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            token = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 's':
            r.suite = optarg;
            break;
        case 'p':
            if (parse_long(optarg, 65535, &port) != 0) {
                fprintf(stderr, "mock-wecom: --port wants 0..65535\n");
                return 2;
            }
            break;
        case 'P':
            port_file = optarg;
            break;
        case 'n':
            if (parse_long(optarg, 1000000, &r.count) != 0) {
                fprintf(stderr, "mock-wecom: --count wants a number\n");
                return 2;
            }
            break;
        case 'r':
            r.raw = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || token == NULL || key == NULL || r.suite == NULL ||
        r.suite[0] == '\0') {
        usage(stderr);
        return 2;
    }
    if (wecom_crypto_new(token, key, &r.crypto) != BRK_OK) {
        fprintf(stderr, "mock-wecom: --aes-key wants a 43-character "
                        "EncodingAESKey, --token a callback token\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    r.base = event_base_new();
    http = r.base ? evhttp_new(r.base) : NULL;
    if (http == NULL)
        goto out;
    evhttp_set_max_body_size(http, RCV_MAX_BODY);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(http, on_request, &r);
    bs = evhttp_bind_socket_with_handle(http, "127.0.0.1", (ev_uint16_t)port);
    if (bs == NULL) {
        fprintf(stderr, "mock-wecom: cannot listen on 127.0.0.1:%ld: %s\n",
                port, strerror(errno));
        goto out;
    }
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss,
                    &sl) != 0)
        goto out;
    bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (port_file != NULL) {
        f = fopen(port_file, "w");
        if (f == NULL || fprintf(f, "%d\n", bound) < 0 || fclose(f) != 0) {
            fprintf(stderr, "mock-wecom: cannot write %s\n", port_file);
            goto out;
        }
    }
    sigs[0] = evsignal_new(r.base, SIGTERM, on_signal, r.base);
    sigs[1] = evsignal_new(r.base, SIGINT, on_signal, r.base);
    for (i = 0; i < 2; i++)
        if (sigs[i] == NULL || event_add(sigs[i], NULL) != 0)
            goto out;
    printf("mock-wecom receiving on 127.0.0.1:%d\n", bound);
    fflush(stdout);
    event_base_dispatch(r.base);
    rc = 0;
out:
    for (i = 0; i < 2; i++)
        if (sigs[i] != NULL)
            event_free(sigs[i]);
    if (http != NULL)
        evhttp_free(http);
    if (r.base != NULL)
        event_base_free(r.base);
    wecom_crypto_free(r.crypto);
    return rc;
}
