/*
 * ai: the suggest id and the suggest-tags cache naming (see ai.h).
 */
#include "ai.h"

#include "hmac.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ai_suggest_id(const char *name, const rules *r, char out[AI_ID_LEN + 1])
{
    json_t *jr = rules_to_json(r);
    char *canon = jr ? json_dumps(jr, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(jr);
    if (!canon)
        return -1;
    const void *parts[3] = {name, "\n", canon};
    size_t lens[3] = {strlen(name) + 1, 1, strlen(canon)}; /* the NUL keeps the parts apart */
    int rc = hmac_sha256_hex_parts("ai-suggest", 10, parts, lens, 3, out);
    free(canon);
    return rc;
}

bool ai_suggest_id_valid(const char *s)
{
    return s && strlen(s) == AI_ID_LEN && strspn(s, "0123456789abcdef") == AI_ID_LEN;
}

const char *ai_suggest_key(const char *prefix, const char *id, char *buf, size_t n)
{
    snprintf(buf, n, "%sai:suggest:%s", prefix, id);
    return buf;
}
