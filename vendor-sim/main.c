/* minicrm-vendor-sim: the delivery vendor simulator (stub until its issue lands). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: minicrm-vendor-sim [--help]\nthe delivery vendor simulator\n");
        return 0;
    }
    fprintf(stderr, "minicrm-vendor-sim: not implemented yet\nusage: minicrm-vendor-sim [--help]\n");
    return 2;
}
