/*
 * agent/get narrowed to a service's own range (see agent_range.h). The
 * filter has already removed what the effective grant and range do not
 * allow; this replaces the department list by the tops of the narrowed
 * range (visible_range.c works them out over the tenant's directory) and
 * empties the tag list. The reply is a few hundred bytes, so it is
 * rewritten through jansson rather than streamed.
 */
#include <string.h>

#include <jansson.h>

#include "agent_range.h"
#include "visible_range.h"

/* Whether id is among the n ids of ids. */
static int
ids_have(const long *ids, size_t n, json_int_t id)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((json_int_t)ids[i] == id)
            return 1;
    return 0;
}

/* Replace obj's array key by ids (n), counting the elements of the old
 * array that the new one lacks into *removed. */
static enum brk_err
replace_list(json_t *obj, const char *key, const long *ids, size_t n,
             unsigned long *removed)
{
    json_t *old = json_object_get(obj, key), *arr, *e;
    size_t i;

    if (!json_is_array(old))
        return BRK_OK;
    json_array_foreach(old, i, e)
    {
        if (!json_is_integer(e) || !ids_have(ids, n, json_integer_value(e)))
            (*removed)++;
    }
    arr = json_array();
    if (arr == NULL)
        return BRK_ERR_NOMEM;
    for (i = 0; i < n; i++) {
        if (json_array_append_new(arr, json_integer((json_int_t)ids[i]))) {
            json_decref(arr);
            return BRK_ERR_NOMEM;
        }
    }
    if (json_object_set_new(obj, key, arr))
        return BRK_ERR_NOMEM;
    return BRK_OK;
}

enum brk_err
agent_range_rewrite(const char *in, size_t len, const struct vrange *v,
                    char **out, size_t *outlen, unsigned long *dropped)
{
    json_t *root = NULL, *parties, *tags, *check;
    json_error_t jerr;
    long *tops = NULL;
    size_t ntops = 0, n;
    unsigned long removed = 0;
    int same;
    char *text = NULL, *res = NULL;
    enum brk_err err = BRK_ERR_INVAL;

    root = json_loadb(in, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root))
        goto out;
    /* a WeCom error carries no range: passed as it is */
    if (json_integer_value(json_object_get(root, "errcode")) == 0) {
        parties = json_object_get(root, "allow_partys");
        tags = json_object_get(root, "allow_tags");
        if (json_is_object(parties)) {
            err = vrange_top_departments(v, &tops, &ntops);
            if (err)
                goto out;
            err = replace_list(parties, "partyid", tops, ntops, &removed);
            if (err)
                goto out;
        }
        if (json_is_object(tags)) {
            err = replace_list(tags, "tagid", NULL, 0, &removed);
            if (err)
                goto out;
        }
    }
    err = BRK_ERR_NOMEM;
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text == NULL)
        goto out;
    /* jansson's dump can leave a key out when memory runs short: what it
     * wrote must read back as the same object */
    check = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    same = json_equal(check, root);
    json_decref(check);
    if (!same)
        goto out;
    n = strlen(text);
    res = brk_malloc(n + 1);
    if (res == NULL)
        goto out;
    memcpy(res, text, n + 1);
    *out = res;
    *outlen = n;
    *dropped = removed;
    err = BRK_OK;
out:
    free(text);
    brk_free(tops);
    json_decref(root);
    return err;
}
