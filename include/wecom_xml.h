/*
 * Bounded parser for WeCom callback XML: the outer <xml> envelope and the
 * decrypted event body. No DTD, no entities beyond the predefined ones, no
 * attributes, no mixed content; every size is capped. Pure: no I/O.
 */
#ifndef WECOM_XML_H
#define WECOM_XML_H

#include <stddef.h>

#include "broker.h"

/* One element. Strings are NUL-terminated and owned by the struct wecom_xml. */
struct wecom_xml_node {
    const char *name; /* element name */
    const char *text; /* concatenated text + CDATA of this element ("" if
                         none); for elements with children, only whitespace
                         text is allowed around children and it is dropped */
    size_t text_len;
    const struct wecom_xml_node *children; /* array, in document order */
    size_t nchildren;
};

/* A parsed document; owns every node and string. */
struct wecom_xml;

/* Bounds; a zero field takes its default. */
struct wecom_xml_limits {
    size_t max_bytes;    /* input size */
    size_t max_elements; /* elements in the document, root included */
    size_t max_depth;    /* nesting levels, root = 1 */
    size_t max_text;     /* bytes of text in one element */
};

#define WECOM_XML_DEFAULT_MAX_BYTES    65536
#define WECOM_XML_DEFAULT_MAX_ELEMENTS 512
#define WECOM_XML_DEFAULT_MAX_DEPTH    8
#define WECOM_XML_DEFAULT_MAX_TEXT     16384

/* Parse buf[0..len) whose root must be <xml>; limits may be NULL. */
enum brk_err wecom_xml_parse(const char *buf, size_t len,
                             const struct wecom_xml_limits *limits,
                             struct wecom_xml **out,
                             struct brk_errinfo *info) BRK_WUR;
/* Wipe and free a document; NULL is a no-op. */
void wecom_xml_free(struct wecom_xml *x);
/* The <xml> node (borrowed). */
const struct wecom_xml_node *wecom_xml_root(const struct wecom_xml *x);
/* First direct child of node named name, or NULL (borrowed). */
const struct wecom_xml_node *wecom_xml_child(const struct wecom_xml_node *node,
                                             const char *name);
/* Text of the direct child name of the root, or NULL (borrowed). */
const char *wecom_xml_get(const struct wecom_xml *x, const char *name);
struct dynbuf;

/* Append v as CDATA that reads back as v ("]]>" split, CR as &#13;). */
enum brk_err wecom_xml_add_cdata(struct dynbuf *d, const char *v) BRK_WUR;

/* Build "<xml><K><![CDATA[V]]></K>...</xml>" from n pairs. */
enum brk_err wecom_xml_build(const char *const *keys, const char *const *values,
                             size_t n, char **out, size_t *outlen) BRK_WUR;

#endif /* WECOM_XML_H */
