/*
 * Capabilities (SPEC §5b): a second table of what a service may do,
 * granted by ops only and never implied by a scope — writes, the
 * WelcomeCode, mass messages, data callbacks. A set is a bit mask; its
 * stored form is the names, comma-separated, in table order. Pure: no I/O.
 */
#ifndef CAPABILITY_H
#define CAPABILITY_H

#include <stddef.h>

#include "broker.h"

enum capability {
    CAP_EXTERNAL_WRITE = 1u << 0,   /* remarks, tags, corp tags, contact ways */
    CAP_EXTERNAL_WELCOME = 1u << 1, /* the WelcomeCode; one service a tenant */
    CAP_EXTERNAL_MESSAGE = 1u << 2, /* mass messages */
    CAP_MESSAGES = 1u << 3,         /* data callbacks */
};

/* Every known capability's bit, or-ed. */
#define CAP_ALL 0xfu

/* Longest stored form: every name, comma-separated, and the NUL. */
#define CAPABILITY_LIST_MAX 64

/* The bit named name (exactly, case-sensitive), or 0 when none is. */
unsigned capability_bit(const char *name);
/* The name of one bit, or NULL when bit is not exactly one known bit. */
const char *capability_name(unsigned bit);

/*
 * Parse a comma-separated list of names ("" is the empty set) into *out.
 * BRK_ERR_INVAL for an unknown or repeated name, an empty item or a list
 * longer than CAPABILITY_LIST_MAX - 1: a set that does not parse grants
 * nothing, it is refused.
 */
enum brk_err capability_parse(const char *s, unsigned *out) BRK_WUR;

/*
 * The stored form of caps into buf (at least CAPABILITY_LIST_MAX bytes):
 * known names in table order, comma-separated; unknown bits are not
 * written. Returns buf.
 */
char *capability_format(unsigned caps, char *buf, size_t size);

#endif /* CAPABILITY_H */
