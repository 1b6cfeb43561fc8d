#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static enum log_level max_level = LOG_WARN;
static const char *prefix = "hyve";

void log_set_level(enum log_level level)
{
	max_level = level;
}

void log_set_prefix(const char *p)
{
	prefix = p;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error: ", "warning: ", "", "debug: " };
	char line[1024];
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* A message must stay one line even when it quotes user input. */
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	/* stdio may be in raw mode: "\r\n" keeps the terminal tidy either way. */
	fprintf(stderr, "%s: %s%s\r\n", prefix, names[level], line);
}

int set_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}
