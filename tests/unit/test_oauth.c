/*
 * oauth: the broker's state (round trip, every mutation, other flows,
 * suites and keys), the return-URL check (one named test per URL, hostile
 * ones included) and the caller's state.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "keyring.h"
#include "oauth.h"

#define MASTER_HEX                                                             \
    "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
#define INDEX_A_HEX                                                            \
    "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
#define INDEX_B_HEX                                                            \
    "b1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

#define FLOW_I  "install"
#define FLOW_O  "oauth"
#define SUITE_1 "wwsuite0001"
#define SUITE_2 "wwsuite0002"

static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                            "abcdefghijklmnopqrstuvwxyz0123456789";

static char Dir[64];
static struct keyring *KrA, *KrB;

/*---- setup ----*/

static const char *const AllowText[] = {
    "https://allowed.example/app",
    "https://root.example/",
    "http://plain.example:8080/",
    "http://plain80.example:80/",
    "https://slash.example/dir/",
    "http://[::1]:9000/cb",
    "https://127.0.0.1:8443/",
    "https://nopath.example",
    /* malformed entries: never match anything */
    "https://user@bad1.example/",
    "https://bad2.example/?q=1",
    "https://bad3.example/#f",
    "javascript://bad4.example/",
    "https://bad5.example./",
    NULL,
};
/* AllowText as the API takes it (char *const *): copies made by setup */
static char *Allow[nitems(AllowText)];

static int
write_key(const char *path, const char *hex)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = write(fd, hex, strlen(hex));
    close(fd);
    return n == (ssize_t)strlen(hex) ? 0 : -1;
}

static int
load_ring(const char *name, const char *index_hex, struct keyring **out)
{
    char master[128], index[128];

    snprintf(master, sizeof(master), "%s/%s.master", Dir, name);
    snprintf(index, sizeof(index), "%s/%s.index", Dir, name);
    if (write_key(master, MASTER_HEX) != 0 ||
        write_key(index, index_hex) != 0 ||
        keyring_load(master, index, 0, out, NULL, NULL, NULL) != BRK_OK)
        return -1;
    unlink(master);
    unlink(index);
    return 0;
}

static int
setup(void **state)
{
    size_t i;

    (void)state;
    snprintf(Dir, sizeof(Dir), "/tmp/oauth-test-XXXXXX");
    if (mkdtemp(Dir) == NULL)
        return -1;
    for (i = 0; AllowText[i] != NULL; i++)
        if ((Allow[i] = strdup(AllowText[i])) == NULL)
            return -1;
    if (load_ring("a", INDEX_A_HEX, &KrA) != 0 ||
        load_ring("b", INDEX_B_HEX, &KrB) != 0)
        return -1;
    rmdir(Dir);
    return 0;
}

static int
teardown(void **state)
{
    size_t i;

    (void)state;
    brk_alloc_fail_at(0);
    for (i = 0; i < nitems(Allow); i++)
        free(Allow[i]);
    keyring_free(KrA);
    keyring_free(KrB);
    return 0;
}

static void
fresh(const struct keyring *kr, const char *flow, const char *suite,
      char st[OAUTH_STATE_LEN + 1], char id[OAUTH_ID_LEN + 1])
{
    assert_int_equal(oauth_state_new(kr, flow, suite, st, id), BRK_OK);
}

/* Check st and assert the result; on refusal id must stay untouched. */
static void
expect_refused(const struct keyring *kr, const char *flow, const char *suite,
               const char *st)
{
    char id[OAUTH_ID_LEN + 1];

    memset(id, 'Z', sizeof(id));
    assert_int_equal(oauth_state_check(kr, flow, suite, st, id), BRK_ERR_INVAL);
    assert_int_equal(id[0], 'Z');
    assert_int_equal(id[OAUTH_ID_LEN], 'Z');
}

/*---- state ----*/

static void
test_state_round_trip(void **state)
{
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1], got[OAUTH_ID_LEN + 1];
    size_t i;

    (void)state;
    fresh(KrA, FLOW_I, SUITE_1, st, id);
    assert_int_equal(strlen(st), OAUTH_STATE_LEN);
    assert_int_equal(strlen(id), OAUTH_ID_LEN);
    assert_memory_equal(st, id, OAUTH_ID_LEN);
    for (i = 0; i < OAUTH_STATE_LEN; i++)
        assert_non_null(strchr(alnum, st[i]));
    assert_int_equal(oauth_state_check(KrA, FLOW_I, SUITE_1, st, got), BRK_OK);
    assert_string_equal(got, id);
}

static void
test_state_mac_is_lower_hex(void **state)
{
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1];
    size_t i;

    (void)state;
    fresh(KrA, FLOW_O, SUITE_1, st, id);
    for (i = OAUTH_ID_LEN; i < OAUTH_STATE_LEN; i++)
        assert_non_null(strchr("0123456789abcdef", st[i]));
}

static void
test_state_fits_wecom(void **state)
{
    (void)state;
    /* WeCom: state <= 128 of [a-zA-Z0-9]; the id leaves room in Redis */
    assert_true(OAUTH_STATE_LEN <= 128);
    assert_int_equal(OAUTH_STATE_LEN, 64);
    assert_int_equal(OAUTH_ID_LEN, 32);
}

static void
test_state_fresh_each_time(void **state)
{
    char a[OAUTH_STATE_LEN + 1], b[OAUTH_STATE_LEN + 1];
    char ia[OAUTH_ID_LEN + 1], ib[OAUTH_ID_LEN + 1];

    (void)state;
    fresh(KrA, FLOW_I, SUITE_1, a, ia);
    fresh(KrA, FLOW_I, SUITE_1, b, ib);
    assert_string_not_equal(a, b);
    assert_string_not_equal(ia, ib);
}

/* With 2000 ids (64000 chars) each of the 62 chars is expected ~1032
 * times (sd ~32). Mapping bytes with a bare % 62 would give the first 8
 * chars 5/256 instead of 4/256 (~1290): far outside the band. */
static void
test_state_id_unbiased(void **state)
{
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1];
    long count[62];
    size_t i, j;

    (void)state;
    memset(count, 0, sizeof(count));
    for (i = 0; i < 2000; i++) {
        fresh(KrA, FLOW_I, SUITE_1, st, id);
        for (j = 0; j < OAUTH_ID_LEN; j++)
            count[strchr(alnum, id[j]) - alnum]++;
    }
    for (j = 0; j < 62; j++)
        if (count[j] < 880 || count[j] > 1185)
            fail_msg("char %c seen %ld times", alnum[j], count[j]);
}

static void
test_state_every_mutation_refused(void **state)
{
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1];
    char m[OAUTH_STATE_LEN + 1];
    size_t i, c;
    long tried = 0;

    (void)state;
    fresh(KrA, FLOW_O, SUITE_1, st, id);
    for (i = 0; i < OAUTH_STATE_LEN; i++)
        for (c = 0; c < sizeof(alnum) - 1; c++) {
            if (alnum[c] == st[i])
                continue;
            memcpy(m, st, sizeof(m));
            m[i] = alnum[c];
            expect_refused(KrA, FLOW_O, SUITE_1, m);
            tried++;
        }
    assert_int_equal(tried, OAUTH_STATE_LEN * 61);
}

static void
test_state_mac_case_flip_refused(void **state)
{
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1];
    size_t i;
    int flipped = 0;

    (void)state;
    /* hex is compared as text: "A" is not "a" */
    fresh(KrA, FLOW_O, SUITE_1, st, id);
    for (i = OAUTH_ID_LEN; i < OAUTH_STATE_LEN && !flipped; i++)
        if (st[i] >= 'a' && st[i] <= 'f') {
            st[i] = (char)(st[i] - 'a' + 'A');
            flipped = 1;
        }
    assert_true(flipped);
    expect_refused(KrA, FLOW_O, SUITE_1, st);
}

static void
test_state_other_flow_refused(void **state)
{
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1];

    (void)state;
    fresh(KrA, FLOW_I, SUITE_1, st, id);
    expect_refused(KrA, FLOW_O, SUITE_1, st);
    fresh(KrA, FLOW_O, SUITE_1, st, id);
    expect_refused(KrA, FLOW_I, SUITE_1, st);
}

static void
test_state_other_suite_refused(void **state)
{
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1];

    (void)state;
    fresh(KrA, FLOW_I, SUITE_1, st, id);
    expect_refused(KrA, FLOW_I, SUITE_2, st);
    expect_refused(KrA, FLOW_I, "", st);
}

static void
test_state_other_key_refused(void **state)
{
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1];

    (void)state;
    fresh(KrA, FLOW_I, SUITE_1, st, id);
    expect_refused(KrB, FLOW_I, SUITE_1, st);
}

static void
test_state_part_boundaries_bound(void **state)
{
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1];

    (void)state;
    /* ("ab", "c") and ("a", "bc") must not share a MAC */
    fresh(KrA, "ab", "c", st, id);
    assert_int_equal(oauth_state_check(KrA, "ab", "c", st, id), BRK_OK);
    expect_refused(KrA, "a", "bc", st);
    expect_refused(KrA, "abc", "", st);
}

static void
test_state_truncated_refused(void **state)
{
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1];
    char m[OAUTH_STATE_LEN + 1];
    size_t n;

    (void)state;
    fresh(KrA, FLOW_I, SUITE_1, st, id);
    for (n = 0; n < OAUTH_STATE_LEN; n++) {
        memcpy(m, st, n);
        m[n] = '\0';
        expect_refused(KrA, FLOW_I, SUITE_1, m);
    }
}

static void
test_state_extended_refused(void **state)
{
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1];
    char m[OAUTH_STATE_LEN + 70];
    size_t c;

    (void)state;
    fresh(KrA, FLOW_I, SUITE_1, st, id);
    for (c = 0; c < sizeof(alnum) - 1; c++) {
        snprintf(m, sizeof(m), "%s%c", st, alnum[c]);
        expect_refused(KrA, FLOW_I, SUITE_1, m);
        snprintf(m, sizeof(m), "%c%s", alnum[c], st);
        expect_refused(KrA, FLOW_I, SUITE_1, m);
    }
    snprintf(m, sizeof(m), "%s%s", st, st);
    expect_refused(KrA, FLOW_I, SUITE_1, m);
}

static void
test_state_wrong_alphabet_refused(void **state)
{
    static const char bad[] = "-_.~ %+/=\t\n\x7f\x80\xff";
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1];
    char m[OAUTH_STATE_LEN + 1];
    size_t i, pos[] = {0, OAUTH_ID_LEN - 1, OAUTH_ID_LEN, OAUTH_STATE_LEN - 1};

    (void)state;
    fresh(KrA, FLOW_I, SUITE_1, st, id);
    for (i = 0; i < sizeof(bad) - 1; i++) {
        size_t p;

        for (p = 0; p < nitems(pos); p++) {
            memcpy(m, st, sizeof(m));
            m[pos[p]] = bad[i];
            expect_refused(KrA, FLOW_I, SUITE_1, m);
        }
    }
}

static void
test_state_null_and_empty_refused(void **state)
{
    (void)state;
    expect_refused(KrA, FLOW_I, SUITE_1, NULL);
    expect_refused(KrA, FLOW_I, SUITE_1, "");
}

static void
test_state_forged_refused(void **state)
{
    char m[OAUTH_STATE_LEN + 1];

    (void)state;
    /* the right shape with a made-up MAC */
    memset(m, 'a', OAUTH_STATE_LEN);
    m[OAUTH_STATE_LEN] = '\0';
    expect_refused(KrA, FLOW_I, SUITE_1, m);
    memset(m + OAUTH_ID_LEN, '0', OAUTH_MAC_LEN);
    expect_refused(KrA, FLOW_I, SUITE_1, m);
}

static void
test_state_stable_under_same_key(void **state)
{
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1];
    char got[OAUTH_ID_LEN + 1];
    struct keyring *again = NULL;

    (void)state;
    /* a restart (same index key reloaded) still accepts live states */
    fresh(KrA, FLOW_O, SUITE_2, st, id);
    assert_int_equal(mkdir(Dir, 0700), 0);
    assert_int_equal(load_ring("c", INDEX_A_HEX, &again), 0);
    rmdir(Dir);
    assert_int_equal(oauth_state_check(again, FLOW_O, SUITE_2, st, got),
                     BRK_OK);
    assert_string_equal(got, id);
    keyring_free(again);
}

/* Nothing here allocates, so failing the first allocation changes no
 * result and is never reached. */
static void
test_no_allocation(void **state)
{
    char st[OAUTH_STATE_LEN + 1], id[OAUTH_ID_LEN + 1];
    char e0[] = "https://allowed.example/app";
    char *allow[] = {e0};

    (void)state;
    brk_alloc_fail_at(1);
    assert_int_equal(oauth_state_new(KrA, FLOW_I, SUITE_1, st, id), BRK_OK);
    assert_int_equal(oauth_state_check(KrA, FLOW_I, SUITE_1, st, id), BRK_OK);
    assert_int_equal(
        oauth_return_allowed("https://allowed.example/app/x", allow, 1), 1);
    assert_int_equal(oauth_caller_state_ok("abc"), 1);
    assert_false(brk_alloc_failed());
    brk_alloc_fail_at(0);
}

/*---- return URLs ----*/

struct url_case {
    const char *name;
    const char *url;
    int allowed;
};

static const struct url_case Urls[] = {
    /* allowed */
    {"ok_exact_path", "https://allowed.example/app", 1},
    {"ok_path_slash", "https://allowed.example/app/", 1},
    {"ok_path_below", "https://allowed.example/app/x", 1},
    {"ok_path_deep", "https://allowed.example/app/x/y/z.html", 1},
    {"ok_query", "https://allowed.example/app?q", 1},
    {"ok_query_value", "https://allowed.example/app?q=1&r=%2F", 1},
    {"ok_fragment", "https://allowed.example/app#frag", 1},
    {"ok_query_fragment", "https://allowed.example/app/x?y=1#/z", 1},
    {"ok_scheme_upper", "HTTPS://allowed.example/app", 1},
    {"ok_scheme_mixed", "HtTpS://allowed.example/app", 1},
    {"ok_host_upper", "https://ALLOWED.EXAMPLE/app", 1},
    {"ok_default_port_explicit", "https://allowed.example:443/app", 1},
    {"ok_port_leading_zeros", "https://allowed.example:00443/app", 1},
    {"ok_root_no_path", "https://root.example", 1},
    {"ok_root_slash", "https://root.example/", 1},
    {"ok_root_anything", "https://root.example/any/where?x=y", 1},
    {"ok_root_escape", "https://root.example/a%20b", 1},
    {"ok_root_url_in_query",
     "https://root.example/x?next=https://evil.example/", 1},
    {"ok_http_port", "http://plain.example:8080/x", 1},
    {"ok_http_upper", "HTTP://PLAIN.EXAMPLE:8080/", 1},
    {"ok_entry_port80_none", "http://plain80.example/", 1},
    {"ok_entry_port80_same", "http://plain80.example:80/a", 1},
    {"ok_dir_entry_itself", "https://slash.example/dir/", 1},
    {"ok_dir_entry_below", "https://slash.example/dir/sub/page", 1},
    {"ok_ipv6_same", "http://[::1]:9000/cb", 1},
    {"ok_ipv6_below", "http://[::1]:9000/cb/x", 1},
    {"ok_ipv4", "https://127.0.0.1:8443/x", 1},
    {"ok_entry_without_path", "https://nopath.example/deep/path", 1},
    {"ok_underscore_hyphen_path", "https://root.example/a-b_c~d.e", 1},
    {"ok_subdelims_in_query", "https://root.example/?a=(1)*2,3;4!5$'", 1},
    /* other hosts */
    {"no_lookalike_suffix", "https://allowed.example.evil.example/app", 0},
    {"no_lookalike_prefix", "https://evilallowed.example/app", 0},
    {"no_subdomain", "https://x.allowed.example/app", 0},
    {"no_parent_domain", "https://example/app", 0},
    {"no_trailing_dot", "https://allowed.example./app", 0},
    {"no_leading_dot", "https://.allowed.example/app", 0},
    {"no_double_dot", "https://allowed..example/app", 0},
    {"no_entry_trailing_dot", "https://bad5.example./", 0},
    {"no_punycode_lookalike", "https://xn--allwed-qua.example/app", 0},
    {"no_ipv4_suffix", "https://127.0.0.1.evil.example:8443/", 0},
    {"no_path_names_allowed",
     "https://evil.example/https://allowed.example/app", 0},
    {"no_query_names_allowed", "https://evil.example/?https://allowed.example/",
     0},
    /* userinfo */
    {"no_userinfo", "https://allowed.example@evil.example/app", 0},
    {"no_userinfo_empty", "https://@allowed.example/app", 0},
    {"no_userinfo_password", "https://u:p@allowed.example/app", 0},
    {"no_userinfo_own_host", "https://x@allowed.example/app", 0},
    {"no_entry_with_userinfo", "https://bad1.example/", 0},
    /* schemes */
    {"no_scheme_relative", "//evil.example/", 0},
    {"no_scheme_relative_allowed", "//allowed.example/app", 0},
    {"no_javascript", "javascript:alert(1)", 0},
    {"no_javascript_mixed", "JaVaScRiPt:alert(document.domain)", 0},
    {"no_javascript_slashes", "javascript://allowed.example/app%0aalert(1)", 0},
    {"no_entry_javascript", "javascript://bad4.example/", 0},
    {"no_data", "data:text/html,<script>alert(1)</script>", 0},
    {"no_ftp", "ftp://allowed.example/app", 0},
    {"no_relative_path", "/app", 0},
    {"no_single_slash", "https:/allowed.example/app", 0},
    {"no_no_slash", "https:allowed.example/app", 0},
    {"no_scheme_mismatch_http", "http://allowed.example/app", 0},
    {"no_scheme_mismatch_https", "https://plain.example:8080/x", 0},
    {"no_scheme_space", "https ://allowed.example/app", 0},
    /* hosts and ports */
    {"no_missing_host", "https:///app", 0},
    {"no_missing_host_bare", "https://", 0},
    {"no_port_only", "https://:443/app", 0},
    {"no_other_port", "https://allowed.example:8443/app", 0},
    {"no_port_80_on_https", "https://allowed.example:80/app", 0},
    {"no_default_port_vs_explicit", "http://plain.example/x", 0},
    {"no_empty_port", "https://allowed.example:/app", 0},
    {"no_port_zero", "https://allowed.example:0/app", 0},
    {"no_port_too_big", "https://allowed.example:65536/app", 0},
    {"no_port_six_digits", "https://allowed.example:000443/app", 0},
    {"no_port_letters", "https://allowed.example:443x/app", 0},
    {"no_two_ports", "https://allowed.example:443:443/app", 0},
    {"no_ipv6_other", "http://[::2]:9000/cb", 0},
    {"no_ipv6_other_port", "http://[::1]:9001/cb", 0},
    {"no_ipv6_unterminated", "http://[::1:9000/cb", 0},
    {"no_ipv6_zone", "http://[fe80::1%25eth0]:9000/cb", 0},
    {"no_ipv6_vs_ipv4_entry", "https://[::1]:8443/", 0},
    {"no_ipv6_junk_after", "http://[::1]x:9000/cb", 0},
    {"no_ipv6_without_colon", "http://[abcd]:9000/cb", 0},
    {"no_query_after_authority", "https://allowed.example?@evil.example/", 0},
    {"no_root_query_without_path", "https://root.example?x=1", 0},
    {"no_root_fragment_without_path", "https://root.example#x", 0},
    {"no_fragment_after_authority", "https://allowed.example#@evil.example/",
     0},
    /* percent-encoding in the authority */
    {"no_pct_slash_host", "https://allowed.example%2fevil.example/app", 0},
    {"no_pct_slash_upper_host", "https://evil.example%2F@allowed.example/app",
     0},
    {"no_pct_dot_host", "https://allowed%2eexample/app", 0},
    {"no_pct_at_host", "https://allowed.example%40evil.example/app", 0},
    {"no_pct_backslash_host", "https://allowed.example%5c.evil.example/app", 0},
    {"no_pct_any_host", "https://%61llowed.example/app", 0},
    /* backslashes */
    {"no_backslash_userinfo", "https://allowed.example\\@evil.example/app", 0},
    {"no_backslash_scheme", "https:\\\\allowed.example/app", 0},
    {"no_backslash_authority", "https://evil.example\\.allowed.example/app", 0},
    {"no_backslash_path", "https://allowed.example/app\\..\\x", 0},
    {"no_backslash_query", "https://allowed.example/app?x=\\", 0},
    /* controls and spaces */
    {"no_tab_path", "https://allowed.example/app\t", 0},
    {"no_newline_path", "https://allowed.example/app\n", 0},
    {"no_crlf_header", "https://allowed.example/app\r\nSet-Cookie:x=1", 0},
    {"no_tab_host", "https://allo\twed.example/app", 0},
    {"no_newline_scheme", "java\nscript:alert(1)", 0},
    {"no_leading_space", " https://allowed.example/app", 0},
    {"no_trailing_space", "https://allowed.example/app ", 0},
    {"no_inner_space", "https://allowed.example/app x", 0},
    {"no_del", "https://allowed.example/app\x7f", 0},
    {"no_empty", "", 0},
    /* non-ASCII */
    {"no_unicode_host",
     "https://allow\xc3\xa9"
     "d.example/app",
     0},
    {"no_unicode_fullwidth_dot",
     "https://allowed\xef\xbc\x8e"
     "example/app",
     0},
    {"no_unicode_path", "https://allowed.example/app/\xc3\xbc", 0},
    {"no_unicode_fragment", "https://allowed.example/app#\xe2\x80\xae", 0},
    {"no_latin1_byte", "https://allowed.example/app/\xff", 0},
    /* paths */
    {"no_path_prefix_only", "https://allowed.example/apple", 0},
    {"no_path_shorter", "https://allowed.example/ap", 0},
    {"no_path_root", "https://allowed.example/", 0},
    {"no_path_none", "https://allowed.example", 0},
    {"no_path_case", "https://allowed.example/APP", 0},
    {"no_path_encoded_letter", "https://allowed.example/%61pp", 0},
    {"no_fragment_helps", "https://allowed.example/apple#/app", 0},
    {"no_query_helps", "https://allowed.example/apple?/app", 0},
    {"no_dotdot", "https://allowed.example/app/../admin", 0},
    {"no_dotdot_end", "https://allowed.example/app/..", 0},
    {"no_dot", "https://allowed.example/app/./x", 0},
    {"no_pct_dotdot", "https://allowed.example/app/%2e%2e/admin", 0},
    {"no_pct_dotdot_mixed", "https://allowed.example/app/%2E./admin", 0},
    {"no_pct_dot_end", "https://allowed.example/app/%2e", 0},
    {"no_pct_slash_path", "https://allowed.example/app%2f..%2fadmin", 0},
    {"no_pct_slash_below", "https://allowed.example/app/..%2Fadmin", 0},
    {"no_pct_backslash_path", "https://allowed.example/app/x%5cy", 0},
    {"no_double_slash_path", "https://root.example//evil.example/", 0},
    {"no_double_slash_inner", "https://allowed.example/app//x", 0},
    {"no_dir_entry_without_slash", "https://slash.example/dir", 0},
    {"no_dir_entry_sibling", "https://slash.example/dirt/", 0},
    {"no_bad_escape", "https://allowed.example/app%zz", 0},
    {"no_truncated_escape", "https://allowed.example/app%2", 0},
    {"no_lone_percent", "https://allowed.example/app/%", 0},
    {"no_brackets_path", "https://allowed.example/app/[1]", 0},
    {"no_brackets_query", "https://allowed.example/app?a[]=1", 0},
    {"no_angle_brackets", "https://allowed.example/app<script>", 0},
    {"no_double_quote", "https://allowed.example/app\"onload=x", 0},
    {"no_backtick", "https://allowed.example/app`x`", 0},
    {"no_braces_pipe_caret", "https://allowed.example/app{|^}", 0},
    /* names the broker appends cannot be preset: the caller would read
     * them as the broker's */
    {"no_preset_code", "https://allowed.example/app?code=x", 0},
    {"no_preset_state", "https://allowed.example/app?a=1&state=x", 0},
    {"no_preset_corpid", "https://allowed.example/app?corpid=ww1&b=2", 0},
    {"no_preset_installed", "https://allowed.example/app?installed=0", 0},
    {"no_preset_bare_name", "https://allowed.example/app?code", 0},
    {"no_preset_empty_value", "https://allowed.example/app?x&code=", 0},
    {"no_preset_encoded", "https://allowed.example/app?%63ode=x", 0},
    {"no_preset_encoded_upper", "https://allowed.example/app?%43ODE=x", 0},
    {"no_preset_case", "https://allowed.example/app?State=x", 0},
    {"no_preset_in_fragment", "https://allowed.example/app#code=x", 0},
    {"no_preset_in_fragment_query", "https://allowed.example/app#/cb?corpid=x",
     0},
    {"no_preset_in_nested_url",
     "https://root.example/x?next=https://a.example/?code=1", 0},
    {"ok_name_prefix", "https://allowed.example/app?codes=1&xstate=2", 1},
    {"ok_name_as_value", "https://allowed.example/app?x=code&y=state", 1},
    {"ok_name_in_path", "https://allowed.example/app/code", 1},
    /* malformed entries match nothing, even their own text */
    {"no_entry_with_query", "https://bad2.example/?q=1", 0},
    {"no_entry_with_fragment", "https://bad3.example/#f", 0},
};

static void
test_url_case(void **state)
{
    const struct url_case *c = *state;
    int got = oauth_return_allowed(c->url, Allow, nitems(Allow) - 1);

    if (got != c->allowed)
        fail_msg("%s: got %d, want %d", c->url, got, c->allowed);
}

static void
test_url_count(void **state)
{
    size_t i, ok = 0;

    (void)state;
    for (i = 0; i < nitems(Urls); i++)
        ok += Urls[i].allowed;
    assert_true(nitems(Urls) >= 60);
    assert_true(ok >= 20 && nitems(Urls) - ok >= 40);
}

static void
test_url_null_and_empty_list(void **state)
{
    char e0[] = "https://allowed.example/app";
    char *one[] = {e0};

    (void)state;
    assert_int_equal(oauth_return_allowed(NULL, Allow, nitems(Allow) - 1), 0);
    assert_int_equal(
        oauth_return_allowed("https://allowed.example/app", one, 0), 0);
    assert_int_equal(
        oauth_return_allowed("https://allowed.example/app", NULL, 3), 0);
    /* NULL entries are skipped, not dereferenced */
    assert_int_equal(
        oauth_return_allowed("https://root.example/", Allow, nitems(Allow)), 1);
}

static void
test_url_too_long(void **state)
{
    char *u = malloc(OAUTH_RETURN_MAX + 2);
    size_t pre = strlen("https://root.example/");

    (void)state;
    assert_non_null(u);
    memcpy(u, "https://root.example/", pre);
    memset(u + pre, 'a', OAUTH_RETURN_MAX - pre);
    u[OAUTH_RETURN_MAX] = '\0';
    assert_int_equal(oauth_return_allowed(u, Allow, nitems(Allow) - 1), 1);
    u[OAUTH_RETURN_MAX] = 'a';
    u[OAUTH_RETURN_MAX + 1] = '\0';
    assert_int_equal(oauth_return_allowed(u, Allow, nitems(Allow) - 1), 0);
    free(u);
}

static void
test_url_first_matching_entry_wins(void **state)
{
    char e0[] = "https://bad@x.example/", e1[] = "https://x.example/a";
    char *two[] = {e0, e1};

    (void)state;
    /* a malformed entry does not stop the scan */
    assert_int_equal(oauth_return_allowed("https://x.example/a/b", two, 2), 1);
    assert_int_equal(oauth_return_allowed("https://x.example/b", two, 2), 0);
}

/*---- caller state ----*/

static void
test_caller_state_ok(void **state)
{
    char max[OAUTH_CALLER_STATE_MAX + 1];

    (void)state;
    memset(max, 'x', OAUTH_CALLER_STATE_MAX);
    max[OAUTH_CALLER_STATE_MAX] = '\0';
    assert_int_equal(oauth_caller_state_ok(NULL), 1);
    assert_int_equal(oauth_caller_state_ok(""), 1);
    assert_int_equal(oauth_caller_state_ok("abc"), 1);
    assert_int_equal(oauth_caller_state_ok("A-Z_a.z-0.9"), 1);
    assert_int_equal(oauth_caller_state_ok(max), 1);
}

static void
test_caller_state_too_long(void **state)
{
    char big[OAUTH_CALLER_STATE_MAX + 2];

    (void)state;
    memset(big, 'x', OAUTH_CALLER_STATE_MAX + 1);
    big[OAUTH_CALLER_STATE_MAX + 1] = '\0';
    assert_int_equal(oauth_caller_state_ok(big), 0);
}

static void
test_caller_state_bad_chars(void **state)
{
    static const char *const bad[] = {
        "a b",
        "a&b",
        "a=b",
        "a#b",
        "a/b",
        "a%20b",
        "a+b",
        "a?b",
        "a\tb",
        "a\nb",
        "a\\b",
        "a\"b",
        "a<b",
        "a'b",
        "a~b",
        "a:b",
        "\xc3\xbc",
        "a\x7f"
        "b",
        "a@b",
        "a;b",
    };
    size_t i;

    (void)state;
    for (i = 0; i < nitems(bad); i++)
        if (oauth_caller_state_ok(bad[i]) != 0)
            fail_msg("accepted \"%s\"", bad[i]);
}

#define FIXED_TESTS                                                            \
    cmocka_unit_test(test_state_round_trip),                                   \
        cmocka_unit_test(test_state_mac_is_lower_hex),                         \
        cmocka_unit_test(test_state_fits_wecom),                               \
        cmocka_unit_test(test_state_fresh_each_time),                          \
        cmocka_unit_test(test_state_id_unbiased),                              \
        cmocka_unit_test(test_state_every_mutation_refused),                   \
        cmocka_unit_test(test_state_mac_case_flip_refused),                    \
        cmocka_unit_test(test_state_other_flow_refused),                       \
        cmocka_unit_test(test_state_other_suite_refused),                      \
        cmocka_unit_test(test_state_other_key_refused),                        \
        cmocka_unit_test(test_state_part_boundaries_bound),                    \
        cmocka_unit_test(test_state_truncated_refused),                        \
        cmocka_unit_test(test_state_extended_refused),                         \
        cmocka_unit_test(test_state_wrong_alphabet_refused),                   \
        cmocka_unit_test(test_state_null_and_empty_refused),                   \
        cmocka_unit_test(test_state_forged_refused),                           \
        cmocka_unit_test(test_state_stable_under_same_key),                    \
        cmocka_unit_test(test_no_allocation),                                  \
        cmocka_unit_test(test_url_count),                                      \
        cmocka_unit_test(test_url_null_and_empty_list),                        \
        cmocka_unit_test(test_url_too_long),                                   \
        cmocka_unit_test(test_url_first_matching_entry_wins),                  \
        cmocka_unit_test(test_caller_state_ok),                                \
        cmocka_unit_test(test_caller_state_too_long),                          \
        cmocka_unit_test(test_caller_state_bad_chars)

int
main(void)
{
    static const struct CMUnitTest fixed[] = {FIXED_TESTS};
    struct CMUnitTest tests[nitems(fixed) + nitems(Urls)];
    size_t i;

    /* one named test per URL: a failure names the case */
    memcpy(tests, fixed, sizeof(fixed));
    for (i = 0; i < nitems(Urls); i++) {
        struct CMUnitTest t = {Urls[i].name, test_url_case, NULL, NULL,
                               (void *)(uintptr_t)&Urls[i]};

        tests[nitems(fixed) + i] = t;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
