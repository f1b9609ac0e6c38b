/*
 * Integration-test harness (see harness.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <stdint.h>

#include <curl/curl.h>

#include "harness.h"

long
h_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
h_wait(int (*fn)(void *), void *arg, long ms)
{
    long end = h_now_ms() + ms;
    int r;

    while (!(r = fn(arg)) && h_now_ms() < end)
        usleep(20000);
    return r;
}

static int
free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int
redis_answers(void *arg)
{
    struct harness *h = arg;
    redisContext *c = h_redis(h);
    redisReply *r;
    int ok = 0;

    if (c == NULL)
        return 0;
    r = redisCommand(c, "PING");
    ok = r != NULL && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

int
h_redis_start(struct harness *h)
{
    char dir[300];
    pid_t pid;

    snprintf(dir, sizeof(dir), "%s/redis", h->dir);
    mkdir(dir, 0700);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);

        dup2(fd, 1);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket",
               h->redis_sock, "--unixsocketperm", "700", "--dir", dir, "--save",
               "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    h->redis_pid = pid;
    return h_wait(redis_answers, h, 10000) ? 0 : -1;
}

void
h_redis_stop(struct harness *h)
{
    if (h->redis_pid > 0) {
        kill(h->redis_pid, SIGKILL);
        waitpid(h->redis_pid, NULL, 0);
        h->redis_pid = 0;
    }
}

int
h_setup(struct harness *h)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->dir, sizeof(h->dir), "/tmp/wbtest.XXXXXX");
    if (mkdtemp(h->dir) == NULL)
        return -1;
    snprintf(h->redis_sock, sizeof(h->redis_sock), "%s/redis.sock", h->dir);
    snprintf(h->conf, sizeof(h->conf), "%s/broker.conf", h->dir);
    snprintf(h->log, sizeof(h->log), "%s/broker.log", h->dir);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return h_redis_start(h);
}

static void
rm_rf(const char *path)
{
    struct dirent *e;
    struct stat st;
    char sub[1024];
    DIR *d;

    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode) && (d = opendir(path)) != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

void
h_teardown(struct harness *h)
{
    if (h->broker_pid > 0)
        h_broker_stop(h, SIGKILL);
    h_redis_stop(h);
    if (getenv("KEEP_TEST_DIR") == NULL && h->dir[0] != '\0')
        rm_rf(h->dir);
    curl_global_cleanup();
}

int
h_write_conf(struct harness *h, int embedded, const char *extra)
{
    return h_write_conf_to(h, h->conf, embedded, extra);
}

int
h_write_conf_to(struct harness *h, const char *conf, int embedded,
                const char *extra)
{
    char path[400], cwd[300];
    int own_scopes = extra != NULL && strstr(extra, "scopes_dir") != NULL;
    FILE *f;

    if (!embedded) {
        /* an external Redis needs the key files to exist (shared by every
         * instance); embedded mode generates them */
        snprintf(path, sizeof(path), "%s/var", h->dir);
        mkdir(path, 0700);
        snprintf(path, sizeof(path), "%s/var/master.key", h->dir);
        f = fopen(path, "w");
        if (f == NULL)
            return -1;
        fprintf(f, "1 %s\n", H_MASTER_HEX);
        fclose(f);
        chmod(path, 0600);
        snprintf(path, sizeof(path), "%s/var/index.key", h->dir);
        f = fopen(path, "w");
        if (f == NULL)
            return -1;
        fprintf(f, "%s\n", H_INDEX_HEX);
        fclose(f);
        chmod(path, 0600);
    }
    /* tests run from the repository root, where scopes/ lives */
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return -1;
    f = fopen(conf, "w");
    if (f == NULL)
        return -1;
    h->cb_port = free_port();
    h->int_port = free_port();
    fprintf(f,
            "[broker]\n"
            "callback_listen = 127.0.0.1:%d\n"
            "internal_listen = 127.0.0.1:%d\n"
            "redis = %s%s\n"
            "state_dir = ./var\n"
            "%s%s%s"
            "log_level = debug\n"
            "log_format = text\n"
            "%s\n"
            "[suite " H_SUITE "]\n"
            "token = " H_TOKEN "\n"
            "encoding_aes_key = " H_AESKEY "\n"
            "secret = " H_SECRET "\n"
            "provider_corpid = " H_PROVIDER "\n",
            h->cb_port, h->int_port, embedded ? "" : "unix://",
            embedded ? "" : h->redis_sock,
            /* the default scopes unless the caller names its own */
            own_scopes ? "" : "scopes_dir = ", own_scopes ? "" : cwd,
            own_scopes ? "" : "/scopes\n", extra ? extra : "");
    return fclose(f) == 0 ? 0 : -1;
}

static int
broker_ready(void *arg)
{
    struct harness *h = arg;
    char *url = h_int_url(h, "/readyz"), *body = NULL;
    long st = h_http("GET", url, NULL, 0, &body);

    free(url);
    free(body);
    return st == 200;
}

pid_t
h_spawn_broker(const char *conf, const char *logpath)
{
    pid_t pid = fork();

    if (pid < 0)
        return 0;
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        /* WB_TEST_BROKER_WRAP: a command the broker runs under (make
         * valgrind), words split at spaces */
        const char *wrap = getenv("WB_TEST_BROKER_WRAP");
        char *argv[24], *words = wrap ? strdup(wrap) : NULL, *save = NULL;
        char *conf_copy = strdup(conf), prog[] = "bin/wecom-broker",
             copt[] = "-c";
        size_t n = 0;

        dup2(fd, 2);
        for (char *w = words ? strtok_r(words, " ", &save) : NULL;
             w != NULL && n < 19; w = strtok_r(NULL, " ", &save))
            argv[n++] = w;
        argv[n++] = prog;
        argv[n++] = copt;
        argv[n++] = conf_copy;
        argv[n] = NULL;
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

long
h_slow(void)
{
    const char *s = getenv("WB_TEST_SLOW");
    long f = s ? strtol(s, NULL, 10) : 1;

    return f >= 1 && f <= 100 ? f : 1;
}

int
h_broker_start(struct harness *h)
{
    pid_t pid = h_spawn_broker(h->conf, h->log);

    if (pid == 0)
        return -1;
    h->broker_pid = pid;
    return h_wait(broker_ready, h, 20000 * h_slow()) ? 0 : -1;
}

int
h_broker_stop(struct harness *h, int sig)
{
    int status, i;

    if (h->broker_pid <= 0)
        return -1;
    kill(h->broker_pid, sig);
    for (i = 0; i < 1500; i++) {
        if (waitpid(h->broker_pid, &status, WNOHANG) == h->broker_pid)
            break;
        usleep(20000);
    }
    if (i == 1500) {
        kill(h->broker_pid, SIGKILL);
        waitpid(h->broker_pid, &status, 0);
    }
    h->broker_pid = 0;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

struct sink {
    char *buf;
    size_t len;
    size_t cap;
};

/* Grows geometrically: bodies of tens of megabytes arrive in small
 * chunks. */
static size_t
sink_write(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t need = s->len + size * n + 1, ncap = s->cap ? s->cap : 4096;
    char *nb;

    while (ncap < need)
        ncap *= 2;
    if (ncap != s->cap) {
        nb = realloc(s->buf, ncap);
        if (nb == NULL)
            return 0;
        s->buf = nb;
        s->cap = ncap;
    }
    memcpy(s->buf + s->len, p, size * n);
    s->len += size * n;
    s->buf[s->len] = '\0';
    return size * n;
}

static long http_do(const char *method, const char *url, const char *data,
                    size_t len, int tls, const char *cainfo, char **body);

long
h_http(const char *method, const char *url, const char *data, size_t len,
       char **body)
{
    return http_do(method, url, data, len, 0, NULL, body);
}

long
h_https(const char *method, const char *url, const char *data, size_t len,
        const char *cainfo, char **body)
{
    return http_do(method, url, data, len, 1, cainfo, body);
}

static long
http_do(const char *method, const char *url, const char *data, size_t len,
        int tls, const char *cainfo, char **body)
{
    CURL *c = curl_easy_init();
    struct sink s = {NULL, 0, 0};
    long status = -1;

    if (c == NULL)
        return -1;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    /* send the URL exactly as given, '+' and all */
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    if (tls) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, cainfo ? 1L : 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, cainfo ? 2L : 0L);
        if (cainfo != NULL)
            curl_easy_setopt(c, CURLOPT_CAINFO, cainfo);
    }
    if (data != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (body != NULL)
        *body = s.buf ? s.buf : calloc(1, 1);
    else
        free(s.buf);
    return status;
}

static char *
url_for(int port, const char *pq)
{
    size_t n = strlen(pq) + 64;
    char *u = malloc(n);

    if (u != NULL)
        snprintf(u, n, "http://127.0.0.1:%d%s", port, pq);
    return u;
}

char *
h_cb_url(const struct harness *h, const char *pq)
{
    return url_for(h->cb_port, pq);
}

char *
h_cb_url_tls(const struct harness *h, const char *pq)
{
    size_t n = strlen(pq) + 64;
    char *u = malloc(n);

    if (u != NULL)
        snprintf(u, n, "https://127.0.0.1:%d%s", h->cb_port, pq);
    return u;
}

int
h_free_port(void)
{
    return free_port();
}

size_t
h_file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

struct log_wait {
    const char *path;
    size_t from;
    const char *needle;
};

static int
log_has(void *arg)
{
    struct log_wait *w = arg;
    char *txt = h_slurp(w->path);
    int found = strlen(txt) > w->from && strstr(txt + w->from, w->needle);

    free(txt);
    return found;
}

int
h_log_wait(const char *path, size_t from, const char *needle, long ms)
{
    struct log_wait w = {path, from, needle};

    return h_wait(log_has, &w, ms);
}

char *
h_int_url(const struct harness *h, const char *pq)
{
    return url_for(h->int_port, pq);
}

redisContext *
h_redis(const struct harness *h)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectUnixWithTimeout(h->redis_sock, tv);

    if (c != NULL && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

long long
h_redis_int(const struct harness *h, const char *fmt, ...)
{
    redisContext *c = h_redis(h);
    redisReply *r;
    va_list ap;
    long long v = -1;

    if (c == NULL)
        return -1;
    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r != NULL && r->type == REDIS_REPLY_ARRAY)
        v = (long long)r->elements;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *
h_snapshot(const struct harness *h)
{
    redisContext *c = h_redis(h);
    redisReply *keys, *d;
    char **lines = NULL, *out = NULL;
    size_t i, n = 0, total = 1, o = 0, j;

    if (c == NULL)
        return NULL;
    keys = redisCommand(c, "KEYS *");
    if (keys == NULL || keys->type != REDIS_REPLY_ARRAY)
        goto out;
    lines = calloc(keys->elements + 1, sizeof(*lines));
    for (i = 0; i < keys->elements; i++) {
        const char *k = keys->element[i]->str;
        size_t kl = keys->element[i]->len;

        d = redisCommand(c, "DUMP %b", k, kl);
        if (d == NULL)
            continue;
        /* hex of the dump, so binary values compare as text */
        lines[n] = malloc(kl + 2 + d->len * 2 + 2);
        memcpy(lines[n], k, kl);
        o = kl;
        lines[n][o++] = '=';
        for (j = 0; j < d->len; j++)
            o += (size_t)snprintf(lines[n] + o, 3, "%02x",
                                  (unsigned char)d->str[j]);
        lines[n][o++] = '\n';
        lines[n][o] = '\0';
        total += o;
        n++;
        freeReplyObject(d);
    }
    qsort(lines, n, sizeof(*lines), cmp_str);
    out = malloc(total);
    out[0] = '\0';
    o = 0;
    for (i = 0; i < n; i++) {
        size_t l = strlen(lines[i]);
        memcpy(out + o, lines[i], l + 1);
        o += l;
        free(lines[i]);
    }
out:
    free(lines);
    if (keys)
        freeReplyObject(keys);
    redisFree(c);
    return out;
}

int
h_run(const char *const argv[], char **out)
{
    int fds[2], status;
    struct sink s = {NULL, 0, 0};
    char buf[4096];
    ssize_t r;
    pid_t pid;

    if (pipe(fds) != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        execv(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(fds[1]);
    while ((r = read(fds[0], buf, sizeof(buf))) > 0)
        sink_write(buf, 1, (size_t)r, &s);
    close(fds[0]);
    waitpid(pid, &status, 0);
    if (out != NULL)
        *out = s.buf ? s.buf : calloc(1, 1);
    else
        free(s.buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

char *
h_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    struct sink s = {NULL, 0, 0};
    char buf[4096];
    size_t r;

    if (f == NULL)
        return calloc(1, 1);
    while ((r = fread(buf, 1, sizeof(buf), f)) > 0)
        sink_write(buf, 1, r, &s);
    fclose(f);
    return s.buf ? s.buf : calloc(1, 1);
}

pid_t
h_spawn(const char *const argv[], const char *logpath)
{
    pid_t pid = fork();

    if (pid < 0)
        return 0;
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);

        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    return pid;
}

int
h_stop(pid_t pid, int sig)
{
    int status = 0, i;

    if (pid <= 0)
        return -1;
    kill(pid, sig);
    for (i = 0; i < 1500; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            break;
        usleep(20000);
    }
    if (i == 1500) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

struct mock_wait {
    const char *port_file;
    pid_t pid;
    int port;
};

static int
mock_answers(void *arg)
{
    struct mock_wait *w = arg;
    char *txt, url[64], *body = NULL;
    long st;

    if (waitpid(w->pid, NULL, WNOHANG) == w->pid) {
        w->pid = 0;
        return 1; /* exited: stop waiting */
    }
    txt = h_slurp(w->port_file);
    w->port = (int)strtol(txt, NULL, 10);
    free(txt);
    if (w->port <= 0)
        return 0;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/__mock/corps", w->port);
    st = h_http("GET", url, NULL, 0, &body);
    free(body);
    return st == 200;
}

pid_t
h_mock_start(const char *dir, const char *const extra[], int *port)
{
    static int seq;
    const char *argv[64];
    char pf[400], log[400];
    struct mock_wait w;
    size_t n = 0, i;

    snprintf(pf, sizeof(pf), "%s/mock-%d.port", dir, ++seq);
    snprintf(log, sizeof(log), "%s/mock-%d.log", dir, seq);
    unlink(pf);
    argv[n++] = "bin/mock-wecom";
    argv[n++] = "serve";
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--port-file";
    argv[n++] = pf;
    for (i = 0; extra != NULL && extra[i] != NULL && n < 63; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    memset(&w, 0, sizeof(w));
    w.port_file = pf;
    w.pid = h_spawn(argv, log);
    if (w.pid == 0)
        return 0;
    if (!h_wait(mock_answers, &w, 10000) || w.pid == 0) {
        if (w.pid > 0)
            h_stop(w.pid, SIGKILL);
        return 0;
    }
    *port = w.port;
    return w.pid;
}

struct loc_sink {
    char *loc;
};

/* Keeps the value of a Location header, trimmed of its line end. */
static size_t
loc_header(char *p, size_t size, size_t n, void *arg)
{
    struct loc_sink *l = arg;
    size_t len = size * n, vlen;
    const char *v;

    if (len > 9 && strncasecmp(p, "Location:", 9) == 0) {
        v = p + 9;
        vlen = len - 9;
        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
            vlen--;
        free(l->loc);
        l->loc = strndup(v, vlen);
    }
    return len;
}

long
h_http_loc(const char *url, char **body, char **location)
{
    CURL *c = curl_easy_init();
    struct sink s = {NULL, 0, 0};
    struct loc_sink l = {NULL};
    const char *hash = strchr(url, '#');
    char *u = hash ? strndup(url, (size_t)(hash - url)) : strdup(url);
    long status = -1;

    if (c == NULL || u == NULL) {
        if (c != NULL)
            curl_easy_cleanup(c);
        free(u);
        return -1;
    }
    curl_easy_setopt(c, CURLOPT_URL, u);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, loc_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &l);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    free(u);
    if (body != NULL)
        *body = s.buf ? s.buf : calloc(1, 1);
    else
        free(s.buf);
    if (location != NULL)
        *location = l.loc;
    else
        free(l.loc);
    return status;
}

int
h_redis_start_aof(struct harness *h)
{
    char dir[300];
    pid_t pid;

    snprintf(dir, sizeof(dir), "%s/redis", h->dir);
    mkdir(dir, 0700);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);

        dup2(fd, 1);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket",
               h->redis_sock, "--unixsocketperm", "700", "--dir", dir, "--save",
               "", "--appendonly", "yes", "--appendfsync", "everysec",
               (char *)NULL);
        _exit(127);
    }
    h->redis_pid = pid;
    return h_wait(redis_answers, h, 10000) ? 0 : -1;
}

/*---- A TCP relay (see harness.h) ----*/

struct h_relay {
    int lfd;
    int target;
    pthread_t acceptor;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int nconn;
    char match[128];
    int trickle_left;
    size_t trickle_bytes;
    long trickle_ms;
    int recording;
    struct sink rec;
};

struct relay_conn {
    struct h_relay *r;
    int c;
    int s;
};

static int
send_all(int fd, const char *p, size_t n)
{
    ssize_t w;

    while (n > 0) {
        w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void
relay_note(struct h_relay *r, const char *p, size_t n)
{
    pthread_mutex_lock(&r->mu);
    if (r->recording)
        sink_write((char *)(uintptr_t)p, 1, n, &r->rec);
    pthread_mutex_unlock(&r->mu);
}

/* A chunk from the client that starts a request: "METHOD /..." */
static int
request_start(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && i < 10 && p[i] >= 'A' && p[i] <= 'Z')
        i++;
    return i > 0 && i + 1 < n && p[i] == ' ' && p[i + 1] == '/';
}

/* Whether the first line of the request in p contains the match; takes
 * one use of the trickle when it does. */
static int
relay_take_trickle(struct h_relay *r, const char *p, size_t n)
{
    const char *nl = memchr(p, '\n', n);
    size_t line = nl ? (size_t)(nl - p) : n;
    int yes = 0;

    pthread_mutex_lock(&r->mu);
    if (r->trickle_left > 0 && r->match[0] != '\0' &&
        memmem(p, line, r->match, strlen(r->match)) != NULL) {
        r->trickle_left--;
        yes = 1;
    }
    pthread_mutex_unlock(&r->mu);
    return yes;
}

static int
relay_connect(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void *
relay_conn_run(void *arg)
{
    struct relay_conn *k = arg;
    struct h_relay *r = k->r;
    static __thread char buf[65536];
    struct sink pend = {NULL, 0, 0};
    size_t bytes = 1;
    long interval = 100, next = 0;
    int trickle = 0, sclosed = 0, stop;
    struct pollfd p[2];
    ssize_t n;

    k->s = relay_connect(r->target);
    while (k->s >= 0) {
        p[0].fd = k->c;
        p[0].events = POLLIN;
        p[1].fd = sclosed ? -1 : k->s;
        p[1].events = POLLIN;
        p[0].revents = p[1].revents = 0;
        if (poll(p, 2, pend.len > 0 ? 10 : 100) < 0 && errno != EINTR)
            break;
        pthread_mutex_lock(&r->mu);
        stop = r->stop;
        pthread_mutex_unlock(&r->mu);
        if (stop)
            break;
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            n = read(k->c, buf, sizeof(buf));
            if (n <= 0)
                break;
            if (request_start(buf, (size_t)n)) {
                trickle = relay_take_trickle(r, buf, (size_t)n);
                pthread_mutex_lock(&r->mu);
                bytes = r->trickle_bytes ? r->trickle_bytes : 1;
                interval = r->trickle_ms;
                pthread_mutex_unlock(&r->mu);
            }
            relay_note(r, buf, (size_t)n);
            if (send_all(k->s, buf, (size_t)n) != 0)
                break;
        }
        if (!sclosed && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            n = read(k->s, buf, sizeof(buf));
            if (n <= 0) {
                sclosed = 1;
            } else {
                relay_note(r, buf, (size_t)n);
                if (trickle)
                    sink_write(buf, 1, (size_t)n, &pend);
                else if (send_all(k->c, buf, (size_t)n) != 0)
                    break;
            }
        }
        if (pend.len > 0 && h_now_ms() >= next) {
            size_t m = pend.len < bytes ? pend.len : bytes;

            if (send_all(k->c, pend.buf, m) != 0)
                break;
            memmove(pend.buf, pend.buf + m, pend.len - m);
            pend.len -= m;
            next = h_now_ms() + interval;
        }
        if (sclosed && pend.len == 0)
            break;
    }
    free(pend.buf);
    close(k->c);
    if (k->s >= 0)
        close(k->s);
    pthread_mutex_lock(&r->mu);
    r->nconn--;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    free(k);
    return NULL;
}

static void *
relay_accept_run(void *arg)
{
    struct h_relay *r = arg;
    struct relay_conn *k;
    struct pollfd p;
    pthread_t t;
    int fd, stop;

    for (;;) {
        p.fd = r->lfd;
        p.events = POLLIN;
        p.revents = 0;
        poll(&p, 1, 100);
        pthread_mutex_lock(&r->mu);
        stop = r->stop;
        pthread_mutex_unlock(&r->mu);
        if (stop)
            break;
        if (!(p.revents & POLLIN))
            continue;
        fd = accept(r->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        k = calloc(1, sizeof(*k));
        if (k == NULL) {
            close(fd);
            continue;
        }
        k->r = r;
        k->c = fd;
        k->s = -1;
        pthread_mutex_lock(&r->mu);
        r->nconn++;
        pthread_mutex_unlock(&r->mu);
        if (pthread_create(&t, NULL, relay_conn_run, k) != 0) {
            close(fd);
            free(k);
            pthread_mutex_lock(&r->mu);
            r->nconn--;
            pthread_mutex_unlock(&r->mu);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

struct h_relay *
h_relay_start(int target, int *port)
{
    struct h_relay *r = calloc(1, sizeof(*r));
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int one = 1;

    if (r == NULL)
        return NULL;
    r->target = target;
    r->trickle_ms = 100;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (r->lfd < 0 ||
        setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(r->lfd, 1024) != 0 ||
        getsockname(r->lfd, (struct sockaddr *)&sa, &len) != 0 ||
        pthread_create(&r->acceptor, NULL, relay_accept_run, r) != 0) {
        if (r->lfd >= 0)
            close(r->lfd);
        free(r);
        return NULL;
    }
    *port = ntohs(sa.sin_port);
    return r;
}

void
h_relay_stop(struct h_relay *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->acceptor, NULL);
    pthread_mutex_lock(&r->mu);
    while (r->nconn > 0)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    close(r->lfd);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r->rec.buf);
    free(r);
}

void
h_relay_trickle(struct h_relay *r, const char *match, int count, size_t bytes,
                long interval_ms)
{
    pthread_mutex_lock(&r->mu);
    snprintf(r->match, sizeof(r->match), "%s", match ? match : "");
    r->trickle_left = count;
    r->trickle_bytes = bytes;
    r->trickle_ms = interval_ms;
    pthread_mutex_unlock(&r->mu);
}

void
h_relay_record(struct h_relay *r, int on)
{
    pthread_mutex_lock(&r->mu);
    r->recording = on;
    pthread_mutex_unlock(&r->mu);
}

char *
h_relay_recorded(struct h_relay *r)
{
    char *out;

    pthread_mutex_lock(&r->mu);
    out = malloc(r->rec.len + 1);
    if (out != NULL) {
        if (r->rec.len > 0)
            memcpy(out, r->rec.buf, r->rec.len);
        out[r->rec.len] = '\0';
    }
    pthread_mutex_unlock(&r->mu);
    return out;
}
