/*
 * The streaming allow-list filter (see filter.h). Tokens drive a stack
 * of frames that follows the scope tree; what may pass is written straight
 * into one output buffer by a small JSON writer. A record whose id is not
 * known yet is written too and cut back to its mark when it turns out to
 * be out of range, so nothing is copied twice and at most one undecided
 * record is held beyond what will be returned.
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dynbuf.h"
#include "filter.h"
#include "jsontok.h"
#include "swar.h"

#define DEFAULT_MAX_DEPTH  32
#define DEFAULT_MAX_OUTPUT ((size_t)64 * 1024 * 1024)
#define DEFAULT_MAX_RECORD ((size_t)4 * 1024 * 1024)
#define MAX_DEPTH_CAP      4096
#define TOKEN_MIN          ((size_t)16 * 1024 * 1024)
#define NO_HOLD            SIZE_MAX
#define KEYS_LINEAR        16 /* keys of one object searched linearly */
#define OUT_MIN_CAP        4096
#define OUT_DOUBLE_MAX     ((size_t)8 * 1024 * 1024)
#define PRED_SIZE          256 /* entries of the next-key cache */
/* a cleared filter keeps a buffer up to this size for its next document */
#define KEEP_MAX ((size_t)64 * 1024)
/* bytes of the names of kept (or removed) keys for the audit trail */
#define NAMES_TEXT_MAX ((size_t)64 * 1024)

/*---- State ----*/

enum vtype {
    VT_STRING,
    VT_INTEGER,
    VT_REAL,
    VT_BOOL,
    VT_NULL,
    VT_OBJECT,
    VT_ARRAY
};

/* What the key just read means to records being decided (bits). */
enum key_role {
    KR_ID = 1,     /* the record's id */
    KR_ID_OBJ = 2, /* "a" of a two-level id "a.b" */
    KR_SUB_ID = 4, /* "b" inside that object: the parent record's id */
    KR_TYPE = 8,   /* a chat member's "type" */
};

enum rec_state { REC_PENDING, REC_KEEP, REC_DROP };

/* One open object or array. */
struct frame {
    /* Declared node of this container, or NULL. Removed subtrees keep it
     * only while a customer above still looks for its follow users. */
    const struct scope_node *node;
    const struct scope_node *kchild; /* object: node of the current key */
    uint64_t seen; /* declared fields seen, when nfields <= 64 */
    size_t kbase;  /* first entry of this object in the key stack */
    size_t tbase;  /* first byte of its key text */
    /* record: output length before its comma, and the counts then */
    size_t mark;
    unsigned long save_stripped;
    unsigned long save_dropped;
    const char *id1, *id2; /* record id "id1" or "id1.id2" */
    size_t id1len, id2len;
    uint64_t id1pre, id2pre; /* their key_prefix */
    int cust;                /* index of the customer frame to credit, or -1 */
    uint32_t last; /* 1 + index of the last declared key, 0 at first */
    unsigned char is_obj;
    unsigned char emit;     /* this container is being written */
    unsigned char wrote;    /* an element was written (next needs a comma) */
    unsigned char krole;    /* enum key_role bits of the current key */
    unsigned char rec;      /* enum scope_record evaluated here, or 0 */
    unsigned char rec_emit; /* its decision changes the output */
    unsigned char rec_state;
    unsigned char parent_wrote; /* parent's wrote before this record */
    unsigned char idobj;        /* holds the id "b" of the parent record */
};

/* A key of an open object: its first bytes (up to 8, zero-padded) settle
 * most comparisons; the hash is only computed once the object is indexed. */
struct key_ent {
    uint64_t pre;
    uint32_t hash;
    uint32_t len;
    size_t off;
};

/* Open-addressing index over the keys of one large object. */
struct key_tab {
    uint32_t *slot; /* entry index + 1, 0 = empty */
    size_t size;    /* in use for the current object; 0 = none */
    size_t cap;
};

/*
 * Objects of one kind repeat their keys in one order: after field `last`
 * of node came field `next` (name length nlen) last time.
 */
struct pred {
    const struct scope_node *node;
    uint64_t pre; /* key_prefix of that field's name */
    uint32_t last, next;
    uint32_t nlen; /* its length (longer keys are never guessed) */
    uint32_t gen;  /* the filter's tgen when written */
};

#define NAMES_MAX   128
#define UNKNOWN_MAX 16
#define NAME_LEN    48
#define NODE_CACHE  128 /* entries of the per-node caches below */

#define NAME_TEXT 32 /* "name": of up to 29 bytes kept written out */

/* A declared name as written: when it needs no escaping and is short,
 * the text "name": itself (copied whole), else only its length. */
struct name_ent {
    const struct scope_node *node;
    size_t len;   /* of the name */
    size_t tlen;  /* of text, 0 when not kept */
    uint32_t gen; /* the filter's tgen when written */
    char text[NAME_TEXT];
};

/* A node already passed to note_node in the document of generation gen. */
struct seen {
    const struct scope_node *node;
    uint32_t gen;
};

/*
 * What a filter learns of its tree (pred, names: valid while their gen is
 * the filter's tgen, which changes with the tree) and of one document
 * (kept_seen, rem_seen: while theirs is dgen, which changes with every
 * document), and the names for the audit trail (as many as nkept, nrem
 * and nunknown say). A clear keeps it all and moves a generation on, so it
 * writes a few words where it would zero 20 kB, and a stream of documents
 * on one tree finds its keys and names learned.
 *
 * The text filter_names_get wrote last (the filter's names_kept and
 * names_rem) is kept with the lists it was written from (tk, tr, tu: as
 * many as ntk, ntr, ntu say) and the tgen they were noted under: the same
 * lists under the same tree give the same text, which is given again.
 */
struct memo {
    struct pred pred[PRED_SIZE];
    struct name_ent names[NODE_CACHE];
    struct seen kept_seen[NODE_CACHE], rem_seen[NODE_CACHE];
    const struct scope_node *kept[NAMES_MAX], *rem[NAMES_MAX];
    char unknown[UNKNOWN_MAX][NAME_LEN];
    const struct scope_node *tk[NAMES_MAX], *tr[NAMES_MAX];
    char tu[UNKNOWN_MAX][NAME_LEN];
    size_t ntk, ntr, ntu;
    uint32_t tgen; /* of the lists; 0: no text written */
};

struct filter {
    const struct scope_node *root;
    const struct scope_grant *grant;
    filter_range_cb *in_range;
    void *arg;
    size_t max_depth, max_output, max_record;
    size_t hard; /* no valid output is longer: max_output + max_record */

    struct jsontok *tok;

    struct frame *fr;
    size_t depth;
    size_t fr_used;       /* frames written since the last clear */
    struct key_tab *tabs; /* per depth */

    char *out;
    size_t len, cap;
    size_t hold; /* mark of the outermost undecided record, or NO_HOLD */
    unsigned long stripped, dropped;

    struct memo *m;
    uint64_t tree;       /* root->tree of the tree tgen is for */
    uint32_t tgen, dgen; /* generations of the memo's entries, never 0 */

    struct key_ent *ks;
    size_t ks_len, ks_cap;
    char *kt;
    size_t kt_len, kt_cap;

    enum brk_err err;
    unsigned char started, done, finished, taken;
    /* the top-level "errcode": its value comes next; seen */
    unsigned char at_errcode, errcode_seen;
    long errcode;

    /* names for the audit trail (in the memo): which keys were written and
     * removed */
    size_t nkept, nrem, nunknown;
    unsigned char lastkey[NAME_LEN]; /* the last undeclared key, cut */
    size_t lastkey_len;
    /* filter_names_get's lists, kept with their allocations by a clear */
    struct dynbuf names_kept, names_rem;
    unsigned char cleared; /* by filter_clear, nothing read since */
};

/*---- Errors and small helpers ----*/

/* Record the first error; token handlers return 0 to stop. */
static int
fail(struct filter *f, enum brk_err err)
{
    if (!f->err)
        f->err = err;
    return 0;
}

static int
perm_ok(const struct filter *f, int perm)
{
    if (perm == SCOPE_PERM_ALWAYS)
        return 1;
    if (perm <= SCOPE_PERM_NEVER || perm >= SCOPE_PERM_MAX)
        return 0;
    return (int)((f->grant->bits[perm / 64] >> (perm % 64)) & 1);
}

static int
type_ok(enum scope_type t, enum vtype v)
{
    switch (t) {
    case SCOPE_T_STRING:
        return v == VT_STRING;
    case SCOPE_T_INTEGER:
        return v == VT_INTEGER;
    case SCOPE_T_NUMBER:
        return v == VT_INTEGER || v == VT_REAL;
    case SCOPE_T_BOOL:
        return v == VT_BOOL;
    case SCOPE_T_OBJECT:
        return v == VT_OBJECT;
    case SCOPE_T_ARRAY:
        return v == VT_ARRAY;
    }
    return 0;
}

/* The child of obj called key (len bytes), or NULL: fields are sorted by
 * strcmp, which orders like memcmp with the shorter prefix first. */
static const struct scope_node *
field_find(const struct scope_node *obj, const char *key, size_t len)
{
    size_t lo = 0, hi = obj->nfields, mid, nl;
    const struct scope_node *c;
    int r;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        c = &obj->fields[mid];
        nl = strlen(c->name);
        r = memcmp(key, c->name, len < nl ? len : nl);
        if (r == 0)
            r = len < nl ? -1 : len > nl;
        if (r == 0)
            return c;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/*
 * The first min(n, 8) bytes of s, each at its own place of the word (the
 * rest zero), read with at most three loads: equal words of two keys of
 * one length up to 8 mean equal keys.
 */
static inline uint64_t
key_prefix(const char *s, size_t n)
{
    uint64_t w;
    uint32_t a, b;

    if (n >= 8) {
        memcpy(&w, s, 8);
        return w;
    }
    if (n >= 4) {
        /* two loads overlapping by 8 - n bytes, which agree */
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        return (uint64_t)a | (uint64_t)b << (8 * (n - 4));
    }
    if (n == 0)
        return 0;
    return (uint64_t)(unsigned char)s[0] |
           (uint64_t)(unsigned char)s[n / 2] << (8 * (n / 2)) |
           (uint64_t)(unsigned char)s[n - 1] << (8 * (n - 1));
}

/* field_find through the next-key cache of frame t's node; pre is
 * key_prefix(key, len). */
static uint32_t
pred_base(const struct scope_node *node)
{
    return (uint32_t)((uintptr_t)node / sizeof(*node)) * 2654435761u >> 24;
}

static const struct scope_node *
field_lookup(struct filter *f, struct frame *t, const char *key, size_t len,
             uint64_t pre)
{
    const struct scope_node *node = t->node, *c;
    struct pred *p;

    /* an object's guesses lie side by side, in the order its keys come:
     * a document touches few lines of the table */
    p = &f->m->pred[(pred_base(node) + t->last) % PRED_SIZE];
    if (p->node == node && p->gen == f->tgen && p->last == t->last &&
        p->nlen == len && p->pre == pre &&
        (len <= 8 ||
         memcmp(node->fields[p->next].name + 8, key + 8, len - 8) == 0)) {
        t->last = p->next + 1;
        return &node->fields[p->next];
    }
    c = field_find(node, key, len);
    if (c == NULL)
        return NULL;
    if (len > UINT32_MAX) {
        t->last = (uint32_t)(c - node->fields) + 1;
        return c;
    }
    p->node = node;
    p->gen = f->tgen;
    p->last = t->last;
    p->next = (uint32_t)(c - node->fields);
    p->nlen = (uint32_t)len;
    p->pre = pre;
    t->last = p->next + 1;
    return c;
}

static uint32_t
key_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/*---- UTF-8 and the output writer ----*/

/* Byte classes: 0 copied, 1 '"' or '\\', 2 other control, 3..5 lead of a
 * 2..4-byte sequence, 6 never valid. */
static const unsigned char cls[256] = {
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 00 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 20 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 50 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 70 */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* 80 */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* 90 */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* a0 */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* b0 */
    6, 6, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* c0 */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* d0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* e0 */
    5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* f0 */
};

/*
 * Length of the well-formed UTF-8 sequence at s[0] (a lead byte of class
 * 3..5), or 0: no overlong forms, no surrogates, nothing above U+10FFFF
 * (the tokenizer checks none, and a reader downstream may check more).
 */
static size_t
utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;

    switch (cls[c]) {
    case 3:
        return avail >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    case 4:
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
        if (avail < 3 || s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80)
            return 0;
        return 3;
    case 5:
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
        if (avail < 4 || s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80 ||
            (s[3] & 0xc0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

/* Well-formed UTF-8 (see utf8_seq); with nul_ok 0, no NUL byte either. */
static int
utf8_check(const unsigned char *s, size_t n, int nul_ok)
{
    size_t i = 0, k;
    uint64_t w;
    uint32_t a, b;

    /* all ASCII, the usual case: whole words, the last one overlapping
     * (short strings: the bytes, padded with 0x01) */
    for (; n - i >= 8; i += 8) {
        memcpy(&w, s + i, 8);
        if (!swar_ascii(w, nul_ok))
            goto slow;
    }
    if (i == n)
        return 1;
    if (n >= 8) {
        memcpy(&w, s + n - 8, 8);
    } else if (n >= 4) {
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        w = (uint64_t)a << 32 | b;
    } else {
        w = 0x0101010101000000ULL | s[0] | (uint64_t)s[n / 2] << 8 |
            (uint64_t)s[n - 1] << 16;
    }
    if (swar_ascii(w, nul_ok))
        return 1;
slow:
    while (i < n) {
        if (n - i >= 8) {
            memcpy(&w, s + i, 8);
            if (swar_ascii(w, nul_ok)) {
                i += 8;
                continue;
            }
        }
        if (s[i] < 0x80) {
            if (s[i] == 0 && !nul_ok)
                return 0;
            i++;
            continue;
        }
        /* the common three-byte forms (CJK): leads other than e0 and ed
         * take any two continuation bytes */
        if (s[i] >= 0xe1 && s[i] <= 0xef && s[i] != 0xed && n - i >= 3 &&
            (s[i + 1] & 0xc0) == 0x80 && (s[i + 2] & 0xc0) == 0x80) {
            i += 3;
            continue;
        }
        k = utf8_seq(s + i, n - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

static int
utf8_valid(const unsigned char *s, size_t n)
{
    return utf8_check(s, n, 1);
}

/*
 * Write s as the inside of a JSON string at d, which has room for 6n
 * bytes: '"' and '\\' escaped, control characters as \u00XX, UTF-8 kept.
 * Returns the end, or NULL for malformed UTF-8.
 */
static char *
escape_into(char *d, const unsigned char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0, k;
    unsigned char c;
    uint64_t w;

    while (i < n) {
        /* eight bytes that need no escaping are copied at once */
        if (n - i >= 8) {
            memcpy(&w, s + i, 8);
            if (swar_str_ascii(w)) {
                memcpy(d, &w, 8);
                d += 8;
                i += 8;
                continue;
            }
        }
        c = s[i];
        if (cls[c] == 0) {
            *d++ = (char)c;
            i++;
            continue;
        }
        switch (cls[c]) {
        case 1:
            *d++ = '\\';
            *d++ = (char)c;
            i++;
            break;
        case 2:
            memcpy(d, "\\u00", 4);
            d[4] = hex[c >> 4];
            d[5] = hex[c & 15];
            d += 6;
            i++;
            break;
        default:
            k = utf8_seq(s + i, n - i);
            if (k == 0)
                return NULL;
            memcpy(d, s + i, k);
            d += k;
            i += k;
        }
    }
    return d;
}

/* Exact escaped length of s (validity is checked when writing). */
static size_t
escaped_len(const unsigned char *s, size_t n)
{
    size_t i, extra = 0;

    for (i = 0; i < n; i++) {
        if (cls[s[i]] == 1)
            extra += 1;
        else if (cls[s[i]] == 2)
            extra += 5;
    }
    return n + extra;
}

/* Room for n more bytes (and the NUL kept after the output). */
static int
out_grow(struct filter *f, size_t n)
{
    size_t need, ncap;
    char *p;

    if (n > f->hard - f->len)
        return fail(f, BRK_ERR_TOOBIG);
    need = f->len + n + 1;
    if (need <= f->cap)
        return 1;
    /* double while small (each step copies what was written), then grow
     * by a quarter: a large output may be most of the memory in use */
    ncap = f->cap < OUT_DOUBLE_MAX ? 2 * f->cap : f->cap + f->cap / 4;
    if (ncap < OUT_MIN_CAP)
        ncap = OUT_MIN_CAP;
    if (ncap < need)
        ncap = need;
    if (ncap > f->hard + 1)
        ncap = f->hard + 1;
    p = brk_realloc(f->out, ncap);
    if (p == NULL)
        return fail(f, BRK_ERR_NOMEM);
    f->out = p;
    f->cap = ncap;
    return 1;
}

#define OUT_ROOM(f, n) ((f)->cap - (f)->len > (n))

/* The limits after a write: an undecided record may hold max_record
 * bytes; otherwise the output is bounded by max_output. */
static int
out_check(struct filter *f)
{
    if (f->hold != NO_HOLD) {
        if (f->len - f->hold > f->max_record)
            return fail(f, BRK_ERR_TOOBIG);
    } else if (f->len > f->max_output) {
        return fail(f, BRK_ERR_TOOBIG);
    }
    return 1;
}

static int
put_char(struct filter *f, char c)
{
    if (!OUT_ROOM(f, 1) && !out_grow(f, 1))
        return 0;
    f->out[f->len++] = c;
    return 1;
}

static int
put_mem(struct filter *f, const char *s, size_t n)
{
    if (!OUT_ROOM(f, n) && !out_grow(f, n))
        return 0;
    memcpy(f->out + f->len, s, n);
    f->len += n;
    return 1;
}

/* A quoted, escaped string; BRK_ERR_UPSTREAM_BAD for malformed UTF-8. */
static int
put_string(struct filter *f, const unsigned char *s, size_t n)
{
    char *end;

    if (n > (SIZE_MAX - 8) / 6 || !OUT_ROOM(f, 6 * n + 2)) {
        /* rare: size exactly so a long string near the limit fits */
        if (!out_grow(f, escaped_len(s, n) + 2))
            return 0;
        if (!OUT_ROOM(f, 6 * n + 2)) {
            if (!utf8_valid(s, n))
                return fail(f, BRK_ERR_UPSTREAM_BAD);
            f->out[f->len++] = '"';
            end = escape_into(f->out + f->len, s, n);
            f->len = (size_t)(end - f->out);
            f->out[f->len++] = '"';
            return 1;
        }
    }
    f->out[f->len++] = '"';
    end = escape_into(f->out + f->len, s, n);
    if (end == NULL)
        return fail(f, BRK_ERR_UPSTREAM_BAD);
    f->len = (size_t)(end - f->out);
    f->out[f->len++] = '"';
    return 1;
}

/* The fields of one object are one array: consecutive entries. */
static size_t
node_slot(const struct scope_node *n)
{
    return (size_t)((uintptr_t)n / sizeof(*n)) % NODE_CACHE;
}

/* The separator and, inside an object, the declared key of the element
 * about to be written in frame t. */
static int
put_lead(struct filter *f, struct frame *t, const struct scope_node *n)
{
    struct name_ent *e;
    size_t i;

    if (t->wrote && !put_char(f, ','))
        return 0;
    t->wrote = 1;
    if (!t->is_obj)
        return 1;
    e = &f->m->names[node_slot(n)];
    if (e->node != n || e->gen != f->tgen) {
        e->node = n;
        e->gen = f->tgen;
        e->len = strlen(n->name);
        e->tlen = e->len + 3 <= NAME_TEXT ? e->len + 3 : 0;
        for (i = 0; i < e->len; i++)
            if (cls[(unsigned char)n->name[i]] != 0)
                e->tlen = 0;
        if (e->tlen != 0) {
            memset(e->text, 0, NAME_TEXT);
            e->text[0] = '"';
            memcpy(e->text + 1, n->name, e->len);
            e->text[e->len + 1] = '"';
            e->text[e->len + 2] = ':';
        }
    }
    if (e->tlen == 0)
        return put_string(f, (const unsigned char *)n->name, e->len) &&
               put_char(f, ':');
    /* the whole entry is copied where there is room for it, the text
     * counted; near the end of the room, the text alone (asking for no
     * more room than the text needs: the limits are exact) */
    if (!OUT_ROOM(f, NAME_TEXT)) {
        if (!OUT_ROOM(f, e->tlen) && !out_grow(f, e->tlen))
            return 0;
        if (!OUT_ROOM(f, NAME_TEXT)) {
            memcpy(f->out + f->len, e->text, e->tlen);
            f->len += e->tlen;
            return 1;
        }
    }
    memcpy(f->out + f->len, e->text, NAME_TEXT);
    f->len += e->tlen;
    return 1;
}

/*---- Records ----*/

/* Recompute the mark of the outermost record still undecided. */
static void
update_hold(struct filter *f)
{
    size_t i;

    f->hold = NO_HOLD;
    for (i = 0; i < f->depth; i++) {
        if (f->fr[i].rec_emit && f->fr[i].rec_state == REC_PENDING) {
            f->hold = f->fr[i].mark;
            return;
        }
    }
}

static int
rec_keep(struct filter *f, struct frame *r)
{
    r->rec_state = REC_KEEP;
    update_hold(f);
    /* what is no longer held is part of the output for good */
    if ((f->hold == NO_HOLD ? f->len : f->hold) > f->max_output)
        return fail(f, BRK_ERR_TOOBIG);
    return 1;
}

/* Cut the record back out: its bytes, its comma, and what it counted. */
static void
rec_drop(struct filter *f, struct frame *r)
{
    size_t ri = (size_t)(r - f->fr), i;

    f->len = r->mark;
    f->fr[ri - 1].wrote = r->parent_wrote;
    f->stripped = r->save_stripped;
    f->dropped = r->save_dropped + 1;
    r->rec_state = REC_DROP;
    for (i = ri; i < f->depth; i++) {
        f->fr[i].emit = 0;
        if (i > ri)
            f->fr[i].rec_emit = 0;
    }
    update_hold(f);
}

static int
cust_pending(const struct filter *f, int ci)
{
    return ci >= 0 && f->fr[ci].rec_emit && f->fr[ci].rec_state == REC_PENDING;
}

/* Is this value a valid id of a record of that kind, in range? */
static int
id_ok(struct filter *f, int kind, enum vtype vt, const char *text, size_t len)
{
    if (kind == SCOPE_REC_DEPARTMENT || kind == SCOPE_REC_TAG) {
        if (vt != VT_INTEGER)
            return 0;
    } else if (vt != VT_STRING) {
        return 0;
    }
    return f->in_range((enum scope_record)kind, text, len, f->arg) != 0;
}

/* A follow user in range: its customer is in range. */
static int
credit(struct filter *f, int ci)
{
    if (cust_pending(f, ci))
        return rec_keep(f, &f->fr[ci]);
    return 1;
}

/* The id of record r arrived. */
static int
rec_id(struct filter *f, struct frame *r, enum vtype vt, const char *text,
       size_t len)
{
    int ok = id_ok(f, r->rec, vt, text, len);

    if (r->rec == SCOPE_REC_FOLLOW_USER && ok && !credit(f, r->cust))
        return 0;
    if (!r->rec_emit || r->rec_state != REC_PENDING)
        return 1;
    if (ok)
        return rec_keep(f, r);
    /* an external chat member ("type": 2) may still follow */
    if (r->rec != SCOPE_REC_CHAT_MEMBER)
        rec_drop(f, r);
    return 1;
}

static void
rec_setup(struct frame *c, const struct scope_node *n)
{
    const char *rid = n->record_id, *dot;

    c->rec = (unsigned char)n->record;
    c->id1 = c->id2 = NULL;
    c->id1len = c->id2len = 0;
    if (rid == NULL || n->record == SCOPE_REC_CUSTOMER)
        return;
    dot = strchr(rid, '.');
    c->id1 = rid;
    if (dot == NULL) {
        c->id1len = strlen(rid);
    } else {
        c->id1len = (size_t)(dot - rid);
        c->id2 = dot + 1;
        c->id2len = strlen(dot + 1);
        c->id2pre = key_prefix(c->id2, c->id2len);
    }
    c->id1pre = key_prefix(c->id1, c->id1len);
}

/*---- Repeated keys ----*/

static int
keys_index(struct filter *f, struct frame *t, struct key_tab *tab, size_t count)
{
    size_t size = 64, i, j;
    struct key_ent *e;
    uint32_t *slot;

    while (size < 4 * count)
        size *= 2;
    if (size > tab->cap) {
        slot = brk_realloc(tab->slot, size * sizeof(*slot));
        if (slot == NULL)
            return fail(f, BRK_ERR_NOMEM);
        tab->slot = slot;
        tab->cap = size;
    }
    /* the keys of an object read linearly so far have no hash yet */
    if (tab->size == 0)
        for (i = 0; i < count; i++) {
            e = &f->ks[t->kbase + i];
            e->hash = key_hash(f->kt + e->off, e->len);
        }
    memset(tab->slot, 0, size * sizeof(*tab->slot));
    tab->size = size;
    for (i = 0; i < count; i++) {
        j = f->ks[t->kbase + i].hash & (size - 1);
        while (tab->slot[j] != 0)
            j = (j + 1) & (size - 1);
        tab->slot[j] = (uint32_t)(i + 1);
    }
    return 1;
}

/* Add key (pre: its key_prefix) to the keys of object t;
 * BRK_ERR_UPSTREAM_BAD if present. */
static int
keys_add(struct filter *f, struct frame *t, const char *key, size_t len,
         uint64_t pre)
{
    struct key_tab *tab = &f->tabs[t - f->fr];
    size_t count = f->ks_len - t->kbase, i, j, ncap;
    uint32_t h = 0;
    struct key_ent *e, *nks;
    char *nkt;

    if (len > UINT32_MAX || count >= UINT32_MAX - 1)
        return fail(f, BRK_ERR_TOOBIG);
    if (tab->size == 0) {
        for (i = t->kbase; i < f->ks_len; i++) {
            e = &f->ks[i];
            if (e->pre == pre && e->len == len &&
                (len <= 8 || memcmp(f->kt + e->off + 8, key + 8, len - 8) == 0))
                return fail(f, BRK_ERR_UPSTREAM_BAD);
        }
    } else {
        h = key_hash(key, len);
        j = h & (tab->size - 1);
        while (tab->slot[j] != 0) {
            e = &f->ks[t->kbase + tab->slot[j] - 1];
            if (e->hash == h && e->len == len &&
                memcmp(f->kt + e->off, key, len) == 0)
                return fail(f, BRK_ERR_UPSTREAM_BAD);
            j = (j + 1) & (tab->size - 1);
        }
    }
    if (f->ks_len == f->ks_cap) {
        ncap = f->ks_cap ? f->ks_cap * 2 : 64;
        nks = brk_realloc(f->ks, ncap * sizeof(*nks));
        if (nks == NULL)
            return fail(f, BRK_ERR_NOMEM);
        f->ks = nks;
        f->ks_cap = ncap;
    }
    /* allocated even for an empty first key: f->kt + off must not be
     * arithmetic on NULL when the next empty key is compared */
    if (f->kt == NULL || len > f->kt_cap - f->kt_len) {
        ncap = f->kt_cap ? f->kt_cap : 1024;
        while (len > ncap - f->kt_len) {
            if (ncap > SIZE_MAX / 2)
                return fail(f, BRK_ERR_NOMEM);
            ncap *= 2;
        }
        nkt = brk_realloc(f->kt, ncap);
        if (nkt == NULL)
            return fail(f, BRK_ERR_NOMEM);
        f->kt = nkt;
        f->kt_cap = ncap;
    }
    e = &f->ks[f->ks_len++];
    e->pre = pre;
    e->hash = h;
    e->len = (uint32_t)len;
    e->off = f->kt_len;
    if (len > 0)
        memcpy(f->kt + f->kt_len, key, len);
    f->kt_len += len;
    count++;
    if (count > KEYS_LINEAR && (tab->size == 0 || 2 * count > tab->size))
        return keys_index(f, t, tab, count);
    if (tab->size != 0) {
        j = h & (tab->size - 1);
        while (tab->slot[j] != 0)
            j = (j + 1) & (tab->size - 1);
        tab->slot[j] = (uint32_t)count;
    }
    return 1;
}

/*---- Token handlers ----*/

static struct frame *
top(struct filter *f)
{
    return &f->fr[f->depth - 1];
}

/* The declared node of the element now arriving in t, or NULL. */
static const struct scope_node *
declared(const struct frame *t)
{
    if (t->is_obj)
        return t->kchild;
    return t->node != NULL ? t->node->items : NULL;
}

/* Add x to set unless there (seen: the nodes already passed here in the
 * document of generation gen, by slot). */
static void
note_node(const struct scope_node **set, size_t *n, struct seen *seen,
          uint32_t gen, const struct scope_node *x)
{
    size_t i, h = node_slot(x);
    /* no node of x's slot passed yet: x is not in set */
    int fresh = seen[h].gen != gen;

    if (!fresh && seen[h].node == x)
        return;
    seen[h].node = x;
    seen[h].gen = gen;
    for (i = 0; !fresh && i < *n; i++)
        if (set[i] == x)
            return;
    if (*n < NAMES_MAX)
        set[(*n)++] = x;
}

/* A removed key: declared (its node) or not (its name, cut). */
static void
note_removed(struct filter *f, const struct scope_node *n)
{
    char name[NAME_LEN];
    unsigned char b;
    size_t i;

    if (n != NULL) {
        note_node(f->m->rem, &f->nrem, f->m->rem_seen, f->dgen, n);
        return;
    }
    /* printable ASCII only */
    for (i = 0; i < f->lastkey_len; i++) {
        b = f->lastkey[i];
        name[i] = b > ' ' && b < 0x7f && b != ',' ? (char)b : '?';
    }
    name[f->lastkey_len] = '\0';
    for (i = 0; i < f->nunknown; i++)
        if (strcmp(f->m->unknown[i], name) == 0)
            return;
    if (f->nunknown < UNKNOWN_MAX)
        memcpy(f->m->unknown[f->nunknown++], name, f->lastkey_len + 1);
}

/* The node to write the element now arriving in t with, or NULL when it
 * is not written; a removal in a written container is counted. */
static const struct scope_node *
slot(struct filter *f, const struct frame *t, const struct scope_node *n,
     enum vtype vt)
{
    if (!t->emit)
        return NULL;
    if (n == NULL || !perm_ok(f, n->perm) || !type_ok(n->type, vt)) {
        f->stripped++;
        if (t->is_obj)
            note_removed(f, n);
        return NULL;
    }
    if (t->is_obj)
        note_node(f->m->kept, &f->nkept, f->m->kept_seen, f->dgen, n);
    return n;
}

/* The value of a key with a role in deciding a record. */
static int
role_scalar(struct filter *f, struct frame *t, enum vtype vt, const char *text,
            size_t len)
{
    if ((t->krole & KR_SUB_ID) && !rec_id(f, t - 1, vt, text, len))
        return 0;
    if ((t->krole & KR_ID) && !rec_id(f, t, vt, text, len))
        return 0;
    if ((t->krole & KR_TYPE) && vt == VT_INTEGER && len == 1 &&
        text[0] == '2' && t->rec_emit && t->rec_state == REC_PENDING)
        return rec_keep(f, t);
    return 1;
}

/* The top-level errcode's text (an integer by the grammar); one too
 * large for a long is not WeCom's and is left unseen. */
static void
note_errcode(struct filter *f, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    int neg = *p == '-';
    long v = 0;

    for (p += neg; p < end; p++) {
        if (v > (LONG_MAX - 9) / 10)
            return;
        v = v * 10 + (*p - '0');
    }
    f->errcode = neg ? -v : v;
    f->errcode_seen = 1;
}

static int
on_scalar(struct filter *f, enum vtype vt, const char *text, size_t len)
{
    const struct scope_node *d, *n;
    struct frame *t;
    int ok;

    if (f->depth == 0)
        return fail(f, BRK_ERR_UPSTREAM_BAD);
    t = top(f);
    if (f->at_errcode) {
        f->at_errcode = 0;
        if (vt == VT_INTEGER)
            note_errcode(f, text, len);
    }
    /* inside a removed subtree nothing is written or decided: only the
     * string's check remains */
    if (!t->emit && t->node == NULL && !(t->is_obj && t->krole != 0)) {
        if (vt == VT_STRING && !utf8_valid((const unsigned char *)text, len))
            return fail(f, BRK_ERR_UPSTREAM_BAD);
        return 1;
    }
    if (t->is_obj && t->krole != 0) {
        if (vt == VT_STRING && !utf8_valid((const unsigned char *)text, len))
            return fail(f, BRK_ERR_UPSTREAM_BAD);
        if (!role_scalar(f, t, vt, text, len))
            return 0;
    }
    d = declared(t);
    n = slot(f, t, d, vt);
    if (d != NULL && d->record != SCOPE_REC_NONE && !t->is_obj &&
        d->type != SCOPE_T_OBJECT && d->type != SCOPE_T_ARRAY &&
        f->in_range != NULL) {
        /* an id list: each item is a record id */
        ok = -1;
        if (d->record == SCOPE_REC_FOLLOW_USER && cust_pending(f, t->cust)) {
            ok = id_ok(f, d->record, vt, text, len);
            if (ok && !credit(f, t->cust))
                return 0;
        }
        if (n != NULL) {
            if (ok < 0)
                ok = id_ok(f, d->record, vt, text, len);
            if (!ok) {
                f->dropped++;
                n = NULL;
            }
        }
    }
    if (n == NULL) {
        if (vt == VT_STRING && !utf8_valid((const unsigned char *)text, len))
            return fail(f, BRK_ERR_UPSTREAM_BAD);
        return 1;
    }
    if (!put_lead(f, t, n))
        return 0;
    if (vt == VT_STRING) {
        if (!put_string(f, (const unsigned char *)text, len))
            return 0;
    } else if (!put_mem(f, text, len)) {
        return 0;
    }
    return out_check(f);
}

static int
on_start(struct filter *f, int is_obj)
{
    const struct scope_node *d, *n;
    struct frame *t, *c;
    enum vtype vt = is_obj ? VT_OBJECT : VT_ARRAY;
    int pc;

    if (f->depth == 0) {
        /* the top level must be the one response object */
        if (f->started || !is_obj)
            return fail(f, BRK_ERR_UPSTREAM_BAD);
        f->started = 1;
        c = &f->fr[0];
        memset(c, 0, sizeof(*c));
        if (f->fr_used == 0)
            f->fr_used = 1;
        c->node = f->root;
        c->is_obj = 1;
        c->emit = 1;
        c->cust = -1;
        c->kbase = f->ks_len;
        c->tbase = f->kt_len;
        f->tabs[0].size = 0;
        f->depth = 1;
        return put_char(f, '{') && out_check(f);
    }
    if (f->depth >= f->max_depth)
        return fail(f, BRK_ERR_UPSTREAM_BAD);
    f->at_errcode = 0;
    t = top(f);
    d = declared(t);
    if (d != NULL && !type_ok(d->type, vt))
        d = NULL;
    n = slot(f, t, d, vt);
    pc = cust_pending(f, t->cust) ? t->cust : -1;
    c = &f->fr[f->depth];
    if (f->fr_used <= f->depth)
        f->fr_used = f->depth + 1;
    c->kchild = NULL;
    c->seen = 0;
    c->last = 0;
    c->kbase = f->ks_len;
    c->tbase = f->kt_len;
    c->is_obj = (unsigned char)is_obj;
    c->emit = n != NULL;
    c->wrote = 0;
    c->krole = 0;
    c->rec = 0;
    c->rec_emit = 0;
    c->rec_state = REC_PENDING;
    c->idobj = is_obj && t->is_obj && (t->krole & KR_ID_OBJ);
    f->tabs[f->depth].size = 0;
    if (n != NULL) {
        c->node = n;
        c->cust = pc;
        if (is_obj && n->record != SCOPE_REC_NONE && f->in_range != NULL) {
            rec_setup(c, n);
            c->rec_emit = 1;
            c->mark = f->len;
            c->save_stripped = f->stripped;
            c->save_dropped = f->dropped;
            c->parent_wrote = t->wrote;
            if (n->record == SCOPE_REC_CUSTOMER)
                c->cust = (int)f->depth;
            if (f->hold == NO_HOLD)
                f->hold = c->mark;
        }
        f->depth++;
        if (!put_lead(f, t, n) || !put_char(f, is_obj ? '{' : '['))
            return 0;
        return out_check(f);
    }
    /* not written: keep the node only where a customer's follow users
     * may still be found; another customer starts its own search */
    c->cust = d != NULL && is_obj && d->record == SCOPE_REC_CUSTOMER ? -1 : pc;
    c->node = c->cust >= 0 ? d : NULL;
    if (c->node != NULL && is_obj && d->record == SCOPE_REC_FOLLOW_USER)
        rec_setup(c, d);
    f->depth++;
    return 1;
}

static int
on_end(struct filter *f, char close)
{
    struct frame *t = top(f);

    /* no id, no follow user in range, no "type": 2 */
    if (t->rec_emit && t->rec_state == REC_PENDING)
        rec_drop(f, t);
    if (t->emit && !put_char(f, close))
        return 0;
    f->ks_len = t->kbase;
    f->kt_len = t->tbase;
    f->depth--;
    if (f->depth == 0)
        f->done = 1;
    return out_check(f);
}

static int
on_key(struct filter *f, const char *key, size_t len)
{
    struct frame *t = top(f);
    const struct scope_node *c = NULL;
    const struct frame *p;
    uint64_t bit, pre = key_prefix(key, len);

    if (t->node != NULL)
        c = field_lookup(f, t, key, len, pre);
    if (c != NULL && t->node->nfields <= 64) {
        bit = (uint64_t)1 << (c - t->node->fields);
        if (t->seen & bit)
            return fail(f, BRK_ERR_UPSTREAM_BAD);
        t->seen |= bit;
    } else {
        /* NUL cannot be part of a key anyone downstream compares */
        if (c == NULL && !utf8_check((const unsigned char *)key, len, 0))
            return fail(f, BRK_ERR_UPSTREAM_BAD);
        if (!keys_add(f, t, key, len, pre))
            return 0;
    }
    if (c == NULL) {
        /* kept for the audit's names, cut; made printable when used */
        f->lastkey_len = len < NAME_LEN - 1 ? len : NAME_LEN - 1;
        if (f->lastkey_len > 0)
            memcpy(f->lastkey, key, f->lastkey_len);
    }
    t->kchild = c;
    t->krole = 0;
    if (f->depth == 1)
        f->at_errcode = len == 7 && memcmp(key, "errcode", 7) == 0;
    if (t->rec != 0) {
        if (t->id1 != NULL && len == t->id1len && pre == t->id1pre &&
            (len <= 8 || memcmp(key + 8, t->id1 + 8, len - 8) == 0))
            t->krole |= t->id2 != NULL ? KR_ID_OBJ : KR_ID;
        if (t->rec == SCOPE_REC_CHAT_MEMBER && len == 4 &&
            memcmp(key, "type", 4) == 0)
            t->krole |= KR_TYPE;
    }
    if (t->idobj) {
        p = t - 1;
        if (len == p->id2len && pre == p->id2pre &&
            (len <= 8 || memcmp(key + 8, p->id2 + 8, len - 8) == 0))
            t->krole |= KR_SUB_ID;
    }
    return 1;
}

/* Hand one token to its handler: 0 when the filter failed. */
static int
on_token(struct filter *f, enum jsontok_type tt, const char *s, size_t n)
{
    /* the most frequent first, ahead of the switch's indirect jump */
    if (tt == JSONTOK_KEY)
        return on_key(f, s, n);
    if (tt == JSONTOK_STRING)
        return on_scalar(f, VT_STRING, s, n);
    switch (tt) {
    case JSONTOK_NULL:
        return on_scalar(f, VT_NULL, "null", 4);
    case JSONTOK_TRUE:
        return on_scalar(f, VT_BOOL, "true", 4);
    case JSONTOK_FALSE:
        return on_scalar(f, VT_BOOL, "false", 5);
    case JSONTOK_INTEGER:
        return on_scalar(f, VT_INTEGER, s, n);
    case JSONTOK_REAL:
        return on_scalar(f, VT_REAL, s, n);
    case JSONTOK_STRING:
        return on_scalar(f, VT_STRING, s, n);
    case JSONTOK_KEY:
        return on_key(f, s, n);
    case JSONTOK_OBJ_START:
        return on_start(f, 1);
    case JSONTOK_ARR_START:
        return on_start(f, 0);
    case JSONTOK_OBJ_END:
        return on_end(f, '}');
    case JSONTOK_ARR_END:
        return on_end(f, ']');
    case JSONTOK_MORE:
    case JSONTOK_ERROR:
        break;
    }
    return fail(f, BRK_ERR_UPSTREAM_BAD);
}

/*---- API ----*/

/*
 * A filter writing what root declares and grant allows, asking in_range
 * about records (NULL: no record is checked or dropped). root, grant and
 * arg are borrowed and must outlive the filter; limits (NULL, or zero
 * fields, for the defaults) is copied. max_record counts the bytes written
 * for a record while it is undecided, from its leading comma. Returns
 * BRK_OK, BRK_ERR_INVAL for a NULL root or grant, BRK_ERR_NOMEM. Owned
 * result: filter_free.
 */
enum brk_err
filter_new(const struct scope_node *root, const struct scope_grant *grant,
           filter_range_cb *in_range, void *arg,
           const struct filter_limits *limits, struct filter **out)
{
    struct filter *f = NULL;
    enum brk_err err = BRK_OK;

    if (root == NULL || grant == NULL || out == NULL)
        return BRK_ERR_INVAL;
    f = brk_calloc(1, sizeof(*f));
    if (f == NULL)
        return BRK_ERR_NOMEM;
    f->root = root;
    f->grant = grant;
    f->in_range = in_range;
    f->arg = arg;
    f->max_depth = DEFAULT_MAX_DEPTH;
    f->max_output = DEFAULT_MAX_OUTPUT;
    f->max_record = DEFAULT_MAX_RECORD;
    if (limits != NULL) {
        if (limits->max_depth != 0)
            f->max_depth = limits->max_depth;
        if (limits->max_output != 0)
            f->max_output = limits->max_output;
        if (limits->max_record != 0)
            f->max_record = limits->max_record;
    }
    if (f->max_depth > MAX_DEPTH_CAP)
        f->max_depth = MAX_DEPTH_CAP;
    if (f->max_output > SIZE_MAX / 4)
        f->max_output = SIZE_MAX / 4;
    if (f->max_record > SIZE_MAX / 4)
        f->max_record = SIZE_MAX / 4;
    f->hard = f->max_output + f->max_record;
    f->hold = NO_HOLD;
    f->tree = root->tree;
    f->tgen = 1;
    f->dgen = 1;
    dynbuf_init(&f->names_kept, NAMES_TEXT_MAX);
    dynbuf_init(&f->names_rem, NAMES_TEXT_MAX);
    f->fr = brk_calloc(f->max_depth, sizeof(*f->fr));
    f->tabs = brk_calloc(f->max_depth, sizeof(*f->tabs));
    f->m = brk_calloc(1, sizeof(*f->m));
    if (f->fr == NULL || f->tabs == NULL || f->m == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    /* the tokenizer's own depth bound is never the one reached first; a
     * removed string is read whole too, so a token may be as long as the
     * output may be, and at least TOKEN_MIN */
    err = jsontok_new(f->max_depth + 1,
                      f->hard > TOKEN_MIN ? f->hard : TOKEN_MIN, &f->tok);
out:
    if (err) {
        filter_free(f);
        return err;
    }
    *out = f;
    return BRK_OK;
}

/*
 * Feed the next len bytes of the body (any split). Returns BRK_OK;
 * BRK_ERR_UPSTREAM_BAD (malformed, repeated key, too deep, not an
 * object), BRK_ERR_TOOBIG, BRK_ERR_NOMEM; once failed, the same error
 * again. BRK_ERR_INVAL after filter_finish. buf is borrowed.
 */
enum brk_err
filter_feed(struct filter *f, const char *buf, size_t len)
{
    enum jsontok_type tt;
    const char *s = NULL;
    size_t n = 0;

    if (f->err)
        return f->err;
    if (f->finished)
        return BRK_ERR_INVAL;
    jsontok_input(f->tok, buf, len);
    while ((tt = jsontok_next(f->tok, &s, &n)) != JSONTOK_MORE) {
        /* fail() keeps an error a handler recorded first */
        if (tt == JSONTOK_ERROR)
            fail(f, jsontok_error(f->tok));
        else if (!on_token(f, tt, s, n))
            fail(f, BRK_ERR_UPSTREAM_BAD);
        if (f->err)
            return f->err;
    }
    return BRK_OK;
}

/*
 * The body is complete: check it ended as one whole object. Returns
 * BRK_OK or an error as filter_feed (a truncated body is
 * BRK_ERR_UPSTREAM_BAD); BRK_ERR_INVAL when called twice.
 */
enum brk_err
filter_finish(struct filter *f)
{
    if (f->err)
        return f->err;
    if (f->finished)
        return BRK_ERR_INVAL;
    if (jsontok_finish(f->tok) != BRK_OK || !f->done)
        return f->err = BRK_ERR_UPSTREAM_BAD;
    if (f->len > f->max_output)
        return f->err = BRK_ERR_TOOBIG;
    f->finished = 1;
    return BRK_OK;
}

/*
 * The output after a successful filter_finish, without moving it:
 * *out (NUL-terminated) and *len, borrowed until filter_take_output,
 * filter_clear, filter_reset or filter_free. Returns BRK_OK, the filter's
 * error, or BRK_ERR_INVAL before finish or once taken.
 */
enum brk_err
filter_output(struct filter *f, const char **out, size_t *len)
{
    if (f->err)
        return f->err;
    if (!f->finished || f->taken || f->out == NULL)
        return BRK_ERR_INVAL;
    f->out[f->len] = '\0';
    *out = f->out;
    *len = f->len;
    return BRK_OK;
}

/*
 * Move the output out after a successful filter_finish: *out is owned
 * (brk_free), NUL-terminated, *len its length. Returns BRK_OK, the
 * filter's error, or BRK_ERR_INVAL before finish or when already taken.
 */
enum brk_err
filter_take_output(struct filter *f, char **out, size_t *len)
{
    char *p;

    if (f->err)
        return f->err;
    if (!f->finished || f->taken || f->out == NULL)
        return BRK_ERR_INVAL;
    /* give slack back; keeping the larger block is fine if this fails */
    if (f->cap - f->len > 65536) {
        p = brk_realloc(f->out, f->len + 1);
        if (p != NULL) {
            f->out = p;
            f->cap = f->len + 1;
        }
    }
    f->out[f->len] = '\0';
    *out = f->out;
    *len = f->len;
    f->out = NULL;
    f->cap = f->len = 0;
    f->taken = 1;
    return BRK_OK;
}

/* The top-level errcode (see filter.h). */
int
filter_errcode(const struct filter *f, long *code)
{
    if (f == NULL || !f->errcode_seen)
        return 0;
    *code = f->errcode;
    return 1;
}

/* Keys removed so far (a removed subtree counts once). Cannot fail. */
unsigned long
filter_stripped(const struct filter *f)
{
    return f != NULL ? f->stripped : 0;
}

/* Records dropped for range so far. Cannot fail. */
unsigned long
filter_dropped(const struct filter *f)
{
    return f != NULL ? f->dropped : 0;
}

/* A buffer kept by a clear when it is not over KEEP_MAX bytes, else
 * freed: one huge document does not pin its memory in a reused filter. */
static void *
keep_or_free(void *p, size_t bytes)
{
    if (bytes <= KEEP_MAX)
        return p;
    brk_free(p);
    return NULL;
}

/* The next generation of the memo's entries (gen, of what at): an entry
 * written under another is not read. On a wrap, every entry is zeroed
 * so no old one can match again. */
static void
next_gen(struct memo *m, uint32_t *gen, int tree)
{
    if (++*gen != 0)
        return;
    if (tree) {
        memset(m->pred, 0, sizeof(m->pred));
        memset(m->names, 0, sizeof(m->names));
        m->tgen = 0;
    } else {
        memset(m->kept_seen, 0, sizeof(m->kept_seen));
        memset(m->rem_seen, 0, sizeof(m->rem_seen));
    }
    *gen = 1;
}

/*
 * Forget the document f read: its output (taken or not), counts, names,
 * errcode, error, the tree, grant and range callback it was given. The
 * whole struct is zeroed as filter_new's calloc left it and only the
 * allocations, limits and the memo's generations are put back, so no
 * field, present or added later, carries anything over. What the memo
 * learned of the document is dropped by its generation; what it learned of
 * the tree, and the text of the names it wrote last, is kept for
 * filter_reset to judge: a node's pointer could match a node of another
 * tree placed where a freed one was, so it is only read again under the
 * same root->tree. Buffers are kept (up to KEEP_MAX bytes
 * each) for the next document. Until filter_reset, every call returns
 * BRK_ERR_INVAL. Cannot fail; NULL is a no-op.
 */
void
filter_clear(struct filter *f)
{
    struct jsontok *tok;
    struct frame *fr;
    struct key_tab *tabs;
    struct key_ent *ks;
    struct memo *m;
    char *out, *kt;
    size_t cap, ks_cap, kt_cap, max_depth, max_output, max_record, hard, i;
    size_t fr_used;
    uint64_t tree;
    uint32_t tgen, dgen;
    struct dynbuf nk, nr;

    if (f == NULL || f->cleared)
        return;
    tok = f->tok;
    fr = f->fr;
    fr_used = f->fr_used;
    m = f->m;
    tree = f->tree;
    tgen = f->tgen;
    dgen = f->dgen;
    tabs = f->tabs;
    ks = f->ks;
    ks_cap = f->ks_cap;
    kt = f->kt;
    kt_cap = f->kt_cap;
    out = f->out;
    cap = f->cap;
    max_depth = f->max_depth;
    max_output = f->max_output;
    max_record = f->max_record;
    hard = f->hard;
    nk = f->names_kept;
    nr = f->names_rem;

    memset(f, 0, sizeof(*f));
    f->max_depth = max_depth;
    f->max_output = max_output;
    f->max_record = max_record;
    f->hard = hard;
    f->hold = NO_HOLD;
    f->tok = tok;
    jsontok_reset(tok);
    f->fr = fr;
    memset(fr, 0, fr_used * sizeof(*fr));
    f->m = m;
    f->tree = tree;
    f->tgen = tgen;
    f->dgen = dgen;
    next_gen(m, &f->dgen, 0);
    f->tabs = tabs;
    /* the tables of depths no frame reached are as the last clear left
     * them */
    for (i = 0; i < fr_used; i++) {
        tabs[i].size = 0;
        tabs[i].slot =
            keep_or_free(tabs[i].slot, tabs[i].cap * sizeof(*tabs[i].slot));
        if (tabs[i].slot == NULL)
            tabs[i].cap = 0;
    }
    f->ks = keep_or_free(ks, ks_cap * sizeof(*ks));
    f->ks_cap = f->ks != NULL ? ks_cap : 0;
    f->kt = keep_or_free(kt, kt_cap);
    f->kt_cap = f->kt != NULL ? kt_cap : 0;
    f->out = keep_or_free(out, cap);
    f->cap = f->out != NULL ? cap : 0;
    /* the names' text stays for the same lists (struct memo) */
    if (nk.cap > KEEP_MAX || nr.cap > KEEP_MAX) {
        dynbuf_free(&nk);
        dynbuf_free(&nr);
        m->tgen = 0;
    }
    f->names_kept = nk;
    f->names_rem = nr;
    f->err = BRK_ERR_INVAL;
    f->cleared = 1;
}

/*
 * Make f (from filter_new) filter a new document as filter_new(root,
 * grant, in_range, arg) with f's limits would: filter_clear, then the
 * tree. Borrowed as in filter_new. Returns BRK_OK, or BRK_ERR_INVAL for a
 * NULL root or grant (f is then cleared and refuses every document).
 */
enum brk_err
filter_reset(struct filter *f, const struct scope_node *root,
             const struct scope_grant *grant, filter_range_cb *in_range,
             void *arg)
{
    if (f == NULL)
        return BRK_ERR_INVAL;
    filter_clear(f);
    if (root == NULL || grant == NULL)
        return BRK_ERR_INVAL;
    if (root->tree == 0 || root->tree != f->tree) {
        f->tree = root->tree;
        next_gen(f->m, &f->tgen, 1);
    }
    f->root = root;
    f->grant = grant;
    f->in_range = in_range;
    f->arg = arg;
    f->err = BRK_OK;
    f->cleared = 0;
    return BRK_OK;
}

/* Free the filter and anything not taken; NULL is a no-op. */
void
filter_free(struct filter *f)
{
    size_t i;

    if (f == NULL)
        return;
    jsontok_free(f->tok);
    dynbuf_free(&f->names_kept);
    dynbuf_free(&f->names_rem);
    if (f->tabs != NULL)
        for (i = 0; i < f->max_depth; i++)
            brk_free(f->tabs[i].slot);
    brk_free(f->tabs);
    brk_free(f->fr);
    brk_free(f->m);
    brk_free(f->ks);
    brk_free(f->kt);
    brk_free(f->out);
    brk_free(f);
}

/* name to a comma-separated list (once per request per name: no printf) */
static enum brk_err
name_add(struct dynbuf *d, const char *name)
{
    size_t n = strlen(name), comma = d->len > 0;
    enum brk_err err = dynbuf_reserve(d, comma + n);

    if (err)
        return err;
    if (comma)
        d->buf[d->len++] = ',';
    memcpy(d->buf + d->len, name, n);
    d->len += n;
    d->buf[d->len] = '\0';
    return BRK_OK;
}

/* The names of kept keys to k, of removed ones to r (both empty). */
static enum brk_err
names_into(const struct filter *f, struct dynbuf *k, struct dynbuf *r)
{
    enum brk_err err = BRK_OK;
    size_t i;

    for (i = 0; !err && i < f->nkept; i++)
        if (f->m->kept[i]->name != NULL)
            err = name_add(k, f->m->kept[i]->name);
    for (i = 0; !err && i < f->nrem; i++)
        if (f->m->rem[i]->name != NULL)
            err = name_add(r, f->m->rem[i]->name);
    for (i = 0; !err && i < f->nunknown; i++)
        err = name_add(r, f->m->unknown[i]);
    /* a dynbuf that failed freed itself; one never written may be NULL */
    return err == BRK_ERR_TOOBIG ? BRK_ERR_NOMEM : err;
}

/*
 * Names of the keys written and of the keys removed so far (each once,
 * comma-separated; undeclared keys as written, cut and made printable).
 * Owned results, brk_free. Never a value.
 */
enum brk_err
filter_names(const struct filter *f, char **kept, char **removed)
{
    struct dynbuf k, r;
    char *ko = NULL, *ro = NULL;
    enum brk_err err;

    dynbuf_init(&k, NAMES_TEXT_MAX);
    dynbuf_init(&r, NAMES_TEXT_MAX);
    err = names_into(f, &k, &r);
    if (!err)
        err = dynbuf_take(&k, &ko, NULL);
    if (!err)
        err = dynbuf_take(&r, &ro, NULL);
    dynbuf_free(&k);
    dynbuf_free(&r);
    if (err) {
        brk_free(ko);
        brk_free(ro);
        return err;
    }
    *kept = ko;
    *removed = ro;
    return BRK_OK;
}

/* Whether the names noted now are those the kept text was written from,
 * under the same tree. */
static int
names_same(const struct filter *f)
{
    const struct memo *m = f->m;
    size_t i;

    if (m->tgen == 0 || m->tgen != f->tgen || m->ntk != f->nkept ||
        m->ntr != f->nrem || m->ntu != f->nunknown ||
        memcmp(m->tk, m->kept, f->nkept * sizeof(m->tk[0])) != 0 ||
        memcmp(m->tr, m->rem, f->nrem * sizeof(m->tr[0])) != 0)
        return 0;
    for (i = 0; i < f->nunknown; i++)
        if (strcmp(m->tu[i], m->unknown[i]) != 0)
            return 0;
    return 1;
}

/*
 * filter_names without a copy: *kept and *removed are borrowed, written in
 * buffers the filter keeps (no allocation once they are large enough),
 * valid until the next filter_names_get, filter_clear, filter_reset or
 * filter_free. Returns BRK_OK or BRK_ERR_NOMEM.
 */
enum brk_err
filter_names_get(struct filter *f, const char **kept, const char **removed)
{
    struct memo *m = f->m;
    enum brk_err err;
    size_t i;

    if (!names_same(f)) {
        m->tgen = 0;
        dynbuf_reset(&f->names_kept);
        dynbuf_reset(&f->names_rem);
        err = names_into(f, &f->names_kept, &f->names_rem);
        if (err)
            return err;
        memcpy(m->tk, m->kept, f->nkept * sizeof(m->tk[0]));
        memcpy(m->tr, m->rem, f->nrem * sizeof(m->tr[0]));
        for (i = 0; i < f->nunknown; i++)
            memcpy(m->tu[i], m->unknown[i], NAME_LEN);
        m->ntk = f->nkept;
        m->ntr = f->nrem;
        m->ntu = f->nunknown;
        m->tgen = f->tgen;
    }
    /* never written: no buffer yet, and "" is the list */
    *kept = f->names_kept.buf != NULL ? f->names_kept.buf : "";
    *removed = f->names_rem.buf != NULL ? f->names_rem.buf : "";
    return BRK_OK;
}
