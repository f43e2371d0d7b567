/* minicrm seed: it writes through the API (validation, atomic spend updates), and the same seed
 * gives the same data in two separate stores; a re-run finds its customers already there. */
#include "apitest.h"
#include "test.h"
#include "testenv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Run `minicrm seed ARGS` (env from apitest: MONGO_URI, PORT); returns its exit status and
 * its last output line in `line`. */
static int run_seed(const char *args, char *line, size_t n)
{
    char cmd[1024], out[16384];
    snprintf(cmd, sizeof cmd, "'%s' seed --no-progress %s 2>&1", testenv_bin("minicrm"), args);
    int st = testenv_run_cmd(cmd, out, sizeof out);
    size_t from = strlen(out);
    if (from > 0 && out[from - 1] == '\n')
        from--; /* the last line's own newline */
    while (from > 0 && out[from - 1] != '\n')
        from--;
    snprintf(line, n, "%s", out + from);
    return st;
}

static json_t *get_all(apitest *t, const char *path)
{
    apitest_resp r;
    const char *h[] = {apitest_admin_auth(t), NULL};
    if (apitest_request(t, "GET", path, h, NULL, 0, &r) != 0 || r.status != 200) {
        apitest_resp_release(&r);
        return NULL;
    }
    json_t *j = json_incref(r.json);
    apitest_resp_release(&r);
    return j;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "name|email|phone|spend" per customer, sorted by email, as one string (caller frees). */
static char *fingerprint(json_t *customers)
{
    size_t n = json_array_size(customers);
    char **rows = calloc(n ? n : 1, sizeof *rows);
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(customers, i);
        char row[512];
        snprintf(row, sizeof row, "%s|%s|%s|%.2f", json_string_value(json_object_get(c, "name")),
                 json_string_value(json_object_get(c, "email")),
                 json_string_value(json_object_get(c, "phone")),
                 json_number_value(json_object_get(c, "total_spend")));
        rows[i] = strdup(row);
    }
    qsort(rows, n, sizeof *rows, cmp_str);
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(rows[i]) + 1;
    char *out = calloc(1, len);
    for (size_t i = 0; i < n; i++) {
        strcat(out, rows[i]);
        strcat(out, "\n");
        free(rows[i]);
    }
    free(rows);
    return out;
}

/* Seed one fresh system and return its fingerprint; checks the data on the way. */
static char *seed_fresh(int *ok)
{
    apitest t;
    char line[1024];
    *ok = 0;
    if (apitest_start(&t, NULL) != 0)
        return NULL;
    char *fp = NULL;
    int st = run_seed("--customers 60 --orders 150 --seed 7", line, sizeof line);
    if (st != 0) {
        fprintf(stderr, "  seed failed (%d): %s", st, line);
        goto out;
    }
    json_t *customers = get_all(&t, "/customers?limit=1000");
    json_t *orders = get_all(&t, "/orders?limit=1000");
    if (!customers || !orders || json_array_size(customers) != 60 ||
        json_array_size(orders) != 150) {
        fprintf(stderr, "  expected 60 customers and 150 orders, got %zu and %zu\n",
                json_array_size(customers), json_array_size(orders));
        json_decref(customers);
        json_decref(orders);
        goto out;
    }
    /* Spend = sum of completed orders per customer (the API's atomic update did it). */
    double spend_customers = 0, spend_orders = 0;
    size_t i;
    json_t *v;
    json_array_foreach(customers, i, v) spend_customers +=
        json_number_value(json_object_get(v, "total_spend"));
    json_array_foreach(orders, i, v)
    {
        if (!strcmp(json_string_value(json_object_get(v, "status")), "completed"))
            spend_orders += json_number_value(json_object_get(v, "amount"));
    }
    if (spend_customers < spend_orders - 0.01 || spend_customers > spend_orders + 0.01) {
        fprintf(stderr, "  total_spend %.2f != completed orders %.2f\n", spend_customers,
                spend_orders);
    } else {
        /* A second run of the same seed creates nothing new. */
        st = run_seed("--customers 60 --orders 0 --seed 7", line, sizeof line);
        if (st == 0 && strstr(line, "0 customers created, 60 already there"))
            *ok = 1;
        else
            fprintf(stderr, "  re-run: status %d: %s", st, line);
    }
    fp = fingerprint(customers);
    json_decref(customers);
    json_decref(orders);
out:
    apitest_stop(&t);
    return fp;
}

TEST(reproducible_through_the_api)
{
    int ok1, ok2;
    char *a = seed_fresh(&ok1);
    char *b = seed_fresh(&ok2);
    CHECK(a && b);
    CHECK(ok1 && ok2);
    CHECK_MSG(strcmp(a, b) == 0, "two stores seeded with seed 7 differ:\n%s---\n%s", a, b);
    /* Sanity: 60 distinct customers, all with a phone and an email of the seed. */
    CHECK_STR_CONTAINS(a, ".7.0@");
    free(a);
    free(b);
}

TEST_MAIN(TEST_ENTRY(reproducible_through_the_api))
