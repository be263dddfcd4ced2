/*
 * sim_store.c - the simulator's in-memory state: the credentials it
 * accepts, the replication-job table, the set of recently used signature
 * nonces, and the ring of recorded requests that /_sim/requests serves.
 * Everything here is single-threaded and sized for load tests: lookups are
 * hashed, a nonce costs 24 bytes, and a recorded request one malloc.
 */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/rand.h>

/* ---------------------------------------------------------- credentials */

static void cred_free(struct sim_cred *c)
{
    free(c->name);
    free(c->akid);
    if (c->key)
        OPENSSL_cleanse(c->key, c->key_len);
    free(c->key);
    free(c->token);
}

void sim_creds_free(struct sim_creds *c)
{
    for (size_t i = 0; i < c->n; i++)
        cred_free(&c->v[i]);
    free(c->v);
    c->v = NULL;
    c->n = 0;
}

/* Same format as the gateway's credential file:
 *   {"<name>": {"access_key_id": "...", "access_key_secret": "...",
 *               "security_token": "...optional"}, ...}
 * Non-object members (e.g. "_comment") are skipped so a commented file
 * works; an object without the two keys is an error. */
int sim_creds_load(const char *path, struct sim_creds *out, char *err,
                   size_t errlen)
{
    int rc = -1;
    json_t *root = NULL;
    json_error_t jerr;
    struct sim_creds c = {NULL, 0};
    const char *name;
    json_t *ent;

    root = json_load_file(path, 0, &jerr);
    if (!root) {
        snprintf(err, errlen, "%s:%d: %s", path, jerr.line, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "%s: top level must be an object", path);
        goto out;
    }
    c.v = calloc(json_object_size(root) + 1, sizeof(*c.v));
    if (!c.v) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    json_object_foreach(root, name, ent) {
        const char *akid, *secret, *token;
        struct sim_cred *cr;
        size_t slen;

        if (!json_is_object(ent))
            continue;
        akid = json_string_value(json_object_get(ent, "access_key_id"));
        secret =
            json_string_value(json_object_get(ent, "access_key_secret"));
        token = json_string_value(json_object_get(ent, "security_token"));
        if (!akid || !*akid || !secret || !*secret) {
            snprintf(err, errlen,
                     "%s: entry \"%s\" needs access_key_id and "
                     "access_key_secret strings",
                     path, name);
            goto out;
        }
        if (sim_creds_find(&c, akid, strlen(akid))) {
            snprintf(err, errlen, "%s: access_key_id of \"%s\" is repeated",
                     path, name);
            goto out;
        }
        cr = &c.v[c.n];
        slen = strlen(secret);
        cr->name = strdup(name);
        cr->akid = strdup(akid);
        cr->key = malloc(slen + 2);
        cr->token = (token && *token) ? strdup(token) : NULL;
        c.n++;
        if (!cr->name || !cr->akid || !cr->key ||
            (token && *token && !cr->token)) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        /* The HMAC key is the secret followed by "&". */
        memcpy(cr->key, secret, slen);
        cr->key[slen] = '&';
        cr->key[slen + 1] = '\0';
        cr->key_len = slen + 1;
    }
    if (c.n == 0) {
        snprintf(err, errlen, "%s: no credentials in file", path);
        goto out;
    }
    *out = c;
    c.v = NULL;
    c.n = 0;
    rc = 0;
out:
    sim_creds_free(&c);
    json_decref(root);
    return rc;
}

const struct sim_cred *sim_creds_find(const struct sim_creds *c,
                                      const char *akid, size_t len)
{
    /* A handful of entries: a linear scan beats hashing here. */
    for (size_t i = 0; i < c->n; i++) {
        if (c->v[i].akid && strlen(c->v[i].akid) == len &&
            memcmp(c->v[i].akid, akid, len) == 0)
            return &c->v[i];
    }
    return NULL;
}

/* ----------------------------------------------------------------- jobs */

static uint64_t job_seed;

static uint64_t job_hash(const char *id, size_t len)
{
    if (!job_seed) {
        if (RAND_bytes((unsigned char *)&job_seed, sizeof(job_seed)) != 1)
            job_seed = (uint64_t)sim_now_ms();
        job_seed |= 1;
    }
    return sim_hash64(id, len, job_seed);
}

static struct sim_job **job_slot(const struct sim_jobs *j, uint64_t h,
                                 const char *id, size_t len)
{
    struct sim_job **pp;

    if (!j->nb)
        return NULL;
    pp = &j->b[h & (j->nb - 1)];
    while (*pp) {
        if ((*pp)->hash == h && (*pp)->id_len == len &&
            memcmp((*pp)->id, id, len) == 0)
            return pp;
        pp = &(*pp)->next;
    }
    return pp;
}

static int jobs_grow(struct sim_jobs *j)
{
    size_t nb = j->nb ? j->nb * 2 : 64;
    struct sim_job **b = calloc(nb, sizeof(*b));

    if (!b)
        return -1;
    for (size_t i = 0; i < j->nb; i++) {
        struct sim_job *e = j->b[i];
        while (e) {
            struct sim_job *next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = next;
        }
    }
    free(j->b);
    j->b = b;
    j->nb = nb;
    return 0;
}

int sim_jobs_set(struct sim_jobs *j, const char *id, size_t id_len,
                 const char *state)
{
    uint64_t h = job_hash(id, id_len);
    struct sim_job **pp, *e;
    char *st = strdup(state);

    if (!st)
        return -1;
    if (j->n + 1 > j->nb && jobs_grow(j) != 0) {
        free(st);
        return -1;
    }
    pp = job_slot(j, h, id, id_len);
    if (!pp) { /* cannot happen after a successful grow */
        free(st);
        return -1;
    }
    if (*pp) {
        free((*pp)->state);
        (*pp)->state = st;
        return 0;
    }
    e = malloc(sizeof(*e) + id_len + 1);
    if (!e) {
        free(st);
        return -1;
    }
    e->next = NULL;
    e->hash = h;
    e->state = st;
    e->id_len = id_len;
    memcpy(e->id, id, id_len);
    e->id[id_len] = '\0';
    *pp = e;
    j->n++;
    return 0;
}

const char *sim_jobs_get(const struct sim_jobs *j, const char *id,
                         size_t id_len)
{
    struct sim_job **pp = job_slot(j, job_hash(id, id_len), id, id_len);

    return (pp && *pp) ? (*pp)->state : NULL;
}

bool sim_jobs_del(struct sim_jobs *j, const char *id, size_t id_len)
{
    struct sim_job **pp = job_slot(j, job_hash(id, id_len), id, id_len);
    struct sim_job *e;

    if (!pp || !*pp)
        return false;
    e = *pp;
    *pp = e->next;
    free(e->state);
    free(e);
    j->n--;
    return true;
}

void sim_jobs_clear(struct sim_jobs *j)
{
    for (size_t i = 0; i < j->nb; i++) {
        struct sim_job *e = j->b[i];
        while (e) {
            struct sim_job *next = e->next;
            free(e->state);
            free(e);
            e = next;
        }
    }
    free(j->b);
    j->b = NULL;
    j->nb = 0;
    j->n = 0;
}

int sim_jobs_load_json(struct sim_jobs *j, const char *text, size_t len,
                       char *err, size_t errlen)
{
    int rc = -1;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    json_t *obj, *v;
    const char *k;

    if (!root) {
        snprintf(err, errlen, "invalid JSON at line %d: %s", jerr.line,
                 jerr.text);
        goto out;
    }
    obj = root;
    /* Accept {"jobs": {...}} too: it is what GET /_sim/jobs returns. */
    if (json_is_object(root) && json_object_size(root) == 1 &&
        json_is_object(json_object_get(root, "jobs")))
        obj = json_object_get(root, "jobs");
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "expected an object {\"j-...\": \"State\"}");
        goto out;
    }
    /* Validate everything before changing anything. */
    json_object_foreach(obj, k, v) {
        if (!json_is_string(v) || json_string_length(v) == 0 || !*k) {
            snprintf(err, errlen, "job \"%s\": state must be a non-empty "
                     "string", k);
            goto out;
        }
    }
    json_object_foreach(obj, k, v) {
        if (sim_jobs_set(j, k, strlen(k), json_string_value(v)) != 0) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int sim_jobs_to_json(const struct sim_jobs *j, struct evbuffer *out)
{
    int rc = -1;
    json_t *o = json_object();
    char *s = NULL;

    if (!o)
        goto out;
    for (size_t i = 0; i < j->nb; i++) {
        for (struct sim_job *e = j->b[i]; e; e = e->next) {
            if (json_object_set_new(o, e->id, json_string(e->state)) != 0)
                goto out;
        }
    }
    s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    if (!s)
        goto out;
    evbuffer_add(out, s, strlen(s));
    rc = 0;
out:
    free(s);
    json_decref(o);
    return rc;
}

/* --------------------------------------------------------------- nonces */

/* Nonces are kept as 128-bit keyed hashes with an expiry time in an
 * open-addressing table: a load test sends tens of thousands per second
 * and each must be remembered for 15 minutes.  Expired slots are reused
 * in place and dropped when the table is rebuilt (on growth or sweep). */

static int nonces_rebuild(struct sim_nonces *n, size_t cap, int64_t now_ms)
{
    struct sim_nonce_slot *s = calloc(cap, sizeof(*s));
    size_t used = 0;

    if (!s)
        return -1;
    for (size_t i = 0; i < n->cap; i++) {
        struct sim_nonce_slot *o = &n->slots[i];
        size_t k;
        if (o->expires_ms == 0 || o->expires_ms <= now_ms)
            continue;
        k = (size_t)o->k1 & (cap - 1);
        while (s[k].expires_ms)
            k = (k + 1) & (cap - 1);
        s[k] = *o;
        used++;
    }
    free(n->slots);
    n->slots = s;
    n->cap = cap;
    n->used = used;
    return 0;
}

int sim_nonces_use(struct sim_nonces *n, const char *str, size_t len,
                   int64_t now_ms)
{
    uint64_t k1, k2;
    size_t i;

    if (!n->seed1) {
        uint64_t seeds[2] = {0, 0};
        if (RAND_bytes((unsigned char *)seeds, sizeof(seeds)) != 1) {
            seeds[0] = (uint64_t)now_ms;
            seeds[1] = ~(uint64_t)now_ms;
        }
        n->seed1 = seeds[0] | 1;
        n->seed2 = seeds[1] | 2;
    }
    if ((n->used + 1) * 2 > n->cap) {
        size_t live = sim_nonces_live(n, now_ms);
        size_t cap = n->cap ? n->cap : 1024;
        while ((live + 1) * 4 > cap)
            cap *= 2;
        if (nonces_rebuild(n, cap, now_ms) != 0)
            return -1;
    }
    k1 = sim_hash64(str, len, n->seed1);
    k2 = sim_hash64(str, len, n->seed2);
    i = (size_t)k1 & (n->cap - 1);
    while (n->slots[i].expires_ms) {
        struct sim_nonce_slot *s = &n->slots[i];
        if (s->k1 == k1 && s->k2 == k2) {
            if (s->expires_ms > now_ms)
                return 1;
            s->expires_ms = now_ms + SIM_WINDOW_MS;
            return 0;
        }
        i = (i + 1) & (n->cap - 1);
    }
    n->slots[i].k1 = k1;
    n->slots[i].k2 = k2;
    n->slots[i].expires_ms = now_ms + SIM_WINDOW_MS;
    n->used++;
    return 0;
}

size_t sim_nonces_live(const struct sim_nonces *n, int64_t now_ms)
{
    size_t live = 0;

    for (size_t i = 0; i < n->cap; i++) {
        if (n->slots[i].expires_ms > now_ms)
            live++;
    }
    return live;
}

void sim_nonces_sweep(struct sim_nonces *n, int64_t now_ms)
{
    size_t live, cap;

    if (!n->cap)
        return;
    live = sim_nonces_live(n, now_ms);
    if (live == n->used)
        return;
    cap = n->cap;
    /* Shrink back after a load test so the table does not stay huge. */
    while (cap > 1024 && (live + 1) * 8 < cap)
        cap /= 2;
    (void)nonces_rebuild(n, cap, now_ms); /* on failure keep the old one */
}

void sim_nonces_clear(struct sim_nonces *n)
{
    free(n->slots);
    n->slots = NULL;
    n->cap = 0;
    n->used = 0;
}

/* -------------------------------------------------------------- records */

int sim_records_init(struct sim_records *r, size_t cap)
{
    r->cap = cap ? cap : 1;
    /* calloc: untouched pages cost nothing until records arrive. */
    r->ring = calloc(r->cap, sizeof(*r->ring));
    r->head = r->next = 1;
    return r->ring ? 0 : -1;
}

void sim_records_clear(struct sim_records *r)
{
    for (uint64_t s = r->head; s < r->next; s++) {
        struct sim_record *rec = &r->ring[s % r->cap];
        free(rec->blob);
        memset(rec, 0, sizeof(*rec));
    }
    r->head = r->next;
}

void sim_records_free(struct sim_records *r)
{
    if (r->ring)
        sim_records_clear(r);
    free(r->ring);
    r->ring = NULL;
}

struct sim_record *sim_records_push(struct sim_records *r)
{
    struct sim_record *rec;

    if (r->next - r->head >= r->cap) {
        rec = &r->ring[r->head % r->cap];
        free(rec->blob);
        r->head++;
    }
    rec = &r->ring[r->next % r->cap];
    memset(rec, 0, sizeof(*rec));
    rec->seq = r->next++;
    return rec;
}

struct sim_record *sim_records_get(struct sim_records *r, uint64_t seq)
{
    if (seq < r->head || seq >= r->next)
        return NULL;
    return &r->ring[seq % r->cap];
}
