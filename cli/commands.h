/*
 * commands: the operator CLI's subcommand table.
 *
 * `minicrm <command> [args]`: main.c loads the configuration (shared flags --config/--set work
 * before or after the command word) and dispatches to one cmd_* function per command, each in
 * its own file (cli/cmd_<name>.c). A command returns the process exit status: 0 success,
 * 1 the operation failed, 2 bad usage. Adding a command = one file + one row in main.c.
 */
#ifndef MINICRM_CLI_COMMANDS_H
#define MINICRM_CLI_COMMANDS_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct cli_ctx {
    minicrm_config *cfg;
    int argc;    /* words after the command name (flags included, --config/--set removed) */
    char **argv; /* argv[0] is the command name */
    bool help;   /* --help was given: print the command's usage and return 0 */
} cli_ctx;

typedef int (*cli_fn)(cli_ctx *ctx);

/* A command made of subcommands (`minicrm keys create|list|revoke`): one row per subcommand. */
typedef struct cli_sub {
    const char *name;
    cli_fn fn;
} cli_sub;
/* Run the subcommand ctx->argv[1] of command `cmd` from subs (ended by a NULL name): --help
 * prints usage to stdout (0); a missing or unknown subcommand prints it to stderr (2). */
int cli_dispatch(cli_ctx *ctx, const char *cmd, const cli_sub *subs, void (*usage_of)(FILE *f));

int cmd_config(cli_ctx *ctx);
int cmd_up(cli_ctx *ctx);
int cmd_keys(cli_ctx *ctx);
int cmd_queues(cli_ctx *ctx);
int cmd_dlq(cli_ctx *ctx);
int cmd_seed(cli_ctx *ctx);
int cmd_demo(cli_ctx *ctx);
int cmd_campaigns(cli_ctx *ctx);
int cmd_suppressions(cli_ctx *ctx);

#endif
