/* routes_orders: (being written) */
#include "routes.h"

int routes_orders_register(router *r)
{
    (void)r;
    return 0;
}
