/*
 * HTTP/1.1 response parser (see http1.h). Lines are found with memchr and
 * read in place when a piece of input holds them whole; a line split over
 * pieces is gathered in the parser's own bounded buffer. Body bytes are
 * never copied. Every refusal is final.
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

void
http1_init(struct http1 *p, const struct http1_limits *lim)
{
    /* the line buffer needs no clearing: nline says what is in it */
    memset(p, 0, offsetof(struct http1, line));
    p->lim = lim != NULL ? *lim : http1_limits_default;
    if (p->lim.line_max == 0 || p->lim.line_max > HTTP1_LINE_MAX)
        p->lim.line_max = HTTP1_LINE_MAX;
    p->state = S_STATUS;
}

static enum http1_ev
fail(struct http1 *p, enum http1_why why)
{
    p->state = S_ERROR;
    p->why = why;
    return HTTP1_ERROR;
}

/* RFC 9110 tchar */
static int
is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
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

/* Connection: a list of tokens; only "close" matters. */
static void
connection_tokens(struct http1 *p, const char *v, size_t n)
{
    size_t i = 0, start, end;

    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        start = i;
        while (i < n && v[i] != ',')
            i++;
        end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (value_is(v + start, end - start, "close"))
            p->close = 1;
    }
}

static enum http1_ev
content_length(struct http1 *p, const char *v, size_t n)
{
    uint64_t val = 0;
    size_t i;

    if (n == 0)
        return fail(p, HTTP1_E_LENGTH);
    for (i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return fail(p, HTTP1_E_LENGTH);
        if (val > (UINT64_MAX - (uint64_t)(v[i] - '0')) / 10)
            return fail(p, HTTP1_E_LENGTH);
        val = val * 10 + (uint64_t)(v[i] - '0');
    }
    if (p->has_length && p->length != val)
        return fail(p, HTTP1_E_LENGTHS);
    p->has_length = 1;
    p->length = val;
    return HTTP1_MORE;
}

/*
 * One header or trailer line, not empty. interpret: a final response's
 * header (framing and Connection are read); otherwise only checked.
 */
static enum http1_ev
field_line(struct http1 *p, const char *s, size_t n, int interpret)
{
    size_t i = 0, name_len, vs, ve;

    if (s[0] == ' ' || s[0] == '\t')
        return fail(p, HTTP1_E_FOLD);
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i == n || s[i] != ':')
        return fail(p,
                    ctl_why((unsigned char)(i < n ? s[i] : 0), HTTP1_E_FIELD));
    name_len = i;
    if (++p->nfields > p->lim.fields)
        return fail(p, HTTP1_E_FIELDS);
    vs = i + 1;
    while (vs < n && (s[vs] == ' ' || s[vs] == '\t'))
        vs++;
    ve = n;
    while (ve > vs && (s[ve - 1] == ' ' || s[ve - 1] == '\t'))
        ve--;
    for (i = vs; i < ve; i++)
        if (!is_text((unsigned char)s[i]))
            return fail(p, ctl_why((unsigned char)s[i], HTTP1_E_FIELD));
    if (!interpret)
        return HTTP1_MORE;
    if (value_is(s, name_len, "content-length"))
        return content_length(p, s + vs, ve - vs);
    if (value_is(s, name_len, "transfer-encoding")) {
        /* one coding, chunked, said once: anything else may be framed
         * differently by someone else on the path */
        if (p->saw_te || !value_is(s + vs, ve - vs, "chunked"))
            return fail(p, HTTP1_E_CODING);
        p->saw_te = p->chunked = 1;
        return HTTP1_MORE;
    }
    if (value_is(s, name_len, "connection"))
        connection_tokens(p, s + vs, ve - vs);
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

static enum http1_ev
chunk_size(struct http1 *p, const char *s, size_t n)
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
            return fail(p, HTTP1_E_CHUNK_SIZE);
        val = val * 16 + (uint64_t)d;
    }
    if (i == 0 || val > CHUNK_SIZE_MAX)
        return fail(p, HTTP1_E_CHUNK_SIZE);
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i < n && s[i] != ';')
        return fail(p, ctl_why((unsigned char)s[i], HTTP1_E_CHUNK_SIZE));
    /* extensions are ignored, but must be text */
    for (; i < n; i++)
        if (!is_text((unsigned char)s[i]))
            return fail(p, ctl_why((unsigned char)s[i], HTTP1_E_CHUNK_EXT));
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
    };

    if ((unsigned)why >= nitems(names))
        return "unknown";
    return names[why];
}
