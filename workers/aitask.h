/*
 * aitask: what minicrm-ai does with one job of the ai queue (lib/ai.h describes the jobs, the
 * cache and the campaign's ai states).
 *
 * On a job: decode (malformed -> dead letter); if its result already exists (campaign
 * ai.status done, suggest cache done) ack without a call; if today's token budget
 * ({prefix}ai:tokens:YYYYMMDD, counted from the answers' usage) is spent, dead-letter and mark
 * failed without a call; else ask the model (workers/openai.c) with the name and rules only,
 * validate the answer (ai_answer_parse), and write it (campaign: $set ai.*; suggest: the
 * cache entry) before the ack.
 *   429 / 5xx / timeout / connection trouble / an invalid answer: queue_retry (backoff of the
 *   queue; a Retry-After also pauses this consumer's claims until it has passed); the
 *   openai.max_attempts-th failure dead-letters the job and marks it failed with the reason.
 *   Any other 4xx (bad key, unknown model): dead letter and failed at once.
 * Model output is data: it is stored as BSON/JSON string values only, never put into a query
 * operator position or a campaign's message template; a draft may name no placeholder other
 * than {{name}}.
 *
 * Crash points: before the write -> the job comes back and calls again (idempotent: the write
 * is a $set); between the dead letter and the failed mark -> the campaign stays "requested"
 * and `minicrm dlq requeue ai` finishes it.
 *
 * Threads: an ai_ctx and what it points to are used by one thread.
 */
#ifndef MINICRM_WORKERS_AITASK_H
#define MINICRM_WORKERS_AITASK_H

#include "ai.h"
#include "config.h"
#include "dbpool.h"
#include "openai.h"
#include "queue.h"
#include "rconn.h"

#include <stddef.h>
#include <stdint.h>

#define AI_DRAFT_MAX_BYTES 1000

/* A validated answer of the model (plain value type). */
typedef struct ai_answer {
    size_t ntags;
    char tags[AI_MAX_TAGS][AI_TAG_MAX_LEN + 1];
    char draft[AI_DRAFT_MAX_BYTES + 1];
} ai_answer;

/* Validate the model's message content: a JSON object {"tags": [1-3 non-blank strings of at
 * most AI_TAG_MAX_LEN bytes, no control characters], "message_draft": "non-blank text of at
 * most AI_DRAFT_MAX_BYTES bytes with {{name}} and no other placeholder"}. Content that is not
 * valid UTF-8 is rejected. 0, or -1 with the reason in err. */
int ai_answer_parse(const char *content, ai_answer *out, char *err, size_t errlen);

/* The two prompt messages for (name, rules), written into caller buffers. The user message
 * carries the name as a JSON string and the rules as JSON: nothing else about the campaign and
 * nothing about customers. */
extern const char AI_SYSTEM_PROMPT[];
int ai_user_prompt(const char *name, const rules *r, char *out, size_t n);

typedef struct ai_ctx {
    const minicrm_config *cfg; /* borrowed */
    rconn *rc;                 /* borrowed; the queue's connection */
    dbpool *db;                /* borrowed */
    queue *q;                  /* borrowed consumer handle of the ai queue */
    openai_client *oc;         /* borrowed */
    int64_t pause_until_ms;    /* monotonic: no claims before this (Retry-After) */
    long long done, failed, retried, calls, tokens;
} ai_ctx;

/* Handle and settle one claimed job. 0 when settled (ack, retry or dead), -1 when Redis failed
 * (the job stays claimed and comes back). */
int ai_handle_job(ai_ctx *x, const queue_job *job);

/* Tokens spent today (UTC) as counted in Redis, or -1 on a Redis error. */
long long ai_tokens_today(ai_ctx *x);

#endif
