/*
 * server: evhttp listener, request IDs, routing and reply helpers (see
 * server.h). Every method reaches the handler (so other methods get 405 from
 * us, not from libevent); the body limit is low so that bodies and
 * Transfer-Encoding reach jobs.c's checks instead of libevent's error page.
 */
#include "server.h"

#include "clock.h"
#include "config.h"
#include "jobs.h"
#include "log.h"
#include "route.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SRV_IDLE_TIMEOUT_S 60

struct srv {
    struct gw *gw;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    uint64_t rid_prefix;
    uint64_t rid_counter;
};

static void add_common_headers(struct evhttp_request *req, const char *request_id, const char *ctype)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "X-Request-Id", request_id);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

void srv_reply_json(struct evhttp_request *req, const char *request_id, int status, const char *json)
{
    struct evbuffer *b = evbuffer_new();

    add_common_headers(req, request_id, "application/json");
    if (b != NULL)
        evbuffer_add(b, json, strlen(json));
    evhttp_send_reply(req, status, reason_phrase(status), b);
    if (b != NULL)
        evbuffer_free(b);
}

void srv_problem(struct evhttp_request *req, const char *request_id, int status, const char *type,
                 const char *title, const char *detail, const char *extra)
{
    struct buf b;
    struct evbuffer *eb = evbuffer_new();

    buf_init(&b, 16 * 1024);
    buf_adds(&b, "{\"type\":");
    buf_printf(&b, "\"urn:smc-gateway:problem:%s\",\"title\":", type);
    buf_json_str(&b, title, strlen(title));
    buf_printf(&b, ",\"status\":%d", status);
    if (detail != NULL) {
        buf_adds(&b, ",\"detail\":");
        buf_json_str(&b, detail, strlen(detail));
    }
    buf_adds(&b, ",\"request_id\":");
    buf_json_str(&b, request_id, strlen(request_id));
    if (extra != NULL)
        buf_adds(&b, extra);
    buf_addc(&b, '}');
    add_common_headers(req, request_id, "application/problem+json");
    if (eb != NULL && b.p != NULL)
        evbuffer_add(eb, b.p, b.len);
    evhttp_send_reply(req, status, reason_phrase(status), eb);
    if (eb != NULL)
        evbuffer_free(eb);
    buf_free(&b);
}

static void make_request_id(struct srv *s, char *out, size_t outlen)
{
    snprintf(out, outlen, "%016llx-%08llx", (unsigned long long)s->rid_prefix,
             (unsigned long long)++s->rid_counter);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct srv *s = arg;
    const char *uri = evhttp_request_get_uri(req);
    const char *given = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
    char request_id[160], job_id[ROUTE_JOB_ID_MAX + 1];
    enum route_kind kind;

    if (given != NULL && route_valid_request_id(given))
        snprintf(request_id, sizeof(request_id), "%s", given);
    else
        make_request_id(s, request_id, sizeof(request_id));
    if (s->gw->draining) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        srv_problem(req, request_id, 503, "shutting-down", "The gateway is shutting down", NULL, NULL);
        return;
    }
    kind = route_parse(uri, job_id, sizeof(job_id));
    switch (kind) {
    case ROUTE_JOB:
    case ROUTE_BAD_JOB_ID:
        jobs_handle(s->gw, req, kind, job_id, request_id);
        break;
    case ROUTE_NOT_FOUND:
        if (uri != NULL && strncmp(uri, "/jobs", 5) == 0 && (uri[5] == '/' || uri[5] == '?' || uri[5] == '\0'))
            jobs_handle(s->gw, req, kind, job_id, request_id);
        else
            srv_problem(req, request_id, 404, "not-found", "No such resource", NULL, NULL);
        break;
    case ROUTE_BAD_TARGET:
        srv_problem(req, request_id, 400, "bad-request-target", "The request target must be a path (origin-form)",
                    NULL, NULL);
        break;
    case ROUTE_HEALTHZ:
    case ROUTE_READYZ:
    case ROUTE_METRICS:
    case ROUTE_AUDIT:
        srv_problem(req, request_id, 404, "not-found", "No such resource", NULL, NULL);
        break;
    }
}

struct srv *srv_new(struct gw *gw, const struct gw_config *cfg, struct buf *err)
{
    struct srv *s = calloc(1, sizeof(*s)), *ret = NULL;

    if (s == NULL)
        return NULL;
    s->gw = gw;
    if (RAND_bytes((unsigned char *)&s->rid_prefix, sizeof(s->rid_prefix)) != 1)
        s->rid_prefix = (uint64_t)clock_wall_ms();
    s->http = evhttp_new(gw->base);
    if (s->http == NULL)
        goto out;
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(s->http, (ev_ssize_t)cfg->limits.max_header_bytes);
    evhttp_set_max_body_size(s->http, (ev_ssize_t)cfg->limits.max_body_bytes);
    evhttp_set_timeout(s->http, SRV_IDLE_TIMEOUT_S);
    evhttp_set_default_content_type(s->http, "application/json");
    evhttp_set_gencb(s->http, on_request, s);
    s->bound = evhttp_bind_socket_with_handle(s->http, cfg->listen_host, (ev_uint16_t)cfg->listen_port);
    if (s->bound == NULL) {
        buf_printf(err, "%s: listen: cannot bind %s:%d\n", cfg->path, cfg->listen_host, cfg->listen_port);
        goto out;
    }
    ret = s;
    s = NULL;
out:
    srv_free(s);
    return ret;
}

void srv_stop_accepting(struct srv *s)
{
    if (s != NULL && s->bound != NULL) {
        evhttp_del_accept_socket(s->http, s->bound);
        s->bound = NULL;
    }
}

void srv_free(struct srv *s)
{
    if (s == NULL)
        return;
    if (s->http != NULL)
        evhttp_free(s->http);
    free(s);
}
