/*
 * The service API's writes (SPEC §5b): declared in scopes/ as "write":
 * true, served only to services holding the endpoint's capability.
 */
#include "proxy_int.h"

void
proxy_write(struct preq *q)
{
    proxy_reply_error(q, ERRCODE_API_FORBIDDEN,
                      "api forbidden: writes are not served yet");
}
