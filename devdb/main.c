/* minicrm-devdb: the MongoDB-wire-compatible development server (stub until its issue lands). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: minicrm-devdb [--help]\nthe MongoDB-wire-compatible development server\n");
        return 0;
    }
    fprintf(stderr, "minicrm-devdb: not implemented yet\nusage: minicrm-devdb [--help]\n");
    return 2;
}
