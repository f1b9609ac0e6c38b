/*
 * Event delivery: a lane's head entry sent to its service (see delivery.c
 * for the queue engine): a notice's XML, or a routed event opened,
 * filtered for the service's current grant and range; WeCom's envelope
 * signed and encrypted per service; retries with backoff, dead letters,
 * drops; metrics and the audit entry of each outcome.
 * The callback chains run here, in order:
 *   delivery_lane_send -> [a routed event: lane_send_event ->
 *     delivery_tenant_get -> on_send_tenant -> lane_send_tenant ->]
 *     lane_post -> on_sent -> one of
 *       [lane_welcome_record -> on_welcome_recorded ->] delivery_lane_ack
 *       lane_failed -> on_attempt -> delivery_lane_backoff, or
 *         lane_dead -> on_dead -> delivery_lane_next_after
 *   delivery_lane_drop -> delivery_lane_ack
 */
#include "delivery_int.h"

/* The entry is a routed event (WeCom's ciphertext), not a notice. */
static int
is_routed(const struct lane *l)
{
    const char *kind = delivery_entry_get(l, "kind");

    return kind != NULL && strcmp(kind, "event") == 0;
}

static void
count(struct lane *l, const char *result)
{
    char labels[160];

    metrics_inc(METRICS_DELIVERIES,
                metrics_labels(labels, sizeof(labels), "service",
                               delivery_svc_name(l->s), "result", result,
                               NULL));
}

/* type=delivery: names only, never a value. */
static void
audit_delivery(struct lane *l, const char *result)
{
    struct delivery *d = l->s->d;
    char now[24], attempts[16];
    const char *kv[30];
    const char *ct = delivery_entry_get(l, "ct");
    size_t n = 0;

    if (d->audit == NULL)
        return;
    snprintf(now, sizeof(now), "%lld", brk_wall_ms() / 1000);
    snprintf(attempts, sizeof(attempts), "%d", l->attempts + 1);
    kv[n++] = "type";
    kv[n++] = "delivery";
    kv[n++] = "service";
    kv[n++] = delivery_svc_name(l->s);
    kv[n++] = "suite";
    kv[n++] =
        delivery_entry_get(l, "suite") ? delivery_entry_get(l, "suite") : "";
    kv[n++] = "corpid";
    kv[n++] =
        delivery_entry_get(l, "corp") ? delivery_entry_get(l, "corp") : "";
    kv[n++] = "info_type";
    kv[n++] = delivery_entry_get(l, "it") ? delivery_entry_get(l, "it") : "";
    if (ct != NULL && ct[0] != '\0') {
        kv[n++] = "change_type";
        kv[n++] = ct;
    }
    kv[n++] = "event_id";
    kv[n++] = delivery_entry_get(l, "ev") ? delivery_entry_get(l, "ev") : "";
    kv[n++] = "result";
    kv[n++] = result;
    kv[n++] = "fields";
    kv[n++] = l->kept != NULL ? l->kept
              : is_routed(l)  ? ""
                              : "SuiteId,AuthCorpId,InfoType,TimeStamp";
    kv[n++] = "removed";
    kv[n++] = l->removed != NULL ? l->removed
              : delivery_entry_get(l, "removed")
                  ? delivery_entry_get(l, "removed")
                  : "";
    kv[n++] = "attempts";
    kv[n++] = attempts;
    kv[n++] = "status";
    kv[n++] = l->status;
    kv[n++] = "at";
    kv[n++] = now;
    audit_append(d->audit, NULL, kv, n);
}

static void
on_dead(struct lane *l, enum brk_err err, redisReply *r)
{
    (void)r;
    if (err) {
        delivery_lane_backoff(l, 1000);
        return;
    }
    delivery_lane_clear_entry(l);
    delivery_lane_next_after(l, "");
}

static void
lane_dead(struct lane *l, const char *reason)
{
    const char *keys[3] = {l->k.q, l->k.qa, l->k.dead};
    char n[16];
    const char *args[3] = {l->id, reason, n};

    snprintf(n, sizeof(n), "%d", l->attempts);
    count(l, "dead_letter");
    audit_delivery(l, "dead_letter");
    log_warn("delivery: event %s to service %s dead-lettered after %d "
             "attempt(s): corp=%s info_type=%s: %s",
             delivery_entry_get(l, "ev") ? delivery_entry_get(l, "ev") : "-",
             delivery_svc_name(l->s), l->attempts,
             delivery_entry_get(l, "corp") ? delivery_entry_get(l, "corp")
                                           : "-",
             delivery_entry_get(l, "it") ? delivery_entry_get(l, "it") : "-",
             reason);
    delivery_lane_eval(l, SCRIPT_DLV_DEAD, keys, 3, args, 3, on_dead);
}

static void
on_attempt(struct lane *l, enum brk_err err, redisReply *r)
{
    const char *at = delivery_entry_get(l, "at");
    long long queued = at ? strtoll(at, NULL, 10) : 0, age, left, delay;
    long long max_ms = l->s->d->cfg->delivery_max_age * 1000LL;

    if (!err && r->type == REDIS_REPLY_INTEGER)
        l->attempts = (int)r->integer;
    else
        l->attempts++;
    age = brk_wall_ms() - queued;
    if (age >= max_ms) {
        char reason[64];

        snprintf(reason, sizeof(reason), "not delivered within %ld s (%s)",
                 l->s->d->cfg->delivery_max_age, l->status);
        lane_dead(l, reason);
        return;
    }
    count(l, "retry");
    delay = delivery_backoff_ms(l->attempts);
    left = max_ms - age;
    /* one more attempt when the age runs out, then the dead letters */
    if (delay > left)
        delay = left;
    if (l->prio) {
        /* ahead of the queue only while the code is usable: then it waits
         * its turn, without the code */
        const char *rcv = delivery_entry_get(l, "rcv");
        long long end = (rcv ? strtoll(rcv, NULL, 10) : 0) + WELCOME_MS;

        if (delay > end - brk_wall_ms() + 1)
            delay = end - brk_wall_ms() + 1;
        if (delay < 0)
            delay = 0;
    }
    log_info("delivery: event %s to service %s failed (%s), attempt %d; "
             "again in %lld ms",
             delivery_entry_get(l, "ev") ? delivery_entry_get(l, "ev") : "-",
             delivery_svc_name(l->s), l->status, l->attempts, delay);
    delivery_lane_backoff(l, delay);
}

static void
lane_failed(struct lane *l)
{
    const char *argv[4] = {"HINCRBY", l->k.qa, l->id, "1"};

    delivery_lane_cmd(l, 4, argv, on_attempt);
}

/* Trimmed of ASCII whitespace, body is exactly "success". */
static int
is_success(const char *body, size_t len)
{
    while (len > 0 && strchr(" \t\r\n", body[0]) != NULL) {
        body++;
        len--;
    }
    while (len > 0 && strchr(" \t\r\n", body[len - 1]) != NULL)
        len--;
    return len == 7 && memcmp(body, "success", 7) == 0;
}

static void
on_welcome_recorded(struct lane *l, enum brk_err err, redisReply *r)
{
    (void)r;
    if (err)
        log_warn("delivery: service %s: the WelcomeCode of event %s it got "
                 "is not recorded (%s); send_welcome_msg will refuse it",
                 delivery_svc_name(l->s),
                 delivery_entry_get(l, "ev") ? delivery_entry_get(l, "ev")
                                             : "-",
                 brk_strerror(err));
    delivery_lane_ack(l);
}

/* The WelcomeCode reached the service: from now on it, and only it, may
 * use it (write_store.h keeps the record). */
static void
lane_welcome_record(struct lane *l)
{
    struct delivery *d = l->s->d;
    const char *rcv = delivery_entry_get(l, "rcv");
    struct lane_cmd *c = brk_calloc(1, sizeof(*c));
    enum brk_err err = BRK_ERR_NOMEM;

    if (c != NULL) {
        c->l = l;
        c->next = on_welcome_recorded;
        l->refs++;
        err = welcome_record(
            d->st, d->cfg->key_prefix, delivery_entry_get(l, "suite"),
            delivery_entry_get(l, "corp"), l->welcome, l->s->id,
            rcv ? strtoll(rcv, NULL, 10) : 0, delivery_on_lane_cmd, c);
        if (err) {
            l->refs--;
            brk_free(c);
        }
    }
    if (err) {
        l->refs++;
        on_welcome_recorded(l, err, NULL);
        delivery_lane_unref(l);
    }
}

static void
on_sent(enum brk_err err, long status, const char *body, size_t len,
        double seconds, void *arg)
{
    struct lane *l = arg;
    struct delivery *d = l->s->d;
    const char *rcv = delivery_entry_get(l, "rcv");
    char labels[160];
    long long rms = rcv ? strtoll(rcv, NULL, 10) : 0;

    (void)seconds;
    if (d->stopping || err == BRK_ERR_SHUTDOWN) {
        delivery_lane_end(l);
        delivery_lane_unref(l);
        return;
    }
    if (err)
        snprintf(l->status, sizeof(l->status), "%s",
                 err == BRK_ERR_UPSTREAM_TIMEOUT  ? "timeout"
                 : err == BRK_ERR_UPSTREAM_TOOBIG ? "reply_too_long"
                                                  : "no_reply");
    else
        snprintf(l->status, sizeof(l->status), "%ld", status);
    /* a data callback is delivered by any 200, as WeCom's */
    if (!err && status == 200 && (l->data || is_success(body, len))) {
        count(l, "delivered");
        if (rms > 0)
            metrics_observe(METRICS_DELIVERY_SECONDS,
                            metrics_labels(labels, sizeof(labels), "service",
                                           delivery_svc_name(l->s), NULL),
                            (double)(brk_wall_ms() - rms) / 1000.0);
        audit_delivery(l, "delivered");
        if (l->welcome[0] != '\0')
            lane_welcome_record(l);
        else
            delivery_lane_ack(l);
    } else {
        if (!err && status == 200)
            snprintf(l->status, sizeof(l->status), "200_not_success");
        lane_failed(l);
    }
    delivery_lane_unref(l);
}

/* The inner XML of a lifecycle notice, as WeCom writes its own. */
static enum brk_err
notice_xml(const struct lane *l, char *out, size_t len)
{
    const char *suite = delivery_entry_get(l, "suite"),
               *corp = delivery_entry_get(l, "corp");
    const char *it = delivery_entry_get(l, "it"),
               *ts = delivery_entry_get(l, "ts");
    int n;

    if (suite == NULL || corp == NULL || it == NULL || ts == NULL ||
        !keys_id_ok(suite) || !keys_id_ok(corp) || !delivery_is_lifecycle(it) ||
        ts[0] == '\0' || strspn(ts, "0123456789") != strlen(ts))
        return BRK_ERR_INVAL;
    n = snprintf(out, len,
                 "<xml><SuiteId><![CDATA[%s]]></SuiteId>"
                 "<InfoType><![CDATA[%s]]></InfoType>"
                 "<TimeStamp>%s</TimeStamp>"
                 "<AuthCorpId><![CDATA[%s]]></AuthCorpId></xml>",
                 suite, it, ts, corp);
    return n < 0 || (size_t)n >= len ? BRK_ERR_TOOBIG : BRK_OK;
}

/* The head entry goes nowhere (why is logged): counted, audited,
 * acknowledged. */
void
delivery_lane_drop(struct lane *l, const char *why)
{
    count(l, "dropped");
    audit_delivery(l, "dropped");
    log_warn("delivery: event %s for service %s dropped: %s",
             delivery_entry_get(l, "ev") ? delivery_entry_get(l, "ev") : "-",
             delivery_svc_name(l->s), why);
    delivery_lane_ack(l);
}

/*
 * POST inner (the inner XML) to the service, encrypted for receiveid with
 * its key, in WeCom's envelope: ToUserName receiveid, AgentID agentid
 * ("" for a command callback); a fresh timestamp, nonce and signature.
 */
static void
lane_post(struct lane *l, const char *inner, size_t inner_len,
          const char *receiveid, const char *agentid)
{
    struct dsvc *s = l->s;
    struct delivery *d = s->d;
    const char *ev = delivery_entry_get(l, "ev");
    char ts[24], nonce[17], sig[WECOM_CRYPTO_SIG_SIZE];
    char hdr[64], *enc = NULL, *url = NULL, *body = NULL;
    const char *headers[1] = {hdr};
    struct wecom_api_post p;
    size_t ulen, blen;
    enum brk_err err;

    snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
    if (delivery_random_alnum(nonce, 16) != BRK_OK ||
        wecom_crypto_encrypt(s->crypto, inner, inner_len, receiveid, &enc) ||
        wecom_crypto_sign(s->crypto, ts, nonce, enc, sig)) {
        err = BRK_ERR_CRYPTO;
        goto fail;
    }
    ulen = strlen(s->dlv.url) + 128;
    blen = strlen(enc) + strlen(receiveid) + strlen(agentid) + 160;
    url = brk_malloc(ulen);
    body = brk_malloc(blen);
    if (url == NULL || body == NULL) {
        err = BRK_ERR_NOMEM;
        goto fail;
    }
    /* the signature and nonce are hex and letters: no encoding needed */
    snprintf(url, ulen, "%s%cmsg_signature=%s&timestamp=%s&nonce=%s",
             s->dlv.url, strchr(s->dlv.url, '?') ? '&' : '?', sig, ts, nonce);
    snprintf(body, blen,
             "<xml><ToUserName><![CDATA[%s]]></ToUserName>"
             "<Encrypt><![CDATA[%s]]></Encrypt>"
             "<AgentID><![CDATA[%s]]></AgentID></xml>",
             receiveid, enc, agentid);
    snprintf(hdr, sizeof(hdr), "X-Broker-Event-Id: %s", ev);
    memset(&p, 0, sizeof(p));
    p.url = url;
    p.content_type = "text/xml";
    p.headers = headers;
    p.nheaders = 1;
    p.body = body;
    p.len = strlen(body);
    p.max_reply = DELIVERY_MAX_REPLY;
    l->refs++;
    err = wecom_api_post(d->http, &p, on_sent, l);
    if (err) {
        l->refs--;
        goto fail;
    }
    brk_free(enc);
    brk_free(url);
    brk_free(body);
    return;
fail:
    brk_free(enc);
    brk_free(url);
    brk_free(body);
    snprintf(l->status, sizeof(l->status), "%s", brk_strerror(err));
    lane_failed(l);
}

/* Whether the comma-separated names list holds name. */
static int
names_have(const char *list, const char *name)
{
    size_t n = strlen(name);
    const char *p = list;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0'))
            return 1;
        p = strchr(p, ',');
        if (p != NULL)
            p++;
    }
    return 0;
}

/* The SHA-256 of the WelcomeCode in the filtered XML (the filter writes
 * strings as CDATA) into out; -1 when there is none. */
static int
welcome_hash(const char *xml, size_t len, char out[65])
{
    static const char open[] = "<WelcomeCode><![CDATA[";
    const char *p, *end;

    p = memmem(xml, len, open, sizeof(open) - 1);
    if (p == NULL)
        return -1;
    p += sizeof(open) - 1;
    end = memmem(p, len - (size_t)(p - xml), "]]>", 3);
    if (end == NULL || end == p ||
        write_store_sha256(p, (size_t)(end - p), out) != BRK_OK)
        return -1;
    return 0;
}

/* At send time: a subject stored with the entry was in range when the
 * event took effect; anything else (list items) by the current range. */
struct send_range {
    json_t *subj;
    const struct vrange *v;
};

static int
send_in_range(void *arg, enum scope_record kind, const char *id)
{
    const struct send_range *r = arg;
    const json_t *e;
    size_t i;

    json_array_foreach(r->subj, i, e)
    {
        if (json_integer_value(json_array_get(e, 0)) == (json_int_t)kind &&
            json_is_string(json_array_get(e, 1)) &&
            strcmp(json_string_value(json_array_get(e, 1)), id) == 0)
            return 1;
    }
    if (kind == SCOPE_REC_CHAT)
        return 0;
    return delivery_range_has(r->v, NULL, kind, id);
}

/* The tenant as it is now is in (t, and v the range the service sees of
 * it, narrowed when own): decrypt, filter for the service's current grant,
 * and send; or drop the entry when it may not have it. */
static void
lane_send_tenant(struct lane *l, enum brk_err err,
                 const struct record_tenant *t, const struct vrange *v, int own)
{
    struct dsvc *s = l->s;
    struct delivery *d = s->d;
    const char *suite = delivery_entry_get(l, "suite"),
               *corp = delivery_entry_get(l, "corp");
    const char *enc = delivery_entry_get(l, "enc"),
               *agent = delivery_entry_get(l, "agent");
    const char *rcv = delivery_entry_get(l, "rcv");
    const char *rid_ok[1];
    struct suite_rt *su;
    struct send_range sr = {NULL, NULL};
    struct evfilter_ask ask;
    struct evfilter_result res;
    char *plain = NULL, *rid = NULL, why[96];
    size_t plen = 0, which;
    int have_res = 0;

    if (d->stopping || l->ending) {
        delivery_lane_end(l);
        return;
    }
    if (err == BRK_ERR_STORE || err == BRK_ERR_SHUTDOWN) {
        snprintf(l->status, sizeof(l->status), "%s", "store");
        lane_failed(l);
        return;
    }
    if (err == BRK_ERR_NOTFOUND || (err == BRK_OK && !t->active)) {
        delivery_lane_drop(l, "the tenant is no longer active");
        goto out;
    }
    if (err) {
        snprintf(l->status, sizeof(l->status), "%s", "tenant");
        lane_failed(l);
        goto out;
    }
    l->data = strcmp(delivery_entry_get(l, "cb"), "data") == 0;
    rid_ok[0] = l->data ? corp : suite;
    su = d->suites != NULL ? suites_find(d->suites, suite) : NULL;
    if (su == NULL || su->crypto == NULL ||
        wecom_crypto_decrypt(su->crypto, enc, strlen(enc), &plain, &plen,
                             &rid) ||
        wecom_crypto_check_receiveid(rid, rid_ok, 1, &which)) {
        delivery_lane_drop(l, "the stored event does not open");
        goto out;
    }
    sr.v = v;
    sr.subj = json_loads(delivery_entry_get(l, "subj"), 0, NULL);
    memset(&ask, 0, sizeof(ask));
    ask.callback = l->data ? SCOPE_CB_DATA : SCOPE_CB_COMMAND;
    ask.corpid = corp;
    ask.tenant = &t->grant;
    ask.service = &s->rec->grant;
    ask.caps = s->rec->caps;
    /* a WelcomeCode past its life is delivered without it */
    if (rcv == NULL || brk_wall_ms() - strtoll(rcv, NULL, 10) > WELCOME_MS)
        ask.caps &= ~(unsigned)CAP_EXTERNAL_WELCOME;
    ask.own_range = own;
    ask.in_range = send_in_range;
    ask.arg = &sr;
    if (d->scopes == NULL || !json_is_array(sr.subj) ||
        evfilter_apply(d->scopes, plain, plen, &ask, &res) != BRK_OK) {
        delivery_lane_drop(l, "the event filter refuses the stored event");
        goto out;
    }
    have_res = 1;
    if (res.reason != EVFILTER_DELIVER) {
        snprintf(why, sizeof(why), "the service may no longer have it (%s)",
                 evfilter_reason_name(res.reason));
        delivery_lane_drop(l, why);
        goto out;
    }
    l->kept = res.kept;
    l->removed = res.removed;
    res.kept = NULL;
    res.removed = NULL;
    if (names_have(l->kept, "WelcomeCode") &&
        welcome_hash(res.xml, res.xml_len, l->welcome) != 0)
        l->welcome[0] = '\0';
    lane_post(l, res.xml, res.xml_len, rid_ok[0], l->data ? agent : "");
out:
    if (have_res)
        evfilter_result_free(&res);
    if (plain != NULL)
        brk_free_secret(plain, plen);
    brk_free(rid);
    json_decref(sr.subj);
}

static void
on_send_tenant(enum brk_err err, const struct record_tenant *t,
               const struct vrange *v, int own, void *arg)
{
    struct lane *l = arg;

    lane_send_tenant(l, err, t, v, own);
    delivery_lane_unref(l);
}

/* A routed event: the service may still serve the tenant and take the
 * event; then the tenant's current record. */
static void
lane_send_event(struct lane *l)
{
    struct dsvc *s = l->s;
    struct delivery *d = s->d;
    const char *suite = delivery_entry_get(l, "suite"),
               *corp = delivery_entry_get(l, "corp");
    const char *it = delivery_entry_get(l, "it"),
               *ct = delivery_entry_get(l, "ct");
    const char *cb = delivery_entry_get(l, "cb");
    struct delivery_event ev;
    enum brk_err err;

    if (suite == NULL || corp == NULL || it == NULL || cb == NULL ||
        delivery_entry_get(l, "enc") == NULL ||
        delivery_entry_get(l, "subj") == NULL ||
        delivery_entry_get(l, "agent") == NULL || !keys_id_ok(suite) ||
        !keys_id_ok(corp)) {
        delivery_lane_drop(l, "an entry of an unknown shape");
        return;
    }
    memset(&ev, 0, sizeof(ev));
    ev.suite = suite;
    ev.corp = corp;
    ev.info_type = it;
    ev.change_type = ct;
    if (!delivery_decide_lifecycle(&ev, s->rec, &s->dlv, NULL)) {
        delivery_lane_drop(l, "the service may no longer serve the tenant");
        return;
    }
    /* the tenant from the engine's copies: one read and decode serves
     * every send of it until it changes */
    l->refs++;
    err = delivery_tenant_get(d->tens, suite, corp, s->rec, s->gen,
                              on_send_tenant, l);
    if (err) {
        lane_send_tenant(l, err, NULL, NULL, 0);
        delivery_lane_unref(l);
    }
}

/* Send the head entry. */
void
delivery_lane_send(struct lane *l)
{
    const char *kind = delivery_entry_get(l, "kind"),
               *ev = delivery_entry_get(l, "ev");
    const char *suite = delivery_entry_get(l, "suite");
    char inner[1024];

    if (kind == NULL || ev == NULL || strlen(ev) != DELIVERY_EVENT_ID_LEN ||
        suite == NULL) {
        delivery_lane_drop(l, "an entry of an unknown shape");
        return;
    }
    if (strcmp(kind, "event") == 0) {
        lane_send_event(l);
        return;
    }
    if (strcmp(kind, "notice") != 0 ||
        notice_xml(l, inner, sizeof(inner)) != BRK_OK) {
        delivery_lane_drop(l, "an entry of an unknown shape");
        return;
    }
    lane_post(l, inner, strlen(inner), suite, "");
}
