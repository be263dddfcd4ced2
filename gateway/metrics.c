/*
 * metrics: Prometheus exposition (see metrics.h). Labelled counters live in
 * a small open-addressing table keyed by (family, rendered label set).
 */
#include "metrics.h"

#include "buf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MET_SERIES_MAX 4096
#define MET_LABELS_MAX 200

static const double bounds[MET_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

enum family { F_REQUESTS, F_DECISIONS, F_UPSTREAM, F__COUNT };

static const struct {
    const char *name, *help;
} families[F__COUNT] = {
    [F_REQUESTS] = {"smc_gateway_requests_total", "HTTP requests answered, by route, status and team."},
    [F_DECISIONS] = {"smc_gateway_decisions_total", "Authorization decisions, by decision and reason."},
    [F_UPSTREAM] = {"smc_gateway_upstream_calls_total", "Upstream calls, by outcome and upstream code."},
};

static const struct {
    const char *name, *help;
} counters[MET__COUNTERS] = {
    [MET_RELOADS] = {"smc_gateway_reloads_total", "Configuration reloads that took effect."},
    [MET_RELOAD_FAILURES] = {"smc_gateway_reload_failures_total",
                             "Reloads refused because the new files were invalid."},
    [MET_CONNECTIONS] = {"smc_gateway_connections_total", "Connections accepted."},
    [MET_HEAD_TIMEOUTS] = {"smc_gateway_header_timeouts_total",
                           "Connections closed for not sending a request head in time."},
    [MET_CONN_LIMIT_HITS] = {"smc_gateway_connection_limit_hits_total",
                             "Times accepting paused at limits.max_connections."},
    [MET_UPSTREAM_QUEUE_FULL] = {"smc_gateway_upstream_queue_full_total",
                                 "Requests refused with 503 because the upstream queue was full."},
    [MET_TOKEN_CACHE_HITS] = {"smc_gateway_token_cache_hits_total", "Tokens found in the verified-token cache."},
    [MET_TOKEN_CACHE_MISSES] = {"smc_gateway_token_cache_misses_total", "Tokens verified in full."},
    [MET_JWKS_REFRESHES] = {"smc_gateway_jwks_refreshes_total", "JWKS fetches that produced a key set."},
    [MET_JWKS_REFRESH_FAILURES] = {"smc_gateway_jwks_refresh_failures_total",
                                   "JWKS fetches that failed (the last good set is kept)."},
};

struct series {
    int used;
    int family;
    char labels[MET_LABELS_MAX];
    uint64_t value;
};

struct metrics {
    pthread_mutex_t mu;   /* guards the series table: every worker thread counts */
    struct series *table; /* MET_SERIES_MAX slots */
    size_t nseries;
    uint64_t dropped;
    _Atomic uint64_t counters[MET__COUNTERS];
    struct met_hist request_hist[2]; /* jobs, other */
    struct met_hist upstream_hist;
};

void met_hist_observe(struct met_hist *h, double seconds)
{
    int i = 0;

    while (i < MET_BUCKETS && seconds > bounds[i])
        i++;
    atomic_fetch_add(&h->bucket[i], 1);
    atomic_fetch_add(&h->sum_us, (uint64_t)(seconds * 1e6));
}

struct metrics *met_new(void)
{
    struct metrics *m = calloc(1, sizeof(*m));

    if (m != NULL && (m->table = calloc(MET_SERIES_MAX, sizeof(*m->table))) == NULL) {
        free(m);
        m = NULL;
    }
    if (m != NULL)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

void met_free(struct metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m->table);
    free(m);
}

void met_inc(struct metrics *m, enum met_counter c)
{
    if (m != NULL)
        atomic_fetch_add(&m->counters[c], 1);
}

static void add_locked(struct metrics *m, int family, const char *labels, unsigned h)
{
    for (size_t i = 0; i < MET_SERIES_MAX; i++) {
        struct series *s = &m->table[(h + i) % MET_SERIES_MAX];
        if (s->used && s->family == family && strcmp(s->labels, labels) == 0) {
            s->value++;
            return;
        }
        if (!s->used) {
            /* Leave a quarter of the table free so probing stays short. */
            if (m->nseries >= MET_SERIES_MAX * 3 / 4) {
                m->dropped++;
                return;
            }
            s->used = 1;
            s->family = family;
            buf_copy(s->labels, sizeof(s->labels), labels);
            s->value = 1;
            m->nseries++;
            return;
        }
    }
}

static void add(struct metrics *m, int family, const char *labels)
{
    unsigned h = 2166136261u ^ (unsigned)family;

    for (const char *p = labels; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    pthread_mutex_lock(&m->mu);
    add_locked(m, family, labels, h);
    pthread_mutex_unlock(&m->mu);
}

/* Label values are from fixed sets or sanitized upstream codes; still,
 * keep only characters that need no escaping in the exposition format. */
static void clean(char *out, size_t outlen, const char *in)
{
    size_t n = 0;

    for (; in != NULL && *in != '\0' && n + 1 < outlen; in++)
        out[n++] = (*in == '"' || *in == '\\' || (unsigned char)*in < 0x20) ? '_' : *in;
    out[n] = '\0';
}

/* Append s at out[at] (out has MET_LABELS_MAX bytes); the new length. */
static size_t cat(char *out, size_t at, const char *s)
{
    return at + buf_copy(out + at, MET_LABELS_MAX - at, s);
}

void met_request(struct metrics *m, const char *route, int status, const char *team, double seconds)
{
    char labels[MET_LABELS_MAX], t[80], st[12];
    size_t n = sizeof(st) - 1;
    unsigned v = status > 0 ? (unsigned)status : 0;

    if (m == NULL)
        return;
    clean(t, sizeof(t), team ? team : "unknown");
    st[n] = '\0';
    do {
        st[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0 && n > 0);
    memmove(st, st + n, sizeof(st) - n);
    n = cat(labels, 0, "route=\"");
    n = cat(labels, n, route);
    n = cat(labels, n, "\",status=\"");
    n = cat(labels, n, st);
    n = cat(labels, n, "\",team=\"");
    n = cat(labels, n, t);
    cat(labels, n, "\"");
    add(m, F_REQUESTS, labels);
    met_hist_observe(&m->request_hist[strcmp(route, "jobs") == 0 ? 0 : 1], seconds);
}

void met_decision(struct metrics *m, const char *decision, const char *reason)
{
    char labels[MET_LABELS_MAX], r[96];
    size_t n;

    if (m == NULL)
        return;
    clean(r, sizeof(r), reason);
    n = cat(labels, 0, "decision=\"");
    n = cat(labels, n, decision);
    n = cat(labels, n, "\",reason=\"");
    n = cat(labels, n, r);
    cat(labels, n, "\"");
    add(m, F_DECISIONS, labels);
}

void met_upstream(struct metrics *m, const char *outcome, const char *code, double seconds)
{
    char labels[MET_LABELS_MAX], c[96];
    size_t n;

    if (m == NULL)
        return;
    clean(c, sizeof(c), code);
    n = cat(labels, 0, "outcome=\"");
    n = cat(labels, n, outcome);
    n = cat(labels, n, "\",code=\"");
    n = cat(labels, n, c);
    cat(labels, n, "\"");
    add(m, F_UPSTREAM, labels);
    met_hist_observe(&m->upstream_hist, seconds);
}

static void render_hist(struct buf *out, const char *name, const char *help, const char *labels,
                        const struct met_hist *h, int header)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";

    if (header)
        buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i <= MET_BUCKETS; i++) {
        cum += atomic_load(&h->bucket[i]);
        if (i < MET_BUCKETS)
            buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i], (unsigned long long)cum);
        else
            buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
    }
    buf_printf(out, "%s_sum{%s} %.6f\n", name, labels, (double)atomic_load(&h->sum_us) / 1e6);
    buf_printf(out, "%s_count{%s} %llu\n", name, labels, (unsigned long long)cum);
}

static void gauge(struct buf *out, const char *name, const char *help, long long v)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, v);
}

int met_render(struct metrics *m, const struct met_gauges *g, struct buf *out)
{
    uint64_t dropped;

    pthread_mutex_lock(&m->mu);
    for (int f = 0; f < F__COUNT; f++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", families[f].name, families[f].help, families[f].name);
        for (size_t i = 0; i < MET_SERIES_MAX; i++) {
            const struct series *s = &m->table[i];
            if (s->used && s->family == f)
                buf_printf(out, "%s{%s} %llu\n", families[f].name, s->labels, (unsigned long long)s->value);
        }
    }
    dropped = m->dropped;
    pthread_mutex_unlock(&m->mu);
    for (int c = 0; c < MET__COUNTERS; c++)
        buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counters[c].name, counters[c].help,
                   counters[c].name, counters[c].name, (unsigned long long)atomic_load(&m->counters[c]));
    buf_printf(out,
               "# HELP smc_gateway_metric_series_dropped_total Series not created because of the cap.\n"
               "# TYPE smc_gateway_metric_series_dropped_total counter\n"
               "smc_gateway_metric_series_dropped_total %llu\n",
               (unsigned long long)dropped);
    render_hist(out, "smc_gateway_request_duration_seconds", "Time from request to reply.", "route=\"jobs\"",
                &m->request_hist[0], 1);
    render_hist(out, "smc_gateway_request_duration_seconds", "", "route=\"other\"", &m->request_hist[1], 0);
    render_hist(out, "smc_gateway_upstream_duration_seconds", "Upstream call time, retries and backoff included.", "",
                &m->upstream_hist, 1);
    if (g->audit_write != NULL)
        render_hist(out, "smc_gateway_audit_write_seconds", "Time of one group-commit write(2).", "", g->audit_write,
                    1);
    if (g->audit_sync != NULL)
        render_hist(out, "smc_gateway_audit_sync_seconds", "Time of one group-commit fdatasync(2).", "", g->audit_sync,
                    1);
    gauge(out, "smc_gateway_in_flight_requests", "Requests to /jobs being handled.", g->in_flight);
    gauge(out, "smc_gateway_open_connections", "Client connections open.", g->connections);
    gauge(out, "smc_gateway_upstream_in_flight", "Upstream calls running.", g->upstream_in_flight);
    gauge(out, "smc_gateway_upstream_queued", "Requests waiting for an upstream slot.", g->upstream_queued);
    gauge(out, "smc_gateway_audit_healthy", "1 while the audit log can record, else 0.", g->audit_healthy);
    gauge(out, "smc_gateway_draining", "1 while shutting down.", g->draining);
    gauge(out, "smc_gateway_config_generation", "Generation of the configuration in use.",
          (long long)g->config_generation);
    gauge(out, "smc_gateway_audit_last_seq", "seq of the last audit entry written.", (long long)g->audit_seq);
    buf_printf(out,
               "# HELP smc_gateway_build_info Build information.\n# TYPE smc_gateway_build_info gauge\n"
               "smc_gateway_build_info{version=\"%s\"} 1\n",
               GW_VERSION);
    return out->p != NULL ? 0 : -1;
}
