/*
 * shardtarget: see shardtarget.h. The environment is file-static so that *url stays valid for
 * the whole run.
 */
#include "shardtarget.h"

#include "clusterenv.h"
#include "testenv.h"

static clusterenv cenv;
static testenv env;

int shardtarget_run(bool on_cluster, const char *file, const test_case *cases, size_t n, int argc,
                    char **argv, rconn **rc, const char **url)
{
    if (on_cluster) {
        if (clusterenv_start(&cenv) != 0)
            return test_skip_program("no local Redis Cluster could be started");
        *url = cenv.url;
    } else {
        if (testenv_start(&env, TESTENV_REDIS) != 0)
            return 1;
        *url = env.redis_url;
    }
    char err[256];
    *rc = rconn_new(*url, 5000, err, sizeof err);
    int status = 1;
    if (*rc) {
        status = test_run_all(file, cases, n, argc, argv);
        rconn_free(*rc);
        *rc = NULL;
    }
    if (on_cluster)
        clusterenv_stop(&cenv);
    else
        testenv_stop(&env);
    return status;
}
