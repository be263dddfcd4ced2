/*
 * sim_main.c - entry point of build/smc-sim: command line, listening
 * socket (HTTP or HTTPS through bufferevent_openssl), the evhttp server,
 * signals and an orderly teardown so that AddressSanitizer/LeakSanitizer
 * runs stay clean.  Requests are routed to the control API (/_sim/...) or
 * to the simulated Alibaba RPC endpoint (everything else).
 */
#include "sim.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

static void usage(FILE *out)
{
    fprintf(out,
        "usage: smc-sim --listen HOST:PORT --credentials FILE [options]\n"
        "       smc-sim --self-test\n"
        "\n"
        "Test double of Alibaba Cloud's RPC API (SMC DeleteReplicationJob).\n"
        "\n"
        "  --listen HOST:PORT     address to serve on; port 0 picks one\n"
        "  --port-file FILE       write the bound port there (atomically)\n"
        "  --credentials FILE     accepted keys, gateway credential format\n"
        "  --jobs FILE            initial jobs {\"j-abc\": \"Ready\", ...}\n"
        "  --all-jobs-exist       any well-formed JobId is a Ready job that\n"
        "                         deletion does not remove (load tests)\n"
        "  --tls-cert FILE        serve HTTPS (TLS 1.2+) with this chain...\n"
        "  --tls-key FILE         ...and this key\n"
        "  --quiet                no per-request log lines\n"
        "  --no-record            do not record requests (load tests)\n"
        "  --max-records N        keep at most N recorded requests "
        "(default %d)\n"
        "  --jwks FILE            serve FILE at GET /_sim/jwks (an identity\n"
        "                         provider's JWKS for demos; re-read on each GET)\n"
        "  --conn-timeout SEC     idle/hung connection timeout (default "
        "3600)\n"
        "  --self-test            check the signer against published "
        "vectors\n"
        "  --help                 this text\n"
        "\n"
        "Control API: /_sim/{health,requests,jobs,fault,reset,stats}; see\n"
        "tests/sim/README.md.  SIGHUP reloads --credentials.\n",
        SIM_DEFAULT_MAX_RECORDS);
}

/* ---------------------------------------------------------- listening */

/* HOST:PORT, [V6]:PORT or :PORT (all interfaces). */
static int split_hostport(const char *s, char *host, size_t hostlen,
                          char *port, size_t portlen)
{
    const char *colon, *h = s;
    size_t hl;

    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl >= hostlen || strlen(colon + 1) >= portlen || !colon[1])
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, portlen, "%s", colon + 1);
    return 0;
}

static evutil_socket_t open_listener(const char *spec, int *bound_port)
{
    char host[256], port[16];
    struct addrinfo hints, *res = NULL, *ai;
    evutil_socket_t fd = -1;
    int gai, one = 1;

    if (split_hostport(spec, host, sizeof(host), port, sizeof(port)) != 0) {
        fprintf(stderr, "smc-sim: --listen wants HOST:PORT, got \"%s\"\n",
                spec);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0) {
        fprintf(stderr, "smc-sim: %s: %s\n", spec, gai_strerror(gai));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0)
            continue;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        /* A deep backlog: load tests open hundreds of connections at
         * once and the default 128 would make some of them wait for a SYN
         * retransmit. */
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, 4096) == 0 && evutil_make_socket_nonblocking(fd) == 0)
            break;
        fprintf(stderr, "smc-sim: %s: %s\n", spec, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
            close(fd);
            return -1;
        }
        *bound_port = ss.ss_family == AF_INET6
                          ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                          : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    return fd;
}

/* Readers poll for the file, so it must appear complete or not at all. */
static int write_port_file(const char *path, int port)
{
    int rc = -1;
    size_t l = strlen(path);
    char *tmp = malloc(l + 5);
    FILE *f = NULL;

    if (!tmp)
        goto out;
    memcpy(tmp, path, l);
    memcpy(tmp + l, ".tmp", 5);
    f = fopen(tmp, "w");
    if (!f)
        goto out;
    if (fprintf(f, "%d\n", port) < 0) {
        fclose(f);
        f = NULL;
        goto out;
    }
    if (fclose(f) != 0) {
        f = NULL;
        goto out;
    }
    f = NULL;
    if (rename(tmp, path) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "smc-sim: writing %s: %s\n", path, strerror(errno));
    free(tmp);
    return rc;
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ---------------------------------------------------------------- TLS */

static SSL_CTX *tls_ctx(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (!ctx)
        goto fail;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
        goto fail;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        goto fail;
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        goto fail;
    if (SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    return ctx;
fail:
    fprintf(stderr, "smc-sim: TLS setup (%s, %s) failed:\n", cert, key);
    ERR_print_errors_fp(stderr);
    SSL_CTX_free(ctx);
    return NULL;
}

static struct bufferevent *tls_bevcb(struct event_base *base, void *arg)
{
    struct sim *sim = arg;
    SSL *ssl = SSL_new(sim->ssl_ctx);
    struct bufferevent *bev;

    if (!ssl)
        return NULL;
    bev = bufferevent_openssl_socket_new(base, -1, ssl,
                                         BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* Clients that just close (no close_notify) are normal here. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* ------------------------------------------------------------- events */

static void on_request(struct evhttp_request *req, void *arg)
{
    struct sim *sim = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

    if (!path)
        path = "";
    if (strncmp(path, "/_sim/", 6) == 0 || strcmp(path, "/_sim") == 0)
        sim_ctl_handle(sim, req, path);
    else
        sim_rpc_handle(sim, req, path);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct sim *sim = arg;

    (void)what;
    if (!sim->opt.quiet)
        fprintf(stderr, "smc-sim: signal %d, exiting\n", (int)sig);
    event_base_loopbreak(sim->base);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct sim *sim = arg;
    struct sim_creds c = {NULL, 0};
    char err[512];

    (void)sig;
    (void)what;
    if (sim_creds_load(sim->opt.creds_path, &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "smc-sim: SIGHUP: keeping old credentials: %s\n",
                err);
        return;
    }
    sim_creds_free(&sim->creds);
    sim->creds = c;
    fprintf(stderr, "smc-sim: SIGHUP: %zu credential(s) loaded\n", c.n);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct sim *sim = arg;

    (void)fd;
    (void)what;
    sim_nonces_sweep(&sim->nonces, sim_now_ms());
}

/* --------------------------------------------------------------- main */

enum {
    OPT_LISTEN = 256, OPT_PORT_FILE, OPT_CREDS, OPT_JOBS, OPT_ALL_JOBS,
    OPT_TLS_CERT, OPT_TLS_KEY, OPT_QUIET, OPT_NO_RECORD, OPT_MAX_RECORDS,
    OPT_CONN_TIMEOUT, OPT_SELF_TEST, OPT_HELP, OPT_JWKS,
};

static int parse_args(int argc, char **argv, struct sim_options *o,
                      bool *self_test)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"port-file", required_argument, NULL, OPT_PORT_FILE},
        {"credentials", required_argument, NULL, OPT_CREDS},
        {"jobs", required_argument, NULL, OPT_JOBS},
        {"all-jobs-exist", no_argument, NULL, OPT_ALL_JOBS},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"no-record", no_argument, NULL, OPT_NO_RECORD},
        {"max-records", required_argument, NULL, OPT_MAX_RECORDS},
        {"conn-timeout", required_argument, NULL, OPT_CONN_TIMEOUT},
        {"jwks", required_argument, NULL, OPT_JWKS},
        {"self-test", no_argument, NULL, OPT_SELF_TEST},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char *end;
        long v;
        switch (c) {
        case OPT_LISTEN: o->listen = optarg; break;
        case OPT_PORT_FILE: o->port_file = optarg; break;
        case OPT_CREDS: o->creds_path = optarg; break;
        case OPT_JOBS: o->jobs_path = optarg; break;
        case OPT_ALL_JOBS: o->all_jobs_exist = true; break;
        case OPT_TLS_CERT: o->tls_cert = optarg; break;
        case OPT_TLS_KEY: o->tls_key = optarg; break;
        case OPT_QUIET: o->quiet = true; break;
        case OPT_NO_RECORD: o->no_record = true; break;
        case OPT_MAX_RECORDS:
        case OPT_JWKS: o->jwks_path = optarg; break;
        case OPT_CONN_TIMEOUT:
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 1 || v > 100000000) {
                fprintf(stderr, "smc-sim: bad number \"%s\"\n", optarg);
                return 2;
            }
            if (c == OPT_MAX_RECORDS)
                o->max_records = (size_t)v;
            else
                o->conn_timeout_s = (int)v;
            break;
        case OPT_SELF_TEST: *self_test = true; break;
        case OPT_HELP: usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "smc-sim: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (*self_test)
        return -1;
    if (!o->listen || !o->creds_path) {
        fprintf(stderr, "smc-sim: --listen and --credentials are required\n");
        usage(stderr);
        return 2;
    }
    if (!o->tls_cert != !o->tls_key) {
        fprintf(stderr, "smc-sim: --tls-cert and --tls-key go together\n");
        return 2;
    }
    return -1; /* carry on */
}

int main(int argc, char **argv)
{
    int rc = 1, port = 0, prc;
    bool self_test = false;
    struct sim sim;
    char err[512];
    evutil_socket_t fd = -1;
    struct event *ev_int = NULL, *ev_term = NULL, *ev_hup = NULL,
                 *ev_sweep = NULL;
    struct timeval sweep_tv = {60, 0};

    memset(&sim, 0, sizeof(sim));
    sim.opt.max_records = SIM_DEFAULT_MAX_RECORDS;
    sim.opt.conn_timeout_s = 3600;
    sim_fault_reset(&sim.fault);

    prc = parse_args(argc, argv, &sim.opt, &self_test);
    if (prc >= 0)
        return prc;
    if (self_test)
        return sim_self_test(stdout) == 0 ? 0 : 1;

    /* Writes to clients that went away must fail, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    if (sim_creds_load(sim.opt.creds_path, &sim.creds, err, sizeof(err)) !=
        0) {
        fprintf(stderr, "smc-sim: credentials: %s\n", err);
        goto out;
    }
    if (sim.opt.jobs_path) {
        size_t len = 0;
        char *text = sim_read_file(sim.opt.jobs_path, &len);
        if (!text) {
            fprintf(stderr, "smc-sim: %s: %s\n", sim.opt.jobs_path,
                    strerror(errno));
            goto out;
        }
        prc = sim_jobs_load_json(&sim.jobs, text, len, err, sizeof(err));
        free(text);
        if (prc != 0) {
            fprintf(stderr, "smc-sim: %s: %s\n", sim.opt.jobs_path, err);
            goto out;
        }
    }
    if (sim_records_init(&sim.records,
                         sim.opt.no_record ? 1 : sim.opt.max_records) != 0) {
        fprintf(stderr, "smc-sim: out of memory\n");
        goto out;
    }
    if (sim.opt.tls_cert) {
        sim.ssl_ctx = tls_ctx(sim.opt.tls_cert, sim.opt.tls_key);
        if (!sim.ssl_ctx)
            goto out;
    }

    /* Precise timers (timerfd): a latency or delay fault of 100 ms answers
     * after 100 ms, not after epoll's millisecond round-up; the latency-bound
     * benchmark measures the gateway, not the simulator's clock. */
    {
        struct event_config *ec = event_config_new();
        if (ec) {
            event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
            sim.base = event_base_new_with_config(ec);
            event_config_free(ec);
        }
    }
    sim.http = sim.base ? evhttp_new(sim.base) : NULL;
    if (!sim.http) {
        fprintf(stderr, "smc-sim: libevent setup failed\n");
        goto out;
    }
    /* Let every method through so the simulator sees what arrives. */
    evhttp_set_allowed_methods(sim.http,
                               EVHTTP_REQ_GET | EVHTTP_REQ_POST |
                                   EVHTTP_REQ_DELETE | EVHTTP_REQ_PUT |
                                   EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS |
                                   EVHTTP_REQ_PATCH);
    /* RPC bodies over 64 KiB are refused (and recorded) by sim_rpc.c;
     * the control API may take big job lists. */
    evhttp_set_max_body_size(sim.http, 16 * 1024 * 1024);
    evhttp_set_max_headers_size(sim.http, 64 * 1024);
    /* Hung requests must stay hung for as long as a test waits. */
    evhttp_set_timeout(sim.http, sim.opt.conn_timeout_s);
    evhttp_set_gencb(sim.http, on_request, &sim);
    if (sim.ssl_ctx)
        evhttp_set_bevcb(sim.http, tls_bevcb, &sim);

    fd = open_listener(sim.opt.listen, &port);
    if (fd < 0)
        goto out;
    if (!evhttp_accept_socket_with_handle(sim.http, fd)) {
        fprintf(stderr, "smc-sim: cannot accept on %s\n", sim.opt.listen);
        close(fd);
        goto out;
    }
    /* evhttp owns (and will close) the socket now. */

    ev_int = evsignal_new(sim.base, SIGINT, on_stop, &sim);
    ev_term = evsignal_new(sim.base, SIGTERM, on_stop, &sim);
    ev_hup = evsignal_new(sim.base, SIGHUP, on_hup, &sim);
    ev_sweep = event_new(sim.base, -1, EV_PERSIST, on_sweep, &sim);
    if (!ev_int || !ev_term || !ev_hup || !ev_sweep ||
        evsignal_add(ev_int, NULL) || evsignal_add(ev_term, NULL) ||
        evsignal_add(ev_hup, NULL) || event_add(ev_sweep, &sweep_tv)) {
        fprintf(stderr, "smc-sim: event setup failed\n");
        goto out;
    }

    if (sim.opt.port_file && write_port_file(sim.opt.port_file, port) != 0)
        goto out;
    fprintf(stderr,
            "smc-sim: listening on %s (port %d, %s), %zu credential(s), "
            "%zu job(s)%s\n",
            sim.opt.listen, port, sim.ssl_ctx ? "https" : "http",
            sim.creds.n, sim.jobs.n,
            sim.opt.all_jobs_exist ? ", all jobs exist" : "");

    if (event_base_dispatch(sim.base) < 0) {
        fprintf(stderr, "smc-sim: event loop failed\n");
        goto out;
    }
    rc = 0;
out:
    sim_rpc_drop_pending(&sim);
    if (sim.http)
        evhttp_free(sim.http);
    if (ev_int)
        event_free(ev_int);
    if (ev_term)
        event_free(ev_term);
    if (ev_hup)
        event_free(ev_hup);
    if (ev_sweep)
        event_free(ev_sweep);
    if (sim.base)
        event_base_free(sim.base);
    SSL_CTX_free(sim.ssl_ctx);
    sim_fault_reset(&sim.fault);
    sim_records_free(&sim.records);
    sim_nonces_clear(&sim.nonces);
    sim_jobs_clear(&sim.jobs);
    sim_creds_free(&sim.creds);
    libevent_global_shutdown();
    return rc;
}
