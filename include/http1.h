/*
 * A strict, incremental HTTP/1.1 response parser (no I/O): bytes go in as
 * they arrive, in pieces of any size; out come the head (status, framing,
 * keep-alive) and the body, which is handed out in place, never buffered.
 *
 * What it refuses (HTTP1_ERROR, with the reason in http1_err):
 * - a line not ended by CRLF (a bare CR or a bare LF), a line or a head
 *   over its bound, too many header fields;
 * - a version other than HTTP/1.0 and HTTP/1.1, a status outside 100-599;
 * - a field name that is not a token, whitespace before the colon, a
 *   control byte in a value, obs-fold (a line starting with SP or HTAB);
 * - Content-Length that is not plain digits (a list "5, 5" too), that
 *   overflows, or that appears twice with different values (the same value
 *   twice is accepted);
 * - Transfer-Encoding other than exactly "chunked", given twice, with
 *   Content-Length, or in an HTTP/1.0 response;
 * - a chunk size that is not hex, longer than 16 digits or over 2^60, a
 *   chunk extension with control bytes, chunk data not ended by CRLF, a
 *   trailer section that does not parse like headers;
 * - an interim response other than 100 Continue (101 included: nothing
 *   asks to switch protocols). 100 responses are skipped; their bytes count
 *   against the head's bound, so a stream of them ends in a refusal;
 * - a 204 with a body (Transfer-Encoding or a non-zero Content-Length).
 * - the end of input before the response is complete (http1_eof), except
 *   for a body delimited by the close.
 * A 204 or 304 has no body whatever its headers say otherwise.
 * Keep-alive: an HTTP/1.1 response without "Connection: close" whose body
 * is not delimited by the close. HTTP/1.0 responses are never kept.
 */
#ifndef HTTP1_H
#define HTTP1_H

#include <stddef.h>
#include <stdint.h>

/* The longest line the parser can hold across calls. */
#define HTTP1_LINE_MAX 8192

struct http1_limits {
    size_t line_max; /* bytes of one line with its CRLF; <= LINE_MAX */
    unsigned fields; /* header fields (or trailer fields) at most */
    size_t head_max; /* bytes of all heads (interim ones too) */
};

/* What one step of http1_parse found. */
enum http1_ev {
    HTTP1_MORE,  /* the input is used up: feed more */
    HTTP1_HEAD,  /* the final response's head is complete */
    HTTP1_DATA,  /* body bytes, in place in the input */
    HTTP1_DONE,  /* the response is complete; later bytes are not taken */
    HTTP1_ERROR, /* refused; http1_err says why; stays refused */
};

enum http1_why {
    HTTP1_OK = 0,
    HTTP1_E_LINE_END,    /* a CR not followed by LF, or an LF alone */
    HTTP1_E_LINE_LONG,   /* a line over line_max */
    HTTP1_E_HEAD_BIG,    /* the heads over head_max */
    HTTP1_E_FIELDS,      /* more than `fields` fields */
    HTTP1_E_STATUS_LINE, /* not "HTTP/1.x DDD reason" */
    HTTP1_E_VERSION,     /* not HTTP/1.0 or HTTP/1.1 */
    HTTP1_E_INTERIM,     /* a 1xx other than 100 */
    HTTP1_E_FIELD,       /* a header or trailer line that does not parse */
    HTTP1_E_FOLD,        /* obs-fold */
    HTTP1_E_LENGTH,      /* a bad Content-Length */
    HTTP1_E_LENGTHS,     /* two different Content-Lengths */
    HTTP1_E_CODING,      /* a Transfer-Encoding other than chunked */
    HTTP1_E_FRAMING,     /* both framings, chunked in 1.0, a 204 body */
    HTTP1_E_CHUNK_SIZE,  /* a bad or too large chunk size */
    HTTP1_E_CHUNK_EXT,   /* a bad chunk extension */
    HTTP1_E_CHUNK_END,   /* chunk data not followed by CRLF */
    HTTP1_E_TRUNCATED,   /* the input ended inside the response */
};

enum http1_framing {
    HTTP1_BODY_NONE,    /* 204, 304, or Content-Length: 0 */
    HTTP1_BODY_LENGTH,  /* Content-Length */
    HTTP1_BODY_CHUNKED, /* Transfer-Encoding: chunked */
    HTTP1_BODY_CLOSE,   /* until the connection closes */
};

/* One response being parsed; set up with http1_init, no other cleanup. */
struct http1 {
    /* results, valid from HTTP1_HEAD on */
    int status;     /* 200..599 */
    int minor;      /* HTTP/1.minor */
    int keep_alive; /* the connection may carry another call */
    enum http1_framing framing;
    uint64_t length;    /* Content-Length when framing is LENGTH */
    enum http1_why why; /* the refusal, after HTTP1_ERROR */
    /* private */
    struct http1_limits lim;
    int state;
    int has_length, chunked, close, saw_te;
    unsigned nfields;
    size_t head_bytes;
    uint64_t left; /* body bytes left (in this chunk) */
    size_t nline;
    int cr; /* inside the CRLF after chunk data: the CR was seen */
    char line[HTTP1_LINE_MAX];
};

/* Defaults: lines of 8 KiB, 100 fields, 64 KiB of heads. */
extern const struct http1_limits http1_limits_default;

/* Start parsing one response; lim NULL: the defaults. */
void http1_init(struct http1 *p, const struct http1_limits *lim);

/*
 * Take bytes from in (len of them) until one thing happens: *used says how
 * many were taken. HTTP1_DATA points *data (*dlen > 0 bytes) into in; the
 * caller calls again with the rest. HTTP1_MORE: all len bytes were taken.
 * After HTTP1_DONE or HTTP1_ERROR every call returns the same, taking
 * nothing.
 */
enum http1_ev http1_parse(struct http1 *p, const char *in, size_t len,
                          size_t *used, const char **data, size_t *dlen);

/* The input ended: HTTP1_DONE for a close-delimited body (or one already
 * complete), else HTTP1_ERROR (HTTP1_E_TRUNCATED). */
enum http1_ev http1_eof(struct http1 *p);

/* Nonzero once any byte of the response has been taken. */
int http1_started(const struct http1 *p);

/* A short fixed description of why, for logs. */
const char *http1_strwhy(enum http1_why why);

#endif /* HTTP1_H */
