/*
 * main: smc-gateway's start-up and shutdown. Parses the command line, loads
 * and validates the configuration (or only checks it), hardens the process
 * (no core dumps, secrets wiped from jansson's memory), wires the modules
 * together on one libevent loop, and drains in-flight deletions on SIGTERM.
 */
#include "audit.h"
#include "clock.h"
#include "config.h"
#include "creds.h"
#include "gw.h"
#include "jobs.h"
#include "log.h"
#include "ratelimit.h"
#include "server.h"
#include "upstream.h"

#include <curl/curl.h>
#include <event2/event.h>
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

static void wipe_free(void *p)
{
    if (p != NULL)
        OPENSSL_cleanse(p, malloc_usable_size(p));
    free(p);
}

static void harden_process(void)
{
    struct rlimit rl = {0, 0};

    /* No core dumps, no ptrace by other users: memory holds AccessKeys. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    setrlimit(RLIMIT_CORE, &rl);
    signal(SIGPIPE, SIG_IGN);
}

struct drain {
    struct gw *gw;
    struct event *timer;
    int64_t deadline_ms;
};

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct drain *d = arg;
    struct timeval tv = {0, DRAIN_POLL_MS * 1000};

    (void)fd;
    (void)what;
    if (d->gw->jobs_in_flight == 0 || clock_mono_ms() >= d->deadline_ms) {
        if (d->gw->jobs_in_flight > 0)
            log_warn("shutdown timeout: %ld requests still in flight are abandoned", d->gw->jobs_in_flight);
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
    if (d->gw->draining)
        return;
    log_info("signal %d: draining %ld in-flight requests, then exiting", (int)sig, d->gw->jobs_in_flight);
    d->gw->draining = 1;
    srv_stop_accepting(d->gw->srv);
    d->deadline_ms = clock_mono_ms() + d->gw->cfg->upstream.deadline_ms + 5000;
    evtimer_add(d->timer, &now);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jobs_sweep_refusals(arg, 0);
}

static int run(struct gw_config *cfg)
{
    int rc = 1;
    struct gw gw;
    struct buf err;
    struct drain d;
    struct event *sigterm = NULL, *sigint = NULL;
    struct audit_opts ao;
    struct timeval sweep_tv = {5, 0};

    memset(&gw, 0, sizeof(gw));
    memset(&d, 0, sizeof(d));
    buf_init(&err, 16 * 1024);
    gw.cfg = cfg;
    gw.base = event_base_new();
    if (gw.base == NULL)
        goto out;
    ao.path = cfg->audit.file;
    ao.instance = cfg->instance;
    gw.audit = audit_new(gw.base, &ao, &err);
    if (gw.audit == NULL)
        goto out;
    gw.up = up_new(gw.base, 1024);
    gw.refusals = rl_refusals_new(REFUSALS_PER_MINUTE, 60 * 1000, REFUSAL_CLIENTS_MAX);
    if (gw.up == NULL || gw.refusals == NULL)
        goto out;
    gw.srv = srv_new(&gw, cfg, &err);
    if (gw.srv == NULL)
        goto out;
    d.gw = &gw;
    d.timer = evtimer_new(gw.base, on_drain_tick, &d);
    sigterm = evsignal_new(gw.base, SIGTERM, on_signal, &d);
    sigint = evsignal_new(gw.base, SIGINT, on_signal, &d);
    gw.sweep = event_new(gw.base, -1, EV_PERSIST, on_sweep, &gw);
    if (d.timer == NULL || sigterm == NULL || sigint == NULL || gw.sweep == NULL || evsignal_add(sigterm, NULL) ||
        evsignal_add(sigint, NULL) || event_add(gw.sweep, &sweep_tv))
        goto out;
    log_info("smc-gateway %s listening on %s:%d (instance %s, config generation %llu)", GW_VERSION,
             cfg->listen_host, cfg->listen_port, cfg->instance, (unsigned long long)cfg->generation);
    event_base_dispatch(gw.base);
    rc = 0;
out:
    if (err.len > 0)
        log_error("%.*s", (int)(err.len > 0 && err.p[err.len - 1] == '\n' ? err.len - 1 : err.len), err.p);
    if (gw.refusals != NULL && gw.audit != NULL)
        jobs_sweep_refusals(&gw, 1);
    srv_free(gw.srv);
    up_free(gw.up);
    audit_free(gw.audit);
    rl_refusals_free(gw.refusals);
    if (gw.sweep != NULL)
        event_free(gw.sweep);
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    if (d.timer != NULL)
        event_free(d.timer);
    if (gw.base != NULL)
        event_base_free(gw.base);
    buf_free(&err);
    if (rc == 0)
        log_info("smc-gateway stopped");
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
        case 'c': path = optarg; break;
        case 'k': check = 1; break;
        case 'V': printf("smc-gateway %s\n", GW_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    harden_process();
    json_set_alloc_funcs(wipe_malloc, wipe_free);
    creds_capture_env();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    buf_init(&err, 64 * 1024);
    cfg = cfg_load(path, &err);
    if (check) {
        if (cfg != NULL) {
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
    rc = run(cfg);
out:
    cfg_unref(cfg);
    buf_free(&err);
    creds_release_env();
    curl_global_cleanup();
    return rc;
}
