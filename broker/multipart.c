/*
 * The multipart/form-data body of media/upload (multipart.h): one part,
 * strictly framed. Everything is checked in place over the caller's bytes;
 * nothing is allocated and nothing is copied but the filename and the
 * content type, both bounded.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http1.h"
#include "multipart.h"

#define CRLF "\r\n"

struct mp_parse {
    const char *b; /* the body */
    size_t len;
    size_t pos;
    char *msg;
    size_t msglen;
};

static enum errcode BRK_PRINTF(4, 5)
    mp_fail(char *msg, size_t msglen, enum errcode e, const char *fmt, ...)
{
    va_list ap;

    if (msglen > 0) {
        va_start(ap, fmt);
        vsnprintf(msg, msglen, fmt, ap);
        va_end(ap);
    }
    return e;
}

#define BAD(...) mp_fail(msg, msglen, ERRCODE_INVALID_VALUE, __VA_ARGS__)

/* RFC 2046 bcharsnospace */
static int
is_bchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || (c != '\0' && strchr("'()+_,-./:=?", c));
}

static const char *
skip_ows(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    return s;
}

/*
 * One parameter "; name=value" of a header value at *sp (before end): the
 * name into name (namelen bytes), the value's bounds into *v, *vlen (a
 * quoted string without its quotes: no escapes, no controls). Returns 1
 * with *sp past it, 0 at the end, -1 when malformed.
 */
static int
next_param(const char **sp, const char *end, char *name, size_t namelen,
           const char **v, size_t *vlen)
{
    const char *s = skip_ows(*sp, end), *n;
    size_t k;

    if (s == end)
        return 0;
    if (*s != ';')
        return -1;
    s = skip_ows(s + 1, end);
    for (n = s; s < end && http1_is_tchar((unsigned char)*s); s++)
        ;
    k = (size_t)(s - n);
    if (k == 0 || k >= namelen || s == end || *s != '=')
        return -1;
    memcpy(name, n, k);
    name[k] = '\0';
    s++;
    if (s < end && *s == '"') {
        *v = ++s;
        while (s < end && *s != '"') {
            if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '\\')
                return -1;
            s++;
        }
        if (s == end)
            return -1;
        *vlen = (size_t)(s - *v);
        s++;
    } else {
        for (*v = s; s < end && http1_is_tchar((unsigned char)*s); s++)
            ;
        *vlen = (size_t)(s - *v);
        if (*vlen == 0)
            return -1;
    }
    *sp = s;
    return 1;
}

/* The boundary of a Content-Type header into b (MULTIPART_BOUNDARY_MAX + 1
 * bytes). */
static enum errcode
boundary_of(const char *ct, char *b, char *msg, size_t msglen)
{
    static const char mt[] = "multipart/form-data";
    const char *s, *end, *v;
    char name[32];
    size_t vlen, i;
    int r, seen = 0;

    if (ct == NULL)
        return BAD("invalid parameter: no Content-Type");
    end = ct + strlen(ct);
    s = skip_ows(ct, end);
    if ((size_t)(end - s) < sizeof(mt) - 1 ||
        strncasecmp(s, mt, sizeof(mt) - 1) != 0)
        return BAD("invalid parameter: Content-Type is not "
                   "multipart/form-data");
    s += sizeof(mt) - 1;
    while ((r = next_param(&s, end, name, sizeof(name), &v, &vlen)) == 1) {
        if (strcasecmp(name, "boundary") != 0)
            continue;
        if (seen++)
            return BAD("invalid parameter: boundary repeated");
        /* RFC 2046: 1..70 bchars, the last one not a space */
        if (vlen < 1 || vlen > MULTIPART_BOUNDARY_MAX || v[vlen - 1] == ' ')
            return BAD("invalid parameter: boundary of 1..70 characters");
        for (i = 0; i < vlen; i++)
            if (v[i] != ' ' && !is_bchar((unsigned char)v[i]))
                return BAD("invalid parameter: boundary character");
        memcpy(b, v, vlen);
        b[vlen] = '\0';
    }
    if (r < 0)
        return BAD("invalid parameter: Content-Type parameters");
    if (!seen)
        return BAD("invalid parameter: no boundary");
    return ERRCODE_OK;
}

struct mp_part {
    int has_cd, has_ct, has_name, has_filename, has_filelength;
    int is_media;
    char filename[MULTIPART_FILENAME_MAX + 1];
    char ctype[MULTIPART_CTYPE_MAX + 1];
};

static enum errcode
disposition(const char *s, const char *end, struct mp_part *p, char *msg,
            size_t msglen)
{
    static const char fd[] = "form-data";
    const char *v;
    char name[32];
    size_t vlen, i;
    int r;

    if ((size_t)(end - s) < sizeof(fd) - 1 ||
        strncasecmp(s, fd, sizeof(fd) - 1) != 0)
        return BAD("invalid parameter: Content-Disposition is not form-data");
    s += sizeof(fd) - 1;
    while ((r = next_param(&s, end, name, sizeof(name), &v, &vlen)) == 1) {
        if (strcasecmp(name, "name") == 0) {
            if (p->has_name++)
                return BAD("invalid parameter: name repeated");
            p->is_media = vlen == 5 && memcmp(v, "media", 5) == 0;
        } else if (strcasecmp(name, "filename") == 0) {
            if (p->has_filename++)
                return BAD("invalid parameter: filename repeated");
            if (vlen == 0 || vlen > MULTIPART_FILENAME_MAX)
                return BAD("invalid parameter: filename of 1..%d bytes",
                           MULTIPART_FILENAME_MAX);
            memcpy(p->filename, v, vlen);
            p->filename[vlen] = '\0';
        } else if (strcasecmp(name, "filelength") == 0) {
            /* WeCom's own sample sends it; only its form is checked */
            if (p->has_filelength++ || vlen > 10)
                return BAD("invalid parameter: filelength");
            for (i = 0; i < vlen; i++)
                if (v[i] < '0' || v[i] > '9')
                    return BAD("invalid parameter: filelength");
        } else {
            return BAD("invalid parameter: Content-Disposition parameter");
        }
    }
    if (r < 0)
        return BAD("invalid parameter: Content-Disposition parameters");
    return ERRCODE_OK;
}

static enum errcode
content_type(const char *s, const char *end, struct mp_part *p, char *msg,
             size_t msglen)
{
    const char *t = s;
    size_t n, i;

    while (s < end && http1_is_tchar((unsigned char)*s))
        s++;
    if (s == t || s == end || *s != '/')
        return BAD("invalid parameter: the part's Content-Type");
    s++;
    if (s == end || !http1_is_tchar((unsigned char)*s))
        return BAD("invalid parameter: the part's Content-Type");
    while (s < end && http1_is_tchar((unsigned char)*s))
        s++;
    n = (size_t)(s - t);
    if (n > MULTIPART_CTYPE_MAX)
        return BAD("invalid parameter: the part's Content-Type is too long");
    /* parameters (a charset) are allowed but not kept */
    if (s != end && *skip_ows(s, end) != ';')
        return BAD("invalid parameter: the part's Content-Type");
    for (i = 0; i < n; i++)
        p->ctype[i] = (char)(t[i] >= 'A' && t[i] <= 'Z' ? t[i] + 32 : t[i]);
    p->ctype[n] = '\0';
    if (strncmp(p->ctype, "multipart/", 10) == 0)
        return BAD("invalid parameter: nested multipart");
    return ERRCODE_OK;
}

/* The header block of a part at s (n bytes, its final blank line
 * excluded, every line ending in CRLF). */
static enum errcode
part_headers(const char *s, size_t n, struct mp_part *p, char *msg,
             size_t msglen)
{
    const char *end = s + n, *eol, *colon, *v, *ve;
    enum errcode e;
    size_t k;

    while (s < end) {
        eol = memmem(s, (size_t)(end - s), CRLF, 2);
        if (eol == NULL)
            return BAD("invalid parameter: the part's headers");
        if (*s == ' ' || *s == '\t')
            return BAD("invalid parameter: folded header");
        for (v = s; v < eol; v++)
            if (*v == '\r' || *v == '\n' || *v == '\0')
                return BAD("invalid parameter: bare CR or LF in a header");
        colon = memchr(s, ':', (size_t)(eol - s));
        if (colon == NULL || colon == s)
            return BAD("invalid parameter: the part's headers");
        for (v = s; v < colon; v++)
            if (!http1_is_tchar((unsigned char)*v))
                return BAD("invalid parameter: header name");
        k = (size_t)(colon - s);
        v = skip_ows(colon + 1, eol);
        for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
            ;
        if (k == 19 && strncasecmp(s, "Content-Disposition", k) == 0) {
            if (p->has_cd++)
                return BAD("invalid parameter: Content-Disposition repeated");
            e = disposition(v, ve, p, msg, msglen);
        } else if (k == 12 && strncasecmp(s, "Content-Type", k) == 0) {
            if (p->has_ct++)
                return BAD("invalid parameter: Content-Type repeated");
            e = content_type(v, ve, p, msg, msglen);
        } else {
            e = BAD("invalid parameter: unknown header in the part");
        }
        if (e != ERRCODE_OK)
            return e;
        s = eol + 2;
    }
    return ERRCODE_OK;
}

enum errcode
multipart_parse(const char *ctype, const char *body, size_t len,
                struct multipart_media *out, char *msg, size_t msglen)
{
    char b[MULTIPART_BOUNDARY_MAX + 1], delim[MULTIPART_BOUNDARY_MAX + 5];
    struct mp_part p;
    const char *hdr, *hend, *data, *next, *end;
    size_t dlen, hmax;
    enum errcode e;

    if (msglen > 0)
        msg[0] = '\0';
    e = boundary_of(ctype, b, msg, msglen);
    if (e != ERRCODE_OK)
        return e;
    if (body == NULL || len > MULTIPART_BODY_MAX)
        return BAD("invalid parameter: body empty or over %ld bytes",
                   (long)MULTIPART_BODY_MAX);
    /* the delimiter inside the body is CRLF "--" boundary */
    dlen = (size_t)snprintf(delim, sizeof(delim), CRLF "--%s", b);
    end = body + len;
    /* no preamble: the body starts with the first delimiter */
    if (len < dlen - 2 || memcmp(body, delim + 2, dlen - 2) != 0)
        return BAD("invalid parameter: the body does not start with the "
                   "boundary");
    hdr = body + dlen - 2;
    if (end - hdr >= 2 && memcmp(hdr, "--", 2) == 0)
        return mp_fail(msg, msglen, ERRCODE_INVALID_PARAMETER,
                       "invalid parameter: no media part");
    if (end - hdr < 2 || memcmp(hdr, CRLF, 2) != 0)
        return BAD("invalid parameter: the boundary line");
    hdr += 2;
    /* the header block, bounded, ends with an empty line */
    hmax = (size_t)(end - hdr) < MULTIPART_HEADERS_MAX ? (size_t)(end - hdr)
                                                       : MULTIPART_HEADERS_MAX;
    if (hmax >= 2 && memcmp(hdr, CRLF, 2) == 0)
        hend = hdr;
    else
        hend = memmem(hdr, hmax, CRLF CRLF, 4);
    if (hend == NULL)
        return BAD(hmax == MULTIPART_HEADERS_MAX
                       ? "invalid parameter: the part's headers exceed %d "
                         "bytes"
                       : "invalid parameter: truncated body (%d)",
                   MULTIPART_HEADERS_MAX);
    memset(&p, 0, sizeof(p));
    if (hend > hdr) {
        e = part_headers(hdr, (size_t)(hend - hdr) + 2, &p, msg, msglen);
        if (e != ERRCODE_OK)
            return e;
        data = hend + 4;
    } else {
        data = hend + 2;
    }
    next = memmem(data, (size_t)(end - data), delim, dlen);
    if (next == NULL)
        return BAD("invalid parameter: truncated body");
    next += dlen;
    if (end - next >= 2 && memcmp(next, "--", 2) == 0) {
        /* the close delimiter; nothing but a final CRLF after it */
        if (!(end == next + 2 ||
              (end == next + 4 && memcmp(next + 2, CRLF, 2) == 0)))
            return BAD("invalid parameter: data after the last boundary");
    } else if (end - next >= 2 && memcmp(next, CRLF, 2) == 0) {
        return mp_fail(msg, msglen, ERRCODE_INVALID_PARAMETER,
                       "invalid parameter: one part only, named media");
    } else {
        return BAD("invalid parameter: the boundary inside the data");
    }
    if (!p.has_name || !p.is_media)
        return mp_fail(msg, msglen, ERRCODE_INVALID_PARAMETER,
                       "invalid parameter: no part named media");
    if (!p.has_filename)
        return BAD("invalid parameter: the media part has no filename");
    if (!p.has_ct)
        return BAD("invalid parameter: the media part has no Content-Type");
    out->data = data;
    out->len = (size_t)(next - dlen - data);
    memcpy(out->filename, p.filename, sizeof(out->filename));
    memcpy(out->content_type, p.ctype, sizeof(out->content_type));
    return ERRCODE_OK;
}

/*---- WeCom's limits ----*/

static const struct media_kind {
    const char *type;
    size_t max;
    const char *exts; /* ".a.b." lower-case; NULL: any */
} kinds[] = {
    {"image", 10L * 1024 * 1024, ".jpg.jpeg.png."},
    {"voice", 2L * 1024 * 1024, ".amr."},
    {"video", 10L * 1024 * 1024, ".mp4."},
    {"file", MULTIPART_MEDIA_MAX, NULL},
};

static const struct media_kind *
kind_of(const char *type)
{
    size_t i;

    for (i = 0; type != NULL && i < nitems(kinds); i++)
        if (strcmp(kinds[i].type, type) == 0)
            return &kinds[i];
    return NULL;
}

size_t
multipart_media_max(const char *type)
{
    const struct media_kind *k = kind_of(type);

    return k != NULL ? k->max : 0;
}

enum errcode
multipart_media_check(const char *type, const struct multipart_media *m,
                      char *msg, size_t msglen)
{
    const struct media_kind *k = kind_of(type);
    char ext[8];
    const char *dot;
    size_t n, i;

    if (k == NULL)
        return BAD("invalid parameter: type is image, voice, video or file");
    if (m->len <= 5 || m->len > k->max)
        return BAD("invalid media size: %s is 6..%zu bytes", k->type, k->max);
    if (k->exts == NULL)
        return ERRCODE_OK;
    dot = strrchr(m->filename, '.');
    n = dot != NULL ? strlen(dot) : 0;
    if (n < 2 || n + 2 > sizeof(ext))
        return BAD("invalid media type for %s", k->type);
    for (i = 0; i < n; i++)
        ext[i] = (char)(dot[i] >= 'A' && dot[i] <= 'Z' ? dot[i] + 32 : dot[i]);
    ext[n] = '.';
    ext[n + 1] = '\0';
    if (strstr(k->exts, ext) == NULL)
        return BAD("invalid media type for %s", k->type);
    return ERRCODE_OK;
}
