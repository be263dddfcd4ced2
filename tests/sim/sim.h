/*
 * sim.h - shared declarations of the SMC simulator (build/smc-sim).
 *
 * The simulator is a test double of Alibaba Cloud's RPC-style API for the
 * one call the gateway forwards (SMC DeleteReplicationJob).  The gateway's
 * black-box tests and the `make run` demo point the gateway at it.  It
 * verifies signatures with its own signer (sim_sign.c) so that it checks the
 * gateway's signer independently, keeps a job table, records every request
 * for the tests to inspect, and can inject faults (delay, hang, reset,
 * garbage, error answers) through a small unauthenticated control API under
 * /_sim/.  Everything runs on one libevent loop; nothing blocks.
 */
#ifndef SMC_SIM_H
#define SMC_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>

/* ---------------------------------------------------------------- limits */

/* Alibaba caps a form body at 64 KiB; we answer larger ones with 413. */
#define SIM_MAX_FORM_BODY (64 * 1024)
/* More parameters than this is not a request any SDK would send. */
#define SIM_MAX_PARAMS 128
/* base64 of a 20-byte HMAC-SHA1 is 28 characters. */
#define SIM_SIG_MAX 64
/* Nonces and timestamps are honoured for 15 minutes, as Alibaba does. */
#define SIM_WINDOW_MS (15 * 60 * 1000LL)
#define SIM_DEFAULT_MAX_RECORDS 100000
#define SIM_CODE_MAX 64

/* ---------------------------------------------------------- sim_util.c */

int64_t sim_now_ms(void);
/* Fresh uppercase UUID-shaped id (36 chars + NUL) from RAND_bytes. */
void sim_request_id(char out[37]);
/* Append s as a quoted JSON string; invalid UTF-8 becomes U+FFFD. */
void sim_json_str(struct evbuffer *out, const char *s, size_t len);
uint64_t sim_hash64(const void *data, size_t len, uint64_t seed);
/* Whole file into a NUL-terminated heap buffer (caller frees). */
char *sim_read_file(const char *path, size_t *len_out);

/* ---------------------------------------------------------- sim_sign.c */

/* One request parameter: decoded bytes (for comparisons and the request
 * log) and their RFC 3986 encodings (for sorting and signing).  All four
 * strings live in the owning sim_params arena and are NUL-terminated, but
 * values may contain NUL bytes, so lengths are authoritative. */
struct sim_param {
    const char *name, *value, *ename, *evalue;
    size_t name_len, value_len, ename_len, evalue_len;
};

struct sim_params {
    size_t n;
    struct sim_param v[SIM_MAX_PARAMS];
    char *arena;
    size_t arena_cap, arena_used;
};

enum sim_parse_rc {
    SIM_PARSE_OK = 0,
    SIM_PARSE_MALFORMED = -1, /* bad %-escape */
    SIM_PARSE_TOO_MANY = -2,  /* more than SIM_MAX_PARAMS */
    SIM_PARSE_NOMEM = -3,
};

size_t sim_pct_encode(const char *in, size_t len, char *out);
int sim_pct_decode(const char *in, size_t len, char *out, size_t *out_len);

/* raw_bytes: total length of all sources that will be parsed/added. */
int sim_params_init(struct sim_params *p, size_t raw_bytes);
void sim_params_free(struct sim_params *p);
int sim_params_add(struct sim_params *p, const char *name, size_t name_len,
                   const char *value, size_t value_len);
/* Parse an application/x-www-form-urlencoded string (query or body). */
int sim_params_parse(struct sim_params *p, const char *src, size_t len);
/* Sort by encoded name; returns the first duplicated parameter or NULL. */
const struct sim_param *sim_params_sort(struct sim_params *p);
const struct sim_param *sim_params_find(const struct sim_params *p,
                                        const char *name);
bool sim_param_equals(const struct sim_param *prm, const char *lit);

/* Signature V1 over the sorted params (all except "Signature").
 * key is AccessKeySecret + "&".  out gets the base64 text. */
int sim_sign(const char *http_method, const struct sim_params *p,
             const char *key, size_t key_len, char out[SIM_SIG_MAX]);
/* Published vectors; prints one line each to out.  0 = all passed. */
int sim_self_test(FILE *out);

/* --------------------------------------------------------- sim_store.c */

struct sim_cred {
    char *name;
    char *akid;
    char *key; /* AccessKeySecret + "&", the HMAC key; never logged */
    size_t key_len;
    char *token; /* SecurityToken or NULL */
};

struct sim_creds {
    struct sim_cred *v;
    size_t n;
};

int sim_creds_load(const char *path, struct sim_creds *out, char *err,
                   size_t errlen);
void sim_creds_free(struct sim_creds *c);
const struct sim_cred *sim_creds_find(const struct sim_creds *c,
                                      const char *akid, size_t len);

struct sim_job {
    struct sim_job *next;
    uint64_t hash;
    char *state;
    size_t id_len;
    char id[];
};

struct sim_jobs {
    struct sim_job **b;
    size_t nb, n;
};

int sim_jobs_set(struct sim_jobs *j, const char *id, size_t id_len,
                 const char *state);
const char *sim_jobs_get(const struct sim_jobs *j, const char *id,
                         size_t id_len);
bool sim_jobs_del(struct sim_jobs *j, const char *id, size_t id_len);
void sim_jobs_clear(struct sim_jobs *j);
/* Merge a JSON object text {"j-x":"Ready",...} (or {"jobs":{...}}). */
int sim_jobs_load_json(struct sim_jobs *j, const char *text, size_t len,
                       char *err, size_t errlen);
/* {"j-x":"Ready",...} with sorted keys, appended to out. */
int sim_jobs_to_json(const struct sim_jobs *j, struct evbuffer *out);

struct sim_nonce_slot {
    uint64_t k1, k2;
    int64_t expires_ms; /* 0 = empty slot */
};

struct sim_nonces {
    struct sim_nonce_slot *slots;
    size_t cap, used; /* cap is a power of two */
    uint64_t seed1, seed2;
};

/* 1 = used within the window, 0 = new (now remembered), -1 = no memory. */
int sim_nonces_use(struct sim_nonces *n, const char *s, size_t len,
                   int64_t now_ms);
void sim_nonces_sweep(struct sim_nonces *n, int64_t now_ms);
void sim_nonces_clear(struct sim_nonces *n);
size_t sim_nonces_live(const struct sim_nonces *n, int64_t now_ms);

/* One recorded RPC request.  The strings live in one heap blob, one after
 * another, so recording costs one malloc and the hot path never builds
 * JSON; GET /_sim/requests re-parses the parameters from the blob. */
struct sim_record {
    uint64_t seq; /* 0 = empty */
    int64_t received_ms;
    char *blob;
    uint32_t path_len, query_len, ctype_len, form_len, hdrs_len;
    uint32_t body_bytes; /* size of the body received (any type) */
    uint16_t method;     /* enum evhttp_cmd_type */
    bool has_query;
    bool sig_valid;
    int16_t status; /* 0 = not answered (yet, or ever) */
    char code[SIM_CODE_MAX];
};

struct sim_records {
    struct sim_record *ring;
    size_t cap;
    uint64_t head, next; /* live seqs are [head, next) */
};

int sim_records_init(struct sim_records *r, size_t cap);
void sim_records_free(struct sim_records *r);
void sim_records_clear(struct sim_records *r);
/* Returns a zeroed slot with seq set (oldest dropped when full). */
struct sim_record *sim_records_push(struct sim_records *r);
struct sim_record *sim_records_get(struct sim_records *r, uint64_t seq);

/* ----------------------------------------------------------- the state */

enum sim_fault_mode {
    SIM_FAULT_NONE = 0,
    SIM_FAULT_DELAY,
    SIM_FAULT_HANG,
    SIM_FAULT_RESET,
    SIM_FAULT_GARBAGE,
    SIM_FAULT_ERROR,
};

struct sim_fault {
    enum sim_fault_mode mode;
    int64_t delay_ms;
    int status;
    char code[SIM_CODE_MAX];
    char *message; /* NULL = default text for the code */
    char *body;    /* garbage body; NULL = "<html>oops</html>" */
    long count;    /* requests left; -1 = until changed */
};

struct sim_options {
    const char *listen;
    const char *port_file;
    const char *creds_path;
    const char *jobs_path;
    const char *tls_cert;
    const char *tls_key;
    const char *jwks_path; /* served at GET /_sim/jwks (re-read each time) */
    bool all_jobs_exist;
    bool quiet;
    bool no_record;
    size_t max_records;
    int conn_timeout_s;
};

struct sim_pending;

struct sim_stats {
    uint64_t rpc;         /* RPC requests received */
    uint64_t answered;    /* RPC answers sent */
    uint64_t ok;          /* of which 200 DeleteReplicationJob successes */
    uint64_t hung;        /* hang faults applied */
    uint64_t resets;      /* connections reset by a fault */
    uint64_t abandoned;   /* client went away before the answer */
    uint64_t control;     /* /_sim/ requests */
};

struct sim {
    struct sim_options opt;
    struct event_base *base;
    struct evhttp *http;
    SSL_CTX *ssl_ctx;
    struct sim_creds creds;
    struct sim_jobs jobs;
    struct sim_nonces nonces;
    struct sim_records records;
    struct sim_fault fault;
    int64_t latency_ms;
    struct sim_pending *pending; /* answers waiting on a timer or a hang */
    size_t npending;
    struct sim_stats stats;
};

/* ----------------------------------------------------------- sim_rpc.c */

void sim_rpc_handle(struct sim *sim, struct evhttp_request *req,
                    const char *path);
/* Drop every held request without answering (shutdown). */
void sim_rpc_drop_pending(struct sim *sim);
void sim_fault_reset(struct sim_fault *f);
const char *sim_method_name(int cmd);

/* ----------------------------------------------------------- sim_ctl.c */

void sim_ctl_handle(struct sim *sim, struct evhttp_request *req,
                    const char *path);

#endif /* SMC_SIM_H */
