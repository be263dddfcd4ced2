/*
 * buf: a growable byte buffer with a hard cap, in the spirit of curl's dynbuf.
 * Every buffer that holds outside input or builds output has a maximum size;
 * an append that would pass it fails and leaves the buffer as it was.
 * The memory is always NUL-terminated so text can be used as a C string.
 */
#ifndef GW_BUF_H
#define GW_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *p;    /* owned; NULL until the first append */
    size_t len; /* bytes used, excluding the terminating NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* the cap: len never exceeds it */
};

void buf_init(struct buf *b, size_t max);
/* Free the memory; buf_wipe also overwrites it first (secrets). NULL-safe. */
void buf_free(struct buf *b);
void buf_wipe(struct buf *b);
void buf_reset(struct buf *b);
/* Cut b back to its first len bytes (len <= b->len): undo appends after a mark. */
void buf_truncate(struct buf *b, size_t len);
int buf_add(struct buf *b, const void *data, size_t len);
/* Make room for more bytes (plus the NUL) without adding them; 0 or -1. */
int buf_grow(struct buf *b, size_t more);
int buf_adds(struct buf *b, const char *s);
int buf_addc(struct buf *b, char c);
/* A decimal number, without printf (these are on every request's path). */
int buf_addu(struct buf *b, unsigned long long v);
int buf_addi(struct buf *b, long long v);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/*
 * Append s (len bytes, any content) as a quoted JSON string. Control
 * characters are escaped and bytes that are not valid UTF-8 become U+FFFD,
 * so the result is valid JSON whatever the input.
 */
int buf_json_str(struct buf *b, const char *s, size_t len);
/* Length of the valid UTF-8 sequence at s (1-4), or 0 when it is not valid. */
size_t buf_utf8_len(const unsigned char *s, size_t avail);
/*
 * Append the whole file at path. -1 with errno set on failure (EFBIG when
 * the file is larger than the cap). The chunk buffer is wiped, so this is
 * safe for secret files when followed by buf_wipe.
 */
int buf_read_file(struct buf *b, const char *path);
/* The same from an open descriptor, to its end (fd stays open). */
int buf_read_fd(struct buf *b, int fd);
/*
 * Append s (len bytes, any content) to out so that it is safe on a terminal
 * and unambiguous: printable ASCII is kept, '\' becomes "\\", bytes below
 * 0x20, 0x7F and bytes that are not valid UTF-8 become "\xNN", and the C1
 * controls and the Unicode bidi and line-separator format characters become
 * "\uNNNN". 0, or -1 when out's cap is reached (out is then unchanged).
 */
int buf_term_str(struct buf *out, const char *s, size_t len);

/* Copy the C string src into dst (dstlen > 0 bytes), cut to fit and always
 * NUL-terminated: snprintf(dst, dstlen, "%s", src) without the format
 * machinery (it runs several times on every request). The length copied. */
size_t buf_copy(char *dst, size_t dstlen, const char *src);

/* Hand the memory to the caller (who frees it) and reset the buffer. */
char *buf_take(struct buf *b);

#endif
