/*
 * Fuzz the write body check: the first byte picks a write endpoint of the
 * shipped scopes/ (FUZZ_SCOPES_DIR overrides the directory), the rest is
 * the body.
 *
 * Properties: a refusal is one of the body's errcodes and leaves nothing;
 * a body that passes is forwarded as one JSON object without repeated
 * keys, holding only declared keys of their declared types, naming as
 * many subjects as the result lists; checked again it passes unchanged.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "broker.h"
#include "scope_map.h"
#include "write_check.h"

#include "fuzz.h"

static struct scope_map *wck_shipped;

static size_t
wck_declared(const struct scope_body *d, const json_t *v)
{
    const struct scope_body *f;
    const char *k;
    const json_t *e;
    size_t i, n = d->subject != SCOPE_S_NONE;

    if (json_is_object(v)) {
        FUZZ_CHECK(d->type == SCOPE_T_OBJECT);
        json_object_foreach((json_t *)(uintptr_t)v, k, e)
        {
            f = scope_body_field(d, k, strlen(k));
            FUZZ_CHECK(f != NULL);
            n += wck_declared(f, e);
        }
    } else if (json_is_array(v)) {
        FUZZ_CHECK(d->type == SCOPE_T_ARRAY);
        json_array_foreach(v, i, e) n += wck_declared(d->items, e);
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct scope_endpoint *e = NULL;
    struct write_checked *w = NULL, *again = NULL;
    struct brk_errinfo info;
    const char *dir = getenv("FUZZ_SCOPES_DIR");
    size_t i, nwrites = 0, pick;
    json_error_t jerr;
    enum errcode code;
    char msg[256];
    json_t *out;

    if (wck_shipped == NULL &&
        scope_map_load(dir ? dir : "scopes", &wck_shipped, &info) != BRK_OK)
        return 0;
    if (size < 1)
        return 0;
    for (i = 0; i < scope_map_count(wck_shipped); i++)
        nwrites += scope_map_at(wck_shipped, i)->write != 0;
    if (nwrites == 0)
        return 0;
    pick = data[0] % nwrites;
    for (i = 0; e == NULL; i++)
        if (scope_map_at(wck_shipped, i)->write && pick-- == 0)
            e = scope_map_at(wck_shipped, i);
    code = write_check(&e->body, (const char *)data + 1, size - 1, &w, msg,
                       sizeof(msg));
    FUZZ_CHECK(memchr(msg, '\0', sizeof(msg)) != NULL);
    if (code != ERRCODE_OK) {
        FUZZ_CHECK(w == NULL);
        FUZZ_CHECK(code == ERRCODE_INVALID_PARAMETER ||
                   code == ERRCODE_INVALID_VALUE ||
                   code == ERRCODE_UNAVAILABLE);
        return 0;
    }
    FUZZ_CHECK(w != NULL && w->body != NULL && w->keys != NULL);
    out = json_loadb(w->body, w->body_len, JSON_REJECT_DUPLICATES, &jerr);
    FUZZ_CHECK(json_is_object(out));
    FUZZ_CHECK(wck_declared(&e->body, out) == w->nsubjects);
    json_decref(out);
    code =
        write_check(&e->body, w->body, w->body_len, &again, msg, sizeof(msg));
    FUZZ_CHECK(code == ERRCODE_OK);
    FUZZ_CHECK(again->body_len == w->body_len &&
               memcmp(again->body, w->body, w->body_len) == 0);
    FUZZ_CHECK(again->nsubjects == w->nsubjects);
    for (i = 0; i < w->nsubjects; i++)
        FUZZ_CHECK(again->subjects[i].kind == w->subjects[i].kind &&
                   strcmp(again->subjects[i].id, w->subjects[i].id) == 0);
    write_checked_free(again);
    write_checked_free(w);
    return 0;
}
