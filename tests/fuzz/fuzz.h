/*
 * Helpers shared by the fuzz harnesses: a cursor over the input, a
 * per-process scratch file, and a check that aborts (so libFuzzer and the
 * corpus replay both see a crash) when a property does not hold.
 *
 * Each harness defines LLVMFuzzerTestOneInput; tests/unit/
 * test_fuzz_corpus.c includes every harness into one file under renamed
 * entry points, so everything a harness defines besides the entry point is
 * static and carries the harness's own prefix.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"

/* What a failed check does: abort, so libFuzzer keeps the input. The
 * corpus test defines it to fail the test instead. */
#ifndef FUZZ_FAIL
#define FUZZ_FAIL() abort()
#endif

/* A property the code under test promised does not hold: crash loudly. */
#define FUZZ_CHECK(cond)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__,        \
                    __LINE__, #cond);                                          \
            FUZZ_FAIL();                                                       \
        }                                                                      \
    } while (0)

/* The unread part of the input. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

/* Next byte, or 0 once the input is used up. */
static inline uint8_t
fuzz_byte(struct fuzz_in *in)
{
    uint8_t b;

    if (in->n == 0)
        return 0;
    b = in->p[0];
    in->p++;
    in->n--;
    return b;
}

/* Up to want bytes (fewer at the end of the input) into *len. */
static inline const uint8_t *
fuzz_take(struct fuzz_in *in, size_t want, size_t *len)
{
    const uint8_t *p = in->p;

    if (want > in->n)
        want = in->n;
    in->p += want;
    in->n -= want;
    *len = want;
    return p;
}

/*
 * The bytes up to the next sep (not included; sep consumed) or to the end,
 * as an owned NUL-terminated copy (free with brk_free); NULL when out of
 * memory. *len (may be NULL) gets the length.
 */
static inline char *
fuzz_field(struct fuzz_in *in, uint8_t sep, size_t *len)
{
    const uint8_t *end = memchr(in->p, sep, in->n);
    size_t l = end ? (size_t)(end - in->p) : in->n;
    char *s = brk_malloc(l + 1);

    if (s == NULL)
        return NULL;
    memcpy(s, in->p, l);
    s[l] = '\0';
    in->p += l;
    in->n -= l;
    if (end != NULL) {
        in->p++;
        in->n--;
    }
    if (len != NULL)
        *len = l;
    return s;
}

/* Scratch files written so far, removed with their directories at exit. */
#define FUZZ_SCRATCH_MAX 8
static char fuzz_scratch_file[FUZZ_SCRATCH_MAX][256];
static char fuzz_scratch_dir[FUZZ_SCRATCH_MAX][128];

static inline void
fuzz_scratch_cleanup(void)
{
    char *slash;
    size_t i;

    for (i = 0; i < FUZZ_SCRATCH_MAX; i++)
        if (fuzz_scratch_file[i][0] != '\0')
            (void)unlink(fuzz_scratch_file[i]);
    /* subdirectories first ("secrets/token"), then the directories */
    for (i = 0; i < FUZZ_SCRATCH_MAX; i++) {
        slash = strrchr(fuzz_scratch_file[i], '/');
        if (slash != NULL) {
            *slash = '\0';
            (void)rmdir(fuzz_scratch_file[i]);
        }
    }
    for (i = 0; i < FUZZ_SCRATCH_MAX; i++)
        if (fuzz_scratch_dir[i][0] != '\0')
            (void)rmdir(fuzz_scratch_dir[i]);
}

/* Remember path (and its directory) for removal at exit. */
static inline void
fuzz_scratch_note(const char *dir, const char *path)
{
    static int registered;
    size_t i;

    for (i = 0; i < FUZZ_SCRATCH_MAX; i++) {
        if (strcmp(fuzz_scratch_file[i], path) == 0)
            return;
        if (fuzz_scratch_file[i][0] == '\0') {
            snprintf(fuzz_scratch_file[i], sizeof(fuzz_scratch_file[i]), "%s",
                     path);
            snprintf(fuzz_scratch_dir[i], sizeof(fuzz_scratch_dir[i]), "%s",
                     dir);
            break;
        }
    }
    if (!registered) {
        registered = 1;
        atexit(fuzz_scratch_cleanup);
    }
}

/*
 * Write data to a scratch file /tmp/wecom-fuzz-NAME-PID/FILE (directory
 * made on first use, both removed at exit). The path goes into path (cap
 * bytes). Returns 0, or -1 when the file cannot be written.
 */
static inline int
fuzz_write_file(const char *name, const char *file, const uint8_t *data,
                size_t len, char *path, size_t cap)
{
    char dir[128];
    size_t off = 0;
    ssize_t w;
    int fd;

    snprintf(dir, sizeof(dir), "/tmp/wecom-fuzz-%s-%ld", name, (long)getpid());
    (void)mkdir(dir, 0700);
    if ((size_t)snprintf(path, cap, "%s/%s", dir, file) >= cap)
        return -1;
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    fuzz_scratch_note(dir, path);
    while (off < len) {
        w = write(fd, data + off, len - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    return close(fd);
}

/* FNV-1a over len bytes: a stable, input-derived choice. */
static inline uint32_t
fuzz_hash(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

#endif /* FUZZ_H */
