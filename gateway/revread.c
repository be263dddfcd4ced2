/*
 * revread: backward line reading (see revread.h).
 */
#include "revread.h"

#include "buf.h"

#include <stdlib.h>
#include <unistd.h>

#define REV_CHUNK (64 * 1024)

int rev_lines(int fd, off_t size, size_t max, rev_line_fn fn, void *arg)
{
    int rc = -1, skip_tail = 0;
    off_t pos = size;
    char *chunk = malloc(REV_CHUNK);
    struct buf carry; /* the start of a line that began before this chunk, plus its rest */

    buf_init(&carry, max);
    if (chunk == NULL)
        goto out;
    /* Bytes after the last newline are not a line yet. */
    if (pos > 0 && pread(fd, chunk, 1, pos - 1) == 1 && chunk[0] != '\n')
        skip_tail = 1;
    while (pos > 0) {
        size_t want = pos > REV_CHUNK ? REV_CHUNK : (size_t)pos;
        ssize_t n, end;

        pos -= (off_t)want;
        n = pread(fd, chunk, want, pos);
        if (n != (ssize_t)want)
            goto out;
        end = n;
        for (ssize_t i = n - 1; i >= 0; i--) {
            int stop = 0;
            if (chunk[i] != '\n')
                continue;
            if (skip_tail) {
                skip_tail = 0;
                buf_reset(&carry);
            } else if (carry.len > 0) {
                struct buf line;
                buf_init(&line, max);
                if (buf_add(&line, chunk + i + 1, (size_t)(end - i - 1)) != 0 ||
                    buf_add(&line, carry.p, carry.len) != 0) {
                    buf_free(&line);
                    goto out;
                }
                stop = fn(arg, line.p, line.len);
                buf_free(&line);
                buf_reset(&carry);
            } else if (i + 1 < end) {
                stop = fn(arg, chunk + i + 1, (size_t)(end - i - 1));
            }
            if (stop) {
                rc = 1;
                goto out;
            }
            end = i;
        }
        if (end > 0) {
            /* The chunk's first, partial line: its rest is in carry. */
            struct buf tmp;
            buf_init(&tmp, max);
            if (buf_add(&tmp, chunk, (size_t)end) != 0 || buf_add(&tmp, carry.p ? carry.p : "", carry.len) != 0) {
                buf_free(&tmp);
                goto out;
            }
            buf_free(&carry);
            carry = tmp;
        }
    }
    /* The file's first line: complete, since a later newline ended it. */
    if (!skip_tail && carry.len > 0 && fn(arg, carry.p, carry.len)) {
        rc = 1;
        goto out;
    }
    rc = 0;
out:
    buf_free(&carry);
    free(chunk);
    return rc;
}
