/*
 * aggregate.h: aggregation pipelines compiled once and run over a stream of documents.
 *
 * Stages (MongoDB 4.4 semantics): $match, $project (inclusion/exclusion and computed fields),
 * $addFields / $set, $unset, $group (accumulators $sum $avg $min $max $first $last $push
 * $addToSet $count-style {$sum: 1}), $sort, $skip, $limit, $count, $unwind (string form and
 * {path, includeArrayIndex, preserveNullAndEmptyArrays}), $replaceRoot / $replaceWith, and
 * $lookup with localField/foreignField/as. Expressions: field paths ("$a.b"), $$ROOT and
 * $$CURRENT, literals, {$literal: v}, documents and arrays of expressions, and a small set of
 * operators (arithmetic, comparison, $cond, $ifNull, $concat, $size, $toString...) documented in
 * aggregate.c. Unknown stage: 40324 "Unrecognized pipeline stage name: '$x'"; unknown
 * expression operator: InvalidPipelineOperator 168 "Unrecognized expression '$x'".
 * $out and $merge are rejected (the server reports them as unsupported).
 *
 * Memory: $match, $project, $unwind, $skip, $limit, $lookup stream one document at a time;
 * $sort and $group buffer their input and are capped at 100 MiB of BSON each (MongoDB's
 * limit without allowDiskUse; over it: error 16819 for $sort, 16945 for $group).
 *
 * A pipeline is immutable after agg_pipeline_new; one run uses only its own state, so several
 * runs may proceed concurrently on different threads if the callbacks allow it.
 */
#ifndef DEVDB_AGGREGATE_H
#define DEVDB_AGGREGATE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

#include "engine/match.h"

typedef struct agg_pipeline agg_pipeline;

/* Pulls the next input document. Returns 1 and sets *doc (valid until the next call or the end
 * of the run; the engine copies what it keeps), 0 at the end, or -1 with `err` set. */
typedef int (*agg_next_fn)(void *ctx, const bson_t **doc, bson_error_t *err);

/* Receives one output document, valid only during the call (copy it to keep it). Returns 0 to
 * continue, or -1 with `err` set to abort the run. */
typedef int (*agg_emit_fn)(void *ctx, const bson_t *doc, bson_error_t *err);

/* For $lookup: calls `emit` for every document of collection `coll` (same database) that
 * satisfies `m` (the engine builds {foreignField: {$in: [...]}}; the server may use
 * matcher_field_bounds to use an index). A missing collection has no documents. Returns 0 or
 * -1 with `err` set (an error from emit must be passed through). */
typedef int (*agg_foreign_fn)(void *ctx, const char *coll, const matcher *m, agg_emit_fn emit,
                              void *emit_ctx, bson_error_t *err);

typedef struct {
    agg_next_fn next;       /* required */
    agg_foreign_fn foreign; /* needed only for $lookup; NULL: $lookup fails with error 1 */
    void *ctx;              /* passed to both */
} agg_input;

/* Compiles `pipeline`, the BSON array of stage documents as it appears in the aggregate
 * command (a document with keys "0", "1", ...). Returns NULL with `err` set on a bad pipeline.
 * The caller frees the result with agg_pipeline_free. */
agg_pipeline *agg_pipeline_new(const bson_t *pipeline, bson_error_t *err);

/* NULL-safe. */
void agg_pipeline_free(agg_pipeline *p);

/* The filter of a leading $match stage (owned by the pipeline), or NULL: the server may use
 * it to pick an index for the input; the engine still applies the stage itself. */
const matcher *agg_pipeline_leading_match(const agg_pipeline *p);

/* Runs the pipeline over `in`, passing each result to `emit`. Returns 0, or -1 with `err`
 * set. Frees everything it allocated either way. */
int agg_pipeline_run(const agg_pipeline *p, const agg_input *in, agg_emit_fn emit, void *emit_ctx,
                     bson_error_t *err);

/* Convenience: runs the pipeline and collects the results into a new array of new documents.
 * On success *out (free with agg_results_free) and *n are set and 0 is returned; on failure
 * -1 with `err` set and nothing to free. At most `max_bytes` of result BSON (0: 100 MiB). */
int agg_pipeline_collect(const agg_pipeline *p, const agg_input *in, size_t max_bytes,
                         bson_t ***out, size_t *n, bson_error_t *err);
void agg_results_free(bson_t **docs, size_t n);

#endif
