/* minicrm-api: the HTTP API (stub until its issue lands). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: minicrm-api [--help]\nthe HTTP API\n");
        return 0;
    }
    fprintf(stderr, "minicrm-api: not implemented yet\nusage: minicrm-api [--help]\n");
    return 2;
}
