/* test_engine_aggregate: aggregation pipelines over in-memory collections (devdb/aggregate). */
#include "engine/aggregate.h"
#include "engine_util.h"
#include "base/errors.h"
#include "test.h"

/* An in-memory "database": the input collection and one foreign collection for $lookup. */
typedef struct {
    bson_t *docs[64];
    size_t n, pos;
    bson_t *foreign[64];
    size_t nforeign;
    size_t pulled;
} mem_input;

static int mem_next(void *ctx, const bson_t **doc, bson_error_t *err)
{
    mem_input *m = ctx;
    (void)err;
    if (m->pos == m->n)
        return 0;
    m->pulled++;
    *doc = m->docs[m->pos++];
    return 1;
}

static int mem_foreign(void *ctx, const char *coll, const matcher *mt, agg_emit_fn emit, void *ectx,
                       bson_error_t *err)
{
    mem_input *m = ctx;
    if (strcmp(coll, "other") != 0)
        return 0;
    for (size_t i = 0; i < m->nforeign; i++)
        if (matcher_matches(mt, m->foreign[i]) && emit(ectx, m->foreign[i], err) != 0)
            return -1;
    return 0;
}

/* Loads a JSON array of documents ("[{...}, {...}]") into dst. */
static size_t load(bson_t **dst, const char *json_array)
{
    char wrapped[4096];
    snprintf(wrapped, sizeof wrapped, "{'a': %s}", json_array);
    bson_t *w = J(wrapped), arr;
    bson_iter_t it, ai;
    bson_iter_init_find(&it, w, "a");
    uint32_t len;
    const uint8_t *data;
    bson_iter_array(&it, &len, &data);
    bson_init_static(&arr, data, len);
    bson_iter_init(&ai, &arr);
    size_t n = 0;
    while (bson_iter_next(&ai)) {
        bson_iter_document(&ai, &len, &data);
        bson_t d;
        bson_init_static(&d, data, len);
        dst[n++] = bson_copy(&d);
    }
    bson_destroy(w);
    return n;
}

static mem_input g_in;

static void input(const char *docs, const char *foreign)
{
    for (size_t i = 0; i < g_in.n; i++)
        bson_destroy(g_in.docs[i]);
    for (size_t i = 0; i < g_in.nforeign; i++)
        bson_destroy(g_in.foreign[i]);
    memset(&g_in, 0, sizeof g_in);
    g_in.n = load(g_in.docs, docs);
    if (foreign)
        g_in.nforeign = load(g_in.foreign, foreign);
}

/* Runs `pipeline` (JSON array) over g_in: results as JSON joined by ' ', or "ERR code msg". */
static const char *A(const char *pipeline)
{
    static char out[4096];
    char wrapped[4096];
    snprintf(wrapped, sizeof wrapped, "{'p': %s}", pipeline);
    bson_t *w = J(wrapped), arr;
    bson_iter_t it;
    bson_iter_init_find(&it, w, "p");
    uint32_t len;
    const uint8_t *data;
    bson_iter_array(&it, &len, &data);
    bson_init_static(&arr, data, len);
    bson_error_t err;
    g_in.pos = 0;
    g_in.pulled = 0;
    agg_pipeline *p = agg_pipeline_new(&arr, &err);
    out[0] = '\0';
    if (!p) {
        snprintf(out, sizeof out, "ERR %u %s", err.code, err.message);
    } else {
        agg_input in = {.next = mem_next, .foreign = mem_foreign, .ctx = &g_in};
        bson_t **docs;
        size_t n;
        if (agg_pipeline_collect(p, &in, 0, &docs, &n, &err) != 0) {
            snprintf(out, sizeof out, "ERR %u %s", err.code, err.message);
        } else {
            for (size_t i = 0; i < n; i++) {
                size_t used = strlen(out);
                snprintf(out + used, sizeof out - used, "%s%s", i ? " " : "", JS(docs[i]));
            }
            agg_results_free(docs, n);
        }
    }
    agg_pipeline_free(p);
    bson_destroy(w);
    return out;
}

static const char *ORDERS = "[{'_id': 1, 'c': 'a', 'amt': 10, 'tags': ['x', 'y']},"
                            " {'_id': 2, 'c': 'b', 'amt': 5.5, 'tags': []},"
                            " {'_id': 3, 'c': 'a', 'amt': {'$numberLong': '7'}},"
                            " {'_id': 4, 'c': 'c', 'amt': 'n/a', 'tags': null},"
                            " {'_id': 5, 'c': 'b', 'amt': 1, 'tags': ['z']}]";

TEST(match_sort_skip_limit_count)
{
    input(ORDERS, NULL);
    CHECK_STR_EQ(A("[{'$match': {'c': 'a'}}, {'$project': {'amt': 1}}]"),
                 "{'_id':1,'amt':10} {'_id':3,'amt':7}");
    CHECK_STR_EQ(A("[{'$sort': {'amt': -1}}, {'$project': {'_id': 1}}]"),
                 "{'_id':4} {'_id':1} {'_id':3} {'_id':2} {'_id':5}");
    CHECK_STR_EQ(A("[{'$sort': {'_id': -1}}, {'$skip': 1}, {'$limit': 2}, {'$project': {'_id': "
                   "1}}]"),
                 "{'_id':4} {'_id':3}");
    CHECK_STR_EQ(A("[{'$match': {'amt': {'$gt': 5}}}, {'$count': 'n'}]"), "{'n':3}");
    CHECK_STR_EQ(A("[{'$match': {'amt': {'$gt': 500}}}, {'$count': 'n'}]"), "");
    /* A satisfied $limit stops reading input when nothing before it buffers. */
    CHECK_STR_EQ(A("[{'$limit': 2}, {'$project': {'_id': 1}}]"), "{'_id':1} {'_id':2}");
    CHECK_INT_EQ(g_in.pulled, 2);
    CHECK_STR_EQ(A("[]"), "{'_id':1,'c':'a','amt':10,'tags':['x','y']} "
                          "{'_id':2,'c':'b','amt':5.5,'tags':[]} {'_id':3,'c':'a','amt':7} "
                          "{'_id':4,'c':'c','amt':'n/a','tags':null} "
                          "{'_id':5,'c':'b','amt':1,'tags':['z']}");
}

TEST(group)
{
    input(ORDERS, NULL);
    CHECK_STR_EQ(A("[{'$group': {'_id': '$c', 'total': {'$sum': '$amt'}, 'n': {'$sum': 1}}}]"),
                 "{'_id':'a','total':17,'n':2} {'_id':'b','total':6.5,'n':2} "
                 "{'_id':'c','total':0,'n':1}");
    CHECK_STR_EQ(A("[{'$group': {'_id': null, 'avg': {'$avg': '$amt'}, 'mn': {'$min': '$amt'}, "
                   "'mx': {'$max': '$amt'}}}]"),
                 "{'_id':null,'avg':5.875,'mn':1,'mx':'n/a'}");
    CHECK_STR_EQ(A("[{'$sort': {'_id': 1}}, {'$group': {'_id': '$c', 'f': {'$first': '$_id'}, "
                   "'l': {'$last': '$_id'}, 'ids': {'$push': '$_id'}}}, {'$sort': {'_id': -1}}]"),
                 "{'_id':'c','f':4,'l':4,'ids':[4]} {'_id':'b','f':2,'l':5,'ids':[2,5]} "
                 "{'_id':'a','f':1,'l':3,'ids':[1,3]}");
    CHECK_STR_EQ(A("[{'$group': {'_id': {'k': '$c'}, 's': {'$addToSet': '$c'}}}, {'$limit': 1}]"),
                 "{'_id':{'k':'a'},'s':['a']}");
    /* Numeric group keys: 1, 1.0 and NumberLong(1) are one group. */
    input("[{'v': 1}, {'v': 1.0}, {'v': {'$numberLong': '1'}}, {'v': 2}]", NULL);
    CHECK_STR_EQ(A("[{'$group': {'_id': '$v', 'n': {'$sum': 1}}}]"),
                 "{'_id':1,'n':3} {'_id':2,'n':1}");
    /* The shape drivers send for countDocuments. */
    CHECK_STR_EQ(A("[{'$match': {}}, {'$skip': 1}, {'$group': {'_id': 1, 'n': {'$sum': 1}}}]"),
                 "{'_id':1,'n':3}");
    CHECK_STR_EQ(A("[{'$group': {'x': {'$sum': 1}}}]"),
                 "ERR 15955 a group specification must include an _id");
    CHECK_STR_EQ(A("[{'$group': {'_id': 1, 'x': {'$foo': 1}}}]"),
                 "ERR 15952 unknown group operator '$foo'");
    CHECK_STR_EQ(A("[{'$group': {'_id': 1, 'x': 5}}]"),
                 "ERR 40234 The field 'x' must be an accumulator object");
}

TEST(unwind)
{
    input(ORDERS, NULL);
    CHECK_STR_EQ(A("[{'$unwind': '$tags'}, {'$project': {'tags': 1}}]"),
                 "{'_id':1,'tags':'x'} {'_id':1,'tags':'y'} {'_id':5,'tags':'z'}");
    CHECK_STR_EQ(A("[{'$unwind': {'path': '$tags', 'preserveNullAndEmptyArrays': true, "
                   "'includeArrayIndex': 'i'}}, {'$project': {'tags': 1, 'i': 1}}]"),
                 "{'_id':1,'tags':'x','i':0} {'_id':1,'tags':'y','i':1} {'_id':2,'i':null} "
                 "{'_id':3,'i':null} {'_id':4,'tags':null,'i':null} {'_id':5,'tags':'z','i':0}");
    input("[{'_id': 1, 'a': {'b': [1, 2]}}]", NULL);
    CHECK_STR_EQ(A("[{'$unwind': '$a.b'}]"), "{'_id':1,'a':{'b':1}} {'_id':1,'a':{'b':2}}");
    CHECK_STR_EQ(A("[{'$unwind': 'a'}]"),
                 "ERR 28818 path option to $unwind stage should be prefixed with a '$': a");
}

TEST(project_add_fields_replace_root)
{
    input("[{'_id': 1, 'first': 'Ada', 'last': 'L', 'n': {'x': 1}}]", NULL);
    CHECK_STR_EQ(A("[{'$project': {'_id': 0, 'name': {'$concat': ['$first', ' ', '$last']}}}]"),
                 "{'name':'AdaL'}"); /* JS() drops spaces */
    CHECK_STR_EQ(A("[{'$addFields': {'first': 'B', 'z': 1, 'n.y': 2}}]"),
                 "{'_id':1,'first':'B','last':'L','n':{'x':1,'y':2},'z':1}");
    CHECK_STR_EQ(A("[{'$set': {'q.r': '$n.x'}}, {'$unset': ['first', 'last', 'n']}]"),
                 "{'_id':1,'q':{'r':1}}");
    CHECK_STR_EQ(A("[{'$replaceRoot': {'newRoot': '$n'}}]"), "{'x':1}");
    CHECK_STR_EQ(A("[{'$replaceWith': '$first'}]"),
                 "ERR 40228 'newRoot' expression must evaluate to an object, but resulting value "
                 "was of type: a non-object");
    CHECK_STR_EQ(A("[{'$project': {}}]"),
                 "ERR 51272 $project specification must have at least one field");
}

TEST(lookup)
{
    input("[{'_id': 1, 'cust': 'a'}, {'_id': 2, 'cust': ['a', 'b']}, {'_id': 3}]",
          "[{'_id': 10, 'k': 'a'}, {'_id': 11, 'k': 'b'}, {'_id': 12}]");
    CHECK_STR_EQ(A("[{'$lookup': {'from': 'other', 'localField': 'cust', 'foreignField': 'k', "
                   "'as': 'o'}}, {'$project': {'o._id': 1}}]"),
                 "{'_id':1,'o':[{'_id':10}]} {'_id':2,'o':[{'_id':10},{'_id':11}]} "
                 "{'_id':3,'o':[{'_id':12}]}");
    CHECK_STR_EQ(A("[{'$lookup': {'from': 'none', 'localField': 'cust', 'foreignField': 'k', "
                   "'as': 'o'}}, {'$limit': 1}]"),
                 "{'_id':1,'cust':'a','o':[]}");
    CHECK_STR_CONTAINS(A("[{'$lookup': {'from': 'other', 'as': 'o'}}]"), "ERR 9 ");
}

TEST(stage_errors)
{
    input(ORDERS, NULL);
    CHECK_STR_EQ(A("[{'$foo': {}}]"), "ERR 40324 Unrecognized pipeline stage name: '$foo'");
    CHECK_STR_EQ(A("[{'$match': {}, '$limit': 1}]"),
                 "ERR 40323 A pipeline stage specification object must contain exactly one "
                 "field.");
    CHECK_STR_EQ(A("[{'$limit': 0}]"), "ERR 15958 the limit must be positive");
    CHECK_STR_EQ(A("[{'$skip': -1}]"), "ERR 15956 Argument to $skip cannot be negative");
    CHECK_STR_EQ(A("[{'$count': ''}]"), "ERR 40156 the count field must be a non-empty string");
    CHECK_STR_EQ(A("[{'$count': 'a.b'}]"), "ERR 40160 the count field cannot contain '.'");
    CHECK_STR_EQ(A("[{'$sort': {'a': 3}}]"),
                 "ERR 15975 $sort key ordering must be 1 (for ascending) or -1 (for descending)");
    CHECK_STR_EQ(A("[{'$match': {'a': {'$bad': 1}}}]"), "ERR 2 unknown operator: $bad");
    CHECK_STR_EQ(A("[{'$out': 'x'}]"), "ERR 115 $out is not supported by devdb");
    CHECK_STR_EQ(A("[{'$project': {'x': {'$divide': [1, 0]}}}]"),
                 "ERR 16608 can't $divide by zero");
    input("[]", NULL); /* frees the inputs */
}

TEST_MAIN(TEST_ENTRY(match_sort_skip_limit_count), TEST_ENTRY(group), TEST_ENTRY(unwind),
          TEST_ENTRY(project_add_fields_replace_root), TEST_ENTRY(lookup), TEST_ENTRY(stage_errors))
