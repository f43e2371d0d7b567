/* minicrm up: placeholder until the one-command-up issue lands. */
#include "commands.h"

#include <stdio.h>

int cmd_up(cli_ctx *ctx)
{
    (void)ctx;
    fprintf(stderr, "minicrm up: not implemented yet\n");
    return 1;
}
