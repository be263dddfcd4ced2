/*
 * unit: the smallest test harness that does the job. UNIT_TEST(name) defines
 * a test that registers itself; CHECK records a failure with file and line
 * and goes on; main.c runs every test and exits non-zero on any failure.
 */
#ifndef UNIT_H
#define UNIT_H

#include <stdio.h>
#include <string.h>

struct unit_test {
    const char *name;
    void (*fn)(void);
    struct unit_test *next;
};

extern int unit_failures;
void unit_register(struct unit_test *t);

#define UNIT_TEST(name)                                                                                                \
    static void name(void);                                                                                            \
    static struct unit_test name##_reg = {#name, name, NULL};                                                          \
    __attribute__((constructor)) static void name##_ctor(void)                                                         \
    {                                                                                                                  \
        unit_register(&name##_reg);                                                                                    \
    }                                                                                                                  \
    static void name(void)

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            unit_failures++;                                                                                           \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                          \
        }                                                                                                              \
    } while (0)

#define CHECK_STR(got, want)                                                                                           \
    do {                                                                                                               \
        const char *g_ = (got), *w_ = (want);                                                                          \
        if (g_ == NULL || strcmp(g_, w_) != 0) {                                                                       \
            unit_failures++;                                                                                           \
            fprintf(stderr, "  FAIL %s:%d: %s\n    got  %s\n    want %s\n", __FILE__, __LINE__, #got,                  \
                    g_ ? g_ : "(null)", w_);                                                                           \
        }                                                                                                              \
    } while (0)

#define CHECK_INT(got, want)                                                                                           \
    do {                                                                                                               \
        long long g_ = (long long)(got), w_ = (long long)(want);                                                       \
        if (g_ != w_) {                                                                                                \
            unit_failures++;                                                                                           \
            fprintf(stderr, "  FAIL %s:%d: %s = %lld, want %lld\n", __FILE__, __LINE__, #got, g_, w_);                 \
        }                                                                                                              \
    } while (0)

/* Write text to a fresh file under the test's temp folder; returns its path (static buffer rotation). */
const char *unit_file(const char *name, const char *text, int mode);

#endif
