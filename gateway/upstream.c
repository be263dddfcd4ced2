/*
 * upstream: signed calls to the cloud API (see upstream.h), with their
 * transfers run by curlev on the loop. Each call owns one easy handle at a
 * time; a retry creates a new one after a backoff timer.
 */
#include "upstream.h"

#include "clock.h"
#include "curlev.h"
#include "log.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define UP_BODY_MAX (64 * 1024)
#define UP_BACKOFF_BASE_MS 100
#define UP_BACKOFF_MAX_MS 2000

#define UP_EASY_POOL 64 /* easy handles kept for reuse */
#define UP_RECV_BUFFER 4096L

struct up {
    struct event_base *base;
    struct cev *cev;
    /* Idle easy handles, set up for the calls of one upstream (the profile
     * below): a pooled handle keeps its options, so an attempt sets only
     * what changes per attempt (init, reset and two dozen setopt calls cost
     * more than the transfer's own bookkeeping). */
    CURL *pool[UP_EASY_POOL];
    int npool;
    char *pr_endpoint, *pr_proxy, *pr_ca_file; /* the profile: what the pooled handles are set up for */
    int pr_post;
    unsigned pr_gen; /* changes with the profile: handles of another one are not pooled again */
    struct curl_slist *headers;
    struct up_call *calls; /* every call in flight, for up_free */
};

struct up_call {
    struct up *up;
    struct up_call *next, **pprev; /* in up->calls */
    struct up_params p;
    up_sign_fn sign;
    up_done_fn done;
    void *arg;
    CURL *easy;         /* the running attempt, or NULL */
    unsigned easy_gen;  /* the profile generation easy was set up for */
    struct buf params;  /* signed parameters of the running attempt (wiped) */
    struct buf url;     /* GET: endpoint?params */
    struct buf body;    /* answer body, capped */
    long retry_after_s; /* from a Retry-After header */
    int sends;          /* times curl was about to send the running attempt */
    int uncertain;      /* an earlier attempt reached the upstream and may have acted (5xx) */
    struct event *backoff;
    int64_t start_ms;
    struct up_outcome o;
};

static void start_attempt(struct up_call *c);
static void drop_attempt(struct up_call *c);
static void profile_clear(struct up *u);

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct up_call *c = userdata;
    size_t n = size * nmemb;

    /* Over the cap: returning short makes curl fail the transfer. */
    return buf_add(&c->body, ptr, n) == 0 ? n : 0;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct up_call *c = userdata;
    size_t n = size * nmemb;

    if (n > 12 && strncasecmp(ptr, "Retry-After:", 12) == 0) {
        char tmp[32], *end;
        size_t len = n - 12 < sizeof(tmp) - 1 ? n - 12 : sizeof(tmp) - 1;
        long v;
        memcpy(tmp, ptr + 12, len);
        tmp[len] = '\0';
        v = strtol(tmp, &end, 10);
        if (end != tmp && v >= 0 && v <= 3600)
            c->retry_after_s = v;
    }
    return n;
}

/*
 * Called each time curl is about to send the request (CURLOPT_PREREQFUNCTION).
 * curl resends on its own when a reused connection dies before any answer
 * byte; that copy carries the same nonce, and the gateway would count one
 * attempt where two left. It is refused: the attempt then ends as broken
 * after sending, and whether to try again is the retry policy's decision.
 */
static int on_prereq(void *clientp, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    struct up_call *c = clientp;

    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    return c != NULL && c->sends++ > 0 ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}

struct up *up_new(struct event_base *base, long max_connections)
{
    struct up *u = calloc(1, sizeof(*u)), *ret = NULL;

    if (u == NULL)
        return NULL;
    u->base = base;
    u->cev = cev_new(base, max_connections);
    if (u->cev == NULL)
        goto out;
    u->headers = curl_slist_append(NULL, "Accept: application/json");
    u->headers = curl_slist_append(u->headers, "Expect:");
    if (u->headers == NULL)
        goto out;
    ret = u;
    u = NULL;
out:
    up_free(u);
    return ret;
}

static void call_free(struct up_call *c)
{
    if (c->pprev != NULL) {
        *c->pprev = c->next;
        if (c->next != NULL)
            c->next->pprev = c->pprev;
    }
    if (c->easy != NULL) {
        cev_remove(c->up->cev, c->easy);
        curl_easy_cleanup(c->easy);
    }
    if (c->backoff != NULL)
        event_free(c->backoff);
    buf_wipe(&c->params);
    buf_wipe(&c->url);
    buf_free(&c->body);
    free(c);
}

void up_free(struct up *u)
{
    if (u == NULL)
        return;
    while (u->calls != NULL)
        call_free(u->calls);
    profile_clear(u);
    cev_free(u->cev);
    curl_slist_free_all(u->headers);
    free(u);
}

/* What kind of failure a curl result is, for the mapping table. */
static enum map_transport classify(struct up_call *c, CURLcode res, char *errclass, size_t errlen)
{
    curl_off_t pretransfer = 0;
    long connect_code = 0;
    int sent;

    curl_easy_getinfo(c->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
    curl_easy_getinfo(c->easy, CURLINFO_HTTP_CONNECTCODE, &connect_code);
    /* Once curl was about to send, or past pre-transfer, the request may have
     * left: assume it did (a refused resend of curl's fails to connect or
     * aborts after the first copy left). */
    sent = c->sends > 0 || pretransfer > 0;
    if (c->sends > 0 && res != CURLE_OPERATION_TIMEDOUT) {
        /* The first copy left; whatever failed after it (curl's resend
         * meeting a refused connection or a failed TLS handshake, say)
         * cannot make it unsent. */
        snprintf(errclass, errlen, "connection_broken");
        return MAP_BROKEN_AFTER_SEND;
    }
    switch (res) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        snprintf(errclass, errlen, sent ? "connection_broken" : "connect_failed");
        return sent ? MAP_BROKEN_AFTER_SEND : MAP_CONNECT_FAILED;
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(errclass, errlen, sent ? "timeout" : "connect_timeout");
        return sent ? MAP_TIMEOUT_AFTER_SEND : MAP_CONNECT_TIMEOUT;
    case CURLE_PEER_FAILED_VERIFICATION:
        snprintf(errclass, errlen, "tls_verify_failed");
        return MAP_TLS_FAILED;
    case CURLE_SSL_CONNECT_ERROR:
        snprintf(errclass, errlen, "tls_handshake_failed");
        return MAP_TLS_FAILED;
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
        snprintf(errclass, errlen, "tls_setup_failed");
        return MAP_TLS_FAILED;
    default:
        snprintf(errclass, errlen, sent ? "connection_broken" : "connect_failed");
        return sent ? MAP_BROKEN_AFTER_SEND : MAP_CONNECT_FAILED;
    }
}

static int same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Does the pool serve p's upstream? */
static int same_profile(const struct up *u, const struct up_params *p)
{
    return u->pr_endpoint != NULL && u->pr_post == p->post && same_str(u->pr_endpoint, p->endpoint) &&
           same_str(u->pr_proxy, p->proxy) && same_str(u->pr_ca_file, p->ca_file);
}

static void profile_clear(struct up *u)
{
    while (u->npool > 0)
        curl_easy_cleanup(u->pool[--u->npool]);
    free(u->pr_endpoint);
    free(u->pr_proxy);
    free(u->pr_ca_file);
    u->pr_endpoint = u->pr_proxy = u->pr_ca_file = NULL;
}

/* The options that stay the same for every call to this upstream. */
static void setup_easy(CURL *e, const struct up *u, const struct up_params *p)
{
    if (p->post) {
        curl_easy_setopt(e, CURLOPT_URL, p->endpoint);
        curl_easy_setopt(e, CURLOPT_POST, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, u->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "smc-gateway/" GW_VERSION);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* Proxies only from the config: "" turns off http_proxy and friends. */
    curl_easy_setopt(e, CURLOPT_PROXY, p->proxy ? p->proxy : "");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (p->ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, p->ca_file);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    /* SMC's answers are a few hundred bytes: a 4 KiB receive buffer (not
     * 16 KiB) is one page per transfer, written by recv and wiped on free. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, UP_RECV_BUFFER);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
}

/* A handle set up for p's upstream: from the pool when it serves the same
 * one (a reload may have changed it: then the pool is emptied), else new. */
static CURL *easy_get(struct up *u, const struct up_params *p)
{
    CURL *e;

    if (!same_profile(u, p)) {
        profile_clear(u);
        u->pr_gen++;
        u->pr_post = p->post;
        u->pr_endpoint = strdup(p->endpoint);
        u->pr_proxy = p->proxy ? strdup(p->proxy) : NULL;
        u->pr_ca_file = p->ca_file ? strdup(p->ca_file) : NULL;
        if (u->pr_endpoint == NULL || (p->proxy && !u->pr_proxy) || (p->ca_file && !u->pr_ca_file)) {
            profile_clear(u);
            return NULL;
        }
    }
    if (u->npool > 0)
        return u->pool[--u->npool];
    if ((e = curl_easy_init()) != NULL)
        setup_easy(e, u, p);
    return e;
}

/* Back to the pool, unless it was set up for an upstream a reload replaced. */
static void easy_put(struct up *u, CURL *e, unsigned gen)
{
    if (gen == u->pr_gen && u->npool < UP_EASY_POOL) {
        /* No pointers into a finished call stay behind. */
        curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
        curl_easy_setopt(e, CURLOPT_PREREQDATA, NULL);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
        u->pool[u->npool++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

static void finish(struct up_call *c)
{
    c->o.duration_ms = (long)(clock_mono_ms() - c->start_ms);
    c->done(c->arg, &c->o);
    call_free(c);
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_attempt(arg);
}

/* An attempt ended: judge it, then retry after a backoff or finish. */
static void attempt_done(struct up_call *c, CURLcode res)
{
    long status = 0;
    enum map_transport t = MAP_ANSWERED;
    char errclass[64] = "";
    long remaining, backoff;

    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    if (res == CURLE_WRITE_ERROR && status > 0) {
        /* Our body cap cut the answer: judge it as an unreadable answer. */
        buf_reset(&c->body);
    } else if (res != CURLE_OK) {
        t = classify(c, res, errclass, sizeof(errclass));
        status = 0;
    }
    map_answer(t, status, c->body.p, c->body.len, &c->o.map);
    if (c->uncertain)
        map_after_uncertain(&c->o.map);
    if (t == MAP_ANSWERED && status >= 500)
        c->uncertain = 1;
    c->o.upstream_status = status;
    buf_copy(c->o.gateway_error, sizeof(c->o.gateway_error), errclass);
    if (c->o.map.throttled)
        c->o.retry_after_s = c->retry_after_s > 0 ? c->retry_after_s : 1;
    if (t != MAP_ANSWERED && c->sends > 1)
        log_msg(LOG_LVL_WARN, c->p.request_id,
                "upstream attempt %d failed: %s (the reused connection closed after the request was sent; "
                "libcurl's resend of the same signed request was refused)",
                c->o.attempts, errclass);
    else if (t != MAP_ANSWERED)
        log_msg(LOG_LVL_WARN, c->p.request_id, "upstream attempt %d failed: %s (%s)", c->o.attempts, errclass,
                curl_easy_strerror(res));
    else if (c->o.map.status != 200)
        /* Code and RequestId only: the upstream's Message can quote what was signed. */
        log_msg(LOG_LVL_INFO, c->p.request_id, "upstream attempt %d answered %ld %s (upstream request %s)",
                c->o.attempts, status, c->o.map.upstream_code[0] ? c->o.map.upstream_code : "without a code",
                c->o.map.upstream_request_id[0] ? c->o.map.upstream_request_id : "unknown");

    easy_put(c->up, c->easy, c->easy_gen);
    c->easy = NULL;
    buf_wipe(&c->params);
    buf_wipe(&c->url);

    remaining = c->p.deadline_ms - (long)(clock_mono_ms() - c->start_ms);
    if (c->o.map.retryable && c->o.attempts <= c->p.max_retries) {
        /* Jitter on an exponential step: 50-100% of base * 2^(n-1), from
         * OpenSSL's RNG (replicas and restarts must not retry in step);
         * never sooner than a throttling answer's Retry-After. */
        long step = UP_BACKOFF_BASE_MS << (c->o.attempts - 1 < 10 ? c->o.attempts - 1 : 10);
        unsigned int r = 0;
        if (step > UP_BACKOFF_MAX_MS)
            step = UP_BACKOFF_MAX_MS;
        if (RAND_bytes((unsigned char *)&r, (int)sizeof(r)) != 1)
            r = 0;
        backoff = step / 2 + (long)(r % (unsigned int)(step / 2 + 1));
        if (c->o.map.throttled && c->retry_after_s > 0 && c->retry_after_s * 1000 > backoff)
            backoff = c->retry_after_s * 1000;
        /* Only retry if the next attempt still has time to do something. */
        if (backoff + 50 < remaining) {
            struct timeval tv = {backoff / 1000, (backoff % 1000) * 1000};
            if (evtimer_add(c->backoff, &tv) == 0)
                return;
        }
    }
    finish(c);
}

static void on_xfer_done(void *arg, CURL *easy, CURLcode res)
{
    struct up_call *c = arg;

    (void)easy; /* c->easy: attempt_done cleans it up */
    attempt_done(c, res);
}

/* Sign attempt number ++attempts and set up its transfer (not added yet). 0,
 * or -1 with c->easy and the signed parameters gone. */
static int setup_attempt(struct up_call *c, long *timeout_out)
{
    long remaining = c->p.deadline_ms - (long)(clock_mono_ms() - c->start_ms);
    long timeout = c->p.timeout_ms < remaining ? c->p.timeout_ms : remaining;
    long ctimeout = c->p.connect_timeout_ms < timeout ? c->p.connect_timeout_ms : timeout;
    CURL *e;

    *timeout_out = timeout;
    c->o.attempts++;
    buf_reset(&c->body);
    c->retry_after_s = 0;
    c->sends = 0;
    if (timeout <= 0)
        goto fail;
    if (c->sign(c->arg, c->o.attempts, &c->params) != 0)
        goto fail;
    e = easy_get(c->up, &c->p);
    if (e == NULL)
        goto fail;
    c->easy = e;
    c->easy_gen = c->up->pr_gen;
    if (c->p.post) {
        /* Sent from our buffer (no copy by curl); wiped after the attempt. */
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->params.p);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)c->params.len);
    } else {
        if (buf_adds(&c->url, c->p.endpoint) != 0 || buf_addc(&c->url, '?') != 0 ||
            buf_add(&c->url, c->params.p, c->params.len) != 0)
            goto fail;
        curl_easy_setopt(e, CURLOPT_URL, c->url.p);
    }
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ctimeout);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, c);
    return 0;
fail:
    drop_attempt(c);
    return -1;
}

/* Undo a set-up attempt that was never sent. */
static void drop_attempt(struct up_call *c)
{
    if (c->easy != NULL) {
        curl_easy_cleanup(c->easy);
        c->easy = NULL;
    }
    buf_wipe(&c->params);
    buf_wipe(&c->url);
    c->o.attempts--;
}

static void start_attempt(struct up_call *c)
{
    long timeout = 0;

    if (setup_attempt(c, &timeout) == 0) {
        if (cev_add(c->up->cev, c->easy, on_xfer_done, c) == 0)
            return;
        drop_attempt(c);
    }
    /* The call cannot go on: report it from the loop, not from here. After a
     * failed attempt its judgement stands; before any, it is ours. */
    if (c->o.attempts == 0) {
        map_answer(MAP_INTERNAL, 0, NULL, 0, &c->o.map);
        buf_copy(c->o.gateway_error, sizeof(c->o.gateway_error), timeout <= 0 ? "deadline" : "internal");
    }
    finish(c);
}

struct up_call *up_prepare(struct up *u, const struct up_params *p, up_sign_fn sign, up_done_fn done, void *arg)
{
    struct up_call *c = calloc(1, sizeof(*c));
    long timeout;

    if (c == NULL)
        return NULL;
    c->up = u;
    c->p = *p;
    c->sign = sign;
    c->done = done;
    c->arg = arg;
    c->start_ms = clock_mono_ms();
    buf_init(&c->params, 64 * 1024);
    buf_init(&c->url, 128 * 1024);
    buf_init(&c->body, UP_BODY_MAX);
    c->backoff = evtimer_new(u->base, on_backoff, c);
    if (c->backoff == NULL) {
        call_free(c);
        return NULL;
    }
    c->next = u->calls;
    if (c->next != NULL)
        c->next->pprev = &c->next;
    c->pprev = &u->calls;
    u->calls = c;
    /* The first attempt now; one that cannot be set up is tried again at launch. */
    setup_attempt(c, &timeout);
    return c;
}

void up_launch(struct up_call *c)
{
    /* The deadline counts from here: the wait before (the audit) is not the upstream's. */
    c->start_ms = clock_mono_ms();
    if (c->easy != NULL && cev_add(c->up->cev, c->easy, on_xfer_done, c) == 0)
        return;
    if (c->easy != NULL)
        drop_attempt(c);
    /* From the loop (in this pass), so done never runs inside up_launch. */
    event_active(c->backoff, EV_TIMEOUT, 1);
}

void up_cancel(struct up_call *c)
{
    if (c != NULL)
        call_free(c);
}
