/* minicrm: the operator CLI (stub until its issue lands). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: minicrm [--help]\nthe operator CLI\n");
        return 0;
    }
    fprintf(stderr, "minicrm: not implemented yet\nusage: minicrm [--help]\n");
    return 2;
}
