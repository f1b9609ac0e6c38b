/*
 * A main() for the fuzz harnesses without libFuzzer: every file named on
 * the command line, and every regular file of every directory named, is
 * read and passed once to LLVMFuzzerTestOneInput. Built with gcc by
 * `make fuzz-replay`; exits non-zero when a path cannot be read.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Largest input replayed; corpus files are far smaller. */
#define REPLAY_MAX (16L * 1024 * 1024)

static int
replay_file(const char *path, unsigned long *count)
{
    struct stat st;
    uint8_t *buf = NULL;
    size_t off = 0;
    ssize_t n;
    int fd, rc = -1;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size > REPLAY_MAX) {
        fprintf(stderr, "%s: cannot read: %s\n", path, strerror(errno));
        goto out;
    }
    /* one spare byte: an empty input still gets a valid pointer */
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL)
        goto out;
    while (off < (size_t)st.st_size) {
        n = read(fd, buf + off, (size_t)st.st_size - off);
        if (n <= 0) {
            fprintf(stderr, "%s: short read\n", path);
            goto out;
        }
        off += (size_t)n;
    }
    LLVMFuzzerTestOneInput(buf, off);
    (*count)++;
    rc = 0;
out:
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

static int
replay_dir(const char *dir, unsigned long *count)
{
    struct dirent *de;
    struct stat st;
    char path[4096];
    DIR *d = opendir(dir);
    int rc = 0;

    if (d == NULL) {
        fprintf(stderr, "%s: cannot open: %s\n", dir, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >=
            sizeof(path))
            continue;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
            replay_file(path, count) != 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

int
main(int argc, char **argv)
{
    struct stat st;
    unsigned long count = 0;
    int i, rc = 0;

    for (i = 1; i < argc; i++) {
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            if (replay_dir(argv[i], &count) != 0)
                rc = 1;
        } else if (replay_file(argv[i], &count) != 0) {
            rc = 1;
        }
    }
    printf("%lu inputs replayed\n", count);
    return rc;
}
