/* test_engine_project: find projections, sort specs and expressions (devdb/project, sortspec,
 * expr). */
#include "engine_util.h"
#include "base/errors.h"
#include "engine/expr.h"
#include "engine/project.h"
#include "engine/sortspec.h"
#include "test.h"

static const char *P(const char *spec, const char *doc)
{
    static char out[2048];
    bson_t *s = J(spec), *d = J(doc), res;
    bson_error_t err;
    projection *p = projection_new(s, &err);
    if (!p) {
        snprintf(out, sizeof out, "ERR %u %s", err.code, err.message);
    } else {
        bson_init(&res);
        if (projection_apply_ex(p, d, &res, &err) != 0)
            snprintf(out, sizeof out, "ERR %u %s", err.code, err.message);
        else
            snprintf(out, sizeof out, "%s", JS(&res));
        bson_destroy(&res);
    }
    projection_free(p);
    bson_destroy(s);
    bson_destroy(d);
    return out;
}

TEST(inclusion_exclusion)
{
    const char *doc = "{'_id': 1, 'a': 1, 'b': {'c': 2, 'd': 3}, 'e': [{'c': 1, 'x': 2}, 5]}";
    const eng_str_case p_cases[] = {
        {"{}", doc, "{'_id':1,'a':1,'b':{'c':2,'d':3},'e':[{'c':1,'x':2},5]}"},
        {"{'a': 1}", doc, "{'_id':1,'a':1}"},
        {"{'a': true, '_id': 0}", doc, "{'a':1}"},
        {"{'b.c': 1}", doc, "{'_id':1,'b':{'c':2}}"},
        {"{'e.c': 1}", doc, "{'_id':1,'e':[{'c':1}]}"},
        {"{'a': 0}", doc, "{'_id':1,'b':{'c':2,'d':3},'e':[{'c':1,'x':2},5]}"},
        {"{'b.c': 0, 'e.c': 0}", doc, "{'_id':1,'a':1,'b':{'d':3},'e':[{'x':2},5]}"},
        {"{'_id': 0}", doc, "{'a':1,'b':{'c':2,'d':3},'e':[{'c':1,'x':2},5]}"},
        {"{'_id': 1}", doc, "{'_id':1}"},
        {"{'zz': 1}", doc, "{'_id':1}"},
        {"{'a': 1, 'b': 0}", doc,
         "ERR 31254 Cannot do exclusion on field b in inclusion projection"},
        {"{'a': 0, 'b': 1}", doc,
         "ERR 31253 Cannot do inclusion on field b in exclusion projection"},
    };
    CHECK_STR_CASES(P, p_cases);
    CHECK_STR_CONTAINS(P("{'b': 1, 'b.c': 1}", doc), "ERR 31250 Path collision at b.c");
}

TEST(slice_elem_match_computed)
{
    const char *doc = "{'_id': 1, 'a': [1, 2, 3, 4], 'f': 'x', 'g': [{'k': 1}, {'k': 2}]}";
    const eng_str_case p_cases[] = {
        {"{'a': {'$slice': 2}}", doc, "{'_id':1,'a':[1,2],'f':'x','g':[{'k':1},{'k':2}]}"},
        {"{'a': {'$slice': -1}, 'f': 1}", doc, "{'_id':1,'a':[4],'f':'x'}"},
        {"{'a': {'$slice': [1, 2]}, 'f': 1}", doc, "{'_id':1,'a':[2,3],'f':'x'}"},
        {"{'g': {'$elemMatch': {'k': 2}}, 'f': 1}", doc, "{'_id':1,'f':'x','g':[{'k':2}]}"},
        {"{'g': {'$elemMatch': {'k': 5}}, 'f': 1}", doc, "{'_id':1,'f':'x'}"},
        {"{'f': 1, 'n': {'$size': '$a'}, 'c': {'$concat': ['$f', '-', 'y']}}", doc,
         "{'_id':1,'f':'x','n':4,'c':'x-y'}"},
        {"{'x.y': '$f', '_id': 0}", doc, "{'x':{'y':'x'}}"},
        {"{'q': {'$literal': 1}, '_id': 0}", doc, "{'q':1}"},
        {"{'q': {'$divide': [1, 0]}}", doc, "ERR 16608 can't $divide by zero"},
        {"{'q': {'$nope': 1}}", doc, "ERR 168 Unrecognized expression '$nope'"},
    };
    CHECK_STR_CASES(P, p_cases);
}

static const char *X(const char *exprjson, const char *doc)
{
    static char out[1024];
    bson_t *e = J(exprjson), *d = J(doc);
    bson_iter_t it;
    bson_iter_init_find(&it, e, "e");
    bson_error_t err;
    expr *x = expr_new(bson_iter_value(&it), &err);
    bson_value_t v;
    if (!x) {
        snprintf(out, sizeof out, "ERR %u %s", err.code, err.message);
    } else if (expr_eval(x, d, &v, &err) != 0) {
        snprintf(out, sizeof out, "ERR %u %s", err.code, err.message);
    } else if (v.value_type == BSON_TYPE_EOD) {
        snprintf(out, sizeof out, "missing");
    } else {
        bson_t r = BSON_INITIALIZER;
        bson_append_value(&r, "r", 1, &v);
        snprintf(out, sizeof out, "%s", JS(&r));
        bson_destroy(&r);
        bson_value_destroy(&v);
    }
    expr_free(x);
    bson_destroy(e);
    bson_destroy(d);
    return out;
}

TEST(expressions)
{
    const char *d = "{'a': 5, 'b': 2.5, 's': 'Hi', 'arr': [{'v': 1}, {'v': 2}, {'w': 3}], "
                    "'n': null}";
    const eng_str_case x_cases[] = {
        {"{'e': '$a'}", d, "{'r':5}"},
        {"{'e': '$zz'}", d, "missing"},
        {"{'e': '$arr.v'}", d, "{'r':[1,2]}"},
        {"{'e': {'$add': ['$a', 1]}}", d, "{'r':6}"},
        {"{'e': {'$add': ['$a', '$b']}}", d, "{'r':7.5}"},
        {"{'e': {'$add': ['$a', '$zz']}}", d, "{'r':null}"},
        {"{'e': {'$add': [2147483647, 1]}}", d, "{'r':2147483648}"},
        {"{'e': {'$subtract': ['$a', 7]}}", d, "{'r':-2}"},
        {"{'e': {'$multiply': ['$a', 3]}}", d, "{'r':15}"},
        {"{'e': {'$divide': ['$a', 2]}}", d, "{'r':2.5}"},
        {"{'e': {'$mod': ['$a', 3]}}", d, "{'r':2}"},
        {"{'e': {'$gt': ['$a', 4]}}", d, "{'r':true}"},
        {"{'e': {'$eq': ['$a', 5.0]}}", d, "{'r':true}"},
        {"{'e': {'$cond': [{'$gt': ['$a', 9]}, 'big', 'small']}}", d, "{'r':'small'}"},
        {"{'e': {'$cond': {'if': true, 'then': 1, 'else': 2}}}", d, "{'r':1}"},
        {"{'e': {'$ifNull': ['$n', 'dflt']}}", d, "{'r':'dflt'}"},
        {"{'e': {'$toUpper': '$s'}}", d, "{'r':'HI'}"},
        {"{'e': {'$toString': '$a'}}", d, "{'r':'5'}"},
        {"{'e': {'$size': '$arr'}}", d, "{'r':3}"},
        {"{'e': {'$size': '$zz'}}", d,
         "ERR 17124 The argument to $size must be an array. Type of argument was: missing"},
        {"{'e': {'$arrayElemAt': ['$arr.v', -1]}}", d, "{'r':2}"},
        {"{'e': {'$in': [2, '$arr.v']}}", d, "{'r':true}"},
        {"{'e': {'$sum': '$arr.v'}}", d, "{'r':3}"},
        {"{'e': {'$avg': ['$a', '$b']}}", d, "{'r':3.75}"},
        {"{'e': {'$max': '$arr.v'}}", d, "{'r':2}"},
        {"{'e': {'$and': [true, '$n']}}", d, "{'r':false}"},
        {"{'e': {'x': '$a', 'y': ['$s', '$zz']}}", d, "{'r':{'x':5,'y':['Hi',null]}}"},
        {"{'e': '$$ROOT.s'}", d, "{'r':'Hi'}"},
        {"{'e': {'%type': '$s'}}", d, "{'r':'string'}"},
        {"{'e': '$$foo'}", d, "ERR 17276 Use of undefined variable: foo"},
        {"{'e': {'$subtract': [1]}}", d,
         "ERR 16020 Expression $subtract takes exactly 2 arguments. 1 were passed in."},
    };
    CHECK_STR_CASES(X, x_cases);
}

TEST(sort_specs)
{
    bson_error_t err;
    bson_t *spec = J("{'a': 1, 'b': -1}");
    sortspec *s = sortspec_new(spec, false, &err);
    CHECK(s);
    CHECK_INT_EQ(sortspec_nkeys(s), 2);
    const char *docs_json[] = {
        "{'i': 0, 'a': 2, 'b': 1}", "{'i': 1, 'a': 1, 'b': 1}",    "{'i': 2, 'a': 1, 'b': 5}",
        "{'i': 3, 'b': 9}",         "{'i': 4, 'a': 'x'}",          "{'i': 5, 'a': [0, 7]}",
        "{'i': 6, 'a': 1, 'b': 5}", "{'i': 7, 'a': null, 'b': 9}",
    };
    size_t n = sizeof docs_json / sizeof docs_json[0];
    bson_t *docs[8];
    const bson_t *ptrs[8];
    for (size_t i = 0; i < n; i++)
        ptrs[i] = docs[i] = J(docs_json[i]);
    CHECK_INT_EQ(sortspec_sort(s, ptrs, n, &err), 0);
    char order[64] = "";
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;
        bson_iter_init_find(&it, ptrs[i], "i");
        size_t used = strlen(order);
        snprintf(order + used, sizeof order - used, "%d", bson_iter_int32(&it));
    }
    /* null/missing first (b desc breaks the tie: 3 and 7 both b 9, stable), [0,7] sorts as 0,
     * then 1s by b desc (2 and 6 stable), then 2, then strings. */
    CHECK_STR_EQ(order, "37526104");
    for (size_t i = 0; i < n; i++)
        bson_destroy(docs[i]);
    sortspec_free(s);
    bson_destroy(spec);

    spec = J("{'a': 2}");
    CHECK(!sortspec_new(spec, false, &err));
    CHECK_INT_EQ(err.code, 15975);
    CHECK_STR_EQ(err.message,
                 "$sort key ordering must be 1 (for ascending) or -1 (for descending)");
    bson_destroy(spec);
    spec = J("{'a': 'x'}");
    CHECK(!sortspec_new(spec, false, &err));
    CHECK_INT_EQ(err.code, 15974);
    bson_destroy(spec);
    spec = J("{}");
    s = sortspec_new(spec, false, &err);
    CHECK(s && sortspec_nkeys(s) == 0);
    sortspec_free(s);
    CHECK(!sortspec_new(spec, true, &err));
    CHECK_INT_EQ(err.code, 15976);
    bson_destroy(spec);
}

TEST_MAIN(TEST_ENTRY(inclusion_exclusion), TEST_ENTRY(slice_elem_match_computed),
          TEST_ENTRY(expressions), TEST_ENTRY(sort_specs))
