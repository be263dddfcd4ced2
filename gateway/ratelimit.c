/*
 * ratelimit: refusal windows per client and token buckets (see ratelimit.h).
 * The refusal table is a chained hash with a hard cap on entries.
 */
#include "ratelimit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_BUCKETS 4096
#define RL_CLIENT_MAX 64

struct rl_entry {
    struct rl_entry *next;
    char client[RL_CLIENT_MAX];
    int64_t start_ms;
    unsigned recorded;
    uint64_t suppressed;
};

struct rl_refusals {
    struct rl_entry *table[RL_BUCKETS];
    size_t count, max;
    unsigned per_window;
    int64_t window_ms;
};

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % RL_BUCKETS;
}

struct rl_refusals *rl_refusals_new(unsigned per_window, int64_t window_ms, size_t max_clients)
{
    struct rl_refusals *r = calloc(1, sizeof(*r));

    if (r != NULL) {
        r->per_window = per_window;
        r->window_ms = window_ms;
        r->max = max_clients;
    }
    return r;
}

void rl_refusals_free(struct rl_refusals *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < RL_BUCKETS; i++) {
        struct rl_entry *e = r->table[i], *n;
        for (; e != NULL; e = n) {
            n = e->next;
            free(e);
        }
    }
    free(r);
}

static struct rl_entry *lookup(struct rl_refusals *r, const char *client, int64_t now_ms)
{
    unsigned h = hash(client);
    struct rl_entry *e;

    for (e = r->table[h]; e != NULL; e = e->next)
        if (strcmp(e->client, client) == 0)
            return e;
    /* Past the cap every new client shares one "other" entry (the cap + 1). */
    if (r->count >= r->max && strcmp(client, "other") != 0)
        return lookup(r, "other", now_ms);
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    snprintf(e->client, sizeof(e->client), "%s", client);
    e->start_ms = now_ms;
    e->next = r->table[h];
    r->table[h] = e;
    r->count++;
    return e;
}

int rl_refusal_admit(struct rl_refusals *r, const char *client, int64_t now_ms, rl_summary_fn fn, void *arg)
{
    struct rl_entry *e = lookup(r, client, now_ms);

    if (e == NULL) {
        /* Table full even for "other" (allocation failure): suppress. */
        return 0;
    }
    if (now_ms - e->start_ms >= r->window_ms) {
        if (e->suppressed > 0)
            fn(arg, e->client, e->suppressed, e->start_ms);
        e->start_ms = now_ms;
        e->recorded = 0;
        e->suppressed = 0;
    }
    if (e->recorded < r->per_window) {
        e->recorded++;
        return 1;
    }
    e->suppressed++;
    return 0;
}

void rl_refusals_sweep(struct rl_refusals *r, int64_t now_ms, rl_summary_fn fn, void *arg)
{
    for (size_t i = 0; i < RL_BUCKETS; i++) {
        struct rl_entry **pp = &r->table[i], *e;
        while ((e = *pp) != NULL) {
            if (now_ms == INT64_MAX || now_ms - e->start_ms >= r->window_ms) {
                if (e->suppressed > 0)
                    fn(arg, e->client, e->suppressed, e->start_ms);
                *pp = e->next;
                free(e);
                r->count--;
            } else {
                pp = &e->next;
            }
        }
    }
}

void rl_bucket_init(struct rl_bucket *b, double burst, double per_second, int64_t now_ms)
{
    b->tokens = burst;
    b->burst = burst;
    b->rate = per_second;
    b->last_ms = now_ms;
}

long rl_bucket_take(struct rl_bucket *b, int64_t now_ms)
{
    double wait;

    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) / 1000.0 * b->rate;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ms = now_ms;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }
    wait = ceil((1.0 - b->tokens) / b->rate);
    return wait < 1 ? 1 : (long)wait;
}
