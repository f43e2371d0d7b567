/* test_engine_update: update operators, replacement, upsert seeds (devdb/update). */
#include "engine_util.h"
#include "base/errors.h"
#include "test.h"
#include "engine/update.h"

/* Applies `update` to `doc`: the result as compact JSON ('...'-quoted), or "ERR <code> <msg>". */
static const char *U_(const char *update, const char *doc, bool insert, bool *modified)
{
    static char out[4096];
    bson_t *u = J(update), *d = J(doc);
    bson_error_t err;
    updater *up = updater_new(u, &err);
    if (!up) {
        snprintf(out, sizeof out, "ERR %u %s", err.code, err.message);
    } else {
        bson_t res;
        bson_init(&res);
        bool mod = false;
        if (updater_apply(up, d, insert, &res, &mod, &err) != 0)
            snprintf(out, sizeof out, "ERR %u %s", err.code, err.message);
        else
            snprintf(out, sizeof out, "%s", JS(&res));
        if (modified)
            *modified = mod;
        bson_destroy(&res);
    }
    updater_free(up);
    bson_destroy(u);
    bson_destroy(d);
    return out;
}

static const char *U(const char *update, const char *doc)
{
    return U_(update, doc, false, NULL);
}

TEST(set_unset)
{
    static const eng_str_case u_cases[] = {
        {"{'$set': {'a': 2}}", "{'_id': 1, 'a': 1, 'b': 1}", "{'_id':1,'a':2,'b':1}"},
        {"{'$set': {'z': 1, 'c': 2}}", "{'_id': 1, 'b': 1}", "{'_id':1,'b':1,'c':2,'z':1}"},
        {"{'$set': {'a.b.c': 1}}", "{'_id': 1}", "{'_id':1,'a':{'b':{'c':1}}}"},
        {"{'$set': {'a.b': 2}}", "{'_id': 1, 'a': {'x': 1, 'b': 1}}",
         "{'_id':1,'a':{'x':1,'b':2}}"},
        {"{'$set': {'a.1': 9}}", "{'_id': 1, 'a': [1, 2, 3]}", "{'_id':1,'a':[1,9,3]}"},
        {"{'$set': {'a.4': 9}}", "{'_id': 1, 'a': [1]}", "{'_id':1,'a':[1,null,null,null,9]}"},
        {"{'$set': {'a.0.b': 9}}", "{'_id': 1, 'a': [{'b': 1}, {'b': 2}]}",
         "{'_id':1,'a':[{'b':9},{'b':2}]}"},
        {"{'$set': {'a.b': 1}}", "{'_id': 1, 'a': 5}",
         "ERR 28 Cannot create field 'b' in element {a: 5}"},
        {"{'$set': {'a.b': 1}}", "{'_id': 1, 'a': [1]}",
         "ERR 28 Cannot create field 'b' in element {a: [1]}"},
        {"{'$set': {'a.3.b': 1}}", "{'_id': 1, 'a': [1]}", "{'_id':1,'a':[1,null,null,{'b':1}]}"},
        {"{'$set': {'a.1.b': 1}}", "{'_id': 1, 'a': [1, 2]}",
         "ERR 28 Cannot create field 'b' in element {1: 2}"},
        {"{'$unset': {'a': ''}}", "{'_id': 1, 'a': 1, 'b': 2}", "{'_id':1,'b':2}"},
        {"{'$unset': {'x.y': 1}}", "{'_id': 1, 'a': 1}", "{'_id':1,'a':1}"},
        {"{'$unset': {'a.1': 1}}", "{'_id': 1, 'a': [1, 2, 3]}", "{'_id':1,'a':[1,null,3]}"},
        {"{'$unset': {'a.b': 1}}", "{'_id': 1, 'a': {'b': 1, 'c': 2}}", "{'_id':1,'a':{'c':2}}"},
    };
    CHECK_STR_CASES(U, u_cases);
    bool mod = true;
    U_("{'$set': {'a': 1}}", "{'_id': 1, 'a': 1}", false, &mod);
    CHECK(!mod);
    U_("{'$set': {'a': 1.0}}", "{'_id': 1, 'a': 1}", false, &mod);
    CHECK(mod);
    U_("{'$unset': {'q': 1}}", "{'_id': 1, 'a': 1}", false, &mod);
    CHECK(!mod);
}

TEST(inc_mul_numeric_types)
{
    static const eng_str_case u_cases[] = {
        {"{'$inc': {'a': 1}}", "{'_id': 1, 'a': 1}", "{'_id':1,'a':2}"},
        {"{'$inc': {'a': 5}}", "{'_id': 1}", "{'_id':1,'a':5}"},
        {"{'$inc': {'a': 1}}", "{'_id': 1, 'a': 2147483647}", "{'_id':1,'a':2147483648}"},
    };
    CHECK_STR_CASES(U, u_cases);
    bson_t *d = J("{'a': 2147483647}"), *u = J("{'$inc': {'a': 1}}"), out;
    bson_error_t err;
    updater *up = updater_new(u, &err);
    bson_init(&out);
    CHECK(updater_apply(up, d, false, &out, NULL, &err) == 0);
    bson_iter_t it;
    CHECK(bson_iter_init_find(&it, &out, "a") && BSON_ITER_HOLDS_INT64(&it));
    bson_destroy(&out);
    updater_free(up);
    bson_destroy(d);
    bson_destroy(u);
    static const eng_str_case u_cases2[] = {
        {"{'$inc': {'a': 1.5}}", "{'_id': 1, 'a': 1}", "{'_id':1,'a':2.5}"},
        {"{'$inc': {'a': {'$numberLong': '1'}}}", "{'_id': 1, 'a': 1}", "{'_id':1,'a':2}"},
        {"{'$inc': {'a': 1}}", "{'_id': 1, 'a': {'$numberLong': '9223372036854775807'}}",
         "ERR 2 Failed to apply $inc operations to current value "
         "((NumberLong)9223372036854775807) for document {_id: 1}"},
        {"{'$inc': {'a': 1}}", "{'_id': 1, 'a': 'x'}",
         "ERR 14 Cannot apply $inc to a value of non-numeric type. {_id: 1} has the field "
         "'a' of non-numeric type string"},
        {"{'$inc': {'a': 'x'}}", "{'_id': 1}",
         "ERR 14 Cannot increment with non-numeric argument: {a: \"x\"}"},
        {"{'$mul': {'a': 3}}", "{'_id': 1, 'a': 2}", "{'_id':1,'a':6}"},
        {"{'$mul': {'a': 3}}", "{'_id': 1}", "{'_id':1,'a':0}"},
        {"{'$mul': {'a': 2.0}}", "{'_id': 1}", "{'_id':1,'a':0.0}"},
        {"{'$mul': {'a': 'x'}}", "{'_id': 1}",
         "ERR 14 Cannot multiply with non-numeric argument: {a: \"x\"}"},
    };
    CHECK_STR_CASES(U, u_cases2);
}

TEST(min_max_rename_current_date)
{
    static const eng_str_case u_cases[] = {
        {"{'$min': {'a': 3}}", "{'_id': 1, 'a': 5}", "{'_id':1,'a':3}"},
        {"{'$min': {'a': 7}}", "{'_id': 1, 'a': 5}", "{'_id':1,'a':5}"},
        {"{'$max': {'a': 7}}", "{'_id': 1, 'a': 5}", "{'_id':1,'a':7}"},
        {"{'$max': {'a': 7}}", "{'_id': 1}", "{'_id':1,'a':7}"},
        {"{'$min': {'a': null}}", "{'_id': 1, 'a': 5}", "{'_id':1,'a':null}"},
        {"{'$max': {'a': 'x'}}", "{'_id': 1, 'a': 5}", "{'_id':1,'a':'x'}"},
        {"{'$rename': {'a': 'b'}}", "{'_id': 1, 'a': 1, 'c': 2}", "{'_id':1,'c':2,'b':1}"},
        {"{'$rename': {'a': 'c'}}", "{'_id': 1, 'a': 1, 'c': 2}", "{'_id':1,'c':1}"},
        {"{'$rename': {'q': 'b'}}", "{'_id': 1, 'a': 1}", "{'_id':1,'a':1}"},
        {"{'$rename': {'a.x': 'b.y'}}", "{'_id': 1, 'a': {'x': {'k': 1}}}",
         "{'_id':1,'a':{},'b':{'y':{'k':1}}}"},
        {"{'$rename': {'a': 1}}", "{'_id': 1}",
         "ERR 2 The 'to' field for $rename must be a string: a: 1"},
        {"{'$rename': {'a': 'a'}}", "{'_id': 1}",
         "ERR 2 The source and target field for $rename must differ: a: \"a\""},
    };
    CHECK_STR_CASES(U, u_cases);
    const char *r = U("{'$currentDate': {'d': true, 't': {'%type': 'timestamp'}}}", "{'_id': 1}");
    CHECK_STR_CONTAINS(r, "'d':{'$date':");
    CHECK_STR_CONTAINS(r, "'t':{'$timestamp':");
    CHECK_STR_CONTAINS(U("{'$currentDate': {'d': {'%type': 'x'}}}", "{'_id': 1}"), "ERR 2 ");
}

TEST(arrays)
{
    static const eng_str_case u_cases[] = {
        {"{'$push': {'a': 3}}", "{'_id': 1, 'a': [1]}", "{'_id':1,'a':[1,3]}"},
        {"{'$push': {'a': 3}}", "{'_id': 1}", "{'_id':1,'a':[3]}"},
        {"{'$push': {'a': [3]}}", "{'_id': 1, 'a': []}", "{'_id':1,'a':[[3]]}"},
        {"{'$push': {'a': {'$each': [3, 4]}}}", "{'_id': 1, 'a': [1]}", "{'_id':1,'a':[1,3,4]}"},
        {"{'$push': {'a': {'$each': [3, 4], '$position': 0}}}", "{'_id': 1, 'a': [1]}",
         "{'_id':1,'a':[3,4,1]}"},
        {"{'$push': {'a': {'$each': [5, 0], '$sort': 1, '$slice': 3}}}", "{'_id': 1, 'a': [4, 2]}",
         "{'_id':1,'a':[0,2,4]}"},
        {"{'$push': {'a': {'$each': [5], '$slice': -2}}}", "{'_id': 1, 'a': [1, 2, 3]}",
         "{'_id':1,'a':[3,5]}"},
        {"{'$push': {'a': {'$each': [{'s': 1}], '$sort': {'s': -1}}}}",
         "{'_id': 1, 'a': [{'s': 3}, {'s': 0}]}", "{'_id':1,'a':[{'s':3},{'s':1},{'s':0}]}"},
        {"{'$push': {'a': 1}}", "{'_id': 1, 'a': 5}",
         "ERR 2 The field 'a' must be an array but is of type int in document {_id: 1}"},
        {"{'$push': {'a': {'$each': 1}}}", "{'_id': 1}",
         "ERR 2 The argument to $each in $push must be an array but it was of type: int"},
        {"{'$addToSet': {'a': 2}}", "{'_id': 1, 'a': [1, 2]}", "{'_id':1,'a':[1,2]}"},
        {"{'$addToSet': {'a': {'$each': [2, 3, 3]}}}", "{'_id': 1, 'a': [1, 2]}",
         "{'_id':1,'a':[1,2,3]}"},
        {"{'$addToSet': {'a': 1}}", "{'_id': 1}", "{'_id':1,'a':[1]}"},
        {"{'$pull': {'a': 2}}", "{'_id': 1, 'a': [1, 2, 3, 2]}", "{'_id':1,'a':[1,3]}"},
        {"{'$pull': {'a': {'$gte': 2}}}", "{'_id': 1, 'a': [1, 2, 3]}", "{'_id':1,'a':[1]}"},
        {"{'$pull': {'a': {'b': 1}}}", "{'_id': 1, 'a': [{'b': 1, 'c': 2}, {'b': 2}]}",
         "{'_id':1,'a':[{'b':2}]}"},
        {"{'$pull': {'a': 1}}", "{'_id': 1}", "{'_id':1}"},
        {"{'$pullAll': {'a': [1, 3]}}", "{'_id': 1, 'a': [1, 2, 3]}", "{'_id':1,'a':[2]}"},
        {"{'$pop': {'a': 1}}", "{'_id': 1, 'a': [1, 2, 3]}", "{'_id':1,'a':[1,2]}"},
        {"{'$pop': {'a': -1}}", "{'_id': 1, 'a': [1, 2, 3]}", "{'_id':1,'a':[2,3]}"},
    };
    CHECK_STR_CASES(U, u_cases);
}

TEST(parse_errors)
{
    static const eng_str_case u_cases[] = {
        {"{'$set': {}}", "{}",
         "ERR 9 '$set' is empty. You must specify a field like so: {$set: {<field>: ...}}"},
        {"{'$foo': {'a': 1}}", "{}",
         "ERR 9 Unknown modifier: $foo. Expected a valid update modifier or "
         "pipeline-style update specified as an array"},
        {"{'$set': {'a': 1}, 'b': 2}", "{}",
         "ERR 9 Unknown modifier: b. Expected a valid update modifier or pipeline-style "
         "update specified as an array"},
    };
    CHECK_STR_CASES(U, u_cases);
    CHECK_STR_CONTAINS(U("{'$set': 5}", "{}"), "ERR 9 Modifiers operate on fields but we found "
                                               "type int instead");
    static const eng_str_case u_cases2[] = {
        {"{'$set': {'a': 1, 'a.b': 2}}", "{}",
         "ERR 40 Updating the path 'a.b' would create a conflict at 'a'"},
        {"{'$set': {'a.b': 1}, '$inc': {'a': 2}}", "{}",
         "ERR 40 Updating the path 'a' would create a conflict at 'a'"},
        {"{'$set': {'a': 1}, '$unset': {'a': 1}}", "{}",
         "ERR 40 Updating the path 'a' would create a conflict at 'a'"},
        {"{'$set': {'ab': 1, 'a': 1}}", "{}", "{'a':1,'ab':1}"},
        {"{'$set': {'a..b': 1}}", "{}",
         "ERR 56 The update path 'a..b' contains an empty field name, which is not "
         "allowed."},
    };
    CHECK_STR_CASES(U, u_cases2);
    CHECK_STR_CONTAINS(U("{'$set': {'a.$': 1}}", "{}"), "ERR 2 positional");
    CHECK_STR_EQ(U("{'a': 1, '$set': {'b': 1}}", "{}"),
                 "ERR 52 The dollar ($) prefixed field '$set' in '$set' is not valid for storage.");
}

TEST(immutable_id)
{
    static const eng_str_case u_cases[] = {
        {"{'$set': {'_id': 2}}", "{'_id': 1}",
         "ERR 66 Performing an update on the path '_id' would modify the immutable field "
         "'_id'"},
        {"{'$set': {'_id': 1}}", "{'_id': 1}", "{'_id':1}"},
        {"{'$set': {'_id.x': 2}}", "{'_id': {'x': 1}}",
         "ERR 66 Performing an update on the path '_id.x' would modify the immutable "
         "field '_id'"},
        {"{'$unset': {'_id': 1}}", "{'_id': 1}",
         "ERR 66 Performing an update on the path '_id' would modify the immutable field "
         "'_id'"},
    };
    CHECK_STR_CASES(U, u_cases);
    /* Replacement keeps _id first and in place. */
    static const eng_str_case u_cases2[] = {
        {"{'b': 2, 'c': 3}", "{'_id': 1, 'a': 1}", "{'_id':1,'b':2,'c':3}"},
        {"{'b': 2, '_id': 1}", "{'_id': 1, 'a': 1}", "{'_id':1,'b':2}"},
        {"{'_id': 2, 'b': 2}", "{'_id': 1, 'a': 1}",
         "ERR 66 After applying the update, the (immutable) field '_id' was found to have "
         "been altered to _id: 2"},
        {"{'a.b': 1}", "{'_id': 1}",
         "ERR 57 The dotted field 'a.b' in 'a.b' is not valid for storage."},
    };
    CHECK_STR_CASES(U, u_cases2);
    /* _id created by an upsert's $set is moved first. */
    CHECK_STR_EQ(U_("{'$set': {'a': 1, '_id': 5}}", "{}", true, NULL), "{'_id':5,'a':1}");
}

TEST(set_on_insert)
{
    CHECK_STR_EQ(U_("{'$setOnInsert': {'a': 1}, '$set': {'b': 2}}", "{'_id': 1}", true, NULL),
                 "{'_id':1,'a':1,'b':2}");
    CHECK_STR_EQ(U_("{'$setOnInsert': {'a': 1}, '$set': {'b': 2}}", "{'_id': 1}", false, NULL),
                 "{'_id':1,'b':2}");
}

static const char *seed(const char *filter)
{
    static char out[1024];
    bson_t *f = J(filter), res;
    bson_init(&res);
    bson_error_t err;
    if (update_upsert_seed(f, &res, &err) != 0)
        snprintf(out, sizeof out, "ERR %u %s", err.code, err.message);
    else
        snprintf(out, sizeof out, "%s", JS(&res));
    bson_destroy(&res);
    bson_destroy(f);
    return out;
}

TEST(upsert_seed)
{
    CHECK_STR_EQ(seed("{'a': 1, 'b': {'$gt': 2}, 'c': {'$eq': 3}}"), "{'a':1,'c':3}");
    CHECK_STR_EQ(seed("{'x.y': 1, '_id': 7}"), "{'_id':7,'x':{'y':1}}");
    CHECK_STR_EQ(seed("{'$and': [{'a': 1}, {'b': 2}], '$or': [{'c': 1}]}"), "{'a':1,'b':2}");
    CHECK_STR_EQ(seed("{'a': {'k': 1}}"), "{'a':{'k':1}}");
    CHECK_STR_EQ(seed("{'$and': [{'a': 1}, {'a': 2}]}"),
                 "ERR 54 cannot infer query fields to set, path 'a' is matched twice");
    CHECK_STR_EQ(seed("{'a': 1, 'a.b': 2}"),
                 "ERR 54 cannot infer query fields to set, both paths 'a.b' and 'a' are matched");
    CHECK_STR_EQ(seed("{}"), "{}");
}

static const char *UP(const char *stages_json, const char *doc)
{
    static char out[1024];
    char wrapped[1024];
    snprintf(wrapped, sizeof wrapped, "{'p': %s}", stages_json);
    bson_t *w = J(wrapped), *d = J(doc), arr, res;
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    bson_iter_init_find(&it, w, "p");
    bson_iter_array(&it, &len, &data);
    bson_init_static(&arr, data, len);
    bson_error_t err;
    updater *u = updater_new_pipeline(&arr, &err);
    bson_init(&res);
    if (!u || updater_apply(u, d, false, &res, NULL, &err) != 0)
        snprintf(out, sizeof out, "ERR %u %s", err.code, err.message);
    else
        snprintf(out, sizeof out, "%s", JS(&res));
    bson_destroy(&res);
    updater_free(u);
    bson_destroy(w);
    bson_destroy(d);
    return out;
}

TEST(pipeline_updates)
{
    static const eng_str_case up_cases[] = {
        {"[{'$set': {'b': {'$add': ['$a', 1]}}}]", "{'_id': 1, 'a': 1}", "{'_id':1,'a':1,'b':2}"},
        {"[{'$project': {'a': 1}}, {'$unset': 'a'}]", "{'_id': 1, 'a': 1, 'c': 3}", "{'_id':1}"},
        {"[{'$replaceWith': {'x': 1}}]", "{'_id': 1, 'a': 1}", "{'_id':1,'x':1}"},
        {"[{'$set': {'_id': 2}}]", "{'_id': 1}",
         "ERR 66 Performing an update on the path '_id' would modify the immutable field "
         "'_id'"},
        {"[{'$match': {}}]", "{'_id': 1}",
         "ERR 72 $match is not allowed to be used within an update"},
        {"[]", "{'_id': 1}", "ERR 9 Update pipeline must not be empty"},
    };
    CHECK_STR_CASES(UP, up_cases);
}

/* A $set of top-level fields takes a one-pass path (no mutable tree); an inert $setOnInsert
 * beside it (not an upsert insert) forces the general tree path. Both must give byte-identical
 * documents and the same `modified`, over documents with duplicate names, nested values, types
 * of every kind and fields that do or do not exist yet. */
TEST(flat_set_matches_the_general_path)
{
    static const char *const docs[] = {
        "{'_id': 1, 'a': 1, 'b': 'x', 'c': {'d': [1, 2]}}",
        "{'_id': {'k': 1}, 'status': 'PENDING', 'n': null, 'at': {'$date': 5}}",
        "{'_id': 1, 'a': 1, 'a': 2, 'b': [1, {'c': 2}]}",
        "{'a': 1, '_id': 2}",
        "{'_id': 1, 'x': 1, '_id': 2}",
        "{'_id': 1}",
        "{}",
        "{'_id': 1, 'status': 'SENT', 'ctok': 't'}",
        "{'_id': 1, 'l': {'$numberLong': '9'}, 'f': false, 'a': 2.5, 'dec': {'$numberDecimal': "
        "'2'},"
        " 't': {'$timestamp': {'t': 5, 'i': 1}}, 'arr': [[], {}], 'b': 'caf\\u00e9'}",
        "{'_id': 1, 'bin': {'$binary': {'base64': 'AQI=', 'subType': '00'}}, 'a': 1}",
        "{'_id': 1, 'r': {'$regex': 'a', '$options': 'mi'}, 'd': {'$numberDecimal': '1.5'}}",
    };
    static const char *const sets[] = {
        "{'a': 2}",
        "{'a': 1}",
        "{'status': 'SENT', 'vendorMsgId': 'vm', 'deliveredAt': {'$date': 7}, 'ctok': 't'}",
        "{'z': 1, 'b': 'y', 'c': {'e': 1}}",
        "{'n': [1, 2], 'm': {'$numberLong': '5'}}",
        "{'a': 1.5, 'b': true, 'c': null, 'o': {'$oid': '0123456789abcdef01234567'}}",
        "{'a': {'$numberLong': '1'}, 'b': 'h\\u00e9', 'ts': {'$timestamp': {'t': 1, 'i': 2}}}",
        "{'status': 'SENT', 'ctok': 't'}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        for (size_t j = 0; j < sizeof sets / sizeof sets[0]; j++) {
            char flat[512], tree[600];
            snprintf(flat, sizeof flat, "{'$set': %s}", sets[j]);
            snprintf(tree, sizeof tree, "{'$set': %s, '$setOnInsert': {'zz': 1}}", sets[j]);
            bson_t *uf = J(flat), *ut = J(tree), *d = J(docs[i]);
            bson_error_t e1, e2;
            updater *pf = updater_new(uf, &e1), *pt = updater_new(ut, &e2);
            CHECK(pf && pt);
            bson_t of = BSON_INITIALIZER, ot = BSON_INITIALIZER;
            bool m1 = false, m2 = false;
            int r1 = updater_apply(pf, d, false, &of, &m1, &e1);
            int r2 = updater_apply(pt, d, false, &ot, &m2, &e2);
            /* Byte for byte: same field order, same types, same values. */
            CHECK_MSG(r1 == r2 && m1 == m2 && of.len == ot.len &&
                          memcmp(bson_get_data(&of), bson_get_data(&ot), of.len) == 0,
                      "doc %zu set %zu: %d/%d modified %d/%d %s vs %s", i, j, r1, r2, m1, m2,
                      JS(&of), JS(&ot));
            bson_destroy(&of);
            bson_destroy(&ot);
            updater_free(pf);
            updater_free(pt);
            bson_destroy(uf);
            bson_destroy(ut);
            bson_destroy(d);
        }
    }
}

TEST_MAIN(TEST_ENTRY(flat_set_matches_the_general_path), TEST_ENTRY(set_unset),
          TEST_ENTRY(inc_mul_numeric_types), TEST_ENTRY(min_max_rename_current_date),
          TEST_ENTRY(arrays), TEST_ENTRY(parse_errors), TEST_ENTRY(immutable_id),
          TEST_ENTRY(set_on_insert), TEST_ENTRY(upsert_seed), TEST_ENTRY(pipeline_updates))
