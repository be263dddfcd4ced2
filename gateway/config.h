/*
 * config: the gateway's configuration, read from one JSON file and the files
 * it names (policy, credentials, keys), validated completely before use.
 * A loaded configuration is immutable and reference-counted: every request
 * holds the generation it started with, and a reload builds a new one off to
 * the side and swaps it in (the only global is that current snapshot).
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include "auth.h"
#include "buf.h"
#include "creds.h"
#include "policy.h"
#include "proxy.h"
#include "tls.h"

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdint.h>

struct cfg_auth {
    int algs;       /* AUTH_* bitmask */
    char *key_file; /* exactly one of key_file, jwks_file, jwks_url */
    char *jwks_file;
    char *jwks_url;
    char *jwks_ca_file;
    long jwks_refresh_s;
    char *issuer;
    char *audience;
    char *team_claim;  /* default "team" */
    char *team_prefix; /* or NULL */
    long leeway_s;
    long max_age_s;
    int token_cache; /* cache verified tokens (default on) */
};

struct cfg_upstream {
    char *endpoint; /* https://, or http:// to loopback */
    int post;       /* 1: POST form body (default), 0: GET query */
    long connect_timeout_ms;
    long timeout_ms;
    long deadline_ms;
    long max_retries;
    char *proxy;   /* or NULL: never taken from the environment */
    char *ca_file; /* or NULL: the system store */
};

#define CFG_GROUP_COMMIT_US 1000       /* audit.group_commit_us default */
#define CFG_GROUP_COMMIT_MAX_US 100000 /* and its cap: a sync is never held longer */
#define CFG_SLOW_SYNC_MS 100           /* audit.slow_sync_warn_ms default */

struct cfg_audit {
    char *file;
    char *signing_key_file; /* Ed25519 PEM, or NULL: no checkpoints */
    long checkpoint_every;
    long checkpoint_seconds;
    long long rotate_bytes; /* 0: rotation by signal only */
    long group_commit_us;   /* the writer's batch spacing under load; 0: none */
    long slow_sync_warn_ms; /* a sync at least this long is reported in the service log */
};

struct cfg_limits {
    long max_header_bytes;
    long max_body_bytes;
    long max_connections;
    long header_timeout_ms; /* whole request head (and body) from its first byte */
    long idle_timeout_ms;   /* keep-alive idle */
    long max_upstream_concurrency;
    long max_upstream_queue;
};

struct cfg_cors {
    char **origins; /* NULL-terminated; NULL when CORS is off */
    long max_age_s;
};

struct gw_config {
    atomic_int refs; /* worker threads hold snapshots too */
    uint64_t generation;
    char *path; /* the config file itself */
    char *listen_host;
    int listen_port;
    char *admin_host; /* NULL: health endpoints on the main listener */
    int admin_port;
    char *instance;
    int log_level;
    int allow_root;
    long workers; /* event-loop threads serving the API */
    long shutdown_timeout_ms;
    int has_tls;
    struct cfg_tls tls;
    struct cfg_cors cors;
    struct px_cidr *trusted; /* trusted proxies (owned array of ntrusted) */
    size_t ntrusted;
    int proxy_protocol;
    long upstream_rate_requests; /* 0: no gateway-wide rate limit */
    long upstream_rate_per_s;
    struct cfg_auth auth;
    struct cfg_upstream upstream;
    struct cfg_audit audit;
    struct cfg_limits limits;
    char *policy_file;
    char *credentials_file;
    /* Loaded from the files above; owned. */
    struct auth_keyset *keys;
    struct policy *policy;
    struct creds *creds;
    SSL_CTX *ssl_ctx;    /* when has_tls */
    EVP_PKEY *audit_key; /* checkpoint signing key, or NULL */
    char *key_report;    /* what loading the JWT keys found (for --check-config) */
};

/* cfg_load flags */
#define CFG_FETCH_JWKS 1 /* fetch jwks_url now, blocking (start-up, --check-config) */

/*
 * Load path and every file it names. On failure returns NULL and err holds
 * one "FILE: KEY: problem" line per problem found. The result has refs = 1.
 */
struct gw_config *cfg_load(const char *path, int flags, struct buf *err);
struct gw_config *cfg_ref(struct gw_config *c);
/* Drop a reference; the last one frees everything (secrets wiped). NULL-safe. */
void cfg_unref(struct gw_config *c);
/* The options of c's JWKS source (o->url NULL when c has no jwks_url). */
struct jwksrc_opts;
void cfg_jwksrc_opts(const struct gw_config *c, struct jwksrc_opts *o);

#endif
