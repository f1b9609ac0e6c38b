/*
 * Cross-cutting definitions shared by every module: the one error enum,
 * parser error details, allocation wrappers and small helpers.
 */
#ifndef BROKER_H
#define BROKER_H

#include <stddef.h>
#include <stdint.h>

#define BROKER_VERSION "0.1.0"

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

#define BRK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define BRK_WUR          __attribute__((warn_unused_result))

/*
 * Every fallible function returns one of these. The WX_ codes mirror the
 * official callback sample's -4000x family so logs read like WeCom's docs.
 */
enum brk_err {
    BRK_OK = 0,
    BRK_ERR_NOMEM,
    BRK_ERR_INVAL,            /* malformed input */
    BRK_ERR_TOOBIG,           /* input over a configured bound */
    BRK_ERR_IO,               /* file or socket error; errno is meaningful */
    BRK_ERR_CONFIG,           /* configuration rejected */
    BRK_ERR_STORE,            /* Redis unavailable or replied with an error */
    BRK_ERR_TIMEOUT,          /* an operation passed its deadline */
    BRK_ERR_NOTFOUND,         /* the looked-up thing does not exist */
    BRK_ERR_CRYPTO,           /* sealing, unwrapping or a key failed */
    BRK_ERR_SHUTDOWN,         /* the operation was abandoned at exit */
    BRK_ERR_UPSTREAM,         /* WeCom unreachable (connect/transport) */
    BRK_ERR_UPSTREAM_TIMEOUT, /* WeCom did not answer in time */
    BRK_ERR_UPSTREAM_BAD,     /* WeCom answered something that is not the
                                 expected JSON (or an HTTP error status) */
    BRK_ERR_UPSTREAM_TOOBIG,  /* WeCom's body passed upstream_max_body */
    BRK_ERR_WECOM,            /* WeCom answered with a non-zero errcode */
    BRK_ERR_WX_SIGNATURE,     /* -40001 ValidateSignatureError */
    BRK_ERR_WX_PARSE_XML,     /* -40002 ParseXmlError */
    BRK_ERR_WX_COMPUTE_SIG,   /* -40003 ComputeSignatureError */
    BRK_ERR_WX_AES_KEY,       /* -40004 IllegalAesKey */
    BRK_ERR_WX_RECEIVEID,     /* -40005 ValidateCorpidError */
    BRK_ERR_WX_ENCRYPT,       /* -40006 EncryptAESError */
    BRK_ERR_WX_DECRYPT,       /* -40007 DecryptAESError */
    BRK_ERR_WX_BUFFER,        /* -40008 IllegalBuffer */
    BRK_ERR_WX_ENCODE_B64,    /* -40009 EncodeBase64Error */
    BRK_ERR_WX_DECODE_B64,    /* -40010 DecodeBase64Error */
    BRK_ERR_WX_GEN_XML,       /* -40011 GenReturnXmlError */
    BRK_ERR__COUNT
};

/* Where and why a parser or loader refused its input. */
struct brk_errinfo {
    char msg[160];
    int line;    /* 1-based line, 0 when not applicable */
    long offset; /* byte offset, -1 when not applicable */
};

/* Stable snake_case name of an error, for logs and metric labels. */
const char *brk_strerror(enum brk_err err);

/* The official WeCom sample code (-40001...-40011) of an error, or 0. */
int brk_err_wecom_code(enum brk_err err);

/* Fill info (may be NULL) with a formatted message. */
void brk_errinfo_set(struct brk_errinfo *info, int line, long offset,
                     const char *fmt, ...) BRK_PRINTF(4, 5);

/*
 * Allocation wrappers. Every module allocates through these so tests can
 * fail the Nth allocation (brk_alloc_fail_at) and check no path leaks.
 */
void *brk_malloc(size_t n);
void *brk_calloc(size_t nmemb, size_t size);
void *brk_realloc(void *p, size_t n);
char *brk_strdup(const char *s);
char *brk_strndup(const char *s, size_t n);
void brk_free(void *p);

/* Make the nth allocation from now fail (1 = the next); 0 disables. */
void brk_alloc_fail_at(unsigned long nth);
/* Nonzero once an injected failure has happened since the last arm. */
int brk_alloc_failed(void);

/* Milliseconds of the monotonic clock (intervals, deadlines). */
long long brk_mono_ms(void);
/* The monotonic clock in seconds, to the nanosecond (durations). */
double brk_mono_s(void);
/* Milliseconds since the epoch (timestamps stored or compared with
 * other hosts). */
long long brk_wall_ms(void);

/* Bytes a long long or an unsigned long long takes in decimal, with its
 * sign and the NUL. */
#define BRK_DEC_MAX 21
/* v in decimal into buf (BRK_DEC_MAX bytes at least); returns buf. Without
 * printf: the request path formats several numbers per request. */
char *brk_dec(char *buf, long long v);
char *brk_decu(char *buf, unsigned long long v);

/* Overwrite a buffer holding secret material; never optimised out. */
void brk_wipe(void *p, size_t n);
/* brk_wipe then brk_free; NULL is a no-op. */
void brk_free_secret(void *p, size_t n);
/* Wipe and free a NUL-terminated secret string; NULL is a no-op. */
void brk_free_secret_str(char *s);

#endif /* BROKER_H */
