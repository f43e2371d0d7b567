/*
 * auth_keycache: see auth_keycache.h.
 *
 * Layout: a calloc'd array of AUTH_KEYCACHE_SLOTS slots {hash, checked_ms, info}; a slot is
 * empty when hash[0] == '\0'. Slot of a hash = its first 4 hex digits mod the slot count (the
 * hash is SHA-256, so they are uniform). One pthread mutex guards the array; every operation
 * holds it for one slot copy (or the whole memset in clear), never across I/O.
 */
#include "auth_keycache.h"

#include "auth_crypto.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    char hash[65];
    int64_t checked_ms;
    auth_key_info info;
} slot;

struct auth_keycache {
    pthread_mutex_t mu;
    int64_t ttl_ms;
    slot *slots; /* AUTH_KEYCACHE_SLOTS */
};

auth_keycache *auth_keycache_new(int64_t ttl_ms)
{
    auth_keycache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->slots = calloc(AUTH_KEYCACHE_SLOTS, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    c->ttl_ms = ttl_ms < 0 ? 0 : ttl_ms;
    return c;
}

void auth_keycache_free(auth_keycache *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c->slots);
    free(c);
}

static size_t slot_of(const char hash[65])
{
    size_t v = 0;
    for (int i = 0; i < 4; i++) {
        char h = hash[i];
        v = v * 16 + (size_t)(h >= 'a' ? h - 'a' + 10 : h >= 'A' ? h - 'A' + 10 : h - '0');
    }
    return v % AUTH_KEYCACHE_SLOTS;
}

int auth_keycache_get(auth_keycache *c, const char hash[65], int64_t now_ms, auth_key_info *out)
{
    if (!c || c->ttl_ms == 0)
        return 0;
    int hit = 0;
    pthread_mutex_lock(&c->mu);
    slot *s = &c->slots[slot_of(hash)];
    if (s->hash[0] && memcmp(s->hash, hash, 64) == 0 && now_ms >= s->checked_ms &&
        now_ms - s->checked_ms < c->ttl_ms) {
        *out = s->info;
        hit = 1;
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

void auth_keycache_put(auth_keycache *c, const char hash[65], int64_t now_ms,
                       const auth_key_info *info)
{
    if (!c || c->ttl_ms == 0)
        return;
    pthread_mutex_lock(&c->mu);
    slot *s = &c->slots[slot_of(hash)];
    memcpy(s->hash, hash, 64);
    s->hash[64] = '\0';
    s->checked_ms = now_ms;
    s->info = *info;
    pthread_mutex_unlock(&c->mu);
}

void auth_keycache_clear(auth_keycache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    memset(c->slots, 0, AUTH_KEYCACHE_SLOTS * sizeof *c->slots);
    pthread_mutex_unlock(&c->mu);
}

int auth_keycache_hash(const char *key, char hash[65])
{
    if (!key || strlen(key) != AUTH_KEY_LEN || strncmp(key, AUTH_KEY_TAG, 4) != 0 ||
        !auth_is_b64url(key + 4, AUTH_KEY_LEN - 4))
        return 1;
    return auth_sha256_hex(key, AUTH_KEY_LEN, hash) == 0 ? 0 : 1;
}
