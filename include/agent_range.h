/*
 * agent/get as a range-narrowed service sees it. A service learns its own
 * effective range from agent/get through the broker (SPEC §6b), so for a
 * service with departments of its own (--parties) the filtered reply is
 * rewritten: allow_partys.partyid becomes the tops of the narrowed range
 * (the service's departments that lie within the tenant's range, and the
 * tenant's departments that lie within the service's), and
 * allow_tags.tagid is emptied, since a tag may span outside the
 * service's departments. allow_userinfos was already narrowed by the
 * filter's range check. Pure: no I/O.
 */
#ifndef AGENT_RANGE_H
#define AGENT_RANGE_H

#include <stddef.h>

#include "broker.h"

struct vrange;

#define AGENT_RANGE_PATH "/cgi-bin/agent/get"

/*
 * Rewrite the filter's output in (len bytes, a JSON object) for the
 * narrowed range v (borrowed) into *out (owned, brk_free; *outlen bytes).
 * Only lists the reply already holds are rewritten (a grant without
 * contacts leaves none) and a WeCom error passes unchanged. *dropped is
 * the number of ids removed from those lists (ids added are not counted);
 * out-params are written only on success. BRK_ERR_INVAL when in is not a
 * JSON object, BRK_ERR_NOMEM.
 */
enum brk_err agent_range_rewrite(const char *in, size_t len,
                                 const struct vrange *v, char **out,
                                 size_t *outlen,
                                 unsigned long *dropped) BRK_WUR;

#endif /* AGENT_RANGE_H */
