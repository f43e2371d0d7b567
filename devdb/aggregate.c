/* aggregate.c: stub, implementation follows. */
#include "aggregate.h"
#include "errors.h"
agg_pipeline *agg_pipeline_new(const bson_t *pipeline, bson_error_t *err)
{
    (void)pipeline;
    mdb_error(err, 1, "not implemented");
    return NULL;
}
void agg_pipeline_free(agg_pipeline *p)
{
    (void)p;
}
const matcher *agg_pipeline_leading_match(const agg_pipeline *p)
{
    (void)p;
    return NULL;
}
int agg_pipeline_run(const agg_pipeline *p, const agg_input *in, agg_emit_fn emit, void *emit_ctx,
                     bson_error_t *err)
{
    (void)p;
    (void)in;
    (void)emit;
    (void)emit_ctx;
    return mdb_error(err, 1, "not implemented");
}
int agg_pipeline_collect(const agg_pipeline *p, const agg_input *in, size_t max_bytes,
                         bson_t ***out, size_t *n, bson_error_t *err)
{
    (void)p;
    (void)in;
    (void)max_bytes;
    (void)out;
    (void)n;
    return mdb_error(err, 1, "not implemented");
}
void agg_results_free(bson_t **docs, size_t n)
{
    (void)docs;
    (void)n;
}
