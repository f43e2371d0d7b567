/*
 * minicrm: the operator CLI. See commands.h for how commands are added.
 */
#include "commands.h"
#include "progargs.h"
#include "queue.h"

#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name;
    cli_fn fn;
    const char *summary;
} command;

static const command commands[] = {
    {"up", cmd_up, "start the whole system on this machine (redis, devdb, api, workers)"},
    {"keys", cmd_keys, "API keys: create --role admin|staff [--name N], list, revoke ID|PREFIX"},
    {"queues", cmd_queues,
     "queue depths, in-flight, delayed, dead and throughput (--watch, --json)"},
    {"dlq", cmd_dlq, "dead letters: list|show|requeue|purge QUEUE [INDEX|--all]"},
    {"seed", cmd_seed,
     "create reproducible customers and orders through the API (--customers N --orders M)"},
    {"campaigns", cmd_campaigns,
     "campaigns: list, show ID, pause|resume|cancel ID, reschedule ID SEND_AT (--json)"},
    {"suppressions", cmd_suppressions,
     "suppression list: list, add EMAIL, remove EMAIL, import FILE.csv, rebuild"},
    {"demo", cmd_demo, "run one campaign end to end against a running 'up' and show its progress"},
    {"config", cmd_config, "print the effective configuration (--defaults, --table, --secrets)"},
};

static void usage(void)
{
    printf("usage: minicrm [--config FILE] [--set SECTION.KEY=VALUE]... COMMAND [ARGS]\n\n"
           "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %-12s %s\n", commands[i].name, commands[i].summary);
    printf("\n`minicrm COMMAND --help` describes a command.\n");
}

int cli_dispatch(cli_ctx *ctx, const char *cmd, const cli_sub *subs, void (*usage_of)(FILE *f))
{
    if (ctx->help) {
        usage_of(stdout);
        return 0;
    }
    if (ctx->argc < 2) {
        usage_of(stderr);
        return 2;
    }
    const char *sub = ctx->argv[1];
    for (const cli_sub *s = subs; s->name; s++)
        if (!strcmp(sub, s->name))
            return s->fn(ctx);
    fprintf(stderr, "minicrm %s: unknown subcommand %s\n", cmd, sub);
    usage_of(stderr);
    return 2;
}

int main(int argc, char **argv)
{
    minicrm_config cfg;
    progargs pa;
    /* Command flags are the command's business: unknown flags pass through in `rest`. --help
     * is also passed on when a command is named. */
    bool help = false;
    char *args[256];
    int nargs = 0;
    for (int i = 0; i < argc && nargs < 255; i++) {
        if (i > 0 && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")))
            help = true;
        else
            args[nargs++] = argv[i];
    }
    args[nargs] = NULL;
    int rc = prog_start("minicrm", "COMMAND", nargs, args, NULL, 0, true, &cfg, &pa);
    if (rc == 0 && pa.nrest == 0 && !help) {
        fprintf(stderr, "minicrm: no command given\n");
        usage();
        cfg_release(&cfg);
        progargs_release(&pa);
        return 2;
    }
    if (rc == 0 && pa.nrest == 0) {
        usage();
        if (rc == 0) {
            cfg_release(&cfg);
            progargs_release(&pa);
        }
        return 0;
    }
    if (rc != 0)
        return rc;
    const command *cmd = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(commands[i].name, pa.rest[0]))
            cmd = &commands[i];
    if (!cmd) {
        fprintf(stderr, "minicrm: unknown command '%s'\n", pa.rest[0]);
        usage();
        rc = 2;
    } else {
        queue_use_config(&cfg); /* queue.shards for queues, dlq */
        cli_ctx ctx = {.cfg = &cfg, .argc = (int)pa.nrest, .argv = pa.rest, .help = help};
        rc = cmd->fn(&ctx);
    }
    cfg_release(&cfg);
    progargs_release(&pa);
    return rc;
}
