/*
 * A strict, incremental HTTP/1.1 parser (no I/O), both sides: responses
 * for the upstream client, requests for the broker's own server (see
 * "Requests" below). Both sides share one owner for each rule: tokens,
 * field values, Content-Length, Transfer-Encoding, chunk sizes.
 *
 * Responses: bytes go in as
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
    /* requests */
    HTTP1_E_REQUEST_LINE, /* not "method SP target SP version" */
    HTTP1_E_METHOD,       /* a method that is not a token */
    HTTP1_E_TARGET,       /* a byte in the target outside 0x21-0x7E */
    HTTP1_E_URI_LONG,     /* the request line over line_max */
    HTTP1_E_BODY_BIG,     /* a chunked body over its bound */
    HTTP1_E_EXPECT,       /* an Expect other than 100-continue */
    HTTP1_E_HOST,         /* a second Host, or one that is not host[:port] */
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

/* Nonzero when c may stand in a token (RFC 9110 tchar): a method, a
 * field name, a media type; never NUL. */
int http1_is_tchar(unsigned char c);

/* A short fixed description of why, for logs. */
const char *http1_strwhy(enum http1_why why);

/*---- Requests (server side) ----*/

/*
 * What http1_req_head refuses, as soon as the byte that breaks a rule
 * arrives (a field's meaning is judged when its line ends):
 * - a request line other than "method SP request-target SP HTTP/1.x CRLF":
 *   a method that is not a token (HTTP1_E_METHOD), more or less than one
 *   SP between the parts, an empty target or one with a byte outside
 *   0x21-0x7E (HTTP1_E_TARGET), a version other than exactly HTTP/1.0 or
 *   HTTP/1.1 (HTTP1_E_VERSION, answered 400), an HTTP/0.9 line ("GET /")
 *   (HTTP1_E_REQUEST_LINE). The target's form is not judged;
 * - more than HTTP1_REQ_BLANK_MAX empty lines before the request line
 *   (they count against head_max and head_len);
 * - a line not ended by CRLF (a bare CR or a bare LF), a line over
 *   line_max (the request line: HTTP1_E_URI_LONG), the head over head_max,
 *   more than lim->fields fields (at most HTTP1_REQ_FIELDS_MAX);
 * - obs-fold, a field name that is not a token, whitespace before the
 *   colon, a control byte other than HTAB in a value;
 * - Content-Length that is not plain digits (a list "5, 5" too), that
 *   overflows, or two with different values (the same value is accepted);
 * - Transfer-Encoding other than exactly "chunked" (case-insensitive) or
 *   given twice (HTTP1_E_CODING, 501); with Content-Length, or in an
 *   HTTP/1.0 request (HTTP1_E_FRAMING, 400: the smuggling cases);
 * - Expect other than "100-continue" (case-insensitive; HTTP1_E_EXPECT);
 *   in an HTTP/1.0 request it is accepted but ignored (RFC 9110 10.1.1);
 * - Connection that is not a comma list of tokens (HTTP1_E_FIELD).
 * Method names are case-sensitive ("get" is HTTP1_M_OTHER).
 */
#define HTTP1_REQ_FIELDS_MAX 100
/* empty lines skipped before a request line */
#define HTTP1_REQ_BLANK_MAX 4

enum http1_method {
    HTTP1_M_GET,
    HTTP1_M_HEAD,
    HTTP1_M_POST,
    HTTP1_M_PUT,
    HTTP1_M_DELETE,
    HTTP1_M_OPTIONS,
    HTTP1_M_PATCH,
    HTTP1_M_OTHER, /* a valid token, none of these */
};

/* bytes [off, off + len) of the buffer given to http1_req_head */
struct http1_span {
    uint32_t off, len;
};
/* value without leading/trailing SP/HTAB */
struct http1_field {
    struct http1_span name, value;
};

/* One request head being parsed; set up with http1_req_init, no cleanup. */
struct http1_req {
    /* results, valid after HTTP1_HEAD */
    enum http1_method method;
    struct http1_span target; /* the request-target as sent */
    int minor;                /* HTTP/1.minor: 0 or 1 */
    /* 1.1 without a "close" token in Connection; 1.0 only with
     * "keep-alive" (and no "close") */
    int keep_alive;
    int expect_continue; /* Expect: 100-continue in an HTTP/1.1 request */
    int has_host;        /* a Host field (one at most: a second is refused) */
    /* HTTP1_BODY_NONE, _LENGTH or _CHUNKED only (never _CLOSE) */
    enum http1_framing framing;
    uint64_t length; /* Content-Length when framing is LENGTH */
    /* bytes of the head from buf[0], the empty lines before the request
     * line and the final blank line included */
    size_t head_len;
    unsigned nfields;
    struct http1_field fields[HTTP1_REQ_FIELDS_MAX];
    enum http1_why why; /* the refusal after HTTP1_ERROR */
    /* private */
    struct http1_limits lim;
    int state;
    size_t pos;        /* bytes of buf taken so far */
    size_t line;       /* where the current line starts */
    size_t examined;   /* bytes looked at over all calls (tests: O(n)) */
    uint32_t vs, ve;   /* the current field's value, trimmed so far */
    uint32_t name_len; /* the current field's name */
    unsigned blank;    /* empty lines before the request line */
    int has_length, saw_te, close, keep;
};

/* Start on one request; lim NULL: http1_limits_default. */
void http1_req_init(struct http1_req *q, const struct http1_limits *lim);

/*
 * buf[0..len) holds the request's bytes from its first one; each call
 * passes the same bytes again with possibly more at the end (the buffer may
 * have moved: results are offsets). Resumes where the last call stopped:
 * every byte is looked at once over all calls.
 * Returns HTTP1_MORE (no whole head yet, all within limits), HTTP1_HEAD (q
 * filled; bytes past head_len not looked at; later calls return the same),
 * or HTTP1_ERROR (q->why; stays refused).
 */
enum http1_ev http1_req_head(struct http1_req *q, const char *buf, size_t len);

/* The first field named name (ASCII case-insensitive) or NULL; *n its
 * length. buf as given to http1_req_head. */
const char *http1_req_field(const struct http1_req *q, const char *buf,
                            const char *name, size_t *n);

/* Chunked request bodies, decoded in place. */
struct http1_dechunk {
    uint64_t out;       /* body bytes decoded so far: buf[0..out) */
    size_t in;          /* bytes of buf taken so far (out <= in always) */
    enum http1_why why; /* after HTTP1_ERROR */
    /* private */
    struct http1_limits lim;
    uint64_t max;
    uint64_t left; /* bytes left in this chunk */
    size_t scan;   /* the current line looked at up to here */
    size_t trailer_bytes;
    unsigned nfields;
    int state;
};

/* max: the body's bound (decoded bytes); a body over it is
 * HTTP1_E_BODY_BIG. lim NULL: the defaults (lines, trailer fields and
 * the trailer section's bytes). */
void http1_dechunk_init(struct http1_dechunk *d, uint64_t max,
                        const struct http1_limits *lim);

/*
 * buf[0..len): the bytes after the head, the same ones again each call with
 * possibly more at the end; the parser moves decoded bytes to buf[0..out)
 * (memmove within buf) and only reads buf[in..len). HTTP1_MORE, HTTP1_DONE
 * (in = the whole chunked body with its last chunk and trailers; out = the
 * body's length; bytes past in not taken), HTTP1_ERROR (why). The
 * chunk rules are the response side's; trailers parse like fields and are
 * then ignored. A chunk that would take the body over max is refused when
 * its size line ends.
 */
enum http1_ev http1_dechunk(struct http1_dechunk *d, char *buf, size_t len);

/*
 * The status a server answers a refused request with: 413 for
 * HTTP1_E_BODY_BIG, 414 for HTTP1_E_URI_LONG, 431 for HTTP1_E_HEAD_BIG,
 * HTTP1_E_FIELDS and a field line over line_max (HTTP1_E_LINE_LONG), 501
 * for HTTP1_E_CODING, 417 for HTTP1_E_EXPECT, 400 for everything else (a
 * bad version too: "HTTP/9.9" is 400, not 505).
 */
int http1_req_status(enum http1_why why);

#endif /* HTTP1_H */
