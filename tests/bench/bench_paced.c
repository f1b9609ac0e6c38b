/*
 * A paced HTTP/1.1 load that times every reply, for looking at a tail:
 * CONNS keep-alive connections to 127.0.0.1:PORT, each sending GET PATH,
 * reading the reply whole (Content-Length framing) and waiting PAUSE ms
 * before its next request. Prints every reply slower than SLOW µs as
 * "ms-since-start µs" on stdout, then on stderr the count, the rate, the
 * percentiles and the "late moments": 3 ms windows in which at least half
 * of the connections had a reply slower than SLOW (a stall of the server,
 * or of the host, that every request in flight waited out), not counting
 * the first 100 ms.
 *
 *   bench_paced PORT PATH CONNS PAUSE_MS SECONDS SLOW_US
 *
 * Used for tests/bench/profile.md's last section; not part of make bench's
 * table.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONNS_MAX 1024
#define REPLY_MAX 65536
#define SAMPLES   (1u << 22)
#define WINDOW_MS 3

struct pconn {
    int fd;
    int busy;
    double sent, next; /* µs */
    size_t len;
    char buf[REPLY_MAX];
};

static double
now_us(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* The reply in c->buf is whole: 1, 0 not yet, -1 not one we can frame. */
static int
reply_whole(const struct pconn *c)
{
    const char *end = strstr(c->buf, "\r\n\r\n");
    const char *cl;
    size_t head;

    if (end == NULL)
        return 0;
    cl = strcasestr(c->buf, "\r\ncontent-length:");
    if (cl == NULL || cl > end)
        return -1;
    head = (size_t)(end + 4 - c->buf);
    return c->len >= head + strtoul(cl + 17, NULL, 10);
}

/* argv's number: 0 with *out, or -1 when it is not one whole number. */
static int
num(const char *s, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(s, &end);
    return end == s || *end != '\0' || errno != 0 ? -1 : 0;
}

static int
usage(void)
{
    fprintf(stderr, "usage: bench_paced PORT PATH CONNS PAUSE_MS SECONDS "
                    "SLOW_US\n");
    return 2;
}

int
main(int argc, char **argv)
{
    struct sockaddr_in sin;
    struct epoll_event ev[64];
    struct pconn *cs;
    double *lat, *late_at, pause, slow, secs, t0, end, t, wake, d, v;
    size_t n = 0, nlate = 0, i, j, moments = 0, run;
    char req[2048];
    int port, conns, reqlen, ep, k, to, one = 1;

    if (argc != 7)
        return usage();
    if (num(argv[1], &v) != 0 || v < 1 || v > 65535)
        return usage();
    port = (int)v;
    if (num(argv[3], &v) != 0 || v < 1 || v > CONNS_MAX)
        return usage();
    conns = (int)v;
    if (num(argv[4], &pause) != 0 || pause < 0 || pause > 60000 ||
        num(argv[5], &secs) != 0 || secs <= 0 || secs > 3600 ||
        num(argv[6], &slow) != 0 || slow <= 0 || argv[2][0] != '/')
        return usage();
    pause *= 1000.0;
    reqlen = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n",
                      argv[2]);
    if (reqlen <= 0 || (size_t)reqlen >= sizeof(req))
        return usage();
    cs = calloc((size_t)conns, sizeof(*cs));
    lat = malloc(SAMPLES * sizeof(*lat));
    late_at = malloc(SAMPLES * sizeof(*late_at));
    ep = epoll_create1(0);
    if (cs == NULL || lat == NULL || late_at == NULL || ep < 0) {
        perror("bench_paced");
        return 1;
    }
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    t0 = now_us();
    for (k = 0; k < conns; k++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (unsigned)k};

        cs[k].fd = socket(AF_INET, SOCK_STREAM, 0);
        if (cs[k].fd < 0 ||
            setsockopt(cs[k].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) !=
                0 ||
            connect(cs[k].fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
            epoll_ctl(ep, EPOLL_CTL_ADD, cs[k].fd, &e) != 0) {
            perror("bench_paced: connect");
            return 1;
        }
        /* spread the first requests over one pause */
        cs[k].next = t0 + pause * k / conns;
    }
    t0 = now_us();
    end = t0 + secs * 1e6;
    while ((t = now_us()) < end) {
        wake = end;
        for (k = 0; k < conns; k++) {
            if (!cs[k].busy && cs[k].next <= t) {
                cs[k].sent = now_us();
                if (write(cs[k].fd, req, (size_t)reqlen) != reqlen) {
                    perror("bench_paced: write");
                    return 1;
                }
                cs[k].busy = 1;
                cs[k].len = 0;
            }
            if (!cs[k].busy && cs[k].next < wake)
                wake = cs[k].next;
        }
        to = (int)((wake - now_us()) / 1000.0);
        k = epoll_wait(ep, ev, 64, to > 0 ? to : 0);
        if (k < 0 && errno != EINTR) {
            perror("bench_paced: epoll_wait");
            return 1;
        }
        for (i = 0; k > 0 && i < (size_t)k; i++) {
            struct pconn *c = &cs[ev[i].data.u32];
            ssize_t r = read(c->fd, c->buf + c->len, REPLY_MAX - 1 - c->len);
            int whole;

            if (r <= 0) {
                fprintf(stderr, "bench_paced: the server closed a "
                                "connection\n");
                return 1;
            }
            c->len += (size_t)r;
            c->buf[c->len] = '\0';
            whole = reply_whole(c);
            if (whole < 0 || (whole == 0 && c->len >= REPLY_MAX - 1)) {
                fprintf(stderr,
                        "bench_paced: a reply without "
                        "Content-Length, or over %d bytes\n",
                        REPLY_MAX);
                return 1;
            }
            if (whole == 0)
                continue;
            d = now_us();
            if (n < SAMPLES)
                lat[n++] = d - c->sent;
            if (d - c->sent > slow) {
                printf("%.1f %.0f\n", (d - t0) / 1000.0, d - c->sent);
                /* the first 100 ms open the server's upstream
                 * connections: not a stall */
                if (nlate < SAMPLES && d - t0 >= 100000.0)
                    late_at[nlate++] = (d - t0) / 1000.0;
            }
            c->busy = 0;
            c->next = d + pause;
        }
    }
    if (n == 0) {
        fprintf(stderr, "bench_paced: no reply\n");
        return 1;
    }
    /* late replies in time order: a window holding half the connections'
     * worth is one late moment */
    for (i = 0; i < nlate; i = j) {
        size_t w = (size_t)(late_at[i] / WINDOW_MS);

        for (j = i, run = 0; j < nlate && (size_t)(late_at[j] / WINDOW_MS) == w;
             j++)
            run++;
        if (run * 2 >= (size_t)conns)
            moments++;
    }
    qsort(lat, n, sizeof(*lat), cmp_double);
    fprintf(stderr,
            "replies=%zu rate=%.0f p50=%.0f p90=%.0f p99=%.0f p99.9=%.0f "
            "max=%.0f late_moments=%zu\n",
            n, (double)n / secs, lat[n / 2], lat[n * 9 / 10], lat[n * 99 / 100],
            lat[n * 999 / 1000], lat[n - 1], moments);
    return 0;
}
