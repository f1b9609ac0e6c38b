/*
 * mock-wecom serve: the customer write APIs (see serve_write.h). State is
 * in memory and bounded: what the app created (corp tags and their
 * groups, contact ways) and the WelcomeCodes minted.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "multipart.h"
#include "serve_write.h"

#define MAX_MADE     4096
#define MAX_WELCOME  1024
#define MAX_MEDIA    1024
#define MEDIA_MS     (3LL * 24 * 3600 * 1000)
#define E_BAD_MEDIA  40007L
#define ID_MAX       64
#define WELCOME_MS   20000
#define E_FORBIDDEN  48002L
#define E_RANGE      60011L
#define E_BAD_VALUE  40058L
#define E_BAD_TAG    40068L
#define E_BAD_USER   60111L
#define E_BAD_EXT    40096L
#define E_NO_RELATE  84061L
#define E_WELCOME    41050L
#define E_WELCOME_US 41051L

enum made_kind { MADE_GROUP = 1, MADE_TAG, MADE_WAY };

struct made {
    enum made_kind kind;
    long corp;
    char id[ID_MAX + 1];
    char group[ID_MAX + 1]; /* a tag's group */
    char name[96];
    int deleted;
};

struct welcome {
    long corp;
    char code[ID_MAX + 1];
    long long minted_ms;
    int used;
};

struct media {
    long corp;
    char id[ID_MAX + 1];
    long long created_ms;
};

struct mock_writes {
    struct media media[MAX_MEDIA];
    unsigned long nmedia; /* uploaded so far; ring index */
    struct made made[MAX_MADE];
    size_t nmade;
    struct welcome welcome[MAX_WELCOME];
    unsigned long nwelcome; /* minted so far; ring index */
    unsigned long serial;
};

enum brk_err
mock_writes_new(struct mock_writes **out)
{
    struct mock_writes *w = brk_calloc(1, sizeof(*w));

    if (w == NULL)
        return BRK_ERR_NOMEM;
    *out = w;
    return BRK_OK;
}

void
mock_writes_free(struct mock_writes *w)
{
    brk_free(w);
}

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
new_id(struct mock_writes *w, const char *prefix, char *buf, size_t len)
{
    unsigned char r[8];
    uint64_t v = 0;
    size_t i;

    if (RAND_bytes(r, sizeof(r)) != 1)
        memset(r, 0, sizeof(r));
    for (i = 0; i < sizeof(r); i++)
        v = v << 8 | r[i];
    snprintf(buf, len, "%s%016" PRIx64 "%06lx", prefix, v, ++w->serial);
}

static struct made *
made_find(struct mock_writes *w, long corp, enum made_kind kind, const char *id)
{
    size_t i;

    for (i = 0; id != NULL && i < w->nmade; i++)
        if (w->made[i].corp == corp && w->made[i].kind == kind &&
            !w->made[i].deleted && strcmp(w->made[i].id, id) == 0)
            return &w->made[i];
    return NULL;
}

static struct made *
made_add(struct mock_writes *w, long corp, enum made_kind kind,
         const char *prefix)
{
    struct made *m;

    if (w->nmade == MAX_MADE)
        return NULL;
    m = &w->made[w->nmade++];
    memset(m, 0, sizeof(*m));
    m->kind = kind;
    m->corp = corp;
    new_id(w, prefix, m->id, sizeof(m->id));
    return m;
}

static const char *
jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static size_t
utf8_chars(const char *s)
{
    size_t n = 0;

    for (; s != NULL && *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* A member named by a write: 0 when in range, else WeCom's errcode. */
static long
member_ok(const struct fixture_corp *c, const char *userid)
{
    int v = fixture_member_visible(c, userid);

    return v == 1 ? 0 : v == 0 ? E_RANGE : E_BAD_USER;
}

static long
need(const struct fixture_corp *c, const char *perm)
{
    return !fixture_corp_is_strict(c) || fixture_corp_has_permission(c, perm)
               ? 0
               : E_FORBIDDEN;
}

/* A corp tag (or group) the app may use: an admin's or one it made. */
static int
tag_usable(struct mock_writes *w, const struct fixture_corp *c, long corp,
           const char *id)
{
    return fixture_corp_tag_known(c, id) ||
           made_find(w, corp, MADE_TAG, id) != NULL;
}

/* A tag or group the app may change: one it made (48002 for the admin's
 * own, 40068 for one that does not exist). */
static long
tag_editable(struct mock_writes *w, const struct fixture_corp *c, long corp,
             const char *id, struct made **out)
{
    struct made *m = made_find(w, corp, MADE_TAG, id);

    if (m == NULL)
        m = made_find(w, corp, MADE_GROUP, id);
    *out = m;
    if (m != NULL)
        return 0;
    return fixture_corp_tag_known(c, id) ? E_FORBIDDEN : E_BAD_TAG;
}

static long
customer_write(struct mock_writes *w, const struct fixture_corp *c, long corp,
               const json_t *b, int tags)
{
    const char *u = jstr(b, "userid"), *ext = jstr(b, "external_userid");
    const json_t *v;
    size_t i;
    long e;
    int f;

    if ((e = need(c, "externalcontact:base:base")) != 0)
        return e;
    if (u == NULL || ext == NULL)
        return E_BAD_VALUE;
    if ((e = member_ok(c, u)) != 0)
        return e;
    f = fixture_customer_follower(c, ext, u);
    if (f < 0)
        return E_BAD_EXT;
    if (f == 0)
        return E_NO_RELATE;
    if (!tags)
        return utf8_chars(jstr(b, "remark")) > 20 ? E_BAD_VALUE : 0;
    json_array_foreach(
        json_object_get(b, "add_tag"), i,
        v) if (!tag_usable(w, c, corp, json_string_value(v))) return E_BAD_TAG;
    json_array_foreach(
        json_object_get(b, "remove_tag"), i,
        v) if (!tag_usable(w, c, corp, json_string_value(v))) return E_BAD_TAG;
    return 0;
}

static json_t *
tag_group_json(struct mock_writes *w, const struct made *g)
{
    json_t *tags = json_array();
    size_t i;

    for (i = 0; i < w->nmade; i++) {
        const struct made *t = &w->made[i];

        if (t->kind == MADE_TAG && !t->deleted && t->corp == g->corp &&
            strcmp(t->group, g->id) == 0)
            json_array_append_new(
                tags, json_pack("{s:s,s:s,s:i,s:i,s:s}", "id", t->id, "name",
                                t->name, "create_time", 1700000000, "order", 0,
                                "mock_internal_note", "tag"));
    }
    return json_pack("{s:s,s:s,s:i,s:i,s:o}", "group_id", g->id, "group_name",
                     g->name, "create_time", 1700000000, "order", 0, "tag",
                     tags);
}

static long
add_corp_tag(struct mock_writes *w, long corp, const json_t *b, json_t **reply)
{
    const char *gid = jstr(b, "group_id"), *gname = jstr(b, "group_name");
    const json_t *tags = json_object_get(b, "tag"), *t;
    struct made *g, *m;
    size_t i;

    if (json_array_size(tags) == 0)
        return E_BAD_VALUE;
    if (gid != NULL) {
        g = made_find(w, corp, MADE_GROUP, gid);
        if (g == NULL)
            return E_FORBIDDEN;
    } else {
        if (gname == NULL || utf8_chars(gname) > 30)
            return E_BAD_VALUE;
        g = made_add(w, corp, MADE_GROUP, "et");
        if (g == NULL)
            return -1;
        snprintf(g->name, sizeof(g->name), "%s", gname);
    }
    json_array_foreach(tags, i, t)
    {
        const char *name = jstr(t, "name");

        if (name == NULL || utf8_chars(name) > 30)
            return E_BAD_VALUE;
        m = made_add(w, corp, MADE_TAG, "et");
        if (m == NULL)
            return -1;
        snprintf(m->group, sizeof(m->group), "%s", g->id);
        snprintf(m->name, sizeof(m->name), "%s", name);
    }
    *reply = json_pack("{s:o}", "tag_group", tag_group_json(w, g));
    return *reply != NULL ? 0 : -1;
}

static long
del_corp_tag(struct mock_writes *w, const struct fixture_corp *c, long corp,
             const json_t *b)
{
    const json_t *v;
    struct made *m;
    size_t i, n = 0;
    long e;
    int pass;

    /* all or nothing: every id is checked before any is deleted */
    for (pass = 0; pass < 2; pass++) {
        json_array_foreach(json_object_get(b, "tag_id"), i, v)
        {
            if ((e = tag_editable(w, c, corp, json_string_value(v), &m)) != 0)
                return e;
            if (pass)
                m->deleted = 1;
            n++;
        }
        json_array_foreach(json_object_get(b, "group_id"), i, v)
        {
            if ((e = tag_editable(w, c, corp, json_string_value(v), &m)) != 0)
                return e;
            if (pass)
                m->deleted = 1;
            n++;
        }
    }
    return n > 0 ? 0 : E_BAD_VALUE;
}

static long
users_parties(const struct fixture_corp *c, const json_t *b)
{
    const json_t *v;
    size_t i;
    long e;

    json_array_foreach(json_object_get(b, "user"), i,
                       v) if ((e = member_ok(c, json_string_value(v))) !=
                              0) return e;
    json_array_foreach(
        json_object_get(b, "party"), i,
        v) if (fixture_department_visible(c, (long)json_integer_value(v)) !=
               1) return E_RANGE;
    return 0;
}

static long
contact_way(struct mock_writes *w, const struct fixture_corp *c, long corp,
            const char *op, const json_t *b, json_t **reply)
{
    const char *cid = jstr(b, "config_id");
    struct made *m;
    char qr[160];
    long e;

    if (strcmp(op, "add_contact_way") == 0) {
        json_int_t type = json_integer_value(json_object_get(b, "type"));
        json_int_t scene = json_integer_value(json_object_get(b, "scene"));

        if ((type != 1 && type != 2) || (scene != 1 && scene != 2) ||
            utf8_chars(jstr(b, "state")) > 30)
            return E_BAD_VALUE;
        if ((e = users_parties(c, b)) != 0)
            return e;
        m = made_add(w, corp, MADE_WAY, "");
        if (m == NULL)
            return -1;
        snprintf(qr, sizeof(qr), "https://p.qpic.cn/wwpic/mock/%s", m->id);
        *reply = json_pack("{s:s,s:s}", "config_id", m->id, "qr_code", qr);
        return *reply != NULL ? 0 : -1;
    }
    /* another app's config_id is as unknown to this app as a made-up one */
    m = made_find(w, corp, MADE_WAY, cid);
    if (m == NULL)
        return E_BAD_VALUE;
    if (strcmp(op, "get_contact_way") == 0) {
        snprintf(qr, sizeof(qr), "https://p.qpic.cn/wwpic/mock/%s", m->id);
        *reply = json_pack("{s:{s:s,s:i,s:i,s:s,s:[],s:[]}}", "contact_way",
                           "config_id", m->id, "type", 1, "scene", 2, "qr_code",
                           qr, "user", "party");
        return *reply != NULL ? 0 : -1;
    }
    if (strcmp(op, "update_contact_way") == 0)
        return users_parties(c, b);
    m->deleted = 1;
    return 0;
}

/* A media_id of corp uploaded within its 3 days? */
static int
media_known(const struct mock_writes *w, long corp, const char *id)
{
    size_t i, n = w->nmedia < MAX_MEDIA ? w->nmedia : MAX_MEDIA;

    for (i = 0; id != NULL && i < n; i++)
        if (w->media[i].corp == corp && strcmp(w->media[i].id, id) == 0)
            return now_ms() - w->media[i].created_ms <= MEDIA_MS;
    return 0;
}

/* Every image, video or file attachment names a media of corp (an image
 * may give a pic_url instead); 0, or WeCom's 40007. */
static long
attachments_ok(const struct mock_writes *w, long corp, const json_t *b)
{
    const json_t *a, *m;
    const char *t;
    size_t i;

    json_array_foreach(json_object_get(b, "attachments"), i, a)
    {
        t = jstr(a, "msgtype");
        if (t == NULL || (strcmp(t, "image") != 0 && strcmp(t, "video") != 0 &&
                          strcmp(t, "file") != 0))
            continue;
        m = json_object_get(a, t);
        if (strcmp(t, "image") == 0 && jstr(m, "media_id") == NULL &&
            jstr(m, "pic_url") != NULL)
            continue;
        if (!media_known(w, corp, jstr(m, "media_id")))
            return E_BAD_MEDIA;
    }
    return 0;
}

long
mock_write_media(struct mock_writes *w, long corp, const char *type,
                 const char *content_type, const char *body, size_t len,
                 json_t **reply)
{
    struct multipart_media m;
    struct media *md;
    char msg[160], at[24];
    enum errcode e;

    *reply = NULL;
    e = multipart_parse(content_type, body, len, &m, msg, sizeof(msg));
    if (e == ERRCODE_OK)
        e = multipart_media_check(type, &m, msg, sizeof(msg));
    if (e != ERRCODE_OK)
        return errcodes_code(e);
    md = &w->media[w->nmedia++ % MAX_MEDIA];
    md->corp = corp;
    md->created_ms = now_ms();
    new_id(w, "3m", md->id, sizeof(md->id));
    snprintf(at, sizeof(at), "%lld", md->created_ms / 1000);
    /* what the log shows of the body: never its bytes */
    *reply = json_pack(
        "{s:s,s:s,s:s,s:{s:s,s:s,s:I}}", "type", type, "media_id", md->id,
        "created_at", at, "mock_internal_media", "filename", m.filename,
        "content_type", m.content_type, "size", (json_int_t)m.len);
    return *reply != NULL ? 0 : -1;
}

static long
welcome(struct mock_writes *w, long corp, const json_t *b)
{
    const char *code = jstr(b, "welcome_code");
    size_t i, n = w->nwelcome < MAX_WELCOME ? w->nwelcome : MAX_WELCOME;

    if (json_array_size(json_object_get(b, "attachments")) > 9 ||
        (json_object_get(b, "text") == NULL &&
         json_object_get(b, "attachments") == NULL))
        return E_BAD_VALUE;
    if (attachments_ok(w, corp, b) != 0)
        return E_BAD_MEDIA;
    for (i = 0; code != NULL && i < n; i++) {
        struct welcome *c = &w->welcome[i];

        if (c->corp != corp || strcmp(c->code, code) != 0)
            continue;
        if (now_ms() - c->minted_ms > WELCOME_MS)
            return E_WELCOME;
        if (c->used)
            return E_WELCOME_US;
        c->used = 1;
        return 0;
    }
    return E_WELCOME;
}

static const struct {
    const char *op;
    const char *perm;
} apis[] = {
    {"remark", "externalcontact:base:base"},
    {"mark_tag", "externalcontact:base:base"},
    {"get_corp_tag_list", "externalcontact:contact:tag"},
    {"add_corp_tag", "externalcontact:contact:tag"},
    {"edit_corp_tag", "externalcontact:contact:tag"},
    {"del_corp_tag", "externalcontact:contact:tag"},
    {"send_welcome_msg", "externalcontact:contact:welcome_msg"},
    {"add_msg_template", "externalcontact:contact:group_msg"},
    {"add_contact_way", "externalcontact:contact:qrcode"},
    {"get_contact_way", "externalcontact:contact:qrcode"},
    {"update_contact_way", "externalcontact:contact:qrcode"},
    {"del_contact_way", "externalcontact:contact:qrcode"},
};

static const char *
op_of(const char *path)
{
    static const char pre[] = "/cgi-bin/externalcontact/";
    size_t i;

    if (path == NULL || strncmp(path, pre, sizeof(pre) - 1) != 0)
        return NULL;
    for (i = 0; i < sizeof(apis) / sizeof(apis[0]); i++)
        if (strcmp(path + sizeof(pre) - 1, apis[i].op) == 0)
            return apis[i].op;
    return NULL;
}

int
mock_write_path(const char *path)
{
    return op_of(path) != NULL;
}

long
mock_write_call(struct mock_writes *w, const struct fixture_corp *c, long corp,
                const char *path, const json_t *b, json_t **reply)
{
    const char *op = op_of(path);
    struct made *m;
    json_t *groups;
    size_t i;
    long e;

    *reply = NULL;
    if (op == NULL)
        return E_FORBIDDEN;
    for (i = 0; i < sizeof(apis) / sizeof(apis[0]); i++)
        if (strcmp(apis[i].op, op) == 0 && (e = need(c, apis[i].perm)) != 0)
            return e;
    if (strcmp(op, "remark") == 0)
        return customer_write(w, c, corp, b, 0);
    if (strcmp(op, "mark_tag") == 0)
        return customer_write(w, c, corp, b, 1);
    if (strcmp(op, "get_corp_tag_list") == 0) {
        groups = json_array();
        for (i = 0; groups != NULL && i < w->nmade; i++)
            if (w->made[i].kind == MADE_GROUP && w->made[i].corp == corp &&
                !w->made[i].deleted)
                json_array_append_new(groups, tag_group_json(w, &w->made[i]));
        *reply = json_pack("{s:o}", "tag_group", groups);
        return *reply != NULL ? 0 : -1;
    }
    if (strcmp(op, "add_corp_tag") == 0)
        return add_corp_tag(w, corp, b, reply);
    if (strcmp(op, "edit_corp_tag") == 0) {
        e = tag_editable(w, c, corp, jstr(b, "id"), &m);
        if (e == 0 && jstr(b, "name") != NULL)
            snprintf(m->name, sizeof(m->name), "%s", jstr(b, "name"));
        return e;
    }
    if (strcmp(op, "del_corp_tag") == 0)
        return del_corp_tag(w, c, corp, b);
    if (strcmp(op, "send_welcome_msg") == 0)
        return welcome(w, corp, b);
    if (strcmp(op, "add_msg_template") == 0) {
        if (jstr(b, "sender") != NULL &&
            (e = member_ok(c, jstr(b, "sender"))) != 0)
            return e;
        if (json_array_size(json_object_get(b, "external_userid")) > 10000)
            return E_BAD_VALUE;
        if ((e = attachments_ok(w, corp, b)) != 0)
            return e;
        *reply = json_pack("{s:[],s:s}", "fail_list", "msgid", "msgmock");
        return *reply != NULL ? 0 : -1;
    }
    return contact_way(w, c, corp, op, b, reply);
}

enum brk_err
mock_write_welcome_code(struct mock_writes *w, long corp, char *buf, size_t len)
{
    struct welcome *c = &w->welcome[w->nwelcome % MAX_WELCOME];

    memset(c, 0, sizeof(*c));
    c->corp = corp;
    c->minted_ms = now_ms();
    new_id(w, "WC", c->code, sizeof(c->code));
    w->nwelcome++;
    if (strlen(c->code) >= len)
        return BRK_ERR_TOOBIG;
    memcpy(buf, c->code, strlen(c->code) + 1);
    return BRK_OK;
}
