/*
 * seed: realistic, reproducible customers and orders, written through the HTTP API (the same
 * validation, the same atomic total_spend/last_visit_date update as any client gets).
 *
 * Reproducible: customer i and order j are generated from splitmix64(seed, i) alone, so the
 * data does not depend on thread scheduling; the same seed gives the same people, emails,
 * amounts and dates (relative to the day it runs). Emails carry the seed and index, so seeds
 * do not collide; re-running one seed finds its customers already there (409) and says so.
 */
#ifndef MINICRM_CLI_SEED_H
#define MINICRM_CLI_SEED_H

#include "session.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct seed_opts {
    long customers;
    long orders;
    uint64_t seed;
    int concurrency;
    bool progress; /* draw a progress bar on stderr */
} seed_opts;

typedef struct seed_result {
    long created, existed, failed_customers;
    long orders_created, failed_orders;
    double seconds;
    char first_error[256];
} seed_result;

/* Run the seed against the session's API. 0 if every request succeeded (409 counts as
 * success: the customer exists), -1 otherwise (see res->first_error). */
int seed_run(const cli_session *s, const seed_opts *o, seed_result *res);

#endif
