/*
 * Between the scope loader (scope_map.c) and the event declarations
 * (scope_events.c): one tree parser, one way to report a position. Not
 * part of any public interface.
 */
#ifndef SCOPE_MAP_INT_H
#define SCOPE_MAP_INT_H

#include <stddef.h>

#include <jansson.h>

#include "broker.h"
#include "scope_map.h"

struct loader;          /* scope_map.c: one file being loaded */
struct scope_event_set; /* scope_events.c: the events of a map */

/*---- scope_map.c, for scope_events.c ----*/

/* The path of keys and indexes errors are located by. */
void scope_ld_push_key(struct loader *ld, const char *key);
void scope_ld_push_index(struct loader *ld, size_t index);
void scope_ld_pop(struct loader *ld);
/* "FILE:LINE:COL: msg" at the current step; returns BRK_ERR_CONFIG. */
enum brk_err scope_ld_fail(struct loader *ld, const char *fmt, ...)
    BRK_PRINTF(2, 3);
enum brk_err scope_ld_nomem(struct loader *ld);
enum brk_err scope_ld_str(struct loader *ld, const char *key, const json_t *v,
                          const char **out);
enum brk_err scope_ld_perm(struct loader *ld, const char *key, const char *name,
                           int *out);
/* An event's field tree, read by the endpoints' tree parser with the
 * event-only node keys allowed (scope_events_node_key). */
enum brk_err scope_ld_event_fields(struct loader *ld, const json_t *map,
                                   struct scope_node *root);
void scope_ld_node_clear(struct scope_node *n);
const char *scope_ld_file(const struct loader *ld);
/* Where the map being loaded keeps its event set (created on demand). */
struct scope_event_set **scope_ld_events(struct loader *ld);
/* The event set of a loaded map (borrowed), or NULL. */
const struct scope_event_set *scope_map_event_set(const struct scope_map *m);

/*---- scope_events.c, for scope_map.c ----*/

/* The "events" array of a file, appended to the map's set. */
enum brk_err scope_events_load(struct loader *ld, const json_t *arr);
/* A key of a node in an event tree that endpoint trees do not have:
 * "subject", "separator", "capability". */
enum brk_err scope_events_node_key(struct loader *ld, const char *key,
                                   const json_t *v, struct scope_node *n);
/* Sort once every file is loaded; NULL is a no-op. */
void scope_events_set_sort(struct scope_event_set *s);
void scope_events_set_free(struct scope_event_set *s);

#endif /* SCOPE_MAP_INT_H */
