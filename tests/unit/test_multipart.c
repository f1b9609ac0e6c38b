/*
 * Tests for the media/upload body: a well-formed body and what it yields,
 * the Content-Type's boundary, each framing refusal with its errcode
 * (missing, duplicate and over-long boundaries, truncation, the boundary
 * inside the data, huge and unknown headers, two parts, CRLF variants),
 * WeCom's limits per type, and that parsing never allocates.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "multipart.h"

#define CT   "multipart/form-data; boundary=XyZ"
#define CD   "Content-Disposition: form-data; name=\"media\"; filename=\"a.png\""
#define PNG  "Content-Type: image/png"
#define DATA "\x89PNG\r\nx--XyZ\r\n-\r\n--Xy data"
#define ONE  "--XyZ\r\n" CD "\r\n" PNG "\r\n\r\n" DATA "\r\n--XyZ--\r\n"

static enum errcode
parse(const char *ct, const char *body, size_t len, struct multipart_media *m)
{
    char msg[256];
    enum errcode e;

    memset(msg, 'x', sizeof(msg));
    e = multipart_parse(ct, body, len, m, msg, sizeof(msg));
    assert_non_null(memchr(msg, '\0', sizeof(msg)));
    if (e != ERRCODE_OK)
        assert_true(strlen(msg) > 0);
    return e;
}

/* Parse a NUL-terminated body expecting want; the output untouched on a
 * refusal. */
static void
expect(const char *ct, const char *body, enum errcode want)
{
    struct multipart_media m;
    enum errcode e;

    memset(&m, 0x5a, sizeof(m));
    e = parse(ct, body, strlen(body), &m);
    if (e != want)
        fail_msg("body %s: errcode enum %d, want %d", body, (int)e, (int)want);
    if (want != ERRCODE_OK)
        assert_int_equal(m.filename[0], 0x5a);
}

static void
test_valid(void **state)
{
    struct multipart_media m;
    static const char body[] = ONE;

    (void)state;
    assert_int_equal(parse(CT, body, sizeof(body) - 1, &m), ERRCODE_OK);
    assert_int_equal(m.len, sizeof(DATA) - 1);
    assert_memory_equal(m.data, DATA, m.len);
    assert_ptr_equal(m.data,
                     body + strlen("--XyZ\r\n" CD "\r\n" PNG "\r\n\r\n"));
    assert_string_equal(m.filename, "a.png");
    assert_string_equal(m.content_type, "image/png");
}

static void
test_valid_variants(void **state)
{
    struct multipart_media m;
    /* WeCom's own sample: filelength, no space after ';', no final CRLF */
    static const char wecom[] =
        "--b-1\r\nContent-Disposition: form-data; name=\"media\";"
        "filename=\"wework.txt\"; filelength=6\r\n"
        "content-type: Application/Octet-Stream; charset=binary\r\n\r\n"
        "mytext\r\n--b-1--";

    (void)state;
    assert_int_equal(parse("Multipart/Form-Data; charset=utf-8; "
                           "boundary=\"b-1\"",
                           wecom, sizeof(wecom) - 1, &m),
                     ERRCODE_OK);
    assert_int_equal(m.len, 6);
    assert_memory_equal(m.data, "mytext", 6);
    assert_string_equal(m.filename, "wework.txt");
    assert_string_equal(m.content_type, "application/octet-stream");
    /* empty media is the limits' business, not the parser's */
    expect(CT, "--XyZ\r\n" CD "\r\n" PNG "\r\n\r\n\r\n--XyZ--", ERRCODE_OK);
    /* a boundary of 70 characters with a space inside */
    expect("multipart/form-data; boundary=\"a b'()+_,-./:=?"
           "0123456789012345678901234567890123456789012345678901234\"",
           "--a b'()+_,-./:=?"
           "0123456789012345678901234567890123456789012345678901234\r\n" CD
           "\r\n" PNG "\r\n\r\nabcdefg\r\n--a b'()+_,-./:=?"
           "0123456789012345678901234567890123456789012345678901234--",
           ERRCODE_OK);
}

static void
test_content_type(void **state)
{
    (void)state;
    expect(NULL, ONE, ERRCODE_INVALID_VALUE);
    expect("", ONE, ERRCODE_INVALID_VALUE);
    expect("application/json", ONE, ERRCODE_INVALID_VALUE);
    expect("multipart/mixed; boundary=XyZ", ONE, ERRCODE_INVALID_VALUE);
    expect("multipart/form-data", ONE, ERRCODE_INVALID_VALUE);
    expect("multipart/form-data; boundary=", ONE, ERRCODE_INVALID_VALUE);
    expect("multipart/form-data; boundary=\"\"", ONE, ERRCODE_INVALID_VALUE);
    expect("multipart/form-data; boundary=XyZ; boundary=XyZ", ONE,
           ERRCODE_INVALID_VALUE);
    expect("multipart/form-data; boundary=XyZ; BOUNDARY=abc", ONE,
           ERRCODE_INVALID_VALUE);
    expect("multipart/form-data; boundary=\"XyZ", ONE, ERRCODE_INVALID_VALUE);
    expect("multipart/form-data; boundary=\"XyZ \"", ONE,
           ERRCODE_INVALID_VALUE);
    expect("multipart/form-data; boundary=\"X\x01Z\"", ONE,
           ERRCODE_INVALID_VALUE);
    expect("multipart/form-data; boundary=\"X<Z\"", ONE, ERRCODE_INVALID_VALUE);
    expect("multipart/form-data boundary=XyZ", ONE, ERRCODE_INVALID_VALUE);
    expect("multipart/form-data; boundary=XyZ junk", ONE,
           ERRCODE_INVALID_VALUE);
    /* 71 characters */
    expect("multipart/form-data; boundary="
           "01234567890123456789012345678901234567890123456789012345678901234"
           "567890",
           ONE, ERRCODE_INVALID_VALUE);
    /* another boundary than the body's */
    expect("multipart/form-data; boundary=XyZZ", ONE, ERRCODE_INVALID_VALUE);
    expect("multipart/form-data; boundary=Xy", ONE, ERRCODE_INVALID_VALUE);
}

static void
test_framing(void **state)
{
    (void)state;
    /* a preamble, bare LF, a missing CRLF after the boundary */
    expect(CT, "junk\r\n" ONE, ERRCODE_INVALID_VALUE);
    expect(CT, "\r\n" ONE, ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ\n" CD "\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ\r\n" CD "\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ\r\n" CD "\r\n" PNG "\n\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ\r\n" CD "\r\n" PNG "\r\n\r\nabcdefg\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ\r" CD "\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ " CD "\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    /* truncated anywhere */
    expect(CT, "", ERRCODE_INVALID_VALUE);
    expect(CT, "--Xy", ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ", ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ\r\n" CD, ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ\r\n" CD "\r\n" PNG "\r\n", ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ\r\n" CD "\r\n" PNG "\r\n\r\nabcdefg",
           ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ\r\n" CD "\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ",
           ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ\r\n" CD "\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ-",
           ERRCODE_INVALID_VALUE);
    /* the boundary inside the data, then anything but the close */
    expect(CT, "--XyZ\r\n" CD "\r\n" PNG "\r\n\r\nab\r\n--XyZab\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ\r\n" CD "\r\n" PNG "\r\n\r\nab\r\n--XyZ-x\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    /* data after the close delimiter */
    expect(CT, ONE "epilogue", ERRCODE_INVALID_VALUE);
    expect(CT, ONE "\r\n", ERRCODE_INVALID_VALUE);
}

static void
test_parts(void **state)
{
    static const char second[] =
        "--XyZ\r\n" CD "\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ\r\n" CD "\r\n" PNG
        "\r\n\r\nhijklmn\r\n--XyZ--";

    (void)state;
    /* no part, a part of another name, two parts: 40035 */
    expect(CT, "--XyZ--", ERRCODE_INVALID_PARAMETER);
    expect(CT, "--XyZ--\r\n", ERRCODE_INVALID_PARAMETER);
    expect(CT,
           "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
           "filename=\"a.png\"\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_PARAMETER);
    expect(CT,
           "--XyZ\r\nContent-Disposition: form-data; name=\"Media\"; "
           "filename=\"a.png\"\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_PARAMETER);
    expect(CT,
           "--XyZ\r\nContent-Disposition: form-data; filename=\"a.png\"\r\n" PNG
           "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_PARAMETER);
    expect(CT, "--XyZ\r\n\r\nabcdefg\r\n--XyZ--", ERRCODE_INVALID_PARAMETER);
    expect(CT, second, ERRCODE_INVALID_PARAMETER);
    /* a nested multipart */
    expect(CT,
           "--XyZ\r\n" CD
           "\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\n\r\n"
           "x\r\n--in--\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
}

static void
test_headers(void **state)
{
    char *big, *p;
    size_t n;

    (void)state;
    /* no filename, an empty one, no content type */
    expect(CT,
           "--XyZ\r\nContent-Disposition: form-data; name=\"media\"\r\n" PNG
           "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT,
           "--XyZ\r\nContent-Disposition: form-data; name=\"media\"; "
           "filename=\"\"\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ\r\n" CD "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    /* repeated headers and parameters, unknown ones, folding */
    expect(CT, "--XyZ\r\n" CD "\r\n" CD "\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT,
           "--XyZ\r\n" CD "\r\n" PNG "\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT,
           "--XyZ\r\n" CD "; name=\"media\"\r\n" PNG
           "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT,
           "--XyZ\r\n" CD "; filename=\"b.png\"\r\n" PNG
           "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT,
           "--XyZ\r\n" CD "; filename*=UTF-8''a.png\r\n" PNG
           "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT,
           "--XyZ\r\n" CD "; filelength=6x\r\n" PNG
           "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT,
           "--XyZ\r\n" CD "\r\nContent-Transfer-Encoding: base64\r\n" PNG
           "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT,
           "--XyZ\r\n" CD "\r\n folded\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT, "--XyZ\r\n" CD "\r\n: x\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT,
           "--XyZ\r\nContent-Disposition: attachment; name=\"media\"; "
           "filename=\"a.png\"\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT,
           "--XyZ\r\nContent-Disposition: form-data; name=\"media\"; "
           "filename=\"a\x01.png\"\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT,
           "--XyZ\r\nContent-Disposition: form-data; name=\"media\"; "
           "filename=\"a\\\".png\"\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT,
           "--XyZ\r\n" CD "\r\nContent-Type: image\r\n\r\nabcdefg\r\n--XyZ--",
           ERRCODE_INVALID_VALUE);
    expect(CT,
           "--XyZ\r\n" CD "\r\nContent-Type: image/png x\r\n\r\nabcdefg\r\n"
           "--XyZ--",
           ERRCODE_INVALID_VALUE);
    /* a filename of 256 bytes */
    n = 300 + MULTIPART_FILENAME_MAX;
    big = malloc(n + 200);
    assert_non_null(big);
    p = big + snprintf(big, n + 200,
                       "--XyZ\r\nContent-Disposition: form-data; "
                       "name=\"media\"; filename=\"");
    memset(p, 'a', MULTIPART_FILENAME_MAX + 1);
    p += MULTIPART_FILENAME_MAX + 1;
    snprintf(p, 100, "\"\r\n" PNG "\r\n\r\nabcdefg\r\n--XyZ--");
    expect(CT, big, ERRCODE_INVALID_VALUE);
    free(big);
    /* a header block over MULTIPART_HEADERS_MAX, even if one follows */
    big = malloc(2 * MULTIPART_HEADERS_MAX + 200);
    assert_non_null(big);
    p = big + snprintf(big, 200, "--XyZ\r\n" CD "\r\n" PNG "\r\nX-Pad: ");
    memset(p, 'a', MULTIPART_HEADERS_MAX);
    p += MULTIPART_HEADERS_MAX;
    snprintf(p, 100, "\r\n\r\nabcdefg\r\n--XyZ--");
    expect(CT, big, ERRCODE_INVALID_VALUE);
    free(big);
}

static void
test_huge_body(void **state)
{
    struct multipart_media m;
    size_t n = MULTIPART_BODY_MAX + 1;
    char *b = calloc(1, n);

    (void)state;
    assert_non_null(b);
    memcpy(b, ONE, sizeof(ONE) - 1);
    assert_int_equal(parse(CT, b, n, &m), ERRCODE_INVALID_VALUE);
    assert_int_equal(parse(CT, NULL, 0, &m), ERRCODE_INVALID_VALUE);
    free(b);
}

/* The parser allocates nothing: it passes with every allocation failing. */
static void
test_no_allocation(void **state)
{
    struct multipart_media m;

    (void)state;
    brk_alloc_fail_at(1);
    assert_int_equal(parse(CT, ONE, sizeof(ONE) - 1, &m), ERRCODE_OK);
    assert_int_equal(brk_alloc_failed(), 0);
    brk_alloc_fail_at(0);
}

/* Every prefix of a valid body is refused, never read past. */
static void
test_every_prefix(void **state)
{
    struct multipart_media m;
    size_t i;
    char *b;

    (void)state;
    for (i = 0; i < sizeof(ONE) - 3; i++) {
        b = malloc(i + 1);
        assert_non_null(b);
        memcpy(b, ONE, i);
        assert_int_not_equal(parse(CT, i ? b : "", i, &m), ERRCODE_OK);
        free(b);
    }
}

static struct multipart_media
media(const char *filename, size_t len)
{
    struct multipart_media m;

    memset(&m, 0, sizeof(m));
    m.data = "";
    m.len = len;
    snprintf(m.filename, sizeof(m.filename), "%s", filename);
    snprintf(m.content_type, sizeof(m.content_type), "image/png");
    return m;
}

static void
test_limits(void **state)
{
    static const struct {
        const char *type, *name;
        size_t len;
        enum errcode want;
    } cases[] = {
        {"image", "a.png", 6, ERRCODE_OK},
        {"image", "A.JPG", 10L << 20, ERRCODE_OK},
        {"image", "a.jpeg", 1000, ERRCODE_OK},
        {"image", "a.png", 5, ERRCODE_INVALID_VALUE},
        {"image", "a.png", (10L << 20) + 1, ERRCODE_INVALID_VALUE},
        {"image", "a.gif", 1000, ERRCODE_INVALID_VALUE},
        {"image", "png", 1000, ERRCODE_INVALID_VALUE},
        {"image", "a.", 1000, ERRCODE_INVALID_VALUE},
        {"image", "a.pn", 1000, ERRCODE_INVALID_VALUE},
        {"image", "a.png.exe", 1000, ERRCODE_INVALID_VALUE},
        {"voice", "a.amr", 2L << 20, ERRCODE_OK},
        {"voice", "a.amr", (2L << 20) + 1, ERRCODE_INVALID_VALUE},
        {"voice", "a.mp3", 100, ERRCODE_INVALID_VALUE},
        {"video", "a.mp4", 10L << 20, ERRCODE_OK},
        {"video", "a.mp4", (10L << 20) + 1, ERRCODE_INVALID_VALUE},
        {"video", "a.avi", 100, ERRCODE_INVALID_VALUE},
        {"file", "noext", 20L << 20, ERRCODE_OK},
        {"file", "a.exe", 6, ERRCODE_OK},
        {"file", "a.txt", (20L << 20) + 1, ERRCODE_INVALID_VALUE},
        {"file", "a.txt", 0, ERRCODE_INVALID_VALUE},
        {"thumb", "a.png", 100, ERRCODE_INVALID_VALUE},
        {"", "a.png", 100, ERRCODE_INVALID_VALUE},
        {NULL, "a.png", 100, ERRCODE_INVALID_VALUE},
    };
    struct multipart_media m;
    char msg[128];
    size_t i;

    (void)state;
    for (i = 0; i < nitems(cases); i++) {
        m = media(cases[i].name, cases[i].len);
        msg[0] = '\0';
        if (multipart_media_check(cases[i].type, &m, msg, sizeof(msg)) !=
            cases[i].want)
            fail_msg("case %zu (%s %s %zu)", i,
                     cases[i].type ? cases[i].type : "NULL", cases[i].name,
                     cases[i].len);
        if (cases[i].want != ERRCODE_OK)
            assert_true(msg[0] != '\0');
    }
    assert_int_equal(multipart_media_max("image"), 10L << 20);
    assert_int_equal(multipart_media_max("file"), MULTIPART_MEDIA_MAX);
    assert_int_equal(multipart_media_max("thumb"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_valid_variants),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_parts),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_huge_body),
        cmocka_unit_test(test_no_allocation),
        cmocka_unit_test(test_every_prefix),
        cmocka_unit_test(test_limits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
