/*
 * Strict text codecs: standard base64 (RFC 4648, padding required, no
 * whitespace), lowercase hex, and URL percent-decoding that leaves '+' alone.
 */
#ifndef CODEC_H
#define CODEC_H

#include <stddef.h>

#include "broker.h"

/* Bytes needed to hold base64 of n bytes, NUL included. */
#define CODEC_B64_ENC_SIZE(n) ((((n) + 2) / 3) * 4 + 1)

/* Encode n bytes; out must hold CODEC_B64_ENC_SIZE(n). Cannot fail. */
void codec_b64_encode(const unsigned char *in, size_t n, char *out);

/*
 * Decode strict standard base64 of length n into out (at most cap bytes).
 * Returns BRK_OK and *outlen, BRK_ERR_INVAL for any character outside the
 * alphabet, misplaced '=' or a length not a multiple of 4, or
 * BRK_ERR_TOOBIG when cap is too small. out is untouched on error except for
 * bytes already written.
 */
enum brk_err codec_b64_decode(const char *in, size_t n, unsigned char *out,
                              size_t cap, size_t *outlen) BRK_WUR;

/* The value of one hex digit (either case), or -1 for any other byte. */
int codec_hex_val(unsigned char c);

/* Hex-encode n bytes into out (2n+1 bytes). Cannot fail. */
void codec_hex_encode(const unsigned char *in, size_t n, char *out);

/* Decode exactly 2*n hex digits (either case) into n bytes. */
enum brk_err codec_hex_decode(const char *in, size_t inlen, unsigned char *out,
                              size_t n) BRK_WUR;

/*
 * Percent-decode n bytes into out (capacity >= n+1), NUL-terminated. '+' is
 * kept as '+'. BRK_ERR_INVAL for a malformed escape or a decoded NUL.
 */
enum brk_err codec_pct_decode(const char *in, size_t n, char *out,
                              size_t *outlen) BRK_WUR;

/* Append the percent-encoding of s (RFC 3986 unreserved kept) to out,
 * which must hold 3*strlen(s)+1 bytes. Cannot fail. */
void codec_pct_encode(const char *s, char *out);

#endif /* CODEC_H */
