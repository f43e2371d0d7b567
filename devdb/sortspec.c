/* sortspec.c: stub, implementation follows. */
#include "sortspec.h"
#include "errors.h"
sortspec *sortspec_new(const bson_t *spec, bool for_aggregate, bson_error_t *err)
{
    (void)spec;
    (void)for_aggregate;
    mdb_error(err, 1, "not implemented");
    return NULL;
}
void sortspec_free(sortspec *s)
{
    (void)s;
}
size_t sortspec_nkeys(const sortspec *s)
{
    (void)s;
    return 0;
}
const char *sortspec_path(const sortspec *s, size_t i)
{
    (void)s;
    (void)i;
    return "";
}
int sortspec_dir(const sortspec *s, size_t i)
{
    (void)s;
    (void)i;
    return 1;
}
int sortspec_compare(const sortspec *s, const bson_t *a, const bson_t *b)
{
    (void)s;
    (void)a;
    (void)b;
    return 0;
}
int sortspec_sort(const sortspec *s, const bson_t **docs, size_t n, bson_error_t *err)
{
    (void)s;
    (void)docs;
    (void)n;
    (void)err;
    return 0;
}
