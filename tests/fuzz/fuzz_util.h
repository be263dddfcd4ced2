/*
 * fuzz_util: what every harness in tests/fuzz/ shares: an invariant check
 * that aborts (libFuzzer then saves the input as a crash), a copy of the
 * input in its own exact-size allocation (so AddressSanitizer sees a read one
 * byte past a slice), and a memfd that stands in for a file on disk (the
 * loaders take paths; nothing is ever created in the file system).
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* An invariant the code under test promises; a violation is a finding. */
#define FUZZ_CHECK(cond)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);                            \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

/*
 * FUZZ_VERBOSE=1 in the environment: say what each input did (for writing
 * seeds: `FUZZ_VERBOSE=1 build/fuzz/fuzz_jwt SEED-FILES`).
 */
static inline int fuzz_verbose(void)
{
    static int v = -1;

    if (v < 0)
        v = getenv("FUZZ_VERBOSE") != NULL && getenv("FUZZ_VERBOSE")[0] == '1';
    return v;
}

#define FUZZ_SAY(...)                                                                                                  \
    do {                                                                                                               \
        if (fuzz_verbose())                                                                                            \
            fprintf(stderr, __VA_ARGS__);                                                                              \
    } while (0)

/* len bytes of p in a fresh allocation of exactly len (+1 with a NUL). Caller frees. */
static inline char *fuzz_dup(const void *p, size_t len, int nul)
{
    size_t n = nul ? len + 1 : len;
    char *s = malloc(n > 0 ? n : 1); /* malloc(0) may return NULL */

    FUZZ_CHECK(s != NULL);
    if (len > 0)
        memcpy(s, p, len);
    if (nul)
        s[len] = '\0';
    return s;
}

/* base64url without padding of n bytes into out (4 * ceil(n / 3) + 1 bytes); returns the length. */
static inline size_t fuzz_b64url(char *out, const unsigned char *in, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = a[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = a[v & 63];
    }
    out[o] = '\0';
    return o;
}

/* A file that lives only in memory, reachable as /proc/self/fd/N. */
struct fuzz_file {
    int fd;
    char path[64];
};

/* Create it once (LLVMFuzzerInitialize); mode 0 keeps memfd's default 0777. */
static inline void fuzz_file_open(struct fuzz_file *f, const char *name, mode_t mode)
{
    f->fd = memfd_create(name, MFD_CLOEXEC);
    FUZZ_CHECK(f->fd >= 0);
    if (mode != 0)
        FUZZ_CHECK(fchmod(f->fd, mode) == 0);
    snprintf(f->path, sizeof(f->path), "/proc/self/fd/%d", f->fd);
}

/* Replace the content; every open() of f->path then reads exactly data. */
static inline void fuzz_file_set(struct fuzz_file *f, const void *data, size_t len)
{
    const char *p = data;
    size_t off = 0;

    FUZZ_CHECK(ftruncate(f->fd, 0) == 0);
    while (off < len) {
        ssize_t n = pwrite(f->fd, p + off, len - off, (off_t)off);
        FUZZ_CHECK(n > 0);
        off += (size_t)n;
    }
}

#endif
