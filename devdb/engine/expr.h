/*
 * expr.h: aggregation expressions ("$a.b", {$add: ["$x", 1]}, {k: "$v"}, literals) compiled once
 * and evaluated against one document. Used by $project/$addFields/$group/$replaceRoot in
 * aggregate.c and by computed fields in find projections (project.c), as MongoDB 4.4 does.
 *
 * Field paths follow aggregation semantics (not query semantics): "$a.b" where a is an array
 * of documents gives the array of their b values; numeric components are field names, not
 * indexes. $$ROOT and $$CURRENT name the whole document.
 *
 * Operators: $literal; arithmetic $add $subtract $multiply $divide $mod $abs; comparison $eq
 * $ne $gt $gte $lt $lte $cmp; boolean $and $or $not; $cond $ifNull; strings $concat $toLower
 * $toUpper $toString; arrays $size $arrayElemAt $in $isArray; $type; and $sum $avg $min $max
 * over an array argument or several arguments. Unknown operator: InvalidPipelineOperator 168
 * "Unrecognized expression '$x'".
 *
 * A compiled expression is immutable and may be evaluated concurrently from several threads.
 */
#ifndef DEVDB_EXPR_H
#define DEVDB_EXPR_H

#include <bson/bson.h>
#include <stdbool.h>

typedef struct expr expr;

/* Compiles the expression `spec` (deep-copied). Returns NULL with `err` set. Free with
 * expr_free. */
expr *expr_new(const bson_value_t *spec, bson_error_t *err);

/* NULL-safe. */
void expr_free(expr *e);

/* True if the expression is a field path ("$a.b"); *path then points at the path without
 * its '$' (owned by the expression). */
bool expr_is_path(const expr *e, const char **path);

/* Evaluates `e` with `root` as $$ROOT/$$CURRENT. On success returns 0 and sets *out to a value
 * the caller owns and releases with bson_value_destroy; a missing result has value_type
 * BSON_TYPE_EOD (nothing to release). Returns -1 with `err` set on an evaluation error
 * (e.g. $divide by zero: code 16608 "can't $divide by zero"). */
int expr_eval(const expr *e, const bson_t *root, bson_value_t *out, bson_error_t *err);

/* Numeric helpers shared with $group accumulators: adds `b` to the running sum `acc` with
 * MongoDB's type widening (int32 -> int64 -> double). Non-numbers are ignored. */
void expr_num_add(bson_value_t *acc, const bson_value_t *b);

#endif
