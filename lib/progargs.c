/* progargs: see progargs.h. */
#include "progargs.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int push(char ***arr, size_t *n, char *s)
{
    char **grown = realloc(*arr, (*n + 1) * sizeof **arr);
    if (!grown)
        return -1;
    *arr = grown;
    grown[(*n)++] = s;
    return 0;
}

int progargs_parse(progargs *pa, int argc, char **argv, const progargs_flag *flags, size_t nflags,
                   bool allow_unknown, char *err, size_t errlen)
{
    memset(pa, 0, sizeof *pa);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *inline_val = NULL;
        char name[64];
        const char *eq = strchr(a, '=');
        if (a[0] == '-' && a[1] == '-' && eq && (size_t)(eq - a) < sizeof name) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
            inline_val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
        }
        if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
            pa->help = true;
            continue;
        }
        if (!strcmp(name, "--config") || !strcmp(name, "--set")) {
            const char *v = inline_val;
            if (!v) {
                if (i + 1 >= argc) {
                    snprintf(err, errlen, "%s needs a value", name);
                    return -1;
                }
                v = argv[++i];
            }
            if (!strcmp(name, "--config"))
                pa->config_path = v;
            else {
                char *copy = strdup(v);
                if (!copy || push(&pa->assign, &pa->nassign, copy) != 0) {
                    free(copy);
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
            }
            continue;
        }
        const progargs_flag *f = NULL;
        for (size_t k = 0; k < nflags; k++)
            if (!strcmp(flags[k].flag, name))
                f = &flags[k];
        if (f && f->path) {
            const char *v = inline_val;
            if (!v) {
                if (i + 1 >= argc) {
                    snprintf(err, errlen, "%s needs a value", name);
                    return -1;
                }
                v = argv[++i];
            }
            size_t n = strlen(f->path) + strlen(v) + 2;
            char *as = malloc(n);
            if (!as || push(&pa->assign, &pa->nassign, as) != 0) {
                free(as);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            snprintf(as, n, "%s=%s", f->path, v);
            continue;
        }
        if (!f && a[0] == '-' && a[1] != '\0' && !allow_unknown) {
            snprintf(err, errlen, "unknown flag %s (see --help)", a);
            return -1;
        }
        if (push(&pa->rest, &pa->nrest, argv[i]) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

void progargs_release(progargs *pa)
{
    if (!pa)
        return;
    for (size_t i = 0; i < pa->nassign; i++)
        free(pa->assign[i]);
    free(pa->assign);
    free(pa->rest);
    memset(pa, 0, sizeof *pa);
}

void progargs_usage(const char *prog, const char *synopsis, const progargs_flag *flags,
                    size_t nflags)
{
    printf("usage: %s %s\n\noptions:\n", prog, synopsis);
    for (size_t i = 0; i < nflags; i++) {
        printf("  %-24s %s%s%s%s\n", flags[i].flag, flags[i].help, flags[i].path ? " (" : "",
               flags[i].path ? flags[i].path : "", flags[i].path ? ")" : "");
    }
    printf("  %-24s %s\n", "--config FILE", "configuration file (default config/minicrm.cfg)");
    printf("  %-24s %s\n", "--set SECTION.KEY=V", "set any setting (repeatable)");
    printf("  %-24s %s\n", "--help", "this text");
    printf("\nSettings are read from the file, then .env, then the environment\n"
           "(MINICRM_SECTION_KEY), then flags; see README.md, section Configuration.\n");
}

int prog_start(const char *prog, const char *synopsis, int argc, char **argv,
               const progargs_flag *flags, size_t nflags, bool allow_unknown, minicrm_config *cfg,
               progargs *pa)
{
    char err[512];
    log_init(prog);
    if (progargs_parse(pa, argc, argv, flags, nflags, allow_unknown, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        progargs_release(pa);
        return 2;
    }
    if (pa->help) {
        progargs_usage(prog, synopsis, flags, nflags);
        progargs_release(pa);
        return 1;
    }
    if (cfg_init(cfg) != 0) {
        fprintf(stderr, "%s: cannot initialise configuration\n", prog);
        progargs_release(pa);
        return 2;
    }
    if (cfg_load(cfg, pa->config_path, pa->assign, pa->nassign, err, sizeof err) != 0 ||
        cfg_apply_logging(cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s: configuration error: %s\n", prog, err);
        cfg_release(cfg);
        progargs_release(pa);
        return 2;
    }
    return 0;
}
