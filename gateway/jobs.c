/*
 * jobs: the DELETE /jobs/{JobId} pipeline (see jobs.h). The struct job below
 * is the request's whole state; it holds a reference to the configuration
 * snapshot the request started with, and is freed in one place (job_free)
 * after the reply is sent and the outcome entry handed to the audit writer.
 *
 * Order of the steps: hygiene → authentication → policy → rate limits →
 * an upstream slot (or the queue) → decision entry, durable → upstream call
 * → reply → outcome entry.
 */
#include "jobs.h"

#include "audit.h"
#include "auditread.h"
#include "auth.h"
#include "clock.h"
#include "config.h"
#include "jwksrc.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "ratelimit.h"
#include "server.h"
#include "sign.h"
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define JOBS_ACTION "DeleteReplicationJob"
#define JOBS_API_VERSION "2019-06-01"
#define JOBS_PATH_MAX 256
#define JOBS_ENTRY_MAX (64 * 1024)

struct team_bucket {
    char *name;
    struct rl_bucket b;
};

struct job {
    struct worker *w; /* the worker thread serving the request */
    struct gw *gw;
    struct gw_config *cfg; /* reference held until job_free */
    struct srv_req *http;  /* borrowed from the server until the reply */
    struct up_call *call;  /* prepared while the decision is synced (owned until launched), or NULL */
    struct job *qnext;     /* in gw's upstream queue */
    struct event *qtimer;  /* bound on the time spent queued */
    int holds_slot;        /* counted in w->upstream_active */
    int status;            /* what the caller got (0: nothing yet) */
    int counted;           /* the request is in the metrics (once, when answered) */
    char request_id[160];
    char job_id[ROUTE_JOB_ID_MAX + 1];
    char peer_ip[64];
    char client_ip[64];
    const char *method;               /* static */
    char path[JOBS_PATH_MAX * 3 + 8]; /* escaped, from at most JOBS_PATH_MAX bytes */
    char ticket[80];                  /* "" when none was sent */
    char (*cert_ids)[TLS_ID_MAX];     /* verified client certificate (owned), or NULL */
    size_t ncert_ids;
    struct auth_identity id;
    const char *team;             /* borrowed from the policy of cfg, or from the token */
    const struct pol_team *pteam; /* the policy's entry, when the team is known */
    const struct cred *cred;
    struct auth_keyset *keys; /* the key set the token was checked with (a reference), or NULL */
    int64_t t0_ms;
    const char *allow;                 /* the Allow header of a 405 */
    void (*after_auth)(struct job *j); /* the step after authentication */
    int jwks_waited;                   /* already waited once for a JWKS refresh */
    /* GET /audit */
    char *query; /* the filters as sent, for the audit_read entry (owned) */
    char *page;  /* entries found (owned) */
    uint64_t page_next;
};

/* The path as an auditor should read it: at most JOBS_PATH_MAX bytes of the
 * target, bytes outside printable ASCII (and '"', '\') percent-encoded. */
static void escape_path(char *out, size_t outlen, const char *uri)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (size_t i = 0; uri[i] != '\0' && i < JOBS_PATH_MAX && n + 4 < outlen; i++) {
        unsigned char c = (unsigned char)uri[i];
        if (c <= 0x20 || c >= 0x7F || c == '"' || c == '\\') {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
}

static struct job *job_new(struct worker *w, struct srv_req *req, const char *job_id, const char *request_id)
{
    struct job *j = calloc(1, sizeof(*j));

    if (j == NULL)
        return NULL;
    j->w = w;
    j->gw = w->gw;
    j->cfg = gw_config_get(w->gw);
    j->http = req;
    j->t0_ms = clock_mono_ms();
    j->allow = "DELETE";
    buf_copy(j->request_id, sizeof(j->request_id), request_id);
    buf_copy(j->job_id, sizeof(j->job_id), job_id);
    j->method = http_method_name(srv_head(req)->method);
    escape_path(j->path, sizeof(j->path), srv_head(req)->target);
    srv_addresses(req, j->cfg, j->peer_ip, sizeof(j->peer_ip), j->client_ip, sizeof(j->client_ip));
    if (j->cfg->has_tls) {
        char ids[TLS_IDS_MAX][TLS_ID_MAX];
        size_t n = srv_client_cert(req, ids, TLS_IDS_MAX);
        if (n > 0 && (j->cert_ids = malloc(n * sizeof(*j->cert_ids))) != NULL) {
            memcpy(j->cert_ids, ids, n * sizeof(*j->cert_ids));
            j->ncert_ids = n;
        }
    }
    atomic_fetch_add(&w->jobs_in_flight, 1);
    return j;
}

static void release_slot(struct job *j);

/* Count the request once: as its answer is sent (a scrape right after the
 * answer sees it, though the outcome entry may still be on its way), or
 * when it is freed unanswered. */
static void job_count(struct job *j)
{
    if (!j->counted) {
        j->counted = 1;
        met_request(j->gw->metrics, "jobs", j->status, j->pteam ? j->pteam->name : NULL,
                    (double)(clock_mono_ms() - j->t0_ms) / 1000.0);
    }
}

static void job_free(struct job *j)
{
    if (j == NULL)
        return;
    job_count(j);
    release_slot(j);
    up_cancel(j->call);
    if (j->qtimer != NULL)
        event_free(j->qtimer);
    atomic_fetch_sub(&j->w->jobs_in_flight, 1);
    auth_keyset_free(j->keys);
    auth_identity_clear(&j->id);
    cfg_unref(j->cfg);
    free(j->page);
    free(j->cert_ids);
    free(j->query);
    free(j);
}

static void job_problem(struct job *j, int status, const char *type, const char *title, const char *detail,
                        const char *extra)
{
    j->status = status;
    job_count(j);
    srv_problem(j->http, j->request_id, status, type, title, detail, extra);
}

/* Common leading members of every entry about this request. */
static void entry_begin(struct buf *b, const struct job *j, const char *event)
{
    char ts[40];

    clock_rfc3339_ms(ts, sizeof(ts), clock_wall_ms());
    buf_adds(b, "{\"ts\":\"");
    buf_adds(b, ts);
    buf_adds(b, "\",\"instance\":");
    buf_json_str(b, j->cfg->instance, strlen(j->cfg->instance));
    buf_adds(b, ",\"event\":\"");
    buf_adds(b, event);
    buf_adds(b, "\",\"request_id\":");
    buf_json_str(b, j->request_id, strlen(j->request_id));
    buf_adds(b, ",\"client_ip\":");
    buf_json_str(b, j->client_ip, strlen(j->client_ip));
    if (strcmp(j->client_ip, j->peer_ip) != 0) {
        buf_adds(b, ",\"peer_ip\":");
        buf_json_str(b, j->peer_ip, strlen(j->peer_ip));
    }
    buf_adds(b, ",\"method\":\"");
    buf_adds(b, j->method);
    buf_adds(b, "\",\"path\":");
    buf_json_str(b, j->path, strlen(j->path));
    buf_adds(b, ",\"job_id\":");
    if (j->job_id[0] != '\0')
        buf_json_str(b, j->job_id, strlen(j->job_id));
    else
        buf_adds(b, "null");
    if (j->ncert_ids > 0) {
        buf_adds(b, ",\"client_cert\":[");
        for (size_t i = 0; i < j->ncert_ids; i++) {
            if (i > 0)
                buf_addc(b, ',');
            buf_json_str(b, j->cert_ids[i], strlen(j->cert_ids[i]));
        }
        buf_addc(b, ']');
    }
}

static void entry_str(struct buf *b, const char *key, const char *val)
{
    if (val == NULL || val[0] == '\0')
        return;
    buf_adds(b, ",\"");
    buf_adds(b, key);
    buf_adds(b, "\":");
    buf_json_str(b, val, strlen(val));
}

/* Identity members: only ever from a verified token. */
static void entry_identity(struct buf *b, const struct job *j)
{
    if (j->id.sub == NULL)
        return;
    entry_str(b, "sub", j->id.sub);
    entry_str(b, "team", j->team);
    entry_str(b, "jti", j->id.jti);
}

static void submit(struct job *j, struct buf *b, int durable, audit_done_cb cb, void *arg)
{
    if (buf_addc(b, '}') != 0 || b->p == NULL) {
        log_msg(LOG_LVL_ERROR, j->request_id, "audit entry exceeded %zu bytes", b->max);
        buf_free(b);
        if (cb != NULL)
            cb(arg, 0);
        return;
    }
    audit_append(j->gw->audit, j->w->port, buf_take(b), durable, cb, arg);
}

static void on_refusal_summary(void *arg, const char *client, uint64_t suppressed, int64_t start_ms)
{
    struct gw *gw = arg;
    struct gw_config *cfg = gw_config_get(gw);
    struct buf b;
    char ts[40], ws[40];

    clock_rfc3339_ms(ts, sizeof(ts), clock_wall_ms());
    clock_rfc3339_ms(ws, sizeof(ws), start_ms);
    buf_init(&b, JOBS_ENTRY_MAX);
    buf_printf(&b, "{\"ts\":\"%s\",\"instance\":", ts);
    buf_json_str(&b, cfg->instance, strlen(cfg->instance));
    cfg_unref(cfg);
    buf_adds(&b, ",\"event\":\"refusals_suppressed\",\"client_ip\":");
    buf_json_str(&b, client, strlen(client));
    buf_printf(&b, ",\"count\":%llu,\"window_start\":\"%s\"}", (unsigned long long)suppressed, ws);
    if (b.p != NULL)
        audit_append(gw->audit, NULL, buf_take(&b), 0, NULL, NULL);
    buf_free(&b);
}

void jobs_sweep_refusals(struct gw *gw, int all)
{
    pthread_mutex_lock(&gw->rl_mu);
    rl_refusals_sweep(gw->refusals, all ? INT64_MAX : clock_wall_ms(), on_refusal_summary, gw);
    pthread_mutex_unlock(&gw->rl_mu);
}

/*
 * Refuse a request and record it. Before authentication succeeds the entry
 * is rate-limited per client address and asks for no fsync of its own.
 */
static void refuse(struct job *j, int status, const char *reason, const char *type, const char *title,
                   const char *detail, int close_conn, const char *www_auth)
{
    struct buf b;
    int authenticated = j->id.sub != NULL, record = 1;

    met_decision(j->gw->metrics, "deny", strncmp(reason, "invalid_token:", 14) == 0 ? "invalid_token" : reason);
    if (!authenticated) {
        pthread_mutex_lock(&j->gw->rl_mu);
        record = rl_refusal_admit(j->gw->refusals, j->client_ip, clock_wall_ms(), on_refusal_summary, j->gw);
        pthread_mutex_unlock(&j->gw->rl_mu);
    }
    if (record) {
        buf_init(&b, JOBS_ENTRY_MAX);
        entry_begin(&b, j, "decision");
        entry_identity(&b, j);
        entry_str(&b, "ticket", j->ticket);
        buf_adds(&b, ",\"decision\":\"deny\"");
        entry_str(&b, "reason", reason);
        buf_printf(&b, ",\"status\":%d,\"result\":\"refused\"", status);
        /* Nothing waits on a refusal: it is synced with the next batch (within 100 ms). */
        submit(j, &b, 0, NULL, NULL);
    }
    if (close_conn)
        srv_add_header(j->http, "Connection", "close");
    if (www_auth != NULL)
        srv_add_header(j->http, "WWW-Authenticate", www_auth);
    if (status == 405)
        srv_add_header(j->http, "Allow", j->allow);
    job_problem(j, status, type, title, detail, NULL);
    job_free(j);
}

/* HTTP hygiene: 0 when the request may go on, else refused already. */
static int check_hygiene(struct job *j)
{
    const struct http_head *h = srv_head(j->http);
    const char *cl = http_field(h, "Content-Length");
    const char *ticket;

    if (http_field_count(h, "Transfer-Encoding") > 0) {
        refuse(j, 400, "transfer_encoding", "bad-request", "Transfer-Encoding is not accepted",
               "DELETE takes no body; Transfer-Encoding is refused to rule out request smuggling", 1, NULL);
        return -1;
    }
    if (http_field_count(h, "Content-Length") > 1) {
        refuse(j, 400, "duplicate_content_length", "bad-request", "Content-Length is sent more than once",
               "Two Content-Length headers make the message length ambiguous", 1, NULL);
        return -1;
    }
    if (cl != NULL && strcmp(cl, "0") != 0) {
        refuse(j, 400, "body_not_allowed", "bad-request", "DELETE takes no body", NULL, 1, NULL);
        return -1;
    }
    if (http_field_count(h, "X-Change-Ticket") > 1) {
        refuse(j, 400, "bad_ticket", "bad-ticket", "X-Change-Ticket is sent more than once", NULL, 0, NULL);
        return -1;
    }
    ticket = http_field(h, "X-Change-Ticket");
    if (ticket != NULL) {
        if (!route_valid_ticket(ticket)) {
            refuse(j, 400, "bad_ticket", "bad-ticket", "X-Change-Ticket is invalid",
                   "At most 64 characters of A-Za-z0-9._:/-", 0, NULL);
            return -1;
        }
        buf_copy(j->ticket, sizeof(j->ticket), ticket);
    }
    return 0;
}

/* The keys tokens are checked with now: the JWKS source's, or the config's
 * (a reference either way, dropped in job_free). */
static struct auth_keyset *current_keys(const struct job *j)
{
    if (j->cfg->auth.jwks_url != NULL && j->gw->jwks != NULL)
        return jwksrc_keys_get(j->gw->jwks);
    return auth_keyset_ref(j->cfg->keys);
}

static void authenticate(struct job *j);

static void on_jwks_refreshed(void *arg)
{
    /* Decided with whatever set there is now; no second wait. */
    authenticate(arg);
}

/*
 * Authenticate, then run j->after_auth. A token whose kid the JWKS lacks
 * waits (asynchronously, at most JWKSRC_WAIT_MS) for one refresh.
 */
static void authenticate(struct job *j)
{
    const struct http_head *h = srv_head(j->http);
    const char *authz = http_field(h, "Authorization");
    const struct gw_config *c = j->cfg;
    struct auth_params p = {c->auth.algs, c->auth.issuer, c->auth.audience, c->auth.leeway_s, c->auth.max_age_s};
    const struct auth_keyset *keys;
    const char *tok;
    size_t len;
    enum auth_err e;
    char reason[64], kid[AUTH_KID_MAX + 1];
    double now = (double)clock_wall_ms() / 1000.0;
    int cache;

    auth_keyset_free(j->keys); /* a second pass after a JWKS refresh takes the new set */
    j->keys = current_keys(j);
    keys = j->keys;
    cache = c->auth.token_cache && keys != NULL;

    if (authz == NULL || strncasecmp(authz, "Bearer ", 7) != 0) {
        refuse(j, 401, "no_token", "unauthenticated", "A bearer token is required", "Send Authorization: Bearer <JWT>",
               0, "Bearer");
        return;
    }
    if (http_field_count(h, "Authorization") > 1) {
        refuse(j, 401, "invalid_token:malformed", "invalid-token", "The bearer token was not accepted",
               "Authorization is sent more than once", 0, "Bearer error=\"invalid_token\"");
        return;
    }
    tok = authz + 7;
    while (*tok == ' ')
        tok++;
    len = strlen(tok);
    if (cache && auth_cache_get(j->w->token_cache, &p, tok, len, keys->id, c->generation, now, &j->id)) {
        met_inc(j->gw->metrics, MET_TOKEN_CACHE_HITS);
        j->after_auth(j);
        return;
    }
    e = auth_verify(&p, keys, tok, len, now, &j->id);
    if (e == AUTH_E_NO_KEY && c->auth.jwks_url != NULL && j->gw->jwks != NULL && !j->jwks_waited &&
        auth_token_kid(tok, len, kid) == 0) {
        j->jwks_waited = 1;
        if (jwksrc_wait_refresh(j->gw->jwks, j->w->base, on_jwks_refreshed, j))
            return;
    }
    if (e != AUTH_OK) {
        snprintf(reason, sizeof(reason), "invalid_token:%s", auth_err_code(e));
        refuse(j, 401, reason, "invalid-token", "The bearer token was not accepted", auth_err_text(e), 0,
               e == AUTH_E_NO_TOKEN ? "Bearer" : "Bearer error=\"invalid_token\"");
        return;
    }
    if (cache) {
        met_inc(j->gw->metrics, MET_TOKEN_CACHE_MISSES);
        auth_cache_put(j->w->token_cache, tok, len, keys->id, c->generation, &j->id);
    }
    j->after_auth(j);
}

static int sign_attempt(void *arg, int attempt, struct buf *out)
{
    struct job *j = arg;
    char nonce[33], ts[32];
    struct sign_call sc;

    (void)attempt;
    if (sign_nonce(nonce) != 0)
        return -1;
    clock_iso8601_s(ts, sizeof(ts), clock_wall_ms());
    sc.method = j->cfg->upstream.post ? "POST" : "GET";
    sc.action = JOBS_ACTION;
    sc.version = JOBS_API_VERSION;
    sc.job_id = j->job_id;
    sc.access_key_id = j->cred->access_key_id;
    sc.secret = j->cred->secret;
    sc.security_token = j->cred->security_token;
    sc.nonce = nonce;
    sc.timestamp = ts;
    return sign_call(&sc, out);
}

static void on_upstream_done(void *arg, const struct up_outcome *o)
{
    struct job *j = arg;
    const struct map_result *m = &o->map;
    struct buf b, extra;
    char num[32];

    /* Reply first: the outcome entry does not hold up the caller. */
    j->status = m->status;
    if (m->status == 200) {
        buf_init(&b, 4096);
        buf_adds(&b, "{\"job_id\":");
        buf_json_str(&b, j->job_id, strlen(j->job_id));
        buf_adds(&b, ",\"request_id\":");
        buf_json_str(&b, j->request_id, strlen(j->request_id));
        buf_adds(&b, ",\"upstream_request_id\":");
        buf_json_str(&b, m->upstream_request_id, strlen(m->upstream_request_id));
        buf_addc(&b, '}');
        job_count(j);
        srv_reply_json(j->http, j->request_id, 200, b.p ? b.p : "{}");
        buf_free(&b);
    } else {
        buf_init(&extra, 4096);
        if (m->upstream_answered) {
            entry_str(&extra, "upstream_code", m->upstream_code);
            entry_str(&extra, "upstream_request_id", m->upstream_request_id);
        }
        entry_str(&extra, "gateway_error", o->gateway_error);
        if (m->status == 429) {
            snprintf(num, sizeof(num), "%ld", o->retry_after_s > 0 ? o->retry_after_s : 1);
            srv_add_header(j->http, "Retry-After", num);
        }
        job_problem(j, m->status, m->type, m->title,
                    strcmp(m->result, "unknown") == 0
                        ? "Repeating the DELETE is safe: a job that was deleted answers 404."
                        : NULL,
                    extra.p);
        buf_free(&extra);
    }
    met_upstream(j->gw->metrics, m->result, m->upstream_answered ? m->upstream_code : o->gateway_error,
                 (double)o->duration_ms / 1000.0);

    buf_init(&b, JOBS_ENTRY_MAX);
    entry_begin(&b, j, "outcome");
    entry_identity(&b, j);
    entry_str(&b, "ticket", j->ticket);
    buf_adds(&b, ",\"decision\":\"allow\",\"status\":");
    buf_addi(&b, m->status);
    buf_adds(&b, ",\"result\":\"");
    buf_adds(&b, m->result);
    buf_addc(&b, '"');
    if (o->upstream_status > 0) {
        buf_adds(&b, ",\"upstream_status\":");
        buf_addi(&b, o->upstream_status);
    }
    entry_str(&b, "upstream_code", m->upstream_answered ? m->upstream_code : NULL);
    entry_str(&b, "upstream_request_id", m->upstream_answered ? m->upstream_request_id : NULL);
    entry_str(&b, "gateway_error", o->gateway_error);
    buf_adds(&b, ",\"attempts\":");
    buf_addi(&b, o->attempts);
    buf_adds(&b, ",\"duration_ms\":");
    buf_addi(&b, (long long)(clock_mono_ms() - j->t0_ms));
    /* The reply is sent; the outcome is synced with the next batch (within 100 ms). */
    submit(j, &b, 0, NULL, NULL);
    job_free(j);
}

static void on_decision_durable(void *arg, int ok)
{
    struct job *j = arg;
    struct up_call *call = j->call;

    j->call = NULL;
    if (!ok) {
        up_cancel(call);
        log_msg(LOG_LVL_ERROR, j->request_id, "decision entry for %s not durable: request refused with 503", j->job_id);
        srv_add_header(j->http, "Retry-After", "5");
        job_problem(j, 503, "audit-unavailable", "The audit log cannot record this request",
                    "Nothing was forwarded. The gateway refuses deletions until its audit log is writable again.",
                    NULL);
        job_free(j);
        return;
    }
    if (call != NULL) {
        up_launch(call);
    } else {
        /* up_prepare ran out of memory: nothing was sent. */
        struct up_outcome o;
        memset(&o, 0, sizeof(o));
        map_answer(MAP_INTERNAL, 0, NULL, 0, &o.map);
        snprintf(o.gateway_error, sizeof(o.gateway_error), "internal");
        on_upstream_done(j, &o);
    }
}

/* The decision entry, then (once durable) the upstream call. */
static void record_and_forward(struct job *j)
{
    const struct cfg_upstream *u = &j->cfg->upstream;
    struct up_params p = {u->endpoint, u->post,    u->connect_timeout_ms, u->timeout_ms, u->deadline_ms, u->max_retries,
                          u->proxy,    u->ca_file, j->request_id};
    struct buf b;
    char masked[32];

    j->cred = creds_find(j->cfg->creds, j->pteam->credential);
    creds_mask(j->cred->access_key_id, masked, sizeof(masked));
    met_decision(j->gw->metrics, "allow", "allowed");
    buf_init(&b, JOBS_ENTRY_MAX);
    entry_begin(&b, j, "decision");
    entry_identity(&b, j);
    entry_str(&b, "ticket", j->ticket);
    buf_adds(&b, ",\"decision\":\"allow\"");
    entry_str(&b, "credential", j->cred->name);
    entry_str(&b, "access_key_id", masked);
    /* The call is signed and set up while the entry is synced; it is sent
     * only once the entry is on disk (on_decision_durable). */
    j->call = up_prepare(j->w->up, &p, sign_attempt, on_upstream_done, j);
    /* Other requests in flight will bring decisions of their own: the
     * writer may then hold this sync briefly so that they share it. */
    submit(j, &b, gw_jobs_in_flight(j->gw) > 1 ? AUDIT_SYNC_SHARED : AUDIT_SYNC, on_decision_durable, j);
}

static void release_slot(struct job *j)
{
    struct worker *w = j->w;
    struct job *next;

    if (!j->holds_slot)
        return;
    j->holds_slot = 0;
    atomic_fetch_sub(&w->upstream_active, 1);
    /* Hand the slot to the longest-waiting request (the cap is per worker). */
    while ((next = w->queue_head) != NULL &&
           atomic_load(&w->upstream_active) < next->cfg->limits.max_upstream_concurrency) {
        w->queue_head = next->qnext;
        if (w->queue_head == NULL)
            w->queue_tail = &w->queue_head;
        atomic_fetch_sub(&w->upstream_queued, 1);
        evtimer_del(next->qtimer);
        next->holds_slot = 1;
        atomic_fetch_add(&w->upstream_active, 1);
        record_and_forward(next);
    }
}

static void on_queue_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg, **pp;

    (void)fd;
    (void)what;
    for (pp = &j->w->queue_head; *pp != NULL && *pp != j; pp = &(*pp)->qnext)
        ;
    if (*pp == NULL)
        return;
    *pp = j->qnext;
    if (j->w->queue_tail == &j->qnext)
        j->w->queue_tail = pp;
    atomic_fetch_sub(&j->w->upstream_queued, 1);
    srv_add_header(j->http, "Retry-After", "1");
    refuse(j, 503, "upstream_busy", "overloaded", "The gateway is at its upstream concurrency limit",
           "The request waited for an upstream slot too long; nothing was forwarded", 0, NULL);
}

/* Take an upstream slot, or queue for one; refused when the queue is full. */
static void acquire_slot(struct job *j)
{
    struct worker *w = j->w;
    const struct cfg_limits *l = &j->cfg->limits;
    struct timeval tv = {j->cfg->upstream.deadline_ms / 1000, (j->cfg->upstream.deadline_ms % 1000) * 1000};

    if (atomic_load(&w->upstream_active) < l->max_upstream_concurrency && w->queue_head == NULL) {
        j->holds_slot = 1;
        atomic_fetch_add(&w->upstream_active, 1);
        record_and_forward(j);
        return;
    }
    if (atomic_load(&w->upstream_queued) >= l->max_upstream_queue ||
        (j->qtimer = evtimer_new(w->base, on_queue_timeout, j)) == NULL) {
        met_inc(j->gw->metrics, MET_UPSTREAM_QUEUE_FULL);
        srv_add_header(j->http, "Retry-After", "1");
        refuse(j, 503, "upstream_busy", "overloaded", "The gateway is at its upstream concurrency limit",
               "Nothing was forwarded; retry shortly", 0, NULL);
        return;
    }
    j->qnext = NULL;
    *w->queue_tail = j;
    w->queue_tail = &j->qnext;
    atomic_fetch_add(&w->upstream_queued, 1);
    evtimer_add(j->qtimer, &tv);
}

/* Take a token from b after adopting the configured limit (a reload may
 * change it; the level is kept). A zeroed bucket is unused: it starts full. */
static long bucket_take(struct rl_bucket *b, long requests, long per_s, int64_t now_ms)
{
    double burst = (double)requests, rate = (double)requests / (double)per_s;

    if (b->burst == 0)
        rl_bucket_init(b, burst, rate, now_ms);
    b->burst = burst;
    b->rate = rate;
    return rl_bucket_take(b, now_ms);
}

/* The bucket of a policy team (zeroed when new); kept across reloads. */
static struct rl_bucket *team_bucket(struct gw *gw, const char *name)
{
    struct team_bucket *nb;

    for (size_t i = 0; i < gw->nbuckets; i++) {
        if (strcmp(gw->buckets[i].name, name) == 0)
            return &gw->buckets[i].b;
    }
    nb = realloc(gw->buckets, (gw->nbuckets + 1) * sizeof(*nb));
    if (nb == NULL)
        return NULL;
    gw->buckets = nb;
    memset(&nb[gw->nbuckets], 0, sizeof(*nb));
    nb[gw->nbuckets].name = strdup(name);
    if (nb[gw->nbuckets].name == NULL)
        return NULL;
    return &nb[gw->nbuckets++].b;
}

void jobs_free_state(struct gw *gw)
{
    for (size_t i = 0; i < gw->nbuckets; i++)
        free(gw->buckets[i].name);
    free(gw->buckets);
    gw->buckets = NULL;
    gw->nbuckets = 0;
}

/* Refuse with 429 and Retry-After when wait > 0; -1 then, else 0. */
static int rate_refused(struct job *j, long wait, const char *reason, const char *title)
{
    char num[32];

    if (wait <= 0)
        return 0;
    snprintf(num, sizeof(num), "%ld", wait);
    srv_add_header(j->http, "Retry-After", num);
    refuse(j, 429, reason, "rate-limited", title,
           "Nothing was forwarded; retry after the number of seconds in Retry-After", 0, NULL);
    return -1;
}

/* Per-team and gateway-wide rate limits: 0 to go on, else refused already.
 * The gateway-wide bucket is only drawn from when the team's allowed. */
static int check_rates(struct job *j)
{
    struct gw *gw = j->gw;
    const struct gw_config *c = j->cfg;
    const struct pol_team *t = j->pteam;
    struct rl_bucket *b;
    long team_wait = 0, gw_wait = 0;
    int64_t now = clock_mono_ms();

    pthread_mutex_lock(&gw->rl_mu);
    if (t->rate_requests > 0 && (b = team_bucket(gw, t->name)) != NULL)
        team_wait = bucket_take(b, t->rate_requests, t->rate_per_seconds, now);
    if (team_wait == 0 && c->upstream_rate_requests > 0)
        gw_wait = bucket_take(&gw->upstream_bucket, c->upstream_rate_requests, c->upstream_rate_per_s, now);
    pthread_mutex_unlock(&gw->rl_mu);
    if (rate_refused(j, team_wait, "rate_limited", "The team's rate limit is reached") != 0 ||
        rate_refused(j, gw_wait, "upstream_rate_limited", "The gateway's rate limit for the cloud API is reached") != 0)
        return -1;
    return 0;
}

static void decide(struct job *j)
{
    const char *teams[AUTH_MAX_TEAMS];
    const char *cert_ptrs[TLS_IDS_MAX];
    size_t nteams = auth_teams(j->id.claims, j->cfg->auth.team_claim, j->cfg->auth.team_prefix, teams, AUTH_MAX_TEAMS);
    struct pol_request pr = {JOBS_ACTION, j->job_id, j->id.sub, j->ticket[0] ? j->ticket : NULL,
                             teams,       nteams,    cert_ptrs, j->ncert_ids};
    const struct pol_team *team = NULL;
    enum pol_reason why;

    for (size_t i = 0; i < j->ncert_ids; i++)
        cert_ptrs[i] = j->cert_ids[i];
    why = pol_decide(j->cfg->policy, &pr, &team);
    j->pteam = team;
    j->team = team ? team->name : (nteams > 0 ? teams[0] : NULL);
    if (why != POL_ALLOW) {
        refuse(j, 403, pol_reason_code(why), "forbidden", "The policy does not allow this call", pol_reason_text(why),
               0, NULL);
        return;
    }
    if (check_rates(j) != 0)
        return;
    acquire_slot(j);
}

void jobs_handle(struct worker *w, struct srv_req *req, enum route_kind kind, const char *job_id,
                 const char *request_id)
{
    struct job *j = job_new(w, req, kind == ROUTE_JOB ? job_id : "", request_id);

    if (j == NULL) {
        srv_problem(req, request_id, 503, "overloaded", "The gateway is out of memory", NULL, NULL);
        return;
    }
    if (kind == ROUTE_JOBS_OTHER) {
        refuse(j, 404, "not_found", "not-found", "No such resource", "The route is /jobs/{JobId}", 0, NULL);
        return;
    }
    if (kind == ROUTE_BAD_JOB_ID) {
        refuse(j, 400, "bad_job_id", "bad-job-id", "The JobId is not valid",
               "A JobId is j- followed by 1 to 64 ASCII letters or digits", 0, NULL);
        return;
    }
    if (srv_head(req)->method != HTTP_M_DELETE) {
        refuse(j, 405, "method_not_allowed", "method-not-allowed", "Only DELETE is allowed on this resource", NULL, 0,
               NULL);
        return;
    }
    if (check_hygiene(j) != 0)
        return;
    j->after_auth = decide;
    authenticate(j);
}

static void on_audit_read_durable(void *arg, int ok)
{
    struct job *j = arg;
    struct buf b;

    if (!ok) {
        job_problem(j, 503, "audit-unavailable", "The audit log cannot record this read",
                    "Reads of the trail are themselves audited; the log is not writable now.", NULL);
        job_free(j);
        return;
    }
    buf_init(&b, 16 * 1024 * 1024);
    buf_adds(&b, "{\"entries\":[");
    buf_adds(&b, j->page ? j->page : "");
    if (j->page_next != 0)
        buf_printf(&b, "],\"next_cursor\":\"%llu\"}", (unsigned long long)j->page_next);
    else
        buf_adds(&b, "],\"next_cursor\":null}");
    j->status = 200;
    srv_reply_json(j->http, j->request_id, 200, b.p ? b.p : "{\"entries\":[]}");
    buf_free(&b);
    job_free(j);
}

static void on_audit_page(void *arg, int ok, char *page, size_t count, uint64_t next)
{
    struct job *j = arg;
    struct buf b;

    j->page = page;
    j->page_next = next;
    if (!ok) {
        job_problem(j, 500, "audit-read-failed", "The audit trail could not be read", NULL, NULL);
        job_free(j);
        return;
    }
    buf_init(&b, JOBS_ENTRY_MAX);
    entry_begin(&b, j, "audit_read");
    entry_identity(&b, j);
    entry_str(&b, "filters", j->query);
    buf_printf(&b, ",\"count\":%zu", count);
    submit(j, &b, AUDIT_SYNC, on_audit_read_durable, j);
}

static void audit_read_authorized(struct job *j);

void jobs_audit_read(struct worker *w, struct srv_req *req, const char *request_id)
{
    struct job *j = job_new(w, req, "", request_id);

    if (j == NULL) {
        srv_problem(req, request_id, 503, "overloaded", "The gateway is out of memory", NULL, NULL);
        return;
    }
    j->allow = "GET";
    if (srv_head(req)->method != HTTP_M_GET) {
        refuse(j, 405, "method_not_allowed", "method-not-allowed", "Only GET is allowed on /audit", NULL, 0, NULL);
        return;
    }
    j->after_auth = audit_read_authorized;
    authenticate(j);
}

static void audit_read_authorized(struct job *j)
{
    struct worker *w = j->w;
    struct srv_req *req = j->http;
    const char *teams[AUTH_MAX_TEAMS], *why = NULL, *uri, *qs;
    size_t nteams;
    struct ar_query q;

    nteams = auth_teams(j->id.claims, j->cfg->auth.team_claim, j->cfg->auth.team_prefix, teams, AUTH_MAX_TEAMS);
    for (size_t i = 0; i < nteams && j->team == NULL; i++)
        if (pol_is_auditor(j->cfg->policy, teams[i])) {
            j->pteam = pol_find(j->cfg->policy, teams[i]);
            j->team = j->pteam->name;
        }
    if (j->team == NULL) {
        j->team = nteams > 0 ? teams[0] : NULL;
        refuse(j, 403, "not_an_auditor", "forbidden", "Only the policy's auditors may read the trail",
               "The token names no team listed under \"auditors\" in the policy", 0, NULL);
        return;
    }
    uri = srv_head(req)->target;
    qs = strchr(uri, '?');
    j->query = strndup(qs ? qs + 1 : "", 1024);
    memset(&q, 0, sizeof(q));
    if (ar_parse_query(qs ? qs + 1 : "", &q, &why) != 0) {
        refuse(j, 400, "bad_query", "bad-query", "The query is not valid", why, 0, NULL);
        return;
    }
    snprintf(q.path, sizeof(q.path), "%s", j->cfg->audit.file);
    snprintf(q.instance, sizeof(q.instance), "%s", j->cfg->instance);
    if (ar_start(w->reader, &q, on_audit_page, j) != 0) {
        srv_add_header(req, "Retry-After", "1");
        job_problem(j, 503, "busy", "Too many reads of the trail are running", NULL, NULL);
        job_free(j);
    }
}
