/*
 * jwksrc: JWKS fetching and refreshing (see jwksrc.h).
 */
#include "jwksrc.h"

#include "clock.h"
#include "curlev.h"
#include "jwks.h"
#include "log.h"
#include "metrics.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JWKSRC_CONNECT_TIMEOUT_MS 3000
#define JWKSRC_TIMEOUT_MS 10000

/* A request waiting for a refresh; ev belongs to the request's loop. */
struct waiter {
    struct waiter *next;
    struct event *ev; /* activated (from the main thread) when the wait is over */
    int64_t deadline_ms;
    void (*fn)(void *arg);
    void *arg;
};

struct jwksrc {
    struct event_base *base; /* the main loop: fetches run here */
    struct metrics *metrics;
    struct cev *cev;
    char *url;
    char *url_log; /* url without userinfo, query or fragment: what logs show */
    char *ca_file;
    int algs;
    long refresh_s;
    CURL *fetch; /* the transfer running, or NULL (main thread only) */
    struct buf body;
    struct event *timer;      /* periodic refresh */
    struct event *kick;       /* a worker asked for an early refresh */
    struct event *wait_timer; /* ends waits after JWKSRC_WAIT_MS */
    pthread_mutex_t mu;       /* guards what follows */
    struct auth_keyset *keys; /* one reference */
    int refreshing;           /* a fetch runs or is about to */
    int64_t last_early_ms;
    struct waiter *waiters;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct buf *b = userdata;
    size_t n = size * nmemb;

    return buf_add(b, ptr, n) == 0 ? n : 0;
}

char *jwksrc_url_for_log(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *out = NULL;

    /* Only the parts that name the resource: userinfo, query and fragment
     * may carry credentials (a password, an API key, a signed-URL token). */
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
            port = NULL; /* none given: the scheme's default */
        if (asprintf(&out, "%s://%s%s%s%s", scheme, host, port ? ":" : "", port ? port : "", path) < 0)
            out = NULL;
    } else {
        out = strdup("(unparsable URL)");
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return out;
}

/* The URL as logs show it (never NULL). */
static const char *log_url(const struct jwksrc *j)
{
    return j->url_log != NULL ? j->url_log : "(URL)";
}

/* An easy handle for the JWKS URL, writing into body. */
static CURL *make_easy(const char *url, const char *ca_file, struct buf *body)
{
    CURL *e = curl_easy_init();

    if (e == NULL)
        return NULL;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)JWKSRC_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)JWKSRC_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE, (long)JWKS_DOC_MAX);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "smc-gateway/" GW_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
    return e;
}

/* Judge a finished fetch: the parsed set, or -1 with why in report. */
static int judge(CURL *e, CURLcode res, const struct buf *body, int algs, struct auth_keyset **out, struct buf *report)
{
    long status = 0;

    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (res != CURLE_OK) {
        buf_printf(report, "fetch failed: %s\n", curl_easy_strerror(res));
        return -1;
    }
    if (status != 200) {
        buf_printf(report, "fetch answered HTTP %ld\n", status);
        return -1;
    }
    return jwks_parse(body->p ? body->p : "", body->len, algs, out, report);
}

int jwksrc_fetch_blocking(const struct jwksrc_opts *o, struct auth_keyset **out, struct buf *report)
{
    struct buf body;
    CURL *e;
    int rc = -1;

    buf_init(&body, JWKS_DOC_MAX);
    e = make_easy(o->url, o->ca_file, &body);
    if (e != NULL)
        rc = judge(e, curl_easy_perform(e), &body, o->algs, out, report);
    curl_easy_cleanup(e);
    buf_free(&body);
    return rc;
}

/* End the waits that are over (all when all), on their own loops. */
static void wake_waiters(struct jwksrc *j, int all)
{
    struct waiter **pp, *w, *due = NULL;
    int64_t now = clock_mono_ms();

    pthread_mutex_lock(&j->mu);
    for (pp = &j->waiters; (w = *pp) != NULL;) {
        if (all || now >= w->deadline_ms) {
            *pp = w->next;
            w->next = due;
            due = w;
        } else {
            pp = &w->next;
        }
    }
    pthread_mutex_unlock(&j->mu);
    while ((w = due) != NULL) {
        due = w->next;
        /* From here the waiter is its loop's: on_waited frees it. */
        event_active(w->ev, EV_TIMEOUT, 0);
    }
}

/* On the waiting request's loop. */
static void on_waited(evutil_socket_t fd, short what, void *arg)
{
    struct waiter *w = arg;

    (void)fd;
    (void)what;
    w->fn(w->arg);
    event_free(w->ev);
    free(w);
}

static void on_wait_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    wake_waiters(arg, 0);
}

static void on_fetched(void *arg, CURL *easy, CURLcode res)
{
    struct jwksrc *j = arg;
    struct auth_keyset *ks = NULL;
    struct buf report;
    int n;

    buf_init(&report, 16 * 1024);
    n = judge(easy, res, &j->body, j->algs, &ks, &report);
    curl_easy_cleanup(easy);
    j->fetch = NULL;
    if (report.len > 0)
        report.p[report.len - 1] = '\0';
    if (n > 0) {
        struct auth_keyset *old;
        pthread_mutex_lock(&j->mu);
        old = j->keys;
        j->keys = ks;
        pthread_mutex_unlock(&j->mu);
        /* Threads verifying with the old set hold their own references. */
        auth_keyset_free(old);
        met_inc(j->metrics, MET_JWKS_REFRESHES);
        if (report.len > 0)
            log_info("JWKS %s: %d usable keys; %s", log_url(j), n, report.p);
        else
            log_info("JWKS %s: %d usable keys", log_url(j), n);
    } else {
        int have;
        pthread_mutex_lock(&j->mu);
        have = j->keys != NULL;
        pthread_mutex_unlock(&j->mu);
        met_inc(j->metrics, MET_JWKS_REFRESH_FAILURES);
        log_warn("JWKS %s: refresh failed, %s: %s", log_url(j),
                 have ? "keeping the last good key set" : "no key set: tokens are refused until a fetch succeeds",
                 report.p ? report.p : "unknown error");
    }
    buf_free(&report);
    buf_free(&j->body);
    pthread_mutex_lock(&j->mu);
    j->refreshing = 0;
    pthread_mutex_unlock(&j->mu);
    wake_waiters(j, 1);
}

/* Main thread only. */
static int start_fetch(struct jwksrc *j)
{
    if (j->fetch != NULL)
        return 0;
    pthread_mutex_lock(&j->mu);
    j->refreshing = 1;
    pthread_mutex_unlock(&j->mu);
    buf_init(&j->body, JWKS_DOC_MAX);
    j->fetch = make_easy(j->url, j->ca_file, &j->body);
    if (j->fetch == NULL || cev_add(j->cev, j->fetch, on_fetched, j) != 0) {
        curl_easy_cleanup(j->fetch);
        j->fetch = NULL;
        pthread_mutex_lock(&j->mu);
        j->refreshing = 0;
        pthread_mutex_unlock(&j->mu);
        wake_waiters(j, 1);
        return -1;
    }
    return 0;
}

/* The refresh timer. */
static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_fetch(arg);
}

/* The kick of an early refresh, on the main loop: the URL (which a reload
 * replaces there) is read only there, never from the worker that kicked. */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct jwksrc *j = arg;

    (void)fd;
    (void)what;
    log_info("JWKS %s: a token names an unknown kid; refreshing early", log_url(j));
    start_fetch(j);
}

static void arm_timer(struct jwksrc *j)
{
    struct timeval tv = {j->refresh_s, 0};

    evtimer_del(j->timer);
    event_add(j->timer, &tv);
}

struct jwksrc *jwksrc_new(struct event_base *base, struct metrics *m, const struct jwksrc_opts *o,
                          struct auth_keyset *initial)
{
    struct jwksrc *j = calloc(1, sizeof(*j));

    if (j == NULL) {
        auth_keyset_free(initial);
        return NULL;
    }
    j->base = base;
    j->metrics = m;
    j->keys = initial;
    j->last_early_ms = -JWKSRC_EARLY_MIN_MS;
    pthread_mutex_init(&j->mu, NULL);
    j->cev = cev_new(base, 4);
    j->timer = event_new(base, -1, EV_PERSIST, on_refresh, j);
    j->kick = event_new(base, -1, 0, on_kick, j);
    j->wait_timer = event_new(base, -1, EV_PERSIST, on_wait_tick, j);
    if (j->cev == NULL || j->timer == NULL || j->kick == NULL || j->wait_timer == NULL ||
        event_add(j->wait_timer, &(struct timeval){0, 100 * 1000}) != 0) {
        jwksrc_free(j);
        return NULL;
    }
    jwksrc_reconfigure(j, o);
    return j;
}

static int same_str(const char *a, const char *b)
{
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

void jwksrc_reconfigure(struct jwksrc *j, const struct jwksrc_opts *o)
{
    /* A set fetched from another URL, trusted through another CA file or
     * parsed for other algorithms is not the configured IdP's: it must not
     * verify one more token, not even while the new URL does not answer. */
    int changed =
        j->url != NULL && (strcmp(j->url, o->url) != 0 || !same_str(j->ca_file, o->ca_file) || j->algs != o->algs);
    struct auth_keyset *old = NULL;
    int have;

    free(j->url);
    free(j->url_log);
    free(j->ca_file);
    j->url = strdup(o->url);
    j->url_log = jwksrc_url_for_log(o->url);
    j->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
    j->algs = o->algs;
    j->refresh_s = o->refresh_s;
    arm_timer(j);
    if (changed) {
        /* Dropped before the new configuration is published (main.c swaps
         * it in after this call), so no request of either generation sees
         * the old set; cache entries name the dropped set's id, which is
         * never current again. */
        pthread_mutex_lock(&j->mu);
        old = j->keys;
        j->keys = NULL;
        pthread_mutex_unlock(&j->mu);
        auth_keyset_free(old);
        log_warn("JWKS %s: auth.jwks_url, jwks_ca_file or algorithms changed: the previous key set no longer "
                 "verifies tokens; tokens are refused until this URL answers",
                 log_url(j));
    }
    pthread_mutex_lock(&j->mu);
    have = j->keys != NULL;
    pthread_mutex_unlock(&j->mu);
    if (changed || !have) {
        if (j->fetch != NULL) {
            cev_remove(j->cev, j->fetch);
            curl_easy_cleanup(j->fetch);
            j->fetch = NULL;
            buf_free(&j->body);
        }
        start_fetch(j);
    }
}

void jwksrc_free(struct jwksrc *j)
{
    struct waiter *w;

    if (j == NULL)
        return;
    /* The waiting loops have stopped: their events are freed unrun. */
    while ((w = j->waiters) != NULL) {
        j->waiters = w->next;
        event_free(w->ev);
        free(w);
    }
    if (j->fetch != NULL) {
        cev_remove(j->cev, j->fetch);
        curl_easy_cleanup(j->fetch);
    }
    buf_free(&j->body);
    cev_free(j->cev);
    if (j->timer != NULL)
        event_free(j->timer);
    if (j->kick != NULL)
        event_free(j->kick);
    if (j->wait_timer != NULL)
        event_free(j->wait_timer);
    pthread_mutex_destroy(&j->mu);
    auth_keyset_free(j->keys);
    free(j->url);
    free(j->url_log);
    free(j->ca_file);
    free(j);
}

struct auth_keyset *jwksrc_keys_get(struct jwksrc *j)
{
    struct auth_keyset *ks;

    pthread_mutex_lock(&j->mu);
    ks = auth_keyset_ref(j->keys);
    pthread_mutex_unlock(&j->mu);
    return ks;
}

int jwksrc_wait_refresh(struct jwksrc *j, struct event_base *base, void (*fn)(void *arg), void *arg)
{
    int64_t now = clock_mono_ms();
    struct waiter *w = calloc(1, sizeof(*w));
    int rc = 0, kick = 0;

    if (w == NULL || (w->ev = event_new(base, -1, 0, on_waited, w)) == NULL) {
        free(w);
        return 0;
    }
    w->fn = fn;
    w->arg = arg;
    w->deadline_ms = now + JWKSRC_WAIT_MS;
    pthread_mutex_lock(&j->mu);
    if (!j->refreshing && now - j->last_early_ms >= JWKSRC_EARLY_MIN_MS) {
        j->last_early_ms = now;
        j->refreshing = 1;
        kick = 1;
    }
    if (j->refreshing) {
        w->next = j->waiters;
        j->waiters = w;
        rc = 1;
    }
    pthread_mutex_unlock(&j->mu);
    if (!rc) {
        event_free(w->ev);
        free(w);
        return 0;
    }
    if (kick)
        event_active(j->kick, EV_TIMEOUT, 0);
    return 1;
}
