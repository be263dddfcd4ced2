/*
 * clock: wall and monotonic time in milliseconds, and RFC 3339 text, in one
 * place so that audit entries, tokens and signatures agree on what "now" is.
 */
#ifndef GW_CLOCK_H
#define GW_CLOCK_H

#include <stddef.h>
#include <stdint.h>

int64_t clock_wall_ms(void);
int64_t clock_mono_ms(void);
/* "2026-11-28T11:48:04.123Z" into out (at least 32 bytes). */
void clock_rfc3339_ms(char *out, size_t outlen, int64_t wall_ms);
/* "2026-11-28T11:48:04Z" (the Alibaba Timestamp form) into out (>= 21 bytes). */
void clock_iso8601_s(char *out, size_t outlen, int64_t wall_ms);
/* Parse RFC 3339 ("...Z" or "+hh:mm", optional fraction) to ms; -1 on error. */
int clock_parse_rfc3339(const char *s, int64_t *out_ms);

#endif
