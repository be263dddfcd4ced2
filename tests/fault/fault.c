/*
 * fault: an LD_PRELOAD shim that makes the audit writer's system calls fail
 * on demand, for the black-box tests of its failure paths
 * (tests/blackbox/test_audit_faults.py). Each fault is armed by a trigger
 * file named in an environment variable: while the file exists the call
 * fails. The file may hold "FAIL" or "SKIP FAIL": let SKIP calls pass, then
 * fail FAIL calls in a row (empty: fail one); it is removed when done.
 *
 *   FAULT_FDATASYNC=path     fdatasync() fails with EIO
 *   FAULT_WRITE_CP=path      a write() of a checkpoint line fails with ENOSPC, nothing written
 *   FAULT_SLOW_OPENDIR=path  opendir() first sleeps 1.5 s (GET /audit racing a rotation)
 *   FAULT_NOSYNC=1           fdatasync() returns 0 at once, syncing nothing: for the
 *                            benchmark's attribution row only (BENCH_ATTRIBUTION=1),
 *                            never a configuration of the product
 *
 * Built without the sanitizers (make builds $(BUILD)/fault.so).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;

static ssize_t (*real_write)(int, const void *, size_t);
static int no_sync; /* FAULT_NOSYNC set */

/* 1 when the fault named by env is armed (and count one use of it). */
static int fault_take(const char *env)
{
    const char *path = getenv(env);
    char text[64], *end;
    long skip = 0, n = 1;
    int fd, rc = 0;
    ssize_t len;

    if (path == NULL || access(path, F_OK) != 0)
        return 0;
    pthread_mutex_lock(&fault_mu);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        goto out;
    len = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (len > 0) {
        text[len] = '\0';
        n = strtol(text, &end, 10);
        if (*end == ' ') {
            skip = n;
            n = strtol(end + 1, NULL, 10);
        }
    }
    rc = skip == 0;
    if (skip > 0 || n > 1) {
        fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd >= 0) {
            if (skip > 0)
                len = snprintf(text, sizeof(text), "%ld %ld\n", skip - 1, n);
            else
                len = snprintf(text, sizeof(text), "%ld\n", n - 1);
            if (real_write(fd, text, (size_t)len) < 0) {
                /* The fault then fires once more than asked: harmless in a test. */
            }
            close(fd);
        }
    } else if (unlink(path) != 0) {
        rc = 0;
    }
out:
    pthread_mutex_unlock(&fault_mu);
    return rc;
}

__attribute__((constructor)) static void fault_init(void)
{
    const char *ns = getenv("FAULT_NOSYNC");

    real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    no_sync = ns != NULL && *ns != '\0';
}

int fdatasync(int fd)
{
    static int (*real)(int);

    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (no_sync)
        return 0;
    if (fault_take("FAULT_FDATASYNC")) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    static const char cp[] = "\"event\":\"checkpoint\"";

    if (real_write == NULL)
        real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (n >= sizeof(cp) - 1 && memmem(buf, n, cp, sizeof(cp) - 1) != NULL && fault_take("FAULT_WRITE_CP")) {
        errno = ENOSPC;
        return -1;
    }
    return real_write(fd, buf, n);
}

DIR *opendir(const char *name)
{
    static DIR *(*real)(const char *);

    if (real == NULL)
        real = (DIR * (*)(const char *)) dlsym(RTLD_NEXT, "opendir");
    if (fault_take("FAULT_SLOW_OPENDIR"))
        usleep(1500000);
    return real(name);
}
