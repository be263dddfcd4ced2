/*
 * log: the service log, one JSON object per line on stderr
 * ({"ts","level","msg"[,"request_id"]}). It is for operators, separate from
 * the audit log. Messages say what failed and with which input; callers never
 * pass a secret, a token or a signature.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

/* "debug", "info", "warn", "error" → level; -1 when unknown. */
int log_level_parse(const char *s);
void log_set_level(int level);
void log_msg(int level, const char *request_id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_info(...) log_msg(LOG_LVL_INFO, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, NULL, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, NULL, __VA_ARGS__)

#endif
