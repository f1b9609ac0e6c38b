/*
 * Diagnostics to stderr, one line per event, as JSON or text. The level is
 * checked before arguments are formatted. Never pass a secret to these.
 */
#ifndef LOG_H
#define LOG_H

#include "broker.h"

enum log_level {
    LOG_LVL_ERROR = 0,
    LOG_LVL_WARN,
    LOG_LVL_INFO,
    LOG_LVL_DEBUG,
};

extern enum log_level log_level_current;

/* Set level and format (json nonzero: one JSON object per line). */
void log_init(enum log_level level, int json);
/* Parse "error|warn|info|debug"; BRK_ERR_INVAL otherwise. */
enum brk_err log_level_parse(const char *s, enum log_level *out) BRK_WUR;
/* Set the program name shown in text lines (borrowed, must outlive logging). */
void log_set_ident(const char *ident);

/*
 * Write one line. reqid (may be NULL) ties the line to a request. Control
 * characters in the message are escaped, so input echoed into a log line
 * cannot forge another line. errno is preserved.
 */
void log_emit(enum log_level level, const char *reqid, const char *fmt, ...)
    BRK_PRINTF(3, 4);

#define LOG_AT(lvl, reqid, ...)                                                \
    do {                                                                       \
        if ((int)(lvl) <=                                                      \
            (int)__atomic_load_n(&log_level_current, __ATOMIC_RELAXED))        \
            log_emit((lvl), (reqid), __VA_ARGS__);                             \
    } while (0)

#define log_error(...) LOG_AT(LOG_LVL_ERROR, NULL, __VA_ARGS__)
#define log_warn(...)  LOG_AT(LOG_LVL_WARN, NULL, __VA_ARGS__)
#define log_info(...)  LOG_AT(LOG_LVL_INFO, NULL, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_LVL_DEBUG, NULL, __VA_ARGS__)

#define log_req(lvl, reqid, ...) LOG_AT((lvl), (reqid), __VA_ARGS__)

#endif /* LOG_H */
