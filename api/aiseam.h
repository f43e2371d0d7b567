/*
 * aiseam: the API's side of AI tags and message drafts (issue 18). The API never calls a
 * model: it reads cached answers and puts jobs on the ai queue for minicrm-ai (lib/ai.h has
 * the jobs, the cache entries and the campaign's ai states).
 *
 *   aiseam_suggest    POST /api/campaigns/suggest-tags with AI configured: the rule tags at
 *                     once, plus the AI tags when {prefix}ai:suggest:<id> is done; otherwise
 *                     the entry is created (SET NX) with one job and the answer says
 *                     "ai": "queued" with the id to poll. Redis trouble never fails the route:
 *                     the rule tags are answered with "ai": "unavailable".
 *   aiseam_request_campaign   after a campaign with an `ai` request was stored: its job.
 *   GET /api/campaigns/suggest-tags/:id   the cache entry {"id","status",...} (404 unknown).
 *
 * AI is configured when openai.api_key is set. Thread-safe (no state of its own).
 */
#ifndef MINICRM_API_AISEAM_H
#define MINICRM_API_AISEAM_H

#include "http.h"
#include "router.h"
#include "rules.h"

#include <jansson.h>
#include <stdbool.h>

bool aiseam_enabled(const minicrm_config *cfg);

/* Answer suggest-tags for (name, rules) whose rule tags are `rule_tags` (stolen). */
void aiseam_suggest(api_ctx *app, http_request *req, const char *name, const rules *r,
                    json_t *rule_tags);

/* Queue the AI job of campaign `hex` (stored with ai.status requested). If it cannot be queued
 * the campaign's ai.status becomes failed with the reason (logged). Never answers. */
void aiseam_request_campaign(api_ctx *app, http_request *req, const char *hex);

/* Add GET /api/campaigns/suggest-tags/:id. 0, or -1. */
int aiseam_register(router *r);

#endif
