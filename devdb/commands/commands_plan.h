/*
 * commands_plan: the query planner and executor shared by find, count, update, delete,
 * findAndModify, distinct and aggregate.
 *
 * Given a compiled filter, an optional sort, an optional hint and skip/limit, it picks an
 * access path, runs it and returns the record ids of the result in order:
 *
 *   1. hint: the named index (or key pattern) must exist (else BadValue 2 "hint provided does
 *      not correspond to an existing index"); it is scanned over the filter's bounds on its
 *      first field if there are any, else in full;
 *   2. otherwise the index (the _id index included) whose first field has the tightest bounds
 *      in the filter (equality points beat ranges; unique beats non-unique). Sparse indexes
 *      and partial indexes whose filter the query does not imply (partial_implied_by) are
 *      never chosen without a hint; an implied partial index ranks above a non-unique point
 *      index and below a unique point lookup. With a sort and a limit, when these bounds do
 *      not give the order, an implied partial index that does is walked instead;
 *   3. otherwise, with a sort, the smallest usable index whose key pattern starts with the
 *      sort keys (or their exact reverse) and is not multikey, walked in order;
 *   4. otherwise an implied partial index walked in full (it holds only documents satisfying
 *      its filter), else the collection in natural order.
 * Every candidate is checked with the full matcher. If the chosen path delivers the sort order,
 * no sort happens and the scan stops after skip + limit results.
 *
 * Limits, as MongoDB 4.4 applies them to a query:
 *   - sort_mem_limit (find only): a blocking sort (one no index order serves) may hold at most
 *     this many bytes of documents: every match without a limit, the skip + limit documents a
 *     top-k sort keeps with one. Over it: QueryExceededMemoryLimitNoDiskUseAllowed 292. A sort
 *     an index serves holds nothing and never fails.
 *   - deadline_ms (maxTimeMS): a monotonic time after which the scan stops with
 *     MaxTimeMSExpired 50 "operation exceeded time limit".
 *
 * Must be called with the store lock held (shared is enough). The caller frees *rids.
 */
#ifndef DEVDB_COMMANDS_PLAN_H
#define DEVDB_COMMANDS_PLAN_H

#include "engine/match.h"
#include "engine/sortspec.h"
#include "storage/store.h"

typedef struct plan_req {
    const matcher *m;         /* required */
    const sortspec *sort;     /* NULL or empty: no order */
    const bson_value_t *hint; /* NULL: none; a string (index name) or a document (pattern) */
    int64_t skip;             /* >= 0 */
    int64_t limit;            /* 0: no limit */
    int64_t sort_mem_limit;   /* 0: none; else the blocking-sort byte limit (see above) */
    int64_t deadline_ms;      /* 0: none; else plan_now_ms() after which the query fails */
} plan_req;

/* The monotonic clock of deadline_ms, milliseconds. */
int64_t plan_now_ms(void);
/* The deadline of a command's maxTimeMS argument into *deadline_ms (0: none; maxTimeMS 0 means
 * none too). A negative or non-integral value is BadValue 2 as in MongoDB. */
int plan_deadline(const bson_t *cmd, int64_t *deadline_ms, bson_error_t *err);

int plan_run(store *st, store_coll *c, const plan_req *q, uint64_t **rids, size_t *n,
             bson_error_t *err);

/* The count of the documents matching m when an index answers it alone, as MongoDB's
 * COUNT_SCAN does: m is a conjunction of comparisons on one top-level path
 * (matcher_single_path) and an index whose first field is that path is not multikey, not
 * sparse, and not a partial index m does not imply. Walks that index's keys inside the filter's
 * bounds without reading a document: the first keys of each run are tested, the rest of the
 * run is counted (up to the first key that fails, when the run may go past the matches). A
 * conjunction over several top-level paths of one such compound index (matcher_paths_within,
 * $ne and $nin included), whose first field has bounds, is counted as MongoDB's covered
 * IXSCAN + COUNT: every key inside the first field's bounds is tested against the filter's
 * per-field bounds on its bytes (matcher_keyfilter_*). 1 with *n set, 0 when no index answers
 * it (plan_run then), -1 with err (MaxTimeMSExpired past deadline_ms). */
int plan_count(store_coll *c, const matcher *m, int64_t deadline_ms, store *st, int64_t *n,
               bson_error_t *err);

/* Validates a hint against the collection without running anything (NULL hint: 0). */
int plan_check_hint(store_coll *c, const bson_value_t *hint, store_index **out, bson_error_t *err);

#endif
