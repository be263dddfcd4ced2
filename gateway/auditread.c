/*
 * auditread: paging through the audit trail newest first (see
 * auditread.h). Files are read backwards in chunks, so the newest page of a
 * large file costs one chunk, not the whole file.
 */
#include "auditread.h"

#include "chain.h"
#include "clock.h"
#include "codec.h"
#include "revread.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define AR_PAGE_MAX (8 * 1024 * 1024)
#define AR_FILES_MAX 4096

/* Percent-decode src[0..len) into dst (size dstlen); -1 on bad escapes or NUL. */
static int pct_decode(char *dst, size_t dstlen, const char *src, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            unsigned char byte;
            if (i + 2 >= len || codec_unhex(&byte, src + i + 1, 1) != 0)
                return -1;
            c = (char)byte;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == '\0' || n + 1 >= dstlen)
            return -1;
        dst[n++] = c;
    }
    dst[n] = '\0';
    return 0;
}

int ar_parse_query(const char *query, struct ar_query *q, const char **why)
{
    const char *p = query ? query : "";
    char key[32], val[AR_VALUE_MAX];

    q->limit = 100;
    while (*p != '\0') {
        size_t len = strcspn(p, "&"), klen = strcspn(p, "=");
        char *end;
        if (klen > len)
            klen = len;
        if (len == 0) {
            p++;
            continue;
        }
        if (klen >= sizeof(key) || pct_decode(key, sizeof(key), p, klen) != 0) {
            *why = "a parameter name is too long or malformed";
            return -1;
        }
        if (klen == len || pct_decode(val, sizeof(val), p + klen + 1, len - klen - 1) != 0) {
            *why = "a parameter value is missing, too long (over 255 bytes) or malformed";
            return -1;
        }
        if (strcmp(key, "team") == 0)
            snprintf(q->team, sizeof(q->team), "%s", val);
        else if (strcmp(key, "sub") == 0)
            snprintf(q->sub, sizeof(q->sub), "%s", val);
        else if (strcmp(key, "job") == 0)
            snprintf(q->job, sizeof(q->job), "%s", val);
        else if (strcmp(key, "decision") == 0 && (strcmp(val, "allow") == 0 || strcmp(val, "deny") == 0))
            snprintf(q->decision, sizeof(q->decision), "%s", val);
        else if (strcmp(key, "result") == 0)
            snprintf(q->result, sizeof(q->result), "%s", val);
        else if (strcmp(key, "event") == 0)
            snprintf(q->event, sizeof(q->event), "%s", val);
        else if (strcmp(key, "since") == 0 && clock_parse_rfc3339(val, &q->since_ms) == 0)
            ;
        else if (strcmp(key, "until") == 0 && clock_parse_rfc3339(val, &q->until_ms) == 0)
            ;
        else if (strcmp(key, "limit") == 0 && (errno = 0, q->limit = strtol(val, &end, 10), errno == 0) &&
                 *end == '\0' && end != val && q->limit >= 1 && q->limit <= AR_LIMIT_MAX)
            ;
        else if (strcmp(key, "cursor") == 0 && (errno = 0, q->cursor = strtoull(val, &end, 10), errno == 0) &&
                 *end == '\0' && end != val && val[0] != '-' && q->cursor > 0)
            ;
        else {
            *why = "unknown parameter or invalid value (team, sub, job, decision=allow|deny, result, event, "
                   "since/until=RFC 3339, limit=1..1000, cursor)";
            return -1;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return 0;
}

static const char *or_null(const char *s)
{
    return s[0] != '\0' ? s : NULL;
}

struct scan {
    const struct ar_query *q;
    struct chain_filter f; /* q's filters */
    struct buf *out;
    size_t count;
    uint64_t next;
    int full;
    /* A size rotation may rename the current file while it is read: the
     * same file under its rotated name is skipped, and so is any line not
     * older than one already seen (newest first means seq goes down). */
    uint64_t floor; /* the smallest seq seen so far; 0: none */
    int have_cur;
    dev_t cur_dev; /* the current file as scanned */
    ino_t cur_ino;
};

/* One line (without its newline): 1 to stop, 0 to go on. */
static int take_line(void *arg, const char *line, size_t len)
{
    struct scan *s = arg;
    json_t *e = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *seqv = json_object_get(e, "seq");
    uint64_t seq;
    char *txt;
    int stop = 0;

    if (!json_is_integer(seqv))
        goto out;
    seq = (uint64_t)json_integer_value(seqv);
    if (s->floor != 0 && seq >= s->floor)
        goto out;
    s->floor = seq;
    if ((s->q->cursor != 0 && seq >= s->q->cursor) || !chain_filter_match(&s->f, e))
        goto out;
    txt = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    if (txt == NULL || (s->count > 0 && buf_addc(s->out, ',') != 0) || buf_adds(s->out, txt) != 0) {
        free(txt);
        s->full = 1;
        stop = 1;
        goto out;
    }
    free(txt);
    s->count++;
    if (s->count >= (size_t)s->q->limit) {
        s->next = seq;
        stop = 1;
    }
out:
    json_decref(e);
    return stop;
}

/* One file, newest line first; 1 when the page is complete. The current
 * file (current) is remembered, so that it is not read again as a rotated one. */
static int scan_file(struct scan *s, const char *path, int current)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), stop = 0;
    struct stat st;

    if (fd < 0 || fstat(fd, &st) != 0)
        goto out;
    if (current) {
        s->have_cur = 1;
        s->cur_dev = st.st_dev;
        s->cur_ino = st.st_ino;
    } else if (s->have_cur && st.st_dev == s->cur_dev && st.st_ino == s->cur_ino) {
        goto out;
    }
    stop = rev_lines(fd, st.st_size, CHAIN_LINE_MAX, take_line, s) == 1;
out:
    if (fd >= 0)
        close(fd);
    return stop;
}

struct rotated {
    uint64_t first; /* seq of its first entry */
    char *name;     /* owned */
};

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = ((const struct rotated *)a)->first, y = ((const struct rotated *)b)->first;
    return x < y ? 1 : x > y ? -1 : 0;
}

int ar_scan(const struct ar_query *q, struct buf *out, size_t *count, uint64_t *next)
{
    struct scan s = {q,
                     {or_null(q->instance), or_null(q->team), or_null(q->sub), or_null(q->job), or_null(q->decision),
                      or_null(q->result), or_null(q->event), q->since_ms != 0, q->until_ms != 0, q->since_ms,
                      q->until_ms},
                     out,
                     0,
                     0,
                     0,
                     0,
                     0,
                     0,
                     0};
    char dir[4096], stem[4096];
    DIR *d;
    struct dirent *de;
    struct rotated *rot = NULL;
    size_t nrot = 0;
    int rc = 0;

    /* The current file has the newest entries; rotated ones follow. */
    if (!scan_file(&s, q->path, 1)) {
        chain_path_stem(q->path, dir, sizeof(dir), stem, sizeof(stem));
        d = opendir(dir);
        rot = calloc(AR_FILES_MAX, sizeof(*rot));
        while (d != NULL && rot != NULL && (de = readdir(d)) != NULL && nrot < AR_FILES_MAX) {
            uint64_t first;
            if (chain_rotated_match(stem, de->d_name, &first) && (rot[nrot].name = strdup(de->d_name)) != NULL)
                rot[nrot++].first = first;
        }
        if (d != NULL)
            closedir(d);
        if (rot != NULL)
            qsort(rot, nrot, sizeof(*rot), cmp_desc);
        for (size_t i = 0; i < nrot; i++) {
            char path[8300];
            snprintf(path, sizeof(path), "%s/%s", dir, rot[i].name);
            if (scan_file(&s, path, 0))
                break;
        }
    }
    for (size_t i = 0; i < nrot; i++)
        free(rot[i].name);
    free(rot);
    *count = s.count;
    *next = s.next;
    if (s.full)
        rc = -1;
    return rc;
}

struct ar_job {
    struct ar_job *next;
    struct ar *r;
    pthread_t thread;
    struct ar_query q;
    ar_done_fn done;
    void *arg;
    int ok;
    struct buf page;
    size_t count;
    uint64_t next_cursor;
};

struct ar {
    struct event_base *base;
    pthread_mutex_t mu;
    struct ar_job *finished; /* guarded by mu */
    int running;             /* loop-side count */
    int max_running;
    int efd;
    struct event *ev;
};

static void *ar_thread(void *arg)
{
    struct ar_job *j = arg;
    uint64_t one = 1;

    j->ok = ar_scan(&j->q, &j->page, &j->count, &j->next_cursor) == 0;
    pthread_mutex_lock(&j->r->mu);
    j->next = j->r->finished;
    j->r->finished = j;
    pthread_mutex_unlock(&j->r->mu);
    if (write(j->r->efd, &one, sizeof(one)) < 0) {
        /* Cannot overflow in practice. */
    }
    return NULL;
}

static void ar_collect(struct ar *r, int run_callbacks)
{
    struct ar_job *list, *j;

    pthread_mutex_lock(&r->mu);
    list = r->finished;
    r->finished = NULL;
    pthread_mutex_unlock(&r->mu);
    while ((j = list) != NULL) {
        list = j->next;
        pthread_join(j->thread, NULL);
        r->running--;
        if (run_callbacks)
            j->done(j->arg, j->ok, buf_take(&j->page), j->count, j->next_cursor);
        buf_free(&j->page);
        free(j);
    }
}

static void on_ar_wakeup(evutil_socket_t fd, short what, void *arg)
{
    uint64_t n;

    (void)what;
    if (read(fd, &n, sizeof(n)) < 0) {
        /* EAGAIN: drained by an earlier wakeup. */
    }
    ar_collect(arg, 1);
}

struct ar *ar_new(struct event_base *base, int max_running)
{
    struct ar *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->base = base;
    r->max_running = max_running;
    pthread_mutex_init(&r->mu, NULL);
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r->ev = r->efd >= 0 ? event_new(base, r->efd, EV_READ | EV_PERSIST, on_ar_wakeup, r) : NULL;
    if (r->ev == NULL || event_add(r->ev, NULL) != 0) {
        ar_free(r);
        return NULL;
    }
    return r;
}

void ar_free(struct ar *r)
{
    if (r == NULL)
        return;
    /* Wait for the reads still running; they finish on their own. */
    while (r->running > 0) {
        usleep(10000);
        ar_collect(r, 0);
    }
    if (r->ev != NULL)
        event_free(r->ev);
    if (r->efd >= 0)
        close(r->efd);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int ar_start(struct ar *r, const struct ar_query *q, ar_done_fn done, void *arg)
{
    struct ar_job *j;

    if (r->running >= r->max_running || (j = calloc(1, sizeof(*j))) == NULL)
        return -1;
    j->r = r;
    j->q = *q;
    j->done = done;
    j->arg = arg;
    buf_init(&j->page, AR_PAGE_MAX);
    if (pthread_create(&j->thread, NULL, ar_thread, j) != 0) {
        free(j);
        return -1;
    }
    r->running++;
    return 0;
}
