/*
 * WeCom callback XML on top of expat: a strict, bounded subset parsed into a
 * tree whose strings live in one arena. Event bodies carry AuthCodes and
 * members' mobiles, so the arena and expat's own buffers are wiped on free.
 */
#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <expat.h>

#include "dynbuf.h"
#include "wecom_xml.h"

struct wecom_xml {
    struct wecom_xml_node *nodes; /* nodes[0] is the root */
    size_t nnodes;
    char *arena; /* every name and text, NUL-terminated */
    size_t arena_size;
};

#define NO_NODE SIZE_MAX

/* An element while parsing; strings are arena offsets since it may move. */
struct raw_node {
    size_t name_off;
    size_t text_off;
    size_t text_len;
    size_t parent; /* NO_NODE for the root */
    size_t nchildren;
    size_t depth; /* root = 1 */
    long offset;  /* of the start tag, for error reports */
    int line;
    int nonspace; /* text so far is not all whitespace */
    int ws_over;  /* whitespace past max_text, not stored (see on_text) */
    /* filled when the final tree is laid out */
    size_t pos;    /* index in the final node array */
    size_t first;  /* index of the first child there */
    size_t placed; /* children laid out so far */
};

struct parse_ctx {
    XML_Parser parser;
    struct wecom_xml_limits lim;
    struct dynbuf arena;
    struct raw_node *raw; /* document (pre-)order */
    size_t nraw;
    size_t rawcap;
    size_t cur; /* innermost open element, NO_NODE outside the root */
    enum brk_err err;
    struct brk_errinfo *info;
};

/*---- Wiping allocator for expat ----*/

/*
 * Expat copies the input into its own buffers, so every block it allocates
 * carries its size in front and is wiped when released.
 */
union block_hdr {
    size_t size;
    max_align_t align;
};

static void *
wipe_malloc(size_t n)
{
    union block_hdr *h;

    if (n > SIZE_MAX - sizeof(*h))
        return NULL;
    h = brk_malloc(sizeof(*h) + n);
    if (h == NULL)
        return NULL;
    h->size = n;
    return h + 1;
}

static void
wipe_free(void *p)
{
    union block_hdr *h;

    if (p == NULL)
        return;
    h = (union block_hdr *)p - 1;
    brk_free_secret(h, sizeof(*h) + h->size);
}

static void *
wipe_realloc(void *p, size_t n)
{
    union block_hdr *h;
    void *np;

    if (p == NULL)
        return wipe_malloc(n);
    /* move by hand: a plain realloc could leave an unwiped copy behind */
    np = wipe_malloc(n);
    if (np == NULL)
        return NULL;
    h = (union block_hdr *)p - 1;
    memcpy(np, p, h->size < n ? h->size : n);
    wipe_free(p);
    return np;
}

static const XML_Memory_Handling_Suite wipe_suite = {
    wipe_malloc,
    wipe_realloc,
    wipe_free,
};

/*---- Parsing ----*/

static void fail(struct parse_ctx *c, enum brk_err err, const char *fmt, ...)
    BRK_PRINTF(3, 4);

/* Record the first error at the parser's position and stop it. */
static void
fail(struct parse_ctx *c, enum brk_err err, const char *fmt, ...)
{
    va_list ap;
    char msg[sizeof(c->info->msg)];

    if (c->err != BRK_OK)
        return;
    c->err = err;
    if (c->info != NULL) {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        brk_errinfo_set(c->info, (int)XML_GetCurrentLineNumber(c->parser),
                        (long)XML_GetCurrentByteIndex(c->parser), "%s", msg);
    }
    XML_StopParser(c->parser, XML_FALSE);
}

/* A failed arena or node-array append. */
static void
fail_alloc(struct parse_ctx *c, enum brk_err err)
{
    fail(c, err, "%s",
         err == BRK_ERR_NOMEM ? "out of memory" : "document too large");
}

static int
is_space(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return 0;
    return 1;
}

static const char *
raw_name(const struct parse_ctx *c, const struct raw_node *n)
{
    return c->arena.buf + n->name_off;
}

/*
 * The first child of n opens: the text gathered so far must be whitespace
 * and is dropped; n's text becomes "".
 */
static void
drop_text(struct parse_ctx *c, struct raw_node *n)
{
    enum brk_err err;

    if (n->nonspace) {
        fail(c, BRK_ERR_WX_PARSE_XML,
             "text mixed with child elements in <%.40s>", raw_name(c, n));
        return;
    }
    brk_wipe(c->arena.buf + n->text_off, n->text_len);
    c->arena.len = n->text_off;
    n->text_len = 0;
    n->ws_over = 0;
    err = dynbuf_add(&c->arena, "", 1);
    if (err)
        fail_alloc(c, err);
}

static enum brk_err
raw_grow(struct parse_ctx *c)
{
    size_t ncap;
    struct raw_node *nr;

    if (c->nraw < c->rawcap)
        return BRK_OK;
    ncap = c->rawcap ? c->rawcap * 2 : 16;
    if (ncap > c->lim.max_elements)
        ncap = c->lim.max_elements;
    if (ncap > SIZE_MAX / sizeof(*nr))
        return BRK_ERR_NOMEM;
    nr = brk_realloc(c->raw, ncap * sizeof(*nr));
    if (nr == NULL)
        return BRK_ERR_NOMEM;
    c->raw = nr;
    c->rawcap = ncap;
    return BRK_OK;
}

static void XMLCALL
on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    struct parse_ctx *c = ud;
    struct raw_node *n;
    size_t depth = 1;
    enum brk_err err;

    if (c->err != BRK_OK)
        return;
    if (atts[0] != NULL) {
        fail(c, BRK_ERR_WX_PARSE_XML, "attribute %.40s on <%.40s> not allowed",
             atts[0], name);
        return;
    }
    if (c->cur == NO_NODE) {
        if (c->nraw > 0 || strcmp(name, "xml") != 0) {
            fail(c, BRK_ERR_WX_PARSE_XML, "root element <%.40s> is not <xml>",
                 name);
            return;
        }
    } else {
        depth = c->raw[c->cur].depth + 1;
    }
    if (c->nraw >= c->lim.max_elements) {
        fail(c, BRK_ERR_TOOBIG, "more than %zu elements", c->lim.max_elements);
        return;
    }
    if (depth > c->lim.max_depth) {
        fail(c, BRK_ERR_TOOBIG, "elements nested deeper than %zu",
             c->lim.max_depth);
        return;
    }
    if (c->cur != NO_NODE && c->raw[c->cur].nchildren == 0) {
        drop_text(c, &c->raw[c->cur]);
        if (c->err != BRK_OK)
            return;
    }
    err = raw_grow(c);
    if (err) {
        fail_alloc(c, err);
        return;
    }
    n = &c->raw[c->nraw];
    memset(n, 0, sizeof(*n));
    n->name_off = c->arena.len;
    n->parent = c->cur;
    n->depth = depth;
    n->offset = (long)XML_GetCurrentByteIndex(c->parser);
    n->line = (int)XML_GetCurrentLineNumber(c->parser);
    err = dynbuf_add(&c->arena, name, strlen(name) + 1);
    if (err) {
        fail_alloc(c, err);
        return;
    }
    n->text_off = c->arena.len;
    if (c->cur != NO_NODE)
        c->raw[c->cur].nchildren++;
    c->cur = c->nraw++;
}

static void XMLCALL
on_end(void *ud, const XML_Char *name)
{
    struct parse_ctx *c = ud;
    struct raw_node *n;
    enum brk_err err;

    (void)name;
    if (c->err != BRK_OK || c->cur == NO_NODE)
        return;
    n = &c->raw[c->cur];
    if (n->nchildren == 0 && n->ws_over) {
        fail(c, BRK_ERR_TOOBIG, "text of <%.40s> longer than %zu bytes",
             raw_name(c, n), c->lim.max_text);
        return;
    }
    if (n->nchildren == 0) {
        err = dynbuf_add(&c->arena, "", 1);
        if (err) {
            fail_alloc(c, err);
            return;
        }
    }
    c->cur = n->parent;
}

static void XMLCALL
on_text(void *ud, const XML_Char *s, int len)
{
    struct parse_ctx *c = ud;
    struct raw_node *n;
    enum brk_err err;

    if (c->err != BRK_OK || c->cur == NO_NODE || len <= 0)
        return;
    n = &c->raw[c->cur];
    if (n->nchildren > 0) {
        /* whitespace between children is layout; anything else is mixed */
        if (!is_space(s, (size_t)len))
            fail(c, BRK_ERR_WX_PARSE_XML,
                 "text mixed with child elements in <%.40s>", raw_name(c, n));
        return;
    }
    if (!is_space(s, (size_t)len))
        n->nonspace = 1;
    if (n->ws_over || (size_t)len > c->lim.max_text - n->text_len) {
        /*
         * Whitespace may still turn out to be layout before a first child,
         * which is not text: only a leaf's end tag can tell (on_end).
         */
        if (n->nonspace)
            fail(c, BRK_ERR_TOOBIG, "text of <%.40s> longer than %zu bytes",
                 raw_name(c, n), c->lim.max_text);
        n->ws_over = 1;
        return;
    }
    err = dynbuf_add(&c->arena, s, (size_t)len);
    if (err) {
        fail_alloc(c, err);
        return;
    }
    n->text_len += (size_t)len;
}

/*
 * Any DTD is refused as soon as it starts, so no entity can be declared:
 * this is what defeats billion-laughs and external-entity (XXE) documents.
 */
static void XMLCALL
on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
           const XML_Char *pubid, int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    fail(ud, BRK_ERR_WX_PARSE_XML, "DOCTYPE not allowed");
}

/* Unreachable while DOCTYPE is refused; kept as a second line of defence. */
static void XMLCALL
on_entity_decl(void *ud, const XML_Char *name, int is_param,
               const XML_Char *value, int value_len, const XML_Char *base,
               const XML_Char *sysid, const XML_Char *pubid,
               const XML_Char *notation)
{
    (void)name;
    (void)is_param;
    (void)value;
    (void)value_len;
    (void)base;
    (void)sysid;
    (void)pubid;
    (void)notation;
    fail(ud, BRK_ERR_WX_PARSE_XML, "entity declaration not allowed");
}

static void XMLCALL
on_skipped_entity(void *ud, const XML_Char *name, int is_param)
{
    (void)is_param;
    fail(ud, BRK_ERR_WX_PARSE_XML, "entity reference &%.40s; not allowed",
         name);
}

static int XMLCALL
on_external_entity(XML_Parser p, const XML_Char *context, const XML_Char *base,
                   const XML_Char *sysid, const XML_Char *pubid)
{
    (void)p;
    (void)context;
    (void)base;
    (void)sysid;
    (void)pubid;
    return XML_STATUS_ERROR;
}

static void XMLCALL
on_pi(void *ud, const XML_Char *target, const XML_Char *data)
{
    (void)data;
    fail(ud, BRK_ERR_WX_PARSE_XML,
         "processing instruction <?%.40s?> not "
         "allowed",
         target);
}

/*
 * The parser is created for UTF-8, which makes expat ignore a declared
 * encoding; a document that says it is something else is refused instead.
 */
static void XMLCALL
on_xml_decl(void *ud, const XML_Char *version, const XML_Char *encoding,
            int standalone)
{
    (void)version;
    (void)standalone;
    if (encoding != NULL && strcasecmp(encoding, "UTF-8") != 0)
        fail(ud, BRK_ERR_WX_PARSE_XML, "encoding %.40s not allowed", encoding);
}

/* Refusals that need no parser: NUL bytes and a UTF-16 byte order mark. */
static enum brk_err
precheck(const char *buf, size_t len, struct brk_errinfo *info)
{
    const char *nul;
    size_t i;
    int line = 1;

    if (len >= 2 && ((buf[0] == '\xff' && buf[1] == '\xfe') ||
                     (buf[0] == '\xfe' && buf[1] == '\xff'))) {
        brk_errinfo_set(info, 1, 0, "UTF-16 byte order mark not allowed");
        return BRK_ERR_WX_PARSE_XML;
    }
    nul = memchr(buf, '\0', len);
    if (nul != NULL) {
        for (i = 0; i < (size_t)(nul - buf); i++)
            if (buf[i] == '\n')
                line++;
        brk_errinfo_set(info, line, (long)(nul - buf), "NUL byte in input");
        return BRK_ERR_WX_PARSE_XML;
    }
    return BRK_OK;
}

/* Sort key for the duplicate check: name, then document order. */
struct dup_key {
    const char *name;
    size_t idx;
};

static int
dup_key_cmp(const void *a, const void *b)
{
    const struct dup_key *x = a;
    const struct dup_key *y = b;
    int r = strcmp(x->name, y->name);

    if (r != 0)
        return r;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/*
 * A direct child of <xml> given twice is refused: which copy a consumer
 * reads would be ambiguous. Sorting keeps this O(n log n); the report
 * names the first repeat in document order.
 */
static enum brk_err
check_duplicates(const struct parse_ctx *c, struct brk_errinfo *info)
{
    struct dup_key *keys = NULL;
    size_t i, k = 0, nkeys = c->raw[0].nchildren, dup = NO_NODE;
    enum brk_err err = BRK_OK;

    if (nkeys < 2)
        return BRK_OK;
    keys = brk_calloc(nkeys, sizeof(*keys));
    if (keys == NULL)
        return BRK_ERR_NOMEM;
    for (i = 1; i < c->nraw; i++)
        if (c->raw[i].parent == 0) {
            keys[k].name = raw_name(c, &c->raw[i]);
            keys[k++].idx = i;
        }
    qsort(keys, nkeys, sizeof(*keys), dup_key_cmp);
    for (i = 1; i < nkeys; i++)
        if (strcmp(keys[i - 1].name, keys[i].name) == 0 &&
            (dup == NO_NODE || keys[i].idx < dup))
            dup = keys[i].idx;
    if (dup != NO_NODE) {
        brk_errinfo_set(info, c->raw[dup].line, c->raw[dup].offset,
                        "element <%.40s> repeated in <xml>",
                        raw_name(c, &c->raw[dup]));
        err = BRK_ERR_WX_PARSE_XML;
    }
    brk_free(keys);
    return err;
}

/*
 * Lay the pre-order raw nodes out so that each node's children are
 * contiguous: a node's child block is reserved when the node is visited,
 * and children (visited later, in order) fill it. Linear time.
 */
static enum brk_err
build_tree(struct parse_ctx *c, struct wecom_xml **out)
{
    struct wecom_xml *x = NULL;
    struct raw_node *r, *p;
    size_t i, next = 1;
    enum brk_err err = BRK_ERR_NOMEM;

    x = brk_calloc(1, sizeof(*x));
    if (x == NULL)
        goto out;
    x->nodes = brk_calloc(c->nraw, sizeof(*x->nodes));
    if (x->nodes == NULL)
        goto out;
    for (i = 0; i < c->nraw; i++) {
        r = &c->raw[i];
        if (i == 0) {
            r->pos = 0;
        } else {
            p = &c->raw[r->parent];
            r->pos = p->first + p->placed++;
        }
        r->first = next;
        next += r->nchildren;
        x->nodes[r->pos].name = c->arena.buf + r->name_off;
        x->nodes[r->pos].text = c->arena.buf + r->text_off;
        x->nodes[r->pos].text_len = r->text_len;
        x->nodes[r->pos].nchildren = r->nchildren;
        x->nodes[r->pos].children =
            r->nchildren > 0 ? x->nodes + r->first : NULL;
    }
    x->nnodes = c->nraw;
    x->arena = c->arena.buf;
    x->arena_size = c->arena.cap;
    c->arena.buf = NULL;
    c->arena.len = c->arena.cap = 0;
    *out = x;
    x = NULL;
    err = BRK_OK;
out:
    wecom_xml_free(x);
    return err;
}

/*
 * Parse buf[0..len), whose root element must be <xml>, within limits (NULL,
 * or a zero field, means the defaults: 65536 bytes, 512 elements, 8 levels,
 * 16384 bytes of text per element). Returns BRK_OK; BRK_ERR_TOOBIG when a
 * limit is passed; BRK_ERR_NOMEM; or BRK_ERR_WX_PARSE_XML for anything not
 * well-formed or outside the subset WeCom uses: a DOCTYPE, an undeclared
 * entity, a processing instruction, an attribute, text mixed with child
 * elements, a direct child of <xml> given twice, a NUL byte, an encoding
 * other than UTF-8, trailing garbage. info (may be NULL) receives a message,
 * line and byte offset on error. On success *out is owned: free it with
 * wecom_xml_free(), which wipes the text.
 */
enum brk_err
wecom_xml_parse(const char *buf, size_t len,
                const struct wecom_xml_limits *limits, struct wecom_xml **out,
                struct brk_errinfo *info)
{
    struct parse_ctx c;
    enum XML_Error code;
    enum brk_err err;

    assert(out != NULL);
    assert(buf != NULL || len == 0);
    memset(&c, 0, sizeof(c));
    c.cur = NO_NODE;
    c.info = info;
    c.lim.max_bytes = WECOM_XML_DEFAULT_MAX_BYTES;
    c.lim.max_elements = WECOM_XML_DEFAULT_MAX_ELEMENTS;
    c.lim.max_depth = WECOM_XML_DEFAULT_MAX_DEPTH;
    c.lim.max_text = WECOM_XML_DEFAULT_MAX_TEXT;
    if (limits != NULL) {
        if (limits->max_bytes)
            c.lim.max_bytes = limits->max_bytes;
        if (limits->max_elements)
            c.lim.max_elements = limits->max_elements;
        if (limits->max_depth)
            c.lim.max_depth = limits->max_depth;
        if (limits->max_text)
            c.lim.max_text = limits->max_text;
    }
    if (buf == NULL)
        buf = "";

    if (len > c.lim.max_bytes || len > INT_MAX) {
        brk_errinfo_set(
            info, 0,
            (long)(c.lim.max_bytes < LONG_MAX ? c.lim.max_bytes : LONG_MAX),
            "input of %zu bytes over the limit of %zu", len, c.lim.max_bytes);
        err = BRK_ERR_TOOBIG;
        goto out;
    }
    err = precheck(buf, len, info);
    if (err)
        goto out;
    /*
     * Names and text come from distinct input bytes and never expand (an
     * entity or character reference is longer than what it stands for),
     * so the arena needs at most len bytes plus two NULs per element.
     */
    if (c.lim.max_elements < (SIZE_MAX / 2 - len) / 2)
        dynbuf_init_secret(&c.arena, len + 2 * c.lim.max_elements);
    else
        dynbuf_init_secret(&c.arena, SIZE_MAX / 2);

    c.parser = XML_ParserCreate_MM("UTF-8", &wipe_suite, NULL);
    if (c.parser == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    XML_SetUserData(c.parser, &c);
    /* never read anything outside buf; DOCTYPE is refused anyway */
    XML_SetParamEntityParsing(c.parser, XML_PARAM_ENTITY_PARSING_NEVER);
    XML_SetElementHandler(c.parser, on_start, on_end);
    XML_SetCharacterDataHandler(c.parser, on_text);
    XML_SetStartDoctypeDeclHandler(c.parser, on_doctype);
    XML_SetEntityDeclHandler(c.parser, on_entity_decl);
    XML_SetSkippedEntityHandler(c.parser, on_skipped_entity);
    XML_SetExternalEntityRefHandler(c.parser, on_external_entity);
    XML_SetProcessingInstructionHandler(c.parser, on_pi);
    XML_SetXmlDeclHandler(c.parser, on_xml_decl);

    if (XML_Parse(c.parser, buf, (int)len, XML_TRUE) != XML_STATUS_OK &&
        c.err == BRK_OK) {
        code = XML_GetErrorCode(c.parser);
        c.err =
            code == XML_ERROR_NO_MEMORY ? BRK_ERR_NOMEM : BRK_ERR_WX_PARSE_XML;
        brk_errinfo_set(info, (int)XML_GetCurrentLineNumber(c.parser),
                        (long)XML_GetCurrentByteIndex(c.parser), "%s",
                        XML_ErrorString(code));
    }
    err = c.err;
    if (err)
        goto out;
    /* expat guarantees a closed root on success */
    assert(c.nraw > 0 && c.cur == NO_NODE);
    err = check_duplicates(&c, info);
    if (err)
        goto out;
    err = build_tree(&c, out);
out:
    if (c.parser != NULL)
        XML_ParserFree(c.parser);
    brk_free(c.raw);
    dynbuf_free(&c.arena);
    return err;
}

/* Wipe every string of x, then free it. NULL is a no-op. */
void
wecom_xml_free(struct wecom_xml *x)
{
    if (x == NULL)
        return;
    brk_free_secret(x->arena, x->arena_size);
    brk_free(x->nodes);
    brk_free(x);
}

/* The <xml> root node of x (borrowed, valid until wecom_xml_free). */
const struct wecom_xml_node *
wecom_xml_root(const struct wecom_xml *x)
{
    if (x == NULL || x->nnodes == 0)
        return NULL;
    return &x->nodes[0];
}

/*
 * The first direct child of node named name, or NULL when there is none
 * (repeated nested elements such as <Item>: walk node->children instead).
 * Borrowed, valid until the document is freed.
 */
const struct wecom_xml_node *
wecom_xml_child(const struct wecom_xml_node *node, const char *name)
{
    size_t i;

    if (node == NULL || name == NULL)
        return NULL;
    for (i = 0; i < node->nchildren; i++)
        if (strcmp(node->children[i].name, name) == 0)
            return &node->children[i];
    return NULL;
}

/*
 * The text of the direct child name of the root, or NULL when absent ("" for
 * an empty element). Borrowed, valid until the document is freed.
 */
const char *
wecom_xml_get(const struct wecom_xml *x, const char *name)
{
    const struct wecom_xml_node *n = wecom_xml_child(wecom_xml_root(x), name);

    return n != NULL ? n->text : NULL;
}

/*---- Building ----*/

static int
is_name(const char *s)
{
    const char *p;

    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (p = s + 1; *p != '\0'; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return 1;
}

/*
 * Nonzero when s is valid UTF-8 made only of XML 1.0 characters (tab, LF,
 * CR, U+0020-U+D7FF, U+E000-U+FFFD, U+10000-U+10FFFF), so the output of
 * wecom_xml_build always parses back.
 */
static int
is_xml_text(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned long cp;
    int i, n;

    while (*p != '\0') {
        if (*p < 0x80) {
            if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r')
                return 0;
            p++;
            continue;
        }
        if (*p >= 0xc2 && *p <= 0xdf) {
            n = 1;
            cp = *p & 0x1f;
        } else if (*p >= 0xe0 && *p <= 0xef) {
            n = 2;
            cp = *p & 0x0f;
        } else if (*p >= 0xf0 && *p <= 0xf4) {
            n = 3;
            cp = *p & 0x07;
        } else {
            return 0;
        }
        for (i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        /* overlong forms, surrogates, U+FFFE/U+FFFF, beyond U+10FFFF */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff ||
            cp > 0x10ffff)
            return 0;
        p += n + 1;
    }
    return 1;
}

/*
 * One value as CDATA. "]]>" would end the section, so it is split across
 * two; CR would be read back as LF, so it leaves the section as "&#13;".
 */
static enum brk_err
add_cdata(struct dynbuf *d, const char *v)
{
    const char *p = v, *span = v, *rep;
    size_t skip;
    enum brk_err err;

    err = dynbuf_add_str(d, "<![CDATA[");
    while (err == BRK_OK && *p != '\0') {
        if (strncmp(p, "]]>", 3) == 0) {
            rep = "]]]]><![CDATA[>";
            skip = 3;
        } else if (*p == '\r') {
            rep = "]]>&#13;<![CDATA[";
            skip = 1;
        } else {
            p++;
            continue;
        }
        err = dynbuf_add(d, span, (size_t)(p - span));
        if (err == BRK_OK)
            err = dynbuf_add_str(d, rep);
        p += skip;
        span = p;
    }
    if (err == BRK_OK)
        err = dynbuf_add(d, span, (size_t)(p - span));
    if (err == BRK_OK)
        err = dynbuf_add_str(d, "]]>");
    return err;
}

/*
 * Append v (NUL-terminated) to d as CDATA that wecom_xml_parse reads back
 * as v: a value holding "]]>" cannot end the section early. Returns BRK_OK
 * or dynbuf's error.
 */
enum brk_err
wecom_xml_add_cdata(struct dynbuf *d, const char *v)
{
    return add_cdata(d, v);
}

/*
 * Build "<xml><K1><![CDATA[V1]]></K1>...</xml>" from n key/value pairs, in
 * order, such that wecom_xml_parse reads back the same values. Keys must
 * match [A-Za-z_][A-Za-z0-9_]* and values must be UTF-8 text without
 * control characters other than tab, LF and CR; else BRK_ERR_INVAL. Keys are
 * not checked for repeats, so tests can build a refused document. Returns
 * BRK_OK or BRK_ERR_NOMEM otherwise. *out is owned (brk_free; values may be
 * secret, so wipe first), NUL-terminated; *outlen (may be NULL) its length.
 */
enum brk_err
wecom_xml_build(const char *const *keys, const char *const *values, size_t n,
                char **out, size_t *outlen)
{
    struct dynbuf d;
    size_t i;
    enum brk_err err = BRK_OK;

    assert(out != NULL);
    assert(n == 0 || (keys != NULL && values != NULL));
    dynbuf_init_secret(&d, SIZE_MAX / 4);
    for (i = 0; i < n; i++) {
        if (keys[i] == NULL || values[i] == NULL || !is_name(keys[i]) ||
            !is_xml_text(values[i])) {
            err = BRK_ERR_INVAL;
            goto out;
        }
    }
    err = dynbuf_add_str(&d, "<xml>");
    for (i = 0; err == BRK_OK && i < n; i++) {
        err = dynbuf_printf(&d, "<%s>", keys[i]);
        if (err == BRK_OK)
            err = add_cdata(&d, values[i]);
        if (err == BRK_OK)
            err = dynbuf_printf(&d, "</%s>", keys[i]);
    }
    if (err == BRK_OK)
        err = dynbuf_add_str(&d, "</xml>");
    if (err)
        goto out;
    err = dynbuf_take(&d, out, outlen);
out:
    dynbuf_free(&d);
    return err;
}
