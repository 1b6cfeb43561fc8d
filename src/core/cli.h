/* The hyve command line: every option fills the configuration tree. */
#ifndef HYVE_CLI_H
#define HYVE_CLI_H

#include <stdio.h>

struct config;

enum cli_result { CLI_RUN, CLI_EXIT_OK, CLI_ERROR };

/* Parses argv into cfg; CLI_EXIT_OK after -h; CLI_ERROR after a one-line error. */
enum cli_result cli_parse(int argc, char **argv, struct config *cfg);
/*
 * Checks the whole tree against the declared options (src/core/options.h):
 * every key known, every value well-formed, device models known. 0, or -1
 * after a one-line error.
 */
int cli_validate(const struct config *cfg);
void cli_usage(FILE *out);

#endif
