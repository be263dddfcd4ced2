/*
 * config: loading and validating the configuration file (see config.h).
 * Every key is checked for type and range; relative paths are resolved
 * against the config file's folder; cross-file references (policy →
 * credentials) are checked here so a bad combination never starts.
 */
#include "config.h"

#include "chain.h"
#include "jcheck.h"
#include "jwks.h"
#include "jwksrc.h"
#include "log.h"
#include "route.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CFG_FILE_MAX (1024 * 1024)
#define CFG_KEY_FILE_MAX (64 * 1024) /* a PEM private key or an HMAC secret */

static uint64_t cfg_generation;

struct gw_config *cfg_ref(struct gw_config *c)
{
    if (c != NULL)
        atomic_fetch_add(&c->refs, 1);
    return c;
}

void cfg_unref(struct gw_config *c)
{
    if (c == NULL || atomic_fetch_sub(&c->refs, 1) > 1)
        return;
    free(c->path);
    free(c->listen_host);
    free(c->instance);
    free(c->auth.key_file);
    free(c->auth.jwks_file);
    free(c->auth.jwks_url);
    free(c->auth.jwks_ca_file);
    free(c->key_report);
    free(c->auth.issuer);
    free(c->auth.audience);
    free(c->auth.team_claim);
    free(c->auth.team_prefix);
    free(c->upstream.endpoint);
    free(c->upstream.proxy);
    free(c->upstream.ca_file);
    free(c->audit.file);
    free(c->audit.signing_key_file);
    free(c->admin_host);
    free(c->tls.cert_file);
    free(c->tls.key_file);
    free(c->tls.client_ca_file);
    jc_strv_free(c->cors.origins);
    free(c->trusted);
    SSL_CTX_free(c->ssl_ctx);
    EVP_PKEY_free(c->audit_key);
    free(c->policy_file);
    free(c->credentials_file);
    auth_keyset_free(c->keys);
    pol_free(c->policy);
    creds_free(c->creds);
    free(c);
}

void cfg_jwksrc_opts(const struct gw_config *c, struct jwksrc_opts *o)
{
    o->url = c->auth.jwks_url;
    o->ca_file = c->auth.jwks_ca_file;
    o->algs = c->auth.algs;
    o->refresh_s = c->auth.jwks_refresh_s;
}

/* Parse "host:port" or "[v6]:port"; host receives a malloc'ed copy. */
static int cfg_parse_listen(const char *s, char **host, int *port)
{
    int rc = -1;
    const char *colon, *h = s;
    size_t hlen;
    char *end;
    long p;

    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            goto out;
        h = s + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            goto out;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0)
        goto out;
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || end == colon + 1 || p < 0 || p > 65535)
        goto out;
    *host = strndup(h, hlen);
    *port = (int)p;
    rc = *host ? 0 : -1;
out:
    return rc;
}

/* Make a path named in the config absolute, relative to the config's folder. */
static void resolve_path(char **p, const char *dir)
{
    char *abs;

    if (*p == NULL || (*p)[0] == '/')
        return;
    if (asprintf(&abs, "%s/%s", dir, *p) < 0)
        return;
    free(*p);
    *p = abs;
}

/* An address literal in 127.0.0.0/8 or ::1 (bracketed as URLs write it), or
 * "localhost", which libcurl resolves to those without asking DNS. A name
 * that merely starts with "127." is anyone's. */
static int is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    char lit[INET6_ADDRSTRLEN];
    size_t n = strlen(host);

    if (strcmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (n < 3 || host[0] != '[' || host[n - 1] != ']' || n - 2 >= sizeof(lit))
        return 0;
    memcpy(lit, host + 1, n - 2);
    lit[n - 2] = '\0';
    return inet_pton(AF_INET6, lit, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

static void check_endpoint(struct jc *jc, const char *key, const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;

    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        jc_error(jc, key, "is not a valid URL");
    } else if (strcmp(scheme, "https") != 0 && !(strcmp(scheme, "http") == 0 && is_loopback(host))) {
        jc_error(jc, key, "must be https:// (http:// only to a loopback address)");
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
}

static void load_auth(struct jc *jc, const json_t *root, struct gw_config *c)
{
    static const char *const keys[] = {
        "algorithms",  "key_file", "jwks_file",  "jwks_url",    "jwks_ca_file",   "jwks_refresh_seconds",
        "issuer",      "audience", "team_claim", "team_prefix", "leeway_seconds", "max_token_age_seconds",
        "token_cache", NULL};
    int sources;
    const json_t *a = jc_object(jc, root, "", "auth", 1);
    char **algs = NULL;

    if (a == NULL)
        return;
    jc_only_keys(jc, a, "auth", keys);
    if (jc_strv(jc, a, "auth", "algorithms", 1, &algs, NULL) == 0) {
        for (size_t i = 0; algs[i] != NULL; i++) {
            int alg = auth_alg_parse(algs[i]);
            char p[64];
            snprintf(p, sizeof(p), "auth.algorithms[%zu]", i);
            if (alg == 0)
                jc_error(jc, p, "unknown algorithm \"%s\" (HS256/384/512, RS256/384/512, ES256/384/512; exact case)",
                         algs[i]);
            c->auth.algs |= alg;
        }
        if ((c->auth.algs & AUTH_ALGS_HMAC) && (c->auth.algs & ~AUTH_ALGS_HMAC))
            jc_error(jc, "auth.algorithms",
                     "mixes symmetric (HS*) and asymmetric algorithms: with one key file "
                     "that is the key-confusion attack");
    }
    jc_strv_free(algs);
    jc_string(jc, a, "auth", "key_file", 0, &c->auth.key_file);
    jc_string(jc, a, "auth", "jwks_file", 0, &c->auth.jwks_file);
    jc_string(jc, a, "auth", "jwks_url", 0, &c->auth.jwks_url);
    jc_string(jc, a, "auth", "jwks_ca_file", 0, &c->auth.jwks_ca_file);
    c->auth.jwks_refresh_s = 600;
    jc_int(jc, a, "auth", "jwks_refresh_seconds", 30, 86400, &c->auth.jwks_refresh_s);
    sources = !!c->auth.key_file + !!c->auth.jwks_file + !!c->auth.jwks_url;
    if (sources != 1)
        jc_error(jc, "auth", "needs exactly one key source: key_file, jwks_file or jwks_url");
    if ((c->auth.jwks_file || c->auth.jwks_url) && (c->auth.algs & AUTH_ALGS_HMAC))
        jc_error(jc, "auth.algorithms", "a JWKS holds public keys: use RS* or ES* algorithms with it");
    if (c->auth.jwks_url != NULL)
        check_endpoint(jc, "auth.jwks_url", c->auth.jwks_url);
    if (c->auth.jwks_ca_file != NULL && c->auth.jwks_url == NULL)
        jc_error(jc, "auth.jwks_ca_file", "is only used with auth.jwks_url");
    jc_string(jc, a, "auth", "issuer", 1, &c->auth.issuer);
    jc_string(jc, a, "auth", "audience", 1, &c->auth.audience);
    jc_string(jc, a, "auth", "team_claim", 0, &c->auth.team_claim);
    jc_string(jc, a, "auth", "team_prefix", 0, &c->auth.team_prefix);
    jc_int(jc, a, "auth", "leeway_seconds", 0, 3600, &c->auth.leeway_s);
    jc_int(jc, a, "auth", "max_token_age_seconds", 0, 31 * 86400, &c->auth.max_age_s);
    jc_bool(jc, a, "auth", "token_cache", &c->auth.token_cache);
    if (c->auth.team_claim == NULL)
        c->auth.team_claim = strdup("team");
}

static void load_upstream(struct jc *jc, const json_t *root, struct gw_config *c)
{
    static const char *const keys[] = {"endpoint",   "method",      "connect_timeout_ms",
                                       "timeout_ms", "deadline_ms", "max_retries",
                                       "proxy",      "ca_file",     NULL};
    const json_t *u = jc_object(jc, root, "", "upstream", 0);
    char *method = NULL;

    if (u != NULL) {
        jc_only_keys(jc, u, "upstream", keys);
        jc_string(jc, u, "upstream", "endpoint", 0, &c->upstream.endpoint);
        if (jc_string(jc, u, "upstream", "method", 0, &method) == 0 && method != NULL) {
            if (strcmp(method, "POST") == 0)
                c->upstream.post = 1;
            else if (strcmp(method, "GET") == 0)
                c->upstream.post = 0;
            else
                jc_error(jc, "upstream.method", "must be \"POST\" or \"GET\"");
        }
        jc_int(jc, u, "upstream", "connect_timeout_ms", 1, 600000, &c->upstream.connect_timeout_ms);
        jc_int(jc, u, "upstream", "timeout_ms", 1, 600000, &c->upstream.timeout_ms);
        jc_int(jc, u, "upstream", "deadline_ms", 1, 3600000, &c->upstream.deadline_ms);
        jc_int(jc, u, "upstream", "max_retries", 0, 10, &c->upstream.max_retries);
        jc_string(jc, u, "upstream", "proxy", 0, &c->upstream.proxy);
        jc_string(jc, u, "upstream", "ca_file", 0, &c->upstream.ca_file);
    }
    free(method);
    if (c->upstream.endpoint == NULL)
        c->upstream.endpoint = strdup("https://smc.aliyuncs.com/");
    check_endpoint(jc, "upstream.endpoint", c->upstream.endpoint);
    if (c->upstream.proxy != NULL) {
        CURLU *pu = curl_url();
        if (pu == NULL || curl_url_set(pu, CURLUPART_URL, c->upstream.proxy, 0) != CURLUE_OK)
            jc_error(jc, "upstream.proxy", "is not a valid URL");
        curl_url_cleanup(pu);
    }
    if (c->upstream.connect_timeout_ms > c->upstream.timeout_ms)
        jc_error(jc, "upstream.connect_timeout_ms", "must not exceed upstream.timeout_ms (%ld)",
                 c->upstream.timeout_ms);
    if (c->upstream.timeout_ms > c->upstream.deadline_ms)
        jc_error(jc, "upstream.timeout_ms", "must not exceed upstream.deadline_ms (%ld)", c->upstream.deadline_ms);
}

static void load_audit(struct jc *jc, const json_t *root, struct gw_config *c)
{
    static const char *const keys[] = {"file",         "signing_key_file", "checkpoint_every",  "checkpoint_seconds",
                                       "rotate_bytes", "group_commit_us",  "slow_sync_warn_ms", NULL};
    const json_t *a = jc_object(jc, root, "", "audit", 1);
    long rotate_mib = 0;

    if (a == NULL)
        return;
    jc_only_keys(jc, a, "audit", keys);
    jc_string(jc, a, "audit", "file", 1, &c->audit.file);
    jc_string(jc, a, "audit", "signing_key_file", 0, &c->audit.signing_key_file);
    jc_int(jc, a, "audit", "checkpoint_every", 1, 1000000, &c->audit.checkpoint_every);
    jc_int(jc, a, "audit", "checkpoint_seconds", 1, 86400, &c->audit.checkpoint_seconds);
    jc_int(jc, a, "audit", "group_commit_us", 0, CFG_GROUP_COMMIT_MAX_US, &c->audit.group_commit_us);
    jc_int(jc, a, "audit", "slow_sync_warn_ms", 0, 60000, &c->audit.slow_sync_warn_ms);
    if (jc_int(jc, a, "audit", "rotate_bytes", 0, LONG_MAX, &rotate_mib) == 0) {
        c->audit.rotate_bytes = rotate_mib;
        if (rotate_mib != 0 && rotate_mib < 4096)
            jc_error(jc, "audit.rotate_bytes", "must be 0 (off) or at least 4096");
    }
}

static void load_tls(struct jc *jc, const json_t *root, struct gw_config *c)
{
    static const char *const keys[] = {"cert_file", "key_file", "client_ca_file", "client_auth", "min_version", NULL};
    const json_t *t = jc_object(jc, root, "", "tls", 0);
    char *mode = NULL, *minv = NULL;

    if (t == NULL)
        return;
    c->has_tls = 1;
    jc_only_keys(jc, t, "tls", keys);
    jc_string(jc, t, "tls", "cert_file", 1, &c->tls.cert_file);
    jc_string(jc, t, "tls", "key_file", 1, &c->tls.key_file);
    jc_string(jc, t, "tls", "client_ca_file", 0, &c->tls.client_ca_file);
    if (jc_string(jc, t, "tls", "client_auth", 0, &mode) == 0 && mode != NULL) {
        if (strcmp(mode, "required") == 0)
            c->tls.client_auth = TLS_CLIENT_REQUIRED;
        else if (strcmp(mode, "optional") == 0)
            c->tls.client_auth = TLS_CLIENT_OPTIONAL;
        else
            jc_error(jc, "tls.client_auth", "must be \"required\" or \"optional\"");
        if (c->tls.client_ca_file == NULL)
            jc_error(jc, "tls.client_auth", "needs tls.client_ca_file");
    } else if (c->tls.client_ca_file != NULL) {
        c->tls.client_auth = TLS_CLIENT_REQUIRED;
    }
    if (jc_string(jc, t, "tls", "min_version", 0, &minv) == 0 && minv != NULL) {
        if (strcmp(minv, "1.3") == 0)
            c->tls.min_tls13 = 1;
        else if (strcmp(minv, "1.2") != 0)
            jc_error(jc, "tls.min_version", "must be \"1.2\" or \"1.3\"");
    }
    free(mode);
    free(minv);
}

static void load_network(struct jc *jc, const json_t *root, struct gw_config *c)
{
    static const char *const corskeys[] = {"allowed_origins", "max_age_seconds", NULL};
    static const char *const rlkeys[] = {"requests", "per_seconds", NULL};
    const json_t *cors = jc_object(jc, root, "", "cors", 0), *rl;
    char **nets = NULL, *admin = NULL;
    size_t n = 0;

    if (jc_string(jc, root, "", "admin_listen", 0, &admin) == 0 && admin != NULL &&
        cfg_parse_listen(admin, &c->admin_host, &c->admin_port) != 0)
        jc_error(jc, "admin_listen", "must be HOST:PORT or [IPv6]:PORT");
    free(admin);
    if (cors != NULL) {
        jc_only_keys(jc, cors, "cors", corskeys);
        if (jc_strv(jc, cors, "cors", "allowed_origins", 1, &c->cors.origins, &n) == 0) {
            for (size_t i = 0; i < n; i++) {
                const char *o = c->cors.origins[i], *host = NULL;
                char p[64];
                snprintf(p, sizeof(p), "cors.allowed_origins[%zu]", i);
                if (strncmp(o, "https://", 8) == 0)
                    host = o + 8;
                else if (strncmp(o, "http://", 7) == 0)
                    host = o + 7;
                if (strcmp(o, "*") == 0 || strcmp(o, "null") == 0)
                    jc_error(jc, p, "\"%s\" is never allowed: name each dashboard's origin", o);
                else if (host == NULL || host[0] == '\0')
                    jc_error(jc, p, "must be an origin such as https://dash.example.com");
                else if (strchr(host, '/') != NULL)
                    jc_error(jc, p, "an origin has no path");
            }
        }
        c->cors.max_age_s = 600;
        jc_int(jc, cors, "cors", "max_age_seconds", 0, 86400, &c->cors.max_age_s);
    }
    if (jc_strv(jc, root, "", "trusted_proxies", 0, &nets, &n) == 0 && nets != NULL) {
        c->trusted = calloc(n + 1, sizeof(*c->trusted));
        for (size_t i = 0; c->trusted != NULL && i < n; i++) {
            char p[64];
            if (px_cidr_parse(nets[i], &c->trusted[c->ntrusted]) == 0) {
                c->ntrusted++;
                continue;
            }
            snprintf(p, sizeof(p), "trusted_proxies[%zu]", i);
            jc_error(jc, p, "\"%s\" is not an address or CIDR range", nets[i]);
        }
    }
    jc_strv_free(nets);
    jc_bool(jc, root, "", "proxy_protocol", &c->proxy_protocol);
    if (c->proxy_protocol && c->ntrusted == 0)
        jc_error(jc, "proxy_protocol", "needs trusted_proxies: only their PROXY headers are believed");
    rl = jc_object(jc, root, "", "upstream_rate_limit", 0);
    if (rl != NULL) {
        jc_only_keys(jc, rl, "upstream_rate_limit", rlkeys);
        if (json_object_get(rl, "requests") == NULL || json_object_get(rl, "per_seconds") == NULL)
            jc_error(jc, "upstream_rate_limit", "needs both requests and per_seconds");
        jc_int(jc, rl, "upstream_rate_limit", "requests", 1, 1000000, &c->upstream_rate_requests);
        jc_int(jc, rl, "upstream_rate_limit", "per_seconds", 1, 86400, &c->upstream_rate_per_s);
    }
}

static void load_limits(struct jc *jc, const json_t *root, struct gw_config *c)
{
    static const char *const keys[] = {
        "max_header_bytes", "max_body_bytes",           "max_connections",    "header_timeout_ms",
        "idle_timeout_ms",  "max_upstream_concurrency", "max_upstream_queue", NULL};
    const json_t *l = jc_object(jc, root, "", "limits", 0);

    if (l == NULL)
        return;
    jc_only_keys(jc, l, "limits", keys);
    jc_int(jc, l, "limits", "max_header_bytes", 1024, 1024 * 1024, &c->limits.max_header_bytes);
    jc_int(jc, l, "limits", "max_body_bytes", 0, 1024 * 1024, &c->limits.max_body_bytes);
    jc_int(jc, l, "limits", "max_connections", 1, 1000000, &c->limits.max_connections);
    jc_int(jc, l, "limits", "header_timeout_ms", 100, 600000, &c->limits.header_timeout_ms);
    jc_int(jc, l, "limits", "idle_timeout_ms", 100, 3600000, &c->limits.idle_timeout_ms);
    jc_int(jc, l, "limits", "max_upstream_concurrency", 1, 100000, &c->limits.max_upstream_concurrency);
    jc_int(jc, l, "limits", "max_upstream_queue", 0, 1000000, &c->limits.max_upstream_queue);
}

/* Load the files the config names, then check references between them. */
/* The JWT keys from whichever source the config names. */
static void load_keys(struct jc *jc, struct gw_config *c, int flags, struct buf *err)
{
    struct buf report, doc;
    int n = -1;
    char *shown = NULL; /* the JWKS URL as logs may show it */

    /* Nothing to load when the source or the algorithms are already in error. */
    if (c->auth.algs == 0 || ((c->auth.algs & AUTH_ALGS_HMAC) && (c->auth.algs & ~AUTH_ALGS_HMAC)) ||
        !!c->auth.key_file + !!c->auth.jwks_file + !!c->auth.jwks_url != 1)
        return;
    if (c->auth.key_file != NULL) {
        struct buf secret; /* an HS* secret, read through the descriptor its mode was checked on; wiped */
        int rc;
        buf_init(&secret, CFG_KEY_FILE_MAX);
        if (!(c->auth.algs & AUTH_ALGS_HMAC))
            rc = auth_keyset_load_file(c->auth.key_file, c->auth.algs, &c->keys, err);
        else if ((rc = creds_read_secret(c->auth.key_file, &secret, err)) == 0)
            rc = auth_keyset_from_bytes(c->auth.key_file, secret.p, secret.len, c->auth.algs, &c->keys, err);
        buf_wipe(&secret);
        if (rc != 0)
            jc->nerr++;
        else if (asprintf(&c->key_report, "auth: 1 key from %s", c->auth.key_file) < 0)
            c->key_report = NULL;
        return;
    }
    if (c->auth.jwks_url != NULL && !(flags & CFG_FETCH_JWKS))
        return; /* reload: the running key source keeps refreshing */
    buf_init(&report, 64 * 1024);
    if (c->auth.jwks_url != NULL) {
        struct jwksrc_opts o;
        cfg_jwksrc_opts(c, &o);
        n = jwksrc_fetch_blocking(&o, &c->keys, &report);
    } else {
        buf_init(&doc, JWKS_DOC_MAX);
        if (buf_read_file(&doc, c->auth.jwks_file) != 0)
            buf_printf(&report, "cannot read: %s\n", strerror(errno));
        else
            n = jwks_parse(doc.p ? doc.p : "", doc.len, c->auth.algs, &c->keys, &report);
        buf_free(&doc);
    }
    if (n <= 0) {
        buf_printf(err, "%s: auth.%s: no usable key set: %s", c->path ? c->path : "config",
                   c->auth.jwks_url ? "jwks_url" : "jwks_file", report.p ? report.p : "\n");
        jc->nerr++;
    } else {
        shown = c->auth.jwks_url ? jwksrc_url_for_log(c->auth.jwks_url) : NULL;
        if (asprintf(&c->key_report, "auth: %d usable keys from %s%s%s", n,
                     shown              ? shown
                     : c->auth.jwks_url ? "auth.jwks_url"
                                        : c->auth.jwks_file,
                     report.len ? "\n" : "", report.p ? report.p : "") < 0)
            c->key_report = NULL;
        free(shown);
    }
    if (c->key_report != NULL && c->key_report[0] != '\0' && c->key_report[strlen(c->key_report) - 1] == '\n')
        c->key_report[strlen(c->key_report) - 1] = '\0';
    buf_free(&report);
}

static void load_files(struct jc *jc, struct gw_config *c, int flags, struct buf *err)
{
    struct buf pem; /* a private key file's bytes, wiped */

    load_keys(jc, c, flags, err);
    if (c->policy_file != NULL && pol_load(c->policy_file, &c->policy, err) != 0)
        jc->nerr++;
    buf_init(&pem, CFG_KEY_FILE_MAX);
    if (c->has_tls && c->tls.cert_file != NULL && c->tls.key_file != NULL) {
        if (creds_read_secret(c->tls.key_file, &pem, err) != 0 ||
            (c->ssl_ctx = tls_server_ctx_new(&c->tls, pem.p, pem.len, err)) == NULL)
            jc->nerr++;
        buf_wipe(&pem);
    }
    if (c->audit.signing_key_file != NULL) {
        if (creds_read_secret(c->audit.signing_key_file, &pem, err) != 0 ||
            (c->audit_key = chain_private_key(c->audit.signing_key_file, pem.p, pem.len, err)) == NULL)
            jc->nerr++;
        buf_wipe(&pem);
    }
    if (c->credentials_file != NULL && creds_load(c->credentials_file, &c->creds, err) != 0)
        jc->nerr++;
    if (c->policy != NULL && c->creds != NULL) {
        for (size_t i = 0; i < c->policy->n; i++) {
            const struct pol_team *t = &c->policy->teams[i];
            if (t->credential != NULL && creds_find(c->creds, t->credential) == NULL) {
                buf_printf(err, "%s: teams.%s.credential: \"%s\" is not an entry of %s%s\n", c->policy_file, t->name,
                           t->credential, c->credentials_file,
                           strcmp(t->credential, "default") == 0 ? " (nor set by ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET)"
                                                                 : "");
                jc->nerr++;
            }
        }
    }
}

struct gw_config *cfg_load(const char *path, int flags, struct buf *err)
{
    static const char *const keys[] = {"listen",
                                       "instance",
                                       "auth",
                                       "policy_file",
                                       "credentials_file",
                                       "upstream",
                                       "audit",
                                       "limits",
                                       "log_level",
                                       "admin_listen",
                                       "tls",
                                       "allow_root",
                                       "shutdown_timeout_ms",
                                       "cors",
                                       "trusted_proxies",
                                       "proxy_protocol",
                                       "upstream_rate_limit",
                                       "workers",
                                       NULL};
    struct gw_config *c = NULL, *ret = NULL;
    struct jc jc;
    json_t *root = NULL;
    char *listen = NULL, *level = NULL, *dir = NULL, *slash;
    char host[256];

    jc_init(&jc, path, err);
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto out;
    atomic_init(&c->refs, 1);
    c->path = realpath(path, NULL);
    c->log_level = LOG_LVL_INFO;
    c->auth.leeway_s = 60;
    c->upstream.post = 1;
    c->upstream.connect_timeout_ms = 3000;
    c->upstream.timeout_ms = 10000;
    c->upstream.deadline_ms = 25000;
    c->upstream.max_retries = 2;
    c->limits.max_header_bytes = 32768;
    c->limits.max_body_bytes = 16384;
    c->limits.max_connections = 1024;
    c->limits.header_timeout_ms = 10000;
    c->limits.idle_timeout_ms = 60000;
    c->limits.max_upstream_concurrency = 256;
    c->limits.max_upstream_queue = 1024;
    c->shutdown_timeout_ms = 30000;
    c->auth.token_cache = 1;
    c->audit.checkpoint_every = 100;
    c->audit.checkpoint_seconds = 60;
    c->audit.group_commit_us = CFG_GROUP_COMMIT_US;
    c->audit.slow_sync_warn_ms = CFG_SLOW_SYNC_MS;
    if (jc_load_file(&jc, CFG_FILE_MAX, 0, &root) != 0)
        goto out;
    dir = strdup(c->path ? c->path : path);
    if (dir == NULL)
        goto out;
    slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    else
        dir[0] = '.', dir[1] = '\0';

    jc_only_keys(&jc, root, "", keys);
    if (jc_string(&jc, root, "", "listen", 1, &listen) == 0 && listen != NULL &&
        cfg_parse_listen(listen, &c->listen_host, &c->listen_port) != 0)
        jc_error(&jc, "listen", "must be HOST:PORT or [IPv6]:PORT");
    jc_string(&jc, root, "", "instance", 0, &c->instance);
    if (c->instance == NULL) {
        if (gethostname(host, sizeof(host)) != 0)
            snprintf(host, sizeof(host), "gateway");
        host[sizeof(host) - 1] = '\0';
        c->instance = strdup(host);
    }
    if (c->instance != NULL && !route_valid_chars(c->instance, 64, "._-"))
        jc_error(&jc, "instance", "must be 1-64 characters of A-Za-z0-9._-");
    if (jc_string(&jc, root, "", "log_level", 0, &level) == 0 && level != NULL &&
        (c->log_level = log_level_parse(level)) < 0)
        jc_error(&jc, "log_level", "must be debug, info, warn or error");
    load_auth(&jc, root, c);
    jc_string(&jc, root, "", "policy_file", 1, &c->policy_file);
    jc_string(&jc, root, "", "credentials_file", 1, &c->credentials_file);
    load_upstream(&jc, root, c);
    load_audit(&jc, root, c);
    load_limits(&jc, root, c);
    load_tls(&jc, root, c);
    load_network(&jc, root, c);
    jc_bool(&jc, root, "", "allow_root", &c->allow_root);
    {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = cpus < 1 ? 1 : cpus > 8 ? 8 : cpus;
        jc_int(&jc, root, "", "workers", 1, 64, &c->workers);
    }
    jc_int(&jc, root, "", "shutdown_timeout_ms", 0, 3600000, &c->shutdown_timeout_ms);
    if (c->shutdown_timeout_ms < c->upstream.deadline_ms)
        jc_error(&jc, "shutdown_timeout_ms",
                 "must be at least upstream.deadline_ms (%ld) so in-flight calls can finish", c->upstream.deadline_ms);

    resolve_path(&c->auth.key_file, dir);
    resolve_path(&c->auth.jwks_file, dir);
    resolve_path(&c->auth.jwks_ca_file, dir);
    resolve_path(&c->policy_file, dir);
    resolve_path(&c->credentials_file, dir);
    resolve_path(&c->upstream.ca_file, dir);
    resolve_path(&c->audit.file, dir);
    resolve_path(&c->audit.signing_key_file, dir);
    resolve_path(&c->tls.cert_file, dir);
    resolve_path(&c->tls.key_file, dir);
    resolve_path(&c->tls.client_ca_file, dir);
    load_files(&jc, c, flags, err);
    if (jc.nerr > 0)
        goto out;
    c->generation = ++cfg_generation;
    ret = c;
    c = NULL;
out:
    free(listen);
    free(level);
    free(dir);
    json_decref(root);
    cfg_unref(c);
    return ret;
}
