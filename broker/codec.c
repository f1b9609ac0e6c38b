/*
 * Strict base64, hex and percent codecs (see codec.h). Strictness matters:
 * a lenient decoder lets two different wire strings sign differently but
 * decrypt the same.
 */
#include <string.h>

#include "codec.h"

static const char b64_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void
codec_b64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t i, o = 0;
    unsigned v;

    for (i = 0; i + 2 < n; i += 3) {
        v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alpha[(v >> 18) & 63];
        out[o++] = b64_alpha[(v >> 12) & 63];
        out[o++] = b64_alpha[(v >> 6) & 63];
        out[o++] = b64_alpha[v & 63];
    }
    if (i < n) {
        v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        out[o++] = b64_alpha[(v >> 18) & 63];
        out[o++] = b64_alpha[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64_alpha[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
}

static int
b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

enum brk_err
codec_b64_decode(const char *in, size_t n, unsigned char *out, size_t cap,
                 size_t *outlen)
{
    size_t i, o = 0, pad = 0, need;
    int v[4], k;

    if (n % 4 != 0)
        return BRK_ERR_INVAL;
    if (n >= 1 && in[n - 1] == '=')
        pad++;
    if (n >= 2 && in[n - 2] == '=')
        pad++;
    need = n / 4 * 3 - pad;
    if (need > cap)
        return BRK_ERR_TOOBIG;
    for (i = 0; i < n; i += 4) {
        for (k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            if (c == '=' && i + 4 == n && k >= 4 - (int)pad) {
                v[k] = 0;
                continue;
            }
            v[k] = b64_val(c);
            if (v[k] < 0)
                return BRK_ERR_INVAL;
        }
        /* non-zero bits hidden under the padding make encodings ambiguous */
        if (i + 4 == n && pad == 1 && (v[2] & 3) != 0)
            return BRK_ERR_INVAL;
        if (i + 4 == n && pad == 2 && (v[1] & 15) != 0)
            return BRK_ERR_INVAL;
        out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
        if (o < need)
            out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
        if (o < need)
            out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
    }
    *outlen = need;
    return BRK_OK;
}

void
codec_hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int
codec_hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

enum brk_err
codec_hex_decode(const char *in, size_t inlen, unsigned char *out, size_t n)
{
    size_t i;
    int hi, lo;

    if (inlen != 2 * n)
        return BRK_ERR_INVAL;
    for (i = 0; i < n; i++) {
        hi = codec_hex_val((unsigned char)in[2 * i]);
        lo = codec_hex_val((unsigned char)in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return BRK_ERR_INVAL;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return BRK_OK;
}

enum brk_err
codec_pct_decode(const char *in, size_t n, char *out, size_t *outlen)
{
    size_t i, o = 0;
    int hi, lo;

    for (i = 0; i < n; i++) {
        if (in[i] == '%') {
            if (n - i < 3)
                return BRK_ERR_INVAL;
            hi = codec_hex_val((unsigned char)in[i + 1]);
            lo = codec_hex_val((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return BRK_ERR_INVAL;
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (in[i] == '\0') {
            return BRK_ERR_INVAL;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = '\0';
    *outlen = o;
    return BRK_OK;
}

void
codec_pct_encode(const char *s, char *out)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t o = 0;
    unsigned char c;

    for (; *s != '\0'; s++) {
        c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
            c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = digits[c >> 4];
            out[o++] = digits[c & 15];
        }
    }
    out[o] = '\0';
}
