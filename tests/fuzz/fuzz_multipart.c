/*
 * Fuzz the media/upload body parser: the input up to its first newline is
 * the request's Content-Type, the rest the body.
 *
 * Properties: a refusal is 40035 or 40058 and leaves the output untouched;
 * a body that passes yields media inside the body, ended by the delimiter,
 * a filename and a content type safe to quote again (no quote, no control,
 * not multipart); built again around the same media, it parses the same.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "multipart.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
mp_safe(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '"')
            return 0;
    return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct multipart_media m, again;
    const uint8_t *nl = memchr(data, '\n', size);
    char ct[256], msg[256], *b;
    const char *body;
    size_t clen, blen, n;
    enum errcode e;

    if (nl == NULL || (size_t)(nl - data) >= sizeof(ct))
        return 0;
    clen = (size_t)(nl - data);
    memcpy(ct, data, clen);
    ct[clen] = '\0';
    body = (const char *)nl + 1;
    blen = size - clen - 1;
    memset(&m, 0x5a, sizeof(m));
    e = multipart_parse(ct, body, blen, &m, msg, sizeof(msg));
    FUZZ_CHECK(memchr(msg, '\0', sizeof(msg)) != NULL);
    if (e != ERRCODE_OK) {
        FUZZ_CHECK(e == ERRCODE_INVALID_PARAMETER ||
                   e == ERRCODE_INVALID_VALUE);
        FUZZ_CHECK(m.filename[0] == 0x5a && m.content_type[0] == 0x5a);
        return 0;
    }
    FUZZ_CHECK(m.data >= body && m.len <= blen &&
               (size_t)(m.data - body) <= blen - m.len);
    FUZZ_CHECK(memcmp(m.data + m.len, "\r\n--", 4) == 0);
    FUZZ_CHECK(m.filename[0] != '\0' && mp_safe(m.filename));
    FUZZ_CHECK(m.content_type[0] != '\0' && mp_safe(m.content_type) &&
               strncmp(m.content_type, "multipart/", 10) != 0);
    n = m.len + 512;
    b = malloc(n);
    FUZZ_CHECK(b != NULL);
    n = (size_t)snprintf(b, n,
                         "--fz\r\nContent-Disposition: form-data; "
                         "name=\"media\"; filename=\"%s\"\r\n"
                         "Content-Type: %s\r\n\r\n",
                         m.filename, m.content_type);
    memcpy(b + n, m.data, m.len);
    n += m.len;
    memcpy(b + n, "\r\n--fz--", 8);
    n += 8;
    e = multipart_parse("multipart/form-data; boundary=fz", b, n, &again, msg,
                        sizeof(msg));
    /* the media may hold "\r\n--fz" itself: then it is refused, no more */
    if (memmem(m.data, m.len, "\r\n--fz", 6) == NULL) {
        FUZZ_CHECK(e == ERRCODE_OK);
        FUZZ_CHECK(again.len == m.len &&
                   memcmp(again.data, m.data, m.len) == 0);
        FUZZ_CHECK(strcmp(again.filename, m.filename) == 0 &&
                   strcmp(again.content_type, m.content_type) == 0);
    }
    free(b);
    return 0;
}
