/*
 * audit: the audit writer (see audit.h). Two queues cross the thread line:
 * pending items (loop → writer) and finished ones (writer → loop, announced
 * through an eventfd). Only the writer thread touches the file and the chain
 * state (seq, prev, entries since the last checkpoint), so file order is seq
 * order by construction. Control items (checkpoint, reopen, new settings)
 * travel in the same queue, so they happen exactly between the entries
 * submitted before and after them.
 */
#include "audit.h"

#include "chain.h"
#include "clock.h"
#include "codec.h"
#include "log.h"
#include "revread.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AUDIT_OUT_MAX (64 * 1024 * 1024) /* bytes of one group commit */
#define AUDIT_RETRY_MS 1000              /* recovery attempts while failed */
#define AUDIT_LAZY_SYNC_MS 100           /* entries that did not ask for durability are synced this late */
#define AUDIT_LAZY_WRITE_MS 5            /* ... and written this late while durable ones keep coming */
#define AUDIT_SLOW_LOG_S 10              /* at most one slow-sync message per this many seconds */

enum item_kind { I_ENTRY, I_CHECKPOINT, I_REOPEN, I_CONFIG };

struct item {
    struct item *next;
    enum item_kind kind;
    char *body; /* I_ENTRY: owned */
    int durable;
    int ok;
    audit_done_cb cb;
    void *arg;
    struct audit_port *port; /* where cb runs; NULL when there is no cb */
    struct audit_opts opts;  /* I_CONFIG: owned copies */
};

/*
 * Where the chain stands (seq, prev, entries since the last checkpoint) and
 * the size of the file that holds it. a->durable keeps it as of the last
 * sync that succeeded: a failed write or sync rolls back to it.
 */
struct chain_state {
    uint64_t seq;
    unsigned char prev[32];
    uint64_t since_cp;
    off_t size;
};

/* A loop that appends entries and hears back: its own done queue and eventfd. */
struct audit_port {
    struct audit *a;
    struct audit_port *next; /* all ports, owned by the audit */
    int efd;
    struct event *ev;
    struct item *done, **done_tail; /* guarded by a->mu */
    int wake;                       /* guarded by a->mu: an eventfd write is due */
};

struct audit {
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct item *pending, **pending_tail; /* guarded by mu */
    int stop;                             /* guarded by mu */
    int writer_waiting;                   /* guarded by mu: the writer sleeps on cv (and nobody woke it yet) */
    long long last_durable_ns;            /* guarded by mu: when the last durable entry came (CLOCK_MONOTONIC) */
    struct audit_port *ports;             /* guarded by mu */
    struct audit_port *main_port;         /* the creating loop's */
    struct event *cp_timer;
    /* Writer-thread state. */
    int fd;
    ino_t ino;
    char *path;
    char *instance;
    EVP_PKEY *key;
    long every;
    long long rotate_bytes;
    uint64_t seq;
    unsigned char prev[32];
    uint64_t since_cp;
    uint64_t file_first_seq;
    off_t good_size;                        /* bytes of the current file known written */
    struct chain_state durable;             /* the above as of the last sync that succeeded */
    int dirty;                              /* written but not synced yet */
    struct timespec dirty_since;            /* since when */
    long window_us;                         /* group commit: at most one sync per window, under load */
    struct timespec batch_start, last_sync; /* of this batch; of the last synced one */
    long slow_ms;                           /* a sync this long is reported */
    unsigned long slow_n;                   /* slow syncs not reported yet ... */
    double slow_worst_s;                    /* ... the longest of them */
    long long slow_logged_ns;               /* when the last report went out (0: never) */
    struct buf out;
    /* Shared, read by the loop. */
    atomic_int healthy;
    _Atomic(const char *) problem;
    _Atomic uint64_t last_seq;
    struct met_hist write_hist, sync_hist;
};

int audit_healthy(const struct audit *a)
{
    return a != NULL && atomic_load(&a->healthy);
}

void audit_metrics(struct audit *a, struct met_gauges *g)
{
    g->audit_write = &a->write_hist;
    g->audit_sync = &a->sync_hist;
    g->audit_seq = atomic_load(&a->last_seq);
}

static void set_failed(struct audit *a, const char *why, int err)
{
    if (atomic_exchange(&a->healthy, 0))
        log_error("audit log %s: %s: %s; refusing to forward until it recovers", a->path, why, strerror(err));
    atomic_store(&a->problem, why);
}

static long long mono_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static double since_s(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void save_state(const struct audit *a, struct chain_state *s)
{
    s->seq = a->seq;
    memcpy(s->prev, a->prev, 32);
    s->since_cp = a->since_cp;
    s->size = a->good_size;
}

static void restore_state(struct audit *a, const struct chain_state *s)
{
    a->seq = s->seq;
    memcpy(a->prev, s->prev, 32);
    a->since_cp = s->since_cp;
    a->good_size = s->size;
}

/* Hash the line just appended at a->out[start..] and advance the chain. */
static void advance(struct audit *a, size_t start)
{
    chain_hash(a->out.p + start, a->out.len - start, a->prev);
    a->seq++;
}

/* Append the chained line for body (a JSON object text) to a->out. */
static int chain_line(struct audit *a, const char *body)
{
    int rc = -1;
    char hex[65];
    size_t start = a->out.len;

    codec_hex(hex, a->prev, 32);
    if (buf_adds(&a->out, "{\"seq\":") != 0 || buf_addu(&a->out, a->seq + 1) != 0 ||
        buf_adds(&a->out, ",\"prev\":\"") != 0 || buf_add(&a->out, hex, 64) != 0 || buf_addc(&a->out, '"') != 0)
        goto out;
    if (body[1] != '}' && buf_addc(&a->out, ',') != 0)
        goto out;
    if (buf_adds(&a->out, body + 1) != 0 || buf_addc(&a->out, '\n') != 0)
        goto out;
    advance(a, start);
    a->since_cp++;
    rc = 0;
out:
    if (rc != 0)
        buf_truncate(&a->out, start);
    return rc;
}

/* A signed checkpoint sealing everything written so far (when there is news). */
static int checkpoint_line(struct audit *a)
{
    size_t start = a->out.len;

    if (a->key == NULL || a->since_cp == 0)
        return 0;
    if (chain_checkpoint_line(&a->out, a->key, a->instance, a->seq + 1, a->prev, clock_wall_ms(), a->since_cp) != 0)
        return -1;
    advance(a, start);
    a->since_cp = 0;
    return 0;
}

/* Report the slow syncs counted so far, if any. */
static void slow_report(struct audit *a)
{
    if (a->slow_n > 0) {
        log_warn("audit log %s: %lu fdatasync calls took %ld ms or more since the last report, the longest %.0f ms; "
                 "requests waiting for their decision entries waited as long",
                 a->path, a->slow_n, a->slow_ms, a->slow_worst_s * 1000.0);
        a->slow_n = 0;
        a->slow_worst_s = 0;
        a->slow_logged_ns = mono_ns();
    }
}

/* A sync of s seconds: a slow one (audit.slow_sync_warn_ms) is counted for slow_due. */
static void note_sync(struct audit *a, double s)
{
    met_hist_observe(&a->sync_hist, s);
    if (s * 1000.0 < (double)a->slow_ms)
        return;
    a->slow_n++;
    if (s > a->slow_worst_s)
        a->slow_worst_s = s;
}

/*
 * Report the counted slow syncs when the first of them came or the last
 * report is AUDIT_SLOW_LOG_S old; the writer asks after each batch, once its
 * entries are delivered, and audit_free reports the rest. A disk that stalls
 * stalls every deletion in flight, so an operator should hear of it.
 */
static void slow_due(struct audit *a)
{
    if (a->slow_n > 0 && (a->slow_logged_ns == 0 || mono_ns() - a->slow_logged_ns >= AUDIT_SLOW_LOG_S * 1000000000LL))
        slow_report(a);
}

/*
 * Commit or roll back: write a->out (the lines chained since the last
 * commit) and sync when asked. 0 on success. On failure the log is failed
 * and the chain and the file size go back to the last sync that succeeded
 * (a->durable): whatever followed it, this group and entries written
 * without a sync before it alike, is not known durable, so try_recover
 * moves those bytes into PATH.torn and the recovery entry follows the last
 * durable entry. Every writer of lines (process, the checkpoint item,
 * seal, write_recovery) commits through here.
 */
static int commit(struct audit *a, int sync)
{
    struct timespec t0;
    int rc = -1;

    if (a->out.len > 0) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (write_all(a->fd, a->out.p, a->out.len) != 0) {
            set_failed(a, "write failed", errno);
            goto out;
        }
        met_hist_observe(&a->write_hist, since_s(&t0));
        a->good_size += (off_t)a->out.len;
    }
    if (sync) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (fdatasync(a->fd) != 0) {
            set_failed(a, "fdatasync failed", errno);
            goto out;
        }
        note_sync(a, since_s(&t0));
        a->dirty = 0;
        save_state(a, &a->durable);
    } else if (a->out.len > 0 && !a->dirty) {
        a->dirty = 1;
        clock_gettime(CLOCK_MONOTONIC, &a->dirty_since);
    }
    rc = 0;
out:
    if (rc != 0) {
        restore_state(a, &a->durable);
        a->dirty = 0;
    }
    buf_reset(&a->out);
    atomic_store(&a->last_seq, a->seq);
    return rc;
}

/*
 * The open file is where the chain now continues (at start, after a
 * recovery, a rotation or a new path): it is the durable base, and its
 * rotated name will carry the seq of its first line, or of the next entry
 * when it is empty. Every line begins with {"seq":N, so the first bytes tell.
 */
static void file_opened(struct audit *a)
{
    char head[48], *end;
    ssize_t n;
    unsigned long long v;

    save_state(a, &a->durable);
    a->dirty = 0;
    a->file_first_seq = a->seq + 1;
    if (a->good_size == 0)
        return;
    n = pread(a->fd, head, sizeof(head) - 1, 0);
    if (n < 8 || memcmp(head, "{\"seq\":", 7) != 0 || head[7] < '0' || head[7] > '9')
        return;
    head[n] = '\0';
    errno = 0;
    v = strtoull(head + 7, &end, 10);
    if (errno == 0 && *end == ',' && v >= 1)
        a->file_first_seq = v;
}

/* PATH.state: where the chain stands, for a restart that finds an empty file. */
static void write_state_file(struct audit *a)
{
    char path[4096], tmp[4200], hex[65];
    FILE *f;
    int fd;

    snprintf(path, sizeof(path), "%s.state", a->path);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    codec_hex(hex, a->prev, 32);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        if (fd >= 0)
            close(fd);
        log_warn("audit state %s: cannot write: %s", tmp, strerror(errno));
        return;
    }
    fprintf(f, "{\"format\":\"%s\",\"instance\":\"%s\",\"seq\":%llu,\"prev\":\"%s\",\"since_checkpoint\":%llu}\n",
            CHAIN_FORMAT, a->instance, (unsigned long long)a->seq, hex, (unsigned long long)a->since_cp);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        log_warn("audit state %s: cannot write: %s", path, strerror(errno));
}

static int open_file(struct audit *a, struct buf *err)
{
    struct stat st;

    /* Read as well: at start load_chain reads the tail through this
     * descriptor (so a file the gateway may write but not read is refused,
     * at start and at a reopen alike). */
    a->fd = open(a->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (a->fd < 0 || fstat(a->fd, &st) != 0) {
        if (err != NULL)
            buf_printf(err, "%s: cannot open for reading and appending: %s\n", a->path, strerror(errno));
        if (a->fd >= 0)
            close(a->fd);
        a->fd = -1;
        return -1;
    }
    a->ino = st.st_ino;
    a->good_size = st.st_size;
    return 0;
}

/* Move bytes [from, end) of the file into PATH.torn and cut them off. */
static int move_torn(struct audit *a, off_t from, off_t end, struct buf *err)
{
    int rc = -1, rfd = -1, tfd = -1;
    char tpath[4200], chunk[65536];
    off_t off = from;

    snprintf(tpath, sizeof(tpath), "%s.torn", a->path);
    rfd = open(a->path, O_RDONLY | O_CLOEXEC);
    tfd = open(tpath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (rfd < 0 || tfd < 0)
        goto out;
    while (off < end) {
        size_t want = (size_t)(end - off) < sizeof(chunk) ? (size_t)(end - off) : sizeof(chunk);
        ssize_t n = pread(rfd, chunk, want, off);
        if (n <= 0 || write_all(tfd, chunk, (size_t)n) != 0)
            goto out;
        off += n;
    }
    /* The torn bytes end with a newline in the .torn file, for readability. */
    if (write_all(tfd, "\n", 1) != 0 || fsync(tfd) != 0 || truncate(a->path, from) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0 && err != NULL)
        buf_printf(err, "%s: cannot move %lld torn bytes to %s: %s\n", a->path, (long long)(end - from), tpath,
                   strerror(errno));
    if (rfd >= 0)
        close(rfd);
    if (tfd >= 0)
        close(tfd);
    return rc;
}

/* Read PATH.state (left by a rotation, where the chain stood) into *st:
 * 0 when it is there and of this instance, -1 otherwise. */
static int read_state_file(const struct audit *a, struct chain_state *st)
{
    char path[4096];
    json_t *j, *v;
    const char *hex;
    int rc = -1;

    snprintf(path, sizeof(path), "%s.state", a->path);
    j = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL)
        return rc;
    v = json_object_get(j, "instance");
    hex = json_string_value(json_object_get(j, "prev"));
    if (json_is_string(v) && strcmp(json_string_value(v), a->instance) == 0 && hex != NULL && strlen(hex) == 64 &&
        json_is_integer(json_object_get(j, "seq")) && codec_unhex(st->prev, hex, 32) == 0) {
        st->seq = (uint64_t)json_integer_value(json_object_get(j, "seq"));
        st->since_cp = (uint64_t)json_integer_value(json_object_get(j, "since_checkpoint"));
        rc = 0;
    }
    json_decref(j);
    return rc;
}

/* What the walk back from the end of the file finds. */
struct tail_scan {
    struct audit *a;
    int want_checkpoint; /* with a signing key: count back to the last checkpoint */
    uint64_t lines;      /* lines seen */
    uint64_t first_seq;  /* seq of the earliest line seen */
    int found_cp;
    const char *error; /* static text, or NULL */
};

static int on_tail_line(void *arg, const char *line, size_t len)
{
    struct tail_scan *t = arg;
    json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    const char *event = json_string_value(json_object_get(j, "event"));
    const char *inst = json_string_value(json_object_get(j, "instance"));
    int stop = 0;

    if (!json_is_integer(json_object_get(j, "seq")) || json_integer_value(json_object_get(j, "seq")) < 1) {
        t->error = "a line is not an " CHAIN_FORMAT " entry";
        stop = 1;
        goto out;
    }
    t->first_seq = (uint64_t)json_integer_value(json_object_get(j, "seq"));
    if (t->lines++ == 0) {
        /* The last line: where the chain stands (its hash covers the newline). */
        struct buf b;
        buf_init(&b, CHAIN_LINE_MAX + 1);
        if (inst != NULL && strcmp(inst, t->a->instance) != 0) {
            t->error = "the log belongs to another instance; use one file per instance";
            stop = 1;
            buf_free(&b);
            goto out;
        }
        buf_add(&b, line, len);
        buf_addc(&b, '\n');
        chain_hash(b.p, b.len, t->a->prev);
        buf_free(&b);
        t->a->seq = t->first_seq;
    }
    if (event != NULL && strcmp(event, "checkpoint") == 0) {
        t->a->since_cp = t->lines - 1;
        t->found_cp = 1;
        stop = 1;
    } else if (!t->want_checkpoint) {
        stop = 1; /* without a key only the last line matters */
    }
out:
    json_decref(j);
    return stop;
}

/*
 * Where the chain stands at start, read from the end of the file: the last
 * line gives seq and prev. The count since the last checkpoint is known
 * with or without a signing key (a key added later by reload seals with the
 * right count): PATH.state's when it was written after that last line (a
 * clean stop or a rotation), else the walk goes back to the last
 * checkpoint. A torn tail (no final newline, left by a crash) is moved
 * aside; *torn receives its size, and a->good_size drops to the last
 * newline. Reads through a->fd (open_file's).
 */
static int load_chain(struct audit *a, off_t *torn, struct buf *err)
{
    int rc = -1, fd = a->fd, r;
    struct stat st;
    off_t end;
    struct tail_scan t;
    struct chain_state cs;
    int have_state;

    *torn = 0;
    memset(a->prev, 0, 32);
    a->seq = 0;
    a->since_cp = 0;
    if (fstat(fd, &st) != 0) {
        buf_printf(err, "%s: cannot read: %s\n", a->path, strerror(errno));
        goto out;
    }
    end = rev_line_end(fd, st.st_size);
    if (end < 0) {
        buf_printf(err, "%s: cannot read: %s\n", a->path, strerror(errno));
        goto out;
    }
    if (end < st.st_size) {
        /* A crash tore the last line: keep its bytes, cut them from the log. */
        if (move_torn(a, end, st.st_size, err) != 0)
            goto out;
        *torn = st.st_size - end;
        a->good_size = end;
        log_warn("audit log %s: moved a torn last line (%lld bytes) to %s.torn", a->path, (long long)*torn, a->path);
    }
    have_state = read_state_file(a, &cs) == 0;
    if (end == 0) {
        if (have_state) {
            cs.size = 0;
            restore_state(a, &cs);
        }
        if (a->seq > 0)
            log_info("audit log %s is empty: the chain continues from %s.state at seq %llu", a->path, a->path,
                     (unsigned long long)a->seq);
        rc = 0;
        goto out;
    }
    /* The last line first; then, unless PATH.state knows the count as of
     * that very line, back to the last checkpoint. */
    for (int pass = 0; pass < 2; pass++) {
        memset(&t, 0, sizeof(t));
        t.a = a;
        t.want_checkpoint = pass == 1;
        r = rev_lines(fd, end, CHAIN_LINE_MAX, on_tail_line, &t);
        if (r < 0 || t.error != NULL) {
            buf_printf(err, "%s: %s\n", a->path, t.error ? t.error : "cannot read the last lines");
            goto out;
        }
        if (t.found_cp)
            break;
        if (pass == 0 && have_state && cs.seq == a->seq && memcmp(cs.prev, a->prev, 32) == 0) {
            a->since_cp = cs.since_cp;
            break;
        }
        if (pass == 1) {
            /* No checkpoint in this file: count from the chain's start, or
             * from the state a rotation left (which ended the previous file). */
            int cont = have_state && cs.seq + 1 == t.first_seq;
            a->since_cp = t.lines + (cont ? cs.since_cp : t.first_seq - 1);
        }
    }
    rc = 0;
out:
    return rc;
}

/* A chained recovery entry, written and synced at once. */
static int write_recovery(struct audit *a, const char *reason, off_t torn)
{
    struct buf b;
    char ts[40];
    int rc;

    clock_rfc3339_ms(ts, sizeof(ts), clock_wall_ms());
    buf_init(&b, 4096);
    buf_printf(&b, "{\"ts\":\"%s\",\"instance\":", ts);
    buf_json_str(&b, a->instance, strlen(a->instance));
    buf_adds(&b, ",\"event\":\"recovery\",\"reason\":");
    buf_json_str(&b, reason, strlen(reason));
    buf_printf(&b, ",\"torn_bytes\":%lld", (long long)torn);
    if (torn > 0) {
        char tpath[4200];
        snprintf(tpath, sizeof(tpath), "%s.torn", a->path);
        buf_adds(&b, ",\"torn_file\":");
        buf_json_str(&b, tpath, strlen(tpath));
    }
    buf_addc(&b, '}');
    rc = b.p != NULL && chain_line(a, b.p) == 0 && commit(a, 1) == 0 ? 0 : -1;
    buf_free(&b);
    return rc;
}

/* After a failure: reopen, cut what is past the last good byte, record it. */
static void try_recover(struct audit *a)
{
    struct stat st;
    off_t torn = 0;
    char reason[256];

    if (a->fd >= 0)
        close(a->fd);
    a->fd = -1;
    buf_reset(&a->out);
    if (stat(a->path, &st) == 0 && S_ISREG(st.st_mode) && st.st_ino == a->ino) {
        if (st.st_size > a->good_size) {
            if (move_torn(a, a->good_size, st.st_size, NULL) != 0)
                return;
            torn = st.st_size - a->good_size;
            snprintf(reason, sizeof(reason), "%s; %lld bytes after the last durable entry moved aside",
                     atomic_load(&a->problem), (long long)torn);
        } else if (st.st_size < a->good_size) {
            snprintf(reason, sizeof(reason), "%s; the file was truncated from %lld to %lld bytes by someone else",
                     atomic_load(&a->problem), (long long)a->good_size, (long long)st.st_size);
        } else {
            snprintf(reason, sizeof(reason), "%s; nothing past the last durable entry", atomic_load(&a->problem));
        }
    } else {
        snprintf(reason, sizeof(reason), "%s; the file was removed or replaced, the chain continues in a new file",
                 atomic_load(&a->problem));
    }
    if (open_file(a, NULL) != 0)
        return;
    file_opened(a);
    atomic_store(&a->healthy, 1);
    if (write_recovery(a, reason, torn) != 0) {
        /* commit rolled the chain and a->good_size back: the next attempt
         * moves this entry's bytes aside with the rest. */
        atomic_store(&a->healthy, 0);
        return;
    }
    atomic_store(&a->problem, NULL);
    log_info("audit log %s recovered at seq %llu: %s", a->path, (unsigned long long)a->seq, reason);
}

/* Seal the current file: a checkpoint, synced, and PATH.state for the next.
 * On failure commit has rolled the chain back and the log is failed. */
static int seal(struct audit *a)
{
    if (checkpoint_line(a) != 0 || commit(a, 1) != 0)
        return -1;
    write_state_file(a);
    return 0;
}

/* Seal the current file, move it to its rotated name (chain.h), start anew. */
static int rotate(struct audit *a, int rename_it)
{
    char dst[8300];

    if (seal(a) != 0)
        return -1;
    if (rename_it) {
        chain_rotated_name(dst, sizeof(dst), a->path, a->file_first_seq, time(NULL));
        if (rename(a->path, dst) != 0) {
            log_error("audit log %s: cannot rotate to %s: %s", a->path, dst, strerror(errno));
            return 0; /* keep writing the same file */
        }
        log_info("audit log rotated to %s (seq %llu..%llu)", dst, (unsigned long long)a->file_first_seq,
                 (unsigned long long)a->seq);
    }
    close(a->fd);
    a->fd = -1;
    if (open_file(a, NULL) != 0) {
        set_failed(a, "reopen failed", errno);
        return -1;
    }
    file_opened(a);
    return 0;
}

static void apply_config(struct audit *a, struct audit_opts *o)
{
    EVP_PKEY_free(a->key);
    a->key = o->key;
    o->key = NULL;
    a->every = o->checkpoint_every;
    a->rotate_bytes = o->rotate_bytes;
    a->window_us = o->group_commit_us;
    if (a->slow_ms != o->slow_sync_ms)
        slow_report(a); /* what was counted under the old threshold */
    a->slow_ms = o->slow_sync_ms;
    if (strcmp(a->path, o->path) != 0) {
        /* A new file name: seal here, continue the chain there. */
        if (seal(a) == 0) {
            free(a->path);
            a->path = strdup(o->path);
            close(a->fd);
            a->fd = -1;
            if (a->path == NULL || open_file(a, NULL) != 0)
                set_failed(a, "reopen failed", errno);
            else
                file_opened(a);
        }
    }
}

/* Commit a run of entries (no control items in it) as one group. */
static void process(struct audit *a, struct item *list)
{
    struct item *it;
    int durable = 0, ok;

    buf_reset(&a->out);
    for (it = list; it != NULL && atomic_load(&a->healthy); it = it->next) {
        if (chain_line(a, it->body) != 0) {
            log_error("audit entry of %zu bytes dropped: larger than the batch cap", strlen(it->body));
            it->ok = -1;
            continue;
        }
        durable |= it->durable != 0;
        if (a->key != NULL && a->since_cp >= (uint64_t)a->every && checkpoint_line(a) != 0)
            log_error("audit checkpoint could not be signed");
    }
    ok = atomic_load(&a->healthy) && commit(a, durable) == 0;
    if (ok && durable)
        a->last_sync = a->batch_start;
    for (it = list; it != NULL; it = it->next)
        it->ok = ok && it->ok == 0;
}

static void deliver(struct audit *a, struct item *list);

/* Nanoseconds until written but unsynced entries must be synced (0: now):
 * AUDIT_LAZY_SYNC_MS after the first of them, busy or idle. */
static long long lazy_due_ns(const struct audit *a)
{
    long long left = AUDIT_LAZY_SYNC_MS * 1000000LL - (long long)(since_s(&a->dirty_since) * 1e9);

    return left > 0 ? left : 0;
}

/*
 * Group commit (a->mu held): when a waiting durable entry has company (its
 * caller had other requests in flight, which will soon bring entries of
 * their own), sleep until one window after the last sync began, so that
 * they share the next sync. A lone caller never waits, nor does a writer
 * asked to stop. One fdatasync costs tens of microseconds of CPU on a
 * virtual disk; under load this turns one sync per few requests into one
 * per many. Enqueuers do not wake a sleeping window (writer_waiting is 0).
 */
static void wait_window(struct audit *a)
{
    struct timespec due, now;
    const struct item *it;
    int company = 0;

    for (it = a->pending; it != NULL && !company; it = it->next)
        company = it->kind == I_ENTRY && it->durable == AUDIT_SYNC_SHARED;
    clock_gettime(CLOCK_MONOTONIC, &now);
    due = a->last_sync;
    due.tv_nsec += a->window_us * 1000L;
    due.tv_sec += due.tv_nsec / 1000000000L;
    due.tv_nsec %= 1000000000L;
    if (a->window_us > 0 && company && !a->stop &&
        (now.tv_sec < due.tv_sec || (now.tv_sec == due.tv_sec && now.tv_nsec < due.tv_nsec))) {
        pthread_mutex_unlock(&a->mu);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR)
            ;
        pthread_mutex_lock(&a->mu);
        clock_gettime(CLOCK_MONOTONIC, &now);
    }
    a->batch_start = now;
}

/*
 * How long the idle writer may sleep (a->mu held), in ns, or -1: until
 * woken. Unsynced entries bound it (AUDIT_LAZY_SYNC_MS), and so does a
 * recent durable entry: while those keep coming, entries that wait for
 * nothing are not worth a wakeup of their own (audit_append), and ride
 * with the next batch or are written AUDIT_LAZY_WRITE_MS after it.
 */
static long long idle_sleep_ns(const struct audit *a)
{
    long long ns = a->dirty ? lazy_due_ns(a) : -1;
    long long w = a->last_durable_ns + AUDIT_LAZY_WRITE_MS * 1000000LL - mono_ns();

    if (w > 0 && (ns < 0 || w < ns))
        ns = w;
    return ns;
}

static void *writer_main(void *arg)
{
    struct audit *a = arg;
    struct item *batch, *run;
    struct timespec ts;

    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (a->pending == NULL && !a->stop) {
            if (atomic_load(&a->healthy)) {
                long long ns = idle_sleep_ns(a);
                a->writer_waiting = 1;
                if (ns < 0) {
                    pthread_cond_wait(&a->cv, &a->mu);
                } else {
                    clock_gettime(CLOCK_REALTIME, &ts);
                    ts.tv_sec += (time_t)(ns / 1000000000LL);
                    ts.tv_nsec += (long)(ns % 1000000000LL);
                    if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                    }
                    pthread_cond_timedwait(&a->cv, &a->mu, &ts);
                }
                a->writer_waiting = 0;
                /* Entries without a durability wait: synced when due, or with the next batch. */
                if (a->pending == NULL && a->dirty && lazy_due_ns(a) == 0) {
                    pthread_mutex_unlock(&a->mu);
                    commit(a, 1);
                    pthread_mutex_lock(&a->mu);
                }
            } else {
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += AUDIT_RETRY_MS / 1000;
                if (pthread_cond_timedwait(&a->cv, &a->mu, &ts) == ETIMEDOUT) {
                    pthread_mutex_unlock(&a->mu);
                    try_recover(a);
                    pthread_mutex_lock(&a->mu);
                }
            }
        }
        if (a->pending == NULL && a->stop)
            break;
        wait_window(a);
        batch = a->pending;
        a->pending = NULL;
        a->pending_tail = &a->pending;
        pthread_mutex_unlock(&a->mu);

        /* Runs of entries are committed together; control items in between. */
        for (run = batch; run != NULL;) {
            struct item *end = run, *stop;
            if (run->kind == I_ENTRY) {
                while (end->next != NULL && end->next->kind == I_ENTRY)
                    end = end->next;
                stop = end->next;
                end->next = NULL;
                process(a, run);
                end->next = stop;
                run = stop;
                continue;
            }
            if (run->kind == I_CONFIG) {
                apply_config(a, &run->opts);
            } else if (atomic_load(&a->healthy)) {
                if (run->kind == I_CHECKPOINT && a->key != NULL && a->since_cp > 0 && checkpoint_line(a) == 0)
                    commit(a, 1); /* or roll back */
                else if (run->kind == I_REOPEN)
                    rotate(a, 0);
            }
            run = run->next;
        }
        /* Entries nobody waits for are synced within AUDIT_LAZY_SYNC_MS even
         * when the queue never goes quiet (a flood of refusals). */
        if (atomic_load(&a->healthy) && a->dirty && lazy_due_ns(a) == 0)
            commit(a, 1);
        /* Rotation by size happens between batches. */
        if (atomic_load(&a->healthy) && a->rotate_bytes > 0 && a->good_size >= a->rotate_bytes)
            rotate(a, 1);

        pthread_mutex_lock(&a->mu);
        deliver(a, batch);
        if (a->slow_n > 0) {
            pthread_mutex_unlock(&a->mu);
            slow_due(a);
            pthread_mutex_lock(&a->mu);
        }
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

static void item_free(struct item *it)
{
    free(it->body);
    free((char *)it->opts.path);
    free((char *)it->opts.instance);
    EVP_PKEY_free(it->opts.key);
    free(it);
}

/*
 * Hand finished items to the ports whose loops wait for them (a->mu held),
 * one eventfd write per port; items nobody waits for are freed here.
 */
static void deliver(struct audit *a, struct item *list)
{
    struct item *it;
    struct audit_port *p;
    uint64_t one = 1;

    while ((it = list) != NULL) {
        list = it->next;
        it->next = NULL;
        if (it->port == NULL) {
            item_free(it);
            continue;
        }
        *it->port->done_tail = it;
        it->port->done_tail = &it->next;
        it->port->wake = 1;
    }
    for (p = a->ports; p != NULL; p = p->next) {
        if (!p->wake)
            continue;
        p->wake = 0;
        if (write(p->efd, &one, sizeof(one)) < 0) {
            /* The counter cannot overflow in practice. */
        }
    }
}

/* Loop side: run the callbacks of this port's finished items. */
static void run_done(struct audit_port *p)
{
    struct item *list, *it;

    pthread_mutex_lock(&p->a->mu);
    list = p->done;
    p->done = NULL;
    p->done_tail = &p->done;
    pthread_mutex_unlock(&p->a->mu);
    while ((it = list) != NULL) {
        list = it->next;
        if (it->cb != NULL)
            it->cb(it->arg, it->ok > 0);
        item_free(it);
    }
}

static void on_wakeup(evutil_socket_t fd, short what, void *arg)
{
    uint64_t n;

    (void)what;
    if (read(fd, &n, sizeof(n)) < 0) {
        /* EAGAIN: another wakeup already drained the counter. */
    }
    run_done(arg);
}

struct audit_port *audit_port_new(struct audit *a, struct event_base *base)
{
    struct audit_port *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->a = a;
    p->done_tail = &p->done;
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    p->ev = p->efd >= 0 ? event_new(base, p->efd, EV_READ | EV_PERSIST, on_wakeup, p) : NULL;
    if (p->ev == NULL || event_add(p->ev, NULL) != 0) {
        if (p->ev != NULL)
            event_free(p->ev);
        if (p->efd >= 0)
            close(p->efd);
        free(p);
        return NULL;
    }
    pthread_mutex_lock(&a->mu);
    p->next = a->ports;
    a->ports = p;
    pthread_mutex_unlock(&a->mu);
    return p;
}

/* At the end: items still waiting belong to requests that are gone. */
static void ports_free(struct audit *a)
{
    struct audit_port *p;

    while ((p = a->ports) != NULL) {
        a->ports = p->next;
        while (p->done != NULL) {
            struct item *it = p->done;
            p->done = it->next;
            item_free(it);
        }
        event_free(p->ev);
        close(p->efd);
        free(p);
    }
}

static void enqueue(struct audit *a, struct item *it)
{
    pthread_mutex_lock(&a->mu);
    *a->pending_tail = it;
    a->pending_tail = &it->next;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* Wake the writer only when it sleeps, and once: a busy (or waking)
 * writer takes the queue itself. */
static void wake_writer(struct audit *a)
{
    if (a->writer_waiting) {
        a->writer_waiting = 0;
        pthread_cond_signal(&a->cv);
    }
}

static void enqueue_control(struct audit *a, enum item_kind kind, const struct audit_opts *o)
{
    struct item *it = calloc(1, sizeof(*it));

    if (it == NULL)
        return;
    it->kind = kind;
    if (o != NULL) {
        it->opts = *o;
        it->opts.path = strdup(o->path);
        it->opts.instance = strdup(o->instance);
        if (o->key != NULL && EVP_PKEY_up_ref(o->key) != 1)
            it->opts.key = NULL;
    }
    enqueue(a, it);
}

static void on_checkpoint_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    enqueue_control(arg, I_CHECKPOINT, NULL);
}

static void arm_checkpoint_timer(struct audit *a, const struct audit_opts *o)
{
    struct timeval tv = {o->checkpoint_seconds, 0};

    evtimer_del(a->cp_timer);
    if (o->key != NULL)
        event_add(a->cp_timer, &tv);
}

void audit_reopen(struct audit *a)
{
    enqueue_control(a, I_REOPEN, NULL);
}

void audit_reconfigure(struct audit *a, const struct audit_opts *o)
{
    enqueue_control(a, I_CONFIG, o);
    arm_checkpoint_timer(a, o);
}

struct audit *audit_new(struct event_base *base, const struct audit_opts *o, struct buf *err)
{
    struct audit *a, *ret = NULL;
    off_t torn = 0;

    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->fd = -1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->pending_tail = &a->pending;
    buf_init(&a->out, AUDIT_OUT_MAX);
    atomic_store(&a->healthy, 1);
    atomic_store(&a->problem, NULL);
    a->path = strdup(o->path);
    a->instance = strdup(o->instance);
    a->every = o->checkpoint_every;
    a->rotate_bytes = o->rotate_bytes;
    a->window_us = o->group_commit_us;
    a->slow_ms = o->slow_sync_ms;
    if (o->key != NULL && EVP_PKEY_up_ref(o->key) == 1)
        a->key = o->key;
    if (a->path == NULL || a->instance == NULL || open_file(a, err) != 0)
        goto out;
    if (load_chain(a, &torn, err) != 0)
        goto out;
    file_opened(a);
    if (torn > 0 && write_recovery(a, "torn last line found at start (crash during a write)", torn) != 0) {
        buf_printf(err, "%s: cannot record the recovery of a torn line\n", a->path);
        goto out;
    }
    atomic_store(&a->last_seq, a->seq);
    a->main_port = audit_port_new(a, base);
    a->cp_timer = event_new(base, -1, EV_PERSIST, on_checkpoint_timer, a);
    if (a->main_port == NULL || a->cp_timer == NULL)
        goto out;
    arm_checkpoint_timer(a, o);
    if (pthread_create(&a->thread, NULL, writer_main, a) != 0)
        goto out;
    a->thread_started = 1;
    ret = a;
    a = NULL;
out:
    audit_free(a);
    return ret;
}

void audit_free(struct audit *a)
{
    if (a == NULL)
        return;
    if (a->thread_started) {
        /* The last item: a final checkpoint, then the thread stops. */
        enqueue_control(a, I_CHECKPOINT, NULL);
        pthread_mutex_lock(&a->mu);
        a->stop = 1;
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->thread, NULL);
        slow_report(a);
        if (a->fd >= 0 && atomic_load(&a->healthy)) {
            if (fdatasync(a->fd) != 0)
                log_error("audit log %s: final fdatasync failed: %s", a->path, strerror(errno));
            write_state_file(a);
        }
    }
    if (a->main_port != NULL)
        run_done(a->main_port);
    ports_free(a);
    if (a->fd >= 0)
        close(a->fd);
    if (a->cp_timer != NULL)
        event_free(a->cp_timer);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    buf_free(&a->out);
    EVP_PKEY_free(a->key);
    free(a->path);
    free(a->instance);
    free(a);
}

int audit_append(struct audit *a, struct audit_port *port, char *body, int durable, audit_done_cb cb, void *arg)
{
    int rc = 0;
    struct item *it = calloc(1, sizeof(*it));

    if (it == NULL) {
        free(body);
        /* Without memory for the item, the caller still must hear back. */
        if (cb != NULL)
            cb(arg, 0);
        return -1;
    }
    it->kind = I_ENTRY;
    it->body = body;
    it->durable = durable;
    it->cb = cb;
    it->arg = arg;
    it->port = cb != NULL ? (port != NULL ? port : a->main_port) : NULL;
    pthread_mutex_lock(&a->mu);
    if (!atomic_load(&a->healthy) || body == NULL || body[0] != '{') {
        /* Refused: report through the done queue, never from inside this call. */
        it->ok = 0;
        deliver(a, it);
        rc = -1;
    } else {
        long long now = mono_ns();
        *a->pending_tail = it;
        a->pending_tail = &it->next;
        /* An entry nobody waits for does not wake the writer while durable
         * ones keep coming: the writer is up within AUDIT_LAZY_WRITE_MS of
         * the last of them anyway (idle_sleep_ns). */
        if (durable)
            a->last_durable_ns = now;
        if (durable || now - a->last_durable_ns >= AUDIT_LAZY_WRITE_MS * 1000000LL)
            wake_writer(a);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}
