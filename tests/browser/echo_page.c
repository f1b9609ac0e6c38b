/*
 * The page a browser flow returns to, for tests/browser/run.sh: any GET
 * on 127.0.0.1:PORT answers a small HTML page whose DOM shows the path and
 * the query string the server received (HTML-escaped), and the URL the
 * browser ended at (filled in by script, so a fragment shows too).
 *
 *   browser_echo --listen PORT [--seconds N]   serve until SIGTERM, SIGINT
 *                                              or N seconds (default 120)
 *   browser_echo --free-ports N                print N loopback ports free
 *                                              right now
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

/* Append s to b escaped for HTML text; nonzero when the buffer failed. */
static int
add_escaped(struct evbuffer *b, const char *s)
{
    const char *e;
    int rc = 0;

    for (; *s != '\0' && rc == 0; s++) {
        switch (*s) {
        case '<':
            e = "&lt;";
            break;
        case '>':
            e = "&gt;";
            break;
        case '&':
            e = "&amp;";
            break;
        case '"':
            e = "&quot;";
            break;
        case '\'':
            e = "&#39;";
            break;
        default:
            rc = evbuffer_add(b, s, 1);
            continue;
        }
        rc = evbuffer_add(b, e, strlen(e));
    }
    return rc;
}

static void
on_request(struct evhttp_request *req, void *arg)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    const char *query = u ? evhttp_uri_get_query(u) : NULL;
    struct evbuffer *b = evbuffer_new();

    (void)arg;
    if (path == NULL)
        path = "";
    if (query == NULL)
        query = "";
    fprintf(stderr, "browser_echo: GET %s?%s\n", path, query);
    if (b == NULL ||
        evbuffer_add_printf(b, "<!doctype html><meta charset=utf-8>"
                               "<title>returned</title><h1>returned</h1>"
                               "<pre id=path>") < 0 ||
        add_escaped(b, path) ||
        evbuffer_add_printf(b, "</pre>\n<pre id=query>") < 0 ||
        add_escaped(b, query) ||
        evbuffer_add_printf(
            b, "</pre>\n<pre id=href></pre>\n<script>"
               "document.getElementById('href').textContent=location.href"
               "</script>\n") < 0) {
        evhttp_send_error(req, 500, NULL);
    } else {
        evhttp_add_header(evhttp_request_get_output_headers(req),
                          "Content-Type", "text/html; charset=utf-8");
        evhttp_send_reply(req, 200, "OK", b);
    }
    if (b != NULL)
        evbuffer_free(b);
}

static void
on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopexit(arg, NULL);
}

static int
free_ports(long n)
{
    struct sockaddr_in sa;
    socklen_t len;
    int fds[64], i, rc = 0;

    if (n < 1 || n > 64)
        return 2;
    for (i = 0; i < n; i++) {
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(sa);
        /* kept open until all are chosen, so the n ports differ */
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&sa, len) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&sa, &len) != 0) {
            fprintf(stderr, "browser_echo: %s\n", strerror(errno));
            rc = 1;
            n = i + 1;
            break;
        }
        printf("%d\n", ntohs(sa.sin_port));
    }
    for (i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return rc;
}

static long
number(const char *s)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    return errno != 0 || end == s || *end != '\0' ? -1 : v;
}

static int
usage(void)
{
    fprintf(stderr, "usage: browser_echo --listen PORT [--seconds N]\n"
                    "       browser_echo --free-ports N\n");
    return 2;
}

int
main(int argc, char **argv)
{
    struct event_base *base = NULL;
    struct evhttp *http = NULL;
    struct event *sterm = NULL, *sint = NULL, *timer = NULL;
    struct timeval tv = {120, 0};
    long port = -1, secs = 120;
    int i, rc = 1;

    if (argc == 3 && strcmp(argv[1], "--free-ports") == 0)
        return free_ports(number(argv[2]));
    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--listen") == 0)
            port = number(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            secs = number(argv[i + 1]);
        else
            return usage();
    }
    if (i != argc || port < 1 || port > 65535 || secs < 1)
        return usage();
    tv.tv_sec = secs;
    base = event_base_new();
    http = base ? evhttp_new(base) : NULL;
    if (http == NULL)
        goto out;
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET);
    evhttp_set_gencb(http, on_request, NULL);
    if (evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)port) != 0) {
        fprintf(stderr, "browser_echo: cannot listen on 127.0.0.1:%ld\n", port);
        goto out;
    }
    sterm = evsignal_new(base, SIGTERM, on_stop, base);
    sint = evsignal_new(base, SIGINT, on_stop, base);
    timer = evtimer_new(base, on_stop, base);
    if (sterm == NULL || sint == NULL || timer == NULL ||
        evsignal_add(sterm, NULL) || evsignal_add(sint, NULL) ||
        evtimer_add(timer, &tv))
        goto out;
    fprintf(stderr, "browser_echo: listening on 127.0.0.1:%ld\n", port);
    rc = event_base_dispatch(base) < 0;
out:
    if (timer != NULL)
        event_free(timer);
    if (sint != NULL)
        event_free(sint);
    if (sterm != NULL)
        event_free(sterm);
    if (http != NULL)
        evhttp_free(http);
    if (base != NULL)
        event_base_free(base);
    return rc;
}
