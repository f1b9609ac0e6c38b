/*
 * brokerctl: the operator's view of the broker's Redis. Each command
 * prints an aligned table for people, or JSON with --json for scripts.
 * Exit status: 0 ok, 1 failure, 2 usage error. This file holds main, the
 * command table with each command's help, and the Redis connection; the
 * commands live in cli/ctl_<group>.c.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "keyring.h"

#include "ctl.h"

struct command {
    const char *name;
    const char *summary;     /* one line for `brokerctl help` */
    const char *synopsis;    /* usage lines, '\n'-separated */
    const char *description; /* paragraphs for `brokerctl help NAME` */
    const char *examples;    /* command lines, '\n'-separated */
    ctl_run *run;
    /* 1: main neither loads the config nor connects to Redis; the command
     * loads what it needs itself */
    int offline;
};

static int cmd_help(struct ctl *c, int argc, char **argv);

static const struct command commands[] = {
    {"tenants", "list tenants (cancelled ones are not listed)",
     "tenants [--suite ID]",
     "Lists every tenant (one installation of one suite by one corp) that\n"
     "is installing, active or reinstall_required, with its name, suite,\n"
     "status, privilege level, granted permissions, visible range\n"
     "(departments, members, tags), when it was authorized and last\n"
     "updated, whether the corp must install the app again (an\n"
     "authorization was lost, so its grant is unknown), and how many of\n"
     "its events sit in the suite's dead-letter stream. Dead-lettered\n"
     "events are stored as WeCom sent them; they are decrypted with the\n"
     "suite's token and encoding_aes_key to find the corp, and their\n"
     "content is never printed. Names are aligned by display width (a\n"
     "Chinese character takes two columns).\n"
     "\n"
     "--json prints [{\"suite_id\",\"corpid\",\"corp_name\",\"status\",\n"
     "\"level\",\"authorized_at\",\"updated_at\",\"visible\",\"scopes\",\n"
     "\"reinstall_required\",\"dead_letters\"}].",
     "brokerctl -c broker.conf tenants\n"
     "brokerctl -c broker.conf --json tenants | jq '.[] | "
     "select(.dead_letters > 0)'",
     ctl_tenants, 0},
    {"tenant", "one tenant: show its grant and range, or purge it",
     "tenant show CORPID [--suite ID]\n"
     "tenant purge CORPID --yes [--suite ID]",
     "show: the grant (permissions with their expiry), privilege level,\n"
     "visible range, directory size, until when the broker holds an\n"
     "upstream corp token (never the token) and the data sources. A\n"
     "cancelled tenant is found through the index key and shows its\n"
     "deletion report.\n"
     "\n"
     "purge: deletes everything of the tenant, as a cancel_auth does: it\n"
     "marks the tenant cancelled as of now (so a create_auth that WeCom\n"
     "sent before now is dropped, and only a newer one installs it again),\n"
     "deletes its data key first (copies of its sealed values, in backups\n"
     "or in an AOF not yet rewritten, become unreadable), then every key\n"
     "of the tenant and the broker tokens services hold for it, asks\n"
     "Redis to rewrite its AOF, tells every broker instance, and prints\n"
     "the deletion report. The same corp's installation of another suite\n"
     "and the audit trail stay. Without --yes nothing is done (exit 2).\n"
     "Needs -c: the cancel marker is named by an HMAC under the index key.\n"
     "\n"
     "Where the corp installed several suites, --suite is required.",
     "brokerctl -c broker.conf tenant show wwa1b2c3d4e5f6\n"
     "brokerctl -c broker.conf --json tenant show wwa1b2c3d4e5f6\n"
     "brokerctl -c broker.conf tenant purge wwa1b2c3d4e5f6 --yes\n"
     "brokerctl -c broker.conf --suite wwSUITE tenant purge wwa1b2c3d4e5f6 "
     "--yes",
     ctl_tenant, 0},
    {"suite", "per suite: ticket age, suite token, queue, dead letters",
     "suite",
     "For each configured suite: when the last suite_ticket arrived (WeCom\n"
     "pushes one every 10 minutes; the broker needs one younger than 30\n"
     "minutes), until when the suite token is valid, what waits (events\n"
     "that name no corp yet in the suite stream, plus tenants whose own\n"
     "queue holds events), how many were dead-lettered, and the\n"
     "authorizations\n"
     "whose reply was lost (their corps must install the app again).",
     "brokerctl -c broker.conf suite\n"
     "brokerctl -c broker.conf --json suite",
     ctl_suite, 0},
    {"service", "manage the internal services allowed to call the API",
     "service add NAME --scopes A,B [--suite ID] [--corps X,Y] "
     "[--parties CORPID:P,...] [--capabilities C,...] [--write-rate N/min]\n"
     "service list\n"
     "service show NAME\n"
     "service revoke NAME\n"
     "service rotate NAME\n"
     "service deliver NAME --url URL [--events A,B] [--suite ID] "
     "[--rotate-key]\n"
     "service deliver NAME --off | --rotate-key",
     "add: creates a service allowed the given scopes (permissions or the\n"
     "aliases contacts.read, member.sensitive, external.customers; see\n"
     "`brokerctl scopes list`), optionally limited to one suite, to some\n"
     "corps, and to some departments of a corp. Prints its secret,\n"
     "ID.SECRET, once: Redis keeps only a salted hash.\n"
     "--capabilities: what ops allow it to do besides reading, never\n"
     "implied by a scope: external.write, external.welcome (at most one\n"
     "service per tenant: refused when another could serve the same\n"
     "tenant), external.message, messages (data callbacks).\n"
     "--write-rate N/min: the most writes a minute the service may make\n"
     "over all its tenants (45009 past it); writes also draw on the shared\n"
     "upstream budget.\n"
     "list, show: the services, their scopes, limits and live tokens.\n"
     "revoke: ends the service and every token it holds.\n"
     "rotate: prints a new secret and ends the old one and its tokens.\n"
     "Revoke and rotate take effect on every instance within 1 s.\n"
     "deliver: where the service receives the events it is allowed, in\n"
     "WeCom's callback format. The first time, prints a callback token\n"
     "and an EncodingAESKey, once; a new --url keeps them; --rotate-key\n"
     "prints new ones. --events narrows the events (InfoType or\n"
     "InfoType/ChangeType, comma-separated; default every event its grant\n"
     "allows); --suite narrows them to one suite. --off stops delivery\n"
     "(what is queued is dropped). Events are queued from the moment the\n"
     "setting is stored. `service show` shows the URL, events and status.\n"
     "\n"
     "--json: add and rotate print {\"name\",\"secret\"}; deliver prints\n"
     "{\"suite_id\",\"token\",\"encoding_aes_key\"} when it made a key\n"
     "(suite_id empty when the service spans suites).",
     "brokerctl -c broker.conf service add crm --scopes contacts.read\n"
     "brokerctl -c broker.conf service add sales --scopes "
     "contacts.read,external.customers --corps wwa1b2c3d4e5f6 --parties "
     "wwa1b2c3d4e5f6:3\n"
     "brokerctl -c broker.conf service list\n"
     "brokerctl -c broker.conf service show crm\n"
     "brokerctl -c broker.conf service rotate crm\n"
     "brokerctl -c broker.conf service revoke crm\n"
     "brokerctl -c broker.conf service deliver crm --url "
     "https://crm.internal/wecom/events --events create_auth,cancel_auth",
     ctl_service, 0},
    {"deliveries", "a service's event delivery backlog and dead letters",
     "deliveries NAME [--retry]",
     "Per tenant: deliveries queued for the service, dead letters (events\n"
     "not delivered within delivery_max_age), and the age of the oldest\n"
     "one. --retry queues the dead letters again (their age counted from\n"
     "now).\n"
     "\n"
     "--json: {\"service\",\"backlog\",\"dead\",\"tenants\":[{\"corpid\",\n"
     "\"suite\",\"backlog\",\"dead\",\"oldest_age_s\"}]} (and \"retried\"\n"
     "with --retry).",
     "brokerctl -c broker.conf deliveries crm\n"
     "brokerctl -c broker.conf deliveries crm --retry --json",
     ctl_deliveries, 0},
    {"key", "master key versions: list, rotate, re-wrap, destroy",
     "key list\n"
     "key rotate [--add-only]\n"
     "key rewrap\n"
     "key destroy VERSION --yes",
     "Data keys (one per suite, one per tenant) are stored wrapped by a\n"
     "master key version of master_key_file (\"VERSION HEX\" lines; the\n"
     "highest version is current). Rotate on your backup-retention\n"
     "schedule: once the version that wrapped a backup's data keys is\n"
     "destroyed, that backup is unreadable.\n"
     "\n"
     "list: the versions in the file and how many data keys each wraps.\n"
     "rotate: adds a version (highest + 1, 32 random bytes) to the file,\n"
     "replacing it atomically (mode 0600), then re-wraps every live data\n"
     "key under it (the data keys themselves do not change).\n"
     "--add-only adds the version without re-wrapping.\n"
     "rewrap: re-wraps every data key not under the current version.\n"
     "destroy: removes a version from the file; refused while any data key\n"
     "is wrapped with it, and for the current version. Without --yes\n"
     "nothing is done (exit 2).\n"
     "\n"
     "Every broker instance reads the key file at start and on SIGHUP. An\n"
     "instance must know a version before it can open data keys wrapped\n"
     "with it, and must forget a destroyed one. With several instances:\n"
     "`key rotate --add-only`, deploy the file to every instance and send\n"
     "SIGHUP to each, then `key rewrap`, then `key destroy OLD --yes`,\n"
     "deploy and SIGHUP again. With one instance, `key rotate` and SIGHUP\n"
     "it at once: until then it cannot open the re-wrapped data keys (its\n"
     "events wait and are retried).",
     "brokerctl -c broker.conf key list\n"
     "brokerctl -c broker.conf key rotate && kill -HUP $(pidof "
     "wecom-broker)\n"
     "brokerctl -c broker.conf key rotate --add-only\n"
     "brokerctl -c broker.conf key rewrap\n"
     "brokerctl -c broker.conf key destroy 1 --yes",
     ctl_key, 0},
    {"explain", "why each field of an endpoint is kept or removed",
     "explain CORPID SERVICE PATH [--suite ID]",
     "For one endpoint (PATH as WeCom writes it, /cgi-bin/user/get, or\n"
     "user/get), walks the declared response fields and says for each\n"
     "(dotted path, [] for array elements) whether SERVICE receives it\n"
     "from CORPID, and why not: not granted by the tenant (its\n"
     "permissions, with expiry), not allowed for the service (its\n"
     "scopes), never returned (removed whatever the grant), or removed\n"
     "with its parent. Records (members, departments, tags, follow\n"
     "users, customers, chats) outside the visible range are removed; the\n"
     "output says which fields are records and which key identifies\n"
     "them. Fields not declared in the scope files are removed. A\n"
     "request the broker would refuse (48002, 48004, 40014) is said so\n"
     "first. Needs -c (scope files).\n"
     "\n"
     "--json prints [{\"field\",\"kept\",\"reason\"}], with a last entry\n"
     "for field \"*\" (undeclared fields).",
     "brokerctl -c broker.conf explain wwa1b2c3d4e5f6 crm "
     "/cgi-bin/user/get\n"
     "brokerctl -c broker.conf --json explain wwa1b2c3d4e5f6 crm "
     "externalcontact/get",
     ctl_explain, 0},
    {"audit", "read the audit trail",
     "audit [--corp CORPID] [--service NAME] [--since DURATION] "
     "[--follow]",
     "Prints the audit trail: one line per service request (time, type,\n"
     "service, corp, endpoint, errcode, fields stripped / records\n"
     "dropped) and per lifecycle event (install, grant stored, purge,\n"
     "...). Never a field value. --since takes a number and a unit, s, m,\n"
     "h or d (10m, 2h, 1d); without it the whole trail is read. --follow\n"
     "keeps printing new entries until interrupted (Ctrl-C).\n"
     "\n"
     "--json prints one JSON object per line.",
     "brokerctl -c broker.conf audit --since 1h\n"
     "brokerctl -c broker.conf audit --corp wwa1b2c3d4e5f6 --service crm "
     "--since 1d\n"
     "brokerctl -c broker.conf --json audit --follow | jq "
     "'select(.errcode != 0)'",
     ctl_audit, 0},
    {"scopes", "validate the scope files; list endpoints and scopes",
     "scopes lint [DIR|FILE]\n"
     "scopes list",
     "lint: validates the scope files (of DIR, of FILE, or of scopes_dir\n"
     "from the configuration) without Redis; prints FILE:LINE:COLUMN:\n"
     "message on error.\n"
     "list: the endpoints the service API serves, their method, required\n"
     "scope and parameters.",
     "brokerctl scopes lint scopes/\n"
     "brokerctl --json scopes lint scopes/contacts.json\n"
     "brokerctl -c broker.conf scopes list",
     ctl_scopes, 1},
    {"help", "documentation of every command", "help [COMMAND]",
     "Without COMMAND, lists the commands; with it, prints its usage,\n"
     "what it does, and examples.",
     "brokerctl help\nbrokerctl help service", cmd_help, 1},
    {NULL, NULL, NULL, NULL, NULL, NULL, 0},
};

static const struct command *
find_command(const char *name)
{
    size_t i;

    for (i = 0; commands[i].name != NULL; i++)
        if (strcmp(name, commands[i].name) == 0)
            return &commands[i];
    return NULL;
}

/* Print each '\n'-separated line of text after lead (first) or pad. */
static void
print_lines(FILE *f, const char *lead, const char *pad, const char *text)
{
    const char *p = text, *nl;

    while (*p != '\0') {
        nl = strchr(p, '\n');
        if (nl == NULL)
            nl = p + strlen(p);
        fprintf(f, "%s%.*s\n", p == text ? lead : pad, (int)(nl - p), p);
        p = *nl ? nl + 1 : nl;
    }
}

static void
usage(FILE *f)
{
    size_t i;

    fprintf(f, "usage: brokerctl [-c FILE | --redis URL] [--json] [--suite ID] "
               "COMMAND [ARGS]\n"
               "\n"
               "Inspect and manage the broker's store.\n"
               "\n"
               "  -c FILE       broker configuration (default ./broker.conf):\n"
               "                Redis address, key prefix, suites, key files,\n"
               "                scope files\n"
               "  --redis URL   Redis to use instead of the configured one\n"
               "  --json        print JSON for scripts\n"
               "  --suite ID    the suite, where a corp installed several\n"
               "\n"
               "Commands:\n");
    for (i = 0; commands[i].name != NULL; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`brokerctl help COMMAND` documents each command.\n"
               "Exit status: 0 ok, 1 failure, 2 usage error.\n");
}

static void
command_usage(FILE *f, const struct command *cm)
{
    print_lines(f, "usage: brokerctl ", "       brokerctl ", cm->synopsis);
}

static void
command_help(FILE *f, const struct command *cm)
{
    command_usage(f, cm);
    fprintf(f, "\n");
    print_lines(f, "", "", cm->description);
    fprintf(f, "\nExamples:\n");
    print_lines(f, "  ", "  ", cm->examples);
}

/* help [COMMAND] */
static int
cmd_help(struct ctl *c, int argc, char **argv)
{
    const struct command *cm;

    (void)c;
    if (argc == 0) {
        usage(stdout);
        return 0;
    }
    if (argc > 1)
        return ctl_usage("help takes one COMMAND");
    cm = find_command(argv[0]);
    if (cm == NULL)
        return ctl_usage("no command %s; `brokerctl help` lists them", argv[0]);
    command_help(stdout, cm);
    return 0;
}

static int
connect_redis(struct ctl *c)
{
    struct config_redis u;
    struct timeval tv = {3, 0};
    char url[600];
    int rc = -1;

    if (c->redis_url != NULL)
        snprintf(url, sizeof(url), "%s", c->redis_url);
    else if (c->cfg->redis[0] != '\0')
        snprintf(url, sizeof(url), "%s", c->cfg->redis);
    else
        snprintf(url, sizeof(url), "unix://%s/redis.sock", c->cfg->state_dir);
    if (config_redis_parse(url, &u) != BRK_OK) {
        fprintf(stderr, "brokerctl: bad Redis URL\n");
        return -1;
    }
    if (ctl_redis_connect(c, &u, tv) != 0)
        goto out;
    rc = 0;
out:
    config_redis_clear(&u);
    return rc;
}

#define MAX_ARGS 32

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"redis", required_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},
        {"suite", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ctl c;
    const struct command *cm = NULL;
    char *rest[MAX_ARGS];
    int ch, rc = 1, nrest = 0, help = 0;

    memset(&c, 0, sizeof(c));
    c.conf_path = "broker.conf";
    while ((ch = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            c.conf_path = optarg;
            break;
        case 'r':
            c.redis_url = optarg;
            break;
        case 'j':
            c.json = 1;
            break;
        case 's':
            c.suite = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    cm = find_command(argv[optind]);
    if (cm == NULL) {
        fprintf(stderr, "brokerctl: unknown command %s\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    /* global options may also follow the command */
    for (optind++; optind < argc; optind++) {
        if (strcmp(argv[optind], "--json") == 0) {
            c.json = 1;
        } else if (strcmp(argv[optind], "--suite") == 0 && optind + 1 < argc) {
            c.suite = argv[++optind];
        } else if (strcmp(argv[optind], "--help") == 0 ||
                   strcmp(argv[optind], "-h") == 0) {
            help = 1;
        } else if (nrest < MAX_ARGS) {
            rest[nrest++] = argv[optind];
        } else {
            fprintf(stderr, "brokerctl: too many arguments\n");
            return 2;
        }
    }
    if (help) {
        command_help(stdout, cm);
        return 0;
    }
    if (cm->offline) {
        rc = cm->run(&c, nrest, rest);
        goto out;
    }
    if (ctl_load_config(&c) != 0)
        goto out;
    if (c.suite != NULL && config_find_suite(c.cfg, c.suite) == NULL) {
        fprintf(stderr, "brokerctl: no [suite %s] in %s\n", c.suite,
                c.conf_path);
        rc = 2;
        goto out;
    }
    if (connect_redis(&c) == 0)
        rc = cm->run(&c, nrest, rest);
out:
    if (rc == 2 && cm->run != cmd_help)
        command_usage(stderr, cm);
    if (c.rc != NULL)
        redisFree(c.rc);
    keyring_free(c.kr);
    config_free(c.cfg);
    return rc;
}
