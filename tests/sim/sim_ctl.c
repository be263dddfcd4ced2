/*
 * sim_ctl.c - the simulator's control API under /_sim/ (no signature,
 * JSON in and out).  The black-box tests use it to seed jobs, read back
 * every RPC request the gateway sent (with the simulator's verdict on its
 * signature), inject faults and reset state between tests.
 */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/keyvalq_struct.h>
#include <jansson.h>

static void reply(struct evhttp_request *req, int status,
                  struct evbuffer *body)
{
    if (body && evbuffer_get_length(body))
        evhttp_add_header(evhttp_request_get_output_headers(req),
                          "Content-Type", "application/json");
    evhttp_send_reply(req, status, NULL, body);
}

static void reply_msg(struct evhttp_request *req, int status,
                      const char *msg)
{
    struct evbuffer *b = evbuffer_new();

    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(b, "{\"error\":", 9);
    sim_json_str(b, msg, strlen(msg));
    evbuffer_add(b, "}", 1);
    reply(req, status, b);
    evbuffer_free(b);
}

static void reply_ok(struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();

    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(b, "{\"ok\":true}", 11);
    reply(req, 200, b);
    evbuffer_free(b);
}

static void reply_json_t(struct evhttp_request *req, int status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    struct evbuffer *b = s ? evbuffer_new() : NULL;

    if (!b) {
        free(s);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(b, s, strlen(s));
    reply(req, status, b);
    evbuffer_free(b);
    free(s);
}

/* Parses the request body as JSON (an empty body is an empty object). */
static json_t *body_json(struct evhttp_request *req, char *err,
                         size_t errlen)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    json_error_t jerr;
    json_t *j;

    if (len == 0)
        return json_object();
    j = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr);
    if (!j)
        snprintf(err, errlen, "invalid JSON at line %d: %s", jerr.line,
                 jerr.text);
    else if (!json_is_object(j)) {
        snprintf(err, errlen, "expected a JSON object");
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* ------------------------------------------------------------ requests */

static void write_record(struct evbuffer *out, const struct sim_record *r,
                         struct sim_params *p)
{
    const char *b = r->blob;
    const char *path = b, *query = path + r->path_len;
    const char *ctype = query + r->query_len, *form = ctype + r->ctype_len;
    const char *hdrs = form + r->form_len;
    size_t o;
    bool first = true;

    evbuffer_add_printf(out, "{\"seq\":%llu,\"method\":\"%s\",\"path\":",
                        (unsigned long long)r->seq,
                        sim_method_name(r->method));
    sim_json_str(out, path, r->path_len);
    evbuffer_add(out, ",\"query\":", 9);
    sim_json_str(out, query, r->query_len);
    evbuffer_add(out, ",\"content_type\":", 16);
    sim_json_str(out, ctype, r->ctype_len);
    /* Parameters are re-parsed here rather than kept decoded, which keeps
     * the request path cheap; order is arrival order. */
    evbuffer_add(out, ",\"params\":{", 11);
    if (sim_params_init(p, r->query_len + r->form_len) == 0) {
        /* A parse error leaves what was parsed before it. */
        if (sim_params_parse(p, query, r->query_len) == SIM_PARSE_OK)
            (void)sim_params_parse(p, form, r->form_len);
        for (size_t i = 0; i < p->n; i++) {
            if (i)
                evbuffer_add(out, ",", 1);
            sim_json_str(out, p->v[i].name, p->v[i].name_len);
            evbuffer_add(out, ":", 1);
            sim_json_str(out, p->v[i].value, p->v[i].value_len);
        }
        sim_params_free(p);
    }
    evbuffer_add_printf(out,
                        "},\"signature_valid\":%s,\"status\":%d,\"code\":",
                        r->sig_valid ? "true" : "false", (int)r->status);
    sim_json_str(out, r->code, strlen(r->code));
    evbuffer_add_printf(out, ",\"received_ms\":%lld,\"body_bytes\":%u,"
                             "\"headers\":{",
                        (long long)r->received_ms, (unsigned)r->body_bytes);
    o = 0;
    while (o < r->hdrs_len) {
        const char *k = hdrs + o;
        size_t kl = strlen(k);
        const char *v = k + kl + 1;
        size_t vl = strlen(v);
        char lk[256];
        size_t n = kl < sizeof(lk) ? kl : sizeof(lk);

        /* Header names are case-insensitive; lower case eases lookups. */
        for (size_t i = 0; i < n; i++)
            lk[i] = (k[i] >= 'A' && k[i] <= 'Z') ? (char)(k[i] + 32) : k[i];
        if (!first)
            evbuffer_add(out, ",", 1);
        first = false;
        sim_json_str(out, lk, n);
        evbuffer_add(out, ":", 1);
        sim_json_str(out, v, vl);
        o += kl + 1 + vl + 1;
    }
    evbuffer_add(out, "}}", 2);
}

static void get_requests(struct sim *sim, struct evhttp_request *req)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq qs;
    uint64_t since = 0;
    struct evbuffer *out = evbuffer_new();
    struct sim_params *p = malloc(sizeof(*p));
    bool first = true;

    qs.tqh_first = NULL; /* TAILQ_INIT without sys/queue.h */
    qs.tqh_last = &qs.tqh_first;
    if (!out || !p) {
        evhttp_send_error(req, 500, NULL);
        goto out;
    }
    if (q && evhttp_parse_query_str(q, &qs) == 0) {
        const char *s = evhttp_find_header(&qs, "since");
        if (s) {
            char *end;
            errno = 0;
            since = strtoull(s, &end, 10);
            if (errno || end == s || *end) {
                reply_msg(req, 400, "since must be a record seq number");
                goto out;
            }
        }
    }
    evbuffer_add(out, "{\"requests\":[", 13);
    for (uint64_t s = sim->records.head; s < sim->records.next; s++) {
        const struct sim_record *r = sim_records_get(&sim->records, s);
        if (!r || !r->blob || s < since)
            continue;
        if (!first)
            evbuffer_add(out, ",", 1);
        first = false;
        write_record(out, r, p);
    }
    evbuffer_add_printf(out, "],\"next_seq\":%llu}",
                        (unsigned long long)sim->records.next);
    reply(req, 200, out);
out:
    evhttp_clear_headers(&qs);
    free(p);
    if (out)
        evbuffer_free(out);
}

/* ---------------------------------------------------------------- jobs */

static void get_jobs(struct sim *sim, struct evhttp_request *req)
{
    struct evbuffer *out = evbuffer_new();

    if (!out) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(out, "{\"jobs\":", 8);
    if (sim_jobs_to_json(&sim->jobs, out) != 0) {
        evbuffer_free(out);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(out, "}", 1);
    reply(req, 200, out);
    evbuffer_free(out);
}

static void post_jobs(struct sim *sim, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char err[256];

    if (sim_jobs_load_json(&sim->jobs,
                           len ? (const char *)evbuffer_pullup(in, -1) : "{}",
                           len ? len : 2, err, sizeof(err)) != 0) {
        reply_msg(req, 400, err);
        return;
    }
    get_jobs(sim, req);
}

/* --------------------------------------------------------------- fault */

static const char *const MODE_NAMES[] = {
    [SIM_FAULT_NONE] = "none",   [SIM_FAULT_DELAY] = "delay",
    [SIM_FAULT_HANG] = "hang",   [SIM_FAULT_RESET] = "reset",
    [SIM_FAULT_GARBAGE] = "garbage", [SIM_FAULT_ERROR] = "error",
};

static json_t *fault_json(const struct sim *sim)
{
    const struct sim_fault *f = &sim->fault;
    json_t *j = json_object();

    if (!j)
        return NULL;
    json_object_set_new(j, "mode", json_string(MODE_NAMES[f->mode]));
    json_object_set_new(j, "delay_ms", json_integer(f->delay_ms));
    json_object_set_new(j, "status", json_integer(f->status));
    json_object_set_new(j, "code", json_string(f->code));
    json_object_set_new(j, "count", json_integer(f->count));
    json_object_set_new(j, "latency_ms", json_integer(sim->latency_ms));
    if (f->message)
        json_object_set_new(j, "message", json_string(f->message));
    if (f->body)
        json_object_set_new(j, "body", json_string(f->body));
    return j;
}

static int get_int(json_t *o, const char *k, long long lo, long long hi,
                   long long *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, k);

    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi) {
        snprintf(err, errlen, "%s must be an integer in [%lld, %lld]", k, lo,
                 hi);
        return -1;
    }
    *out = json_integer_value(v);
    return 1;
}

static int get_str(json_t *o, const char *k, const char **out, char *err,
                   size_t errlen)
{
    json_t *v = json_object_get(o, k);

    if (!v)
        return 0;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "%s must be a string", k);
        return -1;
    }
    *out = json_string_value(v);
    return 1;
}

static int apply_fault(struct sim *sim, json_t *o, char *err, size_t errlen)
{
    static const char *const KNOWN[] = {"mode", "delay_ms", "status", "code",
                                        "count", "message", "body",
                                        "latency_ms"};
    int rc = -1;
    struct sim_fault nf;
    const char *k, *mode = NULL, *code = NULL, *msg = NULL, *body = NULL;
    json_t *v;
    long long latency = -1, delay = 0, status = 503, count = -1;
    bool fault_keys = false;

    memset(&nf, 0, sizeof(nf));
    /* Unknown keys are refused: a typo must not silently mean "no fault". */
    json_object_foreach(o, k, v) {
        bool known = false;
        for (size_t i = 0; i < sizeof(KNOWN) / sizeof(KNOWN[0]); i++)
            known = known || strcmp(k, KNOWN[i]) == 0;
        if (!known) {
            snprintf(err, errlen, "unknown key \"%s\"", k);
            goto out;
        }
        if (strcmp(k, "latency_ms") != 0)
            fault_keys = true;
    }
    if (get_int(o, "latency_ms", 0, 3600000, &latency, err, errlen) < 0 ||
        get_int(o, "delay_ms", 0, 3600000, &delay, err, errlen) < 0 ||
        get_int(o, "status", 100, 599, &status, err, errlen) < 0 ||
        get_int(o, "count", -1, 1000000000, &count, err, errlen) < 0 ||
        get_str(o, "mode", &mode, err, errlen) < 0 ||
        get_str(o, "code", &code, err, errlen) < 0 ||
        get_str(o, "message", &msg, err, errlen) < 0 ||
        get_str(o, "body", &body, err, errlen) < 0)
        goto out;
    if (fault_keys) {
        size_t i;
        if (!mode) {
            snprintf(err, errlen, "mode is required "
                     "(none|delay|hang|reset|garbage|error)");
            goto out;
        }
        for (i = 0; i < sizeof(MODE_NAMES) / sizeof(MODE_NAMES[0]); i++) {
            if (strcmp(mode, MODE_NAMES[i]) == 0)
                break;
        }
        if (i == sizeof(MODE_NAMES) / sizeof(MODE_NAMES[0])) {
            snprintf(err, errlen, "unknown mode \"%s\"", mode);
            goto out;
        }
        if (code && (!*code || strlen(code) >= SIM_CODE_MAX)) {
            snprintf(err, errlen, "code must be 1..%d characters",
                     SIM_CODE_MAX - 1);
            goto out;
        }
        nf.mode = (enum sim_fault_mode)i;
        nf.delay_ms = delay;
        nf.status = (int)status;
        snprintf(nf.code, sizeof(nf.code), "%s",
                 code ? code : "ServiceUnavailable");
        nf.count = (long)count;
        nf.message = msg ? strdup(msg) : NULL;
        nf.body = body ? strdup(body) : NULL;
        if ((msg && !nf.message) || (body && !nf.body)) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        sim_fault_reset(&sim->fault);
        sim->fault = nf;
        memset(&nf, 0, sizeof(nf));
    }
    if (latency >= 0)
        sim->latency_ms = latency;
    rc = 0;
out:
    free(nf.message);
    free(nf.body);
    return rc;
}

static void post_fault(struct sim *sim, struct evhttp_request *req)
{
    char err[256] = "";
    json_t *o = body_json(req, err, sizeof(err));
    json_t *st = NULL;

    if (!o) {
        reply_msg(req, 400, err);
        return;
    }
    if (apply_fault(sim, o, err, sizeof(err)) != 0) {
        reply_msg(req, 400, err);
    } else {
        st = fault_json(sim);
        reply_json_t(req, 200, st);
    }
    json_decref(st);
    json_decref(o);
}

/* --------------------------------------------------------------- stats */

static void get_stats(struct sim *sim, struct evhttp_request *req)
{
    json_t *j = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "rpc_requests",
        (json_int_t)sim->stats.rpc, "answered",
        (json_int_t)sim->stats.answered, "ok", (json_int_t)sim->stats.ok,
        "hung", (json_int_t)sim->stats.hung, "resets",
        (json_int_t)sim->stats.resets, "abandoned",
        (json_int_t)sim->stats.abandoned, "pending",
        (json_int_t)sim->npending, "jobs", (json_int_t)sim->jobs.n, "nonces",
        (json_int_t)sim_nonces_live(&sim->nonces, sim_now_ms()), "records",
        (json_int_t)(sim->records.next - sim->records.head),
        "control_requests", (json_int_t)sim->stats.control);

    reply_json_t(req, 200, j);
    json_decref(j);
}

/* -------------------------------------------------------------- routing */

void sim_ctl_handle(struct sim *sim, struct evhttp_request *req,
                    const char *path)
{
    int cmd = (int)evhttp_request_get_command(req);
    const char *sub = strncmp(path, "/_sim/", 6) == 0 ? path + 6 : "";
    bool get = cmd == EVHTTP_REQ_GET, post = cmd == EVHTTP_REQ_POST,
         del = cmd == EVHTTP_REQ_DELETE;

    sim->stats.control++;
    if (!sim->opt.quiet)
        fprintf(stderr, "smc-sim: control %s %s\n", sim_method_name(cmd),
                path);
    if (strcmp(sub, "health") == 0) {
        if (get)
            reply_ok(req);
        else
            reply_msg(req, 405, "use GET");
    } else if (strcmp(sub, "jwks") == 0 && sim->opt.jwks_path != NULL) {
        size_t len = 0;
        char *doc = get ? sim_read_file(sim->opt.jwks_path, &len) : NULL;
        struct evbuffer *b = evbuffer_new();
        if (doc != NULL && b != NULL) {
            evbuffer_add(b, doc, len);
            reply(req, 200, b);
        } else {
            reply_msg(req, get ? 500 : 405, get ? "cannot read the JWKS file" : "use GET");
        }
        if (b != NULL)
            evbuffer_free(b);
        free(doc);
    } else if (strcmp(sub, "requests") == 0) {
        if (get) {
            get_requests(sim, req);
        } else if (del) {
            sim_records_clear(&sim->records);
            reply(req, 204, NULL);
        } else {
            reply_msg(req, 405, "use GET or DELETE");
        }
    } else if (strcmp(sub, "jobs") == 0) {
        if (get) {
            get_jobs(sim, req);
        } else if (post) {
            post_jobs(sim, req);
        } else if (del) {
            sim_jobs_clear(&sim->jobs);
            reply(req, 204, NULL);
        } else {
            reply_msg(req, 405, "use GET, POST or DELETE");
        }
    } else if (strcmp(sub, "fault") == 0) {
        if (get) {
            json_t *st = fault_json(sim);
            reply_json_t(req, 200, st);
            json_decref(st);
        } else if (post) {
            post_fault(sim, req);
        } else {
            reply_msg(req, 405, "use GET or POST");
        }
    } else if (strcmp(sub, "reset") == 0) {
        if (post) {
            sim_records_clear(&sim->records);
            sim_fault_reset(&sim->fault);
            sim->latency_ms = 0;
            sim_nonces_clear(&sim->nonces);
            reply_ok(req);
        } else {
            reply_msg(req, 405, "use POST");
        }
    } else if (strcmp(sub, "stats") == 0) {
        if (get)
            get_stats(sim, req);
        else
            reply_msg(req, 405, "use GET");
    } else {
        reply_msg(req, 404, "unknown control path; see tests/sim/README.md");
    }
}
