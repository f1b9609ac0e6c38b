/*
 * The generated enterprise (see fixture.h). Structure (departments, member
 * placement, tags, customers, chats) is drawn once from a seeded PRNG;
 * every text attribute is derived at render time from a per-record hash,
 * so a 20,000-member corp stays small and renders fast.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define NCTAG        6 /* corp customer tags per corp */
#define MAX_TAG_USER 5
#define MAX_TAG_PART 2
#define MAX_FOLLOW   3
#define MAX_CHAT_MEM 8
#define JW_DEPTH     16
#define CURSOR_MAX   32
#define ID_SIZE      40

/*---- Tables -------------------------------------------------------------*/

static const char *const surname[][2] = {
    {"王", "wang"}, {"李", "li"},   {"张", "zhang"}, {"刘", "liu"},
    {"陈", "chen"}, {"杨", "yang"}, {"黄", "huang"}, {"赵", "zhao"},
    {"吴", "wu"},   {"周", "zhou"}, {"徐", "xu"},    {"孙", "sun"},
    {"马", "ma"},   {"朱", "zhu"},  {"胡", "hu"},    {"郭", "guo"},
    {"何", "he"},   {"林", "lin"},  {"高", "gao"},   {"罗", "luo"},
};
static const char *const given[] = {
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋",
    "勇", "艳", "杰", "娟", "涛", "明", "超", "秀", "霞", "平",
    "刚", "桂", "英", "华", "玉", "兰", "萍", "红", "鹏", "飞",
};
static const char *const position[] = {
    "产品经理", "后台工程师", "前端工程师", "测试工程师", "销售代表",
    "客户经理", "人事专员",   "财务主管",   "运营专员",   "设计师",
};
static const char *const dept_name[][2] = {
    {"研发中心", "RD"},       {"销售部", "Sales"},   {"市场部", "Marketing"},
    {"人力资源部", "HR"},     {"财务部", "Finance"}, {"客服中心", "Service"},
    {"运营部", "Operations"}, {"法务部", "Legal"},   {"采购部", "Purchasing"},
    {"行政部", "Admin"},
};
static const char *const city[][2] = {
    {"北京", "北京市"},       {"上海", "上海市"},
    {"广州", "广东省广州市"}, {"深圳", "广东省深圳市"},
    {"杭州", "浙江省杭州市"}, {"成都", "四川省成都市"},
    {"武汉", "湖北省武汉市"}, {"南京", "江苏省南京市"},
};
static const char *const brand[] = {
    "云帆科技", "星河贸易", "青松制造", "明德教育",
    "华夏物流", "锦程信息", "海纳咨询", "长风医疗",
};
static const char *const street[] = {
    "新港中路", "人民路", "解放大道", "中山路", "建设路", "滨江大道",
};
static const char *const hobby[] = {
    "旅游", "摄影", "羽毛球", "阅读", "烹饪", "登山", "围棋", "游泳",
};
static const char *const tag_name[] = {
    "乒乓球协会", "销售精英", "新员工", "管理层", "技术委员会", "志愿者",
};
static const char *const ctag_def[NCTAG][2] = {
    {"客户等级", "重要客户"}, {"客户等级", "普通客户"},
    {"客户等级", "潜在客户"}, {"客户来源", "展会"},
    {"客户来源", "官网"},     {"客户来源", "转介绍"},
};
static const char *const description[] = {
    "对接采购事务", "负责技术选型", "年度框架合同",
    "关注售后服务", "老客户转介绍", "",
};
static const char *const chat_name[] = {
    "销售客服群", "VIP客户群", "产品交流群", "售后服务群", "新品体验群",
};
static const char *const notice[] = {
    "文明沟通,拒绝脏话",
    "本群用于产品答疑",
    "请勿发布广告",
    "",
};

/*---- Generated records --------------------------------------------------*/

struct f_dept {
    long parentid;
    long order;
    long leader; /* member index, -1 when the department is empty */
    uint64_t h;
};

struct f_member {
    uint64_t h;
    long dept[3];
    long order[3];
    long direct_leader; /* member index or -1 */
    unsigned char ndept;
    unsigned char leader_mask; /* bit k: leader of dept[k] */
    unsigned char status;
    unsigned char follows; /* follows at least one customer */
};

struct f_tag {
    uint64_t h;
    long user[MAX_TAG_USER];
    long party[MAX_TAG_PART];
    unsigned char nuser, nparty;
};

struct f_follow {
    long member;
    long oper;
    uint64_t h;
};

struct f_customer {
    uint64_t h;
    char id[ID_SIZE];
    struct f_follow follow[MAX_FOLLOW];
    unsigned char nfollow;
    unsigned char type;
};

struct f_chat_member {
    long idx;          /* member or customer index */
    unsigned char ext; /* 1: customer */
};

struct f_chat {
    uint64_t h;
    char id[ID_SIZE];
    long owner;
    long create_time;
    struct f_chat_member mem[MAX_CHAT_MEM];
    long admin; /* member index or -1 */
    unsigned char nmem;
    unsigned char status;
};

struct f_idx {
    const char *id;
    long i;
};

struct fixture_corp {
    uint64_t h;
    long index;
    struct fixture_sizes sz;
    char corpid[32];
    char name[96];
    char full_name[128];
    const char *city;
    const char *location;
    struct f_dept *dept; /* dept[id - 1] */
    struct f_member *mem;
    struct f_tag *tag; /* tag[tagid - 1] */
    char ctag_id[NCTAG][ID_SIZE];
    struct f_customer *cust;
    struct f_idx *cust_by_id;
    struct f_chat *chat;
    struct f_idx *chat_by_id;
    struct fixture_privilege priv;
    char **perm;
    size_t nperm;
    long perm_expiry;
    int strict;
    long auth_mode;
    long *auth_mem; /* member indexes, in the order given */
    size_t nauth_mem;
    long *app_tag; /* tag ids the app created */
    size_t napp_tag;
    long *admin; /* member indexes, with admin_type[k] */
    long *admin_type;
    size_t nadmin;
    /* the visible range, recomputed whenever the grant changes */
    unsigned char *vis_dept; /* [id - 1]: in the range's subtrees */
    unsigned char *vis_mem;  /* [i]: member in the range */
    long nvis_mem;
};

/*---- Hashing and the PRNG -----------------------------------------------*/

/* splitmix64's finaliser: a good 64-bit mixer */
static uint64_t
mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t
hash3(uint64_t a, uint64_t b, uint64_t c)
{
    return mix(mix(mix(a) ^ b) ^ c);
}

/* Attribute k of a record with hash h. */
static uint64_t
attr(uint64_t h, unsigned k)
{
    return mix(h ^ ((uint64_t)k * 0xd1342543de82ef95ULL));
}

static uint64_t
rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    return mix(*s);
}

/* Uniform enough in [0, n) for n > 0. */
static long
rng_below(uint64_t *s, long n)
{
    return (long)(rng_next(s) % (uint64_t)n);
}

#define PICK(table, h) ((table)[(h) % nitems(table)])

/*---- JSON writer --------------------------------------------------------*/

/* A streaming writer over a dynbuf; the first error sticks. */
struct jw {
    struct dynbuf *d;
    enum brk_err err;
    int depth;
    unsigned char more[JW_DEPTH];
};

static void
jw_put(struct jw *w, const char *s, size_t n)
{
    if (w->err == BRK_OK)
        w->err = dynbuf_add(w->d, s, n);
}

static void
jw_escaped(struct jw *w, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s;
    char esc[6] = {'\\', 'u', '0', '0', 0, 0};

    jw_put(w, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        jw_put(w, run, (size_t)(s - run));
        if (ch == '"' || ch == '\\') {
            esc[1] = (char)ch;
            jw_put(w, esc, 2);
            esc[1] = 'u';
        } else {
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            jw_put(w, esc, 6);
        }
        run = s + 1;
    }
    jw_put(w, run, (size_t)(s - run));
    jw_put(w, "\"", 1);
}

/* Separator and key (NULL inside arrays). */
static void
jw_item(struct jw *w, const char *key)
{
    if (w->more[w->depth])
        jw_put(w, ",", 1);
    w->more[w->depth] = 1;
    if (key != NULL) {
        jw_escaped(w, key);
        jw_put(w, ":", 1);
    }
}

static void
jw_str(struct jw *w, const char *key, const char *v)
{
    jw_item(w, key);
    jw_escaped(w, v);
}

static void BRK_PRINTF(3, 4)
    jw_strf(struct jw *w, const char *key, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        if (w->err == BRK_OK)
            w->err = BRK_ERR_TOOBIG;
        return;
    }
    jw_str(w, key, buf);
}

static void
jw_long(struct jw *w, const char *key, long v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%ld", v);

    jw_item(w, key);
    jw_put(w, buf, (size_t)n);
}

static void
jw_bool(struct jw *w, const char *key, int v)
{
    jw_item(w, key);
    if (v)
        jw_put(w, "true", 4);
    else
        jw_put(w, "false", 5);
}

static void
jw_open(struct jw *w, const char *key, int obj)
{
    jw_item(w, key);
    jw_put(w, obj ? "{" : "[", 1);
    if (w->depth + 1 >= JW_DEPTH) {
        if (w->err == BRK_OK)
            w->err = BRK_ERR_INVAL;
        return;
    }
    w->more[++w->depth] = 0;
}

static void
jw_close(struct jw *w, int obj)
{
    if (w->depth > 0)
        w->depth--;
    jw_put(w, obj ? "}" : "]", 1);
}

/* Start a reply object: {"errcode":0,"errmsg":"ok" */
static void
jw_begin(struct jw *w, struct dynbuf *out, int with_errcode)
{
    memset(w, 0, sizeof(*w));
    w->d = out;
    jw_put(w, "{", 1);
    if (with_errcode) {
        jw_long(w, "errcode", 0);
        jw_str(w, "errmsg", "ok");
    }
}

static enum brk_err
jw_end(struct jw *w, const char *note)
{
    jw_str(w, "mock_internal_note", note);
    jw_close(w, 1);
    return w->err;
}

/*---- Ids and lookups ----------------------------------------------------*/

static void
fmt_userid(char *buf, size_t cap, long i)
{
    snprintf(buf, cap, "u%05ld", i + 1);
}

static void
fmt_hexid(char *buf, size_t cap, const char *prefix, uint64_t h)
{
    snprintf(buf, cap, "%s%016" PRIx64 "%014" PRIx64, prefix, attr(h, 901),
             attr(h, 902) >> 8);
}

/* Member index of a userid "u%05ld", or -1. */
static long
member_find(const struct fixture_corp *c, const char *userid)
{
    char buf[32];
    char *end;
    long n;

    if (userid == NULL || userid[0] != 'u' || userid[1] < '0' ||
        userid[1] > '9')
        return -1;
    n = strtol(userid + 1, &end, 10);
    if (*end != '\0' || n < 1 || n > c->sz.members)
        return -1;
    /* exactly the generated spelling: "u1" is not "u00001" */
    fmt_userid(buf, sizeof(buf), n - 1);
    return strcmp(buf, userid) == 0 ? n - 1 : -1;
}

static int
idx_cmp(const void *a, const void *b)
{
    return strcmp(((const struct f_idx *)a)->id, ((const struct f_idx *)b)->id);
}

static long
idx_find(const struct f_idx *v, long n, const char *id)
{
    struct f_idx key = {id, 0};
    const struct f_idx *hit;

    if (id == NULL || n == 0)
        return -1;
    hit = bsearch(&key, v, (size_t)n, sizeof(*v), idx_cmp);
    return hit ? hit->i : -1;
}

/* Cursor "mc<offset>"; NULL or "" is 0. Returns -1 when malformed. */
static long
cursor_parse(const char *cursor, long max)
{
    char *end;
    long n;

    if (cursor == NULL || cursor[0] == '\0')
        return 0;
    if (cursor[0] != 'm' || cursor[1] != 'c' || cursor[2] < '0' ||
        cursor[2] > '9')
        return -1;
    n = strtol(cursor + 2, &end, 10);
    if (*end != '\0' || n < 0 || n > max)
        return -1;
    return n;
}

static void
jw_cursor(struct jw *w, long next)
{
    char buf[CURSOR_MAX];

    if (next < 0)
        buf[0] = '\0';
    else
        snprintf(buf, sizeof(buf), "mc%ld", next);
    jw_str(w, "next_cursor", buf);
}

/*
 * Mark department id and its subtree (0: every department). Parents always
 * have smaller ids than their children, so one pass in id order suffices.
 * Owned: brk_free.
 */
static unsigned char *
subtree_marks(const struct fixture_corp *c, long id)
{
    unsigned char *m = brk_calloc((size_t)c->sz.departments, 1);
    long j;

    if (m == NULL)
        return NULL;
    for (j = 0; j < c->sz.departments; j++) {
        long p = c->dept[j].parentid;

        m[j] = id == 0 || j + 1 == id || (p >= id && p > 0 && m[p - 1]);
    }
    return m;
}

static int
member_in_marks(const struct fixture_corp *c, long i, const unsigned char *m)
{
    const struct f_member *u = &c->mem[i];
    int k;

    for (k = 0; k < u->ndept; k++)
        if (m[u->dept[k] - 1])
            return 1;
    return 0;
}

/*---- The grant ----------------------------------------------------------*/

/* What the corp's app permissions allow (wecom-protocol §2.10). */
struct grant {
    int contacts; /* contact:base:base or contact:edit:all */
    int edit;     /* contact:edit:all: the contacts app */
    int arch;     /* corp_arch:base:base: every department id */
    int leader;   /* corp_arch:member:direct_leader */
    int external; /* externalcontact:base:base */
    int gender, avatar, qrcode, mobile, email, biz_mail, address;
};

static int
perm_in(char *const *perm, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(perm[i], name) == 0)
            return 1;
    return 0;
}

static void
grant_of(const struct fixture_corp *c, struct grant *g)
{
    g->edit = perm_in(c->perm, c->nperm, "contact:edit:all");
    g->contacts = g->edit || perm_in(c->perm, c->nperm, "contact:base:base");
    g->arch = perm_in(c->perm, c->nperm, "corp_arch:base:base");
    g->leader = perm_in(c->perm, c->nperm, "corp_arch:member:direct_leader");
    g->external = perm_in(c->perm, c->nperm, "externalcontact:base:base");
    g->gender = perm_in(c->perm, c->nperm, "contact:sensitive:gender");
    g->avatar = perm_in(c->perm, c->nperm, "contact:sensitive:avatar");
    g->qrcode = perm_in(c->perm, c->nperm, "contact:sensitive:qrcode");
    g->mobile = perm_in(c->perm, c->nperm, "contact:sensitive:mobile");
    g->email = perm_in(c->perm, c->nperm, "contact:sensitive:email");
    g->biz_mail = perm_in(c->perm, c->nperm, "contact:sensitive:biz_mail");
    g->address = perm_in(c->perm, c->nperm, "contact:sensitive:address");
}

static void
mark_parties(const struct fixture_corp *c, unsigned char *vd, const long *v,
             size_t n)
{
    size_t k;

    for (k = 0; k < n; k++)
        if (v[k] >= 1 && v[k] <= c->sz.departments)
            vd[v[k] - 1] = 1;
}

static void
mark_tag_parties(const struct fixture_corp *c, unsigned char *vd, const long *v,
                 size_t n)
{
    size_t k;

    for (k = 0; k < n; k++)
        if (v[k] >= 1 && v[k] <= c->sz.tags)
            mark_parties(c, vd, c->tag[v[k] - 1].party,
                         c->tag[v[k] - 1].nparty);
}

static void
mark_users(const struct fixture_corp *c, unsigned char *vm, char *const *v,
           size_t n)
{
    size_t k;

    for (k = 0; k < n; k++) {
        long m = member_find(c, v[k]);

        if (m >= 0)
            vm[m] = 1;
    }
}

static void
mark_tag_users(const struct fixture_corp *c, unsigned char *vm, const long *v,
               size_t n)
{
    size_t k;
    int u;

    for (k = 0; k < n; k++)
        if (v[k] >= 1 && v[k] <= c->sz.tags)
            for (u = 0; u < c->tag[v[k] - 1].nuser; u++)
                vm[c->tag[v[k] - 1].user[u]] = 1;
}

/*
 * The visible range of privilege p as marks over departments and members
 * (wecom-protocol §3.3): the subtrees of allow_party, extra_party and the
 * departments of allow_tag and extra_tag; their members, the listed
 * members and the tags' members. In member authorization (mode) the range
 * is the members am[0..nam) and department 1. Both marks owned (brk_free);
 * BRK_ERR_NOMEM.
 */
static enum brk_err
range_build(const struct fixture_corp *c, const struct fixture_privilege *p,
            long mode, const long *am, size_t nam, unsigned char **vd_out,
            unsigned char **vm_out, long *nvis)
{
    unsigned char *vd = brk_calloc((size_t)c->sz.departments, 1);
    unsigned char *vm = brk_calloc((size_t)c->sz.members, 1);
    enum brk_err err = BRK_ERR_NOMEM;
    long j, i, n = 0;
    size_t k;

    if (vd == NULL || vm == NULL)
        goto out;
    if (mode == FIXTURE_AUTH_MEMBER) {
        vd[0] = 1;
        for (k = 0; k < nam; k++)
            vm[am[k]] = 1;
    } else {
        mark_parties(c, vd, p->allow_party, p->nallow_party);
        mark_parties(c, vd, p->extra_party, p->nextra_party);
        mark_tag_parties(c, vd, p->allow_tag, p->nallow_tag);
        mark_tag_parties(c, vd, p->extra_tag, p->nextra_tag);
        /* parents have smaller ids: one pass closes the subtrees */
        for (j = 1; j < c->sz.departments; j++)
            if (c->dept[j].parentid > 0 && vd[c->dept[j].parentid - 1])
                vd[j] = 1;
        for (i = 0; i < c->sz.members; i++)
            vm[i] = (unsigned char)member_in_marks(c, i, vd);
        mark_users(c, vm, p->allow_user, p->nallow_user);
        mark_users(c, vm, p->extra_user, p->nextra_user);
        mark_tag_users(c, vm, p->allow_tag, p->nallow_tag);
        mark_tag_users(c, vm, p->extra_tag, p->nextra_tag);
    }
    for (i = 0; i < c->sz.members; i++)
        n += vm[i];
    *vd_out = vd;
    *vm_out = vm;
    *nvis = n;
    vd = vm = NULL;
    err = BRK_OK;
out:
    brk_free(vd);
    brk_free(vm);
    return err;
}

static int
has_long(const long *v, size_t n, long x)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

/* tag/get may read the tag: in the range or created by the app. */
static int
tag_allowed(const struct fixture_corp *c, long t)
{
    const struct fixture_privilege *p = &c->priv;

    if (has_long(c->app_tag, c->napp_tag, t))
        return 1;
    return c->auth_mode != FIXTURE_AUTH_MEMBER &&
           (has_long(p->allow_tag, p->nallow_tag, t) ||
            has_long(p->extra_tag, p->nextra_tag, t));
}

/* The app sees department id (1-based) in department lists: in the range,
 * or every department for the contacts app and with corp_arch. */
static int
dept_listed(const struct fixture_corp *c, const struct grant *g, long id)
{
    return g->edit || g->arch || c->vis_dept[id - 1];
}

/* Member i is in department id as user/simplelist sees it: in member
 * authorization every member hangs off department 1. */
static int
member_in_dept(const struct fixture_corp *c, long i, long id)
{
    const struct f_member *u = &c->mem[i];
    int k;

    if (c->strict && c->auth_mode == FIXTURE_AUTH_MEMBER)
        return id == 1;
    for (k = 0; k < u->ndept; k++)
        if (u->dept[k] == id)
            return 1;
    return 0;
}

/*---- Generation ---------------------------------------------------------*/

static int
sizes_ok(const struct fixture_sizes *s)
{
    return s->departments >= 3 && s->departments <= FIXTURE_MAX_DEPARTMENTS &&
           s->members >= 3 && s->members <= FIXTURE_MAX_MEMBERS &&
           s->tags >= 1 && s->tags <= FIXTURE_MAX_TAGS && s->customers >= 0 &&
           s->customers <= FIXTURE_MAX_CUSTOMERS && s->chats >= 0 &&
           s->chats <= FIXTURE_MAX_CHATS;
}

static void
gen_departments(struct fixture_corp *c, uint64_t *rs)
{
    long j;

    for (j = 0; j < c->sz.departments; j++) {
        struct f_dept *d = &c->dept[j];

        d->h = hash3(c->h, 1, (uint64_t)j);
        /* 2 and 3 hang off the root so the default range (subtree of 2)
         * never covers department 3 */
        d->parentid = j == 0 ? 0 : j <= 2 ? 1 : 1 + rng_below(rs, j);
        d->order = 100000000 - j * 1000 + rng_below(rs, 1000);
        d->leader = -1;
    }
}

static void
gen_members(struct fixture_corp *c, uint64_t *rs)
{
    long i, D = c->sz.departments;
    int k;

    for (i = 0; i < c->sz.members; i++) {
        struct f_member *u = &c->mem[i];
        long r;

        u->h = hash3(c->h, 2, (uint64_t)i);
        if (i <= 2) {
            /* u00001 inside the default range, u00002 and u00003 in
             * department 3, outside it; u00003 is the allow_user */
            u->ndept = 1;
            u->dept[0] = i == 0 ? 2 : 3;
        } else {
            r = rng_below(rs, 10);
            u->ndept = r < 7 ? 1 : r < 9 ? 2 : 3;
            if (u->ndept > D)
                u->ndept = (unsigned char)D;
            for (k = 0; k < u->ndept; k++) {
                long d;

                do
                    d = 1 + rng_below(rs, D);
                while (has_long(u->dept, (size_t)k, d));
                u->dept[k] = d;
            }
        }
        for (k = 0; k < u->ndept; k++)
            u->order[k] = rng_below(rs, 100000);
        r = rng_below(rs, 20);
        u->status = i <= 2 || r < 17 ? 1 : r == 17 ? 2 : r == 18 ? 4 : 5;
        u->direct_leader = -1;
    }
    /* a department's leader is its first member */
    for (i = 0; i < c->sz.members; i++) {
        struct f_member *u = &c->mem[i];

        for (k = 0; k < u->ndept; k++) {
            struct f_dept *d = &c->dept[u->dept[k] - 1];

            if (d->leader < 0) {
                d->leader = i;
                u->leader_mask |= (unsigned char)(1u << k);
            }
        }
    }
    for (i = 0; i < c->sz.members; i++) {
        struct f_member *u = &c->mem[i];
        const struct f_dept *d = &c->dept[u->dept[0] - 1];
        long l = d->leader;

        if (l == i && d->parentid > 0)
            l = c->dept[d->parentid - 1].leader;
        u->direct_leader = l == i ? -1 : l;
    }
}

static enum brk_err
gen_tags(struct fixture_corp *c, uint64_t *rs)
{
    unsigned char *in2 = subtree_marks(c, 2);
    long t, j, n2 = 0, tries;

    if (in2 == NULL)
        return BRK_ERR_NOMEM;
    for (j = 0; j < c->sz.departments; j++)
        n2 += in2[j];
    for (t = 0; t < c->sz.tags; t++) {
        struct f_tag *g = &c->tag[t];
        long want = 1 + rng_below(rs, MAX_TAG_USER);
        long np = rng_below(rs, MAX_TAG_PART + 1);

        g->h = hash3(c->h, 3, (uint64_t)t);
        for (tries = 0; g->nuser < want && tries < 4 * MAX_TAG_USER; tries++) {
            long m = rng_below(rs, c->sz.members);

            /* tag 1 is in the default range: keep u00002 out of it */
            if ((t == 0 && m == 1) || has_long(g->user, g->nuser, m))
                continue;
            g->user[g->nuser++] = m;
        }
        for (tries = 0; g->nparty < np && tries < 4 * MAX_TAG_PART; tries++) {
            long d = 1 + rng_below(rs, c->sz.departments);

            /* tag 1's departments stay inside department 2's subtree */
            if (t == 0) {
                long pick = rng_below(rs, n2);

                for (d = 1; d <= c->sz.departments; d++)
                    if (in2[d - 1] && pick-- == 0)
                        break;
            }
            if (!has_long(g->party, g->nparty, d))
                g->party[g->nparty++] = d;
        }
    }
    brk_free(in2);
    return BRK_OK;
}

static void
gen_customers(struct fixture_corp *c, uint64_t *rs)
{
    long i, M = c->sz.members;
    int k;

    for (k = 0; k < NCTAG; k++)
        fmt_hexid(c->ctag_id[k], ID_SIZE, "et", hash3(c->h, 4, (uint64_t)k));
    for (i = 0; i < c->sz.customers; i++) {
        struct f_customer *e = &c->cust[i];
        long want;

        e->h = hash3(c->h, 5, (uint64_t)i);
        fmt_hexid(e->id, sizeof(e->id), "wm", e->h);
        e->type = rng_below(rs, 3) == 0 ? 2 : 1;
        /* customer 1 follows u00001 (in range), customer 2 only u00002 */
        want = i <= 1 ? 1 : 1 + rng_below(rs, MAX_FOLLOW);
        while (e->nfollow < want) {
            long m = i <= 1 ? i : rng_below(rs, M);
            struct f_follow *f;
            int dup = 0;

            for (k = 0; k < e->nfollow; k++)
                dup |= e->follow[k].member == m;
            if (dup) {
                want--;
                continue;
            }
            f = &e->follow[e->nfollow++];
            f->member = m;
            f->oper = rng_below(rs, 4) == 0 ? rng_below(rs, M) : m;
            f->h = hash3(e->h, 6, (uint64_t)e->nfollow);
            c->mem[m].follows = 1;
        }
        c->cust_by_id[i].id = e->id;
        c->cust_by_id[i].i = i;
    }
    qsort(c->cust_by_id, (size_t)c->sz.customers, sizeof(struct f_idx),
          idx_cmp);
}

static void
gen_chats(struct fixture_corp *c, uint64_t *rs)
{
    long i, M = c->sz.members, C = c->sz.customers;
    int k;

    for (i = 0; i < c->sz.chats; i++) {
        struct f_chat *g = &c->chat[i];
        long nm, ne, r;

        g->h = hash3(c->h, 7, (uint64_t)i);
        fmt_hexid(g->id, sizeof(g->id), "wr", g->h);
        /* chat 1 is owned by u00001 (in range), chat 2 by u00002 */
        g->owner = i <= 1 ? i : rng_below(rs, M);
        r = rng_below(rs, 10);
        g->status = i <= 1 || r < 7 ? 0 : (unsigned char)(r - 6);
        g->create_time = 1577836800 + rng_below(rs, 126230400);
        g->mem[g->nmem].idx = g->owner;
        g->mem[g->nmem++].ext = 0;
        nm = rng_below(rs, 4);
        ne = C > 0 ? 1 + rng_below(rs, 3) : 0;
        while (nm-- > 0) {
            long m = rng_below(rs, M);
            int dup = 0;

            for (k = 0; k < g->nmem; k++)
                dup |= !g->mem[k].ext && g->mem[k].idx == m;
            if (!dup) {
                g->mem[g->nmem].idx = m;
                g->mem[g->nmem++].ext = 0;
            }
        }
        g->admin = g->nmem > 1 ? g->mem[1].idx : -1;
        while (ne-- > 0) {
            long e = rng_below(rs, C);
            int dup = 0;

            for (k = 0; k < g->nmem; k++)
                dup |= g->mem[k].ext && g->mem[k].idx == e;
            if (!dup) {
                g->mem[g->nmem].idx = e;
                g->mem[g->nmem++].ext = 1;
            }
        }
        c->chat_by_id[i].id = g->id;
        c->chat_by_id[i].i = i;
    }
    qsort(c->chat_by_id, (size_t)c->sz.chats, sizeof(struct f_idx), idx_cmp);
}

static void
privilege_clear(struct fixture_privilege *p)
{
    size_t i;

    for (i = 0; p->allow_user != NULL && i < p->nallow_user; i++)
        brk_free(p->allow_user[i]);
    for (i = 0; p->extra_user != NULL && i < p->nextra_user; i++)
        brk_free(p->extra_user[i]);
    brk_free(p->allow_party);
    brk_free(p->allow_user);
    brk_free(p->allow_tag);
    brk_free(p->extra_party);
    brk_free(p->extra_user);
    brk_free(p->extra_tag);
    memset(p, 0, sizeof(*p));
}

static void
perms_clear(char **perm, size_t n)
{
    size_t i;

    for (i = 0; perm != NULL && i < n; i++)
        brk_free(perm[i]);
    brk_free(perm);
}

enum brk_err
fixture_corp_new(uint64_t seed, long index, const struct fixture_sizes *sizes,
                 struct fixture_corp **out)
{
    static const char *const perms[] = {"contact:base:base",
                                        "externalcontact:base:base"};
    struct fixture_corp *c = NULL;
    struct fixture_privilege p;
    long allow_party = 2, allow_tag = 1;
    char user3[16];
    char *allow_user[] = {user3};
    static const char *const admin[] = {"u00001"};
    static const long admin_type[] = {1};
    uint64_t rs;
    enum brk_err err = BRK_ERR_NOMEM;
    size_t nc, nk;

    if (sizes == NULL || !sizes_ok(sizes) || index < 1 ||
        index > FIXTURE_MAX_CORPS)
        return BRK_ERR_INVAL;
    c = brk_calloc(1, sizeof(*c));
    if (c == NULL)
        return BRK_ERR_NOMEM;
    c->index = index;
    c->sz = *sizes;
    c->h = hash3(seed, 0x636f7270, (uint64_t)index);
    rs = c->h;
    nc = (size_t)sizes->customers;
    nk = (size_t)sizes->chats;
    c->dept = brk_calloc((size_t)sizes->departments, sizeof(*c->dept));
    c->mem = brk_calloc((size_t)sizes->members, sizeof(*c->mem));
    c->tag = brk_calloc((size_t)sizes->tags, sizeof(*c->tag));
    c->cust = brk_calloc(nc ? nc : 1, sizeof(*c->cust));
    c->cust_by_id = brk_calloc(nc ? nc : 1, sizeof(*c->cust_by_id));
    c->chat = brk_calloc(nk ? nk : 1, sizeof(*c->chat));
    c->chat_by_id = brk_calloc(nk ? nk : 1, sizeof(*c->chat_by_id));
    if (c->dept == NULL || c->mem == NULL || c->tag == NULL ||
        c->cust == NULL || c->cust_by_id == NULL || c->chat == NULL ||
        c->chat_by_id == NULL)
        goto out;

    snprintf(c->corpid, sizeof(c->corpid), "wwmockcorp%04ld", index);
    c->city = PICK(city, attr(c->h, 1))[0];
    c->location = PICK(city, attr(c->h, 1))[1];
    snprintf(c->name, sizeof(c->name), "模拟企业%ld·%s", index,
             PICK(brand, attr(c->h, 2)));
    snprintf(c->full_name, sizeof(c->full_name), "%s%s有限公司", c->city,
             PICK(brand, attr(c->h, 2)));

    gen_departments(c, &rs);
    gen_members(c, &rs);
    err = gen_tags(c, &rs);
    if (err)
        goto out;
    gen_customers(c, &rs);
    gen_chats(c, &rs);

    memset(&p, 0, sizeof(p));
    fmt_userid(user3, sizeof(user3), 2);
    p.level = 1;
    p.allow_party = &allow_party;
    p.nallow_party = 1;
    p.allow_user = allow_user;
    p.nallow_user = 1;
    p.allow_tag = &allow_tag;
    p.nallow_tag = 1;
    err = fixture_corp_set_privilege(c, &p);
    if (err)
        goto out;
    err = fixture_corp_set_permissions(c, perms, nitems(perms),
                                       FIXTURE_PERM_EXPIRY);
    if (err)
        goto out;
    err = fixture_corp_set_admins(c, admin, admin_type, 1);
    if (err)
        goto out;
    *out = c;
    c = NULL;
out:
    fixture_corp_free(c);
    return err;
}

void
fixture_corp_free(struct fixture_corp *c)
{
    if (c == NULL)
        return;
    privilege_clear(&c->priv);
    perms_clear(c->perm, c->nperm);
    brk_free(c->auth_mem);
    brk_free(c->app_tag);
    brk_free(c->admin);
    brk_free(c->admin_type);
    brk_free(c->vis_dept);
    brk_free(c->vis_mem);
    brk_free(c->dept);
    brk_free(c->mem);
    brk_free(c->tag);
    brk_free(c->cust);
    brk_free(c->cust_by_id);
    brk_free(c->chat);
    brk_free(c->chat_by_id);
    brk_free(c);
}

/*---- Accessors ----------------------------------------------------------*/

const char *
fixture_corp_id(const struct fixture_corp *c)
{
    return c->corpid;
}

const char *
fixture_corp_name(const struct fixture_corp *c)
{
    return c->name;
}

long
fixture_corp_member_count(const struct fixture_corp *c)
{
    return c->sz.members;
}

long
fixture_corp_customer_count(const struct fixture_corp *c)
{
    return c->sz.customers;
}

long
fixture_corp_chat_count(const struct fixture_corp *c)
{
    return c->sz.chats;
}

/* Index of the member with this userid (exact spelling), or -1. */
long
fixture_member_index(const struct fixture_corp *c, const char *userid)
{
    return member_find(c, userid);
}

static enum brk_err
copy_id(const char *id, char *buf, size_t cap)
{
    size_t n = strlen(id);

    if (n >= cap)
        return BRK_ERR_INVAL;
    memcpy(buf, id, n + 1);
    return BRK_OK;
}

/*
 * Write member i's userid into buf. Returns BRK_ERR_INVAL when i is out of
 * range or buf too small.
 */
enum brk_err
fixture_member_userid(const struct fixture_corp *c, long i, char *buf,
                      size_t cap)
{
    char tmp[32];

    if (i < 0 || i >= c->sz.members)
        return BRK_ERR_INVAL;
    fmt_userid(tmp, sizeof(tmp), i);
    return copy_id(tmp, buf, cap);
}

/* Write customer i's external_userid into buf (see above). */
enum brk_err
fixture_customer_id(const struct fixture_corp *c, long i, char *buf, size_t cap)
{
    if (i < 0 || i >= c->sz.customers)
        return BRK_ERR_INVAL;
    return copy_id(c->cust[i].id, buf, cap);
}

/* Write chat i's chat_id into buf (see above). */
enum brk_err
fixture_chat_id(const struct fixture_corp *c, long i, char *buf, size_t cap)
{
    if (i < 0 || i >= c->sz.chats)
        return BRK_ERR_INVAL;
    return copy_id(c->chat[i].id, buf, cap);
}

/* The visible range, borrowed until the next fixture_corp_set_privilege. */
const struct fixture_privilege *
fixture_corp_privilege(const struct fixture_corp *c)
{
    return &c->priv;
}

static enum brk_err
dup_longs(const long *v, size_t n, long **out)
{
    *out = NULL;
    if (n == 0)
        return BRK_OK;
    *out = brk_malloc(n * sizeof(**out));
    if (*out == NULL)
        return BRK_ERR_NOMEM;
    memcpy(*out, v, n * sizeof(**out));
    return BRK_OK;
}

static enum brk_err
dup_strs(char *const *v, size_t n, char ***out)
{
    size_t i;

    *out = NULL;
    if (n == 0)
        return BRK_OK;
    *out = brk_calloc(n, sizeof(**out));
    if (*out == NULL)
        return BRK_ERR_NOMEM;
    for (i = 0; i < n; i++) {
        (*out)[i] = brk_strdup(v[i]);
        if ((*out)[i] == NULL)
            return BRK_ERR_NOMEM;
    }
    return BRK_OK;
}

/*
 * Replace the visible range with a deep copy of p and recompute which
 * departments and members it covers. Returns BRK_OK or BRK_ERR_NOMEM (the
 * old range stays).
 */
enum brk_err
fixture_corp_set_privilege(struct fixture_corp *c,
                           const struct fixture_privilege *p)
{
    struct fixture_privilege n;
    unsigned char *vd, *vm;
    enum brk_err err;
    long nvis;

    memset(&n, 0, sizeof(n));
    n.level = p->level;
    /* counts are set as each list is copied, so clearing a partial copy
     * frees exactly what was allocated */
    err = dup_longs(p->allow_party, p->nallow_party, &n.allow_party);
    if (err)
        goto out;
    n.nallow_party = p->nallow_party;
    err = dup_longs(p->allow_tag, p->nallow_tag, &n.allow_tag);
    if (err)
        goto out;
    n.nallow_tag = p->nallow_tag;
    err = dup_longs(p->extra_party, p->nextra_party, &n.extra_party);
    if (err)
        goto out;
    n.nextra_party = p->nextra_party;
    err = dup_longs(p->extra_tag, p->nextra_tag, &n.extra_tag);
    if (err)
        goto out;
    n.nextra_tag = p->nextra_tag;
    n.nallow_user = p->nallow_user;
    err = dup_strs(p->allow_user, p->nallow_user, &n.allow_user);
    if (err)
        goto out;
    n.nextra_user = p->nextra_user;
    err = dup_strs(p->extra_user, p->nextra_user, &n.extra_user);
    if (err)
        goto out;
    err = range_build(c, &n, c->auth_mode, c->auth_mem, c->nauth_mem, &vd, &vm,
                      &nvis);
    if (err)
        goto out;
    privilege_clear(&c->priv);
    c->priv = n;
    memset(&n, 0, sizeof(n));
    brk_free(c->vis_dept);
    brk_free(c->vis_mem);
    c->vis_dept = vd;
    c->vis_mem = vm;
    c->nvis_mem = nvis;
out:
    privilege_clear(&n);
    return err;
}

/*
 * Replace the app permissions with copies of names[0..n), all expiring at
 * expire_time. Returns BRK_OK or BRK_ERR_NOMEM (the old set stays).
 */
enum brk_err
fixture_corp_set_permissions(struct fixture_corp *c, const char *const *names,
                             size_t n, long expire_time)
{
    char **v = NULL;
    size_t i = 0;
    enum brk_err err = BRK_ERR_NOMEM;

    if (n > 0) {
        v = brk_calloc(n, sizeof(*v));
        if (v == NULL)
            goto out;
        for (i = 0; i < n; i++) {
            v[i] = brk_strdup(names[i]);
            if (v[i] == NULL)
                goto out;
        }
    }
    perms_clear(c->perm, c->nperm);
    c->perm = v;
    c->nperm = n;
    c->perm_expiry = expire_time;
    v = NULL;
    /* the level says the same as the contacts permission */
    if (perm_in(c->perm, n, "contact:edit:all"))
        c->priv.level = 3;
    else if (perm_in(c->perm, n, "contact:base:base"))
        c->priv.level = 1;
    else if (perm_in(c->perm, n, "contact:base:single_user"))
        c->priv.level = 4;
    err = BRK_OK;
out:
    perms_clear(v, i);
    return err;
}

static int
is_contact_level(const char *name)
{
    return strcmp(name, "contact:base:base") == 0 ||
           strcmp(name, "contact:edit:all") == 0 ||
           strcmp(name, "contact:base:single_user") == 0;
}

/*
 * Set the level; 1, 3 and 4 also replace the contacts permission with the
 * one they stand for. Returns BRK_OK or BRK_ERR_NOMEM (nothing changed).
 */
enum brk_err
fixture_corp_set_level(struct fixture_corp *c, long level)
{
    const char *want = level == 1   ? "contact:base:base"
                       : level == 3 ? "contact:edit:all"
                       : level == 4 ? "contact:base:single_user"
                                    : NULL;
    const char **names;
    size_t i, n = 0;
    enum brk_err err;

    if (want == NULL) {
        c->priv.level = level;
        return BRK_OK;
    }
    names = brk_calloc(c->nperm + 1, sizeof(*names));
    if (names == NULL)
        return BRK_ERR_NOMEM;
    for (i = 0; i < c->nperm; i++)
        if (!is_contact_level(c->perm[i]))
            names[n++] = c->perm[i];
    names[n++] = want;
    /* copies every name before it frees the old ones */
    err = fixture_corp_set_permissions(c, names, n, c->perm_expiry);
    brk_free(names);
    if (err == BRK_OK)
        c->priv.level = level;
    return err;
}

/* Whether the corp granted permission name. */
int
fixture_corp_has_permission(const struct fixture_corp *c, const char *name)
{
    return perm_in(c->perm, c->nperm, name);
}

/*
 * Set the authorization mode and, for member authorization, who
 * authorized. Returns BRK_OK, BRK_ERR_INVAL (bad mode, unknown userid, too
 * many) or BRK_ERR_NOMEM; the old state stays on error.
 */
enum brk_err
fixture_corp_set_auth_mode(struct fixture_corp *c, long mode,
                           const char *const *userids, size_t n)
{
    unsigned char *seen = NULL, *vd = NULL, *vm = NULL;
    long *am = NULL, nvis;
    size_t i, nam = 0;
    enum brk_err err = BRK_ERR_INVAL;

    if ((mode != FIXTURE_AUTH_ADMIN && mode != FIXTURE_AUTH_MEMBER) ||
        n > FIXTURE_MAX_AUTH_MEMBERS)
        return BRK_ERR_INVAL;
    seen = brk_calloc((size_t)c->sz.members, 1);
    am = brk_calloc(n ? n : 1, sizeof(*am));
    if (seen == NULL || am == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        long m = member_find(c, userids[i]);

        if (m < 0)
            goto out;
        if (!seen[m])
            am[nam++] = m;
        seen[m] = 1;
    }
    err = range_build(c, &c->priv, mode, am, nam, &vd, &vm, &nvis);
    if (err)
        goto out;
    brk_free(c->auth_mem);
    c->auth_mem = am;
    c->nauth_mem = nam;
    c->auth_mode = mode;
    am = NULL;
    brk_free(c->vis_dept);
    brk_free(c->vis_mem);
    c->vis_dept = vd;
    c->vis_mem = vm;
    c->nvis_mem = nvis;
out:
    brk_free(seen);
    brk_free(am);
    return err;
}

long
fixture_corp_auth_mode(const struct fixture_corp *c)
{
    return c->auth_mode;
}

/* Replace the app-created tags. BRK_OK, BRK_ERR_INVAL (unknown tag, too
 * many) or BRK_ERR_NOMEM; the old set stays on error. */
enum brk_err
fixture_corp_set_app_tags(struct fixture_corp *c, const long *tagids, size_t n)
{
    long *v = NULL;
    size_t i;
    enum brk_err err;

    if (n > FIXTURE_MAX_APP_TAGS)
        return BRK_ERR_INVAL;
    for (i = 0; i < n; i++)
        if (tagids[i] < 1 || tagids[i] > c->sz.tags)
            return BRK_ERR_INVAL;
    err = dup_longs(tagids, n, &v);
    if (err)
        return err;
    brk_free(c->app_tag);
    c->app_tag = v;
    c->napp_tag = n;
    return BRK_OK;
}

/* Replace the app's admins. BRK_OK, BRK_ERR_INVAL (unknown userid, bad
 * auth_type, too many) or BRK_ERR_NOMEM; the old list stays on error. */
enum brk_err
fixture_corp_set_admins(struct fixture_corp *c, const char *const *userids,
                        const long *auth_types, size_t n)
{
    long *who = NULL, *type = NULL;
    size_t i;
    enum brk_err err = BRK_ERR_NOMEM;

    if (n > FIXTURE_MAX_ADMINS)
        return BRK_ERR_INVAL;
    who = brk_calloc(n ? n : 1, sizeof(*who));
    type = brk_calloc(n ? n : 1, sizeof(*type));
    if (who == NULL || type == NULL)
        goto out;
    err = BRK_ERR_INVAL;
    for (i = 0; i < n; i++) {
        who[i] = member_find(c, userids[i]);
        type[i] = auth_types[i];
        if (who[i] < 0 || (type[i] != 0 && type[i] != 1))
            goto out;
    }
    brk_free(c->admin);
    brk_free(c->admin_type);
    c->admin = who;
    c->admin_type = type;
    c->nadmin = n;
    who = type = NULL;
    err = BRK_OK;
out:
    brk_free(who);
    brk_free(type);
    return err;
}

void
fixture_corp_set_strict(struct fixture_corp *c, int strict)
{
    c->strict = strict != 0;
}

int
fixture_corp_is_strict(const struct fixture_corp *c)
{
    return c->strict;
}

long
fixture_corp_visible_members(const struct fixture_corp *c)
{
    return c->nvis_mem;
}

/*---- What WeCom refuses -------------------------------------------------*/

/* 0 when member userid is unknown (the renderer answers) or visible. */
static long
user_range(const struct fixture_corp *c, const char *userid)
{
    long m = member_find(c, userid);

    return m >= 0 && !c->vis_mem[m] ? FIXTURE_E_RANGE : 0;
}

static int
dept_known(const struct fixture_corp *c, long id)
{
    return id >= 1 && id <= c->sz.departments;
}

static long
check_contacts(const struct fixture_corp *c, const struct grant *g,
               enum fixture_api api, const struct fixture_args *a)
{
    long id = a->num;

    switch (api) {
    case FIXTURE_API_USER_GET:
        return !g->contacts ? FIXTURE_E_FORBIDDEN : user_range(c, a->id);
    case FIXTURE_API_USER_SIMPLELIST:
    case FIXTURE_API_USER_LIST:
        /* corp_arch and the contacts app list every department but see
         * the members of the range only */
        if (!g->contacts)
            return FIXTURE_E_FORBIDDEN;
        return dept_known(c, id) && !c->vis_dept[id - 1] ? FIXTURE_E_RANGE : 0;
    case FIXTURE_API_USER_LIST_ID:
        /* "必须是通讯录编辑授权才可调用" (wecom-protocol §4.4) */
        return g->edit ? 0 : FIXTURE_E_FORBIDDEN;
    case FIXTURE_API_USER_MEMBER_AUTH:
        /* WeCom documents no code for an admin-installed app: 48002, the
         * code for an API this app's grant does not open */
        return c->auth_mode == FIXTURE_AUTH_MEMBER ? 0 : FIXTURE_E_FORBIDDEN;
    case FIXTURE_API_DEPARTMENT_LIST:
    case FIXTURE_API_DEPARTMENT_SIMPLE:
    case FIXTURE_API_DEPARTMENT_GET:
        if (!g->contacts && !g->arch)
            return FIXTURE_E_FORBIDDEN;
        return dept_known(c, id) && !dept_listed(c, g, id) ? FIXTURE_E_RANGE
                                                           : 0;
    case FIXTURE_API_TAG_LIST:
        return g->contacts ? 0 : FIXTURE_E_FORBIDDEN;
    case FIXTURE_API_TAG_GET:
        if (!g->contacts)
            return FIXTURE_E_FORBIDDEN;
        return a->num >= 1 && a->num <= c->sz.tags && !tag_allowed(c, a->num)
                   ? FIXTURE_E_RANGE
                   : 0;
    default:
        return 0;
    }
}

static long
check_external(const struct fixture_corp *c, enum fixture_api api,
               const struct fixture_args *a)
{
    long i, hit;
    size_t k;
    int f;

    switch (api) {
    case FIXTURE_API_EXTERNAL_LIST:
        return user_range(c, a->id);
    case FIXTURE_API_EXTERNAL_GET:
        /* a customer none of whose follow users the app can see */
        i = idx_find(c->cust_by_id, c->sz.customers, a->id);
        for (f = 0; i >= 0 && f < c->cust[i].nfollow; f++)
            if (c->vis_mem[c->cust[i].follow[f].member])
                return 0;
        return i >= 0 ? FIXTURE_E_RANGE : 0;
    case FIXTURE_API_EXTERNAL_BATCH:
        /* WeCom answers per member: members outside the range give no
         * rows; only a list with none inside is refused */
        for (k = 0; k < a->nids; k++) {
            hit = member_find(c, a->ids[k]);
            if (hit >= 0 && c->vis_mem[hit])
                return 0;
        }
        return FIXTURE_E_RANGE;
    case FIXTURE_API_GROUPCHAT_LIST:
        if (a->nids == 0)
            return c->nvis_mem > 1000 ? FIXTURE_E_TOO_WIDE : 0;
        for (k = 0; k < a->nids; k++) {
            hit = member_find(c, a->ids[k]);
            if (hit < 0 || !c->vis_mem[hit])
                return FIXTURE_E_RANGE;
        }
        return 0;
    case FIXTURE_API_GROUPCHAT_GET:
        i = idx_find(c->chat_by_id, c->sz.chats, a->id);
        return i >= 0 && !c->vis_mem[c->chat[i].owner] ? FIXTURE_E_RANGE : 0;
    default:
        return 0;
    }
}

/*
 * WeCom's answer to a call under the grant: 0, or the errcode it refuses
 * with (see fixture.h). The permission comes first, then the range.
 */
long
fixture_check(const struct fixture_corp *c, enum fixture_api api,
              const struct fixture_args *a)
{
    struct grant g;

    if (!c->strict)
        return 0;
    grant_of(c, &g);
    switch (api) {
    case FIXTURE_API_FOLLOW_USERS:
    case FIXTURE_API_EXTERNAL_LIST:
    case FIXTURE_API_EXTERNAL_GET:
    case FIXTURE_API_EXTERNAL_BATCH:
    case FIXTURE_API_GROUPCHAT_LIST:
    case FIXTURE_API_GROUPCHAT_GET:
        /* 客户基础信息 gates every customer-contact read */
        return g.external ? check_external(c, api, a) : FIXTURE_E_FORBIDDEN;
    default:
        return check_contacts(c, &g, api, a);
    }
}

/*---- Record renderers ---------------------------------------------------*/

static void
jw_userid(struct jw *w, const char *key, long i)
{
    char buf[32];

    fmt_userid(buf, sizeof(buf), i);
    jw_str(w, key, buf);
}

static void
put_open_userid(struct jw *w, const struct f_member *u)
{
    jw_strf(w, "open_userid", "wo%016" PRIx64 "%014" PRIx64, attr(u->h, 1),
            attr(u->h, 2) >> 8);
}

static void
put_member_name(struct jw *w, const char *key, uint64_t h)
{
    uint64_t g2 = attr(h, 5);

    jw_strf(w, key, "%s%s%s", PICK(surname, attr(h, 3))[0],
            PICK(given, attr(h, 4)), g2 % 3 ? PICK(given, g2 >> 8) : "");
}

/* An attribute list with its first n of: text, web, miniprogram. */
static void
put_attrs(struct jw *w, const char *key, uint64_t h, long id, int n)
{
    jw_open(w, key, 0);
    if (n >= 1) {
        jw_open(w, NULL, 1);
        jw_long(w, "type", 0);
        jw_str(w, "name", "爱好");
        jw_open(w, "text", 1);
        jw_str(w, "value", PICK(hobby, attr(h, 10)));
        jw_close(w, 1);
        jw_close(w, 1);
    }
    if (n >= 2) {
        jw_open(w, NULL, 1);
        jw_long(w, "type", 1);
        jw_str(w, "name", "个人主页");
        jw_open(w, "web", 1);
        jw_strf(w, "url", "https://mock.example.com/u%05ld", id);
        jw_str(w, "title", "主页");
        jw_close(w, 1);
        jw_close(w, 1);
    }
    if (n >= 3) {
        jw_open(w, NULL, 1);
        jw_long(w, "type", 2);
        jw_str(w, "name", "小程序");
        jw_open(w, "miniprogram", 1);
        jw_strf(w, "appid", "wxmock%010" PRIx64, attr(h, 11) >> 24);
        jw_str(w, "pagepath", "/pages/index");
        jw_str(w, "title", "我的小程序");
        jw_close(w, 1);
        jw_close(w, 1);
    }
    jw_close(w, 0);
}

/* The departments flagged in show; [1] in member authorization. */
static void
put_depts(struct jw *w, const struct f_member *u, const unsigned char *show,
          int mauth)
{
    int k;

    jw_open(w, "department", 0);
    if (mauth)
        jw_long(w, NULL, 1);
    for (k = 0; !mauth && k < u->ndept; k++)
        if (show[k])
            jw_long(w, NULL, u->dept[k]);
    jw_close(w, 0);
}

/*
 * A member as WeCom shows it (g NULL: leaky, every field, the self-built
 * shape). To a third-party app (wecom-protocol §4.1), by field:
 *
 *   field                      read-only app        contacts app
 *                              (contact:base:base)  (contact:edit:all)
 *   userid, open_userid,       yes                  yes
 *   status
 *   name                       the userid           the name
 *   department, order,         the member's departments in the range; all
 *   main_department            of them with corp_arch:base:base and for the
 *                              contacts app; in member authorization
 *                              department [1], main_department 1, no order
 *   gender                     "0"                  with contact:sensitive:
 *                                                   gender, else "0"
 *   avatar, thumb_avatar       -                    with ...:avatar
 *   qr_code                    -                    with ...:qrcode
 *   mobile, email, biz_mail,   -                    with ...:mobile, :email,
 *   address                                         :biz_mail, :address
 *   position, telephone,       -                    yes
 *   alias, extattr,
 *   external_position,
 *   external_profile,
 *   is_leader_in_dept
 *   direct_leader              with corp_arch:      yes
 *                              member:direct_leader
 *                              (leaders in the range only)
 *
 * A read-only app never gets a sensitive field from user/get, whatever
 * contact:sensitive:* it holds: §4.1 routes the real values through OAuth
 * (snsapi_privateinfo, getuserdetail3rd), which those permissions open.
 * The contacts app needs them too, since WeCom withdrew exactly these
 * fields from user/get in 2022 (§4.1).
 */
static void
put_user_fields(struct jw *w, const struct fixture_corp *c, long i,
                const struct grant *g)
{
    const struct f_member *u = &c->mem[i];
    const char *py = PICK(surname, attr(u->h, 3))[1];
    uint64_t h = u->h;
    /* like real directories, most members have few custom attributes */
    int rich = i < 3 || attr(h, 18) % 4 == 0;
    int all = g == NULL, edit = all || g->edit;
    int mauth = !all && c->auth_mode == FIXTURE_AUTH_MEMBER;
    unsigned char show[3] = {0, 0, 0};
    int k;

    for (k = 0; k < u->ndept; k++)
        show[k] = (unsigned char)(all || g->edit || g->arch ||
                                  c->vis_dept[u->dept[k] - 1]);
    jw_userid(w, "userid", i);
    if (edit)
        put_member_name(w, "name", h);
    else
        jw_userid(w, "name", i);
    put_depts(w, u, show, mauth);
    if (!mauth) {
        jw_open(w, "order", 0);
        for (k = 0; k < u->ndept; k++)
            if (show[k])
                jw_long(w, NULL, u->order[k]);
        jw_close(w, 0);
    }
    if (edit)
        jw_str(w, "position", PICK(position, attr(h, 6)));
    if (all || (edit && g->mobile))
        jw_strf(w, "mobile", "13%09" PRIu64, attr(h, 7) % 1000000000u);
    jw_str(w, "gender",
           all || (edit && g->gender) ? (attr(h, 8) % 2 ? "1" : "2") : "0");
    if (all || (edit && g->email))
        jw_strf(w, "email", "%s%ld@mockcorp%04ld.example.com", py, i + 1,
                c->index);
    if (all || (edit && g->biz_mail))
        jw_strf(w, "biz_mail", "%s%ld@%s.wecom.work", py, i + 1, c->corpid);
    if (edit && !mauth) {
        jw_open(w, "is_leader_in_dept", 0);
        for (k = 0; k < u->ndept; k++)
            if (show[k])
                jw_long(w, NULL, (u->leader_mask >> k) & 1);
        jw_close(w, 0);
    }
    if (edit || g->leader) {
        jw_open(w, "direct_leader", 0);
        if (u->direct_leader >= 0 && (all || c->vis_mem[u->direct_leader]))
            jw_userid(w, NULL, u->direct_leader);
        jw_close(w, 0);
    }
    if (all || (edit && g->avatar)) {
        jw_strf(w, "avatar",
                "https://wework.qpic.cn/wwpic/mock%016" PRIx64 "/0",
                attr(h, 9));
        jw_strf(w, "thumb_avatar",
                "https://wework.qpic.cn/wwpic/mock%016" PRIx64 "/100",
                attr(h, 9));
    }
    if (edit) {
        jw_strf(w, "telephone", "020-%08" PRIu64, attr(h, 12) % 100000000u);
        jw_strf(w, "alias", "%s%ld", py, i + 1);
    }
    if (all || (edit && g->address))
        jw_strf(w, "address", "%s市%s%" PRIu64 "号", PICK(city, attr(h, 13))[0],
                PICK(street, attr(h, 14)), attr(h, 15) % 999 + 1);
    put_open_userid(w, u);
    if (mauth)
        jw_long(w, "main_department", 1);
    else if (show[0])
        jw_long(w, "main_department", u->dept[0]);
    if (edit) {
        jw_open(w, "extattr", 1);
        put_attrs(w, "attrs", h, i + 1, rich ? 2 : 1);
        jw_close(w, 1);
    }
    jw_long(w, "status", u->status);
    if (all || (edit && g->qrcode))
        jw_strf(w, "qr_code",
                "https://open.work.weixin.qq.com/wwopen/userQRCode?vcode=vc%"
                "016" PRIx64,
                attr(h, 16));
    if (edit) {
        jw_str(w, "external_position", PICK(position, attr(h, 6)));
        jw_open(w, "external_profile", 1);
        jw_str(w, "external_corp_name", c->name);
        jw_open(w, "wechat_channels", 1);
        put_member_name(w, "nickname", attr(h, 17));
        jw_long(w, "status", 1);
        jw_close(w, 1);
        put_attrs(w, "external_attr", h, i + 1, rich ? 3 : 0);
        jw_str(w, "mock_internal_note", "profile reviewed by HR");
        jw_close(w, 1);
    }
}

static void
put_member_note(struct jw *w, long i)
{
    char buf[32];

    fmt_userid(buf, sizeof(buf), i);
    jw_strf(w, "mock_internal_note", "内部备注: %s 绩效待评估", buf);
}

/* A user/simplelist row: {userid, name, department, open_userid}; name
 * is the userid for all but the contacts app (g NULL: leaky). */
static void
put_simple_user(struct jw *w, const struct fixture_corp *c, long i,
                const struct grant *g)
{
    const struct f_member *u = &c->mem[i];
    unsigned char show[3] = {0, 0, 0};
    int k;

    for (k = 0; k < u->ndept; k++)
        show[k] = (unsigned char)(g == NULL || g->edit || g->arch ||
                                  c->vis_dept[u->dept[k] - 1]);
    jw_open(w, NULL, 1);
    jw_userid(w, "userid", i);
    if (g == NULL || g->edit)
        put_member_name(w, "name", u->h);
    else
        jw_userid(w, "name", i);
    put_depts(w, u, show, g != NULL && c->auth_mode == FIXTURE_AUTH_MEMBER);
    put_open_userid(w, u);
    put_member_note(w, i);
    jw_close(w, 1);
}

enum dept_what { DEPT_SIMPLE, DEPT_LIST, DEPT_GET };

/*
 * A department object under key (NULL inside arrays). For a third-party
 * app (g not NULL; wecom-protocol §4.5) name is the id in department/list
 * and absent from department/get, name_en absent, real names and
 * department_leader for the contacts app only (department/get never names
 * a department), leaders in the range only.
 */
static void
put_dept(struct jw *w, const struct fixture_corp *c, const char *key, long id,
         enum dept_what what, const struct grant *g)
{
    const struct f_dept *d = &c->dept[id - 1];
    int names = g == NULL || (g->edit && what == DEPT_LIST);

    jw_open(w, key, 1);
    jw_long(w, "id", id);
    if (what != DEPT_SIMPLE && names) {
        if (id == 1) {
            jw_str(w, "name", c->name);
            jw_str(w, "name_en", "Headquarters");
        } else {
            jw_strf(w, "name", "%s%s", PICK(city, attr(d->h, 1))[0],
                    PICK(dept_name, attr(d->h, 2))[0]);
            jw_strf(w, "name_en", "%s%ld", PICK(dept_name, attr(d->h, 2))[1],
                    id);
        }
    } else if (what == DEPT_LIST) {
        jw_strf(w, "name", "%ld", id);
    }
    if (what != DEPT_SIMPLE && (g == NULL || g->edit)) {
        jw_open(w, "department_leader", 0);
        if (d->leader >= 0 && (g == NULL || c->vis_mem[d->leader]))
            jw_userid(w, NULL, d->leader);
        jw_close(w, 0);
    }
    jw_long(w, "parentid", d->parentid);
    jw_long(w, "order", d->order);
    jw_strf(w, "mock_internal_note", "cost center CC%04ld", id);
    jw_close(w, 1);
}

/* A customer; for a third-party app (strict) without avatar and unionid
 * and with gender 0 (wecom-protocol §4.7). */
static void
put_external_contact(struct jw *w, const struct f_customer *e, int strict)
{
    uint64_t h = e->h;

    jw_open(w, "external_contact", 1);
    jw_str(w, "external_userid", e->id);
    put_member_name(w, "name", attr(h, 1));
    jw_long(w, "type", e->type);
    if (!strict)
        jw_strf(w, "avatar", "https://p.qlogo.cn/mmhead/mock%016" PRIx64 "/0",
                attr(h, 2));
    jw_long(w, "gender", strict ? 0 : (long)(attr(h, 3) % 3));
    if (!strict)
        jw_strf(w, "unionid", "oz%016" PRIx64 "%010" PRIx64, attr(h, 4),
                attr(h, 5) >> 24);
    if (e->type == 2) {
        jw_str(w, "position", PICK(position, attr(h, 6)));
        jw_str(w, "corp_name", PICK(brand, attr(h, 7)));
        jw_strf(w, "corp_full_name", "%s%s有限公司", PICK(city, attr(h, 8))[0],
                PICK(brand, attr(h, 7)));
        jw_open(w, "external_profile", 1);
        put_attrs(w, "external_attr", h, (long)(attr(h, 9) % 100000), 2);
        jw_close(w, 1);
    }
    jw_strf(w, "mock_internal_note", "credit rating %c",
            (char)('A' + attr(h, 10) % 4));
    jw_close(w, 1);
}

/* A follow user (get) or follow info (batch/get_by_user) object. */
static void
put_follow(struct jw *w, const struct fixture_corp *c,
           const struct f_customer *e, const struct f_follow *f, int info)
{
    uint64_t h = f->h;
    long nt = (long)(attr(h, 1) % 3), t;
    int personal = attr(h, 2) % 4 == 0;
    long nmob = (long)(attr(h, 3) % 3);

    jw_open(w, info ? "follow_info" : NULL, 1);
    jw_userid(w, "userid", f->member);
    /* the customer's surname, as put_member_name derives it */
    jw_strf(w, "remark", "%s%s", PICK(surname, attr(attr(e->h, 1), 3))[0],
            PICK(position, attr(h, 4)));
    jw_str(w, "description", PICK(description, attr(h, 5)));
    jw_long(w, "createtime", 1577836800 + (long)(attr(h, 6) % 126230400));
    if (info) {
        jw_open(w, "tag_id", 0);
        for (t = 0; t < nt; t++)
            jw_str(w, NULL, c->ctag_id[(attr(h, 7) + (uint64_t)t) % NCTAG]);
        jw_close(w, 0);
    } else {
        jw_open(w, "tags", 0);
        for (t = 0; t < nt; t++) {
            long k = (long)((attr(h, 7) + (uint64_t)t) % NCTAG);

            jw_open(w, NULL, 1);
            jw_str(w, "group_name", ctag_def[k][0]);
            jw_str(w, "tag_name", ctag_def[k][1]);
            jw_str(w, "tag_id", c->ctag_id[k]);
            jw_long(w, "type", 1);
            jw_close(w, 1);
        }
        if (personal) {
            jw_open(w, NULL, 1);
            jw_str(w, "tag_name", "老朋友");
            jw_long(w, "type", 2);
            jw_close(w, 1);
        }
        jw_close(w, 0);
    }
    if (e->type == 1)
        jw_str(w, "remark_corp_name", PICK(brand, attr(h, 8)));
    jw_open(w, "remark_mobiles", 0);
    for (t = 0; t < nmob; t++)
        jw_strf(w, NULL, "139%08" PRIu64,
                attr(h, 9 + (unsigned)t) % 100000000u);
    jw_close(w, 0);
    jw_userid(w, "oper_userid", f->oper);
    jw_long(w, "add_way", (long)(attr(h, 11) % 12));
    if (attr(h, 12) % 2)
        jw_strf(w, "state", "外联二维码%" PRIu64, attr(h, 13) % 9 + 1);
    else
        jw_str(w, "state", "");
    if (attr(h, 14) % 3 == 0) {
        jw_open(w, "wechat_channels", 1);
        put_member_name(w, "nickname", attr(h, 15));
        jw_long(w, "source", (long)(attr(h, 16) % 3));
        jw_close(w, 1);
    }
    jw_strf(w, "mock_internal_note", "deal size %" PRIu64 " wan",
            attr(h, 17) % 500 + 1);
    jw_close(w, 1);
}

static void
put_id_list(struct jw *w, const char *key, const long *v, size_t n)
{
    size_t i;

    jw_open(w, key, 0);
    for (i = 0; i < n; i++)
        jw_long(w, NULL, v[i]);
    jw_close(w, 0);
}

static void
put_str_list(struct jw *w, const char *key, char *const *v, size_t n)
{
    size_t i;

    jw_open(w, key, 0);
    for (i = 0; i < n; i++)
        jw_str(w, NULL, v[i]);
    jw_close(w, 0);
}

static void
put_privilege(struct jw *w, const struct fixture_privilege *p)
{
    jw_open(w, "privilege", 1);
    jw_long(w, "level", p->level);
    put_id_list(w, "allow_party", p->allow_party, p->nallow_party);
    put_str_list(w, "allow_user", p->allow_user, p->nallow_user);
    put_id_list(w, "allow_tag", p->allow_tag, p->nallow_tag);
    put_id_list(w, "extra_party", p->extra_party, p->nextra_party);
    put_str_list(w, "extra_user", p->extra_user, p->nextra_user);
    put_id_list(w, "extra_tag", p->extra_tag, p->nextra_tag);
    jw_close(w, 1);
}

static void
put_corp_info(struct jw *w, const struct fixture_corp *c, int full)
{
    uint64_t h = c->h;
    long m = c->sz.members;

    jw_open(w, "auth_corp_info", 1);
    jw_str(w, "corpid", c->corpid);
    jw_str(w, "corp_name", c->name);
    if (full) {
        jw_str(w, "corp_type", "verified");
        jw_strf(w, "corp_square_logo_url",
                "https://p.qlogo.cn/bizmail/mock%016" PRIx64 "/0", attr(h, 3));
        jw_strf(w, "corp_round_logo_url",
                "https://p.qlogo.cn/bizmail/mock%016" PRIx64 "/100",
                attr(h, 3));
        jw_long(w, "corp_user_max", m < 200 ? 200 : m * 2);
        jw_long(w, "corp_agent_max", 30);
        jw_str(w, "corp_full_name", c->full_name);
        jw_long(w, "verified_end_time",
                1700000000 + (long)(attr(h, 4) % 100000000));
        jw_long(w, "subject_type", 1);
        jw_strf(
            w, "corp_wxqrcode",
            "https://open.work.weixin.qq.com/wwopen/qrcode?mock=%016" PRIx64,
            attr(h, 5));
        jw_str(w, "corp_scale",
               m <= 50    ? "1-50人"
               : m <= 200 ? "51-200人"
                          : "201-500人");
        jw_str(w, "corp_industry", "IT服务");
        jw_str(w, "corp_sub_industry", "计算机软件/硬件/信息服务");
        jw_str(w, "location", c->location);
        jw_str(w, "mock_internal_note", "sales owner: key account team");
    }
    jw_close(w, 1);
}

static void
put_auth_user(struct jw *w, const struct fixture_corp *c)
{
    jw_open(w, "auth_user_info", 1);
    jw_userid(w, "userid", 0);
    put_open_userid(w, &c->mem[0]);
    put_member_name(w, "name", c->mem[0].h);
    jw_strf(w, "avatar", "https://wework.qpic.cn/wwpic/mock%016" PRIx64 "/0",
            attr(c->mem[0].h, 9));
    jw_close(w, 1);
}

static void
put_agent_auth(struct jw *w, const struct fixture_corp *c)
{
    jw_open(w, "auth_info", 1);
    jw_open(w, "agent", 0);
    jw_open(w, NULL, 1);
    jw_long(w, "agentid", FIXTURE_AGENTID);
    jw_str(w, "name", "模拟应用");
    jw_str(w, "round_logo_url", "https://p.qlogo.cn/bizmail/mockapp/100");
    jw_str(w, "square_logo_url", "https://p.qlogo.cn/bizmail/mockapp/0");
    jw_long(w, "appid", 1);
    jw_long(w, "auth_mode", c->auth_mode);
    jw_bool(w, "is_customized_app", 0);
    jw_bool(w, "auth_from_thirdapp", 0);
    put_privilege(w, &c->priv);
    jw_str(w, "mock_internal_note", "agent installed by mock");
    jw_close(w, 1);
    jw_close(w, 0);
    jw_close(w, 1);
}

static void
put_edition(struct jw *w)
{
    jw_open(w, "edition_info", 1);
    jw_open(w, "agent", 0);
    jw_open(w, NULL, 1);
    jw_long(w, "agentid", FIXTURE_AGENTID);
    jw_str(w, "edition_id", "RLS65535");
    jw_str(w, "edition_name", "协同版");
    jw_long(w, "app_status", 3);
    jw_long(w, "user_limit", 200);
    jw_long(w, "expired_time", FIXTURE_PERM_EXPIRY);
    jw_bool(w, "is_virtual_version", 0);
    jw_bool(w, "is_shared_from_other_corp", 0);
    jw_close(w, 1);
    jw_close(w, 0);
    jw_close(w, 1);
}

/*---- Service API replies ------------------------------------------------*/

/*
 * Render the v1 get_permanent_code reply. Returns BRK_OK or a dynbuf error
 * (out freed). Strings are borrowed; state may be NULL ("").
 */
enum brk_err
fixture_render_permanent_code(const struct fixture_corp *c,
                              const char *access_token, long expires_in,
                              const char *permanent_code, const char *state,
                              struct dynbuf *out)
{
    struct jw w;

    jw_begin(&w, out, 1);
    jw_str(&w, "access_token", access_token);
    jw_long(&w, "expires_in", expires_in);
    jw_str(&w, "permanent_code", permanent_code);
    put_corp_info(&w, c, 1);
    put_agent_auth(&w, c);
    put_auth_user(&w, c);
    put_edition(&w);
    jw_str(&w, "state", state ? state : "");
    return jw_end(&w, "installed through the mock");
}

/* Render the v2 get_permanent_code reply (see fixture_render_permanent_code).
 */
enum brk_err
fixture_render_permanent_code_v2(const struct fixture_corp *c,
                                 const char *permanent_code, const char *state,
                                 struct dynbuf *out)
{
    struct jw w;

    jw_begin(&w, out, 1);
    jw_str(&w, "permanent_code", permanent_code);
    put_corp_info(&w, c, 0);
    put_auth_user(&w, c);
    jw_str(&w, "state", state ? state : "");
    return jw_end(&w, "installed through the mock");
}

/* Render get_auth_info with the current privilege. BRK_OK or a dynbuf
 * error. */
enum brk_err
fixture_render_auth_info(const struct fixture_corp *c, struct dynbuf *out)
{
    struct jw w;

    jw_begin(&w, out, 1);
    put_corp_info(&w, c, 1);
    put_agent_auth(&w, c);
    put_edition(&w);
    return jw_end(&w, "auth info from the mock");
}

/* Render agent/get_permissions. BRK_OK or a dynbuf error. */
enum brk_err
fixture_render_permissions(const struct fixture_corp *c, struct dynbuf *out)
{
    struct jw w;
    size_t i;

    jw_begin(&w, out, 1);
    jw_open(&w, "app_permissions", 0);
    for (i = 0; i < c->nperm; i++)
        jw_str(&w, NULL, c->perm[i]);
    jw_close(&w, 0);
    jw_open(&w, "app_permissions_ext", 0);
    for (i = 0; i < c->nperm; i++) {
        jw_open(&w, NULL, 1);
        jw_str(&w, "permission_name", c->perm[i]);
        jw_long(&w, "expire_time", c->perm_expiry);
        jw_close(&w, 1);
    }
    jw_close(&w, 0);
    return jw_end(&w, "permissions from the mock");
}

/* Render agent/get for FIXTURE_AGENTID (else BRK_ERR_NOTFOUND), with the
 * visible range in agent/get's shape. */
enum brk_err
fixture_render_agent_get(const struct fixture_corp *c, long agentid,
                         struct dynbuf *out)
{
    const struct fixture_privilege *p = &c->priv;
    struct jw w;
    size_t i;

    if (agentid != FIXTURE_AGENTID)
        return BRK_ERR_NOTFOUND;
    jw_begin(&w, out, 1);
    jw_long(&w, "agentid", FIXTURE_AGENTID);
    jw_str(&w, "name", "模拟应用");
    jw_str(&w, "square_logo_url", "https://p.qlogo.cn/bizmail/mockapp/0");
    jw_str(&w, "description", "企业微信模拟第三方应用");
    jw_open(&w, "allow_userinfos", 1);
    jw_open(&w, "user", 0);
    for (i = 0; i < p->nallow_user; i++) {
        jw_open(&w, NULL, 1);
        jw_str(&w, "userid", p->allow_user[i]);
        jw_close(&w, 1);
    }
    jw_close(&w, 0);
    jw_close(&w, 1);
    jw_open(&w, "allow_partys", 1);
    put_id_list(&w, "partyid", p->allow_party, p->nallow_party);
    jw_close(&w, 1);
    jw_open(&w, "allow_tags", 1);
    put_id_list(&w, "tagid", p->allow_tag, p->nallow_tag);
    jw_close(&w, 1);
    jw_long(&w, "close", 0);
    jw_str(&w, "redirect_domain", "mock.example.com");
    jw_long(&w, "report_location_flag", 0);
    jw_long(&w, "isreportenter", 0);
    jw_str(&w, "home_url", "https://mock.example.com/");
    jw_long(&w, "customized_publish_status", 1);
    return jw_end(&w, "agent from the mock");
}

/*
 * Render agent/get_admin_list: the app's admins with their open_userid and
 * auth_type; a strict corp that authorized the app by member gets no
 * admin list at all (D:100072: 成员授权模式下,不返回管理员列表). BRK_OK
 * or a dynbuf error.
 */
enum brk_err
fixture_render_admin_list(const struct fixture_corp *c, struct dynbuf *out)
{
    struct jw w;
    size_t k;

    jw_begin(&w, out, 1);
    if (c->strict && c->auth_mode == FIXTURE_AUTH_MEMBER)
        return jw_end(&w, "admins from the mock");
    jw_open(&w, "admin", 0);
    for (k = 0; k < c->nadmin; k++) {
        jw_open(&w, NULL, 1);
        jw_userid(&w, "userid", c->admin[k]);
        put_open_userid(&w, &c->mem[c->admin[k]]);
        jw_long(&w, "auth_type", c->admin_type[k]);
        jw_close(&w, 1);
    }
    jw_close(&w, 0);
    return jw_end(&w, "admins from the mock");
}

/*---- Contacts -----------------------------------------------------------*/

/* The grant a reply is shaped by: NULL renders leaky. */
static const struct grant *
shape_of(const struct fixture_corp *c, struct grant *g)
{
    if (!c->strict)
        return NULL;
    grant_of(c, g);
    return g;
}

static enum brk_err
render_user(const struct fixture_corp *c, const char *userid,
            const struct grant *g, struct dynbuf *out)
{
    long i = member_find(c, userid);
    struct jw w;
    char note[64];

    if (i < 0)
        return BRK_ERR_NOTFOUND;
    jw_begin(&w, out, 1);
    put_user_fields(&w, c, i, g);
    snprintf(note, sizeof(note), "内部备注: %s 绩效待评估", userid);
    return jw_end(&w, note);
}

/* Render user/get. BRK_ERR_NOTFOUND for an unknown userid. */
enum brk_err
fixture_render_user_get(const struct fixture_corp *c, const char *userid,
                        struct dynbuf *out)
{
    struct grant g;

    return render_user(c, userid, shape_of(c, &g), out);
}

/* Render the member's whole self-built record, strict or not.
 * BRK_ERR_NOTFOUND for an unknown userid. */
enum brk_err
fixture_render_user_record(const struct fixture_corp *c, const char *userid,
                           struct dynbuf *out)
{
    return render_user(c, userid, NULL, out);
}

static enum brk_err
render_users(const struct fixture_corp *c, long department_id, int fetch_child,
             int full, struct dynbuf *out)
{
    unsigned char *marks = NULL;
    const struct grant *gp;
    struct grant g;
    struct jw w;
    long i;

    if (department_id < 1 || department_id > c->sz.departments)
        return BRK_ERR_NOTFOUND;
    gp = shape_of(c, &g);
    /* third-party apps lost fetch_child: one department per call */
    marks = fetch_child && gp == NULL
                ? subtree_marks(c, department_id)
                : brk_calloc((size_t)c->sz.departments, 1);
    if (marks == NULL) {
        dynbuf_free(out);
        return BRK_ERR_NOMEM;
    }
    marks[department_id - 1] = 1;
    jw_begin(&w, out, 1);
    jw_open(&w, "userlist", 0);
    for (i = 0; i < c->sz.members && w.err == BRK_OK; i++) {
        if (gp != NULL ? !c->vis_mem[i] || !member_in_dept(c, i, department_id)
                       : !member_in_marks(c, i, marks))
            continue;
        if (full) {
            jw_open(&w, NULL, 1);
            put_user_fields(&w, c, i, gp);
            put_member_note(&w, i);
            jw_close(&w, 1);
        } else {
            put_simple_user(&w, c, i, gp);
        }
    }
    jw_close(&w, 0);
    brk_free(marks);
    return jw_end(&w, full ? "user list from the mock"
                           : "simple list from the mock");
}

/* Render user/simplelist. BRK_ERR_NOTFOUND for an unknown department. */
enum brk_err
fixture_render_user_simplelist(const struct fixture_corp *c, long department_id,
                               int fetch_child, struct dynbuf *out)
{
    return render_users(c, department_id, fetch_child, 0, out);
}

/*
 * Render user/list: the members of the department (leaky: of its subtree
 * with fetch_child) with every field the app may see. BRK_ERR_NOTFOUND for
 * an unknown department.
 */
enum brk_err
fixture_render_user_list(const struct fixture_corp *c, long department_id,
                         int fetch_child, struct dynbuf *out)
{
    return render_users(c, department_id, fetch_child, 1, out);
}

/* The departments of member i a list_id row names: those the app sees
 * (every one for the contacts app that may call it; all when leaky). */
static int
list_id_dept(const struct fixture_corp *c, const struct grant *g, long i, int k)
{
    return g == NULL || dept_listed(c, g, c->mem[i].dept[k]);
}

/*
 * Render user/list_id: one row per (member, department); third-party rows
 * name the member by open_userid only (wecom-protocol §4.4), for members in
 * the range. BRK_ERR_INVAL for a bad cursor or limit.
 */
enum brk_err
fixture_render_user_list_id(const struct fixture_corp *c, const char *cursor,
                            long limit, struct dynbuf *out)
{
    long total = 0, off, row = 0, sent = 0, i;
    const struct grant *gp;
    struct grant g;
    struct jw w;
    int k;

    gp = shape_of(c, &g);
    for (i = 0; i < c->sz.members; i++)
        for (k = 0; (gp == NULL || c->vis_mem[i]) && k < c->mem[i].ndept; k++)
            total += list_id_dept(c, gp, i, k);
    off = cursor_parse(cursor, total);
    if (off < 0 || limit < 1 || limit > 10000)
        return BRK_ERR_INVAL;
    jw_begin(&w, out, 1);
    jw_cursor(&w, off + limit < total ? off + limit : -1);
    jw_open(&w, "dept_user", 0);
    for (i = 0; i < c->sz.members && sent < limit; i++) {
        const struct f_member *u = &c->mem[i];

        if (gp != NULL && !c->vis_mem[i])
            continue;
        for (k = 0; k < u->ndept && sent < limit; k++) {
            if (!list_id_dept(c, gp, i, k) || row++ < off)
                continue;
            jw_open(&w, NULL, 1);
            if (gp == NULL)
                jw_userid(&w, "userid", i);
            put_open_userid(&w, u);
            jw_long(&w, "department", u->dept[k]);
            put_member_note(&w, i);
            jw_close(&w, 1);
            sent++;
        }
    }
    jw_close(&w, 0);
    return jw_end(&w, "id list from the mock");
}

/*
 * Render user/list_member_auth: the members who authorized the app, in the
 * order they were given, paged like list_id. BRK_ERR_INVAL for a bad
 * cursor or limit.
 */
enum brk_err
fixture_render_member_auth(const struct fixture_corp *c, const char *cursor,
                           long limit, int userid_rows, struct dynbuf *out)
{
    long total = c->strict ? (long)c->nauth_mem : c->sz.members, off, r;
    struct jw w;

    off = cursor_parse(cursor, total);
    if (off < 0 || limit < 1 || limit > 10000)
        return BRK_ERR_INVAL;
    jw_begin(&w, out, 1);
    jw_open(&w, "member_auth_list", 0);
    for (r = off; r < total && r < off + limit; r++) {
        long i = c->strict ? c->auth_mem[r] : r;

        jw_open(&w, NULL, 1);
        if (!c->strict || userid_rows)
            jw_userid(&w, "userid", i);
        if (!c->strict || !userid_rows)
            put_open_userid(&w, &c->mem[i]);
        put_member_note(&w, i);
        jw_close(&w, 1);
    }
    jw_close(&w, 0);
    jw_cursor(&w, off + limit < total ? off + limit : -1);
    return jw_end(&w, "authorized members from the mock");
}

static enum brk_err
render_depts(const struct fixture_corp *c, long id, enum dept_what what,
             struct dynbuf *out)
{
    unsigned char *marks;
    const struct grant *gp;
    struct grant g;
    struct jw w;
    long j;

    if (id < 0 || id > c->sz.departments)
        return BRK_ERR_NOTFOUND;
    gp = shape_of(c, &g);
    marks = subtree_marks(c, id);
    if (marks == NULL) {
        dynbuf_free(out);
        return BRK_ERR_NOMEM;
    }
    jw_begin(&w, out, 1);
    jw_open(&w, what == DEPT_LIST ? "department" : "department_id", 0);
    for (j = 0; j < c->sz.departments; j++)
        if (marks[j] && (gp == NULL || dept_listed(c, gp, j + 1)))
            put_dept(&w, c, NULL, j + 1, what, gp);
    jw_close(&w, 0);
    brk_free(marks);
    return jw_end(&w, "departments from the mock");
}

/*
 * Render department/list (id 0: all): for a third-party app only the
 * departments of the range, or every one with corp_arch:base:base or for
 * the contacts app. BRK_ERR_NOTFOUND for an unknown id.
 */
enum brk_err
fixture_render_department_list(const struct fixture_corp *c, long id,
                               struct dynbuf *out)
{
    return render_depts(c, id, DEPT_LIST, out);
}

/* Render department/simplelist (see fixture_render_department_list). */
enum brk_err
fixture_render_department_simplelist(const struct fixture_corp *c, long id,
                                     struct dynbuf *out)
{
    return render_depts(c, id, DEPT_SIMPLE, out);
}

/* Render department/get. BRK_ERR_NOTFOUND for an unknown id. */
enum brk_err
fixture_render_department_get(const struct fixture_corp *c, long id,
                              struct dynbuf *out)
{
    struct grant g;
    struct jw w;

    if (id < 1 || id > c->sz.departments)
        return BRK_ERR_NOTFOUND;
    jw_begin(&w, out, 1);
    put_dept(&w, c, "department", id, DEPT_GET, shape_of(c, &g));
    return jw_end(&w, "department from the mock");
}

static void
put_tag_name(struct jw *w, long t)
{
    if (t <= (long)nitems(tag_name))
        jw_str(w, "tagname", tag_name[t - 1]);
    else
        jw_strf(w, "tagname", "%s%ld", tag_name[(t - 1) % nitems(tag_name)], t);
}

/* Render tag/list: every tag (leaky) or the tags the app created. BRK_OK
 * or a dynbuf error. */
enum brk_err
fixture_render_tag_list(const struct fixture_corp *c, struct dynbuf *out)
{
    struct jw w;
    long t;

    jw_begin(&w, out, 1);
    jw_open(&w, "taglist", 0);
    for (t = 1; t <= c->sz.tags; t++) {
        if (c->strict && !has_long(c->app_tag, c->napp_tag, t))
            continue;
        jw_open(&w, NULL, 1);
        jw_long(&w, "tagid", t);
        put_tag_name(&w, t);
        jw_strf(&w, "mock_internal_note", "tag owner: admin %ld", t);
        jw_close(&w, 1);
    }
    jw_close(&w, 0);
    return jw_end(&w, "tags from the mock");
}

/* Render tag/get; a third-party app's userlist holds the tag's members in
 * the range, without names. BRK_ERR_NOTFOUND for an unknown tagid. */
enum brk_err
fixture_render_tag_get(const struct fixture_corp *c, long tagid,
                       struct dynbuf *out)
{
    const struct f_tag *g;
    struct jw w;
    int k;

    if (tagid < 1 || tagid > c->sz.tags)
        return BRK_ERR_NOTFOUND;
    g = &c->tag[tagid - 1];
    jw_begin(&w, out, 1);
    put_tag_name(&w, tagid);
    jw_open(&w, "userlist", 0);
    for (k = 0; k < g->nuser; k++) {
        if (c->strict && !c->vis_mem[g->user[k]])
            continue;
        jw_open(&w, NULL, 1);
        jw_userid(&w, "userid", g->user[k]);
        if (!c->strict)
            put_member_name(&w, "name", c->mem[g->user[k]].h);
        put_member_note(&w, g->user[k]);
        jw_close(&w, 1);
    }
    jw_close(&w, 0);
    put_id_list(&w, "partylist", g->party, g->nparty);
    return jw_end(&w, "tag from the mock");
}

/*---- External contacts --------------------------------------------------*/

/* The app sees member m as a follow user or owner. */
static int
sees(const struct fixture_corp *c, long m)
{
    return !c->strict || c->vis_mem[m];
}

/* Render get_follow_user_list: members following a customer (strict: in
 * the range). BRK_OK or a dynbuf error. */
enum brk_err
fixture_render_follow_user_list(const struct fixture_corp *c,
                                struct dynbuf *out)
{
    struct jw w;
    long i;

    jw_begin(&w, out, 1);
    jw_open(&w, "follow_user", 0);
    for (i = 0; i < c->sz.members; i++)
        if (c->mem[i].follows && sees(c, i))
            jw_userid(&w, NULL, i);
    jw_close(&w, 0);
    return jw_end(&w, "follow users from the mock");
}

/* Render externalcontact/list. BRK_ERR_NOTFOUND for an unknown member or
 * one without customers. */
enum brk_err
fixture_render_external_list(const struct fixture_corp *c, const char *userid,
                             struct dynbuf *out)
{
    long m = member_find(c, userid), i;
    struct jw w;
    int k;

    if (m < 0 || !c->mem[m].follows)
        return BRK_ERR_NOTFOUND;
    jw_begin(&w, out, 1);
    jw_open(&w, "external_userid", 0);
    for (i = 0; i < c->sz.customers; i++)
        for (k = 0; k < c->cust[i].nfollow; k++)
            if (c->cust[i].follow[k].member == m)
                jw_str(&w, NULL, c->cust[i].id);
    jw_close(&w, 0);
    return jw_end(&w, "customers from the mock");
}

/* Render externalcontact/get; a third-party app sees the follow users in
 * its range. BRK_ERR_NOTFOUND for an unknown id. */
enum brk_err
fixture_render_external_get(const struct fixture_corp *c,
                            const char *external_userid, struct dynbuf *out)
{
    long i = idx_find(c->cust_by_id, c->sz.customers, external_userid);
    const struct f_customer *e;
    struct jw w;
    int k;

    if (i < 0)
        return BRK_ERR_NOTFOUND;
    e = &c->cust[i];
    jw_begin(&w, out, 1);
    put_external_contact(&w, e, c->strict);
    jw_open(&w, "follow_user", 0);
    for (k = 0; k < e->nfollow; k++)
        if (sees(c, e->follow[k].member))
            put_follow(&w, c, e, &e->follow[k], 0);
    jw_close(&w, 0);
    jw_str(&w, "next_cursor", "");
    return jw_end(&w, "customer from the mock");
}

/*
 * Render externalcontact/batch/get_by_user. The cursor counts positions in
 * the sequence of (customer, follow slot) pairs; a third-party app gets
 * the pairs of requested members in its range. BRK_ERR_INVAL for a bad
 * cursor or limit; BRK_ERR_NOMEM.
 */
enum brk_err
fixture_render_external_batch(const struct fixture_corp *c,
                              const char *const *userids, size_t n,
                              const char *cursor, long limit,
                              struct dynbuf *out)
{
    long total = c->sz.customers * MAX_FOLLOW, off, pos, sent = 0;
    long next = -1;
    unsigned char *want = NULL;
    struct jw w;
    size_t i;

    off = cursor_parse(cursor, total);
    if (off < 0 || limit < 1 || limit > 100)
        return BRK_ERR_INVAL;
    want = brk_calloc((size_t)c->sz.members, 1);
    if (want == NULL) {
        dynbuf_free(out);
        return BRK_ERR_NOMEM;
    }
    for (i = 0; i < n; i++) {
        long m = member_find(c, userids[i]);

        if (m >= 0 && sees(c, m))
            want[m] = 1;
    }
    jw_begin(&w, out, 1);
    jw_open(&w, "external_contact_list", 0);
    for (pos = off; pos < total; pos++) {
        const struct f_customer *e = &c->cust[pos / MAX_FOLLOW];
        long k = pos % MAX_FOLLOW;

        if (k >= e->nfollow || !want[e->follow[k].member])
            continue;
        if (sent == limit) {
            next = pos;
            break;
        }
        jw_open(&w, NULL, 1);
        put_external_contact(&w, e, c->strict);
        put_follow(&w, c, e, &e->follow[k], 1);
        jw_str(&w, "mock_internal_note", "pair exported by the mock");
        jw_close(&w, 1);
        sent++;
    }
    jw_close(&w, 0);
    jw_cursor(&w, next);
    brk_free(want);
    return jw_end(&w, "customers from the mock");
}

static int
owner_wanted(const struct fixture_corp *c, long owner,
             const char *const *owners, size_t n)
{
    size_t i;

    if (n == 0)
        return sees(c, owner);
    for (i = 0; i < n; i++)
        if (member_find(c, owners[i]) == owner)
            return 1;
    return 0;
}

/* Render externalcontact/groupchat/list; unfiltered, a third-party app
 * gets the chats whose owner is in its range. BRK_ERR_INVAL for a bad
 * cursor or limit. */
enum brk_err
fixture_render_groupchat_list(const struct fixture_corp *c, long status_filter,
                              const char *const *owners, size_t n,
                              const char *cursor, long limit,
                              struct dynbuf *out)
{
    long off = cursor_parse(cursor, c->sz.chats), i, sent = 0, next = -1;
    struct jw w;

    if (off < 0 || limit < 1 || limit > 1000 || status_filter < 0 ||
        status_filter > 3)
        return BRK_ERR_INVAL;
    jw_begin(&w, out, 1);
    jw_open(&w, "group_chat_list", 0);
    for (i = off; i < c->sz.chats; i++) {
        const struct f_chat *g = &c->chat[i];

        if ((status_filter != 0 && g->status != status_filter) ||
            !owner_wanted(c, g->owner, owners, n))
            continue;
        if (sent == limit) {
            next = i;
            break;
        }
        jw_open(&w, NULL, 1);
        jw_str(&w, "chat_id", g->id);
        jw_long(&w, "status", g->status);
        jw_str(&w, "mock_internal_note", "chat under review");
        jw_close(&w, 1);
        sent++;
    }
    jw_close(&w, 0);
    jw_cursor(&w, next);
    return jw_end(&w, "chats from the mock");
}

/* Render externalcontact/groupchat/get. BRK_ERR_NOTFOUND for an unknown
 * chat_id. */
enum brk_err
fixture_render_groupchat_get(const struct fixture_corp *c, const char *chat_id,
                             int need_name, struct dynbuf *out)
{
    long i = idx_find(c->chat_by_id, c->sz.chats, chat_id);
    const struct f_chat *g;
    struct jw w;
    int k;

    if (i < 0)
        return BRK_ERR_NOTFOUND;
    g = &c->chat[i];
    jw_begin(&w, out, 1);
    jw_open(&w, "group_chat", 1);
    jw_str(&w, "chat_id", g->id);
    jw_strf(&w, "name", "%s%ld", PICK(chat_name, attr(g->h, 1)), i + 1);
    jw_userid(&w, "owner", g->owner);
    jw_long(&w, "create_time", g->create_time);
    jw_str(&w, "notice", PICK(notice, attr(g->h, 2)));
    jw_open(&w, "member_list", 0);
    for (k = 0; k < g->nmem; k++) {
        const struct f_chat_member *m = &g->mem[k];
        uint64_t mh = attr(g->h, 10 + (unsigned)k);

        jw_open(&w, NULL, 1);
        if (m->ext) {
            const struct f_customer *e = &c->cust[m->idx];

            jw_str(&w, "userid", e->id);
            jw_long(&w, "type", 2);
            /* unionid: third-party apps cannot get it (§4.7) */
            if (!c->strict)
                jw_strf(&w, "unionid", "oz%016" PRIx64 "%010" PRIx64,
                        attr(e->h, 4), attr(e->h, 5) >> 24);
        } else {
            jw_userid(&w, "userid", m->idx);
            jw_long(&w, "type", 1);
        }
        jw_long(&w, "join_time", g->create_time + (long)(mh % 864000));
        jw_long(&w, "join_scene", k == 0 ? 1 : (long)(mh % 3) + 1);
        if (k > 0) {
            jw_open(&w, "invitor", 1);
            jw_userid(&w, "userid", g->owner);
            jw_close(&w, 1);
        }
        jw_strf(&w, "group_nickname", "%s%d", m->ext ? "顾客" : "客服", k);
        if (need_name)
            put_member_name(&w, "name",
                            m->ext ? attr(c->cust[m->idx].h, 1)
                                   : c->mem[m->idx].h);
        jw_str(&w, "mock_internal_note", "member flagged for follow-up");
        jw_close(&w, 1);
    }
    jw_close(&w, 0);
    jw_open(&w, "admin_list", 0);
    if (g->admin >= 0) {
        jw_open(&w, NULL, 1);
        jw_userid(&w, "userid", g->admin);
        jw_close(&w, 1);
    }
    jw_close(&w, 0);
    jw_strf(&w, "member_version", "%016" PRIx64 "%016" PRIx64, attr(g->h, 3),
            attr(g->h, 4));
    jw_str(&w, "mock_internal_note", "chat risk score low");
    jw_close(&w, 1);
    return jw_end(&w, "chat from the mock");
}

/*---- Writes -------------------------------------------------------------*/

/* 1 when userid is a member in the app's visible range (always for a
 * leaky corp), 0 when outside it, -1 when no such member. */
int
fixture_member_visible(const struct fixture_corp *c, const char *userid)
{
    long m = member_find(c, userid);

    if (m < 0)
        return -1;
    return !c->strict || c->vis_mem[m];
}

/* 1 when department id is in the app's visible range (always for a leaky
 * corp), 0 when outside it, -1 when no such department. */
int
fixture_department_visible(const struct fixture_corp *c, long id)
{
    if (!dept_known(c, id))
        return -1;
    return !c->strict || c->vis_dept[id - 1];
}

/* 1 when the member userid follows the customer, 0 when not, -1 when no
 * such customer. */
int
fixture_customer_follower(const struct fixture_corp *c, const char *ext,
                          const char *userid)
{
    long i = idx_find(c->cust_by_id, c->sz.customers, ext);
    long m = member_find(c, userid);
    int f;

    if (i < 0)
        return -1;
    for (f = 0; m >= 0 && f < c->cust[i].nfollow; f++)
        if (c->cust[i].follow[f].member == m)
            return 1;
    return 0;
}

/* 1 when id is one of the corp tags the corp's admin made (not the app). */
int
fixture_corp_tag_known(const struct fixture_corp *c, const char *id)
{
    int k;

    for (k = 0; id != NULL && k < NCTAG; k++)
        if (strcmp(c->ctag_id[k], id) == 0)
            return 1;
    return 0;
}
