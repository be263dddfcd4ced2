/*
 * revread: backward line reading (see revread.h).
 */
#include "revread.h"

#include "buf.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REV_CHUNK (64 * 1024)

/* rev_line_end with the caller's chunk buffer (REV_CHUNK bytes). */
static off_t line_end(int fd, off_t size, char *chunk)
{
    off_t pos = size, rc = -1;

    while (pos > 0) {
        size_t want = pos > REV_CHUNK ? REV_CHUNK : (size_t)pos;
        const char *nl;

        pos -= (off_t)want;
        if (pread(fd, chunk, want, pos) != (ssize_t)want)
            goto out;
        if ((nl = memrchr(chunk, '\n', want)) != NULL) {
            rc = pos + (off_t)(nl - chunk) + 1;
            goto out;
        }
    }
    rc = 0;
out:
    return rc;
}

off_t rev_line_end(int fd, off_t size)
{
    char *chunk = malloc(REV_CHUNK);
    off_t rc = chunk != NULL ? line_end(fd, size, chunk) : -1;

    free(chunk);
    return rc;
}

/*
 * Hand the line at [start, end) to fn: from the chunk read at chunk_pos
 * (n bytes) when it lies there, else read whole into spill. 1 when fn
 * stopped the walk, 0 to go on, -1 when the line is longer than max or
 * cannot be read.
 */
static int emit(int fd, const char *chunk, off_t chunk_pos, size_t n, off_t start, off_t end, struct buf *spill,
                rev_line_fn fn, void *arg)
{
    size_t len = (size_t)(end - start);
    int rc = -1;

    if (len > spill->max)
        goto out;
    if (end <= chunk_pos + (off_t)n) {
        rc = fn(arg, chunk + (start - chunk_pos), len) != 0;
        goto out;
    }
    buf_reset(spill);
    if (buf_grow(spill, len) != 0 || pread(fd, spill->p, len, start) != (ssize_t)len)
        goto out;
    spill->len = len;
    spill->p[len] = '\0';
    rc = fn(arg, spill->p, len) != 0;
out:
    return rc;
}

int rev_lines(int fd, off_t size, size_t max, rev_line_fn fn, void *arg)
{
    int rc = -1, r = 0;
    char *chunk = malloc(REV_CHUNK);
    struct buf spill; /* a line that spans chunks, read whole */
    off_t pos, lend;  /* lend: the offset of the pending line's newline */
    size_t n = 0;

    buf_init(&spill, max);
    if (chunk == NULL || (pos = line_end(fd, size, chunk)) < 0)
        goto out;
    /* Bytes after the last newline are not a line yet. */
    lend = pos > 0 ? pos - 1 : 0;
    while (pos > 0 && r == 0) {
        n = pos > REV_CHUNK ? REV_CHUNK : (size_t)pos;
        pos -= (off_t)n;
        if (pread(fd, chunk, n, pos) != (ssize_t)n)
            goto out;
        for (size_t i = n; i-- > 0 && r == 0;) {
            off_t at = pos + (off_t)i;
            if (chunk[i] != '\n' || at == lend)
                continue;
            if (lend > at + 1)
                r = emit(fd, chunk, pos, n, at + 1, lend, &spill, fn, arg);
            lend = at;
        }
    }
    /* The file's first line: complete, since a later newline ended it. */
    if (r == 0 && lend > 0)
        r = emit(fd, chunk, 0, n, 0, lend, &spill, fn, arg);
    if (r >= 0)
        rc = r;
out:
    buf_free(&spill);
    free(chunk);
    return rc;
}
