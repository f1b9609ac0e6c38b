/*
 * Diagnostic log lines (see log.h). The audit trail is a separate stream
 * kept in Redis; nothing here is meant for it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

enum log_level log_level_current = LOG_LVL_INFO;
static int log_json = 1;
static const char *log_ident = "wecom-broker";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void
log_init(enum log_level level, int json)
{
    /* a reload sets them while other loops read them */
    __atomic_store_n(&log_level_current, level, __ATOMIC_RELAXED);
    __atomic_store_n(&log_json, json, __ATOMIC_RELAXED);
}

void
log_set_ident(const char *ident)
{
    log_ident = ident;
}

enum brk_err
log_level_parse(const char *s, enum log_level *out)
{
    size_t i;

    for (i = 0; i < nitems(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return BRK_OK;
        }
    }
    return BRK_ERR_INVAL;
}

/* Escape for a JSON string (json) or a single text line (!json). */
static size_t
escape(char *dst, size_t cap, const char *src, int json)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    unsigned char c;

    for (; *src != '\0' && o + 7 < cap; src++) {
        c = (unsigned char)*src;
        if (json && (c == '"' || c == '\\')) {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            dst[o++] = '\\';
            if (json) {
                dst[o++] = 'u';
                dst[o++] = '0';
                dst[o++] = '0';
            } else {
                dst[o++] = 'x';
            }
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o] = '\0';
    return o;
}

void
log_emit(enum log_level level, const char *reqid, const char *fmt, ...)
{
    int saved = errno;
    char msg[2048], esc[4096], rid[128], ts[40], line[4608];
    struct timespec now;
    struct tm tm;
    va_list ap;
    int n, json;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = (int)strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - (size_t)n, ".%03ldZ", now.tv_nsec / 1000000);

    json = __atomic_load_n(&log_json, __ATOMIC_RELAXED);
    escape(esc, sizeof(esc), msg, json);
    if (reqid != NULL)
        escape(rid, sizeof(rid), reqid, json);
    if (json)
        n = snprintf(line, sizeof(line),
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"prog\":\"%s\"%s%s%s,"
                     "\"msg\":\"%s\"}\n",
                     ts, level_names[level], log_ident,
                     reqid ? ",\"req\":\"" : "", reqid ? rid : "",
                     reqid ? "\"" : "", esc);
    else
        n = snprintf(line, sizeof(line), "%s %s %s: %s%s%s\n", ts,
                     level_names[level], log_ident, reqid ? rid : "",
                     reqid ? " " : "", esc);
    if (n > 0) {
        if ((size_t)n >= sizeof(line))
            n = (int)sizeof(line) - 1;
        /* one write per line so concurrent writers do not interleave */
        if (write(STDERR_FILENO, line, (size_t)n) < 0)
            (void)0;
    }
    errno = saved;
}
