/*
 * `make install` from the outside: it runs into a temporary PREFIX, and
 * the installed tree is checked as an operator would use it — programs
 * that run, scope files the installed brokerctl accepts, an example
 * configuration the installed broker accepts, man pages that render, a
 * systemd unit whose commands exist — plus DESTDIR staging and uninstall.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker.h"
#include "harness.h"

#define MAKE_PATH "/usr/bin/make"
#define MAN_PATH  "/usr/bin/man"
#define STATE_DIR "/var/lib/wecom-broker"

static char top[PATH_MAX];         /* temporary directory of this test */
static char prefix[PATH_MAX + 16]; /* PREFIX of the main install */
static int install_rc = -1;
static char *install_out;

static const char *const programs[] = {"wecom-broker", "brokerctl",
                                       "mock-wecom"};
static const char *const man_pages[] = {"wecom-broker.8", "brokerctl.8"};

/* dst = a + b, failing the test when it does not fit. */
static void
join(char *dst, size_t len, const char *a, const char *b)
{
    int n = snprintf(dst, len, "%s%s", a, b);

    assert_true(n > 0 && (size_t)n < len);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static int
setup(void **state)
{
    const char *argv[6] = {MAKE_PATH, "-s", "install", NULL, "DESTDIR=", NULL};
    char arg[PATH_MAX + 32];

    (void)state;
    /* make passes its job server and command-line variables down through
     * the environment; the install below is a make of its own */
    unsetenv("MAKEFLAGS");
    unsetenv("MFLAGS");
    unsetenv("MAKELEVEL");
    snprintf(top, sizeof(top), "/tmp/wbinstall.XXXXXX");
    if (mkdtemp(top) == NULL)
        return -1;
    snprintf(prefix, sizeof(prefix), "%s/prefix", top);
    snprintf(arg, sizeof(arg), "PREFIX=%s", prefix);
    argv[3] = arg;
    install_rc = h_run(argv, &install_out);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    free(install_out);
    if (getenv("KEEP_TEST_DIR") == NULL && top[0] != '\0')
        nftw(top, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* A file's whole content and length (free), or NULL. */
static char *
read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL, *p;
    size_t cap = 0, n = 0, r;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            p = realloc(buf, cap + 1);
            if (p == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The installed file equals the repository's, byte for byte. */
static void
assert_same_file(const char *installed, const char *source)
{
    size_t a_len = 0, b_len = 0;
    char *a = read_all(installed, &a_len);
    char *b = read_all(source, &b_len);

    if (a == NULL)
        fail_msg("%s is missing", installed);
    assert_non_null(b);
    if (a_len != b_len || memcmp(a, b, a_len) != 0)
        fail_msg("%s differs from %s", installed, source);
    free(a);
    free(b);
}

/* A regular file with exactly this mode. */
static void
assert_file_mode(const char *path, mode_t mode)
{
    struct stat st;

    if (stat(path, &st) != 0)
        fail_msg("%s is missing", path);
    if (!S_ISREG(st.st_mode))
        fail_msg("%s is not a regular file", path);
    if ((st.st_mode & 07777) != mode)
        fail_msg("%s has mode %04o, expected %04o", path,
                 (unsigned)(st.st_mode & 07777), (unsigned)mode);
}

/* The line of text that starts with key (at a line start), or fail. */
static const char *
line_of(const char *text, const char *key)
{
    size_t klen = strlen(key);
    const char *p = text;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, key, klen) == 0)
            return p;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return NULL;
}

static void
assert_has_line(const char *text, const char *line)
{
    const char *p = line_of(text, line);
    size_t n = strlen(line);

    if (p == NULL || (p[n] != '\n' && p[n] != '\0'))
        fail_msg("missing the line \"%s\"", line);
}

/* Run argv with stdout into *out and stderr into *err (both free);
 * returns the exit status or -1. */
static int
run_split(const char *const argv[], char **out, char **err)
{
    char out_path[PATH_MAX + 16], err_path[PATH_MAX + 16];
    size_t len;
    int status, fd;
    pid_t pid;

    snprintf(out_path, sizeof(out_path), "%s/run.out", top);
    snprintf(err_path, sizeof(err_path), "%s/run.err", top);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0)
            _exit(126);
        fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 2) < 0)
            _exit(126);
        execv(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    *out = read_all(out_path, &len);
    *err = read_all(err_path, &len);
    if (*out == NULL)
        *out = calloc(1, 1);
    if (*err == NULL)
        *err = calloc(1, 1);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_install_succeeds(void **state)
{
    (void)state;
    if (install_rc != 0)
        fail_msg("make install exited %d:\n%s", install_rc,
                 install_out ? install_out : "");
}

static void
test_programs_installed_executable(void **state)
{
    char path[PATH_MAX + 64], src[64];
    size_t i;

    (void)state;
    for (i = 0; i < nitems(programs); i++) {
        snprintf(path, sizeof(path), "%s/bin/%s", prefix, programs[i]);
        assert_file_mode(path, 0755);
        assert_int_equal(access(path, X_OK), 0);
        snprintf(src, sizeof(src), "bin/%s", programs[i]);
        assert_same_file(path, src);
    }
}

static void
test_scope_files_installed(void **state)
{
    char dir[PATH_MAX + 64], path[PATH_MAX + 320], src[320];
    struct dirent *e;
    size_t n = 0, installed = 0, len;
    DIR *d;

    (void)state;
    d = opendir("scopes");
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        len = strlen(e->d_name);
        if (len < 6 || e->d_name[0] == '.' ||
            strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/share/wecom-broker/scopes/%s", prefix,
                 e->d_name);
        snprintf(src, sizeof(src), "scopes/%s", e->d_name);
        assert_file_mode(path, 0644);
        assert_same_file(path, src);
        n++;
    }
    closedir(d);
    assert_true(n > 0);
    /* nothing but the scope files: the broker loads every *.json there */
    snprintf(dir, sizeof(dir), "%s/share/wecom-broker/scopes", prefix);
    d = opendir(dir);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        installed += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(installed, n);
}

static void
test_example_config_points_at_install(void **state)
{
    char path[PATH_MAX + 64], line[PATH_MAX + 64];
    size_t len = 0;
    char *text;

    (void)state;
    snprintf(path, sizeof(path),
             "%s/share/doc/wecom-broker/broker.conf.example", prefix);
    assert_file_mode(path, 0644);
    text = read_all(path, &len);
    assert_non_null(text);
    assert_has_line(text, "state_dir = " STATE_DIR);
    assert_has_line(text, "master_key_file = " STATE_DIR "/master.key");
    assert_has_line(text, "index_key_file = " STATE_DIR "/index.key");
    snprintf(line, sizeof(line), "scopes_dir = %s/share/wecom-broker/scopes",
             prefix);
    assert_has_line(text, line);
    /* the rest is the repository's example, comments included */
    assert_non_null(line_of(text, "[suite wwdemo0000suite01]"));
    assert_non_null(line_of(text, "; wecom-broker configuration (INI)."));
    free(text);
}

static void
test_installed_broker_accepts_example(void **state)
{
    char bin[PATH_MAX + 64], conf[PATH_MAX + 64];
    const char *argv[] = {bin, "-c", conf, "-t", NULL};
    char *out = NULL;
    int rc;

    (void)state;
    snprintf(bin, sizeof(bin), "%s/bin/wecom-broker", prefix);
    snprintf(conf, sizeof(conf),
             "%s/share/doc/wecom-broker/broker.conf.example", prefix);
    /* -t loads scopes_dir too: this fails if it does not point at the
     * installed scope files */
    rc = h_run(argv, &out);
    if (rc != 0 || strstr(out, "configuration OK\n") == NULL)
        fail_msg("wecom-broker -t exited %d: %s", rc, out);
    free(out);
}

static void
test_installed_broker_help(void **state)
{
    char bin[PATH_MAX + 64];
    const char *argv[] = {bin, "-h", NULL};
    char *out = NULL;
    int rc;

    (void)state;
    snprintf(bin, sizeof(bin), "%s/bin/wecom-broker", prefix);
    rc = h_run(argv, &out);
    assert_int_equal(rc, 0);
    assert_true(strncmp(out, "usage: wecom-broker", 19) == 0);
    free(out);
}

static void
test_installed_brokerctl_lints_installed_scopes(void **state)
{
    char bin[PATH_MAX + 64], dir[PATH_MAX + 64], want[PATH_MAX + 128];
    const char *argv[] = {bin, "scopes", "lint", dir, NULL};
    char *out = NULL;
    int rc;

    (void)state;
    snprintf(bin, sizeof(bin), "%s/bin/brokerctl", prefix);
    snprintf(dir, sizeof(dir), "%s/share/wecom-broker/scopes", prefix);
    rc = h_run(argv, &out);
    if (rc != 0)
        fail_msg("brokerctl scopes lint exited %d: %s", rc, out);
    assert_true(strncmp(out, "scopes OK: ", 11) == 0);
    snprintf(want, sizeof(want), "(%s)\n", dir);
    assert_true(strlen(out) > strlen(want) &&
                strcmp(out + strlen(out) - strlen(want), want) == 0);
    free(out);
}

/* text with every "/usr/local/" replaced by PREFIX "/" (free). */
static char *
with_prefix(const char *text)
{
    static const char from[] = "/usr/local/";
    size_t n = 0, plen = strlen(prefix), o = 0;
    const char *p;
    char *out;

    for (p = text; (p = strstr(p, from)) != NULL; p += sizeof(from) - 1)
        n++;
    out = malloc(strlen(text) + n * (plen + 1) + 1);
    assert_non_null(out);
    for (p = text; *p != '\0';) {
        if (strncmp(p, from, sizeof(from) - 1) == 0) {
            memcpy(out + o, prefix, plen);
            o += plen;
            out[o++] = '/';
            p += sizeof(from) - 1;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    return out;
}

/* The repository's pages, naming PREFIX where they say /usr/local. */
static void
test_man_pages_installed(void **state)
{
    char path[PATH_MAX + 64], src[64];
    char *got, *orig, *want;
    size_t i, len = 0;

    (void)state;
    for (i = 0; i < nitems(man_pages); i++) {
        snprintf(path, sizeof(path), "%s/share/man/man8/%s", prefix,
                 man_pages[i]);
        snprintf(src, sizeof(src), "man/%s", man_pages[i]);
        assert_file_mode(path, 0644);
        got = read_all(path, &len);
        orig = read_all(src, &len);
        assert_non_null(got);
        assert_non_null(orig);
        /* the pages do name installed paths: the rewrite is exercised */
        assert_non_null(strstr(orig, "/usr/local/share/"));
        want = with_prefix(orig);
        if (strcmp(got, want) != 0)
            fail_msg("%s is not man/%s with PREFIX", path, man_pages[i]);
        free(got);
        free(orig);
        free(want);
    }
}

static void
test_man_pages_render_without_warnings(void **state)
{
    char path[PATH_MAX + 64];
    const char *argv[] = {MAN_PATH, "--warnings", "-l", path, NULL};
    char *out = NULL, *err = NULL;
    size_t i;
    int rc;

    (void)state;
    if (access(MAN_PATH, X_OK) != 0)
        skip();
    setenv("MANPAGER", "cat", 1);
    setenv("MANWIDTH", "80", 1);
    for (i = 0; i < nitems(man_pages); i++) {
        snprintf(path, sizeof(path), "%s/share/man/man8/%s", prefix,
                 man_pages[i]);
        rc = run_split(argv, &out, &err);
        if (rc != 0 || err[0] != '\0')
            fail_msg("man -l %s exited %d:\n%s", man_pages[i], rc, err);
        assert_non_null(strstr(out, "NAME"));
        assert_non_null(strstr(out, "SYNOPSIS"));
        assert_non_null(strstr(out, "EXIT STATUS"));
        free(out);
        free(err);
    }
}

/* Every Exec line's program of the installed unit is under PREFIX/bin
 * and exists; the broker reads /etc/wecom-broker/broker.conf. */
static void
test_unit_commands_exist(void **state)
{
    static const char *const keys[] = {"ExecStartPre=", "ExecStart="};
    char path[PATH_MAX + 64], bindir[PATH_MAX + 16], prog[PATH_MAX + 64];
    const char *line, *sp;
    size_t len = 0, i, n;
    char *text;

    (void)state;
    snprintf(path, sizeof(path), "%s/lib/systemd/system/wecom-broker.service",
             prefix);
    assert_file_mode(path, 0644);
    text = read_all(path, &len);
    assert_non_null(text);
    join(bindir, sizeof(bindir), prefix, "/bin/");
    for (i = 0; i < nitems(keys); i++) {
        line = line_of(text, keys[i]);
        if (line == NULL && i == 0)
            continue;
        assert_non_null(line);
        line += strlen(keys[i]);
        sp = strchr(line, ' ');
        assert_non_null(sp);
        n = (size_t)(sp - line);
        assert_true(n < sizeof(prog));
        memcpy(prog, line, n);
        prog[n] = '\0';
        if (strncmp(prog, bindir, strlen(bindir)) != 0)
            fail_msg("%s%s is not under %s", keys[i], prog, bindir);
        assert_int_equal(access(prog, X_OK), 0);
        assert_true(strncmp(sp, " -c /etc/wecom-broker/broker.conf", 33) == 0);
    }
    assert_null(strstr(text, "/usr/local/"));
    assert_has_line(text, "User=wecom-broker");
    assert_has_line(text, "StateDirectory=wecom-broker");
    free(text);
}

/* One make run in the repository; 0 or the exit status. */
static int
run_make(const char *target, const char *stage_prefix, const char *destdir)
{
    char p[PATH_MAX + 32], d[PATH_MAX + 32];
    const char *argv[] = {MAKE_PATH, "-s", target, p, d, NULL};
    char *out = NULL;
    int rc;

    snprintf(p, sizeof(p), "PREFIX=%s", stage_prefix);
    snprintf(d, sizeof(d), "DESTDIR=%s", destdir);
    rc = h_run(argv, &out);
    if (rc != 0)
        print_error("make %s: %s\n", target, out);
    free(out);
    return rc;
}

/* DESTDIR decides where files go, not the paths written into them; a
 * second install over the first works; uninstall removes what install
 * put there. */
static void
test_destdir_stages_and_uninstalls(void **state)
{
    char stage[PATH_MAX + 16], path[PATH_MAX + 96];
    size_t len = 0, i;
    char *text;
    struct stat st;

    (void)state;
    join(stage, sizeof(stage), top, "/stage");
    assert_int_equal(run_make("install", "/usr", stage), 0);
    assert_int_equal(run_make("install", "/usr", stage), 0);
    join(path, sizeof(path), stage, "/usr/bin/wecom-broker");
    assert_file_mode(path, 0755);
    join(path, sizeof(path), stage,
         "/usr/lib/systemd/system/wecom-broker.service");
    text = read_all(path, &len);
    assert_non_null(text);
    assert_has_line(text, "ExecStart=/usr/bin/wecom-broker -c "
                          "/etc/wecom-broker/broker.conf");
    assert_null(strstr(text, stage));
    free(text);
    join(path, sizeof(path), stage,
         "/usr/share/doc/wecom-broker/broker.conf.example");
    text = read_all(path, &len);
    assert_non_null(text);
    assert_has_line(text, "scopes_dir = /usr/share/wecom-broker/scopes");
    assert_null(strstr(text, stage));
    free(text);

    assert_int_equal(run_make("uninstall", "/usr", stage), 0);
    for (i = 0; i < nitems(programs); i++) {
        snprintf(path, sizeof(path), "%s/usr/bin/%s", stage, programs[i]);
        assert_int_not_equal(lstat(path, &st), 0);
    }
    for (i = 0; i < nitems(man_pages); i++) {
        snprintf(path, sizeof(path), "%s/usr/share/man/man8/%s", stage,
                 man_pages[i]);
        assert_int_not_equal(lstat(path, &st), 0);
    }
    join(path, sizeof(path), stage, "/usr/share/wecom-broker");
    assert_int_not_equal(lstat(path, &st), 0);
    join(path, sizeof(path), stage, "/usr/share/doc/wecom-broker");
    assert_int_not_equal(lstat(path, &st), 0);
    join(path, sizeof(path), stage,
         "/usr/lib/systemd/system/wecom-broker.service");
    assert_int_not_equal(lstat(path, &st), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_succeeds),
        cmocka_unit_test(test_programs_installed_executable),
        cmocka_unit_test(test_scope_files_installed),
        cmocka_unit_test(test_example_config_points_at_install),
        cmocka_unit_test(test_installed_broker_accepts_example),
        cmocka_unit_test(test_installed_broker_help),
        cmocka_unit_test(test_installed_brokerctl_lints_installed_scopes),
        cmocka_unit_test(test_man_pages_installed),
        cmocka_unit_test(test_man_pages_render_without_warnings),
        cmocka_unit_test(test_unit_commands_exist),
        cmocka_unit_test(test_destdir_stages_and_uninstalls),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
