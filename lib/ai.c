/*
 * ai: the ai job codec and the suggest-tags cache naming (see ai.h).
 *
 * The codec lives here until the shared job codec module exists; it is one function pair so
 * it can move there whole.
 */
#include "ai.h"

#include "hmac.h"
#include "jsonx.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ai_job_encode(const ai_job *j, char **out, size_t *len)
{
    json_t *o = NULL;
    if (j->kind == AI_JOB_CAMPAIGN)
        o = json_pack("{s:s,s:s}", "kind", "campaign", "campaign_id", j->campaign_id);
    else
        o = json_pack("{s:s,s:s,s:s,s:o}", "kind", "suggest", "id", j->id, "name", j->name, "rules",
                      rules_to_json(&j->rules));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s)
        return -1;
    *out = s;
    *len = strlen(s);
    return 0;
}

int ai_job_decode(const char *data, size_t len, ai_job *out, char *err, size_t errlen)
{
    int rc = -1;
    memset(out, 0, sizeof *out);
    json_t *o = jsonx_parse(data, len, err, errlen);
    if (!o)
        return -1;
    if (!json_is_object(o)) {
        snprintf(err, errlen, "job is not a JSON object");
        goto out;
    }
    const char *kind = jsonx_str(o, "kind", "");
    if (!strcmp(kind, "campaign")) {
        const char *id = jsonx_str(o, "campaign_id", "");
        if (strlen(id) != 24 || strspn(id, "0123456789abcdef") != 24) {
            snprintf(err, errlen, "campaign_id must be 24 hex characters");
            goto out;
        }
        out->kind = AI_JOB_CAMPAIGN;
        memcpy(out->campaign_id, id, 25);
    } else if (!strcmp(kind, "suggest")) {
        const char *id = jsonx_str(o, "id", "");
        json_t *jn = json_object_get(o, "name");
        if (!ai_suggest_id_valid(id)) {
            snprintf(err, errlen, "id must be 64 hex characters");
            goto out;
        }
        if (!json_is_string(jn) || json_string_length(jn) == 0 ||
            json_string_length(jn) >= AI_NAME_MAX ||
            strlen(json_string_value(jn)) != json_string_length(jn)) {
            snprintf(err, errlen, "name must be a string of 1-%d bytes", AI_NAME_MAX - 1);
            goto out;
        }
        json_t *jr = json_object_get(o, "rules");
        if (!jr || rules_parse_json(jr, &out->rules, err, errlen) != 0) {
            if (!jr)
                snprintf(err, errlen, "rules missing");
            goto out;
        }
        out->kind = AI_JOB_SUGGEST;
        memcpy(out->id, id, AI_ID_LEN + 1);
        memcpy(out->name, json_string_value(jn), json_string_length(jn) + 1);
    } else {
        snprintf(err, errlen, "unknown kind (campaign or suggest)");
        goto out;
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

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
