/*
 * progargs: the common start of every minicrm program.
 *
 * Parses the flags every program shares (--config FILE, --set section.key=value, --help) and the
 * program's own flags, each of which names the setting it sets ("--port" -> "api.port"), so a
 * flag is just the last configuration layer. Arguments that are not flags are kept in `rest`
 * (the CLI's subcommand words). prog_start() then loads the configuration and sets up logging.
 *
 * Ownership: a progargs owns its arrays (not the strings, which stay in argv); free with
 * progargs_release().
 */
#ifndef MINICRM_PROGARGS_H
#define MINICRM_PROGARGS_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct progargs_flag {
    const char *flag; /* "--port" */
    const char *path; /* "api.port"; NULL: a boolean program flag kept in `rest` */
    const char *help; /* one line for --help */
} progargs_flag;

typedef struct progargs {
    const char *config_path;
    char **assign; /* "section.key=value", built from --set and program flags (owned) */
    size_t nassign;
    char **rest; /* positional words and unmapped flags, in order (array owned) */
    size_t nrest;
    bool help;
} progargs;

/* Returns 0, or -1 with a message in err (unknown flag, missing value). */
int progargs_parse(progargs *pa, int argc, char **argv, const progargs_flag *flags, size_t nflags,
                   bool allow_unknown, char *err, size_t errlen);
void progargs_release(progargs *pa);

/* Print the usage: `synopsis`, the program's flags and the shared ones. */
void progargs_usage(const char *prog, const char *synopsis, const progargs_flag *flags,
                    size_t nflags);

/* log_init + parse + cfg_init + cfg_load + logging settings. On failure prints
 * "prog: message" on stderr and returns the exit status to use (2); 0 on success; 1 if
 * --help was printed (the program should exit 0). */
int prog_start(const char *prog, const char *synopsis, int argc, char **argv,
               const progargs_flag *flags, size_t nflags, bool allow_unknown, minicrm_config *cfg,
               progargs *pa);

#endif
