/*
 * Fuzz the callback XML parser alone: the input is parsed as a document
 * with the default limits and with tiny ones. A parsed document must be a
 * well-formed tree (root <xml>, every name and text NUL-terminated at its
 * length, depth and counts within the limits), and the tiny limits never
 * accept what the default ones refuse.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "broker.h"
#include "wecom_xml.h"

#include "fuzz.h"

/* Walk a node: counts elements, checks depth, text and names. */
static void
xml_walk(const struct wecom_xml_node *n, size_t depth,
         const struct wecom_xml_limits *lim, size_t *count)
{
    size_t i;

    FUZZ_CHECK(n->name != NULL && n->name[0] != '\0');
    FUZZ_CHECK(n->text != NULL);
    FUZZ_CHECK(n->text[n->text_len] == '\0');
    FUZZ_CHECK(n->text_len <= lim->max_text);
    FUZZ_CHECK(depth <= lim->max_depth);
    FUZZ_CHECK(n->nchildren == 0 || n->children != NULL);
    /* an element with children keeps no text */
    FUZZ_CHECK(n->nchildren == 0 || n->text_len == 0);
    (*count)++;
    for (i = 0; i < n->nchildren; i++)
        xml_walk(&n->children[i], depth + 1, lim, count);
}

/* Parse with lim (all fields set); check the tree when it parses. */
static enum brk_err
xml_parse_check(const uint8_t *data, size_t size,
                const struct wecom_xml_limits *lim)
{
    struct wecom_xml *x = NULL;
    struct brk_errinfo info = {"", 0, -1};
    const struct wecom_xml_node *root, *c;
    size_t count = 0, i;
    enum brk_err err;

    err = wecom_xml_parse((const char *)data, size, lim, &x, &info);
    if (err != BRK_OK) {
        FUZZ_CHECK(x == NULL);
        FUZZ_CHECK(memchr(info.msg, '\0', sizeof(info.msg)) != NULL);
        return err;
    }
    FUZZ_CHECK(x != NULL);
    FUZZ_CHECK(size <= lim->max_bytes);
    root = wecom_xml_root(x);
    FUZZ_CHECK(root != NULL && strcmp(root->name, "xml") == 0);
    xml_walk(root, 1, lim, &count);
    FUZZ_CHECK(count <= lim->max_elements);
    /* direct children of <xml> are unique, and found by name */
    for (i = 0; i < root->nchildren; i++) {
        c = wecom_xml_child(root, root->children[i].name);
        FUZZ_CHECK(c == &root->children[i]);
        FUZZ_CHECK(wecom_xml_get(x, c->name) == c->text);
    }
    FUZZ_CHECK(wecom_xml_get(x, "NoSuchElementAnywhere") == NULL);
    wecom_xml_free(x);
    return BRK_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct wecom_xml_limits deflim = {
        WECOM_XML_DEFAULT_MAX_BYTES, WECOM_XML_DEFAULT_MAX_ELEMENTS,
        WECOM_XML_DEFAULT_MAX_DEPTH, WECOM_XML_DEFAULT_MAX_TEXT};
    static const struct wecom_xml_limits tiny = {64, 4, 2, 8};
    struct wecom_xml *x = NULL;
    enum brk_err def, small, nolim;

    def = xml_parse_check(data, size, &deflim);
    /* NULL limits are the defaults */
    nolim = wecom_xml_parse((const char *)data, size, NULL, &x, NULL);
    FUZZ_CHECK(nolim == def);
    wecom_xml_free(x);
    small = xml_parse_check(data, size, &tiny);
    FUZZ_CHECK(small != BRK_OK || def == BRK_OK);
    return 0;
}
