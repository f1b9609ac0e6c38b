/*
 * The body of POST /cgi-bin/media/upload (SPEC §5b): a multipart/form-data
 * body (RFC 7578, RFC 2046) holding exactly one part named "media" with a
 * filename and a content type, and WeCom's limits per media type. Strict
 * and bounded: anything else is refused before WeCom is called. Pure: no
 * I/O and no allocation; the media bytes are borrowed from the body.
 *
 * Errcodes (wecom-protocol §5.2 names neither WeCom's "media data missing"
 * nor its size codes, so the write grammar's are used):
 *   ERRCODE_INVALID_PARAMETER (40035): no part, a part not named "media",
 *     a second part — as an undeclared, missing or repeated key;
 *   ERRCODE_INVALID_VALUE (40058): everything else — the header's boundary,
 *     the delimiters, bare LF line ends, a preamble, a truncated body, a
 *     boundary inside the data, a part's headers (unknown, repeated, over
 *     MULTIPART_HEADERS_MAX, folded), a nested multipart, a missing
 *     filename or content type, and the limits of multipart_media_check.
 */
#ifndef MULTIPART_H
#define MULTIPART_H

#include <stddef.h>

#include "broker.h"
#include "errcodes.h"

/* RFC 2046: a boundary is 1..70 characters. */
#define MULTIPART_BOUNDARY_MAX 70
/* The header block of the part, in bytes, its blank line included. */
#define MULTIPART_HEADERS_MAX 1024
/* Longest filename and content type kept, in bytes. */
#define MULTIPART_FILENAME_MAX 255
#define MULTIPART_CTYPE_MAX    127
/* The largest media (file: 20 MB) and what a body may add around it. */
#define MULTIPART_MEDIA_MAX (20L * 1024 * 1024)
#define MULTIPART_BODY_MAX  (MULTIPART_MEDIA_MAX + 4096)

/* The media part of a body that parsed. */
struct multipart_media {
    const char *data; /* borrowed from the body given to multipart_parse */
    size_t len;
    char filename[MULTIPART_FILENAME_MAX + 1];
    char content_type[MULTIPART_CTYPE_MAX + 1]; /* lower-cased, no params */
};

/*
 * Parse body (len bytes) sent with the request header content_type (NULL
 * when absent). Returns ERRCODE_OK with *out; else the errcode and a
 * one-line errmsg in msg (msglen bytes) that never quotes the body.
 * *out is written only on success.
 */
enum errcode multipart_parse(const char *content_type, const char *body,
                             size_t len, struct multipart_media *out, char *msg,
                             size_t msglen) BRK_WUR;

/*
 * WeCom's limits for media of type ("image", "voice", "video", "file"):
 * more than 5 bytes; image at most 10 MB, .jpg/.jpeg/.png; voice 2 MB,
 * .amr; video 10 MB, .mp4; file 20 MB, any name. The extension is the
 * filename's, case-insensitive. Returns ERRCODE_OK, or
 * ERRCODE_INVALID_VALUE with msg (an unknown type included).
 */
enum errcode multipart_media_check(const char *type,
                                   const struct multipart_media *m, char *msg,
                                   size_t msglen) BRK_WUR;

/* The most bytes media of type may hold; 0 for an unknown type. */
size_t multipart_media_max(const char *type);

#endif /* MULTIPART_H */
