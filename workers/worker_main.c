/* minicrm-worker: the campaign fan-out worker pool (stub until its issue lands). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: minicrm-worker [--help]\nthe campaign fan-out worker pool\n");
        return 0;
    }
    fprintf(stderr, "minicrm-worker: not implemented yet\nusage: minicrm-worker [--help]\n");
    return 2;
}
