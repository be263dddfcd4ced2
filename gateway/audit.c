/*
 * audit: the audit writer (see audit.h). Two queues cross the thread line:
 * pending entries (loop → writer) and finished ones (writer → loop, announced
 * through an eventfd). Only the writer thread touches the file and the chain
 * state (seq, prev), so file order is seq order by construction.
 */
#include "audit.h"

#include "codec.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define AUDIT_TAIL_MAX (256 * 1024) /* longest line looked for at start */
#define AUDIT_BATCH_MAX 4096        /* entries written per group commit */

struct aentry {
    struct aentry *next;
    char *body; /* owned */
    int durable;
    int ok;
    audit_done_cb cb;
    void *arg;
};

struct audit {
    struct event_base *base;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct aentry *pending, **pending_tail; /* guarded by mu */
    struct aentry *done, **done_tail;       /* guarded by mu */
    int stop;                               /* guarded by mu */
    int efd;
    struct event *ev;
    /* Writer-thread state. */
    int fd;
    char *path;
    char *instance;
    uint64_t seq;
    unsigned char prev[32];
    struct buf out;
    /* Read by the loop. */
    atomic_int healthy;
    _Atomic(const char *) problem;
};

static void sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 32;

    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

int audit_healthy(const struct audit *a)
{
    return a != NULL && atomic_load(&a->healthy);
}

const char *audit_problem(const struct audit *a)
{
    return a == NULL ? "audit log not open" : atomic_load(&a->problem);
}

static void set_failed(struct audit *a, const char *why, int err)
{
    if (atomic_exchange(&a->healthy, 0))
        log_error("audit log %s: %s: %s; refusing to forward until it recovers", a->path, why, strerror(err));
    atomic_store(&a->problem, why);
}

/* Append the chained line for body to a->out; advances *seq and prev. */
static int chain_line(struct audit *a, const char *body, uint64_t *seq, unsigned char prev[32])
{
    int rc = -1;
    char hex[65];
    size_t start = a->out.len;

    codec_hex(hex, prev, 32);
    if (buf_printf(&a->out, "{\"seq\":%llu,\"prev\":\"%s\"", (unsigned long long)(*seq + 1), hex) != 0)
        goto out;
    if (body[1] != '}' && buf_addc(&a->out, ',') != 0)
        goto out;
    if (buf_adds(&a->out, body + 1) != 0 || buf_addc(&a->out, '\n') != 0)
        goto out;
    sha256(a->out.p + start, a->out.len - start, prev);
    (*seq)++;
    rc = 0;
out:
    if (rc != 0) {
        a->out.len = start;
        if (a->out.p)
            a->out.p[start] = '\0';
    }
    return rc;
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

/* Write one batch; on failure the chain state is not advanced. */
static void write_batch(struct audit *a, struct aentry *batch)
{
    uint64_t seq = a->seq;
    unsigned char prev[32];
    int durable = 0, ok = atomic_load(&a->healthy);
    struct aentry *e;

    memcpy(prev, a->prev, 32);
    buf_reset(&a->out);
    for (e = batch; e != NULL && ok; e = e->next) {
        if (chain_line(a, e->body, &seq, prev) != 0) {
            /* An entry too large for the buffer: record that it was lost. */
            log_error("audit entry of %zu bytes dropped: larger than the line cap", strlen(e->body));
            e->ok = -1;
            continue;
        }
        durable |= e->durable;
    }
    if (ok && a->out.len > 0 && write_all(a->fd, a->out.p, a->out.len) != 0) {
        set_failed(a, "write failed", errno);
        ok = 0;
    }
    if (ok && durable && fdatasync(a->fd) != 0) {
        set_failed(a, "fdatasync failed", errno);
        ok = 0;
    }
    if (ok) {
        a->seq = seq;
        memcpy(a->prev, prev, 32);
    }
    for (e = batch; e != NULL; e = e->next)
        e->ok = ok && e->ok == 0;
}

static void *writer_main(void *arg)
{
    struct audit *a = arg;
    struct aentry *batch, *last;
    uint64_t one = 1;

    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (a->pending == NULL && !a->stop)
            pthread_cond_wait(&a->cv, &a->mu);
        if (a->pending == NULL && a->stop)
            break;
        batch = a->pending;
        a->pending = NULL;
        a->pending_tail = &a->pending;
        pthread_mutex_unlock(&a->mu);

        write_batch(a, batch);

        pthread_mutex_lock(&a->mu);
        for (last = batch; last->next != NULL; last = last->next)
            ;
        *a->done_tail = batch;
        a->done_tail = &last->next;
        if (write(a->efd, &one, sizeof(one)) < 0) {
            /* The counter cannot overflow in practice; nothing to do. */
        }
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Loop side: run the callbacks of finished entries. */
static void run_done(struct audit *a)
{
    struct aentry *list, *e;

    pthread_mutex_lock(&a->mu);
    list = a->done;
    a->done = NULL;
    a->done_tail = &a->done;
    pthread_mutex_unlock(&a->mu);
    while ((e = list) != NULL) {
        list = e->next;
        if (e->cb != NULL)
            e->cb(e->arg, e->ok);
        free(e->body);
        free(e);
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

/*
 * Pick up the chain from the file's last line: its seq, and the hash of its
 * bytes. A file that does not end in a newline was torn by a crash: the torn
 * bytes are kept in PATH.torn and cut from the log.
 */
static int load_tail(struct audit *a, struct buf *err)
{
    int rc = -1;
    struct stat st;
    off_t size, from;
    char *tail = NULL;
    ssize_t n;
    size_t len, start;
    json_t *j = NULL;

    memset(a->prev, 0, sizeof(a->prev));
    a->seq = 0;
    if (fstat(a->fd, &st) != 0) {
        buf_printf(err, "%s: cannot stat: %s\n", a->path, strerror(errno));
        goto out;
    }
    size = st.st_size;
    if (size == 0) {
        rc = 0;
        goto out;
    }
    from = size > AUDIT_TAIL_MAX ? size - AUDIT_TAIL_MAX : 0;
    len = (size_t)(size - from);
    tail = malloc(len + 1);
    if (tail == NULL)
        goto out;
    n = pread(a->fd, tail, len, from);
    if (n != (ssize_t)len) {
        buf_printf(err, "%s: cannot read the last line\n", a->path);
        goto out;
    }
    tail[len] = '\0';
    if (tail[len - 1] != '\n') {
        buf_printf(err, "%s: the last line is incomplete (torn by a crash?); run recovery\n", a->path);
        goto out;
    }
    start = len - 1;
    while (start > 0 && tail[start - 1] != '\n')
        start--;
    if (start == 0 && from > 0) {
        buf_printf(err, "%s: last line longer than %d bytes\n", a->path, AUDIT_TAIL_MAX);
        goto out;
    }
    j = json_loadb(tail + start, len - start, 0, NULL);
    if (!json_is_integer(json_object_get(j, "seq")) || json_integer_value(json_object_get(j, "seq")) < 1) {
        buf_printf(err, "%s: the last line is not an smc-gateway-audit-v1 entry\n", a->path);
        goto out;
    }
    a->seq = (uint64_t)json_integer_value(json_object_get(j, "seq"));
    sha256(tail + start, len - start, a->prev);
    rc = 0;
out:
    json_decref(j);
    free(tail);
    return rc;
}

struct audit *audit_new(struct event_base *base, const struct audit_opts *o, struct buf *err)
{
    struct audit *a, *ret = NULL;

    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->base = base;
    a->fd = -1;
    a->efd = -1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->pending_tail = &a->pending;
    a->done_tail = &a->done;
    buf_init(&a->out, 64 * 1024 * 1024);
    atomic_store(&a->healthy, 1);
    atomic_store(&a->problem, NULL);
    a->path = strdup(o->path);
    a->instance = strdup(o->instance);
    if (a->path == NULL || a->instance == NULL)
        goto out;
    a->fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (a->fd < 0) {
        buf_printf(err, "%s: cannot open for appending: %s\n", a->path, strerror(errno));
        goto out;
    }
    /* load_tail reads through a second descriptor: ours is write-only. */
    {
        int wfd = a->fd, rfd = open(a->path, O_RDONLY | O_CLOEXEC), r;
        if (rfd < 0) {
            buf_printf(err, "%s: cannot open for reading: %s\n", a->path, strerror(errno));
            goto out;
        }
        a->fd = rfd;
        r = load_tail(a, err);
        close(rfd);
        a->fd = wfd;
        if (r != 0)
            goto out;
    }
    a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->efd < 0)
        goto out;
    a->ev = event_new(base, a->efd, EV_READ | EV_PERSIST, on_wakeup, a);
    if (a->ev == NULL || event_add(a->ev, NULL) != 0)
        goto out;
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
        pthread_mutex_lock(&a->mu);
        a->stop = 1;
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->thread, NULL);
    }
    run_done(a);
    if (a->fd >= 0) {
        if (fdatasync(a->fd) != 0)
            log_error("audit log %s: final fdatasync failed: %s", a->path, strerror(errno));
        close(a->fd);
    }
    if (a->ev != NULL)
        event_free(a->ev);
    if (a->efd >= 0)
        close(a->efd);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    buf_free(&a->out);
    free(a->path);
    free(a->instance);
    free(a);
}

int audit_append(struct audit *a, char *body, int durable, audit_done_cb cb, void *arg)
{
    int rc = 0;
    struct aentry *e = calloc(1, sizeof(*e));
    uint64_t one = 1;

    if (e == NULL) {
        free(body);
        /* Without memory for the entry, the caller still must hear back. */
        if (cb != NULL)
            cb(arg, 0);
        return -1;
    }
    e->body = body;
    e->durable = durable;
    e->cb = cb;
    e->arg = arg;
    pthread_mutex_lock(&a->mu);
    if (!atomic_load(&a->healthy) || body == NULL || body[0] != '{') {
        /* Refused: report through the done queue, never from inside this call. */
        e->ok = 0;
        *a->done_tail = e;
        a->done_tail = &e->next;
        if (write(a->efd, &one, sizeof(one)) < 0) {
            /* Cannot fail: the counter does not overflow. */
        }
        rc = -1;
    } else {
        *a->pending_tail = e;
        a->pending_tail = &e->next;
        pthread_cond_signal(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}
