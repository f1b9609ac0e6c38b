/*
 * Integration tests' client of the broker's HTTP side (see svcclient.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "svcclient.h"

static size_t
body_cb(char *p, size_t size, size_t n, void *arg)
{
    struct sc_resp *r = arg;
    size_t add = size * n;
    char *nb = realloc(r->body, r->len + add + 1);

    if (nb == NULL)
        return 0;
    r->body = nb;
    memcpy(r->body + r->len, p, add);
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static int
header_is(const char *p, size_t len, const char *name)
{
    size_t n = strlen(name);

    return len > n && strncasecmp(p, name, n) == 0;
}

static size_t
hdr_cb(char *p, size_t size, size_t n, void *arg)
{
    struct sc_resp *r = arg;
    size_t len = size * n;

    if (header_is(p, len, "Location: ")) {
        free(r->loc);
        r->loc = strndup(p + 10, len - 10);
        if (r->loc != NULL)
            r->loc[strcspn(r->loc, "\r\n")] = '\0';
    } else if (header_is(p, len, "X-Broker-Stripped:")) {
        r->stripped = strtol(p + 18, NULL, 10);
    } else if (header_is(p, len, "X-Broker-Dropped:")) {
        r->dropped = strtol(p + 17, NULL, 10);
    }
    return len;
}

void
sc_resp_init(struct sc_resp *r)
{
    memset(r, 0, sizeof(*r));
    r->status = -1;
    r->stripped = -1;
    r->dropped = -1;
}

void
sc_resp_free(struct sc_resp *r)
{
    free(r->body);
    free(r->loc);
    json_decref(r->json);
    sc_resp_init(r);
}

void
sc_resp_parse(struct sc_resp *r)
{
    json_error_t e;

    if (r->body != NULL && r->json == NULL)
        r->json = json_loadb(r->body, r->len, 0, &e);
}

CURL *
sc_easy(struct sc_resp *r, const char *method, const char *url,
        const char *body, size_t blen, const char *src)
{
    CURL *c = curl_easy_init();
    const char *hash = strchr(url, '#');
    char u[8192];

    assert_non_null(c);
    sc_resp_init(r);
    snprintf(u, sizeof(u), "%.*s", hash ? (int)(hash - url) : (int)strlen(url),
             url);
    /* libcurl copies the URL */
    curl_easy_setopt(c, CURLOPT_URL, u);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, hdr_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    if (src != NULL)
        curl_easy_setopt(c, CURLOPT_INTERFACE, src);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    }
    return c;
}

void
sc_resp_done(CURL *c, struct sc_resp *r)
{
    long st = 0;

    if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st) == CURLE_OK &&
        st != 0)
        r->status = st;
    sc_resp_parse(r);
}

void
sc_perform(CURL *c, struct sc_resp *r)
{
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
    sc_resp_parse(r);
}

void
sc_fetch(struct sc_resp *r, const char *method, const char *url,
         const char *body, const char *src, const char *hdr)
{
    CURL *c = sc_easy(r, method, url, body, body ? strlen(body) : 0, src);
    struct curl_slist *hl = NULL;

    if (hdr != NULL) {
        hl = curl_slist_append(NULL, hdr);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    }
    sc_perform(c, r);
    curl_slist_free_all(hl);
}

void
sc_call(struct sc_resp *r, int port, const char *method, const char *body,
        const char *fmt, ...)
{
    char pq[4096], url[4200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(pq, sizeof(pq), fmt, ap);
    va_end(ap);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, pq);
    sc_fetch(r, method, url, body, NULL, NULL);
}

long
sc_ecode(const struct sc_resp *r)
{
    json_t *v = json_object_get(r->json, "errcode");

    return json_is_integer(v) ? (long)json_integer_value(v) : -9999;
}
