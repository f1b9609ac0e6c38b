/*
 * Shared steps of a tenant purge (see purge.h).
 */
#include <string.h>

#include "purge.h"

const char *const purge_kind_names[PURGE_KINDS] = {
    "data_key", "tenant", "token", "directory", "lock", "other"};

int
purge_kind_of(const char *key)
{
    const char *p = strrchr(key, '}');

    if (p == NULL)
        return 5;
    p = strchr(p + 2, ':'); /* after "}:<suite>" */
    if (p == NULL)
        return 5;
    p++;
    if (strcmp(p, "dk") == 0)
        return 0;
    if (strcmp(p, "tenant") == 0)
        return 1;
    if (strcmp(p, "token") == 0 || strcmp(p, "btoks") == 0 ||
        strncmp(p, "svccur:", 7) == 0)
        return 2;
    /* the directory, and the index of chat owners that goes with it */
    if (strncmp(p, "dir:", 4) == 0 || strcmp(p, "chatowner") == 0)
        return 3;
    if (strncmp(p, "lock:", 5) == 0)
        return 4;
    return 5;
}
