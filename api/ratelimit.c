/* ratelimit: see ratelimit.h. */
#include "ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { RL_SLOTS = 4096, RL_LOCKS = 64, RL_KEY = 64 };

typedef struct rl_slot {
    char client[RL_KEY];
    int64_t window; /* minute number (now_ms / 60000) */
    int count;
} rl_slot;

struct ratelimit {
    int per_min;
    pthread_mutex_t locks[RL_LOCKS];
    rl_slot slots[RL_SLOTS];
};

ratelimit *ratelimit_new(int per_min)
{
    if (per_min <= 0)
        return NULL;
    ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    rl->per_min = per_min;
    for (int i = 0; i < RL_LOCKS; i++)
        pthread_mutex_init(&rl->locks[i], NULL);
    return rl;
}

void ratelimit_free(ratelimit *rl)
{
    if (!rl)
        return;
    for (int i = 0; i < RL_LOCKS; i++)
        pthread_mutex_destroy(&rl->locks[i]);
    free(rl);
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

bool ratelimit_allow(ratelimit *rl, const char *client, int64_t now_ms, int *retry_after_s)
{
    if (!rl)
        return true;
    uint32_t h = fnv1a(client) % RL_SLOTS;
    int64_t window = now_ms / 60000;
    pthread_mutex_t *lock = &rl->locks[h % RL_LOCKS];
    pthread_mutex_lock(lock);
    rl_slot *s = &rl->slots[h];
    if (s->window != window || strncmp(s->client, client, RL_KEY - 1) != 0) {
        strncpy(s->client, client, RL_KEY - 1);
        s->client[RL_KEY - 1] = '\0';
        s->window = window;
        s->count = 0;
    }
    bool ok = s->count < rl->per_min;
    if (ok)
        s->count++;
    pthread_mutex_unlock(lock);
    if (!ok && retry_after_s)
        *retry_after_s = (int)(60 - (now_ms / 1000) % 60);
    return ok;
}

bool ratelimit_spent(ratelimit *rl, const char *client, int64_t now_ms, int *retry_after_s)
{
    if (!rl)
        return false;
    uint32_t h = fnv1a(client) % RL_SLOTS;
    pthread_mutex_t *lock = &rl->locks[h % RL_LOCKS];
    pthread_mutex_lock(lock);
    const rl_slot *s = &rl->slots[h];
    bool spent = s->window == now_ms / 60000 && strncmp(s->client, client, RL_KEY - 1) == 0 &&
                 s->count >= rl->per_min;
    pthread_mutex_unlock(lock);
    if (spent && retry_after_s)
        *retry_after_s = (int)(60 - (now_ms / 1000) % 60);
    return spent;
}

bool ratelimit_exempt(const char *path)
{
    static const char *const exempt[] = {"/healthz", "/readyz", "/metrics",
                                         "/api/receipts/delivery"};
    for (size_t i = 0; i < sizeof exempt / sizeof exempt[0]; i++)
        if (path && strcmp(path, exempt[i]) == 0)
            return true;
    return false;
}
