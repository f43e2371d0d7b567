/* project.c: stub, implementation follows. */
#include "project.h"
#include "errors.h"
projection *projection_new(const bson_t *spec, bson_error_t *err)
{
    (void)spec;
    mdb_error(err, 1, "not implemented");
    return NULL;
}
void projection_free(projection *p)
{
    (void)p;
}
bool projection_is_identity(const projection *p)
{
    (void)p;
    return true;
}
void projection_apply(const projection *p, const bson_t *doc, bson_t *out)
{
    (void)p;
    bson_concat(out, doc);
}
