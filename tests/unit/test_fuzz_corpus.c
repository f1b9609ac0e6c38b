/*
 * The fuzz corpora replayed: every file of tests/fuzz/corpus/TARGET (or
 * $FUZZ_CORPUS/TARGET) goes once through the harness tests/fuzz/
 * fuzz_TARGET.c, included here under a renamed entry point. A failed
 * property check fails the test and names the file; a memory error shows
 * under `make check`. New inputs found by `make fuzz` (and each crash,
 * once fixed) are added to the corpora, so they stay fixed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "broker.h"

#define CORPUS_DEFAULT "tests/fuzz/corpus"
/* Fewer files than this means the corpus is missing, not small. */
#define CORPUS_MIN 20
#define INPUT_MAX  (1024 * 1024)

/* The file being replayed, for the failure message. */
static char current[4096];

#define FUZZ_FAIL() fail_msg("fuzz check failed on %s", current)

#define LLVMFuzzerTestOneInput fuzz_one_envelope
#include "../fuzz/fuzz_envelope.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_one_xml
#include "../fuzz/fuzz_xml.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_one_filter
#include "../fuzz/fuzz_filter.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_one_scope_map
#include "../fuzz/fuzz_scope_map.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_one_write_check
#include "../fuzz/fuzz_write_check.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_one_multipart
#include "../fuzz/fuzz_multipart.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_one_config
#include "../fuzz/fuzz_config.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_one_oauth
#include "../fuzz/fuzz_oauth.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_one_dirsync
#include "../fuzz/fuzz_dirsync.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_one_evfilter
#include "../fuzz/fuzz_evfilter.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_one_http1
#include "../fuzz/fuzz_http1.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_one_http1_req
#include "../fuzz/fuzz_http1_req.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_one_jsontok
#include "../fuzz/fuzz_jsontok.c"
#undef LLVMFuzzerTestOneInput

typedef int fuzz_entry(const uint8_t *data, size_t size);

/* Read path whole into an owned buffer (one spare byte); NULL on error. */
static uint8_t *
read_input(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *buf;
    size_t n;

    if (fp == NULL)
        return NULL;
    buf = malloc(INPUT_MAX + 1);
    if (buf == NULL) {
        fclose(fp);
        return NULL;
    }
    n = fread(buf, 1, INPUT_MAX + 1, fp);
    fclose(fp);
    if (n > INPUT_MAX) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static void
replay(const char *target, fuzz_entry *entry)
{
    const char *base = getenv("FUZZ_CORPUS");
    char dir[2048];
    struct dirent *de;
    struct stat st;
    uint8_t *buf;
    size_t len = 0, count = 0;
    DIR *d;

    snprintf(dir, sizeof(dir), "%s/%s", base ? base : CORPUS_DEFAULT, target);
    d = opendir(dir);
    if (d == NULL)
        fail_msg("%s: %s", dir, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(current, sizeof(current), "%s/%s", dir, de->d_name);
        if (stat(current, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        buf = read_input(current, &len);
        if (buf == NULL)
            fail_msg("%s: cannot read", current);
        entry(buf, len);
        free(buf);
        count++;
    }
    closedir(d);
    if (count < CORPUS_MIN)
        fail_msg("%s: %zu inputs (want at least %d)", dir, count, CORPUS_MIN);
}

static void
test_corpus_envelope(void **state)
{
    (void)state;
    replay("envelope", fuzz_one_envelope);
}

static void
test_corpus_xml(void **state)
{
    (void)state;
    replay("xml", fuzz_one_xml);
}

static void
test_corpus_filter(void **state)
{
    (void)state;
    replay("filter", fuzz_one_filter);
}

static void
test_corpus_scope_map(void **state)
{
    (void)state;
    replay("scope_map", fuzz_one_scope_map);
}

static void
test_corpus_config(void **state)
{
    (void)state;
    replay("config", fuzz_one_config);
}

static void
test_corpus_oauth(void **state)
{
    (void)state;
    replay("oauth", fuzz_one_oauth);
}

static void
test_corpus_dirsync(void **state)
{
    (void)state;
    replay("dirsync", fuzz_one_dirsync);
}

static void
test_corpus_evfilter(void **state)
{
    (void)state;
    replay("evfilter", fuzz_one_evfilter);
}

static void
test_corpus_write_check(void **state)
{
    (void)state;
    replay("write_check", fuzz_one_write_check);
}

static void
test_corpus_multipart(void **state)
{
    (void)state;
    replay("multipart", fuzz_one_multipart);
}

static void
test_corpus_http1(void **state)
{
    (void)state;
    replay("http1", fuzz_one_http1);
}

static void
test_corpus_http1_req(void **state)
{
    (void)state;
    replay("http1_req", fuzz_one_http1_req);
}

static void
test_corpus_jsontok(void **state)
{
    (void)state;
    replay("jsontok", fuzz_one_jsontok);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_envelope),
        cmocka_unit_test(test_corpus_xml),
        cmocka_unit_test(test_corpus_filter),
        cmocka_unit_test(test_corpus_scope_map),
        cmocka_unit_test(test_corpus_config),
        cmocka_unit_test(test_corpus_oauth),
        cmocka_unit_test(test_corpus_dirsync),
        cmocka_unit_test(test_corpus_evfilter),
        cmocka_unit_test(test_corpus_write_check),
        cmocka_unit_test(test_corpus_multipart),
        cmocka_unit_test(test_corpus_http1),
        cmocka_unit_test(test_corpus_http1_req),
        cmocka_unit_test(test_corpus_jsontok),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
