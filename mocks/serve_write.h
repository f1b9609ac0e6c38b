/*
 * mock-wecom serve: WeCom's customer write APIs (SPEC §5b), with WeCom's
 * rules for a third-party app: the API's permission (48002), members and
 * departments in the app's visible range (60011), the customer followed
 * by the member (84061), corp tags and contact ways changed only by the
 * app that created them (the corp admin's own tags: 48002), WelcomeCodes
 * valid 20 s and once (41050, 41051), and WeCom's limits (40058).
 */
#ifndef SERVE_WRITE_H
#define SERVE_WRITE_H

#include <stddef.h>

#include <jansson.h>

#include "broker.h"
#include "fixture.h"

struct mock_writes;

enum brk_err mock_writes_new(struct mock_writes **out) BRK_WUR;
void mock_writes_free(struct mock_writes *w);

/* Nonzero when path is one of the write APIs served here. */
int mock_write_path(const char *path);

/*
 * WeCom's answer to a call of path with body (a JSON object) from the
 * app installed in corp (index corp, fixture c): the errcode, 0 when it
 * succeeds, and then *reply (new) the members to add to errcode/errmsg,
 * or NULL. -1 when out of memory.
 */
long mock_write_call(struct mock_writes *w, const struct fixture_corp *c,
                     long corp, const char *path, const json_t *body,
                     json_t **reply);

/*
 * media/upload of corp: body (len bytes, multipart with the header
 * content_type) parsed and held to WeCom's limits for type as the broker
 * does (multipart.h: 40035, 40058); 0 and *reply (new) with type,
 * media_id and created_at, and "mock_internal_media" (the part's
 * filename, content type and size) for the request log. The media_id is
 * known to send_welcome_msg and add_msg_template for 3 days (else 40007).
 * -1 when out of memory.
 */
long mock_write_media(struct mock_writes *w, long corp, const char *type,
                      const char *content_type, const char *body, size_t len,
                      json_t **reply);
/* Mint a WelcomeCode of corp (as WeCom pushes one with an
 * add_external_contact event), valid 20 s from now, into buf. */
enum brk_err mock_write_welcome_code(struct mock_writes *w, long corp,
                                     char *buf, size_t len) BRK_WUR;

#endif /* SERVE_WRITE_H */
