/*
 * mock-wecom: the WeCom side, simulated, for tests and the demo.
 *
 *   mock-wecom callback ...   sign, encrypt and send a callback the way
 *                             WeCom does (POST events, GET URL checks)
 *   mock-wecom serve ...      the WeCom server API (serve.c)
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "codec.h"
#include "config.h"
#include "dynbuf.h"
#include "receive.h"
#include "serve.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define MAX_FIELDS 64

static void
usage_callback(FILE *f)
{
    fprintf(
        f,
        "usage: mock-wecom callback --url URL (-c FILE --suite ID |\n"
        "                  --token T --aes-key K [--suite ID]) [options]\n"
        "                  INFOTYPE [Field=Value ...]\n"
        "\n"
        "Builds the decrypted event <xml><SuiteId/><InfoType/><TimeStamp/>\n"
        "Field...</xml>, encrypts and signs it as WeCom does, POSTs it to URL\n"
        "with msg_signature, timestamp and nonce, and prints the reply.\n"
        "INFOTYPE \"-\" leaves out SuiteId and InfoType (data callbacks).\n"
        "A Field named TimeStamp or SuiteId replaces the default one.\n"
        "INFOTYPE change_app_admin sends the data callback WeCom sends when\n"
        "the app's admins change (to the /data URL; needs --corp): <xml>\n"
        "<ToUserName>CORPID</ToUserName><FromUserName>sys</FromUserName>\n"
        "<CreateTime/><MsgType>event</MsgType><Event>change_app_admin\n"
        "</Event><AgentID/>Field...</xml>, receiveid the corpid, AgentID in\n"
        "the envelope too; a Field of the same name replaces a default.\n"
        "\n"
        "  --url URL          e.g. "
        "http://127.0.0.1:8080/wecom/suite/ID/callback\n"
        "  -c FILE            read token and encoding_aes_key of --suite from "
        "a\n"
        "                     broker configuration file\n"
        "  --suite ID         suite id (SuiteId field, default receiveid)\n"
        "  --token T          callback Token\n"
        "  --aes-key K        EncodingAESKey (43 chars)\n"
        "  --receiveid ID     id sealed into the ciphertext (default: suite)\n"
        "  --timestamp N      query timestamp (default: now)\n"
        "  --nonce S          query nonce (default: random)\n"
        "  --echo TEXT        send a GET URL verification with TEXT as the\n"
        "                     plaintext echostr instead of an event\n"
        "  --print            print the request instead of sending it\n"
        "  --from-mock URL    a running `mock-wecom serve`: fills in what\n"
        "                     its tenants imply — SuiteTicket for\n"
        "                     suite_ticket, a fresh AuthCode for create_auth\n"
        "                     and reset_permanent_code (with --corp)\n"
        "  --corp CORPID      the corp of the event (AuthCorpId; ToUserName\n"
        "                     and receiveid of change_app_admin)\n"
        "  --agentid N        AgentID of change_app_admin (default 1000002)\n"
        "\n"
        "Exit status: 0 when the broker answered 200 with \"success\" (or the\n"
        "echoed TEXT), 1 otherwise, 2 on usage errors.\n");
}

struct cb_opts {
    const char *url, *conf, *suite, *token, *aes_key, *receiveid;
    const char *timestamp, *nonce, *echo;
    const char *from_mock, *corp, *agentid;
    int print;
};

static size_t
collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct dynbuf *d = arg;

    if (dynbuf_add(d, ptr, size * nmemb) != BRK_OK)
        return 0;
    return size * nmemb;
}

/* Send one request; print the reply; return the process exit status. */
static int
send_request(const char *url, const char *body, size_t bodylen,
             const char *expect, size_t expectlen)
{
    CURL *c = curl_easy_init();
    struct dynbuf reply;
    long status = 0;
    CURLcode rc;
    int ok;

    if (c == NULL)
        return 1;
    dynbuf_init(&reply, 1 << 20);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)bodylen);
    }
    rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        fprintf(stderr, "mock-wecom: %s: %s\n", url, curl_easy_strerror(rc));
        curl_easy_cleanup(c);
        dynbuf_free(&reply);
        return 1;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    printf("HTTP %ld\n%s%s", status, reply.buf ? reply.buf : "",
           reply.len && reply.buf[reply.len - 1] == '\n' ? "" : "\n");
    ok = status == 200 && reply.len == expectlen &&
         (expectlen == 0 || memcmp(reply.buf, expect, expectlen) == 0);
    dynbuf_free(&reply);
    return ok ? 0 : 1;
}

/* GET or POST a simulator control endpoint; the JSON reply or NULL. */
static json_t *
mock_call(const char *base, const char *path, const char *body)
{
    CURL *c = curl_easy_init();
    struct dynbuf reply;
    char url[1024];
    json_error_t jerr;
    json_t *v = NULL;
    long status = 0;

    if (c == NULL)
        return NULL;
    dynbuf_init(&reply, 1 << 20);
    snprintf(url, sizeof(url), "%s%s", base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
    if (body != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (status == 200 && reply.buf != NULL)
        v = json_loads(reply.buf, 0, &jerr);
    else
        fprintf(stderr, "mock-wecom: %s answered %ld: %s\n", url, status,
                reply.buf ? reply.buf : "");
    dynbuf_free(&reply);
    return v;
}

static int
has_field(const char *const *keys, size_t nk, const char *name)
{
    size_t i;

    for (i = 0; i < nk; i++)
        if (strcmp(keys[i], name) == 0)
            return 1;
    return 0;
}

/* Add what the simulator's state implies and the command line left out. */
static int
fill_from_mock(const struct cb_opts *o, const char *info_type,
               const char **keys, const char **vals, size_t *nk,
               char fill[][600], size_t nfill)
{
    char path[256], body[512];
    json_t *v;
    const char *s;

    (void)nfill;
    if (o->from_mock != NULL && strcmp(info_type, "suite_ticket") == 0 &&
        !has_field(keys, *nk, "SuiteTicket")) {
        snprintf(path, sizeof(path), "/__mock/suite_ticket?suite_id=%s",
                 o->suite ? o->suite : "");
        v = mock_call(o->from_mock, path, NULL);
        s = json_string_value(json_object_get(v, "suite_ticket"));
        if (s == NULL) {
            json_decref(v);
            return -1;
        }
        snprintf(fill[0], 600, "%s", s);
        keys[*nk] = "SuiteTicket";
        vals[(*nk)++] = fill[0];
        json_decref(v);
    }
    if (o->from_mock != NULL &&
        (strcmp(info_type, "create_auth") == 0 ||
         strcmp(info_type, "reset_permanent_code") == 0) &&
        !has_field(keys, *nk, "AuthCode")) {
        if (o->corp == NULL) {
            fprintf(stderr,
                    "mock-wecom: %s from the simulator needs "
                    "--corp\n",
                    info_type);
            return -1;
        }
        snprintf(body, sizeof(body), "{\"suite_id\":\"%s\",\"corpid\":\"%s\"}",
                 o->suite ? o->suite : "", o->corp);
        v = mock_call(o->from_mock, "/__mock/install", body);
        s = json_string_value(json_object_get(v, "auth_code"));
        if (s == NULL) {
            json_decref(v);
            return -1;
        }
        snprintf(fill[1], 600, "%s", s);
        keys[*nk] = "AuthCode";
        vals[(*nk)++] = fill[1];
        json_decref(v);
        return 0;
    }
    if (o->corp != NULL && strcmp(info_type, "suite_ticket") != 0 &&
        !has_field(keys, *nk, "AuthCorpId")) {
        keys[*nk] = "AuthCorpId";
        vals[(*nk)++] = o->corp;
    }
    return 0;
}

/* Whether argv[from..argc) has a Field=Value named name. */
static int
arg_field(char **argv, int from, int argc, const char *name)
{
    size_t n = strlen(name);
    int i;

    for (i = from; i < argc; i++)
        if (strncmp(argv[i], name, n) == 0 && argv[i][n] == '=')
            return 1;
    return 0;
}

/* An AgentID: 1 to 10 digits. */
static int
agentid_ok(const char *s)
{
    size_t n = strspn(s, "0123456789");

    /* 1..10 digits, nothing else */
    return n > 0 && n <= 10 && s[n] == '\0';
}

static int
cmd_callback(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
        {"suite", required_argument, NULL, 's'},
        {"token", required_argument, NULL, 'T'},
        {"aes-key", required_argument, NULL, 'k'},
        {"receiveid", required_argument, NULL, 'r'},
        {"timestamp", required_argument, NULL, 't'},
        {"nonce", required_argument, NULL, 'n'},
        {"echo", required_argument, NULL, 'e'},
        {"print", no_argument, NULL, 'p'},
        {"from-mock", required_argument, NULL, 'm'},
        {"corp", required_argument, NULL, 'C'},
        {"agentid", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct cb_opts o;
    struct config *cfg = NULL;
    struct brk_errinfo info = {"", 0, -1};
    struct wecom_crypto *crypto = NULL;
    const struct suite_conf *sc;
    const char *keys[MAX_FIELDS + 5], *vals[MAX_FIELDS + 5];
    char fill[2][600];
    char *fieldbuf[MAX_FIELDS];
    char tsbuf[24], noncebuf[24], sig[WECOM_CRYPTO_SIG_SIZE], msg[512];
    char *xml = NULL, *enc = NULL, *env = NULL, *url = NULL, *pct = NULL;
    const char *info_type, *ts_field = NULL;
    size_t xmllen = 0, envlen = 0, nk = 0, nf = 0, i;
    unsigned char rnd[4];
    int ch, rc = 2, data_event = 0;

    memset(&o, 0, sizeof(o));
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            o.url = optarg;
            break;
        case 'c':
            o.conf = optarg;
            break;
        case 's':
            o.suite = optarg;
            break;
        case 'T':
            o.token = optarg;
            break;
        case 'k':
            o.aes_key = optarg;
            break;
        case 'r':
            o.receiveid = optarg;
            break;
        case 't':
            o.timestamp = optarg;
            break;
        case 'n':
            o.nonce = optarg;
            break;
        case 'e':
            o.echo = optarg;
            break;
        case 'p':
            o.print = 1;
            break;
        case 'm':
            o.from_mock = optarg;
            break;
        case 'C':
            o.corp = optarg;
            break;
        case 'a':
            o.agentid = optarg;
            break;
        case 'h':
            usage_callback(stdout);
            return 0;
        default:
            usage_callback(stderr);
            return 2;
        }
    }
    if (o.url == NULL || (o.echo == NULL && optind >= argc)) {
        usage_callback(stderr);
        return 2;
    }
    data_event =
        o.echo == NULL && strcmp(argv[optind], "change_app_admin") == 0;
    if (data_event && o.corp == NULL) {
        fprintf(stderr, "mock-wecom: change_app_admin needs --corp\n");
        return 2;
    }
    if (o.agentid == NULL)
        o.agentid = "1000002";
    if (!agentid_ok(o.agentid)) {
        fprintf(stderr, "mock-wecom: --agentid wants a number\n");
        return 2;
    }
    if (o.conf != NULL) {
        if (o.suite == NULL) {
            fprintf(stderr, "mock-wecom: -c needs --suite\n");
            return 2;
        }
        if (config_load(o.conf, &cfg, &info) != BRK_OK) {
            config_format_error(o.conf, &info, msg, sizeof(msg));
            fprintf(stderr, "mock-wecom: %s\n", msg);
            return 1;
        }
        sc = config_find_suite(cfg, o.suite);
        if (sc == NULL) {
            fprintf(stderr, "mock-wecom: no [suite %s] in %s\n", o.suite,
                    o.conf);
            rc = 1;
            goto out;
        }
        o.token = sc->token;
        o.aes_key = sc->encoding_aes_key;
    }
    if (o.token == NULL || o.aes_key == NULL) {
        fprintf(stderr, "mock-wecom: give -c and --suite, or --token and "
                        "--aes-key\n");
        goto out;
    }
    if (wecom_crypto_new(o.token, o.aes_key, &crypto) != BRK_OK) {
        fprintf(stderr, "mock-wecom: unusable token or EncodingAESKey\n");
        rc = 1;
        goto out;
    }
    if (o.timestamp == NULL) {
        snprintf(tsbuf, sizeof(tsbuf), "%lld", (long long)time(NULL));
        o.timestamp = tsbuf;
    }
    if (o.nonce == NULL) {
        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
            goto out;
        snprintf(noncebuf, sizeof(noncebuf), "%u",
                 (unsigned)rnd[0] << 24 | (unsigned)rnd[1] << 16 |
                     (unsigned)rnd[2] << 8 | rnd[3]);
        o.nonce = noncebuf;
    }
    if (o.receiveid == NULL)
        o.receiveid = data_event ? o.corp : o.suite;
    if (o.receiveid == NULL) {
        fprintf(stderr, "mock-wecom: give --suite or --receiveid\n");
        goto out;
    }

    if (o.echo != NULL) {
        xml = brk_strdup(o.echo);
        xmllen = xml ? strlen(xml) : 0;
    } else {
        info_type = argv[optind++];
        for (i = optind; i < (size_t)argc; i++)
            if (strncmp(argv[i], "TimeStamp=", 10) == 0)
                ts_field = argv[i] + 10;
        if (data_event) {
            /* a data callback names the corp, not the suite */
            static const char *const dk[] = {"ToUserName", "FromUserName",
                                             "CreateTime", "MsgType",
                                             "Event",      "AgentID"};
            const char *dv[] = {
                o.corp,   "sys", o.timestamp, "event", "change_app_admin",
                o.agentid};

            for (i = 0; i < nitems(dk); i++)
                if (!arg_field(argv, optind, argc, dk[i])) {
                    keys[nk] = dk[i];
                    vals[nk++] = dv[i];
                }
        } else if (strcmp(info_type, "-") != 0) {
            if (o.suite != NULL) {
                keys[nk] = "SuiteId";
                vals[nk++] = o.suite;
            }
            keys[nk] = "InfoType";
            vals[nk++] = info_type;
            keys[nk] = "TimeStamp";
            vals[nk++] = ts_field ? ts_field : o.timestamp;
        }
        for (; optind < argc; optind++) {
            char *eq = strchr(argv[optind], '=');

            if (eq == NULL || nf == MAX_FIELDS) {
                fprintf(stderr,
                        "mock-wecom: field %s is not Name=Value (or "
                        "too many fields)\n",
                        argv[optind]);
                goto out;
            }
            if (strncmp(argv[optind], "TimeStamp=", 10) == 0 &&
                strcmp(info_type, "-") != 0 && !data_event)
                continue;
            fieldbuf[nf] =
                brk_strndup(argv[optind], (size_t)(eq - argv[optind]));
            if (fieldbuf[nf] == NULL)
                goto out;
            keys[nk] = fieldbuf[nf++];
            vals[nk++] = eq + 1;
        }
        if (!data_event && (o.from_mock != NULL || o.corp != NULL) &&
            fill_from_mock(&o, info_type, keys, vals, &nk, fill,
                           nitems(fill)) != 0)
            goto out;
        if (wecom_xml_build(keys, vals, nk, &xml, &xmllen) != BRK_OK) {
            fprintf(stderr, "mock-wecom: bad field name\n");
            goto out;
        }
    }
    if (xml == NULL ||
        wecom_crypto_encrypt(crypto, xml, xmllen, o.receiveid, &enc) !=
            BRK_OK ||
        wecom_crypto_sign(crypto, o.timestamp, o.nonce, enc, sig) != BRK_OK) {
        fprintf(stderr, "mock-wecom: encryption failed\n");
        rc = 1;
        goto out;
    }
    {
        struct dynbuf u;

        pct = brk_malloc(strlen(enc) * 3 + strlen(o.nonce) * 3 + 1);
        dynbuf_init(&u, 1 << 20);
        if (pct == NULL ||
            dynbuf_printf(&u, "%s%cmsg_signature=%s&timestamp=%s", o.url,
                          strchr(o.url, '?') ? '&' : '?', sig, o.timestamp))
            goto out;
        codec_pct_encode(o.nonce, pct);
        if (dynbuf_printf(&u, "&nonce=%s", pct))
            goto out;
        if (o.echo != NULL) {
            codec_pct_encode(enc, pct);
            if (dynbuf_printf(&u, "&echostr=%s", pct))
                goto out;
        }
        if (dynbuf_take(&u, &url, NULL))
            goto out;
    }
    if (o.echo == NULL) {
        const char *ek[] = {"ToUserName", "Encrypt", "AgentID"};
        const char *ev[] = {o.receiveid, enc, data_event ? o.agentid : ""};

        if (wecom_xml_build(ek, ev, 3, &env, &envlen) != BRK_OK)
            goto out;
    }
    if (o.print) {
        printf("%s %s\n", o.echo ? "GET" : "POST", url);
        if (env != NULL)
            printf("\n%s\n", env);
        printf("\n(decrypted: %s)\n", xml);
        rc = 0;
        goto out;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (o.echo != NULL)
        rc = send_request(url, NULL, 0, o.echo, strlen(o.echo));
    else
        rc = send_request(url, env, envlen, "success", 7);
    curl_global_cleanup();
out:
    for (i = 0; i < nf; i++)
        brk_free(fieldbuf[i]);
    brk_free(xml);
    brk_free(enc);
    brk_free(env);
    brk_free(url);
    brk_free(pct);
    wecom_crypto_free(crypto);
    config_free(cfg);
    return rc;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: mock-wecom COMMAND [options]\n"
               "\n"
               "A WeCom simulator for tests and demos.\n"
               "\n"
               "  callback   sign, encrypt and send a callback to the broker\n"
               "  serve      simulate the WeCom server API\n"
               "  receive    a service's event receiver: verify, decrypt, "
               "print\n"
               "\n"
               "mock-wecom COMMAND --help shows a command's options.\n");
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "callback") == 0)
        return cmd_callback(argc - 1, argv + 1);
    if (strcmp(argv[1], "serve") == 0)
        return serve_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "receive") == 0)
        return receive_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "mock-wecom: unknown command %s\n", argv[1]);
    usage(stderr);
    return 2;
}
