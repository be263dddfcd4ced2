/*
 * revread: a file's complete lines, last first, read backwards in chunks,
 * so that the end of a large audit file costs what the end holds, not the
 * whole file. Used by the audit writer at start (where does the chain
 * stand) and by GET /audit (newest entries first).
 */
#ifndef GW_REVREAD_H
#define GW_REVREAD_H

#include <stddef.h>
#include <sys/types.h>

/* One line (without its newline); return nonzero to stop. */
typedef int (*rev_line_fn)(void *arg, const char *line, size_t len);

/*
 * Call fn for each line of the first size bytes of fd, last first. Bytes
 * after the last newline (a line still being written, or torn) are not a
 * line and are skipped. Lines longer than max are an error. Returns 1 when
 * fn stopped the walk, 0 at the start of the file, -1 on errors.
 */
int rev_lines(int fd, off_t size, size_t max, rev_line_fn fn, void *arg);
/* The offset just after the last newline in the first size bytes of fd (0
 * when there is none): where the complete lines end. -1 on read errors. */
off_t rev_line_end(int fd, off_t size);

#endif
