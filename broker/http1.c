/*
 * HTTP/1.1 parser (see http1.h), both sides over one set of rules: the
 * predicates for tokens and field text, the field line, Content-Length,
 * Transfer-Encoding, Connection and chunk-size lines are each written once
 * below and called by both sides. Every refusal is final.
 *
 * Responses: lines are found with memchr and read in place when a piece of
 * input holds them whole; a line split over pieces is gathered in the
 * parser's own bounded buffer. Body bytes are never copied.
 *
 * Requests: the caller keeps the whole head in one buffer, so lines are
 * read in place; each byte is judged as it arrives (one pass, resumed where
 * the last call stopped) so that a broken request is refused at its first
 * bad byte, and each whole field line then goes through the shared field
 * rules. Chunked request bodies are decoded in place, their lines found
 * with memchr from where the last call stopped.
 */
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "broker.h"
#include "http1.h"

/* a chunk size beyond this is refused, whatever max body the caller has */
#define CHUNK_SIZE_MAX   ((uint64_t)1 << 60)
#define CHUNK_DIGITS_MAX 16

enum {
    S_STATUS,
    S_FIELD,
    S_BODY_START,
    S_LENGTH,
    S_CHUNK_SIZE,
    S_CHUNK_DATA,
    S_CHUNK_CRLF,
    S_TRAILER,
    S_CLOSE,
    S_DONE,
    S_ERROR,
};

const struct http1_limits http1_limits_default = {HTTP1_LINE_MAX, 100, 65536};

/* lim, or the defaults when NULL, with a line no longer than the parsers
 * can hold */
static struct http1_limits
limits_of(const struct http1_limits *lim)
{
    struct http1_limits l = lim != NULL ? *lim : http1_limits_default;

    if (l.line_max == 0 || l.line_max > HTTP1_LINE_MAX)
        l.line_max = HTTP1_LINE_MAX;
    return l;
}

void
http1_init(struct http1 *p, const struct http1_limits *lim)
{
    /* the line buffer needs no clearing: nline says what is in it */
    memset(p, 0, offsetof(struct http1, line));
    p->lim = limits_of(lim);
    p->state = S_STATUS;
}

static enum http1_ev
fail(struct http1 *p, enum http1_why why)
{
    p->state = S_ERROR;
    p->why = why;
    return HTTP1_ERROR;
}

/* RFC 9110 tchar (see http1.h) */
int
http1_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return 1;
    default:
        return 0;
    }
}

/* field-vchar, SP, HTAB and obs-text: every byte but the other controls */
static int
is_text(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Why a line holding the non-text byte c is refused. */
static enum http1_why
ctl_why(unsigned char c, enum http1_why otherwise)
{
    return c == '\r' || c == '\n' ? HTTP1_E_LINE_END : otherwise;
}

/*
 * Take one line: 1 with *line and *n (CRLF removed) when one is complete, 0
 * when all of in went into the line buffer, -1 after a refusal. A line
 * read whole from in stays in place.
 */
static int
take_line(struct http1 *p, const char *in, size_t len, size_t *used,
          const char **line, size_t *n)
{
    const char *lf = memchr(in, '\n', len);
    size_t k, total;

    if (lf == NULL) {
        if (p->nline + len >= p->lim.line_max) {
            fail(p, HTTP1_E_LINE_LONG);
            return -1;
        }
        memcpy(p->line + p->nline, in, len);
        p->nline += len;
        *used = len;
        return 0;
    }
    k = (size_t)(lf - in);
    total = p->nline + k + 1;
    if (total > p->lim.line_max) {
        fail(p, HTTP1_E_LINE_LONG);
        return -1;
    }
    *used = k + 1;
    if (p->nline == 0) {
        if (k == 0 || in[k - 1] != '\r') {
            fail(p, HTTP1_E_LINE_END);
            return -1;
        }
        *line = in;
        *n = k - 1;
        return 1;
    }
    memcpy(p->line + p->nline, in, k);
    p->nline += k;
    if (p->line[p->nline - 1] != '\r') {
        fail(p, HTTP1_E_LINE_END);
        return -1;
    }
    *line = p->line;
    *n = p->nline - 1;
    p->nline = 0;
    return 1;
}

/* Count a head line (with its CRLF) against head_max. */
static int
head_room(struct http1 *p, size_t n)
{
    if (n + 2 > p->lim.head_max - p->head_bytes)
        return 0;
    p->head_bytes += n + 2;
    return 1;
}

static enum http1_ev
status_line(struct http1 *p, const char *s, size_t n)
{
    size_t i;
    int code;

    if (n < 12 || memcmp(s, "HTTP/", 5) != 0)
        return fail(p, HTTP1_E_STATUS_LINE);
    if (s[5] != '1' || s[6] != '.' || (s[7] != '0' && s[7] != '1') ||
        s[8] != ' ')
        return fail(p, HTTP1_E_VERSION);
    for (i = 9; i < 12; i++)
        if (s[i] < '0' || s[i] > '9')
            return fail(p, HTTP1_E_STATUS_LINE);
    code = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (code < 100 || code > 599)
        return fail(p, HTTP1_E_STATUS_LINE);
    /* the reason phrase, after one SP, may be empty or missing */
    if (n > 12 && s[12] != ' ')
        return fail(p, HTTP1_E_STATUS_LINE);
    for (i = 13; i < n; i++)
        if (!is_text((unsigned char)s[i]))
            return fail(p, ctl_why((unsigned char)s[i], HTTP1_E_STATUS_LINE));
    if (code >= 101 && code <= 199)
        return fail(p, HTTP1_E_INTERIM);
    p->status = code;
    p->minor = s[7] - '0';
    p->nfields = 0;
    p->has_length = p->chunked = p->close = p->saw_te = 0;
    p->length = 0;
    p->state = S_FIELD;
    return HTTP1_MORE;
}

static int
value_is(const char *v, size_t n, const char *word)
{
    size_t wl = strlen(word);

    return n == wl && strncasecmp(v, word, n) == 0;
}

/*
 * Host: empty, or a host (a name, an IPv4 address or a bracketed IP
 * literal) and an optional port: the characters of a URI's authority
 * without user info.
 */
static int
host_value(const char *v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') ||
              (c != '\0' && strchr("-._~!$&'()*+,;=%:[]", c) != NULL)))
            return 0;
    }
    return 1;
}

/*
 * Connection: a comma list of tokens (empty elements skipped); sets
 * *close and *keep for "close" and "keep-alive". Returns 0 when an element
 * is not a token.
 */
static int
connection_list(const char *v, size_t n, int *close, int *keep)
{
    size_t i = 0, start, end, k;
    int ok = 1;

    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        start = i;
        while (i < n && v[i] != ',')
            i++;
        end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        for (k = start; k < end; k++)
            if (!http1_is_tchar((unsigned char)v[k]))
                ok = 0;
        if (value_is(v + start, end - start, "close"))
            *close = 1;
        else if (value_is(v + start, end - start, "keep-alive"))
            *keep = 1;
    }
    return ok;
}

/* Content-Length: plain digits without overflow, and the same value as
 * any one before (*has). */
static enum http1_why
length_value(const char *v, size_t n, int *has, uint64_t *length)
{
    uint64_t val = 0;
    size_t i;

    if (n == 0)
        return HTTP1_E_LENGTH;
    for (i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return HTTP1_E_LENGTH;
        if (val > (UINT64_MAX - (uint64_t)(v[i] - '0')) / 10)
            return HTTP1_E_LENGTH;
        val = val * 10 + (uint64_t)(v[i] - '0');
    }
    if (*has && *length != val)
        return HTTP1_E_LENGTHS;
    *has = 1;
    *length = val;
    return HTTP1_OK;
}

/* Transfer-Encoding: one coding, chunked, said once (*saw): anything else
 * may be framed differently by someone else on the path. */
static enum http1_why
coding_value(const char *v, size_t n, int *saw)
{
    if (*saw || !value_is(v, n, "chunked"))
        return HTTP1_E_CODING;
    *saw = 1;
    return HTTP1_OK;
}

/*
 * One header or trailer line s[0..n), n > 0, CRLF removed: not obs-fold,
 * a token name right before the colon, counted in *nfields against max,
 * a value of text. *name_len, and the value trimmed of SP/HTAB as
 * [*vs, *ve), are written on success.
 */
static enum http1_why
field_check(const char *s, size_t n, unsigned *nfields, unsigned max,
            size_t *name_len, size_t *vs, size_t *ve)
{
    size_t i = 0, name, b, e;

    if (s[0] == ' ' || s[0] == '\t')
        return HTTP1_E_FOLD;
    while (i < n && http1_is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i == n || s[i] != ':')
        return ctl_why((unsigned char)(i < n ? s[i] : 0), HTTP1_E_FIELD);
    name = i;
    if (++*nfields > max)
        return HTTP1_E_FIELDS;
    b = i + 1;
    while (b < n && (s[b] == ' ' || s[b] == '\t'))
        b++;
    e = n;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t'))
        e--;
    for (i = b; i < e; i++)
        if (!is_text((unsigned char)s[i]))
            return ctl_why((unsigned char)s[i], HTTP1_E_FIELD);
    *name_len = name;
    *vs = b;
    *ve = e;
    return HTTP1_OK;
}

/*
 * One response header or trailer line, not empty. interpret: a final
 * response's header (framing and Connection are read); otherwise only
 * checked.
 */
static enum http1_ev
field_line(struct http1 *p, const char *s, size_t n, int interpret)
{
    enum http1_why why;
    size_t name_len, vs, ve;
    int keep = 0;

    why = field_check(s, n, &p->nfields, p->lim.fields, &name_len, &vs, &ve);
    if (why != HTTP1_OK)
        return fail(p, why);
    if (!interpret)
        return HTTP1_MORE;
    why = HTTP1_OK;
    if (value_is(s, name_len, "content-length"))
        why = length_value(s + vs, ve - vs, &p->has_length, &p->length);
    else if (value_is(s, name_len, "transfer-encoding"))
        why = coding_value(s + vs, ve - vs, &p->saw_te);
    else if (value_is(s, name_len, "connection"))
        /* a response's list is not judged: only "close" matters */
        (void)connection_list(s + vs, ve - vs, &p->close, &keep);
    if (why != HTTP1_OK)
        return fail(p, why);
    p->chunked = p->saw_te;
    return HTTP1_MORE;
}

/* The empty line after the headers. */
static enum http1_ev
head_end(struct http1 *p)
{
    if (p->status == 100) {
        /* an interim response: the final one follows */
        p->state = S_STATUS;
        return HTTP1_MORE;
    }
    if (p->chunked && (p->has_length || p->minor == 0))
        return fail(p, HTTP1_E_FRAMING);
    if (p->status == 204 && (p->chunked || (p->has_length && p->length != 0)))
        return fail(p, HTTP1_E_FRAMING);
    if (p->status == 204 || p->status == 304)
        p->framing = HTTP1_BODY_NONE;
    else if (p->chunked)
        p->framing = HTTP1_BODY_CHUNKED;
    else if (p->has_length)
        p->framing = p->length > 0 ? HTTP1_BODY_LENGTH : HTTP1_BODY_NONE;
    else
        p->framing = HTTP1_BODY_CLOSE;
    p->keep_alive =
        p->minor == 1 && !p->close && p->framing != HTTP1_BODY_CLOSE;
    p->state = S_BODY_START;
    return HTTP1_HEAD;
}

/* A chunk-size line s[0..n), CRLF removed: hex digits (at most 16, the
 * size at most CHUNK_SIZE_MAX), optional SP/HTAB, extensions of text. */
static enum http1_why
chunk_size_line(const char *s, size_t n, uint64_t *size)
{
    uint64_t val = 0;
    size_t i = 0;
    int d;

    for (; i < n; i++) {
        if (s[i] >= '0' && s[i] <= '9')
            d = s[i] - '0';
        else if ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'f')
            d = (s[i] | 0x20) - 'a' + 10;
        else
            break;
        if (i >= CHUNK_DIGITS_MAX)
            return HTTP1_E_CHUNK_SIZE;
        val = val * 16 + (uint64_t)d;
    }
    if (i == 0 || val > CHUNK_SIZE_MAX)
        return HTTP1_E_CHUNK_SIZE;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i < n && s[i] != ';')
        return ctl_why((unsigned char)s[i], HTTP1_E_CHUNK_SIZE);
    /* extensions are ignored, but must be text */
    for (; i < n; i++)
        if (!is_text((unsigned char)s[i]))
            return ctl_why((unsigned char)s[i], HTTP1_E_CHUNK_EXT);
    *size = val;
    return HTTP1_OK;
}

static enum http1_ev
chunk_size(struct http1 *p, const char *s, size_t n)
{
    enum http1_why why;
    uint64_t val = 0;

    why = chunk_size_line(s, n, &val);
    if (why != HTTP1_OK)
        return fail(p, why);
    if (val == 0) {
        p->nfields = 0;
        p->state = S_TRAILER;
    } else {
        p->left = val;
        p->state = S_CHUNK_DATA;
    }
    return HTTP1_MORE;
}

/* Body bytes in place: at most what is left of the length or chunk. */
static enum http1_ev
body_bytes(struct http1 *p, const char *in, size_t len, size_t *used,
           const char **data, size_t *dlen, int next)
{
    size_t n = len;

    if (len == 0)
        return HTTP1_MORE;
    if (p->state != S_CLOSE) {
        if ((uint64_t)n > p->left)
            n = (size_t)p->left;
        p->left -= n;
        if (p->left == 0)
            p->state = next;
    }
    *used = n;
    *data = in;
    *dlen = n;
    return HTTP1_DATA;
}

enum http1_ev
http1_parse(struct http1 *p, const char *in, size_t len, size_t *used,
            const char **data, size_t *dlen)
{
    const char *line = NULL;
    size_t n = 0, off = 0, step;
    enum http1_ev ev;
    int r;

    *used = 0;
    for (;;) {
        step = 0;
        switch (p->state) {
        case S_DONE:
            *used = off;
            return HTTP1_DONE;
        case S_ERROR:
            return HTTP1_ERROR;
        case S_BODY_START:
            if (p->framing == HTTP1_BODY_NONE) {
                p->state = S_DONE;
                continue;
            }
            if (p->framing == HTTP1_BODY_LENGTH) {
                p->left = p->length;
                p->state = S_LENGTH;
            } else if (p->framing == HTTP1_BODY_CHUNKED) {
                p->state = S_CHUNK_SIZE;
            } else {
                p->state = S_CLOSE;
            }
            continue;
        case S_LENGTH:
        case S_CLOSE:
        case S_CHUNK_DATA:
            ev = body_bytes(p, in + off, len - off, &step, data, dlen,
                            p->state == S_LENGTH ? S_DONE : S_CHUNK_CRLF);
            *used = off + step;
            return ev;
        case S_CHUNK_CRLF:
            if (off == len) {
                *used = off;
                return HTTP1_MORE;
            }
            if (in[off] != (p->cr ? '\n' : '\r'))
                return fail(p, HTTP1_E_CHUNK_END);
            off++;
            if (p->cr)
                p->state = S_CHUNK_SIZE;
            p->cr = !p->cr;
            continue;
        default:
            break;
        }
        /* the line states */
        if (off == len) {
            *used = off;
            return HTTP1_MORE;
        }
        r = take_line(p, in + off, len - off, &step, &line, &n);
        off += step;
        if (r < 0)
            return HTTP1_ERROR;
        if (r == 0) {
            *used = off;
            return HTTP1_MORE;
        }
        switch (p->state) {
        case S_STATUS:
            if (!head_room(p, n))
                return fail(p, HTTP1_E_HEAD_BIG);
            ev = status_line(p, line, n);
            break;
        case S_FIELD:
        case S_TRAILER:
            if (!head_room(p, n))
                return fail(p, HTTP1_E_HEAD_BIG);
            if (n > 0) {
                ev = field_line(p, line, n,
                                p->state == S_FIELD && p->status != 100);
            } else if (p->state == S_TRAILER) {
                p->state = S_DONE;
                ev = HTTP1_MORE;
            } else {
                ev = head_end(p);
            }
            break;
        default: /* S_CHUNK_SIZE */
            ev = chunk_size(p, line, n);
            break;
        }
        if (ev != HTTP1_MORE) {
            *used = off;
            return ev;
        }
    }
}

enum http1_ev
http1_eof(struct http1 *p)
{
    switch (p->state) {
    case S_CLOSE:
    case S_DONE:
        p->state = S_DONE;
        return HTTP1_DONE;
    case S_ERROR:
        return HTTP1_ERROR;
    default:
        return fail(p, HTTP1_E_TRUNCATED);
    }
}

int
http1_started(const struct http1 *p)
{
    return p->state != S_STATUS || p->nline > 0 || p->head_bytes > 0;
}

const char *
http1_strwhy(enum http1_why why)
{
    static const char *const names[] = {
        [HTTP1_OK] = "ok",
        [HTTP1_E_LINE_END] = "line not ended by CRLF",
        [HTTP1_E_LINE_LONG] = "line too long",
        [HTTP1_E_HEAD_BIG] = "head too big",
        [HTTP1_E_FIELDS] = "too many fields",
        [HTTP1_E_STATUS_LINE] = "bad status line",
        [HTTP1_E_VERSION] = "unsupported version",
        [HTTP1_E_INTERIM] = "unexpected 1xx",
        [HTTP1_E_FIELD] = "bad field",
        [HTTP1_E_FOLD] = "obs-fold",
        [HTTP1_E_LENGTH] = "bad Content-Length",
        [HTTP1_E_LENGTHS] = "conflicting Content-Lengths",
        [HTTP1_E_CODING] = "unsupported Transfer-Encoding",
        [HTTP1_E_FRAMING] = "ambiguous framing",
        [HTTP1_E_CHUNK_SIZE] = "bad chunk size",
        [HTTP1_E_CHUNK_EXT] = "bad chunk extension",
        [HTTP1_E_CHUNK_END] = "chunk not ended by CRLF",
        [HTTP1_E_TRUNCATED] = "truncated",
        [HTTP1_E_REQUEST_LINE] = "bad request line",
        [HTTP1_E_METHOD] = "bad method",
        [HTTP1_E_TARGET] = "bad request target",
        [HTTP1_E_URI_LONG] = "request line too long",
        [HTTP1_E_BODY_BIG] = "body too big",
        [HTTP1_E_EXPECT] = "unsupported Expect",
        [HTTP1_E_HOST] = "bad or repeated Host",
    };

    if ((unsigned)why >= nitems(names))
        return "unknown";
    return names[why];
}

/*---- Requests ----*/

enum {
    Q_START,    /* a line before the request line starts */
    Q_BLANK_LF, /* an empty line before the request line: CR seen */
    Q_METHOD,
    Q_TARGET0, /* the target's first byte */
    Q_TARGET,
    Q_VERSION,
    Q_LINE_LF, /* the request line's CR seen */
    Q_FIELD0,  /* a field line (or the final empty line) starts */
    Q_NAME,
    Q_VALUE,
    Q_FIELD_LF, /* a field line's CR seen */
    Q_END_LF,   /* the final empty line's CR seen */
    Q_HEAD,
    Q_ERROR,
};

static const char req_version[] = "HTTP/1.";

void
http1_req_init(struct http1_req *q, const struct http1_limits *lim)
{
    /* the fields need no clearing: nfields says how many are set */
    memset(q, 0, offsetof(struct http1_req, fields));
    memset(&q->why, 0, sizeof(*q) - offsetof(struct http1_req, why));
    q->lim = limits_of(lim);
    if (q->lim.fields > HTTP1_REQ_FIELDS_MAX)
        q->lim.fields = HTTP1_REQ_FIELDS_MAX;
    /* spans are 32-bit offsets */
    if (q->lim.head_max > UINT32_MAX)
        q->lim.head_max = UINT32_MAX;
    q->state = Q_START;
}

static enum http1_ev
req_fail(struct http1_req *q, enum http1_why why)
{
    q->state = Q_ERROR;
    q->why = why;
    return HTTP1_ERROR;
}

static enum http1_method
req_method(const char *s, size_t n)
{
    static const struct {
        const char *name;
        enum http1_method m;
    } methods[] = {
        {"GET", HTTP1_M_GET},       {"HEAD", HTTP1_M_HEAD},
        {"POST", HTTP1_M_POST},     {"PUT", HTTP1_M_PUT},
        {"DELETE", HTTP1_M_DELETE}, {"OPTIONS", HTTP1_M_OPTIONS},
        {"PATCH", HTTP1_M_PATCH},
    };
    size_t i;

    /* methods are case-sensitive */
    for (i = 0; i < nitems(methods); i++)
        if (strlen(methods[i].name) == n && memcmp(methods[i].name, s, n) == 0)
            return methods[i].m;
    return HTTP1_M_OTHER;
}

/* A whole field line buf[q->line..end) (CRLF removed): the shared field
 * rules, then what the server needs from it. */
static enum http1_ev
req_field(struct http1_req *q, const char *buf, size_t end)
{
    const char *s = buf + q->line, *v;
    size_t n = end - q->line, name_len, vs, ve, vn;
    unsigned count = q->nfields;
    struct http1_field *f;
    enum http1_why why;

    why = field_check(s, n, &count, q->lim.fields, &name_len, &vs, &ve);
    if (why != HTTP1_OK)
        return req_fail(q, why);
    f = &q->fields[q->nfields++];
    f->name.off = (uint32_t)q->line;
    f->name.len = (uint32_t)name_len;
    f->value.off = (uint32_t)(q->line + vs);
    f->value.len = (uint32_t)(ve - vs);
    v = s + vs;
    vn = ve - vs;
    if (value_is(s, name_len, "content-length")) {
        why = length_value(v, vn, &q->has_length, &q->length);
        if (why == HTTP1_OK && q->saw_te)
            why = HTTP1_E_FRAMING;
    } else if (value_is(s, name_len, "transfer-encoding")) {
        why = coding_value(v, vn, &q->saw_te);
        /* a body framed two ways, or one that a 1.0 hop would frame by
         * the close, is read differently by someone on the path */
        if (why == HTTP1_OK && (q->has_length || q->minor == 0))
            why = HTTP1_E_FRAMING;
    } else if (value_is(s, name_len, "connection")) {
        if (!connection_list(v, vn, &q->close, &q->keep))
            why = HTTP1_E_FIELD;
    } else if (value_is(s, name_len, "host")) {
        /* two Hosts may be read differently by two hops */
        if (q->has_host || !host_value(v, vn))
            why = HTTP1_E_HOST;
        q->has_host = 1;
    } else if (value_is(s, name_len, "expect")) {
        if (!value_is(v, vn, "100-continue"))
            why = HTTP1_E_EXPECT;
        else if (q->minor == 1) /* a 1.0 client waits for no 100 */
            q->expect_continue = 1;
    }
    if (why != HTTP1_OK)
        return req_fail(q, why);
    return HTTP1_MORE;
}

/* The empty line after the fields: buf[0..end) is the head. */
static enum http1_ev
req_head_end(struct http1_req *q, size_t end)
{
    q->head_len = end;
    if (q->saw_te)
        q->framing = HTTP1_BODY_CHUNKED;
    else if (q->has_length && q->length > 0)
        q->framing = HTTP1_BODY_LENGTH;
    else
        q->framing = HTTP1_BODY_NONE;
    q->keep_alive = q->minor == 1 ? !q->close : q->keep && !q->close;
    q->state = Q_HEAD;
    return HTTP1_HEAD;
}

/*
 * One byte c at pos of a request head (not the last LF): whether it may be
 * there, and where it leads. Returns HTTP1_MORE to go on.
 */
static enum http1_ev
req_byte(struct http1_req *q, const char *buf, size_t pos)
{
    unsigned char c = (unsigned char)buf[pos];
    size_t k;

    switch (q->state) {
    case Q_START:
        if (c == '\r') {
            q->state = Q_BLANK_LF;
        } else if (http1_is_tchar(c)) {
            q->state = Q_METHOD;
        } else {
            return req_fail(q, c == '\n'  ? HTTP1_E_LINE_END
                               : c == ' ' ? HTTP1_E_REQUEST_LINE
                                          : HTTP1_E_METHOD);
        }
        return HTTP1_MORE;
    case Q_BLANK_LF:
        if (c != '\n')
            return req_fail(q, HTTP1_E_LINE_END);
        if (++q->blank > HTTP1_REQ_BLANK_MAX)
            return req_fail(q, HTTP1_E_REQUEST_LINE);
        q->line = pos + 1;
        q->state = Q_START;
        return HTTP1_MORE;
    case Q_METHOD:
        if (c == ' ')
            q->state = Q_TARGET0;
        else if (!http1_is_tchar(c))
            return req_fail(q, c == '\n'   ? HTTP1_E_LINE_END
                               : c == '\r' ? HTTP1_E_REQUEST_LINE
                                           : HTTP1_E_METHOD);
        return HTTP1_MORE;
    case Q_TARGET0:
    case Q_TARGET:
        if (c >= 0x21 && c <= 0x7e) {
            if (q->state == Q_TARGET0)
                q->target.off = (uint32_t)pos;
            q->state = Q_TARGET;
            return HTTP1_MORE;
        }
        if (c == ' ' && q->state == Q_TARGET) {
            q->target.len = (uint32_t)(pos - q->target.off);
            q->state = Q_VERSION;
            return HTTP1_MORE;
        }
        /* a CR here is a line without a version (HTTP/0.9) */
        return req_fail(q, c == '\n'               ? HTTP1_E_LINE_END
                           : c == '\r' || c == ' ' ? HTTP1_E_REQUEST_LINE
                                                   : HTTP1_E_TARGET);
    case Q_VERSION:
        k = pos - (q->target.off + q->target.len + 1);
        if (c == '\n')
            return req_fail(q, HTTP1_E_LINE_END);
        if (k < sizeof(req_version) - 1    ? c == (unsigned char)req_version[k]
            : k == sizeof(req_version) - 1 ? c == '0' || c == '1'
                                           : c == '\r') {
            if (k == sizeof(req_version) - 1)
                q->minor = c - '0';
            else if (k == sizeof(req_version))
                q->state = Q_LINE_LF;
            return HTTP1_MORE;
        }
        return req_fail(q, HTTP1_E_VERSION);
    case Q_LINE_LF:
        if (c != '\n')
            return req_fail(q, HTTP1_E_LINE_END);
        q->method = req_method(buf + q->line, q->target.off - 1 - q->line);
        q->line = pos + 1;
        q->state = Q_FIELD0;
        return HTTP1_MORE;
    case Q_FIELD0:
        if (c == '\r') {
            q->state = Q_END_LF;
            return HTTP1_MORE;
        }
        if (c == ' ' || c == '\t')
            return req_fail(q, HTTP1_E_FOLD);
        if (!http1_is_tchar(c))
            return req_fail(q, ctl_why(c, HTTP1_E_FIELD));
        if (q->nfields >= q->lim.fields)
            return req_fail(q, HTTP1_E_FIELDS);
        q->state = Q_NAME;
        return HTTP1_MORE;
    case Q_NAME:
        if (c == ':')
            q->state = Q_VALUE;
        else if (!http1_is_tchar(c)) /* a CR too: a line without a colon */
            return req_fail(q, c == '\n' ? HTTP1_E_LINE_END : HTTP1_E_FIELD);
        return HTTP1_MORE;
    case Q_VALUE:
        if (c == '\r')
            q->state = Q_FIELD_LF;
        else if (!is_text(c))
            return req_fail(q, ctl_why(c, HTTP1_E_FIELD));
        return HTTP1_MORE;
    case Q_FIELD_LF:
        if (c != '\n')
            return req_fail(q, HTTP1_E_LINE_END);
        if (req_field(q, buf, pos - 1) != HTTP1_MORE)
            return HTTP1_ERROR;
        q->line = pos + 1;
        q->state = Q_FIELD0;
        return HTTP1_MORE;
    default: /* Q_END_LF */
        if (c != '\n')
            return req_fail(q, HTTP1_E_LINE_END);
        return req_head_end(q, pos + 1);
    }
}

/*
 * The bytes from pos, short of end, that leave q where it is (inside a
 * target, a field name or a field value): how many. Each is one req_byte
 * would take without a change of state.
 */
static size_t
req_run(const struct http1_req *q, const char *buf, size_t pos, size_t end)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t i = pos;

    switch (q->state) {
    case Q_TARGET:
        while (i < end && b[i] >= 0x21 && b[i] <= 0x7e)
            i++;
        break;
    case Q_NAME:
        while (i < end && http1_is_tchar(b[i]))
            i++;
        break;
    case Q_VALUE:
        while (i < end && b[i] != '\r' && is_text(b[i]))
            i++;
        break;
    default:
        break;
    }
    return i - pos;
}

enum http1_ev
http1_req_head(struct http1_req *q, const char *buf, size_t len)
{
    enum http1_ev ev;
    size_t pos, end, n;

    if (q->state == Q_HEAD)
        return HTTP1_HEAD;
    if (q->state == Q_ERROR)
        return HTTP1_ERROR;
    for (pos = q->pos; pos < len; pos++) {
        /* inside a target, name or value, up to the first byte that
         * changes the state or reaches a limit, which is judged below */
        if (q->lim.line_max >= 2) {
            end = q->line + q->lim.line_max - 1;
            if (end > q->lim.head_max)
                end = q->lim.head_max;
            n = req_run(q, buf, pos, end < len ? end : len);
            q->examined += n;
            pos += n;
            if (pos == len)
                break;
        }
        q->examined++;
        /* a byte other than LF means the line goes on past it: refuse it
         * as soon as it cannot end within line_max; the head as soon as
         * it is over head_max */
        if (buf[pos] != '\n' && pos - q->line + 2 > q->lim.line_max) {
            q->pos = pos;
            return req_fail(q, q->state <= Q_LINE_LF && q->state != Q_BLANK_LF
                                   ? HTTP1_E_URI_LONG
                                   : HTTP1_E_LINE_LONG);
        }
        if (pos + 1 > q->lim.head_max) {
            q->pos = pos;
            return req_fail(q, HTTP1_E_HEAD_BIG);
        }
        ev = req_byte(q, buf, pos);
        if (ev != HTTP1_MORE) {
            q->pos = ev == HTTP1_HEAD ? pos + 1 : pos;
            return ev;
        }
    }
    q->pos = pos;
    return HTTP1_MORE;
}

const char *
http1_req_field(const struct http1_req *q, const char *buf, const char *name,
                size_t *n)
{
    size_t nl = strlen(name);
    unsigned i;

    for (i = 0; i < q->nfields; i++) {
        const struct http1_field *f = &q->fields[i];

        if (f->name.len == nl &&
            strncasecmp(buf + f->name.off, name, nl) == 0) {
            *n = f->value.len;
            return buf + f->value.off;
        }
    }
    return NULL;
}

/*---- Chunked request bodies ----*/

enum {
    D_SIZE,    /* a chunk-size line */
    D_DATA,    /* chunk data */
    D_DATA_CR, /* the CRLF after chunk data */
    D_DATA_LF,
    D_TRAILER, /* a trailer line, or the final empty line */
    D_DONE,
    D_ERROR,
};

void
http1_dechunk_init(struct http1_dechunk *d, uint64_t max,
                   const struct http1_limits *lim)
{
    memset(d, 0, sizeof(*d));
    d->lim = limits_of(lim);
    d->max = max;
    d->state = D_SIZE;
}

static enum http1_ev
dc_fail(struct http1_dechunk *d, enum http1_why why)
{
    d->state = D_ERROR;
    d->why = why;
    return HTTP1_ERROR;
}

/*
 * The line starting at d->in, looked for from d->scan on: 1 with *n (CRLF
 * removed) when it is whole, 0 when more is needed, -1 after a refusal.
 */
static int
dc_line(struct http1_dechunk *d, const char *buf, size_t len, size_t *n)
{
    const char *lf = memchr(buf + d->scan, '\n', len - d->scan);
    size_t end;

    if (lf == NULL) {
        if (len - d->in >= d->lim.line_max) {
            dc_fail(d, HTTP1_E_LINE_LONG);
            return -1;
        }
        d->scan = len;
        return 0;
    }
    end = (size_t)(lf - buf);
    if (end + 1 - d->in > d->lim.line_max) {
        dc_fail(d, HTTP1_E_LINE_LONG);
        return -1;
    }
    if (end == d->in || buf[end - 1] != '\r') {
        dc_fail(d, HTTP1_E_LINE_END);
        return -1;
    }
    *n = end - 1 - d->in;
    return 1;
}

/* A whole line buf[d->in..d->in + n) of the chunked framing. */
static enum http1_ev
dc_take_line(struct http1_dechunk *d, const char *s, size_t n)
{
    enum http1_why why;
    size_t name_len, vs, ve;
    uint64_t size = 0;

    if (d->state == D_SIZE) {
        why = chunk_size_line(s, n, &size);
        if (why != HTTP1_OK)
            return dc_fail(d, why);
        if (size > d->max - d->out)
            return dc_fail(d, HTTP1_E_BODY_BIG);
        d->left = size;
        d->state = size > 0 ? D_DATA : D_TRAILER;
    } else {
        if (n + 2 > d->lim.head_max - d->trailer_bytes)
            return dc_fail(d, HTTP1_E_HEAD_BIG);
        d->trailer_bytes += n + 2;
        if (n == 0) {
            d->state = D_DONE;
        } else {
            why = field_check(s, n, &d->nfields, d->lim.fields, &name_len, &vs,
                              &ve);
            if (why != HTTP1_OK)
                return dc_fail(d, why);
        }
    }
    d->in += n + 2;
    d->scan = d->in;
    return HTTP1_MORE;
}

enum http1_ev
http1_dechunk(struct http1_dechunk *d, char *buf, size_t len)
{
    enum http1_ev ev;
    size_t k, n = 0;
    int r;

    for (;;) {
        switch (d->state) {
        case D_DONE:
            return HTTP1_DONE;
        case D_ERROR:
            return HTTP1_ERROR;
        case D_DATA:
            k = len - d->in;
            if (k == 0)
                return HTTP1_MORE;
            if ((uint64_t)k > d->left)
                k = (size_t)d->left;
            if (d->out != d->in)
                memmove(buf + d->out, buf + d->in, k);
            d->out += k;
            d->in += k;
            d->left -= k;
            if (d->left == 0)
                d->state = D_DATA_CR;
            continue;
        case D_DATA_CR:
        case D_DATA_LF:
            if (d->in == len)
                return HTTP1_MORE;
            if (buf[d->in] != (d->state == D_DATA_CR ? '\r' : '\n'))
                return dc_fail(d, HTTP1_E_CHUNK_END);
            d->in++;
            d->state = d->state == D_DATA_CR ? D_DATA_LF : D_SIZE;
            d->scan = d->in;
            continue;
        default: /* D_SIZE, D_TRAILER */
            if (d->scan < d->in)
                d->scan = d->in;
            if (d->scan >= len)
                return HTTP1_MORE;
            r = dc_line(d, buf, len, &n);
            if (r <= 0)
                return r < 0 ? HTTP1_ERROR : HTTP1_MORE;
            ev = dc_take_line(d, buf + d->in, n);
            if (ev != HTTP1_MORE)
                return ev;
            continue;
        }
    }
}

int
http1_req_status(enum http1_why why)
{
    switch (why) {
    case HTTP1_E_BODY_BIG:
        return 413;
    case HTTP1_E_URI_LONG:
        return 414;
    case HTTP1_E_HEAD_BIG:
    case HTTP1_E_FIELDS:
    case HTTP1_E_LINE_LONG:
        return 431;
    case HTTP1_E_CODING:
        return 501;
    case HTTP1_E_EXPECT:
        return 417;
    default:
        return 400;
    }
}
