/*
 * media/upload's body (SPEC §5b): the caller's multipart body is parsed
 * (multipart.h) and checked against WeCom's limits for the query's type,
 * then the body WeCom gets is built by the broker around the media bytes
 * alone: one part named "media", the caller's filename and content type,
 * a boundary of the broker's. The caller's other bytes never reach WeCom.
 * The boundary derives from the media's digest, so the same upload makes
 * the same body (the idempotency key compares bodies).
 */
#include <stdio.h>
#include <string.h>

#include "multipart.h"
#include "proxy_int.h"
#include "write_store.h"

enum errcode
proxy_media_build(struct preq *q, struct proxy_media *out, char *msg,
                  size_t msglen)
{
    struct multipart_media m;
    const char *type = query_get(q->q, "type");
    char boundary[64], sha[65]; /* "wecom-broker-" 24 digest chars, an int */
    enum errcode e;
    size_t n, cap;
    char *b;
    int i, k;

    if (type == NULL) {
        snprintf(msg, msglen, "invalid parameter: type missing");
        return ERRCODE_INVALID_PARAMETER;
    }
    e = multipart_parse(httpd_header(q->r, "Content-Type"), httpd_body(q->r),
                        httpd_body_len(q->r), &m, msg, msglen);
    if (e != ERRCODE_OK)
        return e;
    e = multipart_media_check(type, &m, msg, msglen);
    if (e != ERRCODE_OK)
        return e;
    if (write_store_sha256(m.data, m.len, sha)) {
        snprintf(msg, msglen, "no digest");
        return ERRCODE_UNAVAILABLE;
    }
    /* a boundary the media does not hold: the digest's, else a variant */
    for (i = 0, k = -1; i < 10 && k < 0; i++) {
        snprintf(boundary, sizeof(boundary), "wecom-broker-%.24s%d", sha, i);
        n = strlen(boundary);
        if (m.len < n + 4 || !memmem(m.data, m.len, boundary, n))
            k = i;
    }
    if (k < 0) {
        snprintf(msg, msglen, "invalid parameter: media data");
        return ERRCODE_INVALID_VALUE;
    }
    cap = m.len + 512 + sizeof(m.filename) + sizeof(m.content_type);
    b = brk_malloc(cap);
    if (b == NULL) {
        snprintf(msg, msglen, "out of memory");
        return ERRCODE_UNAVAILABLE;
    }
    n = (size_t)snprintf(b, cap,
                         "--%s\r\nContent-Disposition: form-data; "
                         "name=\"media\"; filename=\"%s\"; filelength=%zu\r\n"
                         "Content-Type: %s\r\n\r\n",
                         boundary, m.filename, m.len, m.content_type);
    memcpy(b + n, m.data, m.len);
    n += m.len;
    n += (size_t)snprintf(b + n, cap - n, "\r\n--%s--\r\n", boundary);
    snprintf(out->ctype_line, sizeof(out->ctype_line),
             "Content-Type: multipart/form-data; boundary=%s", boundary);
    snprintf(out->part_ctype, sizeof(out->part_ctype), "%s", m.content_type);
    memcpy(out->sha, sha, sizeof(out->sha));
    out->size = m.len;
    out->body = b;
    out->len = n;
    return ERRCODE_OK;
}
