/*
 * The purge of a tenant, as both the workers (cancel_auth) and brokerctl
 * (tenant purge) run it, in this order: the cancel marker, the data key,
 * the tenant's broker tokens, every key of the tenant, an AOF rewrite, the
 * index entry and the deletion report. The Lua steps are shared (scripts.h:
 * SCRIPT_PURGE_*) so the two cannot drift apart.
 */
#ifndef PURGE_H
#define PURGE_H

/* Kinds of the deletion report, by the key's last part. */
#define PURGE_KINDS 6
extern const char *const purge_kind_names[PURGE_KINDS];
/* The kind of a tenant key "<prefix>{corp}:suite:<rest>". */
int purge_kind_of(const char *key);

#endif /* PURGE_H */
