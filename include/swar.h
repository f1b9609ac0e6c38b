/*
 * Eight bytes at a time: predicates on a 64-bit word loaded with memcpy
 * from a byte string (any byte order: each answers for the eight bytes as
 * a set). Exact, not heuristic: (v - 0x01..) & ~v has a byte's high bit
 * set for its lowest zero byte at least, and no high bit at all when no
 * byte is zero. Used by the JSON tokenizer and the filter's writer.
 */
#ifndef SWAR_H
#define SWAR_H

#include <stdint.h>

#define SWAR_01 0x0101010101010101ULL
#define SWAR_80 0x8080808080808080ULL

/* Some byte of w is below n (n <= 0x80). */
#define SWAR_ANY_BELOW(w, n) ((((w)-SWAR_01 * (n)) & ~(w)&SWAR_80) != 0)

/* Some byte of w equals c. */
static inline int
swar_any_eq(uint64_t w, unsigned char c)
{
    uint64_t x = w ^ (SWAR_01 * c);

    return SWAR_ANY_BELOW(x, 1);
}

/* Eight bytes below 0x80 and, unless nul_ok, none 0. */
static inline int
swar_ascii(uint64_t w, int nul_ok)
{
    return (w & SWAR_80) == 0 && (nul_ok || !SWAR_ANY_BELOW(w, 1));
}

/* Eight bytes a JSON string holds as they are: none below 0x20, none '"'
 * or '\\' (bytes from 0x80 up included). */
static inline int
swar_str_plain(uint64_t w)
{
    return !SWAR_ANY_BELOW(w, 0x20) && !swar_any_eq(w, '"') &&
           !swar_any_eq(w, '\\');
}

/*
 * Index (0..7) of the first byte of w, in memory order, that a JSON string
 * cannot hold as it is (below 0x20, '"' or '\\'); 8 when none. The lowest
 * byte each test flags is a true match (a false one can only sit above a
 * true one, from the borrow), so the lowest of all three is exact.
 */
static inline unsigned
swar_str_special(uint64_t w)
{
    uint64_t q = w ^ (SWAR_01 * '"'), b = w ^ (SWAR_01 * '\\');
    uint64_t m = (((w - SWAR_01 * 0x20) & ~w) | ((q - SWAR_01) & ~q) |
                  ((b - SWAR_01) & ~b)) &
                 SWAR_80;

    if (m == 0)
        return 8;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (unsigned)__builtin_ctzll(m) / 8;
#else
    {
        const unsigned char *p = (const unsigned char *)&w;
        unsigned i;

        for (i = 0; i < 8; i++)
            if (p[i] < 0x20 || p[i] == '"' || p[i] == '\\')
                break;
        return i;
    }
#endif
}

/* Eight bytes written unescaped: swar_str_plain and ASCII. */
static inline int
swar_str_ascii(uint64_t w)
{
    return (w & SWAR_80) == 0 && swar_str_plain(w);
}

#endif
