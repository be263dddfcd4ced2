/*
 * audit: the append-only, hash-chained audit log (format
 * smc-gateway-audit-v1, see README.md "For auditors"), written by one
 * thread with group commit so that no write or fsync ever runs on the event
 * loop.
 *
 * The loop hands over entry bodies; the writer numbers and chains them in
 * file order, writes a batch, runs one fdatasync for the batch when any entry
 * asked for durability, and then wakes each waiting request on the loop.
 * When a durable entry has company (its caller had other requests in
 * flight) it runs at most one sync per group_commit_us: entries that arrive
 * meanwhile share it, so a busy gateway pays one sync for many requests; a
 * lone caller's entry is synced at once.
 * Entries that did not ask for durability are synced with the next batch
 * that does, and within 100 ms at the latest; while durable entries keep
 * coming they do not wake the writer but ride with the next batch, written
 * within 5 ms.
 * With a signing key it appends Ed25519-signed checkpoints. When a write or
 * sync fails the log is "failed" (entries are refused, so nothing is
 * forwarded) until the writer has reopened the file, moved any bytes past
 * the last durable entry into PATH.torn, and recorded a recovery entry.
 */
#ifndef GW_AUDIT_H
#define GW_AUDIT_H

#include "buf.h"
#include "metrics.h"

#include <event2/event.h>
#include <openssl/evp.h>
#include <stdint.h>

struct audit;
struct audit_port;

struct audit_opts {
    const char *path;        /* the audit file (copied) */
    const char *instance;    /* names the chain (copied) */
    EVP_PKEY *key;           /* checkpoint signing key, or NULL (a reference is taken) */
    long checkpoint_every;   /* entries (>= 1; config validates it) */
    long checkpoint_seconds; /* >= 1 */
    long long rotate_bytes;  /* 0: only by signal */
    long group_commit_us;    /* under load, at most one sync per this many us; 0: no wait */
    long slow_sync_ms;       /* a sync at least this long is logged (at most once per 10 s; the rest summed) */
};

#define AUDIT_SYNC 1
#define AUDIT_SYNC_SHARED 2

/* Called on the loop thread: ok = 1 when the entry is written (and synced
 * when it asked to be durable), 0 when it could not be recorded. */
typedef void (*audit_done_cb)(void *arg, int ok);

/*
 * Open (creating with mode 0640) the audit file, pick up its chain (moving a
 * torn last line aside into PATH.torn and recording that), and start the
 * writer thread. NULL with a message in err on failure. Free with audit_free.
 */
struct audit *audit_new(struct event_base *base, const struct audit_opts *o, struct buf *err);
/* Write what is queued, a final checkpoint, sync, stop the thread, close. NULL-safe. */
void audit_free(struct audit *a);

/*
 * Each event loop that appends entries and waits for them has a port: the
 * writer wakes that loop (through the port's eventfd) to run its callbacks.
 * Ports belong to the audit and are freed with it (their loops' bases must
 * outlive audit_free). The loop that created the audit has one already.
 */
struct audit_port *audit_port_new(struct audit *a, struct event_base *base);

/*
 * Append one entry, from any thread. body is a JSON object text beginning
 * with '{' (the caller builds it; it must not contain "seq" or "prev");
 * audit_append takes ownership of it (malloc'ed). durable: 0, synced
 * within 100 ms; AUDIT_SYNC, synced before cb runs; AUDIT_SYNC_SHARED, the
 * same, and the caller has other requests in flight, so the sync may wait
 * for a group-commit window to be shared. cb (may be NULL) runs later
 * on the loop of port (NULL: the creating loop's), never from inside this
 * call. Returns -1 only when the entry was refused at once (the log is
 * failed): cb is then still called, with ok = 0.
 */
int audit_append(struct audit *a, struct audit_port *port, char *body, int durable, audit_done_cb cb, void *arg);

/* Close and reopen the file (logrotate), writing a checkpoint first. */
void audit_reopen(struct audit *a);
/* Adopt new options (reload): path, key and checkpoint settings. */
void audit_reconfigure(struct audit *a, const struct audit_opts *o);

/* 1 while entries can be recorded; 0 after a write or sync failed. */
int audit_healthy(const struct audit *a);
/* Write/sync histograms and the last seq, for /metrics. */
void audit_metrics(struct audit *a, struct met_gauges *g);

#endif
