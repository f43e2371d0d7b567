/* minicrm-receipts: the delivery-receipts worker (stub until its issue lands). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: minicrm-receipts [--help]\nthe delivery-receipts worker\n");
        return 0;
    }
    fprintf(stderr, "minicrm-receipts: not implemented yet\nusage: minicrm-receipts [--help]\n");
    return 2;
}
