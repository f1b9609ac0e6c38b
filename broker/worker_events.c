/*
 * Event workers: directory, external contact and data events of a tenant
 * (see worker.c for the engine).
 * The callback chains run here, in order:
 *   change_contact: worker_tenant_state -> worker_on_contact_state ->
 *     [a deletion: worker_load_tenant ->] contact_apply ->
 *     on_contact_applied -> [else: worker_tenant_apply (the tenant kept,
 *     changed as Redis was) or worker_load_tenant ->] contact_done ->
 *     worker_deliver -> worker_job_done
 *   change_external_*: worker_external_event -> worker_tenant_state ->
 *     on_external_state -> one of
 *       contact add/edit/delete: custidx_add / custidx_del -> on_custidx
 *         (the customer index, write_store.h)
 *       chat create/update: groupchat/get -> on_groupchat ->
 *         on_owner_stored (the owner index)
 *       chat dismiss: on_owner_read -> on_owner_dropped
 *     -> worker_load_tenant -> external_deliver -> worker_deliver ->
 *     worker_job_done (worker_deliver hands each to delivery_route)
 *   data (change_app_admin): worker_data_event -> worker_open_event ->
 *     on_agentid -> worker_tenant_state -> on_admin_state ->
 *     agent/get_admin_list -> on_admin_list -> on_admins_stored ->
 *     worker_job_done
 *   data (anything else): worker_data_event -> worker_open_event ->
 *     worker_tenant_state -> on_data_state -> worker_load_tenant ->
 *     data_deliver -> worker_deliver
 */

#include "worker_int.h"
#include "write_store.h"

/*---- change_contact ----*/

static const char *
field_or_empty(const struct job *j, const char *name)
{
    const char *v = wecom_xml_get(j->ev, name);

    return v ? v : "";
}

/* A deletion is decided against the range before it: a member, a
 * department, or members and departments taken out of a tag. */
static int
contact_is_deletion(const struct job *j)
{
    const char *ct = field_or_empty(j, "ChangeType");

    if (strcmp(ct, "delete_user") == 0 || strcmp(ct, "delete_party") == 0)
        return 1;
    return strcmp(ct, "update_tag") == 0 &&
           (field_or_empty(j, "DelUserItems")[0] != '\0' ||
            field_or_empty(j, "DelPartyItems")[0] != '\0');
}

static void
contact_done(struct job *j)
{
    const char *ct = field_or_empty(j, "ChangeType");
    const char *kv[4] = {"info_type", "change_contact", "change_type", ct};

    worker_publish_change(j);
    worker_audit(j, "directory_changed", kv, 4);
    worker_deliver(j, "stored");
}

static void
on_contact_applied(struct job *j, struct redisReply *r)
{
    /* a deletion's range was read before it; anything else's after: the
     * copy kept with the change applied, or read again */
    if (j->ten_loaded) {
        (void)worker_tenant_apply(j, r); /* drops the copy it cannot use */
        contact_done(j);
        return;
    }
    if (worker_tenant_apply(j, r) == 0)
        contact_done(j);
    else
        worker_load_tenant(j, contact_done);
}

static void
contact_apply(struct job *j)
{
    char keys[3][KEYS_MAX], now[24];
    const char *argv[19];
    struct dir_contact c;
    int i;

    if (dir_contact_read(j->ev, &c) != BRK_OK) {
        worker_job_reject(j, "change_contact names no usable id");
        return;
    }
    for (i = 0; i < 3; i++)
        if (keys_tenant_sub(keys[i], sizeof(keys[i]), worker_prefix(j), j->corp,
                            worker_suite_id(j), worker_dir_names[i])) {
            worker_job_reject(j, "key names too long");
            return;
        }
    snprintf(now, sizeof(now), "%lld", worker_wall_s());
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_CONTACT_APPLY);
    argv[2] = "4";
    argv[3] = keys[0];
    argv[4] = keys[1];
    argv[5] = keys[2];
    argv[6] = j->tenant_key;
    argv[7] = c.type;
    argv[8] = c.user;
    argv[9] = c.new_user;
    argv[10] = c.depts;
    argv[11] = c.party;
    argv[12] = c.parent;
    argv[13] = c.tag;
    argv[14] = c.add_users;
    argv[15] = c.del_users;
    argv[16] = c.add_parties;
    argv[17] = c.del_parties;
    argv[18] = now;
    worker_job_redis(j, 19, argv, NULL, on_contact_applied);
}

void
worker_on_contact_state(struct job *j, struct redisReply *r)
{
    struct dir_contact c;

    if (worker_tenant_gate(j, r) != 0)
        return;
    if (dir_contact_read(j->ev, &c) != BRK_OK) {
        /* a change the directory cannot apply is never guessed at, nor
         * lost: the directory is read again from WeCom instead */
        log_warn("event %s: change_contact %s of corp %s names no usable "
                 "id; the directory is synced again",
                 j->id, field_or_empty(j, "ChangeType"), j->corp);
        worker_load_tdk(j, 0, worker_on_tdk_for_pcode);
        return;
    }
    if (contact_is_deletion(j))
        worker_load_tenant(j, contact_apply);
    else
        contact_apply(j);
}

/*---- External contact events ----*/

static void
external_deliver(struct job *j)
{
    worker_deliver(j, "recorded");
}

static enum brk_err
chat_owners_key(struct job *j, char *out, size_t len)
{
    return keys_tenant_sub(out, len, worker_prefix(j), j->corp,
                           worker_suite_id(j), "chatowner");
}

static void
on_owner_stored(struct job *j, struct redisReply *r)
{
    (void)r;
    worker_load_tenant(j, external_deliver);
}

/* Note the chat's owner in the index, so its dismissal can be decided. */
static void
on_groupchat(struct job *j, json_t *body)
{
    const char *owner = json_string_value(
        json_object_get(json_object_get(body, "group_chat"), "owner"));
    const char *chat = wecom_xml_get(j->ev, "ChatId");
    char key[KEYS_MAX];
    const char *argv[4];

    if (owner == NULL || owner[0] == '\0' ||
        strlen(owner) >= sizeof(j->chat_owner) || chat == NULL ||
        chat_owners_key(j, key, sizeof(key))) {
        log_warn("event %s: the owner of a chat of corp %s is not known; "
                 "range-narrowed services do not get it",
                 j->id, j->corp);
        worker_load_tenant(j, external_deliver);
        return;
    }
    snprintf(j->chat_owner, sizeof(j->chat_owner), "%s", owner);
    argv[0] = "HSET";
    argv[1] = key;
    argv[2] = chat;
    argv[3] = owner;
    worker_job_redis(j, 4, argv, NULL, on_owner_stored);
}

/* WeCom does not know the chat (any more): no owner, decided without. */
static int
on_groupchat_error(struct job *j, long errcode)
{
    log_warn("event %s: externalcontact/groupchat/get: errcode %ld; the "
             "chat's owner is not known",
             j->id, errcode);
    worker_load_tenant(j, external_deliver);
    return 1;
}

static void
on_owner_dropped(struct job *j, struct redisReply *r)
{
    (void)r;
    worker_load_tenant(j, external_deliver);
}

static void
on_owner_read(struct job *j, struct redisReply *r)
{
    const char *chat = wecom_xml_get(j->ev, "ChatId");
    char key[KEYS_MAX];
    const char *argv[3];

    if (r->type == REDIS_REPLY_STRING && r->len < sizeof(j->chat_owner))
        snprintf(j->chat_owner, sizeof(j->chat_owner), "%s", r->str);
    if (chat_owners_key(j, key, sizeof(key))) {
        worker_job_reject(j, "key names too long");
        return;
    }
    /* a dismissed chat is gone for good */
    argv[0] = "HDEL";
    argv[1] = key;
    argv[2] = chat;
    worker_job_redis(j, 3, argv, NULL, on_owner_dropped);
}

static void
on_custidx(enum brk_err err, struct redisReply *r, void *arg)
{
    struct job *j = arg;

    if (!err && r->type == REDIS_REPLY_ERROR)
        err = BRK_ERR_STORE;
    if (err) {
        worker_job_fail(j, err, 0, "the customer index is not updated: %s",
                        brk_strerror(err));
        return;
    }
    worker_load_tenant(j, external_deliver);
}

/*
 * The customer index follows WeCom's relations (wecom-protocol.md §2.15):
 * a customer added or edited by a member has that member as a follow
 * user; deleted by the member, or the member deleted by the customer, no
 * more. A failed transfer changes no relation. 1 when a command was sent
 * (on_custidx goes on), 0 when the event changes nothing in the index.
 */
static int
external_custidx(struct job *j, const char *ct)
{
    const char *pair[2];
    int add;
    enum brk_err err;

    add = strcmp(ct, "add_external_contact") == 0 ||
          strcmp(ct, "add_half_external_contact") == 0 ||
          strcmp(ct, "edit_external_contact") == 0;
    if (!add && strcmp(ct, "del_external_contact") != 0 &&
        strcmp(ct, "del_follow_user") != 0)
        return 0;
    pair[0] = field_or_empty(j, "ExternalUserID");
    pair[1] = field_or_empty(j, "UserID");
    if (pair[0][0] == '\0' || pair[1][0] == '\0' || strlen(pair[0]) > 128 ||
        strlen(pair[1]) > 128)
        return 0;
    err = add ? custidx_add(j->w->st, worker_prefix(j), worker_suite_id(j),
                            j->corp, pair, 1, on_custidx, j)
              : custidx_del(j->w->st, worker_prefix(j), worker_suite_id(j),
                            j->corp, pair, 1, on_custidx, j);
    if (err)
        worker_job_fail(j, err, 0, "the customer index is not updated: %s",
                        brk_strerror(err));
    return 1;
}

static void
on_external_state(struct job *j, struct redisReply *r)
{
    const char *ct = field_or_empty(j, "ChangeType");
    const char *chat = wecom_xml_get(j->ev, "ChatId");
    char key[KEYS_MAX];
    const char *argv[3];
    json_t *req;
    const char *status;
    long long ets, gone;

    if (worker_tenant_gate(j, r) != 0)
        return;
    /* only an active tenant has a corp token, services and an index */
    if (worker_state_of(r, &status, &ets, &gone) == 0 &&
        strcmp(status, "active") == 0 &&
        strcmp(j->info_label, "change_external_contact") == 0 &&
        external_custidx(j, ct))
        return;
    if (worker_state_of(r, &status, &ets, &gone) != 0 ||
        strcmp(status, "active") != 0 ||
        strcmp(j->info_label, "change_external_chat") != 0 || chat == NULL ||
        chat[0] == '\0' || strlen(chat) > 128) {
        worker_load_tenant(j, external_deliver);
        return;
    }
    if (strcmp(ct, "dismiss") == 0) {
        if (chat_owners_key(j, key, sizeof(key))) {
            worker_job_reject(j, "key names too long");
            return;
        }
        argv[0] = "HGET";
        argv[1] = key;
        argv[2] = chat;
        worker_job_redis(j, 3, argv, NULL, on_owner_read);
        return;
    }
    /* create, update: WeCom says who owns it (budgeted like a sync) */
    req = json_pack("{s:s,s:i}", "chat_id", chat, "need_name", 0);
    j->api_on_wecom = on_groupchat_error;
    worker_job_api(j, "externalcontact/groupchat/get", "POST",
                   "/cgi-bin/externalcontact/groupchat/get", TOK_CORP_Q, req,
                   on_groupchat);
}

void
worker_external_event(struct job *j)
{
    const char *kv[12];
    size_t n = 0;
    static const char *const ids[] = {"ChangeType", "UserID", "ExternalUserID",
                                      "ChatId", "Id"};
    size_t i;

    kv[n++] = "info_type";
    kv[n++] = j->info_label;
    for (i = 0; i < nitems(ids); i++) {
        const char *v = wecom_xml_get(j->ev, ids[i]);

        if (v != NULL && strlen(v) <= 128) {
            kv[n++] = ids[i];
            kv[n++] = v;
        }
    }
    worker_audit(j, "external_change", kv, n);
    worker_publish_change(j);
    worker_tenant_state(j, on_external_state);
}

/*---- Data callbacks: the app's admins ----*/

static void
on_admins_stored(struct job *j, struct redisReply *r)
{
    const char *kv[2] = {"info_type", "change_app_admin"};

    if (r->type == REDIS_REPLY_INTEGER && r->integer < 0) {
        worker_job_done(j, "not_a_tenant");
        return;
    }
    worker_audit(j, "admins_stored", kv, 2);
    worker_publish_change(j);
    worker_job_done(j, "stored");
}

static void
on_admin_list(struct job *j, json_t *body)
{
    char *admins = NULL, now[24];
    const char *argv[6];
    enum brk_err err;

    err = dir_admin_list(body, &admins);
    if (err) {
        worker_job_fail(j, err, 0, "agent/get_admin_list: unexpected reply");
        return;
    }
    snprintf(now, sizeof(now), "%lld", worker_wall_s());
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_TENANT_ADMINS_STORE);
    argv[2] = "1";
    argv[3] = j->tenant_key;
    argv[4] = admins;
    argv[5] = now;
    worker_job_redis(j, 6, argv, NULL, on_admins_stored);
    brk_free(admins);
}

static void
on_admin_state(struct job *j, struct redisReply *r)
{
    char path[96];
    const char *status;
    long long ets, gone;
    json_t *req;

    if (worker_state_of(r, &status, &ets, &gone) != 0) {
        worker_job_fail(j, BRK_ERR_STORE, 0, "unexpected tenant state reply");
        return;
    }
    if (strcmp(status, "active") != 0) {
        worker_job_done(j, status[0] ? "not_active" : "not_a_tenant");
        return;
    }
    snprintf(path, sizeof(path), "/cgi-bin/agent/get_admin_list");
    req = json_pack("{s:I}", "agentid", (json_int_t)j->agentid);
    worker_job_api(j, "agent/get_admin_list", "POST", path, TOK_CORP_Q, req,
                   on_admin_list);
}

static void
on_agentid(struct job *j, struct redisReply *r)
{
    if (r->type != REDIS_REPLY_STRING) {
        worker_job_done(j, "not_a_tenant");
        return;
    }
    j->agentid = strtoll(r->str, NULL, 10);
    worker_tenant_state(j, on_admin_state);
}

static void
data_deliver(struct job *j)
{
    worker_deliver(j, "routed");
}

static void
on_data_state(struct job *j, struct redisReply *r)
{
    const char *status;
    long long ets, gone;

    if (worker_state_of(r, &status, &ets, &gone) != 0) {
        worker_job_fail(j, BRK_ERR_STORE, 0, "unexpected tenant state reply");
        return;
    }
    if (strcmp(status, "active") != 0) {
        worker_job_done(j, status[0] ? "not_active" : "not_a_tenant");
        return;
    }
    worker_load_tenant(j, data_deliver);
}

/*
 * A data callback in a tenant's queue (receiveid the corp). The change of
 * the app's admins: re-read them. Anything else (what members send the
 * app): to the services with the messages capability whose range holds
 * the sender (delivery_route decides).
 */
void
worker_data_event(struct job *j)
{
    const char *event, *msgtype;
    const char *argv[3];
    int admin;

    if (j->lane == NULL) {
        /* queued by an earlier version, for no one */
        worker_job_done(j, "ignored");
        return;
    }
    if (worker_open_event(j, j->lane->corp) != 0)
        return;
    event = wecom_xml_get(j->ev, "Event");
    admin = event != NULL && strcmp(event, "change_app_admin") == 0;
    msgtype = wecom_xml_get(j->ev, "MsgType");
    /* a label for metrics and the audit: WeCom's MsgType when it is one */
    if (admin)
        snprintf(j->info_label, sizeof(j->info_label), "change_app_admin");
    else if (msgtype != NULL && msgtype[0] != '\0' &&
             strlen(msgtype) < sizeof(j->info_label) &&
             strspn(msgtype, "abcdefghijklmnopqrstuvwxyz_") == strlen(msgtype))
        snprintf(j->info_label, sizeof(j->info_label), "%s", msgtype);
    else
        snprintf(j->info_label, sizeof(j->info_label), "data");
    snprintf(j->corp, sizeof(j->corp), "%s", j->lane->corp);
    j->event_ts = brk_wall_ms() / 1000;
    if (keys_tenant(j->tenant_key, sizeof(j->tenant_key), worker_prefix(j),
                    j->corp, worker_suite_id(j))) {
        worker_job_reject(j, "key names too long");
        return;
    }
    if (!admin) {
        worker_tenant_state(j, on_data_state);
        return;
    }
    argv[0] = "HGET";
    argv[1] = j->tenant_key;
    argv[2] = "agentid";
    worker_job_redis(j, 3, argv, NULL, on_agentid);
}
