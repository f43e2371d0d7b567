/* match.c: stub, implementation follows. */
#include "match.h"
#include "errors.h"
struct matcher {
    bson_t *filter;
};
matcher *matcher_new(const bson_t *filter, bson_error_t *err)
{
    (void)filter;
    mdb_error(err, 1, "not implemented");
    return NULL;
}
bool matcher_matches(const matcher *m, const bson_t *doc)
{
    (void)m;
    (void)doc;
    return false;
}
void matcher_free(matcher *m)
{
    (void)m;
}
const bson_t *matcher_filter(const matcher *m)
{
    return m->filter;
}
bool matcher_is_empty(const matcher *m)
{
    (void)m;
    return true;
}
bool matcher_field_bounds(const matcher *m, const char *path, bool multikey, match_bounds *out)
{
    (void)multikey;
    (void)m;
    (void)path;
    (void)out;
    return false;
}
