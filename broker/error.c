/*
 * The error table and the allocation wrappers every module goes through,
 * with a hook that lets tests fail a chosen allocation.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "broker.h"

static const struct {
    const char *name;
    int wecom_code;
} brk_errors[BRK_ERR__COUNT] = {
    [BRK_OK] = {"ok", 0},
    [BRK_ERR_NOMEM] = {"out_of_memory", 0},
    [BRK_ERR_INVAL] = {"invalid_input", 0},
    [BRK_ERR_TOOBIG] = {"too_big", 0},
    [BRK_ERR_IO] = {"io_error", 0},
    [BRK_ERR_CONFIG] = {"config_error", 0},
    [BRK_ERR_STORE] = {"store_unavailable", 0},
    [BRK_ERR_TIMEOUT] = {"timeout", 0},
    [BRK_ERR_NOTFOUND] = {"not_found", 0},
    [BRK_ERR_CRYPTO] = {"crypto_error", 0},
    [BRK_ERR_SHUTDOWN] = {"shutting_down", 0},
    [BRK_ERR_UPSTREAM] = {"upstream_unreachable", 0},
    [BRK_ERR_UPSTREAM_TIMEOUT] = {"upstream_timeout", 0},
    [BRK_ERR_UPSTREAM_BAD] = {"upstream_malformed", 0},
    [BRK_ERR_UPSTREAM_TOOBIG] = {"upstream_too_big", 0},
    [BRK_ERR_WECOM] = {"wecom_error", 0},
    [BRK_ERR_WX_SIGNATURE] = {"ValidateSignatureError", -40001},
    [BRK_ERR_WX_PARSE_XML] = {"ParseXmlError", -40002},
    [BRK_ERR_WX_COMPUTE_SIG] = {"ComputeSignatureError", -40003},
    [BRK_ERR_WX_AES_KEY] = {"IllegalAesKey", -40004},
    [BRK_ERR_WX_RECEIVEID] = {"ValidateCorpidError", -40005},
    [BRK_ERR_WX_ENCRYPT] = {"EncryptAESError", -40006},
    [BRK_ERR_WX_DECRYPT] = {"DecryptAESError", -40007},
    [BRK_ERR_WX_BUFFER] = {"IllegalBuffer", -40008},
    [BRK_ERR_WX_ENCODE_B64] = {"EncodeBase64Error", -40009},
    [BRK_ERR_WX_DECODE_B64] = {"DecodeBase64Error", -40010},
    [BRK_ERR_WX_GEN_XML] = {"GenReturnXmlError", -40011},
};

const char *
brk_strerror(enum brk_err err)
{
    if ((unsigned)err >= BRK_ERR__COUNT || brk_errors[err].name == NULL)
        return "unknown_error";
    return brk_errors[err].name;
}

int
brk_err_wecom_code(enum brk_err err)
{
    if ((unsigned)err >= BRK_ERR__COUNT)
        return 0;
    return brk_errors[err].wecom_code;
}

void
brk_errinfo_set(struct brk_errinfo *info, int line, long offset,
                const char *fmt, ...)
{
    va_list ap;

    if (info == NULL)
        return;
    info->line = line;
    info->offset = offset;
    va_start(ap, fmt);
    vsnprintf(info->msg, sizeof(info->msg), fmt, ap);
    va_end(ap);
}

/*---- Allocation ----*/

static unsigned long fail_countdown; /* 0: never fail */
static int fail_happened;

void
brk_alloc_fail_at(unsigned long nth)
{
    fail_countdown = nth;
    fail_happened = 0;
}

int
brk_alloc_failed(void)
{
    return fail_happened;
}

static int
should_fail(void)
{
    if (fail_countdown == 0)
        return 0;
    if (--fail_countdown == 0) {
        fail_happened = 1;
        return 1;
    }
    return 0;
}

void *
brk_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n == 0 ? 1 : n);
}

void *
brk_calloc(size_t nmemb, size_t size)
{
    if (should_fail())
        return NULL;
    return calloc(nmemb == 0 ? 1 : nmemb, size == 0 ? 1 : size);
}

void *
brk_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n == 0 ? 1 : n);
}

char *
brk_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = brk_malloc(len + 1);

    if (d == NULL)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *
brk_strdup(const char *s)
{
    return brk_strndup(s, strlen(s));
}

void
brk_free(void *p)
{
    free(p);
}

void
brk_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}

void
brk_free_secret(void *p, size_t n)
{
    if (p == NULL)
        return;
    brk_wipe(p, n);
    free(p);
}

void
brk_free_secret_str(char *s)
{
    if (s == NULL)
        return;
    brk_free_secret(s, strlen(s));
}

/*---- Clocks ----*/

long long
brk_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double
brk_mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

char *
brk_decu(char *buf, unsigned long long v)
{
    char tmp[BRK_DEC_MAX];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v != 0);
    for (i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return buf;
}

char *
brk_dec(char *buf, long long v)
{
    if (v >= 0)
        return brk_decu(buf, (unsigned long long)v);
    buf[0] = '-';
    /* LLONG_MIN's magnitude does not fit a long long: negate unsigned */
    brk_decu(buf + 1, 0ULL - (unsigned long long)v);
    return buf;
}

long long
brk_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
