/*
 * main: smc-gateway's start-up and shutdown. Parses the command line, loads
 * and validates the configuration (or only checks it), hardens the process
 * (no core dumps, secrets wiped from jansson's memory), wires the modules
 * together on one libevent loop, and drains in-flight deletions on SIGTERM.
 */
#include "audit.h"
#include "auditread.h"
#include "auth.h"
#include "clock.h"
#include "config.h"
#include "creds.h"
#include "gw.h"
#include "jobs.h"
#include "jwksrc.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "server.h"
#include "upstream.h"
#include "worker.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <jansson.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#define REFUSALS_PER_MINUTE 10
#define REFUSAL_CLIENTS_MAX 10000
#define DRAIN_POLL_MS 50

static void usage(FILE *f)
{
    fprintf(f, "usage: smc-gateway -c FILE [--check-config]\n"
               "       smc-gateway --version | --help\n"
               "\n"
               "  -c, --config FILE   run the gateway with this configuration (foreground)\n"
               "      --check-config  validate FILE and every file it names, then exit 0 or 1\n"
               "  -V, --version       print the version\n"
               "  -h, --help          this text\n");
}

/* jansson holds parsed credential files: overwrite everything it frees. */
static void *wipe_malloc(size_t n)
{
    return malloc(n);
}

/* explicit_bzero, not OPENSSL_cleanse: the same guarantee (never optimised
 * away) at memset's speed, and libcurl frees a few kB per request. */
static void wipe_free(void *p)
{
    if (p != NULL)
        explicit_bzero(p, malloc_usable_size(p));
    free(p);
}

/* A realloc that never leaves the old block behind unwiped (libcurl grows
 * its request buffer, which holds the signed form, this way). */
static void *wipe_realloc(void *p, size_t n)
{
    void *q;
    size_t old;

    if (p == NULL)
        return malloc(n);
    old = malloc_usable_size(p);
    q = malloc(n > 0 ? n : 1);
    if (q != NULL) {
        memcpy(q, p, old < n ? old : n);
        wipe_free(p);
    }
    return q;
}

static void harden_process(void)
{
    struct rlimit rl = {0, 0};

    /* No core dumps, no ptrace by other users: memory holds AccessKeys. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    setrlimit(RLIMIT_CORE, &rl);
    signal(SIGPIPE, SIG_IGN);
    /* As many descriptors as the hard limit allows (connections). */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

struct drain {
    struct gw *gw;
    struct event *timer;
    int64_t deadline_ms;
    const char *config_path;
};

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct drain *d = arg;
    struct timeval tv = {0, DRAIN_POLL_MS * 1000};
    int drained = 1;

    (void)fd;
    (void)what;
    /* Done when every worker has no request in flight and no reply unsent. */
    for (int i = 0; i < d->gw->nworkers; i++)
        drained &= atomic_load(&d->gw->workers[i].drained);
    if (drained || clock_mono_ms() >= d->deadline_ms) {
        if (!drained)
            log_warn("shutdown timeout: %ld requests still in flight are abandoned", gw_jobs_in_flight(d->gw));
        event_base_loopexit(d->gw->base, NULL);
        return;
    }
    evtimer_add(d->timer, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct drain *d = arg;
    struct timeval now = {0, 0};

    (void)what;
    if (atomic_load(&d->gw->draining))
        return;
    log_info("signal %d: draining %ld in-flight requests, then exiting", (int)sig, gw_jobs_in_flight(d->gw));
    atomic_store(&d->gw->draining, 1);
    /* The admin listener keeps answering (/readyz says draining). */
    for (int i = 0; i < d->gw->nworkers; i++)
        gw_worker_post(&d->gw->workers[i], WORKER_STOP_ACCEPTING);
    d->deadline_ms = clock_mono_ms() + d->gw->cfg->shutdown_timeout_ms;
    evtimer_add(d->timer, &now);
}

static void audit_opts_of(const struct gw_config *cfg, struct audit_opts *o)
{
    o->path = cfg->audit.file;
    o->instance = cfg->instance;
    o->key = cfg->audit_key;
    o->checkpoint_every = cfg->audit.checkpoint_every;
    o->checkpoint_seconds = cfg->audit.checkpoint_seconds;
    o->rotate_bytes = cfg->audit.rotate_bytes;
    o->group_commit_us = cfg->audit.group_commit_us;
    o->slow_sync_ms = cfg->audit.slow_sync_warn_ms;
}

/*
 * SIGHUP: build the new configuration off to the side; swap it in only when
 * every file is valid. Requests in flight keep the snapshot they hold.
 */
static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    struct drain *d = arg;
    struct gw *gw = d->gw;
    struct buf err;
    struct gw_config *next;
    struct audit_opts ao;
    struct jwksrc_opts jo;

    (void)sig;
    (void)what;
    buf_init(&err, 64 * 1024);
    next = cfg_load(d->config_path, 0, &err);
    if (next == NULL) {
        if (err.len > 0)
            err.p[err.len - 1] = '\0';
        met_inc(gw->metrics, MET_RELOAD_FAILURES);
        log_error("reload refused, the running configuration stays: %s", err.p ? err.p : "invalid configuration");
        buf_free(&err);
        return;
    }
    buf_free(&err);
    if (strcmp(next->listen_host, gw->cfg->listen_host) != 0 || next->listen_port != gw->cfg->listen_port ||
        next->proxy_protocol != gw->cfg->proxy_protocol || (next->admin_host == NULL) != (gw->cfg->admin_host == NULL))
        log_warn("reload: listen, admin_listen and proxy_protocol changes take effect at restart");
    if (strcmp(next->instance, gw->cfg->instance) != 0) {
        log_error("reload refused: instance cannot change while running (it names the audit chain)");
        met_inc(gw->metrics, MET_RELOAD_FAILURES);
        cfg_unref(next);
        return;
    }
    cfg_jwksrc_opts(next, &jo);
    if (jo.url != NULL && gw->jwks != NULL)
        jwksrc_reconfigure(gw->jwks, &jo);
    pthread_mutex_lock(&gw->cfg_mu);
    if (jo.url != NULL && gw->jwks == NULL) {
        /* Published with the snapshot that uses it (workers read it after
         * taking the snapshot under cfg_mu). */
        gw->jwks = jwksrc_new(gw->base, gw->metrics, &jo, NULL);
    }
    cfg_unref(gw->cfg);
    gw->cfg = next;
    pthread_mutex_unlock(&gw->cfg_mu);
    log_set_level(next->log_level);
    for (int i = 0; i < gw->nworkers; i++)
        gw_worker_post(&gw->workers[i], WORKER_RECONFIGURE);
    if (gw->admin != NULL)
        srv_reconfigure(gw->admin, next);
    audit_opts_of(next, &ao);
    audit_reconfigure(gw->audit, &ao);
    /* The reload signal also reopens the audit file (logrotate). */
    audit_reopen(gw->audit);
    met_inc(gw->metrics, MET_RELOADS);
    log_info("configuration reloaded (generation %llu)", (unsigned long long)next->generation);
}

static void on_reopen(evutil_socket_t sig, short what, void *arg)
{
    struct drain *d = arg;

    (void)sig;
    (void)what;
    log_info("SIGUSR1: reopening the audit log");
    audit_reopen(d->gw->audit);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jobs_sweep_refusals(arg, 0);
}

static int run(struct gw_config *cfg, const char *config_path)
{
    int rc = 1;
    struct gw gw;
    struct buf err;
    struct drain d;
    struct event *sigs[4] = {NULL, NULL, NULL, NULL};
    static const int signums[4] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    struct audit_opts ao;
    struct timeval sweep_tv = {5, 0};

    memset(&gw, 0, sizeof(gw));
    memset(&d, 0, sizeof(d));
    buf_init(&err, 16 * 1024);
    pthread_mutex_init(&gw.cfg_mu, NULL);
    pthread_mutex_init(&gw.rl_mu, NULL);
    gw.cfg = cfg;
    gw.base = event_base_new();
    gw.metrics = met_new();
    if (gw.base == NULL || gw.metrics == NULL)
        goto out;
    audit_opts_of(cfg, &ao);
    gw.audit = audit_new(gw.base, &ao, &err);
    if (gw.audit == NULL)
        goto out;
    gw.refusals = rl_refusals_new(REFUSALS_PER_MINUTE, 60 * 1000, REFUSAL_CLIENTS_MAX);
    if (gw.refusals == NULL)
        goto out;
    if (cfg->auth.jwks_url != NULL) {
        struct jwksrc_opts jo;
        cfg_jwksrc_opts(cfg, &jo);
        /* The key source takes over the set fetched at start-up. */
        gw.jwks = jwksrc_new(gw.base, gw.metrics, &jo, cfg->keys);
        cfg->keys = NULL;
        if (gw.jwks == NULL)
            goto out;
    }
    if (cfg->key_report != NULL)
        log_info("%s", cfg->key_report);
    /* Signal handlers before any socket is bound: a supervisor that sees the
     * port open may signal at once (its default action would kill us). They
     * run from the loop, once everything below is set up. */
    d.gw = &gw;
    d.config_path = config_path;
    for (int i = 0; i < 4; i++) {
        event_callback_fn fn = signums[i] == SIGHUP ? on_reload : signums[i] == SIGUSR1 ? on_reopen : on_signal;
        sigs[i] = evsignal_new(gw.base, signums[i], fn, &d);
        if (sigs[i] == NULL || evsignal_add(sigs[i], NULL) != 0)
            goto out;
    }
    if (cfg->admin_host != NULL && (gw.admin = srv_new(&gw, NULL, gw.base, cfg, -1, &err)) == NULL)
        goto out;
    gw.workers = calloc((size_t)cfg->workers, sizeof(*gw.workers));
    if (gw.workers == NULL)
        goto out;
    for (gw.nworkers = 0; gw.nworkers < cfg->workers; gw.nworkers++)
        if (worker_init(&gw.workers[gw.nworkers], &gw, cfg, gw.nworkers > 0 ? srv_listen_fd(gw.workers[0].srv) : -1,
                        &err) != 0) {
            gw.nworkers++; /* partly made: freed below */
            goto out;
        }
    d.timer = evtimer_new(gw.base, on_drain_tick, &d);
    gw.sweep = event_new(gw.base, -1, EV_PERSIST, on_sweep, &gw);
    if (d.timer == NULL || gw.sweep == NULL || event_add(gw.sweep, &sweep_tv) != 0)
        goto out;
    for (int i = 0; i < gw.nworkers; i++)
        if (worker_start(&gw.workers[i]) != 0)
            goto out;
    log_info("smc-gateway %s listening on %s:%d%s with %d workers (instance %s, config generation %llu)", GW_VERSION,
             cfg->listen_host, cfg->listen_port, cfg->has_tls ? " with TLS" : "", gw.nworkers, cfg->instance,
             (unsigned long long)cfg->generation);
    event_base_dispatch(gw.base);
    rc = 0;
out:
    if (err.len > 0)
        log_error("%.*s", (int)(err.p[err.len - 1] == '\n' ? err.len - 1 : err.len), err.p);
    /* Workers first (their requests are done, or abandoned at the timeout). */
    for (int i = 0; i < gw.nworkers; i++)
        worker_stop(&gw.workers[i]);
    if (gw.refusals != NULL && gw.audit != NULL)
        jobs_sweep_refusals(&gw, 1);
    for (int i = 0; i < gw.nworkers; i++)
        worker_free(&gw.workers[i]);
    srv_free(gw.admin);
    /* The JWKS source's and the audit's events may live on worker loops. */
    jwksrc_free(gw.jwks);
    audit_free(gw.audit);
    for (int i = 0; i < gw.nworkers; i++)
        worker_free_base(&gw.workers[i]);
    free(gw.workers);
    rl_refusals_free(gw.refusals);
    jobs_free_state(&gw);
    met_free(gw.metrics);
    if (gw.sweep != NULL)
        event_free(gw.sweep);
    for (int i = 0; i < 4; i++)
        if (sigs[i] != NULL)
            event_free(sigs[i]);
    if (d.timer != NULL)
        event_free(d.timer);
    if (gw.base != NULL)
        event_base_free(gw.base);
    buf_free(&err);
    if (rc == 0)
        log_info("smc-gateway stopped");
    /* The snapshot in use at the end (the caller's may have been replaced). */
    cfg_unref(gw.cfg);
    pthread_mutex_destroy(&gw.cfg_mu);
    pthread_mutex_destroy(&gw.rl_mu);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check-config", no_argument, NULL, 'k'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL;
    int check = 0, opt, rc = 1;
    struct gw_config *cfg = NULL;
    struct buf err;

    while ((opt = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'V':
            printf("smc-gateway %s\n", GW_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    harden_process();
    /* Worker threads post to each other's loops: libevent must lock. */
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "smc-gateway: libevent without pthreads support\n");
        return 1;
    }
    /* jansson holds the parsed credentials file, libcurl the signed request
     * (AccessKeyId, SecurityToken, Signature) in buffers it frees: both free
     * through wipe_free. */
    json_set_alloc_funcs(wipe_malloc, wipe_free);
    creds_capture_env();
    curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, wipe_free, wipe_realloc, strdup, calloc);
    buf_init(&err, 64 * 1024);
    cfg = cfg_load(path, CFG_FETCH_JWKS, &err);
    if (check) {
        if (cfg != NULL) {
            if (cfg->key_report != NULL)
                printf("%s\n", cfg->key_report);
            printf("%s: OK\n", path);
            rc = 0;
        } else {
            fputs(err.p ? err.p : "invalid configuration\n", stderr);
        }
        goto out;
    }
    if (cfg == NULL) {
        if (err.p != NULL)
            err.p[err.len > 0 ? err.len - 1 : 0] = '\0';
        log_error("refusing to start: %s", err.p ? err.p : "invalid configuration");
        goto out;
    }
    log_set_level(cfg->log_level);
    if (geteuid() == 0 && !cfg->allow_root) {
        log_error("refusing to run as root: run as the user that owns the key files (the systemd unit does), "
                  "or set \"allow_root\": true in %s",
                  path);
        goto out;
    }
    rc = run(cfg, path);
    cfg = NULL; /* run() released it (reload may have replaced it) */
out:
    cfg_unref(cfg);
    buf_free(&err);
    creds_release_env();
    curl_global_cleanup();
#if defined(__SANITIZE_ADDRESS__)
    /* LeakSanitizer inspects the process at exit and needs it dumpable. */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
    return rc;
}
