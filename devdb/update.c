/* update.c: stub, implementation follows. */
#include "update.h"
#include "errors.h"
updater *updater_new(const bson_t *update, bson_error_t *err)
{
    (void)update;
    mdb_error(err, 1, "not implemented");
    return NULL;
}
void updater_free(updater *u)
{
    (void)u;
}
bool updater_is_replacement(const updater *u)
{
    (void)u;
    return false;
}
int updater_apply(const updater *u, const bson_t *doc, bool is_upsert_insert, bson_t *out,
                  bool *modified, bson_error_t *err)
{
    (void)u;
    (void)doc;
    (void)is_upsert_insert;
    (void)out;
    (void)modified;
    return mdb_error(err, 1, "not implemented");
}
int update_upsert_seed(const bson_t *filter, bson_t *out, bson_error_t *err)
{
    (void)filter;
    (void)out;
    return mdb_error(err, 1, "not implemented");
}
