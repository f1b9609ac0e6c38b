/*
 * Fuzz the scope-map loader: the input is written to a scratch file and
 * loaded with scope_map_load_file. A loaded map must keep its promises:
 * endpoints sorted by path and found by it, fields sorted by name and
 * found by it, permissions, types, record kinds and parameter kinds known,
 * and the tree no deeper than SCOPE_MAX_DEPTH.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "broker.h"
#include "scope_map.h"

#include "fuzz.h"

static void
smap_check_node(const struct scope_node *n, size_t depth)
{
    size_t i;

    FUZZ_CHECK(depth <= SCOPE_MAX_DEPTH);
    FUZZ_CHECK(scope_type_name(n->type) != NULL);
    FUZZ_CHECK(n->perm >= 0 && n->perm < scope_perm_count());
    FUZZ_CHECK(scope_perm_name(n->perm) != NULL);
    FUZZ_CHECK(n->record == SCOPE_REC_NONE ||
               scope_record_name(n->record) != NULL);
    if (n->type == SCOPE_T_ARRAY)
        FUZZ_CHECK(n->items != NULL);
    if (n->type != SCOPE_T_OBJECT)
        FUZZ_CHECK(n->nfields == 0);
    for (i = 0; i < n->nfields; i++) {
        FUZZ_CHECK(n->fields[i].name != NULL);
        if (i > 0)
            FUZZ_CHECK(strcmp(n->fields[i - 1].name, n->fields[i].name) < 0);
        FUZZ_CHECK(
            scope_node_field(n, n->fields[i].name, strlen(n->fields[i].name)) ==
            &n->fields[i]);
        smap_check_node(&n->fields[i], depth + 1);
    }
    if (n->items != NULL) {
        FUZZ_CHECK(n->items->name == NULL);
        smap_check_node(n->items, depth + 1);
    }
}

static void
smap_check(const struct scope_map *m)
{
    const struct scope_endpoint *e, *prev = NULL;
    size_t i, j, n = scope_map_count(m);

    FUZZ_CHECK(n > 0);
    for (i = 0; i < n; i++) {
        e = scope_map_at(m, i);
        FUZZ_CHECK(e != NULL && e->path != NULL && e->path[0] == '/');
        FUZZ_CHECK(scope_map_find(m, e->path) == e);
        if (prev != NULL)
            FUZZ_CHECK(strcmp(prev->path, e->path) < 0);
        prev = e;
        FUZZ_CHECK(strcmp(e->method, "GET") == 0 ||
                   strcmp(e->method, "POST") == 0);
        FUZZ_CHECK(e->scope >= 0 && e->scope < scope_perm_count());
        FUZZ_CHECK(e->root.type == SCOPE_T_OBJECT);
        smap_check_node(&e->root, 0);
        for (j = 0; j < e->nparams; j++) {
            FUZZ_CHECK(e->params[j].name != NULL);
            FUZZ_CHECK(scope_param_kind_name(e->params[j].kind) != NULL);
            if (j > 0)
                FUZZ_CHECK(strcmp(e->params[j - 1].name, e->params[j].name) <
                           0);
            FUZZ_CHECK(scope_endpoint_param(e, e->params[j].name) ==
                       &e->params[j]);
        }
    }
    FUZZ_CHECK(scope_map_at(m, n) == NULL);
    FUZZ_CHECK(scope_map_find(m, "/no/such/endpoint/anywhere") == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct scope_map *m = NULL;
    struct brk_errinfo info = {"", 0, -1};
    char path[256];
    enum brk_err err;

    if (fuzz_write_file("scope_map", "scopes.json", data, size, path,
                        sizeof(path)) != 0)
        return 0;
    err = scope_map_load_file(path, &m, &info);
    if (err != BRK_OK) {
        FUZZ_CHECK(m == NULL);
        FUZZ_CHECK(memchr(info.msg, '\0', sizeof(info.msg)) != NULL);
        return 0;
    }
    FUZZ_CHECK(m != NULL);
    smap_check(m);
    scope_map_free(m);
    return 0;
}
