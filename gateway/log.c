/*
 * log: JSON-lines service log on stderr (see log.h). Each line is written
 * with a single write(2) so lines from the audit thread and the loop never
 * interleave.
 */
#include "log.h"

#include "buf.h"
#include "clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int log_min = LOG_LVL_INFO;
static const char *const log_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, log_names[i]) == 0)
            return i;
    return -1;
}

void log_set_level(int level)
{
    log_min = level;
}

void log_msg(int level, const char *request_id, const char *fmt, ...)
{
    char ts[40], msg[1024];
    struct buf b;
    va_list ap;
    int n;

    if (level < log_min)
        return;
    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    clock_rfc3339_ms(ts, sizeof(ts), clock_wall_ms());
    buf_init(&b, 4096);
    buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, log_names[level]);
    buf_json_str(&b, msg, strlen(msg));
    if (request_id != NULL) {
        buf_adds(&b, ",\"request_id\":");
        buf_json_str(&b, request_id, strlen(request_id));
    }
    buf_adds(&b, "}\n");
    if (b.p != NULL && write(STDERR_FILENO, b.p, b.len) < 0) {
        /* Nowhere left to report a failed log write. */
    }
    buf_free(&b);
}
