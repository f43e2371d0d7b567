/* bsonval.c: stub, implementation follows. */
#include "bsonval.h"
#include "errors.h"
int bv_canonical_type(bson_type_t t)
{
    (void)t;
    return 0;
}
int bv_compare(const bson_value_t *a, const bson_value_t *b)
{
    (void)a;
    (void)b;
    return 0;
}
bool bv_equal(const bson_value_t *a, const bson_value_t *b)
{
    return bv_compare(a, b) == 0;
}
int bv_compare_docs(const bson_t *a, const bson_t *b)
{
    (void)a;
    (void)b;
    return 0;
}
bool bv_is_number(bson_type_t t)
{
    return t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 || t == BSON_TYPE_DOUBLE ||
           t == BSON_TYPE_DECIMAL128;
}
double bv_as_double(const bson_value_t *v)
{
    (void)v;
    return 0;
}
bool bv_as_doc(const bson_value_t *v, bson_t *out)
{
    (void)v;
    (void)out;
    return false;
}
bool bv_append(bson_t *b, const char *key, int key_len, const bson_value_t *v)
{
    return bson_append_value(b, key, key_len, v);
}
bool bv_path_visit(const bson_t *doc, const char *path, int flags, bv_path_cb cb, void *ctx)
{
    (void)doc;
    (void)path;
    (void)flags;
    (void)cb;
    (void)ctx;
    return false;
}
bool bv_path_get(const bson_t *doc, const char *path, bson_value_t *out)
{
    (void)doc;
    (void)path;
    (void)out;
    return false;
}
void bv_sort_key(const bson_t *doc, const char *path, int dir, bson_value_t *out)
{
    (void)doc;
    (void)path;
    (void)dir;
    out->value_type = BSON_TYPE_NULL;
}
int bv_index_keys(const bson_t *doc, const bson_t *pattern, bv_key_cb cb, void *ctx,
                  bool *is_multikey, bson_error_t *err)
{
    (void)doc;
    (void)pattern;
    (void)cb;
    (void)ctx;
    (void)is_multikey;
    return mdb_error(err, 1, "not implemented");
}
int bv_key_compare(const bson_t *a, const bson_t *b, const int *dirs, size_t n)
{
    (void)a;
    (void)b;
    (void)dirs;
    (void)n;
    return 0;
}
int bv_pattern_dirs(const bson_t *pattern, int *dirs, size_t cap)
{
    (void)pattern;
    (void)dirs;
    (void)cap;
    return 0;
}
