/*
 * Integration-test harness (see harness.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
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
               h->redis_sock, "--unixsocketperm", "700", "--dir", dir,
               "--save", "", "--appendonly", "no", (char *)NULL);
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

        dup2(fd, 2);
        execl("bin/wecom-broker", "wecom-broker", "-c", conf, (char *)NULL);
        _exit(127);
    }
    return pid;
}

int
h_broker_start(struct harness *h)
{
    pid_t pid = h_spawn_broker(h->conf, h->log);

    if (pid == 0)
        return -1;
    h->broker_pid = pid;
    return h_wait(broker_ready, h, 20000) ? 0 : -1;
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
