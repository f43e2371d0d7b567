/* routes_campaigns: (being written) */
#include "routes.h"

int routes_campaigns_register(router *r)
{
    (void)r;
    return 0;
}
