/*
 * web_env: runs one browser test script against the whole system on private services.
 *
 *   web_env RUNNER WEB_ROOT NODE_CACHE ARTIFACTS SCRIPT
 *
 * Starts redis-server + minicrm-devdb and the real programs (minicrm-api serving WEB_ROOT,
 * minicrm-worker, minicrm-receipts, minicrm-vendor-sim) through tests/pipeline's harness, seeds
 * MINICRM_WEB_CUSTOMERS customers (default 200; customer i spends (i * 37) % 10000, see
 * pipeharness.h) with the vendor's receipt events on (3% bounces, 1% complaints, 35% opens, 8%
 * clicks; the caller's environment wins), makes an admin and a staff API key the operator's way
 * (`minicrm keys create`), then runs `bash RUNNER NODE_CACHE SCRIPT` (run_browser_test.sh: installs
 * playwright-core, runs node) with
 *   MINICRM_WEB_BASE        http://127.0.0.1:<port>
 *   MINICRM_WEB_ADMIN_KEY   an admin key (mck_...)
 *   MINICRM_WEB_STAFF_KEY   a staff key
 *   MINICRM_WEB_ARTIFACTS   where screenshots go (created)
 *   MINICRM_WEB_LOGS        the directory of the programs' logs
 * and exits with the script's status (77: skipped). Everything is stopped at the end.
 * Skips (77) at once, before starting anything, when chromium or npm is missing.
 */
#include "pipeharness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static bool on_path(const char *prog)
{
    const char *path = getenv("PATH");
    for (const char *d = path ? path : "/usr/bin:/bin"; *d;) {
        size_t len = strcspn(d, ":");
        char p[4200];
        snprintf(p, sizeof p, "%.*s/%s", (int)len, d, prog);
        if (len > 0 && access(p, X_OK) == 0)
            return true;
        d += len + (d[len] == ':');
    }
    return false;
}

static void tail_log(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "tail -n 30 '%s' >&2", path);
    if (system(cmd) != 0)
        fprintf(stderr, "web_env: cannot show %s\n", path);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: web_env RUNNER WEB_ROOT NODE_CACHE ARTIFACTS SCRIPT\n");
        return 2;
    }
    const char *runner = argv[1], *web_root = argv[2], *cache = argv[3], *artifacts = argv[4],
               *script = argv[5];
    const char *chromium =
        getenv("MINICRM_CHROMIUM") ? getenv("MINICRM_CHROMIUM") : "/usr/bin/chromium";
    if (access(chromium, X_OK) != 0) {
        printf("SKIP: %s not found: the browser tests need Debian's chromium "
               "(scripts/install-deps.sh installs it)\n",
               chromium);
        return 77;
    }
    if (!on_path("node") || !on_path("npm")) {
        printf("SKIP: node or npm not found: the browser tests need them to install "
               "playwright-core (scripts/install-deps.sh installs nodejs)\n");
        return 77;
    }
    if (mkdir(artifacts, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "web_env: cannot create %s: %s\n", artifacts, strerror(errno));
        return 1;
    }
    setenv("MINICRM_API_WEB_ROOT", web_root, 1);
    setenv("MINICRM_CHROMIUM", chromium, 1);
    /* Receipt events on (the harness turns them off unless asked), so the campaign pages show
     * bounced, complained, opened and clicked as a real vendor makes them. */
    setenv("MINICRM_VENDOR_SIM_BOUNCE_RATE", "0.03", 0);
    setenv("MINICRM_VENDOR_SIM_COMPLAINT_RATE", "0.01", 0);
    setenv("MINICRM_VENDOR_SIM_OPEN_RATE", "0.35", 0);
    setenv("MINICRM_VENDOR_SIM_CLICK_RATE", "0.08", 0);

    pipeh h;
    int status = 1;
    if (pipeh_start(&h) != 0)
        return 1;
    const char *nc = getenv("MINICRM_WEB_CUSTOMERS");
    int customers = nc ? (int)strtol(nc, NULL, 10) : 200;
    char admin[128], staff[128], base[64];
    if (pipeh_seed(&h, customers > 0 ? customers : 200) != 0 || pipeh_start_all(&h) != 0 ||
        pipeh_make_key(&h, "admin", "browser-admin", admin, sizeof admin) != 0 ||
        pipeh_make_key(&h, "staff", "browser-staff", staff, sizeof staff) != 0) {
        fprintf(stderr, "web_env: the system did not start\n");
        tail_log(pipeh_logfile(&h, PH_API));
        goto out;
    }
    snprintf(base, sizeof base, "http://127.0.0.1:%d", h.api_port);
    setenv("MINICRM_WEB_BASE", base, 1);
    setenv("MINICRM_WEB_ADMIN_KEY", admin, 1);
    setenv("MINICRM_WEB_STAFF_KEY", staff, 1);
    setenv("MINICRM_WEB_ARTIFACTS", artifacts, 1);
    setenv("MINICRM_WEB_LOGS", h.env.dir, 1);

    pid_t pid = fork();
    if (pid == 0) {
        execlp("bash", "bash", runner, cache, script, (char *)NULL);
        _exit(127);
    }
    int ws = 0;
    if (pid < 0 || waitpid(pid, &ws, 0) < 0) {
        fprintf(stderr, "web_env: cannot run %s\n", runner);
        goto out;
    }
    status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 1;
    if (status != 0 && status != 77) {
        fprintf(stderr, "web_env: %s failed (%d); the API's log ends:\n", script, status);
        tail_log(pipeh_logfile(&h, PH_API));
    }
out:
    pipeh_stop(&h);
    return status;
}
