/*
 * test_unsub: one-click unsubscribe tokens (lib/unsub) and the pure parts of lib/suppress
 * (address normalisation, reason names). Prints what a token costs, the figure the fan-out pays
 * per message (bench/README.md).
 */
#include "config.h"
#include "suppress.h"
#include "test.h"
#include "timeutil.h"
#include "unsub.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define LID "65f0c0ffee0123456789abcd"

TEST(token_round_trip_and_tamper)
{
    unsub_signer *s = unsub_signer_new("k1", 2, "https://crm.example/");
    unsub_signer *o = unsub_signer_new("k2", 2, "https://crm.example");
    CHECK(s && o);
    char tok[UNSUB_TOKEN_LEN + 1], tok2[UNSUB_TOKEN_LEN + 1], lhex[25];
    CHECK_INT_EQ(unsub_token(s, LID, tok), 0);
    CHECK_INT_EQ(strlen(tok), UNSUB_TOKEN_LEN);
    CHECK(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
          UNSUB_TOKEN_LEN);
    CHECK_INT_EQ(unsub_token(s, "65F0C0FFEE0123456789ABCD", tok2), 0); /* hex case: same id */
    CHECK_STR_EQ(tok, tok2);
    CHECK_INT_EQ(unsub_token_check(s, tok, lhex), 0);
    CHECK_STR_EQ(lhex, LID);
    /* another key, every single-character change, wrong lengths: refused */
    CHECK_INT_EQ(unsub_token_check(o, tok, lhex), -1);
    for (int i = 0; i < UNSUB_TOKEN_LEN; i++) {
        char t[UNSUB_TOKEN_LEN + 1];
        memcpy(t, tok, sizeof t);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        CHECK_MSG(unsub_token_check(s, t, lhex) == -1, "changed at %d accepted", i);
    }
    char longer[UNSUB_TOKEN_LEN + 2];
    snprintf(longer, sizeof longer, "%sA", tok);
    CHECK_INT_EQ(unsub_token_check(s, longer, lhex), -1);
    CHECK_INT_EQ(unsub_token_check(s, "", lhex), -1);
    CHECK_INT_EQ(unsub_token_check(s, NULL, lhex), -1);
    CHECK_INT_EQ(unsub_token_check(s, "%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%", lhex), -1);
    CHECK_INT_EQ(unsub_token(s, "not-a-log-id", tok2), -1);
    /* two logs, two unrelated tokens */
    CHECK_INT_EQ(unsub_token(s, "65f0c0ffee0123456789abce", tok2), 0);
    CHECK(strcmp(tok, tok2) != 0);

    char url[UNSUB_URL_MAX + 1], hdr[1024], want[200];
    CHECK(unsub_url(s, LID, url, sizeof url) > 0);
    snprintf(want, sizeof want, "https://crm.example/u/%s", tok);
    CHECK_STR_EQ(url, want);
    CHECK(unsub_headers(url, hdr, sizeof hdr) > 0);
    snprintf(want, sizeof want,
             "List-Unsubscribe: <https://crm.example/u/%s>\r\n"
             "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
             tok);
    CHECK_STR_EQ(hdr, want);
    unsub_signer_free(s);
    unsub_signer_free(o);
}

TEST(public_base)
{
    minicrm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char b[UNSUB_BASE_MAX + 1];
    cfg.api.bind = "0.0.0.0";
    cfg.api.port = 5000;
    cfg.api.public_url = "";
    CHECK(unsub_public_base(&cfg, b, sizeof b) > 0);
    CHECK_STR_EQ(b, "http://127.0.0.1:5000");
    cfg.api.bind = "10.0.0.7";
    CHECK(unsub_public_base(&cfg, b, sizeof b) > 0);
    CHECK_STR_EQ(b, "http://10.0.0.7:5000");
    cfg.api.public_url = "https://crm.example.com/";
    CHECK(unsub_public_base(&cfg, b, sizeof b) > 0);
    CHECK_STR_EQ(b, "https://crm.example.com");
}

TEST(addresses_and_reasons)
{
    char a[SUPPRESS_EMAIL_MAX + 1];
    CHECK_INT_EQ(suppress_email_norm("Ann.Lee@Example.COM", a), 0);
    CHECK_STR_EQ(a, "ann.lee@example.com");
    const char *bad[] = {"",         "a",       "@x.io",   "a@",      "a@b",     "a@@b.io",
                         "a b@c.io", "a@-b.io", "a@b..io", "a@b.io.", "a@b_c.io"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(suppress_email_norm(bad[i], a) == -1, "accepted \"%s\"", bad[i]);
    suppress_reason r;
    for (int i = 0; i < SUPPRESS_REASON_COUNT; i++) {
        CHECK_INT_EQ(suppress_reason_parse(suppress_reason_name((suppress_reason)i), &r), 0);
        CHECK_INT_EQ(r, i);
    }
    CHECK_INT_EQ(suppress_reason_parse("Manual", &r), -1);
    CHECK_INT_EQ(suppress_reason_parse(NULL, &r), -1);
}

/* CPU time of this thread (a busy machine's other work does not count). */
static int64_t cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* What the fan-out pays per message for its link (printed; the bound only catches a gross
 * regression on a loaded machine). */
TEST(token_cost)
{
    unsub_signer *s =
        unsub_signer_new("a-32-byte-key-for-the-benchmark!", 32, "https://crm.example.com");
    CHECK(s != NULL);
    char lid[25], url[UNSUB_URL_MAX + 1];
    const int n = 200000;
    int64_t t0 = cpu_us();
    size_t sum = 0;
    for (int i = 0; i < n; i++) {
        snprintf(lid, sizeof lid, "65f0c0ffee%014x", (unsigned)i);
        sum += (size_t)unsub_url(s, lid, url, sizeof url);
    }
    int64_t us = cpu_us() - t0;
    fprintf(stderr, "  unsubscribe url: %.2f us of CPU per message (%d in %lld ms)\n",
            (double)us / n, n, (long long)us / 1000);
    CHECK(sum > 0);
    CHECK_MSG((double)us / n < 50, "%.2f us per token", (double)us / n);
    unsub_signer_free(s);
}

TEST_MAIN(TEST_ENTRY(token_round_trip_and_tamper), TEST_ENTRY(public_base),
          TEST_ENTRY(addresses_and_reasons), TEST_ENTRY(token_cost))
