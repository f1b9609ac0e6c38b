/*
 * The incremental JSON tokenizer (see jsontok.h). A token lying whole in
 * the current piece is handed out in place; only a token cut by the end of
 * a piece is copied, into one buffer, and finished from the next piece
 * with the scanner's state kept (a string's pending backslash, a number's
 * place in the grammar, a literal's matched length), so a long token split
 * into many pieces still costs O(n).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsontok.h"
#include "swar.h"

#define BUF_MIN 256
/* a reset keeps a buffer up to this size for the next document */
#define KEEP_MAX ((size_t)64 * 1024)

/* What may come next. */
enum state {
    ST_VALUE,        /* a value: the top level, after ':', after ',' in [] */
    ST_VALUE_OR_END, /* after '[' */
    ST_KEY,          /* after ',' in {} */
    ST_KEY_OR_END,   /* after '{' */
    ST_COLON,        /* after a key */
    ST_NEXT,         /* after a value in a container: ',' or its close */
    ST_DONE          /* after the top-level value: whitespace only */
};

/* The token cut by the end of the last piece. */
enum pend { P_NONE, P_STRING, P_NUMBER, P_LITERAL };

/* Where a number is in the RFC 8259 grammar; N_ZERO, N_INT, N_FRAC and
 * N_EXP may end it. */
enum num { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

static const char *const literals[] = {"true", "false", "null"};
static const unsigned char literal_len[] = {4, 5, 4};
static const enum jsontok_type literal_tok[] = {JSONTOK_TRUE, JSONTOK_FALSE,
                                                JSONTOK_NULL};

struct jsontok {
    const char *in; /* the current piece, borrowed */
    size_t len, pos;

    unsigned char state; /* enum state */
    unsigned char pend;  /* enum pend */
    unsigned char key;   /* the pending string is a key */
    unsigned char esc;   /* it ends in an unpaired backslash */
    unsigned char has_esc;
    unsigned char num; /* enum num of the pending number */
    unsigned char real;
    unsigned char lit, lit_n; /* the pending literal, bytes matched */

    unsigned char *stack; /* 1 for an object, 0 for an array */
    size_t depth, max_depth;

    char *buf; /* the pending token's bytes */
    size_t buf_len, buf_cap, max_token;
    char *dec; /* a decoded string */
    size_t dec_cap;

    enum brk_err err;
};

static enum jsontok_type
fail(struct jsontok *t, enum brk_err err)
{
    if (!t->err)
        t->err = err;
    return JSONTOK_ERROR;
}

static enum jsontok_type
bad(struct jsontok *t)
{
    return fail(t, BRK_ERR_UPSTREAM_BAD);
}

/* A value ended: what may follow depends on the container around it. */
static void
after_value(struct jsontok *t)
{
    t->state = t->depth == 0 ? ST_DONE : ST_NEXT;
}

static int
top_is_obj(const struct jsontok *t)
{
    return t->depth > 0 && t->stack[t->depth - 1];
}

/* Append n bytes to the pending token; 0 (error set) over max_token. */
static int
buf_add(struct jsontok *t, const char *s, size_t n)
{
    size_t ncap;
    char *p;

    if (n > t->max_token - t->buf_len) {
        fail(t, BRK_ERR_TOOBIG);
        return 0;
    }
    if (n > t->buf_cap - t->buf_len) {
        ncap = t->buf_cap ? t->buf_cap : BUF_MIN;
        while (ncap - t->buf_len < n)
            ncap = ncap > SIZE_MAX / 2 ? SIZE_MAX : 2 * ncap;
        p = brk_realloc(t->buf, ncap);
        if (p == NULL) {
            fail(t, BRK_ERR_NOMEM);
            return 0;
        }
        t->buf = p;
        t->buf_cap = ncap;
    }
    if (n > 0)
        memcpy(t->buf + t->buf_len, s, n);
    t->buf_len += n;
    return 1;
}

/*
 * How many bytes of the piece, from t->pos, the token may still take when
 * used bytes of it are behind: one more than its room, so that going
 * over shows wherever the pieces end (and nothing past that byte is
 * judged: the same error comes first fed whole or in pieces).
 */
static size_t
window(const struct jsontok *t, size_t used, size_t *room)
{
    size_t avail = t->len - t->pos;

    *room = t->max_token - used;
    return avail <= *room ? avail : *room + 1;
}

/*---- Strings ----*/

/*
 * The closing quote among the n bytes at s, *esc telling whether the byte
 * before s was an unpaired backslash: its index; n when the bytes end
 * first (*esc updated); SIZE_MAX for a byte below 0x20. *has_esc is set
 * when a backslash is seen. Escapes are judged when decoded.
 */
static size_t
str_end(const unsigned char *s, size_t n, unsigned char *esc,
        unsigned char *has_esc)
{
    size_t i = 0;
    unsigned k;
    uint64_t w;

    if (*esc) {
        if (n == 0)
            return 0;
        if (s[0] < 0x20)
            return SIZE_MAX;
        *esc = 0;
        i = 1;
    }
    while (i < n) {
        if (n - i >= 8) {
            /* straight to the first byte that matters */
            memcpy(&w, s + i, 8);
            k = swar_str_special(w);
            i += k;
            if (k == 8)
                continue;
        }
        if (s[i] == '"')
            return i;
        if (s[i] < 0x20)
            return SIZE_MAX;
        if (s[i] == '\\') {
            *has_esc = 1;
            if (i + 1 == n) {
                *esc = 1;
                return n;
            }
            if (s[i + 1] < 0x20)
                return SIZE_MAX;
            i += 2;
            continue;
        }
        i++;
    }
    return n;
}

/* Four hex digits at s, or -1. */
static long
hex4(const unsigned char *s)
{
    long v = 0;
    int i, d;

    for (i = 0; i < 4; i++) {
        if (s[i] >= '0' && s[i] <= '9')
            d = s[i] - '0';
        else if ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'f')
            d = (s[i] | 0x20) - 'a' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static unsigned char *
put_utf8(unsigned char *d, unsigned long cp)
{
    if (cp < 0x80) {
        *d++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *d++ = (unsigned char)(0xc0 | cp >> 6);
        *d++ = (unsigned char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *d++ = (unsigned char)(0xe0 | cp >> 12);
        *d++ = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        *d++ = (unsigned char)(0x80 | (cp & 0x3f));
    } else {
        *d++ = (unsigned char)(0xf0 | cp >> 18);
        *d++ = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
        *d++ = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        *d++ = (unsigned char)(0x80 | (cp & 0x3f));
    }
    return d;
}

/*
 * Decode the n bytes of a string's inside (its closing quote found, so no
 * byte below 0x20 and no unpaired backslash at the end) into d, which
 * has room for n: an escape never decodes longer than it is written.
 * Returns the decoded length, or SIZE_MAX for a bad escape.
 */
static size_t
decode(unsigned char *d0, const unsigned char *s, size_t n)
{
    unsigned char *d = d0;
    const unsigned char *bs;
    size_t i = 0, run;
    long cp, lo;

    while (i < n) {
        bs = memchr(s + i, '\\', n - i);
        run = bs == NULL ? n - i : (size_t)(bs - (s + i));
        memcpy(d, s + i, run);
        d += run;
        i += run;
        if (i == n)
            break;
        if (n - i < 2)
            return SIZE_MAX;
        switch (s[i + 1]) {
        case '"':
        case '\\':
        case '/':
            *d++ = s[i + 1];
            break;
        case 'b':
            *d++ = '\b';
            break;
        case 'f':
            *d++ = '\f';
            break;
        case 'n':
            *d++ = '\n';
            break;
        case 'r':
            *d++ = '\r';
            break;
        case 't':
            *d++ = '\t';
            break;
        case 'u':
            if (n - i < 6 || (cp = hex4(s + i + 2)) < 0)
                return SIZE_MAX;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return SIZE_MAX; /* a low surrogate alone */
            if (cp >= 0xd800 && cp <= 0xdbff) {
                /* the low half must follow at once */
                if (n - i < 12 || s[i + 6] != '\\' || s[i + 7] != 'u' ||
                    (lo = hex4(s + i + 8)) < 0xdc00 || lo > 0xdfff)
                    return SIZE_MAX;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                i += 6;
            }
            d = put_utf8(d, (unsigned long)cp);
            i += 6;
            continue;
        default:
            return SIZE_MAX;
        }
        i += 2;
    }
    return (size_t)(d - d0);
}

/* A complete string's inside (n bytes at raw): the token, decoded when
 * it has escapes. */
static enum jsontok_type
str_token(struct jsontok *t, const char *raw, size_t n, int key, int has_esc,
          const char **s, size_t *len)
{
    size_t dn;
    char *p;

    if (has_esc) {
        if (n > t->dec_cap) {
            p = brk_realloc(t->dec, n);
            if (p == NULL)
                return fail(t, BRK_ERR_NOMEM);
            t->dec = p;
            t->dec_cap = n;
        }
        dn = decode((unsigned char *)t->dec, (const unsigned char *)raw, n);
        if (dn == SIZE_MAX)
            return bad(t);
        raw = t->dec;
        n = dn;
    }
    /* an empty string cut by a piece's end has no buffer behind it */
    *s = n > 0 ? raw : "";
    *len = n;
    if (key) {
        t->state = ST_COLON;
        return JSONTOK_KEY;
    }
    after_value(t);
    return JSONTOK_STRING;
}

/* A string whose opening quote is at t->pos. */
static enum jsontok_type
lex_string(struct jsontok *t, int key, const char **s, size_t *len)
{
    const char *b;
    size_t w, room, e;
    unsigned char esc = 0, has_esc = 0;

    t->pos++;
    b = t->in + t->pos;
    w = window(t, 0, &room);
    e = str_end((const unsigned char *)b, w, &esc, &has_esc);
    if (e == SIZE_MAX)
        return bad(t);
    if (e == w && w > room)
        return fail(t, BRK_ERR_TOOBIG);
    if (e == w) {
        t->buf_len = 0;
        if (!buf_add(t, b, w))
            return JSONTOK_ERROR;
        t->pend = P_STRING;
        t->key = (unsigned char)key;
        t->esc = esc;
        t->has_esc = has_esc;
        t->pos = t->len;
        return JSONTOK_MORE;
    }
    t->pos += e + 1;
    return str_token(t, b, e, key, has_esc, s, len);
}

/*---- Numbers and literals ----*/

/* Step the number grammar over c: 1 taken, 0 the number ended before c,
 * -1 malformed. */
static int
num_step(unsigned char *st, unsigned char c, unsigned char *real)
{
    int digit = c >= '0' && c <= '9';

    switch (*st) {
    case N_MINUS:
        if (!digit)
            return -1;
        *st = c == '0' ? N_ZERO : N_INT;
        return 1;
    case N_INT:
        if (digit)
            return 1;
        /* fall through */
    case N_ZERO:
        if (c == '.') {
            *st = N_DOT;
        } else if (c == 'e' || c == 'E') {
            *st = N_E;
        } else {
            return 0;
        }
        *real = 1;
        return 1;
    case N_DOT:
        if (!digit)
            return -1;
        *st = N_FRAC;
        return 1;
    case N_FRAC:
        if (digit)
            return 1;
        if (c != 'e' && c != 'E')
            return 0;
        *st = N_E;
        return 1;
    case N_E:
        if (c == '+' || c == '-') {
            *st = N_ESIGN;
            return 1;
        }
        /* fall through */
    case N_ESIGN:
        if (!digit)
            return -1;
        *st = N_EXP;
        return 1;
    case N_EXP:
        return digit ? 1 : 0;
    }
    return -1;
}

/*
 * Run the number grammar over the piece from t->pos, used bytes of the
 * number behind: its bytes there are [t->pos, *end). Returns 1 when it
 * ended, 0 when the piece ended first, -1 when malformed, -2 when longer
 * than max_token.
 */
static int
num_scan(struct jsontok *t, size_t used, size_t *end)
{
    size_t i, room, w = window(t, used, &room);
    int r;

    for (i = 0; i < w; i++) {
        r = num_step(&t->num, (unsigned char)t->in[t->pos + i], &t->real);
        if (r < 0)
            return -1;
        if (r == 0) {
            *end = t->pos + i;
            return 1;
        }
    }
    if (w > room)
        return -2;
    *end = t->pos + i;
    return 0;
}

static enum jsontok_type
num_token(struct jsontok *t, const char *text, size_t n, const char **s,
          size_t *len)
{
    *s = text;
    *len = n;
    after_value(t);
    return t->real ? JSONTOK_REAL : JSONTOK_INTEGER;
}

/* A number whose first byte ('-' or a digit) is at t->pos. */
static enum jsontok_type
lex_number(struct jsontok *t, const char **s, size_t *len)
{
    size_t start = t->pos, end;
    unsigned char c = (unsigned char)t->in[start];
    int r;

    t->real = 0;
    t->num = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
    t->pos++;
    r = num_scan(t, 1, &end);
    if (r == -2)
        return fail(t, BRK_ERR_TOOBIG);
    if (r < 0)
        return bad(t);
    if (r == 0) {
        t->buf_len = 0;
        if (!buf_add(t, t->in + start, end - start))
            return JSONTOK_ERROR;
        t->pend = P_NUMBER;
        t->pos = t->len;
        return JSONTOK_MORE;
    }
    t->pos = end;
    return num_token(t, t->in + start, end - start, s, len);
}

/* Match the pending literal against the piece: 1 complete, 0 the piece
 * ended first, -1 a byte differs. */
static int
lit_scan(struct jsontok *t)
{
    const char *want = literals[t->lit];

    while (t->lit_n < literal_len[t->lit]) {
        if (t->pos == t->len)
            return 0;
        if (t->in[t->pos] != want[t->lit_n])
            return -1;
        t->pos++;
        t->lit_n++;
    }
    return 1;
}

static enum jsontok_type
lex_literal(struct jsontok *t, unsigned char c)
{
    int r;

    t->lit = c == 't' ? 0 : c == 'f' ? 1 : 2;
    t->lit_n = 0;
    r = lit_scan(t);
    if (r < 0)
        return bad(t);
    if (r == 0) {
        t->pend = P_LITERAL;
        return JSONTOK_MORE;
    }
    after_value(t);
    return literal_tok[t->lit];
}

/*---- Finishing a token cut by a piece's end ----*/

static enum jsontok_type
resume(struct jsontok *t, const char **s, size_t *len)
{
    const unsigned char *b = (const unsigned char *)t->in + t->pos;
    size_t w, room, e;
    int r;

    switch (t->pend) {
    case P_STRING:
        w = window(t, t->buf_len, &room);
        e = str_end(b, w, &t->esc, &t->has_esc);
        if (e == SIZE_MAX)
            return bad(t);
        if (e == w && w > room)
            return fail(t, BRK_ERR_TOOBIG);
        if (!buf_add(t, (const char *)b, e))
            return JSONTOK_ERROR;
        if (e == w) {
            t->pos = t->len;
            return JSONTOK_MORE;
        }
        t->pos += e + 1;
        t->pend = P_NONE;
        return str_token(t, t->buf, t->buf_len, t->key, t->has_esc, s, len);
    case P_NUMBER:
        r = num_scan(t, t->buf_len, &e);
        if (r == -2)
            return fail(t, BRK_ERR_TOOBIG);
        if (r < 0)
            return bad(t);
        if (!buf_add(t, t->in + t->pos, e - t->pos))
            return JSONTOK_ERROR;
        t->pos = e;
        if (r == 0)
            return JSONTOK_MORE;
        t->pend = P_NONE;
        return num_token(t, t->buf, t->buf_len, s, len);
    case P_LITERAL:
        r = lit_scan(t);
        if (r < 0)
            return bad(t);
        if (r == 0)
            return JSONTOK_MORE;
        t->pend = P_NONE;
        after_value(t);
        return literal_tok[t->lit];
    }
    return bad(t);
}

/*---- API ----*/

enum brk_err
jsontok_new(size_t max_depth, size_t max_token, struct jsontok **out)
{
    struct jsontok *t;

    if (max_depth == 0 || max_token == 0 || out == NULL)
        return BRK_ERR_INVAL;
    t = brk_calloc(1, sizeof(*t));
    if (t == NULL)
        return BRK_ERR_NOMEM;
    t->stack = brk_malloc(max_depth);
    if (t->stack == NULL) {
        brk_free(t);
        return BRK_ERR_NOMEM;
    }
    t->max_depth = max_depth;
    t->max_token = max_token;
    t->state = ST_VALUE;
    t->pend = P_NONE;
    *out = t;
    return BRK_OK;
}

/*
 * Start over on a new document, with the limits t was made with: every
 * piece of state is cleared as jsontok_new leaves it (struct copied field
 * by field would miss a field added later, so all of it is zeroed and only
 * the allocations put back). Buffers over KEEP_MAX go: one huge token does
 * not pin its buffer for good. Cannot fail.
 */
void
jsontok_reset(struct jsontok *t)
{
    struct jsontok old = *t;

    memset(t, 0, sizeof(*t));
    t->stack = old.stack;
    t->max_depth = old.max_depth;
    t->max_token = old.max_token;
    if (old.buf_cap <= KEEP_MAX) {
        t->buf = old.buf;
        t->buf_cap = old.buf_cap;
    } else {
        brk_free(old.buf);
    }
    if (old.dec_cap <= KEEP_MAX) {
        t->dec = old.dec;
        t->dec_cap = old.dec_cap;
    } else {
        brk_free(old.dec);
    }
    t->state = ST_VALUE;
    t->pend = P_NONE;
}

void
jsontok_input(struct jsontok *t, const char *buf, size_t len)
{
    t->in = len > 0 ? buf : "";
    t->len = len;
    t->pos = 0;
}

static enum jsontok_type
open_container(struct jsontok *t, unsigned char is_obj)
{
    if (t->state != ST_VALUE && t->state != ST_VALUE_OR_END)
        return bad(t);
    if (t->depth == t->max_depth)
        return bad(t);
    t->stack[t->depth++] = is_obj;
    t->pos++;
    t->state = is_obj ? ST_KEY_OR_END : ST_VALUE_OR_END;
    return is_obj ? JSONTOK_OBJ_START : JSONTOK_ARR_START;
}

static enum jsontok_type
close_container(struct jsontok *t, unsigned char is_obj)
{
    if (t->depth == 0 || t->stack[t->depth - 1] != is_obj)
        return bad(t);
    if (t->state != ST_NEXT &&
        t->state != (is_obj ? ST_KEY_OR_END : ST_VALUE_OR_END))
        return bad(t);
    t->depth--;
    t->pos++;
    after_value(t);
    return is_obj ? JSONTOK_OBJ_END : JSONTOK_ARR_END;
}

enum jsontok_type
jsontok_next(struct jsontok *t, const char **s, size_t *len)
{
    unsigned char c;

    if (t->err)
        return JSONTOK_ERROR;
    if (t->pend != P_NONE)
        return resume(t, s, len);
    for (;;) {
        if (t->pos == t->len)
            return JSONTOK_MORE;
        c = (unsigned char)t->in[t->pos];
        /* the usual order of things first, ahead of the switch's
         * indirect jump: a key after '{' or ',', its ':', a ',' */
        if (c == '"') {
            if (t->state == ST_KEY || t->state == ST_KEY_OR_END)
                return lex_string(t, 1, s, len);
            if (t->state != ST_VALUE && t->state != ST_VALUE_OR_END)
                return bad(t);
            return lex_string(t, 0, s, len);
        }
        if (c == ':' && t->state == ST_COLON) {
            t->state = ST_VALUE;
            t->pos++;
            continue;
        }
        if (c == ',' && t->state == ST_NEXT) {
            t->state = top_is_obj(t) ? ST_KEY : ST_VALUE;
            t->pos++;
            continue;
        }
        switch (c) {
        case ' ':
        case '\t':
        case '\n':
        case '\r':
            t->pos++;
            continue;
        case ',':
        case ':':
            return bad(t); /* out of place */
        case '{':
            return open_container(t, 1);
        case '[':
            return open_container(t, 0);
        case '}':
            return close_container(t, 1);
        case ']':
            return close_container(t, 0);
        }
        if (t->state != ST_VALUE && t->state != ST_VALUE_OR_END)
            return bad(t);
        if (c == '-' || (c >= '0' && c <= '9'))
            return lex_number(t, s, len);
        if (c == 't' || c == 'f' || c == 'n')
            return lex_literal(t, c);
        return bad(t);
    }
}

int
jsontok_done(const struct jsontok *t)
{
    return t->state == ST_DONE;
}

enum brk_err
jsontok_finish(struct jsontok *t)
{
    if (t->err)
        return t->err;
    if (t->state != ST_DONE || t->pend != P_NONE)
        return t->err = BRK_ERR_UPSTREAM_BAD;
    return BRK_OK;
}

enum brk_err
jsontok_error(const struct jsontok *t)
{
    return t->err;
}

void
jsontok_free(struct jsontok *t)
{
    if (t == NULL)
        return;
    brk_free(t->stack);
    brk_free(t->buf);
    brk_free(t->dec);
    brk_free(t);
}
