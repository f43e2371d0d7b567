/*
 * minicrm seed: see seed.h. Requests are spread over `concurrency` threads, each with its own
 * keep-alive connection; items are claimed from an atomic counter, so the work stays balanced
 * and memory is one ObjectId per customer (orders need to name a customer).
 */
#include "commands.h"
#include "seed.h"
#include "timeutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const firsts[] = {
    "Aarav", "Ada",    "Alan",  "Amara", "Ana",   "Anika", "Arjun", "Ava",   "Bea",   "Ben",
    "Carla", "Chen",   "Dara",  "Diego", "Divya", "Elena", "Emil",  "Farah", "Grace", "Hana",
    "Ines",  "Ishaan", "Jonas", "Kavya", "Kenji", "Lara",  "Leo",   "Maya",  "Mei",   "Noah",
    "Nora",  "Omar",   "Priya", "Rahul", "Rosa",  "Sara",  "Tariq", "Vera",  "Yusuf", "Zoe"};
static const char *const lasts[] = {
    "Agarwal", "Berg",  "Costa",  "Das",  "Eriksen", "Fischer", "Garcia", "Gupta",
    "Hansen",  "Iyer",  "Jansen", "Khan", "Kumar",   "Lopez",   "Mehta",  "Novak",
    "Okafor",  "Patel", "Quinn",  "Rao",  "Rossi",   "Sato",    "Sharma", "Silva",
    "Tanaka",  "Usman", "Varga",  "Wang", "Xu",      "Yadav",   "Zhang",  "Nair"};
static const char *const domains[] = {"gmail.com",   "yahoo.com", "outlook.com",
                                      "example.com", "proton.me", "acme.io"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The k-th random number of item i in stream `stream` (customers 1, orders 2). */
static uint64_t rnd(uint64_t seed, int stream, long i, int k)
{
    return splitmix64(splitmix64(seed ^ ((uint64_t)stream << 56)) ^
                      splitmix64((uint64_t)i * 16 + (uint64_t)k));
}

typedef struct seed_run_state {
    const cli_session *s;
    const seed_opts *o;
    int64_t now_ms;
    char (*ids)[25]; /* created customer ids; "" when creation failed */
    atomic_long next_customer, next_order;
    atomic_long created, existed, failed_customers, orders_created, failed_orders;
    atomic_int phase; /* 0 customers, 1 orders */
    pthread_mutex_t err_lock;
    char first_error[256];
    long *created_index; /* indexes of created customers, filled between phases */
    long ncreated_index;
} seed_run_state;

/* Remember the first failure: what was requested, why, and the HTTP status. */
static void note_error(seed_run_state *st, const char *what, long status, const json_t *out,
                       const char *transport_err)
{
    const char *why = status < 0 ? transport_err : json_string_value(json_object_get(out, "error"));
    pthread_mutex_lock(&st->err_lock);
    if (!st->first_error[0])
        snprintf(st->first_error, sizeof st->first_error, "%s: %s (status %ld)", what,
                 why ? why : "?", status);
    pthread_mutex_unlock(&st->err_lock);
}

static json_t *make_customer(const seed_run_state *st, long i)
{
    uint64_t seed = st->o->seed;
    const char *first = firsts[rnd(seed, 1, i, 0) % COUNT(firsts)];
    const char *last = lasts[rnd(seed, 1, i, 1) % COUNT(lasts)];
    const char *domain = domains[rnd(seed, 1, i, 2) % COUNT(domains)];
    char name[96], email[160], phone[32], lvd[32];
    snprintf(name, sizeof name, "%s %s", first, last);
    snprintf(email, sizeof email, "%s.%s.%llu.%ld@%s", first, last, (unsigned long long)seed, i,
             domain);
    for (char *p = email; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    snprintf(phone, sizeof phone, "+1-555-%04llu",
             (unsigned long long)(rnd(seed, 1, i, 3) % 10000));
    /* A last visit somewhere in the past 400 days; orders move it forward. */
    int64_t days = (int64_t)(rnd(seed, 1, i, 4) % 400);
    time_format_iso8601(st->now_ms - days * 86400000LL, lvd);
    return json_pack("{s:s,s:s,s:s,s:s}", "name", name, "email", email, "phone", phone,
                     "last_visit_date", lvd);
}

static json_t *make_order(const seed_run_state *st, long j, const char *customer_id)
{
    uint64_t seed = st->o->seed;
    /* Amounts: mostly small, a long tail of big spenders (so min_spend rules split the set). */
    uint64_t r = rnd(seed, 2, j, 1);
    double base = 5.0 + (double)(r % 20000) / 100.0; /* 5 .. 205 */
    int tier = (int)(rnd(seed, 2, j, 2) % 100);
    double amount = tier < 70 ? base : tier < 95 ? base * 8 : base * 40;
    amount = (double)(long)(amount * 100) / 100.0;
    const char *status = rnd(seed, 2, j, 3) % 100 < 95 ? "completed" : "cancelled";
    char date[32];
    int64_t days = (int64_t)(rnd(seed, 2, j, 4) % 365);
    time_format_iso8601(st->now_ms - days * 86400000LL - (int64_t)(r % 86400000ULL), date);
    return json_pack("{s:s,s:f,s:s,s:s}", "customer_id", customer_id, "amount", amount, "status",
                     status, "date", date);
}

/* One phase of the seed: which items, how each is made and posted, and what an answer means. */
typedef struct seed_phase {
    const char *path;  /* "/customers" or "/orders" */
    atomic_long *next; /* the claim counter */
    long total;
    json_t *(*make)(const seed_run_state *st, long i); /* the body of item i */
    /* Account for the answer to item i. */
    void (*settle)(seed_run_state *st, long i, long status, const json_t *out, const char *err);
} seed_phase;

typedef struct phase_arg {
    seed_run_state *st;
    const seed_phase *ph;
} phase_arg;

static json_t *make_customer_i(const seed_run_state *st, long i)
{
    return make_customer(st, i);
}

static json_t *make_order_i(const seed_run_state *st, long j)
{
    long ci = st->created_index[rnd(st->o->seed, 2, j, 0) % (uint64_t)st->ncreated_index];
    return make_order(st, j, st->ids[ci]);
}

static void settle_customer(seed_run_state *st, long i, long status, const json_t *out,
                            const char *err)
{
    if (status == 201) {
        json_t *c = json_object_get(out, "customer");
        snprintf(st->ids[i], 25, "%s", json_string_value(json_object_get(c, "_id")));
        atomic_fetch_add(&st->created, 1);
    } else if (status == 409) {
        atomic_fetch_add(&st->existed, 1);
    } else {
        atomic_fetch_add(&st->failed_customers, 1);
        note_error(st, "POST /customers", status, out, err);
    }
}

static void settle_order(seed_run_state *st, long j, long status, const json_t *out,
                         const char *err)
{
    (void)j;
    if (status == 201) {
        atomic_fetch_add(&st->orders_created, 1);
    } else {
        atomic_fetch_add(&st->failed_orders, 1);
        note_error(st, "POST /orders", status, out, err);
    }
}

/* A worker thread of one phase: claim the next item, post it, settle the answer. */
static void *phase_thread(void *arg)
{
    phase_arg *pa = arg;
    seed_run_state *st = pa->st;
    const seed_phase *ph = pa->ph;
    httpc *h = cli_session_client(st->s);
    char err[256];
    if (!h)
        return NULL;
    for (;;) {
        long i = atomic_fetch_add(ph->next, 1);
        if (i >= ph->total)
            break;
        json_t *body = ph->make(st, i), *out = NULL;
        long status = httpc_json(h, "POST", ph->path, body, &out, err, sizeof err);
        ph->settle(st, i, status, out, err);
        json_decref(body);
        json_decref(out);
    }
    httpc_free(h);
    return NULL;
}

static void draw_bar(const char *what, long done, long total, double rate)
{
    int width = 30, fill = total > 0 ? (int)(width * done / total) : width;
    char bar[64];
    for (int k = 0; k < width; k++)
        bar[k] = k < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r%-9s [%s] %ld/%ld  %.0f/s   ", what, bar, done, total, rate);
}

/* Run phase `ph` on the configured number of threads while drawing its progress. */
static void run_phase(seed_run_state *st, const seed_phase *ph, const char *what)
{
    atomic_long *counter = ph->next;
    long total = ph->total;
    phase_arg pa = {st, ph};
    int n = st->o->concurrency;
    pthread_t th[64];
    int64_t t0 = time_mono_ms();
    int started = 0;
    for (int k = 0; k < n && k < 64; k++)
        if (pthread_create(&th[k], NULL, phase_thread, &pa) == 0)
            started++;
    if (st->o->progress) {
        for (;;) {
            long done = atomic_load(counter);
            if (done > total)
                done = total;
            double secs = (double)(time_mono_ms() - t0) / 1000.0;
            draw_bar(what, done, total, secs > 0 ? (double)done / secs : 0);
            if (done >= total)
                break;
            usleep(100000);
        }
    }
    for (int k = 0; k < started; k++)
        pthread_join(th[k], NULL);
    if (st->o->progress) {
        double secs = (double)(time_mono_ms() - t0) / 1000.0;
        draw_bar(what, total, total, secs > 0 ? (double)total / secs : 0);
        fprintf(stderr, "\n");
    }
}

int seed_run(const cli_session *s, const seed_opts *o, seed_result *res)
{
    memset(res, 0, sizeof *res);
    seed_run_state st;
    memset(&st, 0, sizeof st);
    st.s = s;
    st.o = o;
    st.now_ms = time_now_ms();
    pthread_mutex_init(&st.err_lock, NULL);
    st.ids = calloc((size_t)(o->customers > 0 ? o->customers : 1), sizeof *st.ids);
    if (!st.ids) {
        snprintf(res->first_error, sizeof res->first_error, "out of memory");
        return -1;
    }
    int64_t t0 = time_mono_ms();
    seed_phase customers = {"/customers", &st.next_customer, o->customers, make_customer_i,
                            settle_customer};
    run_phase(&st, &customers, "customers");

    st.created_index = malloc(sizeof(long) * (size_t)(o->customers > 0 ? o->customers : 1));
    for (long i = 0; st.created_index && i < o->customers; i++)
        if (st.ids[i][0])
            st.created_index[st.ncreated_index++] = i;
    seed_phase orders = {"/orders", &st.next_order, o->orders, make_order_i, settle_order};
    if (o->orders > 0 && st.ncreated_index > 0)
        run_phase(&st, &orders, "orders");

    res->created = atomic_load(&st.created);
    res->existed = atomic_load(&st.existed);
    res->failed_customers = atomic_load(&st.failed_customers);
    res->orders_created = atomic_load(&st.orders_created);
    res->failed_orders = atomic_load(&st.failed_orders);
    res->seconds = (double)(time_mono_ms() - t0) / 1000.0;
    snprintf(res->first_error, sizeof res->first_error, "%s", st.first_error);
    free(st.ids);
    free(st.created_index);
    pthread_mutex_destroy(&st.err_lock);
    return res->failed_customers || res->failed_orders ? -1 : 0;
}

static void usage(void)
{
    printf("usage: minicrm seed [--customers N] [--orders M] [--seed S] [--concurrency C]\n"
           "                    [--api URL]\n\n"
           "Creates N customers (default 1000) and M orders (default 3 per customer) through the\n"
           "running API, reproducibly from seed S (default 42). Needs MongoDB access (for a\n"
           "temporary API key, revoked at the end) and the API (default http://127.0.0.1:PORT).\n");
}

static int parse_long(const char *flag, const char *v, long lo, long hi, long *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "minicrm seed: %s expects an integer from %ld to %ld\n", flag, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int cmd_seed(cli_ctx *ctx)
{
    if (ctx->help) {
        usage();
        return 0;
    }
    seed_opts o = {.customers = 1000, .orders = -1, .seed = 42, .concurrency = 8, .progress = true};
    const char *api = NULL;
    for (int i = 1; i < ctx->argc; i++) {
        const char *a = ctx->argv[i], *v = i + 1 < ctx->argc ? ctx->argv[i + 1] : NULL;
        long x;
        if (!v && (!strcmp(a, "--customers") || !strcmp(a, "--orders") || !strcmp(a, "--seed") ||
                   !strcmp(a, "--concurrency") || !strcmp(a, "--api"))) {
            fprintf(stderr, "minicrm seed: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--customers")) {
            if (parse_long(a, v, 0, 10000000, &o.customers))
                return 2;
        } else if (!strcmp(a, "--orders")) {
            if (parse_long(a, v, 0, 100000000, &o.orders))
                return 2;
        } else if (!strcmp(a, "--seed")) {
            if (parse_long(a, v, 0, 0x7fffffffL, &x))
                return 2;
            o.seed = (uint64_t)x;
        } else if (!strcmp(a, "--concurrency")) {
            if (parse_long(a, v, 1, 64, &x))
                return 2;
            o.concurrency = (int)x;
        } else if (!strcmp(a, "--api")) {
            api = v;
        } else if (!strcmp(a, "--no-progress")) {
            o.progress = false;
            continue;
        } else {
            fprintf(stderr, "minicrm seed: unknown argument %s\n", a);
            usage();
            return 2;
        }
        i++;
    }
    if (o.orders < 0)
        o.orders = o.customers * 3;
    if (!isatty(2))
        o.progress = false;
    cli_session s;
    char err[512];
    if (cli_session_open(&s, ctx->cfg, api, "seed", err, sizeof err) != 0) {
        fprintf(stderr, "minicrm seed: %s\n", err);
        return 1;
    }
    seed_result r;
    int rc = seed_run(&s, &o, &r);
    cli_session_close(&s);
    printf("seeded in %.1f s: %ld customers created, %ld already there, %ld failed; %ld orders "
           "created, %ld failed\n",
           r.seconds, r.created, r.existed, r.failed_customers, r.orders_created, r.failed_orders);
    if (rc != 0) {
        fprintf(stderr, "minicrm seed: first error: %s\n", r.first_error);
        return 1;
    }
    return 0;
}
