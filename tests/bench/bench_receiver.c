/*
 * A service's event receiver for `make bench`: answers every POST with
 * `success` (what a healthy service's WeCom callback code does once it
 * has the event) and GET /count with the number of POSTs received.
 *
 *   bench_receiver PORT
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

static unsigned long Received;

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct evbuffer *out = evbuffer_new();

    (void)arg;
    if (out == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
        Received++;
        evbuffer_add(out, "success", 7);
    } else {
        evbuffer_add_printf(out, "%lu\n", Received);
    }
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

int
main(int argc, char **argv)
{
    struct event_base *base;
    struct evhttp *http;
    long port;

    if (argc != 2 || (port = strtol(argv[1], NULL, 10)) <= 0 || port > 65535) {
        fprintf(stderr, "usage: bench_receiver PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    http = base ? evhttp_new(base) : NULL;
    if (http == NULL ||
        evhttp_bind_socket(http, "127.0.0.1", (unsigned short)port) != 0) {
        fprintf(stderr, "bench_receiver: cannot listen on port %ld\n", port);
        return 1;
    }
    evhttp_set_gencb(http, on_request, NULL);
    event_base_dispatch(base);
    evhttp_free(http);
    event_base_free(base);
    return 0;
}
