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
#include <stdlib.h>
#include <string.h>

#define JWKSRC_CONNECT_TIMEOUT_MS 3000
#define JWKSRC_TIMEOUT_MS 10000

struct waiter {
    struct waiter *next;
    struct jwksrc *j;
    struct event *timer;
    void (*fn)(void *arg);
    void *arg;
};

struct jwksrc {
    struct event_base *base;
    struct metrics *metrics;
    struct cev *cev;
    char *url;
    char *ca_file;
    int algs;
    long refresh_s;
    struct auth_keyset *keys; /* owned */
    CURL *fetch;              /* the transfer running, or NULL */
    struct buf body;
    struct event *timer; /* periodic refresh */
    int64_t last_early_ms;
    struct waiter *waiters;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct buf *b = userdata;
    size_t n = size * nmemb;

    return buf_add(b, ptr, n) == 0 ? n : 0;
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

static void wake_waiters(struct jwksrc *j)
{
    struct waiter *w;

    while ((w = j->waiters) != NULL) {
        j->waiters = w->next;
        event_free(w->timer);
        w->fn(w->arg);
        free(w);
    }
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
        auth_keyset_free(j->keys);
        j->keys = ks;
        met_inc(j->metrics, MET_JWKS_REFRESHES);
        if (report.len > 0)
            log_info("JWKS %s: %d usable keys; %s", j->url, n, report.p);
        else
            log_info("JWKS %s: %d usable keys", j->url, n);
    } else {
        met_inc(j->metrics, MET_JWKS_REFRESH_FAILURES);
        log_warn("JWKS %s: refresh failed, keeping the last good key set: %s", j->url,
                 report.p ? report.p : "unknown error");
    }
    buf_free(&report);
    buf_free(&j->body);
    wake_waiters(j);
}

static int start_fetch(struct jwksrc *j)
{
    if (j->fetch != NULL)
        return 0;
    buf_init(&j->body, JWKS_DOC_MAX);
    j->fetch = make_easy(j->url, j->ca_file, &j->body);
    if (j->fetch == NULL || cev_add(j->cev, j->fetch, on_fetched, j) != 0) {
        curl_easy_cleanup(j->fetch);
        j->fetch = NULL;
        return -1;
    }
    return 0;
}

static void on_refresh_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_fetch(arg);
}

static void arm_timer(struct jwksrc *j)
{
    struct timeval tv = {j->refresh_s > 0 ? j->refresh_s : 600, 0};

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
    j->cev = cev_new(base, 4);
    j->timer = event_new(base, -1, EV_PERSIST, on_refresh_timer, j);
    if (j->cev == NULL || j->timer == NULL) {
        jwksrc_free(j);
        return NULL;
    }
    jwksrc_reconfigure(j, o);
    return j;
}

void jwksrc_reconfigure(struct jwksrc *j, const struct jwksrc_opts *o)
{
    int changed = j->url != NULL && strcmp(j->url, o->url) != 0;

    free(j->url);
    free(j->ca_file);
    j->url = strdup(o->url);
    j->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
    j->algs = o->algs;
    j->refresh_s = o->refresh_s;
    arm_timer(j);
    if (changed || j->keys == NULL) {
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
    while ((w = j->waiters) != NULL) {
        j->waiters = w->next;
        event_free(w->timer);
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
    auth_keyset_free(j->keys);
    free(j->url);
    free(j->ca_file);
    free(j);
}

const struct auth_keyset *jwksrc_keys(const struct jwksrc *j)
{
    return j->keys;
}

static void on_wait_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct waiter *w = arg, **pp;

    (void)fd;
    (void)what;
    for (pp = &w->j->waiters; *pp != NULL && *pp != w; pp = &(*pp)->next)
        ;
    if (*pp != NULL)
        *pp = w->next;
    event_free(w->timer);
    w->fn(w->arg);
    free(w);
}

int jwksrc_wait_refresh(struct jwksrc *j, void (*fn)(void *arg), void *arg)
{
    int64_t now = clock_mono_ms();
    struct timeval tv = {JWKSRC_WAIT_MS / 1000, (JWKSRC_WAIT_MS % 1000) * 1000};
    struct waiter *w;

    if (j->fetch == NULL) {
        if (now - j->last_early_ms < JWKSRC_EARLY_MIN_MS)
            return 0;
        j->last_early_ms = now;
        log_info("JWKS %s: a token names an unknown kid; refreshing early", j->url);
        if (start_fetch(j) != 0)
            return 0;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return 0;
    w->j = j;
    w->fn = fn;
    w->arg = arg;
    w->timer = evtimer_new(j->base, on_wait_timeout, w);
    if (w->timer == NULL || evtimer_add(w->timer, &tv) != 0) {
        if (w->timer != NULL)
            event_free(w->timer);
        free(w);
        return 0;
    }
    w->next = j->waiters;
    j->waiters = w;
    return 1;
}
