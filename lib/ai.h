/*
 * ai: what minicrm-api and minicrm-ai share about AI tags and message drafts (issue 18): the
 * id of a suggest-tags request and its cache entry in Redis, and the states of a campaign's
 * `ai` sub-document.
 *
 * Campaign `ai` states (campaigns1.ai.status), moved only by minicrm-ai (workers/aitask.c):
 *   requested -(answer valid)-> done
 *   requested -(last attempt failed / budget spent / model refused)-> failed
 *   failed -(operator: minicrm dlq requeue ai)-> requested work again -> done | failed
 * done is final: a job for a campaign whose ai.status is done is acknowledged without a call.
 *
 * Jobs: lib/jobs.h (jobs_ai_encode / jobs_ai_decode), a campaign's or a suggest-tags
 * request's.
 *
 * Suggest-tags cache: {prefix}ai:suggest:<id> (STRING, JSON) where id = ai_suggest_id(name,
 * rules); the same name and rules give the same id, so the answer is shared by every caller:
 *   {"status":"queued"}                                       set NX by the API with the job
 *   {"status":"done","tags":[...],"message_draft":"...","model":"..."}   openai.cache_ttl_s
 *   {"status":"failed","error":"..."}                         AI_FAILED_TTL_S, then asked again
 *
 * Only the campaign's name and rules ever go to the model: no customer data.
 * Pure functions (and value types) over caller buffers; thread-safe.
 */
#ifndef MINICRM_AI_H
#define MINICRM_AI_H

#include "rules.h"

#include <stdbool.h>
#include <stddef.h>

#define AI_MAX_TAGS     3    /* tags the model may suggest */
#define AI_TAG_MAX_LEN  50   /* bytes of one tag (the campaign tag limit) */
#define AI_ID_LEN       64   /* hex characters of a suggest id (= JOBS_AI_ID_LEN) */
#define AI_QUEUED_TTL_S 3600 /* a queued suggest entry expires if its job is lost */
#define AI_FAILED_TTL_S 600  /* a failed suggestion is asked again after this */

/* The suggest id of (name, rules): hex SHA-256 over the name and the canonical rules JSON.
 * Returns 0, or -1. */
int ai_suggest_id(const char *name, const rules *r, char out[AI_ID_LEN + 1]);
/* True if s is a well-formed suggest id (64 lower-case hex). */
bool ai_suggest_id_valid(const char *s);
/* Redis key of a suggest cache entry: "<prefix>ai:suggest:<id>" into buf. Returns buf. */
const char *ai_suggest_key(const char *prefix, const char *id, char *buf, size_t n);

#endif
