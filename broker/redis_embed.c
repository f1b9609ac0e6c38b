/*
 * Embedded redis-server child (see redis_embed.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "redis_embed.h"

struct redis_embed {
    pid_t pid; /* 0 once reaped */
    int lock_fd;
    char sock[256];
};

/* 0 when PING answers PONG, -1 otherwise (refused, LOADING, ...). */
static int
ping(const char *sock)
{
    struct timeval tv = {0, 500000};
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);
    redisReply *r;
    int ok = -1;

    if (c == NULL)
        return -1;
    if (c->err == 0) {
        redisSetTimeout(c, tv);
        r = redisCommand(c, "PING");
        if (r != NULL && r->type == REDIS_REPLY_STATUS &&
            strcmp(r->str, "PONG") == 0)
            ok = 0;
        if (r != NULL)
            freeReplyObject(r);
    }
    redisFree(c);
    return ok;
}

static void
child_exec(const char *dir, const char *sock, const char *logfile, pid_t parent)
{
    const char *argv[] = {"redis-server",
                          "--port",
                          "0",
                          "--unixsocket",
                          sock,
                          "--unixsocketperm",
                          "700",
                          "--dir",
                          dir,
                          "--appendonly",
                          "yes",
                          "--appendfsync",
                          "everysec",
                          "--save",
                          "",
                          "--daemonize",
                          "no",
                          "--logfile",
                          logfile,
                          "--protected-mode",
                          "yes",
                          NULL};
    sigset_t none;

    /* die with the broker, even when it is killed with SIGKILL; SIGTERM
     * lets redis flush its AOF first */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    /* own process group: a terminal's ^C reaches the broker, which then
     * stops Redis after draining, instead of both at once */
    setpgid(0, 0);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    execvp("redis-server", (char *const *)(uintptr_t)argv);
    _exit(127);
}

/*
 * Start the embedded Redis (see redis_embed.h). Returns BRK_OK,
 * BRK_ERR_IO, BRK_ERR_TIMEOUT, BRK_ERR_NOMEM.
 */
enum brk_err
redis_embed_start(const char *state_dir, long wait_ms, struct redis_embed **out,
                  char **url, struct brk_errinfo *info)
{
    struct redis_embed *re = NULL;
    char lockpath[512], logfile[512], urlbuf[300];
    long deadline;
    int status, n;
    pid_t pid, parent;
    enum brk_err err = BRK_ERR_IO;

    re = brk_calloc(1, sizeof(*re));
    if (re == NULL)
        return BRK_ERR_NOMEM;
    re->lock_fd = -1;
    if (mkdir(state_dir, 0700) != 0 && errno != EEXIST) {
        brk_errinfo_set(info, 0, -1, "cannot create state_dir %s: %s",
                        state_dir, strerror(errno));
        goto fail;
    }
    n = snprintf(re->sock, sizeof(re->sock), "%s/redis.sock", state_dir);
    if (n < 0 || (size_t)n >= sizeof(re->sock) - 1 ||
        (size_t)n >= 107 /* sun_path */) {
        brk_errinfo_set(info, 0, -1, "state_dir path too long for a socket");
        goto fail;
    }
    snprintf(lockpath, sizeof(lockpath), "%s/broker.lock", state_dir);
    snprintf(logfile, sizeof(logfile), "%s/redis.log", state_dir);
    re->lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (re->lock_fd < 0) {
        brk_errinfo_set(info, 0, -1, "cannot open %s: %s", lockpath,
                        strerror(errno));
        goto fail;
    }
    if (flock(re->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        brk_errinfo_set(info, 0, -1,
                        "state_dir %s is in use by another broker "
                        "(embedded Redis serves one instance; set `redis` "
                        "to share a Redis)",
                        state_dir);
        goto fail;
    }
    parent = getpid();
    pid = fork();
    if (pid < 0) {
        brk_errinfo_set(info, 0, -1, "fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0)
        child_exec(state_dir, re->sock, logfile, parent);
    re->pid = pid;
    deadline = brk_mono_ms() + wait_ms;
    for (;;) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            re->pid = 0;
            brk_errinfo_set(info, 0, -1,
                            "redis-server exited during start (status %d); "
                            "see %s",
                            WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                            logfile);
            goto fail;
        }
        if (ping(re->sock) == 0)
            break;
        if (brk_mono_ms() > deadline) {
            err = BRK_ERR_TIMEOUT;
            brk_errinfo_set(info, 0, -1,
                            "redis-server did not answer within %ld ms; "
                            "see %s",
                            wait_ms, logfile);
            goto fail;
        }
        usleep(20000);
    }
    snprintf(urlbuf, sizeof(urlbuf), "unix://%s", re->sock);
    *url = brk_strdup(urlbuf);
    if (*url == NULL) {
        err = BRK_ERR_NOMEM;
        goto fail;
    }
    log_info("embedded redis-server started (pid %d, socket %s, AOF "
             "everysec)",
             (int)pid, re->sock);
    *out = re;
    return BRK_OK;
fail:
    redis_embed_stop(re);
    return err;
}

pid_t
redis_embed_pid(const struct redis_embed *re)
{
    return re ? re->pid : 0;
}

void
redis_embed_reaped(struct redis_embed *re)
{
    if (re != NULL)
        re->pid = 0;
}

void
redis_embed_stop(struct redis_embed *re)
{
    int status, i;

    if (re == NULL)
        return;
    if (re->pid > 0) {
        kill(re->pid, SIGTERM);
        /* redis writes the AOF tail on SIGTERM: give it 10 s */
        for (i = 0; i < 500; i++) {
            if (waitpid(re->pid, &status, WNOHANG) == re->pid)
                break;
            usleep(20000);
        }
        if (i == 500) {
            log_warn("embedded redis-server did not stop; killing it");
            kill(re->pid, SIGKILL);
            waitpid(re->pid, &status, 0);
        }
        log_info("embedded redis-server stopped");
    }
    if (re->lock_fd >= 0)
        close(re->lock_fd);
    brk_free(re);
}
