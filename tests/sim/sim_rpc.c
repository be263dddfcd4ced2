/*
 * sim_rpc.c - the simulated Alibaba Cloud RPC endpoint (every path that is
 * not under /_sim/).  A request is recorded first, so that rejected and
 * faulted ones are visible to the tests too; then either the configured
 * fault takes over, or the request goes through Alibaba's checks in
 * Alibaba's order (parameters, timestamp, AccessKeyId, signature, nonce,
 * SecurityToken, Version/Format, Action, JobId and job state) and gets
 * Alibaba's JSON answer.  Delayed and hung answers are parked on a timer
 * with the connection's close callback armed, so a client that gives up
 * never leaves us holding a freed request.
 */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>

enum sim_act {
    ACT_REPLY, /* send ans */
    ACT_HANG,  /* never answer; wait for the client to leave */
    ACT_RESET, /* abort the TCP connection */
};

/* What we will answer, built at arrival so that a delayed answer reflects
 * the state (job table, nonces) at the moment the request arrived. */
struct answer {
    int status;
    char code[SIM_CODE_MAX];
    const char *ctype;
    struct evbuffer *body;
    char rid[37];
};

/* Only filled when logging (not --quiet); sanitised copies. */
struct loginfo {
    int64_t start_ms;
    char method[8];
    char path[48];
    char action[40];
    char job[72];
    char akid[40];
};

struct sim_pending {
    struct sim *sim;
    struct sim_pending *prev, *next;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *timer;
    struct event *watch; /* notices the client leaving (see on_watch) */
    uint64_t seq;
    enum sim_act act;
    struct answer ans;
    struct loginfo li;
};

/* ------------------------------------------------------------- helpers */

const char *sim_method_name(int cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "OTHER";
    }
}

void sim_fault_reset(struct sim_fault *f)
{
    free(f->message);
    free(f->body);
    memset(f, 0, sizeof(*f));
    f->mode = SIM_FAULT_NONE;
    f->count = -1;
    /* The defaults a {"mode":"error"} body gets. */
    f->status = 503;
    snprintf(f->code, sizeof(f->code), "%s", "ServiceUnavailable");
}

/* Request bytes go to the log only as printable ASCII. */
static void copy_printable(char *dst, size_t dstlen, const char *src,
                           size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < len && o + 1 < dstlen; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[o] = '\0';
}

static bool is_form_ctype(const char *ct)
{
    static const char form[] = "application/x-www-form-urlencoded";
    size_t l = sizeof(form) - 1;

    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, form, l) != 0)
        return false;
    return ct[l] == '\0' || ct[l] == ';' || ct[l] == ' ' || ct[l] == '\t';
}

static bool valid_job_id(const struct sim_param *prm)
{
    if (prm->value_len < 3 || prm->value_len > 66)
        return false;
    if (prm->value[0] != 'j' || prm->value[1] != '-')
        return false;
    for (size_t i = 2; i < prm->value_len; i++) {
        unsigned char c = (unsigned char)prm->value[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

static bool deletable_state(const char *st)
{
    static const char *const ok[] = {"Ready", "Stopped", "Finished",
                                     "Cancelled", "Error"};

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strcmp(st, ok[i]) == 0)
            return true;
    }
    return false;
}

static int two(const char *s)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return -1;
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* Exactly YYYY-MM-DDTHH:MM:SSZ, and a real calendar time. */
static int parse_timestamp(const char *s, size_t len, int64_t *out_ms)
{
    struct tm tm, chk;
    int y1, y2;
    time_t t;

    if (len != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
        s[13] != ':' || s[16] != ':' || s[19] != 'Z')
        return -1;
    memset(&tm, 0, sizeof(tm));
    y1 = two(s);
    y2 = two(s + 2);
    tm.tm_mon = two(s + 5);
    tm.tm_mday = two(s + 8);
    tm.tm_hour = two(s + 11);
    tm.tm_min = two(s + 14);
    tm.tm_sec = two(s + 17);
    if (y1 < 0 || y2 < 0 || tm.tm_mon < 1 || tm.tm_mday < 1 ||
        tm.tm_hour < 0 || tm.tm_min < 0 || tm.tm_sec < 0)
        return -1;
    tm.tm_year = y1 * 100 + y2 - 1900;
    tm.tm_mon -= 1;
    chk = tm;
    t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    /* timegm normalises 02-30 to 03-02; a round trip catches that. */
    if (!gmtime_r(&t, &tm) || tm.tm_year != chk.tm_year ||
        tm.tm_mon != chk.tm_mon || tm.tm_mday != chk.tm_mday ||
        tm.tm_hour != chk.tm_hour || tm.tm_min != chk.tm_min ||
        tm.tm_sec != chk.tm_sec)
        return -1;
    *out_ms = (int64_t)t * 1000;
    return 0;
}

/* ------------------------------------------------------------- answers */

static void answer_error(struct answer *a, int status, const char *code,
                         const char *msg)
{
    static const char rec[] = "https://api.aliyun.com/troubleshoot?q=";
    size_t clen = strlen(code);
    char *url = malloc(sizeof(rec) + clen);

    a->status = status;
    snprintf(a->code, sizeof(a->code), "%s", code);
    a->ctype = "application/json;charset=utf-8";
    sim_request_id(a->rid);
    evbuffer_add_printf(a->body,
                        "{\"RequestId\":\"%s\",\"HostId\":\"smc.aliyuncs.com\","
                        "\"Code\":",
                        a->rid);
    sim_json_str(a->body, code, clen);
    evbuffer_add(a->body, ",\"Message\":", 11);
    sim_json_str(a->body, msg, strlen(msg));
    evbuffer_add(a->body, ",\"Recommend\":", 13);
    if (url) {
        memcpy(url, rec, sizeof(rec) - 1);
        memcpy(url + sizeof(rec) - 1, code, clen);
        sim_json_str(a->body, url, sizeof(rec) - 1 + clen);
    } else {
        evbuffer_add(a->body, "\"\"", 2);
    }
    evbuffer_add(a->body, "}", 1);
    free(url);
}

static void answer_ok(struct answer *a)
{
    a->status = 200;
    a->code[0] = '\0';
    a->ctype = "application/json;charset=utf-8";
    sim_request_id(a->rid);
    evbuffer_add_printf(a->body, "{\"RequestId\":\"%s\"}", a->rid);
}

static const char *default_message(const char *code)
{
    static const struct {
        const char *code, *msg;
    } m[] = {
        {"ServiceUnavailable",
         "The request has failed due to a temporary failure of the server."},
        {"InternalError", "The request processing has failed due to some "
                          "unknown error, exception or failure."},
        {"Throttling.User", "Request was denied due to user flow control."},
        {"Throttling", "Request was denied due to request throttling."},
        {"SignatureDoesNotMatch",
         "Specified signature is not matched with our calculation."},
    };

    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        if (strcmp(code, m[i].code) == 0)
            return m[i].msg;
    }
    return "Simulated error.";
}

/* --------------------------------------------------------- the checks */

struct rpcctx {
    int cmd;
    const char *path;
    struct sim_params *p;
    int parse_rc;
    const struct sim_param *dup;
    bool too_large;
    const struct sim_cred *cred;
    bool sig_valid;
    int64_t now_ms;
};

static const char *const REQUIRED[] = {
    "Action",          "Version",          "Format",
    "AccessKeyId",     "SignatureMethod",  "SignatureVersion",
    "SignatureNonce",  "Timestamp",        "Signature",
};

/* The checks of Alibaba's RPC front end, in its order. */
static void evaluate(struct sim *sim, struct rpcctx *c, struct answer *a)
{
    const struct sim_params *p = c->p;
    const struct sim_param *prm, *job;
    char msg[256];
    int64_t ts_ms;
    const char *state;
    int nrc;

    if (strcmp(c->path, "/") != 0) {
        answer_error(a, 404, "InvalidAction.NotFound",
                     "Specified api is not found, please check your url and "
                     "method.");
        return;
    }
    if (c->cmd != EVHTTP_REQ_GET && c->cmd != EVHTTP_REQ_POST) {
        answer_error(a, 400, "UnsupportedHTTPMethod",
                     "This http method is not supported.");
        return;
    }
    if (c->too_large) {
        answer_error(a, 413, "RequestEntityTooLarge",
                     "The request body exceeds 64 KiB.");
        return;
    }
    if (c->parse_rc != SIM_PARSE_OK) {
        answer_error(a, 400, "InvalidParameter",
                     c->parse_rc == SIM_PARSE_TOO_MANY
                         ? "Too many parameters."
                         : "The parameters are not correctly "
                           "percent-encoded.");
        return;
    }
    if (c->dup) {
        char nm[64];
        copy_printable(nm, sizeof(nm), c->dup->name, c->dup->name_len);
        snprintf(msg, sizeof(msg), "The parameter \"%s\" is duplicated.",
                 nm);
        answer_error(a, 400, "InvalidParameter", msg);
        return;
    }
    /* 1. mandatory parameters */
    for (size_t i = 0; i < sizeof(REQUIRED) / sizeof(REQUIRED[0]); i++) {
        prm = sim_params_find(p, REQUIRED[i]);
        if (!prm || prm->value_len == 0) {
            snprintf(msg, sizeof(msg),
                     "The input parameter \"%s\" that is mandatory for "
                     "processing this request is not supplied.",
                     REQUIRED[i]);
            answer_error(a, 400, "MissingParameter", msg);
            return;
        }
    }
    /* 2. signature method and version */
    if (!sim_param_equals(sim_params_find(p, "SignatureMethod"),
                          "HMAC-SHA1")) {
        answer_error(a, 400, "InvalidParameter",
                     "The specified parameter \"SignatureMethod\" is not "
                     "valid; only HMAC-SHA1 is supported.");
        return;
    }
    if (!sim_param_equals(sim_params_find(p, "SignatureVersion"), "1.0")) {
        answer_error(a, 400, "InvalidParameter",
                     "The specified parameter \"SignatureVersion\" is not "
                     "valid; only 1.0 is supported.");
        return;
    }
    /* 3. timestamp */
    prm = sim_params_find(p, "Timestamp");
    if (parse_timestamp(prm->value, prm->value_len, &ts_ms) != 0) {
        answer_error(a, 400, "InvalidTimeStamp.Format",
                     "Specified time stamp or date value is not well "
                     "formatted.");
        return;
    }
    if (ts_ms > c->now_ms + SIM_WINDOW_MS ||
        ts_ms < c->now_ms - SIM_WINDOW_MS) {
        answer_error(a, 400, "InvalidTimeStamp.Expired",
                     "Specified time stamp or date value is expired.");
        return;
    }
    /* 4. access key */
    if (!c->cred) {
        answer_error(a, 404, "InvalidAccessKeyId.NotFound",
                     "Specified access key is not found.");
        return;
    }
    /* 5. signature (computed by the caller, compared in constant time) */
    if (!c->sig_valid) {
        answer_error(a, 400, "SignatureDoesNotMatch",
                     "Specified signature is not matched with our "
                     "calculation.");
        return;
    }
    /* 6. nonce, only remembered once the request is authentic */
    prm = sim_params_find(p, "SignatureNonce");
    nrc = sim_nonces_use(&sim->nonces, prm->value, prm->value_len,
                         c->now_ms);
    if (nrc < 0) {
        answer_error(a, 500, "InternalError", "Out of memory.");
        return;
    }
    if (nrc > 0) {
        answer_error(a, 400, "SignatureNonceUsed",
                     "Specified signature nonce was used already.");
        return;
    }
    /* 7. STS token bound to the access key */
    if (c->cred->token) {
        size_t tl = strlen(c->cred->token);
        prm = sim_params_find(p, "SecurityToken");
        if (!prm || prm->value_len != tl ||
            CRYPTO_memcmp(prm->value, c->cred->token, tl) != 0) {
            answer_error(a, 400, "InvalidSecurityToken.Mismatch",
                         "Specified SecurityToken mismatch with the "
                         "AccessKey.");
            return;
        }
    }
    /* 8. API version and response format */
    if (!sim_param_equals(sim_params_find(p, "Version"), "2019-06-01")) {
        answer_error(a, 400, "InvalidVersion",
                     "Specified parameter Version is not valid.");
        return;
    }
    prm = sim_params_find(p, "Format");
    if (!(prm->value_len == 4 && strncasecmp(prm->value, "JSON", 4) == 0)) {
        answer_error(a, 400, "InvalidParameter.Format",
                     "The simulator only answers Format=JSON.");
        return;
    }
    /* 9. action */
    if (!sim_param_equals(sim_params_find(p, "Action"),
                          "DeleteReplicationJob")) {
        answer_error(a, 404, "InvalidAction.NotFound",
                     "Specified api is not found, please check your url and "
                     "method.");
        return;
    }
    /* 10. the job */
    job = sim_params_find(p, "JobId");
    if (!job || job->value_len == 0) {
        answer_error(a, 400, "MissingJobId",
                     "The input parameter \"JobId\" that is mandatory for "
                     "processing this request is not supplied.");
        return;
    }
    if (!valid_job_id(job)) {
        answer_error(a, 400, "InvalidParameter",
                     "The specified parameter \"JobId\" is not valid.");
        return;
    }
    state = sim_jobs_get(&sim->jobs, job->value, job->value_len);
    if (!state && !sim->opt.all_jobs_exist) {
        answer_error(a, 404, "InvalidJobId.NotFound",
                     "The specified job does not exist.");
        return;
    }
    if (state && !deletable_state(state)) {
        answer_error(a, 400, "ReplicationJob.InvalidStatus",
                     "The operation is not allowed in the current status of "
                     "the replication job.");
        return;
    }
    /* With --all-jobs-exist a job not in the table is an implicit Ready
     * job that survives deletion; a listed one is really deleted. */
    if (state)
        sim_jobs_del(&sim->jobs, job->value, job->value_len);
    answer_ok(a);
}

/* ------------------------------------------------------ sending, holding */

static void log_line(struct sim *sim, const struct loginfo *li,
                     const char *outcome)
{
    if (sim->opt.quiet)
        return;
    fprintf(stderr, "smc-sim: %s %s action=%s job=%s ak=%s -> %s (%lld ms)\n",
            li->method, li->path, li->action[0] ? li->action : "-",
            li->job[0] ? li->job : "-", li->akid[0] ? li->akid : "-",
            outcome, (long long)(sim_now_ms() - li->start_ms));
}

static void record_outcome(struct sim *sim, uint64_t seq, int status,
                           const char *code)
{
    struct sim_record *rec = seq ? sim_records_get(&sim->records, seq) : NULL;

    if (!rec)
        return;
    rec->status = (int16_t)status;
    snprintf(rec->code, sizeof(rec->code), "%s", code);
}

/* Sends a and frees its body. */
static void send_answer(struct sim *sim, struct evhttp_request *req,
                        uint64_t seq, struct answer *a,
                        const struct loginfo *li)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "Content-Type", a->ctype);
    if (a->rid[0])
        evhttp_add_header(h, "x-acs-request-id", a->rid);
    record_outcome(sim, seq, a->status, a->code);
    sim->stats.answered++;
    if (a->status == 200 && a->rid[0])
        sim->stats.ok++;
    if (!sim->opt.quiet) {
        char out[96];
        snprintf(out, sizeof(out), "%d %s", a->status, a->code);
        log_line(sim, li, out);
    }
    evhttp_send_reply(req, a->status, NULL, a->body);
    evbuffer_free(a->body);
    a->body = NULL;
}

static void pending_free(struct sim_pending *pd)
{
    struct sim *sim = pd->sim;

    if (pd->prev)
        pd->prev->next = pd->next;
    else
        sim->pending = pd->next;
    if (pd->next)
        pd->next->prev = pd->prev;
    sim->npending--;
    if (pd->timer)
        event_free(pd->timer);
    if (pd->watch)
        event_free(pd->watch);
    if (pd->ans.body)
        evbuffer_free(pd->ans.body);
    free(pd);
}

/* The client went away while we held its request.  libevent 2.1 does not
 * read from a connection whose request is still unanswered, so it would
 * not notice; our own watcher on the socket does, and we free the
 * connection (and with it the request) ourselves. */
static void abandon(struct sim *sim, struct sim_pending *pd)
{
    struct evhttp_connection *evcon = pd->evcon;

    sim->stats.abandoned++;
    log_line(sim, &pd->li,
             pd->act == ACT_HANG ? "hang ended: client closed"
                                 : "client closed before the answer");
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    pending_free(pd);
    evhttp_connection_free(evcon);
}

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    struct sim_pending *pd = arg;
    struct sim *sim = pd->sim;

    if (!(what & EV_CLOSED)) {
        /* Readable: EOF or an error means gone; bytes mean the client
         * pipelined another request, which is none of our business yet,
         * so stop polling for reads (EV_CLOSED still reports a FIN). */
        char b;
        ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0) {
            event_free(pd->watch);
            pd->watch = event_new(sim->base, fd, EV_CLOSED | EV_PERSIST,
                                  on_watch, pd);
            if (pd->watch)
                (void)event_add(pd->watch, NULL);
            return;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
                      errno == EINTR))
            return;
    }
    abandon(sim, pd);
}

/* Fallback for libevent failing the connection itself before on_watch
 * sees anything (e.g. an I/O error it noticed first).  Depending on the
 * path, the unanswered request has been detached from the connection (then
 * it is ours to free) or is still attached (then the connection frees it
 * right after this callback). */
static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    struct sim_pending *pd = arg;
    struct sim *sim = pd->sim;
    struct evhttp_request *req = pd->req;

    (void)evcon;
    sim->stats.abandoned++;
    log_line(sim, &pd->li,
             pd->act == ACT_HANG ? "hang ended: client closed"
                                 : "client closed before the answer");
    pending_free(pd);
    if (evhttp_request_get_connection(req) == NULL)
        evhttp_request_free(req);
}

/* Abort the TCP connection so the client sees a reset, not a clean EOF.
 * evhttp_connection_free() would shutdown(SHUT_WR) first and send a FIN;
 * connect(AF_UNSPEC) makes Linux drop the connection with an RST right
 * away, after which that shutdown is a harmless ENOTCONN. */
static void reset_connection(struct sim *sim, struct sim_pending *pd)
{
    struct evhttp_connection *evcon = pd->evcon;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;

    if (fd >= 0) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        struct sockaddr sa;
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        memset(&sa, 0, sizeof(sa));
        sa.sa_family = AF_UNSPEC;
        (void)connect(fd, &sa, sizeof(sa));
    }
    sim->stats.resets++;
    log_line(sim, &pd->li, "reset");
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    pending_free(pd);
    /* Frees the (still attached) request too. */
    evhttp_connection_free(evcon);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sim_pending *pd = arg;
    struct sim *sim = pd->sim;

    (void)fd;
    (void)what;
    if (pd->act == ACT_RESET) {
        reset_connection(sim, pd);
    } else if (pd->act == ACT_REPLY) {
        struct evhttp_request *req = pd->req;
        struct answer a = pd->ans;
        struct loginfo li = pd->li;
        uint64_t seq = pd->seq;

        evhttp_connection_set_closecb(pd->evcon, NULL, NULL);
        pd->ans.body = NULL;
        pending_free(pd);
        send_answer(sim, req, seq, &a, &li);
    }
}

/* Park the request.  Returns -1 (and keeps ownership of a) on failure. */
static int hold(struct sim *sim, struct evhttp_request *req, uint64_t seq,
                enum sim_act act, struct answer *a, const struct loginfo *li,
                int64_t delay_ms)
{
    struct sim_pending *pd = NULL;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);

    if (!evcon)
        return -1;
    pd = calloc(1, sizeof(*pd));
    if (!pd)
        return -1;
    pd->sim = sim;
    pd->req = req;
    pd->evcon = evcon;
    pd->seq = seq;
    pd->act = act;
    pd->li = *li;
    if (act != ACT_HANG) {
        struct timeval tv = {.tv_sec = (time_t)(delay_ms / 1000),
                             .tv_usec = (suseconds_t)(delay_ms % 1000) * 1000};
        pd->timer = evtimer_new(sim->base, on_timer, pd);
        if (!pd->timer || evtimer_add(pd->timer, &tv) != 0) {
            if (pd->timer)
                event_free(pd->timer);
            free(pd);
            return -1;
        }
    }
    {
        struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
        evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
        if (fd >= 0) {
            pd->watch = event_new(sim->base, fd,
                                  EV_READ | EV_CLOSED | EV_PERSIST, on_watch,
                                  pd);
            if (pd->watch && event_add(pd->watch, NULL) != 0) {
                event_free(pd->watch);
                pd->watch = NULL;
            }
        }
    }
    pd->ans = *a;
    a->body = NULL;
    pd->next = sim->pending;
    if (sim->pending)
        sim->pending->prev = pd;
    sim->pending = pd;
    sim->npending++;
    evhttp_connection_set_closecb(evcon, on_conn_close, pd);
    return 0;
}

void sim_rpc_drop_pending(struct sim *sim)
{
    /* The requests stay attached to their connections, which evhttp_free()
     * frees along with them; we only let go of our side. */
    while (sim->pending) {
        struct sim_pending *pd = sim->pending;
        evhttp_connection_set_closecb(pd->evcon, NULL, NULL);
        pending_free(pd);
    }
}

/* ------------------------------------------------------------ recording */

static struct sim_record *record_request(struct sim *sim,
                                         struct evhttp_request *req, int cmd,
                                         const char *path, const char *query,
                                         const char *ctype, const char *form,
                                         size_t form_len, size_t body_len,
                                         int64_t now)
{
    struct evkeyvalq *hin = evhttp_request_get_input_headers(req);
    struct evkeyval *kv;
    size_t plen = strlen(path), qlen = query ? strlen(query) : 0;
    size_t clen = ctype ? strlen(ctype) : 0, hlen = 0, o;
    struct sim_record *rec;
    char *blob;

    for (kv = hin->tqh_first; kv; kv = kv->next.tqe_next)
        hlen += strlen(kv->key) + strlen(kv->value) + 2;
    blob = malloc(plen + qlen + clen + form_len + hlen + 1);
    if (!blob)
        return NULL;
    o = 0;
    memcpy(blob + o, path, plen);
    o += plen;
    if (qlen)
        memcpy(blob + o, query, qlen);
    o += qlen;
    if (clen)
        memcpy(blob + o, ctype, clen);
    o += clen;
    if (form_len)
        memcpy(blob + o, form, form_len);
    o += form_len;
    for (kv = hin->tqh_first; kv; kv = kv->next.tqe_next) {
        size_t kl = strlen(kv->key) + 1, vl = strlen(kv->value) + 1;
        memcpy(blob + o, kv->key, kl);
        o += kl;
        memcpy(blob + o, kv->value, vl);
        o += vl;
    }
    rec = sim_records_push(&sim->records);
    rec->received_ms = now;
    rec->blob = blob;
    rec->path_len = (uint32_t)plen;
    rec->query_len = (uint32_t)qlen;
    rec->has_query = query != NULL;
    rec->ctype_len = (uint32_t)clen;
    rec->form_len = (uint32_t)form_len;
    rec->hdrs_len = (uint32_t)hlen;
    rec->body_bytes = (uint32_t)body_len;
    rec->method = (uint16_t)cmd;
    return rec;
}

/* ------------------------------------------------------------- handler */

static void fill_loginfo(struct loginfo *li, int cmd, const char *path,
                         const struct sim_params *p, int64_t now)
{
    const struct sim_param *prm;

    memset(li, 0, sizeof(*li));
    li->start_ms = now;
    snprintf(li->method, sizeof(li->method), "%s", sim_method_name(cmd));
    copy_printable(li->path, sizeof(li->path), path, strlen(path));
    if ((prm = sim_params_find(p, "Action")))
        copy_printable(li->action, sizeof(li->action), prm->value,
                       prm->value_len);
    if ((prm = sim_params_find(p, "JobId")))
        copy_printable(li->job, sizeof(li->job), prm->value, prm->value_len);
    if ((prm = sim_params_find(p, "AccessKeyId")))
        copy_printable(li->akid, sizeof(li->akid), prm->value,
                       prm->value_len);
}

void sim_rpc_handle(struct sim *sim, struct evhttp_request *req,
                    const char *path)
{
    int64_t now = sim_now_ms();
    int cmd = (int)evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq *hin = evhttp_request_get_input_headers(req);
    const char *ctype = evhttp_find_header(hin, "Content-Type");
    struct evbuffer *inbuf = evhttp_request_get_input_buffer(req);
    size_t body_len = evbuffer_get_length(inbuf);
    bool form = ctype && is_form_ctype(ctype);
    const char *form_body = NULL;
    size_t form_len = 0, qlen = query ? strlen(query) : 0;
    struct sim_record *rec = NULL;
    uint64_t seq = 0;
    struct sim_params params;
    struct rpcctx c;
    struct answer a;
    struct loginfo li;
    struct sim_fault *f = &sim->fault;
    enum sim_fault_mode mode;
    enum sim_act act = ACT_REPLY;
    int64_t delay;

    memset(&c, 0, sizeof(c));
    memset(&a, 0, sizeof(a));
    memset(&li, 0, sizeof(li));
    params.arena = NULL;
    params.n = 0;
    sim->stats.rpc++;

    if (form && body_len > SIM_MAX_FORM_BODY)
        c.too_large = true;
    else if (form && body_len > 0) {
        form_body = (const char *)evbuffer_pullup(inbuf, -1);
        form_len = form_body ? body_len : 0;
    }
    /* Record before any check, so rejected requests are listed too. */
    if (!sim->opt.no_record) {
        rec = record_request(sim, req, cmd, path, query, ctype, form_body,
                             form_len, body_len, now);
        seq = rec ? rec->seq : 0;
    }

    c.cmd = cmd;
    c.path = path;
    c.p = &params;
    c.now_ms = now;
    if (sim_params_init(&params, qlen + form_len) != 0) {
        c.parse_rc = SIM_PARSE_NOMEM;
    } else {
        c.parse_rc = sim_params_parse(&params, query ? query : "", qlen);
        if (c.parse_rc == SIM_PARSE_OK && form_len)
            c.parse_rc = sim_params_parse(&params, form_body, form_len);
        if (c.parse_rc == SIM_PARSE_OK)
            c.dup = sim_params_sort(&params);
    }
    if (c.parse_rc == SIM_PARSE_OK && !c.dup) {
        const struct sim_param *ak = sim_params_find(&params, "AccessKeyId");
        const struct sim_param *sig = sim_params_find(&params, "Signature");
        char mine[SIM_SIG_MAX];

        c.cred = ak ? sim_creds_find(&sim->creds, ak->value, ak->value_len)
                    : NULL;
        if (c.cred && sig &&
            sim_sign(sim_method_name(cmd), &params, c.cred->key,
                     c.cred->key_len, mine) == 0) {
            size_t ml = strlen(mine);
            c.sig_valid = sig->value_len == ml &&
                          CRYPTO_memcmp(sig->value, mine, ml) == 0;
        }
    }
    if (rec)
        rec->sig_valid = c.sig_valid;
    if (!sim->opt.quiet)
        fill_loginfo(&li, cmd, path, &params, now);

    a.body = evbuffer_new();
    if (!a.body) {
        evhttp_send_error(req, 500, NULL);
        goto out;
    }

    /* A fault replaces the whole evaluation, except plain delay, which
     * answers normally (evaluated now) after the delay. */
    mode = f->count != 0 ? f->mode : SIM_FAULT_NONE;
    delay = sim->latency_ms + (mode != SIM_FAULT_NONE ? f->delay_ms : 0);
    switch (mode) {
    case SIM_FAULT_HANG:
        act = ACT_HANG;
        sim->stats.hung++;
        break;
    case SIM_FAULT_RESET:
        act = ACT_RESET;
        break;
    case SIM_FAULT_GARBAGE: {
        const char *g = f->body ? f->body : "<html>oops</html>";
        a.status = 200;
        a.ctype = "text/html";
        evbuffer_add(a.body, g, strlen(g));
        break;
    }
    case SIM_FAULT_ERROR:
        answer_error(&a, f->status, f->code,
                     f->message ? f->message : default_message(f->code));
        break;
    case SIM_FAULT_DELAY:
    case SIM_FAULT_NONE:
    default:
        evaluate(sim, &c, &a);
        break;
    }
    if (mode != SIM_FAULT_NONE && f->count > 0 && --f->count == 0)
        sim_fault_reset(f);

    if (act == ACT_REPLY && delay <= 0) {
        send_answer(sim, req, seq, &a, &li);
    } else if (hold(sim, req, seq, act, &a, &li, delay > 0 ? delay : 0) !=
               0) {
        /* Could not park it: answer now rather than leak the request. */
        if (act == ACT_REPLY) {
            send_answer(sim, req, seq, &a, &li);
        } else {
            record_outcome(sim, seq, 500, "InternalError");
            evhttp_send_error(req, 500, NULL);
        }
    }
out:
    if (a.body)
        evbuffer_free(a.body);
    sim_params_free(&params);
}
