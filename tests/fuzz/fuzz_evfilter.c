/*
 * Fuzz the event filter over the shipped scopes/events.json (FUZZ_SCOPES_DIR
 * overrides the directory): the service and the document come from the
 * input.
 *
 *   SEL GRANT(16) CAPS FLAGS DOCUMENT
 *
 * SEL bit 0: a data callback (else a command one); bit 1: no corpid known.
 * GRANT is the permission bit set, for the tenant and the service alike.
 * CAPS & CAP_ALL are the service's capabilities. FLAGS bit 0: the service
 * has a range of its own; bits 1-2: the range (0 no callback, 1 nothing in
 * range, 2 a hash of kind and id, 3 the hash, or "cannot tell" for ids
 * whose hash says so); bits 3-7 seed the hash.
 *
 * Properties: a failed call leaves the result alone; a refused event has no
 * XML; a delivered one parses back, holds only declared elements the
 * service may see, no secret, the tenant's AuthCorpId (command callbacks),
 * no list item and no checked subject the range refuses; filtering the
 * output again gives the same output (the filter is idempotent).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "capability.h"
#include "evfilter.h"
#include "scope_events.h"
#include "scope_map.h"
#include "wecom_xml.h"

#include "fuzz.h"

#define EVF_SCOPES_DEFAULT "scopes"
#define EVF_CORP           "wwfuzzcorp"

static struct scope_map *evf_map;

static void
evf_init(void)
{
    struct brk_errinfo info = {"", 0, -1};
    const char *dir = getenv("FUZZ_SCOPES_DIR");

    if (evf_map != NULL)
        return;
    if (dir == NULL)
        dir = EVF_SCOPES_DEFAULT;
    if (scope_map_load(dir, &evf_map, &info) != BRK_OK) {
        fprintf(stderr,
                "fuzz_evfilter: %s: %s (run from the source tree or set "
                "FUZZ_SCOPES_DIR)\n",
                dir, info.msg);
        abort();
    }
}

struct evf_range {
    int mode;
    uint8_t seed;
};

/* 1 in range, 0 out, -1 cannot tell (mode 3 only); a pure function. */
static int
evf_range_answer(const struct evf_range *r, enum scope_record kind,
                 const char *id)
{
    uint32_t h = fuzz_hash(id, strlen(id)) ^ ((uint32_t)kind * 0x9e3779b9u);

    if (r->mode == 1)
        return 0;
    if (r->mode == 3 && ((h >> 7) + r->seed) % 11 == 0)
        return -1;
    return ((h >> 3) + r->seed) % 4 != 0;
}

static int
evf_in_range(void *arg, enum scope_record kind, const char *id)
{
    return evf_range_answer(arg, kind, id);
}

static int
evf_is_secret(const char *name)
{
    return strcmp(name, "AuthCode") == 0 || strcmp(name, "SuiteTicket") == 0 ||
           strcmp(name, "PermanentCode") == 0;
}

/* Every item of a delivered record list is one the range keeps. */
static void
evf_check_items(const struct wecom_xml_node *x, const struct scope_node *n,
                const struct evf_range *r, int has_cb)
{
    const char *p, *sep;
    char id[256];
    size_t i, l;

    if (n->type == SCOPE_T_OBJECT) {
        for (i = 0; i < x->nchildren; i++) {
            const struct scope_node *f = scope_node_field(
                n, x->children[i].name, strlen(x->children[i].name));

            FUZZ_CHECK(f != NULL);
            evf_check_items(&x->children[i], f, r, has_cb);
        }
        return;
    }
    if (n->type != SCOPE_T_ARRAY)
        return;
    if (n->separator == 0) {
        for (i = 0; i < x->nchildren; i++) {
            FUZZ_CHECK(strcmp(x->children[i].name, "Item") == 0);
            if (n->items->record != SCOPE_REC_NONE) {
                FUZZ_CHECK(has_cb);
                FUZZ_CHECK(evf_range_answer(r, n->items->record,
                                            x->children[i].text) == 1);
            }
            evf_check_items(&x->children[i], n->items, r, has_cb);
        }
        return;
    }
    if (n->items->record == SCOPE_REC_NONE || x->text_len == 0)
        return;
    FUZZ_CHECK(has_cb);
    for (p = x->text;; p = sep + 1) {
        sep = strchr(p, n->separator);
        l = sep ? (size_t)(sep - p) : strlen(p);
        FUZZ_CHECK(l < sizeof(id));
        memcpy(id, p, l);
        id[l] = '\0';
        FUZZ_CHECK(evf_range_answer(r, n->items->record, id) == 1);
        if (sep == NULL)
            break;
    }
}

/* A delivered result against the declaration and the service. */
static void
evf_check_delivered(const struct evfilter_result *res,
                    const struct evfilter_ask *ask, const struct evf_range *r)
{
    const struct scope_event *ev = res->event;
    const struct wecom_xml_node *root, *c;
    const struct scope_node *f;
    struct wecom_xml_limits lim = {4 * EVFILTER_MAX_BYTES, 0, 0, 0};
    struct wecom_xml *x = NULL;
    size_t i;

    FUZZ_CHECK(ev != NULL);
    FUZZ_CHECK(res->xml != NULL && res->kept != NULL && res->removed != NULL);
    FUZZ_CHECK(strlen(res->xml) == res->xml_len);
    FUZZ_CHECK(wecom_xml_parse(res->xml, res->xml_len, &lim, &x, NULL) ==
               BRK_OK);
    root = wecom_xml_root(x);
    for (i = 0; i < root->nchildren; i++) {
        c = &root->children[i];
        FUZZ_CHECK(!evf_is_secret(c->name));
        f = scope_node_field(&ev->root, c->name, strlen(c->name));
        FUZZ_CHECK(f != NULL);
        FUZZ_CHECK(evfilter_field_kept(f, ask, NULL));
        evf_check_items(c, f, r, ask->in_range != NULL);
    }
    if (ev->callback == SCOPE_CB_COMMAND) {
        FUZZ_CHECK(wecom_xml_get(x, "AuthCorpId") != NULL);
        if (ask->corpid != NULL)
            FUZZ_CHECK(strcmp(wecom_xml_get(x, "AuthCorpId"), ask->corpid) ==
                       0);
    }
    for (i = 0; i < res->nsubjects; i++) {
        FUZZ_CHECK(res->subjects[i].id != NULL);
        if (res->subjects[i].checked)
            FUZZ_CHECK(evf_range_answer(r, res->subjects[i].kind,
                                        res->subjects[i].id) == 1);
        else
            FUZZ_CHECK(res->subjects[i].kind == SCOPE_REC_CHAT &&
                       !ask->own_range);
    }
    wecom_xml_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct scope_grant g;
    struct evf_range range;
    struct evfilter_ask ask;
    struct evfilter_result res, again;
    const uint8_t *gb, *doc;
    uint8_t sel, flags;
    size_t n, dlen, i;
    enum brk_err err;

    evf_init();
    sel = fuzz_byte(&in);
    gb = fuzz_take(&in, 16, &n);
    if (n != 16)
        return 0;
    scope_grant_clear(&g);
    for (i = 0; i < 16; i++)
        g.bits[i / 8] |= (uint64_t)gb[i] << (8 * (i % 8));
    memset(&ask, 0, sizeof(ask));
    ask.callback = (sel & 1) ? SCOPE_CB_DATA : SCOPE_CB_COMMAND;
    ask.corpid = (sel & 2) ? NULL : EVF_CORP;
    ask.tenant = &g;
    ask.service = &g;
    ask.caps = fuzz_byte(&in) & CAP_ALL;
    flags = fuzz_byte(&in);
    ask.own_range = flags & 1;
    range.mode = (flags >> 1) & 3;
    range.seed = (uint8_t)(flags >> 3);
    ask.in_range = range.mode == 0 ? NULL : evf_in_range;
    ask.arg = &range;
    doc = fuzz_take(&in, in.n, &dlen);

    memset(&res, 0x5a, sizeof(res));
    err = evfilter_apply(evf_map, (const char *)doc, dlen, &ask, &res);
    if (err != BRK_OK) {
        FUZZ_CHECK(((unsigned char *)&res)[0] == 0x5a);
        return 0;
    }
    FUZZ_CHECK(res.reason <= EVFILTER_OUT_OF_RANGE);
    FUZZ_CHECK(memchr(res.name, '\0', sizeof(res.name)) != NULL);
    if (res.reason != EVFILTER_DELIVER) {
        FUZZ_CHECK(res.xml == NULL);
        FUZZ_CHECK(res.reason != EVFILTER_UNDECLARED || res.event == NULL);
        evfilter_result_free(&res);
        return 0;
    }
    evf_check_delivered(&res, &ask, &range);
    /* what a service received passes the filter unchanged */
    err = evfilter_apply(evf_map, res.xml, res.xml_len, &ask, &again);
    if (err == BRK_OK) {
        FUZZ_CHECK(again.reason == EVFILTER_DELIVER);
        FUZZ_CHECK(again.xml_len == res.xml_len);
        FUZZ_CHECK(memcmp(again.xml, res.xml, res.xml_len) == 0);
        FUZZ_CHECK(again.dropped == 0);
        evfilter_result_free(&again);
    } else {
        /* only a longer output can pass the input bound */
        FUZZ_CHECK(err == BRK_ERR_TOOBIG);
    }
    evfilter_result_free(&res);
    return 0;
}
