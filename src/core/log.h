/* One error-reporting path: every message is one line on stderr, prefixed "hyve: ". */
#ifndef HYVE_LOG_H
#define HYVE_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
void log_set_prefix(const char *prefix);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/*
 * For code that reports a problem to its caller instead of logging it (file
 * parsers, whose callers decide how to say it): formats the message into
 * err and returns -1, so `return set_error(err, errlen, ...)` ends a check.
 */
int set_error(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Exit statuses, as bhyve(8) documents them. */
enum hyve_exit {
	HYVE_EXIT_REBOOT = 0,
	HYVE_EXIT_POWEROFF = 1,
	HYVE_EXIT_HALT = 2,
	HYVE_EXIT_TRIPLEFAULT = 3,
	HYVE_EXIT_ERROR = 4,
};

#endif
