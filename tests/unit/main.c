/*
 * Unit test runner: runs every registered test (or those named on the
 * command line) and reports failures.
 */
#include "unit.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int unit_failures;
static struct unit_test *tests, **tail = &tests;
static char tmpdir[64];

void unit_register(struct unit_test *t)
{
    *tail = t;
    tail = &t->next;
}

const char *unit_file(const char *name, const char *text, int mode)
{
    static char paths[8][256];
    static int next;
    char *p = paths[next++ % 8];
    FILE *f;

    snprintf(p, 256, "%s/%s", tmpdir, name);
    unlink(p);
    f = fopen(p, "w");
    if (f == NULL)
        return p;
    fputs(text, f);
    fclose(f);
    chmod(p, (mode_t)mode);
    return p;
}

int main(int argc, char **argv)
{
    int ran = 0, failed_tests = 0;
    char cmd[128];

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/gw-unit-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return 1;
    for (struct unit_test *t = tests; t != NULL; t = t->next) {
        int before = unit_failures, want = argc < 2;
        for (int i = 1; i < argc; i++)
            want |= strcmp(argv[i], t->name) == 0;
        if (!want)
            continue;
        t->fn();
        ran++;
        if (unit_failures != before) {
            failed_tests++;
            fprintf(stderr, "FAIL %s\n", t->name);
        }
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    printf("unit: %d tests, %d failed, %d checks failed\n", ran, failed_tests, unit_failures);
    return unit_failures ? 1 : 0;
}
