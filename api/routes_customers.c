/* routes_customers: (being written) */
#include "routes.h"

int routes_customers_register(router *r)
{
    (void)r;
    return 0;
}
